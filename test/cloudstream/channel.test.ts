/**
 * The WebSocket ↔ stream bridge's back-pressure, with a fake WebSocket (its unsent bytes and
 * its paused state set by the test) and an in-memory link: a client that does not read holds
 * the edge back after one window; an edge that does not read stops reading from the client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import { Channel } from '../../shared/stream/index.js';
import { bridge, pickProtocol, WS_HIGH_WATER } from '../../cloud/cloudstream/channel.js';
import { eventually } from '../helpers/process.js';
import { Link, quietLog } from './helpers.js';

/** The part of a ws WebSocket the bridge uses. */
class FakeWs extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  isPaused = false;
  pauses = 0;
  readonly sent: Buffer[] = [];
  private readonly callbacks: (() => void)[] = [];
  closed: number | undefined;

  send(data: Buffer, _opts: unknown, cb?: () => void): void {
    this.sent.push(Buffer.from(data));
    if (cb) this.callbacks.push(cb);
  }
  pause(): void {
    this.isPaused = true;
    this.pauses++;
  }
  resume(): void {
    this.isPaused = false;
  }
  close(code: number): void {
    this.closed = code;
    this.readyState = 3;
  }
  /** The socket wrote everything out. */
  flush(): void {
    this.bufferedAmount = 0;
    for (const cb of this.callbacks.splice(0)) cb();
  }
}

const WINDOW = 64 * 1024;
const CHUNK = 16 * 1024 - 1; // one DATA frame each (16 KiB with the channel byte)

async function bridged() {
  const l = new Link(WINDOW);
  const cloud = l.cloud.open({ kind: 'exec', namespace: 'default', pod: 'p', command: ['sh'], stdin: true, stdout: true });
  const ws = new FakeWs();
  cloud.on('open', () => bridge(ws as unknown as WebSocket, cloud, 'v5.channel.k8s.io', quietLog()));
  const edge = await l.nextOpen();
  edge.accept();
  await eventually(() => l.inFlight === 0, 10_000, 'the accept to arrive');
  return { l, cloud, edge, ws };
}

test('v5 is picked over v4, v4 alone, nothing else', () => {
  assert.equal(pickProtocol(['v4.channel.k8s.io', 'v5.channel.k8s.io']), 'v5.channel.k8s.io');
  assert.equal(pickProtocol([' v4.channel.k8s.io ']), 'v4.channel.k8s.io');
  assert.equal(pickProtocol(['channel.k8s.io', 'base64.channel.k8s.io']), undefined);
});

test('a client that does not read holds the edge back after one window; it resumes once the socket drained', async () => {
  const { l, edge, ws } = await bridged();
  ws.bufferedAmount = WS_HIGH_WATER + 1; // the client reads nothing
  const total = 10;
  let queued = 0;
  const pump = () => {
    while (queued < total && edge.send(Channel.Stdout, Buffer.alloc(CHUNK, queued))) queued++;
    if (queued < total) queued++; // the one that returned false is queued too
  };
  edge.on('drain', pump);
  pump();
  await eventually(() => ws.sent.length > 0 && l.inFlight === 0 && edge.queuedBytes > 0, 10_000, 'the edge to run out of credit');
  assert.equal(ws.sent.length, 1, 'one message reached the WebSocket; what came after it is held, unread');
  assert.ok(queued < total || edge.queuedBytes > 0, 'the edge could not hand everything over');
  ws.flush();
  await eventually(
    () => {
      ws.flush();
      return ws.sent.length === total;
    },
    10_000,
    'everything to reach the client',
  );
  assert.deepEqual(
    ws.sent.map((b) => [b[0], b.length, b[1]]),
    Array.from({ length: total }, (_, i) => [Channel.Stdout, CHUNK + 1, i]),
    'in order, each with its channel byte',
  );
});

test('an edge that does not read stops the bridge reading from the client until the stream drains', async () => {
  const { l, edge, ws } = await bridged();
  edge.pause();
  const got: number[] = [];
  edge.on('message', (ch, p) => got.push(ch === Channel.Stdin ? p.length : -1));
  // ws emits every message of what it already read, even after pause(): the bridge must cope.
  for (let i = 0; i < 10; i++) ws.emit('message', Buffer.concat([Buffer.from([Channel.Stdin]), Buffer.alloc(CHUNK, i)]), true);
  assert.ok(ws.isPaused, 'reading from the client stopped');
  await eventually(() => l.inFlight === 0, 10_000, 'the link to settle');
  assert.ok(ws.isPaused, 'still stopped while the edge does not read');
  edge.resume();
  await eventually(() => !ws.isPaused && got.length === 10, 10_000, 'the stream to drain and the client to be read again');
  assert.deepEqual(got, Array(10).fill(CHUNK));
});
