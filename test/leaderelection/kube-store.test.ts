/**
 * The Lease store over client-node: compare-and-swap against the local control plane,
 * and an API server that never answers: the caller's AbortSignal ends the request.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { kube } from '../../cloud/kube/index.js';
import { kubeLeaseStore, type LeaseRecord } from '../../cloud/leaderelection/index.js';
import { eventually } from '../helpers/process.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';

const cp = useLocalControlPlane('ledge-lease-');

const live = () => new AbortController().signal;
const rec = (holder: string): LeaseRecord => ({ holderIdentity: holder, leaseDurationSeconds: 15, leaseTransitions: 0, renewTime: Date.parse('2030-01-01T00:00:00.123Z') });

describe('kubeLeaseStore', () => {
  test('create, read, compare-and-swap on resourceVersion', async () => {
    const store = kubeLeaseStore(cp.kc, 'kube-system', 'cas-test');
    assert.equal(await store.get(live()), undefined);
    const v1 = await store.create(rec('a'), live());
    assert.ok(v1);
    assert.equal(await store.create(rec('b'), live()), undefined, 'exists already');
    const got = await store.get(live());
    assert.equal(got?.version, v1);
    assert.equal(got?.record.holderIdentity, 'a');
    assert.equal(got?.record.renewTime, Date.parse('2030-01-01T00:00:00.123Z'));
    const v2 = await store.update({ ...rec('b'), leaseTransitions: 1 }, v1!, live());
    assert.ok(v2 && v2 !== v1);
    assert.equal(await store.update(rec('c'), v1!, live()), undefined, 'stale version: not written');
    const other = kubeLeaseStore(cp.kc, 'kube-system', 'cas-test');
    assert.equal((await other.get(live()))?.record.holderIdentity, 'b');
  });

  test('a request to an API server that never answers ends when its signal aborts', async () => {
    const sockets = new Set<Socket>();
    const server = createServer((s) => void sockets.add(s)); // accepts, reads, never answers
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    try {
      const hung = new (kube().KubeConfig)();
      hung.loadFromOptions({
        clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
        users: [{ name: 'u', token: 't' }],
        contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
        currentContext: 'x',
      });
      const store = kubeLeaseStore(hung, 'kube-system', 'l');
      const ac = new AbortController();
      const pending = store.get(ac.signal);
      await eventually(() => sockets.size > 0, 10_000, 'the request to reach the silent server');
      ac.abort();
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        pending.then(
          () => 'resolved',
          (e: Error) => `rejected: ${e.name} ${e.message}`,
        ),
        new Promise<string>((r) => (timer = setTimeout(() => r('still pending 10 s after the abort'), 10_000))),
      ]);
      clearTimeout(timer);
      assert.match(outcome, /^rejected: AbortError/);
    } finally {
      for (const s of sockets) s.destroy();
      server.close();
    }
  });
});
