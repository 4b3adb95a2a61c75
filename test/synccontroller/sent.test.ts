/**
 * SyncController's memory of what it queued to each node is bounded: an entry lives
 * from the send until its ACK, or until the node's session ends. Sends, ACKs and
 * deletes of many objects leave nothing behind. In process: the local control plane
 * (records written over HTTPS) and a stand-in for CloudHub that the test ACKs through.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from '../../shared/protocol/index.js';
import { ackReport } from '../../cloud/cloudhub/index.js';
import { eventually } from '../helpers/process.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { desiredConfigMap, syncControllerOnBus } from '../helpers/synccontroller.js';

const cp = useLocalControlPlane('ledge-sync-');

async function harness() {
  const h = syncControllerOnBus(cp.kc);
  const { sync, queued } = h;
  await h.loaded();
  /** CloudHub's part: the node ACKed these queued messages. */
  const ack = (msgs: Message[]) => {
    for (const m of msgs) {
      const [, node] = /^node\/([^/]+)\/(.*)$/.exec(m.route.resource)!;
      sync.ackReceived(ackReport(node!, m).content);
    }
  };
  const take = async (n: number) => {
    await eventually(() => queued.length >= n, 10_000, `${n} queued messages`);
    return queued.splice(0, queued.length);
  };
  return { ...h, ack, take };
}

const N = 40;

describe('SyncController: what was sent is remembered only until ACKed or the session ends', () => {
  test('N objects sent, ACKed, then deleted and the deletes ACKed: nothing is left', async () => {
    const h = await harness();
    try {
      h.connected.add('n1');
      h.desired.set('n1', new Map(Array.from({ length: N }, (_, i) => desiredConfigMap(i, String(100 + i))).map((o) => [o.uid, o])));
      h.sync.nodeConnected('n1');
      const inserts = await h.take(N);
      assert.equal(inserts.length, N);
      assert.ok(inserts.every((m) => m.route.operation === 'insert'));
      assert.equal(h.sync.trackedSends(), N, 'each unACKed send is remembered');
      h.ack(inserts);
      assert.ok(
        [...h.desired.get('n1')!.values()].every((o) => h.sync.ackedVersion('n1', o.uid) === o.resourceVersion && !h.sync.isPendingFor('n1', o.uid)),
        "ACKed: known as the node's versions at once",
      );
      // Once their records are written, ACKed sends are forgotten.
      await eventually(() => h.sync.trackedSends() === 0, 20_000, 'ACKed sends forgotten');

      // An update goes down and is ACKed.
      const cm0 = desiredConfigMap(0, '500');
      h.desired.get('n1')!.set(cm0.uid, cm0);
      assert.equal(h.sync.reconcileNode('n1').sent, 1);
      h.ack(await h.take(1));
      await eventually(() => h.sync.trackedSends() === 0, 20_000, 'ACKed update forgotten');

      // Every object is deleted: deletes go down; once ACKed, nothing is remembered.
      h.desired.set('n1', new Map());
      assert.equal(h.sync.reconcileNode('n1').deleted, N);
      const deletes = await h.take(N);
      assert.ok(deletes.every((m) => m.route.operation === 'delete'));
      assert.equal(h.sync.trackedSends(), N);
      h.ack(deletes);
      await eventually(() => h.sync.trackedSends() === 0, 20_000, 'ACKed deletes forgotten');
      assert.ok(
        Array.from({ length: N }, (_, i) => desiredConfigMap(i, '0')).every((o) => h.sync.ackedVersion('n1', o.uid) === undefined),
        'records deleted',
      );
      assert.equal(h.sync.reconcileNode('n1').deleted, 0, 'no delete goes twice');
    } finally {
      await h.bee.stop();
    }
  });

  test('an object deleted before its insert was ACKed: the delete is built from what was sent, and its ACK clears it', async () => {
    const h = await harness();
    try {
      h.connected.add('n2');
      const o = desiredConfigMap(1000, '7');
      h.desired.set('n2', new Map([[o.uid, o]]));
      h.sync.nodeConnected('n2');
      const [insert] = await h.take(1);
      h.desired.set('n2', new Map());
      assert.equal(h.sync.reconcileNode('n2').deleted, 1, 'a delete goes down though no record exists yet');
      const [del] = await h.take(1);
      assert.equal(del!.route.resource, 'node/n2/default/configmap/cm-1000');
      assert.deepEqual((del!.content as { metadata: unknown }).metadata, { name: 'cm-1000', uid: o.uid, namespace: 'default' });
      h.ack([insert!, del!]);
      await eventually(() => h.sync.trackedSends() === 0, 20_000, 'forgotten');
    } finally {
      await h.bee.stop();
    }
  });

  test('objects deleted while the ACKs of their inserts are being recorded still get their deletes', async () => {
    const h = await harness();
    try {
      h.connected.add('n3');
      h.desired.set('n3', new Map(Array.from({ length: N }, (_, i) => desiredConfigMap(3000 + i, '9')).map((o) => [o.uid, o])));
      h.sync.nodeConnected('n3');
      h.ack(await h.take(N));
      // At once, before the record writes completed.
      h.desired.set('n3', new Map());
      assert.equal(h.sync.reconcileNode('n3').deleted, N);
      h.ack(await h.take(N));
      await eventually(() => h.sync.trackedSends() === 0, 20_000, 'forgotten');
      assert.equal(h.sync.reconcileNode('n3').deleted, 0);
    } finally {
      await h.bee.stop();
    }
  });

  test('a node that goes away (never ACKs, disconnects) leaves nothing behind; many sessions do not accumulate', async () => {
    const h = await harness();
    try {
      for (let s = 0; s < 20; s++) {
        const node = `gone-${s}`;
        h.connected.add(node);
        h.desired.set(node, new Map(Array.from({ length: 10 }, (_, i) => desiredConfigMap(2000 + s * 10 + i, '3')).map((o) => [o.uid, o])));
        h.sync.nodeConnected(node);
        await h.take(10);
        h.connected.delete(node);
        h.desired.delete(node);
        h.sync.nodeDisconnected(node);
      }
      assert.equal(h.sync.trackedSends(), 0);
    } finally {
      await h.bee.stop();
    }
  });
});
