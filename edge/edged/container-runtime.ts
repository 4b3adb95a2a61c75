/**
 * @module
 * The `container` runtime: real containers through the Docker Engine API (v1.41) over a unix
 * socket (./docker-api.ts), which Docker and Podman (`podman system service`) both serve.
 *
 * A pod's sandbox is an infra container (the pause image) holding the pod's network (and IPC, and on
 * Podman UTS) namespace, with the pod's ports published on it; every container of the pod joins it
 * (`container:<infra>`), so they share localhost and the pod IP, as in a kubelet's dockershim.
 * Everything the runtime makes is labelled (`io.ledge.*`, {@link LABELS}) with the pod and container
 * it was made for, its attempt and its log file, and found again by label filters: containers
 * outlive EdgeCore, and a new runtime on the same socket lists them as before.
 *
 * Logs: each started container's output is streamed from the daemon (`/logs?follow`) into the CRI
 * log file Edged gave (CriLogWriter). A container found running (or exited with logs not copied) by
 * a runtime that did not start it, after an EdgeCore restart, is re-attached from where its file
 * ends: `since` the last record's time, and the bytes the file already holds at that very time are
 * skipped per stream, so nothing is copied twice when each record the daemon sent became one line
 * (true for Docker's and Podman's streams; a TTY container's raw stream has no timestamps, its
 * last records may be copied twice). The copy is bounded at `containerLogMaxBytesPerSecond` of records
 * with a burst (./log-rate.ts): past it the daemon's stream is paused (the daemon keeps the rest, the
 * copy catches up later; one info line per throttling episode, at most once a minute per container);
 * removing a container ends the limit, so its last `logDrainMs` copy what is left at full speed.
 *
 * Interactive sessions (kubectl exec/attach, {@link DockerEngineRuntime.execStream} and
 * {@link DockerEngineRuntime.attach}) run over a hijacked connection (DockerClient.hijack): the
 * process's output demultiplexed (raw with a TTY), stdin written to the connection and its end a
 * half-close (the output after it is still delivered), resizes through the daemon. Podman 4.3 answers
 * the hijack 101 and honours a start body's `h`/`w` (the TTY's size before the process runs); Docker
 * gets a resize right after the start (retried briefly until the process runs). With a TTY, the
 * half-close gives the process no EOF (a terminal's EOF is a ^D byte, which kubectl sends itself).
 * A command that cannot be started ends the session at once with exit code 126 or 127 and the
 * runtime's message as `error` (the runtime's message is recognised in the stream, ahead of any
 * output of the process, and not delivered as output). The Docker Engine API cannot kill an exec'd
 * process, and closing its connection does not end it (Docker and Podman): cancel() closes the
 * connection, then kills the process and its descendants with SIGKILL by the pid the daemon reports,
 * only when that pid is visible from here and in the container's pid namespace (a local rootful
 * daemon: Podman as root, Docker); otherwise the process may run on in the container, and the
 * session's `error` says so. An attach's cancel() detaches; the container runs on (but Podman 4.3
 * closes a non-TTY container's stdin when an attach with stdin goes, whatever StdinOnce says, and
 * ignores detach keys: ctrl-p ctrl-q reach the process. Docker, not tried here, documents closing it
 * only with StdinOnce, and its default detach keys apply to an attach with stdin, as under dockershim).
 *
 * Restart policy, backoff, probes: Edged's pod worker. Containers are created with restart policy
 * `no`. Kubelet reasons are thrown as RuntimeError (`ErrImagePull`, `ErrImageNeverPull`,
 * `InvalidImageName`, `CreateContainerError`, `RunContainerError`, `CreatePodSandboxError`); a daemon
 * that cannot be reached throws RuntimeUnavailableError, a refused request RuntimeApiError.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { backoff as makeBackoff } from '../../shared/backoff/index.js';
import { ErrorCode, errorMessage, RuntimeApiError, TimeoutError } from '../../shared/errors/index.js';
import { silentLogger, type Logger } from '../../shared/log/index.js';
import { DockerClient, FrameDemuxer, type HijackedConnection, JsonLines, type StreamName } from './docker-api.js';
import { CRI_RECORD_HEADER_BYTES, LogThrottle, NoticeLimiter, formatRate, type LogRateLimit } from './log-rate.js';
import { CriLogWriter, parseCriLine } from './logs.js';
import { defaultContainerRuntimeOptions } from './options.js';
import {
  RuntimeError,
  type ContainerConfig,
  type ContainerRuntime,
  type ExecResult,
  type ImageInfo,
  type PullPolicy,
  type RuntimeContainerState,
  type RuntimeContainerStatus,
  type RuntimeEvent,
  type SandboxConfig,
  type SandboxStatus,
  type StreamEnd,
  type StreamOptions,
  type StreamOutput,
  type StreamSession,
  type TerminalSize,
} from './runtime.js';

/** Options; defaults in `defaultContainerRuntimeOptions` (./options.ts). */
export interface ContainerRuntimeOptions {
  /** The daemon's API socket. Default `/var/run/docker.sock` (Docker); Podman's rootful one is `/run/podman/podman.sock`. */
  socketPath?: string;
  /** The infra container's image (pulled IfNotPresent). Default `registry.k8s.io/pause:3.10`. */
  pauseImage?: string;
  /** Timeout of one API request, ms (a stop adds its grace period). Default 120000 (kubelet's runtime-request-timeout). */
  requestTimeoutMs?: number;
  /** A pull that reports no progress this long fails with ErrImagePull, ms. Default 60000 (dockershim's image-pull-progress-deadline). */
  pullProgressDeadlineMs?: number;
  /** First delay before the event stream is reconnected, ms. Default 500. */
  eventBackoffBaseMs?: number;
  /** Largest delay between reconnects of the event stream, ms. Default 30000. */
  eventBackoffMaxMs?: number;
  /** How long removing a container waits for its log copy to finish, ms. Default 2000. */
  logDrainMs?: number;
  /** Most bytes of stdout (and of stderr) one exec keeps; the rest is read and dropped. Default 1 MiB. */
  maxExecOutputBytes?: number;
  /** Most bytes of CRI log records the copy of a container's output may write per second (./log-rate.ts); past it the daemon's stream is paused; 0: unlimited. Default 1 MiB/s. */
  containerLogMaxBytesPerSecond?: number;
  /** What a container may print at once above that rate, bytes of records. Default 4 MiB. */
  containerLogBurstBytes?: number;
  log?: Logger;
}

/** The labels the runtime puts on what it makes (and finds it again by). */
export const LABELS = {
  podUid: 'io.ledge.pod.uid',
  podName: 'io.ledge.pod.name',
  podNamespace: 'io.ledge.pod.namespace',
  /** `true` on a sandbox's infra container. */
  sandbox: 'io.ledge.sandbox',
  /** On a container: its sandbox's id. */
  sandboxId: 'io.ledge.sandbox.id',
  containerName: 'io.ledge.container.name',
  attempt: 'io.ledge.container.attempt',
  logPath: 'io.ledge.container.log-path',
  logMaxBytes: 'io.ledge.container.log-max-bytes',
} as const;

/** Docker's zero time: a container not started (or not finished) yet. */
const ZERO_TIME = '0001-01-01T00:00:00Z';

/** Event actions that change what Edged reports (exec, attach, kill and the like do not). */
const EVENT_ACTIONS = new Set(['start', 'die', 'oom', 'destroy', 'remove']);

/** A container whose log stream could not be opened is tried again after this long, ms (not at every list). */
const LOG_RETRY_MS = 10_000;

// ---- The daemon's shapes (the fields read) ---------------------------------------------------------

interface DockerNetworks {
  IPAddress?: string;
  Networks?: Record<string, { IPAddress?: string } | null> | null;
}

interface ContainerSummary {
  Id: string;
  Labels?: Record<string, string> | null;
  State?: string;
  Created?: number;
  NetworkSettings?: DockerNetworks | null;
}

