/**
 * Helpers of the pod scenario tests (test/edged/*): a free loopback port for a cloud that must come
 * back on the same address, whether a process is alive, kubectl bound to a cluster, and waiting
 * until a pod's status in the API says something.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { V1Pod } from '@kubernetes/client-node';
import { kubectl, kubectlPath } from '../apiserver/helpers.js';
import type { Cluster } from './cluster.js';
import { eventually } from './process.js';

/** A port free on 127.0.0.1 now (for a CloudCore restarted on the same URL). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The real kubectl v1.35 against the cluster's control plane; fails the test on a non-zero exit. */
export function kubectlFor(c: Cluster, cacheDir: string): (args: string[], input?: string) => Promise<string> {
  return async (args, input) => {
    const r = await kubectl(kubectlPath('1.35')!, c.api.kubeconfigPath, args, { cacheDir, ...(input !== undefined ? { input } : {}), timeoutMs: 60_000 });
    assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
}

/** Waits until the pod (namespace default) satisfies `check`; the failure shows its last status. */
export async function podWhere(c: Cluster, name: string, check: (p: V1Pod) => boolean, what: string, timeoutMs = 30_000): Promise<V1Pod> {
  let last: unknown;
  return eventually(
    async () => {
      const p = await c.core.readNamespacedPod({ name, namespace: 'default' }).catch(() => undefined);
      last = p?.status;
      return p && check(p) ? p : undefined;
    },
    timeoutMs,
    what,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last status: ${JSON.stringify(last)}`);
  });
}
