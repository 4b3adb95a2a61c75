/**
 * @module
 * EdgeCore entry point (bundled into dist/edgecore.js). Wires the modules in one
 * explicit list (KubeEdge's registerModules) and runs until SIGTERM/SIGINT.
 */
import { join, resolve } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import v8 from 'node:v8';
import { Beehive } from '../shared/beehive/index.js';
import { loggerFromConfig, type Logger } from '../shared/log/index.js';
import { startCommand } from '../shared/runtime/index.js';
import { errorCode, errorMessage, ConfigError } from '../shared/errors/index.js';
import { lockDataDir, makePrivateDir } from '../shared/lock/index.js';
import { createEdgeHub } from './edgehub/index.js';
import { createMetaManager } from './metamanager/index.js';
import { createMetaServer, type MetaServer } from './metaserver/index.js';
import { createNodeStatusReporter } from './nodestatus/index.js';
import { createContainerRuntime, createEdged, createProcessRuntime } from './edged/index.js';
import { createEdgeStream } from './edgestream/index.js';
import { createEventBus } from './eventbus/index.js';
import { createDeviceTwin } from './devicetwin/index.js';
import { edgeConfigSpec, edgeUsage, type EdgeConfig } from './config.js';

export interface EdgeCore {
  bee: Beehive;
  stop(): Promise<void>;
}

/** Starts EdgeCore with a loaded config. */
export function startEdgeCore(given: EdgeConfig, log: Logger): EdgeCore {
  // Absolute: pods run with their own working directory and are given paths under it.
  const config = { ...given, dataDir: resolve(given.dataDir) };
  // 0700: it holds the node's key and secrets (issue 13); created so, or narrowed.
  makePrivateDir(config.dataDir, log);
  // One EdgeCore per data directory (a second would interleave writes to the same logs).
  const lock = lockDataDir(config.dataDir, { owner: 'edgecore', log });
  const meta = createMetaManager({ dataDir: config.dataDir, ...config.meta }, log.child({ module: 'metamanager' }));
  const metaServer = createMetaServer({ dataDir: config.dataDir, ...config.metaServer }, meta.view, log.child({ module: 'metaserver' }));
  // Pods: the process runtime always; the container runtime over the Docker Engine API socket (Docker or Podman).
  // Both bound what a container's output may cost EdgeCore (its log ingest rate).
  const { containerLogMaxBytesPerSecond, containerLogBurstBytes, ...edgedOptions } = config.edged;
  const logRate = { containerLogMaxBytesPerSecond, containerLogBurstBytes };
  const runtimes = [
    createProcessRuntime({ rootDir: join(config.dataDir, 'edged', 'pods'), ...logRate, log: log.child({ module: 'edged', runtime: 'process' }) }),
    createContainerRuntime({ ...config.containerRuntime, ...logRate, log: log.child({ module: 'edged', runtime: 'container' }) }),
  ];
  const edged = createEdged(
    {
      nodeName: config.nodeName,
      dataDir: config.dataDir,
      meta: meta.view,
      runtimes,
      ...edgedOptions,
      // Workloads find MetaServer as in-cluster clients find the API server (docs/metaserver.md).
      podEnv: (pod) => podServiceEnv(metaServer, config.metaServer.enabled, pod),
    },
    log.child({ module: 'edged' }),
  );
  // kubectl logs/exec/attach: the streams the cloud opens on the link, served from Edged's pods (docs/streams.md).
  const edgeStream = createEdgeStream({ nodeName: config.nodeName, pods: edged }, log);
  // The MQTT device bus (off: no broker, no client; DMI alone serves devices).
  const eventBus = config.eventBus.mode === 'off' ? undefined : createEventBus(config.eventBus, log.child({ module: 'eventbus' }));
  const hub = createEdgeHub(
    {
      endpoints: config.cloud,
      nodeName: config.nodeName,
      dataDir: config.dataDir,
      ...config.hub,
      // The link is back: pod statuses and device twins are sent again (the cloud may have lost or marked them meanwhile).
      onConnected: () => {
        edged.reconnected();
        twin.reconnected();
      },
      onStream: (stream) => edgeStream.serve(stream),
    },
    log.child({ module: 'edgehub' }),
  );
  // Device twins: Devices come through MetaManager, reports go up through EdgeHub while the link is up.
  const twin = createDeviceTwin(
    {
      nodeName: config.nodeName,
      dataDir: config.dataDir,
      meta: meta.view,
      ...(eventBus ? { bus: eventBus } : {}),
      linkUp: () => hub.connected,
      ...config.twin,
      // A relative socket path is under the data directory (several EdgeCores on one host, the tests).
      dmi: { ...config.dmi, socketPath: resolve(config.dataDir, config.dmi.socketPath), dataDir: config.dataDir },
    },
    log.child({ module: 'devicetwin' }),
  );
  const bee = new Beehive({ log });
  // The modules, in one list (KubeEdge's registerModules).
  bee.register(hub);
  bee.register(meta);
  if (config.metaServer.enabled) bee.register(metaServer);
  bee.register(edged);
  if (eventBus) bee.register(eventBus);
  bee.register(twin);
  // The node is NotReady while its metadata store cannot write.
  bee.register(
    createNodeStatusReporter({
      ...config.nodeStatus,
      nodeName: config.nodeName,
      dataDir: config.dataDir,
      checks: [() => meta.health()],
      conditions: [() => meta.storeCondition()],
      maxPods: config.edged.maxPods,
      runtimeVersion: () => edged.runtimeVersion(),
      images: () => edged.heldImages(),
    }),
  );
  bee.start();
  return {
    bee,
    stop: () =>
      bee
        .stop()
        .finally(() => edgeStream.close())
        .finally(() => lock.release()),
  };
}

