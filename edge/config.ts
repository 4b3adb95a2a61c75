/**
 * @module
 * EdgeCore configuration: defaults < file (`--config edgecore.yaml`) < env < flags.
 */
import type { ConfigSpec } from '../shared/config/index.js';
import { logLevels, type LogLevel } from '../shared/log/index.js';

export interface EdgeConfig {
  cloud: string[];
  nodeName: string;
  dataDir: string;
  log: { level: LogLevel; format?: 'json' | 'text' };
  hub: {
    heartbeatIntervalMs: number;
    heartbeatTimeoutMs: number;
    reconnectBaseMs: number;
    reconnectMaxMs: number;
    ackTimeoutMs: number;
    handshakeTimeoutMs: number;
    closeTimeoutMs: number;
    maxFrameBytes: number;
    caFile?: string;
    insecureSkipTlsVerify: boolean;
  };
  nodeStatus: { intervalMs: number };
  meta: { compactAfter: number; compactMinBytes: number; compactRatio: number };
  /** V8's compilers to machine code (Sparkplug, TurboFan); off by default (see docs/design.md, "Edge memory"). */
  jit: boolean;
}

export const edgeConfigSpec: ConfigSpec = {
  jit: { type: 'boolean', flag: 'jit', env: 'LEDGE_JIT', default: false, description: 'compile hot JavaScript to machine code (V8 Sparkplug + TurboFan); off, EdgeCore runs interpreted and saves ~4 MiB RSS' },
  cloud: { type: 'string[]', flag: 'cloud', env: 'LEDGE_CLOUD', description: 'CloudHub endpoint URL(s), comma-separated or repeated; tried in order' },
  nodeName: { type: 'string', flag: 'node-name', env: 'LEDGE_NODE_NAME', description: 'this node\'s name (DNS-1123 subdomain)' },
  dataDir: { type: 'string', flag: 'data-dir', env: 'LEDGE_DATA_DIR', default: '/var/lib/ledge', description: 'directory for the metadata store and outbox' },
  'log.level': { type: 'enum', values: logLevels, flag: 'log-level', env: 'LEDGE_LOG_LEVEL', default: 'info', description: 'minimum log level' },
  'log.format': { type: 'enum', values: ['json', 'text'], flag: 'log-format', env: 'LEDGE_LOG_FORMAT', optional: true, description: 'log format (default: text on a TTY, else json)' },
  'hub.heartbeatIntervalMs': { type: 'integer', min: 100, flag: 'heartbeat-interval', default: 15_000, description: 'keepalive interval (ms)' },
  'hub.heartbeatTimeoutMs': { type: 'integer', min: 200, flag: 'heartbeat-timeout', default: 45_000, description: 'reconnect after this long without traffic (ms)' },
  'hub.reconnectBaseMs': { type: 'integer', min: 10, default: 500, description: 'first reconnect backoff cap (ms)' },
  'hub.reconnectMaxMs': { type: 'integer', min: 10, flag: 'reconnect-max', default: 30_000, description: 'reconnect backoff cap (ms, full jitter)' },
  'hub.handshakeTimeoutMs': { type: 'integer', min: 100, default: 30_000, description: 'deadline of one connect attempt: TCP + TLS + WebSocket upgrade, absolute (ms)' },
  'hub.closeTimeoutMs': { type: 'integer', min: 100, default: 5_000, description: 'time the cloud has to answer a close before the socket is destroyed (ms)' },
  'hub.ackTimeoutMs': { type: 'integer', min: 10, default: 5_000, description: 'first upstream ACK timeout (ms), doubling per retry' },
  'hub.maxFrameBytes': { type: 'integer', min: 1024, max: 64 * 1024 * 1024, flag: 'max-frame-bytes', default: 1024 * 1024, description: 'largest frame accepted or sent (bytes)' },
  'hub.caFile': { type: 'string', flag: 'ca-file', env: 'LEDGE_CA_FILE', optional: true, description: 'PEM CA bundle that signed CloudHub\'s certificate' },
  'hub.insecureSkipTlsVerify': { type: 'boolean', flag: 'insecure-skip-tls-verify', default: false, description: 'do not verify CloudHub\'s certificate (development only)' },
  'nodeStatus.intervalMs': { type: 'integer', min: 10, flag: 'node-status-interval', default: 10_000, description: 'node status report interval (ms)' },
  'meta.compactAfter': { type: 'integer', min: 10, default: 10_000, description: 'compact the store once its log holds this many records (and twice as many as objects)' },
  'meta.compactMinBytes': { type: 'integer', min: 4096, default: 16 * 1024 * 1024, description: 'compact the store by size only once its log is at least this big (bytes)' },
  'meta.compactRatio': { type: 'number', min: 1.5, default: 2, description: 'compact the store once its log is this many times the size of its live data' },
};

export const edgeUsage = 'Usage: ledge edge --cloud <wss://host:10000> --node-name <name> [--data-dir <dir>] [options]\n       node edgecore.js <same options>\n\nRuns EdgeCore on this device.';
