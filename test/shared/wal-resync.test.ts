/**
 * AppendLog's `resync`: damage in the middle of a log (a flipped payload byte, a damaged
 * length field) is skipped and reported with its offset; the records after it are read;
 * only damage with nothing intact after it is a tail and cut off. Without `resync` the log
 * still ends at the first bad record (the outbox and the control plane's WAL rely on that).
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, statSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppendLog, frameRecord, type AppendLogOptions } from '../../shared/wal/index.js';
import { tempDir } from '../helpers/files.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

const cleanups: (() => void)[] = [];
after(() => {
  for (const c of cleanups) c();
});

/** A log file of `payloads`, and the file offset of each record. */
function writeLog(payloads: Uint8Array[]): { file: string; offsets: number[]; size: number } {
  const d = tempDir('ledge-wal-resync-');
  cleanups.push(d.cleanup);
  const file = join(d.path, 'a.log');
  const frames = payloads.map(frameRecord);
  const offsets: number[] = [];
  let at = 0;
  for (const f of frames) {
    offsets.push(at);
    at += f.length;
  }
  writeFileSync(file, Buffer.concat(frames));
  return { file, offsets, size: at };
}

function damage(file: string, fn: (b: Buffer) => void): void {
  const b = readFileSync(file);
  fn(b);
  writeFileSync(file, b);
}

async function openAll(file: string, opts: Omit<AppendLogOptions, 'onRecord'> = { resync: {} }) {
  const records: string[] = [];
  const r = await AppendLog.open(file, { ...opts, onRecord: (p) => records.push(dec(p)) });
  return { ...r, records };
}

const names = (n: number) => Array.from({ length: n }, (_, i) => `record-${i}-${'x'.repeat(20 + ((i * 37) % 300))}`);

