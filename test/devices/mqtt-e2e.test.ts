// MQTT devices end to end: the real kubectl applies the example MQTT device (a DeviceModel and a
// Device bound to an edge node) to the local control plane, a real CloudCore sends it over the link,
// the bundled EdgeCore serves KubeEdge's device topics on its device bus (its embedded broker, or an
// external Mosquitto), and Mosquitto's own clients play the device: reported values reach the
// DeviceStatus, desired values come back as deltas, bad input is answered and survived, and all of it
// holds through a CloudCore crash and an EdgeCore kill -9.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startCluster, type Cloud, type Cluster } from '../helpers/cluster.js';
import { eventually, type Proc } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';
import { freePort, kubectlFor } from '../helpers/pods.js';
import { KUBECTL_SKIP } from '../apiserver/helpers.js';
import { mosquittoSkipReason, mqttPub, startMosquitto, type ClientFlags, type Mosquitto } from '../eventbus/helpers.js';
import { DEVICE_API, actualUpdate, brokerPort, deviceStatus, exampleDevice, logAfter, reportedIs, request, succeeded, twinGet, twinOf, watch, type Watch } from './mqtt-helpers.js';

const SKIP = KUBECTL_SKIP ?? mosquittoSkipReason();
/**
 * Every EdgeCore here: a broker on a free port, the DMI socket in its data directory (never
 * /etc/kubeedge), MetaServer on a free port; CloudCore's stream port free too (build/run-tests.mjs
 * sets these for the suite; a run of this file alone must not meet other processes on the defaults).
 */
const EDGE_ARGS = ['--mqtt-port', '0', '--dmi-socket', 'dmi.sock', '--metaserver-port', '0'];
const cloudArgs = () => ['--port', String(cloudPort), '--stream-port', '0'];
const dev = (name: string) => `$hw/events/device/default/${name}`;
const setLed = (value: string) => ['--type', 'json', '-p', JSON.stringify([{ op: 'replace', path: '/spec/properties/1/desired/value', value }])];

let c: Cluster;
let cloud: Cloud;
/** The cloud's port, fixed so that a restarted CloudCore is found on the same URL. */
let cloudPort: number;
let k: (args: string[], input?: string) => Promise<string>;

before(async () => {
  if (SKIP) return;
  c = await startCluster();
  cloudPort = await freePort();
  cloud = await c.startCloud('cloud-a', cloudArgs());
  k = kubectlFor(c, join(c.dir, 'kubectl-cache'));
});
after(async () => {
  await w?.stop();
  await c?.close();
});

/** Applies the example device bound to `node`, then waits until the edge answers twin/get for it (the Device reached the edge). */
async function applyDevice(flags: ClientFlags, w: Watch, name: string, node: string): Promise<void> {
  await k(['apply', '-f', '-'], exampleDevice(name, node));
  await request(
    flags,
    w,
    `${dev(name)}/twin/get`,
    `${dev(name)}/twin/get/result`,
    twinGet,
    (b) => succeeded(b) && twinOf(b, 'temperature') !== undefined && twinOf(b, 'led') !== undefined,
    30_000,
    `the edge to hold device ${name}`,
  );
}

/** A twin update of one actual value, answered without a refusal (stored durably on the edge). */
function report(flags: ClientFlags, w: Watch, name: string, prop: string, value: string): Promise<Record<string, unknown>> {
  return request(
    flags,
    w,
    `${dev(name)}/twin/update`,
    `${dev(name)}/twin/update/result`,
    actualUpdate(prop, value),
    (b) => {
      if (!succeeded(b)) throw new Error(`twin/update of ${prop}=${value} refused: ${JSON.stringify(b)}`);
      return twinOf(b, prop)?.actual?.value === value;
    },
    15_000,
    `twin/update ${prop}=${value} to be applied`,
  );
}

/** The embedded-broker edge, shared by the embedded and offline scenarios. */
const EMB = { node: 'edge-mqtt', device: 'mqtt-sensor-1' };
let edge: Proc;
let flags: ClientFlags;
let w: Watch | undefined;

