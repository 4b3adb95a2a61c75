/**
 * The bundled EdgeCore (dist/edgecore.js) against hostile and broken clouds on loopback:
 * a server that trickles its handshake, a silent cloud, a cloud that only pings, endless and
 * oversized frames, and unknown operations. Each time the edge must give up on that link
 * within its bounds, say why in one log line, and reconnect (or, for an unknown operation,
 * keep the session).
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import { startTestCloud, codec, type TestCloud } from '../helpers/cloud.js';
import { eventually, startEdge, type Proc } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';
import { newMessage, SUBPROTOCOL, type ErrorContent, type Message } from '../../shared/protocol/index.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** Runs the bundled edge with a config file (for options without flags) and fast timers. */
function edge(name: string, cloud: string, hub: Record<string, number>, extra: string[] = [], prepare?: (dataDir: string) => void): Proc {
  const d = tempDir();
  prepare?.(d.path);
  const config = join(d.path, 'edgecore.json');
  writeFileSync(config, JSON.stringify({ hub: { reconnectBaseMs: 50, reconnectMaxMs: 200, ...hub } }));
  const p = startEdge(['--cloud', cloud, '--node-name', name, '--data-dir', d.path, '--config', config, '--log-level', 'info', ...extra], {}, name);
  cleanups.push(async () => {
    await p.kill9();
    d.cleanup();
  });
  return p;
}

/** The edge's JSON log lines so far. */
function logLines(p: Proc): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const l of p.output().split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      out.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      // a partial line at the end of the buffer
    }
  }
  return out;
}

/** eventually(), failing with the tail of the edge's output (what it was doing instead). */
async function until<T>(p: Proc, check: () => T, what: string, timeoutMs = 20_000): Promise<NonNullable<T>> {
  try {
    return await eventually(check, timeoutMs, what);
  } catch (err) {
    throw new Error(`${(err as Error).message}; edge exit code ${p.child.exitCode}; edge output:\n${p.output().slice(-3000)}`);
  }
}

function hasLine(p: Proc, code: string, msg: RegExp): boolean {
  return logLines(p).some((l) => l.code === code && msg.test(String(l.msg)));
}

// ---- a raw TCP "cloud" that speaks exactly as much WebSocket as each test needs ----

interface RawCloud {
  url: string;
  /** Connections accepted so far. */
  connections: number;
  /** Close codes the edge sent, per connection, in order. */
  closeCodes: number[];
}

/** A server frame (unmasked). */
function frame(opcode: number, payload: Buffer, fin = true): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0, len]) : len < 65536 ? Buffer.from([0, 126, len >> 8, len & 255]) : Buffer.alloc(10);
  if (len >= 65536) {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = (fin ? 0x80 : 0) | opcode;
  return Buffer.concat([head, payload]);
}

/** Parses the edge's (masked) frames just far enough to see close frames and their codes. */
function watchClientFrames(socket: Socket, onClose: (code: number) => void): void {
  let buf = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1]! & 127;
      let pos = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        pos = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        pos = 10;
      }
      if (buf.length < pos + 4 + len) return;
      const mask = buf.subarray(pos, pos + 4);
      const payload = Buffer.from(buf.subarray(pos + 4, pos + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
      if ((buf[0]! & 15) === 8) onClose(payload.length >= 2 ? payload.readUInt16BE(0) : 1005);
      buf = buf.subarray(pos + 4 + len);
    }
  });
}

/**
 * Starts a raw TCP server. `upgrade`: answer the WebSocket upgrade (with the subprotocol),
 * then hand the socket to `behave`; otherwise `behave` gets the socket as accepted.
 * The server never closes a connection on its own, never answers a close frame and keeps
 * writing after the edge half-closes.
 */
