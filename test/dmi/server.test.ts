// shared/dmi's gRPC server and client over real unix sockets in a temp dir: status mapping,
// trailers-only errors, malformed and oversized input sent with raw node:http2 (as a hostile or
// broken peer would), deadlines, cancellation, rate limiting, the socket file's life cycle, and the
// client against odd servers (a hand-written HTTP/2 server), reconnect and idle close.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import { frameMessage, GrpcStatus } from '../../shared/dmi/codec.js';
import { v1beta1 } from '../../shared/dmi/generated/dmi.js';
import {
  type CallContext,
  type DeviceManagerHandlers,
  deviceManagerClient,
  deviceMapperClient,
  type GrpcServer,
  type GrpcServerOptions,
  serveDeviceManager,
} from '../../shared/dmi/index.js';
import { DeviceInvalidError, DeviceUnknownError, DmiError } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { tempDir } from '../helpers/files.js';
import { eventually, within } from '../helpers/process.js';

const dir = tempDir('ledge-dmi-');
after(() => dir.cleanup());
let n = 0;
const sockPath = () => join(dir.path, `s${n++}.sock`);

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface RawResult {
  headers: http2.IncomingHttpHeaders;
  trailers?: http2.IncomingHttpHeaders;
  data: Buffer;
}
/** The grpc-status of a raw response, from the trailers or (trailers-only) the headers. */
const statusOf = (r: RawResult) => Number(r.trailers?.['grpc-status'] ?? r.headers['grpc-status']);

/**
 * A gRPC request written by hand on a fresh HTTP/2 connection (as Go clients dial per call).
 * `chunks` are written one by one; `end: false` leaves the request open (the answer must come anyway).
 */
function raw(socketPath: string, path: string, chunks: Buffer[], opts: { headers?: http2.OutgoingHttpHeaders; end?: boolean } = {}): Promise<RawResult> {
  return within(
    new Promise<RawResult>((resolve, reject) => {
      const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
      session.on('error', reject);
      const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...opts.headers });
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders | undefined;
      const data: Buffer[] = [];
      stream.on('response', (h) => (headers = h));
      stream.on('trailers', (t) => (trailers = t));
      stream.on('data', (d: Buffer) => data.push(d));
      stream.on('error', () => {}); // an RST after the answer is fine
      stream.on('close', () => {
        session.close();
        resolve({ headers, trailers, data: Buffer.concat(data) });
      });
      for (const c of chunks) stream.write(c);
      if (opts.end !== false) stream.end();
    }),
    10_000,
    `a raw answer on ${path}`,
  );
}

const okHandlers = (over: Partial<DeviceManagerHandlers> = {}): DeviceManagerHandlers => ({
  mapperRegister: async (req) => ({ deviceList: [{ name: req.mapper?.name ?? 'none' }] }),
  reportDeviceStatus: async () => ({}),
  reportDeviceStates: async () => ({}),
  ...over,
});

async function serve(handlers: DeviceManagerHandlers = okHandlers(), options?: GrpcServerOptions, path = sockPath()): Promise<GrpcServer> {
  const s = await serveDeviceManager(path, handlers, options);
  cleanups.push(() => s.close());
  return s;
}
function client(path: string, options?: Parameters<typeof deviceManagerClient>[1]) {
  const c = deviceManagerClient(path, options);
  cleanups.push(() => c.close());
  return c;
}
const reqBytes = (name: string) => Buffer.from(v1beta1.MapperRegisterRequest.encode({ withData: true, mapper: { name } }).finish());
const MR = '/v1beta1.DeviceManagerService/MapperRegister';

function recordingLogger() {
  const lines: string[] = [];
  const log: Logger = { debug: () => {}, info: () => {}, warn: (m) => lines.push(m), error: (m) => lines.push(m), child: () => log, enabled: () => true };
  return { log, lines };
}