describe('embedded broker', { skip: SKIP }, () => {
  before(async () => {
    edge = c.startEdge(EMB.node, [cloud.url], EDGE_ARGS);
    flags = { port: await brokerPort(edge) };
    w = await watch(flags, '$hw/events/#');
    await applyDevice(flags, w, EMB.device, EMB.node);
  });

  test('a reported value published with mosquitto_pub reaches the DeviceStatus', async () => {
    const result = await report(flags, w!, EMB.device, 'temperature', '21.5');
    assert.equal(result.code, undefined);
    const s = await reportedIs(c, EMB.device, 'temperature', '21.5', 20_000);
    const t = s.status?.twins?.find((x) => x.propertyName === 'temperature');
    assert.equal(t?.reported?.metadata?.type, 'float', JSON.stringify(s));
    // Owned by its Device (deleted with it).
    assert.deepEqual(
      s.metadata.ownerReferences?.map((o) => [o.kind, o.name, o.controller]),
      [['Device', EMB.device, true]],
    );
  });

  test('a desired value patched with kubectl arrives as a delta on twin/update/delta', async () => {
    const from = w!.mark();
    await k(['patch', 'device', EMB.device, ...setLed('true')]);
    const delta = await w!.waitFor(
      `${dev(EMB.device)}/twin/update/delta`,
      (b) => (b.delta as Record<string, string> | undefined)?.led === 'true',
      from,
      20_000,
      'a delta with led expected true',
    );
    assert.equal(twinOf(delta, 'led')?.expected?.value, 'true');
  });

  test('bad input is answered with an error result; the edge keeps running and good updates still work', async () => {
    const topic = `${dev(EMB.device)}/twin/update`;
    const resultTopic = `${dev(EMB.device)}/twin/update/result`;
    // Not JSON: no event_id can be read, so the answer is matched by its code and reason.
    const from = w!.mark();
    assert.equal((await mqttPub(flags, topic, '{"event_id":"broken","twin":{')).code, 0);
    const malformed = await w!.waitFor(resultTopic, (b) => b.code === 400, from, 10_000, 'a 400 result for a payload that is not JSON');
    assert.match(String(malformed.reason), /Unmarshal/);
    // JSON of the wrong shape (a number where KubeEdge has a string) and a value the model refuses.
    const wrongShape = await request(
      flags,
      w!,
      topic,
      resultTopic,
      (id) => JSON.stringify({ event_id: id, timestamp: 0, twin: { temperature: { actual: { value: 21.5 } } } }),
      () => true,
      10_000,
      'an answer to a twin of the wrong shape',
    );
    assert.equal(wrongShape.code, 400, JSON.stringify(wrongShape));
    const refused = await request(flags, w!, topic, resultTopic, actualUpdate('temperature', 'warm'), () => true, 10_000, 'an answer to a value that is no float');
    assert.equal(refused.code, 400, JSON.stringify(refused));
    // A device the node does not hold.
    const unknown = await request(
      flags,
      w!,
      `${dev('no-such-device')}/twin/update`,
      `${dev('no-such-device')}/twin/update/result`,
      actualUpdate('temperature', '1.0'),
      () => true,
      10_000,
      'an answer about an unknown device',
    );
    assert.equal(unknown.code, 404, JSON.stringify(unknown));

    assert.equal(edge.child.exitCode, null, `the edge exited:\n${edge.output().slice(-3000)}`);
    assert.equal(edge.child.signalCode, null);
    await report(flags, w!, EMB.device, 'temperature', '22.5');
    await reportedIs(c, EMB.device, 'temperature', '22.5', 20_000);
  });

  test('membership/get lists the device', async () => {
    const answer = await request(
      flags,
      w!,
      `$hw/events/node/${EMB.node}/membership/get`,
      `$hw/events/node/${EMB.node}/membership/get/result`,
      twinGet,
      () => true,
      10_000,
      'the membership of the node',
    );
    const devices = answer.devices as { id: string; name: string }[];
    assert.ok(Array.isArray(devices), JSON.stringify(answer));
    assert.deepEqual(
      devices.map((d) => [d.id, d.name]),
      [[`default/${EMB.device}`, EMB.device]],
    );
  });
});

