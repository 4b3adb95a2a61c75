/**
 * The log ingest rate limit (edge/edged/log-rate.ts) on a fake clock and fake timers: the token
 * bucket's refill and cap; LogThrottle admitting exactly what the budget holds (a line's record
 * header counted), pausing once and resuming with one timer, never letting more than
 * `burst + rate × t` through over any window (random traffic), one notice per throttling
 * episode, release() resuming at once for good, 0 = unlimited, progress with a burst smaller
 * than a record; NoticeLimiter's once per key per interval; the record header the cost assumes is
 * the one CriLogWriter writes.
 *
 * The container runtime's log copy against a fake daemon (a unix socket): a fast stream is copied
 * at the limit (an upper bound over a measured window), with one info line; removing the container
 * copies the rest at full speed, so the log ends with the last line.
 */
import { test, describe, mock, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DockerEngineRuntime, LABELS } from '../../edge/edged/container-runtime.js';
import { CRI_RECORD_HEADER_BYTES, LogThrottle, NoticeLimiter, RESUME_BYTES, TokenBucket, formatRate } from '../../edge/edged/log-rate.js';
import { CriLogWriter, readCriLog } from '../../edge/edged/logs.js';
import { createLogger } from '../../shared/log/index.js';
import { eventually, within } from '../helpers/process.js';
import { containerRig } from './container-rig.js';

const { dir, fakeDaemon } = containerRig('ledge-lograte-');

