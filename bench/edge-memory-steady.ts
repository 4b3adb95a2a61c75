/**
 * EdgeCore memory at steady state: RSS and RssAnon of idle EdgeCores over a long run, next to
 * a bare Node process started in the same run, with the slope over the run.
 *
 * Needs dist/edgecore.js (`npm run build`). Starts, side by side:
 *  - bare Node: `node -e "setInterval(()=>{},1e3)"`;
 *  - EdgeCore connected to a CloudCore (bench/lib/cloud-server.ts), default flags;
 *  - EdgeCore with no cloud (its endpoint refuses connections: it keeps retrying with backoff);
 *  - EdgeCore connected with `--jit` (V8's compilers on, as before the interpreter-only default).
 * Samples VmRSS and RssAnon of every process every BENCH_INTERVAL_S (10) seconds for
 * BENCH_MINUTES (15; a soak run uses 30). Reports, per process: the median over the steady
 * window (from BENCH_STEADY_FROM_MIN, 10, to the end), the maximum over that window, Δ over bare
 * Node (median of the window minus bare Node's), and the least-squares slope of RSS and RssAnon in
 * MiB per 10 minutes, over the samples after the first BENCH_SLOPE_FROM_MIN (2) minutes: start-up
 * is not a trend.
 *
 * Run:  node --import tsx bench/edge-memory-steady.ts            (15 minutes)
 *       BENCH_MINUTES=30 node --import tsx bench/edge-memory-steady.ts   (soak)
 * Writes bench/results/edge-memory-steady.json (edge-memory-soak.json when BENCH_MINUTES ≥ 30).
 * Reports; never fails on a missed target.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { forkTracked, killAll, root, sleep, spawnTracked, stopChild, waitMessage, type Tracked } from './lib/children.js';
import { MiB, median, readRss, slope, type RssSample } from './lib/rss.js';

const env = process.env;
const MINUTES = Number(env.BENCH_MINUTES ?? 15);
const INTERVAL_S = Number(env.BENCH_INTERVAL_S ?? 10);
const STEADY_FROM_MIN = Number(env.BENCH_STEADY_FROM_MIN ?? 10);
const SLOPE_FROM_MIN = Number(env.BENCH_SLOPE_FROM_MIN ?? 2);
const TARGET_DELTA_MIB = 10;
const EDGE = join(root, 'dist', 'edgecore.js');
const IDLE_JS = 'setInterval(()=>{},1e3)';

interface Proc {
  name: string;
  args: string[];
  node?: string;
  t?: Tracked;
  exited?: string;
  /** [seconds since sampling started, sample] */
  samples: [number, RssSample][];
}

