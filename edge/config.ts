/**
 * @module
 * EdgeCore configuration: defaults < file (`--config edgecore.yaml`) < env < flags.
 *
 * The spec below is the only declaration of a field: {@link EdgeConfig} is derived from
 * it, and every field backed by a module option takes that module's default
 * (`moduleFields`). Flag names: docs/design.md, "Configuration: one source of truth".
 */
import { moduleFields, type ConfigOf, type ConfigSpec } from '../shared/config/index.js';
import { logConfigFields } from '../shared/log/index.js';
import { defaultEdgeHubOptions } from './edgehub/options.js';
import { defaultNodeStatusOptions } from './nodestatus/options.js';
import { defaultMetaManagerOptions, defaultMetaStoreOptions } from './metamanager/options.js';
import { defaultMetaServerOptions } from './metaserver/options.js';
import { defaultContainerLogRateOptions, defaultContainerRuntimeOptions, defaultEdgedOptions } from './edged/options.js';
import { defaultEventBusOptions } from './eventbus/options.js';
import { defaultDeviceTwinOptions } from './devicetwin/options.js';
import { defaultDmiAdapterOptions } from './devicetwin/dmi/options.js';

export const edgeConfigSpec = {
  jit: {
    type: 'boolean',
    flag: 'jit',
    env: 'LEDGE_JIT',
    default: false,
    description:
      'compile hot JavaScript to machine code (V8 Sparkplug + TurboFan) and let V8 size the young generation; off, EdgeCore runs interpreted with a 1 MiB young generation, saving ~6 MiB RSS idle and ~40 MiB with 1,000 reporting device twins',
  },
  cloud: { type: 'string[]', flag: 'cloud', env: 'LEDGE_CLOUD', description: 'CloudHub endpoint URL(s), comma-separated or repeated; tried in order' },
  nodeName: { type: 'string', flag: 'node-name', env: 'LEDGE_NODE_NAME', description: "this node's name (DNS-1123 subdomain)" },
  dataDir: { type: 'string', flag: 'data-dir', env: 'LEDGE_DATA_DIR', default: '/var/lib/ledge', description: 'directory for the metadata store and outbox' },
  ...logConfigFields,
  ...moduleFields('hub', defaultEdgeHubOptions, {
    heartbeatIntervalMs: { type: 'integer', min: 100, flag: 'heartbeat-interval-ms', deprecatedFlags: ['heartbeat-interval'], description: 'keepalive interval (ms)' },
    heartbeatTimeoutMs: {
      type: 'integer',
      min: 200,
      flag: 'heartbeat-timeout-ms',
      deprecatedFlags: ['heartbeat-timeout'],
      description: 'reconnect after this long without traffic (ms)',
    },
    reconnectBaseMs: { type: 'integer', min: 10, description: 'first reconnect backoff cap (ms)' },
    reconnectMaxMs: { type: 'integer', min: 10, flag: 'reconnect-max-ms', deprecatedFlags: ['reconnect-max'], description: 'reconnect backoff cap (ms, full jitter)' },
    handshakeTimeoutMs: { type: 'integer', min: 100, description: 'deadline of one connect attempt: TCP + TLS + WebSocket upgrade, absolute (ms)' },
    closeTimeoutMs: { type: 'integer', min: 100, description: 'time the cloud has to answer a close before the socket is destroyed (ms)' },
    ackTimeoutMs: { type: 'integer', min: 10, description: 'first upstream ACK timeout (ms), doubling per retry' },
    maxFrameBytes: { type: 'integer', min: 1024, max: 64 * 1024 * 1024, flag: 'max-frame-bytes', description: 'largest frame accepted or sent (bytes)' },
    insecureSkipTlsVerify: { type: 'boolean', flag: 'insecure-skip-tls-verify', description: "do not verify CloudHub's certificate (development only)" },
  }),
  'hub.caFile': { type: 'string', flag: 'ca-file', env: 'LEDGE_CA_FILE', optional: true, description: "PEM CA bundle that signed CloudHub's certificate" },
  'hub.certFile': {
    type: 'string',
    flag: 'cert-file',
    env: 'LEDGE_CERT_FILE',
    optional: true,
    description: 'PEM client certificate naming this node (CN=system:node:<name>; written by ledge join); required with wss://',
  },
  'hub.keyFile': { type: 'string', flag: 'key-file', env: 'LEDGE_KEY_FILE', optional: true, description: 'PEM private key of --cert-file' },
  ...moduleFields('nodeStatus', defaultNodeStatusOptions, {
    intervalMs: { type: 'integer', min: 10, flag: 'node-status-interval-ms', deprecatedFlags: ['node-status-interval'], description: 'node status report interval (ms)' },
    kubeletVersion: { type: 'string', description: "nodeInfo.kubeletVersion, kubectl's VERSION column (semver; the default names the Kubernetes version Ledge serves)" },
    memoryAvailableMinBytes: { type: 'integer', min: 0, description: 'MemoryPressure while MemAvailable is below this (bytes; kubelet: memory.available<100Mi)' },
    nodefsAvailableMinPercent: { type: 'number', min: 0, max: 100, description: "DiskPressure while the data directory's filesystem has less than this % available" },
    nodefsInodesFreeMinPercent: { type: 'number', min: 0, max: 100, description: "DiskPressure while the data directory's filesystem has less than this % of its inodes free" },
    pidAvailableMinPercent: { type: 'number', min: 0, max: 100, description: 'PIDPressure while fewer than this % of PIDs (min of pid_max, threads-max) are available' },
    pressureTransitionPeriodMs: { type: 'integer', min: 0, description: 'a pressure condition stays True this long after its signal recovered (ms)' },
  }),
  ...moduleFields(
    'meta',
    { ...defaultMetaStoreOptions, ...defaultMetaManagerOptions },
    {
      compactAfter: { type: 'integer', min: 10, description: 'compact the store once its log holds this many records (and twice as many as objects)' },
      compactMinBytes: { type: 'integer', min: 4096, description: 'compact the store by size only once its log is at least this big (bytes)' },
      compactRatio: { type: 'number', min: 1.5, description: 'compact the store once its log is this many times the size of its live data' },
      maxObjects: { type: 'integer', min: 1, description: 'most objects the metadata store holds; new ones beyond are refused (LEDGE_ERR_STORE_LIMIT)' },
      maxObjectBytes: { type: 'integer', min: 1024, max: 64 * 1024 * 1024, description: 'largest object the metadata store accepts (bytes, encoded)' },
      maxLiveBytes: { type: 'integer', min: 1024 * 1024, description: 'most bytes of objects the metadata store holds; puts that would grow past it are refused' },
      remoteQueryTimeoutMs: { type: 'integer', min: 100, description: 'how long a query for an object the node does not hold waits for the cloud (ms)' },
    },
  ),
  ...moduleFields('metaServer', defaultMetaServerOptions, {
    enabled: { type: 'boolean', env: 'LEDGE_METASERVER_ENABLED', description: "serve the node's local read-only Kubernetes API (MetaServer)" },
    bindAddress: { type: 'string', flag: 'metaserver-bind-address', description: 'MetaServer listen address (plain HTTP: keep it on loopback)' },
    port: { type: 'integer', min: 0, max: 65535, flag: 'metaserver-port', env: 'LEDGE_METASERVER_PORT', description: 'MetaServer listen port (0: any free port)' },
    maxWatches: { type: 'integer', min: 1, max: 10_000, description: 'concurrent MetaServer watches; one more is answered 429' },
    watchHistory: { type: 'integer', min: 10, max: 1_000_000, description: 'recent changes MetaServer keeps so a watch can resume from a resourceVersion (older: 410 Expired)' },
    maxWatchBufferBytes: { type: 'integer', min: 65_536, description: 'bytes a MetaServer watcher may leave unread before its stream is ended' },
  }),
  ...moduleFields('edged', defaultEdgedOptions, {
    defaultRuntime: {
      type: 'enum',
      values: ['process', 'container'],
      flag: 'runtime',
      env: 'LEDGE_RUNTIME',
      description: 'runtime of pods without runtimeClassName: process (child processes, no image) or container (Docker Engine API: Docker or Podman)',
    },
    maxPods: { type: 'integer', min: 1, max: 10_000, flag: 'max-pods', description: 'most pods this node runs; past it a pod is rejected (OutOfpods)' },
    terminationGracePeriodSeconds: { type: 'integer', min: 0, description: 'SIGTERM→SIGKILL grace of pods that set none (s)' },
    backoffBaseMs: { type: 'integer', min: 10, flag: 'restart-backoff-base-ms', description: 'first restart delay of a crashing container after its immediate first restart (ms)' },
    backoffMaxMs: { type: 'integer', min: 10, flag: 'restart-backoff-max-ms', description: 'largest restart delay (ms)' },
    backoffResetMs: { type: 'integer', min: 10, description: 'a run this long starts the restart backoff over (ms)' },
    containerLogMaxBytes: {
      type: 'integer',
      min: 4096,
      flag: 'container-log-max-bytes',
      description: 'size of a container log file before it is rotated (bytes; one rotated file kept)',
    },
    resyncMs: { type: 'integer', min: 100, flag: 'pod-resync-ms', description: 'every pod is re-examined this often without an event (ms)' },
    statusResyncMs: { type: 'integer', min: 1000, description: 'pod status is re-sent this often even when unchanged (ms)' },
    shutdownGraceSeconds: { type: 'integer', min: 0, description: "EdgeCore's shutdown stops process-runtime pods with at most this grace (s)" },
  }),
  // Options of both runtimes, beside containerLogMaxBytes (main.ts passes them to each runtime).
  ...moduleFields('edged', defaultContainerLogRateOptions, {
    containerLogMaxBytesPerSecond: {
      type: 'integer',
      min: 0,
      flag: 'container-log-max-bytes-per-second',
      description: "most bytes of log records a container's output may produce per second, past a burst; faster output is slowed, not dropped (0: unlimited)",
    },
    containerLogBurstBytes: { type: 'integer', min: 4096, description: 'bytes of log records a container may print at once above --container-log-max-bytes-per-second' },
  }),
  ...moduleFields('containerRuntime', defaultContainerRuntimeOptions, {
    socketPath: {
      type: 'string',
      flag: 'container-runtime-endpoint',
      env: 'LEDGE_CONTAINER_RUNTIME_ENDPOINT',
      description: 'Docker Engine API socket of the container runtime (Docker: /var/run/docker.sock; Podman: /run/podman/podman.sock)',
    },
    pauseImage: { type: 'string', flag: 'pod-infra-container-image', description: "image of each pod's infra container (holds the pod's network namespace)" },
    requestTimeoutMs: { type: 'integer', min: 100, description: 'timeout of one container runtime API request (ms)' },
    pullProgressDeadlineMs: { type: 'integer', min: 100, description: 'an image pull without progress this long fails with ErrImagePull (ms)' },
  }),
  // The MQTT device bus (docs/devices.md, "EventBus").
  ...moduleFields('eventBus', defaultEventBusOptions, {
    mode: {
      type: 'enum',
      values: ['internal', 'external', 'both', 'off'],
      flag: 'mqtt-mode',
      env: 'LEDGE_MQTT_MODE',
      description: 'device bus: internal (embedded broker), external (a broker such as Mosquitto), both (bridged) or off',
    },
    bridgeTopics: { type: 'string[]', flag: 'mqtt-bridge-topics', description: 'mode both: topic filters copied between the two brokers' },
  }),
  ...moduleFields('eventBus.internal', defaultEventBusOptions.internal, {
    host: {
      type: 'string',
      flag: 'mqtt-bind-address',
      env: 'LEDGE_MQTT_BIND_ADDRESS',
      description: 'embedded broker listen address (no authentication: keep it on loopback unless the network is trusted)',
    },
    port: { type: 'integer', min: 0, max: 65535, flag: 'mqtt-port', env: 'LEDGE_MQTT_PORT', description: 'embedded broker port (0: any free port)' },
    maxPacketBytes: { type: 'integer', min: 1024, max: 256 * 1024 * 1024, description: 'largest MQTT packet a client may send the embedded broker (bytes)' },
    maxClients: { type: 'integer', min: 1, description: 'clients connected to the embedded broker at once' },
    publishesPerSecond: { type: 'number', min: 1, description: 'publishes per second each client of the embedded broker may make (past the burst: dropped)' },
    publishBurst: { type: 'integer', min: 1, description: 'publishes a client may make at once above the rate' },
    maxRetained: { type: 'integer', min: 0, description: 'retained messages the embedded broker keeps' },
    maxRetainedBytes: { type: 'integer', min: 0, description: 'payload bytes of all retained messages together' },
  }),
  ...moduleFields('eventBus.external', defaultEventBusOptions.external, {
    url: { type: 'string', flag: 'mqtt-server', env: 'LEDGE_MQTT_SERVER', description: 'external broker: mqtt://host:port or mqtts://host:port (TLS)' },
    keepaliveSeconds: { type: 'integer', min: 1, max: 65535, description: 'MQTT keepalive with the external broker (s)' },
    reconnectBaseMs: { type: 'integer', min: 10, description: 'first reconnect delay ceiling to the external broker (ms, full jitter)' },
    reconnectMaxMs: { type: 'integer', min: 10, description: 'largest reconnect delay ceiling to the external broker (ms)' },
    maxPacketBytes: { type: 'integer', min: 1024, max: 256 * 1024 * 1024, description: 'largest packet accepted from the external broker (bytes)' },
    maxQueued: { type: 'integer', min: 1, description: 'QoS 1 messages waiting for the external broker' },
    connectTimeoutMs: { type: 'integer', min: 100, description: 'time the external broker has to answer CONNECT (ms)' },
  }),
  'eventBus.external.username': { type: 'string', flag: 'mqtt-username', env: 'LEDGE_MQTT_USERNAME', optional: true, description: 'user name at the external broker' },
  'eventBus.external.password': {
    type: 'string',
    env: 'LEDGE_MQTT_PASSWORD',
    optional: true,
    description: 'password at the external broker (environment or config file only: a flag would show in ps)',
  },
  'eventBus.external.caFile': { type: 'string', flag: 'mqtt-ca-file', optional: true, description: "PEM CA bundle that signed the external broker's certificate (mqtts)" },
  'eventBus.external.certFile': { type: 'string', flag: 'mqtt-cert-file', optional: true, description: 'PEM client certificate for the external broker (mqtts)' },
  'eventBus.external.keyFile': { type: 'string', flag: 'mqtt-key-file', optional: true, description: 'PEM private key of --mqtt-cert-file' },
  'eventBus.external.insecureSkipTlsVerify': {
    type: 'boolean',
    flag: 'mqtt-insecure-skip-tls-verify',
    default: false,
    description: "do not verify the external broker's certificate (development only)",
  },
  'eventBus.external.clientId': { type: 'string', flag: 'mqtt-client-id', optional: true, description: 'MQTT client id at the external broker (default ledge-<random>)' },
  // Device twins (docs/devices.md, "DeviceTwin").
  ...moduleFields('twin', defaultDeviceTwinOptions, {
    reportIntervalMs: {
      type: 'integer',
      min: 10,
      flag: 'twin-report-interval-ms',
      description: 'reported twins are sent to the cloud at most this often (ms; latest value per property wins)',
    },
    maxReportsPerMessage: { type: 'integer', min: 1, max: 10_000, description: 'device reports in one upstream message' },
    maxReportBytes: { type: 'integer', min: 4096, max: 1024 * 1024, description: 'bytes of device reports in one upstream message (below the frame limit)' },
    maxPayloadBytes: { type: 'integer', min: 256, description: 'largest MQTT payload handled on the twin topics (bigger: result code 413)' },
    maxDevices: { type: 'integer', min: 1, description: 'devices this node holds twins for' },
    maxValueBytes: { type: 'integer', min: 16, description: 'longest twin value (bytes of UTF-8)' },
    maxPropertyNameBytes: { type: 'integer', min: 16, description: 'longest property name in a twin message (bytes)' },
    maxPendingMessages: { type: 'integer', min: 1, description: 'MQTT twin messages waiting to be handled (past it: result code 429)' },
  }),
  // DMI, the gRPC interface of KubeEdge's mappers (docs/devices.md, "DMI").
  'dmi.enabled': { type: 'boolean', flag: 'dmi', env: 'LEDGE_DMI', default: true, description: 'serve DMI (DeviceManagerService) to mappers on --dmi-socket' },
  ...moduleFields('dmi', defaultDmiAdapterOptions, {
    socketPath: {
      type: 'string',
      flag: 'dmi-socket',
      env: 'LEDGE_DMI_SOCKET',
      description: 'unix socket of DeviceManagerService (KubeEdge: /etc/kubeedge/dmi.sock; relative: under --data-dir; unwritable: <data-dir>/dmi.sock)',
    },
    callTimeoutMs: { type: 'integer', min: 100, description: 'deadline of each call to a mapper (ms)' },
    callsPerSecond: { type: 'number', min: 0, description: 'DMI calls per second from all mappers together (0: unlimited)' },
    burst: { type: 'integer', min: 1, description: 'DMI calls at once above the rate' },
    maxMessageBytes: { type: 'integer', min: 4096, max: 64 * 1024 * 1024, description: 'largest DMI request a mapper may send (bytes)' },
    retryBaseMs: { type: 'integer', min: 10, description: 'first retry delay ceiling while a mapper is unreachable (ms)' },
    retryMaxMs: { type: 'integer', min: 10, description: 'largest retry delay to a mapper (ms)' },
    maxMappers: { type: 'integer', min: 1, description: 'mappers (protocols) registered at once' },
  }),
} as const satisfies ConfigSpec;

/** EdgeCore's loaded configuration, derived from {@link edgeConfigSpec}. */
export type EdgeConfig = ConfigOf<typeof edgeConfigSpec>;

export const edgeUsage =
  'Usage: ledge edge --cloud <wss://host:10000> --node-name <name> [--data-dir <dir>] [options]\n       node edgecore.js <same options>\n\nRuns EdgeCore on this device.';
