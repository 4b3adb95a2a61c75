/**
 * @module
 * CloudCore configuration: defaults < file (`--config cloudcore.yaml`) < env < flags.
 *
 * The spec below is the only declaration of a field: {@link CloudConfig} is derived from
 * it, and every field backed by a module option takes that module's default
 * (`moduleFields`), so no default is written here that a module also has. Flag names:
 * docs/design.md, "Configuration: one source of truth".
 */
import { moduleFields, type ConfigOf, type ConfigSpec } from '../shared/config/index.js';
import { logConfigFields } from '../shared/log/index.js';
import { defaultCloudHubOptions } from './cloudhub/options.js';
import { defaultSyncControllerOptions } from './synccontroller/options.js';
import { defaultLeaderElectionOptions } from './leaderelection/options.js';
import { defaultCloudStreamOptions } from './cloudstream/options.js';
import { defaultDeviceControllerOptions } from './devicecontroller/options.js';
import { defaultDeviceWebhookOptions } from './devicewebhook/options.js';
import { defaultCertificateAuthorityOptions } from './certauthority/options.js';
// Constants only (no imports): reading them does not bundle the control plane into dist/cloudcore.js.
import { defaultApiServerOptions } from '../apiserver/options.js';

export const cloudConfigSpec = {
  ...logConfigFields,
  ...moduleFields('hub', defaultCloudHubOptions, {
    // Loopback by default: serving other machines is an explicit choice (and needs TLS with a client CA).
    host: {
      type: 'string',
      flag: 'bind-address',
      env: 'LEDGE_CLOUDHUB_BIND_ADDRESS',
      deprecatedFlags: ['host'],
      deprecatedEnv: ['LEDGE_CLOUDHUB_HOST'],
      description: 'CloudHub listen address (0.0.0.0: every interface; other than loopback needs --tls-cert-file, --tls-key-file and --tls-ca-file)',
    },
    insecurePlainWebSocket: {
      type: 'boolean',
      flag: 'insecure-plain-websocket',
      env: 'LEDGE_CLOUDHUB_INSECURE_PLAIN_WEBSOCKET',
      description: 'serve plain ws:// without authentication, nodes naming themselves (no TLS; loopback bind address only; development only)',
    },
    port: { type: 'integer', min: 0, max: 65535, flag: 'port', short: 'p', env: 'LEDGE_CLOUDHUB_PORT', description: 'CloudHub WebSocket port (0 = any free port)' },
    heartbeatIntervalMs: { type: 'integer', min: 100, flag: 'heartbeat-interval-ms', deprecatedFlags: ['heartbeat-interval'], description: 'ping interval (ms)' },
    heartbeatTimeoutMs: {
      type: 'integer',
      min: 200,
      flag: 'heartbeat-timeout-ms',
      deprecatedFlags: ['heartbeat-timeout'],
      description: 'close a session silent for this long (ms)',
    },
    ackTimeoutMs: { type: 'integer', min: 10, flag: 'ack-timeout-ms', deprecatedFlags: ['ack-timeout'], description: 'first ACK timeout (ms), doubling per retry' },
    maxFrameBytes: { type: 'integer', min: 1024, max: 64 * 1024 * 1024, flag: 'max-frame-bytes', description: 'largest frame accepted (bytes)' },
    maxQueuedPerNode: { type: 'integer', min: 1, description: 'per-node queue bound' },
    upstreamQps: { type: 'number', min: 0.1, description: 'frames/s per node (messages, keepalives, pings…) before reading from it is throttled' },
    upstreamBurst: { type: 'integer', min: 1, description: 'upstream burst per node (frames)' },
    maxNodes: { type: 'integer', min: 1, description: 'live nodes (connected or with pending messages) tracked by this process' },
    maxUnflushedBytes: { type: 'integer', min: 64 * 1024, description: 'bytes written to a session and not yet flushed before CloudHub stops reading from it' },
    slowPeerTimeoutMs: { type: 'integer', min: 100, description: 'close a session that stays over hub.maxUnflushedBytes this long (ms, close 1008)' },
  }),
  'hub.tls.certFile': { type: 'string', flag: 'tls-cert-file', env: 'LEDGE_TLS_CERT_FILE', optional: true, description: 'PEM server certificate chain of CloudHub (wss://)' },
  'hub.tls.keyFile': { type: 'string', flag: 'tls-key-file', env: 'LEDGE_TLS_KEY_FILE', optional: true, description: 'PEM server private key' },
  'hub.tls.caFile': {
    type: 'string',
    flag: 'tls-ca-file',
    env: 'LEDGE_TLS_CA_FILE',
    optional: true,
    description: "PEM CA that signs the nodes' client certificates (subject CN=system:node:<name>, O=system:nodes: the node's identity)",
  },
  // CloudCore's node CA (issue 13, docs/security.md): the operator's files, else the `ledge-ca` Secret (made at first start).
  'ca.certFile': {
    type: 'string',
    flag: 'ca-cert-file',
    env: 'LEDGE_CA_CERT_FILE',
    optional: true,
    description: 'PEM CA certificate that signs node and CloudHub certificates (default: the ledge-ca Secret, created at first start)',
  },
  'ca.keyFile': { type: 'string', flag: 'ca-key-file', env: 'LEDGE_CA_KEY_FILE', optional: true, description: 'PEM private key of --ca-cert-file' },
  'ca.namespace': {
    type: 'string',
    flag: 'ca-namespace',
    optional: true,
    description: 'namespace of the ledge-ca Secret and the join tokens (default: the leader election namespace)',
  },
  'ca.tlsSans': {
    type: 'string[]',
    flag: 'tls-san',
    env: 'LEDGE_CLOUDHUB_TLS_SANS',
    default: [],
    description: "extra names (DNS or IP) in CloudHub's serving certificate: the addresses nodes dial (127.0.0.1, localhost and a specific bind address are always in)",
  },
  // Node certificates renew at 80 % of this (POST /v1/renew, issue 13); seconds-long ones are for tests.
  ...moduleFields('ca', defaultCertificateAuthorityOptions, {
    nodeCertLifetimeMs: {
      type: 'integer',
      min: 2000,
      flag: 'node-cert-lifetime-ms',
      description: 'lifetime of the node client certificates CloudCore issues at join and renewal (ms; nodes renew at 80 % of it)',
    },
  }),
  ...moduleFields('stream', defaultCloudStreamOptions, {
    enabled: {
      type: 'boolean',
      flag: 'stream',
      env: 'LEDGE_STREAM',
      description: "serve kubectl logs/exec/attach of edge pods (CloudStream, the edge nodes' kubelet endpoint; docs/streams.md)",
    },
    host: {
      type: 'string',
      flag: 'stream-bind-address',
      env: 'LEDGE_STREAM_BIND_ADDRESS',
      description: 'CloudStream listen address (kube-apiserver and the other replicas must reach it)',
    },
    port: { type: 'integer', min: 0, max: 65535, flag: 'stream-port', env: 'LEDGE_STREAM_PORT', description: 'CloudStream HTTPS port (0 = any free port)' },
    insecureNoClientAuth: { type: 'boolean', flag: 'stream-insecure-no-client-auth', description: 'serve CloudStream without authentication (development only)' },
    namespace: { type: 'string', flag: 'stream-namespace', description: 'namespace of the per-node stream Leases and the peer Secret' },
    maxConcurrent: { type: 'integer', min: 1, flag: 'stream-max-concurrent', description: 'streams served at once by this replica (beyond: 503)' },
    openTimeoutMs: { type: 'integer', min: 100, flag: 'stream-open-timeout-ms', description: 'how long the edge has to accept a stream (beyond: 504)' },
  }),
  'stream.advertiseAddress': {
    type: 'string',
    flag: 'stream-advertise-address',
    env: 'LEDGE_STREAM_ADVERTISE_ADDRESS',
    optional: true,
    description: 'address written into edge Nodes, what kube-apiserver dials (default: the bind address if specific, else the first non-internal IPv4)',
  },
  'stream.advertisePort': {
    type: 'integer',
    min: 1,
    max: 65535,
    flag: 'stream-advertise-port',
    optional: true,
    description: 'port written into edge Nodes (default: the listen port)',
  },
  'stream.peerAddress': {
    type: 'string',
    flag: 'stream-peer-address',
    env: 'LEDGE_STREAM_PEER_ADDRESS',
    optional: true,
    description: 'https://host:port other replicas use to reach this one (default https://<advertise address>:<port>)',
  },
  'stream.tlsCertFile': {
    type: 'string',
    flag: 'stream-tls-cert-file',
    optional: true,
    description: 'PEM serving certificate of CloudStream (default: self-signed, made once in <data-dir>/cloudstream/)',
  },
  'stream.tlsKeyFile': { type: 'string', flag: 'stream-tls-key-file', optional: true, description: 'PEM key of --stream-tls-cert-file' },
  'stream.clientCaFile': {
    type: 'string',
    flag: 'stream-client-ca-file',
    env: 'LEDGE_STREAM_CLIENT_CA_FILE',
    optional: true,
    description: "CA of kube-apiserver's --kubelet-client-certificate (required to serve the API server; in a pod: default the service account's ca.crt)",
  },
  kubeconfig: {
    type: 'string',
    flag: 'kubeconfig',
    env: 'LEDGE_KUBECONFIG',
    optional: true,
    description: 'kubeconfig of the cluster (default: in-cluster service account; without either, controllers are off)',
  },
  ...moduleFields('controllers', defaultSyncControllerOptions, {
    reconcileIntervalMs: {
      type: 'integer',
      min: 100,
      flag: 'reconcile-interval-ms',
      deprecatedFlags: ['reconcile-interval'],
      description: 'full reconcile of connected nodes against their sync records (ms)',
    },
  }),
  ...moduleFields('devices', defaultDeviceControllerOptions, {
    statusWritesPerSecond: {
      type: 'number',
      min: 0.1,
      flag: 'device-status-writes-per-second',
      description: 'ceiling of DeviceStatus writes per second, all devices together (reports in between are coalesced, latest wins)',
    },
    statusBurst: { type: 'integer', min: 1, description: 'DeviceStatus writes that may go at once after a quiet spell' },
    minStatusWritesPerSecond: { type: 'number', min: 0.1, description: 'floor the DeviceStatus write rate falls to while the API server pushes back (429/5xx)' },
    statusWriteConcurrency: { type: 'integer', min: 1, max: 256, description: 'DeviceStatus writes in flight at once' },
    maxReportsPerBatch: { type: 'integer', min: 1, description: 'device reports handled from one upstream message' },
    maxTwinValueBytes: { type: 'integer', min: 16, description: 'longest reported twin value (bytes)' },
    syncTimeoutMs: { type: 'integer', min: 1000, description: 'how long desired sets wait for the device informers before they count as empty (ms)' },
    installCrds: { type: 'boolean', flag: 'install-device-crds', description: 'install the devices.kubeedge.io CRDs where they are missing' },
  }),
  // The device validation webhook (real clusters; the local control plane validates by itself): on when given a certificate.
  ...moduleFields('deviceWebhook', defaultDeviceWebhookOptions, {
    host: { type: 'string', flag: 'webhook-bind-address', description: 'device validation webhook listen address (in a pod: 0.0.0.0)' },
    port: { type: 'integer', min: 0, max: 65535, flag: 'webhook-port', description: 'device validation webhook HTTPS port (0 = any free port)' },
    maxBodyBytes: { type: 'integer', min: 65_536, description: 'largest AdmissionReview the webhook reads (bytes)' },
    requestTimeoutMs: { type: 'integer', min: 100, description: 'a webhook request must arrive whole within this time (ms)' },
    maxConnections: { type: 'integer', min: 1, description: 'webhook connections served at once' },
  }),
  'deviceWebhook.certFile': {
    type: 'string',
    flag: 'webhook-tls-cert-file',
    optional: true,
    description: "PEM serving certificate of the device validation webhook (its names include the Service's <svc>.<ns>.svc); enables the webhook",
  },
  'deviceWebhook.keyFile': { type: 'string', flag: 'webhook-tls-key-file', optional: true, description: 'PEM key of --webhook-tls-cert-file' },
  ...moduleFields('leaderElection', defaultLeaderElectionOptions, {
    namespace: { type: 'string', description: 'namespace of the leader-election Lease' },
    leaseDurationMs: { type: 'integer', min: 1000, flag: 'leader-lease-duration-ms', deprecatedFlags: ['leader-lease-duration'], description: 'leader lease duration (ms)' },
    renewIntervalMs: { type: 'integer', min: 100, flag: 'leader-renew-interval-ms', deprecatedFlags: ['leader-renew-interval'], description: 'leader lease renew interval (ms)' },
  }),
  'leaderElection.identity': { type: 'string', flag: 'identity', env: 'LEDGE_IDENTITY', optional: true, description: "this replica's identity (default: hostname_pid)" },
  local: {
    type: 'boolean',
    flag: 'local',
    env: 'LEDGE_LOCAL',
    default: false,
    description: 'run the embedded local control plane (no cluster needed; the ledge CLI only, not dist/cloudcore.js)',
  },
  dataDir: { type: 'string', flag: 'data-dir', env: 'LEDGE_DATA_DIR', default: './.ledge/cloud', description: 'data directory of the local control plane' },
  ...moduleFields('apiserver', defaultApiServerOptions, {
    port: { type: 'integer', min: 0, max: 65535, flag: 'apiserver-port', description: 'local control plane port (with --local)' },
  }),
  'apiserver.kubeconfig': { type: 'string', flag: 'write-kubeconfig', optional: true, description: 'where --local writes its kubeconfig (default <data-dir>/kubeconfig)' },
} as const satisfies ConfigSpec;

/** CloudCore's loaded configuration, derived from {@link cloudConfigSpec}. */
export type CloudConfig = ConfigOf<typeof cloudConfigSpec>;

export const cloudUsage = 'Usage: ledge cloud [--port 10000] [--config cloudcore.yaml] [--local] [options]\n\nRuns CloudCore.';
