/**
 * EdgeHub unit tests with a fake socket: what reaches the wire when a module hands it a
 * message that cannot be encoded, and how a cloud message with an unknown operation is
 * answered (an error ACK; the session stays).
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type WebSocket from 'ws';
import { Beehive } from '../../shared/beehive/index.js';
import { createCborCodec, newMessage, type ErrorContent, type Message } from '../../shared/protocol/index.js';
import { readRecords } from '../../shared/wal/index.js';
import { EdgeHub } from '../../edge/edgehub/index.js';
import { captureLog, type LogCapture } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';
import { FakeSocket } from '../helpers/fake-ws.js';
import { tempDir } from '../helpers/files.js';

const codec = createCborCodec();

interface Rig {
  hub: EdgeHub;
  bee: Beehive;
  socket: FakeSocket;
  log: LogCapture;
  dataDir: string;
}

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function rig(): Promise<Rig> {
  const d = tempDir();
  const log = captureLog();
  const sockets: FakeSocket[] = [];
  const hub = new EdgeHub(
    {
      endpoints: ['ws://127.0.0.1:1'],
      nodeName: 'fake-node',
      dataDir: d.path,
      heartbeatIntervalMs: 60_000,
      heartbeatTimeoutMs: 120_000,
      reconnectMaxMs: 50,
      // A fake socket standing in for ws (test double; only the members EdgeHub uses).
      createSocket: () => {
        const s = new FakeSocket();
        sockets.push(s);
        return s as unknown as WebSocket;
      },
    },
    log.logger,
  );
  const bee = new Beehive({ log: log.logger });
  bee.register(hub);
  bee.start();
  const socket = await eventually(() => sockets[0], 5000, 'EdgeHub opened a socket');
  socket.open();
  await eventually(() => hub.connected, 5000, 'connected');
  cleanups.push(async () => {
    await bee.stop();
    d.cleanup();
  });
  return { hub, bee, socket, log, dataDir: d.path };
}

/** Content the codec refuses (a Date is a CBOR tag, outside the wire profile). */
const unencodable = { when: new Date(0) };

function upstream(name: string, content: unknown, sync: boolean): Message {
  return newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: `default/podstatus/${name}`, content, sync });
}

describe('edgehub: unencodable upstream messages', () => {
  test('a best-effort message that cannot be encoded is dropped with one log line; no frame (empty or other) is written', async () => {
    const { bee, socket, log } = await rig();
    const ctx = bee.context('edged');
    await ctx.send('websocket', upstream('bad', unencodable, false));
    // A good best-effort message after it: once it is on the wire, the bad one was handled.
    await ctx.send('websocket', upstream('good', { ok: true }, false));
    await eventually(() => socket.frames.length >= 1, 5000, 'the good message written');
    assert.ok(
      socket.frames.every((f) => f.length > 0),
      'no empty frame',
    );
    assert.deepEqual(
      socket.decoded().map((m) => m.route.resource),
      ['default/podstatus/good'],
    );
    const lines = log.lines.filter((l) => /cannot encode upstream update default\/podstatus\/bad/.test(String(l.msg)));
    assert.equal(lines.length, 1, 'exactly one log line');
    assert.equal(lines[0]!.code, 'LEDGE_ERR_INVALID_MESSAGE');
    assert.equal(lines[0]!.resource, 'default/podstatus/bad');
    assert.equal(lines[0]!.operation, 'update');
    assert.equal(socket.closed, undefined, 'the link stays up');
  });

  test("a reliable message that cannot be encoded is refused to its sender with the encoder's code and never enters the outbox", async () => {
    const { bee, socket, dataDir } = await rig();
    const ctx = bee.context('edged');
    const bad = upstream('bad-sync', unencodable, true);
    const resp = await ctx.sendSync<ErrorContent | null>('websocket', bad, 5000);
    assert.equal(resp.content?.code, 'LEDGE_ERR_INVALID_MESSAGE');
    const big = upstream('too-big', { blob: 'x'.repeat(2 * 1024 * 1024) }, true);
    const resp2 = await ctx.sendSync<ErrorContent | null>('websocket', big, 5000);
    assert.equal(resp2.content?.code, 'LEDGE_ERR_FRAME_TOO_LARGE');
    // A good one goes through the outbox and onto the wire.
    const good = upstream('good-sync', { ok: true }, true);
    assert.equal((await ctx.sendSync('websocket', good, 5000)).content, null);
    await eventually(() => socket.decoded().some((m) => m.header.id === good.header.id), 5000, 'good message sent');
    const ids = socket.decoded().map((m) => m.header.id);
    assert.ok(!ids.includes(bad.header.id) && !ids.includes(big.header.id), 'refused messages never sent');
    const file = join(dataDir, 'outbox.log');
    const recs = existsSync(file) ? readRecords(readFileSync(file)).records : [];
    const outboxIds = recs.filter((r) => r[0] === 1).map((r) => codec.decode(r.subarray(1)).header.id);
    assert.deepEqual(outboxIds, [good.header.id], 'only the encodable message is in the outbox');
  });
});

describe('edgehub: unknown operation from the cloud', () => {
  test('is rejected with an error ACK for that message; the session stays and later messages are handled', async () => {
    const { hub, socket, log } = await rig();
    const unknown = newMessage({ source: 'cloudhub', group: 'resource', operation: 'frobnicate', resource: 'default/configmap/x', content: null, sync: true });
    socket.receive(codec.encode(unknown));
    await eventually(() => socket.decoded().some((m) => m.route.operation === 'ack' && m.header.parentId === unknown.header.id), 5000, 'error ACK');
    const ack = socket.decoded().find((m) => m.header.parentId === unknown.header.id)!;
    assert.equal((ack.content as ErrorContent).code, 'LEDGE_ERR_UNKNOWN_OPERATION');
    assert.equal(socket.closed, undefined, 'session kept');
    assert.ok(hub.connected);
    const line = log.lines.find((l) => /message from cloud rejected: unknown operation "frobnicate"/.test(String(l.msg)));
    assert.equal(line?.code, 'LEDGE_ERR_UNKNOWN_OPERATION');
    // A flood of them: log lines are rate-limited, each still answered.
    const before = log.lines.length;
    for (let i = 0; i < 200; i++)
      socket.receive(codec.encode(newMessage({ source: 'cloudhub', group: 'resource', operation: 'frobnicate', resource: 'r', content: null, sync: true })));
    await eventually(() => socket.decoded().filter((m) => m.route.operation === 'ack').length === 201, 5000, 'all answered');
    assert.equal(log.lines.slice(before).filter((l) => /rejected/.test(String(l.msg))).length, 0, 'no further line within the rate-limit interval');
    assert.equal(hub.stats.rejected, 201);
    assert.equal(socket.closed, undefined, 'session still kept');
  });
});
