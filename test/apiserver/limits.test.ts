// One request cannot make the control plane do unbounded work: CRD patterns run on RE2,
// schema defaults are bounded, ConfigMap/Secret data is typed, bad URLs and deep bodies
// are 400s, a resourceVersion from the future times out like kube-apiserver's watch
// cache, and a failing cleanup after a CRD delete is logged, not an unhandled rejection.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../shared/log/index.js';
import { Registry } from '../../apiserver/registry.js';
import { Rest } from '../../apiserver/rest.js';
import { Store } from '../../apiserver/store.js';
import { validateSchema } from '../../apiserver/validation.js';
import { parseFieldSelector, parseLabelSelector } from '../../apiserver/selectors.js';
import { ApiError } from '../../apiserver/errors.js';
import type { StatusCause } from '../../apiserver/errors.js';
import type { Json, JSONSchemaProps, KObject } from '../../apiserver/types.js';
import { eventually, raw, rawWatch, startTestServer, type TestServer } from './helpers.js';

let s: TestServer;
before(async () => {
  s = await startTestServer();
});
after(async () => {
  await s.stop();
});

const CMS = '/api/v1/namespaces/default/configmaps';
const SECRETS = '/api/v1/namespaces/default/secrets';
const CRDS = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';

/** `widgets` → `Widget`. */
const kindOf = (plural: string): string => plural[0]!.toUpperCase() + plural.slice(1, -1);

