/**
 * @module
 * Writes to the API coalesced per key: at most one write in flight per key; values
 * arriving meanwhile are merged (by default the latest wins) and written once.
 * Every caller's promise settles when a write containing its value (or one that
 * superseded it) completed, so CloudHub ACKs only what reached the API. An optional
 * concurrency bound across keys keeps a burst (thousands of ACKs) from flooding the
 * API server.
 */
interface Pending<V> {
  value: V;
  waiters: { resolve: () => void; reject: (e: unknown) => void }[];
}

export interface CoalescingWriterOptions<V> {
  /** Combines a waiting value with a newer one. Default: the newer one. */
  merge?: (waiting: V, next: V) => V;
  /** Writes in flight across all keys. Default unbounded. */
  concurrency?: number;
}

export class CoalescingWriter<V> {
  private readonly pending = new Map<string, Pending<V>>();
  private readonly inFlight = new Map<string, V>();
  private slots: number;
  private readonly slotWaiters: (() => void)[] = [];
  writes = 0;
  coalesced = 0;

  constructor(
    private readonly writeFn: (key: string, value: V) => Promise<void>,
    private readonly options: CoalescingWriterOptions<V> = {},
  ) {
    this.slots = options.concurrency ?? Infinity;
  }

  /** The value waiting to be written for `key`, else the one being written. */
  current(key: string): V | undefined {
    return this.pending.get(key)?.value ?? this.inFlight.get(key);
  }

  write(key: string, value: V): Promise<void> {
    return new Promise((resolve, reject) => {
      const p = this.pending.get(key);
      if (p) {
        p.value = this.options.merge ? this.options.merge(p.value, value) : value;
        p.waiters.push({ resolve, reject });
        this.coalesced++;
      } else {
        this.pending.set(key, { value, waiters: [{ resolve, reject }] });
      }
      if (!this.inFlight.has(key)) void this.run(key);
    });
  }

  private async run(key: string): Promise<void> {
    for (;;) {
      const p = this.pending.get(key);
      if (!p) return;
      this.pending.delete(key);
      this.inFlight.set(key, p.value);
      await this.acquire();
      try {
        this.writes++;
        await this.writeFn(key, p.value);
        for (const w of p.waiters) w.resolve();
      } catch (err) {
        for (const w of p.waiters) w.reject(err);
      } finally {
        this.release();
        this.inFlight.delete(key);
      }
    }
  }

  private acquire(): Promise<void> {
    if (this.slots > 0) {
      this.slots--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.slotWaiters.push(resolve));
  }

  private release(): void {
    const next = this.slotWaiters.shift();
    if (next) next();
    else this.slots++;
  }
}
