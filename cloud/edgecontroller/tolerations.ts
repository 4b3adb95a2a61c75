/**
 * @module
 * Eviction protection: a link outage must not cost an edge node its pods (docs/design.md, "Link
 * outages do not evict edge pods").
 *
 * A disconnected edge node stops renewing its Lease, kube-controller-manager marks it
 * Ready=Unknown and taints it `node.kubernetes.io/unreachable:NoExecute`, and its taint manager
 * deletes every pod whose matching toleration has a `tolerationSeconds` (300 s, added to every pod
 * by the DefaultTolerationSeconds admission) once that time ran out — the edge would obey the
 * delete on reconnect. Kubernetes itself is the place to say "tolerate forever": a toleration
 * without tolerationSeconds. Pod update validation allows exactly this change (existing
 * tolerations may change only their tolerationSeconds, to any value or none; new ones may be
 * added), and the taint manager cancels a scheduled eviction when the pod's tolerations become
 * unlimited (merely raising the seconds would not move an eviction already scheduled).
 *
 * So the leading CloudCore replica, for every pod bound to an edge node that is not being
 * deleted, removes `tolerationSeconds` from the tolerations that tolerate
 * `node.kubernetes.io/unreachable:NoExecute` (or adds `{key: unreachable, operator: Exists,
 * effect: NoExecute}` when none does), in one JSON patch guarded by `test` operations, and
 * records what it did in the annotation `ledge.io/eviction-protection`. A pod is changed at most
 * once: a pod carrying that annotation is never touched again (a user who later sets a limit
 * keeps it), and a pod annotated `ledge.io/evict-on-unreachable: "true"` is never touched (it
 * keeps Kubernetes' eviction). `not-ready` is left alone: a node that reports itself not ready is
 * reachable, and its pods may legitimately move. Writes are coalesced per pod (a set of keys,
 * the informer's latest copy is what gets patched) and paced by a token bucket; each change is
 * one log line.
 */
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { ErrorCode, errorMessage } from '../../shared/errors/index.js';
import { httpStatus, kube, type k8s, type WatchedResource } from '../kube/index.js';

/** A pod annotated with this set to "true" keeps Kubernetes' unreachable eviction. */
export const EVICT_ON_UNREACHABLE_ANNOTATION = 'ledge.io/evict-on-unreachable';
/** Written on a pod CloudCore changed: what it changed. A pod carrying it is not changed again. */
export const EVICTION_PROTECTION_ANNOTATION = 'ledge.io/eviction-protection';
export const UNREACHABLE_TAINT_KEY = 'node.kubernetes.io/unreachable';
/** The kubelet's mirror pods reflect static pods the node runs by itself: not ours to change. */
const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

export interface EvictionProtectionOptions {
  /** Pod patches per second at most (token bucket). Default 20. */
  writesPerSecond: number;
  /** Bucket size. Default 50. */
  burst: number;
  /** Wait before retrying a pod whose patch failed for another reason than a conflict, ms. Default 5000. */
  retryMs: number;
  /** How often leadership is checked (a new leader rescans every pod), ms. Default 1000. */
  leaderCheckMs: number;
}

export const defaultEvictionProtectionOptions: EvictionProtectionOptions = {
  writesPerSecond: 20,
  burst: 50,
  retryMs: 5000,
  leaderCheckMs: 1000,
};

export interface JsonPatchOp {
  op: 'test' | 'add' | 'remove';
  path: string;
  value?: unknown;
}

export interface ProtectionPlan {
  ops: JsonPatchOp[];
  /** What changes, for the annotation and the log line. */
  summary: string;
}

type Toleration = { key?: string; operator?: string; value?: string; effect?: string; tolerationSeconds?: number | null };

/** Kubernetes' Toleration.ToleratesTaint for the unreachable:NoExecute taint (no value). */
function toleratesUnreachable(t: Toleration): boolean {
  if (t.effect && t.effect !== 'NoExecute') return false;
  if (t.key && t.key !== UNREACHABLE_TAINT_KEY) return false;
  const op = t.operator ?? '';
  if (op === 'Exists') return true;
  return (op === '' || op === 'Equal') && (t.value ?? '') === '';
}

const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v)) as unknown;
const escapePointer = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * What to change on `pod` so that the unreachable taint never evicts it, or undefined (nothing to
 * do, or not ours: unbound, being deleted, finished, opted out, already changed once, mirror pod).
 * `isEdgeNode` says whether the pod's node is an edge node.
 */
