/**
 * @module
 * The embedded MQTT broker: aedes (loaded with `import('aedes')` only when a mode needs it) on a
 * TCP listener, with the limits a device-facing service needs and aedes does not have:
 *
 * - packet size: every connection goes through {@link GuardedConnection}, which reads the fixed
 *   header of each packet and disconnects a client whose packet is over `maxPacketBytes` before
 *   its body is buffered (aedes' parser would buffer up to 256 MB);
 * - publish rate per client (token bucket): a publish over it is acknowledged as usual and
 *   dropped (MQTT 3.1.1 §3.3.5: the server may not tell the client, it acks or disconnects);
 * - clients: one over `maxClients` gets CONNACK 3 (server unavailable);
 * - retained messages: count and bytes bounded (a new retained topic past them is delivered but
 *   not retained);
 * - sessions are clean: a client asking for a persistent session gets a fresh one each time
 *   (CONNACK session present 0), since aedes' in-memory store would queue messages for an
 *   absent client without bound.
 *
 * In-process subscribe and publish use aedes' own API (no loopback client). A message is a
 * device's when aedes says which client published it (`clientId`); what we publish in-process
 * has none, which is how our own publishes are told apart.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { Aedes, AedesOptions, AedesPublishPacket, Client, PublishPacket } from 'aedes';
import { ErrorCode, MqttError, errorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { backoff } from '../../shared/backoff/index.js';
import { FrameScanner } from './frames.js';
import { LogWindow, TokenBucket, type Clock } from './limits.js';
import type { ResolvedInternalOptions } from './options.js';
import type { BusMessage } from './types.js';
// Before aedes loads: its writes go through the same mqtt-packet, set up there.
import './packets.js';

/** Repeated problems of one kind and client are logged at most once per this window. */
const LOG_WINDOW_MS = 60_000;
const LISTEN_RETRY_BASE_MS = 1000;
const LISTEN_RETRY_MAX_MS = 30_000;
/** A connection must send CONNECT within this (aedes' default is 30 s). */
const CONNECT_TIMEOUT_MS = 10_000;
/** A client that does not read its messages for this long is disconnected (aedes' drainTimeout). */
const DRAIN_TIMEOUT_MS = 30_000;

export interface BrokerStats {
  clients: number;
  /** Publishes dropped by the per-client rate. */
  rateDropped: number;
  /** Connections ended for a packet over maxPacketBytes (or a malformed length). */
  oversized: number;
  /** Connections refused at maxClients. */
  refused: number;
  /** Retained messages held, and their payload bytes. */
  retained: number;
  retainedBytes: number;
}

/**
 * A socket as aedes sees it: the same bytes, after the packet-size check. Reads pass through
 * without a copy; writes go to the socket (corked when aedes writes a packet in pieces).
 */
export class GuardedConnection extends Duplex {
  /** Set by aedes (`conn.client = this`): who is on this connection, for log lines. */
  client?: { id?: string };

