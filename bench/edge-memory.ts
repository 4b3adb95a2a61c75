/**
 * EdgeCore memory benchmark: how much RSS an idle, connected EdgeCore costs over a bare
 * Node process, with default flags and with V8/libuv memory flags, and on Bun when
 * Bun can be had from npm.
 *
 * Builds nothing: needs dist/edgecore.js (`npm run build`). Starts, side by side in
 * one run, one CloudCore (bench/lib/cloud-server.ts) and these idle processes:
 *  - bare Node (`setInterval(() => {}, 1e3)`), with default flags and with the
 *    combined memory flags;
 *  - bare Node that only loads the built-ins the edge bundle pulls in (attribution);
 *  - EdgeCore connected to the CloudCore, default flags, then one process per flag
 *    set (`--max-semi-space-size=1`, `--max-old-space-size=32`, `--lite-mode`,
 *    `--jitless`, `--optimize-for-size`, `--v8-pool-size=1`, UV_THREADPOOL_SIZE=1,
 *    combined);
 *  - bare Bun and EdgeCore on Bun (`npx --yes bun@latest`; skipped with the reason
 *    when it cannot be had, or with BENCH_BUN=0).
 * Once every EdgeCore is connected it waits BENCH_SETTLE_MS (10 s) and samples
 * VmRSS / RssAnon / RssFile of every process BENCH_SAMPLES (10) times, 1 s apart, and
 * reports medians and deltas over bare Node (bare Bun for Bun rows). Also reports
 * the size of dist/edgecore.js (raw and gzip) and, from an in-memory esbuild
 * metafile (nothing written), the largest inputs of the bundle.
 *
 * Run:  node --import tsx bench/edge-memory.ts
 * Writes bench/results/edge-memory.json. Reports; never fails on a missed target.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { forkTracked, killAll, root, sleep, spawnTracked, stopChild, waitMessage, type Tracked } from './lib/children.js';
import { MiB, fmtMiB, median, readRss, type RssSample } from './lib/rss.js';

const env = process.env;
const SETTLE_MS = Number(env.BENCH_SETTLE_MS ?? 10_000);
const SAMPLES = Number(env.BENCH_SAMPLES ?? 10);
const CONNECT_TIMEOUT_MS = 45_000;
const WATCHDOG_MS = 5 * 60_000;
const TARGET_DELTA_MIB = 10;
const EDGE = join(root, 'dist', 'edgecore.js');
const IDLE_JS = 'setInterval(() => {}, 1e3)';

/** Memory flags tried one by one, then together. */
const FLAG_SETS: { name: string; flags: string[]; env?: Record<string, string> }[] = [
  { name: 'semi-space 1 MB', flags: ['--max-semi-space-size=1'] },
  { name: 'old-space 32 MB', flags: ['--max-old-space-size=32'] },
  { name: 'lite mode', flags: ['--lite-mode'] },
  { name: 'jitless', flags: ['--jitless'] },
  { name: 'optimize-for-size', flags: ['--optimize-for-size'] },
  { name: 'v8-pool-size 1', flags: ['--v8-pool-size=1'] },
  { name: 'UV_THREADPOOL_SIZE=1', flags: [], env: { UV_THREADPOOL_SIZE: '1' } },
];
const COMBINED = { name: 'combined', flags: ['--max-semi-space-size=1', '--max-old-space-size=32', '--lite-mode', '--v8-pool-size=1'], env: { UV_THREADPOOL_SIZE: '1' } };

/** Built-ins dist/edgecore.js loads at start (ws pulls in http, https, tls, net, crypto). */
const PROBES: { name: string; code: string }[] = [
  { name: 'node + http', code: `require('node:http');${IDLE_JS}` },
  { name: 'node + https/tls', code: `require('node:https');require('node:tls');${IDLE_JS}` },
  { name: 'node + crypto.randomUUID()', code: `require('node:crypto').randomUUID();${IDLE_JS}` },
  {
    name: 'node + all edge built-ins',
    code: `for (const m of ['http','https','tls','net','crypto','zlib','stream','events','fs','fs/promises','os','url','diagnostics_channel','module','path','buffer']) require('node:'+m);require('node:crypto').randomUUID();${IDLE_JS}`,
  },
];

