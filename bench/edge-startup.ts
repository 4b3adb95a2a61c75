/**
 * EdgeCore startup (issue 10): time from spawning `node edgecore.js` to "connected to cloud", and,
 * after a reboot (kill -9 with its pods running, then started again on the same data directory),
 * to every pod's process running again and to the API showing every pod Running again.
 *
 * Needs dist/ (`npm run build`; the bundles are copied at start). A real installation
 * (bench/lib/pods-cluster.ts): the local control plane, one CloudCore (default settings) and one
 * EdgeCore (default settings, `--log-level info` for its "connected to cloud" line), BENCH_PODS
 * (10) pods on the process runtime. Each pod's container appends `<pod> <date +%s%N>` to a file at
 * every start (a hostPath volume), so "process running again" is the pod's own clock reading, on
 * the same machine as the benchmark's.
 *
 * Cases:
 *  - cold start: empty data directory → "connected to cloud" (and "edged started"), BENCH_COLD (3)
 *    times, each a new node;
 *  - reboot, EdgeCore killed: kill -9 of EdgeCore alone (its pods' processes live on, orphaned;
 *    the new EdgeCore finds them as leftovers, kills them and starts the pods again);
 *  - reboot, power cut: kill -9 of EdgeCore and of every pod process (what a real power cut
 *    leaves: nothing running);
 *  - reboot offline: CloudCore killed first, then as "power cut": the pods must run again from the
 *    store alone (no API figure).
 * Each reboot case BENCH_REBOOTS (5) times. Times from the spawn call: "connected" = the line
 * reaching the benchmark; "processes" = the last of the pods' new start records; "API" = the last
 * pod whose watched status is Running with containerIDs different from before the reboot.
 *
 * Run:  npm run bench -- edge-startup        (about 2 minutes)
 * Writes bench/results/edge-startup.json. Reports; never fails on a slow figure.
 */
import os from 'node:os';
import { join } from 'node:path';
import {
  benchPod,
  containerIds,
  createPods,
  isRunning,
  killEverything,
  loadTracker,
  markedPids,
  onCleanup,
  pct,
  PodWatch,
  readStarts,
  round,
  RUN_ID,
  runCleanup,
  type Service,
  sleep,
  benchWorkspace,
  startCloudCore,
  startControlPlane,
  startEdgeCore,
  waitNodeReady,
  writeResult,
} from './lib/pods-cluster.js';

const env = process.env;
const PODS = Number(env.BENCH_PODS ?? 10);
const REBOOTS = Number(env.BENCH_REBOOTS ?? 5);
const COLD = Math.max(1, Number(env.BENCH_COLD ?? 3));

type Mode = 'edgecore killed' | 'power cut' | 'power cut, cloud down';

interface Boot {
  mode: Mode | 'cold start';
  connectedMs?: number;
  edgedStartedMs?: number;
  processesMs?: number;
  apiMs?: number;
}

