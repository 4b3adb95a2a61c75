/**
 * @module
 * The DMI adapter of DeviceTwin: DeviceManagerService on the DMI socket for KubeEdge mappers, a
 * durable mapper registry, and the downstream calls that keep each mapper's devices in step with
 * the node's Device objects (see ./adapter.ts).
 */
export { createDmiAdapter } from './adapter.js';
export type { DmiAdapter, DmiProblem } from './adapter.js';
export { defaultDmiAdapterOptions } from './options.js';
export type { DmiAdapterOptions, DmiTimers, MapperClientFactory } from './options.js';
