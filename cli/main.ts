/**
 * @module
 * The `ledge` command: one CLI with subcommands for every role.
 */
import { existsSync, readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join as pathJoin } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { runCloud, startCloudCore, type CloudCore, type StartControlPlane } from '../cloud/main.js';
import { formatJoinToken } from '../shared/jointoken/index.js';
import { runEdge } from '../edge/main.js';
import { cloudConfigSpec } from '../cloud/config.js';
import { loggerFromConfig, type Logger } from '../shared/log/index.js';
import { ConfigError, errorCode, errorMessage } from '../shared/errors/index.js';
import { EDGE_PROCESS, startCommand } from '../shared/runtime/index.js';

declare const LEDGE_VERSION: string | undefined;
const version = typeof LEDGE_VERSION === 'string' ? LEDGE_VERSION : 'dev';

const help = `ledge ${version} — Kubernetes extended to edge devices

Usage: ledge <command> [options]

Commands:
  up          all-in-one local setup: CloudCore (+ local control plane when available) and one EdgeCore
  cloud       run CloudCore (cloud side)
  edge        run EdgeCore on a device (same flags as 'node edgecore.js')
  edge join   admit this machine as an edge node with a join token ('ledge edge join --help'; on a device: node edgecore.js join)
  edge get    show what an edge node holds, through its MetaServer ('ledge edge get --help')
  token       join tokens for new edge nodes: token create --ttl 24h [--single-use], token list, token revoke <id>
  node        revoke an edge node (closes its session, refuses its certificates): node revoke <name>, node unrevoke <name>, node revocations
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

/**
 * Admits node `nodeName` of `ledge up` the way an operator admits a device (docs/security.md): a
 * single-use join token, then the join protocol over CloudHub's HTTPS port, which writes the key,
 * certificates and config under `dataDir`. Skipped while the node's certificate is still one of
 * this CA's and not expiring within a day. Returns the EdgeCore config file.
 */
async function ensureJoined(core: CloudCore, nodeName: string, dataDir: string, log: Logger): Promise<string> {
  const { JOIN_FILES, join } = await import('../edge/join/index.js');
  const configFile = pathJoin(dataDir, JOIN_FILES.config);
  const certFile = pathJoin(dataDir, JOIN_FILES.cert);
  if (!core.ca || !core.tokens) throw new ConfigError('CloudCore runs without its node CA or join tokens, so no node can join');
  if (existsSync(configFile) && existsSync(certFile)) {
    try {
      const cert = new X509Certificate(readFileSync(certFile));
      const ca = new X509Certificate(core.ca.certPem);
      if (cert.checkIssued(ca) && cert.verify(ca.publicKey) && Date.parse(cert.validTo) - Date.now() > 86_400_000) return configFile;
    } catch {
      // unreadable: join again
    }
    log.info(`${nodeName}'s certificate is not from this CloudCore's CA (or expires soon): joining again`);
  }
  const token = await core.tokens.create({ ttlMs: 10 * 60_000, singleUse: true, description: `ledge up: ${nodeName}` });
  await join({ cloud: core.hub.url, token: formatJoinToken(token, core.ca.hash), nodeName, dataDir, force: true, log: log.child({ module: 'join' }) });
  log.info(`${nodeName} joined: certificate and config in ${dataDir}`);
  return configFile;
}

/** `ledge up`: CloudCore in this process and one EdgeCore child, data under ./.ledge. */
async function runUp(argv: string[]): Promise<void> {
  const started = await startCommand('up', cloudConfigSpec, upUsage, argv, (c) => loggerFromConfig(c.log));
  if (!started) return;
  const { config, log, crash, untilStopSignal } = started;
  if (config.hub.host !== LOOPBACK) log.warn(`ledge up keeps CloudHub on ${LOOPBACK}; --bind-address ${config.hub.host} ignored (use ledge cloud to serve other machines)`);
  // `up` is the all-in-one local setup: the embedded control plane is on unless --local=false is meaningful later.
  // Mutual TLS as in production: the node CA lives in the local control plane (Secret kube-system/ledge-ca).
  const core = await startCloudCore({ ...config, local: true, hub: { ...config.hub, host: LOOPBACK } }, log.child({ side: 'cloud' }), {
    startControlPlane,
  });
  const edgecore = edgecorePath();
  if (!edgecore) {
    log.error('dist/edgecore.js not found; run "npm run build" first', { code: ConfigError.code });
    await core.stop();
    process.exitCode = 1;
    return;
  }
  const dataDir = './.ledge/edge-1';
  let edgeConfig: string;
  try {
    edgeConfig = await ensureJoined(core, 'edge-1', dataDir, log);
  } catch (err) {
    log.error(`edge-1 cannot join: ${errorMessage(err)}`, { code: errorCode(err) });
    await core.stop();
    process.exitCode = 1;
    return;
  }
  // Everything under ./.ledge: the DMI socket too (mappers: --dmi-socket .ledge/edge-1/dmi.sock), not /etc/kubeedge.
  const edgeArgs = ['--config', edgeConfig, '--cloud', core.hub.url, '--data-dir', dataDir, '--dmi-socket', 'dmi.sock', '--log-level', config.log.level];
  const child = spawn(process.execPath, [...EDGE_PROCESS.nodeFlags, edgecore, ...edgeArgs], { stdio: 'inherit', env: { ...process.env, ...EDGE_PROCESS.env } });
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
        if (rest[0] === 'join') {
          process.exitCode = await (await import('../edge/join/index.js')).runJoin(rest.slice(1), { command: 'ledge edge' });
          return;
        }
        return await runEdge(rest);
      case 'up':
        return await runUp(rest);
      case 'token':
        return await (await import('./token.js')).runToken(rest);
      case 'node':
        return await (await import('./node.js')).runNode(rest);
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
