/**
 * @module
 * kube-controller-manager's taint-eviction controller (pkg/controller/tainteviction, Kubernetes
 * 1.35), facts carried over: for every pod on a node with NoExecute taints, each taint is matched
 * with the pod's *first* toleration that tolerates it; a taint tolerated by none → the pod is
 * deleted at once; otherwise after the smallest tolerationSeconds among those tolerations, counted
 * from when this controller saw the taint (no tolerationSeconds at all: never). An eviction
 * already scheduled keeps its start time: changing tolerationSeconds does not move it, but a
 * toleration without a limit cancels it, and so does the taint going away or the pod being
 * deleted. Evicting = the pod's DisruptionTarget condition (DeletionByTaintManager) set, then a
 * graceful delete (the node's kubelet, here the edge, confirms). Deadlines live on the shared
 * timer queue: one timer for all pods.
 */
import type { StoreEvent } from './store.js';
import type { KObject } from './types.js';
import { deepEqual } from './rest.js';
import { nodeNameOf, setPodCondition, splitKey, keyOf, type ControllerContext, type R } from './controller-context.js';
import { matchingTolerations, minTolerationMs, noExecuteTaints, taintListsEqual, tolerationsOf, type Taint, type Toleration } from './taints.js';

interface Work {
  createdAt: number;
  fireAt: number;
  running: boolean;
}

/** Kubernetes' deletePodHandler retries. */
const RETRIES = 5;

export class TaintEvictionController {
  /** Node → its NoExecute taints (nodes without any are absent). */
  private readonly tainted = new Map<string, Taint[]>();
  private readonly works = new Map<string, Work>();
  private readonly nodeQueue = new Set<string>();
  /** Pod key → the node it was on when the event came (a stale item is skipped, as Kubernetes does). */
  private readonly podQueue = new Map<string, string>();
  private flushQueued = false;
  private stopped = false;

  constructor(private readonly ctx: ControllerContext) {}

  start(): void {
    for (const e of this.ctx.rest.store.list(this.ctx.types.nodes.storageKey)) this.nodeQueue.add(e.obj.metadata.name!);
    this.kick();
  }

  stop(): void {
    this.stopped = true;
  }

  get busy(): boolean {
    return this.flushQueued;
  }

  /** Scheduled evictions (pod key → when, monotonic ms), for tests and diagnostics. */
  scheduled(): Map<string, number> {
    return new Map([...this.works].map(([k, w]) => [k, w.fireAt]));
  }

  onNodeEvent(ev: StoreEvent): void {
    if (ev.type === 'MODIFIED' && ev.prev && taintListsEqual(noExecuteTaints(ev.prev), noExecuteTaints(ev.obj))) return;
    this.nodeQueue.add(ev.obj.metadata.name!);
    this.kick();
  }

  onPodEvent(ev: StoreEvent): void {
    if (ev.type === 'MODIFIED' && ev.prev && nodeNameOf(ev.prev) === nodeNameOf(ev.obj) && deepEqual(tolerationsOf(ev.prev), tolerationsOf(ev.obj))) return;
    this.podQueue.set(keyOf(ev.obj), nodeNameOf(ev.obj));
    this.kick();
  }

