/**
 * @module
 * What the workload controllers (ReplicaSet, Deployment, DaemonSet, Job, CronJob) share:
 * label selectors as objects (metav1.LabelSelector), owner references, pods stamped from a
 * template, pod readiness and availability, the pod-template hash, and a {@link WorkQueue}
 * like client-go's: per-key serialized, de-duplicated, delayed adds on the controllers' timer
 * queue, failed syncs retried with exponential backoff.
 *
 * Controllers read the store directly (it is read-your-writes: a write awaited is visible), so
 * there is no informer cache and no "expectations" bookkeeping as in kube-controller-manager:
 * one sync of a key runs at a time and sees what the previous one wrote.
 */
import { ApiError } from '../errors.js';
import type { StoreEvent } from '../store.js';
import type { KObject, ResourceType } from '../types.js';
import { arr, isObj, obj, type ControllerContext, type R } from '../controller-context.js';

export interface OwnerRef {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** One workload controller in {@link WorkloadControllers}' list (./index.ts). */
export interface WorkloadController {
  /** Every store event (any resource); must not write synchronously (queue work instead). */
  onEvent(ev: StoreEvent): void;
  start(): void;
  stop(): void;
  /** True while work is queued or running (timers excluded); `idle()` waits for false. */
  readonly busy: boolean;
}

/**
 * Whether `labels` match a metav1.LabelSelector (`matchLabels` and `matchExpressions` with In,
 * NotIn, Exists, DoesNotExist), as LabelSelectorAsSelector does: `{}` matches everything,
 * undefined/null (and anything not an object) nothing, an unknown operator nothing.
 */
export function labelSelectorMatches(selector: unknown, labels: Record<string, string> | undefined): boolean {
  if (!isObj(selector)) return false;
  const l = labels ?? {};
  const ml = obj(selector.matchLabels);
  for (const [k, v] of Object.entries(ml)) if (l[k] !== v) return false;
  for (const e of arr(selector.matchExpressions)) {
    const key = String(e.key ?? '');
    const values = Array.isArray(e.values) ? e.values.map(String) : [];
    const has = Object.hasOwn(l, key);
    switch (e.operator) {
      case 'In':
        if (!has || !values.includes(l[key]!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(l[key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

/** Whether a selector selects nothing or everything is for the caller; this says whether it is empty (`{}`). */
export function isEmptySelector(selector: unknown): boolean {
  return isObj(selector) && Object.keys(obj(selector.matchLabels)).length === 0 && arr(selector.matchExpressions).length === 0;
}

/** The owner reference with `controller: true`, if any (metav1.GetControllerOf). */
export function controllerRefOf(o: KObject): OwnerRef | undefined {
  for (const r of o.metadata.ownerReferences ?? []) {
    if (isObj(r) && r.controller === true) return r as unknown as OwnerRef;
  }
  return undefined;
}

/** A controller reference to `owner` (metav1.NewControllerRef): controller and blockOwnerDeletion true. */
export function ownerRefFor(owner: KObject, apiVersion: string, kind: string): OwnerRef {
  return { apiVersion, kind, name: owner.metadata.name!, uid: owner.metadata.uid!, controller: true, blockOwnerDeletion: true };
}

/**
 * A pod from a pod template (controller.GetPodFromTemplate): the template's labels, annotations,
 * finalizers and spec, `generateName` `<owner>-` unless given, the owner's namespace, `ref` as the
 * only owner reference; `extra.labels` are added over the template's, `extra.nodeName` binds it.
 */
export function podFromTemplate(
  owner: KObject,
  ref: OwnerRef,
  template: unknown,
  extra: { labels?: Record<string, string>; nodeName?: string; generateName?: string } = {},
): KObject {
  const t = obj(template);
  const meta = obj(t.metadata);
  const spec = structuredClone(obj(t.spec));
  if (extra.nodeName) spec.nodeName = extra.nodeName;
  const labels = { ...(obj(meta.labels) as Record<string, string>), ...(extra.labels ?? {}) };
  const pod: KObject = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: extra.generateName ?? `${owner.metadata.name ?? ''}-`,
      namespace: owner.metadata.namespace ?? 'default',
      labels,
      ownerReferences: [{ ...ref }],
    },
    spec,
  };
  if (isObj(meta.annotations)) pod.metadata.annotations = { ...(meta.annotations as Record<string, string>) };
  if (Array.isArray(meta.finalizers)) pod.metadata.finalizers = meta.finalizers.map(String);
  return pod;
}

const phaseOf = (pod: KObject): string => String(obj((pod as R).status).phase ?? '');

/** Not Succeeded or Failed, and not being deleted (controller.IsPodActive). */
export function isPodActive(pod: KObject): boolean {
  const p = phaseOf(pod);
  return p !== 'Succeeded' && p !== 'Failed' && !pod.metadata.deletionTimestamp;
}

const readyCondition = (pod: KObject): R | undefined => arr(obj((pod as R).status).conditions).find((c) => c.type === 'Ready');

/** The Ready condition is True (podutil.IsPodReady). */
export function isPodReady(pod: KObject): boolean {
  return readyCondition(pod)?.status === 'True';
}

/**
 * Ready for more than `minReadySeconds` by the wall clock (podutil.IsPodAvailable): Ready, and
 * with minReadySeconds > 0 its Ready transition time + minReadySeconds strictly before now.
 */
export function isPodAvailable(pod: KObject, minReadySeconds: number, wallNowMs: number): boolean {
  const c = readyCondition(pod);
  if (c?.status !== 'True') return false;
  if (minReadySeconds <= 0) return true;
  const t = Date.parse(String(c.lastTransitionTime ?? ''));
  return Number.isFinite(t) && t + minReadySeconds * 1000 < wallNowMs;
}

/**
 * When a Ready pod becomes available, wall ms (for a requeue), or undefined when it is not
 * Ready or has no transition time. With minReadySeconds 0: its transition time.
 */
export function availableAtMs(pod: KObject, minReadySeconds: number): number | undefined {
  const c = readyCondition(pod);
  if (c?.status !== 'True') return undefined;
  const t = Date.parse(String(c.lastTransitionTime ?? ''));
  return Number.isFinite(t) ? t + minReadySeconds * 1000 : undefined;
}

/** JSON with object keys sorted, so equal values hash alike whatever their key order. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : stableJson(x))).join(',')}]`;
  if (isObj(v)) {
    const keys = Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableJson(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** apimachinery's rand.SafeEncodeString alphabet (no vowels, no 0/1/3: no words, no look-alikes). */
const SAFE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/**
 * The pod-template hash (controller.ComputeHash): FNV-32a over the template (here its stable
 * JSON; Kubernetes hashes a Go dump, so values differ from a real cluster's), then the
 * collision count as 4 little-endian bytes, the decimal of the sum encoded in the safe alphabet.
 */
export function templateHash(template: unknown, collisionCount?: number): string {
  let h = 0x811c9dc5;
  const add = (b: number) => {
    h ^= b & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  };
  for (const b of Buffer.from(stableJson(template), 'utf8')) add(b);
  if (collisionCount !== undefined) {
    const c = collisionCount >>> 0;
    for (let i = 0; i < 4; i++) add(c >>> (8 * i));
  }
  let out = '';
  for (const ch of String(h >>> 0)) out += SAFE_ALPHABET[ch.charCodeAt(0) % SAFE_ALPHABET.length];
  return out;
}

/** An integer field, or `def` when absent or not a finite number. */
export function intOr(v: unknown, def: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? Math.trunc(v) : def;
}

/** First retry after a failed sync, ms (client-go's ItemExponentialFailureRateLimiter base: 5 ms). */
const RETRY_BASE_MS = 5;
/** Cap of the retry delay, ms (client-go: 1000 s). */
const RETRY_MAX_MS = 1_000_000;
/** A conflict (409) is retried at once this many times in a row before backing off. */
const CONFLICT_RETRIES = 5;

/**
 * client-go's rate-limited work queue, reduced: keys are de-duplicated while waiting; one sync
 * per key runs at a time, and an `add()` arriving while it runs makes it run again after; at
 * most `workers` keys sync at once. `add(key, delayMs)` waits on the controllers' timer queue
 * (an earlier deadline of the same key wins). A sync that throws is retried: a 409 conflict at
 * once (a few times), anything else after 5 ms, 10 ms, … (reset when a sync succeeds).
 */
export class WorkQueue {
  private readonly ready: string[] = [];
  private readonly queued = new Set<string>();
  private readonly running = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private stopped = false;
  private kicked = false;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly name: string,
    private readonly sync: (key: string) => Promise<void>,
    private readonly workers = 5,
  ) {}

  /** Work is waiting or running (delayed adds not counted). */
  get busy(): boolean {
    return this.queued.size > 0 || this.running.size > 0 || this.kicked;
  }

  add(key: string, delayMs = 0): void {
    if (this.stopped) return;
    if (delayMs > 0) {
      const tkey = `${this.name}/${key}`;
      const at = this.ctx.clock.now() + delayMs;
      const due = this.ctx.timers.dueAt(tkey);
      if (due !== undefined && due <= at) return;
      this.ctx.timers.schedule(tkey, at, () => this.add(key));
      return;
    }
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.ready.push(key);
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    this.ready.length = 0;
    this.queued.clear();
    this.dirty.clear();
  }

  private kick(): void {
    if (this.kicked || this.stopped) return;
    this.kicked = true;
    queueMicrotask(() => {
      this.kicked = false;
      this.pump();
    });
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.workers && this.ready.length > 0) {
      const key = this.ready.shift()!;
      this.queued.delete(key);
      this.running.add(key);
      void this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    let retryIn = -1;
    try {
      await this.sync(key);
      this.failures.delete(key);
    } catch (err) {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      const conflict = err instanceof ApiError && err.httpCode === 409;
      if (conflict && n <= CONFLICT_RETRIES) retryIn = 0;
      else retryIn = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(30, n - 1));
      if (err instanceof ApiError) this.ctx.log.debug(`${this.name} sync of ${key}: ${err.message}`, { status: err.httpCode, retryInMs: retryIn });
      else this.ctx.log.warn(`${this.name} sync of ${key} failed`, { err, retryInMs: retryIn });
    } finally {
      this.running.delete(key);
    }
    if (this.stopped) return;
    if (this.dirty.delete(key) || retryIn === 0) this.add(key);
    else if (retryIn > 0) this.add(key, retryIn);
    this.pump();
  }
}

/**
 * The objects of one resource by their controller's uid, and the orphans (no controller) by
 * namespace, kept from store events: a controller finds its pods without listing a namespace.
 */
export class OwnerIndex {
  private readonly byOwner = new Map<string, Set<string>>();
  private readonly orphans = new Map<string, Set<string>>();
  /** key → controller uid, '' for an orphan. */
  private readonly ownerOf = new Map<string, string>();

  constructor(
    readonly storageKey: string,
    initial: Iterable<KObject> = [],
  ) {
    for (const o of initial) this.set(o);
  }

  /** Feeds one store event (events of other resources are ignored). */
  onEvent(ev: StoreEvent): void {
    if (ev.storageKey !== this.storageKey) return;
    if (ev.type === 'DELETED') this.remove(`${ev.obj.metadata.namespace ?? ''}/${ev.obj.metadata.name ?? ''}`);
    else this.set(ev.obj);
  }

  /** `ns/name` keys of the objects whose controller has this uid. */
  owned(uid: string): string[] {
    return [...(this.byOwner.get(uid) ?? [])];
  }

  /** `ns/name` keys of the objects in `ns` without a controller. */
  orphansIn(ns: string): string[] {
    return [...(this.orphans.get(ns) ?? [])];
  }

  private set(o: KObject): void {
    const ns = o.metadata.namespace ?? '';
    const key = `${ns}/${o.metadata.name ?? ''}`;
    const uid = controllerRefOf(o)?.uid ?? '';
    if (this.ownerOf.get(key) === uid) return;
    this.remove(key);
    this.ownerOf.set(key, uid);
    const [map, k] = uid ? [this.byOwner, uid] : [this.orphans, ns];
    let s = map.get(k);
    if (!s) map.set(k, (s = new Set()));
    s.add(key);
  }

  private remove(key: string): void {
    const uid = this.ownerOf.get(key);
    if (uid === undefined) return;
    this.ownerOf.delete(key);
    const [map, k] = uid ? [this.byOwner, uid] : [this.orphans, key.slice(0, key.indexOf('/'))];
    const s = map.get(k);
    s?.delete(key);
    if (s?.size === 0) map.delete(k);
  }
}

/** The lookups every workload controller needs: the API types it reads and writes. */
export function lookupType(ctx: ControllerContext, group: string, resource: string): ResourceType {
  const t = ctx.rest.registry.lookup(group, 'v1', resource);
  if (!t) throw new TypeError(`built-in resource ${group}/${resource} is not registered`);
  return t;
}

/** A random lower-case hex suffix (event names). */
const hex = (n: number): string =>
  Math.floor(Math.random() * 16 ** n)
    .toString(16)
    .padStart(n, '0');

/**
 * Records a core/v1 Event about `involved` through the REST layer, fire and forget (tracked, so
 * `idle()` waits for it; a failure is only logged), as client-go's event recorder would.
 */
export function recordEvent(ctx: ControllerContext, component: string, involved: KObject, type: 'Normal' | 'Warning', reason: string, message: string): void {
  const events = ctx.rest.registry.lookup('', 'v1', 'events');
  if (!events) return;
  const ns = involved.metadata.namespace ?? 'default';
  const stamp = ctx.stamp();
  const ev = {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: `${involved.metadata.name ?? 'unknown'}.${Math.floor(ctx.clock.wallNow()).toString(16)}${hex(6)}`, namespace: ns },
    involvedObject: {
      apiVersion: involved.apiVersion ?? '',
      kind: involved.kind ?? '',
      namespace: ns,
      name: involved.metadata.name ?? '',
      uid: involved.metadata.uid ?? '',
      resourceVersion: involved.metadata.resourceVersion ?? '',
    },
    reason,
    message,
    type,
    source: { component },
    reportingComponent: component,
    reportingInstance: component,
    firstTimestamp: stamp,
    lastTimestamp: stamp,
    count: 1,
  };
  void ctx.track(ctx.rest.create(events, ns, ev, {}), `event ${reason} for ${involved.kind ?? ''} ${ns}/${involved.metadata.name ?? ''}`);
}

/**
 * metav1 ControllerRefManager.ClaimObject's decision for one object: 'keep' (ours and
 * matching), 'adopt' (orphan, matching, neither side being deleted), 'release' (ours, no
 * longer matching, owner not being deleted), or 'ignore'.
 */
export function claimDecision(owner: KObject, selector: unknown, o: KObject): 'keep' | 'adopt' | 'release' | 'ignore' {
  const ref = controllerRefOf(o);
  const matches = !isEmptySelector(selector) && labelSelectorMatches(selector, o.metadata.labels);
  if (ref) {
    if (ref.uid !== owner.metadata.uid) return 'ignore';
    if (matches) return 'keep';
    return owner.metadata.deletionTimestamp ? 'ignore' : 'release';
  }
  if (owner.metadata.deletionTimestamp || !matches || o.metadata.deletionTimestamp) return 'ignore';
  return 'adopt';
}

/** `o` with `ref` added as its controller reference (adoption); undefined if it already has a controller. */
export function withControllerRef(o: KObject, ref: OwnerRef): KObject | undefined {
  if (controllerRefOf(o)) return undefined;
  const next = structuredClone(o);
  next.metadata.ownerReferences = [...(o.metadata.ownerReferences ?? []).filter((r) => r.uid !== ref.uid), { ...ref }];
  return next;
}

/** `o` without its owner reference to `uid` (release). */
export function withoutOwnerRef(o: KObject, uid: string): KObject {
  const next = structuredClone(o);
  const refs = (o.metadata.ownerReferences ?? []).filter((r) => r.uid !== uid);
  if (refs.length) next.metadata.ownerReferences = refs;
  else delete next.metadata.ownerReferences;
  return next;
}
