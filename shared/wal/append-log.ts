/**
 * @module
 * A crash-safe append-only log file: the durable core of the edge outbox, the edge
 * metadata store and the local control plane's write-ahead log.
 *
 * Record layout: `u32 length | u32 crc32(payload) | payload` (big-endian), 1 ≤ length ≤
 * MAX_RECORD_BYTES. On open, the file is streamed in chunks (never read whole, so its size
 * is not limited by what Node can hold in one buffer) and each intact record is handed to
 * `onRecord`; by default reading stops at the first short, corrupt or zero-length record and
 * the file is truncated there: a torn tail is a write that was never acknowledged (append()
 * resolves only after fsync), and a zero header is what a crash leaves in space the file
 * system allocated but never wrote. With `resync`, a bad record followed by intact ones is
 * damage in the middle (bit rot, a bad sector), not a torn tail: it is skipped, reported in
 * `corruptions`, and reading resumes at the next intact record (see `resync`); only a bad
 * region with no intact record after it is cut off as a tail. Concurrent appends are group-committed: one write and
 * one fsync per batch. A failed write (ENOSPC, EIO) truncates the partial bytes away and
 * rejects every append of the batch with a StorageError, so no record is ever
 * half-present. `rewrite()` compacts: the snapshot is streamed to a temp file in batches,
 * fsynced, then renamed over the log and the directory is fsynced. Appends are held while
 * it runs (they land in the new file afterwards), and the snapshot can be a function
 * evaluated only once every earlier append is on disk and its caller has seen it
 * resolve, so a record can never be written to the file that is about to be replaced and
 * miss the snapshot. `shouldCompact()` is the size policy callers use to decide when.
 *
 * At rest (issue 13): the logs hold what the stores hold, Secrets included, so the log and
 * rewrite()'s temp file are created mode 0600 (`fileMode`), an existing log with another mode is
 * narrowed to it at open, and the directories open() has to create are 0700 (`dirMode`).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, existsSync } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { StorageError, StoppedError } from '../errors/index.js';
import { crc32 } from './crc32.js';

const HEADER = 8;
/** Upper bound on one record: a corrupt length never causes a huge allocation, and a larger append is refused. */
export const MAX_RECORD_BYTES = 64 * 1024 * 1024;
/** Default read buffer of open() and write batch of rewrite(). */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

export interface AppendLogOptions {
  /** fsync after each batch. Default true; false only for benchmarks/tests of throughput. */
  fsync?: boolean;
  /**
   * Called once per intact record, in file order, while open() reads the log. The payload
   * is a fresh copy the callee owns (it may keep it, or views into it). Synchronous; if it
   * throws, open() fails with a StorageError and the file is left as it was.
   */
  onRecord?: (payload: Uint8Array) => void;
  /**
   * Size of open()'s read buffer. Default 1 MiB. A record bigger than it is read into its
   * own buffer (the payload onRecord receives), so open() holds at most this plus the
   * largest record (≤ MAX_RECORD_BYTES).
   */
  readChunkBytes?: number;
  /**
   * Opens the log's file handles (the log itself, and rewrite()'s temp file). Default
   * `fs/promises.open`. A test seam: a handle whose sync() is held or fails shows that
   * append() and rewrite() wait for fsync and what they do when it fails.
   */
  openFile?: OpenFile;
  /**
   * Mode of the log file and of rewrite()'s temp file. A new file is created with it; an existing
   * log with another mode is changed to it at open. Default 0o600 (owner only: the logs hold Secrets).
   */
  fileMode?: number;
  /** Mode of the directories open() creates for the log (existing ones are left as they are). Default 0o700. */
  dirMode?: number;
  /**
   * Skip damage in the middle of the log instead of cutting everything after it (default: off,
   * the log ends at the first bad record). At a bad record at offset X, the reader first tries
   * X + 8 + its declared length (the payload was damaged, the length is intact: exactly that
   * record is lost); failing that (the length itself was damaged) it scans forward byte by
   * byte for the first offset holding a frame whose length is plausible (1..maxRecordBytes,
   * within the file), whose successor header is plausible too (a cheap filter), and whose
   * CRC-32 matches. The framing has no sync marker, so this scan can be fooled by a valid
   * frame embedded in a payload (a log image stored as data): only a damaged length field
   * makes the reader scan at all, and the CRC makes a chance match ~2⁻³² per candidate.
   */
  resync?: {
    /**
     * Largest record the scan considers (bounds its cost: each candidate's CRC is computed
     * over at most this many bytes). Default MAX_RECORD_BYTES. Records longer than this are
     * still read normally; only a resynchronisation cannot land on one.
     */
    maxRecordBytes?: number;
  };
}

