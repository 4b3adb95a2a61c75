/**
 * @module
 * EdgeHub: the edge's link to CloudHub. Connects to one of several endpoints
 * (the next on failure), over wss:// with the node's client certificate (`certFile`/`keyFile`,
 * its identity toward CloudHub; a refusal is logged once per backoff streak), reconnects with exponential backoff and full jitter,
 * sends keepalives and drops a link that went silent. Downstream messages are handed
 * to the module of their group and ACKed only after that module made them durable;
 * messages for one resource are handled in order. Upstream messages that need
 * delivery go through the {@link Outbox} and are resent until the cloud ACKs them.
 * A `query` from a module (MetaManager asking for an object the node does not hold) is
 * not queued: it is sent while connected and answered by the cloud's `response` (or an
 * error ACK, from a cloud that does not answer queries); while disconnected, and for the
 * queries in flight when the link drops, the module gets LEDGE_ERR_DISCONNECTED at once.
 * With a client certificate, a {@link CertificateRenewal} renews it at 80 % of its lifetime over a
 * connection of its own (POST /v1/renew): the session stays, the next connect uses the new files.
 */
import { readFileSync } from 'node:fs';
import { createPrivateKey, randomUUID, X509Certificate } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import WebSocket from 'ws';
import {
  createCborCodec,
  messageIdOf,
  NODE_CERT_CN_PREFIX,
  newAck,
  newMessage,
  Group,
  ModuleName,
  NODE_NAME_HEADER,
  NODE_SESSION_HEADER,
  NODE_STREAMS_HEADER,
  Operation,
  isStreamFrame,
  SUBPROTOCOL,
  type Codec,
  type ErrorContent,
  type Message,
} from '../../shared/protocol/index.js';
import {
  closeReason,
  ConfigError,
  DisconnectedError,
  ErrorCode,
  errorCode,
  errorContent,
  errorMessage,
  hasCode,
  HandshakeError,
  HeartbeatTimeoutError,
  InvalidFrameError,
  LedgeError,
  NoSuchModuleError,
  QueueFullError,
  TextFrameError,
  TimeoutError,
  UnsupportedError,
} from '../../shared/errors/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { DeliveryQueue } from '../../shared/delivery/index.js';
import { sleep } from '../../shared/runtime/index.js';
import { backoff, type Backoff } from '../../shared/backoff/index.js';
import { Mux } from '../../shared/stream/index.js';
import { Outbox, type OutboxEntry } from './outbox.js';
import { resolveEdgeHubOptions, type EdgeHubOptions, type SocketFactory } from './options.js';
import { CertificateRenewal, completeInterruptedRenewal } from './renewal.js';

const connectedChannel = channel('ledge:edgehub:connected');
const disconnectedChannel = channel('ledge:edgehub:disconnected');

/** Bytes waiting in the socket above which transmission pauses (and error ACKs are not sent). */
const SEND_HIGH_WATER = 1024 * 1024;
/**
 * Stream DATA (logs, exec output) is written only while fewer bytes than this wait in the socket:
 * messages and ACKs never queue behind more than this much stream output (docs/protocol.md, "Streams").
 */
const STREAM_LOW_WATER = 64 * 1024;
/** Rejected cloud messages are logged at most once per this many ms (with a count of the rest). */
const REJECT_LOG_INTERVAL_MS = 10_000;
/** Queries waiting for the cloud's answer at most (more are refused at once). */
const MAX_PENDING_QUERIES = 256;
/** A query the cloud has not answered after this long is answered with a timeout (its requester usually gave up sooner). */
const QUERY_TIMEOUT_MS = 60_000;

