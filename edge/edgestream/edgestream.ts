/**
 * @module
 * EdgeStream: the edge's end of `kubectl logs`, `exec` and `attach`. EdgeHub hands it every stream
 * the cloud opens on the link ({@link EdgeStream.serve}); it answers from Edged's pods:
 * - a node streams only its own pods: a pod Edged does not run, or whose `spec.nodeName` is another
 *   node, is refused `LEDGE_ERR_NOT_FOUND`, as is an unknown container; a request that cannot be
 *   served as asked (no container named in a pod of several, a bad option, no previous run, a
 *   container not running for exec/attach) is refused `LEDGE_ERR_STREAM_REQUEST` with kubelet's
 *   wording. A stream is accepted only once its request checks out, so every refusal reaches the
 *   cloud before any byte;
 * - logs: the CRI log read incrementally (edge/edged/logs.ts), chunks of at most 16 KiB on the
 *   stdout channel, the next read only once the stream takes more (`send()` true or `drain`), so a
 *   slow reader holds the edge at about one stream window. `follow` goes on with what is appended
 *   (and across the log's rotation) until the container's run ends (not running, or a new run),
 *   then sends what was written until then and ends;
 * - exec/attach: the runtime's session wired to the channels (stdin 0, stdout 1, stderr 2, resize
 *   4, stdin EOF = 255 with [0]), the session paused while the stream's queue is full; at the end
 *   the metav1.Status on channel 3 (./status.ts), then the end. A session the runtime cannot start
 *   (the command does not exist, the container just stopped) ends the same way, with a Failure
 *   Status carrying the runtime's message, as a kubelet reports it after the upgrade;
 * - at most {@link MAX_EDGE_STREAMS} streams at once (more: `LEDGE_ERR_QUEUE_FULL`); a stream the
 *   cloud closes stops its reader (file handles, watch, timer) or cancels its session at once;
 *   {@link EdgeStream.close} aborts them all. One line per stream start and end (info for
 *   exec/attach, debug for logs).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import { DisconnectedError, ErrorCode, NotFoundError, QueueFullError, StreamRequestError, UnsupportedError, errorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { Channel, type StreamRequest } from '../../shared/protocol/index.js';
import type { Stream } from '../../shared/stream/index.js';
import { followCriLog, openCriLogReader, type CriLogReader, type FollowCriLogOptions } from '../edged/logs.js';
import type { ContainerRuntime, StreamOptions, StreamOutput, StreamSession, TerminalSize } from '../edged/runtime.js';
import { endStatus, failureStatus } from './status.js';

/** Streams one EdgeStream serves at once. */
export const MAX_EDGE_STREAMS = 16;
/** Stdin held while an exec/attach session is being started; past it the stream is paused (the cloud stops after its window). */
const PENDING_STDIN_MAX = 64 * 1024;
/** Largest log chunk sent. */
const LOG_CHUNK_BYTES = 16 * 1024;

/** What EdgeStream reads of one of Edged's pod workers (edge/edged/pod-worker.ts has it all). */
export interface PodWorkerView {
  readonly pod: V1Pod;
  readonly uid: string;
  /** The log file of a container's current (or previous) run; undefined before its first run. */
  logPath(container: string, previous?: boolean): string | undefined;
  /** The runtime id of a container's current run. */
  containerId(container: string): string | undefined;
  /** The runtime the pod runs on (undefined: none this node offers). */
  readonly runtime: ContainerRuntime | undefined;
  containerNames(): { init: string[]; main: string[] };
  /** Whether the container's current run is running. */
  isRunning(container: string): boolean;
}

export interface EdgeStreamOptions {
  nodeName: string;
  /** Edged's view of the pods it runs. */
  pods: { worker(namespace: string, name: string): PodWorkerView | undefined };
  /** How often a `logs -f` checks whether its container still runs, ms (default 1000). */
  followPollMs?: number;
}

/** A request that checked out: the pod's worker and the container. */
interface Target {
  request: StreamRequest;
  worker: PodWorkerView;
  container: string;
  /** `namespace/name`. */
  pod: string;
}

