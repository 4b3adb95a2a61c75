/**
 * @module
 * CloudStream options, with every default in one place (`cloud/config.ts` takes its
 * `stream.*` defaults from here).
 */
import { defaultLeaderElectionOptions } from '../leaderelection/options.js';

export interface CloudStreamOptions {
  /** Serve the kubelet endpoint. Default true. */
  enabled: boolean;
  /**
   * Listen address. Default '127.0.0.1', like CloudHub: what may reach it (kube-apiserver,
   * the other replicas) is a deployment decision, so listening elsewhere is explicit.
   */
  host: string;
  /** Listen port; 0 picks a free one. Default 10350 (KubeEdge's stream port). */
  port: number;
  /**
   * The address written into the edge Node objects (what kube-apiserver dials). Default: `host`
   * when it is a specific address, else the first non-internal IPv4, else 127.0.0.1.
   */
  advertiseAddress?: string;
  /** The port written into the edge Node objects. Default: the listening port (e.g. set it to a Service's port). */
  advertisePort?: number;
  /** How the other replicas reach this one directly. Default `https://<advertiseAddress>:<listening port>`. */
  peerAddress?: string;
  /** PEM serving certificate; without it (and `tlsKeyFile`) a self-signed one is made once in `<dataDir>/cloudstream/`. */
  tlsCertFile?: string;
  /** PEM private key of `tlsCertFile`. */
  tlsKeyFile?: string;
  /**
   * PEM CA bundle that the API server's kubelet client certificate (kube-apiserver
   * `--kubelet-client-certificate`) verifies against. Without it only forwarded requests
   * from other replicas are served, unless `insecureNoClientAuth`.
   */
  clientCaFile?: string;
  /** Serve every request without authentication (development only; a warning is logged). Default false. */
  insecureNoClientAuth: boolean;
  /** Namespace of the per-node stream Leases and of the peer Secret. Default: the leader election's ('kube-system'). */
  namespace: string;
  /** Data directory: the generated serving certificate goes to `<dataDir>/cloudstream/`. */
  dataDir: string;
  /** Streams (local and forwarded) served at once by this replica; more are answered 503. Default 256. */
  maxConcurrent: number;
  /** How long the edge has to accept a stream before the request is answered 504. Default 30000. */
  openTimeoutMs: number;
}

/** CloudStream's defaults, the one place they are written. */
export const defaultCloudStreamOptions = {
  enabled: true,
  host: '127.0.0.1',
  port: 10350,
  insecureNoClientAuth: false,
  namespace: defaultLeaderElectionOptions.namespace,
  maxConcurrent: 256,
  openTimeoutMs: 30_000,
} as const satisfies Partial<CloudStreamOptions>;

/** Merges and checks options; bad combinations throw TypeError at construction. */
export function resolveCloudStreamOptions(partial: Partial<CloudStreamOptions> & { dataDir: string }): CloudStreamOptions {
  const o: CloudStreamOptions = { ...defaultCloudStreamOptions, ...partial };
  if (Boolean(o.tlsCertFile) !== Boolean(o.tlsKeyFile)) throw new TypeError('CloudStream: tlsCertFile and tlsKeyFile must be set together');
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw new TypeError(`CloudStream: port ${o.port} is not a TCP port`);
  if (o.advertisePort !== undefined && (!Number.isInteger(o.advertisePort) || o.advertisePort < 1 || o.advertisePort > 65535))
    throw new TypeError(`CloudStream: advertisePort ${o.advertisePort} is not a TCP port`);
  if (!Number.isInteger(o.maxConcurrent) || o.maxConcurrent < 1) throw new TypeError('CloudStream: maxConcurrent must be a positive integer');
  if (!(o.openTimeoutMs > 0)) throw new TypeError('CloudStream: openTimeoutMs must be positive');
  if (o.peerAddress !== undefined) {
    const u = URL.canParse(o.peerAddress) ? new URL(o.peerAddress) : undefined;
    if (u?.protocol !== 'https:') throw new TypeError(`CloudStream: peerAddress ${o.peerAddress} must be an https:// URL`);
  }
  return o;
}
