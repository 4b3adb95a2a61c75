/**
 * @module
 * A unary gRPC client on node:http2 over a unix socket (h2c, prior knowledge), for Go gRPC,
 * grpc-js and our own servers. One HTTP/2 session per client, opened on the first call, replaced
 * after an error or GOAWAY, closed after idleTimeoutMs without calls; an idle session does not keep
 * the process alive. Each call sends `grpc-timeout` and is cut at its deadline.
 *
 * Every call rejects with DmiError: the server's grpc-status and grpc-message; 14 UNAVAILABLE
 * when the socket cannot be reached or the connection breaks; 4 DEADLINE_EXCEEDED; 1 CANCELLED
 * (the call's signal); 8 RESOURCE_EXHAUSTED for a response over maxMessageBytes; 13 INTERNAL
 * for a response that is not one valid message; HTTP statuses without grpc-status map as the
 * gRPC spec says (404 → 12, 429/502/503/504 → 14, 401 → 16, 403 → 7, 400 → 13, else 2).
 */
import http2 from 'node:http2';
import net from 'node:net';
import type { DmiError } from '../errors/index.js';
import {
  decodeGrpcMessage,
  decodeMessage,
  deviceManagerService,
  deviceMapperService,
  encodeMessage,
  FrameDecoder,
  formatGrpcTimeout,
  frameMessage,
  GrpcStatus,
  grpcError,
} from './codec.js';
import type { MethodSpec, ServiceSpec } from './codec.js';
import { defaultGrpcClientOptions } from './options.js';
import type { CallOptions, DeviceManagerClient, DeviceMapperClient, GrpcClientOptions } from './types.js';

/** A client of DeviceManagerService (what a mapper uses to reach EdgeCore's DMI socket). */
export function deviceManagerClient(socketPath: string, options?: GrpcClientOptions): DeviceManagerClient & { close(): void } {
  return makeClient(new Channel(socketPath, options), deviceManagerService) as unknown as DeviceManagerClient & { close(): void };
}

/** A client of DeviceMapperService (what EdgeCore uses to reach a mapper's socket). */
export function deviceMapperClient(socketPath: string, options?: GrpcClientOptions): DeviceMapperClient & { close(): void } {
  return makeClient(new Channel(socketPath, options), deviceMapperService) as unknown as DeviceMapperClient & { close(): void };
}

function makeClient(channel: Channel, service: ServiceSpec): Record<string, unknown> {
  const client: Record<string, unknown> = { close: () => channel.close() };
  for (const m of service.methods) {
    client[m.key] = (req: unknown, options?: CallOptions) => channel.unary(service, m, req, options);
  }
  return client;
}

