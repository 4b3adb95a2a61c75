/**
 * @module
 * MetaServer's view of the store: an index of the served objects (references to the values the
 * store holds, not copies), each with the revision of its last change on this node, and a bounded
 * history of recent changes for watches that resume from a resourceVersion.
 *
 * Revisions (docs/metaserver.md, "Resource versions"): MetaServer numbers every change it sees,
 * and these numbers are the resourceVersions it serves (of objects, lists and watch events). The
 * cluster's own versions cannot order the node's changes: an old configmap that a new pod starts
 * using arrives with a version below what the node already holds, and a delete carries none. The
 * numbers of one EdgeCore run are `epoch × EPOCH_SPAN + n`; the epoch, persisted in
 * `<data-dir>/metaserver/epoch`, advances at every start, so a resourceVersion from an earlier
 * run is always below the current history and gets 410 Expired (the client relists), never a
 * wrong replay.
 */
import { join } from 'node:path';
import { compareResourceVersions } from '../../shared/protocol/index.js';
import type { Logger } from '../../shared/log/index.js';
import type { MetaChange, MetaView } from '../metamanager/index.js';
import { readIfExists, writeFileAtomic } from './files.js';
import { EPOCH_FILE } from './options.js';
import { byType, CLUSTER_NAMESPACE, type KubeObject, type ResourceInfo } from './resources.js';

/** Revisions one epoch spans: 10^10 changes per run before the next epoch is claimed; 900,719 epochs fit below 2^53. */
export const EPOCH_SPAN = 10_000_000_000;

type StoredObjects = ReturnType<MetaView['list']>;

/** Hands out revisions; persists the epoch it draws from. */
export class Revisions {
  private constructor(
    private readonly file: string,
    private epoch: number,
    private last: number,
    private readonly span: number,
  ) {}

  /** Claims the next epoch in `dir` (durably, before any revision of it is served). Throws StorageError. */
  static open(dir: string, log: Logger, span = EPOCH_SPAN): Revisions {
    const file = join(dir, EPOCH_FILE);
    const raw = readIfExists(file)?.toString('utf8').trim();
    let previous = 0;
    if (raw !== undefined) {
      if (/^\d{1,15}$/.test(raw)) previous = Number(raw);
      else {
        // Lost (it is written atomically, so only by outside hands): the hours since 1970 are above
        // the epoch of any node restarted fewer than ~490,000 times, and still fit the span.
        previous = Math.min(Math.floor(Date.now() / 3_600_000), Math.floor(Number.MAX_SAFE_INTEGER / span) - 2);
        log.error(`${file} is unreadable (${JSON.stringify(raw.slice(0, 40))}); starting at epoch ${previous + 1}`);
      }
    }
    const epoch = previous + 1;
    if ((epoch + 1) * span > Number.MAX_SAFE_INTEGER) throw new RangeError(`MetaServer revision epoch ${epoch} is exhausted; remove ${file} (clients relist once)`);
    writeFileAtomic(file, `${epoch}\n`);
    return new Revisions(file, epoch, epoch * span, span);
  }

  /** The last revision handed out (the epoch's base before any). */
  get current(): number {
    return this.last;
  }

  next(): number {
    this.last++;
    // Past this epoch's span: claim the next one, so the next start begins above what this run used.
    if (this.last >= (this.epoch + 1) * this.span) {
      this.epoch++;
      writeFileAtomic(this.file, `${this.epoch}\n`);
    }
    return this.last;
  }
}

/** One served object. */
export interface Entry {
  /** Store key `namespace/type/name`. */
  readonly key: string;
  readonly info: ResourceInfo;
  /** Undefined for cluster-scoped objects. */
  readonly namespace: string | undefined;
  readonly name: string;
  /** Revision of its last change. */
  rev: number;
  /** The object as the cloud sent it (the store's reference; never mutated). */
  value: KubeObject;
}

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** One change, as watches see it. */
export interface ChangeEvent {
  readonly rev: number;
  readonly type: EventType;
  readonly key: string;
  readonly info: ResourceInfo;
  readonly namespace: string | undefined;
  readonly name: string;
  /** The object after the change; for DELETED its last state. */
  readonly value: KubeObject;
  /** MODIFIED: the object before (a selector may have matched it and not the new one). */
  readonly prev?: KubeObject;
}

/** `namespace/type/name` → its parts, or undefined when the type is not served. */
function parseKey(key: string): { info: ResourceInfo; namespace: string | undefined; name: string } | undefined {
  const a = key.indexOf('/');
  const b = a < 0 ? -1 : key.indexOf('/', a + 1);
  if (b < 0) return undefined;
  const info = byType.get(key.slice(a + 1, b));
  const name = key.slice(b + 1);
  if (!info || !name) return undefined;
  return { info, namespace: info.namespaced ? key.slice(0, a) : undefined, name };
}

