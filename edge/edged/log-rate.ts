/**
 * @module
 * The log ingest rate limit of a container: what its output may cost EdgeCore, whose one event
 * loop writes every container's CRI log (a kubelet leaves that to containerd-shim processes).
 *
 * {@link TokenBucket}: `bytesPerSecond` refill up to `burstBytes`, on an injectable clock. It never
 * goes into debt: what it grants was in it.
 *
 * {@link LogThrottle}: one container's budget over the streams its runtime reads. A chunk read is
 * admitted as far as the budget holds ({@link LogThrottle.admit} answers how many of its bytes;
 * the caller writes those and puts the rest back, `stream.unshift`); when it cannot take all of
 * it, the throttle pauses the streams (`pause()`: the container blocks once the pipe is full, or
 * the daemon keeps the rest; nothing is dropped) and resumes them with one timer once the bucket
 * holds {@link RESUME_BYTES} again (or is full). So the log never grows by more than
 * `burstBytes + bytesPerSecond × t` over any time `t`. The cost of a chunk is what its CRI records
 * take: its bytes plus {@link CRI_RECORD_HEADER_BYTES} per line (`lineOverheadBytes`), since a
 * record's work is per line as much as per byte (`yes` is 2 bytes of output and 42 of log per
 * line). {@link LogThrottle.release} ends the limit at once (the main process exited: the rest is
 * drained at full speed, the end of a log is never cut). A throttling episode (from a pause until
 * the bucket is full again, the output having stayed under the rate for as long as the bucket takes
 * to fill, `burstBytes / bytesPerSecond`, since the last resume) calls `onThrottled` once.
 *
 * {@link NoticeLimiter}: at most one notice per key per interval (the runtimes' info line).
 */

/** What a CRI record adds to a line: `<timestamp, 30> <stdout|stderr> <F|P> ` and its `\n` replaces the line's. */
export const CRI_RECORD_HEADER_BYTES = 40;

/** A paused throttle resumes once the bucket holds this much (or is full): one read's worth, so a resume is not a busy loop. */
export const RESUME_BYTES = 64 * 1024;

/** The rate limit of a container's log; `bytesPerSecond` 0 = unlimited. */
export interface LogRateLimit {
  bytesPerSecond: number;
  burstBytes: number;
}

/** A token bucket of bytes. */
export class TokenBucket {
  private tokens: number;
  private at: number;

  /** Starts full. `now` is the clock in ms (default `performance.now`). */
  constructor(
    readonly bytesPerSecond: number,
    readonly burstBytes: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) throw new TypeError(`TokenBucket: bytesPerSecond must be > 0 (got ${bytesPerSecond})`);
    if (!(burstBytes >= 1) || !Number.isFinite(burstBytes)) throw new TypeError(`TokenBucket: burstBytes must be ≥ 1 (got ${burstBytes})`);
    this.tokens = burstBytes;
    this.at = now();
  }

  /** Bytes that may be taken now (refilled up to the burst). */
  available(): number {
    const t = this.now();
    if (t > this.at) {
      this.tokens = Math.min(this.burstBytes, this.tokens + ((t - this.at) * this.bytesPerSecond) / 1000);
      this.at = t;
    }
    return this.tokens;
  }

  /** True when the bucket is full (nothing was taken for `burstBytes / bytesPerSecond`). */
  full(): boolean {
    return this.available() >= this.burstBytes;
  }

  /** Takes `n` bytes, at most what is available; answers what was taken. */
  take(n: number): number {
    const got = Math.min(Math.max(0, n), this.available());
    this.tokens -= got;
    return got;
  }

  /** Ms until `n` bytes (at most the burst) are available: 0 when they are now. */
  msUntil(n: number): number {
    const missing = Math.min(n, this.burstBytes) - this.available();
    return missing <= 0 ? 0 : Math.ceil((missing * 1000) / this.bytesPerSecond);
  }
}

/** Options of a {@link LogThrottle}. */
export interface LogThrottleOptions extends LogRateLimit {
  /** Stops reading the container's output (every stream of it). Called at every cut, also while paused: it must be idempotent. */
  pause: () => void;
  /** Reads on. */
  resume: () => void;
  /** A throttling episode started (the caller logs it, rate-limited: {@link NoticeLimiter}). */
  onThrottled?: () => void;
  /** Cost of a line on top of its bytes. Default {@link CRI_RECORD_HEADER_BYTES}; 0 for input that carries its own header per line (the daemon's framed, timestamped stream). */
  lineOverheadBytes?: number;
  /** Clock, ms. Default `performance.now`. */
  now?: () => number;
}

const NL = 0x0a;

/** One container's log ingest limit over the streams it is read from. */
export class LogThrottle {
  private readonly bucket: TokenBucket | undefined;
  private readonly lineOverhead: number;
  private readonly now: () => number;
  /** When the timer last resumed the streams (the bucket may be full only because they were paused). */
  private resumedAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pausedFlag = false;
  private episode = false;
  private released = false;

