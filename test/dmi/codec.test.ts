// Unit tests of shared/dmi's wire pieces: gRPC message framing, grpc-timeout, grpc-message
// percent-encoding, protobuf decoding into plain objects, the problem log and the token bucket
// (both on a fake clock).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodeGrpcMessage,
  decodeMessage,
  encodeGrpcMessage,
  encodeMessage,
  FrameDecoder,
  formatGrpcTimeout,
  frameMessage,
  GrpcStatus,
  parseGrpcTimeout,
} from '../../shared/dmi/codec.js';
import { v1beta1 } from '../../shared/dmi/generated/dmi.js';
import type { DmiDevice, DmiMapperRegisterResponse } from '../../shared/dmi/index.js';
import { ProblemLog, statusOf, TokenBucket } from '../../shared/dmi/server.js';
import { DeviceInvalidError, DeviceUnknownError, DmiError } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';

const dmiStatus = (err: unknown): number => (err as DmiError).grpcStatus;

describe('framing', () => {
  const a = Buffer.from('hello');
  const b = Buffer.from('world, a longer one');

  test('a frame is flag 0, big-endian length, message', () => {
    assert.deepEqual([...frameMessage(a).subarray(0, 5)], [0, 0, 0, 0, 5]);
    assert.deepEqual(frameMessage(a).subarray(5), a);
  });

  test('two messages in one chunk come out as two', () => {
    const d = new FrameDecoder(1024);
    const out = d.push(Buffer.concat([frameMessage(a), frameMessage(b)]));
    assert.deepEqual(
      out.map((m) => Buffer.from(m).toString()),
      ['hello', 'world, a longer one'],
    );
    assert.equal(d.pending, 0);
  });

  test('a frame delivered byte by byte comes out once, when complete', () => {
    const d = new FrameDecoder(1024);
    const bytes = Buffer.concat([frameMessage(a), frameMessage(b)]);
    const out: string[] = [];
    for (let i = 0; i < bytes.length; i++) {
      for (const m of d.push(bytes.subarray(i, i + 1))) out.push(Buffer.from(m).toString());
      if (i === 3) assert.equal(out.length, 0, 'nothing before the header is complete');
    }
    assert.deepEqual(out, ['hello', 'world, a longer one']);
  });

  test('a split across the header and the body, and an empty message', () => {
    const d = new FrameDecoder(1024);
    const bytes = Buffer.concat([frameMessage(Buffer.alloc(0)), frameMessage(b)]);
    assert.equal(d.push(bytes.subarray(0, 8)).length, 1, 'the empty message is complete after 5 bytes');
    assert.ok(d.pending > 0);
    const rest = d.push(bytes.subarray(8));
    assert.equal(Buffer.from(rest[0]!).toString(), 'world, a longer one');
  });

  test('an oversized frame is refused from its header, before its body arrives', () => {
    const d = new FrameDecoder(10);
    const header = Buffer.from([0, 0, 0, 0, 11]);
    assert.throws(
      () => d.push(header),
      (err) => dmiStatus(err) === GrpcStatus.RESOURCE_EXHAUSTED,
    );
  });

  test('a frame of exactly the limit is accepted', () => {
    const d = new FrameDecoder(5);
    assert.equal(d.push(frameMessage(a)).length, 1);
  });

  test('a compressed frame is UNIMPLEMENTED, another flag INTERNAL', () => {
    assert.throws(
      () => new FrameDecoder(100).push(Buffer.from([1, 0, 0, 0, 0])),
      (err) => dmiStatus(err) === GrpcStatus.UNIMPLEMENTED,
    );
    assert.throws(
      () => new FrameDecoder(100).push(Buffer.from([7, 0, 0, 0, 0])),
      (err) => dmiStatus(err) === GrpcStatus.INTERNAL,
    );
  });
});

describe('grpc-timeout', () => {
  test('parses every unit', () => {
    assert.equal(parseGrpcTimeout('10S'), 10_000);
    assert.equal(parseGrpcTimeout('500m'), 500);
    assert.equal(parseGrpcTimeout('2M'), 120_000);
    assert.equal(parseGrpcTimeout('1H'), 3_600_000);
    assert.equal(parseGrpcTimeout('1500u'), 1.5);
    assert.equal(parseGrpcTimeout('99999999n'), 99.999999);
  });

  test('refuses malformed values', () => {
    for (const v of ['', '10', 'S', '123456789S', '1.5S', '-1S', '10s', '10 S']) assert.equal(parseGrpcTimeout(v), undefined, v);
  });

  test('formats within 8 digits and round-trips', () => {
    assert.equal(formatGrpcTimeout(10_000), '10000m');
    assert.equal(formatGrpcTimeout(0.2), '1m');
    const big = 200_000_000;
    assert.equal(formatGrpcTimeout(big), '200000S');
    for (const ms of [1, 999, 10_000, 86_400_000, 1e9, 1e12]) {
      const s = formatGrpcTimeout(ms);
      assert.match(s, /^\d{1,8}[HMSm]$/);
      assert.ok(parseGrpcTimeout(s)! >= ms, `${s} covers ${ms}`);
    }
  });
});

