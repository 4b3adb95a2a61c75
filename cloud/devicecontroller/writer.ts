/**
 * @module
 * The DeviceStatus writer: drains the devices' pending reported state into the API at a
 * bounded rate, so however many sensors report, the API server sees at most the ceiling.
 *
 * - Pending state per device: reports arriving while a device waits (or while its write is in
 *   flight) are merged into it — per property the latest reported / observedDesired wins, the
 *   latest state and lastOnlineTime win. A write sends the merged state of its moment.
 * - Order: FIFO over dirty devices; a device is in the queue at most once, and goes back to
 *   the tail after its write, so every device gets its turn (a chatty sensor cannot starve a
 *   quiet one). Per-device latency grows as dirty devices / rate.
 * - Rate: one token bucket for all devices (`ratePerSecond`, burst `burst`), on an injected
 *   clock and timers. AIMD: an answer of 429 or 5xx (or no answer) halves the rate, at most once
 *   a second, down to `minRatePerSecond`, and empties the bucket; every second with successful
 *   writes adds 1/s back, up to the configured ceiling. The bucket's size shrinks with the rate.
 * - Failures: 409 (the object changed since it was read) and 404 (it disappeared) retry at once
 *   with a fresh read, ahead of the queue; 429/5xx/network errors put the state back (newer
 *   reports merged over it) at the tail; any other refusal (400, 403, 413, 422) drops that
 *   device's pending state with a log line (rate-limited per status): retrying cannot help, and
 *   the edge resends its full state on its next session.
 * Every API write takes one token, retries included.
 */
import type { Twin } from '../../shared/devices/index.js';
import type { Logger } from '../../shared/log/index.js';
import { ErrorCode, errorMessage } from '../../shared/errors/index.js';
import { httpStatus } from '../kube/index.js';

/** Timers the writer schedules its next drain with (fake ones in tests, with a fake clock). */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    // A pending drain never keeps a stopping process alive; stop() clears it anyway.
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** One device's reported state not yet in the API. */
export interface PendingStatus {
  /** The Device's uid the reports were made for. */
  uid: string;
  /** By propertyName. */
  twins: Map<string, Twin>;
  state?: string;
  lastOnlineTime?: string;
}

/** What one report contributes. */
export interface StatusUpdate {
  uid: string;
  twins?: Twin[];
  state?: string;
  lastOnlineTime?: string;
}

/**
 * Writes one device's state: resolves true when it made an API write, false when there was
 * nothing to write (the Device is gone); throws the API's error (with its HTTP status) otherwise.
 * `fresh`: read the current object from the API, not from a cache (after a 409/404).
 */
export type WriteStatus = (key: string, state: PendingStatus, fresh: boolean) => Promise<boolean>;

export interface StatusWriterOptions {
  ratePerSecond: number;
  burst: number;
  minRatePerSecond: number;
  concurrency: number;
  now: () => number;
  timers: Timers;
}

export interface StatusWriterStats {
  /** API writes that succeeded. */
  writes: number;
  /** Reports merged into a device's state that was still waiting (not a write of their own). */
  coalesced: number;
  /** The current rate (writes/s): the ceiling, or less after the API server pushed back. */
  ratePerSecond: number;
  /** Devices whose state waits to be written. */
  pending: number;
  /** Writes in flight. */
  inFlight: number;
  /** Writes the API refused or failed (each retried or dropped). */
  failures: number;
  /** Devices whose pending state was dropped after a refusal that retrying cannot fix. */
  dropped: number;
}

/** Applies `u` over `p` (latest wins per property and per field). */
export function mergeUpdate(p: PendingStatus, u: StatusUpdate): void {
  for (const t of u.twins ?? []) {
    const cur = p.twins.get(t.propertyName);
    if (!cur) {
      p.twins.set(t.propertyName, { ...t });
      continue;
    }
    if (t.reported) cur.reported = t.reported;
    if (t.observedDesired) cur.observedDesired = t.observedDesired;
  }
  if (u.state !== undefined) p.state = u.state;
  if (u.lastOnlineTime !== undefined) p.lastOnlineTime = u.lastOnlineTime;
}

function fromUpdate(u: StatusUpdate): PendingStatus {
  const p: PendingStatus = { uid: u.uid, twins: new Map() };
  mergeUpdate(p, u);
  return p;
}