const isObject = (v: unknown): v is KubeObject => v !== null && typeof v === 'object' && !Array.isArray(v);

export class ObjectCache {
  private readonly entries = new Map<string, Entry>();
  private readonly ring: (ChangeEvent | undefined)[];
  /** Index of the oldest event in the ring. */
  private head = 0;
  private count = 0;
  /** A watch from a revision at or above this replays exactly what it missed. */
  private floorRev: number;
  /** Values that were not objects, logged once each per key. */
  private readonly skipped = new Set<string>();

  constructor(
    private readonly revisions: Revisions,
    capacity: number,
    private readonly log: Logger,
  ) {
    this.ring = new Array<ChangeEvent | undefined>(Math.max(1, capacity));
    this.floorRev = revisions.current;
  }

  /** The current revision: a list served now is at this resourceVersion. */
  get rev(): number {
    return this.revisions.current;
  }

  /** Oldest resourceVersion a watch can resume from. */
  get floor(): number {
    return this.floorRev;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Takes in what the store holds at start, as ADDED events in the cluster's version order (so a
   * watch from the epoch's base sees everything, and one from a later revision what came after it).
   */
  seed(objects: StoredObjects): void {
    const sorted = objects.filter((o) => parseKey(o.resource)).sort((x, y) => compareResourceVersions(x.resourceVersion ?? '0', y.resourceVersion ?? '0') || 0);
    for (const o of sorted) this.apply({ op: 'put', resource: o.resource, value: o.value });
  }

  /** Applies a durable change of the store; returns the event watches get, if the object is served. */
  apply(change: MetaChange): ChangeEvent | undefined {
    const parsed = parseKey(change.resource);
    if (!parsed) return undefined;
    const cur = this.entries.get(change.resource);
    if (change.op === 'delete') {
      if (!cur) return undefined;
      this.entries.delete(change.resource);
      return this.record({ rev: this.revisions.next(), type: 'DELETED', key: cur.key, info: cur.info, namespace: cur.namespace, name: cur.name, value: cur.value });
    }
    if (!isObject(change.value)) {
      if (!this.skipped.has(change.resource)) this.log.warn(`${change.resource} is not an object; not served`);
      this.skipped.add(change.resource);
      return undefined;
    }
    this.skipped.delete(change.resource);
    const rev = this.revisions.next();
    if (cur) {
      const prev = cur.value;
      cur.rev = rev;
      cur.value = change.value;
      return this.record({ rev, type: 'MODIFIED', key: cur.key, info: cur.info, namespace: cur.namespace, name: cur.name, value: change.value, prev });
    }
    const entry: Entry = { key: change.resource, ...parsed, rev, value: change.value };
    this.entries.set(change.resource, entry);
    return this.record({ rev, type: 'ADDED', key: entry.key, info: entry.info, namespace: entry.namespace, name: entry.name, value: entry.value });
  }

  private record(ev: ChangeEvent): ChangeEvent {
    const cap = this.ring.length;
    if (this.count === cap) {
      // The oldest event leaves: a watch must now start at or after its revision.
      this.floorRev = (this.ring[this.head] as ChangeEvent).rev;
      this.ring[this.head] = ev;
      this.head = (this.head + 1) % cap;
    } else {
      this.ring[(this.head + this.count) % cap] = ev;
      this.count++;
    }
    return ev;
  }

  /** Events after `rev`, oldest first; undefined when some of them left the history (410 Expired). */
  since(rev: number): ChangeEvent[] | undefined {
    if (rev < this.floorRev || rev > this.rev) return undefined;
    const out: ChangeEvent[] = [];
    const cap = this.ring.length;
    for (let i = 0; i < this.count; i++) {
      const ev = this.ring[(this.head + i) % cap] as ChangeEvent;
      if (ev.rev > rev) out.push(ev);
    }
    return out;
  }

  get(info: ResourceInfo, namespace: string | undefined, name: string): Entry | undefined {
    const e = this.entries.get(`${info.namespaced ? namespace : CLUSTER_NAMESPACE}/${info.type}/${name}`);
    return e && e.info === info ? e : undefined;
  }

  /** Objects of one resource (in one namespace, or all), sorted by namespace and name like kube-apiserver's lists. */
  list(info: ResourceInfo, namespace: string | undefined): Entry[] {
    const out: Entry[] = [];
    for (const e of this.entries.values()) if (e.info === info && (namespace === undefined || e.namespace === namespace)) out.push(e);
    return out.sort((a, b) => (a.namespace === b.namespace ? cmp(a.name, b.name) : cmp(a.namespace ?? '', b.namespace ?? '')));
  }
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
