/**
 * Nothing from the cloud reaches a shell, and paths from the cloud stay in their directory
 * (issue 13), on real files, symlinks and processes:
 * - the names Edged makes a pod's directories from (namespace, name, uid, container names:
 *   podPathProblem);
 * - configMap/secret/downwardAPI item paths and volume names (materializeVolumes): `..`,
 *   absolute paths, the writer's own `..data` names refused, nothing written outside the pod;
 * - subPath and subPathExpr (mountsFor): `..`, absolute, and a symlink a workload placed in its
 *   emptyDir pointing outside, refused before anything is created through it;
 * - a container's command and args spawned without a shell, and the one shell line Edged builds
 *   (`exec -t` through util-linux `script`): hostile arguments and a hostile SHELL arrive as
 *   literal words, nothing they say runs.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import type { ConfigLookup, KeyValueObject } from '../../edge/edged/env.js';
import { podPathProblem } from '../../edge/edged/paths.js';
import { materializeVolumes, mountsFor, type VolumeOptions } from '../../edge/edged/volumes.js';
import type { StreamEnd, StreamOptions } from '../../edge/edged/runtime.js';
import { PodSpecError } from '../../shared/errors/index.js';
import { tempDir } from '../helpers/files.js';
import { within } from '../helpers/process.js';
import { WAIT_MS, logged, processRig } from '../edged/process-rig.js';

const dirs: { cleanup: () => void }[] = [];
after(() => {
  for (const d of dirs) d.cleanup();
});
function dir(): string {
  const d = tempDir('ledge-confine-');
  dirs.push(d);
  return d.path;
}

/** Every path under `root` (relative), to show nothing appeared outside a pod directory. */
function tree(root: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    out.push(rel);
    if (e.isDirectory()) out.push(...tree(root, rel));
  }
  return out;
}

const lookup = (secrets: Record<string, Record<string, string>> = {}): ConfigLookup => ({
  configMap: (_ns, name) => (name === 'cm' ? ({ data: { a: 'x', b: 'y' } } as KeyValueObject) : undefined),
  secret: (_ns, name) =>
    secrets[name] ? ({ data: Object.fromEntries(Object.entries(secrets[name]).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) } as KeyValueObject) : undefined,
});
const opts = (podDir: string, l = lookup()): VolumeOptions => ({ podDir, lookup: l, fields: { podIP: '10.0.0.1', hostIP: '10.0.0.1', allocatable: { cpu: '2', memory: '1Gi' } } });
const podWith = (
  volumes: V1Pod['spec'] extends infer S ? (S extends { volumes?: infer V } ? V : never) : never,
  containers: NonNullable<V1Pod['spec']>['containers'] = [],
): V1Pod => ({
  metadata: { name: 'p', namespace: 'default', uid: 'u1' },
  spec: { containers, volumes },
});

