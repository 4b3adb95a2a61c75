/**
 * @module
 * Conversions between KubeEdge's Device/DeviceModel objects (shared/devices, devices.kubeedge.io
 * v1beta1 JSON) and DMI messages, with KubeEdge's semantics (edge/pkg/devicetwin/dtcommon
 * ConvertDevice/ConvertDeviceModel, dmicache GetOverriddenDevice):
 *
 * - `deviceToDmi`: name/namespace at the top, `deviceModelReference` = spec.deviceModelRef.name;
 *   the state report settings (spec.stateReport, else the old status.reportToCloud/reportCycle) in
 *   `status`; the model's protocolConfigData and per-property visitors are defaults that the
 *   device's own values override key by key. Every property carries `desired` and `visitors`
 *   (with configData), as Go's non-pointer structs do: framework mappers dereference them.
 *   One deliberate difference: a device visitor's protocolName wins over the model's (KubeEdge
 *   takes the model's whole visitor first, losing the device's protocolName).
 * - configData values travel as google.protobuf wrappers in an Any (`toAny`): string →
 *   StringValue, integer in int32 → Int32Value, other safe integer → Int64Value, other number →
 *   FloatValue (float32, as KubeEdge sends every JSON number), boolean → BoolValue. KubeEdge
 *   refuses nested objects and arrays; we send them as a StringValue of their JSON.
 * - `fromAny` reads the String/Int32/Int64/UInt32/UInt64/Float/Double/Bool/Bytes wrappers; a float32
 *   comes back as the shortest decimal that round-trips (23.4, not 23.399999618530273), bytes as base64.
 * - The `dmiTo*` functions are the mapper SDK's view: KubeEdge-shaped objects with configData decoded.
 */
import type { ConfigData, Device, DeviceMethod, DeviceModel, DeviceProperty, ModelProperty, PushMethod, Twin, TwinProperty, VisitorConfig } from '../devices/index.js';
import { DEVICE_API_VERSION } from '../devices/index.js';
import { GrpcStatus, grpcError, wrappers } from './codec.js';
import type {
  Any,
  DmiCustomizedValue,
  DmiDBMethod,
  DmiDevice,
  DmiDeviceModel,
  DmiDeviceProperty,
  DmiMapperInfo,
  DmiModelProperty,
  DmiPushMethod,
  DmiTwin,
  DmiTwinProperty,
  DmiVisitorConfig,
} from './types.js';

const TYPE_PREFIX = 'type.googleapis.com/google.protobuf.';
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

function pack(name: string, bytes: Uint8Array): Any {
  return { type_url: TYPE_PREFIX + name, value: bytes };
}

/** One configData value → an Any holding a wrapper message. */
export function toAny(value: unknown): Any {
  switch (typeof value) {
    case 'string':
      return pack('StringValue', wrappers.StringValue.encode({ value }).finish());
    case 'boolean':
      return pack('BoolValue', wrappers.BoolValue.encode({ value }).finish());
    case 'bigint':
      if (value >= -(2n ** 63n) && value < 2n ** 63n) return pack('Int64Value', wrappers.Int64Value.encode({ value: Number(value) }).finish());
      return toAny(value.toString());
    case 'number':
      if (Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX) return pack('Int32Value', wrappers.Int32Value.encode({ value }).finish());
      if (Number.isSafeInteger(value)) return pack('Int64Value', wrappers.Int64Value.encode({ value }).finish());
      return pack('FloatValue', wrappers.FloatValue.encode({ value }).finish());
    default:
      // Objects, arrays, null: KubeEdge refuses them; a JSON string keeps the information usable.
      return toAny(JSON.stringify(value) ?? 'null');
  }
}

/** The shortest decimal that reads back as the same float32. */
function shortestFloat32(v: number): number {
  if (!Number.isFinite(v)) return v;
  for (let p = 1; p <= 9; p++) {
    const candidate = Number(v.toPrecision(p));
    if (Math.fround(candidate) === v) return candidate;
  }
  return v;
}

