/**
 * Probes (edge/edged/probes.ts): the kubelet's timing and thresholds on fake timers (initial
 * delay, period, thresholds, results published on change only, hold after a liveness/startup
 * failure, stop, no overlap, exec timeouts), and the handlers against real loopback servers
 * (httpGet status ranges, named ports, headers, redirects, body bound, timeout, HTTPS without
 * verification; tcpSocket; grpc).
 */
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Probe } from '@kubernetes/client-node';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { loadOrCreatePki } from '../../apiserver/pki.js';
import { type ProbeContext, type ProbeExecResult, type ProbeResult, Prober, type ProberOptions, type ProbeTimers, probeOnce } from '../../edge/edged/probes.js';
import { PodSpecError } from '../../shared/errors/index.js';
import { createLogger } from '../../shared/log/index.js';
import { tempDir } from '../helpers/files.js';
import { eventually, within } from '../helpers/process.js';

/** Deterministic timers: `advance(ms)` fires what is due, in order, letting promise callbacks run between firings. */
class FakeTimers implements ProbeTimers {
  now = 0;
  private seq = 0;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.pending.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  get size(): number {
    return this.pending.size;
  }
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    await settle();
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.pending) if (e[1].at <= end && (!next || e[1].at < next[1].at || (e[1].at === next[1].at && e[0] < next[0]))) next = e;
      if (!next) break;
      this.pending.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
      await settle();
    }
    this.now = end;
  }
}

/** Lets queued promise callbacks (a fake exec's answer) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

interface Harness {
  timers: FakeTimers;
  results: { at: number; result: ProbeResult; message: string }[];
  calls: { at: number; command: string[]; timeoutMs: number }[];
  prober: Prober;
}

/** A prober with an exec probe whose answers come from `script` (exit codes, in order; the last repeats). */
function execHarness(
  probe: Omit<V1Probe, 'exec'>,
  kind: ProberOptions['kind'],
  script: (n: number) => ProbeExecResult | Promise<ProbeExecResult>,
  extra: Partial<ProberOptions> = {},
): Harness {
  const timers = new FakeTimers();
  const results: Harness['results'] = [];
  const calls: Harness['calls'] = [];
  const prober = new Prober({
    probe: { ...probe, exec: { command: ['check', 'health'] } },
    kind,
    host: '127.0.0.1',
    namedPorts: {},
    timers,
    exec: async (command, timeoutMs) => {
      calls.push({ at: timers.now, command, timeoutMs });
      return script(calls.length);
    },
    onResult: (result, message) => void results.push({ at: timers.now, result, message }),
    ...extra,
  });
  return { timers, results, calls, prober };
}

const exit = (exitCode: number, stdout = ''): ProbeExecResult => ({ exitCode, stdout, stderr: '', timedOut: false });

