/**
 * kubectl logs/exec through the link (issue 11): `logs` and `logs -f` throughput, exec round trip
 * (keystroke → echo), and what a flooding `logs -f` does to sync latency.
 *
 * A real installation (bench/lib/pods-cluster.ts), every part a process on 127.0.0.1: the local
 * control plane (`ledge.js apiserver`, its node proxy dials the Node's kubelet endpoint), one
 * CloudCore (CloudStream on a free port, the control plane's CA as client CA) and one EdgeCore
 * (process runtime, `--container-log-max-bytes 32Mi`). The requests take the path kubectl's take:
 * HTTPS to the control plane with the admin token → node proxy → CloudStream → the stream over the
 * node's WebSocket → EdgeStream → the log files or the process.
 *
 * - **logs (whole file)**: a pod writes BENCH_LOG_MB (24) MiB of 100-byte lines and sleeps; the
 *   time of one `GET …/log` reading all of it. MB/s = bytes / (last byte − request).
 * - **logs -f**: a pod running `yes` (as fast as it can); bytes a `GET …/log?follow=true` receives
 *   over BENCH_FOLLOW_S (10) s, after 2 s of warm-up: on the node with the default log ingest limit
 *   (1 MiB/s of log records per container), and on a second node with the limit off
 *   (`--container-log-max-bytes-per-second 0`), where the link and the log reader set the rate.
 * - **exec round trip**: WebSocket `v5.channel.k8s.io` exec of `cat` (no tty); one byte on stdin,
 *   the time until it comes back on stdout; BENCH_EXEC_SAMPLES (300) sequential keystrokes.
 * - **sync latency**: a configmap the node holds (a pod references it) is updated BENCH_SYNC (40)
 *   times, one at a time; latency = from just before the update call to the event of that
 *   resourceVersion on a watch of the edge's own MetaServer (the object is in the edge's store:
 *   what its ACK confirms). Three phases side by side in one run: no flooder; the `yes` pod running
 *   (its log written at full speed) with no reader; and with a `logs -f` of it reading.
 *
 * Run:  npm run bench -- streams            (about 2 minutes; needs dist/: npm run build)
 * Writes bench/results/streams.json. Reports; never fails on a slow figure.
 */
import https from 'node:https';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import type * as k8s from '@kubernetes/client-node';
import {
  benchWorkspace,
  loadTracker,
  nowMs,
  onCleanup,
  pct,
  round,
  runCleanup,
  sleep,
  startCloudCore,
  startControlPlane,
  startEdgeCore,
  waitNodeReady,
  writeResult,
} from './lib/pods-cluster.js';

const LOG_MB = Number(process.env.BENCH_LOG_MB ?? 24);
const FOLLOW_S = Number(process.env.BENCH_FOLLOW_S ?? 10);
const EXEC_SAMPLES = Number(process.env.BENCH_EXEC_SAMPLES ?? 300);
const SYNC = Number(process.env.BENCH_SYNC ?? 40);
const NODE = 'bench-streams';
const ns = 'default';

const { bundles, tmp } = benchWorkspace('ledge-bench-streams-');
const load = loadTracker();

