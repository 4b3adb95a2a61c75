// Devices over DMI, end to end: the local control plane, a CloudCore process, a real EdgeCore
// process (dist/edgecore.js) and the Modbus mapper (dist/mappers/modbus.js) run as a pod by
// EdgeCore's process runtime, against a Modbus TCP device simulated in this test. kubectl applies
// the DeviceModel and the Device; the mapper gets them over DMI, polls the registers and reports;
// the values reach the DeviceStatus. A desired value applied with kubectl is written into the
// holding register. Reports made while the cloud is down arrive after it is back; after kill -9 of
// EdgeCore with no cloud, the mapper gets its devices back and the desired value is applied again
// from the node's own store. A different gRPC toolchain (grpc-js + proto-loader, the way KubeEdge's
// own mappers are built: from the .proto) drives the same DeviceManagerService socket.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { V1Pod } from '@kubernetes/client-node';
import { startCluster, type Cloud, type Cluster } from '../helpers/cluster.js';
import { SimulatedDevice } from '../helpers/modbus.js';
import { freePort, kubectlFor, podWhere } from '../helpers/pods.js';
import { eventually, repoRoot, type Proc } from '../helpers/process.js';
import { kubectl, kubectlPath } from '../apiserver/helpers.js';
import { mosquittoSkipReason, mqttPub, mqttSub } from '../eventbus/helpers.js';
import { DEVICE_GROUP, DEVICE_STATUS_PLURAL, DEVICE_VERSION } from '../../shared/devices/index.js';

const NODE = 'edge-dmi';
const DEVICE = 'thermostat-1';
const EDGE_ARGS = ['--mqtt-port', '0', '--dmi-socket', 'dmi.sock', '--twin-report-interval-ms', '200', '--pod-resync-ms', '500'];

let c: Cluster;
let sim: SimulatedDevice;
let cloud: Cloud;
let cloudPort: number;
let edge: Proc;
let run: (args: string[], input?: string) => Promise<string>;

function manifests(simPort: number, setpoint: string): string {
  return `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: thermostat, namespace: default}
spec:
  protocol: modbus
  properties:
    - {name: temperature, type: INT, accessMode: ReadOnly, minimum: "-40", maximum: "125", unit: Celsius}
    - {name: setpoint, type: INT, accessMode: ReadWrite, minimum: "5", maximum: "35", unit: Celsius}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: ${DEVICE}, namespace: default}
spec:
  deviceModelRef: {name: thermostat}
  nodeName: ${NODE}
  protocol:
    protocolName: modbus
    configData: {communicateMode: TCP, ip: 127.0.0.1, port: ${simPort}, slaveID: 1}
  properties:
    - name: temperature
      visitors: {protocolName: modbus, configData: {register: InputRegister, offset: 0, limit: 1, scale: 1}}
      collectCycle: 200
      reportCycle: 200
      reportToCloud: true
    - name: setpoint
      desired: {value: "${setpoint}"}
      visitors: {protocolName: modbus, configData: {register: HoldingRegister, offset: 0, limit: 1, scale: 1}}
      collectCycle: 200
      reportCycle: 200
      reportToCloud: true
`;
}

/** The mapper as a pod: the process runtime runs `node dist/mappers/modbus.js` next to EdgeCore. */
function mapperPod(): V1Pod {
  const dir = c.dataDir(NODE);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'modbus-mapper', namespace: 'default' },
    spec: {
      nodeName: NODE,
      containers: [
        {
          name: 'mapper',
          image: 'ledge/mapper-modbus',
          command: [process.execPath],
          args: [join(repoRoot, 'dist/mappers/modbus.js'), '--dmi-socket', join(dir, 'dmi.sock'), '--socket', join(dir, 'modbus.sock')],
        },
      ],
    },
  };
}

/** The reported value of a property in the DeviceStatus, if any. */
async function reported(property: string): Promise<string | undefined> {
  const s = (await c.objects
    .getNamespacedCustomObject({ group: DEVICE_GROUP, version: DEVICE_VERSION, namespace: 'default', plural: DEVICE_STATUS_PLURAL, name: DEVICE })
    .catch(() => undefined)) as { status?: { twins?: { propertyName: string; reported?: { value?: string } }[] } } | undefined;
  return s?.status?.twins?.find((t) => t.propertyName === property)?.reported?.value;
}

