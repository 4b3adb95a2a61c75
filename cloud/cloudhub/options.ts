/**
 * @module
 * CloudHub options, with every default in one place.
 */
import type { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HUB_PATH, Limits } from '../../shared/protocol/index.js';
import { ConfigError } from '../../shared/errors/index.js';
import { isLoopbackHost } from './identity.js';

/**
 * CloudHub's TLS credentials, each as PEM contents or as a file (not both). With a client CA
 * (`ca` or `caFile`) nodes authenticate with a client certificate from it and are named by it
 * (subject `CN=system:node:<name>, O=system:nodes`); CloudHub refuses to start with TLS and no client CA.
 */
export interface CloudHubTlsOptions {
  /** PEM server certificate chain (leaf first, then the CA), as contents. */
  cert?: string;
  /** PEM private key of `cert`, as contents. */
  key?: string;
  /** PEM CA bundle that signs the nodes' client certificates, as contents (e.g. from the `ledge-ca` Secret). */
  ca?: string;
  /** PEM server certificate chain file (instead of `cert`). */
  certFile?: string;
  /** PEM private key file (instead of `key`). */
  keyFile?: string;
  /** PEM CA bundle file of client certificates (instead of `ca`). */
  caFile?: string;
}

/** The PEM contents CloudHub serves with (what {@link CloudHubTlsOptions} resolves to; `CloudHub.setTlsCredentials` replaces them). */
export interface CloudHubTlsCredentials {
  /** PEM server certificate chain, leaf first. */
  cert: string;
  /** PEM private key. */
  key: string;
  /** PEM CA bundle of the nodes' client certificates. */
  ca: string;
}

/**
 * Answers a plain HTTP(S) request to CloudHub's server (no WebSocket upgrade), such as the join
 * endpoint (`/v1/ca.crt`, `/v1/join`). Returns true when it handled the request (it answers `res`
 * itself); false leaves it to CloudHub (426 on the WebSocket path, 404 elsewhere). A client
 * certificate is requested, never required, on these requests.
 */
export type CloudHubHttpHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

/**
 * Which verified node certificates are revoked (issue 13; cloud/revocation's NodeRevocation is
 * one). Asked at each upgrade after the certificate was verified, and by
 * `CloudHub.closeRevokedSessions` for live sessions. Only with TLS: plain ws:// has no certificates.
 */
export interface RevocationCheck {
  /** False while the revocations are not known yet (CloudCore starting): upgrades are answered 503 and the node retries. */
  loaded(): boolean;
  /** Why `cert` (verified, naming `node`) is refused, or undefined when it is not. */
  refusal(node: string, cert: X509Certificate): string | undefined;
}

export interface CloudHubOptions {
  /**
   * Listen address. Default '127.0.0.1'; other machines reach CloudHub with 0.0.0.0 (or a
   * specific address), which requires TLS with a client CA (plain ws:// is loopback only).
   */
  host: string;
  /** Listen port; 0 picks a free one. Default 10000 (KubeEdge's). */
  port: number;
  /** WebSocket path. Default '/v1/edge'. */
  path: string;
  /** Server certificate and client CA (wss://, nodes named by their client certificate). Required unless `insecurePlainWebSocket`. */
  tls?: CloudHubTlsOptions;
  /**
   * Serve plain ws:// without authentication: each node names itself (x-ledge-node-name), so
   * anyone who reaches the port can act as any node. Only without `tls` and only on a loopback
   * `host` (CloudHub refuses to start otherwise); development and tests only, logged loudly.
   * Default false.
   */
  insecurePlainWebSocket: boolean;
  /** Plain HTTP(S) requests (no upgrade) go here first (the join endpoint). Default none. */
  httpHandler?: CloudHubHttpHandler;
  /**
   * Revoked nodes (TLS only): a certificate it refuses is answered 401 with its reason at the
   * upgrade (logged once per node and `logWindowMs`); `closeRevokedSessions` closes live ones.
   * Default none (no node is revoked).
   */
  revocation?: RevocationCheck;
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
  insecurePlainWebSocket: false,
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

/** How nodes reach CloudHub: mutual TLS (identity from the client certificate), or plain ws:// on loopback (identity self-declared). */
export type HubTransport = 'mtls' | 'plain';

const TLS_FLAGS = '--tls-cert-file, --tls-key-file and --tls-ca-file (config: hub.tls.certFile, keyFile, caFile)';

/**
 * Checks that CloudHub can tell which node connects and returns how: TLS with a server certificate
 * and a client CA, or (only when asked for, without TLS, on a loopback address) plain ws://.
 * Throws ConfigError saying what to do otherwise.
 */
export function hubTransport(o: Pick<CloudHubOptions, 'tls' | 'insecurePlainWebSocket' | 'host'>): HubTransport {
  if (o.insecurePlainWebSocket) {
    if (o.tls) throw new ConfigError('--insecure-plain-websocket (hub.insecurePlainWebSocket) and TLS (hub.tls) exclude each other: drop one');
    if (!isLoopbackHost(o.host)) {
      throw new ConfigError(
        `--insecure-plain-websocket serves unauthenticated ws:// and only on a loopback address, but the bind address is ${o.host}: listen on 127.0.0.1, or serve other machines with TLS and client certificates (${TLS_FLAGS})`,
      );
    }
    return 'plain';
  }
  const t = o.tls;
  if (!t) {
    throw new ConfigError(
      `CloudHub has no TLS credentials, so it cannot tell which node connects: give its serving certificate and the CA of the nodes' client certificates (${TLS_FLAGS}), or for development on this machine only, --insecure-plain-websocket (nodes name themselves)`,
    );
  }
  const one = (what: string, pem: string | undefined, file: string | undefined, field: string) => {
    if (pem !== undefined && file !== undefined) throw new ConfigError(`hub.tls: give the ${what} as ${field} or ${field}File, not both`);
    if (!pem && !file) return false;
    return true;
  };
  if (!one('server certificate', t.cert, t.certFile, 'cert') || !one('server private key', t.key, t.keyFile, 'key')) {
    throw new ConfigError('hub.tls: the server certificate and its private key must be given together (--tls-cert-file and --tls-key-file)');
  }
  if (!one('client CA', t.ca, t.caFile, 'ca')) {
    throw new ConfigError(
      "CloudHub has a serving certificate but no client CA (--tls-ca-file, hub.tls.caFile), so it cannot tell which node connects: give the CA that signs the nodes' client certificates",
    );
  }
  return 'mtls';
}