describe('calls and status mapping', () => {
  test('a call returns the handler response; many parallel calls share one session', async () => {
    const s = await serve();
    const c = client(s.socketPath);
    const res = await c.mapperRegister({ mapper: { name: 'm1' } });
    assert.deepEqual(res, { modelList: [], deviceList: [{ name: 'm1' }] });
    const all = await Promise.all(Array.from({ length: 50 }, (_, i) => c.mapperRegister({ mapper: { name: `m${i}` } })));
    assert.deepEqual(
      all.map((r) => r.deviceList![0]!.name),
      Array.from({ length: 50 }, (_, i) => `m${i}`),
    );
  });

  test('more calls at once than the server allows streams: all answered', async () => {
    let running = 0;
    let most = 0;
    const s = await serve(
      okHandlers({
        mapperRegister: async (req) => {
          running++;
          most = Math.max(most, running);
          await new Promise((r) => setImmediate(r));
          running--;
          return { deviceList: [{ name: req.mapper?.name ?? '' }] };
        },
      }),
      { maxConcurrentStreams: 5 },
    );
    const c = client(s.socketPath);
    const all = await within(Promise.all(Array.from({ length: 60 }, (_, i) => c.mapperRegister({ mapper: { name: `m${i}` } }))), 20_000, '60 calls');
    assert.equal(all.length, 60);
    assert.ok(most <= 5, `at most 5 handlers at once (${most})`);
  });

  test('a grpc-timeout beyond the timer range is no deadline, not an immediate one', async () => {
    const s = await serve();
    const r = await raw(s.socketPath, MR, [frameMessage(reqBytes('far'))], { headers: { 'grpc-timeout': '99999999H' } });
    assert.equal(statusOf(r), 0);
    assert.ok(await client(s.socketPath, { timeoutMs: 2 ** 40 }).mapperRegister({}));
  });

  test('handler errors: DmiError status, DeviceInvalidError 3, DeviceUnknownError 5, other errors 2', async () => {
    const errs: Record<string, unknown> = {
      dmi: new DmiError('custom', { grpcStatus: GrpcStatus.FAILED_PRECONDITION }),
      invalid: new DeviceInvalidError('temperature: not an INT'),
      unknown: new DeviceUnknownError('no device default/x'),
      plain: new Error('boom'),
    };
    const s = await serve(
      okHandlers({
        mapperRegister: async (req) => {
          throw errs[req.mapper!.name!];
        },
      }),
    );
    const c = client(s.socketPath);
    const status = async (name: string) => (await c.mapperRegister({ mapper: { name } }).catch((e: DmiError) => e)) as DmiError;
    assert.equal((await status('dmi')).grpcStatus, GrpcStatus.FAILED_PRECONDITION);
    assert.equal((await status('dmi')).grpcMessage, 'custom');
    assert.equal((await status('invalid')).grpcStatus, GrpcStatus.INVALID_ARGUMENT);
    assert.equal((await status('invalid')).grpcMessage, 'temperature: not an INT');
    assert.equal((await status('unknown')).grpcStatus, GrpcStatus.NOT_FOUND);
    assert.equal((await status('plain')).grpcStatus, GrpcStatus.UNKNOWN);
    assert.equal((await status('plain')).grpcMessage, 'boom');
  });

  test('an error before any message is a trailers-only response', async () => {
    const s = await serve(
      okHandlers({
        mapperRegister: async () => {
          throw new DeviceUnknownError('gone');
        },
      }),
    );
    const r = await raw(s.socketPath, MR, [frameMessage(reqBytes('x'))]);
    assert.equal(r.headers[':status'], 200);
    assert.equal(r.headers['grpc-status'], '5', 'grpc-status in the headers');
    assert.equal(r.trailers, undefined);
    assert.equal(r.data.length, 0);
  });

  test('a success: headers, one message, trailers grpc-status 0 (any :authority, +proto accepted)', async () => {
    const s = await serve();
    const r = await raw(s.socketPath, MR, [frameMessage(reqBytes('go'))], { headers: { ':authority': 'localhost', 'content-type': 'application/grpc+proto' } });
    assert.equal(r.headers['content-type'], 'application/grpc');
    assert.equal(r.headers['grpc-status'], undefined);
    assert.equal(r.trailers?.['grpc-status'], '0');
    assert.equal(r.data.readUInt32BE(1), r.data.length - 5);
    assert.equal(v1beta1.MapperRegisterResponse.decode(r.data.subarray(5)).deviceList[0]!.name, 'go');
  });

  test('a response the handler builds wrongly is INTERNAL, not a crash', async () => {
    const s = await serve(okHandlers({ mapperRegister: async () => ({ deviceList: [null] }) as never }));
    const err = (await client(s.socketPath)
      .mapperRegister({})
      .catch((e) => e)) as DmiError;
    assert.equal(err.grpcStatus, GrpcStatus.INTERNAL);
  });
});

