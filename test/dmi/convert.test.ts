// Conversions between KubeEdge's Device/DeviceModel objects and DMI messages (shared/dmi/convert.ts),
// through the real encoder and decoder where the wire matters.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeMessage, encodeMessage, GrpcStatus } from '../../shared/dmi/codec.js';
import { google, v1beta1 } from '../../shared/dmi/generated/dmi.js';
import {
  configDataFromDmi,
  configDataToDmi,
  type DmiDevice,
  type DmiDeviceModel,
  deviceToDmi,
  dmiToDevice,
  dmiToModel,
  dmiTwinsToTwins,
  fromAny,
  mapperAddress,
  modelToDmi,
  toAny,
  twinsToDmi,
} from '../../shared/dmi/index.js';
import type { Device, DeviceModel } from '../../shared/devices/index.js';
import { DmiError } from '../../shared/errors/index.js';

const wire = <T>(type: typeof v1beta1.Device | typeof v1beta1.DeviceModel, value: object): T => decodeMessage<T>(type, encodeMessage(type, value));

describe('toAny / fromAny', () => {
  test("KubeEdge's wrapper choice per JSON type", () => {
    const url = (v: unknown) => toAny(v).type_url;
    assert.equal(url('x'), 'type.googleapis.com/google.protobuf.StringValue');
    assert.equal(url(502), 'type.googleapis.com/google.protobuf.Int32Value');
    assert.equal(url(-(2 ** 31)), 'type.googleapis.com/google.protobuf.Int32Value');
    assert.equal(url(2 ** 31), 'type.googleapis.com/google.protobuf.Int64Value');
    assert.equal(url(1.5), 'type.googleapis.com/google.protobuf.FloatValue');
    assert.equal(url(true), 'type.googleapis.com/google.protobuf.BoolValue');
    assert.equal(url({ a: 1 }), 'type.googleapis.com/google.protobuf.StringValue');
  });

  test('round trips (floats as the shortest float32 decimal, objects as JSON text)', () => {
    for (const v of ['', 'hello ü', 0, 1, -7, 2 ** 31 - 1, 2 ** 40, -(2 ** 45), true, false, 0.5, 23.4, -1e-3]) assert.deepEqual(fromAny(toAny(v)), v, String(v));
    assert.equal(fromAny(toAny({ a: [1, 'b'] })), '{"a":[1,"b"]}');
    assert.equal(fromAny(toAny(null)), 'null');
  });

  test('the bytes are the standard wrapper encoding (what Go mappers decode)', () => {
    assert.deepEqual([...toAny(150).value!], [0x08, 0x96, 0x01]);
    assert.deepEqual([...toAny('ab').value!], [0x0a, 0x02, 0x61, 0x62]);
    assert.deepEqual([...toAny(true).value!], [0x08, 0x01]);
    assert.deepEqual([...toAny(0.5).value!], [0x0d, 0x00, 0x00, 0x00, 0x3f]);
  });

  test('Double, UInt32, UInt64 and Bytes wrappers are read too', () => {
    const pack = (name: string, bytes: Uint8Array) => ({ type_url: `type.googleapis.com/google.protobuf.${name}`, value: bytes });
    assert.equal(fromAny(pack('DoubleValue', google.protobuf.DoubleValue.encode({ value: 0.1 }).finish())), 0.1);
    assert.equal(fromAny(pack('UInt32Value', google.protobuf.UInt32Value.encode({ value: 4_000_000_000 }).finish())), 4_000_000_000);
    assert.equal(fromAny(pack('UInt64Value', google.protobuf.UInt64Value.encode({ value: 2 ** 50 }).finish())), 2 ** 50);
    assert.equal(fromAny(pack('BytesValue', google.protobuf.BytesValue.encode({ value: Buffer.from('hi') }).finish())), Buffer.from('hi').toString('base64'));
  });

  test('an unknown type or undecodable bytes: DmiError 3 INVALID_ARGUMENT', () => {
    const invalid = (err: unknown) => err instanceof DmiError && err.grpcStatus === GrpcStatus.INVALID_ARGUMENT;
    assert.throws(() => fromAny({ type_url: 'type.googleapis.com/acme.Thing', value: new Uint8Array() }), invalid);
    assert.throws(() => fromAny({ value: new Uint8Array() }), invalid);
    assert.throws(() => fromAny({ type_url: 'type.googleapis.com/google.protobuf.StringValue', value: Buffer.from([0x0a, 0x09, 0x61]) }), invalid);
  });

  test('configData both ways', () => {
    const data = { ip: '10.0.0.7', port: 502, slaveID: 1, ratio: 0.25, enabled: true };
    assert.deepEqual(configDataFromDmi(configDataToDmi(data)), data);
    assert.equal(configDataToDmi(undefined), undefined);
    assert.equal(configDataFromDmi(undefined), undefined);
  });
});

