/**
 * @module
 * Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
 * into the JSON object shape a JSON body of the same object has, so that they go
 * through exactly the same validation/storage/watch path.
 *
 * kubectl's typed clients (`kubectl create configmap|secret|namespace|serviceaccount`)
 * and client-go programs send protobuf. The format: the 4-byte magic `k8s\0`, then a
 * `runtime.Unknown` message {1 typeMeta {1 apiVersion, 2 kind}, 2 raw (the typed
 * object's protobuf), 3 contentEncoding, 4 contentType}.
 *
 * A small bounds-checked proto2 wire reader plus per-type field tables (numbers from
 * `k8s.io/api/core/v1/generated.proto` and `k8s.io/apimachinery/pkg/apis/meta/v1/
 * generated.proto`). Fields not in the tables are skipped, as the wire format allows.
 * Go's `omitempty` is mimicked: gogo-protobuf always writes non-pointer scalars, so
 * an empty string / 0 / false is dropped unless the Go field is a pointer (`opt`),
 * where presence on the wire means "set". Any malformation → {@link ProtobufError}.
 */

/** A body that is not valid protobuf (the HTTP layer answers 400 BadRequest). */
export class ProtobufError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtobufError';
  }
}

export const PROTOBUF_MEDIA_TYPE = 'application/vnd.kubernetes.protobuf';
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]); // "k8s\0"
const MAX_GROUP_DEPTH = 64;

// ------------------------------------------------------------------ wire reader

const WT_VARINT = 0;
const WT_I64 = 1;
const WT_LEN = 2;
const WT_SGROUP = 3;
const WT_EGROUP = 4;
const WT_I32 = 5;

/** A cursor over `buf[pos, end)`; every read is bounds-checked. */
export class WireReader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  eof(): boolean {
    return this.pos >= this.end;
  }

  /** An unsigned varint as a 64-bit bigint (at most 10 bytes). */
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ProtobufError('unexpected end of data in varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return BigInt.asUintN(64, result);
      shift += 7n;
    }
    throw new ProtobufError('varint longer than 10 bytes');
  }

  /** The length-delimited payload as [start, end) offsets. */
  lengthDelimited(): [number, number] {
    const len = this.varint();
    if (len > BigInt(this.end - this.pos)) throw new ProtobufError('length-delimited field runs past the end of its message');
    const start = this.pos;
    this.pos += Number(len);
    return [start, this.pos];
  }

  fixed(n: 4 | 8): void {
    if (this.end - this.pos < n) throw new ProtobufError(`unexpected end of data in a ${n * 8}-bit field`);
    this.pos += n;
  }

  /** Field number and wire type of the next key. */
  tag(): [number, number] {
    const key = this.varint();
    const field = key >> 3n;
    const wt = Number(key & 7n);
    if (field === 0n || field > 536870911n) throw new ProtobufError(`invalid field number ${field}`);
    return [Number(field), wt];
  }

  /** Skips a field's value of wire type `wt` (an unknown field). */
  skip(wt: number, field: number, depth = 0): void {
    switch (wt) {
      case WT_VARINT:
        this.varint();
        return;
      case WT_I64:
        this.fixed(8);
        return;
      case WT_LEN:
        this.lengthDelimited();
        return;
      case WT_I32:
        this.fixed(4);
        return;
      case WT_SGROUP: {
        if (depth >= MAX_GROUP_DEPTH) throw new ProtobufError('groups nested too deeply');
        for (;;) {
          if (this.eof()) throw new ProtobufError('unterminated group');
          const [f, w] = this.tag();
          if (w === WT_EGROUP) {
            if (f !== field) throw new ProtobufError('mismatched end-group');
            return;
          }
          this.skip(w, f, depth + 1);
        }
      }
      default:
        throw new ProtobufError(`invalid wire type ${wt}`);
    }
  }
}

// ------------------------------------------------------------------ schema

type Scalar = 'string' | 'bytes' | 'bool' | 'int32' | 'int64' | 'time' | 'quantity';

interface Field {
  /** JSON name. */
  name: string;
  type: Scalar | Message;
  repeated?: boolean;
  /** proto2 map<string, V>: repeated entries {1 key, 2 value}. */
  map?: boolean;
  /** Go pointer field: keep a zero value that is present on the wire. */
  opt?: boolean;
  /** Go embedded struct (`json:",inline"`): its fields land in the parent object. */
  inline?: boolean;
}

