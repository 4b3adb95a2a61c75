/**
 * @module
 * Taints and tolerations as Kubernetes matches them (k8s.io/api core/v1 Toleration.ToleratesTaint,
 * pkg/apis/core/v1/helper GetMatchingTolerations), and the node taints the control plane's
 * controllers own. Shared by the scheduler, the node lifecycle and the taint-eviction controllers.
 */
import type { KObject } from './types.js';

type R = Record<string, unknown>;

export const TAINT_NOT_READY = 'node.kubernetes.io/not-ready';
export const TAINT_UNREACHABLE = 'node.kubernetes.io/unreachable';
export const TAINT_UNSCHEDULABLE = 'node.kubernetes.io/unschedulable';
export const TAINT_MEMORY_PRESSURE = 'node.kubernetes.io/memory-pressure';
export const TAINT_DISK_PRESSURE = 'node.kubernetes.io/disk-pressure';
export const TAINT_PID_PRESSURE = 'node.kubernetes.io/pid-pressure';
export const TAINT_NETWORK_UNAVAILABLE = 'node.kubernetes.io/network-unavailable';
export const TAINT_OUT_OF_SERVICE = 'node.kubernetes.io/out-of-service';

export interface Taint {
  key: string;
  value?: string;
  effect: string;
  timeAdded?: string;
}

export interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
  tolerationSeconds?: number | null;
}

const isObj = (v: unknown): v is R => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The node's spec.taints (well-formed entries only). */
export function taintsOf(node: KObject | undefined): Taint[] {
  const spec = node ? (node as R).spec : undefined;
  const list = isObj(spec) && Array.isArray(spec.taints) ? spec.taints : [];
  return list.filter((t): t is Taint => isObj(t) && typeof t.key === 'string' && typeof t.effect === 'string');
}

/** The pod's spec.tolerations (objects only). */
export function tolerationsOf(pod: KObject | undefined): Toleration[] {
  const spec = pod ? (pod as R).spec : undefined;
  const list = isObj(spec) && Array.isArray(spec.tolerations) ? spec.tolerations : [];
  return list.filter((t): t is Toleration => isObj(t));
}

/**
 * Whether `t` tolerates `taint`: an empty effect matches every effect, an empty key every key;
 * operator Exists matches any value, Equal (or empty) the same value. Other operators (the
 * alpha Gt/Lt of 1.35, off by default) tolerate nothing.
 */
export function toleratesTaint(t: Toleration, taint: Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  switch (t.operator ?? '') {
    case '':
    case 'Equal':
      return (t.value ?? '') === (taint.value ?? '');
    case 'Exists':
      return true;
    default:
      return false;
  }
}

/**
 * For each taint, the first toleration that tolerates it (Kubernetes' GetMatchingTolerations);
 * `undefined` when some taint is not tolerated.
 */
export function matchingTolerations(taints: Taint[], tolerations: Toleration[]): Toleration[] | undefined {
  const used: Toleration[] = [];
  for (const taint of taints) {
    const t = tolerations.find((x) => toleratesTaint(x, taint));
    if (!t) return undefined;
    used.push(t);
  }
  return used;
}

/**
 * The taint manager's getMinTolerationTime: the smallest tolerationSeconds among `used` in ms,
 * 0 when one is ≤ 0 (or `used` is empty), -1 when none has a limit (tolerated forever).
 */
export function minTolerationMs(used: Toleration[]): number {
  if (used.length === 0) return 0;
  let min = Number.POSITIVE_INFINITY;
  for (const t of used) {
    if (typeof t.tolerationSeconds !== 'number') continue;
    if (t.tolerationSeconds <= 0) return 0;
    min = Math.min(min, t.tolerationSeconds);
  }
  return min === Number.POSITIVE_INFINITY ? -1 : min * 1000;
}

export function sameTaint(a: Taint, b: Taint): boolean {
  return a.key === b.key && a.effect === b.effect;
}

/** NoExecute taints compared as Kubernetes' taint manager does (key, value, effect, timeAdded). */
export function noExecuteTaints(node: KObject | undefined): Taint[] {
  return taintsOf(node).filter((t) => t.effect === 'NoExecute');
}

export function taintListsEqual(a: Taint[], b: Taint[]): boolean {
  return a.length === b.length && a.every((t, i) => t.key === b[i]!.key && (t.value ?? '') === (b[i]!.value ?? '') && t.effect === b[i]!.effect && t.timeAdded === b[i]!.timeAdded);
}
