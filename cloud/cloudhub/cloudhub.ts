/**
 * @module
 * CloudHub: the WebSocket server edge nodes connect to. One session per node; a
 * second connection from the same node replaces the first. Downstream messages from
 * cloud modules (resource `node/{name}/{namespace}/{type}/{name}`, or `node/*\/…` for
 * every connected node) go through the node's {@link DeliveryQueue}: ordered per
 * resource, coalescing, bounded, retried until ACKed, paused by socket backpressure.
 * Upstream messages are de-duplicated by id, handed to the cloud module of their
 * group, and ACKed only after that module answered.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { channel } from 'node:diagnostics_channel';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import {
  createCborCodec,
  messageIdOf,
  newAck,
  newMessage,
  Operation,
  ModuleName,
  Group,
  NODE_NAME_HEADER,
  NODE_SESSION_HEADER,
  SUBPROTOCOL,
  type Codec,
  type ErrorContent,
  type Message,
} from '../../shared/protocol/index.js';
import { errorCode, errorMessage, HandshakeError, NoSuchModuleError, QueueFullError, TextFrameError, LedgeError } from '../../shared/errors/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { DeliveryQueue } from '../../shared/delivery/index.js';
import { NodeState, TokenBucket, type Outgoing } from './node-state.js';
import { resolveCloudHubOptions, type CloudHubOptions } from './options.js';
import { InMemoryAckRecorder, type AckRecorder } from './ack-recorder.js';

const connectedChannel = channel('ledge:cloudhub:connected');
const disconnectedChannel = channel('ledge:cloudhub:disconnected');
const ackChannel = channel('ledge:cloudhub:ack');

/** DNS-1123 subdomain, as Kubernetes requires for node names. */
const NODE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export interface SessionEvents {
  connected?(node: string, info: { remote: string; session?: string }): void;
  disconnected?(node: string, info: { reason: string }): void;
}

export interface CloudHubDeps {
  log: Logger;
  ackRecorder?: AckRecorder;
  events?: SessionEvents;
}

export interface NodeSummary {
  name: string;
  connected: boolean;
  queued: number;
  inFlight: number;
  /** Bytes handed to the socket and not yet flushed to the kernel. */
  unflushedBytes: number;
  stats: NodeState['stats'];
}

export class CloudHub implements Module {
  readonly name = ModuleName.CloudHub;
  readonly group = Group.Hub;
  readonly options: CloudHubOptions;
  readonly ackRecorder: AckRecorder;
  private readonly codec: Codec;
  private readonly log: Logger;
  private readonly nodes = new Map<string, NodeState>();
  private server: Server | undefined;
  private wss: WebSocketServer | undefined;
  private ctx: ModuleContext | undefined;
  private timers: NodeJS.Timeout[] = [];
  private listening: Promise<void> | undefined;
  private resolveListening!: () => void;

