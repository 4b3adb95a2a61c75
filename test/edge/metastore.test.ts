/**
 * MetaStore on real files in a temp dir: its two guards tested apart, so that neither
 * hides a loss of the other:
 * - de-duplication by message id: a resend is recognised by its id even when its version
 *   looks newer (or, for a delete, has no version at all): only the id check catches it;
 * - versions never go backwards: a different message with an older (or equal) version is
 *   refused: only the version check catches it.
 * Both survive a reopen (the ids and versions are in the log) and a compaction (the ids
 * are in the snapshot).
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { MetaStore, type MetaStoreOptions } from '../../edge/metamanager/index.js';
import { createLogger, silentLogger } from '../../shared/log/index.js';
import { frameRecord } from '../../shared/wal/index.js';
import { tempDir, readMetaLog } from '../helpers/files.js';

const cleanups: (() => void)[] = [];
after(() => {
  for (const c of cleanups) c();
});
function dir(): string {
  const d = tempDir('ledge-metastore-');
  cleanups.push(d.cleanup);
  return d.path;
}
const open = (d: string, o: MetaStoreOptions = {}) => MetaStore.open(d, silentLogger, o);
const CM = 'default/configmap/app';

describe('MetaStore: de-duplication by message id', () => {
  test('a resend (same id) carrying a newer-looking version is not applied again', async () => {
    const store = await open(dir());
    try {
      assert.equal(await store.put(CM, { v: 'first' }, '5', 'msg-1'), 'applied');
      // The version check alone would accept this (6 > 5): only the id says it is a resend.
      assert.equal(await store.put(CM, { v: 'resend' }, '6', 'msg-1'), 'duplicate');
      assert.deepEqual(store.get(CM), { resource: CM, resourceVersion: '5', value: { v: 'first' } });
      assert.equal(store.seen('msg-1'), true);
      // A resend for another resource under the same id is the same message: also refused.
      assert.equal(await store.put('default/configmap/other', { v: 'x' }, '1', 'msg-1'), 'duplicate');
      assert.equal(store.get('default/configmap/other'), undefined);
    } finally {
      await store.close();
    }
  });

  test('a resent delete (no version to compare) does not delete the object created after it', async () => {
    const store = await open(dir());
    try {
      await store.put(CM, { gen: 1 }, '3', 'put-1');
      assert.equal(await store.delete(CM, 'del-1'), 'applied');
      assert.equal(await store.put(CM, { gen: 2 }, '9', 'put-2'), 'applied', 'recreated');
      assert.equal(await store.delete(CM, 'del-1'), 'duplicate', 'the old delete, resent');
      assert.deepEqual(store.get(CM)?.value, { gen: 2 });
    } finally {
      await store.close();
    }
  });

  test('applied ids survive a reopen: a resend after a restart is still recognised', async () => {
    const d = dir();
    const store = await open(d);
    await store.put(CM, { v: 1 }, '5', 'msg-put');
    await store.put('default/secret/s', { v: 1 }, '2', 'msg-put-s');
    await store.delete('default/secret/s', 'msg-del');
    await store.close();

    const again = await open(d);
    try {
      assert.equal(again.seen('msg-put'), true);
      assert.equal(again.seen('msg-del'), true);
      assert.equal(again.seen('never-sent'), false);
      assert.equal(await again.put(CM, { v: 'resend' }, '6', 'msg-put'), 'duplicate');
      assert.equal(again.get(CM)?.resourceVersion, '5');
      await again.put('default/secret/s', { v: 2 }, '8', 'msg-recreate');
      assert.equal(await again.delete('default/secret/s', 'msg-del'), 'duplicate');
      assert.deepEqual(again.get('default/secret/s')?.value, { v: 2 });
    } finally {
      await again.close();
    }
  });

  test('applied ids survive a compaction (they are in the snapshot) and the reopen after it', async () => {
    const d = dir();
    const store = await open(d, { compactAfter: 20 });
    for (let i = 1; i <= 60; i++) assert.equal(await store.put(CM, { i }, String(i), `m-${i}`), 'applied');
    await store.close(); // waits for a running compaction
    const log = readMetaLog(d);
    assert.ok(log.length < 60, `compacted (${log.length} records for 60 writes)`);

    const again = await open(d, { compactAfter: 20 });
    try {
      assert.equal(again.get(CM)?.resourceVersion, '60');
      assert.equal(await again.put(CM, { i: 'resend' }, '61', 'm-60'), 'duplicate', 'the latest id');
      assert.equal(await again.put(CM, { i: 'resend' }, '61', 'm-1'), 'duplicate', 'an id from before the compaction');
      assert.equal(again.get(CM)?.resourceVersion, '60');
    } finally {
      await again.close();
    }
  });

  test('the id window is bounded: the oldest ids are forgotten first, in memory and after a reopen', async () => {
    const d = dir();
    const store = await open(d, { idWindow: 3 });
    for (let i = 1; i <= 5; i++) await store.put(`default/configmap/c${i}`, { i }, '1', `id-${i}`);
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((i) => store.seen(`id-${i}`)),
      [false, false, true, true, true],
    );
    await store.close();
    const again = await open(d, { idWindow: 3 });
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((i) => again.seen(`id-${i}`)),
      [false, false, true, true, true],
    );
    await again.close();
  });
});

describe('MetaStore: versions never go backwards', () => {
  test('a different message (new id) with an older version is refused', async () => {
    const store = await open(dir());
    try {
      await store.put(CM, { v: 'new' }, '10', 'msg-a');
      // De-duplication alone would accept this (msg-b was never seen): only the version says it is stale.
      assert.equal(await store.put(CM, { v: 'old' }, '9', 'msg-b'), 'stale');
      assert.equal(await store.put(CM, { v: 'same' }, '10', 'msg-c'), 'stale', 'an equal version is not newer');
      assert.deepEqual(store.get(CM), { resource: CM, resourceVersion: '10', value: { v: 'new' } });
      // Versions compare as numbers, not strings ('10' < '9' as strings).
      assert.equal(await store.put(CM, { v: 'newer' }, '11', 'msg-d'), 'applied');
      assert.equal(await store.put('default/configmap/n', { v: 1 }, '9', 'msg-e'), 'applied');
      assert.equal(await store.put('default/configmap/n', { v: 2 }, '10', 'msg-f'), 'applied');
    } finally {
      await store.close();
    }
  });

  test('the held version survives a reopen: an older version is still refused after a restart', async () => {
    const d = dir();
    const store = await open(d);
    await store.put(CM, { v: 'held' }, '20', 'msg-a');
    await store.close();
    const again = await open(d);
    try {
      assert.equal(await again.put(CM, { v: 'older' }, '19', 'msg-b'), 'stale');
      assert.deepEqual(again.get(CM)?.value, { v: 'held' });
      assert.equal(await again.put(CM, { v: 'newer' }, '21', 'msg-c'), 'applied');
    } finally {
      await again.close();
    }
  });
});

describe('MetaStore: durability', () => {
  test('what put and delete resolved is there after a reopen; a torn tail is cut off with one warning', async () => {
    const d = dir();
    const store = await open(d);
    await store.put('default/configmap/a', { a: 1 }, '1', 'p-a');
    await store.put('default/configmap/b', { b: 1 }, '1', 'p-b');
    await store.delete('default/configmap/a', 'd-a');
    await store.close();
    const torn = frameRecord(new TextEncoder().encode(JSON.stringify({ t: 'put', k: 'default/configmap/c', v: {}, rv: '1', id: 'p-c' })));
    appendFileSync(join(d, 'meta.log'), torn.subarray(0, torn.length - 3));

    const lines: string[] = [];
    const again = await MetaStore.open(d, createLogger({ level: 'debug', format: 'json', write: (l) => void lines.push(l) }));
    try {
      assert.deepEqual(
        again.list().map((o) => o.resource),
        ['default/configmap/b'],
      );
      assert.equal(again.seen('p-c'), false, 'the torn write was never acknowledged');
      assert.equal(lines.filter((l) => /torn tail/.test(l)).length, 1);
    } finally {
      await again.close();
    }
  });
});
