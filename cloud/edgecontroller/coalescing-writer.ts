/**
 * @module
 * Writes to the API coalesced per key: at most one write in flight per key; reports
 * arriving meanwhile replace each other and are written once, with the latest value.
 * Every caller's promise settles when a write containing its value (or a newer one)
 * completed, so CloudHub ACKs only what reached the API.
 */
interface Pending<V> {
  value: V;
  waiters: { resolve: () => void; reject: (e: unknown) => void }[];
}

export class CoalescingWriter<V> {
  private readonly pending = new Map<string, Pending<V>>();
  private readonly running = new Set<string>();
  writes = 0;
  coalesced = 0;

  constructor(private readonly writeFn: (key: string, value: V) => Promise<void>) {}

  write(key: string, value: V): Promise<void> {
    return new Promise((resolve, reject) => {
      const p = this.pending.get(key);
      if (p) {
        p.value = value;
        p.waiters.push({ resolve, reject });
        this.coalesced++;
      } else {
        this.pending.set(key, { value, waiters: [{ resolve, reject }] });
      }
      if (!this.running.has(key)) void this.run(key);
    });
  }

  private async run(key: string): Promise<void> {
    this.running.add(key);
    try {
      for (;;) {
        const p = this.pending.get(key);
        if (!p) return;
        this.pending.delete(key);
        try {
          this.writes++;
          await this.writeFn(key, p.value);
          for (const w of p.waiters) w.resolve();
        } catch (err) {
          for (const w of p.waiters) w.reject(err);
        }
      }
    } finally {
      this.running.delete(key);
    }
  }
}
