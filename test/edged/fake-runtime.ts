/**
 * An in-memory {@link ContainerRuntime} for unit tests of Edged and its pod worker: sandboxes and
 * containers are records, nothing runs. The test decides what happens:
 * - a container runs from `startContainer` until the test calls {@link FakeRuntime.exit} (or a
 *   stop ends it: exit code 143 after SIGTERM, 137 when killed at once or by its sandbox's stop);
 * - `hooks` script a call's behaviour (throw a RuntimeError to fail it, return a held promise to
 *   keep it in flight); {@link FakeRuntime.holdStops} keeps stops in flight until released;
 * - exec results are scripted per command line ({@link FakeRuntime.setExec}) or by `hooks.exec`;
 * - every exit (and sandbox stop) is an event to the `onEvent` listeners;
 * - every call is logged in `calls`, in order, with the (possibly mocked) time it was made;
 * - `execStream` and `attach` make a {@link FakeSession} the test drives (output, exit) and reads
 *   (stdin, EOF, resizes, pause, cancel); a handler per command line ({@link FakeRuntime.setExecStream},
 *   {@link FakeRuntime.setAttach}) runs before the call resolves (a throw rejects it).
 * Times come from `Date.now()` at the call, so node:test's mocked Date drives them.
 */
import {
  RuntimeError,
  type ContainerConfig,
  type ContainerRuntime,
  type ExecResult,
  type ImageInfo,
  type PullPolicy,
  type RuntimeContainerStatus,
  type RuntimeEvent,
  type SandboxConfig,
  type SandboxStatus,
  type StreamEnd,
  type StreamOptions,
  type StreamOutput,
  type StreamSession,
  type TerminalSize,
} from '../../edge/edged/runtime.js';

export interface FakeContainer {
  id: string;
  sandboxId: string;
  config: ContainerConfig;
  status: RuntimeContainerStatus;
}

export interface FakeSandbox {
  status: SandboxStatus;
  config: SandboxConfig | undefined;
}

export interface FakeCall {
  op: string;
  /** The container name, the sandbox's pod uid, the image: what the call is about. */
  target: string;
  args: unknown[];
  at: number;
}

/** Scripted behaviour; each hook runs before the call takes effect (a throw fails the call). */
export interface FakeHooks {
  version?: () => void | Promise<void>;
  runPodSandbox?: (config: SandboxConfig) => void | Promise<void>;
  ensureImage?: (image: string, policy: PullPolicy) => void | Promise<void>;
  createContainer?: (config: ContainerConfig) => void | Promise<void>;
  startContainer?: (c: FakeContainer) => void | Promise<void>;
  /** Runs before the stop takes effect (await something to keep it in flight). */
  stopContainer?: (c: FakeContainer, graceSeconds: number) => void | Promise<void>;
  listContainers?: () => void | Promise<void>;
  /** Overrides the scripted results of {@link FakeRuntime.setExec}. */
  exec?: (c: FakeContainer, command: string[], timeoutMs: number) => ExecResult | Promise<ExecResult> | undefined;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * A scripted exec or attach session: the test (or the handler) writes its output and ends it; what
 * the caller did to it (stdin, EOF, resizes, pause, cancel) is recorded.
 */
export class FakeSession implements StreamSession {
  /** What arrived on stdin, in order. */
  readonly stdin: Buffer[] = [];
  stdinEnded = false;
  readonly resizes: TerminalSize[] = [];
  paused = false;
  /** How often pause() was called. */
  pauses = 0;
  cancelled = false;
  ended = false;
  readonly done: Promise<StreamEnd>;
  private settle!: (end: StreamEnd) => void;
  private readonly stdinListeners: ((chunk: Buffer | undefined) => void)[] = [];

