/**
 * The CRI log writer and reader (edge/edged/logs.ts) on real files: lines split at '\n' into F
 * records, unfinished lines buffered per stream and written as P records past 16 KiB or at
 * close, the two-file rotation bound, the reader's since/tail/limit/timestamps, a record torn
 * by a crash, and a write failure that logs once and drops the rest.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CRI_MAX_LINE_BYTES, CriLogWriter, parseCriLine, readCriLog } from '../../edge/edged/logs.js';
import { createLogger } from '../../shared/log/index.js';
import { tempDir } from '../helpers/files.js';

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

describe('readCriLog', () => {
  function sample(): string {
    const path = join(dir(), 'c.log');
    const w = new CriLogWriter(path, 1 << 20);
    w.write('stdout', b('one\n'), at(0));
    w.write('stdout', b('tw'), at(1));
    w.write('stderr', b('three\n'), at(2));
    w.write('stdout', b('o\n'), at(3));
    w.write('stdout', b('four\n'), at(4));
    w.close();
    return path;
  }

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
