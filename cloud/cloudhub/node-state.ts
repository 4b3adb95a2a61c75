/**
 * @module
 * Everything CloudHub keeps for one edge node. It outlives connections: when a node
 * reconnects (or a second connection replaces the first) its queue, in-flight
 * messages and de-duplication window carry over, so nothing is lost or re-applied.
 * A state with no connection and no pending work is idle; CloudHub drops it after a
 * grace period (see `idleNodeGraceMs` and docs/design.md "Idle node state is evicted").
 */
import type { Mux } from '../../shared/stream/index.js';
import type { WebSocket, RawData } from 'ws';
import type { DeliveryQueue, Delivery } from '../../shared/delivery/index.js';
import type { Message } from '../../shared/protocol/index.js';
import type { LogLimiter } from './log-limiter.js';

export interface Outgoing {
  message: Message;
  frame: Uint8Array;
}

/** Token bucket for upstream throttling. */
export class TokenBucket {
  private tokens: number;
  private last = Date.now();
  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  private refill(now: number): void {
    if (now > this.last) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
  }

  /** 0 when a token is available, else ms until one is. Takes nothing. */
  wait(now = Date.now()): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.rate));
  }

  /** Takes one token; returns 0 when allowed, else ms until one is available (and takes nothing). */
  take(now = Date.now()): number {
    const wait = this.wait(now);
    if (wait === 0) this.tokens -= 1;
    return wait;
  }
}

/** Kinds of frames read from a session. */
export type FrameKind = 'binary' | 'text' | 'ping' | 'pong';

/** A frame ws emitted while reading was held (ws emits every frame of a chunk it already read, even after pause()). */
export interface HeldFrame {
  kind: FrameKind;
  data: RawData;
}

export class NodeState {
  socket: WebSocket | undefined;
  /** The streams of the current connection (kubectl logs/exec/attach); undefined when the edge serves none. */
  mux: Mux | undefined;
  lastSeen = 0;
  remote = '';
  /** Bytes handed to the socket and not yet flushed (our view of bufferedAmount). */
  unflushed = 0;
  queue: DeliveryQueue<Outgoing> | undefined;
  /** Recent upstream ids: 'handling' until handled, then 'done'. Insertion-ordered for LRU. */
  recent: Map<string, 'handling' | 'done'> | undefined;
  /** Upstream messages being handled by cloud modules (across connections). */
  inProgress = 0;
  /** The socket is paused (reading held). */
  paused = false;
  /** Out of tokens: reading held until the throttle timer refills them. */
  throttled = false;
  /** Too many upstream messages in progress: reading held until half of them finished. */
  busy = false;
  /** Unflushed bytes over `maxUnflushedBytes`: reading held; cut off if it lasts. */
  overBudget = false;
  cutoffTimer: NodeJS.Timeout | undefined;
  /** Closes the session when its client certificate expires (mTLS). */
  expiryTimer: NodeJS.Timeout | undefined;
  /** When the session's certificate (or a renewal of it issued by this replica) expires, ms. */
  certNotAfter: number | undefined;
  /** Frames read while reading was held, processed in order once it is released. */
  backlog: HeldFrame[] | undefined;
  bucket: TokenBucket | undefined;
  /** Rate limit for this node's warning lines. */
  logLimiter: LogLimiter | undefined;
  /** When the state became idle (valid while CloudHub lists it as idle). */
  idleSince = 0;
  /** Monotonic per connection, so late callbacks of an old socket are ignored. */
  generation = 0;
  stats = { sent: 0, resent: 0, acked: 0, superseded: 0, received: 0, duplicates: 0, frames: 0, rejected: 0 };

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

  /** Keeps only the newest `max` remembered ids. */
  trimRecent(max: number): void {
    const recent = this.recent;
    if (!recent) return;
    while (recent.size > max) recent.delete(recent.keys().next().value as string);
    if (recent.size === 0) this.recent = undefined;
  }
}

export type { Delivery };
