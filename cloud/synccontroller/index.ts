/**
 * @module
 * SyncController and the ObjectSync / ClusterObjectSync records.
 */
export { SyncController, SyncOperation, desiredChanged, edgeResourceOf } from './synccontroller.js';
export type { DesiredObject, DesiredSource, DesiredChange, ObjectKey, SyncControllerOptions, SyncControllerInit, ReconcileResult } from './synccontroller.js';
export { defaultSyncControllerOptions } from './options.js';
export * from './crds.js';
export { combineDesiredSources } from './desired.js';
