// Graceful pod deletion (kubelet confirm), finalizers, the scheduler (binding) and
// node lifecycle (lease timeout → NotReady).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import { eventually, expectStatus, raw, startTestServer, type TestServer } from './helpers.js';

let s: TestServer;
before(async () => {
  s = await startTestServer({ nodeLeaseTimeoutMs: 1500, nodeMonitorPeriodMs: 200 });
});
after(async () => {
  await s.stop();
});

const pod = (name: string, extra: Partial<k8s.V1PodSpec> = {}): k8s.V1Pod => ({ metadata: { name }, spec: { containers: [{ name: 'c', image: 'img:1' }], ...extra } });

function readyNode(name: string, labels: Record<string, string> = {}): k8s.V1Node {
  return {
    metadata: { name, labels },
    status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', lastHeartbeatTime: new Date(), lastTransitionTime: new Date() }] },
  };
}

describe('graceful deletion', () => {
  test('a bound pod stays with deletionTimestamp until its node confirms with grace 0', async () => {
    await s.core.createNamespacedPod({ namespace: 'default', body: pod('bound', { nodeName: 'somewhere' }) });
    const del = (await s.core.deleteNamespacedPod({ name: 'bound', namespace: 'default' })) as k8s.V1Pod;
    assert.ok(del.metadata!.deletionTimestamp);
    assert.equal(del.metadata!.deletionGracePeriodSeconds, 30);
    const still = await s.core.readNamespacedPod({ name: 'bound', namespace: 'default' });
    assert.ok(still.metadata!.deletionTimestamp);
    // A shorter grace period shortens it; the kubelet's confirm (grace 0) removes it.
    const shorter = (await s.core.deleteNamespacedPod({ name: 'bound', namespace: 'default', gracePeriodSeconds: 5 })) as k8s.V1Pod;
    assert.equal(shorter.metadata!.deletionGracePeriodSeconds, 5);
    await s.core.deleteNamespacedPod({ name: 'bound', namespace: 'default', gracePeriodSeconds: 0 });
    assert.equal((await expectStatus(s.core.readNamespacedPod({ name: 'bound', namespace: 'default' }))).code, 404);
  });

  test('a pod without a node is deleted at once', async () => {
    await s.core.createNamespacedPod({ namespace: 'default', body: pod('unbound', { schedulerName: 'nobody' }) });
    await s.core.deleteNamespacedPod({ name: 'unbound', namespace: 'default' });
    assert.equal((await expectStatus(s.core.readNamespacedPod({ name: 'unbound', namespace: 'default' }))).code, 404);
  });

  test('finalizers hold deletion until removed', async () => {
    await s.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'fin', finalizers: ['example.com/hold'] } } });
    await s.core.deleteNamespacedConfigMap({ name: 'fin', namespace: 'default' });
    const held = await s.core.readNamespacedConfigMap({ name: 'fin', namespace: 'default' });
    assert.ok(held.metadata!.deletionTimestamp);
    const r = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/configmaps/fin', JSON.stringify({ metadata: { finalizers: null } }), {
      'content-type': 'application/merge-patch+json',
    });
    assert.equal(r.status, 200);
    assert.equal((await expectStatus(s.core.readNamespacedConfigMap({ name: 'fin', namespace: 'default' }))).code, 404);
  });
});