/** Field number → field. A getter for forward references between messages. */
type Message = { readonly fields: Readonly<Record<number, Field>> };

const msg = (fields: () => Record<number, Field>): Message => {
  let cache: Record<number, Field> | undefined;
  return {
    get fields() {
      return (cache ??= fields());
    },
  };
};

const S = (name: string, extra: Partial<Field> = {}): Field => ({ name, type: 'string', ...extra });
const B = (name: string, extra: Partial<Field> = {}): Field => ({ name, type: 'bool', ...extra });
const I32 = (name: string, extra: Partial<Field> = {}): Field => ({ name, type: 'int32', ...extra });
const I64 = (name: string, extra: Partial<Field> = {}): Field => ({ name, type: 'int64', ...extra });
const M = (name: string, type: Message, extra: Partial<Field> = {}): Field => ({ name, type, ...extra });
const STRMAP = (name: string): Field => ({ name, type: 'string', map: true });
const STRS = (name: string): Field => ({ name, type: 'string', repeated: true });

// meta/v1
const OwnerReference = msg(() => ({ 5: S('apiVersion'), 1: S('kind'), 3: S('name'), 4: S('uid'), 6: B('controller', { opt: true }), 7: B('blockOwnerDeletion', { opt: true }) }));
const ObjectMeta = msg(() => ({
  1: S('name'),
  2: S('generateName'),
  3: S('namespace'),
  4: S('selfLink'),
  5: S('uid'),
  6: S('resourceVersion'),
  7: I64('generation'),
  8: { name: 'creationTimestamp', type: 'time' },
  9: { name: 'deletionTimestamp', type: 'time' },
  10: I64('deletionGracePeriodSeconds', { opt: true }),
  11: STRMAP('labels'),
  12: STRMAP('annotations'),
  13: M('ownerReferences', OwnerReference, { repeated: true }),
  14: STRS('finalizers'),
  // 17 managedFields: skipped (the server records its own).
}));
const Preconditions = msg(() => ({ 1: S('uid', { opt: true }), 2: S('resourceVersion', { opt: true }) }));
const DeleteOptions = msg(() => ({
  1: I64('gracePeriodSeconds', { opt: true }),
  2: M('preconditions', Preconditions),
  3: B('orphanDependents', { opt: true }),
  4: S('propagationPolicy', { opt: true }),
  5: STRS('dryRun'),
}));

