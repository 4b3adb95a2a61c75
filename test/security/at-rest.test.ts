/**
 * At rest on the edge (issue 13): what a real EdgeCore (in this process, edge/main.ts
 * startEdgeCore) writes to its data directory while it holds a Secret and runs pods that use it,
 * connected over mTLS to a real CloudHub on loopback (port 0, certificates made in the test):
 * every file that holds secret data is 0600 and every directory on the way to it 0700 (volume
 * directories excepted: they are 0755 as the kubelet's, their secret files 0600); every store file
 * (meta.log, outbox.log, the twin store, the lock, pki/, MetaServer's credentials) is 0600;
 * nothing secret reaches EdgeCore's log at debug level, nor the status it sends the cloud when a
 * subPathExpr expanded from a Secret is refused. Also: a new or too open data directory ends up
 * 0700, and a pod whose uid would leave edged/pods gets no directory there (both need the wiring
 * in edge/edged/edged.ts and edge/main.ts).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { startEdgeCore, type EdgeCore } from '../../edge/main.js';
import { edgeConfigSpec } from '../../edge/config.js';
import { ensurePrivateDir, writeFileAtomic } from '../../edge/join/files.js';
import { loadConfig } from '../../shared/config/index.js';
import { StorageError } from '../../shared/errors/index.js';
import { AppendLog } from '../../shared/wal/index.js';
import { makePrivateDir } from '../../shared/lock/index.js';
import { newMessage, type Message } from '../../shared/protocol/index.js';
import { captureLog, startTestCloud, type LogCapture, type TestCloud } from '../helpers/cloud.js';
import { tempDir } from '../helpers/files.js';
import { createTestPki } from '../helpers/pki.js';
import { eventually } from '../helpers/process.js';

const NODE = 'rest-node';
/** The Secret's values: a password (env, args, volume) and an absolute path (a subPathExpr that must be refused). */
const PASSWORD = 'Hunter2-at-rest-7f3a9c';
const SECRET_PATH = '/hunter2-path-secret-91d2';
const SECRETS = [PASSWORD, SECRET_PATH].flatMap((s) => [s, Buffer.from(s).toString('base64')]);
const WAIT_MS = 20_000;

const base = tempDir('ledge-at-rest-');
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  killPodProcesses(base.path);
  base.cleanup();
});

/** SIGKILLs every process a process-runtime container record under `dir` names (the runtime leaves them running when EdgeCore stops). */
function killPodProcesses(dir: string): void {
  for (const f of walk(dir)) {
    if (f.kind !== 'f' || !/\/containers\/[^/]+\.json$/.test(f.path)) continue;
    try {
      const pid = (JSON.parse(readFileSync(f.path, 'utf8')) as { pid?: number }).pid;
      if (pid) process.kill(pid, 'SIGKILL');
    } catch {
      // gone, or not a record
    }
  }
}

interface Entry {
  path: string;
  kind: 'f' | 'd' | 'l' | 's';
  mode: number;
}

function walk(dir: string, out: Entry[] = []): Entry[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    const p = join(dir, n);
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(p);
    } catch {
      continue;
    }
    const kind = st.isSymbolicLink() ? 'l' : st.isDirectory() ? 'd' : st.isFile() ? 'f' : 's';
    out.push({ path: p, kind, mode: st.mode & 0o7777 });
    if (kind === 'd') walk(p, out);
  }
  return out;
}

const octal = (m: number) => m.toString(8).padStart(4, '0');
/** A path inside one volume's own directory (`…/volumes/kubernetes.io~<plugin>/<name>/…`): its modes are the pod spec's. */
const inVolume = (p: string) => /\/volumes\/kubernetes\.io~[^/]+\/[^/]+(\/|$)/.test(p);