  private kick(): void {
    if (this.flushQueued || this.stopped) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  /** Node updates first, then pods (Kubernetes' workers drain the node channel before a pod update). */
  private flush(): void {
    this.flushQueued = false;
    if (this.stopped) return;
    const nodes = [...this.nodeQueue];
    this.nodeQueue.clear();
    for (const n of nodes) this.handleNodeUpdate(n);
    const pods = [...this.podQueue];
    this.podQueue.clear();
    for (const [key, node] of pods) this.handlePodUpdate(key, node);
  }

  private handleNodeUpdate(name: string): void {
    const node = this.ctx.rest.store.get(this.ctx.types.nodes.storageKey, '', name)?.obj;
    if (!node) {
      this.tainted.delete(name);
      return;
    }
    const taints = noExecuteTaints(node);
    if (taints.length === 0) this.tainted.delete(name);
    else this.tainted.set(name, taints);
    const pods = this.ctx.pods.onNode(name);
    if (taints.length === 0) {
      for (const key of pods) this.cancel(key);
      return;
    }
    const now = this.ctx.clock.now();
    for (const key of pods) {
      const pod = this.pod(key);
      if (pod) this.processPodOnNode(key, name, tolerationsOf(pod), taints, now);
    }
  }

  private handlePodUpdate(key: string, nodeAtEvent: string): void {
    const pod = this.pod(key);
    if (!pod) {
      this.cancel(key);
      return;
    }
    const nodeName = nodeNameOf(pod);
    if (nodeName !== nodeAtEvent || !nodeName) return;
    const taints = this.tainted.get(nodeName);
    if (!taints) return;
    this.processPodOnNode(key, nodeName, tolerationsOf(pod), taints, this.ctx.clock.now());
  }

  private processPodOnNode(key: string, node: string, tolerations: Toleration[], taints: Taint[], now: number): void {
    if (taints.length === 0) {
      this.cancel(key);
      return;
    }
    const used = matchingTolerations(taints, tolerations);
    if (!used) {
      this.cancel(key);
      this.addWork(key, node, now, now, 'it does not tolerate the NoExecute taint');
      return;
    }
    const min = minTolerationMs(used);
    if (min < 0) {
      // Tolerated forever.
      this.cancel(key);
      return;
    }
    let start = now;
    const trigger = now + min;
    const existing = this.works.get(key);
    if (existing) {
      if (existing.running) return;
      start = existing.createdAt;
      // An earlier schedule stands (its time is not moved by a changed tolerationSeconds).
      if (start + min < trigger) return;
      this.cancel(key);
    }
    this.addWork(key, node, start, trigger, `its toleration of the NoExecute taint ran out (${min / 1000} s)`);
  }

  private addWork(key: string, node: string, createdAt: number, fireAt: number, why: string): void {
    if (this.works.has(key)) return;
    const w: Work = { createdAt, fireAt, running: false };
    this.works.set(key, w);
    if (fireAt > createdAt) this.ctx.log.debug(`pod ${key} on node ${node}: eviction in ${Math.round(fireAt - this.ctx.clock.now())} ms unless the taint goes`, { pod: key, node });
    this.ctx.timers.schedule(`tainteviction/${key}`, fireAt, () => this.fire(key, w, node, why));
  }

  private cancel(key: string): boolean {
    const w = this.works.get(key);
    if (!w) return false;
    this.works.delete(key);
    this.ctx.timers.cancel(`tainteviction/${key}`);
    if (!w.running) this.ctx.log.debug(`pod ${key}: scheduled eviction cancelled`, { pod: key });
    return !w.running;
  }

  private async fire(key: string, w: Work, node: string, why: string): Promise<void> {
    if (this.works.get(key) !== w || this.stopped) return;
    w.running = true;
    try {
      for (let i = 0; i < RETRIES && !this.stopped; i++) {
        const done = await this.ctx.track(this.evict(key, node, why), `taint eviction of pod ${key}`);
        if (done !== undefined) break;
      }
    } finally {
      if (this.works.get(key) === w) this.works.delete(key);
    }
  }

  /** Kubernetes' addConditionAndDeletePod. */
  private async evict(key: string, node: string, why: string): Promise<true> {
    const ctx = this.ctx;
    const [ns, name] = splitKey(key);
    const cur = ctx.rest.store.get(ctx.types.pods.storageKey, ns, name);
    if (!cur) return true;
    ctx.log.info(`taint eviction: deleting pod ${key} from node ${node}: ${why}`, { pod: key, node });
    const next = JSON.parse(cur.json) as KObject & { status?: R };
    const status = (next.status ??= {});
    if (
      setPodCondition(
        status,
        { type: 'DisruptionTarget', status: 'True', reason: 'DeletionByTaintManager', message: 'Taint manager: deleting due to NoExecute taint' },
        ctx.stamp(),
      )
    ) {
      await ctx.rest.update(ctx.types.pods, ns, name, next, 'status', {});
    }
    await ctx.rest.delete(ctx.types.pods, ns, name, {});
    return true;
  }

  private pod(key: string): KObject | undefined {
    const [ns, name] = splitKey(key);
    return this.ctx.rest.store.get(this.ctx.types.pods.storageKey, ns, name)?.obj;
  }
}
