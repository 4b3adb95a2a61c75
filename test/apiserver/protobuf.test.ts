// Protobuf request bodies (application/vnd.kubernetes.protobuf): kubectl v1.35's typed
// generators end to end, and the decoder through raw requests with hand-encoded bodies.
// The encoder below is written from the field numbers in k8s.io/api core/v1 and
// apimachinery meta/v1 generated.proto, independently of cloud/apiserver/protobuf.ts.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { decodeProtobufObject, ProtobufError } from '../../cloud/apiserver/protobuf.js';
import { kubectl, raw, rawWatch, requireKubectl, startTestServer, tempDir, type TestServer } from './helpers.js';

let s: TestServer;
let bin: string;
let cache: string;
before(async () => {
  bin = requireKubectl();
  s = await startTestServer();
  cache = tempDir('ledge-kubectl-cache-');
});
after(async () => {
  await s?.stop();
});

const PB = { 'content-type': 'application/vnd.kubernetes.protobuf' };
const CMS = '/api/v1/namespaces/default/configmaps';
const PODS = '/api/v1/namespaces/default/pods';

// ------------------------------------------------------------------ a tiny encoder

function varint(v: number | bigint): Buffer {
  let n = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  do {
    let b = Number(n & 0x7fn);
    n >>= 7n;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return Buffer.from(out);
}
const key = (f: number, wt: number) => varint((f << 3) | wt);
const len = (f: number, payload: Buffer | string) => {
  const b = Buffer.from(payload);
  return Buffer.concat([key(f, 2), varint(b.length), b]);
};
const str = len;
const num = (f: number, v: number | bigint | boolean) => Buffer.concat([key(f, 0), varint(typeof v === 'boolean' ? (v ? 1 : 0) : v)]);
const sub = (f: number, ...parts: Buffer[]) => len(f, Buffer.concat(parts));
const entry = (f: number, k: string, v: Buffer | string) => sub(f, str(1, k), len(2, v));
const quantity = (f: number, k: string, q: string) => sub(f, str(1, k), sub(2, str(1, q)));
const MAGIC = Buffer.from('k8s\0', 'latin1');
/** runtime.Unknown {1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType}. */
const envelope = (apiVersion: string, kind: string, rawObj: Buffer, ...extra: Buffer[]) =>
  Buffer.concat([MAGIC, sub(1, str(1, apiVersion), str(2, kind)), len(2, rawObj), str(3, ''), str(4, ''), ...extra]);
/** ObjectMeta as gogo-protobuf writes it: every non-pointer field, zero or not. */
const meta = (name: string, ...more: Buffer[]) =>
  sub(1, str(1, name), str(2, ''), str(3, ''), str(4, ''), str(5, ''), str(6, ''), num(7, 0), sub(8), ...more);

/** The exact body kubectl v1.35 sends for `kubectl create configmap demo --from-literal=a=b` (from -v=8). */
const KUBECTL_CM = Buffer.from(
  '6b3873000a0f0a0276311209436f6e6669674d6170121e0a140a0464656d6f12001a0022002a00320038004200120' + '60a0161120162' + '1a002200',
  'hex',
);

async function postPb(path: string, body: Buffer) {
  return raw(s.handle, 'POST', path, body, PB);
}
async function cmNames(): Promise<string[]> {
  return (await raw(s.handle, 'GET', CMS)).json().items.map((i: { metadata: { name: string } }) => i.metadata.name);
}

// ------------------------------------------------------------------ kubectl

const k = (args: string[]) => kubectl(bin, s.handle.kubeconfigPath, args, { cacheDir: cache });
function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} failed: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

