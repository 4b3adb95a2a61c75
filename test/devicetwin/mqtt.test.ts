/**
 * DeviceTwin's MQTT adapter against a fake device bus: KubeEdge's topics (device id
 * `{namespace}/{name}`) and payload shapes (dttype: DeviceTwinResult, DeviceTwinDocument,
 * DeviceTwinDelta, Result, DeviceMsg, MembershipGetResult, MembershipUpdate), every bad-input
 * case, floods, and the one report path upstream.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode } from '../../shared/errors/index.js';
import { eventually } from '../helpers/process.js';
import { device, deviceResource, type Harness, linesWith, metaWith, startTwin, tempDirs } from './fakes.js';

const dir = tempDirs();

const T = '$hw/events/device/default/thermo-1';
const NODE = '$hw/events/node/edge-1';

test('subscribes to KubeEdge’s four request topics', async () => {
  const h = await startTwin(dir());
  try {
    assert.deepEqual(h.bus.subs.map((s) => s.filter).sort(), [
      '$hw/events/device/+/+/state/update',
      '$hw/events/device/+/+/twin/get',
      '$hw/events/device/+/+/twin/update',
      '$hw/events/node/+/membership/get',
    ]);
  } finally {
    await h.stop();
  }
  assert.equal(h.bus.subs.length, 0, 'unsubscribed at stop');
});

test('twin/update with actual: result, document, delta (KubeEdge shapes, in that order); the value goes upstream', async () => {
  const h = await startTwin(dir());
  try {
    const now = h.clock.now();
    h.bus.inject(`${T}/twin/update`, { event_id: 'e-1', timestamp: 1, twin: { temperature: { actual: { value: '25' }, metadata: { type: 'Updated' } } } });
    await h.bus.waitFor(`${T}/twin/update/delta`);
    assert.deepEqual(
      h.bus.published.map((p) => p.topic),
      [`${T}/twin/update/result`, `${T}/twin/update/document`, `${T}/twin/update/delta`],
    );
    // dttype.DeviceTwinResult: the applied parts.
    assert.deepEqual(h.bus.on(`${T}/twin/update/result`)[0]!.body, {
      event_id: 'e-1',
      timestamp: now,
      twin: { temperature: { actual: { value: '25', metadata: { timestamp: now } }, optional: false, metadata: { type: 'int' } } },
    });
    // dttype.DeviceTwinDocument: last and current (the desired value 30 is the expected one).
    assert.deepEqual(h.bus.on(`${T}/twin/update/document`)[0]!.body, {
      event_id: 'e-1',
      timestamp: now,
      twin: {
        temperature: {
          last: { expected: { value: '30' }, optional: false, metadata: { type: 'int' } },
          current: { expected: { value: '30' }, actual: { value: '25', metadata: { timestamp: now } }, optional: false, metadata: { type: 'int' } },
        },
      },
    });
    // dttype.DeviceTwinDelta: every twin with an expected value; delta where it differs from actual.
    const delta = h.bus.on(`${T}/twin/update/delta`)[0]!.body;
    assert.match(delta.event_id as string, /^[0-9a-f-]{36}$/);
    assert.deepEqual(
      { ...delta, event_id: '' },
      {
        event_id: '',
        timestamp: now,
        twin: { temperature: { expected: { value: '30' }, actual: { value: '25', metadata: { timestamp: now } }, optional: false, metadata: { type: 'int' } } },
        delta: { temperature: '30' },
      },
    );
    await h.twin.flush();
    assert.deepEqual(h.ctx.batches()[0]!.reports[0]!.twins, [{ propertyName: 'temperature', reported: { value: '25', metadata: { timestamp: String(now), type: 'int' } } }]);
    // Actual equal to desired: no delta.
    h.bus.inject(`${T}/twin/update`, { event_id: 'e-2', twin: { temperature: { actual: { value: '30' } } } });
    await h.bus.waitFor(`${T}/twin/update/document`, 2);
    await h.bus.waitFor(`${T}/twin/update/result`, 2);
    assert.equal(h.bus.on(`${T}/twin/update/delta`).length, 1);
  } finally {
    await h.stop();
  }
});

test('twin/update with expected: applied locally (delta, twin/get), never sent upstream; the cloud changing desired wins', async () => {
  const h = await startTwin(dir());
  try {
    h.bus.inject(`${T}/twin/update`, { event_id: 'x', twin: { switch: { expected: { value: 'true' } } } });
    const [delta] = await h.bus.waitFor(`${T}/twin/update/delta`);
    assert.deepEqual(delta!.body.delta, { temperature: '30', switch: 'true' });
    assert.deepEqual((h.bus.on(`${T}/twin/update/result`)[0]!.body.twin as Record<string, unknown>).switch, {
      expected: { value: 'true', metadata: { timestamp: h.clock.now() } },
      optional: false,
      metadata: { type: 'boolean' },
    });
    await h.twin.flush();
    assert.equal(h.ctx.sent.length, 0, 'an expected value is not a report');
    // ReadOnly property: no expected value.
    h.bus.inject(`${T}/twin/update`, { event_id: 'ro', twin: { humidity: { expected: { value: '3' } } } });
    const [ro] = await h.bus.waitFor(`${T}/twin/update/result`, 2).then((r) => r.slice(1));
    assert.equal(ro!.body.code, 400);
    assert.match(ro!.body.reason as string, /ReadOnly/);
    // The cloud sets a desired value of switch: the local expected gives way, a delta says so.
    h.meta.put(deviceResource('thermo-1'), device('thermo-1', { desired: { temperature: '30', switch: 'false' } }));
    const deltas = await h.bus.waitFor(`${T}/twin/update/delta`, 2);
    assert.deepEqual(deltas[1]!.body.delta, { temperature: '30', switch: 'false' });
    h.bus.inject(`${T}/twin/get`, { event_id: 'g' });
    const [get] = await h.bus.waitFor(`${T}/twin/get/result`);
    assert.deepEqual((get!.body.twin as Record<string, { expected?: { value: string } }>).switch!.expected, { value: 'false' });
  } finally {
    await h.stop();
  }
});

test('twin/get: every declared twin (KubeEdge DeviceTwinResult); unknown device 404 on twin/get/result', async () => {
  const h = await startTwin(dir());
  try {
    await h.twin.core.report('default', 'thermo-1', [{ propertyName: 'label', reported: { value: 'hi' } }], 'dmi');
    h.bus.inject(`${T}/twin/get`, { event_id: 'g-1' });
    const [r] = await h.bus.waitFor(`${T}/twin/get/result`);
    const now = h.clock.now();
    assert.deepEqual(r!.body, {
      event_id: 'g-1',
      timestamp: now,
      twin: {
        temperature: { expected: { value: '30' }, optional: false, metadata: { type: 'int' } },
        humidity: { optional: false, metadata: { type: 'float' } },
        switch: { optional: false, metadata: { type: 'boolean' } },
        label: { actual: { value: 'hi', metadata: { timestamp: now } }, optional: false, metadata: { type: 'string' } },
      },
    });
    h.bus.inject('$hw/events/device/default/ghost/twin/get', { event_id: 'g-2' });
    const [nf] = await h.bus.waitFor('$hw/events/device/default/ghost/twin/get/result');
    assert.deepEqual(nf!.body, { event_id: 'g-2', timestamp: now, code: 404, reason: 'device default/ghost is not held by this node' });
    h.bus.inject(`${T}/twin/get`, '{nope');
    const res = await h.bus.waitFor(`${T}/twin/get/result`, 2);
    assert.equal(res[1]!.body.code, 400);
  } finally {
    await h.stop();
  }
});

test('state/update: the state goes upstream; state/update/result is KubeEdge’s DeviceMsg; a bad state is answered 400', async () => {
  const h = await startTwin(dir());
  try {
    h.bus.inject(`${T}/state/update`, { event_id: 's-1', timestamp: 5, state: 'online' });
    const [r] = await h.bus.waitFor(`${T}/state/update/result`);
    assert.deepEqual(r!.body, { event_id: 's-1', timestamp: h.clock.now(), device: { name: 'thermo-1', state: 'online', lastOnlineTime: '2026-01-02T03:04:05Z' } });
    await h.twin.flush();
    assert.equal(h.ctx.batches()[0]!.reports[0]!.state, 'online');
    h.bus.inject(`${T}/state/update`, { event_id: 's-2', state: 'dancing' });
    h.bus.inject(`${T}/state/update`, { event_id: 's-3' });
    const all = await h.bus.waitFor(`${T}/state/update/result`, 3);
    assert.deepEqual(
      all.slice(1).map((p) => [p.body.event_id, p.body.code]),
      [
        ['s-2', 400],
        ['s-3', 400],
      ],
    );
  } finally {
    await h.stop();
  }
});

test('membership/get answered for this node only; membership/updated on live add and delete', async () => {
  const meta = metaWith('thermo-1');
  const h = await startTwin(dir(), { meta });
  try {
    await h.twin.core.reportState('default', 'thermo-1', 'ok', 'dmi');
    h.bus.inject('$hw/events/node/other-node/membership/get', { event_id: 'm-0' });
    h.bus.inject(`${NODE}/membership/get`, { event_id: 'm-1' });
    const [r] = await h.bus.waitFor(`${NODE}/membership/get/result`);
    assert.deepEqual(r!.body, {
      event_id: 'm-1',
      timestamp: h.clock.now(),
      devices: [{ id: 'default/thermo-1', name: 'thermo-1', state: 'ok', last_online: '2026-01-02T03:04:05Z' }],
    });
    assert.equal(h.bus.on('$hw/events/node/other-node/membership/get/result').length, 0);

    h.meta.put(deviceResource('pump', 'plant'), device('pump', { namespace: 'plant', description: 'water pump', desired: {} }));
    h.meta.delete(deviceResource('pump', 'plant'));
    const updates = await h.bus.waitFor(`${NODE}/membership/updated`, 2);
    assert.deepEqual(
      updates.map((u) => ({ ...u.body, event_id: typeof u.body.event_id })),
      [
        { event_id: 'string', timestamp: h.clock.now(), added_devices: [{ id: 'plant/pump', name: 'pump', description: 'water pump' }], removed_devices: null },
        { event_id: 'string', timestamp: h.clock.now(), added_devices: null, removed_devices: [{ id: 'plant/pump', name: 'pump', description: 'water pump' }] },
      ],
    );
    h.bus.inject(`${NODE}/membership/get`, '[1,2');
    const res = await h.bus.waitFor(`${NODE}/membership/get/result`, 2);
    assert.equal(res[1]!.body.code, 400);
  } finally {
    await h.stop();
  }
});

test('a desired value changed in the cloud publishes twin/update/delta; a metadata-only change does not', async () => {
  const h = await startTwin(dir());
  try {
    const labelled = device('thermo-1');
    labelled.metadata.labels = { x: 'y' };
    h.meta.put(deviceResource('thermo-1'), labelled);
    h.meta.put(deviceResource('thermo-1'), device('thermo-1', { desired: { temperature: '45' } }));
    const [d] = await h.bus.waitFor(`${T}/twin/update/delta`);
    assert.deepEqual(d!.body.delta, { temperature: '45' });
    assert.deepEqual((d!.body.twin as Record<string, unknown>).temperature, { expected: { value: '45' }, optional: false, metadata: { type: 'int' } });
    await h.twin.core.report('default', 'thermo-1', [{ propertyName: 'temperature', reported: { value: '45' } }], 'dmi');
    // Desired met: a cloud change to another property's desired value has nothing to say about temperature.
    h.meta.put(deviceResource('thermo-1'), device('thermo-1', { desired: { temperature: '45', label: '' } }));
    assert.equal(h.bus.on(`${T}/twin/update/delta`).length, 1);
  } finally {
    await h.stop();
  }
});

test('DMI reports publish twin/update/document (apps see mapper values) but no result and no delta', async () => {
  const h = await startTwin(dir());
  try {
    await h.twin.core.report('default', 'thermo-1', [{ propertyName: 'temperature', reported: { value: '12' } }], 'dmi');
    const [doc] = await h.bus.waitFor(`${T}/twin/update/document`);
    assert.equal(doc!.body.event_id, '');
    assert.deepEqual(Object.keys(doc!.body.twin as object), ['temperature']);
    await h.twin.core.reportState('default', 'thermo-1', 'offline', 'dmi');
    await h.bus.waitFor(`${T}/state/update/result`);
    assert.equal(h.bus.on(`${T}/twin/update/result`).length, 0);
    assert.equal(h.bus.on(`${T}/twin/update/delta`).length, 0);
  } finally {
    await h.stop();
  }
});

/** Sends `payload` to twin/update and returns the result published for it. */
async function update(h: Harness, payload: unknown, topic = `${T}/twin/update`): Promise<Record<string, unknown>> {
  const resultTopic = `${topic}/result`;
  const n = h.bus.on(resultTopic).length;
  h.bus.inject(topic, payload);
  const all = await h.bus.waitFor(resultTopic, n + 1);
  return all[n]!.body;
}