// core/v1
const LocalObjectReference = msg(() => ({ 1: S('name') }));
const ObjectReference = msg(() => ({ 1: S('kind'), 2: S('namespace'), 3: S('name'), 4: S('uid'), 5: S('apiVersion'), 6: S('resourceVersion'), 7: S('fieldPath') }));
const ConfigMap = msg(() => ({ 1: M('metadata', ObjectMeta), 4: B('immutable', { opt: true }), 2: STRMAP('data'), 3: { name: 'binaryData', type: 'bytes', map: true } }));
const Secret = msg(() => ({ 1: M('metadata', ObjectMeta), 5: B('immutable', { opt: true }), 2: { name: 'data', type: 'bytes', map: true }, 4: STRMAP('stringData'), 3: S('type') }));
const NamespaceSpec = msg(() => ({ 1: STRS('finalizers') }));
const NamespaceStatus = msg(() => ({ 1: S('phase') }));
const Namespace = msg(() => ({ 1: M('metadata', ObjectMeta), 2: M('spec', NamespaceSpec), 3: M('status', NamespaceStatus) }));
const ServiceAccount = msg(() => ({
  1: M('metadata', ObjectMeta),
  2: M('secrets', ObjectReference, { repeated: true }),
  3: M('imagePullSecrets', LocalObjectReference, { repeated: true }),
  4: B('automountServiceAccountToken', { opt: true }),
}));
const ContainerPort = msg(() => ({ 1: S('name'), 2: I32('hostPort'), 3: I32('containerPort'), 4: S('protocol'), 5: S('hostIP') }));
const ObjectFieldSelector = msg(() => ({ 1: S('apiVersion'), 2: S('fieldPath') }));
const ResourceFieldSelector = msg(() => ({ 1: S('containerName'), 2: S('resource'), 3: { name: 'divisor', type: 'quantity' } }));
const KeySelector = msg(() => ({ 1: M('', LocalObjectReference, { inline: true }), 2: S('key'), 3: B('optional', { opt: true }) }));
const EnvVarSource = msg(() => ({ 1: M('fieldRef', ObjectFieldSelector), 2: M('resourceFieldRef', ResourceFieldSelector), 3: M('configMapKeyRef', KeySelector), 4: M('secretKeyRef', KeySelector) }));
const EnvVar = msg(() => ({ 1: S('name'), 2: S('value'), 3: M('valueFrom', EnvVarSource) }));
const EnvSource = msg(() => ({ 1: M('', LocalObjectReference, { inline: true }), 2: B('optional', { opt: true }) }));
const EnvFromSource = msg(() => ({ 1: S('prefix'), 2: M('configMapRef', EnvSource), 3: M('secretRef', EnvSource) }));
const ResourceRequirements = msg(() => ({ 1: { name: 'limits', type: 'quantity', map: true }, 2: { name: 'requests', type: 'quantity', map: true } }));
const VolumeMount = msg(() => ({ 1: S('name'), 2: B('readOnly'), 3: S('mountPath'), 4: S('subPath'), 5: S('mountPropagation', { opt: true }), 6: S('subPathExpr') }));
const Container = msg(() => ({
  1: S('name'),
  2: S('image'),
  3: STRS('command'),
  4: STRS('args'),
  5: S('workingDir'),
  6: M('ports', ContainerPort, { repeated: true }),
  19: M('envFrom', EnvFromSource, { repeated: true }),
  7: M('env', EnvVar, { repeated: true }),
  8: M('resources', ResourceRequirements),
  9: M('volumeMounts', VolumeMount, { repeated: true }),
  13: S('terminationMessagePath'),
  20: S('terminationMessagePolicy'),
  14: S('imagePullPolicy'),
  16: B('stdin'),
  17: B('stdinOnce'),
  18: B('tty'),
}));
const KeyToPath = msg(() => ({ 1: S('key'), 2: S('path'), 3: I32('mode', { opt: true }) }));
const HostPathVolumeSource = msg(() => ({ 1: S('path'), 2: S('type', { opt: true }) }));
const EmptyDirVolumeSource = msg(() => ({ 1: S('medium'), 2: { name: 'sizeLimit', type: 'quantity' } }));
const SecretVolumeSource = msg(() => ({ 1: S('secretName'), 2: M('items', KeyToPath, { repeated: true }), 3: I32('defaultMode', { opt: true }), 4: B('optional', { opt: true }) }));
const ConfigMapVolumeSource = msg(() => ({
  1: M('', LocalObjectReference, { inline: true }),
  2: M('items', KeyToPath, { repeated: true }),
  3: I32('defaultMode', { opt: true }),
  4: B('optional', { opt: true }),
}));
const PvcVolumeSource = msg(() => ({ 1: S('claimName'), 2: B('readOnly') }));
const VolumeSource = msg(() => ({
  1: M('hostPath', HostPathVolumeSource),
  2: M('emptyDir', EmptyDirVolumeSource),
  6: M('secret', SecretVolumeSource),
  10: M('persistentVolumeClaim', PvcVolumeSource),
  19: M('configMap', ConfigMapVolumeSource),
}));
const Volume = msg(() => ({ 1: S('name'), 2: M('', VolumeSource, { inline: true }) }));
const Toleration = msg(() => ({ 1: S('key'), 2: S('operator'), 3: S('value'), 4: S('effect'), 5: I64('tolerationSeconds', { opt: true }) }));
const HostAlias = msg(() => ({ 1: S('ip'), 2: STRS('hostnames') }));
const PodSpec = msg(() => ({
  1: M('volumes', Volume, { repeated: true }),
  20: M('initContainers', Container, { repeated: true }),
  2: M('containers', Container, { repeated: true }),
  3: S('restartPolicy'),
  4: I64('terminationGracePeriodSeconds', { opt: true }),
  5: I64('activeDeadlineSeconds', { opt: true }),
  6: S('dnsPolicy'),
  7: STRMAP('nodeSelector'),
  8: S('serviceAccountName'),
  9: S('serviceAccount'),
  21: B('automountServiceAccountToken', { opt: true }),
  10: S('nodeName'),
  11: B('hostNetwork'),
  12: B('hostPID'),
  13: B('hostIPC'),
  15: M('imagePullSecrets', LocalObjectReference, { repeated: true }),
  16: S('hostname'),
  17: S('subdomain'),
  19: S('schedulerName'),
  22: M('tolerations', Toleration, { repeated: true }),
  23: M('hostAliases', HostAlias, { repeated: true }),
  24: S('priorityClassName'),
  25: I32('priority', { opt: true }),
  30: B('enableServiceLinks', { opt: true }),
}));
const PodStatus = msg(() => ({ 1: S('phase') }));
const Pod = msg(() => ({ 1: M('metadata', ObjectMeta), 2: M('spec', PodSpec), 3: M('status', PodStatus) }));
const Binding = msg(() => ({ 1: M('metadata', ObjectMeta), 2: M('target', ObjectReference) }));

