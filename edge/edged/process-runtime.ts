/**
 * @module
 * The `process` runtime ({@link ContainerRuntime}): no images, no isolation, nothing to install.
 *
 * - **Sandbox** = the pod's directory (`SandboxConfig.podDir`, made 0700 if missing) holding
 *   `sandbox.json` (id, pod uid/name/namespace, created, state). Networking is always the host's
 *   (hostNetwork in effect): the sandbox's IP is the host's first non-internal IPv4 address, or
 *   127.0.0.1. One sandbox per directory: running a sandbox where a ready one of the same pod is
 *   returns that one; a stopped one there is replaced (its container records dropped).
 *   `removePodSandbox` removes its containers and the whole directory.
 * - **Container** = a child process, spawned without a shell from `command[0]` with
 *   `command[1..] + args`, found on the PATH of the container's env, in `workingDir` (else the
 *   sandbox directory), with exactly the env given (nothing of EdgeCore's added), in its own
 *   process group (`detached`), so stop signals reach what it started. A container without
 *   `command` cannot be created (`CreateContainerError`: there is no image entrypoint to fall back
 *   on); a command that cannot be started (not found, not executable, missing workingDir) fails
 *   `startContainer` with `RunContainerError` and leaves the container exited with reason
 *   `StartError` and exit code 128 (containerd's convention). stdout and stderr go to
 *   `ContainerConfig.logPath` as CRI log records (./logs.ts), bounded at `logMaxBytes` per file,
 *   and at `containerLogMaxBytesPerSecond` of records with a burst (./log-rate.ts): past it both
 *   pipes are paused (the container blocks once they are full; nothing is dropped), attached
 *   sessions get what the log gets; at the main process's exit the limit ends, so the drain reads
 *   the rest at full speed. One info line per throttling episode, at most once a minute per container.
 *   stdin is a pipe nothing writes to when `stdin` is set (else /dev/null); `tty` and `mounts`
 *   are not applied (a process sees the host's filesystem: Edged names volume paths in the env).
 *   When the main process exits, what is left of its process group is SIGKILLed (a container
 *   ends with its main process, as in a pid namespace), the output still in the pipes is read
 *   (at most `exitDrainMs` more), and the container is `exited`: exit code (128 + the signal
 *   number when killed by one), reason `Completed` (0), `OOMKilled` (its cgroup saw an OOM kill)
 *   or `Error`. Every state change is an event to {@link ProcessRuntime.onEvent} listeners.
 * - **Stop** is SIGTERM to the process group, SIGKILL after the grace (0: SIGKILL at once).
 *   `removeContainer` SIGKILLs a running one and drops its record and cgroup, not its log file
 *   (Edged owns the logs and removes them with the pod). `stopPodSandbox` SIGKILLs what still runs.
 *   **exec** runs a command with the container's env and working directory (no shell), its
 *   output captured up to `execMaxOutputBytes` per stream, SIGKILLed (exit code 137, `timedOut`)
 *   at its timeout; what it started in the background ends with it (as a container's group
 *   does); a command that cannot be started answers exit code 127 (not found) or 126.
 * - **execStream** (kubectl exec) spawns the command as exec does (env, working directory, PATH,
 *   own process group) with its streams connected: stdout and stderr reach the caller's callbacks
 *   as they are read, unbounded; `pause()` stops reading the pipes (the process blocks once they
 *   are full), `resume()` reads on. A command not found or not executable is no rejection: the
 *   session's `done` is `{exitCode: 127 | 126, error}` (what kubectl shows). `done` comes once the
 *   process exited and its output was delivered (what it left in its group is SIGKILLed at its
 *   exit, as exec does; a pipe still held after that is read `exitDrainMs` more, paused time not
 *   counted): the exit code, 128 + the signal when killed by one, 137 after `cancel()` (SIGKILL to
 *   the group). Sessions are tracked per container: when the container's main process ends (stop,
 *   remove, crash), they are SIGKILLed (exit code 137, `error` says why), as a pid namespace would.
 *   **With a tty**: Node has no pty without a native addon, so the command runs under util-linux
 *   `script -q -e -f -c '<line>' /dev/null` (Debian's bsdutils, always installed; missing: exec
 *   -t is refused with a RuntimeError saying so, exec without -t works). `<line>` (run by /bin/sh,
 *   which leads the terminal's session) writes its pid to `<sandbox dir>/exec-<random>.pid`
 *   (removed at the end), sets the first size (`stty rows H cols W`), restores the container's
 *   SHELL and `exec`s the shell-quoted command: the terminal has its size before the command
 *   starts. TERM is `xterm` when the env has none. stdout and stderr are one stream (delivered as
 *   stdout), the terminal echoes input, and the end of stdin reaches the command as the terminal's
 *   EOF (^D). A resize is `stty -F /dev/pts/N rows H cols W` (the kernel sends SIGWINCH), N read
 *   in /proc from the fds of that session's leader (else of `script`), looked for at most 2 s after
 *   the start. `cancel()` and the exit kill the terminal's whole session (every process whose
 *   session id is that pid), not only `script`'s group.
 * - **attach** (kubectl attach) gives the main process's output from now on (not the history; the
 *   log gets everything as before) to the session, and its stdin when asked: refused
 *   (RuntimeError) with `-t` (containers have no terminal here) and with `-i` for a container not
 *   created with `stdin: true`. `endStdin()` closes the container's stdin when it has `stdinOnce`
 *   (also at a detach of that session), else only stops forwarding. `cancel()` detaches (`done`:
 *   `{}`), the container runs on; when it exits, `done` is `{exitCode}` after the last output. The
 *   log writer never waits for a session: a paused one holds at most `attachMaxBufferedBytes`
 *   (1 MiB), then drops what comes with one `[output dropped: the reader is too slow]` note (on
 *   stderr when the session has it) where the gap is, until it caught up.
 * - **Limits** through cgroup v2 where the host allows (./cgroup.ts); where it does not, the
 *   status message of a container that asked for limits says `limits not enforced: <reason>`,
 *   and the log says it once.
 *
 * **Persistence and EdgeCore restarts.** Each container is recorded in
 * `<podDir>/containers/<id>.json` (written atomically, 0600): its config except the env values
 * (they may hold secrets: the env lives in memory only), its state, pid, the process start time
 * (field 22 of /proc/<pid>/stat) and its exit. A new runtime on the same `rootDir` finds every
 * `<rootDir>/<pod>/sandbox.json` and its containers again, at its first call. A container
 * recorded running whose process still lives (same pid AND same start time, so a pid the kernel
 * gave to another process since is never touched) is a leftover: its output pipes died with the
 * old EdgeCore, so it cannot be supervised again; its process group (and cgroup) is SIGKILLed
 * and it is reported exited with exit code 137, reason `Error`, message `stopped when EdgeCore
 * restarted`, for Edged to restart as the pod's policy says. One whose process is gone is
 * exited with exit code 137 and a message saying its end was not seen. A container created but
 * never started cannot be started after a restart (its env was not kept): it must be created
 * again.
 *
 * **close()** releases timers, log files and the pipes and leaves the processes running (the
 * interface's rule): Edged stops pods explicitly when it wants them stopped at shutdown; the
 * processes left lose their output pipes and the next runtime on the same `rootDir` kills them as
 * above.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { networkInterfaces, constants as osConstants } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { ErrorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { Cgroups } from './cgroup.js';
import { LogThrottle, NoticeLimiter, formatRate } from './log-rate.js';
import { CriLogWriter } from './logs.js';
import { defaultProcessRuntimeOptions } from './options.js';
import {
  type ContainerConfig,
  type ContainerResources,
  type ContainerRuntime,
  type ExecResult,
  type ImageInfo,
  type PullPolicy,
  RuntimeError,
  type RuntimeContainerState,
  type RuntimeContainerStatus,
  type RuntimeEvent,
  type SandboxConfig,
  type SandboxStatus,
  type StreamEnd,
  type StreamOptions,
  type StreamOutput,
  type StreamSession,
  type TerminalSize,
} from './runtime.js';

/** Options; defaults in `defaultProcessRuntimeOptions` (./options.ts). */
export interface ProcessRuntimeOptions {
  /** Where Edged makes the pods' directories (`<data-dir>/edged/pods`): sandboxes persisted under it are found again after a restart. */
  rootDir: string;
  log?: Logger;
  /** Where the cgroup v2 hierarchy is mounted (CPU/memory limits). Default `/sys/fs/cgroup`. */
  cgroupRoot?: string;
  /** EdgeCore's own cgroup relative to `cgroupRoot`. Default: from /proc/self/cgroup. */
  cgroupSelfPath?: string;
  /** After a container's main process exited, its output is still read this long from a process that holds its pipes, ms. Default 2000. */
  exitDrainMs?: number;
  /** exec output kept per stream, bytes; more is dropped with a marker. Default 1 MiB. */
  execMaxOutputBytes?: number;
  /** At a restart, how long the runtime waits for a leftover process it killed to be gone, ms. Default 5000. */
  leftoverKillWaitMs?: number;
  /** Output one paused attach session holds, bytes; more is dropped with a note to that session. Default 1 MiB. */
  attachMaxBufferedBytes?: number;
  /** util-linux `script` (a name looked up on EdgeCore's PATH, or a path): the terminal of `exec -t`. Default `script`. */
  ttyScript?: string;
  /** Most bytes of CRI log records a container's output may produce per second (./log-rate.ts); past it, its pipes are paused; 0: unlimited. Default 1 MiB/s. */
  containerLogMaxBytesPerSecond?: number;
  /** What a container may print at once above that rate, bytes of records. Default 4 MiB. */
  containerLogBurstBytes?: number;
}

