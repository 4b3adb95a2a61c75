/**
 * @module
 * Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
 * into the JSON object a JSON body of the same Go object has, so that they go through
 * exactly the same validation/storage/watch path.
 *
 * Wire format: the 4-byte magic `k8s\0`, then a `runtime.Unknown` {1 typeMeta
 * {apiVersion, kind}, 2 raw (the typed object's protobuf), 3 contentEncoding,
 * 4 contentType}. The messages are decoded with protobufjs from `k8s-schema.json`, a
 * descriptor transcribed from the real `generated.proto` files (see README.md), which
 * also carries, per field, the JSON facts of the Go struct tags: the JSON name where it
 * differs (`$ref`, `x-kubernetes-*`), `json:",inline"` embedding, and whether a zero
 * scalar present on the wire is kept (`k8s_zero`: a Go pointer, or a field without
 * `omitempty`) or dropped (gogo writes every non-pointer scalar, `omitempty` drops zeros).
 *
 * Exactness over leniency: a field number the schema does not know, anywhere in the
 * object, is a {@link ProtobufUnsupportedError} (HTTP 415) naming the message and the
 * field, never a silent drop; a known field with the wrong wire type, truncation,
 * bad lengths, nesting deeper than protobufjs's recursion limit (100), out-of-range
 * int64, non-finite doubles, timestamps outside years 1–9999, invalid embedded JSON
 * → {@link ProtobufDecodeError} (HTTP 400). Kinds without a schema here (custom
 * resources) yield only their type; the HTTP layer answers 415 for them.
 */
import protobuf from 'protobufjs/light.js';
import { ProtobufDecodeError, ProtobufUnsupportedError } from '../../shared/errors/index.js';
import schemaJson from './k8s-schema.json' with { type: 'json' };

export { ProtobufDecodeError, ProtobufUnsupportedError };
/** A body that is not valid protobuf (the HTTP layer answers 400 BadRequest). */
export const ProtobufError = ProtobufDecodeError;

export const PROTOBUF_MEDIA_TYPE = 'application/vnd.kubernetes.protobuf';
/** Where the schema comes from (error messages, docs). */
export const SCHEMA_SOURCE = 'k8s.io/api, k8s.io/apimachinery and k8s.io/apiextensions-apiserver v0.35.7';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]); // "k8s\0"

const CORE = 'k8s.io.api.core.v1.';
const META = 'k8s.io.apimachinery.pkg.apis.meta.v1.';
const EXT = 'k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.';
const UNKNOWN = 'k8s.io.apimachinery.pkg.runtime.Unknown';

/** `apiVersion/kind` → message, for every kind the server serves (registry.ts builtinTypes). */
const KINDS: Readonly<Record<string, string>> = {
  'v1/Namespace': `${CORE}Namespace`,
  'v1/Node': `${CORE}Node`,
  'v1/Pod': `${CORE}Pod`,
  'v1/ConfigMap': `${CORE}ConfigMap`,
  'v1/Secret': `${CORE}Secret`,
  'v1/Service': `${CORE}Service`,
  'v1/Endpoints': `${CORE}Endpoints`,
  'v1/Event': `${CORE}Event`,
  'v1/Binding': `${CORE}Binding`,
  'v1/ServiceAccount': `${CORE}ServiceAccount`,
  'coordination.k8s.io/v1/Lease': 'k8s.io.api.coordination.v1.Lease',
  'apiextensions.k8s.io/v1/CustomResourceDefinition': `${EXT}CustomResourceDefinition`,
};

/** `apiVersion/kind` pairs accepted as protobuf (DeleteOptions in any group version). */
export const PROTOBUF_KINDS: readonly string[] = [...Object.keys(KINDS), '*/DeleteOptions'];

// ------------------------------------------------------------------ schema

