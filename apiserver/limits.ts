/**
 * @module
 * Limits on the work one request can make the control plane do. Each keeps a single
 * request's CPU and memory proportional to its body, so one client cannot freeze the
 * event loop or exhaust the heap. Listed with their reasons in docs/apiserver.md
 * ("Limits on a single request"); values follow kube-apiserver where it has one.
 */

/** Request bodies (kube-apiserver's MaxRequestBodyBytes). Larger → 413. */
export const MAX_BODY_BYTES = 3 * 1024 * 1024;

/**
 * Nesting depth of any decoded body (JSON, YAML, protobuf) and of a patch result. Go's
 * encoding/json allows 10000, but V8's own recursion (JSON.stringify, structuredClone)
 * fails at about 3000–4000 levels, and no Kubernetes object comes near 100. Deeper → 400
 * (422 for a patch result).
 */
export const MAX_JSON_DEPTH = 1000;

/** Operations in one JSON patch (kube-apiserver's maxJSONPatchOperations). More → 413. */
export const MAX_JSON_PATCH_OPERATIONS = 10000;

/**
 * Bytes (JSON text) that the `copy` operations of one JSON patch may add, summed
 * (kube-apiserver's JSONPatchMaxCopyBytes). More → 422.
 */
export const MAX_JSON_PATCH_COPY_BYTES = 3 * 1024 * 1024;

/**
 * Array elements that the operations of one JSON patch may shift by inserting or removing
 * in the middle of arrays, summed (10000 inserts at the front of a 1.5-million-element
 * array would otherwise take seconds). More → 422.
 */
export const MAX_JSON_PATCH_ARRAY_SHIFTS = 32 * 1024 * 1024;

/** A stored object as JSON text after a patch or schema defaulting. Larger → 413. */
export const MAX_OBJECT_BYTES = MAX_BODY_BYTES;

/** Bytes (JSON text) that CRD schema `default`s may add to one custom resource. More → 422. */
export const MAX_DEFAULTED_BYTES = MAX_BODY_BYTES;

/**
 * Work units (UTF-16 length of the string × instructions of the compiled RE2 program)
 * that schema `pattern`s may spend on one object. RE2 is linear in the input, but the
 * constant is the program size (up to ~1000 for `a{1000}`), so the product is bounded.
 * More → 422.
 */
export const MAX_PATTERN_WORK = 32 * 1024 * 1024;

/** ConfigMap data + binaryData, and Secret data (decoded), in bytes (core/v1 MaxConfigMapSize/MaxSecretSize). */
export const MAX_CONFIG_DATA_BYTES = 1024 * 1024;

/**
 * How long a list or watch from a resourceVersion the store has not reached waits for it
 * before answering 504 Timeout "Too large resource version" (kube-apiserver's watch cache
 * blockTimeout).
 */
export const RESOURCE_VERSION_WAIT_MS = 3000;

/** Nesting depth of `value` (a scalar is 0, `[]` and `{}` are 1), computed without recursion. */
export function jsonDepth(value: unknown, stopAbove = Infinity): number {
  let max = 0;
  // Two parallel stacks (no tuple per node): containers still to visit and their depths.
  const values: object[] = [];
  const depths: number[] = [];
  if (value !== null && typeof value === 'object') {
    values.push(value);
    depths.push(1);
  }
  while (values.length > 0) {
    const v = values.pop()!;
    const d = depths.pop()!;
    if (d > max) {
      max = d;
      if (max > stopAbove) return max;
    }
    if (Array.isArray(v)) {
      for (const x of v as unknown[]) {
        if (x !== null && typeof x === 'object') {
          values.push(x);
          depths.push(d + 1);
        }
      }
    } else {
      for (const k in v) {
        const x = (v as Record<string, unknown>)[k];
        if (x !== null && typeof x === 'object' && Object.hasOwn(v, k)) {
          values.push(x);
          depths.push(d + 1);
        }
      }
    }
  }
  return max;
}
