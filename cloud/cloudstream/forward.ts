/**
 * @module
 * Forwarding a kubelet request to the replica that holds the node's session: a reverse proxy
 * to its peer address, with the same method, path, query and headers (minus `Authorization`
 * and `Host`; plus the peer bearer token and `x-ledge-forwarded: <identity>`, the loop guard).
 *
 * - **TLS to the peer** is pinned: the connection is made first, the certificate's SHA-256
 *   fingerprint is compared with the one the holder's Lease names, and only then is the
 *   request (with the token) written. Peers use self-signed certificates, so no CA is needed.
 * - **Logs** stream through (pipe: back-pressure both ways); the client's departure ends
 *   the peer request.
 * - **Upgrades** (exec/attach) are a raw tunnel: the upgrade request is sent, and on 101 the
 *   two sockets are piped to each other; a non-101 answer is passed on as it came.
 * - Failures before anything reached the client reject ({@link ForwardError}), so the caller
 *   answers with a Status; after that they only end the exchange.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';

export const FORWARDED_HEADER = 'x-ledge-forwarded';

export interface ForwardTarget {
  /** `https://host:port` of the holder. */
  address: string;
  /** Its certificate's SHA-256 fingerprint (`AB:CD:…`). */
  certSha256: string;
  /** The peer bearer token. */
  token: string;
  /** This replica's identity (the `x-ledge-forwarded` value). */
  identity: string;
  /** Longest wait for the peer's answer (its head), ms. */
  timeoutMs: number;
}

/** The peer could not be reached or did not answer: nothing was sent to the client. */
export class ForwardError extends Error {
  constructor(
    message: string,
    readonly timeout = false,
  ) {
    super(message);
    this.name = 'ForwardError';
  }
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

const normalizeFp = (fp: string) => fp.replace(/:/g, '').toUpperCase();

function outgoingHeaders(headers: IncomingHttpHeaders, target: ForwardTarget, host: string, upgrade: boolean): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || k === 'authorization' || k === 'host' || k === FORWARDED_HEADER) continue;
    if (!upgrade && HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  out.host = host;
  out.authorization = `Bearer ${target.token}`;
  out[FORWARDED_HEADER] = target.identity;
  return out;
}

/** A TLS connection to `target` whose certificate matches the pin; rejects (ForwardError) otherwise. */
export function connectPeer(target: ForwardTarget, signal: AbortSignal): Promise<{ socket: TLSSocket; host: string }> {
  let url: URL;
  try {
    url = new URL(target.address);
  } catch {
    return Promise.reject(new ForwardError(`peer address ${target.address} is not a URL`));
  }
  if (url.protocol !== 'https:') return Promise.reject(new ForwardError(`peer address ${target.address} is not https`));
  if (!target.certSha256) return Promise.reject(new ForwardError(`the peer at ${target.address} published no certificate fingerprint`));
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port || 443);
  return new Promise((resolve, reject) => {
    // Verified below by pinning the certificate the holder published in its Lease.
    const socket = tlsConnect({ host: hostname, port, rejectUnauthorized: false, ...(isIP(hostname) ? {} : { servername: hostname }), ALPNProtocols: ['http/1.1'] });
    const fail = (err: Error) => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    const onError = (err: Error) => fail(new ForwardError(`cannot reach the peer at ${target.address}: ${err.message}`));
    const onAbort = () => fail(signal.reason instanceof Error ? signal.reason : new ForwardError('aborted'));
    const onSecure = () => {
      cleanup();
      const fp = socket.getPeerCertificate()?.fingerprint256 ?? '';
      if (normalizeFp(fp) !== normalizeFp(target.certSha256)) {
        socket.destroy();
        reject(new ForwardError(`the peer at ${target.address} presented a certificate (sha256 ${fp || 'none'}) other than the one its Lease names`));
        return;
      }
      resolve({ socket, host: url.host });
    };
    const cleanup = () => {
      socket.off('error', onError);
      socket.off('secureConnect', onSecure);
      signal.removeEventListener('abort', onAbort);
    };
    socket.once('error', onError);
    socket.once('secureConnect', onSecure);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}

function deadline(target: ForwardTarget): { signal: AbortSignal; clear: () => void; abort: (e: Error) => void } {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new ForwardError(`the peer at ${target.address} did not answer within ${target.timeoutMs} ms`, true)), target.timeoutMs);
  return { signal: ac.signal, clear: () => clearTimeout(timer), abort: (e) => ac.abort(e) };
}

/**
 * Forwards a plain request (logs) and streams the answer to `res`. Resolves when the exchange
 * ended; rejects with a ForwardError if nothing was sent to the client.
 */