  constructor(
    readonly socket: Socket,
    scanner: FrameScanner,
    onRefused: (conn: GuardedConnection, reason: string) => void,
  ) {
    super({ allowHalfOpen: false });
    socket.on('data', (chunk: Buffer) => {
      if (this.destroyed) return;
      const r = scanner.push(chunk);
      if (!r.ok) {
        onRefused(this, r.reason);
        this.destroy();
        return;
      }
      let more = true;
      for (const b of r.pass) more = this.push(b) && more;
      if (!more) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.socket.write(chunk)) cb();
    else this.socket.once('drain', () => cb());
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.socket.cork();
    let ok = true;
    for (const c of chunks) ok = this.socket.write(c.chunk);
    this.socket.uncork();
    if (ok) cb();
    else this.socket.once('drain', () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }
}

interface ClientState {
  bucket: TokenBucket;
}

/** What the broker hands its owner: a message a device (any MQTT client) published. */
export type DeviceMessageListener = (msg: BusMessage, clientId: string) => void;

export class InternalBroker {
  private aedes: Aedes | undefined;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly clients = new WeakMap<Client, ClientState>();
  /** Publishes the rate limiter refused; aedes acknowledged them and must not deliver them. */
  private readonly dropped = new WeakSet<object>();
  /** In-process deliveries seen, so that a message matching two of our filters is handled once. */
  private readonly seen = new WeakSet<object>();
  private readonly filters = new Set<string>();
  private readonly retained = new Map<string, number>();
  private retainedBytes = 0;
  private readonly logs: LogWindow;
  private addr: { host: string; port: number } | undefined;
  private closed = false;
  private readonly counts = { rateDropped: 0, oversized: 0, refused: 0 };

  constructor(
    private readonly options: ResolvedInternalOptions,
    private readonly log: Logger,
    private readonly onMessage: DeviceMessageListener,
    private readonly now: Clock = Date.now,
  ) {
    this.logs = new LogWindow(LOG_WINDOW_MS, 1000, now);
  }

  /** Loads aedes and creates the broker (in-process publish and subscribe work from here on; clients once it listens). */
  async open(): Promise<void> {
    const { Aedes } = await import('aedes');
    const opts: AedesOptions = {
      connectTimeout: CONNECT_TIMEOUT_MS,
      drainTimeout: DRAIN_TIMEOUT_MS,
      preConnect: (_client, packet, cb) => {
        // See the module comment: no persistent sessions in an in-memory broker.
        packet.clean = true;
        cb(null, true);
      },
      authenticate: (client, _username, _password, cb) => {
        if (this.aedes && this.aedes.connectedClients >= this.options.maxClients) {
          this.counts.refused++;
          const n = this.logs.hit('maxClients');
          if (n !== undefined)
            this.log.warn(`MQTT broker refused a client (CONNACK 3): ${this.options.maxClients} clients are connected (maxClients)`, {
              code: ErrorCode.Mqtt,
              clientId: client.id,
              ...(n ? { alsoRefused: n } : {}),
            });
          cb(Object.assign(new Error('too many clients'), { returnCode: 3 as const }), false);
          return;
        }
        cb(null, true);
      },
      authorizePublish: (client, packet, cb) => this.authorizePublish(client, packet, cb),
    };
    const aedes = await Aedes.createBroker(opts);
    // Hand-made publishes carry no client; a publish the rate limiter refused is acknowledged
    // (aedes sends PUBACK first) and goes no further. aedes passes the very packet object it
    // gave authorizePublish (lib/handlers/publish.js), which is how it is recognised here.
    // aedes' typings declare only the (packet, done) form; the handlers call (packet, client, done).
    const publish = aedes.publish.bind(aedes) as unknown as (packet: PublishPacket, client: Client | null, done?: (err?: Error) => void) => void;
    (aedes as unknown as { publish: typeof publish }).publish = (packet, client, done) => {
      if (client && this.dropped.has(packet)) {
        this.dropped.delete(packet);
        done?.();
        return;
      }
      publish(packet, client, done);
    };
    aedes.on('clientError', (client, err) => this.log.debug(`MQTT client ${client?.id ?? '?'}: ${errorMessage(err)}`));
    aedes.on('connectionError', (_client, err) => this.log.debug(`MQTT connection: ${errorMessage(err)}`));
    // aedes emits 'error' for failures of its store; unhandled, an EventEmitter 'error' would end the process.
    (aedes as unknown as NodeJS.EventEmitter).on('error', (err: unknown) => {
      const n = this.logs.hit('broker-error');
      if (n !== undefined) this.log.error(`MQTT broker: ${errorMessage(err)}`, { code: errorCode(err) });
    });
    this.aedes = aedes;
    for (const f of this.filters) this.subscribeAedes(f);
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, cb: (err?: Error | null) => void): void {
    if (packet.topic.startsWith('$SYS/')) {
      cb(new MqttError('$SYS/ topics are reserved to the broker'));
      return;
    }
    if (client) {
      let state = this.clients.get(client);
      if (!state) this.clients.set(client, (state = { bucket: new TokenBucket(this.options.publishesPerSecond, this.options.publishBurst, this.now) }));
      if (!state.bucket.take()) {
        this.counts.rateDropped++;
        this.dropped.add(packet);
        const n = this.logs.hit(`rate:${client.id}`);
        if (n !== undefined)
          this.log.warn(
            `MQTT client ${client.id} publishes faster than ${this.options.publishesPerSecond}/s (burst ${this.options.publishBurst}): publishes over the rate are acknowledged and dropped`,
            { code: ErrorCode.RateLimit, clientId: client.id, ...(n ? { droppedSinceLastLine: n } : {}) },
          );
        cb(null);
        return;
      }
    }
    if (packet.retain) packet.retain = this.admitRetained(packet.topic, packet.payload.length, client?.id);
    cb(null);
  }

  /** Accounts a retained publish; false when it must not be retained (limits reached). */
  private admitRetained(topic: string, bytes: number, clientId: string | undefined): boolean {
    const old = this.retained.get(topic);
    if (bytes === 0) {
      // An empty retained payload clears the topic's retained message (§3.3.1.3).
      if (old !== undefined) {
        this.retained.delete(topic);
        this.retainedBytes -= old;
      }
    } else {
      const total = this.retainedBytes - (old ?? 0) + bytes;
      const count = this.retained.size + (old === undefined ? 1 : 0);
      if (total > this.options.maxRetainedBytes || count > this.options.maxRetained) {
        const n = this.logs.hit('retained');
        if (n !== undefined)
          this.log.warn(
            `MQTT broker holds ${this.retained.size} retained messages (${this.retainedBytes} bytes; limits maxRetained ${this.options.maxRetained}, maxRetainedBytes ${this.options.maxRetainedBytes}): a message on ${topic} is delivered but not retained`,
            { code: ErrorCode.Mqtt, ...(clientId ? { clientId } : {}), ...(n ? { alsoNotRetained: n } : {}) },
          );
        return false;
      }
      this.retained.set(topic, bytes);
      this.retainedBytes = total;
    }
    return true;
  }

  /** Listens, retrying with backoff while it cannot (one error line for the first failure); resolves once listening or when `signal` aborts. */
  async listen(signal: AbortSignal): Promise<void> {
    const { host, port } = this.options;
    const retry = backoff({ baseMs: LISTEN_RETRY_BASE_MS, maxMs: LISTEN_RETRY_MAX_MS });
    let failures = 0;
    while (!signal.aborted && !this.closed) {
      const server = createServer({ noDelay: true }, (socket) => this.accept(socket));
      // Raw connections are bounded too (those that have not sent CONNECT yet count here, not in aedes).
      server.maxConnections = this.options.maxClients * 2;
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host, port }, () => {
            server.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        failures++;
        const delay = retry.next();
        if (failures === 1)
          this.log.error(
            `MQTT broker cannot listen on ${host}:${port}: ${errorMessage(err)}; devices cannot connect until it can, retrying (every ${LISTEN_RETRY_MAX_MS / 1000} s at most)`,
            {
              code: errorCode(err),
            },
          );
        else this.log.debug(`MQTT broker still cannot listen: ${errorMessage(err)}; retrying in ${delay} ms`);
        await new Promise<void>((r) => {
          const t = setTimeout(done, delay);
          function done() {
            clearTimeout(t);
            signal.removeEventListener('abort', done);
            r();
          }
          signal.addEventListener('abort', done, { once: true });
        });
        continue;
      }
      server.on('error', (err) => this.log.error(`MQTT broker: ${errorMessage(err)}`, { code: errorCode(err) }));
      this.server = server;
      const a = server.address();
      this.addr = { host, port: a !== null && typeof a === 'object' ? a.port : port };
      if (signal.aborted || this.closed) return;
      this.log.info('MQTT broker listening', { url: `mqtt://${host.includes(':') ? `[${host}]` : host}:${this.addr.port}`, ...(failures ? { attempts: failures + 1 } : {}) });
      return;
    }
  }

  private accept(socket: Socket): void {
    const aedes = this.aedes;
    if (!aedes || this.closed) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    const scanner = new FrameScanner({ maxPacketBytes: this.options.maxPacketBytes });
    const conn = new GuardedConnection(socket, scanner, (c, reason) => this.refused(c, reason));
    aedes.handle(conn);
  }

  private refused(conn: GuardedConnection, reason: string): void {
    this.counts.oversized++;
    const who = conn.client?.id ?? `${conn.remoteAddress ?? '?'}:${conn.socket.remotePort ?? '?'}`;
    const n = this.logs.hit(`packet:${conn.client?.id ?? conn.remoteAddress}`);
    if (n !== undefined)
      this.log.warn(`MQTT client ${who} disconnected: ${reason} (maxPacketBytes)`, {
        code: ErrorCode.Mqtt,
        ...(conn.client?.id ? { clientId: conn.client.id } : {}),
        ...(n ? { alsoDisconnected: n } : {}),
      });
  }

  stats(): BrokerStats {
    return { clients: this.aedes?.connectedClients ?? 0, ...this.counts, retained: this.retained.size, retainedBytes: this.retainedBytes };
  }

  address(): { host: string; port: number } | undefined {
    return this.addr;
  }

  /** Delivers `msg` to the broker's clients (not back to us). Retained when asked and within the limits. */
  publish(msg: BusMessage): Promise<void> {
    const aedes = this.aedes;
    if (!aedes || this.closed) return Promise.reject(new MqttError('the MQTT broker is not running'));
    const retain = msg.retain ? this.admitRetained(msg.topic, msg.payload.length, undefined) : false;
    return new Promise((resolve, reject) => {
      aedes.publish({ cmd: 'publish', topic: msg.topic, payload: msg.payload, qos: msg.qos, retain, dup: false }, (err) =>
        err ? reject(new MqttError(`MQTT broker could not publish to ${msg.topic}: ${errorMessage(err)}`, { cause: err })) : resolve(),
      );
    });
  }

  /** Sets the filters whose messages (published by clients) reach {@link onMessage}. */
  setFilters(filters: Iterable<string>): void {
    const next = new Set(filters);
    for (const f of this.filters) if (!next.has(f)) this.unsubscribeAedes(f);
    for (const f of next) if (!this.filters.has(f)) this.subscribeAedes(f);
    this.filters.clear();
    for (const f of next) this.filters.add(f);
  }

  private readonly deliver = (packet: AedesPublishPacket, cb: () => void): void => {
    cb();
    if (packet.cmd !== 'publish') return;
    const clientId = (packet as { clientId?: string }).clientId;
    if (clientId === undefined || this.seen.has(packet)) return;
    this.seen.add(packet);
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    this.onMessage({ topic: packet.topic, payload, qos: packet.qos > 0 ? 1 : 0, retain: packet.retain === true }, clientId);
  };

  private subscribeAedes(filter: string): void {
    this.aedes?.subscribe(filter, this.deliver, () => {});
  }

  private unsubscribeAedes(filter: string): void {
    this.aedes?.unsubscribe(filter, this.deliver, () => {});
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const server = this.server;
    this.server = undefined;
    this.addr = undefined;
    const serverClosed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const s of this.sockets) s.destroy();
    const aedes = this.aedes;
    this.aedes = undefined;
    if (aedes) await new Promise<void>((r) => aedes.close(() => r()));
    await serverClosed;
  }
}