  constructor(
    readonly kind: 'exec' | 'attach',
    readonly containerId: string,
    readonly command: string[] | undefined,
    readonly options: StreamOptions,
    private readonly output: StreamOutput,
  ) {
    this.done = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  /** What stdin brought, as text. */
  stdinText(): string {
    return Buffer.concat(this.stdin).toString();
  }

  /** Called with each stdin chunk, and with undefined at EOF. */
  onStdin(listener: (chunk: Buffer | undefined) => void): void {
    this.stdinListeners.push(listener);
  }

  /** The process writes to stdout (delivered even while paused: the caller's send queue absorbs it). */
  writeStdout(data: string | Uint8Array): void {
    this.output.stdout(typeof data === 'string' ? Buffer.from(data) : data);
  }

  writeStderr(data: string | Uint8Array): void {
    this.output.stderr(typeof data === 'string' ? Buffer.from(data) : data);
  }

  /** The session ends (`done` settles) with this exit code or error. */
  exit(exitCode?: number, error?: string): void {
    if (this.ended) return;
    this.ended = true;
    const end: StreamEnd = {};
    if (exitCode !== undefined) end.exitCode = exitCode;
    if (error !== undefined) end.error = error;
    this.settle(end);
  }

  writeStdin(chunk: Uint8Array): void {
    if (this.ended) return;
    const b = Buffer.from(chunk);
    this.stdin.push(b);
    for (const l of this.stdinListeners) l(b);
  }

  endStdin(): void {
    if (this.ended || this.stdinEnded) return;
    this.stdinEnded = true;
    for (const l of this.stdinListeners) l(undefined);
  }

  resize(size: TerminalSize): void {
    this.resizes.push({ ...size });
  }

  pause(): void {
    this.paused = true;
    this.pauses++;
  }

  resume(): void {
    this.paused = false;
  }

  /** An exec is killed (137); an attach detaches (no exit code). */
  cancel(): void {
    this.cancelled = true;
    this.exit(this.kind === 'exec' ? 137 : undefined);
  }
}

/** Scripts a session: runs before execStream/attach resolves (a throw rejects the call). */
export type FakeSessionHandler = (session: FakeSession) => void | Promise<void>;

export class FakeRuntime implements ContainerRuntime {
  readonly calls: FakeCall[] = [];
  readonly sandboxes = new Map<string, FakeSandbox>();
  readonly containers = new Map<string, FakeContainer>();
  hooks: FakeHooks = {};
  private readonly execResults = new Map<string, ExecResult[]>();
  /** Every exec/attach session made, in order. */
  readonly sessions: FakeSession[] = [];
  private readonly streamHandlers = new Map<string, FakeSessionHandler>();
  private attachHandler: FakeSessionHandler | undefined;
  private readonly listeners = new Set<(e: RuntimeEvent) => void>();
  private heldStops: (() => void)[] | undefined;
  private seq = 0;

  constructor(readonly name = 'process') {}

  private log(op: string, target: string, ...args: unknown[]): void {
    this.calls.push({ op, target, args, at: Date.now() });
  }

  // --- what the test reads ---------------------------------------------------------------

  /** The call log as `op:target` strings, optionally only some operations. */
  ops(...only: string[]): string[] {
    return this.calls.filter((c) => only.length === 0 || only.includes(c.op)).map((c) => `${c.op}:${c.target}`);
  }

  /** Names of the containers started, in order (one entry per startContainer call that succeeded or failed). */
  started(): string[] {
    return this.calls.filter((c) => c.op === 'startContainer').map((c) => c.target);
  }

  /** How many containers were created with this name (the worker removes a run's container once the next one started). */
  created(name: string): number {
    return this.calls.filter((c) => c.op === 'createContainer' && c.target === name).length;
  }

  /** Every container the runtime holds with this name, oldest first (optionally of one pod). */
  runsOf(name: string, uid?: string): FakeContainer[] {
    return [...this.containers.values()].filter((c) => c.config.name === name && (uid === undefined || c.status.uid === uid));
  }

  /** The newest container of this name. */
  current(name: string, uid?: string): FakeContainer | undefined {
    return this.runsOf(name, uid).at(-1);
  }

  /** Whether the newest container of this name is running. */
  running(name: string, uid?: string): boolean {
    return this.current(name, uid)?.status.state === 'running';
  }

  /** Sandboxes not removed. */
  liveSandboxes(): SandboxStatus[] {
    return [...this.sandboxes.values()].map((s) => s.status);
  }

  // --- what the test does ----------------------------------------------------------------

  /** Ends the newest running container of this name with `exitCode` (and an event). */
  exit(name: string, exitCode: number, options: { reason?: string; message?: string; uid?: string } = {}): FakeContainer {
    const c = this.runsOf(name, options.uid)
      .filter((x) => x.status.state === 'running' || x.status.state === 'created')
      .at(-1);
    if (!c) throw new Error(`fake runtime: no running container named ${name}`);
    this.finish(c, exitCode, options.reason, options.message);
    return c;
  }

  /** Scripts the results of `command` (joined with spaces): used in turn, the last one repeats. A number is an exit code. */
  setExec(command: string, ...results: (number | Partial<ExecResult>)[]): void {
    this.execResults.set(
      command,
      results.map((r) =>
        typeof r === 'number'
          ? { exitCode: r, stdout: '', stderr: r === 0 ? '' : `${command} failed`, timedOut: false }
          : { exitCode: 0, stdout: '', stderr: '', timedOut: false, ...r },
      ),
    );
  }

  /** Scripts `execStream` of `command` (joined with spaces); `*` matches any command without its own handler. */
  setExecStream(command: string, handler: FakeSessionHandler): void {
    this.streamHandlers.set(command, handler);
  }

  /** Scripts `attach`. */
  setAttach(handler: FakeSessionHandler): void {
    this.attachHandler = handler;
  }

