/**
 * @module
 * EdgeStream: serves the streams the cloud opens on the link for `kubectl logs` (with follow),
 * `exec` and `attach`, from the pods Edged runs on this node (./edgestream.ts); the Status an
 * exec ends with (./status.ts).
 */
import type { Logger } from '../../shared/log/index.js';
import { EdgeStream, type EdgeStreamOptions } from './edgestream.js';

export { EdgeStream, MAX_EDGE_STREAMS } from './edgestream.js';
export type { EdgeStreamOptions, PodWorkerView } from './edgestream.js';
export { endStatus, failureStatus } from './status.js';

/** Creates EdgeStream; EdgeHub calls `serve(stream)` for each stream the cloud opens. */
export function createEdgeStream(options: EdgeStreamOptions, log: Logger): EdgeStream {
  return new EdgeStream(options, log.child({ module: 'edgestream' }));
}
