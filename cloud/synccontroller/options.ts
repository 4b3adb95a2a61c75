/**
 * @module
 * SyncController defaults, the one place they are written (`cloud/config.ts` takes its
 * `controllers.*` defaults from here).
 */
import type { SyncControllerOptions } from './synccontroller.js';

/** Defaults of the options that have one. */
export const defaultSyncControllerOptions = {
  /** Full reconcile of every connected node against its records, ms. KubeEdge's is 5 s; informers make most of it redundant. */
  reconcileIntervalMs: 30_000,
} as const satisfies Partial<SyncControllerOptions>;