describe('bad input from a peer', () => {
  test('unknown service and unknown method: 12 UNIMPLEMENTED', async () => {
    const s = await serve();
    assert.equal(statusOf(await raw(s.socketPath, '/v1beta1.DeviceManagerService/Nope', [frameMessage(Buffer.alloc(0))])), GrpcStatus.UNIMPLEMENTED);
    assert.equal(statusOf(await raw(s.socketPath, '/v1beta1.DeviceMapperService/RegisterDevice', [frameMessage(Buffer.alloc(0))])), GrpcStatus.UNIMPLEMENTED);
    // The mapper client against a manager server: the same, through our client.
    const mc = deviceMapperClient(s.socketPath);
    cleanups.push(() => mc.close());
    assert.equal(((await mc.removeDevice({}).catch((e) => e)) as DmiError).grpcStatus, GrpcStatus.UNIMPLEMENTED);
  });

  test('not POST → 405, not gRPC content-type → 415', async () => {
    const s = await serve();
    const get = await raw(s.socketPath, MR, [], { headers: { ':method': 'GET' } });
    assert.equal(get.headers[':status'], 405);
    const text = await raw(s.socketPath, MR, [Buffer.from('hi')], { headers: { 'content-type': 'text/plain' } });
    assert.equal(text.headers[':status'], 415);
  });

  test('a request ending inside a frame: 13 INTERNAL', async () => {
    const s = await serve();
    const frame = frameMessage(reqBytes('abcdef'));
    assert.equal(statusOf(await raw(s.socketPath, MR, [frame.subarray(0, 3)])), GrpcStatus.INTERNAL, 'inside the header');
    assert.equal(statusOf(await raw(s.socketPath, MR, [frame.subarray(0, frame.length - 2)])), GrpcStatus.INTERNAL, 'inside the body');
  });

  test('a frame split over several writes is reassembled', async () => {
    const s = await serve();
    const frame = frameMessage(reqBytes('pieces'));
    const r = await raw(s.socketPath, MR, [frame.subarray(0, 2), frame.subarray(2, 7), frame.subarray(7)]);
    assert.equal(statusOf(r), 0);
    assert.equal(v1beta1.MapperRegisterResponse.decode(r.data.subarray(5)).deviceList[0]!.name, 'pieces');
  });

  test('no message, or two messages, on a unary call: 13 INTERNAL', async () => {
    const s = await serve();
    assert.equal(statusOf(await raw(s.socketPath, MR, [])), GrpcStatus.INTERNAL);
    assert.equal(statusOf(await raw(s.socketPath, MR, [Buffer.concat([frameMessage(reqBytes('a')), frameMessage(reqBytes('b'))])])), GrpcStatus.INTERNAL);
  });

  test('bad protobuf: 13 INTERNAL (as Go), logged once for many', async () => {
    const { log, lines } = recordingLogger();
    const s = await serve(okHandlers(), { log });
    for (let i = 0; i < 5; i++) {
      const r = await raw(s.socketPath, MR, [frameMessage(Buffer.from([0x12, 0x40, 0x01]))]);
      assert.equal(statusOf(r), GrpcStatus.INTERNAL);
      assert.match(decodeURIComponent(String(r.headers['grpc-message'])), /unmarshal/);
    }
    assert.equal(lines.length, 1, 'one line, not one per call');
  });

  test('compression: 12 UNIMPLEMENTED (flag set, or grpc-encoding gzip)', async () => {
    const s = await serve();
    const frame = frameMessage(reqBytes('z'));
    frame[0] = 1;
    assert.equal(statusOf(await raw(s.socketPath, MR, [frame])), GrpcStatus.UNIMPLEMENTED);
    assert.equal(statusOf(await raw(s.socketPath, MR, [frameMessage(reqBytes('z'))], { headers: { 'grpc-encoding': 'gzip' } })), GrpcStatus.UNIMPLEMENTED);
  });

  test('an oversized message is refused from its header: 8 RESOURCE_EXHAUSTED before the body is sent', async () => {
    const s = await serve(okHandlers(), { maxMessageBytes: 1024 });
    const header = Buffer.from([0, 0, 0x10, 0, 0]); // 1 MiB announced, nothing sent after it, request left open
    const r = await raw(s.socketPath, MR, [header], { end: false });
    assert.equal(statusOf(r), GrpcStatus.RESOURCE_EXHAUSTED);
    // Through our client, a real message over the limit.
    const err = (await client(s.socketPath)
      .mapperRegister({ mapper: { name: 'x'.repeat(2000) } })
      .catch((e) => e)) as DmiError;
    assert.equal(err.grpcStatus, GrpcStatus.RESOURCE_EXHAUSTED);
    // And the server still serves.
    assert.ok(await client(s.socketPath).mapperRegister({ mapper: { name: 'ok' } }));
  });

  test('malformed grpc-timeout: 13 INTERNAL', async () => {
    const s = await serve();
    assert.equal(statusOf(await raw(s.socketPath, MR, [frameMessage(reqBytes('t'))], { headers: { 'grpc-timeout': '1.5S' } })), GrpcStatus.INTERNAL);
  });

  test('garbage instead of HTTP/2 does not disturb the server', async () => {
    const s = await serve();
    await new Promise<void>((resolve) => {
      const sock = net.connect(s.socketPath, () => sock.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      sock.on('error', () => resolve());
      sock.on('close', () => resolve());
      sock.resume();
    });
    assert.ok(await client(s.socketPath).mapperRegister({}));
  });
});

describe('deadlines, cancellation, rate limit', () => {
  const hanging = () => {
    const seen: CallContext[] = [];
    const aborted: Promise<unknown>[] = [];
    const handlers = okHandlers({
      reportDeviceStates: (_req, ctx) => {
        seen.push(ctx);
        aborted.push(new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(ctx.signal.reason))));
        return new Promise<never>(() => {});
      },
    });
    return { seen, aborted, handlers };
  };

  test('the server ends a call at its grpc-timeout with 4 and aborts the handler', async () => {
    const h = hanging();
    const s = await serve(h.handlers);
    const body = frameMessage(Buffer.from(v1beta1.ReportDeviceStatesRequest.encode({ deviceName: 'd' }).finish()));
    // No client-side timer in a raw call: the answer can only come from the server's deadline.
    const r = await raw(s.socketPath, '/v1beta1.DeviceManagerService/ReportDeviceStates', [body], { headers: { 'grpc-timeout': '150m' } });
    assert.equal(statusOf(r), GrpcStatus.DEADLINE_EXCEEDED);
    const reason = (await within(h.aborted[0]!, 5000, 'abort')) as DmiError;
    assert.equal(reason.grpcStatus, GrpcStatus.DEADLINE_EXCEEDED);
    assert.equal(typeof h.seen[0]!.deadline, 'number');
  });

  test('our client: DEADLINE_EXCEEDED at its timeout; CANCELLED by its signal; the handler is told either way', async () => {
    const h = hanging();
    const s = await serve(h.handlers);
    const c = client(s.socketPath, { timeoutMs: 150 });
    assert.equal(((await c.reportDeviceStates({}).catch((e) => e)) as DmiError).grpcStatus, GrpcStatus.DEADLINE_EXCEEDED);
    const ac = new AbortController();
    const p = c.reportDeviceStates({}, { timeoutMs: 60_000, signal: ac.signal });
    await eventually(() => h.seen.length === 2, 5000, 'the second call to reach the handler');
    ac.abort();
    assert.equal(((await p.catch((e) => e)) as DmiError).grpcStatus, GrpcStatus.CANCELLED);
    await within(Promise.all(h.aborted), 5000, 'both handler signals to abort');
  });

  test('over the rate limit: 8 RESOURCE_EXHAUSTED, one log line for the flood', async () => {
    const { log, lines } = recordingLogger();
    const s = await serve(okHandlers(), { callsPerSecond: 1, burst: 5, now: () => 1000, log });
    const c = client(s.socketPath);
    const results = await Promise.all(
      Array.from({ length: 40 }, () =>
        c.mapperRegister({}).then(
          () => 0,
          (e: DmiError) => e.grpcStatus,
        ),
      ),
    );
    assert.equal(results.filter((x) => x === 0).length, 5);
    assert.equal(results.filter((x) => x === GrpcStatus.RESOURCE_EXHAUSTED).length, 35);
    assert.equal(lines.length, 1);
  });

  test('closing the server: in-flight calls end 14 UNAVAILABLE, handlers aborted, socket file removed', async () => {
    const h = hanging();
    const path = sockPath();
    const s = await serveDeviceManager(path, h.handlers);
    const c = client(path);
    const p = c.reportDeviceStates({}).catch((e: DmiError) => e);
    await eventually(() => h.seen.length === 1, 5000, 'the call to reach the handler');
    await within(s.close(), 10_000, 'the server to close');
    assert.equal((await p).grpcStatus, GrpcStatus.UNAVAILABLE);
    await within(h.aborted[0]!, 5000, 'abort');
    assert.equal(existsSync(path), false);
  });
});

