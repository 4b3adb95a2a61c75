/**
 * SyncController's garbage collection of ObjectSync records, with fakes: a fake
 * ObjectSync API (no HTTP), a fake desired source standing for the Node informer cache,
 * and GC passes run one at a time. The records of a node are deleted only when its
 * Node object is absent on two passes in a row and it is not connected here: a node
 * that is connected but whose Node object is briefly absent (re-registering, informer
 * lag) keeps them, and so does a node missing only once or while the cache is unknown.
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadKube, type k8s } from '../../cloud/kube/index.js';
import { SyncController, objectSyncName, type DesiredSource, type ObjectSync } from '../../cloud/synccontroller/index.js';
import { ackReport } from '../../cloud/cloudhub/index.js';
import { newMessage, ModuleName, Group, Operation } from '../../shared/protocol/index.js';
import { silentLogger } from '../../shared/log/index.js';
import { eventually } from '../helpers/process.js';
import { turns } from '../helpers/fsync.js';

before(async () => {
  await loadKube();
});

/** The part of client-node's CustomObjectsApi SyncController uses, over a Map. */
class FakeSyncApi {
  readonly objects = new Map<string, ObjectSync>();
  readonly deleted: string[] = [];
  private rv = 0;
  private key(a: { namespace?: string; name: string }): string {
    return `${a.namespace ?? ''}/${a.name}`;
  }
  private stored(o: ObjectSync, status?: ObjectSync['status']): ObjectSync {
    const copy = structuredClone({ ...o, ...(status ? { status } : {}) });
    copy.metadata.resourceVersion = String(++this.rv);
    this.objects.set(this.key({ namespace: copy.metadata.namespace, name: copy.metadata.name }), copy);
    return structuredClone(copy);
  }
  private notFound(): Error {
    return Object.assign(new Error('not found'), { code: 404 });
  }
  async getNamespacedCustomObject(a: { namespace: string; name: string }) {
    const o = this.objects.get(this.key(a));
    if (!o) throw this.notFound();
    return structuredClone(o);
  }
  async createNamespacedCustomObject(a: { namespace: string; body: ObjectSync }) {
    if (this.objects.has(this.key({ namespace: a.namespace, name: a.body.metadata.name }))) throw Object.assign(new Error('exists'), { code: 409 });
    return this.stored({ ...a.body, metadata: { ...a.body.metadata, namespace: a.namespace } });
  }
  async replaceNamespacedCustomObjectStatus(a: { namespace: string; name: string; body: ObjectSync }) {
    if (!this.objects.has(this.key(a))) throw this.notFound();
    return this.stored(a.body, a.body.status);
  }
  async deleteNamespacedCustomObject(a: { namespace: string; name: string }) {
    this.deleted.push(a.name);
    if (!this.objects.delete(this.key(a))) throw this.notFound();
    return {};
  }
  getClusterCustomObject(a: { name: string }) {
    return this.getNamespacedCustomObject({ namespace: '', ...a });
  }
  createClusterCustomObject(a: { body: ObjectSync }) {
    return this.createNamespacedCustomObject({ namespace: '', ...a });
  }
  replaceClusterCustomObjectStatus(a: { name: string; body: ObjectSync }) {
    return this.replaceNamespacedCustomObjectStatus({ namespace: '', ...a });
  }
  deleteClusterCustomObject(a: { name: string }) {
    return this.deleteNamespacedCustomObject({ namespace: '', ...a });
  }
}

const uidOf = (node: string, i: number) => `${node}-uid-${i}`;

