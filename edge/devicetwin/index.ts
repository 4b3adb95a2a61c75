/**
 * @module
 * DeviceTwin (./devicetwin.ts): the node's device twins, KubeEdge's MQTT device topics (./mqtt.ts)
 * and DMI for mappers (./dmi/), one report path ({@link TwinCore}, ./core.ts) and the upstream
 * flusher (./flusher.ts).
 */
export { DeviceTwin, createDeviceTwin } from './devicetwin.js';
export type { DeviceTwinOptions, TwinTimers } from './devicetwin.js';
export type { TwinCore, TwinEntry, TwinUpdate, DeviceChangeEvent, ModelChangeEvent } from './core.js';
export { defaultDeviceTwinOptions } from './options.js';
export { TWIN_STORE_DIR } from './twin-store.js';
export type { DeviceRecord, StoredTwin } from './twin-store.js';
export { DEVICE_STATES } from './twins.js';
export { Filters as twinTopicFilters, Topics as twinTopics, ResultCode as twinResultCode } from './mqtt-shapes.js';
export type {
  BaseMessage,
  DeviceStateResult,
  DeviceTwinDelta,
  DeviceTwinDocument,
  DeviceTwinResult,
  DeviceTwinUpdate,
  MemberDevice,
  MembershipGetResult,
  MembershipUpdate,
  MsgTwin,
  Result as TwinResult,
  TwinValue,
} from './mqtt-shapes.js';