  /** `bytesPerSecond` 0: unlimited (admit takes everything, nothing is ever paused). */
  constructor(private readonly options: LogThrottleOptions) {
    this.bucket = options.bytesPerSecond > 0 ? new TokenBucket(options.bytesPerSecond, options.burstBytes, options.now) : undefined;
    this.lineOverhead = options.lineOverheadBytes ?? CRI_RECORD_HEADER_BYTES;
    this.now = options.now ?? (() => performance.now());
  }

  /** True while the streams are paused by the limit. */
  get paused(): boolean {
    return this.pausedFlag;
  }

  /** True while in a throttling episode (from a pause until the output stayed under the rate long enough to fill the bucket). */
  get throttled(): boolean {
    return this.episode;
  }

  /**
   * How many bytes of `chunk` (a prefix) may be written now; their cost is taken. Less than all:
   * the streams were paused, the caller keeps the rest for when they are resumed (`unshift`).
   */
  admit(chunk: Uint8Array): number {
    const bucket = this.bucket;
    if (!bucket || this.released || chunk.length === 0) return chunk.length;
    const full = bucket.full();
    // The episode is over once the bucket is full and the output stayed under the rate for as long as the bucket takes to fill.
    if (full && this.episode && (this.resumedAt === undefined || this.now() - this.resumedAt >= (bucket.burstBytes * 1000) / bucket.bytesPerSecond)) this.episode = false;
    const budget = bucket.available();
    let spent = 0;
    let pos = 0;
    while (pos < chunk.length) {
      const nl = chunk.indexOf(NL, pos);
      const end = nl < 0 ? chunk.length : nl + 1;
      const cost = end - pos + (nl < 0 ? 0 : this.lineOverhead);
      if (spent + cost <= budget) {
        spent += cost;
        pos = end;
        continue;
      }
      // The line's bytes that fit, not its `\n` (the record it ends is paid with it).
      const part = Math.max(0, Math.min(end - pos - (nl < 0 ? 0 : 1), Math.floor(budget - spent)));
      spent += part;
      pos += part;
      break;
    }
    // A full bucket always lets one line through (a burst smaller than one record would block forever).
    if (pos === 0 && full) {
      const nl = chunk.indexOf(NL);
      pos = nl < 0 ? chunk.length : nl + 1;
      spent = pos + (nl < 0 ? 0 : this.lineOverhead);
    }
    bucket.take(spent);
    if (pos < chunk.length) this.pause();
    return pos;
  }

  /** Ends the limit for good: resumes now if paused, admits everything from now on. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.clearTimer();
    if (this.pausedFlag) {
      this.pausedFlag = false;
      this.options.resume();
    }
  }

  /** Releases its timer without resuming (the streams are being closed). */
  close(): void {
    this.released = true;
    this.clearTimer();
  }

  private pause(): void {
    if (!this.episode) {
      this.episode = true;
      this.options.onThrottled?.();
    }
    // Every time, not only the first: a stream resumed behind its back (Node resumes a child's pipes at its exit) must not
    // flow while the caller puts the rest back (an unshift into a flowing stream is delivered again at once).
    this.pausedFlag = true;
    this.options.pause();
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || !this.bucket) return;
    this.timer = setTimeout(this.wake, Math.max(1, this.bucket.msUntil(RESUME_BYTES)));
    this.timer.unref();
  }

  private readonly wake = (): void => {
    this.timer = undefined;
    if (this.released || !this.pausedFlag || !this.bucket) return;
    // Early (timers may fire a little early, clocks differ in rounding): wait for the rest.
    if (this.bucket.msUntil(RESUME_BYTES) > 0) return this.schedule();
    this.pausedFlag = false;
    this.resumedAt = this.now();
    this.options.resume();
  };

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** At most one notice per key per `intervalMs` (keys older than that are forgotten: the map holds only recent ones). */
export class NoticeLimiter {
  private readonly last = new Map<string, number>();

  constructor(
    private readonly intervalMs = 60_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** True (and remembered) when `key` had no notice in the last `intervalMs`. */
  ready(key: string): boolean {
    const t = this.now();
    for (const [k, at] of this.last) if (t - at >= this.intervalMs) this.last.delete(k);
    if (this.last.has(key)) return false;
    this.last.set(key, t);
    return true;
  }
}

/** `1 MiB/s`, `64 KiB/s`, `1500 B/s`: a rate for a log line. */
export function formatRate(bytesPerSecond: number): string {
  const units: [number, string][] = [
    [1024 * 1024, 'MiB'],
    [1024, 'KiB'],
  ];
  for (const [size, unit] of units) if (bytesPerSecond >= size && bytesPerSecond % (size / 4) === 0) return `${bytesPerSecond / size} ${unit}/s`;
  for (const [size, unit] of units) if (bytesPerSecond >= size) return `${(bytesPerSecond / size).toFixed(1)} ${unit}/s`;
  return `${bytesPerSecond} B/s`;
}
