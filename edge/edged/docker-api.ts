/**
 * @module
 * A small client of the Docker Engine API (v1.41) over a unix socket, the API both Docker and
 * Podman (`podman system service`) serve: plain `http.request({ socketPath })`, JSON in and out,
 * no dependency (it is in the edge bundle).
 *
 * - {@link DockerClient.request}: one exchange, bounded by a timeout (from the request until the
 *   whole body is read) and a body cap (16 MiB by default); a status ≥ 400 throws
 *   {@link RuntimeApiError} with the status and the daemon's `message`.
 * - {@link DockerClient.stream}: a long response (logs, events, pulls, exec output), bounded by the
 *   timeout until its headers only; the caller reads it (through {@link FrameDemuxer} for Docker's
 *   multiplexed stdout/stderr framing, {@link JsonLines} for event and progress streams) and ends it.
 * - {@link DockerClient.hijack}: a connection the daemon takes over for a raw two-way stream (exec
 *   start, attach), asked with `Connection: Upgrade`, `Upgrade: tcp`: the daemon answers 101 (Docker;
 *   Podman 4.3 too) or 200 and streams on the same connection; both are handed back alike, the bytes
 *   that came with the headers first, the output paused until the caller resumes it. Bounded by the
 *   timeout until the headers only.
 * - A socket that is missing or refuses throws {@link RuntimeUnavailableError} naming the path and
 *   how to start a daemon on it; a timeout throws {@link TimeoutError}.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { errorMessage, RuntimeApiError, RuntimeUnavailableError, TimeoutError } from '../../shared/errors/index.js';

/** Largest body {@link DockerClient.request} reads by default (streams are not capped). */
export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface DockerClientOptions {
  /** The daemon's socket, e.g. `/var/run/docker.sock` or `/run/podman/podman.sock`. */
  socketPath: string;
  /** Per-request timeout, ms: until the whole body of {@link DockerClient.request}, until the headers of {@link DockerClient.stream}. */
  requestTimeoutMs: number;
  /** API version prefixed to every path. Default `v1.41` (Docker 20.10, Podman 4). */
  apiVersion?: string;
  /** Largest body read by {@link DockerClient.request}, bytes. Default 16 MiB. */
  maxBodyBytes?: number;
}

/** Query parameters; undefined ones are left out, objects are sent as JSON (Docker's `filters`). */
export type Query = Record<string, string | number | boolean | undefined | Record<string, string[]>>;

export interface RequestOptions {
  query?: Query;
  /** Sent as JSON. */
  body?: unknown;
  /** Overrides the client's timeout for this request, ms. */
  timeoutMs?: number;
  /** Statuses ≥ 400 answered rather than thrown (e.g. 404 for an inspect that may miss). */
  accept?: number[];
  /** Aborts the request (and a stream's response) when it fires. */
  signal?: AbortSignal;
}

export interface ApiResponse<T> {
  status: number;
  /** Parsed JSON when the daemon sent JSON, else undefined (204, 304, empty bodies). */
  body: T | undefined;
}

/** A connection the daemon took over for a raw two-way stream ({@link DockerClient.hijack}). */
export interface HijackedConnection {
  /** 101 (Switching Protocols) or 200 (the daemon streams in the response body on the same connection). */
  status: number;
  headers: IncomingHttpHeaders;
  /**
   * The daemon's bytes, in order (those that came with its headers first). Handed back paused: add
   * the listeners, then `resume()`; `pause()` stops reading it (back-pressure up to the daemon).
   * It ends (or closes) when the daemon is done.
   */
  output: Readable;
  /** The connection itself: `write()` sends bytes to the daemon (stdin), `end()` half-closes it (the output goes on). */
  input: Socket;
  /** Closes the connection at once. */
  destroy(): void;
}

/** The errno codes that mean nothing serves the socket. */
const UNREACHABLE = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'ENOTDIR', 'EACCES', 'EPERM']);

/** The Docker Engine API over one unix socket. */
export class DockerClient {
  readonly socketPath: string;
  private readonly agent: http.Agent;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly maxBodyBytes: number;

  constructor(options: DockerClientOptions) {
    this.socketPath = options.socketPath;
    this.prefix = `/${options.apiVersion ?? 'v1.41'}`;
    this.timeoutMs = options.requestTimeoutMs;
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  }

