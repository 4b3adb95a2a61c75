/**
 * The local control plane's validating step for devices.kubeedge.io, through the real kubectl
 * 1.35: the device CRDs (cloud/devicecontroller/crds.ts) installed, KubeEdge's own samples and
 * Ledge's examples applied and accepted; bad desired values, properties the model lacks and bad
 * models refused with 422 Invalid naming the field; a Device before its model accepted; a Device
 * that became invalid under a newer model can still be labelled and deleted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { deviceCrds } from '../../cloud/devicecontroller/crds.js';
import { KUBECTL_SKIP, kubectl, raw, requireKubectl, type KubectlResult } from '../apiserver/helpers.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { repoRoot } from '../helpers/process.js';

const skip = KUBECTL_SKIP;
const cp = useLocalControlPlane('ledge-devval-');
const samples = join(repoRoot, 'test/fixtures/kubeedge-samples');
const examples = join(repoRoot, 'deploy/examples/devices');
let cacheDir = '';

function k(args: string[], input?: string): Promise<KubectlResult> {
  return kubectl(requireKubectl(), cp.api.kubeconfigPath, args, { cacheDir, timeoutMs: 60_000, ...(input !== undefined ? { input } : {}) });
}

async function ok(args: string[], input?: string): Promise<string> {
  const r = await k(args, input);
  assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

async function refused(args: string[], input?: string): Promise<string> {
  const r = await k(args, input);
  assert.notEqual(r.code, 0, `kubectl ${args.join(' ')} was accepted: ${r.stdout}`);
  return r.stderr;
}

/** A YAML file's documents, the first one with `name` changed by `edit`. */
function edited(file: string, edit: (objs: Record<string, unknown>[]) => void): string {
  const objs = yaml.loadAll(readFileSync(file, 'utf8')) as Record<string, unknown>[];
  edit(objs);
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objs });
}

type Spec = { properties: { name: string; desired?: { value: string } }[] };
const specOf = (o: Record<string, unknown>) => o.spec as Spec;

let installed: Promise<void> | undefined;
/** The device CRDs, installed once (inside the first test: the control plane starts in the helper's before()). */
function setup(): Promise<void> {
  installed ??= (async () => {
    cacheDir = join(cp.api.kubeconfigPath, '..', 'kubectl-cache');
    mkdirSync(cacheDir, { recursive: true });
    await ok(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: deviceCrds }));
  })();
  return installed;
}

test("KubeEdge's sample YAMLs apply unchanged, model first or device first", { skip }, async () => {
  await setup();
  const pairs = [
    ['virtualdevice-model.yaml', 'virtualdevice-instance.yaml'],
    ['modbus-model.yaml', 'modbus-instance.yaml'],
    ['proposal-v1beta1-model.yaml', 'proposal-v1beta1-device.yaml'],
    ['temperature-model.yaml', 'temperature-instance.yaml'],
    ['mqtt-mapper-model.yaml', 'mqtt-mapper-device.yaml'],
  ] as const;
  for (const [i, [modelFile, deviceFile]] of pairs.entries()) {
    // Some names collide between KubeEdge's sets: one pair at a time, alternating the order.
    const order = i % 2 === 0 ? [modelFile, deviceFile] : [deviceFile, modelFile];
    for (const f of order) await ok(['apply', '-f', join(samples, f)]);
    const model = yaml.load(readFileSync(join(samples, modelFile), 'utf8')) as { metadata: { name: string } };
    const dev = yaml.load(readFileSync(join(samples, deviceFile), 'utf8')) as { metadata: { name: string } };
    assert.equal((await ok(['get', 'devicemodel', model.metadata.name, '-o', 'name'])).trim(), `devicemodel.devices.kubeedge.io/${model.metadata.name}`);
    assert.equal((await ok(['get', 'device', dev.metadata.name, '-o', 'name'])).trim(), `device.devices.kubeedge.io/${dev.metadata.name}`);
    // Applying again (a merge patch of an unchanged object) is accepted too.
    await ok(['apply', '-f', join(samples, deviceFile)]);
    await ok(['delete', '-f', join(samples, deviceFile), '-f', join(samples, modelFile)]);
  }
});

test("Ledge's examples apply as a directory; bad desired values are refused with the field named", { skip }, async () => {
  await setup();
  await ok(['apply', '-f', examples]);
  const names = (await ok(['get', 'devices', '-o', 'name'])).trim().split('\n').sort();
  assert.deepEqual(names, ['device.devices.kubeedge.io/mqtt-sensor-1', 'device.devices.kubeedge.io/thermostat-1', 'device.devices.kubeedge.io/virtual-sensor-1']);

  // Not a FLOAT, through kubectl apply.
  let err = await refused(
    ['apply', '-f', '-'],
    edited(join(examples, 'virtual.yaml'), (objs) => {
      specOf(objs[1]!).properties[0]!.desired = { value: 'abc' };
    }),
  );
  assert.match(err, /The Device "virtual-sensor-1" is invalid: spec\.properties\[0\]\.desired\.value: "abc" is not a FLOAT/);

  // Above the model's maximum, through kubectl patch (a JSON patch).
  err = await refused(['patch', 'device', 'thermostat-1', '--type', 'json', '-p', '[{"op":"replace","path":"/spec/properties/1/desired/value","value":"50"}]']);
  assert.match(err, /spec\.properties\[1\]\.desired\.value: "50" is above the maximum "35" of property "setpoint"/);
  // Within range: accepted.
  await ok(['patch', 'device', 'thermostat-1', '--type', 'json', '-p', '[{"op":"replace","path":"/spec/properties/1/desired/value","value":"23"}]']);

  // A desired value for a ReadOnly property, through kubectl edit's path (a merge patch).
  err = await refused([
    'patch',
    'device',
    'mqtt-sensor-1',
    '--type',
    'merge',
    '-p',
    JSON.stringify({
      spec: {
        properties: [
          { name: 'temperature', desired: { value: '20' } },
          { name: 'led', desired: { value: 'false' } },
        ],
      },
    }),
  ]);
  assert.match(err, /spec\.properties\[0\]\.desired\.value: property "temperature" is ReadOnly: a desired value cannot be set/);

  // A BOOLEAN that is not "true"/"false".
  err = await refused(['patch', 'device', 'thermostat-1', '--type', 'json', '-p', '[{"op":"replace","path":"/spec/properties/2/desired/value","value":"on"}]']);
  assert.match(err, /spec\.properties\[2\]\.desired\.value: "on" is not a BOOLEAN/);

  // Nothing refused was stored.
  const stored = JSON.parse(await ok(['get', 'device', 'thermostat-1', '-o', 'json'])) as Record<string, unknown>;
  assert.deepEqual(
    specOf(stored).properties.map((p) => p.desired?.value),
    [undefined, '23', 'false'],
  );
});

