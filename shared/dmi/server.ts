/**
 * @module
 * A unary gRPC server on node:http2 (h2c, prior knowledge) over a unix socket, wire-compatible with
 * Go gRPC and grpc-js clients: `POST /<service>/<method>`, `content-type: application/grpc`
 * (`+proto` and parameters accepted), one length-prefixed request message, then a response of
 * `:status 200`, one message and trailers `grpc-status`/`grpc-message` (percent-encoded); errors
 * found before a message is sent go as a trailers-only response. Any `:authority` is accepted (Go
 * clients send the socket path or "localhost").
 *
 * Statuses we answer (besides the handler's): unknown service/method 12 UNIMPLEMENTED; compressed
 * request (grpc-encoding other than identity) 12 UNIMPLEMENTED; request message over
 * maxMessageBytes or the rate limit exceeded 8 RESOURCE_EXHAUSTED; a body that is not one valid
 * protobuf message 13 INTERNAL (as Go does for unmarshal failures); malformed grpc-timeout 13
 * INTERNAL; deadline passed 4 DEADLINE_EXCEEDED (the handler's signal is aborted); server closing
 * 14 UNAVAILABLE. Handler errors: DmiError → its grpcStatus, DeviceInvalidError → 3
 * INVALID_ARGUMENT, DeviceUnknownError → 5 NOT_FOUND, anything else → 2 UNKNOWN with its message
 * (as Go answers a plain error).
 *
 * The socket: a stale socket file (nobody answers) is replaced; a live server on it is an error
 * (two EdgeCores on one DMI socket would steal each other's mappers); a non-socket file is never
 * removed. The socket is chmod 0660. Problems are logged once per kind per minute, with a count.
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import http2 from 'node:http2';
import net from 'node:net';
import { DmiError, ErrorCode } from '../errors/index.js';
import { silentLogger } from '../log/index.js';
import type { Logger } from '../log/index.js';
import { decodeMessage, deviceManagerService, deviceMapperService, encodeGrpcMessage, encodeMessage, FrameDecoder, frameMessage, GrpcStatus, parseGrpcTimeout } from './codec.js';
import type { MethodSpec, ServiceSpec } from './codec.js';
import { fixAuthority } from './authority.js';
import { DMI_LOG_WINDOW_MS, DMI_SERVER_IDLE_SESSION_MS, defaultGrpcServerOptions } from './options.js';
import type { CallContext, DeviceManagerHandlers, DeviceMapperHandlers, GrpcServer, GrpcServerOptions } from './types.js';

/** Serves DeviceManagerService (EdgeCore's side of DMI) on `socketPath`. */
export function serveDeviceManager(socketPath: string, handlers: DeviceManagerHandlers, options?: GrpcServerOptions): Promise<GrpcServer> {
  return serveUnary(socketPath, deviceManagerService, handlers, options);
}

/** Serves DeviceMapperService (a mapper's side of DMI) on `socketPath`. */
export function serveDeviceMapper(socketPath: string, handlers: DeviceMapperHandlers, options?: GrpcServerOptions): Promise<GrpcServer> {
  return serveUnary(socketPath, deviceMapperService, handlers, options);
}

type Handler = (req: unknown, ctx: CallContext) => Promise<unknown>;

/** Logs a kind of problem once, then at most once per window with the number of repeats. */
export class ProblemLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  constructor(
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly windowMs = DMI_LOG_WINDOW_MS,
  ) {}

  warn(kind: string, msg: string, fields: Record<string, unknown>): void {
    const t = this.now();
    const seen = this.last.get(kind);
    if (seen && t - seen.at < this.windowMs) {
      seen.suppressed++;
      return;
    }
    // Bounded: distinct kinds are a fixed set per method, so the map cannot grow with traffic.
    this.last.set(kind, { at: t, suppressed: 0 });
    this.log.warn(msg, seen?.suppressed ? { ...fields, repeats: seen.suppressed } : fields);
  }
}

/** A token bucket over all calls: `rate` per second sustained, `burst` at once. */
export class TokenBucket {
  private tokens: number;
  private at: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {
    this.tokens = burst;
    this.at = now();
  }

  take(): boolean {
    if (this.rate <= 0) return true;
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.at) * this.rate) / 1000);
    this.at = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** gRPC status for an error thrown by a handler. */
