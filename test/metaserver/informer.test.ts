/**
 * The real @kubernetes/client-node as MetaServer's client (a KubeConfig with the admin token, the
 * generated CoreV1Api and `makeInformer`), against an in-memory MetaView: the informer lists, then
 * sees ADD/UPDATE/DELETE as the view changes; when its watch ends (server-side timeout) it
 * re-watches from its resourceVersion, and when that left the history (410) it relists — without
 * ever reporting an error, and its cache ends equal to the view.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { tempDir } from '../helpers/files.js';
import { eventually } from '../helpers/process.js';
import { configMap, FakeView, metaServerKubeConfig, startServer, type RunningServer } from './helpers.js';

const dirs: { cleanup(): void }[] = [];
const running: RunningServer[] = [];
after(async () => {
  await Promise.all(running.map((r) => r.stop()));
  for (const d of dirs) d.cleanup();
});

describe('MetaServer with client-node', () => {
  test('CoreV1Api reads and a configmap informer sees the initial list, then ADD / UPDATE / DELETE', async () => {
    const d = tempDir('ledge-metaserver-informer-');
    dirs.push(d);
    const view = new FakeView();
    view.put('default/configmap/first', configMap('default', 'first', { v: '1' }, { rv: '5' }));
    const s = await startServer(view, { dataDir: d.path });
    running.push(s);
    const kc = metaServerKubeConfig(s.url, s.adminToken);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const read = await core.readNamespacedConfigMap({ name: 'first', namespace: 'default' });
    assert.deepEqual(read.data, { v: '1' });
    await assert.rejects(core.readNamespacedConfigMap({ name: 'nope', namespace: 'default' }), (err: unknown) => (err as { code?: number }).code === 404);

    const informer = k8s.makeInformer(kc, '/api/v1/namespaces/default/configmaps', () => core.listNamespacedConfigMap({ namespace: 'default' }));
    const seen: string[] = [];
    const errors: unknown[] = [];
    informer.on('add', (o) => seen.push(`add ${o.metadata?.name}`));
    informer.on('update', (o) => seen.push(`update ${o.metadata?.name} ${JSON.stringify(o.data)}`));
    informer.on('delete', (o) => seen.push(`delete ${o.metadata?.name}`));
    informer.on('error', (err) => errors.push(err));
    await informer.start();
    try {
      assert.deepEqual(seen, ['add first']);
      await eventually(() => s.server.watchCount === 1, 10_000, 'the informer watching');
      view.put('default/configmap/second', configMap('default', 'second', { v: 'a' }));
      await eventually(() => seen.includes('add second'), 10_000, 'ADD');
      view.put('default/configmap/first', configMap('default', 'first', { v: '2' }, { rv: '6' }));
      await eventually(() => seen.includes('update first {"v":"2"}'), 10_000, 'UPDATE');
      view.delete('default/configmap/second');
      await eventually(() => seen.includes('delete second'), 10_000, 'DELETE');
      view.put('other/configmap/elsewhere', configMap('other', 'elsewhere', {}));
      assert.deepEqual(seen, ['add first', 'add second', 'update first {"v":"2"}', 'delete second']);
      assert.deepEqual(
        informer.list('default').map((o) => o.metadata?.name),
        ['first'],
      );
      assert.deepEqual(errors, []);
    } finally {
      await informer.stop();
    }
  });

  test('watches that end (server timeout) are resumed; a resourceVersion that left the history is relisted (410); no error, the cache converges', async () => {
    const d = tempDir('ledge-metaserver-informer-');
    dirs.push(d);
    const view = new FakeView();
    // Watches end after 150-300 ms; 20 changes of history.
    const s = await startServer(view, { dataDir: d.path, watchTimeoutMs: 150, watchHistory: 20 });
    running.push(s);
    const kc = metaServerKubeConfig(s.url, s.adminToken);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    let lists = 0;
    const informer = k8s.makeInformer(kc, '/api/v1/namespaces/default/configmaps', () => {
      lists++;
      return core.listNamespacedConfigMap({ namespace: 'default' });
    });
    const errors: unknown[] = [];
    informer.on('error', (err) => errors.push(err));
    await informer.start();
    try {
      const started = s.server.stats.watchesStarted;
      // Re-watched across server-side ends, seeing the changes made meanwhile.
      for (let i = 0; i < 5; i++) {
        view.put(`default/configmap/cm-${i}`, configMap('default', `cm-${i}`, { i: String(i) }));
        await eventually(() => informer.get(`cm-${i}`, 'default'), 10_000, `cm-${i} in the informer`);
      }
      await eventually(() => s.server.stats.watchesStarted >= started + 2, 10_000, 'the informer re-watching after its watch ended');
      // Many changes elsewhere (not in the informer's namespace) push its resourceVersion out of the history.
      const listsBefore = lists;
      await eventually(
        () => {
          for (let i = 0; i < 30; i++) view.put(`noise/configmap/n-${i}`, configMap('noise', `n-${i}`, { t: String(Date.now()) }));
          return lists > listsBefore;
        },
        10_000,
        'a relist after 410 Expired',
      );
      view.put('default/configmap/after', configMap('default', 'after', {}));
      view.delete('default/configmap/cm-0');
      await eventually(
        () => {
          const have = informer
            .list('default')
            .map((o) => o.metadata?.name)
            .sort();
          return JSON.stringify(have) === JSON.stringify(['after', 'cm-1', 'cm-2', 'cm-3', 'cm-4']);
        },
        10_000,
        'the informer cache to equal the view',
      );
      assert.deepEqual(errors, [], 'no error reached the informer');
    } finally {
      await informer.stop();
    }
  });
});
