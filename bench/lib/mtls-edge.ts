/**
 * @module
 * Load generator of bench/cloudhub-mtls.ts: a child process (forked with an IPC channel) that
 * opens many idle edge sessions with `ws`, each as its own node: over mTLS with that node's client
 * certificate (CloudHub verified against the node CA, a full TLS handshake per session: no
 * session reuse, as a fleet of devices connecting for the first time), or over plain ws:// with
 * the node-name header. Nothing is sent after the upgrade; `ws` answers CloudHub's pings.
 *
 * Commands:
 * - `{ cmd: 'connect', url, sessions: [{ name, cert?, key? }], ca?, concurrency, handshakeTimeoutMs }`
 *   (a `tls://host:port` url: bare TLS connections, no WebSocket, for the bare-tls control)
 *   → opens them, at most `concurrency` upgrades in flight, each tried once; replies
 *   `{ type: 'connected', ok, failed, ms, lastError, latencies }` (`ms`: first upgrade started to
 *   last one open; `latencies`: per session, ms from its start to `open`, sorted).
 * - `{ cmd: 'close' }` → terminates every session and exits.
 */
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { NODE_NAME_HEADER, SUBPROTOCOL } from '../../shared/protocol/index.js';

export interface EdgeSession {
  name: string;
  /** PEM client certificate (mTLS). */
  cert?: string;
  /** PEM private key of `cert`. */
  key?: string;
}

export type EdgeCommand = { cmd: 'connect'; url: string; sessions: EdgeSession[]; ca?: string; concurrency: number; handshakeTimeoutMs: number } | { cmd: 'close' };

export interface ConnectedReply {
  type: 'connected';
  ok: number;
  failed: number;
  ms: number;
  lastError: string;
  latencies: number[];
}

const sockets: (WebSocket | TLSSocket)[] = [];
let lastError = '';
const send = (m: unknown): void => {
  process.send?.(m);
};

/** A bare TLS connection to `tls://host:port` (the bare-tls control); ms until secure, or undefined. */
function openBare(url: string, s: EdgeSession, ca: string | undefined, handshakeTimeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const u = new URL(url);
    const socket = tlsConnect({ host: u.hostname, port: Number(u.port), ...(ca ? { ca } : {}), ...(s.cert && s.key ? { cert: s.cert, key: s.key } : {}) });
    const timer = setTimeout(() => socket.destroy(new Error('handshake timed out')), handshakeTimeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      sockets.push(socket);
      resolve(performance.now() - t0);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      lastError = err.message;
      resolve(undefined);
    });
  });
}

function open(url: string, s: EdgeSession, ca: string | undefined, handshakeTimeoutMs: number): Promise<number | undefined> {
  if (url.startsWith('tls:')) return openBare(url, s, ca, handshakeTimeoutMs);
  return new Promise((resolve) => {
    const t0 = performance.now();
    const tls = s.cert && s.key ? { cert: s.cert, key: s.key, ...(ca ? { ca } : {}) } : {};
    const ws = new WebSocket(url, SUBPROTOCOL, {
      ...(s.cert ? {} : { headers: { [NODE_NAME_HEADER]: s.name } }),
      perMessageDeflate: false,
      handshakeTimeout: handshakeTimeoutMs,
      ...tls,
    });
    let opened = false;
    ws.on('open', () => {
      opened = true;
      sockets.push(ws);
      resolve(performance.now() - t0);
    });
    ws.on('unexpected-response', (_req, res) => {
      lastError = `HTTP ${res.statusCode}`;
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => {
      lastError = err.message;
    });
    ws.on('close', () => {
      if (!opened) resolve(undefined);
    });
  });
}

async function connectAll(c: Extract<EdgeCommand, { cmd: 'connect' }>): Promise<void> {
  const started = performance.now();
  let next = 0;
  let failed = 0;
  const latencies: number[] = [];
  const worker = async () => {
    while (next < c.sessions.length) {
      const s = c.sessions[next++]!;
      const ms = await open(c.url, s, c.ca, c.handshakeTimeoutMs);
      if (ms === undefined) failed++;
      else latencies.push(ms);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, c.concurrency) }, worker));
  latencies.sort((a, b) => a - b);
  const reply: ConnectedReply = { type: 'connected', ok: latencies.length, failed, ms: performance.now() - started, lastError, latencies };
  send(reply);
}

process.on('message', (raw) => {
  const c = raw as EdgeCommand;
  if (c.cmd === 'connect') void connectAll(c);
  else if (c.cmd === 'close') {
    for (const x of sockets) {
      if (x instanceof WebSocket) x.terminate();
      else x.destroy();
    }
    setTimeout(() => process.exit(0), 100).unref();
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready', pid: process.pid });
