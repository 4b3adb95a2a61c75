/**
 * Devices: EdgeCore's memory with 1,000 live device twins at steady state, next to a bare Node
 * and two device-less EdgeCores started in the same run (issue 12).
 *
 * Needs dist/ (`npm run build`: edgecore.js, ledge.js, mappers/virtual.js; copied at start). Every
 * part is a process on 127.0.0.1: the local control plane (`ledge.js apiserver`), one CloudCore
 * (`ledge.js cloud --kubeconfig …`, default settings: its DeviceController installs the device CRDs
 * and sends Devices to their node), and, side by side:
 *  - bare Node: `node -e "setInterval(()=>{},1e3)"`;
 *  - EdgeCore `mem-devices`: default flags (embedded MQTT broker, DMI on), holding BENCH_DEVICES
 *    (1,000) Devices of one DeviceModel (3 properties; bench/lib/devices-mem-fleet.ts);
 *  - EdgeCore `mem-nodevices`: default flags, connected, no devices;
 *  - EdgeCore `mem-nobroker`: `--mqtt-mode off` and DMI off (`LEDGE_DMI=false`: edgecore.js refuses
 *    `--no-dmi` on Node 20), connected, no devices (what the broker and DMI cost at idle).
 * Each EdgeCore runs as shipped (EDGE_PROCESS of shared/runtime: its environment and Node flags):
 * `node --max-semi-space-size=1 --no-expose-wasm --lite-mode edgecore.js --cloud … --node-name … --data-dir <tmp>/<node> --mqtt-port … --dmi-socket
 * dmi.sock --metaserver-port 0 --log-level warn` (the devices one gets a free port chosen here, so the
 * MQTT client knows it without info logging; the others 0).
 * The twins are kept live: the virtual mapper (dist/mappers/virtual.js, its own process, not counted)
 * registers on mem-devices' DMI socket and reports both reported properties of every device every
 * BENCH_CYCLE_MS (10,000: 100 ReportDeviceStatus calls/s), the state every BENCH_STATE_CYCLE_MS
 * (60,000); an MQTT client in this process publishes one `twin/update` (the `mode` actual value of the
 * next device) every second to mem-devices' embedded broker and counts the results.
 * Sampling starts once every DeviceStatus has a reported twin. VmRSS and RssAnon of each measured pid
 * every BENCH_INTERVAL_S (10) s for BENCH_MINUTES (15); medians over BENCH_STEADY_FROM_MIN (10) to the
 * end, Δ over bare Node (its median and its lowest sample), least-squares slope from
 * BENCH_SLOPE_FROM_MIN (2), in MiB per 10 min, as bench/edge-memory-steady.ts. At the end: how many
 * DeviceStatus objects carry a reported value from the last 60 s.
 * BENCH_HEAP=1: the EdgeCores run with `--heapsnapshot-signal=SIGUSR2`; snapshots at minute 2 and at
 * the end (node_modules/.cache/ledge-bench/heap/), live heap and what grew most are printed; results go
 * to devices-memory-heap.json (a snapshot disturbs the RSS after it); with the end snapshots of the
 * devices and no-devices EdgeCores, what the devices add to the live heap, by constructor.
 * BENCH_NODE_FLAGS="…": extra Node flags for every EdgeCore (a diagnostic such as
 * `--max-semi-space-size=1`); results go to devices-memory-flags.json.
 * BENCH_MAPPER_LOG_LEVEL (warn): the mapper's log level (its warn/error lines are in the results).
 *
 * Run:  npm run build && node --import tsx bench/devices-memory.ts        (about 17 min)
 *       BENCH_MINUTES=2 BENCH_STEADY_FROM_MIN=1 node --import tsx bench/devices-memory.ts   (trial)
 * Writes bench/results/devices-memory.json. Reports; never fails on a missed target.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { connect, type MqttClient } from 'mqtt';
import { createFleet, deviceName, fleetStatus, NAMESPACE } from './lib/devices-mem-fleet.js';
import { edgeStore } from '../test/helpers/cluster.js';
import { diffHeapSummaries, summarizeHeapSnapshot } from './lib/heap-snapshot.js';
import {
  cleanEnv,
  loadTracker,
  onCleanup,
  root,
  round,
  RUN_ID,
  runCleanup,
  type Service,
  sleep,
  snapshotBundles,
  startCloudCore,
  startControlPlane,
  startService,
  waitNodeReady,
  writeResult,
} from './lib/pods-cluster.js';
import { EDGE_PROCESS } from '../shared/runtime/index.js';
import { MiB, median, readRss, slope, type RssSample } from './lib/rss.js';

const env = process.env;
const MINUTES = Number(env.BENCH_MINUTES ?? 15);
const INTERVAL_S = Number(env.BENCH_INTERVAL_S ?? 10);
const STEADY_FROM_MIN = Number(env.BENCH_STEADY_FROM_MIN ?? 10);
const SLOPE_FROM_MIN = Number(env.BENCH_SLOPE_FROM_MIN ?? 2);
const DEVICES = Number(env.BENCH_DEVICES ?? 1000);
const CYCLE_MS = Number(env.BENCH_CYCLE_MS ?? 10_000);
const STATE_CYCLE_MS = Number(env.BENCH_STATE_CYCLE_MS ?? 60_000);
const MQTT_PERIOD_MS = Number(env.BENCH_MQTT_PERIOD_MS ?? 1000);
const HEAP = env.BENCH_HEAP === '1';
/** The issue's target: EdgeCore with 1,000 twins ≤ bare Node + 20 MB RSS. */
const TARGET_DELTA_MB = 20;
const MB = 1e6;