try {
  const cp = await startControlPlane(bundles, tmp);
  const caFile = join(tmp, 'api', 'pki', 'ca.crt');
  const cloud = await startCloudCore(bundles, cp, 'cloud-a', ['--stream-port', '0', '--stream-advertise-address', '127.0.0.1', '--stream-client-ca-file', caFile]);
  const dataDir = join(tmp, NODE);
  startEdgeCore(bundles, { node: NODE, cloud: [cloud.url], dataDir, extra: ['--container-log-max-bytes', String(32 * 1024 * 1024)] });
  await waitNodeReady(cp.core, NODE);
  const core = cp.core;
  await untilNodeEndpoint(core);

  // The control plane, as kubectl reaches it.
  const cluster = cp.kc.getCurrentCluster()!;
  const user = cp.kc.getCurrentUser()!;
  const api = { base: cluster.server, ca: Buffer.from(cluster.caData ?? '', 'base64'), token: user.token ?? '' };

  const pod = (name: string, script: string, extra: Partial<k8s.V1PodSpec> = {}, node = NODE): k8s.V1Pod => ({
    metadata: { name, namespace: ns },
    spec: { nodeName: node, containers: [{ name: 'main', image: 'busybox', command: ['sh', '-c', script] }], ...extra },
  });
  const running = async (name: string) => {
    for (let i = 0; i < 600; i++) {
      const p = await core.readNamespacedPod({ name, namespace: ns }).catch(() => undefined);
      if (p?.status?.containerStatuses?.[0]?.state?.running) return;
      await sleep(100);
    }
    throw new Error(`${name} not running`);
  };

  // --- logs of a whole file -------------------------------------------------------------
  const line = `${'x'.repeat(98)}\n`;
  await core.createNamespacedPod({
    namespace: ns,
    body: pod('writer', `i=0; while [ $i -lt ${LOG_MB * 10486} ]; do printf '${line.slice(0, -1)}\\n'; i=$((i+1)); done; echo done-writing; exec sleep 100000`),
  });
  await running('writer');
  for (let i = 0; i < 1200; i++) {
    const tail = await getText(api, `/api/v1/namespaces/${ns}/pods/writer/log?tailLines=1`);
    if (tail.includes('done-writing')) break;
    await sleep(250);
  }
  const whole: { bytes: number; ms: number }[] = [];
  for (let i = 0; i < 3; i++) whole.push(await timedGet(api, `/api/v1/namespaces/${ns}/pods/writer/log`));
  const wholeBest = whole.reduce((a, b) => (b.bytes / b.ms > a.bytes / a.ms ? b : a));
  console.log(`logs (whole file): ${(wholeBest.bytes / 1048576).toFixed(1)} MiB in ${wholeBest.ms.toFixed(0)} ms`);

  // --- sync latency, phase 1: nothing else ---------------------------------------------
  await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'bench-cm', namespace: ns }, data: { v: '0' } } });
  await core.createNamespacedPod({
    namespace: ns,
    body: pod('holder', 'exec sleep 100000', { containers: [{ name: 'main', image: 'busybox', command: ['sleep', '100000'], envFrom: [{ configMapRef: { name: 'bench-cm' } }] }] }),
  });
  await running('holder');
  const edgeWatch = await watchEdgeConfigMaps(dataDir);
  onCleanup(() => edgeWatch.close());
  const syncIdle = await syncLatency(core, edgeWatch, SYNC);
  console.log(`sync write→edge, idle: p50 ${pct(syncIdle, 50).toFixed(1)} ms`);

  // --- the flooder ------------------------------------------------------------------------
  await core.createNamespacedPod({ namespace: ns, body: pod('flooder', "exec yes 'Ledge logs -f throughput: a line of text as fast as the container can print it'") });
  await running('flooder');
  await sleep(2000);
  load.sample();
  const syncFlooder = await syncLatency(core, edgeWatch, SYNC);
  console.log(`sync write→edge, flooder without reader: p50 ${pct(syncFlooder, 50).toFixed(1)} ms`);

  // --- logs -f of the flooder, and sync latency while it reads -------------------------
  const follow = followLog(api, `/api/v1/namespaces/${ns}/pods/flooder/log?follow=true&tailLines=0`);
  await sleep(2000);
  const b0 = follow.bytes();
  const t0 = nowMs();
  const syncFollowP = syncLatency(core, edgeWatch, SYNC);
  await sleep(FOLLOW_S * 1000);
  const followRate = (follow.bytes() - b0) / ((nowMs() - t0) / 1000);
  const syncFollow = await syncFollowP;
  load.sample();
  follow.close();
  console.log(`logs -f: ${(followRate / 1048576).toFixed(1)} MiB/s; sync during it: p50 ${pct(syncFollow, 50).toFixed(1)} ms`);
  await core.deleteNamespacedPod({ name: 'flooder', namespace: ns, gracePeriodSeconds: 0 });

  // --- logs -f with no ingest limit: what the link carries when the log grows as fast as it can ---
  const NODE2 = `${NODE}-unlimited`;
  startEdgeCore(bundles, {
    node: NODE2,
    cloud: [cloud.url],
    dataDir: join(tmp, NODE2),
    extra: ['--container-log-max-bytes-per-second', '0', '--container-log-max-bytes', String(32 * 1024 * 1024)],
  });
  await waitNodeReady(core, NODE2);
  await core.createNamespacedPod({ namespace: ns, body: pod('flooder2', "exec yes 'Ledge logs -f throughput: a line of text as fast as the container can print it'", {}, NODE2) });
  await running('flooder2');
  const follow2 = followLog(api, `/api/v1/namespaces/${ns}/pods/flooder2/log?follow=true&tailLines=0`);
  await sleep(2000);
  const c0 = follow2.bytes();
  const u0 = nowMs();
  await sleep(FOLLOW_S * 1000);
  const followUnlimited = (follow2.bytes() - c0) / ((nowMs() - u0) / 1000);
  follow2.close();
  console.log(`logs -f, no ingest limit: ${(followUnlimited / 1048576).toFixed(1)} MiB/s`);
  await core.deleteNamespacedPod({ name: 'flooder2', namespace: ns, gracePeriodSeconds: 0 });

  // --- exec round trip ----------------------------------------------------------------------
  const rtt = await execRoundTrips(api, `/api/v1/namespaces/${ns}/pods/holder/exec?command=cat&stdin=true&stdout=true&stderr=true`, EXEC_SAMPLES);
  console.log(`exec keystroke→echo: p50 ${pct(rtt, 50).toFixed(2)} ms, p99 ${pct(rtt, 99).toFixed(2)} ms`);

  const stats = (v: number[]) => ({ p50: round(pct(v, 50), 2), p99: round(pct(v, 99), 2), max: round(Math.max(...v), 2), n: v.length });
  const table = {
    'logs, whole file (MiB/s)': round(wholeBest.bytes / 1048576 / (wholeBest.ms / 1000), 1),
    'logs, whole file (MiB)': round(wholeBest.bytes / 1048576, 1),
    'logs -f of `yes`, default ingest limit 1 MiB/s (MiB/s)': round(followRate / 1048576, 2),
    'logs -f of `yes`, no ingest limit (MiB/s)': round(followUnlimited / 1048576, 1),
    'exec keystroke→echo (ms)': stats(rtt),
    'configmap write→edge, idle (ms)': stats(syncIdle),
    'configmap write→edge, flooder without reader (ms)': stats(syncFlooder),
    'configmap write→edge, during logs -f of the flooder (ms)': stats(syncFollow),
  };
  console.table(Object.fromEntries(Object.entries(table).map(([k, v]) => [k, typeof v === 'number' ? { value: v } : v])));
  const file = writeResult('streams', {
    settings: { LOG_MB, FOLLOW_S, EXEC_SAMPLES, SYNC },
    load: load.summary(),
    results: table,
    bundle: { edgecoreBytes: bundles.edgecoreBytes, edgecoreSha256: bundles.edgecoreSha256 },
  });
  console.log(`wrote ${file}`);
} finally {
  await runCleanup();
}

