/**
 * @module
 * Container probes as the kubelet runs them (pkg/kubelet/prober): one {@link Prober} per probe of
 * one container run, for any runtime.
 *
 * Timing and thresholds:
 * - the first probe runs `initialDelaySeconds` after `start()` (at once for 0), then one every
 *   `periodSeconds` (default 10, at least 1), measured from the start of the previous one like
 *   the kubelet's ticker; a probe never overlaps itself: a period that ends while one is still
 *   running makes the next one start as soon as it finishes (at most one is owed);
 * - each attempt is bounded by `timeoutSeconds` (default 1, at least 1);
 * - a result is published once it repeated `successThreshold` (default 1) or `failureThreshold`
 *   (default 3) times in a row; `onResult` is called for the first published result and for each
 *   change, never twice in a row with the same result;
 * - zero values take the defaults (as the API server's defaulting does); negative ones, and a
 *   `successThreshold` other than 1 for liveness/startup probes, are refused by the constructor
 *   (PodSpecError), as is a probe with no handler or more than one;
 * - after a published liveness or startup failure the prober holds (stops probing) until
 *   `start()` is called again for the new container run, as the kubelet's `onHold`; after a
 *   published startup success it stops too (a started container is not startup-probed again).
 *
 * Handlers ({@link probeOnce}, also usable for lifecycle hooks):
 * - `exec`: the injected exec (the runtime's), killed at the timeout; exit 0 is success, a
 *   timeout is a failure (`command "…" timed out`), the output is the message;
 * - `httpGet`: GET `scheme://host:port/path` with `httpHeaders` (plus `User-Agent: kube-probe/ledge`
 *   and `Accept: *\/*` unless given; a `Host` header sets the request's host), no keep-alive; HTTPS
 *   without certificate verification, as the kubelet; host defaults to the pod IP; port a number
 *   or a container port's name; 200–399 is success; at most 10 KiB of the body is read. Redirects
 *   are followed, as the kubelet does, only to the same host name (at most 10: the 11th is a
 *   failure); a redirect elsewhere ends there and counts as success, with the message
 *   `Probe terminated redirects, Response body: …`;
 * - `tcpSocket`: a connection to host:port within the timeout is success;
 * - `grpc`: not supported: every attempt is a failure, `grpc probes are not supported`.
 *
 * Nothing here throws once constructed: a failing handler, a throwing exec or a throwing
 * `onResult` become failures or a log line.
 */
import type { V1ExecAction, V1HTTPGetAction, V1Probe, V1TCPSocketAction } from '@kubernetes/client-node';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIPv6, connect as netConnect } from 'node:net';
import { errorMessage, PodSpecError } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';

export type ProbeKind = 'liveness' | 'readiness' | 'startup';
export type ProbeResult = 'success' | 'failure';

/** The result of one exec (the runtime's ExecResult). */
export interface ProbeExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export type ProbeExec = (command: string[], timeoutMs: number) => Promise<ProbeExecResult>;

/** Timers the prober uses (inject fakes in tests). */
export interface ProbeTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface ProberOptions {
  probe: V1Probe;
  kind: ProbeKind;
  /** Runs a command in the container, killed at `timeoutMs`. */
  exec: ProbeExec;
  /** The pod IP: httpGet/tcpSocket's host when they name none. */
  host: string;
  /** Container port names → numbers (httpGet/tcpSocket `port: <name>`). */
  namedPorts: Record<string, number>;
  timers?: ProbeTimers;
  /** Called with the first published result and every change. */
  onResult(result: ProbeResult, message: string): void;
  log?: Logger;
}

/** What one attempt needs besides the handler. */
export interface ProbeContext {
  exec: ProbeExec;
  host: string;
  namedPorts: Record<string, number>;
  timeoutMs: number;
  timers?: ProbeTimers;
}

export interface ProbeOutcome {
  result: ProbeResult;
  message: string;
}

/** Most body bytes an httpGet probe reads (the kubelet's maxRespBodyLength). */
export const MAX_PROBE_BODY_BYTES = 10 * 1024;
/** Most redirects an httpGet probe follows. */
export const MAX_PROBE_REDIRECTS = 10;
const USER_AGENT = 'kube-probe/ledge';
/** Slack over the timeout before an exec that never answers is given up on. */
const EXEC_GRACE_MS = 1000;

const realTimers: ProbeTimers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** A handler's kind: the one of exec/httpGet/tcpSocket/grpc that is set. */
export type ProbeHandler = Pick<V1Probe, 'exec' | 'httpGet' | 'tcpSocket' | 'grpc'>;

function handlersOf(h: ProbeHandler): string[] {
  return (['exec', 'httpGet', 'tcpSocket', 'grpc'] as const).filter((k) => h[k] != null);
}

