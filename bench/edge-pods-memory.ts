/**
 * EdgeCore's own memory at steady state with every module on (issue 10): RSS and RssAnon of the
 * EdgeCore process ONLY (not its pods' processes), idle and with running pods, next to a bare Node
 * started in the same run, with the slope over the run.
 *
 * Needs dist/ (`npm run build`; the bundles are copied at start). Starts a real installation
 * (bench/lib/pods-cluster.ts): the local control plane (`ledge.js apiserver`) and one CloudCore
 * (`ledge.js cloud --kubeconfig`), neither of them measured, and side by side:
 *  - bare Node: `node -e "setInterval(()=>{},1e3)"`;
 *  - EdgeCore idle, connected: the default configuration (MetaServer on, Edged with the process
 *    runtime and the container runtime on its default socket, which does not exist here: it is
 *    retried with backoff) — only `--metaserver-port 0` (several EdgeCores share the machine);
 *  - EdgeCore connected running BENCH_PODS (10) pods on the process runtime, each
 *    `sh -c 'trap … TERM; while true; do sleep 10 & wait $!; done'`, applied through the API
 *    (client-node create → CloudCore → the link → EdgeCore), same flags;
 *  - with Podman provisioned (test/helpers/podman.ts; BENCH_PODMAN=0 to skip): EdgeCore idle,
 *    connected, its container runtime on a private Podman service (`--container-runtime-endpoint`),
 *    i.e. that runtime's event stream open.
 * All EdgeCores run with `--log-level warn` (as bench/edge-memory-steady.ts), a clean environment
 * and default V8 flags (EdgeCore turns its JIT off itself).
 *
 * Samples VmRSS and RssAnon from /proc/<pid>/status every BENCH_INTERVAL_S (10) s for
 * BENCH_MINUTES (15) from the moment every EdgeCore is connected and the pods run. Reports per
 * process: median over the steady window (from BENCH_STEADY_FROM_MIN, 10, to the end), max there,
 * Δ over bare Node's median (and over its lowest sample), and the least-squares slope in MiB per
 * 10 min from BENCH_SLOPE_FROM_MIN (2). At the end it checks the pods are still Running with no
 * restart. Targets (issue 10): idle ≤ bare Node + 12 MB RSS and ≤ 12 MB RssAnon in total; with
 * 10 pods ≤ bare Node + 20 MB RSS.
 *
 * BENCH_HEAP=1 adds a diagnostic: each EdgeCore runs with `--heapsnapshot-signal=SIGUSR2` and
 * writes a heap snapshot at minute 2 and at the end into node_modules/.cache/ledge-bench/heap/ (for
 * a diff in Chrome DevTools); the benchmark prints each EdgeCore's live heap at both and what grew
 * most, by constructor. Its figures go to edge-pods-memory-heap.json: a snapshot disturbs the RSS
 * that follows it (the heap grows to hold it), so that run's RSS is not the figure.
 *
 * Run:  npm run bench -- edge-pods-memory                 (15 minutes plus ~1 min setup)
 *       BENCH_MINUTES=3 BENCH_STEADY_FROM_MIN=2 npm run bench -- edge-pods-memory   (a quick look)
 * Writes bench/results/edge-pods-memory.json (edge-pods-memory-soak.json when BENCH_MINUTES ≥ 30), with every
 * sample in `series`. Reports; never fails
 * on a missed target.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { diffHeapSummaries, summarizeHeapSnapshot } from './lib/heap-snapshot.js';
import { MiB, median, readRss, slope, type RssSample } from './lib/rss.js';
import {
  benchPod,
  cleanEnv,
  createPods,
  isRunning,
  loadTracker,
  onCleanup,
  PodWatch,
  root,
  round,
  RUN_ID,
  runCleanup,
  sleep,
  snapshotBundles,
  startCloudCore,
  startControlPlane,
  startEdgeCore,
  startService,
  waitNodeReady,
  writeResult,
  type Service,
} from './lib/pods-cluster.js';

const env = process.env;
const MINUTES = Number(env.BENCH_MINUTES ?? 15);
const INTERVAL_S = Number(env.BENCH_INTERVAL_S ?? 10);
const STEADY_FROM_MIN = Number(env.BENCH_STEADY_FROM_MIN ?? 10);
const SLOPE_FROM_MIN = Number(env.BENCH_SLOPE_FROM_MIN ?? 2);
const PODS = Number(env.BENCH_PODS ?? 10);
const HEAP = env.BENCH_HEAP === '1';
const MB = 1_000_000;
const TARGET_IDLE_DELTA_MB = 12;
const TARGET_IDLE_ANON_MB = 12;
const TARGET_PODS_DELTA_MB = 20;

interface Proc {
  name: string;
  kind: 'bare' | 'idle' | 'pods' | 'plain' | 'podman';
  svc?: Service;
  node?: string;
  exited?: string;
  samples: [number, RssSample][];
  /** Child processes of the measured pid at each sample (its pods' main processes). */
  children: number[];
}

