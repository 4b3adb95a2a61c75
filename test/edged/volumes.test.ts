/**
 * Pod volumes (edge/edged/volumes.ts) on real directories: the atomic writer's layout for
 * configMap/secret/downwardAPI/projected (`..data` swapped by rename, per-name links, updates in
 * place, removed keys gone, readers never see a mix), items/modes/optional, secrets binary and
 * 0600, the size bound, path confinement of items, emptyDir, hostPath type checks, unsupported
 * kinds, failures returned (not thrown), mounts with subPath, the process runtime's env
 * convention, and removal that never follows a symlink out.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Pod, V1Volume } from '@kubernetes/client-node';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile, readlink, realpath } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, relative } from 'node:path';
import type { ConfigLookup, KeyValueObject } from '../../edge/edged/env.js';
import { EnvResolveError } from '../../edge/edged/env.js';
import { materializeVolumes, mountsFor, processVolumeEnv, removeVolumes, type VolumeOptions, volumeEnvName } from '../../edge/edged/volumes.js';
import { PodSpecError } from '../../shared/errors/index.js';
import { createLogger } from '../../shared/log/index.js';
import { tempDir } from '../helpers/files.js';

const dirs: { cleanup: () => void }[] = [];
after(() => {
  for (const d of dirs) d.cleanup();
});
function dir(): string {
  const d = tempDir('ledge-volumes-');
  dirs.push(d);
  return d.path;
}
const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64');
const mode = (p: string) => statSync(p).mode & 0o777;

class Store implements ConfigLookup {
  cms = new Map<string, KeyValueObject>();
  secrets = new Map<string, KeyValueObject>();
  configMap(ns: string, name: string) {
    return this.cms.get(`${ns}/${name}`);
  }
  secret(ns: string, name: string) {
    return this.secrets.get(`${ns}/${name}`);
  }
}

function pod(volumes: V1Volume[], labels: Record<string, string> = { app: 'web' }): V1Pod {
  return {
    metadata: { name: 'p1', namespace: 'ns', uid: 'u1', labels, annotations: { a: '1' } },
    spec: { nodeName: 'edge-1', volumes, containers: [{ name: 'main', resources: { limits: { memory: '64Mi' } } }] },
  };
}

function opts(podDir: string, lookup: ConfigLookup, extra: Partial<VolumeOptions> = {}): VolumeOptions {
  return { podDir, lookup, fields: { podIP: '10.0.0.1', hostIP: '10.0.0.1', allocatable: { cpu: '2', memory: '1Gi' } }, ...extra };
}

/** The visible (non-`..`) names of a volume directory. */
function visible(d: string): string[] {
  return readdirSync(d)
    .filter((n) => !n.startsWith('..'))
    .sort();
}
function tsDirs(d: string): string[] {
  return readdirSync(d).filter((n) => /^\.\.\d{4}_/.test(n));
}