/** A port number or name → a port number, or an error message. */
function resolvePort(port: number | string | undefined, namedPorts: Record<string, number>): number | string {
  let n: number | undefined;
  if (typeof port === 'number') n = port;
  else if (typeof port === 'string' && /^[0-9]+$/.test(port)) n = Number(port);
  else if (typeof port === 'string') {
    n = Object.hasOwn(namedPorts, port) ? namedPorts[port] : undefined;
    if (n === undefined) return `couldn't find port: ${port}`;
  } else return 'no port given';
  if (!Number.isInteger(n) || n < 1 || n > 65535) return `invalid port number: ${n}`;
  return n;
}

function hostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

function dialError(err: unknown, addr: string): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ECONNREFUSED') return `dial tcp ${addr}: connect: connection refused`;
  if (e.code === 'EHOSTUNREACH') return `dial tcp ${addr}: connect: no route to host`;
  if (e.code === 'ENETUNREACH') return `dial tcp ${addr}: connect: network is unreachable`;
  return `dial tcp ${addr}: ${errorMessage(err)}`;
}

async function execOnce(action: V1ExecAction, ctx: ProbeContext): Promise<ProbeOutcome> {
  const command = action.command ?? [];
  if (command.length === 0) return { result: 'failure', message: 'exec probe has no command' };
  const timers = ctx.timers ?? realTimers;
  let timer: unknown;
  const guard = new Promise<'hung'>((resolve) => {
    timer = timers.setTimeout(() => resolve('hung'), ctx.timeoutMs + EXEC_GRACE_MS);
  });
  const quoted = JSON.stringify(command.join(' '));
  try {
    const r = await Promise.race([ctx.exec(command, ctx.timeoutMs), guard]);
    if (r === 'hung' || r.timedOut) return { result: 'failure', message: `command ${quoted} timed out` };
    const output = `${r.stdout}${r.stderr}`;
    if (r.exitCode === 0) return { result: 'success', message: output };
    return { result: 'failure', message: output.trim() !== '' ? output : `command ${quoted} exited with ${r.exitCode}` };
  } catch (err) {
    return { result: 'failure', message: `probe errored: ${errorMessage(err)}` };
  } finally {
    timers.clearTimeout(timer);
  }
}

interface HttpTarget {
  scheme: 'http' | 'https';
  host: string;
  port: number;
  path: string;
}

