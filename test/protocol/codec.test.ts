/**
 * Tests of the frame codec (shared/protocol/codec.ts + cbor-validate.ts) and the
 * message helpers (resource strings, resourceVersion comparison).
 *
 * Malformed input must only ever produce a Ledge error with the right `code`:
 * never a TypeError/RangeError from the decoder library, never a stack overflow,
 * never a huge allocation.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Encoder } from 'cbor-x/encode';
import { LedgeError } from '../../shared/errors/index.js';
import {
  Limits,
  PROTOCOL_VERSION,
  buildResource,
  compareResourceVersions,
  createCborCodec,
  messageIdOf,
  parseResource,
  toWire,
  validateCbor,
} from '../../shared/protocol/index.js';
import type { Message } from '../../shared/protocol/index.js';
import { cborEncoderOptions, encodeCbor } from '../../shared/protocol/codec.js';
import { prng } from '../helpers/prng.js';

const INVALID_FRAME = 'LEDGE_ERR_INVALID_FRAME';
const TOO_LARGE = 'LEDGE_ERR_FRAME_TOO_LARGE';
const INVALID_MESSAGE = 'LEDGE_ERR_INVALID_MESSAGE';
const UNSUPPORTED_VERSION = 'LEDGE_ERR_UNSUPPORTED_VERSION';
const UNKNOWN_OPERATION = 'LEDGE_ERR_UNKNOWN_OPERATION';

const codec = createCborCodec();

/** A plain RFC 8949 encoder (same options as the codec) to build arbitrary wire values. */
const rawEncoder = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  pack: false,
  structuredClone: false,
  tagUint8Array: false,
  variableMapSize: true,
});
const raw = (value: unknown): Uint8Array => Uint8Array.prototype.slice.call(rawEncoder.encode(value));

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const cat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

function sampleMessage(overrides: Partial<Message> = {}): Message {
  return {
    header: { id: '6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b', timestamp: 1_732_000_000_123, sync: false },
    route: { source: 'edgecontroller', group: 'resource', operation: 'update', resource: 'default/pod/nginx' },
    content: { kind: 'Pod', metadata: { name: 'nginx', labels: { app: 'web' } } },
    ...overrides,
  };
}

/** A valid frame whose content is `null`, cut before that null so any content bytes can be appended. */
const envelopeHead = (() => {
  const frame = codec.encode(sampleMessage({ content: null }));
  assert.equal(frame[frame.length - 1], 0xf6, 'content null is the last byte of the frame');
  return frame.subarray(0, frame.length - 1);
})();
/** A frame whose content is exactly the given CBOR bytes. */
const withContent = (contentHex: string | Uint8Array): Uint8Array => cat(envelopeHead, typeof contentHex === 'string' ? hex(contentHex) : contentHex);

/** Asserts that `fn` throws a Ledge error with `code` (and nothing else). Returns the error. */
function assertLedgeError(fn: () => unknown, code: string, label = ''): LedgeError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown !== undefined, `${label}: expected ${code}, but nothing was thrown`);
  assert.ok(thrown instanceof LedgeError, `${label}: expected a LedgeError, got ${String(thrown)}`);
  assert.equal((thrown as LedgeError).code, code, `${label}: ${(thrown as Error).message}`);
  return thrown as LedgeError;
}

/** Replaces every Uint8Array/Buffer with a plain Uint8Array copy, so Buffer vs Uint8Array compare equal. */
function normalizeBytes(v: unknown): unknown {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map(normalizeBytes);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalizeBytes(x)]));
  }
  return v;
}

/** Nested single-element arrays, `levels` deep, around the integer 0. */
function nestedArrays(levels: number): Uint8Array {
  return cat(new Uint8Array(levels).fill(0x81), hex('00'));
}

