/**
 * @module
 * CloudCore entry point. Wires the modules in one explicit list and runs until
 * SIGTERM/SIGINT, draining in-flight work.
 */
import { join } from 'node:path';
import { Beehive } from '../shared/beehive/index.js';
import { startApiServer, type ApiServerHandle } from './apiserver/index.js';
import { createLogger, type Logger } from '../shared/log/index.js';
import { handleStopSignals, installCrashHandlers, loadCommandConfig } from '../shared/runtime/index.js';
import { ConfigError, errorCode, errorMessage } from '../shared/errors/index.js';
import type { Module } from '../shared/beehive/index.js';
import { createCloudHub, type CloudHub, type CloudHubOptions, type AckRecorder } from './cloudhub/index.js';
import { createEdgeController } from './edgecontroller/index.js';
import { SyncController } from './synccontroller/index.js';
import { LeaderElector, defaultIdentity } from './leaderelection/index.js';
import { loadKube, loadKubeConfig } from './kube/index.js';
import { cloudConfigSpec, cloudUsage, type CloudConfig } from './config.js';

export interface CloudCore {
  bee: Beehive;
  hub: CloudHub;
  sync?: SyncController;
  /** The embedded control plane, with `local: true`. */
  apiserver?: ApiServerHandle;
  stop(): Promise<void>;
}

export interface CloudCoreExtras {
  /** Extra modules (embedding, test harnesses, later controllers). */
  modules?: Module[];
  ackRecorder?: AckRecorder;
  hubOverrides?: Partial<CloudHubOptions>;
}

export function hubOptionsFrom(config: CloudConfig): Partial<CloudHubOptions> {
  const { tls, ...rest } = config.hub;
  if ((tls?.certFile && !tls.keyFile) || (!tls?.certFile && tls?.keyFile)) {
    throw new ConfigError('config fields "hub.tls.certFile" and "hub.tls.keyFile" must be set together');
  }
  return {
    ...rest,
    ...(tls?.certFile && tls.keyFile ? { tls: { certFile: tls.certFile, keyFile: tls.keyFile, ...(tls.caFile ? { caFile: tls.caFile } : {}) } } : {}),
  };
}

/** Starts CloudCore with a loaded config; resolves once CloudHub listens. */
export async function startCloudCore(config: CloudConfig, log: Logger, extras: CloudCoreExtras = {}): Promise<CloudCore> {
  // Local mode: the control plane runs in this process, and CloudCore uses it over HTTP like any cluster.
  const apiserver = config.local
    ? await startApiServer({
        dataDir: join(config.dataDir, 'apiserver'),
        port: config.apiserver.port,
        kubeconfigPath: config.apiserver.kubeconfig ?? join(config.dataDir, 'kubeconfig'),
        log: log.child({ module: 'apiserver' }),
      })
    : undefined;
  if (apiserver) log.info('local control plane started', { url: apiserver.url, kubeconfig: apiserver.kubeconfigPath });
  const kubeconfigPath = apiserver?.kubeconfigPath ?? config.kubeconfig;
  const wantsApi = Boolean(kubeconfigPath || process.env.KUBERNETES_SERVICE_HOST);
  if (wantsApi) await loadKube();
  const kc = wantsApi ? loadKubeConfig(kubeconfigPath) : undefined;
  if (!kc) log.warn('no Kubernetes API configured (--kubeconfig, --local or in-cluster): controllers are off, CloudHub only', { code: 'LEDGE_ERR_CONFIG' });
  const bee = new Beehive({ log });
  let hub: CloudHub | undefined;
  const elector = kc
    ? new LeaderElector(kc, { namespace: config.leaderElection.namespace, name: 'ledge-cloudcore', identity: config.leaderElection.identity ?? defaultIdentity(), leaseDurationMs: config.leaderElection.leaseDurationMs, renewIntervalMs: config.leaderElection.renewIntervalMs }, log.child({ module: 'leaderelection' }))
    : undefined;
  const sync = kc
    ? new SyncController(kc, { reconcileIntervalMs: config.controllers.reconcileIntervalMs, isLeader: () => elector?.isLeader() ?? false, isConnected: (n) => hub?.isConnected(n) ?? false, connectedNodes: () => hub?.connectedNodes() ?? [] }, log.child({ module: 'synccontroller' }))
    : undefined;
  hub = createCloudHub(
    { ...hubOptionsFrom(config), ...extras.hubOverrides },
    {
      log: log.child({ module: 'cloudhub' }),
      ...(extras.ackRecorder ?? sync ? { ackRecorder: (extras.ackRecorder ?? sync)! } : {}),
      events: { connected: (node) => sync?.nodeConnected(node), disconnected: (node) => sync?.nodeDisconnected(node) },
    },
  );
  bee.register(hub);
  const extra = extras.modules ?? [];
  // Built-in modules, unless the embedder supplies its own of the same name.
  const builtin: Module[] = [createEdgeController(kc, sync, log.child({ module: 'edgecontroller' }))];
  if (sync) builtin.push(sync);
  if (elector) builtin.push(elector);
  for (const m of builtin) if (!extra.some((e) => e.name === m.name)) bee.register(m);
  for (const m of extra) bee.register(m);
  bee.start();
  await hub.ready();
  return {
    bee,
    hub,
    ...(sync ? { sync } : {}),
    ...(apiserver ? { apiserver } : {}),
    stop: async () => {
      await bee.stop();
      await apiserver?.close();
    },
  };
}

/** `ledge cloud`: parses flags, starts, and handles signals. */
export async function runCloud(argv: string[]): Promise<void> {
  const config = await loadCommandConfig<CloudConfig>('cloud', cloudConfigSpec, cloudUsage, argv);
  if (!config) return;
  const log = createLogger({ level: config.log.level, ...(config.log.format ? { format: config.log.format } : {}) });
  const crash = installCrashHandlers(log);
  const untilStopSignal = handleStopSignals(log);
  let core: CloudCore;
  try {
    core = await startCloudCore(config, log);
  } catch (err) {
    log.error(`cloudcore cannot start: ${errorMessage(err)}`, { code: errorCode(err) });
    process.exitCode = err instanceof ConfigError || err instanceof TypeError ? 2 : 1;
    return;
  }
  // After a fatal error: close sessions and release the leader lease, best effort, before exiting.
  crash.setDrain(core.stop);
  log.info('cloudcore started', { url: core.hub.url, pid: process.pid });
  await untilStopSignal(core.stop);
  log.info('cloudcore stopped');
}
