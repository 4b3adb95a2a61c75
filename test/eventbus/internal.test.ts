/**
 * The embedded broker (real aedes on a loopback port) driven by Mosquitto's own clients,
 * mosquitto_pub and mosquitto_sub, as independent devices: messages both ways, our own publishes
 * not handed back, the limits (packet size, publish rate, clients) and hostile bytes, which
 * disturb nobody else and never the process.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt-packet';
import { MqttError, StoppedError } from '../../shared/errors/index.js';
import { tempDir } from '../helpers/files.js';
import { eventually, within } from '../helpers/process.js';
import { captureLog, collector, mosquittoSkipReason, mqttPub, mqttSub, startBus, type RunningBus } from './helpers.js';

const skip = mosquittoSkipReason();

describe('embedded broker (aedes) with mosquitto_pub / mosquitto_sub', { skip }, () => {
  const dir = tempDir('ledge-eventbus-');
  after(() => dir.cleanup());

  describe('messages', () => {
    const logs = captureLog();
    let running: RunningBus;
    let port: number;
    before(async () => {
      running = await startBus({ mode: 'internal' }, logs.log);
      port = running.bus.address()!.port;
    });
    after(() => running.stop());

    it('hands a device publish to the subscribers whose filter matches, with its QoS and retain flag', async () => {
      const twin = collector();
      const all = collector();
      const off = running.bus.subscribe('$hw/events/device/+/+/twin/update', twin.handler);
      const offAll = running.bus.subscribe('$hw/events/#', all.handler);
      try {
        assert.equal((await mqttPub({ port, qos: 1 }, '$hw/events/device/default/dev1/twin/update', '{"twin":{}}')).code, 0);
        assert.equal((await mqttPub({ port, qos: 0 }, '$hw/events/device/default/dev1/state/update', 'online', ['-r'])).code, 0);
        await eventually(() => all.got.length === 2, 10_000, 'two messages');
        assert.deepEqual(twin.got, [{ topic: '$hw/events/device/default/dev1/twin/update', payload: '{"twin":{}}', qos: 1, retain: false }]);
        assert.deepEqual(all.got[1], { topic: '$hw/events/device/default/dev1/state/update', payload: 'online', qos: 0, retain: true });
      } finally {
        off();
        offAll();
      }
    });

    it('a burst of QoS 1 publishes, then DISCONNECT and close once all are acknowledged: every one delivered, in order', async () => {
      // (QoS 0 gives no such promise: aedes drops the connection at DISCONNECT or FIN while earlier
      // QoS 0 publishes of the same read are still in flight; docs/devices.md, "EventBus".)
      const N = 1500;
      const c = collector();
      const off = running.bus.subscribe('burst/#', c.handler);
      try {
        const connectPacket = mqtt.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'burst', clean: true, keepalive: 0 });
        const publishes = Array.from({ length: N }, (_, i) =>
          mqtt.generate({ cmd: 'publish', topic: `burst/${i}`, payload: Buffer.from(`{"i":${i}}`), qos: 1, messageId: i + 1, retain: false, dup: false }),
        );
        await within(
          new Promise<void>((resolve, reject) => {
            const parser = mqtt.parser();
            let acked = 0;
            const s = connect(port, '127.0.0.1', () => s.write(connectPacket));
            parser.on('packet', (p) => {
              if (p.cmd === 'connack') s.write(Buffer.concat(publishes));
              else if (p.cmd === 'puback' && ++acked === N) s.end(mqtt.generate({ cmd: 'disconnect' }));
            });
            s.on('data', (d) => parser.parse(d));
            s.on('error', reject);
            s.on('close', () => (acked === N ? resolve() : reject(new Error(`closed after ${acked} PUBACKs`))));
          }),
          15_000,
          'the burst connection to be acknowledged and end',
        );
        await eventually(() => c.got.length === N, 10_000, `all ${N} messages (have ${c.got.length})`);
        assert.deepEqual(
          c.got.map((m) => m.topic),
          Array.from({ length: N }, (_, i) => `burst/${i}`),
          'in order',
        );
      } finally {
        off();
      }
    });

    it('publishes to devices at QoS 1 by default, and does not hand its own publishes to its subscribers', async () => {
      const own = collector();
      const off = running.bus.subscribe('$hw/events/#', own.handler);
      const sub = await mqttSub({ port, qos: 1 }, '$hw/events/device/+/+/twin/update/delta');
      try {
        await running.bus.publish('$hw/events/device/default/dev1/twin/update/delta', '{"delta":{"t":"1"}}');
        const lines = await sub.waitLines(1);
        assert.deepEqual(lines, ['$hw/events/device/default/dev1/twin/update/delta {"delta":{"t":"1"}}']);
        // The QoS the subscriber got: mosquitto_sub -d prints it (q1).
        assert.match(sub.trace(), /received PUBLISH \(d0, q1/, 'delivered at QoS 1');
        // A device publish after ours arrives: ours was not handed back before it.
        await mqttPub({ port }, '$hw/events/device/default/dev1/twin/update', 'marker');
        await eventually(() => own.got.length > 0, 10_000, 'the marker');
        assert.deepEqual(
          own.got.map((m) => m.payload),
          ['marker'],
        );
      } finally {
        off();
        await sub.stop();
      }
    });

    it('stops handing messages to a handler once it unsubscribed; a retained publish reaches a later subscriber', async () => {
      const c = collector();
      const off = running.bus.subscribe('t/+', c.handler);
      off();
      off();
      const keep = collector();
      const offKeep = running.bus.subscribe('t/#', keep.handler);
      await mqttPub({ port }, 't/a', 'x');
      await eventually(() => keep.got.length === 1, 10_000, 'the message');
      assert.equal(c.got.length, 0);
      offKeep();
      await running.bus.publish('retained/config', 'v1', { retain: true });
      const sub = await mqttSub({ port }, 'retained/#', ['-C', '1']);
      assert.deepEqual(await sub.waitLines(1), ['retained/config v1']);
      await sub.stop();
    });

    it('refuses to publish to a wildcard or an over-size message, with MqttError', async () => {
      await assert.rejects(running.bus.publish('a/#', 'x'), MqttError);
      await assert.rejects(running.bus.publish('a', Buffer.alloc(300 * 1024)), MqttError);
      assert.throws(() => running.bus.subscribe('a/#/b', () => {}), MqttError);
    });
  });

  describe('limits', () => {
    const logs = captureLog();
    let running: RunningBus;
    let port: number;
    before(async () => {
      running = await startBus({ mode: 'internal', internal: { maxPacketBytes: 64 * 1024, publishesPerSecond: 20, publishBurst: 20, maxClients: 4 } }, logs.log);
      port = running.bus.address()!.port;
    });
    after(() => running.stop());

    it('disconnects a client whose packet is over maxPacketBytes (one log line), and nobody else', async () => {
      const got = collector();
      const off = running.bus.subscribe('big/#', got.handler);
      const bystander = await mqttSub({ port }, 'big/#');
      try {
        const file = join(dir.path, 'big.bin');
        writeFileSync(file, Buffer.alloc(100 * 1024, 0x41));
        const results = [];
        for (const id of ['big-a', 'big-a', 'big-b']) results.push(await mqttPub({ port, id }, 'big/one', undefined, ['-f', file]));
        for (const r of results) assert.notEqual(r.code, 0, 'mosquitto_pub sees the connection end');
        await mqttPub({ port }, 'big/small', 'fits');
        assert.deepEqual(await bystander.waitLines(1), ['big/small fits']);
        await eventually(() => got.got.length === 1, 10_000, 'the small message');
        assert.deepEqual(
          got.got.map((m) => m.topic),
          ['big/small'],
        );
        const lines = logs.matching(/disconnected: packet of \d+ bytes is over the limit of 65536/);
        assert.deepEqual(
          lines.map((l) => [l.clientId, l.code]),
          [
            ['big-a', 'LEDGE_ERR_MQTT'],
            ['big-b', 'LEDGE_ERR_MQTT'],
          ],
          'one line per client within a minute',
        );
        assert.equal(running.bus.stats().internal?.oversized, 3);
      } finally {
        off();
        await bystander.stop();
      }
    });

    it('drops what a flooding client publishes over its rate (logged once), while another client gets through', async () => {
      const flood = collector();
      const calm = collector();
      const offFlood = running.bus.subscribe('flood/#', flood.handler);
      const offCalm = running.bus.subscribe('calm/#', calm.handler);
      try {
        const before = running.bus.stats().internal!.rateDropped;
        const r = await mqttPub({ port, qos: 1, id: 'flooder' }, 'flood/x', 'f', ['--repeat', '500']);
        assert.equal(r.code, 0, `every publish is acknowledged: ${r.err}`);
        for (let i = 0; i < 5; i++) assert.equal((await mqttPub({ port, qos: 1, id: `calm-${i}` }, 'calm/x', String(i))).code, 0);
        await eventually(() => calm.got.length === 5, 10_000, 'the calm messages');
        assert.deepEqual(
          calm.got.map((m) => m.payload),
          ['0', '1', '2', '3', '4'],
        );
        const dropped = running.bus.stats().internal!.rateDropped - before;
        assert.ok(dropped >= 400, `most of the flood was dropped (${dropped})`);
        assert.equal(flood.got.length + dropped, 500, 'every publish was either delivered or dropped');
        const lines = logs.matching(/publishes faster than 20\/s/);
        assert.equal(lines.length, 1, 'logged once for the flooder');
        assert.equal(lines[0]!.clientId, 'flooder');
      } finally {
        offFlood();
        offCalm();
      }
    });

    it('refuses a client past maxClients with CONNACK 3 and accepts again once one left', async () => {
      const subs = [];
      for (let i = 0; i < 4; i++) subs.push(await mqttSub({ port, id: `held-${i}` }, `held/${i}`));
      const refused = await mqttPub({ port, id: 'one-too-many' }, 'x', 'y');
      assert.notEqual(refused.code, 0);
      assert.match(refused.err, /unavailable/i);
      assert.equal(logs.matching(/refused a client \(CONNACK 3\): 4 clients are connected/).length, 1);
      await subs.pop()!.stop();
      await eventually(async () => (await mqttPub({ port, id: 'now-fits' }, 'x', 'y')).code === 0, 10_000, 'a client to fit again');
      for (const s of subs) await s.stop();
    });

    it('survives hostile bytes: garbage, a malformed length, a half packet, and keeps serving', async () => {
      const sock = (bytes: Buffer) =>
        within(
          new Promise<void>((resolve) => {
            const s = connect(port, '127.0.0.1', () => s.end(bytes));
            s.resume();
            s.on('error', () => resolve());
            s.on('close', () => resolve());
          }),
          10_000,
          'the hostile connection to end',
        );
      await sock(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]));
      await sock(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      await sock(
        Buffer.concat([mqtt.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'h', clean: true, keepalive: 0 }), Buffer.from([0x32, 0x10, 0x00])]),
      );
      const rand = Buffer.alloc(4096);
      for (let i = 0; i < rand.length; i++) rand[i] = (i * 7919) & 0xff;
      await sock(rand);
      const c = collector();
      const off = running.bus.subscribe('still/#', c.handler);
      await mqttPub({ port }, 'still/here', 'yes');
      await eventually(() => c.got.length === 1, 10_000, 'a message after the hostile ones');
      off();
    });
  });

  describe('a client that floods and closes', () => {
    const logs = captureLog();
    let running: RunningBus;
    let port: number;
    before(async () => {
      running = await startBus({ mode: 'internal', internal: { publishesPerSecond: 1_000_000, publishBurst: 1_000_000 } }, logs.log);
      port = running.bus.address()!.port;
    });
    after(() => running.stop());

    it('every message it sent before its FIN is delivered, QoS 0 too, though the broker had not read them when the socket closed', async () => {
      const N = 20_000;
      const c = collector();
      const off = running.bus.subscribe('flood/#', c.handler);
      try {
        const pad = 'x'.repeat(80);
        const packets = [mqtt.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'flood-close', clean: true, keepalive: 0 })];
        for (let i = 0; i < N; i++) packets.push(mqtt.generate({ cmd: 'publish', topic: `flood/${i}`, payload: Buffer.from(`${i} ${pad}`), qos: 0, retain: false, dup: false }));
        packets.push(mqtt.generate({ cmd: 'disconnect' }));
        await within(
          new Promise<void>((resolve) => {
            // After CONNACK, ~2 MB in one write, then FIN: far more than the broker reads at once (its reads are paused meanwhile).
            const s = connect(port, '127.0.0.1', () => s.write(packets[0]!));
            s.once('data', () => s.end(Buffer.concat(packets.slice(1))));
            s.resume();
            s.on('error', () => resolve());
            s.on('close', () => resolve());
          }),
          15_000,
          'the flooding connection to end',
        );
        await eventually(() => c.got.length === N, 20_000, `all ${N} messages (have ${c.got.length}) ${JSON.stringify(logs.matching(/./))}`);
        assert.equal(c.got[N - 1]!.topic, `flood/${N - 1}`);
      } finally {
        off();
      }
    });
  });

  it('a taken port: one error line, in-process publish and subscribe work meanwhile, and it listens once the port is free', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const taken = (blocker.address() as { port: number }).port;
    const logs = captureLog();
    const running = await startBus({ mode: 'internal', internal: { port: taken } }, logs.log, { listening: false });
    try {
      await eventually(() => logs.matching(/MQTT broker cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/).length === 1, 10_000, 'the listen error line');
      assert.equal(running.bus.address(), undefined);
      await running.bus.publish('meanwhile', 'ok');
      await new Promise<void>((r) => blocker.close(() => r()));
      await eventually(() => running.bus.address()?.port === taken, 15_000, 'the broker to listen on the freed port');
      const c = collector();
      running.bus.subscribe('late/#', c.handler);
      await mqttPub({ port: taken }, 'late/x', 'y');
      await eventually(() => c.got.length === 1, 10_000, 'a message once listening');
      assert.equal(logs.matching(/cannot listen/).length, 1, 'the retries are debug lines');
    } finally {
      await running.stop();
    }
  });

  it('publish waits for the bus to start and rejects with StoppedError once it stopped; mode off does nothing', async () => {
    const logs = captureLog();
    const running = await startBus({ mode: 'internal' }, logs.log);
    await running.stop();
    await assert.rejects(running.bus.publish('a', 'b'), StoppedError);
    const off = await startBus({ mode: 'off' }, logs.log);
    const c = collector();
    off.bus.subscribe('#', c.handler);
    await off.bus.publish('a', 'b');
    assert.equal(off.bus.address(), undefined);
    assert.equal(off.bus.stats().internal, undefined);
    await off.stop();
  });
});
