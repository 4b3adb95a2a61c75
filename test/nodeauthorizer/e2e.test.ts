/**
 * Node authorization end to end (issue 13): CloudCore in this process (CloudHub, EdgeController,
 * DeviceController, SyncController, as cloud/main.ts wires them) against the local control plane,
 * and a thin simulated edge for node A on a real CloudHub session. Node A sends a pod status for
 * node B's pod, a Node status for B, a mirror pod bound to B, queries for a secret it was never sent
 * and for B's secret, and a device report for B's Device: each is refused (the protocol's error ACK
 * or query response), published as a violation, and the API server is unchanged (read back with
 * client-node, and with kubectl when it is provisioned). A's own updates still go through.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { newMessage, type ErrorContent, type Message } from '../../shared/protocol/index.js';
import { ErrorCode } from '../../shared/errors/index.js';
import { DEVICE_GROUP, DEVICE_VERSION } from '../../shared/devices/index.js';
import { MIRROR_ANNOTATION, type RefusedEvent } from '../../cloud/nodeauthorizer/index.js';
import { kube } from '../../cloud/kube/index.js';
import { startCloudCore, type CloudCore } from '../../cloud/main.js';
import { loadConfig } from '../../shared/config/index.js';
import { cloudConfigSpec } from '../../cloud/config.js';
import { ThinEdge, captureLog } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { KUBECTL_SKIP, kubectl, requireKubectl } from '../apiserver/helpers.js';

const cp = useLocalControlPlane('ledge-nodeauthorizer-', { nodeLeaseTimeoutMs: 600_000 });
const NS = 'default';
const A = 'authz-a';
const B = 'authz-b';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const objects = () => cp.kc.makeApiClient(kube().CustomObjectsApi);
const deviceTarget = (plural: string) => ({ group: DEVICE_GROUP, version: DEVICE_VERSION, namespace: NS, plural });

function pod(name: string, nodeName: string, secret: string) {
  return {
    metadata: { name, namespace: NS },
    spec: { nodeName, containers: [{ name: 'c', image: 'busybox', env: [{ name: 'T', valueFrom: { secretKeyRef: { name: secret, key: 'token' } } }] }] },
  };
}

async function createDevice(name: string, node: string) {
  const visitors = { protocolName: 'virtualProtocol', configData: { dataType: 'int' } };
  await objects().createNamespacedCustomObject({
    ...deviceTarget('devices'),
    body: {
      apiVersion: `${DEVICE_GROUP}/${DEVICE_VERSION}`,
      kind: 'Device',
      metadata: { name, namespace: NS },
      spec: {
        deviceModelRef: { name: 'authz-model' },
        nodeName: node,
        protocol: { protocolName: 'virtualProtocol' },
        properties: [{ name: 'temperature', desired: { value: '20' }, visitors, reportCycle: 1000, collectCycle: 1000, reportToCloud: true }],
      },
    },
  });
}

async function deviceStatus(name: string): Promise<{ status?: { twins?: { propertyName: string; reported?: { value: string } }[] } } | undefined> {
  try {
    return (await objects().getNamespacedCustomObject({ ...deviceTarget('devicestatuses'), name })) as {
      status?: { twins?: { propertyName: string; reported?: { value: string } }[] };
    };
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

async function cloudCore(): Promise<{ core: CloudCore; log: ReturnType<typeof captureLog> }> {
  const log = captureLog();
  const { config } = await loadConfig(cloudConfigSpec, {
    argv: ['--port', '0', '--stream-port', '0', '--kubeconfig', cp.api.kubeconfigPath, '--insecure-plain-websocket', '--reconcile-interval-ms', '1000'],
    env: {},
  });
  const core = await startCloudCore(config, log.logger);
  cleanups.push(() => core.stop());
  return { core, log };
}

/** The node's answer to `m`: its ACK (sync writes) or its response (queries), within 10 s. */
async function answer(edge: ThinEdge, m: Message): Promise<ErrorContent | Record<string, unknown> | null> {
  const a = await eventually(
    () => edge.messages.find((x) => x.header.parentId === m.header.id && (x.route.operation === 'ack' || x.route.operation === 'response')),
    10_000,
    `the answer to ${m.route.operation} ${m.route.resource}`,
  );
  return a.content as ErrorContent | Record<string, unknown> | null;
}

