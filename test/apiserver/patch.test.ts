// PATCH bodies: JSON patch (RFC 6902) through fast-json-patch with RFC 6901 pointer
// checks and work limits, and strategic merge patch merging lists by key in linear time.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { jsonPatch, mergePatch, strategicMergePatch, type SmpStats } from '../../apiserver/patch.js';
import { ApiError } from '../../apiserver/errors.js';
import type { Json } from '../../apiserver/types.js';
import { raw, startTestServer, type TestServer } from './helpers.js';

/** The ApiError `fn` throws (fails the test when it returns). */
function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  assert.fail('expected an ApiError');
}

describe('JSON patch (unit)', () => {
  test('test compares by value, independent of key order', () => {
    const doc = { a: { x: 1, y: [1, { p: 1, q: 2 }] } };
    assert.deepEqual(jsonPatch(structuredClone(doc), [{ op: 'test', path: '/a', value: { y: [1, { q: 2, p: 1 }], x: 1 } }]), doc);
    const e = apiError(() => jsonPatch(structuredClone(doc), [{ op: 'test', path: '/a', value: { x: 1, y: [{ q: 2, p: 1 }, 1] } }]));
    assert.equal(e.httpCode, 422);
    assert.match(e.message, /test failed/);
    assert.equal(apiError(() => jsonPatch({ a: 1 }, [{ op: 'test', path: '/missing', value: null }])).httpCode, 422);
  });

  test('array indices with leading zeros (RFC 6901) are refused; "01" is still a fine object key', () => {
    for (const op of [
      { op: 'add', path: '/a/01', value: 9 },
      { op: 'replace', path: '/a/01', value: 9 },
      { op: 'remove', path: '/a/01' },
      { op: 'test', path: '/a/01', value: 2 },
      { op: 'copy', from: '/a/01', path: '/b' },
      { op: 'move', from: '/a/01', path: '/b' },
      { op: 'add', path: '/a/+1', value: 9 },
      { op: 'replace', path: '/a/-1', value: 9 },
      { op: 'add', path: '/a/1e0', value: 9 },
    ]) {
      const e = apiError(() => jsonPatch({ a: [1, 2, 3] }, [op]));
      assert.equal(e.httpCode, 422, JSON.stringify(op));
    }
    assert.deepEqual(jsonPatch({ a: { '01': 1 } }, [{ op: 'replace', path: '/a/01', value: 2 }]), { a: { '01': 2 } });
  });

  test('"-" appends for add (and as a copy/move target) and names nothing otherwise', () => {
    assert.deepEqual(jsonPatch({ a: [1] }, [{ op: 'add', path: '/a/-', value: 2 }]), { a: [1, 2] });
    assert.deepEqual(
      jsonPatch({ a: [1, 2], b: 3 }, [
        { op: 'copy', from: '/b', path: '/a/-' },
        { op: 'move', from: '/a/0', path: '/a/-' },
      ]),
      { a: [2, 3, 1], b: 3 },
    );
    for (const op of [
      { op: 'replace', path: '/a/-', value: 2 },
      { op: 'remove', path: '/a/-' },
      { op: 'test', path: '/a/-', value: 1 },
    ]) {
      assert.equal(apiError(() => jsonPatch({ a: [1] }, [op])).httpCode, 422, JSON.stringify(op));
    }
  });

  test('the RFC 6902 operations and their failures', () => {
    const doc = (): Json => ({ a: [1, 2, 3], o: { k: 'v' }, 'x/y': 1, 'm~n': 2 });
    assert.deepEqual(
      jsonPatch(doc(), [
        { op: 'add', path: '/a/1', value: 9 },
        { op: 'remove', path: '/a/0' },
        { op: 'replace', path: '/o/k', value: 'w' },
        { op: 'move', from: '/x~1y', path: '/o/moved' },
        { op: 'copy', from: '/m~0n', path: '/c' },
        { op: 'test', path: '/a', value: [9, 2, 3] },
      ]),
      { a: [9, 2, 3], o: { k: 'w', moved: 1 }, 'm~n': 2, c: 2 },
    );
    const failing: unknown[] = [
      { op: 'add', path: '/missing/deeper', value: 1 },
      { op: 'add', path: '/a/4', value: 1 },
      { op: 'remove', path: '/nope' },
      { op: 'remove', path: '/a/3' },
      { op: 'replace', path: '/nope', value: 1 },
      { op: 'remove', path: '/constructor' },
      { op: 'replace', path: '/toString', value: 1 },
      { op: 'move', from: '/o', path: '/o/inner' },
      { op: 'copy', from: '/nope', path: '/c' },
      { op: 'add', path: '/__proto__/polluted', value: 1 },
      { op: 'add', path: '/b' },
      { op: 'frobnicate', path: '/a' },
      { op: 'add', path: 'no-slash', value: 1 },
      { op: 'add', path: '/a~2', value: 1 },
      { path: '/a' },
      'not an operation',
      { op: 'remove', path: '' },
    ];
    for (const op of failing) assert.equal(apiError(() => jsonPatch(doc(), [op])).httpCode, 422, JSON.stringify(op));
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(apiError(() => jsonPatch(doc(), { op: 'add', path: '/z', value: 1 })).httpCode, 400);
  });

  test('24 copy operations doubling a value are refused long before they could materialize it', () => {
    const ops: unknown[] = [{ op: 'add', path: '/v', value: ['x'.repeat(40)] }];
    for (let i = 0; i < 24; i++) ops.push({ op: 'copy', from: '/v', path: '/v/-' });
    assert.ok(JSON.stringify(ops).length < 1400);
    const e = apiError(() => jsonPatch({}, ops));
    assert.equal(e.httpCode, 422);
    assert.match(e.message, /accumulated size increase of copy is \d+, exceeding the limit 3145728/);
  });

  test('copies within the limit are applied', () => {
    const ops: unknown[] = [{ op: 'add', path: '/v', value: ['x'.repeat(40)] }];
    for (let i = 0; i < 10; i++) ops.push({ op: 'copy', from: '/v', path: '/v/-' });
    const out = jsonPatch({}, ops) as { v: unknown[] };
    assert.equal(JSON.stringify(out.v).length > 40 * 512, true);
  });

  test('more than 10000 operations → 413; shifting millions of array elements → 422', () => {
    const many = Array.from({ length: 10001 }, () => ({ op: 'test', path: '/a', value: 1 }));
    assert.equal(apiError(() => jsonPatch({ a: 1 }, many)).httpCode, 413);
    const doc = { a: new Array<number>(1_000_000).fill(0) };
    const front = Array.from({ length: 10000 }, () => ({ op: 'add', path: '/a/0', value: 1 }));
    const e = apiError(() => jsonPatch(doc, front));
    assert.equal(e.httpCode, 422);
    assert.match(e.message, /array elements/);
    // Appending costs nothing to shift.
    const back = Array.from({ length: 10000 }, () => ({ op: 'add', path: '/a/-', value: 1 }));
    assert.equal((jsonPatch({ a: new Array<number>(1_000_000).fill(0) }, back) as { a: number[] }).a.length, 1_010_000);
  });

  test('moves that nest the document deeper than V8 can recurse are a 422, not a crash', () => {
    const nested = (n: number): Json => {
      let v: Json = 1;
      for (let i = 0; i < n; i++) v = { a: v };
      return v;
    };
    const ops: unknown[] = [{ op: 'add', path: '/x', value: nested(900) }];
    let depth = 900;
    for (let k = 0; k < 6; k++) {
      ops.push({ op: 'add', path: '/y', value: nested(900) });
      // Onto the innermost object of /x: every move adds 900 levels.
      ops.push({ op: 'move', from: '/y', path: `/x${'/a'.repeat(depth - 1)}` });
      depth += 900;
    }
    ops.push({ op: 'copy', from: '/x', path: '/z' });
    const e = apiError(() => jsonPatch({}, ops));
    assert.equal(e.httpCode, 422);
    assert.match(e.message, /too deeply/);
  });

  test('merge patch keeps "__proto__" as a plain key instead of changing the prototype', () => {
    const out = mergePatch({ a: 1 }, JSON.parse('{"__proto__": {"spec": 1}}') as Json) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.equal(out.spec, undefined);
    assert.equal(JSON.stringify(out), '{"a":1,"__proto__":{"spec":1}}');
  });
});

