/**
 * @module
 * A structural pre-check of untrusted CBOR before it reaches the decoder library.
 * It walks the item without allocating and enforces Ledge's wire profile
 * (docs/protocol.md, "CBOR profile"): one well-formed item filling the frame,
 * definite lengths only, no tags, no simple values beyond false/true/null/undefined,
 * text-string map keys (never `__proto__`), integers within ±(2^53-1), nesting
 * at most `maxDepth`, and every declared length within the bytes that remain.
 * cbor-x also checks lengths, but has no depth limit (it relies on the call stack)
 * and accepts its own extensions (records, packed, shared refs) via tags; rejecting
 * tags here keeps the wire standard RFC 8949 and the decoder's surface small.
 */
import { InvalidFrameError } from '../errors/index.js';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

class Walker {
  pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly view: DataView,
    private readonly maxDepth: number,
  ) {}

  fail(reason: string): never {
    throw new InvalidFrameError(`malformed CBOR at byte ${this.pos}: ${reason}`);
  }

  need(n: number): void {
    if (n > this.buf.length - this.pos) this.fail(`truncated (need ${n} more bytes, ${this.buf.length - this.pos} left)`);
  }

  /** Reads the argument of an initial byte; returns a number (lengths beyond 2^53 fail). */
  arg(info: number, major: number): number {
    if (info < 24) return info;
    switch (info) {
      case 24:
        this.need(1);
        return this.buf[this.pos++]!;
      case 25: {
        this.need(2);
        const v = this.view.getUint16(this.pos);
        this.pos += 2;
        return v;
      }
      case 26: {
        this.need(4);
        const v = this.view.getUint32(this.pos);
        this.pos += 4;
        return v;
      }
      case 27: {
        this.need(8);
        const v = this.view.getBigUint64(this.pos);
        this.pos += 8;
        // A negative int is -1-v, so its bound is one tighter: v ≤ 2^53-2.
        if (v > MAX_SAFE || (major === 1 && v === MAX_SAFE)) this.fail(major <= 1 ? 'integer outside ±(2^53-1)' : 'length too large');
        return Number(v);
      }
      case 31:
        return this.fail('indefinite-length items are not allowed');
      default:
        return this.fail(`reserved additional information ${info}`);
    }
  }

  item(depth: number, asKey = false): void {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`);
    this.need(1);
    const initial = this.buf[this.pos++]!;
    const major = initial >> 5;
    const info = initial & 31;
    if (asKey && major !== 3) this.fail('map keys must be text strings');
    switch (major) {
      case 0:
      case 1:
        this.arg(info, major);
        return;
      case 2:
      case 3: {
        const len = this.arg(info, major);
        this.need(len);
        if (asKey && len === 9 && isProtoKey(this.buf, this.pos)) this.fail('map key "__proto__" is not allowed');
        this.pos += len;
        return;
      }
      case 4: {
        const n = this.arg(info, major);
        // Each item takes at least one byte: a length beyond the rest is a lie.
        this.need(n);
        for (let i = 0; i < n; i++) this.item(depth + 1);
        return;
      }
      case 5: {
        const n = this.arg(info, major);
        this.need(n * 2);
        for (let i = 0; i < n; i++) {
          this.item(depth + 1, true);
          this.item(depth + 1);
        }
        return;
      }
      case 6:
        return this.fail('tags are not allowed');
      default: // 7: simple values and floats
        if (info >= 20 && info <= 23) return; // false, true, null, undefined
        if (info === 25) {
          this.need(2);
          this.pos += 2;
          return;
        }
        if (info === 26) {
          this.need(4);
          this.pos += 4;
          return;
        }
        if (info === 27) {
          this.need(8);
          this.pos += 8;
          return;
        }
        if (info === 31) return this.fail('unexpected break');
        return this.fail(`simple value ${info} is not allowed`);
    }
  }
}

const proto = [0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f]; // "__proto__"
function isProtoKey(buf: Uint8Array, at: number): boolean {
  for (let i = 0; i < 9; i++) if (buf[at + i] !== proto[i]) return false;
  return true;
}

/** Throws {@link InvalidFrameError} unless `buf` holds exactly one item of Ledge's CBOR profile. */
export function validateCbor(buf: Uint8Array, maxDepth: number): void {
  if (buf.length === 0) throw new InvalidFrameError('empty frame');
  const w = new Walker(buf, new DataView(buf.buffer, buf.byteOffset, buf.byteLength), maxDepth);
  w.item(0);
  if (w.pos !== buf.length) w.fail(`${buf.length - w.pos} trailing bytes after the item`);
}