interface ContainerInspect {
  Id: string;
  Created?: string;
  Image?: string;
  Config?: { Image?: string; Labels?: Record<string, string> | null; Tty?: boolean; OpenStdin?: boolean } | null;
  State?: { Status?: string; Running?: boolean; Pid?: number; OOMKilled?: boolean; ExitCode?: number; Error?: string; StartedAt?: string; FinishedAt?: string } | null;
  HostConfig?: { NetworkMode?: string } | null;
  NetworkSettings?: DockerNetworks | null;
}

interface DockerEvent {
  Type?: string;
  Action?: string;
  status?: string;
  id?: string;
  time?: number;
  Actor?: { ID?: string; Attributes?: Record<string, string> | null } | null;
}

interface ExecInspect {
  Running?: boolean;
  ExitCode?: number | null;
  Pid?: number;
}

interface VersionInfo {
  Version?: string;
  Components?: { Name?: string; Version?: string }[] | null;
}

// ---- Image references ------------------------------------------------------------------------------

const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|-+)';
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*(?::[0-9]+)?`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
/** The grammar of a Docker image reference (distribution's reference package): `[domain/]path[:tag][@digest]`. */
const REFERENCE = new RegExp(`^((?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*)(?::(${TAG}))?(?:@(${DIGEST}))?$`);
/** Longest repository name a registry accepts. */
const NAME_MAX = 255;

/** An image reference split for a pull, or undefined when it is not one (InvalidImageName). */
export function parseImageReference(image: string): { name: string; tag?: string; digest?: string } | undefined {
  const m = REFERENCE.exec(image);
  if (!m?.[1] || m[1].length > NAME_MAX) return undefined;
  return { name: m[1], ...(m[2] ? { tag: m[2] } : {}), ...(m[3] ? { digest: m[3] } : {}) };
}

// ---- Helpers ---------------------------------------------------------------------------------------

const enc = encodeURIComponent;

/** A Docker container name from parts: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, so anything else becomes `-`. */
function dockerName(parts: (string | number)[]): string {
  return parts
    .map((p) => String(p).replace(/[^a-zA-Z0-9.-]/g, '-'))
    .join('_')
    .replace(/^[^a-zA-Z0-9]+/, '');
}

const suffix = () => randomBytes(4).toString('hex');

function isoTime(t: string | number | undefined): string | undefined {
  if (t === undefined || t === '' || t === ZERO_TIME) return undefined;
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  if (Number.isNaN(d.getTime()) || d.getUTCFullYear() <= 1) return undefined;
  return d.toISOString();
}

function ipOf(n: DockerNetworks | null | undefined): string | undefined {
  if (!n) return undefined;
  if (n.IPAddress) return n.IPAddress;
  for (const net of Object.values(n.Networks ?? {})) if (net?.IPAddress) return net.IPAddress;
  return undefined;
}

function stateOf(status: string | undefined): RuntimeContainerState {
  switch (status) {
    case 'created':
    case 'configured': // Podman: created, not initialized
    case 'initialized':
      return 'created';
    case 'running':
    case 'paused':
    case 'restarting':
    case 'stopping':
      return 'running';
    case 'exited':
    case 'stopped': // Podman
    case 'dead':
      return 'exited';
    default:
      return 'unknown';
  }
}

/** `fn` over `items`, at most `limit` at once, results in order. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** A kubelet-reason error from a refused request; unreachable daemons and timeouts stay what they are (Edged retries). */
function reasoned(reason: ConstructorParameters<typeof RuntimeError>[0], err: unknown, prefix = ''): unknown {
  if (err instanceof RuntimeApiError && err.status !== undefined) return new RuntimeError(reason, `${prefix}${err.daemonMessage ?? err.message}`, { cause: err });
  return err;
}

// ---- Log cursor: where a CRI log file ends, to re-attach after a restart ------------------------------

/** The last record's time (ms) in a CRI log, and the bytes per stream the file holds at exactly that time. */
export interface LogCursor {
  ms: number;
  /** The daemon's `since` (seconds with 9 fraction digits). */
  since: string;
  skip: Record<'stdout' | 'stderr', number>;
}

/** How much of a log's end is read for its cursor. */
const CURSOR_TAIL_BYTES = 256 * 1024;

/** The cursor of the CRI log at `path` (or, when that is empty or missing, of `<path>.1`); undefined for no records. */
export function logCursor(path: string): LogCursor | undefined {
  return tailCursor(path) ?? tailCursor(`${path}.1`);
}

function tailCursor(path: string): LogCursor | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return undefined;
    const n = Math.min(size, CURSOR_TAIL_BYTES);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, size - n);
    const lines: Buffer[] = [];
    let start = 0;
    for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a, start)) {
      lines.push(buf.subarray(start, nl));
      start = nl + 1;
    }
    if (size > n) lines.shift(); // the window may start mid-line; what follows the last newline is torn
    const records = lines.map((l) => parseCriLine(l)).filter((r) => r !== undefined);
    const last = records[records.length - 1];
    if (!last) return undefined;
    const ms = last.time.getTime();
    const skip = { stdout: 0, stderr: 0 };
    for (const r of records) if (r.time.getTime() === ms) skip[r.stream] += r.content.length + (r.partial ? 0 : 1);
    const since = `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, '0')}000000`;
    return { ms, since, skip };
  } finally {
    closeSync(fd);
  }
}

/** A `<RFC3339Nano> ` prefix of a record the daemon sent with timestamps=1: the time and where the content starts. */
function splitTimestamp(payload: Buffer): { time: Date; content: Buffer } | undefined {
  const sp = payload.indexOf(0x20);
  if (sp < 20 || sp > 40) return undefined;
  const time = new Date(payload.toString('latin1', 0, sp));
  if (Number.isNaN(time.getTime())) return undefined;
  return { time, content: payload.subarray(sp + 1) };
}

// ---- Log followers ---------------------------------------------------------------------------------

/** Copies one container's output from the daemon into its CRI log file until the stream ends or stop() is called. */
class LogFollower {
  readonly done: Promise<'ended' | 'failed' | 'stopped'>;
  /** Why it failed, for the runtime's log line. */
  error: unknown;
  private abort: (() => void) | undefined;
  private stopped = false;
  private readonly controller = new AbortController();
  private throttle: LogThrottle | undefined;
  private unlimited = false;

  constructor(
    private readonly api: DockerClient,
    private readonly id: string,
    private readonly logPath: string,
    private readonly maxBytes: number,
    private readonly tty: boolean,
    private readonly cursor: LogCursor | undefined,
    private readonly log: Logger,
    /** The log ingest limit, and the notice of a throttling episode. */
    private readonly rate: LogRateLimit & { onThrottled: () => void },
  ) {
    this.done = this.run();
  }

  stop(): void {
    this.stopped = true;
    this.throttle?.close();
    this.controller.abort();
    this.abort?.();
  }

  /** Ends the rate limit: what the daemon still holds is copied at full speed (the container is being removed). */
  unthrottle(): void {
    this.unlimited = true;
    this.throttle?.release();
  }

  private async run(): Promise<'ended' | 'failed' | 'stopped'> {
    let res: IncomingMessage;
    try {
      const s = await this.api.stream('GET', `/containers/${enc(this.id)}/logs`, {
        query: { follow: true, stdout: true, stderr: true, timestamps: !this.tty, since: this.cursor?.since },
        signal: this.controller.signal,
      });
      res = s.res;
      this.abort = s.abort;
    } catch (err) {
      this.error = err;
      return this.stopped ? 'stopped' : 'failed';
    }
    if (this.stopped) {
      this.abort();
      return 'stopped';
    }
    const writer = new CriLogWriter(this.logPath, this.maxBytes, this.log);
    const cursor = this.cursor;
    const skip = { stdout: cursor?.skip.stdout ?? 0, stderr: cursor?.skip.stderr ?? 0 };
    let lastTime: Date | undefined;
    const record = (stream: StreamName, payload: Buffer) => {
      if (stream === 'stdin') return;
      if (this.tty) {
        writer.write('stdout', payload);
        return;
      }
      const stamped = splitTimestamp(payload);
      let content = stamped?.content ?? payload;
      if (stamped && cursor) {
        const ms = stamped.time.getTime();
        if (ms < cursor.ms) return;
        if (ms === cursor.ms && skip[stream] > 0) {
          const n = Math.min(skip[stream], content.length);
          skip[stream] -= n;
          content = content.subarray(n);
          if (content.length === 0) return;
        }
      }
      if (stamped) lastTime = stamped.time;
      writer.write(stream, content, stamped?.time);
    };
    const demux = this.tty ? undefined : new FrameDemuxer(record, undefined, (message) => this.log.warn('container log stream error', { container: this.id, message }));
    // The log ingest limit: past it the daemon's stream is paused (the daemon keeps the rest), what was read beyond it waits in the stream.
    // Its framed stream carries a header and a timestamp per line, about what a CRI record adds; a TTY's raw stream does not.
    const throttle = new LogThrottle({
      ...this.rate,
      pause: () => res.pause(),
      resume: () => res.resume(),
      lineOverheadBytes: this.tty ? CRI_RECORD_HEADER_BYTES : 0,
    });
    this.throttle = throttle;
    if (this.unlimited) throttle.release();
    const outcome = await new Promise<'ended' | 'failed' | 'stopped'>((resolve) => {
      res.on('data', (b: Buffer) => {
        try {
          const n = throttle.admit(b);
          const chunk = n === b.length ? b : b.subarray(0, n);
          if (n < b.length) res.unshift(b.subarray(n));
          if (chunk.length === 0) return;
          if (demux) demux.push(chunk);
          else record('stdout', chunk);
        } catch (err) {
          this.error = err;
          this.abort?.();
          resolve('failed');
        }
      });
      res.once('end', () => resolve('ended'));
      res.once('error', () => resolve(this.stopped ? 'stopped' : 'failed'));
      res.once('close', () => resolve(this.stopped ? 'stopped' : 'failed'));
    });
    throttle.close();
    writer.close(lastTime);
    return outcome;
  }
}

// ---- Interactive sessions (kubectl exec / attach) over a hijacked connection -------------------------

/**
 * A chunk the daemon (not the process) writes into an exec's stream when the command cannot be
 * started: Podman's `Error: runc: exec failed: …` (and `Error: read unixpacket …` after it), Docker's
 * `OCI runtime exec failed: …`.
 */
const DAEMON_ERROR = /^(?:Error: )?(?:OCI runtime|runc: |crun: |read unixpacket )/;

/** How long an exec's exit code (or an attached container's exit) is waited for once its stream ended, ms. */
const EXIT_WAIT_MS = 3000;
const EXIT_POLL_MS = 20;
/** Tries of a session's first resize, EXIT_POLL_MS apart (the daemon may not run the process yet). */
const INITIAL_RESIZE_TRIES = 50;

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What differs between an exec and an attach session. */
interface SessionSpec {
  what: string;
  /** A TTY's raw stream; else Docker's multiplexed framing. */
  raw: boolean;
  stdin: boolean;
  /** exec: chunks of the daemon's own errors ({@link DAEMON_ERROR}) ahead of any output are held back. */
  holdDaemonErrors: boolean;
  resize?: (size: TerminalSize) => Promise<void>;
  /** The stream ended by itself: how the session ended; `held` is the daemon's text held back (delivered as output unless `deliverHeld` is false). */
  ended(streamError: string | undefined, held: string | undefined): Promise<{ end: StreamEnd; deliverHeld: boolean }>;
  /** cancel() was called (the connection is closed already). */
  cancelled(): Promise<StreamEnd>;
}

/** A StreamSession over one hijacked connection. */
class HijackedSession implements StreamSession {
  readonly done: Promise<StreamEnd>;
  private settle!: (end: StreamEnd) => void;
  /** `ending`: the stream is over (or cancelled), the end is being found out. */
  private state: 'open' | 'ending' | 'done' = 'open';
  private stdinEnded = false;
  private delivered = false;
  private held: { stream: 'stdout' | 'stderr'; chunk: Buffer }[] = [];
  /** pause(): the rest of a chunk read before it waits here, delivered at resume(). */
  private paused = false;
  private queue: { stream: 'stdout' | 'stderr'; payload: Buffer }[] = [];
  /** The stream ended while output was queued: the end waits for the queue. */
  private endPending = false;
  private streamError: string | undefined;
  private outputFailed = false;
  private resizeGen = 0;
  private resizes: Promise<void> = Promise.resolve();

  constructor(
    private readonly conn: HijackedConnection,
    private readonly output: StreamOutput,
    private readonly spec: SessionSpec,
    private readonly log: Logger,
    initialSize: TerminalSize | undefined,
  ) {
    this.done = new Promise((resolve) => (this.settle = resolve));
    const demux = spec.raw
      ? undefined
      : new FrameDemuxer(
          (stream, payload) => {
            if (stream !== 'stdin') this.deliver(stream, payload);
          },
          undefined,
          (message) => (this.streamError ??= message.trim()),
        );
    const failed = (err: Error) => {
      this.streamError ??= errorMessage(err);
      this.finish();
    };
    conn.output.on('data', (chunk: Buffer) => {
      if (this.state !== 'open') return;
      try {
        if (demux) demux.push(chunk);
        else this.deliver('stdout', chunk);
      } catch (err) {
        this.streamError ??= errorMessage(err);
        this.finish();
      }
    });
    conn.output.once('end', () => this.finish());
    conn.output.once('close', () => this.finish());
    conn.output.on('error', failed);
    if (conn.input !== conn.output) conn.input.on('error', failed);
    conn.output.resume();
    if (initialSize && spec.resize) this.resizes = this.initialResize(spec.resize, initialSize);
  }

  writeStdin(chunk: Uint8Array): void {
    if (!this.spec.stdin || this.stdinEnded || this.state !== 'open' || chunk.length === 0) return;
    this.conn.input.write(chunk);
  }

  endStdin(): void {
    if (!this.spec.stdin || this.stdinEnded || this.state !== 'open') return;
    this.stdinEnded = true;
    this.conn.input.end(); // a half-close: the daemon closes the process's stdin and sends the rest of its output
  }

  resize(size: TerminalSize): void {
    const resize = this.spec.resize;
    if (!resize || this.state !== 'open') return;
    this.resizeGen++;
    this.resizes = this.resizes.then(() =>
      resize(size).catch((err: unknown) => this.log.debug('terminal resize failed', { session: this.spec.what, err, code: (err as { code?: string }).code })),
    );
  }

  pause(): void {
    if (this.state !== 'open') return;
    this.paused = true;
    this.conn.output.pause();
  }

  resume(): void {
    if (this.state !== 'open' || !this.paused) return;
    this.paused = false;
    while (!this.paused && this.queue.length > 0) {
      const q = this.queue.shift() as { stream: 'stdout' | 'stderr'; payload: Buffer };
      this.process(q.stream, q.payload);
    }
    if (this.paused || this.state !== 'open') return;
    this.conn.output.resume();
    if (this.endPending) {
      this.endPending = false;
      this.finish();
    }
  }

  cancel(): void {
    if (this.state !== 'open') return; // ended by itself already: its end stands
    this.state = 'ending';
    this.held = [];
    this.queue = [];
    this.conn.destroy();
    this.spec.cancelled().then(
      (end) => this.resolve(end),
      (err: unknown) => this.resolve({ error: errorMessage(err) }),
    );
  }

  /** Ends it now with `end` (the runtime closes, or the container had exited): the connection goes, an exec's process is left alone. */
  close(end: StreamEnd): void {
    if (this.state === 'done') return;
    this.state = 'ending';
    this.queue = [];
    this.held = [];
    this.conn.destroy();
    this.resolve(end);
  }

  private deliver(stream: 'stdout' | 'stderr', payload: Buffer): void {
    if (payload.length === 0) return;
    if (this.paused || this.queue.length > 0) this.queue.push({ stream, payload });
    else this.process(stream, payload);
  }

  private process(stream: 'stdout' | 'stderr', payload: Buffer): void {
    if (this.spec.holdDaemonErrors && !this.delivered && DAEMON_ERROR.test(payload.toString('latin1', 0, 64))) {
      this.held.push({ stream, chunk: payload });
      return;
    }
    this.flushHeld();
    this.delivered = true;
    this.emit(stream, payload);
  }

  private flushHeld(): void {
    const held = this.held;
    this.held = [];
    for (const h of held) this.emit(h.stream, h.chunk);
  }

  private emit(stream: 'stdout' | 'stderr', payload: Buffer): void {
    try {
      this.output[stream](payload);
    } catch (err) {
      if (!this.outputFailed) this.log.warn('stream output handler failed', { session: this.spec.what, err, code: (err as { code?: string }).code });
      this.outputFailed = true;
    }
  }

  private finish(): void {
    if (this.state !== 'open') return;
    if (this.queue.length > 0) {
      this.endPending = true; // resume() delivers the rest, then ends it
      return;
    }
    this.state = 'ending';
    this.conn.destroy();
    const held = this.held.length > 0 ? Buffer.concat(this.held.map((h) => h.chunk)).toString('utf8') : undefined;
    this.spec.ended(this.streamError, held).then(
      ({ end, deliverHeld }) => {
        if (this.state === 'done') return;
        if (deliverHeld) this.flushHeld();
        this.held = [];
        this.resolve(end);
      },
      (err: unknown) => this.resolve({ error: errorMessage(err) }),
    );
  }

  private resolve(end: StreamEnd): void {
    if (this.state === 'done') return;
    this.state = 'done';
    this.settle(end);
  }

  /** The first size, tried until the daemon takes it (it refuses before the process runs), the session ends, or a resize() came. */
  private async initialResize(resize: (size: TerminalSize) => Promise<void>, size: TerminalSize): Promise<void> {
    const gen = this.resizeGen;
    for (let i = 0; i < INITIAL_RESIZE_TRIES; i++) {
      if (this.state !== 'open' || this.resizeGen !== gen) return;
      try {
        await resize(size);
        return;
      } catch {
        await delay(EXIT_POLL_MS);
      }
    }
  }
}

/** A session that ended before it began (a command the daemon refused to start). */
function endedSession(end: StreamEnd): StreamSession {
  const noop = () => {};
  return { writeStdin: noop, endStdin: noop, resize: noop, pause: noop, resume: noop, cancel: noop, done: Promise.resolve(end) };
}

/** `pid` and every process descended from it (from /proc), parents first. */
function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue; // gone
    }
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, the last `)` ends it.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (Number.isInteger(ppid)) children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift() as number;
    if (out.includes(p)) continue;
    out.push(p);
    queue.push(...(children.get(p) ?? []));
  }
  return out;
}

function pidNamespace(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/**
 * SIGKILLs `pid` and its descendants when `pid` is a process of this host in the container's pid
 * namespace (that of `containerPid`); false when it cannot be seen as one (a remote daemon, a
 * rootless one in a namespace of its own, or the process gone).
 */
function killContainerProcess(pid: number, containerPid: number | undefined): boolean {
  if (process.platform !== 'linux' || !(pid > 0) || !containerPid || !(containerPid > 0)) return false;
  const ns = pidNamespace(pid);
  if (!ns || ns !== pidNamespace(containerPid)) return false;
  let killed = false;
  for (const p of processTree(pid)) {
    try {
      process.kill(p, 'SIGKILL');
      killed = true;
    } catch {
      // gone already
    }
  }
  return killed;
}

// ---- The runtime -----------------------------------------------------------------------------------

/** The `container` runtime (Docker Engine API; Docker or Podman). */
export class DockerEngineRuntime implements ContainerRuntime {
  readonly name = 'container';
  readonly socketPath: string;
  readonly pauseImage: string;
  private readonly api: DockerClient;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly pullDeadlineMs: number;
  private readonly logDrainMs: number;
  private readonly maxExecBytes: number;
  private readonly logRate: LogRateLimit;
  /** The throttled-output info line: at most once a minute per container (pod uid and name, across restarts). */
  private readonly throttleNotices = new NoticeLimiter();
  private readonly eventBackoff: { baseMs: number; maxMs: number };
  private versionInfo: Promise<VersionInfo> | undefined;
  private closed = false;
  /** Log copies running, by container id. */
  private readonly followers = new Map<string, LogFollower>();
  /** Containers whose output is all in their log file (exited, stream ended): not re-attached. Id → sandbox id. */
  private readonly drained = new Map<string, string>();
  /** Containers whose log stream failed: when to try again, and how often it failed. */
  private readonly logRetry = new Map<string, { at: number; failures: number }>();
  /** Containers being started by this runtime (their log copy starts from the beginning). */
  private readonly starting = new Set<string>();
  private readonly listeners = new Set<(event: RuntimeEvent) => void>();
  private events: EventStreamState | undefined;
  /** Interactive sessions open (closed with the runtime). */
  private readonly sessions = new Set<HijackedSession>();

  constructor(options: ContainerRuntimeOptions = {}) {
    const o = { ...defaultContainerRuntimeOptions, ...stripUndefined(options) };
    this.socketPath = o.socketPath;
    this.pauseImage = o.pauseImage;
    this.timeoutMs = o.requestTimeoutMs;
    this.pullDeadlineMs = o.pullProgressDeadlineMs;
    this.logDrainMs = o.logDrainMs;
    this.maxExecBytes = o.maxExecOutputBytes;
    this.logRate = { bytesPerSecond: o.containerLogMaxBytesPerSecond, burstBytes: o.containerLogBurstBytes };
    this.eventBackoff = { baseMs: o.eventBackoffBaseMs, maxMs: o.eventBackoffMaxMs };
    this.log = (options.log ?? silentLogger).child({ runtime: 'container' });
    this.api = new DockerClient({ socketPath: this.socketPath, requestTimeoutMs: this.timeoutMs });
  }

  // -- version --

  async version(): Promise<string> {
    const v = await this.info();
    const podman = v.Components?.find((c) => /podman/i.test(c.Name ?? ''));
    return podman ? `podman://${podman.Version ?? v.Version ?? 'unknown'}` : `docker://${v.Version ?? 'unknown'}`;
  }

  private info(): Promise<VersionInfo> {
    if (!this.versionInfo) {
      const p = this.api.request<VersionInfo>('GET', '/version').then((r) => r.body ?? {});
      this.versionInfo = p;
      p.catch(() => {
        if (this.versionInfo === p) this.versionInfo = undefined; // asked again next time
      });
    }
    return this.versionInfo;
  }

  private async isPodman(): Promise<boolean> {
    const v = await this.info();
    return v.Components?.some((c) => /podman/i.test(c.Name ?? '')) ?? false;
  }

  // -- sandboxes --

  async runPodSandbox(config: SandboxConfig): Promise<SandboxStatus> {
    try {
      await this.ensureImage(this.pauseImage, 'IfNotPresent');
    } catch (err) {
      if (err instanceof RuntimeError) throw new RuntimeError('CreatePodSandboxError', `pause image ${this.pauseImage}: ${err.message}`, { cause: err });
      throw err;
    }
    const exposed: Record<string, Record<string, never>> = {};
    const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
    for (const p of config.ports) {
      const key = `${p.containerPort}/${(p.protocol ?? 'TCP').toLowerCase()}`;
      exposed[key] = {};
      if (p.hostPort && !config.hostNetwork) (bindings[key] ??= []).push({ HostIp: p.hostIP ?? '', HostPort: String(p.hostPort) });
    }
    const labels = {
      ...config.labels,
      [LABELS.podUid]: config.uid,
      [LABELS.podName]: config.name,
      [LABELS.podNamespace]: config.namespace,
      [LABELS.sandbox]: 'true',
    };
    const body = {
      Image: this.pauseImage,
      ...(config.hostNetwork ? {} : { Hostname: config.hostname }),
      Labels: labels,
      ExposedPorts: exposed,
      HostConfig: {
        ...(config.hostNetwork ? { NetworkMode: 'host' } : {}),
        PortBindings: bindings,
        IpcMode: 'shareable',
        RestartPolicy: { Name: 'no' },
      },
    };
    const name = dockerName(['k8s', 'POD', config.name, config.namespace, config.uid, suffix()]);
    let id: string;
    try {
      id = await this.create(name, body);
    } catch (err) {
      throw reasoned('CreatePodSandboxError', err);
    }
    try {
      await this.api.request('POST', `/containers/${enc(id)}/start`, { accept: [304] });
    } catch (err) {
      await this.api.request('DELETE', `/containers/${enc(id)}`, { query: { force: true, v: true }, accept: [404] }).catch(() => {});
      throw reasoned('CreatePodSandboxError', err);
    }
    const info = await this.inspect(id);
    if (!info) throw new RuntimeError('CreatePodSandboxError', `sandbox container ${id} vanished after it started`);
    return sandboxStatus(info.Id, info.Config?.Labels ?? {}, info.State?.Running === true, ipOf(info.NetworkSettings), isoTime(info.Created));
  }

  async stopPodSandbox(id: string): Promise<void> {
    const members = await this.summaries({ label: [`${LABELS.sandboxId}=${id}`] });
    await mapLimit(members, 4, (c) => this.stopContainer(c.Id, 0));
    await this.stopContainer(id, 0);
  }

  async removePodSandbox(id: string): Promise<void> {
    const members = await this.summaries({ label: [`${LABELS.sandboxId}=${id}`] });
    await mapLimit(members, 4, (c) => this.removeContainer(c.Id));
    await this.removeContainer(id);
  }

  async listPodSandboxes(): Promise<SandboxStatus[]> {
    const list = await this.summaries({ label: [`${LABELS.sandbox}=true`] });
    return list.map((c) => sandboxStatus(c.Id, c.Labels ?? {}, c.State === 'running', ipOf(c.NetworkSettings), isoTime(c.Created)));
  }

  // -- images --

  async ensureImage(image: string, policy: PullPolicy): Promise<void> {
    const ref = parseImageReference(image);
    if (!ref) throw new RuntimeError('InvalidImageName', `Failed to apply default image tag "${image}": couldn't parse image reference "${image}": invalid reference format`);
    if (policy !== 'Always' && (await this.hasImage(image))) return;
    if (policy === 'Never') throw new RuntimeError('ErrImageNeverPull', `Container image "${image}" is not present with pull policy of Never`);
    await this.pull(image, ref);
  }

  private async hasImage(image: string): Promise<boolean> {
    const r = await this.api.request('GET', `/images/${enc(image)}/json`, { accept: [404] });
    return r.status === 200;
  }

  /** POST /images/create, reading its progress stream: an `error` line, or no line for the progress deadline, fails the pull. */
  private async pull(image: string, ref: { name: string; tag?: string; digest?: string }): Promise<void> {
    const fail = (why: string, cause?: unknown) => new RuntimeError('ErrImagePull', `Failed to pull image "${image}": ${why}`, { cause });
    let stream: { res: IncomingMessage; abort: () => void };
    try {
      stream = await this.api.stream('POST', '/images/create', { query: { fromImage: ref.name, tag: ref.digest ?? ref.tag ?? 'latest' }, timeoutMs: this.pullDeadlineMs });
    } catch (err) {
      if (err instanceof TimeoutError) throw fail(`no answer from the runtime within ${this.pullDeadlineMs} ms`, err);
      if (err instanceof RuntimeApiError && err.status !== undefined) throw fail(err.daemonMessage ?? err.message, err);
      throw err;
    }
    const { res, abort } = stream;
    const failure = await new Promise<string | undefined>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          abort();
          resolve(`no progress for ${this.pullDeadlineMs} ms`);
        }, this.pullDeadlineMs);
      };
      arm();
      let error: string | undefined;
      const lines = new JsonLines((v) => {
        arm();
        const e = v as { error?: unknown; errorDetail?: { message?: unknown } };
        if (error === undefined && (typeof e.error === 'string' || typeof e.errorDetail?.message === 'string')) error = String(e.errorDetail?.message ?? e.error);
      });
      res.on('data', (c: Buffer) => {
        try {
          lines.push(c);
        } catch (err) {
          error ??= errorMessage(err);
        }
      });
      res.once('end', () => {
        clearTimeout(timer);
        lines.end();
        resolve(error);
      });
      res.once('close', () => {
        clearTimeout(timer);
        resolve(error ?? 'the runtime closed the pull stream');
      });
    });
    if (failure !== undefined) throw fail(failure);
    if (!(await this.hasImage(image))) throw fail('the runtime reported the pull done but does not have the image');
  }

  async listImages(): Promise<ImageInfo[]> {
    const r = await this.api.request<{ RepoTags?: string[] | null; RepoDigests?: string[] | null; Size?: number }[]>('GET', '/images/json');
    return (r.body ?? []).map((i) => ({
      names: [...(i.RepoTags ?? []).filter((t) => t !== '<none>:<none>'), ...(i.RepoDigests ?? []).filter((d) => d !== '<none>@<none>')],
      sizeBytes: i.Size ?? 0,
    }));
  }

  // -- containers --

  async createContainer(sandboxId: string, config: ContainerConfig): Promise<string> {
    const sandbox = await this.inspect(sandboxId);
    const sl = sandbox?.Config?.Labels ?? {};
    if (!sandbox || sl[LABELS.sandbox] !== 'true') throw new RuntimeError('CreateContainerError', `pod sandbox ${sandboxId} not found`);
    for (const m of config.mounts) {
      if (m.hostPath.includes(':') || m.containerPath.includes(':'))
        throw new RuntimeError('CreateContainerError', `mount ${m.hostPath} → ${m.containerPath}: a path with ':' cannot be bound`);
    }
    const hostNetwork = sandbox.HostConfig?.NetworkMode === 'host';
    const podman = await this.isPodman();
    const uid = sl[LABELS.podUid] ?? '';
    const labels = {
      ...config.labels,
      [LABELS.podUid]: uid,
      [LABELS.podName]: sl[LABELS.podName] ?? '',
      [LABELS.podNamespace]: sl[LABELS.podNamespace] ?? '',
      [LABELS.sandboxId]: sandbox.Id,
      [LABELS.containerName]: config.name,
      [LABELS.attempt]: String(config.attempt),
      [LABELS.logPath]: config.logPath,
      [LABELS.logMaxBytes]: String(config.logMaxBytes),
    };
    const command = config.command && config.command.length > 0 ? config.command : undefined;
    const { memoryBytes, cpuMillis } = config.resources;
    const body = {
      Image: config.image,
      // Kubernetes' command replaces the image's ENTRYPOINT and args its CMD; with an Entrypoint given, Docker and Podman
      // drop the image's CMD too, so a command without args runs alone, as Kubernetes has it.
      ...(command ? { Entrypoint: command } : {}),
      ...(config.args ? { Cmd: config.args } : {}),
      Env: Object.entries(config.env).map(([k, v]) => `${k}=${v}`),
      ...(config.workingDir ? { WorkingDir: config.workingDir } : {}),
      Labels: labels,
      Tty: config.tty === true,
      OpenStdin: config.stdin === true,
      StdinOnce: config.stdinOnce === true,
      HostConfig: {
        NetworkMode: hostNetwork ? 'host' : `container:${sandbox.Id}`,
        IpcMode: `container:${sandbox.Id}`,
        // Docker gives a container that joins another's network that one's hostname; Podman needs the UTS namespace joined.
        ...(hostNetwork ? { UTSMode: 'host' } : podman ? { UTSMode: `container:${sandbox.Id}` } : {}),
        Binds: config.mounts.map((m) => `${m.hostPath}:${m.containerPath}${m.readOnly ? ':ro' : ''}`),
        ...(memoryBytes !== undefined ? { Memory: memoryBytes, MemorySwap: memoryBytes } : {}),
        ...(cpuMillis !== undefined ? { NanoCpus: Math.round(cpuMillis * 1e6) } : {}),
        RestartPolicy: { Name: 'no' },
      },
    };
    const name = dockerName(['k8s', config.name, sl[LABELS.podName] ?? '', sl[LABELS.podNamespace] ?? '', uid, config.attempt, suffix()]);
    try {
      return await this.create(name, body);
    } catch (err) {
      throw reasoned('CreateContainerError', err);
    }
  }

  async startContainer(id: string): Promise<void> {
    this.starting.add(id);
    try {
      try {
        await this.api.request('POST', `/containers/${enc(id)}/start`, { accept: [304] });
      } catch (err) {
        throw reasoned('RunContainerError', err);
      }
      const info = await this.inspect(id);
      if (info) this.follow(info, false);
    } finally {
      this.starting.delete(id);
    }
  }

  async stopContainer(id: string, graceSeconds: number): Promise<void> {
    const t = Math.max(0, Math.ceil(graceSeconds));
    await this.api.request('POST', `/containers/${enc(id)}/stop`, { query: { t }, timeoutMs: this.timeoutMs + t * 1000, accept: [304, 404] });
    // The daemon answers once the container stopped; a runtime that answers early is waited for here.
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const info = await this.inspect(id);
      if (!info || stateOf(info.State?.Status) !== 'running') return;
      if (Date.now() > deadline) throw new TimeoutError(`container ${id} still runs ${this.timeoutMs} ms after it was stopped`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async removeContainer(id: string): Promise<void> {
    // A running container is killed at once (a forced remove on Podman would wait its stop timeout first).
    await this.api.request('POST', `/containers/${enc(id)}/stop`, { query: { t: 0 }, accept: [304, 404] });
    const f = this.followers.get(id);
    if (f) {
      f.unthrottle();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([f.done, new Promise((r) => (timer = setTimeout(r, this.logDrainMs)))]);
      clearTimeout(timer);
      f.stop();
    }
    await this.api.request('DELETE', `/containers/${enc(id)}`, { query: { force: true, v: true }, accept: [404] });
    this.drained.delete(id);
    this.logRetry.delete(id);
  }

  async listContainers(sandboxId?: string): Promise<RuntimeContainerStatus[]> {
    const list = await this.summaries({ label: [sandboxId ? `${LABELS.sandboxId}=${sandboxId}` : LABELS.sandboxId] });
    // Forget containers removed behind our back (by hand, or before a restart).
    const ids = new Set(list.map((c) => c.Id));
    for (const [id, sb] of this.drained) if ((sandboxId === undefined || sb === sandboxId) && !ids.has(id)) this.drained.delete(id);
    if (sandboxId === undefined) for (const id of this.logRetry.keys()) if (!ids.has(id)) this.logRetry.delete(id);
    const inspected = await mapLimit(list, 8, (c) => this.inspect(c.Id));
    const out: RuntimeContainerStatus[] = [];
    for (const info of inspected) {
      if (!info) continue; // removed since the list
      this.reattach(info);
      out.push(containerStatus(info));
    }
    return out;
  }

  async containerStatus(id: string): Promise<RuntimeContainerStatus | undefined> {
    const info = await this.inspect(id);
    if (!info || info.Config?.Labels?.[LABELS.sandboxId] === undefined) return undefined;
    this.reattach(info);
    return containerStatus(info);
  }

  // -- exec --

  /**
   * Runs `command` in the container (POST /containers/{id}/exec, then /exec/{id}/start, output
   * demultiplexed) and reads its exit code. At `timeoutMs` the output stops being read and the
   * result says timedOut (exitCode -1): the Docker Engine API cannot kill an exec'd process, so it
   * runs on in the container until it ends by itself.
   */
  async exec(id: string, command: string[], options: { timeoutMs: number }): Promise<ExecResult> {
    const started = Date.now();
    const created = await this.api.request<{ Id?: string }>('POST', `/containers/${enc(id)}/exec`, {
      body: { AttachStdin: false, AttachStdout: true, AttachStderr: true, Tty: false, Cmd: command },
    });
    const execId = created.body?.Id;
    if (!execId) throw new RuntimeApiError(`exec in ${id}: the runtime answered no exec id`);
    const out = { stdout: new Capped(this.maxExecBytes), stderr: new Capped(this.maxExecBytes) };
    const result = (exitCode: number, timedOut: boolean): ExecResult => ({ exitCode, stdout: out.stdout.text(), stderr: out.stderr.text(), timedOut });
    const remaining = () => Math.max(1, options.timeoutMs - (Date.now() - started));
    let stream: { res: IncomingMessage; abort: () => void };
    try {
      stream = await this.api.stream('POST', `/exec/${enc(execId)}/start`, { body: { Detach: false, Tty: false }, timeoutMs: remaining() });
    } catch (err) {
      if (err instanceof TimeoutError) return result(-1, true);
      throw err;
    }
    const { res, abort } = stream;
    const ended = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        abort();
        resolve(false);
      }, remaining());
      const demux = new FrameDemuxer((s, payload) => {
        if (s === 'stdout' || s === 'stderr') out[s].push(payload);
      });
      res.on('data', (c: Buffer) => {
        try {
          demux.push(c);
        } catch {
          abort();
        }
      });
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      res.once('end', done);
      res.once('close', done);
    });
    if (!ended) return result(-1, true);
    // The stream ends as the process does; its exit code may be recorded a moment later.
    const deadline = Date.now() + 2000;
    for (;;) {
      const r = await this.api.request<{ Running?: boolean; ExitCode?: number | null }>('GET', `/exec/${enc(execId)}/json`);
      const code = r.body?.ExitCode;
      if (r.body?.Running !== true && typeof code === 'number') return result(code, false);
      if (Date.now() > deadline) return result(-1, Date.now() - started >= options.timeoutMs);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  // -- interactive sessions (kubectl exec / attach) --

  /**
   * Runs `command` in the container with its streams connected: POST /containers/{id}/exec, then a
   * hijacked POST /exec/{id}/start. Rejects with RuntimeError when the container is not there or not
   * running; a command that cannot be started ends the session at once (exit code 126 or 127 and
   * the runtime's message). cancel() kills the process where it can (see the module comment); its
   * session then ends with 137.
   */
  async execStream(id: string, command: string[], options: StreamOptions, output: StreamOutput): Promise<StreamSession> {
    const size = options.tty && options.size ? options.size : undefined;
    const consoleSize = size ? { ConsoleSize: [size.height, size.width] } : {};
    let execId: string | undefined;
    try {
      const created = await this.api.request<{ Id?: string }>('POST', `/containers/${enc(id)}/exec`, {
        body: { AttachStdin: options.stdin, AttachStdout: options.stdout, AttachStderr: options.stderr, Tty: options.tty, Cmd: command, ...consoleSize },
      });
      execId = created.body?.Id;
    } catch (err) {
      throw reasoned('RunContainerError', err, `exec in container ${id}: `);
    }
    if (!execId) throw new RuntimeApiError(`exec in ${id}: the runtime answered no exec id`);
    const eid = execId;
    let conn: HijackedConnection;
    try {
      // `h`/`w`: Podman sizes the TTY before the process runs; ConsoleSize: Docker from API 1.42 (ignored before).
      conn = await this.api.hijack('POST', `/exec/${enc(eid)}/start`, {
        body: { Detach: false, Tty: options.tty, ...consoleSize, ...(size ? { h: size.height, w: size.width } : {}) },
      });
    } catch (err) {
      const message = err instanceof RuntimeApiError ? (err.daemonMessage ?? err.message) : '';
      if (err instanceof RuntimeApiError && err.status !== undefined && err.status !== 404 && err.status !== 409 && !/not running|state improper|is paused/i.test(message)) {
        // The daemon refused to start the command (an OCI runtime failure): it ends as a command that could not be run does.
        return endedSession({ exitCode: /not found|no such file/i.test(message) ? 127 : 126, error: message });
      }
      throw reasoned('RunContainerError', err, `exec in container ${id}: `);
    }
    const what = `exec ${eid.slice(0, 12)} in ${id.slice(0, 12)}`;
    const session = new HijackedSession(
      conn,
      output,
      {
        what,
        raw: options.tty,
        stdin: options.stdin,
        holdDaemonErrors: true,
        ...(options.tty ? { resize: (s: TerminalSize) => this.resizeExec(eid, s) } : {}),
        ended: async (streamError, held) => {
          const r = await this.execEnd(eid);
          if (r.exitCode === undefined) return { end: { error: streamError ?? r.error ?? `the exit code of ${what} is unknown` }, deliverHeld: true };
          if ((r.exitCode === 126 || r.exitCode === 127) && held) return { end: { exitCode: r.exitCode, error: held.split('\n')[0]?.trim() || held.trim() }, deliverHeld: false };
          return { end: { exitCode: r.exitCode, ...(streamError ? { error: streamError } : {}) }, deliverHeld: true };
        },
        cancelled: () => this.killExec(id, eid, what),
      },
      this.log,
      size,
    );
    this.track(session);
    return session;
  }

  /**
   * Connects to the container's main process: a hijacked POST /containers/{id}/attach (new output
   * only). The stream is raw when the container has a TTY, stdin is connected when asked and the
   * container keeps stdin open. Rejects with RuntimeError when the container is not there or not
   * running. The session ends with the container's exit code when it exits, with {} at cancel()
   * (a detach: the container runs on).
   */
  async attach(id: string, options: StreamOptions, output: StreamOutput): Promise<StreamSession> {
    const info = await this.inspect(id);
    if (!info) throw new RuntimeError('RunContainerError', `container ${id} not found`);
    if (stateOf(info.State?.Status) !== 'running') throw new RuntimeError('RunContainerError', `container ${id} is not running`);
    const tty = info.Config?.Tty === true;
    const stdin = options.stdin && info.Config?.OpenStdin === true;
    let conn: HijackedConnection;
    try {
      conn = await this.api.hijack('POST', `/containers/${enc(info.Id)}/attach`, {
        query: { stream: true, logs: false, stdin, stdout: options.stdout, stderr: options.stderr },
      });
    } catch (err) {
      throw reasoned('RunContainerError', err, `attach to container ${id}: `);
    }
    const what = `attach to ${info.Id.slice(0, 12)}`;
    const exited = async (): Promise<StreamEnd | undefined> => {
      const now = await this.inspect(info.Id);
      if (!now) return { error: `container ${id} was removed` };
      return stateOf(now.State?.Status) === 'running' ? undefined : { exitCode: now.State?.ExitCode ?? 0 };
    };
    const session = new HijackedSession(
      conn,
      output,
      {
        what,
        raw: tty,
        stdin,
        holdDaemonErrors: false,
        ...(tty ? { resize: (s: TerminalSize) => this.resizeContainer(info.Id, s) } : {}),
        ended: async (streamError) => {
          const deadline = Date.now() + EXIT_WAIT_MS;
          for (;;) {
            const end = await exited();
            if (end) return { end, deliverHeld: true };
            if (Date.now() > deadline) return { end: { error: streamError ?? `the runtime ended the attach stream while container ${id} runs` }, deliverHeld: true };
            await delay(EXIT_POLL_MS);
          }
        },
        cancelled: async () => ({}),
      },
      this.log,
      tty ? options.size : undefined,
    );
    this.track(session);
    // It may have exited between the inspect and the attach: a daemon may then hold the stream open.
    const early = await exited().catch(() => undefined);
    if (early) session.close(early);
    return session;
  }

  private track(session: HijackedSession): void {
    this.sessions.add(session);
    void session.done.then(() => this.sessions.delete(session));
  }

  private async resizeExec(execId: string, size: TerminalSize): Promise<void> {
    await this.api.request('POST', `/exec/${enc(execId)}/resize`, { query: { h: size.height, w: size.width } });
  }

  private async resizeContainer(id: string, size: TerminalSize): Promise<void> {
    await this.api.request('POST', `/containers/${enc(id)}/resize`, { query: { h: size.height, w: size.width } });
  }

  /** An exec's exit code once it is recorded (polled for EXIT_WAIT_MS after its stream ended), or why not. */
  private async execEnd(execId: string): Promise<{ exitCode?: number; error?: string }> {
    const deadline = Date.now() + EXIT_WAIT_MS;
    for (;;) {
      let r: { status: number; body: ExecInspect | undefined };
      try {
        r = await this.api.request<ExecInspect>('GET', `/exec/${enc(execId)}/json`, { accept: [404] });
      } catch (err) {
        return { error: `the exit code could not be read: ${errorMessage(err)}` };
      }
      if (r.status === 404) return { error: 'the runtime no longer knows the exec session' };
      const code = r.body?.ExitCode;
      if (r.body?.Running !== true && typeof code === 'number') return { exitCode: code };
      if (Date.now() > deadline) return { error: `the exec still ran ${EXIT_WAIT_MS} ms after its stream ended` };
      await delay(EXIT_POLL_MS);
    }
  }

  /** cancel() of an exec (its connection closed): its process killed where visible (see the module comment), 137. */
  private async killExec(id: string, execId: string, what: string): Promise<StreamEnd> {
    const inspectExec = async () => (await this.api.request<ExecInspect>('GET', `/exec/${enc(execId)}/json`, { accept: [404] })).body;
    let info: ExecInspect | undefined;
    try {
      info = await inspectExec();
    } catch (err) {
      return { exitCode: 137, error: `the exec could not be inspected to kill it: ${errorMessage(err)}` };
    }
    if (!info) return { exitCode: 137 };
    if (info.Running !== true) return { exitCode: typeof info.ExitCode === 'number' ? info.ExitCode : 137 };
    const pid = info.Pid ?? 0;
    const container = await this.inspect(id).catch(() => undefined);
    if (!killContainerProcess(pid, container?.State?.Pid)) {
      const error = `the exec'd process (pid ${pid} in the runtime) is not visible from here and could not be killed: it may run on in the container`;
      this.log.warn('exec process could not be killed', { session: what, pid, code: ErrorCode.Runtime });
      return { exitCode: 137, error };
    }
    // Once the runtime saw it exit, the process is gone.
    const deadline = Date.now() + EXIT_WAIT_MS;
    while (Date.now() <= deadline) {
      const now = await inspectExec().catch(() => undefined);
      if (now?.Running !== true) break;
      await delay(EXIT_POLL_MS);
    }
    return { exitCode: 137 };
  }

  // -- events --

  onEvent(listener: (event: RuntimeEvent) => void): () => void {
    this.listeners.add(listener);
    if (!this.events && !this.closed) {
      const state: EventStreamState = { controller: new AbortController(), loop: Promise.resolve() };
      this.events = state;
      state.loop = this.eventLoop(state);
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stopEvents();
    };
  }

  private stopEvents(): void {
    const e = this.events;
    this.events = undefined;
    e?.controller.abort();
    e?.abort?.();
    e?.wake?.();
  }

  /** GET /events (container events), reconnected with backoff while anyone listens; `since` the last event (or the drop) so a gap replays. */
  private async eventLoop(state: EventStreamState): Promise<void> {
    const b = makeBackoff({ baseMs: this.eventBackoff.baseMs, maxMs: this.eventBackoff.maxMs });
    let since: string | undefined;
    let failures = 0;
    const live = () => this.events === state && !this.closed;
    while (live()) {
      try {
        const { res, abort } = await this.api.stream('GET', '/events', { query: { filters: { type: ['container'] }, since }, signal: state.controller.signal });
        state.abort = abort;
        if (!live()) {
          abort();
          break;
        }
        if (failures > 0) this.log.info('runtime event stream reconnected', { socket: this.socketPath });
        failures = 0;
        b.reset();
        await new Promise<void>((resolve) => {
          const lines = new JsonLines((v) => {
            const t = this.dispatch(v as DockerEvent);
            if (t !== undefined) since = String(t);
          });
          res.on('data', (c: Buffer) => {
            try {
              lines.push(c);
            } catch (err) {
              this.log.warn('runtime event stream is malformed; reconnecting', { err });
              abort();
            }
          });
          res.once('end', () => resolve());
          res.once('close', () => resolve());
        });
        if (!live()) break;
        failures++;
        this.log.warn('runtime event stream ended; reconnecting', { socket: this.socketPath });
      } catch (err) {
        if (!live()) break;
        failures++;
        (failures === 1 ? this.log.warn : this.log.debug).call(this.log, 'runtime event stream failed; retrying', { err, attempt: failures });
      }
      since ??= String(Math.floor(Date.now() / 1000));
      const delay = b.next();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        state.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      state.wake = undefined;
    }
  }

  /** Hands one daemon event to the listeners when it is about a Ledge container; returns its time (s). */
  private dispatch(e: DockerEvent): number | undefined {
    if (e.Type !== 'container') return e.time;
    const action = (e.Action ?? e.status ?? '').split(':')[0] ?? '';
    const attrs = e.Actor?.Attributes ?? {};
    const uid = attrs[LABELS.podUid];
    const id = e.Actor?.ID ?? e.id;
    if (!EVENT_ACTIONS.has(action) || !uid || !id) return e.time;
    const event: RuntimeEvent =
      attrs[LABELS.sandbox] === 'true' ? { sandboxId: id, uid } : { containerId: id, uid, ...(attrs[LABELS.sandboxId] ? { sandboxId: attrs[LABELS.sandboxId] } : {}) };
    for (const l of [...this.listeners]) {
      try {
        l(event);
      } catch (err) {
        this.log.warn('runtime event listener failed', { err });
      }
    }
    return e.time;
  }

  // -- close --

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const events = this.events;
    this.stopEvents();
    for (const s of [...this.sessions]) s.close({ error: 'the container runtime was closed' });
    this.sessions.clear();
    const followers = [...this.followers.values()];
    for (const f of followers) f.stop();
    await Promise.all([events?.loop, ...followers.map((f) => f.done)]);
    this.followers.clear();
    this.api.close();
  }

  // -- internals --

  private async create(name: string, body: unknown): Promise<string> {
    const r = await this.api.request<{ Id?: string }>('POST', '/containers/create', { query: { name }, body });
    const id = r.body?.Id;
    if (!id) throw new RuntimeApiError('container create answered no Id', { status: r.status });
    return id;
  }

  private async inspect(id: string): Promise<ContainerInspect | undefined> {
    const r = await this.api.request<ContainerInspect>('GET', `/containers/${enc(id)}/json`, { accept: [404] });
    return r.status === 404 ? undefined : r.body;
  }

  private async summaries(filters: Record<string, string[]>): Promise<ContainerSummary[]> {
    const r = await this.api.request<ContainerSummary[]>('GET', '/containers/json', { query: { all: true, filters } });
    return r.body ?? [];
  }

  /** Re-attaches the log copy of a container this runtime does not follow (one from before a restart), unless its logs are all copied. */
  private reattach(info: ContainerInspect): void {
    if (this.closed || this.followers.has(info.Id) || this.drained.has(info.Id) || this.starting.has(info.Id)) return;
    const retry = this.logRetry.get(info.Id);
    if (retry && Date.now() < retry.at) return;
    const state = stateOf(info.State?.Status);
    if (state === 'running' || state === 'exited') this.follow(info, true);
  }

  /** Starts copying a container's output into its CRI log: from the start (`resume` false) or from where the file ends. */
  private follow(info: ContainerInspect, resume: boolean): void {
    const id = info.Id;
    const labels = info.Config?.Labels ?? {};
    const logPath = labels[LABELS.logPath];
    if (this.closed || !logPath || this.followers.has(id)) return;
    const maxBytes = Number(labels[LABELS.logMaxBytes]) > 0 ? Number(labels[LABELS.logMaxBytes]) : defaultContainerRuntimeOptions.logMaxBytes;
    const onThrottled = () => {
      const name = labels[LABELS.containerName] ?? id;
      const pod = `${labels[LABELS.podNamespace] ?? ''}/${labels[LABELS.podName] ?? ''}`;
      if (!this.throttleNotices.ready(`${labels[LABELS.podUid] ?? ''}/${name}`)) return;
      this.log.info(`container ${name} of pod ${pod} prints faster than ${formatRate(this.logRate.bytesPerSecond)}; its output is slowed (--container-log-max-bytes-per-second)`, {
        container: name,
        pod,
        containerId: id,
      });
    };
    const f = new LogFollower(this.api, id, logPath, maxBytes, info.Config?.Tty === true, resume ? logCursor(logPath) : undefined, this.log, { ...this.logRate, onThrottled });
    this.followers.set(id, f);
    void f.done.then(async (outcome) => {
      if (this.followers.get(id) === f) this.followers.delete(id);
      if (this.closed || outcome === 'stopped') return;
      if (outcome === 'failed') {
        const failures = (this.logRetry.get(id)?.failures ?? 0) + 1;
        this.logRetry.set(id, { at: Date.now() + LOG_RETRY_MS, failures });
        // One warning per container; its retries (at most one per LOG_RETRY_MS, when it is listed) log at debug.
        (failures === 1 ? this.log.warn : this.log.debug).call(this.log, 'container log copy failed; retried later', { container: id, logPath, err: f.error, failures });
        return;
      }
      this.logRetry.delete(id);
      // A clean end: the container exited (its output is all copied) — or the daemon went away while it still runs (re-attached later).
      const now = await this.inspect(id).catch(() => undefined);
      if (now && stateOf(now.State?.Status) !== 'running') this.drained.set(id, labels[LABELS.sandboxId] ?? '');
    });
  }
}

