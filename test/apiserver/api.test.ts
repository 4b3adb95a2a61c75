// Conformance-style tests of the local control plane through @kubernetes/client-node
// (and raw HTTPS where a client cannot produce the request), checked against the
// behaviour of a real kube-apiserver.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { expectStatus, raw, startTestServer, type TestServer } from './helpers.js';

let s: TestServer;
before(async () => {
  s = await startTestServer();
});
after(async () => {
  await s.stop();
});

const cm = (name: string, data: Record<string, string> = {}, labels?: Record<string, string>): k8s.V1ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, ...(labels ? { labels } : {}) },
  data,
});

describe('discovery', () => {
  test('serves /version, /api, /apis and resource lists', async () => {
    const v = (await raw(s.handle, 'GET', '/version')).json();
    assert.equal(v.major, '1');
    const api = (await raw(s.handle, 'GET', '/api')).json();
    assert.deepEqual(api.versions, ['v1']);
    const v1 = (await raw(s.handle, 'GET', '/api/v1')).json();
    const names = v1.resources.map((r: { name: string }) => r.name);
    for (const n of ['pods', 'pods/status', 'pods/binding', 'nodes', 'nodes/status', 'namespaces', 'configmaps', 'secrets', 'services', 'endpoints', 'events'])
      assert.ok(names.includes(n), n);
    const apis = (await raw(s.handle, 'GET', '/apis')).json();
    const groups = apis.groups.map((g: { name: string }) => g.name);
    assert.ok(groups.includes('coordination.k8s.io') && groups.includes('apiextensions.k8s.io'));
    const coord = (await raw(s.handle, 'GET', '/apis/coordination.k8s.io/v1')).json();
    assert.equal(coord.resources[0].name, 'leases');
    assert.equal((await raw(s.handle, 'GET', '/apis/nope.io/v1')).status, 404);
  });

  test('requires authentication except for health and version', async () => {
    const r = await raw(s.handle, 'GET', '/api/v1/namespaces', undefined, {}, false);
    assert.equal(r.status, 401);
    assert.equal(r.json().reason, 'Unauthorized');
    const bad = await raw(s.handle, 'GET', '/api/v1/namespaces', undefined, { authorization: 'Bearer nope' }, false);
    assert.equal(bad.status, 401);
    assert.equal((await raw(s.handle, 'GET', '/healthz', undefined, {}, false)).status, 200);
  });

  test('accepts the admin client certificate instead of the token', async () => {
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: s.handle.url, caData: Buffer.from(s.handle.caCertPem).toString('base64') }],
      users: [{ name: 'u', certData: Buffer.from(s.handle.clientCertPem).toString('base64'), keyData: Buffer.from(s.handle.clientKeyPem).toString('base64') }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const list = await kc.makeApiClient(k8s.CoreV1Api).listNamespace();
    assert.ok(list.items.some((n) => n.metadata?.name === 'default'));
  });
});

