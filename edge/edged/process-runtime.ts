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
 *   `ContainerConfig.logPath` as CRI log records (./logs.ts), bounded at `logMaxBytes` per file.
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
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { networkInterfaces, constants as osConstants } from 'node:os';
import { join, resolve } from 'node:path';
import { errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { Cgroups } from './cgroup.js';
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
  /** Resolves once the running process is exited (state recorded). */
  exited?: Promise<void>;
  resolveExited?: () => void;
  timers: Set<NodeJS.Timeout>;
  /** A start is under way (between spawn and its outcome). */
  starting?: boolean;
  /** The main process exited (and was reaped: its pid is no longer its own); the output is being drained. */
  exitSeen?: boolean;
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

/** The `process` runtime. */
export class ProcessRuntime implements ContainerRuntime {
  readonly name = 'process';
  private readonly rootDir: string;
  private readonly log: Logger | undefined;
  private readonly exitDrainMs: number;
  private readonly execMaxOutputBytes: number;
  private readonly leftoverKillWaitMs: number;
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
    child.stdout?.on('data', (b: Buffer) => writer.write('stdout', b));
    child.stderr?.on('data', (b: Buffer) => writer.write('stderr', b));
    child.stdin?.on('error', () => {}); // EPIPE once the process closed its stdin
    c.starting = true;
    try {
      await new Promise<void>((ok, fail) => {
        child.once('spawn', ok);
        child.once('error', fail);
      });
    } catch (err) {
      c.starting = false;
      writer.close();
      const f = spawnFailure(file, err, env.PATH);
      throw this.startFailed(c, `cannot start ${file}: ${f.message}`, err);
    }
    c.starting = false;
    const pid = child.pid!;
    const stat = procStat(pid);
    c.child = child;
    c.writer = writer;
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
      writer.close();
      c.child = undefined;
      c.writer = undefined;
      if (this.closed) return c.resolveExited?.();
      const code = exit.code ?? 128 + (exit.signal ? signalNumber(exit.signal) : 0);
      r.state = 'exited';
      r.exitCode = code;
      r.reason = r.cgroup && this.cgroups.oomKilled(r.cgroup) ? 'OOMKilled' : code === 0 ? 'Completed' : 'Error';
      r.finishedAt = now();
      if (r.limitsMessage) r.message = r.limitsMessage;
      else delete r.message;
      this.persist(c);
      c.resolveExited?.();
      this.emit(c);
    };
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      c.exitSeen = true;
      // The container ends with its main process: what is left of its group goes too.
      this.killGroup(pid, 'SIGKILL', r.cgroup, false);
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
      c.writer?.close();
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