const RECORD_VERSION = 1;

/** `sandbox.json`. */
interface SandboxRecord {
  version: number;
  id: string;
  uid: string;
  name: string;
  namespace: string;
  hostname: string;
  createdAt: string;
  state: 'ready' | 'notready';
}

/** `containers/<id>.json`: the config without env, and what happened to it. */
interface ContainerRecord {
  version: number;
  id: string;
  sandboxId: string;
  name: string;
  attempt: number;
  image: string;
  command: string[];
  args: string[];
  workingDir?: string;
  stdin?: boolean;
  stdinOnce?: boolean;
  logPath: string;
  logMaxBytes: number;
  labels: Record<string, string>;
  resources: ContainerResources;
  state: RuntimeContainerState;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  exitCode?: number;
  reason?: string;
  message?: string;
  pid?: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot): with the pid, the process's identity. */
  pidStartTime?: string;
  /** Its cgroup directory, when its limits are enforced. */
  cgroup?: string;
  /** `limits not enforced: …`, kept in the status message. */
  limitsMessage?: string;
}

interface Sandbox {
  rec: SandboxRecord;
  dir: string;
}

interface Container {
  rec: ContainerRecord;
  sandbox: Sandbox;
  /** In memory only; undefined for a container recovered after a restart. */
  env?: Record<string, string>;
  child?: ChildProcess;
  writer?: CriLogWriter;
  /** The log ingest rate limit of the running process's output. */
  logThrottle?: LogThrottle;
  /** Resolves once the running process is exited (state recorded). */
  exited?: Promise<void>;
  resolveExited?: () => void;
  timers: Set<NodeJS.Timeout>;
  /** A start is under way (between spawn and its outcome). */
  starting?: boolean;
  /** The main process exited (and was reaped: its pid is no longer its own); the output is being drained. */
  exitSeen?: boolean;
  /** kubectl attach sessions: they get the live output (./process-runtime.ts `Attachment`). */
  attachments?: Set<Attachment>;
  /** Running execStream sessions: killed when the container's main process ends. */
  sessions?: Set<ExecStream>;
}

const now = () => new Date().toISOString();
const randomId = () => randomBytes(16).toString('hex');

/** The host's first non-internal IPv4 address, else 127.0.0.1. */
export function hostIPv4(): string {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}

/** State (field 3) and start time (field 22) of a process, from /proc/<pid>/stat; undefined when there is none. */
export function procStat(pid: number): { state: string; startTime: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Field 2 (comm) is in parentheses and may hold anything: fields 3… follow its last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined) return undefined;
  return { state, startTime };
}

/** True while the process `pid` that started at `startTime` runs (a zombie has ended). */
function sameProcessAlive(pid: number, startTime: string): boolean {
  const s = procStat(pid);
  return s !== undefined && s.startTime === startTime && s.state !== 'Z' && s.state !== 'X';
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

function signalNumber(signal: NodeJS.Signals): number {
  return osConstants.signals[signal] ?? 0;
}

/** Why a spawn failed, for a status message. */
function spawnFailure(file: string, err: unknown, path: string | undefined): { message: string; code: string | undefined } {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return { code, message: file.includes('/') ? `${file} not found` : `${file} not found on PATH (${path ?? 'unset: the system default'})` };
  if (code === 'EACCES') return { code, message: `${file} is not executable (permission denied)` };
  return { code, message: errorMessage(err) };
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function validSandboxRecord(v: unknown): v is SandboxRecord {
  const r = v as Partial<SandboxRecord> | null;
  return typeof r === 'object' && r !== null && typeof r.id === 'string' && typeof r.uid === 'string' && typeof r.name === 'string' && typeof r.namespace === 'string';
}

function validContainerRecord(v: unknown): v is ContainerRecord {
  const r = v as Partial<ContainerRecord> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.id === 'string' &&
    typeof r.name === 'string' &&
    isStringArray(r.command) &&
    typeof r.logPath === 'string' &&
    typeof r.state === 'string'
  );
}

/** Output of one stream, kept up to a bound. */
class Capture {
  private parts: Buffer[] = [];
  private length = 0;
  private dropped = 0;
  constructor(private readonly max: number) {}
  add(b: Buffer): void {
    const room = this.max - this.length;
    if (room <= 0) {
      this.dropped += b.length;
      return;
    }
    const keep = b.length <= room ? b : b.subarray(0, room);
    this.parts.push(keep);
    this.length += keep.length;
    this.dropped += b.length - keep.length;
  }
  text(): string {
    const s = Buffer.concat(this.parts).toString('utf8');
    return this.dropped > 0 ? `${s}\n[output truncated: ${this.dropped} more bytes dropped]\n` : s;
  }
}

type OutStream = 'stdout' | 'stderr';

/** The note an attached session gets where its output was cut because it read too slowly. */
const DROPPED_NOTE = Buffer.from('\n[output dropped: the reader is too slow]\n');
/** How long an `exec -t` looks for its terminal (the pts device and the session under `script`), ms. */
const TTY_LOOKUP_MS = 2000;
const TTY_POLL_MS = 10;
/** A `stty -F` that does not answer in this long is given up, ms. */
const STTY_TIMEOUT_MS = 5000;
/** dash's PATH when the env has none. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `s` as one word of a POSIX shell command line. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, "'\\''")}'`;
}

function isExecutableFile(p: string): 'ok' | 'EACCES' | 'ENOENT' {
  try {
    if (!statSync(p).isFile()) return 'EACCES';
  } catch {
    return 'ENOENT';
  }
  try {
    accessSync(p, fsConstants.X_OK);
    return 'ok';
  } catch {
    return 'EACCES';
  }
}

/** Finds `file` as execvp would (a name with a slash from `cwd`, else on `path`): `ok`, or why not. */
function lookPath(file: string, path: string | undefined, cwd: string): 'ok' | 'ENOENT' | 'EACCES' {
  if (file.includes('/')) return isExecutableFile(resolve(cwd, file));
  let seen: 'ENOENT' | 'EACCES' = 'ENOENT';
  for (const dir of (path ?? DEFAULT_PATH).split(delimiter)) {
    const r = isExecutableFile(resolve(cwd, dir, file));
    if (r === 'ok') return r;
    if (r === 'EACCES') seen = r;
  }
  return seen;
}

/** A tool of EdgeCore's host (`script`, `stty`): its path from EdgeCore's own PATH (then /usr/bin, /bin), or undefined. */
function hostTool(name: string): string | undefined {
  if (name.includes('/')) return isExecutableFile(name) === 'ok' ? name : undefined;
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/bin']) {
    if (!dir) continue;
    const p = join(dir, name);
    if (isExecutableFile(p) === 'ok') return p;
  }
  return undefined;
}

