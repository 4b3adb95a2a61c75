/**
 * @module
 * DeviceController: Devices and DeviceModels go to their nodes through the sync machinery
 * (a DesiredSource for the SyncController); reported twins and states from the nodes go into
 * DeviceStatus objects, coalesced and rate-limited (./writer.ts). See ./controller.ts.
 */
import type { k8s } from '../kube/index.js';
import type { Logger } from '../../shared/log/index.js';
import { DeviceController, type DeviceControllerOptions } from './controller.js';

export { DeviceController, mergedStatus } from './controller.js';
export type { DeviceControllerOptions, DeviceControllerStats } from './controller.js';
export { defaultDeviceControllerOptions } from './options.js';
export { StatusWriter, mergeUpdate, realTimers } from './writer.js';
export type { PendingStatus, StatusUpdate, StatusWriterOptions, StatusWriterStats, Timers, WriteStatus } from './writer.js';
export { checkBatch } from './reports.js';
export type { CheckedBatch, ReportLimits, ReportProblem } from './reports.js';
export { deviceCrd, deviceModelCrd, deviceStatusCrd, deviceCrds, crdForClient, schemaForClient, DEVICE_STATUS_HAS_STATUS_SUBRESOURCE } from './crds.js';
export type { DeviceCrd, SchemaNode } from './crds.js';

/** A DeviceController; without `kc` (no Kubernetes API) reports are accepted and dropped and the desired sets are empty. */
export function createDeviceController(kc: k8s.KubeConfig | undefined, log: Logger, options?: Partial<DeviceControllerOptions>): DeviceController {
  return new DeviceController(kc, log, options);
}