test('a property the model lacks, and a bad model, are refused as 422 Invalid with causes', { skip }, async () => {
  await setup();
  await ok(['apply', '-f', join(examples, 'virtual.yaml')]);
  const err = await refused(
    ['apply', '-f', '-'],
    edited(join(examples, 'virtual.yaml'), (objs) => {
      specOf(objs[1]!).properties.push({ name: 'pressure' });
    }),
  );
  assert.match(err, /spec\.properties\[2\]\.name: "pressure" is not a property of DeviceModel "virtual-temperature-humidity" \(its properties: temperature, humidity\)/);

  const badModel = {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'DeviceModel',
    metadata: { name: 'bad-model', namespace: 'default' },
    spec: {
      properties: [
        { name: 'a', type: 'INT', minimum: '10', maximum: '1' },
        { name: 'a', type: 'FLOAT' },
      ],
      protocolConfigData: { nested: { x: 1 } },
    },
  };
  const r = await raw(cp.api, 'POST', '/apis/devices.kubeedge.io/v1beta1/namespaces/default/devicemodels', JSON.stringify(badModel));
  assert.equal(r.status, 422, r.text);
  const status = r.json();
  assert.equal(status.reason, 'Invalid');
  assert.equal(status.details.kind, 'DeviceModel');
  assert.equal(status.details.group, 'devices.kubeedge.io');
  assert.deepEqual(
    status.details.causes.map((c: { field: string }) => c.field),
    ['spec.protocolConfigData.nested', 'spec.properties[0].minimum', 'spec.properties[1].name'],
  );
  assert.match(status.message, /^DeviceModel\.devices\.kubeedge\.io "bad-model" is invalid: /);
  assert.match(status.details.causes[2].message, /Duplicate value: "a"/);

  // The same through kubectl, which prints the Status message.
  const kerr = await refused(['create', '-f', '-'], JSON.stringify(badModel));
  assert.match(kerr, /spec\.properties\[0\]\.minimum: "10" is above the maximum "1"/);
  // Dry runs are checked too.
  const dry = await refused(['apply', '--dry-run=server', '-f', '-'], JSON.stringify(badModel));
  assert.match(dry, /is invalid/);
});

test('a Device before its model is accepted; once the model makes it invalid it can still be labelled and deleted', { skip }, async () => {
  await setup();
  const dev = {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'Device',
    metadata: { name: 'early', namespace: 'default' },
    spec: { deviceModelRef: { name: 'late-model' }, nodeName: 'edge-1', properties: [{ name: 'level', desired: { value: 'high' } }] },
  };
  await ok(['apply', '-f', '-'], JSON.stringify(dev));
  // Its shape is still checked without the model.
  const shapeErr = await refused(
    ['apply', '-f', '-'],
    JSON.stringify({ ...dev, metadata: { name: 'early-bad', namespace: 'default' }, spec: { ...dev.spec, nodeName: 'Edge_1' } }),
  );
  assert.match(shapeErr, /spec\.nodeName: "Edge_1" is not a valid node name/);

  await ok(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'devices.kubeedge.io/v1beta1',
      kind: 'DeviceModel',
      metadata: { name: 'late-model', namespace: 'default' },
      spec: { properties: [{ name: 'level', type: 'INT' }] },
    }),
  );
  // Metadata-only changes of the now-invalid Device go through.
  await ok(['label', 'device', 'early', 'room=kitchen']);
  await ok(['annotate', 'device', 'early', 'note=checked']);
  // A spec change is checked against the model.
  const err = await refused(['patch', 'device', 'early', '--type', 'json', '-p', '[{"op":"replace","path":"/spec/properties/0/desired/value","value":"higher"}]']);
  assert.match(err, /spec\.properties\[0\]\.desired\.value: "higher" is not an INT/);
  await ok(['patch', 'device', 'early', '--type', 'json', '-p', '[{"op":"replace","path":"/spec/properties/0/desired/value","value":"7"}]']);
  await ok(['delete', 'device', 'early']);
  await ok(['delete', 'devicemodel', 'late-model']);
});

test('objects of other groups are not touched by the device rules', { skip }, async () => {
  await setup();
  // A ConfigMap whose data looks like a bad Device is just a ConfigMap.
  await ok(['create', 'configmap', 'not-a-device', '--from-literal=spec=nope']);
  // DeviceStatus objects (written by CloudCore) are not validated as Devices.
  await ok(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'devices.kubeedge.io/v1beta1',
      kind: 'DeviceStatus',
      metadata: { name: 'thermostat-1', namespace: 'default' },
      status: { twins: [{ propertyName: 'setpoint', reported: { value: 'not a number' } }] },
    }),
  );
});
