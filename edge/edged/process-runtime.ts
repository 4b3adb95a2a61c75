/**
 * @module
 * The `process` runtime: each container of a pod is a supervised child process of EdgeCore,
 * started with `spawn` (no shell) from the container's `command` + `args`, looked up on the
 * host's PATH. Its environment is the spec's `envFrom` then `env` (configmaps and secrets come
 * from an injected lookup, the MetaManager store in EdgeCore), on top of a small base (PATH,
 * HOSTNAME). stdout and stderr go to one size-bounded log file per container, rotated once.
 * The restart policy is applied with the shared backoff (kubelet's 10 s doubling to 5 min,
 * reset after 10 min of running), and the waiting state says CrashLoopBackOff meanwhile. Stop
 * is SIGTERM to the process group, then SIGKILL after the grace period.
 *
 * What the spec asks and a plain process cannot do is reported in the status, not guessed:
 * no `command` → waiting `ContainerCommandMissing`; a reference to a missing configmap or key
 * → waiting `CreateContainerConfigError`; a command that cannot be started → waiting
 * `RunContainerError`. Volumes are not materialized yet (docs/design.md, "Edged: the process
 * runtime").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { backoff as makeBackoff, type Backoff } from '../../shared/backoff/index.js';
import { errorMessage, PodSpecError } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { defaultProcessRuntimeOptions } from './options.js';
import type { ContainerRuntime, ContainerSpec, ContainerState, ContainerStatus, LogsOptions, PodRuntimeStatus, PodSandboxInfo, PodSandboxSpec, StopOptions } from './runtime.js';

/** The `data` of a ConfigMap or Secret (a Secret's values base64, as the API stores them; `stringData` plain). */
export interface KeyValueObject {
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

/** Where configmaps and secrets come from (the MetaManager store in EdgeCore). Undefined = not found. */
export interface ConfigLookup {
  configMap(namespace: string, name: string): KeyValueObject | undefined;
  secret(namespace: string, name: string): KeyValueObject | undefined;
}

/** Options; defaults in `defaultProcessRuntimeOptions` (./options.ts). */
export interface ProcessRuntimeOptions {
  /** The node's data directory: sandboxes go under `<dataDir>/edged/pods`, logs under `<dataDir>/edged/logs`. */
  dataDir: string;
  lookup: ConfigLookup;
  log?: Logger;
  /** Seconds between SIGTERM and SIGKILL when the pod sets none. Default 30. */
  terminationGracePeriodSeconds?: number;
  /** Restart backoff: first delay, ms. Default 10000. */
  backoffBaseMs?: number;
  /** Restart backoff: largest delay, ms. Default 300000. */
  backoffMaxMs?: number;
  /** A run at least this long resets the backoff, ms. Default 600000. */
  backoffResetMs?: number;
  /** Log file size bound, bytes: past it the file is rotated to `<name>.log.1` (one kept). Default 10 MiB. */
  logMaxBytes?: number;
  /** The PATH the containers get (and their command is looked up on) unless their env sets one. Default: EdgeCore's own. */
  path?: string;
  /** Called after any container of the pod changed state (Edged reports pod status from it). */
  onChange?: (uid: string) => void;
}

/** A reference in `env`/`envFrom` that cannot be resolved: the container waits with CreateContainerConfigError. */
class EnvResolveError extends Error {}

const now = () => new Date().toISOString();

/** Kubernetes' rule for environment variable names from envFrom (C_IDENTIFIER-ish, and no '='). */
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

function decodeSecret(obj: KeyValueObject): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(obj.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  for (const [k, v] of Object.entries(obj.stringData ?? {})) out[k] = v;
  return out;
}

function plainData(obj: KeyValueObject): Record<string, string> {
  return { ...(obj.data ?? {}), ...(obj.stringData ?? {}) };
}

/**
 * The container's environment from the spec: `envFrom` in order, then `env` (which wins), as a
 * kubelet builds it. Throws EnvResolveError naming what is missing; `optional` references
 * that are missing are skipped. `$(VAR)` expansion is not done yet.
 */
export function resolveEnv(pod: PodSandboxSpec, c: ContainerSpec, lookup: ConfigLookup): Record<string, string> {
  const ns = pod.namespace;
  const env: Record<string, string> = {};
  const source = (kind: 'ConfigMap' | 'Secret', name: string): Record<string, string> | undefined => {
    const obj = kind === 'ConfigMap' ? lookup.configMap(ns, name) : lookup.secret(ns, name);
    if (!obj) return undefined;
    return kind === 'ConfigMap' ? plainData(obj) : decodeSecret(obj);
  };
  for (const from of c.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    if (!ref) continue;
    const kind = from.configMapRef ? 'ConfigMap' : 'Secret';
    const data = source(kind, ref.name);
    if (!data) {
      if (ref.optional) continue;
      throw new EnvResolveError(`${kind.toLowerCase()} "${ref.name}" not found (envFrom of container ${c.name})`);
    }
    for (const [k, v] of Object.entries(data)) {
      const name = `${from.prefix ?? ''}${k}`;
      if (ENV_NAME.test(name)) env[name] = v;
    }
  }
  for (const e of c.env ?? []) {
    if (e.valueFrom === undefined) {
      env[e.name] = e.value ?? '';
      continue;
    }
    const vf = e.valueFrom;
    const keyRef = vf.configMapKeyRef ?? vf.secretKeyRef;
    if (keyRef) {
      const kind = vf.configMapKeyRef ? 'ConfigMap' : 'Secret';
      const data = source(kind, keyRef.name);
      if (!data) {
        if (keyRef.optional) continue;
        throw new EnvResolveError(`${kind.toLowerCase()} "${keyRef.name}" not found (env ${e.name})`);
      }
      const v = data[keyRef.key];
      if (v === undefined) {
        if (keyRef.optional) continue;
        throw new EnvResolveError(`couldn't find key ${keyRef.key} in ${kind} ${ns}/${keyRef.name} (env ${e.name})`);
      }
      env[e.name] = v;
    } else if (vf.fieldRef) {
      const p = vf.fieldRef.fieldPath;
      const fields: Record<string, string> = { 'metadata.name': pod.name, 'metadata.namespace': pod.namespace, 'metadata.uid': pod.uid, 'spec.nodeName': pod.nodeName };
      const v = fields[p];
      if (v === undefined) throw new EnvResolveError(`unsupported fieldPath ${p} (env ${e.name}); the process runtime supports ${Object.keys(fields).join(', ')}`);
      env[e.name] = v;
    } else {
      throw new EnvResolveError(`env ${e.name}: valueFrom has no configMapKeyRef, secretKeyRef or fieldRef the process runtime supports`);
    }
  }
  return env;
}

/**
 * A container's log: stdout and stderr appended as they come, bounded at `maxBytes`. When a
 * write would pass the bound, the file is renamed to `<file>.1` (replacing the older one) and
 * a new file started, so at most two files of at most `maxBytes` each exist. A single chunk
 * larger than the bound keeps only its tail.
 */
export class LogFile {
  private fd: number | undefined;
  private size = 0;
  private failed = false;