describe('kubectl v1.35 typed generators (protobuf bodies)', () => {
  test('create configmap: sent as protobuf, stored with its data', async () => {
    const r = await k(['create', 'configmap', 'kc-cm', '--from-literal=a=b', '--from-literal=url=http://x/?q=1', '-v=8']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^configmap\/kc-cm created$/m);
    assert.match(r.stderr, /Content-Type: application\/vnd\.kubernetes\.protobuf/, 'kubectl did not send protobuf; the test would prove nothing');
    const cm = await s.core.readNamespacedConfigMap({ name: 'kc-cm', namespace: 'default' });
    assert.deepEqual(cm.data, { a: 'b', url: 'http://x/?q=1' });
    assert.equal(cm.metadata?.namespace, 'default');
    assert.ok(cm.metadata?.uid && cm.metadata.resourceVersion && cm.metadata.creationTimestamp);
    assert.equal(cm.metadata?.generateName, undefined);
    const got = JSON.parse(ok(await k(['get', 'configmap', 'kc-cm', '-o', 'json']), 'get'));
    assert.deepEqual(got.data, { a: 'b', url: 'http://x/?q=1' });
  });

  test('create secret generic / docker-registry / tls', async () => {
    assert.match(ok(await k(['create', 'secret', 'generic', 'kc-sec', '--from-literal=user=admin', '--from-literal=pass=s3cr=t']), 'secret generic'), /^secret\/kc-sec created$/m);
    const sec = await s.core.readNamespacedSecret({ name: 'kc-sec', namespace: 'default' });
    assert.equal(sec.type, 'Opaque');
    assert.deepEqual(sec.data, { user: Buffer.from('admin').toString('base64'), pass: Buffer.from('s3cr=t').toString('base64') });

    ok(await k(['create', 'secret', 'docker-registry', 'kc-reg', '--docker-server=reg.example.com', '--docker-username=u', '--docker-password=p']), 'docker-registry');
    const reg = await s.core.readNamespacedSecret({ name: 'kc-reg', namespace: 'default' });
    assert.equal(reg.type, 'kubernetes.io/dockerconfigjson');
    const cfg = JSON.parse(Buffer.from(reg.data!['.dockerconfigjson']!, 'base64').toString());
    assert.equal(cfg.auths['reg.example.com'].username, 'u');

    const pki = join(s.dir, 'pki');
    ok(await k(['create', 'secret', 'tls', 'kc-tls', `--cert=${join(pki, 'server.crt')}`, `--key=${join(pki, 'server.key')}`]), 'secret tls');
    const tls = await s.core.readNamespacedSecret({ name: 'kc-tls', namespace: 'default' });
    assert.equal(tls.type, 'kubernetes.io/tls');
    assert.match(Buffer.from(tls.data!['tls.crt']!, 'base64').toString(), /BEGIN CERTIFICATE/);
    assert.match(Buffer.from(tls.data!['tls.key']!, 'base64').toString(), /PRIVATE KEY/);
  });

  test('create namespace, then use it', async () => {
    assert.match(ok(await k(['create', 'namespace', 'kc-ns']), 'namespace'), /^namespace\/kc-ns created$/m);
    const ns = await s.core.readNamespace({ name: 'kc-ns' });
    assert.equal(ns.status?.phase, 'Active');
    assert.deepEqual(ns.spec?.finalizers, ['kubernetes']);
    ok(await k(['create', 'configmap', 'inside', '-n', 'kc-ns', '--from-literal=x=y']), 'configmap in new namespace');
    assert.deepEqual((await s.core.readNamespacedConfigMap({ name: 'inside', namespace: 'kc-ns' })).data, { x: 'y' });
  });

  test('create serviceaccount', async () => {
    assert.match(ok(await k(['create', 'serviceaccount', 'kc-sa', '-n', 'kc-ns']), 'serviceaccount'), /^serviceaccount\/kc-sa created$/m);
    const sa = await s.core.readNamespacedServiceAccount({ name: 'kc-sa', namespace: 'kc-ns' });
    assert.equal(sa.metadata?.name, 'kc-sa');
    assert.equal(sa.metadata?.namespace, 'kc-ns');
  });

  test('run a pod with labels, env, port, restart policy and a command; get it back', async () => {
    const out = ok(await k(['run', 'kc-pod', '--image=busybox:1.36', '--labels=app=demo,tier=edge', '--env=MODE=fast', '--env=N=3', '--port=8080', '--restart=Never', '--command', '--', 'sh', '-c', 'sleep 5']), 'run');
    assert.match(out, /^pod\/kc-pod created$/m);
    const pod = await s.core.readNamespacedPod({ name: 'kc-pod', namespace: 'default' });
    assert.deepEqual(pod.metadata?.labels, { app: 'demo', tier: 'edge' });
    assert.equal(pod.spec?.restartPolicy, 'Never');
    const c = pod.spec!.containers[0]!;
    assert.equal(c.name, 'kc-pod');
    assert.equal(c.image, 'busybox:1.36');
    assert.deepEqual(c.command, ['sh', '-c', 'sleep 5']);
    assert.deepEqual(c.env?.map((e) => [e.name, e.value]), [['MODE', 'fast'], ['N', '3']]);
    assert.deepEqual(c.ports?.map((p) => [p.containerPort, p.protocol]), [[8080, 'TCP']]);
    assert.equal(pod.status?.phase, 'Pending');
    const got = JSON.parse(ok(await k(['get', 'pod', 'kc-pod', '-o', 'json']), 'get pod'));
    assert.deepEqual(got.spec.containers[0].command, ['sh', '-c', 'sleep 5']);
    ok(await k(['delete', 'pod', 'kc-pod', '--wait=false']), 'delete pod');
  });

  test('creating an existing object reports AlreadyExists like a real server', async () => {
    const r = await k(['create', 'configmap', 'kc-cm', '--from-literal=a=b']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /AlreadyExists|already exists/);
  });
});

