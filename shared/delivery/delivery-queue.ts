/**
 * @module
 * Reliable, ordered delivery over a link that comes and goes: the core of CloudHub's
 * per-node queue and of EdgeHub's outbox.
 *
 * - Ordered per key (the message's resource): at most one message per key is in
 *   flight; the next one for that key is sent after the previous is ACKed.
 * - Coalescing (optional, cloud side): a newer message for a key replaces an older
 *   one that was not sent yet, and an in-flight message whose retry falls due while
 *   a newer one waits is dropped as superseded instead of resent.
 * - Bounded: at most `maxQueued` messages; `enqueue` throws QueueFullError beyond it.
 * - Windowed: at most `maxInFlight` unacknowledged messages; `canTransmit()` lets the
 *   link apply socket backpressure (bufferedAmount high-water mark).
 * - Retries: a message not ACKed within its timeout is resent with the same id (the
 *   receiver de-duplicates), the timeout doubling up to `maxAckTimeoutMs`.
 * - Link loss: `detach()` puts in-flight messages back at the head of their keys, in
 *   their original order, to be resent when a link is attached again.
 * State is allocated lazily: an idle queue costs a few hundred bytes.
 */
import { QueueFullError } from '../errors/index.js';
import { backoff, type Backoff } from '../backoff/index.js';

export interface Delivery<T> {
  readonly id: string;
  readonly key: string;
  readonly item: T;
  /** Monotonic enqueue sequence number, for ordering after a link loss. */
  readonly seq: number;
  attempts: number;
  deadline: number;
}

export interface DeliveryQueueOptions<T> {
  /** Sends one delivery on the current link. */
  transmit: (delivery: Delivery<T>) => void;
  /** Whether the link can take more now (socket backpressure). Default always true. */
  canTransmit?: () => boolean;
  /** A queued or in-flight delivery was replaced by a newer one for the same key. */
  onSuperseded?: (delivery: Delivery<T>) => void;
  coalesce?: boolean;
  maxQueued?: number;
  maxInFlight?: number;
  ackTimeoutMs?: number;
  maxAckTimeoutMs?: number;
}

export class DeliveryQueue<T> {
  private readonly perKey = new Map<string, Delivery<T>[]>();
  private readonly ready: string[] = [];
  private readyHead = 0;
  private readonly readySet = new Set<string>();
  private readonly inFlight = new Map<string, Delivery<T>>();
  private readonly inFlightKeys = new Set<string>();
  private queued = 0;
  private seq = 0;
  private attached = false;
  readonly maxQueued: number;
  readonly maxInFlight: number;
  readonly ackTimeoutMs: number;
  readonly maxAckTimeoutMs: number;
  /** ACK timeout of a delivery's nth attempt: `ackTimeoutMs` doubling to `maxAckTimeoutMs`, no jitter. */
  private readonly retry: Backoff;

  constructor(private readonly options: DeliveryQueueOptions<T>) {
    this.maxQueued = options.maxQueued ?? 10_000;
    this.maxInFlight = options.maxInFlight ?? 128;
    this.ackTimeoutMs = options.ackTimeoutMs ?? 5_000;
    this.maxAckTimeoutMs = options.maxAckTimeoutMs ?? 60_000;
    this.retry = backoff({ baseMs: this.ackTimeoutMs, maxMs: this.maxAckTimeoutMs });
  }

