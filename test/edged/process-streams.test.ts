/**
 * kubectl exec / attach on the `process` runtime (edge/edged/process-runtime.ts execStream and
 * attach) with real processes: stdout and stderr delivered apart as they come, exit codes, stdin
 * and its end, 127/126 for a command that cannot start, cancel killing the whole group, a
 * terminal through util-linux `script` (its device, first size, resize, merged output, its
 * session killed at cancel), back-pressure that loses nothing, attach seeing the live output
 * only, attach -i writing to the container's stdin (the log gets it too), the refusals, and exec
 * sessions ending with their container.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { accessSync, chmodSync, constants, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readCriLog } from '../../edge/edged/logs.js';
import type { ProcessRuntimeOptions } from '../../edge/edged/process-runtime.js';
import { type ContainerConfig, RuntimeError, type StreamEnd, type StreamOptions, type StreamSession } from '../../edge/edged/runtime.js';
import { ErrorCode } from '../../shared/errors/index.js';
import { eventually, within } from '../helpers/process.js';
import { WAIT_MS, gone, logged, processRig } from './process-rig.js';

const DROPPED = '[output dropped: the reader is too slow]';

const { temp, strays, makeRuntime, sandbox, config } = processRig('ledge-streams-');

/** A runtime, a sandbox and a running container (`sleep 1000` unless told). */
async function running(command = ['/bin/sh', '-c', 'exec sleep 1000'], extra: Partial<ContainerConfig> = {}, opts: Partial<ProcessRuntimeOptions> = {}) {
  const { rt, rootDir, logDir } = makeRuntime(opts);
  const sb = await sandbox(rt, rootDir);
  const cfg = config(logDir, command, extra);
  const id = await rt.createContainer(sb.id, cfg);
  await rt.startContainer(id);
  return { rt, id, log: cfg.logPath, podDir: join(rootDir, sb.uid) };
}

/** Output callbacks that keep what they get. */
function collect() {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let outBytes = 0;
  return {
    output: {
      stdout: (b: Uint8Array) => {
        out.push(Buffer.from(b));
        outBytes += b.length;
      },
      stderr: (b: Uint8Array) => void err.push(Buffer.from(b)),
    },
    stdout: () => Buffer.concat(out).toString(),
    stderr: () => Buffer.concat(err).toString(),
    outBytes: () => outBytes,
  };
}

const streams = (o: Partial<StreamOptions> = {}): StreamOptions => ({ stdin: false, stdout: true, stderr: true, tty: false, ...o });

function ended(s: StreamSession, what = 'the session to end'): Promise<StreamEnd> {
  return within(s.done, WAIT_MS, what);
}

/** The pid a command printed as `child <pid>`. */
async function childPid(text: () => string): Promise<number> {
  const pid = Number(await eventually(() => /child (\d+)/.exec(text())?.[1], WAIT_MS, 'the child pid'));
  strays.push(pid);
  return pid;
}

function readFileIf(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** True when `cond` held at each of `polls` checks 50 ms apart (a negative observation, bounded). */
async function holds(cond: () => boolean, polls: number): Promise<boolean> {
  for (let i = 0; i < polls; i++) {
    if (!cond()) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

async function rejectsWith(p: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RuntimeError, `a RuntimeError: ${String(err)}`);
    assert.equal(err.code, ErrorCode.Runtime);
    assert.equal(err.reason, 'RunContainerError');
    assert.match(err.message, message);
    return true;
  });
}