/** The end of an exec that could not start: 127 (not found) or 126 (not executable), exec's convention. */
function cannotStart(file: string, code: 'ENOENT' | 'EACCES', path: string | undefined): StreamEnd {
  const err = Object.assign(new Error(code), { code });
  return { exitCode: code === 'ENOENT' ? 127 : 126, error: `exec: cannot start ${file}: ${spawnFailure(file, err, path).message}` };
}

/** A session that ended before anything ran. */
function endedSession(end: StreamEnd): StreamSession {
  const noop = () => {};
  return { writeStdin: noop, endStdin: noop, resize: noop, pause: noop, resume: noop, cancel: noop, done: Promise.resolve(end) };
}

/** A size a terminal can take (whole cells, 1…65535), else undefined. */
function terminalSize(size: TerminalSize | undefined): TerminalSize | undefined {
  if (!size) return undefined;
  const ok = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
  return ok(size.width) && ok(size.height) ? { width: size.width, height: size.height } : undefined;
}

/** Fields 3… of /proc/<pid>/stat (state, ppid, pgrp, session, tty_nr, …), or undefined. */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Every pid in /proc. */
function allPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((n) => /^\d+$/.test(n))
      .map(Number);
  } catch {
    return [];
  }
}

/** The terminal `pid` has open: `/dev/pts/N` from its fds 0, 1, 2 (then any other), or undefined. */
function ptsOf(pid: number): string | undefined {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  const order = ['0', '1', '2', ...fds.filter((f) => f !== '0' && f !== '1' && f !== '2')];
  for (const fd of order) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (/^\/dev\/pts\/\d+$/.test(target)) return target;
    } catch {
      // closed meanwhile
    }
  }
  return undefined;
}