interface EventStreamState {
  controller: AbortController;
  abort?: () => void;
  wake?: () => void;
  loop: Promise<void>;
}

/** Output kept up to a byte bound. */
class Capped {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly max: number) {}
  push(b: Buffer): void {
    if (this.size >= this.max) return;
    const part = b.length > this.max - this.size ? b.subarray(0, this.max - this.size) : b;
    this.chunks.push(Buffer.from(part));
    this.size += part.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

function sandboxStatus(id: string, labels: Record<string, string>, running: boolean, ip: string | undefined, createdAt: string | undefined): SandboxStatus {
  return {
    id,
    uid: labels[LABELS.podUid] ?? '',
    name: labels[LABELS.podName] ?? '',
    namespace: labels[LABELS.podNamespace] ?? '',
    state: running ? 'ready' : 'notready',
    ...(ip ? { ip } : {}),
    createdAt: createdAt ?? new Date(0).toISOString(),
  };
}

function containerStatus(info: ContainerInspect): RuntimeContainerStatus {
  const labels = info.Config?.Labels ?? {};
  const s = info.State ?? {};
  const state = stateOf(s.Status);
  const exitCode = state === 'exited' ? (s.ExitCode ?? 0) : undefined;
  const reason = state !== 'exited' ? undefined : s.OOMKilled ? 'OOMKilled' : exitCode === 0 ? 'Completed' : 'Error';
  const startedAt = isoTime(s.StartedAt);
  let finishedAt = state === 'exited' ? isoTime(s.FinishedAt) : undefined;
  // Podman may record a quick container's finish a moment before its start: never report an end before the start.
  if (startedAt && finishedAt && finishedAt < startedAt) finishedAt = startedAt;
  return {
    id: info.Id,
    sandboxId: labels[LABELS.sandboxId] ?? '',
    uid: labels[LABELS.podUid] ?? '',
    name: labels[LABELS.containerName] ?? '',
    attempt: Number(labels[LABELS.attempt] ?? 0) || 0,
    state,
    createdAt: isoTime(info.Created) ?? new Date(0).toISOString(),
    ...(startedAt ? { startedAt } : {}),
    ...(finishedAt ? { finishedAt } : {}),
    ...(exitCode !== undefined ? { exitCode } : {}),
    ...(reason ? { reason } : {}),
    ...(s.Error ? { message: s.Error } : {}),
    image: info.Config?.Image ?? '',
    imageID: info.Image ?? '',
    containerID: `docker://${info.Id}`,
    logPath: labels[LABELS.logPath] ?? '',
  };
}

function stripUndefined<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}

/** A `container` runtime for Edged. */
export function createContainerRuntime(options: ContainerRuntimeOptions = {}): DockerEngineRuntime {
  return new DockerEngineRuntime(options);
}
