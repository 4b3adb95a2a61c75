/**
 * The data-directory lock (shared/lock) on real files and processes: one holder per
 * directory, stale locks (dead pid, reused pid, unrefreshed foreign holder) taken over,
 * concurrent contenders with exactly one winner; then the two programs that use it: a
 * second apiserver and a second EdgeCore on a directory in use refuse to start, and a
 * kill -9 never blocks the restart.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { lockDataDir, processStartTime, type LockHolder } from '../../shared/lock/index.js';
import { createLogger } from '../../shared/log/index.js';
import { startApiServer } from '../../apiserver/index.js';
import { tempDir } from '../helpers/files.js';
import { eventually, exitCode, startEdge, startProcess } from '../helpers/process.js';

function captureLog() {
  const lines: string[] = [];
  return { lines, log: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }) };
}

/** Writes a lock file as another holder would have, based on this process's identity. */
function writeLock(dir: string, gen: number, holder: Partial<LockHolder>): string {
  const me = lockDataDir(dir); // learn our own identity fields, then give the directory back
  const base = { ...me.holder };
  me.release();
  const file = join(dir, `LOCK.${gen}`);
  writeFileSync(file, JSON.stringify({ ...base, owner: 'test', token: 'someone-else', ...holder }));
  return file;
}

function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  return r.pid!;
}

const locks = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('LOCK'));

