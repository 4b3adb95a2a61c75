/**
 * The edge metadata store (edge/metamanager/store.ts, issue 10): writes/s with fsync, and the
 * recovery (open) time and memory of a store of 100k records.
 *
 * 1. Writes, timed by tinybench 6 (wall clock), side by side in rotated rounds:
 *    - `MetaStore.put`, one at a time, each awaited (fsync per put);
 *    - `MetaStore.put`, 64 in flight (tinybench `concurrency: 'task'`, threshold 64: the log
 *      group-commits them, one write + one fsync per batch);
 *    - the log underneath (shared/wal `AppendLog.append`) with the same record bytes, one at a time
 *      with fsync, and without fsync (`fsync: false`): what the store adds to the log, and what
 *      fsync costs.
 *    The object is a ~1 KB ConfigMap (CBOR record ≈ 1.1 KB with key, version and message id),
 *    cycling over 1,000 names with increasing resourceVersions, as MetaManager writes updates (so
 *    the store compacts now and then, as it does in service). writes/s = puts completed / wall time
 *    of the measured phase; the best of BENCH_ROUNDS (3) rounds (interference only slows a round),
 *    the median round beside it; latency percentiles of one put from tinybench's samples.
 * 2. Recovery: a store of N distinct ~1 KB objects (BENCH_RECORDS, default `20000,100000`: the
 *    default `meta.maxObjects`, and the issue's 100k) is written through `MetaStore.put` (256 in
 *    flight; its rate is reported as the bulk-load figure), closed, and then opened BENCH_OPEN_RUNS
 *    (3) times, each in a fresh bundled Node process (bench/lib/store-open.ts, `--expose-gc`),
 *    alternating with a process that opens an empty store (the baseline: same code loaded, nothing
 *    to replay). Reported: open time, RSS/RssAnon/heap right after the open and after full GCs, Δ
 *    over the empty-store process. The opens run interpreter-only (`--no-opt --no-sparkplug`, what
 *    EdgeCore sets at start), for comparison with V8's JIT, and interpreter-only with V8's young
 *    generation capped (`--max-semi-space-size=1`: a replay grows it to its maximum, and it stays
 *    committed). The write cases run interpreter-only too (BENCH_JIT=1: with the JIT). The log is
 *    in the page cache (written just before; dropping caches would disturb the other jobs on this
 *    machine): a cold disk adds its read time (~110 MB for 100k records).
 *
 * Options: BENCH_TIME_MS (measured time per task per round, default 3000), BENCH_WARMUP_MS (300),
 * BENCH_ROUNDS (3), BENCH_RECORDS (20000,100000), BENCH_OPEN_RUNS (3), BENCH_DIR (where the stores
 * live, default the OS temp dir; fsync cost is the file system's).
 * Run:  npm run bench -- edge-store           (about 2.5 minutes)
 * Writes bench/results/edge-store.json.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import { Bench } from 'tinybench';
import { Encoder } from 'cbor-x/encode';
import { MetaStore } from '../edge/metamanager/store.js';
import { AppendLog } from '../shared/wal/index.js';
import { cborEncoderOptions } from '../shared/protocol/codec.js';
import { createLogger } from '../shared/log/index.js';
import { bundleHelpers } from './lib/children.js';
import { median, MiB } from './lib/rss.js';
import { onCleanup, round, runCleanup, writeResult } from './lib/pods-cluster.js';

const env = process.env;
const TIME_MS = Number(env.BENCH_TIME_MS ?? 3000);
const WARMUP_MS = Number(env.BENCH_WARMUP_MS ?? 300);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const RECORDS = (env.BENCH_RECORDS ?? '20000,100000').split(',').map(Number);
const OPEN_RUNS = Number(env.BENCH_OPEN_RUNS ?? 3);
const BASE = env.BENCH_DIR ?? os.tmpdir();
const CONCURRENCY = 64;
const NAMES = 1000;
const log = createLogger({ level: 'warn', format: 'json' });
const JIT = env.BENCH_JIT === '1';
// As EdgeCore runs (edge/main.ts turns V8's compilers off at start unless --jit).
if (!JIT) {
  v8.setFlagsFromString('--no-opt');
  v8.setFlagsFromString('--no-sparkplug');
}
/** Node flags of the recovery processes: EdgeCore's default (interpreter only), and with its --jit. */
const INTERPRETED = ['--no-opt', '--no-sparkplug'];
/** The same with V8's young generation capped (semi-spaces of 1 MiB): a replay grows it to its 16 MiB maximum otherwise. */
const SMALL_YOUNG = [...INTERPRETED, '--max-semi-space-size=1'];

