/**
 * @module
 * CloudHub: the WebSocket server edge nodes connect to. A node is the one its client
 * certificate names (`CN=system:node:<name>, O=system:nodes`, verified against the client CA;
 * issue 13): anything else is refused before the upgrade, and plain ws:// with self-declared
 * names runs only when asked for (`insecurePlainWebSocket`) on loopback. Plain HTTPS requests on
 * the same port go to `httpHandler` (the join endpoint). One session per node; a
 * second connection from the same node replaces the first. Downstream messages from
 * cloud modules (resource `node/{name}/{namespace}/{type}/{name}`, or `node/*\/…` for
 * every connected node) go through the node's {@link DeliveryQueue}: ordered per
 * resource, coalescing, bounded, retried until ACKed, paused by socket backpressure.
 * Upstream messages are de-duplicated by id, handed to the cloud module of their
 * group, and ACKed only after that module answered. An upstream `query` (a node asking
 * for an object it does not hold) is answered with a `response` carrying the module's
 * answer (`parentId` = the query's id) instead of an ACK, and is not de-duplicated: a
 * query changes nothing, and the edge forgets it on disconnect.
 *
 * Hostile or broken peers are bounded (docs/design.md "Budgets toward hostile peers"):
 * every frame a node sends costs a token of its rate budget, frames ws already parsed
 * while reading is held wait in a short backlog, replies count against the session's
 * unflushed-bytes budget (a peer that stops reading is cut off), idle node state is
 * evicted, and repeated warnings are summarised per window.
 */
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { channel } from 'node:diagnostics_channel';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import {
  createCborCodec,
  messageIdOf,
  newAck,
  newMessage,
  newResponse,
  Operation,
  ModuleName,
  Group,
  NODE_NAME_HEADER,
  NODE_SESSION_HEADER,
  NODE_STREAMS_HEADER,
  SUBPROTOCOL,
  StreamFrameType,
  isStreamFrame,
  type Codec,
  type ErrorContent,
  type Message,
  type StreamFrame,
  type StreamRequest,
} from '../../shared/protocol/index.js';
import {
  closeReason,
  ConfigError,
  DisconnectedError,
  ErrorCode,
  errorCode,
  errorContent,
  errorMessage,
  HandshakeError,
  hasCode,
  HeartbeatTimeoutError,
  InvalidMessageError,
  KubeApiError,
  NoSuchModuleError,
  QueueFullError,
  SlowPeerError,
  CertExpiredError,
  TextFrameError,
  LedgeError,
  NodeRevokedError,
  RevocationsUnavailableError,
  UnsupportedError,
} from '../../shared/errors/index.js';
import { Mux, type Stream } from '../../shared/stream/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { DeliveryQueue } from '../../shared/delivery/index.js';
import { NodeState, TokenBucket, type FrameKind, type Outgoing } from './node-state.js';
import { LogLimiter, seconds } from './log-limiter.js';
import { hubTransport, resolveCloudHubOptions, type CloudHubOptions, type CloudHubTlsCredentials, type HubTransport } from './options.js';
import { isLoopbackHost, isNodeName, nodeFromCertificate, type CertificateIdentity } from './identity.js';
import { ackReport, sessionReport, SessionOperation, type AckedObject, type SessionReport } from './reports.js';

export { isLoopbackHost } from './identity.js';

const connectedChannel = channel('ledge:cloudhub:connected');
const disconnectedChannel = channel('ledge:cloudhub:disconnected');
const ackChannel = channel('ledge:cloudhub:ack');

/**
 * Stream DATA (stdin to exec) is written only while fewer bytes than this wait in a session's socket,
 * so sync messages never queue behind more than this much stream data (docs/protocol.md, "Streams").
 */
const STREAM_LOW_WATER = 64 * 1024;

/** HTTP status of a refused upgrade whose client is not authenticated (no, untrusted, expired or non-node certificate; a name it does not carry). */
const UNAUTHENTICATED = 401;

/**
 * What CloudHub needs besides its options. Everything it tells other modules goes over
 * Beehive (./reports.ts): ACK reports to each message's sender, session reports to
 * `options.sessionSubscribers`.
 */
export interface CloudHubDeps {
  log: Logger;
}

export interface NodeSummary {
  name: string;
  connected: boolean;
  queued: number;
  inFlight: number;
  /** Bytes handed to the socket and not yet flushed to the kernel. */
  unflushedBytes: number;
  /** Reading from the socket is held (throttled, busy or over its unflushed-bytes budget). */
  paused: boolean;
  /** Frames read while reading was held, not processed yet. */
  backlog: number;
  stats: NodeState['stats'];
}

export class CloudHub implements Module {
  readonly name = ModuleName.CloudHub;
  readonly group = Group.Hub;
  readonly options: CloudHubOptions;
  /** How nodes are authenticated: by client certificate (`mtls`), or not at all (`plain`, loopback development). */
  readonly transport: HubTransport;
  private readonly codec: Codec;
  private readonly log: Logger;
  private readonly nodes = new Map<string, NodeState>();
  /** States with no connection and no pending work, oldest first (see `idleNodeGraceMs`). */
  private readonly idle = new Map<string, NodeState>();
  /** Rate limit for hub-wide warnings (refused handshakes, TLS failures). */
  private readonly hubLog: LogLimiter;
  private server: Server | undefined;
  /** What the TLS server serves with: from the options at listen, or as replaced by {@link setTlsCredentials}. */
  private credentials: CloudHubTlsCredentials | undefined;
  private parsedCas: { pem: string; certs: X509Certificate[] } | undefined;
  private wss: WebSocketServer | undefined;
  private ctx: ModuleContext | undefined;
  private timers: NodeJS.Timeout[] = [];
  /** The client certificate of each live session (only with a `revocation` check): what `closeRevokedSessions` re-checks. */
  private readonly sessionCertificates = new Map<string, X509Certificate>();
  private listening: Promise<void> | undefined;
  private resolveListening!: () => void;

  constructor(options: Partial<CloudHubOptions>, deps: CloudHubDeps) {
    this.options = resolveCloudHubOptions(options);
    // Before anything binds: CloudHub never serves nodes it cannot tell apart (unless asked to, on loopback).
    this.transport = hubTransport(this.options);
    this.codec = createCborCodec({ maxFrameBytes: this.options.maxFrameBytes });
    this.log = deps.log;
    this.hubLog = new LogLimiter(this.options.logWindowMs);
    this.listening = new Promise((r) => (this.resolveListening = r));
  }

