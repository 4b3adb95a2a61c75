/**
 * @module
 * CloudStream: CloudCore's kubelet endpoint (KubeEdge's CloudStream, without the tunnel port
 * and the iptables rules). kube-apiserver dials the Node's address for `kubectl logs`, `exec`
 * and `attach`; that address is this HTTPS server, which carries each request over the node's
 * existing link as a stream (shared/stream), or forwards it to the replica holding the node's
 * session (./leases.ts, ./forward.ts).
 *
 * Guarantees:
 * - **Authentication** before anything else (but `/healthz`): a client certificate that
 *   verifies against `clientCaFile` (the API server's kubelet client certificate), or a
 *   forwarded request carrying the peer token; else 401 with a Status (one log line per window).
 *   Without `clientCaFile`, a client certificate never authenticates (not even a publicly trusted one).
 * - **Kubelet paths and answers**: `/containerLogs/{ns}/{pod}/{container}` (200 chunked
 *   text/plain, streamed as the edge sends it), `/exec/…` and `/attach/…` (WebSocket,
 *   `v5.channel.k8s.io` preferred over `v4.channel.k8s.io`); every refusal before the first
 *   byte is an HTTP error with a metav1.Status body, also for exec/attach (the edge is asked
 *   BEFORE the upgrade, so kubectl prints the edge's reason). SPDY/3.1 (older kubectl, and
 *   kube-apiserver < 1.36 toward kubelets) is bridged by ./spdy.ts the same way.
 * - **Bounded**: at most `maxConcurrent` streams (local and forwarded) at once, else 503; the
 *   edge has `openTimeoutMs` to accept, else 504; back-pressure end to end (see ./channel.ts).
 * - **No forwarding loops**: a forwarded request is never forwarded again (503 instead).
 * - **Client gone → stream aborted** (`LEDGE_ERR_STOPPED`, "the client went away"), so the edge
 *   stops the log follower or the exec session's I/O.
 */
import { createServer as createHttpsServer, type Server } from 'node:https';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isIP } from 'node:net';
import os from 'node:os';
import { timingSafeEqual } from 'node:crypto';
import { WebSocketServer } from 'ws';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { Channel, type Message, type StreamRequest } from '../../shared/protocol/index.js';
import type { Stream, StreamError } from '../../shared/stream/index.js';
import { ErrorCode, errorCode, errorMessage } from '../../shared/errors/index.js';
import type { k8s } from '../kube/index.js';
import { SessionOperation, type SessionReport } from '../cloudhub/reports.js';
import { LogLimiter, seconds } from '../cloudhub/log-limiter.js';
import { defaultCloudStreamOptions, resolveCloudStreamOptions, type CloudStreamOptions } from './options.js';
import { loadOrCreateServingCert, loadServingCert, type ServingCert } from './cert.js';
import { bridge, pickProtocol, V4_PROTOCOL, V5_PROTOCOL } from './channel.js';
import { FORWARDED_HEADER, ForwardError, forwardRequest, forwardUpgrade, type ForwardTarget } from './forward.js';
import { LeaseKeeper, kubeStreamPeers, type PeerInfo, type StreamPeers } from './leases.js';
import { isSpdyUpgrade, serveSpdyExec } from './spdy.js';
import { httpStatusFor, reasonFor, statusBody } from './status.js';

export interface CloudStreamDeps {
  /** Opens a stream to a node over its session on THIS replica; throws DisconnectedError (no session here), UnsupportedError, QueueFullError. */
  openStream(node: string, request: StreamRequest): Stream;
  isConnected(node: string): boolean;
  /** The node a pod is bound to (spec.nodeName), from the EdgeController's informer; undefined: no such pod or not bound. */
  podNode(namespace: string, pod: string): string | undefined;
  /** For the per-node Leases and the peer Secret; without it (and without `peers`): no forwarding (single replica). */
  kc?: k8s.KubeConfig;
  /** This replica's identity (the leader election identity). */
  identity: string;
  /** Replica discovery; default {@link kubeStreamPeers} over `kc`. */
  peers?: StreamPeers;
}

