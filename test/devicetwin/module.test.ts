/**
 * DeviceTwin as a Beehive module: messages of group twin, the DMI adapter's lifecycle, and the
 * twin store surviving a real kill -9.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode } from '../../shared/errors/index.js';
import { newMessage } from '../../shared/protocol/index.js';
import { defaultDmiAdapterOptions, type DmiAdapter, type DmiAdapterOptions } from '../../edge/devicetwin/dmi/index.js';
import { deviceManagerClient } from '../../shared/dmi/index.js';
import type { TwinCore } from '../../edge/devicetwin/index.js';
import { eventually, startProcess } from '../helpers/process.js';
import { linesWith, startTwin, tempDirs } from './fakes.js';

const dir = tempDirs();

test('messages of group twin: a sync one is answered LEDGE_ERR_UNSUPPORTED (logged once); responses and ACKs are ignored', async () => {
  const h = await startTwin(dir());
  try {
    for (let i = 0; i < 3; i++)
      h.ctx.deliver(newMessage({ source: 'devicecontroller', group: 'twin', operation: 'update', resource: 'node/edge-1/membership', content: {}, sync: true }));
    h.ctx.deliver(newMessage({ source: 'devicecontroller', group: 'twin', operation: 'update', resource: 'node/edge-1/membership', content: {} }));
    h.ctx.deliver(newMessage({ source: 'websocket', group: 'twin', operation: 'response', resource: 'devicestatus', content: null, sync: true }));
    await eventually(() => h.ctx.responses.length === 3, 5000, 'three answers');
    for (const r of h.ctx.responses) assert.equal((r.content as { code: string }).code, ErrorCode.Unsupported);
    assert.equal(linesWith(h.lines, ErrorCode.Unsupported).length, 1);
  } finally {
    await h.stop();
  }
});

test('the DMI adapter is built with the core and options, started once the twins are loaded, closed at stop; a failed start fails the module', async () => {
  const d = dir();
  const calls: string[] = [];
  let given: DmiAdapterOptions | undefined;
  const createDmi = (options: DmiAdapterOptions, core: TwinCore): DmiAdapter => {
    given = options;
    return {
      socketPath: options.socketPath,
      mappers: () => [],
      problems: () => [],
      start: async () => {
        calls.push(`start:${core.list().length}`);
      },
      close: async () => {
        calls.push('close');
      },
    };
  };
  const dmi = { enabled: true, socketPath: `${d}/dmi.sock`, dataDir: '', callTimeoutMs: 1, callsPerSecond: 1, burst: 1, maxMessageBytes: 1 };
  const h = await startTwin(d, { options: { dmi, createDmi } });
  assert.deepEqual(calls, ['start:1']);
  assert.equal(given?.dataDir, d, 'the data directory filled in');
  assert.equal('enabled' in (given ?? {}), false);
  await h.stop();
  assert.deepEqual(calls, ['start:1', 'close']);

  const failing = (): DmiAdapter => ({
    socketPath: '',
    mappers: () => [],
    problems: () => [],
    start: async () => {
      throw new Error('socket in use');
    },
    close: async () => {
      calls.push('close-failed');
    },
  });
  await assert.rejects(startTwin(d, { options: { dmi, createDmi: failing } }), /socket in use/);
  assert.equal(calls.at(-1), 'close-failed');
  // The store was closed: a restart opens it again.
  const again = await startTwin(d);
  await again.stop();
});

test('kill -9 after report() resolved: values, local expected, state and dirty marks are there after a restart', async () => {
  const d = dir();
  const child = startProcess(['--import', 'tsx', 'test/devicetwin/twin-child.ts', d], {}, 'twin-child');
  try {
    await child.waitFor(/DURABLE/, 30_000);
  } finally {
    await child.kill9();
  }
  const h = await startTwin(d, { linkUp: true });
  try {
    assert.equal(h.twin.stats().dirty, 1);
    await h.twin.flush();
    const r = h.ctx.batches()[0]!.reports[0]!;
    assert.equal(r.state, 'online');
    assert.deepEqual(r.twins?.map((t) => [t.propertyName, t.reported?.value]).sort(), [
      ['switch', 'true'],
      ['temperature', '42'],
    ]);
    h.bus.inject('$hw/events/device/default/thermo-1/twin/get', {});
    const [get] = await h.bus.waitFor('$hw/events/device/default/thermo-1/twin/get/result');
    assert.equal((get!.body.twin as Record<string, { expected?: { value: string } }>).label!.expected?.value, 'local');
  } finally {
    await h.stop();
  }
});

test('with the real DMI adapter: ReportDeviceStatus/ReportDeviceStates reach the same core (stored, MQTT document, upstream); a bad value is INVALID_ARGUMENT', async () => {
  const d = dir();
  const socketPath = `${d}/dmi.sock`;
  const dmi = { ...defaultDmiAdapterOptions, enabled: true, socketPath, dataDir: d };
  const h = await startTwin(d, { options: { dmi } });
  const client = deviceManagerClient(socketPath, { timeoutMs: 5000 });
  try {
    await client.reportDeviceStatus({
      deviceName: 'thermo-1',
      deviceNamespace: 'default',
      reportedDevice: { twins: [{ propertyName: 'temperature', reported: { value: '23', metadata: { timestamp: '1', type: 'int' } }, observedDesired: { value: '30' } }] },
    });
    await client.reportDeviceStates({ deviceName: 'thermo-1', deviceNamespace: 'default', state: 'ok' });
    await assert.rejects(
      client.reportDeviceStatus({ deviceName: 'thermo-1', deviceNamespace: 'default', reportedDevice: { twins: [{ propertyName: 'temperature', reported: { value: 'hot' } }] } }),
      (e: Error & { grpcStatus?: number }) => e.grpcStatus === 3,
    );
    await assert.rejects(
      client.reportDeviceStatus({ deviceName: 'ghost', deviceNamespace: 'default', reportedDevice: { twins: [{ propertyName: 'temperature', reported: { value: '1' } }] } }),
      (e: Error & { grpcStatus?: number }) => e.grpcStatus === 5,
    );
    await h.bus.waitFor('$hw/events/device/default/thermo-1/twin/update/document');
    await h.twin.flush();
    const r = h.ctx.batches()[0]!.reports[0]!;
    assert.equal(r.state, 'ok');
    assert.deepEqual(r.twins, [
      {
        propertyName: 'temperature',
        reported: { value: '23', metadata: { timestamp: String(h.clock.now()), type: 'int' } },
        observedDesired: { value: '30', metadata: { timestamp: String(h.clock.now()), type: 'int' } },
      },
    ]);
  } finally {
    client.close();
    await h.stop();
  }
});
