/**
 * @module
 * SyncController and the ObjectSync / ClusterObjectSync records.
 */
export { SyncController, edgeResourceOf } from './synccontroller.js';
export type { DesiredObject, DesiredSource, SyncControllerOptions, ReconcileResult } from './synccontroller.js';
export * from './crds.js';