async function waitStarts(dir: string, names: string[], since: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const starts = readStarts(dir);
    const firsts = names.map((n) => (starts.get(n) ?? []).find((t) => t >= since));
    if (firsts.every((t) => t !== undefined)) return Math.max(...(firsts as number[]));
    if (Date.now() > deadline) throw new Error(`${firsts.filter((t) => t === undefined).length} of ${names.length} pods did not start again within ${timeoutMs} ms`);
    await sleep(20);
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const { bundles, tmp, out } = benchWorkspace('ledge-bench-boot-');
  const load = loadTracker();
  const cp = await startControlPlane(bundles, tmp);
  const cloud = await startCloudCore(bundles, cp, 'cloud-boot');
  const node = `boot-${RUN_ID}`;
  const dataDir = join(tmp, node);
  const boot = () => startEdgeCore(bundles, { node, cloud: [cloud.url], dataDir });
  const boots: Boot[] = [];
  const lines = async (svc: Service, b: Boot) => {
    const [c, e] = await Promise.all([svc.waitLine(/"msg":"(re)?connected to cloud"/, 60_000), svc.waitLine(/"msg":"edged started"/, 60_000)]);
    b.connectedMs = c.t - svc.spawnedAt;
    b.edgedStartedMs = e.t - svc.spawnedAt;
  };

  // Cold starts: empty data directories (BENCH_COLD - 1 throw-away nodes, then the node of the reboots).
  for (let i = 1; i < COLD; i++) {
    const svc = startEdgeCore(bundles, { node: `${node}-cold${i}`, cloud: [cloud.url], dataDir: join(tmp, `${node}-cold${i}`) });
    const b: Boot = { mode: 'cold start' };
    await lines(svc, b);
    boots.push(b);
    await svc.stop(10_000);
  }
  let edge = boot();
  const cold: Boot = { mode: 'cold start' };
  await lines(edge, cold);
  boots.push(cold);
  await waitNodeReady(cp.core, node, 60_000);
  const watch = new PodWatch(cp.kc, cp.core);
  await watch.start();
  onCleanup(() => watch.close());
  const pods = Array.from({ length: PODS }, (_, i) => benchPod({ name: `boot-${RUN_ID}-${i}`, node, outDir: out }));
  const names = pods.map((p) => p.metadata!.name!);
  const t0 = await createPods(cp.core, pods, 10);
  await watch.until(names, isRunning, Math.min(...t0.values()), 120_000, 'pods Running');
  await waitStarts(out, names, 0, 30_000);

  const modes: Mode[] = ['edgecore killed', 'power cut', 'power cut, cloud down'];
  for (const mode of modes) {
    for (let i = 0; i < REBOOTS; i++) {
      // A pause between reboots, not a synchronization: the previous boot's figures are complete
      // (its pods were seen Running with new container IDs); later status updates may still be in flight.
      await sleep(1000);
      const before = new Set(names.flatMap((n) => containerIds(watch.last(n))));
      if (mode === 'power cut, cloud down' && cloud.svc.alive()) await cloud.svc.kill9();
      await edge.kill9();
      if (mode !== 'edgecore killed') {
        for (const pid of markedPids()) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
      edge = boot();
      const b: Boot = { mode };
      const since = edge.spawnedAt;
      const waits: Promise<unknown>[] = [waitStarts(out, names, since, 90_000).then((t) => (b.processesMs = t - since))];
      if (mode !== 'power cut, cloud down') {
        waits.push(lines(edge, b));
        waits.push(
          watch
            .until(names, (p) => isRunning(p) && containerIds(p).length > 0 && containerIds(p).every((id) => !before.has(id)), since, 90_000, 'pods Running again in the API')
            .then((m) => (b.apiMs = Math.max(...m.values()) - since)),
        );
      } else {
        waits.push(edge.waitLine(/"msg":"edged started"/, 60_000).then((e) => (b.edgedStartedMs = e.t - since)));
      }
      await Promise.all(waits);
      boots.push(b);
      load.sample();
      process.stderr.write(
        `${mode} #${i + 1}: connected ${round(b.connectedMs ?? Number.NaN)} ms, edged started ${round(b.edgedStartedMs ?? Number.NaN)} ms, processes ${round(b.processesMs ?? Number.NaN)} ms, API ${round(b.apiMs ?? Number.NaN)} ms\n`,
      );
    }
  }
  // Done: the cloud is down; stop EdgeCore (it stops its pods) before the cleanup kills what is left.
  await edge.stop(20_000);
  const leftover = killEverything();
  if (leftover) process.stderr.write(`${leftover} pod processes were still running after EdgeCore stopped; killed\n`);

  const summarize = (mode: Boot['mode']) => {
    const bs = boots.filter((b) => b.mode === mode);
    const f = (k: keyof Omit<Boot, 'mode'>) => {
      const v = bs.map((b) => b[k]).filter((x): x is number => x !== undefined);
      return v.length ? { n: v.length, p50: round(pct(v, 50)), max: round(Math.max(...v)), min: round(Math.min(...v)) } : undefined;
    };
    return { mode, runs: bs.length, connectedMs: f('connectedMs'), edgedStartedMs: f('edgedStartedMs'), processesMs: f('processesMs'), apiMs: f('apiMs') };
  };
  const rows = (['cold start', ...modes] as Boot['mode'][]).map(summarize);
  const cell = (d?: { p50: number; max: number }) => (d ? `${d.p50} / ${d.max}` : '—');
  console.log(`\nEdgeCore startup with ${PODS} pods (process runtime): ms from the spawn call, median / max of the runs\n`);
  console.log('| case | runs | connected to cloud | edged started | all pod processes running again | API shows all Running again |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.mode} | ${r.runs} | ${cell(r.connectedMs)} | ${cell(r.edgedStartedMs)} | ${cell(r.processesMs)} | ${cell(r.apiMs)} |`);
  const l = load.summary();
  console.log(
    `\nNode ${process.version}, ${os.cpus().length} cores, load average ${l.min}–${l.max} (mean ${l.mean}); edgecore.js ${bundles.edgecoreBytes} bytes (sha256 ${bundles.edgecoreSha256}). Took ${((Date.now() - started) / 60000).toFixed(1)} min.`,
  );
  const file = writeResult('edge-startup', {
    settings: { pods: PODS, reboots: REBOOTS, cold: COLD },
    edgecore: { bytes: bundles.edgecoreBytes, sha256: bundles.edgecoreSha256, builtAt: bundles.edgecoreBuiltAt },
    loadAvg: l,
    watchRestarts: watch.restarts,
    rows,
    boots: boots.map((b) => ({
      ...b,
      connectedMs: round(b.connectedMs ?? Number.NaN),
      edgedStartedMs: round(b.edgedStartedMs ?? Number.NaN),
      processesMs: round(b.processesMs ?? Number.NaN),
      apiMs: round(b.apiMs ?? Number.NaN),
    })),
  });
  console.log(`wrote ${file}`);
}

main()
  .catch((err) => {
    process.stderr.write(`edge-startup failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => runCleanup());
