/**
 * @module
 * Lets Go gRPC clients older than grpc-go 1.57 reach a node:http2 server over a unix socket.
 *
 * Why: those clients (mappers built on KubeEdge 1.15–1.17, grpc-go 1.49–1.56) dial
 * `grpc.Dial("/etc/kubeedge/dmi.sock", WithContextDialer(...))` and send the socket path itself as
 * `:authority`. Node's HTTP/2 library (nghttp2) refuses a `/` in `:authority` with RST_STREAM
 * PROTOCOL_ERROR before the server sees the request, and Node has no option to relax that check.
 * (grpc-go ≥ 1.57 percent-encodes the path, grpc-js sends "localhost": both pass untouched.)
 *
 * How: a pass-through stream between the socket and the HTTP/2 server that looks at the frames
 * the client sends. In a HEADERS block (with its CONTINUATION frames) a literal `:authority`
 * whose value has characters nghttp2 refuses is rewritten to the same value with each such
 * character replaced by `_`, sent as a plain (not Huffman) literal. The decoded length is kept, so
 * the HPACK dynamic table on both sides stays the same size and later requests that refer to the
 * indexed entry stay consistent. Everything else passes byte for byte; anything we cannot parse
 * (a Huffman code longer than 15 bits, i.e. outside printable ASCII, a block over the bound, a
 * protocol error) passes unchanged, and nghttp2 judges it as it would without us.
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

const PREFACE_LENGTH = 24; // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
const FRAME_HEADERS = 0x1;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** Our server's SETTINGS_MAX_FRAME_SIZE (HTTP/2's default); a bigger frame is not ours to judge. */
const MAX_FRAME = 16_384;
/** A header block bigger than this passes unchanged (nghttp2 bounds header lists itself). */
const MAX_BLOCK = 256 * 1024;

// HPACK's Huffman code (RFC 7541 Appendix B) is canonical: codes follow from the code lengths in
// symbol order. Only the codes up to 15 bits are listed (all printable ASCII but '\', and NUL);
// a value using a longer code is left alone.
const HUFFMAN_BY_LENGTH: [number, string][] = [
  [5, '012aceiost'],
  [6, ' %-./3456789=A_bdfghlmnpru'],
  [7, ':BCDEFGHIJKLMNOPQRSTUVWYjkqvwxyz'],
  [8, '&*,;XZ'],
  [10, '!"()?'],
  [11, "'+|"],
  [12, '#>'],
  [13, '\0$@[]~'],
  [14, '^}'],
  [15, '<`{'],
];
interface CodeLength {
  first: number;
  symbols: number[];
}
const codesByLength = (() => {
  const out = new Map<number, CodeLength>();
  let code = 0;
  let length = 0;
  for (const [len, chars] of HUFFMAN_BY_LENGTH) {
    code <<= len - length;
    length = len;
    const symbols = [...chars].map((c) => c.charCodeAt(0)).sort((a, b) => a - b);
    out.set(len, { first: code, symbols });
    code += symbols.length;
  }
  return out;
})();

/** Decodes an HPACK Huffman string; undefined when it uses a code we do not list or is malformed. */
export function huffmanDecode(bytes: Uint8Array): string | undefined {
  let out = '';
  let code = 0;
  let length = 0;
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      length++;
      const entry = codesByLength.get(length);
      if (entry && code - entry.first >= 0 && code - entry.first < entry.symbols.length) {
        out += String.fromCharCode(entry.symbols[code - entry.first]!);
        code = 0;
        length = 0;
      } else if (length > 15) {
        return undefined;
      }
    }
  }
  // Padding: fewer than 8 bits, all ones (a prefix of EOS).
  if (length >= 8 || code !== (1 << length) - 1) return undefined;
  return out;
}

/** Characters nghttp2 accepts in :authority (RFC 3986 authority: unreserved, sub-delims, ':', '@', '[', ']', '%'). */
const AUTHORITY_OK = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]*$/;
const AUTHORITY_BAD = /[^A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]/g;

function readInt(block: Uint8Array, pos: number, prefixBits: number): [number, number] | undefined {
  if (pos >= block.length) return undefined;
  const mask = (1 << prefixBits) - 1;
  let value = block[pos]! & mask;
  pos++;
  if (value < mask) return [value, pos];
  let shift = 0;
  for (;;) {
    if (pos >= block.length || shift > 28) return undefined;
    const b = block[pos++]!;
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return [value, pos];
  }
}