  constructor(
    readonly path: string,
    private readonly maxBytes: number,
    private readonly log?: Logger,
  ) {}

  write(chunk: Buffer): void {
    if (this.failed) return;
    try {
      let data = chunk;
      if (data.length > this.maxBytes) data = data.subarray(data.length - this.maxBytes);
      if (this.fd === undefined) this.open();
      if (this.size + data.length > this.maxBytes && this.size > 0) {
        this.close();
        renameSync(this.path, `${this.path}.1`);
        this.open();
      }
      writeSync(this.fd!, data);
      this.size += data.length;
    } catch (err) {
      // One line, then the output is dropped: the container keeps running without a log (disk full, removed directory).
      this.failed = true;
      this.log?.warn(`container log ${this.path} cannot be written, output dropped: ${errorMessage(err)}`);
      this.close();
    }
  }

  private open(): void {
    this.fd = openSync(this.path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
  }

  close(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // already closed: nothing to release
    }
    this.fd = undefined;
  }
}

/** One supervised container. */
class Supervisor {
  state: ContainerState = { waiting: { reason: 'ContainerCreating' } };
  lastState: ContainerState = {};
  restartCount = 0;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  private hasRun = false;
  private readonly backoff: Backoff;
  private readonly logFile: LogFile;
  private runId = 0;