  /** Resolves once the server listens. */
  ready(): Promise<void> {
    return this.listening!;
  }

  /** The bound port (useful with port 0). */
  get port(): number {
    const addr = this.server?.address();
    return typeof addr === 'object' && addr ? addr.port : this.options.port;
  }

  get url(): string {
    const host = this.options.host === '0.0.0.0' || this.options.host === '::' ? '127.0.0.1' : this.options.host;
    return `${this.transport === 'mtls' ? 'wss' : 'ws'}://${host}:${this.port}${this.options.path}`;
  }

  /**
   * Replaces the serving certificate, its key and the client CA (rotation). New TLS handshakes use
   * them; open sessions keep theirs. Before the server listens, they replace what the options give.
   */
  setTlsCredentials(credentials: CloudHubTlsCredentials): void {
    if (this.transport !== 'mtls') throw new ConfigError('setTlsCredentials: this CloudHub serves plain ws:// (insecurePlainWebSocket), not TLS');
    if (!credentials.cert || !credentials.key || !credentials.ca) throw new ConfigError('setTlsCredentials: cert, key and ca are all required');
    // setSecureContext throws on a bad PEM or a key that does not match: the old credentials stay.
    (this.server as HttpsServer | undefined)?.setSecureContext({ cert: credentials.cert, key: credentials.key, ca: credentials.ca });
    this.credentials = { ...credentials };
  }

  /** The PEM credentials of the options (files read now). */
  private credentialsFromOptions(): CloudHubTlsCredentials {
    const t = this.options.tls!;
    const read = (pem: string | undefined, file: string | undefined, what: string): string => {
      if (pem) return pem;
      try {
        return readFileSync(file!, 'utf8');
      } catch (err) {
        throw new ConfigError(`cannot read the ${what} ${file}: ${errorMessage(err)}`, { cause: err });
      }
    };
    return { cert: read(t.cert, t.certFile, 'server certificate'), key: read(t.key, t.keyFile, 'server private key'), ca: read(t.ca, t.caFile, 'client CA') };
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    this.ctx = ctx;
    await this.listen();
    const sweep = Math.min(1000, Math.max(50, Math.floor(this.options.ackTimeoutMs / 4)));
    this.timers.push(setInterval(() => this.retrySweep(), sweep));
    this.timers.push(setInterval(() => this.heartbeatSweep(), this.options.heartbeatIntervalMs));
    try {
      for await (const msg of ctx.messages(signal)) {
        this.dispatchDownstream(msg);
      }
    } finally {
      await this.shutdown();
    }
  }