export function statusOf(err: unknown): { status: number; message: string } {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof DmiError) return { status: err.grpcStatus, message: err.grpcMessage ?? message };
  const code = (err as { code?: unknown } | null)?.code;
  if (code === ErrorCode.DeviceInvalid) return { status: GrpcStatus.INVALID_ARGUMENT, message };
  if (code === ErrorCode.DeviceUnknown) return { status: GrpcStatus.NOT_FOUND, message };
  return { status: GrpcStatus.UNKNOWN, message };
}

/** Removes a stale socket at `path`; fails if a server answers there or it is not a socket. */
async function claimSocketPath(path: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new DmiError(`cannot serve DMI on ${path}: the path exists and is not a socket`, { grpcStatus: GrpcStatus.FAILED_PRECONDITION });
  const live = await new Promise<boolean>((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new DmiError(`cannot serve DMI on ${path}: another server is listening on it`, { grpcStatus: GrpcStatus.FAILED_PRECONDITION });
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

const MAX_TIMER_MS = 2 ** 31 - 1;
const GRPC_CONTENT_TYPE = /^application\/grpc(\+proto)?(;.*)?$/i;

interface Call {
  stream: http2.ServerHttp2Stream;
  abort: AbortController;
  done: boolean;
  timer?: NodeJS.Timeout;
}

async function serveUnary(socketPath: string, service: ServiceSpec, handlers: object, options: GrpcServerOptions = {}): Promise<GrpcServer> {
  const maxMessageBytes = options.maxMessageBytes ?? defaultGrpcServerOptions.maxMessageBytes;
  const now = options.now ?? Date.now;
  const log = (options.log ?? silentLogger).child({ module: 'dmi', service: service.name });
  const problems = new ProblemLog(log, now);
  const bucket = new TokenBucket(options.callsPerSecond ?? defaultGrpcServerOptions.callsPerSecond, options.burst ?? defaultGrpcServerOptions.burst, now);
  const methods = new Map<string, { spec: MethodSpec; handler: Handler }>();
  for (const spec of service.methods) {
    const fn = (handlers as Record<string, unknown>)[spec.key];
    if (typeof fn !== 'function') throw new TypeError(`DMI ${service.name}: handler ${spec.key} is missing`);
    methods.set(`/${service.name}/${spec.name}`, { spec, handler: (fn as Handler).bind(handlers) });
  }

  await claimSocketPath(socketPath);
  const server = http2.createServer({ settings: { maxConcurrentStreams: options.maxConcurrentStreams ?? defaultGrpcServerOptions.maxConcurrentStreams } });
  const calls = new Set<Call>();
  const sessions = new Set<http2.ServerHttp2Session>();
  let closing = false;

  /** Ends the call with a status. Trailers-only when nothing was sent yet. */
  function finish(call: Call, status: number, message: string, body?: Uint8Array): void {
    if (call.done) return;
    call.done = true;
    calls.delete(call);
    if (call.timer) clearTimeout(call.timer);
    const { stream } = call;
    if (stream.destroyed || stream.closed) return;
    const trailers: http2.OutgoingHttpHeaders = { 'grpc-status': String(status) };
    if (message) trailers['grpc-message'] = encodeGrpcMessage(message);
    try {
      if (body === undefined) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, { endStream: true });
      } else {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': 'identity' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers(trailers));
        stream.end(frameMessage(body));
      }
      // The request side may still be open (an early error): stop reading it once our answer is out.
      if (!stream.readableEnded) stream.once('finish', () => stream.close(http2.constants.NGHTTP2_NO_ERROR));
    } catch (err) {
      // The peer went away between the check and the write: nothing to answer.
      stream.destroy();
      log.debug('DMI response not sent', { err });
    }
  }

  function early(stream: http2.ServerHttp2Stream, httpStatus: number, status: number, message: string): void {
    if (stream.destroyed || stream.closed) return;
    try {
      stream.respond({ ':status': httpStatus, 'content-type': 'application/grpc', 'grpc-status': String(status), 'grpc-message': encodeGrpcMessage(message) }, { endStream: true });
      if (!stream.readableEnded) stream.once('finish', () => stream.close(http2.constants.NGHTTP2_NO_ERROR));
    } catch {
      stream.destroy();
    }
  }

  function onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => {}); // a reset by the peer surfaces as 'close'; nothing to log per call
    const path = String(headers[':path'] ?? '');
    if (headers[':method'] !== 'POST') {
      problems.warn('method', 'DMI request with a method other than POST refused', { method: headers[':method'], path, code: ErrorCode.Dmi });
      return early(stream, 405, GrpcStatus.INTERNAL, `gRPC requires POST, got ${headers[':method']}`);
    }
    const contentType = String(headers['content-type'] ?? '');
    if (!GRPC_CONTENT_TYPE.test(contentType)) {
      problems.warn('content-type', 'DMI request with a non-gRPC content-type refused', { contentType, path, code: ErrorCode.Dmi });
      return early(stream, 415, GrpcStatus.INTERNAL, `invalid gRPC request content-type ${JSON.stringify(contentType)}`);
    }
    const call: Call = { stream, abort: new AbortController(), done: false };
    calls.add(call);
    stream.once('close', () => {
      // The caller cancelled or the connection went: the handler's work is no longer wanted.
      if (!call.done) {
        call.done = true;
        calls.delete(call);
        if (call.timer) clearTimeout(call.timer);
      }
      call.abort.abort(new DmiError('call cancelled by the client', { grpcStatus: GrpcStatus.CANCELLED }));
    });
    if (closing) return finish(call, GrpcStatus.UNAVAILABLE, 'server is shutting down');
    const method = methods.get(path);
    if (!method) {
      const svc = path.split('/')[1] ?? '';
      problems.warn(`unimplemented ${path.slice(0, 200)}`, 'DMI call to an unknown method', { path: path.slice(0, 200), code: ErrorCode.Dmi });
      return finish(call, GrpcStatus.UNIMPLEMENTED, svc === service.name ? `unknown method ${path.split('/')[2] ?? ''} for service ${svc}` : `unknown service ${svc}`);
    }
    const encoding = headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity') {
      problems.warn('compressed', 'DMI call with compression refused (identity only)', { path, encoding, code: ErrorCode.Dmi });
      return finish(call, GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${String(encoding)} is not supported (identity only)`);
    }
    let deadline: number | undefined;
    const timeoutHeader = headers['grpc-timeout'];
    if (timeoutHeader !== undefined) {
      const ms = parseGrpcTimeout(String(timeoutHeader));
      if (ms === undefined) {
        problems.warn('timeout', 'DMI call with a malformed grpc-timeout refused', { path, timeout: timeoutHeader, code: ErrorCode.Dmi });
        return finish(call, GrpcStatus.INTERNAL, `malformed grpc-timeout ${JSON.stringify(timeoutHeader)}`);
      }
      deadline = now() + ms;
      // Beyond setTimeout's range (~24.8 days) a deadline is as good as none (Node would fire at once).
      if (ms <= MAX_TIMER_MS) {
        call.timer = setTimeout(() => {
          finish(call, GrpcStatus.DEADLINE_EXCEEDED, 'deadline exceeded');
          call.abort.abort(new DmiError('deadline exceeded', { grpcStatus: GrpcStatus.DEADLINE_EXCEEDED }));
        }, ms);
      }
    }
    if (!bucket.take()) {
      problems.warn('rate', 'DMI calls over the rate limit refused', {
        path,
        callsPerSecond: options.callsPerSecond ?? defaultGrpcServerOptions.callsPerSecond,
        code: ErrorCode.Dmi,
      });
      return finish(call, GrpcStatus.RESOURCE_EXHAUSTED, 'too many requests');
    }

    const decoder = new FrameDecoder(maxMessageBytes);
    const messages: Uint8Array[] = [];
    stream.on('data', (chunk: Buffer) => {
      if (call.done) return;
      try {
        for (const m of decoder.push(chunk)) messages.push(m);
        if (messages.length > 1) throw new DmiError('unary call with more than one request message', { grpcStatus: GrpcStatus.INTERNAL });
      } catch (err) {
        const { status, message } = statusOf(err);
        problems.warn(`frame ${status}`, 'DMI request refused', { path, status, reason: message, code: ErrorCode.Dmi });
        finish(call, status, message);
      }
    });
    stream.once('end', () => {
      if (call.done) return;
      if (decoder.pending > 0 || messages.length !== 1) {
        const message = decoder.pending > 0 ? 'request ended inside a gRPC message frame' : 'unary call without a request message';
        problems.warn('frame incomplete', 'DMI request refused', { path, status: GrpcStatus.INTERNAL, reason: message, code: ErrorCode.Dmi });
        return finish(call, GrpcStatus.INTERNAL, message);
      }
      let req: unknown;
      try {
        req = decodeMessage(method.spec.request, messages[0]!);
      } catch (err) {
        const { status, message } = statusOf(err);
        problems.warn('decode', 'DMI request that does not decode refused', { path, status, reason: message, code: ErrorCode.Dmi });
        return finish(call, status, `grpc: error unmarshalling request: ${message}`);
      }
      const ctx: CallContext = deadline === undefined ? { signal: call.abort.signal } : { signal: call.abort.signal, deadline };
      let result: Promise<unknown>;
      try {
        result = Promise.resolve(method.handler(req, ctx));
      } catch (err) {
        result = Promise.reject(err);
      }
      result.then(
        (res) => {
          if (call.done) return;
          let body: Uint8Array;
          try {
            body = encodeMessage(method.spec.response, (res ?? {}) as object);
          } catch (err) {
            problems.warn(`encode ${path}`, 'DMI handler returned a response that does not encode', { path, err, code: ErrorCode.Dmi });
            return finish(call, GrpcStatus.INTERNAL, (err as Error).message);
          }
          finish(call, GrpcStatus.OK, '', body);
        },
        (err: unknown) => {
          const { status, message } = statusOf(err);
          if (status === GrpcStatus.UNKNOWN || status === GrpcStatus.INTERNAL) {
            // Expected refusals (NOT_FOUND, INVALID_ARGUMENT, …) are the handler's to log; a crash is ours.
            problems.warn(`handler ${path}`, 'DMI handler failed', { path, err, code: (err as { code?: unknown })?.code ?? ErrorCode.Dmi });
          }
          finish(call, status, message);
        },
      );
    });
  }

  server.on('stream', onStream);
  server.on('session', (session) => {
    sessions.add(session);
    // A connection nobody uses is closed (gracefully: a Go client just dials again).
    session.setTimeout(DMI_SERVER_IDLE_SESSION_MS, () => session.close());
    session.on('error', (err) => problems.warn('session', 'DMI connection error', { err, code: ErrorCode.Dmi }));
    session.once('close', () => sessions.delete(session));
  });
  // A client speaking something other than HTTP/2 prior knowledge, or garbage.
  server.on('sessionError', (err) => problems.warn('session', 'DMI connection error', { err, code: ErrorCode.Dmi }));

  // Connections reach the HTTP/2 server through the :authority fix (./authority.ts).
  const listener = net.createServer((socket) => server.emit('connection', fixAuthority(socket)));
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new DmiError(`cannot listen on ${socketPath}: ${err.message}`, { cause: err, grpcStatus: GrpcStatus.UNAVAILABLE }));
    listener.once('error', onError);
    listener.listen(socketPath, () => {
      listener.off('error', onError);
      resolve();
    });
  });
  listener.on('error', (err) => problems.warn('server', 'DMI server error', { err, code: ErrorCode.Dmi }));
  await chmod(socketPath, 0o660);
  const { ino } = await lstat(socketPath);
  log.debug('DMI server listening', { socketPath });

  let closed: Promise<void> | undefined;
  return {
    socketPath,
    close(): Promise<void> {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => listener.close(() => resolve()));
        for (const call of [...calls]) {
          finish(call, GrpcStatus.UNAVAILABLE, 'server is shutting down');
          call.abort.abort(new DmiError('server is shutting down', { grpcStatus: GrpcStatus.UNAVAILABLE }));
        }
        for (const s of sessions) s.close();
        // Sessions whose peer never closes its side: give the answers a moment to flush, then cut.
        const cut = setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, 1000);
        cut.unref();
        await stopped;
        clearTimeout(cut);
        // Remove the socket file unless another server has replaced it meanwhile.
        const st = await lstat(socketPath).catch(() => undefined);
        if (st?.ino === ino) await unlink(socketPath).catch(() => {});
      })();
      return closed;
    },
  };
}