  /** From now on, stops stay in flight until {@link releaseStops}. */
  holdStops(): void {
    this.heldStops ??= [];
  }

  /** Completes the stops held so far and stops holding. */
  releaseStops(): void {
    const held = this.heldStops ?? [];
    this.heldStops = undefined;
    for (const r of held) r();
  }

  /** Stops held now. */
  get heldStopCount(): number {
    return this.heldStops?.length ?? 0;
  }

  /** A sandbox (and its containers) the runtime holds already, as after an EdgeCore restart. */
  preload(
    sandbox: Partial<SandboxStatus> & { uid: string },
    containers: { name: string; attempt?: number; state?: RuntimeContainerStatus['state']; exitCode?: number }[] = [],
  ): SandboxStatus {
    const id = sandbox.id ?? `sb${++this.seq}`;
    const status: SandboxStatus = { id, name: 'pod', namespace: 'default', state: 'ready', ip: `10.88.0.${this.seq}`, createdAt: iso(Date.now()), ...sandbox };
    this.sandboxes.set(id, { status, config: undefined });
    for (const c of containers) {
      const cid = `c${++this.seq}`;
      const attempt = c.attempt ?? 0;
      const config: ContainerConfig = { name: c.name, image: `img/${c.name}`, env: {}, mounts: [], resources: {}, attempt, logPath: '', logMaxBytes: 0, labels: {} };
      const st: RuntimeContainerStatus = {
        id: cid,
        sandboxId: id,
        uid: status.uid,
        name: c.name,
        attempt,
        state: c.state ?? 'running',
        createdAt: iso(Date.now()),
        startedAt: iso(Date.now()),
        image: config.image,
        imageID: '',
        containerID: `fake://${cid}`,
        logPath: '',
      };
      if (st.state === 'exited') {
        st.exitCode = c.exitCode ?? 0;
        st.finishedAt = iso(Date.now());
      }
      this.containers.set(cid, { id: cid, sandboxId: id, config, status: st });
    }
    return status;
  }

  emit(event: RuntimeEvent): void {
    for (const l of [...this.listeners]) l(event);
  }

  private finish(c: FakeContainer, exitCode: number, reason?: string, message?: string): void {
    if (c.status.state === 'exited') return;
    const st: RuntimeContainerStatus = { ...c.status, state: 'exited', exitCode, reason: reason ?? (exitCode === 0 ? 'Completed' : 'Error'), finishedAt: iso(Date.now()) };
    if (message !== undefined) st.message = message;
    c.status = st;
    this.emit({ containerId: c.id, sandboxId: c.sandboxId, uid: c.status.uid });
  }

  // --- ContainerRuntime -------------------------------------------------------------------

  async version(): Promise<string> {
    this.log('version', '');
    await this.hooks.version?.();
    return `${this.name}://fake`;
  }

  async runPodSandbox(config: SandboxConfig): Promise<SandboxStatus> {
    this.log('runPodSandbox', config.uid, config);
    await this.hooks.runPodSandbox?.(config);
    const n = ++this.seq;
    const status: SandboxStatus = { id: `sb${n}`, uid: config.uid, name: config.name, namespace: config.namespace, state: 'ready', ip: `10.88.0.${n}`, createdAt: iso(Date.now()) };
    this.sandboxes.set(status.id, { status, config });
    return { ...status };
  }

  async stopPodSandbox(id: string): Promise<void> {
    const sb = this.sandboxes.get(id);
    this.log('stopPodSandbox', sb?.status.uid ?? id, id);
    if (!sb) return;
    for (const c of this.containers.values()) if (c.sandboxId === id) this.finish(c, 137);
    sb.status = { ...sb.status, state: 'notready' };
  }

  async removePodSandbox(id: string): Promise<void> {
    const sb = this.sandboxes.get(id);
    this.log('removePodSandbox', sb?.status.uid ?? id, id);
    for (const [cid, c] of this.containers) if (c.sandboxId === id) this.containers.delete(cid);
    this.sandboxes.delete(id);
  }

  async listPodSandboxes(): Promise<SandboxStatus[]> {
    this.log('listPodSandboxes', '');
    return this.liveSandboxes().map((s) => ({ ...s }));
  }

  async ensureImage(image: string, policy: PullPolicy): Promise<void> {
    this.log('ensureImage', image, policy);
    await this.hooks.ensureImage?.(image, policy);
  }

  async createContainer(sandboxId: string, config: ContainerConfig): Promise<string> {
    this.log('createContainer', config.name, sandboxId, config);
    await this.hooks.createContainer?.(config);
    const sb = this.sandboxes.get(sandboxId);
    if (!sb) throw new Error(`fake runtime: no sandbox ${sandboxId}`);
    const id = `c${++this.seq}`;
    const status: RuntimeContainerStatus = {
      id,
      sandboxId,
      uid: sb.status.uid,
      name: config.name,
      attempt: config.attempt,
      state: 'created',
      createdAt: iso(Date.now()),
      image: config.image,
      imageID: `sha256:${config.image}`,
      containerID: `fake://${id}`,
      logPath: config.logPath,
    };
    this.containers.set(id, { id, sandboxId, config, status });
    return id;
  }

