/**
 * @module
 * EdgeCore entry point (bundled into dist/edgecore.js). Wires the modules in one
 * explicit list (KubeEdge's registerModules) and runs until SIGTERM/SIGINT.
 */
import { mkdirSync } from 'node:fs';
import { Beehive } from '../shared/beehive/index.js';
import { createLogger, type Logger } from '../shared/log/index.js';
import { formatHelp, loadConfig } from '../shared/config/index.js';
import { errorCode, errorMessage, ConfigError, StorageError } from '../shared/errors/index.js';
import { createEdgeHub } from './edgehub/index.js';
import { createMetaManager } from './metamanager/index.js';
import { createNodeStatusReporter } from './nodestatus/index.js';
import { edgeConfigSpec, edgeUsage, type EdgeConfig } from './config.js';

export interface EdgeCore {
  bee: Beehive;
  stop(): Promise<void>;
}

/** Starts EdgeCore with a loaded config. */
export function startEdgeCore(config: EdgeConfig, log: Logger): EdgeCore {
  try {
    mkdirSync(config.dataDir, { recursive: true });
  } catch (err) {
    throw new StorageError(`cannot create data directory ${config.dataDir}: ${errorMessage(err)}`, { cause: err });
  }
  const bee = new Beehive({ log });
  bee.register(
    createEdgeHub(
      {
        endpoints: config.cloud,
        nodeName: config.nodeName,
        dataDir: config.dataDir,
        ...config.hub,
      },
      log.child({ module: 'edgehub' }),
    ),
  );
  bee.register(createMetaManager({ dataDir: config.dataDir, compactAfter: config.meta.compactAfter }, log.child({ module: 'metamanager' })));
  bee.register(createNodeStatusReporter({ nodeName: config.nodeName, intervalMs: config.nodeStatus.intervalMs }));
  bee.start();
  return { bee, stop: () => bee.stop() };
}

/** `ledge edge` / `node edgecore.js`: parses flags, starts, and handles signals. */
export async function runEdge(argv: string[]): Promise<void> {
  let loaded;
  try {
    loaded = await loadConfig<EdgeConfig>(edgeConfigSpec, { argv });
  } catch (err) {
    process.stderr.write(`ledge edge: ${errorMessage(err)}\n`);
    process.exitCode = 2;
    return;
  }
  if (loaded.help) {
    process.stdout.write(formatHelp(edgeUsage, edgeConfigSpec) + '\n');
    return;
  }
  const config = loaded.config;
  const log = createLogger({ level: config.log.level, ...(config.log.format ? { format: config.log.format } : {}) }).child({ node: config.nodeName });
  installCrashHandlers(log);
  let core: EdgeCore;
  try {
    core = startEdgeCore(config, log);
  } catch (err) {
    log.error(`edgecore cannot start: ${errorMessage(err)}`, { code: errorCode(err) });
    process.exitCode = err instanceof ConfigError || err instanceof TypeError ? 2 : 1;
    return;
  }
  log.info('edgecore started', { cloud: config.cloud.join(','), dataDir: config.dataDir, pid: process.pid });
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info(`${sig} received; stopping`);
      core.stop().then(resolve, resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  log.info('edgecore stopped');
}

/** One clear line for anything that escaped a module, instead of a silent half-alive process. */
export function installCrashHandlers(log: Logger): void {
  process.on('unhandledRejection', (reason) => {
    log.error(`unhandled rejection: ${errorMessage(reason)}`, { code: errorCode(reason) });
  });
  process.on('uncaughtException', (err) => {
    log.error(`uncaught exception: ${err.stack ?? err.message}`, { code: errorCode(err) });
    // State may be corrupt: exit and let the supervisor (systemd) restart from the durable store.
    process.exit(70);
  });
}
