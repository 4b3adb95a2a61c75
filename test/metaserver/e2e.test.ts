/**
 * MetaServer in a real installation: the local control plane (in this process), a CloudCore
 * process and the bundled EdgeCore (dist/edgecore.js). A client-node informer on the edge's
 * MetaServer sees a configmap created in the cluster once a pod bound to the node uses it; with
 * CloudCore stopped it keeps listing and watching without an error; with CloudCore back, a
 * configmap created meanwhile reaches the informer.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { eventually } from '../helpers/process.js';
import { metaServerKubeConfig } from './helpers.js';

let cluster: Cluster;
before(async () => {
  cluster = await startCluster();
});
after(async () => {
  await cluster.close();
});

const ns = 'default';
const NODE = 'ms-edge';

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A configmap and a pod on NODE that uses it (the cloud sends a node only the configmaps its pods use). */
async function createUsedConfigMap(name: string): Promise<void> {
  await cluster.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name, namespace: ns }, data: { from: 'cluster' } } });
  await cluster.core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: `${name}-app`, namespace: ns },
      spec: { nodeName: NODE, containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'], envFrom: [{ configMapRef: { name } }] }] },
    },
  });
}

describe('MetaServer end to end', () => {
  test('an informer on the edge sees cluster configmaps, keeps watching through a CloudCore outage, and gets what was created meanwhile', async () => {
    const port = await freePort();
    let cloud = await cluster.startCloud('ms-cloud-1', ['--port', String(port)]);
    const edge = cluster.startEdge(NODE, [cloud.url], ['--metaserver-port', '0']);
    await edge.waitFor(/connected to cloud/);
    const dir = join(cluster.dataDir(NODE), 'metaserver');
    const url = await eventually(() => readFileSync(join(dir, 'server.url'), 'utf8').trim(), 20_000, 'MetaServer listening (server.url)');
    const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
    const kc = metaServerKubeConfig(url, token);
    const edgeApi = kc.makeApiClient(k8s.CoreV1Api);
    const informer = k8s.makeInformer(kc, `/api/v1/namespaces/${ns}/configmaps`, () => edgeApi.listNamespacedConfigMap({ namespace: ns }));
    const errors: unknown[] = [];
    const added: string[] = [];
    informer.on('error', (err) => errors.push(err));
    informer.on('add', (o) => added.push(o.metadata?.name ?? ''));
    await informer.start();
    try {
      await createUsedConfigMap('ms-cfg-1');
      await eventually(() => informer.get('ms-cfg-1', ns), 30_000, 'ms-cfg-1 on the informer');
      assert.deepEqual(informer.get('ms-cfg-1', ns)?.data, { from: 'cluster' });
      const pods = await edgeApi.listNamespacedPod({ namespace: ns, fieldSelector: `spec.nodeName=${NODE}` });
      assert.deepEqual(
        pods.items.map((p) => p.metadata?.name),
        ['ms-cfg-1-app'],
      );

      // The cloud goes away; the node serves what it holds.
      assert.equal(await cloud.proc.stop(), 0);
      await edge.waitFor(/disconnected from cloud|cannot connect/, 20_000);
      await createUsedConfigMap('ms-cfg-2');
      const offline = await edgeApi.listNamespacedConfigMap({ namespace: ns });
      assert.ok(
        offline.items.some((c) => c.metadata?.name === 'ms-cfg-1'),
        'lists answer offline',
      );
      assert.equal((await edgeApi.readNamespacedConfigMap({ name: 'ms-cfg-1', namespace: ns })).data?.from, 'cluster');
      assert.equal(informer.get('ms-cfg-2', ns), undefined, 'nothing new reaches the node while the cloud is down');

      // The cloud is back: what was created meanwhile arrives on the same informer.
      cloud = await cluster.startCloud('ms-cloud-2', ['--port', String(port)]);
      await eventually(() => informer.get('ms-cfg-2', ns), 30_000, 'ms-cfg-2 on the informer after the outage');
      assert.deepEqual(errors, [], 'the informer never reported an error');
      assert.deepEqual(
        added.filter((n) => n.startsWith('ms-cfg-')),
        ['ms-cfg-1', 'ms-cfg-2'],
        'each configmap added once (no relist)',
      );
    } finally {
      await informer.stop();
      await cloud.proc.stop();
      await edge.stop();
    }
  });
});
