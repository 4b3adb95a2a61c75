// Protobuf request bodies (application/vnd.kubernetes.protobuf): kubectl v1.35's typed
// generators end to end; bodies kubectl sent, decoded against kubectl's own JSON of the same
// object (fixtures/protobuf); the decoder through raw requests with hand-encoded bodies (the
// tiny encoder below is written from the field numbers in generated.proto, independently of
// apiserver/protobuf/); and whole objects encoded with protobufjs from the schema
// (a JSON → protobuf encoder of the test's own, the inverse of the decoder's mapping).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import protobuf from 'protobufjs/light.js';
import { decodeProtobufObject, ProtobufError, ProtobufUnsupportedError, PROTOBUF_KINDS } from '../../apiserver/protobuf/index.js';
import schemaJson from '../../apiserver/protobuf/k8s-schema.json' with { type: 'json' };
import { builtinTypes } from '../../apiserver/registry.js';
import { KUBECTL_SKIP, eventually, kubectl, raw, rawWatch, repoRoot, requireKubectl, startTestServer, tempDir, type TestServer } from './helpers.js';

let s: TestServer;
let bin: string;
let cache: string;
before(async () => {
  if (!KUBECTL_SKIP) bin = requireKubectl();
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
const meta = (name: string, ...more: Buffer[]) => sub(1, str(1, name), str(2, ''), str(3, ''), str(4, ''), str(5, ''), str(6, ''), num(7, 0), sub(8), ...more);

/** The exact body kubectl v1.35 sends for `kubectl create configmap demo --from-literal=a=b` (from -v=8). */
const KUBECTL_CM = Buffer.from('6b3873000a0f0a0276311209436f6e6669674d6170121e0a140a0464656d6f12001a0022002a00320038004200120' + '60a0161120162' + '1a002200', 'hex');

async function postPb(path: string, body: Buffer) {
  return raw(s.handle, 'POST', path, body, PB);
}
async function eventuallyStatus(path: string, status: number): Promise<void> {
  await eventually(async () => (await raw(s.handle, 'GET', path)).status === status, `GET ${path} → ${status}`);
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

describe('kubectl v1.35 typed generators (protobuf bodies)', { skip: KUBECTL_SKIP }, () => {
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
    const out = ok(
      await k([
        'run',
        'kc-pod',
        '--image=busybox:1.36',
        '--labels=app=demo,tier=edge',
        '--env=MODE=fast',
        '--env=N=3',
        '--port=8080',
        '--restart=Never',
        '--command',
        '--',
        'sh',
        '-c',
        'sleep 5',
      ]),
      'run',
    );
    assert.match(out, /^pod\/kc-pod created$/m);
    const pod = await s.core.readNamespacedPod({ name: 'kc-pod', namespace: 'default' });
    assert.deepEqual(pod.metadata?.labels, { app: 'demo', tier: 'edge' });
    assert.equal(pod.spec?.restartPolicy, 'Never');
    const c = pod.spec!.containers[0]!;
    assert.equal(c.name, 'kc-pod');
    assert.equal(c.image, 'busybox:1.36');
    assert.deepEqual(c.command, ['sh', '-c', 'sleep 5']);
    assert.deepEqual(
      c.env?.map((e) => [e.name, e.value]),
      [
        ['MODE', 'fast'],
        ['N', '3'],
      ],
    );
    assert.deepEqual(
      c.ports?.map((p) => [p.containerPort, p.protocol]),
      [[8080, 'TCP']],
    );
    assert.equal(pod.status?.phase, 'Pending');
    const got = JSON.parse(ok(await k(['get', 'pod', 'kc-pod', '-o', 'json']), 'get pod'));
    assert.deepEqual(got.spec.containers[0].command, ['sh', '-c', 'sleep 5']);
    ok(await k(['delete', 'pod', 'kc-pod', '--wait=false']), 'delete pod');
  });

  test('create service nodeport: IntOrString target ports (number and name), selector, type', async () => {
    const r = await k(['create', 'service', 'nodeport', 'kc-svc', '--tcp=80:8080', '--tcp=443:web', '-v=8']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Content-Type: application\/vnd\.kubernetes\.protobuf/, 'kubectl did not send protobuf');
    const svc = (await raw(s.handle, 'GET', '/api/v1/namespaces/default/services/kc-svc')).json();
    assert.equal(svc.spec.type, 'NodePort');
    assert.deepEqual(svc.spec.selector, { app: 'kc-svc' });
    assert.deepEqual(
      svc.spec.ports.map((p: Record<string, unknown>) => [p.name, p.port, p.targetPort, p.protocol]),
      [
        ['80-8080', 80, 8080, 'TCP'],
        ['443-web', 443, 'web', 'TCP'],
      ],
    );
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
    // …followed by the two the DefaultTolerationSeconds admission adds.
    assert.deepEqual(p.spec.tolerations, [
      { key: 'k', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 60 },
      { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
    ]);
    assert.deepEqual(p.spec.volumes, [
      { name: 'cfg', configMap: { name: 'settings', defaultMode: 420 } },
      { name: 'scratch', emptyDir: {} },
    ]);
    const c = p.spec.containers[0];
    assert.equal(c.name, 'main');
    assert.equal(c.image, 'nginx:1.25');
    assert.deepEqual(c.command, ['/bin/sh', '-c']);
    assert.deepEqual(c.args, ['echo', '']);
    assert.equal(c.workingDir, '/work');
    assert.deepEqual(c.ports, [
      { name: 'http', containerPort: 80, protocol: 'TCP' },
      { containerPort: 53, protocol: 'UDP' },
    ]);
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
    assert.deepEqual(
      gsa.imagePullSecrets?.map((x) => x.name),
      ['pull'],
    );
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

  test('a field number outside the schema, at any depth and of any wire type → 415 naming it; nothing stored', async () => {
    const before = await cmNames();
    const unknowns: [string, Buffer][] = [
      ['varint', num(99, 12345678901n)],
      ['fixed64', Buffer.concat([key(98, 1), Buffer.alloc(8, 7)])],
      ['length-delimited', len(97, 'whatever')],
      ['fixed32', Buffer.concat([key(96, 5), Buffer.alloc(4, 9)])],
      ['group', Buffer.concat([key(95, 3), num(1, 1), len(2, 'in a group'), key(95, 4)])],
    ];
    for (const [wire, u] of unknowns) {
      const n = [99, 98, 97, 96, 95][unknowns.findIndex(([w]) => w === wire)]!;
      const places: [string, Buffer, RegExp][] = [
        ['envelope', envelope('v1', 'ConfigMap', meta('pb-unknown'), u), /runtime\.Unknown envelope \(message k8s\.io\.apimachinery\.pkg\.runtime\.Unknown\)/],
        ['ConfigMap', envelope('v1', 'ConfigMap', Buffer.concat([meta('pb-unknown'), u])), /the object \(message k8s\.io\.api\.core\.v1\.ConfigMap\)/],
        ['ObjectMeta', envelope('v1', 'ConfigMap', meta('pb-unknown', u)), /metadata \(message k8s\.io\.apimachinery\.pkg\.apis\.meta\.v1\.ObjectMeta\)/],
        [
          'a map entry',
          envelope('v1', 'ConfigMap', Buffer.concat([meta('pb-unknown'), sub(2, str(1, 'k'), u, str(2, 'v'))])),
          /data\[0\] \(message k8s\.io\.api\.core\.v1\.ConfigMap\.DataEntry\)/,
        ],
        ['managedFields', envelope('v1', 'ConfigMap', meta('pb-unknown', sub(17, str(1, 'mgr'), u))), /metadata\.managedFields\[0\]/],
      ];
      for (const [where, body, re] of places) {
        const r = await postPb(CMS, body);
        assert.equal(r.status, 415, `${wire} field in ${where}: ${r.text}`);
        const st = r.json();
        assert.equal(st.reason, 'UnsupportedMediaType');
        assert.match(st.message, new RegExp(`protobuf field number ${n} \\(wire type \\d\\)`), `${wire} in ${where}: ${st.message}`);
        assert.match(st.message, re, `${wire} in ${where}: ${st.message}`);
      }
    }
    // Deep inside a Pod: an unknown field of a container's securityContext.
    const pod = envelope('v1', 'Pod', Buffer.concat([meta('pb-unknown-pod'), sub(2, sub(2, str(1, 'c'), str(2, 'img'), sub(15, num(5, 1000), num(77, 1))))]));
    const r = await postPb(PODS, pod);
    assert.equal(r.status, 415, r.text);
    assert.match(r.json().message, /spec\.containers\[0\]\.securityContext \(message k8s\.io\.api\.core\.v1\.SecurityContext\) carries protobuf field number 77/);
    assert.deepEqual(await cmNames(), before);
    assert.equal((await raw(s.handle, 'GET', `${PODS}/pb-unknown-pod`)).status, 404);
  });

  test('a known field with the wrong wire type → 400 (not silently skipped), also inside a map entry', async () => {
    const bodies: [string, Buffer, RegExp][] = [
      ['ConfigMap.immutable as bytes', envelope('v1', 'ConfigMap', Buffer.concat([meta('pb-wt'), len(4, 'x')])), /field 4 \(immutable\) has wire type 2/],
      ['label value as varint', envelope('v1', 'ConfigMap', meta('pb-wt', sub(11, str(1, 'app'), num(2, 1)))), /metadata\.labels\[0\].*field 2 \(value\) has wire type 0/],
      ['container name as varint', envelope('v1', 'Pod', Buffer.concat([meta('pb-wt'), sub(2, sub(2, num(1, 5)))])), /spec\.containers\[0\].*field 1 \(name\) has wire type 0/],
    ];
    for (const [what, body, re] of bodies) {
      const r = await postPb(what.startsWith('container') ? PODS : CMS, body);
      assert.equal(r.status, 400, `${what}: ${r.text}`);
      assert.match(r.json().message, re, what);
    }
    assert.ok(!(await cmNames()).includes('pb-wt'));
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
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
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

  test('a custom resource (no protobuf schema, as in kube-apiserver) → 415, nothing stored', async () => {
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'gadgets.pb.example.com' },
      spec: {
        group: 'pb.example.com',
        scope: 'Namespaced',
        names: { plural: 'gadgets', singular: 'gadget', kind: 'Gadget' },
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
      },
    };
    assert.equal((await raw(s.handle, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', JSON.stringify(crd))).status, 201);
    const path = '/apis/pb.example.com/v1/namespaces/default/gadgets';
    await eventuallyStatus(path, 200);
    const r = await postPb(path, envelope('pb.example.com/v1', 'Gadget', meta('g1')));
    assert.equal(r.status, 415, r.text);
    assert.equal(r.json().reason, 'UnsupportedMediaType');
    assert.match(r.json().message, /kind Gadget \(pb\.example\.com\/v1\)/);
    assert.deepEqual((await raw(s.handle, 'GET', path)).json().items, []);
  });

  test('every served built-in kind has a protobuf schema', () => {
    // Issue 14 in progress: the workload kinds have no messages yet (docs/apiserver.md, "Workload kinds");
    // `kubectl create deployment|job|cronjob` gets 415 until they do. Remove an entry once its schema lands.
    const pending = new Set(['apps/v1/Deployment', 'apps/v1/ReplicaSet', 'apps/v1/DaemonSet', 'apps/v1/ControllerRevision', 'batch/v1/Job', 'batch/v1/CronJob']);
    for (const t of builtinTypes()) {
      const gvk = `${t.group ? `${t.group}/` : ''}${t.version}/${t.kind}`;
      if (pending.has(gvk) && !PROTOBUF_KINDS.includes(gvk)) continue;
      assert.ok(PROTOBUF_KINDS.includes(gvk), `${t.kind} has no protobuf schema`);
    }
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

  test('unknown field → ProtobufUnsupportedError; wrong wire type → ProtobufError', () => {
    assert.throws(() => decodeProtobufObject(envelope('v1', 'ConfigMap', Buffer.concat([meta('x'), num(42, 1)]))), ProtobufUnsupportedError);
    assert.throws(() => decodeProtobufObject(envelope('v1', 'ConfigMap', Buffer.concat([meta('x'), num(3, 1)]))), ProtobufError);
  });
});

// ------------------------------------------------------------------ bodies sent by the real kubectl

const FIXTURES = join(repoRoot, 'test/apiserver/fixtures/protobuf');
const golden = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.pb'))
  .map((f) => ({
    name: f.slice(0, -3),
    pb: readFileSync(join(FIXTURES, f)),
    // biome-ignore lint/suspicious/noExplicitAny: test convenience, arbitrary JSON
    json: JSON.parse(readFileSync(join(FIXTURES, `${f.slice(0, -3)}.json`), 'utf8')) as Record<string, any>,
  })); // eslint-disable-line @typescript-eslint/no-explicit-any -- fixture JSON

describe('golden bodies from kubectl v1.35.2 (fixtures/protobuf)', () => {
  test('each decodes to exactly the JSON kubectl renders for the same object', () => {
    assert.ok(golden.length >= 8, 'fixtures missing');
    for (const g of golden) assert.deepEqual(decodeProtobufObject(g.pb).object, g.json, g.name);
  });

  test('each is accepted by the server and stored with every field', async () => {
    for (const g of golden) {
      const plural = { ConfigMap: 'configmaps', Secret: 'secrets', Namespace: 'namespaces', ServiceAccount: 'serviceaccounts', Service: 'services' }[g.json.kind as string]!;
      const path = g.json.kind === 'Namespace' ? '/api/v1/namespaces' : `/api/v1/namespaces/default/${plural}`;
      const r = await postPb(path, g.pb);
      assert.equal(r.status, 201, `${g.name}: ${r.text}`);
      assertContains(r.json(), g.json, g.name);
    }
  });
});

/** Every key of `want` is in `got` with the same value (the server adds defaults, uid, timestamps...). */
function assertContains(got: unknown, want: unknown, at: string): void {
  if (want !== null && typeof want === 'object' && !Array.isArray(want)) {
    assert.ok(got !== null && typeof got === 'object' && !Array.isArray(got), `${at}: not an object: ${JSON.stringify(got)}`);
    for (const [k, v] of Object.entries(want)) assertContains((got as Record<string, unknown>)[k], v, `${at}.${k}`);
  } else if (Array.isArray(want)) {
    assert.ok(Array.isArray(got) && got.length === want.length, `${at}: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`);
    want.forEach((v, i) => {
      assertContains(got[i], v, `${at}[${i}]`);
    });
  } else {
    assert.deepEqual(got, want, at);
  }
}

// ------------------------------------------------------------------ whole objects encoded with protobufjs

// The test's own JSON → protobuf mapping (the inverse of the decoder's), over the same descriptor.
const pbRoot = protobuf.Root.fromJSON(schemaJson as unknown as protobuf.INamespace);
pbRoot.resolveAll();
const EXT = 'k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.';
type Obj = Record<string, unknown>;

function toProto(t: protobuf.Type, j: Obj): Obj {
  const out: Obj = {};
  for (const f of t.fieldsArray) {
    const o = (f.options ?? {}) as { k8s_json?: string; k8s_inline?: boolean; k8s_map?: boolean };
    if (o.k8s_inline) {
      out[f.name] = toProto(f.resolvedType as protobuf.Type, j);
      continue;
    }
    const k = o.k8s_json ?? f.name;
    if (!(k in j) || j[k] === null) continue; // null: Go's nil / zero Time, nothing on the wire
    const v = j[k];
    if (o.k8s_map) {
      const vf = (f.resolvedType as protobuf.Type).fields.value!;
      out[f.name] = Object.entries(v as Obj).map(([key, x]) => ({ key, value: elem(vf, x) }));
    } else if (f.repeated) out[f.name] = (v as unknown[]).map((x) => elem(f, x));
    else out[f.name] = elem(f, v);
  }
  return out;
}

function elem(f: protobuf.Field, v: unknown): unknown {
  const rt = f.resolvedType;
  if (!(rt instanceof protobuf.Type)) return f.type === 'bytes' ? Buffer.from(v as string, 'base64') : v;
  const props = (x: unknown) => toProto(pbRoot.lookupType(`${EXT}JSONSchemaProps`), x as Obj);
  switch (rt.fullName.slice(1)) {
    case 'k8s.io.apimachinery.pkg.apis.meta.v1.Time':
      return { seconds: Date.parse(v as string) / 1000 };
    case 'k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime': {
      const [, sec, frac] = /^(.*:\d\d)\.(\d{6})Z$/.exec(v as string)!;
      return { seconds: Date.parse(`${sec}Z`) / 1000, nanos: Number(frac) * 1000 };
    }
    case 'k8s.io.apimachinery.pkg.api.resource.Quantity':
      return { string: v };
    case 'k8s.io.apimachinery.pkg.util.intstr.IntOrString':
      return typeof v === 'number' ? { type: 0, intVal: v } : { type: 1, strVal: v };
    case 'k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1':
      return { Raw: Buffer.from(JSON.stringify(v)) };
    case `${EXT}JSON`:
      return { raw: Buffer.from(JSON.stringify(v)) };
    case `${EXT}JSONSchemaPropsOrArray`:
      return Array.isArray(v) ? { jSONSchemas: v.map(props) } : { schema: props(v) };
    case `${EXT}JSONSchemaPropsOrBool`:
      return typeof v === 'boolean' ? { allows: v } : { allows: true, schema: props(v) };
    case `${EXT}JSONSchemaPropsOrStringArray`:
      return Array.isArray(v) ? { property: v } : { schema: props(v) };
    default:
      return toProto(rt, v as Obj);
  }
}

const MESSAGES: Record<string, string> = {
  Pod: 'k8s.io.api.core.v1.Pod',
  Lease: 'k8s.io.api.coordination.v1.Lease',
  CustomResourceDefinition: `${EXT}CustomResourceDefinition`,
  Node: 'k8s.io.api.core.v1.Node',
};
/** A Kubernetes JSON object → the `k8s\0` + runtime.Unknown body, via protobufjs. */
function encodeObject(obj: Obj): Buffer {
  const t = pbRoot.lookupType(MESSAGES[obj.kind as string]!);
  const rawObj = t.encode(toProto(t, obj)).finish();
  const env = pbRoot
    .lookupType('k8s.io.apimachinery.pkg.runtime.Unknown')
    .encode({ typeMeta: { apiVersion: obj.apiVersion, kind: obj.kind }, raw: rawObj })
    .finish();
  return Buffer.concat([MAGIC, env]);
}

const richPod = (name: string): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name,
    labels: { app: 'rich' },
    annotations: { 'example.com/note': '' },
    ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: '0e6f3b8c-1111-4222-8333-944445555666', controller: false, blockOwnerDeletion: true }],
  },
  spec: {
    securityContext: {
      runAsUser: 1000,
      runAsGroup: 3000,
      runAsNonRoot: true,
      fsGroup: 2000,
      fsGroupChangePolicy: 'OnRootMismatch',
      supplementalGroups: [4000, 5000],
      seccompProfile: { type: 'RuntimeDefault' },
      seLinuxOptions: { level: 's0:c123,c456' },
      sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }],
    },
    initContainers: [{ name: 'sidecar', image: 'busybox:1.36', command: ['sh', '-c', 'sleep 1d'], restartPolicy: 'Always' }],
    containers: [
      {
        name: 'main',
        image: 'nginx:1.25',
        ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
        env: [
          { name: 'POD_IP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } } },
          { name: 'MEM', valueFrom: { resourceFieldRef: { containerName: 'main', resource: 'limits.memory', divisor: '1Mi' } } },
        ],
        resources: { limits: { cpu: '500m', memory: '128Mi' }, requests: { cpu: '250m', 'ephemeral-storage': '1Gi' }, claims: [{ name: 'gpu' }] },
        resizePolicy: [{ resourceName: 'cpu', restartPolicy: 'NotRequired' }],
        volumeMounts: [
          { name: 'proj', readOnly: true, mountPath: '/proj', mountPropagation: 'None' },
          { name: 'scratch', mountPath: '/scratch', subPathExpr: '$(POD_IP)' },
        ],
        livenessProbe: {
          httpGet: { path: '/healthz', port: 'http', scheme: 'HTTP', httpHeaders: [{ name: 'X-Probe', value: '' }] },
          initialDelaySeconds: 3,
          timeoutSeconds: 1,
          periodSeconds: 10,
          successThreshold: 1,
          failureThreshold: 3,
          terminationGracePeriodSeconds: 0,
        },
        readinessProbe: { exec: { command: ['cat', '/tmp/ready'] }, periodSeconds: 5 },
        startupProbe: { tcpSocket: { port: 8080 }, failureThreshold: 30 },
        lifecycle: { postStart: { exec: { command: ['sh', '-c', 'echo started'] } }, preStop: { sleep: { seconds: 5 } } },
        securityContext: {
          capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] },
          privileged: false,
          runAsUser: 0,
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          procMount: 'Default',
          appArmorProfile: { type: 'Localhost', localhostProfile: 'k8s-nginx' },
        },
        terminationMessagePath: '/dev/termination-log',
        terminationMessagePolicy: 'FallbackToLogsOnError',
        imagePullPolicy: 'IfNotPresent',
      },
      { name: 'grpc', image: 'example.com/grpc:1', livenessProbe: { grpc: { port: 9090, service: '' } } },
    ],
    volumes: [
      {
        name: 'proj',
        projected: {
          sources: [
            { serviceAccountToken: { audience: 'vault', expirationSeconds: 3600, path: 'token' } },
            { configMap: { name: 'cfg', items: [{ key: 'a', path: 'a.txt', mode: 256 }], optional: true } },
            { secret: { name: 'sec', optional: false } },
            {
              downwardAPI: {
                items: [
                  { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
                  { path: 'cpu', resourceFieldRef: { containerName: 'main', resource: 'limits.cpu', divisor: '1m' } },
                ],
              },
            },
            { clusterTrustBundle: { signerName: 'example.com/signer', labelSelector: { matchLabels: { a: 'b' } }, path: 'bundle.pem' } },
          ],
          defaultMode: 420,
        },
      },
      { name: 'scratch', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } },
      {
        name: 'eph',
        ephemeral: {
          volumeClaimTemplate: {
            metadata: { labels: { t: 'x' } },
            spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } }, storageClassName: 'fast' },
          },
        },
      },
    ],
    restartPolicy: 'Always',
    terminationGracePeriodSeconds: 30,
    activeDeadlineSeconds: 600,
    dnsPolicy: 'ClusterFirst',
    automountServiceAccountToken: false,
    shareProcessNamespace: true,
    hostname: 'rich',
    subdomain: 'sub',
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/os', operator: 'In', values: ['linux'] }] }] },
        preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 50, preference: { matchFields: [{ key: 'metadata.name', operator: 'NotIn', values: ['bad'] }] } }],
      },
      podAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: [
          { labelSelector: { matchExpressions: [{ key: 'app', operator: 'Exists' }] }, topologyKey: 'kubernetes.io/hostname', matchLabelKeys: ['pod-template-hash'] },
        ],
      },
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          { weight: 100, podAffinityTerm: { labelSelector: { matchLabels: { app: 'rich' } }, namespaces: ['default'], topologyKey: 'zone' } },
        ],
      },
    },
    schedulerName: 'manual',
    // With the two the DefaultTolerationSeconds admission would add, so that what is stored is what was sent.
    tolerations: [
      { key: 'k', operator: 'Equal', value: 'v', effect: 'NoExecute', tolerationSeconds: 0 },
      { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
    ],
    hostAliases: [{ ip: '10.0.0.1', hostnames: ['a', 'b'] }],
    priority: 0,
    dnsConfig: { nameservers: ['1.1.1.1'], searches: ['svc.local'], options: [{ name: 'ndots', value: '2' }] },
    readinessGates: [{ conditionType: 'example.com/ready' }],
    runtimeClassName: 'kata',
    enableServiceLinks: false,
    preemptionPolicy: 'Never',
    overhead: { cpu: '10m' },
    topologySpreadConstraints: [
      { maxSkew: 1, topologyKey: 'zone', whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { app: 'rich' } }, minDomains: 2, nodeAffinityPolicy: 'Honor' },
    ],
    setHostnameAsFQDN: false,
    os: { name: 'linux' },
    hostUsers: false,
    resourceClaims: [{ name: 'gpu', resourceClaimTemplateName: 'gpu-template' }],
    resources: { limits: { cpu: '1' } },
  },
});

