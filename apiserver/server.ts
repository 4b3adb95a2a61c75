/**
 * @module
 * Assembles the control plane: store (WAL) → registry/REST → HTTP(S) → controllers,
 * plus credentials, the kubeconfig file and the node proxy (pods/log, exec, attach,
 * portforward to the node's kubelet endpoint).
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import { stringify as toYaml } from 'yaml';
import { ConfigError } from '../shared/errors/index.js';
import { silentLogger, type Logger } from '../shared/log/index.js';
import { lockDataDir } from '../shared/lock/index.js';
import { Authenticator } from './authn.js';
import { Controllers } from './controllers.js';
import { NodeControllers } from './nodelifecycle.js';
import type { Clock } from './timerqueue.js';
import { HttpApi } from './http.js';
import { NODE_ADDRESS_TYPES, NodeProxy } from './nodeproxy.js';
import { loadOrCreatePki } from './pki.js';
import { Registry } from './registry.js';
import { Rest } from './rest.js';
import { Store } from './store.js';
import { defaultApiServerOptions } from './options.js';
import type { WatchBufferLimits } from './watch-buffer.js';

export interface ApiServerOptions {
  /** Where the WAL, credentials and (by default) the kubeconfig live. */
  dataDir: string;
  /** TCP port; 0 picks a free one. Default 6443. */
  port?: number;
  /** Bind address. Default 127.0.0.1. */
  host?: string;
  /** HTTPS with a generated CA and bearer-token / client-certificate auth (default true). false = plain HTTP without authentication, loopback only. */
  tls?: boolean;
  /** Where to write the kubeconfig. Default `<dataDir>/kubeconfig`. */
  kubeconfigPath?: string;
  /**
   * Node lifecycle, taint eviction, pod GC and DefaultTolerationSeconds admission, as
   * kube-controller-manager / kube-apiserver 1.35 (defaults: `defaultApiServerOptions`,
   * docs/apiserver.md "Node lifecycle"). `nodeLeaseTimeoutMs` is --node-monitor-grace-period (50 s).
   */
  nodeLeaseTimeoutMs?: number;
  nodeMonitorPeriodMs?: number;
  nodeStartupGracePeriodMs?: number;
  nodeEvictionRate?: number;
  secondaryNodeEvictionRate?: number;
  largeClusterSizeThreshold?: number;
  unhealthyZoneThreshold?: number;
  defaultNotReadyTolerationSeconds?: number;
  defaultUnreachableTolerationSeconds?: number;
  podGcPeriodMs?: number;
  podGcQuarantineMs?: number;
  terminatedPodGcThreshold?: number;
  /** The node controllers' clock (tests). Default: performance.now / Date.now / setTimeout. */
  clock?: Clock;
  log?: Logger;
  /** Interval of BOOKMARK events on watches that allow them. Default 30000. */
  bookmarkIntervalMs?: number;
  /** Durable events kept for watch resumption (older → 410 Gone). Default 10000. */
  watchHistorySize?: number;
  /** WAL compaction threshold (records beyond 2× live objects). Default 20000. */
  compactAfterRecords?: number;
  /** Bytes (JSON) of the events kept for watch resumption (older → 410 Gone). Default 64 MiB. */
  watchHistoryBytes?: number;
  /** WAL size-based compaction: rewrite once it exceeds max(this, 2 × the live data). Default 64 MiB. */
  compactMinBytes?: number;
  /** Each watcher's backlog bounds; a watcher over them for graceMs (or 4× over) is cut off. */
  watchBuffer?: Partial<WatchBufferLimits>;
  /**
   * Node proxy (pods/log, exec, attach, portforward → the node's kubelet endpoint), as
   * kube-apiserver's --kubelet-* flags (defaults: `defaultApiServerOptions`): the Node address
   * types dialed, first present wins; the port when a Node has no kubeletEndpoint port; a CA
   * file verifying the kubelet's serving certificate ('' = not verified); the connect bound, ms.
   */
  kubeletPreferredAddressTypes?: readonly string[];
  kubeletPort?: number;
  kubeletCertificateAuthority?: string;
  kubeletTimeoutMs?: number;
}