  constructor(
    private readonly rt: ProcessRuntime,
    private readonly pod: PodSandboxSpec,
    readonly spec: ContainerSpec,
    private readonly sandboxDir: string,
    logPath: string,
  ) {
    this.backoff = makeBackoff({ baseMs: rt.opt.backoffBaseMs, maxMs: rt.opt.backoffMaxMs });
    this.logFile = new LogFile(logPath, rt.opt.logMaxBytes, rt.log);
  }

  get logPath(): string {
    return this.logFile.path;
  }

  status(): ContainerStatus {
    const running = this.state.running !== undefined;
    const s: ContainerStatus = {
      name: this.spec.name,
      image: this.spec.image ?? '',
      imageID: '',
      state: this.state,
      lastState: this.lastState,
      ready: running,
      started: running,
      restartCount: this.restartCount,
    };
    if (this.child?.pid !== undefined) s.containerID = `process://${this.child.pid}`;
    return s;
  }

  private set(state: ContainerState): void {
    this.state = state;
    this.rt.changed(this.pod.uid);
  }

  run(): void {
    if (this.stopping) return;
    const c = this.spec;
    if (!c.command || c.command.length === 0) {
      // Not retried: only a new spec can fix it.
      this.set({
        waiting: {
          reason: 'ContainerCommandMissing',
          message: `container ${c.name} has no command: the process runtime runs command + args on the host and cannot use the image's entrypoint${c.image ? ` (${c.image})` : ''}; set command, or use runtimeClassName: container`,
        },
      });
      return;
    }
    let env: Record<string, string>;
    try {
      env = { PATH: this.rt.opt.path, HOSTNAME: this.pod.name, ...resolveEnv(this.pod, c, this.rt.lookup) };
    } catch (err) {
      // A missing reference, or a lookup that failed: either way the object may arrive, so retried.
      const message = err instanceof EnvResolveError ? err.message : `cannot resolve the environment of container ${c.name}: ${errorMessage(err)}`;
      return this.retryLater({ reason: 'CreateContainerConfigError', message });
    }
    const cwd = c.workingDir ?? this.sandboxDir;
    if (!isDir(cwd)) return this.retryLater({ reason: 'RunContainerError', message: `workingDir ${cwd} does not exist or is not a directory` });
    const [file, ...cmdArgs] = c.command;
    const id = ++this.runId;
    let child: ChildProcess;
    try {
      // Own process group (detached), so stop signals reach what the command started too.
      child = spawn(file!, [...cmdArgs, ...(c.args ?? [])], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true, shell: false });
    } catch (err) {
      return this.retryLater({ reason: 'RunContainerError', message: `cannot start ${file}: ${errorMessage(err)}` });
    }
    this.child = child;
    let started = false;
    let startedAt = '';
    let startedMs = 0;
    child.stdout?.on('data', (b: Buffer) => this.logFile.write(b));
    child.stderr?.on('data', (b: Buffer) => this.logFile.write(b));
    let resolveExit: () => void = () => {};
    this.exited = new Promise<void>((r) => (resolveExit = r));
    child.once('spawn', () => {
      started = true;
      // restartCount counts processes started after the first one ran.
      if (this.hasRun) this.restartCount++;
      this.hasRun = true;
      startedAt = now();
      startedMs = Date.now();
      this.set({ running: { startedAt } });
    });
    child.on('error', (err) => {
      if (started || id !== this.runId) {
        this.rt.log?.warn(`container ${c.name} of pod ${this.pod.namespace}/${this.pod.name}: ${errorMessage(err)}`);
        return;
      }
      this.child = undefined;
      resolveExit();
      this.retryLater({ reason: 'RunContainerError', message: `cannot start ${file}: ${errorMessage(err)}` });
    });
    child.once('exit', (code, signal) => {
      if (!started) return resolveExit();
      const exitCode = code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0);
      const terminated: ContainerState = {
        terminated: {
          exitCode,
          reason: exitCode === 0 ? 'Completed' : 'Error',
          startedAt,
          finishedAt: now(),
          ...(signal ? { signal: osConstants.signals[signal], message: `killed by ${signal}` } : {}),
        },
      };
      this.child = undefined;
      resolveExit();
      if (Date.now() - startedMs >= this.rt.opt.backoffResetMs) this.backoff.reset();
      const policy = this.pod.restartPolicy ?? 'Always';
      const restart = !this.stopping && (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0));
      if (!restart) return this.set(terminated);
      this.lastState = terminated;
      const delay = this.backoff.next();
      this.schedule(delay, {
        reason: 'CrashLoopBackOff',
        message: `back-off ${formatDelay(delay)} restarting failed container=${c.name} pod=${this.pod.name}_${this.pod.namespace}(${this.pod.uid})`,
      });
    });
  }

  /** A start that failed before the process ran: waits with `waiting` and tries again after the backoff. */
  private retryLater(waiting: { reason: string; message: string }): void {
    this.schedule(this.backoff.next(), waiting);
  }

  private schedule(delayMs: number, waiting: { reason: string; message: string }): void {
    this.set({ waiting });
    if (this.stopping) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopping) return;
      this.run();
    }, delayMs);
  }

  /** SIGTERM to the process group, SIGKILL after `graceMs`; resolves once the process exited. No restarts after. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const child = this.child;
    const pid = child?.pid;
    if (!child || pid === undefined) return;
    const exited = this.exited;
    const kill = (sig: NodeJS.Signals) => {
      try {
        process.kill(-pid, sig);
      } catch {
        // the group is gone already (or was never made): signal the process itself
        child.kill(sig);
      }
    };
    let killTimer: NodeJS.Timeout | undefined;
    if (graceMs <= 0) kill('SIGKILL');
    else {
      kill('SIGTERM');
      killTimer = setTimeout(() => kill('SIGKILL'), graceMs);
    }
    try {
      await exited;
    } finally {
      if (killTimer) clearTimeout(killTimer);
    }
  }

  close(): void {
    this.logFile.close();
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function formatDelay(ms: number): string {
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m0s`;
  return `${ms / 1000}s`;
}

interface Sandbox {
  spec: PodSandboxSpec;
  info: PodSandboxInfo;
  dir: string;
  logDir: string;
  containers: Map<string, Supervisor>;
}

/** The `process` runtime. Pods must be stopped before they are removed; {@link stopAll} ends everything (EdgeCore's shutdown). */
export class ProcessRuntime implements ContainerRuntime {
  readonly name = 'process';
  readonly version = 'process://ledge';
  readonly opt: Required<Omit<ProcessRuntimeOptions, 'log' | 'onChange' | 'lookup'>>;
  readonly log: Logger | undefined;
  readonly lookup: ConfigLookup;
  private readonly onChange: ((uid: string) => void) | undefined;
  private readonly pods = new Map<string, Sandbox>();

