/**
 * CloudHub: the cost of mutual TLS (issue 13). Side by side in one run, on this machine:
 *
 *  1. Memory per idle session: a fresh bare CloudHub child (bench/lib/mtls-hub.ts, bundled, run
 *     with --expose-gc) with mTLS (`tls: { cert, key, ca }` from a node CA made here,
 *     bench/lib/node-pki.ts) or plain ws:// (`insecurePlainWebSocket: true`); VmRSS, RssAnon and
 *     V8 heapUsed after GC before any session and with N idle sessions (medians of 5 samples);
 *     per session = (idle − before) / N.
 *  2. Handshake rate: the N sessions opened by one generator child (bench/lib/mtls-edge.ts), each
 *     its own node (over mTLS with its own client certificate, a full handshake each), at most
 *     BENCH_CONCURRENCY upgrades in flight: sessions/s from the first upgrade to the last open,
 *     per-session upgrade latency, and CPU ms per session of CloudHub and of the generator
 *     (/proc/PID/stat; CloudHub's handshakes run on its one JS thread, so 1000 / its CPU ms per
 *     session is its ceiling in sessions/s on one core).
 *  Controls (BENCH_CONTROLS=0 skips them): the same N connections held by a bare `node:tls`
 *  server (no HTTP, no WebSocket, no CloudHub) with the same certificates, without and with
 *  client certificates: what Node's TLS itself costs per connection.
 *  Rounds alternate the order (plain first, then mTLS first, …) so drift of the shared machine
 *  does not favour one transport.
 *  3. Edge bundle bytes issue 13 adds (bench/lib/edge-bundle.ts: the edge bundle built as
 *     build/build.mjs builds it, in throwaway copies of the tree: the commit before issue 13, the
 *     working tree without `edgecore join` and the CSR encoder, without `edgecore join` only, and
 *     as it is).
 *
 * Run:  node --import tsx bench/cloudhub-mtls.ts
 * Env:  BENCH_SESSIONS=2000  BENCH_ROUNDS=2  BENCH_CONCURRENCY=50  BENCH_BUNDLE=1 (0 skips step 3)  BENCH_CONTROLS=1
 *       BENCH_BUNDLE_BASE=8ec7b78 (the commit before issue 13)
 * Writes bench/results/cloudhub-mtls.json. Reports; never fails on a number.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { bundleHelpers, forkTracked, killAll, openFileLimit, root, sleep, stopChild, waitMessage, type Tracked } from './lib/children.js';
import { measureEdgeBundles, type EdgeBundles } from './lib/edge-bundle.js';
import type { ConnectedReply, EdgeSession } from './lib/mtls-edge.js';
import type { HubCommand, HubMemReply } from './lib/mtls-hub.js';
import { createBenchPki } from './lib/node-pki.js';
import { fmtMiB, percentile, readCpuMs, sampleRss, type RssSample } from './lib/rss.js';

const env = process.env;
const SESSIONS = Number(env.BENCH_SESSIONS ?? 2000);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 2);
const CONCURRENCY = Number(env.BENCH_CONCURRENCY ?? 50);
const BUNDLE = env.BENCH_BUNDLE !== '0';
/** The bare node:tls controls (no CloudHub) beside CloudHub's runs. */
const CONTROLS = env.BENCH_CONTROLS !== '0';
const BUNDLE_BASE = env.BENCH_BUNDLE_BASE ?? '8ec7b78';
const CONNECT_TIMEOUT_MS = 300_000;
const WATCHDOG_MS = Number(env.BENCH_WATCHDOG_MS ?? 20 * 60_000);

/**
 * What a run measures: CloudHub over plain ws:// or mTLS, or a control without CloudHub: a bare
 * `node:tls` server holding the connections, without (`bare-tls`) or with (`bare-mtls`) client
 * certificates.
 */
type Kind = 'plain' | 'mtls' | 'bare-tls' | 'bare-mtls';

interface MemPoint extends RssSample {
  heapUsed: number;
  connected: number;
}

interface Run {
  transport: Kind;
  round: number;
  sessions: number;
  connected: number;
  failed: number;
  lastError: string;
  base: MemPoint;
  idle: MemPoint;
  perSession: { rssKiB: number; rssAnonKiB: number; heapKiB: number };
  connectMs: number;
  sessionsPerSecond: number;
  upgradeMs: { p50: number; p90: number; p99: number; max: number };
  hubCpuMsPerSession: number;
  generatorCpuMsPerSession: number;
  /** 1000 / hubCpuMsPerSession: sessions/s CloudHub's one thread could take with the generator elsewhere. */
  hubCeilingPerSecond: number;
  loadAvg1: number;
}

