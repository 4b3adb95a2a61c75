/**
 * @module
 * Node revocation (issue 13, docs/security.md "Revoking a node"): a node revoked before T (ConfigMap
 * `ledge-revoked-nodes` in the CA's namespace, data `<node>: <RFC 3339 T>`; written by
 * `ledge node revoke`, or by CloudCore when an edge Node is deleted) has its certificates issued
 * before T refused at CloudHub's upgrade (401) and by POST /v1/renew, and its live sessions closed
 * on every replica; a re-joined node (a certificate issued after T) is accepted.
 *
 * - {@link createNodeRevocation}: the CloudCore module (informer on the ConfigMap, deletions from
 *   the EdgeController's Node informer), with `refusal`/`isRevoked` for CloudHub and the renew
 *   endpoint and `onRevoked` to close sessions.
 * - {@link createRevocationStore}: writes to the ConfigMap (the CLI's, and the module's).
 * - ./decision.ts: the pure decision and the ConfigMap's parsing.
 *
 * @example
 * const revocation = createNodeRevocation({ namespace }, { kc, log });
 * const hub = createCloudHub({ ..., revocation }, { log });
 * revocation.onRevoked((nodes) => hub.closeRevokedSessions(nodes));
 */
import type { RevocationOptions } from './options.js';
import { NodeRevocation, type NodeRevocationDeps } from './revocation.js';

export { NodeRevocation } from './revocation.js';
export type { EdgeNodeInformers, NodeRevocationDeps, RevocationSubject } from './revocation.js';
export { createRevocationStore } from './store.js';
export type { RevocationApi, RevocationStore, RevocationStoreOptions, RevokeResult } from './store.js';
export { certificateTimes, countsIssuedAt, formatRevokedAt, parseRevocations, parseRfc3339, revocationRefusal, revokedReason } from './decision.js';
export type { CertificateTimes, ParsedRevocations } from './decision.js';
export { REVOCATION_CONFIGMAP, defaultRevocationOptions, resolveRevocationOptions } from './options.js';
export type { RevocationOptions } from './options.js';

/** Creates the revocation module (register it on CloudCore's Beehive; hand it to CloudHub, the EdgeController and the renew endpoint). */
export function createNodeRevocation(options: Partial<RevocationOptions>, deps: NodeRevocationDeps): NodeRevocation {
  return new NodeRevocation(options, deps);
}
