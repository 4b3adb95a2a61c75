/**
 * @module
 * Streams multiplexed over the cloud–edge link (docs/protocol.md, "Streams"): `kubectl logs -f`,
 * `exec` and `attach` ride the WebSocket the edge already holds, each as a stream with its own
 * flow control, so a chatty container never delays sync messages and a slow reader never grows
 * memory without bound.
 *
 * Sans-IO: the hub gives the mux a `write` for frames and a `canWrite` for its socket's buffer,
 * feeds it the stream frames it reads ({@link Mux.receive}) and calls {@link Mux.pump} when the
 * socket drained. Only the cloud opens streams; the edge accepts or refuses them.
 *
 * - **Credit.** A receiver grants a window of bytes per stream (OPEN's `window` for the edge's
 *   sends, and the edge's acceptance, a CREDIT, for the cloud's). A sender never sends more than
 *   it was granted; the receiver grants more as its consumer takes the data (not while it is
 *   paused). A peer that sends past its credit gets the stream aborted with
 *   `LEDGE_ERR_STREAM_PROTOCOL`: what one stream holds is bounded by its window.
 * - **Priority.** DATA is written only while `canWrite()` (the socket's buffer is under the hub's
 *   low-water mark) and in chunks of at most `maxChunk` bytes, round-robin over the streams;
 *   messages and control frames (OPEN, CREDIT, CLOSE) are written at once. So a sync message
 *   waits behind at most one chunk per stream the socket already holds.
 * - **Ends.** `end()` closes after what is queued was sent; `abort(error)` at once, dropping it.
 *   The link's end aborts every stream with `LEDGE_ERR_DISCONNECTED` ({@link Mux.closeAll}).
 */
import { DisconnectedError, ErrorCode, QueueFullError } from '../errors/index.js';
import { MAX_STREAM_UINT, StreamFrameType, type ErrorContent, type StreamFrame, type StreamRequest } from '../protocol/index.js';

/** A stream's error: the peer's CLOSE data, or the mux's own. */
export type StreamError = ErrorContent;

export interface MuxOptions {
  /** Writes one frame on the link now. */
  write(frame: StreamFrame): void;
  /** Whether the link takes stream DATA now; the hub calls {@link Mux.pump} when that changes. */
  canWrite(): boolean;
  /** The edge: a stream the peer opened. Call `accept()` or `abort(error)` on it. Without it, opens are refused. */
  onOpen?(stream: Stream): void;
  /** Streams open at once; more are refused (`LEDGE_ERR_QUEUE_FULL`). Default 32. */
  maxStreams?: number;
  /** Bytes this side lets the peer send on a stream before it grants more. Default 256 KiB. */
  window?: number;
  /** Largest DATA payload, channel byte included. Default 16 KiB. */
  maxChunk?: number;
}

export const defaultMuxOptions = { maxStreams: 32, window: 256 * 1024, maxChunk: 16 * 1024 } as const;

const MAX_CREDIT = MAX_STREAM_UINT;

type State = 'opening' | 'open' | 'ending' | 'closed';

/** One stream (either side). */
export class Stream {
  private state: State;
  /** Bytes this side may still send (the peer's grants minus what was sent). */
  private sendCredit = 0;
  /** Bytes the peer may still send (this side's grants minus what arrived). */
  private recvCredit: number;
  /** Bytes delivered to the consumer that were not granted back yet. */
  private toGrant = 0;
  private readonly outgoing: Uint8Array[] = [];
  private outgoingBytes = 0;
  private readonly held: Uint8Array[] = [];
  private paused = false;
  /** The peer ended the stream while data was held for a paused consumer: it is delivered on resume, then the stream closes. */
  private peerEnded = false;
  private wantDrain = false;
  private readonly listeners = {
    open: [] as (() => void)[],
    message: [] as ((channel: number, payload: Uint8Array) => void)[],
    drain: [] as (() => void)[],
    close: [] as ((error?: StreamError) => void)[],
  };