type Decoder = (bytes: Uint8Array) => unknown;
// int64 wrappers decode to long.js objects when `long` is loaded (see codec.ts).
const num = (v: unknown): number =>
  typeof v === 'number' ? v : typeof (v as { toNumber?: unknown })?.toNumber === 'function' ? (v as { toNumber(): number }).toNumber() : Number(v ?? 0);
const fromWrapper: Record<string, Decoder> = {
  StringValue: (b) => wrappers.StringValue.decode(b).value,
  BoolValue: (b) => wrappers.BoolValue.decode(b).value,
  Int32Value: (b) => wrappers.Int32Value.decode(b).value,
  UInt32Value: (b) => wrappers.UInt32Value.decode(b).value,
  Int64Value: (b) => num(wrappers.Int64Value.decode(b).value),
  UInt64Value: (b) => num(wrappers.UInt64Value.decode(b).value),
  FloatValue: (b) => shortestFloat32(wrappers.FloatValue.decode(b).value),
  DoubleValue: (b) => wrappers.DoubleValue.decode(b).value,
  BytesValue: (b) => Buffer.from(wrappers.BytesValue.decode(b).value).toString('base64'),
};

/** An Any holding a wrapper message → its value. Other types, or undecodable bytes → DmiError 3 INVALID_ARGUMENT. */
export function fromAny(any: Any): unknown {
  const url = any.type_url ?? '';
  const name = url.slice(url.lastIndexOf('/') + 1);
  const decode = name.startsWith('google.protobuf.') ? fromWrapper[name.slice('google.protobuf.'.length)] : undefined;
  if (!decode) throw grpcError(GrpcStatus.INVALID_ARGUMENT, `configData value of type ${JSON.stringify(url)} is not supported (google.protobuf wrappers only)`);
  try {
    return decode(any.value ?? new Uint8Array());
  } catch (err) {
    throw grpcError(GrpcStatus.INVALID_ARGUMENT, `configData value of type ${name} does not decode: ${(err as Error).message}`, undefined, err);
  }
}

/** KubeEdge's flat configData map → CustomizedValue (undefined stays undefined). */
export function configDataToDmi(data: ConfigData | undefined): DmiCustomizedValue | undefined {
  if (data === undefined || data === null) return undefined;
  const out: Record<string, Any> = {};
  for (const [k, v] of Object.entries(data)) out[k] = toAny(v);
  return { data: out };
}

/** CustomizedValue → the flat configData map (throws DmiError 3 on a value that is not a wrapper). */
export function configDataFromDmi(value: DmiCustomizedValue | undefined): ConfigData | undefined {
  if (!value) return undefined;
  const out: ConfigData = {};
  for (const [k, v] of Object.entries(value.data ?? {})) out[k] = fromAny(v);
  return out;
}

/** Model defaults under instance values, key by key (KubeEdge's override order). */
function mergeConfig(defaults: ConfigData | undefined, own: ConfigData | undefined): ConfigData | undefined {
  if (!defaults) return own;
  if (!own) return defaults;
  return { ...defaults, ...own };
}

function twinPropertyToDmi(t: TwinProperty | undefined): DmiTwinProperty {
  const out: DmiTwinProperty = { value: t?.value ?? '' };
  if (t?.metadata && Object.keys(t.metadata).length > 0) out.metadata = { ...t.metadata };
  return out;
}

function visitorToDmi(own: VisitorConfig | undefined, fromModel: VisitorConfig | undefined): DmiVisitorConfig {
  const out: DmiVisitorConfig = {};
  const protocolName = own?.protocolName || fromModel?.protocolName;
  if (protocolName) out.protocolName = protocolName;
  out.configData = configDataToDmi(mergeConfig(fromModel?.configData, own?.configData)) ?? { data: {} };
  return out;
}

