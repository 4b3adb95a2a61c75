/**
 * @module
 * NodeAuthorizer: every upstream message is checked against the node of the session it came on
 * before a cloud module acts on it (rules in ./authorizer.ts). On by default.
 *
 * @example
 * const authorizer = createNodeAuthorizer({ pod: (ns, name) => cachedPodFacts(ns, name) }, log);
 * const session = sessionOf(msg); // node/<session's node>/<resource>, as CloudHub routes it
 * const d = authorizer.authorize(session.node, session.message);
 * if (!d.allowed) return d.error; // answered to the node; nothing reaches the API server
 */
import type { Logger } from '../../shared/log/index.js';
import { NodeAuthorizer, type NodeLookups } from './authorizer.js';
import type { NodeAuthorizerOptions } from './options.js';

export { NodeAuthorizer, AttemptKind, MIRROR_ANNOTATION, podFacts, sessionOf } from './authorizer.js';
export type { Allowed, Decision, DeviceFacts, NodeAuthorizerStats, NodeLookups, PodFacts, Refused, RefusedEntry, RefusedEvent } from './authorizer.js';
export { defaultNodeAuthorizerOptions, resolveNodeAuthorizerOptions } from './options.js';
export type { NodeAuthorizerOptions } from './options.js';

/** A NodeAuthorizer reading `lookups` (a missing lookup knows nothing: what it would answer is refused). */
export function createNodeAuthorizer(lookups: Partial<NodeLookups>, log: Logger, options?: Partial<NodeAuthorizerOptions>): NodeAuthorizer {
  return new NodeAuthorizer(lookups, log, options);
}