/** A ~1 KB ConfigMap as the cloud sends it. */
function configMap(name: string, rv: number): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name,
      namespace: 'default',
      uid: '5f0c3a8e-1d2b-4c6f-9a7e-3b8d2f1e4c90',
      resourceVersion: String(rv),
      creationTimestamp: '2026-12-01T10:00:00Z',
      labels: { app: 'sensor-gateway', tier: 'edge' },
    },
    data: { 'settings.json': JSON.stringify({ interval: 15, endpoints: ['mqtt://127.0.0.1:1883'] }), blob: 'x'.repeat(760) },
  };
}

interface Case {
  name: string;
  concurrent: boolean;
  setup(dir: string): Promise<{ op: () => Promise<unknown>; close: () => Promise<void> }>;
}

const cborEncoder = new Encoder(cborEncoderOptions);
/** Record bytes like the store's (format byte + CBOR of the put record). */
function recordBytes(i: number): Uint8Array {
  const body = cborEncoder.encode({ t: 'put', k: `default/configmap/cm-${i % NAMES}`, rv: String(i + 1), v: configMap(`cm-${i % NAMES}`, i + 1), id: randomUUID() });
  const out = new Uint8Array(body.length + 1);
  out[0] = 1;
  out.set(body, 1);
  return out;
}

const storeCase = (name: string, concurrent: boolean): Case => ({
  name,
  concurrent,
  async setup(dir) {
    const store = await MetaStore.open(dir, log, {});
    let rv = 0;
    return {
      op: () => {
        const n = ++rv;
        const k = `cm-${n % NAMES}`;
        return store.put(`default/configmap/${k}`, configMap(k, n), String(n), randomUUID());
      },
      close: () => store.close(),
    };
  },
});
const logCase = (name: string, fsync: boolean): Case => ({
  name,
  concurrent: false,
  async setup(dir) {
    const { log: wal } = await AppendLog.open(join(dir, 'raw.log'), { fsync });
    const pool = Array.from({ length: 256 }, (_, i) => recordBytes(i));
    let i = 0;
    return { op: () => wal.append(pool[i++ % pool.length]!), close: () => wal.close() };
  },
});

const cases: Case[] = [
  storeCase('MetaStore.put, sequential (fsync each)', false),
  storeCase(`MetaStore.put, ${CONCURRENCY} concurrent (group commit)`, true),
  logCase('AppendLog.append, sequential (fsync each)', true),
  logCase('AppendLog.append, sequential, no fsync', false),
];

interface Sample {
  writesPerS: number;
  p50Ms: number;
  p99Ms: number;
}

async function measure(c: Case, dir: string): Promise<Sample> {
  const { op, close } = await c.setup(dir);
  let count = 0;
  let startedAt = 0;
  let endedAt = 0;
  const bench = new Bench({
    time: TIME_MS,
    warmupTime: WARMUP_MS,
    // Sequential: at least one call; task-concurrent: 0 = no cap on the calls, the time budget ends it.
    iterations: c.concurrent ? 0 : 1,
    ...(c.concurrent ? { concurrency: 'task' as const, threshold: CONCURRENCY } : {}),
    // The measured phase ('run', after the warm-up) is timed on the wall clock around all its calls.
    setup: (_task, mode) => {
      if (mode !== 'run') return;
      count = 0;
      startedAt = performance.now();
    },
    teardown: (_task, mode) => {
      if (mode === 'run') endedAt = performance.now();
    },
  });
  bench.add(c.name, async () => {
    await op();
    count++;
  });
  await bench.run();
  const r = bench.tasks[0]!.result;
  await close();
  if (r.state !== 'completed') throw new Error(`${c.name}: ${r.state}`);
  return { writesPerS: (count * 1000) / (endedAt - startedAt), p50Ms: r.latency.p50, p99Ms: r.latency.p99 };
}

