/**
 * The upstream outbox on real files: a message is durable (fsynced) before add()
 * resolves; after a reopen the undelivered messages come back in their original order
 * with their original ids and frames; an ACK removes a message for good; compaction
 * keeps every pending message; a full outbox refuses with LEDGE_ERR_QUEUE_FULL, also
 * under concurrent adds; a torn tail is cut off.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Outbox } from '../../edge/edgehub/outbox.js';
import { createCborCodec, newMessage, type Message } from '../../shared/protocol/index.js';
import { createLogger, silentLogger, type Logger } from '../../shared/log/index.js';
import { QueueFullError, StorageError } from '../../shared/errors/index.js';
import { frameRecord, readRecords } from '../../shared/wal/index.js';
import { tempDir } from '../helpers/files.js';
import { eventually } from '../helpers/process.js';
import { controlledSync, track, turns } from '../helpers/fsync.js';

const codec = createCborCodec();
const cleanups: (() => void)[] = [];
after(() => {
  for (const c of cleanups) c();
});
function dir(): string {
  const d = tempDir('ledge-outbox-');
  cleanups.push(d.cleanup);
  return d.path;
}

function status(i: number): { message: Message; frame: Uint8Array } {
  const message = newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: `default/podstatus/pod-${i}`, sync: true, content: { seq: i } });
  return { message, frame: codec.encode(message) };
}

const open = (d: string, max = 10_000, logger: Logger = silentLogger, openFile?: Parameters<typeof Outbox.open>[4]) => Outbox.open(d, codec, logger, max, openFile);

/** The outbox file's records by kind: message ADDs (their ids) and ACKs. */
function fileRecords(d: string): { adds: string[]; acks: number } {
  const { records } = readRecords(readFileSync(join(d, 'outbox.log')));
  const adds = records.filter((r) => r[0] === 1).map((r) => codec.decode(r.subarray(1)).header.id);
  return { adds, acks: records.filter((r) => r[0] === 2).length };
}

