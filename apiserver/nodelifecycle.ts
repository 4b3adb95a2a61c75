/**
 * @module
 * The node lifecycle of kube-controller-manager (pkg/controller/nodelifecycle, Kubernetes 1.35),
 * and the assembly of the node controllers (this one, taint eviction ./tainteviction.ts, pod
 * GC ./podgc.ts) on one clock and one timer queue. Facts carried over, not code:
 *
 * - Health: every `nodeMonitorPeriodMs` (5 s) each node's Ready condition heartbeat and its Lease
 *   (`kube-node-lease/<node>`, renewTime) are compared with what was seen last; a change sets the
 *   node's probe time to *now on the controller's monotonic clock* (client clocks are never
 *   compared with ours). No change for `nodeMonitorGracePeriodMs` (50 s; a node that never posted
 *   Ready: `nodeStartupGracePeriodMs`, 60 s) → Ready, MemoryPressure, DiskPressure and PIDPressure
 *   become Unknown (reason NodeStatusUnknown, "Kubelet stopped posting node status."; a missing
 *   one NodeStatusNeverUpdated), and the pods' Ready conditions False.
 * - NoSchedule taints follow the conditions on every node change (Ready False → not-ready,
 *   Unknown → unreachable, *Pressure True → …-pressure, NetworkUnavailable, spec.unschedulable).
 * - NoExecute taints (not-ready / unreachable, mutually exclusive) are added through one
 *   rate-limited queue per zone (token bucket `nodeEvictionRate`, burst 1), one monitor pass after
 *   the node went NotReady, and removed once it is Ready again. Zones (topology labels) whose
 *   nodes are mostly NotReady slow down or stop tainting; when *every* node is NotReady the
 *   controller enters "master disruption mode": it removes the NoExecute taints and taints none
 *   (the control plane presumes its own network is at fault).
 * The taint-eviction controller then deletes the pods that do not tolerate a NoExecute taint.
 */
import { silentLogger, type Logger } from '../shared/log/index.js';
import { deepEqual, type Rest } from './rest.js';
import type { StoreEvent } from './store.js';
import type { KObject } from './types.js';
import { systemClock, TimerQueue, type Clock } from './timerqueue.js';
import { arr, conditionOf, createContext, keyOf, nodeNameOf, obj, PodIndex, setPodCondition, type ControllerContext, type R } from './controller-context.js';
import {
  sameTaint,
  taintsOf,
  TAINT_DISK_PRESSURE,
  TAINT_MEMORY_PRESSURE,
  TAINT_NETWORK_UNAVAILABLE,
  TAINT_NOT_READY,
  TAINT_PID_PRESSURE,
  TAINT_UNREACHABLE,
  TAINT_UNSCHEDULABLE,
  type Taint,
} from './taints.js';
import { TaintEvictionController } from './tainteviction.js';
import { PodGcController, type PodGcOptions } from './podgc.js';

export interface NodeLifecycleOptions {
  /** How often node health is checked, ms (--node-monitor-period). */
  nodeMonitorPeriodMs: number;
  /** No heartbeat or Lease renewal seen for this long → Ready=Unknown, ms (--node-monitor-grace-period). */
  nodeMonitorGracePeriodMs: number;
  /** The same for a node that never posted a Ready condition, ms (--node-startup-grace-period). */
  nodeStartupGracePeriodMs: number;
  /** Nodes per second tainted NoExecute in a healthy zone (--node-eviction-rate). */
  nodeEvictionRate: number;
  /** Nodes per second in an unhealthy zone of more than largeClusterSizeThreshold nodes (--secondary-node-eviction-rate). */
  secondaryNodeEvictionRate: number;
  /** --large-cluster-size-threshold. */
  largeClusterSizeThreshold: number;
  /** Fraction of NotReady nodes (at least 3) that makes a zone unhealthy (--unhealthy-zone-threshold). */
  unhealthyZoneThreshold: number;
}

type ZoneState = 'Initial' | 'Normal' | 'PartialDisruption' | 'FullDisruption';

