/**
 * High availability (issue #5): two CloudCore replicas against one API server. The
 * node is connected to one; kill -9 of that replica during a stream of updates; the
 * node reconnects to the other, which sends only what the sync records say the node
 * lacks. The node converges, no object is lost, no stale version is left, and the
 * number of re-sent and duplicate deliveries is reported.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { startCluster, storeEquals, type Cluster } from '../helpers/cluster.js';
import { eventually } from '../helpers/process.js';

let cluster: Cluster;
before(async () => {
  cluster = await startCluster();
});
after(async () => {
  await cluster.close();
});

const ns = 'default';
const PODS = 10;

describe('controllers: HA across replicas', () => {
  test('kill -9 of the replica holding the session: the node converges through the other replica', async (t) => {
    const leaderFlags = ['--leader-lease-duration-ms', '3000', '--leader-renew-interval-ms', '300'];
    const a = await cluster.startCloud('replica-1', leaderFlags);
    const b = await cluster.startCloud('replica-2', leaderFlags);
    const edge = cluster.startEdge('edge-ha', [a.url, b.url], ['--log-level', 'debug']);
    await edge.waitFor(/connected to cloud.*replica|connected to cloud/);
    await a.proc.waitFor(/node edge-ha connected/);

    for (let i = 0; i < PODS; i++) {
      await cluster.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: `ha-cfg-${i}`, namespace: ns }, data: { v: '0' } } });
      await cluster.core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { name: `ha-app-${i}`, namespace: ns },
          spec: { nodeName: 'edge-ha', containers: [{ name: 'c', image: 'busybox', envFrom: [{ configMapRef: { name: `ha-cfg-${i}` } }] }] },
        },
      });
    }
    const expected = async () => {
      const out: Record<string, string> = {};
      const pods = await cluster.core.listNamespacedPod({ namespace: ns, fieldSelector: 'spec.nodeName=edge-ha' });
      for (const p of pods.items) out[`default/pod/${p.metadata!.name}`] = p.metadata!.resourceVersion!;
      const cms = await cluster.core.listNamespacedConfigMap({ namespace: ns });
      for (const c of cms.items) if (c.metadata!.name!.startsWith('ha-cfg-')) out[`default/configmap/${c.metadata!.name}`] = c.metadata!.resourceVersion!;
      return out;
    };
    await storeEquals(cluster.dataDir('edge-ha'), expected);

    // Leader election: exactly one replica holds the lease.
    const coord = cluster.kc.makeApiClient(k8s.CoordinationV1Api);
    const holder = async () => (await coord.readNamespacedLease({ name: 'ledge-cloudcore', namespace: 'kube-system' })).spec?.holderIdentity;
    const firstLeader = await eventually(holder, 10_000, 'a leader');
    assert.ok(['replica-1', 'replica-2'].includes(firstLeader));

    // A stream of updates; replica-1 (holding the session) dies in the middle of it.
    let updates = 0;
    let streaming = true;
    const stream = (async () => {
      while (streaming) {
        const name = `ha-cfg-${updates % PODS}`;
        const cur = await cluster.core.readNamespacedConfigMap({ name, namespace: ns });
        cur.data = { v: String(++updates) };
        await cluster.core.replaceNamespacedConfigMap({ name, namespace: ns, body: cur });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    // The kill lands mid-stream, and the stream goes on through the failover: progress, not time.
    await eventually(() => updates >= 30, 30_000, 'updates streaming before the kill');
    await a.proc.kill9();
    const killedAt = updates;
    await b.proc.waitFor(/node edge-ha connected/, 20_000);
    await eventually(() => updates >= killedAt + 30, 30_000, 'updates streaming during the failover');
    streaming = false;
    await stream;

    const [, sent, deleted, upToDate] = (await b.proc.waitFor(/node edge-ha connected: (\d+) objects to send, (\d+) to delete, (\d+) already up to date/, 20_000)).map(Number) as [
      number,
      number,
      number,
      number,
    ];
    await storeEquals(cluster.dataDir('edge-ha'), expected, 30_000);
    const duplicates = (edge.output().match(/already had default\//g) ?? []).length;
    t.diagnostic(
      `updates: ${updates} (${killedAt} before the kill); on takeover replica-2 sent ${sent} of ${sent + upToDate} objects (${upToDate} up to date, ${deleted} deletes); duplicate deliveries seen by the edge: ${duplicates}`,
    );
    assert.equal(deleted, 0);
    // Only objects that changed during the failover (at most the configmaps) need to go again.
    assert.ok(sent <= PODS, `takeover re-sends at most the ${PODS} changing objects, sent ${sent}`);
    assert.ok(upToDate >= PODS, `the pods were recognised as up to date from the records (${upToDate})`);

    // The surviving replica becomes (or stays) leader.
    await eventually(async () => (await holder()) === 'replica-2', 15_000, 'replica-2 leads');
    await edge.stop();
    await b.proc.stop();
  });
});
