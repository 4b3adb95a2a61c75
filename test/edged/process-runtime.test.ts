/**
 * The `process` runtime (edge/edged/process-runtime.ts) with real child processes (/bin/sh,
 * sleep, node through process.execPath): sandboxes as directories found again after a restart;
 * the reasons a container cannot be created or started; exits, exit codes and CRI logs; graceful
 * and forced stop of the whole process group; exec with its bound and timeout; the recovery of a
 * new runtime on the same root (a leftover process killed, a reused pid left alone); limits
 * through a fake cgroupfs and the message when cgroups are unusable; events.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseCriLine, readCriLog } from '../../edge/edged/logs.js';
import { type ProcessRuntime, procStat } from '../../edge/edged/process-runtime.js';
import { type ContainerConfig, RuntimeError, type RuntimeContainerStatus, type SandboxStatus } from '../../edge/edged/runtime.js';
import { ErrorCode } from '../../shared/errors/index.js';
import { createLogger } from '../../shared/log/index.js';
import { eventually, within } from '../helpers/process.js';
import { WAIT_MS, gone, logged, processRig } from './process-rig.js';

const node = (script: string) => [process.execPath, '-e', script];

const { temp, strays, makeRuntime, sandbox, config } = processRig('ledge-edged-');

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { log, lines, warns: () => lines.filter((l) => l.level === 'warn') };
}

/** Creates and starts a container; returns its id and log path. */
async function run(rt: ProcessRuntime, sb: SandboxStatus, cfg: ContainerConfig): Promise<{ id: string; log: string }> {
  const id = await rt.createContainer(sb.id, cfg);
  await rt.startContainer(id);
  return { id, log: cfg.logPath };
}

async function until(rt: ProcessRuntime, id: string, what: string, pred: (s: RuntimeContainerStatus) => boolean): Promise<RuntimeContainerStatus> {
  let last: RuntimeContainerStatus | undefined;
  return eventually(
    async () => {
      last = await rt.containerStatus(id);
      return last && pred(last) ? last : undefined;
    },
    WAIT_MS,
    `${what} (last: ${JSON.stringify(last)})`,
  );
}

const exited = (rt: ProcessRuntime, id: string) => until(rt, id, 'exited', (s) => s.state === 'exited');

async function rejectsWith(p: Promise<unknown>, reason: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RuntimeError, `a RuntimeError: ${String(err)}`);
    assert.equal(err.code, ErrorCode.Runtime);
    assert.equal(err.reason, reason);
    assert.match(err.message, message);
    return true;
  });
}