describe('Prober timing and thresholds (fake timers)', () => {
  test('defaults: first probe at once, every 10 s, timeout 1 s, a failure published after 3 in a row, a success after 1', async () => {
    const codes = [0, 1, 1, 1, 1, 0];
    const h = execHarness({}, 'readiness', (n) => exit(codes[n - 1] ?? 0, `out${n}`));
    h.prober.start();
    await h.timers.advance(0);
    await h.timers.advance(60_000);
    assert.deepEqual(
      h.calls.map((c) => c.at),
      [0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000],
    );
    assert.deepEqual(h.calls[0], { at: 0, command: ['check', 'health'], timeoutMs: 1000 });
    assert.deepEqual(h.results, [
      { at: 0, result: 'success', message: 'out1' },
      { at: 30_000, result: 'failure', message: 'out4' },
      { at: 50_000, result: 'success', message: 'out6' },
    ]);
    h.prober.stop();
  });

  test('initialDelaySeconds, periodSeconds and successThreshold (readiness), results only on change', async () => {
    const codes = [1, 0, 1, 0, 0, 0, 0];
    const h = execHarness({ initialDelaySeconds: 5, periodSeconds: 2, successThreshold: 2, failureThreshold: 1, timeoutSeconds: 3 }, 'readiness', (n) => exit(codes[n - 1] ?? 0));
    h.prober.start();
    await h.timers.advance(4_999);
    assert.equal(h.calls.length, 0, 'nothing before the initial delay');
    await h.timers.advance(1);
    assert.deepEqual(
      h.calls.map((c) => [c.at, c.timeoutMs]),
      [[5_000, 3_000]],
    );
    await h.timers.advance(12_000);
    assert.deepEqual(
      h.calls.map((c) => c.at),
      [5_000, 7_000, 9_000, 11_000, 13_000, 15_000, 17_000],
    );
    // 1 → failure at once (threshold 1); 0 once is not enough; 1 again (no change, no call); 0, 0 → success.
    assert.deepEqual(
      h.results.map((r) => [r.at, r.result]),
      [
        [5_000, 'failure'],
        [13_000, 'success'],
      ],
    );
    assert.equal(h.prober.result, 'success');
    h.prober.stop();
  });

  test('a liveness failure is published once and the prober holds until start() again (a new container run)', async () => {
    const h = execHarness({ periodSeconds: 1, failureThreshold: 2 }, 'liveness', () => exit(1, 'dead'));
    h.prober.start();
    await h.timers.advance(10_000);
    assert.deepEqual(
      h.results.map((r) => [r.at, r.result, r.message]),
      [[1_000, 'failure', 'dead']],
    );
    assert.equal(h.calls.length, 2, 'no probing while holding');
    assert.equal(h.prober.running, false);
    assert.equal(h.timers.size, 0, 'no timer left');
    h.prober.start();
    await h.timers.advance(1_000);
    assert.equal(h.calls.length, 4);
    assert.equal(h.results.length, 2, 'a restarted prober publishes its first result again');
    h.prober.stop();
  });

  test('a startup probe stops once it succeeded', async () => {
    const codes = [1, 1, 0];
    const h = execHarness({ periodSeconds: 1, failureThreshold: 30 }, 'startup', (n) => exit(codes[n - 1] ?? 0));
    h.prober.start();
    await h.timers.advance(10_000);
    assert.deepEqual(
      h.results.map((r) => [r.at, r.result]),
      [[2_000, 'success']],
    );
    assert.equal(h.calls.length, 3);
    assert.equal(h.prober.running, false);
  });

  test('stop() stops: no more attempts, and an answer still in flight is dropped', async () => {
    let answer: (r: ProbeExecResult) => void = () => {};
    const h = execHarness({ periodSeconds: 1, failureThreshold: 1 }, 'readiness', () => new Promise<ProbeExecResult>((r) => (answer = r)));
    h.prober.start();
    await h.timers.advance(0);
    assert.equal(h.calls.length, 1);
    h.prober.stop();
    answer(exit(1));
    await h.timers.advance(10_000);
    assert.equal(h.calls.length, 1);
    assert.deepEqual(h.results, []);
    assert.equal(h.prober.running, false);
  });

  test('a probe never overlaps itself: a period that ends during an attempt runs the next one right after it (one owed, not several)', async () => {
    const answers: ((r: ProbeExecResult) => void)[] = [];
    const h = execHarness({ periodSeconds: 1, timeoutSeconds: 10 }, 'readiness', () => new Promise<ProbeExecResult>((r) => answers.push(r)));
    h.prober.start();
    await h.timers.advance(5_500);
    assert.equal(h.calls.length, 1, 'still the first attempt after 5 periods');
    answers[0]?.(exit(0));
    await h.timers.advance(0);
    assert.deepEqual(
      h.calls.map((c) => c.at),
      [0, 5_500],
      'the owed attempt runs at once',
    );
    answers[1]?.(exit(0));
    await h.timers.advance(1_000);
    assert.deepEqual(
      h.calls.map((c) => c.at),
      [0, 5_500, 6_500],
    );
    answers[2]?.(exit(0));
    h.prober.stop();
  });

  test('exec timeouts are failures: the runtime reports one, or the exec never answers (given up after the timeout + 1 s)', async () => {
    const timedOut = execHarness({ failureThreshold: 1 }, 'readiness', () => ({ exitCode: -1, stdout: '', stderr: '', timedOut: true }));
    timedOut.prober.start();
    await timedOut.timers.advance(0);
    assert.deepEqual(timedOut.results, [{ at: 0, result: 'failure', message: 'command "check health" timed out' }]);
    timedOut.prober.stop();

    const hung = execHarness({ failureThreshold: 1, periodSeconds: 1 }, 'readiness', () => new Promise<ProbeExecResult>(() => {}));
    hung.prober.start();
    await hung.timers.advance(1_999);
    assert.deepEqual(hung.results, []);
    assert.equal(hung.calls.length, 1);
    await hung.timers.advance(1);
    assert.deepEqual(hung.results, [{ at: 2_000, result: 'failure', message: 'command "check health" timed out' }]);
    assert.deepEqual(
      hung.calls.map((c) => c.at),
      [0, 2_000],
      'the owed attempt follows',
    );
    hung.prober.stop();
  });

  test('exec output and errors: non-zero exit with its output, without output its code; a throwing exec is a failure; a throwing listener is logged', async () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'warn', format: 'json', write: (l) => void lines.push(l) });
    const h = execHarness(
      { failureThreshold: 1, periodSeconds: 1 },
      'readiness',
      (n) => {
        if (n === 1) return { exitCode: 2, stdout: 'partial ', stderr: 'broken', timedOut: false };
        if (n === 2) return exit(0);
        if (n === 3) return exit(7);
        throw new Error('no such container');
      },
      {
        log,
        onResult: () => {
          throw new Error('listener bug');
        },
      },
    );
    const seen: string[] = [];
    const ctx: ProbeContext = { exec: async () => exit(3), host: '127.0.0.1', namedPorts: {}, timeoutMs: 1000, timers: h.timers };
    seen.push((await probeOnce({ exec: { command: ['x'] } }, ctx)).message);
    seen.push((await probeOnce({ exec: { command: [] } }, ctx)).message);
    seen.push((await probeOnce({ exec: { command: ['x'] } }, { ...ctx, exec: async () => Promise.reject(new Error('gone')) })).message);
    assert.deepEqual(seen, ['command "x" exited with 3', 'exec probe has no command', 'probe errored: gone']);
    h.prober.start();
    await h.timers.advance(3_000);
    assert.equal(h.calls.length, 4, 'it keeps probing although the listener throws');
    assert.ok(lines.some((l) => l.includes('listener bug')));
    h.prober.stop();
  });

  test('the constructor refuses probes Kubernetes would not accept', () => {
    const base = { kind: 'liveness' as const, exec: async () => exit(0), host: 'h', namedPorts: {}, onResult: () => {} };
    const refuse = (probe: V1Probe, kind: ProberOptions['kind'], message: RegExp) =>
      assert.throws(
        () => new Prober({ ...base, kind, probe }),
        (err: unknown) => err instanceof PodSpecError && message.test(err.message),
      );
    refuse({}, 'liveness', /liveness probe has no handler/);
    refuse({ exec: { command: ['a'] }, tcpSocket: { port: 1 } }, 'readiness', /more than one handler \(exec, tcpSocket\)/);
    refuse({ exec: { command: ['a'] }, successThreshold: 2 }, 'liveness', /liveness probe successThreshold must be 1/);
    refuse({ exec: { command: ['a'] }, successThreshold: 2 }, 'startup', /startup probe successThreshold must be 1/);
    refuse({ exec: { command: ['a'] }, periodSeconds: -1 }, 'readiness', /periodSeconds must be a non-negative integer/);
    refuse({ exec: { command: ['a'] }, initialDelaySeconds: 1.5 }, 'readiness', /initialDelaySeconds/);
    const p = new Prober({ ...base, kind: 'readiness', probe: { exec: { command: ['a'] }, periodSeconds: 0, timeoutSeconds: 0, successThreshold: 0, failureThreshold: 0 } });
    assert.deepEqual([p.periodMs, p.timeoutMs, p.successThreshold, p.failureThreshold, p.initialDelayMs], [10_000, 1_000, 1, 3, 0], 'zeros are the defaults');
  });
});