function harness() {
  const api = new FakeSyncApi();
  // Only makeApiClient is used without start(): every API client is the fake.
  const kc = { makeApiClient: () => api } as unknown as k8s.KubeConfig;
  /** The Node informer cache: true = Node object present, false = absent, undefined = cache not synced. */
  const nodes = new Map<string, boolean | undefined>();
  const connected = new Set<string>();
  const source: DesiredSource = { desiredFor: () => new Map(), nodeExists: (n) => (nodes.has(n) ? nodes.get(n) : false) };
  const sync = new SyncController(
    kc,
    { desired: source, reconcileIntervalMs: 3_600_000, isLeader: () => true, isConnected: (n) => connected.has(n), connectedNodes: () => [...connected] },
    silentLogger,
  );

  /** The node ACKed `count` configmaps: their records are written (through the fake API) and cached. */
  const ackObjects = async (node: string, count: number) => {
    const before = sync.stats.recordWrites;
    for (let i = 0; i < count; i++) {
      const uid = uidOf(node, i);
      const m = newMessage({
        source: ModuleName.SyncController,
        group: Group.Resource,
        operation: Operation.Update,
        resource: `node/${node}/default/configmap/cm-${i}`,
        resourceVersion: '7',
        sync: true,
        content: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `cm-${i}`, namespace: 'default', uid } },
      });
      sync.ackReceived(ackReport(node, m).content);
    }
    await eventually(() => sync.stats.recordWrites === before + count, 5000, `${count} records of ${node} written`);
  };
  /** Records of `node` the controller knows of, and that exist in the (fake) API. */
  const recordsOf = (node: string, count: number) => {
    const known = Array.from({ length: count }, (_, i) => sync.ackedVersion(node, uidOf(node, i))).filter((v) => v !== undefined).length;
    const stored = Array.from({ length: count }, (_, i) => api.objects.has(`default/${objectSyncName(node, uidOf(node, i))}`)).filter(Boolean).length;
    return { known, stored };
  };
  /** One GC pass, and whatever it queued given every chance to start. */
  const gcPass = async () => {
    await sync.gc();
    await turns();
  };
  return { api, sync, nodes, connected, ackObjects, recordsOf, gcPass };
}

describe('SyncController GC', () => {
  test('a connected node whose Node object is missing from the cache keeps its records, pass after pass', async () => {
    const h = harness();
    h.connected.add('edge-1');
    await h.ackObjects('edge-1', 3);
    h.nodes.set('edge-1', false); // the Node object is gone from the informer cache (e.g. being re-registered)
    for (let pass = 0; pass < 5; pass++) await h.gcPass();
    assert.equal(h.sync.stats.gc, 0, 'no record of a connected node is queued for deletion');
    assert.deepEqual(h.api.deleted, []);
    assert.deepEqual(h.recordsOf('edge-1', 3), { known: 3, stored: 3 });
  });

  test('a node absent and disconnected on two passes in a row loses its records; one pass is the grace', async () => {
    const h = harness();
    h.connected.add('edge-2');
    await h.ackObjects('edge-2', 3);
    // A bystander whose Node exists: never touched.
    h.connected.add('edge-ok');
    await h.ackObjects('edge-ok', 2);
    h.connected.delete('edge-ok');
    h.nodes.set('edge-ok', true);

    h.nodes.set('edge-2', false);
    await h.gcPass(); // connected: spared, and not counted as missing
    h.connected.delete('edge-2');
    await h.gcPass(); // first pass absent and disconnected: the grace
    assert.equal(h.sync.stats.gc, 0, 'deleted on the first pass it was missing');
    assert.deepEqual(h.api.deleted, []);
    await h.gcPass(); // second pass in a row: deleted
    assert.equal(h.sync.stats.gc, 3);
    await eventually(() => h.recordsOf('edge-2', 3).stored === 0 && h.recordsOf('edge-2', 3).known === 0, 5000, 'the records of edge-2 deleted');
    assert.deepEqual(h.api.deleted.sort(), [0, 1, 2].map((i) => objectSyncName('edge-2', uidOf('edge-2', i))).sort());
    assert.deepEqual(h.recordsOf('edge-ok', 2), { known: 2, stored: 2 }, 'an existing node keeps its records');
  });

  test('missing once, then back (a node re-registering): the grace starts over', async () => {
    const h = harness();
    h.connected.add('edge-3');
    await h.ackObjects('edge-3', 2);
    h.connected.delete('edge-3');
    h.nodes.set('edge-3', false);
    await h.gcPass(); // missing once
    h.nodes.set('edge-3', true);
    await h.gcPass(); // back
    h.nodes.set('edge-3', false);
    await h.gcPass(); // missing once again: not twice in a row
    assert.equal(h.sync.stats.gc, 0);
    assert.deepEqual(h.recordsOf('edge-3', 2), { known: 2, stored: 2 });
    await h.gcPass();
    assert.equal(h.sync.stats.gc, 2, 'twice in a row now');
  });

  test('while the Node cache is not synced (existence unknown), nothing is collected', async () => {
    const h = harness();
    h.connected.add('edge-4');
    await h.ackObjects('edge-4', 2);
    h.connected.delete('edge-4');
    h.nodes.set('edge-4', undefined);
    for (let pass = 0; pass < 5; pass++) await h.gcPass();
    assert.equal(h.sync.stats.gc, 0);
    assert.deepEqual(h.recordsOf('edge-4', 2), { known: 2, stored: 2 });
  });
});
