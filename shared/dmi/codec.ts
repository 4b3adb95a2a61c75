/**
 * @module
 * gRPC's wire pieces that are not HTTP/2 itself: status codes, the 5-byte length-prefixed message
 * framing (with a streaming decoder that copes with partial frames and several frames per chunk,
 * and refuses an oversized frame from its header, before buffering it), grpc-timeout, the
 * percent-encoding of grpc-message, and protobuf encode/decode of the generated DMI messages into
 * plain objects (int64 → number, bytes → Uint8Array copies, defaults absent).
 *
 * Status for undecodable input: a frame that is not a valid protobuf message of the method's
 * request type is answered 13 INTERNAL, as Go gRPC does for unmarshal failures (so a Go or grpc-js
 * peer sees the status it would from a Go server); a compressed frame is answered 12
 * UNIMPLEMENTED (we announce and accept only `identity`); a frame over the size limit 8
 * RESOURCE_EXHAUSTED; a stream that ends inside a frame 13 INTERNAL.
 */
import type $protobuf from 'protobufjs/minimal.js';
import { DmiError } from '../errors/index.js';
import { google, v1beta1 } from './generated/dmi.js';
import type * as T from './types.js';

/** gRPC status codes (google.golang.org/grpc/codes). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/** A DmiError carrying `status` as both grpcStatus and (when the peer sent one) grpcMessage. */
export function grpcError(status: number, message: string, peerMessage?: string, cause?: unknown): DmiError {
  return new DmiError(message, { grpcStatus: status, grpcMessage: peerMessage, cause });
}

/** The 5-byte prefix: compressed flag 0, big-endian length, then the message. */
export function frameMessage(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/**
 * Splits a byte stream into gRPC messages. `push` returns the messages completed by the chunk;
 * throws DmiError on a compressed or oversized frame (the stream is unusable after that). Memory
 * is bounded by maxMessageBytes + 5: a frame's length is checked before its body is buffered.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = -1; // body length of the frame in progress, -1 while its header is incomplete

  constructor(private readonly maxMessageBytes: number) {}

  /** Bytes of an incomplete frame held (0 at a frame boundary). */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (chunk.length === 0) return out;
    this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.buffered += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < 5) break;
        const header = this.take(5);
        if (header[0] !== 0) {
          throw grpcError(
            header[0] === 1 ? GrpcStatus.UNIMPLEMENTED : GrpcStatus.INTERNAL,
            header[0] === 1 ? 'compressed gRPC messages are not supported (grpc-encoding identity only)' : `invalid gRPC frame flag ${header[0]}`,
          );
        }
        const len = header.readUInt32BE(1);
        if (len > this.maxMessageBytes) {
          throw grpcError(GrpcStatus.RESOURCE_EXHAUSTED, `gRPC message larger than max (${len} vs. ${this.maxMessageBytes})`);
        }
        this.need = len;
      }
      if (this.buffered < this.need) break;
      out.push(this.take(this.need));
      this.need = -1;
    }
    return out;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    let first = this.chunks[0]!;
    if (first.length < n) {
      first = Buffer.concat(this.chunks);
      this.chunks = [first];
    }
    const part = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    return part;
  }
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** `grpc-timeout` (1–8 digits and a unit H/M/S/m/u/n) → milliseconds; undefined if malformed. */
export function parseGrpcTimeout(value: string): number | undefined {
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return undefined;
  return Number(m[1]) * TIMEOUT_UNITS[m[2]!]!;
}

/** Milliseconds → `grpc-timeout`, in the finest unit that fits 8 digits. */
export function formatGrpcTimeout(ms: number): string {
  const t = Math.max(0, Math.ceil(ms));
  if (t < 1e8) return `${t}m`;
  if (t / 1000 < 1e8) return `${Math.ceil(t / 1000)}S`;
  if (t / 60_000 < 1e8) return `${Math.ceil(t / 60_000)}M`;
  return `${Math.min(99_999_999, Math.ceil(t / 3_600_000))}H`;
}