describe('CRUD', () => {
  test('create sets uid, resourceVersion, generation, creationTimestamp', async () => {
    const created = await s.core.createNamespacedConfigMap({ namespace: 'default', body: cm('c1', { a: '1' }) });
    assert.match(created.metadata!.uid!, /^[0-9a-f-]{36}$/);
    assert.match(created.metadata!.resourceVersion!, /^\d+$/);
    assert.equal(created.metadata!.generation, 1);
    assert.ok(created.metadata!.creationTimestamp instanceof Date);
    const got = await s.core.readNamespacedConfigMap({ name: 'c1', namespace: 'default' });
    assert.equal(got.data!.a, '1');
    assert.equal(got.metadata!.resourceVersion, created.metadata!.resourceVersion);
  });

  test('resourceVersion increases monotonically across objects and types', async () => {
    const a = await s.core.createNamespacedConfigMap({ namespace: 'default', body: cm('mono-a') });
    const b = await s.core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'mono-b' }, stringData: { x: 'y' } } });
    const c = await s.core.replaceNamespacedConfigMap({ name: 'mono-a', namespace: 'default', body: { ...a, data: { z: '1' } } });
    const rvs = [a, b, c].map((o) => Number(o.metadata!.resourceVersion));
    assert.ok(rvs[0]! < rvs[1]! && rvs[1]! < rvs[2]!, `not increasing: ${rvs.join(',')}`);
  });

  test('duplicate create is 409 AlreadyExists', async () => {
    await s.core.createNamespacedConfigMap({ namespace: 'default', body: cm('dup') });
    const st = await expectStatus(s.core.createNamespacedConfigMap({ namespace: 'default', body: cm('dup') }));
    assert.equal(st.code, 409);
    assert.equal(st.reason, 'AlreadyExists');
    assert.equal(st.kind, 'Status');
  });

  test('update with a stale resourceVersion is 409 Conflict', async () => {
    const c = await s.core.createNamespacedConfigMap({ namespace: 'default', body: cm('occ', { v: '0' }) });
    const u1 = await s.core.replaceNamespacedConfigMap({ name: 'occ', namespace: 'default', body: { ...c, data: { v: '1' } } });
    assert.notEqual(u1.metadata!.resourceVersion, c.metadata!.resourceVersion);
    const st = await expectStatus(s.core.replaceNamespacedConfigMap({ name: 'occ', namespace: 'default', body: { ...c, data: { v: '2' } } }));
    assert.equal(st.code, 409);
    assert.equal(st.reason, 'Conflict');
    const got = await s.core.readNamespacedConfigMap({ name: 'occ', namespace: 'default' });
    assert.equal(got.data!.v, '1');
  });

  test('get/delete of a missing object is 404 NotFound with details', async () => {
    const st = await expectStatus(s.core.readNamespacedConfigMap({ name: 'missing', namespace: 'default' }));
    assert.equal(st.code, 404);
    assert.equal(st.reason, 'NotFound');
    assert.equal(st.message, 'configmaps "missing" not found');
    assert.deepEqual(st.details, { name: 'missing', kind: 'configmaps' });
    assert.equal((await expectStatus(s.core.deleteNamespacedConfigMap({ name: 'missing', namespace: 'default' }))).code, 404);
  });

  test('create in a missing namespace is 404', async () => {
    const st = await expectStatus(s.core.createNamespacedConfigMap({ namespace: 'no-such-ns', body: cm('x') }));
    assert.equal(st.code, 404);
  });

  test('delete removes the object; a no-op update keeps the resourceVersion', async () => {
    const c = await s.core.createNamespacedConfigMap({ namespace: 'default', body: cm('del', { a: 'b' }) });
    const same = await s.core.replaceNamespacedConfigMap({ name: 'del', namespace: 'default', body: c });
    assert.equal(same.metadata!.resourceVersion, c.metadata!.resourceVersion);
    await s.core.deleteNamespacedConfigMap({ name: 'del', namespace: 'default' });
    assert.equal((await expectStatus(s.core.readNamespacedConfigMap({ name: 'del', namespace: 'default' }))).code, 404);
  });

  test('delete preconditions on uid', async () => {
    await s.core.createNamespacedConfigMap({ namespace: 'default', body: cm('pre') });
    const st = await expectStatus(s.core.deleteNamespacedConfigMap({ name: 'pre', namespace: 'default', body: { preconditions: { uid: 'not-the-uid' } } }));
    assert.equal(st.code, 409);
  });

  test('generateName creates a unique name', async () => {
    const a = await s.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { generateName: 'gen-' } } });
    assert.match(a.metadata!.name!, /^gen-[a-z0-9]{5}$/);
  });

  test('namespaces: create, list, delete removes contents', async () => {
    await s.core.createNamespace({ body: { metadata: { name: 'team-a' } } });
    await s.core.createNamespacedConfigMap({ namespace: 'team-a', body: cm('in-team') });
    const del = await s.core.deleteNamespace({ name: 'team-a' });
    assert.equal((del as k8s.V1Namespace).status?.phase, 'Terminating');
    for (let i = 0; i < 100; i++) {
      try {
        await s.core.readNamespace({ name: 'team-a' });
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((await expectStatus(s.core.readNamespace({ name: 'team-a' }))).code, 404);
    assert.equal((await expectStatus(s.core.readNamespacedConfigMap({ name: 'in-team', namespace: 'team-a' }))).code, 404);
  });

  test('events and leases are served', async () => {
    const ev = await s.core.createNamespacedEvent({
      namespace: 'default',
      body: { metadata: { name: 'web.1234' }, involvedObject: { kind: 'Pod', name: 'web', namespace: 'default' }, reason: 'Started', message: 'hi', type: 'Normal' },
    });
    assert.equal(ev.reason, 'Started');
    const evs = await s.core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.name=web,involvedObject.kind=Pod' });
    assert.equal(evs.items.length, 1);
    const lease = await s.coord.createNamespacedLease({
      namespace: 'kube-node-lease',
      body: { metadata: { name: 'n1' }, spec: { holderIdentity: 'n1', leaseDurationSeconds: 40 } },
    });
    assert.equal(lease.spec!.holderIdentity, 'n1');
  });
});

