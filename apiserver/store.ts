/**
 * @module
 * The object store: an in-memory map of every object, made durable by a write-ahead
 * log (shared/wal) and fed to watchers in resourceVersion order.
 *
 * Every write gets the next value of one global counter as its resourceVersion (like
 * etcd's revision). A write is applied in memory synchronously, so handlers can do
 * compare-and-swap without locks (JS is single-threaded), and is acknowledged and
 * delivered to watchers only after its WAL record is fsynced. Watch history is a
 * window of the most recent durable events, bounded by count and by bytes (the JSON of
 * each event); a watch from before the window gets 410.
 *
 * WAL records (JSON): `p` put, `d` delete, both carrying the full object; on
 * compaction the log is rewritten as `h` (header: rv, compactedRv), `s` (one per live
 * object) and `e` (retained history events, so watches resume across restarts).
 * Recovery streams the log record by record (shared/wal), so it needs memory for the
 * live objects and the bounded history only, never for the file; the log is compacted
 * when it holds too many records or too many bytes for the live data (and right after
 * recovery if it does), so its size stays proportional to the data.
 */
import { join } from 'node:path';
import { AppendLog } from '../shared/wal/index.js';
import type { Logger } from '../shared/log/index.js';
import { StorageError } from '../shared/errors/index.js';
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
  /** Bytes (JSON length) of the events kept for watch resumption. Default 64 MiB. */
  historyBytes?: number;
  /** Compact once the WAL has this many records beyond twice the live object count. Default 20000. */
  compactAfterRecords?: number;
  /** Compact once the WAL is bigger than max(this, 2 × what a snapshot writes). Default 64 MiB. */
  compactMinBytes?: number;
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

/** Framing and JSON wrapper of one WAL record, beyond the object's JSON. */
const RECORD_OVERHEAD = 64;

/** What an event costs in the history (and in a snapshot's `e` record). */
function eventBytes(ev: StoreEvent): number {
  return ev.json.length + ev.storageKey.length + RECORD_OVERHEAD;
}

function entryBytes(storageKey: string, e: Entry): number {
  return e.json.length + storageKey.length + RECORD_OVERHEAD;
}

/** Events kept in the `e` records of a snapshot (at most; also bounded by historyBytes). */
const SNAPSHOT_EVENTS = 2000;