/** Flags for an EdgeCore on loopback, logging at debug. */
function edgeArgs(cloudUrl: string, dataDir: string, extra: string[] = []): string[] {
  return [
    '--cloud',
    cloudUrl,
    '--node-name',
    NODE,
    '--data-dir',
    dataDir,
    '--log-level',
    'debug',
    '--metaserver-port',
    '0',
    '--mqtt-port',
    '0',
    '--dmi-socket',
    'dmi.sock',
    '--runtime',
    'process',
    '--container-runtime-endpoint',
    join(base.path, 'no-docker.sock'),
    ...extra,
  ];
}

async function startEdge(args: string[]): Promise<{ core: EdgeCore; log: LogCapture }> {
  const { config } = await loadConfig(edgeConfigSpec, { argv: args, env: {} });
  const log = captureLog();
  const core = startEdgeCore(config, log.logger);
  cleanups.push(() => core.stop());
  return { core, log };
}

function send(cloud: TestCloud, operation: 'insert' | 'delete', resource: string, content: unknown, rv: string): void {
  cloud.hub.sendToNode(NODE, newMessage({ source: 'edgecontroller', group: 'resource', operation, resource, content, sync: true, resourceVersion: rv }));
}

function pod(name: string, uid: string, spec: V1Pod['spec']): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', uid, resourceVersion: '1' },
    spec: { nodeName: NODE, terminationGracePeriodSeconds: 0, ...spec } as V1Pod['spec'],
  };
}

/** What the edge sent up (not CloudHub's own ACK reports to the controllers, which carry the downstream messages). */
function fromEdge(cloud: TestCloud): Message[] {
  return cloud.received.filter((m) => m.route.source !== 'cloudhub');
}

/** The last pod status the cloud received for `name`. */
function lastStatus(cloud: TestCloud, name: string): V1PodStatus | undefined {
  const m = [...fromEdge(cloud)].reverse().find((x) => x.route.resource === `node/${NODE}/default/podstatus/${name}`);
  return m?.content as V1PodStatus | undefined;
}