  private listen(): Promise<void> {
    const o = this.options;
    let server: Server;
    try {
      if (this.transport === 'mtls') {
        this.credentials ??= this.credentialsFromOptions();
        // A client certificate is asked for, never required by TLS itself: the join endpoint serves
        // nodes that have none yet; the WebSocket upgrade requires a verified one (onUpgrade).
        server = createHttpsServer({ ...this.credentials, requestCert: true, rejectUnauthorized: false });
      } else {
        server = createHttpServer();
      }
    } catch (err) {
      return Promise.reject(err instanceof ConfigError ? err : new ConfigError(`CloudHub's TLS credentials are not usable: ${errorMessage(err)}`, { cause: err }));
    }
    server.on('request', (req, res) => this.onRequest(req, res));
    // clientTracking off: sessions are tracked per node here, and the Set costs memory at 10k nodes.
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: o.maxFrameBytes,
      perMessageDeflate: false,
      clientTracking: false,
      // Pings are answered by CloudHub, so they cost rate tokens and count against the send budget.
      autoPong: false,
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    server.on('upgrade', (req, socket, head) => this.onUpgrade(wss, req, socket, head));
    server.on('tlsClientError', (err) =>
      this.warnLimited('tls', `TLS handshake failed: ${err.message}`, { code: ErrorCode.Tls }, (n, ms) => `${n} more TLS handshakes failed in the last ${seconds(ms)}`),
    );
    server.on('clientError', (err, socket) => {
      this.log.debug(`bad HTTP request: ${err.message}`);
      socket.destroy();
    });
    this.server = server;
    this.wss = wss;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        const bound = server.address();
        const address = typeof bound === 'object' && bound ? bound.address : o.host;
        if (this.transport === 'plain' && !isLoopbackHost(address)) {
          // The name was loopback (checked at construction) and resolved to something else.
          server.close();
          reject(new ConfigError(`--insecure-plain-websocket: ${o.host} resolved to ${address}, not a loopback address; CloudHub does not serve unauthenticated ws:// there`));
          return;
        }
        this.log.info('cloudhub listening', { url: this.url, address, tls: this.transport === 'mtls' });
        if (this.transport === 'plain') {
          this.log.warn(
            `CloudHub serves plain ws:// WITHOUT AUTHENTICATION (--insecure-plain-websocket): every node names itself (${NODE_NAME_HEADER}), so any process on this machine can act as any node. Development only; serve nodes with TLS and client certificates (--tls-cert-file, --tls-key-file, --tls-ca-file)`,
            { code: ErrorCode.Insecure, address },
          );
        }
        this.resolveListening();
        resolve();
      });
    });
  }

  /** A plain HTTP(S) request: the embedder's handler first (the join endpoint), else 426 on the WebSocket path and 404 elsewhere. */
  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const o = this.options;
    try {
      if (o.httpHandler?.(req, res)) return;
    } catch (err) {
      this.log.error(`HTTP handler failed on ${req.method} ${(req.url ?? '').slice(0, 100)}: ${errorMessage(err)}`, { code: errorCode(err) });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end();
      return;
    }
    if ((req.url ?? '').split('?')[0] === o.path) {
      res.writeHead(426, { 'content-type': 'text/plain' }).end(`CloudHub speaks WebSocket (${SUBPROTOCOL}) at ${o.path}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }

  /** Refuses an upgrade before it happens: HTTP `status` (default: the error's, else 400), the body `<code>: <reason>` (`err`'s code, default LEDGE_ERR_HANDSHAKE). */
  private reject(socket: Duplex, reason: string, remote: string, kind: string, status?: number, error?: LedgeError): void {
    const err = error ?? new HandshakeError(reason);
    this.warnLimited(
      `refused:${kind}`,
      `edge connection refused: ${reason}`,
      { code: err.code, remote },
      (n, ms) => `${n} more edge connections refused (${kind}) in the last ${seconds(ms)}`,
    );
    status ??= err.httpStatus ?? 400;
    const body = `${err.code}: ${reason}\n`;
    const retry = status === 503 ? 'Retry-After: 1\r\n' : '';
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n${retry}Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  }

  private onUpgrade(wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    const url = req.url ?? '';
    if (url.split('?')[0] !== this.options.path) return this.reject(socket, `unknown path ${url.slice(0, 100)}`, remote, 'path');
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
    if (!protocols.includes(SUBPROTOCOL))
      return this.reject(socket, `subprotocol ${SUBPROTOCOL} required (offered: ${protocols.join(',').slice(0, 200) || 'none'})`, remote, 'subprotocol');
    const claimed = req.headers[NODE_NAME_HEADER];
    let node: string;
    let certificate: CertificateIdentity | undefined;
    let x509: X509Certificate | undefined;
    if (this.transport === 'mtls') {
      const identity = this.certificateIdentity(req.socket as TLSSocket);
      if ('reason' in identity) return this.reject(socket, identity.reason, remote, 'certificate', UNAUTHENTICATED);
      certificate = identity;
      node = identity.node;
      if (claimed !== undefined && claimed !== node) {
        return this.reject(socket, `certificate names node ${node}, header ${NODE_NAME_HEADER} claims ${String(claimed).slice(0, 253)}`, remote, 'impersonation', UNAUTHENTICATED);
      }
      if (this.options.revocation) {
        x509 = (req.socket as TLSSocket).getPeerX509Certificate();
        const refused = this.revocationError(node, x509);
        // Logged once per node and window: a revoked node retries with backoff for as long as it runs.
        if (refused) return this.reject(socket, refused.message, remote, refused instanceof NodeRevokedError ? `revoked:${node}` : 'revocations-loading', undefined, refused);
      }
    } else {
      node = typeof claimed === 'string' ? claimed : '';
      if (!isNodeName(node)) return this.reject(socket, `missing or invalid node name header ${NODE_NAME_HEADER}`, remote, 'name');
    }
    if (this.wouldExceedNodeLimit(node)) return this.reject(socket, `node limit ${this.options.maxNodes} reached`, remote, 'limit');
    const streams = req.headers[NODE_STREAMS_HEADER] === '1';
    wss.handleUpgrade(req, socket, head, (ws) =>
      this.acceptSession(ws, node, remote, String(req.headers[NODE_SESSION_HEADER] ?? ''), { streams, ...(certificate ? { certificate } : {}), ...(x509 ? { x509 } : {}) }),
    );
  }

  /**
   * The node a connection's client certificate names, or why it names none: no certificate, one
   * that CloudHub's client CA did not verify (another CA, expired, not for client auth), or a
   * subject that is no node's.
   */
  private certificateIdentity(tlsSocket: TLSSocket): CertificateIdentity | { reason: string } {
    const cert = tlsSocket.getPeerCertificate?.();
    if (!cert || Object.keys(cert).length === 0) {
      return { reason: 'no client certificate: a node connects with the certificate "ledge join" wrote (EdgeCore --cert-file, --key-file)' };
    }
    if (!tlsSocket.authorized) {
      const why = String(tlsSocket.authorizationError ?? 'not verified');
      const expired = why === 'CERT_HAS_EXPIRED' ? ' (expired: re-join the node)' : '';
      return { reason: `client certificate not accepted: ${why}${expired}` };
    }
    // `authorized` alone is not proof: a resumed TLS session reports the verify result saved with
    // its ticket (apiserver/authn.ts met this). The certificate is checked here again: issued and
    // signed by a client CA of now, and valid now.
    const problem = this.recheckCertificate(tlsSocket.getPeerX509Certificate?.());
    if (problem) return { reason: `client certificate not accepted: ${problem}` };
    return nodeFromCertificate(cert);
  }

  /** Why `cert` is not a valid certificate from one of the client CAs of the current credentials, now; undefined when it is. */
  private recheckCertificate(cert: X509Certificate | undefined): string | undefined {
    if (!cert) return 'no certificate on the connection';
    const now = Date.now();
    if (now < Date.parse(cert.validFrom)) return `not valid before ${cert.validFrom}`;
    if (now > Date.parse(cert.validTo)) return 'CERT_HAS_EXPIRED (expired: re-join the node)';
    const cas = this.clientCas();
    return cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey)) ? undefined : 'not issued by the node CA';
  }

  /** The client CAs of the current credentials, parsed once per credentials. */
  private clientCas(): X509Certificate[] {
    const pem = this.credentials?.ca ?? '';
    if (this.parsedCas?.pem !== pem) {
      const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
      this.parsedCas = { pem, certs: blocks.map((b) => new X509Certificate(b)) };
    }
    return this.parsedCas.certs;
  }

  /**
   * Why the `revocation` check refuses `node`'s certificate: NodeRevokedError (401 at the upgrade,
   * 1008 for a live session), RevocationsUnavailableError while the revocations are not loaded (503).
   */
  private revocationError(node: string, cert: X509Certificate | undefined): LedgeError | undefined {
    const check = this.options.revocation;
    if (!check || this.transport !== 'mtls') return undefined;
    if (!check.loaded()) return new RevocationsUnavailableError('CloudCore is starting and has not loaded the node revocations yet; try again');
    // A verified TLS session always has its certificate; none is refused rather than let through unchecked.
    const reason = cert ? check.refusal(node, cert) : `node ${node}: no client certificate to check for revocation`;
    return reason === undefined ? undefined : new NodeRevokedError(reason);
  }

  /**
   * Closes the live session of `node` with `reason` (a string: close code `closeCode`, default
   * 1000; an error: its close code, default 1008, and `<code>: <message>`). Its queue waits for the
   * next connection. Returns false when this CloudHub holds no session of the node.
   */
  closeSession(node: string, reason: string | LedgeError, closeCode?: number): boolean {
    const s = this.nodes.get(node);
    if (!s?.socket) return false;
    if (typeof reason === 'string') this.detach(s, reason, closeCode ?? 1000);
    else this.closeForError(s, reason, 'session closed by CloudCore');
    return true;
  }

  /**
   * Checks the live sessions of `nodes` (default: all) against the `revocation` check again and
   * closes those it now refuses (NodeRevokedError, 1008): call it when nodes were revoked (issue 13).
   * Returns the nodes whose sessions were closed. Without TLS or a check there is nothing to close.
   */
  closeRevokedSessions(nodes?: Iterable<string>): string[] {
    if (!this.options.revocation || this.transport !== 'mtls') return [];
    const closed: string[] = [];
    for (const node of nodes ?? [...this.sessionCertificates.keys()]) {
      const cert = this.sessionCertificates.get(node);
      if (!cert || !this.nodes.get(node)?.socket) continue;
      const err = this.revocationError(node, cert);
      if (err instanceof NodeRevokedError && this.closeSession(node, err)) closed.push(node);
    }
    return closed;
  }

  /** Live states: connected, or with queued, in-flight or in-progress messages. */
  private get liveCount(): number {
    return this.nodes.size - this.idle.size;
  }

  /** Whether making `node` live would go over `maxNodes` (idle states do not count). */
  private wouldExceedNodeLimit(node: string): boolean {
    const s = this.nodes.get(node);
    return (!s || this.idle.has(node)) && this.liveCount >= this.options.maxNodes;
  }

  private state(node: string): NodeState {
    let s = this.nodes.get(node);
    if (!s) this.nodes.set(node, (s = new NodeState(node)));
    return s;
  }

  /**
   * Files a state as idle when it has no connection and no pending work, or as live
   * otherwise. Call after anything that can change that.
   */
  private settle(s: NodeState): void {
    const isIdle = !s.socket && s.inProgress === 0 && (s.queue?.size ?? 0) === 0 && (s.queue?.inFlightCount ?? 0) === 0;
    if (!isIdle) {
      this.idle.delete(s.name);
      return;
    }
    if (this.idle.has(s.name) || this.nodes.get(s.name) !== s) return;
    s.idleSince = Date.now();
    // What a quick reconnect needs: the ids of the messages that were in flight (EdgeHub sends at most 32 at once).
    s.trimRecent(this.options.idleDedupeWindow);
    s.queue = undefined; // empty; a new one is made on the next message
    this.idle.set(s.name, s);
    for (const oldest of this.idle.values()) {
      if (this.idle.size <= this.options.maxIdleNodes) break;
      this.evict(oldest);
    }
  }

  private evict(s: NodeState): void {
    this.idle.delete(s.name);
    if (this.nodes.get(s.name) === s) this.nodes.delete(s.name);
    s.logLimiter?.close();
  }

  /**
   * Drops idle states older than `idleNodeGraceMs`; returns how many. Runs on the retry
   * sweep; public for tests and embedders.
   */
  evictIdleNodes(now = Date.now()): number {
    let n = 0;
    for (const s of this.idle.values()) {
      if (now - s.idleSince < this.options.idleNodeGraceMs) break;
      this.evict(s);
      n++;
    }
    return n;
  }

  /** How many node states this process holds: live ones count against `maxNodes`. */
  nodeCounts(): { total: number; live: number; idle: number } {
    return { total: this.nodes.size, live: this.liveCount, idle: this.idle.size };
  }

  /** Logs a warning at most once per window and `key`, then a summary line of what it left out. */
  private warnLimited(key: string, msg: string, fields: Record<string, unknown>, summary: (n: number, ms: number) => string, s?: NodeState): void {
    const limiter = s ? (s.logLimiter ??= new LogLimiter(this.options.logWindowMs)) : this.hubLog;
    limiter.event(
      key,
      () => this.log.warn(msg, fields),
      (n, ms) => this.log.warn(summary(n, ms), { ...fields, suppressed: n }),
    );
  }

  private queueOf(s: NodeState): DeliveryQueue<Outgoing> {
    if (s.queue) return s.queue;
    const o = this.options;
    s.queue = new DeliveryQueue<Outgoing>({
      coalesce: true,
      maxQueued: o.maxQueuedPerNode,
      maxInFlight: o.maxInFlightPerNode,
      ackTimeoutMs: o.ackTimeoutMs,
      maxAckTimeoutMs: o.maxAckTimeoutMs,
      canTransmit: () => s.unflushed < o.sendHighWaterMark,
      transmit: (d) => {
        if (d.attempts > 1) s.stats.resent++;
        else s.stats.sent++;
        this.write(s, d.item.frame);
      },
      onSuperseded: () => void s.stats.superseded++,
    });
    if (s.connected) s.queue.attach();
    return s.queue;
  }

  private write(s: NodeState, frame: Uint8Array): void {
    const ws = s.socket;
    if (!ws) return;
    const gen = s.generation;
    s.unflushed += frame.length;
    if (s.unflushed > this.options.maxUnflushedBytes) this.overBudget(s);
    ws.send(frame, { binary: true }, () => this.flushed(s, gen, frame.length));
  }

  /** Answers a ping; the pong counts against the send budget like any reply. */
  private writePong(s: NodeState, data: Buffer): void {
    const ws = s.socket;
    if (!ws || ws.readyState !== ws.OPEN) return;
    const gen = s.generation;
    s.unflushed += data.length + 2;
    if (s.unflushed > this.options.maxUnflushedBytes) this.overBudget(s);
    ws.pong(data, false, () => this.flushed(s, gen, data.length + 2));
  }

  private flushed(s: NodeState, gen: number, bytes: number): void {
    if (s.generation !== gen) return;
    s.unflushed -= bytes;
    if (s.overBudget && s.unflushed <= this.options.maxUnflushedBytes / 2) {
      // The peer reads again: stop the cut-off clock and read from it again.
      s.overBudget = false;
      clearTimeout(s.cutoffTimer);
      s.cutoffTimer = undefined;
      this.release(s);
    }
    // Below the high-water mark again: let the queue continue.
    if (s.queue && s.unflushed < this.options.sendHighWaterMark) s.queue.pump();
    if (s.mux && s.unflushed < STREAM_LOW_WATER) s.mux.pump();
  }

  /** Writes a stream frame of the session `gen` (the mux decides when DATA may go). */
  private writeStream(s: NodeState, gen: number, frame: StreamFrame): void {
    if (s.generation !== gen) return;
    try {
      this.write(s, this.codec.encodeStream(frame));
    } catch (err) {
      this.log.warn(`cannot encode a frame of stream ${frame.id}: ${errorMessage(err)}`, { node: s.name, code: errorCode(err) });
    }
  }

  /**
   * Opens a stream to `node` over its session here (kubectl logs/exec/attach; CloudStream). Throws
   * DisconnectedError when this replica holds no session of the node, UnsupportedError when its
   * EdgeCore serves no streams, QueueFullError when its link has as many streams as it takes.
   */
  openStream(node: string, request: StreamRequest): Stream {
    const s = this.nodes.get(node);
    if (!s?.socket) throw new DisconnectedError(`node ${node} is not connected to this CloudCore`);
    if (!s.mux) throw new UnsupportedError(`the EdgeCore of node ${node} does not serve streams (it is older than this CloudCore): upgrade it`);
    return s.mux.open(request);
  }

  /**
   * The session's unflushed bytes went over budget: stop reading from it, so it causes
   * no more replies, and cut it off if it does not read within `slowPeerTimeoutMs`.
   */
  private overBudget(s: NodeState): void {
    if (s.overBudget || !s.socket) return;
    s.overBudget = true;
    this.updateReading(s);
    const gen = s.generation;
    s.cutoffTimer = setTimeout(() => {
      s.cutoffTimer = undefined;
      if (s.generation !== gen || !s.overBudget) return;
      const err = new SlowPeerError(`peer does not read: ${s.unflushed} bytes unflushed (limit ${this.options.maxUnflushedBytes}) for ${this.options.slowPeerTimeoutMs} ms`);
      this.closeForError(s, err, 'node does not read what it is sent');
    }, this.options.slowPeerTimeoutMs);
    s.cutoffTimer.unref?.();
  }

  /**
   * Takes over an upgraded socket as the session of `node` (after the handshake checks,
   * including the node limit). Public for tests with fake sockets.
   */
  acceptSession(ws: WebSocket, node: string, remote: string, session = '', features: { streams?: boolean; certificate?: CertificateIdentity; x509?: X509Certificate } = {}): void {
    const s = this.state(node);
    if (s.socket) {
      this.log.info('node reconnected; replacing its previous connection', { node, remote, previous: s.remote });
      this.detach(s, 'replaced by a new connection');
    }
    this.idle.delete(node);
    s.generation++;
    const gen = s.generation;
    s.socket = ws;
    s.remote = remote;
    s.lastSeen = Date.now();
    s.unflushed = 0;
    s.paused = false;
    s.throttled = false;
    s.overBudget = false;
    s.backlog = undefined;
    s.mux = features.streams ? new Mux({ write: (f) => this.writeStream(s, gen, f), canWrite: () => s.generation === gen && s.unflushed < STREAM_LOW_WATER }) : undefined;
    // Upstream work of a previous connection still in progress counts against this one.
    s.busy = s.inProgress >= this.options.maxUpstreamInProgress;
    // Kept across reconnects (and while idle): reconnecting does not refill a flooder's budget.
    s.bucket ??= new TokenBucket(this.options.upstreamQps, this.options.upstreamBurst);
    const cert = features.certificate;
    this.log.info('node connected', { node, remote, queued: s.queue?.size ?? 0, ...(cert ? { certificateSerial: cert.serialNumber, certificateValidTo: cert.validTo } : {}) });
    ws.on('message', (data, isBinary) => this.inbound(s, gen, isBinary ? 'binary' : 'text', data));
    ws.on('ping', (data) => this.inbound(s, gen, 'ping', data));
    ws.on('pong', (data) => this.inbound(s, gen, 'pong', data));
    ws.on('error', (err) => {
      const code = (err as { code?: string }).code;
      this.log.warn(`session error: ${err.message}`, { node, code: code ?? ErrorCode.Session });
    });
    ws.on('close', (code, reason) => {
      if (s.generation !== gen) return;
      this.detach(s, `closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`);
    });
    s.queue?.attach();
    this.updateReading(s);
    this.reportSession(SessionOperation.Connected, { node, remote, ...(session ? { session } : {}) });
    if (connectedChannel.hasSubscribers) connectedChannel.publish({ node, remote });
    if (cert) this.closeAtExpiry(s, gen, Date.parse(cert.validTo));
    if (features.x509 && this.options.revocation) {
      this.sessionCertificates.set(node, features.x509);
      // Revoked between the upgrade's check and now: closed at once, as a live session would be.
      if (this.closeRevokedSessions([node]).length) return;
    }
  }

  /**
   * The live session of `node` may run until `notAfterMs` (its node renewed its certificate through
   * this replica's /v1/renew, which issued one valid until then): it is not closed at the expiry of
   * the certificate it was opened with. Only ever extends. Returns whether a session was extended.
   */
  extendSessionExpiry(node: string, notAfterMs: number): boolean {
    const s = this.nodes.get(node);
    if (!s?.socket || s.certNotAfter === undefined || !(notAfterMs > s.certNotAfter)) return false;
    this.closeAtExpiry(s, s.generation, notAfterMs);
    return true;
  }

  /**
   * A session lasts no longer than its node's certificate: the one it was opened with, or a
   * renewal issued meanwhile ({@link extendSessionExpiry}). At that expiry the session is closed
   * (1008, CertExpiredError): a node that did not renew must re-join. A renewal made through
   * another replica is not seen here: that session is closed once at the old expiry and the node
   * reconnects with its new certificate. Timers are capped at 2^31-1 ms and re-armed.
   */
  private closeAtExpiry(s: NodeState, gen: number, notAfterMs: number): void {
    if (!Number.isFinite(notAfterMs)) return;
    s.certNotAfter = notAfterMs;
    clearTimeout(s.expiryTimer);
    const left = notAfterMs - Date.now();
    s.expiryTimer = setTimeout(
      () => {
        s.expiryTimer = undefined;
        if (s.generation !== gen || !s.socket) return;
        if (Date.now() < notAfterMs) return this.closeAtExpiry(s, gen, notAfterMs);
        this.closeForError(
          s,
          new CertExpiredError(`the client certificate of node ${s.name} expired at ${new Date(notAfterMs).toISOString()}: it must renew (or re-join: edgecore join --force)`),
          'certificate expired',
        );
      },
      Math.max(0, Math.min(left, 2 ** 31 - 1)),
    );
    s.expiryTimer.unref?.();
  }

  /** Ends the node's current connection; its queue waits for the next one. */
  private detach(s: NodeState, reason: string, closeCode = 1000): void {
    const ws = s.socket;
    if (!ws) return;
    s.socket = undefined;
    this.sessionCertificates.delete(s.name);
    s.generation++;
    s.unflushed = 0;
    s.mux?.closeAll({ code: ErrorCode.Disconnected, message: `node ${s.name} disconnected: ${reason}` });
    s.mux = undefined;
    s.paused = false;
    s.throttled = false;
    s.overBudget = false;
    s.backlog = undefined;
    clearTimeout(s.cutoffTimer);
    s.cutoffTimer = undefined;
    clearTimeout(s.expiryTimer);
    s.expiryTimer = undefined;
    s.certNotAfter = undefined;
    s.logLimiter?.close();
    s.queue?.detach();
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) {
      try {
        ws.close(closeCode, reason.slice(0, 120));
      } catch {
        ws.terminate();
      }
      // A peer that never answers the close handshake must not hold the socket.
      setTimeout(() => ws.terminate(), 5000).unref();
    }
    this.log.info('node disconnected', { node: s.name, reason });
    this.reportSession(SessionOperation.Disconnected, { node: s.name, reason });
    if (disconnectedChannel.hasSubscribers) disconnectedChannel.publish({ node: s.name, reason });
    this.settle(s);
  }

  /** Closes the session with the error's close code (1008 if it has none) and the reason `<code>: <message>`. */
  private closeForError(s: NodeState, err: unknown, what: string): void {
    const code = errorCode(err);
    this.log.warn(`${what}: ${errorMessage(err)}; closing session`, { node: s.name, code });
    this.detach(s, closeReason(err), (err instanceof LedgeError ? err.closeCode : undefined) ?? 1008);
  }

  /** Reading is held: out of tokens, too much upstream work in progress, or over the send budget. */
  private holding(s: NodeState): boolean {
    return s.throttled || s.busy || s.overBudget;
  }

  /** Pauses or resumes the socket to match the state. */
  private updateReading(s: NodeState): void {
    const ws = s.socket;
    if (!ws) return;
    const hold = s.backlog !== undefined || this.holding(s);
    if (hold && !s.paused) {
      s.paused = true;
      ws.pause();
    } else if (!hold && s.paused) {
      s.paused = false;
      ws.resume();
    }
  }

  /**
   * Every frame read from a session comes here. ws emits all frames of a chunk it has
   * read even after pause(), so frames that arrive while reading is held, or before
   * older held ones, wait in the backlog (bounded by one read chunk plus one frame).
   */
  private inbound(s: NodeState, gen: number, kind: FrameKind, data: RawData): void {
    if (s.generation !== gen) return;
    s.lastSeen = Date.now();
    if (s.backlog !== undefined || this.holding(s) || !this.admit(s)) {
      (s.backlog ??= []).push({ kind, data });
      this.updateReading(s);
      return;
    }
    this.process(s, kind, data);
    this.updateReading(s);
  }

  /** Whether the node has a token for one more frame; if not, throttles it. */
  private admit(s: NodeState): boolean {
    const wait = s.bucket!.wait();
    if (wait === 0) return true;
    this.throttle(s, wait);
    return false;
  }

  /** Processes the frames held in the backlog while reading is not held, then resumes reading. */
  private release(s: NodeState): void {
    const gen = s.generation;
    while (s.backlog !== undefined && s.generation === gen && !this.holding(s) && this.admit(s)) {
      const next = s.backlog.shift()!;
      if (s.backlog.length === 0) s.backlog = undefined;
      this.process(s, next.kind, next.data);
    }
    if (s.generation === gen) this.updateReading(s);
  }

  /** Handles one frame and charges its token (an ACK of a message in flight is free: CloudHub's sends bound those). */
  private process(s: NodeState, kind: FrameKind, data: RawData): void {
    s.stats.frames++;
    let free = false;
    switch (kind) {
      case 'binary':
        free = this.onFrame(s, data);
        break;
      case 'text':
        this.closeForError(s, new TextFrameError(), 'text frame from node');
        break;
      case 'ping':
        this.writePong(s, toBuffer(data));
        break;
      case 'pong':
        break; // liveness only (lastSeen)
    }
    if (!free) s.bucket!.take();
  }

  /** Handles a binary frame; returns true when it was an ACK of a message in flight. */
  private onFrame(s: NodeState, data: RawData): boolean {
    const frame = toBuffer(data);
    let msg: Message;
    try {
      const decoded = this.codec.decodeFrame(frame);
      if (isStreamFrame(decoded)) {
        // DATA of an open stream is bounded by the credit CloudHub granted: free, like an ACK. The rest costs a token.
        const free = decoded.type === StreamFrameType.Data && s.mux?.has(decoded.id) === true;
        if (s.mux) s.mux.receive(decoded);
        return free;
      }
      msg = decoded;
    } catch (err) {
      const id = messageIdOf(err);
      if (id !== undefined) {
        // Well-formed frame with an unknown operation: reject this message only.
        this.rejected(s, `message rejected: ${errorMessage(err)}`, { code: errorCode(err), id });
        this.sendDirect(
          s,
          newAck({ header: { id, timestamp: 0, sync: true }, route: { source: '', group: '', operation: '', resource: '' }, content: null }, this.name, errorContent(err)),
        );
        return false;
      }
      this.closeForError(s, err, 'undecodable frame from node');
      return false;
    }
    switch (msg.route.operation) {
      case Operation.Ack:
        return this.onAck(s, msg);
      case Operation.Keepalive:
        this.sendDirect(s, newMessage({ source: this.name, group: Group.Hub, operation: Operation.Keepalive, resource: 'node', content: 'pong', parentId: msg.header.id }));
        return false;
      default:
        this.onUpstream(s, msg);
        return false;
    }
  }

  /** A rejected message: counted, and logged at most once per window per node with a summary of the rest. */
  private rejected(s: NodeState, msg: string, fields: Record<string, unknown>): void {
    s.stats.rejected++;
    this.warnLimited('rejected', msg, { node: s.name, ...fields }, (n, ms) => `${n} more rejected frames from node ${s.name} in the last ${seconds(ms)}`, s);
  }

  private sendDirect(s: NodeState, msg: Message): void {
    try {
      this.write(s, this.codec.encode(msg));
    } catch (err) {
      this.log.error(`cannot send ${msg.route.operation}: ${errorMessage(err)}`, { node: s.name, code: errorCode(err) });
    }
  }

  /** Returns true when the ACK acknowledged a message in flight. */
  private onAck(s: NodeState, ack: Message): boolean {
    const parentId = ack.header.parentId;
    if (!parentId || !s.queue) return false;
    const d = s.queue.ack(parentId);
    if (!d) return false; // late duplicate ACK of a resend, or a bogus one
    s.stats.acked++;
    const original = d.item.message;
    const error = ack.content as ErrorContent | null;
    if (error && typeof error === 'object') {
      this.warnLimited(
        'node-rejected',
        `node rejected ${original.route.operation} ${original.route.resource}: ${error.message}`,
        { node: s.name, code: error.code, id: original.header.id },
        (n, ms) => `${n} more messages rejected by node ${s.name} in the last ${seconds(ms)}`,
        s,
      );
    }
    if (ackChannel.hasSubscribers) {
      const acked: AckedObject = {
        node: s.name,
        resource: original.route.resource,
        operation: original.route.operation,
        messageId: original.header.id,
        ...(original.header.resourceVersion !== undefined ? { resourceVersion: original.header.resourceVersion } : {}),
      };
      ackChannel.publish(acked);
    }
    // The one ACK channel: a report through Beehive to the module that sent the message (the SyncController records it).
    this.ctx?.send(original.route.source, ackReport(s.name, original, error && typeof error === 'object' ? error : null)).catch((err) => {
      if (!(err instanceof NoSuchModuleError)) this.log.debug(`ack report not delivered: ${errorMessage(err)}`);
    });
    return true;
  }

  /** Tells the modules in `sessionSubscribers` (over Beehive) that a node connected or disconnected. */
  private reportSession(operation: SessionOperation, info: SessionReport): void {
    for (const to of this.options.sessionSubscribers) {
      this.ctx?.send(to, sessionReport(operation, info)).catch((err) => {
        if (!(err instanceof NoSuchModuleError)) this.log.debug(`session report not delivered: ${errorMessage(err)}`, { node: info.node });
      });
    }
  }

  private onUpstream(s: NodeState, msg: Message): void {
    s.stats.received++;
    if (msg.route.operation === Operation.Query) return this.onQuery(s, msg);
    const id = msg.header.id;
    const seen = s.remember(id, this.options.dedupeWindow);
    if (seen !== undefined) {
      s.stats.duplicates++;
      // Already handled: the ACK was lost, send it again. Still handling: the ACK will follow.
      if (seen === 'done' && msg.header.sync) this.sendDirect(s, newAck(msg, this.name));
      return;
    }
    s.inProgress++;
    if (s.inProgress >= this.options.maxUpstreamInProgress) s.busy = true;
    const gen = s.generation;
    this.handleUpstream(s, msg)
      .then((result) => {
        s.handled(id);
        if (msg.header.sync && s.generation === gen) this.sendDirect(s, newAck(msg, this.name, result ?? undefined));
      })
      .catch((err) => {
        // Not handled: forget the id so the edge's retry is processed, and withhold the ACK.
        s.forget(id);
        this.warnLimited(
          'unhandled',
          `upstream ${msg.route.operation} ${msg.route.resource} not handled: ${errorMessage(err)}; the edge will retry`,
          { node: s.name, code: errorCode(err) },
          (n, ms) => `${n} more upstream messages of node ${s.name} not handled in the last ${seconds(ms)}`,
          s,
        );
      })
      .finally(() => this.upstreamDone(s));
  }

  /** One upstream message of `s` finished: reading resumes once half of the work in progress is done. */
  private upstreamDone(s: NodeState): void {
    s.inProgress--;
    if (s.busy && s.inProgress < this.options.maxUpstreamInProgress / 2) {
      s.busy = false;
      this.release(s);
    }
    this.settle(s);
  }

  /**
   * A node's query: handed to the cloud module of its group like any upstream message, and its
   * answer (an object, or an error content) sent back as a `response` on the same session. It
   * counts as upstream work in progress (the node's reading is held beyond the bound).
   */
  private onQuery(s: NodeState, msg: Message): void {
    s.inProgress++;
    if (s.inProgress >= this.options.maxUpstreamInProgress) s.busy = true;
    const gen = s.generation;
    const target = this.options.upstreamRoutes[msg.route.group];
    const routed: Message = { ...msg, route: { ...msg.route, resource: `node/${s.name}/${msg.route.resource}` } };
    const answer: Promise<unknown> = target
      ? this.ctx!.sendSync(target, routed, this.options.upstreamHandleTimeoutMs).then((r) => r.content)
      : Promise.resolve(errorContent(new NoSuchModuleError(`no handler for group ${msg.route.group}`)));
    answer
      .catch((err: unknown) => errorContent(err instanceof NoSuchModuleError ? new NoSuchModuleError(`no handler for group ${msg.route.group}`) : err))
      .then((content) => {
        // A new session: the edge failed this query when the old one closed.
        if (s.generation !== gen) return;
        let frame: Uint8Array;
        try {
          frame = this.codec.encode(newResponse(msg, this.name, content));
        } catch (err) {
          // An answer too big for a frame (or unencodable) is still an answer: the error.
          frame = this.codec.encode(newResponse(msg, this.name, errorContent(err)));
        }
        this.write(s, frame);
      })
      .finally(() => this.upstreamDone(s));
  }

  /** Returns null when handled, or an error to put in the ACK (message rejected, not retried). */
  private async handleUpstream(s: NodeState, msg: Message): Promise<ErrorContent | null> {
    const target = this.options.upstreamRoutes[msg.route.group];
    const routed: Message = { ...msg, route: { ...msg.route, resource: `node/${s.name}/${msg.route.resource}` } };
    if (!target) {
      this.rejected(s, `no cloud module handles group "${msg.route.group.slice(0, 100)}"; message rejected`, { code: NoSuchModuleError.code });
      return errorContent(new NoSuchModuleError(`no handler for group ${msg.route.group}`));
    }
    try {
      const resp = await this.ctx!.sendSync(target, routed, this.options.upstreamHandleTimeoutMs);
      const c = resp.content as ErrorContent | null;
      if (!c || typeof c !== 'object' || typeof c.code !== 'string') return null;
      // The module failed to handle it (an API write failed): not ACKed, so the edge's resend is handled again.
      if (hasCode(c, ErrorCode.Api)) throw new KubeApiError(c.message);
      return c;
    } catch (err) {
      if (err instanceof NoSuchModuleError) {
        this.rejected(s, `cloud module "${target}" for group "${msg.route.group}" is not running; message rejected`, { code: err.code });
        return errorContent(new NoSuchModuleError(`no handler for group ${msg.route.group}`));
      }
      throw err;
    }
  }

  /** Reading from a node that exceeds its rate pauses until a token refills (TCP pushes back on it). */
  private throttle(s: NodeState, waitMs: number): void {
    if (s.throttled) return;
    this.warnLimited(
      'rate',
      `node exceeds ${this.options.upstreamQps} frames/s; throttling it`,
      { node: s.name, code: ErrorCode.RateLimit },
      (n, ms) => `node ${s.name} was throttled ${n} more times in the last ${seconds(ms)}`,
      s,
    );
    s.throttled = true;
    this.updateReading(s);
    const gen = s.generation;
    const t = setTimeout(() => {
      if (s.generation !== gen) return;
      s.throttled = false;
      this.release(s);
    }, waitMs);
    t.unref?.();
  }

  private dispatchDownstream(msg: Message): void {
    const m = /^node\/([^/]+)\/(.*)$/.exec(msg.route.resource);
    if (!m) {
      this.log.warn(`downstream message without node/<name>/ resource prefix dropped: ${msg.route.resource.slice(0, 100)}`, { code: InvalidMessageError.code });
      return;
    }
    const [, node, rest] = m as unknown as [string, string, string];
    const edgeMsg: Message = { ...msg, route: { ...msg.route, resource: rest } };
    if (node === '*') {
      // One encode for every node: the frame is the same bytes for all of them (at 10k nodes,
      // per-node encodes of a 1 KB message cost 100-200 ms before the first ACK can be read).
      let frame: Uint8Array;
      try {
        frame = this.codec.encode(edgeMsg);
      } catch (err) {
        this.log.error(`cannot encode broadcast message: ${errorMessage(err)}`, { code: errorCode(err), resource: rest });
        return;
      }
      for (const s of this.nodes.values()) if (s.connected) this.enqueue(s, edgeMsg, frame);
      return;
    }
    const known = this.nodes.get(node);
    if (!edgeMsg.header.sync) {
      // Best effort: only to a connected node; never creates state.
      if (known?.connected) this.enqueue(known, edgeMsg);
      return;
    }
    if (this.wouldExceedNodeLimit(node)) {
      this.warnLimited(
        'downstream-limit',
        `node limit reached; message for unknown node ${node} dropped`,
        { code: QueueFullError.code },
        (n, ms) => `${n} more messages for unknown nodes dropped (node limit) in the last ${seconds(ms)}`,
      );
      return;
    }
    const s = known ?? this.state(node);
    this.enqueue(s, edgeMsg);
    this.settle(s);
  }

  /** Queues `msg` for one node; `encoded` is its frame when the caller already encoded it (broadcasts). */
  private enqueue(s: NodeState, msg: Message, encoded?: Uint8Array): void {
    let frame: Uint8Array;
    try {
      frame = encoded ?? this.codec.encode(msg);
    } catch (err) {
      this.log.error(`cannot encode message for ${s.name}: ${errorMessage(err)}`, { code: errorCode(err), resource: msg.route.resource });
      return;
    }
    if (!msg.header.sync) {
      // Fire-and-forget (e.g. keepalives, no-ACK resources): only while connected.
      if (s.connected) this.write(s, frame);
      return;
    }
    try {
      this.queueOf(s).enqueue(msg.header.id, msg.route.resource, { message: msg, frame });
    } catch (err) {
      if (err instanceof QueueFullError)
        this.log.warn(`queue of node ${s.name} is full; message dropped (the sync controller will resend)`, { code: err.code, resource: msg.route.resource });
      else throw err;
    }
  }

  /**
   * Queues a message for a node directly (embedding, benchmarks). Normal modules
   * send to 'cloudhub' through Beehive with resource `node/<name>/...`.
   */
  sendToNode(node: string, msg: Message): void {
    this.dispatchDownstream({ ...msg, route: { ...msg.route, resource: `node/${node}/${msg.route.resource}` } });
  }

  private retrySweep(): void {
    const now = Date.now();
    for (const s of this.nodes.values()) if (s.queue && s.queue.inFlightCount > 0) s.queue.tick(now);
    this.evictIdleNodes(now);
  }

  private heartbeatSweep(): void {
    const now = Date.now();
    for (const s of this.nodes.values()) {
      const ws = s.socket;
      if (!ws) continue;
      if (now - s.lastSeen > this.options.heartbeatTimeoutMs) {
        // Close reason `LEDGE_ERR_HEARTBEAT_TIMEOUT: …`, 1001; the link is presumed dead, so no close handshake.
        this.closeForError(s, new HeartbeatTimeoutError(`nothing received for ${now - s.lastSeen} ms (limit ${this.options.heartbeatTimeoutMs} ms)`), 'node missed its heartbeats');
        ws.terminate();
        continue;
      }
      try {
        ws.ping();
      } catch {
        // The close handler deals with a socket that died in between.
      }
    }
  }

  /** A node's queue and counters. */
  nodeSummary(node: string): NodeSummary | undefined {
    const s = this.nodes.get(node);
    if (!s) return undefined;
    return {
      name: s.name,
      connected: s.connected,
      queued: s.queue?.size ?? 0,
      inFlight: s.queue?.inFlightCount ?? 0,
      unflushedBytes: s.unflushed,
      paused: s.paused,
      backlog: s.backlog?.length ?? 0,
      stats: { ...s.stats },
    };
  }

  isConnected(node: string): boolean {
    return this.nodes.get(node)?.connected ?? false;
  }

  connectedNodes(): string[] {
    return [...this.nodes.values()].filter((s) => s.connected).map((s) => s.name);
  }

  private async shutdown(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const s of this.nodes.values()) if (s.socket) this.detach(s, 'cloudcore shutting down', 1001);
    this.hubLog.close();
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections?.();
    });
    this.wss?.close();
    this.log.info('cloudhub stopped');
  }
}

function toBuffer(data: RawData): Buffer {
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
}