describe('AppendLog resync: damage in the middle of the log', () => {
  test('a flipped payload byte: exactly that record is skipped and reported at its offset; the rest are read and the file keeps its bytes', async () => {
    const all = names(10);
    const { file, offsets, size } = writeLog(all.map(enc));
    damage(file, (b) => {
      b[offsets[4]! + 8 + 5]! ^= 0x40;
    });
    const r = await openAll(file);
    assert.deepEqual(r.records, [...all.slice(0, 4), ...all.slice(5)]);
    assert.deepEqual(r.corruptions, [{ offset: offsets[4], bytes: offsets[5]! - offsets[4]!, reason: 'checksum mismatch' }]);
    assert.equal(r.truncatedBytes, 0);
    assert.equal(statSync(file).size, size, 'nothing cut: the damage is not a tail');
    // Appends go after the last record; a reopen reads them (and reports the same damage).
    await r.log.append(enc('after'));
    await r.log.close();
    const again = await openAll(file);
    assert.deepEqual(again.records, [...all.slice(0, 4), ...all.slice(5), 'after']);
    assert.equal(again.corruptions.length, 1);
    await again.log.close();
  });

  test('without resync the log still ends at the first bad record (and is cut there)', async () => {
    const all = names(6);
    const { file, offsets } = writeLog(all.map(enc));
    damage(file, (b) => {
      b[offsets[2]! + 8 + 1]! ^= 0x01;
    });
    const r = await openAll(file, {});
    assert.deepEqual(r.records, all.slice(0, 2));
    assert.deepEqual(r.corruptions, []);
    assert.equal(statSync(file).size, offsets[2]);
    await r.log.close();
  });

  test('a length field damaged to run past the end of the file: the scan finds the next record', async () => {
    const all = names(8);
    const { file, offsets } = writeLog(all.map(enc));
    damage(file, (b) => {
      b[offsets[3]! + 1]! ^= 0x01; // the length grows by 64 KiB: past the end of this 3 KiB file
    });
    const r = await openAll(file);
    assert.deepEqual(r.records, [...all.slice(0, 3), ...all.slice(4)]);
    assert.equal(r.corruptions.length, 1);
    assert.equal(r.corruptions[0]!.offset, offsets[3]);
    assert.equal(r.corruptions[0]!.bytes, offsets[4]! - offsets[3]!);
    assert.match(r.corruptions[0]!.reason, /runs past the end of the file/);
    await r.log.close();
  });

  test('a length field damaged to a smaller plausible length, and one damaged to zero: both resynchronise on the next record', async () => {
    const all = names(12);
    const { file, offsets } = writeLog(all.map(enc));
    damage(file, (b) => {
      b.writeUInt32BE(9, offsets[2]!); // points inside its own payload
      b.writeUInt32BE(0, offsets[7]!);
    });
    const r = await openAll(file);
    assert.deepEqual(r.records, [...all.slice(0, 2), ...all.slice(3, 7), ...all.slice(8)]);
    assert.deepEqual(
      r.corruptions.map((c) => [c.offset, c.bytes, c.reason]),
      [
        [offsets[2], offsets[3]! - offsets[2]!, 'checksum mismatch'],
        [offsets[7], offsets[8]! - offsets[7]!, 'zero length'],
      ],
    );
    await r.log.close();
  });

  test('with the length intact, the record right after the damaged one wins over a frame embedded in its payload', async () => {
    // A log image stored as data: two valid frames back to back inside one payload (they pass every filter of the scan).
    const carrier = Buffer.concat([enc('before:'), frameRecord(enc('embedded-1')), frameRecord(enc('embedded-2'))]);
    const { file, offsets } = writeLog([enc('first'), carrier, enc('third')]);
    damage(file, (b) => {
      b[offsets[1]! + 8 + 2]! ^= 0x01; // inside "before:", ahead of the embedded frame
    });
    const r = await openAll(file);
    assert.deepEqual(r.records, ['first', 'third'], 'the embedded frame is not taken for a record');
    await r.log.close();
  });

  test('damage with nothing intact after it is a tail: cut off, not reported as corruption', async () => {
    const all = names(5);
    const { file, offsets, size } = writeLog(all.map(enc));
    damage(file, (b) => {
      b[offsets[4]! + 8 + 3]! ^= 0x02;
    });
    const r = await openAll(file);
    assert.deepEqual(r.records, all.slice(0, 4));
    assert.deepEqual(r.corruptions, []);
    assert.equal(r.truncatedBytes, size - offsets[4]!);
    assert.equal(statSync(file).size, offsets[4]);
    await r.log.close();
  });

  test('damage in the middle and a torn tail: the middle is skipped, the tail cut', async () => {
    const all = names(6);
    const { file, offsets, size } = writeLog(all.map(enc));
    damage(file, (b) => {
      b[offsets[1]! + 8]! ^= 0x80;
    });
    const torn = frameRecord(enc('torn-never-acknowledged'));
    appendFileSync(file, torn.subarray(0, torn.length - 4));
    const r = await openAll(file);
    assert.deepEqual(r.records, [all[0], ...all.slice(2)]);
    assert.equal(r.corruptions.length, 1);
    assert.equal(r.truncatedBytes, torn.length - 4);
    assert.equal(statSync(file).size, size);
    await r.log.close();
  });

  test('several damaged regions, records straddling small read chunks and the scan window: every intact record is read', async () => {
    const all = Array.from({ length: 200 }, (_, i) => `r${i}:${'y'.repeat((i * 131) % 900)}`);
    const { file, offsets } = writeLog(all.map(enc));
    const hit = [3, 4, 50, 120, 199 - 1];
    damage(file, (b) => {
      b[offsets[3]! + 8]! ^= 1; // payload
      b[offsets[4]! + 1]! ^= 0x7f; // length, next to the previous damage
      b[offsets[50]!]! ^= 0x01; // length high byte
      b.writeUInt32BE(0, offsets[120]! + 4); // checksum field
      b[offsets[198]! + 10]! ^= 0xff;
    });
    const r = await openAll(file, { resync: {}, readChunkBytes: 64 });
    assert.deepEqual(
      r.records,
      all.filter((_, i) => !hit.includes(i)),
    );
    // Two adjacent damaged records are one region.
    assert.deepEqual(
      r.corruptions.map((c) => c.offset),
      [offsets[3], offsets[50], offsets[120], offsets[198]],
    );
    assert.equal(r.corruptions[0]!.bytes, offsets[5]! - offsets[3]!);
    await r.log.close();
  });

  test('maxRecordBytes bounds what a scan may land on; a normal read still takes longer records', async () => {
    const big = 'B'.repeat(5000);
    const { file, offsets } = writeLog([enc('a'), enc('b'), enc(big), enc('c')]);
    // Undamaged: a record over maxRecordBytes is read as usual.
    const clean = await openAll(file, { resync: { maxRecordBytes: 1000 } });
    assert.deepEqual(clean.records, ['a', 'b', big, 'c']);
    await clean.log.close();
    // The length of "b" damaged: the scan cannot land on the 5000-byte record, so it resumes at "c".
    damage(file, (b) => {
      b[offsets[1]!]! ^= 0x20;
    });
    const r = await openAll(file, { resync: { maxRecordBytes: 1000 } });
    assert.deepEqual(r.records, ['a', 'c']);
    assert.deepEqual(
      r.corruptions.map((c) => [c.offset, c.bytes]),
      [[offsets[1], offsets[3]! - offsets[1]!]],
    );
    await r.log.close();
  });
});
