/**
 * @module
 * SPDY/3.1 exec/attach at the kubelet endpoint, for the clients that do not speak WebSocket to a
 * kubelet: kube-apiserver 1.30–1.35 (its StreamTranslator turns kubectl's WebSocket into SPDY) and
 * kubectl ≤ 1.29 (SPDY, passed through by the API server). The server side of Kubernetes' SPDY
 * remote command protocol (apimachinery httpstream/spdy, kubelet remotecommand/httpstream.go),
 * bridged to a Ledge {@link Stream}.
 *
 * Why not a library: spdy-transport (the only maintained SPDY/3.1 codec on npm) rejects every
 * SYN_STREAM without `:method` and `:path` headers, and Kubernetes' streams carry only
 * `streamType`; and it honours the peer's flow-control windows, which Kubernetes' Go SPDY
 * (moby/spdystream) never grants, so its output stops after 64 KiB. So this is a minimal SPDY/3
 * framing: header compression is node:zlib with the SPDY/3 dictionary.
 *
 * Guarantees:
 * - **Handshake as a kubelet**: `X-Stream-Protocol-Version` negotiated in the client's order
 *   among v4, v3, v2 (`channel.k8s.io` v1 is not served; v5 is v4 over SPDY for every client),
 *   else 400 (none offered) / 403 with `X-Accepted-Stream-Protocol-Versions`. The edge is asked
 *   (`open()`) BEFORE the 101, so a refusal is an HTTP error with a metav1.Status body.
 * - **Streams**: the client's `error`, `stdin`, `stdout`, `stderr`, `resize` (tty, v3+) streams
 *   are each answered with a SYN_REPLY at once; the exchange starts when all requested ones
 *   exist, within `streamCreationTimeoutMs` (30 s, as a kubelet), else it fails (Timeout).
 * - **Bridge**: stdin DATA → Channel.Stdin, its FIN (or RST) → Channel.Close [0]; resize JSON
 *   values (a JSON stream, as Go's json.Decoder reads it) → Channel.Resize `{"Width","Height"}`;
 *   Channel.Stdout/Stderr → the client's streams; Channel.Error (the Status) → the error stream
 *   (v4 as JSON; v2/v3 the message text of a failure, nothing on success), then every stream gets
 *   its FIN, a GOAWAY, and the connection ends. A stream that ends with an error before any
 *   Status gets a Failure Status with the error's message. The client going away (close, end,
 *   GOAWAY) aborts the stream (`LEDGE_ERR_STOPPED`).
 * - **Bounded**: frames with a control body over 64 KiB + 16, decompressed header blocks over
 *   64 KiB, more than 16 header blocks, more than 8 streams, a bad version or a broken header
 *   compression end the session (GOAWAY PROTOCOL_ERROR, stream aborted with
 *   `LEDGE_ERR_STREAM_PROTOCOL`); a DATA frame is at most 16 MiB - 1 (SPDY's 24-bit length).
 * - **Back-pressure**: the edge is paused while the socket holds over 1 MiB unsent (resumed on
 *   `drain`); reading the socket stops while the stream's send queue is full (until its
 *   `drain`). SPDY windows are neither honoured nor granted, exactly like spdystream (the Go SPDY
 *   of kubectl, kube-apiserver and the kubelet): TCP is the flow control.
 * - Pings from the client are answered (client-go's SPDY round tripper pings every 5 s).
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import { Channel, streamFailureStatus } from '../../shared/protocol/index.js';
import { httpStatusFor, statusBody } from './status.js';
import type { Stream, StreamError } from '../../shared/stream/index.js';
import { ErrorCode, StreamProtocolError, errorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';

// ------------------------------------------------------------------ the SPDY/3 codec

/** SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1): 65 length-prefixed words, then a tail. */
const DICTIONARY_WORDS = (
  'options|head|post|put|delete|trace|accept|accept-charset|accept-encoding|accept-language|accept-ranges|age|allow|authorization|cache-control|' +
  'connection|content-base|content-encoding|content-language|content-length|content-location|content-md5|content-range|content-type|date|etag|expect|' +
  'expires|from|host|if-match|if-modified-since|if-none-match|if-range|if-unmodified-since|last-modified|location|max-forwards|pragma|proxy-authenticate|' +
  'proxy-authorization|range|referer|retry-after|server|te|trailer|transfer-encoding|upgrade|user-agent|vary|via|warning|www-authenticate|method|get|' +
  'status|200 OK|version|HTTP/1.1|url|public|set-cookie|keep-alive|origin'
).split('|');
const DICTIONARY_TAIL =
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
  '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
  '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
  'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';