/** A pod with one container carrying `n` env entries E0..E{n-1}. */
function podWithEnv(n: number): Json {
  return { metadata: { name: 'big' }, spec: { containers: [{ name: 'c', image: 'img', env: Array.from({ length: n }, (_, i) => ({ name: `E${i}`, value: `v${i}` })) }] } };
}

/** A patch touching every env entry (new value), deleting every 10th and adding `added` more. */
function envPatch(n: number, added: number): Json {
  const env: Json[] = [];
  for (let i = n - 1; i >= 0; i--) env.push(i % 10 === 0 ? { name: `E${i}`, $patch: 'delete' } : { name: `E${i}`, value: `w${i}` });
  for (let i = n; i < n + added; i++) env.push({ name: `E${i}`, value: `new${i}` });
  return { spec: { containers: [{ name: 'c', env }] } };
}

function checkEnv(result: Json, n: number, added: number): void {
  const env = (result as { spec: { containers: { env: { name: string; value: string }[] }[] } }).spec.containers[0]!.env;
  const want: { name: string; value: string }[] = [];
  for (let i = 0; i < n; i++) if (i % 10 !== 0) want.push({ name: `E${i}`, value: `w${i}` });
  for (let i = n; i < n + added; i++) want.push({ name: `E${i}`, value: `new${i}` });
  assert.deepEqual(env, want);
}