let root: protobuf.Root | undefined;
/** The descriptor, loaded on first use (≈70 KB of JSON; a few ms). */
function schema(): protobuf.Root {
  if (!root) {
    // int64 fields must come back as Long (exact), never as a lossy double.
    if (!protobuf.util.Long) throw new Error('protobufjs was loaded without long.js: int64 fields cannot be decoded exactly');
    root = protobuf.Root.fromJSON(schemaJson as protobuf.INamespace);
    root.resolveAll();
  }
  return root;
}

function type(name: string): protobuf.Type {
  return schema().lookupType(name);
}

// ------------------------------------------------------------------ JSON mapping

type JsonValue = string | number | boolean | null | JsonValue[] | { [k: string]: JsonValue };
type JsonObj = { [k: string]: JsonValue };
/** A decoded protobufjs message: fields by proto name, plus `$unknowns` when any were seen. */
type Msg = Record<string, unknown> & { $unknowns?: Uint8Array[] };
type Long = protobuf.Long;

/** Field facts from the Go struct tags, stored as field options by the transcription. */
interface K8sFieldOptions {
  /** A map<string, V>, transcribed as its wire form (repeated entries). */
  k8s_map?: boolean;
  k8s_json?: string;
  k8s_inline?: boolean;
  k8s_zero?: boolean;
}
const opts = (f: protobuf.Field): K8sFieldOptions => (f.options ?? {}) as K8sFieldOptions;

const has = (m: object, k: string): boolean => Object.hasOwn(m, k);

/** Sets a key on a JSON object even when it is `__proto__` (a label key can be). */
function put(o: JsonObj, k: string, v: JsonValue): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function isLong(v: unknown): v is Long {
  return typeof v === 'object' && v !== null && typeof (v as Long).low === 'number' && typeof (v as Long).high === 'number';
}

/** An int64 field's value exactly (protobufjs gives a Long {low, high, unsigned}). */
function bigint(v: unknown): bigint {
  if (!isLong(v)) return BigInt(v as number);
  const bits = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
  return v.unsigned ? bits : BigInt.asIntN(64, bits);
}

/** An int64 as a JSON number; beyond ±2^53 it could not be represented exactly → 400. */
function int64(v: unknown, at: string): number {
  const n = bigint(v);
  if (n > MAX_SAFE || n < -MAX_SAFE) throw new ProtobufDecodeError(`${at}: integer ${n} is out of the exactly representable range`);
  return Number(n);
}

function isZero(v: unknown): boolean {
  if (v === '' || v === 0 || v === false) return true;
  if (isLong(v)) return v.low === 0 && v.high === 0;
  if (v instanceof Uint8Array) return v.length === 0;
  return false;
}

/** The first unknown field of a message: its number and wire type, read from the preserved bytes. */
function unknownField(raw: Uint8Array): [number, number] {
  const tag = protobuf.Reader.create(raw).uint32();
  return [tag >>> 3, tag & 7];
}

function checkUnknowns(t: protobuf.Type, m: Msg, at: string): void {
  const u = has(m, '$unknowns') ? m.$unknowns : undefined;
  if (!u || u.length === 0) return;
  const [num, wt] = unknownField(u[0]!);
  const where = `${at || 'the object'} (message ${t.fullName.slice(1)})`;
  const known = t.fieldsById[num];
  if (known) throw new ProtobufDecodeError(`${where}: field ${num} (${known.name}) has wire type ${wt}, which does not match its type ${known.type}`);
  throw new ProtobufUnsupportedError(
    `${where} carries protobuf field number ${num} (wire type ${wt}), which is not in this server's schema (${SCHEMA_SOURCE}); refusing rather than dropping it: send the object as application/json`,
  );
}

const EPOCH_ZERO = -62135596800n; // Go's zero time.Time, 0001-01-01T00:00:00Z

