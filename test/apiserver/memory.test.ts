// Memory bounds of the local control plane: the watch history is bounded by bytes, the WAL
// is compacted by size and recovered by streaming (a restart needs memory for the data,
// not for the log), and watchers that stop reading are cut off instead of buffered
// without bound, while watchers that keep up get every event.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../../apiserver/store.js';
import { WatchBuffer, sharedEventLine, type WatchChunk, type WatchTimers } from '../../apiserver/watch-buffer.js';
import type { ApiServerHandle } from '../../apiserver/index.js';
import type { KObject } from '../../apiserver/types.js';
import { createLogger, silentLogger } from '../../shared/log/index.js';
import { eventually, startProcess } from '../helpers/process.js';
import { raw, startTestServer, tempDir } from './helpers.js';

const CMS = '/api/v1/namespaces/default/configmaps';
const KEY = 'core/configmaps';

function cm(name: string, bytes: number, gen: number): KObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data: { gen: String(gen), blob: 'x'.repeat(bytes) } } as KObject;
}

async function putMany(store: Store, n: number, bytes: number, name = 'big'): Promise<number[]> {
  const rvs: number[] = [];
  for (let i = 0; i < n; i++) {
    const { entry, durable } = store.put(KEY, cm(name, bytes, i));
    await durable;
    rvs.push(entry.rv);
  }
  return rvs;
}

