/**
 * @module
 * An MQTT 3.1.1 client for an external broker, on mqtt-packet's parser and generator (the codec
 * is theirs; the session is ours, a few hundred lines instead of mqtt.js' ~130 KB):
 *
 * - CONNECT with a clean session, keepalive, username and password; CONNACK refusals become one
 *   clear MqttError line (then debug lines while the same refusal repeats) and a retry;
 * - reconnect with full-jitter backoff (shared/backoff), reset after each CONNACK 0;
 * - SUBSCRIBE at QoS 1 of the filters asked for, again after every reconnect (the session is
 *   clean); SUBACK refusals (0x80) are logged once per filter;
 * - PUBLISH QoS 0 (written, or refused while disconnected) and QoS 1 with packet ids: at most
 *   {@link INFLIGHT_WINDOW} unacknowledged on the wire, the rest queued (bounded by `maxQueued`,
 *   the oldest dropped past it); a QoS 1 publish resolves on its PUBACK, and one unacknowledged
 *   when the connection drops is sent again, with DUP, after the reconnect;
 * - PINGREQ every keepalive; no answer by the next one ends the connection;
 * - TLS for mqtts:// (CA, client certificate and key, read at each connect so renewed files are
 *   picked up), `insecureSkipTlsVerify` logged as a warning;
 * - a packet from the broker over `maxPacketBytes` is not buffered: a PUBLISH is acknowledged and
 *   dropped (logged once a minute), anything else ends the connection.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { mqtt } from './packets.js';
import type { IConnackPacket, IPublishPacket, ISubackPacket, Packet } from 'mqtt-packet';
import { ConfigError, ErrorCode, MqttError, StoppedError, errorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { backoff, type Backoff } from '../../shared/backoff/index.js';
import { FrameScanner, type OversizeInfo } from './frames.js';
import { LogWindow, type Clock } from './limits.js';
import type { ResolvedExternalOptions } from './options.js';
import { minimalCover } from './topics.js';
import type { BusMessage } from './types.js';

/** Unacknowledged QoS 1 publishes on the wire at once; the rest wait in the queue. */
export const INFLIGHT_WINDOW = 100;
/** QoS 0 publishes are refused while this many bytes wait in the socket (the broker reads slower than we write). */
const MAX_SOCKET_BACKLOG = 1024 * 1024;
const LOG_WINDOW_MS = 60_000;
/** Filters per SUBSCRIBE packet. */
const FILTERS_PER_PACKET = 64;

/** CONNACK return codes of MQTT 3.1.1 (§3.2.2.3). */
const CONNACK_REASONS: Record<number, string> = {
  1: 'unacceptable protocol version',
  2: 'client identifier rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorized',
};

/** Where and how to connect, from the options (throws ConfigError on a bad URL). */
export interface BrokerTarget {
  url: string;
  tls: boolean;
  host: string;
  port: number;
  username?: string;
  password?: string;
}

/** `url` as it may appear in a message: a `user:password@` part masked (an unparsable URL may still carry one). */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//***@');
}