const numberOr = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : undefined;
const stringOr = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const recordOr = (v: unknown): Record<string, unknown> | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
/** A key of a loosely typed object, matched case-insensitively (Go's encoding/json does so). */
function field(obj: Record<string, unknown> | undefined, name: string): unknown {
  if (!obj) return undefined;
  if (name in obj) return obj[name];
  const lower = name.toLowerCase();
  for (const k of Object.keys(obj)) if (k.toLowerCase() === lower) return obj[k];
  return undefined;
}
function stringMap(v: unknown): Record<string, string> | undefined {
  const r = recordOr(v);
  if (!r) return undefined;
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(r)) out[k] = typeof x === 'string' ? x : JSON.stringify(x);
  return out;
}
/** Drops undefined members so the encoded message and deep-equal tests see only what was set. */
function compact<O extends object>(o: O): O {
  for (const k of Object.keys(o) as (keyof O)[]) if (o[k] === undefined) delete o[k];
  return o;
}

function dbMethodToDmi(db: Record<string, unknown> | undefined): DmiDBMethod | undefined {
  if (!db) return undefined;
  const out: DmiDBMethod = {};
  const influx = recordOr(field(db, 'influxdb2'));
  if (influx) {
    const c = recordOr(field(influx, 'influxdb2ClientConfig'));
    const d = recordOr(field(influx, 'influxdb2DataConfig'));
    out.influxdb2 = compact({
      influxdb2ClientConfig: c && compact({ url: stringOr(field(c, 'url')), org: stringOr(field(c, 'org')), bucket: stringOr(field(c, 'bucket')) }),
      influxdb2DataConfig: d && compact({ measurement: stringOr(field(d, 'measurement')), tag: stringMap(field(d, 'tag')), fieldKey: stringOr(field(d, 'fieldKey')) }),
    });
  }
  const redis = recordOr(field(db, 'redis'));
  if (redis) {
    const c = recordOr(field(redis, 'redisClientConfig'));
    out.redis = compact({
      redisClientConfig:
        c &&
        compact({ addr: stringOr(field(c, 'addr')), db: numberOr(field(c, 'db')), poolsize: numberOr(field(c, 'poolsize')), minIdleConns: numberOr(field(c, 'minIdleConns')) }),
    });
  }
  const td = recordOr(field(db, 'tdengine'));
  if (td) {
    const c = recordOr(field(td, 'tdEngineClientConfig'));
    out.tdengine = compact({ tdEngineClientConfig: c && compact({ addr: stringOr(field(c, 'addr')), dbname: stringOr(field(c, 'dbname')) }) });
  }
  const mysql = recordOr(field(db, 'mysql'));
  if (mysql) {
    const c = recordOr(field(mysql, 'mysqlClientConfig'));
    out.mysql = compact({
      mysqlClientConfig: c && compact({ addr: stringOr(field(c, 'addr')), database: stringOr(field(c, 'database')), userName: stringOr(field(c, 'userName')) }),
    });
  }
  return out;
}

function pushMethodToDmi(p: PushMethod | undefined): DmiPushMethod | undefined {
  if (!p) return undefined;
  const out: DmiPushMethod = {};
  if (p.http) out.http = compact({ hostname: p.http.hostName, port: numberOr(p.http.port), requestpath: p.http.requestPath, timeout: numberOr(p.http.timeout) });
  if (p.mqtt) out.mqtt = compact({ address: p.mqtt.address, topic: p.mqtt.topic, qos: numberOr(p.mqtt.qos), retained: p.mqtt.retained });
  if (p.otel) out.otel = compact({ endpointURL: p.otel.endpointURL });
  if (p.dbMethod) out.dbMethod = dbMethodToDmi(recordOr(p.dbMethod));
  if (p.anomalyDetection) out.anomalyDetection = configDataToDmi(p.anomalyDetection);
  return out;
}

function propertyToDmi(p: DeviceProperty, model: ModelProperty | undefined): DmiDeviceProperty {
  return compact({
    name: p.name,
    desired: twinPropertyToDmi(p.desired),
    visitors: visitorToDmi(p.visitors, model?.visitors),
    reportCycle: numberOr(p.reportCycle),
    collectCycle: numberOr(p.collectCycle),
    reportToCloud: p.reportToCloud,
    pushMethod: pushMethodToDmi(p.pushMethod),
  });
}