test('bad input: each case answered with a KubeEdge Result and a code on twin/update/result; nothing stored', async () => {
  const h = await startTwin(dir());
  try {
    const now = h.clock.now();
    const cases: [string, unknown, number, RegExp][] = [
      ['not JSON', '{"event_id":', 400, /Unmarshal request body failed/],
      ['not an object', '[1]', 400, /not a JSON object/],
      ['no twin', { event_id: 'e' }, 400, /key:twin does not exist/],
      ['twin not an object', { event_id: 'e', twin: 5 }, 400, /twin is not an object/],
      ['value not a string', { event_id: 'e', twin: { temperature: { actual: { value: 25 } } } }, 400, /actual\.value is not a string/],
      ['event_id not a string', { event_id: 7, twin: {} }, 400, /event_id is not a string/],
      ['delete a twin', { event_id: 'e', twin: { temperature: null } }, 400, /cannot be deleted/],
      ['unknown property', { event_id: 'e', twin: { pressure: { actual: { value: '1' } } } }, 400, /has no property "pressure"/],
      ['wrong type', { event_id: 'e', twin: { temperature: { actual: { value: 'warm' } } } }, 400, /temperature is refused: "warm" is not an INT/],
      ['out of range', { event_id: 'e', twin: { temperature: { actual: { value: '1000' } } } }, 400, /above the maximum "100"/],
      ['value too long', { event_id: 'e', twin: { label: { actual: { value: 'v'.repeat(2000) } } } }, 400, /longer than 1024 bytes/],
      ['oversized payload', { event_id: 'e', twin: { label: { actual: { value: 'v'.repeat(70_000) } } } }, 413, /over twin\.maxPayloadBytes \(65536\)/],
    ];
    for (const [what, payload, code, reason] of cases) {
      const r = await update(h, payload);
      assert.equal(r.code, code, what);
      assert.match(r.reason as string, reason, what);
      assert.deepEqual(Object.keys(r).sort(), ['code', 'event_id', 'reason', 'timestamp'], what);
      assert.equal(r.timestamp, now);
      if (typeof payload === 'object' && (payload as { event_id?: unknown }).event_id === 'e' && code !== 413) assert.equal(r.event_id, 'e', `${what}: event_id echoed`);
    }
    const unknown = await update(h, { event_id: 'u', twin: { temperature: { actual: { value: '1' } } } }, '$hw/events/device/default/ghost/twin/update');
    assert.equal(unknown.code, 404);
    assert.equal(unknown.event_id, 'u');
    assert.equal(h.bus.on(`${T}/twin/update/document`).length, 0, 'no document for a refused update');
    await h.twin.flush();
    assert.equal(h.ctx.sent.length, 0, 'nothing stored nor sent');
    // Nothing else disturbed: a good update works.
    const ok = await update(h, { event_id: 'ok', twin: { temperature: { actual: { value: '50' } } } });
    assert.equal(ok.code, undefined);
    assert.equal(ok.event_id, 'ok');
  } finally {
    await h.stop();
  }
});