  /** @internal Made by the {@link Mux}. */
  constructor(
    private readonly mux: Mux,
    readonly id: number,
    readonly request: StreamRequest,
  ) {
    this.state = 'opening';
    this.recvCredit = mux.window;
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Bytes queued to send (not yet granted by the peer or not yet written). */
  get queuedBytes(): number {
    return this.outgoingBytes;
  }

  /** The edge: takes the stream; the grant of its window tells the cloud it is open. */
  accept(): void {
    if (this.state !== 'opening') return;
    this.state = 'open';
    this.mux.writeFrame({ id: this.id, type: StreamFrameType.Credit, data: this.recvCredit });
  }

  /**
   * Queues one channel message (split into chunks as needed). False when the queue holds a
   * window or more: wait for `drain` before sending more. After the end, a no-op returning false.
   */
  send(channel: number, payload: Uint8Array): boolean {
    if (this.state === 'closed' || this.state === 'ending' || this.peerEnded) return false;
    const max = this.mux.maxChunk - 1;
    let offset = 0;
    do {
      const part = payload.subarray(offset, offset + max);
      const chunk = new Uint8Array(part.length + 1);
      chunk[0] = channel;
      chunk.set(part, 1);
      this.outgoing.push(chunk);
      this.outgoingBytes += chunk.length;
      offset += max;
    } while (offset < payload.length);
    // A caller that ignores `false` is a bug; it must not grow the queue without bound.
    if (this.outgoingBytes > 4 * this.mux.window + payload.length) {
      this.abort({ code: ErrorCode.StreamProtocol, message: `stream ${this.id}: ${this.outgoingBytes} bytes queued, over 4 windows (the sender ignores back-pressure)` });
      return false;
    }
    this.mux.schedule(this);
    const ok = this.outgoingBytes < this.mux.window;
    if (!ok) this.wantDrain = true;
    return ok;
  }

  /** Stops granting credit: what arrives is held (at most a window) until `resume()`. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    while (!this.paused && this.held.length > 0 && this.state !== 'closed') this.deliver(this.held.shift()!);
    if (this.peerEnded && this.held.length === 0) this.closeLocal(undefined);
  }

  /** Ends after what is queued was sent. */
  end(): void {
    if (this.state === 'closed' || this.state === 'ending') return;
    if (this.outgoingBytes === 0) {
      this.finish();
      return;
    }
    this.state = 'ending';
    this.mux.schedule(this);
  }

  /** Ends now, with an error for the peer (and this side's close listeners); what is queued is dropped. */
  abort(error: StreamError): void {
    if (this.state === 'closed') return;
    this.mux.writeFrame({ id: this.id, type: StreamFrameType.Close, data: { code: error.code, message: error.message } });
    this.closeLocal(error);
  }

  on(event: 'open', listener: () => void): this;
  on(event: 'message', listener: (channel: number, payload: Uint8Array) => void): this;
  on(event: 'drain', listener: () => void): this;
  on(event: 'close', listener: (error?: StreamError) => void): this;
  on(event: 'open' | 'message' | 'drain' | 'close', listener: (...args: never[]) => void): this {
    (this.listeners[event] as unknown[]).push(listener);
    return this;
  }

  // ---- the mux's side ----

  /** @internal The opener's window, given with its OPEN (the accepting side). */
  initialCredit(n: number): void {
    this.sendCredit = n;
  }

  /** @internal */
  onCredit(n: number): void {
    if (this.state === 'closed') return;
    const first = this.state === 'opening';
    this.sendCredit = Math.min(MAX_CREDIT, this.sendCredit + n);
    if (first) {
      this.state = 'open';
      for (const l of this.listeners.open) l();
    }
    this.mux.schedule(this);
  }

  /** @internal */
  onData(chunk: Uint8Array): void {
    if (this.state === 'closed') return;
    if (chunk.length === 0 || chunk.length > this.mux.maxChunk) {
      this.abort({ code: ErrorCode.StreamProtocol, message: `stream ${this.id}: a DATA frame of ${chunk.length} bytes (1 to ${this.mux.maxChunk} allowed)` });
      return;
    }
    if (chunk.length > this.recvCredit) {
      this.abort({ code: ErrorCode.StreamProtocol, message: `stream ${this.id}: ${chunk.length} bytes sent with ${this.recvCredit} bytes of credit` });
      return;
    }
    this.recvCredit -= chunk.length;
    if (this.paused || this.held.length > 0) this.held.push(chunk);
    else this.deliver(chunk);
  }

  private deliver(chunk: Uint8Array): void {
    const channel = chunk[0]!;
    const payload = chunk.subarray(1);
    for (const l of this.listeners.message) l(channel, payload);
    if (this.state === 'closed' || this.peerEnded) return;
    this.toGrant += chunk.length;
    // Granted in batches (a quarter window), not one CREDIT per DATA.
    if (this.toGrant >= this.mux.window / 4 || this.recvCredit === 0) {
      this.recvCredit += this.toGrant;
      this.mux.writeFrame({ id: this.id, type: StreamFrameType.Credit, data: this.toGrant });
      this.toGrant = 0;
    }
  }

  /** @internal Writes what credit and the link allow; true if it still has DATA it could write with more link room. */
  flush(): boolean {
    while (this.outgoing.length > 0 && this.sendCredit > 0 && this.state !== 'closed') {
      if (!this.mux.linkOpen()) return true;
      let chunk = this.outgoing[0]!;
      if (chunk.length > this.sendCredit) {
        // Split to what is granted; the rest keeps its channel byte.
        const n = this.sendCredit;
        const rest = new Uint8Array(chunk.length - n + 1);
        rest[0] = chunk[0]!;
        rest.set(chunk.subarray(n), 1);
        this.outgoing[0] = rest;
        this.outgoingBytes += 1;
        chunk = chunk.subarray(0, n);
      } else this.outgoing.shift();
      this.outgoingBytes -= chunk.length;
      this.sendCredit -= chunk.length;
      this.mux.writeFrame({ id: this.id, type: StreamFrameType.Data, data: chunk });
      // One chunk per stream per turn: the others get theirs (round-robin).
      break;
    }
    if (this.wantDrain && this.outgoingBytes < this.mux.window / 2 && this.state !== 'closed') {
      this.wantDrain = false;
      for (const l of this.listeners.drain) l();
    }
    if (this.state === 'ending' && this.outgoingBytes === 0) this.finish();
    return this.outgoing.length > 0 && this.sendCredit > 0 && this.state !== 'closed';
  }

  private finish(): void {
    this.mux.writeFrame({ id: this.id, type: StreamFrameType.Close, data: null });
    this.closeLocal(undefined);
  }

  /** @internal The peer's CLOSE: an abort ends the stream now; an end, once what is held for a paused consumer was delivered. */
  onPeerClose(error: StreamError | undefined): void {
    if (this.state === 'closed') return;
    if (error || this.held.length === 0) {
      this.closeLocal(error);
      return;
    }
    this.peerEnded = true;
    this.outgoing.length = 0;
    this.outgoingBytes = 0;
    this.mux.forget(this);
  }

  /** @internal The stream is over on this side (the peer closed it, it was aborted, the link ended). */
  closeLocal(error: StreamError | undefined): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.outgoing.length = 0;
    this.outgoingBytes = 0;
    this.held.length = 0;
    this.mux.forget(this);
    for (const l of this.listeners.close) l(error);
  }
}