interface Api {
  base: string;
  ca: Buffer;
  token: string;
}

function request(api: Api, path: string): http.ClientRequest {
  return https.request(`${api.base}${path}`, { ca: api.ca, headers: { authorization: `Bearer ${api.token}` } });
}

async function getText(api: Api, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(api, path);
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
}

async function timedGet(api: Api, path: string): Promise<{ bytes: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const req = request(api, path);
    req.on('response', (res) => {
      let bytes = 0;
      let head = '';
      res.on('data', (d: Buffer) => {
        if (bytes === 0) head = d.subarray(0, 200).toString();
        bytes += d.length;
      });
      res.on('end', () => {
        if (res.statusCode !== 200) console.log(`  GET ${path}: HTTP ${res.statusCode} ${head}`);
        resolve({ bytes, ms: nowMs() - t0 });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function followLog(api: Api, path: string): { bytes(): number; close(): void } {
  let bytes = 0;
  const req = request(api, path);
  req.on('response', (res) => res.on('data', (d: Buffer) => (bytes += d.length)));
  req.on('error', () => {});
  req.end();
  return { bytes: () => bytes, close: () => req.destroy() };
}

async function untilNodeEndpoint(core: k8s.CoreV1Api): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const n = await core.readNode({ name: NODE }).catch(() => undefined);
    if (n?.status?.daemonEndpoints?.kubeletEndpoint?.Port) return;
    await sleep(100);
  }
  throw new Error('the node never pointed at CloudStream');
}

/** A watch of configmaps on the edge's MetaServer: resolves `seen(value)` when bench-cm with that `data.v` is in the edge's store. */
async function watchEdgeConfigMaps(dataDir: string): Promise<{ seen(rv: string): Promise<number>; close(): void }> {
  let url = '';
  for (let i = 0; i < 300 && !url; i++) {
    try {
      url = readFileSync(join(dataDir, 'metaserver', 'server.url'), 'utf8').trim();
    } catch {
      await sleep(100);
    }
  }
  const token = readFileSync(join(dataDir, 'metaserver', 'admin.token'), 'utf8').trim();
  const waiting = new Map<string, (t: number) => void>();
  const early = new Map<string, number>();
  const req = http.request(`${url}/api/v1/namespaces/${ns}/configmaps?watch=true`, { headers: { authorization: `Bearer ${token}` } });
  req.on('response', (res) => {
    if (res.statusCode !== 200) console.log(`  edge watch: HTTP ${res.statusCode}`);
    let buf = '';
    res.on('data', (d: Buffer) => {
      const t = nowMs();
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const ev = JSON.parse(buf.slice(0, nl)) as { object?: { metadata?: { name?: string }; data?: { v?: string } } };
        buf = buf.slice(nl + 1);
        // MetaServer serves its own resourceVersions: the update is known by its value.
        const rv = ev.object?.data?.v;
        if (!rv || ev.object?.metadata?.name !== 'bench-cm') continue;
        const w = waiting.get(rv);
        if (w) {
          waiting.delete(rv);
          w(t);
        } else early.set(rv, t);
      }
    });
  });
  req.on('error', () => {});
  req.end();
  return {
    seen: (rv) =>
      new Promise((resolve) => {
        const t = early.get(rv);
        if (t !== undefined) return resolve(t);
        waiting.set(rv, resolve);
      }),
    close: () => req.destroy(),
  };
}

async function syncLatency(core: k8s.CoreV1Api, w: { seen(rv: string): Promise<number> }, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const cur = await core.readNamespacedConfigMap({ name: 'bench-cm', namespace: ns });
    cur.data = { v: `${Date.now()}-${i}` };
    const t0 = nowMs();
    const res = await core.replaceNamespacedConfigMap({ name: 'bench-cm', namespace: ns, body: cur });
    void res;
    const t1 = await w.seen(cur.data.v);
    out.push(t1 - t0);
    await sleep(50);
  }
  return out;
}

async function execRoundTrips(api: Api, path: string, n: number): Promise<number[]> {
  const ws = new WebSocket(`${api.base.replace(/^https/, 'wss')}${path}`, ['v5.channel.k8s.io'], { ca: api.ca, headers: { authorization: `Bearer ${api.token}` } });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const out: number[] = [];
  let pending: ((t: number) => void) | undefined;
  ws.on('message', (d: Buffer) => {
    if (d[0] === 1 && pending) {
      const p = pending;
      pending = undefined;
      p(nowMs());
    }
  });
  // Warm-up.
  for (let i = 0; i < n + 20; i++) {
    const t0 = nowMs();
    const back = new Promise<number>((r) => (pending = r));
    ws.send(Buffer.from([0, 97]));
    const t1 = await back;
    if (i >= 20) out.push(t1 - t0);
  }
  ws.close();
  return out;
}
