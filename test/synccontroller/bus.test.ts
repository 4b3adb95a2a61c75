/**
 * SyncController's inputs all arrive over Beehive, in one mailbox: CloudHub's session
 * reports and ACK reports, and the EdgeController's `desired-changed` messages
 * (docs/controllers.md, "Wiring"). In process: the local control plane holds the records
 * (over HTTPS through client-node), a stand-in CloudHub module records what is queued and
 * sends the reports as CloudHub does.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from '../../shared/protocol/index.js';
import { desiredChanged, type DesiredObject, type ObjectKey } from '../../cloud/synccontroller/index.js';
import { ackReport, sessionReport, SessionOperation } from '../../cloud/cloudhub/index.js';
import { eventually } from '../helpers/process.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { syncControllerOnBus } from '../helpers/synccontroller.js';

const cp = useLocalControlPlane('ledge-sync-bus-');

function object(kind: 'ConfigMap' | 'Pod', name: string, uid: string, rv: string): DesiredObject {
  return {
    uid,
    apiVersion: 'v1',
    kind,
    namespace: 'default',
    name,
    resourceVersion: rv,
    body: { apiVersion: 'v1', kind, metadata: { name, namespace: 'default', uid, resourceVersion: rv } },
  };
}
const keyOf = (o: DesiredObject): ObjectKey => ({ kind: o.kind, namespace: o.namespace!, name: o.name, uid: o.uid });

async function harness() {
  const h = syncControllerOnBus(cp.kc);
  /** The stand-in CloudHub's side of the bus. */
  const hub = h.bee.context('cloudhub');
  const connect = (node: string) => {
    h.connected.add(node);
    return hub.send('synccontroller', sessionReport(SessionOperation.Connected, { node }));
  };
  const ack = (node: string, m: Message, error: { code: string; message: string } | null = null) =>
    hub.send('synccontroller', ackReport(node, { ...m, route: { ...m.route, resource: m.route.resource.replace(/^node\/[^/]+\//, '') } }, error));
  return { ...h, hub, connect, ack };
}

describe('SyncController over Beehive', () => {
  test('a node that connects before the records are loaded is reconciled once they are: only what it lacks is sent', async () => {
    const objs = Array.from({ length: 5 }, (_, i) => object('ConfigMap', `early-${i}`, `00000000-0000-4000-8001-00000000000${i}`, '10'));
    // A first replica delivered all five: their records say version 10.
    const first = await harness();
    try {
      first.desired.set('early-node', new Map(objs.map((o) => [o.uid, o])));
      await first.loaded();
      await first.connect('early-node');
      await eventually(() => first.queued.length === 5, 10_000, 'five inserts');
      for (const m of first.queued.splice(0)) await first.ack('early-node', m);
      await eventually(() => objs.every((o) => first.sync.ackedVersion('early-node', o.uid) === '10' && first.sync.trackedSends() === 0), 10_000, 'five records written');
    } finally {
      await first.bee.stop();
    }
    // A new replica: the node connects at once, while its records are still being listed.
    const second = await harness();
    try {
      const changed = object('ConfigMap', 'early-3', objs[3]!.uid, '11');
      second.desired.set('early-node', new Map([...objs.map((o): [string, DesiredObject] => [o.uid, o]), [changed.uid, changed]]));
      await second.connect('early-node');
      await second.loaded();
      await eventually(() => second.log.has(/node early-node connected/), 10_000, 'the session report handled');
      assert.equal(second.sync.stats.sent, 1, 'only the object whose version is newer than its record');
      await eventually(() => second.queued.length === 1, 5_000, 'one message queued');
      assert.equal(second.queued[0]!.route.resource, 'node/early-node/default/configmap/early-3');
      assert.equal(second.queued[0]!.header.resourceVersion, '11');
    } finally {
      await second.bee.stop();
    }
  });

  test("an ACK report of its own message writes the record; a rejection or another module's message writes nothing", async () => {
    const h = await harness();
    try {
      await h.loaded();
      const cm = object('ConfigMap', 'acked', '00000000-0000-4000-8002-000000000001', '20');
      h.desired.set('ack-node', new Map([[cm.uid, cm]]));
      await h.connect('ack-node');
      await eventually(() => h.queued.length === 1, 10_000, 'the insert');
      const [insert] = h.queued.splice(0) as [Message];
      // Rejected by the node: no record, still pending.
      await h.ack('ack-node', insert, { code: 'LEDGE_ERR_STORAGE', message: 'disk full' });
      // Somebody else's message for the same object: not ours to record.
      await h.ack('ack-node', { ...insert, header: { ...insert.header, id: 'other' }, route: { ...insert.route, source: 'producer' } });
      // The barrier: a desired-set change is handled after both reports (one mailbox, in order).
      await h.hub.send('synccontroller', desiredChanged('edgecontroller', { node: 'nobody', terminating: [] }));
      await eventually(() => h.sync.isPendingFor('ack-node', cm.uid), 5_000, 'still pending');
      assert.equal(h.sync.ackedVersion('ack-node', cm.uid), undefined);
      assert.equal(h.sync.stats.recordWrites, 0);
      await h.ack('ack-node', insert);
      await eventually(() => h.sync.ackedVersion('ack-node', cm.uid) === '20' && h.sync.stats.recordWrites === 1, 10_000, 'the record');
      assert.equal(h.sync.isPendingFor('ack-node', cm.uid), false);
    } finally {
      await h.bee.stop();
    }
  });

  test('desired-changed: a terminating pod the node never got is released at once; one it holds or may hold, when its delete is ACKed', async () => {
    const h = await harness();
    try {
      await h.loaded();
      const held = object('Pod', 'held', '00000000-0000-4000-8003-000000000001', '30');
      const inflight = object('Pod', 'inflight', '00000000-0000-4000-8003-000000000002', '31');
      const never = object('Pod', 'never', '00000000-0000-4000-8003-000000000003', '32');
      h.desired.set('t-node', new Map([[held.uid, held]]));
      await h.connect('t-node');
      await eventually(() => h.queued.length === 1, 10_000, 'the held pod');
      await h.ack('t-node', h.queued.splice(0)[0]!);
      await eventually(() => h.sync.ackedVersion('t-node', held.uid) === '30', 10_000, 'its record');
      // A second pod is sent, not ACKed yet: the node may hold it.
      h.desired.set(
        't-node',
        new Map([
          [held.uid, held],
          [inflight.uid, inflight],
        ]),
      );
      await h.hub.send('synccontroller', desiredChanged('edgecontroller', { node: 't-node', terminating: [] }));
      await eventually(() => h.queued.length === 1, 10_000, 'the in-flight pod');
      h.queued.splice(0);
      // All three are being deleted: none is desired any more.
      h.desired.set('t-node', new Map());
      await h.hub.send('synccontroller', desiredChanged('edgecontroller', { node: 't-node', terminating: [keyOf(held), keyOf(inflight), keyOf(never)] }));
      await eventually(() => h.queued.length === 2, 10_000, 'the deletes of the held and the in-flight pod');
      const deletes = h.queued.splice(0);
      assert.deepEqual(deletes.map((m) => `${m.route.operation} ${m.route.resource}`).sort(), ['delete node/t-node/default/pod/held', 'delete node/t-node/default/pod/inflight']);
      assert.deepEqual(h.released, [{ node: 't-node', uid: never.uid }], 'only the pod the node never got is released at once');
      for (const d of deletes) await h.ack('t-node', d);
      await eventually(() => h.released.length === 3, 10_000, 'released after their delete ACKs');
      assert.deepEqual(
        h.released
          .slice(1)
          .map((r) => r.uid)
          .sort(),
        [held.uid, inflight.uid].sort(),
      );
    } finally {
      await h.bee.stop();
    }
  });

  test('a disconnect report ends the session: what was queued for it is forgotten', async () => {
    const h = await harness();
    try {
      await h.loaded();
      const cm = object('ConfigMap', 'gone', '00000000-0000-4000-8004-000000000001', '40');
      h.desired.set('d-node', new Map([[cm.uid, cm]]));
      await h.connect('d-node');
      await eventually(() => h.sync.trackedSends() === 1, 10_000, 'one send tracked');
      h.connected.delete('d-node');
      await h.hub.send('synccontroller', sessionReport(SessionOperation.Disconnected, { node: 'd-node', reason: 'closed' }));
      await eventually(() => h.sync.trackedSends() === 0, 5_000, 'nothing tracked after the disconnect');
    } finally {
      await h.bee.stop();
    }
  });
});
