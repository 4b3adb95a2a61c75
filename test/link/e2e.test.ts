/**
 * End-to-end tests of the cloud–edge link with real processes: a CloudCore process
 * (test/fixtures/cloud-harness.ts) and the bundled EdgeCore (dist/edgecore.js),
 * over real WebSockets, with kill -9 and link faults. After each fault the test
 * checks, from the real files both sides wrote:
 * - every downstream version the cloud counted as ACKed is in the edge's store log,
 *   exactly once, and per resource the applied versions strictly increase;
 * - every upstream message the edge made durable in its outbox reached the cloud,
 *   and (while the cloud process lives) exactly once.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startEdge, startProcess, eventually, type Proc } from '../helpers/process.js';
import { tempDir, readMetaLog, readJsonLines } from '../helpers/files.js';
import { startProxy } from '../helpers/proxy.js';
import { readRecords } from '../../shared/wal/index.js';
import { createCborCodec } from '../../shared/protocol/index.js';

const RESOURCES = 5;
const UPDATES = 150;
const LINK_UPDATES = 45;
const fast = ['--heartbeat-interval-ms', '300', '--heartbeat-timeout-ms', '1200', '--ack-timeout-ms', '300', '--log-level', 'warn'];

interface Acked {
  resource: string;
  rv: string;
  id: string;
}
interface Received {
  id: string;
  resource: string;
  op: string;
  seq?: number;
  bootId?: string;
}

const procs: Proc[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.kill9()));
});

function startCloud(harnessDir: string, port: number, intervalMs = 25, updates = UPDATES): Proc {
  const p = startProcess(
    ['--import', 'tsx', 'test/fixtures/cloud-harness.ts', '--port', String(port), '--bind-address', '127.0.0.1', '--insecure-plain-websocket', ...fast],
    { HARNESS_DIR: harnessDir, RESOURCES: String(RESOURCES), UPDATES: String(updates), INTERVAL_MS: String(intervalMs) },
    'cloud',
  );
  procs.push(p);
  return p;
}

function edgeArgs(cloudUrl: string, dataDir: string, configFile: string): string[] {
  return [
    '--cloud',
    cloudUrl,
    '--node-name',
    'edge-1',
    '--data-dir',
    dataDir,
    '--config',
    configFile,
    '--node-status-interval-ms',
    '100',
    '--heartbeat-interval-ms',
    '300',
    '--heartbeat-timeout-ms',
    '1200',
    '--log-level',
    'warn',
  ];
}

/** An edge config file: keeps the store log uncompacted so the test can read its full history. */
function writeEdgeConfig(dir: string): string {
  const file = join(dir, 'edgecore.json');
  writeFileSync(file, JSON.stringify({ meta: { compactAfter: 1_000_000 }, hub: { reconnectBaseMs: 50, reconnectMaxMs: 400, ackTimeoutMs: 300, handshakeTimeoutMs: 1000 } }));
  return file;
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Downstream checks against the edge's store log. `strict`: every ACKed version must be in the log itself. */
function checkDownstream(dataDir: string, harnessDir: string, strict: boolean, updates = UPDATES): { applied: number } {
  const log = readMetaLog(dataDir).filter((r) => r.t === 'put');
  const byKey = new Map<string, number[]>();
  for (const r of log) {
    const list = byKey.get(r.k!) ?? [];
    list.push(Number(r.rv));
    byKey.set(r.k!, list);
  }
  for (const [k, rvs] of byKey) {
    for (let i = 1; i < rvs.length; i++) assert.ok(rvs[i]! > rvs[i - 1]!, `versions of ${k} must strictly increase (no duplicate, no reordering): ${rvs.join(',')}`);
  }
  const acked = readJsonLines<Acked>(join(harnessDir, 'acked.jsonl'));
  assert.ok(acked.length > 0, 'the cloud recorded ACKs');
  for (const a of acked) {
    const rvs = byKey.get(a.resource) ?? [];
    if (strict) assert.ok(rvs.includes(Number(a.rv)), `ACKed ${a.resource}@${a.rv} must be in the edge store log`);
    else
      assert.ok(
        rvs.some((rv) => rv >= Number(a.rv)),
        `ACKed ${a.resource}@${a.rv} (or newer) must be in the edge store log`,
      );
  }
  for (let i = 0; i < RESOURCES; i++) {
    const rvs = byKey.get(`default/configmap/cm-${i}`) ?? [];
    assert.equal(rvs.at(-1), updates, `cm-${i} converged to the last version`);
  }
  return { applied: log.length };
}

/**
 * Upstream checks from the edge's outbox file: every message the edge saw ACKed reached
 * the cloud; what is not ACKed yet is still in the outbox (delivered on the next start).
 */
function checkUpstream(dataDir: string, harnessDir: string, exactlyOnce: boolean): { reports: number; duplicates: number; pending: number } {
  const codec = createCborCodec();
  const outboxFile = join(dataDir, 'outbox.log');
  assert.ok(existsSync(outboxFile), 'the edge has an outbox');
  const added: string[] = [];
  const ackedIds = new Set<string>();
  for (const r of readRecords(readFileSync(outboxFile)).records) {
    if (r[0] === 1) added.push(codec.decode(r.subarray(1)).header.id);
    else if (r[0] === 2) ackedIds.add(Buffer.from(r.subarray(1)).toString());
  }
  const received = readJsonLines<Received>(join(harnessDir, 'received.jsonl')).filter((r) => r.resource.includes('/nodestatus/'));
  const counts = new Map<string, number>();
  for (const r of received) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
  assert.ok(ackedIds.size > 10, `the edge delivered status reports (${ackedIds.size})`);
  for (const id of ackedIds) assert.ok(counts.has(id), `ACKed outbox message ${id} reached the cloud`);
  const pending = added.filter((id) => !ackedIds.has(id));
  // Reports of one resource go one at a time, so at most a couple are unacknowledged at stop.
  assert.ok(pending.length <= 3, `only the last reports may be pending at stop: ${pending.length}`);
  const duplicates = [...counts.values()].filter((c) => c > 1).length;
  if (exactlyOnce) assert.equal(duplicates, 0, 'no upstream message handled twice');
  // Per process start, report sequence numbers arrive without gaps.
  const byBoot = new Map<string, Set<number>>();
  for (const r of received) {
    const set = byBoot.get(r.bootId!) ?? new Set<number>();
    set.add(r.seq!);
    byBoot.set(r.bootId!, set);
  }
  for (const [boot, seqs] of byBoot) {
    const sorted = [...seqs].sort((a, b) => a - b);
    assert.deepEqual(
      sorted,
      sorted.map((_, i) => i + 1),
      `reports of boot ${boot} have no gaps`,
    );
  }
  return { reports: added.length, duplicates, pending: pending.length };
}

/** Waits until the cloud recorded at least `n` more ACKs than it had (real progress before the next fault). */
async function progress(harnessDir: string, n = 15): Promise<void> {
  const start = readJsonLines<Acked>(join(harnessDir, 'acked.jsonl')).length;
  await eventually(() => readJsonLines<Acked>(join(harnessDir, 'acked.jsonl')).length >= start + n, 30_000, `${n} more ACKs`);
}

/** Waits until the edge's outbox has (almost) nothing unacknowledged: it caught up after the faults. */
async function caughtUp(dataDir: string): Promise<void> {
  await eventually(
    () => {
      const recs = readRecords(readFileSync(join(dataDir, 'outbox.log'))).records;
      return recs.filter((r) => r[0] === 1).length - recs.filter((r) => r[0] === 2).length <= 1;
    },
    30_000,
    'the edge outbox to catch up',
  );
}

/** Runs a scenario with a harness dir, an edge data dir and a free port, cleaning up after. */
async function scenario(fn: (harnessDir: string, dataDir: string, port: number) => Promise<void>): Promise<void> {
  const h = tempDir();
  const e = tempDir();
  try {
    await fn(h.path, e.path, await freePort());
  } finally {
    h.cleanup();
    e.cleanup();
  }
}

/** Lets the stream finish, stops both sides and checks both directions from their files. */
async function finishAndCheck(cloud: Proc, edge: Proc, harnessDir: string, dataDir: string, opts: { strict: boolean; updates?: number }): Promise<{ duplicates: number }> {
  await cloud.waitFor(/PRODUCER DONE/, 60_000);
  await caughtUp(dataDir);
  await edge.stop();
  checkDownstream(dataDir, harnessDir, opts.strict, opts.updates);
  const { duplicates } = checkUpstream(dataDir, harnessDir, opts.strict);
  await cloud.stop();
  return { duplicates };
}

describe('cloud–edge link, real processes', () => {
  test('messages flow both ways: downstream applied durably and ACKed, upstream delivered and ACKed', async () => {
    await scenario(async (h, e, port) => {
      const cloud = startCloud(h, port);
      const [, url] = (await cloud.waitFor(/HARNESS READY (\S+)/)) as unknown as [string, string];
      const edge = startEdge(edgeArgs(url, e, writeEdgeConfig(e)));
      procs.push(edge);
      await finishAndCheck(cloud, edge, h, e, { strict: true });
    });
  });

  test('kill -9 of the edge mid-stream: nothing ACKed is lost, nothing applied twice, the outbox survives', async () => {
    await scenario(async (h, e, port) => {
      const cloud = startCloud(h, port);
      const [, url] = (await cloud.waitFor(/HARNESS READY (\S+)/)) as unknown as [string, string];
      const cfg = writeEdgeConfig(e);
      for (let round = 0; round < 3; round++) {
        const edge = startEdge(edgeArgs(url, e, cfg), {}, `edge-${round}`);
        procs.push(edge);
        // Let it get mid-stream, then kill it without warning.
        await progress(h);
        await edge.kill9();
      }
      const edge = startEdge(edgeArgs(url, e, cfg), {}, 'edge-final');
      procs.push(edge);
      await finishAndCheck(cloud, edge, h, e, { strict: true });
    });
  });

  test('kill -9 of the cloud mid-stream: the edge reconnects to the restarted cloud and converges', async () => {
    await scenario(async (h, e, port) => {
      let cloud = startCloud(h, port);
      const [, url] = (await cloud.waitFor(/HARNESS READY (\S+)/)) as unknown as [string, string];
      const edge = startEdge(edgeArgs(url, e, writeEdgeConfig(e)));
      procs.push(edge);
      for (let round = 0; round < 2; round++) {
        await progress(h);
        await cloud.kill9();
        // Offline for a moment: the edge keeps queueing status reports in its outbox.
        await new Promise((r) => setTimeout(r, 500));
        cloud = startCloud(h, port);
        await cloud.waitFor(/HARNESS READY/);
      }
      // Versions re-sent by the restarted cloud may be ones the edge already had (≥ check), and
      // upstream messages in flight at a crash may be handled twice: the cloud's dedupe memory died.
      const { duplicates } = await finishAndCheck(cloud, edge, h, e, { strict: false });
      assert.ok(duplicates <= 2 * 32, `duplicates bounded by the in-flight window: ${duplicates}`);
    });
  });

  test('link cut and black-holed: heartbeats detect the dead link, nothing is lost or duplicated', async () => {
    await scenario(async (h, e, port) => {
      // Paced slower than the ACK timeout, so a lost ACK means a resend of the same message
      // (not a newer version superseding it), and long enough to outlast four faults.
      const cloud = startCloud(h, port, 400, LINK_UPDATES);
      await cloud.waitFor(/HARNESS READY/);
      const proxy = await startProxy(() => port);
      try {
        const edge = startEdge(edgeArgs(`ws://127.0.0.1:${proxy.port}`, e, writeEdgeConfig(e)));
        procs.push(edge);
        // A reset, then half-dead links: ACKs lost on the way up force resends of messages the
        // edge already applied (its de-duplication must hold), ACKs lost on the way down force
        // resends of upstream messages the cloud already handled (CloudHub's must), then a dead link.
        // The edge logs each link it loses: by its own heartbeat timeout (nothing from the cloud)
        // or because the cloud's heartbeat timed out and closed the session.
        const noticed = () => (edge.output().match(/no traffic from cloud|disconnected from cloud/g) ?? []).length;
        for (const fault of ['cut', 'up', 'down', 'both'] as const) {
          await progress(h, 8);
          if (fault === 'cut') {
            proxy.cut();
          } else {
            const before = noticed();
            proxy.blackhole(fault);
            // No cut here: only the heartbeats can find out that this link is dead.
            await eventually(() => noticed() > before, 15_000, `the edge to notice the black-holed link (${fault}) by heartbeat`);
            proxy.blackhole('none');
            proxy.cut();
          }
        }
        await finishAndCheck(cloud, edge, h, e, { strict: true, updates: LINK_UPDATES });
        assert.match(edge.output(), /no traffic from cloud|disconnected from cloud/, 'the edge noticed the dead link');
      } finally {
        await proxy.close();
      }
    });
  });
});