/** metav1.Time / MicroTime {1 seconds, 2 nanos} → RFC 3339 (Time: seconds; MicroTime: microseconds), or null for the zero time. */
function timestamp(t: protobuf.Type, m: Msg, micro: boolean, at: string): string | null {
  checkUnknowns(t, m, at);
  // An empty message is Go's zero time (JSON null): Time.Unmarshal of zero bytes.
  if (!has(m, 'seconds') && !has(m, 'nanos')) return null;
  const seconds = has(m, 'seconds') ? bigint(m.seconds) : 0n;
  const nanos = has(m, 'nanos') ? BigInt(m.nanos as number) : 0n;
  // Time drops the nanoseconds (time_proto.go); MicroTime truncates them toward zero to µs.
  const us = seconds * 1_000_000n + (micro ? nanos / 1000n : 0n);
  if (us === EPOCH_ZERO * 1_000_000n) return null;
  let ms = us / 1000n;
  if (us < 0n && us % 1000n !== 0n) ms -= 1n; // floor
  const rest = Number(us - ms * 1000n); // 0..999 µs
  const d = new Date(Number(ms));
  const year = d.getUTCFullYear();
  if (Number.isNaN(d.getTime()) || year < 1 || year > 9999) throw new ProtobufDecodeError(`${at}: timestamp ${seconds}s is outside years 1–9999`);
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  return micro ? `${iso.slice(0, 23)}${String(rest).padStart(3, '0')}Z` : `${iso.slice(0, 19)}Z`;
}

/** Embedded JSON (`apiextensions.JSON`, `FieldsV1`): the raw bytes must be one JSON value. */
function embeddedJson(raw: Uint8Array | undefined, at: string): JsonValue {
  if (!raw || raw.length === 0) return null; // Go: MarshalJSON of empty raw → null
  try {
    return JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('utf8')) as JsonValue;
  } catch (err) {
    throw new ProtobufDecodeError(`${at}: embedded JSON is not valid: ${(err as Error).message}`);
  }
}

const bytesB64 = (v: Uint8Array): string => Buffer.from(v.buffer, v.byteOffset, v.length).toString('base64');

/** Messages whose JSON form is custom in Go (MarshalJSON): name → converter. Returning undefined omits the field. */
const CUSTOM: Record<string, (t: protobuf.Type, m: Msg, at: string) => JsonValue | undefined> = {
  [`${META}Time`]: (t, m, at) => timestamp(t, m, false, at) ?? undefined,
  [`${META}MicroTime`]: (t, m, at) => timestamp(t, m, true, at) ?? undefined,
  'k8s.io.apimachinery.pkg.api.resource.Quantity': (t, m, at) => {
    checkUnknowns(t, m, at);
    // Quantity.Unmarshal parses the string; an empty message is the zero quantity.
    return has(m, 'string') ? (m.string as string) : '0';
  },
  'k8s.io.apimachinery.pkg.util.intstr.IntOrString': (t, m, at) => {
    checkUnknowns(t, m, at);
    const kind = has(m, 'type') ? int64(m.type, `${at}.type`) : 0;
    if (kind === 0) return has(m, 'intVal') ? (m.intVal as number) : 0;
    if (kind === 1) return has(m, 'strVal') ? (m.strVal as string) : '';
    throw new ProtobufDecodeError(`${at}: IntOrString type ${kind} is neither 0 (int) nor 1 (string)`);
  },
  [`${META}FieldsV1`]: (t, m, at) => {
    checkUnknowns(t, m, at);
    return embeddedJson(m.Raw as Uint8Array | undefined, at);
  },
  [`${EXT}JSON`]: (t, m, at) => {
    checkUnknowns(t, m, at);
    return embeddedJson(m.raw as Uint8Array | undefined, at);
  },
  // JSONSchemaPropsOr*: marshal.go — the array form when it has elements, else the schema, else the fallback.
  [`${EXT}JSONSchemaPropsOrArray`]: (t, m, at) => {
    checkUnknowns(t, m, at);
    const list = m.jSONSchemas as Msg[] | undefined;
    if (list?.length) return list.map((s, i) => message(type(`${EXT}JSONSchemaProps`), s, `${at}[${i}]`));
    return has(m, 'schema') ? message(type(`${EXT}JSONSchemaProps`), m.schema as Msg, at) : null;
  },
  [`${EXT}JSONSchemaPropsOrBool`]: (t, m, at) => {
    checkUnknowns(t, m, at);
    if (has(m, 'schema')) return message(type(`${EXT}JSONSchemaProps`), m.schema as Msg, at);
    return has(m, 'allows') ? (m.allows as boolean) : false;
  },
  [`${EXT}JSONSchemaPropsOrStringArray`]: (t, m, at) => {
    checkUnknowns(t, m, at);
    const list = m.property as string[] | undefined;
    if (list?.length) return [...list];
    return has(m, 'schema') ? message(type(`${EXT}JSONSchemaProps`), m.schema as Msg, at) : null;
  },
};

