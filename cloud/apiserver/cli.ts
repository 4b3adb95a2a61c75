/**
 * @module
 * `ledge apiserver`: configuration spec and the command's entry point.
 */
import { formatHelp, loadConfig, type ConfigSpec } from '../../shared/config/index.js';
import { createLogger, logLevels, type LogLevel } from '../../shared/log/index.js';
import { startApiServer } from './server.js';
import { handleStopSignals } from '../../shared/runtime/index.js';
import { errorCode, errorMessage } from '../../shared/errors/index.js';

export const apiServerConfigSpec: ConfigSpec = {
  dataDir: { type: 'string', flag: 'data-dir', env: 'LEDGE_APISERVER_DATA_DIR', default: '.ledge/apiserver', description: 'directory for the write-ahead log, credentials and kubeconfig' },
  port: { type: 'integer', flag: 'port', env: 'LEDGE_APISERVER_PORT', min: 0, max: 65535, default: 6443, description: 'TCP port (0 = pick a free one)' },
  host: { type: 'string', flag: 'bind-address', env: 'LEDGE_APISERVER_HOST', default: '127.0.0.1', description: 'address to listen on' },
  insecureHttp: { type: 'boolean', flag: 'insecure-http', default: false, description: 'plain HTTP without authentication (loopback only), for quick local use' },
  kubeconfig: { type: 'string', flag: 'write-kubeconfig', env: 'LEDGE_APISERVER_KUBECONFIG', optional: true, description: 'where to write the kubeconfig (default <data-dir>/kubeconfig)' },
  nodeLeaseTimeoutMs: { type: 'integer', flag: 'node-lease-timeout-ms', min: 100, default: 40000, description: 'a node whose Lease is not renewed for this long becomes NotReady' },
  logLevel: { type: 'enum', flag: 'log-level', env: 'LEDGE_LOG_LEVEL', values: logLevels, default: 'info', description: 'log level' },
};

interface ApiServerCliConfig {
  dataDir: string;
  port: number;
  host: string;
  insecureHttp: boolean;
  kubeconfig?: string;
  nodeLeaseTimeoutMs: number;
  logLevel: LogLevel;
}

/** Runs the apiserver until SIGTERM/SIGINT. */
export async function runApiServerCli(argv: string[]): Promise<void> {
  const { config, help } = await loadConfig<ApiServerCliConfig>(apiServerConfigSpec, { argv });
  if (help) {
    process.stdout.write(formatHelp('Usage: ledge apiserver [--data-dir <dir>] [--port <n>] [--write-kubeconfig <file>] [options]', apiServerConfigSpec) + '\n');
    return;
  }
  const log = createLogger({ level: config.logLevel });
  // Handlers first: a supervisor may signal as soon as it reads "listening".
  const untilStopSignal = handleStopSignals(log);
  let handle: Awaited<ReturnType<typeof startApiServer>>;
  try {
    handle = await startApiServer({
      dataDir: config.dataDir,
      port: config.port,
      host: config.host,
      tls: !config.insecureHttp,
      ...(config.kubeconfig ? { kubeconfigPath: config.kubeconfig } : {}),
      nodeLeaseTimeoutMs: config.nodeLeaseTimeoutMs,
      log,
    });
  } catch (err) {
    // E.g. LEDGE_ERR_DATA_DIR_LOCKED: another apiserver uses this data directory.
    log.error(`apiserver cannot start: ${errorMessage(err)}`, { code: errorCode(err) });
    process.exitCode = 1;
    return;
  }
  log.info('apiserver listening', { url: handle.url, kubeconfig: handle.kubeconfigPath });
  await untilStopSignal(() => handle.close());
  log.info('apiserver stopped');
}
