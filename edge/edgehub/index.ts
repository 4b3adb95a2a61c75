/**
 * @module
 * EdgeHub: the edge's WebSocket link to CloudHub, with a restart-safe outbox.
 */
import type { Logger } from '../../shared/log/index.js';
import { EdgeHub, type EdgeHubInit } from './edgehub.js';

export { EdgeHub } from './edgehub.js';
export type { EdgeHubInit } from './edgehub.js';
export { defaultEdgeHubOptions } from './options.js';
export type { EdgeHubOptions } from './options.js';
export { Outbox } from './outbox.js';

/** Creates the EdgeHub module. */
export function createEdgeHub(init: EdgeHubInit, log: Logger): EdgeHub {
  return new EdgeHub(init, log);
}