/** The SPDY/3 zlib dictionary (1423 bytes, Adler-32 0xe3c6a7c2). */
export const SPDY3_DICTIONARY: Buffer = Buffer.concat([
  ...DICTIONARY_WORDS.flatMap((w) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(w.length);
    return [len, Buffer.from(w, 'latin1')];
  }),
  Buffer.from(DICTIONARY_TAIL, 'latin1'),
]);

export const SPDY_VERSION = 3;
/** Control frame types. */
export const FrameType = { SynStream: 1, SynReply: 2, RstStream: 3, Settings: 4, Ping: 6, GoAway: 7, Headers: 8, WindowUpdate: 9 } as const;
export const Flag = { Fin: 0x01, Unidirectional: 0x02 } as const;
/** RST_STREAM status codes. */
export const RstStatus = { ProtocolError: 1, InvalidStream: 2, RefusedStream: 3, UnsupportedVersion: 4, Cancel: 5, InternalError: 6, StreamAlreadyClosed: 9 } as const;
/** GOAWAY status codes. */
export const GoAwayStatus = { Ok: 0, ProtocolError: 1, InternalError: 2 } as const;

/** Largest decompressed header block (and largest compressed one, in a control frame). */
export const MAX_HEADER_BLOCK = 64 * 1024;
/** Largest control frame body: a header block and its frame's fixed fields. */
export const MAX_CONTROL_BODY = MAX_HEADER_BLOCK + 16;
/** Largest DATA payload: SPDY's 24-bit length. */
export const MAX_DATA_FRAME = 0xffffff;
/** Streams a client may open on one connection. */
export const MAX_STREAMS = 8;
/** Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) one connection may send. */
export const MAX_HEADER_FRAMES = 16;
/** All the header bytes of one connection, decompressed. */
const MAX_INFLATED_HISTORY = 256 * 1024;
/** Largest DATA payload written to the client. */
const MAX_OUT_DATA = 64 * 1024;

export type SpdyFrame = { kind: 'data'; streamId: number; flags: number; data: Buffer } | { kind: 'control'; version: number; type: number; flags: number; body: Buffer };

function protocolError(message: string): never {
  throw new StreamProtocolError(`spdy: ${message}`);
}

/** Splits a byte stream into SPDY frames, whatever the chunking; throws StreamProtocolError for a control frame over {@link MAX_CONTROL_BODY}. */
export class FrameParser {
  private chunks: Buffer[] = [];
  private size = 0;

  /** Bytes held (an incomplete frame, or frames not taken yet). */
  get buffered(): number {
    return this.size;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  /** The next complete frame, or undefined until more bytes arrive. */
  next(): SpdyFrame | undefined {
    if (this.size < 8) return undefined;
    const head = this.peek(8);
    const w0 = head.readUInt32BE(0);
    const w1 = head.readUInt32BE(4);
    const length = w1 & 0xffffff;
    const flags = w1 >>> 24;
    const control = (w0 & 0x80000000) !== 0;
    if (control && length > MAX_CONTROL_BODY) protocolError(`a control frame of ${length} bytes (at most ${MAX_CONTROL_BODY})`);
    if (this.size < 8 + length) return undefined;
    const frame = this.take(8 + length);
    const body = frame.subarray(8);
    if (control) return { kind: 'control', version: (w0 >>> 16) & 0x7fff, type: w0 & 0xffff, flags, body };
    return { kind: 'data', streamId: w0 & 0x7fffffff, flags, data: body };
  }

  /** The first `n` bytes, contiguous (merging only the chunks they span). */
  private peek(n: number): Buffer {
    while (this.chunks[0]!.length < n) {
      const [a, b] = this.chunks.splice(0, 2) as [Buffer, Buffer];
      this.chunks.unshift(Buffer.concat([a, b]));
    }
    return this.chunks[0]!;
  }

  private take(n: number): Buffer {
    this.size -= n;
    const first = this.chunks[0]!;
    if (first.length === n) return this.chunks.shift()!;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const c = this.chunks[0]!;
      if (c.length <= need) {
        parts.push(c);
        this.chunks.shift();
        need -= c.length;
      } else {
        parts.push(c.subarray(0, need));
        this.chunks[0] = c.subarray(need);
        need = 0;
      }
    }
    return Buffer.concat(parts, n);
  }
}

/** A control frame: version 3, `type`, `flags`, `body`. */
export function controlFrame(type: number, flags: number, body: Buffer): Buffer {
  if (body.length > 0xffffff) throw new RangeError(`spdy: a control frame of ${body.length} bytes`);
  const head = Buffer.allocUnsafe(8);
  head.writeUInt32BE((0x80000000 | (SPDY_VERSION << 16) | type) >>> 0, 0);
  head.writeUInt32BE(((flags << 24) | body.length) >>> 0, 4);
  return Buffer.concat([head, body]);
}