/** gRPC's mapping of an HTTP status without grpc-status (doc/http-grpc-status-mapping.md). */
function statusFromHttp(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

const STATUS_NAMES = Object.fromEntries(Object.entries(GrpcStatus).map(([k, v]) => [v, k])) as Record<number, string>;

class Channel {
  private session: http2.ClientHttp2Session | undefined;
  private inFlight = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly timeoutMs: number;
  private readonly maxMessageBytes: number;
  private readonly idleTimeoutMs: number;

  constructor(
    readonly socketPath: string,
    options: GrpcClientOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? defaultGrpcClientOptions.timeoutMs;
    this.maxMessageBytes = options.maxMessageBytes ?? defaultGrpcClientOptions.maxMessageBytes;
    this.idleTimeoutMs = options.idleTimeoutMs ?? defaultGrpcClientOptions.idleTimeoutMs;
  }

  close(): void {
    this.closed = true;
    this.dropSession(true);
  }

  private dropSession(destroy: boolean): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const s = this.session;
    this.session = undefined;
    if (!s || s.destroyed) return;
    if (destroy) s.destroy();
    else s.close();
  }

  /** Stops using the current session: closed gracefully if it still lives (its calls finish), destroyed if broken. */
  private forgetSession(): void {
    const s = this.session;
    this.session = undefined;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (s && !s.destroyed && !s.closed) s.close();
  }

  /** Streams open now, and calls waiting for one (the server's SETTINGS_MAX_CONCURRENT_STREAMS). */
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  private streamLimit(): number {
    const announced = this.session?.remoteSettings?.maxConcurrentStreams;
    return Math.max(1, Math.min(announced ?? 100, 1000));
  }

  private startWaiting(): void {
    // A waiting call that has ended meanwhile (deadline, cancel) just returns: try the next.
    while (this.waiting.length > 0 && this.active < this.streamLimit()) this.waiting.shift()!();
  }

  private getSession(): http2.ClientHttp2Session {
    const existing = this.session;
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const socketPath = this.socketPath;
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
    this.session = session;
    const forget = () => {
      if (this.session === session) this.session = undefined;
    };
    // Errors reach the streams of this session as well; here we only stop reusing it.
    session.on('error', forget);
    session.once('close', forget);
    session.once('goaway', forget);
    return session;
  }

  private callStarted(): void {
    this.inFlight++;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.session?.ref();
  }

  private callEnded(): void {
    this.inFlight--;
    if (this.inFlight > 0) return;
    const s = this.session;
    if (!s) return;
    // An idle session must not keep the process alive, and is closed after a while.
    s.unref();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.inFlight === 0 && this.session === s) this.dropSession(false);
    }, this.idleTimeoutMs);
    this.idleTimer.unref();
  }

  unary(service: ServiceSpec, method: MethodSpec, req: unknown, options: CallOptions = {}): Promise<unknown> {
    const what = `DMI ${method.name} on ${this.socketPath}`;
    if (this.closed) return Promise.reject(grpcError(GrpcStatus.UNAVAILABLE, `${what}: client closed`));
    let body: Uint8Array;
    try {
      body = encodeMessage(method.request, (req ?? {}) as object);
    } catch (err) {
      return Promise.reject(err);
    }
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(grpcError(GrpcStatus.CANCELLED, `${what}: cancelled`));

    return new Promise<unknown>((resolve, reject) => {
      let settled = false;
      let stream: http2.ClientHttp2Stream | undefined;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => fail(grpcError(GrpcStatus.CANCELLED, `${what}: cancelled`), http2.constants.NGHTTP2_CANCEL);
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.callEnded();
      };
      const fail = (err: DmiError, rstCode?: number) => {
        if (settled) return;
        settled = true;
        cleanup();
        if (stream && !stream.closed && !stream.destroyed && rstCode !== undefined) stream.close(rstCode);
        reject(err);
      };
      const succeed = (value: unknown) => {
        if (settled) return;
        settled = true;
        cleanup();
        resolve(value);
      };

      this.callStarted();
      signal?.addEventListener('abort', onAbort, { once: true });
      // Beyond setTimeout's range (~24.8 days) Node would fire at once: no local timer then.
      if (timeoutMs <= 2 ** 31 - 1) {
        timer = setTimeout(() => fail(grpcError(GrpcStatus.DEADLINE_EXCEEDED, `${what}: deadline exceeded after ${timeoutMs} ms`), http2.constants.NGHTTP2_CANCEL), timeoutMs);
      }

      const headers: http2.OutgoingHttpHeaders = {
        ':method': 'POST',
        ':path': `/${service.name}/${method.name}`,
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': formatGrpcTimeout(timeoutMs),
        'grpc-accept-encoding': 'identity',
        'user-agent': 'ledge-dmi/1',
      };
      const frame = frameMessage(body);

      const attempt = (): void => {
        if (settled) return;
        if (this.active >= this.streamLimit()) {
          this.waiting.push(attempt);
          return;
        }
        this.active++;
        let released = false;
        const release = () => {
          if (released) return;
          released = true;
          this.active--;
          this.startWaiting();
        };
        let s: http2.ClientHttp2Stream;
        try {
          s = this.getSession().request(headers);
        } catch {
          // The session went away between our check and the request (GOAWAY, closing): one fresh try.
          this.forgetSession();
          try {
            s = this.getSession().request(headers);
          } catch (err) {
            this.forgetSession();
            release();
            return fail(grpcError(GrpcStatus.UNAVAILABLE, `${what}: ${(err as Error).message}`, undefined, err));
          }
        }
        stream = s;
        const decoder = new FrameDecoder(this.maxMessageBytes);
        const messages: Uint8Array[] = [];
        let httpStatus = 0;
        let grpcStatus: number | undefined;
        let grpcMessage: string | undefined;
        const readStatus = (h: http2.IncomingHttpHeaders) => {
          if (h['grpc-status'] === undefined) return;
          const n = Number(h['grpc-status']);
          grpcStatus = Number.isInteger(n) && n >= 0 ? n : GrpcStatus.UNKNOWN;
          const m = h['grpc-message'];
          grpcMessage = m === undefined ? undefined : decodeGrpcMessage(String(m));
        };
        // REFUSED_STREAM: the server did not start the call (over its stream limit): safe to send again.
        const refused = () => httpStatus === 0 && s.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;

        s.on('response', (h) => {
          httpStatus = Number(h[':status']);
          readStatus(h);
        });
        s.on('trailers', readStatus);
        s.on('data', (chunk: Buffer) => {
          if (settled) return;
          try {
            for (const m of decoder.push(chunk)) messages.push(m);
          } catch (err) {
            fail(err as DmiError, http2.constants.NGHTTP2_CANCEL);
          }
        });
        s.on('error', (err: NodeJS.ErrnoException) => {
          if (refused()) return;
          // Socket missing or refused, connection reset: the session is dead. A reset of this stream
          // alone (ERR_HTTP2_STREAM_*) leaves the session and the other calls on it alone.
          if (!String(err.code).startsWith('ERR_HTTP2_STREAM')) this.forgetSession();
          fail(grpcError(GrpcStatus.UNAVAILABLE, `${what}: ${err.message}`, undefined, err));
        });
        s.on('close', () => {
          release();
          if (settled) return;
          if (refused()) return attempt();
          if (grpcStatus === undefined) {
            if (httpStatus === 0) return fail(grpcError(GrpcStatus.UNAVAILABLE, `${what}: connection closed before a response (stream reset ${s.rstCode ?? ''})`));
            const status = httpStatus === 200 ? GrpcStatus.INTERNAL : statusFromHttp(httpStatus);
            return fail(grpcError(status, `${what}: response without grpc-status (HTTP ${httpStatus})`));
          }
          if (grpcStatus !== GrpcStatus.OK) {
            const peer = grpcMessage ?? '';
            return fail(grpcError(grpcStatus, `${what}: ${STATUS_NAMES[grpcStatus] ?? `status ${grpcStatus}`}${peer ? `: ${peer}` : ''}`, peer));
          }
          if (decoder.pending > 0 || messages.length !== 1) {
            return fail(grpcError(GrpcStatus.INTERNAL, `${what}: expected one response message, got ${messages.length}${decoder.pending ? ' and a partial frame' : ''}`));
          }
          try {
            succeed(decodeMessage(method.response, messages[0]!));
          } catch (err) {
            fail(err as DmiError);
          }
        });
        s.end(frame);
      };
      attempt();
    });
  }
}
