/**
 * MetaManager applies messages for one resource in order: a later message waits until
 * the earlier one's write landed. Different resources still proceed concurrently.
 * Unit test with a fake store whose writes are held pending until the test releases them.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Beehive } from '../../shared/beehive/index.js';
import { silentLogger } from '../../shared/log/index.js';
import { newMessage, type Message } from '../../shared/protocol/index.js';
import { createMetaManager, type ApplyResult, type EdgeStore, type StoredObject } from '../../edge/metamanager/index.js';
import { eventually } from '../helpers/process.js';

interface HeldWrite {
  op: 'put' | 'del';
  resource: string;
  release(): void;
}

/**
 * Behaves like MetaStore (decides duplicate/stale from what it holds when called, applies on
 * write completion) but every write waits in `held` until released.
 */
class HeldStore implements EdgeStore {
  readonly objects = new Map<string, StoredObject>();
  readonly calls: string[] = [];
  readonly held: HeldWrite[] = [];

  private hold(op: 'put' | 'del', resource: string, apply: () => void): Promise<ApplyResult> {
    return new Promise((resolve) => {
      this.held.push({
        op,
        resource,
        release: () => {
          apply();
          resolve('applied');
        },
      });
    });
  }

  put(resource: string, value: unknown, resourceVersion: string | undefined): Promise<ApplyResult> {
    this.calls.push(`put ${resource}`);
    return this.hold('put', resource, () => this.objects.set(resource, { resource, value, ...(resourceVersion !== undefined ? { resourceVersion } : {}) }));
  }

  async delete(resource: string): Promise<ApplyResult> {
    this.calls.push(`delete ${resource}`);
    if (!this.objects.has(resource)) return 'stale';
    return this.hold('del', resource, () => this.objects.delete(resource));
  }

  get(resource: string): StoredObject | undefined {
    return this.objects.get(resource);
  }

  list(prefix = ''): StoredObject[] {
    return [...this.objects.values()].filter((o) => o.resource.startsWith(prefix));
  }

  get size(): number {
    return this.objects.size;
  }

  async close(): Promise<void> {}

  health(): { writable: true } {
    return { writable: true };
  }

  releaseFirst(resource: string): void {
    const i = this.held.findIndex((h) => h.resource === resource);
    assert.ok(i >= 0, `a write of ${resource} is held`);
    this.held.splice(i, 1)[0]!.release();
  }
}

/** Marks a promise as handled (a failing assertion must not leave unhandled rejections behind). */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

function msg(operation: 'insert' | 'delete', name: string, rv: string): Message {
  return newMessage({ source: 'test', group: 'resource', operation, resource: `default/configmap/${name}`, resourceVersion: rv, sync: true, content: { name } });
}

describe('metamanager ordering', () => {
  test('insert with its write pending, then delete of the same object: the delete waits and is applied; the object stays deleted', async () => {
    const store = new HeldStore();
    const mm = createMetaManager({ dataDir: '/nonexistent', openStore: async () => store }, silentLogger);
    const bee = new Beehive();
    bee.register(mm);
    bee.start();
    try {
      const ctx = bee.context('tester');
      const insert = handled(ctx.sendSync('metamanager', msg('insert', 'a', '1'), 5000));
      await eventually(() => store.held.length === 1, 5000, 'insert write pending');
      let deleteAnswered = false;
      const del = handled(
        ctx.sendSync('metamanager', msg('delete', 'a', '2'), 5000).then((r) => {
          deleteAnswered = true;
          return r;
        }),
      );
      // A different resource is not held up by a's pending write.
      const other = handled(ctx.sendSync('metamanager', msg('insert', 'b', '1'), 5000));
      await eventually(() => store.calls.includes('put default/configmap/b'), 5000, 'b handled while a is pending');
      store.releaseFirst('default/configmap/b');
      assert.equal((await other).content, null, 'b answered while a is still pending');
      // The delete has not been decided yet: it waits for the insert's write.
      assert.deepEqual(
        store.calls.filter((c) => c.endsWith('/a')),
        ['put default/configmap/a'],
      );
      assert.equal(deleteAnswered, false);
      store.releaseFirst('default/configmap/a');
      assert.equal((await insert).content, null);
      await eventually(() => store.held.length === 1, 5000, 'delete write pending after the insert landed');
      store.releaseFirst('default/configmap/a');
      assert.equal((await del).content, null);
      assert.deepEqual(
        store.calls.filter((c) => c.endsWith('/a')),
        ['put default/configmap/a', 'delete default/configmap/a'],
      );
      assert.equal(store.get('default/configmap/a'), undefined, 'the deleted object did not come back');
      assert.deepEqual(mm.stats, { applied: 3, duplicate: 0, stale: 0 });
    } finally {
      for (const h of store.held.splice(0)) h.release();
      await bee.stop();
    }
  });

  test('many messages for one resource are applied in arrival order, one write at a time', async () => {
    const store = new HeldStore();
    const mm = createMetaManager({ dataDir: '/nonexistent', openStore: async () => store }, silentLogger);
    const bee = new Beehive();
    bee.register(mm);
    bee.start();
    try {
      const ctx = bee.context('tester');
      const answers = [1, 2, 3, 4, 5].map((rv) => handled(ctx.sendSync('metamanager', msg('insert', 'c', String(rv)), 5000)));
      for (let rv = 1; rv <= 5; rv++) {
        await eventually(() => store.held.length === 1, 5000, `write ${rv} pending`);
        assert.equal(store.calls.length, rv, 'only one write of the resource at a time');
        store.releaseFirst('default/configmap/c');
      }
      await Promise.all(answers);
      assert.equal(store.get('default/configmap/c')?.resourceVersion, '5');
    } finally {
      for (const h of store.held.splice(0)) h.release();
      await bee.stop();
    }
  });
});