describe('scheduler', () => {
  test('binds a pod to a Ready node matching its nodeSelector; binding twice is 409', async () => {
    await s.core.createNode({ body: readyNode('cloud-1') });
    await s.core.createNode({ body: readyNode('edge-1', { 'node-role.kubernetes.io/edge': '' }) });
    await s.core.createNamespacedPod({ namespace: 'default', body: pod('edge-pod', { nodeSelector: { 'node-role.kubernetes.io/edge': '' } }) });
    const p = await eventually(async () => {
      const x = await s.core.readNamespacedPod({ name: 'edge-pod', namespace: 'default' });
      return x.spec!.nodeName ? x : undefined;
    }, 'pod scheduled');
    assert.equal(p.spec!.nodeName, 'edge-1');
    assert.equal(p.status!.conditions!.find((c) => c.type === 'PodScheduled')!.status, 'True');
    const again = await raw(
      s.handle,
      'POST',
      '/api/v1/namespaces/default/pods/edge-pod/binding',
      JSON.stringify({ apiVersion: 'v1', kind: 'Binding', metadata: { name: 'edge-pod' }, target: { kind: 'Node', name: 'cloud-1' } }),
    );
    assert.equal(again.status, 409);
  });

  test('a pod that fits no node stays Pending/Unschedulable until a node appears', async () => {
    await s.core.createNamespacedPod({ namespace: 'default', body: pod('gpu-pod', { nodeSelector: { gpu: 'yes' } }) });
    const p = await eventually(async () => {
      const x = await s.core.readNamespacedPod({ name: 'gpu-pod', namespace: 'default' });
      return x.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable') ? x : undefined;
    }, 'unschedulable condition');
    assert.equal(p.spec!.nodeName, undefined);
    await s.core.createNode({ body: readyNode('gpu-1', { gpu: 'yes' }) });
    const bound = await eventually(async () => (await s.core.readNamespacedPod({ name: 'gpu-pod', namespace: 'default' })).spec!.nodeName, 'scheduled to gpu node');
    assert.equal(bound, 'gpu-1');
  });

  test('explicit binding subresource binds an unscheduled pod', async () => {
    await s.core.createNamespacedPod({ namespace: 'default', body: pod('manual', { schedulerName: 'my-scheduler' }) });
    await s.core.createNamespacedBinding({ namespace: 'default', body: { metadata: { name: 'manual' }, target: { kind: 'Node', name: 'cloud-1' } } });
    assert.equal((await s.core.readNamespacedPod({ name: 'manual', namespace: 'default' })).spec!.nodeName, 'cloud-1');
  });
});

describe('node lifecycle', () => {
  test('a node whose lease is not renewed becomes NotReady (Unknown) and tainted; renewing keeps it Ready', async () => {
    await s.core.createNode({ body: readyNode('renewed') });
    await s.core.createNode({ body: readyNode('silent') });
    const lease = await s.coord.createNamespacedLease({
      namespace: 'kube-node-lease',
      body: { metadata: { name: 'renewed' }, spec: { holderIdentity: 'renewed', leaseDurationSeconds: 40, renewTime: new Date() } },
    });
    let cur = lease;
    const renew = setInterval(() => {
      void s.coord
        .replaceNamespacedLease({ name: 'renewed', namespace: 'kube-node-lease', body: { ...cur, spec: { ...cur.spec, renewTime: new Date() } } })
        .then((l) => (cur = l))
        .catch(() => {});
    }, 300);
    try {
      const silent = await eventually(async () => {
        const n = await s.core.readNode({ name: 'silent' });
        return n.status!.conditions!.find((c) => c.type === 'Ready')!.status === 'Unknown' ? n : undefined;
      }, 'silent node NotReady');
      assert.equal(silent.status!.conditions!.find((c) => c.type === 'Ready')!.reason, 'NodeStatusUnknown');
      await eventually(async () => (await s.core.readNode({ name: 'silent' })).spec?.taints?.some((t) => t.key === 'node.kubernetes.io/unreachable'), 'unreachable taint');
      const renewed = await s.core.readNode({ name: 'renewed' });
      assert.equal(renewed.status!.conditions!.find((c) => c.type === 'Ready')!.status, 'True');
    } finally {
      clearInterval(renew);
    }
    // The scheduler does not pick the NotReady node.
    await s.core.createNamespacedPod({ namespace: 'default', body: pod('avoid', { nodeSelector: { 'kubernetes.io/hostname': 'silent' } }) });
    // The scheduler has considered it (PodScheduled False, Unschedulable) and did not bind it.
    const avoid = await eventually(async () => {
      const p = await s.core.readNamespacedPod({ name: 'avoid', namespace: 'default' });
      return p.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable') ? p : undefined;
    }, 'the scheduler to mark the pod Unschedulable');
    assert.equal(avoid.spec!.nodeName, undefined);
  });
});