export function protectionPlan(pod: k8s.V1Pod, isEdgeNode: (node: string) => boolean): ProtectionPlan | undefined {
  const md = pod.metadata;
  const node = pod.spec?.nodeName;
  if (!md?.uid || !md.name || !node || !isEdgeNode(node)) return undefined;
  if (md.deletionTimestamp || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return undefined;
  const ann = md.annotations ?? {};
  if (ann[EVICT_ON_UNREACHABLE_ANNOTATION] === 'true' || ann[EVICTION_PROTECTION_ANNOTATION] !== undefined || ann[MIRROR_ANNOTATION] !== undefined) return undefined;
  const tolerations = (pod.spec?.tolerations ?? []) as Toleration[];
  const matching = tolerations.map((t, i) => [t, i] as const).filter(([t]) => toleratesUnreachable(t));
  // The taint manager uses the first matching toleration: unlimited already → nothing to do.
  if (matching.length > 0 && typeof matching[0]![0].tolerationSeconds !== 'number') return undefined;
  const ops: JsonPatchOp[] = [{ op: 'test', path: '/metadata/uid', value: md.uid }];
  let summary: string;
  if (matching.length === 0) {
    const added = { key: UNREACHABLE_TAINT_KEY, operator: 'Exists', effect: 'NoExecute' };
    if (pod.spec?.tolerations) ops.push({ op: 'add', path: '/spec/tolerations/-', value: added });
    else ops.push({ op: 'add', path: '/spec/tolerations', value: [added] });
    summary = `added toleration ${UNREACHABLE_TAINT_KEY}:NoExecute without tolerationSeconds`;
  } else {
    const limited = matching.filter(([t]) => typeof t.tolerationSeconds === 'number');
    for (const [t, i] of limited) {
      ops.push({ op: 'test', path: `/spec/tolerations/${i}`, value: plain(t) });
      ops.push({ op: 'remove', path: `/spec/tolerations/${i}/tolerationSeconds` });
    }
    const seconds = [...new Set(limited.map(([t]) => t.tolerationSeconds))].join(', ');
    summary = `removed tolerationSeconds ${seconds} from the toleration of ${UNREACHABLE_TAINT_KEY}:NoExecute`;
  }
  if (md.annotations) ops.push({ op: 'add', path: `/metadata/annotations/${escapePointer(EVICTION_PROTECTION_ANNOTATION)}`, value: summary });
  else {
    // Creating the map would replace one written meanwhile: only against the version planned from.
    if (md.resourceVersion) ops.push({ op: 'test', path: '/metadata/resourceVersion', value: md.resourceVersion });
    ops.push({ op: 'add', path: '/metadata/annotations', value: { [EVICTION_PROTECTION_ANNOTATION]: summary } });
  }
  return { ops, summary };
}

/** The pod and edge-node informers of the EdgeController, handed over once synced. */
export interface EdgeInformers {
  pods: WatchedResource<k8s.V1Pod>;
  nodes: WatchedResource<k8s.V1Node>;
}

/**
 * The CloudCore module that applies {@link protectionPlan} to pods bound to edge nodes, on the
 * leading replica only. It reads the EdgeController's informers (no watch of its own): the
 * EdgeController hands them over through `attach`.
 */
export class EvictionProtection implements Module {
  readonly name = 'evictionprotection';
  readonly group = 'resource';
  private readonly options: EvictionProtectionOptions;
  private informers: EdgeInformers | undefined;
  private readonly core: k8s.CoreV1Api;
  /** Pods to look at (keys `ns/name`): a set, so a burst of events is one look at the latest copy. */
  private readonly queue = new Set<string>();
  /** Pod key → resourceVersion whose patch was refused: not tried again until the pod changes. */
  private readonly refused = new Map<string, string>();
  private readonly retries = new Map<string, number>();
  /** Pods whose last patch failed (one warning per pod until it succeeds). */
  private readonly failing = new Set<string>();
  private warnedForbidden = false;
  private leading = false;
  private draining = false;
  private running = false;
  private tokens: number;
  private lastRefill = performance.now();
  private wake: NodeJS.Timeout | undefined;
  /** Pods changed since start (diagnostics and tests). */
  changed = 0;

  constructor(
    kc: k8s.KubeConfig,
    private readonly isLeader: () => boolean,
    private readonly log: Logger,
    options: Partial<EvictionProtectionOptions> = {},
  ) {
    this.options = { ...defaultEvictionProtectionOptions, ...options };
    this.tokens = this.options.burst;
    this.core = kc.makeApiClient(kube().CoreV1Api);
  }

  /** Called by the EdgeController once its informers are synced (again after it restarted). */
  attach(informers: EdgeInformers): void {
    this.informers = informers;
    const seePod = (pod: k8s.V1Pod) => this.enqueue(pod);
    informers.pods.on('add', seePod);
    informers.pods.on('update', seePod);
    informers.pods.on('delete', (pod) => {
      const key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
      this.queue.delete(key);
      this.refused.delete(key);
      this.retries.delete(key);
      this.failing.delete(key);
    });
    // A node that becomes an edge node (registered, or labelled): its pods, bound before, are now ours.
    informers.nodes.on('add', (node) => {
      const name = node.metadata?.name;
      if (!name) return;
      for (const pod of informers.pods.informer.list()) if (pod.spec?.nodeName === name) this.enqueue(pod);
    });
    if (this.leading) this.enqueueAll();
  }

  async start(_ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    this.running = true;
    const timer = setInterval(() => this.tick(), this.options.leaderCheckMs);
    timer.unref();
    this.tick();
    try {
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      this.running = false;
      clearInterval(timer);
      clearTimeout(this.wake);
      this.queue.clear();
      this.leading = false;
    }
  }

  private tick(): void {
    if (!this.running) return;
    const leading = this.isLeader();
    if (leading && !this.leading) {
      this.log.debug('leading: checking the tolerations of every pod bound to an edge node');
      this.leading = true;
      this.enqueueAll();
    } else if (!leading && this.leading) {
      this.leading = false;
      this.queue.clear();
    }
    const now = performance.now();
    for (const [key, at] of this.retries) {
      if (at > now) continue;
      this.retries.delete(key);
      this.queue.add(key);
    }
    this.drain();
  }

  private enqueueAll(): void {
    for (const pod of this.informers?.pods.informer.list() ?? []) this.enqueue(pod);
  }

  private enqueue(pod: k8s.V1Pod): void {
    if (!this.leading || !this.informers) return;
    if (!protectionPlan(pod, (n) => this.isEdge(n))) return;
    const key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
    if (this.refused.get(key) === pod.metadata?.resourceVersion) return;
    this.queue.add(key);
    this.drain();
  }

  private isEdge(node: string): boolean {
    return this.informers?.nodes.informer.get(node) !== undefined;
  }

  private takeToken(): number {
    const now = performance.now();
    this.tokens = Math.min(this.options.burst, this.tokens + ((now - this.lastRefill) / 1000) * this.options.writesPerSecond);
    this.lastRefill = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return ((1 - this.tokens) / this.options.writesPerSecond) * 1000;
  }

  /** One pod at a time, paced by the bucket; a single timer waits for the next token. */
  private drain(): void {
    if (this.draining || !this.running || !this.leading || this.queue.size === 0) return;
    const wait = this.takeToken();
    if (wait > 0) {
      if (!this.wake) {
        this.wake = setTimeout(() => {
          this.wake = undefined;
          this.drain();
        }, wait);
        this.wake.unref();
      }
      return;
    }
    const key = this.queue.values().next().value as string;
    this.queue.delete(key);
    this.draining = true;
    void this.protect(key).finally(() => {
      this.draining = false;
      this.drain();
    });
  }

  private async protect(key: string): Promise<void> {
    const i = key.indexOf('/');
    const [namespace, name] = [key.slice(0, i), key.slice(i + 1)];
    const pod = this.informers?.pods.informer.get(name, namespace);
    if (!pod) return;
    const plan = protectionPlan(pod, (n) => this.isEdge(n));
    if (!plan) return;
    const k = kube();
    try {
      await this.core.patchNamespacedPod({ name, namespace, body: plan.ops }, k.setHeaderOptions('Content-Type', k.PatchStrategy.JsonPatch));
      this.refused.delete(key);
      this.failing.delete(key);
      this.changed++;
      this.log.info(
        `pod ${key} on edge node ${pod.spec?.nodeName}: ${plan.summary}, so a link outage does not evict it (opt out: annotation ${EVICT_ON_UNREACHABLE_ANNOTATION}="true")`,
        { pod: key, node: pod.spec?.nodeName },
      );
    } catch (err) {
      const status = httpStatus(err);
      if (status === 404) return;
      if (status === 403) {
        // Not allowed (RBAC without pods/patch): looked at again only when the pod changes, and said once.
        this.refused.set(key, pod.metadata?.resourceVersion ?? '');
        if (!this.warnedForbidden) {
          this.warnedForbidden = true;
          this.log.warn(`CloudCore may not patch pods (${errorMessage(err)}): pods on edge nodes are not protected from eviction by link outages`, { code: ErrorCode.Api, status });
        }
        return;
      }
      if (status === 409 || status === 422) {
        // Changed meanwhile (a `test` failed) or refused: the pod's next version is looked at again.
        this.refused.set(key, pod.metadata?.resourceVersion ?? '');
        this.log.debug(`pod ${key}: toleration patch not applied (${status}): ${errorMessage(err)}`, { pod: key, status });
        return;
      }
      this.retries.set(key, performance.now() + this.options.retryMs);
      if (!this.failing.has(key))
        this.log.warn(`pod ${key}: cannot patch its tolerations: ${errorMessage(err)}; retrying every ${this.options.retryMs} ms`, { code: ErrorCode.Api, status, pod: key });
      else this.log.debug(`pod ${key}: toleration patch failed again: ${errorMessage(err)}`, { pod: key, status });
      this.failing.add(key);
    }
  }
}