/** One stream being served. */
interface Served {
  stream: Stream;
  kind: StreamRequest['kind'];
  pod: string;
  container: string;
  started: number;
  /** Bytes sent to the cloud (stdout, stderr, log). */
  bytes: number;
  /** Bytes received (stdin). */
  received: number;
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

/** The request's options, as a kubelet validates them (the cloud forwards them as given). */
function checkRequest(r: StreamRequest): void {
  const bad = (message: string): never => {
    throw new StreamRequestError(message);
  };
  if (r.container !== undefined && (typeof r.container !== 'string' || r.container === '')) bad('container must be a non-empty string');
  for (const k of ['follow', 'timestamps', 'previous', 'stdin', 'stdout', 'stderr', 'tty'] as const) {
    if (r[k] !== undefined && typeof r[k] !== 'boolean') bad(`${k} must be true or false`);
  }
  if (r.kind === 'logs') {
    if (r.tailLines !== undefined && (!isInt(r.tailLines) || r.tailLines < 0)) bad(`tailLines: Invalid value: ${String(r.tailLines)}: must be greater than or equal to 0`);
    if (r.limitBytes !== undefined && (!isInt(r.limitBytes) || r.limitBytes < 1)) bad(`limitBytes: Invalid value: ${String(r.limitBytes)}: must be greater than 0`);
    if (r.sinceSeconds !== undefined && (!isInt(r.sinceSeconds) || r.sinceSeconds < 1)) bad(`sinceSeconds: Invalid value: ${String(r.sinceSeconds)}: must be greater than 0`);
    if (r.sinceTime !== undefined && (typeof r.sinceTime !== 'string' || Number.isNaN(Date.parse(r.sinceTime))))
      bad(`sinceTime: Invalid value: ${JSON.stringify(r.sinceTime)}: must be an RFC 3339 time`);
    if (r.sinceTime !== undefined && r.sinceSeconds !== undefined) bad('at most one of `sinceTime` or `sinceSeconds` may be specified');
  }
  if (r.kind === 'exec') {
    if (!Array.isArray(r.command) || r.command.length === 0) bad('you must specify at least one command for the container');
    if (!(r.command as unknown[]).every((a) => typeof a === 'string')) bad('command must be a list of strings');
  }
}

/** Serves the cloud's streams from Edged's pods. */
export class EdgeStream {
  private readonly served = new Set<Served>();
  private closed = false;
  private readonly pollMs: number;

  constructor(
    private readonly options: EdgeStreamOptions,
    private readonly log: Logger,
  ) {
    this.pollMs = options.followPollMs ?? 1000;
  }

  /** Streams being served now. */
  get active(): number {
    return this.served.size;
  }

  /** Takes a stream the cloud opened (not accepted yet): refuses it, or accepts and serves it. */
  serve(stream: Stream): void {
    const request = stream.request;
    const what = `${request.kind} ${request.namespace}/${request.pod}${request.container ? `/${request.container}` : ''}`;
    if (this.closed) return this.refuse(stream, what, new DisconnectedError(`node ${this.options.nodeName} is shutting down`));
    if (this.served.size >= MAX_EDGE_STREAMS) {
      return this.refuse(stream, what, new QueueFullError(`node ${this.options.nodeName} serves ${MAX_EDGE_STREAMS} streams already; try again when one ended`));
    }
    let target: Target;
    try {
      checkRequest(request);
      target = this.resolve(request);
      if (request.kind === 'logs') this.serveLogs(stream, target);
      else this.serveSession(stream, target);
    } catch (err) {
      this.refuse(stream, what, err);
    }
  }

  /** Aborts every stream it serves (EdgeCore's shutdown); later streams are refused. */
  close(): void {
    this.closed = true;
    for (const s of [...this.served]) s.stream.abort({ code: ErrorCode.Disconnected, message: `node ${this.options.nodeName} is shutting down` });
  }

  private refuse(stream: Stream, what: string, err: unknown): void {
    const code = errorCode(err);
    const message = errorMessage(err);
    this.log.debug(`stream refused: ${what}: ${message}`, { code, kind: stream.request.kind });
    stream.abort({ code, message });
  }

  /** The pod (this node's), the container (named, or the only one). */
  private resolve(request: StreamRequest): Target {
    const { namespace, pod: name } = request;
    const pod = `${namespace}/${name}`;
    const worker = this.options.pods.worker(namespace, name);
    if (!worker || worker.pod.spec?.nodeName !== this.options.nodeName) throw new NotFoundError(`pod ${pod} is not on node ${this.options.nodeName}`);
    const { init, main } = worker.containerNames();
    let container = request.container;
    if (container === undefined) {
      if (main.length !== 1) {
        let message = `a container name must be specified for pod ${name}, choose one of: [${main.join(' ')}]`;
        if (init.length > 0) message += ` or one of the init containers: [${init.join(' ')}]`;
        throw new StreamRequestError(message);
      }
      container = main[0]!;
    } else if (!main.includes(container) && !init.includes(container)) {
      throw new NotFoundError(`container ${container} is not valid for pod ${name}`);
    }
    return { request, worker, container, pod };
  }

