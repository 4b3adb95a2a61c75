/**
 * The append log's fsync, seen through file handles whose sync() the test holds or
 * fails (the `openFile` seam): an append is acknowledged only after its fsync
 * completed; a failed fsync rejects the whole batch with a StorageError and cuts its
 * bytes off; compaction fsyncs the temp file before it replaces the log.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { AppendLog, readRecords } from '../../shared/wal/index.js';
import { StorageError } from '../../shared/errors/index.js';
import { tempDir } from '../helpers/files.js';
import { eventually } from '../helpers/process.js';
import { controlledSync, track, turns } from '../helpers/fsync.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

const cleanups: (() => void)[] = [];
after(() => {
  for (const c of cleanups) c();
});
function logFile(): string {
  const d = tempDir('ledge-wal-fsync-');
  cleanups.push(d.cleanup);
  return join(d.path, 'a.log');
}
/** The records in the file now (what a restart would find). */
const onDisk = (file: string) => readRecords(readFileSync(file)).records.map(dec);

describe('AppendLog fsync', () => {
  test('append() resolves only after its fsync completed: held sync, pending append; released, resolved', async () => {
    const file = logFile();
    const ctl = controlledSync();
    const { log } = await AppendLog.open(file, { openFile: ctl.openFile });
    try {
      ctl.mode = 'hold';
      const first = track(log.append(enc('one')));
      await eventually(() => ctl.held.length === 1, 5000, 'the append to reach fsync');
      // The bytes are written (in the page cache) but not yet durable: not acknowledged.
      assert.deepEqual(onDisk(file), ['one'], 'written before the fsync');
      await turns();
      assert.equal(first.settled, false, 'append() resolved while its fsync was still pending');
      // Appends arriving meanwhile wait for the next batch, and for its own fsync.
      const second = track(log.append(enc('two')));
      await turns();
      assert.equal(second.settled, false);
      assert.equal(ctl.held.length, 1, 'one fsync per batch: the next batch waits for this one');

      await ctl.held[0]!.release();
      await first.value;
      await eventually(() => ctl.held.length === 1, 5000, 'the second batch to reach its fsync');
      await turns();
      assert.equal(second.settled, false, 'the second append waits for its own fsync');
      ctl.mode = 'pass';
      await ctl.held[0]!.release();
      await second.value;
      assert.deepEqual(ctl.calls, [file, file]);
    } finally {
      ctl.mode = 'pass';
      for (const h of [...ctl.held]) await h.release();
      await log.close();
    }
  });

  test('a failing fsync rejects every append of the batch with LEDGE_ERR_STORAGE and truncates their bytes; the log goes on', async () => {
    const file = logFile();
    const ctl = controlledSync();
    const { log } = await AppendLog.open(file, { openFile: ctl.openFile });
    try {
      await log.append(enc('kept'));
      const sizeBefore = statSync(file).size;
      ctl.mode = 'hold';
      // One batch: the first append starts a flush that is held at fsync; two more queue behind it.
      const a = log.append(enc('lost-a'));
      await eventually(() => ctl.held.length === 1, 5000, 'batch A at fsync');
      const b = log.append(enc('lost-b'));
      const c = log.append(enc('lost-c'));
      ctl.held[0]!.fail();
      const isStorage = (err: unknown) => err instanceof StorageError && (err as StorageError).code === 'LEDGE_ERR_STORAGE' && /EIO/.test((err as Error).message);
      await assert.rejects(a, isStorage);
      // b and c form the next batch: it fails the same way.
      await eventually(() => ctl.held.length === 1, 5000, 'batch B+C at fsync');
      ctl.held[0]!.fail();
      await assert.rejects(b, isStorage);
      await assert.rejects(c, isStorage);
      assert.equal(statSync(file).size, sizeBefore, 'the bytes of the failed batches were cut off');
      assert.equal(log.byteLength, sizeBefore);
      assert.deepEqual(onDisk(file), ['kept'], 'no unacknowledged record is left for a restart to find');

      // The log recovers once fsync works again, appending on a record boundary.
      ctl.mode = 'pass';
      await log.append(enc('after'));
      assert.deepEqual(onDisk(file), ['kept', 'after']);
    } finally {
      ctl.mode = 'pass';
      await log.close();
    }
    const again = await AppendLog.open(file, { onRecord: () => {} });
    assert.equal(again.recordCount, 2);
    assert.equal(again.truncatedBytes, 0);
    await again.log.close();
  });

  test('rewrite() fsyncs the temp file before renaming it over the log', async () => {
    const file = logFile();
    const ctl = controlledSync();
    const { log } = await AppendLog.open(file, { openFile: ctl.openFile });
    try {
      for (const s of ['old-1', 'old-2', 'old-3']) await log.append(enc(s));
      ctl.mode = 'hold';
      const rewrite = track(log.rewrite([enc('snap-1'), enc('snap-2')]));
      await eventually(() => ctl.held.length === 1, 5000, 'the compaction to reach fsync');
      const held = ctl.held[0]!;
      assert.equal(held.path, `${file}.tmp`, 'the fsync is on the temp file');
      assert.deepEqual(onDisk(`${file}.tmp`), ['snap-1', 'snap-2'], 'the snapshot is written before its fsync');
      await turns();
      assert.equal(rewrite.settled, false, 'rewrite() finished while the temp file fsync was pending');
      assert.deepEqual(onDisk(file), ['old-1', 'old-2', 'old-3'], 'the log was replaced before the temp file was durable');
      ctl.mode = 'pass';
      await held.release();
      assert.deepEqual(await rewrite.value, { records: 2, bytes: statSync(file).size });
      assert.deepEqual(onDisk(file), ['snap-1', 'snap-2']);
      assert.equal(existsSync(`${file}.tmp`), false);
      // The reopened handle is the seam's too: appends after the compaction are fsynced.
      const before = ctl.calls.length;
      await log.append(enc('after'));
      assert.equal(ctl.calls.length, before + 1);
      assert.equal(ctl.calls.at(-1), file);
    } finally {
      ctl.mode = 'pass';
      for (const h of [...ctl.held]) await h.release();
      await log.close();
    }
  });

  test('a failing temp-file fsync leaves the old log whole and removes the temp file', async () => {
    const file = logFile();
    const ctl = controlledSync();
    const { log } = await AppendLog.open(file, { openFile: ctl.openFile });
    try {
      for (const s of ['old-1', 'old-2']) await log.append(enc(s));
      ctl.mode = 'fail';
      await assert.rejects(log.rewrite([enc('snap')]), (err: Error & { code?: string }) => err.code === 'LEDGE_ERR_STORAGE' && /EIO/.test(err.message));
      assert.deepEqual(onDisk(file), ['old-1', 'old-2']);
      assert.equal(existsSync(`${file}.tmp`), false);
      ctl.mode = 'pass';
      await log.append(enc('old-3'));
      assert.deepEqual(onDisk(file), ['old-1', 'old-2', 'old-3']);
    } finally {
      ctl.mode = 'pass';
      await log.close();
    }
  });
});
