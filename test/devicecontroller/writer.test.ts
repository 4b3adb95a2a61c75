/**
 * The DeviceStatus writer on fake time: the write ceiling holds however many devices report,
 * every device gets its turn (FIFO) and its latest value written, reports coalesce, the rate
 * halves on 429/5xx down to its floor and creeps back 1/s, conflicts retry at once with a
 * fresh read, and refusals that retrying cannot fix drop the state with one log line.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { StatusWriter, type PendingStatus, type StatusWriterOptions, type WriteStatus } from '../../cloud/devicecontroller/index.js';
import { captureLog } from '../helpers/cloud.js';
import { FakeTime } from './fake-time.js';

interface Write {
  at: number;
  key: string;
  value: string | undefined;
  fresh: boolean;
}

function setup(write?: (w: Write, state: PendingStatus) => void, options: Partial<StatusWriterOptions> = {}) {
  const time = new FakeTime();
  const log = captureLog();
  const writes: Write[] = [];
  const fn: WriteStatus = async (key, state, fresh) => {
    const w = { at: time.t, key, value: state.twins.get('temp')?.reported?.value, fresh };
    writes.push(w);
    write?.(w, state);
    return true;
  };
  const writer = new StatusWriter({ ratePerSecond: 50, burst: 100, minRatePerSecond: 5, concurrency: 8, now: time.now, timers: time, ...options }, fn, log.logger);
  const report = (i: number, value: string, uid = `uid-${i}`) => writer.report(`default/d${i}`, { uid, twins: [{ propertyName: 'temp', reported: { value } }] });
  return { time, log, writes, writer, report };
}

const httpError = (code: number) => Object.assign(new Error(`HTTP ${code}`), { code });

describe('DeviceStatus writer', () => {
  test('1,000 devices reporting every second for 60 s: writes stay under the token bucket bound, every device gets turns, and the final values are written', async () => {
    const { time, writes, writer, report } = setup();
    const start = time.t;
    const devices = 1000;
    const seconds = 60;
    for (let s = 0; s < seconds; s++) {
      for (let i = 0; i < devices; i++) report(i, String(s));
      await time.advance(1000);
    }
    const inWindow = writes.filter((w) => w.at < start + seconds * 1000).length;
    // A token bucket admits at most its burst plus rate × time: 100 + 50 × 60.
    assert.ok(inWindow <= 100 + 50 * seconds, `${inWindow} writes in ${seconds} s`);
    // After the first burst the bucket is empty and the ceiling is the rate.
    const steady = writes.filter((w) => w.at >= start + 10_000 && w.at < start + seconds * 1000).length;
    assert.ok(steady <= 50 * (seconds - 10) + 1, `${steady} writes in the last ${seconds - 10} s`);
    assert.ok(steady >= 50 * (seconds - 10) - 1, `the ceiling is used, not undershot: ${steady}`);
    const stats = writer.stats();
    assert.ok(stats.pending <= devices, 'a device is pending at most once');
    assert.ok(stats.coalesced > 50_000, `reports merged while waiting: ${stats.coalesced}`);

    // FIFO: every device is written every ~20 s (1,000 dirty devices / 50 per second), none starves.
    const byKey = new Map<string, number[]>();
    for (const w of writes) byKey.set(w.key, [...(byKey.get(w.key) ?? []), w.at]);
    assert.equal(byKey.size, devices);
    for (const [key, ats] of byKey) {
      const inRun = ats.filter((a) => a < start + seconds * 1000);
      assert.ok(inRun.length >= 2, `${key} written ${inRun.length} times in ${seconds} s`);
      for (let i = 1; i < inRun.length; i++) assert.ok(inRun[i]! - inRun[i - 1]! <= 21_000, `${key} waited ${inRun[i]! - inRun[i - 1]!} ms between writes`);
    }

    // Reports stop: what is pending drains, each device's last write has its last value.
    for (let i = 0; i < 40 && writer.stats().pending + writer.stats().inFlight > 0; i++) await time.advance(1000);
    assert.equal(writer.stats().pending, 0);
    const last = new Map<string, string | undefined>();
    for (const w of writes) last.set(w.key, w.value);
    for (let i = 0; i < devices; i++) assert.equal(last.get(`default/d${i}`), String(seconds - 1), `final value of d${i}`);
    writer.close();
  });

  test('reports arriving while a write is in flight are written after it, never concurrently for one device', async () => {
    const time = new FakeTime();
    const values: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // A slow API: the first write waits until released.
    const writer = new StatusWriter(
      { ratePerSecond: 50, burst: 100, minRatePerSecond: 5, concurrency: 8, now: time.now, timers: time },
      async (_key, state) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        values.push(state.twins.get('temp')?.reported?.value ?? '');
        if (values.length === 1) await gate;
        inFlight--;
        return true;
      },
      captureLog().logger,
    );
    const report = (value: string) => writer.report('default/d0', { uid: 'u', twins: [{ propertyName: 'temp', reported: { value } }] });
    report('1');
    await time.advance(10);
    report('2');
    report('3');
    await time.advance(1000);
    assert.deepEqual(values, ['1'], 'no second write while the first is in flight');
    release();
    await time.advance(1000);
    assert.deepEqual(values, ['1', '3']);
    assert.equal(maxInFlight, 1);
    assert.equal(writer.stats().coalesced, 1);
    writer.close();
  });

  test('chatty sensors cannot starve quiet ones: a device re-dirtied during its write goes to the back of the queue', async () => {
    const time = new FakeTime();
    const written: { key: string; at: number }[] = [];
    // Each API write takes 50 ms (fake): chatty devices report again while theirs is in flight.
    const writer = new StatusWriter(
      { ratePerSecond: 50, burst: 100, minRatePerSecond: 5, concurrency: 8, now: time.now, timers: time },
      (key) =>
        new Promise<boolean>((resolve) =>
          time.setTimeout(() => {
            written.push({ key, at: time.t });
            resolve(true);
          }, 50),
        ),
      captureLog().logger,
    );
    const start = time.t;
    const chatty = (step: number) => {
      for (let c = 0; c < 5; c++) writer.report(`default/chatty${c}`, { uid: `c${c}`, twins: [{ propertyName: 'temp', reported: { value: String(step) } }] });
    };
    // The chatty ones first: written first, then dirty again while their writes are in flight.
    chatty(-1);
    for (let i = 0; i < 500; i++) writer.report(`default/quiet${i}`, { uid: `q${i}`, twins: [{ propertyName: 'temp', reported: { value: '1' } }] });
    for (let step = 0; step < 1500; step++) {
      chatty(step);
      await time.advance(10);
    }
    // 505 dirty devices at 50/s (after a burst of 100): all quiet ones are written within ~10 s.
    const quiet = written.filter((w) => w.key.startsWith('default/quiet'));
    assert.equal(new Set(quiet.map((w) => w.key)).size, 500, 'every quiet device written');
    assert.ok(Math.max(...quiet.map((w) => w.at)) - start <= 11_000, `last quiet write after ${Math.max(...quiet.map((w) => w.at)) - start} ms`);
    // While quiet devices wait, each chatty device gets one write per round (~10 s), not the bucket.
    const lastQuiet = Math.max(...quiet.map((w) => w.at));
    for (let c = 0; c < 5; c++) {
      const n = written.filter((w) => w.key === `default/chatty${c}` && w.at <= lastQuiet).length;
      assert.ok(n >= 1 && n <= 3, `chatty${c}: ${n} writes while quiet devices waited`);
    }
    writer.close();
  });

  test('429 halves the rate once a second down to the floor; good seconds add 1/s back up to the ceiling', async () => {
    let failing = false;
    const { time, writer, report, log, writes } = setup(() => {
      if (failing) throw httpError(429);
    });
    const keepDirty = async (seconds: number) => {
      const rates: number[] = [];
      for (let s = 0; s < seconds; s++) {
        for (let i = 0; i < 300; i++) report(i, String(time.t));
        await time.advance(1000);
        rates.push(writer.stats().ratePerSecond);
      }
      return rates;
    };
    await keepDirty(5);
    assert.equal(writer.stats().ratePerSecond, 50);
    failing = true;
    const down = await keepDirty(10);
    // 50 → 25 → 12.5 → 6.25 → 5 (the floor) and no lower however many writes fail.
    assert.equal(down[0], 25);
    assert.equal(down[1], 12.5);
    assert.equal(Math.min(...down), 5);
    assert.equal(down.at(-1), 5);
    // At the floor the API server sees about 5 attempts a second.
    const lastSecond = writes.filter((w) => w.at >= time.t - 1000 && w.at < time.t).length;
    assert.ok(lastSecond <= 6, `${lastSecond} attempts in the last second at the floor`);
    assert.ok(
      log.lines.some((l) => /pushed back by the API server \(HTTP 429/.test(String(l.msg)) && l.code === 'LEDGE_ERR_API'),
      'one clear line',
    );
    assert.ok(log.lines.filter((l) => /pushed back/.test(String(l.msg))).length <= 1, 'not one line per failure');
    failing = false;
    const up = await keepDirty(10);
    assert.ok(up.at(-1)! >= 13 && up.at(-1)! <= 16, `after 10 good seconds: ${up.at(-1)}`);
    for (let i = 1; i < up.length; i++) assert.ok(up[i]! - up[i - 1]! <= 1, 'additive: at most +1/s per second');
    await keepDirty(50);
    assert.equal(writer.stats().ratePerSecond, 50, 'back at the ceiling, not beyond');
    assert.ok(log.has(/back at its ceiling, 50 writes\/s/));
    // Nothing reported during the outage was lost.
    for (let i = 0; i < 120 && writer.stats().pending > 0; i++) await time.advance(1000);
    assert.equal(writer.stats().pending, 0);
    writer.close();
  });

  test('5xx and network errors push back too; the state is kept and written later', async () => {
    let failures = 2;
    const { time, writer, report, writes } = setup(() => {
      if (failures-- > 0) throw failures === 1 ? httpError(503) : new Error('socket hang up');
    });
    report(1, 'a');
    await time.advance(5000);
    assert.ok(writer.stats().ratePerSecond < 50);
    assert.equal(writes.at(-1)?.value, 'a');
    assert.equal(writer.stats().pending, 0);
    assert.equal(writer.stats().writes, 1);
    writer.close();
  });

  test('409 retries at once with a fresh read, ahead of the queue; newer reports merge over the failed state', async () => {
    let conflictOnce = true;
    const { time, writer, report, writes } = setup(
      (w) => {
        if (w.key === 'default/d0' && conflictOnce) {
          conflictOnce = false;
          report(0, 'newer');
          throw httpError(409);
        }
      },
      { burst: 1, ratePerSecond: 10, minRatePerSecond: 1, concurrency: 1 },
    );
    report(0, 'first');
    for (let i = 1; i < 5; i++) report(i, 'x');
    await time.advance(2000);
    assert.deepEqual(
      writes.slice(0, 3).map((w) => [w.key, w.value, w.fresh]),
      [
        ['default/d0', 'first', false],
        ['default/d0', 'newer', true],
        ['default/d1', 'x', false],
      ],
    );
    assert.equal(writer.stats().ratePerSecond, 10, 'a conflict is no push-back');
    writer.close();
  });

  test('a refusal retrying cannot fix (403) drops that state with one log line per minute', async () => {
    const { time, writer, report, log } = setup(() => {
      throw httpError(403);
    });
    for (let i = 0; i < 20; i++) report(i, 'v');
    await time.advance(2000);
    assert.equal(writer.stats().pending, 0);
    assert.equal(writer.stats().dropped, 20);
    const lines = log.lines.filter((l) => /refused \(HTTP 403/.test(String(l.msg)));
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.code, 'LEDGE_ERR_API');
    writer.close();
  });

  test('forget drops a device: nothing more is written for it', async () => {
    const { time, writer, report, writes } = setup(undefined, { burst: 1, ratePerSecond: 1, minRatePerSecond: 1 });
    report(0, 'a');
    report(1, 'b');
    await writer.forget('default/d1');
    await time.advance(5000);
    assert.deepEqual(
      writes.map((w) => w.key),
      ['default/d0'],
    );
    writer.close();
  });

  test('a new incarnation of a device (another uid) replaces the waiting state instead of merging into it', async () => {
    const seen: PendingStatus[] = [];
    const { time, writer } = setup((_w, state) => void seen.push(state), { burst: 1, ratePerSecond: 1, minRatePerSecond: 1 });
    writer.report('default/x', { uid: 'u0', twins: [{ propertyName: 'temp', reported: { value: '0' } }] });
    writer.report('default/d0', { uid: 'old', twins: [{ propertyName: 'hum', reported: { value: '1' } }] });
    writer.report('default/d0', { uid: 'new', twins: [{ propertyName: 'temp', reported: { value: 'new' } }] });
    await time.advance(3000);
    const d0 = seen.filter((s) => s.twins.has('temp') && s.uid !== 'u0');
    assert.equal(d0.length, 1);
    assert.equal(d0[0]!.uid, 'new');
    assert.deepEqual([...d0[0]!.twins.keys()], ['temp']);
    writer.close();
  });
});