describe('status subresource', () => {
  test('main resource ignores status; /status ignores spec', async () => {
    await s.core.createNode({ body: { metadata: { name: 'st-node' }, spec: { podCIDR: '10.0.0.0/24' }, status: { phase: 'Running' } } });
    const n = await s.core.readNode({ name: 'st-node' });
    const upd = await s.core.replaceNode({ name: 'st-node', body: { ...n, spec: { podCIDR: '10.0.1.0/24' }, status: { phase: 'Terminated' } } });
    assert.equal(upd.spec!.podCIDR, '10.0.1.0/24');
    assert.equal(upd.status!.phase, 'Running');
    const st = await s.core.replaceNodeStatus({ name: 'st-node', body: { ...upd, spec: { podCIDR: '1.1.1.0/24' }, status: { phase: 'Pending' } } });
    assert.equal(st.status!.phase, 'Pending');
    assert.equal(st.spec!.podCIDR, '10.0.1.0/24');
  });
});

describe('selectors and pagination', () => {
  test('label selectors: equality, set-based, existence', async () => {
    await s.core.createNamespace({ body: { metadata: { name: 'sel' } } });
    await s.core.createNamespacedConfigMap({ namespace: 'sel', body: cm('a', {}, { app: 'web', tier: 'fe' }) });
    await s.core.createNamespacedConfigMap({ namespace: 'sel', body: cm('b', {}, { app: 'web', tier: 'be' }) });
    await s.core.createNamespacedConfigMap({ namespace: 'sel', body: cm('c', {}, { app: 'db' }) });
    const names = async (labelSelector: string) => (await s.core.listNamespacedConfigMap({ namespace: 'sel', labelSelector })).items.map((i) => i.metadata!.name).sort();
    assert.deepEqual(await names('app=web'), ['a', 'b']);
    assert.deepEqual(await names('app!=web'), ['c']);
    assert.deepEqual(await names('tier in (fe,xx)'), ['a']);
    assert.deepEqual(await names('tier notin (fe)'), ['b', 'c']);
    assert.deepEqual(await names('tier'), ['a', 'b']);
    assert.deepEqual(await names('!tier'), ['c']);
    assert.deepEqual(await names('app=web,tier=be'), ['b']);
    const bad = await raw(s.handle, 'GET', `/api/v1/namespaces/sel/configmaps?labelSelector=${encodeURIComponent('a b c')}`);
    assert.equal(bad.status, 400);
  });

  test('field selectors: metadata.name, metadata.namespace, unsupported → 400', async () => {
    const byName = await s.core.listConfigMapForAllNamespaces({ fieldSelector: 'metadata.name=a,metadata.namespace=sel' });
    assert.deepEqual(
      byName.items.map((i) => `${i.metadata!.namespace}/${i.metadata!.name}`),
      ['sel/a'],
    );
    const st = await expectStatus(s.core.listNamespacedConfigMap({ namespace: 'sel', fieldSelector: 'data.x=1' }));
    assert.equal(st.code, 400);
  });

  test('list with limit/continue returns every item once, in order', async () => {
    await s.core.createNamespace({ body: { metadata: { name: 'page' } } });
    for (let i = 0; i < 23; i++) await s.core.createNamespacedConfigMap({ namespace: 'page', body: cm(`p-${String(i).padStart(2, '0')}`) });
    const seen: string[] = [];
    let cont: string | undefined;
    let pages = 0;
    let firstRv: string | undefined;
    do {
      const page = await s.core.listNamespacedConfigMap({ namespace: 'page', limit: 5, ...(cont ? { _continue: cont } : {}) });
      firstRv ??= page.metadata!.resourceVersion;
      assert.equal(page.metadata!.resourceVersion, firstRv);
      seen.push(...page.items.map((i) => i.metadata!.name!));
      cont = page.metadata!._continue;
      if (cont) assert.equal(page.items.length, 5);
      pages++;
    } while (cont);
    assert.equal(pages, 5);
    assert.equal(seen.length, 23);
    assert.deepEqual(seen, [...seen].sort());
    const bad = await raw(s.handle, 'GET', '/api/v1/namespaces/page/configmaps?limit=5&continue=garbage!!');
    assert.equal(bad.status, 400);
  });
});

