/**
 * @module
 * `POST /v1/renew` (issue 13, "Renewal wire protocol"): a node renews its client certificate,
 * authenticated by the certificate it holds now, on CloudHub's HTTPS port beside the join routes.
 *
 * - Authentication is the TLS client certificate of the request's own connection: verified by
 *   CloudHub's client CA (`req.socket.authorized`), issued by this CA, naming a node
 *   (`CN=system:node:<name>, O=system:nodes`), and not revoked (the injected `isRevoked`, asked
 *   first). Anything else — no certificate, another CA's, an expired one, a subject that is no
 *   node's, a revoked node — is 401 {@link RenewUnauthenticatedError} saying "re-join": only a new
 *   join token gets such a node back in.
 * - Body `{"csr": "<PKCS#10 PEM>"}` (≤ 64 KiB, within 10 s) → 200 `{"certificate", "ca"}`: a
 *   certificate for the CSR's key and for the node the presented certificate names, never a name
 *   from the body. 400 (content type, JSON, CSR), 413, 408, 429 (Retry-After) and 503/500 as for
 *   `POST /v1/join`.
 *
 * Authentication comes before the rate limit: requests that cannot renew cost no token of the
 * bucket, so unauthenticated noise cannot delay the renewals of admitted nodes. Every refusal is one
 * log line with the node (when known), the certificate's serial and the error's code; 429s at most
 * once per 10 s with a count.
 */
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import { JoinRateLimitedError, JoinRequestError, RenewUnauthenticatedError, errorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { nodeFromCertificate } from '../cloudhub/index.js';
import type { CertificateAuthority } from './ca.js';
import { readBody, refusalResponder, requestPath, send, statusOf, tokenBucket } from './join.js';
import { checkJoinHandlerOptions, defaultRenewHandlerOptions } from './options.js';

/** Path of the renewal request. */
export const RENEW_PATH = '/v1/renew';

/** What a node is told to do when its certificate cannot renew (it must be admitted again). */
const REJOIN = 're-join the node: edgecore join --force with a new token (ledge token create)';

/** Options of {@link createRenewHandler}; defaults in ./options.ts. */
export interface RenewHandlerOptions {
  ca: Pick<CertificateAuthority, 'certPem' | 'checkNodeCsr' | 'signNodeCsr'>;
  log: Logger;
  /**
   * Whether `node`'s certificate `cert` (the one presented) is revoked: asked before anything is
   * read or signed; true, or a refusal text (cloud/revocation's `refusal`), → 401 with that text. A
   * throw is a 503 (fail closed: nothing is signed). Default: none revoked.
   */
  isRevoked?: (node: string, cert: X509Certificate) => boolean | string | undefined;
  /**
   * Told of each certificate issued, after it was sent: CloudHub lets the node's live session run
   * until the new certificate's expiry instead of the old one's (the session is not renewed, the
   * identity is). Default: none.
   */
  onRenewed?: (node: string, notAfterMs: number) => void;
  /** Largest body read. Default 65536. */
  maxBodyBytes?: number;
  /** The body must arrive within this time. Default 10000. */
  bodyTimeoutMs?: number;
  /** Renewals per minute, all nodes together. Default 600. */
  ratePerMinute?: number;
  /** Renewals that may come at once (the bucket's size). Default 60. */
  burst?: number;
  /** Lifetime of the renewed certificates. Default: the CA's (one year, or CloudCore's --node-cert-lifetime-ms). */
  nodeCertLifetimeMs?: number;
  /** Monotonic clock of the rate limit, ms. Default performance.now. */
  now?: () => number;
}

/** Who asked, as far as known: for the log line. */
interface Caller {
  node?: string;
  serial?: string;
}

/**
 * The handler of `POST /v1/renew` (see the module comment), a plain `(req, res) => boolean` for
 * CloudHub's `httpHandler` chain: true when it answered (that path), false for any other path.
 *
 * @example
 * const join = createJoinHandler({ ca, tokens, log });
 * const renew = createRenewHandler({ ca, log, isRevoked: revocations.isRevoked });
 * const httpHandler = (req, res) => join(req, res) || renew(req, res);
 */
export function createRenewHandler(options: RenewHandlerOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const o = { ...defaultRenewHandlerOptions, ...options };
  checkJoinHandlerOptions(o, 'renew handler');
  const { ca, log } = o;
  const caCert = new X509Certificate(ca.certPem);
  const now = o.now ?? (() => performance.now());
  const take = tokenBucket(o.ratePerMinute, o.burst, now);
  const respond = refusalResponder(log, now, { 503: 'CloudCore cannot renew certificates now; try again later', 500: 'CloudCore failed to handle the renewal' });
  const refuse = (req: IncomingMessage, res: ServerResponse, err: unknown, who: Caller, headers: Record<string, string> = {}, status = statusOf(err)) =>
    respond(res, err, status, headers, `certificate renewal of node ${who.node ?? '(unauthenticated)'} refused (${status}): ${errorMessage(err)}`, {
      node: who.node ?? '',
      serial: who.serial ?? '',
      remote: req.socket.remoteAddress ?? '',
    });

  /** The node the connection's client certificate names, checked; throws RenewUnauthenticatedError (any other error: isRevoked failed). */
  const authenticate = (req: IncomingMessage, who: Caller): { node: string; cert: X509Certificate } => {
    const socket = req.socket as Partial<TLSSocket>;
    if (typeof socket.getPeerX509Certificate !== 'function' || typeof socket.getPeerCertificate !== 'function') {
      throw new RenewUnauthenticatedError("renewal needs TLS with the node's client certificate (this server is not TLS)");
    }
    const cert = socket.getPeerX509Certificate();
    if (!cert) throw new RenewUnauthenticatedError(`no client certificate: a renewal is authenticated by the node's current certificate (a node without one joins: edgecore join)`);
    who.serial = cert.serialNumber;
    if (!socket.authorized) {
      const why = String(socket.authorizationError ?? 'not verified');
      const what = why === 'CERT_HAS_EXPIRED' ? 'has expired' : `is not accepted (${why})`;
      throw new RenewUnauthenticatedError(`the client certificate ${what}: ${REJOIN}`);
    }
    // CloudHub's client CA is this CA; checked again so a wider client CA bundle cannot renew from another CA.
    if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) throw new RenewUnauthenticatedError(`the client certificate is not from the node CA: ${REJOIN}`);
    const identity = nodeFromCertificate(socket.getPeerCertificate());
    if ('reason' in identity) throw new RenewUnauthenticatedError(`${identity.reason}: ${REJOIN}`);
    who.node = identity.node;
    let revoked: boolean | string | undefined;
    try {
      revoked = o.isRevoked?.(identity.node, cert) ?? false;
    } catch (err) {
      // Fail closed: a revocation that cannot be checked signs nothing (the caller answers 503).
      throw new Error(`cannot check whether node ${identity.node} is revoked: ${errorMessage(err)}`, { cause: err });
    }
    if (revoked) throw new RenewUnauthenticatedError(typeof revoked === 'string' ? revoked : `node ${identity.node} was revoked: ${REJOIN}`);
    return { node: identity.node, cert };
  };

  const renew = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const who: Caller = {};
    try {
      if (req.method !== 'POST') {
        refuse(req, res, new JoinRequestError(`${req.method} is not allowed on ${RENEW_PATH}: use POST`), who, { allow: 'POST' }, 405);
        return;
      }
      let node: string;
      try {
        ({ node } = authenticate(req, who));
      } catch (err) {
        if (err instanceof RenewUnauthenticatedError) throw err;
        refuse(req, res, err, who, {}, 503);
        return;
      }
      const wait = take();
      if (wait > 0) {
        const s = String(Math.ceil(wait / 1000));
        refuse(req, res, new JoinRateLimitedError(`too many renewals; retry in ${s} s`), who, { 'retry-after': s });
        return;
      }
      const type = req.headers['content-type'] ?? '';
      if (!/^application\/json[ \t]*(;|$)/i.test(type)) throw new JoinRequestError(`Content-Type must be application/json, got ${JSON.stringify(type.slice(0, 64) || '(none)')}`);
      const raw = await readBody(req, o.maxBodyBytes, o.bodyTimeoutMs);
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch (err) {
        throw new JoinRequestError(`the body is not JSON (${errorMessage(err)})`, { cause: err });
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new JoinRequestError('the body must be a JSON object {"csr"}');
      const { csr } = body as { csr?: unknown };
      if (typeof csr !== 'string') throw new JoinRequestError('the body has no "csr" string (a PEM PKCS#10 certification request)');
      const checked = await ca.checkNodeCsr(csr);
      // The node of the presented certificate: a name in the body (if any) is ignored.
      const certificate = await ca.signNodeCsr(csr, node, o.nodeCertLifetimeMs ? { lifetimeMs: o.nodeCertLifetimeMs } : {});
      send(res, 200, JSON.stringify({ certificate, ca: ca.certPem }), 'application/json');
      const issued = new X509Certificate(certificate);
      o.onRenewed?.(node, Date.parse(issued.validTo));
      log.info(`node ${node} renewed its certificate`, {
        node,
        serial: who.serial ?? '',
        newSerial: issued.serialNumber,
        validTo: new Date(issued.validTo).toISOString(),
        key: checked.keyAlgorithm,
        remote: req.socket.remoteAddress ?? '',
      });
    } catch (err) {
      refuse(req, res, err, who);
    }
  };

  return (req, res) => {
    if (requestPath(req) !== RENEW_PATH) return false;
    renew(req, res).catch((err: unknown) => log.error(`renewal request failed: ${errorMessage(err)}`, { code: errorCode(err) }));
    return true;
  };
}
