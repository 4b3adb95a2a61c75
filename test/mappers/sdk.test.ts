// The mapper SDK against a DeviceManagerService served with shared/dmi in the test (real unix
// sockets, real gRPC framing), with a recording driver: registration, device start, reports and
// their twins, desired writes at register and update, removal, the DMI server being down at
// start, report failures and refusals, state reports, GetDevice, models arriving late.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import type { Device, DeviceModel } from '../../shared/devices/index.js';
import { deviceMapperClient, deviceToDmi, mapperAddress, modelToDmi } from '../../shared/dmi/index.js';
import { DmiError } from '../../shared/errors/index.js';
import { createMapper, effectiveCycle, type Mapper, type MapperOptions } from '../../mappers/sdk/index.js';
import { tempDir } from '../helpers/files.js';
import { within } from '../helpers/process.js';
import { FakeEdgeCore, RecordingDriver, recordingLogger, Waiter } from './fakes.js';

const model: DeviceModel = {
  metadata: { name: 'thermo-model', namespace: 'default' },
  spec: {
    protocol: 'testProtocol',
    properties: [
      { name: 'temperature', type: 'FLOAT', accessMode: 'ReadOnly', minimum: '-40', maximum: '85' },
      { name: 'setpoint', type: 'INT', accessMode: 'ReadWrite', minimum: '0', maximum: '100' },
      { name: 'label', type: 'STRING', accessMode: 'ReadWrite' },
    ],
  },
};

function device(name: string, overrides: { setpoint?: string; cycle?: number; stateReport?: boolean } = {}): Device {
  return {
    metadata: { name, namespace: 'default' },
    spec: {
      deviceModelRef: { name: 'thermo-model' },
      nodeName: 'edge-1',
      protocol: { protocolName: 'testProtocol', configData: { address: name } },
      properties: [
        { name: 'temperature', collectCycle: overrides.cycle ?? 20, reportToCloud: true, visitors: { protocolName: 'testProtocol', configData: { channel: 1 } } },
        {
          name: 'setpoint',
          collectCycle: overrides.cycle ?? 20,
          reportToCloud: true,
          desired: { value: overrides.setpoint ?? '42', metadata: { type: 'integer' } },
          visitors: { protocolName: 'testProtocol', configData: { channel: 2 } },
        },
        // Not reported (reportToCloud false), but its desired value is still written.
        { name: 'label', desired: { value: 'hall' }, visitors: { protocolName: 'testProtocol', configData: { channel: 3 } } },
      ],
      ...(overrides.stateReport ? { stateReport: { reportToCloud: true, reportCycle: 20 } } : {}),
    },
  };
}

/** Short cycles and retries, so waits are quick; every wait still has a deadline. */
const fast: Partial<MapperOptions> = {
  minCycleMs: 1,
  registerRetryBaseMs: 5,
  registerRetryMaxMs: 20,
  reportRetryBaseMs: 5,
  reportRetryMaxMs: 20,
  deviceRetryBaseMs: 5,
  deviceRetryMaxMs: 20,
  callTimeoutMs: 2000,
};

