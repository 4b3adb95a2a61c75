/**
 * @module
 * `ledge apiserver`: configuration spec and the command's entry point.
 */
import { moduleFields, type ConfigOf, type ConfigSpec } from '../shared/config/index.js';
import { logConfigFields, loggerFromConfig } from '../shared/log/index.js';
import { startApiServer } from './server.js';
import { defaultApiServerOptions } from './options.js';
import { startCommand } from '../shared/runtime/index.js';
import { errorCode, errorMessage } from '../shared/errors/index.js';

/** The command's options; the server's own defaults (./options.ts) are the fields' defaults. */
export const apiServerConfigSpec = {
  dataDir: {
    type: 'string',
    flag: 'data-dir',
    env: 'LEDGE_APISERVER_DATA_DIR',
    default: '.ledge/apiserver',
    description: 'directory for the write-ahead log, credentials and kubeconfig',
  },
  ...moduleFields('', defaultApiServerOptions, {
    port: { type: 'integer', flag: 'port', env: 'LEDGE_APISERVER_PORT', min: 0, max: 65535, description: 'TCP port (0 = pick a free one)' },
    host: { type: 'string', flag: 'bind-address', env: 'LEDGE_APISERVER_BIND_ADDRESS', deprecatedEnv: ['LEDGE_APISERVER_HOST'], description: 'address to listen on' },
    nodeLeaseTimeoutMs: {
      type: 'integer',
      flag: 'node-lease-timeout-ms',
      min: 100,
      description: 'a node whose Lease and Ready heartbeat are not renewed for this long becomes Ready=Unknown (ms; kube-controller-manager --node-monitor-grace-period)',
    },
    nodeMonitorPeriodMs: { type: 'integer', flag: 'node-monitor-period-ms', min: 10, description: 'how often node health is checked (ms; --node-monitor-period)' },
    nodeStartupGracePeriodMs: {
      type: 'integer',
      flag: 'node-startup-grace-period-ms',
      min: 100,
      description: 'grace of a node that never posted Ready (ms; --node-startup-grace-period)',
    },
    nodeEvictionRate: { type: 'number', flag: 'node-eviction-rate', min: 0, description: 'nodes per second tainted NoExecute in a healthy zone (--node-eviction-rate)' },
    secondaryNodeEvictionRate: {
      type: 'number',
      flag: 'secondary-node-eviction-rate',
      min: 0,
      description: 'the same in an unhealthy zone of a large cluster (--secondary-node-eviction-rate)',
    },
    largeClusterSizeThreshold: { type: 'integer', flag: 'large-cluster-size-threshold', min: 0, description: 'nodes above which a zone is large (--large-cluster-size-threshold)' },
    unhealthyZoneThreshold: {
      type: 'number',
      flag: 'unhealthy-zone-threshold',
      min: 0,
      max: 1,
      description: 'fraction of NotReady nodes (at least 3) making a zone unhealthy (--unhealthy-zone-threshold)',
    },
    defaultNotReadyTolerationSeconds: {
      type: 'integer',
      flag: 'default-not-ready-toleration-seconds',
      min: 0,
      description: 'tolerationSeconds of the not-ready:NoExecute toleration added to pods lacking one',
    },
    defaultUnreachableTolerationSeconds: {
      type: 'integer',
      flag: 'default-unreachable-toleration-seconds',
      min: 0,
      description: 'tolerationSeconds of the unreachable:NoExecute toleration added to pods lacking one',
    },
    podGcPeriodMs: { type: 'integer', flag: 'pod-gc-period-ms', min: 10, description: 'period of the pod garbage collector (ms)' },
    podGcQuarantineMs: { type: 'integer', flag: 'pod-gc-quarantine-ms', min: 0, description: 'a missing node stays missing this long before its pods are force-deleted (ms)' },
    terminatedPodGcThreshold: {
      type: 'integer',
      flag: 'terminated-pod-gc-threshold',
      min: 0,
      description: 'terminated pods kept before the oldest are deleted; 0 = keep all (--terminated-pod-gc-threshold)',
    },
    kubeletPreferredAddressTypes: {
      type: 'string[]',
      flag: 'kubelet-preferred-address-types',
      description:
        'node address types the node proxy (kubectl logs/exec/attach) dials, first present wins; comma-separated (Hostname, InternalDNS, InternalIP, ExternalDNS, ExternalIP)',
    },
    kubeletPort: { type: 'integer', flag: 'kubelet-port', min: 1, max: 65535, description: 'kubelet port dialed when a Node has no status.daemonEndpoints.kubeletEndpoint.Port' },
    kubeletCertificateAuthority: {
      type: 'string',
      flag: 'kubelet-certificate-authority',
      description: "CA file verifying the kubelet's serving certificate; empty = not verified (as kube-apiserver without the flag)",
    },
    kubeletTimeoutMs: { type: 'integer', flag: 'kubelet-timeout-ms', min: 1, description: 'bound on connecting to a kubelet (DNS, TCP, TLS), ms; then 503' },
  }),
  insecureHttp: {
    type: 'boolean',
    flag: 'insecure-http',
    default: !defaultApiServerOptions.tls,
    description: 'plain HTTP without authentication (loopback only), for quick local use',
  },
  kubeconfig: {
    type: 'string',
    flag: 'write-kubeconfig',
    env: 'LEDGE_APISERVER_KUBECONFIG',
    optional: true,
    description: 'where to write the kubeconfig (default <data-dir>/kubeconfig)',
  },
  ...logConfigFields,
} as const satisfies ConfigSpec;

