/**
 * Kubernetes quantities (edge/edged/quantity.ts) with apimachinery's own table of examples:
 * suffixes, exponents, fractions, the nano rounding (up, in magnitude), saturation at 2^63-1,
 * the inputs it refuses, and the kubelet's rounding of cpuMillis (MilliValue) and bytes (Value).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { bytes, cpuMillis, parseQuantity, parseQuantityNanos } from '../../edge/edged/quantity.js';
import { PodSpecError } from '../../shared/errors/index.js';

/** value = m * 10^e, in nanos. */
const dec = (m: bigint, e: number): bigint => (e + 9 >= 0 ? m * 10n ** BigInt(e + 9) : m / 10n ** BigInt(-(e + 9)));
const MAX = (2n ** 63n - 1n) * 1_000_000_000n;

describe('parseQuantityNanos: apimachinery TestQuantityParse', () => {
  const table: [string, bigint][] = [
    ['0', 0n],
    ['0n', 0n],
    ['0u', 0n],
    ['0m', 0n],
    ['0Ki', 0n],
    ['0k', 0n],
    ['0Mi', 0n],
    ['0M', 0n],
    ['0Gi', 0n],
    ['0G', 0n],
    ['0Ti', 0n],
    ['0T', 0n],
    ['1', dec(1n, 0)],
    ['1Ki', dec(1024n, 0)],
    ['8Ki', dec(8n * 1024n, 0)],
    ['7Mi', dec(7n * 1024n ** 2n, 0)],
    ['6Gi', dec(6n * 1024n ** 3n, 0)],
    ['5Ti', dec(5n * 1024n ** 4n, 0)],
    ['4Pi', dec(4n * 1024n ** 5n, 0)],
    ['3Ei', dec(3n * 1024n ** 6n, 0)],
    ['10Ti', dec(10n * 1024n ** 4n, 0)],
    ['100Ti', dec(100n * 1024n ** 4n, 0)],
    ['5n', dec(5n, -9)],
    ['4u', dec(4n, -6)],
    ['3m', dec(3n, -3)],
    ['9', dec(9n, 0)],
    ['8k', dec(8n, 3)],
    ['50k', dec(5n, 4)],
    ['7M', dec(7n, 6)],
    ['6G', dec(6n, 9)],
    ['5T', dec(5n, 12)],
    ['40T', dec(4n, 13)],
    ['300T', dec(3n, 14)],
    ['2P', dec(2n, 15)],
    ['1E', dec(1n, 18)],
    ['1E-3', dec(1n, -3)],
    ['1e3', dec(1n, 3)],
    ['1E6', dec(1n, 6)],
    ['1e9', dec(1n, 9)],
    ['1E12', dec(1n, 12)],
    ['1e15', dec(1n, 15)],
    ['1E18', dec(1n, 18)],
    ['1e14', dec(1n, 14)],
    ['1e13', dec(1n, 13)],
    ['100.035k', dec(100035n, 0)],
    ['0.001', dec(1n, -3)],
    ['0.0005k', dec(5n, -1)],
    ['0.005', dec(5n, -3)],
    ['0.05', dec(5n, -2)],
    ['0.5', dec(5n, -1)],
    ['0.00050k', dec(5n, -1)],
    ['0.00500', dec(5n, -3)],
    ['0.05000', dec(5n, -2)],
    ['0.50000', dec(5n, -1)],
    ['0.5e0', dec(5n, -1)],
    ['0.5e-1', dec(5n, -2)],
    ['0.5e-2', dec(5n, -3)],
    ['10.035M', dec(10035n, 3)],
    ['1.2e3', dec(12n, 2)],
    ['1.3E+6', dec(13n, 5)],
    ['1.40e9', dec(14n, 8)],
    ['1.53E12', dec(153n, 10)],
    ['1.6e15', dec(16n, 14)],
    ['1.7E18', dec(17n, 17)],
    ['9.01', dec(901n, -2)],
    ['8.1k', dec(81n, 2)],
    ['7.123456M', dec(7123456n, 0)],
    ['6.987654321G', dec(6987654321n, 0)],
    ['5.444T', dec(5444n, 9)],
    ['40.1T', dec(401n, 11)],
    ['300.2T', dec(3002n, 11)],
    ['2.5P', dec(25n, 14)],
    ['1.01E', dec(101n, 16)],
    // Things that saturate/round
    ['3.001n', dec(4n, -9)],
    ['1.1E-9', dec(2n, -9)],
    ['0.0000000001', dec(1n, -9)],
    ['0.0000000005', dec(1n, -9)],
    ['0.00000000050', dec(1n, -9)],
    ['0.5e-9', dec(1n, -9)],
    ['0.9n', dec(1n, -9)],
    ['0.00000012345', dec(124n, -9)],
    ['0.00000012354', dec(124n, -9)],
    ['9Ei', MAX],
    ['9223372036854775807Ki', MAX],
    ['12E', dec(12n, 18)],
    // fractional binary
    ['100.035Ki', dec(10243584n, -2)],
    ['0.5Mi', dec(512n * 1024n, 0)],
    ['0.05Gi', dec(536870912n, -1)],
    ['0.025Ti', dec(274877906944n, -1)],
    // Things written by trolls
    ['0.000000000001Ki', dec(2n, -9)],
    ['.001', dec(1n, -3)],
    ['.0001k', dec(100n, -3)],
    ['1.', dec(1n, 0)],
    ['1.G', dec(1n, 9)],
    ['.', 0n],
    ['-.', 0n],
  ];
  test('each example, and its negative and explicitly positive forms', () => {
    for (const [input, want] of table) {
      assert.equal(parseQuantityNanos(input), want, input);
      assert.equal(parseQuantityNanos(`-${input.replace(/^-/, '')}`), input.startsWith('-') ? want : -want, `-${input}`);
      if (!input.startsWith('-')) assert.equal(parseQuantityNanos(`+${input}`), want, `+${input}`);
    }
  });

  test('malformed inputs throw a PodSpecError naming the text (apimachinery invalid list, plus empty and whitespace)', () => {
    for (const bad of ['', '1.1.M', '1+1.0M', '0.1mi', '0.1am', 'aoeu', '.5i', '1i', '-3.01i', '-3.01e-', '1e4294967297', ' 1', '1 ', '1K', '1e', '1e1.5', '1\n', '--1', '1Mi5']) {
      assert.throws(
        () => parseQuantityNanos(bad),
        (err: unknown) => err instanceof PodSpecError && err.message.includes(JSON.stringify(bad)),
        JSON.stringify(bad),
      );
    }
  });

  test('huge and tiny exponents: only binary SI saturates (as apimachinery); tiny rounds up to a nano; nothing huge is built', () => {
    assert.equal(parseQuantityNanos('12E'), dec(12n, 18), 'decimal: not capped');
    assert.equal(parseQuantityNanos('1e20'), dec(1n, 20));
    assert.equal(parseQuantityNanos('1e-2147483647'), 1n);
    assert.equal(parseQuantityNanos('0e2147483647'), 0n);
    assert.equal(parseQuantityNanos(`1${'0'.repeat(400)}Ki`), MAX, 'binary: capped at 2^63-1');
    assert.throws(() => parseQuantityNanos('1e2147483647'), /out of range/, 'refused, not computed');
  });

  test('numbers (JSON clients send cpu: 2) are read as their decimal text', () => {
    assert.equal(parseQuantityNanos(2), 2_000_000_000n);
    assert.equal(parseQuantityNanos(0.5), 500_000_000n);
    assert.equal(parseQuantityNanos(1e21), dec(1n, 21));
    assert.throws(() => parseQuantityNanos(Number.NaN), PodSpecError);
  });
});