describe('patch', () => {
  test('merge patch, JSON patch, strategic merge patch of containers by name', async () => {
    await s.core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'pp', labels: { a: '1' } },
        spec: {
          nodeName: 'elsewhere',
          containers: [
            { name: 'a', image: 'img:1', env: [{ name: 'X', value: '1' }] },
            { name: 'b', image: 'img:1' },
          ],
        },
      },
    });
    const merge = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/pods/pp', JSON.stringify({ metadata: { labels: { b: '2', a: null } } }), {
      'content-type': 'application/merge-patch+json',
    });
    assert.equal(merge.status, 200);
    assert.deepEqual(merge.json().metadata.labels, { b: '2' });
    const jp = await raw(
      s.handle,
      'PATCH',
      '/api/v1/namespaces/default/pods/pp',
      JSON.stringify([
        { op: 'add', path: '/metadata/annotations', value: { x: 'y' } },
        { op: 'test', path: '/metadata/labels/b', value: '2' },
      ]),
      { 'content-type': 'application/json-patch+json' },
    );
    assert.equal(jp.status, 200);
    assert.deepEqual(jp.json().metadata.annotations, { x: 'y' });
    const failedTest = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/pods/pp', JSON.stringify([{ op: 'test', path: '/metadata/labels/b', value: 'nope' }]), {
      'content-type': 'application/json-patch+json',
    });
    assert.equal(failedTest.status, 422);
    const smp = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/pods/pp', JSON.stringify({ spec: { containers: [{ name: 'b', image: 'img:2' }] } }), {
      'content-type': 'application/strategic-merge-patch+json',
    });
    assert.equal(smp.status, 200, smp.text);
    const cs = smp.json().spec.containers;
    assert.deepEqual(
      cs.map((c: { name: string; image: string }) => [c.name, c.image]),
      [
        ['a', 'img:1'],
        ['b', 'img:2'],
      ],
    );
    assert.deepEqual(cs[0].env, [{ name: 'X', value: '1' }]);
    const conds = await raw(
      s.handle,
      'PATCH',
      '/api/v1/namespaces/default/pods/pp/status',
      JSON.stringify({
        status: {
          conditions: [
            { type: 'Ready', status: 'True' },
            { type: 'Initialized', status: 'True' },
          ],
        },
      }),
      { 'content-type': 'application/strategic-merge-patch+json' },
    );
    assert.equal(conds.status, 200);
    const conds2 = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/pods/pp/status', JSON.stringify({ status: { conditions: [{ type: 'Ready', status: 'False' }] } }), {
      'content-type': 'application/strategic-merge-patch+json',
    });
    const types = conds2
      .json()
      .status.conditions.map((c: { type: string; status: string }) => `${c.type}=${c.status}`)
      .sort();
    assert.deepEqual(types, ['Initialized=True', 'Ready=False']);
    const del = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/pods/pp/status', JSON.stringify({ status: { conditions: [{ type: 'Ready', $patch: 'delete' }] } }), {
      'content-type': 'application/strategic-merge-patch+json',
    });
    assert.deepEqual(
      del.json().status.conditions.map((c: { type: string }) => c.type),
      ['Initialized'],
    );
  });

  test('patch with a stale resourceVersion is 409; unknown patch type is 415', async () => {
    const c = await s.core.createNamespacedConfigMap({ namespace: 'default', body: cm('pc', { a: '1' }) });
    await s.core.patchNamespacedConfigMap({ name: 'pc', namespace: 'default', body: { data: { a: '2' } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    const stale = await raw(
      s.handle,
      'PATCH',
      '/api/v1/namespaces/default/configmaps/pc',
      JSON.stringify({ metadata: { resourceVersion: c.metadata!.resourceVersion }, data: { a: '3' } }),
      { 'content-type': 'application/merge-patch+json' },
    );
    assert.equal(stale.status, 409);
    const bad = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/configmaps/pc', '{}', { 'content-type': 'text/plain' });
    assert.equal(bad.status, 415);
  });

  test('server-side apply creates, merges and records managedFields', async () => {
    const body = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: "1"\n';
    const r1 = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/configmaps/ssa?fieldManager=tester', body, { 'content-type': 'application/apply-patch+yaml' });
    assert.equal(r1.status, 201, r1.text);
    const r2 = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/configmaps/ssa?fieldManager=tester', body.replace('a: "1"', 'b: "2"'), {
      'content-type': 'application/apply-patch+yaml',
    });
    assert.equal(r2.status, 200);
    assert.deepEqual(r2.json().data, { a: '1', b: '2' });
    assert.equal(r2.json().metadata.managedFields[0].manager, 'tester');
    assert.equal(r2.json().metadata.managedFields[0].operation, 'Apply');
    const noMgr = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/configmaps/ssa', body, { 'content-type': 'application/apply-patch+yaml' });
    assert.equal(noMgr.status, 400);
  });
});

describe('dry run', () => {
  test('dryRun=All validates but stores nothing', async () => {
    const r = await raw(s.handle, 'POST', '/api/v1/namespaces/default/configmaps?dryRun=All', JSON.stringify(cm('dry')));
    assert.equal(r.status, 201);
    assert.equal((await expectStatus(s.core.readNamespacedConfigMap({ name: 'dry', namespace: 'default' }))).code, 404);
  });
});