const watchdog = setTimeout(() => {
  process.stderr.write(`cloudhub-mtls: watchdog fired after ${WATCHDOG_MS} ms; killing children\n`);
  killAll();
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

async function memPoint(hub: Tracked): Promise<MemPoint> {
  hub.child.send({ cmd: 'mem' });
  const m = await waitMessage<HubMemReply>(hub, (x) => x.type === 'mem', 30_000, 'mem reply');
  await sleep(300);
  const r = await sampleRss(hub.child.pid!, 5, 200);
  return { rss: r.rss, rssAnon: r.rssAnon, rssFile: r.rssFile, heapUsed: m.heapUsed, connected: m.connected };
}

const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;

async function runOne(transport: Kind, round: number, helpers: Record<string, string>, pki: Awaited<ReturnType<typeof createBenchPki>>, sessions: EdgeSession[]): Promise<Run> {
  const hub = forkTracked(helpers['mtls-hub']!, [], ['--expose-gc']);
  let gen: Tracked | undefined;
  try {
    await waitMessage(hub, (m) => m.type === 'spawned', 20_000, 'CloudHub child');
    const tls = { cert: pki.server.cert, key: pki.server.key, ca: pki.ca };
    const start: HubCommand =
      transport === 'plain'
        ? { cmd: 'start', transport }
        : transport === 'mtls'
          ? { cmd: 'start', transport, tls }
          : { cmd: 'start', transport: 'bare-tls', requestCert: transport === 'bare-mtls', tls };
    hub.child.send(start);
    const ready = await waitMessage<{ url: string; transport: string }>(hub, (m) => m.type === 'ready', 20_000, 'server ready');
    if (ready.transport !== start.transport) throw new Error(`the server runs ${ready.transport}, asked for ${start.transport}`);
    await sleep(1000);
    const base = await memPoint(hub);

    gen = forkTracked(helpers['mtls-edge']!, [], []);
    await waitMessage(gen, (m) => m.type === 'ready', 20_000, 'generator ready');
    const loadAvg1 = os.loadavg()[0]!;
    const hubCpu0 = readCpuMs(hub.child.pid!);
    const genCpu0 = readCpuMs(gen.child.pid!);
    gen.child.send({
      cmd: 'connect',
      url: ready.url,
      sessions: transport === 'mtls' || transport === 'bare-mtls' ? sessions : sessions.map((s) => ({ name: s.name })),
      ...(transport === 'plain' ? {} : { ca: pki.ca }),
      concurrency: CONCURRENCY,
      handshakeTimeoutMs: 60_000,
    });
    const c = await waitMessage<ConnectedReply>(gen, (m) => m.type === 'connected', CONNECT_TIMEOUT_MS, `${sessions.length} ${transport} sessions`);
    const hubCpu = readCpuMs(hub.child.pid!) - hubCpu0;
    const genCpu = readCpuMs(gen.child.pid!) - genCpu0;
    if (c.failed) process.stderr.write(`  ${c.failed} ${transport} sessions failed (last error: ${c.lastError})\n`);

    // Let the upgrade garbage settle before measuring idle.
    await sleep(3000);
    const idle = await memPoint(hub);
    const n = Math.max(1, idle.connected);
    const per = (a: number, b: number) => r2((a - b) / n / 1024);
    const lat = c.latencies;
    const perCpu = (ms: number) => r2(ms / Math.max(1, c.ok));
    return {
      transport,
      round,
      sessions: sessions.length,
      connected: idle.connected,
      failed: c.failed,
      lastError: c.lastError,
      base,
      idle,
      perSession: { rssKiB: per(idle.rss, base.rss), rssAnonKiB: per(idle.rssAnon, base.rssAnon), heapKiB: per(idle.heapUsed, base.heapUsed) },
      connectMs: Math.round(c.ms),
      sessionsPerSecond: Math.round((c.ok / c.ms) * 1000),
      upgradeMs: { p50: r1(percentile(lat, 50)), p90: r1(percentile(lat, 90)), p99: r1(percentile(lat, 99)), max: r1(lat[lat.length - 1] ?? Number.NaN) },
      hubCpuMsPerSession: perCpu(hubCpu),
      generatorCpuMsPerSession: perCpu(genCpu),
      hubCeilingPerSecond: hubCpu > 0 ? Math.round((1000 * c.ok) / hubCpu) : Number.NaN,
      loadAvg1: r2(loadAvg1),
    };
  } finally {
    if (gen) await stopChild(gen, { cmd: 'close' });
    await stopChild(hub, { cmd: 'stop' }, 5000);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function summary(runs: Run[], t: Kind) {
  const rs = runs.filter((r) => r.transport === t);
  const m = (f: (r: Run) => number) => r2(median(rs.map(f)));
  return {
    transport: t,
    runs: rs.length,
    rssKiB: m((r) => r.perSession.rssKiB),
    rssAnonKiB: m((r) => r.perSession.rssAnonKiB),
    heapKiB: m((r) => r.perSession.heapKiB),
    sessionsPerSecond: m((r) => r.sessionsPerSecond),
    upgradeP50Ms: m((r) => r.upgradeMs.p50),
    upgradeP99Ms: m((r) => r.upgradeMs.p99),
    hubCpuMsPerSession: m((r) => r.hubCpuMsPerSession),
    generatorCpuMsPerSession: m((r) => r.generatorCpuMsPerSession),
    hubCeilingPerSecond: m((r) => r.hubCeilingPerSecond),
  };
}

async function main(): Promise<void> {
  const started = Date.now();
  const limit = openFileLimit();
  if (limit < 2 * SESSIONS + 200) process.stderr.write(`warning: open-file limit is ${limit}; the run needs > ${2 * SESSIONS} descriptors (ulimit -n).\n`);
  const helpers = await bundleHelpers(['mtls-hub', 'mtls-edge']);
  process.stderr.write(`making a node CA and ${SESSIONS} client certificates…\n`);
  const t0 = Date.now();
  const pki = await createBenchPki();
  const names = Array.from({ length: SESSIONS }, (_, i) => `bench-node-${String(i).padStart(5, '0')}`);
  const certs = await pki.nodes(names);
  const sessions: EdgeSession[] = names.map((name, i) => ({ name, cert: certs[i]!.cert, key: certs[i]!.key }));
  const pkiMs = Date.now() - t0;

  const runs: Run[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const main: Kind[] = round % 2 ? ['plain', 'mtls'] : ['mtls', 'plain'];
    const order: Kind[] = CONTROLS ? [...main, ...(round % 2 ? (['bare-tls', 'bare-mtls'] as const) : (['bare-mtls', 'bare-tls'] as const))] : main;
    for (const t of order) {
      process.stderr.write(`round ${round}: ${t}, ${SESSIONS} sessions…\n`);
      runs.push(await runOne(t, round, helpers, pki, sessions));
    }
  }

  let bundles: EdgeBundles | undefined;
  let bundleError: string | undefined;
  if (BUNDLE) {
    process.stderr.write(`building the edge bundle four ways (base ${BUNDLE_BASE}, link, no join command, shipped)…\n`);
    try {
      bundles = await measureEdgeBundles(root, BUNDLE_BASE);
    } catch (err) {
      bundleError = (err as Error).message;
      process.stderr.write(`  bundle step failed: ${bundleError}\n`);
    }
  }

  console.log(
    `\nCloudHub, ${SESSIONS} idle sessions per run, plain ws:// and mTLS side by side (one bare CloudHub process each; RSS after GC; per session = (idle − before) / N)\n`,
  );
  console.log(
    '| round | transport | connected | RSS before MiB | RSS idle MiB | RSS/session KiB | RssAnon/session KiB | heap/session KiB | sessions/s | upgrade p50 ms | upgrade p99 ms | server CPU ms/session | generator CPU ms/session | load avg |',
  );
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of runs) {
    console.log(
      `| ${r.round} | ${r.transport} | ${r.connected}/${r.sessions} | ${fmtMiB(r.base.rss)} | ${fmtMiB(r.idle.rss)} | ${r.perSession.rssKiB.toFixed(1)} | ${r.perSession.rssAnonKiB.toFixed(1)} | ${r.perSession.heapKiB.toFixed(1)} | ${r.sessionsPerSecond} | ${r.upgradeMs.p50} | ${r.upgradeMs.p99} | ${r.hubCpuMsPerSession} | ${r.generatorCpuMsPerSession} | ${r.loadAvg1} |`,
    );
  }
  const plain = summary(runs, 'plain');
  const mtls = summary(runs, 'mtls');
  console.log('\nMedians over the rounds:\n');
  console.log('| transport | RSS/session KiB | RssAnon/session KiB | heap/session KiB | sessions/s | server CPU ms/session | server ceiling sessions/s (1 core) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  const controls = CONTROLS ? [summary(runs, 'bare-tls'), summary(runs, 'bare-mtls')] : [];
  for (const s of [plain, mtls, ...controls]) {
    console.log(
      `| ${s.transport} | ${s.rssKiB.toFixed(1)} | ${s.rssAnonKiB.toFixed(1)} | ${s.heapKiB.toFixed(1)} | ${s.sessionsPerSecond} | ${s.hubCpuMsPerSession} | ${s.hubCeilingPerSecond} |`,
    );
  }
  const cost = {
    rssKiBPerSession: r2(mtls.rssKiB - plain.rssKiB),
    rssAnonKiBPerSession: r2(mtls.rssAnonKiB - plain.rssAnonKiB),
    handshakeRateRatio: r2(plain.sessionsPerSecond / mtls.sessionsPerSecond),
    hubCpuRatio: r2(mtls.hubCpuMsPerSession / plain.hubCpuMsPerSession),
  };
  console.log(
    `\nmTLS costs ${cost.rssKiBPerSession} KiB RSS (${cost.rssAnonKiBPerSession} KiB RssAnon) more per idle session; it connects ${cost.handshakeRateRatio}× slower and costs CloudHub ${cost.hubCpuRatio}× the CPU per new session.`,
  );
  if (bundles) {
    const order = [bundles.base, bundles.link, bundles.withoutJoin, bundles.shipped];
    console.log('\nEdge bundle (dist/edgecore.js, minified, built as build/build.mjs builds it, in a copy of the tree):\n');
    console.log('| build | bytes | gzip bytes | vs the row above | vs base |');
    console.log('|---|---:|---:|---:|---:|');
    order.forEach((b, i) => {
      const step = i === 0 ? '' : `+${(b.bytes - order[i - 1]!.bytes).toLocaleString('en-US')}`;
      const total = i === 0 ? '' : `+${(b.bytes - order[0]!.bytes).toLocaleString('en-US')}`;
      console.log(`| ${b.label}${b.commit ? ` (${b.commit})` : ''} | ${b.bytes.toLocaleString('en-US')} | ${b.gzipBytes.toLocaleString('en-US')} | ${step} | ${total} |`);
    });
    for (let i = 1; i < order.length; i++) {
      const a = order[i - 1]!;
      const b = order[i]!;
      const keys = [...new Set([...Object.keys(a.parts), ...Object.keys(b.parts)])];
      const diff = keys
        .map((k) => [k, Math.round(((b.parts[k] ?? 0) - (a.parts[k] ?? 0)) * 10) / 10] as const)
        .filter(([, d]) => Math.abs(d) >= 0.2)
        .sort((x, y) => y[1] - x[1]);
      console.log(`\n${b.label} vs ${a.label}, KB by part: ${diff.map(([k, d]) => `${k} ${d > 0 ? '+' : ''}${d.toFixed(1)}`).join(', ') || 'none'}`);
    }
  } else if (bundleError) console.log(`\nEdge bundle step FAILED: ${bundleError}`);
  console.log(
    `\n${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}, open-file limit ${limit}; CloudHub and the generator share the cores. PKI made in ${(pkiMs / 1000).toFixed(1)} s. Took ${((Date.now() - started) / 1000).toFixed(0)} s.`,
  );

  const out = join(root, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, 'cloudhub-mtls.json'),
    `${JSON.stringify(
      {
        bench: 'cloudhub-mtls',
        date: new Date().toISOString(),
        machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, openFileLimit: limit },
        settings: { sessions: SESSIONS, rounds: ROUNDS, concurrency: CONCURRENCY, bundle: BUNDLE, bundleBase: BUNDLE_BASE, controls: CONTROLS },
        summary: { plain, mtls, ...(CONTROLS ? { bareTls: controls[0], bareMtls: controls[1] } : {}), cost },
        runs,
        ...(bundles ? { bundles } : {}),
        ...(bundleError ? { bundleError } : {}),
      },
      null,
      2,
    )}\n`,
  );
  console.log('wrote bench/results/cloudhub-mtls.json');
}

main()
  .catch((err) => {
    process.stderr.write(`cloudhub-mtls failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => {
    killAll();
    clearTimeout(watchdog);
  });
