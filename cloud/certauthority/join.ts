/**
 * @module
 * The two HTTP routes of joining (issue 13; served by CloudHub's HTTPS server, before the
 * WebSocket upgrade and without a client certificate):
 *
 * - `GET /v1/ca.crt` → 200 `application/x-pem-file`, the CA certificate. No authentication: the
 *   edge checks it against the hash in its token before trusting it.
 * - `POST /v1/join` with `Authorization: Bearer <id>.<secret>` and a JSON body
 *   `{"nodeName", "csr"}` → 200 `{"certificate", "ca"}`; refusals are `{"code", "message"}` with
 *   401 (token missing, malformed, unknown, expired, used), 400 (content type, JSON, node name,
 *   CSR), 413 (body over `maxBodyBytes`: not read further), 408 (body slower than
 *   `bodyTimeoutMs`), 429 (over the rate, with Retry-After), 503/500 (the API or CloudCore failed).
 *
 * Order: the token's form is checked first (no body is read for a malformed one), then the body and
 * the CSR, and only then is the token consumed, so a request with a bad CSR does not spend a
 * single-use token. Every refusal is logged once, one line with the node name and the token id
 * (never the secret) and the error's code; rate-limit refusals at most once per 10 s with a count.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  JoinBodyTooLargeError,
  JoinRateLimitedError,
  JoinRequestError,
  JoinTokenMalformedError,
  KubeApiError,
  LedgeError,
  TimeoutError,
  errorCode,
  errorMessage,
} from '../../shared/errors/index.js';
import { isValidNodeName, parseBearer, type JoinCredential } from '../../shared/jointoken/index.js';
import type { Logger } from '../../shared/log/index.js';
import type { TokenStore } from '../tokens/index.js';
import type { CertificateAuthority } from './ca.js';
import { checkJoinHandlerOptions, defaultJoinHandlerOptions } from './options.js';

/** Path of the CA certificate. */
export const CA_CERT_PATH = '/v1/ca.crt';
/** Path of the join request. */
export const JOIN_PATH = '/v1/join';

/** Rate-limit refusals are logged at most once per this many ms (the others are counted). */
export const RATE_LOG_WINDOW_MS = 10_000;

/** Options of {@link createJoinHandler}; defaults in ./options.ts. */
export interface JoinHandlerOptions {
  ca: Pick<CertificateAuthority, 'certPem' | 'checkNodeCsr' | 'signNodeCsr'>;
  tokens: Pick<TokenStore, 'consume'>;
  log: Logger;
  /** Largest body read. Default 65536. */
  maxBodyBytes?: number;
  /** The body must arrive within this time. Default 10000. */
  bodyTimeoutMs?: number;
  /** Join requests per minute, all clients together. Default 600. */
  ratePerMinute?: number;
  /** Requests that may come at once (the bucket's size). Default 60. */
  burst?: number;
  /** Lifetime of the node certificates issued. Default: the CA's (one year). */
  nodeCertLifetimeMs?: number;
  /** Monotonic clock of the rate limit, ms. Default performance.now. */
  now?: () => number;
}

/** A refusal with the HTTP status it is answered with (the error's own, else 500). Shared with ./renew.ts. */
export function statusOf(err: unknown): number {
  if (err instanceof TimeoutError) return 408;
  if (err instanceof KubeApiError) return 503;
  return err instanceof LedgeError && err.httpStatus ? err.httpStatus : 500;
}

/** A value shown in a message: quoted, cut at 64 characters (a node name can be anything a client sent). */
export function shown(v: unknown): string {
  const s = typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v));
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}

/** Answers once (nothing if an answer went out already or the socket is gone), never cached. */
export function send(res: ServerResponse, status: number, body: string, type: string, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  res.end(body);
}

/**
 * Reads the whole body: at most `max` bytes (beyond: {@link JoinBodyTooLargeError}, also at once
 * for a larger Content-Length), within `timeoutMs` (else {@link TimeoutError}).
 */
