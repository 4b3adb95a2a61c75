/**
 * The CRI log writer and reader (edge/edged/logs.ts) on real files: lines split at '\n' into F
 * records, unfinished lines buffered per stream and written as P records past 16 KiB or at
 * close, the two-file rotation bound, the reader's since/tail/limit/timestamps, a record torn
 * by a crash, and a write failure that logs once and drops the rest; the incremental reader
 * (openCriLogReader: readCriLog's output in chunks) and followCriLog (appended records, rotation,
 * the end of the run, close releasing its files).
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CRI_MAX_LINE_BYTES, CriLogWriter, followCriLog, openCriLogReader, parseCriLine, readCriLog, type CriLogReader } from '../../edge/edged/logs.js';
import { createLogger } from '../../shared/log/index.js';
import { tempDir } from '../helpers/files.js';
import { eventually, within } from '../helpers/process.js';
import { prng } from '../helpers/prng.js';

const dirs: { cleanup: () => void }[] = [];
after(() => {
  for (const d of dirs) d.cleanup();
});
function dir(): string {
  const d = tempDir('ledge-logs-');
  dirs.push(d);
  return d.path;
}

const T0 = new Date('2024-05-01T10:00:00.000Z');
const at = (s: number) => new Date(T0.getTime() + s * 1000);
const b = (s: string) => Buffer.from(s);

function records(path: string) {
  const text = readFileSync(path, 'utf8');
  assert.ok(text === '' || text.endsWith('\n'), 'a log file ends with a newline');
  return text
    .split('\n')
    .slice(0, -1)
    .map((l) => {
      const r = parseCriLine(l);
      assert.ok(r, `not a CRI record: ${JSON.stringify(l)}`);
      return { stream: r.stream, tag: r.partial ? 'P' : 'F', content: r.content.toString(), timestamp: r.timestamp };
    });
}

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { log, lines };
}

describe('CriLogWriter', () => {
  test('writes kubelet CRI records: RFC 3339 nano timestamp, stream, F, content', () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 20);
    w.write('stdout', b('hello\nworld\n'), T0);
    w.write('stderr', b('oops\n'), at(1));
    w.close();
    assert.equal(
      readFileSync(path, 'utf8'),
      '2024-05-01T10:00:00.000000000Z stdout F hello\n2024-05-01T10:00:00.000000000Z stdout F world\n2024-05-01T10:00:01.000000000Z stderr F oops\n',
    );
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  test('an unfinished line waits for its rest, per stream; an empty line is a record too', () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 20);
    w.write('stdout', b('par'), T0);
    w.write('stderr', b('err-'), T0);
    w.write('stdout', b('tial\n\nnext'), T0);
    w.write('stderr', b('line\n'), T0);
    assert.deepEqual(
      records(path).map((r) => [r.stream, r.tag, r.content]),
      [
        ['stdout', 'F', 'partial'],
        ['stdout', 'F', ''],
        ['stderr', 'F', 'err-line'],
      ],
    );
    // close writes what is left as a partial record
    w.close();
    assert.deepEqual(
      records(path)
        .map((r) => [r.stream, r.tag, r.content])
        .at(-1),
      ['stdout', 'P', 'next'],
    );
    w.write('stdout', b('after close\n'));
    assert.equal(records(path).length, 4, 'writes after close are ignored');
  });

  test('a partial line past 16 KiB is written as P records of 16 KiB; a long full line as P… then F', () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 20);
    w.write('stdout', b('a'.repeat(CRI_MAX_LINE_BYTES)), T0);
    assert.equal(records(path).length, 0, 'exactly 16 KiB still waits');
    w.write('stdout', b('a'.repeat(10)), T0);
    assert.deepEqual(
      records(path).map((r) => [r.tag, r.content.length]),
      [['P', CRI_MAX_LINE_BYTES]],
    );
    w.write('stdout', b('\n'), T0);
    w.write('stderr', b(`${'x'.repeat(2 * CRI_MAX_LINE_BYTES + 5)}\n`), T0);
    w.close();
    assert.deepEqual(
      records(path).map((r) => [r.stream, r.tag, r.content.length]),
      [
        ['stdout', 'P', CRI_MAX_LINE_BYTES],
        ['stdout', 'F', 10],
        ['stderr', 'P', CRI_MAX_LINE_BYTES],
        ['stderr', 'P', CRI_MAX_LINE_BYTES],
        ['stderr', 'F', 5],
      ],
    );
  });

  test('rotation: never more than two files, each at most maxBytes plus one record, the newest lines kept', async () => {
    const d = dir();
    const path = join(d, 'c.log');
    const max = 1000;
    const w = new CriLogWriter(path, max);
    for (let i = 0; i < 500; i++) {
      const line = `line ${i} ${'z'.repeat(i % 37)}\n`;
      w.write(i % 2 ? 'stderr' : 'stdout', b(line), T0);
      assert.ok(readdirSync(d).length <= 2, `at most two files (after line ${i}): ${readdirSync(d).join(', ')}`);
      for (const f of readdirSync(d)) assert.ok(statSync(join(d, f)).size <= max, `${f} is ${statSync(join(d, f)).size} bytes`);
    }
    w.close();
    assert.deepEqual(readdirSync(d).sort(), ['c.log', 'c.log.1']);
    const text = await readCriLog(path);
    assert.ok(text.endsWith(`line 499 ${'z'.repeat(499 % 37)}\n`));
    assert.ok(!text.includes('line 0 '), 'the oldest lines are gone');
    const lines = text.split('\n').slice(0, -1);
    const first = Number(lines[0]?.split(' ')[1]);
    assert.deepEqual(
      lines.map((l) => Number(l.split(' ')[1])),
      Array.from({ length: 500 - first }, (_, i) => first + i),
      'the lines kept are contiguous',
    );
    // One record larger than the bound still gets written, alone in its file.
    const big = new CriLogWriter(join(d, 'big.log'), 10);
    big.write('stdout', b('0123456789abcdef\nsecond\n'), T0);
    big.close();
    assert.deepEqual(
      records(join(d, 'big.log')).map((r) => r.content),
      ['second'],
    );
    assert.deepEqual(
      records(join(d, 'big.log.1')).map((r) => r.content),
      ['0123456789abcdef'],
    );
  });

  test('continues an existing file (append) and ends a record a crash left torn', async () => {
    const path = join(dir(), 'c.log');
    writeFileSync(path, '2024-05-01T10:00:00.000000000Z stdout F before\n2024-05-01T10:00:00.000000000Z stdout F tor');
    const w = new CriLogWriter(path, 1 << 20);
    w.write('stdout', b('after\n'), at(1));
    w.close();
    assert.equal(await readCriLog(path), 'before\ntor\nafter\n');
  });

  test('a write that fails (disk full) logs one warning and drops the output; never throws', () => {
    const d = dir();
    const path = join(d, 'full.log');
    symlinkSync('/dev/full', path);
    const { log, lines } = capture();
    const w = new CriLogWriter(path, 1 << 20, log);
    for (let i = 0; i < 20; i++) w.write('stdout', b(`line ${i}\n`));
    w.write('stderr', b('partial'));
    w.close();
    const warns = lines.filter((l) => l.level === 'warn');
    assert.equal(warns.length, 1, JSON.stringify(lines));
    assert.match(String(warns[0]?.msg), /full\.log cannot be written.*ENOSPC/);
  });

  test('a log path that cannot be opened logs one warning at creation; writes are dropped', () => {
    const d = dir();
    writeFileSync(join(d, 'file'), '');
    const { log, lines } = capture();
    const w = new CriLogWriter(join(d, 'file', 'c.log'), 100, log);
    w.write('stdout', b('x\n'));
    w.close();
    assert.equal(lines.filter((l) => l.level === 'warn').length, 1);
    assert.ok(!existsSync(join(d, 'file', 'c.log')));
  });

  test('creates the missing directory of the log file', async () => {
    const path = join(dir(), 'ns_pod_uid', 'c', '0.log');
    const w = new CriLogWriter(path, 100);
    w.write('stdout', b('x\n'));
    w.close();
    assert.equal(await readCriLog(path), 'x\n');
  });
});

describe('parseCriLine', () => {
  test('parses records, tolerates a trailing newline and extra tag fields, refuses what is not one', () => {
    const r = parseCriLine('2016-10-06T00:17:09.669794202Z stdout P:x some log\n');
    assert.ok(r);
    assert.equal(r.stream, 'stdout');
    assert.equal(r.partial, true);
    assert.equal(r.content.toString(), 'some log');
    assert.equal(r.time.toISOString(), '2016-10-06T00:17:09.669Z');
    assert.equal(parseCriLine('2016-10-06T00:17:09+02:00 stderr F ')?.content.length, 0);
    for (const bad of ['', 'garbage', '2016-10-06T00:17:09Z stdin F x', '2016-10-06T00:17:09Z stdout X x', 'yesterday stdout F x', '2016-10-06T00:17:09Z stdout F'])
      assert.equal(parseCriLine(bad), undefined, bad);
  });
});

/** A small log: partial records joined per stream, both streams; with `unended`, a stderr line the writer closed mid-line. */
function sampleLog(o: { unended?: boolean } = {}): string {
  const path = join(dir(), 'c.log');
  const w = new CriLogWriter(path, 1 << 20);
  w.write('stdout', b('one\n'), at(0));
  w.write('stdout', b('tw'), at(1));
  w.write('stderr', b('three\n'), at(2));
  w.write('stdout', b('o\n'), at(3));
  w.write('stdout', b('four\n'), at(4));
  if (o.unended) {
    w.write('stderr', b('unended'), at(5));
    w.close(at(6));
  } else w.close();
  return path;
}

