// The Modbus TCP mapper: register encoding (KubeEdge's conventions), configData parsing (KubeEdge's
// field names), and the mapper end to end — SDK + Modbus driver against a Modbus TCP server
// simulated with modbus-serial's ServerTCP on 127.0.0.1 (ephemeral port) and a DeviceManagerService
// served in the test: readings reported from the registers, desired values written into coils and
// holding registers (at register and at UpdateDevice), the device going away and coming back.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import type { Device, DeviceModel } from '../../shared/devices/index.js';
import { deviceMapperClient, deviceToDmi, modelToDmi } from '../../shared/dmi/index.js';
import { DeviceInvalidError } from '../../shared/errors/index.js';
import { decodeBits, decodeRegisters, encodeBits, encodeRegisters, swapped } from '../../mappers/modbus/codec.js';
import { parseProtocolConfig, parseVisitor } from '../../mappers/modbus/config.js';
import { createModbusDriver, MODBUS_PROTOCOL } from '../../mappers/modbus/driver.js';
import { createMapper } from '../../mappers/sdk/index.js';
import { tempDir } from '../helpers/files.js';
import { exitCode, startProcess, within } from '../helpers/process.js';
import { FakeEdgeCore, recordingLogger } from './fakes.js';
import { SimulatedDevice } from '../helpers/modbus.js';

const v = (o: Partial<ReturnType<typeof parseVisitor>> = {}) => ({
  register: 'HoldingRegister' as const,
  offset: 0,
  limit: 1,
  scale: 1,
  isSwap: false,
  isRegisterSwap: false,
  ...o,
});

describe('Modbus register codec', () => {
  test('INT: unsigned big-endian words × scale, truncated', () => {
    assert.equal(decodeRegisters(Buffer.from([0x01, 0x02]), 'INT', v()), '258');
    assert.equal(decodeRegisters(Buffer.from([0xff, 0xfb]), 'INT', v()), '65531', 'unsigned, as KubeEdge reads it');
    assert.equal(decodeRegisters(Buffer.from([0x00, 0x01, 0x00, 0x00]), 'INT', v({ limit: 2 })), '65536');
    assert.equal(decodeRegisters(Buffer.from([0x00, 0xeb]), 'INT', v({ scale: 0.1 })), '23');
    assert.throws(() => decodeRegisters(Buffer.alloc(6), 'INT', v({ limit: 3 })), DeviceInvalidError);
  });

  test('FLOAT: one register × scale, or a float32 over two; swaps reorder words and bytes', () => {
    assert.equal(decodeRegisters(Buffer.from([0x00, 0xeb]), 'FLOAT', v({ scale: 0.1 })), '23.5');
    const f = Buffer.alloc(4);
    f.writeFloatBE(1013.25);
    assert.equal(decodeRegisters(f, 'FLOAT', v({ limit: 2 })), '1013.25');
    // The device sends the low word first (isRegisterSwap) with bytes swapped in each word (isSwap).
    const wire = Buffer.from([f[3]!, f[2]!, f[1]!, f[0]!]);
    assert.equal(decodeRegisters(wire, 'FLOAT', v({ limit: 2, isRegisterSwap: true, isSwap: true })), '1013.25');
    assert.deepEqual([...swapped(Buffer.from([1, 2, 3, 4]), { isRegisterSwap: true, isSwap: false })], [3, 4, 1, 2]);
    assert.deepEqual([...swapped(Buffer.from([1, 2, 3, 4]), { isRegisterSwap: false, isSwap: true })], [2, 1, 4, 3]);
    const d = Buffer.alloc(8);
    d.writeDoubleBE(-12.125);
    assert.equal(decodeRegisters(d, 'DOUBLE', v({ limit: 4 })), '-12.125');
    const small = Buffer.alloc(4);
    small.writeFloatBE(0.1);
    assert.equal(decodeRegisters(small, 'FLOAT', v({ limit: 2 })), '0.1', 'float32 noise removed');
  });

  test('BOOLEAN is "any bit set" (not the high byte only); STRING the bytes as text', () => {
    assert.equal(decodeRegisters(Buffer.from([0x00, 0x01]), 'BOOLEAN', v()), 'true');
    assert.equal(decodeRegisters(Buffer.from([0x00, 0x00]), 'BOOLEAN', v()), 'false');
    assert.equal(decodeRegisters(Buffer.from('ok\0\0'), 'STRING', v({ limit: 2 })), 'ok');
  });

  test('coils: BOOLEAN the first bit, INT the bits with the first lowest', () => {
    assert.equal(decodeBits([true, false, false, false, false, false, false, false], 'BOOLEAN', v({ register: 'CoilRegister' })), 'true');
    assert.equal(decodeBits([true, false, true, false, false, false, false, false], 'INT', v({ register: 'CoilRegister', limit: 3 })), '5');
    assert.equal(decodeBits([true, true], 'INT', v({ register: 'CoilRegister', limit: 1 })), '1', 'only limit bits count');
    assert.deepEqual(encodeBits('true', 'BOOLEAN', v({ register: 'CoilRegister' })), [true]);
    assert.deepEqual(encodeBits('5', 'INT', v({ register: 'CoilRegister', limit: 3 })), [true, false, true]);
    assert.throws(() => encodeBits('8', 'INT', v({ register: 'CoilRegister', limit: 3 })), DeviceInvalidError);
  });

  test('writes divide by scale, so that reading back gives the value written', () => {
    for (const [value, type, visitor] of [
      ['23.5', 'FLOAT', v({ scale: 0.1 })],
      ['1013.25', 'FLOAT', v({ limit: 2, isRegisterSwap: true })],
      ['-12.125', 'DOUBLE', v({ limit: 4, isSwap: true })],
      ['70000', 'INT', v({ limit: 2 })],
      ['55', 'INT', v()],
      ['true', 'BOOLEAN', v()],
      ['hi', 'STRING', v({ limit: 2 })],
    ] as const) {
      const words = encodeRegisters(value, type, visitor);
      assert.equal(words.length, visitor.limit);
      const raw = Buffer.alloc(words.length * 2);
      for (const [i, w] of words.entries()) raw.writeUInt16BE(w, i * 2);
      assert.equal(decodeRegisters(raw, type, visitor), value, `${type} ${value}`);
    }
    assert.throws(() => encodeRegisters('-5', 'INT', v()), DeviceInvalidError, 'negative: would read back unsigned');
    assert.throws(() => encodeRegisters('70000', 'INT', v()), DeviceInvalidError, 'does not fit one register');
    assert.throws(() => encodeRegisters('warm', 'FLOAT', v()), DeviceInvalidError);
  });
});