describe('sandboxes', () => {
  test('a sandbox is a 0700 directory with sandbox.json; listed; one per directory; stop and remove are idempotent', async () => {
    const { rt, rootDir } = makeRuntime();
    assert.equal(await rt.version(), 'process://ledge');
    assert.deepEqual(await rt.listImages(), []);
    await rt.ensureImage('anything:latest', 'Always');
    const sb = await sandbox(rt, rootDir, 'uid-sb');
    const dir = join(rootDir, 'uid-sb');
    assert.equal(sb.state, 'ready');
    assert.equal(sb.uid, 'uid-sb');
    assert.match(sb.ip ?? '', /^\d+\.\d+\.\d+\.\d+$/);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const rec = JSON.parse(readFileSync(join(dir, 'sandbox.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(rec.id, sb.id);
    assert.equal(rec.uid, 'uid-sb');
    assert.equal(statSync(join(dir, 'sandbox.json')).mode & 0o777, 0o600);
    assert.deepEqual(
      (await rt.listPodSandboxes()).map((s) => s.id),
      [sb.id],
    );
    assert.equal((await sandbox(rt, rootDir, 'uid-sb')).id, sb.id, 'the ready sandbox of the same pod is returned');
    await rejectsWith(
      rt.runPodSandbox({ uid: 'other', name: 'x', namespace: 'default', hostname: 'x', hostNetwork: true, ports: [], labels: {}, podDir: dir }),
      'CreatePodSandboxError',
      /holds the sandbox of pod uid uid-sb/,
    );
    await rt.stopPodSandbox(sb.id);
    await rt.stopPodSandbox(sb.id);
    assert.equal((await rt.listPodSandboxes())[0]?.state, 'notready');
    const again = await sandbox(rt, rootDir, 'uid-sb');
    assert.notEqual(again.id, sb.id, 'a stopped sandbox is replaced');
    assert.deepEqual(
      (await rt.listPodSandboxes()).map((s) => s.id),
      [again.id],
    );
    await rt.removePodSandbox(again.id);
    await rt.removePodSandbox(again.id);
    await rt.removePodSandbox('no-such-sandbox');
    assert.equal(existsSync(dir), false);
    assert.deepEqual(await rt.listPodSandboxes(), []);
  });

  test('a new runtime on the same root finds the sandboxes and containers again', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const { id } = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'exit 5']));
    await exited(rt, id);
    writeFileSync(join(rootDir, 'garbage'), 'not a pod directory');
    mkdirSync(join(rootDir, 'torn'));
    writeFileSync(join(rootDir, 'torn', 'sandbox.json'), '{"id": "x", "ui');
    const { log, warns } = capture();
    const { rt: rt2 } = makeRuntime({ rootDir, log });
    assert.deepEqual(
      (await rt2.listPodSandboxes()).map((s) => [s.id, s.uid, s.state]),
      [[sb.id, sb.uid, 'ready']],
    );
    const [c] = await rt2.listContainers(sb.id);
    assert.equal(c?.id, id);
    assert.equal(c?.state, 'exited');
    assert.equal(c?.exitCode, 5, 'the recorded exit');
    assert.equal(warns().length, 1, 'the torn record is reported once');
    assert.match(String(warns()[0]?.msg), /torn.*sandbox\.json/);
  });
});