interface Setup {
  edge: FakeEdgeCore;
  driver: RecordingDriver;
  mapper: Mapper;
  lines: ReturnType<typeof recordingLogger>['lines'];
  logged: ReturnType<typeof recordingLogger>['waitFor'];
  mapperSocket: string;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(devices: Device[], opts: { serve?: boolean; mapper?: Partial<MapperOptions> } = {}): Promise<Setup> {
  const dir = tempDir('ledge-mapper-');
  cleanups.push(() => dir.cleanup());
  const edge = new FakeEdgeCore(join(dir.path, 'dmi.sock'));
  edge.response = { modelList: [modelToDmi(model)], deviceList: devices.map((d) => deviceToDmi(d, model)) };
  if (opts.serve !== false) await edge.serve();
  cleanups.push(() => edge.close());
  const driver = new RecordingDriver();
  driver.values.set('dev-1/temperature', '21.5');
  driver.values.set('dev-1/setpoint', '42');
  driver.values.set('dev-2/temperature', '19');
  driver.values.set('dev-2/setpoint', '7');
  const { log, lines, waitFor: logged } = recordingLogger();
  const mapperSocket = join(dir.path, 'test.sock');
  const mapper = createMapper({
    name: 'test-mapper',
    version: '1.2.3',
    protocol: 'testProtocol',
    socketPath: mapperSocket,
    dmiSocketPath: edge.socketPath,
    driver,
    log,
    ...fast,
    ...opts.mapper,
  });
  cleanups.push(() => mapper.stop());
  return { edge, driver, mapper, lines, logged, mapperSocket };
}

describe('mapper SDK', () => {
  test('registers withData, starts the returned devices, writes desired values, reports twins per cycle', async () => {
    const { edge, driver, mapper, mapperSocket } = await setup([device('dev-1')]);
    await within(mapper.start(), 10_000, 'mapper start');
    assert.equal(mapper.registered, true);

    // MapperRegister as mapper-framework sends it: withData, protocol, the socket path as address.
    assert.equal(edge.registers.length, 1);
    const reg = edge.registers[0]!;
    assert.equal(reg.withData, true);
    assert.equal(reg.mapper?.name, 'test-mapper');
    assert.equal(reg.mapper?.version, '1.2.3');
    assert.equal(reg.mapper?.protocol, 'testProtocol');
    assert.equal(reg.mapper?.apiVersion, 'v1beta1');
    assert.equal(mapperAddress(reg.mapper), mapperSocket);

    // init got the device with its protocol configData decoded.
    await driver.waitFor(() => driver.inits.length === 1, 'driver init');
    assert.deepEqual(driver.inits[0]!.spec.protocol?.configData, { address: 'dev-1' });
    // Desired values of ReadWrite properties are written, reported or not; ReadOnly ones are not.
    await driver.waitFor(() => driver.writes.length === 2, 'desired writes');
    assert.deepEqual(
      [...driver.writes].sort((a, b) => a.property.localeCompare(b.property)),
      [
        { device: 'dev-1', property: 'label', value: 'hall' },
        { device: 'dev-1', property: 'setpoint', value: '42' },
      ],
    );

    // Reports: both reported properties, with value and metadata {timestamp, type}; several cycles.
    await edge.waitFor(() => edge.reported('dev-1', 'temperature').length >= 3 && edge.reported('dev-1', 'setpoint').length >= 3, 'three cycles of reports');
    assert.equal(edge.reported('dev-1', 'label').length, 0, 'reportToCloud false: not reported');
    const last = edge.statusesOf('dev-1').at(-1)!;
    assert.equal(last.deviceNamespace, 'default');
    const twins = new Map((last.reportedDevice?.twins ?? []).map((t) => [t.propertyName, t]));
    // Properties sharing a collect cycle travel in one call.
    assert.equal(twins.size, 2);
    const temp = twins.get('temperature')!;
    assert.equal(temp.reported?.value, '21.5');
    assert.equal(temp.reported?.metadata?.type, 'float');
    assert.match(temp.reported?.metadata?.timestamp ?? '', /^\d{13}$/);
    assert.equal(temp.observedDesired, undefined, 'no desired value: no observedDesired');
    const setpoint = twins.get('setpoint')!;
    assert.equal(setpoint.reported?.value, '42');
    // The desired value's own metadata.type wins (KubeEdge's choice); observedDesired = what was written.
    assert.equal(setpoint.reported?.metadata?.type, 'integer');
    assert.equal(setpoint.observedDesired?.value, '42');

    // The values change at the device → the next reports carry them.
    driver.values.set('dev-1/temperature', '22.25');
    await edge.waitFor(() => edge.reported('dev-1', 'temperature').includes('22.25'), 'new reading reported');
    assert.equal(mapper.devices()[0]!.state, 'running');
  });

  test('a RegisterDevice that arrives before the MapperRegister answer waits for its model, and starts once the answer brings it', async () => {
    // The answer has the model but not the device: EdgeCore sent that one on its own, just before.
    const { edge, driver, mapper, mapperSocket } = await setup([]);
    // EdgeCore hands the device over while the mapper's registration is still being answered.
    edge.beforeRegisterAnswer = async () => {
      const client = deviceMapperClient(mapperSocket, { timeoutMs: 2000 });
      try {
        await client.registerDevice({ device: deviceToDmi(device('dev-1'), model) });
      } finally {
        client.close();
      }
    };
    await within(mapper.start(), 10_000, 'mapper start');
    await edge.waitFor(() => edge.reported('dev-1', 'temperature').length >= 1, 'the device reporting');
    await driver.waitFor(() => driver.writes.some((w) => w.property === 'setpoint' && w.value === '42'), 'its desired value written');
    assert.equal(mapper.devices()[0]!.state, 'running');
  });

  test('UpdateDevice restarts the device and writes the new desired value', async () => {
    const { edge, driver, mapper, mapperSocket } = await setup([device('dev-1')]);
    await within(mapper.start(), 10_000, 'mapper start');
    await driver.waitFor(() => driver.writes.some((w) => w.property === 'setpoint' && w.value === '42'), 'first desired write');
    const client = deviceMapperClient(mapperSocket, { timeoutMs: 5000 });
    cleanups.push(() => client.close());

    await client.updateDevice({ device: deviceToDmi(device('dev-1', { setpoint: '55' }), model) });
    await driver.waitFor(() => driver.writes.some((w) => w.property === 'setpoint' && w.value === '55'), 'new desired value written');
    assert.deepEqual(driver.stops, ['dev-1'], 'the old driver device was stopped before the restart');
    assert.equal(driver.inits.length, 2);
    // Reports now carry the new observedDesired.
    await edge.waitFor(
      () => edge.statusesOf('dev-1').some((s) => s.reportedDevice?.twins?.some((t) => t.propertyName === 'setpoint' && t.observedDesired?.value === '55')),
      'observedDesired 55 reported',
    );

    // The same spec again (EdgeCore re-sending after a restart of its own) changes nothing.
    await client.registerDevice({ device: deviceToDmi(device('dev-1', { setpoint: '55' }), model) });
    assert.equal(driver.inits.length, 2, 'same spec: not restarted');
    // RegisterDevice with another spec for a held device restarts it (mapper-framework would ignore it).
    await client.registerDevice({ device: deviceToDmi(device('dev-1', { setpoint: '60' }), model) });
    await driver.waitFor(() => driver.writes.some((w) => w.property === 'setpoint' && w.value === '60'), 'desired value of the re-registered spec written');
  });

  test('RemoveDevice stops the device: no report starts after the call returned', async () => {
    const { edge, driver, mapper, mapperSocket } = await setup([device('dev-1'), device('dev-2')]);
    await within(mapper.start(), 10_000, 'mapper start');
    await edge.waitFor(() => edge.statusesOf('dev-1').length >= 2 && edge.statusesOf('dev-2').length >= 2, 'both devices reporting');
    const client = deviceMapperClient(mapperSocket, { timeoutMs: 5000 });
    cleanups.push(() => client.close());

    await client.removeDevice({ deviceName: 'dev-1', deviceNamespace: 'default' });
    const atRemoval = edge.statusesOf('dev-1').length;
    assert.ok(driver.stops.includes('dev-1'), 'driver stop() called');
    const dev2 = edge.statusesOf('dev-2').length;
    // Several more cycles of the other device: the removed one stays silent.
    await edge.waitFor(() => edge.statusesOf('dev-2').length >= dev2 + 5, 'dev-2 keeps reporting');
    assert.equal(edge.statusesOf('dev-1').length, atRemoval);
    assert.deepEqual(
      mapper.devices().map((d) => d.name),
      ['dev-2'],
    );
    // Removing an unknown device is fine (idempotent).
    await client.removeDevice({ deviceName: 'dev-1', deviceNamespace: 'default' });
  });

  test('DMI socket missing at start: retried with backoff, logged once per window, then registers', async () => {
    const { edge, mapper, lines, logged } = await setup([device('dev-1')], { serve: false });
    const started = mapper.start();
    // It keeps trying while EdgeCore is down: several attempts, one log line.
    const waiting = () => lines.filter((l) => l.msg.startsWith("waiting for EdgeCore's DMI socket"));
    await logged(() => waiting().length > 0, 'the waiting line');
    await logged(() => lines.some((l) => l.msg === 'mapper serving'), 'serving');
    assert.equal(waiting().length, 1);
    assert.equal(waiting()[0]!.grpcStatus, 14, 'UNAVAILABLE');
    assert.equal(mapper.registered, false);
    await edge.serve();
    await within(started, 10_000, 'registration after EdgeCore came up');
    assert.equal(mapper.registered, true);
    assert.equal(waiting().length, 1, 'one line while waiting (the next only after registerLogEveryMs)');
    assert.ok(lines.some((l) => l.msg === 'EdgeCore answered; registered' && Number(l.attempts) >= 2));
    await edge.waitFor(() => edge.statusesOf('dev-1').length >= 1, 'device reporting');
  });

  test('while EdgeCore stays down, the waiting line repeats once per registerLogEveryMs (injected clock)', async () => {
    let now = 1_000_000;
    let sleeps = 0;
    const ticks = new Waiter();
    const clock = {
      now: () => now,
      setTimeout: (fn: () => void, ms: number) => {
        sleeps++;
        ticks.notify();
        return setTimeout(fn, ms);
      },
      clearTimeout: (h: unknown) => clearTimeout(h as NodeJS.Timeout),
    };
    const { edge, mapper, lines, logged } = await setup([], { serve: false, mapper: { clock } });
    const waiting = () => lines.filter((l) => l.msg.startsWith("waiting for EdgeCore's DMI socket"));
    const started = mapper.start();
    await logged(() => waiting().length === 1, 'the first waiting line');
    // Five more attempts within the minute: no new line.
    now += 59_000;
    const base = sleeps;
    await ticks.waitFor(() => sleeps >= base + 5, 'five more retries');
    assert.equal(waiting().length, 1);
    // The first attempt after the minute logs again, with the attempts counted meanwhile.
    now += 1_000;
    await logged(() => waiting().length === 2, 'the second waiting line, a minute later');
    assert.ok(Number(waiting()[1]!.attempts) >= Number(waiting()[0]!.attempts) + 5);
    await edge.serve();
    await within(started, 10_000, 'registration');
    assert.equal(waiting().length, 2);
  });

  test('stop() during the wait for EdgeCore ends start() with StoppedError', async () => {
    const { mapper, lines, logged } = await setup([], { serve: false });
    const started = mapper.start();
    await logged(() => lines.some((l) => l.msg.startsWith('waiting for')), 'the waiting line');
    await mapper.stop();
    await assert.rejects(within(started, 5000, 'start to end'), (err: Error) => err.name === 'StoppedError');
  });

  test('a refused MapperRegister (INVALID_ARGUMENT) fails start()', async () => {
    const { edge, mapper } = await setup([]);
    edge.failRegister = () => new DmiError('bad mapper', { grpcStatus: 3 });
    await assert.rejects(within(mapper.start(), 5000, 'start'), (err: unknown) => err instanceof DmiError && err.grpcStatus === 3);
    assert.equal(edge.registers.length, 1, 'not retried');
  });

  test('failed reports are retried with backoff, latest value per property wins, one log line per problem', async () => {
    const { edge, driver, mapper, lines, logged } = await setup([device('dev-1')]);
    let failing = true;
    edge.failStatus = () => (failing ? new DmiError('edgecore busy', { grpcStatus: 14 }) : undefined);
    await within(mapper.start(), 10_000, 'mapper start');
    await edge.waitFor(() => edge.refused.length >= 5, 'several refused reports');
    driver.values.set('dev-1/temperature', '30.5');
    const problem = () => lines.filter((l) => l.msg.startsWith('report to EdgeCore failed'));
    assert.equal(problem().length, 1, 'logged once while failing');
    failing = false;
    await edge.waitFor(() => edge.reported('dev-1', 'temperature').includes('30.5'), 'the latest reading delivered after recovery');
    await logged(() => lines.some((l) => l.msg === 'reports accepted again'), 'the recovery line');
    assert.equal(problem().length, 1);
    // Never more than one call in flight per device: no stale 21.5 after 30.5 arrived.
    const values = edge.reported('dev-1', 'temperature');
    assert.equal(values.slice(values.indexOf('30.5')).includes('21.5'), false);
  });

  test('a reading taken once per hour is not lost when EdgeCore refuses it for a while', async () => {
    const { edge, mapper } = await setup([device('dev-1', { cycle: 3_600_000 })]);
    let failures = 0;
    edge.failStatus = () => (failures++ < 3 ? new DmiError('not yet', { grpcStatus: 14 }) : undefined);
    await within(mapper.start(), 10_000, 'mapper start');
    // One reading at start (the next is an hour away): delivered after three refusals, once.
    await edge.waitFor(() => edge.reported('dev-1', 'temperature').length === 1, 'the one reading delivered');
    assert.equal(edge.refused.length, 3);
    assert.deepEqual(edge.reported('dev-1', 'temperature'), ['21.5']);
  });

  test('a batch refused as INVALID_ARGUMENT is resent one twin per call; only the bad twin is dropped', async () => {
    const { edge, mapper, lines } = await setup([device('dev-1')]);
    // EdgeCore refuses any report that contains the setpoint twin (say: out of range).
    edge.failStatus = (req) => (req.reportedDevice?.twins?.some((t) => t.propertyName === 'setpoint') ? new DmiError('setpoint out of range', { grpcStatus: 3 }) : undefined);
    await within(mapper.start(), 10_000, 'mapper start');
    await edge.waitFor(() => edge.reported('dev-1', 'temperature').length >= 3, 'temperature delivered despite the refused setpoint');
    assert.equal(edge.reported('dev-1', 'setpoint').length, 0);
    assert.equal(lines.filter((l) => l.msg.startsWith('EdgeCore refused the reading')).length, 1, 'logged once');
  });

  test('state is reported on the stateReport cycle when reportToCloud is set', async () => {
    const { edge, driver, mapper } = await setup([device('dev-1', { stateReport: true }), device('dev-2')]);
    await within(mapper.start(), 10_000, 'mapper start');
    await edge.waitFor(() => edge.states.filter((s) => s.deviceName === 'dev-1').length >= 3, 'state reports');
    assert.equal(edge.states[0]!.state, 'ok');
    assert.equal(edge.states[0]!.deviceNamespace, 'default');
    driver.state = 'disconnected';
    await edge.waitFor(() => edge.states.some((s) => s.state === 'disconnected'), 'state change reported');
    assert.equal(
      edge.states.some((s) => s.deviceName === 'dev-2'),
      false,
      'no stateReport: no state reports (as in mapper-framework)',
    );
  });

  test('a device that cannot be opened is retried until it can', async () => {
    const { edge, driver, mapper, lines } = await setup([device('dev-1')]);
    driver.failInits = 3;
    await within(mapper.start(), 10_000, 'mapper start');
    await edge.waitFor(() => edge.statusesOf('dev-1').length >= 1, 'reports once the device opened');
    assert.equal(driver.inits.length, 4);
    assert.equal(lines.filter((l) => l.msg.startsWith('cannot open device')).length, 1, 'logged once');
  });

  test('GetDevice returns the device with its latest twins; a device waits for a model that arrives later', async () => {
    const { edge, driver, mapper, mapperSocket } = await setup([device('dev-1')]);
    await within(mapper.start(), 10_000, 'mapper start');
    await edge.waitFor(() => edge.statusesOf('dev-1').length >= 1, 'a report');
    const client = deviceMapperClient(mapperSocket, { timeoutMs: 5000 });
    cleanups.push(() => client.close());
    const got = await client.getDevice({ deviceName: 'dev-1', deviceNamespace: 'default' });
    assert.equal(got.device?.name, 'dev-1');
    assert.equal(got.device?.spec?.deviceModelReference, 'thermo-model');
    const twins = new Map((got.device?.status?.twins ?? []).map((t) => [t.propertyName, t]));
    assert.equal(twins.get('temperature')?.reported?.value, '21.5');
    assert.equal(twins.get('setpoint')?.observedDesired?.value, '42');
    await assert.rejects(client.getDevice({ deviceName: 'nope', deviceNamespace: 'default' }), (err: unknown) => err instanceof DmiError && err.grpcStatus === 5);

    // A device whose model is not there yet waits for CreateDeviceModel.
    const other: Device = { ...device('dev-2'), spec: { ...device('dev-2').spec, deviceModelRef: { name: 'late-model' } } };
    await client.registerDevice({ device: deviceToDmi(other) });
    assert.equal(mapper.devices().find((d) => d.name === 'dev-2')?.state, 'waiting-for-model');
    assert.equal(
      driver.inits.some((d) => d.metadata.name === 'dev-2'),
      false,
    );
    await client.createDeviceModel({ model: modelToDmi({ ...model, metadata: { name: 'late-model', namespace: 'default' } }) });
    await edge.waitFor(() => edge.statusesOf('dev-2').length >= 1, 'dev-2 reporting once its model arrived');
  });

  test('bad calls are refused with a status, and nothing else is disturbed', async () => {
    const { edge, mapper, mapperSocket } = await setup([device('dev-1')]);
    await within(mapper.start(), 10_000, 'mapper start');
    const client = deviceMapperClient(mapperSocket, { timeoutMs: 5000 });
    cleanups.push(() => client.close());
    await assert.rejects(client.registerDevice({}), (err: unknown) => err instanceof DmiError && err.grpcStatus === 3);
    const foreign = device('dev-9');
    foreign.spec.protocol = { protocolName: 'modbus' };
    await assert.rejects(client.registerDevice({ device: deviceToDmi(foreign, model) }), (err: unknown) => err instanceof DmiError && err.grpcStatus === 3);
    await assert.rejects(client.removeDevice({}), (err: unknown) => err instanceof DmiError && err.grpcStatus === 3);
    const before = edge.statusesOf('dev-1').length;
    await edge.waitFor(() => edge.statusesOf('dev-1').length > before + 2, 'dev-1 still reporting');
  });

  test('stop() stops every device and removes the socket', async () => {
    const { driver, mapper, mapperSocket } = await setup([device('dev-1'), device('dev-2')]);
    await within(mapper.start(), 10_000, 'mapper start');
    await driver.waitFor(() => driver.inits.length === 2, 'both devices opened');
    await driver.waitFor(() => driver.reads.length >= 2, 'reads');
    assert.ok(existsSync(mapperSocket));
    await mapper.stop();
    assert.deepEqual([...driver.stops].sort(), ['dev-1', 'dev-2']);
    assert.equal(existsSync(mapperSocket), false);
  });
});

describe('cycles', () => {
  test('0 or absent → default; below the minimum → minimum; beyond a Node timer → 2^31−1', () => {
    assert.equal(effectiveCycle(undefined, 1000, 10), 1000);
    assert.equal(effectiveCycle(0, 1000, 10), 1000);
    assert.equal(effectiveCycle(-5, 1000, 10), 1000);
    assert.equal(effectiveCycle(1, 1000, 10), 10);
    assert.equal(effectiveCycle(2500, 1000, 10), 2500);
    // KubeEdge v1.15 samples: 10000000000 (meant as ns); Node would fire such a timer after 1 ms.
    assert.equal(effectiveCycle(10_000_000_000, 1000, 10), 2 ** 31 - 1);
  });
});