/** One value of field `f` (an element, for repeated and map fields). */
function value(f: protobuf.Field, v: unknown, at: string): JsonValue | undefined {
  const rt = f.resolvedType;
  if (rt instanceof protobuf.Type) {
    const custom = CUSTOM[rt.fullName.slice(1)];
    return custom ? custom(rt, v as Msg, at) : message(rt, v as Msg, at);
  }
  if (rt) throw new ProtobufDecodeError(`${at}: unexpected enum`); // the k8s schema has none
  switch (f.type) {
    case 'string':
    case 'bool':
    case 'int32':
    case 'uint32':
    case 'sint32':
    case 'fixed32':
    case 'sfixed32':
      return v as string | number | boolean;
    case 'int64':
    case 'uint64':
    case 'sint64':
    case 'fixed64':
    case 'sfixed64':
      return int64(v, at);
    case 'double':
    case 'float':
      if (!Number.isFinite(v as number)) throw new ProtobufDecodeError(`${at}: ${String(v)} is not a JSON number`);
      return v as number;
    case 'bytes':
      return bytesB64(v as Uint8Array);
    default:
      throw new ProtobufDecodeError(`${at}: unsupported field type ${f.type}`);
  }
}

/** A map entry's value; an entry without one holds the value type's zero (as Go decodes it). */
function mapValue(vf: protobuf.Field, e: Msg, at: string): JsonValue {
  if (has(e, 'value')) return value(vf, e.value, at) ?? null;
  if (vf.resolvedType instanceof protobuf.Type) return value(vf, vf.resolvedType.create({}), at) ?? null;
  return value(vf, vf.type === 'bytes' ? new Uint8Array(0) : vf.type === 'string' ? '' : vf.type === 'bool' ? false : 0, at) ?? null;
}

/** A decoded message → its Kubernetes JSON object. */
function message(t: protobuf.Type, m: Msg, at: string, into: JsonObj = {}): JsonObj {
  checkUnknowns(t, m, at);
  for (const f of t.fieldsArray) {
    const name = f.name;
    const o = opts(f);
    const key = o.k8s_json ?? name;
    const here = at ? `${at}.${key}` : key;
    if (o.k8s_map) {
      // map<string, V>, described as its wire form `repeated {1 key, 2 value}`: a later duplicate key wins.
      const entries = m[name] as Msg[] | undefined;
      if (!entries || entries.length === 0) continue;
      const et = f.resolvedType as protobuf.Type;
      const vf = et.fields.value!;
      const out: JsonObj = {};
      for (const [i, e] of entries.entries()) {
        checkUnknowns(et, e, `${here}[${i}]`);
        const k = has(e, 'key') ? (e.key as string) : '';
        put(out, k, mapValue(vf, e, `${here}[${JSON.stringify(k)}]`));
      }
      put(into, key, out);
    } else if (f.repeated) {
      const list = m[name] as unknown[] | undefined;
      if (!list || list.length === 0) continue;
      put(
        into,
        key,
        list.map((v, i) => value(f, v, `${here}[${i}]`) ?? null),
      );
    } else {
      if (!has(m, name)) continue;
      const v = m[name];
      if (o.k8s_inline) {
        // Go's embedded struct with json:",inline": its fields land in this object.
        message(f.resolvedType as protobuf.Type, v as Msg, at, into);
        continue;
      }
      if (!(f.resolvedType instanceof protobuf.Type) && isZero(v) && !o.k8s_zero) continue; // omitempty
      const j = value(f, v, here);
      if (j !== undefined) put(into, key, j);
    }
  }
  return into;
}

