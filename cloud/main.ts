/**
 * @module
 * CloudCore entry point. Builds the modules in one explicit list, each flow between them
 * on one channel (see startCloudCore), and runs until SIGTERM/SIGINT, draining in-flight work.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Beehive } from '../shared/beehive/index.js';
// Types only: the control plane's code reaches CloudCore through `startControlPlane` (see CloudCoreExtras).
import type { ApiServerHandle, ApiServerOptions } from '../apiserver/index.js';
import { loggerFromConfig, type Logger } from '../shared/log/index.js';
import { startCommand } from '../shared/runtime/index.js';
import { ConfigError, errorCode, errorMessage } from '../shared/errors/index.js';
import type { Module } from '../shared/beehive/index.js';
import { ModuleName } from '../shared/protocol/index.js';
import { createCloudHub, type CloudHub, type CloudHubOptions } from './cloudhub/index.js';
import { createEdgeController } from './edgecontroller/index.js';
import { EvictionProtection } from './edgecontroller/tolerations.js';
import { SyncController, combineDesiredSources } from './synccontroller/index.js';
import { createDeviceController, type DeviceController } from './devicecontroller/index.js';
import { createDeviceWebhook, type DeviceWebhook } from './devicewebhook/index.js';
import { LeaderElector, defaultIdentity } from './leaderelection/index.js';
import { loadKube, loadKubeConfig } from './kube/index.js';
import { CloudStream, cloudStreamEndpoint, defaultCloudStreamOptions } from './cloudstream/index.js';
import { cloudConfigSpec, cloudUsage, type CloudConfig } from './config.js';

export interface CloudCore {
  bee: Beehive;
  hub: CloudHub;
  sync?: SyncController;
  /** The embedded control plane, with `local: true`. */
  apiserver?: ApiServerHandle;
  /** The device validation webhook, with --webhook-tls-cert-file. */
  webhook?: DeviceWebhook;
  stop(): Promise<void>;
}

/**
 * Starts the embedded control plane of local mode. Only the `ledge` CLI supplies one (a dynamic
 * import of `apiserver/`), so the in-cluster `dist/cloudcore.js` neither bundles nor starts it.
 */
export type StartControlPlane = (options: ApiServerOptions) => Promise<ApiServerHandle>;

