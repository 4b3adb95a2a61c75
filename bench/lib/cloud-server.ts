/**
 * @module
 * Benchmark CloudCore: a child process (forked with an IPC channel) that runs
 * `startCloudCore` on 127.0.0.1, port 0, logging at warn (JSON lines on stderr), with
 * TLS when BENCH_TLS_CERT and BENCH_TLS_KEY name PEM files, and answers commands from the benchmark over IPC:
 *
 * - `{ cmd: 'mem' }` → runs gc() until the heap settles (needs --expose-gc), then
 *   replies with process.memoryUsage(), /proc/self/status numbers and the number of
 *   connected nodes. The parent samples /proc/PID/status itself as well.
 * - `{ cmd: 'broadcast', id, contentBytes, timeoutMs }` → queues one sync `update`
 *   of a configmap (resourceVersion set) for every connected node (resource prefix
 *   `node/*\/`, the same path as a Beehive broadcast), and timestamps each node's
 *   ACK as CloudHub publishes it on `ledge:cloudhub:ack`. Replies with the per-node
 *   latencies (ms from the send call, same clock, same process).
 * - `{ cmd: 'nodes' }` → `{ type: 'nodes', names }`: the connected nodes.
 * - `{ cmd: 'eld' }` / `{ cmd: 'eld-reset' }` → this process's event-loop delay (bench/lib/eld.ts).
 * - `{ cmd: 'stop' }` → stops CloudCore and exits.
 *
 * Sends `{ type: 'ready', port, pid }` once CloudHub listens.
 * Started by bench/cloudhub-scale.ts and bench/edge-memory.ts (bundled first, so
 * no TypeScript loader sits in the measured process).
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import { startCloudCore, type CloudCore } from '../../cloud/main.js';
import { cloudConfigSpec } from '../../cloud/config.js';
import { loadConfig } from '../../shared/config/index.js';
import { createLogger } from '../../shared/log/index.js';
import { Group, ModuleName, Operation, ResourceType, buildResource, createCborCodec, newMessage } from '../../shared/protocol/index.js';
import { readRss } from './rss.js';
import { eventLoopDelayProbe } from './eld.js';

export interface BroadcastReply {
  type: 'broadcast';
  id: number;
  nodes: number;
  acked: number;
  frameBytes: number;
  /** Time the synchronous send call took (encode + enqueue + first transmit for every node). */
  sendCallMs: number;
  /** Per-node ms from the send call to the ACK reaching CloudHub, in ACK order. */
  latencies: number[];
  timedOut: boolean;
}

export interface MemReply {
  type: 'mem';
  connected: number;
  rss: number;
  rssAnon: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

type Command = { cmd: 'mem' } | { cmd: 'nodes' } | { cmd: 'broadcast'; id: number; contentBytes: number; timeoutMs: number } | { cmd: 'stop' };

const send = (m: unknown): void => {
  process.send?.(m);
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Full GCs until heapUsed stops shrinking (at most 6). */
async function settle(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return;
  let last = Infinity;
  for (let i = 0; i < 6; i++) {
    gc();
    await sleep(150);
    const used = process.memoryUsage().heapUsed;
    if (last - used < 64 * 1024) break;
    last = used;
  }
}

/** A ~`bytes`-sized ConfigMap, as the API server would send it. */
export function configMap(bytes: number, rv: string): Record<string, unknown> {
  const cm = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'fleet-settings',
      namespace: 'default',
      uid: '0f6b1d8e-3c2a-4e59-9b7d-5a1c2e3f4d60',
      resourceVersion: rv,
      creationTimestamp: '2024-11-19T07:06:40Z',
      labels: { app: 'fleet', 'app.kubernetes.io/managed-by': 'ledge' },
    },
    data: {} as Record<string, string>,
  };
  let i = 0;
  while (JSON.stringify(cm).length < bytes) cm.data[`setting.${i++}`] = `value-${i}-${'x'.repeat(40)}`;
  return cm;
}

async function main(): Promise<void> {
  const { config } = await loadConfig(cloudConfigSpec, {
    argv: [
      '--bind-address',
      '127.0.0.1',
      '--port',
      '0',
      '--log-level',
      process.env.BENCH_CLOUD_LOG_LEVEL ?? 'warn',
      '--log-format',
      'json',
      // wss:// when the parent passes a certificate (BENCH_TLS=1 in bench/cloudhub-scale.ts).
      // Without one, plain ws:// (the simulated nodes name themselves). The TLS run needs --tls-ca-file and node client certificates since #13.
      ...(process.env.BENCH_TLS_CERT && process.env.BENCH_TLS_KEY
        ? ['--tls-cert-file', process.env.BENCH_TLS_CERT, '--tls-key-file', process.env.BENCH_TLS_KEY]
        : ['--insecure-plain-websocket']),
    ],
    env: {},
  });
  const log = createLogger({ level: config.log.level, format: 'json' });
  const core: CloudCore = await startCloudCore(config, log);
  let connected = 0;
  subscribe('ledge:cloudhub:connected', () => void connected++);
  subscribe('ledge:cloudhub:disconnected', () => void connected--);
  const codec = createCborCodec();
  let rv = 1000;

  const eld = eventLoopDelayProbe();
  process.on('message', (raw) => {
    if (eld(raw as { cmd?: string })) return;
    const c = raw as Command;
    if (c.cmd === 'stop') {
      const hard = setTimeout(() => process.exit(0), 5000);
      hard.unref();
      core.stop().finally(() => process.exit(0));
      return;
    }
    if (c.cmd === 'nodes') {
      send({ type: 'nodes', names: core.hub.connectedNodes() });
      return;
    }
    if (c.cmd === 'mem') {
      void settle().then(() => {
        const m = process.memoryUsage();
        const r = readRss('self');
        const reply: MemReply = {
          type: 'mem',
          connected,
          rss: r.rss,
          rssAnon: r.rssAnon,
          heapUsed: m.heapUsed,
          heapTotal: m.heapTotal,
          external: m.external,
          arrayBuffers: m.arrayBuffers,
        };
        send(reply);
      });
      return;
    }
    if (c.cmd === 'broadcast') {
      const resourceVersion = String(++rv);
      const msg = newMessage({
        source: ModuleName.EdgeController,
        group: Group.Resource,
        operation: Operation.Update,
        resource: buildResource('default', ResourceType.ConfigMap, 'fleet-settings'),
        content: configMap(c.contentBytes, resourceVersion),
        sync: true,
        resourceVersion,
      });
      const frameBytes = codec.encode(msg).length;
      const nodes = connected;
      const latencies: number[] = [];
      let t0 = 0;
      let finished = false;
      const finish = (timedOut: boolean) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        unsubscribe('ledge:cloudhub:ack', onAck);
        const reply: BroadcastReply = { type: 'broadcast', id: c.id, nodes, acked: latencies.length, frameBytes, sendCallMs, latencies, timedOut };
        send(reply);
      };
      const onAck = (m: unknown) => {
        const a = m as { messageId: string };
        if (a.messageId !== msg.header.id) return;
        latencies.push(performance.now() - t0);
        if (latencies.length >= nodes) finish(false);
      };
      const timer = setTimeout(() => finish(true), c.timeoutMs);
      subscribe('ledge:cloudhub:ack', onAck);
      t0 = performance.now();
      core.hub.sendToNode('*', msg);
      const sendCallMs = performance.now() - t0;
      if (nodes === 0) finish(false);
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', port: core.hub.port, pid: process.pid, url: core.hub.url });
}

main().catch((err) => {
  process.stderr.write(`cloud-server failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
