/**
 * @module
 * CloudHub: the WebSocket server edge nodes connect to. One session per node; a
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
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
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
  TextFrameError,
  LedgeError,
  UnsupportedError,
} from '../../shared/errors/index.js';
import { Mux, type Stream } from '../../shared/stream/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { DeliveryQueue } from '../../shared/delivery/index.js';
import { NodeState, TokenBucket, type FrameKind, type Outgoing } from './node-state.js';
import { LogLimiter, seconds } from './log-limiter.js';
import { resolveCloudHubOptions, type CloudHubOptions } from './options.js';
import { ackReport, sessionReport, SessionOperation, type AckedObject, type SessionReport } from './reports.js';

const connectedChannel = channel('ledge:cloudhub:connected');
const disconnectedChannel = channel('ledge:cloudhub:disconnected');
const ackChannel = channel('ledge:cloudhub:ack');

/**
 * Stream DATA (stdin to exec) is written only while fewer bytes than this wait in a session's socket,
 * so sync messages never queue behind more than this much stream data (docs/protocol.md, "Streams").
 */
const STREAM_LOW_WATER = 64 * 1024;

/** DNS-1123 subdomain, as Kubernetes requires for node names. */
const NODE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) {
    const canonical = new URL(`http://[${h}]/`).hostname; // compressed, lower case; ::ffff:127.0.0.1 → [::ffff:7f00:1]
    return canonical === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
  }
  return false;
}

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
  private readonly codec: Codec;
  private readonly log: Logger;
  private readonly nodes = new Map<string, NodeState>();
  /** States with no connection and no pending work, oldest first (see `idleNodeGraceMs`). */
  private readonly idle = new Map<string, NodeState>();
  /** Rate limit for hub-wide warnings (refused handshakes, TLS failures). */
  private readonly hubLog: LogLimiter;
  private server: Server | undefined;
  private wss: WebSocketServer | undefined;
  private ctx: ModuleContext | undefined;
  private timers: NodeJS.Timeout[] = [];
  private listening: Promise<void> | undefined;
  private resolveListening!: () => void;

  constructor(options: Partial<CloudHubOptions>, deps: CloudHubDeps) {
    this.options = resolveCloudHubOptions(options);
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
    return `${this.options.tls ? 'wss' : 'ws'}://${host}:${this.port}${this.options.path}`;
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
    const server = o.tls
      ? createHttpsServer({ cert: readFileSync(o.tls.certFile), key: readFileSync(o.tls.keyFile), ...(o.tls.caFile ? { ca: readFileSync(o.tls.caFile) } : {}) })
      : createHttpServer();
    server.on('request', (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' }).end(`CloudHub speaks WebSocket (${SUBPROTOCOL}) at ${o.path}\n`);
    });
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
        this.log.info('cloudhub listening', { url: this.url, address, tls: !!o.tls });
        if (!isLoopbackHost(address)) {
          this.log.warn(
            `CloudHub listens on ${address}, reachable from other machines, while nodes still name themselves (${NODE_NAME_HEADER}, no client certificates): anyone who can reach this port can act as any node. Restrict access to the network, or listen on 127.0.0.1 (the default)`,
            { address },
          );
        }
        this.resolveListening();
        resolve();
      });
    });
  }

  /** Refuses an upgrade before it happens: HTTP 400, the body `LEDGE_ERR_HANDSHAKE: <reason>`. */
  private reject(socket: Duplex, reason: string, remote: string, kind: string): void {
    const err = new HandshakeError(reason);
    this.warnLimited(
      `refused:${kind}`,
      `edge connection refused: ${reason}`,
      { code: err.code, remote },
      (n, ms) => `${n} more edge connections refused (${kind}) in the last ${seconds(ms)}`,
    );
    const status = err.httpStatus ?? 400;
    const body = `${err.code}: ${reason}\n`;
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  }

  private onUpgrade(wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    const url = req.url ?? '';
    if (url.split('?')[0] !== this.options.path) return this.reject(socket, `unknown path ${url.slice(0, 100)}`, remote, 'path');
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
    if (!protocols.includes(SUBPROTOCOL))
      return this.reject(socket, `subprotocol ${SUBPROTOCOL} required (offered: ${protocols.join(',').slice(0, 200) || 'none'})`, remote, 'subprotocol');
    const node = String(req.headers[NODE_NAME_HEADER] ?? '');
    if (!node || node.length > 253 || !NODE_NAME.test(node)) return this.reject(socket, `missing or invalid node name header ${NODE_NAME_HEADER}`, remote, 'name');
    if (this.wouldExceedNodeLimit(node)) return this.reject(socket, `node limit ${this.options.maxNodes} reached`, remote, 'limit');
    const streams = req.headers[NODE_STREAMS_HEADER] === '1';
    wss.handleUpgrade(req, socket, head, (ws) => this.acceptSession(ws, node, remote, String(req.headers[NODE_SESSION_HEADER] ?? ''), { streams }));
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
  acceptSession(ws: WebSocket, node: string, remote: string, session = '', features: { streams?: boolean } = {}): void {
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
    this.log.info('node connected', { node, remote, queued: s.queue?.size ?? 0 });
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
  }

  /** Ends the node's current connection; its queue waits for the next one. */
  private detach(s: NodeState, reason: string, closeCode = 1000): void {
    const ws = s.socket;
    if (!ws) return;
    s.socket = undefined;
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