  /** One exchange; the parsed JSON body. Throws RuntimeApiError for a status ≥ 400 not in `accept`. */
  async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const what = `${method} ${path}`;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const { req, response } = this.send(method, path, options, this.agent);
    return bounded(req, timeoutMs, `${what}: no complete answer from ${this.socketPath} within ${timeoutMs} ms`, async () => {
      const res = await response;
      const raw = await readBody(res, this.maxBodyBytes, what);
      const body = parseBody(res, raw, what);
      if (res.statusCode === undefined || res.statusCode >= 400) {
        if (res.statusCode !== undefined && options.accept?.includes(res.statusCode)) return { status: res.statusCode, body: body as T | undefined };
        throw statusError(what, res.statusCode, body, raw);
      }
      return { status: res.statusCode, body: body as T | undefined };
    });
  }

  /**
   * A streamed response, once its headers arrived (the timeout covers the wait for them only). A
   * status ≥ 400 reads the (capped) body and throws RuntimeApiError. The caller consumes `res` and
   * calls `abort()` to end it early. Each stream has a connection of its own (not the pool's).
   */
  async stream(method: string, path: string, options: RequestOptions = {}): Promise<{ res: IncomingMessage; abort: () => void }> {
    const what = `${method} ${path}`;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const { req, response } = this.send(method, path, options, false);
    return bounded(req, timeoutMs, `${what}: no answer from ${this.socketPath} within ${timeoutMs} ms`, async () => {
      const res = await response;
      if (res.statusCode === undefined || res.statusCode >= 400) {
        const raw = await readBody(res, this.maxBodyBytes, what);
        throw statusError(what, res.statusCode, parseBody(res, raw, what, false), raw);
      }
      // A stream that fails later (daemon gone) ends `res` with an error or 'aborted'; the caller sees it there.
      req.on('error', () => {});
      return { res, abort: () => req.destroy() };
    });
  }

  /**
   * A hijacked connection (exec start, attach): the request is sent with `Connection: Upgrade` and
   * `Upgrade: tcp`, on a connection of its own. A 101 hands back the upgraded socket, a 200 the
   * response body (and its socket for input); a status ≥ 400 reads the (capped) body and throws
   * RuntimeApiError. The timeout covers the wait for the headers only.
   */
  async hijack(method: string, path: string, options: Omit<RequestOptions, 'accept' | 'signal'> = {}): Promise<HijackedConnection> {
    const what = `${method} ${path}`;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const req = this.open(method, path, options, false, { Connection: 'Upgrade', Upgrade: 'tcp' });
    try {
      return await bounded(
        req,
        timeoutMs,
        `${what}: no answer from ${this.socketPath} within ${timeoutMs} ms`,
        () =>
          new Promise<HijackedConnection>((resolve, reject) => {
            req.once('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
              // Paused before the head goes back in front: nothing is emitted before the caller listens.
              socket.pause();
              if (head.length > 0) socket.unshift(head);
              resolve({ status: res.statusCode ?? 101, headers: res.headers, output: socket, input: socket, destroy: () => socket.destroy() });
            });
            req.once('response', (res: IncomingMessage) => {
              const status = res.statusCode;
              if (status === undefined || status >= 400) {
                readBody(res, this.maxBodyBytes, what).then((raw) => reject(statusError(what, status, parseBody(res, raw, what, false), raw)), reject);
                return;
              }
              res.pause();
              resolve({
                status,
                headers: res.headers,
                output: res,
                input: res.socket,
                destroy: () => {
                  res.destroy();
                  req.destroy();
                },
              });
            });
            req.once('error', (err) => reject(this.connectionError(what, err)));
          }),
      );
    } finally {
      // Later failures (the daemon gone) show on the connection; the request has nothing more to say.
      req.on('error', () => {});
    }
  }

  /** Closes pooled connections (streams end with their `abort`). */
  close(): void {
    this.agent.destroy();
  }

  private send(method: string, path: string, options: RequestOptions, agent: http.Agent | false): { req: http.ClientRequest; response: Promise<IncomingMessage> } {
    const req = this.open(method, path, options, agent);
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', (err) => reject(this.connectionError(`${method} ${path}`, err)));
    });
    return { req, response };
  }

  /** Sends the request (its JSON body, if any); the caller listens for the answer. */
  private open(method: string, path: string, options: RequestOptions, agent: http.Agent | false, extraHeaders: Record<string, string> = {}): http.ClientRequest {
    const data = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const headers: Record<string, string | number> = { Host: 'docker', ...extraHeaders };
    if (data) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = data.length;
    }
    const req = http.request({
      socketPath: this.socketPath,
      method,
      path: `${this.prefix}${path}${queryString(options.query)}`,
      headers,
      agent,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    req.end(data);
    return req;
  }

  private connectionError(what: string, err: Error): Error {
    if (err instanceof TimeoutError || err instanceof RuntimeApiError) return err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code && UNREACHABLE.has(code)) return new RuntimeUnavailableError(unreachableMessage(this.socketPath, code), { cause: err });
    return new RuntimeApiError(`${what}: the connection to ${this.socketPath} failed before the answer: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * Runs `work`, the wait for `req`'s answer, bounded by `timeoutMs`: past it `req` is destroyed with a
 * TimeoutError saying `message`. When `work` fails, `req` is destroyed and the timeout's error, if it
 * fired, is what throws (not the connection error it caused).
 */
async function bounded<T>(req: http.ClientRequest, timeoutMs: number, message: string, work: () => Promise<T>): Promise<T> {
  let timedOut: TimeoutError | undefined;
  const timer = setTimeout(() => {
    timedOut = new TimeoutError(message);
    req.destroy(timedOut);
  }, timeoutMs);
  try {
    return await work();
  } catch (err) {
    req.destroy();
    throw timedOut ?? err;
  } finally {
    clearTimeout(timer);
  }
}

/** What to tell an operator whose runtime socket cannot be reached. */
export function unreachableMessage(socketPath: string, code: string): string {
  const why = code === 'EACCES' || code === 'EPERM' ? 'permission denied: run EdgeCore as a user that may use it (root, or the docker group)' : code;
  return (
    `the container runtime socket ${socketPath} is not reachable (${why}): start Docker (dockerd, which listens on /var/run/docker.sock) ` +
    `or Podman's API service (\`podman system service --time=0 unix://${socketPath}\`), or point the container runtime's socketPath at the socket it serves`
  );
}

function queryString(query: Query | undefined): string {
  if (!query) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    const s = typeof v === 'object' ? JSON.stringify(v) : typeof v === 'boolean' ? (v ? '1' : '0') : String(v);
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(s)}`);
  }
  return parts.length > 0 ? `?${parts.join('&')}` : '';
}