describe('codec: round trip', () => {
  it('round-trips a message with every header field, bytes and unicode', () => {
    const message: Message = {
      header: {
        id: 'a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d',
        parentId: '11111111-2222-4333-8444-555555555555',
        timestamp: Date.now(),
        resourceVersion: '48213957',
        sync: true,
      },
      route: { source: 'cloudhub', group: 'resource', operation: 'insert', resource: 'café/configmap/日本-設定' },
      content: {
        text: { latin: 'héllo wörld', cjk: '日本語のテキスト', emoji: '🚀👩‍👩‍👧‍👦', combining: 'e\u0301', rtl: 'שלום', nul: 'a\u0000b' },
        ключ: 'значение',
        bytes: new Uint8Array([0, 1, 2, 253, 254, 255]),
        buffer: Buffer.from('binary\u0000payload'),
        empty: new Uint8Array(0),
        numbers: [0, -1, 1.5, -2.25, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 32 + 1, 1e300, 21.5],
        flags: [true, false, null],
        nested: { a: [{ b: [[], {}] }] },
        big: 'x'.repeat(70_000),
      },
    };
    const frame = codec.encode(message);
    assert.ok(frame instanceof Uint8Array);
    const decoded = codec.decode(frame);
    assert.deepEqual(normalizeBytes(decoded), normalizeBytes(message));
    const content = decoded.content as { bytes: unknown; buffer: unknown; empty: unknown };
    assert.ok(content.bytes instanceof Uint8Array, 'byte strings decode to bytes, not arrays or strings');
    assert.ok(content.buffer instanceof Uint8Array);
    assert.equal((content.empty as Uint8Array).length, 0);
  });

  it('keeps optional header fields absent when they were absent', () => {
    const message = sampleMessage();
    const decoded = codec.decode(codec.encode(message));
    assert.deepEqual(decoded, message);
    assert.ok(!Object.hasOwn(decoded.header, 'parentId'), 'no parentId key');
    assert.ok(!Object.hasOwn(decoded.header, 'resourceVersion'), 'no resourceVersion key');
  });

  it('puts null on the wire for absent optional fields and undefined content', () => {
    const message = sampleMessage({ content: undefined });
    const wire = toWire(message) as [number, unknown[], unknown[], unknown];
    assert.equal(wire[0], PROTOCOL_VERSION);
    assert.deepEqual(wire[1], [message.header.id, null, message.header.timestamp, null, false]);
    assert.equal(wire[3], null);
    assert.equal(codec.decode(codec.encode(message)).content, null);
  });

  it('returns a frame that owns its bytes and that later encodes do not overwrite', () => {
    const a = codec.encode(sampleMessage({ content: 'first' }));
    // A copy, not a view pinning cbor-x's shared 8 KiB encode buffer while it sits in a queue.
    assert.equal(a.byteOffset, 0);
    assert.equal(a.buffer.byteLength, a.length);
    const copy = Uint8Array.from(a);
    // cbor-x encodes into one reusable buffer; enough later encodes wrap around it.
    for (let i = 0; i < 200; i++) codec.encode(sampleMessage({ content: `later ${i} ${'z'.repeat(i * 7)}` }));
    assert.deepEqual(Uint8Array.from(a), copy);
    assert.equal(codec.decode(a).content, 'first');
  });

  it('decodes a frame that is a view at an offset into a larger buffer', () => {
    const frame = codec.encode(sampleMessage());
    const big = new Uint8Array(frame.length + 10).fill(0xff);
    big.set(frame, 5);
    const view = big.subarray(5, 5 + frame.length);
    assert.deepEqual(codec.decode(view), sampleMessage());
    // And the bytes around the view are not read: a view one byte short is truncated.
    assertLedgeError(() => codec.decode(big.subarray(5, 4 + frame.length)), INVALID_FRAME, 'short view');
  });

  it('decodes a 64-bit integer timestamp (as node-cbor writes Date.now()) to a number', () => {
    // [1, [id, null, uint64 1732000000123, null, false], route, null]
    const wire = toWire(sampleMessage({ content: null })) as unknown[];
    const header = raw((wire[1] as unknown[]).slice(0, 2)).subarray(1); // id, null
    const frame = cat(
      hex('84 01 85'),
      header,
      hex('1b 00000193433ea87b'), // 1732000000123 as uint64
      hex('f6 f4'),
      raw(wire[2]),
      hex('f6'),
    );
    const decoded = codec.decode(frame);
    assert.equal(typeof decoded.header.timestamp, 'number');
    assert.equal(decoded.header.timestamp, 1_732_000_000_123);
  });

  it('accepts the integer bounds ±(2^53-1) and text that looks like __proto__', () => {
    assert.equal(codec.decode(withContent('1b 001fffffffffffff')).content, Number.MAX_SAFE_INTEGER);
    assert.equal(codec.decode(withContent('3b 001ffffffffffffe')).content, -Number.MAX_SAFE_INTEGER);
    assert.equal(codec.decode(withContent('69 5f5f70726f746f5f5f')).content, '__proto__'); // a value, not a key
    assert.deepEqual(codec.decode(withContent('a1 68 5f5f70726f746f5f 01')).content, { __proto_: 1 });
  });

  it('accepts false/true/null/undefined and half/single/double floats', () => {
    assert.deepEqual(codec.decode(withContent('86 f4 f5 f6 f7 f9 3e00 fa 3fc00000')).content, [false, true, null, undefined, 1.5, 1.5]);
    assert.equal(codec.decode(withContent('fb 3ff8000000000000')).content, 1.5);
  });
});

