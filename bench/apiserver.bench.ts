// Local control plane benchmark: creates/s (10k pods), p50/p99 latency from a write
// to its delivery on 100 concurrent watches with 10k pods stored, and the server's
// memory (RSS, RssAnon from /proc/PID/status) with 10k pods.
// The server runs as a child process (TLS + token, fsync on) so its memory is its own.
// Run: node --import tsx bench/apiserver.bench.ts   (writes bench/results/apiserver.json)
import { Agent, request } from 'node:https';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { repoRoot, spawnServer, tempDir } from '../test/apiserver/helpers.js';

const PODS = Number(process.env.BENCH_PODS ?? 10000);
const WATCHERS = Number(process.env.BENCH_WATCHERS ?? 100);
const WRITES = Number(process.env.BENCH_WRITES ?? 400);
const CONCURRENCY = 32;

const dir = tempDir('ledge-bench-apiserver-');
const srv = await spawnServer(dir);
const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, ca: srv.caCertPem });
const auth = { authorization: `Bearer ${srv.token}` };

function call(method: string, path: string, body?: string, contentType = 'application/json'): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, srv.url),
      { method, agent, headers: { ...auth, ...(body ? { 'content-type': contentType, 'content-length': Buffer.byteLength(body) } : {}) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function podBody(i: number): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `pod-${i}`, labels: { app: `app-${i % 50}`, bench: 'yes' } },
    spec: {
      nodeName: `edge-${i % 100}`,
      containers: [{ name: 'main', image: 'registry.example.com/app:1.0', env: [{ name: 'INDEX', value: String(i) }], ports: [{ containerPort: 8080 }] }],
    },
  });
}

function memory(pid: number): { rssKiB: number; rssAnonKiB: number } {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(st)?.[1] ?? NaN);
  return { rssKiB: kib('VmRSS'), rssAnonKiB: kib('RssAnon') };
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

try {
  const memEmpty = memory(srv.child.pid!);
  // 1. Creates.
  let next = 0;
  const createLat: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < PODS) {
        const i = next++;
        const s = performance.now();
        const r = await call('POST', '/api/v1/namespaces/default/pods', podBody(i));
        if (r.status !== 201) throw new Error(`create failed ${r.status}: ${r.text}`);
        createLat.push(performance.now() - s);
      }
    }),
  );
  const createSecs = (performance.now() - t0) / 1000;
  const createsPerSec = PODS / createSecs;
  createLat.sort((a, b) => a - b);
  const mem10k = memory(srv.child.pid!);

  // 2. Watch delivery latency: WATCHERS watches on all pods, WRITES status patches.
  const list = JSON.parse((await call('GET', '/api/v1/namespaces/default/pods?limit=1')).text) as { metadata: { resourceVersion: string } };
  const sentAt = new Map<string, number>(); // pod name + marker → send time
  const latencies: number[] = [];
  let delivered = 0;
  const watchAgent = new Agent({ keepAlive: false, ca: srv.caCertPem, maxSockets: Infinity });
  const watches = await Promise.all(
    Array.from(
      { length: WATCHERS },
      () =>
        new Promise<{ close: () => void }>((resolve, reject) => {
          const req = request(
            new URL(`/api/v1/namespaces/default/pods?watch=1&resourceVersion=${list.metadata.resourceVersion}`, srv.url),
            { agent: watchAgent, headers: auth },
            (res) => {
              const rl = createInterface({ input: res });
              rl.on('error', () => {});
              rl.on('line', (line) => {
                const now = performance.now();
                // Cheap extraction: the marker annotation carries the write id.
                const m = /"bench\/marker":"([^"]+)"/.exec(line);
                if (!m) return;
                const at = sentAt.get(m[1]!);
                if (at !== undefined) {
                  latencies.push(now - at);
                  delivered++;
                }
              });
              resolve({ close: () => req.destroy() });
            },
          );
          req.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(e)));
          req.end();
        }),
    ),
  );
  await new Promise((r) => setTimeout(r, 300));
  let w = 0;
  const tw = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (w < WRITES) {
        const i = w++;
        const marker = `m${i}`;
        sentAt.set(marker, performance.now());
        const r = await call(
          'PATCH',
          `/api/v1/namespaces/default/pods/pod-${i % PODS}`,
          JSON.stringify({ metadata: { annotations: { 'bench/marker': marker } } }),
          'application/merge-patch+json',
        );
        if (r.status !== 200) throw new Error(`patch failed ${r.status}: ${r.text}`);
      }
    }),
  );
  const deadline = Date.now() + 30000;
  while (delivered < WRITES * WATCHERS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const writeSecs = (performance.now() - tw) / 1000;
  for (const x of watches) x.close();
  latencies.sort((a, b) => a - b);
  const memWatch = memory(srv.child.pid!);

  // 3. A full list of 10k pods.
  const tl = performance.now();
  const full = await call('GET', '/api/v1/pods');
  const listMs = performance.now() - tl;

  const results = {
    date: new Date().toISOString(),
    node: process.version,
    machine: { cpus: (await import('node:os')).availableParallelism(), note: 'server in a child process (node --import tsx), TLS + bearer token, WAL fsync on' },
    pods: PODS,
    createsPerSec: Math.round(createsPerSec),
    createLatencyMs: { p50: +pct(createLat, 50).toFixed(2), p99: +pct(createLat, 99).toFixed(2) },
    watchers: WATCHERS,
    writes: WRITES,
    deliveries: delivered,
    expectedDeliveries: WRITES * WATCHERS,
    writeToDeliveryMs: { p50: +pct(latencies, 50).toFixed(2), p99: +pct(latencies, 99).toFixed(2), max: +latencies.at(-1)!.toFixed(2) },
    patchesPerSecWith100Watches: Math.round(WRITES / writeSecs),
    listAllPodsMs: +listMs.toFixed(1),
    listAllPodsBytes: full.text.length,
    memoryKiB: { empty: memEmpty, with10kPods: mem10k, after100Watches: memWatch },
  };
  const rows: [string, string][] = [
    ['pods stored', String(PODS)],
    ['creates/s (32 concurrent, fsync)', String(results.createsPerSec)],
    ['create latency p50 / p99 (ms)', `${results.createLatencyMs.p50} / ${results.createLatencyMs.p99}`],
    [`write→delivery p50 / p99 (ms), ${WATCHERS} watches`, `${results.writeToDeliveryMs.p50} / ${results.writeToDeliveryMs.p99}`],
    ['deliveries / expected', `${delivered} / ${WRITES * WATCHERS}`],
    ['patches/s with 100 watches', String(results.patchesPerSecWith100Watches)],
    ['list 10k pods (ms)', String(results.listAllPodsMs)],
    ['RSS / RssAnon empty (MiB)', `${(memEmpty.rssKiB / 1024).toFixed(0)} / ${(memEmpty.rssAnonKiB / 1024).toFixed(0)}`],
    ['RSS / RssAnon 10k pods (MiB)', `${(mem10k.rssKiB / 1024).toFixed(0)} / ${(mem10k.rssAnonKiB / 1024).toFixed(0)}`],
    ['RSS / RssAnon after watches (MiB)', `${(memWatch.rssKiB / 1024).toFixed(0)} / ${(memWatch.rssAnonKiB / 1024).toFixed(0)}`],
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  console.log('\napiserver benchmark');
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
  const out = join(repoRoot, 'bench/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'apiserver.json'), `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nwrote bench/results/apiserver.json`);
} finally {
  srv.child.kill('SIGTERM');
  await new Promise((r) => srv.child.once('exit', r));
  agent.destroy();
  rmSync(dir, { recursive: true, force: true });
}