/** A port on loopback that refuses connections (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function main(): Promise<void> {
  if (!existsSync(EDGE)) {
    console.error('dist/edgecore.js not found: run `npm run build` first.');
    process.exitCode = 1;
    return;
  }
  const watchdog = setTimeout(
    () => {
      process.stderr.write('edge-memory-steady: watchdog fired; killing children\n');
      killAll();
      process.exit(1);
    },
    (MINUTES + 5) * 60_000,
  );
  watchdog.unref();
  const cloud = forkTracked(join(root, 'bench', 'lib', 'cloud-server.ts'), [], ['--import', 'tsx']);
  const tmp = mkdtempSync(join(os.tmpdir(), 'ledge-edge-steady-'));
  const procs: Proc[] = [];
  let stopping = false;
  const started = Date.now();
  try {
    const ready = await waitMessage<{ port: number }>(cloud, (m) => m.type === 'ready', 30_000, 'CloudCore ready');
    const url = `ws://127.0.0.1:${ready.port}/v1/edge`;
    const dead = `ws://127.0.0.1:${await deadPort()}/v1/edge`;
    const edge = (name: string, node: string, cloudUrl: string, extra: string[] = []): Proc => ({
      name,
      node,
      args: [EDGE, '--cloud', cloudUrl, '--node-name', node, '--data-dir', join(tmp, node), '--log-level', 'warn', ...extra],
      samples: [],
    });
    procs.push({ name: 'bare node', args: ['-e', IDLE_JS], samples: [] });
    procs.push(edge('edgecore, connected', 'steady-1', url));
    procs.push(edge('edgecore, no cloud', 'steady-2', dead));
    procs.push(edge('edgecore, connected, --jit', 'steady-3', url, ['--jit']));
    for (const p of procs) {
      p.t = spawnTracked(process.execPath, p.args, { env: { PATH: env.PATH ?? '', HOME: env.HOME ?? '/root' }, cwd: tmp });
      p.t.child.once('exit', (code, sig) => {
        if (!stopping) p.exited = `exited (${code ?? sig}): ${p.t!.stderrTail().slice(-300)}`;
      });
    }
    // Wait for the connected ones.
    const want = procs.filter((p) => p.args.includes(url)).map((p) => p.node!);
    const deadline = Date.now() + 45_000;
    for (;;) {
      cloud.child.send({ cmd: 'nodes' });
      const r = await waitMessage<{ names: string[] }>(cloud, (m) => m.type === 'nodes', 10_000, 'node list');
      if (want.every((n) => r.names.includes(n))) break;
      if (Date.now() > deadline) throw new Error(`not connected after 45 s: ${want.filter((n) => !r.names.includes(n)).join(', ')}`);
      await sleep(500);
    }
    process.stderr.write(`connected; sampling every ${INTERVAL_S} s for ${MINUTES} min…\n`);
    const t0 = Date.now();
    while (Date.now() - t0 < MINUTES * 60_000) {
      const at = (Date.now() - t0) / 1000;
      for (const p of procs) {
        if (p.exited || !p.t?.child.pid) continue;
        try {
          p.samples.push([at, readRss(p.t.child.pid)]);
        } catch {
          // gone between the check and the read
        }
      }
      const minute = Math.floor(at / 60);
      if (at % 60 < INTERVAL_S) {
        const line = procs.map((p) => `${p.name}: ${((p.samples.at(-1)?.[1].rss ?? 0) / MiB).toFixed(1)}`).join(' | ');
        process.stderr.write(`[${minute} min] RSS MiB ${line}\n`);
      }
      await sleep(INTERVAL_S * 1000);
    }
  } finally {
    stopping = true;
    await Promise.all(procs.map((p) => (p.t ? stopChild(p.t, undefined, 3000) : undefined)));
    await stopChild(cloud, { cmd: 'stop' }, 5000);
    rmSync(tmp, { recursive: true, force: true });
    clearTimeout(watchdog);
  }

  const stats = (p: Proc) => {
    const steady = p.samples.filter(([t]) => t >= STEADY_FROM_MIN * 60);
    const trend = p.samples.filter(([t]) => t >= SLOPE_FROM_MIN * 60);
    const per10min = (f: (s: RssSample) => number) => +((slope(trend.map(([t, s]) => [t, f(s)])) * 600) / MiB).toFixed(2);
    return {
      rss: median(steady.map(([, s]) => s.rss)),
      rssAnon: median(steady.map(([, s]) => s.rssAnon)),
      maxRss: Math.max(...steady.map(([, s]) => s.rss)),
      minRss: Math.min(...steady.map(([, s]) => s.rss)),
      slopeRssMiBPer10Min: per10min((s) => s.rss),
      slopeRssAnonMiBPer10Min: per10min((s) => s.rssAnon),
    };
  };
  const bare = stats(procs[0]!);
  const rows = procs.map((p) => {
    const s = stats(p);
    return {
      name: p.name,
      exited: p.exited,
      samples: p.samples.length,
      rssMiB: +(s.rss / MiB).toFixed(1),
      rssAnonMiB: +(s.rssAnon / MiB).toFixed(1),
      maxRssMiB: +(s.maxRss / MiB).toFixed(1),
      deltaRssMiB: +((s.rss - bare.rss) / MiB).toFixed(1),
      deltaRssAnonMiB: +((s.rssAnon - bare.rssAnon) / MiB).toFixed(1),
      deltaMaxRssMiB: +((s.maxRss - bare.maxRss) / MiB).toFixed(1),
      // Bare Node's file-backed pages can jump by a few MiB mid-run (seen here); against its
      // lowest sample the delta is the conservative one.
      deltaRssVsBareLowMiB: +((s.rss - bare.minRss) / MiB).toFixed(1),
      slopeRssMiBPer10Min: s.slopeRssMiBPer10Min,
      slopeRssAnonMiBPer10Min: s.slopeRssAnonMiBPer10Min,
    };
  });
  console.log(`\nEdgeCore memory at steady state: medians from minute ${STEADY_FROM_MIN} to ${MINUTES}, slopes from minute ${SLOPE_FROM_MIN}\n`);
  console.log(
    '| process | RSS MiB | RssAnon MiB | max RSS MiB | Δ RSS MiB | Δ RSS vs bare low MiB | Δ RssAnon MiB | Δ max RSS MiB | RSS slope MiB/10 min | RssAnon slope MiB/10 min |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.name}${r.exited ? ' (exited)' : ''} | ${r.rssMiB} | ${r.rssAnonMiB} | ${r.maxRssMiB} | ${r.deltaRssMiB} | ${r.deltaRssVsBareLowMiB} | ${r.deltaRssAnonMiB} | ${r.deltaMaxRssMiB} | ${r.slopeRssMiBPer10Min} | ${r.slopeRssAnonMiBPer10Min} |`,
    );
  }
  const def = rows[1]!;
  const worst = Math.max(def.deltaRssMiB, def.deltaRssVsBareLowMiB);
  const verdict = `connected EdgeCore (default flags) at steady state: Δ ${def.deltaRssMiB} MiB RSS over bare Node (${def.deltaRssVsBareLowMiB} over its lowest sample; target ≤ ${TARGET_DELTA_MIB} MB: ${worst * 1.048576 <= TARGET_DELTA_MIB ? 'met' : 'missed'}), slope ${def.slopeRssMiBPer10Min} MiB/10 min`;
  console.log(`\n${verdict}`);
  for (const r of rows.filter((x) => x.exited)) console.log(`  ${r.name}: ${r.exited}`);
  console.log(`Node ${process.version}, ${os.cpus().length} cores, load avg ${os.loadavg()[0]!.toFixed(2)}. Took ${((Date.now() - started) / 60000).toFixed(1)} min.`);
  const out = join(root, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  const file = MINUTES >= 30 ? 'edge-memory-soak.json' : 'edge-memory-steady.json';
  writeFileSync(
    join(out, file),
    `${JSON.stringify(
      {
        bench: 'edge-memory-steady',
        date: new Date().toISOString(),
        machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAvg1: os.loadavg()[0] },
        settings: { minutes: MINUTES, intervalS: INTERVAL_S, steadyFromMin: STEADY_FROM_MIN, slopeFromMin: SLOPE_FROM_MIN },
        verdict,
        rows,
        series: procs.map((p) => ({
          name: p.name,
          t: p.samples.map(([t]) => Math.round(t)),
          rssKiB: p.samples.map(([, s]) => Math.round(s.rss / 1024)),
          rssAnonKiB: p.samples.map(([, s]) => Math.round(s.rssAnon / 1024)),
        })),
      },
      null,
      2,
    )}\n`,
  );
  console.log(`wrote bench/results/${file}`);
}

main()
  .catch((err) => {
    process.stderr.write(`edge-memory-steady failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => killAll());