describe('codec: frame size limit', () => {
  it('refuses to encode, and rejects on decode, frames over maxFrameBytes (boundary exact)', () => {
    const message = sampleMessage({ content: 'y'.repeat(500) });
    const size = codec.encode(message).length;
    const exact = createCborCodec({ maxFrameBytes: size });
    const frame = exact.encode(message);
    assert.equal(frame.length, size);
    assert.deepEqual(exact.decode(frame), message);

    const small = createCborCodec({ maxFrameBytes: size - 1 });
    const e1 = assertLedgeError(() => small.encode(message), TOO_LARGE, 'encode');
    assert.equal(e1.closeCode, 1009);
    const e2 = assertLedgeError(() => small.decode(frame), TOO_LARGE, 'decode');
    assert.equal(e2.closeCode, 1009);
  });

  it('checks the size before parsing anything', () => {
    const small = createCborCodec({ maxFrameBytes: 64 });
    // Garbage that would be an InvalidFrame if it were parsed.
    assertLedgeError(() => small.decode(new Uint8Array(65).fill(0xff)), TOO_LARGE);
    assertLedgeError(() => small.decode(new Uint8Array(64).fill(0xff)), INVALID_FRAME);
  });

  it('defaults to 1 MiB', () => {
    const justOver = cat(hex('5a 00100000'), new Uint8Array(Limits.maxFrameBytes)); // 1 MiB byte string + header
    assertLedgeError(() => codec.decode(justOver), TOO_LARGE);
    assertLedgeError(() => codec.encode(sampleMessage({ content: new Uint8Array(Limits.maxFrameBytes) })), TOO_LARGE);
  });
});

