/**
 * @module
 * NodeAuthorizer defaults, the one place they are written.
 */

/** Options of the {@link NodeAuthorizer}; defaults in `defaultNodeAuthorizerOptions`. */
export interface NodeAuthorizerOptions {
  /**
   * Checks every upstream message against the session's node. Off (development only): every
   * node may write any node's status and read any object it names; logged as a warning at
   * construction. Default true.
   */
  enabled: boolean;
  /** Refusals are logged once per node and kind of attempt per window, then one count line. Default 10000 ms. */
  logWindowMs: number;
}

/** Defaults of every NodeAuthorizer option. */
export const defaultNodeAuthorizerOptions: NodeAuthorizerOptions = {
  /** On by default (KubeEdge ships its node authorizer off; issue 13). */
  enabled: true,
  /** The window CloudHub's repeated warnings use (docs/protocol.md). */
  logWindowMs: 10_000,
};

/** Merges and checks options; a bad value throws TypeError at construction. */
export function resolveNodeAuthorizerOptions(partial: Partial<NodeAuthorizerOptions> = {}): NodeAuthorizerOptions {
  const o: NodeAuthorizerOptions = { ...defaultNodeAuthorizerOptions, ...partial };
  if (typeof o.enabled !== 'boolean') throw new TypeError('nodeauthorizer: enabled must be a boolean');
  if (!Number.isFinite(o.logWindowMs) || o.logWindowMs < 1) throw new TypeError('nodeauthorizer: logWindowMs must be a positive number of milliseconds');
  return o;
}
