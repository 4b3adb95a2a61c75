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
import { defaultMetaStoreOptions } from './metamanager/options.js';

export const edgeConfigSpec = {
  jit: {
    type: 'boolean',
    flag: 'jit',
    env: 'LEDGE_JIT',
    default: false,
    description: 'compile hot JavaScript to machine code (V8 Sparkplug + TurboFan); off, EdgeCore runs interpreted and saves ~6 MiB RSS at steady state',
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
  ...moduleFields('nodeStatus', defaultNodeStatusOptions, {
    intervalMs: { type: 'integer', min: 10, flag: 'node-status-interval-ms', deprecatedFlags: ['node-status-interval'], description: 'node status report interval (ms)' },
  }),
  ...moduleFields('meta', defaultMetaStoreOptions, {
    compactAfter: { type: 'integer', min: 10, description: 'compact the store once its log holds this many records (and twice as many as objects)' },
    compactMinBytes: { type: 'integer', min: 4096, description: 'compact the store by size only once its log is at least this big (bytes)' },
    compactRatio: { type: 'number', min: 1.5, description: 'compact the store once its log is this many times the size of its live data' },
  }),
} as const satisfies ConfigSpec;

/** EdgeCore's loaded configuration, derived from {@link edgeConfigSpec}. */
export type EdgeConfig = ConfigOf<typeof edgeConfigSpec>;

export const edgeUsage =
  'Usage: ledge edge --cloud <wss://host:10000> --node-name <name> [--data-dir <dir>] [options]\n       node edgecore.js <same options>\n\nRuns EdgeCore on this device.';
