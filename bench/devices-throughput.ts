/**
 * Devices: throughput. Twin updates end to end (mapper → EdgeCore → CloudCore → DeviceStatus) with
 * 1,000 devices on one node, at CloudCore's default DeviceStatus write ceiling and at a higher one,
 * and MQTT messages/s through EdgeCore's embedded broker, with EdgeCore's CPU and memory per phase.
 *
 * Needs dist/ (`npm run build`). Processes, all on this machine:
 *  - the local control plane: `dist/ledge.js apiserver` (startApiServer: TLS, token, fsync on);
 *  - CloudCore: `dist/ledge.js cloud --kubeconfig …` on a fixed loopback port, restarted between
 *    the two DMI phases with `--device-status-writes-per-second` (the edge reconnects to it);
 *  - one EdgeCore: `dist/edgecore.js --cloud … --node-name bench-1 --data-dir … --mqtt-port 0
 *    --dmi-socket dmi.sock --config edge.yaml` (the file raises the broker's per-client publish
 *    limit, see phase 2);
 *  - in this process: @kubernetes/client-node (creates 1 DeviceModel and BENCH_DEVICES (1,000)
 *    Devices with CustomObjectsApi, watches devicestatuses), a DMI mapper (bench/lib/devices-dmi.ts)
 *    and the MQTT subscriber; MQTT publishers in a child (bench/lib/devices-mqtt-pub.ts).
 *
 * Phase 1, per ceiling (default 50/s, then BENCH_HIGH_CEILING (500)/s): every device reports
 * (ReportDeviceStatus, 2 twins) once per second for BENCH_WARMUP_SECONDS (10) + BENCH_SECONDS (60);
 * measured over the last BENCH_SECONDS: reports offered/s and accepted/s (DMI call results),
 * DeviceStatus writes/s seen in the watch (resourceVersion changes) and how many carried a new value,
 * the age of the value when it lands in the watch (now − `sampledAt`, the report time the mapper
 * put in the twin), the interval between two updates of one device's DeviceStatus, the age of every
 * device's DeviceStatus at the end of the window (what a reader sees), CPU of EdgeCore, CloudCore and
 * the API server (from /proc/PID/stat), EdgeCore's RSS/RssAnon at the end.
 * Phase 2, QoS 0 flood, QoS 0 paced at BENCH_MQTT_PACED (5,000)/s in all, QoS 1 flood (a window of
 * 64 unacknowledged per publisher): BENCH_MQTT_PUBLISHERS (4) publishers send ~100-byte twin updates on
 * `bench/devices/<i>/twin/update` (not `$hw/…`: DeviceTwin would handle them too, and this measures
 * the broker), one subscriber on `bench/devices/#`; delivered messages/s at the subscriber over
 * BENCH_MQTT_SECONDS (20) after 3 s of warm-up, EdgeCore's CPU and memory. Then the same floods (QoS 0
 * and 1) through a second EdgeCore (node bench-1-jit, no devices) started with `--jit` after the
 * first one is stopped: EdgeCore runs interpreted by default. Publishers stay connected until the
 * subscriber has everything (a client closing early loses its last QoS 0 publishes, see the docs).
 *
 * Run:  node --import tsx bench/devices-throughput.ts        (about 5–6 minutes)
 * Writes bench/results/devices-throughput.json. Reports; never fails on a missed target.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { withKeepAlive } from '../cloud/kube/index.js';
import { DEVICE_GROUP, DEVICE_MODEL_PLURAL, DEVICE_PLURAL, DEVICE_STATUS_PLURAL, DEVICE_VERSION } from '../shared/devices/index.js';
import { bundleHelpers, forkTracked, killAll, root, sleep, spawnTracked, stopChild, waitMessage, type Tracked } from './lib/children.js';
import { SAMPLED_AT, TEMPERATURE, startDmiMapper, type DmiCounters } from './lib/devices-dmi.js';
import { connectRaw } from './lib/devices-mqtt.js';
import { MiB, percentile, readCpuMs, readRss } from './lib/rss.js';

const env = process.env;
const DEVICES = Number(env.BENCH_DEVICES ?? 1000);
const SECONDS = Number(env.BENCH_SECONDS ?? 60);
const WARMUP_S = Number(env.BENCH_WARMUP_SECONDS ?? 10);
const HIGH_CEILING = Number(env.BENCH_HIGH_CEILING ?? 500);
const MQTT_PUBLISHERS = Number(env.BENCH_MQTT_PUBLISHERS ?? 4);
const MQTT_SECONDS = Number(env.BENCH_MQTT_SECONDS ?? 20);
const MQTT_WARMUP_S = 3;
const MQTT_QOS1_WINDOW = 64;
const MQTT_PACED = Number(env.BENCH_MQTT_PACED ?? 5000);
const PERIOD_MS = 1000;
const MAX_IN_FLIGHT = 1000;
const NODE = 'bench-1';
const NS = 'default';
const PROTOCOL = 'benchProtocol';
const MODEL = 'bench-sensor';
const DEFAULT_CEILING = 50;
const PUBLISH_LIMIT = 1_000_000;

// --- child processes with their log lines ---------------------------------------------------

interface Service {
  name: string;
  t: Tracked;
  pid: number;
  /** Waits for a stderr line matching `re` (lines from now on, and the ones already seen). */
  waitLine(re: RegExp, timeoutMs: number, since?: number): Promise<RegExpExecArray>;
  /** Lines so far (a mark for waitLine). */
  lineCount(): number;
  /** warn / error lines: counts and the first ones. */
  problems: { warn: number; error: number; first: string[] };
}

