/**
 * cgroup v2 limits of the process runtime (edge/edged/cgroup.ts) against a fake cgroupfs (a temp
 * directory with the interface files): where `ledge` goes (the root, else EdgeCore's own cgroup),
 * the controllers enabled on the way, memory.max / cpu.max of a container, moving a pid, OOM kill
 * and cgroup.kill, removal, and the reasons reported (once in the log) when cgroups are unusable.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cgroups, cpuMax, detectCgroupV2, hasLimits, ownCgroupPath } from '../../edge/edged/cgroup.js';
import { createLogger } from '../../shared/log/index.js';
import { tempDir } from '../helpers/files.js';

const dirs: { cleanup: () => void }[] = [];
after(() => {
  for (const d of dirs) d.cleanup();
});

/** A fake cgroup v2 root offering `controllers`. */
function fakeRoot(controllers = 'cpuset cpu io memory hugetlb pids', subtree = ''): string {
  const d = tempDir('ledge-cgroup-');
  dirs.push(d);
  writeFileSync(join(d.path, 'cgroup.controllers'), `${controllers}\n`);
  writeFileSync(join(d.path, 'cgroup.subtree_control'), subtree ? `${subtree}\n` : '');
  return d.path;
}

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { log, warns: () => lines.filter((l) => l.level === 'warn') };
}

const read = (p: string) => readFileSync(p, 'utf8').trim();

describe('detectCgroupV2', () => {
  test('a unified hierarchy offering cpu and memory: <root>/ledge with both enabled on the way', () => {
    const root = fakeRoot();
    const s = detectCgroupV2({ root, selfPath: '/' });
    assert.deepEqual(s, { ok: true, base: join(root, 'ledge') });
    assert.equal(read(join(root, 'cgroup.subtree_control')), '+cpu +memory');
    assert.equal(read(join(root, 'ledge', 'cgroup.subtree_control')), '+cpu +memory');
  });

  test('controllers already enabled are not written again', () => {
    const root = fakeRoot('cpu memory', 'memory cpu');
    assert.equal(detectCgroupV2({ root, selfPath: '/' }).ok, true);
    assert.equal(read(join(root, 'cgroup.subtree_control')), 'memory cpu');
  });

  test('no cgroup.controllers at the root: a cgroup v1 or hybrid host', () => {
    const d = tempDir('ledge-cgroup-');
    dirs.push(d);
    const s = detectCgroupV2({ root: d.path, selfPath: '/' });
    assert.equal(s.ok, false);
    assert.match(s.ok ? '' : s.reason, /no cgroup v2 hierarchy at .*cgroup\.controllers is missing: a cgroup v1 or hybrid host/);
  });

  test('a controller missing is named', () => {
    const s = detectCgroupV2({ root: fakeRoot('cpu io pids'), selfPath: '/' });
    assert.match(s.ok ? '' : s.reason, /does not offer the memory controller/);
  });

  test("the root unusable: EdgeCore's own cgroup, when delegated with the controllers", () => {
    const root = fakeRoot();
    writeFileSync(join(root, 'ledge'), 'not a directory');
    const own = join(root, 'system.slice', 'edgecore.service');
    mkdirSync(own, { recursive: true });
    writeFileSync(join(own, 'cgroup.controllers'), 'cpu memory pids\n');
    writeFileSync(join(own, 'cgroup.subtree_control'), 'cpu memory\n');
    assert.deepEqual(detectCgroupV2({ root, selfPath: '/system.slice/edgecore.service' }), { ok: true, base: join(own, 'ledge') });
    // And when neither works, both reasons are given.
    const root2 = fakeRoot();
    writeFileSync(join(root2, 'ledge'), '');
    const s = detectCgroupV2({ root: root2, selfPath: '/user.slice' });
    assert.match(s.ok ? '' : s.reason, /cannot create .*ledge: .*EEXIST.*; .*user\.slice/);
  });

  test('this host: reports why not when /sys/fs/cgroup is not a unified hierarchy', {
    skip: existsSync('/sys/fs/cgroup/cgroup.controllers') && 'a cgroup v2 host (the test would create /sys/fs/cgroup/ledge)',
  }, () => {
    const s = detectCgroupV2({ root: '/sys/fs/cgroup' });
    assert.equal(s.ok, false);
    assert.match(s.ok ? '' : s.reason, /cgroup v1 or hybrid/);
  });

  test('ownCgroupPath reads the 0:: line', () => {
    const d = tempDir('ledge-cgroup-');
    dirs.push(d);
    writeFileSync(join(d.path, 'cgroup'), '4:memory:/x\n0::/system.slice/edgecore.service\n');
    assert.equal(ownCgroupPath(join(d.path, 'cgroup')), '/system.slice/edgecore.service');
    assert.equal(ownCgroupPath(join(d.path, 'missing')), undefined);
  });
});

