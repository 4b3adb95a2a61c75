// Bad input gets the Status code a real apiserver sends, and nothing is stored.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { raw, startTestServer, type TestServer } from './helpers.js';

let s: TestServer;
before(async () => {
  s = await startTestServer();
});
after(async () => {
  await s.stop();
});

const CMS = '/api/v1/namespaces/default/configmaps';

async function countAll(): Promise<number> {
  const cms = (await raw(s.handle, 'GET', CMS)).json().items.length;
  const pods = (await raw(s.handle, 'GET', '/api/v1/namespaces/default/pods')).json().items.length;
  return cms + pods;
}

async function expectCode(method: string, path: string, body: string | Buffer | undefined, code: number, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const r = await raw(s.handle, method, path, body, headers);
  assert.equal(r.status, code, `${method} ${path}: ${r.text.slice(0, 300)}`);
  const st = r.json();
  assert.equal(st.kind, 'Status');
  assert.equal(st.status, 'Failure');
  assert.equal(st.code, code);
  return st;
}

describe('bad input', () => {
  test('malformed bodies → 400', async () => {
    const before = await countAll();
    await expectCode('POST', CMS, '{"metadata": {"name": "x"', 400);
    await expectCode('POST', CMS, 'metadata:\n  name: [unclosed\n', 400, { 'content-type': 'application/yaml' });
    await expectCode('POST', CMS, '[1,2,3]', 400);
    await expectCode('POST', CMS, '"just a string"', 400);
    await expectCode('POST', CMS, '', 400);
    await expectCode('PATCH', `${CMS}/whatever`, '{bad json', 400, { 'content-type': 'application/merge-patch+json' });
    assert.equal(await countAll(), before);
  });

  test('YAML bodies are accepted when declared', async () => {
    const r = await raw(s.handle, 'POST', CMS, 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n', { 'content-type': 'application/yaml' });
    assert.equal(r.status, 201);
    await raw(s.handle, 'DELETE', `${CMS}/from-yaml`);
  });

  test('wrong kind, wrong apiVersion, namespace or name mismatch → 400', async () => {
    const before = await countAll();
    await expectCode('POST', '/api/v1/namespaces/default/pods', JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'k' } }), 400);
    await expectCode('POST', CMS, JSON.stringify({ apiVersion: 'apps/v1', kind: 'ConfigMap', metadata: { name: 'k' } }), 400);
    await expectCode('POST', CMS, JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'k', namespace: 'kube-system' } }), 400);
    await raw(s.handle, 'POST', CMS, JSON.stringify({ metadata: { name: 'real' } }));
    await expectCode('PUT', `${CMS}/real`, JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'other' } }), 400);
    await raw(s.handle, 'DELETE', `${CMS}/real`);
    assert.equal(await countAll(), before);
  });

  test('oversized body → 413', async () => {
    const big = JSON.stringify({ metadata: { name: 'big' }, data: { x: 'a'.repeat(3 * 1024 * 1024 + 10) } });
    const st = await expectCode('POST', CMS, big, 413);
    assert.equal(st.reason, 'RequestEntityTooLarge');
    assert.equal((await raw(s.handle, 'GET', `${CMS}/big`)).status, 404);
  });

  test('unknown resources, groups and subresources → 404; wrong method → 405', async () => {
    await expectCode('GET', '/api/v1/namespaces/default/widgets', undefined, 404);
    await expectCode('POST', '/apis/nope.example.com/v1/namespaces/default/things', '{}', 404);
    await expectCode('GET', '/api/v2/pods', undefined, 404);
    await expectCode('GET', `${CMS}/x/status`, undefined, 404);
    await expectCode('PUT', CMS, '{}', 405);
    await expectCode('POST', `${CMS}/x`, '{}', 405);
  });

  test('invalid names (DNS-1123) → 422 with causes; nothing stored', async () => {
    const before = await countAll();
    for (const name of ['Bad_Name', 'UPPER', '-lead', 'trail-', 'a'.repeat(254), 'with space']) {
      const st = await expectCode('POST', CMS, JSON.stringify({ metadata: { name } }), 422);
      assert.equal(st.reason, 'Invalid');
      const causes = (st.details as { causes: { field: string }[] }).causes;
      assert.equal(causes[0]!.field, 'metadata.name');
    }
    await expectCode('POST', '/api/v1/namespaces', JSON.stringify({ metadata: { name: 'a.b' } }), 422);
    await expectCode('POST', CMS, JSON.stringify({ metadata: {} }), 422);
    await expectCode('POST', CMS, JSON.stringify({ metadata: { name: 'lbl', labels: { ok: 'bad value!' } } }), 422);
    await expectCode('POST', '/api/v1/namespaces/default/pods', JSON.stringify({ metadata: { name: 'nocontainers' }, spec: {} }), 422);
    await expectCode('POST', '/api/v1/namespaces/default/services', JSON.stringify({ metadata: { name: '1svc' } }), 422);
    assert.equal(await countAll(), before);
  });

  test('bad query parameters → 400', async () => {
    await expectCode('GET', `${CMS}?limit=-1`, undefined, 400);
    await expectCode('GET', `${CMS}?watch=1&resourceVersion=abc`, undefined, 400);
    await expectCode('DELETE', `${CMS}/x?gracePeriodSeconds=soon`, undefined, 400);
  });
});
