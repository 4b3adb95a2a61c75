/**
 * @module
 * One HTTPS request to CloudHub for a join, on a connection of its own.
 *
 * The TLS connection is made first and the HTTP request is written only once the handshake is
 * complete (and, when a CA is given, verified against it alone, host name included): so the join
 * token can never leave in a first flight of a connection that later fails verification. No agent,
 * no keep-alive, no session reuse: the unverified connection that fetched the CA is never the one
 * the token travels on. Response bodies are bounded (a hostile server gets no unbounded buffer).
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { JoinError, errorMessage } from '../../shared/errors/index.js';

/** Where CloudHub is: what TLS connects to and what the certificate must name. */
export interface CloudTarget {
  /** Host name or IP address (IPv6 without brackets). */
  host: string;
  port: number;
  /** `https://host:port`, for messages. */
  origin: string;
}

export interface TlsRequest {
  target: CloudTarget;
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** Verify the server against this CA only (PEM) and `target.host`; `hash` names it in errors. Absent: no verification (GET /v1/ca.crt only). */
  verify?: { ca: string; hash: string };
  /** A client certificate and its key (PEM) to present in the handshake (a renewal authenticates with it). Default none. */
  clientCert?: { cert: string; key: string };
  /** What errors say was not sent when the server did not verify. Default 'the token' (a join); a renewal says 'the CSR'. */
  withheld?: string;
  /** Largest response body, bytes. */
  maxBytes: number;
  /** Aborts: the socket is destroyed and the request rejects with the signal's reason. */
  signal: AbortSignal;
}

export interface TlsResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Sends one request and reads its whole (bounded) answer. Transport failures reject with JoinError. */
export function tlsRequest(r: TlsRequest): Promise<TlsResponse> {
  const { target } = r;
  const what = `${r.method} ${target.origin}${r.path}`;
  return new Promise((resolve, reject) => {
    let done = false;
    let socket: TLSSocket | undefined;
    const finish = (err: unknown, res?: TlsResponse) => {
      if (done) return;
      done = true;
      r.signal.removeEventListener('abort', onAbort);
      socket?.destroy();
      if (res) resolve(res);
      else reject(err);
    };
    const onAbort = () => finish(r.signal.reason);
    if (r.signal.aborted) return finish(r.signal.reason);
    r.signal.addEventListener('abort', onAbort, { once: true });
    const options: ConnectionOptions = {
      host: target.host,
      port: target.port,
      // SNI carries names only (RFC 6066); for an IP address node checks the certificate's IP SANs.
      ...(isIP(target.host) ? {} : { servername: target.host }),
      ...(r.verify ? { ca: r.verify.ca, rejectUnauthorized: true } : { rejectUnauthorized: false }),
      ...(r.clientCert ? { cert: r.clientCert.cert, key: r.clientCert.key } : {}),
    };
    const withheld = r.withheld ?? 'the token';
    let tls: TLSSocket;
    try {
      tls = connect(options);
    } catch (err) {
      // A client key and certificate that are not PEM or not a pair: refused before anything is sent.
      return finish(new JoinError(`cannot open TLS to CloudHub at ${target.origin}: ${errorMessage(err)}`, { cause: err }));
    }
    socket = tls;
    tls.once('error', (err) => {
      // Node sets authorizationError when the chain or the host name did not verify (then it destroys the socket).
      if (r.verify && tls.authorizationError) {
        finish(
          new JoinError(
            `CloudHub at ${target.origin} presented a TLS certificate that is not from the pinned CA ${r.verify.hash} for ${target.host} (${errorMessage(err)}): refused, ${withheld} was not sent`,
            { cause: err },
          ),
        );
      } else {
        finish(new JoinError(`cannot reach CloudHub over TLS at ${target.origin} (${what}): ${errorMessage(err)}`, { cause: err }));
      }
    });
    tls.once('secureConnect', () => {
      // rejectUnauthorized already refused an unverified peer; this guards the invariant the token relies on.
      if (r.verify && !tls.authorized)
        return finish(new JoinError(`CloudHub at ${target.origin} is not verified by the pinned CA ${r.verify.hash}: refused, ${withheld} was not sent`));
      const req = httpRequest({
        host: target.host,
        port: target.port,
        method: r.method,
        path: r.path,
        headers: { ...r.headers, connection: 'close' },
        createConnection: () => tls,
      });
      req.once('error', (err) => finish(new JoinError(`${what} failed: ${errorMessage(err)}`, { cause: err })));
      req.once('response', (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > r.maxBytes) finish(new JoinError(`${what}: the answer is larger than ${r.maxBytes} bytes`));
          else chunks.push(chunk);
        });
        res.once('end', () => finish(undefined, { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.once('aborted', () => finish(new JoinError(`${what}: the connection closed before the answer was complete`)));
        res.once('error', (err) => finish(new JoinError(`${what} failed: ${errorMessage(err)}`, { cause: err })));
      });
      req.end(r.body);
    });
  });
}
