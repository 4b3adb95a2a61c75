/**
 * @module
 * Node status reporter: sends the node's identity, capacity and conditions upstream on
 * start and then periodically, through EdgeHub's outbox (so reports made while offline
 * arrive, in order, once the link is back). The report follows Kubernetes' NodeStatus
 * as a kubelet fills it (EdgeController writes it to the Node):
 * - capacity and allocatable: cpu, memory, pods (`maxPods`), ephemeral-storage (statfs of
 *   the data directory); allocatable is capacity minus the hard eviction thresholds, as a
 *   kubelet computes it without reservations;
 * - nodeInfo: osImage (/etc/os-release PRETTY_NAME), kernel, OS, GOARCH architecture, the
 *   container runtime's version and the kubelet version (options), bootID, machineID, systemUUID;
 * - conditions: Ready (from health checks), MemoryPressure, DiskPressure and PIDPressure from
 *   kubelet's hard eviction signals with configurable thresholds and kubelet's reasons and
 *   messages (a pressure stays True for `pressureTransitionPeriodMs` after its signal recovered,
 *   like kubelet's evictionPressureTransitionPeriod), then any extra conditions (`conditions`);
 * - images: the container runtime's (an option), the 50 largest with at most 5 names each
 *   (kubelet's nodeStatusMaxImages and maxNamesPerImageInNodeStatus).
 * The host is read through ./host.ts (small /proc files and one statfs per report).
 *
 * Readiness comes from health checks (the metadata store's, for now): while one reports a
 * problem the node is Ready=False with that problem's reason and message, and a change of
 * health is reported at once rather than at the next interval. When the outbox itself
 * cannot store the report (the disk is full for it too), the report is sent best-effort,
 * so the cloud still hears that this node is not ready.
 */
import { randomUUID } from 'node:crypto';
import { Group, ModuleName, Operation, ResourceType, buildResource, newMessage, type ErrorContent } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import { ErrorCode, errorCode, errorMessage, hasCode } from '../../shared/errors/index.js';
import { silentLogger, type Logger } from '../../shared/log/index.js';
import { sleep } from '../../shared/runtime/index.js';
import { defaultNodeStatusOptions } from './options.js';
import { kib, pressures, pressureTexts, readStaticInfo, sampleHost, systemHost, type HostReader, type PressureThresholds, type PressureType, type StaticHostInfo } from './host.js';

export { systemHost, goArch, prettyName, readStaticInfo, sampleHost, pressures } from './host.js';
export type { HostReader, FsStats, HostSample, PressureThresholds, StaticHostInfo } from './host.js';

/** A problem that makes the node not ready: the condition's reason (CamelCase) and message. */
export interface NodeProblem {
  reason: string;
  message: string;
}

/** Returns undefined while healthy. */
export type HealthCheck = () => NodeProblem | undefined;

/** A node condition as the edge reports it (EdgeController adds the heartbeat and transition times). */
export interface ReportedCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/** An image the container runtime holds (edged's ImageInfo has this shape). */
export interface ImageSummary {
  names: string[];
  sizeBytes: number;
}

/** Reporter options; defaults in `defaultNodeStatusOptions` (./options.ts). */
export interface NodeStatusOptions extends Partial<PressureThresholds> {
  nodeName: string;
  /** Report interval in ms. Default 10000 (KubeEdge's nodeStatusUpdateFrequency). */
  intervalMs?: number;
  /** Checks whose problems make the node NotReady. */
  checks?: HealthCheck[];
  /** How often the checks are polled for a change between reports, in ms. Default 1000. */
  healthPollMs?: number;
  /** Directory whose filesystem is the node's ephemeral storage (capacity, DiskPressure). Without it neither is reported. */
  dataDir?: string;
  /** capacity/allocatable `pods`. Default 110 (kubelet's maxPods). */
  maxPods?: number;
  /** nodeInfo.kubeletVersion. Default `v1.35.0-ledge`. */
  kubeletVersion?: string;
  /** nodeInfo.containerRuntimeVersion, e.g. `process://ledge` or `docker://4.3.1` (Edged gives its runtime's). May throw: the last answer is kept. */
  runtimeVersion?: () => string | Promise<string>;
  /** The images the container runtime holds. May throw: the last answer is kept. */
  images?: () => ImageSummary[] | Promise<ImageSummary[]>;
  /** The two callbacks above are called at most this often, ms. Default 60000. */
  runtimeInfoRefreshMs?: number;
  /** A pressure condition stays True this long after its signal recovered, ms. Default 300000. */
  pressureTransitionPeriodMs?: number;
  /** Extra conditions reported after the kubelet ones (e.g. MetaManager's EdgeStoreFull). */
  conditions?: (() => ReportedCondition | undefined)[];
  /** The host read (test seam). Default {@link systemHost}. */
  host?: HostReader;
  /** Clock, ms since the epoch (test seam). Default Date.now. */
  now?: () => number;
}

