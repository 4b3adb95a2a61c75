/**
 * @module
 * EdgeCore entry point (bundled into dist/edgecore.js). Wires the modules in one
 * explicit list (KubeEdge's registerModules) and runs until SIGTERM/SIGINT.
 */
import { mkdirSync } from 'node:fs';
import { Beehive } from '../shared/beehive/index.js';
import { createLogger, type Logger } from '../shared/log/index.js';
import { handleStopSignals, installCrashHandlers, loadCommandConfig } from '../shared/runtime/index.js';
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
  const config = await loadCommandConfig<EdgeConfig>('edge', edgeConfigSpec, edgeUsage, argv);
  if (!config) return;
  const log = createLogger({ level: config.log.level, ...(config.log.format ? { format: config.log.format } : {}) }).child({ node: config.nodeName });
  installCrashHandlers(log);
  const untilStopSignal = handleStopSignals(log);
  let core: EdgeCore;
  try {
    core = startEdgeCore(config, log);
  } catch (err) {
    log.error(`edgecore cannot start: ${errorMessage(err)}`, { code: errorCode(err) });
    process.exitCode = err instanceof ConfigError || err instanceof TypeError ? 2 : 1;
    return;
  }
  log.info('edgecore started', { cloud: config.cloud.join(','), dataDir: config.dataDir, pid: process.pid });
  await untilStopSignal(core.stop);
  log.info('edgecore stopped');
}
