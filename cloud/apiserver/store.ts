/**
 * @module
 * The object store: an in-memory map of every object, made durable by a write-ahead
 * log (shared/wal) and fed to watchers in resourceVersion order.
 *
 * Every write gets the next value of one global counter as its resourceVersion (like
 * etcd's revision). A write is applied in memory synchronously, so handlers can do
 * compare-and-swap without locks (JS is single-threaded), and is acknowledged and
 * delivered to watchers only after its WAL record is fsynced. Watch history is a
 * window of the most recent durable events; a watch from before the window gets 410.
 *
 * WAL records (JSON): `p` put, `d` delete, both carrying the full object; on
 * compaction the log is rewritten as `h` (header: rv, compactedRv), `s` (one per live
 * object) and `e` (retained history events, so watches resume across restarts).
 */
import { join } from 'node:path';
import { AppendLog } from '../../shared/wal/index.js';
import type { Logger } from '../../shared/log/index.js';
import { StorageError } from '../../shared/errors/index.js';
import type { KObject } from './types.js';

export interface Entry {
  readonly obj: KObject;
  readonly json: string;
  readonly rv: number;
}

export type StoreEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  readonly rv: number;
  readonly type: StoreEventType;
  readonly storageKey: string;
  /** New state (for DELETED: the final state, carrying the delete's resourceVersion). */
  readonly obj: KObject;
  readonly json: string;
  /** State before the write, when known (needed for selector transitions). */
  readonly prev?: KObject;
}

export type Subscriber = (ev: StoreEvent) => void;

export interface StoreOptions {
  dataDir: string;
  log: Logger;
  /** Durable events kept for watch resumption. Default 10000. */
  historySize?: number;
  /** Compact once the WAL has this many records beyond twice the live object count. Default 20000. */
  compactAfterRecords?: number;
  /** fsync the WAL (default true; benchmarks of raw CPU cost may disable). */
  fsync?: boolean;
}

interface Record_ {
  t: 'p' | 'd' | 'h' | 's' | 'e';
  rv?: number;
  c?: number;
  k?: string;
  e?: StoreEventType;
  o?: KObject;
}

function objKey(obj: KObject): string {
  return `${obj.metadata.namespace ?? ''}/${obj.metadata.name ?? ''}`;
}