/** Direct children of `pid` (every thread's children file). */
function childCount(pid: number): number {
  let n = 0;
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) n += readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).length;
  } catch {
    // gone
  }
  return n;
}

async function podmanService(): Promise<{ socketPath: string; pauseImage: string } | undefined> {
  if (env.BENCH_PODMAN === '0') return undefined;
  const { podmanSkipReason, startPodman } = await import('../test/helpers/podman.js');
  const why = podmanSkipReason();
  if (why) {
    process.stderr.write(`no Podman row: ${why}\n`);
    return undefined;
  }
  const pm = await startPodman({ readyTimeoutMs: 60_000 });
  onCleanup(() => pm.stop());
  return pm;
}

async function main(): Promise<void> {
  const started = Date.now();
  const watchdog = setTimeout(
    () => {
      process.stderr.write('edge-pods-memory: watchdog fired\n');
      void runCleanup().finally(() => process.exit(1));
    },
    (MINUTES + 10) * 60_000,
  );
  watchdog.unref();
  const bundles = snapshotBundles();
  const tmp = mkdtempSync(join(os.tmpdir(), 'ledge-bench-podmem-'));
  onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  const heapDir = join(root, 'node_modules', '.cache', 'ledge-bench', 'heap');
  if (HEAP) mkdirSync(heapDir, { recursive: true });
  const cp = await startControlPlane(bundles, tmp);
  const cloud = await startCloudCore(bundles, cp, 'cloud-mem');
  const pm = await podmanService();
  const load = loadTracker();

  const nodeFlags = HEAP ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${tmp}`] : [];
  const procs: Proc[] = [{ name: 'bare node', kind: 'bare', samples: [], children: [] }];
  procs.push({ name: 'edgecore idle, connected (default config, as shipped)', kind: 'idle', node: `mem-idle-${RUN_ID}`, samples: [], children: [] });
  procs.push({ name: `edgecore, ${PODS} pods (process runtime), connected`, kind: 'pods', node: `mem-pods-${RUN_ID}`, samples: [], children: [] });
  procs.push({ name: 'edgecore idle, connected, plain `node edgecore.js` (not as shipped)', kind: 'plain', node: `mem-plain-${RUN_ID}`, samples: [], children: [] });
  if (pm) procs.push({ name: 'edgecore idle, connected, container runtime on Podman', kind: 'podman', node: `mem-podman-${RUN_ID}`, samples: [], children: [] });
  let stopping = false;
  for (const p of procs) {
    if (p.kind === 'bare') {
      p.svc = startService('bare node', ['-e', 'setInterval(()=>{},1e3)'], { env: cleanEnv(), cwd: tmp });
      onCleanup(() => p.svc?.stop(2000));
    } else {
      const extra = p.kind === 'podman' && pm ? ['--container-runtime-endpoint', pm.socketPath, '--pod-infra-container-image', pm.pauseImage] : [];
      p.svc = startEdgeCore(bundles, { node: p.node!, cloud: [cloud.url], dataDir: join(tmp, p.node!), logLevel: 'warn', extra, nodeFlags, shipped: p.kind !== 'plain' });
    }
    const svc = p.svc;
    void svc.exited.then((code) => {
      if (!stopping) p.exited = `exited (${code}): ${svc.tail(5).slice(-400)}`;
    });
  }
  try {
    for (const p of procs) if (p.node) await waitNodeReady(cp.core, p.node, 90_000);
    const watch = new PodWatch(cp.kc, cp.core);
    await watch.start();
    onCleanup(() => watch.close());
    const podsProc = procs.find((p) => p.kind === 'pods')!;
    const pods = Array.from({ length: PODS }, (_, i) => benchPod({ name: `mem-${RUN_ID}-${i}`, node: podsProc.node! }));
    const names = pods.map((p) => p.metadata!.name!);
    const t0 = await createPods(cp.core, pods, 10);
    await watch.until(names, isRunning, Math.min(...t0.values()), 120_000, 'pods Running');
    process.stderr.write(`every EdgeCore connected and ${PODS} pods Running; sampling every ${INTERVAL_S} s for ${MINUTES} min…\n`);

    const begin = Date.now();
    const shots = new Map<Proc['kind'], Record<string, string>>();
    const snapshot = async (label: string) => {
      for (const p of procs) if (p.svc && p.kind !== 'bare' && p.svc.alive()) process.kill(p.svc.pid, 'SIGUSR2');
      await sleep(5000);
      // Node names them Heap.<date>.<pid>.<tid>.<seq>.heapsnapshot in --diagnostic-dir.
      for (const f of readdirSync(tmp).filter((x) => x.endsWith('.heapsnapshot'))) {
        const p = procs.find((x) => x.svc && f.includes(`.${x.svc.pid}.`));
        if (!p) continue;
        const dest = join(heapDir, `${p.kind}-${label}-${RUN_ID}.heapsnapshot`);
        renameSync(join(tmp, f), dest);
        shots.set(p.kind, { ...shots.get(p.kind), [label]: dest });
      }
    };
    let shotEarly = false;
    while (Date.now() - begin < MINUTES * 60_000) {
      const at = (Date.now() - begin) / 1000;
      load.sample();
      for (const p of procs) {
        if (p.exited || !p.svc) continue;
        try {
          p.samples.push([at, readRss(p.svc.pid)]);
          p.children.push(childCount(p.svc.pid));
        } catch {
          // gone between the check and the read
        }
      }
      if (at % 60 < INTERVAL_S) {
        const line = procs.map((p) => `${p.kind}: ${((p.samples.at(-1)?.[1].rss ?? 0) / MiB).toFixed(1)}/${((p.samples.at(-1)?.[1].rssAnon ?? 0) / MiB).toFixed(1)}`).join(' | ');
        process.stderr.write(`[${Math.floor(at / 60)} min] RSS/RssAnon MiB ${line}; load ${os.loadavg()[0]!.toFixed(2)}\n`);
      }
      if (HEAP && !shotEarly && at >= 120) {
        shotEarly = true;
        await snapshot('2min');
      }
      await sleep(INTERVAL_S * 1000);
    }
    if (HEAP) await snapshot('end');
    // The pods ran throughout: still Running, never restarted.
    const final = await cp.core.listNamespacedPod({ namespace: 'default', labelSelector: `bench.ledge.io/run=${RUN_ID}` });
    const podsOk = final.items.filter((p) => isRunning(p) && (p.status?.containerStatuses?.[0]?.restartCount ?? 0) === 0).length;
    stopping = true;
    report(procs, { podsOk, heap: heapGrowth(shots), bundles, load: load.summary(), started, watchRestarts: watch.restarts });
  } finally {
    stopping = true;
    clearTimeout(watchdog);
  }
}

interface HeapGrowth {
  kind: string;
  liveHeapMiBAt2Min: number;
  liveHeapMiBAtEnd: number;
  growth: { name: string; bytes: number; count: number }[];
}

/** Live heap at minute 2 and at the end of each EdgeCore, and what grew (BENCH_HEAP=1). */
function heapGrowth(shots: Map<Proc['kind'], Record<string, string>>): HeapGrowth[] {
  const out: HeapGrowth[] = [];
  for (const [kind, files] of shots) {
    if (!files['2min'] || !files.end) continue;
    const a = summarizeHeapSnapshot(files['2min']);
    const b = summarizeHeapSnapshot(files.end);
    out.push({ kind, liveHeapMiBAt2Min: round(a.totalBytes / MiB, 2), liveHeapMiBAtEnd: round(b.totalBytes / MiB, 2), growth: diffHeapSummaries(a, b) });
  }
  return out;
}

function report(
  procs: Proc[],
  extra: {
    podsOk: number;
    heap: HeapGrowth[];
    bundles: ReturnType<typeof snapshotBundles>;
    load: { min: number; max: number; mean: number };
    started: number;
    watchRestarts: number;
  },
): void {
  const stats = (p: Proc) => {
    const steady = p.samples.filter(([t]) => t >= STEADY_FROM_MIN * 60);
    const trend = p.samples.filter(([t]) => t >= SLOPE_FROM_MIN * 60);
    const per10 = (f: (s: RssSample) => number) => round((slope(trend.map(([t, s]) => [t, f(s)])) * 600) / MiB, 2);
    return {
      rss: median(steady.map(([, s]) => s.rss)),
      rssAnon: median(steady.map(([, s]) => s.rssAnon)),
      rssFile: median(steady.map(([, s]) => s.rssFile)),
      maxRss: Math.max(...steady.map(([, s]) => s.rss)),
      maxRssAnon: Math.max(...steady.map(([, s]) => s.rssAnon)),
      minRss: Math.min(...steady.map(([, s]) => s.rss)),
      slopeRss: per10((s) => s.rss),
      slopeAnon: per10((s) => s.rssAnon),
      children: median(p.children.filter((_, i) => (p.samples[i]?.[0] ?? 0) >= STEADY_FROM_MIN * 60)),
    };
  };
  const bare = stats(procs[0]!);
  const rows = procs.map((p) => {
    const s = stats(p);
    return {
      name: p.name,
      kind: p.kind,
      exited: p.exited,
      samples: p.samples.length,
      childProcesses: s.children,
      rssMiB: round(s.rss / MiB),
      rssAnonMiB: round(s.rssAnon / MiB),
      rssFileMiB: round(s.rssFile / MiB),
      maxRssMiB: round(s.maxRss / MiB),
      maxRssAnonMiB: round(s.maxRssAnon / MiB),
      deltaRssMiB: round((s.rss - bare.rss) / MiB),
      deltaRssVsBareLowMiB: round((s.rss - bare.minRss) / MiB),
      deltaRssAnonMiB: round((s.rssAnon - bare.rssAnon) / MiB),
      deltaRssMB: round((s.rss - bare.rss) / MB),
      rssAnonMB: round(s.rssAnon / MB),
      slopeRssMiBPer10Min: s.slopeRss,
      slopeRssAnonMiBPer10Min: s.slopeAnon,
    };
  });
  console.log(`\nEdgeCore's own memory (its pid only), medians from minute ${STEADY_FROM_MIN} to ${MINUTES}, slopes from minute ${SLOPE_FROM_MIN}\n`);
  console.log(
    '| process | RSS MiB | RssAnon MiB | RssFile MiB | max RSS MiB | Δ RSS MiB | Δ RSS vs bare low MiB | Δ RssAnon MiB | RSS slope MiB/10 min | RssAnon slope MiB/10 min | child processes |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.name}${r.exited ? ' (EXITED)' : ''} | ${r.rssMiB} | ${r.rssAnonMiB} | ${r.rssFileMiB} | ${r.maxRssMiB} | ${r.deltaRssMiB} | ${r.deltaRssVsBareLowMiB} | ${r.deltaRssAnonMiB} | ${r.slopeRssMiBPer10Min} | ${r.slopeRssAnonMiBPer10Min} | ${r.childProcesses} |`,
    );
  }
  const idle = rows.find((r) => r.kind === 'idle')!;
  const pods = rows.find((r) => r.kind === 'pods')!;
  const verdicts = [
    `idle: Δ RSS ${idle.deltaRssMB} MB over bare Node (target ≤ ${TARGET_IDLE_DELTA_MB} MB: ${idle.deltaRssMB <= TARGET_IDLE_DELTA_MB ? 'met' : 'MISSED'}); RssAnon ${idle.rssAnonMB} MB (target ≤ ${TARGET_IDLE_ANON_MB} MB: ${idle.rssAnonMB <= TARGET_IDLE_ANON_MB ? 'met' : 'MISSED'}); slope ${idle.slopeRssMiBPer10Min} MiB/10 min`,
    `${PODS} pods: Δ RSS ${pods.deltaRssMB} MB over bare Node (target ≤ ${TARGET_PODS_DELTA_MB} MB: ${pods.deltaRssMB <= TARGET_PODS_DELTA_MB ? 'met' : 'MISSED'}); slope ${pods.slopeRssMiBPer10Min} MiB/10 min; ${extra.podsOk}/${PODS} pods still Running with no restart at the end`,
  ];
  console.log(`\n${verdicts.join('\n')}`);
  for (const r of rows.filter((x) => x.exited)) console.log(`  ${r.name}: ${r.exited}`);
  for (const h of extra.heap) {
    console.log(`\nlive heap of ${h.kind} (heap snapshots, after a full GC): ${h.liveHeapMiBAt2Min} MiB at minute 2 → ${h.liveHeapMiBAtEnd} MiB at the end; grew most:`);
    for (const g of h.growth.filter((x) => x.bytes !== 0)) console.log(`  ${g.bytes > 0 ? '+' : ''}${g.bytes} B, ${g.count > 0 ? '+' : ''}${g.count} × ${g.name}`);
  }
  console.log(
    `Node ${process.version}, ${os.cpus().length} cores, load average ${extra.load.min}–${extra.load.max} (mean ${extra.load.mean}); edgecore.js ${extra.bundles.edgecoreBytes} bytes (sha256 ${extra.bundles.edgecoreSha256}, built ${extra.bundles.edgecoreBuiltAt}). Took ${((Date.now() - extra.started) / 60000).toFixed(1)} min.`,
  );
  const file = writeResult(HEAP ? 'edge-pods-memory-heap' : MINUTES >= 30 ? 'edge-pods-memory-soak' : 'edge-pods-memory', {
    settings: { minutes: MINUTES, intervalS: INTERVAL_S, steadyFromMin: STEADY_FROM_MIN, slopeFromMin: SLOPE_FROM_MIN, pods: PODS, heap: HEAP },
    edgecore: { bytes: extra.bundles.edgecoreBytes, sha256: extra.bundles.edgecoreSha256, builtAt: extra.bundles.edgecoreBuiltAt },
    loadAvg: extra.load,
    podsRunningAtEnd: extra.podsOk,
    heapGrowth: extra.heap,
    watchRestarts: extra.watchRestarts,
    verdicts,
    rows,
    series: procs.map((p) => ({
      name: p.name,
      t: p.samples.map(([t]) => Math.round(t)),
      rssKiB: p.samples.map(([, s]) => Math.round(s.rss / 1024)),
      rssAnonKiB: p.samples.map(([, s]) => Math.round(s.rssAnon / 1024)),
    })),
  });
  console.log(`wrote ${file}`);
}

main()
  .catch((err) => {
    process.stderr.write(`edge-pods-memory failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => runCleanup());