  constructor(options: Partial<CloudHubOptions>, private readonly deps: CloudHubDeps) {
    this.options = resolveCloudHubOptions(options);
    this.codec = createCborCodec({ maxFrameBytes: this.options.maxFrameBytes });
    this.log = deps.log;
    this.ackRecorder = deps.ackRecorder ?? new InMemoryAckRecorder();
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
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    server.on('upgrade', (req, socket, head) => this.onUpgrade(wss, req, socket, head));
    server.on('tlsClientError', (err) => this.log.warn(`TLS handshake failed: ${err.message}`, { code: 'LEDGE_ERR_TLS' }));
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
        this.log.info('cloudhub listening', { url: this.url, tls: !!o.tls });
        this.resolveListening();
        resolve();
      });
    });
  }

  private reject(socket: Duplex, status: number, reason: string, remote: string): void {
    this.log.warn(`edge connection refused: ${reason}`, { code: new HandshakeError().code, remote });
    socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Bad Request'}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(reason) + 1}\r\n\r\n${reason}\n`);
  }

  private onUpgrade(wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    const url = req.url ?? '';
    if (url.split('?')[0] !== this.options.path) return this.reject(socket, 400, `unknown path ${url.slice(0, 100)}`, remote);
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
    if (!protocols.includes(SUBPROTOCOL)) return this.reject(socket, 400, `subprotocol ${SUBPROTOCOL} required (offered: ${protocols.join(',') || 'none'})`, remote);
    const node = String(req.headers[NODE_NAME_HEADER] ?? '');
    if (!node || node.length > 253 || !NODE_NAME.test(node)) return this.reject(socket, 400, `missing or invalid node name header ${NODE_NAME_HEADER}`, remote);
    if (!this.nodes.has(node) && this.nodes.size >= this.options.maxNodes) return this.reject(socket, 400, `node limit ${this.options.maxNodes} reached`, remote);
    wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, node, remote, String(req.headers[NODE_SESSION_HEADER] ?? '')));
  }

  private state(node: string): NodeState {
    let s = this.nodes.get(node);
    if (!s) this.nodes.set(node, (s = new NodeState(node)));
    return s;
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
    ws.send(frame, { binary: true }, () => {
      if (s.generation !== gen) return;
      s.unflushed -= frame.length;
      // Below the high-water mark again: let the queue continue.
      if (s.queue && s.unflushed < this.options.sendHighWaterMark) s.queue.pump();
    });
  }

  private onConnection(ws: WebSocket, node: string, remote: string, session: string): void {
    const s = this.state(node);
    if (s.socket) {
      this.log.info('node reconnected; replacing its previous connection', { node, remote, previous: s.remote });
      this.detach(s, 'replaced by a new connection');
    }
    s.generation++;
    const gen = s.generation;
    s.socket = ws;
    s.remote = remote;
    s.lastSeen = Date.now();
    s.unflushed = 0;
    s.inProgress = 0;
    s.paused = false;
    s.bucket ??= new TokenBucket(this.options.upstreamQps, this.options.upstreamBurst);
    this.log.info('node connected', { node, remote, queued: s.queue?.size ?? 0 });
    ws.on('message', (data, isBinary) => {
      if (s.generation === gen) this.onFrame(s, data, isBinary);
    });
    ws.on('pong', () => {
      if (s.generation === gen) s.lastSeen = Date.now();
    });
    ws.on('ping', () => {
      if (s.generation === gen) s.lastSeen = Date.now();
    });
    ws.on('error', (err) => {
      const code = (err as { code?: string }).code;
      this.log.warn(`session error: ${err.message}`, { node, code: code ?? 'LEDGE_ERR_SESSION' });
    });
    ws.on('close', (code, reason) => {
      if (s.generation !== gen) return;
      this.detach(s, `closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`);
    });
    s.queue?.attach();
    this.deps.events?.connected?.(node, { remote, session });
    if (connectedChannel.hasSubscribers) connectedChannel.publish({ node, remote });
  }

  /** Ends the node's current connection; its queue waits for the next one. */
  private detach(s: NodeState, reason: string, closeCode = 1000): void {
    const ws = s.socket;
    if (!ws) return;
    s.socket = undefined;
    s.generation++;
    s.unflushed = 0;
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
    this.deps.events?.disconnected?.(s.name, { reason });
    if (disconnectedChannel.hasSubscribers) disconnectedChannel.publish({ node: s.name, reason });
  }

  private closeForError(s: NodeState, err: LedgeError | Error, what: string): void {
    const code = errorCode(err);
    this.log.warn(`${what}: ${errorMessage(err)}; closing session`, { node: s.name, code });
    this.detach(s, `${code}: ${errorMessage(err)}`, (err as LedgeError).closeCode ?? 1008);
  }

  private onFrame(s: NodeState, data: RawData, isBinary: boolean): void {
    s.lastSeen = Date.now();
    if (!isBinary) return this.closeForError(s, new TextFrameError(), 'text frame from node');
    const frame = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    let msg: Message;
    try {
      msg = this.codec.decode(frame);
    } catch (err) {
      const id = messageIdOf(err);
      if (id !== undefined) {
        // Well-formed frame with an unknown operation: reject this message only.
        this.log.warn(`message rejected: ${errorMessage(err)}`, { node: s.name, code: errorCode(err), id });
        this.sendDirect(s, newAck({ header: { id, timestamp: 0, sync: true }, route: { source: '', group: '', operation: '', resource: '' }, content: null }, this.name, { code: errorCode(err), message: errorMessage(err) }));
        return;
      }
      return this.closeForError(s, err as Error, 'undecodable frame from node');
    }
    switch (msg.route.operation) {
      case Operation.Ack:
        return this.onAck(s, msg);
      case Operation.Keepalive:
        this.sendDirect(s, newMessage({ source: this.name, group: Group.Hub, operation: Operation.Keepalive, resource: 'node', content: 'pong', parentId: msg.header.id }));
        return;
      default:
        return this.onUpstream(s, msg);
    }
  }

  private sendDirect(s: NodeState, msg: Message): void {
    try {
      this.write(s, this.codec.encode(msg));
    } catch (err) {
      this.log.error(`cannot send ${msg.route.operation}: ${errorMessage(err)}`, { node: s.name, code: errorCode(err) });
    }
  }

  private onAck(s: NodeState, ack: Message): void {
    const parentId = ack.header.parentId;
    if (!parentId || !s.queue) return;
    const d = s.queue.ack(parentId);
    if (!d) return; // late duplicate ACK of a resend
    s.stats.acked++;
    const original = d.item.message;
    const error = ack.content as ErrorContent | null;
    if (error && typeof error === 'object') {
      this.log.warn(`node rejected ${original.route.operation} ${original.route.resource}: ${error.message}`, { node: s.name, code: error.code, id: original.header.id });
    }
    const resource = original.route.resource;
    const acked = { node: s.name, resource, operation: original.route.operation, messageId: original.header.id, ...(original.header.resourceVersion !== undefined ? { resourceVersion: original.header.resourceVersion } : {}) };
    if (!error) {
      try {
        const r = this.ackRecorder.recordAck(acked, original);
        if (r) r.catch((err) => this.log.error(`recording ACK failed: ${errorMessage(err)}`, { node: s.name, code: errorCode(err) }));
      } catch (err) {
        this.log.error(`recording ACK failed: ${errorMessage(err)}`, { node: s.name, code: errorCode(err) });
      }
    }
    if (ackChannel.hasSubscribers) ackChannel.publish(acked);
    // Report onward through Beehive to the module that sent the message.
    const report = newMessage({ source: this.name, group: original.route.group, operation: Operation.Ack, resource: `node/${s.name}/${resource}`, parentId: original.header.id, content: error ?? null, ...(original.header.resourceVersion !== undefined ? { resourceVersion: original.header.resourceVersion } : {}) });
    this.ctx?.send(original.route.source, report).catch((err) => {
      if (!(err instanceof NoSuchModuleError)) this.log.debug(`ack report not delivered: ${errorMessage(err)}`);
    });
  }

  private onUpstream(s: NodeState, msg: Message): void {
    s.stats.received++;
    const id = msg.header.id;
    const seen = s.remember(id, this.options.dedupeWindow);
    if (seen !== undefined) {
      s.stats.duplicates++;
      // Already handled: the ACK was lost, send it again. Still handling: the ACK will follow.
      if (seen === 'done' && msg.header.sync) this.sendDirect(s, newAck(msg, this.name));
      return;
    }
    const wait = s.bucket!.take();
    if (wait > 0) this.throttle(s, wait);
    s.inProgress++;
    if (s.inProgress >= this.options.maxUpstreamInProgress) this.pause(s);
    const gen = s.generation;
    this.handleUpstream(s, msg)
      .then((result) => {
        s.handled(id);
        if (msg.header.sync && s.generation === gen) this.sendDirect(s, newAck(msg, this.name, result ?? undefined));
      })
      .catch((err) => {
        // Not handled: forget the id so the edge's retry is processed, and withhold the ACK.
        s.forget(id);
        this.log.warn(`upstream ${msg.route.operation} ${msg.route.resource} not handled: ${errorMessage(err)}; the edge will retry`, { node: s.name, code: errorCode(err) });
      })
      .finally(() => {
        s.inProgress--;
        if (s.paused && s.inProgress < this.options.maxUpstreamInProgress / 2 && !s.throttled) this.resume(s);
      });
  }

  /** Returns null when handled, or an error to put in the ACK (message rejected, not retried). */
  private async handleUpstream(s: NodeState, msg: Message): Promise<ErrorContent | null> {
    const target = this.options.upstreamRoutes[msg.route.group];
    const routed: Message = { ...msg, route: { ...msg.route, resource: `node/${s.name}/${msg.route.resource}` } };
    if (!target) {
      this.log.warn(`no cloud module handles group "${msg.route.group}"; message rejected`, { node: s.name, code: 'LEDGE_ERR_NO_SUCH_MODULE' });
      return { code: 'LEDGE_ERR_NO_SUCH_MODULE', message: `no handler for group ${msg.route.group}` };
    }
    try {
      const resp = await this.ctx!.sendSync(target, routed, this.options.upstreamHandleTimeoutMs);
      const c = resp.content as ErrorContent | null;
      return c && typeof c === 'object' && typeof c.code === 'string' ? c : null;
    } catch (err) {
      if (err instanceof NoSuchModuleError) {
        this.log.warn(`cloud module "${target}" for group "${msg.route.group}" is not running; message rejected`, { node: s.name, code: err.code });
        return { code: err.code, message: `no handler for group ${msg.route.group}` };
      }
      throw err;
    }
  }

  private pause(s: NodeState): void {
    if (s.paused || !s.socket) return;
    s.paused = true;
    s.socket.pause();
  }

  private resume(s: NodeState): void {
    if (!s.paused) return;
    s.paused = false;
    s.socket?.resume();
  }

  /** Reading from a node that exceeds its rate pauses until tokens refill (TCP pushes back on it). */
  private throttle(s: NodeState, waitMs: number): void {
    if (!s.throttled) {
      this.log.warn(`node exceeds ${this.options.upstreamQps} upstream messages/s; throttling it`, { node: s.name, code: 'LEDGE_ERR_RATE_LIMIT' });
    }
    s.throttled = true;
    this.pause(s);
    const gen = s.generation;
    setTimeout(() => {
      if (s.generation !== gen) return;
      s.throttled = false;
      if (s.inProgress < this.options.maxUpstreamInProgress) this.resume(s);
    }, waitMs).unref();
  }

  private dispatchDownstream(msg: Message): void {
    const m = /^node\/([^/]+)\/(.*)$/.exec(msg.route.resource);
    if (!m) {
      this.log.warn(`downstream message without node/<name>/ resource prefix dropped: ${msg.route.resource.slice(0, 100)}`, { code: 'LEDGE_ERR_INVALID_MESSAGE' });
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
    if (!this.nodes.has(node) && this.nodes.size >= this.options.maxNodes) {
      this.log.warn(`node limit reached; message for unknown node ${node} dropped`, { code: 'LEDGE_ERR_QUEUE_FULL' });
      return;
    }
    this.enqueue(this.state(node), edgeMsg);
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
      if (err instanceof QueueFullError) this.log.warn(`queue of node ${s.name} is full; message dropped (the sync controller will resend)`, { code: err.code, resource: msg.route.resource });
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
  }

  private heartbeatSweep(): void {
    const now = Date.now();
    for (const s of this.nodes.values()) {
      const ws = s.socket;
      if (!ws) continue;
      if (now - s.lastSeen > this.options.heartbeatTimeoutMs) {
        this.log.warn('node missed its heartbeats; closing session', { node: s.name, code: 'LEDGE_ERR_HEARTBEAT_TIMEOUT', silentMs: now - s.lastSeen });
        this.detach(s, 'heartbeat timeout', 1001);
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
    return { name: s.name, connected: s.connected, queued: s.queue?.size ?? 0, inFlight: s.queue?.inFlightCount ?? 0, unflushedBytes: s.unflushed, stats: { ...s.stats } };
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
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections?.();
    });
    this.wss?.close();
    this.log.info('cloudhub stopped');
  }
}