/** A damaged region that open() skipped (only with `resync`). */
export interface Corruption {
  /** File offset of the first bad byte (the start of the record that failed). */
  offset: number;
  /** Bytes skipped, up to the next intact record. */
  bytes: number;
  /** What was wrong with the record at `offset`. */
  reason: string;
}

/** How AppendLog opens a file: `fs/promises.open`'s signature, restricted to what it uses (a seam may ignore `mode`: AppendLog sets it on the handle too). */
export type OpenFile = (path: string, flags: 'r+' | 'w+' | 'w', mode?: number) => Promise<FileHandle>;

/** Default {@link AppendLogOptions.fileMode}. */
export const DEFAULT_FILE_MODE = 0o600;
/** Default {@link AppendLogOptions.dirMode}. */
export const DEFAULT_DIR_MODE = 0o700;

/** Sets `fh`'s mode to `mode` unless it has it already (the umask only narrows a new file's mode; an old file keeps any mode). */
async function ensureMode(fh: FileHandle, mode: number): Promise<void> {
  if (((await fh.stat()).mode & 0o7777) !== mode) await fh.chmod(mode);
}

export interface OpenedLog {
  log: AppendLog;
  /** Bytes cut off the end (torn or corrupt tail); 0 for a clean log. */
  truncatedBytes: number;
  /** Intact records read (and passed to onRecord). */
  recordCount: number;
  /** Size of the read buffer open() used: min(readChunkBytes, file size), whatever the file size. */
  readBufferBytes: number;
  /** Damaged regions skipped in the middle of the log, in file order (always empty without `resync`). */
  corruptions: Corruption[];
}

/** When to compact: see shouldCompact(). */
export interface CompactionPolicy {
  /** Never compact a log smaller than this. Default 16 MiB. */
  minBytes?: number;
  /** Compact once the log is this many times the size of what a snapshot would write. Default 2. */
  ratio?: number;
}

export const DEFAULT_COMPACTION_POLICY: Readonly<Required<CompactionPolicy>> = { minBytes: 16 * 1024 * 1024, ratio: 2 };

/**
 * The size policy for compaction: true when a log of `logBytes` holds much more than the
 * `liveBytes` a snapshot would write, i.e. `logBytes > max(minBytes, ratio × liveBytes)`.
 * With ratio 2 each compaction rewrites at most as many bytes as were appended since the
 * last one (write amplification ≤ 2), and the file stays within 2 × live + minBytes.
 */
export function shouldCompact(logBytes: number, liveBytes: number, policy: CompactionPolicy = {}): boolean {
  const minBytes = policy.minBytes ?? DEFAULT_COMPACTION_POLICY.minBytes;
  const ratio = policy.ratio ?? DEFAULT_COMPACTION_POLICY.ratio;
  return logBytes > Math.max(minBytes, ratio * liveBytes);
}

/** What rewrite() accepts: records, or a function returning them evaluated at the exclusive moment. */
export type Snapshot = Iterable<Uint8Array> | (() => Iterable<Uint8Array>);

interface PendingAppend {
  bytes: Uint8Array;
  resolve: () => void;
  reject: (e: unknown) => void;
}

function checkPayload(payload: Uint8Array, path: string): void {
  if (payload.length === 0) throw new StorageError(`log ${path}: empty records are not allowed (a zero header marks the end of the log)`);
  if (payload.length > MAX_RECORD_BYTES) throw new StorageError(`log ${path}: record of ${payload.length} bytes exceeds the ${MAX_RECORD_BYTES}-byte limit`);
}

function writeHeader(out: Uint8Array, at: number, payload: Uint8Array): void {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(at, payload.length);
  view.setUint32(at + 4, crc32(payload));
}

/** Encodes records into the log's framing. */
export function frameRecord(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + payload.length);
  writeHeader(out, 0, payload);
  out.set(payload, HEADER);
  return out;
}

/**
 * Reads every intact record of a log image already in memory (tests, tools); returns them
 * (views into `data`) and the byte length of the intact prefix. Same rules as open().
 */