export function parseBrokerUrl(url: string): BrokerTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`external MQTT broker URL "${redactUrl(url)}" is not a URL (mqtt://host:port or mqtts://host:port)`);
  }
  const scheme = u.protocol.replace(/:$/, '');
  const tls = scheme === 'mqtts' || scheme === 'ssl' || scheme === 'tls';
  if (!tls && scheme !== 'mqtt' && scheme !== 'tcp')
    throw new ConfigError(`external MQTT broker URL "${redactUrl(url)}": scheme ${scheme}: is not one of mqtt:, tcp:, mqtts:, ssl:, tls:`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) throw new ConfigError(`external MQTT broker URL "${redactUrl(url)}" has no host`);
  const port = u.port ? Number(u.port) : tls ? 8883 : 1883;
  return {
    url: `${tls ? 'mqtts' : 'mqtt'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    tls,
    host,
    port,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
  };
}

/** Log fields of a connection failure: always the bus's code, and the system's (ECONNREFUSED, a TLS code) beside it. */
function codes(reason: unknown): { code: string; cause?: string } {
  const c = errorCode(reason);
  return c === ErrorCode.Mqtt || c === ErrorCode.Unknown ? { code: ErrorCode.Mqtt } : { code: ErrorCode.Mqtt, cause: c };
}

interface Outgoing {
  topic: string;
  payload: Buffer;
  retain: boolean;
  id: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export type ClientState = 'connecting' | 'connected' | 'disconnected' | 'stopped';

export interface MqttClientHooks {
  /** Random source of the reconnect jitter. */
  random?: () => number;
  now?: Clock;
  /** Called for each PUBLISH written to the broker (the echo filter's expectations). */
  onPublishWritten?: (topic: string, payload: Buffer) => void;
}

interface Connection {
  socket: Socket;
  established: boolean;
  /** Packets received since the last PINGREQ. */
  heard: boolean;
  keepalive?: NodeJS.Timeout;
  connackTimer?: NodeJS.Timeout;
  /** Pending SUBSCRIBE / UNSUBSCRIBE packet ids → their filters. */
  subscribing: Map<number, string[]>;
  unsubscribing: Map<number, string[]>;
  /** Filters the broker has (or is asked for) on this connection. */
  active: Set<string>;
  /** Filters the broker acknowledged (SUBACK granted) on this connection. */
  granted: Set<string>;
  /** Why it ended, for the log line. */
  endReason?: unknown;
}

export class MqttClient {
  readonly target: BrokerTarget;
  readonly clientId: string;
  private readonly retry: Backoff;
  private readonly logs: LogWindow;
  private state: ClientState = 'disconnected';
  private conn: Connection | undefined;
  private readonly queue: Outgoing[] = [];
  private readonly inflight = new Map<number, Outgoing>();
  private nextId = 1;
  private wanted: string[] = [];
  private running = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private lastFailure: string | undefined;
  private failures = 0;
  private readonly listeners = new Set<(state: ClientState) => void>();
  private stopWaiters: (() => void)[] = [];
  readonly stats = { attempts: 0, connects: 0, connectFailures: 0, published: 0, received: 0, resent: 0, oversizedDropped: 0, queueDropped: 0 };

  constructor(
    private readonly options: ResolvedExternalOptions,
    private readonly log: Logger,
    private readonly onMessage: (msg: BusMessage) => void,
    private readonly hooks: MqttClientHooks = {},
  ) {
    this.target = parseBrokerUrl(options.url);
    this.clientId = options.clientId ?? `ledge-${randomBytes(6).toString('hex')}`;
    this.retry = backoff({ baseMs: options.reconnectBaseMs, maxMs: options.reconnectMaxMs, jitter: 'full', ...(hooks.random ? { random: hooks.random } : {}) });
    this.logs = new LogWindow(LOG_WINDOW_MS, 1000, hooks.now ?? Date.now);
    if (options.keepaliveSeconds < 0 || options.keepaliveSeconds > 65_535)
      throw new ConfigError(`external MQTT keepaliveSeconds ${options.keepaliveSeconds} is not within 0..65535`);
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  /** The filters the broker granted on the current connection. */
  subscriptions(): string[] {
    return [...(this.conn?.granted ?? [])].sort();
  }

  /** Publishes waiting for a connection or a PUBACK. */
  get pending(): number {
    return this.queue.length + this.inflight.size;
  }

  /** Calls `l` on each state change; returns the unsubscribe function. */
  onState(l: (state: ClientState) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private setState(s: ClientState): void {
    if (this.state === s) return;
    this.state = s;
    for (const l of this.listeners) l(s);
  }

  /** Starts connecting (and reconnecting, until {@link stop}). */
  start(): void {
    if (this.running) return;
    this.running = true;
    if (this.target.tls && this.options.insecureSkipTlsVerify)
      this.log.warn(`TLS verification of the external MQTT broker ${this.target.url} is off (insecureSkipTlsVerify)`, { code: ErrorCode.Insecure });
    this.connect();
  }

  /** The filters to be subscribed to (the smallest covering set is what the broker gets). */
  setSubscriptions(filters: Iterable<string>): void {
    this.wanted = minimalCover(filters);
    if (this.conn?.established) this.syncSubscriptions(this.conn);
  }

  /**
   * Publishes to the broker. QoS 1: resolves on the broker's PUBACK, waiting across reconnects
   * (queued while disconnected); QoS 0: resolves once written, rejects with MqttError while
   * disconnected.
   */
  publish(msg: BusMessage): Promise<void> {
    if (!this.running) return Promise.reject(new StoppedError('the external MQTT client is stopped'));
    const bytes = msg.payload.length + Buffer.byteLength(msg.topic) + 9;
    if (bytes > this.options.maxPacketBytes)
      return Promise.reject(new MqttError(`message of ${bytes} bytes to ${msg.topic} is over the external broker's maxPacketBytes (${this.options.maxPacketBytes})`));
    if (msg.qos === 0) {
      const conn = this.conn;
      if (!conn?.established) return Promise.reject(new MqttError(`not connected to the external MQTT broker ${this.target.url}: QoS 0 message to ${msg.topic} dropped`));
      if (conn.socket.writableLength > MAX_SOCKET_BACKLOG)
        return Promise.reject(new MqttError(`the external MQTT broker ${this.target.url} reads slower than we write: QoS 0 message to ${msg.topic} dropped`));
      this.write(conn, { cmd: 'publish', topic: msg.topic, payload: msg.payload, qos: 0, retain: msg.retain, dup: false });
      this.stats.published++;
      this.hooks.onPublishWritten?.(msg.topic, msg.payload);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      if (this.pending >= this.options.maxQueued) {
        const oldest = this.queue.shift();
        if (oldest) {
          this.stats.queueDropped++;
          const n = this.logs.hit('queue-full');
          if (n !== undefined)
            this.log.warn(`${this.options.maxQueued} QoS 1 messages wait for the external MQTT broker ${this.target.url} (maxQueued): dropping the oldest`, {
              code: ErrorCode.QueueFull,
              ...(n ? { droppedSinceLastLine: n } : {}),
            });
          oldest.reject(new MqttError(`message to ${oldest.topic} dropped: ${this.options.maxQueued} messages wait for the external MQTT broker (maxQueued)`));
        } else {
          reject(new MqttError(`${this.options.maxQueued} messages wait for a PUBACK from the external MQTT broker (maxQueued): message to ${msg.topic} refused`));
          return;
        }
      }
      this.queue.push({ topic: msg.topic, payload: msg.payload, retain: msg.retain, id: 0, resolve, reject });
      this.pump();
    });
  }

  /** Sends queued QoS 1 messages while the window has room. */
  private pump(): void {
    const conn = this.conn;
    if (!conn?.established) return;
    while (this.queue.length > 0 && this.inflight.size < INFLIGHT_WINDOW) {
      const m = this.queue.shift()!;
      m.id = this.allocateId();
      this.inflight.set(m.id, m);
      this.sendPublish(conn, m, false);
    }
  }

  private sendPublish(conn: Connection, m: Outgoing, dup: boolean): void {
    this.write(conn, { cmd: 'publish', topic: m.topic, payload: m.payload, qos: 1, retain: m.retain, dup, messageId: m.id });
    this.stats.published++;
    if (dup) this.stats.resent++;
    this.hooks.onPublishWritten?.(m.topic, m.payload);
  }

  /** A packet id not in use by an unacknowledged publish or a pending (un)subscribe. */
  private allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id === 65_535 ? 1 : id + 1;
      if (!this.inflight.has(id) && !this.conn?.subscribing.has(id) && !this.conn?.unsubscribing.has(id)) return id;
    }
  }

  private write(conn: Connection, packet: Packet): void {
    if (conn.socket.destroyed) return;
    conn.socket.write(mqtt.generate(packet, { protocolVersion: 4 }));
  }

  private connect(): void {
    if (!this.running) return;
    this.stats.attempts++;
    this.setState('connecting');
    let socket: Socket;
    try {
      socket = this.openSocket();
    } catch (err) {
      this.failed(err);
      return;
    }
    const conn: Connection = { socket, established: false, heard: false, subscribing: new Map(), unsubscribing: new Map(), active: new Set(), granted: new Set() };
    this.conn = conn;
    const scanner = new FrameScanner({
      maxPacketBytes: this.options.maxPacketBytes,
      onOversize: (info) => (info.type === 3 ? 'skip' : 'fail'),
      onSkipped: (info, head) => this.oversized(conn, info, head),
    });
    const parser = mqtt.parser({ protocolVersion: 4 });
    parser.on('packet', (p: Packet) => this.onPacket(conn, p));
    parser.on('error', (err: Error) => this.endConnection(conn, new MqttError(`malformed packet from the external MQTT broker: ${err.message}`, { cause: err })));
    socket.on('data', (chunk: Buffer) => {
      const r = scanner.push(chunk);
      if (!r.ok) {
        this.endConnection(conn, new MqttError(`the external MQTT broker sent a ${r.reason}`));
        return;
      }
      for (const b of r.pass) if (!socket.destroyed) parser.parse(b);
    });
    socket.on('error', (err) => (conn.endReason ??= err));
    socket.on('close', () => this.closed(conn));
    const onOpen = () => {
      this.write(conn, {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        clientId: this.clientId,
        keepalive: this.options.keepaliveSeconds,
        ...(this.username() !== undefined ? { username: this.username() } : {}),
        ...(this.password() !== undefined ? { password: Buffer.from(this.password()!) } : {}),
      });
    };
    socket.once(this.target.tls ? 'secureConnect' : 'connect', onOpen);
    conn.connackTimer = setTimeout(
      () => this.endConnection(conn, new MqttError(`the external MQTT broker ${this.target.url} did not answer CONNECT within ${this.options.connectTimeoutMs} ms`)),
      this.options.connectTimeoutMs,
    );
  }

  private username(): string | undefined {
    return this.options.username ?? this.target.username;
  }

  private password(): string | undefined {
    return this.options.password ?? this.target.password;
  }

  private openSocket(): Socket {
    const { host, port } = this.target;
    if (!this.target.tls) return netConnect({ host, port, noDelay: true });
    const read = (file: string | undefined, what: string): Buffer | undefined => {
      if (!file) return undefined;
      try {
        return readFileSync(file);
      } catch (err) {
        throw new MqttError(`cannot read the ${what} of the external MQTT broker connection (${file}): ${errorMessage(err)}`, { cause: err });
      }
    };
    const ca = read(this.options.caFile, 'CA file');
    const cert = read(this.options.certFile, 'client certificate');
    const key = read(this.options.keyFile, 'client key');
    const socket = tlsConnect({
      host,
      port,
      ...(isIP(host) ? {} : { servername: host }),
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      rejectUnauthorized: !this.options.insecureSkipTlsVerify,
    });
    socket.setNoDelay(true);
    return socket;
  }

  private onPacket(conn: Connection, p: Packet): void {
    if (this.conn !== conn) return;
    conn.heard = true;
    switch (p.cmd) {
      case 'connack':
        this.onConnack(conn, p);
        return;
      case 'publish':
        this.onPublish(conn, p);
        return;
      case 'puback': {
        const m = p.messageId !== undefined ? this.inflight.get(p.messageId) : undefined;
        if (!m) return;
        this.inflight.delete(m.id);
        m.resolve();
        this.pump();
        return;
      }
      case 'suback':
        this.onSuback(conn, p);
        return;
      case 'unsuback':
        if (p.messageId !== undefined) conn.unsubscribing.delete(p.messageId);
        return;
      case 'pubrec':
        // Only for a QoS 2 publish, which we never send; answer as the protocol wants anyway.
        this.write(conn, { cmd: 'pubrel', messageId: p.messageId! });
        return;
      case 'pubrel':
        this.write(conn, { cmd: 'pubcomp', messageId: p.messageId! });
        return;
      case 'pingresp':
        return;
      default:
        this.log.debug(`external MQTT broker sent an unexpected ${p.cmd} packet; ignored`);
    }
  }

  private onConnack(conn: Connection, p: IConnackPacket): void {
    if (conn.established) return;
    clearTimeout(conn.connackTimer);
    const code = p.returnCode ?? 0;
    if (code !== 0) {
      const reason = CONNACK_REASONS[code] ?? `return code ${code}`;
      this.endConnection(conn, new MqttError(`the external MQTT broker ${this.target.url} refused the connection: ${reason} (CONNACK ${code})`));
      return;
    }
    conn.established = true;
    this.stats.connects++;
    const attempts = this.failures;
    this.failures = 0;
    this.lastFailure = undefined;
    this.retry.reset();
    if (this.options.keepaliveSeconds > 0) {
      conn.keepalive = setInterval(() => {
        if (!conn.heard) {
          this.endConnection(conn, new MqttError(`the external MQTT broker ${this.target.url} did not answer PINGREQ within ${this.options.keepaliveSeconds} s`));
          return;
        }
        conn.heard = false;
        this.write(conn, { cmd: 'pingreq' });
      }, this.options.keepaliveSeconds * 1000);
      conn.keepalive.unref();
    }
    this.log.info('connected to the external MQTT broker', {
      url: this.target.url,
      clientId: this.clientId,
      ...(attempts ? { attempts: attempts + 1 } : {}),
      ...(this.inflight.size ? { resending: this.inflight.size } : {}),
    });
    this.syncSubscriptions(conn);
    // A clean session: the broker forgot what was not acknowledged; send it again, in order.
    for (const m of this.inflight.values()) this.sendPublish(conn, m, true);
    this.setState('connected');
    this.pump();
  }

  private syncSubscriptions(conn: Connection): void {
    const wanted = new Set(this.wanted);
    const add = [...wanted].filter((f) => !conn.active.has(f));
    const remove = [...conn.active].filter((f) => !wanted.has(f));
    for (let i = 0; i < add.length; i += FILTERS_PER_PACKET) {
      const filters = add.slice(i, i + FILTERS_PER_PACKET);
      const id = this.allocateId();
      conn.subscribing.set(id, filters);
      for (const f of filters) conn.active.add(f);
      this.write(conn, { cmd: 'subscribe', messageId: id, subscriptions: filters.map((topic) => ({ topic, qos: 1 as const })) });
    }
    for (let i = 0; i < remove.length; i += FILTERS_PER_PACKET) {
      const filters = remove.slice(i, i + FILTERS_PER_PACKET);
      const id = this.allocateId();
      conn.unsubscribing.set(id, filters);
      for (const f of filters) {
        conn.active.delete(f);
        conn.granted.delete(f);
      }
      this.write(conn, { cmd: 'unsubscribe', messageId: id, unsubscriptions: filters });
    }
  }

  private onSuback(conn: Connection, p: ISubackPacket): void {
    const filters = p.messageId !== undefined ? conn.subscribing.get(p.messageId) : undefined;
    if (!filters) return;
    conn.subscribing.delete(p.messageId!);
    p.granted.forEach((g, i) => {
      const filter = filters[i];
      if (filter === undefined || typeof g !== 'number' || !conn.active.has(filter)) return;
      if (g < 0x80) {
        conn.granted.add(filter);
        return;
      }
      const n = this.logs.hit(`suback:${filter}`);
      if (n !== undefined)
        this.log.error(
          `the external MQTT broker ${this.target.url} refused the subscription to ${filter} (SUBACK 0x${g.toString(16)}): check its ACL; asked again after the next reconnect`,
          {
            code: ErrorCode.Mqtt,
          },
        );
    });
  }

  private onPublish(conn: Connection, p: IPublishPacket): void {
    this.stats.received++;
    const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
    try {
      this.onMessage({ topic: p.topic, payload, qos: p.qos > 0 ? 1 : 0, retain: p.retain === true });
    } finally {
      if (p.qos === 1) this.write(conn, { cmd: 'puback', messageId: p.messageId! });
      // QoS 2 only if the broker ignores the QoS 1 we subscribed with; complete its handshake.
      else if (p.qos === 2) this.write(conn, { cmd: 'pubrec', messageId: p.messageId! });
    }
  }

  private oversized(conn: Connection, info: OversizeInfo, head: Buffer): void {
    this.stats.oversizedDropped++;
    const qos = (info.flags >> 1) & 3;
    let topic = '?';
    if (head.length >= 2) {
      const len = head.readUInt16BE(0);
      if (head.length >= 2 + len) topic = head.toString('utf8', 2, 2 + len);
      if (qos > 0 && head.length >= 4 + len) {
        const messageId = head.readUInt16BE(2 + len);
        this.write(conn, qos === 1 ? { cmd: 'puback', messageId } : { cmd: 'pubrec', messageId });
      }
    }
    const n = this.logs.hit(`oversized:${topic}`);
    if (n !== undefined)
      this.log.warn(`dropped a message of ${info.bytes} bytes on ${topic} from the external MQTT broker: over maxPacketBytes (${this.options.maxPacketBytes})`, {
        code: ErrorCode.Mqtt,
        ...(n ? { droppedSinceLastLine: n } : {}),
      });
  }

  /** Ends `conn` (its close handler schedules the reconnect). */
  private endConnection(conn: Connection, reason: unknown): void {
    conn.endReason ??= reason;
    conn.socket.destroy();
  }

  private closed(conn: Connection): void {
    clearTimeout(conn.connackTimer);
    clearInterval(conn.keepalive);
    if (this.conn !== conn) return;
    this.conn = undefined;
    if (!this.running) {
      this.setState('stopped');
      for (const w of this.stopWaiters.splice(0)) w();
      return;
    }
    const reason = conn.endReason ?? new MqttError('the external MQTT broker closed the connection');
    if (conn.established) {
      const n = this.logs.hit('lost');
      if (n !== undefined)
        this.log.warn(`lost the connection to the external MQTT broker ${this.target.url}: ${errorMessage(reason)}; reconnecting`, {
          ...codes(reason),
          ...(this.pending ? { pending: this.pending } : {}),
          ...(n ? { lostSinceLastLine: n } : {}),
        });
      this.setState('disconnected');
      this.schedule();
      return;
    }
    this.failed(reason);
  }

  /** A connection attempt failed: one error line per distinct reason, then a retry. */
  private failed(reason: unknown): void {
    this.stats.connectFailures++;
    this.failures++;
    this.setState('disconnected');
    const message = errorMessage(reason);
    const delay = this.schedule();
    if (message !== this.lastFailure) {
      this.lastFailure = message;
      this.log.error(`${this.describe(reason)}; retrying in ${delay} ms (backoff up to ${this.options.reconnectMaxMs} ms)`, codes(reason));
    } else this.log.debug(`external MQTT broker: ${message}; retrying in ${delay} ms`, { attempts: this.failures });
  }

  private describe(reason: unknown): string {
    if (reason instanceof MqttError) return reason.message;
    return `cannot connect to the external MQTT broker ${this.target.url}: ${errorMessage(reason)}`;
  }

  private schedule(): number {
    const delay = this.retry.next();
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
    return delay;
  }

  /** Disconnects (DISCONNECT, then the socket ends) and rejects what was not delivered with StoppedError. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.retryTimer);
    const err = new StoppedError('the device bus stopped before the external MQTT broker acknowledged the message');
    for (const m of this.queue.splice(0)) m.reject(err);
    for (const m of this.inflight.values()) m.reject(err);
    this.inflight.clear();
    const conn = this.conn;
    if (!conn) {
      this.setState('stopped');
      return;
    }
    const gone = new Promise<void>((r) => this.stopWaiters.push(r));
    if (conn.established) this.write(conn, { cmd: 'disconnect' });
    conn.socket.end();
    const force = setTimeout(() => conn.socket.destroy(), 1000);
    await gone;
    clearTimeout(force);
  }
}
