/**
 * @module
 * PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and the subset of
 * strategic merge patch that kubectl produces for built-in types: lists merged by
 * their patchMergeKey (containers/volumes/env by name, volumeMounts by mountPath,
 * container ports by containerPort, service ports by port, conditions/addresses by
 * type…), primitive-list merge for finalizers, and the `$patch` (replace/delete/merge),
 * `$retainKeys`, `$setElementOrder/…` and `$deleteFromPrimitiveList/…` directives.
 */
import { ApiError, errors } from './errors.js';
import type { Json, JsonObject } from './types.js';

const isObj = (v: unknown): v is JsonObject => v !== null && typeof v === 'object' && !Array.isArray(v);

export function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObj(patch)) return patch;
  const out: JsonObject = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function unescapePtr(s: string): string {
  return s.replace(/~1/g, '/').replace(/~0/g, '~');
}

function parsePointer(p: unknown): string[] {
  if (typeof p !== 'string' || (p !== '' && !p.startsWith('/'))) throw errors.badRequest(`invalid JSON pointer ${JSON.stringify(p)}`);
  return p === '' ? [] : p.slice(1).split('/').map(unescapePtr);
}

function jsonPatchFailure(msg: string): ApiError {
  return new ApiError(422, 'Invalid', `the server rejected our request due to an error in our request: ${msg}`);
}

function getAt(doc: Json, ptr: string[]): Json | undefined {
  let cur: Json | undefined = doc;
  for (const seg of ptr) {
    if (Array.isArray(cur)) cur = cur[Number(seg)];
    else if (isObj(cur)) cur = Object.prototype.hasOwnProperty.call(cur, seg) ? cur[seg] : undefined;
    else return undefined;
  }
  return cur;
}

/** Applies RFC 6902 operations to a deep copy of `doc`. */
export function jsonPatch(doc: Json, ops: Json): Json {
  if (!Array.isArray(ops)) throw errors.badRequest('json patch must be an array of operations');
  let root: Json = structuredClone(doc);
  const parentOf = (ptr: string[], op: string): { parent: Json; key: string } => {
    if (ptr.length === 0) throw jsonPatchFailure(`cannot ${op} at the document root`);
    const parent = getAt(root, ptr.slice(0, -1));
    if (parent === undefined || (typeof parent !== 'object' || parent === null)) {
      throw jsonPatchFailure(`doc is missing path: "/${ptr.join('/')}": missing value`);
    }
    return { parent, key: ptr.at(-1)! };
  };
  const add = (ptr: string[], value: Json) => {
    if (ptr.length === 0) {
      root = value;
      return;
    }
    const { parent, key } = parentOf(ptr, 'add');
    if (Array.isArray(parent)) {
      const i = key === '-' ? parent.length : Number(key);
      if (!Number.isInteger(i) || i < 0 || i > parent.length) throw jsonPatchFailure(`index out of range: ${key}`);
      parent.splice(i, 0, value);
    } else (parent as JsonObject)[key] = value;
  };
  const remove = (ptr: string[]): Json => {
    const { parent, key } = parentOf(ptr, 'remove');
    if (Array.isArray(parent)) {
      const i = Number(key);
      if (!Number.isInteger(i) || i < 0 || i >= parent.length) throw jsonPatchFailure(`index out of range: ${key}`);
      return parent.splice(i, 1)[0]!;
    }
    const o = parent as JsonObject;
    if (!Object.prototype.hasOwnProperty.call(o, key)) throw jsonPatchFailure(`unable to remove nonexistent key: ${key}: missing value`);
    const v = o[key]!;
    delete o[key];
    return v;
  };
  for (const op of ops) {
    if (!isObj(op) || typeof op.op !== 'string') throw errors.badRequest('invalid json patch operation');
    const path = parsePointer(op.path);
    switch (op.op) {
      case 'add':
        if (!('value' in op)) throw errors.badRequest('json patch add requires a value');
        add(path, structuredClone(op.value!));
        break;
      case 'remove':
        remove(path);
        break;
      case 'replace':
        if (!('value' in op)) throw errors.badRequest('json patch replace requires a value');
        if (path.length === 0) root = structuredClone(op.value!);
        else {
          remove(path);
          add(path, structuredClone(op.value!));
        }
        break;
      case 'move': {
        const v = remove(parsePointer(op.from));
        add(path, v);
        break;
      }
      case 'copy': {
        const v = getAt(root, parsePointer(op.from));
        if (v === undefined) throw jsonPatchFailure(`copy from missing path ${String(op.from)}`);
        add(path, structuredClone(v));
        break;
      }
      case 'test': {
        const v = getAt(root, path);
        if (JSON.stringify(v) !== JSON.stringify(op.value)) throw jsonPatchFailure(`testing value /${path.join('/')} failed: test failed`);
        break;
      }
      default:
        throw errors.badRequest(`unexpected json patch operation "${op.op}"`);
    }
  }
  return root;
}

