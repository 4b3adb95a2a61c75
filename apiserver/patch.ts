/**
 * @module
 * PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and the subset of
 * strategic merge patch that kubectl produces for built-in types: lists merged by
 * their patchMergeKey (containers/volumes/env by name, volumeMounts by mountPath,
 * container ports by containerPort, service ports by port, conditions/addresses by
 * type…), primitive-list merge for finalizers, and the `$patch` (replace/delete/merge),
 * `$retainKeys`, `$setElementOrder/…` and `$deleteFromPrimitiveList/…` directives. The keys
 * are the same wherever a PodSpec is embedded: a pod's `spec`, a workload's
 * `spec.template.spec`, a CronJob's `spec.jobTemplate.spec.template.spec`.
 */
import jsonpatch, { type Operation } from 'fast-json-patch';
import { ApiError, errors } from './errors.js';
import { MAX_JSON_PATCH_ARRAY_SHIFTS, MAX_JSON_PATCH_COPY_BYTES, MAX_JSON_PATCH_OPERATIONS } from './limits.js';
import type { Json, JsonObject } from './types.js';

const isObj = (v: unknown): v is JsonObject => v !== null && typeof v === 'object' && !Array.isArray(v);

const hasOwn = (o: object, k: string): boolean => Object.hasOwn(o, k);

/** Sets `o[k]` as an own data property, even for `__proto__` (as JSON.parse does). */
function setKey(o: JsonObject, k: string, v: Json): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

export function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObj(patch)) return patch;
  const out: JsonObject = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else setKey(out, k, mergePatch(hasOwn(out, k) ? out[k] : undefined, v));
  }
  return out;
}

// ------------------------------------------------------------------ JSON patch (RFC 6902)

function jsonPatchFailure(msg: string): ApiError {
  return new ApiError(422, 'Invalid', `the server rejected our request due to an error in our request: ${msg}`);
}

/** An RFC 6901 array index: `0` or digits without a leading zero. */
const ARRAY_INDEX = /^(0|[1-9][0-9]*)$/;

/** Parses an RFC 6901 pointer into reference tokens; a malformed one is a 422. */
function pointerTokens(p: string, what: string): string[] {
  if (p === '') return [];
  if (!p.startsWith('/')) throw jsonPatchFailure(`${what} ${JSON.stringify(p)} is not a JSON pointer: it must be empty or start with "/"`);
  const tokens = p.slice(1).split('/');
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (/~[^01]|~$/.test(t)) throw jsonPatchFailure(`${what} ${JSON.stringify(p)} is not a JSON pointer: "~" must be followed by "0" or "1"`);
    const u = t.replace(/~1/g, '/').replace(/~0/g, '~');
    // The library refuses these (prototype pollution); say so clearly instead of a TypeError.
    if (u === '__proto__' || (u === 'prototype' && i > 0 && tokens[i - 1] === 'constructor'))
      throw jsonPatchFailure(`${what} ${JSON.stringify(p)}: the key ${JSON.stringify(u)} cannot be patched`);
    tokens[i] = u;
  }
  return tokens;
}

interface Location {
  /** The container holding the target; undefined for the document root. */
  parent?: JsonObject | Json[];
  key: string;
  /** Whether the target exists (false for `-` and for a new object member). */
  exists: boolean;
  /** Elements an insertion (add) or removal at this array index moves. */
  shift: number;
}

/**
 * Resolves a pointer in `doc` the way RFC 6902 requires before the library touches
 * anything: every token but the last must name an existing own member or a canonical
 * array index (RFC 6901: no leading zeros, no signs); the last may be `-` or one past
 * the end only where the operation adds.
 */
function locate(doc: Json, tokens: string[], pointer: string, adds: boolean): Location {
  if (tokens.length === 0) return { key: '', exists: true, shift: 0 };
  let cur: Json = doc;
  for (let i = 0; i < tokens.length - 1; i++) {
    const t = tokens[i]!;
    if (Array.isArray(cur)) {
      if (!ARRAY_INDEX.test(t) || Number(t) >= cur.length) throw jsonPatchFailure(`doc is missing path: ${JSON.stringify(pointer)}: missing value`);
      cur = cur[Number(t)]!;
    } else if (isObj(cur) && hasOwn(cur, t)) {
      cur = cur[t]!;
    } else {
      throw jsonPatchFailure(`doc is missing path: ${JSON.stringify(pointer)}: missing value`);
    }
  }
  const key = tokens.at(-1)!;
  if (Array.isArray(cur)) {
    if (key === '-') {
      if (!adds) throw jsonPatchFailure(`"-" in ${JSON.stringify(pointer)} names no element: it may only be added to`);
      return { parent: cur, key, exists: false, shift: 0 };
    }
    if (!ARRAY_INDEX.test(key))
      throw jsonPatchFailure(`invalid array index ${JSON.stringify(key)} in ${JSON.stringify(pointer)}: an index is "0" or digits without a leading zero`);
    const i = Number(key);
    if (i > cur.length || (i === cur.length && !adds)) throw jsonPatchFailure(`index out of range: ${key} in ${JSON.stringify(pointer)}`);
    return { parent: cur, key, exists: i < cur.length, shift: cur.length - i };
  }
  if (isObj(cur)) return { parent: cur, key, exists: hasOwn(cur, key), shift: 0 };
  throw jsonPatchFailure(`doc is missing path: ${JSON.stringify(pointer)}: missing value`);
}