  async startContainer(id: string): Promise<void> {
    const c = this.containers.get(id);
    this.log('startContainer', c?.config.name ?? id, id);
    if (!c) throw new Error(`fake runtime: no container ${id}`);
    await this.hooks.startContainer?.(c);
    c.status = { ...c.status, state: 'running', startedAt: iso(Date.now()) };
  }

  async stopContainer(id: string, graceSeconds: number): Promise<void> {
    const c = this.containers.get(id);
    this.log('stopContainer', c?.config.name ?? id, id, graceSeconds);
    if (!c) return;
    await this.hooks.stopContainer?.(c, graceSeconds);
    if (this.heldStops) await new Promise<void>((r) => this.heldStops?.push(r));
    this.finish(c, graceSeconds > 0 ? 143 : 137);
  }

  async removeContainer(id: string): Promise<void> {
    const c = this.containers.get(id);
    this.log('removeContainer', c?.config.name ?? id, id);
    this.containers.delete(id);
  }

  async listContainers(sandboxId?: string): Promise<RuntimeContainerStatus[]> {
    this.log('listContainers', sandboxId ?? '');
    await this.hooks.listContainers?.();
    return [...this.containers.values()].filter((c) => sandboxId === undefined || c.sandboxId === sandboxId).map((c) => ({ ...c.status }));
  }

  async containerStatus(id: string): Promise<RuntimeContainerStatus | undefined> {
    const c = this.containers.get(id);
    return c ? { ...c.status } : undefined;
  }

  async exec(id: string, command: string[], options: { timeoutMs: number }): Promise<ExecResult> {
    const c = this.containers.get(id);
    this.log('exec', command.join(' '), id, options.timeoutMs);
    const state = c?.status.state;
    if (!c || state !== 'running') return { exitCode: 126, stdout: '', stderr: `container ${id} is not running`, timedOut: false };
    const scripted = await this.hooks.exec?.(c, command, options.timeoutMs);
    if (scripted) return scripted;
    const list = this.execResults.get(command.join(' '));
    if (!list || list.length === 0) return { exitCode: 0, stdout: '', stderr: '', timedOut: false };
    return { ...(list.length > 1 ? list.shift()! : list[0]!) };
  }

  /**
   * A session on a running container: rejects with RuntimeError(RunContainerError) when it is not
   * running; without a handler for the command, the session just stays open until the test ends it.
   */
  async execStream(id: string, command: string[], options: StreamOptions, output: StreamOutput): Promise<StreamSession> {
    this.log('execStream', command.join(' '), id, options);
    return this.session('exec', id, command, options, output, this.streamHandlers.get(command.join(' ')) ?? this.streamHandlers.get('*'));
  }

  async attach(id: string, options: StreamOptions, output: StreamOutput): Promise<StreamSession> {
    this.log('attach', this.containers.get(id)?.config.name ?? id, id, options);
    return this.session('attach', id, undefined, options, output, this.attachHandler);
  }

  private async session(
    kind: 'exec' | 'attach',
    id: string,
    command: string[] | undefined,
    options: StreamOptions,
    output: StreamOutput,
    handler: FakeSessionHandler | undefined,
  ): Promise<FakeSession> {
    const c = this.containers.get(id);
    if (c?.status.state !== 'running') throw new RuntimeError('RunContainerError', `container ${id} is not running`);
    const s = new FakeSession(kind, id, command, { ...options }, output);
    this.sessions.push(s);
    await handler?.(s);
    return s;
  }

  async listImages(): Promise<ImageInfo[]> {
    return [];
  }

  onEvent(listener: (event: RuntimeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.log('close', '');
  }
}

/** One turn of the event loop (real setImmediate: node:test mocks only the timers the test names). */
export function turn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/**
 * Lets queued work run until `idle()` held for three turns in a row (the fake runtime answers in
 * microtasks, so a turn runs every chain it started). Fails after `maxMs` of real time (generous: the bound only matters for a failing test on a loaded machine).
 */
export async function settle(idle: () => boolean = () => true, what = 'the work to settle', maxMs = 10_000): Promise<void> {
  const deadline = performance.now() + maxMs;
  let quiet = 0;
  while (quiet < 3) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await turn();
    quiet = idle() ? quiet + 1 : 0;
  }
}

/** Waits until `cond()` is true; fails after `maxMs` of real time, naming `what`. */
export async function until(cond: () => boolean, what: string, maxMs = 10_000): Promise<void> {
  const deadline = performance.now() + maxMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await turn();
  }
}