function targetUrl(t: HttpTarget): string {
  return `${t.scheme}://${hostPort(t.host, t.port)}${t.path}`;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

async function httpOnce(action: V1HTTPGetAction, ctx: ProbeContext): Promise<ProbeOutcome> {
  const scheme = (action.scheme ?? 'HTTP').toUpperCase();
  if (scheme !== 'HTTP' && scheme !== 'HTTPS') return { result: 'failure', message: `unsupported scheme ${action.scheme}` };
  const port = resolvePort(action.port, ctx.namedPorts);
  if (typeof port === 'string') return { result: 'failure', message: port };
  let path = action.path ?? '';
  if (!path.startsWith('/')) path = `/${path}`;
  const headers: Record<string, string | string[]> = {};
  for (const h of action.httpHeaders ?? []) {
    const k = h.name.toLowerCase();
    const prev = headers[k];
    headers[k] = prev === undefined ? h.value : [...(Array.isArray(prev) ? prev : [prev]), h.value];
  }
  headers['user-agent'] ??= USER_AGENT;
  headers.accept ??= '*/*';
  headers.connection = 'close';
  const first: HttpTarget = { scheme: scheme === 'HTTPS' ? 'https' : 'http', host: action.host || ctx.host, port, path };
  const timers = ctx.timers ?? realTimers;
  let current: http.ClientRequest | undefined;
  let timedOut = false;
  let url = targetUrl(first);
  const timer = timers.setTimeout(() => {
    timedOut = true;
    current?.destroy(new Error('timeout'));
  }, ctx.timeoutMs);
  const get = (t: HttpTarget, hdrs: Record<string, string | string[]>): Promise<{ res: IncomingMessage; body: Buffer }> =>
    new Promise((resolve, reject) => {
      if (timedOut) return reject(new Error('timeout')); // the deadline passed between two redirects
      const mod = t.scheme === 'https' ? https : http;
      const req = mod.request(
        { method: 'GET', host: t.host, port: t.port, path: t.path, headers: hdrs, agent: false, ...(t.scheme === 'https' ? { rejectUnauthorized: false } : {}) },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            if (size >= MAX_PROBE_BODY_BYTES) return;
            chunks.push(c.subarray(0, MAX_PROBE_BODY_BYTES - size));
            size += Math.min(c.length, MAX_PROBE_BODY_BYTES - size);
            if (size >= MAX_PROBE_BODY_BYTES) {
              // Enough read: the rest is not waited for.
              req.destroy();
              resolve({ res, body: Buffer.concat(chunks) });
            }
          });
          res.on('end', () => resolve({ res, body: Buffer.concat(chunks) }));
          res.on('error', reject);
          res.on('close', () => {
            if (!res.complete) reject(new Error('the connection closed before the response was complete'));
          });
        },
      );
      current = req;
      req.on('error', reject);
      req.end();
    });
  try {
    let target = first;
    let hdrs = headers;
    for (let redirects = 0; ; redirects++) {
      url = targetUrl(target);
      const { res, body } = await get(target, hdrs);
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (REDIRECTS.has(status) && location) {
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          return { result: 'success', message: `Probe terminated redirects, Response body: ${body.toString('utf8')}` };
        }
        const hostname = next.hostname.replace(/^\[|\]$/g, '');
        if ((next.protocol === 'http:' || next.protocol === 'https:') && hostname === first.host) {
          if (redirects + 1 > MAX_PROBE_REDIRECTS) return { result: 'failure', message: `Get ${JSON.stringify(next.href)}: stopped after ${MAX_PROBE_REDIRECTS} redirects` };
          const absolute = /^[a-z][a-z0-9+.-]*:/i.test(location);
          if (absolute && hdrs.host !== undefined) {
            hdrs = { ...hdrs };
            delete hdrs.host;
          }
          target = {
            scheme: next.protocol === 'https:' ? 'https' : 'http',
            host: first.host,
            port: next.port ? Number(next.port) : next.protocol === 'https:' ? 443 : 80,
            path: `${next.pathname}${next.search}`,
          };
          continue;
        }
      }
      const text = body.toString('utf8');
      if (status >= 200 && status < 400) {
        if (status >= 300) return { result: 'success', message: `Probe terminated redirects, Response body: ${text}` };
        return { result: 'success', message: text };
      }
      return { result: 'failure', message: `HTTP probe failed with statuscode: ${status}` };
    }
  } catch (err) {
    if (timedOut) return { result: 'failure', message: `Get ${JSON.stringify(url)}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)` };
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ECONNREFUSED' || e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH') {
      const u = new URL(url);
      return { result: 'failure', message: `Get ${JSON.stringify(url)}: ${dialError(err, u.host)}` };
    }
    return { result: 'failure', message: `Get ${JSON.stringify(url)}: ${errorMessage(err)}` };
  } finally {
    timers.clearTimeout(timer);
    current?.destroy();
  }
}

function tcpOnce(action: V1TCPSocketAction, ctx: ProbeContext): Promise<ProbeOutcome> {
  const port = resolvePort(action.port, ctx.namedPorts);
  if (typeof port === 'string') return Promise.resolve({ result: 'failure', message: port });
  const host = action.host || ctx.host;
  const addr = hostPort(host, port);
  const timers = ctx.timers ?? realTimers;
  return new Promise((resolve) => {
    let done = false;
    const socket = netConnect({ host, port });
    const finish = (o: ProbeOutcome) => {
      if (done) return;
      done = true;
      timers.clearTimeout(timer);
      socket.destroy();
      resolve(o);
    };
    const timer = timers.setTimeout(() => finish({ result: 'failure', message: `dial tcp ${addr}: i/o timeout` }), ctx.timeoutMs);
    socket.once('connect', () => finish({ result: 'success', message: '' }));
    socket.once('error', (err) => finish({ result: 'failure', message: dialError(err, addr) }));
  });
}

/**
 * One attempt of a handler (exec, httpGet, tcpSocket; grpc fails), bounded by `ctx.timeoutMs`.
 * Never rejects.
 */
export async function probeOnce(handler: ProbeHandler, ctx: ProbeContext): Promise<ProbeOutcome> {
  try {
    if (handler.exec) return await execOnce(handler.exec, ctx);
    if (handler.httpGet) return await httpOnce(handler.httpGet, ctx);
    if (handler.tcpSocket) return await tcpOnce(handler.tcpSocket, ctx);
    if (handler.grpc) return { result: 'failure', message: 'grpc probes are not supported' };
    return { result: 'failure', message: 'the probe has no handler' };
  } catch (err) {
    return { result: 'failure', message: `probe errored: ${errorMessage(err)}` };
  }
}

function seconds(value: number | undefined, field: string, fallback: number, min: number): number {
  if (value === undefined || value === null || value === 0) return fallback;
  if (!Number.isInteger(value) || value < 0) throw new PodSpecError(`probe ${field} must be a non-negative integer (got ${value})`);
  return Math.max(min, value);
}

