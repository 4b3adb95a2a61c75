/**
 * apply → Running latency of pods on one edge node (issue 10), process runtime and container
 * runtime (Podman), for 1 pod at a time and for 50 pods at once.
 *
 * Needs dist/ (`npm run build`; the bundles are copied at start). A real installation
 * (bench/lib/pods-cluster.ts): the local control plane (`ledge.js apiserver`), one CloudCore
 * (`ledge.js cloud --kubeconfig`, default settings) and one EdgeCore (`edgecore.js`, default
 * settings; with Podman: `--container-runtime-endpoint <private podman socket>
 * --pod-infra-container-image localhost/local/pause:latest`). Podman is a private service from
 * test/helpers/podman.ts (images imported locally: busybox and a catatonit pause image); without
 * its provisioning the container rows are skipped with the reason.
 *
 * Latency = from just before the client-node create call to the moment a watch on the pods (opened
 * before, list-then-watch) delivers the pod with `status.phase: Running`; both timestamps are the
 * benchmark's clock. That covers: API write, CloudCore's watch and send, the link, EdgeCore's
 * fsynced store write and ACK, Edged starting the pod (process: spawn; container: infra container
 * + the container, through Podman), the status report upstream, CloudCore's status write, and the
 * watch event. "ADDED" is the same watch's first event of the pod (the API's own share); "process
 * started" is the pod's own start record (its container appends its clock reading to a file on a
 * hostPath volume: GNU date's ns for the process runtime, /proc/uptime's 10 ms for a container), so
 * "Running" − "process started" is the status' way back to the API.
 *
 * Each pod: `sh -c 'trap … TERM; while true; do sleep 10 & wait $!; done'` (image busybox, or
 * localhost/local/busybox:latest with `runtimeClassName: container`, imagePullPolicy IfNotPresent).
 * Per runtime: one warm-up pod (reported as "first"), BENCH_SINGLE (30) pods one after another
 * (each created, Running, deleted and gone before the next), then BENCH_BATCH_ROUNDS (3) rounds of
 * BENCH_BATCH (50) pods created at once (BENCH_CREATE_CONCURRENCY, default 50, create calls in
 * flight), reporting each pod's latency and the time from the first create call until all are
 * Running; the batch is deleted and gone before the next round.
 *
 * Options: BENCH_RUNTIMES (default `process,container`), BENCH_SINGLE, BENCH_BATCH,
 * BENCH_BATCH_ROUNDS, BENCH_CREATE_CONCURRENCY, BENCH_PODMAN=0 (skip the container runtime),
 * BENCH_EDGE_LOG=<file> (diagnostics: EdgeCore at debug level; its and CloudCore's last 2,000 log lines,
 * with receipt times, go to <file>, the figures to pod-latency-diag.json).
 * Run:  npm run bench -- pod-latency           (about 5 minutes)
 * Writes bench/results/pod-latency.json. Reports; never fails on a slow figure.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import {
  benchPod,
  createPods,
  deletePods,
  isRunning,
  loadTracker,
  nowMs,
  onCleanup,
  pct,
  PodWatch,
  readStarts,
  round,
  RUN_ID,
  runCleanup,
  sleep,
  benchWorkspace,
  startCloudCore,
  startControlPlane,
  startEdgeCore,
  waitNodeReady,
  writeResult,
} from './lib/pods-cluster.js';

const env = process.env;
const RUNTIMES = (env.BENCH_RUNTIMES ?? 'process,container').split(',').filter(Boolean);
const SINGLE = Number(env.BENCH_SINGLE ?? 30);
const BATCH = Number(env.BENCH_BATCH ?? 50);
const BATCH_ROUNDS = Number(env.BENCH_BATCH_ROUNDS ?? 3);
const CREATE_CONCURRENCY = Number(env.BENCH_CREATE_CONCURRENCY ?? BATCH);

interface Dist {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  min: number;
}
const dist = (v: number[]): Dist => ({
  n: v.length,
  min: round(Math.min(...v)),
  p50: round(pct(v, 50)),
  p90: round(pct(v, 90)),
  p99: round(pct(v, 99)),
  max: round(Math.max(...v)),
});

/** Each pod's first start record (wall-clock ms), waiting briefly for records not written yet (Running may be reported first). */
async function processStarts(dir: string, names: string[]): Promise<number[]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const starts = readStarts(dir);
    const firsts = names.map((n) => starts.get(n)?.[0]);
    if (firsts.every((t) => t !== undefined)) return firsts as number[];
    if (Date.now() > deadline) return firsts.map((t) => t ?? Number.NaN);
    await sleep(20);
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const { bundles, tmp, out } = benchWorkspace('ledge-bench-podlat-');
  const load = loadTracker();
  let pm: { socketPath: string; pauseImage: string; busyboxImage: string } | undefined;
  let skipped: string | undefined;
  if (RUNTIMES.includes('container')) {
    if (env.BENCH_PODMAN === '0') skipped = 'BENCH_PODMAN=0';
    else {
      const { podmanSkipReason, startPodman } = await import('../test/helpers/podman.js');
      skipped = podmanSkipReason();
      if (!skipped) {
        const svc = await startPodman({ readyTimeoutMs: 60_000 });
        onCleanup(() => svc.stop());
        pm = svc;
      }
    }
    if (skipped) process.stderr.write(`container runtime skipped: ${skipped}\n`);
  }
  const cp = await startControlPlane(bundles, tmp);
  const cloud = await startCloudCore(bundles, cp, 'cloud-lat');
  const node = `lat-${RUN_ID}`;
  const extra = pm ? ['--container-runtime-endpoint', pm.socketPath, '--pod-infra-container-image', pm.pauseImage] : [];
  const edge = startEdgeCore(bundles, { node, cloud: [cloud.url], dataDir: join(tmp, node), extra, ...(env.BENCH_EDGE_LOG ? { logLevel: 'debug' } : {}) });
  await waitNodeReady(cp.core, node, 90_000);
  const watch = new PodWatch(cp.kc, cp.core);
  await watch.start();
  onCleanup(() => watch.close());

  const results: Record<string, unknown>[] = [];
  let seq = 0;
  for (const runtime of RUNTIMES) {
    if (runtime === 'container' && !pm) continue;
    const mk = (name: string) => benchPod({ name, node, outDir: out, ...(runtime === 'container' && pm ? { runtimeClassName: 'container', image: pm.busyboxImage } : {}) });
    const tag = runtime === 'container' ? 'c' : 'p';
    // One pod at a time.
    const single: number[] = [];
    const singleAdded: number[] = [];
    const singleStarted: number[] = [];
    let first: number | undefined;
    for (let i = 0; i <= SINGLE; i++) {
      const name = `lat-${RUN_ID}-${tag}1-${seq++}`;
      const t0 = (await createPods(cp.core, [mk(name)])).get(name)!;
      const running = (await watch.until([name], isRunning, t0, 180_000, `${runtime}: pod Running`)).get(name)!;
      const added = watch.when(name, (p) => p !== undefined, t0)!;
      const startedAt = (await processStarts(out, [name]))[0]!;
      if (i === 0) first = running - t0;
      else {
        single.push(running - t0);
        singleAdded.push(added - t0);
        singleStarted.push(startedAt - t0);
      }
      load.sample();
      await deletePods(cp.core, watch, [name]);
    }
    const s = dist(single);
    results.push({ runtime, case: '1 pod', first: round(first!), latencyMs: s, addedMs: dist(singleAdded), processStartedMs: dist(singleStarted) });
    process.stderr.write(`${runtime}, 1 pod: first ${round(first!)} ms, p50 ${s.p50} ms, p99 ${s.p99} ms (n=${s.n})\n`);
    // BATCH at once.
    const each: number[] = [];
    const eachAdded: number[] = [];
    const eachStarted: number[] = [];
    const all: number[] = [];
    for (let r = 0; r < BATCH_ROUNDS; r++) {
      const names = Array.from({ length: BATCH }, () => `lat-${RUN_ID}-${tag}${BATCH}-${seq++}`);
      const begin = nowMs();
      const t0 = await createPods(
        cp.core,
        names.map((n) => mk(n)),
        CREATE_CONCURRENCY,
      );
      const running = await watch.until(names, isRunning, begin, 600_000, `${runtime}: ${BATCH} pods Running`);
      const started = await processStarts(out, names);
      names.forEach((n, k) => {
        each.push(running.get(n)! - t0.get(n)!);
        eachAdded.push(watch.when(n, (p) => p !== undefined, t0.get(n)!)! - t0.get(n)!);
        eachStarted.push(started[k]! - t0.get(n)!);
      });
      all.push(Math.max(...running.values()) - begin);
      load.sample();
      process.stderr.write(`${runtime}, ${BATCH} pods, round ${r + 1}: all Running after ${round(all.at(-1)!)} ms\n`);
      await deletePods(cp.core, watch, names, 600_000);
    }
    results.push({
      runtime,
      case: `${BATCH} pods at once`,
      rounds: BATCH_ROUNDS,
      latencyMs: dist(each),
      addedMs: dist(eachAdded),
      processStartedMs: dist(eachStarted),
      allRunningMs: dist(all),
      allRunningEachRoundMs: all.map((v) => round(v)),
    });
  }
  if (!edge.alive()) throw new Error(`EdgeCore exited during the run:\n${edge.tail()}`);
  if (env.BENCH_EDGE_LOG) {
    // Diagnostics: EdgeCore's and CloudCore's last output lines, each prefixed with its receipt time.
    const dump = (svc: typeof edge) => svc.lines.map((l) => `${new Date(l.t).toISOString()} [${svc.name}] ${l.line}`).join('\n');
    writeFileSync(env.BENCH_EDGE_LOG, `${dump(edge)}\n${dump(cloud.svc)}\n`);
  }

  console.log(`\napply → Running on one edge node (ms; from the create call to the watch delivering phase Running)\n`);
  console.log('| runtime | case | n | first (cold) | p50 | p90 | p99 | max | all Running (p50 of rounds / max) | ADDED p50 / p99 | process started p50 / p99 |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const l = r.latencyMs as Dist;
    const a = r.addedMs as Dist;
    const st = r.processStartedMs as Dist;
    const allR = r.allRunningMs as Dist | undefined;
    console.log(
      `| ${r.runtime} | ${r.case} | ${l.n} | ${r.first ?? '—'} | ${l.p50} | ${l.p90} | ${l.p99} | ${l.max} | ${allR ? `${allR.p50} / ${allR.max}` : '—'} | ${a.p50} / ${a.p99} | ${st.p50} / ${st.p99} |`,
    );
  }
  const l = load.summary();
  if (skipped) console.log(`\ncontainer runtime skipped: ${skipped}`);
  console.log(
    `\nNode ${process.version}, ${os.cpus().length} cores, load average ${l.min}–${l.max} (mean ${l.mean}); edgecore.js ${bundles.edgecoreBytes} bytes (sha256 ${bundles.edgecoreSha256}). Took ${((Date.now() - started) / 60000).toFixed(1)} min.`,
  );
  // A diagnostic run (EdgeCore at debug level) does not replace the figures.
  const file = writeResult(env.BENCH_EDGE_LOG ? 'pod-latency-diag' : 'pod-latency', {
    settings: { runtimes: RUNTIMES, single: SINGLE, batch: BATCH, batchRounds: BATCH_ROUNDS, createConcurrency: CREATE_CONCURRENCY },
    edgecore: { bytes: bundles.edgecoreBytes, sha256: bundles.edgecoreSha256, builtAt: bundles.edgecoreBuiltAt },
    containerSkipped: skipped,
    loadAvg: l,
    watchRestarts: watch.restarts,
    results,
  });
  console.log(`wrote ${file}`);
}

main()
  .catch((err) => {
    process.stderr.write(`pod-latency failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => runCleanup());