describe('Cgroups', () => {
  test('cpu.max from millicores (at least the kernel minimum), hasLimits', () => {
    assert.equal(cpuMax(500), '50000 100000');
    assert.equal(cpuMax(1500), '150000 100000');
    assert.equal(cpuMax(1), '1000 100000');
    assert.equal(hasLimits({}), false);
    assert.equal(hasLimits({ memoryBytes: 1 }), true);
    assert.equal(hasLimits({ cpuMillis: 1 }), true);
  });

  test('a container with limits: pod and container cgroups, memory.max, cpu.max, the pid, OOM kill, cgroup.kill, removal', () => {
    const root = fakeRoot();
    const cg = new Cgroups({ root, selfPath: '/' });
    assert.deepEqual(cg.prepare('uid-1', 'c1', {}), {}, 'no limits: no cgroup');
    const made = cg.prepare('uid-1', 'c1', { memoryBytes: 64 * 1024 * 1024, cpuMillis: 250 });
    const dir = join(root, 'ledge', 'poduid-1', 'c1');
    assert.deepEqual(made, { dir });
    assert.equal(read(join(root, 'ledge', 'poduid-1', 'cgroup.subtree_control')), '+cpu +memory');
    assert.equal(read(join(dir, 'memory.max')), String(64 * 1024 * 1024));
    assert.equal(read(join(dir, 'cpu.max')), '25000 100000');
    // memory-only: no cpu.max written; swap bounded where the file exists
    const d2 = join(root, 'ledge', 'poduid-1', 'c2');
    mkdirSync(d2, { recursive: true });
    writeFileSync(join(d2, 'memory.swap.max'), 'max\n');
    cg.prepare('uid-1', 'c2', { memoryBytes: 1000 });
    assert.equal(existsSync(join(d2, 'cpu.max')), false);
    assert.equal(read(join(d2, 'memory.swap.max')), '0');

    cg.addProcess(dir, 4242);
    assert.equal(read(join(dir, 'cgroup.procs')), '4242');
    assert.equal(cg.oomKilled(dir), false, 'no memory.events');
    writeFileSync(join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n');
    assert.equal(cg.oomKilled(dir), false);
    writeFileSync(join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
    assert.equal(cg.oomKilled(dir), true);
    assert.equal(cg.kill(dir), false, 'no cgroup.kill (kernel before 5.14)');
    writeFileSync(join(dir, 'cgroup.kill'), '');
    assert.equal(cg.kill(dir), true);
    assert.equal(read(join(dir, 'cgroup.kill')), '1');

    cg.remove(dir);
    assert.equal(existsSync(dir), false);
    cg.removePod('uid-1');
    assert.equal(existsSync(join(root, 'ledge', 'poduid-1')), false);
    assert.equal(existsSync(join(root, 'ledge')), true);
  });

  test('unusable cgroups: every container that asks for limits gets the reason, the log says it once', () => {
    const d = tempDir('ledge-cgroup-');
    dirs.push(d);
    const { log, warns } = capture();
    const cg = new Cgroups({ root: d.path, selfPath: '/', log });
    assert.deepEqual(cg.prepare('u', 'a', {}), {});
    assert.equal(warns().length, 0, 'nothing said while no container asks for limits');
    const a = cg.prepare('u', 'a', { memoryBytes: 1 << 20 });
    const b = cg.prepare('u', 'b', { cpuMillis: 100 });
    assert.match(a.message ?? '', /^limits not enforced: no cgroup v2 hierarchy at /);
    assert.equal(b.message, a.message);
    assert.equal(a.dir, undefined);
    assert.equal(warns().length, 1);
    assert.match(String(warns()[0]?.msg), /limits are not enforced: no cgroup v2 hierarchy/);
  });

  test('a pod uid unusable as a cgroup name is refused with a reason', () => {
    const cg = new Cgroups({ root: fakeRoot(), selfPath: '/' });
    assert.match(cg.prepare('../../etc', 'c', { cpuMillis: 100 }).message ?? '', /limits not enforced: pod uid .* not usable as a cgroup name/);
  });
});