export function readRecords(data: Uint8Array): { records: Uint8Array[]; validBytes: number } {
  const records: Uint8Array[] = [];
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = 0;
  while (pos + HEADER <= data.length) {
    const len = view.getUint32(pos);
    if (len === 0 || len > MAX_RECORD_BYTES || pos + HEADER + len > data.length) break;
    const crc = view.getUint32(pos + 4);
    if (crc32(data, pos + HEADER, pos + HEADER + len) !== crc) break;
    records.push(data.subarray(pos + HEADER, pos + HEADER + len));
    pos += HEADER + len;
  }
  return { records, validBytes: pos };
}

async function writeAll(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < buf.length) {
    const { bytesWritten } = await fh.write(buf, written, buf.length - written, position + written);
    written += bytesWritten;
  }
}

/**
 * Streams the records of an open file through one `chunk`-sized buffer. A record bigger
 * than the buffer is read straight into its own payload buffer (the one onRecord gets),
 * so memory is at most chunk + the largest record, whatever the file size. Returns the
 * intact prefix length (with `resync`: the end of the last intact record), the record
 * count, the size of the read buffer and the damaged regions skipped.
 */
async function scan(
  fh: FileHandle,
  fileSize: number,
  chunk: number,
  onRecord: ((p: Uint8Array) => void) | undefined,
  resync: { maxRecordBytes: number } | undefined,
): Promise<{ validBytes: number; recordCount: number; bufferBytes: number; corruptions: Corruption[] }> {
  const buf = Buffer.allocUnsafe(Math.min(chunk, Math.max(fileSize, HEADER)));
  let bufPos = 0; // file offset of buf[0]
  let start = 0; // next unparsed byte in buf
  let end = 0; // bytes of buf filled
  let recordCount = 0;
  let scratch: Buffer | undefined;
  const corruptions: Corruption[] = [];
  const readAt = (into: Uint8Array, offset: number, length: number, position: number) => readFully(fh, into, offset, length, position);
  /** Makes at least `n` unparsed bytes available in buf (n ≤ buf.length); false at end of file. */
  const ensure = async (n: number): Promise<boolean> => {
    if (end - start >= n) return true;
    // Keep only the unparsed bytes (less than one record) at the front.
    buf.copyWithin(0, start, end);
    bufPos += start;
    end -= start;
    start = 0;
    const want = Math.min(buf.length - end, fileSize - (bufPos + end));
    if (want > 0) end += await readAt(buf, end, want, bufPos + end);
    return end - start >= n;
  };
  for (;;) {
    if (!(await ensure(HEADER))) break; // end of file, or a header cut short by it
    const at = bufPos + start; // file offset of this record
    const len = buf.readUInt32BE(start);
    let bad: string | undefined;
    if (len === 0) bad = 'zero length';
    else if (len > MAX_RECORD_BYTES) bad = `length ${len} over the ${MAX_RECORD_BYTES}-byte limit`;
    else if (at + HEADER + len > fileSize) bad = `length ${len} runs past the end of the file`;
    if (bad === undefined) {
      const crc = buf.readUInt32BE(start + 4);
      let payload: Uint8Array | undefined;
      if (HEADER + len <= buf.length) {
        if (!(await ensure(HEADER + len))) bad = 'short read';
        else if (crc32(buf, start + HEADER, start + HEADER + len) !== crc) bad = 'checksum mismatch';
        else {
          payload = onRecord ? new Uint8Array(buf.subarray(start + HEADER, start + HEADER + len)) : buf;
          start += HEADER + len;
        }
      } else {
        // Bigger than the read buffer: what is buffered, then the rest straight from the file,
        // into the payload onRecord will own (or, without onRecord, one reused scratch buffer).
        if (!onRecord && (scratch?.length ?? 0) < len) scratch = Buffer.allocUnsafeSlow(len);
        const big = onRecord ? Buffer.allocUnsafeSlow(len) : scratch!.subarray(0, len);
        const have = Math.min(end - start - HEADER, len);
        buf.copy(big, 0, start + HEADER, start + HEADER + have);
        if ((await readAt(big, have, len - have, at + HEADER + have)) !== len - have) bad = 'short read';
        else if (crc32(big) !== crc) bad = 'checksum mismatch';
        else {
          payload = big;
          bufPos = at + HEADER + len;
          start = end = 0;
        }
      }
      if (payload) {
        if (onRecord) onRecord(payload);
        recordCount++;
        continue;
      }
    }
    // A bad record. Without resync, or with nothing intact after it, the log ends here (a torn tail).
    const next = resync ? await findNextRecord(fh, fileSize, at, len, resync.maxRecordBytes) : undefined;
    if (next === undefined) {
      bufPos = at;
      start = end = 0;
      break;
    }
    corruptions.push({ offset: at, bytes: next - at, reason: bad! });
    bufPos = next;
    start = end = 0;
  }
  return { validBytes: bufPos + start, recordCount, bufferBytes: buf.length, corruptions };
}

