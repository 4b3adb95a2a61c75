/**
 * @module
 * One pod's worker: the kubelet's syncPod for a pod the node runs, on any runtime.
 *
 * Every rule a kubelet applies lives here once, for both runtimes:
 * - the sandbox first (its network namespace or directory), then volumes, then init containers
 *   one at a time in order (each must exit 0), then the containers;
 * - restartPolicy Always / OnFailure / Never; a crashing container restarts at once the first
 *   time, then after 10 s doubling to 5 min (CrashLoopBackOff), and the delay starts over once a
 *   run lasted 10 min (kubelet's numbers, `defaultEdgedOptions`);
 * - startup, liveness and readiness probes (./probes.ts); a failed liveness probe restarts the
 *   container, readiness feeds the Ready and ContainersReady conditions;
 * - an update that changes a container's spec (in a pod, only `image` may change) restarts just
 *   that container;
 * - stop: preStop hook, SIGTERM, SIGKILL after the grace period;
 * - the status a kubelet reports (phase, conditions, container statuses with state, lastState,
 *   reason, exitCode, restartCount, times, podIP/hostIP, qosClass).
 *
 * The worker is driven by `kick()` (a spec change, a runtime event, a probe result, a timer) and
 * runs one sync at a time; a kick during a sync runs another one after it.
 */
