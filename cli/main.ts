/**
 * @module
 * The `ledge` command: one CLI with subcommands for every role.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { runCloud, startCloudCore, type StartControlPlane } from '../cloud/main.js';
import { runEdge } from '../edge/main.js';
import { cloudConfigSpec } from '../cloud/config.js';
import { loggerFromConfig } from '../shared/log/index.js';
import { ConfigError, errorMessage } from '../shared/errors/index.js';
import { startCommand } from '../shared/runtime/index.js';

declare const LEDGE_VERSION: string | undefined;
const version = typeof LEDGE_VERSION === 'string' ? LEDGE_VERSION : 'dev';

const help = `ledge ${version} — Kubernetes extended to edge devices

Usage: ledge <command> [options]

Commands:
  up          all-in-one local setup: CloudCore (+ local control plane when available) and one EdgeCore
  cloud       run CloudCore (cloud side)
  edge        run EdgeCore on a device (same flags as 'node edgecore.js')
  edge get    show what an edge node holds, through its MetaServer ('ledge edge get --help')
  logs        print a container's log, from CloudCore's stream server directly
  exec        run a command in a container, through CloudCore's stream server directly
  attach      attach to a container's main process, through CloudCore's stream server directly
  apiserver   run the local Kubernetes-API control plane alone
  version     print the version

Run 'ledge <command> --help' for the options of a command.
`;

/** The embedded control plane (apiserver/), loaded only when local mode starts it. */
const startControlPlane: StartControlPlane = async (options) => (await import('../apiserver/index.js')).startApiServer(options);

/** Finds the bundled edgecore next to this file (dist/) or in the repo's dist/. */
function edgecorePath(): string | undefined {
  for (const rel of ['./edgecore.js', '../dist/edgecore.js']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** `ledge up` is the all-in-one local setup: everything it starts listens here only. */
const LOOPBACK = '127.0.0.1';
const upUsage =
  'Usage: ledge up [cloud options]\n\nStarts the local control plane, CloudCore and one EdgeCore (node "edge-1") on this machine; data in ./.ledge.\nCloudHub and the control plane stay on 127.0.0.1.';

/** `ledge up`: CloudCore in this process and one EdgeCore child, data under ./.ledge. */
async function runUp(argv: string[]): Promise<void> {
  const started = await startCommand('up', cloudConfigSpec, upUsage, argv, (c) => loggerFromConfig(c.log));
  if (!started) return;
  const { config, log, crash, untilStopSignal } = started;
  if (config.hub.host !== LOOPBACK) log.warn(`ledge up keeps CloudHub on ${LOOPBACK}; --bind-address ${config.hub.host} ignored (use ledge cloud to serve other machines)`);
  // `up` is the all-in-one local setup: the embedded control plane is on unless --local=false is meaningful later.
  const core = await startCloudCore({ ...config, local: true, hub: { ...config.hub, host: LOOPBACK } }, log.child({ side: 'cloud' }), { startControlPlane });
  const edgecore = edgecorePath();
  if (!edgecore) {
    log.error('dist/edgecore.js not found; run "npm run build" first', { code: ConfigError.code });
    await core.stop();
    process.exitCode = 1;
    return;
  }
  // Everything under ./.ledge: the DMI socket too (mappers: --dmi-socket .ledge/edge-1/dmi.sock), not /etc/kubeedge.
  const edgeArgs = ['--cloud', core.hub.url, '--node-name', 'edge-1', '--data-dir', './.ledge/edge-1', '--dmi-socket', 'dmi.sock', '--log-level', config.log.level];
  const child = spawn(process.execPath, [edgecore, ...edgeArgs], { stdio: 'inherit' });
  log.info(
    `ledge is up: CloudHub at ${core.hub.url}, EdgeCore "edge-1" pid ${child.pid}${core.apiserver ? `, kubectl --kubeconfig ${core.apiserver.kubeconfigPath}` : ''}. Ctrl-C stops both.`,
  );
  child.once('exit', (code) => {
    if (code !== 0 && code !== null) log.error(`edgecore exited with code ${code}`);
  });
  const stopAll = async () => {
    child.kill('SIGTERM');
    await core.stop();
  };
  // After a fatal error, stop the EdgeCore child and close CloudCore (and its control plane) first.
  crash.setDrain(stopAll);
  await untilStopSignal(stopAll);
}

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'cloud':
        return await runCloud(rest, { startControlPlane });
      case 'edge':
        if (rest[0] === 'get') return await (await import('./edge-get.js')).runEdgeGet(rest.slice(1));
        return await runEdge(rest);
      case 'up':
        return await runUp(rest);
      case 'logs':
        return await (await import('./stream.js')).runLogs(rest);
      case 'exec':
        return await (await import('./stream.js')).runExec(rest);
      case 'attach':
        return await (await import('./stream.js')).runAttach(rest);
      case 'apiserver': {
        const { runApiServerCli } = await import('../apiserver/index.js');
        return await runApiServerCli(rest);
      }
      case 'version':
      case '--version':
        process.stdout.write(`${version}\n`);
        return;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(help);
        return;
      default:
        process.stderr.write(`ledge: unknown command "${command}"\n\n${help}`);
        process.exitCode = 2;
    }
  } catch (err) {
    process.stderr.write(`ledge ${command}: ${errorMessage(err)}\n`);
    process.exitCode = process.exitCode || 1;
  }
}
