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
 *
 * {@link openCriLogReader} gives the same output incrementally (kubectl logs through EdgeStream):
 * chunks of at most 16 KiB (full ones, a shorter one only when it caught up with the file or
 * ended), the next block of the file (64 KiB, 256 KiB once behind) read only when the consumer
 * asks, so a slow consumer never makes it hold the file. A tail is found by reading the files as
 * they were at the start backwards from their end, as a kubelet does: its cost is the last lines,
 * not the files (the first records of its lines are looked for up to 1 MiB before it; a line
 * left unended by `P` records of a stream with no record in that reach is not in the tail, and a
 * follow shows it from its next record). A joined line longer than 1 MiB is written out as it
 * comes rather than held (the only other case where the output can differ from readCriLog's: a
 * record of the other stream arriving inside it); a record longer than 1 MiB is skipped.
 * {@link followCriLog} then goes on with what is appended (watch of the directory, poll
 * fallback) across rotations, until the run is over: behind the writer, it reads the file it has
 * open to its end, then the one after it (`<path>.1` after two rotations), so only a file rotated
 * away twice before it was opened is lost.
 *
 * The reader works on latin1 text (a character per byte): finding a record is a string
 * `indexOf`, a record of the same write as the one before costs a `startsWith` of its head, a
 * line one slice; reads and opens are synchronous (the page cache: the writer just wrote it), the
 * event loop getting a turn every MiB read. EdgeCore runs JavaScript interpreted: a Buffer's
 * methods cost a JavaScript wrapper each there, a string's do not. The writer builds its records
 * as latin1 text too.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, statSync, watch, writeSync, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
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
 * The head of a CRI record, `<timestamp> <stream> <tag> `, parsed from latin1 text (a character
 * per byte, so positions are byte offsets). One is kept per file being read: it remembers the last
 * head it parsed, so each further record of the same write (same timestamp, stream and tag) costs
 * one `startsWith`. The tag may carry more `:`-separated fields after `F`/`P` (the format's
 * forward-compatible rule); only the first is read.
 */
class RecordHead {
  /** The last head parsed, as written ('' before the first). */
  prefix = '';
  timestamp = '';
  /** The timestamp, ms since the epoch. */
  time = 0;
  stream: LogStream = 'stdout';
  partial = false;

  /** The record at `text[s, nl)` (`nl`: its `\n`, or the text's end): where its content starts; -1 when it is not a record (the fields keep the last head). */
  parse(text: string, s: number, nl: number): number {
    const prefix = this.prefix;
    // No `\n` in a head: a match lies inside the record.
    if (prefix !== '' && text.startsWith(prefix, s)) return s + prefix.length;
    return this.parseNew(text, s, nl);
  }

  /** As {@link parse}, without looking at the last head first. */
  parseNew(text: string, s: number, nl: number): number {
    const s1 = text.indexOf(' ', s);
    if (s1 < 0 || s1 >= nl) return -1;
    let stream: LogStream;
    if (text.startsWith('stdout ', s1 + 1)) stream = 'stdout';
    else if (text.startsWith('stderr ', s1 + 1)) stream = 'stderr';
    else return -1;
    const t = s1 + 8;
    if (t + 1 >= nl) return -1;
    const tag = text.charCodeAt(t);
    if (tag !== 0x46 /* F */ && tag !== 0x50 /* P */) return -1;
    let s3 = t + 1;
    const after = text.charCodeAt(s3);
    if (after === 0x3a /* : */) {
      s3 = text.indexOf(' ', t + 2);
      if (s3 < 0 || s3 >= nl) return -1;
    } else if (after !== 0x20) return -1;
    const timestamp = text.slice(s, s1);
    if (!TIMESTAMP.test(timestamp)) return -1;
    const time = Date.parse(timestamp);
    if (Number.isNaN(time)) return -1;
    this.prefix = text.slice(s, s3 + 1);
    this.timestamp = timestamp;
    this.time = time;
    this.stream = stream;
    this.partial = tag === 0x50;
    return s3 + 1;
  }
}

/** The end of `text.slice(s, s + max)` cut so that it does not split a UTF-8 character (latin1 text: one character per byte); as cutUtf8. */
function utf8End(text: string, s: number, max: number): number {
  let end = s + max;
  if (end >= text.length) return text.length;
  // Back off continuation bytes (10xxxxxx) to the start of the character that does not fit.
  let i = end;
  while (i > s && i > end - 4 && (text.charCodeAt(i) & 0xc0) === 0x80) i--;
  if (i < end && (text.charCodeAt(i) & 0xc0) === 0xc0) end = i;
  return end;
}

