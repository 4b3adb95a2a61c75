/**
 * DeviceController against the local control plane (in this process, over HTTPS through
 * client-node), on a real Beehive with stand-ins for CloudHub (it sends the upstream batches)
 * and the SyncController (it records `desired-changed`), or the real SyncController: CRDs
 * installed at start; desired sets (model before device, moves, model changes, deletion);
 * report batches → DeviceStatus with the twins merged and an ownerReference; authorization and
 * malformed batches left out with one log line per problem; DeviceStatus deleted with its
 * Device; orphans collected; and the time before the informers listed.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Beehive, type ModuleContext } from '../../shared/beehive/index.js';
import { newMessage, type Message } from '../../shared/protocol/index.js';
import { DEVICE_GROUP, DEVICE_VERSION, type DeviceReportBatch, type DeviceStatusObject } from '../../shared/devices/index.js';
import { DeviceController, deviceCrds, type DeviceControllerOptions } from '../../cloud/devicecontroller/index.js';
import { SyncController, combineDesiredSources, type DesiredChange, type DesiredSource } from '../../cloud/synccontroller/index.js';
import { kube, withKeepAlive, type k8s } from '../../cloud/kube/index.js';
import { captureLog } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';

const cp = useLocalControlPlane('ledge-devicecontroller-', { nodeLeaseTimeoutMs: 600_000 });

const NS = 'default';
const objects = () => cp.kc.makeApiClient(kube().CustomObjectsApi);
const target = (plural: string) => ({ group: DEVICE_GROUP, version: DEVICE_VERSION, namespace: NS, plural });

type Obj = { metadata: { name: string; uid: string; resourceVersion: string; finalizers?: string[]; labels?: Record<string, string> }; spec: Record<string, unknown> } & Record<
  string,
  unknown
>;

async function createModel(name: string): Promise<Obj> {
  return (await objects().createNamespacedCustomObject({
    ...target('devicemodels'),
    body: {
      apiVersion: `${DEVICE_GROUP}/${DEVICE_VERSION}`,
      kind: 'DeviceModel',
      metadata: { name, namespace: NS },
      spec: {
        protocol: 'virtualProtocol',
        properties: [
          { name: 'temperature', type: 'INT', accessMode: 'ReadWrite', minimum: '0', maximum: '100' },
          { name: 'humidity', type: 'INT', accessMode: 'ReadOnly' },
        ],
      },
    },
  })) as Obj;
}

async function createDevice(name: string, node: string, model: string, extra: Record<string, unknown> = {}): Promise<Obj> {
  const visitors = { protocolName: 'virtualProtocol', configData: { dataType: 'int' } };
  return (await objects().createNamespacedCustomObject({
    ...target('devices'),
    body: {
      apiVersion: `${DEVICE_GROUP}/${DEVICE_VERSION}`,
      kind: 'Device',
      metadata: { name, namespace: NS, ...extra },
      spec: {
        deviceModelRef: { name: model },
        nodeName: node,
        protocol: { protocolName: 'virtualProtocol' },
        properties: [
          { name: 'temperature', desired: { value: '20' }, visitors, reportCycle: 1000, collectCycle: 1000, reportToCloud: true },
          { name: 'humidity', visitors, reportCycle: 1000, collectCycle: 1000, reportToCloud: true },
        ],
      },
    },
  })) as Obj;
}

async function update(plural: string, name: string, change: (o: Obj) => void): Promise<Obj> {
  const o = (await objects().getNamespacedCustomObject({ ...target(plural), name })) as Obj;
  change(o);
  return (await objects().replaceNamespacedCustomObject({ ...target(plural), name, body: o })) as Obj;
}

async function readStatus(name: string): Promise<DeviceStatusObject | undefined> {
  try {
    return (await objects().getNamespacedCustomObject({ ...target('devicestatuses'), name })) as DeviceStatusObject;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

const twin = (s: DeviceStatusObject | undefined, prop: string) => s?.status?.twins?.find((t) => t.propertyName === prop);

/** A DeviceController on a Beehive; `sync` 'stand-in' records desired-changed, a SyncController instance is registered as is. */
function harness(kc: k8s.KubeConfig, options: Partial<DeviceControllerOptions> = {}, sync?: (dc: DeviceController) => SyncController) {
  const log = captureLog();
  const dc = new DeviceController(kc, log.logger, options);
  const changes: string[] = [];
  const queued: Message[] = [];
  const bee = new Beehive({ log: log.logger });
  bee.register(dc);
  if (sync) bee.register(sync(dc));
  else
    bee.register({
      name: 'synccontroller',
      group: 'sync',
      async start(ctx: ModuleContext, signal: AbortSignal) {
        for await (const m of ctx.messages(signal)) changes.push((m.content as DesiredChange).node);
      },
    });
  bee.register({
    name: 'cloudhub',
    group: 'hub',
    async start(ctx: ModuleContext, signal: AbortSignal) {
      for await (const m of ctx.messages(signal)) queued.push(m);
    },
  });
  bee.start();
  const hub = bee.context('cloudhub');
  const send = async (node: string, content: unknown, operation = 'update', resource = 'devicestatus') =>
    (await hub.sendSync('devicecontroller', newMessage({ source: 'twin', group: 'twin', operation, resource: `node/${node}/${resource}`, sync: true, content }), 15_000)).content;
  const ready = () => eventually(() => log.has(/device controller watching/), 20_000, 'device informers listed');
  return { dc, bee, log, changes, queued, send, ready };
}

