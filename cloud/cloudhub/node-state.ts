/**
 * @module
 * Everything CloudHub keeps for one edge node. It outlives connections: when a node
 * reconnects (or a second connection replaces the first) its queue, in-flight
 * messages and de-duplication window carry over, so nothing is lost or re-applied.
 */
import type { WebSocket } from 'ws';
import { DeliveryQueue, type Delivery } from '../../shared/delivery/index.js';
import type { Message } from '../../shared/protocol/index.js';

export interface Outgoing {
  message: Message;
  frame: Uint8Array;
}

/** Token bucket for upstream throttling. */
export class TokenBucket {
  private tokens: number;
  private last = Date.now();
  constructor(private readonly rate: number, private readonly burst: number) {
    this.tokens = burst;
  }
  /** Takes one token; returns 0 when allowed, else ms until one is available. */
  take(now = Date.now()): number {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) * 1000) / this.rate);
  }
}

export class NodeState {
  socket: WebSocket | undefined;
  lastSeen = 0;
  remote = '';
  /** Bytes handed to the socket and not yet flushed (our view of bufferedAmount). */
  unflushed = 0;
  queue: DeliveryQueue<Outgoing> | undefined;
  /** Recent upstream ids: 'handling' until handled, then 'done'. Insertion-ordered for LRU. */
  recent: Map<string, 'handling' | 'done'> | undefined;
  inProgress = 0;
  paused = false;
  throttled = false;
  bucket: TokenBucket | undefined;
  /** Monotonic per connection, so late callbacks of an old socket are ignored. */
  generation = 0;
  stats = { sent: 0, resent: 0, acked: 0, superseded: 0, received: 0, duplicates: 0 };

  constructor(readonly name: string) {}

  get connected(): boolean {
    return this.socket !== undefined;
  }

  /** Remembers an upstream id; returns its previous state if it was seen. */
  remember(id: string, window: number): 'handling' | 'done' | undefined {
    const recent = (this.recent ??= new Map());
    const prev = recent.get(id);
    if (prev !== undefined) return prev;
    recent.set(id, 'handling');
    if (recent.size > window) recent.delete(recent.keys().next().value as string);
    return undefined;
  }

  handled(id: string): void {
    if (this.recent?.has(id)) this.recent.set(id, 'done');
  }

  forget(id: string): void {
    this.recent?.delete(id);
  }
}

export type { Delivery };