describe('execStream', () => {
  test('stdout and stderr arrive apart, with the env and working directory of the container; the exit code', async () => {
    const work = temp('ledge-work-');
    const { rt, id } = await running(undefined, { env: { PATH: process.env.PATH ?? '/bin', FOO: 'bar' }, workingDir: work });
    const o = collect();
    const s = await rt.execStream(id, ['/bin/sh', '-c', 'echo "$FOO"; pwd; echo oops >&2'], streams(), o.output);
    assert.deepEqual(await ended(s), { exitCode: 0 });
    assert.equal(o.stdout(), `bar\n${work}\n`);
    assert.equal(o.stderr(), 'oops\n');
    const o3 = collect();
    const s3 = await rt.execStream(id, ['sh', '-c', 'echo three; exit 3'], streams(), o3.output);
    assert.deepEqual(await ended(s3), { exitCode: 3 });
    assert.equal(o3.stdout(), 'three\n');
  });

  test('stdin is piped and its output streams before the end; endStdin ends it', async () => {
    const { rt, id } = await running();
    const o = collect();
    const s = await rt.execStream(id, ['cat'], streams({ stdin: true }), o.output);
    s.writeStdin(Buffer.from('hello\n'));
    await eventually(() => o.stdout() === 'hello\n', WAIT_MS, 'cat echoes while it runs');
    s.writeStdin(Buffer.from('again\n'));
    s.endStdin();
    s.writeStdin(Buffer.from('ignored after the end\n'));
    assert.deepEqual(await ended(s), { exitCode: 0 });
    assert.equal(o.stdout(), 'hello\nagain\n');
  });

  test('a command not found ends with 127, one not executable with 126 (no rejection)', async () => {
    const { rt, id } = await running();
    const nf = await rt.execStream(id, ['no-such-command-ledge'], streams(), collect().output);
    const end = await ended(nf);
    assert.equal(end.exitCode, 127);
    assert.match(end.error ?? '', /no-such-command-ledge not found/);
    const plain = join(temp('ledge-noexec-'), 'plain');
    writeFileSync(plain, 'echo hi\n');
    chmodSync(plain, 0o644);
    const ne = await ended(await rt.execStream(id, [plain], streams(), collect().output));
    assert.equal(ne.exitCode, 126);
    assert.match(ne.error ?? '', /not executable/);
    await rejectsWith(rt.execStream(id, [], streams(), collect().output), /empty command/);
  });

  test('cancel SIGKILLs the process group: 137, and what it started is gone', async () => {
    const { rt, id } = await running();
    const s = await rt.execStream(id, ['sleep', '100'], streams(), collect().output);
    s.cancel();
    assert.deepEqual(await ended(s), { exitCode: 137 });
    const o = collect();
    const g = await rt.execStream(id, ['/bin/sh', '-c', 'sleep 100 & echo "child $!"; wait'], streams(), o.output);
    const pid = await childPid(o.stdout);
    assert.equal(gone(pid), false);
    g.cancel();
    assert.deepEqual(await ended(g), { exitCode: 137 });
    await eventually(() => gone(pid), WAIT_MS, 'the background sleep is killed with its group');
  });

  test('what the command left in its process group ends with it', async () => {
    const { rt, id } = await running();
    const o = collect();
    const s = await rt.execStream(id, ['/bin/sh', '-c', 'sleep 100 & echo "child $!"'], streams(), o.output);
    assert.deepEqual(await ended(s), { exitCode: 0 });
    const pid = await childPid(o.stdout);
    await eventually(() => gone(pid), WAIT_MS, 'the background sleep is killed at the exit');
  });

  test('pause stops the delivery, resume delivers the rest: nothing lost', async () => {
    const { rt, id } = await running();
    const total = 5_000_000;
    const o = collect();
    let s: StreamSession | undefined;
    let pausedAt = -1;
    const output = {
      stdout: (b: Uint8Array) => {
        o.output.stdout(b);
        if (pausedAt < 0 && s) {
          s.pause();
          pausedAt = o.outBytes();
        }
      },
      stderr: o.output.stderr,
    };
    s = await rt.execStream(id, ['/bin/sh', '-c', `yes | head -c ${total}`], streams(), output);
    let settled = false;
    void s.done.then(() => (settled = true));
    // Paused: the count stops growing (the producer blocks on the full pipe), far below the total.
    let last = -1;
    let stable = 0;
    await eventually(
      () => {
        const n = o.outBytes();
        stable = n === last ? stable + 1 : 0;
        last = n;
        return pausedAt >= 0 && stable >= 5;
      },
      WAIT_MS,
      'the delivery to stop while paused',
    );
    assert.ok(o.outBytes() < total / 2, `paused after ${pausedAt} bytes, yet ${o.outBytes()} delivered`);
    assert.equal(settled, false, 'not done while its output is held');
    s.resume();
    assert.deepEqual(await ended(s), { exitCode: 0 });
    assert.equal(o.outBytes(), total);
    assert.equal(o.stdout(), 'y\n'.repeat(total / 2));
  });

  test('output still in the pipe at the exit waits for a paused reader (the drain bound counts unpaused time only)', async () => {
    const { rt, id } = await running(undefined, {}, { exitDrainMs: 50 });
    const marker = join(temp('ledge-marker-'), 'pid');
    const o = collect();
    const s = await rt.execStream(id, ['/bin/sh', '-c', `read x; echo "data $x"; echo $$ >${marker}`], streams({ stdin: true }), o.output);
    let settled = false;
    void s.done.then(() => (settled = true));
    s.pause();
    s.writeStdin(Buffer.from('go\n'));
    const pid = Number(await eventually(() => readFileIf(marker), WAIT_MS, 'the command to write its pid'));
    await eventually(() => gone(pid), WAIT_MS, 'the command to exit');
    // An observation window several drain bounds long: a drain cut while paused would end it now.
    assert.ok(await holds(() => !settled, 10), 'not ended while paused with its output unread');
    assert.equal(o.stdout(), '');
    s.resume();
    assert.deepEqual(await ended(s), { exitCode: 0 });
    assert.equal(o.stdout(), 'data go\n');
  });

  test('exec and attach on a stopped container are refused', async () => {
    const { rt, id } = await running();
    await within(rt.stopContainer(id, 0), WAIT_MS, 'stop');
    await rejectsWith(rt.execStream(id, ['true'], streams(), collect().output), /is not running \(exited\)/);
    await rejectsWith(rt.attach(id, streams(), collect().output), /is not running \(exited\)/);
    await rejectsWith(rt.execStream('nope', ['true'], streams(), collect().output), /no container nope/);
  });

  test('exec sessions are killed when their container is removed', async () => {
    const { rt, id } = await running();
    const o = collect();
    const s = await rt.execStream(id, ['/bin/sh', '-c', 'sleep 100 & echo "child $!"; wait'], streams(), o.output);
    const pid = await childPid(o.stdout);
    await within(rt.removeContainer(id), WAIT_MS, 'remove');
    const end = await ended(s);
    assert.equal(end.exitCode, 137);
    assert.match(end.error ?? '', /exited/);
    await eventually(() => gone(pid), WAIT_MS, "the exec's processes are gone with the container");
  });
});

