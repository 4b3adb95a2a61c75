// Durability: restart keeps objects and resourceVersions, watches resume across a
// restart, compaction keeps state, and kill -9 during a write burst loses no
// acknowledged write and leaves no write half-applied.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { raw, rawWatch, spawnServer, startTestServer, tempDir } from './helpers.js';
import type { ApiServerHandle } from '../../apiserver/index.js';

const CMS = '/api/v1/namespaces/default/configmaps';
const body = (name: string, data: Record<string, string> = {}) => JSON.stringify({ metadata: { name }, data });

describe('persistence', () => {
  test('restart resumes with the same objects and resourceVersions', async () => {
    const dir = tempDir();
    try {
      let s = await startTestServer({ dataDir: dir });
      const token = s.handle.token;
      const a = (await raw(s.handle, 'POST', CMS, body('a', { v: '1' }))).json();
      const b = (await raw(s.handle, 'POST', CMS, body('b'))).json();
      await raw(s.handle, 'DELETE', `${CMS}/b`);
      const list1 = (await raw(s.handle, 'GET', CMS)).json();
      await s.stop({ keepDir: true });
      s = await startTestServer({ dataDir: dir });
      assert.equal(s.handle.token, token, 'credentials persist');
      const a2 = (await raw(s.handle, 'GET', `${CMS}/a`)).json();
      assert.equal(a2.metadata.resourceVersion, a.metadata.resourceVersion);
      assert.equal(a2.metadata.uid, a.metadata.uid);
      assert.equal((await raw(s.handle, 'GET', `${CMS}/b`)).status, 404);
      const list2 = (await raw(s.handle, 'GET', CMS)).json();
      assert.equal(list2.metadata.resourceVersion, list1.metadata.resourceVersion);
      const c = (await raw(s.handle, 'POST', CMS, body('c'))).json();
      assert.ok(Number(c.metadata.resourceVersion) > Number(list1.metadata.resourceVersion));
      assert.ok(Number(b.metadata.resourceVersion) < Number(c.metadata.resourceVersion));
      await s.stop({ keepDir: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a watch resumes from a resourceVersion seen before the restart', async () => {
    const dir = tempDir();
    try {
      let s = await startTestServer({ dataDir: dir });
      const list = (await raw(s.handle, 'GET', CMS)).json();
      await raw(s.handle, 'POST', CMS, body('w1'));
      await raw(s.handle, 'PATCH', `${CMS}/w1`, JSON.stringify({ data: { k: 'v' } }), { 'content-type': 'application/merge-patch+json' });
      await s.stop({ keepDir: true });
      s = await startTestServer({ dataDir: dir });
      const w = rawWatch(s.handle, `${CMS}?watch=1&resourceVersion=${list.metadata.resourceVersion}`);
      await w.waitFor((e) => e.length >= 2);
      await raw(s.handle, 'POST', CMS, body('w2'));
      await w.waitFor((e) => e.length >= 3);
      assert.deepEqual(
        w.events.map((e) => `${e.type}:${e.object.metadata.name}`),
        ['ADDED:w1', 'MODIFIED:w1', 'ADDED:w2'],
      );
      w.close();
      await s.stop({ keepDir: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('compaction keeps state and recent history across restarts', async () => {
    const dir = tempDir();
    try {
      let s = await startTestServer({ dataDir: dir, compactAfterRecords: 40, watchHistorySize: 50 });
      const first = (await raw(s.handle, 'POST', CMS, body('k0'))).json();
      for (let i = 1; i < 30; i++) await raw(s.handle, 'POST', CMS, body(`k${i}`, { i: String(i) }));
      for (let i = 0; i < 30; i += 2) await raw(s.handle, 'DELETE', `${CMS}/k${i}`);
      for (let round = 0; round < 7; round++) {
        for (let i = 1; i < 30; i += 2)
          await raw(s.handle, 'PATCH', `${CMS}/k${i}`, JSON.stringify({ data: { j: `x${round}` } }), { 'content-type': 'application/merge-patch+json' });
      }
      const before = (await raw(s.handle, 'GET', CMS)).json();
      await s.stop({ keepDir: true });
      s = await startTestServer({ dataDir: dir, compactAfterRecords: 40, watchHistorySize: 50 });
      const after = (await raw(s.handle, 'GET', CMS)).json();
      assert.deepEqual(after.items, before.items);
      assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
      const rvLast = Number(before.metadata.resourceVersion);
      const recent = rawWatch(s.handle, `${CMS}?watch=1&resourceVersion=${rvLast - 3}`);
      await recent.waitFor((e) => e.length >= 3);
      assert.ok(recent.events.every((e) => e.type === 'MODIFIED'));
      recent.close();
      const old = rawWatch(s.handle, `${CMS}?watch=1&resourceVersion=${first.metadata.resourceVersion}`);
      await Promise.race([old.ended, new Promise((r) => setTimeout(r, 5000))]);
      old.close();
      assert.equal(old.events[0]?.object.code, 410, 'a compacted resourceVersion must get 410');
      await s.stop({ keepDir: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('kill -9 during a burst of writes: every acknowledged write survives, none is half-applied', async () => {
    const dir = tempDir();
    try {
      const child = await spawnServer(dir);
      const h = { url: child.url, token: child.token, caCertPem: child.caCertPem } as ApiServerHandle;
      const payload = (name: string, gen: number) => {
        const blob = createHash('sha256').update(`${name}/${gen}`).digest('hex').repeat(40);
        return { blob, sum: createHash('sha256').update(blob).digest('hex'), gen: String(gen) };
      };
      const acked = new Map<string, { gen: number; rv: string }>();
      let killed = false;
      let n = 0;
      const worker = async (w: number) => {
        for (let i = 0; !killed; i++) {
          const name = `burst-${w}-${i % 15}`;
          const prev = acked.get(name);
          const gen = (prev?.gen ?? 0) + 1;
          try {
            const r = prev
              ? await raw(h, 'PUT', `${CMS}/${name}`, JSON.stringify({ metadata: { name, resourceVersion: prev.rv }, data: payload(name, gen) }))
              : await raw(h, 'POST', CMS, body(name, payload(name, gen)));
            if (r.status === 200 || r.status === 201) {
              acked.set(name, { gen, rv: r.json().metadata.resourceVersion });
              if (++n === 150) {
                killed = true;
                child.child.kill('SIGKILL');
              }
            }
          } catch {
            return; // connection died with the server: unacknowledged
          }
        }
      };
      await Promise.all(Array.from({ length: 12 }, (_, w) => worker(w)));
      await new Promise<void>((r) => (child.child.exitCode !== null || child.child.signalCode !== null ? r() : child.child.once('exit', () => r())));
      assert.equal(child.child.signalCode, 'SIGKILL');

      const again = await spawnServer(dir);
      const h2 = { url: again.url, token: again.token, caCertPem: again.caCertPem } as ApiServerHandle;
      try {
        const items = (await raw(h2, 'GET', CMS)).json().items as { metadata: { name: string; resourceVersion: string }; data: Record<string, string> }[];
        const byName = new Map(items.map((i) => [i.metadata.name, i]));
        assert.ok(acked.size > 0);
        for (const [name, a] of acked) {
          const got = byName.get(name);
          assert.ok(got, `acknowledged ${name} lost`);
          // The stored version is the acknowledged one or a later (unacknowledged but whole) one.
          assert.ok(Number(got.data.gen) >= a.gen, `${name}: stored gen ${got.data.gen} < acknowledged ${a.gen}`);
          if (Number(got.data.gen) === a.gen) assert.equal(got.metadata.resourceVersion, a.rv);
        }
        for (const it of items) {
          const p = payload(it.metadata.name, Number(it.data.gen));
          assert.deepEqual(it.data, p, `${it.metadata.name} is half-applied`);
        }
        const w = await raw(h2, 'POST', CMS, body('after-crash'));
        assert.equal(w.status, 201);
      } finally {
        again.child.kill('SIGTERM');
        const killer = setTimeout(() => again.child.kill('SIGKILL'), 10_000);
        await new Promise((r) => (again.child.exitCode !== null || again.child.signalCode !== null ? r(null) : again.child.once('exit', r)));
        clearTimeout(killer);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