/** A DATA frame (at most {@link MAX_DATA_FRAME} bytes). */
export function dataFrame(streamId: number, flags: number, data: Uint8Array): Buffer {
  if (data.length > MAX_DATA_FRAME) throw new RangeError(`spdy: a DATA frame of ${data.length} bytes`);
  const frame = Buffer.allocUnsafe(8 + data.length);
  frame.writeUInt32BE(streamId & 0x7fffffff, 0);
  frame.writeUInt32BE(((flags << 24) | data.length) >>> 0, 4);
  frame.set(data, 8);
  return frame;
}

function u32s(...values: number[]): Buffer {
  const b = Buffer.allocUnsafe(4 * values.length);
  for (let i = 0; i < values.length; i++) b.writeUInt32BE(values[i]! >>> 0, 4 * i);
  return b;
}

/** SYN_STREAM (a client's; `block` compressed). */
export function synStreamFrame(streamId: number, block: Buffer, flags = 0): Buffer {
  // Associated-To-Stream-ID 0, priority 0, slot 0.
  return controlFrame(FrameType.SynStream, flags, Buffer.concat([u32s(streamId, 0), Buffer.from([0, 0]), block]));
}

export function synReplyFrame(streamId: number, block: Buffer, flags = 0): Buffer {
  return controlFrame(FrameType.SynReply, flags, Buffer.concat([u32s(streamId), block]));
}

export function rstStreamFrame(streamId: number, status: number): Buffer {
  return controlFrame(FrameType.RstStream, 0, u32s(streamId, status));
}

export function pingFrame(id: number): Buffer {
  return controlFrame(FrameType.Ping, 0, u32s(id));
}

export function goAwayFrame(lastGoodStreamId: number, status: number): Buffer {
  return controlFrame(FrameType.GoAway, 0, u32s(lastGoodStreamId, status));
}

/** A SPDY/3 name/value header block, uncompressed (names lowercased; several values joined by NUL). */
export function encodeHeaderBlock(headers: Record<string, string | string[]>): Buffer {
  const entries = Object.entries(headers);
  const parts: Buffer[] = [u32s(entries.length)];
  for (const [name, value] of entries) {
    const n = Buffer.from(name.toLowerCase(), 'utf8');
    const v = Buffer.from(Array.isArray(value) ? value.join('\0') : value, 'utf8');
    parts.push(u32s(n.length), n, u32s(v.length), v);
  }
  return Buffer.concat(parts);
}

/** Parses an uncompressed header block (names lowercased, values split on NUL); throws StreamProtocolError. */
export function decodeHeaderBlock(block: Buffer): Map<string, string[]> {
  if (block.length < 4) protocolError('a header block without its count');
  const count = block.readUInt32BE(0);
  // Every pair takes 8 bytes of lengths at least.
  if (count > (block.length - 4) / 8) protocolError(`a header block of ${block.length} bytes claims ${count} pairs`);
  const headers = new Map<string, string[]>();
  let off = 4;
  const field = (): string => {
    if (off + 4 > block.length) protocolError('a header block cut short');
    const len = block.readUInt32BE(off);
    off += 4;
    if (len > block.length - off) protocolError('a header length past the block');
    const s = block.toString('utf8', off, off + len);
    off += len;
    return s;
  };
  for (let i = 0; i < count; i++) {
    const name = field().toLowerCase();
    const value = field();
    if (name === '') protocolError('an empty header name');
    headers.set(name, [...(headers.get(name) ?? []), ...value.split('\0')]);
  }
  if (off !== block.length) protocolError(`${block.length - off} bytes after the header block's pairs`);
  return headers;
}

/**
 * The receiving side of a connection's header compression: one zlib stream (with the SPDY/3
 * dictionary) across all its header blocks, each ended by a sync flush. Synchronous: every block
 * inflates the connection's compressed header bytes so far again (node:zlib's documented way to
 * read a stream that is not finished, `finishFlush: Z_SYNC_FLUSH`) and keeps what is new; bounded
 * by {@link MAX_HEADER_FRAMES} blocks and {@link MAX_HEADER_BLOCK} bytes each.
 */
export class HeaderInflater {
  private readonly blocks: Buffer[] = [];
  private compressedBytes = 0;
  private inflatedBytes = 0;

  /** The decompressed header block of one frame; throws StreamProtocolError. */
  inflate(compressed: Buffer): Buffer {
    if (this.blocks.length >= MAX_HEADER_FRAMES) protocolError(`more than ${MAX_HEADER_FRAMES} header blocks on one connection`);
    if (compressed.length > MAX_HEADER_BLOCK) protocolError(`a compressed header block of ${compressed.length} bytes`);
    this.blocks.push(Buffer.from(compressed));
    this.compressedBytes += compressed.length;
    let out: Buffer;
    try {
      out = zlib.inflateSync(Buffer.concat(this.blocks, this.compressedBytes), {
        dictionary: SPDY3_DICTIONARY,
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
        maxOutputLength: MAX_INFLATED_HISTORY,
      });
    } catch (err) {
      protocolError(`the header block does not decompress (${errorMessage(err)})`);
    }
    const fresh = out.subarray(this.inflatedBytes);
    this.inflatedBytes = out.length;
    if (fresh.length > MAX_HEADER_BLOCK) protocolError(`a header block of ${fresh.length} bytes (at most ${MAX_HEADER_BLOCK})`);
    return fresh;
  }
}