/** A metav1.Status answer. */
interface Refusal {
  code: number;
  reason: string;
  message: string;
  /** Log code. */
  errCode: string;
  /** Already logged (rate-limited refusals). */
  logged?: boolean;
}

type Route = { kind: 'logs' | 'exec' | 'attach'; namespace: string; pod: string; container?: string; query: URLSearchParams };

const UPGRADE_MESSAGE = 'CloudStream serves exec/attach over WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) and SPDY/3.1';
const KINDS: Record<string, Route['kind']> = { containerLogs: 'logs', exec: 'exec', attach: 'attach' };
const WS_KEY = /^[+/0-9A-Za-z]{22}==$/;
/** Largest WebSocket message accepted from the client (kubectl sends stdin in 32 KiB pieces). */
const MAX_CLIENT_MESSAGE = 1024 * 1024;
/** Least time between two re-reads of the peer token after a mismatch. */
const TOKEN_REFRESH_MS = 10_000;

function refusal(code: number, message: string, errCode: string): Refusal {
  return { code, reason: reasonFor(code), message, errCode };
}

/** The answer to a stream the edge (or the hub) refused. */
export function refusalFor(error: StreamError): Refusal {
  return refusal(httpStatusFor(error.code), error.message, error.code);
}

function bad(message: string): never {
  throw Object.assign(new Error(message), { code: ErrorCode.StreamRequest });
}

function boolParam(q: URLSearchParams, name: string): boolean | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0' || v === '') return false;
  bad(`${name} must be true or false (got ${JSON.stringify(v.slice(0, 40))})`);
}

function intParam(q: URLSearchParams, name: string, min: number): number | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  const n = /^\d{1,15}$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min) bad(`${name} must be an integer ≥ ${min} (got ${JSON.stringify(v.slice(0, 40))})`);
  return n;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

/** The logs StreamRequest of a kubelet `/containerLogs` query (throws a StreamRequest-coded error). */
export function logsRequest(route: Route): StreamRequest {
  const q = route.query;
  const req: StreamRequest = { kind: 'logs', namespace: route.namespace, pod: route.pod, ...(route.container ? { container: route.container } : {}) };
  const follow = boolParam(q, 'follow');
  const timestamps = boolParam(q, 'timestamps');
  const previous = boolParam(q, 'previous');
  const tailLines = intParam(q, 'tailLines', 0);
  const sinceSeconds = intParam(q, 'sinceSeconds', 1);
  const limitBytes = intParam(q, 'limitBytes', 1);
  const sinceTime = q.get('sinceTime') ?? undefined;
  if (sinceTime !== undefined && (!RFC3339.test(sinceTime) || Number.isNaN(Date.parse(sinceTime))))
    bad(`sinceTime must be an RFC 3339 time (got ${JSON.stringify(sinceTime.slice(0, 40))})`);
  if (sinceTime !== undefined && sinceSeconds !== undefined) bad('at most one of sinceTime or sinceSeconds may be given');
  if (follow !== undefined) req.follow = follow;
  if (timestamps !== undefined) req.timestamps = timestamps;
  if (previous !== undefined) req.previous = previous;
  if (tailLines !== undefined) req.tailLines = tailLines;
  if (sinceSeconds !== undefined) req.sinceSeconds = sinceSeconds;
  if (limitBytes !== undefined) req.limitBytes = limitBytes;
  if (sinceTime !== undefined) req.sinceTime = sinceTime;
  return req;
}

/** The exec/attach StreamRequest of a kubelet query: `input`/`stdin`, `output`/`stdout`, `error`/`stderr`, `tty` (1 or true), `command` (exec). */
export function execRequest(route: Route): StreamRequest {
  const q = route.query;
  const on = (...names: string[]) => names.some((n) => q.get(n) === '1' || q.get(n) === 'true');
  const stdin = on('input', 'stdin');
  const stdout = on('output', 'stdout');
  const tty = on('tty');
  // As a kubelet does: with a TTY, stderr goes to stdout.
  const stderr = on('error', 'stderr') && !tty;
  if (!stdin && !stdout && !stderr) bad('you must specify at least 1 of stdin, stdout, stderr');
  const req: StreamRequest = {
    kind: route.kind,
    namespace: route.namespace,
    pod: route.pod,
    ...(route.container ? { container: route.container } : {}),
    stdin,
    stdout,
    stderr,
    tty,
  };
  if (route.kind === 'exec') {
    const command = q.getAll('command');
    if (command.length === 0) bad('exec needs a command (query parameter "command", once per argument)');
    req.command = command;
  }
  return req;
}