describe('readCriLog', () => {
  const sample = () => sampleLog();

  test('joins partial records per stream into lines', async () => {
    assert.equal(await readCriLog(sample()), 'one\nthree\ntwo\nfour\n');
  });

  test('sinceTime, then tailLines, then limitBytes; timestamps with 9 fraction digits', async () => {
    const path = sample();
    assert.equal(await readCriLog(path, { sinceTime: at(2) }), 'three\ntwo\nfour\n', 'a line is stamped when its end was written (3 s)');
    assert.equal(await readCriLog(path, { sinceTime: at(3.5) }), 'four\n');
    assert.equal(await readCriLog(path, { sinceTime: at(2), tailLines: 1 }), 'four\n');
    assert.equal(await readCriLog(path, { tailLines: 2 }), 'two\nfour\n');
    assert.equal(await readCriLog(path, { tailLines: 0 }), '');
    assert.equal(await readCriLog(path, { tailLines: -1 }), 'one\nthree\ntwo\nfour\n');
    assert.equal(await readCriLog(path, { tailLines: 2, limitBytes: 6 }), 'two\nfo');
    assert.equal(await readCriLog(path, { tailLines: 1, timestamps: true }), '2024-05-01T10:00:04.000000000Z four\n');
    assert.equal(await readCriLog(join(dir(), 'none.log')), '', 'a missing log reads empty');
  });

  test('pads foreign timestamps to 9 digits, keeps the zone; reads .1 before the current file', async () => {
    const d = dir();
    const path = join(d, 'c.log');
    writeFileSync(`${path}.1`, '2024-05-01T12:00:00.5+02:00 stdout P old-\n');
    writeFileSync(path, '2024-05-01T10:00:01Z stdout F new\n');
    assert.equal(await readCriLog(path, { timestamps: true }), '2024-05-01T12:00:00.500000000+02:00 old-new\n');
    assert.equal(await readCriLog(path, { sinceTime: new Date('2024-05-01T10:00:00.600Z') }), '', 'a joined line is stamped with its first part');
  });

  test('a torn last record is not shown; garbage lines are skipped', async () => {
    const path = join(dir(), 'c.log');
    writeFileSync(path, '2024-05-01T10:00:00Z stdout F ok\nnot a record\n');
    appendFileSync(path, '2024-05-01T10:00:01Z stdout F also ok\n2024-05-01T10:00:02Z stdout F cut mid-wr');
    assert.equal(await readCriLog(path), 'ok\nalso ok\n');
  });

  test('limitBytes does not split a UTF-8 character', async () => {
    const path = join(dir(), 'c.log');
    writeFileSync(path, '2024-05-01T10:00:00Z stdout F héllo\n');
    assert.equal(await readCriLog(path, { limitBytes: 2 }), 'h');
    assert.equal(await readCriLog(path, { limitBytes: 3 }), 'hé');
  });
});

