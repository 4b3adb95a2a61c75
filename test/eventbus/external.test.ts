/**
 * The external-broker client against a real Mosquitto the test starts (its own config on a
 * loopback port): messages both ways with mosquitto_pub / mosquitto_sub, our own publishes not
 * handed back, one subscription per covering filter, user/password and TLS with a client
 * certificate, a refused CONNECT (one clear line, retries with backoff, the process keeps
 * running), the broker frozen, killed and restarted (reconnect, resubscribe, QoS 1 messages
 * resent and not lost), and a message over maxPacketBytes from the broker (dropped and
 * acknowledged). The reconnect backoff itself runs on fake timers.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it, mock } from 'node:test';
import { MqttClient } from '../../edge/eventbus/client.js';
import { defaultEventBusOptions } from '../../edge/eventbus/index.js';
import { silentLogger } from '../../shared/log/index.js';
import { tempDir } from '../helpers/files.js';
import { eventually } from '../helpers/process.js';
import { captureLog, collector, mosquittoSkipReason, mqttPub, mqttSub, run, startBus, startMosquitto, type Mosquitto, type RunningBus } from './helpers.js';

const skip = mosquittoSkipReason();

/** The bus is connected and the broker granted `filters`. */
function subscribed(running: RunningBus, filters: string[]): Promise<true> {
  return eventually(
    () => {
      const e = running.bus.stats().external;
      return e?.connected === true && filters.every((f) => e.subscriptions.includes(f));
    },
    15_000,
    `the external broker to grant ${filters.join(', ')}`,
  ) as Promise<true>;
}

