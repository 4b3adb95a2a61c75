/**
 * @module
 * The DMI v1beta1 messages as plain-object TypeScript interfaces (field names camelCase, as
 * protobufjs names them: `api_version` → `apiVersion`, `status_code` → `statusCode`).
 *
 * What decoding gives you: proto3 plain objects. A field at its default value (empty string, 0,
 * false, absent message) is ABSENT, so read with `?? ''` / `?? 0`; repeated fields and maps are
 * present (possibly empty) on every decoded message. int64 fields are JavaScript numbers (exact
 * up to 2^53; cycles in milliseconds and ports are far below). bytes fields are Uint8Array.
 * What encoding accepts: the same shapes; absent, undefined and null all mean "default".
 *
 * The RPC call types (handlers, clients, call context) are here too.
 */
import type { Logger } from '../log/index.js';

/**
 * google.protobuf.Any: a message of type `type_url` (`type.googleapis.com/google.protobuf.StringValue`),
 * encoded in `value`. The field keeps its snake_case name: protobufjs takes the well-known types
 * from its bundled descriptors, which are not camel-cased.
 */
export interface Any {
  type_url?: string;
  value?: Uint8Array;
}

/** `CustomizedValue`: free-form protocol settings, each value a wrapper message in an Any (see convert.ts). */
export interface DmiCustomizedValue {
  data?: Record<string, Any>;
}

export interface DmiProtocolConfig {
  protocolName?: string;
  configData?: DmiCustomizedValue;
}

export interface DmiVisitorConfig {
  protocolName?: string;
  configData?: DmiCustomizedValue;
}

export interface DmiTwinProperty {
  value?: string;
  metadata?: Record<string, string>;
}

export interface DmiPushMethodHTTP {
  hostname?: string;
  port?: number;
  requestpath?: string;
  timeout?: number;
}

export interface DmiPushMethodMQTT {
  address?: string;
  topic?: string;
  qos?: number;
  retained?: boolean;
}

export interface DmiPushMethodOTEL {
  endpointURL?: string;
}

export interface DmiDBMethod {
  influxdb2?: {
    influxdb2ClientConfig?: { url?: string; org?: string; bucket?: string };
    influxdb2DataConfig?: { measurement?: string; tag?: Record<string, string>; fieldKey?: string };
  };
  redis?: { redisClientConfig?: { addr?: string; db?: number; poolsize?: number; minIdleConns?: number } };
  tdengine?: { tdEngineClientConfig?: { addr?: string; dbname?: string } };
  mysql?: { mysqlClientConfig?: { addr?: string; database?: string; userName?: string } };
}

export interface DmiAnomalyDetection {
  data?: Record<string, Any>;
}

export interface DmiPushMethod {
  http?: DmiPushMethodHTTP;
  mqtt?: DmiPushMethodMQTT;
  otel?: DmiPushMethodOTEL;
  dbMethod?: DmiDBMethod;
  anomalyDetection?: DmiAnomalyDetection;
}

export interface DmiDeviceProperty {
  name?: string;
  desired?: DmiTwinProperty;
  visitors?: DmiVisitorConfig;
  /** Milliseconds. */
  reportCycle?: number;
  /** Milliseconds. */
  collectCycle?: number;
  reportToCloud?: boolean;
  pushMethod?: DmiPushMethod;
}

export interface DmiDeviceMethod {
  name?: string;
  description?: string;
  propertyNames?: string[];
}

export interface DmiDeviceSpec {
  /** The DeviceModel's name (the Device's spec.deviceModelRef.name). */
  deviceModelReference?: string;
  protocol?: DmiProtocolConfig;
  properties?: DmiDeviceProperty[];
  methods?: DmiDeviceMethod[];
}

export interface DmiTwin {
  propertyName?: string;
  observedDesired?: DmiTwinProperty;
  reported?: DmiTwinProperty;
}

export interface DmiDeviceStatus {
  twins?: DmiTwin[];
  reportToCloud?: boolean;
  /** Milliseconds. */
  reportCycle?: number;
}

export interface DmiDevice {
  name?: string;
  spec?: DmiDeviceSpec;
  status?: DmiDeviceStatus;
  namespace?: string;
}

export interface DmiModelProperty {
  name?: string;
  description?: string;
  type?: string;
  accessMode?: string;
  minimum?: string;
  maximum?: string;
  unit?: string;
}

export interface DmiDeviceCommand {
  name?: string;
  url?: string;
  method?: string;
  statusCode?: string[];
  parameters?: string[];
  response?: Uint8Array;
}

export interface DmiDeviceModelSpec {
  properties?: DmiModelProperty[];
  commands?: DmiDeviceCommand[];
}

export interface DmiDeviceModel {
  name?: string;
  spec?: DmiDeviceModelSpec;
  namespace?: string;
}

export interface DmiMapperInfo {
  name?: string;
  version?: string;
  apiVersion?: string;
  /** Devices whose spec.protocol.protocolName equals this are routed to this mapper. */
  protocol?: string;
  /** The mapper's unix socket path, UTF-8 bytes (see `mapperAddress` in convert.ts). */
  address?: Uint8Array;
  state?: string;
}

/** An empty response message (ReportDeviceStatusResponse, RemoveDeviceResponse, …). */
export type DmiEmpty = Record<string, never>;

export interface DmiMapperRegisterRequest {
  withData?: boolean;
  mapper?: DmiMapperInfo;
}
export interface DmiMapperRegisterResponse {
  modelList?: DmiDeviceModel[];
  deviceList?: DmiDevice[];
}
export interface DmiReportDeviceStatusRequest {
  deviceName?: string;
  reportedDevice?: DmiDeviceStatus;
  deviceNamespace?: string;
}
export type DmiReportDeviceStatusResponse = DmiEmpty;
export interface DmiReportDeviceStatesRequest {
  deviceName?: string;
  deviceNamespace?: string;
  state?: string;
}
export type DmiReportDeviceStatesResponse = DmiEmpty;

