/**
 * The part of a ws WebSocket that CloudHub uses, for CloudHub's unit tests: writes complete only
 * when `flush()` is called (the peer read them), frames are received as ws emits them.
 */
import { EventEmitter } from 'node:events';
import { codec } from './cloud.js';
import { isStreamFrame, type Message, type StreamFrame } from '../../shared/protocol/index.js';

/** The part of a ws WebSocket CloudHub uses; writes complete only when flush() is called. */
export class FakeHubSocket extends EventEmitter {
  readonly OPEN = 1;
  readonly CONNECTING = 0;
  readyState = 1;
  paused = false;
  /** Frames written (send) and pongs, in order. */
  readonly written: { kind: 'frame' | 'pong'; data: Buffer }[] = [];
  closed: { code: number; reason: string } | undefined;
  terminated = false;
  private pending: (() => void)[] = [];

  send(data: Uint8Array, _opts: unknown, cb: () => void): void {
    this.written.push({ kind: 'frame', data: Buffer.from(data) });
    this.pending.push(cb);
  }
  pong(data: Buffer, _mask: boolean, cb: () => void): void {
    this.written.push({ kind: 'pong', data });
    this.pending.push(cb);
  }
  ping(): void {}
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  close(code: number, reason: string): void {
    this.closed = { code, reason };
    this.readyState = 2;
  }
  terminate(): void {
    this.terminated = true;
    this.readyState = 3;
  }
  /** The peer read everything: completes every pending write. */
  flush(): void {
    const cbs = this.pending;
    this.pending = [];
    for (const cb of cbs) cb();
  }
  /** ws emits every frame of a chunk it already read, synchronously, even after pause(). */
  receive(...frames: (Message | { ping: Buffer })[]): void {
    for (const f of frames) {
      if ('ping' in f) this.emit('ping', f.ping);
      else this.emit('message', Buffer.from(codec.encode(f)), true);
    }
  }
  /** How CloudHub closed it, if it did (a method, so assertions do not narrow it for good). */
  closeInfo(): { code: number; reason: string } | undefined {
    return this.closed;
  }
  /** Decoded frames written by CloudHub. */
  messages(): Message[] {
    return this.written
      .filter((w) => w.kind === 'frame')
      .map((w) => codec.decodeFrame(w.data))
      .filter((f): f is Message => !isStreamFrame(f));
  }

  /** Stream frames from the edge (kubectl logs/exec/attach over the link). */
  receiveStream(...frames: StreamFrame[]): void {
    for (const f of frames) this.emit('message', Buffer.from(codec.encodeStream(f)), true);
  }
  /** Decoded stream frames written by CloudHub. */
  streamFrames(): StreamFrame[] {
    return this.written
      .filter((w) => w.kind === 'frame')
      .map((w) => codec.decodeFrame(w.data))
      .filter((f): f is StreamFrame => isStreamFrame(f));
  }
}
