/**
 * @module
 * Container logs in the CRI log format a kubelet reads (both runtimes write it, Edged reads it):
 * one record per line, `<timestamp> <stdout|stderr> <F|P> <content>\n`, the timestamp RFC 3339
 * with nanoseconds (written in UTC with 9 fraction digits), `F` a full line, `P` a part of a
 * longer one.
 *
 * {@link CriLogWriter} splits what a process writes at `\n`: every complete line is an `F`
 * record; a chunk's unfinished last line waits, per stream, for the rest, and is written as `P`
 * records of 16 KiB (kubelet's longest line) when it grows past that, or when the writer closes.
 * A complete line longer than 16 KiB is `P` records of 16 KiB then an `F` with the rest. A record
 * that would take the file past `maxBytes` first renames it to `<path>.1` (replacing the older
 * one) and starts a new file, so a container's log never holds more than two files of at most
 * `maxBytes` plus one record each. The file is created 0600 (its directory 0700 if missing) and
 * opened for append, so a restarted EdgeCore continues it; a last line a crash left torn is ended
 * first, so the next record starts on its own line. Writes are synchronous (one `write` per chunk
 * and file), so a record is on disk, in the page cache, before the next chunk is read. A write that
 * fails (disk full, directory removed) logs one warning and drops the output from then on: the
 * container keeps running without a log; the writer never throws.
 *
 * {@link readCriLog} reads `<path>.1` then `<path>`, joins `P` records to the `F` that ends them
 * (per stream), and applies `sinceTime`, then `tailLines`, then `limitBytes` (the first bytes of
 * the result, as a kubelet counts them) before writing `content\n` per line, with the line's
 * timestamp in front when `timestamps` is set. Lines that do not parse are skipped; a last line
 * without its `\n` (a write torn by a crash) is not shown; `P` records nothing ended (the writer
 * closed mid-line) are shown as a line of their own.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';

/** Longest content of one record (kubelet's and containerd's maximum log line, 16 KiB). */
export const CRI_MAX_LINE_BYTES = 16 * 1024;

export type LogStream = 'stdout' | 'stderr';

const NL = 0x0a;
const NEWLINE = Buffer.from('\n');

/** `time` as RFC 3339 in UTC with 9 fraction digits (Go's RFC3339NanoFixed, what `kubectl logs --timestamps` shows). */
function formatTime(time: Date): string {
  const iso = time.toISOString(); // 2024-01-02T03:04:05.678Z
  return `${iso.slice(0, -1)}000000Z`;
}

/** A timestamp as written by any CRI runtime, its fraction padded to 9 digits (zone kept as written). */
function fixedTimestamp(raw: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(raw);
  if (!m) return raw;
  return `${m[1]}.${(m[2] ?? '').padEnd(9, '0')}${m[3]}`;
}

const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)$/;

/** One parsed record of a CRI log file. */
export interface CriRecord {
  /** The timestamp as written. */
  timestamp: string;
  /** The same, as a Date (millisecond precision). */
  time: Date;
  stream: LogStream;
  /** `P`: this record is a part of a line the next record(s) of the stream continue. */
  partial: boolean;
  /** The line's bytes, without the newline. */
  content: Buffer;
}

/**
 * Parses one record (without its trailing newline; one is tolerated). Undefined for a line that is
 * not a CRI log record. The tag may carry more `:`-separated fields after `F`/`P` (the format's
 * forward-compatible rule); only the first is read.
 */
export function parseCriLine(line: Uint8Array | string): CriRecord | undefined {
  let buf = typeof line === 'string' ? Buffer.from(line, 'utf8') : Buffer.from(line.buffer, line.byteOffset, line.byteLength);
  if (buf.length > 0 && buf[buf.length - 1] === NL) buf = buf.subarray(0, buf.length - 1);
  const s1 = buf.indexOf(0x20);
  if (s1 < 0) return undefined;
  const timestamp = buf.toString('latin1', 0, s1);
  if (!TIMESTAMP.test(timestamp)) return undefined;
  const time = new Date(timestamp);
  if (Number.isNaN(time.getTime())) return undefined;
  const s2 = buf.indexOf(0x20, s1 + 1);
  if (s2 < 0) return undefined;
  const stream = buf.toString('latin1', s1 + 1, s2);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const s3 = buf.indexOf(0x20, s2 + 1);
  if (s3 < 0) return undefined;
  const tag = buf.toString('latin1', s2 + 1, s3).split(':')[0];
  if (tag !== 'F' && tag !== 'P') return undefined;
  return { timestamp, time, stream, partial: tag === 'P', content: buf.subarray(s3 + 1) };
}

