/**
 * The edge metadata store against crashes and damaged files (issue 10, "Store"):
 * - kill -9 during a burst of writes (a real child process writing through MetaStore, with
 *   compactions running): on reopen every write the child saw acknowledged is there, no
 *   object is older than acknowledged, and no message id is applied twice;
 * - a torn final record (the file cut short): recovered, the tail cut, one warning;
 * - a record damaged in the middle (a payload byte, and separately its length field):
 *   detected by its CRC, one error line naming the offset, the records after it recovered,
 *   a copy of the damaged log kept, and the log rewritten so the next start is clean.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MetaStore } from '../../edge/metamanager/index.js';
import { silentLogger } from '../../shared/log/index.js';
import { captureLog } from '../helpers/cloud.js';
import { eventually, repoRoot, startProcess } from '../helpers/process.js';
import { readMetaLog, tempDir } from '../helpers/files.js';

const cleanups: (() => void)[] = [];
after(() => {
  for (const c of cleanups) c();
});
function dir(): string {
  const d = tempDir('ledge-metastore-crash-');
  cleanups.push(d.cleanup);
  return d.path;
}

/** File offsets of the records of a log (its framing: u32 length, u32 crc, payload). */
function recordOffsets(file: string): number[] {
  const b = readFileSync(file);
  const out: number[] = [];
  for (let at = 0; at + 8 <= b.length; at += 8 + b.readUInt32BE(at)) out.push(at);
  return out;
}

describe('MetaStore: kill -9 during a burst of writes', () => {
  test('every acknowledged write survives, none is applied twice, across three crashes (some during compactions)', async () => {
    const d = dir();
    /** key → the highest operation the child printed as durable, over all rounds. */
    const acked = new Map<string, number>();
    for (let round = 1; round <= 3; round++) {
      const child = startProcess(['--import', 'tsx', join(repoRoot, 'test/edge/fixtures/metastore-writer.ts'), d, String(round)], {}, `writer-${round}`);
      try {
        await child.waitFor(/^open$/m, 30_000);
        // Enough operations that several compactions ran (compactAfter 150), then kill it mid-burst.
        await eventually(() => (child.output().match(/^ack /gm)?.length ?? 0) >= 1500, 30_000, 'the child to acknowledge 1500 writes');
      } finally {
        await child.kill9();
      }
      for (const m of child.output().matchAll(/^ack (\S+) (\d+)$/gm)) acked.set(m[1]!, Math.max(acked.get(m[1]!) ?? 0, Number(m[2])));

      const store = await MetaStore.open(d, silentLogger, { idWindow: 1_000_000 });
      try {
        for (const [key, c] of acked) {
          // One operation per key may have been in flight: the state is after the last acknowledged one, or after the next.
          const held = store.get(key);
          const afterOp = (n: number) => (n % 5 === 0 ? undefined : String(n));
          const ok = [afterOp(c), afterOp(c + 1)];
          assert.ok(ok.includes(held?.resourceVersion), `${key}: acknowledged up to ${c}, store holds ${held ? `rv ${held.resourceVersion}` : 'nothing'}`);
          if (held) assert.equal((held.value as { c: number }).c, Number(held.resourceVersion), `${key}: the value is the version's`);
          assert.equal(store.seen(`${key}#${c}`), true, `${key}#${c} was acknowledged, so its id is remembered`);
          // A resend of the acknowledged message is recognised, not applied again.
          const resend = c % 5 === 0 ? await store.delete(key, `${key}#${c}`) : await store.put(key, { c }, String(c), `${key}#${c}`);
          assert.equal(resend, 'duplicate', `${key}#${c} resent`);
        }
      } finally {
        await store.close();
      }
      // No message id appears twice in the log: nothing was written twice (a compaction's snapshot carries ids in one `ids` record).
      const ids = readMetaLog(d)
        .map((r) => r.id)
        .filter((id): id is string => id !== undefined);
      assert.equal(new Set(ids).size, ids.length, 'each message id is in the log at most once');
    }
    assert.ok(acked.size >= 3 * 64 - 8, `the burst reached most of the keys of every round (${acked.size})`);
  });
});

