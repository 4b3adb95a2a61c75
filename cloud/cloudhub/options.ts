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
  /** Listen address. Default '0.0.0.0'. */
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
  /** Upstream messages per second a node may send before it is throttled. Default 200. */
  upstreamQps: number;
  /** Upstream burst. Default 400. */
  upstreamBurst: number;
  /** Upstream messages of one node handled concurrently; reading pauses beyond. Default 32. */
  maxUpstreamInProgress: number;
  /** How long a cloud module may take to handle an upstream message before the ACK is withheld. Default 30000. */
  upstreamHandleTimeoutMs: number;
  /** Most nodes (connected or with queued messages) this process tracks. Default 20000. */
  maxNodes: number;
  /** Recent upstream message ids remembered per node for de-duplication. Default 1024. */
  dedupeWindow: number;
  /** Which cloud module handles upstream messages of each group. */
  upstreamRoutes: Record<string, string>;
}

export const defaultCloudHubOptions: CloudHubOptions = {
  host: '0.0.0.0',
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
  maxUpstreamInProgress: 32,
  upstreamHandleTimeoutMs: 30_000,
  maxNodes: 20_000,
  dedupeWindow: 1024,
  upstreamRoutes: { resource: 'edgecontroller', meta: 'edgecontroller', twin: 'devicecontroller' },
};

/** Merges and checks options; bad combinations throw TypeError at construction (ws's pattern). */
export function resolveCloudHubOptions(partial: Partial<CloudHubOptions> = {}): CloudHubOptions {
  const o: CloudHubOptions = { ...defaultCloudHubOptions, ...partial };
  if (o.heartbeatTimeoutMs <= o.heartbeatIntervalMs) {
    throw new TypeError(`heartbeatTimeoutMs (${o.heartbeatTimeoutMs}) must be greater than heartbeatIntervalMs (${o.heartbeatIntervalMs})`);
  }
  if (o.maxAckTimeoutMs < o.ackTimeoutMs) throw new TypeError('maxAckTimeoutMs must be ≥ ackTimeoutMs');
  if (o.upstreamBurst < 1 || o.upstreamQps <= 0) throw new TypeError('upstreamQps and upstreamBurst must be positive');
  return o;
}