export function readBody(req: IncomingMessage, max: number, timeoutMs: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > max) return Promise.reject(new JoinBodyTooLargeError(`the body has ${declared} bytes; at most ${max} are accepted`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (err) {
        // Nothing more is read: the refusal goes out with Connection: close and the socket ends.
        req.pause();
        reject(err);
      } else resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) finish(new JoinBodyTooLargeError(`the body is over ${max} bytes`));
      else chunks.push(chunk);
    };
    const onEnd = () => finish(undefined);
    const onError = (err: Error) => finish(new JoinRequestError(`the request failed while its body was read: ${err.message}`, { cause: err }));
    const onClose = () => finish(new JoinRequestError('the client closed the connection before the body ended'));
    const timer = setTimeout(() => finish(new TimeoutError(`the body did not arrive within ${timeoutMs} ms`)), timeoutMs);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * A token bucket of `ratePerMinute`, holding at most `burst`: the function takes one request's
 * token and returns 0, or returns the ms until one is there (nothing taken). Shared with ./renew.ts.
 */
export function tokenBucket(ratePerMinute: number, burst: number, now: () => number): () => number {
  const perMs = ratePerMinute / 60_000;
  let available = burst;
  let refilledAt = now();
  return () => {
    const t = now();
    available = Math.min(burst, available + (t - refilledAt) * perMs);
    refilledAt = t;
    if (available >= 1) {
      available -= 1;
      return 0;
    }
    return (1 - available) / perMs;
  };
}

/** The credential of an `Authorization: Bearer <id>.<secret>` header. */
function bearerOf(header: string | undefined): JoinCredential {
  if (!header) throw new JoinTokenMalformedError('no Authorization header: send "Authorization: Bearer <id>.<secret>"');
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (!m) throw new JoinTokenMalformedError('the Authorization header is not "Bearer <id>.<secret>"');
  return parseBearer(m[1]!);
}

/** The path of `req`'s URL (no query), or undefined when the URL does not parse (the request is then not the handler's). */
export function requestPath(req: IncomingMessage): string | undefined {
  try {
    return new URL(req.url ?? '/', 'http://cloudhub.invalid').pathname;
  } catch {
    return undefined;
  }
}

/**
 * Answers a refused join or renewal with `{code, message}` and logs it as one line: API and
 * internal failures (503, 500) answer only `hidden[status]` (the detail may describe the cluster:
 * it goes to the log); a 408 or 413 closes the connection; refusals for the rate (429) are logged
 * at most once per {@link RATE_LOG_WINDOW_MS}, with the count refused meanwhile.
 */
export function refusalResponder(log: Logger, now: () => number, hidden: { 503: string; 500: string }) {
  let rateLogUntil = Number.NEGATIVE_INFINITY;
  let rateSuppressed = 0;
  return (res: ServerResponse, err: unknown, status: number, headers: Record<string, string>, line: string, fields: Record<string, string>): void => {
    const code = errorCode(err);
    const message = status === 503 ? hidden[503] : status === 500 ? hidden[500] : errorMessage(err);
    const closing = status === 413 || status === 408;
    send(res, status, JSON.stringify({ code, message }), 'application/json', { ...headers, ...(closing ? { connection: 'close' } : {}) });
    const logged = { code, status, ...fields };
    if (status === 429) {
      const t = now();
      if (t < rateLogUntil) {
        rateSuppressed++;
        return;
      }
      rateLogUntil = t + RATE_LOG_WINDOW_MS;
      log.warn(rateSuppressed ? `${line} (${rateSuppressed} more refused for the rate in the last window)` : line, logged);
      rateSuppressed = 0;
    } else if (status >= 500) log.error(line, logged);
    else log.warn(line, logged);
  };
}

/**
 * The handler of `GET /v1/ca.crt` and `POST /v1/join` (see the module comment). It answers those
 * two paths and returns true; for any other path it returns false and touches nothing, so the
 * caller serves it.
 *
 * @example
 * const join = createJoinHandler({ ca, tokens, log });
 * server.on('request', (req, res) => { if (!join(req, res)) notFound(res); });
 */