/** Kinds whose protobuf we decode, by `apiVersion/kind` (DeleteOptions in any group version). */
const KINDS: Record<string, Message> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Pod': Pod,
  'v1/Binding': Binding,
};

/** `apiVersion/kind` pairs accepted as protobuf (for docs and error messages). */
export const PROTOBUF_KINDS = [...Object.keys(KINDS), '*/DeleteOptions'];

// ------------------------------------------------------------------ decoding

type JsonValue = string | number | boolean | null | JsonValue[] | { [k: string]: JsonValue };
type JsonObj = { [k: string]: JsonValue };

function int64(v: bigint, name: string): number {
  const n = BigInt.asIntN(64, v);
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) throw new ProtobufError(`${name}: integer ${n} out of range`);
  return Number(n);
}

function expectWire(got: number, want: number, name: string): void {
  if (got !== want) throw new ProtobufError(`field ${name || '(inline)'}: wrong wire type ${got} (want ${want})`);
}

/** metav1.Time {1 seconds, 2 nanos} → RFC 3339 (second precision, as k8s serialises it); an empty message is the zero time (null → omitted). */
function decodeTime(r: WireReader): string | undefined {
  if (r.eof()) return undefined;
  let seconds = 0n;
  let nanos = 0;
  while (!r.eof()) {
    const [f, wt] = r.tag();
    if (f === 1 && wt === WT_VARINT) seconds = BigInt.asIntN(64, r.varint());
    else if (f === 2 && wt === WT_VARINT) nanos = Number(BigInt.asIntN(32, r.varint()));
    else r.skip(wt, f);
  }
  const ms = Number(seconds) * 1000 + Math.floor(nanos / 1e6);
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) throw new ProtobufError('timestamp out of range');
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** resource.Quantity {1 string}. */
function decodeQuantity(r: WireReader): string {
  let s = '0';
  while (!r.eof()) {
    const [f, wt] = r.tag();
    if (f === 1 && wt === WT_LEN) {
      const [a, b] = r.lengthDelimited();
      s = r.buf.toString('utf8', a, b);
    } else r.skip(wt, f);
  }
  return s;
}

/** Decodes one value of a non-map field whose key has been read. */
function decodeValue(r: WireReader, wt: number, f: Field): JsonValue | undefined {
  const t = f.type;
  if (typeof t === 'object') {
    expectWire(wt, WT_LEN, f.name);
    const [a, b] = r.lengthDelimited();
    return decodeMessage(new WireReader(r.buf, a, b), t);
  }
  switch (t) {
    case 'string':
    case 'bytes': {
      expectWire(wt, WT_LEN, f.name);
      const [a, b] = r.lengthDelimited();
      return t === 'string' ? r.buf.toString('utf8', a, b) : r.buf.subarray(a, b).toString('base64');
    }
    case 'bool':
      expectWire(wt, WT_VARINT, f.name);
      return r.varint() !== 0n;
    case 'int32':
      expectWire(wt, WT_VARINT, f.name);
      return Number(BigInt.asIntN(32, r.varint()));
    case 'int64':
      expectWire(wt, WT_VARINT, f.name);
      return int64(r.varint(), f.name);
    case 'time':
    case 'quantity': {
      expectWire(wt, WT_LEN, f.name);
      const [a, b] = r.lengthDelimited();
      const sub = new WireReader(r.buf, a, b);
      return t === 'time' ? decodeTime(sub) : decodeQuantity(sub);
    }
  }
}

/** A map entry {1 key string, 2 value}. */
function decodeMapEntry(r: WireReader, f: Field): [string, JsonValue] {
  let key = '';
  let value: JsonValue | undefined;
  while (!r.eof()) {
    const [ef, wt] = r.tag();
    if (ef === 1) {
      expectWire(wt, WT_LEN, `${f.name} key`);
      const [a, b] = r.lengthDelimited();
      key = r.buf.toString('utf8', a, b);
    } else if (ef === 2) {
      value = decodeValue(r, wt, f);
    } else r.skip(wt, ef);
  }
  return [key, value ?? (f.type === 'quantity' ? '0' : '')];
}

