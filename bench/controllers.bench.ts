/**
 * Controllers benchmark (issue #5). Not a test: prints a table and writes
 * bench/results/controllers.json.
 *
 * Processes: the local control plane (`dist/ledge.js apiserver`), CloudCore replicas
 * (`dist/ledge.js cloud --kubeconfig …`), and a fleet of simulated edge nodes
 * (bench/lib/sim-fleet.ts: thin protocol clients that ACK at once). The bench itself
 * writes to the API with @kubernetes/client-node.
 *
 * 1. Latency API write → edge ACK, one node: 200 sequential configmap updates.
 * 2. The same with 1,000 nodes, each receiving one change (all written at once, 50 in flight).
 * 3. Failover: 1,000 nodes × 20 objects (1 pod + 19 configmaps each), two replicas; kill -9
 *    of the replica holding every session while configmaps keep changing; time until every
 *    node holds the current version of all its objects through the survivor, and how many
 *    objects the survivor re-sent.
 * Targets: p99 < 100 ms for a single-node change on loopback; failover converges < 30 s with
 * re-sends < 5 % of objects.
 *
 * Run: npm run build && node --import tsx bench/controllers.bench.ts [--nodes 1000] [--objects 20]
 */
import { spawn, fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { withKeepAlive } from '../cloud/kube/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: args } = parseArgs({ options: { nodes: { type: 'string', default: '1000' }, objects: { type: 'string', default: '20' } } });
const NODES = Number(args.nodes);
const OBJECTS = Number(args.objects);
const CMS = OBJECTS - 1;
const ns = 'default';
const children = new Set<ChildProcess>();
const cleanup = () => {
  for (const c of children) c.kill('SIGKILL');
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

if (!existsSync(join(root, 'dist/ledge.js'))) throw new Error('run npm run build first');
const dir = mkdtempSync(join(tmpdir(), 'ledge-bench-ctl-'));

function percentiles(v: number[]) {
  const s = [...v].sort((a, b) => a - b);
  const p = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { n: s.length, p50: p(0.5), p99: p(0.99), max: s.at(-1) ?? NaN };
}

interface Service {
  child: ChildProcess;
  lines: string[];
  waitLine(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
}

function service(cmdArgs: string[], name: string): Service {
  const child = spawn(process.execPath, cmdArgs, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LEDGE_LOG_FORMAT: 'json' } });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  const onData = (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    for (const w of waiters) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  return {
    child,
    lines,
    waitLine(re, timeoutMs) {
      return new Promise((resolve, reject) => {
        let scanned = 0;
        const check = () => {
          for (; scanned < lines.length; scanned++) {
            const m = lines[scanned]!.match(re);
            if (m) {
              waiters.delete(check);
              clearTimeout(t);
              return resolve(m);
            }
          }
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${name}: no line matching ${re} in ${timeoutMs} ms; last: ${lines.slice(-5).join('\n')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}

// --- processes -------------------------------------------------------------
const kubeconfig = join(dir, 'kubeconfig');
const api = service(
  [join(root, 'dist/ledge.js'), 'apiserver', '--data-dir', join(dir, 'api'), '--port', '0', '--write-kubeconfig', kubeconfig, '--log-level', 'warn'],
  'apiserver',
);
for (let i = 0; !existsSync(kubeconfig); i++) {
  if (i > 300) throw new Error(`apiserver did not start: ${api.lines.slice(-5).join('\n')}`);
  await new Promise((r) => setTimeout(r, 100));
}
await new Promise((r) => setTimeout(r, 300));
const kc = withKeepAlive(new k8s.KubeConfig());
kc.loadFromFile(kubeconfig);
const core = kc.makeApiClient(k8s.CoreV1Api);
const objects = kc.makeApiClient(k8s.CustomObjectsApi);

async function startCloud(identity: string): Promise<{ svc: Service; url: string }> {
  const svc = service(
    [
      join(root, 'dist/ledge.js'),
      'cloud',
      '--kubeconfig',
      kubeconfig,
      '--bind-address',
      '127.0.0.1',
      '--insecure-plain-websocket',
      '--port',
      '0',
      '--identity',
      identity,
      '--log-level',
      'info',
      '--reconcile-interval-ms',
      '10000',
    ],
    identity,
  );
  const m = await svc.waitLine(/"msg":"cloudcore started","url":"([^"]+)"/, 60_000);
  return { svc, url: m[1]! };
}

function startFleet(): ChildProcess & { request<T>(cmd: object, type: string, timeoutMs?: number): Promise<T> } {
  const child = fork(join(root, 'bench/lib/sim-fleet.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  return Object.assign(child, {
    request<T>(cmd: object, type: string, timeoutMs = 120_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`fleet: no ${type} within ${timeoutMs} ms`)), timeoutMs);
        const on = (m: unknown) => {
          if ((m as { type?: string }).type === type) {
            clearTimeout(t);
            child.off('message', on);
            resolve(m as T);
          }
        };
        child.on('message', on);
        child.send(cmd);
      });
    },
  });
}

async function limit<T>(items: T[], concurrency: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

const cmName = (node: number, j: number) => `n${node}-cfg-${j}`;
function podFor(node: number, cms: number): k8s.V1Pod {
  return {
    metadata: { name: `n${node}-app`, namespace: ns },
    spec: { nodeName: `n${node}`, containers: [{ name: 'c', image: 'busybox', envFrom: Array.from({ length: cms }, (_, j) => ({ configMapRef: { name: cmName(node, j) } })) }] },
  };
}

/** Waits for the fleet to report receipt of `resource`@rv; returns the receive time. */
function receipts(fleet: ReturnType<typeof startFleet>) {
  const waiting = new Map<string, (t: number) => void>();
  const early = new Map<string, number>();
  fleet.on('message', (m: { type?: string; resource?: string; rv?: string; t?: number }) => {
    if (m.type !== 'recv') return;
    const key = `${m.resource}@${m.rv}`;
    const w = waiting.get(key);
    if (w) {
      waiting.delete(key);
      w(m.t!);
    } else early.set(key, m.t!);
  });
  return (resource: string, rv: string) =>
    new Promise<number>((resolve) => {
      const key = `${resource}@${rv}`;
      const t = early.get(key);
      if (t !== undefined) {
        early.delete(key);
        return resolve(t);
      }
      waiting.set(key, resolve);
    });
}

async function updateCm(name: string, v: string): Promise<{ t0: number; rv: string }> {
  const cur = await core.readNamespacedConfigMap({ name, namespace: ns });
  cur.data = { v };
  const t0 = Date.now();
  const res = await core.replaceNamespacedConfigMap({ name, namespace: ns, body: cur });
  return { t0, rv: res.metadata!.resourceVersion! };
}

const results: Record<string, unknown> = {
  bench: 'controllers',
  date: new Date().toISOString(),
  machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  settings: { nodes: NODES, objectsPerNode: OBJECTS },
};

// --- 1 + 2: latency --------------------------------------------------------
const a = await startCloud('replica-a');
const b = await startCloud('replica-b');
const fleet = startFleet();
const names = Array.from({ length: NODES }, (_, i) => `n${i}`);
const connected = await fleet.request<{ ok: number }>({ cmd: 'connect', endpoints: [a.url, b.url], names }, 'connected');
console.log(`fleet: ${connected.ok}/${NODES} nodes connected to replica-a`);
const waitRecv = receipts(fleet);

let t = Date.now();
const cmList: string[] = [];
for (let i = 0; i < NODES; i++) for (let j = 0; j < CMS; j++) cmList.push(cmName(i, j));
await limit(cmList, 32, (name) => core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name, namespace: ns }, data: { v: '0' } } }));
await limit(
  names.map((_, i) => i),
  32,
  (i) => core.createNamespacedPod({ namespace: ns, body: podFor(i, CMS) }),
);
console.log(`created ${NODES} pods and ${cmList.length} configmaps in ${Date.now() - t} ms`);
t = Date.now();
// Initial sync complete when the fleet holds everything and every ACK is recorded.
for (;;) {
  const s = await fleet.request<{ received: number }>({ cmd: 'stats' }, 'stats');
  if (s.received >= NODES * OBJECTS) break;
  if (Date.now() - t > 180_000) throw new Error(`initial sync incomplete: ${s.received}/${NODES * OBJECTS}`);
  if ((Date.now() - t) % 10_000 < 250) console.log(`  initial sync: ${s.received}/${NODES * OBJECTS} delivered`);
  await new Promise((r) => setTimeout(r, 250));
}
const initialSyncMs = Date.now() - t;
for (;;) {
  const list = (await objects.listNamespacedCustomObject({ group: 'reliablesyncs.ledge.io', version: 'v1alpha1', plural: 'objectsyncs', namespace: ns })) as {
    items: { status?: { objectResourceVersion?: string } }[];
  };
  const recorded = list.items.filter((i) => i.status?.objectResourceVersion).length;
  if (recorded >= NODES * OBJECTS) break;
  if (Date.now() - t > 240_000) throw new Error(`records incomplete: ${recorded}/${NODES * OBJECTS}`);
  console.log(`  records: ${recorded}/${NODES * OBJECTS}`);
  await new Promise((r) => setTimeout(r, 500));
}
const recordsMs = Date.now() - t;
console.log(`initial sync: ${NODES * OBJECTS} objects delivered in ${initialSyncMs} ms, all ACKs recorded after ${recordsMs} ms`);