describe('Modbus configData', () => {
  test('protocol: flat {ip, port, slaveID, timeout}; legacy nested tcp {ip, port} (object or its JSON string)', () => {
    assert.deepEqual(parseProtocolConfig({ ip: '10.0.0.5', port: 1502, slaveID: 3, timeout: 500 }), { host: '10.0.0.5', port: 1502, slaveId: 3, timeoutMs: 500 });
    assert.deepEqual(parseProtocolConfig({ ip: '10.0.0.5' }), { host: '10.0.0.5', port: 502, slaveId: 1, timeoutMs: 1000 });
    assert.deepEqual(parseProtocolConfig({ tcp: { ip: 'plc.local', port: 5020 }, slaveID: '2' }), { host: 'plc.local', port: 5020, slaveId: 2, timeoutMs: 1000 });
    assert.deepEqual(parseProtocolConfig({ tcp: '{"ip":"plc.local","port":5020}' }), { host: 'plc.local', port: 5020, slaveId: 1, timeoutMs: 1000 });
    assert.throws(() => parseProtocolConfig({ serialPort: '/dev/ttyS0', baudRate: 9600 }), /Modbus RTU .* not supported/);
    assert.throws(() => parseProtocolConfig({}), /ip is missing/);
    assert.throws(() => parseProtocolConfig({ ip: 'x', port: 70000 }), DeviceInvalidError);
    assert.throws(() => parseProtocolConfig({ ip: 'x', slaveID: 1.5 }), DeviceInvalidError);
  });

  test('visitors: KubeEdge\'s fields, numbers as numbers or strings (the e2e sample\'s offset: "2")', () => {
    assert.deepEqual(parseVisitor({ register: 'CoilRegister', offset: '2', limit: '1', scale: '1', isSwap: true, isRegisterSwap: true }), {
      register: 'CoilRegister',
      offset: 2,
      limit: 1,
      scale: 1,
      isSwap: true,
      isRegisterSwap: true,
    });
    // float32 as EdgeCore sends 0.1.
    assert.equal(parseVisitor({ register: 'InputRegister', offset: 0, scale: Math.fround(0.1) }).scale, 0.1);
    assert.throws(() => parseVisitor({ register: 'Holding', offset: 0 }), /must be one of/);
    assert.throws(() => parseVisitor({ register: 'HoldingRegister' }), /offset is missing/);
    assert.throws(() => parseVisitor({ register: 'HoldingRegister', offset: 0, limit: 126 }), DeviceInvalidError);
    assert.throws(() => parseVisitor({ register: 'HoldingRegister', offset: 0, scale: 0 }), DeviceInvalidError);
  });
});

