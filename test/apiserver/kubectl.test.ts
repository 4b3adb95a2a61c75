// The real kubectl v1.35 (and Debian's kubectl 1.20 for version skew) against the
// local control plane over TLS with the generated kubeconfig.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { KUBECTL_SKIP, kubectl, kubectlPath, startTestServer, tempDir, type TestServer } from './helpers.js';

let s: TestServer;
let bin: string;
let cache: string;
before(async () => {
  bin = kubectlPath('1.35') ?? '';
  s = await startTestServer();
  cache = tempDir('ledge-kubectl-cache-');
});
after(async () => {
  await s?.stop();
});

const k = (args: string[], input?: string) => kubectl(bin, s.handle.kubeconfigPath, args, { cacheDir: cache, ...(input !== undefined ? { input } : {}) });
function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} failed: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

const POD = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: nginx
    image: nginx:1.25
    ports: [{containerPort: 80}]
`;
const CM = `apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
`;
const CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: devices.edge.example.com}
spec:
  group: edge.example.com
  scope: Namespaced
  names: {plural: devices, singular: device, kind: Device, shortNames: [dev]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Protocol, type: string, jsonPath: .spec.protocol}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: Desired device configuration.
            required: [protocol]
            properties:
              protocol: {type: string, description: Device protocol (modbus, opcua...).}
              pollSeconds: {type: integer, minimum: 1}
`;
const DEV = `apiVersion: edge.example.com/v1
kind: Device
metadata: {name: thermo-1}
spec: {protocol: modbus, pollSeconds: 5}
`;