export interface NodeStatusReport {
  /** Increments per report within one process start. */
  seq: number;
  /** Identifies the process start (a new one after each restart; nodeInfo.bootID is the machine's boot). */
  bootId: string;
  nodeInfo: {
    operatingSystem: string;
    /** GOARCH (`amd64`, `arm64`, …). */
    architecture: string;
    kernelVersion: string;
    osImage: string;
    containerRuntimeVersion: string;
    kubeletVersion: string;
    bootID: string;
    machineID: string;
    systemUUID: string;
    hostname: string;
    /** = containerRuntimeVersion: what CloudCores before the full report read. */
    runtime: string;
  };
  capacity: Record<string, string>;
  allocatable: Record<string, string>;
  addresses: { type: string; address: string }[];
  /** Ready first, then the pressure conditions, then the extra ones. */
  conditions: (ReportedCondition & { lastHeartbeatTime: string })[];
  images: ImageSummary[];
}

/** Most images in a report, and names per image (kubelet's nodeStatusMaxImages, maxNamesPerImageInNodeStatus). */
export const MAX_IMAGES = 50;
export const MAX_NAMES_PER_IMAGE = 5;
/** How long a runtime callback may take before its last answer is used instead, ms. */
const RUNTIME_CALLBACK_TIMEOUT_MS = 5_000;

/** The first problem any check reports, or undefined. */
function firstProblem(checks: HealthCheck[]): NodeProblem | undefined {
  for (const c of checks) {
    const p = c();
    if (p) return p;
  }
  return undefined;
}