describe('codec: malformed frames yield only Ledge errors', () => {
  it('rejects an empty frame and garbage bytes', () => {
    const e = assertLedgeError(() => codec.decode(new Uint8Array(0)), INVALID_FRAME, 'empty');
    assert.equal(e.closeCode, 1007);
    for (const g of ['ff', 'ffffffff', '1c', '5c', 'fc', 'f8', '1f', 'deadbeef', '00 00']) {
      assertLedgeError(() => codec.decode(hex(g)), INVALID_FRAME, g);
    }
    // Text that is not CBOR at all (a JSON frame).
    assertLedgeError(() => codec.decode(new TextEncoder().encode('{"header":{}}')), INVALID_FRAME, 'json');
  });

  it('rejects every truncation of a valid frame with InvalidFrame', () => {
    const frame = codec.encode(
      sampleMessage({
        header: { id: 'id-1', parentId: 'p-1', timestamp: Date.now(), resourceVersion: '77', sync: true },
        content: { s: 'ünïcødé 🚀', b: new Uint8Array([1, 2, 3]), n: [1, -1, 1.5, 2 ** 40, -(2 ** 40)], m: { deep: [[[null, true]]] } },
      }),
    );
    for (let len = 0; len < frame.length; len++) {
      assertLedgeError(() => codec.decode(frame.subarray(0, len)), INVALID_FRAME, `prefix of ${len}/${frame.length} bytes`);
    }
  });

  it('rejects declared huge lengths quickly and without allocating', () => {
    const cases = [
      '9b 001fffffffffffff', // array of 2^53-1 items
      '9b ffffffffffffffff', // array of 2^64-1 items
      '9a ffffffff', // array of 2^32-1 items
      'bb 001fffffffffffff', // map
      'ba 7fffffff',
      '5b 001fffffffffffff 00', // byte string
      '5a ffffffff 00',
      '7b 00000000ffffffff 61', // text string
      '7a 40000000 61',
      '82 00 9a 0fffffff', // inside an array
    ];
    const before = process.memoryUsage().arrayBuffers;
    const started = performance.now();
    for (const c of cases) {
      assertLedgeError(() => codec.decode(hex(c)), INVALID_FRAME, `top-level ${c}`);
      assertLedgeError(() => codec.decode(withContent(c)), INVALID_FRAME, `content ${c}`);
    }
    const elapsed = performance.now() - started;
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(elapsed < 1000, `took ${elapsed} ms`);
    assert.ok(grown < 64 * 1024 * 1024, `array buffers grew by ${grown} bytes`);
  });

  it('enforces maxDepth exactly', () => {
    const shallow = createCborCodec({ maxDepth: 8 });
    // The frame array is depth 0, content depth 1; k nested arrays put the leaf at depth 1 + k.
    assert.deepEqual(shallow.decode(withContent(nestedArrays(7))).content, [[[[[[[0]]]]]]]);
    assertLedgeError(() => shallow.decode(withContent(nestedArrays(8))), INVALID_FRAME, 'arrays');
    // Maps count too.
    const maps = (levels: number) => cat(...Array.from({ length: levels }, () => hex('a1 61 6b')), hex('00'));
    assert.ok(shallow.decode(withContent(maps(7))));
    assertLedgeError(() => shallow.decode(withContent(maps(8))), INVALID_FRAME, 'maps');
  });

  it('rejects very deep nesting with InvalidFrame, not a stack overflow', () => {
    for (const depth of [Limits.maxDepth + 1, 10_000, 500_000]) {
      assertLedgeError(() => codec.decode(withContent(nestedArrays(depth))), INVALID_FRAME, `depth ${depth}`);
      assertLedgeError(() => codec.decode(nestedArrays(depth)), INVALID_FRAME, `top-level depth ${depth}`);
    }
  });

  it('rejects tags anywhere', () => {
    const tagged = {
      'tag 0 (date string)': 'c0 74 323032342d31312d31395430373a30363a34305a',
      'tag 1 (epoch date)': 'c1 1a 673c3a10',
      'tag 2 (bignum)': 'c2 49 010000000000000000',
      'tag 28 (shareable)': 'd8 1c 80',
      'tag 29 (shared ref)': 'd8 1d 00',
      'tag 64 (uint8 typed array)': 'd8 40 43 010203',
      'tag 258 (set)': 'd9 0102 81 01',
      'tag 259 (map)': 'd9 0103 a1 01 02',
      'tag 55799 (self-described)': 'd9 d9f7 00',
      'tag 105 (cbor-x record)': 'd8 69 80',
      'tag inside a map value': 'a1 61 61 c1 00',
      'tag inside an array': '82 00 c1 00',
    };
    for (const [label, c] of Object.entries(tagged)) {
      assertLedgeError(() => codec.decode(withContent(c)), INVALID_FRAME, label);
    }
    // A tagged frame at top level.
    assertLedgeError(() => codec.decode(cat(hex('d9 d9f7'), codec.encode(sampleMessage()))), INVALID_FRAME, 'top-level tag');
  });

  it('rejects indefinite lengths, breaks and reserved values', () => {
    const cases = {
      'indefinite array': '9f 01 ff',
      'indefinite map': 'bf 61 61 01 ff',
      'indefinite bytes': '5f 41 00 ff',
      'indefinite text': '7f 61 61 ff',
      'stray break': 'ff',
      'break in array': '82 00 ff',
      'int with info 31': '1f',
      'reserved info 28': '1c',
      'reserved info 29 (negative)': '3d',
      'reserved info 30 (bytes)': '5e',
      'simple value 0': 'e0',
      'simple value 19': 'f3',
      'simple value 32 (two-byte)': 'f8 20',
      'simple value 255': 'f8 ff',
    };
    for (const [label, c] of Object.entries(cases)) {
      assertLedgeError(() => codec.decode(withContent(c)), INVALID_FRAME, label);
    }
  });

  it('rejects trailing bytes', () => {
    const frame = codec.encode(sampleMessage());
    assertLedgeError(() => codec.decode(cat(frame, hex('00'))), INVALID_FRAME, 'one byte');
    assertLedgeError(() => codec.decode(cat(frame, frame)), INVALID_FRAME, 'two frames');
    assertLedgeError(() => validateCbor(cat(hex('00'), hex('00')), 8), INVALID_FRAME, 'validateCbor');
  });

  it('rejects a __proto__ map key and does not pollute Object.prototype', () => {
    const proto = '69 5f5f70726f746f5f5f'; // "__proto__"
    assertLedgeError(() => codec.decode(withContent(`a1 ${proto} a1 68 706f6c6c75746564 f5`)), INVALID_FRAME, 'content key');
    assertLedgeError(() => codec.decode(withContent(`a2 61 61 01 ${proto} 01`)), INVALID_FRAME, 'second key');
    assertLedgeError(() => codec.decode(withContent(`81 81 a1 ${proto} 01`)), INVALID_FRAME, 'nested');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('rejects non-text map keys', () => {
    for (const key of ['01', '20', '41 61', '80', 'a0', 'f6', 'f4', 'fb 3ff8000000000000']) {
      assertLedgeError(() => codec.decode(withContent(`a1 ${key} 02`)), INVALID_FRAME, `key ${key}`);
    }
  });

  it('rejects integers beyond ±(2^53-1)', () => {
    for (const c of ['1b 0020000000000000', '1b ffffffffffffffff', '3b 0020000000000000', '3b ffffffffffffffff']) {
      assertLedgeError(() => codec.decode(withContent(c)), INVALID_FRAME, c);
    }
  });

  it('rejects -2^53, just outside the documented ±(2^53-1) profile', () => {
    // 0x3b with argument 2^53-1 is the value -1-(2^53-1) = -2^53, which is not a safe integer.
    assertLedgeError(() => codec.decode(withContent('3b 001fffffffffffff')), INVALID_FRAME);
  });

  it('rejects an unsupported protocol version', () => {
    const wire = toWire(sampleMessage());
    for (const version of [0, 2, 255, -1, '1', 1.5, null]) {
      const e = assertLedgeError(() => codec.decode(raw([version, ...wire.slice(1)])), UNSUPPORTED_VERSION, String(version));
      assert.equal(e.closeCode, 1002);
    }
  });

  it('rejects a wrong layout with InvalidMessage', () => {
    const [v, h, r, c] = toWire(sampleMessage()) as [number, unknown[], unknown[], unknown];
    const withHeader = (i: number, x: unknown) => [v, h.map((y, j) => (j === i ? x : y)), r, c];
    const withRoute = (i: number, x: unknown) => [v, h, r.map((y, j) => (j === i ? x : y)), c];
    const cases: Record<string, unknown> = {
      'not an array': { version: 1 },
      'an integer': 5,
      'empty array': [],
      '3 elements': [v, h, r],
      '5 elements': [v, h, r, c, null],
      'header not an array': [v, { id: 'x' }, r, c],
      'header of 4': [v, h.slice(0, 4), r, c],
      'header of 6': [v, [...h, null], r, c],
      'empty id': withHeader(0, ''),
      'numeric id': withHeader(0, 42),
      'id over 512 chars': withHeader(0, 'i'.repeat(Limits.maxStringField + 1)),
      'numeric parentId': withHeader(1, 7),
      'string timestamp': withHeader(2, '1732000000123'),
      'NaN timestamp': withHeader(2, Number.NaN),
      'infinite timestamp': withHeader(2, Number.POSITIVE_INFINITY),
      'numeric resourceVersion': withHeader(3, 12),
      'string sync': withHeader(4, 'true'),
      'null sync': withHeader(4, null),
      'route not an array': [v, h, 'resource', c],
      'route of 3': [v, h, r.slice(0, 3), c],
      'numeric source': withRoute(0, 1),
      'null group': withRoute(1, null),
      'numeric operation': withRoute(2, 3),
      'resource over 512 chars': withRoute(3, 'r'.repeat(Limits.maxStringField + 1)),
      'bytes as resource': withRoute(3, new Uint8Array([0x61])),
    };
    for (const [label, value] of Object.entries(cases)) {
      assertLedgeError(() => codec.decode(raw(value)), INVALID_MESSAGE, label);
    }
    // The limit is inclusive: 512 characters are fine.
    assert.equal(codec.decode(raw(withRoute(3, 'r'.repeat(Limits.maxStringField)))).route.resource.length, Limits.maxStringField);
  });

  it('rejects an unknown operation and carries the message id', () => {
    const message = sampleMessage({ route: { ...sampleMessage().route, operation: 'frobnicate' } });
    const err = assertLedgeError(() => codec.decode(codec.encode(message)), UNKNOWN_OPERATION);
    assert.equal(messageIdOf(err), message.header.id);
    assert.equal(err.closeCode, 1007);
    // Other errors carry no id.
    const other = assertLedgeError(() => codec.decode(hex('ff')), INVALID_FRAME);
    assert.equal(messageIdOf(other), undefined);
    assert.equal(messageIdOf(null), undefined);
    assert.equal(messageIdOf(undefined), undefined);
    assert.equal(messageIdOf('string'), undefined);
  });

  it('refuses at encode time content the decoder would reject (Date, Set, big BigInt)', () => {
    for (const content of [{ when: new Date(0) }, new Set([1]), 2n ** 70n]) {
      assert.throws(
        () => codec.encode(sampleMessage({ content })),
        (err: unknown) => err instanceof LedgeError && (err as { code: string }).code === 'LEDGE_ERR_INVALID_MESSAGE',
      );
    }
  });
});

describe('codec: fuzz', () => {
  const seeds = [
    codec.encode(sampleMessage()),
    codec.encode(
      sampleMessage({
        header: { id: 'f-1', parentId: 'p', timestamp: 1.5, resourceVersion: '9', sync: true },
        content: { b: new Uint8Array([0, 255]), u: 'ü🚀', a: [1, -1, 2 ** 40, 0.1, null, true], m: { x: { y: [] } } },
      }),
    ),
    codec.encode(sampleMessage({ route: { source: 's', group: 'g', operation: 'ack', resource: 'r' }, content: null })),
  ];
  const interesting = [0x00, 0x18, 0x1b, 0x1f, 0x3b, 0x5b, 0x5f, 0x7b, 0x7f, 0x9b, 0x9f, 0xbb, 0xbf, 0xc1, 0xd8, 0xf7, 0xf8, 0xfb, 0xff, 0x81, 0xa1, 0x69];

  function mutate(src: Uint8Array, rnd: () => number): Uint8Array {
    const b = Array.from(src);
    const n = 1 + Math.floor(rnd() * 4);
    for (let k = 0; k < n; k++) {
      const at = Math.floor(rnd() * (b.length + 1));
      switch (Math.floor(rnd() * 7)) {
        case 0:
          if (b.length) b[at % b.length]! ^= 1 << Math.floor(rnd() * 8);
          break;
        case 1:
          if (b.length) b[at % b.length] = Math.floor(rnd() * 256);
          break;
        case 2:
          b.splice(at, 0, Math.floor(rnd() * 256));
          break;
        case 3:
          b.splice(at, 1 + Math.floor(rnd() * 8));
          break;
        case 4:
          b.length = Math.min(b.length, at);
          break;
        case 5:
          if (b.length) b[at % b.length] = interesting[Math.floor(rnd() * interesting.length)]!;
          break;
        default:
          b.splice(at, 0, ...b.slice(Math.floor(rnd() * b.length), Math.floor(rnd() * b.length)));
          break;
      }
    }
    return new Uint8Array(b);
  }

  function check(frame: Uint8Array, label: string): 'ok' | string {
    try {
      const m = codec.decode(frame);
      assert.equal(typeof m.header.id, 'string', label);
      assert.equal(typeof m.header.timestamp, 'number', label);
      assert.equal(typeof m.route.operation, 'string', label);
      return 'ok';
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      const code = (err as { code?: unknown }).code;
      assert.ok(err instanceof LedgeError && typeof code === 'string' && code.startsWith('LEDGE_ERR_'), `${label}: non-Ledge error ${String(err)}`);
      return code;
    }
  }

  it('20k random byte mutations of valid frames decode or throw Ledge errors only', () => {
    const rnd = prng(0x1ed6e);
    const outcomes = new Map<string, number>();
    const started = performance.now();
    for (let i = 0; i < 20_000; i++) {
      const frame = mutate(seeds[i % seeds.length]!, rnd);
      const outcome = check(frame, `mutation ${i} (${Buffer.from(frame).toString('hex')})`);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    const elapsed = performance.now() - started;
    // The fuzzer must reach both the validator and the layout checks.
    assert.ok((outcomes.get(INVALID_FRAME) ?? 0) > 1000, JSON.stringify([...outcomes]));
    assert.ok((outcomes.get('ok') ?? 0) + (outcomes.get(INVALID_MESSAGE) ?? 0) > 100, JSON.stringify([...outcomes]));
    assert.ok(elapsed < 30_000, `fuzz took ${elapsed} ms`);
    // The codec still works afterwards (no corrupted decoder state).
    assert.deepEqual(codec.decode(seeds[0]!), sampleMessage());
  });

  it('2k random well-formed values decode or throw Ledge errors only', () => {
    const rnd = prng(42);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const leaf = (): unknown => pick([0, 1, -1, 2 ** 40, 1.5, '', 'x', 'update', 'insert', null, true, false, undefined, new Uint8Array([1])]);
    const value = (d: number): unknown => {
      if (d > 3 || rnd() < 0.4) return leaf();
      return rnd() < 0.5 ? Array.from({ length: Math.floor(rnd() * 6) }, () => value(d + 1)) : { k: value(d + 1), id: value(d + 1) };
    };
    const [v, h, r, c] = toWire(sampleMessage()) as [number, unknown[], unknown[], unknown];
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 2_000; i++) {
      // Replace one random part of a valid wire array with a random value.
      const parts: unknown[] = [v, [...h], [...r], c];
      const which = Math.floor(rnd() * 4);
      if (which === 1 || which === 2) (parts[which] as unknown[])[Math.floor(rnd() * 6)] = value(0);
      else parts[which] = value(0);
      const outcome = check(raw(rnd() < 0.1 ? value(0) : parts), `value ${i}`);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    assert.ok((outcomes.get(INVALID_MESSAGE) ?? 0) > 100, JSON.stringify([...outcomes]));
    assert.ok((outcomes.get('ok') ?? 0) > 10, JSON.stringify([...outcomes]));
  });
});

describe('compareResourceVersions', () => {
  it('compares decimal versions numerically, not lexically', () => {
    assert.equal(compareResourceVersions('42', '42'), 0);
    assert.equal(compareResourceVersions('010', '10'), 0, 'leading zeros do not count');
    assert.ok(compareResourceVersions('009', '10') < 0);
    assert.ok(compareResourceVersions('9', '10') < 0);
    assert.ok(compareResourceVersions('10', '9') > 0);
    assert.ok(compareResourceVersions('123', '124') < 0);
    assert.ok(compareResourceVersions('48213958', '48213957') > 0);
    // Beyond 2^53: still exact.
    assert.ok(compareResourceVersions('9007199254740993', '9007199254740992') > 0);
    assert.ok(compareResourceVersions('18446744073709551615', '18446744073709551614') > 0);
  });

  it('agrees with BigInt ordering on random decimal pairs', () => {
    const rnd = prng(7);
    for (let i = 0; i < 2000; i++) {
      const a = BigInt(Math.floor(rnd() * 1e6)) * BigInt(10 ** Math.floor(rnd() * 10)) + BigInt(Math.floor(rnd() * 1000));
      const b = rnd() < 0.1 ? a : BigInt(Math.floor(rnd() * 1e6)) * BigInt(10 ** Math.floor(rnd() * 10)) + BigInt(Math.floor(rnd() * 1000));
      const got = Math.sign(compareResourceVersions(a.toString(), b.toString()));
      assert.equal(got, a === b ? 0 : a < b ? -1 : 1, `${a} vs ${b}`);
    }
  });

  it('only knows equality for non-decimal versions', () => {
    assert.equal(compareResourceVersions('abc', 'abc'), 0);
    assert.ok(Number.isNaN(compareResourceVersions('abc', 'abd')));
    assert.ok(Number.isNaN(compareResourceVersions('10', 'x10')));
    assert.ok(Number.isNaN(compareResourceVersions('-1', '1')));
    assert.ok(Number.isNaN(compareResourceVersions('', '1')));
    assert.ok(Number.isNaN(compareResourceVersions('1.5', '2')));
  });
});

describe('buildResource / parseResource', () => {
  it('builds namespaced and cluster-scoped resource strings', () => {
    assert.equal(buildResource('default', 'pod', 'nginx'), 'default/pod/nginx');
    // Cluster-scoped objects take `default` as their namespace segment, as in KubeEdge.
    assert.equal(buildResource(undefined, 'node', 'edge-1'), 'default/node/edge-1');
    assert.equal(buildResource('', 'node', 'edge-1'), 'default/node/edge-1');
    assert.equal(buildResource('default', 'pod'), 'default/pod');
    assert.equal(buildResource('default', 'pod', ''), 'default/pod');
    assert.equal(buildResource(undefined, 'node'), 'default/node');
  });

  it('parses three, two and one part forms', () => {
    assert.deepEqual(parseResource('default/pod/nginx'), { namespace: 'default', type: 'pod', name: 'nginx' });
    assert.deepEqual(parseResource('default/pod'), { namespace: 'default', type: 'pod' });
    assert.deepEqual(parseResource('membership'), { type: 'membership' });
    // Names may contain slashes: everything after the type is the name.
    assert.deepEqual(parseResource('default/configmap/a/b'), { namespace: 'default', type: 'configmap', name: 'a/b' });
  });

  it('round-trips build → parse for named resources', () => {
    for (const [ns, type, name] of [
      ['default', 'pod', 'nginx'],
      ['kube-system', 'configmap', 'coredns'],
      [undefined, 'node', 'edge-1'],
      [undefined, 'device', 'thermo-01'],
    ] as const) {
      const parsed = parseResource(buildResource(ns, type, name));
      assert.equal(parsed.namespace, ns ?? 'default');
      assert.equal(parsed.type, type);
      assert.equal(parsed.name, name);
    }
  });

  it('round-trips a namespaced resource without a name', () => {
    assert.deepEqual(parseResource(buildResource('default', 'pod')), { namespace: 'default', type: 'pod' });
  });
});

describe('encodeCbor', () => {
  it('returns a copy and gives back a working buffer a big value grew', () => {
    const encoder = new Encoder(cborEncoderOptions);
    const big = { blob: 'x'.repeat(300_000) };
    const bytes = encodeCbor(encoder, big);
    assert.ok(bytes.buffer.byteLength < 310_000, 'the result is a copy of its own size');
    // The next encode starts in a fresh 8 KiB buffer, not in the 1 MiB+ one the big value needed.
    assert.equal(encoder.encode(1).buffer.byteLength, 8192);
    const again = encodeCbor(encoder, { a: 1 });
    assert.deepEqual([...again], [...encoder.encode({ a: 1 })]);
  });
});