describe('whole objects encoded with protobufjs from the schema', () => {
  test('a Pod with securityContext, probes, lifecycle, affinity, projected volumes and resources decodes to exactly its JSON', () => {
    const pod = richPod('rich-unit');
    // Server-side-only metadata too: managedFields (FieldsV1 = embedded JSON, Time), creationTimestamp, generation.
    (pod.metadata as Obj).managedFields = [
      {
        manager: 'kubectl',
        operation: 'Update',
        apiVersion: 'v1',
        time: '2024-05-06T07:08:09Z',
        fieldsType: 'FieldsV1',
        fieldsV1: { 'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } } },
      },
    ];
    (pod.metadata as Obj).creationTimestamp = '2024-05-06T07:08:09Z';
    (pod.metadata as Obj).generation = 7;
    pod.status = {
      phase: 'Running',
      conditions: [{ type: 'Ready', status: 'True', lastProbeTime: null, lastTransitionTime: '2024-05-06T07:08:10Z' }],
      podIP: '10.1.2.3',
      startTime: '2024-05-06T07:08:09Z',
      qosClass: 'Burstable',
    };
    // lastProbeTime: null is Go's zero Time, which has no bytes on the wire and decodes as absent.
    const want = structuredClone(pod);
    delete ((want.status as Obj).conditions as Obj[])[0]!.lastProbeTime;
    assert.deepEqual(decodeProtobufObject(encodeObject(pod)).object, want);
  });

  test('the same Pod sent as protobuf and as JSON is stored identically, nothing lost', async () => {
    const viaPb = await postPb(PODS, encodeObject(richPod('rich-pb')));
    assert.equal(viaPb.status, 201, viaPb.text);
    const viaJson = await raw(s.handle, 'POST', PODS, JSON.stringify(richPod('rich-json')));
    assert.equal(viaJson.status, 201, viaJson.text);
    const a = (await raw(s.handle, 'GET', `${PODS}/rich-pb`)).json();
    const b = (await raw(s.handle, 'GET', `${PODS}/rich-json`)).json();
    assertContains(a, richPod('rich-pb'), 'stored pod');
    assert.deepEqual(a.spec, b.spec);
    for (const k of ['labels', 'annotations', 'ownerReferences']) assert.deepEqual(a.metadata[k], b.metadata[k], k);
    for (const n of ['rich-pb', 'rich-json']) await raw(s.handle, 'DELETE', `${PODS}/${n}?gracePeriodSeconds=0`);
  });

  test('a Lease with MicroTime acquire/renew times (µs precision) and zero-valued pointer fields', async () => {
    const lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'pb-lease', namespace: 'default' },
      spec: { holderIdentity: 'node-a', leaseDurationSeconds: 40, acquireTime: '2024-01-02T03:04:05.123456Z', renewTime: '1969-12-31T23:59:59.999999Z', leaseTransitions: 0 },
    };
    assert.deepEqual(decodeProtobufObject(encodeObject(lease)).object, lease);
    const r = await postPb('/apis/coordination.k8s.io/v1/namespaces/default/leases', encodeObject(lease));
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.json().spec, lease.spec);
  });

  test('a CRD with a full JSONSchemaProps ($ref, defaults, enums, int-or-string, validations, items, additionalProperties) round-trips; created via protobuf it serves its CRs', async () => {
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'sensors.pb.example.com' },
      spec: {
        group: 'pb.example.com',
        names: { plural: 'sensors', singular: 'sensor', kind: 'Sensor', listKind: 'SensorList', shortNames: ['sn'], categories: ['all'] },
        scope: 'Namespaced',
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: 'object',
                properties: {
                  spec: {
                    type: 'object',
                    required: ['unit'],
                    properties: {
                      unit: { type: 'string', enum: ['C', 'F'], default: 'C' },
                      interval: { type: 'integer', minimum: 1, maximum: 3600, exclusiveMaximum: true, multipleOf: 1, default: 30 },
                      port: { 'x-kubernetes-int-or-string': true },
                      tags: { type: 'array', items: { type: 'string', maxLength: 63 }, maxItems: 16, 'x-kubernetes-list-type': 'set' },
                      labels: { type: 'object', additionalProperties: { type: 'string' }, 'x-kubernetes-map-type': 'granular' },
                      closed: { type: 'object', additionalProperties: false },
                      raw: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true, nullable: true },
                    },
                    'x-kubernetes-validations': [
                      { rule: 'self.interval >= 1', message: 'interval must be positive', reason: 'FieldValueInvalid', fieldPath: '.interval', optionalOldSelf: false },
                    ],
                  },
                  status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
                },
              },
            },
            subresources: { status: {} },
            additionalPrinterColumns: [{ name: 'Unit', type: 'string', jsonPath: '.spec.unit', priority: 1 }],
          },
        ],
      },
    };
    assert.deepEqual(decodeProtobufObject(encodeObject(crd)).object, crd);
    // Schema features the server itself refuses in CRDs still decode exactly.
    const exotic = {
      $ref: '#/definitions/x',
      $schema: 'http://json-schema.org/draft-04/schema#',
      items: [{ type: 'string' }, { type: 'integer' }],
      dependencies: { a: ['b', 'c'], d: { type: 'object' } },
      definitions: { x: { type: 'string' } },
      example: { any: ['json', 1, null] },
    };
    const crd2 = structuredClone(crd) as Obj;
    ((((crd2.spec as Obj).versions as Obj[])[0]!.schema as Obj).openAPIV3Schema as Obj).properties = { e: exotic };
    assert.deepEqual(decodeProtobufObject(encodeObject(crd2)).object, crd2);

    const r = await postPb('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', encodeObject(crd));
    assert.equal(r.status, 201, r.text);
    const path = '/apis/pb.example.com/v1/namespaces/default/sensors';
    await eventuallyStatus(path, 200);
    const cr = await raw(
      s.handle,
      'POST',
      path,
      JSON.stringify({ apiVersion: 'pb.example.com/v1', kind: 'Sensor', metadata: { name: 's1' }, spec: { port: 'http', labels: { a: 'b' } } }),
    );
    assert.equal(cr.status, 201, cr.text);
    assert.equal(cr.json().spec.unit, 'C'); // the default from the protobuf-decoded schema
    assert.equal(cr.json().spec.interval, 30);
  });

  test('out-of-range values → 400: int64 beyond 2^53, non-finite double, timestamp past year 9999, IntOrString type 2, invalid embedded JSON', async () => {
    // Bodies built directly from protobufjs messages (below the JSON mapping), so that they can hold what JSON cannot.
    const body = (apiVersion: string, kind: string, obj: Obj) => {
      const rawObj = pbRoot.lookupType(MESSAGES[kind]!).encode(obj).finish();
      return Buffer.concat([MAGIC, pbRoot.lookupType('k8s.io.apimachinery.pkg.runtime.Unknown').encode({ typeMeta: { apiVersion, kind }, raw: rawObj }).finish()]);
    };
    const pod = (spec: Obj) => body('v1', 'Pod', { metadata: { name: 'bad' }, spec });
    const lease = (spec: Obj) => body('coordination.k8s.io/v1', 'Lease', { metadata: { name: 'bad' }, spec });
    const crd = (openAPIV3Schema: Obj) =>
      body('apiextensions.k8s.io/v1', 'CustomResourceDefinition', { metadata: { name: 'bad.example.com' }, spec: { versions: [{ name: 'v1', schema: { openAPIV3Schema } }] } });
    const LEASES = '/apis/coordination.k8s.io/v1/namespaces/default/leases';
    const CRDS = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
    const cases: [string, string, Buffer, RegExp][] = [
      ['int64 2^60', PODS, pod({ activeDeadlineSeconds: 2 ** 60 }), /spec\.activeDeadlineSeconds: integer 1152921504606846976 is out of the exactly representable range/],
      ['IntOrString type 2', PODS, pod({ containers: [{ name: 'c', image: 'i', livenessProbe: { handler: { tcpSocket: { port: { type: 2 } } } } }] }), /IntOrString type 2/],
      ['year 10000', LEASES, lease({ renewTime: { seconds: 253402300800 } }), /spec\.renewTime: timestamp 253402300800s is outside years 1–9999/],
      ['NaN maximum', CRDS, crd({ maximum: NaN }), /maximum: NaN is not a JSON number/],
      ['invalid default JSON', CRDS, crd({ default: { raw: Buffer.from('{nope') } }), /default: embedded JSON is not valid/],
    ];
    for (const [what, path, b, re] of cases) {
      assert.throws(
        () => decodeProtobufObject(b),
        (e: unknown) => e instanceof ProtobufError && re.test((e as Error).message),
        what,
      );
      const r = await postPb(path, b);
      assert.equal(r.status, 400, `${what}: ${r.text}`);
      assert.match(r.json().message, re, what);
    }
  });

  test('a schema nested deeper than the recursion limit → 400, not a crash', async () => {
    let schema: Obj = { type: 'string' };
    for (let i = 0; i < 200; i++) schema = { type: 'object', properties: { x: schema } };
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'deep.pb.example.com' },
      spec: { versions: [{ name: 'v1', schema: { openAPIV3Schema: schema } }] },
    };
    // protobufjs's encoder has the same limit: lift it for encoding only (decoding keeps its own, Reader.recursionLimit).
    const limit = protobuf.util.recursionLimit;
    let body: Buffer;
    try {
      protobuf.util.recursionLimit = 10_000;
      body = encodeObject(crd);
    } finally {
      protobuf.util.recursionLimit = limit;
    }
    const r = await postPb('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', body);
    assert.equal(r.status, 400, r.text);
    assert.match(r.json().message, /max depth exceeded/);
    assert.equal((await raw(s.handle, 'GET', '/healthz')).status, 200);
  });
});