/** The streams of one link. */
export class Mux {
  readonly window: number;
  readonly maxChunk: number;
  readonly maxStreams: number;
  private readonly streams = new Map<number, Stream>();
  private readonly ready: Stream[] = [];
  private nextId = 1;
  private closed = false;
  private pumping = false;
  stats = { opened: 0, refused: 0, violations: 0 };

  constructor(private readonly options: MuxOptions) {
    this.window = options.window ?? defaultMuxOptions.window;
    this.maxChunk = options.maxChunk ?? defaultMuxOptions.maxChunk;
    this.maxStreams = options.maxStreams ?? defaultMuxOptions.maxStreams;
  }

  get size(): number {
    return this.streams.size;
  }

  /** Whether stream `id` is open (the hub charges DATA for unknown streams like any frame). */
  has(id: number): boolean {
    return this.streams.has(id);
  }

  /** The cloud: opens a stream; `open` fires once the edge accepted it, `close` (with an error) if it refused. */
  open(request: StreamRequest): Stream {
    if (this.closed) throw new DisconnectedError('the link is closed');
    if (this.streams.size >= this.maxStreams) throw new QueueFullError(`${this.maxStreams} streams are open on this link already`);
    const id = this.nextId;
    this.nextId = this.nextId >= MAX_CREDIT ? 1 : this.nextId + 1;
    const s = new Stream(this, id, request);
    this.streams.set(id, s);
    this.stats.opened++;
    this.writeFrame({ id, type: StreamFrameType.Open, data: { ...request, window: this.window } });
    return s;
  }