/** Kubernetes' NodeEvictionPeriod: how often the NoExecute taint queues are tried, ms. */
const NODE_EVICTION_PERIOD_MS = 100;
const EXCLUDE_DISRUPTION_LABEL = 'node.kubernetes.io/exclude-disruption';
const LEASE_NAMESPACE = 'kube-node-lease';

/** {condition type: {status: taint key}} of the NoSchedule taints that mirror node conditions. */
const CONDITION_TAINTS: Record<string, Record<string, string>> = {
  Ready: { False: TAINT_NOT_READY, Unknown: TAINT_UNREACHABLE },
  MemoryPressure: { True: TAINT_MEMORY_PRESSURE },
  DiskPressure: { True: TAINT_DISK_PRESSURE },
  NetworkUnavailable: { True: TAINT_NETWORK_UNAVAILABLE },
  PIDPressure: { True: TAINT_PID_PRESSURE },
};
const CONDITION_TAINT_KEYS = new Set(Object.values(CONDITION_TAINTS).flatMap((m) => Object.values(m)));
const NOT_READY_NO_EXECUTE: Taint = { key: TAINT_NOT_READY, effect: 'NoExecute' };
const UNREACHABLE_NO_EXECUTE: Taint = { key: TAINT_UNREACHABLE, effect: 'NoExecute' };

/** Kubernetes' topology GetZoneKey: region and zone labels (beta names first), '' when neither is set. */
export function zoneKey(node: KObject): string {
  const l = node.metadata.labels ?? {};
  const zone = l['failure-domain.beta.kubernetes.io/zone'] ?? l['topology.kubernetes.io/zone'] ?? '';
  const region = l['failure-domain.beta.kubernetes.io/region'] ?? l['topology.kubernetes.io/region'] ?? '';
  return region === '' && zone === '' ? '' : `${region}:\u0000:${zone}`;
}

/** client-go's token bucket (flowcontrol.NewTokenBucketRateLimiter); qps ≤ 0 never accepts. */
class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    readonly qps: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }
  tryAccept(now: number): boolean {
    if (this.qps <= 0) return false;
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** One zone's NoExecute tainter (Kubernetes' RateLimitedTimedQueue over a UniqueQueue). */
interface Tainter {
  limiter: TokenBucket;
  /** Nodes added and not Removed: a node is queued at most once until removed. */
  readonly set: Set<string>;
  /** Nodes still to process, with when. */
  readonly queue: Map<string, number>;
}

interface Health {
  /** When a heartbeat or renewal was last observed (monotonic ms). */
  probe: number;
  readyTransition: number;
  /** The Ready condition as last observed (heartbeat and transition times compared). */
  ready: R | undefined;
  /** The Lease's renewTime last observed, ms. */
  leaseRenew?: number;
}