/** Everything a reader yields, checking every chunk's size. */
async function collect(reader: CriLogReader, maxChunk = CRI_MAX_LINE_BYTES): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of reader) {
    assert.ok(chunk.length > 0 && chunk.length <= maxChunk, `chunk of ${chunk.length} bytes`);
    parts.push(chunk);
  }
  assert.equal(reader.openFiles, 0, 'its files are closed once it ended');
  return Buffer.concat(parts).toString();
}

describe('openCriLogReader', () => {
  const sample = () => sampleLog({ unended: true });

  test('yields what readCriLog returns, for every option', async () => {
    const path = sample();
    const cases = [
      {},
      { sinceTime: at(2) },
      { sinceTime: at(3.5) },
      { sinceTime: at(2), tailLines: 1 },
      { tailLines: 2 },
      { tailLines: 0 },
      { tailLines: -1 },
      { tailLines: 2, limitBytes: 6 },
      { tailLines: 1, timestamps: true },
      { timestamps: true, limitBytes: 40 },
      { limitBytes: 0 },
    ];
    for (const options of cases) assert.equal(await collect(openCriLogReader(path, options)), await readCriLog(path, options), JSON.stringify(options));
    assert.equal(await collect(openCriLogReader(join(dir(), 'none.log'))), '', 'a missing log reads empty');
  });

  test('reads <path>.1 before <path>, joins a line across them, skips torn and garbage records', async () => {
    const d = dir();
    const path = join(d, 'c.log');
    writeFileSync(`${path}.1`, '2024-05-01T12:00:00.5+02:00 stdout P old-\ngarbage\n2024-05-01T10:00:00.7Z stderr F torn');
    writeFileSync(path, '2024-05-01T10:00:01Z stdout F new\n2024-05-01T10:00:02Z stdout F last\n2024-05-01T10:00:03Z stdout F cut mid-wr');
    for (const options of [{}, { timestamps: true }, { tailLines: 1 }]) assert.equal(await collect(openCriLogReader(path, options)), await readCriLog(path, options));
    assert.equal(await collect(openCriLogReader(path)), 'old-new\nlast\n');
  });

  test('a large log comes in chunks of at most chunkBytes, the same bytes as readCriLog, UTF-8 characters whole', async () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 30);
    for (let i = 0; i < 3000; i++) w.write(i % 3 ? 'stdout' : 'stderr', b(`line ${i} héllo wörld ${'x'.repeat(i % 50)}\n`), at(i));
    // A line of 40 KiB: three records, joined.
    w.write('stdout', b(`${'é'.repeat(20 * 1024)}\n`), at(3000));
    w.close();
    const chunks: Buffer[] = [];
    for await (const c of openCriLogReader(path, { chunkBytes: 1000 })) {
      assert.ok(c.length <= 1000);
      assert.ok(!c.toString('utf8').includes('\ufffd'), 'no character split between chunks');
      chunks.push(c);
    }
    assert.ok(chunks.length > 100);
    assert.equal(Buffer.concat(chunks).toString(), await readCriLog(path));
    assert.equal(await collect(openCriLogReader(path, { tailLines: 5, timestamps: true })), await readCriLog(path, { tailLines: 5, timestamps: true }));
  });

  test('a line longer than 1 MiB is written out in pieces, not held whole (same bytes when nothing interleaves)', async () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 30);
    w.write('stdout', b('before\n'), at(0));
    w.write('stdout', Buffer.alloc(3 * 1024 * 1024 + 5, 'a'), at(1));
    w.write('stdout', b('\nafter\n'), at(2));
    w.close();
    const reader = openCriLogReader(path, { timestamps: true });
    assert.equal(await collect(reader), await readCriLog(path, { timestamps: true }));
    assert.equal(await collect(openCriLogReader(path, { tailLines: 2, limitBytes: 10 })), 'aaaaaaaaaa', 'the long line counts as one for the tail');
  });

  test('a tail counts the lines there were at the start: lines written while it reads are not shown', async () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 30);
    for (let i = 0; i < 10; i++) w.write('stdout', b(`l${i}\n`), at(i));
    const reader = openCriLogReader(path, { tailLines: 3 });
    const first = await within(reader.next(), 5000, 'the first chunk');
    w.write('stdout', b('late\n'), at(20));
    w.close();
    let text = first.done ? '' : first.value.toString();
    for await (const c of reader) text += c.toString();
    assert.equal(text, 'l7\nl8\nl9\n');
  });

  test('close() stops it at once and closes its files', async () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 30);
    for (let i = 0; i < 2000; i++) w.write('stdout', b(`${'y'.repeat(100)}\n`), at(i));
    w.close();
    const reader = openCriLogReader(path);
    const r = await reader.next();
    assert.equal(r.done, false);
    assert.equal(reader.openFiles, 1);
    await reader.close();
    assert.equal(reader.openFiles, 0);
    assert.equal((await reader.next()).done, true, 'nothing after close');
  });
});