  /** A stream frame read from the link (already checked by the codec). */
  receive(frame: StreamFrame): void {
    if (this.closed) return;
    const s = this.streams.get(frame.id);
    switch (frame.type) {
      case StreamFrameType.Open: {
        if (s) return this.violation(s, `stream ${frame.id} opened twice`);
        const req = frame.data as StreamRequest & { window?: unknown };
        const refuse = (code: string, message: string) => {
          this.stats.refused++;
          this.writeFrame({ id: frame.id, type: StreamFrameType.Close, data: { code, message } });
        };
        if (!this.options.onOpen) return refuse(ErrorCode.Unsupported, 'this side does not accept streams');
        if (this.streams.size >= this.maxStreams) return refuse(ErrorCode.QueueFull, `${this.maxStreams} streams are open on this link already`);
        const { window, ...request } = req;
        const stream = new Stream(this, frame.id, request);
        this.streams.set(frame.id, stream);
        this.stats.opened++;
        // The opener's window for what this side sends.
        stream.initialCredit(typeof window === 'number' && window > 0 ? Math.min(window, MAX_CREDIT) : this.window);
        this.options.onOpen(stream);
        return;
      }
      case StreamFrameType.Data:
        return s?.onData(frame.data as Uint8Array);
      case StreamFrameType.Credit:
        return s?.onCredit(frame.data as number);
      case StreamFrameType.Close: {
        const e = frame.data as StreamError | null;
        s?.onPeerClose(e ? { code: e.code, message: e.message } : undefined);
        return;
      }
    }
  }

  /** The link can take more: writes queued DATA, round-robin over the streams. */
  pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.ready.length > 0 && this.linkOpen()) {
        const s = this.ready.shift()!;
        if (s.flush()) this.ready.push(s);
      }
    } finally {
      this.pumping = false;
    }
  }

  /** The link ended: every stream ends with `error`. */
  closeAll(error: StreamError): void {
    this.closed = true;
    for (const s of [...this.streams.values()]) s.closeLocal(error);
    this.ready.length = 0;
  }

  // ---- for Stream ----

  /** @internal */
  linkOpen(): boolean {
    return !this.closed && this.options.canWrite();
  }

  /** @internal */
  writeFrame(frame: StreamFrame): void {
    if (!this.closed) this.options.write(frame);
  }

  /** @internal */
  schedule(s: Stream): void {
    if (!this.ready.includes(s)) this.ready.push(s);
    // Writes happen after the caller's turn: several sends of one task become one pass.
    queueMicrotask(() => this.pump());
  }

  /** @internal */
  forget(s: Stream): void {
    if (this.streams.get(s.id) === s) this.streams.delete(s.id);
    const i = this.ready.indexOf(s);
    if (i >= 0) this.ready.splice(i, 1);
  }

  private violation(s: Stream, message: string): void {
    this.stats.violations++;
    s.abort({ code: ErrorCode.StreamProtocol, message });
  }
}