describe('the names a pod directory is made from', () => {
  const good: V1Pod = {
    metadata: { namespace: 'kube-system', name: 'web-1.example', uid: '0f6b1d8e-3c2a-4e59-9b7d-5a1c2e3f4d60' },
    spec: { containers: [{ name: 'main' }], initContainers: [{ name: 'init-db' }] },
  };

  test('API-server-shaped names pass: a UUID, a static pod hash, a dotted name', () => {
    assert.equal(podPathProblem(good), undefined);
    assert.equal(podPathProblem({ ...good, metadata: { ...good.metadata, uid: 'a3f9c2e1b07d' } }), undefined);
    assert.equal(podPathProblem({ metadata: { name: 'p', uid: 'u' } }), undefined, 'no namespace is default');
  });

  test('anything that is not one plain path segment is refused, naming the field', () => {
    const bad = (md: Partial<NonNullable<V1Pod['metadata']>>, spec?: V1Pod['spec']) => podPathProblem({ metadata: { ...good.metadata, ...md }, spec: spec ?? good.spec });
    for (const uid of ['..', '../../etc', 'a/b', '.hidden', '', 'x'.repeat(129), 'a\0b', 'ü'])
      assert.match(bad({ uid }) ?? '', /^pod uid .* is not a plain name/, JSON.stringify(uid));
    assert.match(bad({ uid: undefined }) ?? '', /^pod uid/);
    for (const name of ['../x', 'a/b', 'A', 'a_b', '.', '', 'x'.repeat(254)]) assert.match(bad({ name }) ?? '', /^pod name .* is not a DNS-1123 subdomain/, JSON.stringify(name));
    for (const namespace of ['..', 'a.b', 'a_b', 'x'.repeat(64)]) assert.match(bad({ namespace }) ?? '', /^namespace .* is not a DNS-1123 label/, namespace);
    assert.match(bad({}, { containers: [{ name: '../../logs' }] }) ?? '', /^container name "\.\.\/\.\.\/logs" is not a DNS-1123 label/);
    assert.match(bad({}, { containers: [{ name: 'ok' }], initContainers: [{ name: 'a/b' }] }) ?? '', /^container name "a\/b"/);
    assert.match(bad({ uid: `../${'y'.repeat(200)}` }) ?? '', /…"/, 'a long value is cut in the message');
  });
});

describe('item paths and volume names', () => {
  test('configMap, secret and downwardAPI items with .., absolute or ..data paths fail the volume and write nothing outside it', async () => {
    const root = dir();
    const podDir = join(root, 'pod');
    const hostile = ['../../escape', '/tmp/escape-abs', 'a/../../escape', '..data/escape', '..escape'];
    const volumes = hostile.flatMap((p, i) => [
      { name: `cm-${i}`, configMap: { name: 'cm', items: [{ key: 'a', path: p }] } },
      { name: `sec-${i}`, secret: { secretName: 's', items: [{ key: 'k', path: p }] } },
      { name: `dw-${i}`, downwardAPI: { items: [{ path: p, fieldRef: { fieldPath: 'metadata.name' } }] } },
      { name: `pr-${i}`, projected: { sources: [{ secret: { name: 's', items: [{ key: 'k', path: p }] } }] } },
    ]);
    const r = await materializeVolumes(podWith(volumes), opts(podDir, lookup({ s: { k: 'secret-value' } })));
    assert.deepEqual(Object.keys(r.volumes), [], 'no volume was made');
    assert.equal(r.failures.length, volumes.length);
    for (const f of r.failures) assert.equal(f.reason, 'Invalid', `${f.volume}: ${f.message}`);
    assert.ok(!existsSync('/tmp/escape-abs'));
    assert.deepEqual(
      tree(root).filter((p) => !p.startsWith('pod')),
      [],
      'nothing outside the pod directory',
    );
    assert.deepEqual(
      tree(podDir).filter((p) => /escape/.test(p)),
      [],
      'no file named by a hostile path',
    );
  });

  test('a volume name that is not a DNS label is refused before any directory is made for it', async () => {
    const root = dir();
    const podDir = join(root, 'pod');
    const r = await materializeVolumes(
      podWith([
        { name: '../../../x', emptyDir: {} },
        { name: 'a/b', emptyDir: {} },
        { name: '..', secret: { secretName: 's' } },
      ]),
      opts(podDir, lookup({ s: { k: 'v' } })),
    );
    assert.deepEqual(
      r.failures.map((f) => [f.volume, f.reason]),
      [
        ['../../../x', 'Invalid'],
        ['a/b', 'Invalid'],
        ['..', 'Invalid'],
      ],
    );
    assert.deepEqual(tree(root), [], 'no directory at all');
  });
});

describe('subPath and subPathExpr', () => {
  async function withScratch() {
    const root = dir();
    const podDir = join(root, 'pod');
    const outside = join(root, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'host-secret'), 'x');
    const vols = await materializeVolumes(podWith([{ name: 'scratch', emptyDir: {} }]), opts(podDir));
    const scratch = vols.volumes.scratch!.hostPath;
    return { root, outside, vols, scratch };
  }
  const mount = (m: Record<string, string>) => ({ name: 'c', image: 'x', volumeMounts: [{ name: 'scratch', mountPath: '/data', ...m }] });
  const refused = (fn: () => unknown, re: RegExp) =>
    assert.throws(fn, (err: unknown) => {
      assert.ok(err instanceof PodSpecError, String(err));
      assert.match(err.message, re);
      return true;
    });

  test('a symlink the workload placed in its emptyDir, pointing outside, is refused and nothing is created through it', async () => {
    const { outside, vols, scratch } = await withScratch();
    // What a container can do in its emptyDir: point a name at the host.
    symlinkSync(outside, join(scratch, 'link'));
    symlinkSync('../../../../outside', join(scratch, 'rel'));
    refused(() => mountsFor(mount({ subPath: 'link/new-dir' }), vols), /^subPath of volume mount scratch "link\/new-dir" escapes .* through the symlink/);
    refused(() => mountsFor(mount({ subPath: 'rel/host-secret' }), vols), /escapes/);
    refused(() => mountsFor(mount({ subPath: 'link' }), vols), /escapes/);
    assert.deepEqual(readdirSync(outside), ['host-secret'], 'no directory made outside through the link');
    // A link that stays inside the volume is fine.
    mkdirSync(join(scratch, 'real'));
    symlinkSync('real', join(scratch, 'inside'));
    assert.equal(mountsFor(mount({ subPath: 'inside/sub' }), vols)[0]!.hostPath, join(scratch, 'inside', 'sub'));
  });

  test('.. and absolute subPaths are refused; a subPathExpr is refused without saying what it expanded to', async () => {
    const { vols } = await withScratch();
    refused(() => mountsFor(mount({ subPath: '../../x' }), vols), /must not contain '\.\.'/);
    refused(() => mountsFor(mount({ subPath: '/etc' }), vols), /must be a relative path/);
    const env = { TOKEN: '/s3cr3t-token-value' };
    refused(() => mountsFor(mount({ subPathExpr: '$(TOKEN)' }), vols, env), /^subPathExpr "\$\(TOKEN\)" of volume mount scratch \(as expanded\) must be a relative path$/);
    refused(() => mountsFor(mount({ subPathExpr: 'a/$(TOKEN)/..' }), vols, { TOKEN: 'x' }), /^subPathExpr "a\/\$\(TOKEN\)\/\.\." .* must not contain '\.\.'$/);
  });
});

