/**
 * @module
 * Kubernetes `resource.Quantity` strings (`500m`, `1.5Gi`, `1e3`, `128974848`) read exactly.
 *
 * Grammar (as apimachinery's parser accepts it): an optional sign, digits with an optional
 * fraction (`1`, `1.5`, `.5`, `1.`, even `.`), then one suffix: none, a decimal SI one (`n u m k M
 * G T P E`), a binary SI one (`Ki Mi Gi Ti Pi Ei`) or a decimal exponent (`e3`, `E-3`, `e+6`; `E`
 * alone is exa). No whitespace anywhere. Like Kubernetes, a value is kept to nano precision,
 * rounded up in magnitude (`3.001n` is 4n), a binary-SI value saturates at 2^63-1 (`9Ei`), and
 * an exponent outside int32 is malformed. Unlike Kubernetes (arbitrary precision), a decimal
 * value of 1e300 or more is refused as out of range rather than computed.
 *
 * Values are computed with BigInt nanos, so `cpuMillis` and `bytes` round exactly as the kubelet
 * does (`MilliValue()` and `Value()`: up, in magnitude); only the final conversion to a JS number
 * can lose precision, past 2^53 (9 PB, far beyond any limit).
 */
import { PodSpecError } from '../../shared/errors/index.js';

const DECIMAL_SI: Record<string, number> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const BINARY_SI: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };
const INT32_MAX = 2 ** 31 - 1;
const NANO = 1_000_000_000n;
/** apimachinery's maxAllowed: 2^63-1 (in units), here in nanos. */
const MAX_NANOS = (2n ** 63n - 1n) * NANO;
/** Decimal digits of the largest value in nanos Ledge computes (1e300 units): larger decimal quantities are refused, not built. */
const MAX_DIGITS = 309;

/** A malformed quantity: a PodSpecError naming the text (kubelet: "quantities must match the regular expression …"). */
function malformed(s: string, why: string): PodSpecError {
  return new PodSpecError(`invalid quantity ${JSON.stringify(s)}: ${why} (expected e.g. 500m, 2, 1.5Gi, 128974848, 1e3)`);
}

const NUMBER = /^([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)$/s;
const EXPONENT = /^[eE]([+-]?[0-9]+)$/;

/** |a| / b rounded up, b > 0. */
function ceilDiv(a: bigint, b: bigint): bigint {
  return (a + b - 1n) / b;
}

function decimalDigits(n: bigint): number {
  return n === 0n ? 1 : n.toString().length;
}

/**
 * The exact value of a quantity in nano-units (10^-9), rounded up in magnitude and saturated as
 * Kubernetes does. Accepts a number too (JSON clients may send `cpu: 2`). Throws PodSpecError on
 * malformed input.
 */
export function parseQuantityNanos(input: string | number): bigint {
  const s = typeof input === 'number' ? numberText(input) : input;
  if (typeof s !== 'string' || s.length === 0) throw malformed(String(s), 'empty');
  const m = NUMBER.exec(s);
  if (!m) throw malformed(s, 'not a number');
  const [, sign = '', intPart = '', fracPart = '', suffix = ''] = m;
  let exp10 = 0;
  let exp2 = 0;
  if (suffix in DECIMAL_SI) exp10 = DECIMAL_SI[suffix]!;
  else if (suffix in BINARY_SI) exp2 = BINARY_SI[suffix]!;
  else {
    const e = EXPONENT.exec(suffix);
    if (!e) throw malformed(s, `unknown suffix ${JSON.stringify(suffix)}`);
    const n = Number(e[1]);
    if (!Number.isSafeInteger(n) || Math.abs(n) > INT32_MAX) throw malformed(s, 'exponent out of range');
    exp10 = n;
  }
  // value = mantissa * 10^(exp10 - fraction digits) * 2^exp2; in nanos: * 10^9.
  const mantissa = BigInt(`${intPart}${fracPart}` || '0') * 2n ** BigInt(exp2);
  const negative = sign === '-';
  if (mantissa === 0n) return 0n;
  const shift = exp10 - fracPart.length + 9;
  let nanos: bigint;
  if (shift >= 0) {
    if (decimalDigits(mantissa) + shift > MAX_DIGITS) {
      // Not built: 10^shift can be 10^2147483647.
      if (exp2 > 0) nanos = MAX_NANOS;
      else throw malformed(s, `out of range (Ledge reads quantities below 1e${MAX_DIGITS - 9})`);
    } else nanos = mantissa * 10n ** BigInt(shift);
  } else if (-shift > decimalDigits(mantissa)) {
    nanos = 1n; // smaller than one nano: rounds up to it
  } else {
    nanos = ceilDiv(mantissa, 10n ** BigInt(-shift));
  }
  // As apimachinery: only a binary-SI quantity is capped (at 2^63-1).
  if (exp2 > 0 && nanos > MAX_NANOS) nanos = MAX_NANOS;
  return negative ? -nanos : nanos;
}

function numberText(n: number): string {
  if (!Number.isFinite(n)) throw malformed(String(n), 'not a finite number');
  return String(n); // 1e+21 is an exponent with a sign, which the grammar accepts
}

function toNumber(units: bigint): number {
  return Number(units);
}

/** The quantity as a number of units (cores, bytes), to nano precision. Throws PodSpecError on malformed input. */
export function parseQuantity(s: string | number): number {
  const nanos = parseQuantityNanos(s);
  const whole = nanos / NANO;
  const frac = nanos % NANO;
  return toNumber(whole) + Number(frac) / 1e9;
}

/** Rounds nanos up in magnitude to a multiple of `unit` nanos, returning the count. */
function roundUp(nanos: bigint, unit: bigint): bigint {
  return nanos < 0n ? -ceilDiv(-nanos, unit) : ceilDiv(nanos, unit);
}

/** Millicores, rounded up (Kubernetes' `MilliValue()`): `0.5` → 500, `100m` → 100, `1.0001` → 1001. */
export function cpuMillis(q: string | number): number {
  return toNumber(roundUp(parseQuantityNanos(q), 1_000_000n));
}

/** Whole units, rounded up (Kubernetes' `Value()`): `1Gi` → 1073741824, `1.5k` → 1500, `0.5` → 1. */
export function bytes(q: string | number): number {
  return toNumber(roundUp(parseQuantityNanos(q), NANO));
}