  constructor(options: ProcessRuntimeOptions) {
    const d = defaultProcessRuntimeOptions;
    this.opt = {
      dataDir: options.dataDir,
      terminationGracePeriodSeconds: options.terminationGracePeriodSeconds ?? d.terminationGracePeriodSeconds,
      backoffBaseMs: options.backoffBaseMs ?? d.backoffBaseMs,
      backoffMaxMs: options.backoffMaxMs ?? d.backoffMaxMs,
      backoffResetMs: options.backoffResetMs ?? d.backoffResetMs,
      logMaxBytes: options.logMaxBytes ?? d.logMaxBytes,
      path: options.path ?? process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    };
    if (!(this.opt.logMaxBytes >= 1)) throw new TypeError(`process runtime: logMaxBytes must be ≥ 1 (got ${this.opt.logMaxBytes})`);
    this.log = options.log;
    this.lookup = options.lookup;
    this.onChange = options.onChange;
  }

  /** @internal A container of `uid` changed state. */
  changed(uid: string): void {
    try {
      this.onChange?.(uid);
    } catch (err) {
      this.log?.warn(`edged status listener failed: ${errorMessage(err)}`);
    }
  }

  private get(uid: string): Sandbox {
    const p = this.pods.get(uid);
    if (!p) throw new PodSpecError(`the process runtime holds no pod with uid ${uid}`);
    return p;
  }