import type {
  V1Container,
  V1ContainerState,
  V1ContainerStatus,
  V1LifecycleHandler,
  V1Pod,
  V1PodCondition,
  V1PodStatus,
  V1Probe,
  V1ResourceRequirements,
} from '@kubernetes/client-node';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { ErrorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { EnvResolveError, expandCommand, resolveEnv, type ConfigLookup } from './env.js';
import { Prober } from './probes.js';
import { cpuMillis, parseQuantityNanos, bytes as quantityBytes } from './quantity.js';
import { RuntimeError, type ContainerRuntime, type Mount, type PortMapping, type PullPolicy, type RuntimeContainerStatus, type SandboxStatus } from './runtime.js';
import { materializeVolumes, mountsFor, processVolumeEnv, removeVolumes, type MaterializedVolumes } from './volumes.js';

/** The worker's settings (Edged's options, resolved). */
export interface PodWorkerSettings {
  dataDir: string;
  nodeName: string;
  terminationGracePeriodSeconds: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  backoffResetMs: number;
  containerLogMaxBytes: number;
}

/** What a worker needs from Edged. */
export interface PodWorkerDeps {
  /** The pod's runtime; undefined when its runtimeClassName names none (`runtimeError` says why). */
  runtime: ContainerRuntime | undefined;
  runtimeError?: string;
  settings: PodWorkerSettings;
  lookup: ConfigLookup;
  log: Logger;
  /** The host's IP (status.hostIP). */
  hostIP: () => string;
  /** Variables Edged adds to every container (KUBERNETES_SERVICE_HOST/PORT, the MetaServer token). */
  extraEnv: (pod: V1Pod) => Record<string, string>;
  /** The status may have changed. */
  onStatus: () => void;
  /** Wall clock, ms (times in the status). */
  now?: () => number;
  /** Nothing is run before this settles (the termination of the pod this one replaces under the same name). */
  after?: Promise<void>;
}

interface Waiting {
  reason: string;
  message?: string;
}

interface Terminated {
  exitCode: number;
  signal?: number;
  reason: string;
  message?: string;
  startedAt?: string;
  finishedAt: string;
  containerID?: string;
}

/** One container of the pod and what the worker knows of it across its runs. */
interface ContainerRun {
  spec: V1Container;
  /** The spec as it was when the current run was created (an update that changes it restarts the container). */
  hash: string;
  init: boolean;
  /** The runtime's id of the current (or last) run. */
  id: string | undefined;
  status: RuntimeContainerStatus | undefined;
  /** Attempt of the current run (0 = the first); the next run is attempt + 1. */
  attempt: number;
  /** Whether any run was created (restartCount counts the runs after the first). */
  everRan: boolean;
  waiting: Waiting | undefined;
  lastTerminated: Terminated | undefined;
  /** Crashes since the backoff last started over. */
  crashes: number;
  /** No new run before this time (ms since the epoch). */
  notBefore: number;
  /** The exit of this run was handled (backoff counted). */
  exitSeen: boolean;
  /** An init container that exited 0. */
  done: boolean;
  probers: Prober[];
  /** Readiness probe result (true when it has none). */
  ready: boolean;
  /** Startup probe passed (true when it has none). */
  started: boolean;
  /** Set when a liveness probe failure stopped it (kubelet's reason is still the exit's; message says why). */
  killReason: string | undefined;
  /** Image pull failures since the last success (ErrImagePull → ImagePullBackOff). */
  pullFailures: number;
}

const PULL_BACKOFF_REASONS = new Set(['ErrImagePull', 'ImagePullBackOff']);

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Kubelet's rule: `:latest` or no tag pulls Always, else IfNotPresent. */
export function pullPolicyOf(c: V1Container): PullPolicy {
  const p = c.imagePullPolicy;
  if (p === 'Always' || p === 'IfNotPresent' || p === 'Never') return p;
  const image = c.image ?? '';
  if (image.includes('@')) return 'IfNotPresent';
  const last = image.slice(image.lastIndexOf('/') + 1);
  const tag = last.includes(':') ? last.slice(last.indexOf(':') + 1) : '';
  return tag === '' || tag === 'latest' ? 'Always' : 'IfNotPresent';
}

/** The pod's QoS class, as Kubernetes computes it from requests and limits. */
export function qosClass(pod: V1Pod): 'Guaranteed' | 'Burstable' | 'BestEffort' {
  const containers = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])];
  let any = false;
  let guaranteed = true;
  for (const c of containers) {
    const r: V1ResourceRequirements = c.resources ?? {};
    const limits = r.limits ?? {};
    const requests = { ...limits, ...(r.requests ?? {}) };
    for (const res of ['cpu', 'memory']) {
      if (requests[res] !== undefined || limits[res] !== undefined) any = true;
      if (limits[res] === undefined || !sameQuantity(requests[res], limits[res])) guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

/** Quantities compared by value (`1` = `1000m`, `1Gi` = `1024Mi`), as Kubernetes does. */
function sameQuantity(a: unknown, b: unknown): boolean {
  try {
    return parseQuantityNanos(String(a)) === parseQuantityNanos(String(b));
  } catch {
    return a === b;
  }
}

/** A container spec's identity: its JSON with keys sorted (the same spec listed or watched may come in another key order). */
function specHash(c: V1Container): string {
  return JSON.stringify(c, (_key, value: unknown) =>
    value !== null && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : value,
  );
}

export class PodWorker {
  pod: V1Pod;
  readonly uid: string;
  private readonly runs = new Map<string, ContainerRun>();
  private sandbox: SandboxStatus | undefined;
  private sandboxError: Waiting | undefined;
  private sandboxFailures = 0;
  private volumes: MaterializedVolumes | undefined;
  private volumesDirty = true;
  private volumeError: string | undefined;
  private syncing = false;
  /** The sync loop running now (terminate() waits for it, so it stops what that sync started). */
  private inflight: Promise<void> = Promise.resolve();
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private terminating: Promise<void> | undefined;
  private stopped = false;
  private readonly startTime: number;
  /** lastTransitionTime per condition type, kept while the status stays the same. */
  private readonly transitions = new Map<string, { status: string; at: string }>();
  private readonly now: () => number;
  private podFailedReason: Waiting | undefined;

  constructor(
    pod: V1Pod,
    private readonly deps: PodWorkerDeps,
  ) {
    this.pod = pod;
    this.uid = pod.metadata?.uid ?? '';
    this.now = deps.now ?? Date.now;
    // Kept from the status the cloud holds (a restart of EdgeCore is not a new pod start).
    const known = pod.status?.startTime ? Date.parse(String(pod.status.startTime)) : Number.NaN;
    this.startTime = Number.isFinite(known) ? known : this.now();
    for (const c of pod.spec?.initContainers ?? []) this.runs.set(c.name, this.newRun(c, true));
    for (const c of pod.spec?.containers ?? []) this.runs.set(c.name, this.newRun(c, false));
  }

  get key(): string {
    return `${this.pod.metadata?.namespace}/${this.pod.metadata?.name}`;
  }

  get podDir(): string {
    return join(this.deps.settings.dataDir, 'edged', 'pods', this.uid);
  }

  get logDir(): string {
    const md = this.pod.metadata ?? {};
    return join(this.deps.settings.dataDir, 'edged', 'logs', `${md.namespace}_${md.name}_${this.uid}`);
  }

  private newRun(spec: V1Container, init: boolean): ContainerRun {
    return {
      spec,
      hash: specHash(spec),
      init,
      id: undefined,
      status: undefined,
      attempt: -1,
      everRan: false,
      waiting: { reason: init ? 'PodInitializing' : 'ContainerCreating' },
      lastTerminated: undefined,
      crashes: 0,
      notBefore: 0,
      exitSeen: false,
      done: false,
      probers: [],
      ready: false,
      started: false,
      killReason: undefined,
      pullFailures: 0,
    };
  }

  /** Takes over what the runtime still holds of this pod from before an EdgeCore restart. */
  adopt(sandbox: SandboxStatus, containers: RuntimeContainerStatus[]): void {
    this.sandbox = sandbox;
    // The newest attempt of each container is its current run.
    for (const c of containers) {
      const run = this.runs.get(c.name);
      if (!run || c.attempt < run.attempt) continue;
      run.id = c.id;
      run.status = c;
      run.attempt = c.attempt;
      run.everRan = true;
      run.waiting = undefined;
      if (c.state === 'exited' && run.init && c.exitCode === 0) {
        run.done = true;
        run.exitSeen = true;
      }
    }
  }

  /** A new version of the pod arrived from the cloud. */
  update(pod: V1Pod): void {
    this.pod = pod;
    for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
      const run = this.runs.get(c.name);
      if (!run) continue;
      run.spec = c;
      // A changed container is a new one to the backoff (the kubelet keys it by the spec's hash): it starts at once.
      if (specHash(c) !== run.hash) {
        run.crashes = 0;
        run.notBefore = 0;
      }
    }
    this.volumesDirty = true;
    this.kick();
  }

  /** A configmap or secret the pod uses changed: its volumes are written again. */
  refreshVolumes(): void {
    this.volumesDirty = true;
    // What waited for it starts at once, not after its backoff.
    for (const r of this.runs.values()) if (r.waiting && (r.waiting.reason === 'CreateContainerConfigError' || r.waiting.reason === 'ContainerCreating')) r.notBefore = 0;
    this.kick();
  }

  /** Schedules a sync (one at a time; a kick during a sync runs one more after it). */
  kick(): void {
    if (this.stopped) return;
    if (this.syncing) {
      this.again = true;
      return;
    }
    this.syncing = true;
    setImmediate(() => {
      this.inflight = this.loop();
    });
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        if (this.stopped || this.terminating) break;
        try {
          await this.sync();
        } catch (err) {
          this.deps.log.warn(`pod ${this.key}: sync failed: ${errorMessage(err)}; retrying`, { code: ErrorCode.Runtime });
          this.wakeAt(this.now() + 2_000);
        }
        this.deps.onStatus();
      } while (this.again);
    } finally {
      this.syncing = false;
    }
  }

  /** Wakes the worker at `at` (ms) unless an earlier wake is set. */
  private wakeAt(at: number): void {
    if (this.stopped) return;
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.kick();
      },
      Math.max(0, at - this.now()),
    );
  }

  private backoffDelay(crashes: number): number {
    const s = this.deps.settings;
    // The first restart is at once; then base, doubling, capped (kubelet).
    if (crashes <= 1) return 0;
    return Math.min(s.backoffMaxMs, s.backoffBaseMs * 2 ** Math.min(30, crashes - 2));
  }

  private get restartPolicy(): 'Always' | 'OnFailure' | 'Never' {
    const p = this.pod.spec?.restartPolicy;
    return p === 'OnFailure' || p === 'Never' ? p : 'Always';
  }

  private async sync(): Promise<void> {
    const rt = this.deps.runtime;
    if (!rt) return;
    if (this.podFailedReason) return;
    if (this.deps.after) await this.deps.after;
    // 1. The sandbox. One that died (its infra container stopped, the runtime restarted) is made
    // again, and the pod starts over in it as a kubelet does: init containers run again.
    if (this.sandbox) {
      const id = this.sandbox.id;
      const now = (await rt.listPodSandboxes()).find((s) => s.id === id);
      if (now?.state !== 'ready') {
        this.deps.log.warn(`pod ${this.key}: its sandbox ${id} is ${now ? 'not ready' : 'gone'}; making a new one`, { code: ErrorCode.Runtime });
        await this.stopContainers(0).catch(() => {});
        await rt.removePodSandbox(id).catch(() => {});
        this.sandbox = undefined;
        for (const run of this.runs.values()) {
          if (run.id && run.status && run.status.state !== 'exited' && !run.exitSeen) {
            run.status = {
              ...run.status,
              state: 'exited',
              exitCode: run.status.exitCode ?? 137,
              reason: 'Error',
              message: 'its pod sandbox went away',
              finishedAt: iso(this.now()),
            };
            this.onExit(run);
          }
          if (run.init) {
            // Run again in the new sandbox (its earlier exit stays in lastState).
            run.done = false;
            run.status = undefined;
            run.id = undefined;
            run.notBefore = 0;
          }
        }
      } else this.sandbox = now;
    }
    if (this.sandbox?.state !== 'ready') {
      const md = this.pod.metadata ?? {};
      try {
        mkdirSync(this.podDir, { recursive: true, mode: 0o700 });
        const ports: PortMapping[] = [];
        for (const c of this.pod.spec?.containers ?? [])
          for (const p of c.ports ?? []) {
            const m: PortMapping = { containerPort: p.containerPort };
            if (p.hostPort !== undefined) m.hostPort = p.hostPort;
            if (p.protocol === 'TCP' || p.protocol === 'UDP' || p.protocol === 'SCTP') m.protocol = p.protocol;
            if (p.hostIP !== undefined) m.hostIP = p.hostIP;
            ports.push(m);
          }
        this.sandbox = await rt.runPodSandbox({
          uid: this.uid,
          name: md.name ?? '',
          namespace: md.namespace ?? '',
          hostname: this.pod.spec?.hostname ?? md.name ?? '',
          hostNetwork: this.pod.spec?.hostNetwork === true,
          ports,
          labels: { ...(md.labels ?? {}) },
          podDir: this.podDir,
        });
        this.sandboxError = undefined;
        this.sandboxFailures = 0;
      } catch (err) {
        this.sandboxFailures++;
        this.sandboxError = { reason: 'ContainerCreating', message: `failed to create the pod sandbox: ${errorMessage(err)}` };
        if (this.sandboxFailures === 1 || this.sandboxFailures % 10 === 0) this.deps.log.warn(`pod ${this.key}: ${this.sandboxError.message}`, { code: ErrorCode.Runtime });
        this.wakeAt(this.now() + this.backoffDelay(this.sandboxFailures + 1));
        return;
      }
    }
    // 2. Volumes (again after a change of the pod or of a configmap/secret it uses).
    if (this.volumesDirty || this.volumeError) {
      this.volumesDirty = false;
      try {
        const v = await materializeVolumes(this.pod, { podDir: this.podDir, lookup: this.deps.lookup, fields: this.fields(), log: this.deps.log });
        this.volumes = v;
        this.volumeError = v.errors.length > 0 ? v.errors.join('; ') : undefined;
      } catch (err: unknown) {
        this.volumeError = errorMessage(err);
      }
      if (this.volumeError) {
        // Retried when what is missing arrives (refreshVolumes) and on a slow timer.
        this.wakeAt(this.now() + this.deps.settings.backoffBaseMs);
        if (!this.anyStarted()) return;
      }
    }
    // 3. What the runtime holds now.
    const listed = new Map((await rt.listContainers(this.sandbox.id)).map((c) => [c.id, c]));
    for (const run of this.runs.values()) {
      if (!run.id) continue;
      const st = listed.get(run.id);
      if (st) run.status = st;
      else if (run.status && run.status.state !== 'exited')
        run.status = {
          ...run.status,
          state: 'exited',
          exitCode: run.status.exitCode ?? 137,
          reason: 'Error',
          message: 'container disappeared from the runtime',
          finishedAt: iso(this.now()),
        };
      if (run.status?.state === 'exited' && !run.exitSeen) this.onExit(run);
    }
    // 4. Init containers, one at a time.
    for (const run of this.initRuns()) {
      if (run.done) continue;
      const st = run.status?.state;
      if (st === 'running' || st === 'created') return;
      if (st === 'exited') {
        if (run.status?.exitCode === 0) {
          run.done = true;
          continue;
        }
        if (this.restartPolicy === 'Never') {
          this.podFailedReason = { reason: 'Error', message: `init container ${run.spec.name} failed (exit code ${run.status?.exitCode})` };
          await this.stopContainers(0);
          return;
        }
      }
      await this.maybeStart(run, rt);
      return;
    }
    // 5. The containers.
    for (const run of this.mainRuns()) {
      const st = run.status?.state;
      if ((st === 'running' || st === 'created') && run.hash !== specHash(run.spec)) {
        // Its spec changed (an image update): a new run with the new spec, at once.
        this.deps.log.info(`pod ${this.key}: container ${run.spec.name} changed; restarting it`);
        run.killReason = 'its spec changed';
        await this.stopRun(run, this.graceSeconds());
        run.crashes = 0;
        run.notBefore = 0;
        continue;
      }
      if (st === 'running') {
        this.ensureProbers(run, rt);
        continue;
      }
      if (st === 'exited') {
        const code = run.status?.exitCode ?? 0;
        const restart = this.restartPolicy === 'Always' || (this.restartPolicy === 'OnFailure' && code !== 0) || run.hash !== specHash(run.spec);
        if (!restart) continue;
      }
      await this.maybeStart(run, rt);
    }
  }

  private anyStarted(): boolean {
    for (const r of this.runs.values()) if (r.everRan) return true;
    return false;
  }

  private initRuns(): ContainerRun[] {
    return [...this.runs.values()].filter((r) => r.init);
  }

  private mainRuns(): ContainerRun[] {
    return [...this.runs.values()].filter((r) => !r.init);
  }

  private graceSeconds(): number {
    return this.pod.spec?.terminationGracePeriodSeconds ?? this.deps.settings.terminationGracePeriodSeconds;
  }

  /** The exit of a run: kept as its last termination, probes stopped, the backoff counted. */
  private onExit(run: ContainerRun): void {
    run.exitSeen = true;
    for (const p of run.probers) p.stop();
    run.probers = [];
    run.ready = false;
    const st = run.status!;
    const terminated: Terminated = {
      exitCode: st.exitCode ?? 0,
      reason: st.reason ?? (st.exitCode === 0 ? 'Completed' : 'Error'),
      finishedAt: st.finishedAt ?? iso(this.now()),
      containerID: st.containerID,
    };
    if (st.startedAt) terminated.startedAt = st.startedAt;
    const message = [st.message, run.killReason ? `stopped because ${run.killReason}` : undefined].filter(Boolean).join('; ');
    if (message) terminated.message = message;
    run.killReason = undefined;
    run.lastTerminated = terminated;
    const ranMs = st.startedAt ? Date.parse(terminated.finishedAt) - Date.parse(st.startedAt) : 0;
    if (ranMs >= this.deps.settings.backoffResetMs) run.crashes = 0;
    run.crashes++;
    run.notBefore = this.now() + this.backoffDelay(run.crashes);
  }

  /** Starts a new run of `run` unless its backoff says to wait (then wakes up when it ends). */
  private async maybeStart(run: ContainerRun, rt: ContainerRuntime): Promise<void> {
    const now = this.now();
    if (now < run.notBefore) {
      const name = run.spec.name;
      const md = this.pod.metadata ?? {};
      if (!run.waiting || !PULL_BACKOFF_REASONS.has(run.waiting.reason) || run.waiting.reason === 'ErrImagePull') {
        if (run.waiting?.reason === 'ErrImagePull')
          run.waiting = { reason: 'ImagePullBackOff', message: `Back-off pulling image "${run.spec.image}": ${run.waiting.message ?? ''}` };
        else if (!run.waiting || run.exitSeen)
          run.waiting = {
            reason: 'CrashLoopBackOff',
            message: `back-off ${formatDelay(run.notBefore - (Date.parse(run.lastTerminated?.finishedAt ?? '') || now))} restarting failed container=${name} pod=${md.name}_${md.namespace}(${this.uid})`,
          };
      }
      this.wakeAt(run.notBefore);
      return;
    }
    await this.startRun(run, rt);
  }

  private fields(): { podIP: string; hostIP: string; podIPs: string[] } {
    const hostIP = this.deps.hostIP();
    const podIP = this.sandbox?.ip ?? hostIP;
    return { podIP, hostIP, podIPs: [podIP] };
  }

  /** A failure before the run started: waits with `waiting` and tries again after the backoff. */
  private failStart(run: ContainerRun, waiting: Waiting): void {
    run.waiting = waiting;
    run.crashes++;
    run.notBefore = this.now() + Math.max(this.deps.settings.backoffBaseMs / 10, this.backoffDelay(run.crashes));
    this.wakeAt(run.notBefore);
  }

  private async startRun(run: ContainerRun, rt: ContainerRuntime): Promise<void> {
    // Nothing new once terminate() began (it waits for this sync, then stops what it started).
    if (this.terminating) return;
    const c = run.spec;
    const sandbox = this.sandbox!;
    if (this.volumeError) return this.failStart(run, { reason: 'ContainerCreating', message: `MountVolume.SetUp failed: ${this.volumeError}` });
    let env: Record<string, string>;
    try {
      const resolved = resolveEnv(this.pod, c, this.deps.lookup, this.fields(), { extra: this.deps.extraEnv(this.pod) });
      env = resolved.env;
      for (const s of resolved.skipped) if (run.attempt < 0) this.deps.log.warn(`pod ${this.key}: ${s.message}`);
    } catch (err) {
      const message = err instanceof EnvResolveError ? err.message : `cannot resolve the environment of container ${c.name}: ${errorMessage(err)}`;
      return this.failStart(run, { reason: 'CreateContainerConfigError', message });
    }
    let mounts: Mount[];
    try {
      mounts = this.volumes ? mountsFor(c, this.volumes, env) : [];
      // A plain process cannot see mountPath: it is told where each volume is (docs/edged.md).
      if (rt.name === 'process' && this.volumes) Object.assign(env, processVolumeEnv(c, this.volumes, env));
    } catch (err) {
      return this.failStart(run, { reason: 'CreateContainerConfigError', message: errorMessage(err) });
    }
    try {
      await rt.ensureImage(c.image ?? '', pullPolicyOf(c));
      run.pullFailures = 0;
    } catch (err) {
      if (err instanceof RuntimeError) {
        run.pullFailures++;
        return this.failStart(run, { reason: err.reason, message: err.message });
      }
      throw err;
    }
    if (this.terminating) return;
    const attempt = run.attempt + 1;
    const logDir = join(this.logDir, c.name);
    mkdirSync(logDir, { recursive: true, mode: 0o700 });
    const limits = c.resources?.limits ?? {};
    const resources: { cpuMillis?: number; memoryBytes?: number } = {};
    try {
      if (limits.cpu !== undefined) resources.cpuMillis = cpuMillis(String(limits.cpu));
      if (limits.memory !== undefined) resources.memoryBytes = quantityBytes(String(limits.memory));
    } catch (err) {
      return this.failStart(run, { reason: 'CreateContainerConfigError', message: `resources.limits of container ${c.name}: ${errorMessage(err)}` });
    }
    const previous = run.id;
    let id: string;
    try {
      id = await rt.createContainer(sandbox.id, {
        name: c.name,
        image: c.image ?? '',
        ...(c.command ? { command: expandCommand(c.command, env) } : {}),
        ...(c.args ? { args: expandCommand(c.args, env) } : {}),
        env,
        ...(c.workingDir ? { workingDir: c.workingDir } : {}),
        mounts,
        resources,
        ...(c.stdin ? { stdin: true } : {}),
        ...(c.stdinOnce ? { stdinOnce: true } : {}),
        ...(c.tty ? { tty: true } : {}),
        attempt,
        logPath: join(logDir, `${attempt}.log`),
        logMaxBytes: this.deps.settings.containerLogMaxBytes,
        labels: { 'io.kubernetes.pod.uid': this.uid, 'io.kubernetes.container.name': c.name },
      });
    } catch (err) {
      if (err instanceof RuntimeError) return this.failStart(run, { reason: err.reason, message: err.message });
      throw err;
    }
    if (this.terminating) {
      await rt.removeContainer(id).catch(() => {});
      return;
    }
    run.id = id;
    run.attempt = attempt;
    run.hash = specHash(c);
    run.exitSeen = false;
    run.status = undefined;
    try {
      await rt.startContainer(id);
    } catch (err) {
      run.exitSeen = true;
      await rt.removeContainer(id).catch(() => {});
      run.id = previous;
      if (err instanceof RuntimeError) return this.failStart(run, { reason: err.reason, message: err.message });
      throw err;
    }
    run.everRan = true;
    run.waiting = undefined;
    run.ready = false;
    run.started = false;
    run.status = await rt.containerStatus(id);
    // The previous run's container is of no more use: its exit is kept in lastState, its log file stays (kubectl logs --previous).
    if (previous) await rt.removeContainer(previous).catch(() => {});
    this.pruneLogs(logDir, attempt);
    if (run.status?.state === 'exited' && !run.exitSeen) this.onExit(run);
    else {
      this.ensureProbers(run, rt);
      await this.postStart(run, rt);
    }
  }

  /** Keeps the current and the previous run's log files. */
  private pruneLogs(dir: string, attempt: number): void {
    try {
      for (const f of readdirSync(dir)) {
        const n = Number.parseInt(f, 10);
        if (Number.isFinite(n) && n < attempt - 1) rmSync(join(dir, f), { force: true });
      }
    } catch {
      // the directory is Edged's own; a failure here only leaves an old log behind
    }
  }

  private namedPorts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const c of this.pod.spec?.containers ?? []) for (const p of c.ports ?? []) if (p.name) out[p.name] = p.containerPort;
    return out;
  }

  private ensureProbers(run: ContainerRun, rt: ContainerRuntime): void {
    // Not while a kill is under way (killReason is cleared by its exit).
    if (run.probers.length > 0 || !run.id || run.killReason) return;
    const c = run.spec;
    const id = run.id;
    const host = this.sandbox?.ip ?? '127.0.0.1';
    const exec = (command: string[], timeoutMs: number) => rt.exec(id, command, { timeoutMs });
    const startup = c.startupProbe;
    run.started = !startup;
    run.ready = !c.readinessProbe && run.started;
    const make = (probe: V1Probe, kind: 'liveness' | 'readiness' | 'startup', onResult: (ok: boolean, message: string) => void) => {
      const p = new Prober({ probe, kind, exec, host, namedPorts: this.namedPorts(), onResult: (r: 'success' | 'failure', m: string) => onResult(r === 'success', m) });
      run.probers.push(p);
      return p;
    };
    const liveAndReady = () => {
      if (c.livenessProbe)
        make(c.livenessProbe, 'liveness', (ok, message) => {
          if (ok || run.id !== id) return;
          this.deps.log.info(`pod ${this.key}: container ${c.name} failed its liveness probe (${message}); restarting it`);
          this.kill(run, `it failed its liveness probe: ${message}`);
        }).start();
      if (c.readinessProbe)
        make(c.readinessProbe, 'readiness', (ok) => {
          if (run.id !== id || run.ready === ok) return;
          run.ready = ok;
          this.deps.onStatus();
        }).start();
    };
    if (startup) {
      make(startup, 'startup', (ok, message) => {
        if (run.id !== id) return;
        if (ok) {
          if (run.started) return;
          run.started = true;
          run.ready = !c.readinessProbe;
          liveAndReady();
          this.deps.onStatus();
        } else {
          this.kill(run, `it failed its startup probe: ${message}`);
        }
      }).start();
    } else liveAndReady();
  }

  /** Stops a run a probe failed (outside a sync); a stop that fails is logged and the probes start again. */
  private kill(run: ContainerRun, reason: string): void {
    run.killReason = reason;
    void this.stopRun(run, this.graceSeconds())
      .catch((err: unknown) => {
        run.killReason = undefined;
        this.deps.log.warn(`pod ${this.key}: cannot stop container ${run.spec.name}: ${errorMessage(err)}`, { code: ErrorCode.Runtime });
      })
      .finally(() => this.kick());
  }

  private async postStart(run: ContainerRun, rt: ContainerRuntime): Promise<void> {
    const h = run.spec.lifecycle?.postStart;
    if (!h || !run.id) return;
    const err = await this.runHook(h, run.id, rt, this.graceSeconds());
    if (err) {
      this.deps.log.warn(`pod ${this.key}: postStart hook of ${run.spec.name} failed: ${err}; killing the container`);
      run.killReason = `its postStart hook failed: ${err}`;
      await this.stopRun(run, 0);
    }
  }

  /** Runs a lifecycle hook; undefined on success, else why it failed. Bounded by `seconds`. */
  private async runHook(h: V1LifecycleHandler, id: string, rt: ContainerRuntime, seconds: number): Promise<string | undefined> {
    const timeoutMs = Math.max(1, seconds * 1000);
    try {
      if (h.exec?.command) {
        const r = await rt.exec(id, h.exec.command, { timeoutMs });
        if (r.timedOut) return 'timed out';
        return r.exitCode === 0 ? undefined : `exit code ${r.exitCode}: ${(r.stderr || r.stdout).trim().slice(0, 200)}`;
      }
      if (h.httpGet) {
        const port = typeof h.httpGet.port === 'number' ? h.httpGet.port : (this.namedPorts()[String(h.httpGet.port)] ?? Number(h.httpGet.port));
        const host = h.httpGet.host ?? this.sandbox?.ip ?? '127.0.0.1';
        const status = await new Promise<number>((resolve, reject) => {
          const req = http.get({ host, port, path: h.httpGet!.path ?? '/', timeout: timeoutMs }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.on('timeout', () => req.destroy(new Error('timed out')));
          req.on('error', reject);
        });
        return status >= 200 && status < 400 ? undefined : `HTTP ${status}`;
      }
      const sleep = (h as { sleep?: { seconds?: number } }).sleep;
      if (sleep?.seconds) {
        await new Promise((r) => setTimeout(r, Math.min(timeoutMs, sleep.seconds! * 1000)));
        return undefined;
      }
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  }

  /** preStop, then SIGTERM, SIGKILL after what is left of `graceSeconds`. */
  private async stopRun(run: ContainerRun, graceSeconds: number): Promise<void> {
    const rt = this.deps.runtime;
    const id = run.id;
    if (!rt || !id) return;
    for (const p of run.probers) p.stop();
    run.probers = [];
    const started = this.now();
    const pre = run.spec.lifecycle?.preStop;
    if (pre && graceSeconds > 0 && run.status?.state === 'running') {
      const err = await this.runHook(pre, id, rt, graceSeconds);
      if (err) this.deps.log.warn(`pod ${this.key}: preStop hook of ${run.spec.name} failed: ${err}`);
    }
    const left = Math.max(0, graceSeconds - (this.now() - started) / 1000);
    await rt.stopContainer(id, graceSeconds > 0 ? Math.max(left, 0.001) : 0);
  }

  private async stopContainers(graceSeconds: number): Promise<void> {
    await Promise.all([...this.runs.values()].filter((r) => r.id && r.status?.state !== 'exited').map((r) => this.stopRun(r, graceSeconds)));
  }

  /**
   * Stops the pod (preStop, SIGTERM, SIGKILL after the grace) and removes what it left: sandbox,
   * volumes, logs. Resolves when done; idempotent.
   */
  terminate(graceSeconds = this.graceSeconds(), options: { keepLogs?: boolean } = {}): Promise<void> {
    this.terminating ??= (async () => {
      await this.inflight;
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      const rt = this.deps.runtime;
      try {
        await this.stopContainers(graceSeconds);
        if (rt && this.sandbox) {
          await rt.stopPodSandbox(this.sandbox.id);
          await rt.removePodSandbox(this.sandbox.id);
        }
      } catch (err) {
        this.deps.log.warn(`pod ${this.key}: stopping failed: ${errorMessage(err)}`, { code: ErrorCode.Runtime });
      } finally {
        this.stopped = true;
        await removeVolumes(this.podDir).catch(() => {});
        rmSync(this.podDir, { recursive: true, force: true });
        if (!options.keepLogs) rmSync(this.logDir, { recursive: true, force: true });
      }
    })();
    return this.terminating;
  }

  /** Stops timers and probes, leaves the containers as they are (EdgeCore's shutdown). */
  detach(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const r of this.runs.values()) for (const p of r.probers) p.stop();
  }

  /** Stops the containers of a process-runtime pod on EdgeCore's shutdown (they cannot outlive it usefully). */
  async shutdown(graceSeconds: number): Promise<void> {
    this.detach();
    await this.stopContainers(Math.min(graceSeconds, this.graceSeconds())).catch(() => {});
  }

  /** The log file of a container's current (or previous) run. */
  logPath(container: string, previous = false): string | undefined {
    const run = this.runs.get(container);
    if (!run || run.attempt < 0) return undefined;
    const attempt = previous ? run.attempt - 1 : run.attempt;
    if (attempt < 0) return undefined;
    return join(this.logDir, container, `${attempt}.log`);
  }

  /** The runtime id of a container's current run (exec, attach). */
  containerId(container: string): string | undefined {
    return this.runs.get(container)?.id;
  }

  /** The runtime the pod runs on (undefined: its runtimeClassName names none this node offers). */
  get runtime(): ContainerRuntime | undefined {
    return this.deps.runtime;
  }

  /** The names of the pod's containers (init containers first), as the spec has them. */
  containerNames(): { init: string[]; main: string[] } {
    return { init: this.initRuns().map((r) => r.spec.name), main: this.mainRuns().map((r) => r.spec.name) };
  }

  /** Whether a container's current run is running (logs -f follows it until it is not). */
  isRunning(container: string): boolean {
    return this.runs.get(container)?.status?.state === 'running';
  }

  /** The pod's status, as a kubelet reports it. */
  status(): V1PodStatus {
    const hostIP = this.deps.hostIP();
    const podIP = this.sandbox?.ip ?? hostIP;
    const initStatuses = this.initRuns().map((r) => this.containerStatus(r));
    const statuses = this.mainRuns().map((r) => this.containerStatus(r));
    const inits = this.initRuns();
    const mains = this.mainRuns();
    const initialized = inits.every((r) => r.done);
    const allReady = mains.length > 0 && mains.every((r) => r.status?.state === 'running' && r.ready);
    let phase: V1PodStatus['phase'] = 'Pending';
    let reason: string | undefined;
    let message: string | undefined;
    if (!this.deps.runtime) {
      reason = 'UnknownRuntimeClass';
      message = this.deps.runtimeError;
    } else if (this.podFailedReason) {
      phase = 'Failed';
      message = this.podFailedReason.message;
    } else if (initialized && mains.length > 0) {
      const terminal = (r: ContainerRun) =>
        r.status?.state === 'exited' && !(this.restartPolicy === 'Always' || (this.restartPolicy === 'OnFailure' && (r.status.exitCode ?? 0) !== 0));
      if (mains.every(terminal)) phase = mains.every((r) => r.status?.exitCode === 0) ? 'Succeeded' : 'Failed';
      else if (mains.every((r) => r.everRan)) phase = 'Running';
    }
    const conditions: V1PodCondition[] = [
      this.condition('PodReadyToStartContainers', this.sandbox?.state === 'ready', this.sandboxError?.message ?? message),
      this.condition(
        'Initialized',
        initialized,
        initialized
          ? undefined
          : `containers with incomplete status: [${inits
              .filter((r) => !r.done)
              .map((r) => r.spec.name)
              .join(' ')}]`,
        initialized ? undefined : 'ContainersNotInitialized',
      ),
      this.condition(
        'Ready',
        allReady && phase === 'Running',
        allReady ? undefined : this.notReadyMessage(mains),
        allReady ? undefined : phase === 'Succeeded' || phase === 'Failed' ? 'PodCompleted' : 'ContainersNotReady',
      ),
      this.condition(
        'ContainersReady',
        allReady,
        allReady ? undefined : this.notReadyMessage(mains),
        allReady ? undefined : phase === 'Succeeded' || phase === 'Failed' ? 'PodCompleted' : 'ContainersNotReady',
      ),
      this.condition('PodScheduled', true),
    ];
    const status: V1PodStatus = {
      phase,
      conditions,
      hostIP,
      hostIPs: [{ ip: hostIP }],
      podIP,
      podIPs: [{ ip: podIP }],
      startTime: new Date(this.startTime),
      qosClass: qosClass(this.pod),
      containerStatuses: statuses,
    };
    if (initStatuses.length > 0) status.initContainerStatuses = initStatuses;
    if (reason) status.reason = reason;
    if (message) status.message = message;
    return status;
  }

  private notReadyMessage(mains: ContainerRun[]): string {
    return `containers with unready status: [${mains
      .filter((r) => !(r.status?.state === 'running' && r.ready))
      .map((r) => r.spec.name)
      .join(' ')}]`;
  }

  private condition(type: string, ok: boolean, message?: string, reason?: string): V1PodCondition {
    const status = ok ? 'True' : 'False';
    let t = this.transitions.get(type);
    if (!t || t.status !== status) {
      t = { status, at: iso(this.now()) };
      this.transitions.set(type, t);
    }
    const c: V1PodCondition = { type, status, lastTransitionTime: new Date(t.at) };
    if (!ok && reason) c.reason = reason;
    if (!ok && message) c.message = message;
    return c;
  }

  private containerStatus(r: ContainerRun): V1ContainerStatus {
    const st = r.status;
    let state: V1ContainerState;
    if (!this.deps.runtime) state = { waiting: { reason: 'CreatePodSandboxError', message: this.deps.runtimeError ?? '' } };
    else if (this.sandboxError && !r.everRan) state = { waiting: { ...this.sandboxError } };
    else if (r.waiting && st?.state !== 'running') state = { waiting: { ...r.waiting } };
    else if (st?.state === 'running') state = { running: { startedAt: new Date(st.startedAt ?? iso(this.now())) } };
    // The exit as recorded (its message says why Edged stopped it, a probe or a spec change) once seen.
    else if (st?.state === 'exited')
      state = { terminated: r.exitSeen && r.lastTerminated?.containerID === st.containerID ? toK8sTerminated(r.lastTerminated) : this.terminatedState(st) };
    else state = { waiting: { reason: r.init ? 'PodInitializing' : 'ContainerCreating' } };
    const out: V1ContainerStatus = {
      name: r.spec.name,
      image: r.spec.image ?? '',
      imageID: st?.imageID ?? '',
      ready: st?.state === 'running' && r.ready,
      started: st?.state === 'running' && r.started,
      restartCount: Math.max(0, r.attempt),
      state,
      lastState: {},
    };
    if (st?.containerID) out.containerID = st.containerID;
    // lastState is the run before the current one; the current run's own termination is `state`.
    const last = st?.state === 'exited' && r.exitSeen && r.lastTerminated?.containerID === st.containerID ? this.previousTermination(r) : r.lastTerminated;
    if (last && !(st?.state === 'exited' && last.containerID === st.containerID && !r.waiting)) out.lastState = { terminated: toK8sTerminated(last) };
    return out;
  }

  private previousTermination(r: ContainerRun): Terminated | undefined {
    // When the current run is terminated and shown in `state`, lastState shows it too only while waiting to restart (kubelet's view).
    return r.waiting ? r.lastTerminated : undefined;
  }

  private terminatedState(st: RuntimeContainerStatus) {
    const t: Terminated = {
      exitCode: st.exitCode ?? 0,
      reason: st.reason ?? (st.exitCode === 0 ? 'Completed' : 'Error'),
      finishedAt: st.finishedAt ?? iso(this.now()),
      containerID: st.containerID,
    };
    if (st.startedAt) t.startedAt = st.startedAt;
    if (st.message) t.message = st.message;
    return toK8sTerminated(t);
  }
}

function toK8sTerminated(t: Terminated) {
  const out: { exitCode: number; reason: string; finishedAt: Date; startedAt?: Date; message?: string; containerID?: string; signal?: number } = {
    exitCode: t.exitCode,
    reason: t.reason,
    finishedAt: new Date(t.finishedAt),
  };
  if (t.startedAt) out.startedAt = new Date(t.startedAt);
  if (t.message) out.message = t.message;
  if (t.containerID) out.containerID = t.containerID;
  if (t.signal !== undefined) out.signal = t.signal;
  return out;
}

function formatDelay(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s >= 60) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${s}s`;
}