describe('containers', () => {
  test('no command: CreateContainerError saying what the process runtime needs', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    await rejectsWith(
      rt.createContainer(sb.id, config(logDir, undefined)),
      'CreateContainerError',
      /has no command: the process runtime runs command \+ args on the host and cannot use the image's entrypoint \(busybox:1\.36\); set command, or use runtimeClassName: container/,
    );
    await rejectsWith(rt.createContainer(sb.id, config(logDir, [])), 'CreateContainerError', /has no command/);
    await rejectsWith(rt.createContainer('nope', config(logDir, ['true'])), 'CreateContainerError', /no sandbox nope/);
    assert.deepEqual(await rt.listContainers(), []);
  });

  test('a command not on PATH, or a missing workingDir: RunContainerError, the container exited with StartError', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const id = await rt.createContainer(sb.id, config(logDir, ['no-such-command-ledge', 'x']));
    await rejectsWith(rt.startContainer(id), 'RunContainerError', /cannot start no-such-command-ledge: no-such-command-ledge not found on PATH/);
    const s = await rt.containerStatus(id);
    assert.equal(s?.state, 'exited');
    assert.equal(s?.reason, 'StartError');
    assert.equal(s?.exitCode, 128);
    await rejectsWith(rt.startContainer(id), 'RunContainerError', /is exited; only a created container can be started/);
    const id2 = await rt.createContainer(sb.id, config(logDir, ['/bin/true'], { workingDir: join(rootDir, 'missing') }));
    await rejectsWith(rt.startContainer(id2), 'RunContainerError', /workingDir .*missing does not exist/);
    const plainFile = join(temp('ledge-noexec-'), 'script');
    writeFileSync(plainFile, '#!/bin/sh\n', { mode: 0o644 });
    const id3 = await rt.createContainer(sb.id, config(logDir, [plainFile]));
    await rejectsWith(rt.startContainer(id3), 'RunContainerError', /not executable/);
  });

  test('a command that succeeds: running, then exited 0 Completed, stdout and stderr as CRI records, exactly the env given, the sandbox as cwd', async () => {
    const { rt, rootDir, logDir, events } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const script = "console.log(JSON.stringify({ env: process.env, cwd: process.cwd() })); console.error('to stderr'); process.stdout.write('no newline')";
    const cfg = config(logDir, node(script), { env: { GREETING: 'hi there', EMPTY: '' } });
    const id = await rt.createContainer(sb.id, cfg);
    const created = await rt.containerStatus(id);
    assert.equal(created?.state, 'created');
    assert.equal(created?.containerID, `process://${id}`);
    assert.equal(created?.imageID, '');
    assert.equal(created?.image, 'busybox:1.36');
    await rt.startContainer(id);
    const s = await exited(rt, id);
    assert.equal(s.exitCode, 0);
    assert.equal(s.reason, 'Completed');
    assert.ok(s.startedAt && s.finishedAt);
    const recs = readFileSync(cfg.logPath, 'utf8')
      .split('\n')
      .slice(0, -1)
      .map((l) => parseCriLine(l));
    assert.ok(recs.every((r) => r !== undefined));
    const out = recs.find((r) => r?.stream === 'stdout' && !r.partial);
    const got = JSON.parse(out?.content.toString() ?? '{}') as { env: Record<string, string>; cwd: string };
    assert.deepEqual(got.env, { GREETING: 'hi there', EMPTY: '' }, 'nothing of EdgeCore leaks into the env');
    assert.equal(got.cwd, join(rootDir, sb.uid));
    assert.ok(recs.some((r) => r?.stream === 'stderr' && !r.partial && r.content.toString() === 'to stderr'));
    assert.ok(
      recs.some((r) => r?.stream === 'stdout' && r.partial && r.content.toString() === 'no newline'),
      'the unfinished last line as P at the exit',
    );
    assert.ok(
      events.some((e) => e.containerId === id && e.sandboxId === sb.id && e.uid === sb.uid),
      'events name the container',
    );
    const rec = JSON.parse(readFileSync(join(rootDir, sb.uid, 'containers', `${id}.json`), 'utf8')) as Record<string, unknown>;
    assert.equal(rec.state, 'exited');
    assert.equal(JSON.stringify(rec).includes('hi there'), false, 'env values are not persisted');
  });

  test('the whole output is in the log once the container is reported exited (the pipes are drained first)', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    // Far more than a pipe holds: the process exits while the end of its output is still in the pipe.
    const { id, log } = await run(
      rt,
      sb,
      config(logDir, node("let s = ''; for (let i = 0; i < 20000; i++) s += 'line ' + i + ' ' + 'y'.repeat(40) + '\\n'; process.stdout.write(s);")),
    );
    await exited(rt, id);
    const text = await readCriLog(log);
    assert.ok(text.endsWith(`line 19999 ${'y'.repeat(40)}\n`), `the last line is there: ${JSON.stringify(text.slice(-80))}`);
    assert.equal(text.split('\n').length - 1, 20000);
  });

  test('output a process that left the group writes after the main exit is still read (bounded by exitDrainMs) before the exit is reported', async () => {
    const { rt, rootDir, logDir } = makeRuntime({ exitDrainMs: WAIT_MS });
    const sb = await sandbox(rt, rootDir);
    // A grandchild in its own session (out of reach of the group kill) holds stdout and writes once the main process is gone.
    const late = "setTimeout(() => console.log('late line'), 200)";
    const main = `require('node:child_process').spawn(process.execPath, ['-e', ${JSON.stringify(late)}], { detached: true, stdio: ['ignore', 'inherit', 'inherit'] }).unref(); console.log('main done')`;
    const { id, log } = await run(rt, sb, config(logDir, node(main)));
    const s = await exited(rt, id);
    assert.equal(s.exitCode, 0);
    assert.equal(await readCriLog(log), 'main done\nlate line\n');
  });

  test('exit 3: exited, Error, exit code 3', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const { id } = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'exit 3']));
    const s = await exited(rt, id);
    assert.equal(s.exitCode, 3);
    assert.equal(s.reason, 'Error');
  });

  test('the exit is an event (no polling needed)', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const id = await rt.createContainer(sb.id, config(logDir, ['/bin/sh', '-c', 'exit 0']));
    const exitSeen = new Promise<void>((ok) => {
      const off = rt.onEvent((e) => {
        if (e.containerId !== id) return;
        void rt.containerStatus(id).then((s) => {
          if (s?.state === 'exited') {
            off();
            ok();
          }
        });
      });
    });
    await rt.startContainer(id);
    await within(exitSeen, WAIT_MS, 'the exit event');
  });

  test('stop: a process that traps SIGTERM exits within the grace; one that ignores it is SIGKILLed after the grace (137); grace 0 is SIGKILL at once', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const trap = await run(
      rt,
      sb,
      config(logDir, node("process.on('SIGTERM', () => { console.log('got TERM'); process.exit(0); }); console.log('ready'); setInterval(() => {}, 1000);")),
    );
    const ignore = await run(rt, sb, config(logDir, node("process.on('SIGTERM', () => console.log('ignored TERM')); console.log('ready'); setInterval(() => {}, 1000);")));
    const kill = await run(rt, sb, config(logDir, node("process.on('SIGTERM', () => console.log('ignored TERM')); console.log('ready'); setInterval(() => {}, 1000);")));
    for (const c of [trap, ignore, kill]) await logged(c.log, 'ready');
    assert.equal((await rt.containerStatus(trap.id))?.state, 'running');

    await within(rt.stopContainer(trap.id, 30), WAIT_MS, 'graceful stop');
    const t = await rt.containerStatus(trap.id);
    assert.equal(t?.state, 'exited', 'resolved once exited');
    assert.equal(t?.exitCode, 0);
    assert.equal(t?.reason, 'Completed');
    assert.match(await readCriLog(trap.log), /got TERM/);

    await within(rt.stopContainer(ignore.id, 0.3), WAIT_MS, 'stop after the grace');
    const i = await rt.containerStatus(ignore.id);
    assert.equal(i?.exitCode, 137);
    assert.equal(i?.reason, 'Error');
    assert.match(await readCriLog(ignore.log), /ignored TERM/, 'SIGTERM came first');

    await within(rt.stopContainer(kill.id, 0), WAIT_MS, 'stop with grace 0');
    assert.equal((await rt.containerStatus(kill.id))?.exitCode, 137);
    assert.doesNotMatch(await readCriLog(kill.log), /ignored TERM/, 'no SIGTERM with grace 0');

    // idempotent
    await within(rt.stopContainer(ignore.id, 0), WAIT_MS, 'stop again');
    await rt.stopContainer('no-such-container', 0);
  });

  test("stop reaches the container's whole process group; an exit of the main process ends the rest of the group", async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const c = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'sleep 1000 & echo "child $!"; wait']));
    const pid = Number(/child (\d+)/.exec(await logged(c.log, 'child '))?.[1]);
    assert.ok(pid > 0 && !gone(pid));
    await within(rt.stopContainer(c.id, 0.2), WAIT_MS, 'stop');
    await eventually(() => gone(pid), WAIT_MS, `the child ${pid} is killed too`);

    const d = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'sleep 1000 & echo "child $!"']));
    const pid2 = Number(/child (\d+)/.exec(await logged(d.log, 'child '))?.[1]);
    assert.ok(pid2 > 0);
    const s = await exited(rt, d.id);
    assert.equal(s.exitCode, 0);
    await eventually(() => gone(pid2), WAIT_MS, `the background child ${pid2} ends with the main process`);
  });

  test('removeContainer kills a running one and drops its record but keeps its log; removePodSandbox removes the pod directory', async () => {
    const { rt, rootDir, logDir, events } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const c = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'echo up; exec sleep 1000']));
    await logged(c.log, 'up');
    const pid = JSON.parse(readFileSync(join(rootDir, sb.uid, 'containers', `${c.id}.json`), 'utf8')).pid as number;
    await within(rt.removeContainer(c.id), WAIT_MS, 'remove');
    assert.ok(gone(pid) || (await eventually(() => gone(pid), WAIT_MS, 'killed')));
    assert.equal(await rt.containerStatus(c.id), undefined);
    assert.equal(existsSync(join(rootDir, sb.uid, 'containers', `${c.id}.json`)), false);
    assert.equal(existsSync(c.log), true, 'Edged owns the logs');
    await rt.removeContainer(c.id);

    const d = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'echo up; exec sleep 1000']));
    await logged(d.log, 'up');
    await within(rt.removePodSandbox(sb.id), WAIT_MS, 'remove sandbox');
    assert.equal(existsSync(join(rootDir, sb.uid)), false);
    assert.deepEqual(await rt.listContainers(), []);
    assert.ok(events.some((e) => e.containerId === d.id));
  });

  test('stopPodSandbox SIGKILLs what still runs in it', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const c = await run(rt, sb, config(logDir, node("process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000);")));
    await logged(c.log, 'ready');
    await within(rt.stopPodSandbox(sb.id), WAIT_MS, 'stop sandbox');
    assert.equal((await rt.containerStatus(c.id))?.exitCode, 137);
    assert.equal((await rt.listPodSandboxes())[0]?.state, 'notready');
    await rejectsWith(rt.createContainer(sb.id, config(logDir, ['true'])), 'CreateContainerError', /is stopped/);
  });
});

