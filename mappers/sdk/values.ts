/**
 * @module
 * KubeEdge's twin value encoding for drivers: every value is a string ("12", "23.5",
 * "true"), typed by the model (INT, FLOAT, DOUBLE, BOOLEAN, STRING, BYTES). These helpers
 * turn a desired string into a value a driver can use, and a reading back into the string,
 * refusing what does not fit with a DeviceInvalidError (a clear line, never a crash).
 */
import { DeviceInvalidError } from '../../shared/errors/index.js';
import type { ConfigData, PropertyType } from '../../shared/devices/index.js';

/** A desired value parsed by type: a number (INT, FLOAT, DOUBLE), a boolean, or the string itself. */
export function parseValue(type: PropertyType, value: string): number | boolean | string {
  switch (type) {
    case 'INT': {
      const t = value.trim();
      if (!/^[+-]?\d+$/.test(t)) throw new DeviceInvalidError(`"${clip(value)}" is not an INT`);
      const n = Number(t);
      if (!Number.isSafeInteger(n)) throw new DeviceInvalidError(`"${clip(value)}" is out of the INT range this mapper handles`);
      return n;
    }
    case 'FLOAT':
    case 'DOUBLE': {
      const t = value.trim();
      const n = t === '' ? Number.NaN : Number(t);
      if (!Number.isFinite(n)) throw new DeviceInvalidError(`"${clip(value)}" is not a ${type}`);
      return n;
    }
    case 'BOOLEAN': {
      const t = value.trim().toLowerCase();
      // Go's strconv.ParseBool, which mapper-framework uses, accepts these.
      if (t === 'true' || t === '1' || t === 't') return true;
      if (t === 'false' || t === '0' || t === 'f') return false;
      throw new DeviceInvalidError(`"${clip(value)}" is not a BOOLEAN`);
    }
    default:
      return value;
  }
}

/** A reading as KubeEdge's string: INT truncated to an integer, floats in their shortest form, booleans as true/false. */
export function formatValue(type: PropertyType, value: number | boolean | string): string {
  if (typeof value === 'boolean') return type === 'INT' ? (value ? '1' : '0') : String(value);
  if (typeof value === 'string') return value;
  if (type === 'INT') return String(Math.trunc(value));
  if (type === 'BOOLEAN') return String(value !== 0);
  return String(value);
}

/** A configData number: JSON numbers, the float32 that edgecore turns them into, or numeric strings. */
export function configNumber(data: ConfigData, key: string, fallback?: number): number | undefined {
  const v = data[key];
  if (v === undefined || v === null || v === '') return fallback;
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v.trim()) : Number.NaN;
  if (!Number.isFinite(n)) throw new DeviceInvalidError(`configData.${key} must be a number (got ${clip(JSON.stringify(v) ?? String(v))})`);
  return n;
}

/** A configData boolean: true/false, or their strings ("true", "1"). */
export function configBoolean(data: ConfigData, key: string, fallback: boolean): boolean {
  const v = data[key];
  if (v === undefined || v === null || v === '') return fallback;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'string') {
    const t = v.trim().toLowerCase();
    if (t === 'true' || t === '1') return true;
    if (t === 'false' || t === '0') return false;
  }
  throw new DeviceInvalidError(`configData.${key} must be a boolean (got ${clip(JSON.stringify(v) ?? String(v))})`);
}

/** A configData string (numbers are accepted and turned into strings). */
export function configString(data: ConfigData, key: string): string | undefined {
  const v = data[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new DeviceInvalidError(`configData.${key} must be a string`);
}

function clip(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
}