interface Proc {
  name: string;
  runtime: 'node' | 'bun';
  kind: 'bare' | 'probe' | 'edge';
  flags: string[];
  env?: Record<string, string>;
  node?: string;
  t?: Tracked;
  connected?: boolean;
  exited?: string;
  samples: RssSample[];
}

const watchdog = setTimeout(() => {
  process.stderr.write(`edge-memory: watchdog fired after ${WATCHDOG_MS} ms; killing children\n`);
  killAll();
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, cwd: os.tmpdir(), maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ ok: !err, out: (stdout + stderr).trim() });
    });
  });
}

/** Path of a Bun binary from npm (`npx --yes bun@latest`), or why there is none. */
async function findBun(): Promise<{ path?: string; version?: string; reason?: string }> {
  if (env.BENCH_BUN === '0') return { reason: 'skipped (BENCH_BUN=0)' };
  const r = await run('npx', ['--yes', 'bun@latest', '-e', 'console.log(process.execPath + " " + Bun.version)'], 180_000);
  const line = r.out.split('\n').pop() ?? '';
  const [path, version] = line.split(' ');
  if (!r.ok || !path || !existsSync(path)) return { reason: `npx --yes bun@latest failed: ${r.out.slice(-300)}` };
  return { path, version };
}

async function bundleComposition(): Promise<{ inputs: { path: string; bytes: number }[]; packages: { name: string; bytes: number }[] }> {
  const result = await build({
    entryPoints: [join(root, 'edge', 'edgecore.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minify: true,
    write: false,
    metafile: true,
    outfile: join(os.tmpdir(), 'edgecore-analyze.js'),
    external: ['bufferutil', 'utf-8-validate', 'cbor-extract'],
    logLevel: 'silent',
    define: { LEDGE_VERSION: '"analyze"' },
  });
  const out = Object.values(result.metafile.outputs)[0]!;
  const inputs = Object.entries(out.inputs).map(([path, v]) => ({ path, bytes: v.bytesInOutput }));
  inputs.sort((a, b) => b.bytes - a.bytes);
  const pkgs = new Map<string, number>();
  for (const i of inputs) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(i.path);
    const name = m ? m[1]! : i.path.split('/')[0] === 'shared' || i.path.split('/')[0] === 'edge' ? `(ledge) ${i.path.split('/').slice(0, 2).join('/')}` : i.path;
    pkgs.set(name, (pkgs.get(name) ?? 0) + i.bytes);
  }
  return { inputs: inputs.slice(0, 15), packages: [...pkgs].map(([name, bytes]) => ({ name, bytes })).sort((a, b) => b.bytes - a.bytes) };
}

async function main(): Promise<void> {
  if (!existsSync(EDGE)) {
    console.error('dist/edgecore.js not found: run `npm run build` first.');
    process.exitCode = 1;
    return;
  }
  const started = Date.now();
  const edgeBytes = statSync(EDGE).size;
  const edgeGzip = gzipSync(readFileSync(EDGE), { level: 9 }).length;
  const [bun, composition] = await Promise.all([findBun(), bundleComposition().catch((err) => ({ error: (err as Error).message }))]);

  const cloud = forkTracked(join(root, 'bench', 'lib', 'cloud-server.ts'), [], ['--import', 'tsx']);
  const tmp = mkdtempSync(join(os.tmpdir(), 'ledge-edge-mem-'));
  const procs: Proc[] = [];
  let stopping = false;
  try {
    const ready = await waitMessage<{ port: number }>(cloud, (m) => m.type === 'ready', 30_000, 'CloudCore ready');
    const url = `ws://127.0.0.1:${ready.port}/v1/edge`;

    procs.push({ name: 'bare node', runtime: 'node', kind: 'bare', flags: [], samples: [] });
    procs.push({ name: 'bare node, combined flags', runtime: 'node', kind: 'bare', flags: COMBINED.flags, env: COMBINED.env, samples: [] });
    for (const p of PROBES) procs.push({ name: p.name, runtime: 'node', kind: 'probe', flags: ['-e', p.code], samples: [] });
    procs.push({ name: 'edgecore, default', runtime: 'node', kind: 'edge', flags: [], samples: [] });
    for (const f of [...FLAG_SETS, COMBINED])
      procs.push({ name: `edgecore, ${f.name}`, runtime: 'node', kind: 'edge', flags: f.flags, ...(f.env ? { env: f.env } : {}), samples: [] });
    if (bun.path) {
      procs.push({ name: 'bare bun', runtime: 'bun', kind: 'bare', flags: [], samples: [] });
      procs.push({ name: 'edgecore on bun', runtime: 'bun', kind: 'edge', flags: [], samples: [] });
    }

    procs.forEach((p, i) => {
      const bin = p.runtime === 'bun' ? bun.path! : process.execPath;
      let args: string[];
      if (p.kind === 'probe') args = p.flags;
      else if (p.kind === 'bare') args = [...p.flags, '-e', IDLE_JS];
      else {
        p.node = `mem-edge-${i}`;
        args = [...p.flags, EDGE, '--cloud', url, '--node-name', p.node, '--data-dir', join(tmp, p.node), '--log-level', 'warn'];
      }
      // A clean environment (no NODE_OPTIONS from the bench's own tsx) plus the variant's.
      const childEnv: NodeJS.ProcessEnv = { PATH: env.PATH ?? '', HOME: env.HOME ?? '/root', ...(p.env ?? {}) };
      p.t = spawnTracked(bin, args, { env: childEnv, cwd: tmp });
      p.t.child.once('exit', (code, sig) => {
        if (!stopping) p.exited = `exited (${code ?? sig}): ${p.t!.stderrTail().slice(-300)}`;
      });
    });

    // Wait until every EdgeCore is connected (or the timeout).
    const edges = procs.filter((p) => p.kind === 'edge');
    const deadline = Date.now() + CONNECT_TIMEOUT_MS;
    while (Date.now() < deadline) {
      cloud.child.send({ cmd: 'nodes' });
      const r = await waitMessage<{ names: string[] }>(cloud, (m) => m.type === 'nodes', 10_000, 'node list');
      for (const e of edges) e.connected = r.names.includes(e.node!);
      if (edges.every((e) => e.connected || e.exited)) break;
      await sleep(500);
    }
    process.stderr.write(`${edges.filter((e) => e.connected).length}/${edges.length} EdgeCores connected; settling ${SETTLE_MS / 1000} s, then ${SAMPLES} samples…\n`);
    await sleep(SETTLE_MS);
    for (let i = 0; i < SAMPLES; i++) {
      for (const p of procs) {
        if (p.exited || !p.t?.child.pid) continue;
        try {
          p.samples.push(readRss(p.t.child.pid));
        } catch {
          // gone between the check and the read
        }
      }
      await sleep(1000);
    }
  } finally {
    stopping = true;
    await Promise.all(procs.map((p) => (p.t ? stopChild(p.t, undefined, 3000) : undefined)));
    await stopChild(cloud, { cmd: 'stop' }, 5000);
    rmSync(tmp, { recursive: true, force: true });
  }

  const med = (p: Proc) => ({ rss: median(p.samples.map((s) => s.rss)), rssAnon: median(p.samples.map((s) => s.rssAnon)), rssFile: median(p.samples.map((s) => s.rssFile)) });
  const bareNode = med(procs.find((p) => p.name === 'bare node')!);
  const bareBunProc = procs.find((p) => p.name === 'bare bun');
  const bareBun = bareBunProc ? med(bareBunProc) : undefined;
  const rows = procs.map((p) => {
    const m = med(p);
    const ref = p.runtime === 'bun' ? bareBun! : bareNode;
    return {
      name: p.name,
      runtime: p.runtime,
      kind: p.kind,
      flags: [...(p.kind === 'probe' ? [] : p.flags), ...Object.entries(p.env ?? {}).map(([k, v]) => `${k}=${v}`)].join(' '),
      connected: p.kind === 'edge' ? !!p.connected : undefined,
      exited: p.exited,
      samples: p.samples.length,
      rssMiB: +fmtMiB(m.rss),
      rssAnonMiB: +fmtMiB(m.rssAnon),
      rssFileMiB: +fmtMiB(m.rssFile),
      deltaRssMiB: +((m.rss - ref.rss) / MiB).toFixed(1),
      deltaRssAnonMiB: +((m.rssAnon - ref.rssAnon) / MiB).toFixed(1),
      deltaVsBareNodeMiB: +((m.rss - bareNode.rss) / MiB).toFixed(1),
    };
  });

  console.log('\nEdgeCore memory, idle and connected (medians of samples; Δ = over bare node, over bare bun for Bun rows)\n');
  console.log('| process | flags / env | connected | RSS MiB | RssAnon MiB | RssFile MiB | Δ RSS MiB | Δ RssAnon MiB |');
  console.log('|---|---|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.flags || '—'} | ${r.connected === undefined ? '—' : r.connected ? 'yes' : r.exited ? 'exited' : 'no'} | ${r.rssMiB} | ${r.rssAnonMiB} | ${r.rssFileMiB} | ${r.deltaRssMiB} | ${r.deltaRssAnonMiB} |`,
    );
  }
  console.log(`\ndist/edgecore.js: ${(edgeBytes / 1024).toFixed(1)} KiB minified, ${(edgeGzip / 1024).toFixed(1)} KiB gzip -9`);
  if ('packages' in composition) {
    console.log('\nBundle composition (bytes in the minified output, by package):\n');
    console.log('| package / folder | KiB |');
    console.log('|---|---:|');
    for (const p of composition.packages.slice(0, 12)) console.log(`| ${p.name} | ${(p.bytes / 1024).toFixed(1)} |`);
  }
  if (!bun.path) console.log(`\nBun: ${bun.reason}`);
  else console.log(`\nBun ${bun.version} from npm (${bun.path})`);

  const def = rows.find((r) => r.name === 'edgecore, default')!;
  const verdict = `default EdgeCore is ${def.deltaRssMiB} MiB RSS above bare Node (target ≤ ${TARGET_DELTA_MIB} MB): ${def.connected && def.deltaRssMiB <= TARGET_DELTA_MIB ? 'MET' : 'MISSED'}`;
  console.log(`\nVerdict: ${verdict}`);
  const exitedRows = rows.filter((r) => r.exited);
  for (const r of exitedRows) console.log(`  ${r.name}: ${r.exited}`);
  console.log(`\nNode ${process.version}, ${os.cpus().length} cores, load avg ${os.loadavg()[0]!.toFixed(2)}. Took ${((Date.now() - started) / 1000).toFixed(0)} s.`);

  const out = join(root, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, 'edge-memory.json'),
    `${JSON.stringify(
      {
        bench: 'edge-memory',
        date: new Date().toISOString(),
        machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAvg1: os.loadavg()[0] },
        settings: { settleMs: SETTLE_MS, samples: SAMPLES },
        target: { deltaRssMiBOverBareNode: TARGET_DELTA_MIB },
        verdict,
        bundle: { file: 'dist/edgecore.js', bytes: edgeBytes, gzipBytes: edgeGzip, composition },
        bun: bun.path ? { version: bun.version } : { skipped: bun.reason },
        rows,
      },
      null,
      2,
    )}\n`,
  );
  console.log('wrote bench/results/edge-memory.json');
}

main()
  .catch((err) => {
    process.stderr.write(`edge-memory failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => {
    killAll();
    clearTimeout(watchdog);
  });
