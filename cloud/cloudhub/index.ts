/**
 * @module
 * CloudHub: sessions with edge nodes, per-node durable-until-ACK queues, upstream
 * dispatch. Create with {@link createCloudHub} and register on the cloud's Beehive.
 */
import { CloudHub, type CloudHubDeps } from './cloudhub.js';
import type { CloudHubOptions } from './options.js';

export { CloudHub } from './cloudhub.js';
export type { CloudHubDeps, NodeSummary } from './cloudhub.js';
export { defaultCloudHubOptions, hubTransport, resolveCloudHubOptions } from './options.js';
export type { CloudHubHttpHandler, CloudHubOptions, CloudHubTlsCredentials, CloudHubTlsOptions, HubTransport, RevocationCheck } from './options.js';
export { isLoopbackHost, nodeFromCertificate } from './identity.js';
export type { CertificateIdentity } from './identity.js';
export { ackReport, sessionReport, SessionOperation } from './reports.js';
export type { AckReport, SessionReport, AckedObject } from './reports.js';

/** Creates the CloudHub module. */
export function createCloudHub(options: Partial<CloudHubOptions>, deps: CloudHubDeps): CloudHub {
  return new CloudHub(options, deps);
}