const model: DeviceModel = {
  apiVersion: 'devices.kubeedge.io/v1beta1',
  kind: 'DeviceModel',
  metadata: { name: 'sensor-model', namespace: 'factory' },
  spec: {
    protocol: 'modbus',
    protocolConfigData: { port: 502, timeout: 1000 },
    properties: [
      {
        name: 'temperature',
        type: 'INT',
        accessMode: 'ReadWrite',
        minimum: '0',
        maximum: 100,
        unit: 'C',
        visitors: { protocolName: 'modbus', configData: { register: 'HoldingRegister', offset: 2, limit: 1, scale: 1 } },
      },
      { name: 'status', type: 'STRING', accessMode: 'ReadOnly', description: 'device status' },
    ],
  },
};
const device: Device = {
  apiVersion: 'devices.kubeedge.io/v1beta1',
  kind: 'Device',
  metadata: { name: 'sensor-1', namespace: 'factory', uid: 'u1' },
  spec: {
    deviceModelRef: { name: 'sensor-model' },
    nodeName: 'edge-1',
    protocol: { protocolName: 'modbus', configData: { ip: '10.0.0.7', port: 1502 } },
    properties: [
      {
        name: 'temperature',
        desired: { value: '30', metadata: { type: 'int' } },
        visitors: { configData: { offset: 4 } },
        reportCycle: 10_000,
        collectCycle: 2000,
        reportToCloud: true,
        pushMethod: {
          http: { hostName: 'collector.local', port: 8080, requestPath: '/ingest', timeout: 5 },
          mqtt: { address: 'tcp://127.0.0.1:1883', topic: 't', qos: 1, retained: false },
          dbMethod: {
            TDEngine: { TDEngineClientConfig: { addr: '127.0.0.1:6041', dbName: 'db' } },
            influxdb2: { influxdb2ClientConfig: { url: 'http://i', org: 'o', bucket: 'b' }, influxdb2DataConfig: { measurement: 'm', tag: { a: 'b' }, fieldKey: 'k' } },
          },
          anomalyDetection: { threshold: 90 },
        },
      },
      { name: 'status' },
    ],
    methods: [{ name: 'setTemp', description: 'sets it', propertyNames: ['temperature'] }],
    stateReport: { reportToCloud: true, reportCycle: 30_000 },
  },
};

describe('deviceToDmi', () => {
  test("KubeEdge's shape: names, model reference, protocol, properties, methods, state report in status", () => {
    const d = wire<DmiDevice>(v1beta1.Device, deviceToDmi(device, model));
    assert.equal(d.name, 'sensor-1');
    assert.equal(d.namespace, 'factory');
    assert.equal(d.spec!.deviceModelReference, 'sensor-model');
    assert.equal(d.spec!.protocol!.protocolName, 'modbus');
    assert.deepEqual(d.status, { twins: [], reportToCloud: true, reportCycle: 30_000 });
    const t = d.spec!.properties![0]!;
    assert.deepEqual(t.desired, { value: '30', metadata: { type: 'int' } });
    assert.equal(t.reportCycle, 10_000);
    assert.equal(t.collectCycle, 2000);
    assert.equal(t.reportToCloud, true);
    assert.deepEqual(t.pushMethod!.http, { hostname: 'collector.local', port: 8080, requestpath: '/ingest', timeout: 5 });
    assert.deepEqual(t.pushMethod!.dbMethod!.tdengine, { tdEngineClientConfig: { addr: '127.0.0.1:6041', dbname: 'db' } });
    assert.equal(t.pushMethod!.dbMethod!.influxdb2!.influxdb2DataConfig!.tag!.a, 'b');
    assert.equal(fromAny(t.pushMethod!.anomalyDetection!.data!.threshold!), 90);
    assert.deepEqual(d.spec!.methods, [{ name: 'setTemp', description: 'sets it', propertyNames: ['temperature'] }]);
  });

  test('model protocolConfigData and visitors are defaults the device overrides key by key', () => {
    const d = deviceToDmi(device, model);
    assert.deepEqual(configDataFromDmi(d.spec!.protocol!.configData), { port: 1502, timeout: 1000, ip: '10.0.0.7' });
    const v = d.spec!.properties![0]!.visitors!;
    assert.equal(v.protocolName, 'modbus', "the model visitor's protocolName when the device has none");
    assert.deepEqual(configDataFromDmi(v.configData), { register: 'HoldingRegister', offset: 4, limit: 1, scale: 1 });
    // Without the model: only the device's own values.
    assert.deepEqual(configDataFromDmi(deviceToDmi(device).spec!.protocol!.configData), { ip: '10.0.0.7', port: 1502 });
  });

  test('every property has desired and visitors with configData (framework mappers dereference them)', () => {
    const bare: Device = { metadata: { name: 'b' }, spec: { properties: [{ name: 'p' }] } };
    const d = wire<DmiDevice>(v1beta1.Device, deviceToDmi(bare));
    const p = d.spec!.properties![0]!;
    assert.ok(p.desired, 'desired present on the wire');
    assert.ok(p.visitors?.configData, 'visitors.configData present on the wire');
    assert.ok(d.spec!.protocol?.configData);
    assert.equal(d.namespace, 'default');
    assert.equal(d.status, undefined, 'no state report settings: no status');
  });

  test('the old status.reportCycle is used when spec.stateReport is absent', () => {
    const old: Device = { ...device, spec: { ...device.spec, stateReport: undefined }, status: { reportToCloud: true, reportCycle: 5000 } };
    assert.deepEqual(deviceToDmi(old).status, { reportToCloud: true, reportCycle: 5000 });
  });
});