describe('followCriLog', () => {
  /** Pulls chunks into `got` until the reader ends; resolves with the whole text. */
  function pull(reader: CriLogReader) {
    const got: string[] = [];
    const ended = (async () => {
      for await (const c of reader) got.push(c.toString());
      return got.join('');
    })();
    return { text: () => got.join(''), ended };
  }

  test('the existing lines, then each line as it is appended; ends once the run is over, after what it wrote last', async () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 20);
    w.write('stdout', b('a\nb\n'), at(0));
    let running = true;
    const reader = followCriLog(path, { running: () => running, pollMs: 20, tailLines: 1 });
    const p = pull(reader);
    await eventually(() => p.text() === 'b\n', 5000, 'the tail');
    w.write('stdout', b('c\n'), at(1));
    await eventually(() => p.text() === 'b\nc\n', 5000, 'an appended line');
    w.write('stderr', b('d\n'), at(2));
    w.write('stdout', b('half'), at(3));
    await eventually(() => p.text() === 'b\nc\nd\n', 5000, 'the next line');
    // The last output of the run, then its end: shown (the unended line too, as the writer closed it).
    w.write('stdout', b('e\n'), at(4));
    w.write('stdout', b('f'), at(5));
    w.close(at(6));
    running = false;
    assert.equal(await within(p.ended, 5000, 'the follow to end'), 'b\nc\nd\nhalfe\nf\n');
    assert.equal(reader.openFiles, 0);
  });

  test('a change is seen by the watch of the directory, not only by the poll (here a minute)', async () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 100);
    w.write('stdout', b('one\n'), at(0));
    const reader = followCriLog(path, { pollMs: 60_000 });
    const p = pull(reader);
    await eventually(() => p.text() === 'one\n', 5000, 'the first line');
    let want = 'one\n';
    // Each line of 48 bytes: a rotation every other line.
    for (let i = 0; i < 6; i++) {
      w.write('stdout', b(`watched ${i}\n`), at(i + 1));
      want += `watched ${i}\n`;
      await eventually(() => p.text() === want, 5000, `watched ${i}`);
    }
    reader.finish();
    assert.equal(await within(p.ended, 5000, 'the end (finish wakes it)'), want);
    w.close();
  });

  test('what the run wrote between the last read and the check that it ended is shown', async () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 20);
    w.write('stdout', b('first\n'), at(0));
    let asked = 0;
    const running = () => {
      // The run writes its last line and exits just as the reader asks.
      if (asked++ === 0) w.write('stdout', b('last\n'), at(1));
      return false;
    };
    const p = pull(followCriLog(path, { running, pollMs: 60_000 }));
    assert.equal(await within(p.ended, 5000, 'the end'), 'first\nlast\n');
    w.close();
  });

  test('a line longer than 1 MiB is shown as it comes, not held until its end', async () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 30);
    const reader = followCriLog(path, { pollMs: 20 });
    const p = pull(reader);
    w.write('stdout', Buffer.alloc(3 * 1024 * 1024, 'a'), at(0));
    await eventually(() => p.text().length >= 1024 * 1024, 5000, 'the first MiB of the unfinished line');
    w.write('stdout', b('\n'), at(1));
    reader.finish();
    assert.equal(await within(p.ended, 5000, 'the end'), `${'a'.repeat(3 * 1024 * 1024)}\n`);
    w.close();
  });

  test('follows across rotations (<path> renamed to <path>.1, a new <path>)', async () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 200);
    w.write('stdout', b('start\n'), at(0));
    const reader = followCriLog(path, { pollMs: 20 });
    const p = pull(reader);
    let want = 'start\n';
    await eventually(() => p.text() === want, 5000, 'the first line');
    let rotations = 0;
    let ino = statSync(path).ino;
    for (let i = 0; i < 30; i++) {
      const line = `line ${i} ${'z'.repeat(30)}\n`;
      w.write('stdout', b(line), at(i + 1));
      want += line;
      await eventually(() => p.text() === want, 5000, `line ${i}`);
      if (statSync(path).ino !== ino) {
        rotations++;
        ino = statSync(path).ino;
      }
    }
    assert.ok(rotations >= 5, `${rotations} rotations`);
    reader.finish();
    assert.equal(await within(p.ended, 5000, 'the follow to end'), want);
    w.close();
  });

  for (const rotations of [2, 3]) {
    test(`behind by ${rotations} rotations: the rest of the file it reads (by its descriptor), then <path>.1, then <path>${rotations > 2 ? '; only the file rotated away twice before it was opened is lost' : ''}`, async () => {
      const path = join(dir(), 'c.log');
      const w = new CriLogWriter(path, 1000);
      let n = 0;
      /** The first line of each file. */
      const starts = [0];
      let ino = -1;
      const write = () => {
        w.write('stdout', b(`line ${String(n++).padStart(4, '0')} ${'z'.repeat(20)}\n`), T0);
        const now = statSync(path).ino;
        if (ino !== -1 && now !== ino) starts.push(n - 1);
        ino = now;
      };
      write();
      const reader = followCriLog(path, { pollMs: 20 });
      const first = await within(reader.next(), 5000, 'the first chunk');
      assert.equal(first.done ? '' : first.value.toString(), `line 0000 ${'z'.repeat(20)}\n`);
      // The consumer takes nothing meanwhile: the reader waits with the first file open.
      while (starts.length <= rotations) write();
      for (let i = 0; i < 3; i++) write();
      reader.finish();
      let text = first.value?.toString() ?? '';
      for await (const c of reader) text += c.toString();
      const got = text
        .split('\n')
        .slice(0, -1)
        .map((l) => Number(l.slice(5, 9)));
      const lost = rotations > 2 ? Array.from({ length: starts[2]! - starts[1]! }, (_, i) => starts[1]! + i) : [];
      assert.deepEqual(
        got,
        Array.from({ length: n }, (_, i) => i).filter((i) => !lost.includes(i)),
        `files start at lines ${starts.join(' ')}`,
      );
      assert.equal(reader.openFiles, 0);
      w.close();
    });
  }

  test('waits for a log that does not exist yet', async () => {
    const path = join(dir(), 'c.log');
    const reader = followCriLog(path, { pollMs: 20 });
    const p = pull(reader);
    const w = new CriLogWriter(path, 1 << 20);
    w.write('stdout', b('hello\n'), at(0));
    await eventually(() => p.text() === 'hello\n', 5000, 'the line');
    reader.finish();
    assert.equal(await within(p.ended, 5000, 'the end'), 'hello\n');
    w.close();
  });

  test('limitBytes ends a follow once that many bytes came', async () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 20);
    w.write('stdout', b('12345\n'), at(0));
    const reader = followCriLog(path, { pollMs: 20, limitBytes: 9 });
    const p = pull(reader);
    await eventually(() => p.text() === '12345\n', 5000, 'the first line');
    w.write('stdout', b('67890\n'), at(1));
    assert.equal(await within(p.ended, 5000, 'the end at the limit'), '12345\n678');
    w.close();
  });

  test('close() while it waits for more ends it and releases its file', async () => {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 20);
    w.write('stdout', b('x\n'), at(0));
    const reader = followCriLog(path, { pollMs: 60_000 });
    const p = pull(reader);
    await eventually(() => p.text() === 'x\n', 5000, 'the line');
    assert.equal(reader.openFiles, 1);
    await reader.close();
    assert.equal(reader.openFiles, 0);
    assert.equal(await within(p.ended, 5000, 'the iteration to end'), 'x\n');
    w.close();
  });
});

