/**
 * The device validation webhook over real HTTPS (a certificate made as CloudStream makes its
 * own): AdmissionReviews allowed, denied with a 422 Invalid Status naming the fields, malformed
 * ones answered 400 with the reason, oversized bodies 413, and the server unharmed after all
 * of it; denials and refusals logged once per window.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { loadOrCreateServingCert } from '../../cloud/cloudstream/cert.js';
import { createDeviceWebhook, defaultDeviceWebhookOptions, reviewDevices, VALIDATE_PATH, type DeviceWebhook } from '../../cloud/devicewebhook/index.js';
import type { DeviceModel } from '../../shared/devices/index.js';
import { createLogger } from '../../shared/log/index.js';
import { tempDir } from '../helpers/files.js';
import { repoRoot } from '../helpers/process.js';

const dir = tempDir('ledge-devwebhook-');
after(() => dir.cleanup());

const thermostat: DeviceModel = {
  apiVersion: 'devices.kubeedge.io/v1beta1',
  kind: 'DeviceModel',
  metadata: { name: 'thermostat', namespace: 'plant' },
  spec: {
    protocol: 'modbus',
    properties: [
      { name: 'setpoint', type: 'INT', accessMode: 'ReadWrite', minimum: '5', maximum: '35' },
      { name: 'temperature', type: 'INT', accessMode: 'ReadOnly' },
    ],
  },
};

const lookups: string[] = [];
async function models(namespace: string, name: string): Promise<DeviceModel | undefined> {
  lookups.push(`${namespace}/${name}`);
  if (name === 'broken') throw new Error('connection refused');
  return namespace === 'plant' && name === 'thermostat' ? thermostat : undefined;
}

function device(desired: string, model = 'thermostat', extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'Device',
    metadata: { name: 'thermostat-1', namespace: 'plant', ...extra },
    spec: { deviceModelRef: { name: model }, nodeName: 'edge-1', protocol: { protocolName: 'modbus' }, properties: [{ name: 'setpoint', desired: { value: desired } }] },
  };
}

let seq = 0;
function review(object: unknown, opts: { operation?: string; resource?: string; oldObject?: unknown; subResource?: string } = {}) {
  const resource = opts.resource ?? 'devices';
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `uid-${++seq}`,
      kind: { group: 'devices.kubeedge.io', version: 'v1beta1', kind: resource === 'devices' ? 'Device' : 'DeviceModel' },
      resource: { group: resource === 'pods' ? '' : 'devices.kubeedge.io', version: 'v1beta1', resource },
      ...(opts.subResource ? { subResource: opts.subResource } : {}),
      name: 'thermostat-1',
      namespace: 'plant',
      operation: opts.operation ?? 'CREATE',
      userInfo: { username: 'admin' },
      object,
      oldObject: opts.oldObject ?? null,
      dryRun: false,
    },
  };
}

interface Reply {
  status: number;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: test convenience, arbitrary JSON
  json: () => any;
}

let ca = '';
function call(port: number, method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, ca, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, text, json: () => JSON.parse(text) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(20_000, () => req.destroy(new Error(`${method} ${path}: no answer in 20 s`)));
    req.end(body);
  });
}

const lines: Record<string, unknown>[] = [];
let hook: DeviceWebhook | undefined;
let port = 0;
async function server(): Promise<number> {
  if (hook) return port;
  const cert = await loadOrCreateServingCert(join(dir.path, 'tls'), ['127.0.0.1', 'localhost']);
  ca = cert.cert;
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  hook = createDeviceWebhook(
    { host: '127.0.0.1', port: 0, certFile: join(dir.path, 'tls/server.crt'), keyFile: join(dir.path, 'tls/server.key'), models, maxBodyBytes: 64 * 1024 },
    log,
  );
  port = (await hook.start()).port;
  return port;
}
after(() => hook?.close());

const post = async (body: unknown) => call(await server(), 'POST', '/validate-devices', typeof body === 'string' ? body : JSON.stringify(body));

test('healthz answers over TLS', async () => {
  const r = await call(await server(), 'GET', '/healthz');
  assert.equal(r.status, 200);
  assert.equal(r.text, 'ok');
});

test('a valid Device is allowed, with the request uid echoed', async () => {
  const rv = review(device('21'));
  const r = await post(rv);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json(), { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: rv.request.uid, allowed: true } });
  assert.ok(lookups.includes('plant/thermostat'), 'the model was looked up in the request namespace');
});

test('a bad desired value is denied: 422 Invalid, the field in the message and in the causes', async () => {
  const rv = review(device('abc'));
  const r = await post(rv);
  assert.equal(r.status, 200);
  const res = r.json().response;
  assert.equal(res.uid, rv.request.uid);
  assert.equal(res.allowed, false);
  assert.equal(res.status.code, 422);
  assert.equal(res.status.reason, 'Invalid');
  assert.equal(res.status.status, 'Failure');
  assert.equal(res.status.message, 'Device.devices.kubeedge.io "thermostat-1" is invalid: spec.properties[0].desired.value: "abc" is not an INT');
  assert.deepEqual(res.status.details, {
    name: 'thermostat-1',
    group: 'devices.kubeedge.io',
    kind: 'Device',
    causes: [{ reason: 'FieldValueInvalid', field: 'spec.properties[0].desired.value', message: '"abc" is not an INT' }],
  });
  const above = (await post(review(device('99')))).json().response;
  assert.equal(above.allowed, false);
  assert.match(above.status.message, /"99" is above the maximum "35" of property "setpoint"/);
});

test('a Device whose model is missing or unreadable is shape-checked and allowed with a warning', async () => {
  let res = (await post(review(device('anything', 'not-yet')))).json().response;
  assert.equal(res.allowed, true);
  assert.deepEqual(res.warnings, ["DeviceModel plant/not-yet does not exist (yet): only the Device's shape was checked, not its desired values"]);
  res = (await post(review(device('anything', 'broken')))).json().response;
  assert.equal(res.allowed, true);
  assert.match(res.warnings[0], /DeviceModel plant\/broken could not be read \(connection refused\)/);
  // The shape is still checked.
  res = (await post(review({ ...device('1', 'not-yet'), spec: { deviceModelRef: { name: 'not-yet' }, nodeName: 'Bad Node' } }))).json().response;
  assert.equal(res.allowed, false);
  assert.match(res.status.message, /spec\.nodeName: "Bad Node" is not a valid node name/);
});

test('DeviceModels are validated', async () => {
  const bad = { ...thermostat, spec: { properties: [{ name: 'x', type: 'INT', minimum: '9', maximum: '1' }] } };
  const res = (await post(review(bad, { resource: 'devicemodels' }))).json().response;
  assert.equal(res.allowed, false);
  assert.equal(res.status.details.kind, 'DeviceModel');
  assert.match(res.status.message, /^DeviceModel\.devices\.kubeedge\.io "thermostat" is invalid: spec\.properties\[0\]\.minimum: "9" is above the maximum "1"$/);
  assert.equal((await post(review(thermostat, { resource: 'devicemodels' }))).json().response.allowed, true);
});

test('UPDATE: spec changes are checked, metadata-only changes of an invalid Device are not', async () => {
  const old = device('abc');
  let res = (await post(review(device('abc', 'thermostat', { labels: { room: 'a' }, finalizers: [] }), { operation: 'UPDATE', oldObject: old }))).json().response;
  assert.equal(res.allowed, true, JSON.stringify(res));
  res = (await post(review(device('abcd'), { operation: 'UPDATE', oldObject: old }))).json().response;
  assert.equal(res.allowed, false);
  assert.match(res.status.message, /"abcd" is not an INT/);
});

test('DELETE, status writes and resources that are not ours are allowed unchecked', async () => {
  for (const rv of [
    review(null, { operation: 'DELETE' }),
    review(device('abc'), { operation: 'UPDATE', subResource: 'status', oldObject: device('abc') }),
    review(device('abc'), { operation: 'CONNECT' }),
    review({ kind: 'Pod' }, { resource: 'pods' }),
  ]) {
    const r = await post(rv);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json().response, { uid: rv.request.uid, allowed: true });
  }
});

test('malformed reviews are answered 400 with the reason', async () => {
  const cases: [unknown, RegExp][] = [
    ['{not json', /^malformed AdmissionReview: the body is not JSON/],
    ['[1,2]', /the body is not a JSON object/],
    [{ ...review(device('1')), apiVersion: 'admission.k8s.io/v1beta1' }, /apiVersion "admission.k8s.io\/v1beta1" is not served: only admission.k8s.io\/v1/],
    [{ ...review(device('1')), kind: 'Pod' }, /kind is "Pod", not "AdmissionReview"/],
    [{ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, /request is missing/],
    [{ ...review(device('1')), request: { ...review(device('1')).request, uid: '' } }, /request\.uid is missing/],
    [review('a string'), /request\.object is missing on CREATE/],
    // Nesting deep enough to exhaust a recursive comparison.
    [
      `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"UPDATE","resource":{"group":"devices.kubeedge.io","resource":"devices"},"object":{"spec":${'['.repeat(15_000)}${']'.repeat(15_000)}},"oldObject":{"spec":${'['.repeat(15_000)}${']'.repeat(15_000)}}}}`,
      /the AdmissionReview could not be checked \(Maximum call stack size exceeded\)/,
    ],
  ];
  for (const [body, why] of cases) {
    const r = await post(body);
    assert.equal(r.status, 400, `${String(why)}: ${r.text}`);
    assert.match(r.json().message, why);
  }
});

test('oversized bodies are refused with 413, by Content-Length and by what arrives; wrong paths and methods get 404/405', async () => {
  const p = await server();
  const big = JSON.stringify(review({ ...device('1'), metadata: { name: 'x', annotations: { pad: 'x'.repeat(100 * 1024) } } }));
  let r = await call(p, 'POST', '/validate-devices', big);
  assert.equal(r.status, 413);
  assert.match(r.json().message, /limit is 65536 bytes/);
  r = await call(p, 'POST', '/validate-devices', big, { 'transfer-encoding': 'chunked' });
  assert.equal(r.status, 413);
  r = await call(p, 'GET', '/validate-devices');
  assert.equal(r.status, 405);
  r = await call(p, 'POST', '/devices', '{}');
  assert.equal(r.status, 404);
  assert.match(r.json().message, /serves POST \/validate-devices/);
  // Still serving.
  assert.equal((await post(review(device('21')))).json().response.allowed, true);
});

test('a flood of denials and malformed reviews is logged once per window', async () => {
  await server();
  const before = lines.length;
  await Promise.all(Array.from({ length: 30 }, () => post(review(device('zzz')))));
  await Promise.all(Array.from({ length: 30 }, () => post('garbage')));
  const added = lines.slice(before);
  const denials = added.filter((l) => String(l.msg).includes('denied'));
  const malformed = added.filter((l) => String(l.msg).includes('malformed'));
  assert.ok(denials.length <= 1, JSON.stringify(denials));
  assert.ok(malformed.length <= 1, JSON.stringify(malformed));
  for (const l of [...denials, ...malformed]) assert.ok(typeof l.code === 'string' && l.code.startsWith('LEDGE_ERR_'), JSON.stringify(l));
});

test('reviewDevices (no server) gives the same answers', async () => {
  const res = await reviewDevices(review(device('abc')), models);
  assert.ok(!('malformed' in res));
  assert.equal(res.response.allowed, false);
  assert.deepEqual(await reviewDevices(null, models), { malformed: 'the body is not a JSON object (an AdmissionReview was expected)' });
});

test('bad options are refused at construction', () => {
  const log = createLogger({ level: 'silent' });
  assert.throws(() => createDeviceWebhook({ certFile: '', keyFile: 'k', models }, log), /certFile and keyFile are required/);
  assert.throws(() => createDeviceWebhook({ certFile: 'c', keyFile: 'k', models, port: 70000 }, log), /not a TCP port/);
  assert.throws(() => createDeviceWebhook({ certFile: 'c', keyFile: 'k', models, maxBodyBytes: 0 }, log), /maxBodyBytes must be a positive integer/);
});

test('deploy/kubernetes/device-webhook.yaml matches the server: path, port, rules, v1 reviews', () => {
  // biome-ignore lint/suspicious/noExplicitAny: test convenience, manifests read as arbitrary YAML
  const docs = yaml.loadAll(readFileSync(join(repoRoot, 'deploy/kubernetes/device-webhook.yaml'), 'utf8')) as Record<string, any>[];
  const svc = docs.find((d) => d.kind === 'Service')!;
  const cfg = docs.find((d) => d.kind === 'ValidatingWebhookConfiguration')!;
  assert.equal(svc.spec.ports[0].targetPort, defaultDeviceWebhookOptions.port);
  const covered = new Set<string>();
  for (const w of cfg.webhooks) {
    assert.equal(w.name.split('.').length >= 3, true, w.name);
    assert.deepEqual(w.admissionReviewVersions, ['v1']);
    assert.equal(w.sideEffects, 'None');
    assert.equal(w.clientConfig.service.name, svc.metadata.name);
    assert.equal(w.clientConfig.service.namespace, svc.metadata.namespace);
    assert.equal(w.clientConfig.service.port, svc.spec.ports[0].port);
    assert.equal(w.clientConfig.service.path, VALIDATE_PATH);
    for (const r of w.rules) for (const res of r.resources) for (const op of r.operations) covered.add(`${r.apiGroups[0]}/${r.apiVersions[0]}/${res}/${op}`);
  }
  assert.deepEqual([...covered].sort(), [
    'devices.kubeedge.io/v1beta1/devicemodels/CREATE',
    'devices.kubeedge.io/v1beta1/devicemodels/UPDATE',
    'devices.kubeedge.io/v1beta1/devices/CREATE',
    'devices.kubeedge.io/v1beta1/devices/UPDATE',
  ]);
});