describe('data-directory lock', () => {
  test('one holder: the lock names this process, a second lock is refused, release frees it', () => {
    const d = tempDir();
    try {
      const l = lockDataDir(d.path, { owner: 'apiserver' });
      const h = JSON.parse(readFileSync(l.file, 'utf8')) as LockHolder;
      assert.equal(h.pid, process.pid);
      assert.equal(h.host, hostname());
      assert.equal(h.owner, 'apiserver');
      assert.throws(
        () => lockDataDir(d.path),
        (err: Error & { code?: string }) => err.code === 'LEDGE_ERR_DATA_DIR_LOCKED' && err.message.includes(d.path) && err.message.includes(String(process.pid)),
      );
      l.release();
      assert.deepEqual(locks(d.path), []);
      const again = lockDataDir(d.path);
      again.release();
      again.release(); // idempotent
    } finally {
      d.cleanup();
    }
  });

  test('a live holder in another process is refused with its pid, host and the directory', async () => {
    const d = tempDir();
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      await eventually(() => processStartTime(child.pid!) !== '' || process.platform !== 'linux', 5000, 'child visible in /proc');
      writeLock(d.path, 7, { pid: child.pid!, start: processStartTime(child.pid!) });
      assert.throws(
        () => lockDataDir(d.path),
        (err: Error & { code?: string }) =>
          err.code === 'LEDGE_ERR_DATA_DIR_LOCKED' && err.message.includes(`pid ${child.pid}`) && err.message.includes(hostname()) && err.message.includes(d.path),
      );
      assert.deepEqual(locks(d.path), ['LOCK.7'], 'a refused contender leaves nothing behind');
    } finally {
      child.kill('SIGKILL');
      d.cleanup();
    }
  });

  test('a lock left by a dead process (kill -9) is taken over, with one log line', () => {
    const d = tempDir();
    try {
      const pid = deadPid();
      writeLock(d.path, 3, { pid });
      const { lines, log } = captureLog();
      const l = lockDataDir(d.path, { log });
      assert.equal(l.file, join(d.path, 'LOCK.4'));
      assert.deepEqual(locks(d.path), ['LOCK.4'], 'the stale lock is removed once the new one exists');
      assert.equal(lines.length, 1);
      assert.match(lines[0]!, new RegExp(`took over the stale lock.*pid ${pid} is not running`));
      l.release();
    } finally {
      d.cleanup();
    }
  });

  test('a reused pid is not mistaken for the holder: a live pid with another start time is stale', (t) => {
    if (process.platform !== 'linux') return t.skip('start times come from /proc');
    const d = tempDir();
    try {
      // The test runner's pid is alive, but it is not the process that took this lock.
      writeLock(d.path, 1, { pid: process.ppid, start: '1' });
      const { lines, log } = captureLog();
      const l = lockDataDir(d.path, { log });
      assert.match(lines.join('\n'), new RegExp(`pid ${process.ppid} is now another process`));
      l.release();
      // Our own pid in a lock we do not hold: an earlier incarnation (a container's pid 1 after a restart).
      writeLock(d.path, 1, { pid: process.pid });
      lockDataDir(d.path).release();
    } finally {
      d.cleanup();
    }
  });

  test('a holder on another host is trusted while it refreshes the lock, and taken over once not refreshed for staleMs', () => {
    const d = tempDir();
    try {
      const file = writeLock(d.path, 1, { host: 'another-host', pid: 1 });
      assert.throws(
        () => lockDataDir(d.path, { staleMs: 60_000 }),
        (err: Error & { code?: string }) => err.code === 'LEDGE_ERR_DATA_DIR_LOCKED' && /pid 1 on host another-host/.test(err.message),
      );
      const old = new Date(Date.now() - 120_000);
      utimesSync(file, old, old);
      const { lines, log } = captureLog();
      const l = lockDataDir(d.path, { staleMs: 60_000, log });
      assert.match(lines[0]!, /not refreshed for 12\d s by host another-host/);
      l.release();
    } finally {
      d.cleanup();
    }
  });

  test('an unreadable lock file is trusted only while fresh', () => {
    const d = tempDir();
    try {
      const file = join(d.path, 'LOCK.2');
      writeFileSync(file, '');
      assert.throws(() => lockDataDir(d.path), { code: 'LEDGE_ERR_DATA_DIR_LOCKED' });
      const old = new Date(Date.now() - 120_000);
      utimesSync(file, old, old);
      lockDataDir(d.path).release();
    } finally {
      d.cleanup();
    }
  });

  test('the holder keeps its lock fresh, and reports once if another process replaced it', async () => {
    const d = tempDir();
    try {
      let lost = 0;
      const { lines, log } = captureLog();
      const l = lockDataDir(d.path, { refreshMs: 20, log, onLost: () => lost++ });
      const old = new Date(Date.now() - 120_000);
      utimesSync(l.file, old, old);
      await eventually(() => Date.now() - statSync(l.file).mtimeMs < 60_000, 5000, 'mtime refreshed');
      writeFileSync(l.file, JSON.stringify({ ...l.holder, token: 'usurper' }));
      await eventually(() => lost === 1, 5000, 'onLost called');
      assert.equal(lines.filter((x) => /lost the lock/.test(x)).length, 1);
      l.release();
      assert.deepEqual(locks(d.path), ['LOCK.1'], 'release leaves alone a lock that is no longer ours');
    } finally {
      d.cleanup();
    }
  });

  test('contenders racing for a stale lock: exactly one wins', async () => {
    const d = tempDir();
    try {
      writeLock(d.path, 1, { pid: deadPid() });
      // All contenders spin until the same instant, so they really overlap (not just start near each other).
      const script = `import { lockDataDir } from './shared/lock/index.ts';
        const at = Number(process.argv[2]); while (Date.now() < at) {}
        try { lockDataDir(process.argv[1], { owner: 'contender' }); console.log('won'); setInterval(() => {}, 1000); }
        catch (err) { console.log('lost ' + err.code); process.exit(3); }`;
      const at = String(Date.now() + 3000);
      const children = Array.from({ length: 6 }, (_, i) => startProcess(['--import', 'tsx', '--input-type=module', '-e', script, d.path, at], {}, `contender-${i}`));
      try {
        await Promise.all(children.map((c) => c.waitFor(/^(won|lost \S+)$/m, 30_000)));
        const outcomes = children.map((c) => c.output().trim());
        assert.equal(outcomes.filter((o) => o === 'won').length, 1, outcomes.join(', '));
        assert.ok(
          outcomes.filter((o) => o !== 'won').every((o) => o === 'lost LEDGE_ERR_DATA_DIR_LOCKED'),
          outcomes.join(', '),
        );
        assert.deepEqual(locks(d.path), ['LOCK.2']);
      } finally {
        await Promise.all(children.map((c) => c.kill9()));
      }
    } finally {
      d.cleanup();
    }
  });
});

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('one process per data directory', () => {
  test('in one process (the embedded control plane of ledge up / --local): a second startApiServer on the directory is refused, close() frees it', async () => {
    const d = tempDir();
    try {
      const a = await startApiServer({ dataDir: d.path, port: 0, tls: false });
      await assert.rejects(
        startApiServer({ dataDir: d.path, port: 0, tls: false }),
        (err: Error & { code?: string }) => err.code === 'LEDGE_ERR_DATA_DIR_LOCKED' && err.message.includes(d.path),
      );
      assert.equal(await get(`${a.url}/api/v1/namespaces/default/configmaps`), 200);
      await a.close();
      assert.deepEqual(locks(d.path), []);
      const b = await startApiServer({ dataDir: d.path, port: 0, tls: false });
      assert.equal(await get(`${b.url}/api/v1/namespaces/default/configmaps`), 200);
      await b.close();
    } finally {
      d.cleanup();
    }
  });

  test('a second apiserver on the same directory exits 1 with LEDGE_ERR_DATA_DIR_LOCKED, the first keeps serving; after kill -9 it restarts', async () => {
    const d = tempDir();
    const args = ['--import', 'tsx', 'cli/ledge.ts', 'apiserver', '--data-dir', d.path, '--port', '0', '--insecure-http', '--log-level', 'info'];
    const first = startProcess(args, {}, 'api-1');
    let third: ReturnType<typeof startProcess> | undefined;
    try {
      const m = await first.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+)"/, 60_000);
      const url = m[1]!;
      const second = startProcess(args, {}, 'api-2');
      const code = await exitCode(second, 60_000, 'the second apiserver to refuse the locked directory and exit');
      assert.equal(code, 1);
      const out = second.output();
      assert.match(out, /LEDGE_ERR_DATA_DIR_LOCKED/);
      assert.ok(out.includes(`locked by pid ${first.child.pid}`), out);
      assert.ok(out.includes(d.path), out);
      assert.doesNotMatch(out, /listening/);
      assert.equal(await get(`${url}/api/v1/namespaces/default/configmaps`), 200, 'the first server is untouched');
      assert.equal(first.child.exitCode, null);

      await first.kill9();
      third = startProcess(args, {}, 'api-3');
      await third.waitFor(/took over the stale lock.*is not running/, 60_000);
      const m3 = await third.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+)"/, 60_000);
      assert.equal(await get(`${m3[1]}/api/v1/namespaces/default/configmaps`), 200);
      assert.equal(await third.stop(), 0);
      assert.deepEqual(locks(d.path), [], 'a clean stop releases the lock');
    } finally {
      await first.kill9();
      await third?.kill9();
      d.cleanup();
    }
  });

  test('a second EdgeCore on the same data directory refuses to start; the first keeps running', async () => {
    const d = tempDir();
    const args = ['--cloud', 'ws://127.0.0.1:1', '--node-name', 'lock-node', '--data-dir', d.path, '--reconnect-max-ms', '500', '--log-level', 'info'];
    const first = startEdge(args, {}, 'edge-1');
    try {
      await first.waitFor(/edgecore started/);
      const second = startEdge(args, {}, 'edge-2');
      assert.equal(await exitCode(second, 30_000, 'the second EdgeCore to refuse the locked directory and exit'), 1);
      assert.match(second.output(), /edgecore cannot start: data directory .* is locked by pid \d+/);
      assert.match(second.output(), /LEDGE_ERR_DATA_DIR_LOCKED/);
      assert.equal(first.child.exitCode, null);
      assert.equal(await first.stop(), 0);
      assert.deepEqual(locks(d.path), []);
    } finally {
      await first.kill9();
      d.cleanup();
    }
  });
});