describe('no shell', () => {
  const { makeRuntime, sandbox, config } = processRig('ledge-noshell-');
  /** Words a shell would act on: command substitution, quotes of both kinds, separators, globs, expansions, a newline, an empty word. */
  const HOSTILE = [
    '$(touch PWN1)',
    '`touch PWN2`',
    "'; touch PWN3; '",
    '"; touch PWN4; "',
    '; touch PWN5',
    '&& touch PWN6',
    '|touch PWN7',
    '>PWN8',
    '*',
    '$HOME',
    '\\',
    "it's",
    'a b',
    'x\ny',
    '',
  ];
  const streams = (o: Partial<StreamOptions> = {}): StreamOptions => ({ stdin: false, stdout: true, stderr: true, tty: false, ...o });

  async function running(env: Record<string, string> = {}) {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const cwd = join(rootDir, sb.uid);
    const cfg = config(logDir, ['/bin/sh', '-c', 'echo up; exec sleep 1000'], { workingDir: cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } });
    const id = await rt.createContainer(sb.id, cfg);
    await rt.startContainer(id);
    await logged(cfg.logPath, 'up');
    return { rt, id, cwd, logDir };
  }
  const pwned = (cwd: string) => readdirSync(cwd).filter((f) => f.startsWith('PWN'));

  test("a container's command and args are spawned as words, without a shell", async () => {
    const { rt, rootDir, logDir } = makeRuntime();
    const sb = await sandbox(rt, rootDir);
    const cwd = join(rootDir, sb.uid);
    const cfg = config(logDir, ['printf'], { args: ['%s|', ...HOSTILE], workingDir: cwd });
    const id = await rt.createContainer(sb.id, cfg);
    await rt.startContainer(id);
    const text = await logged(cfg.logPath, "it's|");
    assert.ok(text.includes(HOSTILE.join('|')), `every word arrives as it was: ${JSON.stringify(text)}`);
    assert.deepEqual(pwned(cwd), []);
  });

  test('exec -t: hostile arguments and a hostile SHELL reach the command as literal words; nothing they say runs', {
    skip: !existsSync('/usr/bin/script') && !existsSync('/bin/script') ? 'util-linux script is not installed' : false,
  }, async () => {
    const { rt, id, cwd } = await running({ SHELL: "/bin/sh'; touch PWN9; '" });
    const out: Buffer[] = [];
    const s = await rt.execStream(id, ['printf', '%s|', ...HOSTILE], streams({ tty: true, size: { width: 200, height: 40 } }), {
      stdout: (b: Uint8Array) => void out.push(Buffer.from(b)),
      stderr: (b: Uint8Array) => void out.push(Buffer.from(b)),
    });
    const end: StreamEnd = await within(s.done, WAIT_MS, 'exec -t to end');
    assert.deepEqual(end, { exitCode: 0 });
    // The terminal turns \n into \r\n.
    const text = Buffer.concat(out).toString().replace(/\r\n/g, '\n');
    assert.equal(text, `${HOSTILE.join('|')}|`);
    assert.deepEqual(pwned(cwd), [], 'no word ran as a command');
    // The container's SHELL is given back to the command as it was.
    const sh: Buffer[] = [];
    const s2 = await rt.execStream(id, ['printenv', 'SHELL'], streams({ tty: true }), { stdout: (b: Uint8Array) => void sh.push(Buffer.from(b)), stderr: () => {} });
    await within(s2.done, WAIT_MS, 'printenv to end');
    assert.equal(Buffer.concat(sh).toString().trim(), "/bin/sh'; touch PWN9; '");
    assert.deepEqual(pwned(cwd), []);
  });
});
