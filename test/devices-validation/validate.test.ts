/**
 * Unit tests of shared/devices/validate.ts: every rule of checkTwinValue, validateDeviceModel and
 * validateDevice, with the field paths and messages users see; and KubeEdge's own samples and
 * Ledge's examples pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { checkTwinValue, validateDevice, validateDeviceModel, type Device, type DeviceModel, type DeviceProblem, type ModelProperty } from '../../shared/devices/index.js';
import { repoRoot } from '../helpers/process.js';

const prop = (p: Partial<ModelProperty>): ModelProperty => ({ name: 'p', ...p });

function model(properties: unknown[], extra: Record<string, unknown> = {}): DeviceModel {
  return { apiVersion: 'devices.kubeedge.io/v1beta1', kind: 'DeviceModel', metadata: { name: 'm', namespace: 'default' }, spec: { properties, ...extra } as DeviceModel['spec'] };
}

function device(spec: Record<string, unknown>): Device {
  return { apiVersion: 'devices.kubeedge.io/v1beta1', kind: 'Device', metadata: { name: 'd', namespace: 'default' }, spec: { deviceModelRef: { name: 'm' }, ...spec } };
}

const fields = (ps: DeviceProblem[]) => ps.map((p) => p.field);
const one = (ps: DeviceProblem[], field: string): string => {
  const hit = ps.filter((p) => p.field === field);
  assert.equal(hit.length, 1, `one problem at ${field}: ${JSON.stringify(ps)}`);
  return hit[0]!.message;
};

// ------------------------------------------------------------------ checkTwinValue

test('INT: base-10 integers within int64, nothing else', () => {
  const p = prop({ type: 'INT' });
  for (const ok of ['0', '-12', '+7', '9223372036854775807', '-9223372036854775808']) assert.equal(checkTwinValue(p, ok, 'reported'), undefined, ok);
  assert.equal(checkTwinValue(p, 'abc', 'desired'), '"abc" is not an INT');
  for (const bad of ['1.5', '1e3', ' 1', '0x10', '', '1_000']) assert.match(checkTwinValue(p, bad, 'reported') ?? '', /is not an INT/, bad);
  assert.equal(checkTwinValue(p, '9223372036854775808', 'reported'), '"9223372036854775808" is out of range for INT (64-bit)');
  assert.match(checkTwinValue(p, '-9223372036854775809', 'reported') ?? '', /out of range/);
});

test('FLOAT and DOUBLE: finite decimal numbers; FLOAT within float32', () => {
  for (const type of ['FLOAT', 'DOUBLE'] as const) {
    const p = prop({ type });
    for (const ok of ['0', '23.5', '-0.25', '.5', '5.', '1e3', '-2.5E-4']) assert.equal(checkTwinValue(p, ok, 'reported'), undefined, `${type} ${ok}`);
    for (const bad of ['abc', 'NaN', 'Infinity', 'inf', '', '1,5', '0x1p3', '1e'])
      assert.match(checkTwinValue(p, bad, 'reported') ?? '', new RegExp(`is not a ${type}`), `${type} ${bad}`);
  }
  assert.equal(checkTwinValue(prop({ type: 'FLOAT' }), '1e39', 'reported'), '"1e39" is out of range for FLOAT (32-bit)');
  assert.equal(checkTwinValue(prop({ type: 'DOUBLE' }), '1e39', 'reported'), undefined);
  assert.equal(checkTwinValue(prop({ type: 'DOUBLE' }), '1e309', 'reported'), '"1e309" is out of range for DOUBLE');
});

test('BOOLEAN is exactly "true" or "false" (KubeEdge ValidateValue)', () => {
  const p = prop({ type: 'BOOLEAN' });
  assert.equal(checkTwinValue(p, 'true', 'desired'), undefined);
  assert.equal(checkTwinValue(p, 'false', 'desired'), undefined);
  for (const bad of ['TRUE', '1', 'yes', '']) assert.equal(checkTwinValue(p, bad, 'desired'), `${JSON.stringify(bad)} is not a BOOLEAN ("true" or "false")`);
});

test('BYTES is standard base64; STRING, STREAM and an unset type take anything', () => {
  const p = prop({ type: 'BYTES' });
  for (const ok of ['', 'AQID', 'aGVsbG8=', 'aGk=']) assert.equal(checkTwinValue(p, ok, 'reported'), undefined, ok);
  for (const bad of ['AQI', 'a b', 'aGk', '****', 'aGVsbG8=x']) assert.match(checkTwinValue(p, bad, 'reported') ?? '', /is not BYTES \(standard base64\)/, bad);
  for (const type of ['STRING', 'STREAM', undefined] as const) {
    assert.equal(checkTwinValue(prop(type ? { type } : {}), 'any thing at all: 🙂', 'desired'), undefined);
  }
});

test('minimum and maximum: numeric comparison, strings or numbers in the model, inclusive', () => {
  const p = prop({ name: 'temp', type: 'INT', minimum: '1', maximum: '100' });
  assert.equal(checkTwinValue(p, '1', 'desired'), undefined);
  assert.equal(checkTwinValue(p, '100', 'desired'), undefined);
  // Numerically, not as text ("9" > "100" as strings).
  assert.equal(checkTwinValue(p, '9', 'desired'), undefined);
  assert.equal(checkTwinValue(p, '150', 'desired'), '"150" is above the maximum "100" of property "temp"');
  assert.equal(checkTwinValue(p, '0', 'desired'), '"0" is below the minimum "1" of property "temp"');
  const n = prop({ name: 'f', type: 'FLOAT', minimum: 0, maximum: 100.5 });
  assert.equal(checkTwinValue(n, '100.5', 'reported'), undefined);
  assert.match(checkTwinValue(n, '100.51', 'reported') ?? '', /above the maximum "100.5"/);
  assert.match(checkTwinValue(n, '-1e-9', 'reported') ?? '', /below the minimum "0"/);
  // INT compared exactly beyond 2^53.
  const big = prop({ type: 'INT', maximum: '9007199254740993' });
  assert.equal(checkTwinValue(big, '9007199254740993', 'reported'), undefined);
  assert.match(checkTwinValue(big, '9007199254740994', 'reported') ?? '', /above the maximum/);
  // Decimal bound on an INT ("100.0" as in KubeEdge's FLOAT sample), empty bound = unset.
  assert.match(checkTwinValue(prop({ type: 'INT', maximum: '100.0' }), '101', 'reported') ?? '', /above/);
  assert.equal(checkTwinValue(prop({ type: 'INT', minimum: '', maximum: '' }), '-5', 'reported'), undefined);
  // Bounds do not apply to non-numeric types.
  assert.equal(checkTwinValue(prop({ type: 'STRING', maximum: '1' }), 'zzz', 'reported'), undefined);
});

test('ReadOnly refuses a desired value, not a reported one', () => {
  const p = prop({ name: 'random-float', type: 'FLOAT', accessMode: 'ReadOnly' });
  assert.equal(checkTwinValue(p, '3', 'desired'), 'property "random-float" is ReadOnly: a desired value cannot be set');
  assert.equal(checkTwinValue(p, '3', 'reported'), undefined);
  assert.equal(checkTwinValue({ ...p, accessMode: 'ReadWrite' }, '3', 'desired'), undefined);
});

test('long values are cut in messages', () => {
  const msg = checkTwinValue(prop({ type: 'INT' }), 'x'.repeat(10_000), 'reported') ?? '';
  assert.ok(msg.length < 120, msg);
  assert.match(msg, /x\.\.\." is not an INT/);
});

// ------------------------------------------------------------------ DeviceModel

test('DeviceModel: property names present, twin keys, unique', () => {
  const ps = validateDeviceModel(model([{ name: 'a', type: 'INT' }, { type: 'INT' }, { name: 'a b' }, { name: 'a' }, { name: 'x'.repeat(129) }]));
  assert.deepEqual(fields(ps), ['spec.properties[1].name', 'spec.properties[2].name', 'spec.properties[3].name', 'spec.properties[4].name']);
  assert.match(one(ps, 'spec.properties[1].name'), /Required value/);
  assert.match(one(ps, 'spec.properties[2].name'), /"a b" is not a valid property name/);
  assert.match(one(ps, 'spec.properties[3].name'), /Duplicate value: "a" \(property names must be unique\)/);
});

test('DeviceModel: type and accessMode among KubeEdge values', () => {
  const ps = validateDeviceModel(
    model([
      { name: 'a', type: 'int' },
      { name: 'b', accessMode: 'WriteOnly' },
      { name: 'c', type: 'STREAM', accessMode: 'ReadOnly' },
    ]),
  );
  assert.match(one(ps, 'spec.properties[0].type'), /Unsupported value: "int": supported values: "INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"/);
  assert.match(one(ps, 'spec.properties[1].accessMode'), /Unsupported value: "WriteOnly"/);
  assert.equal(ps.length, 2);
});

test('DeviceModel: minimum/maximum are numbers with minimum <= maximum for numeric types', () => {
  const ps = validateDeviceModel(
    model([
      { name: 'a', type: 'INT', minimum: 'low', maximum: '10' },
      { name: 'b', type: 'FLOAT', minimum: '5', maximum: '1' },
      { name: 'c', type: 'DOUBLE', minimum: 1, maximum: 2 },
      { name: 'd', type: 'STRING', minimum: 'whatever' },
      { name: 'e', type: 'INT', maximum: true },
      { name: 'f', type: 'INT', minimum: '', maximum: '' },
    ]),
  );
  assert.match(one(ps, 'spec.properties[0].minimum'), /string "low" is not a number \(the minimum of a INT property\)/);
  assert.equal(one(ps, 'spec.properties[1].minimum'), '"5" is above the maximum "1"');
  assert.match(one(ps, 'spec.properties[4].maximum'), /boolean "true" is not a number/);
  assert.equal(ps.length, 3);
});

test('DeviceModel: configData values are scalars (protocolConfigData, visitors)', () => {
  const ps = validateDeviceModel(
    model([{ name: 'a', visitors: { protocolName: 'modbus', configData: { register: 'CoilRegister', nested: { x: 1 } } } }], {
      protocolConfigData: { list: [1], n: null, ok: 1.5 },
    }),
  );
  assert.deepEqual(fields(ps).sort(), ['spec.properties[0].visitors.configData.nested', 'spec.protocolConfigData.list', 'spec.protocolConfigData.n']);
  assert.match(
    one(ps, 'spec.protocolConfigData.list'),
    /must be a string, number or boolean, not a list \(KubeEdge hands each configData value to the mapper as one protobuf wrapper/,
  );
});

test('DeviceModel: shapes of the object itself', () => {
  assert.equal(validateDeviceModel('x')[0]?.message, 'a DeviceModel must be an object, not string "x"');
  assert.deepEqual(validateDeviceModel({ metadata: { name: 'm' } }), []);
  assert.deepEqual(fields(validateDeviceModel({ spec: { properties: {} } })), ['spec.properties']);
  assert.deepEqual(fields(validateDeviceModel({ spec: { properties: [7], protocol: 3 } })), ['spec.protocol', 'spec.properties[0]']);
});

// ------------------------------------------------------------------ Device: shape

test('Device: deviceModelRef.name is required and an object name', () => {
  assert.match(one(validateDevice({ spec: {} }, undefined), 'spec.deviceModelRef'), /Required value/);
  assert.match(one(validateDevice(device({ deviceModelRef: {} }), undefined), 'spec.deviceModelRef.name'), /Required value/);
  assert.match(one(validateDevice(device({ deviceModelRef: { name: 'Bad_Name' } }), undefined), 'spec.deviceModelRef.name'), /"Bad_Name" is not a valid object name/);
  assert.match(one(validateDevice({ metadata: {} }, undefined), 'spec'), /Required value/);
});

test('Device: nodeName is optional, and a DNS-1123 subdomain when set', () => {
  assert.deepEqual(validateDevice(device({ nodeName: 'edge-1' }), undefined), []);
  assert.deepEqual(validateDevice(device({ nodeName: '' }), undefined), []);
  assert.match(one(validateDevice(device({ nodeName: 'Edge 1' }), undefined), 'spec.nodeName'), /"Edge 1" is not a valid node name/);
  assert.match(one(validateDevice(device({ nodeName: 5 }), undefined), 'spec.nodeName'), /must be a string/);
});

test('Device: cycles are non-negative integers (ms), reportToCloud a boolean', () => {
  const ps = validateDevice(
    device({
      properties: [
        { name: 'a', reportCycle: -1, collectCycle: 1.5 },
        { name: 'b', reportCycle: '1000', reportToCloud: 'yes' },
        { name: 'c', reportCycle: 0, collectCycle: 10_000_000_000, reportToCloud: true },
      ],
      stateReport: { reportCycle: -5, reportToCloud: 1 },
    }),
    undefined,
  );
  assert.deepEqual(fields(ps).sort(), [
    'spec.properties[0].collectCycle',
    'spec.properties[0].reportCycle',
    'spec.properties[1].reportCycle',
    'spec.properties[1].reportToCloud',
    'spec.stateReport.reportCycle',
    'spec.stateReport.reportToCloud',
  ]);
  assert.match(one(ps, 'spec.properties[0].reportCycle'), /number "-1" is not a cycle: a non-negative integer of milliseconds/);
});

test('Device: configData values are scalars (protocol, visitors, anomalyDetection)', () => {
  const ps = validateDevice(
    device({
      protocol: { protocolName: 'modbus', configData: { ip: '10.0.0.1', port: 502, tls: { ca: 'x' } } },
      properties: [
        { name: 'a', visitors: { protocolName: 'modbus', configData: { offset: 1, regs: [1, 2], x: null } }, pushMethod: { anomalyDetection: { model: 'm', deep: {} } } },
      ],
    }),
    undefined,
  );
  assert.deepEqual(fields(ps).sort(), [
    'spec.properties[0].pushMethod.anomalyDetection.deep',
    'spec.properties[0].visitors.configData.regs',
    'spec.properties[0].visitors.configData.x',
    'spec.protocol.configData.tls',
  ]);
  assert.match(one(ps, 'spec.protocol.configData.tls'), /not an object .*nested objects, lists and null make EdgeCore drop the device/);
  assert.match(one(validateDevice(device({ protocol: { configData: 'x' } }), undefined), 'spec.protocol.configData'), /must be an object/);
});

test('Device: property names unique twin keys; desired.value a string', () => {
  const ps = validateDevice(
    device({
      properties: [{ name: 'a' }, { name: 'a' }, { desired: { value: '1' } }, { name: 'b', desired: { value: 30 } }, { name: 'c', desired: { value: '1', metadata: { t: 1 } } }],
    }),
    undefined,
  );
  assert.match(one(ps, 'spec.properties[1].name'), /Duplicate value: "a"/);
  assert.match(one(ps, 'spec.properties[2].name'), /Required value/);
  assert.match(one(ps, 'spec.properties[3].desired.value'), /must be a string, not number "30" \(twin values are strings/);
  assert.match(one(ps, 'spec.properties[4].desired.metadata.t'), /must be a string/);
});

test('Device: methods have unique names and name the Device properties', () => {
  const ps = validateDevice(
    device({
      properties: [{ name: 'temp' }],
      methods: [{ name: 'Set', propertyNames: ['temp'] }, { name: 'Set' }, { propertyNames: ['nope', 3] }],
    }),
    undefined,
  );
  assert.deepEqual(fields(ps), ['spec.methods[1].name', 'spec.methods[2].name', 'spec.methods[2].propertyNames[0]', 'spec.methods[2].propertyNames[1]']);
  assert.equal(one(ps, 'spec.methods[2].propertyNames[0]'), '"nope" is not a property of this Device');
});

// ------------------------------------------------------------------ Device against its model

const tempModel = model([
  { name: 'temp', type: 'INT', accessMode: 'ReadWrite', minimum: '1', maximum: '100' },
  { name: 'on', type: 'BOOLEAN', accessMode: 'ReadWrite' },
  { name: 'reading', type: 'FLOAT', accessMode: 'ReadOnly' },
]);

test('Device + model: desired values are checked with the field path', () => {
  const ps = validateDevice(
    device({
      properties: [
        { name: 'on', desired: { value: 'true' } },
        { name: 'temp', desired: { value: 'abc' } },
      ],
    }),
    tempModel,
  );
  assert.deepEqual(ps, [{ field: 'spec.properties[1].desired.value', message: '"abc" is not an INT' }]);
  assert.deepEqual(validateDevice(device({ properties: [{ name: 'temp', desired: { value: '101' } }] }), tempModel), [
    { field: 'spec.properties[0].desired.value', message: '"101" is above the maximum "100" of property "temp"' },
  ]);
  assert.deepEqual(validateDevice(device({ properties: [{ name: 'reading', desired: { value: '1.5' } }] }), tempModel), [
    { field: 'spec.properties[0].desired.value', message: 'property "reading" is ReadOnly: a desired value cannot be set' },
  ]);
});

test('Device + model: an empty desired value means none (Go clients write desired: {value: ""})', () => {
  assert.deepEqual(
    validateDevice(
      device({
        properties: [
          { name: 'reading', desired: { value: '' } },
          { name: 'temp', desired: { value: '' } },
        ],
      }),
      tempModel,
    ),
    [],
  );
});

test('Device + model: a property the model lacks is refused (framework mappers crash on it)', () => {
  const ps = validateDevice(device({ properties: [{ name: 'temp' }, { name: 'humidity', desired: { value: 'x' } }] }), tempModel);
  assert.deepEqual(ps, [{ field: 'spec.properties[1].name', message: '"humidity" is not a property of DeviceModel "m" (its properties: temp, on, reading)' }]);
});

test('Device without its model: shape only (apply order must not matter)', () => {
  assert.deepEqual(validateDevice(device({ properties: [{ name: 'humidity', desired: { value: 'anything' } }] }), undefined), []);
});

test('Device: a malformed model in hand does not crash the check', () => {
  const bad = { metadata: { name: 'm' }, spec: { properties: [null, 3, { name: 5 }, { name: 'temp', type: 'INT', maximum: 'x' }] } } as unknown as DeviceModel;
  assert.deepEqual(validateDevice(device({ properties: [{ name: 'temp', desired: { value: '999' } }] }), bad), []);
  assert.deepEqual(fields(validateDevice(device({ properties: [{ name: 'temp', desired: { value: 'q' } }] }), bad)), ['spec.properties[0].desired.value']);
});

test('a hostile object gets a bounded answer', () => {
  const properties = Array.from({ length: 10_000 }, () => ({ name: 'same', reportCycle: -1 }));
  const ps = validateDevice(device({ properties }), undefined);
  assert.equal(ps.length, 51);
  assert.match(ps[50]!.message, /^and \d+ more problems$/);
});

// ------------------------------------------------------------------ samples

function loadYaml(path: string): Record<string, unknown>[] {
  return yaml.loadAll(readFileSync(path, 'utf8')) as Record<string, unknown>[];
}

test("KubeEdge's samples and Ledge's examples pass, with and without their models", () => {
  const files = [
    ...readdirSync(join(repoRoot, 'test/fixtures/kubeedge-samples'))
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => join(repoRoot, 'test/fixtures/kubeedge-samples', f)),
    ...readdirSync(join(repoRoot, 'deploy/examples/devices')).map((f) => join(repoRoot, 'deploy/examples/devices', f)),
  ];
  assert.ok(files.length >= 13, files.join());
  // Pairs by the model name each Device references; names collide across KubeEdge's sets, so by file.
  const docs = files.map((f) => ({ f, objs: loadYaml(f) }));
  const byName = new Map<string, DeviceModel[]>();
  for (const { f, objs } of docs) {
    for (const o of objs) {
      if (o.kind !== 'DeviceModel') continue;
      assert.deepEqual(validateDeviceModel(o), [], f);
      const name = (o as unknown as DeviceModel).metadata.name!;
      byName.set(name, [...(byName.get(name) ?? []), o as unknown as DeviceModel]);
    }
  }
  let devices = 0;
  for (const { f, objs } of docs) {
    for (const o of objs) {
      if (o.kind !== 'Device') continue;
      devices++;
      assert.deepEqual(validateDevice(o, undefined), [], f);
      const ref = (o as unknown as Device).spec.deviceModelRef!.name;
      const candidates = byName.get(ref) ?? [];
      assert.ok(candidates.length > 0, `${f}: its model ${ref} is among the samples`);
      assert.ok(
        candidates.some((m) => validateDevice(o, m).length === 0),
        `${f} against ${ref}: ${JSON.stringify(candidates.map((m) => validateDevice(o, m)))}`,
      );
    }
  }
  assert.equal(devices, 8);
});
