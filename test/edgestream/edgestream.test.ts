/**
 * EdgeStream (edge/edgestream) between two in-memory multiplexers, as the link carries them: the
 * cloud's Mux opens streams, the edge's Mux hands them to EdgeStream. Pods are a fake view over a
 * FakeRuntime, their logs real CRI files written by CriLogWriter in a temp dir. Covers logs and
 * their options, previous, follow (appended lines, the end of the run, rotation, a hang-up
 * releasing everything), back-pressure of a slow reader, refusals (other node, unknown pod or
 * container, ambiguous container, bad options), exec/attach channels and Status, cancel, the
 * stream limit and shutdown.
 */
import { test, describe, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { createEdgeStream, MAX_EDGE_STREAMS, type EdgeStream, type EdgeStreamOptions, type PodWorkerView } from '../../edge/edgestream/index.js';
import type { Edged } from '../../edge/edged/edged.js';
import { CriLogWriter, readCriLog } from '../../edge/edged/logs.js';
import { RuntimeError } from '../../edge/edged/runtime.js';
import { ErrorCode } from '../../shared/errors/index.js';
import { createLogger } from '../../shared/log/index.js';
import { Channel, streamFrameFromWire, type StreamRequest } from '../../shared/protocol/index.js';
import { Mux, type Stream, type StreamError } from '../../shared/stream/index.js';
import { FakeRuntime, type FakeSession } from '../edged/fake-runtime.js';
import { tempDir } from '../helpers/files.js';
import { eventually, within } from '../helpers/process.js';

// Edged is what EdgeCore passes as `pods` (a compile-time check).
type EdgedIsAPodsView = Edged extends EdgeStreamOptions['pods'] ? true : never;
const edgedFits: EdgedIsAPodsView = true;
void edgedFits;

const NODE = 'node-a';
const WAIT = 10_000;

const dirs: { cleanup: () => void }[] = [];
after(() => {
  for (const d of dirs) d.cleanup();
});
function dir(): string {
  const d = tempDir('ledge-edgestream-');
  dirs.push(d);
  return d.path;
}

/** A pod as Edged's worker shows it: runs are FakeRuntime containers, logs real files. */
class FakePod implements PodWorkerView {
  readonly pod: V1Pod;
  readonly uid: string;
  private readonly runs = new Map<string, { attempt: number; id?: string }>();
  private readonly logDir = dir();

  constructor(
    readonly runtime: FakeRuntime,
    namespace: string,
    name: string,
    readonly main: string[],
    readonly init: string[] = [],
    nodeName = NODE,
  ) {
    this.uid = `uid-${namespace}-${name}`;
    this.pod = { metadata: { namespace, name, uid: this.uid }, spec: { nodeName, containers: main.map((n) => ({ name: n })) } };
    for (const c of [...init, ...main]) this.runs.set(c, { attempt: -1 });
  }

  /** A new run of `container` (running), and the writer of its log. */
  start(container: string, maxBytes = 1 << 30): CriLogWriter {
    const run = this.runs.get(container)!;
    run.attempt++;
    this.runtime.preload({ uid: this.uid }, [{ name: container, attempt: run.attempt }]);
    run.id = this.runtime.current(container, this.uid)!.id;
    return new CriLogWriter(this.logPath(container)!, maxBytes);
  }

  /** The current run exits. */
  stop(container: string, exitCode = 0): void {
    this.runtime.exit(container, exitCode, { uid: this.uid });
  }

  logPath(container: string, previous = false): string | undefined {
    const run = this.runs.get(container);
    if (!run || run.attempt < 0) return undefined;
    const attempt = previous ? run.attempt - 1 : run.attempt;
    return attempt < 0 ? undefined : join(this.logDir, container, `${attempt}.log`);
  }

  containerId(container: string): string | undefined {
    return this.runs.get(container)?.id;
  }

  containerNames(): { init: string[]; main: string[] } {
    return { init: [...this.init], main: [...this.main] };
  }

  isRunning(container: string): boolean {
    const id = this.runs.get(container)?.id;
    return id !== undefined && this.runtime.containers.get(id)?.status.state === 'running';
  }
}

/** What the cloud side of one stream saw. */
interface Client {
  stream: Stream;
  /** Payloads per channel, in order. */
  data: Map<number, Buffer[]>;
  /** Channels in the order their messages came. */
  order: number[];
  text(channel?: number): string;
  bytes(channel?: number): number;
  opened: Promise<void>;
  closed: Promise<StreamError | undefined>;
  isClosed: () => boolean;
  /** Whether the edge accepted it. */
  wasOpened: () => boolean;
}

interface Setup {
  es: EdgeStream;
  runtime: FakeRuntime;
  pods: Map<string, FakePod>;
  edgeStreams: Stream[];
  logLines: Record<string, unknown>[];
  cloud: Mux;
  edge: Mux;
  open(request: StreamRequest): Client;
  addPod(name: string, main: string[], init?: string[], nodeName?: string): FakePod;
}

function setup(options: { followPollMs?: number } = {}): Setup {
  const runtime = new FakeRuntime();
  const pods = new Map<string, FakePod>();
  const logLines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => void logLines.push(JSON.parse(l) as Record<string, unknown>) });
  const es = createEdgeStream({ nodeName: NODE, pods: { worker: (ns, name) => pods.get(`${ns}/${name}`) }, followPollMs: options.followPollMs ?? 20 }, log);
  const edgeStreams: Stream[] = [];
  // Frames cross asynchronously, checked as the codec checks them.
  const cross = (to: () => Mux) => (f: { id: number; type: number; data: unknown }) => setImmediate(() => to().receive(streamFrameFromWire([f.id, f.type, f.data])));
  const cloud: Mux = new Mux({ write: cross(() => edge), canWrite: () => true });
  const edge: Mux = new Mux({
    write: cross(() => cloud),
    canWrite: () => true,
    onOpen: (s) => {
      edgeStreams.push(s);
      es.serve(s);
    },
  });
  streams.push({ es, cloud });
  return {
    es,
    runtime,
    pods,
    edgeStreams,
    logLines,
    cloud,
    edge,
    open(request) {
      const stream = cloud.open(request);
      const data = new Map<number, Buffer[]>();
      const order: number[] = [];
      let isClosed = false;
      let wasOpened = false;
      const opened = new Promise<void>((r) =>
        stream.on('open', () => {
          wasOpened = true;
          r();
        }),
      );
      const closed = new Promise<StreamError | undefined>((r) =>
        stream.on('close', (e) => {
          isClosed = true;
          r(e);
        }),
      );
      stream.on('message', (channel, payload) => {
        order.push(channel);
        const list = data.get(channel) ?? [];
        list.push(Buffer.from(payload));
        data.set(channel, list);
      });
      const all = (channel: number) => Buffer.concat(data.get(channel) ?? []);
      return {
        stream,
        data,
        order,
        text: (c = Channel.Stdout) => all(c).toString(),
        bytes: (c = Channel.Stdout) => all(c).length,
        opened,
        closed,
        isClosed: () => isClosed,
        wasOpened: () => wasOpened,
      };
    },
    addPod(name, main, init = [], nodeName = NODE) {
      const p = new FakePod(runtime, 'default', name, main, init, nodeName);
      pods.set(`default/${name}`, p);
      return p;
    },
  };
}