/**
 * A log of several MiB in two files: both streams interleaved, short lines with UTF-8, lines
 * split across writes, lines of 20-70 KiB (P records, crossing the readers' blocks), a garbage
 * line, a rotation; `unended`: the writer closes mid-line on both streams.
 */
function randomLog(seed: number, unended: boolean): string {
  const path = join(dir(), 'c.log');
  const rnd = prng(seed);
  const w = new CriLogWriter(path, 3 << 20);
  let step = 0;
  while (statSync(path).size + (existsSync(`${path}.1`) ? 3 << 20 : 0) < 4.5 * (1 << 20)) {
    const stream = rnd() < 0.8 ? 'stdout' : 'stderr';
    const kind = rnd();
    const time = at(step++ / 10);
    if (kind < 0.03) w.write(stream, b(`${'L'.repeat(20_000 + Math.floor(rnd() * 50_000))} end ${step}\n`), time);
    else if (kind < 0.1) w.write(stream, b(`part of ${step} `), time);
    else if (kind < 0.1005) appendFileSync(path, 'not a record\n');
    else w.write(stream, b(`${step} ${'héllo wörld '.repeat(Math.floor(rnd() * 8))}${'x'.repeat(Math.floor(rnd() * 60))}\n`), time);
  }
  if (unended) {
    w.write('stdout', b('left open on stdout'), at(step++ / 10));
    w.write('stderr', b('left open on stderr'), at(step++ / 10));
  } else {
    w.write('stdout', b('\n'), at(step++ / 10));
    w.write('stderr', b('\n'), at(step++ / 10));
  }
  w.close(at(step / 10));
  assert.ok(existsSync(`${path}.1`), 'rotated once');
  return path;
}

