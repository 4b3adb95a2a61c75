/**
 * @module
 * The bit of kube-scheduler the edge needs: a pod without spec.nodeName (schedulerName
 * default-scheduler) is bound, through the same code path as pods/binding, to a Ready,
 * schedulable node that matches its nodeSelector and required node affinity and whose
 * NoSchedule / NoExecute taints it tolerates; the least-loaded such node wins.
 * kube-controller-manager's node controllers (node lifecycle, taint eviction, pod GC) are in
 * ./nodelifecycle.ts.
 */
import type { Logger } from '../shared/log/index.js';
import { ApiError } from './errors.js';
import type { Rest } from './rest.js';
import type { StoreEvent } from './store.js';
import type { KObject, ResourceType } from './types.js';
import { toleratesTaint, type Taint, type Toleration } from './taints.js';

type R = Record<string, unknown>;
const arr = (v: unknown): R[] => (Array.isArray(v) ? (v as R[]).filter((x) => x !== null && typeof x === 'object') : []);
const obj = (v: unknown): R => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as R) : {});

function rfc3339(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function readyCondition(node: KObject): R | undefined {
  return arr(obj((node as R).status).conditions).find((c) => c.type === 'Ready');
}

function tolerates(tolerations: R[], taint: R): boolean {
  return tolerations.some((t) => toleratesTaint(t as Toleration, taint as unknown as Taint));
}

function matchExpr(labels: Record<string, string>, e: R): boolean {
  const key = String(e.key ?? '');
  const values = Array.isArray(e.values) ? e.values.map(String) : [];
  const has = key in labels;
  switch (e.operator) {
    case 'In':
      return has && values.includes(labels[key]!);
    case 'NotIn':
      return !has || !values.includes(labels[key]!);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'Gt':
      return has && Number(labels[key]) > Number(values[0]);
    case 'Lt':
      return has && Number(labels[key]) < Number(values[0]);
    default:
      return false;
  }
}

export function podFitsNode(pod: KObject, node: KObject): boolean {
  const spec = obj((pod as R).spec);
  const labels = node.metadata.labels ?? {};
  for (const [k, v] of Object.entries(obj(spec.nodeSelector))) if (labels[k] !== v) return false;
  const terms = arr(obj(obj(obj(spec.affinity).nodeAffinity).requiredDuringSchedulingIgnoredDuringExecution).nodeSelectorTerms);
  if (terms.length && !terms.some((term) => arr(term.matchExpressions).every((e) => matchExpr(labels, e)))) return false;
  const tol = arr(spec.tolerations);
  for (const taint of arr(obj((node as R).spec).taints)) {
    if ((taint.effect === 'NoSchedule' || taint.effect === 'NoExecute') && !tolerates(tol, taint)) return false;
  }
  return true;
}

export function nodeIsReady(node: KObject): boolean {
  return readyCondition(node)?.status === 'True' && obj((node as R).spec).unschedulable !== true;
}

export interface ControllerOptions {
  rest: Rest;
  log: Logger;
}

export class Controllers {
  private readonly unsubscribe: () => void;
  private readonly timer: NodeJS.Timeout;
  private scheduling = false;
  private rescan = true;
  /** Pods waiting for a node (`ns/name`), and where bound pods run (for load). */
  private readonly pending = new Set<string>();
  private readonly podNode = new Map<string, string>();
  private lastFullRetry = 0;
  private stopped = false;
  private readonly pods: ResourceType;
  private readonly nodes: ResourceType;

  constructor(private readonly o: ControllerOptions) {
    const reg = o.rest.registry;
    this.pods = reg.lookup('', 'v1', 'pods')!;
    this.nodes = reg.lookup('', 'v1', 'nodes')!;
    for (const p of o.rest.store.list(this.pods.storageKey)) this.trackPod(p.obj, false);
    this.unsubscribe = o.rest.store.subscribeAll((ev) => this.onEvent(ev));
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
    setImmediate(() => this.kickScheduler());
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.unsubscribe();
  }

  private onEvent(ev: StoreEvent): void {
    if (ev.storageKey === this.nodes.storageKey) {
      this.rescan = true;
      this.kickScheduler();
    } else if (ev.storageKey === this.pods.storageKey) {
      if (this.trackPod(ev.obj, ev.type === 'DELETED') && ev.type === 'ADDED') {
        this.rescan = true;
        this.kickScheduler();
      }
    }
  }

  /** Updates the pending set and load map; true when the pod waits for a node. */
  private trackPod(pod: KObject, deleted: boolean): boolean {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    const spec = obj((pod as R).spec);
    this.podNode.delete(key);
    this.pending.delete(key);
    if (deleted) return false;
    if (typeof spec.nodeName === 'string' && spec.nodeName) {
      this.podNode.set(key, spec.nodeName);
      return false;
    }
    if ((spec.schedulerName ?? 'default-scheduler') !== 'default-scheduler' || pod.metadata.deletionTimestamp) return false;
    this.pending.add(key);
    return true;
  }

  private tick(): void {
    if (this.stopped) return;
    const now = Date.now();
    // Unschedulable pods are retried when nodes change, and every few seconds anyway.
    if (this.pending.size > 0 && now - this.lastFullRetry > 5000) this.rescan = true;
    if (this.rescan) this.kickScheduler();
  }

  private kickScheduler(): void {
    if (this.scheduling || this.stopped) return;
    this.scheduling = true;
    this.rescan = false;
    void this.scheduleAll()
      .catch((err: unknown) => this.o.log.error('scheduler pass failed', { err }))
      .finally(() => {
        this.scheduling = false;
        if (this.rescan && !this.stopped) setImmediate(() => this.kickScheduler());
      });
  }

  private async scheduleAll(): Promise<void> {
    const rest = this.o.rest;
    this.lastFullRetry = Date.now();
    if (this.pending.size === 0) return;
    const nodes = rest.store
      .list(this.nodes.storageKey)
      .map((e) => e.obj)
      .filter(nodeIsReady);
    const load = new Map<string, number>();
    for (const n of this.podNode.values()) load.set(n, (load.get(n) ?? 0) + 1);
    for (const key of [...this.pending]) {
      if (this.stopped) return;
      const [ns, name] = key.split('/') as [string, string];
      const pod = rest.store.get(this.pods.storageKey, ns, name)?.obj;
      if (!pod) {
        this.pending.delete(key);
        continue;
      }
      const fit = nodes.filter((n) => podFitsNode(pod, n));
      if (fit.length === 0) {
        await this.markUnschedulable(pod, nodes.length);
        continue;
      }
      fit.sort((a, b) => (load.get(a.metadata.name!) ?? 0) - (load.get(b.metadata.name!) ?? 0) || a.metadata.name!.localeCompare(b.metadata.name!));
      const node = fit[0]!.metadata.name!;
      try {
        await rest.bind(ns, name, { target: { kind: 'Node', name: node } });
        load.set(node, (load.get(node) ?? 0) + 1);
        this.o.log.debug('scheduled pod', { pod: key, node });
      } catch (err) {
        if (!(err instanceof ApiError)) throw err; // 404/409: deleted or bound meanwhile
      }
    }
  }

  private async markUnschedulable(pod: KObject, readyNodes: number): Promise<void> {
    const cur = this.o.rest.store.get(this.pods.storageKey, pod.metadata.namespace!, pod.metadata.name!);
    if (!cur) return;
    const message = `0/${readyNodes} nodes are available: no ready node matches the pod's node selector, affinity and tolerations.`;
    const existing = arr(obj((cur.obj as R).status).conditions).find((c) => c.type === 'PodScheduled');
    if (existing?.status === 'False' && existing.message === message) return;
    const next = JSON.parse(cur.json) as KObject & { status?: R };
    const status = (next.status ??= {});
    const conds = arr(status.conditions).filter((c) => c.type !== 'PodScheduled');
    conds.push({ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message, lastProbeTime: null, lastTransitionTime: rfc3339() });
    status.conditions = conds;
    try {
      await this.o.rest.update(this.pods, pod.metadata.namespace!, pod.metadata.name!, next, 'status', {});
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
    }
  }
}