export async function forwardRequest(req: IncomingMessage, res: ServerResponse, target: ForwardTarget): Promise<void> {
  const d = deadline(target);
  const gone = () => d.abort(new ForwardError('the client went away'));
  res.once('close', gone);
  try {
    const { socket, host } = await connectPeer(target, d.signal);
    const pres = await new Promise<IncomingMessage>((resolve, reject) => {
      const preq = http.request({ method: req.method, path: req.url, headers: outgoingHeaders(req.headers, target, host, false), createConnection: () => socket });
      const onAbort = () => {
        preq.destroy();
        reject(d.signal.reason);
      };
      d.signal.addEventListener('abort', onAbort, { once: true });
      preq.once('response', (r) => {
        d.signal.removeEventListener('abort', onAbort);
        resolve(r);
      });
      preq.once('error', (err) => {
        d.signal.removeEventListener('abort', onAbort);
        reject(new ForwardError(`the peer at ${target.address} failed: ${err.message}`));
      });
      req.pipe(preq);
    });
    d.clear();
    res.off('close', gone);
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(pres.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
    res.writeHead(pres.statusCode ?? 502, headers);
    // The head now: a follower's first bytes may be long in coming.
    res.flushHeaders();
    await new Promise<void>((resolve) => {
      const done = () => {
        pres.destroy();
        resolve();
      };
      res.once('close', done);
      // The peer ended (or died) mid-stream: end the client's answer, as a kubelet does.
      pres.once('error', () => res.end());
      pres.once('aborted', () => res.end());
      pres.pipe(res);
    });
  } finally {
    d.clear();
    res.off('close', gone);
  }
}

/**
 * Forwards an upgrade request (exec/attach): on the peer's 101 the two sockets are piped.
 * Resolves when the tunnel (or the passed-on refusal) ended; rejects with a ForwardError if
 * nothing was sent to the client.
 */
export async function forwardUpgrade(req: IncomingMessage, client: Duplex, head: Buffer, target: ForwardTarget): Promise<void> {
  const d = deadline(target);
  const gone = () => d.abort(new ForwardError('the client went away'));
  client.once('close', gone);
  try {
    const { socket, host } = await connectPeer(target, d.signal);
    const answer = await new Promise<{ upgraded: true; res: IncomingMessage; peer: Duplex; head: Buffer } | { upgraded: false; res: IncomingMessage }>((resolve, reject) => {
      const preq = http.request({ method: req.method, path: req.url, headers: outgoingHeaders(req.headers, target, host, true), createConnection: () => socket });
      const onAbort = () => {
        preq.destroy();
        reject(d.signal.reason);
      };
      d.signal.addEventListener('abort', onAbort, { once: true });
      const settle = () => d.signal.removeEventListener('abort', onAbort);
      preq.once('upgrade', (res, peer, peerHead) => {
        settle();
        resolve({ upgraded: true, res, peer, head: peerHead });
      });
      preq.once('response', (res) => {
        settle();
        resolve({ upgraded: false, res });
      });
      preq.once('error', (err) => {
        settle();
        reject(new ForwardError(`the peer at ${target.address} failed: ${err.message}`));
      });
      preq.end();
    });
    d.clear();
    client.off('close', gone);
    const { res } = answer;
    let lines = `HTTP/1.1 ${res.statusCode} ${res.statusMessage ?? ''}\r\n`;
    if (!answer.upgraded) {
      // A refusal (a Status): passed on whole, with its length (its own framing is gone).
      const body = await readBody(res, 64 * 1024);
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        const k = res.rawHeaders[i]!.toLowerCase();
        if (HOP_BY_HOP.has(k) || k === 'content-length') continue;
        lines += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
      }
      client.end(Buffer.concat([Buffer.from(`${lines}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`), body]));
      socket.destroy();
      return;
    }
    for (let i = 0; i < res.rawHeaders.length; i += 2) lines += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
    const { peer } = answer;
    client.write(`${lines}\r\n`);
    if (answer.head.length > 0) client.write(answer.head);
    if (head.length > 0) peer.write(head);
    await new Promise<void>((resolve) => {
      let open = 2;
      const closed = () => {
        peer.destroy();
        client.destroy();
        if (--open === 0) resolve();
      };
      peer.once('close', closed);
      client.once('close', closed);
      peer.on('error', () => peer.destroy());
      client.on('error', () => client.destroy());
      peer.pipe(client);
      client.pipe(peer);
    });
  } finally {
    d.clear();
    client.off('close', gone);
  }
}

function readBody(res: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let n = 0;
    res.on('data', (c: Buffer) => {
      if (n < max) chunks.push(c.subarray(0, max - n));
      n += c.length;
    });
    res.once('end', () => resolve(Buffer.concat(chunks)));
    res.once('error', () => resolve(Buffer.concat(chunks)));
    res.once('aborted', () => resolve(Buffer.concat(chunks)));
  });
}