describe('tail (read backwards from the end)', () => {
  test("is readCriLog's for any N, with sinceTime, timestamps and limitBytes, on a log of P records, both streams, a rotation and unended lines", async () => {
    const path = randomLog(1, true);
    const lines = (await readCriLog(path)).split('\n').length - 1;
    assert.ok(lines > 2000, `${lines} lines`);
    const middle = at(2000);
    for (const tailLines of [0, 1, 2, 3, 7, 50, 777, 5000, lines - 1, lines, lines + 1, 1e9]) {
      for (const more of [{}, { timestamps: true }, { sinceTime: middle }, { sinceTime: middle, timestamps: true, limitBytes: 100_000 }]) {
        const options = { tailLines, ...more };
        assert.ok((await collect(openCriLogReader(path, options))) === (await readCriLog(path, options)), JSON.stringify(options));
      }
    }
  });

  test("a follow's tail of a log whose lines all ended is readCriLog's tail, then what is appended", async () => {
    const path = randomLog(2, false);
    for (const tailLines of [0, 1, 10, 333, 4000, 1e9]) {
      const reader = followCriLog(path, { tailLines, pollMs: 20 });
      const got: Buffer[] = [];
      const ended = (async () => {
        for await (const c of reader) got.push(c);
      })();
      const want = await readCriLog(path, { tailLines });
      await eventually(() => Buffer.concat(got).length === Buffer.byteLength(want), 10_000, `the tail of ${tailLines}`);
      reader.finish();
      await within(ended, 10_000, 'the end');
      assert.ok(Buffer.concat(got).toString() === want, `tailLines ${tailLines}`);
    }
  });
});