/** `newer` applied over `older` (a failed write's state put back under the reports that came meanwhile). */
function mergeStates(older: PendingStatus, newer: PendingStatus | undefined): PendingStatus {
  if (!newer) return older;
  if (newer.uid !== older.uid) return newer;
  const out: PendingStatus = { uid: older.uid, twins: new Map([...older.twins].map(([k, t]) => [k, { ...t }])) };
  if (older.state !== undefined) out.state = older.state;
  if (older.lastOnlineTime !== undefined) out.lastOnlineTime = older.lastOnlineTime;
  mergeUpdate(out, {
    uid: newer.uid,
    twins: [...newer.twins.values()],
    ...(newer.state !== undefined ? { state: newer.state } : {}),
    ...(newer.lastOnlineTime !== undefined ? { lastOnlineTime: newer.lastOnlineTime } : {}),
  });
  return out;
}

/** Tolerance for floating-point refills (a token computed as 0.9999999 is a token). */
const EPSILON = 1e-9;
/** Repeated failure lines of one kind: at most one per this window, with the count of the others. */
const LOG_WINDOW_MS = 60_000;

export class StatusWriter {
  private readonly pending = new Map<string, PendingStatus>();
  /** Dirty devices in FIFO order (a Set keeps insertion order: each key at most once). */
  private readonly queue = new Set<string>();
  /** Devices to retry at once (after a 409/404), served before the queue. */
  private readonly urgent = new Set<string>();
  /** Devices whose next write must read the object from the API. */
  private readonly fresh = new Set<string>();
  /** Devices whose write is in flight (marked before the write starts, so a report made meanwhile sees it)… */
  private readonly busy = new Set<string>();
  /** …and those writes, to wait for. */
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Devices forgotten while their write was in flight: nothing is put back for them. */
  private readonly forgotten = new Set<string>();
  private rate: number;
  private tokens: number;
  private lastRefill: number;
  private lastIncrease: number;
  private lastDecrease = Number.NEGATIVE_INFINITY;
  private timer: unknown;
  private closed = false;
  private readonly counters = { writes: 0, coalesced: 0, failures: 0, dropped: 0 };
  /** Per kind of failure line: when its window started and how many were not logged since. */
  private readonly logWindows = new Map<string, { start: number; suppressed: number }>();
  private pushbacks = 0;

  constructor(
    private readonly options: StatusWriterOptions,
    private readonly writeFn: WriteStatus,
    private readonly log: Logger,
  ) {
    if (!(options.ratePerSecond > 0) || !(options.minRatePerSecond > 0) || options.minRatePerSecond > options.ratePerSecond) {
      throw new TypeError(`StatusWriter: need 0 < minRatePerSecond (${options.minRatePerSecond}) ≤ ratePerSecond (${options.ratePerSecond})`);
    }
    if (!(options.burst >= 1) || !(options.concurrency >= 1)) throw new TypeError('StatusWriter: burst and concurrency must be ≥ 1');
    this.rate = options.ratePerSecond;
    this.tokens = options.burst;
    this.lastRefill = options.now();
    this.lastIncrease = this.lastRefill;
  }

  /** Merges one device's report into its pending state and queues the device if it is not waiting already. */
  report(key: string, update: StatusUpdate): void {
    if (this.closed) return;
    const p = this.pending.get(key);
    if (p && p.uid === update.uid) {
      mergeUpdate(p, update);
      this.counters.coalesced++;
      return;
    }
    // New, or a new incarnation of the Device (same name, new uid): the old state is of no use.
    this.pending.set(key, fromUpdate(update));
    this.forgotten.delete(key);
    // In flight: queued again when that write ends (one write per device at a time).
    if (!this.busy.has(key)) this.queue.add(key);
    this.pump();
  }

  /** Drops a device's pending state (its Device was deleted); resolves once no write of it is in flight. */
  async forget(key: string): Promise<void> {
    this.pending.delete(key);
    this.queue.delete(key);
    this.urgent.delete(key);
    this.fresh.delete(key);
    if (this.busy.has(key)) {
      this.forgotten.add(key);
      // Awaited in a later turn: the write's promise is registered right after it starts.
      await Promise.resolve();
      await this.inFlight.get(key);
    }
  }

  /** Whether a device has state waiting or being written. */
  has(key: string): boolean {
    return this.pending.has(key) || this.busy.has(key);
  }

  stats(): StatusWriterStats {
    return { ...this.counters, ratePerSecond: this.rate, pending: this.pending.size, inFlight: this.busy.size };
  }

