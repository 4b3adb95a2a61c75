/**
 * A whole Ledge installation for controller tests: the local control plane (Ledge's
 * own Kubernetes-API server, in this process, used only over HTTPS), CloudCore
 * replicas as child processes (`dist/ledge.js cloud --kubeconfig …`), edge nodes
 * running the bundled `dist/edgecore.js`, and a real @kubernetes/client-node client.
 */
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { startApiServer, type ApiServerHandle } from '../../apiserver/index.js';
import { createLogger } from '../../shared/log/index.js';
import { withKeepAlive } from '../../cloud/kube/index.js';
import { startProcess, startEdge, repoRoot, eventually, type Proc } from './process.js';
import { readMetaLog, tempDir } from './files.js';

export interface Cloud {
  proc: Proc;
  url: string;
}

export interface Cluster {
  api: ApiServerHandle;
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  objects: k8s.CustomObjectsApi;
  dir: string;
  /** A CloudCore replica; `mtls`: as shipped (node CA, client certificates, joins) instead of plain ws:// with self-named nodes. */
  startCloud(name: string, extra?: string[], options?: { mtls?: boolean }): Promise<Cloud>;
  startEdge(node: string, cloudUrls: string[], extra?: string[]): Proc;
  dataDir(node: string): string;
  close(): Promise<void>;
}

export async function startCluster(): Promise<Cluster> {
  const d = tempDir('ledge-cluster-');
  const api = await startApiServer({ dataDir: join(d.path, 'api'), port: 0, nodeLeaseTimeoutMs: 60_000, log: createLogger({ level: 'warn' }) });
  const kc = withKeepAlive(new k8s.KubeConfig());
  kc.loadFromFile(api.kubeconfigPath);
  const procs: Proc[] = [];
  return {
    api,
    kc,
    core: kc.makeApiClient(k8s.CoreV1Api),
    objects: kc.makeApiClient(k8s.CustomObjectsApi),
    dir: d.path,
    async startCloud(name, extra = [], options = {}) {
      const proc = startProcess(
        [
          join(repoRoot, 'dist/ledge.js'),
          'cloud',
          '--kubeconfig',
          api.kubeconfigPath,
          '--bind-address',
          '127.0.0.1',
          // Test nodes name themselves (no client certificates): plain ws:// on loopback, unless mtls.
          ...(options.mtls ? [] : ['--insecure-plain-websocket']),
          '--port',
          '0',
          '--identity',
          name,
          '--reconcile-interval-ms',
          '1000',
          '--heartbeat-interval-ms',
          '300',
          '--heartbeat-timeout-ms',
          '1200',
          '--ack-timeout-ms',
          '500',
          '--log-level',
          'info',
          ...extra,
        ],
        {},
        name,
      );
      procs.push(proc);
      const m = await proc.waitFor(/"msg":"cloudcore started","url":"([^"]+)"/, 30_000);
      return { proc, url: m[1]! };
    },
    startEdge(node, cloudUrls, extra = []) {
      const p = startEdge(
        [
          '--cloud',
          cloudUrls.join(','),
          '--node-name',
          node,
          '--data-dir',
          join(d.path, node),
          '--node-status-interval-ms',
          '1000',
          '--heartbeat-interval-ms',
          '300',
          '--heartbeat-timeout-ms',
          '1200',
          '--reconnect-max-ms',
          '300',
          '--log-level',
          'info',
          ...extra,
        ],
        {},
        node,
      );
      procs.push(p);
      return p;
    },
    dataDir: (node) => join(d.path, node),
    async close() {
      await Promise.all(procs.map((p) => p.kill9()));
      await api.close();
      d.cleanup();
    },
  };
}

/** The edge store's current content (resource → resourceVersion), folded from its log file. */
export function edgeStore(dataDir: string): Map<string, string | undefined> {
  const state = new Map<string, string | undefined>();
  for (const r of readMetaLog(dataDir)) {
    if (r.t === 'put') state.set(r.k!, r.rv);
    else if (r.t === 'del') state.delete(r.k!);
  }
  return state;
}

/** Waits until the edge store equals `expected` (resource → resourceVersion). */
export async function storeEquals(dataDir: string, expected: () => Promise<Record<string, string>>, timeoutMs = 20_000): Promise<void> {
  let last = '';
  await eventually(
    async () => {
      const want = await expected();
      const have = Object.fromEntries(edgeStore(dataDir));
      last = `have ${JSON.stringify(have)}\nwant ${JSON.stringify(want)}`;
      return JSON.stringify(Object.entries(have).sort()) === JSON.stringify(Object.entries(want).sort());
    },
    timeoutMs,
    'edge store to match',
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${last}`);
  });
}

export const SYNC = { group: 'reliablesyncs.ledge.io', version: 'v1alpha1', plural: 'objectsyncs' };
