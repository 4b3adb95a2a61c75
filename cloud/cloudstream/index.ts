/**
 * @module
 * CloudStream: CloudCore's kubelet endpoint for `kubectl logs`, `exec` and `attach` of edge
 * pods, carried over the node's existing link (no tunnel port, no iptables). Create it with
 * the hub's `openStream`/`isConnected` and the EdgeController's pod lookup, register it on the
 * cloud's Beehive, add it to CloudHub's `sessionSubscribers`, and write {@link CloudStream.nodeEndpoint}
 * into the edge Nodes.
 */
export { CloudStream, cloudStreamEndpoint, refusalFor, logsRequest, execRequest } from './cloudstream.js';
export type { CloudStreamDeps } from './cloudstream.js';
export { defaultCloudStreamOptions, resolveCloudStreamOptions } from './options.js';
export type { CloudStreamOptions } from './options.js';
export { kubeStreamPeers, streamLeaseName, PEER_ANNOTATION, PEER_CERT_ANNOTATION, PEER_SECRET, STREAM_LEASE_LABEL } from './leases.js';
export type { PeerInfo, StreamPeers } from './leases.js';
export { FORWARDED_HEADER } from './forward.js';
export { V4_PROTOCOL, V5_PROTOCOL } from './channel.js';