/** SIGKILLs every process of session `sid` (the terminal session `script` made for an exec -t). */
function killSession(sid: number): void {
  for (const pid of allPids()) {
    if (statFields(pid)?.[3] !== String(sid)) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/** What `script` made for an exec -t: the session its child leads, the pty's slave device. */
interface Terminal {
  sid?: number;
  pts?: string;
}

/** The pid the shell under `script` wrote to `pidFile` (it leads the terminal's session: `script`'s child calls setsid). */
function readSessionId(pidFile: string): number | undefined {
  try {
    const n = Number(readFileSync(pidFile, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Looks (bounded) for what `script` (pid `pid`) made: the session id the shell wrote to `pidFile`
 * before it exec'ed the command (so a command that ends at once is not missed), and the pts device
 * (from the fds of that process, else of `script`), until both are found or `stop()`.
 */
async function findTerminal(pid: number, pidFile: string, stop: () => boolean): Promise<Terminal> {
  const deadline = Date.now() + TTY_LOOKUP_MS;
  const t: Terminal = {};
  for (;;) {
    t.sid ??= readSessionId(pidFile);
    if (t.pts === undefined) t.pts = (t.sid !== undefined ? ptsOf(t.sid) : undefined) ?? ptsOf(pid);
    if (t.sid !== undefined && t.pts !== undefined) return t;
    if (stop() || Date.now() >= deadline) {
      t.sid ??= readSessionId(pidFile);
      return t;
    }
    await new Promise((r) => setTimeout(r, TTY_POLL_MS).unref());
  }
}

/** What an {@link ExecStream} is given by the runtime. */
interface ExecStreamSetup {
  file: string;
  /** The container's PATH (for the not-found message). */
  path: string | undefined;
  options: StreamOptions;
  output: StreamOutput;
  /** A tty session (under `script`): where its shell writes its pid (the terminal session's id), and the host's stty. */
  tty?: { pidFile: string; stty: string | undefined };
  exitDrainMs: number;
  log: Logger | undefined;
  label: string;
  /** SIGKILLs the process group of `pid` (`alone`: not the pid itself if it has no group). */
  kill(pid: number, alone: boolean): void;
  /** It ended: no longer tracked by its container. */
  release(): void;
}

/**
 * One kubectl exec: a process (or, with a tty, `script` holding the terminal the command runs in)
 * whose stdout/stderr go to the caller's callbacks as they are read, paused with the caller.
 */
class ExecStream implements StreamSession {
  readonly done: Promise<StreamEnd>;
  /** Settles once the process was spawned or could not be. */
  readonly started: Promise<void>;
  private resolveDone!: (end: StreamEnd) => void;
  private settled = false;
  private exitCode: number | undefined;
  private cancelled = false;
  private cutBy: string | undefined;
  private paused = false;
  private drainTimer: NodeJS.Timeout | undefined;
  private drainDue = false;
  private stdinEnded = false;
  private outputFailed = false;
  private readonly terminal: Promise<Terminal> | undefined;
  private resizes: Promise<void> = Promise.resolve();

  constructor(
    private readonly child: ChildProcess,
    private readonly s: ExecStreamSetup,
  ) {
    this.done = new Promise((ok) => (this.resolveDone = ok));
    const tty = s.options.tty;
    const pid = child.pid;
    child.stdin?.on('error', () => {}); // EPIPE once the process closed its stdin
    child.stdout?.on('data', (b: Buffer) => this.deliver('stdout', b));
    child.stderr?.on('data', (b: Buffer) => this.deliver(tty ? 'stdout' : 'stderr', b));
    // Node resumes a child's output streams once it exited (to drain them): a paused session stays paused.
    for (const r of [child.stdout, child.stderr]) r?.on('resume', () => this.paused && r.pause());
    let spawned = false;
    this.started = new Promise<void>((ok) => {
      child.once('spawn', () => {
        spawned = true;
        ok();
      });
      child.on('error', (e) => {
        if (spawned) return s.log?.warn(`process runtime: ${s.label}: ${errorMessage(e)}`, { code: ErrorCode.Runtime });
        const f = spawnFailure(s.file, e, s.path);
        this.settle({ exitCode: f.code === 'ENOENT' ? 127 : 126, error: `exec: cannot start ${s.file}: ${f.message}` });
        ok();
      });
    });
    this.terminal = s.tty && pid !== undefined ? findTerminal(pid, s.tty.pidFile, () => this.exitCode !== undefined || this.settled) : undefined;
    child.once('exit', (code, signal) => {
      this.exitCode = code ?? 128 + (signal ? signalNumber(signal) : 0);
      // What it started ends with it (exec's convention): its process group; under `script`, the terminal's session.
      if (pid !== undefined) s.kill(pid, true);
      void this.terminal?.then((t) => t.sid !== undefined && killSession(t.sid));
      this.armDrain();
    });
    child.once('close', () => {
      if (this.exitCode !== undefined) this.settle();
    });
  }

  private deliver(which: OutStream, b: Buffer): void {
    if (which === 'stdout' ? !this.s.options.stdout : !this.s.options.stderr) return;
    try {
      this.s.output[which](b);
    } catch (err) {
      if (this.outputFailed) return;
      this.outputFailed = true;
      this.s.log?.warn(`process runtime: ${this.s.label}: the output callback failed: ${errorMessage(err)}`, { code: ErrorCode.Runtime });
    }
  }

  /** After the exit, the output still in the pipes is read at most `exitDrainMs` more (not counting while paused). */
  private armDrain(): void {
    if (this.settled) return;
    clearTimeout(this.drainTimer);
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined;
      if (this.paused) this.drainDue = true;
      else this.settle();
    }, this.s.exitDrainMs);
  }

  private settle(end?: StreamEnd): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.drainTimer);
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
    this.child.stdin?.destroy();
    this.s.release();
    if (this.s.tty) {
      const pidFile = this.s.tty.pidFile;
      // Read (for the kills at the exit) before it goes.
      void (this.terminal ?? Promise.resolve()).then(() => rmSync(pidFile, { force: true }));
    }
    if (end) return this.resolveDone(end);
    const result: StreamEnd = { exitCode: this.cancelled ? 137 : (this.exitCode ?? 137) };
    if (this.cutBy) result.error = this.cutBy;
    this.resolveDone(result);
  }

  writeStdin(chunk: Uint8Array): void {
    if (!this.s.options.stdin || this.stdinEnded || this.settled) return;
    const stdin = this.child.stdin;
    if (stdin?.writable && !stdin.destroyed) stdin.write(chunk);
  }

  endStdin(): void {
    if (!this.s.options.stdin || this.stdinEnded) return;
    this.stdinEnded = true;
    // Under `script`, the end of its input reaches the command as the terminal's EOF character (^D).
    this.child.stdin?.end();
  }

  resize(size: TerminalSize): void {
    const terminal = this.terminal;
    const stty = this.s.tty?.stty;
    const cells = terminalSize(size);
    if (!terminal || !stty || !cells) return;
    this.resizes = this.resizes.then(async () => {
      const t = await terminal;
      if (!t.pts || this.exitCode !== undefined || this.settled) return;
      await new Promise<void>((ok) => {
        execFile(stty, ['-F', t.pts!, 'rows', String(cells.height), 'cols', String(cells.width)], { timeout: STTY_TIMEOUT_MS }, (err) => {
          if (err && this.exitCode === undefined) this.s.log?.warn(`process runtime: ${this.s.label}: cannot resize ${t.pts}: ${errorMessage(err)}`, { code: ErrorCode.Runtime });
          ok();
        });
      });
    });
  }

  pause(): void {
    this.paused = true;
    this.child.stdout?.pause();
    this.child.stderr?.pause();
  }

  resume(): void {
    this.paused = false;
    this.child.stdout?.resume();
    this.child.stderr?.resume();
    if (this.drainDue) {
      this.drainDue = false;
      this.armDrain();
    }
  }

  cancel(): void {
    this.kill();
  }

  /** SIGKILLs it (its group; under `script`, the terminal's session too); `why` is the end's error (the container stopped). */
  kill(why?: string): void {
    if (this.settled) return;
    if (this.exitCode !== undefined) {
      // Exited already (its group was killed then): a cancel ends the drain now.
      if (why === undefined) this.settle();
      return;
    }
    this.cancelled = true;
    if (why !== undefined) this.cutBy = why;
    const pid = this.child.pid;
    if (pid === undefined) return;
    if (!this.terminal) return this.s.kill(pid, false);
    // The command runs in its own session under `script`: found first (while script is its parent), then both killed.
    void this.terminal.then((t) => {
      if (t.sid !== undefined) killSession(t.sid);
      if (this.exitCode === undefined) this.s.kill(pid, false);
    });
  }
}

/**
 * One kubectl attach: the container's live output from now on (not its history), its stdin when
 * it has one. The log writer never waits for it: while paused, it holds at most `maxBuffered`
 * bytes, then drops the rest with one note where the gap is.
 */
class Attachment implements StreamSession {
  readonly done: Promise<StreamEnd>;
  private resolveDone!: (end: StreamEnd) => void;
  private settled = false;
  private detached = false;
  private paused = false;
  private queue: { which: OutStream; chunk: Uint8Array }[] = [];
  private queued = 0;
  private dropping = false;
  private ending: StreamEnd | undefined;
  private stdinEnded = false;
  private outputFailed = false;

  constructor(
    private readonly c: Container,
    private readonly options: StreamOptions,
    private readonly output: StreamOutput,
    private readonly maxBuffered: number,
    private readonly log: Logger | undefined,
    private readonly release: () => void,
  ) {
    this.done = new Promise((ok) => (this.resolveDone = ok));
  }

  /** A chunk the main process wrote. */
  take(which: OutStream, chunk: Buffer): void {
    if (this.detached) return;
    if (which === 'stdout' ? !this.options.stdout : !this.options.stderr) return;
    if (!this.paused && this.queue.length === 0) return this.deliver(which, chunk);
    if (this.queued + chunk.length <= this.maxBuffered && !this.dropping) {
      this.queue.push({ which, chunk });
      this.queued += chunk.length;
    } else if (!this.dropping) {
      this.dropping = true;
      this.queue.push({ which: this.options.stderr ? 'stderr' : 'stdout', chunk: DROPPED_NOTE });
    }
  }

  private deliver(which: OutStream, chunk: Uint8Array): void {
    try {
      this.output[which](chunk);
    } catch (err) {
      if (this.outputFailed) return;
      this.outputFailed = true;
      this.log?.warn(`process runtime: attach to container ${this.c.rec.name} (${this.c.rec.id}): the output callback failed: ${errorMessage(err)}`, { code: ErrorCode.Runtime });
    }
  }

  private flush(): void {
    while (!this.paused && !this.settled) {
      const next = this.queue.shift();
      if (!next) break;
      if (next.chunk !== DROPPED_NOTE) this.queued -= next.chunk.length;
      this.deliver(next.which, next.chunk);
    }
    if (this.queue.length === 0) {
      this.dropping = false;
      if (this.ending) this.settle(this.ending);
    }
  }

  private settle(end: StreamEnd): void {
    if (this.settled) return;
    this.settled = true;
    this.detached = true;
    this.queue = [];
    this.queued = 0;
    this.release();
    this.resolveDone(end);
  }

  /** The container ended (or the runtime closed): done once what it holds was delivered. */
  end(end: StreamEnd): void {
    if (this.settled || this.ending) return;
    this.detached = true;
    this.release();
    this.ending = end;
    this.flush();
  }

  writeStdin(chunk: Uint8Array): void {
    if (!this.options.stdin || this.stdinEnded || this.detached) return;
    const stdin = this.c.child?.stdin;
    if (stdin?.writable && !stdin.destroyed) stdin.write(chunk);
  }

  /** stdinOnce: the container's stdin closes with the first attached stdin; else this session just stops forwarding. */
  endStdin(): void {
    if (!this.options.stdin || this.stdinEnded) return;
    this.stdinEnded = true;
    if (this.c.rec.stdinOnce) this.c.child?.stdin?.end();
  }

  resize(_size: TerminalSize): void {}

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.flush();
  }

  /** Detaches: the container runs on. */
  cancel(): void {
    if (this.settled) return;
    this.endStdin();
    this.settle({});
  }
}

/** The `process` runtime. */
export class ProcessRuntime implements ContainerRuntime {
  readonly name = 'process';
  private readonly rootDir: string;
  private readonly log: Logger | undefined;
  private readonly exitDrainMs: number;
  private readonly execMaxOutputBytes: number;
  private readonly leftoverKillWaitMs: number;
  private readonly attachMaxBufferedBytes: number;
  private readonly ttyScript: string;
  private readonly logRate: { bytesPerSecond: number; burstBytes: number };
  /** The throttled-output info line: at most once a minute per container (pod uid and name, across restarts). */
  private readonly throttleNotices = new NoticeLimiter();
  private readonly cgroups: Cgroups;
  private readonly sandboxes = new Map<string, Sandbox>();
  private readonly containers = new Map<string, Container>();
  private readonly listeners = new Set<(event: RuntimeEvent) => void>();
  private readonly execs = new Set<ChildProcess>();
  private loading: Promise<void> | undefined;
  private closed = false;

  constructor(options: ProcessRuntimeOptions) {
    const d = defaultProcessRuntimeOptions;
    this.rootDir = resolve(options.rootDir);
    this.log = options.log;
    this.exitDrainMs = options.exitDrainMs ?? d.exitDrainMs;
    this.execMaxOutputBytes = options.execMaxOutputBytes ?? d.execMaxOutputBytes;
    this.leftoverKillWaitMs = options.leftoverKillWaitMs ?? d.leftoverKillWaitMs;
    this.attachMaxBufferedBytes = options.attachMaxBufferedBytes ?? d.attachMaxBufferedBytes;
    this.ttyScript = options.ttyScript ?? d.ttyScript;
    this.logRate = {
      bytesPerSecond: options.containerLogMaxBytesPerSecond ?? d.containerLogMaxBytesPerSecond,
      burstBytes: options.containerLogBurstBytes ?? d.containerLogBurstBytes,
    };
    this.cgroups = new Cgroups({
      root: options.cgroupRoot ?? d.cgroupRoot,
      ...(options.cgroupSelfPath !== undefined ? { selfPath: options.cgroupSelfPath } : {}),
      ...(options.log ? { log: options.log } : {}),
    });
  }

  async version(): Promise<string> {
    return 'process://ledge';
  }

  onEvent(listener: (event: RuntimeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(c: Container): void {
    if (this.closed) return;
    const event: RuntimeEvent = { sandboxId: c.sandbox.rec.id, containerId: c.rec.id, uid: c.sandbox.rec.uid };
    for (const l of this.listeners) {
      try {
        l(event);
      } catch (err) {
        this.log?.warn(`process runtime: an event listener failed: ${errorMessage(err)}`);
      }
    }
  }

  // ---- persistence and recovery ----

  /** Finds the sandboxes and containers persisted under rootDir, once, before the first call is answered. */
  private loaded(): Promise<void> {
    this.loading ??= this.load();
    return this.loading;
  }

  private readJson(file: string): unknown {
    try {
      return JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      this.log?.warn(`process runtime: ignoring ${file}: ${errorMessage(err)}`);
      return undefined;
    }
  }

  private async load(): Promise<void> {
    let names: string[];
    try {
      names = readdirSync(this.rootDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log?.warn(`process runtime: cannot read ${this.rootDir}: ${errorMessage(err)}`);
      return;
    }
    const killed: { pid: number; startTime: string }[] = [];
    const changed: Container[] = [];
    for (const name of names.sort()) {
      const dir = join(this.rootDir, name);
      const file = join(dir, 'sandbox.json');
      if (!existsSync(file)) continue;
      const rec = this.readJson(file);
      if (!validSandboxRecord(rec)) {
        if (rec !== undefined) this.log?.warn(`process runtime: ignoring ${file}: not a sandbox record`);
        continue;
      }
      if (this.sandboxes.has(rec.id)) continue;
      const sb: Sandbox = { rec: { ...rec, state: rec.state === 'notready' ? 'notready' : 'ready' }, dir };
      this.sandboxes.set(rec.id, sb);
      const cdir = join(dir, 'containers');
      let files: string[] = [];
      try {
        files = readdirSync(cdir).filter((f) => f.endsWith('.json'));
      } catch {
        // no containers yet
      }
      for (const f of files.sort()) {
        const crec = this.readJson(join(cdir, f));
        if (!validContainerRecord(crec)) {
          if (crec !== undefined) this.log?.warn(`process runtime: ignoring ${join(cdir, f)}: not a container record`);
          continue;
        }
        if (this.containers.has(crec.id)) continue;
        const c: Container = { rec: { ...crec, sandboxId: rec.id, args: isStringArray(crec.args) ? crec.args : [] }, sandbox: sb, timers: new Set() };
        this.containers.set(crec.id, c);
        if (this.recover(c, killed)) changed.push(c);
      }
    }
    // The leftovers were SIGKILLed: wait (bounded) until they are gone, so a restart of the pod does not meet them (ports, files).
    const deadline = Date.now() + this.leftoverKillWaitMs;
    while (killed.some((k) => sameProcessAlive(k.pid, k.startTime)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const k of killed) if (sameProcessAlive(k.pid, k.startTime)) this.log?.warn(`process runtime: process ${k.pid} left from before the restart is still alive after SIGKILL`);
    for (const c of changed) this.emit(c);
  }

  /** A container found on disk: what it was doing when the previous EdgeCore ended. True when its record changed. */
  private recover(c: Container, killed: { pid: number; startTime: string }[]): boolean {
    const r = c.rec;
    if (r.state !== 'running') return false;
    const pid = r.pid;
    const startTime = r.pidStartTime;
    let message: string;
    if (pid !== undefined && startTime !== undefined && sameProcessAlive(pid, startTime)) {
      this.killGroup(pid, 'SIGKILL', r.cgroup);
      killed.push({ pid, startTime });
      message = 'stopped when EdgeCore restarted';
      this.log?.info(
        `process runtime: container ${r.name} (${r.id}) of pod ${c.sandbox.rec.namespace}/${c.sandbox.rec.name} still ran from before EdgeCore restarted, without its output pipes: killed`,
      );
    } else if (pid !== undefined && startTime === undefined && procStat(pid) !== undefined) {
      // No start time recorded (no /proc): the pid cannot be told from a reused one, so it is not signalled.
      message = 'EdgeCore restarted; its process could not be identified (no start time recorded) and was left alone';
    } else {
      message = 'its process ended while EdgeCore was not running; the exit code is unknown';
      // Whatever it started may still be in its cgroup, which is surely its own.
      if (r.cgroup) this.cgroups.kill(r.cgroup);
    }
    r.state = 'exited';
    r.exitCode = 137;
    r.reason = 'Error';
    r.message = r.limitsMessage ? `${message}; ${r.limitsMessage}` : message;
    r.finishedAt = now();
    this.persist(c);
    return true;
  }

  private persist(c: Container): void {
    if (this.closed) return;
    try {
      writeJsonAtomic(join(c.sandbox.dir, 'containers', `${c.rec.id}.json`), c.rec);
    } catch (err) {
      this.log?.warn(`process runtime: cannot record container ${c.rec.name} (${c.rec.id}): ${errorMessage(err)}`);
    }
  }

  private persistSandbox(sb: Sandbox): void {
    writeJsonAtomic(join(sb.dir, 'sandbox.json'), sb.rec);
  }

  // ---- sandboxes ----

  private sandboxStatus(sb: Sandbox): SandboxStatus {
    return {
      id: sb.rec.id,
      uid: sb.rec.uid,
      name: sb.rec.name,
      namespace: sb.rec.namespace,
      state: sb.rec.state === 'ready' && isDir(sb.dir) ? 'ready' : 'notready',
      ip: hostIPv4(),
      createdAt: sb.rec.createdAt,
    };
  }

  async runPodSandbox(config: SandboxConfig): Promise<SandboxStatus> {
    await this.loaded();
    const dir = resolve(config.podDir);
    const existing = [...this.sandboxes.values()].find((s) => s.dir === dir);
    if (existing) {
      if (existing.rec.uid !== config.uid) throw new RuntimeError('CreatePodSandboxError', `${dir} holds the sandbox of pod uid ${existing.rec.uid}, not ${config.uid}`);
      if (existing.rec.state === 'ready' && isDir(dir)) return this.sandboxStatus(existing);
      // A stopped sandbox in the same directory: replaced (its containers are gone already).
      for (const c of this.containersOf(existing.rec.id)) await this.removeContainer(c.rec.id);
      this.sandboxes.delete(existing.rec.id);
    }
    const sb: Sandbox = {
      rec: {
        version: RECORD_VERSION,
        id: randomId(),
        uid: config.uid,
        name: config.name,
        namespace: config.namespace,
        hostname: config.hostname,
        createdAt: now(),
        state: 'ready',
      },
      dir,
    };
    try {
      mkdirSync(join(dir, 'containers'), { recursive: true, mode: 0o700 });
      this.persistSandbox(sb);
    } catch (err) {
      throw new RuntimeError('CreatePodSandboxError', `cannot make the sandbox directory ${dir}: ${errorMessage(err)}`, { cause: err });
    }
    this.sandboxes.set(sb.rec.id, sb);
    return this.sandboxStatus(sb);
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.loaded();
    const sb = this.sandboxes.get(id);
    if (!sb) return;
    await Promise.all(this.containersOf(id).map((c) => this.stopContainer(c.rec.id, 0)));
    if (sb.rec.state !== 'notready') {
      sb.rec.state = 'notready';
      try {
        this.persistSandbox(sb);
      } catch (err) {
        this.log?.warn(`process runtime: cannot record sandbox ${id} as stopped: ${errorMessage(err)}`);
      }
    }
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.loaded();
    const sb = this.sandboxes.get(id);
    if (!sb) return;
    await this.stopPodSandbox(id);
    for (const c of this.containersOf(id)) await this.removeContainer(c.rec.id);
    this.cgroups.removePod(sb.rec.uid);
    rmSync(sb.dir, { recursive: true, force: true });
    this.sandboxes.delete(id);
  }

  async listPodSandboxes(): Promise<SandboxStatus[]> {
    await this.loaded();
    return [...this.sandboxes.values()].map((s) => this.sandboxStatus(s));
  }

  // ---- images ----

  async ensureImage(_image: string, _policy: PullPolicy): Promise<void> {}

  async listImages(): Promise<ImageInfo[]> {
    return [];
  }

  // ---- containers ----

  private containersOf(sandboxId: string): Container[] {
    return [...this.containers.values()].filter((c) => c.sandbox.rec.id === sandboxId);
  }

  private status(c: Container): RuntimeContainerStatus {
    const r = c.rec;
    return {
      id: r.id,
      sandboxId: c.sandbox.rec.id,
      uid: c.sandbox.rec.uid,
      name: r.name,
      attempt: r.attempt,
      state: r.state,
      createdAt: r.createdAt,
      ...(r.startedAt !== undefined ? { startedAt: r.startedAt } : {}),
      ...(r.finishedAt !== undefined ? { finishedAt: r.finishedAt } : {}),
      ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
      ...(r.reason !== undefined ? { reason: r.reason } : {}),
      ...(r.message !== undefined ? { message: r.message } : {}),
      image: r.image,
      imageID: '',
      containerID: `process://${r.id}`,
      logPath: r.logPath,
    };
  }

  async createContainer(sandboxId: string, config: ContainerConfig): Promise<string> {
    await this.loaded();
    const sb = this.sandboxes.get(sandboxId);
    if (!sb) throw new RuntimeError('CreateContainerError', `no sandbox ${sandboxId} in the process runtime`);
    if (sb.rec.state !== 'ready') throw new RuntimeError('CreateContainerError', `sandbox ${sandboxId} of pod ${sb.rec.namespace}/${sb.rec.name} is stopped`);
    if (!(config.logMaxBytes >= 1)) throw new RuntimeError('CreateContainerError', `container ${config.name}: logMaxBytes must be at least 1 (got ${config.logMaxBytes})`);
    const command = config.command ?? [];
    if (command.length === 0 || !command[0]) {
      throw new RuntimeError(
        'CreateContainerError',
        `container ${config.name} has no command: the process runtime runs command + args on the host and cannot use the image's entrypoint${config.image ? ` (${config.image})` : ''}; set command, or use runtimeClassName: container`,
      );
    }
    const id = randomId();
    const cg = this.cgroups.prepare(sb.rec.uid, id, config.resources);
    const rec: ContainerRecord = {
      version: RECORD_VERSION,
      id,
      sandboxId,
      name: config.name,
      attempt: config.attempt,
      image: config.image,
      command: [...command],
      args: [...(config.args ?? [])],
      ...(config.workingDir !== undefined ? { workingDir: config.workingDir } : {}),
      ...(config.stdin ? { stdin: true } : {}),
      ...(config.stdin && config.stdinOnce ? { stdinOnce: true } : {}),
      logPath: config.logPath,
      logMaxBytes: config.logMaxBytes,
      labels: { ...config.labels },
      resources: { ...config.resources },
      state: 'created',
      createdAt: now(),
      ...(cg.dir !== undefined ? { cgroup: cg.dir } : {}),
      ...(cg.message !== undefined ? { limitsMessage: cg.message, message: cg.message } : {}),
    };
    const c: Container = { rec, sandbox: sb, env: { ...config.env }, timers: new Set() };
    try {
      mkdirSync(join(sb.dir, 'containers'), { recursive: true, mode: 0o700 });
      writeJsonAtomic(join(sb.dir, 'containers', `${id}.json`), rec);
    } catch (err) {
      if (cg.dir) this.cgroups.remove(cg.dir);
      throw new RuntimeError('CreateContainerError', `cannot record container ${config.name}: ${errorMessage(err)}`, { cause: err });
    }
    this.containers.set(id, c);
    this.emit(c);
    return id;
  }

  private get(id: string, reason: 'RunContainerError' | 'CreateContainerError'): Container {
    const c = this.containers.get(id);
    if (!c) throw new RuntimeError(reason, `no container ${id} in the process runtime`);
    return c;
  }

  /** A start that failed: the container is exited (StartError, 128, as containerd reports it) and the caller gets RunContainerError. */
  private startFailed(c: Container, message: string, cause?: unknown): RuntimeError {
    c.rec.state = 'exited';
    c.rec.exitCode = 128;
    c.rec.reason = 'StartError';
    c.rec.message = c.rec.limitsMessage ? `${message}; ${c.rec.limitsMessage}` : message;
    c.rec.finishedAt = now();
    this.persist(c);
    this.emit(c);
    return new RuntimeError('RunContainerError', message, cause === undefined ? undefined : { cause });
  }

  async startContainer(id: string): Promise<void> {
    await this.loaded();
    const c = this.get(id, 'RunContainerError');
    const r = c.rec;
    if (r.state !== 'created' || c.starting)
      throw new RuntimeError('RunContainerError', `container ${r.name} (${id}) is ${c.starting ? 'being started' : r.state}; only a created container can be started`);
    const env = c.env;
    if (!env) throw this.startFailed(c, `container ${r.name} was created before EdgeCore restarted and its environment was not kept (it may hold secrets): create it again`);
    const cwd = r.workingDir ?? c.sandbox.dir;
    if (!isDir(cwd)) throw this.startFailed(c, `workingDir ${cwd} does not exist or is not a directory`);
    const file = r.command[0]!;
    const writer = new CriLogWriter(r.logPath, r.logMaxBytes, this.log);
    let child: ChildProcess;
    try {
      child = spawn(file, [...r.command.slice(1), ...r.args], { cwd, env, detached: true, shell: false, stdio: [r.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    } catch (err) {
      // Synchronous refusals: an argument with a NUL byte, an env value that is not a string.
      writer.close();
      throw this.startFailed(c, `cannot start ${file}: ${errorMessage(err)}`, err);
    }
    // The log ingest limit: past it both pipes are paused (the container blocks once they are full), what was read beyond it waits in the stream.
    const throttle = new LogThrottle({
      ...this.logRate,
      pause: () => {
        child.stdout?.pause();
        child.stderr?.pause();
      },
      resume: () => {
        child.stdout?.resume();
        child.stderr?.resume();
      },
      onThrottled: () => this.throttledNotice(c),
    });
    for (const [which, pipe] of [
      ['stdout', child.stdout],
      ['stderr', child.stderr],
    ] as const) {
      pipe?.on('data', (b: Buffer) => {
        const n = throttle.admit(b);
        if (n > 0) {
          const part = n === b.length ? b : b.subarray(0, n);
          writer.write(which, part);
          this.tee(c, which, part);
        }
        if (n < b.length) pipe.unshift(b.subarray(n));
      });
    }
    child.stdin?.on('error', () => {}); // EPIPE once the process closed its stdin
    c.starting = true;
    try {
      await new Promise<void>((ok, fail) => {
        child.once('spawn', ok);
        child.once('error', fail);
      });
    } catch (err) {
      c.starting = false;
      throttle.close();
      writer.close();
      const f = spawnFailure(file, err, env.PATH);
      throw this.startFailed(c, `cannot start ${file}: ${f.message}`, err);
    }
    c.starting = false;
    const pid = child.pid!;
    const stat = procStat(pid);
    c.child = child;
    c.writer = writer;
    c.logThrottle = throttle;
    c.exited = new Promise<void>((ok) => (c.resolveExited = ok));
    r.state = 'running';
    r.pid = pid;
    if (stat) r.pidStartTime = stat.startTime;
    r.startedAt = now();
    if (r.cgroup) {
      try {
        this.cgroups.addProcess(r.cgroup, pid);
      } catch (err) {
        const message = `limits not enforced: ${errorMessage(err)}`;
        this.log?.warn(`process runtime: container ${r.name} (${id}): ${message}`);
        r.limitsMessage = message;
        r.message = message;
      }
    }
    child.on('error', (err) => this.log?.warn(`process runtime: container ${r.name} (${id}): ${errorMessage(err)}`));
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let finished = false;
    const finish = () => {
      if (finished || !exit) return;
      finished = true;
      for (const t of c.timers) clearTimeout(t);
      c.timers.clear();
      // What still holds the pipes (a process that left the group) no longer delays the exit.
      child.stdout?.destroy();
      child.stderr?.destroy();
      child.stdin?.destroy();
      throttle.close();
      writer.close();
      c.child = undefined;
      c.writer = undefined;
      c.logThrottle = undefined;
      if (this.closed) return c.resolveExited?.();
      const code = exit.code ?? 128 + (exit.signal ? signalNumber(exit.signal) : 0);
      r.state = 'exited';
      r.exitCode = code;
      r.reason = r.cgroup && this.cgroups.oomKilled(r.cgroup) ? 'OOMKilled' : code === 0 ? 'Completed' : 'Error';
      r.finishedAt = now();
      if (r.limitsMessage) r.message = r.limitsMessage;
      else delete r.message;
      this.persist(c);
      // Attached sessions end after the last output (read above) was given to them.
      for (const a of [...(c.attachments ?? [])]) a.end({ exitCode: code });
      c.resolveExited?.();
      this.emit(c);
    };
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      c.exitSeen = true;
      // What is left in the pipes is read at full speed: the limit never cuts the end of a log.
      throttle.release();
      // The container ends with its main process: what is left of its group goes too, and its exec sessions.
      this.killGroup(pid, 'SIGKILL', r.cgroup, false);
      for (const s of [...(c.sessions ?? [])]) s.kill(`container ${r.name} exited`);
      const t = setTimeout(finish, this.exitDrainMs);
      c.timers.add(t);
    });
    child.once('close', finish);
    this.persist(c);
    this.emit(c);
  }

  /** Signals the process group of `pid` (the process alone when it has none); SIGKILL also empties its cgroup. */
  private killGroup(pid: number, signal: NodeJS.Signals, cgroup: string | undefined, fallbackToPid = true): void {
    try {
      process.kill(-pid, signal);
    } catch {
      if (fallbackToPid) {
        try {
          process.kill(pid, signal);
        } catch {
          // gone already
        }
      }
    }
    if (signal === 'SIGKILL' && cgroup) this.cgroups.kill(cgroup);
  }

  async stopContainer(id: string, graceSeconds: number): Promise<void> {
    await this.loaded();
    const c = this.containers.get(id);
    if (c?.rec.state !== 'running' || !c.child || !c.exited) return;
    const pid = c.rec.pid!;
    // Once the main process is reaped its pid may be another process's: nothing more is signalled.
    if (c.exitSeen) return c.exited;
    if (!(graceSeconds > 0)) this.killGroup(pid, 'SIGKILL', c.rec.cgroup);
    else {
      this.killGroup(pid, 'SIGTERM', c.rec.cgroup);
      const t = setTimeout(() => {
        c.timers.delete(t);
        if (!c.exitSeen) this.killGroup(pid, 'SIGKILL', c.rec.cgroup);
      }, graceSeconds * 1000);
      c.timers.add(t);
    }
    await c.exited;
  }

  async removeContainer(id: string): Promise<void> {
    await this.loaded();
    const c = this.containers.get(id);
    if (!c) return;
    if (c.rec.state === 'running') await this.stopContainer(id, 0);
    this.containers.delete(id);
    rmSync(join(c.sandbox.dir, 'containers', `${id}.json`), { force: true });
    if (c.rec.cgroup) this.cgroups.remove(c.rec.cgroup);
    this.emit(c);
  }

  async listContainers(sandboxId?: string): Promise<RuntimeContainerStatus[]> {
    await this.loaded();
    const list = sandboxId === undefined ? [...this.containers.values()] : this.containersOf(sandboxId);
    return list.map((c) => this.status(c));
  }

  async containerStatus(id: string): Promise<RuntimeContainerStatus | undefined> {
    await this.loaded();
    const c = this.containers.get(id);
    return c ? this.status(c) : undefined;
  }

  async exec(id: string, command: string[], options: { timeoutMs: number }): Promise<ExecResult> {
    await this.loaded();
    const c = this.get(id, 'RunContainerError');
    if (c.rec.state !== 'running' || !c.env) throw new RuntimeError('RunContainerError', `container ${c.rec.name} (${id}) is not running (${c.rec.state})`);
    const file = command[0];
    if (!file) throw new RuntimeError('RunContainerError', 'exec: empty command');
    const env = c.env;
    const cwd = c.rec.workingDir ?? c.sandbox.dir;
    const out = new Capture(this.execMaxOutputBytes);
    const err = new Capture(this.execMaxOutputBytes);
    let child: ChildProcess;
    try {
      child = spawn(file, command.slice(1), { cwd, env, detached: true, shell: false, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      return { exitCode: 126, stdout: '', stderr: `exec: cannot start ${file}: ${errorMessage(e)}\n`, timedOut: false };
    }
    this.execs.add(child);
    child.stdout?.on('data', (b: Buffer) => out.add(b));
    child.stderr?.on('data', (b: Buffer) => err.add(b));
    return new Promise<ExecResult>((resolveExec) => {
      let timedOut = false;
      let exitCode: number | undefined;
      let done = false;
      const timers: NodeJS.Timeout[] = [];
      const finish = (result?: ExecResult) => {
        if (done) return;
        done = true;
        for (const t of timers) clearTimeout(t);
        this.execs.delete(child);
        child.stdout?.destroy();
        child.stderr?.destroy();
        resolveExec(result ?? { exitCode: timedOut ? 137 : (exitCode ?? 1), stdout: out.text(), stderr: err.text(), timedOut });
      };
      const pidOf = child.pid;
      timers.push(
        setTimeout(() => {
          if (exitCode !== undefined) return; // exited already, its output still draining; its pid is no longer its own
          timedOut = true;
          if (pidOf !== undefined) this.killGroup(pidOf, 'SIGKILL', undefined);
          // Answered even if the exit is not seen (a process stuck in the kernel): a probe must not hang.
          timers.push(setTimeout(() => finish(), this.exitDrainMs));
        }, options.timeoutMs),
      );
      let spawned = false;
      child.once('spawn', () => (spawned = true));
      child.on('error', (e) => {
        if (spawned) return this.log?.warn(`process runtime: exec in container ${c.rec.name} (${id}): ${errorMessage(e)}`);
        const f = spawnFailure(file, e, env.PATH);
        finish({ exitCode: f.code === 'ENOENT' ? 127 : 126, stdout: '', stderr: `exec: cannot start ${file}: ${f.message}\n`, timedOut: false });
      });
      child.once('exit', (code, signal) => {
        exitCode = code ?? 128 + (signal ? signalNumber(signal) : 0);
        if (pidOf !== undefined) this.killGroup(pidOf, 'SIGKILL', undefined, false);
        timers.push(setTimeout(() => finish(), this.exitDrainMs));
      });
      child.once('close', () => {
        if (exitCode !== undefined) finish();
      });
    });
  }

  // ---- interactive streams: kubectl exec and attach ----

  /** The env of a container whose main process runs (an exec or attach needs one); else RunContainerError. */
  private runningEnv(c: Container): Record<string, string> {
    if (c.rec.state !== 'running' || !c.env || !c.child || c.exitSeen)
      throw new RuntimeError('RunContainerError', `container ${c.rec.name} (${c.rec.id}) is not running (${c.rec.state === 'running' ? 'exiting' : c.rec.state})`);
    return c.env;
  }

  /** The info line of a container whose output is slowed (once per throttling episode, at most once a minute per container). */
  private throttledNotice(c: Container): void {
    const { rec, sandbox } = c;
    if (!this.throttleNotices.ready(`${sandbox.rec.uid}/${rec.name}`)) return;
    this.log?.info(
      `container ${rec.name} of pod ${sandbox.rec.namespace}/${sandbox.rec.name} prints faster than ${formatRate(this.logRate.bytesPerSecond)}; its output is slowed (--container-log-max-bytes-per-second)`,
      { container: rec.name, pod: `${sandbox.rec.namespace}/${sandbox.rec.name}`, containerId: rec.id },
    );
  }

  /** Gives a chunk the main process wrote to every attached session (the log got it already). */
  private tee(c: Container, which: OutStream, b: Buffer): void {
    if (c.attachments) for (const a of c.attachments) a.take(which, b);
  }

  async execStream(id: string, command: string[], options: StreamOptions, output: StreamOutput): Promise<StreamSession> {
    await this.loaded();
    const c = this.get(id, 'RunContainerError');
    const env = this.runningEnv(c);
    const file = command[0];
    if (!file) throw new RuntimeError('RunContainerError', 'exec: empty command');
    const cwd = c.rec.workingDir ?? c.sandbox.dir;
    if (!isDir(cwd)) throw new RuntimeError('RunContainerError', `exec: the working directory ${cwd} of container ${c.rec.name} does not exist or is not a directory`);
    const label = `exec in container ${c.rec.name} (${id})`;
    let child: ChildProcess;
    let tty: { pidFile: string; stty: string | undefined } | undefined;
    if (options.tty) {
      const script = hostTool(this.ttyScript);
      if (!script)
        throw new RuntimeError(
          'RunContainerError',
          `a terminal (exec -t) needs util-linux \`script\` on the node (${this.ttyScript} not found on EdgeCore's PATH): install bsdutils (Debian, Raspberry Pi OS) or util-linux, or run exec without -t`,
        );
      // The shell under `script` looks the command up as a spawn would; looked up here too, to answer 127/126 the same way.
      const found = lookPath(file, env.PATH, cwd);
      if (found !== 'ok') return endedSession(cannotStart(file, found, env.PATH));
      const stty = hostTool('stty');
      const size = terminalSize(options.size);
      tty = { pidFile: join(c.sandbox.dir, `exec-${randomId()}.pid`), stty };
      const steps = [`{ echo $$ >${shellQuote(tty.pidFile)}; } 2>/dev/null`];
      if (stty && size) steps.push(`${shellQuote(stty)} rows ${size.height} cols ${size.width} 2>/dev/null`);
      // `script` runs the line with $SHELL: /bin/sh is given to it, the container's own SHELL is restored for the command.
      steps.push(env.SHELL !== undefined ? `SHELL=${shellQuote(env.SHELL)}; export SHELL` : 'unset SHELL');
      steps.push(`exec ${command.map(shellQuote).join(' ')}`);
      const scriptEnv = { ...env, SHELL: '/bin/sh', ...(env.TERM === undefined ? { TERM: 'xterm' } : {}) };
      try {
        child = spawn(script, ['-q', '-e', '-f', '-c', steps.join('; '), '/dev/null'], { cwd, env: scriptEnv, detached: true, shell: false, stdio: ['pipe', 'pipe', 'pipe'] });
      } catch (e) {
        return endedSession({ exitCode: 126, error: `exec: cannot start ${file}: ${errorMessage(e)}` });
      }
    } else {
      const io = (on: boolean) => (on ? 'pipe' : 'ignore');
      try {
        child = spawn(file, command.slice(1), { cwd, env, detached: true, shell: false, stdio: [io(options.stdin), io(options.stdout), io(options.stderr)] });
      } catch (e) {
        // Synchronous refusals: an argument with a NUL byte.
        return endedSession({ exitCode: 126, error: `exec: cannot start ${file}: ${errorMessage(e)}` });
      }
    }
    const sessions = (c.sessions ??= new Set());
    const session: ExecStream = new ExecStream(child, {
      file,
      path: env.PATH,
      options,
      output,
      tty,
      exitDrainMs: this.exitDrainMs,
      log: this.log,
      label,
      kill: (pid, alone) => this.killGroup(pid, 'SIGKILL', undefined, !alone),
      release: () => sessions.delete(session),
    });
    // Tracked from the spawn on: an exit of the container while this one starts kills it too.
    sessions.add(session);
    await session.started;
    return session;
  }

  async attach(id: string, options: StreamOptions, output: StreamOutput): Promise<StreamSession> {
    await this.loaded();
    const c = this.get(id, 'RunContainerError');
    this.runningEnv(c);
    if (options.tty) throw new RuntimeError('RunContainerError', 'the process runtime runs containers without a terminal; attach without -t');
    if (options.stdin && !c.rec.stdin)
      throw new RuntimeError('RunContainerError', `container ${c.rec.name} was not created with stdin: true: nothing reads what attach -i would send; attach without -i`);
    const attachments = (c.attachments ??= new Set());
    const a: Attachment = new Attachment(c, options, output, this.attachMaxBufferedBytes, this.log, () => attachments.delete(a));
    attachments.add(a);
    return a;
  }

  /** Releases timers, log files and pipes; leaves the processes running (see the module doc). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    for (const c of this.containers.values()) {
      for (const t of c.timers) clearTimeout(t);
      c.timers.clear();
      const child = c.child;
      if (child) {
        child.stdout?.destroy();
        child.stderr?.destroy();
        child.stdin?.destroy();
        child.unref();
      }
      c.logThrottle?.close();
      c.writer?.close();
      for (const a of [...(c.attachments ?? [])]) a.end({ error: 'the process runtime closed' });
      for (const s of [...(c.sessions ?? [])]) s.kill('the process runtime closed');
      c.resolveExited?.();
    }
    for (const e of this.execs) {
      if (e.pid !== undefined) this.killGroup(e.pid, 'SIGKILL', undefined);
    }
  }
}

/** Makes the `process` runtime. */
export function createProcessRuntime(options: ProcessRuntimeOptions): ProcessRuntime {
  return new ProcessRuntime(options);
}
