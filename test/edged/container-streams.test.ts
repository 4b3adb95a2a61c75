/**
 * @module
 * Interactive sessions of the `container` runtime (kubectl exec / attach): execStream and attach of
 * edge/edged/container-runtime.ts over the hijacked connections of edge/edged/docker-api.ts.
 *
 * Without a daemon: Docker's multiplexed framing (FrameDemuxer) demultiplexed the same whatever the
 * chunking (split at every byte boundary, two and three ways, and byte by byte); DockerClient.hijack
 * against a fake daemon answering 101 or 200 (bytes sent with the headers come first, stdin reaches
 * it, the output after a half-close is still read, an error status throws); execStream against a
 * fake Docker daemon (a start refused with an OCI failure ends the session with 127 and the message;
 * a start answered 200 streams in the body, demultiplexed, then the exit code; an unknown container
 * rejects with RuntimeError).
 *
 * With real containers, through a private Podman service (test/helpers/podman.ts; skipped with one
 * message where there is no root or no Podman): exec stdout and stderr apart with the exit code;
 * stdin, its end (the output after it delivered) and 1 MB through it; a TTY exec (a /dev/pts
 * terminal, its first size, a resize); a command that cannot be started (127 / 126 with the
 * runtime's message); cancel (137, the process and its children gone); pause/resume over 2 MiB with
 * nothing lost; attach to a running ticker (new output only; a detach leaves it running), attach -i
 * to a `cat` container made with stdin, a TTY container (echo, resize, log still copied), the exit
 * code of a container that exits while attached; exec and attach to a stopped container rejected.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DockerEngineRuntime } from '../../edge/edged/container-runtime.js';
import { DockerClient, FrameDemuxer, type StreamName } from '../../edge/edged/docker-api.js';
import { readCriLog } from '../../edge/edged/logs.js';
import type { ContainerConfig, StreamOptions, StreamOutput, StreamSession } from '../../edge/edged/runtime.js';
import { RuntimeError } from '../../edge/edged/runtime.js';
import { RuntimeApiError } from '../../shared/errors/index.js';
import { eventually, within } from '../helpers/process.js';
import { podmanSkipReason, startPodman, type PodmanService } from '../helpers/podman.js';
import { containerRig, type FakeDaemon } from './container-rig.js';

const WAIT_MS = 20_000;

const { dir, sandboxConfig, containerConfig, fakeDaemon: fakeHttpDaemon } = containerRig('ledge-cst-');

// ---- The demuxer, no daemon -------------------------------------------------------------------------

function frame(type: number, payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(8);
  header[0] = type;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

describe('FrameDemuxer: Docker stdout/stderr framing, chunked anyhow', () => {
  const big = Buffer.from(Array.from({ length: 300 }, (_, i) => String.fromCharCode(33 + (i % 90))).join(''));
  const frames: [StreamName, string][] = [
    ['stdout', 'out\n'],
    ['stderr', 'err\n'],
    ['stdout', ''],
    ['stdout', big.toString()],
    ['stderr', 'x'],
    ['stdout', 'end'],
  ];
  const wire = Buffer.concat(frames.map(([s, p]) => frame(s === 'stdout' ? 1 : 2, p)));

  function run(chunks: Buffer[]): { got: [StreamName, string][]; pending: number } {
    const got: [StreamName, string][] = [];
    const d = new FrameDemuxer((s, p) => got.push([s, p.toString()]));
    for (const c of chunks) d.push(c);
    return { got, pending: d.pending };
  }

  test('split in two at every byte boundary', () => {
    for (let i = 0; i <= wire.length; i++) {
      const r = run([wire.subarray(0, i), wire.subarray(i)]);
      assert.deepEqual(r.got, frames, `split at ${i}`);
      assert.equal(r.pending, 0);
    }
  });

  test('split in three at every pair of byte boundaries', () => {
    for (let i = 0; i <= wire.length; i++) {
      for (let j = i; j <= wire.length; j++) {
        const r = run([wire.subarray(0, i), wire.subarray(i, j), wire.subarray(j)]);
        assert.deepEqual(r.got, frames, `split at ${i}, ${j}`);
      }
    }
  });

  test('one byte at a time; a frame is delivered only once whole', () => {
    const got: [StreamName, string][] = [];
    const d = new FrameDemuxer((s, p) => got.push([s, p.toString()]));
    const first = frame(1, 'out\n');
    for (let i = 0; i < first.length - 1; i++) {
      d.push(wire.subarray(i, i + 1));
      assert.equal(got.length, 0, `nothing before the frame's last byte (byte ${i})`);
      assert.equal(d.pending, i + 1);
    }
    for (let i = first.length - 1; i < wire.length; i++) d.push(wire.subarray(i, i + 1));
    assert.deepEqual(got, frames);
    assert.equal(d.pending, 0);
  });

  test("a daemon's error frame (stream 3) goes to onSystemError; a broken header throws", () => {
    const errors: string[] = [];
    const got: string[] = [];
    const d = new FrameDemuxer(
      (_, p) => got.push(p.toString()),
      undefined,
      (m) => errors.push(m),
    );
    const w = Buffer.concat([frame(1, 'a'), frame(3, 'boom'), frame(1, 'b')]);
    for (let i = 0; i < w.length; i++) d.push(w.subarray(i, i + 1));
    assert.deepEqual(got, ['a', 'b']);
    assert.deepEqual(errors, ['boom']);
    assert.throws(() => new FrameDemuxer(() => {}).push(Buffer.from('hello world!')), RuntimeApiError);
  });
});

// ---- DockerClient.hijack against a fake daemon ------------------------------------------------------

describe('DockerClient.hijack (a fake daemon on a unix socket)', () => {
  /** A daemon that answers `head`, echoes what it reads and, once the client half-closes, sends `bye` and ends. */
  async function fakeDaemon(head: string): Promise<{ socketPath: string; requests: string[]; close: () => Promise<void> }> {
    const socketPath = join(dir(), 'd.sock');
    const requests: string[] = [];
    const sockets = new Set<net.Socket>();
    const server = net.createServer({ allowHalfOpen: true }, (sock) => {
      sockets.add(sock);
      sock.once('close', () => sockets.delete(sock));
      let buf = Buffer.alloc(0);
      let answered = false;
      sock.on('data', (c: Buffer) => {
        if (answered) {
          sock.write(c);
          return;
        }
        buf = Buffer.concat([buf, c]);
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const headers = buf.subarray(0, end).toString();
        const length = Number(/content-length: (\d+)/i.exec(headers)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        requests.push(`${headers}\r\n\r\n${buf.subarray(end + 4, end + 4 + length).toString()}`);
        answered = true;
        sock.write(head); // headers and the first bytes of the stream in one write
        const rest = buf.subarray(end + 4 + length);
        if (rest.length > 0) sock.write(rest);
        if (head.startsWith('HTTP/1.1 4')) sock.end();
      });
      sock.on('end', () => sock.end('bye'));
      sock.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    const close = () => {
      for (const sock of sockets) sock.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    };
    return { socketPath, requests, close };
  }

  for (const [status, head] of [
    [101, 'HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nfirst|'],
    [200, 'HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\nfirst|'],
  ] as const) {
    test(`${status}: the bytes sent with the headers come first, stdin reaches the daemon, the output after a half-close is read`, async () => {
      const d = await fakeDaemon(head);
      const client = new DockerClient({ socketPath: d.socketPath, requestTimeoutMs: 5000 });
      try {
        const conn = await within(client.hijack('POST', '/exec/abc/start', { body: { Detach: false, Tty: false } }), WAIT_MS, 'the hijack');
        assert.equal(conn.status, status);
        assert.match(d.requests[0] ?? '', /^POST \/v1\.41\/exec\/abc\/start HTTP\/1\.1\r\n/);
        assert.match(d.requests[0] ?? '', /\r\nConnection: Upgrade\r\n/i);
        assert.match(d.requests[0] ?? '', /\r\nUpgrade: tcp\r\n/i);
        assert.match(d.requests[0] ?? '', /\r\n\r\n\{"Detach":false,"Tty":false\}$/);
        let out = '';
        const ended = new Promise<void>((resolve) => {
          conn.output.on('data', (c: Buffer) => (out += c.toString()));
          conn.output.once('end', resolve);
        });
        // Handed back paused: nothing is lost before the caller listens.
        assert.equal(out, '');
        conn.output.resume();
        conn.input.write('ping|');
        await eventually(() => out === 'first|ping|', WAIT_MS, 'the echo');
        conn.input.end();
        await within(ended, WAIT_MS, 'the end of the output');
        assert.equal(out, 'first|ping|bye');
        conn.destroy();
      } finally {
        client.close();
        await d.close();
      }
    });
  }

  test('an error status throws RuntimeApiError with the daemon message', async () => {
    const body = '{"message":"no such exec"}';
    const d = await fakeDaemon(`HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    const client = new DockerClient({ socketPath: d.socketPath, requestTimeoutMs: 5000 });
    try {
      await within(
        assert.rejects(
          client.hijack('POST', '/exec/nope/start', { body: {} }),
          (e: unknown) => e instanceof RuntimeApiError && e.status === 404 && e.daemonMessage === 'no such exec',
        ),
        WAIT_MS,
        'the refusal',
      );
    } finally {
      client.close();
      await d.close();
    }
  });
});

// ---- execStream against a fake daemon (Docker's answers Podman does not give) ------------------------

describe('execStream against a fake Docker daemon', () => {
  /** A daemon whose exec start answers `start` (status, body); the exec then reports exit code 5. */
  function fakeDocker(start: (res: http.ServerResponse) => void): Promise<FakeDaemon> {
    return fakeHttpDaemon((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.method === 'POST' && /\/containers\/c1\/exec$/.test(req.url ?? '')) {
          res.writeHead(201, { 'Content-Type': 'application/json' }).end('{"Id":"e1"}');
        } else if (req.method === 'POST' && /\/exec\/e1\/start$/.test(req.url ?? '')) {
          start(res);
        } else if (req.method === 'GET' && /\/exec\/e1\/json$/.test(req.url ?? '')) {
          res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"Running":false,"ExitCode":5,"Pid":0}');
        } else {
          res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"message":"not here"}');
        }
      });
    });
  }

  test('a start the daemon refuses (an OCI runtime failure) ends the session at once: 127 for a missing executable, the message as error', async () => {
    const message = 'OCI runtime exec failed: exec failed: unable to start container process: exec: "nope": executable file not found in $PATH: unknown';
    const d = await fakeDocker((res) => res.writeHead(500, { 'Content-Type': 'application/json' }).end(JSON.stringify({ message })));
    const rt = new DockerEngineRuntime({ socketPath: d.socketPath, requestTimeoutMs: 5000 });
    try {
      const o = collector();
      const s = await within(rt.execStream('c1', ['nope'], streams(), o), WAIT_MS, 'the exec');
      assert.deepEqual(await within(s.done, WAIT_MS, 'the end'), { exitCode: 127, error: message });
      assert.equal(o.out() + o.err(), '');
    } finally {
      await rt.close();
      await d.close();
    }
  });

  test('a daemon that answers the start 200 and streams in the body: output demultiplexed, then the exit code', async () => {
    const d = await fakeDocker((res) => {
      res.writeHead(200, { 'Content-Type': 'application/vnd.docker.raw-stream' });
      res.write(frame(1, 'hi\n'));
      res.end(frame(2, 'oops\n'));
    });
    const rt = new DockerEngineRuntime({ socketPath: d.socketPath, requestTimeoutMs: 5000 });
    try {
      const o = collector();
      const s = await within(rt.execStream('c1', ['x'], streams(), o), WAIT_MS, 'the exec');
      assert.deepEqual(await within(s.done, WAIT_MS, 'the end'), { exitCode: 5 });
      assert.equal(o.out(), 'hi\n');
      assert.equal(o.err(), 'oops\n');
      await assert.rejects(rt.execStream('c2', ['x'], streams(), o), (e: unknown) => e instanceof RuntimeError && /not here/.test(e.message));
    } finally {
      await rt.close();
      await d.close();
    }
  });
});

// ---- Real sessions over Podman ----------------------------------------------------------------------

/** A StreamOutput that keeps what it got. */
function collector(): StreamOutput & { out: () => string; err: () => string; bytes: () => number; chunks: Buffer[] } {
  const o: Buffer[] = [];
  const e: Buffer[] = [];
  let bytes = 0;
  return {
    chunks: o,
    stdout: (c) => {
      o.push(Buffer.from(c));
      bytes += c.length;
    },
    stderr: (c) => {
      e.push(Buffer.from(c));
      bytes += c.length;
    },
    out: () => Buffer.concat(o).toString(),
    err: () => Buffer.concat(e).toString(),
    bytes: () => bytes,
  };
}

function streams(extra: Partial<StreamOptions> = {}): StreamOptions {
  return { stdin: false, stdout: true, stderr: true, tty: false, ...extra };
}

const podmanSkip = podmanSkipReason();

describe('container runtime exec/attach sessions over Podman (Docker Engine API)', { skip: podmanSkip, concurrency: 2 }, () => {
  let pm: PodmanService;
  let rt: DockerEngineRuntime;
  let busybox = '';
  /** A running container the exec tests share. */
  let box = '';

  async function running(name: string, extra: Partial<ContainerConfig>): Promise<{ id: string; cfg: ContainerConfig }> {
    const sb = await rt.runPodSandbox(sandboxConfig());
    const cfg = containerConfig(name, busybox, extra);
    const id = await rt.createContainer(sb.id, cfg);
    await rt.startContainer(id);
    return { id, cfg };
  }
  const done = (s: StreamSession, what = 'the session to end') => within(s.done, WAIT_MS, what);
  const ps = async (id: string) => (await rt.exec(id, ['ps', '-o', 'pid,args'], { timeoutMs: 10_000 })).stdout;

  before(async () => {
    pm = await startPodman();
    busybox = pm.busyboxImage;
    rt = new DockerEngineRuntime({ socketPath: pm.socketPath, pauseImage: pm.pauseImage, requestTimeoutMs: 30_000 });
    box = (await running('box', { command: ['sleep', '3600'] })).id;
  });
  after(async () => {
    await within(rt.close(), WAIT_MS, 'runtime close');
    const report = await pm?.stop();
    assert.deepEqual(report?.netnsLeft ?? [], [], 'no network namespace left behind');
  });

  test('exec: stdout and stderr apart, the exit code', async () => {
    const o = collector();
    const s = await rt.execStream(box, ['sh', '-c', 'echo out; echo err >&2; exit 3'], streams(), o);
    assert.deepEqual(await done(s), { exitCode: 3 });
    assert.equal(o.out(), 'out\n');
    assert.equal(o.err(), 'err\n');
  });

  test('exec with stdin: echoed, its end closes the process stdin and the output after it is delivered; 1 MB through it', async () => {
    const o = collector();
    const s = await rt.execStream(box, ['sh', '-c', 'cat; echo after-eof'], streams({ stdin: true }), o);
    s.writeStdin(Buffer.from('hello\n'));
    await eventually(() => o.out() === 'hello\n', WAIT_MS, 'the echo');
    s.writeStdin(Buffer.from('world\n'));
    s.endStdin();
    assert.deepEqual(await done(s), { exitCode: 0 });
    assert.equal(o.out(), 'hello\nworld\nafter-eof\n');
    s.writeStdin(Buffer.from('late')); // after the end: dropped, no throw

    const w = collector();
    const wc = await rt.execStream(box, ['wc', '-c'], streams({ stdin: true }), w);
    wc.writeStdin(Buffer.alloc(1_000_000, 0x61));
    wc.endStdin();
    assert.deepEqual(await done(wc), { exitCode: 0 });
    assert.equal(w.out().trim(), '1000000');
  });

  test('exec with a TTY: a /dev/pts terminal, everything on stdout', async () => {
    const o = collector();
    const s = await rt.execStream(box, ['sh', '-c', 'tty; echo err >&2'], streams({ tty: true }), o);
    assert.deepEqual(await done(s), { exitCode: 0 });
    assert.match(o.out(), /^\/dev\/pts\/\d+\r\nerr\r\n$/);
    assert.equal(o.err(), '');
  });

  test('exec with a TTY: the first size reaches the terminal; a resize reaches the process (SIGWINCH)', async () => {
    const o = collector();
    const s = await rt.execStream(
      box,
      [
        'sh',
        '-c',
        // The size may reach the terminal a moment after the process started (a resize right after the start): waited for
        // (a TTY's size is 0 0 before). A SIGWINCH counts once the first size is printed.
        "ready=0; trap '[ $ready = 1 ] && { stty size; exit 0; }' WINCH; " +
          'until s=$(stty size 2>/dev/null) && [ "$s" != "0 0" ]; do sleep 0.05; done; ready=1; echo "$s"; while true; do sleep 0.05; done',
      ],
      streams({ tty: true, size: { width: 100, height: 30 } }),
      o,
    );
    await eventually(() => o.out().includes('\n'), WAIT_MS, 'the first stty size');
    assert.equal(o.out(), '30 100\r\n');
    s.resize({ width: 132, height: 50 });
    assert.deepEqual(await done(s), { exitCode: 0 });
    assert.equal(o.out(), '30 100\r\n50 132\r\n');
  });

  test('a command that cannot be started: 127 (not found) or 126 (not executable), the runtime message as error, not as output', async () => {
    const o = collector();
    const s = await rt.execStream(box, ['no-such-command'], streams(), o);
    const end = await done(s);
    assert.ok(end.exitCode === 127 || end.exitCode === 126, `exit code ${end.exitCode}`);
    assert.match(end.error ?? '', /no-such-command.*not found/);
    assert.equal(o.out() + o.err(), '');

    const t = collector();
    const tty = await rt.execStream(box, ['no-such-command'], streams({ tty: true }), t);
    const ttyEnd = await done(tty);
    assert.ok(ttyEnd.exitCode === 127 || ttyEnd.exitCode === 126, `exit code ${ttyEnd.exitCode} (TTY)`);
    assert.match(ttyEnd.error ?? '', /no-such-command.*not found/);
    assert.equal(t.out(), '');

    const p = collector();
    const d = await rt.execStream(box, ['/etc/passwd'], streams(), p);
    const denied = await done(d);
    assert.equal(denied.exitCode, 126);
    assert.match(denied.error ?? '', /permission denied/);

    // A shell's own "not found" is the process's output and exit code, not an error of the runtime.
    const q = collector();
    const sh = await rt.execStream(box, ['sh', '-c', 'no-such-command'], streams(), q);
    assert.deepEqual(await done(sh), { exitCode: 127 });
    assert.match(q.err(), /no-such-command: not found/);
  });

  test('cancel: the session ends with 137 and the process and its children are gone', async () => {
    const o = collector();
    const s = await rt.execStream(box, ['sh', '-c', 'sleep 101 & sleep 102 & echo started; wait'], streams(), o);
    await eventually(() => o.out() === 'started\n', WAIT_MS, 'the command to start');
    assert.match(await ps(box), /sleep 101/);
    s.cancel();
    assert.equal((await done(s)).exitCode, 137);
    const after = await ps(box);
    assert.doesNotMatch(after, /sleep 10[12]|echo started/, after);
    s.cancel(); // idempotent
  });

  test('pause/resume: output stops while paused (back-pressure), nothing lost over 2 MiB', async () => {
    const total = 2 * 1024 * 1024;
    let s: StreamSession | undefined;
    const o = collector();
    let pausedAt = -1;
    const output: StreamOutput = {
      stdout: (c) => {
        o.stdout(c);
        if (pausedAt < 0) {
          pausedAt = o.bytes();
          s?.pause();
        }
      },
      stderr: (c) => o.stderr(c),
    };
    s = await rt.execStream(box, ['sh', '-c', `yes abcdefghijklmno | head -c ${total}`], streams(), output);
    await eventually(() => pausedAt >= 0, WAIT_MS, 'the first output');
    // While paused nothing is delivered, and the writer is held (it would be done in a moment otherwise).
    assert.match(await ps(box), /yes abcdefghijklmno/);
    assert.equal(o.bytes(), pausedAt, 'nothing delivered while paused');
    // Then resumed and paused again at every chunk, a few times.
    let cycles = 0;
    const resumeLater = () => {
      s?.resume();
      if (++cycles >= 20) return;
      setImmediate(() => {
        s?.pause();
        setImmediate(resumeLater);
      });
    };
    resumeLater();
    assert.deepEqual(await done(s), { exitCode: 0 });
    const text = o.out();
    assert.equal(text.length, total);
    const line = 'abcdefghijklmno\n';
    assert.equal(text, line.repeat(Math.ceil(total / line.length)).slice(0, total), 'every byte in order');
  });

  test('attach to a running ticker: new output only, stdout and stderr apart; cancel detaches and it runs on', async () => {
    const { id, cfg } = await running('ticker', { command: ['sh', '-c', 'i=0; while true; do echo tick $i; echo etick $i >&2; i=$((i+1)); sleep 0.1; done'] });
    await eventually(async () => existsSync(cfg.logPath) && /tick 2\n/.test(await readCriLog(cfg.logPath)), WAIT_MS, 'a few ticks in the log');
    const o = collector();
    const s = await rt.attach(id, streams(), o);
    await eventually(() => (o.out().match(/tick \d+\n/g) ?? []).length >= 3 && o.err().includes('etick'), WAIT_MS, 'ticks through the attach');
    assert.doesNotMatch(o.out(), /^tick 0\n/, 'no old output (logs=0)');
    assert.match(o.out(), /^(tick \d+\n)+$/);
    assert.match(o.err(), /^(etick \d+\n)+$/);
    s.cancel();
    assert.deepEqual(await done(s), {});
    assert.equal((await rt.containerStatus(id))?.state, 'running', 'a detach leaves it running');
    await rt.stopContainer(id, 0);
  });

  test('attach -i to a `cat` container made with stdin: its input echoed; a container exiting while attached gives its exit code', async () => {
    const { id } = await running('cat', { command: ['cat'], stdin: true });
    const o = collector();
    const s = await rt.attach(id, streams({ stdin: true }), o);
    s.writeStdin(Buffer.from('ping\n'));
    await eventually(() => o.out() === 'ping\n', WAIT_MS, 'the echo');
    s.cancel();
    assert.deepEqual(await done(s), {});
    // (Podman 4.3 closes the container's stdin when an attach with stdin goes, whatever StdinOnce says, so `cat` ends now;
    // Docker keeps it open unless StdinOnce. A detach without stdin, or from a TTY container, leaves it running: tested there.)

    const { id: reader } = await running('reader', { command: ['sh', '-c', 'read line; echo got $line; exit 4'], stdin: true, stdinOnce: true });
    const r = collector();
    const a = await rt.attach(reader, streams({ stdin: true }), r);
    a.writeStdin(Buffer.from('hello\n'));
    assert.deepEqual(await done(a, 'the container to exit'), { exitCode: 4 });
    assert.equal(r.out(), 'got hello\n');
  });

  test('attach to a TTY container: raw stream, echo, resize reaches it; its log is still copied', async () => {
    const { id, cfg } = await running('term', {
      command: ['sh', '-c', 'trap "stty size" WINCH; echo ready; while true; do read line && echo "got $line"; done'],
      stdin: true,
      tty: true,
    });
    await eventually(async () => existsSync(cfg.logPath) && /ready/.test(await readCriLog(cfg.logPath)), WAIT_MS, 'the TTY container log');
    const o = collector();
    const s = await rt.attach(id, streams({ stdin: true, tty: true, size: { width: 90, height: 25 } }), o);
    await eventually(() => o.out().includes('25 90\r\n'), WAIT_MS, 'the first size (a SIGWINCH)');
    s.writeStdin(Buffer.from('abc\r'));
    await eventually(() => o.out().includes('got abc\r\n'), WAIT_MS, 'the answer');
    s.resize({ width: 120, height: 40 });
    await eventually(() => o.out().includes('40 120\r\n'), WAIT_MS, 'the resize');
    assert.equal(o.err(), '');
    await eventually(async () => /got abc/.test(await readCriLog(cfg.logPath)), WAIT_MS, 'the TTY output in the log');
    s.cancel();
    assert.deepEqual(await done(s), {});
    assert.equal((await rt.containerStatus(id))?.state, 'running', 'a detach (with stdin, from a TTY) leaves it running');
    await rt.stopContainer(id, 0);
  });

  test('exec and attach to a container that is not running reject with RuntimeError', async () => {
    const { id } = await running('quick', { command: ['true'] });
    await eventually(async () => (await rt.containerStatus(id))?.state === 'exited', WAIT_MS, 'the container to exit');
    await assert.rejects(rt.execStream(id, ['true'], streams(), collector()), (e: unknown) => e instanceof RuntimeError && /running/.test(e.message));
    await assert.rejects(rt.attach(id, streams(), collector()), (e: unknown) => e instanceof RuntimeError && /not running/.test(e.message));
    await assert.rejects(rt.attach('no-such-container', streams(), collector()), (e: unknown) => e instanceof RuntimeError && /not found/.test(e.message));
  });
});