// ------------------------------------------------------------------ decoder via raw requests

describe('protobuf decoding', () => {
  test("kubectl's exact ConfigMap bytes → 201 with the JSON shape", async () => {
    const r = await postPb(CMS, KUBECTL_CM);
    assert.equal(r.status, 201, r.text);
    const o = r.json();
    assert.equal(o.kind, 'ConfigMap');
    assert.equal(o.apiVersion, 'v1');
    assert.deepEqual(o.data, { a: 'b' });
    // gogo's zero-valued non-pointer fields (generateName "", selfLink "", generation 0, empty Time) are not carried over.
    assert.equal(o.metadata.generateName, undefined);
    assert.equal(o.metadata.selfLink, undefined);
    assert.equal(o.metadata.generation, 1);
    await raw(s.handle, 'DELETE', `${CMS}/demo`);
  });

  test('a protobuf create reaches watchers like a JSON one', async () => {
    const w = rawWatch(s.handle, `${CMS}?watch=1&resourceVersion=${(await raw(s.handle, 'GET', CMS)).json().metadata.resourceVersion}`);
    try {
      const body = envelope('v1', 'ConfigMap', Buffer.concat([meta('watched', entry(11, 'app', 'w')), entry(2, 'k', 'v')]));
      assert.equal((await postPb(CMS, body)).status, 201);
      await w.waitFor((ev) => ev.some((e) => e.type === 'ADDED' && e.object.metadata.name === 'watched'));
      const ev = w.events.find((e) => e.object.metadata.name === 'watched')!;
      assert.deepEqual(ev.object.data, { k: 'v' });
      assert.deepEqual(ev.object.metadata.labels, { app: 'w' });
    } finally {
      w.close();
    }
  });

  test('secret: binary data (bytes map) → base64, stringData, type, immutable', async () => {
    const bin = Buffer.from([0, 1, 2, 0xfe, 0xff]);
    const body = envelope('v1', 'Secret', Buffer.concat([meta('pb-sec'), num(5, true), entry(2, 'blob', bin), entry(4, 'plain', 'text'), str(3, 'example.com/custom')]));
    const r = await postPb('/api/v1/namespaces/default/secrets', body);
    assert.equal(r.status, 201, r.text);
    const got = await s.core.readNamespacedSecret({ name: 'pb-sec', namespace: 'default' });
    assert.equal(got.data!.blob, bin.toString('base64'));
    assert.equal(got.type, 'example.com/custom');
    assert.equal(got.immutable, true);
    // stringData is write-only: merged into data, as for a JSON body.
    assert.equal(Buffer.from(got.data!.plain!, 'base64').toString(), 'text');
    assert.equal(got.stringData, undefined);
  });

  test('pod: the common PodSpec and Container fields', async () => {
    const container = Buffer.concat([
      str(1, 'main'),
      str(2, 'nginx:1.25'),
      str(3, '/bin/sh'),
      str(3, '-c'),
      str(4, 'echo'),
      str(4, ''),
      str(5, '/work'),
      sub(6, str(1, 'http'), num(2, 0), num(3, 80), str(4, 'TCP'), str(5, '')),
      sub(6, str(1, ''), num(2, 0), num(3, 53), str(4, 'UDP'), str(5, '')),
      sub(7, str(1, 'A'), str(2, '1')),
      sub(7, str(1, 'EMPTY'), str(2, '')),
      sub(7, str(1, 'FROM'), str(2, ''), sub(3, sub(4, sub(1, str(1, 'creds')), str(2, 'token')))),
      sub(8, quantity(1, 'cpu', '500m'), quantity(1, 'memory', '128Mi'), quantity(2, 'cpu', '250m')),
      sub(9, str(1, 'cfg'), num(2, true), str(3, '/etc/cfg'), str(4, '')),
      str(13, ''),
      str(14, 'IfNotPresent'),
      num(16, true),
      num(17, true),
      num(18, true),
      str(20, ''),
    ]);
    const spec = Buffer.concat([
      sub(1, str(1, 'cfg'), sub(2, sub(19, sub(1, str(1, 'settings')), num(3, 420)))),
      sub(1, str(1, 'scratch'), sub(2, sub(2, str(1, '')))),
      sub(2, container),
      str(3, 'OnFailure'),
      num(4, 0), // terminationGracePeriodSeconds: a pointer, so an explicit 0 is kept
      str(6, 'Default'),
      entry(7, 'disk', 'ssd'),
      str(8, 'builder'),
      str(9, ''),
      str(10, 'edge-1'),
      num(11, false),
      sub(22, str(1, 'k'), str(2, 'Exists'), str(3, ''), str(4, 'NoExecute'), num(5, 60)),
    ]);
    const body = envelope('v1', 'Pod', Buffer.concat([meta('pb-pod', entry(11, 'app', 'web'), entry(12, 'note', 'n')), sub(2, spec), sub(3, str(1, ''))]));
    const r = await postPb(PODS, body);
    assert.equal(r.status, 201, r.text);
    const p = (await raw(s.handle, 'GET', `${PODS}/pb-pod`)).json();
    assert.deepEqual(p.metadata.labels, { app: 'web' });
    assert.deepEqual(p.metadata.annotations, { note: 'n' });
    assert.equal(p.spec.restartPolicy, 'OnFailure');
    assert.equal(p.spec.terminationGracePeriodSeconds, 0);
    assert.equal(p.spec.dnsPolicy, 'Default');
    assert.deepEqual(p.spec.nodeSelector, { disk: 'ssd' });
    assert.equal(p.spec.serviceAccountName, 'builder');
    assert.equal(p.spec.serviceAccount, undefined);
    assert.equal(p.spec.nodeName, 'edge-1');
    assert.equal(p.spec.hostNetwork, undefined);
    assert.deepEqual(p.spec.tolerations, [{ key: 'k', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 60 }]);
    assert.deepEqual(p.spec.volumes, [{ name: 'cfg', configMap: { name: 'settings', defaultMode: 420 } }, { name: 'scratch', emptyDir: {} }]);
    const c = p.spec.containers[0];
    assert.equal(c.name, 'main');
    assert.equal(c.image, 'nginx:1.25');
    assert.deepEqual(c.command, ['/bin/sh', '-c']);
    assert.deepEqual(c.args, ['echo', '']);
    assert.equal(c.workingDir, '/work');
    assert.deepEqual(c.ports, [{ name: 'http', containerPort: 80, protocol: 'TCP' }, { containerPort: 53, protocol: 'UDP' }]);
    assert.deepEqual(c.env, [{ name: 'A', value: '1' }, { name: 'EMPTY' }, { name: 'FROM', valueFrom: { secretKeyRef: { name: 'creds', key: 'token' } } }]);
    assert.deepEqual(c.resources, { limits: { cpu: '500m', memory: '128Mi' }, requests: { cpu: '250m' } });
    assert.deepEqual(c.volumeMounts, [{ name: 'cfg', readOnly: true, mountPath: '/etc/cfg' }]);
    assert.equal(c.imagePullPolicy, 'IfNotPresent');
    assert.equal(c.stdin, true);
    assert.equal(c.stdinOnce, true);
    assert.equal(c.tty, true);
    assert.equal(c.terminationMessagePath, '/dev/termination-log'); // defaulted, as for JSON
    assert.equal(p.status.phase, 'Pending');
    await raw(s.handle, 'DELETE', `${PODS}/pb-pod?gracePeriodSeconds=0`);
  });

  test('namespace and serviceaccount', async () => {
    const ns = envelope('v1', 'Namespace', Buffer.concat([meta('pb-ns', entry(11, 'team', 'a')), sub(2), sub(3, str(1, ''))]));
    assert.equal((await postPb('/api/v1/namespaces', ns)).status, 201);
    const got = await s.core.readNamespace({ name: 'pb-ns' });
    assert.deepEqual(got.metadata?.labels, { team: 'a' });
    assert.equal(got.status?.phase, 'Active');
    const sa = envelope('v1', 'ServiceAccount', Buffer.concat([meta('pb-sa'), sub(3, str(1, 'pull')), num(4, false)]));
    assert.equal((await postPb('/api/v1/namespaces/pb-ns/serviceaccounts', sa)).status, 201);
    const gsa = await s.core.readNamespacedServiceAccount({ name: 'pb-sa', namespace: 'pb-ns' });
    assert.deepEqual(gsa.imagePullSecrets?.map((x) => x.name), ['pull']);
    assert.equal(gsa.automountServiceAccountToken, false); // a pointer: explicit false is kept
  });

  test('PUT with a protobuf body updates through the same path (stale resourceVersion → 409)', async () => {
    const created = (await postPb(CMS, envelope('v1', 'ConfigMap', Buffer.concat([meta('pb-put'), entry(2, 'v', '1')])))).json();
    const rv = created.metadata.resourceVersion as string;
    const upd = (data: string, rvs: string) => envelope('v1', 'ConfigMap', Buffer.concat([sub(1, str(1, 'pb-put'), str(6, rvs)), entry(2, 'v', data)]));
    const r = await raw(s.handle, 'PUT', `${CMS}/pb-put`, upd('2', rv), PB);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json().data, { v: '2' });
    const stale = await raw(s.handle, 'PUT', `${CMS}/pb-put`, upd('3', rv), PB);
    assert.equal(stale.status, 409);
    assert.equal(stale.json().reason, 'Conflict');
  });

  test('unknown fields of every wire type are skipped', async () => {
    const unknown = Buffer.concat([
      num(99, 12345678901n),
      Buffer.concat([key(98, 1), Buffer.alloc(8, 7)]),
      len(97, 'whatever'),
      Buffer.concat([key(96, 5), Buffer.alloc(4, 9)]),
      Buffer.concat([key(95, 3), num(1, 1), len(2, 'in a group'), key(95, 4)]),
    ]);
    const cm = Buffer.concat([sub(1, str(1, 'pb-unknown'), unknown, sub(17, str(1, 'managed'))), unknown, sub(2, str(1, 'k'), unknown, str(2, 'v')), unknown]);
    const r = await postPb(CMS, envelope('v1', 'ConfigMap', cm, unknown));
    assert.equal(r.status, 201, r.text);
    const got = (await raw(s.handle, 'GET', `${CMS}/pb-unknown`)).json();
    assert.deepEqual(got.data, { k: 'v' });
    assert.deepEqual(Object.keys(got).sort(), ['apiVersion', 'data', 'kind', 'metadata']);
  });

  test('malformed and truncated bodies → 400 BadRequest, nothing stored', async () => {
    const before = await cmNames();
    const good = envelope('v1', 'ConfigMap', Buffer.concat([meta('pb-bad'), entry(2, 'a', 'b')]));
    const rawStart = MAGIC.length + 2 + 15 + 2; // magic, typeMeta (tag, len, 15 bytes), raw's tag and length
    const rawEnd = rawStart + good[rawStart - 1]!;
    const bodies: [string, Buffer][] = [
      ['no magic', Buffer.from('{"kind":"ConfigMap"}')],
      ['magic only (no kind)', MAGIC],
      ['length past the end', Buffer.concat([MAGIC, key(2, 2), varint(1000), Buffer.from('abc')])],
      ['huge length', Buffer.concat([MAGIC, key(2, 2), varint(0xffffffffffffn)])],
      ['overlong varint', Buffer.concat([MAGIC, Buffer.alloc(11, 0xff)])],
      ['wire type 7', Buffer.concat([MAGIC, key(1, 7)])],
      ['field number 0', Buffer.concat([MAGIC, Buffer.from([0x02, 0x00])])],
      ['unterminated group', Buffer.concat([MAGIC, key(9, 3), num(1, 1)])],
      ['name with a varint wire type', envelope('v1', 'ConfigMap', sub(1, num(1, 5)))],
      ['truncated map entry', envelope('v1', 'ConfigMap', Buffer.concat([meta('pb-bad'), key(2, 2), varint(10), str(1, 'a')]))],
      ['unsupported contentEncoding', Buffer.concat([MAGIC, sub(1, str(1, 'v1'), str(2, 'ConfigMap')), len(2, meta('pb-bad')), str(3, 'gzip')])],
    ];
    for (let cut = rawStart; cut < rawEnd; cut++) bodies.push([`cut at byte ${cut} of ${good.length}`, good.subarray(0, cut)]);
    for (const [what, body] of bodies) {
      const r = await postPb(CMS, body);
      assert.equal(r.status, 400, `${what}: ${r.text}`);
      const st = r.json();
      assert.equal(st.kind, 'Status', what);
      assert.equal(st.reason, 'BadRequest', what);
      assert.equal(st.code, 400, what);
    }
    assert.deepEqual(await cmNames(), before);
    // Still serving, and the well-formed body goes through.
    assert.equal((await postPb(CMS, good)).status, 201);
  });

  test('random corruption never crashes the server (never a 500)', async () => {
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const base = envelope('v1', 'Pod', Buffer.concat([meta('fuzz'), sub(2, sub(2, str(1, 'c'), str(2, 'img'), sub(8, quantity(1, 'cpu', '1'))))]));
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(base);
      const flips = 1 + Math.floor(rnd() * 4);
      for (let j = 0; j < flips; j++) b[4 + Math.floor(rnd() * (b.length - 4))] = Math.floor(rnd() * 256);
      const r = await raw(s.handle, 'POST', `/api/v1/namespaces/fuzz-${i}/pods`, b, PB); // namespace absent: nothing can be stored
      assert.ok(r.status >= 400 && r.status < 500, `mutation ${i}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.equal(r.json().kind, 'Status');
    }
    assert.equal((await raw(s.handle, 'GET', '/healthz')).status, 200);
  });

  test('a kind that does not match the URL → the same error as the JSON body', async () => {
    const cases: [string, Buffer, object][] = [
      [PODS, envelope('v1', 'ConfigMap', meta('mismatch')), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'mismatch' } }],
      [CMS, envelope('apps/v1', 'Deployment', meta('mismatch')), { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'mismatch' } }],
      [CMS, envelope('v2', 'ConfigMap', meta('mismatch')), { apiVersion: 'v2', kind: 'ConfigMap', metadata: { name: 'mismatch' } }],
    ];
    for (const [path, pb, json] of cases) {
      const a = await postPb(path, pb);
      const b = await raw(s.handle, 'POST', path, JSON.stringify(json));
      assert.equal(a.status, 400, a.text);
      assert.deepEqual(a.json(), b.json());
    }
    assert.ok(!(await cmNames()).includes('mismatch'));
  });

  test('a kind we cannot decode, sent to its own URL → 415', async () => {
    const r = await postPb('/api/v1/namespaces/default/services', envelope('v1', 'Service', meta('svc')));
    assert.equal(r.status, 415, r.text);
    assert.equal(r.json().reason, 'UnsupportedMediaType');
    assert.match(r.json().message, /kind Service/);
  });

  test('DeleteOptions as protobuf: preconditions, negative grace period, dryRun', async () => {
    const cm = (await postPb(CMS, envelope('v1', 'ConfigMap', meta('pb-del')))).json();
    const del = (...fields: Buffer[]) => raw(s.handle, 'DELETE', `${CMS}/pb-del`, envelope('v1', 'DeleteOptions', Buffer.concat(fields)), PB);
    const wrongUid = await del(sub(2, str(1, 'not-the-uid')));
    assert.equal(wrongUid.status, 409, wrongUid.text);
    assert.match(wrongUid.json().message, /UID in precondition: not-the-uid/);
    const wrongRv = await del(sub(2, str(2, '1')));
    assert.equal(wrongRv.status, 409, wrongRv.text);
    const negative = await del(num(1, -1));
    assert.equal(negative.status, 422, negative.text);
    const dry = await del(str(5, 'All'));
    assert.equal(dry.status, 200, dry.text);
    assert.ok((await cmNames()).includes('pb-del'));
    const good = await del(num(1, 0), sub(2, str(1, cm.metadata.uid)), str(4, 'Background'));
    assert.equal(good.status, 200, good.text);
    assert.ok(!(await cmNames()).includes('pb-del'));
  });
});

describe('decodeProtobufObject (unit)', () => {
  test('metav1.Time → RFC 3339; an empty Time is omitted', () => {
    const d = decodeProtobufObject(envelope('v1', 'ConfigMap', sub(1, str(1, 't'), sub(8, num(1, 1700000000), num(2, 500_000_000)), sub(9))));
    assert.deepEqual(d.object, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 't', creationTimestamp: '2023-11-14T22:13:20Z' } });
  });

  test('a message field seen twice is merged; a scalar seen twice keeps the last value', () => {
    const d = decodeProtobufObject(envelope('v1', 'ConfigMap', Buffer.concat([sub(1, str(1, 'first'), entry(11, 'a', '1')), sub(1, str(1, 'second'), entry(11, 'b', '2'))])));
    assert.deepEqual(d.object!.metadata, { name: 'second', labels: { a: '1', b: '2' } });
  });

  test('negative int64 (10-byte varint) decodes; out-of-range int64 is an error', () => {
    const neg = decodeProtobufObject(envelope('v1', 'DeleteOptions', num(1, -5)));
    assert.equal(neg.object!.gracePeriodSeconds, -5);
    assert.throws(() => decodeProtobufObject(envelope('v1', 'DeleteOptions', num(1, 2n ** 60n))), ProtobufError);
  });

  test('an unknown kind yields only its type', () => {
    assert.deepEqual(decodeProtobufObject(envelope('apps/v1', 'Deployment', meta('d'))), { apiVersion: 'apps/v1', kind: 'Deployment' });
  });
});
