/**
 * CloudHub's budgets toward a hostile peer, with fake sockets and fake timers (no
 * network): every frame type costs a rate token, frames ws emits after pause() wait
 * in the backlog, replies count against the unflushed-bytes budget and a peer that
 * does not read is cut off, rejected frames are logged once per window with a
 * summary, and idle node state is evicted after its grace period.
 */
import { test, describe, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import type { WebSocket } from 'ws';
import { createCloudHub, type CloudHub, type CloudHubOptions } from '../../cloud/cloudhub/index.js';
import { captureLog, statusUpdate, type LogCapture } from '../helpers/cloud.js';
import { FakeHubSocket as FakeSocket } from '../helpers/fake-hub-socket.js';
import { newAck, newMessage, type Message } from '../../shared/protocol/index.js';

let log: LogCapture;
const hubs: CloudHub[] = [];

function hub(options: Partial<CloudHubOptions>): CloudHub {
  const h = createCloudHub({ host: '127.0.0.1', port: 0, insecurePlainWebSocket: true, ...options }, { log: log.logger });
  hubs.push(h);
  return h;
}

function connect(h: CloudHub, node: string): FakeSocket {
  const ws = new FakeSocket();
  h.acceptSession(ws as unknown as WebSocket, node, 'fake:1');
  return ws;
}

const keepalive = () => newMessage({ source: 'websocket', group: 'hub', operation: 'keepalive', resource: 'node', content: 'ping' });
function unknownOp(name = 'teleport'): Message {
  const m = statusUpdate(1);
  m.route.operation = name;
  return m;
}
const bogusAck = () => newAck(statusUpdate(1), 'thin');
const lines = (re: RegExp) => log.lines.filter((l) => re.test(String(l.msg))).length;

beforeEach(() => {
  log = captureLog();
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
});
afterEach(() => {
  mock.timers.reset();
  hubs.length = 0;
});

describe('rate budget: every frame type costs a token', () => {
  test('keepalives, unknown operations, bogus ACKs, pings and messages are all throttled at the same rate', () => {
    const h = hub({ upstreamQps: 10, upstreamBurst: 5 });
    const ws = connect(h, 'flooder');
    // 50 frames in one chunk: 10 of each kind, interleaved.
    const frames: (Message | { ping: Buffer })[] = [];
    for (let i = 0; i < 10; i++) frames.push(keepalive(), unknownOp(), bogusAck(), { ping: Buffer.from('p') }, statusUpdate(i));
    ws.receive(...frames);
    let s = h.nodeSummary('flooder')!;
    assert.equal(s.stats.frames, 5, 'the burst, and not one frame more');
    assert.equal(s.backlog, 45, 'the rest of the chunk waits');
    assert.equal(ws.paused, true, 'reading paused');
    // Replies only for the 5 frames processed: a keepalive reply, an error ACK, a pong (the ACK and the status update get none here).
    assert.equal(ws.written.length, 3);
    // 1 s at 10 frames/s: ten more.
    for (let i = 0; i < 10; i++) mock.timers.tick(100);
    s = h.nodeSummary('flooder')!;
    assert.equal(s.stats.frames, 15);
    // Eventually every frame is processed, in order, and reading resumes.
    for (let i = 0; i < 40; i++) mock.timers.tick(100);
    s = h.nodeSummary('flooder')!;
    assert.equal(s.stats.frames, 50);
    assert.equal(s.backlog, 0);
    assert.equal(ws.paused, false, 'reading resumed once the backlog is empty');
    const out = ws.messages();
    assert.equal(out.filter((m) => m.route.operation === 'keepalive').length, 10);
    assert.equal(out.filter((m) => m.route.operation === 'ack' && (m.content as { code?: string } | null)?.code === 'LEDGE_ERR_UNKNOWN_OPERATION').length, 10);
    assert.equal(ws.written.filter((w) => w.kind === 'pong').length, 10);
    assert.equal(s.stats.received, 10, 'the status updates were handed on');
  });

  test('duplicates of an upstream message cost a token each', () => {
    const h = hub({ upstreamQps: 1, upstreamBurst: 3 });
    const ws = connect(h, 'repeater');
    const m = statusUpdate(1);
    ws.receive(m, m, m, m, m, m);
    const s = h.nodeSummary('repeater')!;
    assert.equal(s.stats.frames, 3);
    assert.equal(s.stats.duplicates, 2);
    assert.equal(s.backlog, 3);
  });

  test('an ACK of a message in flight is free; the node’s download is not limited to its upload rate', () => {
    const h = hub({ upstreamQps: 1, upstreamBurst: 2, ackTimeoutMs: 60_000, maxAckTimeoutMs: 60_000 });
    const ws = connect(h, 'downloader');
    for (let i = 0; i < 20; i++)
      h.sendToNode(
        'downloader',
        newMessage({ source: 'test', group: 'resource', operation: 'update', resource: `default/configmap/c${i}`, resourceVersion: '1', sync: true, content: { i } }),
      );
    const sent = ws.messages();
    assert.equal(sent.length, 20);
    ws.receive(...sent.map((m) => newAck(m, 'edge')), keepalive(), keepalive(), keepalive());
    const s = h.nodeSummary('downloader')!;
    assert.equal(s.stats.acked, 20, 'every ACK processed without tokens');
    assert.equal(s.stats.frames, 22, '20 ACKs + the 2 keepalives of the burst');
    assert.equal(s.backlog, 1, 'the third keepalive waits for a token');
    // A second ACK of the same message acknowledges nothing: it costs a token like any frame.
    ws.receive(newAck(sent[0]!, 'edge'));
    assert.equal(h.nodeSummary('downloader')!.backlog, 2, 'the repeated ACK waits behind the keepalive');
    mock.timers.tick(1000);
    assert.equal(h.nodeSummary('downloader')!.backlog, 1);
    mock.timers.tick(1000);
    const after = h.nodeSummary('downloader')!;
    assert.equal(after.backlog, 0);
    assert.equal(after.stats.frames, 24);
    assert.equal(after.stats.acked, 20);
  });
});

describe('send budget: replies count, a peer that does not read is cut off', () => {
  test('replies stop at the budget (reading pauses); after slowPeerTimeoutMs the session is closed with 1008', () => {
    const limit = 2000;
    const h = hub({ upstreamQps: 1e6, upstreamBurst: 1e6, maxUnflushedBytes: limit, slowPeerTimeoutMs: 30_000 });
    const ws = connect(h, 'deaf');
    const flood = Array.from({ length: 1000 }, () => keepalive());
    ws.receive(...flood);
    const s = h.nodeSummary('deaf')!;
    const replyBytes = ws.written[0]!.data.length;
    assert.ok(s.unflushedBytes > limit && s.unflushedBytes <= limit + replyBytes, `unflushed ${s.unflushedBytes} stays within one reply of the budget ${limit}`);
    assert.equal(ws.paused, true);
    assert.equal(s.stats.frames, Math.ceil((limit + 1) / replyBytes), 'frames processed only until the budget was exceeded');
    assert.equal(s.backlog, 1000 - s.stats.frames);
    mock.timers.tick(29_999);
    assert.equal(ws.closeInfo(), undefined, 'not before the timeout');
    mock.timers.tick(1);
    assert.equal(ws.closeInfo()?.code, 1008);
    assert.match(ws.closeInfo()!.reason, /LEDGE_ERR_SLOW_PEER/);
    assert.equal(h.isConnected('deaf'), false);
    assert.equal(log.lines.filter((l) => l.code === 'LEDGE_ERR_SLOW_PEER').length, 1, 'one log line');
    assert.equal(h.nodeSummary('deaf')!.backlog, 0, 'the backlog is dropped with the session');
  });

  test('a peer that reads again within the timeout is resumed and keeps its session', () => {
    const h = hub({ upstreamQps: 1e6, upstreamBurst: 1e6, maxUnflushedBytes: 2000, slowPeerTimeoutMs: 30_000 });
    const ws = connect(h, 'slow');
    ws.receive(...Array.from({ length: 200 }, () => keepalive()));
    assert.equal(ws.paused, true);
    mock.timers.tick(20_000);
    // The peer reads: each flush frees the budget, the backlog proceeds, until all 200 are answered.
    for (let i = 0; i < 50 && h.nodeSummary('slow')!.stats.frames < 200; i++) ws.flush();
    ws.flush();
    mock.timers.tick(20_000);
    assert.equal(ws.closeInfo(), undefined);
    assert.equal(h.nodeSummary('slow')!.stats.frames, 200);
    assert.equal(ws.messages().length, 200);
    assert.equal(ws.paused, false);
  });

  test('pongs count against the budget too', () => {
    const h = hub({ upstreamQps: 1e6, upstreamBurst: 1e6, maxUnflushedBytes: 1000, slowPeerTimeoutMs: 1000 });
    const ws = connect(h, 'pinger');
    ws.receive(...Array.from({ length: 500 }, () => ({ ping: Buffer.alloc(100) })));
    assert.ok(ws.written.length <= 10, `${ws.written.length} pongs`);
    mock.timers.tick(1000);
    assert.equal(ws.closeInfo()?.code, 1008);
  });
});

describe('log rate limit', () => {
  test('20,000 rejected frames: one line, then one summary line per window', () => {
    const h = hub({ upstreamQps: 1e6, upstreamBurst: 1e6 });
    const ws = connect(h, 'noisy');
    for (let i = 0; i < 20_000; i++) {
      ws.receive(unknownOp());
      ws.flush();
    }
    assert.equal(h.nodeSummary('noisy')!.stats.rejected, 20_000);
    assert.equal(lines(/message rejected/), 1);
    mock.timers.tick(10_000);
    assert.equal(lines(/19999 more rejected frames from node noisy in the last 10 s/), 1);
    // The next window starts with a full line again.
    ws.receive(unknownOp('warp'));
    assert.equal(lines(/message rejected: unknown operation .{0,2}warp/), 1);
    assert.ok(log.lines.length < 10, `${log.lines.length} lines in all`);
  });

  test('the summary is written when the session closes before the window ends', () => {
    const h = hub({ upstreamQps: 1e6, upstreamBurst: 1e6 });
    const ws = connect(h, 'brief');
    for (let i = 0; i < 5; i++) ws.receive(unknownOp());
    mock.timers.tick(2000);
    ws.emit('close', 1000, Buffer.alloc(0));
    assert.equal(lines(/4 more rejected frames from node brief in the last 2 s/), 1);
  });

  test('a long flood logs its throttling once per window, not once per refill', () => {
    const h = hub({ upstreamQps: 100, upstreamBurst: 1 });
    const ws = connect(h, 'flood');
    ws.receive(...Array.from({ length: 300 }, () => keepalive()));
    for (let i = 0; i < 300; i++) {
      mock.timers.tick(10);
      ws.flush();
    }
    assert.equal(h.nodeSummary('flood')!.stats.frames, 300);
    assert.equal(lines(/throttling it/), 1);
    mock.timers.tick(10_000);
    assert.equal(lines(/node flood was throttled \d+ more times in the last 10 s/), 1);
  });
});

describe('idle node state is evicted', () => {
  test('names that connected and left do not count against maxNodes, and are dropped after the grace period', () => {
    const h = hub({ maxNodes: 3, maxIdleNodes: 10, idleNodeGraceMs: 60_000 });
    for (let i = 0; i < 100; i++) {
      const ws = connect(h, `random-${i}`);
      ws.emit('close', 1000, Buffer.alloc(0));
    }
    assert.deepEqual(h.nodeCounts(), { total: 10, live: 0, idle: 10 }, 'bounded by maxIdleNodes, none live');
    mock.timers.tick(59_999);
    assert.equal(h.evictIdleNodes(), 0, 'kept during the grace period');
    mock.timers.tick(1);
    assert.equal(h.evictIdleNodes(), 10);
    assert.deepEqual(h.nodeCounts(), { total: 0, live: 0, idle: 0 });
  });

  test('a node with queued messages or upstream work in progress is live and never evicted', () => {
    const h = hub({ maxNodes: 2, idleNodeGraceMs: 1000 });
    h.sendToNode(
      'offline-a',
      newMessage({ source: 'test', group: 'resource', operation: 'update', resource: 'default/configmap/x', resourceVersion: '1', sync: true, content: {} }),
    );
    h.sendToNode(
      'offline-b',
      newMessage({ source: 'test', group: 'resource', operation: 'update', resource: 'default/configmap/x', resourceVersion: '1', sync: true, content: {} }),
    );
    // Best-effort messages to unknown nodes create no state at all.
    h.sendToNode('nobody', newMessage({ source: 'test', group: 'resource', operation: 'update', resource: 'default/configmap/x', content: {} }));
    assert.deepEqual(h.nodeCounts(), { total: 2, live: 2, idle: 0 });
    mock.timers.tick(10_000);
    assert.equal(h.evictIdleNodes(), 0);
    assert.equal(h.nodeSummary('offline-a')!.queued, 1, 'the queued message waits for its node');
    // The limit counts live states: a third node's message is refused.
    h.sendToNode(
      'offline-c',
      newMessage({ source: 'test', group: 'resource', operation: 'update', resource: 'default/configmap/x', resourceVersion: '1', sync: true, content: {} }),
    );
    assert.equal(h.nodeSummary('offline-c'), undefined);
    // Once delivered and ACKed, and the node gone, the state becomes idle and is evicted.
    const ws = connect(h, 'offline-a');
    const [m] = ws.messages();
    ws.receive(newAck(m!, 'edge'));
    ws.emit('close', 1000, Buffer.alloc(0));
    assert.deepEqual(h.nodeCounts(), { total: 2, live: 1, idle: 1 });
    mock.timers.tick(1000);
    assert.equal(h.evictIdleNodes(), 1);
    assert.equal(h.nodeSummary('offline-a'), undefined);
  });

  test('a quick reconnect finds its state: the rate budget is not refilled by reconnecting', () => {
    const h = hub({ upstreamQps: 1, upstreamBurst: 3, idleNodeGraceMs: 60_000 });
    let ws = connect(h, 'bouncer');
    ws.receive(keepalive(), keepalive(), keepalive());
    ws.emit('close', 1000, Buffer.alloc(0));
    ws = connect(h, 'bouncer');
    ws.receive(keepalive());
    assert.equal(h.nodeSummary('bouncer')!.backlog, 1, 'reconnecting does not refill the burst');
  });
});