describe('external broker (Mosquitto)', { skip }, () => {
  const dir = tempDir('ledge-eventbus-ext-');
  after(() => dir.cleanup());

  describe('plain', () => {
    const logs = captureLog();
    let broker: Mosquitto;
    let running: RunningBus;
    before(async () => {
      broker = await startMosquitto({ dir: dir.path });
      running = await startBus({ mode: 'external', external: { url: `mqtt://127.0.0.1:${broker.port}` } }, logs.log);
    });
    after(async () => {
      await running.stop();
      await broker.stop();
    });

    it('receives device messages once per handler although two filters overlap (one SUBSCRIBE for both)', async () => {
      const all = collector();
      const twin = collector();
      const off1 = running.bus.subscribe('$hw/events/#', all.handler);
      const off2 = running.bus.subscribe('$hw/events/device/+/+/twin/update', twin.handler);
      try {
        await subscribed(running, ['$hw/events/#']);
        assert.deepEqual(running.bus.stats().external!.subscriptions, ['$hw/events/#'], 'the covered filter is not subscribed on its own');
        await mqttPub({ port: broker.port }, '$hw/events/device/default/d1/twin/update', 'a');
        await mqttPub({ port: broker.port }, '$hw/events/device/default/d1/state/update', 'marker');
        await eventually(() => all.got.length >= 2, 10_000, 'two messages');
        assert.deepEqual(
          all.got.map((m) => m.payload),
          ['a', 'marker'],
        );
        assert.deepEqual(twin.got, [{ topic: '$hw/events/device/default/d1/twin/update', payload: 'a', qos: 1, retain: false }]);
      } finally {
        off1();
        off2();
      }
    });

    it('publishes to devices, and swallows the echo of its own publish on a topic it subscribes to', async () => {
      const own = collector();
      const off = running.bus.subscribe('echo/#', own.handler);
      const sub = await mqttSub({ port: broker.port }, 'echo/#');
      try {
        await subscribed(running, ['echo/#']);
        await running.bus.publish('echo/out', 'ours');
        await running.bus.publish('echo/out', 'ours-qos0', { qos: 0 });
        assert.deepEqual(await sub.waitLines(2), ['echo/out ours', 'echo/out ours-qos0']);
        await mqttPub({ port: broker.port }, 'echo/out', 'ours');
        await eventually(() => own.got.length > 0, 10_000, 'the device message');
        assert.deepEqual(
          own.got.map((m) => m.payload),
          ['ours'],
          'the device publish with the same payload is handed over; our two publishes were not',
        );
        assert.equal(running.bus.stats().echoesSwallowed, 2);
      } finally {
        off();
        await sub.stop();
      }
    });
  });

  it('user and password: a wrong one is one clear error line and retries with backoff; the right one connects', async () => {
    const broker = await startMosquitto({ dir: dir.path, users: { device: 's3cret' } });
    const logs = captureLog();
    const bad = await startBus(
      { mode: 'external', external: { url: `mqtt://127.0.0.1:${broker.port}`, username: 'device', password: 'wrong', reconnectBaseMs: 20, reconnectMaxMs: 100 } },
      logs.log,
    );
    const good = await startBus({ mode: 'external', external: { url: `mqtt://device:s3cret@127.0.0.1:${broker.port}` } }, captureLog().log);
    try {
      await eventually(() => (bad.bus.stats().external?.connectFailures ?? 0) >= 4, 15_000, 'several refused attempts');
      const errors = logs.lines().filter((l) => l.level === 'error');
      assert.equal(errors.length, 1, `one error line for the same refusal: ${JSON.stringify(errors)}`);
      assert.match(
        errors[0]!.msg,
        new RegExp(
          `external MQTT broker mqtt://127.0.0.1:${broker.port} refused the connection: (not authorized|bad user name or password) \\(CONNACK [45]\\); retrying in \\d+ ms`,
        ),
      );
      assert.equal(errors[0]!.code, 'LEDGE_ERR_MQTT');
      const c = collector();
      good.bus.subscribe('auth/#', c.handler);
      await subscribed(good, ['auth/#']);
      await mqttPub({ port: broker.port, user: 'device', password: 's3cret' }, 'auth/x', 'in');
      await eventually(() => c.got.length === 1, 10_000, 'a message through the authenticated client');
      assert.equal(bad.bus.externalConnected(), false);
    } finally {
      await bad.stop();
      await good.stop();
      await broker.stop();
    }
  });

  it('TLS with a client certificate (mqtts://, caFile, certFile, keyFile); a wrong CA is refused with a clear line', async () => {
    const certs = await makeCerts(dir.path);
    const broker = await startMosquitto({ dir: dir.path, tls: { ca: certs.ca, cert: certs.serverCert, key: certs.serverKey, requireCertificate: true } });
    const url = `mqtts://127.0.0.1:${broker.port}`;
    const logs = captureLog();
    const good = await startBus({ mode: 'external', external: { url, caFile: certs.ca, certFile: certs.clientCert, keyFile: certs.clientKey } }, logs.log);
    const wrongCaLogs = captureLog();
    const wrongCa = await startBus(
      { mode: 'external', external: { url, caFile: certs.otherCa, certFile: certs.clientCert, keyFile: certs.clientKey, reconnectBaseMs: 50 } },
      wrongCaLogs.log,
    );
    try {
      const c = collector();
      good.bus.subscribe('tls/#', c.handler);
      await subscribed(good, ['tls/#']);
      const tlsFlags = { port: broker.port, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } };
      const sub = await mqttSub(tlsFlags, 'tls/out');
      await good.bus.publish('tls/out', 'over tls');
      assert.deepEqual(await sub.waitLines(1), ['tls/out over tls']);
      await sub.stop();
      await mqttPub(tlsFlags, 'tls/in', 'device');
      await eventually(() => c.got.length === 1, 10_000, 'a message over TLS');
      await eventually(
        () => wrongCaLogs.matching(/cannot connect to the external MQTT broker mqtts:\/\/127\.0\.0\.1:\d+: .*(self.signed|unable to verify|certificate)/i).length > 0,
        10_000,
        'the TLS error line',
      );
      assert.equal(wrongCa.bus.externalConnected(), false);
    } finally {
      await good.stop();
      await wrongCa.stop();
      await broker.stop();
    }
  });

  it('broker frozen, killed and restarted: reconnects, resubscribes, and QoS 1 messages sent meanwhile are not lost', async () => {
    const first = await startMosquitto({ dir: dir.path });
    const port = first.port;
    const logs = captureLog();
    const running = await startBus(
      { mode: 'external', external: { url: `mqtt://127.0.0.1:${port}`, keepaliveSeconds: 1, connectTimeoutMs: 1000, reconnectBaseMs: 100, reconnectMaxMs: 500 } },
      logs.log,
    );
    let second: Mosquitto | undefined;
    try {
      const c = collector();
      running.bus.subscribe('r/#', c.handler);
      await subscribed(running, ['r/#']);
      // Frozen: the publish is written, no PUBACK comes.
      first.pause();
      const whileFrozen = running.bus.publish('r/frozen', 'v1', { retain: true });
      await eventually(() => running.bus.stats().external!.published >= 1, 5000, 'the publish to be written');
      await eventually(() => !running.bus.externalConnected(), 10_000, 'the keepalive to notice the frozen broker');
      assert.ok(logs.matching(/did not answer PINGREQ within 1 s/).length >= 1, 'the keepalive says why it reconnects');
      await first.kill9();
      const whileDown = running.bus.publish('r/down', 'v2', { retain: true });
      await eventually(() => running.bus.stats().external!.pending === 2, 5000, 'both publishes to wait');
      second = await startMosquitto({ dir: dir.path, port });
      await within2(Promise.all([whileFrozen, whileDown]), 'both publishes to be acknowledged by the new broker');
      assert.ok(running.bus.stats().external!.resent >= 1, 'the unacknowledged one was sent again (DUP)');
      const sub = await mqttSub({ port }, 'r/#', ['-C', '2']);
      assert.deepEqual((await sub.waitLines(2)).sort(), ['r/down v2', 'r/frozen v1']);
      await subscribed(running, ['r/#']);
      await mqttPub({ port }, 'r/after', 'again');
      await eventually(() => c.got.some((m) => m.topic === 'r/after'), 10_000, 'a message after the restart (resubscribed)');
      assert.ok(logs.matching(/^connected to the external MQTT broker/).length >= 2);
    } finally {
      await running.stop();
      await first.stop();
      await second?.stop();
    }
  });

  it('a message from the broker over maxPacketBytes is acknowledged and dropped (logged once), the connection stays', async () => {
    const broker = await startMosquitto({ dir: dir.path });
    const logs = captureLog();
    const running = await startBus({ mode: 'external', external: { url: `mqtt://127.0.0.1:${broker.port}`, maxPacketBytes: 4096 } }, logs.log);
    try {
      const c = collector();
      running.bus.subscribe('big/#', c.handler);
      await subscribed(running, ['big/#']);
      const file = join(dir.path, 'big-ext.bin');
      writeFileSync(file, Buffer.alloc(10_000, 0x42));
      // More than Mosquitto's 20 in-flight QoS 1 messages per client: without our PUBACKs the next message would wait forever.
      assert.equal((await mqttPub({ port: broker.port, qos: 1 }, 'big/x', undefined, ['-f', file, '--repeat', '30'])).code, 0);
      await mqttPub({ port: broker.port, qos: 1 }, 'big/small', 'fits');
      await eventually(() => c.got.length === 1, 10_000, 'the small message');
      assert.equal(c.got[0]!.topic, 'big/small');
      const e = running.bus.stats().external!;
      assert.equal(e.oversizedDropped, 30);
      assert.equal(e.connects, 1, 'never reconnected');
      assert.equal(logs.matching(/dropped a message of 100\d\d bytes on big\/x from the external MQTT broker: over maxPacketBytes \(4096\)/).length, 1);
    } finally {
      await running.stop();
      await broker.stop();
    }
  });
});