type Kind = 'bare' | 'devices' | 'nodevices' | 'nobroker';
/** A process whose VmRSS is sampled. */
interface Sampled {
  name: string;
  /** Short name for the progress lines. */
  kind: string;
  svc?: Service;
  exited?: string;
  /** [seconds since sampling started, sample] */
  samples: [number, RssSample][];
}
interface Proc extends Sampled {
  kind: Kind;
  node?: string;
}

/** A free loopback port (bound, then closed: a small race with other processes, acceptable here). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** One MQTT client on the devices EdgeCore's broker: a twin/update of the next device's `mode` every period. */
function startTwinPublisher(port: number): { stop(): Promise<void>; counts(): { published: number; applied: number; refused: number; reasons: string[] } } {
  const client: MqttClient = connect(`mqtt://127.0.0.1:${port}`, { clientId: `bench-${RUN_ID}`, reconnectPeriod: 1000, connectTimeout: 10_000 });
  let published = 0;
  let applied = 0;
  let refused = 0;
  const reasons = new Set<string>();
  client.on('connect', () => void client.subscribe(`$hw/events/device/${NAMESPACE}/+/twin/update/result`, { qos: 0 }));
  client.on('message', (_topic, payload) => {
    try {
      const m = JSON.parse(payload.toString()) as { code?: number; reason?: string };
      if (m.code !== undefined) {
        refused++;
        if (reasons.size < 5) reasons.add(`${m.code} ${m.reason ?? ''}`);
      } else applied++;
    } catch {
      refused++;
    }
  });
  let i = 0;
  const timer = setInterval(() => {
    if (!client.connected) return;
    const name = deviceName(i++ % DEVICES);
    const body = { event_id: `bench-${published}`, timestamp: Date.now(), twin: { mode: { actual: { value: `mode-${published % 7}` } } } };
    client.publish(`$hw/events/device/${NAMESPACE}/${name}/twin/update`, JSON.stringify(body), { qos: 0 });
    published++;
  }, MQTT_PERIOD_MS);
  return {
    stop: async () => {
      clearInterval(timer);
      await client.endAsync(true).catch(() => undefined);
    },
    counts: () => ({ published, applied, refused, reasons: [...reasons] }),
  };
}