describe('strategic merge patch (unit)', () => {
  test('merging lists by key takes a number of key lookups linear in the lists, not their product', () => {
    const n = 3000;
    const stats: SmpStats = { keyLookups: 0 };
    const out = strategicMergePatch('Pod', podWithEnv(n), envPatch(n, 500), stats);
    checkEnv(out, n, 500);
    // A findIndex per patch element makes ~n²/2 = 4.5 million comparisons here.
    assert.ok(stats.keyLookups <= 4 * (n + n + 500), `key lookups: ${stats.keyLookups}`);
  });

  test('duplicate keys, deletes and re-adds keep their meaning', () => {
    const orig = {
      spec: {
        containers: [
          { name: 'a', image: '1' },
          { name: 'b', image: '1' },
          { name: 'a', image: 'dup' },
        ],
      },
    };
    const out = strategicMergePatch('Pod', orig, {
      spec: {
        containers: [
          { name: 'a', $patch: 'delete' },
          { name: 'a', image: '2' },
          { name: 'c', image: '1' },
          { name: 'c', image: '2' },
        ],
      },
    });
    assert.deepEqual(out, {
      spec: {
        containers: [
          { name: 'b', image: '1' },
          { name: 'a', image: '2' },
          { name: 'c', image: '2' },
        ],
      },
    });
    const ordered = strategicMergePatch(
      'Pod',
      { spec: { containers: [{ name: 'a' }, { name: 'b' }, { name: 'c' }] } },
      { spec: { '$setElementOrder/containers': [{ name: 'c' }, { name: 'a' }], containers: [{ name: 'a', image: 'x' }] } },
    );
    assert.deepEqual(ordered, { spec: { containers: [{ name: 'c' }, { name: 'a', image: 'x' }, { name: 'b' }] } });
  });
});

