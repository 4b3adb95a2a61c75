// Offline autonomy through a power cut: with no cloud reachable, EdgeCore is killed with kill -9
// and started again; it restores its pods from its store and runs them, and once the cloud is
// back their statuses reach the API. Real processes, real link, the local control plane.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { eventually } from '../helpers/process.js';
import { alive, freePort } from '../helpers/pods.js';

const NODE = 'edge-autonomy';
let c: Cluster;

before(async () => {
  c = await startCluster();
});
after(async () => {
  await c?.close();
});

const pids = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number) : []);

test('kill -9 with the cloud down: the pod runs again from the store; its status arrives once the cloud is back, once', async () => {
  const out = join(c.dir, 'out');
  mkdirSync(out);
  const pidFile = join(out, 'pids');
  const port = await freePort();
  let cloud = await c.startCloud('cloud-a', ['--port', String(port)]);
  const edgeArgs = ['--pod-resync-ms', '500'];
  let edge = c.startEdge(NODE, [cloud.url], edgeArgs);
  await eventually(async () => (await c.core.readNode({ name: NODE }).catch(() => undefined)) !== undefined, 30_000, 'node registered');
  const pod: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'keeper', namespace: 'default' },
    spec: {
      nodeName: NODE,
      containers: [
        {
          name: 'main',
          image: 'busybox',
          command: ['sh', '-c', 'echo $$$$ >> "$LEDGE_VOLUME_OUT/pids"; trap "exit 0" TERM; while true; do sleep 0.2; done'],
          volumeMounts: [{ name: 'out', mountPath: '/out' }],
        },
      ],
      volumes: [{ name: 'out', hostPath: { path: out } }],
    },
  };
  await c.core.createNamespacedPod({ namespace: 'default', body: pod });
  const running = (p: V1Pod | undefined) => p?.status?.phase === 'Running' && p.status.containerStatuses?.[0]?.state?.running !== undefined;
  const first = await eventually(
    async () => {
      const p = await c.core.readNamespacedPod({ name: 'keeper', namespace: 'default' });
      return running(p) ? p : undefined;
    },
    30_000,
    'pod Running',
  );
  const firstId = first.status?.containerStatuses?.[0]?.containerID;
  assert.equal(pids(pidFile).length, 1);
  const [pid1] = pids(pidFile) as [number];

  // Power cut with no cloud: the cloud goes first, then EdgeCore dies without any cleanup.
  await cloud.proc.kill9();
  await edge.kill9();
  edge = c.startEdge(NODE, [cloud.url], edgeArgs);
  // Back from the store alone: the leftover process (its output pipe died with the old EdgeCore) is replaced.
  await eventually(() => pids(pidFile).length === 2, 30_000, 'the pod to run again without the cloud');
  const pid2 = pids(pidFile)[1]!;
  assert.notEqual(pid2, pid1);
  await eventually(() => !alive(pid1), 10_000, 'the leftover process to be gone');
  assert.ok(alive(pid2));
  assert.match(edge.output(), /edged started","node":"edge-autonomy","module":"edged","pods":1/);

  // The cloud is back: the pod's status reaches the API, showing the new run.
  cloud = await c.startCloud('cloud-a', ['--port', String(port)]);
  const after = await eventually(
    async () => {
      const p = await c.core.readNamespacedPod({ name: 'keeper', namespace: 'default' });
      const id = p.status?.containerStatuses?.[0]?.containerID;
      return running(p) && id !== firstId ? p : undefined;
    },
    30_000,
    'the new status in the API',
  );
  assert.ok(after.status?.containerStatuses?.[0]?.containerID);
  // Nothing duplicated: one process runs, the one started after the restart.
  assert.deepEqual(pids(pidFile), [pid1, pid2], `one run after the restart; the edge's log:\n${edge.output()}`);
  assert.ok(alive(pid2));
  await c.core.deleteNamespacedPod({ name: 'keeper', namespace: 'default' });
  await eventually(() => !alive(pid2), 30_000, 'the pod stopped after its deletion');
});