  private track(stream: Stream, target: Target): Served {
    const s: Served = { stream, kind: target.request.kind, pod: target.pod, container: target.container, started: Date.now(), bytes: 0, received: 0 };
    this.served.add(s);
    const level = s.kind === 'logs' ? 'debug' : 'info';
    this.log[level](`stream started: ${s.kind} ${s.pod}/${s.container}`, { kind: s.kind, pod: s.pod, container: s.container, stream: stream.id });
    stream.on('close', (error) => {
      this.served.delete(s);
      const fields: Record<string, unknown> = { kind: s.kind, pod: s.pod, container: s.container, stream: stream.id, durationMs: Date.now() - s.started, bytes: s.bytes };
      if (s.kind !== 'logs') fields.stdinBytes = s.received;
      if (error) {
        fields.code = error.code;
        this.log[level](`stream ended: ${s.kind} ${s.pod}/${s.container}: ${error.message}`, fields);
      } else this.log[level](`stream ended: ${s.kind} ${s.pod}/${s.container}`, fields);
    });
    return s;
  }

  // ---- logs ----

  private serveLogs(stream: Stream, target: Target): void {
    const { request: r, worker, container } = target;
    const name = r.pod;
    let path: string | undefined;
    if (r.previous) {
      path = worker.logPath(container, true);
      if (!path || !(existsSync(path) || existsSync(`${path}.1`))) throw new StreamRequestError(`previous terminated container "${container}" in pod "${name}" not found`);
    } else {
      path = worker.logPath(container);
      if (!path) throw new StreamRequestError(`container "${container}" in pod "${name}" is waiting to start`);
    }
    const options: FollowCriLogOptions = { chunkBytes: LOG_CHUNK_BYTES, pollMs: this.pollMs, log: this.log };
    if (r.tailLines !== undefined) options.tailLines = r.tailLines;
    if (r.limitBytes !== undefined) options.limitBytes = r.limitBytes;
    if (r.timestamps) options.timestamps = true;
    if (r.sinceTime !== undefined) options.sinceTime = new Date(r.sinceTime);
    else if (r.sinceSeconds !== undefined) options.sinceTime = new Date(Date.now() - r.sinceSeconds * 1000);
    let reader: CriLogReader;
    if (r.follow) {
      // The run being followed: it ends when that run no longer runs, or another run took its place (kubelet's follow ends with its run's log).
      const id = worker.containerId(container);
      const running = () => {
        if (r.previous || id === undefined) return false;
        const now = this.options.pods.worker(r.namespace, r.pod);
        return now?.uid === worker.uid && now.containerId(container) === id && now.isRunning(container);
      };
      reader = followCriLog(path, { ...options, running });
    } else reader = openCriLogReader(path, options);

    stream.accept();
    const served = this.track(stream, target);
    let wake: (() => void) | undefined;
    stream.on('drain', () => wake?.());
    stream.on('close', () => {
      wake?.();
      void reader.close();
    });
    const writable = () =>
      new Promise<void>((resolve) => {
        wake = () => {
          wake = undefined;
          resolve();
        };
      });
    void (async () => {
      try {
        for await (const chunk of reader) {
          if (stream.closed) break;
          served.bytes += chunk.length;
          if (!stream.send(Channel.Stdout, chunk)) await writable();
          if (stream.closed) break;
        }
        stream.end();
      } catch (err) {
        if (stream.closed) return;
        this.log.warn(`logs of ${target.pod}/${container}: cannot read ${path}: ${errorMessage(err)}`, { code: ErrorCode.Runtime, path });
        stream.abort({ code: ErrorCode.Runtime, message: `cannot read the log of container ${container}: ${errorMessage(err)}` });
      } finally {
        await reader.close();
      }
    })();
  }

  // ---- exec, attach ----