/** A clock the test moves. */
function fakeClock(start = 1000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

const KiB = 1024;
const lines = (n: number, line = 'y') => Buffer.from(`${line}\n`.repeat(n));

describe('TokenBucket', () => {
  test('starts full, refills at the rate, never above the burst, never below zero', () => {
    const clock = fakeClock();
    const b = new TokenBucket(1000, 4000, clock.now);
    assert.equal(b.available(), 4000);
    assert.equal(b.full(), true);
    assert.equal(b.take(3000), 3000);
    assert.equal(b.take(5000), 1000, 'takes at most what it holds');
    assert.equal(b.available(), 0);
    assert.equal(b.msUntil(500), 500);
    clock.advance(250);
    assert.equal(b.available(), 250);
    assert.equal(b.msUntil(500), 250);
    clock.advance(60_000);
    assert.equal(b.available(), 4000, 'capped at the burst');
    assert.equal(b.msUntil(10_000), 0, 'asking for more than the burst waits for the burst');
    assert.throws(() => new TokenBucket(0, 10), TypeError);
    assert.throws(() => new TokenBucket(10, 0), TypeError);
  });
});

describe('LogThrottle', () => {
  afterEach(() => mock.timers.reset());

  function throttle(bytesPerSecond: number, burstBytes: number, extra: { lineOverheadBytes?: number } = {}) {
    mock.timers.enable({ apis: ['setTimeout'] });
    const clock = fakeClock();
    const calls: string[] = [];
    const t = new LogThrottle({
      bytesPerSecond,
      burstBytes,
      now: clock.now,
      pause: () => calls.push('pause'),
      resume: () => calls.push('resume'),
      onThrottled: () => calls.push('notice'),
      ...extra,
    });
    const tick = (ms: number) => {
      clock.advance(ms);
      mock.timers.tick(ms);
    };
    return { t, calls, clock, tick };
  }

  test('admits what the budget holds, a line costing its bytes plus its record header; pauses once, resumes with one timer once a read fits', () => {
    const { t, calls, tick } = throttle(64 * KiB, 64 * KiB);
    const perLine = 2 + CRI_RECORD_HEADER_BYTES;
    const fit = Math.floor((64 * KiB) / perLine);
    const chunk = lines(fit + 10);
    assert.equal(t.admit(chunk), fit * perLine - fit * CRI_RECORD_HEADER_BYTES + 1, 'whole lines, then the bytes of the next that fit without its newline');
    assert.deepEqual(calls, ['notice', 'pause']);
    assert.equal(t.paused, true);
    // Resumed once RESUME_BYTES are back (one second at 64 KiB/s), not before.
    tick(999);
    assert.deepEqual(calls, ['notice', 'pause']);
    tick(1);
    assert.deepEqual(calls, ['notice', 'pause', 'resume']);
    assert.equal(t.paused, false);
    assert.equal(t.throttled, true, 'still in the episode: the bucket was not full again');
    assert.equal(t.admit(Buffer.from('\n')), 1, 'the newline of the cut line');
  });

  test('never more than burst + rate × t over any window, whatever the traffic; everything gets through in the end', () => {
    const rate = 10 * KiB;
    const burst = 20 * KiB;
    const { t, calls, clock, tick } = throttle(rate, burst);
    let seed = 42;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const admitted: { at: number; cost: number }[] = [];
    let offered = 0;
    let through = 0;
    let held: Buffer | undefined;
    for (let step = 0; step < 3000; step++) {
      tick(random(60));
      if (t.paused) continue;
      const chunk = held ?? (random(2) ? lines(1 + random(800), 'x'.repeat(random(40))) : Buffer.from('z'.repeat(1 + random(30_000))));
      if (!held) offered += chunk.length;
      const n = t.admit(chunk);
      const part = chunk.subarray(0, n);
      let nl = 0;
      for (const byte of part) if (byte === 0x0a) nl++;
      admitted.push({ at: clock.now(), cost: n + nl * CRI_RECORD_HEADER_BYTES });
      through += n;
      held = n < chunk.length ? chunk.subarray(n) : undefined;
    }
    for (let i = 0; i < admitted.length; i++) {
      let sum = 0;
      for (let j = i; j < admitted.length; j++) {
        sum += admitted[j]!.cost;
        const window = (admitted[j]!.at - admitted[i]!.at) / 1000;
        assert.ok(sum <= burst + rate * window + 1e-6, `${sum} bytes in ${window} s (from step ${i} to ${j})`);
      }
    }
    assert.ok(calls.includes('pause') && calls.includes('resume'), 'it was throttled');
    t.release();
    if (held) through += t.admit(held);
    assert.equal(through, offered, 'nothing dropped');
  });

  test('one notice per throttling episode: a new one only after the output stayed under the rate long enough to fill the bucket', () => {
    const { t, calls, tick } = throttle(1000, 2000, { lineOverheadBytes: 0 });
    assert.equal(t.admit(Buffer.alloc(3000)), 2000);
    tick(2000);
    assert.equal(calls.at(-1), 'resume', 'resumed once the bucket is full (the burst is below RESUME_BYTES)');
    // Full again, but only because it was paused: the same episode.
    assert.equal(t.admit(Buffer.alloc(3000)), 2000);
    assert.equal(t.throttled, true);
    tick(2000);
    assert.equal(calls.at(-1), 'resume');
    tick(1999);
    assert.equal(t.admit(Buffer.alloc(100)), 100, 'full, quiet for less than the bucket takes to fill: still the episode');
    tick(2000);
    assert.equal(t.admit(Buffer.alloc(3000)), 2000, 'quiet long enough: a new episode');
    assert.deepEqual(
      calls.filter((c) => c === 'notice'),
      ['notice', 'notice'],
    );
    assert.equal(calls.filter((c) => c === 'pause').length, 3);
  });

  test('release() resumes at once and admits everything from then on; close() drops the timer without resuming', () => {
    const a = throttle(1000, 1000, { lineOverheadBytes: 0 });
    assert.equal(a.t.admit(Buffer.alloc(5000)), 1000);
    a.t.release();
    assert.deepEqual(a.calls, ['notice', 'pause', 'resume']);
    assert.equal(a.t.paused, false);
    assert.equal(a.t.admit(Buffer.alloc(1_000_000)), 1_000_000);
    a.tick(10_000);
    assert.deepEqual(a.calls, ['notice', 'pause', 'resume'], 'no resume from the old timer');
    mock.timers.reset();
    const b = throttle(1000, 1000, { lineOverheadBytes: 0 });
    b.t.admit(Buffer.alloc(5000));
    b.t.close();
    b.tick(10_000);
    assert.deepEqual(b.calls, ['notice', 'pause']);
  });

  test('every cut asks for a pause again: a stream resumed behind its back (Node resumes the pipes of a child at its exit) is paused before the rest is put back', () => {
    const { t, calls } = throttle(1000, 1000, { lineOverheadBytes: 0 });
    assert.equal(t.admit(Buffer.alloc(1500)), 1000);
    // Delivered again while paused (the stream was resumed by someone else).
    assert.equal(t.admit(Buffer.alloc(500)), 0);
    assert.deepEqual(calls, ['notice', 'pause', 'pause']);
  });

  test('0 is unlimited: everything admitted, never paused', () => {
    const { t, calls } = throttle(0, 1);
    assert.equal(t.admit(lines(1_000_000)), 2_000_000);
    assert.deepEqual(calls, []);
  });

  test('a burst smaller than one record still lets a line through when the bucket is full', () => {
    const { t, calls, tick } = throttle(10, 20);
    assert.equal(t.admit(Buffer.from('\n\n')), 1, 'one record while full');
    assert.equal(t.paused, true);
    tick(3000);
    assert.equal(calls.at(-1), 'resume');
    assert.equal(t.admit(Buffer.from('\n')), 1);
  });

  test('a timer that fires before the budget is back waits again (no resume early)', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const clock = fakeClock();
    const calls: string[] = [];
    const t = new LogThrottle({
      bytesPerSecond: 64 * KiB,
      burstBytes: RESUME_BYTES,
      lineOverheadBytes: 0,
      now: clock.now,
      pause: () => calls.push('pause'),
      resume: () => calls.push('resume'),
    });
    t.admit(Buffer.alloc(RESUME_BYTES + 1));
    // The timer fires (1 s) but the clock moved only half of that.
    clock.advance(500);
    mock.timers.tick(1000);
    assert.deepEqual(calls, ['pause']);
    clock.advance(500);
    mock.timers.tick(500);
    assert.deepEqual(calls, ['pause', 'resume']);
  });
});