export class Store {
  private readonly data = new Map<string, Map<string, Entry>>();
  private rv = 0;
  private durableRv = 0;
  /** Watches from a resourceVersion older than this get 410 Gone. */
  private compactedRv = 0;
  private history: StoreEvent[] = [];
  private readonly pending: StoreEvent[] = [];
  private readonly subs = new Map<string, Set<Subscriber>>();
  private readonly anySubs = new Set<Subscriber>();
  private recordsSinceCompaction = 0;
  private compacting = false;
  private deferred: { bytes: Uint8Array; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private closed = false;
  private readonly historySize: number;
  private readonly compactAfter: number;

  private constructor(
    private readonly wal: AppendLog,
    private readonly log: Logger,
    opts: StoreOptions,
  ) {
    this.historySize = opts.historySize ?? 10000;
    this.compactAfter = opts.compactAfterRecords ?? 20000;
  }

  static async open(opts: StoreOptions): Promise<Store> {
    const { log: wal, records, truncatedBytes } = await AppendLog.open(join(opts.dataDir, 'wal.log'), { fsync: opts.fsync ?? true });
    const store = new Store(wal, opts.log, opts);
    if (truncatedBytes > 0) opts.log.warn('WAL had a torn tail (an unacknowledged write); cut it off', { bytes: truncatedBytes });
    store.replay(records);
    return store;
  }

  private replay(records: Uint8Array[]): void {
    const dec = new TextDecoder();
    for (const raw of records) {
      const text = dec.decode(raw);
      const r = JSON.parse(text) as Record_;
      switch (r.t) {
        case 'h':
          this.data.clear();
          this.history = [];
          this.rv = r.rv ?? 0;
          this.compactedRv = r.c ?? this.rv;
          this.recordsSinceCompaction = 0;
          break;
        case 's': {
          const json = JSON.stringify(r.o);
          this.bucket(r.k!).set(objKey(r.o!), { obj: r.o!, json, rv: Number(r.o!.metadata.resourceVersion) });
          break;
        }
        case 'e':
          this.pushHistory({ rv: r.rv!, type: r.e!, storageKey: r.k!, obj: r.o!, json: JSON.stringify(r.o) });
          break;
        case 'p':
        case 'd': {
          const b = this.bucket(r.k!);
          const key = objKey(r.o!);
          const prev = b.get(key)?.obj;
          const json = JSON.stringify(r.o);
          if (r.t === 'p') b.set(key, { obj: r.o!, json, rv: r.rv! });
          else b.delete(key);
          this.rv = Math.max(this.rv, r.rv!);
          this.recordsSinceCompaction++;
          this.pushHistory({ rv: r.rv!, type: r.t === 'd' ? 'DELETED' : prev ? 'MODIFIED' : 'ADDED', storageKey: r.k!, obj: r.o!, json, ...(prev ? { prev } : {}) });
          break;
        }
      }
    }
    this.durableRv = this.rv;
    if (this.history.length === 0) this.compactedRv = this.rv;
  }

  private bucket(storageKey: string): Map<string, Entry> {
    let b = this.data.get(storageKey);
    if (!b) this.data.set(storageKey, (b = new Map()));
    return b;
  }

  /** Latest resourceVersion (including writes not yet durable). */
  get currentRv(): number {
    return this.rv;
  }

  /** Every event up to this resourceVersion has been delivered to watchers. */
  get durableResourceVersion(): number {
    return this.durableRv;
  }

  get oldestWatchableRv(): number {
    return this.compactedRv;
  }

  get(storageKey: string, namespace: string, name: string): Entry | undefined {
    return this.data.get(storageKey)?.get(`${namespace}/${name}`);
  }

  /** Entries of a type (optionally one namespace), sorted by namespace/name like etcd keys. */
  list(storageKey: string, namespace?: string): Entry[] {
    const b = this.data.get(storageKey);
    if (!b) return [];
    const keys = [...b.keys()];
    const filtered = namespace ? keys.filter((k) => k.startsWith(`${namespace}/`)) : keys;
    filtered.sort();
    return filtered.map((k) => b.get(k)!);
  }

  /** Number of objects of a type. */
  count(storageKey: string): number {
    return this.data.get(storageKey)?.size ?? 0;
  }

  /**
   * Stores `obj` (taking ownership: it must not be mutated afterwards), assigning it
   * the next resourceVersion. Returns the new entry now and a promise of durability.
   */
  put(storageKey: string, obj: KObject): { entry: Entry; durable: Promise<void> } {
    this.assertOpen();
    const rv = ++this.rv;
    obj.metadata.resourceVersion = String(rv);
    const json = JSON.stringify(obj);
    const b = this.bucket(storageKey);
    const key = objKey(obj);
    const prevEntry = b.get(key);
    const entry: Entry = { obj, json, rv };
    b.set(key, entry);
    const ev: StoreEvent = { rv, type: prevEntry ? 'MODIFIED' : 'ADDED', storageKey, obj, json, ...(prevEntry ? { prev: prevEntry.obj } : {}) };
    const rec = `{"t":"p","rv":${rv},"k":${JSON.stringify(storageKey)},"o":${json}}`;
    return { entry, durable: this.persist(ev, rec, () => (prevEntry ? b.set(key, prevEntry) : b.delete(key))) };
  }

  /** Removes an object; its final state (with the delete's resourceVersion) goes to watchers. */
  delete(storageKey: string, namespace: string, name: string): { entry: Entry; durable: Promise<void> } | undefined {
    this.assertOpen();
    const b = this.data.get(storageKey);
    const key = `${namespace}/${name}`;
    const prevEntry = b?.get(key);
    if (!b || !prevEntry) return undefined;
    const rv = ++this.rv;
    const obj = JSON.parse(prevEntry.json) as KObject;
    obj.metadata.resourceVersion = String(rv);
    const json = JSON.stringify(obj);
    b.delete(key);
    const entry: Entry = { obj, json, rv };
    const ev: StoreEvent = { rv, type: 'DELETED', storageKey, obj, json, prev: prevEntry.obj };
    const rec = `{"t":"d","rv":${rv},"k":${JSON.stringify(storageKey)},"o":${json}}`;
    return { entry, durable: this.persist(ev, rec, () => b.set(key, prevEntry)) };
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('store is closed');
  }

  private persist(ev: StoreEvent, rec: string, rollback: () => void): Promise<void> {
    this.pending.push(ev);
    this.recordsSinceCompaction++;
    const bytes = Buffer.from(rec);
    const appended = this.compacting
      ? new Promise<void>((resolve, reject) => this.deferred.push({ bytes, resolve, reject }))
      : this.wal.append(bytes);
    const done = appended.then(
      () => {
        this.removePending(ev);
        this.durableRv = Math.max(this.durableRv, ev.rv);
        this.dispatch(ev);
      },
      (err: unknown) => {
        this.removePending(ev);
        // Undo in memory if nothing newer replaced it, so reads match what is on disk.
        const cur = this.get(ev.storageKey, ev.obj.metadata.namespace ?? '', ev.obj.metadata.name ?? '');
        if ((ev.type === 'DELETED' && !cur) || cur?.rv === ev.rv) rollback();
        this.log.error('WAL append failed; write rolled back', { err, rv: ev.rv });
        throw err;
      },
    );
    this.maybeCompact();
    return done;
  }

  private removePending(ev: StoreEvent): void {
    const i = this.pending.indexOf(ev);
    if (i >= 0) this.pending.splice(i, 1);
  }

  private pushHistory(ev: StoreEvent): void {
    this.history.push(ev);
    // Trim in chunks so the array shift cost is amortised.
    if (this.history.length > this.historySize + Math.max(16, this.historySize >> 3)) {
      const drop = this.history.length - this.historySize;
      this.compactedRv = this.history[drop - 1]!.rv;
      this.history = this.history.slice(drop);
    }
  }

  private dispatch(ev: StoreEvent): void {
    this.pushHistory(ev);
    const set = this.subs.get(ev.storageKey);
    if (set) for (const s of set) s(ev);
    for (const s of this.anySubs) s(ev);
  }

  /**
   * Replays durable events with rv > fromRv of one type, then follows new ones.
   * Returns undefined when fromRv is older than the retained history (→ 410 Gone).
   */
  watch(storageKey: string, fromRv: number, sub: Subscriber): (() => void) | undefined {
    if (fromRv < this.compactedRv) return undefined;
    // Binary search the first event after fromRv.
    let lo = 0;
    let hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.history[mid]!.rv <= fromRv) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.history.length; i++) {
      const ev = this.history[i]!;
      if (ev.storageKey === storageKey) sub(ev);
    }
    let set = this.subs.get(storageKey);
    if (!set) this.subs.set(storageKey, (set = new Set()));
    set.add(sub);
    return () => set.delete(sub);
  }

  /** Follows every durable write of every type (for in-process controllers). */
  subscribeAll(sub: Subscriber): () => void {
    this.anySubs.add(sub);
    return () => this.anySubs.delete(sub);
  }

  /** Waits until every write issued so far is durable. */
  async flush(): Promise<void> {
    while (this.pending.length > 0 || this.compacting) {
      await this.wal.drain();
      await new Promise((r) => setImmediate(r));
    }
  }

  private maybeCompact(): void {
    if (this.compacting || this.closed) return;
    let live = 0;
    for (const b of this.data.values()) live += b.size;
    if (this.recordsSinceCompaction < this.compactAfter + 2 * live) return;
    void this.compact();
  }

  /** Rewrites the WAL as a snapshot of the current state plus the retained watch history. */
  async compact(): Promise<void> {
    if (this.compacting || this.closed) return;
    this.compacting = true;
    const started = Date.now();
    // Snapshot synchronously at rv S. Writes after S are deferred until the swap is done.
    const s = this.rv;
    const events = [...this.history, ...this.pending].filter((e) => e.rv <= s);
    const keep = events.slice(-Math.min(this.historySize, 2000));
    const compactedRv = keep.length > 0 ? keep[0]!.rv - 1 : s;
    const recs: Uint8Array[] = [Buffer.from(`{"t":"h","rv":${s},"c":${compactedRv}}`)];
    for (const [k, b] of this.data) {
      const kj = JSON.stringify(k);
      for (const e of b.values()) recs.push(Buffer.from(`{"t":"s","k":${kj},"o":${e.json}}`));
    }
    for (const e of keep) recs.push(Buffer.from(`{"t":"e","rv":${e.rv},"k":${JSON.stringify(e.storageKey)},"e":"${e.type}","o":${e.json}}`));
    try {
      await this.wal.rewrite(recs);
      this.recordsSinceCompaction = 0;
      this.log.debug('WAL compacted', { rv: s, records: recs.length, ms: Date.now() - started });
    } catch (err) {
      this.log.error('WAL compaction failed; keeping the uncompacted log', { err });
    } finally {
      this.compacting = false;
      const d = this.deferred;
      this.deferred = [];
      for (const x of d) this.wal.append(x.bytes).then(x.resolve, x.reject);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    this.subs.clear();
    this.anySubs.clear();
    await this.wal.close();
  }
}