describe('Outbox', () => {
  test('add() resolves only once the message is fsynced; until then it is not in the outbox', async () => {
    const d = dir();
    const ctl = controlledSync();
    const { outbox } = await open(d, 10, silentLogger, { openFile: ctl.openFile });
    try {
      ctl.mode = 'hold';
      const m = status(1);
      const added = track(outbox.add(m.message, m.frame));
      await eventually(() => ctl.held.length === 1, 5000, 'the add to reach fsync');
      await turns();
      assert.equal(added.settled, false, 'add() resolved before its fsync completed');
      assert.equal(outbox.size, 0, 'not counted as pending before it is durable');
      ctl.mode = 'pass';
      await ctl.held[0]!.release();
      await added.value;
      assert.equal(outbox.size, 1);
    } finally {
      ctl.mode = 'pass';
      for (const h of [...ctl.held]) await h.release();
      await outbox.close();
    }
  });

  test('an add whose fsync fails is refused with LEDGE_ERR_STORAGE, is not pending and is not replayed', async () => {
    const d = dir();
    const ctl = controlledSync();
    const { outbox } = await open(d, 10, silentLogger, { openFile: ctl.openFile });
    const kept = status(1);
    await outbox.add(kept.message, kept.frame);
    ctl.mode = 'fail';
    const lost = status(2);
    await assert.rejects(outbox.add(lost.message, lost.frame), (err: unknown) => err instanceof StorageError && (err as StorageError).code === 'LEDGE_ERR_STORAGE');
    assert.equal(outbox.size, 1);
    ctl.mode = 'pass';
    await outbox.close();
    const { outbox: again, replay } = await open(d);
    assert.deepEqual(
      replay.map((e) => e.message.header.id),
      [kept.message.header.id],
    );
    await again.close();
  });

  test('replay after a reopen: the undelivered messages, oldest first, with their ids and exact frames', async () => {
    const d = dir();
    const { outbox } = await open(d);
    const sent = Array.from({ length: 10 }, (_, i) => status(i));
    // Concurrent adds are group-committed: the file order is still the call order.
    await Promise.all(sent.map((s) => outbox.add(s.message, s.frame)));
    outbox.ack(sent[3]!.message.header.id);
    outbox.ack(sent[7]!.message.header.id);
    await outbox.close();

    const { outbox: again, replay } = await open(d);
    const expected = sent.filter((_, i) => i !== 3 && i !== 7);
    assert.deepEqual(
      replay.map((e) => e.message.header.id),
      expected.map((s) => s.message.header.id),
    );
    assert.deepEqual(
      replay.map((e) => Buffer.from(e.frame)),
      expected.map((s) => Buffer.from(s.frame)),
      'the frames as they were stored',
    );
    assert.deepEqual(
      replay.map((e) => e.message),
      expected.map((s) => s.message),
    );
    assert.equal(again.size, 8);
    await again.close();
  });

  test('ack removes a message for good; an unknown or repeated ACK changes nothing', async () => {
    const d = dir();
    const { outbox } = await open(d);
    const [a, b] = [status(1), status(2)];
    await outbox.add(a.message, a.frame);
    await outbox.add(b.message, b.frame);
    outbox.ack(a.message.header.id);
    assert.equal(outbox.size, 1);
    outbox.ack(a.message.header.id);
    outbox.ack('never-added');
    assert.equal(outbox.size, 1);
    await outbox.close();
    assert.equal(fileRecords(d).acks, 1, 'one ACK record: repeats and unknown ids write nothing');

    const { outbox: again, replay } = await open(d);
    assert.deepEqual(
      replay.map((e) => e.message.header.id),
      [b.message.header.id],
    );
    // The ACK of a replayed message removes it too.
    again.ack(b.message.header.id);
    await again.close();
    const { outbox: third, replay: none } = await open(d);
    assert.equal(none.length, 0);
    await third.close();
  });

  test('compaction, once ACKs dominate, keeps every pending message in order and drops the delivered ones', async () => {
    const d = dir();
    const { outbox } = await open(d);
    const sent = Array.from({ length: 1200 }, (_, i) => status(i));
    await Promise.all(sent.map((s) => outbox.add(s.message, s.frame)));
    const keep = sent.filter((_, i) => i % 10 === 0);
    for (const [i, s] of sent.entries()) if (i % 10 !== 0) outbox.ack(s.message.header.id);
    assert.equal(outbox.size, keep.length);
    await outbox.close(); // waits for the compaction the ACKs started
    const { adds } = fileRecords(d);
    assert.deepEqual(
      adds,
      keep.map((s) => s.message.header.id),
      'the compacted file holds exactly the pending messages, in order',
    );

    const { outbox: again, replay } = await open(d);
    assert.deepEqual(
      replay.map((e) => e.message.header.id),
      keep.map((s) => s.message.header.id),
    );
    // And the outbox goes on after compacting.
    const late = status(5000);
    await again.add(late.message, late.frame);
    await again.close();
    const { outbox: third, replay: r3 } = await open(d);
    assert.equal(r3.length, keep.length + 1);
    assert.equal(r3.at(-1)!.message.header.id, late.message.header.id);
    await third.close();
  });

  test('a full outbox refuses with LEDGE_ERR_QUEUE_FULL and writes nothing; an ACK makes room', async () => {
    const d = dir();
    const { outbox } = await open(d, 3);
    try {
      for (let i = 0; i < 3; i++) {
        const s = status(i);
        await outbox.add(s.message, s.frame);
      }
      const size = statSync(join(d, 'outbox.log')).size;
      const over = status(3);
      await assert.rejects(
        outbox.add(over.message, over.frame),
        (err: unknown) => err instanceof QueueFullError && (err as QueueFullError).code === 'LEDGE_ERR_QUEUE_FULL' && /outbox full \(3 undelivered/.test((err as Error).message),
      );
      assert.equal(statSync(join(d, 'outbox.log')).size, size, 'nothing written for a refused message');
      assert.equal(outbox.size, 3);
      outbox.ack(fileRecords(d).adds[0]!);
      await outbox.add(over.message, over.frame);
      assert.equal(outbox.size, 3);
    } finally {
      await outbox.close();
    }
  });

  test('the limit holds under concurrent adds: adds still being written count against it', async () => {
    const d = dir();
    const { outbox } = await open(d, 3);
    try {
      const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => status(i)).map((s) => outbox.add(s.message, s.frame)));
      assert.deepEqual(
        results.map((r) => r.status),
        ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected'],
      );
      for (const r of results.slice(3)) assert.equal(((r as PromiseRejectedResult).reason as QueueFullError).code, 'LEDGE_ERR_QUEUE_FULL');
      assert.equal(outbox.size, 3);
    } finally {
      await outbox.close();
    }
    assert.equal(fileRecords(d).adds.length, 3, 'only the accepted messages are in the file');
  });

  test('a torn tail (crash mid-write) is cut off with one warning; the messages before it and later adds are kept', async () => {
    const d = dir();
    const { outbox } = await open(d);
    const [a, b] = [status(1), status(2)];
    await outbox.add(a.message, a.frame);
    await outbox.add(b.message, b.frame);
    await outbox.close();
    const c = status(3);
    const rec = new Uint8Array(c.frame.length + 1);
    rec[0] = 1;
    rec.set(c.frame, 1);
    const torn = frameRecord(rec);
    appendFileSync(join(d, 'outbox.log'), torn.subarray(0, torn.length - 4));

    const lines: string[] = [];
    const { outbox: again, replay } = await open(d, 10_000, createLogger({ level: 'debug', format: 'json', write: (l) => void lines.push(l) }));
    assert.deepEqual(
      replay.map((e) => e.message.header.id),
      [a.message.header.id, b.message.header.id],
    );
    assert.equal(lines.filter((l) => /outbox had a torn tail of \d+ bytes/.test(l)).length, 1);
    const late = status(4);
    await again.add(late.message, late.frame);
    await again.close();
    const { outbox: third, replay: r3 } = await open(d);
    assert.deepEqual(
      r3.map((e) => e.message.header.id),
      [a.message.header.id, b.message.header.id, late.message.header.id],
    );
    await third.close();
  });
});