const model: DeviceModel = {
  metadata: { name: 'plc-model', namespace: 'default' },
  spec: {
    protocol: MODBUS_PROTOCOL,
    properties: [
      { name: 'temperature', type: 'FLOAT', accessMode: 'ReadOnly', unit: '°C' },
      { name: 'pressure', type: 'FLOAT', accessMode: 'ReadOnly' },
      { name: 'setpoint', type: 'INT', accessMode: 'ReadWrite', minimum: '0', maximum: '100' },
      { name: 'pump', type: 'BOOLEAN', accessMode: 'ReadWrite' },
      { name: 'door', type: 'BOOLEAN', accessMode: 'ReadOnly' },
      { name: 'counter', type: 'INT', accessMode: 'ReadWrite' },
    ],
  },
};

function plc(port: number, setpoint: string, pump: string): Device {
  const visitor = (configData: Record<string, unknown>) => ({ protocolName: MODBUS_PROTOCOL, configData });
  return {
    metadata: { name: 'plc-1', namespace: 'default' },
    spec: {
      deviceModelRef: { name: 'plc-model' },
      nodeName: 'edge-1',
      protocol: { protocolName: MODBUS_PROTOCOL, configData: { ip: '127.0.0.1', port, slaveID: 1, timeout: 1000 } },
      properties: [
        { name: 'temperature', collectCycle: 20, reportToCloud: true, visitors: visitor({ register: 'InputRegister', offset: 0, limit: 1, scale: 0.1 }) },
        { name: 'pressure', collectCycle: 20, reportToCloud: true, visitors: visitor({ register: 'HoldingRegister', offset: 10, limit: 2, isRegisterSwap: true }) },
        { name: 'setpoint', collectCycle: 20, reportToCloud: true, desired: { value: setpoint }, visitors: visitor({ register: 'HoldingRegister', offset: 20, limit: 1 }) },
        { name: 'pump', collectCycle: 20, reportToCloud: true, desired: { value: pump }, visitors: visitor({ register: 'CoilRegister', offset: 2, limit: 1 }) },
        { name: 'door', collectCycle: 20, reportToCloud: true, visitors: visitor({ register: 'DiscreteInputRegister', offset: 3, limit: 1 }) },
        // Written into an input register: refused (read-only in Modbus), reported as read.
        { name: 'counter', collectCycle: 20, reportToCloud: true, desired: { value: '9' }, visitors: visitor({ register: 'InputRegister', offset: 30, limit: 1 }) },
      ],
      stateReport: { reportToCloud: true, reportCycle: 20 },
    },
  };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('Modbus mapper against a simulated Modbus TCP device', () => {
  test('reports register values, writes desired values to coils and holding registers, recovers from the device going away', async () => {
    const sim = new SimulatedDevice();
    await sim.start();
    cleanups.push(() => sim.stop());
    sim.input[0] = 235;
    const pressure = Buffer.alloc(4);
    pressure.writeFloatBE(1013.25);
    // isRegisterSwap: the device holds the low word first.
    sim.holding[10] = pressure.readUInt16BE(2);
    sim.holding[11] = pressure.readUInt16BE(0);
    sim.discrete[3] = true;
    sim.input[30] = 4;

    const dir = tempDir('ledge-modbus-');
    cleanups.push(() => dir.cleanup());
    const edge = new FakeEdgeCore(join(dir.path, 'dmi.sock'));
    edge.response = { modelList: [modelToDmi(model)], deviceList: [deviceToDmi(plc(sim.port, '55', 'true'), model)] };
    await edge.serve();
    cleanups.push(() => edge.close());
    const { log, lines, waitFor: logged } = recordingLogger();
    const mapperSocket = join(dir.path, 'modbus.sock');
    const mapper = createMapper({
      name: 'modbus-mapper',
      version: 'test',
      protocol: MODBUS_PROTOCOL,
      socketPath: mapperSocket,
      dmiSocketPath: edge.socketPath,
      driver: createModbusDriver(log),
      log,
      minCycleMs: 1,
      deviceRetryBaseMs: 5,
      deviceRetryMaxMs: 20,
      reportRetryBaseMs: 5,
      reportRetryMaxMs: 20,
    });
    cleanups.push(() => mapper.stop());
    await within(mapper.start(), 10_000, 'mapper start');

    // Desired values written at register: holding register 20 and coil 2.
    await edge.waitFor(() => edge.reported('plc-1', 'setpoint').includes('55') && edge.reported('plc-1', 'pump').includes('true'), 'written values read back');
    assert.equal(sim.holding[20], 55);
    assert.equal(sim.coils[2], true);
    assert.equal(edge.reported('plc-1', 'temperature').at(-1), '23.5');
    assert.equal(edge.reported('plc-1', 'pressure').at(-1), '1013.25');
    assert.equal(edge.reported('plc-1', 'door').at(-1), 'true');
    assert.equal(edge.reported('plc-1', 'counter').at(-1), '4');
    assert.equal(sim.input[30], 4, 'input registers are never written');
    const refusedWrite = () => lines.filter((l) => l.msg.startsWith('desired value of counter not written'));
    await logged(() => refusedWrite().length > 0, 'the refused write logged');
    assert.match(refusedWrite()[0]!.msg, /read-only in Modbus/);
    await edge.waitFor(() => edge.states.some((s) => s.deviceName === 'plc-1' && s.state === 'ok'), 'state ok');

    // The device's registers change → the reports follow.
    sim.input[0] = 198;
    sim.discrete[3] = false;
    await edge.waitFor(() => edge.reported('plc-1', 'temperature').at(-1) === '19.8' && edge.reported('plc-1', 'door').at(-1) === 'false', 'new register values reported');

    // A new desired value (UpdateDevice) is written into the registers.
    const client = deviceMapperClient(mapperSocket, { timeoutMs: 5000 });
    cleanups.push(() => client.close());
    await client.updateDevice({ device: deviceToDmi(plc(sim.port, '70', 'false'), model) });
    await edge.waitFor(() => sim.holding[20] === 70 && sim.coils[2] === false && edge.reported('plc-1', 'setpoint').at(-1) === '70', 'holding register 20 = 70, coil 2 off');

    // The device goes away: state disconnected, read failures logged once per property; it comes back on the same port.
    const port = sim.port;
    await sim.stop();
    await edge.waitFor(() => edge.states.at(-1)?.state === 'disconnected', 'state disconnected');
    const failures = () => lines.filter((l) => l.msg.startsWith('cannot read temperature'));
    await logged(() => failures().length === 1, 'the read failure logged');
    const reportsWhileDown = edge.reported('plc-1', 'temperature').length;
    sim.input[0] = 250;
    await sim.start(port);
    await edge.waitFor(
      () => edge.reported('plc-1', 'temperature').length > reportsWhileDown && edge.reported('plc-1', 'temperature').at(-1) === '25',
      'readings again after the device came back',
    );
    await edge.waitFor(() => edge.states.at(-1)?.state === 'ok', 'state ok again');
    assert.equal(failures().length, 1, 'one line for the whole outage');
    assert.equal(refusedWrite().length, 1, 'the refused write: logged once, not retried');
    assert.ok(lines.some((l) => l.msg === 'temperature readable again'));
  });

  test('a Modbus RTU device (serialPort) is refused once, clearly, and the mapper keeps serving', async () => {
    const dir = tempDir('ledge-modbus-');
    cleanups.push(() => dir.cleanup());
    const edge = new FakeEdgeCore(join(dir.path, 'dmi.sock'));
    const rtu = plc(502, '1', 'true');
    rtu.spec.protocol = { protocolName: MODBUS_PROTOCOL, configData: { slaveID: 1, serialPort: '/dev/ttyS0', baudRate: 9600 } };
    edge.response = { modelList: [modelToDmi(model)], deviceList: [deviceToDmi(rtu, model)] };
    await edge.serve();
    cleanups.push(() => edge.close());
    const { log, lines, waitFor: logged } = recordingLogger();
    const mapper = createMapper({
      name: 'modbus-mapper',
      version: 'test',
      protocol: MODBUS_PROTOCOL,
      socketPath: join(dir.path, 'modbus.sock'),
      dmiSocketPath: edge.socketPath,
      driver: createModbusDriver(log),
      log,
      deviceRetryBaseMs: 5,
      deviceRetryMaxMs: 20,
    });
    cleanups.push(() => mapper.stop());
    await within(mapper.start(), 10_000, 'mapper start');
    await logged(() => lines.some((l) => /Modbus RTU .* not supported/.test(l.msg)), 'the refusal');
    assert.equal(mapper.devices()[0]?.state, 'failed');
    assert.equal(lines.filter((l) => /Modbus RTU/.test(l.msg)).length, 1);
  });
});

describe('Modbus mapper command', () => {
  test('runs under tsx and prints its flags', async () => {
    const proc = startProcess(['--import', 'tsx', 'mappers/modbus/main.ts', '--help'], {}, 'modbus');
    assert.equal(await exitCode(proc, 30_000, 'help'), 0);
    assert.match(proc.output(), /--dmi-socket/);
    assert.match(proc.output(), /\/etc\/kubeedge\/modbus\.sock/);
  });
});