fleet.send({ cmd: 'watch', prefix: 'default/configmap/' });
// Single node: sequential changes of one configmap.
const single: number[] = [];
for (let k = 0; k < 200; k++) {
  const { t0, rv } = await updateCm(cmName(0, 0), `s${k}`);
  const t1 = await waitRecv(`default/configmap/${cmName(0, 0)}`, rv);
  single.push(t1 - t0);
}
const singleP = percentiles(single);
// 1,000 nodes each receiving one change, written at once (50 in flight).
const fanout: number[] = [];
const tFan = Date.now();
await limit(
  names.map((_, i) => i),
  50,
  async (i) => {
    const { t0, rv } = await updateCm(cmName(i, 1 % CMS), `f`);
    const t1 = await waitRecv(`default/configmap/${cmName(i, 1 % CMS)}`, rv);
    fanout.push(t1 - t0);
  },
);
const fanoutP = { ...percentiles(fanout), totalMs: Date.now() - tFan };
fleet.send({ cmd: 'watch', prefix: '\u0000' });

// --- 3: failover -----------------------------------------------------------
const before = await fleet.request<{ perEndpoint: Record<string, number> }>({ cmd: 'stats' }, 'stats');
console.log(`sessions before failover: ${JSON.stringify(before.perEndpoint)}`);
let streaming = true;
let streamed = 0;
const stream = (async () => {
  while (streaming) {
    const i = Math.floor(Math.random() * NODES);
    await updateCm(cmName(i, 2 % CMS), `x${streamed++}`).catch(() => {});
    await new Promise((r) => setTimeout(r, 10));
  }
})();
await new Promise((r) => setTimeout(r, 1000));
const tKill = Date.now();
a.svc.child.kill('SIGKILL');
await new Promise((r) => setTimeout(r, 3000));
streaming = false;
await stream;
// Expected final state, read once the stream stopped.
const expected = new Map<string, string>();
const cms = await core.listNamespacedConfigMap({ namespace: ns });
for (const c of cms.items) expected.set(c.metadata!.name!, c.metadata!.resourceVersion!);
let convergedMs = NaN;
for (;;) {
  const d = await fleet.request<{ versions: Record<string, Record<string, string>> }>({ cmd: 'digest' }, 'digest');
  let ok = true;
  for (let i = 0; i < NODES && ok; i++) {
    const held = d.versions[`n${i}`] ?? {};
    for (let j = 0; j < CMS; j++)
      if (held[`default/configmap/${cmName(i, j)}`] !== expected.get(cmName(i, j))) {
        ok = false;
        break;
      }
  }
  if (ok) {
    convergedMs = Date.now() - tKill;
    break;
  }
  if (Date.now() - tKill > 120_000) break;
  await new Promise((r) => setTimeout(r, 200));
}
const after = await fleet.request<{ perEndpoint: Record<string, number>; reconnects: number }>({ cmd: 'stats' }, 'stats');
let resent = 0;
let upToDate = 0;
let takeovers = 0;
for (const line of b.svc.lines) {
  const m = line.match(/connected: (\d+) objects to send, (\d+) to delete, (\d+) already up to date/);
  if (m) {
    takeovers++;
    resent += Number(m[1]);
    upToDate += Number(m[3]);
  }
}
const failover = {
  objects: NODES * OBJECTS,
  takeovers,
  convergedMs,
  resentOnTakeover: resent,
  resentPct: +((100 * resent) / (NODES * OBJECTS)).toFixed(2),
  upToDateOnTakeover: upToDate,
  updatesDuringFailover: streamed,
  sessionsAfter: after.perEndpoint,
};

Object.assign(results, {
  initialSync: { objects: NODES * OBJECTS, deliveredMs: initialSyncMs, recordedMs: recordsMs },
  latencySingleNodeMs: singleP,
  latencyFanoutMs: { nodes: NODES, ...fanoutP },
  failover,
  verdict: {
    singleNode: `p99 ${singleP.p99} ms (target < 100 ms): ${singleP.p99 < 100 ? 'MET' : 'MISSED'}`,
    failover: `converged in ${convergedMs} ms (target < 30 s): ${convergedMs < 30_000 ? 'MET' : 'MISSED'}; re-sent ${failover.resentPct} % (target < 5 %): ${failover.resentPct < 5 ? 'MET' : 'MISSED'}`,
  },
});
console.table({
  'write→ACK, 1 node (200 changes)': { p50: singleP.p50, p99: singleP.p99, max: singleP.max },
  [`write→ACK, ${NODES} nodes × 1 change`]: { p50: fanoutP.p50, p99: fanoutP.p99, max: fanoutP.max },
});
console.table({ failover });
console.log(results.verdict);
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(join(root, 'bench/results/controllers.json'), `${JSON.stringify(results, null, 2)}\n`);
fleet.send({ cmd: 'close' });
cleanup();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