describe('exec', () => {
  test("runs in the container's env and working directory, returns output and exit code; killed at its timeout", async () => {
    const { rt, rootDir, logDir } = makeRuntime({ execMaxOutputBytes: 1000 });
    const sb = await sandbox(rt, rootDir);
    const work = temp('ledge-work-');
    const c = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'echo up; exec sleep 1000'], { env: { PATH: process.env.PATH ?? '/bin', FOO: 'bar' }, workingDir: work }));
    await logged(c.log, 'up');
    const r = await within(rt.exec(c.id, ['/bin/sh', '-c', 'echo "$FOO"; pwd; echo oops >&2; exit 4'], { timeoutMs: WAIT_MS }), WAIT_MS, 'exec');
    assert.deepEqual(r, { exitCode: 4, stdout: `bar\n${work}\n`, stderr: 'oops\n', timedOut: false });

    const t = await within(rt.exec(c.id, ['/bin/sh', '-c', 'sleep 1000 & echo "child $!"; wait'], { timeoutMs: 300 }), WAIT_MS, 'exec with a timeout');
    assert.equal(t.timedOut, true);
    assert.equal(t.exitCode, 137);
    const child = Number(/child (\d+)/.exec(t.stdout)?.[1]);
    assert.ok(child > 0, t.stdout);
    await eventually(() => gone(child), WAIT_MS, "the exec's own children are killed at the timeout");

    const big = await within(rt.exec(c.id, node("process.stdout.write('x'.repeat(5000))"), { timeoutMs: WAIT_MS }), WAIT_MS, 'exec with much output');
    assert.equal(big.exitCode, 0);
    assert.ok(big.stdout.startsWith('x'.repeat(1000)));
    assert.match(big.stdout, /^x{1000}\n\[output truncated: 4000 more bytes dropped\]\n$/);

    const nf = await within(rt.exec(c.id, ['no-such-command-ledge'], { timeoutMs: WAIT_MS }), WAIT_MS, 'exec of a missing command');
    assert.equal(nf.exitCode, 127);
    assert.match(nf.stderr, /not found on PATH/);

    await within(rt.stopContainer(c.id, 0), WAIT_MS, 'stop');
    await rejectsWith(rt.exec(c.id, ['/bin/true'], { timeoutMs: 1000 }), 'RunContainerError', /is not running \(exited\)/);
    await rejectsWith(rt.exec('nope', ['/bin/true'], { timeoutMs: 1000 }), 'RunContainerError', /no container nope/);
  });
});