describe('PATCH limits over HTTP', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(async () => {
    await s.stop();
  });
  const CM = '/api/v1/namespaces/default/configmaps';
  const JSONP = { 'content-type': 'application/json-patch+json' };

  test('a 1.3 KB patch of 24 doubling copies → 422 with the limit, nothing stored, server fine', async () => {
    const made = await raw(s.handle, 'POST', CM, JSON.stringify({ metadata: { name: 'dbl' }, data: { a: 'x' } }));
    assert.equal(made.status, 201);
    const ops: unknown[] = [{ op: 'add', path: '/data/d', value: { v: 'x'.repeat(60) } }];
    for (let i = 0; i < 24; i++) ops.push({ op: 'copy', from: '/data/d', path: `/data/d/${i}` });
    const body = JSON.stringify(ops);
    assert.ok(body.length < 1400, String(body.length));
    const r = await raw(s.handle, 'PATCH', `${CM}/dbl`, body, JSONP);
    assert.equal(r.status, 422, r.text.slice(0, 300));
    assert.equal(r.json().reason, 'Invalid');
    assert.match(r.json().message, /exceeding the limit 3145728/);
    const after = (await raw(s.handle, 'GET', `${CM}/dbl`)).json();
    assert.deepEqual(after.data, { a: 'x' });
    assert.equal(after.metadata.resourceVersion, made.json().metadata.resourceVersion);
  });

  test('a patch cannot grow an object past the body limit (413), one patch at a time', async () => {
    const two = 'x'.repeat(2 * 1024 * 1024);
    assert.equal((await raw(s.handle, 'POST', CM, JSON.stringify({ metadata: { name: 'grow' }, note: two }))).status, 201);
    const r = await raw(s.handle, 'PATCH', `${CM}/grow`, JSON.stringify({ note2: two }), { 'content-type': 'application/merge-patch+json' });
    assert.equal(r.status, 413, r.text.slice(0, 300));
    assert.match(r.json().message, /the patched object is \d+ bytes of JSON, limit is 3145728/);
    assert.equal((await raw(s.handle, 'GET', `${CM}/grow`)).json().note2, undefined);
  });

  test('leading-zero index → 422; non-array body → 400; 10001 operations → 413', async () => {
    await raw(
      s.handle,
      'POST',
      '/api/v1/namespaces/default/pods',
      JSON.stringify({
        metadata: { name: 'p0' },
        spec: {
          containers: [
            { name: 'a', image: 'i' },
            { name: 'b', image: 'i' },
          ],
        },
      }),
    );
    const r = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/pods/p0', JSON.stringify([{ op: 'replace', path: '/spec/containers/01/image', value: 'j' }]), JSONP);
    assert.equal(r.status, 422, r.text);
    const ok = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/pods/p0', JSON.stringify([{ op: 'replace', path: '/spec/containers/1/image', value: 'j' }]), JSONP);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json().spec.containers[1].image, 'j');
    assert.equal((await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/pods/p0', '{"op":"add"}', JSONP)).status, 400);
    const many = JSON.stringify(Array.from({ length: 10001 }, () => ({ op: 'test', path: '/kind', value: 'Pod' })));
    const big = await raw(s.handle, 'PATCH', '/api/v1/namespaces/default/pods/p0', many, JSONP);
    assert.equal(big.status, 413);
    assert.equal(big.json().reason, 'RequestEntityTooLarge');
  });

  test('a strategic merge patch of 20000 list entries is applied correctly while other requests are served', async () => {
    // ownerReferences merge by uid; pod env could not be patched (pod spec is immutable).
    const n = 20000;
    const ref = (i: number, v: string) => ({ apiVersion: 'v1', kind: 'Thing', name: v, uid: `u${i}` });
    const created = await raw(s.handle, 'POST', CM, JSON.stringify({ metadata: { name: 'owned', ownerReferences: Array.from({ length: n }, (_, i) => ref(i, `a${i}`)) } }));
    assert.equal(created.status, 201, created.text.slice(0, 300));
    const refs: Json[] = [];
    for (let i = n - 1; i >= 0; i--) refs.push(i % 10 === 0 ? { uid: `u${i}`, $patch: 'delete' } : { uid: `u${i}`, name: `b${i}` });
    for (let i = n; i < n + 1000; i++) refs.push(ref(i, `c${i}`));
    const body = JSON.stringify({ metadata: { ownerReferences: refs } });
    const big = raw(s.handle, 'PATCH', `${CM}/owned`, body, { 'content-type': 'application/strategic-merge-patch+json' });
    const cheap = await raw(s.handle, 'GET', '/version');
    assert.equal(cheap.status, 200);
    const r = await big;
    assert.equal(r.status, 200, r.text.slice(0, 300));
    const want: Json[] = [];
    for (let i = 0; i < n; i++) if (i % 10 !== 0) want.push(ref(i, `b${i}`));
    for (let i = n; i < n + 1000; i++) want.push(ref(i, `c${i}`));
    assert.deepEqual(r.json().metadata.ownerReferences, want);
  });
});
