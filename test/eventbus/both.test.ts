/**
 * Mode `both`: the embedded broker and an external Mosquitto, bridged on `$hw/events/#`. A device
 * message on either side reaches the other side once and DeviceTwin's handler once; what the bus
 * publishes reaches both sides once and not its handler; topics outside the bridge stay where they
 * are. "Once" is checked by publishing a marker after each message: a loop or an echo would put a
 * second copy before the marker.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { tempDir } from '../helpers/files.js';
import { eventually } from '../helpers/process.js';
import { captureLog, collector, mosquittoSkipReason, mqttPub, mqttSub, startBus, startMosquitto, type Mosquitto, type RunningBus } from './helpers.js';

const skip = mosquittoSkipReason();

describe('mode both: embedded broker bridged to Mosquitto', { skip }, () => {
  const dir = tempDir('ledge-eventbus-both-');
  const logs = captureLog();
  let mosquitto: Mosquitto;
  let running: RunningBus;
  let inner: number;
  let outer: number;
  const twin = collector();

  before(async () => {
    mosquitto = await startMosquitto({ dir: dir.path });
    outer = mosquitto.port;
    running = await startBus({ mode: 'both', external: { url: `mqtt://127.0.0.1:${outer}` } }, logs.log);
    inner = running.bus.address()!.port;
    running.bus.subscribe('$hw/events/device/+/+/twin/update', twin.handler);
    await eventually(() => running.bus.stats().external?.subscriptions.includes('$hw/events/#'), 15_000, 'the bridge subscription on Mosquitto');
  });
  after(async () => {
    await running.stop();
    await mosquitto.stop();
    dir.cleanup();
  });

  const topic = (name: string) => `$hw/events/device/default/${name}/twin/update`;

  it('a device on the embedded broker reaches Mosquitto once, and the handler once', async () => {
    const sub = await mqttSub({ port: outer }, '$hw/events/device/default/in1/#');
    try {
      const before = twin.got.length;
      await mqttPub({ port: inner }, topic('in1'), 'A');
      await mqttPub({ port: inner }, topic('in1'), 'marker');
      assert.deepEqual(await sub.waitLines(2), [`${topic('in1')} A`, `${topic('in1')} marker`]);
      await eventually(() => twin.got.length === before + 2, 10_000, 'the handler');
      assert.deepEqual(
        twin.got.slice(before).map((m) => m.payload),
        ['A', 'marker'],
      );
    } finally {
      await sub.stop();
    }
  });

  it('a device on Mosquitto reaches the embedded broker once, and the handler once', async () => {
    const sub = await mqttSub({ port: inner }, '$hw/events/device/default/out1/#');
    try {
      const before = twin.got.length;
      await mqttPub({ port: outer }, topic('out1'), 'B');
      await mqttPub({ port: outer }, topic('out1'), 'marker');
      assert.deepEqual(await sub.waitLines(2), [`${topic('out1')} B`, `${topic('out1')} marker`]);
      await eventually(() => twin.got.length === before + 2, 10_000, 'the handler');
      assert.deepEqual(
        twin.got.slice(before).map((m) => m.payload),
        ['B', 'marker'],
      );
    } finally {
      await sub.stop();
    }
  });

  it('what the bus publishes reaches both sides once and not its own handler', async () => {
    const a = await mqttSub({ port: inner }, '$hw/events/device/default/own/#');
    const b = await mqttSub({ port: outer }, '$hw/events/device/default/own/#');
    try {
      const before = twin.got.length;
      await running.bus.publish(topic('own'), 'C');
      await mqttPub({ port: inner }, topic('own'), 'marker-in');
      await mqttPub({ port: outer }, topic('own'), 'marker-out');
      const expected = [`${topic('own')} C`, `${topic('own')} marker-in`, `${topic('own')} marker-out`];
      // Our message first, then both markers (in either order: one of them crossed the bridge).
      for (const sub of [a, b]) {
        const lines = await sub.waitLines(3);
        assert.equal(lines[0], expected[0]);
        assert.deepEqual([...lines].sort(), [...expected].sort());
      }
      await eventually(() => twin.got.length === before + 2, 10_000, 'the two markers');
      assert.deepEqual(
        twin.got.slice(before).map((m) => m.payload),
        ['marker-in', 'marker-out'],
      );
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('topics outside bridgeTopics stay on their broker', async () => {
    const sub = await mqttSub({ port: outer }, 'local/#');
    try {
      await mqttPub({ port: inner }, 'local/x', 'stays');
      await mqttPub({ port: outer }, 'local/x', 'marker');
      assert.deepEqual(await sub.waitLines(1), ['local/x marker']);
      const s = running.bus.stats();
      assert.equal(s.bridgedOut, 3, 'in1 A, in1 marker, own marker-in');
      assert.equal(s.bridgedIn, 3, 'out1 B, out1 marker, own marker-out');
    } finally {
      await sub.stop();
    }
  });
});