/** KUBERNETES_SERVICE_HOST/PORT pointing at MetaServer, and the pod's own token to read it with. */
function podServiceEnv(metaServer: MetaServer, enabled: boolean, pod: V1Pod): Record<string, string> {
  const addr = enabled ? metaServer.address() : undefined;
  const md = pod.metadata ?? {};
  if (!addr || !md.uid) return {};
  return {
    KUBERNETES_SERVICE_HOST: addr.host,
    KUBERNETES_SERVICE_PORT: String(addr.port),
    LEDGE_METASERVER_TOKEN: metaServer.podToken(md.uid, md.namespace ?? 'default'),
  };
}

/**
 * Turns off V8's compilers to machine code (Sparkplug and TurboFan) for the rest of the process,
 * and keeps the young generation at its first size (below).
 * An agent spends its life in a few loops (keepalive, status report, store writes) that gain
 * nothing measurable from machine code, while the compilers' own code pages, faulted in from the
 * node binary the first time they run, and their code and feedback on the heap, cost about
 * 6.5 MiB of RSS at steady state
 * (docs/benchmarks.md, "Edge memory at steady state"). Set here, before anything is hot; `--jit`
 * keeps them, and V8's own young-generation sizing, for nodes with heavy traffic. Where the runtime
 * has no such switch (Bun), a no-op.
 */
function leanV8(log: Logger): void {
  const setFlags = (v8 as { setFlagsFromString?: (flags: string) => void }).setFlagsFromString;
  try {
    setFlags?.('--no-opt');
    setFlags?.('--no-sparkplug');
    // The young generation stays at its first size (1 MiB semi-spaces) instead of doubling up to
    // 16 MiB under a steady stream of short-lived objects (device reports, frames): V8 reads this
    // factor at each growth decision, so it works when set now. Measured with 1,000 device twins
    // reporting: 77 instead of 117 MiB RSS, and no swings (docs/benchmarks.md, "Devices: memory");
    // scavenges are smaller and more frequent.
    setFlags?.('--semi-space-growth-factor=1');
    // V8's memory-over-speed heuristics (smaller heap growth steps among them): under 1,000 device
    // reports/s 71 instead of 99 MiB RSS, for +11 % CPU per report (docs/benchmarks.md, "Devices: memory").
    setFlags?.('--optimize-for-size');
  } catch (err) {
    log.debug(`V8 flags not applied: ${errorMessage(err)}`);
  }
}

/** `ledge edge` / `node edgecore.js`: parses flags, starts, and handles signals. */
export async function runEdge(argv: string[]): Promise<void> {
  const started = await startCommand('edge', edgeConfigSpec, edgeUsage, argv, (c) => loggerFromConfig(c.log).child({ node: c.nodeName }));
  if (!started) return;
  const { config, log, crash, untilStopSignal } = started;
  if (!config.jit) leanV8(log);
  else if (process.execArgv.includes('--lite-mode')) log.warn('--jit has no effect: node runs with --lite-mode (the shipped systemd unit sets it; remove it there to use --jit)');
  let core: EdgeCore;
  try {
    core = startEdgeCore(config, log);
  } catch (err) {
    log.error(`edgecore cannot start: ${errorMessage(err)}`, { code: errorCode(err) });
    process.exitCode = err instanceof ConfigError || err instanceof TypeError ? 2 : 1;
    return;
  }
  // After a fatal error, close the stores and the session (and release the lock) before exiting.
  crash.setDrain(core.stop);
  log.info('edgecore started', { cloud: config.cloud.join(','), dataDir: config.dataDir, pid: process.pid, nodeVersion: process.version, arch: process.arch });
  await untilStopSignal(core.stop);
  log.info('edgecore stopped');
}