/**
 * Writes a container's stdout and stderr as CRI log records to `path`, bounded at `maxBytes` per
 * file (one rotated file `<path>.1` kept). Never throws from {@link write} or {@link close}.
 */
export class CriLogWriter {
  private fd: number | undefined;
  private size = 0;
  private failed = false;
  private closed = false;
  /** The unfinished line of each stream, waiting for its `\n`. */
  private readonly pending: Record<LogStream, { parts: Buffer[]; length: number }> = { stdout: { parts: [], length: 0 }, stderr: { parts: [], length: 0 } };
  /** Records of the current write call, not yet written. */
  private batch: Buffer[] = [];
  private batchLength = 0;

  constructor(
    readonly path: string,
    private readonly maxBytes: number,
    private readonly log?: Logger,
  ) {
    if (!(maxBytes >= 1)) throw new TypeError(`CriLogWriter: maxBytes must be ≥ 1 (got ${maxBytes})`);
    this.guard(() => this.open());
  }

  /** Appends what `stream` wrote (any chunking); `time` stamps the records it completes (default now). */
  write(stream: LogStream, chunk: Uint8Array, time?: Date): void {
    if (this.closed || this.failed || chunk.length === 0) return;
    this.guard(() => {
      const ts = formatTime(time ?? new Date());
      const data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      const p = this.pending[stream];
      let start = 0;
      for (let nl = data.indexOf(NL, start); nl >= 0; nl = data.indexOf(NL, start)) {
        let line = data.subarray(start, nl);
        if (p.length > 0) {
          line = Buffer.concat([...p.parts, line]);
          p.parts = [];
          p.length = 0;
        }
        this.line(ts, stream, line);
        start = nl + 1;
      }
      if (start < data.length) {
        // Copied: the caller may reuse its buffer.
        p.parts.push(Buffer.from(data.subarray(start)));
        p.length += data.length - start;
        if (p.length > CRI_MAX_LINE_BYTES) {
          let rest = Buffer.concat(p.parts);
          while (rest.length > CRI_MAX_LINE_BYTES) {
            this.record(ts, stream, 'P', rest.subarray(0, CRI_MAX_LINE_BYTES));
            rest = rest.subarray(CRI_MAX_LINE_BYTES);
          }
          p.parts = rest.length > 0 ? [rest] : [];
          p.length = rest.length;
        }
      }
      this.flush();
    });
  }

  /** Writes the unfinished lines as `P` records and closes the file. Later writes are ignored. */
  close(time?: Date): void {
    if (this.closed) return;
    if (!this.failed) {
      this.guard(() => {
        const ts = formatTime(time ?? new Date());
        for (const stream of ['stdout', 'stderr'] as const) {
          const p = this.pending[stream];
          if (p.length > 0) this.record(ts, stream, 'P', Buffer.concat(p.parts));
          p.parts = [];
          p.length = 0;
        }
        this.flush();
      });
    }
    this.closed = true;
    this.closeFd();
  }

  /** A complete line: `F`, or `P` pieces of 16 KiB then `F` when it is longer. */
  private line(ts: string, stream: LogStream, line: Buffer): void {
    let rest = line;
    while (rest.length > CRI_MAX_LINE_BYTES) {
      this.record(ts, stream, 'P', rest.subarray(0, CRI_MAX_LINE_BYTES));
      rest = rest.subarray(CRI_MAX_LINE_BYTES);
    }
    this.record(ts, stream, 'F', rest);
  }

  private record(ts: string, stream: LogStream, tag: 'F' | 'P', content: Buffer): void {
    const rec = Buffer.concat([Buffer.from(`${ts} ${stream} ${tag} `, 'latin1'), content, NEWLINE]);
    const used = this.size + this.batchLength;
    if (used > 0 && used + rec.length > this.maxBytes) {
      this.flush();
      this.rotate();
    }
    this.batch.push(rec);
    this.batchLength += rec.length;
  }

