/**
 * The one backoff helper (shared/backoff): growth, cap, reset, full jitter's range with a fake
 * random source, the stateless delay(n) the delivery queues use, and bad options.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { backoff } from '../../shared/backoff/index.js';

/** The first n values of next(). */
function take(b: { next(): number }, n: number): number[] {
  return Array.from({ length: n }, () => b.next());
}

describe('backoff', () => {
  test('no jitter: base, doubling, capped at max, and stays there', () => {
    const b = backoff({ baseMs: 500, maxMs: 30_000 });
    assert.deepEqual(take(b, 9), [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    assert.equal(b.attempts, 9);
  });

  test('a custom factor grows by it; factor 1 is a constant delay', () => {
    assert.deepEqual(take(backoff({ baseMs: 100, maxMs: 10_000, factor: 3 }), 5), [100, 300, 900, 2700, 8100]);
    assert.deepEqual(take(backoff({ baseMs: 2000, maxMs: 2000, factor: 1 }), 3), [2000, 2000, 2000]);
  });

  test('reset starts again from the base', () => {
    const b = backoff({ baseMs: 1000, maxMs: 30_000 });
    take(b, 4);
    b.reset();
    assert.equal(b.attempts, 0);
    assert.deepEqual(take(b, 2), [1000, 2000]);
  });

  test('many attempts neither overflow nor exceed the cap (and a base of 0 stays 0)', () => {
    const b = backoff({ baseMs: 500, maxMs: 30_000 });
    for (let i = 0; i < 5000; i++) {
      const d = b.next();
      assert.ok(Number.isFinite(d) && d >= 0 && d <= 30_000, `attempt ${i + 1}: ${d}`);
    }
    assert.equal(b.delay(1e9), 30_000);
    assert.equal(backoff({ baseMs: 0, maxMs: 1000 }).delay(2000), 0);
  });

  test('a base above the cap is cut to the cap', () => {
    assert.deepEqual(take(backoff({ baseMs: 5000, maxMs: 1000 }), 2), [1000, 1000]);
  });

  test('delay(n) is the nth delay without counting it (attempts below 1 count as the first)', () => {
    const b = backoff({ baseMs: 5000, maxMs: 60_000 });
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((n) => b.delay(n)),
      [5000, 5000, 10_000, 20_000, 40_000, 60_000],
    );
    assert.equal(b.attempts, 0);
  });

  test('full jitter: uniform in [0, ceiling) — a fake random at its extremes gives 0 and ceiling − 1', () => {
    let r = 0;
    const b = backoff({ baseMs: 500, maxMs: 30_000, jitter: 'full', random: () => r });
    assert.equal(b.next(), 0);
    r = 0.999_999_999;
    assert.deepEqual(take(b, 8), [999, 1999, 3999, 7999, 15_999, 29_999, 29_999, 29_999]);
    b.reset();
    r = 0.5;
    assert.deepEqual(take(b, 3), [250, 500, 1000]);
  });

  test('full jitter with the default random source stays within [0, ceiling)', () => {
    const b = backoff({ baseMs: 500, maxMs: 30_000, jitter: 'full' });
    for (let i = 1; i <= 200; i++) {
      const ceiling = Math.min(30_000, 500 * 2 ** (i - 1));
      const d = b.next();
      assert.ok(Number.isInteger(d) && d >= 0 && d < ceiling, `attempt ${i}: ${d} not in [0, ${ceiling})`);
    }
  });

  test('negative or non-finite numbers and factors below 1 are refused with a TypeError', () => {
    assert.throws(() => backoff({ baseMs: -1, maxMs: 10 }), TypeError);
    assert.throws(() => backoff({ baseMs: 1, maxMs: Number.NaN }), TypeError);
    assert.throws(() => backoff({ baseMs: 1, maxMs: Infinity }), TypeError);
    assert.throws(() => backoff({ baseMs: 1, maxMs: 10, factor: 0.5 }), TypeError);
  });
});
