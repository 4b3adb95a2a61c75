/**
 * The SyncController reconciles a node only once its desired sets are known: a set read before
 * the controllers' informers listed lacks what is merely not listed yet, and reconciling it would
 * delete from the node what it should keep (a CloudCore restart with nodes reconnecting at once).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ackReport } from '../../cloud/cloudhub/index.js';
import { eventually } from '../helpers/process.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { desiredConfigMap, syncControllerOnBus } from '../helpers/synccontroller.js';

const cp = useLocalControlPlane('ledge-sync-synced-');

const configMap = (i: number) => desiredConfigMap(i, String(10 + i));

describe('SyncController: nothing is sent or deleted while the desired sets are not listed', () => {
  test('a node holding objects reconnects while the sets are unknown: no delete; once known, the real set applies', async () => {
    const h = syncControllerOnBus(cp.kc);
    try {
      await h.loaded();
      h.connected.add('n1');
      const objs = [configMap(1), configMap(2)];
      h.desired.set('n1', new Map(objs.map((o) => [o.uid, o])));
      h.sync.nodeConnected('n1');
      await eventually(() => h.queued.length === 2, 10_000, 'two inserts queued');
      for (const m of h.queued.splice(0)) h.sync.ackReceived(ackReport('n1', m).content);
      assert.ok(objs.every((o) => h.sync.ackedVersion('n1', o.uid) === o.resourceVersion));
      // Deletes are decided from the records: wait until both are written.
      await eventually(() => h.sync.trackedSends() === 0, 20_000, 'records written');

      // CloudCore's informers are listing again: the set reads empty (half-listed), and the node reconnects.
      h.listed.synced = false;
      h.desired.set('n1', new Map());
      h.sync.nodeDisconnected('n1');
      h.sync.nodeConnected('n1');
      assert.deepEqual(h.sync.reconcileNode('n1'), { sent: 0, upToDate: 0, deleted: 0 }, 'an unknown set neither sends nor deletes');
      assert.equal(h.queued.length, 0);

      // Listed: one object is really gone; only it is deleted, the other is up to date.
      h.listed.synced = true;
      h.desired.set('n1', new Map([[objs[0]!.uid, objs[0]!]]));
      assert.deepEqual(h.sync.reconcileNode('n1'), { sent: 0, upToDate: 1, deleted: 1 });
    } finally {
      await h.bee.stop();
    }
  });
});
