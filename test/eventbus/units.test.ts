/**
 * Unit tests of the device bus's pieces: topic rules, the smallest covering filter set, the token
 * bucket, the log window and the echo filter (injected clocks), and the packet-size scanner
 * (every way a stream of packets can be cut into chunks).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import mqtt from 'mqtt-packet';
import { MqttError } from '../../shared/errors/index.js';
import { FrameScanner, type OversizeInfo } from '../../edge/eventbus/frames.js';
import { EchoFilter, LogWindow, TokenBucket } from '../../edge/eventbus/limits.js';
import { checkTopicFilter, checkTopicName, filterCovers, minimalCover, topicMatches } from '../../edge/eventbus/topics.js';
import { parseBrokerUrl } from '../../edge/eventbus/client.js';
import { ConfigError } from '../../shared/errors/index.js';
import { prng } from '../helpers/prng.js';

describe('topics', () => {
  it('matches MQTT 3.1.1 filters, with the $ rule and # matching its parent', () => {
    const yes: [string, string][] = [
      ['$hw/events/device/+/+/twin/update', '$hw/events/device/default/dev1/twin/update'],
      ['$hw/events/#', '$hw/events/device/a/b/state/update'],
      ['$hw/events/#', '$hw/events'],
      ['a/+/c', 'a/b/c'],
      ['a/+', 'a/'],
      ['#', 'a/b'],
      ['+/+', '/x'],
    ];
    const no: [string, string][] = [
      ['#', '$hw/events/x'],
      ['+/events/x', '$hw/events/x'],
      ['$hw/events/device/+/+/twin/update', '$hw/events/device/default/dev1/twin/update/result'],
      ['a/+', 'a/b/c'],
      ['a/b', 'a'],
      ['a/+/c', 'a/c'],
    ];
    for (const [f, t] of yes) assert.equal(topicMatches(f, t), true, `${f} should match ${t}`);
    for (const [f, t] of no) assert.equal(topicMatches(f, t), false, `${f} should not match ${t}`);
  });

  it('knows when one filter covers another, and keeps only the uncovered ones', () => {
    assert.equal(filterCovers('$hw/events/#', '$hw/events/device/+/+/twin/update'), true);
    assert.equal(filterCovers('a/#', 'a'), true);
    assert.equal(filterCovers('a/+', 'a/#'), false);
    assert.equal(filterCovers('#', '$hw/x'), false);
    assert.equal(filterCovers('+/x', 'a/x'), true);
    assert.equal(filterCovers('a/x', '+/x'), false);
    assert.deepEqual(minimalCover(['$hw/events/device/+/+/twin/update', '$hw/events/#', '$hw/events/node/+/membership/get', 'other/t', 'other/t', '$hw/events/#']), [
      '$hw/events/#',
      'other/t',
    ]);
    assert.deepEqual(minimalCover(['a/+', '+/b']), ['+/b', 'a/+']);
  });

  it('refuses wildcards in topic names and misplaced wildcards in filters', () => {
    for (const bad of ['', 'a/#', 'a/+', 'a\u0000b', 'x'.repeat(70_000)]) assert.throws(() => checkTopicName(bad), MqttError, JSON.stringify(bad.slice(0, 10)));
    for (const bad of ['', 'a/#/b', 'a#', 'a/b+', 'a/+b/c']) assert.throws(() => checkTopicFilter(bad), MqttError, bad);
    for (const ok of ['#', '+', 'a/+/b/#', '$hw/events/device/+/+/twin/update']) checkTopicFilter(ok);
  });

  it('parses broker URLs (KubeEdge spells them tcp://)', () => {
    assert.deepEqual(parseBrokerUrl('tcp://127.0.0.1:1883'), { url: 'mqtt://127.0.0.1:1883', tls: false, host: '127.0.0.1', port: 1883 });
    assert.deepEqual(parseBrokerUrl('mqtts://u%40x:p%3Aw@broker.example'), {
      url: 'mqtts://broker.example:8883',
      tls: true,
      host: 'broker.example',
      port: 8883,
      username: 'u@x',
      password: 'p:w',
    });
    assert.equal(parseBrokerUrl('ssl://[::1]:8884').url, 'mqtts://[::1]:8884');
    assert.throws(() => parseBrokerUrl('http://x'), ConfigError);
    assert.throws(() => parseBrokerUrl('nonsense'), ConfigError);
    // A refused URL is named without its password.
    for (const bad of ['http://user:s3cret@x', 'mqtt://user:s3cret@', 'mqtt://user:s3cret@bad host']) {
      assert.throws(
        () => parseBrokerUrl(bad),
        (err: Error) => err instanceof ConfigError && !err.message.includes('s3cret') && err.message.includes('***@'),
        bad,
      );
    }
  });
});

describe('limits', () => {
  it('token bucket: a burst, then the rate', () => {
    let now = 0;
    const b = new TokenBucket(10, 3, () => now);
    assert.deepEqual([b.take(), b.take(), b.take(), b.take()], [true, true, true, false]);
    now += 99;
    assert.equal(b.take(), false);
    now += 1;
    assert.equal(b.take(), true);
    now += 10_000;
    assert.deepEqual([b.take(), b.take(), b.take(), b.take()], [true, true, true, false], 'refills up to the burst only');
  });

  it('log window: once per key per window, counting the rest', () => {
    let now = 0;
    const w = new LogWindow(60_000, 2, () => now);
    assert.equal(w.hit('a'), 0);
    assert.equal(w.hit('a'), undefined);
    assert.equal(w.hit('a'), undefined);
    assert.equal(w.hit('b'), 0);
    now = 60_000;
    assert.equal(w.hit('a'), 2, 'the next line says how many were not logged');
    w.hit('c'); // a third key: the oldest (b) is forgotten
    assert.equal(w.hit('b'), 0);
  });

  it('echo filter: each write swallows one arrival, expectations expire and are bounded', () => {
    let now = 0;
    const e = new EchoFilter(30_000, 2, () => now);
    const p = Buffer.from('x');
    e.expect('t', p);
    e.expect('t', p);
    assert.equal(e.consume('t', Buffer.from('y')), false, 'other payload');
    assert.equal(e.consume('u', p), false, 'other topic');
    assert.equal(e.consume('t', p), true);
    assert.equal(e.consume('t', p), true);
    assert.equal(e.consume('t', p), false, 'two writes, two echoes');
    e.expect('t', p);
    now = 30_000;
    assert.equal(e.consume('t', p), false, 'expired');
    e.expect('a', p);
    e.expect('b', p);
    e.expect('c', p);
    assert.equal(e.size, 2);
    assert.equal(e.consume('a', p), false, 'the oldest was dropped');
  });
});

describe('frame scanner', () => {
  const packets = (): Buffer[] => [
    mqtt.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'c', clean: true, keepalive: 10 }),
    mqtt.generate({ cmd: 'pingreq' }),
    mqtt.generate({ cmd: 'publish', topic: 'small', payload: Buffer.alloc(100, 1), qos: 0, retain: false, dup: false }),
    mqtt.generate({ cmd: 'publish', topic: 'big/one', payload: Buffer.alloc(20_000, 2), qos: 1, retain: false, dup: false, messageId: 7 }),
    mqtt.generate({ cmd: 'publish', topic: 'after', payload: Buffer.alloc(300, 3), qos: 1, retain: false, dup: false, messageId: 8 }),
    mqtt.generate({ cmd: 'pingreq' }),
  ];

  function chunked(stream: Buffer, rand: () => number): Buffer[] {
    const out: Buffer[] = [];
    for (let i = 0; i < stream.length; ) {
      const n = 1 + Math.floor(rand() * (rand() < 0.5 ? 4 : 3000));
      out.push(stream.subarray(i, i + n));
      i += n;
    }
    return out;
  }

  it('passes packets under the limit through unchanged however the stream is cut', () => {
    const stream = Buffer.concat(packets());
    const rand = prng(1);
    for (let round = 0; round < 200; round++) {
      const s = new FrameScanner({ maxPacketBytes: 1_000_000 });
      const out: Buffer[] = [];
      for (const c of chunked(stream, rand)) {
        const r = s.push(c);
        assert.ok(r.ok);
        out.push(...r.pass);
      }
      assert.deepEqual(Buffer.concat(out), stream);
    }
  });

  it('skips an oversized packet without its body, capturing its topic and packet id', () => {
    const all = packets();
    const expected = Buffer.concat(all.filter((_, i) => i !== 3));
    const rand = prng(2);
    for (let round = 0; round < 200; round++) {
      const skipped: { info: OversizeInfo; head: Buffer }[] = [];
      const s = new FrameScanner({ maxPacketBytes: 1000, onOversize: () => 'skip', onSkipped: (info, head) => skipped.push({ info, head }) });
      const out: Buffer[] = [];
      for (const c of chunked(Buffer.concat(all), rand)) {
        const r = s.push(c);
        assert.ok(r.ok);
        out.push(...r.pass);
      }
      assert.deepEqual(Buffer.concat(out), expected);
      assert.equal(skipped.length, 1);
      const { info, head } = skipped[0]!;
      assert.equal(info.type, 3);
      assert.equal((info.flags >> 1) & 3, 1);
      assert.equal(info.bytes, all[3]!.length);
      const len = head.readUInt16BE(0);
      assert.equal(head.toString('utf8', 2, 2 + len), 'big/one');
      assert.equal(head.readUInt16BE(2 + len), 7);
    }
  });

  it('refuses an oversized packet as soon as its length is known, and a malformed length', () => {
    const big = mqtt.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(5000), qos: 0, retain: false, dup: false });
    const s = new FrameScanner({ maxPacketBytes: 4096 });
    assert.deepEqual(s.push(big.subarray(0, 1)), { ok: true, pass: [] });
    const r = s.push(big.subarray(1, 4));
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.reason : '', /5\d\d\d bytes is over the limit of 4096/);
    const m = new FrameScanner({ maxPacketBytes: 1 << 30 });
    assert.equal(m.push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])).ok, false);
  });
});

describe('mqtt-packet set-up (edge/eventbus/packets.ts)', () => {
  it("the bus turns off mqtt-packet's number cache (65,536 Buffers, +13 MiB RSS for good) before anything is written", () => {
    // client.ts, imported above, loads the set-up; aedes shares this mqtt-packet instance.
    assert.equal(mqtt.writeToStream.cacheNumbers, false);
    const bytes = mqtt.generate({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 1, messageId: 513, retain: false, dup: false });
    assert.equal(bytes.readUInt16BE(5), 513, 'packet ids are still written right without the cache');
  });
});