async function reportedBecomes(property: string, value: string, what: string, timeoutMs = 30_000): Promise<void> {
  let last: string | undefined;
  await eventually(
    async () => {
      last = await reported(property);
      return last === value;
    },
    timeoutMs,
    what,
  ).catch((err: Error) => {
    throw new Error(`${err.message} (DeviceStatus ${property}: ${last})\nedge log tail:\n${edge.output().slice(-12000)}\ncloud log tail:\n${cloud.proc.output().slice(-3000)}`);
  });
}

/** The embedded broker's port, from the edge's log. */
async function brokerPort(p: Proc): Promise<number> {
  const m = await p.waitFor(/"msg":"MQTT broker listening".*?"url":"mqtt:\/\/127\.0\.0\.1:(\d+)"/, 30_000);
  return Number(m[1]);
}

describe('Devices over DMI: kubectl → mapper pod → Modbus device → DeviceStatus', { skip: kubectlPath('1.35') ? undefined : 'kubectl not provisioned' }, () => {
  before(async () => {
    c = await startCluster();
    sim = new SimulatedDevice();
    await sim.start();
    cloudPort = await freePort();
    cloud = await c.startCloud('cloud-a', ['--port', String(cloudPort)]);
    // CloudCore installs the device CRDs: kubectl can apply Devices once they are served.
    await cloud.proc.waitFor(/"msg":"device controller watching"/, 30_000);
    edge = c.startEdge(NODE, [cloud.url], EDGE_ARGS);
    run = kubectlFor(c, join(c.dir, 'kubectl-cache'));
  });
  after(async () => {
    await sim?.stop();
    await c?.close();
  });

  test('apply → RegisterDevice → reports in DeviceStatus; desired applied with kubectl → holding register written', async () => {
    sim.input[0] = 19;
    await run(['apply', '-f', '-'], manifests(sim.port, '21'));
    await c.core.createNamespacedPod({ namespace: 'default', body: mapperPod() });
    await podWhere(c, 'modbus-mapper', (p) => p.status?.phase === 'Running', 'the mapper pod Running');
    await reportedBecomes('temperature', '19', 'the temperature read from the input register in DeviceStatus');
    // The desired setpoint went with the Device and was written at registration.
    await eventually(() => sim.holding[0] === 21, 20_000, 'the desired setpoint written to the holding register');
    await reportedBecomes('setpoint', '21', 'the setpoint read back and reported');

    // The device changes: the new value follows.
    sim.input[0] = 22;
    await reportedBecomes('temperature', '22', 'the new temperature in DeviceStatus');

    // A new desired value through kubectl: UpdateDevice reaches the mapper, which writes the register.
    await run(['patch', 'device', DEVICE, '--type', 'json', '-p', '[{"op":"replace","path":"/spec/properties/1/desired/value","value":"24"}]']);
    await eventually(() => sim.holding[0] === 24, 20_000, 'the new setpoint written to the holding register');
    await reportedBecomes('setpoint', '24', 'the new setpoint reported');
  });

  test('a desired value out of the model range or for a ReadOnly property is refused by the API (422), naming the field', async () => {
    const r = await kubectl(
      kubectlPath('1.35')!,
      c.api.kubeconfigPath,
      ['patch', 'device', DEVICE, '--type', 'json', '-p', '[{"op":"replace","path":"/spec/properties/1/desired/value","value":"50"}]'],
      {
        cacheDir: join(c.dir, 'kubectl-cache'),
        timeoutMs: 60_000,
      },
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /spec\.properties\[1\]\.desired\.value.*maximum/);
    const ro = await kubectl(
      kubectlPath('1.35')!,
      c.api.kubeconfigPath,
      ['patch', 'device', DEVICE, '--type', 'json', '-p', '[{"op":"add","path":"/spec/properties/0/desired","value":{"value":"30"}}]'],
      { cacheDir: join(c.dir, 'kubectl-cache'), timeoutMs: 60_000 },
    );
    assert.notEqual(ro.code, 0);
    assert.match(ro.stderr, /ReadOnly/);
    // Nothing reached the device.
    assert.equal(sim.holding[0], 24);
  });

  test('a mapper built from the proto by grpc-js drives the same DMI socket: an unknown device is NOT_FOUND, a known one reports', async () => {
    const definition = protoLoader.loadSync(join(repoRoot, 'shared/dmi/dmi.proto'), { keepCase: false, longs: Number, defaults: false });
    // biome-ignore lint/suspicious/noExplicitAny: grpc-js' loaded package is untyped by nature
    const pkg = grpc.loadPackageDefinition(definition) as any;
    const client = new pkg.v1beta1.DeviceManagerService(`unix://${join(c.dataDir(NODE), 'dmi.sock')}`, grpc.credentials.createInsecure()) as grpc.Client;
    const call = (method: string, req: unknown) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        // biome-ignore lint/suspicious/noExplicitAny: dynamic method of a grpc-js generated client
        (client as any)[method](req, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: Record<string, unknown>) => (err ? reject(err) : resolve(res)));
      });
    try {
      await assert.rejects(
        call('reportDeviceStatus', {
          deviceName: 'no-such-device',
          deviceNamespace: 'default',
          reportedDevice: { twins: [{ propertyName: 'temperature', reported: { value: '1', metadata: { type: 'int' } } }] },
        }),
        (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND,
      );
      // ReportDeviceStates for the real device: its state reaches the DeviceStatus.
      await call('reportDeviceStates', { deviceName: DEVICE, deviceNamespace: 'default', state: 'online' });
      await eventually(
        async () => {
          const s = (await c.objects.getNamespacedCustomObject({
            group: DEVICE_GROUP,
            version: DEVICE_VERSION,
            namespace: 'default',
            plural: DEVICE_STATUS_PLURAL,
            name: DEVICE,
          })) as {
            status?: { state?: string };
          };
          return s.status?.state === 'online';
        },
        20_000,
        'the state reported by the grpc-js client in DeviceStatus',
      );
    } finally {
      client.close();
    }
  });

  test('cloud down: a value the mapper reports meanwhile reaches DeviceStatus once the cloud is back', { skip: mosquittoSkipReason() }, async () => {
    await cloud.proc.kill9();
    sim.input[0] = 25;
    // The node's own twin has the new value (asked over its MQTT bus, answered locally, no cloud).
    const port = await brokerPort(edge);
    const sub = await mqttSub({ port }, `$hw/events/device/default/${DEVICE}/twin/get/result`);
    try {
      await eventually(
        async () => {
          await mqttPub({ port }, `$hw/events/device/default/${DEVICE}/twin/get`, '{"event_id":"e2e","timestamp":0}');
          return sub.lines().some((l) => /"temperature":\{[^}]*"actual":\{"value":"25"/.test(l));
        },
        20_000,
        'the edge twin to hold the value read while the cloud is down',
      );
    } finally {
      await sub.stop();
    }
    // The device goes silent: from now on only what the edge kept can bring 25 to the cloud.
    await sim.stop();
    cloud = await c.startCloud('cloud-a', ['--port', String(cloudPort)]);
    await reportedBecomes('temperature', '25', 'the value reported while the cloud was down, in DeviceStatus after reconnect');
  });

  test('kill -9 of EdgeCore with no cloud: the mapper gets its devices back and the desired setpoint is written again', async () => {
    await cloud.proc.kill9();
    await edge.kill9();
    // A replacement device on the same address, factory state: the setpoint register is 0.
    const port = sim.port;
    sim = new SimulatedDevice();
    sim.input[0] = 27;
    await sim.start(port);
    assert.equal(sim.holding[0], 0);
    edge = c.startEdge(NODE, [cloud.url], EDGE_ARGS);
    // From the node's store alone: the mapper pod runs again, registers, gets the Device with its desired value.
    await eventually(() => sim.holding[0] === 24, 30_000, 'the desired setpoint written from the restored twin, with the cloud down');
    await eventually(() => sim.inputReads > 0, 20_000, 'the mapper polling the device again');
    // The cloud is back: the readings taken meanwhile and after arrive.
    cloud = await c.startCloud('cloud-a', ['--port', String(cloudPort)]);
    await reportedBecomes('temperature', '27', 'readings after the restart in DeviceStatus');
    sim.input[0] = 28;
    await reportedBecomes('temperature', '28', 'live readings after the restart');
  });
});
