/**
 * @module
 * Assembles the control plane: store (WAL) → registry/REST → HTTP(S) → controllers,
 * plus credentials and the kubeconfig file.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
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
  /** Open watch connections (for diagnostics and tests). */
  activeWatches(): number;
  close(): Promise<void>;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return isIP(host) === 6 ? `[${host}]` : host;
}

function writeKubeconfig(path: string, server: string, caCertPem: string, token: string): void {
  const cluster: Record<string, string> = { server };
  if (caCertPem) cluster['certificate-authority-data'] = Buffer.from(caCertPem).toString('base64');
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'ledge', cluster }],
    users: [{ name: 'ledge-admin', user: token ? { token } : {} }],
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

  const pki = tls ? await loadOrCreatePki(dataDir, [host]) : undefined;
  let address = '';
  const api = new HttpApi({
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
  writeKubeconfig(kubeconfigPath, url, pki?.caCertPem ?? '', pki?.token ?? '');
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
    activeWatches: () => api.activeWatches,
    close: () =>
      (closing ??= (async () => {
        controllers.stop();
        nodeControllers.stop();
        api.closeWatches();
        const closed = new Promise<void>((r) => server.close(() => r()));
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 200).unref();
        await closed;
        await store.close();
      })()),
  };
}