function valueAt(loc: Location, root: Json): Json {
  if (!loc.parent) return root;
  return Array.isArray(loc.parent) ? loc.parent[Number(loc.key)]! : loc.parent[loc.key]!;
}

/**
 * Applies RFC 6902 operations to `doc`, which is modified in place and must be the
 * caller's own copy; returns the patched document (a new one when the root is replaced).
 * fast-json-patch applies each operation after `locate` has checked it; the limits in
 * limits.ts bound the work: operations, bytes added by `copy`, array elements shifted.
 */
export function jsonPatch(doc: Json, ops: unknown): Json {
  // As kube-apiserver: a body that is not a list of operations is a 400, the number of
  // operations a 413, and an operation that cannot be applied a 422.
  if (!Array.isArray(ops)) throw errors.badRequest('json patch must be an array of operations');
  if (ops.length > MAX_JSON_PATCH_OPERATIONS) {
    throw new ApiError(413, 'RequestEntityTooLarge', `The allowed maximum operations in a JSON patch is ${MAX_JSON_PATCH_OPERATIONS}, got ${ops.length}`);
  }
  let root = doc;
  let copied = 0;
  let shifted = 0;
  const shift = (n: number): void => {
    shifted += n;
    if (shifted > MAX_JSON_PATCH_ARRAY_SHIFTS) {
      throw jsonPatchFailure(`the operations move more than ${MAX_JSON_PATCH_ARRAY_SHIFTS} array elements in total; split the patch or replace the array`);
    }
  };
  const run = (op: Operation, i: number): void => {
    try {
      root = jsonpatch.applyOperation(root, op, false, true, true, i).newDocument;
    } catch (err) {
      if (err instanceof jsonpatch.JsonPatchError) {
        if (err.name === 'TEST_OPERATION_FAILED') throw jsonPatchFailure(`testing value ${op.path} failed: test failed`);
        throw jsonPatchFailure(`operation ${i}: ${err.message.split('\n')[0]}`);
      }
      throw err;
    }
  };
  try {
    ops.forEach((raw: unknown, i: number) => {
      applyOne(raw, i);
    });
  } catch (err) {
    // Moves can nest the document far deeper than any body (each one can double the
    // depth); V8's recursion (JSON.stringify, deep copies) then overflows the stack.
    if (err instanceof RangeError) throw jsonPatchFailure('the operations nest the document too deeply');
    throw err;
  }
  return root;

  function applyOne(raw: unknown, i: number): void {
    try {
      // Shape only (op, path, from, value present and free of undefined); no document
      // given, so the library does not clone the document to check it.
      jsonpatch.validator(raw as Operation, i);
    } catch (err) {
      if (err instanceof jsonpatch.JsonPatchError) throw jsonPatchFailure(`operation ${i}: ${err.message.split('\n')[0]}`);
      throw err;
    }
    const op = raw as Operation & { from?: string };
    const path = pointerTokens(op.path, 'path');
    switch (op.op) {
      case 'add': {
        shift(locate(root, path, op.path, true).shift);
        run(op, i);
        break;
      }
      case 'remove':
      case 'replace': {
        if (op.op === 'remove' && path.length === 0) throw jsonPatchFailure('cannot remove the document root');
        const loc = locate(root, path, op.path, false);
        if (!loc.exists) throw jsonPatchFailure(`${op.op} operation does not apply: doc is missing key: ${op.path}: missing value`);
        if (op.op === 'remove') shift(Math.max(0, loc.shift - 1));
        run(op, i);
        break;
      }
      case 'test': {
        const loc = locate(root, path, op.path, false);
        if (!loc.exists) throw jsonPatchFailure(`testing value ${op.path} failed: test failed`);
        run(op, i);
        break;
      }
      case 'move': {
        const from = pointerTokens(op.from!, 'from');
        if (from.length < path.length && from.every((t, j) => t === path[j])) throw jsonPatchFailure(`cannot move ${op.from} into its own child ${op.path}`);
        const src = locate(root, from, op.from!, false);
        if (!src.exists) throw jsonPatchFailure(`move operation does not apply: doc is missing from path: ${op.from}: missing value`);
        if (op.from === op.path) break;
        // A remove then an add, as RFC 6902 defines move (the library's own move deep-copies
        // the value it overwrites, which a patch could repeat thousands of times).
        const value = valueAt(src, root);
        if (src.parent) shift(Math.max(0, src.shift - 1));
        run({ op: 'remove', path: op.from! }, i);
        shift(locate(root, path, op.path, true).shift);
        run({ op: 'add', path: op.path, value }, i);
        break;
      }
      case 'copy': {
        const from = pointerTokens(op.from!, 'from');
        const src = locate(root, from, op.from!, false);
        if (!src.exists) throw jsonPatchFailure(`copy operation does not apply: doc is missing from path: ${op.from}: missing value`);
        const bytes = JSON.stringify(valueAt(src, root)).length;
        copied += bytes;
        if (copied > MAX_JSON_PATCH_COPY_BYTES) {
          throw jsonPatchFailure(`unable to complete the copy, the accumulated size increase of copy is ${copied}, exceeding the limit ${MAX_JSON_PATCH_COPY_BYTES}`);
        }
        shift(locate(root, path, op.path, true).shift);
        run(op, i);
        break;
      }
      default:
        throw jsonPatchFailure(`operation ${i}: unexpected operation "${String(op.op)}"`);
    }
  }
}