const streams: { es: EdgeStream; cloud: Mux }[] = [];
beforeEach(() => {
  for (const s of streams.splice(0)) {
    s.es.close();
    s.cloud.closeAll({ code: ErrorCode.Disconnected, message: 'test over' });
  }
});
after(() => {
  for (const s of streams.splice(0)) s.es.close();
});

const T0 = new Date('2024-05-01T10:00:00.000Z');
const at = (s: number) => new Date(T0.getTime() + s * 1000);
const b = (s: string) => Buffer.from(s);
const logs = (pod: string, more: Partial<StreamRequest> = {}): StreamRequest => ({ kind: 'logs', namespace: 'default', pod, ...more });

async function ended(c: Client, what = 'the stream to end'): Promise<StreamError | undefined> {
  return within(c.closed, WAIT, what);
}

async function refused(c: Client, code: string, message?: string | RegExp): Promise<void> {
  const e = await ended(c, 'the refusal');
  assert.ok(e, 'closed with an error');
  assert.equal(e.code, code, e.message);
  if (typeof message === 'string') assert.equal(e.message, message);
  else if (message) assert.match(e.message, message);
  assert.equal(c.order.length, 0, 'no byte before a refusal');
  assert.equal(c.wasOpened(), false, 'refused before it was accepted');
}