/** Reads a whole body, failing past `max` bytes (the connection is dropped, nothing more is read). */
function readBody(res: IncomingMessage, max: number, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        res.destroy();
        reject(new RuntimeApiError(`${what}: the answer is larger than ${max} bytes`, { status: res.statusCode }));
        return;
      }
      chunks.push(c);
    });
    res.once('end', () => resolve(Buffer.concat(chunks)));
    res.once('error', (err) => reject(new RuntimeApiError(`${what}: the answer was cut: ${errorMessage(err)}`, { cause: err, status: res.statusCode })));
    // Without 'end' first (a settled promise ignores this), the connection closed mid-body.
    res.once('close', () => reject(new RuntimeApiError(`${what}: the answer was cut`, { status: res.statusCode })));
  });
}

function parseBody(res: IncomingMessage, raw: Buffer, what: string, strict = true): unknown {
  if (raw.length === 0) return undefined;
  const type = String(res.headers['content-type'] ?? '');
  if (!type.includes('json')) return undefined;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (err) {
    if (!strict) return undefined;
    throw new RuntimeApiError(`${what}: the daemon answered malformed JSON (${errorMessage(err)})`, { status: res.statusCode, cause: err });
  }
}

function statusError(what: string, status: number | undefined, body: unknown, raw: Buffer): RuntimeApiError {
  const fromJson = typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string' ? (body as { message: string }).message : undefined;
  const daemonMessage = fromJson ?? (raw.length > 0 ? raw.toString('utf8', 0, Math.min(raw.length, 2048)).trim() : undefined);
  return new RuntimeApiError(`${what}: ${status}${daemonMessage ? ` ${daemonMessage}` : ''}`, { status, daemonMessage });
}

