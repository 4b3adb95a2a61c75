/**
 * Enough of a ws client for EdgeHub's unit tests (a test double: only the members EdgeHub
 * uses): records what is written, lets the test play the cloud (`receive`, `open`, `shut`).
 */
import { EventEmitter } from 'node:events';
import { createCborCodec, type Message } from '../../shared/protocol/index.js';

const codec = createCborCodec();
const OPEN = 1;
const CLOSED = 3;

export class FakeSocket extends EventEmitter {
  readyState = 0;
  readonly frames: Uint8Array[] = [];
  /** Set when EdgeHub closed it: the code and reason it gave (a terminate after a close keeps the close's). */
  closed: { code?: number; reason?: string } | undefined;

  open(): void {
    this.readyState = OPEN;
    this.emit('open');
  }

  send(data: Uint8Array, _opts: unknown, cb?: (err?: Error) => void): void {
    this.frames.push(data);
    if (cb) setImmediate(cb);
  }

  /** A frame from the cloud. */
  receive(frame: Uint8Array): void {
    this.emit('message', Buffer.from(frame), true);
  }

  /** What EdgeHub wrote, decoded. */
  decoded(): Message[] {
    return this.frames.map((f) => codec.decode(f));
  }

  close(code?: number, reason?: string): void {
    this.closed = { ...(code !== undefined ? { code } : {}), ...(reason !== undefined ? { reason } : {}) };
    this.shut(code ?? 1005);
  }

  terminate(): void {
    this.closed ??= { code: 1006 };
    this.shut(1006);
  }

  /** The connection fails or drops from the far side. */
  shut(code: number): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    setImmediate(() => this.emit('close', code, Buffer.alloc(0)));
  }

  pause(): void {}
  resume(): void {}
}
