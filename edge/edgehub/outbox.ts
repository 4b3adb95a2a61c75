/**
 * @module
 * The upstream outbox: messages the edge must deliver to the cloud (status reports),
 * kept in an append-only file so they survive restarts and power loss. A message is
 * durable once `add` resolves; it leaves the outbox when the cloud ACKs it. Replay
 * after a restart keeps the original order and message ids, so the cloud's
 * de-duplication recognises anything it had already handled.
 *
 * Records: `0x01 | frame` (a message, in the wire codec) and `0x02 | id` (its ACK).
 * The file is compacted once ACK records dominate.
 */
import { join } from 'node:path';
import { AppendLog, type OpenFile } from '../../shared/wal/index.js';
import { QueueFullError, StorageError } from '../../shared/errors/index.js';
import type { Codec, Message } from '../../shared/protocol/index.js';
import type { Logger } from '../../shared/log/index.js';

const ADD = 1;
const ACK = 2;

export interface OutboxEntry {
  message: Message;
  frame: Uint8Array;
}

export class Outbox {
  private readonly pending = new Map<string, Uint8Array>();
  private acked = 0;
  /** add()s being written: they count against the limit (concurrent adds cannot overshoot it). */
  private adding = 0;
  private compacting: Promise<void> | undefined;

  private constructor(
    private readonly log: AppendLog,
    private readonly logger: Logger,
    private readonly maxMessages: number,
  ) {}

  /**
   * Opens the outbox in `dataDir` and returns it with the messages still undelivered, oldest
   * first. `options.openFile` is the append log's file-opening seam (tests hold or fail fsync).
   */
  static async open(dataDir: string, codec: Codec, logger: Logger, maxMessages: number, options: { openFile?: OpenFile } = {}): Promise<{ outbox: Outbox; replay: OutboxEntry[] }> {
    const entries = new Map<string, OutboxEntry>();
    let acked = 0;
    // Each record is streamed from the file; it is our own copy, so views into it may be kept.
    const onRecord = (r: Uint8Array): void => {
      if (r[0] === ADD) {
        const frame = r.subarray(1);
        try {
          const message = codec.decode(frame);
          entries.set(message.header.id, { message, frame });
        } catch (err) {
          logger.error(`outbox record undecodable, skipped: ${(err as Error).message}`, { code: StorageError.code });
        }
      } else if (r[0] === ACK) {
        entries.delete(Buffer.from(r.subarray(1)).toString('utf8'));
        acked++;
      }
    };
    const { log, truncatedBytes } = await AppendLog.open(join(dataDir, 'outbox.log'), { onRecord, openFile: options.openFile });
    if (truncatedBytes > 0) logger.warn(`outbox had a torn tail of ${truncatedBytes} bytes (an unacknowledged write); cut off`, { code: StorageError.code });
    const outbox = new Outbox(log, logger, maxMessages);
    outbox.acked = acked;
    for (const [id, e] of entries) outbox.pending.set(id, e.frame);
    return { outbox, replay: [...entries.values()] };
  }

  get size(): number {
    return this.pending.size;
  }

  /** Durably adds a message; resolves after fsync. */
  async add(message: Message, frame: Uint8Array): Promise<void> {
    if (this.pending.size + this.adding >= this.maxMessages) {
      throw new QueueFullError(`outbox full (${this.maxMessages} undelivered messages); ${message.route.resource} not queued`);
    }
    const rec = new Uint8Array(frame.length + 1);
    rec[0] = ADD;
    rec.set(frame, 1);
    this.adding++;
    try {
      await this.log.append(rec);
    } finally {
      this.adding--;
    }
    this.pending.set(message.header.id, frame);
  }

  /** Records the cloud's ACK. Losing this record only causes a resend the cloud de-duplicates. */
  ack(id: string): void {
    if (!this.pending.delete(id)) return;
    this.acked++;
    const idBytes = Buffer.from(id, 'utf8');
    const rec = new Uint8Array(idBytes.length + 1);
    rec[0] = ACK;
    rec.set(idBytes, 1);
    this.log.append(rec).catch((err) => this.logger.warn(`outbox ACK record not written: ${(err as Error).message}`, { code: StorageError.code }));
    if (this.acked > 1000 && this.acked > this.pending.size * 2 && !this.compacting) {
      this.compacting = this.compact().finally(() => (this.compacting = undefined));
    }
  }

  private async compact(): Promise<void> {
    try {
      // Built inside rewrite(), once every earlier add() is on disk and in `pending`.
      await this.log.rewrite(() =>
        [...this.pending.values()].map((f) => {
          const r = new Uint8Array(f.length + 1);
          r[0] = ADD;
          r.set(f, 1);
          return r;
        }),
      );
      this.acked = 0;
    } catch (err) {
      this.logger.warn(`outbox compaction failed: ${(err as Error).message}`, { code: StorageError.code });
    }
  }

  async close(): Promise<void> {
    await this.compacting;
    await this.log.close();
  }
}