/** One probe of one container run (module doc). */
export class Prober {
  readonly kind: ProbeKind;
  readonly initialDelayMs: number;
  readonly periodMs: number;
  readonly timeoutMs: number;
  readonly successThreshold: number;
  readonly failureThreshold: number;
  private readonly options: ProberOptions;
  private readonly timers: ProbeTimers;
  private timer: unknown;
  private generation = 0;
  private active = false;
  private inFlight = false;
  private owed = false;
  private lastRaw: ProbeResult | undefined;
  private run = 0;
  private published: ProbeResult | undefined;
  private publishedMessage = '';

  constructor(options: ProberOptions) {
    const p = options.probe;
    const handlers = handlersOf(p);
    if (handlers.length === 0) throw new PodSpecError(`${options.kind} probe has no handler (exec, httpGet, tcpSocket or grpc)`);
    if (handlers.length > 1) throw new PodSpecError(`${options.kind} probe has more than one handler (${handlers.join(', ')})`);
    this.kind = options.kind;
    if (p.initialDelaySeconds !== undefined && p.initialDelaySeconds !== null && (!Number.isInteger(p.initialDelaySeconds) || p.initialDelaySeconds < 0))
      throw new PodSpecError(`probe initialDelaySeconds must be a non-negative integer (got ${p.initialDelaySeconds})`);
    this.initialDelayMs = (p.initialDelaySeconds ?? 0) * 1000;
    this.periodMs = seconds(p.periodSeconds, 'periodSeconds', 10, 1) * 1000;
    this.timeoutMs = seconds(p.timeoutSeconds, 'timeoutSeconds', 1, 1) * 1000;
    this.successThreshold = seconds(p.successThreshold, 'successThreshold', 1, 1);
    this.failureThreshold = seconds(p.failureThreshold, 'failureThreshold', 3, 1);
    if (this.kind !== 'readiness' && this.successThreshold !== 1) throw new PodSpecError(`${this.kind} probe successThreshold must be 1 (got ${this.successThreshold})`);
    this.options = options;
    this.timers = options.timers ?? realTimers;
  }

  /** The last published result (undefined before the first). */
  get result(): ProbeResult | undefined {
    return this.published;
  }

  get message(): string {
    return this.publishedMessage;
  }

  /** Whether an attempt is in flight. */
  get busy(): boolean {
    return this.inFlight;
  }

  /** Whether it is probing (started, not stopped, not holding). */
  get running(): boolean {
    return this.active;
  }

  /** Starts probing (again: counters and the published result start over). No-op while running. */
  start(): void {
    if (this.active) return;
    this.active = true;
    this.generation++;
    this.lastRaw = undefined;
    this.run = 0;
    this.published = undefined;
    this.publishedMessage = '';
    this.owed = false;
    this.schedule(this.initialDelayMs);
  }

  /** Stops probing; a probe in flight finishes but its result is dropped. */
  stop(): void {
    this.active = false;
    this.generation++;
    this.owed = false;
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    const gen = this.generation;
    this.timer = this.timers.setTimeout(() => {
      this.timer = undefined;
      if (gen === this.generation) this.tick();
    }, ms);
  }

  private tick(): void {
    if (!this.active) return;
    if (this.inFlight) {
      this.owed = true;
      return;
    }
    this.schedule(this.periodMs);
    void this.attempt();
  }

  private async attempt(): Promise<void> {
    const gen = this.generation;
    this.inFlight = true;
    const outcome = await probeOnce(this.options.probe, {
      exec: this.options.exec,
      host: this.options.host,
      namedPorts: this.options.namedPorts,
      timeoutMs: this.timeoutMs,
      timers: this.timers,
    });
    this.inFlight = false;
    // A result of before a stop() is dropped; a tick owed meanwhile (also after a restart) runs now.
    if (gen === this.generation && this.active) this.record(outcome);
    if (this.active && this.owed) {
      this.owed = false;
      this.tick();
    }
  }

  private record(o: ProbeOutcome): void {
    if (o.result === this.lastRaw) this.run++;
    else {
      this.lastRaw = o.result;
      this.run = 1;
    }
    if (this.run < (o.result === 'success' ? this.successThreshold : this.failureThreshold)) return;
    const changed = this.published !== o.result;
    this.published = o.result;
    this.publishedMessage = o.message;
    const hold = (this.kind !== 'readiness' && o.result === 'failure') || (this.kind === 'startup' && o.result === 'success');
    if (hold) this.stop();
    if (!changed) return;
    try {
      this.options.onResult(o.result, o.message);
    } catch (err) {
      this.options.log?.warn(`${this.kind} probe listener failed: ${errorMessage(err)}`);
    }
  }
}
