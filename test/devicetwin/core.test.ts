/**
 * DeviceTwin's core (TwinCore): devices and models from MetaView, validation of reports against
 * the Device and its model, the durable twin store (real files), limits.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeviceInvalidError, DeviceUnknownError, ErrorCode } from '../../shared/errors/index.js';
import type { DeviceChangeEvent, ModelChangeEvent } from '../../edge/devicetwin/index.js';
import { readMetaLog } from '../helpers/files.js';
import { join } from 'node:path';
import { Clock, device, deviceResource, linesWith, metaWith, model, modelResource, startTwin, tempDirs } from './fakes.js';

const dir = tempDirs();

test('devices and models come from MetaView; listeners get an add per held device, then the live changes', async () => {
  const h = await startTwin(dir(), { meta: metaWith('thermo-1', 'thermo-2') });
  try {
    const core = h.twin.core;
    assert.deepEqual(
      core
        .list()
        .map((e) => e.device.metadata.name)
        .sort(),
      ['thermo-1', 'thermo-2'],
    );
    assert.equal(core.get('default', 'thermo-1')?.model?.metadata.name, 'thermo-model');
    assert.equal(core.get('default', 'nope'), undefined);

    const devices: DeviceChangeEvent[] = [];
    const models: ModelChangeEvent[] = [];
    core.onModelChange((ev) => models.push(ev));
    core.onDeviceChange((ev) => devices.push(ev));
    // Registered after the start: the held ones are replayed as 'add'.
    assert.deepEqual(
      devices.map((e) => [e.op, e.entry.device.metadata.name, e.specChanged]),
      [
        ['add', 'thermo-1', true],
        ['add', 'thermo-2', true],
      ],
    );
    assert.deepEqual(
      models.map((e) => [e.op, e.model.metadata.name]),
      [['add', 'thermo-model']],
    );
    devices.length = 0;
    models.length = 0;

    h.meta.put(deviceResource('thermo-3'), device('thermo-3'));
    // A metadata-only change (a label) is not a spec change; a desired value is.
    const labelled = device('thermo-3');
    labelled.metadata.labels = { a: 'b' };
    h.meta.put(deviceResource('thermo-3'), labelled);
    h.meta.put(deviceResource('thermo-3'), device('thermo-3', { desired: { temperature: '40' } }));
    h.meta.delete(deviceResource('thermo-3'));
    assert.deepEqual(
      devices.map((e) => [e.op, e.entry.device.metadata.name, e.specChanged, e.previous?.device.spec.properties?.[0]?.desired?.value]),
      [
        ['add', 'thermo-3', true, undefined],
        ['update', 'thermo-3', false, '30'],
        ['update', 'thermo-3', true, '30'],
        ['delete', 'thermo-3', false, undefined],
      ],
    );
    const m2 = model();
    m2.spec.properties![0]!.maximum = '200';
    h.meta.put(modelResource(), m2);
    h.meta.delete(modelResource());
    assert.deepEqual(
      models.map((e) => e.op),
      ['update', 'delete'],
    );
    assert.equal(core.get('default', 'thermo-1')?.model, undefined, 'the model is gone');
  } finally {
    await h.stop();
  }
});

test('report validates against the Device and its model: unknown device, unknown property, type, range, length; all or nothing', async () => {
  const h = await startTwin(dir());
  try {
    const core = h.twin.core;
    const r = (propertyName: string, value: string) => core.report('default', 'thermo-1', [{ propertyName, reported: { value } }], 'dmi');
    await assert.rejects(core.report('default', 'ghost', [{ propertyName: 'temperature', reported: { value: '1' } }], 'dmi'), DeviceUnknownError);
    await assert.rejects(r('pressure', '1'), (e: Error) => e instanceof DeviceInvalidError && /has no property "pressure"/.test(e.message));
    // In the model but not declared by the Device.
    await assert.rejects(r('extra', '1'), DeviceInvalidError);
    await assert.rejects(r('temperature', 'hot'), (e: Error) => e instanceof DeviceInvalidError && /temperature is refused: "hot" is not an INT/.test(e.message));
    await assert.rejects(r('temperature', '101'), (e: Error) => e instanceof DeviceInvalidError && /above the maximum "100"/.test(e.message));
    await assert.rejects(r('temperature', '-1'), (e: Error) => e instanceof DeviceInvalidError && /below the minimum "0"/.test(e.message));
    await assert.rejects(r('temperature', '99999999999999999999'), /out of range for INT/);
    await assert.rejects(r('humidity', '12,5'), /is not a FLOAT/);
    await assert.rejects(r('switch', 'yes'), /is not a BOOLEAN/);
    await assert.rejects(r('label', 'x'.repeat(1025)), /longer than 1024 bytes/);
    await assert.rejects(r('x'.repeat(129), '1'), /longer than 128 bytes/);
    await assert.rejects(core.report('default', 'thermo-1', [{ propertyName: 'temperature', reported: { value: 5 as unknown as string } }], 'dmi'), /must be a string/);
    // One bad twin: nothing of the update is applied.
    await assert.rejects(
      core.report(
        'default',
        'thermo-1',
        [
          { propertyName: 'temperature', reported: { value: '20' } },
          { propertyName: 'switch', reported: { value: 'maybe' } },
        ],
        'dmi',
      ),
      DeviceInvalidError,
    );
    assert.equal(h.twin.stats().dirty, 0, 'nothing applied');
    // Good values.
    await r('temperature', '100');
    await r('humidity', '-3.5e1');
    await r('switch', 'true');
    await r('label', 'hello world, with spaces');
    assert.equal(h.twin.stats().dirty, 1);
    // An empty observedDesired is "none" (mappers send one for properties without desired): accepted, not stored.
    await core.report('default', 'thermo-1', [{ propertyName: 'temperature', reported: { value: '7' }, observedDesired: { value: '' } }], 'dmi');
  } finally {
    await h.stop();
  }
});

test('a device whose model the node does not hold cannot report (nothing to check values against)', async () => {
  const meta = metaWith();
  meta.seed(deviceResource('orphan'), device('orphan', { modelName: 'missing' }));
  const h = await startTwin(dir(), { meta });
  try {
    await assert.rejects(
      h.twin.core.report('default', 'orphan', [{ propertyName: 'temperature', reported: { value: '1' } }], 'mqtt'),
      (e: Error) => e instanceof DeviceInvalidError && /model "missing" is not held/.test(e.message),
    );
    assert.equal(h.twin.core.get('default', 'orphan')?.model, undefined);
  } finally {
    await h.stop();
  }
});

test('states: KubeEdge set, any case; online/ok set lastOnlineTime, others keep it', async () => {
  const clock = new Clock(Date.UTC(2026, 4, 6, 7, 8, 9, 500));
  const d = dir();
  const h = await startTwin(d, { clock });
  try {
    const core = h.twin.core;
    await assert.rejects(core.reportState('default', 'thermo-1', 'sleepy', 'dmi'), (e: Error) => e instanceof DeviceInvalidError && /not one of/.test(e.message));
    await assert.rejects(core.reportState('default', 'thermo-1', '', 'dmi'), DeviceInvalidError);
    await assert.rejects(core.reportState('default', 'thermo-1', 'o'.repeat(65), 'dmi'), DeviceInvalidError);
    await assert.rejects(core.reportState('default', 'ghost', 'online', 'dmi'), DeviceUnknownError);
    await core.reportState('default', 'thermo-1', 'Online', 'dmi');
    clock.advance(60_000);
    await core.reportState('default', 'thermo-1', 'offline', 'dmi');
    // The same state again: nothing changed, nothing written.
    const records = readMetaLog(join(d, 'devicetwin')).length;
    for (let i = 0; i < 3; i++) await core.reportState('default', 'thermo-1', 'offline', 'dmi');
    assert.equal(readMetaLog(join(d, 'devicetwin')).length, records);
    await h.twin.flush();
    const report = h.ctx.batches()[0]!.reports[0]!;
    assert.equal(report.state, 'offline');
    assert.equal(report.lastOnlineTime, '2026-05-06T07:08:09Z', 'the last time it was online, RFC 3339 in seconds');
  } finally {
    await h.stop();
  }
});

test('reports are durable once report() resolves: a second process opening the store (the first never closed) sees values and dirty marks', async () => {
  const d = dir();
  const meta = metaWith('thermo-1', 'thermo-2');
  const a = await startTwin(d, { meta, linkUp: false });
  await a.twin.core.report('default', 'thermo-1', [{ propertyName: 'temperature', reported: { value: '21' } }], 'mqtt');
  await a.twin.core.report('default', 'thermo-1', [{ propertyName: 'humidity', reported: { value: '40.5' }, observedDesired: { value: '41' } }], 'dmi');
  await a.twin.core.reportState('default', 'thermo-2', 'ok', 'dmi');
  // The record is on disk already (the log is fsynced before report() resolves).
  const recs = readMetaLog(join(d, 'devicetwin')).filter((r) => r.k === 'default/thermo-1');
  assert.ok(recs.length >= 1);
  // "Kill": a is never stopped; b opens the same files.
  const b = await startTwin(d, { meta, linkUp: true });
  try {
    assert.equal(b.twin.stats().dirty, 2, 'both devices still dirty');
    await b.twin.flush();
    const reports = b.ctx.batches().flatMap((x) => x.reports);
    const t1 = reports.find((r) => r.name === 'thermo-1')!;
    assert.deepEqual(t1.twins?.map((t) => [t.propertyName, t.reported?.value, t.observedDesired?.value]).sort(), [
      ['humidity', '40.5', '41'],
      ['temperature', '21', undefined],
    ]);
    assert.equal(reports.find((r) => r.name === 'thermo-2')?.state, 'ok');
  } finally {
    await b.stop();
    await a.stop();
  }
});

test('a Device recreated under the same name starts with an empty twin; records of devices deleted while down are dropped', async () => {
  const d = dir();
  const meta = metaWith('thermo-1', 'thermo-2');
  const a = await startTwin(d, { meta, linkUp: false });
  await a.twin.core.report('default', 'thermo-1', [{ propertyName: 'temperature', reported: { value: '21' } }], 'mqtt');
  await a.twin.core.report('default', 'thermo-2', [{ propertyName: 'temperature', reported: { value: '22' } }], 'mqtt');
  await a.stop();

  // While down: thermo-1 deleted and recreated (new uid), thermo-2 deleted.
  meta.seed(deviceResource('thermo-1'), device('thermo-1', { uid: 'uid-new' }));
  meta.objects.delete(deviceResource('thermo-2'));
  const b = await startTwin(d, { meta, linkUp: true });
  try {
    assert.equal(b.twin.stats().dirty, 0, 'no twin carried over');
    await b.twin.flush();
    assert.equal(b.ctx.sent.length, 0);
    // Live: recreated with another uid while running.
    await b.twin.core.report('default', 'thermo-1', [{ propertyName: 'temperature', reported: { value: '5' } }], 'mqtt');
    b.meta.put(deviceResource('thermo-1'), device('thermo-1', { uid: 'uid-newer' }));
    assert.equal(b.twin.stats().dirty, 0);
  } finally {
    await b.stop();
  }
  const keys = new Set<string>();
  for (const r of readMetaLog(join(d, 'devicetwin'))) {
    if (r.t === 'put' && r.k) keys.add(r.k);
    if (r.t === 'del' && r.k) keys.delete(r.k);
  }
  assert.ok(!keys.has('default/thermo-2'), `the record of the device deleted while down is gone: ${[...keys].join(', ')}`);
});

test('maxDevices: devices past it are ignored with one warning, and taken in once others are deleted', async () => {
  const meta = metaWith('d1', 'd2', 'd3', 'd4');
  const h = await startTwin(dir(), { meta, options: { maxDevices: 2 } });
  try {
    assert.equal(h.twin.core.list().length, 2);
    assert.equal(linesWith(h.lines, ErrorCode.StoreLimit, /twin\.maxDevices is 2/).length, 1, 'one line for both ignored devices');
    h.meta.put(deviceResource('d5'), device('d5'));
    assert.equal(h.twin.core.list().length, 2);
    await assert.rejects(h.twin.core.report('default', 'd3', [{ propertyName: 'temperature', reported: { value: '1' } }], 'mqtt'), DeviceUnknownError);
    h.meta.delete(deviceResource('d1'));
    assert.equal(h.twin.core.list().length, 2);
    assert.ok(h.twin.core.get('default', 'd3') ?? h.twin.core.get('default', 'd4') ?? h.twin.core.get('default', 'd5'), 'an ignored device was taken in');
  } finally {
    await h.stop();
  }
});

test('malformed Device and DeviceModel objects are ignored with one line each', async () => {
  const meta = metaWith('thermo-1');
  meta.seed('default/device/broken', { metadata: {}, spec: {} });
  meta.seed('default/devicemodel/broken', { metadata: { name: 'broken' } });
  const h = await startTwin(dir(), { meta });
  try {
    assert.deepEqual(
      h.twin.core.list().map((e) => e.device.metadata.name),
      ['thermo-1'],
    );
    assert.equal(linesWith(h.lines, ErrorCode.DeviceInvalid, /DeviceModel without/).length, 1);
  } finally {
    await h.stop();
  }
});