/** The first non-internal IPv4 address of this machine, else 127.0.0.1. */
function firstIPv4(): string {
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}

const urlHost = (h: string) => (isIP(h) === 6 ? `[${h}]` : h);

/** The advertise address of `options`: `advertiseAddress`, else `host` when it is a specific address, else the first non-internal IPv4 (else 127.0.0.1). */
function advertiseAddressOf(options: Pick<Partial<CloudStreamOptions>, 'advertiseAddress' | 'host'>): string {
  const host = options.host ?? defaultCloudStreamOptions.host;
  return options.advertiseAddress ?? (host && host !== '0.0.0.0' && host !== '::' ? host : firstIPv4());
}

/**
 * What the edge Nodes get (InternalIP/Hostname, kubelet port), from the options alone: for
 * wiring before the server listens. With `port` 0 only the instance knows the port ({@link CloudStream.nodeEndpoint}).
 */
export function cloudStreamEndpoint(options: Pick<Partial<CloudStreamOptions>, 'advertiseAddress' | 'advertisePort' | 'host' | 'port'>): { address: string; port: number } {
  return { address: advertiseAddressOf(options), port: options.advertisePort ?? options.port ?? defaultCloudStreamOptions.port };
}

export class CloudStream implements Module {
  readonly name = 'cloudstream';
  readonly group = 'cloudstream';
  private readonly options: CloudStreamOptions;
  private readonly advertiseAddress: string;
  private readonly limiter = new LogLimiter(10_000);
  private server: Server | undefined;
  private readonly wss: WebSocketServer;
  private cert: ServingCert | undefined;
  private clientCa: Buffer | undefined;
  private peers: StreamPeers | undefined;
  private keeper: LeaseKeeper | undefined;
  private token: string | undefined;
  private tokenReadAt = 0;
  private active = 0;
  private readonly streams = new Set<Stream>();
  private readonly upgraded = new Set<Duplex>();
  private readonly listening: Promise<void>;
  private resolveListening!: () => void;
  stats = { requests: 0, local: 0, forwarded: 0, refused: 0, unauthorized: 0 };