/**
 * A Device (and its model, for the defaults) as DMI sends it to a mapper. The model should be the
 * one named by spec.deviceModelRef (same namespace); without it no defaults are merged.
 */
export function deviceToDmi(device: Device, model?: DeviceModel): DmiDevice {
  const spec = device.spec ?? {};
  const modelProps = new Map((model?.spec?.properties ?? []).map((p) => [p.name, p]));
  const out: DmiDevice = {
    name: device.metadata?.name ?? '',
    namespace: device.metadata?.namespace || 'default',
    spec: compact({
      deviceModelReference: spec.deviceModelRef?.name,
      protocol: compact({
        protocolName: spec.protocol?.protocolName,
        configData: configDataToDmi(mergeConfig(model?.spec?.protocolConfigData, spec.protocol?.configData)) ?? { data: {} },
      }),
      properties: (spec.properties ?? []).map((p) => propertyToDmi(p, modelProps.get(p.name))),
      methods: (spec.methods ?? []).map((m) => compact({ name: m.name, description: m.description, propertyNames: m.propertyNames ? [...m.propertyNames] : undefined })),
    }),
  };
  // KubeEdge ≥ 1.23 keeps the state report settings in spec.stateReport; older objects in status.
  const state = spec.stateReport ?? (device.status ? { reportToCloud: device.status.reportToCloud, reportCycle: device.status.reportCycle } : undefined);
  if (state) out.status = compact({ reportToCloud: state.reportToCloud, reportCycle: numberOr(state.reportCycle) });
  return out;
}

function modelPropertyToDmi(p: ModelProperty): DmiModelProperty {
  const s = (v: string | number | undefined): string | undefined => (v === undefined || v === null ? undefined : String(v));
  return compact({ name: p.name, description: p.description, type: p.type, accessMode: p.accessMode, minimum: s(p.minimum), maximum: s(p.maximum), unit: p.unit });
}

/** A DeviceModel as DMI sends it (DMI models carry the properties only: no protocol, no visitors). */
export function modelToDmi(model: DeviceModel): DmiDeviceModel {
  return {
    name: model.metadata?.name ?? '',
    namespace: model.metadata?.namespace || 'default',
    spec: { properties: (model.spec?.properties ?? []).map(modelPropertyToDmi) },
  };
}

const nonEmpty = (s: string | undefined): string | undefined => (s ? s : undefined);

function twinPropertyFromDmi(t: DmiTwinProperty | undefined): TwinProperty | undefined {
  if (!t) return undefined;
  const out: TwinProperty = { value: t.value ?? '' };
  if (t.metadata && Object.keys(t.metadata).length > 0) out.metadata = { ...t.metadata };
  return out;
}

function visitorFromDmi(v: DmiVisitorConfig | undefined): VisitorConfig | undefined {
  if (!v) return undefined;
  return compact({ protocolName: nonEmpty(v.protocolName), configData: configDataFromDmi(v.configData) });
}

function dbMethodFromDmi(db: DmiDBMethod): Record<string, unknown> {
  // Back to the CRD's JSON names (TDEngine, TDEngineClientConfig, dbName).
  const out: Record<string, unknown> = {};
  if (db.influxdb2) out.influxdb2 = db.influxdb2;
  if (db.redis) out.redis = db.redis;
  if (db.tdengine)
    out.TDEngine = compact({
      TDEngineClientConfig: db.tdengine.tdEngineClientConfig && compact({ addr: db.tdengine.tdEngineClientConfig.addr, dbName: db.tdengine.tdEngineClientConfig.dbname }),
    });
  if (db.mysql) out.mysql = db.mysql;
  return out;
}

function pushMethodFromDmi(p: DmiPushMethod | undefined): PushMethod | undefined {
  if (!p) return undefined;
  const out: PushMethod = {};
  if (p.http) out.http = compact({ hostName: p.http.hostname, port: p.http.port, requestPath: p.http.requestpath, timeout: p.http.timeout });
  if (p.mqtt) out.mqtt = compact({ ...p.mqtt });
  if (p.otel) out.otel = compact({ ...p.otel });
  if (p.dbMethod) out.dbMethod = dbMethodFromDmi(p.dbMethod);
  if (p.anomalyDetection) out.anomalyDetection = configDataFromDmi(p.anomalyDetection);
  return out;
}