// ------------------------------------------------------------------ envelope

export interface DecodedProtobuf {
  apiVersion: string;
  kind: string;
  /** The object in JSON shape, or undefined when its kind has no schema here. */
  object?: Record<string, unknown>;
}

/** True when `body` starts with the Kubernetes protobuf magic. */
export function hasProtobufMagic(body: Buffer): boolean {
  return body.length >= 4 && body.subarray(0, 4).equals(MAGIC);
}

/** protobufjs decode, with unknown fields kept (to be refused) and its errors as 400s. */
function decode(t: protobuf.Type, buf: Uint8Array, what: string): Msg {
  const r = protobuf.Reader.create(buf);
  r.discardUnknown = false;
  try {
    return t.decode(r) as unknown as Msg;
  } catch (err) {
    throw new ProtobufDecodeError(`${what}: ${(err as Error).message}`);
  }
}

/** The message an `apiVersion/kind` decodes with, if the server has a schema for it. */
export function protobufMessageFor(apiVersion: string, kind: string): string | undefined {
  return kind === 'DeleteOptions' ? `${META}DeleteOptions` : KINDS[`${apiVersion}/${kind}`];
}

/**
 * Decodes a Kubernetes protobuf envelope. Returns the typed object as JSON (with
 * `apiVersion`/`kind` from the envelope) when its kind is known; otherwise only the
 * type. Throws {@link ProtobufDecodeError} (malformed) or {@link ProtobufUnsupportedError}
 * (not decodable exactly).
 */
export function decodeProtobufObject(body: Buffer): DecodedProtobuf {
  if (!hasProtobufMagic(body)) throw new ProtobufDecodeError('provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]');
  const ut = type(UNKNOWN);
  const env = decode(ut, body.subarray(4), 'runtime.Unknown envelope');
  checkUnknowns(ut, env, 'the runtime.Unknown envelope');
  const tm = (has(env, 'typeMeta') ? env.typeMeta : {}) as Msg;
  checkUnknowns(type('k8s.io.apimachinery.pkg.runtime.TypeMeta'), tm, 'typeMeta');
  const apiVersion = has(tm, 'apiVersion') ? (tm.apiVersion as string) : '';
  const kind = has(tm, 'kind') ? (tm.kind as string) : '';
  const contentEncoding = has(env, 'contentEncoding') ? (env.contentEncoding as string) : '';
  const contentType = has(env, 'contentType') ? (env.contentType as string) : '';
  if (!kind) throw new ProtobufDecodeError("Object 'Kind' is missing in protobuf data");
  if (contentEncoding) throw new ProtobufDecodeError(`unsupported protobuf contentEncoding "${contentEncoding}"`);
  if (contentType && contentType !== PROTOBUF_MEDIA_TYPE) throw new ProtobufDecodeError(`unsupported protobuf contentType "${contentType}" of the embedded object`);
  const name = protobufMessageFor(apiVersion, kind);
  if (!name) return { apiVersion, kind };
  const t = type(name);
  const raw = has(env, 'raw') ? (env.raw as Uint8Array) : new Uint8Array(0);
  const object = message(t, decode(t, raw, `${apiVersion}/${kind}`), '');
  return { apiVersion, kind, object: { apiVersion, kind, ...object } };
}