/** `script` on PATH, as the runtime looks for it; the tty tests are skipped (saying why) without it. */
function findScript(): boolean {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/bin', '/bin']) {
    if (!dir) continue;
    try {
      accessSync(join(dir, 'script'), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}
const noScript = findScript() ? false : 'util-linux `script` is not installed here (package bsdutils): the tty tests need it';

/** Writes `line` to a tty session until `re` shows in its output (a resize applies asynchronously). */
function ask(s: StreamSession, text: () => string, line: string, re: RegExp, what: string): Promise<RegExpExecArray> {
  return eventually(
    () => {
      const m = re.exec(text());
      if (!m) s.writeStdin(Buffer.from(`${line}\n`));
      return m;
    },
    WAIT_MS,
    what,
  );
}

describe('execStream with a tty (util-linux script)', { skip: noScript }, () => {
  test('a terminal: its device, its first size, a resize; stdin EOF ends the shell', async () => {
    const { rt, id } = await running();
    const o = collect();
    const s = await rt.execStream(id, ['sh'], streams({ stdin: true, tty: true, size: { width: 80, height: 24 } }), o.output);
    s.writeStdin(Buffer.from('tty\n'));
    await eventually(() => /\/dev\/pts\/\d+/.test(o.stdout()), WAIT_MS, 'tty prints a /dev/pts device');
    await ask(s, o.stdout, 'echo "A$(stty size)B"', /A24 80B/, 'the first size');
    s.resize({ width: 100, height: 30 });
    await ask(s, o.stdout, 'echo "A$(stty size)B"', /A30 100B/, 'the new size after the resize');
    await ask(s, o.stdout, 'echo "T$TERM"T', /TxtermT/, 'TERM=xterm when the env has none');
    s.endStdin();
    assert.deepEqual(await ended(s), { exitCode: 0 });
    assert.equal(o.stderr(), '', 'a terminal has one output stream');
  });

  test('the size is set before the command runs; stdout and stderr are one stream; the exit code', async () => {
    const { rt, id } = await running();
    const o = collect();
    const s = await rt.execStream(id, ['stty', 'size'], streams({ tty: true, size: { width: 132, height: 43 } }), o.output);
    assert.deepEqual(await ended(s), { exitCode: 0 });
    assert.match(o.stdout(), /^43 132\r?\n$/);
    const m = collect();
    const e = await rt.execStream(id, ['/bin/sh', '-c', "echo out; echo err >&2; echo 'it''s quoted'; exit 5"], streams({ tty: true }), m.output);
    assert.deepEqual(await ended(e), { exitCode: 5 });
    assert.match(m.stdout(), /out\r\nerr\r\nits quoted\r\n/);
    assert.equal(m.stderr(), '');
  });

  test('a command not found ends with 127; cancel kills the terminal session: 137, its processes gone', async () => {
    const { rt, id } = await running();
    const nf = await ended(await rt.execStream(id, ['no-such-command-ledge'], streams({ tty: true }), collect().output));
    assert.equal(nf.exitCode, 127);
    assert.match(nf.error ?? '', /not found/);
    const o = collect();
    // SIGHUP ignored: the terminal's hangup alone would not end them.
    const s = await rt.execStream(id, ['/bin/sh', '-c', 'trap "" HUP; sleep 100 & echo "child $!"; wait'], streams({ stdin: true, tty: true }), o.output);
    const pid = await childPid(o.stdout);
    s.cancel();
    assert.deepEqual(await ended(s), { exitCode: 137 });
    await eventually(() => gone(pid), WAIT_MS, 'what ran in the terminal is killed');
  });

  test('what the command left in its terminal session ends with it; the pid file goes', async () => {
    const { rt, id, podDir } = await running();
    const o = collect();
    const s = await rt.execStream(id, ['/bin/sh', '-c', 'trap "" HUP; sleep 100 & echo "child $!"'], streams({ tty: true }), o.output);
    assert.deepEqual(await ended(s), { exitCode: 0 });
    const pid = await childPid(o.stdout);
    await eventually(() => gone(pid), WAIT_MS, 'the background sleep is killed at the exit');
    await eventually(() => !readdirSync(podDir).some((f) => f.endsWith('.pid')), WAIT_MS, 'the session pid file removed');
  });
});

describe('execStream with a tty, without script', () => {
  test('is refused, saying what to install and to run exec without -t', async () => {
    const { rt, id } = await running(undefined, {}, { ttyScript: 'no-such-script-ledge' });
    await rejectsWith(rt.execStream(id, ['sh'], streams({ tty: true }), collect().output), /needs util-linux `script`.*install bsdutils.*without -t/);
    // Without -t it works.
    const o = collect();
    assert.deepEqual(await ended(await rt.execStream(id, ['echo', 'fine'], streams(), o.output)), { exitCode: 0 });
    assert.equal(o.stdout(), 'fine\n');
  });
});

describe('close', () => {
  test('ends the attach sessions and kills the exec sessions, saying why; the container is left running', async () => {
    const { rt, id, podDir } = await running(['sleep', '1000']);
    const rec = JSON.parse(readFileSync(join(podDir, 'containers', `${id}.json`), 'utf8')) as { pid: number };
    strays.push(rec.pid);
    const a = await rt.attach(id, streams(), collect().output);
    const e = await rt.execStream(id, ['sleep', '100'], streams(), collect().output);
    await rt.close();
    assert.deepEqual(await ended(a), { error: 'the process runtime closed' });
    assert.deepEqual(await ended(e), { exitCode: 137, error: 'the process runtime closed' });
    assert.equal(gone(rec.pid), false);
  });
});

describe('attach', () => {
  test('sees the output from now on, not the history; cancel detaches and the container runs on', async () => {
    const { rt, id, log } = await running(['/bin/sh', '-c', 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.05; done']);
    await logged(log, 'tick 3');
    const before = Math.max(...[...(await readCriLog(log)).matchAll(/tick (\d+)/g)].map((m) => Number(m[1])));
    const o = collect();
    const a = await rt.attach(id, streams(), o.output);
    const first = Number(await eventually(() => /tick (\d+)/.exec(o.stdout())?.[1], WAIT_MS, 'a tick in the attach'));
    assert.ok(first > before, `the first tick attached (${first}) came after the last logged before (${before})`);
    a.cancel();
    assert.deepEqual(await ended(a), {});
    assert.equal((await rt.containerStatus(id))?.state, 'running');
  });

  test('attach -i writes to the stdin of a container created with stdin: the output is in the attach and in the log', async () => {
    const { rt, id, log } = await running(['cat'], { stdin: true });
    const o = collect();
    const a = await rt.attach(id, streams({ stdin: true }), o.output);
    a.writeStdin(Buffer.from('hello attach\n'));
    await eventually(() => o.stdout() === 'hello attach\n', WAIT_MS, 'the echo in the attach');
    await logged(log, 'hello attach');
    // Without stdinOnce, the end of this session's stdin does not close the container's.
    a.endStdin();
    a.cancel();
    assert.deepEqual(await ended(a), {});
    const b = collect();
    const a2 = await rt.attach(id, streams({ stdin: true }), b.output);
    a2.writeStdin(Buffer.from('second\n'));
    await eventually(() => b.stdout() === 'second\n', WAIT_MS, 'a second attach writes too');
    assert.equal((await rt.containerStatus(id))?.state, 'running');
    a2.cancel();
  });

  test('with stdinOnce, endStdin closes the container stdin: the container exits and done has its exit code', async () => {
    const { rt, id } = await running(['/bin/sh', '-c', 'cat; echo "bye"; exit 4'], { stdin: true, stdinOnce: true });
    const o = collect();
    const a = await rt.attach(id, streams({ stdin: true }), o.output);
    a.writeStdin(Buffer.from('once\n'));
    a.endStdin();
    assert.deepEqual(await ended(a), { exitCode: 4 });
    assert.equal(o.stdout(), 'once\nbye\n');
  });

  test('refused with -t, and with -i to a container without stdin', async () => {
    const { rt, id } = await running();
    await rejectsWith(rt.attach(id, streams({ tty: true }), collect().output), /runs containers without a terminal; attach without -t/);
    await rejectsWith(rt.attach(id, streams({ stdin: true }), collect().output), /not created with stdin: true/);
  });

  test('a paused attach holds a bounded amount, then drops with one note; the log and other sessions get everything', async () => {
    const { rt, id, log } = await running(['cat'], { stdin: true }, { attachMaxBufferedBytes: 1000 });
    const slow = collect();
    const p = await rt.attach(id, streams(), slow.output);
    const w = collect();
    const writer = await rt.attach(id, streams({ stdin: true }), w.output);
    p.pause();
    const lines = Array.from({ length: 10 }, (_, i) => `${String(i).repeat(300)}\n`);
    for (const l of lines) writer.writeStdin(Buffer.from(l));
    writer.writeStdin(Buffer.from('end\n'));
    await logged(log, 'end');
    await eventually(() => w.stdout().endsWith('end\n'), WAIT_MS, 'the session that reads gets everything');
    assert.equal(w.stdout(), `${lines.join('')}end\n`);
    assert.equal(slow.outBytes(), 0, 'nothing delivered while paused');
    p.resume();
    assert.ok(slow.outBytes() <= 1000, `at most the bound held (${slow.outBytes()})`);
    assert.ok(lines.join('').startsWith(slow.stdout()), 'what was held is the start of the output, in order');
    assert.equal(slow.stderr().split(DROPPED).length - 1, 1, `one note: ${slow.stderr()}`);
    writer.writeStdin(Buffer.from('after\n'));
    await eventually(() => slow.stdout().endsWith('after\n'), WAIT_MS, 'delivery goes on after the gap');
    const text = await readCriLog(log);
    assert.equal(text, `${lines.join('')}end\nafter\n`, 'the log lost nothing');
    p.cancel();
    writer.cancel();
  });
});