function propertyFromDmi(p: DmiDeviceProperty): DeviceProperty {
  return compact({
    name: p.name ?? '',
    desired: twinPropertyFromDmi(p.desired),
    visitors: visitorFromDmi(p.visitors),
    reportCycle: p.reportCycle,
    collectCycle: p.collectCycle,
    reportToCloud: p.reportToCloud,
    pushMethod: pushMethodFromDmi(p.pushMethod),
  });
}

/** A DMI device (as a mapper receives it) → a KubeEdge-shaped Device, configData decoded. Throws DmiError 3 on a configData value it cannot read. */
export function dmiToDevice(d: DmiDevice): Device {
  const spec = d.spec ?? {};
  const device: Device = {
    apiVersion: DEVICE_API_VERSION,
    kind: 'Device',
    metadata: { name: d.name ?? '', namespace: d.namespace || 'default' },
    spec: compact({
      deviceModelRef: spec.deviceModelReference ? { name: spec.deviceModelReference } : undefined,
      protocol: spec.protocol ? compact({ protocolName: nonEmpty(spec.protocol.protocolName), configData: configDataFromDmi(spec.protocol.configData) }) : undefined,
      properties: (spec.properties ?? []).map(propertyFromDmi),
      methods: spec.methods?.length
        ? spec.methods.map(
            (m): DeviceMethod => compact({ name: m.name ?? '', description: nonEmpty(m.description), propertyNames: m.propertyNames?.length ? [...m.propertyNames] : undefined }),
          )
        : undefined,
    }),
  };
  if (d.status) {
    const state = compact({ reportToCloud: d.status.reportToCloud, reportCycle: d.status.reportCycle });
    device.spec.stateReport = state;
    device.status = { ...state };
  }
  return device;
}

/** A DMI model → a KubeEdge-shaped DeviceModel (properties only; DMI carries no protocol). */
export function dmiToModel(m: DmiDeviceModel): DeviceModel {
  return {
    apiVersion: DEVICE_API_VERSION,
    kind: 'DeviceModel',
    metadata: { name: m.name ?? '', namespace: m.namespace || 'default' },
    spec: {
      properties: (m.spec?.properties ?? []).map(
        (p): ModelProperty =>
          compact({
            name: p.name ?? '',
            description: nonEmpty(p.description),
            type: nonEmpty(p.type) as ModelProperty['type'],
            accessMode: nonEmpty(p.accessMode) as ModelProperty['accessMode'],
            minimum: nonEmpty(p.minimum),
            maximum: nonEmpty(p.maximum),
            unit: nonEmpty(p.unit),
          }),
      ),
    },
  };
}

/** Reported twins from ReportDeviceStatus → shared twins (a twin without a name keeps '' so validation refuses it, rather than dropping it silently). */
export function dmiTwinsToTwins(twins: DmiTwin[] | undefined): Twin[] {
  return (twins ?? []).map((t) =>
    compact({ propertyName: t.propertyName ?? '', reported: twinPropertyFromDmi(t.reported), observedDesired: twinPropertyFromDmi(t.observedDesired) }),
  );
}

/** Shared twins → DMI twins (what a mapper sends in ReportDeviceStatus). */
export function twinsToDmi(twins: Twin[] | undefined): DmiTwin[] {
  return (twins ?? []).map((t) =>
    compact({
      propertyName: t.propertyName,
      reported: t.reported ? twinPropertyToDmi(t.reported) : undefined,
      observedDesired: t.observedDesired ? twinPropertyToDmi(t.observedDesired) : undefined,
    }),
  );
}

/** MapperInfo.address (bytes) → the mapper's socket path. */
export function mapperAddress(info: DmiMapperInfo | undefined): string {
  return info?.address ? Buffer.from(info.address.buffer, info.address.byteOffset, info.address.byteLength).toString('utf8') : '';
}