describe('NoticeLimiter and formatRate', () => {
  test('at most one notice per key per interval', () => {
    const clock = fakeClock();
    const n = new NoticeLimiter(60_000, clock.now);
    assert.equal(n.ready('a'), true);
    assert.equal(n.ready('a'), false);
    assert.equal(n.ready('b'), true);
    clock.advance(59_999);
    assert.equal(n.ready('a'), false);
    clock.advance(1);
    assert.equal(n.ready('a'), true);
  });

  test('rates as a person reads them', () => {
    assert.equal(formatRate(1024 * 1024), '1 MiB/s');
    assert.equal(formatRate(64 * 1024), '64 KiB/s');
    assert.equal(formatRate(1.5 * 1024 * 1024), '1.5 MiB/s');
    assert.equal(formatRate(100_000), '97.7 KiB/s');
    assert.equal(formatRate(500), '500 B/s');
  });

  test('the record header the cost counts is the one CriLogWriter writes', () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 20);
    w.write('stdout', lines(10));
    w.write('stderr', lines(5, 'abc'));
    w.close();
    assert.equal(statSync(path).size, 10 * (2 + CRI_RECORD_HEADER_BYTES) + 5 * (4 + CRI_RECORD_HEADER_BYTES));
  });
});

// ---- The container runtime's log copy, against a fake daemon ---------------------------------------