describe('EdgeCore restarts', () => {
  test('a container still running from the previous runtime is killed and reported exited: stopped when EdgeCore restarted', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const c = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'sleep 1000 & echo "child $!"; wait']));
    const child = Number(/child (\d+)/.exec(await logged(c.log, 'child '))?.[1]);
    const pid = JSON.parse(readFileSync(join(rootDir, sb.uid, 'containers', `${c.id}.json`), 'utf8')).pid as number;
    assert.ok(!gone(pid) && !gone(child));
    // The old runtime is dropped as it is (EdgeCore killed with -9): a new one on the same root.
    const { rt: rt2, events } = makeRuntime({ rootDir });
    const [s] = await rt2.listContainers();
    assert.equal(s?.id, c.id);
    assert.equal(s?.state, 'exited');
    assert.equal(s?.exitCode, 137);
    assert.equal(s?.reason, 'Error');
    assert.equal(s?.message, 'stopped when EdgeCore restarted');
    assert.ok(gone(pid), 'killed before the first answer');
    await eventually(() => gone(child), WAIT_MS, 'its process group too');
    assert.ok(events.some((e) => e.containerId === c.id));
    assert.deepEqual(
      (await rt2.listPodSandboxes()).map((x) => x.id),
      [sb.id],
    );
  });

  test('close() leaves the processes running; the next runtime kills them', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const c = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'echo up; exec sleep 1000']));
    await logged(c.log, 'up');
    const pid = JSON.parse(readFileSync(join(rootDir, sb.uid, 'containers', `${c.id}.json`), 'utf8')).pid as number;
    await rt.close();
    assert.equal(gone(pid), false, 'still running after close');
    const { rt: rt2 } = makeRuntime({ rootDir });
    assert.equal((await rt2.containerStatus(c.id))?.message, 'stopped when EdgeCore restarted');
    await eventually(() => gone(pid), WAIT_MS, 'killed by the next runtime');
  });

  test('a recorded pid the kernel gave to another process (other start time) is left alone', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const { id } = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'exit 0']));
    await exited(rt, id);
    // An unrelated process that answers pings, recorded as if it were the container's.
    const other = spawn(process.execPath, ['-e', "process.stdin.on('data', () => process.stdout.write('pong\\n'))"], { stdio: ['pipe', 'pipe', 'ignore'] });
    const otherPid = other.pid;
    assert.ok(otherPid !== undefined);
    strays.push(otherPid);
    const otherExit = new Promise<string>((ok) => other.once('exit', (code, signal) => ok(`exited ${code} ${signal}`)));
    const lines = createInterface({ input: other.stdout });
    const ping = () =>
      new Promise<string>((ok) => {
        lines.once('line', ok);
        other.stdin.write('ping\n');
      });
    assert.equal(await within(Promise.race([ping(), otherExit]), WAIT_MS, 'first pong'), 'pong');
    const start = await eventually(() => procStat(otherPid)?.startTime, WAIT_MS, 'its start time');
    const file = join(rootDir, sb.uid, 'containers', `${id}.json`);
    const rec = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...rec, state: 'running', exitCode: undefined, reason: undefined, pid: otherPid, pidStartTime: String(Number(start) + 1) }));

    const { rt: rt2 } = makeRuntime({ rootDir });
    const s = await rt2.containerStatus(id);
    assert.equal(s?.state, 'exited');
    assert.equal(s?.exitCode, 137);
    assert.match(s?.message ?? '', /ended while EdgeCore was not running/);
    assert.equal(await within(Promise.race([ping(), otherExit]), WAIT_MS, 'pong after the recovery'), 'pong', 'the unrelated process was not killed');
    other.kill('SIGKILL');
    await within(otherExit, WAIT_MS, 'the unrelated process to end');
  });

  test('a container created but not started before the restart cannot be started (its env was not kept)', async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const id = await rt.createContainer(sb.id, config(logDir, ['/bin/true']));
    const { rt: rt2 } = makeRuntime({ rootDir });
    assert.equal((await rt2.containerStatus(id))?.state, 'created');
    await rejectsWith(rt2.startContainer(id), 'RunContainerError', /created before EdgeCore restarted/);
  });
});

