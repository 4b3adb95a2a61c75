/**
 * `ledge edge get` against a running EdgeCore (dist/edgecore.js) whose store already holds pods,
 * configmaps, a secret and its node, with no cloud reachable: what the node holds is shown
 * offline, as kubectl would show it (table, -o yaml, -o json, -A, wide), through MetaServer with
 * the admin token from the data directory; and the errors a user meets say what to do.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { MetaStore } from '../../edge/metamanager/index.js';
import { silentLogger } from '../../shared/log/index.js';
import { tempDir } from '../helpers/files.js';
import { eventually, repoRoot, startEdge, type Proc } from '../helpers/process.js';

const ledge = join(repoRoot, 'bin/ledge.mjs');
const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000).toISOString();

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [ledge, ...args], { timeout: 30_000, env: { ...process.env, LEDGE_DATA_DIR: '' } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const d = tempDir('ledge-edge-get-');
const dataDir = join(d.path, 'edge');
let edge: Proc;

before(async () => {
  // What a node was given before it lost the cloud.
  const store = await MetaStore.open(dataDir, silentLogger);
  const pods = [
    {
      metadata: { name: 'web', namespace: 'default', uid: 'u-web', resourceVersion: '10', creationTimestamp: hoursAgo(3) },
      spec: { nodeName: 'edge-get-1', containers: [{ name: 'nginx', image: 'nginx' }] },
      status: {
        phase: 'Running',
        podIP: '10.0.0.7',
        containerStatuses: [
          {
            name: 'nginx',
            ready: true,
            restartCount: 2,
            state: { running: { startedAt: hoursAgo(1) } },
            lastState: { terminated: { exitCode: 1, reason: 'Error', finishedAt: hoursAgo(1) } },
          },
        ],
      },
    },
    {
      metadata: { name: 'crashy', namespace: 'default', uid: 'u-crashy', resourceVersion: '11', creationTimestamp: hoursAgo(30) },
      spec: { nodeName: 'edge-get-1', containers: [{ name: 'app', image: 'busybox' }] },
      status: { phase: 'Running', containerStatuses: [{ name: 'app', ready: false, restartCount: 5, state: { waiting: { reason: 'CrashLoopBackOff' } } }] },
    },
    {
      metadata: { name: 'agent', namespace: 'kube-system', uid: 'u-agent', resourceVersion: '12', creationTimestamp: hoursAgo(72) },
      spec: {
        nodeName: 'edge-get-1',
        containers: [
          { name: 'a', image: 'x' },
          { name: 'b', image: 'y' },
        ],
      },
      status: { phase: 'Pending' },
    },
  ];
  for (const p of pods) await store.put(`${p.metadata.namespace}/pod/${p.metadata.name}`, { apiVersion: 'v1', kind: 'Pod', ...p }, p.metadata.resourceVersion);
  await store.put(
    'default/configmap/settings',
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'default', resourceVersion: '13', creationTimestamp: hoursAgo(5) }, data: { a: '1', b: '2' } },
    '13',
  );
  await store.put(
    'default/secret/token',
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'token', namespace: 'default', resourceVersion: '14', creationTimestamp: hoursAgo(5) },
      type: 'Opaque',
      data: { t: 'czNjcmV0' },
    },
    '14',
  );
  await store.put(
    'default/node/edge-get-1',
    {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'edge-get-1', resourceVersion: '15', creationTimestamp: hoursAgo(100), labels: { 'node-role.kubernetes.io/edge': '' } },
      status: { conditions: [{ type: 'Ready', status: 'True' }], nodeInfo: { kubeletVersion: 'v1.35.0-ledge' } },
    },
    '15',
  );
  await store.close();
  // No cloud: the node serves what it holds.
  edge = startEdge(['--cloud', 'ws://127.0.0.1:1', '--node-name', 'edge-get-1', '--data-dir', dataDir, '--metaserver-port', '0', '--log-level', 'info'], {}, 'edge-get');
  await edge.waitFor(/"msg":"metaserver listening"/);
});

after(async () => {
  await edge?.stop();
  d.cleanup();
});

const lines = (s: string) => s.trimEnd().split('\n');

describe('ledge edge get', () => {
  test('pods: a kubectl-like table of what the node runs (READY, STATUS, RESTARTS, AGE), offline', async () => {
    const r = await run(['edge', 'get', 'pods', '--data-dir', dataDir]);
    assert.equal(r.code, 0, r.stderr);
    const [head, ...rows] = lines(r.stdout);
    assert.match(head!, /^NAME +READY +STATUS +RESTARTS +AGE$/);
    assert.equal(rows.length, 2, r.stdout);
    assert.match(rows[0]!, /^crashy +0\/1 +CrashLoopBackOff +5 +30h$/);
    assert.match(rows[1]!, /^web +1\/1 +Running +2 \(6\dm ago\) +3h(0m)?$/);
    // Columns line up (kubectl's tabwriter layout).
    assert.equal(head!.indexOf('STATUS'), rows[0]!.indexOf('CrashLoopBackOff'));

    const wide = await run(['edge', 'get', 'po', '-o', 'wide', '--data-dir', dataDir]);
    assert.match(lines(wide.stdout)[0]!, /IP +NODE$/);
    assert.match(wide.stdout, /web .* 10\.0\.0\.7 +edge-get-1\n/);

    const all = await run(['edge', 'get', 'pods', '-A', '--data-dir', dataDir]);
    assert.match(lines(all.stdout)[0]!, /^NAMESPACE +NAME +READY/);
    assert.match(all.stdout, /kube-system +agent +0\/2 +Pending +0 +3d/);
  });

  test('-o yaml and -o json: the objects as MetaServer serves them', async () => {
    const r = await run(['edge', 'get', 'pods', '-o', 'yaml', '--data-dir', dataDir]);
    assert.equal(r.code, 0, r.stderr);
    const list = parseYaml(r.stdout) as { kind: string; items: { kind: string; metadata: { name: string; resourceVersion: string } }[] };
    assert.equal(list.kind, 'List');
    assert.deepEqual(
      list.items.map((p) => `${p.kind}/${p.metadata.name}`),
      ['Pod/crashy', 'Pod/web'],
    );
    assert.ok(list.items.every((p) => /^\d+$/.test(p.metadata.resourceVersion)));
    const one = await run(['edge', 'get', 'pod', 'web', '-o', 'json', '--data-dir', dataDir]);
    const pod = JSON.parse(one.stdout) as { kind: string; status: { podIP: string } };
    assert.deepEqual([pod.kind, pod.status.podIP], ['Pod', '10.0.0.7']);
    const cm = parseYaml((await run(['edge', 'get', 'cm', 'settings', '-o', 'yaml', '--data-dir', dataDir])).stdout) as { data: unknown };
    assert.deepEqual(cm.data, { a: '1', b: '2' });
  });

  test('configmaps, secrets and nodes tables; an empty namespace', async () => {
    const cms = await run(['edge', 'get', 'configmaps', '--data-dir', dataDir]);
    assert.match(cms.stdout, /^NAME +DATA +AGE\nsettings +2 +5h(0m)?\n$/);
    const secrets = await run(['edge', 'get', 'secrets', '--data-dir', dataDir]);
    assert.match(secrets.stdout, /^NAME +TYPE +DATA +AGE\ntoken +Opaque +1 +5h(0m)?\n$/);
    const nodes = await run(['edge', 'get', 'nodes', '--data-dir', dataDir]);
    assert.match(nodes.stdout, /^NAME +STATUS +ROLES +AGE +VERSION\nedge-get-1 +Ready +edge +4d4h +v1\.35\.0-ledge\n$/);
    const empty = await run(['edge', 'get', 'pods', '-n', 'nothing-here', '--data-dir', dataDir]);
    assert.equal(empty.code, 0);
    assert.equal(empty.stdout, '');
    assert.equal(empty.stderr, 'No resources found in nothing-here namespace.\n');
  });

  test('errors say what to do: unknown object, unknown resource, wrong data directory, MetaServer not running', async () => {
    const missing = await run(['edge', 'get', 'pod', 'nope', '--data-dir', dataDir]);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'Error from server (NotFound): pods "nope" not found\n');
    const unknown = await run(['edge', 'get', 'deployments', '--data-dir', dataDir]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /doesn't have a resource type "deployments"/);
    const wrongDir = await run(['edge', 'get', 'pods', '--data-dir', join(d.path, 'elsewhere')]);
    assert.equal(wrongDir.code, 1);
    assert.match(wrongDir.stderr, /no MetaServer admin token at .*elsewhere\/metaserver\/admin\.token: is .* the data directory EdgeCore runs with/);
    const url = readFileSync(join(dataDir, 'metaserver', 'server.url'), 'utf8').trim();
    const port = new URL(url).port;
    await edge.stop();
    await eventually(async () => (await fetch(`${url}/healthz`).catch(() => undefined)) === undefined, 10_000, 'MetaServer gone');
    const down = await run(['edge', 'get', 'pods', '--data-dir', dataDir, '--server', `http://127.0.0.1:${port}`]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, new RegExp(`MetaServer not reachable at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\): is EdgeCore running`));
  });
});