describe('kubectl v1.35', { skip: KUBECTL_SKIP }, () => {
  test('version and api-resources', async () => {
    assert.match(ok(await k(['version']), 'version'), /Server Version: v1\.35/);
    const res = ok(await k(['api-resources']), 'api-resources');
    assert.match(res, /^pods\s+po\s+v1\s+true\s+Pod$/m);
    assert.match(res, /leases\s+coordination\.k8s\.io\/v1/);
  });

  test('client-side apply of a pod and a configmap; re-apply; update', async () => {
    const out = ok(await k(['apply', '-f', '-'], `${POD}---\n${CM}`), 'apply');
    assert.match(out, /pod\/web created/);
    assert.match(out, /configmap\/settings created/);
    assert.match(ok(await k(['apply', '-f', '-'], `${POD}---\n${CM}`), 're-apply'), /pod\/web unchanged[\s\S]*configmap\/settings unchanged/);
    ok(await k(['apply', '-f', '-'], POD.replace('nginx:1.25', 'nginx:1.26')), 'apply image change');
    assert.equal(ok(await k(['get', 'pod', 'web', '-o', 'jsonpath={.spec.containers[0].image}']), 'get'), 'nginx:1.26');
    const table = ok(await k(['get', 'pods']), 'get pods');
    assert.match(table, /NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE/);
    assert.match(table, /web\s+0\/1\s+Pending/);
  });

  test('server-side apply of a configmap and a pod', async () => {
    assert.match(ok(await k(['apply', '--server-side', '-f', '-'], CM.replace('fast', 'slow')), 'ssa cm'), /serverside-applied/);
    assert.equal(ok(await k(['get', 'cm', 'settings', '-o', 'jsonpath={.data.mode}']), 'get'), 'slow');
    assert.match(ok(await k(['apply', '--server-side', '-f', '-'], POD.replace('name: web', 'name: web-ssa')), 'ssa pod'), /pod\/web-ssa serverside-applied/);
    const mf = ok(await k(['get', 'pod', 'web-ssa', '-o', 'jsonpath={.metadata.managedFields[0].manager}', '--show-managed-fields']), 'managed');
    assert.equal(mf, 'kubectl');
  });

  test('CRD and an instance: apply, get with printer columns, explain', async () => {
    assert.match(ok(await k(['apply', '-f', '-'], CRD), 'apply crd'), /created/);
    assert.match(ok(await k(['apply', '-f', '-'], DEV), 'apply device'), /device\.edge\.example\.com\/thermo-1 created/);
    assert.match(ok(await k(['apply', '--server-side', '-f', '-'], DEV.replace('pollSeconds: 5', 'pollSeconds: 9')), 'ssa device'), /serverside-applied/);
    assert.match(ok(await k(['get', 'dev']), 'get dev'), /thermo-1\s+modbus/);
    const bad = await k(['apply', '-f', '-'], DEV.replace('protocol: modbus, ', ''));
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /spec\.protocol: Required value/);
    const explain = ok(await k(['explain', 'devices.spec']), 'explain');
    assert.match(explain, /protocol\s+<string> -required-/);
    assert.match(explain, /Device protocol/);
    assert.match(ok(await k(['explain', 'pods']), 'explain pods'), /KIND:\s+Pod/);
  });

  test('describe pod shows its events', async () => {
    const uid = ok(await k(['get', 'pod', 'web', '-o', 'jsonpath={.metadata.uid}']), 'uid');
    const ev = JSON.stringify({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: 'web.17' },
      involvedObject: { kind: 'Pod', name: 'web', namespace: 'default', uid },
      reason: 'Pulled',
      message: 'image pulled',
      type: 'Normal',
      count: 1,
      firstTimestamp: new Date().toISOString(),
      lastTimestamp: new Date().toISOString(),
      source: { component: 'edged' },
    });
    ok(await k(['create', '-f', '-'], ev), 'create event');
    const d = ok(await k(['describe', 'pod', 'web']), 'describe');
    assert.match(d, /Name:\s+web/);
    assert.match(d, /Image:\s+nginx:1\.26/);
    assert.match(d, /Pulled\s+.*image pulled/);
  });

  test('get -w streams changes; delete removes', async () => {
    const child = spawn(bin, ['--kubeconfig', s.handle.kubeconfigPath, '--cache-dir', cache, 'get', 'configmaps', '-w', '--output-watch-events'], {
      env: { ...process.env, HOME: cache },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const waitOut = async (re: RegExp) => {
      for (let i = 0; i < 200 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(out, re);
    };
    try {
      await waitOut(/settings/);
      ok(await k(['create', '-f', '-'], CM.replace('settings', 'watched')), 'create');
      await waitOut(/ADDED\s+watched/);
      ok(await k(['delete', 'configmap', 'watched']), 'delete');
      await waitOut(/DELETED\s+watched/);
    } finally {
      child.kill();
    }
    assert.match(ok(await k(['delete', '-f', '-'], DEV), 'delete device'), /deleted/);
    assert.match(ok(await k(['delete', 'pod', 'web', 'web-ssa']), 'delete pods'), /deleted/);
    const left = await k(['get', 'pod', 'web']);
    assert.notEqual(left.code, 0);
    assert.match(left.stderr, /NotFound/);
  });
});

describe('kubectl 1.20 (version skew)', () => {
  test('get/apply/delete with Debian kubectl 1.20', async (t) => {
    const old = kubectlPath('1.20');
    if (!old) {
      t.skip(`kubectl 1.20 not installed at ${join('.tools/bin/kubectl-1.20')} ('npm run tools' unpacks Debian's kubernetes-client when apt is available)`);
      return;
    }
    const k20 = (args: string[], input?: string) => kubectl(old, s.handle.kubeconfigPath, args, { cacheDir: cache, ...(input !== undefined ? { input } : {}) });
    assert.match(ok(await k20(['get', 'namespaces']), 'get ns'), /kube-system/);
    assert.match(ok(await k20(['apply', '-f', '-'], CM.replace('settings', 'old-client')), 'apply'), /configmap\/old-client created/);
    assert.match(ok(await k20(['apply', '-f', '-'], CM.replace('settings', 'old-client').replace('fast', 'x')), 'apply 2'), /configured/);
    assert.match(ok(await k20(['get', 'cm', 'old-client', '-o', 'jsonpath={.data.mode}']), 'get'), /^x$/);
    assert.match(ok(await k20(['delete', 'cm', 'old-client']), 'delete'), /deleted/);
  });
});
