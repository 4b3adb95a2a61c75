/**
 * kubectl logs, exec and attach of edge pods, end to end and through the real path: the real
 * kubectl 1.35 → the local control plane's node proxy (it dials the Node's address and kubelet
 * port, as kube-apiserver does) → a round-robin balancer in front of two CloudCore replicas'
 * CloudStream (a Service) → the replica holding the node's session, directly or forwarded by the
 * other → the stream over the node's WebSocket → EdgeCore → real processes. Each command runs
 * twice, so once through each replica. A cut link ends `logs -f` cleanly; a pod whose node is
 * connected nowhere gets a clear error.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import type { V1Pod } from '@kubernetes/client-node';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { eventually, within } from '../helpers/process.js';
import { freePort, podWhere } from '../helpers/pods.js';
import { startBalancer, startProxy, type Balancer, type Proxy as LinkProxy } from '../helpers/proxy.js';
import { kubectl, kubectlPath } from '../apiserver/helpers.js';

const NODE = 'edge-streams';
const skip = kubectlPath('1.35') ? undefined : 'kubectl 1.35 is not provisioned (npm test does it)';
let c: Cluster;
let lb: Balancer;
let link: LinkProxy;
let cacheDir: string;
let out: string;
let hubPort = 0;

const kubectlBin = () => kubectlPath('1.35')!;
const run = (args: string[], input?: string) => kubectl(kubectlBin(), c.api.kubeconfigPath, args, { cacheDir, timeoutMs: 60_000, ...(input !== undefined ? { input } : {}) });
/** kubectl as a child process whose output is read as it comes. */
function spawnKubectl(args: string[]): ChildProcess & { text: () => string } {
  const child = spawn(kubectlBin(), ['--kubeconfig', c.api.kubeconfigPath, '--cache-dir', cacheDir, ...args], { env: { ...process.env, HOME: cacheDir } });
  let text = '';
  child.stdout.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr.on('data', (d: Buffer) => (text += d.toString()));
  return Object.assign(child, { text: () => text });
}

function pod(name: string, script: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default' },
    spec: {
      nodeName: NODE,
      containers: [{ name: 'main', image: 'busybox', command: ['sh', '-c', script], volumeMounts: [{ name: 'out', mountPath: '/out' }] }],
      volumes: [{ name: 'out', hostPath: { path: out } }],
    },
  };
}

before(async () => {
  if (skip) return;
  c = await startCluster();
  cacheDir = join(c.dir, 'kubectl-cache');
  out = join(c.dir, 'out');
  mkdirSync(out);
  const ports = [await freePort(), await freePort()];
  lb = await startBalancer(ports);
  // Both replicas advertise the balancer: kube-apiserver dials "the Service", never a replica.
  const streamArgs = (port: number) => [
    '--stream-port',
    String(port),
    '--stream-advertise-address',
    '127.0.0.1',
    '--stream-advertise-port',
    String(lb.port),
    '--stream-client-ca-file',
    c.api.caFile,
  ];
  const a = await c.startCloud('cloud-a', streamArgs(ports[0]!));
  await c.startCloud('cloud-b', streamArgs(ports[1]!));
  hubPort = Number(new URL(a.url).port);
  // The edge reaches replica A only, through a link the test can cut.
  link = await startProxy(() => hubPort);
  c.startEdge(NODE, [`ws://127.0.0.1:${link.port}/v1/edge`], ['--restart-backoff-base-ms', '200']);
  await eventually(
    async () => (await c.core.readNode({ name: NODE }).catch(() => undefined))?.status?.daemonEndpoints?.kubeletEndpoint?.Port === lb.port,
    30_000,
    'the node pointing at CloudStream',
  );
  await c.core.createNamespacedPod({ namespace: 'default', body: pod('talker', 'i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.1; done') });
  // Fails once, then runs: its previous run's log is "first run".
  await c.core.createNamespacedPod({
    namespace: 'default',
    body: pod('crasher', 'if [ ! -f "$LEDGE_VOLUME_OUT/ran" ]; then touch "$LEDGE_VOLUME_OUT/ran"; echo "first run"; exit 1; fi; echo "second run"; exec sleep 1000'),
  });
  for (const name of ['talker', 'crasher'])
    await podWhere(
      c,
      name,
      (p) => p.status?.containerStatuses?.[0]?.state?.running !== undefined && (name !== 'crasher' || (p.status.containerStatuses[0]?.restartCount ?? 0) >= 1),
      `${name} running`,
    );
});
after(async () => {
  await link?.close();
  await lb?.close();
  await c?.close();
});

/** Runs `check` twice: the balancer sends one to each replica (the second forwards to the first). */
async function throughEachReplica(what: string, check: () => Promise<void>): Promise<void> {
  const before = [...lb.served];
  await check();
  await check();
  const used = lb.served.map((n, i) => n - before[i]!);
  assert.ok(
    used.every((n) => n >= 1),
    `${what}: through each replica (connections per replica: ${used.join(', ')})`,
  );
}

test('kubectl logs: the whole log, --tail, and --previous after a crash', { skip }, async () => {
  await throughEachReplica('logs', async () => {
    const r = await run(['logs', 'talker']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^line 0\nline 1\n/);
  });
  const tail = await run(['logs', 'talker', '--tail', '2']);
  assert.equal(tail.stdout.trim().split('\n').length, 2);
  await throughEachReplica('logs --previous', async () => {
    const prev = await run(['logs', 'crasher', '--previous']);
    assert.equal(prev.code, 0, prev.stderr);
    assert.equal(prev.stdout, 'first run\n');
    const cur = await run(['logs', 'crasher']);
    assert.equal(cur.stdout, 'second run\n');
  });
});

