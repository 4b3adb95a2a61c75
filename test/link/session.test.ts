/**
 * Sessions: replacement by a second connection, heartbeat detection, TLS with real
 * certificates, endpoint failover and the restart-safe outbox, with real sockets and
 * the bundled EdgeCore process.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, symlinkSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { startTestCloud, ThinEdge, type TestCloud } from '../helpers/cloud.js';
import { eventually, repoRoot, startEdge, type Proc } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';
import { createTestPki } from '../helpers/pki.js';
import { newMessage } from '../../shared/protocol/index.js';
import { readRecords } from '../../shared/wal/index.js';

const tls = (f: string) => join(repoRoot, 'test/fixtures/tls', f);
const clouds: TestCloud[] = [];
const procs: Proc[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.kill9()));
  await Promise.all(clouds.map((c) => c.stop()));
});

async function cloud(options: Parameters<typeof startTestCloud>[0] = {}): Promise<TestCloud> {
  const c = await startTestCloud(options);
  clouds.push(c);
  return c;
}

function configmap(name: string, rv: number) {
  return newMessage({ source: 'test', group: 'resource', operation: 'update', resource: `default/configmap/${name}`, resourceVersion: String(rv), sync: true, content: { rv } });
}

async function deadPort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('sessions', () => {
  test('a second connection from the same node replaces the first; unACKed messages move to it with the same ids', async () => {
    const c = await cloud({ ackTimeoutMs: 200 });
    const first = await ThinEdge.connect(c.hub.url, 'twin-node', { autoAck: false });
    const msg = configmap('a', 1);
    c.hub.sendToNode('twin-node', msg);
    await eventually(() => first.messages.some((m) => m.header.id === msg.header.id), 5000, 'first connection got the message');
    const second = await ThinEdge.connect(c.hub.url, 'twin-node', { autoAck: true });
    const closed = await first.closedWith();
    assert.equal(closed.code, 1000);
    assert.match(closed.reason, /replaced by a new connection/);
    // The unacknowledged message is redelivered to the new connection, same id, and ACKed there.
    await eventually(() => second.messages.some((m) => m.header.id === msg.header.id), 5000, 'redelivery on the new connection');
    await eventually(() => c.hub.nodeSummary('twin-node')!.inFlight === 0 && c.hub.nodeSummary('twin-node')!.stats.acked === 1, 5000, 'ACKed once');
    assert.deepEqual(
      c.hub.connectedNodes().filter((n) => n === 'twin-node'),
      ['twin-node'],
    );
    second.close();
  });

  test('coalescing: a newer version replaces an undelivered older one; order per resource holds', async () => {
    const c = await cloud({ ackTimeoutMs: 5000 });
    // Queue while the node is away: only the newest version of each resource is sent.
    for (let rv = 1; rv <= 5; rv++) c.hub.sendToNode('late-node', configmap('x', rv));
    c.hub.sendToNode('late-node', configmap('y', 1));
    const e = await ThinEdge.connect(c.hub.url, 'late-node');
    await eventually(() => c.hub.nodeSummary('late-node')!.stats.acked === 2, 5000, 'two ACKs');
    const got = e.messages.map((m) => `${m.route.resource}@${m.header.resourceVersion}`);
    assert.deepEqual(got.sort(), ['default/configmap/x@5', 'default/configmap/y@1']);
    assert.equal(c.hub.nodeSummary('late-node')!.stats.superseded, 4);
    e.close();
  });

  test('a session that stops answering pings is detected and closed', async () => {
    const c = await cloud({ heartbeatIntervalMs: 100, heartbeatTimeoutMs: 400 });
    const e = await ThinEdge.connect(c.hub.url, 'silent-node');
    await eventually(() => c.hub.nodeSummary('silent-node')?.connected, 2000, 'connected');
    // Stop reading: pings go unanswered, as on a dead link.
    e.ws.pause();
    await eventually(() => c.hub.nodeSummary('silent-node')!.connected === false, 5000, 'session closed by heartbeat');
    assert.ok(c.log.has(/missed its heartbeats.*LEDGE_ERR_HEARTBEAT_TIMEOUT|LEDGE_ERR_HEARTBEAT_TIMEOUT.*missed its heartbeats/));
    e.close();
  });

  test('TLS: the edge verifies CloudHub against its CA; a wrong CA is refused with a clear log line and retried', async () => {
    // CloudHub's CA signs its serving certificate and the nodes' client certificates (mTLS: test/cloudhub/mtls.test.ts).
    const pki = await createTestPki();
    const c = await cloud({ tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca } });
    assert.match(c.hub.url, /^wss:/);
    const good = tempDir();
    const bad = tempDir();
    try {
      const okCert = pki.write(good.path, 'node', await pki.node('tls-good'));
      const badCert = pki.write(bad.path, 'node', await pki.node('tls-bad'));
      const caFile = join(good.path, 'ca.crt');
      writeFileSync(caFile, pki.ca);
      const ok = startEdge(
        [
          '--cloud',
          c.hub.url,
          '--node-name',
          'tls-good',
          '--data-dir',
          good.path,
          '--ca-file',
          caFile,
          '--cert-file',
          okCert.certFile,
          '--key-file',
          okCert.keyFile,
          '--log-level',
          'info',
        ],
        {},
        'tls-good',
      );
      const wrong = startEdge(
        [
          '--cloud',
          c.hub.url,
          '--node-name',
          'tls-bad',
          '--data-dir',
          bad.path,
          '--ca-file',
          tls('other-ca.pem'),
          '--cert-file',
          badCert.certFile,
          '--key-file',
          badCert.keyFile,
          '--reconnect-max-ms',
          '300',
          '--log-level',
          'info',
        ],
        {},
        'tls-bad',
      );
      procs.push(ok, wrong);
      await ok.waitFor(/connected to cloud/);
      await eventually(() => c.hub.nodeSummary('tls-good')?.connected, 5000, 'TLS session');
      // A downstream message over TLS reaches the edge's store and is ACKed.
      c.hub.sendToNode('tls-good', configmap('over-tls', 3));
      await eventually(() => c.hub.nodeSummary('tls-good')!.stats.acked >= 1, 10_000, 'ACK over TLS');
      await wrong.waitFor(/connect to wss:.*failed: .*(self-signed|unable to verify|certificate)/i);
      // It keeps running and retrying: a second failure line appears.
      await eventually(() => (wrong.output().match(/connect to wss:.*failed/g) ?? []).length >= 2, 10_000, 'retry after TLS failure');
      assert.equal(wrong.child.exitCode, null, 'process still running');
      assert.equal(c.hub.nodeSummary('tls-bad')?.connected ?? false, false);
      assert.ok(c.log.has(/TLS handshake failed/), 'cloud logged the failed handshake');
      assert.equal(await ok.stop(), 0);
      await wrong.stop();
    } finally {
      good.cleanup();
      bad.cleanup();
    }
  });

  test('endpoint failover: the edge skips an endpoint that is down and connects to the next', async () => {
    const c = await cloud();
    const d = tempDir();
    try {
      const dead = `ws://127.0.0.1:${await deadPort()}`;
      const edge = startEdge(
        ['--cloud', `${dead},${c.hub.url}`, '--node-name', 'failover-node', '--data-dir', d.path, '--reconnect-max-ms', '200', '--log-level', 'info'],
        {},
        'failover',
      );
      procs.push(edge);
      await edge.waitFor(/connect to ws:\/\/127\.0\.0\.1:\d+\/v1\/edge failed: .*ECONNREFUSED/);
      await eventually(() => c.hub.nodeSummary('failover-node')?.connected, 10_000, 'connected to the second endpoint');
      assert.equal(await edge.stop(), 0);
    } finally {
      d.cleanup();
    }
  });

  test('the outbox survives kill -9 while offline: reports made with no cloud arrive after restart', async () => {
    const d = tempDir();
    try {
      const port = await deadPort();
      const args = [
        '--cloud',
        `ws://127.0.0.1:${port}`,
        '--node-name',
        'offline-node',
        '--data-dir',
        d.path,
        '--node-status-interval-ms',
        '50',
        '--reconnect-max-ms',
        '200',
        '--log-level',
        'warn',
      ];
      const first = startEdge(args, {}, 'offline-1');
      procs.push(first);
      // Counted in records, not bytes: a report is ~1.5 KiB since it carries the full NodeStatus.
      await eventually(() => readRecords(readFileSync(join(d.path, 'outbox.log'))).records.length >= 8, 10_000, 'reports queued offline');
      await first.kill9();
      const c = await cloud({ port });
      const second = startEdge(args, {}, 'offline-2');
      procs.push(second);
      // Every report of the first (killed) process start arrives, without gaps.
      await eventually(
        () => {
          const seqs = c.received.filter((m) => m.route.resource.includes('nodestatus')).map((m) => m.content as { seq: number; bootId: string });
          const boots = new Set(seqs.map((s) => s.bootId));
          return boots.size >= 2;
        },
        15_000,
        'reports from both process starts',
      );
      const firstBoot = (c.received[0]!.content as { bootId: string }).bootId;
      const seqs = c.received
        .map((m) => m.content as { seq: number; bootId: string })
        .filter((s) => s.bootId === firstBoot)
        .map((s) => s.seq);
      assert.ok(seqs.length >= 5, `several offline reports delivered (${seqs.length})`);
      assert.deepEqual(
        seqs,
        seqs.map((_, i) => i + 1),
        'in order, no gaps, no duplicates',
      );
      assert.equal(await second.stop(), 0);
    } finally {
      d.cleanup();
    }
  });

  test('disk full on the edge: no ACK, one clear log line, process keeps running; delivered once the disk is back', async (t) => {
    if (!existsSync('/dev/full')) {
      t.skip('/dev/full not available');
      return;
    }
    const c = await cloud({ ackTimeoutMs: 200, maxAckTimeoutMs: 400 });
    const d = tempDir();
    try {
      // The metadata store's log points at a device that always answers ENOSPC.
      symlinkSync('/dev/full', join(d.path, 'meta.log'));
      const args = ['--cloud', c.hub.url, '--node-name', 'full-node', '--data-dir', d.path, '--log-level', 'warn'];
      const edge = startEdge(args, {}, 'disk-full');
      procs.push(edge);
      await eventually(() => c.hub.nodeSummary('full-node')?.connected, 10_000, 'connected');
      const msg = configmap('precious', 9);
      c.hub.sendToNode('full-node', msg);
      // Wait for this line itself: the edge may log other LEDGE_ERR_STORAGE lines (store health) first.
      await edge.waitFor(/cannot store update default\/configmap\/precious: write to .*meta\.log failed: .*(ENOSPC|no space)/i);
      await eventually(() => c.hub.nodeSummary('full-node')!.stats.resent >= 2, 10_000, 'cloud keeps resending');
      assert.equal(c.hub.nodeSummary('full-node')!.stats.acked, 0, 'nothing ACKed while nothing was stored');
      assert.equal(edge.child.exitCode, null, 'edge still running');
      // Disk back: restart with a real file; the unACKed message is delivered and ACKed.
      assert.equal(await edge.stop(), 0);
      rmSync(join(d.path, 'meta.log'));
      const again = startEdge(args, {}, 'disk-back');
      procs.push(again);
      await eventually(() => c.hub.nodeSummary('full-node')!.stats.acked === 1, 15_000, 'ACK after the disk is back');
      assert.equal(await again.stop(), 0);
      assert.match(readFileSync(join(d.path, 'meta.log')).toString(), /precious/);
    } finally {
      d.cleanup();
    }
  });

  test('backpressure: a node that stops reading holds its queue at the high-water mark and never slows another node', async () => {
    const hwm = 256 * 1024;
    const c = await cloud({ sendHighWaterMark: hwm, maxInFlightPerNode: 1000, ackTimeoutMs: 60_000, maxAckTimeoutMs: 60_000 });
    const slow = await ThinEdge.connect(c.hub.url, 'slow-reader', { autoAck: false });
    const fast = await ThinEdge.connect(c.hub.url, 'fast-reader');
    slow.ws.pause(); // reads nothing: the kernel buffers fill, then ours would
    const blob = 'x'.repeat(60 * 1024);
    for (let i = 0; i < 300; i++) {
      c.hub.sendToNode(
        'slow-reader',
        newMessage({ source: 'test', group: 'resource', operation: 'update', resource: `default/configmap/big-${i}`, resourceVersion: '1', sync: true, content: { blob } }),
      );
    }
    // 18 MB were queued for the slow node; its socket holds only about the high-water mark:
    // once the kernel buffers are full, the unflushed bytes reach it and CloudHub sends no more.
    const summary = await eventually(
      () => {
        const s = c.hub.nodeSummary('slow-reader')!;
        return s.unflushedBytes >= hwm ? s : undefined;
      },
      10_000,
      "the slow node's unflushed bytes to reach the high-water mark",
    );
    assert.ok(summary.unflushedBytes <= hwm + 70 * 1024, `socket buffer bounded: ${summary.unflushedBytes} bytes`);
    assert.ok(summary.queued > 100, `the rest waits in the queue as encoded frames: ${summary.queued}`);
    // Meanwhile the other node is served at once.
    for (let i = 0; i < 20; i++) c.hub.sendToNode('fast-reader', configmap(`f-${i}`, 1));
    await eventually(() => c.hub.nodeSummary('fast-reader')!.stats.acked === 20, 5000, 'fast node ACKed everything');
    // When the slow node reads again, everything arrives.
    slow.ws.resume();
    await eventually(() => slow.messages.filter((m) => m.route.operation === 'update').length === 300, 20_000, 'slow node caught up');
    slow.close();
    fast.close();
  });
});
