/**
 * The EdgeController's side of the desired-set flow (docs/controllers.md, "Wiring"): it
 * holds no reference to the SyncController; each change of a node's desired set becomes
 * one `desired-changed` message over Beehive, coalesced per node within a microtask, with
 * the pods being deleted gracefully listed. And CloudCore's wiring: the modules registered,
 * the hub's session reports going to the SyncController.
 * In process, against the local control plane (over HTTPS through client-node).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { ModuleContext } from '../../shared/beehive/index.js';
import type { Message } from '../../shared/protocol/index.js';
import type { k8s } from '../../cloud/kube/index.js';
import { EdgeController } from '../../cloud/edgecontroller/index.js';
import { SyncOperation, type DesiredChange } from '../../cloud/synccontroller/index.js';
import { startCloudCore } from '../../cloud/main.js';
import { loadConfig } from '../../shared/config/index.js';
import { cloudConfigSpec } from '../../cloud/config.js';
import { captureLog } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';

const cp = useLocalControlPlane('ledge-wiring-', { nodeLeaseTimeoutMs: 600_000 });

const pod = (name: string, nodeName: string, configMap?: string): k8s.V1Pod => ({
  metadata: { name, namespace: 'default' },
  spec: { nodeName, containers: [{ name: 'c', image: 'busybox', ...(configMap ? { envFrom: [{ configMapRef: { name: configMap } }] } : {}) }] },
});

/** An EdgeController on a fake bus that records what it sends. */
async function running() {
  const log = captureLog();
  const sent: { to: string; m: Message }[] = [];
  const ac = new AbortController();
  const ctx = {
    name: 'edgecontroller',
    log: log.logger,
    send: async (to: string, m: Message) => void sent.push({ to, m }),
    async *messages() {
      await new Promise((r) => ac.signal.addEventListener('abort', r));
    },
  } as unknown as ModuleContext;
  const ec = new EdgeController(cp.kc, log.logger);
  // Its desired sets are unknown until the informers listed: the SyncController reconciles no node until then.
  assert.equal(ec.synced(), false);
  const done = ec.start(ctx, ac.signal);
  await eventually(() => log.has(/edge controller watching/), 15_000, 'informers synced');
  assert.equal(ec.synced(), true);
  const changes = (node: string) => sent.filter((s) => (s.m.content as DesiredChange).node === node).map((s) => s.m.content as DesiredChange);
  const stop = async () => {
    ac.abort();
    await done;
  };
  return { ec, sent, changes, log, stop };
}

describe('EdgeController → SyncController: desired-changed over Beehive', () => {
  test('an informer burst is one message per node; every message goes to the SyncController', async () => {
    // Listed at start: one burst of add events.
    for (const name of ['burst-a', 'burst-b', 'burst-c']) await cp.core.createNamespacedPod({ namespace: 'default', body: pod(name, 'w-burst') });
    const ec = await running();
    try {
      await eventually(() => ec.changes('w-burst').length > 0, 5_000, 'a change for w-burst');
      assert.equal(ec.changes('w-burst').length, 1, 'three pods listed at once: one message');
      for (const { to, m } of ec.sent) {
        assert.equal(to, 'synccontroller');
        assert.equal(m.route.operation, SyncOperation.DesiredChanged);
        assert.equal(m.route.resource, `node/${(m.content as DesiredChange).node}`);
      }
    } finally {
      await ec.stop();
    }
  });

  test('a pod, its configmap, a move and a graceful delete: each tells the nodes concerned', async () => {
    const ec = await running();
    try {
      await cp.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'w-cm', namespace: 'default' }, data: { a: '1' } } });
      const created = await cp.core.createNamespacedPod({ namespace: 'default', body: pod('w-pod', 'w-n1', 'w-cm') });
      await eventually(() => ec.changes('w-n1').length >= 1, 10_000, 'the pod bound to w-n1');
      // The configmap it references changes: its node is told.
      const before = ec.changes('w-n1').length;
      await cp.core.replaceNamespacedConfigMap({ name: 'w-cm', namespace: 'default', body: { metadata: { name: 'w-cm', namespace: 'default' }, data: { a: '2' } } });
      await eventually(() => ec.changes('w-n1').length > before, 10_000, 'the configmap change');
      assert.ok(ec.changes('w-n1').every((c) => c.terminating.length === 0));
      // Deleted gracefully: still bound, with a deletionTimestamp; its node is told it is terminating.
      await cp.core.deleteNamespacedPod({ name: 'w-pod', namespace: 'default' });
      const terminating = await eventually(() => ec.changes('w-n1').find((c) => c.terminating.length > 0), 10_000, 'the terminating pod');
      assert.deepEqual(terminating.terminating, [{ kind: 'Pod', namespace: 'default', name: 'w-pod', uid: created.metadata!.uid! }]);
    } finally {
      await ec.stop();
    }
  });
});

describe('CloudCore wiring', () => {
  test('CloudHub, EdgeController, SyncController, the elector and CloudStream are registered; session reports go to the SyncController and CloudStream', async () => {
    const log = captureLog();
    const { config } = await loadConfig(cloudConfigSpec, {
      argv: ['--port', '0', '--insecure-plain-websocket', '--stream-port', '0', '--kubeconfig', cp.api.kubeconfigPath],
      env: {},
    });
    const cloud = await startCloudCore(config, log.logger);
    try {
      for (const name of ['cloudhub', 'edgecontroller', 'synccontroller', 'leaderelection', 'cloudstream']) assert.ok(cloud.bee.has(name), name);
      assert.deepEqual(cloud.hub.options.sessionSubscribers, ['synccontroller', 'cloudstream']);
      assert.ok(cloud.sync);
    } finally {
      await cloud.stop();
    }
  });

  test('without a Kubernetes API: CloudHub and the EdgeController only, and no session subscribers', async () => {
    const log = captureLog();
    const { config } = await loadConfig(cloudConfigSpec, { argv: ['--port', '0', '--insecure-plain-websocket'], env: {} });
    const saved = process.env.KUBERNETES_SERVICE_HOST;
    delete process.env.KUBERNETES_SERVICE_HOST;
    const cloud = await startCloudCore(config, log.logger);
    try {
      assert.ok(cloud.bee.has('cloudhub') && cloud.bee.has('edgecontroller'));
      assert.equal(cloud.bee.has('synccontroller'), false);
      assert.deepEqual(cloud.hub.options.sessionSubscribers, []);
    } finally {
      await cloud.stop();
      if (saved !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved;
    }
  });
});
