// CustomResourceDefinitions: registration starts serving the resource (namespaced and
// cluster-scoped), schema validation and pruning, status subresource, deletion.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import { eventually, expectStatus, raw, startTestServer, type TestServer } from './helpers.js';

let s: TestServer;
before(async () => {
  s = await startTestServer();
});
after(async () => {
  await s.stop();
});

function crd(plural: string, kind: string, scope: 'Namespaced' | 'Cluster', status: boolean): k8s.V1CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.example.com` },
    spec: {
      group: 'example.com',
      scope,
      names: { plural, singular: kind.toLowerCase(), kind, listKind: `${kind}List` },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          ...(status ? { subresources: { status: {} } } : {}),
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: {
                spec: {
                  type: 'object',
                  required: ['size'],
                  properties: { size: { type: 'integer', minimum: 1 }, color: { type: 'string', _enum: ['red', 'blue'] }, tags: { type: 'array', items: { type: 'string' } } },
                },
                status: { type: 'object', properties: { ready: { type: 'boolean' } } },
              },
            },
          },
        },
      ],
    },
  };
}

describe('CRDs', () => {
  test('creating a CRD serves its resource in discovery; CRUD of custom objects', async () => {
    assert.equal((await raw(s.handle, 'GET', '/apis/example.com/v1')).status, 404);
    const created = await s.ext.createCustomResourceDefinition({ body: crd('widgets', 'Widget', 'Namespaced', true) });
    assert.equal(created.status?.conditions?.find((c) => c.type === 'Established')?.status, 'True');
    const disc = (await raw(s.handle, 'GET', '/apis/example.com/v1')).json();
    assert.deepEqual(disc.resources.map((r: { name: string }) => r.name).sort(), ['widgets', 'widgets/status']);
    const w = (await s.custom.createNamespacedCustomObject({
      group: 'example.com',
      version: 'v1',
      namespace: 'default',
      plural: 'widgets',
      body: { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w1' }, spec: { size: 2, color: 'red' } },
    })) as k8s.KubernetesObject & { spec: { size: number } };
    assert.equal(w.spec.size, 2);
    assert.equal(w.metadata!.generation, 1);
    const list = (await s.custom.listNamespacedCustomObject({ group: 'example.com', version: 'v1', namespace: 'default', plural: 'widgets' })) as {
      items: unknown[];
      kind: string;
    };
    assert.equal(list.kind, 'WidgetList');
    assert.equal(list.items.length, 1);
    const upd = (await s.custom.replaceNamespacedCustomObject({
      group: 'example.com',
      version: 'v1',
      namespace: 'default',
      plural: 'widgets',
      name: 'w1',
      body: { ...w, spec: { size: 5 } },
    })) as k8s.KubernetesObject & { spec: { size: number } };
    assert.equal(upd.spec.size, 5);
    assert.equal(upd.metadata!.generation, 2);
    const stale = await expectStatus(
      s.custom.replaceNamespacedCustomObject({ group: 'example.com', version: 'v1', namespace: 'default', plural: 'widgets', name: 'w1', body: { ...w, spec: { size: 6 } } }),
    );
    assert.equal(stale.code, 409);
  });

  test('schema validation: types, required, enum, minimum → 422 and nothing stored', async () => {
    const cases: unknown[] = [{ color: 'red' }, { size: 'big' }, { size: 1, color: 'green' }, { size: 0 }, { size: 1, tags: [1] }];
    for (const spec of cases) {
      const st = await expectStatus(
        s.custom.createNamespacedCustomObject({
          group: 'example.com',
          version: 'v1',
          namespace: 'default',
          plural: 'widgets',
          body: { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'bad' }, spec },
        }),
      );
      assert.equal(st.code, 422, JSON.stringify(spec));
      assert.equal(st.reason, 'Invalid');
      assert.ok(Array.isArray(st.details?.causes));
    }
    assert.equal((await expectStatus(s.custom.getNamespacedCustomObject({ group: 'example.com', version: 'v1', namespace: 'default', plural: 'widgets', name: 'bad' }))).code, 404);
  });

  test('unknown fields are pruned (or rejected with fieldValidation=Strict)', async () => {
    const r = await raw(
      s.handle,
      'POST',
      '/apis/example.com/v1/namespaces/default/widgets',
      JSON.stringify({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'pr' }, spec: { size: 1, extra: 'x' } }),
    );
    assert.equal(r.status, 201);
    assert.deepEqual(r.json().spec, { size: 1 });
    const strict = await raw(
      s.handle,
      'POST',
      '/apis/example.com/v1/namespaces/default/widgets?fieldValidation=Strict',
      JSON.stringify({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'pr2' }, spec: { size: 1, extra: 'x' } }),
    );
    assert.equal(strict.status, 400);
  });

  test('status subresource: main resource ignores status, /status changes only status', async () => {
    const base = '/apis/example.com/v1/namespaces/default/widgets/w1';
    const p1 = await raw(s.handle, 'PATCH', base, JSON.stringify({ status: { ready: true } }), { 'content-type': 'application/merge-patch+json' });
    assert.equal(p1.json().status, undefined);
    const p2 = await raw(s.handle, 'PATCH', `${base}/status`, JSON.stringify({ status: { ready: true }, spec: { size: 99 } }), { 'content-type': 'application/merge-patch+json' });
    assert.equal(p2.status, 200);
    assert.deepEqual(p2.json().status, { ready: true });
    assert.equal(p2.json().spec.size, 5);
    assert.equal(p2.json().metadata.generation, p1.json().metadata.generation);
    const smp = await raw(s.handle, 'PATCH', base, JSON.stringify({ spec: { size: 3 } }), { 'content-type': 'application/strategic-merge-patch+json' });
    assert.equal(smp.status, 415);
  });

  test('cluster-scoped CRD without status subresource', async () => {
    await s.ext.createCustomResourceDefinition({ body: crd('gadgets', 'Gadget', 'Cluster', false) });
    const g = (await s.custom.createClusterCustomObject({
      group: 'example.com',
      version: 'v1',
      plural: 'gadgets',
      body: { apiVersion: 'example.com/v1', kind: 'Gadget', metadata: { name: 'g1' }, spec: { size: 1 }, status: { ready: true } },
    })) as { status?: { ready: boolean }; metadata: { namespace?: string } };
    assert.deepEqual(g.status, { ready: true });
    assert.equal(g.metadata.namespace, undefined);
    const disc = (await raw(s.handle, 'GET', '/apis/example.com/v1')).json();
    const gad = disc.resources.find((r: { name: string }) => r.name === 'gadgets');
    assert.equal(gad.namespaced, false);
    assert.equal((await raw(s.handle, 'GET', '/apis/example.com/v1/namespaces/default/gadgets')).status, 404);
  });

  test('invalid CRDs are rejected', async () => {
    const bad = crd('things', 'Thing', 'Namespaced', false);
    bad.metadata!.name = 'wrong.example.com';
    assert.equal((await expectStatus(s.ext.createCustomResourceDefinition({ body: bad }))).code, 422);
  });

  test('deleting a CRD stops serving it and removes its objects', async () => {
    await s.ext.deleteCustomResourceDefinition({ name: 'gadgets.example.com' });
    await eventually(async () => (await raw(s.handle, 'GET', '/apis/example.com/v1/gadgets')).status === 404, 'gadgets unserved');
    await s.ext.createCustomResourceDefinition({ body: crd('gadgets', 'Gadget', 'Cluster', false) });
    const list = (await s.custom.listClusterCustomObject({ group: 'example.com', version: 'v1', plural: 'gadgets' })) as { items: unknown[] };
    assert.equal(list.items.length, 0);
  });
});
