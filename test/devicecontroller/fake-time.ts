/**
 * A fake clock with fake timers for the DeviceStatus writer: time moves only when a test
 * advances it, and every timer due on the way runs in order, with the promise chains it
 * starts (fake API writes) settled before time moves on. No test sleeps.
 */
import type { Timers } from '../../cloud/devicecontroller/index.js';

/** Lets pending promise chains (and their `finally`s) run. */
export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class FakeTime implements Timers {
  t: number;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = 1_000_000) {
    this.t = start;
  }

  readonly now = (): number => this.t;

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Timers scheduled and not yet run. */
  get scheduled(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, running each timer when its time comes. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await settle();
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
}