describe('logs', () => {
  test('the whole log, and tailLines, sinceTime, timestamps, limitBytes as readCriLog gives them', async () => {
    const t = setup();
    const pod = t.addPod('web', ['app']);
    const w = pod.start('app');
    for (let i = 0; i < 20; i++) w.write(i % 2 ? 'stderr' : 'stdout', b(`line ${i} ✓\n`), at(i));
    const path = pod.logPath('app')!;
    const cases: [Partial<StreamRequest>, Parameters<typeof readCriLog>[1]][] = [
      [{}, {}],
      [{ container: 'app' }, {}],
      [{ tailLines: 3 }, { tailLines: 3 }],
      [{ tailLines: 0 }, { tailLines: 0 }],
      [{ sinceTime: at(15).toISOString() }, { sinceTime: at(15) }],
      [
        { timestamps: true, tailLines: 2 },
        { timestamps: true, tailLines: 2 },
      ],
      [{ limitBytes: 25 }, { limitBytes: 25 }],
      [{ limitBytes: 9 }, { limitBytes: 9 }],
    ];
    for (const [req, opts] of cases) {
      const c = t.open(logs('web', req));
      assert.equal(await ended(c), undefined, `${JSON.stringify(req)} ends cleanly`);
      assert.equal(c.text(), await readCriLog(path, opts), JSON.stringify(req));
      assert.deepEqual(new Set(c.order), c.order.length ? new Set([Channel.Stdout]) : new Set(), 'only stdout');
    }
    w.close();
  });

  test('sinceSeconds counts back from now', async () => {
    const t = setup();
    const pod = t.addPod('web', ['app']);
    const w = pod.start('app');
    w.write('stdout', b('old\n'), new Date(Date.now() - 3600_000));
    w.write('stdout', b('new\n'));
    const c = t.open(logs('web', { sinceSeconds: 60 }));
    assert.equal(await ended(c), undefined);
    assert.equal(c.text(), 'new\n');
    w.close();
  });

  test('previous: the run before the current one; none yet → StreamRequest, in kubelet words', async () => {
    const t = setup();
    const pod = t.addPod('web', ['app']);
    const w0 = pod.start('app');
    w0.write('stdout', b('first run\n'));
    const none = t.open(logs('web', { previous: true }));
    await refused(none, ErrorCode.StreamRequest, 'previous terminated container "app" in pod "web" not found');
    w0.close();
    pod.stop('app', 1);
    const w1 = pod.start('app');
    w1.write('stdout', b('second run\n'));
    const c = t.open(logs('web', { previous: true }));
    assert.equal(await ended(c), undefined);
    assert.equal(c.text(), 'first run\n');
    const f = t.open(logs('web', { previous: true, follow: true }));
    assert.equal(await ended(f), undefined, 'a follow of the previous run ends at once');
    assert.equal(f.text(), 'first run\n');
    const cur = t.open(logs('web'));
    assert.equal(await ended(cur), undefined);
    assert.equal(cur.text(), 'second run\n');
    w1.close();
  });

  test('follow: the lines appended after the start arrive in order; ends once the container stopped, after its last lines', async () => {
    const t = setup();
    const pod = t.addPod('web', ['app']);
    const w = pod.start('app');
    w.write('stdout', b('before\n'));
    const c = t.open(logs('web', { follow: true }));
    await eventually(() => c.text() === 'before\n', WAIT, 'the existing line');
    let want = 'before\n';
    for (let i = 0; i < 10; i++) {
      w.write(i % 2 ? 'stderr' : 'stdout', b(`live ${i}\n`));
      want += `live ${i}\n`;
      await eventually(() => c.text() === want, WAIT, `live ${i}`);
    }
    assert.equal(c.isClosed(), false, 'still following');
    w.write('stdout', b('last words\n'));
    w.close();
    pod.stop('app', 0);
    assert.equal(await ended(c), undefined, 'a clean end');
    assert.equal(c.text(), `${want}last words\n`);
  });

  test('follow ends when a new run replaced the followed one (the container restarted)', async () => {
    const t = setup();
    const pod = t.addPod('web', ['app']);
    const w0 = pod.start('app');
    w0.write('stdout', b('run 0\n'));
    const c = t.open(logs('web', { follow: true }));
    await eventually(() => c.text() === 'run 0\n', WAIT, 'the line');
    w0.close();
    // The restart is seen as a new container id, even though "app" is running again.
    pod.stop('app', 1);
    const w1 = pod.start('app');
    w1.write('stdout', b('run 1\n'));
    assert.equal(await ended(c), undefined);
    assert.equal(c.text(), 'run 0\n', "only the followed run's log");
    w1.close();
  });

  test('follow across rotations of the log (small maxBytes)', async () => {
    const t = setup();
    const pod = t.addPod('web', ['app']);
    const w = pod.start('app', 300);
    const c = t.open(logs('web', { follow: true, timestamps: true }));
    await c.opened;
    let want = '';
    for (let i = 0; i < 25; i++) {
      const time = at(i);
      w.write('stdout', b(`rotating line ${i}\n`), time);
      want += `${time.toISOString().slice(0, -1)}000000Z rotating line ${i}\n`;
      await eventually(() => c.text() === want, WAIT, `line ${i}`);
    }
    w.close();
    pod.stop('app');
    assert.equal(await ended(c), undefined);
    assert.equal(c.text(), want);
  });

  test('a slow reader holds the edge at about one window: a 5 MB log is not read ahead, then arrives whole', async () => {
    const t = setup();
    const pod = t.addPod('big', ['app']);
    const w = pod.start('app');
    for (let i = 0; i < 50_000; i++) w.write('stdout', b(`${String(i).padStart(8, '0')} ${'x'.repeat(90)}\n`), at(i / 1000));
    w.close();
    const path = pod.logPath('app')!;
    const c = t.open(logs('big'));
    // The cloud's consumer does not take anything: no credit goes back.
    c.stream.pause();
    await c.opened;
    const edgeStream = await eventually(() => t.edgeStreams[0], WAIT, 'the edge stream');
    let maxQueued = 0;
    const sample = setInterval(() => {
      maxQueued = Math.max(maxQueued, edgeStream.queuedBytes);
    }, 1);
    try {
      // The edge sent one window, then its queue filled to a window and it stopped.
      await eventually(() => edgeStream.queuedBytes >= t.edge.window, WAIT, 'the edge queue to fill');
      const queuedThen = edgeStream.queuedBytes;
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
      assert.equal(edgeStream.queuedBytes, queuedThen, 'nothing more is read while the reader takes nothing');
      maxQueued = Math.max(maxQueued, edgeStream.queuedBytes);
      assert.ok(maxQueued <= t.edge.window + 32 * 1024, `queued ${maxQueued} bytes`);
      c.stream.resume();
      assert.equal(await within(c.closed, 60_000, 'the whole log'), undefined);
    } finally {
      clearInterval(sample);
    }
    assert.ok(maxQueued <= t.edge.window + 32 * 1024, `queued at most ${maxQueued} bytes`);
    assert.equal(c.bytes(), 5_000_000);
    assert.ok(c.text() === (await readCriLog(path)), 'the same bytes');
    assert.ok(
      t.logLines.some((l) => l.msg === 'stream ended: logs default/big/app' && l.bytes === 5_000_000 && typeof l.durationMs === 'number' && l.level === 'debug'),
      'one debug line at the end with the bytes and duration',
    );
  });

  test('the cloud hangs up mid-follow: the reader stops, its file and watch are released', async () => {
    const t = setup({ followPollMs: 60_000 });
    const pod = t.addPod('web', ['app']);
    const w = pod.start('app');
    w.write('stdout', b('hello\n'));
    const logDir = join(pod.logPath('app')!, '..');
    const fds = () => readdirSync('/proc/self/fd').length;
    const openLogs = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(logDir);
        } catch {
          return false;
        }
      }).length;
    // The writer holds the log open too.
    const writerFds = openLogs();
    // A first follow, so what the process opens once (libuv's inotify descriptor) is open before counting.
    const warm = t.open(logs('web', { follow: true }));
    await eventually(() => warm.text() === 'hello\n', WAIT, 'the warm-up follow');
    warm.stream.abort({ code: ErrorCode.Disconnected, message: 'gone' });
    await eventually(() => t.es.active === 0 && openLogs() === writerFds, WAIT, 'the warm-up to end');
    const before = fds();

    const c = t.open(logs('web', { follow: true }));
    await eventually(() => c.text() === 'hello\n', WAIT, 'the line');
    w.write('stdout', b('second\n'));
    await eventually(() => c.text() === 'hello\nsecond\n', WAIT, 'the appended line (seen by the watch: the poll is a minute)');
    assert.equal(openLogs(), writerFds + 1, 'the follow holds its log open');
    assert.equal(t.es.active, 1);
    c.stream.abort({ code: ErrorCode.Disconnected, message: 'kubectl went away' });
    await eventually(() => t.es.active === 0, WAIT, 'the stream to be released');
    await eventually(() => openLogs() === writerFds && fds() === before, WAIT, 'no descriptor left');
    w.close();
  });

  test('a pod Edged does not run, or another node’s pod, is NotFound; so is an unknown container', async () => {
    const t = setup();
    t.addPod('web', ['app']).start('app').close();
    t.addPod('elsewhere', ['app'], [], 'node-b').start('app').close();
    await refused(t.open(logs('nope')), ErrorCode.NotFound, `pod default/nope is not on node ${NODE}`);
    await refused(t.open(logs('elsewhere')), ErrorCode.NotFound, `pod default/elsewhere is not on node ${NODE}`);
    await refused(t.open({ kind: 'exec', namespace: 'default', pod: 'elsewhere', command: ['sh'] }), ErrorCode.NotFound);
    await refused(t.open(logs('web', { container: 'other' })), ErrorCode.NotFound, /other/);
    assert.equal(t.es.active, 0);
  });

  test('two containers and none named → StreamRequest listing them (kubelet words); a named one works', async () => {
    const t = setup();
    const pod = t.addPod('duo', ['a', 'b'], ['setup']);
    pod.start('setup').close();
    const wa = pod.start('a');
    wa.write('stdout', b('from a\n'));
    await refused(t.open(logs('duo')), ErrorCode.StreamRequest, 'a container name must be specified for pod duo, choose one of: [a b] or one of the init containers: [setup]');
    const c = t.open(logs('duo', { container: 'a' }));
    assert.equal(await ended(c), undefined);
    assert.equal(c.text(), 'from a\n');
    const init = t.open(logs('duo', { container: 'setup' }));
    assert.equal(await ended(init), undefined, 'an init container has logs too');
    await refused(t.open(logs('duo', { container: 'b' })), ErrorCode.StreamRequest, 'container "b" in pod "duo" is waiting to start');
    wa.close();
  });

  test('bad options → StreamRequest', async () => {
    const t = setup();
    t.addPod('web', ['app']).start('app').close();
    await refused(t.open(logs('web', { tailLines: -1 })), ErrorCode.StreamRequest, /tailLines/);
    await refused(t.open(logs('web', { limitBytes: 0 })), ErrorCode.StreamRequest, /limitBytes/);
    await refused(t.open(logs('web', { sinceTime: 'yesterday' })), ErrorCode.StreamRequest, /sinceTime/);
    await refused(t.open(logs('web', { sinceSeconds: 5, sinceTime: T0.toISOString() })), ErrorCode.StreamRequest, /at most one/);
    await refused(t.open(logs('web', { follow: 'yes' as unknown as boolean })), ErrorCode.StreamRequest, /follow/);
  });
});

