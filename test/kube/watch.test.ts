/**
 * watchResource against the local control plane (in this process, over HTTPS):
 * `synced` means "the cache holds a successful list", also when the first lists fail.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { watchResource, type k8s } from '../../cloud/kube/index.js';
import { captureLog } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';

const cp = useLocalControlPlane('ledge-watch-');

describe('watchResource', () => {
  test('synced resolves only after a list succeeded, with the cache filled', async () => {
    await cp.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'w-1', namespace: 'default' }, data: { a: 'b' } } });
    const log = captureLog();
    let lists = 0;
    const w = watchResource<k8s.V1ConfigMap>(cp.kc, '/api/v1/configmaps', log.logger, {
      restartDelayMs: 20,
      list: async () => {
        // The API is unavailable for the first two lists (a 503 from a real server looks the same).
        if (++lists <= 2) throw Object.assign(new Error('service unavailable'), { code: 503 });
        return cp.core.listConfigMapForAllNamespaces();
      },
    });
    try {
      let timer: NodeJS.Timeout | undefined;
      const synced = await Promise.race([w.synced.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), 15_000)))]);
      clearTimeout(timer);
      assert.ok(synced, 'synced within 15 s');
      assert.ok(lists >= 3, `synced only after the list that succeeded (lists: ${lists})`);
      assert.equal(w.informer.get('w-1', 'default')?.data?.a, 'b', 'the cache holds the list');
      assert.ok(log.has(/watch of \/api\/v1\/configmaps failed: service unavailable/), 'the failures were logged');
    } finally {
      await w.stop();
    }
  });

  test("a listed object has the form a watched one has: the server's key order and timestamps (client-node's typed lists reorder keys and add milliseconds)", async () => {
    const body = { metadata: { name: 'order-1', namespace: 'default' }, spec: { containers: [{ name: 'main', image: 'busybox', command: ['sleep', '1'] }] } };
    await cp.core.createNamespacedPod({ namespace: 'default', body });
    const listed = watchResource<k8s.V1Pod>(cp.kc, '/api/v1/pods', captureLog().logger);
    try {
      await listed.synced;
      const pod = listed.informer.get('order-1', 'default');
      assert.ok(pod, 'listed');
      const created = pod.metadata?.creationTimestamp as unknown;
      assert.equal(typeof created, 'string', 'a timestamp stays the string the server wrote');
      assert.match(String(created), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      // The same pod from the watch (an update): the same JSON.
      const updated = await cp.core.patchNamespacedPod({ name: 'order-1', namespace: 'default', body: [{ op: 'add', path: '/metadata/labels', value: { x: 'y' } }] });
      const watched = await eventually(() => {
        const p = listed.informer.get('order-1', 'default');
        return p?.metadata?.resourceVersion === updated.metadata?.resourceVersion ? p : undefined;
      });
      assert.equal(JSON.stringify(watched.spec), JSON.stringify(pod.spec));
    } finally {
      await listed.stop();
      await cp.core.deleteNamespacedPod({ name: 'order-1', namespace: 'default', gracePeriodSeconds: 0 });
    }
  });
});
