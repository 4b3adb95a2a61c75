// Watch semantics: from a resourceVersion, selectors with transitions, bookmarks,
// timeoutSeconds, 410 Gone as an ERROR event, and a client-node informer relisting on 410.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { eventually, rawWatch, startTestServer, type TestServer } from './helpers.js';

let s: TestServer;
before(async () => {
  // Small history so a 410 is easy to provoke; fast bookmarks.
  s = await startTestServer({ watchHistorySize: 20, bookmarkIntervalMs: 200 });
  await s.core.createNamespace({ body: { metadata: { name: 'w' } } });
});
after(async () => {
  await s.stop();
});

const cm = (name: string, labels?: Record<string, string>, data: Record<string, string> = {}): k8s.V1ConfigMap => ({ metadata: { name, ...(labels ? { labels } : {}) }, data });

describe('watch', () => {
  test('from a resourceVersion delivers exactly the later events, in order', async () => {
    const a = await s.core.createNamespacedConfigMap({ namespace: 'w', body: cm('a') });
    const rv = a.metadata!.resourceVersion!;
    await s.core.replaceNamespacedConfigMap({ name: 'a', namespace: 'w', body: { ...a, data: { x: '1' } } });
    await s.core.createNamespacedConfigMap({ namespace: 'w', body: cm('b') });
    await s.core.deleteNamespacedConfigMap({ name: 'a', namespace: 'w' });
    const w = rawWatch(s.handle, `/api/v1/namespaces/w/configmaps?watch=1&resourceVersion=${rv}`);
    await w.waitFor((e) => e.length >= 3);
    assert.deepEqual(
      w.events.map((e) => `${e.type}:${e.object.metadata.name}`),
      ['MODIFIED:a', 'ADDED:b', 'DELETED:a'],
    );
    const rvs = w.events.map((e) => Number(e.object.metadata.resourceVersion));
    assert.ok(rvs.every((x, i) => i === 0 || x > rvs[i - 1]!) && rvs[0]! > Number(rv));
    // And it keeps following.
    await s.core.createNamespacedConfigMap({ namespace: 'w', body: cm('c') });
    await w.waitFor((e) => e.some((x) => x.object.metadata.name === 'c'));
    w.close();
    await s.core.deleteNamespacedConfigMap({ name: 'b', namespace: 'w' });
    await s.core.deleteNamespacedConfigMap({ name: 'c', namespace: 'w' });
  });

  test('without resourceVersion starts with synthetic ADDED for current state', async () => {
    await s.core.createNamespacedConfigMap({ namespace: 'w', body: cm('s1') });
    const w = rawWatch(s.handle, `/api/v1/namespaces/w/configmaps?watch=true`);
    await w.waitFor((e) => e.some((x) => x.object.metadata.name === 's1'));
    assert.equal(w.events[0]!.type, 'ADDED');
    w.close();
    await s.core.deleteNamespacedConfigMap({ name: 's1', namespace: 'w' });
  });

  test('label selector: leaving the selection is DELETED, entering is ADDED', async () => {
    const start = await s.core.listNamespacedConfigMap({ namespace: 'w' });
    const w = rawWatch(s.handle, `/api/v1/namespaces/w/configmaps?watch=1&labelSelector=sel%3Dyes&resourceVersion=${start.metadata!.resourceVersion}`);
    const x = await s.core.createNamespacedConfigMap({ namespace: 'w', body: cm('x', { sel: 'no' }) });
    const x2 = await s.core.replaceNamespacedConfigMap({ name: 'x', namespace: 'w', body: { ...x, metadata: { ...x.metadata, labels: { sel: 'yes' } } } });
    await s.core.replaceNamespacedConfigMap({ name: 'x', namespace: 'w', body: { ...x2, metadata: { ...x2.metadata, labels: { sel: 'no' } } } });
    await w.waitFor((e) => e.length >= 2);
    assert.deepEqual(
      w.events.map((e) => e.type),
      ['ADDED', 'DELETED'],
    );
    w.close();
  });

  test('field selector spec.nodeName on pods', async () => {
    const start = await s.core.listNamespacedPod({ namespace: 'w' });
    const w = rawWatch(s.handle, `/api/v1/pods?watch=1&fieldSelector=spec.nodeName%3Dn1&resourceVersion=${start.metadata!.resourceVersion}`);
    await s.core.createNamespacedPod({ namespace: 'w', body: { metadata: { name: 'on-n2' }, spec: { nodeName: 'n2', containers: [{ name: 'c', image: 'i' }] } } });
    await s.core.createNamespacedPod({ namespace: 'w', body: { metadata: { name: 'on-n1' }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'i' }] } } });
    await w.waitFor((e) => e.length >= 1);
    // Events come in resourceVersion order: on-n2 (created first) would have come before on-n1.
    assert.deepEqual(
      w.events.map((e) => e.object.metadata.name),
      ['on-n1'],
    );
    w.close();
  });

  test('allowWatchBookmarks sends BOOKMARK events carrying a resourceVersion', async () => {
    const list = await s.core.listNamespacedConfigMap({ namespace: 'w' });
    const w = rawWatch(s.handle, `/api/v1/namespaces/w/configmaps?watch=1&allowWatchBookmarks=true&resourceVersion=${list.metadata!.resourceVersion}`);
    await w.waitFor((e) => e.some((x) => x.type === 'BOOKMARK'));
    const bm = w.events.find((e) => e.type === 'BOOKMARK')!;
    assert.equal(bm.object.kind, 'ConfigMap');
    assert.ok(Number(bm.object.metadata.resourceVersion) >= Number(list.metadata!.resourceVersion));
    w.close();
  });

  test('timeoutSeconds ends the stream', async () => {
    const w = rawWatch(
      s.handle,
      `/api/v1/namespaces/w/configmaps?watch=1&timeoutSeconds=1&resourceVersion=${(await s.core.listNamespacedConfigMap({ namespace: 'w' })).metadata!.resourceVersion}`,
    );
    await w.ended;
    assert.ok(!w.events.some((e) => e.type === 'ERROR'));
  });

  test('a compacted resourceVersion gets an ERROR event with a 410 Status', async () => {
    const first = await s.core.createNamespacedConfigMap({ namespace: 'w', body: cm('old') });
    for (let i = 0; i < 120; i++)
      await s.core.patchNamespacedConfigMap({ name: 'old', namespace: 'w', body: { data: { i: String(i) } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    const w = rawWatch(s.handle, `/api/v1/namespaces/w/configmaps?watch=1&resourceVersion=${first.metadata!.resourceVersion}`);
    await w.ended;
    assert.equal(w.events.length, 1);
    assert.equal(w.events[0]!.type, 'ERROR');
    assert.equal(w.events[0]!.object.kind, 'Status');
    assert.equal(w.events[0]!.object.code, 410);
    assert.equal(w.events[0]!.object.reason, 'Expired');
  });

  test('client-node informer relists after 410 and converges', async () => {
    await s.core.createNamespace({ body: { metadata: { name: 'inf' } } });
    const seen = new Map<string, string | undefined>();
    const listFn = () => s.core.listNamespacedConfigMap({ namespace: 'inf' });
    const informer = k8s.makeInformer(s.kc, '/api/v1/namespaces/inf/configmaps', listFn);
    const errors: string[] = [];
    informer.on('add', (o) => seen.set(o.metadata!.name!, o.data?.v));
    informer.on('update', (o) => seen.set(o.metadata!.name!, o.data?.v));
    informer.on('delete', (o) => seen.delete(o.metadata!.name!));
    // stop() aborts the watch request, which client-node reports as an AbortError.
    informer.on('error', (e: unknown) => void ((e as Error)?.name !== 'AbortError' && errors.push(String(e))));
    await informer.start();
    await s.core.createNamespacedConfigMap({ namespace: 'inf', body: cm('i1', undefined, { v: '1' }) });
    await eventually(() => seen.get('i1') === '1', 'informer add');
    // Make the informer's resourceVersion too old: stop it, churn past the history, restart.
    await informer.stop();
    for (let i = 0; i < 60; i++)
      await s.core.patchNamespacedConfigMap({ name: 'i1', namespace: 'inf', body: { data: { v: String(i) } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await s.core.createNamespacedConfigMap({ namespace: 'inf', body: cm('i2', undefined, { v: 'two' }) });
    const watches = s.handle.activeWatches();
    await informer.start();
    await eventually(() => seen.get('i2') === 'two' && seen.get('i1') === '59', 'informer relist after 410');
    assert.ok(s.handle.activeWatches() >= watches, 'informer re-established its watch');
    await s.core.deleteNamespacedConfigMap({ name: 'i2', namespace: 'inf' });
    await eventually(() => !seen.has('i2'), 'informer delete');
    await informer.stop();
    assert.deepEqual(errors, []);
  });
});
