/**
 * @module
 * Per-watcher output buffer with back-pressure and a bound, as kube-apiserver's cache
 * watchers have: a watch stream writes to its HTTP response only while the socket keeps
 * up (res.write() returning false pauses it until 'drain'); what is waiting is bounded by
 * bytes and by events; a watcher that stays over a bound for `graceMs` (or goes 4× over
 * at once) is cut off, and the caller destroys its connection so the client re-watches
 * (client-go relists on a 410 or re-watches from its last resourceVersion). One event's
 * serialised line is shared by every watcher that gets it (`sharedEventLine`), so N slow
 * watchers hold N references to one buffer, not N copies.
 */

/** Bounds of one watcher's backlog (what it was sent but has not read). */
export interface WatchBufferLimits {
  /** Bytes waiting for one watcher (our queue + the response's buffer). Default 16 MiB. */
  maxBytes: number;
  /** Events waiting for one watcher. Default 1000. */
  maxEvents: number;
  /** How long a watcher may stay over a bound before it is cut off. Default 5000 ms. */
  graceMs: number;
}

export const DEFAULT_WATCH_BUFFER_LIMITS: Readonly<WatchBufferLimits> = { maxBytes: 16 * 1024 * 1024, maxEvents: 1000, graceMs: 5000 };

/** Going this many times over a bound cuts the watcher off at once, without grace. */
const HARD_FACTOR = 4;

export type WatchChunk = string | Uint8Array;

/** The part of an HTTP response a watch writes to (a fake in unit tests). */
export interface WatchOutput {
  write(chunk: WatchChunk, cb?: (err?: Error | null) => void): boolean;
  readonly writableLength: number;
  /** Ended or destroyed outputs are never written to again (a write after end throws an 'error' event). */
  readonly writableEnded: boolean;
  readonly destroyed: boolean;
  once(event: 'drain', listener: () => void): unknown;
}

/** Timer seam (fake timers in unit tests). */
export interface WatchTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: WatchTimers = {
  set: (fn, ms) => setTimeout(fn, ms).unref(),
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface SlowWatcherInfo {
  pendingBytes: number;
  pendingEvents: number;
}

function sizeOf(c: WatchChunk): number {
  return typeof c === 'string' ? c.length : c.byteLength;
}

export class WatchBuffer {
  private readonly limits: WatchBufferLimits;
  private queue: WatchChunk[] = [];
  private head = 0;
  private queuedBytes = 0;
  private inFlight = 0;
  private lazy: Iterator<WatchChunk> | undefined;
  private waitingDrain = false;
  private overTimer: unknown;
  private state: 'open' | 'closed' | 'cut' = 'open';

  constructor(
    private readonly out: WatchOutput,
    limits: Partial<WatchBufferLimits> | undefined,
    private readonly onSlow: (info: SlowWatcherInfo) => void,
    private readonly timers: WatchTimers = realTimers,
  ) {
    this.limits = { ...DEFAULT_WATCH_BUFFER_LIMITS, ...limits };
  }

  /** Events handed over but not yet read by the client (queued here or in the response). */
  get pendingEvents(): number {
    return this.queue.length - this.head + this.inFlight;
  }

  /** Bytes waiting: queued here plus buffered in the response/socket. */
  get pendingBytes(): number {
    return this.queuedBytes + this.out.writableLength;
  }

  /** Whether the watcher was cut off for being too slow. */
  get cutOff(): boolean {
    return this.state === 'cut';
  }

  /** Queues one line (an event, a bookmark); written as soon as the client keeps up. */
  push(chunk: WatchChunk): void {
    if (this.state !== 'open') return;
    this.queue.push(chunk);
    this.queuedBytes += sizeOf(chunk);
    this.pump();
    this.check();
  }

  /**
   * Lines produced on demand, written before anything pushed later (the initial state of
   * a watch): pulled only as fast as the client reads, so they are not held in memory and
   * do not count against the bounds.
   */
  pushLazy(lines: Iterable<WatchChunk>): void {
    if (this.state !== 'open') return;
    this.lazy = lines[Symbol.iterator]();
    this.pump();
    this.check();
  }

  /** Stops the buffer and hands everything queued to the output (a normal end of the watch). */
  close(): void {
    if (this.state !== 'open') return;
    this.state = 'closed';
    this.stopTimer();
    this.lazy = undefined;
    if (!this.out.writableEnded && !this.out.destroyed) for (let i = this.head; i < this.queue.length; i++) this.out.write(this.queue[i]!);
    this.queue = [];
    this.head = 0;
    this.queuedBytes = 0;
  }

  private pump(): void {
    while (this.state === 'open' && !this.waitingDrain && !this.out.writableEnded && !this.out.destroyed) {
      let next: WatchChunk;
      if (this.lazy) {
        const r = this.lazy.next();
        if (r.done) {
          this.lazy = undefined;
          continue;
        }
        next = r.value;
      } else if (this.head < this.queue.length) {
        next = this.queue[this.head]!;
        this.queue[this.head++] = '';
        this.queuedBytes -= sizeOf(next);
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
      } else {
        break;
      }
      this.inFlight++;
      const ok = this.out.write(next, () => {
        this.inFlight--;
        this.check();
      });
      if (!ok) {
        this.waitingDrain = true;
        this.out.once('drain', () => {
          this.waitingDrain = false;
          this.pump();
          this.check();
        });
      }
    }
  }

  private check(): void {
    if (this.state !== 'open') return;
    const { maxBytes, maxEvents, graceMs } = this.limits;
    const events = this.pendingEvents;
    const bytes = this.pendingBytes;
    if (events > HARD_FACTOR * maxEvents || bytes > HARD_FACTOR * maxBytes) {
      this.cut();
      return;
    }
    const over = events > maxEvents || bytes > maxBytes;
    if (!over) {
      this.stopTimer();
      return;
    }
    this.overTimer ??= this.timers.set(() => {
      this.overTimer = undefined;
      if (this.state === 'open' && (this.pendingEvents > maxEvents || this.pendingBytes > maxBytes)) this.cut();
    }, graceMs);
  }

  private stopTimer(): void {
    if (this.overTimer !== undefined) this.timers.clear(this.overTimer);
    this.overTimer = undefined;
  }

  private cut(): void {
    const info = { pendingBytes: this.pendingBytes, pendingEvents: this.pendingEvents };
    this.state = 'cut';
    this.stopTimer();
    this.lazy = undefined;
    this.queue = [];
    this.head = 0;
    this.queuedBytes = 0;
    this.onSlow(info);
  }
}

/**
 * The serialised line of one store event, built once and shared by every watcher the
 * event is dispatched to (dispatch is synchronous, so one cached event is enough).
 * `key` distinguishes the renderings of the same event (event type, apiVersion).
 */
let cachedEvent: object | undefined;
let cachedLines = new Map<string, Uint8Array>();
function releaseCache(): void {
  cachedEvent = undefined;
  cachedLines = new Map();
}
export function sharedEventLine(ev: object, key: string, build: () => string): Uint8Array {
  if (ev !== cachedEvent) {
    if (cachedEvent === undefined) setImmediate(releaseCache); // do not pin the last event's lines
    cachedEvent = ev;
    cachedLines = new Map();
  }
  let line = cachedLines.get(key);
  if (!line) cachedLines.set(key, (line = Buffer.from(build())));
  return line;
}