function crd(plural: string, spec: JSONSchemaProps): Record<string, unknown> {
  const kind = kindOf(plural);
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.limits.example.com` },
    spec: {
      group: 'limits.example.com',
      scope: 'Namespaced',
      names: { plural, singular: plural.slice(0, -1), kind, listKind: `${kind}List` },
      versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', properties: { spec } } } }],
    },
  };
}

async function createCrd(plural: string, spec: JSONSchemaProps): Promise<string> {
  const r = await raw(s.handle, 'POST', CRDS, JSON.stringify(crd(plural, spec)));
  assert.equal(r.status, 201, r.text);
  const path = `/apis/limits.example.com/v1/namespaces/default/${plural}`;
  await eventually(async () => (await raw(s.handle, 'GET', path)).status === 200, `${plural} served`);
  return path;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- test convenience: a Status body
// biome-ignore lint/suspicious/noExplicitAny: test convenience, arbitrary JSON
async function expectStatus(method: string, path: string, body: string | undefined, code: number, headers: Record<string, string> = {}): Promise<Record<string, any>> {
  const r = await raw(s.handle, method, path, body, headers);
  assert.equal(r.status, code, `${method} ${path}: ${r.text.slice(0, 400)}`);
  const st = r.json();
  assert.equal(st.kind, 'Status');
  assert.equal(st.code, code);
  return st;
}

describe('CRD pattern (RE2)', () => {
  test('a catastrophic-backtracking pattern is matched in linear time and answers 422', async () => {
    const path = await createCrd('redoses', { type: 'object', properties: { s: { type: 'string', pattern: '^(a+)+$' } } });
    // A backtracking engine needs about 2^180 steps for this string.
    const st = await expectStatus(
      'POST',
      path,
      JSON.stringify({ apiVersion: 'limits.example.com/v1', kind: kindOf('redoses'), metadata: { name: 'r1' }, spec: { s: `${'a'.repeat(180)}!` } }),
      422,
    );
    assert.equal(st.details.causes[0].field, 'spec.s');
    assert.match(st.details.causes[0].message, /should match '\^\(a\+\)\+\$'/);
    const ok = await raw(
      s.handle,
      'POST',
      path,
      JSON.stringify({ apiVersion: 'limits.example.com/v1', kind: kindOf('redoses'), metadata: { name: 'r2' }, spec: { s: 'a'.repeat(180) } }),
    );
    assert.equal(ok.status, 201, ok.text);
  });

  test('RE2 semantics: a pattern RE2 cannot compile is refused at CRD create, naming the field', async () => {
    const body = crd('lookaheads', {
      type: 'object',
      properties: { s: { type: 'string', pattern: '^(?=a).*$' }, t: { type: 'array', items: { type: 'string', pattern: '(a)\\1' } } },
    });
    const st = await expectStatus('POST', CRDS, JSON.stringify(body), 422);
    const fields = (st.details.causes as StatusCause[]).map((c) => c.field).sort();
    assert.deepEqual(fields, [
      'spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[s].pattern',
      'spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[t].items.pattern',
    ]);
    assert.match(st.message, /must be a valid regular expression/);
    assert.equal((await raw(s.handle, 'GET', `${CRDS}/lookaheads.limits.example.com`)).status, 404);
  });

  test('pattern work per object is bounded (string length × program size)', () => {
    const schema: JSONSchemaProps = { type: 'object', properties: { s: { type: 'array', items: { type: 'string', pattern: 'a[ab]{999}b$' } } } };
    const causes: StatusCause[] = [];
    validateSchema({ s: Array.from({ length: 100 }, () => 'ab'.repeat(500)) } as Json, schema, '', causes);
    // The strings do not match; after about 33 of the 100 the budget stops the matching.
    assert.ok(causes.length < 50, String(causes.length));
    assert.match(causes.at(-1)!.message, /takes more than 33554432 steps/);
  });
});

describe('CRD defaults', () => {
  test('nested defaults are applied inside defaults, within the byte budget', async () => {
    const path = await createCrd('nesteds', {
      type: 'object',
      properties: {
        outer: {
          type: 'object',
          default: {},
          properties: { list: { type: 'array', default: [{}, {}], items: { type: 'object', properties: { x: { type: 'string', default: 'd' } } } } },
        },
      },
    });
    const r = await raw(s.handle, 'POST', path, JSON.stringify({ apiVersion: 'limits.example.com/v1', kind: kindOf('nesteds'), metadata: { name: 'n1' }, spec: {} }));
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.json().spec, { outer: { list: [{ x: 'd' }, { x: 'd' }] } });
  });

  test('defaults that multiply through nested arrays are refused at CRD create', async () => {
    // Each level's default is ten elements whose own default is the next level: 10^7
    // leaves from a schema of a few hundred bytes.
    let node: JSONSchemaProps = { type: 'string', default: 'leaf' };
    for (let i = 0; i < 7; i++) {
      node = { type: 'array', default: Array.from({ length: 10 }, () => ({})), items: { type: 'object', properties: { n: node } } };
    }
    const body = crd('bombs', { type: 'object', properties: { n: node } });
    const st = await expectStatus('POST', CRDS, JSON.stringify(body), 422);
    assert.match(st.details.causes[0].field, /^spec\.versions\[0\]\.schema\.openAPIV3Schema\.properties\[spec\]\.properties\[n\].*\.default$/);
    assert.match(st.message, /defaults would add more than 3145728 bytes/);
  });

  test('a small custom resource whose array elements each receive a large default is refused, not expanded', async () => {
    const big = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'v'.repeat(1000)]));
    const path = await createCrd('fanouts', {
      type: 'object',
      properties: { items: { type: 'array', items: { type: 'object', properties: { cfg: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true, default: big } } } } },
    });
    // 6 KB of `{}` elements; each would get a 100 KB default: 200 MB.
    const body = JSON.stringify({
      apiVersion: 'limits.example.com/v1',
      kind: kindOf('fanouts'),
      metadata: { name: 'f1' },
      spec: { items: Array.from({ length: 2000 }, () => ({})) },
    });
    assert.ok(body.length < 7000);
    const st = await expectStatus('POST', path, body, 422);
    assert.match(st.message, /defaults would add more than 3145728 bytes/);
    assert.equal((await raw(s.handle, 'GET', `${path}/f1`)).status, 404);
    // A few elements get it.
    const ok = await raw(
      s.handle,
      'POST',
      path,
      JSON.stringify({ apiVersion: 'limits.example.com/v1', kind: kindOf('fanouts'), metadata: { name: 'f2' }, spec: { items: [{}, {}] } }),
    );
    assert.equal(ok.status, 201, ok.text.slice(0, 300));
    assert.deepEqual(ok.json().spec.items[1].cfg, big);
  });
});

describe('ConfigMap and Secret data', () => {
  test("non-string ConfigMap data → 400 like kube-apiserver's decoder; nothing stored", async () => {
    for (const data of [{ a: 1 }, { a: { b: 'c' } }, { a: ['x'] }, { a: true }, ['x'], 'str']) {
      const st = await expectStatus('POST', CMS, JSON.stringify({ metadata: { name: 'typed' }, data }), 400);
      assert.match(
        st.message,
        /^ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal \w+ into Go struct field ConfigMap\.data of type (string|map\[string\]string)$/,
      );
    }
    await expectStatus('POST', CMS, JSON.stringify({ metadata: { name: 'typed' }, binaryData: { a: 'not base64!' } }), 400);
    await expectStatus('POST', CMS, JSON.stringify({ metadata: { name: 'typed' }, binaryData: { a: 5 } }), 400);
    assert.equal((await raw(s.handle, 'GET', `${CMS}/typed`)).status, 404);
    const ok = await raw(s.handle, 'POST', CMS, JSON.stringify({ metadata: { name: 'typed' }, data: { a: 'x', n: null }, binaryData: { b: 'aGk=' } }));
    assert.equal(ok.status, 201, ok.text);
    assert.deepEqual(ok.json().data, { a: 'x', n: '' });
    await expectStatus('PUT', `${CMS}/typed`, JSON.stringify({ metadata: { name: 'typed' }, data: { a: 2 } }), 400);
  });

  test('a patch that makes data non-string → 422 on the patch field', async () => {
    await raw(s.handle, 'POST', CMS, JSON.stringify({ metadata: { name: 'patched' }, data: { a: 'x' } }));
    const st = await expectStatus('PATCH', `${CMS}/patched`, JSON.stringify({ data: { a: 7 } }), 422, { 'content-type': 'application/merge-patch+json' });
    assert.equal(st.details.causes[0].field, 'patch');
    assert.match(st.details.causes[0].message, /cannot unmarshal number into Go struct field ConfigMap\.data of type string/);
    await expectStatus('PATCH', `${CMS}/patched`, JSON.stringify([{ op: 'add', path: '/data/b', value: { x: 1 } }]), 422, { 'content-type': 'application/json-patch+json' });
    assert.deepEqual((await raw(s.handle, 'GET', `${CMS}/patched`)).json().data, { a: 'x' });
  });

  test('keys must be config keys; total size at most 1 MiB (422)', async () => {
    for (const key of ['a b', 'a/b', '..', '.', '..x', 'k'.repeat(254), 'é']) {
      const st = await expectStatus('POST', CMS, JSON.stringify({ metadata: { name: 'keys' }, data: { [key]: 'v' } }), 422);
      assert.equal(st.details.causes[0].field, `data[${key}]`);
    }
    await expectStatus('POST', CMS, JSON.stringify({ metadata: { name: 'keys' }, data: { a: 'v' }, binaryData: { a: 'aGk=' } }), 422);
    const half = 'x'.repeat(600 * 1024);
    const st = await expectStatus('POST', CMS, JSON.stringify({ metadata: { name: 'big' }, data: { a: half, b: half } }), 422);
    assert.match(st.message, /Too long: must have at most 1048576 bytes/);
    assert.equal((await raw(s.handle, 'POST', CMS, JSON.stringify({ metadata: { name: 'keys' }, data: { 'ok.key_-1': 'v' } }))).status, 201);
  });

  test('Secret data must be base64 strings with config keys, at most 1 MiB decoded', async () => {
    let st = await expectStatus('POST', SECRETS, JSON.stringify({ metadata: { name: 's1' }, data: { a: 1 } }), 400);
    assert.match(st.message, /Go struct field Secret\.data of type \[\]uint8/);
    st = await expectStatus('POST', SECRETS, JSON.stringify({ metadata: { name: 's1' }, data: { a: 'a!b=' } }), 400);
    assert.match(st.message, /illegal base64 data at input byte 1/);
    await expectStatus('POST', SECRETS, JSON.stringify({ metadata: { name: 's1' }, stringData: { a: 1 } }), 400);
    await expectStatus('POST', SECRETS, JSON.stringify({ metadata: { name: 's1' }, data: { 'a b': 'aGk=' } }), 422);
    const big = Buffer.alloc(1024 * 1024 + 1, 1).toString('base64');
    await expectStatus('POST', SECRETS, JSON.stringify({ metadata: { name: 's1' }, data: { a: big } }), 422);
    const ok = await raw(s.handle, 'POST', SECRETS, JSON.stringify({ metadata: { name: 's1' }, data: { a: 'aGk=' }, stringData: { b: 'yo' } }));
    assert.equal(ok.status, 201, ok.text);
    assert.deepEqual(ok.json().data, { a: 'aGk=', b: 'eW8=' });
  });
});

describe('malformed URLs and deep bodies', () => {
  test('a bad %-escape in the path → 400 Status', async () => {
    const st = await expectStatus('GET', '/api/v1/namespaces/%zz/pods', undefined, 400);
    assert.equal(st.reason, 'BadRequest');
    await expectStatus('POST', '/api/v1/namespaces/default/configmaps/%E0%A4%A', '{}', 400);
  });

  test("a built-in kind's spec or status that is not an object → 400 like the typed decoder, never 500", async () => {
    for (const [path, kind] of [
      ['/api/v1/namespaces/default/pods', 'Pod'],
      ['/api/v1/namespaces/default/services', 'Service'],
      ['/api/v1/nodes', 'Node'],
    ] as const) {
      for (const spec of [5, 'x', [1], true]) {
        const st = await expectStatus('POST', path, JSON.stringify({ metadata: { name: 'typed-spec' }, spec }), 400);
        assert.match(
          st.message,
          new RegExp(`^${kind} in version "v1" cannot be handled as a ${kind}: json: cannot unmarshal \\w+ into Go struct field ${kind}\\.spec of type v1\\.${kind}Spec$`),
        );
      }
    }
  });

  test('10^5-deep JSON, YAML and patch bodies → 400 Status; nothing stored', async () => {
    const deep = `{"metadata":{"name":"deep"},"data":${'['.repeat(100000)}${']'.repeat(100000)}}`;
    let st = await expectStatus('POST', CMS, deep, 400);
    assert.match(st.message, /nested deeper than 1000 levels/);
    st = await expectStatus('POST', CMS, `metadata: {name: deep}\ndata: ${'['.repeat(5000)}${']'.repeat(5000)}\n`, 400, { 'content-type': 'application/yaml' });
    await raw(s.handle, 'POST', CMS, JSON.stringify({ metadata: { name: 'shallow' } }));
    await expectStatus('PATCH', `${CMS}/shallow`, `{"data":${'{"a":'.repeat(20000)}1${'}'.repeat(20000)}}`, 400, { 'content-type': 'application/merge-patch+json' });
    await expectStatus('PATCH', `${CMS}/shallow`, `[{"op":"add","path":"/x","value":${'['.repeat(5000)}${']'.repeat(5000)}}]`, 400, {
      'content-type': 'application/json-patch+json',
    });
    assert.equal((await raw(s.handle, 'GET', `${CMS}/deep`)).status, 404);
  });

  test('a patch result nested deeper than the limit → 422, never a stack overflow', async () => {
    await raw(s.handle, 'POST', CMS, JSON.stringify({ metadata: { name: 'nest' } }));
    const nested = `${'{"a":'.repeat(600)}1${'}'.repeat(600)}`;
    const ptr = `/x${'/a'.repeat(599)}`;
    const body = `[{"op":"add","path":"/x","value":${nested}},{"op":"add","path":"/y","value":${nested}},{"op":"move","from":"/y","path":"${ptr}"}]`;
    const st = await expectStatus('PATCH', `${CMS}/nest`, body, 422, { 'content-type': 'application/json-patch+json' });
    assert.match(st.message, /nested deeper than 1000 levels/);
  });
});

describe('resourceVersion from the future', () => {
  test('list and watch wait for it (3 s), then answer 504 Timeout "Too large resource version"', async () => {
    const rv = Number((await raw(s.handle, 'GET', CMS)).json().metadata.resourceVersion);
    const future = rv + 1000;
    const w = rawWatch(s.handle, `${CMS}?watch=1&resourceVersion=${future}`);
    const list = raw(s.handle, 'GET', `${CMS}?resourceVersion=${future}`);
    const lr = await list;
    assert.equal(lr.status, 504, lr.text);
    const st = lr.json();
    assert.equal(st.reason, 'Timeout');
    assert.equal(st.details.retryAfterSeconds, 1);
    assert.equal(st.details.causes[0].reason, 'ResourceVersionTooLarge');
    assert.match(st.message, new RegExp(`^Timeout: Too large resource version: ${future}, current: \\d+$`));
    await w.waitFor((e) => e.length > 0);
    await w.ended;
    assert.equal(w.events.length, 1);
    assert.equal(w.events[0]!.type, 'ERROR');
    assert.equal(w.events[0]!.object.code, 504);
    assert.equal(w.events[0]!.object.details.causes[0].reason, 'ResourceVersionTooLarge');
  });

  test('a resourceVersion that arrives within the wait is served normally', async () => {
    const rv = Number((await raw(s.handle, 'GET', CMS)).json().metadata.resourceVersion);
    const w = rawWatch(s.handle, `${CMS}?watch=1&resourceVersion=${rv + 1}`);
    const list = raw(s.handle, 'GET', `${CMS}?resourceVersion=${rv + 1}`);
    await raw(s.handle, 'POST', CMS, JSON.stringify({ metadata: { name: 'arrives-1' } }));
    await raw(s.handle, 'POST', CMS, JSON.stringify({ metadata: { name: 'arrives-2' } }));
    const lr = await list;
    assert.equal(lr.status, 200, lr.text.slice(0, 300));
    assert.ok(Number(lr.json().metadata.resourceVersion) >= rv + 1);
    // The watch is from rv+1 (exclusive): the second create is its first event.
    await w.waitFor((e) => e.some((x) => x.object?.metadata?.name === 'arrives-2'));
    assert.deepEqual(
      w.events.map((e) => [e.type, e.object.metadata.name]),
      [['ADDED', 'arrives-2']],
    );
    w.close();
  });
});

describe('selectors', () => {
  const pods = new Registry().lookup('', 'v1', 'pods')!;
  const pod = (name: string, nodeName: string): KObject => ({ metadata: { name, namespace: 'default' }, spec: { nodeName } });
  const status = (fn: () => unknown): number => {
    try {
      fn();
    } catch (err) {
      if (err instanceof ApiError) return err.httpCode;
      throw err;
    }
    return 200;
  };

  test('field selectors parse =, == and != without a backtracking regular expression', () => {
    const sel = parseFieldSelector(' spec.nodeName == n1 ,metadata.name!=b', pods)!;
    assert.equal(sel(pod('a', 'n1')), true);
    assert.equal(sel(pod('b', 'n1')), false);
    assert.equal(sel(pod('a', 'n2')), false);
    assert.equal(parseFieldSelector('metadata.name=a=b', pods)!(pod('a=b', '')), true);
    assert.equal(parseFieldSelector('metadata.name=', pods)!(pod('x', '')), false);
    // Long runs of spaces (quadratic for `[^=!]+?\s*=`) are just an invalid selector.
    for (const bad of [`a${' '.repeat(16000)}b`, '=x', 'a!b=c', 'noop'])
      assert.equal(
        status(() => parseFieldSelector(bad, pods)),
        400,
        bad.slice(0, 20),
      );
  });

  test('only the field labels a type registers are accepted (not Object.prototype members)', () => {
    for (const f of ['constructor', 'toString', '__proto__', 'hasOwnProperty'])
      assert.equal(
        status(() => parseFieldSelector(`${f}=x`, pods)),
        400,
        f,
      );
  });

  test('overlong label keys and values are refused before any regular expression runs', () => {
    assert.equal(
      status(() => parseLabelSelector(`${'a'.repeat(100000)}=b`)),
      400,
    );
    assert.equal(
      status(() => parseLabelSelector(`a=${'b'.repeat(100000)}`)),
      400,
    );
    assert.equal(parseLabelSelector('a in (x, y),!b')!({ a: 'y' }), true);
  });
});

describe('CRD deletion cleanup', () => {
  test('a custom resource delete that fails after the CRD delete is logged, not an unhandled rejection', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ledge-limits-'));
    const lines: string[] = [];
    const log = createLogger({ level: 'error', format: 'json', write: (l) => lines.push(l) });
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown): void => {
      rejections.push(reason);
    };
    process.on('unhandledRejection', onRejection);
    const store = await Store.open({ dataDir: dir, log, fsync: false });
    try {
      const registry = new Registry();
      const rest = new Rest(store, registry, log);
      await rest.bootstrap();
      const crdType = registry.lookup('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')!;
      await rest.create(crdType, '', crd('cleanups', { type: 'object' }), {});
      const crType = registry.lookup('limits.example.com', 'v1', 'cleanups')!;
      await rest.create(crType, 'default', { metadata: { name: 'c1' } }, {});
      // The disk fails for the custom resources' deletes only.
      const realDelete = store.delete.bind(store);
      store.delete = (key: string, ns: string, name: string) => {
        const r = realDelete(key, ns, name);
        if (!r || key !== crType.storageKey) return r;
        return { entry: r.entry, durable: r.durable.then(() => Promise.reject(new Error('disk full'))) };
      };
      await rest.delete(crdType, '', 'cleanups.limits.example.com', {});
      await eventually(() => lines.some((l) => l.includes('custom resource cleanup failed') && l.includes('disk full')), 'cleanup failure logged');
      // Let any unhandled rejection surface (they are reported after the microtask queue drains).
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(rejections, []);
    } finally {
      process.off('unhandledRejection', onRejection);
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