async function writes(): Promise<Record<string, unknown>[]> {
  const samples = new Map<string, Sample[]>(cases.map((c) => [c.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < cases.length; i++) {
      const c = cases[(i + round) % cases.length]!;
      const dir = mkdtempSync(join(BASE, 'ledge-bench-store-'));
      try {
        const s = await measure(c, dir);
        samples.get(c.name)!.push(s);
        process.stderr.write(`round ${round + 1}: ${c.name}: ${Math.round(s.writesPerS)} writes/s, p50 ${round2(s.p50Ms)} ms, p99 ${round2(s.p99Ms)} ms\n`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  return cases.map((c) => {
    const s = samples.get(c.name)!;
    const best = s.reduce((a, b) => (b.writesPerS > a.writesPerS ? b : a));
    return {
      name: c.name,
      writesPerSBest: Math.round(best.writesPerS),
      writesPerSMedian: Math.round(median(s.map((x) => x.writesPerS))),
      latencyP50Ms: round2(median(s.map((x) => x.p50Ms))),
      latencyP99Ms: round2(median(s.map((x) => x.p99Ms))),
      rounds: s.map((x) => Math.round(x.writesPerS)),
    };
  });
}
const round2 = (v: number) => round(v, 2);

interface OpenReply {
  openMs: number;
  objects: number;
  logBytes: number;
  before: { rss: number; rssAnon: number; heapUsed: number };
  afterOpen: { rss: number; rssAnon: number; heapUsed: number };
  afterGc: { rss: number; rssAnon: number; heapUsed: number };
  spaces?: Record<string, { used: number; committed: number }>;
}

interface Recovery {
  records: number;
  fileBytes: number;
  recordBytes: number;
  bulkLoad: { ms: number; writesPerS: number; inFlight: number };
  openMs: { median: number; runs: number[]; recordsPerS: number };
  openJitMs: { median: number; runs: number[]; recordsPerS: number };
  openSmallYoungMs: { median: number; runs: number[]; recordsPerS: number };
  /** Young generation committed after the open (V8's new space), interpreter only. */
  newSpaceMiB: number;
  emptyOpenMs: number;
  memoryMiB: Record<'afterOpen' | 'afterGc' | 'smallYoungAfterGc' | 'emptyStore' | 'deltaAfterGc', { rss: number; rssAnon: number; heapUsed: number }>;
}

async function recovery(records: number, helper: string, empty: string): Promise<Recovery> {
  const dir = mkdtempSync(join(BASE, 'ledge-bench-store-recovery-'));
  try {
    const limits = { maxObjects: records + 1000, maxLiveBytes: 1024 * MiB };
    // Build: `records` distinct objects through the store, 256 in flight.
    const store = await MetaStore.open(dir, log, limits);
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 256 }, async () => {
        while (next < records) {
          const i = next++;
          await store.put(`default/configmap/cm-${i}`, configMap(`cm-${i}`, i + 1), String(i + 1), randomUUID());
        }
      }),
    );
    const buildMs = performance.now() - t0;
    const bytes = store.footprint;
    await store.close();
    const fileBytes = statSync(join(dir, 'meta.log')).size;
    process.stderr.write(`built ${records} records (${(fileBytes / MiB).toFixed(1)} MiB) in ${Math.round(buildMs)} ms\n`);
    const open = (d: string, flags: string[]): OpenReply => {
      const r = spawnSync(process.execPath, ['--expose-gc', ...flags, helper, d, String(limits.maxObjects), String(limits.maxLiveBytes)], {
        encoding: 'utf8',
        timeout: 300_000,
        env: { PATH: env.PATH ?? '', HOME: env.HOME ?? '/root' },
      });
      if (r.status !== 0) throw new Error(`store-open failed (${r.status ?? r.signal}): ${r.stderr.slice(-1000)}`);
      return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as OpenReply;
    };
    const full: OpenReply[] = [];
    const base: OpenReply[] = [];
    const jit: OpenReply[] = [];
    const small: OpenReply[] = [];
    for (let i = 0; i < OPEN_RUNS; i++) {
      base.push(open(empty, INTERPRETED));
      const f = open(dir, INTERPRETED);
      const j = open(dir, []);
      const y = open(dir, SMALL_YOUNG);
      for (const x of [f, j, y]) if (x.objects !== records) throw new Error(`recovered ${x.objects} objects, expected ${records}`);
      full.push(f);
      jit.push(j);
      small.push(y);
      process.stderr.write(
        `${records} records, open #${i + 1}: ${Math.round(f.openMs)} ms interpreted, ${Math.round(j.openMs)} ms with JIT; RSS ${(f.afterOpen.rss / MiB).toFixed(1)} MiB (empty store: ${(base.at(-1)!.afterOpen.rss / MiB).toFixed(1)})\n`,
      );
    }
    const m = (v: OpenReply[], f: (r: OpenReply) => number) => median(v.map(f));
    const mib = (b: number) => round(b / MiB);
    const times = (v: OpenReply[]) => ({
      median: Math.round(m(v, (r) => r.openMs)),
      runs: v.map((r) => Math.round(r.openMs)),
      recordsPerS: Math.round((records * 1000) / m(v, (r) => r.openMs)),
    });
    const memOf = (v: OpenReply[], at: 'afterOpen' | 'afterGc') => ({
      rss: mib(m(v, (r) => r[at].rss)),
      rssAnon: mib(m(v, (r) => r[at].rssAnon)),
      heapUsed: mib(m(v, (r) => r[at].heapUsed)),
    });
    return {
      records,
      fileBytes,
      recordBytes: Math.round(bytes.liveBytes / records),
      bulkLoad: { ms: Math.round(buildMs), writesPerS: Math.round((records * 1000) / buildMs), inFlight: 256 },
      openMs: times(full),
      openJitMs: times(jit),
      openSmallYoungMs: times(small),
      emptyOpenMs: round(m(base, (r) => r.openMs)),
      newSpaceMiB: mib(m(full, (r) => r.spaces?.new_space?.committed ?? Number.NaN)),
      memoryMiB: {
        afterOpen: memOf(full, 'afterOpen'),
        afterGc: memOf(full, 'afterGc'),
        smallYoungAfterGc: memOf(small, 'afterGc'),
        emptyStore: memOf(base, 'afterGc'),
        deltaAfterGc: {
          rss: mib(m(full, (r) => r.afterGc.rss) - m(base, (r) => r.afterGc.rss)),
          rssAnon: mib(m(full, (r) => r.afterGc.rssAnon) - m(base, (r) => r.afterGc.rssAnon)),
          heapUsed: mib(m(full, (r) => r.afterGc.heapUsed) - m(base, (r) => r.afterGc.heapUsed)),
        },
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const w = await writes();
  const { 'store-open': helper } = await bundleHelpers(['store-open']);
  const empty = mkdtempSync(join(BASE, 'ledge-bench-store-empty-'));
  onCleanup(() => rmSync(empty, { recursive: true, force: true }));
  await (await MetaStore.open(empty, log, {})).close();
  const recs: Recovery[] = [];
  for (const n of RECORDS) recs.push(await recovery(n, helper!, empty));
  console.log(
    `\nEdge metadata store writes (~1 KB objects, ${ROUNDS} rounds × ${TIME_MS} ms, best round / median round; ${JIT ? 'JIT on' : 'interpreter only, as EdgeCore runs'})\n`,
  );
  console.log('| case | writes/s (best) | writes/s (median) | put latency p50 ms | p99 ms |');
  console.log('|---|---:|---:|---:|---:|');
  for (const r of w)
    console.log(
      `| ${r.name} | ${(r.writesPerSBest as number).toLocaleString('en-US')} | ${(r.writesPerSMedian as number).toLocaleString('en-US')} | ${r.latencyP50Ms} | ${r.latencyP99Ms} |`,
    );
  const fmt = (n: number) => n.toLocaleString('en-US');
  console.log(`\nRecovery (open = replay of the whole log), median of ${OPEN_RUNS} fresh processes; memory RSS / RssAnon / V8 heap used, MiB\n`);
  console.log(`| measure | ${recs.map((r) => `${fmt(r.records)} records`).join(' | ')} |`);
  console.log(`|---|${recs.map(() => '---:').join('|')}|`);
  const row = (label: string, f: (r: Recovery) => string) => console.log(`| ${label} | ${recs.map(f).join(' | ')} |`);
  row('log size', (r) => `${(r.fileBytes / MiB).toFixed(1)} MiB (${r.recordBytes} B/record)`);
  row('open, interpreter only (as EdgeCore runs)', (r) => `${fmt(r.openMs.median)} ms (${r.openMs.runs.map(fmt).join(', ')})`);
  row('open, with --jit', (r) => `${fmt(r.openJitMs.median)} ms (${r.openJitMs.runs.map(fmt).join(', ')})`);
  row('open, interpreter only, --max-semi-space-size=1', (r) => `${fmt(r.openSmallYoungMs.median)} ms (${r.openSmallYoungMs.runs.map(fmt).join(', ')})`);
  row('memory right after open', (r) => `${r.memoryMiB.afterOpen.rss} / ${r.memoryMiB.afterOpen.rssAnon} / ${r.memoryMiB.afterOpen.heapUsed}`);
  row('memory after full GCs', (r) => `${r.memoryMiB.afterGc.rss} / ${r.memoryMiB.afterGc.rssAnon} / ${r.memoryMiB.afterGc.heapUsed}`);
  row('Δ over the same process opening an empty store', (r) => `${r.memoryMiB.deltaAfterGc.rss} / ${r.memoryMiB.deltaAfterGc.rssAnon} / ${r.memoryMiB.deltaAfterGc.heapUsed}`);
  row('of which young generation (new space) committed', (r) => `${r.newSpaceMiB} MiB`);
  row(
    'memory after full GCs, --max-semi-space-size=1',
    (r) => `${r.memoryMiB.smallYoungAfterGc.rss} / ${r.memoryMiB.smallYoungAfterGc.rssAnon} / ${r.memoryMiB.smallYoungAfterGc.heapUsed}`,
  );
  row('bulk load through MetaStore.put (256 in flight)', (r) => `${fmt(r.bulkLoad.writesPerS)} writes/s`);
  const e = recs[0]?.memoryMiB.emptyStore;
  if (e) console.log(`\nEmpty store: open ${recs[0]!.emptyOpenMs} ms, ${e.rss} / ${e.rssAnon} / ${e.heapUsed} MiB after GC.`);
  console.log(
    `Node ${process.version}, ${os.cpus().length} cores, load average ${os.loadavg()[0]!.toFixed(2)}; stores under ${BASE}. Took ${((Date.now() - started) / 60000).toFixed(1)} min.`,
  );
  const file = writeResult('edge-store', {
    settings: { jit: JIT, timeMs: TIME_MS, warmupMs: WARMUP_MS, rounds: ROUNDS, records: RECORDS, openRuns: OPEN_RUNS, dir: BASE, concurrency: CONCURRENCY },
    writes: w,
    recovery: recs,
  });
  console.log(`wrote ${file}`);
}

main()
  .catch((err) => {
    process.stderr.write(`edge-store failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => runCleanup());