interface HpackString {
  start: number;
  end: number;
  huffman: boolean;
  bytes: Uint8Array;
}
function readString(block: Uint8Array, pos: number): HpackString | undefined {
  if (pos >= block.length) return undefined;
  const huffman = (block[pos]! & 0x80) !== 0;
  const len = readInt(block, pos, 7);
  if (!len || len[1] + len[0] > block.length) return undefined;
  return { start: pos, end: len[1] + len[0], huffman, bytes: block.subarray(len[1], len[1] + len[0]) };
}
const stringValue = (s: HpackString): string | undefined => (s.huffman ? huffmanDecode(s.bytes) : Buffer.from(s.bytes).toString('latin1'));

function encodeRawString(value: string): Buffer {
  const bytes = Buffer.from(value, 'latin1');
  const prefix: number[] = [];
  if (bytes.length < 127) prefix.push(bytes.length);
  else {
    prefix.push(127);
    let rest = bytes.length - 127;
    while (rest >= 128) {
      prefix.push((rest & 0x7f) | 0x80);
      rest = Math.floor(rest / 128);
    }
    prefix.push(rest);
  }
  return Buffer.concat([Buffer.from(prefix), bytes]);
}

/** Each literal header in an HPACK block: its name (when known without the dynamic table) and value. */
export function* literalHeaders(block: Uint8Array): Generator<{ name: string | undefined; value: HpackString }, boolean> {
  let pos = 0;
  while (pos < block.length) {
    const b = block[pos]!;
    if (b & 0x80) {
      const r = readInt(block, pos, 7);
      if (!r) return false;
      pos = r[1];
      continue;
    }
    if ((b & 0xe0) === 0x20) {
      const r = readInt(block, pos, 5);
      if (!r) return false;
      pos = r[1];
      continue;
    }
    const r = readInt(block, pos, (b & 0xc0) === 0x40 ? 6 : 4);
    if (!r) return false;
    const [index, afterIndex] = r;
    pos = afterIndex;
    let name: string | undefined;
    if (index === 0) {
      const n = readString(block, pos);
      if (!n) return false;
      name = stringValue(n);
      pos = n.end;
    } else if (index === 1) {
      name = ':authority'; // static table entry 1
    }
    const value = readString(block, pos);
    if (!value) return false;
    pos = value.end;
    yield { name, value };
  }
  return true;
}

/** The block with bad `:authority` literals rewritten, or undefined when nothing needs (or can get) a change. */
export function rewriteAuthority(block: Uint8Array): Buffer | undefined {
  const edits: { start: number; end: number; bytes: Buffer }[] = [];
  const it = literalHeaders(block);
  for (let r = it.next(); !r.done; r = it.next()) {
    const { name, value } = r.value;
    if (name !== ':authority') continue;
    const text = stringValue(value);
    if (text === undefined || AUTHORITY_OK.test(text)) continue;
    edits.push({ start: value.start, end: value.end, bytes: encodeRawString(text.replace(AUTHORITY_BAD, '_')) });
  }
  if (edits.length === 0) return undefined;
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const e of edits) {
    parts.push(block.subarray(at, e.start), e.bytes);
    at = e.end;
  }
  parts.push(block.subarray(at));
  return Buffer.concat(parts);
}

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return h;
}

/**
 * The client→server byte stream, frame by frame. `push` returns what to pass on for a chunk.
 * Non-header frames are passed on as they arrive (not buffered); a header block is held until
 * its last frame.
 */
export class AuthorityFixer {
  private preface = PREFACE_LENGTH;
  private header: Buffer = Buffer.alloc(0);
  private passRemaining = 0; // payload bytes of a pass-through frame still to forward
  private holding: { raw: Buffer[]; type: number; flags: number; streamId: number; length: number; got: Buffer[]; gotBytes: number } | undefined;
  private block: { raw: Buffer[]; streamId: number; flags: number; priority: Buffer; fragments: Buffer[]; bytes: number } | undefined;
  private passAll = false;

