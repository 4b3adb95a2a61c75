/**
 * @module
 * EdgeHub: the edge's link to CloudHub. Connects to one of several endpoints
 * (the next on failure), reconnects with exponential backoff and full jitter,
 * sends keepalives and drops a link that went silent. Downstream messages are handed
 * to the module of their group and ACKed only after that module made them durable;
 * messages for one resource are handled in order. Upstream messages that need
 * delivery go through the {@link Outbox} and are resent until the cloud ACKs them.
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import WebSocket from 'ws';
import {
  createCborCodec,
  newAck,
  newMessage,
  Group,
  ModuleName,
  NODE_NAME_HEADER,
  NODE_SESSION_HEADER,
  Operation,
  SUBPROTOCOL,
  type Codec,
  type ErrorContent,
  type Message,
} from '../../shared/protocol/index.js';
import { errorCode, errorMessage } from '../../shared/errors/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { DeliveryQueue } from '../../shared/delivery/index.js';
import { sleep } from '../../shared/runtime/index.js';
import { Outbox, type OutboxEntry } from './outbox.js';
import { resolveEdgeHubOptions, type EdgeHubOptions } from './options.js';

const connectedChannel = channel('ledge:edgehub:connected');
const disconnectedChannel = channel('ledge:edgehub:disconnected');

export type EdgeHubInit = Partial<EdgeHubOptions> & Pick<EdgeHubOptions, 'endpoints' | 'nodeName' | 'dataDir'>;

export class EdgeHub implements Module {
  readonly name = ModuleName.EdgeHub;
  readonly group = Group.Hub;
  readonly options: EdgeHubOptions;
  private readonly codec: Codec;
  private readonly log: Logger;
  /** Identifies this process start to the cloud (diagnostics; not security). */
  private readonly bootId = randomUUID();
  private ctx!: ModuleContext;
  private outbox!: Outbox;
  private queue!: DeliveryQueue<OutboxEntry>;
  private ws: WebSocket | undefined;
  private endpointIndex = 0;
  private attempt = 0;
  private lastHeard = 0;
  private unflushed = 0;
  private inProgress = 0;
  private paused = false;
  /** Per-resource chains keep downstream handling ordered per resource. */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly handling = new Set<string>();
  private connectedOnce = false;
  stats = { connects: 0, downstream: 0, acksSent: 0, upstreamAcked: 0, duplicates: 0 };

  constructor(init: EdgeHubInit, log: Logger) {
    this.options = resolveEdgeHubOptions(init);
    this.codec = createCborCodec({ maxFrameBytes: this.options.maxFrameBytes });
    this.log = log;
  }

  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    this.ctx = ctx;
    const o = this.options;
    const { outbox, replay } = await Outbox.open(o.dataDir, this.codec, this.log, o.maxOutboxMessages);
    this.outbox = outbox;
    this.queue = new DeliveryQueue<OutboxEntry>({
      maxQueued: o.maxOutboxMessages,
      maxInFlight: o.maxInFlight,
      ackTimeoutMs: o.ackTimeoutMs,
      maxAckTimeoutMs: o.maxAckTimeoutMs,
      canTransmit: () => this.unflushed < 1024 * 1024,
      transmit: (d) => this.write(d.item.frame),
    });
    // Same ids and order as before the restart, so the cloud's de-duplication recognises them.
    for (const e of replay) this.queue.enqueue(e.message.header.id, e.message.route.resource, e);
    if (replay.length) this.log.info(`outbox holds ${replay.length} undelivered messages; they go first after connecting`);
    if (o.insecureSkipTlsVerify) this.log.warn('TLS certificate verification is OFF (insecureSkipTlsVerify); use only for development', { code: 'LEDGE_ERR_INSECURE' });
    const timers = [
      setInterval(() => this.queue.tick(), Math.max(50, Math.min(1000, o.ackTimeoutMs / 4))),
      setInterval(() => this.keepalive(), o.heartbeatIntervalMs),
    ];
    const connector = this.connectLoop(signal);
    try {
      for await (const msg of ctx.messages(signal)) {
        void this.sendUpstream(msg);
      }
    } finally {
      for (const t of timers) clearInterval(t);
      this.ws?.close(1001, 'edgecore shutting down');
      await connector;
      await Promise.allSettled([...this.chains.values()]);
      await this.outbox.close();
    }
  }

  /** Upstream from a module: `sync` messages go through the outbox; the sender's sendSync resolves once durable. */
  private async sendUpstream(msg: Message): Promise<void> {
    if (!msg.header.sync) {
      if (this.connected) this.write(this.encode(msg) ?? new Uint8Array());
      else this.log.debug(`not connected; best-effort ${msg.route.operation} ${msg.route.resource} dropped`);
      return;
    }
    const frame = this.encode(msg);
    if (!frame) return this.reply(msg, { code: 'LEDGE_ERR_FRAME_TOO_LARGE', message: 'message cannot be encoded' });
    try {
      await this.outbox.add(msg, frame);
      this.queue.enqueue(msg.header.id, msg.route.resource, { message: msg, frame });
      await this.reply(msg, null);
    } catch (err) {
      this.log.warn(`upstream ${msg.route.resource} not queued: ${errorMessage(err)}`, { code: errorCode(err) });
      await this.reply(msg, { code: errorCode(err), message: errorMessage(err) });
    }
  }

  private async reply(msg: Message, content: ErrorContent | null): Promise<void> {
    await this.ctx.respond(msg, content).catch(() => {});
  }

  private encode(msg: Message): Uint8Array | undefined {
    try {
      return this.codec.encode(msg);
    } catch (err) {
      this.log.error(`cannot encode ${msg.route.resource}: ${errorMessage(err)}`, { code: errorCode(err) });
      return undefined;
    }
  }

  private write(frame: Uint8Array): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    this.unflushed += frame.length;
    ws.send(frame, { binary: true }, () => {
      if (this.ws !== ws) return;
      this.unflushed -= frame.length;
      this.queue.pump();
    });
  }

  private keepalive(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastHeard > this.options.heartbeatTimeoutMs) {
      this.log.warn(`no traffic from cloud for ${Date.now() - this.lastHeard} ms; reconnecting`, { code: 'LEDGE_ERR_HEARTBEAT_TIMEOUT' });
      ws.terminate();
      return;
    }
    const ka = newMessage({ source: this.name, group: Group.Resource, operation: Operation.Keepalive, resource: 'node', content: 'ping' });
    const frame = this.encode(ka);
    if (frame) this.write(frame);
  }

  private async connectLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const url = this.options.endpoints[this.endpointIndex % this.options.endpoints.length]!;
      const opened = await this.connectOnce(url, signal);
      if (signal.aborted) return;
      if (opened) this.attempt = 0;
      else this.endpointIndex++; // this endpoint failed: try the next one
      this.attempt++;
      // Full jitter (AWS architecture blog): spreads reconnect storms after a cloud restart.
      const cap = Math.min(this.options.reconnectMaxMs, this.options.reconnectBaseMs * 2 ** Math.min(this.attempt, 20));
      const delay = Math.floor(Math.random() * cap);
      this.log.debug(`reconnecting in ${delay} ms`, { attempt: this.attempt });
      await sleep(delay, signal);
    }
  }

  /** Runs one connection to completion; resolves true if it was established. */
  private connectOnce(url: string, signal: AbortSignal): Promise<boolean> {
    const o = this.options;
    return new Promise((resolve) => {
      let opened = false;
      let ws: WebSocket;
      try {
        ws = new WebSocket(url, SUBPROTOCOL, {
          headers: { [NODE_NAME_HEADER]: o.nodeName, [NODE_SESSION_HEADER]: this.bootId },
          perMessageDeflate: false,
          maxPayload: o.maxFrameBytes,
          handshakeTimeout: o.handshakeTimeoutMs,
          ...(o.caFile ? { ca: readFileSync(o.caFile) } : {}),
          ...(o.insecureSkipTlsVerify ? { rejectUnauthorized: false } : {}),
        });
      } catch (err) {
        this.log.warn(`cannot connect to ${url}: ${errorMessage(err)}`, { code: errorCode(err) });
        resolve(false);
        return;
      }
      this.ws = ws;
      const onAbort = () => ws.close(1001, 'edgecore shutting down');
      signal.addEventListener('abort', onAbort, { once: true });
      ws.on('upgrade', (res) => {
        if (res.headers['sec-websocket-protocol'] !== SUBPROTOCOL) this.log.warn('cloud did not confirm the subprotocol', { code: 'LEDGE_ERR_HANDSHAKE' });
      });
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString().slice(0, 200)));
        res.on('end', () => {
          this.log.warn(`cloud refused the connection: HTTP ${res.statusCode} ${body.trim()}`, { code: 'LEDGE_ERR_HANDSHAKE', url });
          ws.terminate();
        });
      });
      ws.on('open', () => {
        opened = true;
        this.lastHeard = Date.now();
        this.unflushed = 0;
        this.stats.connects++;
        this.log.info(this.connectedOnce ? 'reconnected to cloud' : 'connected to cloud', { url, outbox: this.outbox.size });
        this.connectedOnce = true;
        this.queue.attach();
        if (connectedChannel.hasSubscribers) connectedChannel.publish({ url });
      });
      ws.on('message', (data, isBinary) => this.onFrame(ws, data, isBinary));
      ws.on('ping', () => (this.lastHeard = Date.now()));
      ws.on('pong', () => (this.lastHeard = Date.now()));
      ws.on('error', (err) => {
        const code = (err as { code?: string }).code ?? 'LEDGE_ERR_CONNECT';
        this.log.warn(`${opened ? 'link' : `connect to ${url}`} failed: ${err.message}`, { code });
      });
      ws.on('close', (code, reason) => {
        signal.removeEventListener('abort', onAbort);
        if (this.ws === ws) this.ws = undefined;
        this.queue.detach();
        this.paused = false;
        if (opened) {
          this.log.warn(`disconnected from cloud (${code}${reason.length ? ` ${reason.toString()}` : ''})`, { code: 'LEDGE_ERR_DISCONNECTED' });
          if (disconnectedChannel.hasSubscribers) disconnectedChannel.publish({ url, code });
        }
        resolve(opened);
      });
    });
  }

  private onFrame(ws: WebSocket, data: WebSocket.RawData, isBinary: boolean): void {
    this.lastHeard = Date.now();
    if (!isBinary) {
      this.log.warn('text frame from cloud; closing link', { code: 'LEDGE_ERR_TEXT_FRAME' });
      ws.close(1003, 'text frames are not accepted');
      return;
    }
    const frame = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    let msg: Message;
    try {
      msg = this.codec.decode(frame);
    } catch (err) {
      this.log.warn(`undecodable frame from cloud: ${errorMessage(err)}; closing link`, { code: errorCode(err) });
      ws.close((err as { closeCode?: number }).closeCode ?? 1007, errorCode(err));
      return;
    }
    switch (msg.route.operation) {
      case Operation.Ack: {
        const id = msg.header.parentId;
        if (id && this.queue.ack(id)) {
          this.stats.upstreamAcked++;
          this.outbox.ack(id);
          const err = msg.content as ErrorContent | null;
          if (err && typeof err === 'object') this.log.warn(`cloud rejected upstream message: ${err.message}`, { code: err.code, id });
        }
        return;
      }
      case Operation.Keepalive:
        return;
      default:
        this.onDownstream(ws, msg);
    }
  }

  private onDownstream(ws: WebSocket, msg: Message): void {
    this.stats.downstream++;
    const target = this.options.downstreamRoutes[msg.route.group];
    if (!msg.header.sync) {
      if (target) this.ctx.send(target, msg).catch((err) => this.log.warn(`cannot deliver ${msg.route.resource} to ${target}: ${errorMessage(err)}`, { code: errorCode(err) }));
      return;
    }
    const id = msg.header.id;
    // A resend of a message still being handled: its ACK will follow.
    if (this.handling.has(id)) {
      this.stats.duplicates++;
      return;
    }
    this.handling.add(id);
    this.inProgress++;
    if (this.inProgress >= this.options.maxDownstreamInProgress && !this.paused) {
      this.paused = true;
      ws.pause();
    }
    const key = msg.route.resource;
    const prev = this.chains.get(key) ?? Promise.resolve();
    const next = prev.then(() => this.handleDownstream(msg, target)).finally(() => {
      this.handling.delete(id);
      this.inProgress--;
      if (this.chains.get(key) === next) this.chains.delete(key);
      if (this.paused && this.inProgress < this.options.maxDownstreamInProgress / 2) {
        this.paused = false;
        this.ws?.resume();
      }
    });
    this.chains.set(key, next);
  }

  private async handleDownstream(msg: Message, target: string | undefined): Promise<void> {
    let result: ErrorContent | null = null;
    if (!target) {
      this.log.warn(`no edge module handles group "${msg.route.group}"; message rejected`, { code: 'LEDGE_ERR_NO_SUCH_MODULE', resource: msg.route.resource });
      result = { code: 'LEDGE_ERR_NO_SUCH_MODULE', message: `no handler for group ${msg.route.group}` };
    } else {
      try {
        const resp = await this.ctx.sendSync(target, msg, this.options.handleTimeoutMs);
        const c = resp.content as ErrorContent | null;
        if (c && typeof c === 'object' && typeof c.code === 'string') {
          if (c.code === 'LEDGE_ERR_STORAGE') {
            // Not durable: withhold the ACK so the cloud resends later.
            this.log.warn(`${target} could not store ${msg.route.resource}: ${c.message}; not acknowledged`, { code: c.code });
            return;
          }
          result = c;
        }
      } catch (err) {
        this.log.warn(`${target} did not handle ${msg.route.operation} ${msg.route.resource}: ${errorMessage(err)}; not acknowledged`, { code: errorCode(err) });
        return;
      }
    }
    const frame = this.encode(newAck(msg, this.name, result ?? undefined));
    if (!frame) return;
    // Not connected: the cloud resends after reconnecting, and the module recognises the duplicate.
    if (!this.connected) return;
    this.write(frame);
    this.stats.acksSent++;
  }
}