describe('external client reconnect backoff (fake timers)', () => {
  it('waits a full-jitter delay that doubles up to the cap, and starts again from the base after a CONNACK', async () => {
    // Real sockets, fake timers: a local server that hangs up on every connection but the third, which it accepts.
    const realSetTimeout = globalThis.setTimeout;
    let connections = 0;
    const sockets = new Set<Socket>();
    const server = createServer((s) => {
      connections++;
      sockets.add(s);
      s.on('error', () => {});
      if (connections === 3) s.once('data', () => s.end(Buffer.from([0x20, 0x02, 0x00, 0x00])));
      else s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const until = async (cond: () => boolean, what: string) => {
      const deadline = Date.now() + 10_000;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => realSetTimeout(r, 5));
      }
    };
    mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
    const states: string[] = [];
    const client = new MqttClient(
      { ...defaultEventBusOptions.external, url: `mqtt://127.0.0.1:${port}`, reconnectBaseMs: 1000, reconnectMaxMs: 3000, keepaliveSeconds: 0 },
      silentLogger,
      () => {},
      { random: () => 0.5 },
    );
    client.onState((s) => states.push(s));
    try {
      client.start();
      const expectRetry = async (attempt: number, delay: number) => {
        await until(() => states.at(-1) === 'disconnected' && client.stats.attempts === attempt, `attempt ${attempt} to fail`);
        mock.timers.tick(delay - 1);
        assert.equal(client.stats.attempts, attempt, `no attempt before ${delay} ms`);
        mock.timers.tick(1);
        assert.equal(client.stats.attempts, attempt + 1, `attempt ${attempt + 1} after ${delay} ms`);
      };
      await expectRetry(1, 500); // ceiling 1000, half of it
      await expectRetry(2, 1000); // ceiling 2000
      await until(() => states.includes('connected'), 'the third attempt to connect');
      await expectRetry(3, 500); // a CONNACK reset the backoff
      await expectRetry(4, 1000);
      await expectRetry(5, 1500); // ceiling capped at 3000
      await expectRetry(6, 1500);
    } finally {
      await client.stop();
      mock.timers.reset();
      server.close();
    }
  });
});

/** `p` within 20 s (a real-timer deadline). */
async function within2<T>(p: Promise<T>, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 20_000)))]);
  } finally {
    clearTimeout(t);
  }
}

interface Certs {
  ca: string;
  otherCa: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl; and an unrelated CA. */
async function makeCerts(dir: string): Promise<Certs> {
  const p = (f: string) => join(dir, f);
  const ossl = async (args: string[]) => {
    const r = await run('openssl', args);
    if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.err}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await ossl(['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=ledge-test-mqtt-ca', '-keyout', p('ca.key'), '-out', p('ca.pem')]);
  await ossl(['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=other-ca', '-keyout', p('other.key'), '-out', p('other-ca.pem')]);
  writeFileSync(p('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  writeFileSync(p('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const who of ['server', 'client']) {
    await ossl(['req', ...ec, '-subj', `/CN=${who === 'server' ? '127.0.0.1' : 'edge-device'}`, '-keyout', p(`${who}.key`), '-out', p(`${who}.csr`)]);
    await ossl([
      'x509',
      '-req',
      '-in',
      p(`${who}.csr`),
      '-CA',
      p('ca.pem'),
      '-CAkey',
      p('ca.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      p(`${who}.ext`),
      '-out',
      p(`${who}.pem`),
    ]);
  }
  return { ca: p('ca.pem'), otherCa: p('other-ca.pem'), serverCert: p('server.pem'), serverKey: p('server.key'), clientCert: p('client.pem'), clientKey: p('client.key') };
}
