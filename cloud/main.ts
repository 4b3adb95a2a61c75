/**
 * @module
 * CloudCore entry point. Wires the modules in one explicit list and runs until
 * SIGTERM/SIGINT, draining in-flight work.
 */
import { join } from 'node:path';
import { Beehive } from '../shared/beehive/index.js';
import { startApiServer, type ApiServerHandle } from './apiserver/index.js';
import { createLogger, type Logger } from '../shared/log/index.js';
import { installCrashHandlers, loadCommandConfig, runUntilSignal } from '../shared/runtime/index.js';
import { ConfigError, errorCode, errorMessage } from '../shared/errors/index.js';
import type { Module } from '../shared/beehive/index.js';
import { createCloudHub, type CloudHub, type CloudHubOptions, type AckRecorder } from './cloudhub/index.js';
import { createEdgeController } from './edgecontroller/index.js';
import { cloudConfigSpec, cloudUsage, type CloudConfig } from './config.js';

export interface CloudCore {
  bee: Beehive;
  hub: CloudHub;
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
  const bee = new Beehive({ log });
  const hub = createCloudHub({ ...hubOptionsFrom(config), ...extras.hubOverrides }, { log: log.child({ module: 'cloudhub' }), ...(extras.ackRecorder ? { ackRecorder: extras.ackRecorder } : {}) });
  bee.register(hub);
  const extra = extras.modules ?? [];
  // Built-in modules, unless the embedder supplies its own of the same name.
  for (const m of [createEdgeController()]) if (!extra.some((e) => e.name === m.name)) bee.register(m);
  for (const m of extra) bee.register(m);
  bee.start();
  await hub.ready();
  return {
    bee,
    hub,
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
  installCrashHandlers(log);
  let core: CloudCore;
  try {
    core = await startCloudCore(config, log);
  } catch (err) {
    log.error(`cloudcore cannot start: ${errorMessage(err)}`, { code: errorCode(err) });
    process.exitCode = err instanceof ConfigError || err instanceof TypeError ? 2 : 1;
    return;
  }
  log.info('cloudcore started', { url: core.hub.url, pid: process.pid });
  await runUntilSignal(log, core.stop);
  log.info('cloudcore stopped');
}