/**
 * node:zlib passes its options on to the Transform; a readable high-water mark over the largest
 * output of one block keeps the write callback from waiting for a read (it would with 16 KiB).
 */
const DEFLATE_OPTIONS: zlib.ZlibOptions & { readableHighWaterMark: number } = {
  dictionary: SPDY3_DICTIONARY,
  flush: zlib.constants.Z_SYNC_FLUSH,
  readableHighWaterMark: 4 * MAX_HEADER_BLOCK,
};

/** The sending side of a connection's header compression: one zlib stream with the SPDY/3 dictionary, a sync flush after each block. */
export class HeaderDeflater {
  private readonly z = zlib.createDeflate(DEFLATE_OPTIONS);
  private chain: Promise<unknown> = Promise.resolve();

  constructor() {
    this.z.on('error', () => {}); // reported to the pending deflate() by its write callback
  }

  /** The compressed form of `block` (at most {@link MAX_HEADER_BLOCK} bytes), in call order. */
  deflate(block: Buffer): Promise<Buffer> {
    if (block.length > MAX_HEADER_BLOCK) return Promise.reject(new RangeError(`spdy: a header block of ${block.length} bytes`));
    const next = this.chain.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          this.z.write(block, (err) => {
            if (err) return reject(err);
            // Paused mode: all the output of this write is buffered by now (zlib pushes it before the write completes).
            const out: Buffer[] = [];
            for (let c = this.z.read() as Buffer | null; c !== null; c = this.z.read() as Buffer | null) out.push(c);
            resolve(Buffer.concat(out));
          });
        }),
    );
    this.chain = next.catch(() => {});
    return next;
  }

  close(): void {
    this.z.close();
  }
}

// ------------------------------------------------------------------ the handshake

const HEADER_PROTOCOL = 'x-stream-protocol-version';
export const SPDY_V4 = 'v4.channel.k8s.io';
export const SPDY_V3 = 'v3.channel.k8s.io';
export const SPDY_V2 = 'v2.channel.k8s.io';
/** The remote command protocols served over SPDY (the kubelet's, but v1). */
export const SPDY_PROTOCOLS = [SPDY_V4, SPDY_V3, SPDY_V2] as const;
export type SpdyProtocol = (typeof SPDY_PROTOCOLS)[number];

/** Default time the client has to create its streams after the 101 (the kubelet's). */
export const STREAM_CREATION_TIMEOUT_MS = 30_000;
/** Unsent socket bytes above which the edge is paused. */
export const SPDY_HIGH_WATER = 1024 * 1024;
/** How long an ended connection may take to flush before it is destroyed, ms. */
const FLUSH_GRACE_MS = 5_000;

function headerValues(req: IncomingMessage, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.toLowerCase() === name) out.push(req.rawHeaders[i + 1]!);
  }
  return out;
}

/** Whether a request is an SPDY/3.1 upgrade. */
export function isSpdyUpgrade(req: IncomingMessage): boolean {
  const connection = headerValues(req, 'connection').join(',').toLowerCase();
  const upgrade = headerValues(req, 'upgrade').join(',').toLowerCase();
  return connection.includes('upgrade') && upgrade.includes('spdy/3.1');
}

/** The protocol to answer: the client's first offer the server serves (as apimachinery's httpstream.Handshake). */
export function negotiateSpdyProtocol(offered: readonly string[]): SpdyProtocol | undefined {
  for (const p of offered) if ((SPDY_PROTOCOLS as readonly string[]).includes(p)) return p as SpdyProtocol;
  return undefined;
}

/** What the client asks for, as a kubelet reads it (`input`/`output`/`error`/`tty` = 1; the PodExecOptions names and `true` too). */
function wanted(req: IncomingMessage): { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean } {
  const q = new URL(req.url ?? '/', 'http://kubelet').searchParams;
  const on = (...names: string[]) => names.some((n) => q.get(n) === '1' || q.get(n) === 'true');
  const tty = on('tty');
  // As a kubelet: with a TTY, stderr goes to stdout.
  return { stdin: on('input', 'stdin'), stdout: on('output', 'stdout'), stderr: on('error', 'stderr') && !tty, tty };
}