describe('EdgeCore on disk, holding a Secret and running pods that use it', () => {
  let cloud: TestCloud;
  let dataDir: string;
  let log: LogCapture;

  before(async () => {
    const pki = await createTestPki();
    cloud = await startTestCloud({ tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca } });
    cleanups.push(() => cloud.stop());
    // The data directory as `edgecore join` leaves it: 0700, pki/ 0700, files 0600 (edge/join/files.ts).
    dataDir = join(base.path, 'node');
    mkdirSync(dataDir, { mode: 0o700 });
    const pkiDir = join(dataDir, 'pki');
    ensurePrivateDir(pkiDir);
    const node = await pki.node(NODE);
    writeFileAtomic(join(pkiDir, 'node.crt'), node.cert);
    writeFileAtomic(join(pkiDir, 'node.key'), node.key);
    writeFileAtomic(join(pkiDir, 'ca.crt'), pki.ca);
    const edge = await startEdge(
      edgeArgs(cloud.hub.url, dataDir, ['--cert-file', join(pkiDir, 'node.crt'), '--key-file', join(pkiDir, 'node.key'), '--ca-file', join(pkiDir, 'ca.crt')]),
    );
    log = edge.log;
    await eventually(() => cloud.hub.connectedNodes().includes(NODE), WAIT_MS, 'EdgeCore to connect over mTLS');

    const b64 = (s: string) => Buffer.from(s).toString('base64');
    send(
      cloud,
      'insert',
      'default/secret/creds',
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'creds', namespace: 'default', uid: 's-1', resourceVersion: '5' },
        data: { password: b64(PASSWORD), path: b64(SECRET_PATH) },
      },
      '5',
    );
    send(
      cloud,
      'insert',
      'default/configmap/settings',
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'default', uid: 'c-1', resourceVersion: '6' }, data: { 'app.conf': 'level=info' } },
      '6',
    );
    const pw = { name: 'PW', valueFrom: { secretKeyRef: { name: 'creds', key: 'password' } } };
    send(
      cloud,
      'insert',
      'default/pod/app',
      pod('app', 'uid-app-1', {
        containers: [
          {
            name: 'main',
            image: 'none',
            // The password reaches the process as env and as an argument ($0 of sh), as pod specs do.
            command: ['/bin/sh', '-c', 'echo started; exec sleep 1000', '$(PW)'],
            env: [pw],
            volumeMounts: [
              { name: 'creds', mountPath: '/etc/creds' },
              { name: 'settings', mountPath: '/etc/settings' },
            ],
          },
        ],
        volumes: [
          { name: 'creds', secret: { secretName: 'creds' } },
          { name: 'settings', configMap: { name: 'settings' } },
        ],
      }),
      '7',
    );
    // A subPathExpr expanded from the Secret to an absolute path: refused, and the refusal must not say the value.
    send(
      cloud,
      'insert',
      'default/pod/leaky',
      pod('leaky', 'uid-leaky-1', {
        containers: [
          {
            name: 'main',
            image: 'none',
            command: ['/bin/sh', '-c', 'exec sleep 1000'],
            env: [{ name: 'P', valueFrom: { secretKeyRef: { name: 'creds', key: 'path' } } }],
            volumeMounts: [{ name: 'scratch', mountPath: '/scratch', subPathExpr: '$(P)' }],
          },
        ],
        volumes: [{ name: 'scratch', emptyDir: {} }],
      }),
      '8',
    );
    const volumeFile = join(dataDir, 'edged', 'pods', 'uid-app-1', 'volumes', 'kubernetes.io~secret', 'creds', 'password');
    await eventually(() => existsSync(volumeFile), WAIT_MS, 'the secret volume to be written');
    await eventually(() => lastStatus(cloud, 'app')?.containerStatuses?.[0]?.state?.running, WAIT_MS, 'pod app to run');
    await eventually(() => /subPathExpr/.test(lastStatus(cloud, 'leaky')?.containerStatuses?.[0]?.state?.waiting?.message ?? ''), WAIT_MS, 'pod leaky to be refused its mount');
  });

  after(async () => {
    // Stop the pods before EdgeCore (its process runtime leaves processes running when it stops).
    send(cloud, 'delete', 'default/pod/app', { metadata: { name: 'app', namespace: 'default', uid: 'uid-app-1' } }, '9');
    send(cloud, 'delete', 'default/pod/leaky', { metadata: { name: 'leaky', namespace: 'default', uid: 'uid-leaky-1' } }, '10');
    await eventually(() => !existsSync(join(dataDir, 'edged', 'pods', 'uid-app-1')), WAIT_MS, 'pod app to be removed').catch(() => {});
  });

  test('every file holding secret data is 0600, in directories that are 0700 up to the data directory', () => {
    const holders: string[] = [];
    for (const e of walk(dataDir)) {
      if (e.kind !== 'f') continue;
      const text = readFileSync(e.path).toString('latin1');
      if (!SECRETS.some((s) => text.includes(s))) continue;
      holders.push(relative(dataDir, e.path));
      assert.equal(octal(e.mode), '0600', `${relative(dataDir, e.path)} holds secret data`);
      for (let d = join(e.path, '..'); d.length >= dataDir.length; d = join(d, '..')) {
        if (inVolume(d)) continue;
        assert.equal(octal(statSync(d).mode & 0o7777), '0700', `${relative(dataDir, d) || 'the data directory'} is on the way to ${relative(dataDir, e.path)}`);
      }
    }
    // The stores and the volume are where the Secret is: the scan saw them.
    for (const f of ['meta.log', join('edged', 'pods', 'uid-app-1', 'volumes', 'kubernetes.io~secret', 'creds')]) {
      assert.ok(
        holders.some((h) => h.startsWith(f)),
        `${f} holds the Secret (found in: ${holders.join(', ')})`,
      );
    }
  });

  test('the store files, the lock, pki/ and MetaServer credentials are 0600; directories 0700 but volumes; files 0600 but configMap volumes', () => {
    const entries = walk(dataDir);
    const rel = (e: Entry) => relative(dataDir, e.path);
    const has = (re: RegExp) => entries.filter((e) => e.kind === 'f' && re.test(rel(e)));
    for (const re of [/^meta\.log$/, /^outbox\.log$/, /^devicetwin\/meta\.log$/, /^LOCK\.\d+$/, /^pki\/node\.key$/, /^metaserver\/admin\.token$/]) {
      const found = has(re);
      assert.ok(found.length > 0, `a file ${re} exists`);
      for (const e of found) assert.equal(octal(e.mode), '0600', rel(e));
    }
    const wrong: string[] = [];
    for (const e of entries) {
      if (e.kind === 'd' && !inVolume(e.path) && e.mode !== 0o700) wrong.push(`directory ${rel(e)} ${octal(e.mode)}`);
      if (e.kind === 'f' && !/kubernetes\.io~(configmap|downward-api)\//.test(e.path) && e.mode !== 0o600) wrong.push(`file ${rel(e)} ${octal(e.mode)}`);
    }
    assert.deepEqual(wrong, []);
    // The secret volume's own file: 0600 (Edged's default without defaultMode), its directory 0755 as the kubelet's.
    const vol = join(dataDir, 'edged', 'pods', 'uid-app-1', 'volumes', 'kubernetes.io~secret', 'creds');
    assert.equal(octal(statSync(join(vol, 'password')).mode & 0o7777), '0600');
    assert.equal(octal(statSync(join(vol, '..', '..')).mode & 0o7777), '0700', 'volumes/ is private');
  });

  test('nothing secret in the debug log, nor in the status sent for the refused subPathExpr', () => {
    assert.ok(log.lines.length > 10, 'EdgeCore logged');
    const leaks = log.lines.map((l) => JSON.stringify(l)).filter((l) => SECRETS.some((s) => l.includes(s)));
    assert.deepEqual(leaks, []);
    const status = JSON.stringify(lastStatus(cloud, 'leaky'));
    assert.match(status, /subPathExpr \\"\$\(P\)\\" of volume mount scratch/);
    assert.ok(!SECRETS.some((s) => status.includes(s)), `the status says no secret: ${status}`);
    const upstream = fromEdge(cloud)
      .map((m) => JSON.stringify(m.content))
      .filter((c) => SECRETS.some((s) => c.includes(s)));
    assert.deepEqual(upstream, [], 'nothing EdgeCore sent upstream carries the secret');
  });
});

