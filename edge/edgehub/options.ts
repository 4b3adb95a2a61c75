/**
 * @module
 * EdgeHub options and defaults.
 */
import type { Stream } from '../../shared/stream/index.js';
import type WebSocket from 'ws';
import { HUB_PATH, Limits } from '../../shared/protocol/index.js';
import { ConfigError } from '../../shared/errors/index.js';

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
  /**
   * PEM client certificate (`CN=system:node:<nodeName>, O=system:nodes`, as `ledge join` writes it):
   * the node's identity toward CloudHub. Required with a wss:// endpoint, with `keyFile`. Read
   * again at every connect attempt (a renewed certificate is used from the next connection). Default none.
   */
  certFile?: string;
  /** PEM private key of `certFile`. Default none. */
  keyFile?: string;
  /** Skip certificate verification (development only; logged loudly). */
  insecureSkipTlsVerify: boolean;
  /** Which edge module handles each downstream group. */
  downstreamRoutes: Record<string, string>;
  /** How long a module may take to make a downstream message durable. Default 30000. */
  handleTimeoutMs: number;
  /** Opens the WebSocket. Default: `new WebSocket(url, protocol, options)`. */
  createSocket?: SocketFactory;
  /**
   * When the client certificate is renewed (POST /v1/renew, edge/edgehub/renewal.ts), as a fraction
   * of its lifetime (notBefore → notAfter). Needs `certFile` and `caFile`. Default 0.8.
   */
  renewAtFraction: number;
  /** Random spread of the renewal time, ± this fraction of the lifetime (nodes joined together do not renew together). Default 0.05. */
  renewJitterFraction: number;
  /** First retry delay cap after a failed renewal, ms; doubles per failure (full jitter), never past half the time left. Default 10000. */
  renewRetryBaseMs: number;
  /** Largest retry delay after failed renewals, ms. Default 600000 (10 min). */
  renewRetryMaxMs: number;
  /** Deadline of one renewal exchange with CloudHub (TCP, TLS, request, answer), ms. Default 30000. */
  renewTimeoutMs: number;
}

/** Defaults of the certificate renewal (part of {@link defaultEdgeHubOptions}). */
export const defaultRenewalOptions = {
  renewAtFraction: 0.8,
  renewJitterFraction: 0.05,
  renewRetryBaseMs: 10_000,
  renewRetryMaxMs: 600_000,
  renewTimeoutMs: 30_000,
} as const satisfies Partial<EdgeHubOptions>;

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
  ...defaultRenewalOptions,
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
  checkRenewalOptions(o);
  if (!o.certFile !== !o.keyFile) throw new ConfigError('the client certificate and its key go together: set both hub.certFile and hub.keyFile (--cert-file, --key-file)');
  const tlsEndpoint = o.endpoints.find((e) => e.startsWith('wss:'));
  if (tlsEndpoint && !o.certFile) {
    throw new ConfigError(
      `${tlsEndpoint} needs this node's client certificate (CloudHub takes the node's identity from it): set hub.certFile and hub.keyFile (--cert-file, --key-file), as "ledge join" writes them`,
    );
  }
  return o;
}

/** The renewal's numbers make sense (TypeError otherwise): the renewal time with its jitter stays inside the lifetime. */
export function checkRenewalOptions(o: Pick<EdgeHubOptions, keyof typeof defaultRenewalOptions>): void {
  const { renewAtFraction: at, renewJitterFraction: jitter } = o;
  if (!(jitter >= 0) || !(at - jitter > 0) || !(at + jitter < 1)) {
    throw new TypeError(`renewAtFraction ± renewJitterFraction (${at} ± ${jitter}) must stay strictly between 0 and 1 of the certificate's lifetime`);
  }
  for (const k of ['renewRetryBaseMs', 'renewRetryMaxMs', 'renewTimeoutMs'] as const) {
    if (!Number.isFinite(o[k]) || o[k] <= 0) throw new TypeError(`${k} must be a positive number of ms, got ${o[k]}`);
  }
}
