/**
 * @module
 * Options of CloudCore's certificate authority and of its join endpoint, with every default in
 * one place (issue 13; docs in cloud/certauthority/index.ts).
 */
import { defaultLeaderElectionOptions } from '../leaderelection/options.js';

const DAY_MS = 86_400_000;

/** Defaults of the CA ({@link loadOrCreateCa}'s options). */
export const defaultCertificateAuthorityOptions = {
  /** Namespace of the CA Secret: CloudCore's (the leader election's, 'kube-system'). */
  namespace: defaultLeaderElectionOptions.namespace,
  /** Name of the Secret holding the CA (type kubernetes.io/tls, keys tls.crt and tls.key). Default 'ledge-ca'. */
  secretName: 'ledge-ca',
  /** Lifetime of a node client certificate. Default one year. */
  nodeCertLifetimeMs: 365 * DAY_MS,
  /** Lifetime of a CloudHub serving certificate (issued at each start, kept in memory). Default one year. */
  servingCertLifetimeMs: 365 * DAY_MS,
  /**
   * How far before "now" an issued certificate's notBefore lies, for clocks that are behind
   * (Kubernetes' CSR signer: 5 minutes). Never more than a tenth of the certificate's lifetime, so
   * a short-lived certificate's lifetime is still mostly ahead of it. Default 300000 (5 min).
   */
  backdateMs: 5 * 60_000,
  /** Longest one Kubernetes API call of the CA may take. Default 10000. */
  apiTimeoutMs: 10_000,
} as const;

/** Defaults of the join endpoint ({@link createJoinHandler}'s options). */
export const defaultJoinHandlerOptions = {
  /** Largest `POST /v1/join` body read; larger ones are answered 413 and not read further. Default 65536 (64 KiB). */
  maxBodyBytes: 65_536,
  /** A join body must arrive whole within this time, else 408 and the connection is closed. Default 10000. */
  bodyTimeoutMs: 10_000,
  /**
   * Joins accepted per minute, all clients together (a token bucket; beyond it: 429 with
   * Retry-After). Each costs an API read (and a delete for a single-use token) and a signature.
   * Default 600.
   */
  ratePerMinute: 600,
  /** Joins that may arrive at once after a quiet spell (the bucket's size). Default 60. */
  burst: 60,
} as const;

/**
 * Defaults of the renewal endpoint ({@link createRenewHandler}'s options): the join endpoint's
 * limits, with a bucket of its own (a flood of joins does not delay renewals, nor the reverse).
 */
export const defaultRenewHandlerOptions = {
  /** Largest `POST /v1/renew` body read (a CSR is ~500 bytes); larger: 413, not read further. Default 65536 (64 KiB). */
  maxBodyBytes: defaultJoinHandlerOptions.maxBodyBytes,
  /** A renewal body must arrive whole within this time, else 408. Default 10000. */
  bodyTimeoutMs: defaultJoinHandlerOptions.bodyTimeoutMs,
  /**
   * Renewals signed per minute, all nodes together (a token bucket; beyond: 429 with Retry-After,
   * and the edge retries with backoff). 10,000 nodes with one-year certificates renew about
   * once a minute together. Default 600.
   */
  ratePerMinute: defaultJoinHandlerOptions.ratePerMinute,
  /** Renewals that may arrive at once after a quiet spell (the bucket's size). Default 60. */
  burst: defaultJoinHandlerOptions.burst,
} as const;

/** Checks the join (or renewal: `what`) endpoint's numbers; a bad one throws TypeError at construction. */
export function checkJoinHandlerOptions(o: { maxBodyBytes: number; bodyTimeoutMs: number; ratePerMinute: number; burst: number }, what = 'join handler'): void {
  if (!Number.isInteger(o.maxBodyBytes) || o.maxBodyBytes < 1024) throw new TypeError(`${what}: maxBodyBytes ${o.maxBodyBytes} must be an integer ≥ 1024`);
  if (!(o.bodyTimeoutMs > 0)) throw new TypeError(`${what}: bodyTimeoutMs ${o.bodyTimeoutMs} must be positive`);
  if (!(o.ratePerMinute > 0)) throw new TypeError(`${what}: ratePerMinute ${o.ratePerMinute} must be positive`);
  if (!Number.isInteger(o.burst) || o.burst < 1) throw new TypeError(`${what}: burst ${o.burst} must be a positive integer`);
}
