/**
 * @module
 * CloudHub: sessions with edge nodes, per-node durable-until-ACK queues, upstream
 * dispatch. Create with {@link createCloudHub} and register on the cloud's Beehive.
 */
import { CloudHub, type CloudHubDeps } from './cloudhub.js';
import type { CloudHubOptions } from './options.js';

export { CloudHub } from './cloudhub.js';
export type { CloudHubDeps, SessionEvents, NodeSummary } from './cloudhub.js';
export { defaultCloudHubOptions, resolveCloudHubOptions } from './options.js';
export type { CloudHubOptions, CloudHubTlsOptions } from './options.js';
export { InMemoryAckRecorder } from './ack-recorder.js';
export type { AckRecorder, AckedObject } from './ack-recorder.js';

/** Creates the CloudHub module. */
export function createCloudHub(options: Partial<CloudHubOptions>, deps: CloudHubDeps): CloudHub {
  return new CloudHub(options, deps);
}