  private serveSession(stream: Stream, target: Target): void {
    const { request: r, worker, container } = target;
    const runtime = worker.runtime;
    if (!runtime) throw new UnsupportedError(`the runtime of pod ${target.pod} is not available on node ${this.options.nodeName}`);
    const id = worker.containerId(container);
    if (id === undefined || !worker.isRunning(container)) throw new StreamRequestError(`container ${container} is not running`);
    const tty = r.tty === true;
    const wantStderr = r.stderr !== false;
    // A terminal has one output stream: stderr comes on stdout.
    const streams: StreamOptions = { stdin: r.stdin === true, stdout: r.stdout !== false, stderr: !tty && wantStderr, tty };
    if (!streams.stdin && !streams.stdout && !wantStderr) throw new StreamRequestError('you must specify at least one of stdin, stdout, stderr');

    stream.accept();
    const served = this.track(stream, target);
    let session: StreamSession | undefined;
    let ended = false;
    /** The latest terminal size (a resize that came before the session existed is applied once it does). */
    let size: TerminalSize | undefined;
    const pending: Uint8Array[] = [];
    let pendingBytes = 0;
    let pendingEof = false;
    let heldStream = false;
    /** The stream's queue is full: the session's output waits (set before the session exists, applied once it does). */
    let outputPaused = false;

    const send = (channel: number, chunk: Uint8Array) => {
      if (stream.closed || chunk.length === 0) return;
      served.bytes += chunk.length;
      if (!stream.send(channel, chunk) && !outputPaused && !stream.closed) {
        outputPaused = true;
        session?.pause();
      }
    };
    const output: StreamOutput = { stdout: (chunk) => send(Channel.Stdout, chunk), stderr: (chunk) => send(tty ? Channel.Stdout : Channel.Stderr, chunk) };
    stream.on('drain', () => {
      if (!outputPaused) return;
      outputPaused = false;
      session?.resume();
    });
    stream.on('message', (channel, payload) => {
      switch (channel) {
        case Channel.Stdin:
          served.received += payload.length;
          if (session) session.writeStdin(payload);
          else {
            pending.push(payload);
            pendingBytes += payload.length;
            if (pendingBytes >= PENDING_STDIN_MAX && !heldStream) {
              heldStream = true;
              stream.pause();
            }
          }
          return;
        case Channel.Resize: {
          const next = parseSize(payload);
          if (!next) {
            this.log.debug(`${r.kind} ${target.pod}/${container}: a resize message that is not {"Width":n,"Height":n} was ignored`, { code: ErrorCode.StreamProtocol });
            return;
          }
          size = next;
          session?.resize(next);
          return;
        }
        case Channel.Close:
          if (payload[0] !== Channel.Stdin) return;
          if (session) session.endStdin();
          else pendingEof = true;
          return;
        default:
          this.log.debug(`${r.kind} ${target.pod}/${container}: a message on channel ${channel} was ignored`, { code: ErrorCode.StreamProtocol });
      }
    });
    stream.on('close', () => {
      if (!ended) session?.cancel();
    });

    const finish = (status: string) => {
      ended = true;
      if (stream.closed) return;
      stream.send(Channel.Error, Buffer.from(status));
      stream.end();
    };
    // Nothing can have come from the cloud yet (it sends once it sees the acceptance): no size to pass.
    let started: Promise<StreamSession>;
    try {
      started = r.kind === 'exec' ? runtime.execStream(id, r.command!, streams, output) : runtime.attach(id, streams, output);
    } catch (err) {
      started = Promise.reject(err);
    }
    started.then(
      (s) => {
        session = s;
        if (stream.closed) {
          ended = true;
          s.cancel();
          return;
        }
        if (size) s.resize(size);
        for (const chunk of pending.splice(0)) s.writeStdin(chunk);
        pendingBytes = 0;
        if (pendingEof) s.endStdin();
        if (heldStream) {
          heldStream = false;
          stream.resume();
        }
        if (outputPaused) s.pause();
        void s.done.then(
          (end) => finish(endStatus(end)),
          (err: unknown) => finish(failureStatus(errorMessage(err))),
        );
      },
      (err: unknown) => {
        // Told to kubectl on the error channel, as a kubelet does once the stream is up.
        this.log.info(`${r.kind} ${target.pod}/${container}: the runtime could not start it: ${errorMessage(err)}`, { code: errorCode(err) });
        finish(failureStatus(errorMessage(err)));
      },
    );
  }
}

/** `{"Width":80,"Height":24}` (kubectl's TerminalSize) → a size; undefined when it is not one. */
function parseSize(payload: Uint8Array): TerminalSize | undefined {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object') return undefined;
  const { Width: width, Height: height } = v as { Width?: unknown; Height?: unknown };
  if (!isInt(width) || !isInt(height) || width < 0 || height < 0 || width > 0xffff || height > 0xffff) return undefined;
  return { width, height };
}