describe('external broker (Mosquitto)', { skip: SKIP }, () => {
  const NODE = 'edge-mqtt-ext';
  const DEVICE = 'mqtt-sensor-ext';
  let dir: { path: string; cleanup: () => void };
  let broker: Mosquitto | undefined;
  let extEdge: Proc;
  let ext: ClientFlags;
  let ew: Watch | undefined;

  before(async () => {
    dir = tempDir('ledge-mqtt-ext-');
    broker = await startMosquitto({ dir: dir.path });
    ext = { port: broker.port };
    extEdge = c.startEdge(NODE, [cloud.url], [...EDGE_ARGS, '--mqtt-mode', 'external', '--mqtt-server', `mqtt://127.0.0.1:${broker.port}`]);
    await extEdge.waitFor(/"msg":"connected to the external MQTT broker"/, 30_000);
    ew = await watch(ext, '$hw/events/#');
    await applyDevice(ext, ew, DEVICE, NODE);
  });
  after(async () => {
    await ew?.stop();
    await extEdge?.kill9();
    await broker?.stop();
    dir?.cleanup();
  });

  test('a reported value through Mosquitto reaches the DeviceStatus; a desired value comes back as a delta', async () => {
    assert.doesNotMatch(extEdge.output(), /MQTT broker listening/, 'external mode runs no embedded broker');
    await report(ext, ew!, DEVICE, 'temperature', '19.5');
    await reportedIs(c, DEVICE, 'temperature', '19.5', 20_000);
    const from = ew!.mark();
    await k(['patch', 'device', DEVICE, ...setLed('true')]);
    const delta = await ew!.waitFor(
      `${dev(DEVICE)}/twin/update/delta`,
      (b) => (b.delta as Record<string, string> | undefined)?.led === 'true',
      from,
      20_000,
      'a delta with led expected true',
    );
    assert.equal(twinOf(delta, 'led')?.expected?.value, 'true');
  });
});

describe('edge offline', { skip: SKIP }, () => {
  test('values reported while the cloud is down arrive once it is back; a cloud that lost them gets them again; after kill -9 the edge still knows the desired value', async () => {
    const cloudGone = async (): Promise<void> => {
      const mark = edge.output().length;
      await cloud.proc.kill9();
      await logAfter(edge, mark, /disconnected from cloud|link failed|no traffic from cloud/, 20_000, 'the edge to notice the cloud is gone');
    };
    const cloudBack = async (): Promise<void> => {
      cloud = await c.startCloud('cloud-a', cloudArgs());
    };

    // CloudCore dies; the edge notices and goes on taking its devices' values.
    await cloudGone();
    await report(flags, w!, EMB.device, 'temperature', '30.5');
    await cloudBack();
    await reportedIs(c, EMB.device, 'temperature', '30.5', 30_000);

    // The cloud goes again and, while away, loses what it had written (the DeviceStatus is deleted:
    // the stand-in for a CloudCore replica that accepted a report and crashed before writing it).
    // Nothing new is reported: only the edge's full resend on reconnection can rebuild it.
    await cloudGone();
    await c.objects.deleteNamespacedCustomObject({ ...DEVICE_API, namespace: 'default', plural: 'devicestatuses', name: EMB.device });
    await eventually(async () => (await deviceStatus(c, EMB.device)) === undefined, 10_000, 'the DeviceStatus to be gone');
    await cloudBack();
    await reportedIs(c, EMB.device, 'temperature', '30.5', 30_000);

    // A power cut: the cloud goes, then EdgeCore is killed with kill -9 and started on the same data.
    await cloudGone();
    await w?.stop();
    w = undefined;
    await edge.kill9();
    edge = c.startEdge(EMB.node, [cloud.url], EDGE_ARGS);
    flags = { port: await brokerPort(edge) };
    w = await watch(flags, '$hw/events/#');
    // No cloud: the twin comes from the edge's own store, the desired value patched before included.
    const got = await request(flags, w, `${dev(EMB.device)}/twin/get`, `${dev(EMB.device)}/twin/get/result`, twinGet, succeeded, 20_000, 'twin/get answered from the store');
    assert.equal(twinOf(got, 'led')?.expected?.value, 'true', JSON.stringify(got));
    assert.equal(twinOf(got, 'temperature')?.actual?.value, '30.5', JSON.stringify(got));
    // And a value reported now, still without the cloud, reaches the DeviceStatus once it is back.
    await report(flags, w, EMB.device, 'temperature', '31.5');
    assert.doesNotMatch(edge.output(), /"msg":"(re)?connected to cloud"/, 'all of this happened without the cloud');
    await cloudBack();
    await reportedIs(c, EMB.device, 'temperature', '31.5', 30_000);
  });
});