test('bad input is logged once per device per kind of problem, not per message', async () => {
  const h = await startTwin(dir());
  try {
    for (let i = 0; i < 5; i++) await update(h, '{bad json');
    for (let i = 0; i < 5; i++) await update(h, { twin: { temperature: { actual: { value: 'x' } } } });
    for (let i = 0; i < 3; i++) await update(h, { twin: {} }, '$hw/events/device/default/ghost/twin/update');
    assert.equal(linesWith(h.lines, ErrorCode.DeviceInvalid, /thermo-1 refused \(400\): Unmarshal/).length, 1);
    assert.equal(linesWith(h.lines, ErrorCode.DeviceInvalid, /thermo-1 refused \(400\): device/).length, 1);
    assert.equal(linesWith(h.lines, ErrorCode.DeviceUnknown, /ghost/).length, 1);
    // After the window, once more, with the count.
    h.clock.advance(11 * 60_000);
    await update(h, '{bad json');
    const again = linesWith(h.lines, ErrorCode.DeviceInvalid, /thermo-1 refused \(400\): Unmarshal/);
    assert.equal(again.length, 2);
    assert.match(again[1]!.msg, /4 more since the last line/);
  } finally {
    await h.stop();
  }
});

test('a flood from one device: past 16 waiting messages the rest are answered 429 at once; other devices unaffected; memory bounded', async () => {
  const h = await startTwin(dir(), { meta: metaWith('thermo-1', 'thermo-2') });
  try {
    for (let i = 0; i < 100; i++) h.bus.inject(`${T}/twin/update`, { event_id: `f-${i}`, twin: { temperature: { actual: { value: String(i % 100) } } } });
    h.bus.inject('$hw/events/device/default/thermo-2/twin/update', { event_id: 'calm', twin: { temperature: { actual: { value: '3' } } } });
    const results = await h.bus.waitFor(`${T}/twin/update/result`, 100);
    const busy = results.filter((r) => r.body.code === 429);
    assert.equal(busy.length, 84);
    assert.equal(results.filter((r) => r.body.code === undefined).length, 16);
    assert.deepEqual(busy[0]!.body.event_id, 'f-16');
    const [calm] = await h.bus.waitFor('$hw/events/device/default/thermo-2/twin/update/result');
    assert.equal(calm!.body.code, undefined);
    assert.equal(linesWith(h.lines, ErrorCode.QueueFull).length, 1, 'one line for the flood');
    // The handled ones were applied in order: the last accepted value is the 16th.
    await h.twin.flush();
    const t1 = h.ctx
      .batches()
      .flatMap((b) => b.reports)
      .find((r) => r.name === 'thermo-1')!;
    assert.equal(t1.twins![0]!.reported!.value, '15');
  } finally {
    await h.stop();
  }
});

