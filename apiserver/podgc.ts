/**
 * @module
 * kube-controller-manager's pod garbage collector (pkg/controller/podgc, Kubernetes 1.35), facts
 * carried over. Every `podGcPeriodMs` (20 s):
 * - terminated pods (phase neither Pending, Running nor Unknown) beyond `terminatedPodGcThreshold`
 *   (12500): the oldest are deleted, evicted ones first;
 * - terminating pods on a node that is not Ready *and* carries the `node.kubernetes.io/out-of-service`
 *   taint: force-deleted (a NotReady node alone is not enough: its kubelet may still run them);
 * - orphaned pods, bound to a node that does not exist: once the node has stayed missing for
 *   `podGcQuarantineMs` (40 s), marked Failed with DisruptionTarget (DeletionByPodGC, "PodGC:
 *   node no longer exists") and force-deleted, whether Pending, Running or Terminating;
 * - terminating pods bound to no node: force-deleted.
 * Force = phase Failed first (unless Succeeded/Failed), then a delete with grace period 0.
 */
import type { KObject } from './types.js';
import { conditionOf, keyOf, nodeNameOf, obj, setPodCondition, type ControllerContext, type R } from './controller-context.js';
import { taintsOf, TAINT_OUT_OF_SERVICE } from './taints.js';

export interface PodGcOptions {
  /** Period of the GC pass, ms (Kubernetes' gcCheckPeriod, 20 s). */
  podGcPeriodMs: number;
  /** How long a missing node stays quarantined before its pods are deleted, ms (quarantineTime, 40 s). */
  podGcQuarantineMs: number;
  /** Terminated pods kept; 0 disables that part (--terminated-pod-gc-threshold, 12500). */
  terminatedPodGcThreshold: number;
}

const phaseOf = (p: KObject): string => String(obj((p as R).status).phase ?? '');

export class PodGcController {
  /** Missing node → when its quarantine ends (monotonic ms). */
  private readonly quarantine = new Map<string, number>();
  private stopped = false;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly o: PodGcOptions,
  ) {}

  start(): void {
    this.ctx.timers.schedule('podgc', this.ctx.clock.now(), () => this.pass());
  }

  stop(): void {
    this.stopped = true;
  }

  private async pass(): Promise<void> {
    try {
      await this.gc();
    } finally {
      if (!this.stopped) this.ctx.timers.schedule('podgc', this.ctx.clock.now() + this.o.podGcPeriodMs, () => this.pass());
    }
  }

  /** One GC pass. */
  async gc(): Promise<void> {
    const ctx = this.ctx;
    const pods = ctx.rest.store.list(ctx.types.pods.storageKey).map((e) => e.obj);
    const nodes = new Map(ctx.rest.store.list(ctx.types.nodes.storageKey).map((e) => [e.obj.metadata.name!, e.obj]));
    const writes: Promise<unknown>[] = [];
    if (this.o.terminatedPodGcThreshold > 0) writes.push(...this.gcTerminated(pods));
    writes.push(...this.gcTerminating(pods, nodes));
    writes.push(...this.gcOrphaned(pods, nodes));
    writes.push(...this.gcUnscheduledTerminating(pods));
    await Promise.all(writes);
  }

  private gcTerminated(pods: KObject[]): Promise<unknown>[] {
    const terminated = pods.filter((p) => !['Pending', 'Running', 'Unknown'].includes(phaseOf(p)));
    const count = terminated.length - this.o.terminatedPodGcThreshold;
    if (count <= 0) return [];
    this.ctx.log.info(`pod GC: ${count} terminated pods beyond the threshold of ${this.o.terminatedPodGcThreshold}`, { count });
    const evicted = (p: KObject) => phaseOf(p) === 'Failed' && obj((p as R).status).reason === 'Evicted';
    terminated.sort(
      (a, b) =>
        Number(evicted(b)) - Number(evicted(a)) ||
        String(a.metadata.creationTimestamp ?? '').localeCompare(String(b.metadata.creationTimestamp ?? '')) ||
        String(a.metadata.name).localeCompare(String(b.metadata.name)),
    );
    return terminated.slice(0, count).map((p) => this.markFailedAndDelete(p, 'terminated pod beyond the threshold'));
  }

  private gcTerminating(pods: KObject[], nodes: Map<string, KObject>): Promise<unknown>[] {
    const out: Promise<unknown>[] = [];
    for (const p of pods) {
      if (!p.metadata.deletionTimestamp) continue;
      const node = nodes.get(nodeNameOf(p));
      if (!node) continue;
      if (conditionOf(node, 'Ready')?.status !== 'True' && taintsOf(node).some((t) => t.key === TAINT_OUT_OF_SERVICE)) {
        out.push(this.markFailedAndDelete(p, `terminating on node ${nodeNameOf(p)}, which is NotReady and out of service`));
      }
    }
    return out;
  }

  private gcOrphaned(pods: KObject[], nodes: Map<string, KObject>): Promise<unknown>[] {
    const now = this.ctx.clock.now();
    for (const p of pods) {
      const n = nodeNameOf(p);
      if (n && !nodes.has(n) && !this.quarantine.has(n)) this.quarantine.set(n, now + this.o.podGcQuarantineMs);
    }
    const gone = new Set<string>();
    for (const [n, until] of [...this.quarantine]) {
      if (until > now) continue;
      this.quarantine.delete(n);
      if (!this.ctx.rest.store.get(this.ctx.types.nodes.storageKey, '', n)) gone.add(n);
    }
    const out: Promise<unknown>[] = [];
    for (const p of pods) {
      if (!gone.has(nodeNameOf(p))) continue;
      out.push(
        this.markFailedAndDelete(p, `its node ${nodeNameOf(p)} no longer exists`, {
          type: 'DisruptionTarget',
          status: 'True',
          reason: 'DeletionByPodGC',
          message: 'PodGC: node no longer exists',
        }),
      );
    }
    return out;
  }

  private gcUnscheduledTerminating(pods: KObject[]): Promise<unknown>[] {
    return pods.filter((p) => p.metadata.deletionTimestamp && !nodeNameOf(p)).map((p) => this.markFailedAndDelete(p, 'terminating and bound to no node'));
  }

  private markFailedAndDelete(pod: KObject, why: string, condition?: { type: string; status: string; reason: string; message: string }): Promise<unknown> {
    const ctx = this.ctx;
    const ns = pod.metadata.namespace ?? '';
    const name = pod.metadata.name!;
    const key = keyOf(pod);
    ctx.log.info(`pod GC: force-deleting pod ${key}: ${why}`, { pod: key });
    const run = async () => {
      const cur = ctx.rest.store.get(ctx.types.pods.storageKey, ns, name);
      if (!cur || cur.obj.metadata.uid !== pod.metadata.uid) return;
      const stopped = () => this.stopped;
      const phase = phaseOf(cur.obj);
      if (phase !== 'Succeeded' && phase !== 'Failed') {
        const next = JSON.parse(cur.json) as KObject & { status?: R };
        const status = (next.status ??= {});
        status.phase = 'Failed';
        if (condition) setPodCondition(status, condition, ctx.stamp());
        await ctx.rest.update(ctx.types.pods, ns, name, next, 'status', {});
      }
      if (stopped()) return;
      await ctx.rest.delete(ctx.types.pods, ns, name, { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata.uid! } });
    };
    return ctx.track(run(), `pod GC of ${key}`);
  }
}
