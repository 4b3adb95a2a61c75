// The :authority fix for old Go gRPC clients (shared/dmi/authority.ts): its Huffman decoder
// checked against nghttp2's encoder (the bytes a real node:http2 client sends), and requests whose
// :authority is a socket path (as grpc-go < 1.57 sends it) answered by our server, with the header
// block as one frame, split over CONTINUATION frames, padded with priority, and byte by byte.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { AuthorityFixer, huffmanDecode, literalHeaders, rewriteAuthority } from '../../shared/dmi/authority.js';
import { frameMessage } from '../../shared/dmi/codec.js';
import { v1beta1 } from '../../shared/dmi/generated/dmi.js';
import { serveDeviceManager } from '../../shared/dmi/index.js';
import { tempDir } from '../helpers/files.js';
import { prng } from '../helpers/prng.js';
import { within } from '../helpers/process.js';

const dir = tempDir('ledge-dmi-');
after(() => dir.cleanup());
let n = 0;
const sockPath = () => join(dir.path, `a${n++}.sock`);

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}
function parseFrames(bytes: Buffer): Frame[] {
  const out: Frame[] = [];
  let pos = 0;
  while (pos + 9 <= bytes.length) {
    const len = bytes.readUIntBE(pos, 3);
    out.push({ type: bytes[pos + 3]!, flags: bytes[pos + 4]!, streamId: bytes.readUInt32BE(pos + 5) & 0x7fffffff, payload: bytes.subarray(pos + 9, pos + 9 + len) });
    pos += 9 + len;
  }
  return out;
}
function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

/** The bytes a real node:http2 client sends for one request with `headers` (captured by a plain socket server). */
async function captureRequest(headers: http2.OutgoingHttpHeaders): Promise<Buffer> {
  const path = sockPath();
  const chunks: Buffer[] = [];
  let got: () => void = () => {};
  const done = new Promise<void>((r) => (got = r));
  const server = net.createServer((s) => {
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      // Preface (24) + SETTINGS, then a HEADERS frame: enough once a HEADERS frame has arrived.
      const all = Buffer.concat(chunks);
      if (all.length > 24 && parseFrames(all.subarray(24)).some((f) => f.type === 1)) got();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(path) });
  session.on('error', () => {});
  const stream = session.request({ ':method': 'POST', ':path': '/x', ...headers });
  stream.on('error', () => {});
  stream.end();
  await within(done, 10_000, 'the captured request');
  session.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  return Buffer.concat(chunks);
}
const headerBlockOf = (captured: Buffer) => parseFrames(captured.subarray(24)).find((f) => f.type === 1)!.payload;

describe('HPACK Huffman decoding against nghttp2', () => {
  test('random printable ASCII values (all but backslash) decode exactly', async () => {
    const rand = prng(12);
    const alphabet = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).filter((c) => c !== '\\');
    // nghttp2 uses Huffman only when it is shorter: each rare character sits among common ones.
    const common = '012aceiost /-.';
    const pick = (chars: string) => chars[Math.floor(rand() * chars.length)]!;
    const filler = (k: number) => Array.from({ length: k }, () => pick(common)).join('');
    const values = alphabet.map((c) => `${filler(8)}${c}${filler(1 + Math.floor(rand() * 12))}`);
    for (let i = 0; i < 20; i++) values.push(Array.from({ length: 10 + Math.floor(rand() * 40) }, () => (rand() < 0.8 ? pick(common) : pick(alphabet.join('')))).join(''));
    const headers: http2.OutgoingHttpHeaders = {};
    for (const [i, v] of values.entries()) headers[`x-probe-${i}`] = v.trim() || 'x';
    const block = headerBlockOf(await captureRequest(headers));
    const seen = new Map<string, string>();
    let huffman = 0;
    for (const { name, value } of literalHeaders(block)) {
      if (value.huffman) huffman++;
      const text = value.huffman ? huffmanDecode(value.bytes) : Buffer.from(value.bytes).toString('latin1');
      assert.notEqual(text, undefined, `decodes ${name}`);
      if (name) seen.set(name, text!);
    }
    assert.ok(huffman >= alphabet.length, `nghttp2 used Huffman coding for every probe value (${huffman})`);
    for (const [i, v] of values.entries()) assert.equal(seen.get(`x-probe-${i}`), v.trim() || 'x');
  });

  test('a code longer than 15 bits or a bad padding is refused, not guessed', () => {
    assert.equal(huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff])), undefined, 'EOS-like run');
    assert.equal(huffmanDecode(Buffer.from([0x00])), undefined, "'0' then padding of zeros");
    assert.equal(huffmanDecode(Buffer.from([0x07])), '0', "'0' (00000) then padding 111");
  });

  test('rewriteAuthority keeps the decoded length and only touches :authority', async () => {
    const block = headerBlockOf(await captureRequest({ ':authority': '/etc/kubeedge/dmi.sock', 'x-other': '/keep/me' }));
    const fixed = rewriteAuthority(block)!;
    const read = (b: Uint8Array) => {
      const m = new Map<string | undefined, string>();
      for (const { name, value } of literalHeaders(b)) m.set(name, value.huffman ? huffmanDecode(value.bytes)! : Buffer.from(value.bytes).toString('latin1'));
      return m;
    };
    assert.equal(read(fixed).get(':authority'), '_etc_kubeedge_dmi.sock');
    assert.equal(read(fixed).get('x-other'), '/keep/me');
    assert.equal(rewriteAuthority(headerBlockOf(await captureRequest({ ':authority': 'localhost' }))), undefined, 'a valid authority: no change');
  });
});

