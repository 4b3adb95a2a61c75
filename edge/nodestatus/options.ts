/**
 * @module
 * Node-status reporter defaults, the one place they are written (`edge/config.ts` takes
 * its `nodeStatus.*` defaults from here).
 */
import type { NodeStatusOptions } from './index.js';

/** Defaults of the options that have one. */
export const defaultNodeStatusOptions = {
  /** Report interval, ms (KubeEdge's nodeStatusUpdateFrequency). */
  intervalMs: 10_000,
  /** How often the health checks are polled for a change between reports, ms. */
  healthPollMs: 1_000,
} as const satisfies Partial<NodeStatusOptions>;
