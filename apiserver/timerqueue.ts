/**
 * @module
 * Time for the control plane's controllers: a {@link Clock} (monotonic for decisions, wall
 * for the timestamps written into objects; tests inject a fake one) and a {@link TimerQueue},
 * one Node timer for any number of keyed deadlines (periodic passes, pod evictions), so no
 * controller holds a timer per pod.
 */

/** The clock the controllers read. `now()` is monotonic: it never jumps with the system clock. */
export interface Clock {
  /** Monotonic milliseconds (decisions and durations). */
  now(): number;
  /** Wall-clock milliseconds since the epoch (only for timestamps written into objects). */
  wallNow(): number;
  /** Calls `fn` after `ms`; returns the cancel function. */
  setTimer(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref();
    return () => clearTimeout(t);
  },
};

/** RFC 3339 with second precision, as Kubernetes writes timestamps. */
export function rfc3339(wallMs: number): string {
  return new Date(wallMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

interface Slot {
  at: number;
  seq: number;
  fn: () => void | Promise<void>;
}

/**
 * Keyed deadlines on one timer. `schedule(key, at, fn)` replaces the key's deadline; due
 * tasks run in deadline order; a task's promise is tracked so `idle()` can wait for it. A
 * failing task is reported to `onError` and never escapes.
 */
export class TimerQueue {
  private readonly slots = new Map<string, Slot>();
  /** Min-heap by `at` (then seq) of [key, seq]; entries whose seq no longer matches are stale. */
  private heap: { key: string; at: number; seq: number }[] = [];
  private seq = 0;
  private cancelTimer: (() => void) | undefined;
  private armedAt = Number.POSITIVE_INFINITY;
  private readonly running = new Set<Promise<void>>();
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly onError: (err: unknown, key: string) => void,
  ) {}

  get size(): number {
    return this.slots.size;
  }

  has(key: string): boolean {
    return this.slots.has(key);
  }

  dueAt(key: string): number | undefined {
    return this.slots.get(key)?.at;
  }

  schedule(key: string, at: number, fn: () => void | Promise<void>): void {
    if (this.stopped) return;
    const slot = { at, seq: ++this.seq, fn };
    this.slots.set(key, slot);
    this.push({ key, at, seq: slot.seq });
    // Stale entries pile up only when keys move to earlier deadlines: rebuild when they dominate.
    if (this.heap.length > 64 + 2 * this.slots.size) this.rebuild();
    this.arm();
  }

  cancel(key: string): boolean {
    return this.slots.delete(key);
  }

  /** Runs what is due now (the timer calls it; tests driving a fake clock may too). */
  runDue(): void {
    this.cancelTimer = undefined;
    this.armedAt = Number.POSITIVE_INFINITY;
    const now = this.clock.now();
    for (;;) {
      const top = this.heap[0];
      if (!top || this.stopped) break;
      const slot = this.slots.get(top.key);
      if (!slot || slot.seq !== top.seq) {
        this.pop();
        continue;
      }
      if (slot.at > now) break;
      this.pop();
      this.slots.delete(top.key);
      this.run(top.key, slot.fn);
    }
    this.arm();
  }

  /** Resolves once no task is running (tasks started meanwhile included). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  stop(): void {
    this.stopped = true;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.slots.clear();
    this.heap = [];
  }

  private run(key: string, fn: () => void | Promise<void>): void {
    try {
      const r = fn();
      if (r instanceof Promise) {
        const p: Promise<void> = r.catch((err: unknown) => this.onError(err, key)).finally(() => this.running.delete(p));
        this.running.add(p);
      }
    } catch (err) {
      this.onError(err, key);
    }
  }

  private arm(): void {
    if (this.stopped) return;
    while (this.heap.length > 0) {
      const top = this.heap[0]!;
      const slot = this.slots.get(top.key);
      if (slot && slot.seq === top.seq) break;
      this.pop();
    }
    const top = this.heap[0];
    if (!top) {
      this.cancelTimer?.();
      this.cancelTimer = undefined;
      this.armedAt = Number.POSITIVE_INFINITY;
      return;
    }
    if (this.cancelTimer && this.armedAt <= top.at) return;
    this.cancelTimer?.();
    this.armedAt = top.at;
    this.cancelTimer = this.clock.setTimer(() => this.runDue(), top.at - this.clock.now());
  }

  private rebuild(): void {
    this.heap = [...this.slots].map(([key, s]) => ({ key, at: s.at, seq: s.seq }));
    this.heap.sort(less);
  }

  private push(e: { key: string; at: number; seq: number }): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (less(h[parent]!, h[i]!) <= 0) break;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop();
    if (!last || h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && less(h[l]!, h[m]!) < 0) m = l;
      if (r < h.length && less(h[r]!, h[m]!) < 0) m = r;
      if (m === i) break;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
}

function less(a: { at: number; seq: number }, b: { at: number; seq: number }): number {
  return a.at - b.at || a.seq - b.seq;
}