async function rawCloud(upgrade: boolean, behave: (socket: Socket, timers: NodeJS.Timeout[]) => void): Promise<RawCloud> {
  const sockets = new Set<Socket>();
  const timers: NodeJS.Timeout[] = [];
  const state: RawCloud = { url: '', connections: 0, closeCodes: [] };
  // allowHalfOpen: the edge's FIN after its close frame does not end our side; only the edge
  // destroying its socket ends the connection, as with a hostile peer.
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    if (!upgrade) return behave(socket, timers);
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const key = /sec-websocket-key:\s*(\S+)/i.exec(head)?.[1] ?? '';
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n\r\n`,
      );
      watchClientFrames(socket, (code) => state.closeCodes.push(code));
      behave(socket, timers);
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.url = `ws://127.0.0.1:${(server.address() as { port: number }).port}`;
  cleanups.push(async () => {
    for (const t of timers) clearInterval(t);
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return state;
}

/** Writes `chunk()` every `ms` until the socket closes. */
function every(socket: Socket, timers: NodeJS.Timeout[], ms: number, chunk: () => Buffer | string): void {
  const t = setInterval(() => {
    if (socket.destroyed) return clearInterval(t);
    socket.write(chunk());
  }, ms);
  timers.push(t);
}

describe('edge link against hostile clouds', () => {
  test('handshake deadline is absolute: a server trickling its response cannot hold the edge; the next endpoint is tried', async () => {
    // Accepts, then sends a never-ending HTTP response header, one byte every 200 ms: each byte
    // restarts an idle timer, so only an absolute deadline (1 s here) ends the attempt.
    const trickler = await rawCloud(false, (socket, timers) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nX-Trickle: ');
      every(socket, timers, 200, () => 'a');
    });
    const c: TestCloud = await startTestCloud();
    cleanups.push(() => c.stop());
    const p = edge('trickle-node', `${trickler.url},${c.hub.url}`, { handshakeTimeoutMs: 1000 });
    await until(p, () => c.hub.nodeSummary('trickle-node')?.connected, 'connected to the healthy second endpoint', 20_000);
    assert.ok(hasLine(p, 'LEDGE_ERR_HANDSHAKE', /connect to ws:\/\/127\.0\.0\.1:\d+\/v1\/edge did not complete within 1000 ms/), 'the timed-out attempt is logged');
    assert.equal(trickler.connections, 1);
  });

  test("a silent cloud (handshake completes, then nothing) is detected by the edge's heartbeat timeout and the edge reconnects", async () => {
    const silent = await rawCloud(true, () => {});
    const p = edge('silent-cloud-node', silent.url, {}, ['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '600']);
    await until(p, () => hasLine(p, 'LEDGE_ERR_HEARTBEAT_TIMEOUT', /^no traffic from cloud for \d+ ms/), 'heartbeat timeout logged', 20_000);
    await until(p, () => silent.connections >= 2, 'reconnected after the heartbeat timeout', 20_000);
    assert.equal(silent.closeCodes[0], 1001, 'the edge said why (1001) before dropping the link');
  });

  test('a cloud that only sends WebSocket pings but never answers keepalives is treated as silent', async () => {
    const pinger = await rawCloud(true, (socket, timers) => every(socket, timers, 100, () => frame(0x9, Buffer.alloc(0))));
    const p = edge('pinged-node', pinger.url, {}, ['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '600']);
    await until(p, () => hasLine(p, 'LEDGE_ERR_HEARTBEAT_TIMEOUT', /^no traffic from cloud/), 'heartbeat timeout despite pings', 20_000);
    await until(p, () => pinger.connections >= 2, 'reconnected', 20_000);
  });

  test('an endless fragmented message (fragments kept alive by pings in between) is cut at the heartbeat timeout', async () => {
    const endless = await rawCloud(true, (socket, timers) => {
      socket.write(frame(0x2, Buffer.from([0x84]), false)); // first fragment of a binary message
      every(socket, timers, 100, () => Buffer.concat([frame(0x9, Buffer.alloc(0)), frame(0x0, Buffer.from([0]), false)]));
    });
    const p = edge('endless-node', endless.url, {}, ['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '600']);
    await until(p, () => hasLine(p, 'LEDGE_ERR_HEARTBEAT_TIMEOUT', /^no traffic from cloud/), 'endless message cut', 20_000);
    await until(p, () => endless.connections >= 2, 'reconnected', 20_000);
    assert.equal(endless.closeCodes[0], 1001);
  });

  test('a single frame trickled byte by byte is cut at the heartbeat timeout', async () => {
    const trickle = await rawCloud(true, (socket, timers) => {
      socket.write(Buffer.from([0x82, 126, 0x03, 0xe8])); // a binary frame of 1000 bytes…
      every(socket, timers, 100, () => Buffer.from([0])); // …arriving at 10 bytes/s
    });
    const p = edge('trickled-frame-node', trickle.url, {}, ['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '600']);
    await until(p, () => hasLine(p, 'LEDGE_ERR_HEARTBEAT_TIMEOUT', /^no traffic from cloud/), 'trickled frame cut', 20_000);
    await until(p, () => trickle.connections >= 2, 'reconnected', 20_000);
  });

  test('an oversized fragmented message is refused at the frame limit (1009) and a peer that never answers the close is dropped promptly', async () => {
    // Three 3000-byte fragments against a 4096-byte limit: refused on the second one. Then the
    // server keeps sending and never answers the close; ws would read it for its default 30 s.
    const big = await rawCloud(true, (socket, timers) => {
      socket.write(frame(0x2, Buffer.alloc(3000), false));
      socket.write(frame(0x0, Buffer.alloc(3000), false));
      socket.write(frame(0x0, Buffer.alloc(3000), true));
      every(socket, timers, 50, () => Buffer.alloc(512));
    });
    const p = edge('oversized-node', big.url, { closeTimeoutMs: 500 }, ['--max-frame-bytes', '4096', '--heartbeat-interval-ms', '60000', '--heartbeat-timeout-ms', '120000']);
    await until(p, () => big.closeCodes.includes(1009), 'the edge closed with 1009', 20_000);
    assert.ok(hasLine(p, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', /link failed: Max payload size exceeded/), 'one clear log line');
    // Far sooner than ws' default 30 s close timeout (the bound here is what fails the test).
    await until(p, () => big.connections >= 2, 'reconnected soon after the refused frame', 10_000);
  });
});

// ---- a protocol-speaking cloud built on ws, for the unknown-operation case ----

describe('edge link: unknown operations', () => {
  test('an unknown operation from the cloud is answered with an error ACK; the session stays and later messages are applied', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => SUBPROTOCOL });
    await once(wss, 'listening');
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          for (const c of wss.clients) c.terminate();
          wss.close(() => r());
        }),
    );
    const received: Message[] = [];
    let connections = 0;
    let socket: ServerSocket | undefined;
    wss.on('connection', (ws) => {
      connections++;
      socket = ws;
      ws.on('message', (d: Buffer) => {
        const m = codec.decode(d);
        received.push(m);
        // Answer keepalives as CloudHub does, and ACK reliable upstream messages.
        if (m.route.operation === 'keepalive')
          ws.send(codec.encode(newMessage({ source: 'cloudhub', group: 'hub', operation: 'keepalive', resource: 'node', content: 'pong', parentId: m.header.id })));
        else if (m.header.sync && m.route.operation !== 'ack')
          ws.send(codec.encode(newMessage({ source: 'cloudhub', group: m.route.group, operation: 'ack', resource: m.route.resource, parentId: m.header.id, content: null })));
      });
    });
    const url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;
    const p = edge('unknown-op-node', url, {}, ['--heartbeat-interval-ms', '200', '--heartbeat-timeout-ms', '2000']);
    const ws = await until(p, () => socket, 'edge connected', 20_000);
    const unknown = newMessage({ source: 'cloudhub', group: 'resource', operation: 'frobnicate', resource: 'default/configmap/u', content: null, sync: true });
    ws.send(codec.encode(unknown));
    const ack = await until(p, () => received.find((m) => m.route.operation === 'ack' && m.header.parentId === unknown.header.id), 'error ACK for the unknown operation', 10_000);
    assert.equal((ack.content as ErrorContent).code, 'LEDGE_ERR_UNKNOWN_OPERATION');
    // Same session: a normal message is applied and ACKed.
    const cm = newMessage({
      source: 'cloudhub',
      group: 'resource',
      operation: 'update',
      resource: 'default/configmap/after',
      resourceVersion: '1',
      content: { ok: true },
      sync: true,
    });
    ws.send(codec.encode(cm));
    const ok = await until(p, () => received.find((m) => m.route.operation === 'ack' && m.header.parentId === cm.header.id), 'ACK of the next message', 10_000);
    assert.equal(ok.content, null);
    assert.equal(connections, 1, 'the session was never dropped');
    assert.ok(hasLine(p, 'LEDGE_ERR_UNKNOWN_OPERATION', /message from cloud rejected: unknown operation "frobnicate"; session kept/));
  });
});

describe('edge store health reaches the cloud', () => {
  test('disk full for the metadata store: the cloud receives a NotReady node status with reason EdgeStoreUnwritable; nothing is ACKed', async (t) => {
    if (!existsSync('/dev/full')) return t.skip('/dev/full not available');
    const c: TestCloud = await startTestCloud({ ackTimeoutMs: 200, maxAckTimeoutMs: 400 });
    cleanups.push(() => c.stop());
    const p = edge('full-store-node', c.hub.url, {}, ['--node-status-interval-ms', '60000'], (d) => symlinkSync('/dev/full', join(d, 'meta.log')));
    await until(p, () => c.hub.nodeSummary('full-store-node')?.connected, 'connected');
    const readiness = () =>
      c.received
        .filter((m) => m.route.resource.includes('/nodestatus/'))
        .map((m) => (m.content as { conditions: { type: string; status: string; reason: string; message: string }[] }).conditions.find((x) => x.type === 'Ready')!);
    await until(p, () => readiness().length >= 1, 'first report');
    assert.equal(readiness()[0]!.status, 'True', 'Ready before any write failed');
    c.hub.sendToNode(
      'full-store-node',
      newMessage({ source: 'test', group: 'resource', operation: 'update', resource: 'default/configmap/precious', resourceVersion: '1', sync: true, content: { a: 1 } }),
    );
    // The interval is a minute: this report is caused by the failing write.
    const notReady = await until(p, () => readiness().find((r) => r.status === 'False'), 'NotReady report');
    assert.equal(notReady.reason, 'EdgeStoreUnwritable');
    assert.match(notReady.message, /cannot write .*(ENOSPC|no space)/i);
    assert.equal(c.hub.nodeSummary('full-store-node')!.stats.acked, 0, 'nothing ACKed');
    assert.equal(p.child.exitCode, null, 'edge still running');
  });
});
