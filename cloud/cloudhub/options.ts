/**
 * @module
 * CloudHub options, with every default in one place.
 */
import { HUB_PATH, Limits } from '../../shared/protocol/index.js';

export interface CloudHubTlsOptions {
  /** PEM server certificate file. */
  certFile: string;
  /** PEM private key file. */
  keyFile: string;
  /** PEM CA bundle for client certificates (used once client-certificate auth lands). */
  caFile?: string;
}

export interface CloudHubOptions {
  /**
   * Listen address. Default '127.0.0.1': nodes name themselves (x-ledge-node-name) until
   * client certificates land, so listening elsewhere is an explicit choice (a warning is logged).
   */
  host: string;
  /** Listen port; 0 picks a free one. Default 10000 (KubeEdge's). */
  port: number;
  /** WebSocket path. Default '/v1/edge'. */
  path: string;
  /** Server certificate; plain ws:// when absent (development only). */
  tls?: CloudHubTlsOptions;
  /** Ping interval in ms. Default 15000. */
  heartbeatIntervalMs: number;
  /** A session that sent nothing (not even a pong) for this long is closed. Default 45000. */
  heartbeatTimeoutMs: number;
  /** Largest accepted frame in bytes. Default 1 MiB. */
  maxFrameBytes: number;
  /** Per-node queue bound (distinct undelivered messages). Default 10000. */
  maxQueuedPerNode: number;
  /** Unacknowledged messages in flight per node. Default 64. */
  maxInFlightPerNode: number;
  /** First ACK timeout in ms; doubles per retry. Default 5000 (KubeEdge's resend interval). */
  ackTimeoutMs: number;
  /** ACK timeout cap in ms. Default 60000. */
  maxAckTimeoutMs: number;
  /** Socket send-buffer high-water mark in bytes; above it a node's queue pauses. Default 1 MiB. */
  sendHighWaterMark: number;
  /**
   * Frames per second a node may send before reading from it is throttled. Every frame
   * counts (messages, keepalives, unknown operations, duplicates, ACKs that acknowledge
   * nothing in flight, pings, pongs), except an ACK of a message in flight, which only
   * CloudHub's own sends can cause. Default 200.
   */
  upstreamQps: number;
  /** Upstream burst (frames). Default 400. */
  upstreamBurst: number;
  /**
   * Bytes a session may have written and not yet flushed (replies, pongs, downstream
   * frames: ws bufferedAmount) before CloudHub stops reading from it. Default 8 MiB.
   */
  maxUnflushedBytes: number;
  /** A session that stays over `maxUnflushedBytes` this long is closed (1008, LEDGE_ERR_SLOW_PEER). Default 30000. */
  slowPeerTimeoutMs: number;
  /** Upstream messages of one node handled concurrently; reading pauses beyond. Default 32. */
  maxUpstreamInProgress: number;
  /** How long a cloud module may take to handle an upstream message before the ACK is withheld. Default 30000. */
  upstreamHandleTimeoutMs: number;
  /**
   * Most live nodes this process tracks: connected, or with messages queued or being
   * handled. Idle states (see `idleNodeGraceMs`) do not count. Default 20000.
   */
  maxNodes: number;
  /** Recent upstream message ids remembered per node for de-duplication. Default 1024. */
  dedupeWindow: number;
  /**
   * A node without connection, queued messages or upstream work in progress is idle; its
   * state (de-dup ids, rate budget, counters) is kept this long for a quick reconnect, then
   * dropped. Default 120000 (four of EdgeHub's longest reconnect backoffs).
   */
  idleNodeGraceMs: number;
  /** Most idle states kept; beyond, the oldest is dropped at once. Default 4096. */
  maxIdleNodes: number;
  /** De-dup ids an idle state keeps (the newest). Default 64 (twice EdgeHub's 32 upstream in flight). */
  idleDedupeWindow: number;
  /** Repeated warnings of one kind per node (rejected frames, throttling) are summarised per window. Default 10000. */
  logWindowMs: number;
  /** Which cloud module handles upstream messages of each group (Beehive sendSync; the ACK waits for its answer). */
  upstreamRoutes: Record<string, string>;
  /** Modules told over Beehive when a node connects or disconnects (session reports, ./reports.ts). Default none. */
  sessionSubscribers: string[];
}

/**
 * CloudHub's defaults, the one place they are written: `resolveCloudHubOptions` applies
 * them, and `cloud/config.ts` takes the defaults of its `hub.*` fields from here.
 */
export const defaultCloudHubOptions: CloudHubOptions = {
  host: '127.0.0.1',
  port: 10000,
  path: HUB_PATH,
  heartbeatIntervalMs: 15_000,
  heartbeatTimeoutMs: 45_000,
  maxFrameBytes: Limits.maxFrameBytes,
  maxQueuedPerNode: 10_000,
  maxInFlightPerNode: 64,
  ackTimeoutMs: 5_000,
  maxAckTimeoutMs: 60_000,
  sendHighWaterMark: 1024 * 1024,
  upstreamQps: 200,
  upstreamBurst: 400,
  maxUnflushedBytes: 8 * 1024 * 1024,
  slowPeerTimeoutMs: 30_000,
  maxUpstreamInProgress: 32,
  upstreamHandleTimeoutMs: 30_000,
  maxNodes: 20_000,
  dedupeWindow: 1024,
  idleNodeGraceMs: 120_000,
  maxIdleNodes: 4096,
  idleDedupeWindow: 64,
  logWindowMs: 10_000,
  upstreamRoutes: { resource: 'edgecontroller', meta: 'edgecontroller', twin: 'devicecontroller' },
  sessionSubscribers: [],
};

/** Merges and checks options; bad combinations throw TypeError at construction (ws's pattern). */
export function resolveCloudHubOptions(partial: Partial<CloudHubOptions> = {}): CloudHubOptions {
  const o: CloudHubOptions = { ...defaultCloudHubOptions, ...partial };
  if (o.heartbeatTimeoutMs <= o.heartbeatIntervalMs) {
    throw new TypeError(`heartbeatTimeoutMs (${o.heartbeatTimeoutMs}) must be greater than heartbeatIntervalMs (${o.heartbeatIntervalMs})`);
  }
  if (o.maxAckTimeoutMs < o.ackTimeoutMs) throw new TypeError('maxAckTimeoutMs must be ≥ ackTimeoutMs');
  if (o.upstreamBurst < 1 || o.upstreamQps <= 0) throw new TypeError('upstreamQps and upstreamBurst must be positive');
  if (o.maxUnflushedBytes < 1 || o.slowPeerTimeoutMs < 1) throw new TypeError('maxUnflushedBytes and slowPeerTimeoutMs must be positive');
  if (o.idleNodeGraceMs < 0 || o.maxIdleNodes < 0 || o.idleDedupeWindow < 0) throw new TypeError('idleNodeGraceMs, maxIdleNodes and idleDedupeWindow must not be negative');
  return o;
}