export class Store {
  private readonly data = new Map<string, Map<string, Entry>>();
  private rv = 0;
  private durableRv = 0;
  /** Watches from a resourceVersion older than this get 410 Gone. */
  private compactedRv = 0;
  /** Durable events, oldest first, from index `historyHead` (trimmed lazily so shifts are amortised). */
  private history: StoreEvent[] = [];
  private historyHead = 0;
  private historyTotal = 0;
  /** Bytes of the live objects as a snapshot writes them (approximately: JSON length). */
  private liveBytes = 0;
  /** Bytes the last compaction wrote: a floor for the size policy (JSON length undercounts non-ASCII). */
  private lastSnapshotBytes = 0;
  private readonly pending: StoreEvent[] = [];
  private readonly subs = new Map<string, Set<Subscriber>>();
  private readonly anySubs = new Set<Subscriber>();
  private recordsSinceCompaction = 0;
  private compacting = false;
  private deferred: { bytes: Uint8Array; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private closed = false;
  private readonly historySize: number;
  private readonly historyBytes: number;
  private readonly compactAfter: number;
  private readonly compactMinBytes: number;
  /** Set by open() once the log has been read (records are replayed while it streams). */
  private wal!: AppendLog;
  private readonly dec = new TextDecoder();

  private constructor(
    private readonly log: Logger,
    opts: StoreOptions,
  ) {
    this.historySize = opts.historySize ?? 10000;
    this.historyBytes = opts.historyBytes ?? 64 * 1024 * 1024;
    this.compactAfter = opts.compactAfterRecords ?? 20000;
    this.compactMinBytes = opts.compactMinBytes ?? 64 * 1024 * 1024;
  }

  static async open(opts: StoreOptions): Promise<Store> {
    const store = new Store(opts.log, opts);
    const { log: wal, truncatedBytes } = await AppendLog.open(join(opts.dataDir, 'wal.log'), { fsync: opts.fsync ?? true, onRecord: (raw) => store.replay(raw) });
    store.wal = wal;
    if (truncatedBytes > 0) opts.log.warn('WAL had a torn tail (an unacknowledged write); cut it off', { code: StorageError.code, bytes: truncatedBytes });
    store.durableRv = store.rv;
    if (store.historyLength === 0) store.compactedRv = store.rv;
    // A log written under another policy (or before this one) may be far bigger than the data.
    if (store.needsCompaction()) await store.compact();
    return store;
  }

  private replay(raw: Uint8Array): void {
    const r = JSON.parse(this.dec.decode(raw)) as Record_;
    switch (r.t) {
      case 'h':
        this.data.clear();
        this.liveBytes = 0;
        this.history = [];
        this.historyHead = 0;
        this.historyTotal = 0;
        this.rv = r.rv ?? 0;
        this.compactedRv = r.c ?? this.rv;
        this.recordsSinceCompaction = 0;
        break;
      case 's': {
        const json = JSON.stringify(r.o);
        this.setEntry(r.k!, objKey(r.o!), { obj: r.o!, json, rv: Number(r.o!.metadata.resourceVersion) });
        break;
      }
      case 'e':
        this.pushHistory({ rv: r.rv!, type: r.e!, storageKey: r.k!, obj: r.o!, json: JSON.stringify(r.o) });
        break;
      case 'p':
      case 'd': {
        const key = objKey(r.o!);
        const prev = this.data.get(r.k!)?.get(key)?.obj;
        const json = JSON.stringify(r.o);
        if (r.t === 'p') this.setEntry(r.k!, key, { obj: r.o!, json, rv: r.rv! });
        else this.removeEntry(r.k!, key);
        this.rv = Math.max(this.rv, r.rv!);
        this.recordsSinceCompaction++;
        this.pushHistory({ rv: r.rv!, type: r.t === 'd' ? 'DELETED' : prev ? 'MODIFIED' : 'ADDED', storageKey: r.k!, obj: r.o!, json, ...(prev ? { prev } : {}) });
        break;
      }
    }
  }

  private bucket(storageKey: string): Map<string, Entry> {
    let b = this.data.get(storageKey);
    if (!b) this.data.set(storageKey, (b = new Map()));
    return b;
  }

  /** The only writers of `data`: they keep `liveBytes` in step. */
  private setEntry(storageKey: string, key: string, entry: Entry): void {
    const b = this.bucket(storageKey);
    const old = b.get(key);
    if (old) this.liveBytes -= entryBytes(storageKey, old);
    b.set(key, entry);
    this.liveBytes += entryBytes(storageKey, entry);
  }

  private removeEntry(storageKey: string, key: string): void {
    const b = this.data.get(storageKey);
    const old = b?.get(key);
    if (!b || !old) return;
    this.liveBytes -= entryBytes(storageKey, old);
    b.delete(key);
  }

  /** Events retained for watch resumption. */
  get historyLength(): number {
    return this.history.length - this.historyHead;
  }

  /** Bytes (JSON length) of the retained events; bounded by `historyBytes`. */
  get historyByteLength(): number {
    return this.historyTotal;
  }

  /** Size of the write-ahead log file. */
  get walByteLength(): number {
    return this.wal.byteLength;
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
    const key = objKey(obj);
    const prevEntry = this.data.get(storageKey)?.get(key);
    const entry: Entry = { obj, json, rv };
    this.setEntry(storageKey, key, entry);
    const ev: StoreEvent = { rv, type: prevEntry ? 'MODIFIED' : 'ADDED', storageKey, obj, json, ...(prevEntry ? { prev: prevEntry.obj } : {}) };
    const rec = `{"t":"p","rv":${rv},"k":${JSON.stringify(storageKey)},"o":${json}}`;
    return { entry, durable: this.persist(ev, rec, () => (prevEntry ? this.setEntry(storageKey, key, prevEntry) : this.removeEntry(storageKey, key))) };
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
    this.removeEntry(storageKey, key);
    const entry: Entry = { obj, json, rv };
    const ev: StoreEvent = { rv, type: 'DELETED', storageKey, obj, json, prev: prevEntry.obj };
    const rec = `{"t":"d","rv":${rv},"k":${JSON.stringify(storageKey)},"o":${json}}`;
    return { entry, durable: this.persist(ev, rec, () => this.setEntry(storageKey, key, prevEntry)) };
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('store is closed');
  }

  private persist(ev: StoreEvent, rec: string, rollback: () => void): Promise<void> {
    this.pending.push(ev);
    this.recordsSinceCompaction++;
    const bytes = Buffer.from(rec);
    const appended = this.compacting ? new Promise<void>((resolve, reject) => this.deferred.push({ bytes, resolve, reject })) : this.wal.append(bytes);
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
    this.historyTotal += eventBytes(ev);
    // Drop the oldest events beyond the count or byte bound (always keeping the newest).
    while (this.historyLength > 1 && (this.historyLength > this.historySize || this.historyTotal > this.historyBytes)) {
      const old = this.history[this.historyHead]!;
      this.history[this.historyHead++] = undefined as unknown as StoreEvent; // release it now; the slot is sliced away below
      this.historyTotal -= eventBytes(old);
      this.compactedRv = old.rv;
    }
    // Compact the array once the dropped prefix dominates, so the cost is amortised.
    if (this.historyHead > 1024 && this.historyHead * 2 > this.history.length) {
      this.history = this.history.slice(this.historyHead);
      this.historyHead = 0;
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
    let lo = this.historyHead;
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

  /**
   * Whether the WAL should be rewritten: too many records for the live objects
   * (compactAfterRecords + 2 × live), or too many bytes for what a snapshot would write
   * (shared/wal's shouldCompact: more than max(compactMinBytes, 2 × snapshot)).
   */
  private needsCompaction(): boolean {
    let live = 0;
    for (const b of this.data.values()) live += b.size;
    if (this.recordsSinceCompaction >= this.compactAfter + 2 * live) return true;
    const snapshot = Math.max(this.liveBytes + Math.min(this.historyTotal, this.historyBytes), this.lastSnapshotBytes);
    return this.wal.shouldCompact(snapshot, { minBytes: this.compactMinBytes });
  }

  private maybeCompact(): void {
    if (this.compacting || this.closed) return;
    if (!this.needsCompaction()) return;
    void this.compact();
  }

  /** Rewrites the WAL as a snapshot of the current state plus the retained watch history. */
  async compact(): Promise<void> {
    if (this.compacting || this.closed) return;
    this.compacting = true;
    const started = Date.now();
    // Snapshot synchronously at rv S: references to the (immutable) entries and events,
    // serialised one by one while the log streams them out. Writes after S are applied in
    // memory (they replace entries, never mutate them) and deferred on disk until the swap.
    const s = this.rv;
    const objects: [string, Entry][] = [];
    for (const [k, b] of this.data) for (const e of b.values()) objects.push([k, e]);
    const events: StoreEvent[] = [];
    for (let i = this.historyHead; i < this.history.length; i++) events.push(this.history[i]!);
    for (const e of this.pending) if (e.rv <= s) events.push(e);
    // The newest events within the count and byte bounds.
    let first = events.length;
    let bytes = 0;
    const maxEvents = Math.min(this.historySize, SNAPSHOT_EVENTS);
    while (first > 0 && events.length - first < maxEvents && bytes + eventBytes(events[first - 1]!) <= this.historyBytes) bytes += eventBytes(events[--first]!);
    const keep = events.slice(first);
    const compactedRv = keep.length > 0 ? keep[0]!.rv - 1 : s;
    function* records(): Generator<Uint8Array> {
      yield Buffer.from(`{"t":"h","rv":${s},"c":${compactedRv}}`);
      for (const [k, e] of objects) yield Buffer.from(`{"t":"s","k":${JSON.stringify(k)},"o":${e.json}}`);
      for (const e of keep) yield Buffer.from(`{"t":"e","rv":${e.rv},"k":${JSON.stringify(e.storageKey)},"e":"${e.type}","o":${e.json}}`);
    }
    try {
      const written = await this.wal.rewrite(records());
      this.recordsSinceCompaction = 0;
      this.lastSnapshotBytes = written.bytes;
      this.log.debug('WAL compacted', { rv: s, records: written.records, bytes: written.bytes, ms: Date.now() - started });
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