type MergeKey = string | '$primitive' | undefined;

/**
 * patchMergeKey of the list at `path` (field names, root first) in a built-in `kind`. The
 * PodSpec and Container lists are recognised by their own name, at any depth (pod templates);
 * the few names that mean different lists in different places look at the path.
 */
export function mergeKeyFor(kind: string, path: string[]): MergeKey {
  const last = path.at(-1);
  switch (last) {
    case 'containers':
    case 'initContainers':
    case 'ephemeralContainers':
    case 'volumes':
    case 'env':
    case 'imagePullSecrets':
    case 'resourceClaims':
    case 'schedulingGates':
      return 'name';
    case 'volumeMounts':
      return 'mountPath';
    case 'volumeDevices':
      return 'devicePath';
    case 'ports':
      if (kind === 'Service' && path.length === 2 && path[0] === 'spec') return 'port';
      return path.includes('containers') || path.includes('initContainers') || path.includes('ephemeralContainers') ? 'containerPort' : undefined;
    case 'conditions':
    case 'addresses':
      return 'type';
    case 'hostAliases':
      return 'ip';
    case 'ownerReferences':
      return 'uid';
    case 'topologySpreadConstraints':
      return 'topologyKey';
    case 'finalizers':
      // ObjectMeta's, the object's own or a template's (`spec.template.metadata.finalizers`).
      return path.at(-2) === 'metadata' ? '$primitive' : undefined;
    default:
      return undefined;
  }
}

const DIRECTIVE_ORDER = '$setElementOrder/';
const DIRECTIVE_DELETE_PRIM = '$deleteFromPrimitiveList/';

/** Counts the work of a strategic merge patch (a unit seam for tests). */
export interface SmpStats {
  /** Merge-key lookups and comparisons made while merging lists. */
  keyLookups: number;
}

/**
 * Strategic merge patch of `orig` by `patch` for a built-in `kind`. Returns a new value.
 * Linear in the sizes of both: lists are merged through a Map from merge key to position.
 */
export function strategicMergePatch(kind: string, orig: Json | undefined, patch: Json, stats?: SmpStats): Json {
  const r = smpValue(kind, orig, patch, [], stats ?? { keyLookups: 0 });
  return r === undefined ? {} : r;
}