/** `ledge apiserver`'s loaded configuration, derived from {@link apiServerConfigSpec}. */
export type ApiServerCliConfig = ConfigOf<typeof apiServerConfigSpec>;

const usage = 'Usage: ledge apiserver [--data-dir <dir>] [--port <n>] [--write-kubeconfig <file>] [options]';

/** Runs the apiserver until SIGTERM/SIGINT. */
export async function runApiServerCli(argv: string[]): Promise<void> {
  const started = await startCommand('apiserver', apiServerConfigSpec, usage, argv, (c) => loggerFromConfig(c.log));
  if (!started) return;
  const { config, log, crash, untilStopSignal } = started;
  let handle: Awaited<ReturnType<typeof startApiServer>>;
  try {
    handle = await startApiServer({
      dataDir: config.dataDir,
      port: config.port,
      host: config.host,
      tls: !config.insecureHttp,
      ...(config.kubeconfig ? { kubeconfigPath: config.kubeconfig } : {}),
      nodeLeaseTimeoutMs: config.nodeLeaseTimeoutMs,
      nodeMonitorPeriodMs: config.nodeMonitorPeriodMs,
      nodeStartupGracePeriodMs: config.nodeStartupGracePeriodMs,
      nodeEvictionRate: config.nodeEvictionRate,
      secondaryNodeEvictionRate: config.secondaryNodeEvictionRate,
      largeClusterSizeThreshold: config.largeClusterSizeThreshold,
      unhealthyZoneThreshold: config.unhealthyZoneThreshold,
      defaultNotReadyTolerationSeconds: config.defaultNotReadyTolerationSeconds,
      defaultUnreachableTolerationSeconds: config.defaultUnreachableTolerationSeconds,
      podGcPeriodMs: config.podGcPeriodMs,
      podGcQuarantineMs: config.podGcQuarantineMs,
      terminatedPodGcThreshold: config.terminatedPodGcThreshold,
      kubeletPreferredAddressTypes: config.kubeletPreferredAddressTypes,
      kubeletPort: config.kubeletPort,
      kubeletCertificateAuthority: config.kubeletCertificateAuthority,
      kubeletTimeoutMs: config.kubeletTimeoutMs,
      log,
    });
  } catch (err) {
    // E.g. LEDGE_ERR_DATA_DIR_LOCKED: another apiserver uses this data directory.
    log.error(`apiserver cannot start: ${errorMessage(err)}`, { code: errorCode(err) });
    process.exitCode = 1;
    return;
  }
  // After a fatal error, flush the WAL and release the data-directory lock before exiting.
  crash.setDrain(() => handle.close());
  log.info('apiserver listening', { url: handle.url, kubeconfig: handle.kubeconfigPath });
  await untilStopSignal(() => handle.close());
  log.info('apiserver stopped');
}