/** `err` is the daemon's answer `status` (e.g. a 404 from an inspect). */
export function isStatus(err: unknown, ...statuses: number[]): boolean {
  return err instanceof RuntimeApiError && err.status !== undefined && statuses.includes(err.status);
}

export type StreamName = 'stdin' | 'stdout' | 'stderr';

const STREAMS: Record<number, StreamName> = { 0: 'stdin', 1: 'stdout', 2: 'stderr' };

/**
 * Docker's multiplexed stream (logs and exec output of a container without a TTY): frames of an
 * 8-byte header — stream (0 stdin, 1 stdout, 2 stderr, 3 an error the daemon reports in the stream),
 * three zero bytes, the payload length as a big-endian uint32 — and the payload. Chunks may split
 * a frame anywhere; each frame is delivered whole, in order. A header that is not one (an unknown
 * stream byte, non-zero padding) or a frame over `maxFrameBytes` throws RuntimeApiError: the
 * stream cannot be resynchronized.
 */
export class FrameDemuxer {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(
    private readonly onFrame: (stream: StreamName, payload: Buffer) => void,
    private readonly maxFrameBytes = DEFAULT_MAX_BODY_BYTES,
    private readonly onSystemError?: (message: string) => void,
  ) {}

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.size += chunk.length;
    for (;;) {
      if (this.size < 8) return;
      const header = this.peek(8);
      const type = header[0] ?? 255;
      if (type > 3 || header[1] !== 0 || header[2] !== 0 || header[3] !== 0) {
        throw new RuntimeApiError(`malformed stream framing (header ${header.toString('hex')})`);
      }
      const length = header.readUInt32BE(4);
      if (length > this.maxFrameBytes) throw new RuntimeApiError(`stream frame of ${length} bytes is larger than ${this.maxFrameBytes}`);
      if (this.size < 8 + length) return;
      const frame = this.take(8 + length).subarray(8);
      if (type === 3) this.onSystemError?.(frame.toString('utf8'));
      else this.onFrame(STREAMS[type] ?? 'stdout', frame);
    }
  }

  /** Bytes of an unfinished frame still held (0 when the stream ended on a frame boundary). */
  get pending(): number {
    return this.size;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) return first.subarray(0, n);
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all.subarray(0, n);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    let out: Buffer;
    if (first && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.size -= n;
    return out;
  }
}

/**
 * A JSON-lines stream (events, pull progress): each `\n`-terminated line (a `\r` before it is
 * dropped; blank lines skipped) is parsed and handed to `onValue`, or to `onInvalid` when it is not
 * JSON. A line longer than `maxLineBytes` throws RuntimeApiError.
 */
export class JsonLines {
  private buffer: Buffer[] = [];
  private size = 0;

  constructor(
    private readonly onValue: (value: unknown) => void,
    private readonly onInvalid: (line: string) => void = () => {},
    private readonly maxLineBytes = 1024 * 1024,
  ) {}

  push(chunk: Uint8Array): void {
    let buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (;;) {
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        this.size += buf.length;
        if (this.size > this.maxLineBytes) throw new RuntimeApiError(`a stream line is longer than ${this.maxLineBytes} bytes`);
        if (buf.length > 0) this.buffer.push(buf);
        return;
      }
      const line = this.buffer.length > 0 ? Buffer.concat([...this.buffer, buf.subarray(0, nl)]) : buf.subarray(0, nl);
      this.buffer = [];
      this.size = 0;
      if (line.length > this.maxLineBytes) throw new RuntimeApiError(`a stream line is longer than ${this.maxLineBytes} bytes`);
      this.line(line);
      buf = buf.subarray(nl + 1);
    }
  }

  /** The stream ended: a last line without its `\n` is parsed too. */
  end(): void {
    if (this.buffer.length === 0) return;
    const line = Buffer.concat(this.buffer);
    this.buffer = [];
    this.size = 0;
    this.line(line);
  }

  private line(raw: Buffer): void {
    const text = raw.toString('utf8').trim();
    if (text === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.onInvalid(text);
      return;
    }
    this.onValue(value);
  }
}
