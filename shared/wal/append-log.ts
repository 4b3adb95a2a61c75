/**
 * @module
 * A crash-safe append-only log file: the durable core of the edge outbox, the edge
 * metadata store and the local control plane's write-ahead log.
 *
 * Record layout: `u32 length | u32 crc32(payload) | payload` (big-endian). On open,
 * records are read until the first short or corrupt one, and the file is truncated
 * there: a torn tail is a write that was never acknowledged (append() resolves only
 * after fsync). Concurrent appends are group-committed: one write and one fsync per
 * batch. A failed write (ENOSPC, EIO) truncates the partial bytes away and rejects
 * every append of the batch with a StorageError, so no record is ever half-present.
 * `rewrite()` compacts: new content goes to a temp file, is fsynced, then renamed
 * over the log and the directory is fsynced. Appends are held while it runs (they land
 * in the new file afterwards), and the snapshot can be a function evaluated only once
 * every earlier append is on disk and its caller has seen it resolve, so a record can
 * never be written to the file that is about to be replaced and miss the snapshot.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, existsSync, statSync } from 'node:fs';
import { open, rename, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { StorageError, StoppedError } from '../errors/index.js';
import { crc32 } from './crc32.js';

const HEADER = 8;
/** Upper bound on one record: a corrupt length never causes a huge allocation. */
const MAX_RECORD = 64 * 1024 * 1024;

export interface AppendLogOptions {
  /** fsync after each batch. Default true; false only for benchmarks/tests of throughput. */
  fsync?: boolean;
}

interface PendingAppend {
  bytes: Uint8Array;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Encodes records into the log's framing. */
export function frameRecord(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.length);
  view.setUint32(4, crc32(payload));
  out.set(payload, HEADER);
  return out;
}

/** Reads every intact record of a log image; returns them and the byte length of the intact prefix. */
export function readRecords(data: Uint8Array): { records: Uint8Array[]; validBytes: number } {
  const records: Uint8Array[] = [];
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = 0;
  while (pos + HEADER <= data.length) {
    const len = view.getUint32(pos);
    if (len > MAX_RECORD || pos + HEADER + len > data.length) break;
    const crc = view.getUint32(pos + 4);
    if (crc32(data, pos + HEADER, pos + HEADER + len) !== crc) break;
    records.push(data.subarray(pos + HEADER, pos + HEADER + len));
    pos += HEADER + len;
  }
  return { records, validBytes: pos };
}

export class AppendLog {
  private queue: PendingAppend[] = [];
  private flushing = false;
  private rewriting = false;
  private closed = false;
  private idle: Promise<void> = Promise.resolve();

  private constructor(
    readonly path: string,
    private fh: FileHandle,
    private size: number,
    private readonly doFsync: boolean,
  ) {}

  /**
   * Opens (creating if needed) the log at `path` and returns it with its intact
   * records. A torn or corrupt tail is cut off; `truncatedBytes` says how much.
   */
  static async open(path: string, options: AppendLogOptions = {}): Promise<{ log: AppendLog; records: Uint8Array[]; truncatedBytes: number }> {
    try {
      mkdirSync(dirname(path), { recursive: true });
      // Only regular files hold records (a device such as /dev/full reads as empty).
      const data = existsSync(path) && statSync(path).isFile() ? readFileSync(path) : new Uint8Array(0);
      const { records, validBytes } = readRecords(data);
      const fh = await open(path, existsSync(path) ? 'r+' : 'w+');
      if (validBytes !== data.length) {
        await fh.truncate(validBytes);
        await fh.sync();
      }
      return { log: new AppendLog(path, fh, validBytes, options.fsync ?? true), records, truncatedBytes: data.length - validBytes };
    } catch (err) {
      throw new StorageError(`cannot open log ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Bytes in the log. */
  get byteLength(): number {
    return this.size;
  }

  /** Appends one record; resolves once it is on disk. */
  append(payload: Uint8Array): Promise<void> {
    return this.appendMany([payload]);
  }

  /** Appends records atomically as one batch member each; resolves once all are on disk. */
  appendMany(payloads: Uint8Array[]): Promise<void> {
    if (this.closed) return Promise.reject(new StoppedError(`log ${this.path} is closed`));
    const parts = payloads.map(frameRecord);
    const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    return new Promise((resolve, reject) => {
      this.queue.push({ bytes, resolve, reject });
      if (!this.flushing && !this.rewriting) this.idle = this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        const buf = batch.length === 1 ? batch[0]!.bytes : Buffer.concat(batch.map((b) => b.bytes));
        try {
          let written = 0;
          while (written < buf.length) {
            const { bytesWritten } = await this.fh.write(buf, written, buf.length - written, this.size + written);
            written += bytesWritten;
          }
          if (this.doFsync) await this.fh.sync();
          this.size += buf.length;
          for (const b of batch) b.resolve();
        } catch (err) {
          // Cut any partial bytes so the next batch starts on a record boundary.
          await this.fh.truncate(this.size).catch(() => {});
          const e = new StorageError(`write to ${this.path} failed: ${(err as Error).message}`, { cause: err });
          for (const b of batch) b.reject(e);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /**
   * Replaces the whole log with a snapshot (compaction), atomically: temp file + fsync +
   * rename + directory fsync. Appends issued before the call are written first; appends
   * issued during it wait and go to the new file. Pass a function to build the snapshot
   * at that exclusive moment (after earlier appends resolved and their callers ran).
   */
  async rewrite(snapshot: Uint8Array[] | (() => Uint8Array[])): Promise<void> {
    if (this.closed) throw new StoppedError(`log ${this.path} is closed`);
    if (this.rewriting) throw new StorageError(`log ${this.path} is already being compacted`);
    this.rewriting = true;
    try {
      while (this.flushing) await this.idle;
      // Let the callers of the last flushed appends run (they update the state the snapshot reads).
      await new Promise<void>((r) => setImmediate(r));
      const payloads = typeof snapshot === 'function' ? snapshot() : snapshot;
      const tmp = `${this.path}.tmp`;
      const body = Buffer.concat(payloads.map(frameRecord));
      try {
        const t = await open(tmp, 'w');
        try {
          await t.write(body, 0, body.length, 0);
          if (this.doFsync) await t.sync();
        } finally {
          await t.close();
        }
        await rename(tmp, this.path);
        if (this.doFsync) fsyncDir(dirname(this.path));
        const old = this.fh;
        this.fh = await open(this.path, 'r+');
        this.size = body.length;
        await old.close();
      } catch (err) {
        throw new StorageError(`compaction of ${this.path} failed: ${(err as Error).message}`, { cause: err });
      }
    } finally {
      this.rewriting = false;
      if (this.queue.length > 0 && !this.flushing) this.idle = this.flush();
    }
  }

  /** Waits for queued appends to finish (and for a running compaction). */
  async drain(): Promise<void> {
    while (this.flushing || this.rewriting || this.queue.length > 0) {
      if (this.rewriting && !this.flushing) await new Promise<void>((r) => setImmediate(r));
      else await this.idle;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.drain();
    this.closed = true;
    await this.fh.close();
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on directories; the rename itself is still atomic.
  }
}
