/**
 * DeviceTwin's upstream flusher: one message per ≤ maxReportsPerMessage devices, only while the
 * link is up, only what changed since the last accepted report, latest value wins offline, dirty
 * kept on an error answer, full resync on reconnection. EdgeHub is a fake context.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode, TimeoutError } from '../../shared/errors/index.js';
import { type Harness, linesWith, metaWith, startTwin, tempDirs } from './fakes.js';

const dir = tempDirs();

const report = (h: Harness, name: string, prop: string, value: string) => h.twin.core.report('default', name, [{ propertyName: prop, reported: { value } }], 'mqtt');
const reports = (h: Harness) => h.ctx.batches().flatMap((b) => b.reports);

test('the message: update of devicestatus, group twin, sync, to EdgeHub with a 30 s timeout; reported with timestamp and type, observedDesired, state, uid', async () => {
  const h = await startTwin(dir());
  try {
    await h.twin.core.report('default', 'thermo-1', [{ propertyName: 'temperature', reported: { value: '25' }, observedDesired: { value: '30' } }], 'dmi');
    await h.twin.core.reportState('default', 'thermo-1', 'online', 'dmi');
    await h.twin.flush();
    assert.equal(h.ctx.sent.length, 1);
    const { to, msg, timeoutMs } = h.ctx.sent[0]!;
    assert.equal(to, 'websocket');
    assert.equal(timeoutMs, 30_000);
    assert.deepEqual(msg.route, { source: 'twin', group: 'twin', operation: 'update', resource: 'devicestatus' });
    assert.equal(msg.header.sync, true);
    const ts = String(h.clock.now());
    assert.deepEqual(msg.content, {
      reports: [
        {
          namespace: 'default',
          name: 'thermo-1',
          uid: 'uid-thermo-1',
          state: 'online',
          lastOnlineTime: '2026-01-02T03:04:05Z',
          twins: [
            {
              propertyName: 'temperature',
              reported: { value: '25', metadata: { timestamp: ts, type: 'int' } },
              observedDesired: { value: '30', metadata: { timestamp: ts, type: 'int' } },
            },
          ],
        },
      ],
    });
    // Accepted: clean, nothing more to send.
    assert.equal(h.twin.stats().dirty, 0);
    await h.twin.flush();
    assert.equal(h.ctx.sent.length, 1);
  } finally {
    await h.stop();
  }
});

test('offline: nothing is sent, the latest value per property waits; on link up one report carries it', async () => {
  const h = await startTwin(dir(), { linkUp: false });
  try {
    for (const v of ['1', '2', '3']) await report(h, 'thermo-1', 'temperature', v);
    await report(h, 'thermo-1', 'switch', 'true');
    await h.twin.flush();
    await h.twin.flush();
    assert.equal(h.ctx.sent.length, 0, 'nothing queued in EdgeHub while the link is down');
    h.link.up = true;
    await h.twin.flush();
    assert.equal(h.ctx.sent.length, 1);
    assert.deepEqual(
      reports(h)[0]!.twins!.map((t) => [t.propertyName, t.reported?.value]),
      [
        ['temperature', '3'],
        ['switch', 'true'],
      ],
    );
  } finally {
    await h.stop();
  }
});

test('only what changed since the last accepted report is sent', async () => {
  const h = await startTwin(dir());
  try {
    await report(h, 'thermo-1', 'temperature', '20');
    await report(h, 'thermo-1', 'switch', 'false');
    await h.twin.flush();
    await report(h, 'thermo-1', 'label', 'new');
    await h.twin.flush();
    assert.equal(h.ctx.sent.length, 2);
    const second = h.ctx.batches()[1]!.reports;
    assert.deepEqual(
      second.map((r) => [r.name, r.twins?.map((t) => t.propertyName), r.state]),
      [['thermo-1', ['label'], undefined]],
    );
  } finally {
    await h.stop();
  }
});

test('an error answer or a failed send keeps the devices dirty; the next pass retries; logged once per code', async () => {
  const h = await startTwin(dir());
  try {
    await report(h, 'thermo-1', 'temperature', '20');
    h.ctx.reply = { error: { code: ErrorCode.Storage, message: 'outbox full' } };
    await h.twin.flush();
    await h.twin.flush();
    assert.equal(h.twin.stats().dirty, 1);
    h.ctx.reply = { throws: new TimeoutError('no response from "websocket"') };
    await h.twin.flush();
    await h.twin.flush();
    assert.equal(h.twin.stats().dirty, 1);
    assert.equal(linesWith(h.lines, ErrorCode.Storage, /not sent: outbox full/).length, 1, 'one line for two failures');
    assert.equal(linesWith(h.lines, ErrorCode.Timeout, /not sent/).length, 1);
    h.ctx.reply = 'accept';
    await h.twin.flush();
    assert.equal(h.twin.stats().dirty, 0);
    assert.equal(h.ctx.sent.length, 5);
    assert.deepEqual(
      h.ctx.batches().map((b) => b.reports[0]!.twins![0]!.reported!.value),
      ['20', '20', '20', '20', '20'],
    );
  } finally {
    await h.stop();
  }
});

test('a value changed while its report is in flight stays dirty and is sent next', async () => {
  const h = await startTwin(dir());
  try {
    await report(h, 'thermo-1', 'temperature', '20');
    let once = true;
    h.ctx.onSend = async () => {
      if (!once) return;
      once = false;
      await report(h, 'thermo-1', 'temperature', '21');
    };
    await h.twin.flush();
    assert.equal(h.twin.stats().dirty, 1, 'the newer value was not in the accepted message');
    await h.twin.flush();
    assert.deepEqual(
      h.ctx.batches().map((b) => b.reports[0]!.twins![0]!.reported!.value),
      ['20', '21'],
    );
    assert.equal(h.twin.stats().dirty, 0);
  } finally {
    await h.stop();
  }
});

test('batches: at most maxReportsPerMessage devices per message, oldest dirty first; a device bigger than maxReportBytes is split', async () => {
  const names = ['d1', 'd2', 'd3', 'd4', 'd5'];
  const h = await startTwin(dir(), { meta: metaWith(...names), options: { maxReportsPerMessage: 2 } });
  try {
    for (const n of ['d3', 'd1', 'd5', 'd2', 'd4']) await report(h, n, 'temperature', '1');
    await h.twin.flush();
    assert.deepEqual(
      h.ctx.batches().map((b) => b.reports.map((r) => r.name)),
      [['d3', 'd1'], ['d5', 'd2'], ['d4']],
    );
  } finally {
    await h.stop();
  }
  const big = await startTwin(dir(), { meta: metaWith('d1', 'd2'), options: { maxReportBytes: 600 } });
  try {
    const long = 'x'.repeat(200);
    await big.twin.core.report(
      'default',
      'd1',
      ['label', 'temperature', 'switch'].map((p) => ({ propertyName: p, reported: { value: p === 'label' ? long : p === 'switch' ? 'true' : '5' } })),
      'mqtt',
    );
    await big.twin.core.report('default', 'd2', [{ propertyName: 'label', reported: { value: long } }], 'mqtt');
    await big.twin.flush();
    const batches = big.ctx.batches();
    assert.ok(batches.length >= 2, `split over ${batches.length} messages`);
    for (const b of big.ctx.sent) assert.ok(Buffer.byteLength(JSON.stringify(b.msg.content)) <= 600, 'each message within maxReportBytes');
    const sent = batches.flatMap((b) => b.reports).flatMap((r) => (r.twins ?? []).map((t) => `${r.name}.${t.propertyName}`));
    assert.deepEqual(sent.sort(), ['d1.label', 'd1.switch', 'd1.temperature', 'd2.label']);
    assert.equal(big.twin.stats().dirty, 0);
  } finally {
    await big.stop();
  }
});

test('reconnected(): every device with values is sent again in full (a full resync)', async () => {
  const h = await startTwin(dir(), { meta: metaWith('d1', 'd2', 'd3') });
  try {
    await report(h, 'd1', 'temperature', '1');
    await report(h, 'd1', 'switch', 'true');
    await h.twin.core.reportState('default', 'd2', 'offline', 'dmi');
    await h.twin.flush();
    assert.equal(h.ctx.sent.length, 1);
    h.twin.reconnected();
    await h.twin.flush();
    assert.equal(h.ctx.sent.length, 2);
    const resync = h.ctx.batches()[1]!.reports;
    assert.deepEqual(
      resync.map((r) => [r.name, r.twins?.map((t) => t.propertyName).sort(), r.state]),
      [
        ['d1', ['switch', 'temperature'], undefined],
        ['d2', undefined, 'offline'],
      ],
      'd3 never reported: nothing to send',
    );
  } finally {
    await h.stop();
  }
});

test('a connection made before the twins were loaded still resyncs them once loaded', async () => {
  const d = dir();
  const a = await startTwin(d, { linkUp: true });
  await report(a, 'thermo-1', 'temperature', '4');
  await a.twin.flush();
  // A write that is not a report (a local expected value) stores the record clean.
  a.bus.inject('$hw/events/device/default/thermo-1/twin/update', { twin: { switch: { expected: { value: 'true' } } } });
  await a.bus.waitFor('$hw/events/device/default/thermo-1/twin/update/result');
  await a.stop();
  const clean = await startTwin(d, { linkUp: true });
  assert.equal(clean.twin.stats().dirty, 0, 'stored clean');
  await clean.stop();
  // The link comes up (EdgeHub's onConnected) before DeviceTwin's start loaded the twins.
  const b = await startTwin(d, { beforeStart: (twin) => twin.reconnected() });
  try {
    await b.twin.flush();
    assert.equal(reports(b)[0]?.twins?.[0]?.reported?.value, '4');
  } finally {
    await b.stop();
  }
});

test('the flusher runs on the interval timer (reportIntervalMs); stopping clears it', async () => {
  const h = await startTwin(dir(), { options: { reportIntervalMs: 1234 } });
  const t = h.timers.intervals[0]!;
  assert.equal(t.ms, 1234);
  await report(h, 'thermo-1', 'temperature', '9');
  t.fn();
  await h.twin.flush(); // joins the pass the timer started
  assert.equal(h.ctx.sent.length, 1);
  await h.stop();
  assert.equal(t.cleared, true);
});