const upstream = (operation: string, resource: string, content: unknown, group = 'resource') => newMessage({ source: 'edged', group, operation, resource, content, sync: true });
const deviceReport = (names: string[]) =>
  upstream('update', 'devicestatus', { reports: names.map((name) => ({ namespace: NS, name, twins: [{ propertyName: 'temperature', reported: { value: '99' } }] })) }, 'twin');

describe('node authorization: node A cannot touch node B’s objects; its own go through', () => {
  test('pod status, Node status, mirror pod, secret queries and device reports of another node are refused; the API server is unchanged', async () => {
    const events: RefusedEvent[] = [];
    const onRefused = (e: unknown) => void events.push(e as RefusedEvent);
    subscribe('ledge:nodeauthorizer:refused', onRefused);
    cleanups.push(() => void unsubscribe('ledge:nodeauthorizer:refused', onRefused));

    const { core, log } = await cloudCore();
    await eventually(() => log.has(/edge controller watching/) && log.has(/device controller watching/), 30_000, 'the controllers’ informers (and the device CRDs)');

    // Node B's objects first, then A's: one watch per kind delivers them in that order, so once A
    // has received its own, the caches hold B's too.
    const secret = (name: string) => cp.core.createNamespacedSecret({ namespace: NS, body: { metadata: { name }, stringData: { token: name } } });
    for (const name of ['b-secret', 'a-secret', 'never-sent']) await secret(name);
    await cp.core.createNode({ body: { metadata: { name: B, labels: { 'node-role.kubernetes.io/edge': '' } } } });
    await cp.core.createNamespacedPod({ namespace: NS, body: pod('b-pod', B, 'b-secret') });
    await cp.core.createNamespacedPod({ namespace: NS, body: pod('a-pod', A, 'a-secret') });
    await objects().createNamespacedCustomObject({
      ...deviceTarget('devicemodels'),
      body: {
        apiVersion: `${DEVICE_GROUP}/${DEVICE_VERSION}`,
        kind: 'DeviceModel',
        metadata: { name: 'authz-model', namespace: NS },
        spec: { protocol: 'virtualProtocol', properties: [{ name: 'temperature', type: 'INT', accessMode: 'ReadWrite', minimum: '0', maximum: '100' }] },
      },
    });
    await createDevice('b-dev', B);
    await createDevice('a-dev', A);

    const edge = await ThinEdge.connect(core.hub.url, A);
    cleanups.push(() => edge.close());
    for (const r of ['default/pod/a-pod', 'default/device/a-dev']) await eventually(() => edge.messages.some((m) => m.route.resource === r), 20_000, `${r} sent to ${A}`);

    const before = {
      bPod: await cp.core.readNamespacedPod({ name: 'b-pod', namespace: NS }),
      bNode: await cp.core.readNode({ name: B }),
    };

    // The attempts on B's objects.
    const attempts = {
      podStatus: upstream('update', 'default/podstatus/b-pod', { phase: 'Failed', message: 'written by A' }),
      nodeStatus: upstream('update', `default/nodestatus/${B}`, { conditions: [{ type: 'Ready', status: 'False', reason: 'ByA' }] }),
      mirror: upstream('insert', 'default/pod/b-fake-mirror', {
        metadata: { name: 'b-fake-mirror', namespace: NS, annotations: { [MIRROR_ANNOTATION]: 'x' } },
        spec: { nodeName: B, containers: [{ name: 'c', image: 'busybox' }] },
      }),
      neverSent: upstream('query', 'default/secret/never-sent', null, 'meta'),
      bSecret: upstream('query', 'default/secret/b-secret', null, 'meta'),
    };
    for (const m of Object.values(attempts)) edge.send(m);
    for (const [what, m] of Object.entries(attempts)) {
      const a = (await answer(edge, m)) as ErrorContent | null;
      assert.equal(a?.code, ErrorCode.Forbidden, `${what}: ${JSON.stringify(a)}`);
    }
    // A device report for B's device and one for A's in the same batch: B's is left out, A's written.
    const mixed = deviceReport(['b-dev', 'a-dev']);
    edge.send(mixed);
    assert.equal(await answer(edge, mixed), null, 'the batch is received (its entries are judged one by one)');
    const own = await eventually(async () => (await deviceStatus('a-dev'))?.status?.twins?.[0]?.reported?.value, 20_000, 'the DeviceStatus of a-dev');
    assert.equal(own, '99');

    // The violations, one per attempt, each naming node A and what it tried.
    const kinds = events
      .filter((e) => e.node === A)
      .map((e) => e.kind)
      .sort();
    assert.deepEqual(kinds, ['device-status', 'mirror-pod', 'node-status', 'pod-status', 'query', 'query']);
    assert.ok(log.lines.some((l) => l.node === A && l.kind === 'pod-status' && /refused: update default\/podstatus\/b-pod/.test(String(l.msg))));

    // A's own updates: its pod's status, its Node status (which registers it), a query for its secret.
    const ownPod = upstream('update', 'default/podstatus/a-pod', { phase: 'Running' });
    const ownNode = upstream('update', `default/nodestatus/${A}`, { conditions: [{ type: 'Ready', status: 'True' }] });
    const ownSecret = upstream('query', 'default/secret/a-secret', null, 'meta');
    for (const m of [ownPod, ownNode, ownSecret]) edge.send(m);
    assert.equal(await answer(edge, ownPod), null);
    assert.equal(await answer(edge, ownNode), null);
    const s = (await answer(edge, ownSecret)) as { kind?: string; metadata?: { name?: string } };
    assert.equal(s.kind, 'Secret');
    assert.equal(s.metadata?.name, 'a-secret');
    assert.equal((await cp.core.readNamespacedPod({ name: 'a-pod', namespace: NS })).status?.phase, 'Running');
    assert.equal((await cp.core.readNode({ name: A })).status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');

    // The API server holds nothing of what A attempted on B's objects (read after A's own writes landed).
    const bPod = await cp.core.readNamespacedPod({ name: 'b-pod', namespace: NS });
    assert.deepEqual(bPod.status, before.bPod.status, "b-pod's status untouched");
    const bNode = await cp.core.readNode({ name: B });
    assert.equal(bNode.metadata?.resourceVersion, before.bNode.metadata?.resourceVersion, 'Node B untouched');
    await assert.rejects(cp.core.readNamespacedPod({ name: 'b-fake-mirror', namespace: NS }), (e: { code?: number }) => e.code === 404);
    const leases = kube().CoordinationV1Api;
    await assert.rejects(cp.kc.makeApiClient(leases).readNamespacedLease({ name: B, namespace: 'kube-node-lease' }), (e: { code?: number }) => e.code === 404);
    assert.equal(await deviceStatus('b-dev'), undefined, 'no DeviceStatus for b-dev');
  });

  test('the same, as kubectl shows it', { skip: KUBECTL_SKIP }, async () => {
    const cacheDir = join(cp.api.kubeconfigPath, '..', 'kubectl-cache');
    mkdirSync(cacheDir, { recursive: true });
    const k = async (args: string[]) => {
      const r = await kubectl(requireKubectl(), cp.api.kubeconfigPath, args, { cacheDir, timeoutMs: 60_000 });
      return r;
    };
    const phase = await k(['get', 'pod', 'b-pod', '-o', 'jsonpath={.status.phase}']);
    assert.equal(phase.code, 0, phase.stderr);
    assert.notEqual(phase.stdout, 'Failed');
    const conditions = await k(['get', 'node', B, '-o', 'jsonpath={.status.conditions}']);
    assert.equal(conditions.code, 0, conditions.stderr);
    assert.doesNotMatch(conditions.stdout, /ByA/);
    const mirror = await k(['get', 'pod', 'b-fake-mirror']);
    assert.notEqual(mirror.code, 0);
    assert.match(mirror.stderr, /NotFound|not found/);
    const statuses = await k(['get', 'devicestatuses.devices.kubeedge.io', '-o', 'name']);
    assert.equal(statuses.code, 0, statuses.stderr);
    assert.match(statuses.stdout, /devicestatus\.devices\.kubeedge\.io\/a-dev/);
    assert.doesNotMatch(statuses.stdout, /b-dev/);
    assert.equal((await k(['get', 'pod', 'a-pod', '-o', 'jsonpath={.status.phase}'])).stdout, 'Running');
  });
});