describe('exec and attach', () => {
  const exec = (pod: string, command: string[], more: Partial<StreamRequest> = {}): StreamRequest => ({ kind: 'exec', namespace: 'default', pod, command, ...more });
  const status = (c: Client) => JSON.parse(c.text(Channel.Error)) as unknown;

  function running(t: Setup, name = 'web'): FakePod {
    const pod = t.addPod(name, ['app']);
    pod.start('app').close();
    return pod;
  }

  test('stdout and stderr on their channels, then the Status: Success for exit 0, NonZeroExitCode for 3', async () => {
    const t = setup();
    running(t);
    t.runtime.setExecStream('ok', (s) => {
      s.writeStdout('out 1\n');
      s.writeStderr('err 1\n');
      setImmediate(() => {
        s.writeStdout('out 2\n');
        s.exit(0);
      });
    });
    t.runtime.setExecStream('fail', (s) => {
      s.writeStderr('bad\n');
      setImmediate(() => s.exit(3));
    });
    const ok = t.open(exec('web', ['ok'], { stdout: true, stderr: true }));
    assert.equal(await ended(ok), undefined);
    assert.equal(ok.text(Channel.Stdout), 'out 1\nout 2\n');
    assert.equal(ok.text(Channel.Stderr), 'err 1\n');
    assert.equal(ok.text(Channel.Error), '{"metadata":{},"status":"Success"}');
    assert.equal(ok.order.at(-1), Channel.Error, 'the Status comes last');
    const fail = t.open(exec('web', ['fail']));
    assert.equal(await ended(fail), undefined);
    assert.equal(fail.text(Channel.Stderr), 'bad\n');
    assert.equal(
      fail.text(Channel.Error),
      '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}',
    );
    const s = t.runtime.sessions[0]!;
    assert.deepEqual(s.command, ['ok']);
    assert.deepEqual(s.options, { stdin: false, stdout: true, stderr: true, tty: false });
    assert.ok(t.logLines.some((l) => l.msg === 'stream started: exec default/web/app' && l.level === 'info'));
    assert.ok(t.logLines.some((l) => l.msg === 'stream ended: exec default/web/app' && l.level === 'info' && typeof l.durationMs === 'number' && l.bytes === 18));
  });

  test('a session that ends with an error → a Failure Status with it', async () => {
    const t = setup();
    running(t);
    t.runtime.setExecStream('x', (s) => void setImmediate(() => s.exit(undefined, 'the runtime went away')));
    const c = t.open(exec('web', ['x']));
    assert.equal(await ended(c), undefined);
    assert.equal(c.text(Channel.Error), '{"metadata":{},"status":"Failure","message":"the runtime went away"}');
  });

  test('a command the runtime cannot start: accepted, then a Failure Status with the runtime’s message', async () => {
    const t = setup();
    running(t);
    t.runtime.setExecStream('nosuch', () => {
      throw new RuntimeError('RunContainerError', 'exec: "nosuch": executable file not found in $PATH');
    });
    const c = t.open(exec('web', ['nosuch']));
    assert.equal(await ended(c), undefined);
    assert.deepEqual(status(c), { metadata: {}, status: 'Failure', message: 'exec: "nosuch": executable file not found in $PATH' });
  });

  test('stdin and its EOF (the Close channel) reach the session, stdin sent before the session existed too', async () => {
    const t = setup();
    running(t);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    t.runtime.setExecStream('cat', async (s) => {
      s.onStdin((chunk) => {
        if (chunk) s.writeStdout(chunk);
        else s.exit(0);
      });
      await gate;
    });
    const c = t.open(exec('web', ['cat'], { stdin: true }));
    c.stream.send(Channel.Stdin, b('early '));
    await c.opened;
    const session = await eventually(() => t.runtime.sessions[0], WAIT, 'the session');
    const edgeGot: number[] = [];
    t.edgeStreams[0]!.on('message', (channel) => edgeGot.push(channel));
    await eventually(() => edgeGot.includes(Channel.Stdin), WAIT, 'the early stdin at the edge');
    assert.equal(session.stdin.length, 0, 'the session is not there yet');
    release();
    await eventually(() => session.stdinText() === 'early ', WAIT, 'the early stdin');
    c.stream.send(Channel.Stdin, b('late\n'));
    await eventually(() => c.text() === 'early late\n', WAIT, 'the echo');
    assert.equal(session.stdinEnded, false);
    c.stream.send(Channel.Close, Uint8Array.of(Channel.Stdin));
    assert.equal(await ended(c), undefined);
    assert.equal(session.stdinEnded, true);
    assert.equal(session.stdinText(), 'early late\n');
    assert.equal(c.text(Channel.Error), '{"metadata":{},"status":"Success"}');
    assert.equal(session.options.stdin, true);
  });

  test('resize reaches the session (the latest one before it existed, then each); malformed ones are ignored; tty puts stderr on stdout', async () => {
    const t = setup();
    running(t);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    t.runtime.setExecStream('sh', async () => {
      await gate;
    });
    const c = t.open(exec('web', ['sh'], { stdin: true, tty: true }));
    const size = (w: number, h: number) => b(JSON.stringify({ Width: w, Height: h }));
    c.stream.send(Channel.Resize, size(80, 24));
    await c.opened;
    const session = await eventually(() => t.runtime.sessions[0], WAIT, 'the session');
    const edgeGot: number[] = [];
    t.edgeStreams[0]!.on('message', (channel) => edgeGot.push(channel));
    await eventually(() => edgeGot.includes(Channel.Resize), WAIT, 'the early resize at the edge');
    assert.equal(session.resizes.length, 0, 'the session is not there yet');
    release();
    await eventually(() => session.resizes.length === 1, WAIT, 'the first size');
    assert.deepEqual(session.resizes, [{ width: 80, height: 24 }]);
    c.stream.send(Channel.Resize, b('{"Width":'));
    c.stream.send(Channel.Resize, b('{"Width":"wide","Height":1}'));
    c.stream.send(Channel.Resize, size(120, 40));
    await eventually(() => session.resizes.length === 2, WAIT, 'the second size');
    assert.deepEqual(session.resizes, [
      { width: 80, height: 24 },
      { width: 120, height: 40 },
    ]);
    assert.ok(
      t.logLines.some((l) => l.level === 'debug' && String(l.msg).includes('resize')),
      'a debug line for the malformed ones',
    );
    assert.deepEqual(session.options, { stdin: true, stdout: true, stderr: false, tty: true });
    session.writeStderr('on the terminal\n');
    await eventually(() => c.text(Channel.Stdout) === 'on the terminal\n', WAIT, 'stderr on stdout');
    session.exit(0);
    assert.equal(await ended(c), undefined);
  });

  test('the cloud closes the stream → the session is cancelled', async () => {
    const t = setup();
    running(t);
    const c = t.open(exec('web', ['sleep', '1000']));
    await c.opened;
    const session = await eventually(() => t.runtime.sessions[0], WAIT, 'the session');
    await eventually(() => t.es.active === 1, WAIT, 'served');
    c.stream.abort({ code: ErrorCode.Disconnected, message: 'kubectl went away' });
    await eventually(() => session.cancelled, WAIT, 'the cancel');
    await eventually(() => t.es.active === 0, WAIT, 'released');
  });

  test('a slow reader pauses the session’s output; drained, it resumes', async () => {
    const t = setup();
    running(t);
    const c = t.open(exec('web', ['yes']));
    c.stream.pause();
    await c.opened;
    const session = await eventually(() => t.runtime.sessions[0], WAIT, 'the session');
    const chunk = Buffer.alloc(16 * 1024, 'y');
    // The process writes until the session is paused (a runtime stops reading its output then).
    let written = 0;
    while (!session.paused && written < 8 * t.edge.window) {
      session.writeStdout(chunk);
      written += chunk.length;
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(session.paused, true, `paused after ${written} bytes`);
    assert.ok(written <= 3 * t.edge.window, `${written} bytes written before the pause`);
    c.stream.resume();
    await eventually(() => !session.paused, WAIT, 'the resume');
    session.exit(0);
    assert.equal(await ended(c), undefined);
    assert.equal(c.bytes(), written);
  });

  test('exec needs a command and a running container', async () => {
    const t = setup();
    const pod = running(t);
    await refused(t.open(exec('web', [])), ErrorCode.StreamRequest, /command/);
    pod.stop('app');
    await refused(t.open(exec('web', ['sh'])), ErrorCode.StreamRequest, 'container app is not running');
    await refused(t.open({ kind: 'attach', namespace: 'default', pod: 'web' }), ErrorCode.StreamRequest, 'container app is not running');
    assert.equal(t.runtime.sessions.length, 0);
  });

  test('attach: the container’s session, without a command', async () => {
    const t = setup();
    running(t);
    t.runtime.setAttach((s) => {
      s.writeStdout('attached\n');
    });
    const c = t.open({ kind: 'attach', namespace: 'default', pod: 'web', stdin: true });
    await eventually(() => c.text() === 'attached\n', WAIT, 'the output');
    const session = t.runtime.sessions[0]!;
    assert.equal(session.kind, 'attach');
    assert.equal(session.command, undefined);
    c.stream.send(Channel.Stdin, b('input'));
    await eventually(() => session.stdinText() === 'input', WAIT, 'the stdin');
    session.exit(undefined);
    assert.equal(await ended(c), undefined);
    assert.equal(c.text(Channel.Error), '{"metadata":{},"status":"Success"}');
  });
});

describe('limits and shutdown', () => {
  test(`more than ${MAX_EDGE_STREAMS} streams at once → QueueFull; one ended, the next is served`, async () => {
    const t = setup();
    const pod = t.addPod('web', ['app']);
    pod.start('app').close();
    const sessions: Client[] = [];
    for (let i = 0; i < MAX_EDGE_STREAMS; i++) sessions.push(t.open({ kind: 'exec', namespace: 'default', pod: 'web', command: ['sleep'] }));
    await Promise.all(sessions.map((c) => within(c.opened, WAIT, 'accepted')));
    assert.equal(t.es.active, MAX_EDGE_STREAMS);
    await refused(t.open(logs('web')), ErrorCode.QueueFull);
    (t.runtime.sessions[0] as FakeSession).exit(0);
    assert.equal(await ended(sessions[0]!), undefined);
    await eventually(() => t.es.active === MAX_EDGE_STREAMS - 1, WAIT, 'one released');
    const next = t.open(logs('web'));
    assert.equal(await ended(next), undefined, 'served');
  });

  test('close() aborts every stream (Disconnected) and refuses new ones', async () => {
    const t = setup({ followPollMs: 60_000 });
    const pod = t.addPod('web', ['app']);
    const w = pod.start('app');
    const f = t.open(logs('web', { follow: true }));
    const e = t.open({ kind: 'exec', namespace: 'default', pod: 'web', command: ['sh'] });
    await Promise.all([f.opened, e.opened]);
    await eventually(() => t.runtime.sessions[0], WAIT, 'the session');
    t.es.close();
    assert.equal((await ended(f))?.code, ErrorCode.Disconnected);
    assert.equal((await ended(e))?.code, ErrorCode.Disconnected);
    assert.equal(t.runtime.sessions[0]!.cancelled, true);
    assert.equal(t.es.active, 0);
    await refused(t.open(logs('web')), ErrorCode.Disconnected);
    w.close();
  });
});