/**
 * A CriLogWriter of 1 MiB files written as fast as the event loop allows: a 64 KiB chunk of
 * 2048 lines `<seq, 9 digits> x…x` per turn (setImmediate), as a container writing without pause.
 * `fileStarts[g]` is the first line of the g-th file (read from `<path>.1`'s last line at each rotation).
 */
function fastWriter(path: string) {
  const w = new CriLogWriter(path, 1 << 20);
  const pad = 'x'.repeat(22);
  const fileStarts = [0];
  let next = 0;
  let ino = -1;
  let stopped = false;
  const checks = new Set<() => void>();
  const lastLine = (file: string): number => {
    const text = readFileSync(file, 'latin1');
    const last = text.slice(text.lastIndexOf('\n', text.length - 2) + 1, -1);
    return Number(parseCriLine(last)?.content.toString().slice(0, 9));
  };
  const turn = () => {
    if (stopped) return;
    let chunk = '';
    for (let i = 0; i < 2048; i++) chunk += `${String(next++).padStart(9, '0')}${pad}\n`;
    w.write('stdout', b(chunk));
    const now = statSync(path).ino;
    if (ino !== -1 && now !== ino) fileStarts.push(lastLine(`${path}.1`) + 1);
    ino = now;
    for (const c of checks) c();
    setImmediate(turn);
  };
  setImmediate(turn);
  return {
    fileStarts,
    /** Lines written (the next line's number). */
    written: () => next,
    rotations: () => fileStarts.length - 1,
    /** Resolves at the first turn after which `check()` holds. */
    until(check: () => boolean): Promise<void> {
      return new Promise((resolve) => {
        const c = () => {
          if (!check()) return;
          checks.delete(c);
          resolve();
        };
        checks.add(c);
        c();
      });
    },
    stop() {
      stopped = true;
      w.close();
    },
  };
}

/** The line numbers a follow of a {@link fastWriter} log delivers, checking each line whole; `onChunk` after each chunk. */
function lineNumbers(reader: CriLogReader, onChunk: (got: number[]) => void) {
  const got: number[] = [];
  let rest = '';
  let bad: string | undefined;
  const ended = (async () => {
    for await (const c of reader) {
      const lines = (rest + c.toString('latin1')).split('\n');
      rest = lines.pop()!;
      for (const l of lines) {
        if (l.length !== 31 || !l.endsWith('xx')) bad ??= l;
        got.push(Number(l.slice(0, 9)));
      }
      onChunk(got);
    }
  })();
  return { got, ended, bad: () => bad, rest: () => rest };
}

