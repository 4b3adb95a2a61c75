/**
 * @module
 * EventBus defaults, the one place they are written (`edge/config.ts` takes its `eventBus.*`
 * defaults from here). No imports: the configuration loads this file without the bus.
 */

/** Which brokers the device bus uses. */
export type EventBusMode = 'internal' | 'external' | 'both' | 'off';

/** The embedded broker (aedes), used by the modes `internal` and `both`. */
export interface InternalBrokerOptions {
  /** Address to listen on. Default 127.0.0.1 (no authentication: keep it on loopback unless the network is trusted). */
  host: string;
  /** Port to listen on; 0 picks a free one. Default 1883. */
  port: number;
  /** Largest MQTT packet a client may send, bytes (fixed header included); a bigger one disconnects that client. Default 256 KiB. */
  maxPacketBytes: number;
  /** Connected clients; one more is refused with CONNACK 3 (server unavailable). Default 1000. */
  maxClients: number;
  /** Publishes per second each client may make (token bucket); publishes over it are acknowledged and dropped. Default 1000. */
  publishesPerSecond: number;
  /** Publishes a client may make at once before the rate applies. Default 2000. */
  publishBurst: number;
  /** Retained messages the broker keeps; past it (or past {@link maxRetainedBytes}) a new retained topic is delivered but not retained. Default 1000. */
  maxRetained?: number;
  /** Payload bytes of all retained messages together. Default 8 MiB. */
  maxRetainedBytes?: number;
}

/** The external broker (e.g. Mosquitto), used by the modes `external` and `both`. */
export interface ExternalBrokerOptions {
  /** `mqtt://host:port` (or `tcp://`), `mqtts://host:port` (or `ssl://`, `tls://`) for TLS. Default mqtt://127.0.0.1:1883. User and password may be in the URL. */
  url: string;
  username?: string;
  password?: string;
  /** PEM file of the CA(s) that signed the broker's certificate (mqtts). Default: the system's CAs. */
  caFile?: string;
  /** PEM client certificate, for brokers that require one (mqtts). */
  certFile?: string;
  /** PEM private key of {@link certFile}. */
  keyFile?: string;
  /** Do not verify the broker's certificate (mqtts). Default false; logs a warning when set. */
  insecureSkipTlsVerify?: boolean;
  /** MQTT client id. Default `ledge-<12 random hex digits>`, chosen once per process. */
  clientId?: string;
  /** MQTT keepalive, seconds: a PINGREQ when idle this long; no answer by the next one → reconnect. Default 60. */
  keepaliveSeconds: number;
  /** First reconnect delay ceiling, ms (full jitter: each delay is uniform below a ceiling that doubles). Default 1000. */
  reconnectBaseMs: number;
  /** Largest reconnect delay ceiling, ms. Default 30000. */
  reconnectMaxMs: number;
  /** Largest packet accepted from the broker, bytes; a bigger message is acknowledged and dropped (logged once a minute). Default 256 KiB. */
  maxPacketBytes: number;
  /** QoS 1 messages waiting for the broker's PUBACK or for a connection; past it the oldest is dropped (its publish rejects). Default 1000. */
  maxQueued?: number;
  /** Time the broker has to answer CONNECT, ms. Default 10000. */
  connectTimeoutMs?: number;
}

/** Options of {@link EventBus}; defaults in {@link defaultEventBusOptions}. */
export interface EventBusOptions {
  /** Default 'internal' (KubeEdge's default is an external broker; Ledge embeds one so a node needs nothing else). */
  mode: EventBusMode;
  internal: InternalBrokerOptions;
  external: ExternalBrokerOptions;
  /** Mode 'both': topic filters copied between the two brokers. Default `$hw/events/#` (KubeEdge's device topics). */
  bridgeTopics?: string[];
}

/** {@link InternalBrokerOptions} with every default applied. */
export type ResolvedInternalOptions = Required<Pick<InternalBrokerOptions, 'maxRetained' | 'maxRetainedBytes'>> & InternalBrokerOptions;
/** {@link ExternalBrokerOptions} with every default applied. */
export type ResolvedExternalOptions = Required<Pick<ExternalBrokerOptions, 'maxQueued' | 'connectTimeoutMs'>> & ExternalBrokerOptions;
/** {@link EventBusOptions} with every default applied. */
export interface ResolvedEventBusOptions {
  mode: EventBusMode;
  internal: ResolvedInternalOptions;
  external: ResolvedExternalOptions;
  bridgeTopics: string[];
}

export const defaultEventBusOptions = {
  mode: 'internal',
  internal: {
    host: '127.0.0.1',
    port: 1883,
    maxPacketBytes: 256 * 1024,
    maxClients: 1000,
    publishesPerSecond: 1000,
    publishBurst: 2000,
    maxRetained: 1000,
    maxRetainedBytes: 8 * 1024 * 1024,
  },
  external: {
    url: 'mqtt://127.0.0.1:1883',
    keepaliveSeconds: 60,
    reconnectBaseMs: 1000,
    reconnectMaxMs: 30_000,
    maxPacketBytes: 256 * 1024,
    maxQueued: 1000,
    connectTimeoutMs: 10_000,
  },
  bridgeTopics: ['$hw/events/#'],
} satisfies ResolvedEventBusOptions;