/** One stdout frame of a `/logs?timestamps=1` stream: 8-byte header, a 30-character timestamp, the line. */
function frame(line: string): Buffer {
  const payload = Buffer.from(`2024-05-01T10:00:00.000000000Z ${line}\n`);
  const header = Buffer.alloc(8);
  header[0] = 1;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

/** A daemon holding one running container `c1` whose log stream is `total` frames of `line` then `END` (sent as fast as it is read). */
async function daemonWithLog(logPath: string, line: string, total: number) {
  const labels = {
    [LABELS.sandboxId]: 's1',
    [LABELS.podUid]: 'u1',
    [LABELS.podName]: 'p',
    [LABELS.podNamespace]: 'ns',
    [LABELS.containerName]: 'c',
    [LABELS.logPath]: logPath,
    [LABELS.logMaxBytes]: String(256 << 20),
  };
  const info = {
    Id: 'c1',
    Created: '2024-05-01T10:00:00Z',
    Image: 'sha256:abc',
    Config: { Image: 'busybox', Labels: labels },
    State: { Status: 'running', StartedAt: '2024-05-01T10:00:00Z' },
  };
  const f = frame(line);
  const d = await fakeDaemon((req, res) => {
    const url = req.url ?? '';
    res.setHeader('Content-Type', 'application/json');
    if (url.startsWith('/v1.41/containers/json')) return res.end(JSON.stringify([{ Id: 'c1', Labels: labels, State: 'running' }]));
    if (url.startsWith('/v1.41/containers/c1/json')) return res.end(JSON.stringify(info));
    if (url.startsWith('/v1.41/containers/c1/stop')) return res.writeHead(204).end();
    if (req.method === 'DELETE' && url.startsWith('/v1.41/containers/c1')) return res.writeHead(204).end();
    if (url.startsWith('/v1.41/containers/c1/logs')) {
      res.writeHead(200, { 'Content-Type': 'application/vnd.docker.raw-stream' });
      let sent = 0;
      const pump = () => {
        while (sent < total) {
          sent++;
          if (!res.write(f)) return void res.once('drain', pump);
        }
        res.end(frame('END'));
      };
      return pump();
    }
    res.statusCode = 404;
    res.end('{"message":"not found"}');
  });
  return { d, frameBytes: f.length };
}

describe('container runtime: the log copy is rate-limited (fake daemon)', () => {
  test('a fast stream is copied at the limit: over a window, at most burst + rate × window; one info line', async () => {
    const rate = 64 * KiB;
    const burst = 64 * KiB;
    const logPath = join(dir(), 'c', '0.log');
    const line = 'x'.repeat(999);
    const { d, frameBytes } = await daemonWithLog(logPath, line, 1_000_000);
    const out: string[] = [];
    const log = createLogger({ level: 'info', format: 'json', write: (l) => out.push(l) });
    const rt = new DockerEngineRuntime({ socketPath: d.socketPath, log, containerLogMaxBytesPerSecond: rate, containerLogBurstBytes: burst });
    try {
      await rt.listContainers(); // re-attaches the log copy
      const size = () => {
        try {
          return statSync(logPath).size;
        } catch {
          return 0;
        }
      };
      await eventually(() => size() >= burst, 10_000, 'the burst to be copied');
      const s0 = size();
      const t0 = performance.now();
      await eventually(() => size() >= s0 + 2 * rate, 20_000, 'the copy to go on past the burst');
      const s1 = size();
      const t1 = performance.now();
      // What the limit counts: the daemon's stream, one frame per record (a record is a byte longer than its frame here).
      const recordBytes = line.length + 1 + CRI_RECORD_HEADER_BYTES;
      const streamBytes = ((s1 - s0) / recordBytes) * frameBytes;
      assert.ok(streamBytes <= burst + (rate * (t1 - t0)) / 1000, `${streamBytes} bytes in ${t1 - t0} ms at ${rate} B/s`);
      const notices = out.filter((l) => l.includes('prints faster than'));
      assert.equal(notices.length, 1, out.join('\n'));
      assert.match(notices[0] ?? '', /container c of pod ns\/p prints faster than 64 KiB\/s; its output is slowed \(--container-log-max-bytes-per-second\)/);
    } finally {
      await rt.close();
      await d.close();
    }
  });

  test('removing the container copies what the daemon still holds at full speed: the log ends with the last line', async () => {
    const logPath = join(dir(), 'c', '0.log');
    const { d } = await daemonWithLog(logPath, 'y'.repeat(99), 5000); // ~700 KB: 10 s at the limit
    const rt = new DockerEngineRuntime({ socketPath: d.socketPath, logDrainMs: 1500, containerLogMaxBytesPerSecond: 64 * KiB, containerLogBurstBytes: 16 * KiB });
    try {
      await rt.listContainers();
      await eventually(
        () => {
          try {
            return statSync(logPath).size > 16 * KiB;
          } catch {
            return false;
          }
        },
        10_000,
        'the copy to be throttled',
      );
      await within(rt.removeContainer('c1'), 10_000, 'removeContainer');
      const text = await readCriLog(logPath);
      assert.ok(text.endsWith('\nEND\n'), `the log ends with END (it has ${text.length} bytes)`);
      assert.equal(text.split('\n').length - 1, 5001, 'every line');
      assert.equal(readFileSync(logPath, 'utf8').includes(' stdout P '), false);
    } finally {
      await rt.close();
      await d.close();
    }
  });
});
