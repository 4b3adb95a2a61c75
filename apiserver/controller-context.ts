/**
 * @module
 * What the control plane's kube-controller-manager stand-ins share: the REST layer they write
 * through (so validation, resourceVersions and watch events are the API's own), the clock and
 * the one timer queue, an index of pods by node, and the bookkeeping of writes in flight
 * (`idle()` for tests). Handlers of store events never write synchronously: they note work
 * and run it after the write that triggered them.
 */
import type { Logger } from '../shared/log/index.js';
import { ApiError } from './errors.js';
import type { Rest } from './rest.js';
import type { KObject, ResourceType } from './types.js';
import { rfc3339, type Clock, type TimerQueue } from './timerqueue.js';

export type R = Record<string, unknown>;

export const isObj = (v: unknown): v is R => v !== null && typeof v === 'object' && !Array.isArray(v);
export const arr = (v: unknown): R[] => (Array.isArray(v) ? v.filter(isObj) : []);
export const obj = (v: unknown): R => (isObj(v) ? v : {});

/** `ns/name` of a namespaced object. */
export const keyOf = (o: KObject): string => `${o.metadata.namespace ?? ''}/${o.metadata.name ?? ''}`;

export function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}

export function nodeNameOf(pod: KObject | undefined): string {
  const n = pod ? obj((pod as R).spec).nodeName : undefined;
  return typeof n === 'string' ? n : '';
}

export function conditionOf(o: KObject | undefined, type: string): R | undefined {
  return o ? arr(obj((o as R).status).conditions).find((c) => c.type === type) : undefined;
}

/** The pods bound to each node (`ns/name` keys), kept from the store's events. */
export class PodIndex {
  private readonly byNode = new Map<string, Set<string>>();
  private readonly nodeOf = new Map<string, string>();

  set(key: string, node: string): void {
    const prev = this.nodeOf.get(key);
    if (prev === node) return;
    if (prev !== undefined) {
      const s = this.byNode.get(prev);
      s?.delete(key);
      if (s?.size === 0) this.byNode.delete(prev);
    }
    if (!node) {
      this.nodeOf.delete(key);
      return;
    }
    this.nodeOf.set(key, node);
    let s = this.byNode.get(node);
    if (!s) this.byNode.set(node, (s = new Set()));
    s.add(key);
  }

  onNode(node: string): string[] {
    return [...(this.byNode.get(node) ?? [])];
  }
}

export interface ControllerContext {
  readonly rest: Rest;
  readonly log: Logger;
  readonly clock: Clock;
  readonly timers: TimerQueue;
  readonly types: { readonly pods: ResourceType; readonly nodes: ResourceType; readonly leases: ResourceType };
  readonly pods: PodIndex;
  /** Keeps `p` in the writes `idle()` waits for; a failure is logged with `what`, never thrown. */
  track<T>(p: Promise<T>, what: string): Promise<T | undefined>;
  /** RFC 3339 of the wall clock, for timestamps written into objects. */
  stamp(): string;
}

export function createContext(rest: Rest, log: Logger, clock: Clock, timers: TimerQueue, pods: PodIndex, inFlight: Set<Promise<unknown>>): ControllerContext {
  const reg = rest.registry;
  const lookup = (g: string, r: string): ResourceType => {
    const t = reg.lookup(g, 'v1', r);
    if (!t) throw new TypeError(`built-in resource ${r} is not registered`);
    return t;
  };
  return {
    rest,
    log,
    clock,
    timers,
    types: { pods: lookup('', 'pods'), nodes: lookup('', 'nodes'), leases: lookup('coordination.k8s.io', 'leases') },
    pods,
    stamp: () => rfc3339(clock.wallNow()),
    track<T>(p: Promise<T>, what: string): Promise<T | undefined> {
      const t: Promise<T | undefined> = p
        .catch((err: unknown) => {
          // 404/409 and the like: the object moved on; the next pass or event decides again.
          if (err instanceof ApiError) log.debug(`${what}: ${err.message}`, { status: err.httpCode });
          else log.warn(`${what} failed`, { err });
          return undefined;
        })
        .finally(() => inFlight.delete(t));
      inFlight.add(t);
      return t;
    },
  };
}

/**
 * Sets a pod condition as Kubernetes' UpdatePodCondition does: the transition time moves only
 * when the status changes. Returns false when nothing changed.
 */
export function setPodCondition(status: R, cond: { type: string; status: string; reason?: string; message?: string }, stamp: string): boolean {
  const conds = arr(status.conditions);
  const i = conds.findIndex((c) => c.type === cond.type);
  const prev = i >= 0 ? conds[i] : undefined;
  const next: R = { ...(prev ?? {}), ...cond };
  next.lastTransitionTime = prev && prev.status === cond.status && prev.lastTransitionTime ? prev.lastTransitionTime : stamp;
  if (prev && prev.status === next.status && prev.reason === next.reason && prev.message === next.message && prev.lastTransitionTime === next.lastTransitionTime) return false;
  if (i >= 0) conds[i] = next;
  else conds.push(next);
  status.conditions = conds;
  return true;
}