test('results follow the order of the updates of one device', async () => {
  const h = await startTwin(dir());
  try {
    for (let i = 0; i < 10; i++) h.bus.inject(`${T}/twin/update`, { event_id: `o-${i}`, twin: { temperature: { actual: { value: String(i) } } } });
    const results = await h.bus.waitFor(`${T}/twin/update/result`, 10);
    assert.deepEqual(
      results.map((r) => r.body.event_id),
      Array.from({ length: 10 }, (_, i) => `o-${i}`),
    );
    await eventually(() => h.twin.stats().mqtt?.received === 10, 5000, 'all received');
  } finally {
    await h.stop();
  }
});

test('a flood over many devices: maxPendingMessages bounds what waits; problem lines are capped per minute over all devices', async () => {
  const h = await startTwin(dir(), { options: { maxPendingMessages: 20 } });
  try {
    // 200 messages naming 200 devices the node does not hold.
    for (let i = 0; i < 200; i++) h.bus.inject(`$hw/events/device/default/ghost-${i}/twin/update`, { event_id: `g-${i}`, twin: {} });
    await eventually(() => (h.twin.stats().mqtt?.refused ?? 0) === 200, 5000, 'every message answered');
    const codes = h.bus.published.map((p) => p.body.code);
    // The burst arrives in one tick: 20 wait to be handled, the rest are refused at once (429); the
    // answers themselves are bounded too (2 × maxPendingMessages publishes in flight), the rest dropped.
    assert.equal(codes.length, 40);
    assert.equal(codes.filter((c) => c === 429).length, 40);
    assert.equal(h.twin.stats().mqtt?.dropped, 160);
    assert.equal(linesWith(h.lines, ErrorCode.QueueFull).length, 1, 'the flood of the node: one line, not one per device');
    assert.equal(linesWith(h.lines, ErrorCode.Mqtt, /answers are dropped/).length, 1);
    assert.equal(linesWith(h.lines, ErrorCode.DeviceUnknown).length, 18, 'the handled ones: one line per device, up to the ceiling');
    const warns = h.lines.filter((l) => l.level === 'warn');
    assert.equal(warns.length, 20, 'at most 20 problem lines a minute');
    h.clock.advance(61_000);
    h.bus.inject('$hw/events/device/default/ghost-x/twin/update', { twin: {} });
    await eventually(() => h.lines.some((l) => /more device problems were not logged in the last minute/.test(l.msg)), 5000, 'the summary line');
  } finally {
    await h.stop();
  }
});
