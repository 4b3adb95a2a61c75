/**
 * @module
 * Load generator: a child process (forked with an IPC channel) holding many
 * simulated edge sessions. Each is a thin client speaking the Ledge protocol with
 * `ws`: subprotocol `ledge.v1`, the node-name header, CBOR frames decoded with the
 * project codec; every `sync` message is ACKed at once with `newAck`, nothing else is
 * answered (ws itself answers CloudHub's pings with pongs, so sessions stay alive).
 *
 * Commands:
 * - `{ cmd: 'connect', url, names: string[], concurrency, handshakeTimeoutMs, ca? }` → opens
 *   one session per name, at most `concurrency` handshakes at a time, retrying a
 *   failed one up to 3 times; replies `{ type: 'connected', ok, failed, ms }`.
 * - `{ cmd: 'stats' }` → `{ type: 'stats', open, frames, acks, closes, errors }`.
 * - `{ cmd: 'close' }` → terminates every session and exits.
 */
import WebSocket from 'ws';
import { createCborCodec, newAck, NODE_NAME_HEADER, SUBPROTOCOL } from '../../shared/protocol/index.js';

type Command = { cmd: 'connect'; url: string; names: string[]; concurrency: number; handshakeTimeoutMs: number; ca?: string } | { cmd: 'stats' } | { cmd: 'close' };

const codec = createCborCodec();
const sockets: WebSocket[] = [];
const stats = { open: 0, frames: 0, acks: 0, closes: 0, errors: 0, lastError: '' };
const send = (m: unknown): void => {
  process.send?.(m);
};

function open(url: string, name: string, handshakeTimeoutMs: number, ca?: string): Promise<boolean> {
  return new Promise((resolve) => {
    let opened = false;
    const ws = new WebSocket(url, SUBPROTOCOL, {
      headers: { [NODE_NAME_HEADER]: name },
      perMessageDeflate: false,
      handshakeTimeout: handshakeTimeoutMs,
      ...(ca ? { ca } : {}),
    });
    ws.binaryType = 'nodebuffer';
    ws.on('open', () => {
      opened = true;
      stats.open++;
      sockets.push(ws);
      resolve(true);
    });
    ws.on('message', (data, isBinary) => {
      stats.frames++;
      if (!isBinary) return;
      try {
        const msg = codec.decode(data as Buffer);
        if (msg.header.sync && msg.route.operation !== 'ack') {
          ws.send(codec.encode(newAck(msg, 'websocket')), { binary: true });
          stats.acks++;
        }
      } catch (err) {
        stats.errors++;
        stats.lastError = (err as Error).message;
      }
    });
    ws.on('error', (err) => {
      stats.errors++;
      stats.lastError = err.message;
    });
    ws.on('close', () => {
      if (opened) {
        stats.open--;
        stats.closes++;
      } else resolve(false);
    });
  });
}

async function connectAll(c: Extract<Command, { cmd: 'connect' }>): Promise<void> {
  const started = Date.now();
  let next = 0;
  let ok = 0;
  let failed = 0;
  const worker = async () => {
    while (next < c.names.length) {
      const name = c.names[next++]!;
      let done = false;
      for (let attempt = 0; attempt < 3 && !done; attempt++) {
        done = await open(c.url, name, c.handshakeTimeoutMs, c.ca);
        if (!done) await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
      }
      if (done) ok++;
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, c.concurrency) }, worker));
  send({ type: 'connected', ok, failed, ms: Date.now() - started, lastError: stats.lastError });
}

process.on('message', (raw) => {
  const c = raw as Command;
  if (c.cmd === 'connect') void connectAll(c);
  else if (c.cmd === 'stats') send({ type: 'stats', ...stats });
  else if (c.cmd === 'close') {
    for (const ws of sockets) ws.terminate();
    setTimeout(() => process.exit(0), 100).unref();
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready', pid: process.pid });