  async create(pod: PodSandboxSpec): Promise<void> {
    if (this.pods.has(pod.uid)) throw new PodSpecError(`pod ${pod.namespace}/${pod.name} (uid ${pod.uid}) already exists in the process runtime`);
    if (!/^[A-Za-z0-9._-]+$/.test(pod.uid)) throw new PodSpecError(`pod ${pod.namespace}/${pod.name}: uid ${JSON.stringify(pod.uid)} is not usable as a directory name`);
    if (pod.containers.length === 0) throw new PodSpecError(`pod ${pod.namespace}/${pod.name} has no containers`);
    const names = new Set<string>();
    for (const c of pod.containers) {
      if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(c.name)) throw new PodSpecError(`pod ${pod.namespace}/${pod.name}: container name ${JSON.stringify(c.name)} is not a DNS label`);
      if (names.has(c.name)) throw new PodSpecError(`pod ${pod.namespace}/${pod.name}: duplicate container name ${c.name}`);
      names.add(c.name);
    }
    const root = join(this.opt.dataDir, 'edged');
    const dir = join(root, 'pods', pod.uid);
    // Kubelet's layout: <logs>/<namespace>_<name>_<uid>/<container>.log
    const logDir = join(root, 'logs', `${pod.namespace}_${pod.name}_${pod.uid}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    mkdirSync(logDir, { recursive: true, mode: 0o700 });
    const sb: Sandbox = { spec: pod, info: { uid: pod.uid, name: pod.name, namespace: pod.namespace, state: 'created', createdAt: now() }, dir, logDir, containers: new Map() };
    for (const c of pod.containers) sb.containers.set(c.name, new Supervisor(this, pod, c, dir, join(logDir, `${c.name}.log`)));
    this.pods.set(pod.uid, sb);
  }

  async start(uid: string): Promise<void> {
    const sb = this.get(uid);
    if (sb.info.state !== 'created') return;
    sb.info.state = 'running';
    for (const s of sb.containers.values()) s.run();
  }

  async stop(uid: string, options: StopOptions = {}): Promise<void> {
    const sb = this.get(uid);
    const seconds = options.gracePeriodSeconds ?? sb.spec.terminationGracePeriodSeconds ?? this.opt.terminationGracePeriodSeconds;
    sb.info.state = 'stopped';
    await Promise.all([...sb.containers.values()].map((s) => s.stop(Math.max(0, seconds * 1000))));
  }

  async remove(uid: string): Promise<void> {
    const sb = this.pods.get(uid);
    if (!sb) return;
    if (sb.info.state === 'running') await this.stop(uid);
    for (const s of sb.containers.values()) s.close();
    this.pods.delete(uid);
    rmSync(sb.dir, { recursive: true, force: true });
    rmSync(sb.logDir, { recursive: true, force: true });
  }

  /** Stops every pod (EdgeCore's shutdown). */
  async stopAll(options?: StopOptions): Promise<void> {
    await Promise.all([...this.pods.keys()].map((uid) => this.stop(uid, options)));
  }

  list(): PodSandboxInfo[] {
    return [...this.pods.values()].map((p) => ({ ...p.info }));
  }

  status(uid: string): PodRuntimeStatus | undefined {
    const sb = this.pods.get(uid);
    if (!sb) return undefined;
    return { uid, sandbox: { ...sb.info }, containerStatuses: [...sb.containers.values()].map((s) => s.status()) };
  }

  async logs(uid: string, container: string, options: LogsOptions = {}): Promise<string> {
    const s = this.get(uid).containers.get(container);
    if (!s) throw new PodSpecError(`pod ${uid} has no container ${container}`);
    const parts: Buffer[] = [];
    for (const p of [`${s.logPath}.1`, s.logPath]) if (existsSync(p)) parts.push(readFileSync(p));
    let all = Buffer.concat(parts);
    if (options.limitBytes !== undefined && all.length > options.limitBytes) all = all.subarray(all.length - options.limitBytes);
    return all.toString('utf8');
  }

  /** The path of a container's current log file (tests, and Edged's log endpoint later). */
  logPath(uid: string, container: string): string | undefined {
    return this.pods.get(uid)?.containers.get(container)?.logPath;
  }
}

/** Makes the `process` runtime. */
export function createProcessRuntime(options: ProcessRuntimeOptions): ProcessRuntime {
  return new ProcessRuntime(options);
}