function service(name: string, args: string[]): Service {
  const t = spawnTracked(process.execPath, args, {
    cwd: root,
    env: {
      PATH: env.PATH ?? '',
      HOME: env.HOME ?? '/root',
      LEDGE_LOG_FORMAT: 'json',
      // Free ports instead of the defaults (10350, 10550), which other runs on this machine may hold.
      LEDGE_STREAM_PORT: '0',
      LEDGE_METASERVER_PORT: '0',
    },
  });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const problems = { warn: 0, error: 0, first: [] as string[] };
  let partial = '';
  t.child.stderr?.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      // Keep only what a waiter or the report can need: info lines of interest and problems.
      const level = /"level":"(\w+)"/.exec(line)?.[1];
      if (level === 'warn' || level === 'error') {
        problems[level]++;
        if (problems.first.length < 25) problems.first.push(line.slice(0, 600));
      }
      lines.push(line.length > 2000 ? line.slice(0, 2000) : line);
      if (lines.length > 20_000) lines.splice(0, 10_000);
    }
    for (const w of waiters) w();
  });
  return {
    name,
    t,
    pid: t.child.pid ?? 0,
    problems,
    lineCount: () => lines.length,
    waitLine(re, timeoutMs, since = 0) {
      return new Promise((resolve, reject) => {
        let from = since;
        const check = () => {
          for (; from < lines.length; from++) {
            const m = re.exec(lines[from]!);
            if (m) {
              done();
              resolve(m);
              return;
            }
          }
          if (t.child.exitCode !== null || t.child.signalCode !== null) {
            done();
            reject(new Error(`${name} exited (${t.child.exitCode ?? t.child.signalCode}) while waiting for ${re}: ${t.stderrTail().slice(-800)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${name}: no line matching ${re} within ${timeoutMs} ms; last: ${lines.slice(-5).join('\n')}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function cpuMs(pid: number): number {
  try {
    return readCpuMs(pid);
  } catch {
    return Number.NaN;
  }
}

const round = (x: number, d = 1): number => +x.toFixed(d);

// --- DeviceStatus watch -------------------------------------------------------------------

interface StatusObj {
  metadata?: { name?: string; resourceVersion?: string };
  status?: { twins?: { propertyName?: string; reported?: { value?: string } }[] };
}

/** Counts DeviceStatus writes and value changes from a watch; per device the last value and when it changed. */
class StatusWatch {
  writes = 0;
  changes = 0;
  /** Landing ages (ms) and per-device update intervals (ms) since the last reset. */
  ages: number[] = [];
  intervals: number[] = [];
  events = 0;
  restarts = 0;
  readonly last = new Map<string, { rv: string; sampled: number; changedAt: number }>();
  private abort: AbortController | undefined;
  private stopped = false;
  private rv: string | undefined;

  constructor(private readonly kc: k8s.KubeConfig) {}

  async start(): Promise<void> {
    const path = `/apis/${DEVICE_GROUP}/${DEVICE_VERSION}/namespaces/${NS}/${DEVICE_STATUS_PLURAL}`;
    const go = async (): Promise<void> => {
      if (this.stopped) return;
      this.abort = await new k8s.Watch(this.kc).watch(
        path,
        this.rv ? { resourceVersion: this.rv, allowWatchBookmarks: true } : { allowWatchBookmarks: true },
        (type: string, obj: StatusObj) => this.onEvent(type, obj),
        (err: unknown) => {
          if (this.stopped) return;
          this.restarts++;
          if (err && /410|Gone|too old/i.test(String((err as Error).message ?? err))) this.rv = undefined;
          setTimeout(() => void go().catch(() => setTimeout(() => void go(), 1000)), 200);
        },
      );
    };
    await go();
  }

  private onEvent(type: string, obj: StatusObj): void {
    this.events++;
    const rv = obj.metadata?.resourceVersion;
    if (rv) this.rv = rv;
    if (type !== 'ADDED' && type !== 'MODIFIED') return;
    const name = obj.metadata?.name;
    if (!name || !rv) return;
    const now = Date.now();
    const prev = this.last.get(name);
    if (prev?.rv === rv) return;
    this.writes++;
    const v = obj.status?.twins?.find((t) => t.propertyName === SAMPLED_AT)?.reported?.value;
    const sampled = v === undefined ? Number.NaN : Number(v);
    if (Number.isFinite(sampled) && sampled !== prev?.sampled) {
      this.changes++;
      this.ages.push(now - sampled);
      if (prev && Number.isFinite(prev.sampled)) this.intervals.push(now - prev.changedAt);
      this.last.set(name, { rv, sampled, changedAt: now });
    } else this.last.set(name, { rv, sampled: prev?.sampled ?? sampled, changedAt: prev?.changedAt ?? now });
  }

  reset(): void {
    this.writes = 0;
    this.changes = 0;
    this.ages = [];
    this.intervals = [];
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }
}

// --- phases ---------------------------------------------------------------------------------

interface DmiRow {
  ceiling: number;
  seconds: number;
  offeredPerS: number;
  acceptedPerS: number;
  skipped: number;
  /** Duration of a ReportDeviceStatus call as the mapper sees it (waiting for a stream included). */
  callMs: { p50: number; p99: number; max: number; peakInFlight: number };
  /** EdgeCore CPU time per accepted report (everything EdgeCore did in the window ÷ reports accepted). */
  edgeCpuMsPerReport: number;
  errors: Record<string, number>;
  errorSamples: Record<string, string>;
  statusWritesPerS: number;
  valueChangesPerS: number;
  landingAgeMs: { p50: number; p99: number; max: number; samples: number };
  updateIntervalS: { p50: number; p99: number; samples: number };
  readerAgeAtEndS: { p50: number; p99: number; max: number; devicesSeen: number };
  cpuCores: { edgecore: number; cloudcore: number; apiserver: number; bench: number };
  edgeRssMiB: number;
  edgeRssAnonMiB: number;
  edgeRssSeries: [number, number][];
}

interface MqttRow {
  edgecore: 'default' | '--jit';
  qos: 0 | 1;
  load: string;
  publishers: number;
  seconds: number;
  deliveredPerS: number;
  publishedTotal: number;
  deliveredTotal: number;
  publishRatePerS: number;
  /** From the publishers' deadline until the subscriber had everything (or stopped receiving for 2 s). */
  drainAfterDeadlineS: number;
  latencyMs: { p50: number; p99: number; samples: number };
  cpuCores: { edgecore: number; publishers: number; bench: number };
  edgeRssMiB: number;
  edgeRssAnonMiB: number;
  edgeRssSeries: [number, number][];
}

function pct(sorted: number[], p: number): number {
  return sorted.length ? percentile(sorted, p) : Number.NaN;
}

/** CPU cores each process used between two samples of their CPU time (ms), over `wallS` seconds. */
function coresOver<K extends string>(before: Record<K, number>, after: Record<K, number>, wallS: number): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of Object.keys(before) as K[]) out[k] = round((after[k] - before[k]) / 1000 / wallS, 2);
  return out;
}

async function main(): Promise<void> {
  for (const f of ['ledge.js', 'edgecore.js']) {
    if (!existsSync(join(root, 'dist', f))) {
      console.error(`dist/${f} not found: run \`npm run build\` first.`);
      process.exitCode = 1;
      return;
    }
  }
  const started = Date.now();
  const budgetMs = (2 * (WARMUP_S + SECONDS) + 5 * (MQTT_SECONDS + MQTT_WARMUP_S + 35) + 240) * 1000;
  const watchdog = setTimeout(() => {
    process.stderr.write('devices-throughput: watchdog fired; killing children\n');
    killAll();
    process.exit(1);
  }, budgetMs);
  watchdog.unref();
  const log = (s: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${s}\n`);

  const tmp = mkdtempSync(join(os.tmpdir(), 'ledge-devices-bench-'));
  const kubeconfig = join(tmp, 'kubeconfig');
  const services: Service[] = [];
  const dmiRows: DmiRow[] = [];
  const mqttRows: MqttRow[] = [];
  const notes: string[] = [];
  let watch: StatusWatch | undefined;
  let mapper: Awaited<ReturnType<typeof startDmiMapper>> | undefined;
  let pubs: Tracked | undefined;
  const edgeProblemsByPhase: Record<string, { warn: number; error: number }> = {};
  let idleWithDevices: { rssMiB: number; rssAnonMiB: number } | undefined;
  let setup: { createSeconds: number; devicesAtEdgeSeconds: number } | undefined;
  try {
    const helpers = await bundleHelpers(['devices-mqtt-pub']);
    const api = service('apiserver', [
      join(root, 'dist/ledge.js'),
      'apiserver',
      '--data-dir',
      join(tmp, 'api'),
      '--port',
      '0',
      '--write-kubeconfig',
      kubeconfig,
      '--log-level',
      'warn',
    ]);
    services.push(api);
    for (let i = 0; !existsSync(kubeconfig); i++) {
      if (i > 300) throw new Error(`apiserver did not start: ${api.t.stderrTail().slice(-800)}`);
      await sleep(100);
    }
    await sleep(300);
    const kc = withKeepAlive(new k8s.KubeConfig());
    kc.loadFromFile(kubeconfig);
    const objects = kc.makeApiClient(k8s.CustomObjectsApi);

    const cloudPort = await freePort();
    let cloud: Service | undefined;
    const startCloud = async (identity: string, extra: string[]): Promise<Service> => {
      const s = service(identity, [
        join(root, 'dist/ledge.js'),
        'cloud',
        '--kubeconfig',
        kubeconfig,
        '--bind-address',
        '127.0.0.1',
        '--insecure-plain-websocket',
        '--port',
        String(cloudPort),
        '--identity',
        identity,
        '--log-level',
        'info',
        ...extra,
      ]);
      services.push(s);
      await s.waitLine(/"msg":"cloudcore started"/, 60_000);
      return s;
    };
    cloud = await startCloud('cloud-a', []);
    log('CloudCore started');

    const edgeYaml = join(tmp, 'edge.yaml');
    writeFileSync(
      edgeYaml,
      `# bench/devices-throughput.ts: the broker's per-client publish limit raised (phase 2 floods)\neventBus:\n  internal:\n    publishesPerSecond: ${PUBLISH_LIMIT}\n    publishBurst: ${PUBLISH_LIMIT}\n`,
    );
    const startEdge = async (node: string, extra: string[]): Promise<{ svc: Service; mqttPort: number }> => {
      const svc = service(extra.length ? `edgecore ${extra.join(' ')}` : 'edgecore', [
        join(root, 'dist/edgecore.js'),
        '--cloud',
        `ws://127.0.0.1:${cloudPort}/v1/edge`,
        '--node-name',
        node,
        '--data-dir',
        join(tmp, node),
        '--mqtt-port',
        '0',
        '--dmi-socket',
        'dmi.sock',
        '--config',
        edgeYaml,
        '--reconnect-max-ms',
        '1000',
        '--log-level',
        'info',
        ...extra,
      ]);
      services.push(svc);
      const m = await svc.waitLine(/"msg":"MQTT broker listening".*"url":"mqtt:\/\/127\.0\.0\.1:(\d+)"/, 30_000);
      return { svc, mqttPort: Number(m[1]) };
    };
    const dataDir = join(tmp, NODE);
    const first = await startEdge(NODE, []);
    const edge = first.svc;
    const mqttPort = first.mqttPort;
    await cloud.waitLine(new RegExp(`node ${NODE} connected`), 30_000);
    log(`EdgeCore connected; broker on port ${mqttPort}`);

    // Devices: one model, DEVICES devices, 16 creates in flight.
    const dev = { group: DEVICE_GROUP, version: DEVICE_VERSION, namespace: NS };
    await objects.createNamespacedCustomObject({
      ...dev,
      plural: DEVICE_MODEL_PLURAL,
      body: {
        apiVersion: `${DEVICE_GROUP}/${DEVICE_VERSION}`,
        kind: 'DeviceModel',
        metadata: { name: MODEL, namespace: NS },
        spec: {
          protocol: PROTOCOL,
          properties: [
            { name: TEMPERATURE, type: 'FLOAT', accessMode: 'ReadOnly', minimum: '-40', maximum: '125', unit: 'Celsius' },
            { name: SAMPLED_AT, type: 'INT', accessMode: 'ReadOnly', unit: 'ms' },
          ],
        },
      },
    });
    const names = Array.from({ length: DEVICES }, (_, i) => `sensor-${String(i).padStart(4, '0')}`);
    const property = (name: string) => ({ name, visitors: { protocolName: PROTOCOL, configData: { register: name } }, collectCycle: 1000, reportCycle: 1000, reportToCloud: true });
    const tCreate = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < names.length; i = next++) {
          await objects.createNamespacedCustomObject({
            ...dev,
            plural: DEVICE_PLURAL,
            body: {
              apiVersion: `${DEVICE_GROUP}/${DEVICE_VERSION}`,
              kind: 'Device',
              metadata: { name: names[i], namespace: NS },
              spec: { deviceModelRef: { name: MODEL }, nodeName: NODE, protocol: { protocolName: PROTOCOL }, properties: [property(TEMPERATURE), property(SAMPLED_AT)] },
            },
          });
        }
      }),
    );
    const createS = (Date.now() - tCreate) / 1000;
    log(`${DEVICES} Devices created in ${createS.toFixed(1)} s`);

    mapper = await startDmiMapper(join(dataDir, 'dmi.sock'), join(tmp, 'bench-mapper.sock'), PROTOCOL);
    const held = await mapper.registerUntil(DEVICES, 120_000);
    const toEdgeS = (Date.now() - tCreate) / 1000;
    if (held < DEVICES) throw new Error(`EdgeCore lists ${held} of ${DEVICES} devices for the mapper after 120 s`);
    log(`the mapper got ${held} devices from EdgeCore (${toEdgeS.toFixed(1)} s after the first create)`);

    watch = new StatusWatch(kc);
    await watch.start();
    await sleep(3000);
    const idleRss = readRss(edge.pid);
    idleWithDevices = { rssMiB: round(idleRss.rss / MiB), rssAnonMiB: round(idleRss.rssAnon / MiB) };
    log(`EdgeCore holding ${DEVICES} devices, before any report: RSS ${idleWithDevices.rssMiB} MiB, RssAnon ${idleWithDevices.rssAnonMiB} MiB`);
    setup = { createSeconds: round(createS), devicesAtEdgeSeconds: round(toEdgeS) };

    const runDmi = async (ceiling: number): Promise<DmiRow> => {
      const m = mapper!;
      const w = watch!;
      const c = cloud!;
      const edgeBefore = { ...edge.problems };
      m.start(names, NS, PERIOD_MS, MAX_IN_FLIGHT);
      await sleep(WARMUP_S * 1000);
      const c0 = m.counters();
      m.takeLatencies();
      w.reset();
      const t0 = Date.now();
      const cpu0 = { edgecore: cpuMs(edge.pid), cloudcore: cpuMs(c.pid), apiserver: cpuMs(api.pid), bench: cpuMs(process.pid) };
      const series: [number, number][] = [];
      while (Date.now() - t0 < SECONDS * 1000) {
        await sleep(Math.min(5000, SECONDS * 1000 - (Date.now() - t0)));
        try {
          series.push([Math.round((Date.now() - t0) / 1000), round(readRss(edge.pid).rss / MiB)]);
        } catch {
          // EdgeCore gone: reported below
        }
      }
      const wallS = (Date.now() - t0) / 1000;
      const cpu1 = { edgecore: cpuMs(edge.pid), cloudcore: cpuMs(c.pid), apiserver: cpuMs(api.pid), bench: cpuMs(process.pid) };
      const c1 = m.counters();
      const calls = m.takeLatencies();
      const callMs = calls.latencies.sort((a, b) => a - b);
      const rss = readRss(edge.pid);
      const end = Date.now();
      const readerAges = names
        .map((n) => w.last.get(n)?.sampled)
        .filter((x): x is number => x !== undefined && Number.isFinite(x))
        .map((s) => (end - s) / 1000);
      const writes = w.writes;
      const changes = w.changes;
      const ages = [...w.ages].sort((a, b) => a - b);
      const intervals = [...w.intervals].sort((a, b) => a - b).map((x) => x / 1000);
      readerAges.sort((a, b) => a - b);
      await m.stop();
      const diff = (a: DmiCounters, b: DmiCounters) => {
        const errors: Record<string, number> = {};
        for (const [k, v] of Object.entries(b.errors)) if (v - (a.errors[k] ?? 0) > 0) errors[k] = v - (a.errors[k] ?? 0);
        return { offered: b.offered - a.offered, ok: b.ok - a.ok, skipped: b.skipped - a.skipped, errors };
      };
      const d = diff(c0, c1);
      edgeProblemsByPhase[`dmi ${ceiling}/s`] = { warn: edge.problems.warn - edgeBefore.warn, error: edge.problems.error - edgeBefore.error };
      return {
        ceiling,
        seconds: round(wallS),
        offeredPerS: round(d.offered / wallS),
        acceptedPerS: round(d.ok / wallS),
        skipped: d.skipped,
        callMs: { p50: round(pct(callMs, 50)), p99: round(pct(callMs, 99)), max: round(callMs.at(-1) ?? Number.NaN), peakInFlight: calls.peakInFlight },
        edgeCpuMsPerReport: round((cpu1.edgecore - cpu0.edgecore) / Math.max(1, d.ok), 2),
        errors: d.errors,
        errorSamples: c1.errorSamples,
        statusWritesPerS: round(writes / wallS),
        valueChangesPerS: round(changes / wallS),
        landingAgeMs: { p50: pct(ages, 50), p99: pct(ages, 99), max: ages.at(-1) ?? Number.NaN, samples: ages.length },
        updateIntervalS: { p50: round(pct(intervals, 50)), p99: round(pct(intervals, 99)), samples: intervals.length },
        readerAgeAtEndS: { p50: round(pct(readerAges, 50)), p99: round(pct(readerAges, 99)), max: round(readerAges.at(-1) ?? Number.NaN), devicesSeen: readerAges.length },
        cpuCores: coresOver(cpu0, cpu1, wallS),
        edgeRssMiB: round(rss.rss / MiB),
        edgeRssAnonMiB: round(rss.rssAnon / MiB),
        edgeRssSeries: series,
      };
    };

    log(`phase 1a: ${DEVICES} devices × 1 report/s, DeviceStatus ceiling ${DEFAULT_CEILING}/s (default), ${WARMUP_S} s warm-up + ${SECONDS} s`);
    dmiRows.push(await runDmi(DEFAULT_CEILING));
    log(`  ${JSON.stringify({ ...dmiRows[0], edgeRssSeries: undefined })}`);

    // CloudCore again, same port, higher ceiling; the edge reconnects and resends its twins.
    await stopChild(cloud.t, undefined, 5000);
    cloud = await startCloud('cloud-b', ['--device-status-writes-per-second', String(HIGH_CEILING)]);
    await cloud.waitLine(new RegExp(`node ${NODE} connected`), 60_000);
    log(`CloudCore restarted with --device-status-writes-per-second ${HIGH_CEILING}; EdgeCore reconnected`);
    log(`phase 1b: ceiling ${HIGH_CEILING}/s`);
    dmiRows.push(await runDmi(HIGH_CEILING));
    log(`  ${JSON.stringify({ ...dmiRows[1], edgeRssSeries: undefined })}`);
    await sleep(2000);

    // Phase 2: MQTT through the embedded broker.
    pubs = forkTracked(helpers['devices-mqtt-pub']!, [], []);
    await waitMessage(pubs, (m) => m.type === 'ready', 10_000, 'publishers ready');
    const runs: { edgecore: 'default' | '--jit'; qos: 0 | 1; ratePerS: number }[] = [
      { edgecore: 'default', qos: 0, ratePerS: 0 },
      { edgecore: 'default', qos: 0, ratePerS: MQTT_PACED },
      { edgecore: 'default', qos: 1, ratePerS: 0 },
      { edgecore: '--jit', qos: 0, ratePerS: 0 },
      { edgecore: '--jit', qos: 1, ratePerS: 0 },
    ];
    let broker = { svc: edge, mqttPort };
    for (const { edgecore, qos, ratePerS } of runs) {
      if (edgecore === '--jit' && broker.svc === edge) {
        // A second EdgeCore (no devices) with V8's compilers on: the broker's JavaScript compiled, as before the interpreter-only default.
        await stopChild(edge.t, undefined, 5000);
        broker = await startEdge(`${NODE}-jit`, ['--jit']);
        await sleep(3000);
        log(`EdgeCore --jit started; broker on port ${broker.mqttPort}`);
      }
      const b = broker.svc;
      const label = `mqtt qos ${qos} ${ratePerS ? `paced ${ratePerS}/s` : 'flood'}, edgecore ${edgecore}`;
      const edgeBefore = { ...b.problems };
      const sub = await connectRaw(broker.mqttPort, `bench-sub-${mqttRows.length}`);
      await sub.subscribe('bench/devices/#', qos);
      const deadline = Date.now() + 1000 + (MQTT_WARMUP_S + MQTT_SECONDS) * 1000;
      const connected = waitMessage<{ type: string; message?: string }>(pubs, (m) => m.type === 'connected' || m.type === 'error', 15_000, 'publishers connected');
      const done = waitMessage<{ type: string; sent?: number; message?: string }>(
        pubs,
        (m) => m.type === 'done' || m.type === 'error',
        (MQTT_SECONDS + 30) * 1000,
        'publishers done',
      );
      const tStart = Date.now();
      pubs.child.send({ cmd: 'run', port: broker.mqttPort, qos, publishers: MQTT_PUBLISHERS, deadline, window: MQTT_QOS1_WINDOW, topicPrefix: 'bench/devices', ratePerS });
      const cm = await connected;
      if (cm.type === 'error') throw new Error(`publishers: ${cm.message}`);
      await sleep(Math.max(0, deadline - MQTT_SECONDS * 1000 - Date.now()));
      const r0 = sub.received;
      sub.latencies.length = 0;
      const t0 = Date.now();
      const cpu0 = { edgecore: cpuMs(b.pid), publishers: cpuMs(pubs.child.pid ?? 0), bench: cpuMs(process.pid) };
      const series: [number, number][] = [];
      while (Date.now() < deadline - 200) {
        await sleep(Math.min(5000, Math.max(0, deadline - 100 - Date.now())));
        series.push([Math.round((Date.now() - t0) / 1000), round(readRss(b.pid).rss / MiB)]);
      }
      const wallS = (Date.now() - t0) / 1000;
      const r1 = sub.received;
      const cpu1 = { edgecore: cpuMs(b.pid), publishers: cpuMs(pubs.child.pid ?? 0), bench: cpuMs(process.pid) };
      const rss = readRss(b.pid);
      const lat = [...sub.latencies].sort((a, b) => a - b);
      const res = await done;
      if (res.type === 'error') throw new Error(`publishers: ${res.message}`);
      // What was written before the deadline may still sit in socket buffers: wait until nothing more arrives for 2 s (at most 30 s).
      const settleUntil = Date.now() + 30_000;
      let seen = sub.received;
      let quietSince = Date.now();
      while (sub.received < (res.sent ?? 0) && Date.now() < settleUntil && Date.now() - quietSince < 2000) {
        await sleep(100);
        if (sub.received !== seen) {
          seen = sub.received;
          quietSince = Date.now();
        }
      }
      const drainS = (Date.now() - (deadline + 0)) / 1000;
      pubs.child.send({ cmd: 'close' });
      await waitMessage(pubs, (m) => m.type === 'closed', 10_000, 'publishers closed');
      sub.close();
      edgeProblemsByPhase[label] = { warn: b.problems.warn - edgeBefore.warn, error: b.problems.error - edgeBefore.error };
      mqttRows.push({
        edgecore,
        qos,
        load: ratePerS ? `paced ${ratePerS}/s` : 'flood',
        publishers: MQTT_PUBLISHERS,
        seconds: round(wallS),
        deliveredPerS: Math.round((r1 - r0) / wallS),
        publishedTotal: res.sent ?? 0,
        deliveredTotal: sub.received,
        publishRatePerS: Math.round((res.sent ?? 0) / ((deadline - tStart) / 1000)),
        drainAfterDeadlineS: round(drainS),
        latencyMs: { p50: pct(lat, 50), p99: pct(lat, 99), samples: lat.length },
        cpuCores: coresOver(cpu0, cpu1, wallS),
        edgeRssMiB: round(rss.rss / MiB),
        edgeRssAnonMiB: round(rss.rssAnon / MiB),
        edgeRssSeries: series,
      });
      log(`  ${label}: ${JSON.stringify({ ...mqttRows.at(-1), edgeRssSeries: undefined })}`);
      await sleep(2000);
    }
    if (broker.svc.t.child.exitCode !== null || broker.svc.t.child.signalCode !== null) notes.push(`EdgeCore exited: ${broker.svc.t.stderrTail().slice(-500)}`);
  } finally {
    watch?.stop();
    await mapper?.close().catch(() => {});
    if (pubs) await stopChild(pubs, { cmd: 'stop' }, 2000);
    for (const s of [...services].reverse()) await stopChild(s.t, undefined, 5000);
    rmSync(tmp, { recursive: true, force: true });
    clearTimeout(watchdog);
  }

  // --- report ---
  const [def, high] = dmiRows;
  const fmt = (x: number) => (Number.isFinite(x) ? x.toLocaleString('en-US') : '—');
  console.log(`\nDevices: throughput — ${DEVICES} devices on one node, each reporting once per second (${SECONDS} s window after ${WARMUP_S} s warm-up)\n`);
  console.log(`| measure | ceiling ${def!.ceiling}/s (default) | ceiling ${high!.ceiling}/s |`);
  console.log('|---|---:|---:|');
  const row = (label: string, f: (r: DmiRow) => string) => console.log(`| ${label} | ${f(def!)} | ${f(high!)} |`);
  row('reports offered /s (DMI ReportDeviceStatus)', (r) => fmt(r.offeredPerS));
  row('reports accepted /s (OK)', (r) => fmt(r.acceptedPerS));
  row('reports refused / failed / not sent', (r) => `${Object.values(r.errors).reduce((a, b) => a + b, 0)} / ${r.skipped}`);
  row('DMI call duration p50 / p99 ms (peak in flight)', (r) => `${fmt(r.callMs.p50)} / ${fmt(r.callMs.p99)} (${r.callMs.peakInFlight})`);
  row('DeviceStatus writes /s (watch)', (r) => fmt(r.statusWritesPerS));
  row('  of which a new value /s', (r) => fmt(r.valueChangesPerS));
  row('value age when it lands, p50 / p99 ms', (r) => `${fmt(r.landingAgeMs.p50)} / ${fmt(r.landingAgeMs.p99)}`);
  row("one device's DeviceStatus updated every, p50 / p99 s", (r) => `${fmt(r.updateIntervalS.p50)} / ${fmt(r.updateIntervalS.p99)}`);
  row('age of DeviceStatus as read at the end, p50 / p99 s', (r) => `${fmt(r.readerAgeAtEndS.p50)} / ${fmt(r.readerAgeAtEndS.p99)}`);
  row('CPU EdgeCore / CloudCore / API server, cores', (r) => `${r.cpuCores.edgecore} / ${r.cpuCores.cloudcore} / ${r.cpuCores.apiserver}`);
  row('EdgeCore CPU per accepted report, ms', (r) => `${r.edgeCpuMsPerReport}`);
  row('CPU benchmark process (mapper + watch), cores', (r) => `${r.cpuCores.bench}`);
  row('EdgeCore RSS / RssAnon at the end, MiB', (r) => `${r.edgeRssMiB} / ${r.edgeRssAnonMiB}`);
  if (idleWithDevices) console.log(`\nEdgeCore holding ${DEVICES} devices before any report: RSS ${idleWithDevices.rssMiB} MiB, RssAnon ${idleWithDevices.rssAnonMiB} MiB.`);
  console.log(`\nMQTT through EdgeCore's embedded broker: ${MQTT_PUBLISHERS} publishers → 1 subscriber, ~100-byte twin updates, ${MQTT_SECONDS} s window\n`);
  console.log(
    '| EdgeCore | QoS | load | delivered msg/s | published (total) | delivered (total) | latency p50 / p99 ms | CPU EdgeCore / publishers / subscriber, cores | EdgeCore RSS / RssAnon MiB |',
  );
  console.log('|---|---|---|---:|---:|---:|---:|---:|---:|');
  for (const r of mqttRows)
    console.log(
      `| ${r.edgecore} | ${r.qos} | ${r.load} | ${fmt(r.deliveredPerS)} | ${fmt(r.publishedTotal)} | ${fmt(r.deliveredTotal)} | ${fmt(r.latencyMs.p50)} / ${fmt(r.latencyMs.p99)} | ${r.cpuCores.edgecore} / ${r.cpuCores.publishers} / ${r.cpuCores.bench} | ${r.edgeRssMiB} / ${r.edgeRssAnonMiB} |`,
    );
  const problems = services.map((s) => ({ name: s.name, warn: s.problems.warn, error: s.problems.error, first: s.problems.first }));
  for (const p of problems) if (p.warn + p.error > 0) console.log(`\n${p.name}: ${p.warn} warn, ${p.error} error lines; first:\n  ${p.first.slice(0, 8).join('\n  ')}`);
  for (const r of dmiRows) for (const [k, v] of Object.entries(r.errorSamples)) console.log(`DMI ${r.ceiling}/s: ${k}: ${v} (${r.errors[k] ?? 0} in the window)`);
  console.log(`\nNode ${process.version}, ${os.cpus().length} cores, load avg ${os.loadavg()[0]!.toFixed(2)}. Took ${((Date.now() - started) / 60000).toFixed(1)} min.`);
  const out = join(root, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, 'devices-throughput.json'),
    `${JSON.stringify(
      {
        bench: 'devices-throughput',
        date: new Date().toISOString(),
        machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAvg1: os.loadavg()[0] },
        settings: {
          devices: DEVICES,
          seconds: SECONDS,
          warmupSeconds: WARMUP_S,
          reportPeriodMs: PERIOD_MS,
          maxInFlight: MAX_IN_FLIGHT,
          ceilings: [DEFAULT_CEILING, HIGH_CEILING],
          mqtt: {
            publishers: MQTT_PUBLISHERS,
            pacedPerS: MQTT_PACED,
            seconds: MQTT_SECONDS,
            warmupSeconds: MQTT_WARMUP_S,
            qos1Window: MQTT_QOS1_WINDOW,
            publishesPerSecondPerClient: PUBLISH_LIMIT,
          },
        },
        setup,
        edgeIdleWithDevices: idleWithDevices,
        dmi: dmiRows,
        mqtt: mqttRows,
        logProblems: problems,
        edgeProblemsByPhase,
        notes,
        tookMinutes: round((Date.now() - started) / 60000, 2),
      },
      null,
      2,
    )}\n`,
  );
  console.log('wrote bench/results/devices-throughput.json');
}

main()
  .catch((err) => {
    process.stderr.write(`devices-throughput failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => killAll());