describe('handlers against real loopback servers', () => {
  let server: http.Server;
  let port = 0;
  let tlsServer: https.Server;
  let tlsPort = 0;
  const seen: http.IncomingHttpHeaders[] = [];
  const pkiDir = tempDir('ledge-probes-pki-');
  const hanging: http.ServerResponse[] = [];

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.push(req.headers);
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/ok') return void res.end('fine');
    if (url.pathname === '/missing') return void res.writeHead(404).end('no');
    if (url.pathname === '/error') return void res.writeHead(500).end();
    if (url.pathname === '/moved') return void res.writeHead(302, { location: '/ok' }).end();
    if (url.pathname === '/moved-abs') return void res.writeHead(301, { location: `http://127.0.0.1:${port}/ok?from=abs` }).end();
    if (url.pathname === '/elsewhere') return void res.writeHead(302, { location: `http://localhost:${port}/missing` }).end('bye');
    if (url.pathname === '/loop') return void res.writeHead(307, { location: '/loop' }).end();
    if (url.pathname === '/not-modified') return void res.writeHead(304).end();
    if (url.pathname === '/big') {
      res.writeHead(200);
      res.write(Buffer.alloc(64 * 1024, 'a'));
      hanging.push(res); // never ended: the prober stops reading at 10 KiB
      return;
    }
    if (url.pathname === '/hang') return void hanging.push(res);
    res.writeHead(400).end();
  };

  before(async () => {
    server = http.createServer(handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    const pki = await loadOrCreatePki(pkiDir.path, ['127.0.0.1']);
    tlsServer = https.createServer({ cert: pki.serverCertPem, key: pki.serverKeyPem }, handler);
    await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
    tlsPort = (tlsServer.address() as AddressInfo).port;
  });
  after(() => {
    for (const r of hanging) r.destroy();
    server.closeAllConnections();
    server.close();
    tlsServer.closeAllConnections();
    tlsServer.close();
    pkiDir.cleanup();
  });

  const ctx = (timers?: ProbeTimers): ProbeContext => ({
    exec: async () => exit(0),
    host: '127.0.0.1',
    namedPorts: { web: port, tls: tlsPort },
    timeoutMs: 5_000,
    ...(timers ? { timers } : {}),
  });
  const get = (path: string, extra: Record<string, unknown> = {}, c = ctx()) => within(probeOnce({ httpGet: { port, path, ...extra } }, c), 10_000, `GET ${path}`);

  test('httpGet: 2xx success (body as message), 404/500 failures, named port, path without a slash, scheme HTTPS without verification', async () => {
    assert.deepEqual(await get('/ok'), { result: 'success', message: 'fine' });
    assert.deepEqual(await get('/missing'), { result: 'failure', message: 'HTTP probe failed with statuscode: 404' });
    assert.deepEqual(await get('/error'), { result: 'failure', message: 'HTTP probe failed with statuscode: 500' });
    assert.deepEqual(await get('ok', { port: 'web' }), { result: 'success', message: 'fine' });
    assert.deepEqual(await get('/ok', { port: 'nope' }), { result: 'failure', message: "couldn't find port: nope" });
    assert.deepEqual(await get('/ok', { port: 70000 }), { result: 'failure', message: 'invalid port number: 70000' });
    assert.deepEqual(await get('/ok', { port: 'tls', scheme: 'HTTPS' }), { result: 'success', message: 'fine' });
    assert.deepEqual(await get('/ok', { scheme: 'FTP' }), { result: 'failure', message: 'unsupported scheme FTP' });
  });

  test("httpGet headers: kubelet's defaults, the spec's headers (repeated ones kept), Host", async () => {
    seen.length = 0;
    await get('/ok');
    assert.equal(seen[0]?.['user-agent'], 'kube-probe/ledge');
    assert.equal(seen[0]?.accept, '*/*');
    assert.equal(seen[0]?.connection, 'close');
    await get('/ok', {
      httpHeaders: [
        { name: 'User-Agent', value: 'mine' },
        { name: 'X-Probe', value: 'a' },
        { name: 'x-probe', value: 'b' },
        { name: 'Host', value: 'app.example' },
      ],
    });
    assert.equal(seen[1]?.['user-agent'], 'mine');
    assert.equal(seen[1]?.['x-probe'], 'a, b');
    assert.equal(seen[1]?.host, 'app.example');
  });

  test('httpGet redirects: followed to the same host, ended (success) to another, at most 10; other 3xx are success', async () => {
    assert.deepEqual(await get('/moved'), { result: 'success', message: 'fine' });
    seen.length = 0;
    assert.deepEqual(await get('/moved-abs'), { result: 'success', message: 'fine' });
    assert.equal(seen.length, 2);
    seen.length = 0;
    assert.deepEqual(await get('/elsewhere'), { result: 'success', message: 'Probe terminated redirects, Response body: bye' });
    assert.equal(seen.length, 1, 'localhost is another host name: not followed');
    seen.length = 0;
    const loop = await get('/loop');
    assert.equal(loop.result, 'failure');
    assert.match(loop.message, /stopped after 10 redirects/);
    assert.equal(seen.length, 11, 'the first request and 10 redirects');
    assert.deepEqual(await get('/not-modified'), { result: 'success', message: 'Probe terminated redirects, Response body: ' });
  });

  test('httpGet reads at most 10 KiB of a body and does not wait for the rest', async () => {
    const r = await get('/big');
    assert.equal(r.result, 'success');
    assert.equal(r.message.length, 10 * 1024);
  });

  test('httpGet timeout (fake timers) and a refused connection are failures', async () => {
    const timers = new FakeTimers();
    const pending = probeOnce({ httpGet: { port, path: '/hang' } }, ctx(timers));
    await eventually(() => hanging.length > 0 && seen.some((h) => h.host === `127.0.0.1:${port}`), 5_000, 'the request to arrive');
    await timers.advance(5_000);
    assert.deepEqual(await within(pending, 5_000, 'the timed-out probe'), {
      result: 'failure',
      message: `Get "http://127.0.0.1:${port}/hang": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`,
    });
    const closed = await freePort();
    assert.deepEqual(await get('/ok', { port: closed }), {
      result: 'failure',
      message: `Get "http://127.0.0.1:${closed}/ok": dial tcp 127.0.0.1:${closed}: connect: connection refused`,
    });
  });

  test('tcpSocket: a connection is success, a refused one failure; named ports; grpc is not supported', async () => {
    assert.deepEqual(await probeOnce({ tcpSocket: { port: 'web' } }, ctx()), { result: 'success', message: '' });
    const closed = await freePort();
    assert.deepEqual(await probeOnce({ tcpSocket: { port: closed, host: '127.0.0.1' } }, ctx()), {
      result: 'failure',
      message: `dial tcp 127.0.0.1:${closed}: connect: connection refused`,
    });
    assert.deepEqual(await probeOnce({ grpc: { port: 1 } }, ctx()), { result: 'failure', message: 'grpc probes are not supported' });
  });

  test('a Prober over httpGet: a 404 becomes a published failure after failureThreshold periods, then recovery', async () => {
    const timers = new FakeTimers();
    const results: [number, ProbeResult, string][] = [];
    const requests = () => seen.length;
    seen.length = 0;
    const probe: V1Probe = { httpGet: { port: 'web', path: '/missing' }, periodSeconds: 1, failureThreshold: 2 };
    const prober = new Prober({
      probe,
      kind: 'readiness',
      exec: async () => exit(0),
      host: '127.0.0.1',
      namedPorts: { web: port },
      timers,
      onResult: (r, m) => void results.push([timers.now, r, m]),
    });
    const step = async (n: number) => {
      await timers.advance(n === 0 ? 0 : 1_000);
      await eventually(() => requests() >= n + 1 && !prober.busy, 5_000, `attempt ${n + 1} to finish`);
    };
    prober.start();
    await step(0);
    assert.deepEqual(results, [], 'one failure is below the threshold');
    await step(1);
    assert.deepEqual(results, [[1_000, 'failure', 'HTTP probe failed with statuscode: 404']]);
    probe.httpGet!.path = '/ok'; // read at each attempt
    await step(2);
    assert.deepEqual(results[1], [2_000, 'success', 'fine']);
    prober.stop();
    await timers.advance(5_000);
    assert.equal(requests(), 3, 'nothing after stop()');
  });
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}