function smpValue(kind: string, orig: Json | undefined, patch: Json, path: string[], stats: SmpStats): Json | undefined {
  if (!isObj(patch)) return patch;
  const directive = patch.$patch;
  if (directive === 'delete') return undefined;
  if (directive === 'replace') {
    const { $patch: _drop, ...rest } = patch;
    void _drop;
    return stripDirectives(rest);
  }
  if (directive !== undefined && directive !== 'merge') throw errors.badRequest(`unknown patch type: ${String(directive)}`);
  const out: JsonObject = isObj(orig) ? { ...orig } : {};
  const orders = new Map<string, Json[]>();
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' || k === '$retainKeys') continue;
    if (k.startsWith(DIRECTIVE_ORDER)) {
      if (Array.isArray(v)) orders.set(k.slice(DIRECTIVE_ORDER.length), v);
      continue;
    }
    if (k.startsWith(DIRECTIVE_DELETE_PRIM)) {
      const field = k.slice(DIRECTIVE_DELETE_PRIM.length);
      const cur = hasOwn(out, field) ? out[field] : undefined;
      if (Array.isArray(cur) && Array.isArray(v)) {
        const drop = new Set(v.map((x) => JSON.stringify(x)));
        out[field] = cur.filter((x) => !drop.has(JSON.stringify(x)));
      }
      continue;
    }
    if (v === null) {
      delete out[k];
      continue;
    }
    const childPath = [...path, k];
    const cur = hasOwn(out, k) ? out[k] : undefined;
    if (Array.isArray(v)) {
      setKey(out, k, mergeList(kind, cur, v, childPath, stats));
    } else if (isObj(v)) {
      const merged = smpValue(kind, cur, v, childPath, stats);
      if (merged === undefined) delete out[k];
      else setKey(out, k, merged);
    } else {
      setKey(out, k, v);
    }
  }
  for (const [field, order] of orders) {
    const list = hasOwn(out, field) ? out[field] : undefined;
    const mk = mergeKeyFor(kind, [...path, field]);
    if (!Array.isArray(list)) continue;
    const keyOf = (x: Json) => (mk && mk !== '$primitive' && isObj(x) ? JSON.stringify(x[mk]) : JSON.stringify(x));
    const rank = new Map<string, number>();
    order.forEach((x, i) => {
      const key = keyOf(x);
      if (!rank.has(key)) rank.set(key, i);
    });
    // Keys computed once per element (not per comparison); stable for unranked elements.
    const decorated = list.map((x, i) => ({ x, r: rank.get(keyOf(x)) ?? Infinity, i }));
    stats.keyLookups += order.length + list.length;
    decorated.sort((a, b) => a.r - b.r || a.i - b.i);
    out[field] = decorated.map((d) => d.x);
  }
  const retain = patch.$retainKeys;
  if (Array.isArray(retain)) {
    const keep = new Set(retain.map(String));
    for (const k of Object.keys(out)) if (!keep.has(k)) delete out[k];
  }
  return out;
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObj(v)) return v;
  const out: JsonObject = {};
  for (const [k, x] of Object.entries(v)) if (!k.startsWith('$')) setKey(out, k, stripDirectives(x));
  return out;
}

/** Marks a merged-away element until the list is compacted once at the end. */
const GONE: unique symbol = Symbol('deleted');

function mergeList(kind: string, orig: Json | undefined, patch: Json[], path: string[], stats: SmpStats): Json[] {
  const mk = mergeKeyFor(kind, path);
  // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
  if (patch.some((e) => isObj(e) && e.$patch === 'replace' && Object.keys(e).length === 1)) {
    return patch.filter((e) => !(isObj(e) && e.$patch === 'replace')).map(stripDirectives);
  }
  if (mk === undefined) return patch.map(stripDirectives);
  const base: (Json | typeof GONE)[] = Array.isArray(orig) ? [...orig] : [];
  if (mk === '$primitive') {
    const seen = new Set(base.map((x) => JSON.stringify(x)));
    for (const x of patch) {
      stats.keyLookups++;
      const key = JSON.stringify(x);
      if (!seen.has(key)) {
        seen.add(key);
        base.push(x);
      }
    }
    return base as Json[];
  }
  // Positions of the elements with each merge key, in list order; `head` is the first one
  // still present (a patch element merges into the first live element with its key).
  const byKey = new Map<string, { at: number[]; head: number }>();
  const index = (key: string, at: number): void => {
    const e = byKey.get(key);
    if (e) e.at.push(at);
    else byKey.set(key, { at: [at], head: 0 });
  };
  base.forEach((x, i) => {
    if (isObj(x)) index(JSON.stringify(x[mk]), i);
  });
  let removed = false;
  for (const item of patch) {
    if (!isObj(item)) {
      base.push(item);
      continue;
    }
    const key = JSON.stringify(item[mk]);
    stats.keyLookups++;
    const e = byKey.get(key);
    const idx = e && e.head < e.at.length ? e.at[e.head]! : -1;
    const drop = (): void => {
      base[idx] = GONE;
      e!.head++;
      removed = true;
    };
    if (item.$patch === 'delete') {
      if (idx >= 0) drop();
      continue;
    }
    if (idx >= 0) {
      const merged = smpValue(kind, base[idx] as Json, item, path, stats);
      if (merged === undefined) drop();
      else base[idx] = merged;
    } else {
      index(key, base.length);
      base.push(stripDirectives(item));
    }
  }
  return (removed ? base.filter((x) => x !== GONE) : base) as Json[];
}