/** The HTTP status of a refused stream (as CloudStream answers WebSocket refusals). */
function refusalStatus(error: { code?: unknown; httpStatus?: unknown }): number {
  if (typeof error.httpStatus === 'number' && error.httpStatus >= 400 && error.httpStatus <= 599) return error.httpStatus;
  return httpStatusFor(typeof error.code === 'string' ? error.code : undefined);
}

/** Answers `status` with a metav1.Status body on the raw socket and ends it. */
function answerHttp(socket: Duplex, status: number, message: string, extraHeaders: string[] = []): void {
  if (socket.destroyed || !socket.writable) return;
  const body = statusBody(status, message);
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...extraHeaders,
  ];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}

export interface SpdyExecOptions {
  /** Time the client has to create its streams after the 101. Default {@link STREAM_CREATION_TIMEOUT_MS}. */
  streamCreationTimeoutMs?: number;
}

/**
 * Completes the SPDY upgrade on `socket` and bridges the client's streams to a Ledge stream.
 * `open()` is called after the handshake checks and BEFORE the 101 (so a refusal is an HTTP
 * error with a Status, answered with the error's `httpStatus`, else the status of its `code`);
 * it resolves with the Stream once the edge accepted it. Resolve it from the stream's 'open'
 * event and call `stream.pause()` there: messages that arrive before the bridge listens are then
 * held, not lost (the bridge resumes the stream). Resolves when the exchange is over; never rejects.
 */
