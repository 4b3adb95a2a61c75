/**
 * Controllers end to end (issue #5): the local control plane, CloudCore processes
 * and bundled EdgeCore processes; objects created through client-node; the edge's
 * store read from its real file; sync records read through the API.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { startCluster, edgeStore, storeEquals, SYNC, type Cluster } from '../helpers/cluster.js';
import { eventually } from '../helpers/process.js';
import { ThinEdge, codec } from '../helpers/cloud.js';
import { newMessage } from '../../shared/protocol/index.js';

let cluster: Cluster;
before(async () => {
  cluster = await startCluster();
});
after(async () => {
  await cluster.close();
});

const ns = 'default';

function cm(name: string, data: Record<string, string>): k8s.V1ConfigMap {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, data };
}

function pod(name: string, node: string, refs: { cm?: string; secret?: string }): k8s.V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns },
    spec: {
      nodeName: node,
      containers: [
        {
          name: 'app',
          image: 'busybox',
          ...(refs.cm ? { envFrom: [{ configMapRef: { name: refs.cm } }] } : {}),
          ...(refs.secret ? { env: [{ name: 'T', valueFrom: { secretKeyRef: { name: refs.secret, key: 'token' } } }] } : {}),
        },
      ],
    },
  };
}

async function rvOf(kind: 'pod' | 'configmap' | 'secret', name: string): Promise<string> {
  const c = cluster.core;
  const o =
    kind === 'pod'
      ? await c.readNamespacedPod({ name, namespace: ns })
      : kind === 'configmap'
        ? await c.readNamespacedConfigMap({ name, namespace: ns })
        : await c.readNamespacedSecret({ name, namespace: ns });
  return o.metadata!.resourceVersion!;
}

async function records(node: string): Promise<Map<string, string | undefined>> {
  const list = (await cluster.objects.listNamespacedCustomObject({ ...SYNC, namespace: ns })) as {
    items: { metadata: { name: string }; spec: { objectKind: string; objectName: string }; status?: { objectResourceVersion?: string } }[];
  };
  return new Map(list.items.filter((i) => i.metadata.name.startsWith(`${node}.`)).map((i) => [`${i.spec.objectKind}/${i.spec.objectName}`, i.status?.objectResourceVersion]));
}

describe('controllers: cluster state reaches edge nodes', () => {
  test('a pod with a configmap and a secret: the edge store holds exactly them, the records carry the ACKed versions, the node registered', async () => {
    const cloud = await cluster.startCloud('replica-a');
    const edge = cluster.startEdge('edge-a', [cloud.url]);
    await edge.waitFor(/connected to cloud/);
    // Node registration: the Node object with the edge role, nodeInfo and a Ready condition; a renewed Lease.
    const node = await eventually(async () => await cluster.core.readNode({ name: 'edge-a' }).catch(() => undefined), 15_000, 'Node edge-a');
    assert.equal(node.metadata?.labels?.['node-role.kubernetes.io/edge'], '');
    await eventually(async () => (await cluster.core.readNode({ name: 'edge-a' })).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'), 15_000, 'Ready');
    const n2 = await cluster.core.readNode({ name: 'edge-a' });
    assert.equal(n2.status?.nodeInfo?.operatingSystem, process.platform);
    assert.ok(n2.status?.capacity?.cpu, 'capacity reported');
    const lease = await eventually(
      async () =>
        await cluster.kc
          .makeApiClient(k8s.CoordinationV1Api)
          .readNamespacedLease({ name: 'edge-a', namespace: 'kube-node-lease' })
          .catch(() => undefined),
      10_000,
      'Lease',
    );
    assert.equal(lease.spec?.holderIdentity, 'edge-a');

    await cluster.core.createNamespacedConfigMap({ namespace: ns, body: cm('a-cfg', { greeting: 'hello' }) });
    await cluster.core.createNamespacedConfigMap({ namespace: ns, body: cm('a-unrelated', { x: 'y' }) });
    await cluster.core.createNamespacedSecret({
      namespace: ns,
      body: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'a-secret', namespace: ns }, stringData: { token: 's3cret' } },
    });
    await cluster.core.createNamespacedPod({ namespace: ns, body: pod('a-app', 'edge-a', { cm: 'a-cfg', secret: 'a-secret' }) });
    // Another node's pod must not reach edge-a.
    await cluster.core.createNamespacedPod({ namespace: ns, body: pod('other-app', 'edge-other', {}) });

    const expected = async () => ({
      'default/pod/a-app': await rvOf('pod', 'a-app'),
      'default/configmap/a-cfg': await rvOf('configmap', 'a-cfg'),
      'default/secret/a-secret': await rvOf('secret', 'a-secret'),
    });
    await storeEquals(cluster.dataDir('edge-a'), expected);
    await eventually(
      async () => {
        const r = await records('edge-a');
        const want = await expected();
        return (
          r.get('Pod/a-app') === want['default/pod/a-app'] &&
          r.get('ConfigMap/a-cfg') === want['default/configmap/a-cfg'] &&
          r.get('Secret/a-secret') === want['default/secret/a-secret'] &&
          r.size === 3
        );
      },
      15_000,
      'ObjectSync records with the ACKed versions',
    );

    // An update of the configmap reaches the node and its record.
    await cluster.core.replaceNamespacedConfigMap({
      name: 'a-cfg',
      namespace: ns,
      body: { ...cm('a-cfg', { greeting: 'bonjour' }), metadata: { name: 'a-cfg', namespace: ns, resourceVersion: await rvOf('configmap', 'a-cfg') } },
    });
    await storeEquals(cluster.dataDir('edge-a'), expected);
    await edge.stop();
    await cloud.proc.stop();
  });

  test('edge offline while objects are created, updated and deleted: on reconnect it converges, and graceful deletion waits for the node', async () => {
    const cloud = await cluster.startCloud('replica-b');
    let edge = cluster.startEdge('edge-b', [cloud.url]);
    await edge.waitFor(/connected to cloud/);
    await cluster.core.createNamespacedConfigMap({ namespace: ns, body: cm('b-cfg', { v: '1' }) });
    await cluster.core.createNamespacedConfigMap({ namespace: ns, body: cm('b-cfg2', { v: '1' }) });
    await cluster.core.createNamespacedPod({ namespace: ns, body: pod('b-keep', 'edge-b', { cm: 'b-cfg' }) });
    await cluster.core.createNamespacedPod({ namespace: ns, body: pod('b-gone', 'edge-b', { cm: 'b-cfg2' }) });
    await eventually(() => edgeStore(cluster.dataDir('edge-b')).size === 4, 15_000, 'four objects on edge-b');

    await edge.kill9();
    // While the node is away: update, create, delete.
    await cluster.core.replaceNamespacedConfigMap({
      name: 'b-cfg',
      namespace: ns,
      body: { ...cm('b-cfg', { v: '2' }), metadata: { name: 'b-cfg', namespace: ns, resourceVersion: await rvOf('configmap', 'b-cfg') } },
    });
    await cluster.core.createNamespacedPod({ namespace: ns, body: pod('b-new', 'edge-b', {}) });
    await cluster.core.deleteNamespacedPod({ name: 'b-gone', namespace: ns });
    // A bound pod is deleted gracefully: it stays (Terminating) until its node confirms.
    await new Promise((r) => setTimeout(r, 1500));
    const terminating = await cluster.core.readNamespacedPod({ name: 'b-gone', namespace: ns });
    assert.ok(terminating.metadata?.deletionTimestamp, 'pod is terminating, waiting for its node');

    edge = cluster.startEdge('edge-b', [cloud.url]);
    await storeEquals(cluster.dataDir('edge-b'), async () => ({
      'default/pod/b-keep': await rvOf('pod', 'b-keep'),
      'default/pod/b-new': await rvOf('pod', 'b-new'),
      'default/configmap/b-cfg': await rvOf('configmap', 'b-cfg'),
    }));
    // The node confirmed: the pod is gone from the API, and so are the records of what the node no longer holds.
    await eventually(
      async () => (await cluster.core.readNamespacedPod({ name: 'b-gone', namespace: ns }).catch((e: { code?: number }) => e.code)) === 404,
      15_000,
      'pod deletion completed',
    );
    await eventually(
      async () => {
        const r = await records('edge-b');
        return r.size === 3 && !r.has('Pod/b-gone') && !r.has('ConfigMap/b-cfg2');
      },
      15_000,
      'records of deleted objects garbage-collected',
    );
    await edge.stop();
    // The node is decommissioned: once its Node object is gone, the leader garbage-collects its records.
    await cluster.core.deleteNode({ name: 'edge-b' });
    await eventually(async () => (await records('edge-b')).size === 0, 20_000, 'records of the deleted node garbage-collected');
    await cloud.proc.stop();
  });

  test('the periodic reconcile repairs what a watch or a message missed', async () => {
    const cloud = await cluster.startCloud('replica-c');
    const edge = cluster.startEdge('edge-c', [cloud.url]);
    await edge.waitFor(/connected to cloud/);
    await cluster.core.createNamespacedConfigMap({ namespace: ns, body: cm('c-cfg', { v: '1' }) });
    await cluster.core.createNamespacedPod({ namespace: ns, body: pod('c-app', 'edge-c', { cm: 'c-cfg' }) });
    await eventually(async () => (await records('edge-c')).size === 2, 15_000, 'records');
    // The pod settles first (its node reports it — no command, so CreateContainerError — and CloudCore's
    // eviction protection patches it once): a later change of the pod would resend the configmap through
    // the watch path and hide what the periodic reconcile does.
    await eventually(
      async () => {
        const p = await cluster.core.readNamespacedPod({ name: 'c-app', namespace: ns });
        return p.metadata?.annotations?.['ledge.io/eviction-protection'] !== undefined && p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'CreateContainerError';
      },
      15_000,
      'the pod to settle',
    );
    await eventually(async () => (await records('edge-c')).get('Pod/c-app') === (await rvOf('pod', 'c-app')), 15_000, 'the pod record up to date');
    // Lose a record (as if an ACK had never been recorded): the reconcile resends, the edge
    // recognises the version it has, ACKs, and the record is back.
    const list = (await cluster.objects.listNamespacedCustomObject({ ...SYNC, namespace: ns })) as { items: { metadata: { name: string }; spec: { objectName: string } }[] };
    const rec = list.items.find((i) => i.metadata.name.startsWith('edge-c.') && i.spec.objectName === 'c-cfg')!;
    await cluster.objects.deleteNamespacedCustomObject({ ...SYNC, namespace: ns, name: rec.metadata.name });
    await eventually(async () => (await records('edge-c')).get('ConfigMap/c-cfg') === (await rvOf('configmap', 'c-cfg')), 15_000, 'record repaired');
    await cloud.proc.waitFor(/reconcile repaired node edge-c: 1 sent/);
    await edge.stop();
    await cloud.proc.stop();
  });

  test("a node cannot write another node's objects", async () => {
    const cloud = await cluster.startCloud('replica-d');
    await cluster.core.createNamespacedPod({ namespace: ns, body: pod('d-victim', 'edge-victim', {}) });
    const intruder = await ThinEdge.connect(cloud.url, 'edge-intruder');
    const podStatus = newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: 'default/podstatus/d-victim', sync: true, content: { phase: 'Failed' } });
    const nodeStatus = newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: 'default/nodestatus/edge-victim', sync: true, content: { conditions: [] } });
    intruder.send(podStatus);
    intruder.send(nodeStatus);
    for (const m of [podStatus, nodeStatus]) {
      const ack = await eventually(() => intruder.messages.find((x) => x.route.operation === 'ack' && x.header.parentId === m.header.id), 10_000, 'rejection');
      assert.equal((ack.content as { code: string }).code, 'LEDGE_ERR_FORBIDDEN');
    }
    const victim = await cluster.core.readNamespacedPod({ name: 'd-victim', namespace: ns });
    assert.notEqual(victim.status?.phase, 'Failed');
    await assert.rejects(cluster.core.readNode({ name: 'edge-victim' }), (e: { code?: number }) => e.code === 404);
    // Its own pod's status is accepted and written.
    await cluster.core.createNamespacedPod({ namespace: ns, body: pod('d-own', 'edge-intruder', {}) });
    // Refused (LEDGE_ERR_FORBIDDEN) until the cloud's pod informer has seen the pod bound to this
    // node: send a fresh report until one is accepted, within a deadline.
    const ack = await eventually(
      async () => {
        const own = newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: 'default/podstatus/d-own', sync: true, content: { phase: 'Running' } });
        intruder.send(own);
        const a = await eventually(() => intruder.messages.find((x) => x.header.parentId === own.header.id), 10_000, 'ack');
        return a.content === null ? a : undefined;
      },
      15_000,
      'the status of its own pod accepted',
    );
    assert.equal(ack.content, null);
    assert.equal((await cluster.core.readNamespacedPod({ name: 'd-own', namespace: ns })).status?.phase, 'Running');
    void codec;
    intruder.close();
    await cloud.proc.stop();
  });
});