  constructor(
    options: Partial<CloudStreamOptions> & { dataDir: string },
    private readonly deps: CloudStreamDeps,
    private readonly log: Logger,
  ) {
    this.options = resolveCloudStreamOptions(options);
    this.advertiseAddress = advertiseAddressOf(this.options);
    this.listening = new Promise((r) => (this.resolveListening = r));
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: MAX_CLIENT_MESSAGE,
      handleProtocols: (offered) => pickProtocol(offered) ?? false,
    });
  }

  /** Resolves once the server listens (at once when disabled). */
  ready(): Promise<void> {
    return this.listening;
  }

  /** The listening address (port: the bound one, useful with port 0). */
  address(): { host: string; port: number } {
    const a = this.server?.address();
    return { host: this.options.host, port: typeof a === 'object' && a ? a.port : this.options.port };
  }

  /** Whether the server listens now (with port 0, {@link nodeEndpoint} is only meaningful then). */
  isListening(): boolean {
    return this.server?.listening ?? false;
  }

  /** What EdgeController writes into each edge Node (InternalIP, kubeletEndpoint port). Call after {@link ready}. */
  nodeEndpoint(): { address: string; port: number } {
    return { address: this.advertiseAddress, port: this.options.advertisePort ?? this.address().port };
  }

  /** How other replicas reach this one. */
  peerAddress(): string {
    return this.options.peerAddress ?? `https://${urlHost(this.advertiseAddress)}:${this.address().port}`;
  }

  /** Lease writes of this replica (claims, releases, failures), zero without peers. */
  get leaseStats(): { claims: number; releases: number; failures: number } {
    return this.keeper?.stats ?? { claims: 0, releases: 0, failures: 0 };
  }

  /** Streams (local and forwarded) served now. */
  get activeStreams(): number {
    return this.active;
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    if (!this.options.enabled) {
      this.resolveListening();
      for await (const _ of ctx.messages(signal)) {
        // disabled: session reports are ignored
      }
      return;
    }
    await this.listen();
    try {
      for await (const msg of ctx.messages(signal)) this.handle(msg);
    } finally {
      this.shutdown();
    }
  }

  private handle(msg: Message): void {
    switch (msg.route.operation) {
      case SessionOperation.Connected:
      case SessionOperation.Disconnected: {
        const node = (msg.content as SessionReport | undefined)?.node;
        if (typeof node === 'string' && node) this.keeper?.touch(node);
        return;
      }
      default:
        this.log.debug(`message ignored: ${msg.route.operation} ${msg.route.resource}`);
    }
  }

  private async listen(): Promise<void> {
    const o = this.options;
    this.cert ??=
      o.tlsCertFile && o.tlsKeyFile
        ? loadServingCert(o.tlsCertFile, o.tlsKeyFile)
        : await loadOrCreateServingCert(join(o.dataDir, 'cloudstream'), [this.advertiseAddress, o.host, '127.0.0.1', 'localhost', os.hostname()]);
    this.clientCa = o.clientCaFile ? readFileSync(o.clientCaFile) : undefined;
    const server = createHttpsServer({
      cert: this.cert.cert,
      key: this.cert.key,
      // Client certificates are checked per request (req.socket.authorized), so a refusal is a 401 Status, not a TLS failure.
      requestCert: true,
      rejectUnauthorized: false,
      ...(this.clientCa ? { ca: this.clientCa } : {}),
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.onRequest(req, res).catch((err: unknown) => this.internalError(res, err));
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      this.onUpgrade(req, socket, head).catch((err: unknown) => this.internalError(socket, err));
    });
    server.on('tlsClientError', (err: Error) =>
      this.limiter.event(
        'tls',
        () => this.log.warn(`TLS handshake failed: ${err.message}`, { code: ErrorCode.Tls }),
        (n, ms) => this.log.warn(`${n} more TLS handshakes failed in the last ${seconds(ms)}`, { code: ErrorCode.Tls }),
      ),
    );
    server.on('clientError', (err: Error, socket: Duplex) => {
      this.log.debug(`bad HTTP request: ${err.message}`);
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.peers ??= this.deps.peers ?? (this.deps.kc ? kubeStreamPeers(this.deps.kc, o.namespace) : undefined);
    if (this.peers) {
      const peers = this.peers;
      this.keeper = new LeaseKeeper(
        peers,
        () => this.self(),
        (node) => this.deps.isConnected(node),
        this.log,
      );
      // The Secret is made (or read) now, not on the first forwarded request.
      peers.token().then(
        (t) => {
          this.token = t;
          this.tokenReadAt = Date.now();
        },
        (err: unknown) => this.log.warn(`peer token not readable yet: ${errorMessage(err)}`, { code: errorCode(err) }),
      );
    }
    const { port } = this.address();
    this.log.info('cloudstream listening', {
      url: `https://${urlHost(o.host)}:${port}`,
      endpoint: `${this.advertiseAddress}:${this.nodeEndpoint().port}`,
      peer: this.peers ? this.peerAddress() : undefined,
      clientAuth: this.clientCa ? 'certificate' : o.insecureNoClientAuth ? 'none' : 'peers only',
    });
    if (o.insecureNoClientAuth) {
      this.log.warn('cloudstream: insecureNoClientAuth is set: anyone who can reach this port can read logs of and run commands in every edge pod (development only)', {
        code: ErrorCode.Insecure,
      });
    } else if (!this.clientCa) {
      this.log.warn('cloudstream: no clientCaFile: requests from the API server are refused (401). Set it to the CA of kube-apiserver --kubelet-client-certificate', {
        code: ErrorCode.Config,
      });
    }
    this.resolveListening();
  }

  private self(): PeerInfo {
    return { identity: this.deps.identity, address: this.peerAddress(), certSha256: this.cert?.sha256 ?? '' };
  }

  private shutdown(): void {
    this.keeper?.stop();
    this.limiter.close();
    for (const s of [...this.streams]) s.abort({ code: ErrorCode.Stopped, message: 'CloudCore is stopping' });
    for (const s of [...this.upgraded]) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) {
      server.close();
      server.closeAllConnections();
    }
  }

  // ---- requests ----

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      return;
    }
    this.stats.requests++;
    const auth = await this.authenticate(req);
    if (auth !== 'ok' && auth !== 'peer') return this.answer(res, auth, req);
    const route = this.route(req);
    if ('code' in route) return this.answer(res, route, req);
    if (route.kind !== 'logs') {
      return this.answer(res, refusal(400, `${route.kind} needs a WebSocket upgrade (${V5_PROTOCOL} or ${V4_PROTOCOL})`, ErrorCode.StreamRequest), req);
    }
    if (req.method !== 'GET') return this.answer(res, refusal(405, `${req.method} is not allowed on /containerLogs (GET only)`, ErrorCode.StreamRequest), req);
    let request: StreamRequest;
    try {
      request = logsRequest(route);
    } catch (err) {
      return this.answer(res, refusal(400, errorMessage(err), ErrorCode.StreamRequest), req);
    }
    const where = await this.locate(route, auth === 'peer' || req.headers[FORWARDED_HEADER] !== undefined);
    if ('code' in where) return this.answer(res, where, req);
    if ('forward' in where) {
      this.active++;
      this.stats.forwarded++;
      try {
        await forwardRequest(req, res, where.forward);
      } catch (err) {
        this.answer(res, this.forwardRefusal(where.node, err), req);
      } finally {
        this.active--;
      }
      return;
    }
    this.serveLogs(where.node, request, req, res);
  }

  private async onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    this.stats.requests++;
    const auth = await this.authenticate(req);
    if (auth !== 'ok' && auth !== 'peer') return this.answerRaw(socket, auth, req);
    const route = this.route(req);
    if ('code' in route) return this.answerRaw(socket, route, req);
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
    // SPDY/3.1: kubectl < 1.30, and kube-apiserver 1.30–1.35 itself toward kubelets (./spdy.ts).
    const spdy = isSpdyUpgrade(req);
    if (!spdy && upgrade !== 'websocket')
      return this.answerRaw(socket, refusal(400, `unsupported upgrade ${JSON.stringify(upgrade.slice(0, 40))}: ${UPGRADE_MESSAGE}`, ErrorCode.Unsupported), req);
    if (route.kind === 'logs') return this.answerRaw(socket, refusal(400, '/containerLogs is a plain GET, not an upgrade', ErrorCode.StreamRequest), req);
    let protocol: typeof V5_PROTOCOL | typeof V4_PROTOCOL | undefined;
    if (!spdy) {
      const offered = String(req.headers['sec-websocket-protocol'] ?? '')
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean);
      protocol = pickProtocol(offered);
      if (!protocol) {
        return this.answerRaw(
          socket,
          refusal(400, `offer ${V5_PROTOCOL} or ${V4_PROTOCOL} (Sec-WebSocket-Protocol: ${offered.join(', ').slice(0, 200) || 'none'})`, ErrorCode.StreamRequest),
          req,
        );
      }
      if (req.method !== 'GET' || !WS_KEY.test(String(req.headers['sec-websocket-key'] ?? '')) || !['8', '13'].includes(String(req.headers['sec-websocket-version'] ?? ''))) {
        return this.answerRaw(socket, refusal(400, 'not a valid WebSocket handshake (GET, Sec-WebSocket-Key, Sec-WebSocket-Version 13)', ErrorCode.StreamRequest), req);
      }
    }
    let request: StreamRequest;
    try {
      request = execRequest(route);
    } catch (err) {
      return this.answerRaw(socket, refusal(400, errorMessage(err), ErrorCode.StreamRequest), req);
    }
    const where = await this.locate(route, auth === 'peer' || req.headers[FORWARDED_HEADER] !== undefined);
    if ('code' in where) return this.answerRaw(socket, where, req);
    if ('forward' in where) {
      this.active++;
      this.stats.forwarded++;
      this.upgraded.add(socket);
      try {
        await forwardUpgrade(req, socket, head, where.forward);
      } catch (err) {
        this.answerRaw(socket, this.forwardRefusal(where.node, err), req);
      } finally {
        this.upgraded.delete(socket);
        this.active--;
      }
      return;
    }
    if (protocol) this.serveExec(where.node, request, protocol, req, socket, head);
    else this.serveSpdy(where.node, request, req, socket, head);
  }

  /** exec/attach over SPDY/3.1: the stream is opened first, so a refusal is an HTTP error (./spdy.ts). */
  private serveSpdy(node: string, request: StreamRequest, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.upgraded.add(socket);
    socket.once('close', () => this.upgraded.delete(socket));
    const open = () =>
      new Promise<Stream>((resolve, reject) => {
        this.open(node, request, {
          opened: (s) => {
            // Held until the client's SPDY streams exist; the bridge resumes it.
            s.pause();
            resolve(s);
          },
          refused: (r) => {
            this.logRefusal(r, req);
            reject(Object.assign(new Error(r.message), { code: r.errCode, httpStatus: r.code }));
          },
          closed: () => {},
        });
      });
    void serveSpdyExec(req, socket, head, open, this.log);
  }

  /** 'ok' (the API server, or insecure), 'peer' (a replica's forwarded request), or the 401/503 to answer. */
  private async authenticate(req: IncomingMessage): Promise<'ok' | 'peer' | Refusal> {
    const socket = req.socket as TLSSocket;
    if (this.clientCa && socket.authorized) return 'ok';
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer (\S+)$/.exec(auth);
      if (m && this.peers) {
        let token: string;
        try {
          token = await this.peerToken(false);
          if (!same(m[1]!, token) && Date.now() - this.tokenReadAt >= TOKEN_REFRESH_MS) token = await this.peerToken(true);
        } catch (err) {
          return refusal(503, `cannot check the peer token: ${errorMessage(err)}`, errorCode(err));
        }
        if (same(m[1]!, token)) return 'peer';
      }
      if (!this.options.insecureNoClientAuth) return this.unauthorized(req, m ? 'a bearer token that is not the peer token' : 'an Authorization header that is not a bearer token');
    }
    if (this.options.insecureNoClientAuth) return 'ok';
    if (!this.clientCa) return this.unauthorized(req, 'no client CA is configured (clientCaFile), so only forwarded requests from other replicas are served');
    const cert = socket.getPeerCertificate?.();
    const hasCert = cert && Object.keys(cert).length > 0;
    return this.unauthorized(req, hasCert ? `a client certificate that does not verify (${socket.authorizationError ?? 'unknown'})` : 'no client certificate');
  }

  private async peerToken(fresh: boolean): Promise<string> {
    if (this.token !== undefined && !fresh) return this.token;
    const t = await this.peers!.token(fresh);
    this.token = t;
    this.tokenReadAt = Date.now();
    return t;
  }

  private unauthorized(req: IncomingMessage, why: string): Refusal {
    this.stats.unauthorized++;
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    this.limiter.event(
      'unauthorized',
      () => this.log.warn(`cloudstream: unauthenticated request refused: ${why}`, { code: ErrorCode.Forbidden, remote, path: (req.url ?? '').slice(0, 200) }),
      (n, ms) => this.log.warn(`cloudstream: ${n} more unauthenticated requests refused in the last ${seconds(ms)}`, { code: ErrorCode.Forbidden }),
    );
    const needs = this.clientCa ? 'a client certificate of its clientCaFile' : 'a client certificate (clientCaFile is not set)';
    return { ...refusal(401, `Unauthorized: CloudStream needs ${needs} or the peer token; got ${why}`, ErrorCode.Forbidden), logged: true };
  }

  private route(req: IncomingMessage): Route | Refusal {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'https://kubelet');
    } catch {
      return refusal(400, 'malformed request target', ErrorCode.StreamRequest);
    }
    const parts = url.pathname.split('/').slice(1);
    const kind = KINDS[parts[0] ?? ''];
    // The container may be empty (`ledge logs POD`): the edge then picks the pod's only container.
    if (!kind || parts.length !== 4 || parts[1] === '' || parts[2] === '') {
      return refusal(404, `no such path ${url.pathname.slice(0, 200)} (CloudStream serves /containerLogs, /exec and /attach /{namespace}/{pod}/{container})`, ErrorCode.NotFound);
    }
    try {
      const [namespace, pod, container] = parts.slice(1).map((p) => decodeURIComponent(p)) as [string, string, string];
      return { kind, namespace, pod, ...(container ? { container } : {}), query: url.searchParams };
    } catch {
      return refusal(400, 'malformed percent-encoding in the path', ErrorCode.StreamRequest);
    }
  }

  /** Where to serve a request for `route`'s pod: here, at a peer, or a refusal. */
  private async locate(route: Route, forwarded: boolean): Promise<{ node: string } | { node: string; forward: ForwardTarget } | Refusal> {
    if (this.active >= this.options.maxConcurrent) {
      return refusal(503, `CloudStream serves at most ${this.options.maxConcurrent} streams at once; try again`, ErrorCode.QueueFull);
    }
    const node = this.deps.podNode(route.namespace, route.pod);
    if (node === undefined) return refusal(404, `pods "${route.pod}" not found`, ErrorCode.NotFound);
    if (this.deps.isConnected(node)) return { node };
    const notConnected = refusal(503, `node ${node} is not connected to any CloudCore replica`, ErrorCode.Disconnected);
    if (forwarded || !this.peers) return notConnected;
    let holder: PeerInfo | undefined;
    try {
      holder = await this.peers.holder(node);
    } catch (err) {
      return refusal(503, `node ${node} is not connected to this CloudCore replica, and its stream Lease cannot be read: ${errorMessage(err)}`, errorCode(err));
    }
    if (!holder || holder.identity === this.deps.identity) return notConnected;
    let token: string;
    try {
      token = await this.peerToken(false);
    } catch (err) {
      return refusal(503, `node ${node} is held by CloudCore replica ${holder.identity}, but the peer token cannot be read: ${errorMessage(err)}`, errorCode(err));
    }
    // The peer waits up to its own open timeout for the edge: give it that and a little more.
    const forward: ForwardTarget = { address: holder.address, certSha256: holder.certSha256, token, identity: this.deps.identity, timeoutMs: this.options.openTimeoutMs + 5_000 };
    return { node, forward };
  }

  private forwardRefusal(node: string, err: unknown): Refusal {
    const timeout = err instanceof ForwardError && err.timeout;
    return refusal(
      timeout ? 504 : 503,
      `node ${node} is held by another CloudCore replica, which cannot be reached: ${errorMessage(err)}`,
      timeout ? ErrorCode.Timeout : ErrorCode.Disconnected,
    );
  }

  /** Opens the stream and calls back synchronously in the stream's own events (no message can be missed). */
  private open(
    node: string,
    request: StreamRequest,
    handlers: { opened(stream: Stream): void; refused(r: Refusal): void; closed(stream: Stream, error?: StreamError): void },
  ): Stream | undefined {
    let stream: Stream;
    try {
      stream = this.deps.openStream(node, request);
    } catch (err) {
      handlers.refused(refusalFor({ code: errorCode(err), message: errorMessage(err) }));
      return undefined;
    }
    this.active++;
    this.stats.local++;
    this.streams.add(stream);
    let opened = false;
    const timer = setTimeout(() => {
      stream.abort({ code: ErrorCode.Timeout, message: `node ${node} did not accept the ${request.kind} stream within ${this.options.openTimeoutMs} ms` });
    }, this.options.openTimeoutMs);
    stream.on('open', () => {
      clearTimeout(timer);
      opened = true;
      handlers.opened(stream);
    });
    stream.on('close', (error) => {
      clearTimeout(timer);
      this.streams.delete(stream);
      this.active--;
      if (opened) handlers.closed(stream, error);
      else handlers.refused(refusalFor(error ?? { code: ErrorCode.StreamProtocol, message: `node ${node} ended the stream without accepting it` }));
    });
    return stream;
  }

  private serveLogs(node: string, request: StreamRequest, req: IncomingMessage, res: ServerResponse): void {
    let sent = 0;
    const stream = this.open(node, request, {
      opened: () => {
        res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked', 'cache-control': 'no-cache' });
        res.flushHeaders();
      },
      refused: (r) => this.answer(res, r, req),
      closed: (_s, error) => {
        if (error && error.code !== ErrorCode.Stopped) {
          this.log.info(`logs of ${request.namespace}/${request.pod}/${request.container} ended: ${error.message}`, { code: error.code, node, bytes: sent });
        }
        if (!res.writableEnded) res.end();
      },
    });
    if (!stream) return;
    stream.on('message', (channel, payload) => {
      if (channel !== Channel.Stdout || res.writableEnded || !res.headersSent) return;
      sent += payload.length;
      if (!res.write(payload)) {
        stream.pause();
        res.once('drain', () => stream.resume());
      }
    });
    res.once('close', () => {
      if (!stream.closed) stream.abort({ code: ErrorCode.Stopped, message: 'the client went away' });
    });
  }

  private serveExec(node: string, request: StreamRequest, protocol: typeof V5_PROTOCOL | typeof V4_PROTOCOL, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.upgraded.add(socket);
    socket.once('close', () => this.upgraded.delete(socket));
    let bridged = false;
    const stream = this.open(node, request, {
      opened: (s) => {
        // ws completes the upgrade synchronously (no verifyClient), so the bridge is in place before the next stream message.
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          bridged = true;
          bridge(ws, s, protocol, this.log);
        });
        if (!bridged) s.abort({ code: ErrorCode.StreamRequest, message: 'the WebSocket upgrade failed' });
      },
      refused: (r) => this.answerRaw(socket, r, req),
      closed: () => {
        // The bridge closes the WebSocket; a failed upgrade leaves only the socket.
        if (!bridged) socket.destroy();
      },
    });
    if (!stream) return;
    socket.once('close', () => {
      if (!bridged && !stream.closed) stream.abort({ code: ErrorCode.Stopped, message: 'the client went away' });
    });
  }

  // ---- answers ----

  private logRefusal(r: Refusal, req: IncomingMessage): void {
    this.stats.refused++;
    if (r.logged) return;
    const fields = { code: r.errCode, status: r.code, path: (req.url ?? '').split('?')[0]!.slice(0, 200) };
    if (r.code >= 500 && r.errCode !== ErrorCode.Stopped) this.log.warn(`cloudstream: ${r.message}`, fields);
    else this.log.info(`cloudstream: ${r.message}`, fields);
  }

  private answer(res: ServerResponse, r: Refusal, req: IncomingMessage): void {
    this.logRefusal(r, req);
    if (res.headersSent || res.writableEnded || res.destroyed) return;
    const body = statusBody(r.code, r.message);
    res.writeHead(r.code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  }

  private answerRaw(socket: Duplex, r: Refusal, req: IncomingMessage): void {
    this.logRefusal(r, req);
    if (!socket.writable || socket.destroyed) return;
    const body = statusBody(r.code, r.message);
    socket.end(
      `HTTP/1.1 ${r.code} ${STATUS_CODES[r.code] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }

  private internalError(target: ServerResponse | Duplex, err: unknown): void {
    this.log.error(`cloudstream: request failed: ${errorMessage(err)}`, { code: errorCode(err) });
    const r = refusal(500, `internal error: ${errorMessage(err)}`, errorCode(err));
    const body = statusBody(r.code, r.message);
    if ('writeHead' in target) {
      if (!target.headersSent && !target.destroyed) target.writeHead(500, { 'content-type': 'application/json' }).end(body);
      else target.destroy();
    } else if (target.writable)
      target.end(`HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
