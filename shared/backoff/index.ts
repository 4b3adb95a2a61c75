/**
 * @module
 * The one retry-delay policy of Ledge: exponential backoff, capped, with optional full
 * jitter. Every place that waits before trying again uses it — EdgeHub's reconnects,
 * the ACK timeouts of the delivery queues (CloudHub's per-node queue, EdgeHub's outbox),
 * Beehive's module restarts and the SyncController's record writes — each with its own
 * numbers. No dependencies (it is in the edge bundle).
 */

export type Jitter = 'none' | 'full';

export interface BackoffOptions {
  /** Delay of the first attempt, ms (with full jitter: its ceiling). */
  baseMs: number;
  /** Largest delay, ms. A `baseMs` above it is cut to it. */
  maxMs: number;
  /** Growth per attempt, ≥ 1. Default 2. */
  factor?: number;
  /**
   * `'none'` (default): the delay itself. `'full'`: uniform in [0, delay) — AWS's "full
   * jitter", which spreads the retries of many clients that failed at the same moment.
   */
  jitter?: Jitter;
  /** Random source in [0, 1), for full jitter. Default `Math.random`. */
  random?: () => number;
}

export interface Backoff {
  /** The delay before the next attempt; each call counts one attempt. */
  next(): number;
  /** Starts again from the first delay (the operation succeeded). */
  reset(): void;
  /** Attempts counted by {@link next} since the last reset. */
  readonly attempts: number;
  /** The delay of attempt `n` (1 = the first), without counting it: for callers that keep the count themselves. */
  delay(attempt: number): number;
}

class ExponentialBackoff implements Backoff {
  attempts = 0;
  private readonly base: number;
  private readonly max: number;
  private readonly factor: number;
  private readonly jitter: Jitter;
  private readonly random: (() => number) | undefined;

  constructor(o: BackoffOptions) {
    const factor = o.factor ?? 2;
    if (!(o.baseMs >= 0) || !(o.maxMs >= 0) || !Number.isFinite(o.maxMs)) throw new TypeError(`backoff: baseMs and maxMs must be finite numbers ≥ 0 (got ${o.baseMs}, ${o.maxMs})`);
    if (!(factor >= 1) || !Number.isFinite(factor)) throw new TypeError(`backoff: factor must be a finite number ≥ 1 (got ${factor})`);
    this.max = o.maxMs;
    this.base = Math.min(o.baseMs, o.maxMs);
    this.factor = factor;
    this.jitter = o.jitter ?? 'none';
    this.random = o.random;
  }

  delay(attempt: number): number {
    const n = Math.max(1, Math.floor(attempt));
    // Past the cap (or overflowing to Infinity) the ceiling is the cap; 0 · Infinity would be NaN.
    const ceiling = this.base === 0 ? 0 : Math.min(this.base * this.factor ** (n - 1), this.max);
    if (this.jitter === 'none') return ceiling;
    const r = this.random ? this.random() : Math.random();
    return Math.floor(r * ceiling);
  }

  next(): number {
    this.attempts++;
    return this.delay(this.attempts);
  }

  reset(): void {
    this.attempts = 0;
  }
}

/**
 * A backoff: `baseMs`, then `baseMs·factor`, `baseMs·factor²`… up to `maxMs`, each drawn
 * uniformly from [0, that) with `jitter: 'full'`. Throws TypeError on negative or
 * non-finite numbers, or a factor below 1.
 */
export function backoff(options: BackoffOptions): Backoff {
  return new ExponentialBackoff(options);
}