export class NodeLifecycleController {
  private readonly health = new Map<string, Health>();
  private readonly known = new Set<string>();
  private readonly zoneStates = new Map<string, ZoneState>();
  private readonly tainters = new Map<string, Tainter>();
  private readonly markPodsRetry = new Set<string>();
  private readonly noScheduleQueue = new Set<string>();
  private readonly assignedPods = new Set<string>();
  private flushQueued = false;
  private stopped = false;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly o: NodeLifecycleOptions,
  ) {}

  start(): void {
    for (const e of this.ctx.rest.store.list(this.ctx.types.nodes.storageKey)) this.noScheduleQueue.add(e.obj.metadata.name!);
    this.kick();
    this.ctx.timers.schedule('nodelifecycle/monitor', this.ctx.clock.now(), () => this.monitorPass());
  }

  stop(): void {
    this.stopped = true;
  }

  get busy(): boolean {
    return this.flushQueued;
  }

  onNodeEvent(ev: StoreEvent): void {
    if (ev.type === 'DELETED') return;
    this.noScheduleQueue.add(ev.obj.metadata.name!);
    this.kick();
  }

  onPodEvent(ev: StoreEvent): void {
    // A pod assigned to a node that is not Ready is marked not Ready (processPod).
    if (ev.type === 'DELETED') return;
    const node = nodeNameOf(ev.obj);
    if (node && node !== nodeNameOf(ev.prev)) {
      this.assignedPods.add(keyOf(ev.obj));
      this.kick();
    }
  }

  private kick(): void {
    if (this.flushQueued || this.stopped) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.stopped) return;
    const names = [...this.noScheduleQueue];
    this.noScheduleQueue.clear();
    for (const name of names) this.noScheduleTaintingPass(name);
    const pods = [...this.assignedPods];
    this.assignedPods.clear();
    for (const key of pods) this.processAssignedPod(key);
  }

  // ------------------------------------------------------------------ NoSchedule taints

  private noScheduleTaintingPass(name: string): void {
    const node = this.node(name);
    if (!node) return;
    const want: Taint[] = [];
    for (const c of arr(obj((node as R).status).conditions)) {
      const key = CONDITION_TAINTS[String(c.type)]?.[String(c.status)];
      if (key) want.push({ key, effect: 'NoSchedule' });
    }
    if (obj((node as R).spec).unschedulable === true) want.push({ key: TAINT_UNSCHEDULABLE, effect: 'NoSchedule' });
    const have = taintsOf(node).filter((t) => t.effect === 'NoSchedule' && (t.key === TAINT_UNSCHEDULABLE || CONDITION_TAINT_KEYS.has(t.key)));
    const add = want.filter((w) => !have.some((h) => sameTaint(h, w)));
    const del = have.filter((h) => !want.some((w) => sameTaint(h, w)));
    if (add.length || del.length) void this.swapTaints(name, add, del, 'NoSchedule condition taints');
  }

  /**
   * Kubernetes' SwapNodeControllerTaint: adds `add` (timeAdded now; an equal taint already there
   * is kept as it is) and removes `del`, in one node update. Resolves to whether it succeeded.
   */
  private swapTaints(name: string, add: Taint[], del: Taint[], what: string): Promise<boolean> {
    const cur = this.ctx.rest.store.get(this.ctx.types.nodes.storageKey, '', name);
    if (!cur) return Promise.resolve(false);
    const before = taintsOf(cur.obj);
    let taints = before.filter((t) => !del.some((d) => sameTaint(t, d)));
    const stamp = this.ctx.stamp();
    for (const a of add) {
      const existing = taints.find((t) => sameTaint(t, a));
      if (existing && (existing.value ?? '') === (a.value ?? '')) continue;
      taints = taints.filter((t) => !sameTaint(t, a));
      taints.push({ ...a, timeAdded: stamp });
    }
    if (deepEqual(taints, before)) return Promise.resolve(true);
    const next = JSON.parse(cur.json) as KObject & { spec?: R };
    const spec = (next.spec ??= {});
    if (taints.length) spec.taints = taints as unknown as R[];
    else delete spec.taints;
    return this.ctx.track(this.ctx.rest.update(this.ctx.types.nodes, '', name, next, '', {}), `node ${name}: ${what}`).then((r) => r !== undefined);
  }

  // ------------------------------------------------------------------ health

  private node(name: string): KObject | undefined {
    return this.ctx.rest.store.get(this.ctx.types.nodes.storageKey, '', name)?.obj;
  }

  private async monitorPass(): Promise<void> {
    try {
      await this.monitorNodeHealth();
    } finally {
      if (!this.stopped) this.ctx.timers.schedule('nodelifecycle/monitor', this.ctx.clock.now() + this.o.nodeMonitorPeriodMs, () => this.monitorPass());
    }
  }

  /** One pass of Kubernetes' monitorNodeHealth. Exported for tests through {@link NodeControllers}. */
  async monitorNodeHealth(): Promise<void> {
    const ctx = this.ctx;
    const listed = ctx.rest.store.list(ctx.types.nodes.storageKey).map((e) => e.obj);
    const names = new Set(listed.map((n) => n.metadata.name!));
    const writes: Promise<unknown>[] = [];
    for (const n of listed) {
      const name = n.metadata.name!;
      if (!this.known.has(name)) {
        // A node seen for the first time (also every node after a restart) starts without NoExecute taints.
        this.known.add(name);
        this.ensureZone(zoneKey(n));
        writes.push(this.markNodeAsReachable(name));
      } else this.ensureZone(zoneKey(n));
    }
    for (const name of [...this.known]) {
      if (names.has(name)) continue;
      this.known.delete(name);
      this.health.delete(name);
      this.markPodsRetry.delete(name);
      for (const t of this.tainters.values()) {
        t.set.delete(name);
        t.queue.delete(name);
      }
    }
    const zoneConditions = new Map<string, (R | undefined)[]>();
    for (const name of names) {
      const node = this.node(name);
      if (!node) continue;
      const { observed, current, write } = this.tryUpdateNodeHealth(node);
      if (write) writes.push(write);
      if (!(node.metadata.labels && EXCLUDE_DISRUPTION_LABEL in node.metadata.labels)) {
        const z = zoneKey(node);
        const list = zoneConditions.get(z) ?? [];
        list.push(current);
        zoneConditions.set(z, list);
      }
      if (!current) continue;
      writes.push(this.processTaintBasedEviction(name, observed));
      const retry = this.markPodsRetry.has(name);
      this.markPodsRetry.delete(name);
      if (current.status !== 'True' && observed.status === 'True') {
        ctx.log.info(`node ${name} is NotReady: Ready=${String(current.status)} (${String(current.reason ?? '')})`, { node: name });
        writes.push(this.markPodsNotReady(name));
      } else if (retry && observed.status !== 'True') writes.push(this.markPodsNotReady(name));
    }
    await Promise.all(writes);
    if (this.stopped) return;
    await this.handleDisruption(zoneConditions, [...names]);
  }

  /** Kubernetes' tryUpdateNodeHealth: the Ready condition before and after, and the status write if it changed. */
  private tryUpdateNodeHealth(node: KObject): { observed: R; current: R | undefined; write?: Promise<unknown> } {
    const ctx = this.ctx;
    const name = node.metadata.name!;
    const now = ctx.clock.now();
    let h = this.health.get(name);
    const currentReady = conditionOf(node, 'Ready');
    let observed: R;
    let grace: number;
    if (!currentReady) {
      // Never posted: a stand-in Unknown condition (Kubernetes dates it at creation; we time it from first sight).
      observed = { type: 'Ready', status: 'Unknown', lastHeartbeatTime: node.metadata.creationTimestamp, lastTransitionTime: node.metadata.creationTimestamp };
      grace = this.o.nodeStartupGracePeriodMs;
      if (h) h.ready = undefined;
    } else {
      observed = { ...currentReady };
      grace = this.o.nodeMonitorGracePeriodMs;
    }
    const saved = h?.ready;
    if (!h) h = { probe: now, readyTransition: now, ready: currentReady && { ...currentReady } };
    else if (!saved && currentReady) h = { probe: now, readyTransition: now, ready: { ...currentReady }, ...lease(h) };
    else if (saved && !currentReady) {
      ctx.log.warn(`node ${name}: its Ready condition was removed`, { node: name });
      h = { probe: now, readyTransition: now, ready: undefined, ...lease(h) };
    } else if (saved && currentReady && saved.lastHeartbeatTime !== currentReady.lastHeartbeatTime) {
      const readyTransition = saved.lastTransitionTime !== currentReady.lastTransitionTime ? now : h.readyTransition;
      h = { probe: now, readyTransition, ready: { ...currentReady }, ...lease(h) };
    }
    // A renewed Lease (a later renewTime than last seen) counts as a heartbeat.
    const l = ctx.rest.store.get(ctx.types.leases.storageKey, LEASE_NAMESPACE, name)?.obj;
    const renew = Date.parse(String(obj((l as R | undefined)?.spec).renewTime ?? ''));
    if (l && Number.isFinite(renew) && (h.leaseRenew === undefined || h.leaseRenew < renew)) {
      h.leaseRenew = renew;
      h.probe = now;
    }
    this.health.set(name, h);
    if (!(now > h.probe + grace)) return { observed, current: currentReady };

    const next = structuredClone(node) as KObject & { status?: R };
    const status = (next.status ??= {});
    const conds = arr(status.conditions);
    const stamp = ctx.stamp();
    for (const type of ['Ready', 'MemoryPressure', 'DiskPressure', 'PIDPressure']) {
      const c = conds.find((x) => x.type === type);
      if (!c) {
        conds.push({
          type,
          status: 'Unknown',
          reason: 'NodeStatusNeverUpdated',
          message: 'Kubelet never posted node status.',
          lastHeartbeatTime: node.metadata.creationTimestamp ?? null,
          lastTransitionTime: stamp,
        });
      } else if (c.status !== 'Unknown') {
        c.status = 'Unknown';
        c.reason = 'NodeStatusUnknown';
        c.message = 'Kubelet stopped posting node status.';
        c.lastTransitionTime = stamp;
      }
    }
    status.conditions = conds;
    const after = conds.find((c) => c.type === 'Ready');
    if (deepEqual(after, observed)) return { observed, current: currentReady };
    ctx.log.info(`node ${name}: no heartbeat or Lease renewal for ${Math.round(now - h.probe)} ms (grace ${grace} ms): Ready=Unknown`, { node: name });
    const write = ctx.track(ctx.rest.update(ctx.types.nodes, '', name, next, 'status', {}), `node ${name}: status Unknown`);
    this.health.set(name, { probe: h.probe, readyTransition: now, ready: after && { ...after }, ...lease(h) });
    return { observed, current: after, write };
  }

  private processTaintBasedEviction(name: string, observed: R): Promise<unknown> {
    const node = this.node(name);
    if (!node) return Promise.resolve();
    const taints = taintsOf(node);
    const has = (t: Taint) => taints.some((x) => sameTaint(x, t));
    switch (observed.status) {
      case 'False':
        if (has(UNREACHABLE_NO_EXECUTE)) return this.swapTaints(name, [NOT_READY_NO_EXECUTE], [UNREACHABLE_NO_EXECUTE], 'swap unreachable → not-ready');
        this.markNodeForTainting(node, 'False', has(NOT_READY_NO_EXECUTE));
        return Promise.resolve();
      case 'Unknown':
        if (has(NOT_READY_NO_EXECUTE)) return this.swapTaints(name, [UNREACHABLE_NO_EXECUTE], [NOT_READY_NO_EXECUTE], 'swap not-ready → unreachable');
        this.markNodeForTainting(node, 'Unknown', has(UNREACHABLE_NO_EXECUTE));
        return Promise.resolve();
      case 'True':
        return this.markNodeAsReachable(name);
      default:
        return Promise.resolve();
    }
  }

  private markNodeForTainting(node: KObject, status: 'False' | 'Unknown', alreadyTainted: boolean): void {
    const name = node.metadata.name!;
    const t = this.tainter(zoneKey(node));
    // Not yet tainted: re-queue (a node queued once is not queued again until removed).
    if (!alreadyTainted) {
      t.set.delete(name);
      t.queue.delete(name);
    }
    if (t.set.has(name)) return;
    t.set.add(name);
    t.queue.set(name, this.ctx.clock.now());
    this.ctx.log.debug(`node ${name} is ${status === 'False' ? 'NotReady' : 'unreachable'}: queued for the NoExecute taint`, { node: name });
    if (!this.ctx.timers.has('nodelifecycle/noexecute')) this.ctx.timers.schedule('nodelifecycle/noexecute', this.ctx.clock.now(), () => this.noExecuteTaintingPass());
  }

  private markNodeAsReachable(name: string): Promise<unknown> {
    const node = this.node(name);
    const taints = taintsOf(node);
    const del = [UNREACHABLE_NO_EXECUTE, NOT_READY_NO_EXECUTE].filter((d) => taints.some((t) => sameTaint(t, d)));
    for (const t of this.tainters.values()) {
      t.set.delete(name);
      t.queue.delete(name);
    }
    if (!node || del.length === 0) return Promise.resolve();
    this.ctx.log.info(`node ${name} is Ready again (or newly observed): NoExecute taints removed`, { node: name });
    return this.swapTaints(name, [], del, 'remove NoExecute taints');
  }

  /** Kubernetes' doNoExecuteTaintingPass: each zone's queue, rate-limited, every 100 ms while not empty. */
  private async noExecuteTaintingPass(): Promise<void> {
    const ctx = this.ctx;
    for (const t of this.tainters.values()) {
      const due = [...t.queue].sort((a, b) => a[1] - b[1]);
      for (const [name, at] of due) {
        const now = ctx.clock.now();
        if (!t.limiter.tryAccept(now)) break;
        if (now < at) break;
        if (this.stopped) return;
        const [ok, retryMs] = await this.taintNoExecute(name);
        if (!t.queue.has(name)) continue; // removed meanwhile (Ready again)
        if (ok) t.queue.delete(name);
        else t.queue.set(name, ctx.clock.now() + retryMs);
      }
    }
    if (this.stopped) return;
    if ([...this.tainters.values()].some((t) => t.queue.size > 0)) {
      ctx.timers.schedule('nodelifecycle/noexecute', ctx.clock.now() + NODE_EVICTION_PERIOD_MS, () => this.noExecuteTaintingPass());
    }
  }

  private async taintNoExecute(name: string): Promise<[boolean, number]> {
    const node = this.node(name);
    if (!node) return [true, 0];
    const ready = conditionOf(node, 'Ready');
    if (!ready) return [false, 50];
    let add: Taint;
    let opposite: Taint;
    if (ready.status === 'False') [add, opposite] = [NOT_READY_NO_EXECUTE, UNREACHABLE_NO_EXECUTE];
    else if (ready.status === 'Unknown') [add, opposite] = [UNREACHABLE_NO_EXECUTE, NOT_READY_NO_EXECUTE];
    else return [true, 0];
    const ok = await this.swapTaints(name, [add], [opposite], `taint ${add.key}:NoExecute`);
    if (ok) this.ctx.log.info(`node ${name} tainted ${add.key}:NoExecute: pods not tolerating it are evicted (taint-based eviction)`, { node: name });
    return [ok, 0];
  }

  private ensureZone(zone: string): void {
    this.tainter(zone);
    if (!this.zoneStates.has(zone)) this.zoneStates.set(zone, 'Initial');
  }

  private tainter(zone: string): Tainter {
    let t = this.tainters.get(zone);
    if (!t) this.tainters.set(zone, (t = { limiter: new TokenBucket(this.o.nodeEvictionRate, 1, this.ctx.clock.now()), set: new Set(), queue: new Map() }));
    return t;
  }

  /** Kubernetes' SwapLimiter: a new bucket (burst 1), drained when the old one had no token. */
  private swapLimiter(zone: string, qps: number): void {
    const t = this.tainter(zone);
    if (t.limiter.qps === qps) return;
    const now = this.ctx.clock.now();
    const next = new TokenBucket(qps, 1, now);
    if (qps > 0 && !t.limiter.tryAccept(now)) next.tryAccept(now);
    t.limiter = next;
  }

  private setLimiterInZone(zone: string, size: number, state: ZoneState): void {
    if (state === 'Normal' || state === 'FullDisruption') this.swapLimiter(zone, this.o.nodeEvictionRate);
    else if (state === 'PartialDisruption') this.swapLimiter(zone, size > this.o.largeClusterSizeThreshold ? this.o.secondaryNodeEvictionRate : 0);
  }

  private computeZoneState(conds: (R | undefined)[]): ZoneState {
    let ready = 0;
    let notReady = 0;
    for (const c of conds) {
      if (c?.status === 'True') ready++;
      else notReady++;
    }
    if (ready === 0 && notReady > 0) return 'FullDisruption';
    if (notReady > 2 && notReady / (notReady + ready) >= this.o.unhealthyZoneThreshold) return 'PartialDisruption';
    return 'Normal';
  }

  /** Kubernetes' handleDisruption. */
  private async handleDisruption(zoneConditions: Map<string, (R | undefined)[]>, nodes: string[]): Promise<void> {
    const newStates = new Map<string, ZoneState>();
    let allAreFullyDisrupted = true;
    for (const [zone, conds] of zoneConditions) {
      const state = this.computeZoneState(conds);
      if (state !== 'FullDisruption') allAreFullyDisrupted = false;
      newStates.set(zone, state);
      if (!this.zoneStates.has(zone)) this.zoneStates.set(zone, 'Initial');
    }
    let allWasFullyDisrupted = true;
    for (const [zone, state] of [...this.zoneStates]) {
      if (!zoneConditions.has(zone)) this.zoneStates.delete(zone);
      else if (state !== 'FullDisruption') allWasFullyDisrupted = false;
    }
    if (allAreFullyDisrupted && allWasFullyDisrupted) return;
    const log = this.ctx.log;
    if (allAreFullyDisrupted) {
      log.warn('every node is NotReady: entering master disruption mode (NoExecute taints removed, no taint-based eviction)', { nodes: nodes.length });
      await Promise.all(nodes.map((n) => this.markNodeAsReachable(n)));
      for (const zone of this.zoneStates.keys()) this.swapLimiter(zone, 0);
      for (const zone of this.zoneStates.keys()) this.zoneStates.set(zone, 'FullDisruption');
      return;
    }
    if (allWasFullyDisrupted) {
      log.info('some nodes are Ready: exiting master disruption mode', { nodes: nodes.length });
      const now = this.ctx.clock.now();
      for (const n of nodes) {
        const h = this.health.get(n);
        if (h) Object.assign(h, { probe: now, readyTransition: now });
      }
      for (const zone of this.zoneStates.keys()) {
        const state = newStates.get(zone) ?? 'Normal';
        this.setLimiterInZone(zone, zoneConditions.get(zone)?.length ?? 0, state);
        this.zoneStates.set(zone, state);
      }
      return;
    }
    for (const [zone, state] of [...this.zoneStates]) {
      const next = newStates.get(zone);
      if (!next || next === state) continue;
      log.info(`zone ${JSON.stringify(zone.replace('\u0000', ''))} is now ${next}`, { zone });
      this.setLimiterInZone(zone, zoneConditions.get(zone)?.length ?? 0, next);
      this.zoneStates.set(zone, next);
    }
  }

  // ------------------------------------------------------------------ pods

  /** Kubernetes' MarkPodsNotReady: the Ready condition of the node's pods becomes False. Resolves to success. */
  private async markPodsNotReady(nodeName: string): Promise<boolean> {
    const results = await Promise.all(this.ctx.pods.onNode(nodeName).map((key) => this.markPodNotReady(key, nodeName)));
    const ok = results.every(Boolean);
    if (!ok) this.markPodsRetry.add(nodeName);
    return ok;
  }

  private markPodNotReady(key: string, nodeName: string): Promise<boolean> {
    const ctx = this.ctx;
    const i = key.indexOf('/');
    const cur = ctx.rest.store.get(ctx.types.pods.storageKey, key.slice(0, i), key.slice(i + 1));
    if (!cur || nodeNameOf(cur.obj) !== nodeName) return Promise.resolve(true);
    const ready = conditionOf(cur.obj, 'Ready');
    if (!ready) return Promise.resolve(true);
    const next = JSON.parse(cur.json) as KObject & { status: R };
    if (!setPodCondition(next.status, { ...(ready as { type: string; status: string }), status: 'False' }, ctx.stamp())) return Promise.resolve(true);
    return ctx
      .track(ctx.rest.update(ctx.types.pods, key.slice(0, i), key.slice(i + 1), next, 'status', {}), `pod ${key}: Ready=False (node ${nodeName} NotReady)`)
      .then((r) => r !== undefined);
  }

  private processAssignedPod(key: string): void {
    const i = key.indexOf('/');
    const pod = this.ctx.rest.store.get(this.ctx.types.pods.storageKey, key.slice(0, i), key.slice(i + 1))?.obj;
    const nodeName = nodeNameOf(pod);
    if (!nodeName || !this.node(nodeName)) return;
    const h = this.health.get(nodeName);
    if (!h?.ready || h.ready.status === 'True') return;
    void this.markPodNotReady(key, nodeName);
  }
}