describe('store memory bounds', () => {
  test('the watch history is bounded by bytes: big updates push old events out and a watch from before them gets 410', async () => {
    const dir = tempDir();
    try {
      const store = await Store.open({ dataDir: dir, log: silentLogger, historyBytes: 1024 * 1024, fsync: false });
      const rvs = await putMany(store, 40, 100 * 1024);
      assert.ok(store.historyByteLength <= 1024 * 1024, `history holds ${store.historyByteLength} bytes`);
      assert.ok(store.historyLength < 12, `history holds ${store.historyLength} events`);
      assert.equal(
        store.watch(KEY, rvs[0]!, () => {}),
        undefined,
        'a resourceVersion pushed out of the history → 410',
      );
      const got: number[] = [];
      const stop = store.watch(KEY, rvs.at(-3)!, (ev) => got.push(ev.rv));
      assert.ok(stop);
      assert.deepEqual(got, rvs.slice(-2), 'recent events replay');
      stop();
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the WAL is compacted by size: many updates of one big object keep the file near the live data, and nothing is lost', async () => {
    const dir = tempDir();
    try {
      const opts = { dataDir: dir, log: silentLogger, historyBytes: 256 * 1024, compactMinBytes: 1024 * 1024, fsync: false };
      const store = await Store.open(opts);
      // Writes racing the compactions: one object updated 100 times, others created and deleted.
      for (let i = 0; i < 100; i++) {
        const big = store.put(KEY, cm('big', 100 * 1024, i)).durable;
        const small = store.put(KEY, cm(`s${i}`, 10, i)).durable;
        const gone = i % 2 === 0 ? store.delete(KEY, 'default', `s${i}`)?.durable : undefined;
        await Promise.all([big, small, gone]);
      }
      await store.flush();
      const size = statSync(join(dir, 'wal.log')).size;
      assert.ok(size < 2 * 1024 * 1024, `10 MB written, the log holds ${size} bytes`);
      const before = store.list(KEY).map((e) => e.json);
      const rv = store.currentRv;
      await store.close();
      const again = await Store.open(opts);
      assert.deepEqual(
        again.list(KEY).map((e) => e.json),
        before,
      );
      assert.equal(again.currentRv, rv);
      assert.equal(JSON.parse(again.get(KEY, 'default', 'big')!.json).data.gen, '99');
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('recovery of an oversized log: state and a bounded history come back, and the log is compacted on open', async () => {
    const dir = tempDir();
    try {
      // Written as an older build did: no size-based compaction.
      const old = await Store.open({ dataDir: dir, log: silentLogger, compactMinBytes: Number.MAX_SAFE_INTEGER, fsync: false });
      const rvs = await putMany(old, 80, 100 * 1024);
      await old.close();
      const big = statSync(join(dir, 'wal.log')).size;
      assert.ok(big > 8_000_000);
      const store = await Store.open({ dataDir: dir, log: silentLogger, historyBytes: 512 * 1024, compactMinBytes: 1024 * 1024, fsync: false });
      assert.equal(store.currentRv, rvs.at(-1));
      assert.equal(JSON.parse(store.get(KEY, 'default', 'big')!.json).data.gen, '79');
      assert.ok(store.historyByteLength <= 512 * 1024, `replay kept ${store.historyByteLength} bytes of history`);
      assert.ok(store.walByteLength < big / 4, `log compacted on open: ${store.walByteLength} of ${big} bytes`);
      assert.ok(store.oldestWatchableRv > rvs[0]!);
      const got: number[] = [];
      assert.ok(store.watch(KEY, store.oldestWatchableRv, (ev) => got.push(ev.rv)));
      assert.equal(got.at(-1), rvs.at(-1), 'the retained history resumes up to the last write');
      await store.close();
      const third = await Store.open({ dataDir: dir, log: silentLogger, fsync: false });
      assert.equal(JSON.parse(third.get(KEY, 'default', 'big')!.json).data.gen, '79');
      assert.equal(third.oldestWatchableRv, store.oldestWatchableRv, 'the compacted history survives the next restart');
      await third.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------ WatchBuffer (fake output and timers)

class FakeOutput extends EventEmitter {
  written: WatchChunk[] = [];
  /** Bytes "in the socket": grows on write, shrinks when the test flushes. */
  writableLength = 0;
  writableEnded = false;
  destroyed = false;
  private callbacks: (() => void)[] = [];
  constructor(private readonly highWater = 100) {
    super();
  }
  write(chunk: WatchChunk, cb?: () => void): boolean {
    this.written.push(chunk);
    this.writableLength += typeof chunk === 'string' ? chunk.length : chunk.byteLength;
    if (cb) this.callbacks.push(cb);
    return this.writableLength < this.highWater;
  }
  /** The client read everything. */
  flush(): void {
    this.writableLength = 0;
    for (const cb of this.callbacks.splice(0)) cb();
    this.emit('drain');
  }
}

class FakeTimers implements WatchTimers {
  now = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;
  set(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  }
  clear(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  advance(ms: number): void {
    this.now += ms;
    for (const [id, t] of [...this.timers]) {
      if (t.at <= this.now) {
        this.timers.delete(id);
        t.fn();
      }
    }
  }
  get pending(): number {
    return this.timers.size;
  }
}

describe('WatchBuffer', () => {
  test('writes only while the output keeps up, then queues in order until it drains', () => {
    const out = new FakeOutput(100);
    const b = new WatchBuffer(out, { maxBytes: 10_000, maxEvents: 100, graceMs: 1000 }, () => assert.fail('not slow'), new FakeTimers());
    b.push('a'.repeat(60));
    b.push('b'.repeat(60)); // output now over its high-water mark: write() returned false
    b.push('c'.repeat(10));
    b.push('d'.repeat(10));
    assert.deepEqual(
      out.written.map((c) => String(c)[0]),
      ['a', 'b'],
    );
    assert.equal(b.pendingEvents, 4);
    out.flush();
    assert.deepEqual(
      out.written.map((c) => String(c)[0]),
      ['a', 'b', 'c', 'd'],
    );
    out.flush();
    assert.equal(b.pendingEvents, 0);
  });

  test('a watcher over its event bound for graceMs is cut off once; one that catches up in time is not', () => {
    const timers = new FakeTimers();
    const out = new FakeOutput(1);
    const cut: unknown[] = [];
    const b = new WatchBuffer(out, { maxBytes: 1 << 20, maxEvents: 5, graceMs: 1000 }, (info) => cut.push(info), timers);
    for (let i = 0; i < 7; i++) b.push(`e${i}`);
    assert.equal(timers.pending, 1, 'over the bound: the grace period runs');
    timers.advance(500);
    while (b.pendingEvents > 0) out.flush(); // caught up in time
    assert.equal(timers.pending, 0);
    timers.advance(1000);
    assert.equal(cut.length, 0);
    for (let i = 0; i < 7; i++) b.push(`f${i}`);
    timers.advance(999);
    assert.equal(cut.length, 0);
    timers.advance(1);
    assert.equal(cut.length, 1, 'still over after graceMs: cut off');
    assert.deepEqual(cut[0], { pendingBytes: 14, pendingEvents: 7 });
    const n = out.written.length;
    b.push('after');
    out.flush();
    b.push('after2');
    assert.equal(out.written.length, n, 'nothing is written after the cut');
    assert.equal(cut.length, 1, 'reported once');
    assert.ok(b.cutOff);
  });

  test('going four times over the byte bound cuts off at once, without waiting for the grace period', () => {
    const timers = new FakeTimers();
    const out = new FakeOutput(10);
    let cut = 0;
    const b = new WatchBuffer(out, { maxBytes: 1000, maxEvents: 1000, graceMs: 60_000 }, () => cut++, timers);
    b.push('x'.repeat(2000));
    assert.equal(cut, 0);
    b.push('y'.repeat(2001));
    assert.equal(cut, 1);
    assert.equal(timers.pending, 0);
  });

  test('the initial state is pulled lazily as the client reads, and events pushed meanwhile follow it', () => {
    const out = new FakeOutput(25);
    const b = new WatchBuffer(out, { maxBytes: 1000, maxEvents: 5, graceMs: 1000 }, () => assert.fail('not slow'), new FakeTimers());
    let produced = 0;
    function* initial(): Generator<string> {
      for (let i = 0; i < 100; i++) {
        produced++;
        yield `init${String(i).padStart(6, '0')}`; // 10 bytes each
      }
    }
    b.pushLazy(initial());
    assert.equal(produced, 3, 'only what the output takes before it is full');
    b.push('event-1');
    while (out.written.at(-1) !== 'event-1') out.flush();
    assert.equal(produced, 100);
    assert.deepEqual(
      out.written.slice(0, 100),
      Array.from({ length: 100 }, (_, i) => `init${String(i).padStart(6, '0')}`),
    );
  });

  test('close() hands what is queued to the output (a final ERROR line is not lost), then nothing more', () => {
    const out = new FakeOutput(1);
    const b = new WatchBuffer(out, undefined, () => assert.fail('not slow'), new FakeTimers());
    b.push('one');
    b.push('ERROR');
    assert.deepEqual(out.written, ['one']);
    b.close();
    assert.deepEqual(out.written, ['one', 'ERROR']);
    b.push('late');
    out.flush();
    assert.deepEqual(out.written, ['one', 'ERROR']);
  });

  test('an event is serialised once for all its watchers', () => {
    const ev = {};
    let builds = 0;
    const build = () => {
      builds++;
      return 'line\n';
    };
    const a = sharedEventLine(ev, 'MODIFIED v1', build);
    const b = sharedEventLine(ev, 'MODIFIED v1', build);
    assert.equal(a, b);
    assert.equal(builds, 1);
    sharedEventLine(ev, 'DELETED v1', build);
    assert.equal(builds, 2);
    sharedEventLine({}, 'MODIFIED v1', build);
    assert.equal(builds, 3);
  });
});

// ------------------------------------------------------------------ scenarios (real HTTP watches, real processes)

interface TestWatch {
  names: string[];
  res?: IncomingMessage;
  req: ClientRequest;
  /** The stream ended or the connection closed (seen only while the socket is read). */
  ended(): boolean;
}

function openWatch(h: ApiServerHandle, path: string, paused: boolean): Promise<TestWatch> {
  const url = new URL(path, h.url);
  return new Promise((resolve, reject) => {
    const names: string[] = [];
    let done = false;
    const endResolve = () => (done = true);
    const ended = () => done;
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      { headers: h.token ? { authorization: `Bearer ${h.token}` } : {}, ...(h.caCertPem ? { ca: h.caCertPem } : {}), agent: false },
      (res) => {
        const w: TestWatch = { names, res, req, ended };
        res.on('error', () => endResolve());
        res.on('close', () => endResolve());
        res.on('aborted', () => endResolve());
        if (paused) {
          res.pause();
          res.socket.pause();
        } else {
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buf += chunk;
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              if (!line.trim()) continue;
              const ev = JSON.parse(line) as { type: string; object: { data?: { gen?: string } } };
              names.push(`${ev.type}:${ev.object.data?.gen}`);
            }
          });
        }
        resolve(w);
      },
    );
    req.on('error', (err) => {
      endResolve();
      reject(err);
    });
    req.end();
  });
}

describe('slow watchers and big objects (scenarios)', () => {
  test('watchers that stop reading are cut off (one log line each) while the others get every event; memory stays bounded', async () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'warn', format: 'json', write: (l) => lines.push(l) });
    const s = await startTestServer({ log, watchBuffer: { maxBytes: 8 * 1024 * 1024, maxEvents: 1000, graceMs: 1000 } });
    const watches: TestWatch[] = [];
    try {
      await raw(s.handle, 'POST', CMS, JSON.stringify({ metadata: { name: 'big' }, data: { gen: 'init' } }));
      const FAST = 6;
      const SLOW = 20;
      const WRITES = 40;
      for (let i = 0; i < FAST + SLOW; i++) watches.push(await openWatch(s.handle, `${CMS}?watch=1`, i >= FAST));
      await eventually(() => watches.slice(0, FAST).every((w) => w.names.length === 1), 10_000, 'initial ADDED on the fast watches');
      const rss0 = process.memoryUsage().rss;
      const blob = 'z'.repeat(1_000_000); // ConfigMap data is limited to 1 MiB
      for (let g = 0; g < WRITES; g++) {
        const r = await raw(s.handle, 'PUT', `${CMS}/big`, JSON.stringify({ metadata: { name: 'big' }, data: { gen: String(g), blob } }));
        assert.equal(r.status, 200);
      }
      const want = ['ADDED:init', ...Array.from({ length: WRITES }, (_, g) => `MODIFIED:${g}`)];
      await eventually(() => watches.slice(0, FAST).every((w) => w.names.length === want.length), 60_000, 'every event on every fast watch');
      for (const w of watches.slice(0, FAST)) assert.deepEqual(w.names, want);
      await eventually(() => s.handle.activeWatches() === FAST, 30_000, `slow watches cut off (${s.handle.activeWatches()} open)`);
      // The clients see their connection end once they read again (then client-go would re-watch).
      for (const w of watches.slice(FAST)) {
        w.res!.socket?.resume();
        w.res!.resume();
      }
      await eventually(() => watches.slice(FAST).every((w) => w.ended()), 30_000, 'slow clients see the end of their watch');
      assert.ok(
        watches.slice(0, FAST).every((w) => !w.ended()),
        'fast watches stay open',
      );
      const cutLines = lines.filter((l) => /watch consumer too slow; cut off/.test(l));
      assert.equal(cutLines.length, SLOW, 'one line per watcher cut off');
      const grown = process.memoryUsage().rss - rss0;
      // 20 slow watchers × 40 MB each would be 800 MB if every one held its own copy.
      assert.ok(grown < 400 * 1024 * 1024, `RSS grew by ${Math.round(grown / 1048576)} MiB`);
      // The fast watchers are still served after the slow ones went.
      await raw(s.handle, 'PUT', `${CMS}/big`, JSON.stringify({ metadata: { name: 'big' }, data: { gen: 'last' } }));
      await eventually(() => watches.slice(0, FAST).every((w) => w.names.at(-1) === 'MODIFIED:last'), 10_000, 'fast watchers still served');
    } finally {
      for (const w of watches) w.req.destroy();
      await s.stop();
    }
  });

  test('a control plane with a capped heap takes many updates of a big ConfigMap and restarts after kill -9 with the data', async () => {
    const dir = tempDir();
    const args = ['--max-old-space-size=384', '--import', 'tsx', 'cli/ledge.ts', 'apiserver', '--data-dir', dir, '--port', '0', '--insecure-http', '--log-level', 'info'];
    let p = startProcess(args, {}, 'api-heap');
    try {
      const url = (await p.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+)"/, 60_000))[1]!;
      const h = { url, token: '', caCertPem: '' } as ApiServerHandle;
      const blob = 'q'.repeat(1_000_000); // ConfigMap data is limited to 1 MiB
      assert.equal((await raw(h, 'POST', CMS, JSON.stringify({ metadata: { name: 'huge' }, data: { gen: '0', blob } }))).status, 201);
      let maxWal = 0;
      for (let g = 1; g <= 300; g++) {
        const r = await raw(h, 'PUT', `${CMS}/huge`, JSON.stringify({ metadata: { name: 'huge' }, data: { gen: String(g), blob } }));
        assert.equal(r.status, 200, `update ${g}: ${r.text.slice(0, 200)}`);
        maxWal = Math.max(maxWal, statSync(join(dir, 'wal.log')).size);
      }
      // 300 MB written; the log is rewritten once it exceeds 2 × (live data + 64 MiB of history).
      assert.ok(maxWal < 200 * 1024 * 1024, `WAL peaked at ${Math.round(maxWal / 1048576)} MiB`);
      const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.child.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
      assert.ok(rss < 900 * 1024 * 1024, `server RSS ${Math.round(rss / 1048576)} MiB`);
      await p.kill9();
      p = startProcess(args, {}, 'api-heap-2');
      const url2 = (await p.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+)"/, 60_000))[1]!;
      const h2 = { url: url2, token: '', caCertPem: '' } as ApiServerHandle;
      const got = await raw(h2, 'GET', `${CMS}/huge`);
      assert.equal(got.status, 200);
      assert.equal(got.json().data.gen, '300');
      assert.equal((await raw(h2, 'PUT', `${CMS}/huge`, JSON.stringify({ metadata: { name: 'huge' }, data: { gen: '301', blob } }))).status, 200, 'writes work after the restart');
      assert.equal(await p.stop(), 0);
    } finally {
      await p.kill9();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