export interface ApiServerHandle {
  /** Base URL, e.g. https://127.0.0.1:6443 */
  url: string;
  port: number;
  host: string;
  kubeconfigPath: string;
  /** Bearer token ('' when tls is false: no authentication). */
  token: string;
  /** PEM of the CA that signed the serving certificate ('' when tls is false). */
  caCertPem: string;
  /** Admin client certificate and key (O=system:masters), an alternative to the token. */
  clientCertPem: string;
  clientKeyPem: string;
  /**
   * Path of the CA certificate (`<dataDir>/pki/ca.crt`) that signed the kubelet client
   * certificate (and, with tls, the serving and admin certificates): a kubelet endpoint
   * verifies the apiserver's client certificate with it. Generated even when tls is false.
   */
  caFile: string;
  /** The client certificate and key the node proxy presents to kubelets (CN=kube-apiserver-kubelet-client, O=system:masters). */
  kubeletClientCertFile: string;
  kubeletClientKeyFile: string;
  /** Open watch connections (for diagnostics and tests). */
  activeWatches(): number;
  close(): Promise<void>;
}

/** The preferred node address types, each one kube-apiserver knows (ConfigError otherwise). */
function addressTypes(types: readonly string[]): string[] {
  const known: readonly string[] = NODE_ADDRESS_TYPES;
  const bad = types.filter((t) => !known.includes(t));
  if (bad.length || types.length === 0) {
    throw new ConfigError(`kubeletPreferredAddressTypes: ${bad.length ? `unknown address type(s) ${bad.join(', ')}` : 'empty'}; known: ${NODE_ADDRESS_TYPES.join(', ')}`);
  }
  return [...types];
}

/** The kubelet CA option: '' = the kubelet's serving certificate is not verified. */
function kubeletCa(file: string): { kubeletCaPem?: string } {
  if (!file) return {};
  try {
    return { kubeletCaPem: readFileSync(file, 'utf8') };
  } catch (err) {
    throw new ConfigError(`kubeletCertificateAuthority: cannot read ${file}: ${(err as Error).message}`);
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return isIP(host) === 6 ? `[${host}]` : host;
}

/**
 * The admin kubeconfig: the token, and the admin client certificate too (`ledge logs`/`ledge exec`
 * present it to CloudStream, which authenticates client certificates only).
 */
function writeKubeconfig(path: string, server: string, caCertPem: string, token: string, client?: { certPem: string; keyPem: string }): void {
  const cluster: Record<string, string> = { server };
  if (caCertPem) cluster['certificate-authority-data'] = Buffer.from(caCertPem).toString('base64');
  const user: Record<string, string> = token ? { token } : {};
  if (client?.certPem && client.keyPem) {
    user['client-certificate-data'] = Buffer.from(client.certPem).toString('base64');
    user['client-key-data'] = Buffer.from(client.keyPem).toString('base64');
  }
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'ledge', cluster }],
    users: [{ name: 'ledge-admin', user }],
    contexts: [{ name: 'ledge', context: { cluster: 'ledge', user: 'ledge-admin', namespace: 'default' } }],
    'current-context': 'ledge',
    preferences: {},
  };
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, toYaml(doc), { mode: 0o600 });
  renameSync(tmp, path);
}

