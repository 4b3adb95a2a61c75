/**
 * The edge metadata store: compaction by size keeps the log bounded under large updates
 * (not only after 10,000 records), and a store that cannot write is reported: the store's
 * health, MetaManager's problem, and a NotReady node status with the reason.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Beehive, type Module, type ModuleContext } from '../../shared/beehive/index.js';
import { silentLogger } from '../../shared/log/index.js';
import { StorageError } from '../../shared/errors/index.js';
import { newMessage, type ErrorContent, type Message } from '../../shared/protocol/index.js';
import { MetaStore, createMetaManager, type ApplyResult, type EdgeStore, type StoredObject, type StoreHealth } from '../../edge/metamanager/index.js';
import { createNodeStatusReporter, type NodeStatusReport } from '../../edge/nodestatus/index.js';
import { eventually } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function dir(): string {
  const d = tempDir();
  cleanups.push(d.cleanup);
  return d.path;
}

describe('edge store compaction by size', () => {
  test('2,000 updates of a 16 KiB object keep the log within max(minBytes, ratio × live) (count threshold never reached)', async () => {
    const d = dir();
    const minBytes = 256 * 1024;
    const opts = { compactAfter: 1_000_000, compactMinBytes: minBytes, compactRatio: 2 };
    const store = await MetaStore.open(d, silentLogger, opts);
    const blob = 'x'.repeat(16 * 1024);
    // A few small neighbours that must survive every compaction.
    for (let i = 0; i < 5; i++) await store.put(`default/configmap/small-${i}`, { i }, '1', `small-${i}`);
    let maxFile = 0;
    let maxBound = 0;
    for (let rv = 1; rv <= 2000; rv++) {
      assert.equal(await store.put('default/configmap/big', { blob, rv }, String(rv), `big-${rv}`), 'applied');
      const file = statSync(join(d, 'meta.log')).size;
      const { liveBytes } = store.footprint;
      // A compaction may be running: a few records land after the threshold before it swaps.
      const bound = Math.max(minBytes, 2 * liveBytes) + 4 * (blob.length + 200);
      maxFile = Math.max(maxFile, file);
      maxBound = Math.max(maxBound, bound);
      assert.ok(file <= bound, `after ${rv} updates the log is ${file} bytes, over ${bound}`);
    }
    assert.ok(maxFile < (2000 * blob.length) / 20, `bounded far below the ${2000 * blob.length} bytes written (max ${maxFile}, bound ${maxBound})`);
    await store.close();
    // Nothing was lost by compacting: the latest version and the neighbours are there after a restart.
    const again = await MetaStore.open(d, silentLogger, opts);
    assert.equal(again.get('default/configmap/big')?.resourceVersion, '2000');
    assert.equal(again.size, 6);
    // …and the remembered message ids survived too (a resend is still recognised).
    assert.equal(await again.put('default/configmap/big', { blob, rv: 2000 }, '2000', 'big-2000'), 'duplicate');
    await again.close();
  });

  test('deletes shrink the live set: a log of deleted objects is compacted away', async () => {
    const d = dir();
    const store = await MetaStore.open(d, silentLogger, { compactAfter: 1_000_000, compactMinBytes: 64 * 1024 });
    const blob = 'y'.repeat(8 * 1024);
    for (let i = 0; i < 200; i++) {
      await store.put(`default/secret/s-${i}`, { blob }, '1', `p-${i}`);
      await store.delete(`default/secret/s-${i}`, `d-${i}`);
    }
    await eventually(() => statSync(join(d, 'meta.log')).size <= 64 * 1024 + 4 * (blob.length + 200), 5000, 'log compacted');
    assert.equal(store.size, 0);
    await store.close();
  });
});

describe('edge store health', () => {
  test('a write that fails (ENOSPC) marks the store unwritable with the error; MetaManager reports EdgeStoreUnwritable and does not ACK', async (t) => {
    if (!existsSync('/dev/full')) return t.skip('/dev/full not available');
    const d = dir();
    symlinkSync('/dev/full', join(d, 'meta.log'));
    const mm = createMetaManager({ dataDir: d }, silentLogger);
    const bee = new Beehive();
    bee.register(mm);
    bee.start();
    cleanups.push(() => bee.stop());
    const ctx = bee.context('tester');
    await eventually(() => mm.health() === undefined && ctx, 5000, 'store opened');
    const resp = await ctx.sendSync<ErrorContent | null>(
      'metamanager',
      newMessage({ source: 'test', group: 'resource', operation: 'update', resource: 'default/configmap/c', resourceVersion: '1', content: {}, sync: true }),
      5000,
    );
    assert.equal(resp.content?.code, 'LEDGE_ERR_STORAGE', 'refused (EdgeHub withholds the ACK for this code)');
    const problem = mm.health();
    assert.equal(problem?.reason, 'EdgeStoreUnwritable');
    assert.match(problem!.message, /cannot write since .*LEDGE_ERR_STORAGE.*(ENOSPC|no space)/i);
  });
});

/** A store that fails writes while `failing` is set, like MetaStore does (health included). */
class SwitchableStore implements EdgeStore {
  failing = false;
  private readonly objects = new Map<string, StoredObject>();
  private unwritable: { since: number; error: string; code: string } | undefined;