describe('the append log (meta.log, outbox.log, the twin store, the control plane WAL)', () => {
  test('a log left 0644 by an older version is narrowed at open; compaction writes 0600 over a stale 0644 temp file', async () => {
    const d = join(base.path, 'wal');
    mkdirSync(d, { mode: 0o700 });
    const file = join(d, 'meta.log');
    writeFileSync(file, '', { mode: 0o644 });
    chmodSync(file, 0o644);
    writeFileSync(`${file}.tmp`, 'left by a crash', { mode: 0o644 });
    chmodSync(`${file}.tmp`, 0o644);
    const { log } = await AppendLog.open(file);
    try {
      assert.equal(octal(statSync(file).mode & 0o7777), '0600', 'narrowed at open');
      await log.append(Buffer.from('record'));
      await log.rewrite([Buffer.from('snapshot')]);
      assert.equal(octal(statSync(file).mode & 0o7777), '0600', 'the compacted log');
    } finally {
      await log.close();
    }
    const fresh = join(d, 'new', 'sub', 'outbox.log');
    const { log: l2 } = await AppendLog.open(fresh);
    await l2.close();
    assert.equal(octal(statSync(fresh).mode & 0o7777), '0600');
    assert.equal(octal(statSync(join(d, 'new')).mode & 0o7777), '0700', 'the directories it creates');
  });
});

