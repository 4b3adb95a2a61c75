/**
 * MetaServer against an in-memory MetaView (real HTTP on loopback): discovery, get/list/404,
 * selectors, writes refused, watches (replay from a resourceVersion including deletions, 410 for
 * one that left the history or comes from an earlier run, selector transitions, bookmarks,
 * timeouts, a slow watcher cut off within its bound, the watch limit), the authentication matrix,
 * the credential files, a port that is taken, and a clean shutdown.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer as createTcpServer, type Socket } from 'node:net';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/files.js';
import { captureLog } from '../helpers/cloud.js';
import { eventually, within } from '../helpers/process.js';
import { configMap, FakeView, getJson, openWatch, pod, startServer, type RunningServer } from './helpers.js';

const dirs: { cleanup(): void }[] = [];
const running: RunningServer[] = [];
after(async () => {
  await Promise.all(running.map((r) => r.stop()));
  for (const d of dirs) d.cleanup();
});

function dataDir(): string {
  const d = tempDir('ledge-metaserver-');
  dirs.push(d);
  return d.path;
}

async function serve(view: FakeView, init: Partial<Parameters<typeof startServer>[1]> = {}, log = captureLog().logger): Promise<RunningServer> {
  const r = await startServer(view, { dataDir: dataDir(), ...init }, log);
  running.push(r);
  return r;
}

type List = { kind: string; apiVersion: string; metadata: { resourceVersion: string }; items: { metadata: { name: string; namespace?: string; resourceVersion: string } }[] };
const names = (l: List) => l.items.map((i) => (i.metadata.namespace ? `${i.metadata.namespace}/${i.metadata.name}` : i.metadata.name));

describe('MetaServer: discovery and reads', () => {
  test('discovery answers anonymous clients: /version, /healthz, /readyz, /livez, /api, /api/v1 (get/list/watch of the six resources), /apis', async () => {
    const s = await serve(new FakeView());
    const version = await getJson(`${s.url}/version`);
    assert.equal(version.status, 200);
    assert.equal(version.body.major, '1');
    for (const p of ['/healthz', '/readyz', '/livez']) {
      const r = await fetch(`${s.url}${p}`);
      assert.equal(r.status, 200, p);
      assert.equal(await r.text(), 'ok');
    }
    const api = await getJson<{ kind: string; versions: string[] }>(`${s.url}/api`);
    assert.deepEqual([api.body.kind, api.body.versions], ['APIVersions', ['v1']]);
    const v1 = await getJson<{ kind: string; groupVersion: string; resources: { name: string; namespaced: boolean; kind: string; verbs: string[] }[] }>(`${s.url}/api/v1`);
    assert.equal(v1.body.kind, 'APIResourceList');
    assert.deepEqual(
      v1.body.resources.map((r) => `${r.name}:${r.kind}:${r.namespaced}`),
      ['pods:Pod:true', 'configmaps:ConfigMap:true', 'secrets:Secret:true', 'services:Service:true', 'endpoints:Endpoints:true', 'nodes:Node:false'],
    );
    for (const r of v1.body.resources) assert.deepEqual(r.verbs, ['get', 'list', 'watch']);
    const apis = await getJson<{ kind: string; groups: unknown[] }>(`${s.url}/apis`);
    assert.deepEqual([apis.body.kind, apis.body.groups], ['APIGroupList', []]);
  });

  test('get, list (XList at the highest revision, sorted), all namespaces, nodes, and 404 as a NotFound Status with details', async () => {
    const view = new FakeView();
    view.put('default/configmap/b', configMap('default', 'b', { k: '1' }, { rv: '40' }));
    view.put('default/configmap/a', configMap('default', 'a', { k: '2' }, { rv: '41' }));
    view.put('other/configmap/c', configMap('other', 'c', {}, { rv: '42' }));
    view.put('default/node/edge-1', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'edge-1', resourceVersion: '7' } });
    view.put('default/nodestatus/edge-1', { not: 'served' });
    const s = await serve(view);
    const t = s.adminToken;
    const list = await getJson<List>(`${s.url}/api/v1/namespaces/default/configmaps`, t);
    assert.equal(list.status, 200);
    assert.equal(list.body.kind, 'ConfigMapList');
    assert.equal(list.body.apiVersion, 'v1');
    assert.deepEqual(names(list.body), ['default/a', 'default/b']);
    const revs = list.body.items.map((i) => Number(i.metadata.resourceVersion));
    assert.ok(
      revs.every((r) => r <= Number(list.body.metadata.resourceVersion)),
      'the list is at least as new as its items',
    );
    const all = await getJson<List>(`${s.url}/api/v1/configmaps`, t);
    assert.deepEqual(names(all.body), ['default/a', 'default/b', 'other/c']);
    assert.equal(all.body.metadata.resourceVersion, list.body.metadata.resourceVersion);

    const one = await getJson<{ kind: string; apiVersion: string; data: unknown; metadata: { resourceVersion: string } }>(`${s.url}/api/v1/namespaces/default/configmaps/a`, t);
    assert.equal(one.status, 200);
    assert.deepEqual([one.body.kind, one.body.apiVersion, one.body.data], ['ConfigMap', 'v1', { k: '2' }]);
    assert.equal(one.body.metadata.resourceVersion, list.body.items[0]!.metadata.resourceVersion);

    const nodes = await getJson<List>(`${s.url}/api/v1/nodes`, t);
    assert.deepEqual([nodes.body.kind, names(nodes.body)], ['NodeList', ['edge-1']]);
    assert.equal((await getJson(`${s.url}/api/v1/nodes/edge-1`, t)).body.kind, 'Node');

    const missing = await getJson<{ kind: string; status: string; reason: string; code: number; details: unknown; message: string }>(
      `${s.url}/api/v1/namespaces/default/configmaps/nope`,
      t,
    );
    assert.equal(missing.status, 404);
    assert.deepEqual(
      { kind: missing.body.kind, status: missing.body.status, reason: missing.body.reason, code: missing.body.code, details: missing.body.details },
      { kind: 'Status', status: 'Failure', reason: 'NotFound', code: 404, details: { name: 'nope', kind: 'configmaps' } },
    );
    assert.equal(missing.body.message, 'configmaps "nope" not found');
    // Unknown resources, subresources and non-API paths.
    for (const p of ['/api/v1/namespaces/default/leases', '/api/v1/namespaces/default/pods/x/log', '/api/v1/pods/x', '/apis/apps/v1', '/metrics']) {
      assert.equal((await getJson(`${s.url}${p}`, t)).status, 404, p);
    }
  });

  test('label selectors (=, ==, !=, in, notin, exists, !exists) and field selectors (metadata.name, metadata.namespace, spec.nodeName); bad ones are 400', async () => {
    const view = new FakeView();
    view.put('default/pod/a', pod('default', 'a', 'n1', { labels: { app: 'web', tier: 'front' } }));
    view.put('default/pod/b', pod('default', 'b', 'n1', { labels: { app: 'db' } }));
    view.put('default/pod/c', pod('default', 'c', 'n2', { labels: { app: 'web' } }));
    view.put('other/pod/d', pod('other', 'd', 'n1', {}));
    const s = await serve(view);
    const sel = async (q: string) => names((await getJson<List>(`${s.url}/api/v1/pods?${q}`, s.adminToken)).body);
    const L = (x: string) => `labelSelector=${encodeURIComponent(x)}`;
    const F = (x: string) => `fieldSelector=${encodeURIComponent(x)}`;
    assert.deepEqual(await sel(L('app=web')), ['default/a', 'default/c']);
    assert.deepEqual(await sel(L('app==web')), ['default/a', 'default/c']);
    assert.deepEqual(await sel(L('app!=web')), ['default/b', 'other/d'], '!= also matches objects without the label');
    assert.deepEqual(await sel(L('app in (db, web),tier')), ['default/a']);
    assert.deepEqual(await sel(L('app notin (web)')), ['default/b', 'other/d']);
    assert.deepEqual(await sel(L('tier')), ['default/a']);
    assert.deepEqual(await sel(L('!app')), ['other/d']);
    assert.deepEqual(await sel(F('spec.nodeName=n1')), ['default/a', 'default/b', 'other/d']);
    assert.deepEqual(await sel(F('spec.nodeName=n1,metadata.namespace!=default')), ['other/d']);
    assert.deepEqual(await sel(F('metadata.name==c')), ['default/c']);
    assert.deepEqual(await sel(`${F('spec.nodeName=n1')}&${L('app=web')}`), ['default/a']);
    for (const [q, msg] of [
      [F('spec.bogus=x'), /field label not supported: spec.bogus/],
      [F('nonsense'), /can't understand/],
      [L('app in ()'), /values set can't be empty/],
      [L('app in (a'), /unbalanced/],
      [L('bad key!=x=y'), /invalid label/],
    ] as const) {
      const r = await getJson<{ reason: string; message: string }>(`${s.url}/api/v1/pods?${q}`, s.adminToken);
      assert.equal(r.status, 400, q);
      assert.equal(r.body.reason, 'BadRequest');
      assert.match(r.body.message, msg);
    }
    // spec.nodeName is a pod field only.
    assert.equal((await getJson(`${s.url}/api/v1/configmaps?${F('spec.nodeName=n1')}`, s.adminToken)).status, 400);
  });

  test('writes are 405 MethodNotAllowed Statuses (also for anonymous clients); a protobuf Accept gets JSON', async () => {
    const view = new FakeView();
    view.put('default/configmap/a', configMap('default', 'a', {}));
    const s = await serve(view);
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      for (const token of [s.adminToken, undefined]) {
        const r = await getJson<{ kind: string; reason: string; message: string; code: number }>(`${s.url}/api/v1/namespaces/default/configmaps/a`, token, {
          method,
          body: '{"metadata":{"name":"a"}}',
          headers: { 'Content-Type': 'application/json' },
        });
        assert.equal(r.status, 405, method);
        assert.deepEqual([r.body.kind, r.body.reason, r.body.code], ['Status', 'MethodNotAllowed', 405]);
        assert.equal(r.body.message, "MetaServer is read-only; write through the cluster's API server");
        assert.equal(r.headers.get('allow'), 'GET, HEAD');
      }
    }
    assert.equal(view.get('default/configmap/a')?.value !== undefined, true, 'nothing was changed');
    const proto = await getJson<{ kind: string }>(`${s.url}/api/v1/namespaces/default/configmaps`, s.adminToken, {
      headers: { Accept: 'application/vnd.kubernetes.protobuf, application/json' },
    });
    assert.equal(proto.status, 200);
    assert.equal(proto.headers.get('content-type'), 'application/json');
    assert.equal(proto.body.kind, 'ConfigMapList');
  });

  test('before the store is open: resources are 503 ServiceUnavailable, /readyz 503; served once it opens', async () => {
    const view = new FakeView(false);
    const s = await serve(view);
    assert.equal((await fetch(`${s.url}/readyz`)).status, 503);
    const r = await getJson<{ reason: string }>(`${s.url}/api/v1/pods`, s.adminToken);
    assert.equal(r.status, 503);
    assert.equal(r.body.reason, 'ServiceUnavailable');
    assert.equal(r.headers.get('retry-after'), '1');
    view.put('default/pod/p', pod('default', 'p', 'n'));
    view.markReady();
    await eventually(async () => (await fetch(`${s.url}/readyz`)).status === 200, 5_000, 'ready');
    assert.deepEqual(names((await getJson<List>(`${s.url}/api/v1/pods`, s.adminToken)).body), ['default/p']);
  });
});

describe('MetaServer: watch', () => {
  test('a watch from a list resourceVersion replays what it missed, deletions included, in order, then streams live changes', async () => {
    const view = new FakeView();
    view.put('default/configmap/keep', configMap('default', 'keep', { v: '0' }, { rv: '10' }));
    view.put('default/configmap/gone', configMap('default', 'gone', {}, { rv: '11' }));
    const s = await serve(view);
    const list = await getJson<List>(`${s.url}/api/v1/namespaces/default/configmaps`, s.adminToken);
    const rv = list.body.metadata.resourceVersion;
    // Missed while not watching: an add (with a cluster version below the others: arrival order counts), an update, a delete.
    view.put('default/configmap/late', configMap('default', 'late', {}, { rv: '3' }));
    view.put('default/configmap/keep', configMap('default', 'keep', { v: '1' }, { rv: '12' }));
    view.delete('default/configmap/gone');
    view.put('other/configmap/elsewhere', configMap('other', 'elsewhere', {}, { rv: '13' }));
    const w = await openWatch(`${s.url}/api/v1/namespaces/default/configmaps?resourceVersion=${rv}`, s.adminToken);
    assert.equal(w.status, 200);
    const replayed = await w.waitFor(3);
    assert.deepEqual(
      replayed.map((e) => `${e.type} ${e.object.metadata?.name}`),
      ['ADDED late', 'MODIFIED keep', 'DELETED gone'],
    );
    const rvs = replayed.map((e) => Number(e.object.metadata?.resourceVersion));
    assert.ok(rvs[0]! > Number(rv) && rvs[0]! < rvs[1]! && rvs[1]! < rvs[2]!, `revisions increase from the list's: ${rv} → ${rvs.join(',')}`);
    assert.equal((replayed[1]!.object as { data?: unknown }).data !== undefined, true);
    view.put('default/configmap/live', configMap('default', 'live', {}, { rv: '14' }));
    const [, , , live] = await w.waitFor(4);
    assert.equal(`${live!.type} ${live!.object.metadata?.name}`, 'ADDED live');
    assert.equal(w.events.length, 4, 'the other namespace is not in this watch');
    w.close();
  });

  test('a watch without resourceVersion (or "0") starts with the current state as ADDED events; sendInitialEvents ends it with a bookmark', async () => {
    const view = new FakeView();
    view.put('default/configmap/a', configMap('default', 'a', {}));
    view.put('default/configmap/b', configMap('default', 'b', {}));
    const s = await serve(view);
    for (const q of ['', '&resourceVersion=0']) {
      const w = await openWatch(`${s.url}/api/v1/namespaces/default/configmaps?watch=1${q}`, s.adminToken);
      assert.deepEqual(
        (await w.waitFor(2)).map((e) => `${e.type} ${e.object.metadata?.name}`),
        ['ADDED a', 'ADDED b'],
      );
      w.close();
    }
    const w = await openWatch(`${s.url}/api/v1/namespaces/default/configmaps?sendInitialEvents=true&allowWatchBookmarks=true`, s.adminToken);
    const evs = await w.waitFor(3);
    assert.equal(evs[2]!.type, 'BOOKMARK');
    assert.equal(evs[2]!.object.metadata?.annotations?.['k8s.io/initial-events-end'], 'true');
    w.close();
    // The deprecated /api/v1/watch/… path and a single object's watch.
    const single = await openWatch(`${s.url}/api/v1/watch/namespaces/default/configmaps/b`, s.adminToken);
    assert.deepEqual(
      (await single.waitFor(1)).map((e) => `${e.type} ${e.object.metadata?.name}`),
      ['ADDED b'],
    );
    single.close();
  });

  test('a resourceVersion older than the history, from an earlier run, or not a number: 410 Expired as an ERROR event (the client relists) / 400', async () => {
    const view = new FakeView();
    const dir = dataDir();
    const first = await serve(view, { dataDir: dir, watchHistory: 10 });
    const rv0 = (await getJson<List>(`${first.url}/api/v1/configmaps`, first.adminToken)).body.metadata.resourceVersion;
    for (let i = 0; i < 5; i++) view.put(`default/configmap/c${i}`, configMap('default', `c${i}`, {}));
    // Within the history: replayed.
    const ok = await openWatch(`${first.url}/api/v1/configmaps?resourceVersion=${rv0}`, first.adminToken);
    assert.equal((await ok.waitFor(5)).length, 5);
    ok.close();
    for (let i = 0; i < 20; i++) view.put(`default/configmap/c${i % 5}`, configMap('default', `c${i % 5}`, { i: String(i) }));
    const old = await openWatch(`${first.url}/api/v1/configmaps?resourceVersion=${rv0}`, first.adminToken);
    assert.equal(old.status, 200);
    const [err] = await old.waitFor(1);
    assert.equal(err!.type, 'ERROR');
    assert.deepEqual([err!.object.kind, err!.object.code, err!.object.reason], ['Status', 410, 'Expired']);
    assert.equal(await within(old.ended, 5_000, 'the expired watch to end'), 'end');
    // A future resourceVersion is not one this server handed out either.
    const future = await openWatch(`${first.url}/api/v1/configmaps?resourceVersion=99999999999999`, first.adminToken);
    assert.equal((await future.waitFor(1))[0]!.object.code, 410);
    const bad = await getJson<{ reason: string }>(`${first.url}/api/v1/configmaps?watch=true&resourceVersion=abc`, first.adminToken);
    assert.deepEqual([bad.status, bad.body.reason], [400, 'BadRequest']);

    // After a restart (the next epoch), the last resourceVersion of the earlier run is expired, and a fresh list works.
    const lastRv = (await getJson<List>(`${first.url}/api/v1/configmaps`, first.adminToken)).body.metadata.resourceVersion;
    await first.stop();
    const second = await serve(view, { dataDir: dir, watchHistory: 10 });
    const stale = await openWatch(`${second.url}/api/v1/configmaps?resourceVersion=${lastRv}`, second.adminToken);
    assert.equal((await stale.waitFor(1))[0]!.object.code, 410, 'a resourceVersion of the earlier run is never replayed');
    const relisted = (await getJson<List>(`${second.url}/api/v1/configmaps`, second.adminToken)).body;
    assert.ok(Number(relisted.metadata.resourceVersion) > Number(lastRv), 'revisions of the new run are above the old ones');
    assert.equal(relisted.items.length, 5);
  });

  test('selectors in a watch: an object leaving the selection is DELETED for the watcher, one entering it ADDED', async () => {
    const view = new FakeView();
    const s = await serve(view);
    const rv = (await getJson<List>(`${s.url}/api/v1/pods`, s.adminToken)).body.metadata.resourceVersion;
    const w = await openWatch(`${s.url}/api/v1/pods?resourceVersion=${rv}&labelSelector=app%3Dweb`, s.adminToken);
    view.put('default/pod/p', pod('default', 'p', 'n', { labels: { app: 'web' } }));
    view.put('default/pod/p', pod('default', 'p', 'n', { labels: { app: 'web', v: '2' } }));
    view.put('default/pod/p', pod('default', 'p', 'n', { labels: { app: 'db' } }));
    view.put('default/pod/q', pod('default', 'q', 'n', { labels: { app: 'db' } }));
    view.put('default/pod/p', pod('default', 'p', 'n', { labels: { app: 'web' } }));
    view.delete('default/pod/q');
    view.delete('default/pod/p');
    assert.deepEqual(
      (await w.waitFor(5)).map((e) => `${e.type} ${e.object.metadata?.name}`),
      ['ADDED p', 'MODIFIED p', 'DELETED p', 'ADDED p', 'DELETED p'],
    );
    w.close();
  });

  test('bookmarks when asked for; timeoutSeconds ends the stream cleanly', async () => {
    const view = new FakeView();
    const s = await serve(view, { bookmarkIntervalMs: 50 });
    const w = await openWatch(
      `${s.url}/api/v1/configmaps?resourceVersion=${(await getJson<List>(`${s.url}/api/v1/configmaps`, s.adminToken)).body.metadata.resourceVersion}&allowWatchBookmarks=true`,
      s.adminToken,
    );
    view.put('default/configmap/a', configMap('default', 'a', {}));
    const evs = await eventually(() => (w.events.some((e) => e.type === 'BOOKMARK' && w.events.indexOf(e) > 0) ? w.events : undefined), 5_000, 'a bookmark after the change');
    const added = evs.find((e) => e.type === 'ADDED')!;
    const mark = evs.find((e, i) => e.type === 'BOOKMARK' && i > evs.indexOf(added))!;
    assert.equal(mark.object.metadata?.resourceVersion, added.object.metadata?.resourceVersion, 'the bookmark carries the current revision');
    assert.equal(mark.object.kind, 'ConfigMap');
    w.close();
    const timed = await openWatch(`${s.url}/api/v1/configmaps?timeoutSeconds=1`, s.adminToken);
    assert.equal(await within(timed.ended, 10_000, 'the watch to time out'), 'end');
    await eventually(() => s.server.watchCount === 0, 5_000, 'no watch left');
  });

  test('a watcher that does not read is cut off once its unread bytes pass maxWatchBufferBytes; others go on; memory stays bounded', async () => {
    const view = new FakeView();
    const log = captureLog();
    const bound = 64 * 1024;
    const s = await serve(view, { maxWatchBufferBytes: bound }, log.logger);
    const rv = (await getJson<List>(`${s.url}/api/v1/configmaps`, s.adminToken)).body.metadata.resourceVersion;
    const u = new URL(s.url);
    // A raw client that sends its watch and then never reads.
    const sock: Socket = connect({ host: u.hostname, port: Number(u.port) });
    await within(new Promise<void>((r) => sock.once('connect', () => r())), 5_000, 'connect');
    sock.write(`GET /api/v1/configmaps?watch=true&resourceVersion=${rv} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.adminToken}\r\n\r\n`);
    await eventually(() => s.server.watchCount === 1, 5_000, 'the slow watch registered');
    sock.pause();
    const healthy = await openWatch(`${s.url}/api/v1/configmaps?resourceVersion=${rv}`, s.adminToken);
    const big = 'x'.repeat(32 * 1024);
    let sent = 0;
    // Loopback socket buffers take a few MiB first: write until the server gives up on the reader (bounded).
    while (s.server.stats.slowWatchersCut === 0 && sent < 2000) {
      view.put(`default/configmap/big-${sent % 10}`, configMap('default', `big-${sent % 10}`, { big, n: String(sent) }));
      sent++;
      // One change per event-loop turn, as the store's writes land; the reading watcher keeps up.
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(s.server.stats.slowWatchersCut, 1, `cut off after ${sent} events`);
    const line = log.lines.find((l) => /bytes unread/.test(String(l.msg)));
    assert.ok(line, 'one warning line');
    const unread = Number(/ended: (\d+) bytes unread/.exec(String(line.msg))?.[1]);
    assert.ok(unread > bound && unread <= bound + 40 * 1024, `cut within one event of the bound: ${unread}`);
    assert.doesNotMatch(JSON.stringify(log.lines), new RegExp(s.adminToken), 'no token in the logs');
    // The reading watcher got everything.
    await healthy.waitFor(sent, 20_000);
    assert.equal(s.server.watchCount, 1);
    healthy.close();
    sock.destroy();
  });

  test('past maxWatches a watch is 429 TooManyRequests with Retry-After; a closed watch frees its place', async () => {
    const view = new FakeView();
    const s = await serve(view, { maxWatches: 2 });
    const a = await openWatch(`${s.url}/api/v1/configmaps`, s.adminToken);
    const b = await openWatch(`${s.url}/api/v1/configmaps`, s.adminToken);
    const c = await getJson<{ reason: string; code: number; details: { retryAfterSeconds: number } }>(`${s.url}/api/v1/configmaps?watch=true`, s.adminToken);
    assert.equal(c.status, 429);
    assert.deepEqual([c.body.reason, c.body.code, c.body.details.retryAfterSeconds], ['TooManyRequests', 429, 1]);
    assert.equal(c.headers.get('retry-after'), '1');
    // Lists are not watches.
    assert.equal((await getJson(`${s.url}/api/v1/configmaps`, s.adminToken)).status, 200);
    a.close();
    await eventually(() => s.server.watchCount === 1, 5_000, 'the closed watch dropped');
    const d = await openWatch(`${s.url}/api/v1/configmaps`, s.adminToken);
    assert.equal(d.status, 200);
    b.close();
    d.close();
  });

  test('stopping the module ends every watch cleanly and closes the listener', async () => {
    const view = new FakeView();
    const s = await serve(view);
    const w = await openWatch(`${s.url}/api/v1/configmaps`, s.adminToken);
    const w2 = await openWatch(`${s.url}/api/v1/pods`, s.adminToken);
    await s.stop();
    assert.equal(await within(w.ended, 5_000, 'the watch to end'), 'end');
    assert.equal(await within(w2.ended, 5_000, 'the watch to end'), 'end');
    assert.equal(view.subscribers, 0, 'unsubscribed from the view');
    await assert.rejects(fetch(`${s.url}/healthz`), 'nothing listens any more');
  });
});

describe('MetaServer: authentication and authorization', () => {
  test('admin / pod token (own namespace, no secrets, nodes) / other namespace 403 / anonymous discovery only / bad tokens 401', async () => {
    const view = new FakeView();
    for (const ns of ['team-a', 'team-b']) {
      view.put(`${ns}/pod/p`, pod(ns, 'p', 'edge-1'));
      view.put(`${ns}/configmap/c`, configMap(ns, 'c', {}));
      view.put(`${ns}/secret/s`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: ns }, data: { k: 'dg==' } });
      view.put(`${ns}/service/svc`, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'svc', namespace: ns }, spec: {} });
      view.put(`${ns}/endpoints/svc`, { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'svc', namespace: ns } });
    }
    view.put('default/node/edge-1', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'edge-1' } });
    const s = await serve(view);
    const podToken = s.server.podToken('uid-pod-team-a-p', 'team-a');
    assert.equal(s.server.podToken('uid-pod-team-a-p', 'team-a'), podToken, 'stateless: the same token every time');
    const code = async (path: string, token?: string) => (await getJson(`${s.url}${path}`, token)).status;
    const a = '/api/v1/namespaces/team-a';
    const b = '/api/v1/namespaces/team-b';
    const matrix: [string, string | undefined, number][] = [
      [`${a}/secrets/s`, s.adminToken, 200],
      [`${b}/secrets`, s.adminToken, 200],
      ['/api/v1/pods', s.adminToken, 200],
      [`${a}/pods/p`, podToken, 200],
      [`${a}/pods`, podToken, 200],
      [`${a}/configmaps/c`, podToken, 200],
      [`${a}/services/svc`, podToken, 200],
      [`${a}/endpoints/svc`, podToken, 200],
      ['/api/v1/nodes', podToken, 200],
      ['/api/v1/nodes/edge-1', podToken, 200],
      [`${a}/secrets/s`, podToken, 403],
      [`${a}/secrets`, podToken, 403],
      [`${b}/pods/p`, podToken, 403],
      [`${b}/configmaps`, podToken, 403],
      ['/api/v1/pods', podToken, 403],
      ['/api/v1/configmaps', podToken, 403],
      [`${a}/pods`, undefined, 401],
      ['/api/v1/nodes', undefined, 401],
      ['/unknown', undefined, 401],
      ['/api/v1', undefined, 200],
      ['/version', undefined, 200],
      [`${a}/pods`, 'not-a-token', 401],
      [`${a}/pods`, `${s.adminToken}x`, 401],
      [`${a}/pods`, s.server.podToken('uid-pod-team-a-p', 'team-b').replace(/^lpt1\.[^.]+/, `lpt1.${Buffer.from('team-a').toString('base64url')}`), 401],
      [`${a}/pods`, `${podToken.slice(0, -2)}AA`, 401],
      ['/version', 'not-a-token', 401],
    ];
    for (const [path, token, want] of matrix) {
      const who = token === s.adminToken ? 'admin' : token === podToken ? 'pod' : token === undefined ? 'anonymous' : `bad token ${token.slice(0, 12)}`;
      assert.equal(await code(path, token), want, `${who} GET ${path}`);
    }
    const forbidden = await getJson<{ reason: string; message: string }>(`${s.url}${b}/pods`, podToken);
    assert.equal(forbidden.body.reason, 'Forbidden');
    assert.match(forbidden.body.message, /pods is forbidden: User "ledge:pod:team-a:uid-pod-team-a-p" cannot list resource "pods" in API group "" in the namespace "team-b"/);
    const unauthorized = await getJson<{ reason: string; code: number }>(`${s.url}${a}/pods`);
    assert.deepEqual([unauthorized.body.reason, unauthorized.body.code], ['Unauthorized', 401]);
    // A pod watches its own namespace, not another.
    const w = await openWatch(`${s.url}${a}/configmaps`, podToken);
    assert.equal((await w.waitFor(1))[0]!.object.metadata?.name, 'c');
    w.close();
    assert.equal((await getJson(`${s.url}${b}/configmaps?watch=true`, podToken)).status, 403);
  });

  test('credentials: directory 0700, admin token and key 0600, kept across restarts (pod tokens still valid), a token minted before start', async () => {
    const view = new FakeView();
    view.put('ns1/pod/p', pod('ns1', 'p', 'n'));
    const dir = dataDir();
    const s1 = await serve(view, { dataDir: dir });
    const token = s1.server.podToken('u-1', 'ns1');
    const admin = s1.adminToken;
    assert.equal(statSync(join(dir, 'metaserver')).mode & 0o777, 0o700);
    for (const f of ['admin.token', 'pod-token.key', 'epoch']) assert.equal(statSync(join(dir, 'metaserver', f)).mode & 0o777, 0o600, f);
    await s1.stop();
    // A new module on the same data directory mints the same token before it even starts.
    const { createMetaServer } = await import('../../edge/metaserver/index.js');
    assert.equal(createMetaServer({ dataDir: dir, port: 0 }, view, captureLog().logger).podToken('u-1', 'ns1'), token);
    const s2 = await serve(view, { dataDir: dir });
    assert.equal(s2.adminToken, admin, 'the admin token is kept');
    assert.equal((await getJson(`${s2.url}/api/v1/namespaces/ns1/pods/p`, token)).status, 200, 'a pod token of the earlier run works');
  });
});

describe('MetaServer: listening', () => {
  test('a port that is taken: one error line, the module keeps retrying and serves once the port is free', async () => {
    const blocker = createTcpServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    const log = captureLog();
    const view = new FakeView();
    const { createMetaServer } = await import('../../edge/metaserver/index.js');
    const { Beehive } = await import('../../shared/beehive/index.js');
    const server = createMetaServer({ dataDir: dataDir(), port, listenRetryBaseMs: 20, listenRetryMaxMs: 40 }, view, log.logger);
    const bee = new Beehive({ log: log.logger });
    bee.register(server);
    bee.start();
    try {
      await eventually(() => log.lines.filter((l) => /still cannot listen/.test(String(l.msg))).length >= 3, 10_000, 'several retries');
      const errors = log.lines.filter((l) => l.level === 'error');
      assert.equal(errors.length, 1, JSON.stringify(errors));
      assert.match(String(errors[0]!.msg), new RegExp(`MetaServer cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*EdgeCore runs on without it`));
      assert.equal(errors[0]!.code, 'EADDRINUSE');
      assert.equal(server.address(), undefined);
      assert.equal(bee.restartCount('metaserver'), 0, 'not a module failure');
      await new Promise<void>((r) => blocker.close(() => r()));
      const addr = await within(server.whenListening(), 10_000, 'MetaServer to listen');
      assert.deepEqual(addr, { host: '127.0.0.1', port });
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    } finally {
      await bee.stop();
      blocker.close();
    }
  });

  test('oversized headers are refused (431) and the server goes on', async () => {
    const s = await serve(new FakeView(), { maxHeaderBytes: 4096 });
    const r = await fetch(`${s.url}/version`, { headers: { 'X-Big': 'x'.repeat(8192) } }).catch((e: unknown) => e);
    assert.ok(r instanceof Response ? r.status === 431 : r instanceof Error, `refused: ${String(r instanceof Response ? r.status : r)}`);
    assert.equal((await fetch(`${s.url}/version`)).status, 200);
  });
});