function isZero(v: JsonValue | undefined): boolean {
  return v === undefined || v === '' || v === 0 || v === false || (Array.isArray(v) && v.length === 0);
}

/** Decodes a message's fields into `into` (proto merge semantics for repeated occurrences). */
function decodeMessage(r: WireReader, m: Message, into: JsonObj = {}): JsonObj {
  const fields = m.fields;
  while (!r.eof()) {
    const [num, wt] = r.tag();
    const f = fields[num];
    if (!f) {
      r.skip(wt, num);
      continue;
    }
    if (f.map) {
      expectWire(wt, WT_LEN, f.name);
      const [a, b] = r.lengthDelimited();
      const [k, v] = decodeMapEntry(new WireReader(r.buf, a, b), f);
      const obj = (into[f.name] ??= {}) as JsonObj;
      obj[k] = v;
      continue;
    }
    if (f.inline) {
      expectWire(wt, WT_LEN, f.name);
      const [a, b] = r.lengthDelimited();
      decodeMessage(new WireReader(r.buf, a, b), f.type as Message, into);
      continue;
    }
    if (typeof f.type === 'object' && !f.repeated && into[f.name] !== undefined) {
      // A message field seen again merges into the earlier value.
      expectWire(wt, WT_LEN, f.name);
      const [a, b] = r.lengthDelimited();
      decodeMessage(new WireReader(r.buf, a, b), f.type, into[f.name] as JsonObj);
      continue;
    }
    const v = decodeValue(r, wt, f);
    if (f.repeated) {
      ((into[f.name] ??= []) as JsonValue[]).push(v ?? null);
    } else if (v === undefined || (!f.opt && isZero(v))) {
      delete into[f.name];
    } else {
      into[f.name] = v;
    }
  }
  return into;
}

export interface DecodedProtobuf {
  apiVersion: string;
  kind: string;
  /** The object in JSON shape, or undefined when its kind has no decoder here. */
  object?: Record<string, unknown>;
}

/** True when `body` starts with the Kubernetes protobuf magic. */
export function hasProtobufMagic(body: Buffer): boolean {
  return body.length >= 4 && body.subarray(0, 4).equals(MAGIC);
}

/**
 * Decodes a Kubernetes protobuf envelope. Returns the typed object as JSON (with
 * `apiVersion`/`kind` from the envelope) when its kind is known; otherwise only the
 * type. Throws {@link ProtobufError} on any malformed input.
 */
export function decodeProtobufObject(body: Buffer): DecodedProtobuf {
  if (!hasProtobufMagic(body)) throw new ProtobufError('provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]');
  const r = new WireReader(body, 4);
  let apiVersion = '';
  let kind = '';
  let raw: [number, number] | undefined;
  let contentEncoding = '';
  while (!r.eof()) {
    const [f, wt] = r.tag();
    if (f === 1) {
      expectWire(wt, WT_LEN, 'typeMeta');
      const [a, b] = r.lengthDelimited();
      const tr = new WireReader(body, a, b);
      while (!tr.eof()) {
        const [tf, twt] = tr.tag();
        if ((tf === 1 || tf === 2) && twt === WT_LEN) {
          const [x, y] = tr.lengthDelimited();
          const s = body.toString('utf8', x, y);
          if (tf === 1) apiVersion = s;
          else kind = s;
        } else tr.skip(twt, tf);
      }
    } else if (f === 2) {
      expectWire(wt, WT_LEN, 'raw');
      raw = r.lengthDelimited();
    } else if (f === 3) {
      expectWire(wt, WT_LEN, 'contentEncoding');
      const [a, b] = r.lengthDelimited();
      contentEncoding = body.toString('utf8', a, b);
    } else r.skip(wt, f);
  }
  if (!kind) throw new ProtobufError("Object 'Kind' is missing in protobuf data");
  if (contentEncoding) throw new ProtobufError(`unsupported protobuf contentEncoding "${contentEncoding}"`);
  const schema = kind === 'DeleteOptions' ? DeleteOptions : KINDS[`${apiVersion}/${kind}`];
  if (!schema) return { apiVersion, kind };
  const [a, b] = raw ?? [0, 0];
  const object = decodeMessage(new WireReader(body, a, b), schema);
  return { apiVersion, kind, object: { apiVersion, kind, ...object } };
}
