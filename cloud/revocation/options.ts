/**
 * @module
 * Options of node revocation, with every default in one place (issue 13; design in ./index.ts).
 */
import { defaultCertificateAuthorityOptions } from '../certauthority/options.js';

const DAY_MS = 86_400_000;

/** Name of the ConfigMap holding the revocations (data `<node>: <RFC 3339 time>`), in the CA's namespace. */
export const REVOCATION_CONFIGMAP = 'ledge-revoked-nodes';

/** Defaults of {@link NodeRevocation}'s and the revocation store's options. */
export const defaultRevocationOptions = {
  /** Namespace of the ConfigMap: the CA's ('kube-system'). */
  namespace: defaultCertificateAuthorityOptions.namespace,
  /** Name of the ConfigMap. Default 'ledge-revoked-nodes'. */
  configMapName: REVOCATION_CONFIGMAP,
  /**
   * How far before its issuance the CA dates a node certificate's notBefore (the CA's `backdateMs`,
   * 5 min). A certificate counts as issued at notBefore + this: for the CA's one-year certificates
   * that is exact; for short-lived ones (backdated by a tenth of their lifetime, less than this) it
   * is later than the real issuance, so those issued shortly before a revocation may still pass.
   * It never makes a certificate issued after the revocation look older (a re-join is accepted).
   */
  backdateMs: defaultCertificateAuthorityOptions.backdateMs,
  /**
   * A certificate is refused when it counts as issued at least this long before the revocation.
   * Certificate times have one-second precision (notBefore is cut to the second), so a certificate
   * issued right after the revocation can look up to 1 s older. Default 1000.
   */
  toleranceMs: 1000,
  /**
   * Revocations older than this are dropped when the ConfigMap is next written: every certificate
   * they refuse has expired by then. Default the CA's node-certificate lifetime (one year) + 1 day.
   */
  pruneAfterMs: defaultCertificateAuthorityOptions.nodeCertLifetimeMs + DAY_MS,
  /** Longest one Kubernetes API call may take. Default 10000. */
  apiTimeoutMs: 10_000,
  /** Attempts of one ConfigMap write when other writers keep winning (409 Conflict). Default 8. */
  conflictAttempts: 8,
  /** First delay before a failed revocation write is tried again; doubles up to `maxRetryMs`. Default 1000. */
  retryMs: 1000,
  /** Longest delay between attempts of a failed revocation write. Default 30000. */
  maxRetryMs: 30_000,
  /** Delay before a failed watch of the ConfigMap is started again. Default 2000. */
  watchRestartMs: 2000,
} as const;

/** Options of node revocation; each field's default and meaning are on {@link defaultRevocationOptions}. */
export interface RevocationOptions {
  namespace: string;
  configMapName: string;
  backdateMs: number;
  toleranceMs: number;
  pruneAfterMs: number;
  apiTimeoutMs: number;
  conflictAttempts: number;
  retryMs: number;
  maxRetryMs: number;
  watchRestartMs: number;
}

/** Merges and checks options; a bad number throws TypeError at construction. */
export function resolveRevocationOptions(partial: Partial<RevocationOptions> = {}): RevocationOptions {
  const o: RevocationOptions = { ...defaultRevocationOptions, ...partial };
  for (const k of ['backdateMs', 'toleranceMs'] as const) if (!(o[k] >= 0)) throw new TypeError(`revocation: ${k} ${o[k]} must not be negative`);
  for (const k of ['pruneAfterMs', 'apiTimeoutMs', 'retryMs', 'maxRetryMs', 'watchRestartMs'] as const) {
    if (!(o[k] > 0)) throw new TypeError(`revocation: ${k} ${o[k]} must be positive`);
  }
  if (!Number.isInteger(o.conflictAttempts) || o.conflictAttempts < 1) throw new TypeError(`revocation: conflictAttempts ${o.conflictAttempts} must be a positive integer`);
  if (!o.namespace || !o.configMapName) throw new TypeError('revocation: namespace and configMapName must not be empty');
  return o;
}