export interface CloudCoreExtras {
  /** Required for `local: true`; without it local mode is refused with a ConfigError. */
  startControlPlane?: StartControlPlane;
  /** Extra modules (embedding, test harnesses, later controllers). */
  modules?: Module[];
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

/** In a pod, the service account's CA: on kubeadm clusters it signs the API server's kubelet client certificate. */
const SERVICE_ACCOUNT_CA = '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt';

/**
 * CloudStream's settings that come from where CloudCore runs: its data directory; the CA of the
 * API server's kubelet client certificate when not given (the local control plane's, or in a pod
 * the service account's); the namespace of the leader election when not given.
 */
function streamDefaultsFor(config: CloudConfig, apiserver: ApiServerHandle | undefined): { dataDir: string; clientCaFile?: string; namespace: string } {
  const clientCaFile = config.stream.clientCaFile ?? apiserver?.caFile ?? (process.env.KUBERNETES_SERVICE_HOST && existsSync(SERVICE_ACCOUNT_CA) ? SERVICE_ACCOUNT_CA : undefined);
  return {
    dataDir: config.dataDir,
    ...(clientCaFile ? { clientCaFile } : {}),
    namespace: config.stream.namespace === defaultCloudStreamOptions.namespace ? config.leaderElection.namespace : config.stream.namespace,
  };
}

/** Starts CloudCore with a loaded config; resolves once CloudHub listens. */
export async function startCloudCore(config: CloudConfig, log: Logger, extras: CloudCoreExtras = {}): Promise<CloudCore> {
  // Local mode: the control plane runs in this process, and CloudCore uses it over HTTP like any cluster.
  const { startControlPlane } = extras;
  if (config.local && !startControlPlane) {
    throw new ConfigError(
      '--local: this CloudCore build has no embedded control plane (dist/cloudcore.js is the in-cluster build); run "ledge cloud --local" or "ledge up", or point it at a cluster with --kubeconfig',
    );
  }
  const apiserver =
    startControlPlane && config.local
      ? await startControlPlane({
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
  if (!kc) log.warn('no Kubernetes API configured (--kubeconfig, --local or in-cluster): controllers are off, CloudHub only', { code: ConfigError.code });

  // The modules. Each is built from its options alone, in an order where every reference
  // points to one already built: no forward declaration, no module wiring itself into
  // another. Each flow has one channel (docs/controllers.md, "Wiring"):
  //   upstream    node → CloudHub → EdgeController   Beehive sendSync, routed by group (hub.upstreamRoutes)
  //               node → CloudHub → DeviceController   the same, group twin (reported twins → DeviceStatus)
  //   desired     EdgeController, DeviceController → SyncController    Beehive 'desired-changed' message per node
  //   downstream  SyncController → CloudHub → node   Beehive message, resource node/<name>/…
  //   ACKs        CloudHub → the module that sent    Beehive 'ack' report carrying the ACKed message
  //   sessions    CloudHub → SyncController, CloudStream   Beehive 'connected' / 'disconnected' reports
  //   streams     CloudStream → CloudHub → node     hub.openStream: kubectl logs/exec/attach over the link (docs/streams.md)
  // Reads, not flows: the SyncController reads the EdgeController's and the DeviceController's
  // desired sets (one DesiredSource, which it also tells when a node released an object), CloudHub's sessions and the elector;
  // CloudStream reads the EdgeController's pod → node map; the EdgeController reads CloudStream's
  // endpoint when it writes a Node (the one reference declared before its module: with
  // --stream-port 0 the port is known once CloudStream listens).
  const identity = config.leaderElection.identity ?? defaultIdentity();
  // CloudStream needs the pods (to route by node) and the API (Leases of the sessions each replica holds).
  const streamConfig = kc && config.stream.enabled ? { ...config.stream, ...streamDefaultsFor(config, apiserver) } : undefined;
  const hub = createCloudHub(
    {
      ...hubOptionsFrom(config),
      ...(kc ? { sessionSubscribers: [ModuleName.SyncController, ...(streamConfig ? [ModuleName.CloudStream] : [])] } : {}),
      ...extras.hubOverrides,
    },
    { log: log.child({ module: 'cloudhub' }) },
  );
  // CloudHub's connected nodes: what the SyncController reconciles periodically, and what each controller announces once its informers listed.
  const connectedNodes = () => hub.connectedNodes();
  const elector = kc ? new LeaderElector(kc, { ...config.leaderElection, identity }, log.child({ module: 'leaderelection' })) : undefined;
  // Pods bound to edge nodes tolerate the unreachable taint without a time limit (docs/design.md): the leader patches them.
  const protection = kc ? new EvictionProtection(kc, () => elector?.isLeader() ?? false, log.child({ module: 'evictionprotection' })) : undefined;
  let stream: CloudStream | undefined;
  const edgeController = createEdgeController(kc, log.child({ module: 'edgecontroller' }), {
    ...(protection ? { informerObservers: [protection] } : {}),
    announceNodes: connectedNodes,
    // Edge Nodes point the API server's node proxy at CloudStream (the port once listening, for --stream-port 0).
    ...(streamConfig ? { streamEndpoint: () => (streamConfig.port !== 0 ? cloudStreamEndpoint(streamConfig) : stream?.isListening() ? stream.nodeEndpoint() : undefined) } : {}),
  });
  stream = streamConfig
    ? new CloudStream(
        streamConfig,
        {
          openStream: (node, request) => hub.openStream(node, request),
          isConnected: (node) => hub.isConnected(node),
          podNode: (ns, pod) => edgeController.podNode(ns, pod),
          kc,
          identity,
        },
        log.child({ module: 'cloudstream' }),
      )
    : undefined;
  // Devices and their models go down beside pods; reported twins come up into DeviceStatus (docs/devices.md).
  const deviceController = kc ? createDeviceController(kc, log.child({ module: 'devicecontroller' }), { ...config.devices, announceNodes: connectedNodes }) : undefined;
  const sync = kc
    ? new SyncController(
        kc,
        {
          desired: deviceController ? combineDesiredSources(edgeController, deviceController) : edgeController,
          isConnected: (node) => hub.isConnected(node),
          connectedNodes,
          isLeader: () => elector?.isLeader() ?? false,
          reconcileIntervalMs: config.controllers.reconcileIntervalMs,
        },
        log.child({ module: 'synccontroller' }),
      )
    : undefined;
  const modules: Module[] = [
    hub,
    edgeController,
    ...(deviceController ? [deviceController] : []),
    ...(sync ? [sync] : []),
    ...(elector ? [elector] : []),
    ...(protection ? [protection] : []),
    ...(stream ? [stream] : []),
  ];

  const bee = new Beehive({ log });
  const extra = extras.modules ?? [];
  // An embedder's module replaces the built-in one of the same name (test harnesses); CloudHub is always this one.
  for (const m of modules) if (m === hub || !extra.some((e) => e.name === m.name)) bee.register(m);
  for (const m of extra) bee.register(m);
  // Before the modules: a webhook that cannot serve (a bad certificate) fails the start with nothing else running.
  const webhook = await startDeviceWebhook(config, deviceController, log);
  bee.start();
  await hub.ready();
  if (stream) await stream.ready();
  return {
    bee,
    hub,
    ...(sync ? { sync } : {}),
    ...(apiserver ? { apiserver } : {}),
    ...(webhook ? { webhook } : {}),
    stop: async () => {
      await webhook?.close();
      await bee.stop();
      await apiserver?.close();
    },
  };
}

/**
 * The device validation webhook, when given its serving certificate (real clusters; the local
 * control plane validates Devices itself). Models are read through the DeviceController.
 */
async function startDeviceWebhook(config: CloudConfig, devices: DeviceController | undefined, log: Logger): Promise<DeviceWebhook | undefined> {
  const { certFile, keyFile, ...rest } = config.deviceWebhook;
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new ConfigError('config fields "deviceWebhook.certFile" and "deviceWebhook.keyFile" must be set together');
  if (!devices) throw new ConfigError('the device webhook reads DeviceModels from the Kubernetes API: give --kubeconfig or run in a cluster');
  const webhook = createDeviceWebhook({ ...rest, certFile, keyFile, models: (ns, name) => devices.model(ns, name) }, log);
  const at = await webhook.start();
  log.info('device webhook listening', { host: at.host, port: at.port });
  return webhook;
}

/** `ledge cloud`: parses flags, starts, and handles signals. */
export async function runCloud(argv: string[], extras: Pick<CloudCoreExtras, 'startControlPlane'> = {}): Promise<void> {
  const started = await startCommand('cloud', cloudConfigSpec, cloudUsage, argv, (c) => loggerFromConfig(c.log));
  if (!started) return;
  const { config, log, crash, untilStopSignal } = started;
  let core: CloudCore;
  try {
    core = await startCloudCore(config, log, extras);
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
