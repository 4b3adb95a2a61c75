/**
 * @module
 * CloudCore configuration: defaults < file (`--config cloudcore.yaml`) < env < flags.
 */
import type { ConfigSpec } from '../shared/config/index.js';
import { logLevels, type LogLevel } from '../shared/log/index.js';

export interface CloudConfig {
  log: { level: LogLevel; format?: 'json' | 'text' };
  hub: {
    host: string;
    port: number;
    tls?: { certFile?: string; keyFile?: string; caFile?: string };
    heartbeatIntervalMs: number;
    heartbeatTimeoutMs: number;
    ackTimeoutMs: number;
    maxFrameBytes: number;
    maxQueuedPerNode: number;
    upstreamQps: number;
    upstreamBurst: number;
    maxNodes: number;
    maxUnflushedBytes: number;
    slowPeerTimeoutMs: number;
  };
  /** Run the embedded local control plane in this process (no cluster needed). */
  local: boolean;
  /** kubeconfig of the cluster; absent: in-cluster service account, or none (hub only). */
  kubeconfig?: string;
  controllers: { reconcileIntervalMs: number };
  leaderElection: { namespace: string; leaseDurationMs: number; renewIntervalMs: number; identity?: string };
  dataDir: string;
  apiserver: { port: number; kubeconfig?: string };
}

export const cloudConfigSpec: ConfigSpec = {
  'log.level': { type: 'enum', values: logLevels, flag: 'log-level', env: 'LEDGE_LOG_LEVEL', default: 'info', description: 'minimum log level' },
  'log.format': { type: 'enum', values: ['json', 'text'], flag: 'log-format', env: 'LEDGE_LOG_FORMAT', optional: true, description: 'log format (default: text on a TTY, else json)' },
  // Loopback by default: nodes name themselves (no client certificates yet), so serving other machines is an explicit choice.
  'hub.host': { type: 'string', flag: 'host', env: 'LEDGE_CLOUDHUB_HOST', default: '127.0.0.1', description: 'CloudHub listen address (0.0.0.0: every interface; node identity is self-declared, see docs/design.md)' },
  'hub.port': { type: 'integer', min: 0, max: 65535, flag: 'port', short: 'p', env: 'LEDGE_CLOUDHUB_PORT', default: 10000, description: 'CloudHub WebSocket port (0 = any free port)' },
  'hub.tls.certFile': { type: 'string', flag: 'tls-cert-file', env: 'LEDGE_TLS_CERT_FILE', optional: true, description: 'PEM server certificate (enables wss://)' },
  'hub.tls.keyFile': { type: 'string', flag: 'tls-key-file', env: 'LEDGE_TLS_KEY_FILE', optional: true, description: 'PEM server private key' },
  'hub.tls.caFile': { type: 'string', flag: 'tls-ca-file', env: 'LEDGE_TLS_CA_FILE', optional: true, description: 'PEM CA bundle for client certificates' },
  'hub.heartbeatIntervalMs': { type: 'integer', min: 100, flag: 'heartbeat-interval', default: 15_000, description: 'ping interval (ms)' },
  'hub.heartbeatTimeoutMs': { type: 'integer', min: 200, flag: 'heartbeat-timeout', default: 45_000, description: 'close a session silent for this long (ms)' },
  'hub.ackTimeoutMs': { type: 'integer', min: 10, flag: 'ack-timeout', default: 5_000, description: 'first ACK timeout (ms), doubling per retry' },
  'hub.maxFrameBytes': { type: 'integer', min: 1024, max: 64 * 1024 * 1024, flag: 'max-frame-bytes', default: 1024 * 1024, description: 'largest frame accepted (bytes)' },
  'hub.maxQueuedPerNode': { type: 'integer', min: 1, default: 10_000, description: 'per-node queue bound' },
  'hub.upstreamQps': { type: 'number', min: 0.1, default: 200, description: 'frames/s per node (messages, keepalives, pings…) before reading from it is throttled' },
  'hub.upstreamBurst': { type: 'integer', min: 1, default: 400, description: 'upstream burst per node (frames)' },
  'hub.maxNodes': { type: 'integer', min: 1, default: 20_000, description: 'live nodes (connected or with pending messages) tracked by this process' },
  'hub.maxUnflushedBytes': { type: 'integer', min: 64 * 1024, default: 8 * 1024 * 1024, description: 'bytes written to a session and not yet flushed before CloudHub stops reading from it' },
  'hub.slowPeerTimeoutMs': { type: 'integer', min: 100, default: 30_000, description: 'close a session that stays over hub.maxUnflushedBytes this long (ms, close 1008)' },
  kubeconfig: { type: 'string', flag: 'kubeconfig', env: 'LEDGE_KUBECONFIG', optional: true, description: 'kubeconfig of the cluster (default: in-cluster service account; without either, controllers are off)' },
  'controllers.reconcileIntervalMs': { type: 'integer', min: 100, flag: 'reconcile-interval', default: 30_000, description: 'full reconcile of connected nodes against their sync records (ms)' },
  'leaderElection.namespace': { type: 'string', default: 'kube-system', description: 'namespace of the leader-election Lease' },
  'leaderElection.leaseDurationMs': { type: 'integer', min: 1000, flag: 'leader-lease-duration', default: 15_000, description: 'leader lease duration (ms)' },
  'leaderElection.renewIntervalMs': { type: 'integer', min: 100, flag: 'leader-renew-interval', default: 5_000, description: 'leader lease renew interval (ms)' },
  'leaderElection.identity': { type: 'string', flag: 'identity', env: 'LEDGE_IDENTITY', optional: true, description: 'this replica\'s identity (default: hostname_pid)' },
  local: { type: 'boolean', flag: 'local', env: 'LEDGE_LOCAL', default: false, description: 'run the embedded local control plane (no cluster needed)' },
  dataDir: { type: 'string', flag: 'data-dir', env: 'LEDGE_DATA_DIR', default: './.ledge/cloud', description: 'data directory of the local control plane' },
  'apiserver.port': { type: 'integer', min: 0, max: 65535, flag: 'apiserver-port', default: 6443, description: 'local control plane port (with --local)' },
  'apiserver.kubeconfig': { type: 'string', flag: 'write-kubeconfig', optional: true, description: 'where --local writes its kubeconfig (default <data-dir>/kubeconfig)' },
};

export const cloudUsage = 'Usage: ledge cloud [--port 10000] [--config cloudcore.yaml] [--local] [options]\n\nRuns CloudCore.';