test('kubectl logs -f: lines arrive as they are written', { skip }, async () => {
  await throughEachReplica('logs -f', async () => {
    const k = spawnKubectl(['logs', '-f', 'talker', '--tail', '1']);
    try {
      const first = await eventually(() => /line (\d+)\n/.exec(k.text()), 20_000, 'the first line');
      const n = Number(first[1]);
      // Lines written after the command started: it follows.
      await eventually(() => k.text().includes(`line ${n + 3}\n`), 20_000, `line ${n + 3}`);
    } finally {
      k.kill();
    }
  });
});

test('kubectl exec: output, stdin, exit codes', { skip }, async () => {
  const hostname = readFileSync('/etc/hostname', 'utf8');
  await throughEachReplica('exec', async () => {
    const r = await run(['exec', 'talker', '--', 'cat', '/etc/hostname']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, hostname, 'the process runtime runs on the host: its /etc/hostname');
  });
  await throughEachReplica('exec -i', async () => {
    const r = await run(['exec', '-i', 'talker', '--', 'tr', 'a-z', 'A-Z'], 'hello edge\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'HELLO EDGE\n');
  });
  await throughEachReplica('exec exit code', async () => {
    const r = await run(['exec', 'talker', '--', 'sh', '-c', 'echo to-stderr >&2; exit 3']);
    assert.equal(r.code, 3, `kubectl exits with the command's code: ${r.stderr}`);
    assert.match(r.stderr, /to-stderr/);
  });
});

test('kubectl exec over SPDY/3.1 (what kube-apiserver < 1.36 speaks to kubelets, and kubectl < 1.30): output, stdin, exit code', { skip }, async () => {
  // kubectl 1.35 told to use SPDY, through each replica.
  await throughEachReplica('exec over SPDY', async () => {
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(kubectlBin(), ['--kubeconfig', c.api.kubeconfigPath, '--cache-dir', cacheDir, 'exec', '-i', 'talker', '--', 'sh', '-c', 'tr a-z A-Z; exit 4'], {
        env: { ...process.env, HOME: cacheDir, KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end('spdy works\n');
    });
    assert.equal(r.stdout, 'SPDY WORKS\n', r.stderr);
    assert.equal(r.code, 4);
  });
  // Debian's kubectl 1.20 speaks only SPDY.
  const old = kubectlPath('1.20');
  if (old) {
    const r = await kubectl(old, c.api.kubeconfigPath, ['exec', 'talker', '--', 'echo', 'from kubectl 1.20'], { cacheDir, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'from kubectl 1.20\n');
  }
});

test('kubectl exec -it: a terminal (driven through a pty by script), with its size', { skip }, async () => {
  await throughEachReplica('exec -it', async () => {
    const cmd = `${kubectlBin()} --kubeconfig ${c.api.kubeconfigPath} --cache-dir ${cacheDir} exec -it talker -- sh -c 'tty; stty size'`;
    const child = spawn('script', ['-q', '-e', '-c', cmd, '/dev/null'], { env: { ...process.env, HOME: cacheDir, COLUMNS: '100', LINES: '30' } });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    const [code] = (await within(once(child, 'exit'), 60_000, 'kubectl exec -it')) as [number];
    assert.equal(code, 0, text);
    assert.match(text, /\/dev\/pts\/\d+/, 'a terminal on the edge');
    assert.match(text, /\n?\d+ \d+\r?\n/, `stty size answers rows and columns: ${JSON.stringify(text)}`);
  });
});

test('the link cut during logs -f: kubectl ends cleanly, nothing hangs; after the reconnect logs work again', { skip }, async () => {
  const k = spawnKubectl(['logs', '-f', 'talker', '--tail', '1']);
  await eventually(() => /line \d+\n/.test(k.text()), 20_000, 'lines flowing');
  const exited = once(k, 'exit');
  link.cut();
  await within(exited, 30_000, 'kubectl logs -f to end after the link was cut');
  await eventually(
    async () => {
      const r = await run(['logs', 'talker', '--tail', '1']);
      return r.code === 0 && /line \d+/.test(r.stdout);
    },
    30_000,
    'logs after the node reconnected',
  );
});

test('a pod whose node is connected to no replica: a clear error, at once', { skip }, async () => {
  await c.core.createNode({ body: { metadata: { name: 'edge-away', labels: { 'node-role.kubernetes.io/edge': '' } } } });
  await c.core.replaceNodeStatus({
    name: 'edge-away',
    body: {
      metadata: { name: 'edge-away' },
      status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }], daemonEndpoints: { kubeletEndpoint: { Port: lb.port } } },
    },
  });
  await c.core.createNamespacedPod({
    namespace: 'default',
    body: { metadata: { name: 'away', namespace: 'default' }, spec: { nodeName: 'edge-away', containers: [{ name: 'main', image: 'busybox' }] } },
  });
  await eventually(
    async () => {
      const r = await run(['logs', 'away']);
      return r.code !== 0 && /not connected/.test(r.stderr);
    },
    20_000,
    'the error naming the node as not connected',
  );
});