describe('configMap and secret volumes: the atomic writer', () => {
  test("every key as a file through ..data, kubelet's layout, 0644, binaryData decoded, read-only", async () => {
    const podDir = dir();
    const store = new Store();
    store.cms.set('ns/cfg', { data: { 'app.yaml': 'a: 1\n', other: 'x' }, binaryData: { 'blob.bin': b64(Buffer.from([0, 255, 1])) } });
    const r = await materializeVolumes(pod([{ name: 'config', configMap: { name: 'cfg' } }]), opts(podDir, store));
    assert.deepEqual(r.failures, []);
    const v = r.volumes.config!;
    assert.equal(v.hostPath, join(podDir, 'volumes', 'kubernetes.io~configmap', 'config'));
    assert.equal(v.readOnly, true);
    assert.equal(v.kind, 'configMap');
    assert.deepEqual(visible(v.hostPath), ['app.yaml', 'blob.bin', 'other']);
    const data = readlinkSync(join(v.hostPath, '..data'));
    assert.match(data, /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\..+$/);
    assert.equal(readlinkSync(join(v.hostPath, 'app.yaml')), '..data/app.yaml');
    assert.equal(readFileSync(join(v.hostPath, 'app.yaml'), 'utf8'), 'a: 1\n');
    assert.deepEqual(readFileSync(join(v.hostPath, 'blob.bin')), Buffer.from([0, 255, 1]));
    assert.equal(mode(join(v.hostPath, 'app.yaml')), 0o644);
    assert.equal(mode(join(v.hostPath, data)), 0o755);
  });

  test('items pick keys, nest paths (one link per top-level name), set modes; defaultMode; a missing item key fails unless optional', async () => {
    const podDir = dir();
    const store = new Store();
    store.cms.set('ns/cfg', { data: { a: 'A', b: 'B', c: 'C' } });
    const r = await materializeVolumes(
      pod([
        {
          name: 'items',
          configMap: {
            name: 'cfg',
            defaultMode: 0o640,
            items: [
              { key: 'a', path: 'conf/a.txt' },
              { key: 'b', path: 'b.txt', mode: 0o600 },
            ],
          },
        },
        { name: 'missing', configMap: { name: 'cfg', items: [{ key: 'zz', path: 'zz' }] } },
        {
          name: 'missingok',
          configMap: {
            name: 'cfg',
            optional: true,
            items: [
              { key: 'zz', path: 'zz' },
              { key: 'c', path: 'c' },
            ],
          },
        },
      ]),
      opts(podDir, store),
    );
    const d = r.volumes.items!.hostPath;
    assert.deepEqual(visible(d), ['b.txt', 'conf']);
    assert.equal(readlinkSync(join(d, 'conf')), '..data/conf');
    assert.equal(readFileSync(join(d, 'conf', 'a.txt'), 'utf8'), 'A');
    assert.equal(mode(join(d, 'conf', 'a.txt')), 0o640);
    assert.equal(mode(join(d, 'b.txt')), 0o600);
    assert.deepEqual(r.failures, [{ volume: 'missing', reason: 'NotFound', message: 'configmap references non-existent config key: zz' }]);
    assert.equal(r.volumes.missing, undefined);
    assert.deepEqual(visible(r.volumes.missingok!.hostPath), ['c']);
  });

  test('secret values are base64-decoded bytes (binary safe), files 0600 unless defaultMode/mode says otherwise', async () => {
    const podDir = dir();
    const store = new Store();
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    store.secrets.set('ns/tls', { data: { 'tls.key': b64(all), 'tls.crt': b64('CERT') }, stringData: { note: 'plain' } });
    const r = await materializeVolumes(
      pod([
        { name: 'tls', secret: { secretName: 'tls' } },
        {
          name: 'tls644',
          secret: {
            secretName: 'tls',
            defaultMode: 0o644,
            items: [
              { key: 'tls.crt', path: 'crt' },
              { key: 'tls.key', path: 'key', mode: 0o400 },
            ],
          },
        },
      ]),
      opts(podDir, store),
    );
    assert.deepEqual(r.failures, []);
    const d = r.volumes.tls!.hostPath;
    assert.equal(d, join(podDir, 'volumes', 'kubernetes.io~secret', 'tls'));
    assert.deepEqual(readFileSync(join(d, 'tls.key')), all);
    assert.equal(readFileSync(join(d, 'note'), 'utf8'), 'plain');
    assert.equal(mode(join(d, 'tls.key')), 0o600);
    assert.equal(mode(join(d, 'tls.crt')), 0o600);
    const e = r.volumes.tls644!.hostPath;
    assert.equal(mode(join(e, 'crt')), 0o644);
    assert.equal(mode(join(e, 'key')), 0o400);
  });

  test('an update is written in place: new values, removed keys gone, the old data directory deleted; the same data touches nothing', async () => {
    const podDir = dir();
    const store = new Store();
    store.cms.set('ns/cfg', { data: { keep: '1', drop: 'x', 'nested/n': 'n' } });
    const p = pod([{ name: 'config', configMap: { name: 'cfg' } }]);
    const r1 = await materializeVolumes(p, opts(podDir, store));
    const d = r1.volumes.config!.hostPath;
    const ts1 = readlinkSync(join(d, '..data'));
    const again = await materializeVolumes(p, opts(podDir, store));
    assert.equal(readlinkSync(join(d, '..data')), ts1, 'unchanged data: no new directory');
    assert.deepEqual(again.failures, []);
    store.cms.set('ns/cfg', { data: { keep: '2', added: 'a' } });
    await materializeVolumes(p, opts(podDir, store));
    const ts2 = readlinkSync(join(d, '..data'));
    assert.notEqual(ts2, ts1);
    assert.deepEqual(visible(d), ['added', 'keep']);
    assert.equal(readFileSync(join(d, 'keep'), 'utf8'), '2');
    assert.deepEqual(tsDirs(d), [ts2], 'only the current data directory is left');
    assert.ok(!existsSync(join(d, '..data_tmp')));
    // A mode change alone is an update too.
    const p2 = pod([{ name: 'config', configMap: { name: 'cfg', defaultMode: 0o600 } }]);
    await materializeVolumes(p2, opts(podDir, store));
    assert.notEqual(readlinkSync(join(d, '..data')), ts2);
    assert.equal(mode(join(d, 'keep')), 0o600);
    // A visible link someone deleted is put back.
    const ts3 = readlinkSync(join(d, '..data'));
    unlinkSync(join(d, 'keep'));
    await materializeVolumes(p2, opts(podDir, store));
    assert.equal(readFileSync(join(d, 'keep'), 'utf8'), '2');
    assert.notEqual(readlinkSync(join(d, '..data')), ts3);
  });

  test('readers see one version or the other, never a mix, and ..data never disappears during updates', async () => {
    const podDir = dir();
    const store = new Store();
    const p = pod([{ name: 'config', configMap: { name: 'cfg' } }]);
    const set = (n: number) => store.cms.set('ns/cfg', { data: { a: `v${n}`, b: `v${n}`, c: `v${n}` } });
    set(0);
    const d = (await materializeVolumes(p, opts(podDir, store))).volumes.config!.hostPath;
    let stop = false;
    let consistent = 0;
    const reader = (async () => {
      while (!stop) {
        // One resolution of ..data, then every file through it.
        const link = await readlink(join(d, '..data'));
        assert.ok(link.startsWith('..'), '..data is always there');
        try {
          const base = await realpath(join(d, '..data'));
          const values = await Promise.all(['a', 'b', 'c'].map((k) => readFile(join(base, k), 'utf8')));
          assert.equal(new Set(values).size, 1, `a mixed read: ${values.join(',')}`);
          consistent++;
        } catch (err) {
          // The version just read was replaced and deleted meanwhile: the next read sees the new one.
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    for (let n = 1; n <= 30; n++) {
      set(n);
      const r = await materializeVolumes(p, opts(podDir, store));
      assert.deepEqual(r.failures, []);
      await new Promise((r) => setImmediate(r));
    }
    stop = true;
    await reader;
    assert.ok(consistent > 0, 'the reader read something');
    assert.equal(readFileSync(join(d, 'a'), 'utf8'), 'v30');
  });

  test("a missing configmap/secret is a failure with the kubelet's message (not thrown), other volumes are still made; optional ones are empty", async () => {
    const podDir = dir();
    const logLines: string[] = [];
    const log = createLogger({ level: 'debug', format: 'json', write: (l) => void logLines.push(l) });
    const p = pod([
      { name: 'cm', configMap: { name: 'absent' } },
      { name: 'sec', secret: { secretName: 'absent' } },
      { name: 'opt', configMap: { name: 'absent', optional: true } },
      { name: 'scratch', emptyDir: {} },
    ]);
    const r = await materializeVolumes(p, opts(podDir, new Store(), { log }));
    assert.deepEqual(r.failures, [
      { volume: 'cm', reason: 'NotFound', message: 'configmap "absent" not found' },
      { volume: 'sec', reason: 'NotFound', message: 'secret "absent" not found' },
    ]);
    assert.deepEqual(r.errors, ['volume "cm": configmap "absent" not found', 'volume "sec": secret "absent" not found']);
    assert.deepEqual(Object.keys(r.volumes).sort(), ['opt', 'scratch']);
    assert.deepEqual(visible(r.volumes.opt!.hostPath), []);
    assert.ok(existsSync(join(r.volumes.opt!.hostPath, '..data')));
    const warned = () => logLines.filter((l) => l.includes('"warn"') && l.includes('not found')).length;
    assert.equal(warned(), 2, 'one line per failure');
    await materializeVolumes(p, opts(podDir, new Store(), { log }));
    assert.equal(warned(), 2, 'a retry that fails the same way logs nothing new');
    // The object arrives: the retry succeeds.
    const store = new Store();
    store.cms.set('ns/absent', { data: { k: 'v' } });
    store.secrets.set('ns/absent', { data: { k: b64('v') } });
    const r2 = await materializeVolumes(p, opts(podDir, store, { log }));
    assert.deepEqual(r2.failures, []);
    assert.equal(readFileSync(join(r2.volumes.cm!.hostPath, 'k'), 'utf8'), 'v');
  });

  test('a volume over maxVolumeBytes is refused (TooLarge) and nothing is written', async () => {
    const podDir = dir();
    const store = new Store();
    store.cms.set('ns/big', { data: { a: 'x'.repeat(600), b: 'y'.repeat(600) } });
    const r = await materializeVolumes(pod([{ name: 'big', configMap: { name: 'big' } }]), opts(podDir, store, { maxVolumeBytes: 1000 }));
    assert.equal(r.failures[0]?.reason, 'TooLarge');
    assert.match(r.failures[0]?.message ?? '', /1200 bytes, more than the 1000/);
    assert.ok(!existsSync(join(podDir, 'volumes', 'kubernetes.io~configmap', 'big')));
    const ok = await materializeVolumes(pod([{ name: 'big', configMap: { name: 'big' } }]), opts(podDir, store, { maxVolumeBytes: 1200 }));
    assert.deepEqual(ok.failures, []);
  });

  test('item paths from the cloud are confined: .., absolute, the writer-reserved ..names and file/dir conflicts are Invalid', async () => {
    const podDir = dir();
    const store = new Store();
    store.cms.set('ns/cfg', { data: { k: 'v', j: 'w' } });
    const bad = ['../escape', '/etc/passwd', '..data/k', '..x', 'a//b', 'a/./b'];
    const r = await materializeVolumes(
      pod([
        ...bad.map((path, i) => ({ name: `bad${i}`, configMap: { name: 'cfg', items: [{ key: 'k', path }] } })),
        {
          name: 'conflict',
          configMap: {
            name: 'cfg',
            items: [
              { key: 'k', path: 'a' },
              { key: 'j', path: 'a/b' },
            ],
          },
        },
        { name: 'badmode', configMap: { name: 'cfg', defaultMode: 0o1777 } },
      ]),
      opts(podDir, store),
    );
    assert.deepEqual(
      r.failures.map((f) => [f.volume, f.reason]),
      [...bad.map((_, i) => [`bad${i}`, 'Invalid']), ['conflict', 'Invalid'], ['badmode', 'Invalid']],
    );
    assert.match(r.failures[0]?.message ?? '', /must not contain '\.\.'/);
    assert.match(r.failures[2]?.message ?? '', /must not start with '\.\.'/);
    assert.match(r.failures[6]?.message ?? '', /conflict/);
    assert.deepEqual(r.volumes, {});
    assert.ok(!existsSync(join(podDir, 'escape')));
  });

  test('a ..data link pointed elsewhere (by a process writing into its volume) is never taken for the projection, nor written or deleted through', async () => {
    const podDir = dir();
    const outside = dir();
    writeFileSync(join(outside, 'k'), 'v', { mode: 0o644 }); // the same content as the projection: still not taken for it
    const store = new Store();
    store.cms.set('ns/cfg', { data: { k: 'v' } });
    const p = pod([{ name: 'config', configMap: { name: 'cfg' } }]);
    const d = (await materializeVolumes(p, opts(podDir, store))).volumes.config!.hostPath;
    unlinkSync(join(d, '..data'));
    symlinkSync(relative(d, outside), join(d, '..data'), 'dir'); // relative: joined to the volume directory it names `outside`
    const r = await materializeVolumes(p, opts(podDir, store));
    assert.deepEqual(r.failures, []);
    assert.deepEqual(readdirSync(outside), ['k']);
    assert.equal(readFileSync(join(outside, 'k'), 'utf8'), 'v');
    assert.equal(readFileSync(join(d, 'k'), 'utf8'), 'v');
    assert.match(readlinkSync(join(d, '..data')), /^\.\.\d{4}_/);
  });
});

describe('downwardAPI and projected volumes', () => {
  test('downwardAPI: metadata fields and resourceFieldRef files, updated when labels change; an unsupported field fails', async () => {
    const podDir = dir();
    const vol: V1Volume = {
      name: 'podinfo',
      downwardAPI: {
        items: [
          { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
          { path: 'name', fieldRef: { fieldPath: 'metadata.name' } },
          { path: 'meta/app', fieldRef: { fieldPath: "metadata.labels['app']" } },
          { path: 'mem', resourceFieldRef: { containerName: 'main', resource: 'limits.memory', divisor: '1Mi' } },
          { path: 'cpu', resourceFieldRef: { containerName: 'main', resource: 'limits.cpu', divisor: '1m' }, mode: 0o600 },
        ],
      },
    };
    const r = await materializeVolumes(pod([vol]), opts(podDir, new Store()));
    assert.deepEqual(r.failures, []);
    const d = r.volumes.podinfo!.hostPath;
    assert.equal(d, join(podDir, 'volumes', 'kubernetes.io~downward-api', 'podinfo'));
    assert.equal(readFileSync(join(d, 'labels'), 'utf8'), 'app="web"');
    assert.equal(readFileSync(join(d, 'name'), 'utf8'), 'p1');
    assert.equal(readFileSync(join(d, 'meta', 'app'), 'utf8'), 'web');
    assert.equal(readFileSync(join(d, 'mem'), 'utf8'), '64');
    assert.equal(readFileSync(join(d, 'cpu'), 'utf8'), '2000', 'no cpu limit: the allocatable');
    assert.equal(mode(join(d, 'cpu')), 0o600);
    assert.equal(mode(join(d, 'name')), 0o644);
    await materializeVolumes(pod([vol], { app: 'api', extra: 'e' }), opts(podDir, new Store()));
    assert.equal(readFileSync(join(d, 'labels'), 'utf8'), 'app="api"\nextra="e"');
    const bad = await materializeVolumes(pod([{ name: 'bad', downwardAPI: { items: [{ path: 'ip', fieldRef: { fieldPath: 'status.podIP' } }] } }]), opts(podDir, new Store()));
    assert.deepEqual(bad.failures, [{ volume: 'bad', reason: 'Invalid', message: 'unsupported fieldPath: status.podIP' }]);
  });

  test('projected: configMap, secret, downwardAPI and a serviceAccountToken from the callback; modes; skipped token without one', async () => {
    const podDir = dir();
    const store = new Store();
    store.cms.set('ns/kube-root-ca.crt', { data: { 'ca.crt': 'CA' } });
    store.secrets.set('ns/creds', { data: { user: b64('u') } });
    const vol: V1Volume = {
      name: 'kube-api-access',
      projected: {
        sources: [
          { serviceAccountToken: { path: 'token', expirationSeconds: 3600 } },
          { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
          { secret: { name: 'creds' } },
          { downwardAPI: { items: [{ path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } }] } },
        ],
      },
    };
    const calls: string[] = [];
    const r = await materializeVolumes(
      pod([vol]),
      opts(podDir, store, {
        serviceAccountToken: async (p, proj) => {
          calls.push(`${p.metadata?.name} ${proj.path}`);
          return 'jwt-token';
        },
      }),
    );
    assert.deepEqual(r.failures, []);
    assert.deepEqual(calls, ['p1 token']);
    const d = r.volumes['kube-api-access']!.hostPath;
    assert.equal(d, join(podDir, 'volumes', 'kubernetes.io~projected', 'kube-api-access'));
    assert.deepEqual(visible(d), ['ca.crt', 'namespace', 'token', 'user']);
    assert.equal(readFileSync(join(d, 'token'), 'utf8'), 'jwt-token');
    assert.equal(mode(join(d, 'token')), 0o600);
    assert.equal(mode(join(d, 'user')), 0o600);
    assert.equal(mode(join(d, 'ca.crt')), 0o644);
    assert.equal(readFileSync(join(d, 'namespace'), 'utf8'), 'ns');
    // No issuer: the token is skipped with a warning, the rest is written.
    const r2 = await materializeVolumes(pod([{ ...vol, projected: { ...vol.projected, defaultMode: 0o440 } }]), opts(dir(), store));
    assert.deepEqual(r2.failures, []);
    assert.match(r2.warnings.join('\n'), /serviceAccountToken source \(token\) skipped/);
    const d2 = r2.volumes['kube-api-access']!.hostPath;
    assert.deepEqual(visible(d2), ['ca.crt', 'namespace', 'user']);
    assert.equal(mode(join(d2, 'ca.crt')), 0o440, 'defaultMode applies to every source');
    assert.equal(mode(join(d2, 'user')), 0o440);
    // A missing non-optional source fails the volume; unsupported sources are named.
    const r3 = await materializeVolumes(
      pod([
        { name: 'miss', projected: { sources: [{ secret: { name: 'absent' } }] } },
        { name: 'ctb', projected: { sources: [{ clusterTrustBundle: { path: 'b', signerName: 'x' } }] } },
      ]),
      opts(dir(), store),
    );
    assert.deepEqual(
      r3.failures.map((f) => [f.volume, f.reason, f.message]),
      [
        ['miss', 'NotFound', 'secret "absent" not found'],
        ['ctb', 'Unsupported', 'projected clusterTrustBundle sources are not supported by Ledge'],
      ],
    );
  });
});

describe('emptyDir, hostPath, other kinds', () => {
  test('emptyDir: a 0777 directory kept across syncs; Memory is a plain directory (warned); sizeLimit recorded; a volume with no source is an emptyDir', async () => {
    const podDir = dir();
    const p = pod([{ name: 'scratch', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } }, { name: 'bare' }, { name: 'huge', emptyDir: { medium: 'HugePages' } }]);
    const r = await materializeVolumes(p, opts(podDir, new Store()));
    const v = r.volumes.scratch!;
    assert.equal(v.hostPath, join(podDir, 'volumes', 'kubernetes.io~empty-dir', 'scratch'));
    assert.equal(mode(v.hostPath), 0o777);
    assert.equal(v.readOnly, false);
    assert.equal(v.sizeLimitBytes, 64 * 1024 * 1024);
    assert.match(r.warnings.join(), /Memory is a plain directory/);
    assert.equal(r.volumes.bare?.kind, 'emptyDir');
    assert.deepEqual(r.failures, [{ volume: 'huge', reason: 'Unsupported', message: 'emptyDir medium HugePages is not supported by Ledge (use "" or Memory)' }]);
    writeFileSync(join(v.hostPath, 'work'), 'w');
    await materializeVolumes(p, opts(podDir, new Store()));
    assert.equal(readFileSync(join(v.hostPath, 'work'), 'utf8'), 'w');
  });

  test("hostPath: the path as is, with the kubelet's type checks", async () => {
    const host = dir();
    mkdirSync(join(host, 'dir'));
    writeFileSync(join(host, 'file'), 'f');
    const sock = join(host, 's.sock');
    const server = createServer();
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const hp = (name: string, path: string, type?: string): V1Volume => ({ name, hostPath: { path, ...(type !== undefined ? { type } : {}) } });
      const r = await materializeVolumes(
        pod([
          hp('any', join(host, 'nothing-here')),
          hp('dir', join(host, 'dir'), 'Directory'),
          hp('mkdir', join(host, 'new', 'deep'), 'DirectoryOrCreate'),
          hp('touch', join(host, 'dir', 'new.txt'), 'FileOrCreate'),
          hp('file', join(host, 'file'), 'File'),
          hp('sock', sock, 'Socket'),
          hp('null', '/dev/null', 'CharDevice'),
          hp('notdir', join(host, 'file'), 'Directory'),
          hp('notfile', join(host, 'dir'), 'File'),
          hp('missing', join(host, 'absent'), 'Directory'),
          hp('notblock', '/dev/null', 'BlockDevice'),
          hp('notsock', join(host, 'file'), 'Socket'),
          hp('noparent', join(host, 'no', 'parent.txt'), 'FileOrCreate'),
          hp('rel', 'relative/path'),
          hp('dots', '/tmp/../etc'),
          hp('weird', join(host, 'dir'), 'Nonsense'),
        ]),
        opts(dir(), new Store()),
      );
      assert.deepEqual(Object.keys(r.volumes).sort(), ['any', 'dir', 'file', 'mkdir', 'null', 'sock', 'touch']);
      assert.equal(r.volumes.dir?.hostPath, join(host, 'dir'));
      assert.equal(r.volumes.dir?.readOnly, false);
      assert.ok(statSync(join(host, 'new', 'deep')).isDirectory());
      assert.ok(statSync(join(host, 'dir', 'new.txt')).isFile());
      assert.equal(mode(join(host, 'dir', 'new.txt')) & 0o600, 0o600);
      assert.ok(!existsSync(join(host, 'nothing-here')), "type '' checks and creates nothing");
      const byName = Object.fromEntries(r.failures.map((f) => [f.volume, f.message]));
      assert.equal(byName.notdir, `hostPath type check failed: ${join(host, 'file')} is not a directory`);
      assert.equal(byName.notfile, `hostPath type check failed: ${join(host, 'dir')} is not a file`);
      assert.equal(byName.missing, `hostPath type check failed: ${join(host, 'absent')} is not a directory`);
      assert.equal(byName.notblock, 'hostPath type check failed: /dev/null is not a block device');
      assert.equal(byName.notsock, `hostPath type check failed: ${join(host, 'file')} is not a socket file`);
      assert.match(byName.noparent ?? '', /cannot create the file/);
      assert.match(byName.rel ?? '', /must be an absolute path/);
      assert.match(byName.dots ?? '', /must not contain '\.\.'/);
      assert.equal(byName.weird, 'Nonsense is an invalid volume type');
    } finally {
      server.close();
    }
  });

  test('unsupported kinds, two sources, bad and duplicate names are failures naming the problem', async () => {
    const r = await materializeVolumes(
      pod([
        { name: 'data', persistentVolumeClaim: { claimName: 'c' } },
        { name: 'share', nfs: { server: 's', path: '/' } },
        { name: 'two', emptyDir: {}, hostPath: { path: '/tmp' } },
        { name: 'Bad_Name', emptyDir: {} },
        { name: 'dup', emptyDir: {} },
        { name: 'dup', emptyDir: {} },
      ]),
      opts(dir(), new Store()),
    );
    assert.deepEqual(
      r.failures.map((f) => [f.volume, f.reason, f.message]),
      [
        ['data', 'Unsupported', "persistentVolumeClaim volumes are not supported by Ledge's Edged (supported: configMap, secret, emptyDir, hostPath, downwardAPI, projected)"],
        ['share', 'Unsupported', "nfs volumes are not supported by Ledge's Edged (supported: configMap, secret, emptyDir, hostPath, downwardAPI, projected)"],
        ['two', 'Invalid', 'more than one volume source (emptyDir, hostPath)'],
        ['Bad_Name', 'Invalid', 'volume name "Bad_Name" is not a DNS label'],
        ['dup', 'Invalid', 'duplicate volume name dup'],
      ],
    );
    assert.deepEqual(Object.keys(r.volumes), ['dup']);
  });
});

describe('mounts, the process runtime convention, removal', () => {
  async function setup() {
    const podDir = dir();
    const host = dir();
    const store = new Store();
    store.cms.set('ns/cfg', { data: { 'app.yaml': 'a: 1' } });
    const volumes = await materializeVolumes(
      pod([
        { name: 'config', configMap: { name: 'cfg' } },
        { name: 'scratch', emptyDir: {} },
        { name: 'host-data', hostPath: { path: host } },
      ]),
      opts(podDir, store),
    );
    assert.deepEqual(volumes.failures, []);
    return { podDir, host, volumes };
  }

  test('mountsFor: host paths, mountPath, readOnly from the volume or the mount, subPath and subPathExpr confined', async () => {
    const { volumes, host } = await setup();
    const mounts = mountsFor(
      {
        name: 'main',
        volumeMounts: [
          { name: 'config', mountPath: '/etc/app' },
          { name: 'config', mountPath: '/etc/app.yaml', subPath: 'app.yaml' },
          { name: 'scratch', mountPath: '/work' },
          { name: 'scratch', mountPath: '/logs', subPathExpr: 'logs/$(POD_NAME)' },
          { name: 'host-data', mountPath: '/data', readOnly: true },
        ],
      },
      volumes,
      { POD_NAME: 'p1' },
    );
    const cfg = volumes.volumes.config!.hostPath;
    const scratch = volumes.volumes.scratch!.hostPath;
    assert.deepEqual(mounts, [
      { hostPath: cfg, containerPath: '/etc/app', readOnly: true },
      { hostPath: join(cfg, 'app.yaml'), containerPath: '/etc/app.yaml', readOnly: true },
      { hostPath: scratch, containerPath: '/work', readOnly: false },
      { hostPath: join(scratch, 'logs', 'p1'), containerPath: '/logs', readOnly: false },
      { hostPath: host, containerPath: '/data', readOnly: true },
    ]);
    assert.equal(mode(join(scratch, 'logs', 'p1')), 0o777, 'a missing subPath is made with the volume root mode');
  });

  test('mountsFor refuses: an unknown volume (kubelet message), a subPath escaping through a planted symlink, .., a subPath missing in a read-only volume, a subPathExpr without its variable', async () => {
    const { volumes, host } = await setup();
    const outside = dir();
    const scratch = volumes.volumes.scratch!.hostPath;
    writeFileSync(join(host, 'a-file'), 'f');
    symlinkSync(outside, join(scratch, 'evil'));
    const m = (volumeMounts: NonNullable<Parameters<typeof mountsFor>[0]['volumeMounts']>) => () => mountsFor({ name: 'main', volumeMounts }, volumes);
    assert.throws(
      m([{ name: 'nope', mountPath: '/x' }]),
      (err: unknown) => err instanceof PodSpecError && err.message === 'cannot find volume "nope" to mount into container "main"',
    );
    assert.throws(m([{ name: 'scratch', mountPath: '/x', subPath: 'evil' }]), (err: unknown) => err instanceof PodSpecError && /escapes/.test(err.message));
    assert.throws(m([{ name: 'scratch', mountPath: '/x', subPath: 'evil/etc' }]), /escapes/);
    assert.throws(m([{ name: 'scratch', mountPath: '/x', subPath: '../x' }]), /must not contain '\.\.'/);
    assert.throws(m([{ name: 'config', mountPath: '/x', subPath: 'absent.yaml' }]), /subPath "absent.yaml" does not exist in volume "config"/);
    assert.throws(m([{ name: 'scratch', mountPath: '/x', subPathExpr: '$(NOPE)' }]), (err: unknown) => err instanceof EnvResolveError && err.message === 'missing value for NOPE');
    assert.throws(
      m([{ name: 'host-data', mountPath: '/x', subPath: 'a-file/sub' }]),
      (err: unknown) => err instanceof PodSpecError && /cannot create subPath "a-file\/sub" in volume "host-data"/.test(err.message),
    );
    assert.deepEqual(readdirSync(outside), [], 'nothing made outside');
  });

  test('processVolumeEnv: LEDGE_VOLUME_<NAME> per mounted volume and LEDGE_MOUNTS as JSON', async () => {
    const { volumes, host } = await setup();
    const env = processVolumeEnv(
      {
        name: 'main',
        volumeMounts: [
          { name: 'config', mountPath: '/etc/app' },
          { name: 'config', mountPath: '/etc/app.yaml', subPath: 'app.yaml' },
          { name: 'host-data', mountPath: '/data' },
        ],
      },
      volumes,
    );
    const cfg = volumes.volumes.config!.hostPath;
    assert.deepEqual(env, {
      LEDGE_VOLUME_CONFIG: cfg,
      LEDGE_VOLUME_HOST_DATA: host,
      LEDGE_MOUNTS: JSON.stringify({ '/etc/app': cfg, '/etc/app.yaml': join(cfg, 'app.yaml'), '/data': host }),
    });
    assert.equal(readFileSync(join(env.LEDGE_VOLUME_CONFIG!, 'app.yaml'), 'utf8'), 'a: 1', 'the process finds its file');
    assert.deepEqual(processVolumeEnv({ name: 'bare' }, volumes), { LEDGE_MOUNTS: '{}' });
    assert.equal(volumeEnvName('my-vol-2'), 'LEDGE_VOLUME_MY_VOL_2');
  });

  test('removeVolumes deletes the pod volumes, never what a symlink inside points at, never a hostPath', async () => {
    const { podDir, host, volumes } = await setup();
    const outside = dir();
    writeFileSync(join(outside, 'precious'), 'x');
    writeFileSync(join(host, 'host-file'), 'h');
    symlinkSync(outside, join(volumes.volumes.scratch!.hostPath, 'link-out'));
    await removeVolumes(podDir);
    assert.ok(!existsSync(join(podDir, 'volumes')));
    assert.equal(readFileSync(join(outside, 'precious'), 'utf8'), 'x');
    assert.equal(readFileSync(join(host, 'host-file'), 'utf8'), 'h');
    assert.ok(lstatSync(podDir).isDirectory());
    await removeVolumes(podDir); // idempotent
  });
});