describe('limits', () => {
  function fakeCgroupRoot(): string {
    const root = temp('ledge-cgfs-');
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu io memory pids\n');
    writeFileSync(join(root, 'cgroup.subtree_control'), '');
    return root;
  }

  test('with a (fake) cgroup v2 hierarchy: memory.max and cpu.max written, the pid moved in, OOMKilled from memory.events, removed with the container', async () => {
    const cgroupRoot = fakeCgroupRoot();
    const { rt, rootDir, logDir } = makeRuntime({ cgroupRoot, cgroupSelfPath: '/' });
    const sb = await sandbox(rt, rootDir);
    const cfg = config(logDir, ['/bin/sh', '-c', 'echo up; exec sleep 1000'], { resources: { memoryBytes: 64 * 1024 * 1024, cpuMillis: 500 } });
    const id = await rt.createContainer(sb.id, cfg);
    const dir = join(cgroupRoot, 'ledge', `pod${sb.uid}`, id);
    assert.equal(readFileSync(join(dir, 'memory.max'), 'utf8'), String(64 * 1024 * 1024));
    assert.equal(readFileSync(join(dir, 'cpu.max'), 'utf8'), '50000 100000');
    writeFileSync(join(dir, 'cgroup.kill'), '');
    await rt.startContainer(id);
    await logged(cfg.logPath, 'up');
    const pid = JSON.parse(readFileSync(join(rootDir, sb.uid, 'containers', `${id}.json`), 'utf8')).pid as number;
    assert.equal(readFileSync(join(dir, 'cgroup.procs'), 'utf8'), String(pid));
    assert.equal((await rt.containerStatus(id))?.message, undefined);
    writeFileSync(join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n');
    await within(rt.stopContainer(id, 0), WAIT_MS, 'stop');
    const s = await rt.containerStatus(id);
    assert.equal(s?.reason, 'OOMKilled');
    assert.equal(s?.exitCode, 137);
    assert.equal(readFileSync(join(dir, 'cgroup.kill'), 'utf8'), '1', 'SIGKILL empties the cgroup too');
    await rt.removeContainer(id);
    assert.equal(existsSync(dir), false);
    await rt.removePodSandbox(sb.id);
    assert.deepEqual(
      readdirSync(join(cgroupRoot, 'ledge'), { withFileTypes: true }).filter((e) => e.isDirectory()),
      [],
      "the pod's cgroup is gone",
    );
  });

  test('without usable cgroups: the containers that ask for limits say "limits not enforced: <reason>", the log says it once', async () => {
    const { log, warns } = capture();
    const { rt, rootDir, logDir } = makeRuntime({ log });
    const sb = await sandbox(rt, rootDir);
    const plain = await rt.createContainer(sb.id, config(logDir, ['/bin/true']));
    const a = await rt.createContainer(sb.id, config(logDir, ['/bin/sh', '-c', 'exit 0'], { resources: { memoryBytes: 1 << 26 } }));
    const b = await rt.createContainer(sb.id, config(logDir, ['/bin/true'], { resources: { cpuMillis: 100 } }));
    assert.equal((await rt.containerStatus(plain))?.message, undefined);
    assert.match((await rt.containerStatus(a))?.message ?? '', /^limits not enforced: no cgroup v2 hierarchy at /);
    assert.match((await rt.containerStatus(b))?.message ?? '', /^limits not enforced: /);
    await rt.startContainer(a);
    const s = await exited(rt, a);
    assert.equal(s.reason, 'Completed');
    assert.match(s.message ?? '', /^limits not enforced: /, 'kept in the exited status');
    assert.equal(warns().filter((w) => /not enforced/.test(String(w.msg))).length, 1);
  });
});

describe('log ingest rate limit', () => {
  const KiB = 1024;
  const sizeOf = (path: string) => {
    try {
      return statSync(path).size;
    } catch {
      return 0;
    }
  };

  test('a container printing as fast as it can (`yes`) fills its log at the limit: over a window, at most limit × window + burst; one info line', async () => {
    const rate = 64 * KiB;
    const burst = 64 * KiB;
    const { log, lines } = capture();
    const { rt, rootDir, logDir } = makeRuntime({ log, containerLogMaxBytesPerSecond: rate, containerLogBurstBytes: burst });
    const sb = await sandbox(rt, rootDir);
    // A large file bound: a rotation would hide bytes from the measure.
    const { id, log: path } = await run(rt, sb, config(logDir, ['yes'], { name: 'loud', logMaxBytes: 256 << 20 }));
    try {
      await eventually(() => sizeOf(path) >= burst, WAIT_MS, 'the burst in the log');
      const s0 = sizeOf(path);
      const t0 = performance.now();
      await eventually(() => sizeOf(path) >= s0 + rate, WAIT_MS * 2, 'the log to grow past the burst');
      const s1 = sizeOf(path);
      const t1 = performance.now();
      assert.ok(s1 - s0 <= burst + (rate * (t1 - t0)) / 1000, `${s1 - s0} bytes in ${Math.round(t1 - t0)} ms at ${rate} B/s`);
      const notices = lines.filter((l) => /prints faster than/.test(String(l.msg)));
      assert.equal(notices.length, 1);
      assert.equal(notices[0]?.level, 'info');
      assert.match(String(notices[0]?.msg), /^container loud of pod default\/pod-\d+ prints faster than 64 KiB\/s; its output is slowed \(--container-log-max-bytes-per-second\)$/);
      assert.equal((await rt.containerStatus(id))?.state, 'running', 'slowed, not stopped');
    } finally {
      await within(rt.stopContainer(id, 0), WAIT_MS, 'stop');
    }
  });

  test('at the exit nothing is cut: the pipes are read at full speed, the log ends with the last line', async () => {
    // The main process exits once its last bytes are in the kernel's buffer (libuv's stdio pipes are socket pairs: a few hundred KiB),
    // so most of its output is still unread at the exit: seconds at the limit, far more than exitDrainMs.
    const { rt, rootDir, logDir } = makeRuntime({ exitDrainMs: 500, containerLogMaxBytesPerSecond: 64 * KiB, containerLogBurstBytes: 16 * KiB });
    const sb = await sandbox(rt, rootDir);
    const { id, log: path } = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'head -c 300000 /dev/zero | tr "\\0" x; echo; echo END']));
    const s = await until(rt, id, 'exited', (st) => st.state === 'exited');
    assert.equal(s.exitCode, 0);
    const text = await readCriLog(path);
    assert.ok(text.endsWith('\nEND\n'), `the log ends with END (${text.length} bytes)`);
    assert.equal(text, `${'x'.repeat(300000)}\nEND\n`);
  });

  test('an attached session gets what the log gets, under the limit', async () => {
    const { rt, rootDir, logDir } = makeRuntime({ containerLogMaxBytesPerSecond: 256 * KiB, containerLogBurstBytes: 16 * KiB });
    const sb = await sandbox(rt, rootDir);
    // More than the kernel buffers (a few hundred KiB): the process is slowed, the output cut into what the budget admits.
    const cmd = 'read go; i=0; while [ $i -lt 3000 ]; do echo "line $i"; i=$((i+1)); done; head -c 700000 /dev/zero | tr "\\0" y; echo; echo END';
    const { id, log: path } = await run(rt, sb, config(logDir, ['/bin/sh', '-c', cmd], { stdin: true }));
    const out: Buffer[] = [];
    const a = await rt.attach(id, { stdin: true, stdout: true, stderr: true, tty: false }, { stdout: (b) => void out.push(Buffer.from(b)), stderr: () => {} });
    a.writeStdin(Buffer.from('go\n'));
    assert.deepEqual(await within(a.done, WAIT_MS * 2, 'the attach to end'), { exitCode: 0 });
    const text = await readCriLog(path);
    assert.ok(text.endsWith('\nEND\n'));
    assert.equal(Buffer.concat(out).toString(), text);
  });

  test('exec sessions are not limited: their output goes to the stream as fast as it is read', async () => {
    const { rt, rootDir, logDir } = makeRuntime({ containerLogMaxBytesPerSecond: 1 * KiB, containerLogBurstBytes: 4 * KiB });
    const sb = await sandbox(rt, rootDir);
    const { id } = await run(rt, sb, config(logDir, ['/bin/sh', '-c', 'exec sleep 1000']));
    try {
      let got = 0;
      // 4 MiB: over an hour at the container's log limit.
      const s = await rt.execStream(
        id,
        ['/bin/sh', '-c', 'head -c 4194304 /dev/zero'],
        { stdin: false, stdout: true, stderr: true, tty: false },
        { stdout: (b) => void (got += b.length), stderr: () => {} },
      );
      assert.deepEqual(await within(s.done, WAIT_MS, 'the exec to end'), { exitCode: 0 });
      assert.equal(got, 4194304);
    } finally {
      await within(rt.stopContainer(id, 0), WAIT_MS, 'stop');
    }
  });
});