describe('dmiToDevice / dmiToModel (the mapper side)', () => {
  test('a device survives the wire and comes back in KubeEdge shape, configData decoded', () => {
    const back = dmiToDevice(wire<DmiDevice>(v1beta1.Device, deviceToDmi(device, model)));
    assert.equal(back.metadata.name, 'sensor-1');
    assert.equal(back.metadata.namespace, 'factory');
    assert.deepEqual(back.spec.deviceModelRef, { name: 'sensor-model' });
    assert.deepEqual(back.spec.protocol, { protocolName: 'modbus', configData: { port: 1502, timeout: 1000, ip: '10.0.0.7' } });
    const t = back.spec.properties![0]!;
    assert.deepEqual(t.desired, { value: '30', metadata: { type: 'int' } });
    assert.deepEqual(t.visitors, { protocolName: 'modbus', configData: { register: 'HoldingRegister', offset: 4, limit: 1, scale: 1 } });
    assert.equal(t.collectCycle, 2000);
    assert.deepEqual(t.pushMethod!.http, device.spec.properties![0]!.pushMethod!.http);
    assert.deepEqual(t.pushMethod!.dbMethod!.TDEngine, { TDEngineClientConfig: { addr: '127.0.0.1:6041', dbName: 'db' } });
    assert.deepEqual(t.pushMethod!.anomalyDetection, { threshold: 90 });
    assert.deepEqual(back.spec.methods, device.spec.methods);
    assert.deepEqual(back.spec.stateReport, { reportToCloud: true, reportCycle: 30_000 });
    assert.deepEqual(back.spec.properties![1]!.desired, { value: '' });
  });

  test('a model survives the wire (DMI carries properties only)', () => {
    const m = wire<DmiDeviceModel>(v1beta1.DeviceModel, modelToDmi(model));
    assert.equal(m.spec!.properties![0]!.maximum, '100', 'numbers become strings as in the CRD');
    const back = dmiToModel(m);
    assert.deepEqual(back.metadata, { name: 'sensor-model', namespace: 'factory' });
    assert.deepEqual(back.spec.properties, [
      { name: 'temperature', type: 'INT', accessMode: 'ReadWrite', minimum: '0', maximum: '100', unit: 'C' },
      { name: 'status', type: 'STRING', accessMode: 'ReadOnly', description: 'device status' },
    ]);
  });

  test('a configData value a mapper cannot read: DmiError 3', () => {
    const d: DmiDevice = { name: 'x', spec: { protocol: { configData: { data: { k: { type_url: 'type.googleapis.com/x.Y', value: new Uint8Array() } } } } } };
    assert.throws(
      () => dmiToDevice(d),
      (err) => err instanceof DmiError && err.grpcStatus === 3,
    );
  });
});

describe('twins and mapper info', () => {
  test('twins both ways; a nameless twin is kept (for validation to refuse)', () => {
    const twins = [
      { propertyName: 'temperature', reported: { value: '21', metadata: { timestamp: '1700000000000' } }, observedDesired: { value: '30' } },
      { propertyName: 'status', reported: { value: 'ok' } },
    ];
    assert.deepEqual(dmiTwinsToTwins(twinsToDmi(twins)), twins);
    assert.deepEqual(dmiTwinsToTwins([{ reported: { value: '1' } }]), [{ propertyName: '', reported: { value: '1' } }]);
    assert.deepEqual(dmiTwinsToTwins(undefined), []);
  });

  test('mapperAddress decodes the socket path bytes', () => {
    assert.equal(mapperAddress({ address: Buffer.from('/etc/kubeedge/modbus.sock') }), '/etc/kubeedge/modbus.sock');
    assert.equal(mapperAddress(undefined), '');
  });
});