/** grpc-message encoding: bytes outside printable ASCII (0x20–0x7E) and '%' become %XX of their UTF-8 bytes. */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const b of Buffer.from(message, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Inverse of encodeGrpcMessage; malformed escapes are kept as they are (the spec says: do not fail). */
export function decodeGrpcMessage(value: string): string {
  if (!value.includes('%')) return value;
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x25 && /^[0-9a-fA-F]{2}$/.test(value.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      for (const b of Buffer.from(value[i]!, 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** What the generated classes offer that we use. */
export interface MessageType {
  encode(message: object, writer?: $protobuf.Writer): $protobuf.Writer;
  decode(reader: $protobuf.Reader | Uint8Array): object;
}

/** Encodes a plain object as `type`. Throws DmiError 13 INTERNAL when the object does not fit the type. */
export function encodeMessage(type: MessageType, message: object): Uint8Array {
  try {
    return type.encode(message).finish();
  } catch (err) {
    throw grpcError(GrpcStatus.INTERNAL, `cannot encode message: ${(err as Error).message}`, undefined, err);
  }
}

/** Decodes bytes as `type` into a plain object. Throws DmiError 13 INTERNAL on bad protobuf. */
export function decodeMessage<R>(type: MessageType, bytes: Uint8Array): R {
  let decoded: object;
  try {
    decoded = type.decode(bytes);
  } catch (err) {
    throw grpcError(GrpcStatus.INTERNAL, `cannot decode message: ${(err as Error).message}`, undefined, err);
  }
  return toPlain(decoded) as R;
}

/** protobufjs decodes int64 to long.js objects when the `long` package loads (it is its dependency). */
interface LongLike {
  low: number;
  high: number;
  unsigned: boolean;
  toNumber(): number;
}
const isLong = (v: object): v is LongLike => typeof (v as Partial<LongLike>).toNumber === 'function' && typeof (v as Partial<LongLike>).low === 'number';

/**
 * A decoded message → a plain object: own enumerable fields only (protobufjs keeps defaults on
 * the prototype and unknown fields under `$unknowns`), Long → number, bytes copied out of the
 * receive buffer (so a kept configData value does not pin the whole chunk).
 */
function toPlain(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (Array.isArray(value)) return value.map(toPlain);
  if (isLong(value)) return value.toNumber();
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    if (key.charCodeAt(0) === 0x24 /* $ */) continue;
    out[key] = toPlain((value as Record<string, unknown>)[key]);
  }
  return out;
}

/** One RPC of a service: its handler/client key, gRPC method name and message types. */
export interface MethodSpec {
  key: string;
  name: string;
  request: MessageType;
  response: MessageType;
}

export interface ServiceSpec {
  /** Full service name, e.g. `v1beta1.DeviceManagerService`. */
  name: string;
  methods: MethodSpec[];
}

export const deviceManagerService: ServiceSpec = {
  name: 'v1beta1.DeviceManagerService',
  methods: [
    { key: 'mapperRegister', name: 'MapperRegister', request: v1beta1.MapperRegisterRequest, response: v1beta1.MapperRegisterResponse },
    { key: 'reportDeviceStatus', name: 'ReportDeviceStatus', request: v1beta1.ReportDeviceStatusRequest, response: v1beta1.ReportDeviceStatusResponse },
    { key: 'reportDeviceStates', name: 'ReportDeviceStates', request: v1beta1.ReportDeviceStatesRequest, response: v1beta1.ReportDeviceStatesResponse },
  ],
};

export const deviceMapperService: ServiceSpec = {
  name: 'v1beta1.DeviceMapperService',
  methods: [
    { key: 'registerDevice', name: 'RegisterDevice', request: v1beta1.RegisterDeviceRequest, response: v1beta1.RegisterDeviceResponse },
    { key: 'removeDevice', name: 'RemoveDevice', request: v1beta1.RemoveDeviceRequest, response: v1beta1.RemoveDeviceResponse },
    { key: 'updateDevice', name: 'UpdateDevice', request: v1beta1.UpdateDeviceRequest, response: v1beta1.UpdateDeviceResponse },
    { key: 'createDeviceModel', name: 'CreateDeviceModel', request: v1beta1.CreateDeviceModelRequest, response: v1beta1.CreateDeviceModelResponse },
    { key: 'removeDeviceModel', name: 'RemoveDeviceModel', request: v1beta1.RemoveDeviceModelRequest, response: v1beta1.RemoveDeviceModelResponse },
    { key: 'updateDeviceModel', name: 'UpdateDeviceModel', request: v1beta1.UpdateDeviceModelRequest, response: v1beta1.UpdateDeviceModelResponse },
    { key: 'getDevice', name: 'GetDevice', request: v1beta1.GetDeviceRequest, response: v1beta1.GetDeviceResponse },
  ],
};

/** The wrapper messages configData values are packed in (convert.ts). */
export const wrappers = google.protobuf;

// Compile-time guard: our plain-object interfaces must be accepted by the generated encoders and
// name no field they do not know, so a field renamed or retyped in one but not the other fails `tsc`.
type Accepts<P, O extends P & Record<Exclude<keyof O, keyof P>, never>> = O;
type NonNull<X> = Exclude<X, null | undefined>;
type DbMethod = NonNull<T.DmiDBMethod>;
export type _TypeChecks = [
  Accepts<google.protobuf.Any.$Properties, T.Any>,
  Accepts<v1beta1.CustomizedValue.$Properties, T.DmiCustomizedValue>,
  Accepts<v1beta1.ProtocolConfig.$Properties, T.DmiProtocolConfig>,
  Accepts<v1beta1.VisitorConfig.$Properties, T.DmiVisitorConfig>,
  Accepts<v1beta1.TwinProperty.$Properties, T.DmiTwinProperty>,
  Accepts<v1beta1.PushMethodHTTP.$Properties, T.DmiPushMethodHTTP>,
  Accepts<v1beta1.PushMethodMQTT.$Properties, T.DmiPushMethodMQTT>,
  Accepts<v1beta1.PushMethodOTEL.$Properties, T.DmiPushMethodOTEL>,
  Accepts<v1beta1.DBMethod.$Properties, T.DmiDBMethod>,
  Accepts<v1beta1.DBMethodInfluxdb2.$Properties, NonNull<DbMethod['influxdb2']>>,
  Accepts<v1beta1.Influxdb2ClientConfig.$Properties, NonNull<NonNull<DbMethod['influxdb2']>['influxdb2ClientConfig']>>,
  Accepts<v1beta1.Influxdb2DataConfig.$Properties, NonNull<NonNull<DbMethod['influxdb2']>['influxdb2DataConfig']>>,
  Accepts<v1beta1.DBMethodRedis.$Properties, NonNull<DbMethod['redis']>>,
  Accepts<v1beta1.RedisClientConfig.$Properties, NonNull<NonNull<DbMethod['redis']>['redisClientConfig']>>,
  Accepts<v1beta1.DBMethodTDEngine.$Properties, NonNull<DbMethod['tdengine']>>,
  Accepts<v1beta1.TDEngineClientConfig.$Properties, NonNull<NonNull<DbMethod['tdengine']>['tdEngineClientConfig']>>,
  Accepts<v1beta1.DBMethodMySQL.$Properties, NonNull<DbMethod['mysql']>>,
  Accepts<v1beta1.MySQLClientConfig.$Properties, NonNull<NonNull<DbMethod['mysql']>['mysqlClientConfig']>>,
  Accepts<v1beta1.AnomalyDetection.$Properties, T.DmiAnomalyDetection>,
  Accepts<v1beta1.PushMethod.$Properties, T.DmiPushMethod>,
  Accepts<v1beta1.DeviceProperty.$Properties, T.DmiDeviceProperty>,
  Accepts<v1beta1.DeviceMethod.$Properties, T.DmiDeviceMethod>,
  Accepts<v1beta1.DeviceSpec.$Properties, T.DmiDeviceSpec>,
  Accepts<v1beta1.Twin.$Properties, T.DmiTwin>,
  Accepts<v1beta1.DeviceStatus.$Properties, T.DmiDeviceStatus>,
  Accepts<v1beta1.Device.$Properties, T.DmiDevice>,
  Accepts<v1beta1.ModelProperty.$Properties, T.DmiModelProperty>,
  Accepts<v1beta1.DeviceCommand.$Properties, T.DmiDeviceCommand>,
  Accepts<v1beta1.DeviceModelSpec.$Properties, T.DmiDeviceModelSpec>,
  Accepts<v1beta1.DeviceModel.$Properties, T.DmiDeviceModel>,
  Accepts<v1beta1.MapperInfo.$Properties, T.DmiMapperInfo>,
  Accepts<v1beta1.MapperRegisterRequest.$Properties, T.DmiMapperRegisterRequest>,
  Accepts<v1beta1.MapperRegisterResponse.$Properties, T.DmiMapperRegisterResponse>,
  Accepts<v1beta1.ReportDeviceStatusRequest.$Properties, T.DmiReportDeviceStatusRequest>,
  Accepts<v1beta1.ReportDeviceStatesRequest.$Properties, T.DmiReportDeviceStatesRequest>,
  Accepts<v1beta1.RegisterDeviceRequest.$Properties, T.DmiRegisterDeviceRequest>,
  Accepts<v1beta1.RegisterDeviceResponse.$Properties, T.DmiRegisterDeviceResponse>,
  Accepts<v1beta1.RemoveDeviceRequest.$Properties, T.DmiRemoveDeviceRequest>,
  Accepts<v1beta1.UpdateDeviceRequest.$Properties, T.DmiUpdateDeviceRequest>,
  Accepts<v1beta1.CreateDeviceModelRequest.$Properties, T.DmiCreateDeviceModelRequest>,
  Accepts<v1beta1.CreateDeviceModelResponse.$Properties, T.DmiCreateDeviceModelResponse>,
  Accepts<v1beta1.RemoveDeviceModelRequest.$Properties, T.DmiRemoveDeviceModelRequest>,
  Accepts<v1beta1.UpdateDeviceModelRequest.$Properties, T.DmiUpdateDeviceModelRequest>,
  Accepts<v1beta1.GetDeviceRequest.$Properties, T.DmiGetDeviceRequest>,
  Accepts<v1beta1.GetDeviceResponse.$Properties, T.DmiGetDeviceResponse>,
];
