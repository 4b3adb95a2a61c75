// The MQTT-only example device (examples/mqtt-device/device.mjs) as a real process against a
// real broker (aedes on 127.0.0.1, ephemeral port), observed and driven with mqtt.js: KubeEdge's
// twin/update payload shape, state/update, twin/get at start, desired values from twin/get/result
// and from twin/update/delta applied and reported, malformed input ignored, SIGTERM.
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { describe, test } from 'node:test';
import { Aedes } from 'aedes';
import { connect, type MqttClient } from 'mqtt';
import { exitCode, startProcess } from '../helpers/process.js';
import { Waiter } from './fakes.js';

interface Received {
  topic: string;
  body: Record<string, unknown>;
}

describe('MQTT example device', () => {
  test('publishes twin actuals in KubeEdge shape and applies desired values from twin/get and deltas', async () => {
    const broker = await Aedes.createBroker();
    const server: Server = createServer(broker.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const seen: Received[] = [];
    const waiter = new Waiter();
    let app: MqttClient | undefined;
    const base = '$hw/events/device/default/thermo-1';
    const proc = startProcess(
      [
        'examples/mqtt-device/device.mjs',
        '--broker',
        `mqtt://127.0.0.1:${port}`,
        '--name',
        'thermo-1',
        '--interval',
        '0.05',
        '--property',
        'temperature:float',
        '--property',
        'power:boolean',
      ],
      {},
      'mqtt-device',
    );
    try {
      app = connect(`mqtt://127.0.0.1:${port}`, { clientId: 'test-app', reconnectPeriod: 100 });
      app.on('message', (topic, payload) => {
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(payload.toString()) as Record<string, unknown>;
        } catch {
          // what the test itself publishes malformed on purpose
        }
        seen.push({ topic, body });
        waiter.notify();
      });
      await app.subscribeAsync([`${base}/twin/update`, `${base}/twin/get`, `${base}/state/update`], { qos: 1 });
      const updates = () => seen.filter((m) => m.topic === `${base}/twin/update`);
      type Twin = Record<string, { actual?: { value?: string }; metadata?: { type?: string } }>;
      const twinOf = (m: Received) => m.body.twin as Twin;

      // twin/get comes first (the device asks for its desired values), then updates every interval.
      await waiter.waitFor(() => seen.some((m) => m.topic === `${base}/twin/get`) && updates().length >= 2, 'twin/get and two updates');
      const first = updates()[0]!;
      assert.equal(first.body.event_id, '');
      assert.equal(typeof first.body.timestamp, 'number');
      const twin = twinOf(first);
      assert.match(twin.temperature?.actual?.value ?? '', /^-?\d+(\.\d+)?$/);
      assert.equal(twin.temperature?.metadata?.type, 'float');
      assert.equal(twin.power?.actual?.value, 'false');
      assert.equal(twin.power?.metadata?.type, 'boolean');
      await waiter.waitFor(() => seen.some((m) => m.topic === `${base}/state/update` && m.body.state === 'online'), 'state online');

      // The node answers twin/get with the twin document: expected values are applied.
      await app.publishAsync(
        `${base}/twin/get/result`,
        JSON.stringify({ event_id: '', timestamp: Date.now(), twin: { power: { expected: { value: 'true' }, metadata: { type: 'boolean' } } } }),
        { qos: 1 },
      );
      await waiter.waitFor(() => updates().some((m) => twinOf(m).power?.actual?.value === 'true'), 'power true reported');

      // Malformed and wrong-typed deltas are ignored; the device keeps reporting.
      await app.publishAsync(`${base}/twin/update/delta`, 'not json', { qos: 1 });
      await app.publishAsync(`${base}/twin/update/delta`, JSON.stringify({ delta: { temperature: 'hot', nothing: '1' } }), { qos: 1 });
      // A delta: the setpoint is taken and reported at once, and held (no drift).
      await app.publishAsync(`${base}/twin/update/delta`, JSON.stringify({ event_id: 'e1', timestamp: Date.now(), twin: {}, delta: { temperature: '30' } }), { qos: 1 });
      await waiter.waitFor(() => updates().filter((m) => twinOf(m).temperature?.actual?.value === '30').length >= 3, 'temperature 30 reported and held');
      const after30 = updates().slice(updates().findIndex((m) => twinOf(m).temperature?.actual?.value === '30'));
      assert.ok(after30.every((m) => twinOf(m).temperature?.actual?.value === '30'));
      assert.match(proc.output(), /temperature="hot" is not a float; ignored/);
      assert.match(proc.output(), /nothing is not a property of this device; ignored/);

      proc.child.kill('SIGTERM');
      assert.equal(await exitCode(proc, 10_000, 'the device to stop'), 0);
    } finally {
      await proc.kill9();
      await app?.endAsync(true);
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