async function readFully(fh: FileHandle, into: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(into, offset + got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** Scan window of findNextRecord(). */
const RESYNC_WINDOW = 1024 * 1024;

/**
 * The offset of the first intact record after a bad one at `from` (declared length
 * `declaredLen`), or undefined if none: see AppendLogOptions.resync.
 */
async function findNextRecord(fh: FileHandle, fileSize: number, from: number, declaredLen: number, maxLen: number): Promise<number | undefined> {
  const head = Buffer.allocUnsafe(HEADER);
  let scratch: Buffer | undefined;
  const crcAt = async (y: number, len: number, crc: number): Promise<boolean> => {
    if ((scratch?.length ?? 0) < len) scratch = Buffer.allocUnsafeSlow(Math.max(len, 4096));
    const p = scratch!.subarray(0, len);
    return (await readFully(fh, p, 0, len, y + HEADER)) === len && crc32(p) === crc;
  };
  // The damage spared the length: the next record starts right after this one's declared extent.
  const y0 = from + HEADER + declaredLen;
  if (declaredLen >= 1 && declaredLen <= MAX_RECORD_BYTES && y0 + HEADER <= fileSize && (await readFully(fh, head, 0, HEADER, y0)) === HEADER) {
    const len = head.readUInt32BE(0);
    if (len >= 1 && len <= MAX_RECORD_BYTES && y0 + HEADER + len <= fileSize && (await crcAt(y0, len, head.readUInt32BE(4)))) return y0;
  }
  // The length was damaged too: scan for the next frame that checks out.
  const win = Buffer.allocUnsafe(Math.min(RESYNC_WINDOW, Math.max(HEADER, fileSize - from)));
  for (let wpos = from + 1; wpos + HEADER <= fileSize; ) {
    const n = await readFully(fh, win, 0, Math.min(win.length, fileSize - wpos), wpos);
    if (n < HEADER) break;
    const last = n - HEADER;
    for (let i = 0; i <= last; i++) {
      const len = win.readUInt32BE(i);
      if (len === 0 || len > maxLen) continue;
      const y = wpos + i;
      const z = y + HEADER + len;
      if (z > fileSize) continue;
      // Cheap filter before the CRC: what follows must look like a header too (or be the end).
      if (fileSize - z >= HEADER) {
        let succ: number;
        if (z - wpos + 4 <= n) succ = win.readUInt32BE(z - wpos);
        else {
          if ((await readFully(fh, head, 0, 4, z)) !== 4) continue;
          succ = head.readUInt32BE(0);
        }
        if (succ > maxLen) continue;
      }
      const crc = win.readUInt32BE(i + 4);
      const ok = z - wpos <= n ? crc32(win, i + HEADER, i + HEADER + len) === crc : await crcAt(y, len, crc);
      if (ok) return y;
    }
    wpos += last + 1;
  }
  return undefined;
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
    private readonly openFile: OpenFile,
    private readonly fileMode: number,
  ) {}

  /**
   * Opens (creating if needed) the log at `path`, streaming its intact records to
   * `options.onRecord` in order. A torn or corrupt tail is cut off; `truncatedBytes` says
   * how much. With `options.resync`, damage followed by intact records is skipped and
   * listed in `corruptions` (the file keeps those bytes: the caller decides whether to
   * rewrite it). Memory: one read buffer (see `readChunkBytes`), whatever the file size.
   */
  static async open(path: string, options: AppendLogOptions = {}): Promise<OpenedLog> {
    const chunk = Math.max(HEADER, Math.floor(options.readChunkBytes ?? DEFAULT_CHUNK_BYTES));
    const openFile = options.openFile ?? open;
    const fileMode = options.fileMode ?? DEFAULT_FILE_MODE;
    let fh: FileHandle | undefined;
    try {
      mkdirSync(dirname(path), { recursive: true, mode: options.dirMode ?? DEFAULT_DIR_MODE });
      fh = await openFile(path, existsSync(path) ? 'r+' : 'w+', fileMode);
      const st = await fh.stat();
      // A regular file only: a device such as /dev/full keeps its mode.
      if (st.isFile() && (st.mode & 0o7777) !== fileMode) await fh.chmod(fileMode);
      // Only regular files hold records (a device such as /dev/full reads as empty).
      const fileSize = st.isFile() ? st.size : 0;
      const resync = options.resync ? { maxRecordBytes: Math.max(1, Math.min(MAX_RECORD_BYTES, options.resync.maxRecordBytes ?? MAX_RECORD_BYTES)) } : undefined;
      const { validBytes, recordCount, bufferBytes, corruptions } = await scan(fh, fileSize, chunk, options.onRecord, resync);
      if (validBytes !== fileSize) {
        await fh.truncate(validBytes);
        await fh.sync();
      }
      return {
        log: new AppendLog(path, fh, validBytes, options.fsync ?? true, openFile, fileMode),
        truncatedBytes: fileSize - validBytes,
        recordCount,
        readBufferBytes: bufferBytes,
        corruptions,
      };
    } catch (err) {
      await fh?.close().catch(() => {});
      throw new StorageError(`cannot open log ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Bytes in the log. */
  get byteLength(): number {
    return this.size;
  }

  /** The size policy applied to this log: see the exported shouldCompact(). */
  shouldCompact(liveBytes: number, policy?: CompactionPolicy): boolean {
    return shouldCompact(this.size, liveBytes, policy);
  }

  /** Appends one record; resolves once it is on disk. */
  append(payload: Uint8Array): Promise<void> {
    return this.appendMany([payload]);
  }

  /** Appends records atomically as one batch member each; resolves once all are on disk. */
  appendMany(payloads: Uint8Array[]): Promise<void> {
    if (this.closed) return Promise.reject(new StoppedError(`log ${this.path} is closed`));
    try {
      for (const p of payloads) checkPayload(p, this.path);
    } catch (err) {
      return Promise.reject(err);
    }
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
          await writeAll(this.fh, buf, this.size);
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
   *
   * The records are consumed lazily and written in batches of about 1 MiB, so a generator
   * keeps memory at one batch. The iteration spans several awaits: what it reads must not
   * change meanwhile (copy references to immutable records first, as the stores do).
   * If the iterable throws or a write fails, the temp file is removed and the old log is
   * kept as it was. Resolves with the records and bytes written.
   */
  async rewrite(snapshot: Snapshot): Promise<{ records: number; bytes: number }> {
    if (this.closed) throw new StoppedError(`log ${this.path} is closed`);
    if (this.rewriting) throw new StorageError(`log ${this.path} is already being compacted`);
    this.rewriting = true;
    try {
      while (this.flushing) await this.idle;
      // Let the callers of the last flushed appends run (they update the state the snapshot reads).
      await new Promise<void>((r) => setImmediate(r));
      const tmp = `${this.path}.tmp`;
      let t: FileHandle | undefined;
      try {
        const payloads = typeof snapshot === 'function' ? snapshot() : snapshot;
        t = await this.openFile(tmp, 'w', this.fileMode);
        // A temp file a crash left behind keeps its old mode through 'w': set it before writing.
        await ensureMode(t, this.fileMode);
        const batch = Buffer.allocUnsafe(DEFAULT_CHUNK_BYTES);
        let used = 0;
        let pos = 0;
        let records = 0;
        const flushBatch = async (): Promise<void> => {
          if (used === 0) return;
          await writeAll(t!, batch.subarray(0, used), pos);
          pos += used;
          used = 0;
        };
        for (const p of payloads) {
          checkPayload(p, this.path);
          records++;
          if (used + HEADER + p.length > batch.length) await flushBatch();
          if (HEADER + p.length > batch.length) {
            // Bigger than a batch: its header, then the payload itself, without a copy.
            writeHeader(batch, 0, p);
            await writeAll(t, batch.subarray(0, HEADER), pos);
            await writeAll(t, p, pos + HEADER);
            pos += HEADER + p.length;
            continue;
          }
          writeHeader(batch, used, p);
          batch.set(p, used + HEADER);
          used += HEADER + p.length;
        }
        await flushBatch();
        if (this.doFsync) await t.sync();
        await t.close();
        t = undefined;
        await rename(tmp, this.path);
        if (this.doFsync) fsyncDir(dirname(this.path));
        const old = this.fh;
        this.fh = await this.openFile(this.path, 'r+', this.fileMode);
        this.size = pos;
        await old.close();
        return { records, bytes: pos };
      } catch (err) {
        if (t) {
          await t.close().catch(() => {});
          await unlink(tmp).catch(() => {});
        }
        if (err instanceof StorageError) throw err;
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