function lease(h: Health): { leaseRenew?: number } {
  return h.leaseRenew === undefined ? {} : { leaseRenew: h.leaseRenew };
}

/** Options of the node controllers together (defaults: apiserver/options.ts). */
export type NodeControllersOptions = NodeLifecycleOptions & PodGcOptions;

/**
 * kube-controller-manager's node controllers for the local control plane: node lifecycle, taint
 * eviction, pod GC, on one clock and one timer queue, writing through the REST layer.
 */
export class NodeControllers {
  readonly lifecycle: NodeLifecycleController;
  readonly taintEviction: TaintEvictionController;
  readonly podGc: PodGcController;
  private readonly ctx: ControllerContext;
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly unsubscribe: () => void;

  constructor(o: { rest: Rest; log?: Logger; clock?: Clock; options: NodeControllersOptions }) {
    const log = o.log ?? silentLogger;
    const clock = o.clock ?? systemClock;
    const timers = new TimerQueue(clock, (err, key) => log.error(`controller task ${key} failed`, { err }));
    const pods = new PodIndex();
    this.ctx = createContext(o.rest, log, clock, timers, pods, this.inFlight);
    for (const e of o.rest.store.list(this.ctx.types.pods.storageKey)) pods.set(keyOf(e.obj), nodeNameOf(e.obj));
    this.lifecycle = new NodeLifecycleController(this.ctx, o.options);
    this.taintEviction = new TaintEvictionController(this.ctx);
    this.podGc = new PodGcController(this.ctx, o.options);
    this.unsubscribe = o.rest.store.subscribeAll((ev) => this.onEvent(ev));
    this.lifecycle.start();
    this.taintEviction.start();
    this.podGc.start();
  }