export async function serveSpdyExec(req: IncomingMessage, socket: Duplex, head: Buffer, open: () => Promise<Stream>, log: Logger, options: SpdyExecOptions = {}): Promise<void> {
  socket.on('error', (err) => log.debug(`spdy exec socket error: ${err.message}`));
  const path = (req.url ?? '').split('?')[0]!.slice(0, 200);
  const refuse = (status: number, message: string, code: string, extra?: string[]) => {
    log.info(`spdy exec refused: ${message}`, { code, status, path });
    answerHttp(socket, status, message, extra);
  };
  if (!isSpdyUpgrade(req)) return refuse(400, 'unable to upgrade: missing upgrade headers in request (Connection: Upgrade, Upgrade: SPDY/3.1)', ErrorCode.StreamRequest);
  const offered = headerValues(req, HEADER_PROTOCOL)
    .flatMap((v) => v.split(','))
    .map((p) => p.trim())
    .filter(Boolean);
  if (offered.length === 0) return refuse(400, 'unable to upgrade: X-Stream-Protocol-Version is required', ErrorCode.StreamRequest);
  const protocol = negotiateSpdyProtocol(offered);
  if (!protocol) {
    return refuse(
      403,
      `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(' ').slice(0, 200)}], server accepts [${SPDY_PROTOCOLS.join(' ')}]`,
      ErrorCode.StreamRequest,
      SPDY_PROTOCOLS.map((p) => `X-Accepted-Stream-Protocol-Versions: ${p}`),
    );
  }
  const want = wanted(req);
  if (!want.stdin && !want.stdout && !want.stderr) return refuse(400, 'you must specify at least 1 of stdin, stdout, stderr', ErrorCode.StreamRequest);

  let gone = socket.destroyed;
  const onGone = () => (gone = true);
  socket.once('close', onGone);
  let stream: Stream;
  try {
    stream = await open();
  } catch (err) {
    socket.off('close', onGone);
    const e = (err ?? {}) as { code?: unknown; httpStatus?: unknown };
    return refuse(refusalStatus(e), errorMessage(err), errorCode(err));
  }
  socket.off('close', onGone);
  if (gone || socket.destroyed || !socket.writable) {
    if (!stream.closed) stream.abort({ code: ErrorCode.Stopped, message: 'the client went away' });
    return;
  }
  if (stream.closed) return refuse(500, 'the edge ended the stream before it was bridged', ErrorCode.StreamProtocol);

  socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${protocol}\r\n\r\n`);
  const session = new SpdyExecSession(socket, stream, protocol, want, log, options.streamCreationTimeoutMs ?? STREAM_CREATION_TIMEOUT_MS);
  session.start(head);
  await session.done;
}

// ------------------------------------------------------------------ the session

interface ClientStream {
  id: number;
  type: string;
  /** The client sent its FIN (or a RST). */
  remoteClosed: boolean;
  /** This side sent its FIN (or the stream was reset). */
  localClosed: boolean;
}

/** Splits a JSON stream (values back to back, any whitespace between) into its top-level objects; bounded per value. */
class JsonObjects {
  private buf = '';
  private depth = 0;
  private inString = false;
  private escape = false;
  broken = false;

  push(text: string): string[] {
    const out: string[] = [];
    for (const ch of text) {
      if (this.broken) return out;
      if (this.depth === 0) {
        if (ch === ' ' || ch === '\n' || ch === '\r' || ch === '\t') continue;
        if (ch !== '{') {
          this.broken = true;
          return out;
        }
      }
      this.buf += ch;
      if (this.buf.length > 4096) {
        this.broken = true;
        return out;
      }
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (ch === '\\') this.escape = true;
        else if (ch === '"') this.inString = false;
      } else if (ch === '"') this.inString = true;
      else if (ch === '{' || ch === '[') this.depth++;
      else if (ch === '}' || ch === ']') {
        this.depth--;
        if (this.depth === 0) {
          out.push(this.buf);
          this.buf = '';
        }
      }
    }
    return out;
  }
}

/** `{"Width":w,"Height":h}` of a terminal size message, or undefined if it is not one. */
function resizeMessage(json: string): Uint8Array | undefined {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return undefined;
  }
  const { Width, Height } = (v ?? {}) as { Width?: unknown; Height?: unknown };
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffff;
  if (!ok(Width) || !ok(Height)) return undefined;
  return Buffer.from(JSON.stringify({ Width, Height }));
}

class SpdyExecSession {
  private readonly parser = new FrameParser();
  private readonly inflater = new HeaderInflater();
  private readonly deflater = new HeaderDeflater();
  private readonly streams = new Map<number, ClientStream>();
  private readonly byType = new Map<string, ClientStream>();
  private readonly expected: Set<string>;
  private readonly resize = new JsonObjects();
  /** Frames to write, in order; a slot without bytes waits for its header compression. */
  private readonly out: { bytes?: Buffer }[] = [];
  private lastClientId = 0;
  private accepted = 0;
  private started = false;
  private finished = false;
  private statusSent = false;
  private stdinClosed = false;
  private readPaused = false;
  private edgePaused = false;
  private socketGone = false;
  /** The edge's end before the start: undefined = none, null = a clean end with nothing held (else a clean end waits for the resume). */
  private earlyEnd: StreamError | null | undefined;
  private timer: NodeJS.Timeout | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private resolveDone!: () => void;
  readonly done = new Promise<void>((r) => (this.resolveDone = r));

  constructor(
    private readonly socket: Duplex,
    private readonly stream: Stream,
    private readonly protocol: SpdyProtocol,
    want: { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean },
    private readonly log: Logger,
    private readonly creationTimeoutMs: number,
  ) {
    this.expected = new Set(['error']);
    if (want.stdin) this.expected.add('stdin');
    if (want.stdout) this.expected.add('stdout');
    if (want.stderr) this.expected.add('stderr');
    if (want.tty && protocol !== SPDY_V2) this.expected.add('resize');
  }

  start(head: Buffer): void {
    const { socket, stream } = this;
    stream.on('message', (channel, payload) => this.onEdgeMessage(channel, payload));
    stream.on('drain', () => {
      if (!this.readPaused) return;
      this.readPaused = false;
      this.socket.resume();
      this.pump();
    });
    stream.on('close', (error) => this.onEdgeClose(error));
    // Paused until the client's streams exist (what the edge sends meanwhile is held by the mux, at most a window).
    stream.pause();

    socket.on('data', (chunk: Buffer) => {
      // After the end, what the client still sends is dropped (not held).
      if (this.finished) return;
      this.parser.push(chunk);
      this.pump();
    });
    socket.on('drain', () => {
      if (this.edgePaused) {
        this.edgePaused = false;
        this.stream.resume();
      }
    });
    socket.once('end', () => this.clientGone('the client closed the connection'));
    socket.once('close', () => {
      this.socketGone = true;
      clearTimeout(this.flushTimer);
      this.clientGone('the client went away');
      this.deflater.close();
      this.resolveDone();
    });
    this.timer = setTimeout(() => this.creationTimedOut(), this.creationTimeoutMs);
    if (head.length > 0) {
      this.parser.push(head);
      this.pump();
    }
  }

  // ---- client → edge

  private pump(): void {
    while (!this.readPaused && !this.finished) {
      let frame: SpdyFrame | undefined;
      try {
        frame = this.parser.next();
        if (!frame) return;
        if (frame.kind === 'data') this.onData(frame.streamId, frame.flags, frame.data);
        else this.onControl(frame.version, frame.type, frame.flags, frame.body);
      } catch (err) {
        // StreamProtocolError from the codec; anything else is a bug, ended the same way rather than thrown into the socket's event.
        return this.protocolFailure(errorMessage(err));
      }
    }
  }

  private onControl(version: number, type: number, flags: number, body: Buffer): void {
    if (version !== SPDY_VERSION) protocolError(`a control frame of version ${version} (3 expected)`);
    const id = () => body.readUInt32BE(0) & 0x7fffffff;
    switch (type) {
      case FrameType.SynStream:
        if (body.length < 10) protocolError('a SYN_STREAM under 10 bytes');
        return this.onSynStream(id(), flags, decodeHeaderBlock(this.inflater.inflate(body.subarray(10))));
      case FrameType.SynReply:
      case FrameType.Headers:
        // Not expected from a client; inflated all the same, so the compression state stays in step.
        if (body.length < 4) protocolError('a header frame under 4 bytes');
        decodeHeaderBlock(this.inflater.inflate(body.subarray(4)));
        return;
      case FrameType.RstStream: {
        if (body.length !== 8) protocolError(`a RST_STREAM of ${body.length} bytes`);
        const cs = this.streams.get(id());
        if (!cs) return;
        cs.localClosed = true;
        this.onRemoteFin(cs);
        return;
      }
      case FrameType.Ping: {
        if (body.length !== 4) protocolError(`a PING of ${body.length} bytes`);
        const pid = body.readUInt32BE(0);
        // Odd ids are the client's pings (answered); even ones would answer this side's (it sends none).
        if (pid % 2 === 1) this.write(pingFrame(pid));
        return;
      }
      case FrameType.GoAway:
        return this.clientGone('the client sent GOAWAY');
      default:
        // SETTINGS, WINDOW_UPDATE (windows are not used, as in spdystream) and unknown types: ignored, as SPDY says.
        return;
    }
  }

  private onSynStream(id: number, flags: number, headers: Map<string, string[]>): void {
    if (id === 0 || id % 2 === 0 || id <= this.lastClientId) {
      this.write(rstStreamFrame(id, RstStatus.ProtocolError));
      return;
    }
    this.lastClientId = id;
    if (this.accepted >= MAX_STREAMS) {
      this.write(rstStreamFrame(id, RstStatus.RefusedStream));
      return;
    }
    this.accepted++;
    const type = (headers.get('streamtype')?.[0] ?? '').toLowerCase();
    const cs: ClientStream = { id, type, remoteClosed: false, localClosed: (flags & Flag.Unidirectional) !== 0 };
    this.streams.set(id, cs);
    // Every stream is answered, as a kubelet does; only the first of each requested type is used.
    const slot: { bytes?: Buffer } = {};
    this.out.push(slot);
    this.deflater.deflate(encodeHeaderBlock({})).then(
      (block) => {
        slot.bytes = synReplyFrame(id, block);
        this.flushOut();
      },
      (err) => {
        slot.bytes = Buffer.alloc(0);
        this.protocolFailure(`header compression failed: ${errorMessage(err)}`);
      },
    );
    if (this.expected.has(type) && !this.byType.has(type)) this.byType.set(type, cs);
    else this.log.debug(`spdy: stream ${id} (streamType ${JSON.stringify(type.slice(0, 40))}) is not used`);
    if ((flags & Flag.Fin) !== 0) this.onRemoteFin(cs);
    if (!this.started && [...this.expected].every((t) => this.byType.has(t))) this.begin();
  }

  private onData(streamId: number, flags: number, data: Buffer): void {
    const cs = this.streams.get(streamId);
    if (!cs || cs.remoteClosed) return; // as spdystream: DATA for a gone stream is dropped
    if (data.length > 0 && !this.stream.closed) {
      if (cs === this.byType.get('stdin')) {
        if (!this.stream.send(Channel.Stdin, data) && !this.stream.closed) {
          this.readPaused = true;
          this.socket.pause();
        }
      } else if (cs === this.byType.get('resize')) {
        for (const json of this.resize.push(data.toString('utf8'))) {
          const msg = resizeMessage(json);
          if (msg) this.stream.send(Channel.Resize, msg);
          else this.log.debug('spdy: a resize message that is not {"Width","Height"} was dropped');
        }
      }
    }
    if ((flags & Flag.Fin) !== 0) this.onRemoteFin(cs);
  }

  private onRemoteFin(cs: ClientStream): void {
    cs.remoteClosed = true;
    if (cs === this.byType.get('stdin') && !this.stdinClosed) {
      this.stdinClosed = true;
      if (!this.stream.closed) this.stream.send(Channel.Close, Uint8Array.of(Channel.Stdin));
    }
  }

  private begin(): void {
    this.started = true;
    clearTimeout(this.timer);
    if (this.earlyEnd !== undefined) return this.onEdgeClose(this.earlyEnd ?? undefined);
    // What the edge sent meanwhile comes now (and its clean end, if it ended).
    this.stream.resume();
  }

  private creationTimedOut(): void {
    if (this.started || this.finished) return;
    const message = `timed out waiting for the client to create its streams (${[...this.expected].filter((t) => !this.byType.has(t)).join(', ')} missing after ${this.creationTimeoutMs} ms)`;
    this.log.warn(`spdy exec: ${message}`, { code: ErrorCode.Timeout });
    this.started = true;
    if (!this.stream.closed) this.stream.abort({ code: ErrorCode.Timeout, message });
    else this.onEdgeClose(this.earlyEnd || { code: ErrorCode.Timeout, message });
  }

  // ---- edge → client

  private onEdgeMessage(channel: number, payload: Uint8Array): void {
    if (this.finished || !this.started) return;
    switch (channel) {
      case Channel.Stdout:
        this.writeData(this.byType.get('stdout'), payload);
        break;
      case Channel.Stderr:
        this.writeData(this.byType.get('stderr'), payload);
        break;
      case Channel.Error:
        this.writeStatus(payload);
        return this.finish();
      case Channel.Close:
        if (payload[0] === Channel.Stdout) this.writeFin(this.byType.get('stdout'));
        if (payload[0] === Channel.Stderr) this.writeFin(this.byType.get('stderr'));
        break;
      default:
        return;
    }
    if (!this.edgePaused && this.socket.writableLength > SPDY_HIGH_WATER) {
      this.edgePaused = true;
      this.stream.pause();
    }
  }

  private onEdgeClose(error: StreamError | undefined): void {
    if (!this.started) {
      // Answered once the client's error stream exists.
      this.earlyEnd = error ?? null;
      return;
    }
    if (this.finished) return;
    if (error && !this.statusSent) {
      if (error.code !== ErrorCode.Stopped)
        this.log.info(`spdy exec ended: ${error.message}`, { code: error.code, pod: `${this.stream.request.namespace}/${this.stream.request.pod}` });
      this.writeStatus(Buffer.from(streamFailureStatus(error.message)));
    }
    this.finish();
  }

  /** The Status on the error stream, in the protocol's form, then its FIN. */
  private writeStatus(json: Uint8Array): void {
    this.statusSent = true;
    const cs = this.byType.get('error');
    if (this.protocol === SPDY_V4) this.writeData(cs, json);
    else {
      // v2/v3: the message of a failure as text, nothing on success (the kubelet's v1WriteStatusFunc).
      let status: { status?: unknown; message?: unknown } = {};
      try {
        status = JSON.parse(Buffer.from(json).toString('utf8')) as typeof status;
      } catch {
        status = { status: 'Failure', message: Buffer.from(json).toString('utf8') };
      }
      if (status.status !== 'Success') this.writeData(cs, Buffer.from(String(status.message ?? 'error')));
    }
    this.writeFin(cs);
  }

  private writeData(cs: ClientStream | undefined, payload: Uint8Array): void {
    if (!cs || cs.localClosed || payload.length === 0) return;
    for (let off = 0; off < payload.length; off += MAX_OUT_DATA) this.write(dataFrame(cs.id, 0, payload.subarray(off, off + MAX_OUT_DATA)));
  }

  private writeFin(cs: ClientStream | undefined): void {
    if (!cs || cs.localClosed) return;
    cs.localClosed = true;
    this.write(dataFrame(cs.id, Flag.Fin, Buffer.alloc(0)));
  }

  private write(bytes: Buffer): void {
    this.out.push({ bytes });
    this.flushOut();
  }

  private flushOut(): void {
    while (this.out.length > 0 && this.out[0]!.bytes) {
      const { bytes } = this.out.shift()!;
      if (!this.socketGone && !this.socket.destroyed && this.socket.writable) this.socket.write(bytes!);
    }
    if (this.out.length === 0 && this.finished) this.endSocket();
  }

  // ---- ends

  /** Every stream's FIN, a GOAWAY, then the connection ends once written. */
  private finish(status: number = GoAwayStatus.Ok): void {
    if (this.finished) return;
    clearTimeout(this.timer);
    if (status === GoAwayStatus.Ok) for (const cs of this.streams.values()) this.writeFin(cs);
    this.write(goAwayFrame(this.lastClientId, status));
    this.finished = true;
    this.flushOut();
  }

  private endSocket(): void {
    if (this.flushTimer || this.socketGone) return;
    this.socket.end();
    this.flushTimer = setTimeout(() => this.socket.destroy(), FLUSH_GRACE_MS);
    this.flushTimer.unref();
  }

  /** The connection closed or ended, or the client sent GOAWAY: nothing more is written; a stream still open is aborted. */
  private clientGone(why: string): void {
    this.finished = true;
    clearTimeout(this.timer);
    if (!this.stream.closed) {
      this.log.debug(`spdy exec: ${why}`);
      this.stream.abort({ code: ErrorCode.Stopped, message: 'the client went away' });
    }
    if (!this.socketGone) this.endSocket();
  }

  private protocolFailure(message: string): void {
    if (this.finished && this.socketGone) return;
    this.log.warn(`spdy exec: ${message}`, { code: ErrorCode.StreamProtocol });
    this.statusSent = true; // nothing more goes to a client that broke the protocol
    if (!this.finished) this.finish(GoAwayStatus.ProtocolError);
    if (!this.stream.closed) this.stream.abort({ code: ErrorCode.StreamProtocol, message });
  }
}
