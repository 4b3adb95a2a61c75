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
import { kube, loadKube, loadKubeConfig, type k8s } from './kube/index.js';
import { CloudStream, cloudStreamEndpoint, defaultCloudStreamOptions } from './cloudstream/index.js';
import { cloudConfigSpec, cloudUsage, type CloudConfig } from './config.js';
import { createJoinHandler, createRenewHandler, loadOrCreateCa, type CertificateAuthority } from './certauthority/index.js';
import { createTokenStore, type TokenStore } from './tokens/index.js';
import { createNodeRevocation, type NodeRevocation } from './revocation/index.js';

export interface CloudCore {
  bee: Beehive;
  hub: CloudHub;
  sync?: SyncController;
  /** The embedded control plane, with `local: true`. */
  apiserver?: ApiServerHandle;
  /** The device validation webhook, with --webhook-tls-cert-file. */
  webhook?: DeviceWebhook;
  /** The node CA CloudHub trusts and issues from (managed TLS: no --tls-cert-file, a Kubernetes API or --ca-cert-file). */
  ca?: CertificateAuthority;
  /** The join tokens (managed TLS with a Kubernetes API): what POST /v1/join consumes. */
  tokens?: TokenStore;
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

/** CloudHub's options from the config: the `hub.tls.*` files when any is set (CloudHub checks that they, or --insecure-plain-websocket, make sense). */
export function hubOptionsFrom(config: CloudConfig): Partial<CloudHubOptions> {
  const { tls, ...rest } = config.hub;
  const files = { ...(tls?.certFile ? { certFile: tls.certFile } : {}), ...(tls?.keyFile ? { keyFile: tls.keyFile } : {}), ...(tls?.caFile ? { caFile: tls.caFile } : {}) };
  return { ...rest, ...(Object.keys(files).length ? { tls: files } : {}) };
}

/**
 * CloudHub's credentials when the operator gave no --tls-cert-file (docs/security.md): the node CA
 * (--ca-cert-file/--ca-key-file, else the `ledge-ca` Secret, created by whichever replica starts
 * first), a serving certificate issued from it at each start for the bind address, --tls-san,
 * 127.0.0.1 and localhost, and the join endpoint (POST /v1/join) when there is an API to keep
 * tokens in. None with --insecure-plain-websocket or operator TLS files, or with neither an API nor
 * CA files (then CloudHub explains what it needs).
 */
async function managedHubSecurity(
  config: CloudConfig,
  kc: k8s.KubeConfig | undefined,
  log: Logger,
  revocation?: Pick<NodeRevocation, 'refusal'>,
): Promise<{ ca: CertificateAuthority; tokens?: TokenStore; hub: Partial<CloudHubOptions>; onRenewed(listener: (node: string, notAfterMs: number) => void): void } | undefined> {
  if (config.hub.insecurePlainWebSocket || config.hub.tls?.certFile || config.hub.tls?.keyFile) return undefined;
  const caFiles = config.ca.certFile && config.ca.keyFile ? { certFile: config.ca.certFile, keyFile: config.ca.keyFile } : undefined;
  if ((config.ca.certFile || config.ca.keyFile) && !caFiles) throw new ConfigError('--ca-cert-file and --ca-key-file go together');
  if (!kc && !caFiles) return undefined;
  const namespace = config.ca.namespace ?? config.leaderElection.namespace;
  const core = kc?.makeApiClient(kube().CoreV1Api);
  const ca = await loadOrCreateCa({
    ...(core ? { core } : {}),
    namespace,
    ...(caFiles ?? {}),
    nodeCertLifetimeMs: config.ca.nodeCertLifetimeMs,
    log: log.child({ module: 'certauthority' }),
  });
  const host = config.hub.host;
  const serving = await ca.issueServingCert([...(host && host !== '0.0.0.0' && host !== '::' ? [host] : []), ...config.ca.tlsSans]);
  const tokens = core ? createTokenStore({ core, namespace }) : undefined;
  log.info(
    `node CA ${ca.hash} (${ca.source === 'files' ? 'from --ca-cert-file' : ca.source === 'created' ? `created in Secret ${namespace}/ledge-ca` : `Secret ${namespace}/ledge-ca`})`,
    {
      joins: tokens ? 'POST /v1/join' : 'off (no Kubernetes API for tokens)',
      renewals: 'POST /v1/renew',
    },
  );
  const join = tokens ? createJoinHandler({ ca, tokens, log: log.child({ module: 'join' }) }) : undefined;
  // Renewal needs no token store (a CA from --ca-cert-file renews too); a revoked node renews nothing.
  const renewed = new Set<(node: string, notAfterMs: number) => void>();
  const renew = createRenewHandler({
    ca,
    log: log.child({ module: 'renew' }),
    onRenewed: (node, notAfterMs) => {
      for (const l of renewed) l(node, notAfterMs);
    },
    ...(revocation ? { isRevoked: (node, cert) => revocation.refusal(node, cert) } : {}),
  });
  return {
    ca,
    onRenewed: (listener) => renewed.add(listener),
    ...(tokens ? { tokens } : {}),
    hub: {
      tls: { cert: serving.cert, key: serving.key, ca: ca.certPem },
      httpHandler: (req, res) => (join?.(req, res) ?? false) || renew(req, res),
    },
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
  // Revoked nodes (issue 13, docs/security.md): with an API and TLS (plain ws:// has no certificates to refuse). Deleted edge
  // Nodes come from the EdgeController's Node informer; `ledge node revoke` from ConfigMap ledge-revoked-nodes.
  const revocation =
    kc && !config.hub.insecurePlainWebSocket
      ? createNodeRevocation({ namespace: config.ca.namespace ?? config.leaderElection.namespace }, { kc, log: log.child({ module: 'revocation' }) })
      : undefined;
  // Mutual TLS by default: the node CA and CloudHub's certificate from it, the join endpoint beside the link.
  const security = await managedHubSecurity(config, kc, log, revocation);
  const hub = createCloudHub(
    {
      ...hubOptionsFrom(config),
      ...security?.hub,
      ...(revocation ? { revocation } : {}),
      ...(kc ? { sessionSubscribers: [ModuleName.SyncController, ...(streamConfig ? [ModuleName.CloudStream] : [])] } : {}),
      ...extras.hubOverrides,
    },
    { log: log.child({ module: 'cloudhub' }) },
  );
  // A node that renewed its certificate here keeps its session past the old certificate's expiry.
  security?.onRenewed((node, notAfterMs) => hub.extendSessionExpiry(node, notAfterMs));
  // A node revoked (or its Node deleted): its live session here is closed at once.
  revocation?.onRevoked((nodes) => hub.closeRevokedSessions(nodes));
  // CloudHub's connected nodes: what the SyncController reconciles periodically, and what each controller announces once its informers listed.
  const connectedNodes = () => hub.connectedNodes();
  const elector = kc ? new LeaderElector(kc, { ...config.leaderElection, identity }, log.child({ module: 'leaderelection' })) : undefined;
  // Pods bound to edge nodes tolerate the unreachable taint without a time limit (docs/design.md): the leader patches them.
  const protection = kc ? new EvictionProtection(kc, () => elector?.isLeader() ?? false, log.child({ module: 'evictionprotection' })) : undefined;
  let stream: CloudStream | undefined;
  const edgeController = createEdgeController(kc, log.child({ module: 'edgecontroller' }), {
    informerObservers: [...(protection ? [protection] : []), ...(revocation ? [revocation] : [])],
    announceNodes: connectedNodes,
    // A deleted Node is registered again only from a live session here (not from a report of the revoked node's closed one).
    ...(revocation ? { mayRegisterNode: (node: string) => hub.isConnected(node) } : {}),
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
    ...(revocation ? [revocation] : []),
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
    ...(security ? { ca: security.ca } : {}),
    ...(security?.tokens ? { tokens: security.tokens } : {}),
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
