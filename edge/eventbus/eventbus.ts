/**
 * @module
 * EventBus: EdgeCore's MQTT device bus (KubeEdge's edge/pkg/eventbus), a Beehive module and the
 * {@link DeviceBus} DeviceTwin uses. Modes:
 *
 * - `internal` (default): the embedded broker (./broker.ts, aedes) on 127.0.0.1:1883;
 * - `external`: a client (./client.ts) of a broker such as Mosquitto, TLS and user/password;
 * - `both`: both, bridged: a device message on a `bridgeTopics` topic (`$hw/events/#`) published
 *   on one side is published on the other;
 * - `off`: nothing runs (aedes is not even loaded); publish resolves at once, handlers never run.
 *
 * A subscriber sees each device message once, whichever broker it came through, and never what
 * this bus published itself. How loops and echoes are avoided: what we publish into the embedded
 * broker carries no client id, and the broker hands us only messages with one; what we write to
 * the external broker comes back to us when we subscribe to its topic (MQTT 3.1.1 has no "no
 * local"), so each write is remembered (topic and payload digest, 30 s) and its echo swallowed
 * (limits.ts, EchoFilter).
 *
 * `publish` resolves once the message is handed over: the embedded broker delivered it to its
 * clients' queues; the external broker sent PUBACK (QoS 1, waiting while it is unreachable,
 * queued up to `external.maxQueued`) or the message was written (QoS 0, refused while
 * disconnected). In mode `both` it follows the embedded broker; the external copy is sent with the
 * same rules and its failures are logged once a minute, not thrown.
 */
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import { ConfigError, MqttError, StoppedError, UnsupportedError, errorCode, errorContent, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { Group, ModuleName } from '../../shared/protocol/index.js';
import { InternalBroker, type BrokerStats } from './broker.js';
import { MqttClient, parseBrokerUrl } from './client.js';
import { EchoFilter, LogWindow } from './limits.js';
import { defaultEventBusOptions, type EventBusOptions, type ResolvedEventBusOptions } from './options.js';
import { checkTopicFilter, checkTopicName, topicMatches } from './topics.js';
import type { BusMessage, DeviceBus } from './types.js';

const LOG_WINDOW_MS = 60_000;
const MODES = ['internal', 'external', 'both', 'off'] as const;

interface Subscription {
  handler: (msg: BusMessage) => void;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody may be waiting when it rejects (the bus stopped); that is not an unhandled rejection.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

export interface EventBusStats {
  mode: EventBusOptions['mode'];
  /** Handlers subscribed (per filter). */
  subscriptions: number;
  /** Device messages handed to handlers. */
  delivered: number;
  /** Messages bridged from the embedded broker to the external one, and back. */
  bridgedOut: number;
  bridgedIn: number;
  /** Echoes of our own writes to the external broker that were swallowed. */
  echoesSwallowed: number;
  internal?: BrokerStats;
  /** The external client: connected, publishes waiting, filters the broker granted, counters. */
  external?: { connected: boolean; pending: number; subscriptions: string[] } & MqttClient['stats'];
}

function check(cond: boolean, message: string): void {
  if (!cond) throw new ConfigError(message);
}

/** `defaults` overridden by the fields of `given` that are set (an `undefined` field keeps its default). */
function withDefaults<T extends object>(defaults: T, given: Partial<T> | undefined): T {
  const out = { ...defaults };
  for (const [k, v] of Object.entries(given ?? {})) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** Full options from possibly partial ones (each section merged with its defaults), checked. */
function resolveOptions(given: EventBusOptions): ResolvedEventBusOptions {
  const o: ResolvedEventBusOptions = {
    mode: given.mode ?? defaultEventBusOptions.mode,
    internal: withDefaults(defaultEventBusOptions.internal, given.internal),
    external: withDefaults<ResolvedEventBusOptions['external']>(defaultEventBusOptions.external, given.external),
    bridgeTopics: given.bridgeTopics ?? defaultEventBusOptions.bridgeTopics,
  };
  check((MODES as readonly string[]).includes(o.mode), `eventBus.mode "${o.mode}" is not one of ${MODES.join(', ')}`);
  const i = o.internal;
  check(Number.isInteger(i.port) && i.port >= 0 && i.port <= 65_535, `eventBus.internal.port ${i.port} is not a port`);
  for (const k of ['maxPacketBytes', 'maxClients', 'publishesPerSecond', 'publishBurst', 'maxRetained', 'maxRetainedBytes'] as const)
    check(typeof i[k] === 'number' && i[k] > 0, `eventBus.internal.${k} must be a number above 0 (got ${i[k]})`);
  const e = o.external;
  for (const k of ['reconnectBaseMs', 'reconnectMaxMs', 'maxPacketBytes', 'maxQueued', 'connectTimeoutMs'] as const)
    check(typeof e[k] === 'number' && e[k] > 0, `eventBus.external.${k} must be a number above 0 (got ${e[k]})`);
  if (o.mode === 'external' || o.mode === 'both') parseBrokerUrl(e.url);
  for (const f of o.bridgeTopics) {
    try {
      checkTopicFilter(f);
    } catch (err) {
      throw new ConfigError(`eventBus.bridgeTopics: ${errorMessage(err)}`);
    }
  }
  return o;
}

export class EventBus implements Module, DeviceBus {
  readonly name = ModuleName.EventBus;
  readonly group = Group.Bus;
  readonly options: ResolvedEventBusOptions;
  private readonly handlers = new Map<string, Set<Subscription>>();
  private broker: InternalBroker | undefined;
  private client: MqttClient | undefined;
  private externalFilters: string[] = [];
  private readonly echoes = new EchoFilter();
  private readonly logs = new LogWindow(LOG_WINDOW_MS);
  private ready = deferred();
  private readyDone = false;
  private stopped = false;
  private readonly counts = { delivered: 0, bridgedOut: 0, bridgedIn: 0, echoesSwallowed: 0 };

  constructor(
    options: EventBusOptions,
    private readonly log: Logger,
  ) {
    this.options = resolveOptions(options);
  }

  private get internalOn(): boolean {
    return this.options.mode === 'internal' || this.options.mode === 'both';
  }

  private get externalOn(): boolean {
    return this.options.mode === 'external' || this.options.mode === 'both';
  }

  subscribe(filter: string, handler: (msg: BusMessage) => void): () => void {
    checkTopicFilter(filter);
    let set = this.handlers.get(filter);
    if (!set) this.handlers.set(filter, (set = new Set()));
    const sub: Subscription = { handler };
    set.add(sub);
    this.refreshFilters();
    return () => {
      const s = this.handlers.get(filter);
      if (!s?.delete(sub)) return;
      if (s.size === 0) this.handlers.delete(filter);
      this.refreshFilters();
    };
  }

  async publish(topic: string, payload: string | Buffer, opts: { qos?: 0 | 1; retain?: boolean } = {}): Promise<void> {
    checkTopicName(topic);
    const qos = opts.qos ?? 1;
    if (qos !== 0 && qos !== 1) throw new MqttError(`MQTT QoS ${String(qos)} is not supported by the device bus (0 or 1)`);
    const msg: BusMessage = { topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos, retain: opts.retain === true };
    if (this.options.mode === 'off') return;
    if (this.stopped) throw new StoppedError('the device bus is stopped');
    if (this.internalOn) {
      const bytes = msg.payload.length + Buffer.byteLength(topic) + 9;
      if (bytes > this.options.internal.maxPacketBytes)
        throw new MqttError(`message of ${bytes} bytes to ${topic} is over the device bus's maxPacketBytes (${this.options.internal.maxPacketBytes})`);
    }
    await this.ready.promise;
    const broker = this.broker;
    const client = this.client;
    if (broker) {
      if (client) this.toExternal(client, msg);
      await broker.publish(msg);
      return;
    }
    if (client) {
      await client.publish(msg);
      return;
    }
    throw new StoppedError('the device bus is stopped');
  }

  /** A copy for the external broker in mode `both`: failures are logged (once a minute), not thrown. */
  private toExternal(client: MqttClient, msg: BusMessage): void {
    client.publish(msg).catch((err) => {
      if (err instanceof StoppedError) return;
      const n = this.logs.hit(`external:${errorMessage(err)}`);
      if (n !== undefined) this.log.warn(`device bus: the external broker did not take a message: ${errorMessage(err)}`, { code: errorCode(err), ...(n ? { alsoFailed: n } : {}) });
    });
  }

  /** Where the embedded broker listens; undefined until it does (and in the modes without it). */
  address(): { host: string; port: number } | undefined {
    return this.broker?.address();
  }

  /** Whether the external broker connection is up (mode external/both). */
  externalConnected(): boolean {
    return this.client?.connected === true;
  }

  stats(): EventBusStats {
    let subscriptions = 0;
    for (const s of this.handlers.values()) subscriptions += s.size;
    const b = this.broker?.stats();
    const c = this.client;
    return {
      mode: this.options.mode,
      subscriptions,
      ...this.counts,
      ...(b ? { internal: b } : {}),
      ...(c ? { external: { connected: c.connected, pending: c.pending, subscriptions: c.subscriptions(), ...c.stats } } : {}),
    };
  }

  private refreshFilters(): void {
    const filters = [...this.handlers.keys(), ...(this.options.mode === 'both' ? this.options.bridgeTopics : [])];
    this.broker?.setFilters(filters);
    this.externalFilters = filters;
    this.client?.setSubscriptions(filters);
  }

  private isBridged(topic: string): boolean {
    return this.options.mode === 'both' && this.options.bridgeTopics.some((f) => topicMatches(f, topic));
  }

  private dispatch(msg: BusMessage): void {
    for (const [filter, subs] of this.handlers) {
      if (!topicMatches(filter, msg.topic)) continue;
      for (const s of subs) {
        this.counts.delivered++;
        try {
          s.handler(msg);
        } catch (err) {
          const n = this.logs.hit(`handler:${filter}`);
          if (n !== undefined)
            this.log.error(`device bus: the handler of ${filter} failed on a message to ${msg.topic}: ${errorMessage(err)}`, {
              code: errorCode(err),
              ...(n ? { alsoFailed: n } : {}),
            });
        }
      }
    }
  }

  /** A message a client of the embedded broker published. */
  private fromInternal(msg: BusMessage): void {
    this.dispatch(msg);
    const client = this.client;
    if (client && this.isBridged(msg.topic)) {
      this.counts.bridgedOut++;
      this.toExternal(client, msg);
    }
  }

  /** A message the external broker delivered. */
  private fromExternal(msg: BusMessage): void {
    if (this.echoes.consume(msg.topic, msg.payload)) {
      this.counts.echoesSwallowed++;
      return;
    }
    this.dispatch(msg);
    const broker = this.broker;
    if (broker && this.isBridged(msg.topic)) {
      this.counts.bridgedIn++;
      broker.publish(msg).catch((err) => {
        const n = this.logs.hit(`bridge-in:${errorMessage(err)}`);
        if (n !== undefined) this.log.warn(`device bus: a message from the external broker could not be bridged: ${errorMessage(err)}`, { code: errorCode(err) });
      });
    }
  }

  /** Each write to the external broker on a topic we subscribe to there comes back once: expect it. */
  private wroteExternal(topic: string, payload: Buffer): void {
    if (this.externalFilters.some((f) => topicMatches(f, topic))) this.echoes.expect(topic, payload);
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    const drained = this.drainMailbox(ctx, signal);
    let listened: Promise<void> | undefined;
    try {
      if (this.options.mode === 'off') {
        this.log.info('device bus is off (eventBus.mode off): no MQTT broker, no client');
      } else {
        if (this.internalOn) {
          const broker = new InternalBroker(this.options.internal, this.log, (msg) => this.fromInternal(msg));
          this.broker = broker;
          await broker.open();
          if (signal.aborted) return;
          listened = broker.listen(signal);
        }
        if (this.externalOn) {
          const client = new MqttClient(this.options.external, this.log, (msg) => this.fromExternal(msg), {
            onPublishWritten: (topic, payload) => this.wroteExternal(topic, payload),
          });
          this.client = client;
          client.start();
        }
        this.refreshFilters();
        this.ready.resolve();
        this.readyDone = true;
        this.log.debug('device bus started', { mode: this.options.mode });
      }
      await new Promise<void>((r) => (signal.aborted ? r() : signal.addEventListener('abort', () => r(), { once: true })));
    } finally {
      const client = this.client;
      this.client = undefined;
      await client?.stop();
      await listened;
      const broker = this.broker;
      this.broker = undefined;
      await broker?.close();
      if (signal.aborted) {
        this.stopped = true;
        this.ready.reject(new StoppedError('the device bus is stopped'));
      } else if (this.readyDone) {
        // A failed start is retried by Beehive: publishers wait for the next one.
        this.ready = deferred();
        this.readyDone = false;
      }
      await drained;
    }
  }

  /** Nothing is sent to the bus over Beehive; anything that is gets dropped (a sync request is answered), so no sender waits on a full mailbox. */
  private async drainMailbox(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    for await (const msg of ctx.messages(signal)) {
      this.log.debug(`eventbus takes no messages; dropped ${msg.route.operation} ${msg.route.resource}`);
      if (msg.header.sync) await ctx.respond(msg, errorContent(new UnsupportedError('eventbus takes no messages'))).catch(() => {});
    }
  }
}

/** The device bus of EdgeCore; register it with Beehive (it starts what `options.mode` asks for). Throws ConfigError on bad options. */
export function createEventBus(options: EventBusOptions, log: Logger): EventBus {
  return new EventBus(options, log);
}