/**
 * Parses one record (without its trailing newline; one is tolerated). Undefined for a line that is
 * not a CRI log record. The tag may carry more `:`-separated fields after `F`/`P` (the format's
 * forward-compatible rule); only the first is read.
 */
export function parseCriLine(line: Uint8Array | string): CriRecord | undefined {
  let buf = typeof line === 'string' ? Buffer.from(line, 'utf8') : Buffer.from(line.buffer, line.byteOffset, line.byteLength);
  if (buf.length > 0 && buf[buf.length - 1] === NL) buf = buf.subarray(0, buf.length - 1);
  const head = new RecordHead();
  const text = buf.toString('latin1');
  const cs = head.parseNew(text, 0, text.length);
  if (cs < 0) return undefined;
  return { timestamp: head.timestamp, time: new Date(head.time), stream: head.stream, partial: head.partial, content: buf.subarray(cs) };
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
  /** Records of the current write call, not yet written (latin1 text: heads and contents). */
  private batch: string[] = [];
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
      // Latin1 text (a character per byte, so lengths are bytes): `indexOf` and `slice` of a string cost far less than a Buffer's, interpreted.
      const text = data.toString('latin1');
      const p = this.pending[stream];
      const head = `${ts} ${stream} F `;
      let start = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
        if (p.length > 0) {
          const line = Buffer.concat(p.parts).toString('latin1') + text.slice(start, nl);
          p.parts = [];
          p.length = 0;
          this.line(ts, stream, line);
        } else if (nl - start <= CRI_MAX_LINE_BYTES) {
          // The common case: one record, the line and its newline one slice of the chunk.
          this.record(head, text.slice(start, nl + 1));
        } else this.line(ts, stream, text.slice(start, nl));
        start = nl + 1;
      }
      if (start < text.length) {
        // Copied: the caller may reuse its buffer.
        p.parts.push(Buffer.from(data.subarray(start)));
        p.length += text.length - start;
        if (p.length > CRI_MAX_LINE_BYTES) {
          let rest = Buffer.concat(p.parts).toString('latin1');
          while (rest.length > CRI_MAX_LINE_BYTES) {
            this.record(`${ts} ${stream} P `, `${rest.slice(0, CRI_MAX_LINE_BYTES)}\n`);
            rest = rest.slice(CRI_MAX_LINE_BYTES);
          }
          p.parts = rest.length > 0 ? [Buffer.from(rest, 'latin1')] : [];
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
          if (p.length > 0) this.record(`${ts} ${stream} P `, `${Buffer.concat(p.parts).toString('latin1')}\n`);
          p.parts = [];
          p.length = 0;
        }
        this.flush();
      });
    }
    this.closed = true;
    this.closeFd();
  }

  /** A complete line (latin1 text, without its newline): `F`, or `P` pieces of 16 KiB then `F` when it is longer. */
  private line(ts: string, stream: LogStream, line: string): void {
    let rest = line;
    while (rest.length > CRI_MAX_LINE_BYTES) {
      this.record(`${ts} ${stream} P `, `${rest.slice(0, CRI_MAX_LINE_BYTES)}\n`);
      rest = rest.slice(CRI_MAX_LINE_BYTES);
    }
    this.record(`${ts} ${stream} F `, `${rest}\n`);
  }

  /** A record: its head (`<timestamp> <stream> <tag> `) and its content with the newline, latin1 text. */
  private record(head: string, content: string): void {
    const length = head.length + content.length;
    const used = this.size + this.batchLength;
    if (used > 0 && used + length > this.maxBytes) {
      this.flush();
      this.rotate();
    }
    this.batch.push(head, content);
    this.batchLength += length;
  }

  private flush(): void {
    if (this.batchLength === 0) return;
    const data = Buffer.from(this.batch.join(''), 'latin1');
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

// ---- incremental reading (kubectl logs through EdgeStream) ----------------------------------

/** Options of {@link openCriLogReader} and {@link followCriLog}: as {@link readCriLog}'s. */
export interface CriLogReaderOptions {
  /** Only the last N lines (after sinceTime). Negative or unset: all. With follow: the last N, then what is appended. */
  tailLines?: number;
  sinceTime?: Date;
  timestamps?: boolean;
  /** At most this many bytes in all (a follow ends once it sent them). */
  limitBytes?: number;
  /** Largest chunk yielded, bytes (default 16 KiB). */
  chunkBytes?: number;
}

/** Options of {@link followCriLog}. */
export interface FollowCriLogOptions extends CriLogReaderOptions {
  /**
   * Asked each time the reader caught up with the file (at least every `pollMs`): false = the
   * writer's run is over, so the reader reads what was written since, then ends. Default: always true
   * (only {@link CriLogReader.finish} or {@link CriLogReader.close} end it).
   */
  running?: () => boolean;
  /** How often the files are looked at without a change event, ms (default 1000). */
  pollMs?: number;
  /** Debug lines (the watch could not be set up: polling only). */
  log?: Logger;
}

/** Bytes read from a file at a time, at first. */
const READ_BLOCK = 64 * 1024;
/** … and once a read filled its buffer (the reader is behind the writer): fewer reads and wake-ups per MiB. */
const READ_BLOCK_MAX = 256 * 1024;
/** How far before a tail's first line its lines' first records are looked for (a line of `P` records can begin there). */
const TAIL_LOOKBACK = 1024 * 1024;
/** Bytes read synchronously before the event loop gets a turn. */
const READ_TURN = 1024 * 1024;
/** A joined line (P records) is held up to this size; past it, what is held is written out and the line continues. */
const JOIN_MAX = 1024 * 1024;
/** A record longer than this is skipped, in every pass (no CRI writer writes one; it would have to be held whole). */
const RECORD_MAX = 1024 * 1024;

/** One logical line, as the scanner found it (its first record's timestamp and position). */
interface ScanLine {
  timestamp: string;
  time: number;
  /** Where its first record starts, in the reader's positions ({@link OpenLog.base}). */
  start: number;
  /** Decided by the sink at the line's first segment. */
  show: boolean;
}

/** Where a scanner's lines go (the reader: its filters and output). */
interface ScanSink {
  /** A line's first segment came: whether the line is shown (sinceTime, tail). */
  shows(time: number, start: number): boolean;
  /** What goes in front of a shown line: '' or its timestamp and a space. */
  lead(timestamp: string): string;
  /** Output (latin1 text: one character per byte). */
  put(text: string): void;
}

interface OpenLine {
  line: ScanLine;
  /** Copies (the text of a block is not kept for a line that may wait long). */
  parts: Buffer[];
  length: number;
  /** Its first segment was written out already (a line past JOIN_MAX). */
  started: boolean;
}

/**
 * readCriLog's parser, fed block by block as latin1 text (a character per byte, so positions are
 * byte offsets): a record is found with `indexOf('\n')`, and one of the same write as the record
 * before (same timestamp, stream and tag) costs a `startsWith` of that head; a whole line is one
 * slice of the block, its content and newline.
 */
class CriScanner {
  /** The start of a record the next block ends. */
  private rest = '';
  private restAt = 0;
  /** Inside a record longer than RECORD_MAX: skipped up to its `\n`. */
  private skipping = false;
  private readonly head = new RecordHead();
  private readonly open: Partial<Record<LogStream, OpenLine>> = {};

  constructor(private readonly sink: ScanSink) {}

  /** The next bytes of the current file, as latin1 text; `at` is the position of its first byte. */
  feed(text: string, at: number): void {
    let s = 0;
    if (this.skipping || this.rest !== '') {
      const nl = text.indexOf('\n');
      if (nl < 0) {
        if (!this.skipping) this.keep(this.rest + text, this.restAt);
        return;
      }
      if (!this.skipping && this.rest.length + nl <= RECORD_MAX) {
        const record = this.rest + text.slice(0, nl + 1);
        this.record(record, 0, record.length - 1, this.restAt);
      }
      this.rest = '';
      this.skipping = false;
      s = nl + 1;
    }
    // The loop of `record`, its common case inlined: one call less per line is what counts interpreted.
    const head = this.head;
    const sink = this.sink;
    let prefix = head.prefix;
    for (let nl = text.indexOf('\n', s); nl >= 0; nl = text.indexOf('\n', s)) {
      const cs = prefix !== '' && text.startsWith(prefix, s) ? s + prefix.length : head.parseNew(text, s, nl);
      if (cs >= 0) {
        prefix = head.prefix;
        if (!head.partial && this.open[head.stream] === undefined) {
          if (sink.shows(head.time, at + s)) {
            const lead = sink.lead(head.timestamp);
            sink.put(lead === '' ? text.slice(cs, nl + 1) : lead + text.slice(cs, nl + 1));
          }
        } else this.joined(text, cs, nl, at + s);
      }
      s = nl + 1;
    }
    if (s < text.length) this.keep(s === 0 ? text : text.slice(s), at + s);
  }

  /** The file ended: what follows its last `\n` is a record torn by a crash, dropped (as readCriLog does). */
  endFile(): void {
    this.rest = '';
    this.skipping = false;
  }

  /** No more files: the lines nothing ended (the writer closed mid-line), in the order they started. */
  endAll(): void {
    this.endFile();
    const unended = Object.values(this.open).sort((a, b) => a.line.time - b.line.time);
    for (const k of Object.keys(this.open) as LogStream[]) delete this.open[k];
    for (const u of unended) this.emit(u.line, Buffer.concat(u.parts).toString('latin1'), !u.started, true);
  }

  private keep(text: string, at: number): void {
    if (text.length > RECORD_MAX) {
      this.rest = '';
      this.skipping = true;
      return;
    }
    this.rest = text;
    this.restAt = at;
  }

  /** The record at `text[s, nl)` (`nl` its `\n`), starting at position `at`. */
  private record(text: string, s: number, nl: number, at: number): void {
    const head = this.head;
    const cs = head.parse(text, s, nl);
    if (cs < 0) return;
    if (!head.partial && this.open[head.stream] === undefined) {
      if (this.sink.shows(head.time, at)) {
        const lead = this.sink.lead(head.timestamp);
        this.sink.put(lead === '' ? text.slice(cs, nl + 1) : lead + text.slice(cs, nl + 1));
      }
    } else this.joined(text, cs, nl, at);
  }

  /** A `P` record (content `text[cs, nl)`), or the `F` that ends the stream's open line; the head's fields are the record's. */
  private joined(text: string, cs: number, nl: number, at: number): void {
    const head = this.head;
    const stream = head.stream;
    const cur = this.open[stream];
    const content = text.slice(cs, nl);
    if (head.partial) {
      const part = Buffer.from(content, 'latin1');
      if (!cur) {
        this.open[stream] = { line: { timestamp: head.timestamp, time: head.time, start: at, show: false }, parts: [part], length: part.length, started: false };
        return;
      }
      cur.parts.push(part);
      cur.length += part.length;
      if (cur.length >= JOIN_MAX) {
        this.emit(cur.line, Buffer.concat(cur.parts).toString('latin1'), !cur.started, false);
        cur.started = true;
        cur.parts = [];
        cur.length = 0;
      }
      return;
    }
    // cur is set: a whole line took the inlined path.
    delete this.open[stream];
    if (cur) this.emit(cur.line, Buffer.concat(cur.parts).toString('latin1') + content, !cur.started, true);
  }

  private emit(line: ScanLine, content: string, first: boolean, last: boolean): void {
    if (first) line.show = this.sink.shows(line.time, line.start);
    if (!line.show) return;
    if (first) {
      const lead = this.sink.lead(line.timestamp);
      if (lead !== '') this.sink.put(lead);
    }
    this.sink.put(last ? `${content}\n` : content);
  }
}

interface OpenLog {
  fd: number;
  ino: number;
  pos: number;
  /** Size when the reader started (the snapshot a tail is found in). */
  size: number;
  /**
   * The position of its first byte in the reader's snapshot, `<path>.1` then `<path>` (a line's
   * start, for the tail); Infinity for a file that came after the snapshot.
   */
  base: number;
}

/** A line the backward pass of a tail found. */
interface TailLine {
  /** Where its first record starts (so far: the scan goes backwards). */
  first: number;
  time: number;
  /** Its first record was found (the record before it of its stream is an `F`, or the snapshot's start). */
  done: boolean;
}

/**
 * A container's log read incrementally, chunk by chunk, as `kubectl logs` prints it (the output
 * of {@link readCriLog} for the same files and options): what is read waits for the consumer, so
 * a slow consumer holds the reader at one block (at most 256 KiB) of the file. Made by
 * {@link openCriLogReader} (what the files hold now) or {@link followCriLog} (then what is
 * appended). Iterate it with `for await`; {@link close} stops it at once and releases its file
 * handles, watch and timer.
 */
export class CriLogReader implements AsyncIterableIterator<Buffer>, ScanSink {
  private readonly gen: AsyncGenerator<Buffer, void, undefined>;
  private readonly fds = new Set<number>();
  /** Bytes read since the event loop last had a turn. */
  private sinceTurn = 0;
  /** Output not yet cut into chunks (latin1 text), and the chunks cut. */
  private parts: string[] = [];
  private partsLength = 0;
  private readonly ready: Buffer[] = [];
  private closed = false;
  private finishing = false;
  private limitReached = false;
  private emitted = 0;
  private readonly since: number | undefined;
  /** A tail: the starts of the lines of the snapshot it shows (undefined: no tail, or all lines). */
  private tailStarts: Set<number> | undefined;
  /** The end of the snapshot, in {@link OpenLog.base} positions: a line starting there or later is new. */
  private snapEnd = 0;
  private leadFor = '';
  private leadText = '';
  /** The read buffer (what is kept of a block is copied out of it: one buffer for the reader's life). */
  private block: Buffer | undefined;
  private watcher: FSWatcher | undefined;
  private watchFailed = false;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private changed = false;
  private readonly chunkBytes: number;

  /** @internal Use {@link openCriLogReader} or {@link followCriLog}. */
  constructor(
    readonly path: string,
    private readonly options: FollowCriLogOptions,
    private readonly follow: boolean,
  ) {
    this.chunkBytes = Math.max(16, options.chunkBytes ?? CRI_MAX_LINE_BYTES);
    this.since = options.sinceTime?.getTime();
    this.gen = this.generate();
  }

  /** Bytes yielded so far. */
  get bytes(): number {
    return this.emitted;
  }

  /** Open file handles (0 once it ended or was closed). */
  get openFiles(): number {
    return this.fds.size;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<Buffer, void>> {
    return this.gen.next();
  }

  async return(): Promise<IteratorResult<Buffer, void>> {
    await this.close();
    return { done: true, value: undefined };
  }

  /** Follow: ends once what is written now was read (as if `running()` turned false). */
  finish(): void {
    this.finishing = true;
    this.poke();
  }

  /** Stops now: no more chunks; file handles, watch and timer released. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopWaiting();
    this.parts = [];
    this.partsLength = 0;
    this.ready.length = 0;
    this.releaseAll();
  }

  /** @internal (ScanSink) */
  shows(time: number, start: number): boolean {
    if (this.since !== undefined && time < this.since) return false;
    const tail = this.tailStarts;
    return tail === undefined || start >= this.snapEnd || tail.has(start);
  }

  /** @internal (ScanSink) */
  lead(timestamp: string): string {
    if (!this.options.timestamps) return '';
    if (timestamp !== this.leadFor) {
      this.leadFor = timestamp;
      this.leadText = `${fixedTimestamp(timestamp)} `;
    }
    return this.leadText;
  }

  /** @internal (ScanSink) Output, cut at limitBytes (not splitting a UTF-8 character). */
  put(text: string): void {
    if (this.limitReached || text.length === 0) return;
    const limit = this.options.limitBytes;
    if (limit !== undefined && limit >= 0) {
      const room = limit - this.emitted;
      if (text.length >= room) {
        text = text.slice(0, utf8End(text, 0, room));
        this.limitReached = true;
      }
    }
    if (text.length === 0) return;
    this.parts.push(text);
    this.partsLength += text.length;
    this.emitted += text.length;
  }

  private async *generate(): AsyncGenerator<Buffer, void, undefined> {
    try {
      // Watching from the start: a change while the existing content is read is not missed.
      if (this.follow) this.startWatching();
      const { older, current } = this.openSnapshot();
      if (older) older.base = 0;
      if (current) current.base = older?.size ?? 0;
      this.snapEnd = current ? current.base + current.size : (older?.size ?? 0);
      let from = 0;
      const tail = this.options.tailLines;
      if (tail !== undefined && tail >= 0) {
        const found = await this.findTail(older, current, tail);
        if (!found) return;
        from = found.from;
        this.tailStarts = found.starts;
      }
      for (const f of [older, current]) if (f) f.pos = Math.min(f.size, Math.max(0, from - f.base));
      const scanner = new CriScanner(this);
      // A follow reads `<path>` in its loop below (it may grow, or be rotated).
      let cur = this.follow ? current : undefined;
      for (const f of [older, current]) {
        if (!f || f === cur) continue;
        // Without follow, only what was there at the start (what a tail was found in).
        yield* this.readFile(f, scanner, this.follow ? undefined : f.size);
        if (this.done()) return;
        scanner.endFile();
        this.release(f.fd);
      }
      if (!this.follow) {
        scanner.endAll();
        yield* this.flush();
        return;
      }
      let last = false;
      for (;;) {
        if (cur) yield* this.readFile(cur, scanner, undefined);
        if (this.done()) return;
        // Caught up: what waits for a full chunk goes now.
        yield* this.flush();
        if (this.closed) return;
        // Rotated (`<path>` renamed to `<path>.1`, a new `<path>`): the old file, still open, is read to its end, then the one after it.
        const ino = this.inode(this.path);
        if (this.closed) return;
        if (ino !== undefined && ino !== cur?.ino) {
          if (cur) {
            yield* this.readFile(cur, scanner, undefined);
            if (this.done()) return;
            scanner.endFile();
            // Looked for while the old file is still open: its inode number cannot be a new file's.
            const next = this.successor(cur);
            this.release(cur.fd);
            cur = next;
          } else cur = this.openLog(this.path, Number.POSITIVE_INFINITY);
          if (this.closed) return;
          continue;
        }
        if (last) break;
        if (this.finishing || !(this.options.running?.() ?? true)) {
          // Once more: what was written between the last read and the check.
          last = true;
          continue;
        }
        await this.waitForChange();
        if (this.closed) return;
      }
      scanner.endAll();
      yield* this.flush();
    } catch (err) {
      if (!this.closed) throw err;
    } finally {
      this.stopWaiting();
      this.releaseAll();
    }
  }

  private done(): boolean {
    return this.closed || this.limitReached;
  }

  /** `<path>.1` and `<path>` as they are now (a rotation between the two opens is noticed and undone). */
  private openSnapshot(): { older: OpenLog | undefined; current: OpenLog | undefined } {
    let current = this.openLog(this.path, 0);
    let older = this.openLog(`${this.path}.1`, 0);
    if (current && older && current.ino === older.ino) {
      // Rotated between the two (by another process: a runtime's log writer): what we opened as current is `.1` now.
      this.release(older.fd);
      older = current;
      current = this.openLog(this.path, 0);
    }
    return { older, current };
  }

  /**
   * The file that came after `cur` once `<path>` is another file: `<path>` after one rotation;
   * `<path>.1` after two or more (then `cur` is gone, `<path>.1` replaced it; the files rotated
   * away in between, after three or more, are lost). Looked for while `cur` is still open, so its
   * inode number is not a new file's. Assumes the writer's rotation: `<path>` renamed to
   * `<path>.1`, never an older file put back.
   */
  private successor(cur: OpenLog): OpenLog | undefined {
    for (;;) {
      const older = this.openLog(`${this.path}.1`, Number.POSITIVE_INFINITY);
      if (older && older.ino !== cur.ino) return older;
      if (older) this.release(older.fd);
      const next = this.openLog(this.path, Number.POSITIVE_INFINITY);
      if (!next) return undefined;
      const now = this.inode(`${this.path}.1`);
      // `<path>.1` still `cur` (or the file just opened, rotated since): `next` came right after `cur`.
      if (now === undefined || now === cur.ino || now === next.ino) return next;
      // Rotated again between the two opens: `<path>.1` now holds the file after `cur`.
      this.release(next.fd);
    }
  }

  private openLog(path: string, base: number): OpenLog | undefined {
    if (this.closed) return undefined;
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    this.fds.add(fd);
    try {
      const st = fstatSync(fd);
      return { fd, ino: st.ino, pos: 0, size: st.size, base };
    } catch (err) {
      this.release(fd);
      throw err;
    }
  }

  private inode(path: string): number | undefined {
    return statSync(path, { throwIfNoEntry: false })?.ino;
  }

  private release(fd: number): void {
    if (!this.fds.delete(fd)) return;
    try {
      closeSync(fd);
    } catch {
      // already closed: nothing to release
    }
  }

  private releaseAll(): void {
    for (const fd of [...this.fds]) this.release(fd);
  }

  /**
   * A synchronous read (a log the writer just wrote is in the page cache, and EdgeCore's writer
   * writes synchronously too): an asynchronous one costs a turn of the event loop, in which a
   * fast writer writes more than a block. The event loop gets a turn every READ_TURN bytes.
   */
  private async read(f: OpenLog, buf: Buffer, length: number, pos: number): Promise<number> {
    if (this.sinceTurn >= READ_TURN) {
      this.sinceTurn = 0;
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.closed || !this.fds.has(f.fd)) return 0;
    }
    const n = readSync(f.fd, buf, 0, length, pos);
    this.sinceTurn += n;
    return n;
  }

  private readBuffer(): Buffer {
    this.block ??= Buffer.allocUnsafe(READ_BLOCK);
    return this.block;
  }

  /**
   * A tail, found by reading the snapshot backwards from its end (as a kubelet does), so its cost
   * is the last lines, not the files: the last `n` lines passing sinceTime (in the order readCriLog
   * gives them: by the record that ends them, then the lines nothing ended), and the position to
   * read from so that they come whole. Undefined when the reader was closed meanwhile; `starts`
   * undefined when the snapshot has fewer lines (all are shown). A line's first record is looked
   * for up to TAIL_LOOKBACK before the tail's first line (a longer line begins there); a line left
   * unended (`P` records) by a stream none of whose records are in that reach is not looked for (not
   * in the tail; a follow shows it from its next record). A kubelet's tail counts records, not lines.
   */
  private async findTail(older: OpenLog | undefined, current: OpenLog | undefined, n: number): Promise<{ from: number; starts: Set<number> | undefined } | undefined> {
    const since = this.since;
    const passes = (l: TailLine) => since === undefined || l.time >= since;
    const head = new RecordHead();
    /** Per stream, the line its records (going backwards) belong to. */
    const building: Partial<Record<LogStream, TailLine>> = {};
    /** The lines an `F` ends, latest first; the lines nothing ended. */
    const ended: TailLine[] = [];
    const unended: TailLine[] = [];
    const need = () => (this.follow ? n : n - Math.min(n, unended.filter(passes).length));
    /** Where the tail's lines were all found, their first records not all yet. */
    let reached: number | undefined;
    const onRecord = (text: string, s: number, nl: number, at: number): void => {
      if (head.parse(text, s, nl) < 0) return;
      const cur = building[head.stream];
      if (!head.partial) {
        if (cur) cur.done = true;
        const line: TailLine = { first: at, time: head.time, done: false };
        building[head.stream] = line;
        ended.push(line);
      } else if (cur) {
        cur.first = at;
        cur.time = head.time;
      } else {
        const line: TailLine = { first: at, time: head.time, done: false };
        building[head.stream] = line;
        unended.push(line);
      }
    };
    /** After each block: whether the tail's lines are found and whole (or looked for long enough). */
    const enough = (at: number): boolean => {
      if (ended.length === 0 && unended.length === 0) return false;
      const want = need();
      let whole = unended.every((u) => u.done);
      let c = 0;
      for (let i = 0; c < want && i < ended.length; i++) {
        const l = ended[i]!;
        if (!l.done) whole = false;
        if (passes(l)) c++;
      }
      if (c < want) return false;
      if (whole) return true;
      reached ??= at;
      return reached - at > TAIL_LOOKBACK;
    };
    let found = false;
    for (const f of [current, older]) {
      if (!f) continue;
      const r = await this.scanBackward(f, onRecord, enough);
      if (r === undefined) return undefined;
      if (r) {
        found = true;
        break;
      }
    }
    if (!found) {
      // The snapshot's start: every line is whole.
      for (const l of [...ended, ...unended]) l.done = true;
      if (!enough(0)) return { from: 0, starts: undefined };
    }
    const starts = new Set<number>();
    let from = this.snapEnd;
    const want = need();
    let c = 0;
    for (let i = 0; c < want && i < ended.length; i++) {
      const l = ended[i]!;
      if (!passes(l)) continue;
      c++;
      starts.add(l.first);
      from = Math.min(from, l.first);
    }
    // The unended lines: read whole (a follow may see them ended); shown by a follow, or as the last of the tail (by time, as readCriLog orders them).
    for (const u of unended) from = Math.min(from, u.first);
    const shown = unended.filter(passes).sort((a, b) => a.time - b.time || a.first - b.first);
    const keep = this.follow ? shown.length : Math.min(n, shown.length);
    for (const u of shown.slice(shown.length - keep)) starts.add(u.first);
    return { from, starts };
  }

  /**
   * Calls `onRecord` for each complete record of `f`'s snapshot, last first (what follows its last
   * `\n` is not a record yet), and `enough` after each block with the position reached. True when
   * `enough` said so, false at the file's start, undefined when the reader was closed.
   */
  private async scanBackward(f: OpenLog, onRecord: (text: string, s: number, nl: number, at: number) => void, enough: (at: number) => boolean): Promise<boolean | undefined> {
    let pos = f.size;
    /** The start of the block after this one: the end of a record that starts in this one, or before. */
    let carry = '';
    /** Looking for the `\n` a record ends with: after the file's end, or before a record too long. */
    let seeking = true;
    const block = Buffer.allocUnsafe(READ_BLOCK_MAX);
    while (pos > 0) {
      if (this.closed) return undefined;
      const start = Math.max(0, pos - READ_BLOCK_MAX);
      const bytesRead = await this.read(f, block, pos - start, start);
      if (this.closed) return undefined;
      // A log file does not shrink (a rotation renames it): a short read (truncated) ends the scan.
      if (bytesRead < pos - start) return false;
      const text = block.toString('latin1', 0, bytesRead) + carry;
      carry = '';
      pos = start;
      let i = text.length;
      if (seeking) {
        const nl = text.lastIndexOf('\n');
        if (nl < 0) continue;
        seeking = false;
        i = nl + 1;
      }
      // text[i - 1] is a record's `\n`.
      while (i > 0) {
        const nl = i - 1;
        const before = nl > 0 ? text.lastIndexOf('\n', nl - 1) : -1;
        if (before < 0 && start > 0) break;
        const s = before + 1;
        if (nl - s <= RECORD_MAX) onRecord(text, s, nl, f.base + start + s);
        i = s;
      }
      if (enough(f.base + start + i)) return true;
      if (start === 0) return false;
      carry = text.slice(0, i);
      if (carry.length - 1 > RECORD_MAX) {
        carry = '';
        seeking = true;
      }
    }
    return false;
  }

  /** Reads `f` from its position to `bound` (or its end, for now), yielding the full chunks as it goes. */
  private async *readFile(f: OpenLog, scanner: CriScanner, bound: number | undefined): AsyncGenerator<Buffer, void, undefined> {
    for (;;) {
      if (this.done() || !this.fds.has(f.fd)) return;
      const block = this.readBuffer();
      const want = bound === undefined ? block.length : Math.min(block.length, bound - f.pos);
      if (want <= 0) return;
      const bytesRead = await this.read(f, block, want, f.pos);
      if (bytesRead === 0 || this.closed) return;
      const at = f.base + f.pos;
      f.pos += bytesRead;
      scanner.feed(block.toString('latin1', 0, bytesRead), at);
      // Behind the writer: larger reads from now on.
      if (bytesRead === block.length && block.length < READ_BLOCK_MAX) this.block = Buffer.allocUnsafe(READ_BLOCK_MAX);
      this.cut(this.limitReached);
      yield* this.drain();
      // The file's end, for now.
      if (bytesRead < want) return;
    }
  }

  /** Cuts the output into chunks of `chunkBytes` (not splitting a UTF-8 character); `all`: the last, shorter one too. */
  private cut(all: boolean): void {
    if (this.partsLength === 0 || (!all && this.partsLength < this.chunkBytes)) return;
    const text = this.parts.length === 1 ? this.parts[0]! : this.parts.join('');
    this.parts = [];
    this.partsLength = 0;
    let s = 0;
    while (text.length - s >= this.chunkBytes || (all && s < text.length)) {
      let e = utf8End(text, s, this.chunkBytes);
      // Never an empty chunk (invalid UTF-8 at the cut): cut raw.
      if (e === s) e = Math.min(text.length, s + this.chunkBytes);
      this.ready.push(Buffer.from(s === 0 && e === text.length ? text : text.slice(s, e), 'latin1'));
      s = e;
    }
    if (s < text.length) {
      this.parts.push(text.slice(s));
      this.partsLength = text.length - s;
    }
  }

  private *drain(): Generator<Buffer, void, undefined> {
    while (this.ready.length > 0 && !this.closed) yield this.ready.shift()!;
  }

  /** Everything output so far, the last chunk shorter. */
  private *flush(): Generator<Buffer, void, undefined> {
    this.cut(true);
    yield* this.drain();
  }

  /** Follow: until the directory reports a change to the log (or its rotation), or `pollMs`. */
  private waitForChange(): Promise<void> {
    this.sinceTurn = 0;
    this.startWatching();
    if (this.changed) {
      this.changed = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
        resolve();
      };
      this.timer = setTimeout(() => this.wake?.(), this.options.pollMs ?? 1000);
    });
  }

  private poke(): void {
    if (this.wake) this.wake();
    else this.changed = true;
  }

  private startWatching(): void {
    if (this.watcher || this.watchFailed || this.closed) return;
    const name = basename(this.path);
    try {
      this.watcher = watch(dirname(this.path), { persistent: false }, (_event, file) => {
        if (file === null || file === name || file === `${name}.1`) this.poke();
      });
      this.watcher.on('error', (err) => {
        this.options.log?.debug(`container log ${this.path}: watching failed, polling only: ${errorMessage(err)}`, { path: this.path });
        this.watchFailed = true;
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch (err) {
      // fs.watch is not available on every filesystem (or inotify watches ran out): the poll still sees changes.
      this.watchFailed = true;
      this.options.log?.debug(`container log ${this.path}: cannot watch, polling only: ${errorMessage(err)}`, { path: this.path });
    }
  }

  private stopWaiting(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.wake?.();
  }
}

/** Reads a container's log as it is now (`<path>.1` then `<path>`), incrementally: {@link readCriLog}'s output, in chunks. */
export function openCriLogReader(path: string, options: CriLogReaderOptions = {}): CriLogReader {
  return new CriLogReader(path, options, false);
}

/**
 * `kubectl logs -f`: reads the log as {@link openCriLogReader} does, then the complete records
 * appended to `<path>` as they come (a change seen by a watch of its directory, or at `pollMs`),
 * across the writer's rotation (`<path>` renamed to `<path>.1`, a new `<path>`: the old file's end
 * is read by its descriptor, then the file after it, `<path>.1` when two rotations came; only a
 * file rotated away twice before it was opened is lost). Ends
 * when `running()` says the run is over (or {@link CriLogReader.finish}), after what was written
 * until then, or once `limitBytes` were yielded.
 */
export function followCriLog(path: string, options: FollowCriLogOptions = {}): CriLogReader {
  return new CriLogReader(path, options, true);
}
