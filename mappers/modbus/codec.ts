/**
 * @module
 * Register bytes ↔ twin values for the Modbus mapper, with KubeEdge's conventions
 * (mappers-go `TransferData`): registers are big-endian 16-bit words; `isRegisterSwap`
 * reverses the word order, `isSwap` swaps the bytes of each word; INT is unsigned (2, 4 or
 * 8 bytes) times `scale`, truncated; FLOAT is a float32 (4 bytes), DOUBLE a float64
 * (8 bytes), each times `scale`; BOOLEAN is "any bit set"; STRING is the bytes as text.
 *
 * Beyond KubeEdge: FLOAT/DOUBLE over ONE register read it as an unsigned integer times
 * `scale` (the common "235 × 0.1 = 23.5 °C" register; KubeEdge refuses it), and a written
 * value is divided by `scale` so that reading it back gives the value written (KubeEdge's
 * v1.15 DMI mapper writes the visitor's `limit` instead of the value). Negative INT values
 * cannot be written: they would read back as large unsigned numbers.
 */
import type { PropertyType } from '../../shared/devices/index.js';
import { DeviceInvalidError } from '../../shared/errors/index.js';
import { parseValue } from '../sdk/index.js';
import type { ModbusVisitor } from './config.js';

/** Applies isRegisterSwap and isSwap (each is its own inverse, and they commute: the same call encodes and decodes). */
export function swapped(bytes: Buffer, v: Pick<ModbusVisitor, 'isSwap' | 'isRegisterSwap'>): Buffer {
  const out = Buffer.from(bytes);
  const words = Math.floor(out.length / 2);
  if (v.isRegisterSwap) {
    for (let i = 0, j = words - 1; i < j; i++, j--) {
      const a = out.readUInt16BE(i * 2);
      out.writeUInt16BE(out.readUInt16BE(j * 2), i * 2);
      out.writeUInt16BE(a, j * 2);
    }
  }
  if (v.isSwap) out.swap16();
  return out;
}

/** A number as its shortest string after removing the noise of binary scaling (235 × 0.1 → "23.5"). */
function tidy(n: number, digits: number): string {
  return String(Number(n.toPrecision(digits)));
}

/** Register bytes (as read, big-endian) → the twin value string. */
export function decodeRegisters(raw: Buffer, type: PropertyType, v: ModbusVisitor): string {
  const b = swapped(raw, v);
  switch (type) {
    case 'INT': {
      let n: number;
      if (b.length === 2) n = b.readUInt16BE(0);
      else if (b.length === 4) n = b.readUInt32BE(0);
      else if (b.length === 8) n = Number(b.readBigUInt64BE(0));
      else throw new DeviceInvalidError(`an INT needs 1, 2 or 4 registers (limit is ${v.limit})`);
      return String(Math.trunc(Number((n * v.scale).toPrecision(15))));
    }
    case 'FLOAT':
    case 'DOUBLE': {
      if (b.length === 2) return tidy(b.readUInt16BE(0) * v.scale, 12);
      if (b.length === 4) return tidy(Number(b.readFloatBE(0).toPrecision(7)) * v.scale, 12);
      if (b.length === 8) return tidy(b.readDoubleBE(0) * v.scale, 15);
      throw new DeviceInvalidError(`a ${type} needs 1, 2 or 4 registers (limit is ${v.limit})`);
    }
    case 'BOOLEAN':
      return String(b.some((x) => x !== 0));
    case 'BYTES':
      return b.toString('base64');
    default:
      return b.toString('utf8').replace(/\0+$/, '');
  }
}

/** Coils or discrete inputs (as read) → the twin value string: BOOLEAN the first bit, numbers the bits as an integer (first bit lowest) × scale. */
export function decodeBits(bits: boolean[], type: PropertyType, v: ModbusVisitor): string {
  const used = bits.slice(0, v.limit);
  if (type === 'BOOLEAN' || type === 'STRING') return String(used[0] === true);
  let n = 0;
  for (let i = used.length - 1; i >= 0; i--) n = n * 2 + (used[i] ? 1 : 0);
  return type === 'INT' ? String(Math.trunc(Number((n * v.scale).toPrecision(15)))) : tidy(n * v.scale, 12);
}

function rawNumber(type: PropertyType, value: string, v: ModbusVisitor): number {
  const parsed = parseValue(type, value);
  const n = typeof parsed === 'boolean' ? (parsed ? 1 : 0) : typeof parsed === 'number' ? parsed : Number.NaN;
  if (!Number.isFinite(n)) throw new DeviceInvalidError(`"${value.slice(0, 40)}" is not a number`);
  return n / v.scale;
}

function unsignedInteger(raw: number, bytes: number, value: string): number {
  const n = Math.round(raw);
  const max = bytes === 2 ? 0xffff : bytes === 4 ? 0xffffffff : Number.MAX_SAFE_INTEGER;
  if (n < 0) throw new DeviceInvalidError(`${value} cannot be written: registers hold unsigned values`);
  if (n > max) throw new DeviceInvalidError(`${value} does not fit in ${bytes / 2} register(s)`);
  return n;
}

/** A desired value → the register words to write (after the visitor's swaps). */
export function encodeRegisters(value: string, type: PropertyType, v: ModbusVisitor): number[] {
  const bytes = v.limit * 2;
  const b = Buffer.alloc(bytes);
  if (type === 'STRING' || type === 'BYTES') {
    const data = type === 'BYTES' ? Buffer.from(value, 'base64') : Buffer.from(value, 'utf8');
    if (data.length > bytes) throw new DeviceInvalidError(`the value is ${data.length} bytes; ${v.limit} register(s) hold ${bytes}`);
    data.copy(b);
  } else {
    const raw = rawNumber(type, value, v);
    const float = type === 'FLOAT' || type === 'DOUBLE';
    if (bytes === 2) b.writeUInt16BE(unsignedInteger(raw, 2, value));
    else if (bytes === 4 && float) b.writeFloatBE(raw);
    else if (bytes === 4) b.writeUInt32BE(unsignedInteger(raw, 4, value));
    else if (bytes === 8 && float) b.writeDoubleBE(raw);
    else if (bytes === 8) b.writeBigUInt64BE(BigInt(unsignedInteger(raw, 8, value)));
    else throw new DeviceInvalidError(`a ${type} is written to 1, 2 or 4 registers (limit is ${v.limit})`);
  }
  const out = swapped(b, v);
  const words: number[] = [];
  for (let i = 0; i < out.length; i += 2) words.push(out.readUInt16BE(i));
  return words;
}

/** A desired value → coil states (first coil = lowest bit). */
export function encodeBits(value: string, type: PropertyType, v: ModbusVisitor): boolean[] {
  const parsed = parseValue(type === 'STRING' ? 'BOOLEAN' : type, value);
  if (typeof parsed === 'boolean') return Array.from({ length: v.limit }, (_, i) => i === 0 && parsed);
  const n = Math.round(rawNumber(type, value, v));
  if (n < 0 || n >= 2 ** Math.min(v.limit, 53)) throw new DeviceInvalidError(`${value} does not fit in ${v.limit} coil(s)`);
  const bits: boolean[] = [];
  let rest = n;
  for (let i = 0; i < v.limit; i++) {
    bits.push(rest % 2 === 1);
    rest = Math.floor(rest / 2);
  }
  return bits;
}