  private onEvent(ev: StoreEvent): void {
    const { pods, nodes } = this.ctx.types;
    if (ev.storageKey === pods.storageKey) {
      this.ctx.pods.set(keyOf(ev.obj), ev.type === 'DELETED' ? '' : nodeNameOf(ev.obj));
      this.lifecycle.onPodEvent(ev);
      this.taintEviction.onPodEvent(ev);
    } else if (ev.storageKey === nodes.storageKey) {
      this.lifecycle.onNodeEvent(ev);
      this.taintEviction.onNodeEvent(ev);
    }
  }

  /** Resolves once nothing is queued or running (events handled, due tasks and their writes done). Tests use it. */
  async idle(): Promise<void> {
    for (let i = 0; i < 1000; i++) {
      await new Promise<void>((r) => setImmediate(r));
      if (this.inFlight.size === 0 && !this.lifecycle.busy && !this.taintEviction.busy) {
        await this.ctx.timers.idle();
        if (this.inFlight.size === 0 && !this.lifecycle.busy && !this.taintEviction.busy) return;
      }
      await Promise.allSettled([...this.inFlight]);
      await this.ctx.timers.idle();
    }
  }

  /** Runs the timer queue's due tasks now (a fake clock's tests). */
  runDue(): void {
    this.ctx.timers.runDue();
  }

  stop(): void {
    this.unsubscribe();
    this.lifecycle.stop();
    this.taintEviction.stop();
    this.podGc.stop();
    this.ctx.timers.stop();
  }
}