/**
 * Starts the control plane on its data directory, which it locks first (shared/lock): a
 * second server on the same directory fails with DataDirLockedError; released on close().
 */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServerHandle> {
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const log = (options.log ?? silentLogger).child({ module: 'apiserver' });
  const lock = lockDataDir(dataDir, { owner: 'apiserver', log });
  try {
    const h = await startLocked(options);
    return { ...h, close: () => h.close().finally(() => lock.release()) };
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function startLocked(options: ApiServerOptions): Promise<ApiServerHandle> {
  const log = (options.log ?? silentLogger).child({ module: 'apiserver' });
  const host = options.host ?? defaultApiServerOptions.host;
  const tls = options.tls ?? defaultApiServerOptions.tls;
  const dataDir = resolve(options.dataDir);
  if (!tls && !isLoopback(host)) throw new ConfigError(`plain HTTP (no TLS, no authentication) is only allowed on a loopback address, not ${host}`);
  mkdirSync(dataDir, { recursive: true });
  const kubeconfigPath = resolve(options.kubeconfigPath ?? join(dataDir, 'kubeconfig'));

  const store = await Store.open({
    dataDir,
    log,
    ...(options.watchHistorySize !== undefined ? { historySize: options.watchHistorySize } : {}),
    ...(options.compactAfterRecords !== undefined ? { compactAfterRecords: options.compactAfterRecords } : {}),
    ...(options.watchHistoryBytes !== undefined ? { historyBytes: options.watchHistoryBytes } : {}),
    ...(options.compactMinBytes !== undefined ? { compactMinBytes: options.compactMinBytes } : {}),
  });
  const registry = new Registry();
  const d = defaultApiServerOptions;
  const rest = new Rest(store, registry, log, {
    defaultNotReadyTolerationSeconds: options.defaultNotReadyTolerationSeconds ?? d.defaultNotReadyTolerationSeconds,
    defaultUnreachableTolerationSeconds: options.defaultUnreachableTolerationSeconds ?? d.defaultUnreachableTolerationSeconds,
  });
  await rest.bootstrap();

  // The credentials are made even without tls: the node proxy presents the kubelet client certificate.
  const credentials = await loadOrCreatePki(dataDir, [host]);
  const pki = tls ? credentials : undefined;
  const nodeProxy = new NodeProxy({
    store,
    log: log.child({ component: 'nodeproxy' }),
    preferredAddressTypes: addressTypes(options.kubeletPreferredAddressTypes ?? d.kubeletPreferredAddressTypes),
    kubeletPort: options.kubeletPort ?? d.kubeletPort,
    connectTimeoutMs: options.kubeletTimeoutMs ?? d.kubeletTimeoutMs,
    clientCertPem: credentials.kubeletClientCertPem,
    clientKeyPem: credentials.kubeletClientKeyPem,
    ...kubeletCa(options.kubeletCertificateAuthority ?? d.kubeletCertificateAuthority),
  });
  let address = '';
  const api = new HttpApi({
    nodeProxy,
    rest,
    log,
    authenticator: new Authenticator(pki ? { token: pki.token, clientCaPem: pki.caCertPem } : {}),
    bookmarkIntervalMs: options.bookmarkIntervalMs ?? 30000,
    ...(options.watchBuffer ? { watchLimits: options.watchBuffer } : {}),
    serverAddress: () => address,
  });
  const server: Server = pki
    ? createHttpsServer({ cert: pki.serverCertPem, key: pki.serverKeyPem, ca: pki.caCertPem, requestCert: true, rejectUnauthorized: false }, api.handle)
    : createHttpServer(api.handle);
  server.on('upgrade', api.handleUpgrade);
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(options.port ?? defaultApiServerOptions.port, host, () => {
      server.off('error', rej);
      res();
    });
  });
  const port = (server.address() as AddressInfo).port;
  address = `${urlHost(host)}:${port}`;
  const url = `${pki ? 'https' : 'http'}://${address}`;
  writeKubeconfig(kubeconfigPath, url, pki?.caCertPem ?? '', pki?.token ?? '', pki ? { certPem: pki.clientCertPem, keyPem: pki.clientKeyPem } : undefined);
  const controllers = new Controllers({ rest, log });
  const nodeControllers = new NodeControllers({
    rest,
    log: log.child({ controller: 'node' }),
    ...(options.clock ? { clock: options.clock } : {}),
    options: {
      nodeMonitorGracePeriodMs: options.nodeLeaseTimeoutMs ?? d.nodeLeaseTimeoutMs,
      nodeMonitorPeriodMs: options.nodeMonitorPeriodMs ?? d.nodeMonitorPeriodMs,
      nodeStartupGracePeriodMs: options.nodeStartupGracePeriodMs ?? d.nodeStartupGracePeriodMs,
      nodeEvictionRate: options.nodeEvictionRate ?? d.nodeEvictionRate,
      secondaryNodeEvictionRate: options.secondaryNodeEvictionRate ?? d.secondaryNodeEvictionRate,
      largeClusterSizeThreshold: options.largeClusterSizeThreshold ?? d.largeClusterSizeThreshold,
      unhealthyZoneThreshold: options.unhealthyZoneThreshold ?? d.unhealthyZoneThreshold,
      podGcPeriodMs: options.podGcPeriodMs ?? d.podGcPeriodMs,
      podGcQuarantineMs: options.podGcQuarantineMs ?? d.podGcQuarantineMs,
      terminatedPodGcThreshold: options.terminatedPodGcThreshold ?? d.terminatedPodGcThreshold,
    },
  });
  log.debug('apiserver started', { url, dataDir, rv: store.currentRv });

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    host,
    kubeconfigPath,
    token: pki?.token ?? '',
    caCertPem: pki?.caCertPem ?? '',
    clientCertPem: pki?.clientCertPem ?? '',
    clientKeyPem: pki?.clientKeyPem ?? '',
    caFile: credentials.caFile,
    kubeletClientCertFile: credentials.kubeletClientCertFile,
    kubeletClientKeyFile: credentials.kubeletClientKeyFile,
    activeWatches: () => api.activeWatches,
    close: () =>
      (closing ??= (async () => {
        controllers.stop();
        nodeControllers.stop();
        api.closeWatches();
        api.closeUpgrades();
        const closed = new Promise<void>((r) => server.close(() => r()));
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 200).unref();
        await closed;
        await store.close();
      })()),
  };
}
