/**
 * The append-only log on real files: durability across reopen, torn tails from a
 * crash, corruption, group commit, compaction, and write failures.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, writeFileSync, truncateSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AppendLog, frameRecord } from '../../shared/wal/index.js';
import { tempDir } from '../helpers/files.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe('AppendLog', () => {
  test('records survive close and reopen, in order', async () => {
    const d = tempDir();
    try {
      const file = join(d.path, 'a.log');
      const { log } = await AppendLog.open(file);
      await Promise.all(Array.from({ length: 100 }, (_, i) => log.append(enc(`r${i}`))));
      await log.close();
      const { records, truncatedBytes, log: again } = await AppendLog.open(file);
      assert.equal(truncatedBytes, 0);
      assert.deepEqual(records.map(dec), Array.from({ length: 100 }, (_, i) => `r${i}`));
      await again.close();
    } finally {
      d.cleanup();
    }
  });

  test('a torn tail (crash mid-write) is cut off and later appends start clean', async () => {
    const d = tempDir();
    try {
      const file = join(d.path, 'a.log');
      const { log } = await AppendLog.open(file);
      await log.append(enc('kept-1'));
      await log.append(enc('kept-2'));
      await log.close();
      const whole = frameRecord(enc('torn-record-never-acknowledged'));
      appendFileSync(file, whole.subarray(0, whole.length - 5));
      const r = await AppendLog.open(file);
      assert.deepEqual(r.records.map(dec), ['kept-1', 'kept-2']);
      assert.equal(r.truncatedBytes, whole.length - 5);
      await r.log.append(enc('after'));
      await r.log.close();
      const r2 = await AppendLog.open(file);
      assert.deepEqual(r2.records.map(dec), ['kept-1', 'kept-2', 'after']);
      await r2.log.close();
    } finally {
      d.cleanup();
    }
  });

  test('a corrupted record (bad checksum) ends the readable log there', async () => {
    const d = tempDir();
    try {
      const file = join(d.path, 'a.log');
      const { log } = await AppendLog.open(file);
      for (const s of ['one', 'two', 'three']) await log.append(enc(s));
      await log.close();
      const bytes = readFileSync(file);
      bytes[bytes.length - 2] ^= 0xff; // flip a bit inside "three"
      writeFileSync(file, bytes);
      const r = await AppendLog.open(file);
      assert.deepEqual(r.records.map(dec), ['one', 'two']);
      await r.log.close();
    } finally {
      d.cleanup();
    }
  });

  test('a huge declared length is treated as corruption, not allocated', async () => {
    const d = tempDir();
    try {
      const file = join(d.path, 'a.log');
      writeFileSync(file, Buffer.from([0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0, 1, 2, 3]));
      const r = await AppendLog.open(file);
      assert.equal(r.records.length, 0);
      assert.equal(r.truncatedBytes, 11);
      assert.equal(statSync(file).size, 0);
      await r.log.close();
    } finally {
      d.cleanup();
    }
  });

  test('rewrite compacts atomically and appends continue after it', async () => {
    const d = tempDir();
    try {
      const file = join(d.path, 'a.log');
      const { log } = await AppendLog.open(file);
      for (let i = 0; i < 50; i++) await log.append(enc(`old${i}`));
      await log.rewrite([enc('snapshot')]);
      await log.append(enc('new'));
      await log.close();
      const r = await AppendLog.open(file);
      assert.deepEqual(r.records.map(dec), ['snapshot', 'new']);
      await r.log.close();
    } finally {
      d.cleanup();
    }
  });

  test('writing to a full device (/dev/full) fails cleanly with LEDGE_ERR_STORAGE', async (t) => {
    try {
      statSync('/dev/full');
    } catch {
      t.skip('/dev/full not available');
      return;
    }
    const { log } = await AppendLog.open('/dev/full').catch(() => ({ log: undefined }));
    if (!log) {
      t.skip('cannot open /dev/full');
      return;
    }
    await assert.rejects(log.append(enc('x')), (err: Error & { code?: string }) => err.code === 'LEDGE_ERR_STORAGE' && /ENOSPC|no space/i.test(err.message));
    // The log object stays usable for the next attempt (it fails the same way, no crash).
    await assert.rejects(log.append(enc('y')), { code: 'LEDGE_ERR_STORAGE' });
    await log.close();
  });

  test('truncated header bytes at the end are ignored', async () => {
    const d = tempDir();
    try {
      const file = join(d.path, 'a.log');
      const { log } = await AppendLog.open(file);
      await log.append(enc('x'));
      await log.close();
      appendFileSync(file, Buffer.from([0, 0, 0]));
      const r = await AppendLog.open(file);
      assert.deepEqual(r.records.map(dec), ['x']);
      await r.log.close();
      truncateSync(file, 0);
    } finally {
      d.cleanup();
    }
  });

  test('compaction under concurrent appends loses nothing: every acknowledged record is in the snapshot or after it', async () => {
    const d = tempDir();
    try {
      const file = join(d.path, 'a.log');
      const { log } = await AppendLog.open(file);
      // The caller's state, updated only once an append resolved (like the outbox and the store).
      const state: string[] = [];
      const append = async (x: string) => {
        await log.append(enc(x));
        state.push(x);
      };
      const writers: Promise<void>[] = [];
      let compactions = Promise.resolve();
      for (let i = 0; i < 1000; i++) {
        writers.push(append(`r${i}`));
        // One compaction at a time (as the outbox and the store do), overlapping the appends.
        if (i % 150 === 100) writers.push((compactions = compactions.then(() => log.rewrite(() => state.map(enc)))));
        // Appends keep arriving, spaced so the log goes idle between them, while each compaction does its I/O.
        await new Promise((r) => setTimeout(r, 1));
      }
      await Promise.all(writers);
      await log.close();
      const r = await AppendLog.open(file);
      const got = r.records.map(dec);
      const counts = new Map<string, number>();
      for (const x of got) counts.set(x, (counts.get(x) ?? 0) + 1);
      for (let i = 0; i < 1000; i++) assert.equal(counts.get(`r${i}`), 1, `r${i} present exactly once`);
      await r.log.close();
    } finally {
      d.cleanup();
    }
  });
});