type MergeKey = string | '$primitive' | undefined;

/** patchMergeKey of the list at `path` (field names, root first) in a built-in `kind`. */
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
      return path.length === 2 && path[0] === 'metadata' ? '$primitive' : undefined;
    default:
      return undefined;
  }
}

const DIRECTIVE_ORDER = '$setElementOrder/';
const DIRECTIVE_DELETE_PRIM = '$deleteFromPrimitiveList/';

/** Strategic merge patch of `orig` by `patch` for a built-in `kind`. Returns a new value. */
export function strategicMergePatch(kind: string, orig: Json | undefined, patch: Json): Json {
  const r = smpValue(kind, orig, patch, []);
  return r === undefined ? {} : r;
}

function smpValue(kind: string, orig: Json | undefined, patch: Json, path: string[]): Json | undefined {
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
      const cur = out[field];
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
    if (Array.isArray(v)) {
      out[k] = mergeList(kind, out[k], v, childPath);
    } else if (isObj(v)) {
      const merged = smpValue(kind, out[k], v, childPath);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    } else {
      out[k] = v;
    }
  }
  for (const [field, order] of orders) {
    const list = out[field];
    const mk = mergeKeyFor(kind, [...path, field]);
    if (!Array.isArray(list)) continue;
    const keyOf = (x: Json) => (mk && mk !== '$primitive' && isObj(x) ? JSON.stringify(x[mk]) : JSON.stringify(x));
    const rank = new Map(order.map((x, i) => [keyOf(x), i]));
    out[field] = [...list].sort((a, b) => (rank.get(keyOf(a)) ?? Infinity) - (rank.get(keyOf(b)) ?? Infinity));
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
  for (const [k, x] of Object.entries(v)) if (!k.startsWith('$')) out[k] = stripDirectives(x);
  return out;
}

function mergeList(kind: string, orig: Json | undefined, patch: Json[], path: string[]): Json[] {
  const mk = mergeKeyFor(kind, path);
  // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
  if (patch.some((e) => isObj(e) && e.$patch === 'replace' && Object.keys(e).length === 1)) {
    return patch.filter((e) => !(isObj(e) && e.$patch === 'replace')).map(stripDirectives);
  }
  if (mk === undefined) return patch.map(stripDirectives);
  const base = Array.isArray(orig) ? [...orig] : [];
  if (mk === '$primitive') {
    const seen = new Set(base.map((x) => JSON.stringify(x)));
    for (const x of patch) if (!seen.has(JSON.stringify(x))) base.push(x);
    return base;
  }
  for (const item of patch) {
    if (!isObj(item)) {
      base.push(item);
      continue;
    }
    const keyVal = JSON.stringify(item[mk]);
    const idx = base.findIndex((x) => isObj(x) && JSON.stringify(x[mk]) === keyVal);
    if (item.$patch === 'delete') {
      if (idx >= 0) base.splice(idx, 1);
      continue;
    }
    if (idx >= 0) {
      const merged = smpValue(kind, base[idx], item, path);
      if (merged === undefined) base.splice(idx, 1);
      else base[idx] = merged;
    } else {
      base.push(stripDirectives(item));
    }
  }
  return base;
}