async function main(): Promise<void> {
  const started = Date.now();
  const watchdog = setTimeout(
    () => {
      process.stderr.write('devices-memory: watchdog fired\n');
      void runCleanup().finally(() => process.exit(1));
    },
    (MINUTES + 15) * 60_000,
  );
  watchdog.unref();
  const bundles = snapshotBundles();
  const tmp = mkdtempSync(join(os.tmpdir(), 'ledge-bench-devmem-'));
  onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  // The mapper bundle is self-contained: a copy in the run's directory, like the others.
  const mapperJs = join(tmp, 'virtual.js');
  copyFileSync(join(root, 'dist', 'mappers', 'virtual.js'), mapperJs);
  const heapDir = join(root, 'node_modules', '.cache', 'ledge-bench', 'heap');
  if (HEAP) mkdirSync(heapDir, { recursive: true });

  const cp = await startControlPlane(bundles, tmp);
  // --stream-port 0: CloudStream's default port (10350) can be held once per host, and a second run may overlap.
  const cloud = await startCloudCore(bundles, cp, 'cloud-devmem', ['--stream-port', '0']);
  const objects = cp.kc.makeApiClient(k8s.CustomObjectsApi);
  const load = loadTracker();
  const tFleet = Date.now();
  await createFleet(objects, { devices: DEVICES, node: 'mem-devices', cycleMs: CYCLE_MS, stateCycleMs: STATE_CYCLE_MS, concurrency: 8, crdTimeoutMs: 60_000 });
  process.stderr.write(`created 1 DeviceModel and ${DEVICES} Devices in ${((Date.now() - tFleet) / 1000).toFixed(1)} s\n`);

  const mqttPort = await freePort();
  // BENCH_NODE_FLAGS: extra Node flags for every EdgeCore (a diagnostic, e.g. `--max-semi-space-size=1`).
  const extraNodeFlags = (env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const nodeFlags = [...extraNodeFlags, ...(HEAP ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${tmp}`] : [])];
  const procs: Proc[] = [
    { name: 'bare node', kind: 'bare', samples: [] },
    { name: `edgecore, ${DEVICES} device twins (default: broker + DMI)`, kind: 'devices', node: 'mem-devices', samples: [] },
    { name: 'edgecore, no devices (default: broker + DMI)', kind: 'nodevices', node: 'mem-nodevices', samples: [] },
    { name: 'edgecore, no devices, --mqtt-mode off, DMI off', kind: 'nobroker', node: 'mem-nobroker', samples: [] },
  ];
  let stopping = false;
  for (const p of procs) {
    if (p.kind === 'bare') {
      p.svc = startService('bare node', ['-e', 'setInterval(()=>{},1e3)'], { env: cleanEnv(), cwd: tmp });
      onCleanup(() => p.svc?.stop(2000));
    } else {
      // The arguments of pods-cluster's startEdgeCore (its own data directory, a free MetaServer port),
      // spawned here because DMI is turned off through the environment: on Node 20, util.parseArgs has
      // no `--no-<flag>` negation, so edgecore.js refuses `--no-dmi` and `--dmi` can only say true.
      const port = p.kind === 'devices' ? String(mqttPort) : '0';
      const args = [
        ...EDGE_PROCESS.nodeFlags,
        ...nodeFlags,
        bundles.edgecore,
        '--cloud',
        cloud.url,
        '--node-name',
        p.node!,
        '--data-dir',
        join(tmp, p.node!),
        '--metaserver-port',
        '0',
        '--log-level',
        'warn',
        '--mqtt-port',
        port,
        '--dmi-socket',
        'dmi.sock',
        ...(p.kind === 'nobroker' ? ['--mqtt-mode', 'off'] : []),
      ];
      const svc = startService(p.node!, args, {
        env: cleanEnv({ ...EDGE_PROCESS.env, ...(p.kind === 'nobroker' ? { LEDGE_DMI: 'false' } : {}) }),
        cwd: os.tmpdir(),
        keepLines: 2000,
      });
      onCleanup(() => svc.stop(15_000));
      p.svc = svc;
    }
    const svc = p.svc;
    void svc.exited.then((code) => {
      if (!stopping) p.exited = `exited (${code}): ${svc.tail(5).slice(-400)}`;
    });
  }
  let publisher: ReturnType<typeof startTwinPublisher> | undefined;
  try {
    for (const p of procs) {
      if (!p.node) continue;
      await waitNodeReady(cp.core, p.node, 90_000).catch((err: Error) => {
        throw new Error(`${err.message}; its output:\n${p.svc?.tail(10)}`);
      });
    }
    const devicesProc = procs.find((p) => p.kind === 'devices')!;
    // The mapper starts once mem-devices holds every Device (and the model) in its store: a mapper that
    // registers while Devices are still arriving can get a RegisterDevice before its MapperRegister
    // answer (with the model) is handled, and the SDK then leaves that device waiting for its model
    // for good (mappers/sdk/mapper.ts run(): models from the answer are accepted without modelChanged).
    const tSync = Date.now();
    for (;;) {
      const keys = [...edgeStore(join(tmp, devicesProc.node!)).keys()];
      const held = keys.filter((k) => k.startsWith(`${NAMESPACE}/device/mem-dev-`)).length;
      if (held >= DEVICES && keys.some((k) => k.includes('/devicemodel/'))) break;
      if (Date.now() - tSync > 180_000) throw new Error(`mem-devices holds ${held}/${DEVICES} Devices after 180 s`);
      await sleep(1000);
    }
    const syncedAfterS = round((Date.now() - tSync) / 1000);
    const mapper = startService(
      'mapper',
      [
        mapperJs,
        '--dmi-socket',
        join(tmp, devicesProc.node!, 'dmi.sock'),
        '--socket',
        join(tmp, 'virtual.sock'),
        '--log-level',
        env.BENCH_MAPPER_LOG_LEVEL ?? 'warn',
        '--log-format',
        'json',
      ],
      { env: cleanEnv(), cwd: tmp, keepLines: 500 },
    );
    onCleanup(() => mapper.stop(5000));
    // Live end to end: every device has a reported twin in its DeviceStatus.
    const tLive = Date.now();
    let liveAtStart = 0;
    for (;;) {
      const s = await fleetStatus(objects, 0);
      liveAtStart = s.reported;
      if (s.reported >= DEVICES) break;
      if (!mapper.alive()) throw new Error(`mapper exited:\n${mapper.tail()}`);
      if (Date.now() - tLive > 180_000) {
        // Measured anyway when most are live; the shortfall is in the results.
        if (s.reported < DEVICES * 0.95) throw new Error(`only ${s.reported}/${DEVICES} DeviceStatus objects with a reported twin after 180 s; mapper:\n${mapper.tail()}`);
        process.stderr.write(`WARNING: only ${s.reported}/${DEVICES} devices reported after 180 s; measuring anyway. Mapper:\n${mapper.tail(5)}\n`);
        break;
      }
      await sleep(3000);
    }
    const liveAfterS = round((Date.now() - tLive) / 1000);
    process.stderr.write(
      `every EdgeCore Ready; mem-devices held ${DEVICES} Devices after ${syncedAfterS} s; ${liveAtStart}/${DEVICES} DeviceStatus objects reported ${liveAfterS} s after the mapper started; sampling every ${INTERVAL_S} s for ${MINUTES} min…\n`,
    );
    publisher = startTwinPublisher(mqttPort);

    // The mapper and CloudCore are sampled too, for the record (not part of EdgeCore's figure).
    const others: Sampled[] = [
      { name: 'virtual mapper (not measured)', kind: 'mapper', svc: mapper, samples: [] },
      { name: 'cloudcore (not measured)', kind: 'cloud', svc: cloud.svc, samples: [] },
    ];
    const measured: Sampled[] = [...procs, ...others];
    const shots = new Map<Kind, Record<string, string>>();
    const snapshot = async (label: string) => {
      for (const p of procs) if (p.svc && p.kind !== 'bare' && p.svc.alive()) process.kill(p.svc.pid, 'SIGUSR2');
      // A snapshot is complete once its size stops changing (tens of MB take several seconds on a busy machine).
      let last = -1;
      for (let i = 0; i < 60; i++) {
        await sleep(2000);
        const size = readdirSync(tmp)
          .filter((x) => x.endsWith('.heapsnapshot'))
          .reduce((sum, x) => sum + statSync(join(tmp, x)).size, 0);
        if (size > 0 && size === last) break;
        last = size;
      }
      // Node names them Heap.<date>.<pid>.<tid>.<seq>.heapsnapshot in --diagnostic-dir.
      for (const f of readdirSync(tmp).filter((x) => x.endsWith('.heapsnapshot'))) {
        const p = procs.find((x) => x.svc && f.includes(`.${x.svc.pid}.`));
        if (!p) continue;
        const dest = join(heapDir, `devices-${p.kind}-${label}-${RUN_ID}.heapsnapshot`);
        renameSync(join(tmp, f), dest);
        shots.set(p.kind, { ...shots.get(p.kind), [label]: dest });
      }
    };
    const fresh: { atS: number; fresh: number }[] = [];
    const begin = Date.now();
    let shotEarly = false;
    let lastFreshCheck = begin;
    while (Date.now() - begin < MINUTES * 60_000) {
      const at = (Date.now() - begin) / 1000;
      load.sample();
      for (const p of measured) {
        if (p.exited || !p.svc?.alive()) continue;
        try {
          p.samples.push([at, readRss(p.svc.pid)]);
        } catch {
          // gone between the check and the read
        }
      }
      if (at % 60 < INTERVAL_S) {
        const line = measured
          .map((p) => `${p.kind}: ${((p.samples.at(-1)?.[1].rss ?? 0) / MiB).toFixed(1)}/${((p.samples.at(-1)?.[1].rssAnon ?? 0) / MiB).toFixed(1)}`)
          .join(' | ');
        const c = publisher.counts();
        process.stderr.write(
          `[${Math.floor(at / 60)} min] RSS/RssAnon MiB ${line}; mqtt ${c.published} sent/${c.applied} ok/${c.refused} refused; load ${os.loadavg()[0]!.toFixed(2)}\n`,
        );
      }
      if (Date.now() - lastFreshCheck >= 5 * 60_000) {
        lastFreshCheck = Date.now();
        const s = await fleetStatus(objects, Date.now() - 60_000).catch(() => undefined);
        if (s) {
          fresh.push({ atS: Math.round(at), fresh: s.freshSince });
          process.stderr.write(`  DeviceStatus with a reported value from the last 60 s: ${s.freshSince}/${DEVICES}\n`);
        }
      }
      if (HEAP && !shotEarly && at >= 120) {
        shotEarly = true;
        await snapshot('2min');
      }
      await sleep(INTERVAL_S * 1000);
    }
    if (HEAP) await snapshot('end');
    const end = await fleetStatus(objects, Date.now() - 60_000);
    fresh.push({ atS: Math.round((Date.now() - begin) / 1000), fresh: end.freshSince });
    const mqtt = publisher.counts();
    const mapperProblems = mapper.lines.filter((l) => /"level":"(warn|error)"/.test(l.line)).map((l) => l.line.slice(0, 300));
    const edgeProblems = procs.flatMap((p) => (p.svc && p.kind !== 'bare' ? p.svc.lines.map((l) => `${p.kind}: ${l.line.slice(0, 300)}`) : []));
    stopping = true;
    report(procs, others, {
      started,
      load: load.summary(),
      bundles,
      liveAfterS,
      liveAtStart,
      syncedAfterS,
      fresh,
      statusObjects: end,
      mqtt,
      mapperAlive: mapper.alive(),
      mapperProblems,
      edgeProblems,
      heap: heapGrowth(shots),
      heapDevices: heapPerDevices(shots),
    });
  } finally {
    stopping = true;
    await publisher?.stop();
    clearTimeout(watchdog);
  }
}

interface HeapGrowth {
  kind: Kind;
  liveHeapMiBAt2Min: number;
  liveHeapMiBAtEnd: number;
  growth: { name: string; bytes: number; count: number }[];
}

function heapGrowth(shots: Map<Kind, Record<string, string>>): HeapGrowth[] {
  const out: HeapGrowth[] = [];
  for (const [kind, files] of shots) {
    if (!files['2min'] || !files.end) continue;
    const a = summarizeHeapSnapshot(files['2min']);
    const b = summarizeHeapSnapshot(files.end);
    out.push({ kind, liveHeapMiBAt2Min: round(a.totalBytes / MiB, 2), liveHeapMiBAtEnd: round(b.totalBytes / MiB, 2), growth: diffHeapSummaries(a, b) });
  }
  return out;
}

/** What the devices add to the live heap: the devices EdgeCore's end snapshot against the no-devices one's (BENCH_HEAP=1). */
function heapPerDevices(shots: Map<Kind, Record<string, string>>): { devicesMiB: number; noDevicesMiB: number; top: { name: string; bytes: number; count: number }[] } | undefined {
  const a = shots.get('nodevices')?.end;
  const b = shots.get('devices')?.end;
  if (!a || !b) return undefined;
  const sa = summarizeHeapSnapshot(a);
  const sb = summarizeHeapSnapshot(b);
  return { devicesMiB: round(sb.totalBytes / MiB, 2), noDevicesMiB: round(sa.totalBytes / MiB, 2), top: diffHeapSummaries(sa, sb, 20) };
}

function stats(samples: [number, RssSample][]) {
  const steady = samples.filter(([t]) => t >= STEADY_FROM_MIN * 60);
  const trend = samples.filter(([t]) => t >= SLOPE_FROM_MIN * 60);
  const per10 = (f: (s: RssSample) => number) => round((slope(trend.map(([t, s]) => [t, f(s)])) * 600) / MiB, 2);
  return {
    rss: median(steady.map(([, s]) => s.rss)),
    rssAnon: median(steady.map(([, s]) => s.rssAnon)),
    rssFile: median(steady.map(([, s]) => s.rssFile)),
    maxRss: Math.max(...steady.map(([, s]) => s.rss)),
    minRss: Math.min(...steady.map(([, s]) => s.rss)),
    slopeRss: per10((s) => s.rss),
    slopeAnon: per10((s) => s.rssAnon),
  };
}

function report(
  procs: Proc[],
  others: Sampled[],
  extra: {
    started: number;
    load: { min: number; max: number; mean: number };
    bundles: ReturnType<typeof snapshotBundles>;
    liveAfterS: number;
    liveAtStart: number;
    syncedAfterS: number;
    fresh: { atS: number; fresh: number }[];
    statusObjects: { objects: number; reported: number; freshSince: number };
    mqtt: { published: number; applied: number; refused: number; reasons: string[] };
    mapperAlive: boolean;
    mapperProblems: string[];
    edgeProblems: string[];
    heap: HeapGrowth[];
    heapDevices: ReturnType<typeof heapPerDevices>;
  },
): void {
  const bare = stats(procs[0]!.samples);
  const rows = procs.map((p) => {
    const s = stats(p.samples);
    return {
      name: p.name,
      kind: p.kind,
      exited: p.exited,
      samples: p.samples.length,
      rssMiB: round(s.rss / MiB),
      rssAnonMiB: round(s.rssAnon / MiB),
      rssFileMiB: round(s.rssFile / MiB),
      maxRssMiB: round(s.maxRss / MiB),
      deltaRssMiB: round((s.rss - bare.rss) / MiB),
      deltaRssVsBareLowMiB: round((s.rss - bare.minRss) / MiB),
      deltaRssAnonMiB: round((s.rssAnon - bare.rssAnon) / MiB),
      deltaRssMB: round((s.rss - bare.rss) / MB),
      deltaRssVsBareLowMB: round((s.rss - bare.minRss) / MB),
      slopeRssMiBPer10Min: s.slopeRss,
      slopeRssAnonMiBPer10Min: s.slopeAnon,
    };
  });
  const side = others.map((o) => {
    const s = stats(o.samples);
    return { name: o.name, rssMiB: round(s.rss / MiB), rssAnonMiB: round(s.rssAnon / MiB), slopeRssMiBPer10Min: s.slopeRss };
  });
  console.log(`\nDevices: EdgeCore memory (its pid only), medians from minute ${STEADY_FROM_MIN} to ${MINUTES}, slopes from minute ${SLOPE_FROM_MIN}\n`);
  console.log(
    '| process | RSS MiB | RssAnon MiB | RssFile MiB | max RSS MiB | Δ RSS MiB | Δ RSS vs bare low MiB | Δ RssAnon MiB | RSS slope MiB/10 min | RssAnon slope MiB/10 min |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.name}${r.exited ? ' (EXITED)' : ''} | ${r.rssMiB} | ${r.rssAnonMiB} | ${r.rssFileMiB} | ${r.maxRssMiB} | ${r.deltaRssMiB} | ${r.deltaRssVsBareLowMiB} | ${r.deltaRssAnonMiB} | ${r.slopeRssMiBPer10Min} | ${r.slopeRssAnonMiBPer10Min} |`,
    );
  }
  for (const o of side) console.log(`  ${o.name}: RSS ${o.rssMiB} MiB, RssAnon ${o.rssAnonMiB} MiB, slope ${o.slopeRssMiBPer10Min} MiB/10 min`);
  const dev = rows.find((r) => r.kind === 'devices')!;
  const nodev = rows.find((r) => r.kind === 'nodevices')!;
  const nobroker = rows.find((r) => r.kind === 'nobroker')!;
  const worst = Math.max(dev.deltaRssMB, dev.deltaRssVsBareLowMB);
  const verdicts = [
    `${DEVICES} twins: Δ RSS ${dev.deltaRssMB} MB over bare Node (${dev.deltaRssVsBareLowMB} MB over its lowest sample; target ≤ ${TARGET_DELTA_MB} MB: ${worst <= TARGET_DELTA_MB ? 'met' : 'MISSED'}); slope ${dev.slopeRssMiBPer10Min} MiB/10 min RSS, ${dev.slopeRssAnonMiBPer10Min} RssAnon`,
    `${DEVICES} twins over no devices: +${round(dev.rssMiB - nodev.rssMiB)} MiB RSS, +${round(dev.rssAnonMiB - nodev.rssAnonMiB)} MiB RssAnon (${round(((dev.rssMiB - nodev.rssMiB) * MiB) / DEVICES / 1024, 1)} KiB per device)`,
    `broker + DMI at idle (default vs --mqtt-mode off, DMI off): ${round(nodev.rssMiB - nobroker.rssMiB)} MiB RSS, ${round(nodev.rssAnonMiB - nobroker.rssAnonMiB)} MiB RssAnon`,
    `twins live: ${extra.statusObjects.freshSince}/${DEVICES} DeviceStatus objects with a reported value from the last 60 s at the end (${extra.fresh.map((f) => `${f.fresh} at ${f.atS} s`).join(', ')}); ${extra.liveAtStart}/${DEVICES} reported ${extra.liveAfterS} s after the mapper started (mem-devices held all ${DEVICES} Devices ${extra.syncedAfterS} s after Ready)`,
    `mqtt twin/update: ${extra.mqtt.published} published, ${extra.mqtt.applied} results ok, ${extra.mqtt.refused} refused${extra.mqtt.reasons.length ? ` (${extra.mqtt.reasons.join('; ')})` : ''}; mapper ${extra.mapperAlive ? 'alive' : 'EXITED'}, ${extra.mapperProblems.length} warn/error lines`,
  ];
  console.log(`\n${verdicts.join('\n')}`);
  for (const r of rows.filter((x) => x.exited)) console.log(`  ${r.name}: ${r.exited}`);
  for (const l of extra.mapperProblems.slice(0, 5)) console.log(`  mapper: ${l}`);
  for (const l of extra.edgeProblems.slice(0, 8)) console.log(`  ${l}`);
  for (const h of extra.heap) {
    console.log(`\nlive heap of ${h.kind} (heap snapshots, after a full GC): ${h.liveHeapMiBAt2Min} MiB at minute 2 → ${h.liveHeapMiBAtEnd} MiB at the end; grew most:`);
    for (const g of h.growth.filter((x) => x.bytes !== 0)) console.log(`  ${g.bytes > 0 ? '+' : ''}${g.bytes} B, ${g.count > 0 ? '+' : ''}${g.count} × ${g.name}`);
  }
  if (extra.heapDevices) {
    const h = extra.heapDevices;
    console.log(`\nlive heap at the end: ${h.devicesMiB} MiB with ${DEVICES} devices, ${h.noDevicesMiB} MiB without; the devices add most:`);
    for (const g of h.top) console.log(`  ${g.bytes > 0 ? '+' : ''}${g.bytes} B, ${g.count > 0 ? '+' : ''}${g.count} × ${g.name}`);
  }
  console.log(
    `Node ${process.version}, ${os.cpus().length} cores, load average ${extra.load.min}–${extra.load.max} (mean ${extra.load.mean}); edgecore.js ${extra.bundles.edgecoreBytes} bytes (sha256 ${extra.bundles.edgecoreSha256}, built ${extra.bundles.edgecoreBuiltAt}). Took ${((Date.now() - extra.started) / 60000).toFixed(1)} min.`,
  );
  const file = writeResult(HEAP ? 'devices-memory-heap' : env.BENCH_NODE_FLAGS ? 'devices-memory-flags' : 'devices-memory', {
    settings: {
      minutes: MINUTES,
      intervalS: INTERVAL_S,
      steadyFromMin: STEADY_FROM_MIN,
      slopeFromMin: SLOPE_FROM_MIN,
      devices: DEVICES,
      reportCycleMs: CYCLE_MS,
      stateCycleMs: STATE_CYCLE_MS,
      mqttPeriodMs: MQTT_PERIOD_MS,
      heap: HEAP,
      nodeFlags: (env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean),
    },
    edgecore: { bytes: extra.bundles.edgecoreBytes, sha256: extra.bundles.edgecoreSha256, builtAt: extra.bundles.edgecoreBuiltAt },
    loadAvg: extra.load,
    verdicts,
    rows,
    notMeasured: side,
    liveness: {
      syncedAfterS: extra.syncedAfterS,
      liveAtStart: extra.liveAtStart,
      liveAfterS: extra.liveAfterS,
      fresh: extra.fresh,
      statusObjects: extra.statusObjects,
      mqtt: extra.mqtt,
      mapperAlive: extra.mapperAlive,
      mapperProblems: extra.mapperProblems,
    },
    edgeLogLines: extra.edgeProblems.slice(0, 50),
    heapGrowth: extra.heap,
    heapDevices: extra.heapDevices,
    series: [...procs, ...others].map((p) => ({
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
    process.stderr.write(`devices-memory failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => runCleanup());