export function createJoinHandler(options: JoinHandlerOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const o = { ...defaultJoinHandlerOptions, ...options };
  checkJoinHandlerOptions(o);
  const { ca, tokens, log } = o;
  const now = o.now ?? (() => performance.now());
  const take = tokenBucket(o.ratePerMinute, o.burst, now);
  const respond = refusalResponder(log, now, {
    503: 'CloudCore could not check the token (the Kubernetes API failed); try again later',
    500: 'CloudCore failed to handle the join',
  });
  const refuse = (
    req: IncomingMessage,
    res: ServerResponse,
    err: unknown,
    who: { node?: string; tokenId?: string },
    headers: Record<string, string> = {},
    status = statusOf(err),
  ) =>
    respond(res, err, status, headers, `join of node ${who.node ?? '(not read)'} with token ${who.tokenId ?? '(none)'} refused (${status}): ${errorMessage(err)}`, {
      node: who.node ?? '',
      tokenId: who.tokenId ?? '',
      remote: req.socket.remoteAddress ?? '',
    });

  const join = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const who: { node?: string; tokenId?: string } = {};
    try {
      if (req.method !== 'POST') {
        refuse(req, res, new JoinRequestError(`${req.method} is not allowed on ${JOIN_PATH}: use POST`), who, { allow: 'POST' }, 405);
        return;
      }
      const wait = take();
      if (wait > 0) {
        refuse(req, res, new JoinRateLimitedError(`too many join requests; retry in ${Math.ceil(wait / 1000)} s`), who, { 'retry-after': String(Math.ceil(wait / 1000)) });
        return;
      }
      const cred = bearerOf(req.headers.authorization);
      who.tokenId = cred.id;
      const type = req.headers['content-type'] ?? '';
      if (!/^application\/json[ \t]*(;|$)/i.test(type)) throw new JoinRequestError(`Content-Type must be application/json, got ${shown(type || '(none)')}`);
      const raw = await readBody(req, o.maxBodyBytes, o.bodyTimeoutMs);
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch (err) {
        throw new JoinRequestError(`the body is not JSON (${errorMessage(err)})`, { cause: err });
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new JoinRequestError('the body must be a JSON object {"nodeName", "csr"}');
      const { nodeName, csr } = body as { nodeName?: unknown; csr?: unknown };
      if (typeof nodeName !== 'string') throw new JoinRequestError('the body has no "nodeName" string');
      if (!isValidNodeName(nodeName))
        throw new JoinRequestError(`node name ${shown(nodeName)} is not a DNS-1123 subdomain (lower case a-z, 0-9, "-" and ".", at most 253 characters)`);
      who.node = nodeName;
      if (typeof csr !== 'string') throw new JoinRequestError('the body has no "csr" string (a PEM PKCS#10 certification request)');
      const checked = await ca.checkNodeCsr(csr);
      const token = await tokens.consume(`${cred.id}.${cred.secret}`);
      const certificate = await ca.signNodeCsr(csr, nodeName, o.nodeCertLifetimeMs ? { lifetimeMs: o.nodeCertLifetimeMs } : {});
      send(res, 200, JSON.stringify({ certificate, ca: ca.certPem }), 'application/json');
      log.info(`node ${nodeName} joined with token ${token.id}${token.singleUse ? ' (single-use, now consumed)' : ''}`, {
        node: nodeName,
        tokenId: token.id,
        key: checked.keyAlgorithm,
        remote: req.socket.remoteAddress ?? '',
      });
    } catch (err) {
      refuse(req, res, err, who);
    }
  };

  return (req, res) => {
    const path = requestPath(req);
    if (path === undefined) return false;
    if (path === CA_CERT_PATH) {
      if (req.method === 'GET') send(res, 200, ca.certPem, 'application/x-pem-file');
      else if (req.method === 'HEAD') {
        res.writeHead(200, { 'content-type': 'application/x-pem-file', 'content-length': Buffer.byteLength(ca.certPem), 'cache-control': 'no-store' });
        res.end();
      } else
        send(res, 405, JSON.stringify({ code: JoinRequestError.code, message: `${req.method} is not allowed on ${CA_CERT_PATH}: use GET` }), 'application/json', {
          allow: 'GET, HEAD',
        });
      return true;
    }
    if (path !== JOIN_PATH) return false;
    join(req, res).catch((err: unknown) => log.error(`join request failed: ${errorMessage(err)}`, { code: errorCode(err) }));
    return true;
  };
}
