/**
 * Hostile peers on real sockets: many throwaway node names, a peer that sends and
 * never reads, and a frame flood of keepalives. Each is bounded and honest nodes keep
 * working.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { once } from 'node:events';
import { startTestCloud, ThinEdge, statusUpdate, type TestCloud } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';
import { newMessage, SUBPROTOCOL, NODE_NAME_HEADER, type Message } from '../../shared/protocol/index.js';

const clouds: TestCloud[] = [];
const edges: ThinEdge[] = [];
after(async () => {
  for (const e of edges) e.close();
  await Promise.all(clouds.map((c) => c.stop()));
});

async function cloud(options: Parameters<typeof startTestCloud>[0]): Promise<TestCloud> {
  const c = await startTestCloud(options);
  clouds.push(c);
  return c;
}

async function edge(c: TestCloud, node: string, opts: Parameters<typeof ThinEdge.connect>[2] = {}): Promise<ThinEdge> {
  const e = await ThinEdge.connect(c.hub.url, node, opts);
  edges.push(e);
  return e;
}

/** An upstream message of `e` is handled and ACKed, and a downstream one delivered and ACKed. */
async function works(c: TestCloud, e: ThinEdge, node: string, tag: string): Promise<void> {
  const up = statusUpdate(1);
  e.send(up);
  await eventually(() => e.messages.some((m) => m.header.parentId === up.header.id), 10_000, `${node}: upstream ACK`);
  const before = c.hub.nodeSummary(node)!.stats.acked;
  c.hub.sendToNode(
    node,
    newMessage({ source: 'test', group: 'resource', operation: 'update', resource: `default/configmap/${tag}`, resourceVersion: '1', sync: true, content: { tag } }),
  );
  await eventually(() => c.hub.nodeSummary(node)!.stats.acked > before, 10_000, `${node}: downstream ACK`);
}

const keepalive = (): Message => newMessage({ source: 'websocket', group: 'hub', operation: 'keepalive', resource: 'node', content: 'ping' });

describe('CloudHub under hostile peers', () => {
  test('connecting under many throwaway names does not lock real nodes out; idle state stays bounded', async () => {
    const c = await cloud({ maxNodes: 20, maxIdleNodes: 10 });
    for (let i = 0; i < 60; i++) {
      const name = `throwaway-${i}`;
      const ws = new WebSocket(c.hub.url, SUBPROTOCOL, { headers: { [NODE_NAME_HEADER]: name } });
      ws.on('error', () => {}); // a refusal shows as 'unexpected-response', asserted below
      const [event] = await Promise.race([once(ws, 'open').then(() => ['open']), once(ws, 'unexpected-response').then(() => ['refused'])]);
      assert.equal(event, 'open', `${name} accepted (the limit counts live nodes only)`);
      ws.close();
      await eventually(() => !c.hub.isConnected(name), 5000, `${name} gone`);
    }
    const counts = c.hub.nodeCounts();
    assert.equal(counts.live, 0);
    assert.ok(counts.total <= 10, `idle states bounded by maxIdleNodes: ${counts.total}`);
    const real = await edge(c, 'real-node');
    await works(c, real, 'real-node', 'after-throwaways');
  });

  test('a quick reconnect keeps the de-dup window: a message resent after a reconnect is ACKed, not handled again', async () => {
    const c = await cloud({});
    const first = await edge(c, 'bouncy');
    const m = statusUpdate(42);
    first.send(m);
    await eventually(() => first.messages.some((x) => x.header.parentId === m.header.id), 5000, 'first ACK');
    first.close();
    await eventually(() => !c.hub.isConnected('bouncy'), 5000, 'disconnected');
    assert.equal(c.hub.nodeCounts().idle, 1, 'kept as idle for the grace period');
    const second = await edge(c, 'bouncy');
    second.send(m);
    await eventually(() => second.messages.some((x) => x.header.parentId === m.header.id), 5000, 'ACK again');
    assert.equal(c.received.filter((x) => x.header.id === m.header.id).length, 1, 'handled once');
  });

  test('a peer that sends and never reads is cut off (1008); the server buffers at most its budget', async () => {
    const limit = 256 * 1024;
    const c = await cloud({ maxUnflushedBytes: limit, slowPeerTimeoutMs: 500, upstreamQps: 1e6, upstreamBurst: 1e6, heartbeatIntervalMs: 60_000, heartbeatTimeoutMs: 120_000 });
    const bystander = await edge(c, 'honest');
    const deaf = await edge(c, 'deaf', { autoAck: false });
    deaf.ws.pause(); // reads nothing from now on: the kernel buffers fill, then CloudHub's would
    // Unknown operations with long names: each is answered with an error ACK naming it (~600 bytes).
    const op = 'x'.repeat(500);
    for (let i = 0; i < 40_000; i++) {
      const m = statusUpdate(i);
      m.route.operation = op;
      deaf.send(m);
    }
    let peak = 0;
    await eventually(
      () => {
        const s = c.hub.nodeSummary('deaf')!;
        peak = Math.max(peak, s.unflushedBytes);
        return !s.connected;
      },
      30_000,
      'the deaf peer cut off',
    );
    assert.ok(peak <= limit + 64 * 1024, `server-side unflushed bytes stayed near the budget: peak ${peak}`);
    const cut = c.log.lines.filter((l) => l.code === 'LEDGE_ERR_SLOW_PEER');
    assert.equal(cut.length, 1, 'one log line');
    assert.match(String(cut[0]!.msg), /node does not read what it is sent/);
    assert.ok(c.log.lines.filter((l) => /message rejected/.test(String(l.msg))).length <= 2, 'the rejections were not logged one by one');
    // When it reads again, it finds the session closed.
    deaf.ws.resume();
    const closed = await deaf.closedWith(30_000);
    assert.ok([1006, 1008].includes(closed.code), `closed with ${closed.code}`);
    await works(c, bystander, 'honest', 'after-deaf');
  });

  test('a keepalive flood is throttled to the rate limit while another node is served', async () => {
    const qps = 100;
    const burst = 50;
    const c = await cloud({ upstreamQps: qps, upstreamBurst: burst });
    const bystander = await edge(c, 'neighbour');
    const t0 = Date.now();
    const flooder = await edge(c, 'keepalive-flooder');
    for (let i = 0; i < 2000; i++) flooder.send(keepalive());
    const replies = () => flooder.messages.filter((m) => m.route.operation === 'keepalive').length;
    await eventually(() => replies() >= burst + 20, 10_000, 'the flooder is served, slowly');
    await works(c, bystander, 'neighbour', 'during-flood');
    // However fast it sent, the flooder got no more answers than its budget allows for the time elapsed.
    const allowed = burst + (qps * (Date.now() - t0)) / 1000 + 1;
    assert.ok(replies() <= allowed, `${replies()} keepalives answered, at most ${Math.floor(allowed)} allowed`);
    const processed = c.hub.nodeSummary('keepalive-flooder')!.stats.frames;
    assert.ok(processed <= allowed, `${processed} frames processed, at most ${Math.floor(allowed)} allowed`);
    assert.ok(processed < 2000, 'still throttled');
    assert.ok(c.log.has(/keepalive-flooder.*LEDGE_ERR_RATE_LIMIT|LEDGE_ERR_RATE_LIMIT.*keepalive-flooder/), 'throttling logged');
    assert.ok(c.log.lines.filter((l) => /throttling it/.test(String(l.msg))).length <= 2, 'logged once per window');
  });
});