describe('the socket file', () => {
  test('created 0660', async () => {
    const s = await serve();
    assert.equal(statSync(s.socketPath).mode & 0o777, 0o660);
  });

  test('a stale socket (its process died) is replaced', async () => {
    const path = sockPath();
    // A process that listens and exits without closing leaves its socket file behind.
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`], { timeout: 10_000 });
    assert.ok(statSync(path).isSocket(), 'the stale socket exists');
    const s = await serve(okHandlers(), {}, path);
    assert.ok(await client(s.socketPath).mapperRegister({}));
  });

  test('a live server on the path: a clear error, and the live server keeps working', async () => {
    const s = await serve();
    await assert.rejects(serveDeviceManager(s.socketPath, okHandlers()), /another server is listening/);
    assert.ok(await client(s.socketPath).mapperRegister({}));
  });

  test('a path that is not a socket is never removed', async () => {
    const path = sockPath();
    writeFileSync(path, 'precious');
    await assert.rejects(serveDeviceManager(path, okHandlers()), /not a socket/);
    assert.ok(statSync(path).isFile());
  });
});

describe('the client', () => {
  test('no socket: 14 UNAVAILABLE; after the server starts, the same client works', async () => {
    const path = sockPath();
    const c = client(path);
    assert.equal(((await c.mapperRegister({}).catch((e) => e)) as DmiError).grpcStatus, GrpcStatus.UNAVAILABLE);
    await serve(okHandlers(), {}, path);
    assert.ok(await c.mapperRegister({}));
  });

  test('reconnects after the server restarts', async () => {
    const path = sockPath();
    const s1 = await serveDeviceManager(path, okHandlers());
    const c = client(path);
    assert.ok(await c.mapperRegister({}));
    await s1.close();
    assert.equal(((await c.mapperRegister({}).catch((e) => e)) as DmiError).grpcStatus, GrpcStatus.UNAVAILABLE);
    await serve(okHandlers(), {}, path);
    assert.ok(await c.mapperRegister({}));
  });

  test('a closed client refuses calls', async () => {
    const s = await serve();
    const c = deviceManagerClient(s.socketPath);
    c.close();
    assert.equal(((await c.mapperRegister({}).catch((e) => e)) as DmiError).grpcStatus, GrpcStatus.UNAVAILABLE);
  });

  /** A hand-written HTTP/2 server: `answer` decides each response. */
  async function oddServer(answer: (stream: http2.ServerHttp2Stream) => void) {
    const path = sockPath();
    const server = http2.createServer();
    const sessions: { closed: boolean }[] = [];
    server.on('session', (s) => {
      const rec = { closed: false };
      sessions.push(rec);
      s.on('close', () => (rec.closed = true));
    });
    server.on('stream', (stream) => {
      stream.on('error', () => {});
      stream.resume();
      stream.on('end', () => answer(stream));
    });
    await new Promise<void>((r) => server.listen(path, r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    return { path, sessions };
  }
  const okBody = () => Buffer.from(v1beta1.MapperRegisterResponse.encode({ deviceList: [{ name: 'odd' }] }).finish());

  test('a response in many small DATA frames, trailers after', async () => {
    const { path } = await oddServer((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      const f = frameMessage(okBody());
      for (let i = 0; i < f.length; i++) stream.write(f.subarray(i, i + 1));
      stream.end();
    });
    assert.equal((await client(path).mapperRegister({})).deviceList![0]!.name, 'odd');
  });

  test('HTTP statuses without grpc-status, missing status, two messages, oversized response', async () => {
    const cases: [(s: http2.ServerHttp2Stream) => void, number][] = [
      [(s) => s.respond({ ':status': 404 }, { endStream: true }), GrpcStatus.UNIMPLEMENTED],
      [(s) => s.respond({ ':status': 503 }, { endStream: true }), GrpcStatus.UNAVAILABLE],
      [(s) => s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { endStream: true }), GrpcStatus.INTERNAL],
      [
        (s) => {
          s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
          s.end(Buffer.concat([frameMessage(okBody()), frameMessage(okBody())]));
        },
        GrpcStatus.INTERNAL,
      ],
      [
        (s) => {
          s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
          s.end(frameMessage(Buffer.alloc(5000)));
        },
        GrpcStatus.RESOURCE_EXHAUSTED,
      ],
      [
        (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '9', 'grpc-message': 'precondition%20%C3%BC' }, { endStream: true }),
        GrpcStatus.FAILED_PRECONDITION,
      ],
    ];
    for (const [answer, want] of cases) {
      const { path } = await oddServer(answer);
      const err = (await client(path, { maxMessageBytes: 1024 })
        .mapperRegister({})
        .catch((e) => e)) as DmiError;
      assert.ok(err instanceof DmiError, `a DmiError for the case wanting ${want}`);
      assert.equal(err.grpcStatus, want, err.message);
      if (want === GrpcStatus.FAILED_PRECONDITION) assert.equal(err.grpcMessage, 'precondition ü');
    }
  });

  test('a server that ignores grpc-timeout and never answers: the client ends the call at its deadline', async () => {
    const { path } = await oddServer(() => {});
    const call = client(path, { timeoutMs: 150 })
      .mapperRegister({})
      .catch((e) => e);
    const err = (await within(call, 10_000, 'the client deadline')) as DmiError;
    assert.equal(err.grpcStatus, GrpcStatus.DEADLINE_EXCEEDED);
  });

  test('an idle session is closed after idleTimeoutMs; the next call opens a new one', async () => {
    const { path, sessions } = await oddServer((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(frameMessage(okBody()));
    });
    const c = client(path, { idleTimeoutMs: 100 });
    await c.mapperRegister({});
    await c.mapperRegister({});
    assert.equal(sessions.length, 1, 'calls share a session');
    await eventually(() => sessions[0]!.closed, 10_000, 'the idle session to close');
    await c.mapperRegister({});
    assert.equal(sessions.length, 2);
  });
});
