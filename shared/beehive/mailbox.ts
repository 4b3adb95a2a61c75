/**
 * @module
 * A bounded FIFO with async put/take, the module inbox. Senders wait when it is full
 * (backpressure instead of unbounded growth or drops), receivers wait when empty.
 */
import { StoppedError } from '../errors/index.js';

interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

export class Mailbox<T> {
  private items: T[] = [];
  private head = 0;
  private takers: Waiter<T>[] = [];
  private putters: { item: T; w: Waiter<void> }[] = [];
  private closed = false;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new TypeError(`mailbox capacity must be an integer ≥ 1, got ${capacity}`);
  }

  get size(): number {
    return this.items.length - this.head;
  }

  /** Adds an item, waiting while the mailbox is full. */
  put(item: T): Promise<void> {
    if (this.closed) return Promise.reject(new StoppedError('mailbox closed'));
    const taker = this.takers.shift();
    if (taker) {
      taker.resolve(item);
      return Promise.resolve();
    }
    if (this.size < this.capacity) {
      this.items.push(item);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => this.putters.push({ item, w: { resolve, reject } }));
  }

  /** Takes the next item, waiting until one arrives or `signal` aborts. */
  take(signal?: AbortSignal): Promise<T> {
    if (this.size > 0) {
      const item = this.items[this.head]!;
      this.items[this.head++] = undefined as T;
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      const putter = this.putters.shift();
      if (putter) {
        this.items.push(putter.item);
        putter.w.resolve();
      }
      return Promise.resolve(item);
    }
    if (this.closed) return Promise.reject(new StoppedError('mailbox closed'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      const onAbort = () => {
        const i = this.takers.indexOf(waiter);
        if (i >= 0) this.takers.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.takers.push(waiter);
    });
  }

  /** Rejects waiting takers and future puts. Items already queued can still be taken. */
  close(): void {
    this.closed = true;
    for (const t of this.takers.splice(0)) t.reject(new StoppedError('mailbox closed'));
    for (const p of this.putters.splice(0)) p.w.reject(new StoppedError('mailbox closed'));
  }
}