describe('followCriLog under a writer rotating every 1 MiB as fast as it can', () => {
  for (const tailLines of [10, 0]) {
    test(`--tail ${tailLines}: the last ${tailLines} lines as of the start, then every line in order, keeping up (a line written after 6 rotations arrives)`, async (t) => {
      const path = join(dir(), 'c.log');
      const wr = fastWriter(path);
      try {
        await within(
          wr.until(() => wr.rotations() >= 2),
          30_000,
          'two rotations before the follow starts',
        );
        const before = wr.written();
        const reader = followCriLog(path, { tailLines, pollMs: 20 });
        const started = wr.rotations();
        /** The writer's rotations when the tail (or, without one, a first line) had come. */
        let tailAt: number | undefined;
        const r = lineNumbers(reader, (got) => {
          if (tailAt === undefined && got.length >= Math.max(1, tailLines)) tailAt = wr.rotations();
        });
        await within(
          wr.until(() => wr.rotations() >= started + 6),
          60_000,
          'six rotations while following',
        );
        // The marker: the last line written after six rotations. Two more rotations remove its file,
        // so a reader more than one file behind loses it.
        const marker = wr.written() - 1;
        const markerAt = wr.rotations();
        await within(
          wr.until(() => (r.got.at(-1) ?? -1) >= marker || wr.rotations() >= markerAt + 3),
          60_000,
          'the follow to reach the marker, or three more rotations',
        );
        wr.stop();
        const written = wr.written();
        reader.finish();
        await within(r.ended, 60_000, 'the follow to end');
        assert.equal(reader.openFiles, 0);
        assert.equal(r.bad(), undefined, 'every line whole');
        assert.equal(r.rest(), '', 'the last line whole');
        const got = r.got;
        assert.ok(got.length >= tailLines, `${got.length} lines`);
        // The tail: lines written before the start (or while it opened the files), consecutive.
        if (tailLines > 0) {
          assert.ok(got[0]! >= before - tailLines && got[0]! < before + 2048 * 4, `the tail starts at line ${got[0]} (${before} written before the start)`);
          assert.deepEqual(
            got.slice(0, tailLines),
            Array.from({ length: tailLines }, (_, i) => got[0]! + i),
          );
        } else assert.ok(got[0]! >= before, `the first line shown is ${got[0]}: none of the ${before} written before the start`);
        // Found from the end of the files as they were: not after reading them (twice) while they grow and rotate.
        assert.ok(tailAt !== undefined && tailAt <= started + 1, `the first lines came at rotation ${tailAt} (the follow started at ${started})`);
        // In order, no duplicates; a gap only where whole files were rotated away (twice) before the follow opened them.
        let lost = 0;
        for (let i = 1; i < got.length; i++) {
          const [a, c] = [got[i - 1]!, got[i]!];
          assert.ok(c > a, `in order, no duplicate: line ${c} after ${a}`);
          if (c === a + 1) continue;
          const g1 = wr.fileStarts.indexOf(a + 1);
          const g2 = wr.fileStarts.indexOf(c);
          assert.ok(g1 > 0 && g2 > g1, `lines ${a + 1}..${c - 1} missing: not whole files (files start at ${wr.fileStarts.join(' ')})`);
          lost += g2 - g1;
          t.diagnostic(`gap after line ${a}: files ${g1}..${g2 - 1} (the follow started at rotation ${started}, marker at ${markerAt})`);
        }
        t.diagnostic(
          `${got.length} lines delivered of ${written - got[0]!} from the first, ${wr.rotations()} rotations, ${lost} files lost (rotated away twice before they were opened)`,
        );
        assert.ok(got.includes(marker), `the line written after six rotations (${marker}) was delivered: the follow kept up (${lost} files lost)`);
        // Here the follow reads faster than the writer writes (it reads synchronously, a MiB per turn of the event loop, the writer 2048 lines): nothing is lost.
        assert.equal(lost, 0, 'no file rotated away before the follow opened it');
        assert.equal(got.at(-1), written - 1, 'the last line written');
      } finally {
        wr.stop();
      }
    });
  }
});