  push(chunk: Buffer): Buffer[] {
    if (this.passAll) return [chunk];
    const out: Buffer[] = [];
    let pos = 0;
    if (this.preface > 0) {
      const n = Math.min(this.preface, chunk.length);
      out.push(chunk.subarray(0, n));
      this.preface -= n;
      pos = n;
    }
    while (pos < chunk.length) {
      if (this.passRemaining > 0) {
        const n = Math.min(this.passRemaining, chunk.length - pos);
        out.push(chunk.subarray(pos, pos + n));
        this.passRemaining -= n;
        pos += n;
        continue;
      }
      if (this.holding) {
        const h = this.holding;
        const n = Math.min(h.length - h.gotBytes, chunk.length - pos);
        h.got.push(chunk.subarray(pos, pos + n));
        h.gotBytes += n;
        pos += n;
        if (h.gotBytes === h.length) {
          this.holding = undefined;
          this.onHeaderFrame(h.raw[0]!, h.type, h.flags, h.streamId, Buffer.concat(h.got), out);
          if (this.passAll) {
            out.push(chunk.subarray(pos));
            return out;
          }
        }
        continue;
      }
      const need = 9 - this.header.length;
      const take = chunk.subarray(pos, pos + need);
      this.header = this.header.length ? Buffer.concat([this.header, take]) : take;
      pos += take.length;
      if (this.header.length < 9) break;
      const header = Buffer.from(this.header);
      this.header = Buffer.alloc(0);
      const length = header.readUIntBE(0, 3);
      const type = header[3]!;
      const flags = header[4]!;
      const streamId = header.readUInt32BE(5) & 0x7fffffff;
      const isHeaderFrame = type === FRAME_HEADERS || type === FRAME_CONTINUATION;
      if (this.block && (!isHeaderFrame || type !== FRAME_CONTINUATION || streamId !== this.block.streamId)) {
        // A protocol error by the peer: hand over what we held, unchanged, and step aside.
        return this.giveUp(out, header, chunk.subarray(pos));
      }
      if (!isHeaderFrame || length > MAX_FRAME) {
        if (isHeaderFrame) return this.giveUp(out, header, chunk.subarray(pos));
        out.push(header);
        this.passRemaining = length;
        continue;
      }
      this.holding = { raw: [header], type, flags, streamId, length, got: [], gotBytes: 0 };
      if (length === 0) {
        this.holding = undefined;
        this.onHeaderFrame(header, type, flags, streamId, Buffer.alloc(0), out);
        if (this.passAll) {
          out.push(chunk.subarray(pos));
          return out;
        }
      }
    }
    return out;
  }

  private giveUp(out: Buffer[], header: Buffer, rest: Buffer): Buffer[] {
    if (this.block) out.push(...this.block.raw);
    this.block = undefined;
    this.passAll = true;
    out.push(header, rest);
    return out;
  }

  private onHeaderFrame(header: Buffer, type: number, flags: number, streamId: number, payload: Buffer, out: Buffer[]): void {
    const raw = Buffer.concat([header, payload]);
    if (type === FRAME_CONTINUATION && !this.block) {
      this.giveUp(out, raw, Buffer.alloc(0));
      return;
    }
    if (type === FRAME_HEADERS) {
      let p = 0;
      let end = payload.length;
      if (flags & FLAG_PADDED) {
        const pad = payload[0] ?? 0;
        p = 1;
        end -= pad;
      }
      const priority = flags & FLAG_PRIORITY ? payload.subarray(p, p + 5) : Buffer.alloc(0);
      p += priority.length;
      if (end < p) {
        this.giveUp(out, raw, Buffer.alloc(0));
        return;
      }
      this.block = { raw: [raw], streamId, flags, priority: Buffer.from(priority), fragments: [payload.subarray(p, end)], bytes: end - p };
    } else {
      const b = this.block!;
      b.raw.push(raw);
      b.fragments.push(payload);
      b.bytes += payload.length;
      if (b.bytes > MAX_BLOCK) {
        this.giveUp(out, Buffer.alloc(0), Buffer.alloc(0));
        return;
      }
    }
    if ((flags & FLAG_END_HEADERS) === 0) return;
    const b = this.block!;
    this.block = undefined;
    const fixed = rewriteAuthority(Buffer.concat(b.fragments));
    if (!fixed) {
      out.push(...b.raw);
      return;
    }
    // Re-frame: HEADERS (priority kept, padding dropped), then CONTINUATION frames within MAX_FRAME.
    const keptFlags = b.flags & ~(FLAG_PADDED | FLAG_END_HEADERS);
    const firstRoom = MAX_FRAME - b.priority.length;
    let at = Math.min(firstRoom, fixed.length);
    const last = at === fixed.length;
    out.push(frameHeader(b.priority.length + at, FRAME_HEADERS, keptFlags | (last ? FLAG_END_HEADERS : 0), b.streamId), b.priority, fixed.subarray(0, at));
    while (at < fixed.length) {
      const n = Math.min(MAX_FRAME, fixed.length - at);
      out.push(frameHeader(n, FRAME_CONTINUATION, at + n === fixed.length ? FLAG_END_HEADERS : 0, b.streamId), fixed.subarray(at, at + n));
      at += n;
    }
  }
}

/** Wraps a server-side socket so that what the client sends goes through an AuthorityFixer. */
export function fixAuthority(socket: Socket): Duplex {
  const fixer = new AuthorityFixer();
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end();
      callback();
    },
    destroy(err, callback) {
      socket.destroy(err ?? undefined);
      callback(err);
    },
  });
  socket.on('data', (chunk: Buffer) => {
    for (const part of fixer.push(chunk)) if (part.length > 0 && !duplex.push(part)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('error', (err) => duplex.destroy(err));
  socket.on('close', () => duplex.destroy());
  return duplex;
}
