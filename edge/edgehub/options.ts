/**
 * @module
 * EdgeHub options and defaults.
 */
import type { Stream } from '../../shared/stream/index.js';
import type WebSocket from 'ws';
import { HUB_PATH, Limits } from '../../shared/protocol/index.js';

/** Opens the link's WebSocket (tests substitute a fake socket). */
export type SocketFactory = (url: string, protocol: string, options: WebSocket.ClientOptions & { closeTimeout?: number }) => WebSocket;

export interface EdgeHubOptions {
  /** CloudHub endpoints (ws:// or wss:// URLs), tried in order; the next on failure. */
  endpoints: string[];
  nodeName: string;
  /** Directory for the outbox. */
  dataDir: string;
  /** Called after each (re)connection, once the session is up (Edged re-sends its pod statuses). */
  onConnected?: () => void;
  /** Serves a stream the cloud opened (kubectl logs/exec/attach; EdgeStream). Without it, the edge does not offer streams. */
  onStream?: (stream: Stream) => void;
  /** Keepalive interval in ms. Default 15000 (KubeEdge's heartbeat). */
  heartbeatIntervalMs: number;
  /** Reconnect when nothing arrived from the cloud for this long. Default 45000. */
  heartbeatTimeoutMs: number;
  /** First reconnect delay cap in ms. Default 500. */
  reconnectBaseMs: number;
  /** Reconnect delay cap in ms (full jitter below it). Default 30000. */
  reconnectMaxMs: number;
  /**
   * Deadline in ms for one connect attempt, from the start of the attempt to the open WebSocket
   * (TCP, TLS and the HTTP upgrade together; absolute, not reset by incoming bytes). Default 30000.
   */
  handshakeTimeoutMs: number;
  /**
   * After the edge closes the link (protocol error, oversized frame), how long the peer has to
   * answer the close before the socket is destroyed. Default 5000 (ws' own default is 30 s).
   */
  closeTimeoutMs: number;
  /** First ACK timeout for upstream messages; doubles per retry. Default 5000. */
  ackTimeoutMs: number;
  maxAckTimeoutMs: number;
  /** Largest frame accepted or sent. Default 1 MiB. */
  maxFrameBytes: number;
  /** Upstream messages in flight. Default 32. */
  maxInFlight: number;
  /** Undelivered upstream messages kept. Default 100000. */
  maxOutboxMessages: number;
  /** Downstream messages handled concurrently before reading pauses. Default 64. */
  maxDownstreamInProgress: number;
  /** PEM CA bundle to verify CloudHub's certificate (wss://). Default: system CAs. */
  caFile?: string;
  /** Skip certificate verification (development only; logged loudly). */
  insecureSkipTlsVerify: boolean;
  /** Which edge module handles each downstream group. */
  downstreamRoutes: Record<string, string>;
  /** How long a module may take to make a downstream message durable. Default 30000. */
  handleTimeoutMs: number;
  /** Opens the WebSocket. Default: `new WebSocket(url, protocol, options)`. */
  createSocket?: SocketFactory;
}

export const defaultEdgeHubOptions: Omit<EdgeHubOptions, 'endpoints' | 'nodeName' | 'dataDir'> = {
  heartbeatIntervalMs: 15_000,
  heartbeatTimeoutMs: 45_000,
  reconnectBaseMs: 500,
  reconnectMaxMs: 30_000,
  handshakeTimeoutMs: 30_000,
  closeTimeoutMs: 5_000,
  ackTimeoutMs: 5_000,
  maxAckTimeoutMs: 60_000,
  maxFrameBytes: Limits.maxFrameBytes,
  maxInFlight: 32,
  maxOutboxMessages: 100_000,
  maxDownstreamInProgress: 64,
  insecureSkipTlsVerify: false,
  downstreamRoutes: { resource: 'metamanager', meta: 'metamanager', twin: 'twin', bus: 'eventbus' },
  handleTimeoutMs: 30_000,
};

export function resolveEdgeHubOptions(partial: Partial<EdgeHubOptions> & Pick<EdgeHubOptions, 'endpoints' | 'nodeName' | 'dataDir'>): EdgeHubOptions {
  const o: EdgeHubOptions = { ...defaultEdgeHubOptions, ...partial };
  if (o.endpoints.length === 0) throw new TypeError('at least one CloudHub endpoint is required');
  o.endpoints = o.endpoints.map((e) => {
    let u: URL;
    try {
      u = new URL(e);
    } catch {
      throw new TypeError(`endpoint "${e}" is not a URL (expected ws://host:port or wss://host:port)`);
    }
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`endpoint "${e}" must use ws:// or wss://`);
    if (u.pathname === '/' || u.pathname === '') u.pathname = HUB_PATH;
    return u.toString();
  });
  if (o.heartbeatTimeoutMs <= o.heartbeatIntervalMs) throw new TypeError('heartbeatTimeoutMs must be greater than heartbeatIntervalMs');
  return o;
}
