/**
 * MetaStore on real files in a temp dir: its two guards tested apart, so that neither
 * hides a loss of the other:
 * - de-duplication by message id: a resend is recognised by its id even when its version
 *   looks newer (or, for a delete, has no version at all): only the id check catches it;
 * - versions never go backwards: a different message with an older (or equal) version is
 *   refused: only the version check catches it.
 * Both survive a reopen (the ids and versions are in the log) and a compaction (the ids
 * are in the snapshot).
 * Records are CBOR (byte strings survive a restart); logs written as JSON by the previous
 * version still open.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MetaStore, type MetaStoreOptions } from '../../edge/metamanager/index.js';
import { createLogger, silentLogger } from '../../shared/log/index.js';
import { frameRecord, readRecords } from '../../shared/wal/index.js';
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

  test('a delete that found nothing remembers its id on disk: its resend after a restart does not delete the recreated object', async () => {
    const d = dir();
    const store = await open(d);
    assert.equal(await store.delete(CM, 'del-absent'), 'stale');
    assert.equal(store.seen('del-absent'), true);
    await store.close();

    const again = await open(d);
    try {
      assert.equal(again.seen('del-absent'), true, 'the id survived the restart');
      assert.equal(await again.put(CM, { gen: 2 }, '4', 'put-recreate'), 'applied');
      assert.equal(await again.delete(CM, 'del-absent'), 'duplicate', 'the resent delete');
      assert.deepEqual(again.get(CM)?.value, { gen: 2 });
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

/** The first byte of every record in a store's log: 0x01 for CBOR, 0x7b (`{`) for JSON. */
function formats(d: string): number[] {
  return readRecords(readFileSync(join(d, 'meta.log'))).records.map((r) => r[0] ?? -1);
}
/** A log written by the previous version: JSON records. */
function writeJsonLog(d: string, records: object[]): void {
  writeFileSync(join(d, 'meta.log'), Buffer.concat(records.map((r) => frameRecord(new TextEncoder().encode(JSON.stringify(r))))));
}

describe('MetaStore: record format', () => {
  const value = () => ({
    binaryData: { 'blob.bin': new Uint8Array([0, 1, 2, 127, 128, 254, 255]), empty: new Uint8Array(0) },
    fromBuffer: Buffer.from('héllo, bytes'),
    numbers: [0, -1, 0.1, 1.5e300, -2.5, 2 ** 53 - 1, -(2 ** 31)],
    strings: ['', 'plain', 'ünïcödé €', '😀 astral', '{"looks":"like json"}'],
    nested: { a: [{ b: null, c: true, d: false }] },
  });
  /** What the value must read back as: byte strings as Uint8Array, byte for byte. */
  const expected = () => {
    const v = value();
    return { ...v, fromBuffer: new Uint8Array(v.fromBuffer) };
  };

  test('byte strings, numbers and strings round-trip exactly through a reopen and a compaction', async () => {
    const d = dir();
    const store = await open(d, { compactAfter: 10 });
    await store.put(CM, value(), '1', 'bytes-1');
    await store.close();

    const again = await open(d, { compactAfter: 10 });
    const got = again.get(CM)?.value as ReturnType<typeof value>;
    assert.ok(got.binaryData['blob.bin'] instanceof Uint8Array, 'bytes come back as bytes, not as an object of indexes');
    assert.deepEqual(got, expected());
    // Enough writes to compact: the snapshot carries the bytes too.
    for (let i = 2; i <= 30; i++) await again.put('default/configmap/churn', { i }, String(i), `churn-${i}`);
    await again.close();
    assert.ok(formats(d).length < 31, 'compacted');

    const third = await open(d);
    try {
      assert.deepEqual(third.get(CM)?.value, expected());
      assert.equal(third.get(CM)?.resourceVersion, '1');
    } finally {
      await third.close();
    }
  });

  test('a log written in the old JSON format opens: its objects, versions and ids are served', async () => {
    const d = dir();
    writeJsonLog(d, [
      { t: 'ids', ids: ['old-snap-id'] },
      { t: 'put', k: CM, rv: '7', v: { data: { k: 'v' } }, id: 'old-put' },
      { t: 'put', k: 'default/secret/gone', rv: '2', v: { x: 1 }, id: 'old-put-2' },
      { t: 'del', k: 'default/secret/gone', id: 'old-del' },
    ]);
    const store = await open(d);
    try {
      assert.deepEqual(store.list(), [{ resource: CM, resourceVersion: '7', value: { data: { k: 'v' } } }]);
      for (const id of ['old-snap-id', 'old-put', 'old-put-2', 'old-del']) assert.equal(store.seen(id), true, id);
      assert.equal(await store.put(CM, { data: { k: 'older' } }, '6', 'new-id'), 'stale', 'the old version is held');
    } finally {
      await store.close();
    }
  });

  test('old JSON and new CBOR records in one log; new records are CBOR and compaction rewrites all in CBOR', async () => {
    const d = dir();
    writeJsonLog(d, [
      { t: 'put', k: 'default/configmap/old', rv: '1', v: { from: 'json' }, id: 'j-1' },
      { t: 'put', k: CM, rv: '1', v: { gen: 1 }, id: 'j-2' },
    ]);
    const store = await open(d, { compactAfter: 10 });
    await store.put(CM, { gen: 2, raw: new Uint8Array([9, 8, 7]) }, '2', 'c-1');
    await store.put('default/configmap/new', { from: 'cbor' }, '1', 'c-2');
    await store.close();
    assert.deepEqual(formats(d), [0x7b, 0x7b, 0x01, 0x01], 'old records kept as they are, new ones in CBOR');

    const mixed = await open(d, { compactAfter: 10 });
    assert.deepEqual(
      mixed.list().map((o) => [o.resource, o.resourceVersion, o.value]),
      [
        ['default/configmap/old', '1', { from: 'json' }],
        [CM, '2', { gen: 2, raw: new Uint8Array([9, 8, 7]) }],
        ['default/configmap/new', '1', { from: 'cbor' }],
      ],
    );
    for (const id of ['j-1', 'j-2', 'c-1', 'c-2']) assert.equal(mixed.seen(id), true, id);
    for (let i = 1; i <= 20; i++) await mixed.put('default/configmap/churn', { i }, String(i), `churn-${i}`);
    await mixed.close();
    const after = formats(d);
    assert.ok(after.length < 24, `compacted (${after.length} records)`);
    assert.ok(
      after.every((f) => f === 0x01),
      `every record CBOR after compaction: ${after.join(',')}`,
    );

    const compacted = await open(d);
    try {
      assert.deepEqual(compacted.get('default/configmap/old')?.value, { from: 'json' });
      assert.deepEqual(compacted.get(CM)?.value, { gen: 2, raw: new Uint8Array([9, 8, 7]) });
      assert.equal(compacted.seen('j-1'), true, 'ids from JSON records carried into the snapshot');
    } finally {
      await compacted.close();
    }
  });

  test('a record of an unknown format is skipped with one error line; the others are served', async () => {
    const d = dir();
    const store = await open(d);
    await store.put(CM, { ok: true }, '1', 'known');
    await store.close();
    appendFileSync(join(d, 'meta.log'), frameRecord(new Uint8Array([0x02, 0xa0])));
    const lines: string[] = [];
    const again = await MetaStore.open(d, createLogger({ level: 'debug', format: 'json', write: (l) => void lines.push(l) }));
    try {
      assert.deepEqual(again.get(CM)?.value, { ok: true });
      assert.equal(lines.filter((l) => /record unreadable.*format byte 2/.test(l)).length, 1, lines.join('\n'));
    } finally {
      await again.close();
    }
  });
});