describe('parseQuantity, cpuMillis, bytes', () => {
  test('parseQuantity gives the value in units', () => {
    assert.equal(parseQuantity('500m'), 0.5);
    assert.equal(parseQuantity('1.5Gi'), 1610612736);
    assert.equal(parseQuantity('128974848'), 128974848);
    assert.equal(parseQuantity('129e6'), 129000000);
    assert.equal(parseQuantity('123Mi'), 128974848);
    assert.equal(parseQuantity('0.1'), 0.1);
    assert.equal(parseQuantity('-2'), -2);
  });

  test('cpuMillis rounds up to a millicore (MilliValue)', () => {
    assert.equal(cpuMillis('1'), 1000);
    assert.equal(cpuMillis('250m'), 250);
    assert.equal(cpuMillis('0.5'), 500);
    assert.equal(cpuMillis('1.0001'), 1001);
    assert.equal(cpuMillis('100u'), 1);
    assert.equal(cpuMillis('1n'), 1);
    assert.equal(cpuMillis('0'), 0);
    assert.equal(cpuMillis(2), 2000);
  });

  test('bytes rounds up to a whole unit (Value)', () => {
    assert.equal(bytes('1Gi'), 1073741824);
    assert.equal(bytes('64Mi'), 67108864);
    assert.equal(bytes('1.5k'), 1500);
    assert.equal(bytes('0.5'), 1);
    assert.equal(bytes('1m'), 1);
    assert.equal(bytes('1E'), 1e18);
    assert.equal(bytes('1Ei'), 2 ** 60);
  });
});
