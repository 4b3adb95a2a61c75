// The virtual mapper: its driver's values (random below the desired value, KubeEdge's
// virtualdevice behaviour) with an injected random source, and the real command
// (mappers/virtual/main.ts in its own process) registering with a DeviceManagerService served in
// the test, reporting values in range, and stopping cleanly on SIGTERM.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Device, DeviceModel, DeviceProperty, ModelProperty } from '../../shared/devices/index.js';
import { deviceToDmi, modelToDmi } from '../../shared/dmi/index.js';
import { DeviceInvalidError } from '../../shared/errors/index.js';
import { driverProperty } from '../../mappers/sdk/index.js';
import { createVirtualDriver, VIRTUAL_PROTOCOL } from '../../mappers/virtual/driver.js';
import { tempDir } from '../helpers/files.js';
import { exitCode, startProcess } from '../helpers/process.js';
import { FakeEdgeCore } from './fakes.js';

const model: DeviceModel = {
  metadata: { name: 'climate-model', namespace: 'default' },
  spec: {
    protocol: VIRTUAL_PROTOCOL,
    properties: [
      { name: 'temperature', type: 'INT', accessMode: 'ReadWrite', maximum: '100' },
      { name: 'humidity', type: 'FLOAT', accessMode: 'ReadWrite', minimum: '10', maximum: '90' },
      { name: 'random-float', type: 'FLOAT', accessMode: 'ReadOnly' },
      { name: 'fan', type: 'BOOLEAN', accessMode: 'ReadWrite' },
      { name: 'label', type: 'STRING', accessMode: 'ReadWrite' },
    ],
  },
};
const props = new Map<string, ModelProperty>(model.spec.properties!.map((p) => [p.name, p]));
const prop = (name: string, spec: Partial<DeviceProperty> = {}) => driverProperty({ name, ...spec }, props.get(name));

describe('virtual driver', () => {
  test('INT reads an integer in [0, desired); before any desired value the model maximum bounds it', async () => {
    let r = 0;
    const dev = await createVirtualDriver({ random: () => r }).init({ metadata: { name: 'd' }, spec: {} }, model);
    const temp = prop('temperature');
    assert.equal(await dev.read(temp, {}), '0');
    r = 0.999999;
    assert.equal(await dev.read(temp, {}), '99', 'model maximum 100 → below 100');
    await dev.write(temp, {}, '30');
    assert.equal(await dev.read(temp, {}), '29', 'desired 30 is the ceiling');
    r = 0;
    assert.equal(await dev.read(temp, {}), '0');
    for (let i = 0; i < 50; i++) {
      r = Math.random();
      const v = Number(await dev.read(temp, {}));
      assert.ok(Number.isInteger(v) && v >= 0 && v < 30, `${v} in [0, 30)`);
    }
  });

  test('FLOAT reads a number in [minimum, desired); without maximum and desired: [0, 1) like KubeEdge', async () => {
    let r = 0;
    const dev = await createVirtualDriver({ random: () => r }).init({ metadata: { name: 'd' }, spec: {} }, model);
    const humidity = prop('humidity');
    assert.equal(await dev.read(humidity, {}), '10', 'the model minimum is the floor');
    await dev.write(humidity, {}, '60.5');
    r = 0.9999999;
    const top = Number(await dev.read(humidity, {}));
    assert.ok(top < 60.5 && top > 60, `${top} just below 60.5`);
    for (let i = 0; i < 50; i++) {
      r = Math.random();
      const v = Number(await dev.read(humidity, {}));
      assert.ok(v >= 10 && v < 60.5, `${v} in [10, 60.5)`);
    }
    const free = prop('random-float');
    r = 0.5;
    assert.equal(await dev.read(free, {}), '0.5');
  });

  test('BOOLEAN is random, STRING echoes what was written; a non-number for a numeric property is refused', async () => {
    let r = 0.1;
    const dev = await createVirtualDriver({ random: () => r }).init({ metadata: { name: 'd' }, spec: {} }, model);
    assert.equal(await dev.read(prop('fan'), {}), 'true');
    r = 0.9;
    assert.equal(await dev.read(prop('fan'), {}), 'false');
    await dev.write(prop('label'), {}, 'kitchen');
    assert.equal(await dev.read(prop('label'), {}), 'kitchen');
    await assert.rejects(dev.write(prop('temperature'), {}, 'warm'), DeviceInvalidError);
    await assert.rejects(dev.write(prop('humidity'), {}, ''), DeviceInvalidError);
    assert.equal(await dev.state(), 'ok');
  });

  test('the type comes from the visitor dataType when the model has none (mapper-framework samples)', async () => {
    const dev = await createVirtualDriver({ random: () => 0.5 }).init({ metadata: { name: 'd' }, spec: {} }, undefined);
    const p = driverProperty({ name: 'random-int', visitors: { configData: { dataType: 'int' } } }, { name: 'random-int' });
    assert.equal(p.type, 'INT');
    await dev.write(p, {}, '10');
    assert.equal(await dev.read(p, {}), '5');
  });
});

describe('virtual mapper command', () => {
  test('registers, reports values below the desired values, stops on SIGTERM and removes its socket', async () => {
    const dir = tempDir('ledge-virtual-');
    const edge = new FakeEdgeCore(join(dir.path, 'dmi.sock'));
    const device: Device = {
      metadata: { name: 'climate-1', namespace: 'default' },
      spec: {
        deviceModelRef: { name: 'climate-model' },
        protocol: { protocolName: VIRTUAL_PROTOCOL, configData: { deviceID: 1 } },
        properties: [
          { name: 'temperature', desired: { value: '30' }, collectCycle: 20, reportToCloud: true, visitors: { protocolName: VIRTUAL_PROTOCOL, configData: { dataType: 'int' } } },
          { name: 'humidity', desired: { value: '60' }, collectCycle: 20, reportToCloud: true, visitors: { protocolName: VIRTUAL_PROTOCOL, configData: { dataType: 'float' } } },
        ],
      },
    };
    edge.response = { modelList: [modelToDmi(model)], deviceList: [deviceToDmi(device, model)] };
    await edge.serve();
    const socket = join(dir.path, 'virtualdevice.sock');
    const proc = startProcess(['--import', 'tsx', 'mappers/virtual/main.ts', '--dmi-socket', edge.socketPath, '--socket', socket, '--name', 'virtual-test'], {}, 'virtual');
    try {
      await edge.waitFor(() => edge.reported('climate-1', 'temperature').length >= 10 && edge.reported('climate-1', 'humidity').length >= 10, 'ten reports of each', 30_000);
      assert.equal(edge.registers[0]?.mapper?.protocol, VIRTUAL_PROTOCOL);
      assert.equal(edge.registers[0]?.mapper?.name, 'virtual-test');
      for (const v of edge.reported('climate-1', 'temperature')) assert.ok(/^\d+$/.test(v) && Number(v) >= 0 && Number(v) < 30, `temperature ${v} in [0, 30)`);
      for (const v of edge.reported('climate-1', 'humidity')) assert.ok(Number(v) >= 10 && Number(v) < 60, `humidity ${v} in [10, 60)`);
      assert.ok(existsSync(socket));
      proc.child.kill('SIGTERM');
      assert.equal(await exitCode(proc, 30_000, 'the mapper to stop'), 0);
      assert.equal(existsSync(socket), false, 'socket removed');
    } finally {
      await proc.kill9();
      await edge.close();
      dir.cleanup();
    }
  });
});