  async put(resource: string, value: unknown, resourceVersion: string | undefined): Promise<ApplyResult> {
    if (this.failing) {
      this.unwritable ??= { since: Date.now(), error: 'write failed: ENOSPC', code: 'LEDGE_ERR_STORAGE' };
      throw new StorageError('write failed: ENOSPC');
    }
    this.unwritable = undefined;
    this.objects.set(resource, { resource, value, ...(resourceVersion !== undefined ? { resourceVersion } : {}) });
    return 'applied';
  }

  async delete(resource: string): Promise<ApplyResult> {
    return this.objects.delete(resource) ? 'applied' : 'stale';
  }

  get(resource: string): StoredObject | undefined {
    return this.objects.get(resource);
  }

  list(): StoredObject[] {
    return [...this.objects.values()];
  }

  get size(): number {
    return this.objects.size;
  }

  async close(): Promise<void> {}

  health(): StoreHealth {
    return this.unwritable ? { writable: false, ...this.unwritable } : { writable: true };
  }
}

/** Stands in for EdgeHub: records what reaches it and answers reliable messages. */
function fakeHub(received: Message[]): Module {
  return {
    name: 'websocket',
    group: 'hub',
    async start(ctx: ModuleContext, signal: AbortSignal) {
      for await (const m of ctx.messages(signal)) {
        received.push(m);
        if (m.header.sync) await ctx.respond(m, null);
      }
    },
  };
}

describe('node status reports the store', () => {
  test('NotReady with reason EdgeStoreUnwritable while writes fail, reported at once (not at the next interval); Ready again after a write succeeds', async () => {
    const store = new SwitchableStore();
    const mm = createMetaManager({ dataDir: '/nonexistent', openStore: async () => store }, silentLogger);
    const received: Message[] = [];
    const bee = new Beehive();
    bee.register(fakeHub(received));
    bee.register(mm);
    // An interval far longer than the test: only a health change can trigger the later reports.
    bee.register(createNodeStatusReporter({ nodeName: 'n1', intervalMs: 600_000, healthPollMs: 20, checks: [() => mm.health()] }));
    bee.start();
    cleanups.push(() => bee.stop());
    const ready = () => received.map((m) => (m.content as NodeStatusReport).conditions.find((c) => c.type === 'Ready')!);
    await eventually(() => ready().length === 1, 5000, 'first report');
    assert.equal(ready()[0]!.status, 'True');
    const ctx = bee.context('tester');
    const update = (rv: string) =>
      ctx.sendSync<ErrorContent | null>(
        'metamanager',
        newMessage({ source: 'test', group: 'resource', operation: 'update', resource: 'default/configmap/c', resourceVersion: rv, content: {}, sync: true }),
        5000,
      );
    store.failing = true;
    assert.equal((await update('1')).content?.code, 'LEDGE_ERR_STORAGE');
    await eventually(() => ready().length === 2, 5000, 'NotReady report');
    const notReady = ready()[1]!;
    assert.equal(notReady.status, 'False');
    assert.equal(notReady.reason, 'EdgeStoreUnwritable');
    assert.match(notReady.message ?? '', /cannot write .*ENOSPC/);
    assert.equal(received[1]!.header.sync, true, 'reported reliably through the outbox');
    // Further failures do not repeat the report; a successful write clears it.
    assert.equal((await update('2')).content?.code, 'LEDGE_ERR_STORAGE');
    store.failing = false;
    assert.equal((await update('3')).content, null);
    await eventually(() => ready().length === 3, 5000, 'Ready report');
    assert.equal(ready()[2]!.status, 'True');
    assert.equal(ready().length, 3);
  });

  test('when the outbox cannot store the report either, it is sent best-effort', async () => {
    const store = new SwitchableStore();
    store.failing = true;
    const mm = createMetaManager({ dataDir: '/nonexistent', openStore: async () => store }, silentLogger);
    const received: Message[] = [];
    // An EdgeHub whose outbox refuses every reliable message with LEDGE_ERR_STORAGE.
    const fullHub: Module = {
      name: 'websocket',
      group: 'hub',
      async start(ctx: ModuleContext, signal: AbortSignal) {
        for await (const m of ctx.messages(signal)) {
          received.push(m);
          if (m.header.sync) await ctx.respond(m, { code: 'LEDGE_ERR_STORAGE', message: 'write to outbox.log failed: ENOSPC' });
        }
      },
    };
    const bee = new Beehive();
    bee.register(fullHub);
    bee.register(mm);
    bee.register(createNodeStatusReporter({ nodeName: 'n2', intervalMs: 600_000, healthPollMs: 20, checks: [() => mm.health()] }));
    bee.start();
    cleanups.push(() => bee.stop());
    const ctx = bee.context('tester');
    await ctx.sendSync('metamanager', newMessage({ source: 'test', group: 'resource', operation: 'update', resource: 'default/configmap/c', content: {}, sync: true }), 5000);
    const bestEffort = await eventually(
      () => received.find((m) => !m.header.sync && (m.content as NodeStatusReport).conditions[0]!.status === 'False'),
      5000,
      'best-effort NotReady report',
    );
    assert.equal((bestEffort.content as NodeStatusReport).conditions[0]!.reason, 'EdgeStoreUnwritable');
  });
});