  /** Stops draining (writes in flight finish; what waits is dropped with the process). */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.options.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Resolves once nothing is in flight (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.busy.size > 0) await Promise.all(this.inFlight.values());
  }

  private capacity(): number {
    // The burst shrinks with the rate, so a lowered rate is not undone by a full bucket.
    return Math.max(1, (this.options.burst * this.rate) / this.options.ratePerSecond);
  }

  private refill(): void {
    const t = this.options.now();
    if (t > this.lastRefill) this.tokens = Math.min(this.capacity(), this.tokens + ((t - this.lastRefill) / 1000) * this.rate);
    this.lastRefill = t;
  }

  private next(): string | undefined {
    for (const set of [this.urgent, this.queue]) {
      for (const key of set) {
        set.delete(key);
        return key;
      }
    }
    return undefined;
  }

  private pump(): void {
    if (this.closed) return;
    this.refill();
    while (this.urgent.size + this.queue.size > 0 && this.busy.size < this.options.concurrency && this.tokens >= 1 - EPSILON) {
      const key = this.next()!;
      const state = this.pending.get(key);
      if (!state) continue;
      this.tokens -= 1;
      this.pending.delete(key);
      const fresh = this.fresh.delete(key);
      this.busy.add(key);
      this.inFlight.set(key, this.run(key, state, fresh));
    }
    if (this.urgent.size + this.queue.size > 0 && this.busy.size < this.options.concurrency && this.timer === undefined) {
      const waitMs = Math.max(1, Math.ceil(((1 - this.tokens) / this.rate) * 1000));
      this.timer = this.options.timers.setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, waitMs);
    }
  }

  private async run(key: string, state: PendingStatus, fresh: boolean): Promise<void> {
    try {
      if (await this.writeFn(key, state, fresh)) {
        this.counters.writes++;
        this.succeeded();
      }
    } catch (err) {
      this.counters.failures++;
      this.failed(key, state, err);
    } finally {
      this.busy.delete(key);
      this.inFlight.delete(key);
      if (this.forgotten.delete(key)) {
        this.pending.delete(key);
      } else if (this.pending.has(key) && !this.urgent.has(key)) {
        this.queue.add(key);
      }
      this.pump();
    }
  }

  private failed(key: string, state: PendingStatus, err: unknown): void {
    if (this.forgotten.has(key)) return;
    const status = httpStatus(err);
    if (status === 409 || status === 404) {
      // Changed or gone since it was read: read it again and retry ahead of the queue.
      this.pending.set(key, mergeStates(state, this.pending.get(key)));
      this.fresh.add(key);
      this.queue.delete(key);
      this.urgent.add(key);
      return;
    }
    if (status === undefined || status === 429 || status >= 500) {
      this.pushedBack(status, err);
      this.pending.set(key, mergeStates(state, this.pending.get(key)));
      this.queue.delete(key);
      this.queue.add(key);
      return;
    }
    this.counters.dropped++;
    this.limitedWarn(`refused-${status}`, (n) => [
      `DeviceStatus write of ${key} refused (HTTP ${status}: ${errorMessage(err)}); its pending report is dropped${n ? ` (${n} more refusals in the last minute)` : ''}`,
      { code: ErrorCode.Api, status, device: key },
    ]);
  }

  /** The API server pushed back: halve the rate (at most once a second, never below the floor). */
  private pushedBack(status: number | undefined, err: unknown): void {
    const t = this.options.now();
    this.pushbacks++;
    if (t - this.lastDecrease < 1000) return;
    this.lastDecrease = t;
    this.lastIncrease = t;
    this.refill();
    this.rate = Math.max(this.options.minRatePerSecond, this.rate / 2);
    this.tokens = 0;
    const count = this.pushbacks;
    this.pushbacks = 0;
    this.limitedWarn('pushback', (n) => [
      `DeviceStatus writes pushed back by the API server (${status === undefined ? errorMessage(err) : `HTTP ${status}`}, ${count} failed writes); rate lowered to ${this.rate} writes/s${n ? ` (lowered ${n} more times in the last minute)` : ''}`,
      { code: ErrorCode.Api, status, ratePerSecond: this.rate },
    ]);
  }

  /** Each second with successful writes adds 1/s, up to the ceiling. */
  private succeeded(): void {
    if (this.rate >= this.options.ratePerSecond) return;
    const t = this.options.now();
    if (t - this.lastIncrease < 1000) return;
    this.lastIncrease = t;
    this.refill();
    this.rate = Math.min(this.options.ratePerSecond, this.rate + 1);
    if (this.rate === this.options.ratePerSecond) this.log.info(`DeviceStatus write rate back at its ceiling, ${this.rate} writes/s`);
  }

  private limitedWarn(kind: string, line: (suppressed: number) => [string, Record<string, unknown>]): void {
    const t = this.options.now();
    const w = this.logWindows.get(kind);
    if (w && t - w.start < LOG_WINDOW_MS) {
      w.suppressed++;
      return;
    }
    const [msg, fields] = line(w?.suppressed ?? 0);
    this.logWindows.set(kind, { start: t, suppressed: 0 });
    this.log.warn(msg, fields);
  }
}