const report = (name: string, twins: { propertyName: string; value: string }[], extra: Record<string, unknown> = {}): DeviceReportBatch => ({
  reports: [{ namespace: NS, name, twins: twins.map((t) => ({ propertyName: t.propertyName, reported: { value: t.value, metadata: { timestamp: '1' } } })), ...extra }],
});

describe('DeviceController', () => {
  test('installs the device CRDs; the desired set of a node is its Devices, each after its DeviceModel; moves, model changes and deletion re-announce the nodes', async () => {
    const h = harness(cp.kc);
    try {
      await h.ready();
      const ext = cp.kc.makeApiClient(kube().ApiextensionsV1Api);
      for (const plural of ['devices', 'devicemodels', 'devicestatuses']) await ext.readCustomResourceDefinition({ name: `${plural}.${DEVICE_GROUP}` });
      // Installed whole: the stored schema (read raw) is ours, x-kubernetes markers, enums and defaults included.
      for (const crd of deviceCrds) {
        const stored = (await objects().getClusterCustomObject({ group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', name: crd.metadata.name })) as {
          spec: { versions: { schema: { openAPIV3Schema: unknown } }[] };
        };
        assert.deepEqual(stored.spec.versions[0]!.schema.openAPIV3Schema, crd.spec.versions[0]!.schema.openAPIV3Schema, crd.metadata.name);
      }

      const model = await createModel('ds-model');
      const dev = await createDevice('ds-dev', 'ds-n1', 'ds-model');
      const lone = await createDevice('ds-lone', 'ds-n1', 'ds-missing-model');
      const set = await eventually(
        () => {
          const s = h.dc.desiredFor('ds-n1');
          return s.size === 3 ? s : undefined;
        },
        20_000,
        'the devices of ds-n1',
      );
      assert.deepEqual(
        [...set.values()].map((o) => [o.kind, o.name]),
        [
          ['DeviceModel', 'ds-model'],
          ['Device', 'ds-dev'],
          ['Device', 'ds-lone'],
        ],
        'the model before the device that needs it; a device whose model is missing still goes',
      );
      const d = set.get(dev.metadata.uid)!;
      assert.equal(d.apiVersion, `${DEVICE_GROUP}/${DEVICE_VERSION}`);
      assert.equal(d.namespace, NS);
      assert.equal(d.body.apiVersion, `${DEVICE_GROUP}/${DEVICE_VERSION}`);
      assert.equal(d.body.kind, 'Device');
      assert.equal((d.body.spec as { nodeName: string }).nodeName, 'ds-n1');
      assert.equal(set.get(model.metadata.uid)!.resourceVersion, model.metadata.resourceVersion);
      assert.ok(h.changes.includes('ds-n1'));
      assert.equal(h.dc.nodeExists('ds-n1'), undefined, 'the Node objects are the EdgeController’s');

      // Moving a device changes both nodes.
      let mark = h.changes.length;
      await update('devices', 'ds-dev', (o) => void ((o.spec as { nodeName: string }).nodeName = 'ds-n2'));
      await eventually(() => h.changes.slice(mark).includes('ds-n1') && h.changes.slice(mark).includes('ds-n2'), 20_000, 'both nodes announced');
      assert.deepEqual(
        [...h.dc.desiredFor('ds-n1').values()].map((o) => o.name),
        ['ds-lone'],
      );
      assert.deepEqual(
        [...h.dc.desiredFor('ds-n2').values()].map((o) => o.name),
        ['ds-model', 'ds-dev'],
      );

      // A model change re-announces the nodes with a device of that model (and only those).
      mark = h.changes.length;
      const changedModel = await update('devicemodels', 'ds-model', (o) => void (o.metadata.labels = { changed: 'yes' }));
      await eventually(() => h.changes.slice(mark).includes('ds-n2'), 20_000, 'the model’s node announced');
      assert.ok(!h.changes.slice(mark).includes('ds-n1'));
      assert.equal(h.dc.desiredFor('ds-n2').get(model.metadata.uid)!.resourceVersion, changedModel.metadata.resourceVersion);

      // The missing model appears: the node of the device that references it is told.
      mark = h.changes.length;
      await createModel('ds-missing-model');
      await eventually(() => h.changes.slice(mark).includes('ds-n1'), 20_000, 'ds-n1 announced for its new model');
      assert.equal(h.dc.desiredFor('ds-n1').size, 2);

      // A device being deleted (held by a finalizer) leaves the set, and so does its model.
      await update('devices', 'ds-dev', (o) => void (o.metadata.finalizers = ['test.ledge.io/hold']));
      mark = h.changes.length;
      await objects().deleteNamespacedCustomObject({ ...target('devices'), name: 'ds-dev' });
      await eventually(() => h.changes.slice(mark).includes('ds-n2'), 20_000, 'ds-n2 announced for the deletion');
      await eventually(() => h.dc.desiredFor('ds-n2').size === 0, 20_000, 'the device being deleted left the set');
      await update('devices', 'ds-dev', (o) => void (o.metadata.finalizers = []));
      void lone;
    } finally {
      await h.bee.stop();
    }
  });

  test('with the real SyncController and combineDesiredSources, a connected node is sent the model, then the device, as devices.kubeedge.io objects', async () => {
    const pods: DesiredSource = { desiredFor: () => new Map(), nodeExists: () => true };
    const h = harness(
      cp.kc,
      {},
      (dc) =>
        new SyncController(
          cp.kc,
          { desired: combineDesiredSources(pods, dc), reconcileIntervalMs: 600_000, isLeader: () => false, isConnected: (n) => n === 'sy-n1', connectedNodes: () => ['sy-n1'] },
          captureLog().logger,
        ),
    );
    try {
      await h.ready();
      await createModel('sy-model');
      await createDevice('sy-dev', 'sy-n1', 'sy-model');
      const sent = await eventually(
        () => {
          const rs = h.queued.map((m) => `${m.route.operation} ${m.route.resource}`);
          return rs.includes('insert node/sy-n1/default/device/sy-dev') ? rs : undefined;
        },
        20_000,
        'the device sent to sy-n1',
      );
      assert.ok(sent.indexOf('insert node/sy-n1/default/devicemodel/sy-model') >= 0, sent.join(', '));
      assert.ok(sent.indexOf('insert node/sy-n1/default/devicemodel/sy-model') < sent.indexOf('insert node/sy-n1/default/device/sy-dev'), 'the model first');
      const msg = h.queued.find((m) => m.route.resource === 'node/sy-n1/default/device/sy-dev')!;
      assert.equal((msg.content as { apiVersion: string }).apiVersion, 'devices.kubeedge.io/v1beta1');
      assert.equal(msg.header.sync, true, 'ACKed like pods');
      // Deleted: a delete goes down.
      await objects().deleteNamespacedCustomObject({ ...target('devices'), name: 'sy-dev' });
      await eventually(() => h.queued.some((m) => m.route.operation === 'delete' && m.route.resource === 'node/sy-n1/default/device/sy-dev'), 20_000, 'the delete sent');
    } finally {
      await h.bee.stop();
    }
  });

  test('a report batch becomes the DeviceStatus: twins merged by property (latest wins), state, lastOnlineTime, owner reference to the Device', async () => {
    const h = harness(cp.kc);
    try {
      await h.ready();
      await createModel('st-model');
      const dev = await createDevice('st-dev', 'st-n1', 'st-model');
      await eventually(() => h.dc.desiredFor('st-n1').size === 2, 20_000, 'device listed');
      assert.equal(
        await h.send('st-n1', report('st-dev', [{ propertyName: 'temperature', value: '21' }], { uid: dev.metadata.uid, state: 'online', lastOnlineTime: '2030-01-01T00:00:00Z' })),
        null,
        'answered null: ACKed',
      );
      let st = await eventually(async () => twin(await readStatus('st-dev'), 'temperature') && readStatus('st-dev'), 20_000, 'DeviceStatus written');
      assert.equal(twin(st, 'temperature')?.reported?.value, '21');
      assert.deepEqual(twin(st, 'temperature')?.reported?.metadata, { timestamp: '1' });
      assert.equal(st.status?.state, 'online');
      assert.equal(st.status?.lastOnlineTime, '2030-01-01T00:00:00Z');
      const owner = st.metadata.ownerReferences?.[0];
      assert.deepEqual(
        { apiVersion: owner?.apiVersion, kind: owner?.kind, name: owner?.name, uid: owner?.uid, controller: owner?.controller },
        { apiVersion: 'devices.kubeedge.io/v1beta1', kind: 'Device', name: 'st-dev', uid: dev.metadata.uid, controller: true },
      );

      assert.equal(await h.send('st-n1', report('st-dev', [{ propertyName: 'humidity', value: '55' }])), null);
      st = await eventually(async () => {
        const s = await readStatus('st-dev');
        return twin(s, 'humidity') ? s : undefined;
      });
      assert.equal(twin(st, 'temperature')?.reported?.value, '21', 'another property’s report keeps this one');
      assert.equal(st.status?.state, 'online', 'a report without state keeps it');

      assert.equal(await h.send('st-n1', report('st-dev', [{ propertyName: 'temperature', value: '22' }], { state: 'offline' })), null);
      st = await eventually(async () => {
        const s = await readStatus('st-dev');
        return twin(s, 'temperature')?.reported?.value === '22' ? s : undefined;
      });
      assert.equal(twin(st, 'humidity')?.reported?.value, '55');
      assert.equal(st.status?.state, 'offline');
      assert.equal(st.status?.twins?.length, 2, 'one twin per property');
      assert.ok(h.dc.stats().writes >= 2);
    } finally {
      await h.bee.stop();
    }
  });

  test('reports for another node’s device, an unknown device, another incarnation or an unknown property are left out, each logged once per node', async () => {
    const h = harness(cp.kc);
    try {
      await h.ready();
      await createModel('az-model');
      const dev = await createDevice('az-dev', 'az-n1', 'az-model');
      await eventually(() => h.dc.desiredFor('az-n1').size === 2, 20_000, 'device listed');
      const value = [{ propertyName: 'temperature', value: '30' }];
      for (let i = 0; i < 3; i++) {
        assert.equal(await h.send('az-intruder', report('az-dev', value)), null);
        assert.equal(await h.send('az-n1', report('az-nosuch', value)), null);
        assert.equal(await h.send('az-n1', report('az-dev', value, { uid: 'another-uid' })), null);
      }
      assert.equal(h.dc.stats().pending + h.dc.stats().inFlight, 0, 'nothing accepted');
      await h.dc.idle();
      assert.equal(await readStatus('az-dev'), undefined, 'no DeviceStatus from refused reports');
      const lines = (re: RegExp) => h.log.lines.filter((l) => re.test(String(l.msg)));
      const forbidden = lines(/node az-intruder: device reports left out \(forbidden.*default\/az-dev/);
      assert.equal(forbidden.length, 1, 'logged once, not per report');
      assert.equal(forbidden[0]!.code, 'LEDGE_ERR_FORBIDDEN');
      assert.equal(lines(/node az-n1: device reports left out \(no such Device\): default\/az-nosuch/).length, 1);
      assert.equal(lines(/node az-n1: .*uid differs.*default\/az-dev/).length, 1);
      assert.equal(lines(/uid differs/)[0]!.code, 'LEDGE_ERR_DEVICE_UNKNOWN');

      // The right node, the right uid: written; a property the Device lacks is left out (KubeEdge's rule).
      const ok = report('az-dev', [...value, { propertyName: 'pressure', value: '1' }], { uid: dev.metadata.uid });
      assert.equal(await h.send('az-n1', ok), null);
      const st = await eventually(async () => {
        const s = await readStatus('az-dev');
        return twin(s, 'temperature') ? s : undefined;
      });
      assert.equal(twin(st, 'pressure'), undefined);
      const prop = lines(/property not in the Device.*default\/az-dev: pressure/);
      assert.equal(prop.length, 1);
      assert.equal(prop[0]!.code, 'LEDGE_ERR_DEVICE_INVALID');
    } finally {
      await h.bee.stop();
    }
  });

  test('malformed batches: a non-batch is rejected; malformed entries are left out with a log line while the rest is written; other operations are unsupported', async () => {
    const h = harness(cp.kc);
    try {
      await h.ready();
      await createModel('mf-model');
      await createDevice('mf-dev', 'mf-n1', 'mf-model');
      await eventually(() => h.dc.desiredFor('mf-n1').size === 2, 20_000, 'device listed');
      const bad = (await h.send('mf-n1', 'garbage')) as { code: string };
      assert.equal(bad.code, 'LEDGE_ERR_INVALID_MESSAGE');
      assert.equal(((await h.send('mf-n1', { reports: 'nope' })) as { code: string }).code, 'LEDGE_ERR_INVALID_MESSAGE');
      const batch = {
        reports: [
          42,
          { namespace: NS },
          {
            namespace: NS,
            name: 'mf-dev',
            twins: [
              { propertyName: 'temperature', reported: { value: 5 } },
              { propertyName: 'humidity', reported: { value: '40', metadata: { type: 'integer' } } },
              { reported: { value: '1' } },
              'x',
            ],
            state: { not: 'a string' },
            lastOnlineTime: 'yesterday',
          },
        ],
      };
      assert.equal(await h.send('mf-n1', batch), null, 'the well-formed rest is accepted');
      assert.equal(await h.send('mf-n1', batch), null);
      const st = await eventually(async () => {
        const s = await readStatus('mf-dev');
        return twin(s, 'humidity') ? s : undefined;
      });
      assert.equal(twin(st, 'temperature'), undefined, 'a twin whose value is not a string is left out');
      assert.equal(st.status?.state, undefined);
      assert.equal(st.status?.lastOnlineTime, undefined);
      const malformed = h.log.lines.filter((l) => /node mf-n1: device reports left out/.test(String(l.msg)));
      assert.ok(malformed.length >= 4, malformed.map((l) => l.msg).join('\n'));
      assert.ok(malformed.every((l) => l.code === 'LEDGE_ERR_INVALID_MESSAGE'));
      assert.ok(malformed.some((l) => /twin temperature: reported value is not a string/.test(String(l.msg))));
      assert.ok(malformed.some((l) => /lastOnlineTime is not an RFC 3339 time.*yesterday/.test(String(l.msg))));
      const count = malformed.length;
      assert.equal(await h.send('mf-n1', batch), null);
      assert.equal(h.log.lines.filter((l) => /node mf-n1: device reports left out/.test(String(l.msg))).length, count, 'the same problems are not logged again');

      for (const [operation, resource] of [
        ['query', 'devicestatus'],
        ['insert', 'devicestatus'],
        ['update', 'default/pod/x'],
        ['update', 'default/twin/x'],
      ] as const) {
        const r = (await h.send('mf-n1', {}, operation, resource)) as { code: string };
        assert.equal(r?.code, 'LEDGE_ERR_UNSUPPORTED', `${operation} ${resource}`);
      }
    } finally {
      await h.bee.stop();
    }
  });

  test('two replicas writing one DeviceStatus: conflicts are re-read and retried, no reported value is lost', async () => {
    const a = harness(cp.kc);
    const b = harness(cp.kc);
    try {
      await Promise.all([a.ready(), b.ready()]);
      await createModel('ha-model');
      await createDevice('ha-dev', 'ha-n1', 'ha-model');
      await eventually(() => a.dc.desiredFor('ha-n1').size === 2 && b.dc.desiredFor('ha-n1').size === 2, 20_000, 'device listed by both');
      // Each replica gets its own property's reports at the same time (a node's sessions moved between them).
      for (let i = 0; i <= 9; i++) {
        await Promise.all([
          a.send('ha-n1', report('ha-dev', [{ propertyName: 'temperature', value: String(i) }])),
          b.send('ha-n1', report('ha-dev', [{ propertyName: 'humidity', value: String(i) }])),
        ]);
      }
      await eventually(
        async () => {
          const s = await readStatus('ha-dev');
          return twin(s, 'temperature')?.reported?.value === '9' && twin(s, 'humidity')?.reported?.value === '9';
        },
        20_000,
        'both replicas’ last values in the DeviceStatus',
      );
      assert.ok(a.dc.stats().failures + b.dc.stats().failures > 0, 'the replicas did conflict (the test exercised the retry)');
    } finally {
      await Promise.all([a.bee.stop(), b.bee.stop()]);
    }
  });

  test('deleting a Device deletes its DeviceStatus; at start, a DeviceStatus whose Device is gone is deleted and one owned by no Device is kept', async () => {
    let h = harness(cp.kc);
    try {
      await h.ready();
      await createModel('gc-model');
      const dev = await createDevice('gc-dev', 'gc-n1', 'gc-model');
      await eventually(() => h.dc.desiredFor('gc-n1').size === 2, 20_000, 'device listed');
      assert.equal(await h.send('gc-n1', report('gc-dev', [{ propertyName: 'temperature', value: '1' }])), null);
      await eventually(() => readStatus('gc-dev'), 20_000, 'DeviceStatus written');
      await objects().deleteNamespacedCustomObject({ ...target('devices'), name: 'gc-dev' });
      await eventually(async () => (await readStatus('gc-dev')) === undefined, 20_000, 'DeviceStatus deleted with its Device');
      void dev;
    } finally {
      await h.bee.stop();
    }
    const status = (name: string, owner?: string) => ({
      apiVersion: `${DEVICE_GROUP}/${DEVICE_VERSION}`,
      kind: 'DeviceStatus',
      metadata: {
        name,
        namespace: NS,
        ...(owner ? { ownerReferences: [{ apiVersion: `${DEVICE_GROUP}/${DEVICE_VERSION}`, kind: 'Device', name, uid: owner, controller: true }] } : {}),
      },
      spec: {},
      status: { twins: [{ propertyName: 'temperature', reported: { value: '1' } }] },
    });
    // CloudCore was down when these Devices were deleted (or never had one): only the owned one goes.
    await objects().createNamespacedCustomObject({ ...target('devicestatuses'), body: status('gc-orphan', 'uid-of-a-deleted-device') });
    await objects().createNamespacedCustomObject({ ...target('devicestatuses'), body: status('gc-unowned') });
    h = harness(cp.kc);
    try {
      await h.ready();
      await eventually(async () => (await readStatus('gc-orphan')) === undefined, 20_000, 'orphan collected');
      assert.ok(await readStatus('gc-unowned'), 'a DeviceStatus no Device controls is not ours to delete');
    } finally {
      await h.bee.stop();
    }
  });

  test('before the informers listed: reports are not ACKed (the edge resends) and desired sets are unknown, until syncTimeoutMs makes them empty', async () => {
    // An API server that is not there: the informers never list.
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const kc = withKeepAlive(new (kube().KubeConfig)());
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `https://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    let now = 1_000_000;
    const h = harness(kc, { installCrds: false, syncTimeoutMs: 60_000, now: () => now });
    try {
      const r = (await h.send('nl-n1', report('nl-dev', [{ propertyName: 'temperature', value: '1' }]))) as { code: string; message: string };
      assert.equal(r.code, 'LEDGE_ERR_API', 'not handled: CloudHub withholds the ACK');
      assert.throws(() => h.dc.desiredFor('nl-n1'), /not known yet/);
      assert.equal(h.dc.synced(), false);
      now += 60_000;
      assert.equal(h.dc.desiredFor('nl-n1').size, 0, 'after the timeout: empty');
      assert.equal(h.log.lines.filter((l) => /were not listed within 60000 ms/.test(String(l.msg))).length, 1);
      h.dc.desiredFor('nl-n2');
      assert.equal(h.log.lines.filter((l) => /were not listed within/.test(String(l.msg))).length, 1, 'said once');
      assert.equal(h.changes.length, 0, 'nothing announced before the informers listed');
    } finally {
      await h.bee.stop();
    }
  });
});
