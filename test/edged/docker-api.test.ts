/**
 * The Docker Engine API client (edge/edged/docker-api.ts) against a fake daemon: an HTTP server on
 * a unix socket in a temporary directory. Requests carry the version prefix, query (filters as
 * JSON) and JSON body; a status ≥ 400 becomes RuntimeApiError with the daemon's message; bodies are
 * capped; a request that gets no answer times out, a stream only until its headers; a missing
 * socket or one nothing serves says which path and how to start a daemon on it. The stream helpers:
 * Docker's 8-byte stdout/stderr framing split anywhere across chunks, and JSON lines.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DockerClient, FrameDemuxer, JsonLines, isStatus, type StreamName } from '../../edge/edged/docker-api.js';
import { ErrorCode, RuntimeApiError, RuntimeUnavailableError, TimeoutError } from '../../shared/errors/index.js';
import { tempDir } from '../helpers/files.js';
import { within } from '../helpers/process.js';

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A fake daemon on a fresh socket; `handler` answers each request. */
async function fakeDaemon(handler: http.RequestListener): Promise<{ socketPath: string; requests: { method: string; url: string; body: string }[] }> {
  const dir = tempDir('ledge-dockerapi-');
  const socketPath = join(dir.path, 'd.sock');
  const requests: { method: string; url: string; body: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', body });
      handler(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  cleanups.push(() => dir.cleanup());
  return { socketPath, requests };
}

function client(socketPath: string, extra: { requestTimeoutMs?: number; maxBodyBytes?: number } = {}): DockerClient {
  const c = new DockerClient({ socketPath, requestTimeoutMs: extra.requestTimeoutMs ?? 5000, ...(extra.maxBodyBytes ? { maxBodyBytes: extra.maxBodyBytes } : {}) });
  cleanups.push(() => c.close());
  return c;
}

const json = (res: http.ServerResponse, status: number, value: unknown) => {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(value));
};

/** One frame of Docker's multiplexed stream. */
function frame(stream: 1 | 2, payload: string): Buffer {
  const p = Buffer.from(payload);
  const h = Buffer.alloc(8);
  h[0] = stream;
  h.writeUInt32BE(p.length, 4);
  return Buffer.concat([h, p]);
}

describe('DockerClient.request', () => {
  test('path under /v1.41, query with JSON filters and booleans as 1/0, JSON body; the JSON answer parsed; 204 has no body', async () => {
    const d = await fakeDaemon((req, res) => {
      if (req.url?.includes('/create')) return json(res, 201, { Id: 'abc' });
      res.writeHead(204).end();
    });
    const c = client(d.socketPath);
    const r = await c.request<{ Id: string }>('POST', '/containers/create', {
      query: { name: 'k8s_x', all: true, none: undefined, filters: { label: ['a=b'] } },
      body: { Image: 'busybox' },
    });
    assert.deepEqual(r, { status: 201, body: { Id: 'abc' } });
    const url = new URL(d.requests[0]?.url ?? '', 'http://x');
    assert.equal(url.pathname, '/v1.41/containers/create');
    assert.equal(url.searchParams.get('name'), 'k8s_x');
    assert.equal(url.searchParams.get('all'), '1');
    assert.equal(url.searchParams.has('none'), false);
    assert.deepEqual(JSON.parse(url.searchParams.get('filters') ?? ''), { label: ['a=b'] });
    assert.deepEqual(JSON.parse(d.requests[0]?.body ?? ''), { Image: 'busybox' });
    assert.deepEqual(await c.request('POST', '/containers/x/start'), { status: 204, body: undefined });
  });

  test('a status ≥ 400 throws RuntimeApiError with the status and the daemon message (JSON or text); `accept` answers it instead', async () => {
    const d = await fakeDaemon((req, res) => {
      if (req.url?.includes('text')) {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        return res.end('boom in plain text\n');
      }
      json(res, 404, { message: 'No such container: x' });
    });
    const c = client(d.socketPath);
    const err = await c.request('GET', '/containers/x/json').then(
      () => assert.fail('resolved'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RuntimeApiError);
    assert.equal(err.code, ErrorCode.RuntimeApi);
    assert.equal(err.status, 404);
    assert.equal(err.daemonMessage, 'No such container: x');
    assert.match(err.message, /GET \/containers\/x\/json: 404 No such container: x/);
    assert.ok(isStatus(err, 404));
    assert.deepEqual(await c.request('GET', '/containers/x/json', { accept: [404] }), { status: 404, body: { message: 'No such container: x' } });
    await assert.rejects(c.request('GET', '/text'), (e: unknown) => e instanceof RuntimeApiError && e.status === 500 && e.daemonMessage === 'boom in plain text');
  });

  test('a body over the cap fails (the answer is dropped); malformed JSON fails', async () => {
    const d = await fakeDaemon((req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      if (req.url?.includes('bad')) return res.end('{not json');
      res.end(JSON.stringify({ data: 'x'.repeat(4096) }));
    });
    const capped = client(d.socketPath, { maxBodyBytes: 1024 });
    await assert.rejects(capped.request('GET', '/big'), (e: unknown) => e instanceof RuntimeApiError && /larger than 1024 bytes/.test(e.message));
    const roomy = client(d.socketPath, { maxBodyBytes: 8192 });
    assert.equal(((await roomy.request<{ data: string }>('GET', '/big')).body?.data ?? '').length, 4096);
    await assert.rejects(roomy.request('GET', '/bad'), (e: unknown) => e instanceof RuntimeApiError && /malformed JSON/.test(e.message));
  });

  test('no answer: TimeoutError at the request timeout; also when the body stalls after the headers', async () => {
    const d = await fakeDaemon((req, res) => {
      if (req.url?.includes('stall')) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.write('{"partial":');
      }
      // else: never answered
    });
    const c = client(d.socketPath, { requestTimeoutMs: 150 });
    await within(
      assert.rejects(c.request('GET', '/silent'), (e: unknown) => e instanceof TimeoutError && /GET \/silent/.test(e.message)),
      10_000,
      'the timeout',
    );
    await within(
      assert.rejects(c.request('GET', '/stall'), (e: unknown) => e instanceof TimeoutError),
      10_000,
      'the timeout of a stalled body',
    );
  });

  test('a connection cut in the middle of the body fails as RuntimeApiError', async () => {
    const d = await fakeDaemon((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
      res.write('{"a":');
      setImmediate(() => res.socket?.destroy());
    });
    await assert.rejects(client(d.socketPath).request('GET', '/cut'), (e: unknown) => e instanceof RuntimeApiError && /cut/.test(e.message));
  });

  test('a missing socket, or a path nothing serves: RuntimeUnavailableError naming the path and how to start a daemon', async () => {
    const dir = tempDir('ledge-dockerapi-');
    cleanups.push(() => dir.cleanup());
    const missing = join(dir.path, 'missing.sock');
    const err = await client(missing)
      .request('GET', '/_ping')
      .then(
        () => assert.fail('resolved'),
        (e: unknown) => e,
      );
    assert.ok(err instanceof RuntimeUnavailableError);
    assert.equal(err.code, ErrorCode.RuntimeUnavailable);
    assert.ok(err.message.includes(`the container runtime socket ${missing} is not reachable (ENOENT)`), err.message);
    assert.ok(err.message.includes(`podman system service --time=0 unix://${missing}`), err.message);
    assert.match(err.message, /start Docker/);
    const notSocket = join(dir.path, 'file.sock');
    writeFileSync(notSocket, '');
    await assert.rejects(
      client(notSocket).request('GET', '/_ping'),
      (e: unknown) => e instanceof RuntimeUnavailableError && e.message.includes(notSocket) && /ECONNREFUSED/.test(e.message),
    );
  });
});

describe('DockerClient.stream', () => {
  test('resolves at the headers and is not timed out afterwards; a status ≥ 400 throws with the daemon message', async () => {
    const d = await fakeDaemon((req, res) => {
      if (req.url?.includes('bad')) return json(res, 409, { message: 'container is not running' });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{"n":1}\n');
      // the second line comes well after the request timeout
      setTimeout(() => res.end('{"n":2}\n'), 400);
    });
    const c = client(d.socketPath, { requestTimeoutMs: 100 });
    const { res } = await c.stream('GET', '/events');
    const values: unknown[] = [];
    const lines = new JsonLines((v) => values.push(v));
    await within(
      new Promise<void>((resolve, reject) => {
        res.on('data', (chunk: Buffer) => lines.push(chunk));
        res.on('end', resolve);
        res.on('error', reject);
      }),
      10_000,
      'the stream to end',
    );
    assert.deepEqual(values, [{ n: 1 }, { n: 2 }]);
    await assert.rejects(
      c.stream('POST', '/exec/x/start?bad=1'),
      (e: unknown) => e instanceof RuntimeApiError && e.status === 409 && e.daemonMessage === 'container is not running',
    );
  });

  test('abort() ends a stream the daemon keeps open', async () => {
    const d = await fakeDaemon((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{}\n');
    });
    const { res, abort } = await client(d.socketPath).stream('GET', '/events');
    const closed = new Promise<void>((resolve) => res.once('close', () => resolve()));
    abort();
    await within(closed, 5000, 'the aborted stream to close');
  });
});

describe('FrameDemuxer', () => {
  const input = Buffer.concat([frame(1, 'hello\n'), frame(2, 'oops\n'), frame(1, ''), frame(1, 'x'.repeat(300)), frame(2, 'bye')]);
  const expected = [
    ['stdout', 'hello\n'],
    ['stderr', 'oops\n'],
    ['stdout', ''],
    ['stdout', 'x'.repeat(300)],
    ['stderr', 'bye'],
  ];

  test('frames delivered whole and in order however the chunks split them (every split point, and byte by byte)', () => {
    for (let cut = 0; cut <= input.length; cut++) {
      const got: [StreamName, string][] = [];
      const d = new FrameDemuxer((s, p) => got.push([s, p.toString()]));
      d.push(input.subarray(0, cut));
      d.push(input.subarray(cut));
      assert.deepEqual(got, expected, `split at ${cut}`);
      assert.equal(d.pending, 0);
    }
    const got: [StreamName, string][] = [];
    const d = new FrameDemuxer((s, p) => got.push([s, p.toString()]));
    for (const byte of input) d.push(Buffer.from([byte]));
    assert.deepEqual(got, expected);
  });

  test('an unfinished frame is held (pending); a bad header or an oversized frame throws; stream 3 is the daemon reporting an error', () => {
    const got: string[] = [];
    const d = new FrameDemuxer((_s, p) => got.push(p.toString()));
    d.push(frame(1, 'abcdef').subarray(0, 10));
    assert.deepEqual(got, []);
    assert.equal(d.pending, 10);
    assert.throws(
      () => new FrameDemuxer(() => {}).push(Buffer.from('HTTP/1.1 garbage')),
      (e: unknown) => e instanceof RuntimeApiError && /malformed stream framing/.test(e.message),
    );
    assert.throws(
      () => new FrameDemuxer(() => {}, 4).push(frame(1, 'too long')),
      (e: unknown) => e instanceof RuntimeApiError && /larger than 4/.test(e.message),
    );
    const errors: string[] = [];
    const h = Buffer.alloc(8);
    h[0] = 3;
    h.writeUInt32BE(4, 4);
    new FrameDemuxer(
      () => assert.fail('not a stdout/stderr frame'),
      undefined,
      (m) => errors.push(m),
    ).push(Buffer.concat([h, Buffer.from('fail')]));
    assert.deepEqual(errors, ['fail']);
  });
});

describe('JsonLines', () => {
  test('lines split across chunks, CRLF, blank lines; an invalid line goes to onInvalid; end() parses an unterminated last line', () => {
    const values: unknown[] = [];
    const invalid: string[] = [];
    const j = new JsonLines(
      (v) => values.push(v),
      (l) => invalid.push(l),
    );
    for (const ch of Buffer.from('{"a":1}\r\n\n{"b":2}\nnot json\n{"c":3}')) j.push(Buffer.from([ch]));
    assert.deepEqual(values, [{ a: 1 }, { b: 2 }]);
    assert.deepEqual(invalid, ['not json']);
    j.end();
    assert.deepEqual(values, [{ a: 1 }, { b: 2 }, { c: 3 }]);
  });

  test('a line over the bound throws', () => {
    const j = new JsonLines(
      () => {},
      () => {},
      16,
    );
    assert.throws(
      () => j.push(Buffer.from(`"${'x'.repeat(32)}`)),
      (e: unknown) => e instanceof RuntimeApiError && /longer than 16/.test(e.message),
    );
  });
});