/** `p`, or a rejection after `ms` (the callback keeps running; its answer is just not waited for). */
function withTimeout<T>(p: T | Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    Promise.resolve(p),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
      timer.unref?.();
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The 50 largest images, 5 names each at most. */
export function capImages(images: ImageSummary[]): ImageSummary[] {
  return [...images]
    .sort((a, b) => b.sizeBytes - a.sizeBytes)
    .slice(0, MAX_IMAGES)
    .map((i) => ({ names: i.names.slice(0, MAX_NAMES_PER_IMAGE), sizeBytes: i.sizeBytes }));
}

/**
 * Builds reports: identity read once, the pressure signals sampled per report, the runtime
 * callbacks asked at most every `runtimeInfoRefreshMs`.
 */
export class NodeStatusCollector {
  private readonly host: HostReader;
  private readonly now: () => number;
  private readonly thresholds: PressureThresholds;
  private info: StaticHostInfo | undefined;
  /** When each pressure signal was last seen over its threshold, and the status last reported. */
  private readonly pressure = new Map<PressureType, { lastSeen?: number; status: boolean }>();
  private runtime = { version: '', images: [] as ImageSummary[], at: Number.NEGATIVE_INFINITY };
  /** Callbacks whose failure was logged (logged again only after they answered once). */
  private readonly failing = new Set<string>();

  constructor(
    private readonly options: NodeStatusOptions,
    private readonly log: Logger = silentLogger,
  ) {
    const d = defaultNodeStatusOptions;
    this.host = options.host ?? systemHost;
    this.now = options.now ?? Date.now;
    this.thresholds = {
      memoryAvailableMinBytes: options.memoryAvailableMinBytes ?? d.memoryAvailableMinBytes,
      nodefsAvailableMinPercent: options.nodefsAvailableMinPercent ?? d.nodefsAvailableMinPercent,
      nodefsInodesFreeMinPercent: options.nodefsInodesFreeMinPercent ?? d.nodefsInodesFreeMinPercent,
      pidAvailableMinPercent: options.pidAvailableMinPercent ?? d.pidAvailableMinPercent,
    };
  }

  async collect(seq: number, bootId: string, problem?: NodeProblem): Promise<NodeStatusReport> {
    const o = this.options;
    const d = defaultNodeStatusOptions;
    const info = (this.info ??= readStaticInfo(this.host));
    await this.refreshRuntime();
    const now = this.now();
    const sample = sampleHost(this.host, o.dataDir);
    const hostname = this.host.hostname();
    const addresses = [{ type: 'Hostname', address: hostname }];
    for (const list of Object.values(this.host.networkInterfaces())) {
      for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') addresses.push({ type: 'InternalIP', address: a.address });
    }
    const pods = String(o.maxPods ?? d.maxPods);
    const capacity: Record<string, string> = { cpu: String(info.cpu), memory: kib(info.memoryBytes), pods };
    // Allocatable = capacity − the hard eviction threshold (kubelet, with no kube/system reservations).
    const allocatable: Record<string, string> = { cpu: String(info.cpu), memory: kib(info.memoryBytes - this.thresholds.memoryAvailableMinBytes), pods };
    if (sample.fs) {
      capacity['ephemeral-storage'] = kib(sample.fs.capacityBytes);
      allocatable['ephemeral-storage'] = kib(sample.fs.capacityBytes * (1 - this.thresholds.nodefsAvailableMinPercent / 100));
    }
    const heartbeat = new Date(now).toISOString();
    const conditions: NodeStatusReport['conditions'] = [
      problem
        ? { type: 'Ready', status: 'False', reason: problem.reason, message: problem.message, lastHeartbeatTime: heartbeat }
        : { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status', lastHeartbeatTime: heartbeat },
    ];
    const seen = pressures(sample, this.thresholds);
    const period = o.pressureTransitionPeriodMs ?? d.pressureTransitionPeriodMs;
    for (const type of ['MemoryPressure', 'DiskPressure', 'PIDPressure'] as const) {
      const st = this.pressure.get(type) ?? { status: false };
      const why = seen.get(type);
      if (why !== undefined) st.lastSeen = now;
      const status = why !== undefined || (st.lastSeen !== undefined && now - st.lastSeen < period);
      if (status !== st.status) {
        if (status) this.log.warn(`node reports ${type}: ${why ?? 'signal over its threshold'}`, { condition: type });
        else this.log.info(`node no longer reports ${type} (its signal stayed below the threshold for ${period} ms)`, { condition: type });
      }
      st.status = status;
      this.pressure.set(type, st);
      const [reason, message] = status ? pressureTexts[type].pressure : pressureTexts[type].ok;
      conditions.push({ type, status: status ? 'True' : 'False', reason, message, lastHeartbeatTime: heartbeat });
    }
    for (const c of o.conditions ?? []) {
      try {
        const r = c();
        if (r) conditions.push({ type: r.type, status: r.status, reason: r.reason, message: r.message, lastHeartbeatTime: heartbeat });
      } catch (err) {
        this.log.debug(`a node condition could not be computed: ${errorMessage(err)}`);
      }
    }
    const runtime = this.runtime.version;
    return {
      seq,
      bootId,
      nodeInfo: {
        operatingSystem: info.operatingSystem,
        architecture: info.architecture,
        kernelVersion: info.kernelVersion,
        osImage: info.osImage,
        containerRuntimeVersion: runtime,
        kubeletVersion: o.kubeletVersion ?? d.kubeletVersion,
        bootID: info.bootID,
        machineID: info.machineID,
        systemUUID: info.systemUUID,
        hostname,
        runtime,
      },
      capacity,
      allocatable,
      addresses,
      conditions,
      images: this.runtime.images,
    };
  }

  /** Asks the runtime callbacks again once `runtimeInfoRefreshMs` passed; a failure keeps the last answers (one log line per failure streak). */
  private async refreshRuntime(): Promise<void> {
    const o = this.options;
    const now = this.now();
    if (now - this.runtime.at < (o.runtimeInfoRefreshMs ?? defaultNodeStatusOptions.runtimeInfoRefreshMs)) return;
    this.runtime.at = now;
    const ask = async <T>(what: string, cb: (() => T | Promise<T>) | undefined, apply: (v: T) => void): Promise<void> => {
      if (!cb) return;
      try {
        apply(await withTimeout(cb(), RUNTIME_CALLBACK_TIMEOUT_MS, what));
        this.failing.delete(what);
      } catch (err) {
        if (!this.failing.has(what)) this.log.warn(`node status: ${what} unavailable, reporting the last known: ${errorMessage(err)}`, { code: errorCode(err) });
        this.failing.add(what);
      }
    };
    await ask('container runtime version', o.runtimeVersion, (v) => (this.runtime.version = String(v)));
    await ask('container runtime images', o.images, (v) => (this.runtime.images = capImages(Array.isArray(v) ? v : [])));
  }
}

export function createNodeStatusReporter(options: NodeStatusOptions): Module {
  const bootId = randomUUID();
  const checks = options.checks ?? [];
  const intervalMs = options.intervalMs ?? defaultNodeStatusOptions.intervalMs;
  const pollMs = Math.max(10, Math.min(options.healthPollMs ?? defaultNodeStatusOptions.healthPollMs, intervalMs));
  let seq = 0;
  return {
    name: 'nodestatus',
    group: Group.Resource,
    async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
      const resource = buildResource('default', ResourceType.NodeStatus, options.nodeName);
      const collector = new NodeStatusCollector(options, ctx.log);
      const report = async (problem: NodeProblem | undefined) => {
        let content: NodeStatusReport;
        try {
          content = await collector.collect(++seq, bootId, problem);
        } catch (err) {
          ctx.log.error(`node status not collected: ${errorMessage(err)}`, { code: errorCode(err) });
          return;
        }
        const msg = newMessage({ source: ModuleName.Edged, group: Group.Resource, operation: Operation.Update, resource, content, sync: true });
        try {
          // Resolves once the report is durable in EdgeHub's outbox.
          const resp = await ctx.sendSync(ModuleName.EdgeHub, msg, 30_000);
          const err = resp.content as ErrorContent | null;
          if (!err) return;
          ctx.log.warn(`node status not queued: ${err.message}`, { code: err.code });
          if (hasCode(err, ErrorCode.Storage)) {
            // The outbox cannot store it either: send this report best-effort (if connected).
            await ctx.send(ModuleName.EdgeHub, newMessage({ source: ModuleName.Edged, group: Group.Resource, operation: Operation.Update, resource, content, sync: false }));
          }
        } catch (err) {
          if (!signal.aborted) ctx.log.warn(`node status not queued: ${errorMessage(err)}`, { code: errorCode(err) });
        }
      };
      // Health (the checks) and the extra conditions are polled: a change is reported at once.
      const extraKey = () =>
        (options.conditions ?? [])
          .map((c) => {
            try {
              const r = c();
              return r ? `${r.type}=${r.status}` : '';
            } catch {
              return '';
            }
          })
          .join(',');
      const key = (p: NodeProblem | undefined) => `${p ? `${p.reason}\n${p.message}` : ''}\n${extraKey()}`;
      let problem = firstProblem(checks);
      let last = key(problem);
      await report(problem);
      while (!signal.aborted) {
        // Wait for the interval, or less if health changes meanwhile.
        const due = Date.now() + intervalMs;
        let now = firstProblem(checks);
        let nowKey = key(now);
        while (!signal.aborted && Date.now() < due && nowKey === last) {
          await sleep(Math.min(pollMs, due - Date.now()), signal);
          now = firstProblem(checks);
          nowKey = key(now);
        }
        if (signal.aborted) return;
        if ((now?.reason ?? '') !== (problem?.reason ?? '') || (now?.message ?? '') !== (problem?.message ?? '')) {
          if (now) ctx.log.warn(`node reported NotReady: ${now.message}`, { reason: now.reason });
          else ctx.log.info('node reported Ready again');
        }
        problem = now;
        last = nowKey;
        await report(problem);
      }
    },
  };
}
