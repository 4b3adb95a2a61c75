/**
 * @module
 * The small bounded helpers of the device bus: a token bucket (per-client publish rate), a
 * log window (one line per problem and key per window, however often it happens), and the echo
 * filter that recognises our own publishes coming back from an external broker (MQTT 3.1.1 has
 * no "no local" subscription option). Each takes a clock, for tests.
 */
import { createHash } from 'node:crypto';

export type Clock = () => number;

/** `rate` tokens per second up to `burst`; each {@link take} spends one. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: Clock = Date.now,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Spends a token; false when there is none (the caller drops the work). */
  take(): boolean {
    const t = this.now();
    if (t > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.rate) / 1000);
      this.last = t;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * Decides when a recurring problem is logged: the first time per key, then at most once per
 * window, with the number of times it happened meanwhile. At most `maxKeys` keys are remembered
 * (the oldest is forgotten), so a stream of distinct clients cannot grow it.
 */
export class LogWindow {
  private readonly keys = new Map<string, { at: number; suppressed: number }>();
  constructor(
    private readonly windowMs: number,
    private readonly maxKeys = 1000,
    private readonly now: Clock = Date.now,
  ) {}

  /** Undefined: stay quiet. A number: log now; it is how many were not logged since the last line. */
  hit(key: string): number | undefined {
    const t = this.now();
    const e = this.keys.get(key);
    if (e && t - e.at < this.windowMs) {
      e.suppressed++;
      return undefined;
    }
    const suppressed = e?.suppressed ?? 0;
    this.keys.delete(key);
    this.keys.set(key, { at: t, suppressed: 0 });
    if (this.keys.size > this.maxKeys) this.keys.delete(this.keys.keys().next().value!);
    return suppressed;
  }
}

/**
 * Messages we sent to an external broker that may come back to us (we subscribe to topics we
 * publish on): each write is expected once; the matching arrival is swallowed. Keyed by topic and
 * a digest of the payload; an expectation not met within `ttlMs` is forgotten (the broker did not
 * echo it, e.g. the connection dropped), and at most `max` are kept.
 */
export class EchoFilter {
  private readonly expected = new Map<string, { count: number; until: number }>();
  constructor(
    private readonly ttlMs = 30_000,
    private readonly max = 10_000,
    private readonly now: Clock = Date.now,
  ) {}

  private static key(topic: string, payload: Buffer): string {
    return `${topic}\u0000${createHash('sha1').update(payload).digest('base64')}`;
  }

  expect(topic: string, payload: Buffer): void {
    const key = EchoFilter.key(topic, payload);
    const until = this.now() + this.ttlMs;
    const e = this.expected.get(key);
    if (e && e.until > this.now()) {
      e.count++;
      e.until = until;
      return;
    }
    this.expected.delete(key);
    this.expected.set(key, { count: 1, until });
    if (this.expected.size > this.max) this.expected.delete(this.expected.keys().next().value!);
  }

  /** True when this arrival is the echo of one of our writes (and counts it off). */
  consume(topic: string, payload: Buffer): boolean {
    if (this.expected.size === 0) return false;
    const key = EchoFilter.key(topic, payload);
    const e = this.expected.get(key);
    if (!e) return false;
    if (e.until <= this.now()) {
      this.expected.delete(key);
      return false;
    }
    if (--e.count === 0) this.expected.delete(key);
    return true;
  }

  get size(): number {
    return this.expected.size;
  }
}