export interface DmiRegisterDeviceRequest {
  device?: DmiDevice;
}
export interface DmiRegisterDeviceResponse {
  deviceName?: string;
  deviceNamespace?: string;
}
export interface DmiRemoveDeviceRequest {
  deviceName?: string;
  deviceNamespace?: string;
}
export type DmiRemoveDeviceResponse = DmiEmpty;
export interface DmiUpdateDeviceRequest {
  device?: DmiDevice;
}
export type DmiUpdateDeviceResponse = DmiEmpty;
export interface DmiCreateDeviceModelRequest {
  model?: DmiDeviceModel;
}
export interface DmiCreateDeviceModelResponse {
  deviceModelName?: string;
  deviceModelNamespace?: string;
}
export interface DmiRemoveDeviceModelRequest {
  modelName?: string;
  modelNamespace?: string;
}
export type DmiRemoveDeviceModelResponse = DmiEmpty;
export interface DmiUpdateDeviceModelRequest {
  model?: DmiDeviceModel;
}
export type DmiUpdateDeviceModelResponse = DmiEmpty;
export interface DmiGetDeviceRequest {
  deviceName?: string;
  deviceNamespace?: string;
}
export interface DmiGetDeviceResponse {
  device?: DmiDevice;
}

/** What a handler gets besides the request. */
export interface CallContext {
  /** Aborted when the caller's deadline (grpc-timeout) passes, the caller cancels, or the server closes. */
  signal: AbortSignal;
  /** The caller's deadline, epoch milliseconds (Date.now() scale), when it sent grpc-timeout. */
  deadline?: number;
}

/** EdgeCore's side: served on the DMI socket (/etc/kubeedge/dmi.sock), called by mappers. */
export interface DeviceManagerHandlers {
  mapperRegister(req: DmiMapperRegisterRequest, ctx: CallContext): Promise<DmiMapperRegisterResponse>;
  reportDeviceStatus(req: DmiReportDeviceStatusRequest, ctx: CallContext): Promise<DmiReportDeviceStatusResponse>;
  reportDeviceStates(req: DmiReportDeviceStatesRequest, ctx: CallContext): Promise<DmiReportDeviceStatesResponse>;
}

/** A mapper's side: served on the socket it announced, called by EdgeCore. */
export interface DeviceMapperHandlers {
  registerDevice(req: DmiRegisterDeviceRequest, ctx: CallContext): Promise<DmiRegisterDeviceResponse>;
  removeDevice(req: DmiRemoveDeviceRequest, ctx: CallContext): Promise<DmiRemoveDeviceResponse>;
  updateDevice(req: DmiUpdateDeviceRequest, ctx: CallContext): Promise<DmiUpdateDeviceResponse>;
  createDeviceModel(req: DmiCreateDeviceModelRequest, ctx: CallContext): Promise<DmiCreateDeviceModelResponse>;
  removeDeviceModel(req: DmiRemoveDeviceModelRequest, ctx: CallContext): Promise<DmiRemoveDeviceModelResponse>;
  updateDeviceModel(req: DmiUpdateDeviceModelRequest, ctx: CallContext): Promise<DmiUpdateDeviceModelResponse>;
  getDevice(req: DmiGetDeviceRequest, ctx: CallContext): Promise<DmiGetDeviceResponse>;
}

/** Per-call options of a client call. */
export interface CallOptions {
  /** Deadline for this call (sent as grpc-timeout); default: the client's timeoutMs. */
  timeoutMs?: number;
  /** Cancels the call (→ DmiError 1 CANCELLED). */
  signal?: AbortSignal;
}

type ClientOf<H> = {
  [K in keyof H]: H[K] extends (req: infer Req, ctx: CallContext) => Promise<infer Res> ? (req: Req, options?: CallOptions) => Promise<Res> : never;
};

/** Calls DeviceManagerService (what a mapper uses). Every call rejects with DmiError. */
export type DeviceManagerClient = ClientOf<DeviceManagerHandlers>;
/** Calls DeviceMapperService (what EdgeCore uses). Every call rejects with DmiError. */
export type DeviceMapperClient = ClientOf<DeviceMapperHandlers>;

export interface GrpcServerOptions {
  /** Largest request message accepted, bytes (4 MiB, as Go gRPC). Over → RESOURCE_EXHAUSTED. */
  maxMessageBytes?: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection (100). */
  maxConcurrentStreams?: number;
  /** Token bucket over all calls of this server: sustained calls per second (1000). 0 = unlimited. */
  callsPerSecond?: number;
  /** Token bucket size (2000). */
  burst?: number;
  /** Where problems are logged (once per kind per window). Default: silent. */
  log?: Logger;
  /** Clock for the rate limiter and log windows (tests). Default Date.now. */
  now?: () => number;
}

export interface GrpcClientOptions {
  /** Default deadline of each call, ms (10 s, like EdgeCore's DMI client). */
  timeoutMs?: number;
  /** Largest response message accepted, bytes (4 MiB). */
  maxMessageBytes?: number;
  /** An HTTP/2 session idle this long (no call in flight) is closed, ms (30 s). */
  idleTimeoutMs?: number;
}

export interface GrpcServer {
  readonly socketPath: string;
  /** Stops accepting, aborts running handlers (their calls end CANCELLED/UNAVAILABLE), removes the socket file. */
  close(): Promise<void>;
}