describe('old Go clients: a socket path as :authority', () => {
  const handlers = {
    mapperRegister: async () => ({ deviceList: [{ name: 'ok' }] }),
    reportDeviceStatus: async () => ({}),
    reportDeviceStates: async () => ({}),
  };

  test('node:http2 client with :authority = the socket path, several calls on one session', async () => {
    const path = sockPath();
    const server = await serveDeviceManager(path, handlers);
    try {
      const session = http2.connect('http://localhost', { createConnection: () => net.connect(path) });
      for (const authority of [path, path, '/etc/kubeedge/dmi.sock', `/${'long/'.repeat(40)}dmi.sock`]) {
        const status = await within(
          new Promise<string>((resolve) => {
            const s = session.request({
              ':method': 'POST',
              ':path': '/v1beta1.DeviceManagerService/MapperRegister',
              ':authority': authority,
              'content-type': 'application/grpc',
              te: 'trailers',
            });
            let st = `reset`;
            s.on('trailers', (t) => (st = String(t['grpc-status'])));
            s.on('error', () => {});
            s.on('close', () => resolve(st));
            s.resume();
            s.end(frameMessage(Buffer.alloc(0)));
          }),
          10_000,
          'an answer',
        );
        assert.equal(status, '0', `answered for :authority ${authority}`);
      }
      session.close();
    } finally {
      await server.close();
    }
  });

  /** Writes a hand-built connection to the server and reports the frame types it answers on stream 1. */
  async function rawConnection(path: string, bytes: Buffer[]): Promise<number[]> {
    return within(
      new Promise<number[]>((resolve) => {
        const sock = net.connect(path);
        const got: Buffer[] = [];
        const check = () => {
          const frames = parseFrames(Buffer.concat(got)).filter((f) => f.streamId === 1);
          if (frames.some((f) => f.type === 3 || (f.flags & 0x1 && (f.type === 1 || f.type === 0)))) {
            sock.destroy();
            resolve(frames.map((f) => f.type));
          }
        };
        sock.on('data', (c: Buffer) => {
          got.push(c);
          check();
        });
        sock.on('error', () => {});
        sock.on('connect', async () => {
          for (const b of bytes) await new Promise((r) => sock.write(b, r));
        });
      }),
      10_000,
      'the server to answer stream 1',
    );
  }

  test('the header block as one frame, over CONTINUATION frames, padded with priority, byte by byte', async () => {
    const captured = await captureRequest({
      ':method': 'POST',
      ':path': '/v1beta1.DeviceManagerService/MapperRegister',
      ':authority': '/etc/kubeedge/dmi.sock',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const block = headerBlockOf(captured);
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    const settings = frame(0x4, 0, 0, Buffer.alloc(0));
    const data = frame(0x0, 0x1, 1, frameMessage(Buffer.from(v1beta1.MapperRegisterRequest.encode({ withData: true }).finish())));
    const third = Math.floor(block.length / 3);
    const variants: Record<string, Buffer[]> = {
      single: [frame(0x1, 0x4, 1, block)],
      continuation: [frame(0x1, 0, 1, block.subarray(0, third)), frame(0x9, 0, 1, block.subarray(third, 2 * third)), frame(0x9, 0x4, 1, block.subarray(2 * third))],
      paddedPriority: [frame(0x1, 0x4 | 0x8 | 0x20, 1, Buffer.concat([Buffer.from([3]), Buffer.from([0, 0, 0, 0, 15]), block, Buffer.alloc(3)]))],
    };
    const path = sockPath();
    const server = await serveDeviceManager(path, handlers);
    try {
      for (const [name, headerFrames] of Object.entries(variants)) {
        const types = await rawConnection(path, [preface, settings, ...headerFrames, data]);
        assert.ok(!types.includes(3), `${name}: no RST_STREAM`);
        assert.equal(types[0], 1, `${name}: answered with HEADERS`);
      }
      const all = Buffer.concat([preface, settings, ...variants.continuation!, data]);
      const types = await rawConnection(
        path,
        [...all].map((b) => Buffer.from([b])),
      );
      assert.equal(types[0], 1, 'byte by byte: answered with HEADERS');
    } finally {
      await server.close();
    }
  });

  test('the fixer passes other frames byte for byte, and steps aside on a protocol error', () => {
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    const frames = [frame(0x4, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100])), frame(0x0, 0, 1, Buffer.alloc(40_000, 7)), frame(0x8, 0, 0, Buffer.from([0, 0, 1, 0]))];
    const input = Buffer.concat([preface, ...frames]);
    const f = new AuthorityFixer();
    const out: Buffer[] = [];
    for (let i = 0; i < input.length; i += 777) out.push(...f.push(input.subarray(i, i + 777)));
    assert.deepEqual(Buffer.concat(out), input);
    // A stray CONTINUATION: passed on unchanged, then everything after it too.
    const g = new AuthorityFixer();
    const bad = Buffer.concat([preface, frame(0x9, 0x4, 1, Buffer.from([0x82])), frame(0x0, 0, 1, Buffer.from('x'))]);
    assert.deepEqual(Buffer.concat(g.push(bad)), bad);
  });
});