describe('grpc-message', () => {
  test('percent-encodes non-printable, non-ASCII and % and decodes back', () => {
    const msg = 'device "ns/x" 100% ünïcode\nline';
    const enc = encodeGrpcMessage(msg);
    assert.match(enc, /^[\x20-\x7e]*$/);
    assert.ok(enc.includes('100%25'));
    assert.ok(enc.includes('%C3%BC'));
    assert.ok(enc.includes('%0A'));
    assert.equal(decodeGrpcMessage(enc), msg);
  });

  test('a malformed escape is kept, not an error', () => {
    assert.equal(decodeGrpcMessage('50%ZZ done %4'), '50%ZZ done %4');
  });
});

describe('protobuf into plain objects', () => {
  test('defaults are absent, int64 are numbers, bytes are copies', () => {
    const dev: DmiDevice = {
      name: 'd',
      spec: {
        properties: [{ name: 'p', reportCycle: 5000, collectCycle: 2 ** 40, visitors: { configData: { data: { k: { type_url: 'u', value: new Uint8Array([1, 2, 3]) } } } } }],
      },
    };
    const bytes = encodeMessage(v1beta1.MapperRegisterResponse, { deviceList: [dev] });
    const got = decodeMessage<DmiMapperRegisterResponse>(v1beta1.MapperRegisterResponse, bytes);
    const prop = got.deviceList![0]!.spec!.properties![0]!;
    assert.equal(prop.reportCycle, 5000);
    assert.equal(typeof prop.collectCycle, 'number');
    assert.equal(prop.collectCycle, 2 ** 40);
    assert.equal(prop.reportToCloud, undefined, 'a default is absent');
    assert.equal(Object.getPrototypeOf(got), Object.prototype, 'a plain object');
    const v = prop.visitors!.configData!.data!.k!;
    assert.deepEqual([...v.value!], [1, 2, 3]);
    assert.notEqual(v.value!.buffer, bytes.buffer, 'bytes are copied out of the receive buffer');
    assert.equal(v.type_url, 'u');
    assert.ok(!JSON.stringify(got).includes('$unknowns'));
  });

  test('bad protobuf is INTERNAL', () => {
    // Field 1 (name), length 50, but only 2 bytes follow.
    assert.throws(
      () => decodeMessage(v1beta1.Device, Buffer.from([0x0a, 50, 0x41, 0x42])),
      (err) => err instanceof DmiError && err.grpcStatus === GrpcStatus.INTERNAL,
    );
  });
});

describe('status of handler errors', () => {
  test('DmiError, DeviceInvalidError, DeviceUnknownError, plain errors', () => {
    assert.deepEqual(statusOf(new DmiError('x', { grpcStatus: 9 })), { status: 9, message: 'x' });
    assert.equal(statusOf(new DeviceInvalidError('bad')).status, GrpcStatus.INVALID_ARGUMENT);
    assert.equal(statusOf(new DeviceUnknownError('who')).status, GrpcStatus.NOT_FOUND);
    assert.deepEqual(statusOf(new Error('boom')), { status: GrpcStatus.UNKNOWN, message: 'boom' });
    assert.equal(statusOf('str').status, GrpcStatus.UNKNOWN);
  });
});

function recordingLogger(): { log: Logger; lines: { msg: string; fields?: Record<string, unknown> }[] } {
  const lines: { msg: string; fields?: Record<string, unknown> }[] = [];
  const log: Logger = {
    debug: () => {},
    info: () => {},
    warn: (msg, fields) => lines.push({ msg, fields }),
    error: (msg, fields) => lines.push({ msg, fields }),
    child: () => log,
    enabled: () => true,
  };
  return { log, lines };
}

describe('problem log and token bucket (fake clock)', () => {
  test('a problem is logged once per window, then with the number of repeats', () => {
    let t = 0;
    const { log, lines } = recordingLogger();
    const p = new ProblemLog(log, () => t, 60_000);
    for (let i = 0; i < 1000; i++) p.warn('rate', 'over', { code: 'x' });
    assert.equal(lines.length, 1);
    p.warn('other', 'different problem', {});
    assert.equal(lines.length, 2);
    t = 60_000;
    p.warn('rate', 'over', { code: 'x' });
    assert.equal(lines.length, 3);
    assert.equal(lines[2]!.fields!.repeats, 999);
  });

  test('the bucket allows the burst, then the rate', () => {
    let t = 0;
    const b = new TokenBucket(10, 5, () => t);
    let ok = 0;
    for (let i = 0; i < 20; i++) if (b.take()) ok++;
    assert.equal(ok, 5);
    t = 100; // one token per 100 ms
    assert.equal(b.take(), true);
    assert.equal(b.take(), false);
    t = 100_000;
    ok = 0;
    for (let i = 0; i < 20; i++) if (b.take()) ok++;
    assert.equal(ok, 5, 'refill is capped at the burst');
  });

  test('rate 0 is unlimited', () => {
    const b = new TokenBucket(0, 0, () => 0);
    for (let i = 0; i < 100; i++) assert.equal(b.take(), true);
  });
});