const defaultSocketFactory: SocketFactory = (url, protocol, options) => new WebSocket(url, protocol, options);

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
  /** Reconnect delays: full jitter under `reconnectBaseMs` doubling to `reconnectMaxMs`; reset by a connection that opened. */
  private readonly reconnect: Backoff;
  private lastHeard = 0;
  private unflushed = 0;
  private inProgress = 0;
  private paused = false;
  /** Per-resource chains keep downstream handling ordered per resource. */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly handling = new Set<string>();
  private connectedOnce = false;
  /**
   * The cloud's reasons for refused handshakes logged in this backoff streak (cleared by a
   * connection that opened): a refusal is logged once per streak and reason, not per attempt.
   */
  private readonly refusalsLogged = new Set<string>();
  /** Rate limit of the "message rejected" log line: when it was last written, and how many were not. */
  private rejectLog = { at: 0, suppressed: 0 };
  /** Queries sent to the cloud and not answered yet, by message id. */
  private readonly queries = new Map<string, { request: Message; timer: NodeJS.Timeout }>();
  /** The streams of the current connection (kubectl logs/exec/attach), when streams are served. */
  private mux: Mux | undefined;
  /** Renews the client certificate before it expires, beside the link (edge/edgehub/renewal.ts); none without a client certificate. */
  private readonly renewal: CertificateRenewal | undefined;
  stats = { connects: 0, downstream: 0, acksSent: 0, upstreamAcked: 0, duplicates: 0, rejected: 0, unencodable: 0 };

  constructor(init: EdgeHubInit, log: Logger) {
    this.options = resolveEdgeHubOptions(init);
    this.codec = createCborCodec({ maxFrameBytes: this.options.maxFrameBytes });
    this.log = log;
    // Full jitter (AWS architecture blog): spreads reconnect storms after a cloud restart.
    this.reconnect = backoff({ baseMs: this.options.reconnectBaseMs, maxMs: this.options.reconnectMaxMs, jitter: 'full' });
    const { certFile, keyFile } = this.options;
    if (certFile && keyFile) {
      // A renewal that stopped between its two renames is finished before the pair is read.
      completeInterruptedRenewal(certFile, keyFile, log);
      this.checkClientCertificate();
      const o = this.options;
      this.renewal = new CertificateRenewal({
        nodeName: o.nodeName,
        certFile,
        keyFile,
        ...(o.caFile ? { caFile: o.caFile } : {}),
        dataDir: o.dataDir,
        endpoint: () => this.renewalEndpoint(),
        renewAtFraction: o.renewAtFraction,
        renewJitterFraction: o.renewJitterFraction,
        renewRetryBaseMs: o.renewRetryBaseMs,
        renewRetryMaxMs: o.renewRetryMaxMs,
        renewTimeoutMs: o.renewTimeoutMs,
        log,
      });
    }
  }

  /** Where a renewal goes: the endpoint EdgeHub uses now (or tries next), else the first wss:// one. */
  private renewalEndpoint(): string {
    const { endpoints } = this.options;
    const current = endpoints[this.endpointIndex % endpoints.length]!;
    return current.startsWith('wss:') ? current : (endpoints.find((e) => e.startsWith('wss:')) ?? current);
  }

  /**
   * At construction: the client certificate and key are readable, belong together and the
   * certificate names this node (ConfigError otherwise: CloudHub would refuse every attempt); an
   * expired one is reported when EdgeHub starts (by the renewal: one line with the re-join command;
   * the device's clock may be wrong, CloudHub decides).
   */
  private checkClientCertificate(): void {
    const { cert, key } = this.readClientCredentials();
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(cert);
    } catch (err) {
      throw new ConfigError(`hub.certFile ${this.options.certFile} is not a PEM certificate: ${errorMessage(err)}`, { cause: err });
    }
    let matches = false;
    try {
      matches = x509.checkPrivateKey(createPrivateKey(key));
    } catch (err) {
      throw new ConfigError(`hub.keyFile ${this.options.keyFile} is not a PEM private key: ${errorMessage(err)}`, { cause: err });
    }
    if (!matches) throw new ConfigError(`hub.keyFile ${this.options.keyFile} is not the private key of the certificate ${this.options.certFile}`);
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(x509.subject)?.[1];
    if (cn !== `${NODE_CERT_CN_PREFIX}${this.options.nodeName}`) {
      throw new ConfigError(
        `the client certificate ${this.options.certFile} names ${cn ? `"${cn}"` : 'no node'}, not this node (${NODE_CERT_CN_PREFIX}${this.options.nodeName}): use the certificate "ledge join" wrote for --node-name ${this.options.nodeName}`,
      );
    }
    // An expired certificate is reported by the renewal at start: one line, with the re-join command.
  }

  /** The client certificate and key files, read now (a renewed certificate is used from the next connect attempt). */
  private readClientCredentials(): { cert: string; key: string } {
    const read = (file: string, what: string) => {
      try {
        return readFileSync(file, 'utf8');
      } catch (err) {
        throw new ConfigError(`cannot read the ${what} ${file}: ${errorMessage(err)}`, { cause: err });
      }
    };
    return { cert: read(this.options.certFile!, 'client certificate'), key: read(this.options.keyFile!, 'client private key') };
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
      canTransmit: () => this.unflushed < SEND_HIGH_WATER,
      transmit: (d) => this.write(d.item.frame),
    });
    // Same ids and order as before the restart, so the cloud's de-duplication recognises them.
    for (const e of replay) this.queue.enqueue(e.message.header.id, e.message.route.resource, e);
    if (replay.length) this.log.info(`outbox holds ${replay.length} undelivered messages; they go first after connecting`);
    if (o.insecureSkipTlsVerify) this.log.warn('TLS certificate verification is OFF (insecureSkipTlsVerify); use only for development', { code: ErrorCode.Insecure });
    const timers = [setInterval(() => this.queue.tick(), Math.max(50, Math.min(1000, o.ackTimeoutMs / 4))), setInterval(() => this.keepalive(), o.heartbeatIntervalMs)];
    const connector = this.connectLoop(signal);
    this.renewal?.start();
    try {
      for await (const msg of ctx.messages(signal)) {
        void this.sendUpstream(msg);
      }
    } finally {
      for (const t of timers) clearInterval(t);
      await this.renewal?.stop();
      this.ws?.close(1001, 'edgecore shutting down');
      await connector;
      this.failQueries(new DisconnectedError('edgecore is stopping'));
      await Promise.allSettled([...this.chains.values()]);
      await this.outbox.close();
    }
  }

  /**
   * Upstream from a module: `sync` messages go through the outbox; the sender's sendSync resolves
   * once durable. A message that cannot be encoded never reaches the socket or the outbox: a
   * best-effort one is dropped with one log line, a reliable one is refused to its sender with the
   * encoder's error (so the outbox never holds a message it could not send).
   */
  private async sendUpstream(msg: Message): Promise<void> {
    if (msg.route.operation === Operation.Query) return this.sendQuery(msg);
    if (!msg.header.sync) {
      if (!this.connected) {
        this.log.debug(`not connected; best-effort ${msg.route.operation} ${msg.route.resource} dropped`);
        return;
      }
      const frame = this.tryEncode(msg);
      if (frame instanceof Uint8Array) this.write(frame);
      return;
    }
    const frame = this.tryEncode(msg);
    if (!(frame instanceof Uint8Array)) return this.reply(msg, frame);
    try {
      await this.outbox.add(msg, frame);
      this.queue.enqueue(msg.header.id, msg.route.resource, { message: msg, frame });
      await this.reply(msg, null);
    } catch (err) {
      this.log.warn(`upstream ${msg.route.resource} not queued: ${errorMessage(err)}`, { code: errorCode(err) });
      await this.reply(msg, errorContent(err));
    }
  }

  private async reply(msg: Message, content: ErrorContent | null): Promise<void> {
    await this.ctx.respond(msg, content).catch(() => {});
  }

  /** Sends a module's query now (never through the outbox); the cloud's answer is the module's reply. */
  private async sendQuery(msg: Message): Promise<void> {
    const what = `${msg.route.operation} ${msg.route.resource}`;
    if (!this.connected) return this.reply(msg, errorContent(new DisconnectedError(`not connected to the cloud; ${what} not sent`)));
    if (this.queries.size >= MAX_PENDING_QUERIES)
      return this.reply(msg, errorContent(new QueueFullError(`${MAX_PENDING_QUERIES} queries already wait for the cloud; ${what} refused`)));
    const frame = this.tryEncode(msg);
    if (!(frame instanceof Uint8Array)) return this.reply(msg, frame);
    const id = msg.header.id;
    const timer = setTimeout(() => this.answerQuery(id, errorContent(new TimeoutError(`the cloud did not answer ${what} within ${QUERY_TIMEOUT_MS} ms`))), QUERY_TIMEOUT_MS);
    timer.unref?.();
    this.queries.set(id, { request: msg, timer });
    this.write(frame);
  }

  /** Replies to the module that sent query `id` (if it still waits); true if it did. */
  private answerQuery(id: string, content: unknown): boolean {
    const q = this.queries.get(id);
    if (!q) return false;
    clearTimeout(q.timer);
    this.queries.delete(id);
    this.ctx.respond(q.request, content).catch(() => {});
    return true;
  }

  /** The link is gone: every query in flight fails now (the answers would never come). */
  private failQueries(err: Error): void {
    for (const id of [...this.queries.keys()]) this.answerQuery(id, errorContent(err));
  }

  /** Encodes an upstream message; on failure logs one line and returns the error for the sender. */
  private tryEncode(msg: Message): Uint8Array | ErrorContent {
    try {
      return this.codec.encode(msg);
    } catch (err) {
      this.stats.unencodable++;
      const what = msg.header.sync ? 'refused to its sender' : 'best-effort message dropped';
      this.log.error(`cannot encode upstream ${msg.route.operation} ${msg.route.resource}: ${errorMessage(err)}; ${what}`, {
        code: errorCode(err),
        operation: msg.route.operation,
        resource: msg.route.resource,
        source: msg.route.source,
      });
      return errorContent(err);
    }
  }

  /** Encodes a message EdgeHub makes itself (ACK, keepalive); undefined (logged) if impossible. */
  private encode(msg: Message): Uint8Array | undefined {
    const frame = this.tryEncode(msg);
    return frame instanceof Uint8Array ? frame : undefined;
  }

  private write(frame: Uint8Array): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    this.unflushed += frame.length;
    ws.send(frame, { binary: true }, () => {
      if (this.ws !== ws) return;
      this.unflushed -= frame.length;
      this.queue.pump();
      if (this.unflushed < STREAM_LOW_WATER) this.mux?.pump();
    });
  }

  /** Writes a stream frame (the mux decides when DATA may go: below STREAM_LOW_WATER). */
  private writeStream(ws: WebSocket, frame: Parameters<Codec['encodeStream']>[0]): void {
    if (this.ws !== ws) return;
    let bytes: Uint8Array;
    try {
      bytes = this.codec.encodeStream(frame);
    } catch (err) {
      this.log.warn(`cannot encode a frame of stream ${frame.id}: ${errorMessage(err)}`, { code: errorCode(err) });
      return;
    }
    this.write(bytes);
  }

  /**
   * Sends a keepalive and checks the link. Liveness is a complete *message* from the cloud within
   * heartbeatTimeoutMs (CloudHub answers every keepalive with one). WebSocket pings do not count:
   * control frames may arrive between the fragments of a message that never completes, and a
   * frame that does not complete within the timeout is as dead as silence.
   */
  private keepalive(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    // While reading is paused (downstream back-pressure) the silence is ours.
    if (this.paused) this.lastHeard = Date.now();
    if (Date.now() - this.lastHeard > this.options.heartbeatTimeoutMs) {
      const silentMs = Date.now() - this.lastHeard;
      const err = new HeartbeatTimeoutError(`no complete message from the cloud for ${silentMs} ms`);
      this.log.warn(`no traffic from cloud for ${silentMs} ms (no complete message: keepalives unanswered or a frame that does not complete); reconnecting`, { code: err.code });
      // Tell the cloud why (1001, if the socket can still take the frame), but the link is
      // presumed dead: do not wait for the close handshake.
      ws.close(err.closeCode, closeReason(err));
      setImmediate(() => ws.terminate());
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
      if (opened) {
        this.reconnect.reset();
        this.refusalsLogged.clear();
      } else this.endpointIndex++; // this endpoint failed: try the next one
      const delay = this.reconnect.next();
      this.log.debug(`reconnecting in ${delay} ms`, { attempt: this.reconnect.attempts });
      await sleep(delay, signal);
    }
  }

  /** Runs one connection to completion; resolves true if it was established. */
  private connectOnce(url: string, signal: AbortSignal): Promise<boolean> {
    const o = this.options;
    return new Promise((resolve) => {
      let opened = false;
      let timedOut = false;
      let refused = false;
      let ws: WebSocket;
      try {
        const client = o.certFile ? this.readClientCredentials() : undefined;
        ws = (o.createSocket ?? defaultSocketFactory)(url, SUBPROTOCOL, {
          headers: { [NODE_NAME_HEADER]: o.nodeName, [NODE_SESSION_HEADER]: this.bootId, ...(o.onStream ? { [NODE_STREAMS_HEADER]: '1' } : {}) },
          perMessageDeflate: false,
          // Bounds a message's total size across fragments (ws sums continuation frames) and
          // ws' own maxFragments (16384) bounds empty fragments.
          maxPayload: o.maxFrameBytes,
          // ws' handshakeTimeout is the HTTP request's idle timeout (restarted by every byte);
          // the absolute deadline is the timer below.
          handshakeTimeout: o.handshakeTimeoutMs,
          // Not in @types/ws: ws destroys the socket this long after sending a close frame the
          // peer does not answer (default 30 s, during which a hostile peer's bytes are read).
          closeTimeout: o.closeTimeoutMs,
          ...(o.caFile ? { ca: readFileSync(o.caFile) } : {}),
          ...(client ? { cert: client.cert, key: client.key } : {}),
          ...(o.insecureSkipTlsVerify ? { rejectUnauthorized: false } : {}),
        });
      } catch (err) {
        this.log.warn(`cannot connect to ${url}: ${errorMessage(err)}`, { code: errorCode(err) });
        resolve(false);
        return;
      }
      this.ws = ws;
      const deadline = setTimeout(() => {
        if (opened || ws.readyState !== WebSocket.CONNECTING) return;
        timedOut = true;
        this.log.warn(`connect to ${url} did not complete within ${o.handshakeTimeoutMs} ms; giving up on this attempt`, { code: HandshakeError.code, url });
        ws.terminate();
      }, o.handshakeTimeoutMs);
      const onAbort = () => ws.close(1001, 'edgecore shutting down');
      signal.addEventListener('abort', onAbort, { once: true });
      ws.on('upgrade', (res) => {
        if (res.headers['sec-websocket-protocol'] !== SUBPROTOCOL) this.log.warn('cloud did not confirm the subprotocol', { code: HandshakeError.code });
      });
      ws.on('unexpected-response', (_req, res) => {
        refused = true;
        let body = '';
        res.on('data', (c: Buffer) => {
          if (body.length < 400) body += c.toString().slice(0, 400);
        });
        res.on('end', () => {
          // The cloud's reason (`LEDGE_ERR_HANDSHAKE: …`), once per backoff streak and reason: a node
          // the cloud refuses (a revoked or expired certificate) does not write a line per attempt.
          const reason = `HTTP ${res.statusCode} ${body.trim().slice(0, 400)}`;
          // Bounded: a handful of endpoints, each with its reason.
          if (!this.refusalsLogged.has(reason) && this.refusalsLogged.size < 16) {
            this.refusalsLogged.add(reason);
            const hint = res.statusCode === 401 ? '; the node is not authenticated: check --cert-file/--key-file, or re-join the node (ledge join)' : '';
            this.log.warn(`cloud refused the connection: ${reason}${hint}; retrying with backoff (not logged again until a connection opens)`, {
              code: HandshakeError.code,
              url,
              status: res.statusCode,
            });
          } else {
            this.log.debug(`cloud refused the connection again: ${reason}`, { url });
          }
          ws.terminate();
        });
      });
      ws.on('open', () => {
        clearTimeout(deadline);
        opened = true;
        this.lastHeard = Date.now();
        this.unflushed = 0;
        this.stats.connects++;
        this.log.info(this.connectedOnce ? 'reconnected to cloud' : 'connected to cloud', { url, outbox: this.outbox.size });
        this.connectedOnce = true;
        if (o.onStream) {
          const onStream = o.onStream;
          this.mux = new Mux({ write: (f) => this.writeStream(ws, f), canWrite: () => this.ws === ws && this.unflushed < STREAM_LOW_WATER, onOpen: onStream });
        }
        this.queue.attach();
        if (connectedChannel.hasSubscribers) connectedChannel.publish({ url });
        try {
          this.options.onConnected?.();
        } catch (err) {
          this.log.warn(`connected listener failed: ${errorMessage(err)}`, { code: errorCode(err) });
        }
      });
      ws.on('message', (data, isBinary) => this.onFrame(ws, data, isBinary));
      ws.on('error', (err) => {
        if (timedOut && !opened) return; // already logged as a handshake timeout
        if (refused && !opened) return; // the refusal was logged (terminate() reports it as an error too)
        const code = (err as { code?: string }).code ?? ErrorCode.Connect;
        this.log.warn(`${opened ? 'link' : `connect to ${url}`} failed: ${err.message}`, { code });
      });
      ws.on('close', (code, reason) => {
        clearTimeout(deadline);
        signal.removeEventListener('abort', onAbort);
        if (this.ws === ws) this.ws = undefined;
        this.mux?.closeAll({ code: ErrorCode.Disconnected, message: `the link to the cloud closed (${code})` });
        this.mux = undefined;
        this.queue.detach();
        this.failQueries(new DisconnectedError(`the link to the cloud closed (${code}) before the answer`));
        this.paused = false;
        if (opened) {
          this.log.warn(`disconnected from cloud (${code}${reason.length ? ` ${reason.toString()}` : ''})`, { code: ErrorCode.Disconnected });
          if (disconnectedChannel.hasSubscribers) disconnectedChannel.publish({ url, code });
        }
        resolve(opened);
      });
    });
  }

  private onFrame(ws: WebSocket, data: WebSocket.RawData, isBinary: boolean): void {
    this.lastHeard = Date.now();
    if (!isBinary) {
      const err = new TextFrameError();
      this.log.warn('text frame from cloud; closing link', { code: err.code });
      ws.close(err.closeCode, closeReason(err));
      return;
    }
    const frame = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    let msg: Message;
    try {
      const decoded = this.codec.decodeFrame(frame);
      if (isStreamFrame(decoded)) {
        if (this.mux) this.mux.receive(decoded);
        else this.log.debug(`stream frame for stream ${decoded.id} dropped: this edge serves no streams`);
        return;
      }
      msg = decoded;
    } catch (err) {
      const id = messageIdOf(err);
      if (id !== undefined) return this.rejectMessage(id, err);
      this.log.warn(`undecodable frame from cloud: ${errorMessage(err)}; closing link`, { code: errorCode(err) });
      ws.close((err instanceof LedgeError ? err.closeCode : undefined) ?? InvalidFrameError.closeCode!, closeReason(err));
      return;
    }
    switch (msg.route.operation) {
      case Operation.Ack: {
        const id = msg.header.parentId;
        // A cloud that does not answer queries ACKs them (with the error of the module that got it).
        if (id && this.queries.has(id)) {
          this.answerQuery(id, msg.content ?? errorContent(new UnsupportedError('the cloud acknowledged the query without answering it')));
          return;
        }
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
      case Operation.Response:
        // The answer to one of our queries; a late one (timed out, or from before a reconnect) is dropped.
        if (!msg.header.parentId || !this.answerQuery(msg.header.parentId, msg.content)) this.log.debug('response to no pending query dropped', { parentId: msg.header.parentId });
        return;
      default:
        this.onDownstream(ws, msg);
    }
  }

  /**
   * A well-formed frame with an operation this build does not know (docs/protocol.md): that
   * message only is rejected with an error ACK; the session stays. The log line is rate-limited
   * and the ACK is skipped while the socket's send buffer is over its high-water mark, so a cloud
   * that floods unknown operations and never reads costs neither log volume nor memory.
   */
  private rejectMessage(id: string, err: unknown): void {
    this.stats.rejected++;
    const now = Date.now();
    if (now - this.rejectLog.at >= REJECT_LOG_INTERVAL_MS) {
      const more = this.rejectLog.suppressed ? ` (and ${this.rejectLog.suppressed} more since the last line)` : '';
      this.log.warn(`message from cloud rejected: ${errorMessage(err)}${more}; session kept`, { code: errorCode(err), id });
      this.rejectLog = { at: now, suppressed: 0 };
    } else {
      this.rejectLog.suppressed++;
    }
    if (this.unflushed >= SEND_HIGH_WATER) return;
    const rejected: Message = { header: { id, timestamp: 0, sync: true }, route: { source: '', group: '', operation: '', resource: '' }, content: null };
    const frame = this.encode(newAck(rejected, this.name, errorContent(err)));
    if (frame) this.write(frame);
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
    const next = prev
      .then(() => this.handleDownstream(msg, target))
      .finally(() => {
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
      const err = new NoSuchModuleError(`no handler for group ${msg.route.group}`);
      this.log.warn(`no edge module handles group "${msg.route.group}"; message rejected`, { code: err.code, resource: msg.route.resource });
      result = errorContent(err);
    } else {
      try {
        const resp = await this.ctx.sendSync(target, msg, this.options.handleTimeoutMs);
        const c = resp.content as ErrorContent | null;
        if (c && typeof c === 'object' && typeof c.code === 'string') {
          if (hasCode(c, ErrorCode.Storage)) {
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
