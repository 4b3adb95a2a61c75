// Static pods: a manifest in <data-dir>/manifests runs without any cloud, and appears in the API
// as a mirror pod once the node is connected; editing the file replaces the pod, removing it
// stops the pod and deletes the mirror. Real EdgeCore, CloudCore and local control plane.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { eventually } from '../helpers/process.js';
import { freePort } from '../helpers/pods.js';

const NODE = 'edge-static';
let c: Cluster;
before(async () => {
  c = await startCluster();
});
after(async () => {
  await c?.close();
});

const lines = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean) : []);

test('a manifest runs offline, gets its mirror pod once connected, is replaced when edited and removed with its file', async () => {
  const out = join(c.dir, 'static-out');
  mkdirSync(out);
  const manifests = join(c.dataDir(NODE), 'manifests');
  mkdirSync(manifests, { recursive: true });
  const manifest = (version: string) => `apiVersion: v1
kind: Pod
metadata: {name: collector, labels: {app: collector}}
spec:
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo ${version} >> "$LEDGE_VOLUME_OUT/runs"; trap "exit 0" TERM; while true; do sleep 0.2; done']
    volumeMounts: [{name: out, mountPath: /out}]
  volumes: [{name: out, hostPath: {path: ${out}}}]
`;
  writeFileSync(join(manifests, 'collector.yaml'), manifest('v1'));
  writeFileSync(join(manifests, 'broken.yaml'), 'kind: Deployment\nmetadata: {name: x}\n');
  const port = await freePort();
  // No cloud yet: the endpoint refuses connections.
  const edge = c.startEdge(NODE, [`ws://127.0.0.1:${port}/v1/edge`], ['--pod-resync-ms', '300']);
  await eventually(() => lines(join(out, 'runs')).includes('v1'), 30_000, 'the static pod to run without a cloud');
  assert.match(edge.output(), /broken\.yaml .*skipped: kind \?\/Deployment is not a v1 Pod/);
  const cloud = await c.startCloud('cloud-a', ['--port', String(port)]);
  const mirror = await eventually(
    async () => {
      const p = await c.core.readNamespacedPod({ name: `collector-${NODE}`, namespace: 'default' }).catch(() => undefined);
      return p?.status?.phase === 'Running' ? p : undefined;
    },
    30_000,
    'the mirror pod Running in the API',
  );
  assert.ok(mirror.metadata?.annotations?.['kubernetes.io/config.mirror']);
  assert.equal(mirror.spec?.nodeName, NODE);
  // Edited: the pod is replaced (the old run stops, the new one starts) and so is its mirror.
  writeFileSync(join(manifests, 'collector.yaml'), manifest('v2'));
  await eventually(() => lines(join(out, 'runs')).includes('v2'), 30_000, 'the edited static pod to run');
  await eventually(
    async () => {
      const p = await c.core.readNamespacedPod({ name: `collector-${NODE}`, namespace: 'default' }).catch(() => undefined);
      return p && p.metadata?.uid !== mirror.metadata?.uid && p.status?.phase === 'Running';
    },
    30_000,
    'a new mirror pod for the edited manifest',
  ).catch((err: Error) => {
    const lines = (p: string) =>
      p
        .split('\n')
        .filter((l) => /mirror|static pod|collector/.test(l))
        .join('\n');
    throw new Error(`${err.message}\ncloud:\n${lines(cloud.proc.output())}\nedge:\n${lines(edge.output())}`);
  });
  assert.deepEqual(lines(join(out, 'runs')), ['v1', 'v2']);
  // Removed: the pod stops and the mirror goes.
  rmSync(join(manifests, 'collector.yaml'));
  await eventually(
    async () => (await c.core.readNamespacedPod({ name: `collector-${NODE}`, namespace: 'default' }).catch(() => undefined)) === undefined,
    30_000,
    'the mirror pod deleted',
  );
});
