/**
 * The metadata store's limits (meta.maxObjects, meta.maxObjectBytes, meta.maxLiveBytes): past
 * a limit a put is refused with LEDGE_ERR_STORE_LIMIT and nothing else changes; what is held is
 * served; updates that do not grow past a limit and deletes still work; one log line per
 * crossing; concurrent puts cannot overshoot; a restart with a full store (or lower limits)
 * serves everything and keeps refusing. MetaManager answers the refusal as an error (so
 * EdgeHub sends an error ACK, not a withheld one) and reports the EdgeStoreFull condition.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { MetaStore, createMetaManager, type MetaStoreOptions } from '../../edge/metamanager/index.js';
import { Beehive } from '../../shared/beehive/index.js';
import { ErrorCode, StoreLimitError, hasCode } from '../../shared/errors/index.js';
import { newMessage, type ErrorContent } from '../../shared/protocol/index.js';
import { silentLogger } from '../../shared/log/index.js';
import { captureLog, type LogCapture } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';

const cleanups: (() => void)[] = [];
after(() => {
  for (const c of cleanups) c();
});
function dir(): string {
  const d = tempDir('ledge-metastore-limits-');
  cleanups.push(d.cleanup);
  return d.path;
}
const cm = (i: number | string) => `default/configmap/c${i}`;
const isLimit = (err: unknown) => err instanceof StoreLimitError && err.code === ErrorCode.StoreLimit;
const limitLines = (log: LogCapture, limit: string) => log.lines.filter((l) => l.code === ErrorCode.StoreLimit && l.limit === limit);

async function open(d: string, o: MetaStoreOptions, log = captureLog()) {
  return { store: await MetaStore.open(d, log.logger, o), log };
}

describe('MetaStore limits: maxObjects', () => {
  test('at the bound a new object is refused; updates and deletes still work; a delete makes room; one line, then at most one a minute', async () => {
    const { store, log } = await open(dir(), { maxObjects: 5 });
    try {
      for (let i = 0; i < 5; i++) assert.equal(await store.put(cm(i), { i }, '1', `p${i}`), 'applied');
      for (let n = 0; n < 30; n++) await assert.rejects(store.put(cm(`new-${n}`), { n }, '1', `new-${n}`), isLimit);
      assert.equal(store.size, 5);
      assert.equal(store.get(cm('new-0')), undefined);
      assert.equal(store.seen('new-0'), false, 'a refused message is not remembered: its resend is tried again');
      assert.equal(limitLines(log, 'maxObjects').length, 1, 'thirty refusals, one line');
      assert.match(String(limitLines(log, 'maxObjects')[0]!.msg), /holds 5 objects, meta\.maxObjects is 5: new object default\/configmap\/c-?new-0 refused/);
      assert.deepEqual(store.limitState(), {
        refusing: true,
        limit: 'maxObjects',
        since: (store.limitState() as { since: number }).since,
        message: 'the metadata store holds 5 objects (meta.maxObjects 5) and refuses new ones',
      });
      // At the bound: an update (bigger, even) and a delete work.
      assert.equal(await store.put(cm(0), { i: 0, more: 'x'.repeat(500) }, '2', 'u0'), 'applied');
      assert.equal(await store.delete(cm(1), 'd1'), 'applied');
      assert.equal(store.limitState().refusing, false, 'room again after the delete');
      assert.equal(await store.put(cm('new-0'), { n: 0 }, '1', 'new-0'), 'applied', 'the resend now fits');
      assert.ok(log.has(/accepts new objects again/));
      // A second crossing within the minute is counted, not logged (a store hovering at its bound writes one line a minute).
      await assert.rejects(store.put(cm('new-1'), {}, '1', 'new-1b'), isLimit);
      assert.equal(store.limitState().refusing, true);
      assert.equal(limitLines(log, 'maxObjects').length, 1);
    } finally {
      await store.close();
    }
  });

  test('concurrent puts cannot overshoot the bound (writes in flight count against it)', async () => {
    const { store } = await open(dir(), { maxObjects: 10 });
    try {
      const results = await Promise.allSettled(Array.from({ length: 25 }, (_, i) => store.put(cm(i), { i }, '1', `p${i}`)));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 10);
      assert.ok(results.filter((r) => r.status === 'rejected').every((r) => isLimit((r as PromiseRejectedResult).reason)));
      assert.equal(store.size, 10);
    } finally {
      await store.close();
    }
  });
});

describe('MetaStore limits: maxObjectBytes', () => {
  test('an object over the size limit is refused (new or as an update); the held version stays; a smaller one is accepted', async () => {
    const { store, log } = await open(dir(), { maxObjectBytes: 4096 });
    try {
      await assert.rejects(store.put(cm('big'), { data: 'x'.repeat(5000) }, '1', 'big-1'), (err: Error) => isLimit(err) && /over meta\.maxObjectBytes \(4096\)/.test(err.message));
      assert.equal(store.get(cm('big')), undefined);
      assert.equal(await store.put(cm('ok'), { data: 'x'.repeat(3000) }, '1', 'ok-1'), 'applied');
      await assert.rejects(store.put(cm('ok'), { data: 'x'.repeat(4100) }, '2', 'ok-2'), isLimit);
      assert.equal(store.get(cm('ok'))?.resourceVersion, '1', 'the update was refused, the held version served');
      assert.equal(await store.put(cm('ok'), { data: 'y'.repeat(4000) }, '3', 'ok-3'), 'applied', 'exactly under the limit (record overhead included)');
      assert.equal(store.limitState().refusing, false, 'one oversized object does not make the store full');
      assert.equal(limitLines(log, 'maxObjectBytes').length, 1, 'one line for both refusals (within the minute)');
    } finally {
      await store.close();
    }
  });
});

describe('MetaStore limits: maxLiveBytes', () => {
  test('a put that would grow past the total is refused; shrinking and non-growing updates, and deletes, still work', async () => {
    const { store, log } = await open(dir(), { maxLiveBytes: 20_000 });
    try {
      let i = 0;
      // Fill with ~1 KiB objects until refused.
      for (;;) {
        try {
          await store.put(cm(i), { data: 'z'.repeat(1000) }, '1', `f${i}`);
          i++;
        } catch (err) {
          assert.ok(isLimit(err), String(err));
          break;
        }
      }
      const held = store.size;
      assert.ok(held >= 15 && held <= 20, `held ${held}`);
      assert.ok(store.footprint.liveBytes <= 20_000);
      assert.equal(store.limitState().refusing, true);
      assert.match(String(limitLines(log, 'maxLiveBytes')[0]?.msg), /meta\.maxLiveBytes is 20000: default\/configmap\/c\d+ \(\d+ bytes more\) refused/);
      // Growing an existing object past the total: refused. Same size or smaller: accepted.
      await assert.rejects(store.put(cm(0), { data: 'z'.repeat(4000) }, '2', 'g0'), isLimit);
      assert.equal(await store.put(cm(0), { data: 'w'.repeat(1000) }, '3', 'same0'), 'applied');
      assert.equal(await store.put(cm(1), { data: 'w'.repeat(10) }, '2', 'shrink1'), 'applied');
      assert.equal(await store.delete(cm(2), 'del2'), 'applied');
      assert.equal(store.limitState().refusing, true, 'the last refused object (3 KiB more) still would not fit');
      for (const n of [3, 4]) assert.equal(await store.delete(cm(n), `del${n}`), 'applied');
      assert.equal(store.limitState().refusing, false, 'the refused object fits now');
      assert.equal(await store.put(cm(i), { data: 'z'.repeat(1000) }, '1', `f${i}`), 'applied');
    } finally {
      await store.close();
    }
  });
});

describe('MetaStore limits: restart with a full store', () => {
  test('everything held is served after a restart; new objects are still refused; with lower limits, a warning and the same rules', async () => {
    const d = dir();
    const first = await open(d, { maxObjects: 8 });
    for (let i = 0; i < 8; i++) await first.store.put(cm(i), { i }, '1', `p${i}`);
    await first.store.close();

    const { store } = await open(d, { maxObjects: 8 });
    try {
      assert.equal(store.size, 8);
      for (let i = 0; i < 8; i++) assert.deepEqual(store.get(cm(i))?.value, { i });
      await assert.rejects(store.put(cm('x'), {}, '1', 'x'), isLimit);
      assert.equal(await store.put(cm(3), { i: 3, v: 2 }, '2', 'u3'), 'applied');
    } finally {
      await store.close();
    }

    const lower = await open(d, { maxObjects: 5 });
    try {
      assert.equal(lower.store.size, 8, 'over the new limit: served, not dropped');
      assert.ok(lower.log.has(/opened over its limits \(8 objects, meta\.maxObjects is 5\)/));
      await assert.rejects(lower.store.put(cm('y'), {}, '1', 'y'), isLimit);
      assert.equal(await lower.store.put(cm(4), { i: 4, v: 2 }, '2', 'u4'), 'applied', 'an update still works');
      for (const i of [0, 1, 2, 3]) assert.equal(await lower.store.delete(cm(i), `d${i}`), 'applied');
      assert.equal(lower.store.size, 4);
      assert.equal(await lower.store.put(cm('y'), {}, '1', 'y'), 'applied', 'below the limit again');
    } finally {
      await lower.store.close();
    }
  });
});

describe('MetaManager and the store limits', () => {
  test('a refused insert is answered with LEDGE_ERR_STORE_LIMIT (not a storage error: EdgeHub ACKs it with the error), logged once, and EdgeStoreFull is True until there is room', async () => {
    const d = dir();
    const log = captureLog();
    const mm = createMetaManager({ dataDir: d, maxObjects: 3 }, log.logger);
    const bee = new Beehive({ log: silentLogger });
    bee.register(mm);
    bee.start();
    const hub = bee.context('websocket');
    const send = async (operation: string, name: string, rv: string) =>
      (
        await hub.sendSync(
          'metamanager',
          newMessage({ source: 'cloud', group: 'resource', operation, resource: cm(name), resourceVersion: rv, content: { name }, sync: true }),
          10_000,
        )
      ).content as ErrorContent | null;
    try {
      await eventually(() => mm.view.ready, 10_000, 'the store to open');
      assert.deepEqual(mm.storeCondition(), { type: 'EdgeStoreFull', status: 'False', reason: 'EdgeStoreHasRoom', message: 'edge metadata store accepts new objects' });
      for (const n of ['a', 'b', 'c']) assert.equal(await send('insert', n, '1'), null);
      for (let i = 0; i < 10; i++) {
        const reply = await send('insert', `over-${i}`, '1');
        assert.ok(hasCode(reply, ErrorCode.StoreLimit), JSON.stringify(reply));
        assert.ok(!hasCode(reply, ErrorCode.Storage));
      }
      assert.equal(log.lines.filter((l) => l.code === ErrorCode.StoreLimit).length, 1, 'ten refusals, one line');
      assert.equal(log.lines.filter((l) => l.level === 'error').length, 0, 'no error line per refused message');
      const full = mm.storeCondition();
      assert.equal(full.status, 'True');
      assert.equal(full.reason, 'EdgeStoreLimitReached');
      assert.match(full.message, /holds 3 objects \(meta\.maxObjects 3\)/);
      assert.equal(mm.health(), undefined, 'the node stays Ready: it runs what it holds');
      assert.equal(await send('delete', 'a', ''), null);
      assert.equal(mm.storeCondition().status, 'False');
      assert.equal(await send('insert', 'over-0', '1'), null);
    } finally {
      await bee.stop();
    }
  });
});