describe('makePrivateDir', () => {
  const mode = (p: string) => octal(statSync(p).mode & 0o7777);

  test('a new directory and its missing parents are made 0700', () => {
    const d = join(base.path, 'mk', 'a', 'b');
    const log = captureLog();
    assert.deepEqual(makePrivateDir(d, log.logger), { created: true });
    assert.equal(mode(d), '0700');
    assert.equal(mode(join(base.path, 'mk', 'a')), '0700');
    assert.equal(log.lines.length, 0);
  });

  test('an existing directory open to group or others is narrowed to 0700, once, with a warning; a private one is left alone', () => {
    const d = join(base.path, 'wide');
    mkdirSync(d);
    chmodSync(d, 0o750);
    const log = captureLog();
    assert.deepEqual(makePrivateDir(d, log.logger), { created: false, narrowedFrom: 0o750 });
    assert.equal(mode(d), '0700');
    assert.ok(log.has(/had mode 750; narrowed to 700/), JSON.stringify(log.lines));
    assert.deepEqual(makePrivateDir(d, log.logger), { created: false });
    assert.equal(log.lines.length, 1, 'no second warning');
  });

  test('a directory shared by every user (sticky, world-writable: /tmp) and a file are refused', () => {
    const shared = join(base.path, 'shared-tmp');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    assert.throws(
      () => makePrivateDir(shared),
      (err: unknown) => err instanceof StorageError && /shared by every user \(mode 1777, like \/tmp\).*a directory of its own/.test(err.message),
    );
    assert.equal(mode(shared), '1777', 'left as it was');
    const file = join(base.path, 'a-file');
    writeFileSync(file, '');
    assert.throws(() => makePrivateDir(file), StorageError);
  });
});

describe('the data directory itself', () => {
  test('a new data directory is made 0700', async () => {
    const cloud = await startTestCloud();
    cleanups.push(() => cloud.stop());
    const dir = join(base.path, 'fresh', 'node');
    await startEdge(edgeArgs(cloud.hub.url, dir));
    await eventually(() => existsSync(join(dir, 'meta.log')), WAIT_MS, 'the store to be created');
    assert.equal(octal(statSync(dir).mode & 0o7777), '0700');
  });

  test('an existing data directory open to others is narrowed to 0700', async () => {
    const cloud = await startTestCloud();
    cleanups.push(() => cloud.stop());
    const dir = join(base.path, 'open');
    mkdirSync(dir, { mode: 0o755 });
    await startEdge(edgeArgs(cloud.hub.url, dir));
    await eventually(() => existsSync(join(dir, 'meta.log')), WAIT_MS, 'the store to be created');
    assert.equal(octal(statSync(dir).mode & 0o7777), '0700');
  });
});

describe('a pod whose names would leave edged/', () => {
  test('a uid with ../ gets no directory outside edged/pods, and a Failed status naming the uid', async () => {
    const cloud = await startTestCloud();
    cleanups.push(() => cloud.stop());
    const dir = join(base.path, 'hostile');
    mkdirSync(dir, { mode: 0o700 });
    await startEdge(edgeArgs(cloud.hub.url, dir));
    await eventually(() => cloud.hub.connectedNodes().includes(NODE), WAIT_MS, 'EdgeCore to connect');
    // edged/pods/../../../escaped-pod is <base>/escaped-pod: outside the data directory.
    const uid = `..${sep}..${sep}..${sep}escaped-pod`;
    send(cloud, 'insert', 'default/pod/evil', pod('evil', uid, { containers: [{ name: 'main', image: 'none', command: ['/bin/sh', '-c', 'exec sleep 1000'] }] }), '3');
    const status = await eventually(
      () => {
        const s = lastStatus(cloud, 'evil');
        return s?.phase === 'Failed' || existsSync(join(base.path, 'escaped-pod')) ? (s ?? {}) : undefined;
      },
      WAIT_MS,
      'Edged to answer the hostile pod',
    );
    assert.ok(!existsSync(join(base.path, 'escaped-pod')), 'a directory was made outside the data directory');
    assert.equal(status.phase, 'Failed');
    assert.match(status.message ?? '', /uid/);
  });
});