  private flush(): void {
    if (this.batchLength === 0) return;
    const data = this.batch.length === 1 ? this.batch[0]! : Buffer.concat(this.batch, this.batchLength);
    this.batch = [];
    this.batchLength = 0;
    if (this.fd === undefined) this.open();
    const fd = this.fd!;
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off);
    this.size += data.length;
  }

  private rotate(): void {
    this.closeFd();
    renameSync(this.path, `${this.path}.1`);
    this.open();
  }

  private open(): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const fd = openSync(this.path, 'a+', 0o600);
    this.fd = fd;
    this.size = fstatSync(fd).size;
    if (this.size > 0) {
      // A record torn by a crash: end it, so the next record is a line of its own (the reader skips the torn one).
      const last = Buffer.alloc(1);
      readSync(fd, last, 0, 1, this.size - 1);
      if (last[0] !== NL) {
        writeSync(fd, NEWLINE);
        this.size++;
      }
    }
  }

  /** Runs `fn`; the first failure logs one line and turns the writer into a sink. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.failed = true;
      this.batch = [];
      this.batchLength = 0;
      for (const p of Object.values(this.pending)) {
        p.parts = [];
        p.length = 0;
      }
      this.closeFd();
      this.log?.warn(`container log ${this.path} cannot be written, its output is dropped from now on: ${errorMessage(err)}`, { path: this.path });
    }
  }

  private closeFd(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // already closed: nothing to release
    }
    this.fd = undefined;
  }
}

/** Options of {@link readCriLog} (kubelet's PodLogOptions subset). `previous` is Edged's: it picks the path. */
export interface ReadLogOptions {
  /** Only the last N lines (after sinceTime). Negative or unset: all. */
  tailLines?: number;
  /** Only lines stamped at or after this time. */
  sinceTime?: Date;
  /** Each line prefixed with its timestamp (RFC 3339, 9 fraction digits) and a space. */
  timestamps?: boolean;
  /** At most this many bytes of the output, from its start (kubelet's rule: the output is cut, possibly mid-line). */
  limitBytes?: number;
  previous?: never;
}

interface LogLine {
  timestamp: string;
  time: Date;
  content: Buffer;
}

function readIfExists(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Cuts `buf` to at most `max` bytes without splitting a UTF-8 character. */
function cutUtf8(buf: Buffer, max: number): Buffer {
  if (buf.length <= max) return buf;
  let end = max;
  // Back off continuation bytes (10xxxxxx) to the start of the character that does not fit.
  let i = end;
  while (i > 0 && i > end - 4 && ((buf[i] ?? 0) & 0xc0) === 0x80) i--;
  if (i < end && ((buf[i] ?? 0) & 0xc0) === 0xc0) end = i;
  return buf.subarray(0, end);
}

/**
 * Reads a container's log (`<path>.1`, then `<path>`) as `kubectl logs` shows it. Missing files
 * read as empty; other read errors reject.
 */
export async function readCriLog(path: string, options: ReadLogOptions = {}): Promise<string> {
  const lines: LogLine[] = [];
  const open: Partial<Record<LogStream, { timestamp: string; time: Date; parts: Buffer[] }>> = {};
  for (const file of [`${path}.1`, path]) {
    const data = readIfExists(file);
    if (!data) continue;
    let start = 0;
    // Only complete lines: what follows the last `\n` is a record torn by a crash (or being written).
    for (let nl = data.indexOf(NL, start); nl >= 0; nl = data.indexOf(NL, start)) {
      const rec = parseCriLine(data.subarray(start, nl));
      start = nl + 1;
      if (!rec) continue;
      const cur = open[rec.stream];
      if (rec.partial) {
        if (cur) cur.parts.push(rec.content);
        else open[rec.stream] = { timestamp: rec.timestamp, time: rec.time, parts: [rec.content] };
        continue;
      }
      if (cur) {
        lines.push({ timestamp: cur.timestamp, time: cur.time, content: Buffer.concat([...cur.parts, rec.content]) });
        delete open[rec.stream];
      } else lines.push({ timestamp: rec.timestamp, time: rec.time, content: rec.content });
    }
  }
  // Lines nothing ended (the writer closed mid-line), in the order they started.
  const unended = Object.values(open).sort((a, b) => a.time.getTime() - b.time.getTime());
  for (const u of unended) lines.push({ timestamp: u.timestamp, time: u.time, content: Buffer.concat(u.parts) });

  let selected = lines;
  const since = options.sinceTime;
  if (since) selected = selected.filter((l) => l.time.getTime() >= since.getTime());
  const tail = options.tailLines;
  if (tail !== undefined && tail >= 0) selected = tail === 0 ? [] : selected.slice(-tail);
  const parts: Buffer[] = [];
  for (const l of selected) {
    if (options.timestamps) parts.push(Buffer.from(`${fixedTimestamp(l.timestamp)} `, 'latin1'));
    parts.push(l.content, NEWLINE);
  }
  let out: Buffer = Buffer.concat(parts);
  if (options.limitBytes !== undefined && options.limitBytes >= 0) out = cutUtf8(out, options.limitBytes);
  return out.toString('utf8');
}