  /** Messages waiting or in flight. */
  get size(): number {
    return this.queued + this.inFlight.size;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  get isAttached(): boolean {
    return this.attached;
  }

  /** Queues a message; transmits at once when the link and window allow. */
  enqueue(id: string, key: string, item: T): Delivery<T> {
    let list = this.perKey.get(key);
    if (this.options.coalesce && list && list.length > 0) {
      const old = list[list.length - 1]!;
      const d: Delivery<T> = { id, key, item, seq: old.seq, attempts: 0, deadline: 0 };
      list[list.length - 1] = d;
      this.options.onSuperseded?.(old);
      this.pump();
      return d;
    }
    if (this.size >= this.maxQueued) {
      throw new QueueFullError(`queue full (${this.maxQueued} messages): cannot queue ${key}`);
    }
    const d: Delivery<T> = { id, key, item, seq: ++this.seq, attempts: 0, deadline: 0 };
    if (!list) this.perKey.set(key, (list = []));
    list.push(d);
    this.queued++;
    if (!this.inFlightKeys.has(key)) this.markReady(key);
    this.pump();
    return d;
  }

  private markReady(key: string): void {
    if (this.readySet.has(key)) return;
    this.readySet.add(key);
    this.ready.push(key);
  }

  private nextReady(): string | undefined {
    while (this.readyHead < this.ready.length) {
      const key = this.ready[this.readyHead++]!;
      this.readySet.delete(key);
      if (this.readyHead > 256 && this.readyHead * 2 > this.ready.length) {
        this.ready.splice(0, this.readyHead);
        this.readyHead = 0;
      }
      if (!this.inFlightKeys.has(key) && (this.perKey.get(key)?.length ?? 0) > 0) return key;
    }
    return undefined;
  }

  /** Transmits as much as the window and the link allow. */
  pump(now = Date.now()): void {
    if (!this.attached) return;
    const canTransmit = this.options.canTransmit;
    while (this.inFlight.size < this.maxInFlight && (!canTransmit || canTransmit())) {
      const key = this.nextReady();
      if (key === undefined) return;
      const list = this.perKey.get(key)!;
      const d = list.shift()!;
      if (list.length === 0) this.perKey.delete(key);
      this.queued--;
      this.inFlight.set(d.id, d);
      this.inFlightKeys.add(key);
      d.attempts++;
      d.deadline = now + this.timeoutFor(d.attempts);
      this.options.transmit(d);
    }
  }

  private timeoutFor(attempts: number): number {
    return this.retry.delay(attempts);
  }

  /** Marks a delivery acknowledged. Returns it, or undefined for an unknown or duplicate ACK. */
  ack(id: string): Delivery<T> | undefined {
    const d = this.inFlight.get(id);
    if (!d) return undefined;
    this.inFlight.delete(id);
    this.inFlightKeys.delete(d.key);
    if ((this.perKey.get(d.key)?.length ?? 0) > 0) this.markReady(d.key);
    this.pump();
    return d;
  }

  /** Resends overdue deliveries (or drops superseded ones). Call periodically. */
  tick(now = Date.now()): void {
    if (!this.attached || this.inFlight.size === 0) return;
    for (const d of this.inFlight.values()) {
      if (d.deadline > now) continue;
      if (this.options.coalesce && (this.perKey.get(d.key)?.length ?? 0) > 0) {
        // A newer version waits: resending the old one is wasted work.
        this.inFlight.delete(d.id);
        this.inFlightKeys.delete(d.key);
        this.markReady(d.key);
        this.options.onSuperseded?.(d);
        continue;
      }
      if (this.options.canTransmit && !this.options.canTransmit()) return;
      d.attempts++;
      d.deadline = now + this.timeoutFor(d.attempts);
      this.options.transmit(d);
    }
    this.pump(now);
  }

  /** A link is up: start transmitting. */
  attach(): void {
    this.attached = true;
    this.pump();
  }

  /** The link is gone: in-flight deliveries go back to the head of their keys. */
  detach(): void {
    this.attached = false;
    if (this.inFlight.size === 0) return;
    const back = [...this.inFlight.values()].sort((a, b) => a.seq - b.seq);
    this.inFlight.clear();
    this.inFlightKeys.clear();
    for (const d of back) {
      const list = this.perKey.get(d.key);
      if (this.options.coalesce && list && list.length > 0) {
        this.options.onSuperseded?.(d);
        continue;
      }
      d.attempts = 0;
      if (list) list.unshift(d);
      else this.perKey.set(d.key, [d]);
      this.queued++;
    }
    // Rebuild the ready order from the oldest message of each key.
    const heads = [...this.perKey.values()].map((l) => l[0]!).sort((a, b) => a.seq - b.seq);
    this.ready.length = 0;
    this.readyHead = 0;
    this.readySet.clear();
    for (const h of heads) this.markReady(h.key);
  }

  /** Every queued and in-flight delivery, oldest first. */
  pending(): Delivery<T>[] {
    const all = [...this.inFlight.values()];
    for (const list of this.perKey.values()) all.push(...list);
    return all.sort((a, b) => a.seq - b.seq);
  }
}