describe('MetaStore: damaged files', () => {
  /** A store of 30 configmaps written one by one (one record each), closed. */
  async function filled(): Promise<{ d: string; file: string; offsets: number[] }> {
    const d = dir();
    const store = await MetaStore.open(d, silentLogger);
    for (let i = 0; i < 30; i++) await store.put(`default/configmap/c${i}`, { i, data: 'd'.repeat(50 + i) }, String(i + 1), `m-${i}`);
    await store.close();
    const file = join(d, 'meta.log');
    const offsets = recordOffsets(file);
    assert.equal(offsets.length, 30);
    return { d, file, offsets };
  }

  test('a torn final record (the file cut short): the others recovered, the tail cut, one warning', async () => {
    const { d, file, offsets } = await filled();
    const size = statSync(file).size;
    truncateSync(file, size - 7);
    const log = captureLog();
    const store = await MetaStore.open(d, log.logger);
    try {
      assert.equal(store.size, 29);
      assert.equal(store.get('default/configmap/c29'), undefined);
      assert.deepEqual(store.get('default/configmap/c28')?.value, { i: 28, data: 'd'.repeat(78) });
      assert.equal(statSync(file).size, offsets[29], 'cut at the start of the torn record');
      assert.equal(log.lines.filter((l) => l.level === 'warn' && /torn tail of \d+ bytes/.test(String(l.msg))).length, 1);
      assert.equal(log.lines.filter((l) => l.level === 'error').length, 0, 'a torn tail is not damage');
      await store.put('default/configmap/after', { ok: true }, '1', 'm-after');
    } finally {
      await store.close();
    }
    const again = await MetaStore.open(d, silentLogger);
    assert.equal(again.size, 30);
    await again.close();
  });

  for (const where of ['payload', 'length field'] as const) {
    test(`a record damaged in the middle (${where}): one error line with its offset, the records after it recovered, a copy kept, the log rewritten`, async () => {
      const { d, file, offsets } = await filled();
      const original = readFileSync(file);
      const damaged = Buffer.from(original);
      if (where === 'payload') damaged[offsets[12]! + 8 + 20]! ^= 0x04;
      else damaged[offsets[12]! + 2]! ^= 0x40; // the length grows by 16 KiB: it would swallow the records after it
      writeFileSync(file, damaged);

      const log = captureLog();
      const store = await MetaStore.open(d, log.logger);
      try {
        assert.equal(store.size, 29, 'every record but the damaged one');
        assert.equal(store.get('default/configmap/c12'), undefined, 'the damaged record is lost');
        for (const i of [0, 11, 13, 29]) assert.equal(store.get(`default/configmap/c${i}`)?.resourceVersion, String(i + 1), `c${i}`);
        const errors = log.lines.filter((l) => l.level === 'error');
        assert.equal(errors.length, 1, JSON.stringify(errors));
        const line = String(errors[0]!.msg);
        assert.match(line, new RegExp(`${offsets[13]! - offsets[12]!} bytes at offset ${offsets[12]} \\((checksum mismatch|length \\d+ runs past the end of the file)\\)`));
        assert.match(line, /29 intact ones, including those after the damage, were recovered/);
        assert.equal(errors[0]!.code, 'LEDGE_ERR_STORAGE');
        assert.equal(errors[0]!.offset, offsets[12]);
      } finally {
        await store.close(); // waits for the rewrite
      }
      assert.deepEqual(readFileSync(`${file}.corrupt`), damaged, 'the damaged log is kept as it was');
      // The rewrite left a clean log: the next start reports nothing and serves the same.
      const log2 = captureLog();
      const again = await MetaStore.open(d, log2.logger);
      try {
        assert.equal(again.size, 29);
        assert.deepEqual(
          log2.lines.filter((l) => l.level === 'error' || l.level === 'warn'),
          [],
        );
        assert.equal(again.seen('m-29'), true, 'ids survive the rewrite');
      } finally {
        await again.close();
      }
    });
  }

  test('damage with no intact record after it is a tail (one warning), and no copy is made', async () => {
    const { d, file, offsets } = await filled();
    const damaged = readFileSync(file);
    damaged[offsets[29]! + 8 + 3]! ^= 0x01;
    writeFileSync(file, damaged);
    const log = captureLog();
    const store = await MetaStore.open(d, log.logger);
    try {
      assert.equal(store.size, 29);
      assert.equal(log.lines.filter((l) => l.level === 'warn' && /torn tail/.test(String(l.msg))).length, 1);
      assert.equal(log.lines.filter((l) => l.level === 'error').length, 0);
      assert.equal(existsSync(`${file}.corrupt`), false);
    } finally {
      await store.close();
    }
  });
});
