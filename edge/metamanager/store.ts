/**
 * @module
 * The edge's crash-safe metadata store: everything the node was given (pods,
 * configmaps, secrets, …) keyed by resource (`namespace/type/name`). Every change is
 * an fsynced record in an append-only log before it is visible or acknowledged;
 * the log is compacted into a snapshot once it grows. Each change remembers the id
 * of the message that caused it, so a resent message is recognised after a restart
 * and never applied twice; versions never go backwards.
 *
 * Record: `{t:'put', k, rv, v, id}` | `{t:'del', k, id}` | `{t:'ids', ids}` (recent ids: in a
 * snapshot, or one id whose delete found nothing to delete, so its resend is still recognised after a restart).
 * Each log record (shared/wal framing) holds one of them, in one of two formats told apart by its first byte:
 * - `0x01` + CBOR (RFC 8949, the wire profile's cbor-x options from shared/protocol/codec.ts): written
 *   since format 1, so byte strings (Uint8Array/Buffer; read back as Uint8Array), numbers and strings round-trip exactly;
 * - `{` (0x7B): a JSON record, as written before; still read, never written. Compaction rewrites every live
 *   record in the CBOR format.
 * Any other first byte is an unreadable record: one error line, skipped.
 *
 * put/delete decide "stale"/"duplicate" from what the store holds when they are called, so
 * callers serialize the changes of one resource (MetaManager does); different resources may
 * be written concurrently. Compaction runs when the log holds many more records than objects
 * (`compactAfter`) or many more bytes than a snapshot would write (`compactMinBytes`,
 * `compactRatio`: see shouldCompact in shared/wal). A failed write marks the store unwritable
 * until a write succeeds again ({@link MetaStore.health}); the node status reports it.
 *
 * Bounded: `maxObjects`, `maxObjectBytes` and `maxLiveBytes` (see {@link MetaStoreOptions}) cap
 * what a cloud can make the node hold (memory is the binding constraint: every object lives
 * decoded in memory). Past a limit a put is refused with a StoreLimitError (the error ACK tells
 * the cloud, which retries later); what is held stays served, and deletes and updates that do not
 * grow past a limit still work. One log line when a limit is first hit (then at most one a minute
 * per limit, with the count refused meanwhile) and one when the store accepts again; {@link MetaStore.limitState}
 * says whether it is refusing now (the node status reports it as the EdgeStoreFull condition).
 *
 * Damage in the middle of the log (a record failing its CRC, or a damaged length field) is
 * skipped, not the end of the log: the records after it are recovered (shared/wal's `resync`),
 * one error line names the offset and size of each damaged region, a copy of the damaged log is
 * kept as `meta.log.corrupt`, and the log is rewritten at once so the next start is clean.
 */
import { constants as fsConstants } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AppendLog } from '../../shared/wal/index.js';
import { defaultMetaStoreOptions } from './options.js';
import { compareResourceVersions } from '../../shared/protocol/index.js';
import { cborDecoderOptions, cborEncoderOptions, encodeCbor } from '../../shared/protocol/codec.js';
import { Encoder } from 'cbor-x/encode';
import { Decoder } from 'cbor-x/decode';
import type { Logger } from '../../shared/log/index.js';
import { ErrorCode, errorCode, errorMessage, StoreLimitError } from '../../shared/errors/index.js';

export interface StoredObject {
  resource: string;
  resourceVersion?: string;
  value: unknown;
}

export type StoreRecord = { t: 'put'; k: string; rv?: string; v: unknown; id?: string } | { t: 'del'; k: string; id?: string } | { t: 'ids'; ids: string[] };

export type ApplyResult = 'applied' | 'duplicate' | 'stale';

/** Store options; defaults in `defaultMetaStoreOptions` (./options.ts). */
export interface MetaStoreOptions {
  /** Records after which the log is compacted (if they also outnumber the objects twice). Default 10000. */
  compactAfter?: number;
  /** Never compact by size below this many log bytes. Default 16 MiB (shared/wal's default). */
  compactMinBytes?: number;
  /** Compact once the log is this many times the bytes a snapshot would write. Default 2. */
  compactRatio?: number;
  /** Message ids remembered for de-duplication. Default 4096. */
  idWindow?: number;
  /** Most objects held; a put of a new object beyond it is refused (updates and deletes still work). Default 20000. */
  maxObjects?: number;
  /** Largest object (its encoded record: object, key and version, CBOR) accepted. Default 1.5 MiB (etcd's request limit). */
  maxObjectBytes?: number;
  /** Most bytes of live records (what a snapshot would write); a put that would grow past it is refused. Default 128 MiB. */
  maxLiveBytes?: number;
}

/** Which limit a refusal hit. */
export type StoreLimit = 'maxObjects' | 'maxObjectBytes' | 'maxLiveBytes';

/**
 * Whether the store refuses what it is sent now: at `maxObjects` (a new object would be refused),
 * or at `maxLiveBytes` for the last object it refused (that object would still not fit).
 */
export type StoreLimitState = { refusing: false } | { refusing: true; limit: 'maxObjects' | 'maxLiveBytes'; since: number; message: string };

/** Whether the store can persist changes. */
export type StoreHealth = { writable: true } | { writable: false; since: number; error: string; code: string };

/** After a failed compaction, the next attempt waits at least this long (ms). */
const COMPACT_RETRY_MS = 60_000;
/** A limit's refusal line is written at most once per this many ms (with the count since the last). */
const LIMIT_LOG_INTERVAL_MS = 60_000;
/** Bytes a record adds to its object (key, version, id, CBOR map): the slack above maxObjectBytes a resync scan considers. */
const RECORD_SLACK_BYTES = 4096;
/** Framing bytes per record in the log (length + CRC32). */
const RECORD_OVERHEAD = 8;

/** First byte of a CBOR-format record (format 1). */
const FORMAT_CBOR = 0x01;
/** First byte of a JSON-format record (the format before 1): `{`. */
const FORMAT_JSON = 0x7b;

const dec = new TextDecoder();
const cborEncoder = new Encoder(cborEncoderOptions);
// copyBuffers: a decoded byte string gets its own memory instead of pinning the whole record's.
const cborDecoder = new Decoder({ ...cborDecoderOptions, copyBuffers: true });

/** A record as it goes into the log: the format byte, then CBOR. */
function encodeRecord(r: StoreRecord): Uint8Array {
  const body = encodeCbor(cborEncoder, r);
  const out = new Uint8Array(body.length + 1);
  out[0] = FORMAT_CBOR;
  out.set(body, 1);
  return out;
}

/** Reads a log record of either format; throws on anything else. */
export function decodeRecord(raw: Uint8Array): StoreRecord {
  let r: unknown;
  if (raw[0] === FORMAT_CBOR) {
    // A plain Uint8Array view, so byte strings come back as Uint8Array whatever buffer the log read into.
    r = cborDecoder.decode(new Uint8Array(raw.buffer, raw.byteOffset + 1, raw.length - 1));
  } else if (raw[0] === FORMAT_JSON) {
    r = JSON.parse(dec.decode(raw));
  } else {
    throw new Error(`unknown record format byte ${raw[0] ?? '(empty record)'}`);
  }
  const t = (r as { t?: unknown } | null)?.t;
  if (t !== 'put' && t !== 'del' && t !== 'ids') throw new Error('not a metadata store record');
  return r as StoreRecord;
}

export class MetaStore {
  private readonly objects = new Map<string, StoredObject>();
  private readonly ids = new Set<string>();
  private records = 0;
  /** Log bytes of each object's latest record: what a snapshot would write, per object. */
  private readonly sizes = new Map<string, number>();
  private liveBytes = 0;
  private compacting: Promise<void> | undefined;
  private compactRetryAt = 0;
  private readonly compactAfter: number;
  private readonly compactPolicy: { minBytes: number; ratio: number };
  private readonly idWindow: number;
  private unwritable: { since: number; error: string; code: string } | undefined;
  private readonly limits: { maxObjects: number; maxObjectBytes: number; maxLiveBytes: number };
  /** Growth of the puts being written (not applied yet): counted against the limits so concurrent puts cannot overshoot them. */
  private readonly reserved = { objects: 0, bytes: 0 };
  /**
   * The last refusal for count or total size (cleared once a growing put succeeds); `announced`:
   * its line was written, so the line saying the store accepts again is written too.
   */
  private refusal: { limit: 'maxObjects' | 'maxLiveBytes'; growth: number; since: number; announced: boolean } | undefined;
  /** Rate limit of the refusal lines, per limit: when the last was written and how many refusals since. */
  private readonly limitLog = new Map<StoreLimit, { at: number; suppressed: number }>();

  /** Set by open() once the log has been read (records are replayed while it streams). */
  private log!: AppendLog;

  private constructor(
    private readonly logger: Logger,
    options: MetaStoreOptions,
  ) {
    const d = defaultMetaStoreOptions;
    this.compactAfter = options.compactAfter ?? d.compactAfter;
    this.compactPolicy = { minBytes: options.compactMinBytes ?? d.compactMinBytes, ratio: options.compactRatio ?? d.compactRatio };
    this.idWindow = options.idWindow ?? d.idWindow;
    this.limits = {
      maxObjects: options.maxObjects ?? d.maxObjects,
      maxObjectBytes: options.maxObjectBytes ?? d.maxObjectBytes,
      maxLiveBytes: options.maxLiveBytes ?? d.maxLiveBytes,
    };
  }

  static async open(dataDir: string, logger: Logger, options: MetaStoreOptions = {}): Promise<MetaStore> {
    const store = new MetaStore(logger, options);
    const onRecord = (raw: Uint8Array): void => {
      let r: StoreRecord;
      try {
        r = decodeRecord(raw);
      } catch (err) {
        logger.error(`metadata store record unreadable, skipped: ${errorMessage(err)}`, { code: ErrorCode.Storage });
        return;
      }
      store.applyRecord(r, raw.length);
      store.records++;
    };
    const file = join(dataDir, 'meta.log');
    const { log, truncatedBytes, corruptions, recordCount } = await AppendLog.open(file, {
      onRecord,
      resync: { maxRecordBytes: store.limits.maxObjectBytes + RECORD_SLACK_BYTES },
    });
    if (truncatedBytes > 0) logger.warn(`metadata store had a torn tail of ${truncatedBytes} bytes (an unacknowledged write); cut off`, { code: ErrorCode.Storage });
    store.log = log;
    if (corruptions.length > 0) {
      // Keep the damaged file for a post-mortem, then rewrite the log so the next start is clean.
      const copy = `${file}.corrupt`;
      const kept = await copyFile(file, copy, fsConstants.COPYFILE_FICLONE).then(
        () => `a copy of the damaged log is kept as ${copy}`,
        (err: unknown) => `no copy of the damaged log kept (${errorMessage(err)})`,
      );
      const regions = corruptions.map((c) => `${c.bytes} bytes at offset ${c.offset} (${c.reason})`).join('; ');
      logger.error(
        `metadata store log is damaged: ${regions}; the records there are lost and the ${recordCount} intact ones, including those after the damage, were recovered. ` +
          `An object whose latest change was lost may be older than acknowledged (or a deleted one back) until the cloud sends it again; ${kept}; rewriting the log`,
        { code: ErrorCode.Storage, corruptions: corruptions.length, offset: corruptions[0]!.offset },
      );
      store.compacting = store.compact().finally(() => (store.compacting = undefined));
    }
    const over = store.overLimits();
    if (over) logger.warn(`metadata store opened over its limits (${over}): it serves what it holds and refuses new objects until below`, { code: ErrorCode.StoreLimit });
    return store;
  }

  /** The limits the held objects exceed (after a restart with lower limits), or undefined. */
  private overLimits(): string | undefined {
    const over: string[] = [];
    if (this.objects.size > this.limits.maxObjects) over.push(`${this.objects.size} objects, meta.maxObjects is ${this.limits.maxObjects}`);
    if (this.liveBytes > this.limits.maxLiveBytes) over.push(`${this.liveBytes} live bytes, meta.maxLiveBytes is ${this.limits.maxLiveBytes}`);
    return over.length ? over.join('; ') : undefined;
  }

  private remember(id: string | undefined): void {
    if (id === undefined) return;
    this.ids.add(id);
    if (this.ids.size > this.idWindow) this.ids.delete(this.ids.values().next().value as string);
  }

  /** Applies a record of `bytes` payload bytes to the in-memory state. */
  private applyRecord(r: StoreRecord, bytes: number): void {
    switch (r.t) {
      case 'put':
        this.objects.set(r.k, { resource: r.k, value: r.v, ...(r.rv !== undefined ? { resourceVersion: r.rv } : {}) });
        this.liveBytes += bytes + RECORD_OVERHEAD - (this.sizes.get(r.k) ?? 0);
        this.sizes.set(r.k, bytes + RECORD_OVERHEAD);
        this.remember(r.id);
        break;
      case 'del':
        this.objects.delete(r.k);
        this.liveBytes -= this.sizes.get(r.k) ?? 0;
        this.sizes.delete(r.k);
        this.remember(r.id);
        break;
      case 'ids':
        for (const id of r.ids) this.remember(id);
        break;
    }
  }

  /** Whether a message id was already applied. */
  seen(id: string): boolean {
    return this.ids.has(id);
  }

  get(resource: string): StoredObject | undefined {
    return this.objects.get(resource);
  }

  /** Objects whose resource starts with `prefix` (e.g. `default/pod/`). */
  list(prefix = ''): StoredObject[] {
    return [...this.objects.values()].filter((o) => o.resource.startsWith(prefix));
  }

  get size(): number {
    return this.objects.size;
  }

  /** Whether the last write succeeded; if not, since when writes fail and why. */
  health(): StoreHealth {
    return this.unwritable ? { writable: false, ...this.unwritable } : { writable: true };
  }

  /** Bytes in the log file, and the bytes a snapshot would write now (diagnostics, tests). */
  get footprint(): { logBytes: number; liveBytes: number } {
    return { logBytes: this.log.byteLength, liveBytes: this.liveBytes };
  }

  /**
   * Stores an object; durable when the promise resolves. Throws StoreLimitError when it would
   * take the store past a limit (nothing is written; the object held before, if any, stays).
   */
  async put(resource: string, value: unknown, resourceVersion: string | undefined, messageId?: string): Promise<ApplyResult> {
    if (messageId !== undefined && this.ids.has(messageId)) return 'duplicate';
    const cur = this.objects.get(resource);
    if (cur?.resourceVersion !== undefined && resourceVersion !== undefined && compareResourceVersions(resourceVersion, cur.resourceVersion) <= 0) {
      return 'stale';
    }
    const r: StoreRecord = {
      t: 'put',
      k: resource,
      v: value,
      ...(resourceVersion !== undefined ? { rv: resourceVersion } : {}),
      ...(messageId !== undefined ? { id: messageId } : {}),
    };
    const bytes = encodeRecord(r);
    const growth = { objects: cur ? 0 : 1, bytes: Math.max(0, bytes.length + RECORD_OVERHEAD - (this.sizes.get(resource) ?? 0)) };
    this.checkLimits(resource, bytes.length, growth);
    this.reserved.objects += growth.objects;
    this.reserved.bytes += growth.bytes;
    try {
      await this.write(r, bytes);
    } finally {
      this.reserved.objects -= growth.objects;
      this.reserved.bytes -= growth.bytes;
    }
    // Room again: a new object got in (count), or what was refused would fit now (bytes).
    const refused = this.refusal;
    if (refused && (refused.limit === 'maxObjects' ? growth.objects > 0 : !this.limitState().refusing)) this.accepting();
    return 'applied';
  }

  /** Throws StoreLimitError (logged once per crossing) if a put of `recordBytes` growing the store by `growth` is over a limit. */
  private checkLimits(resource: string, recordBytes: number, growth: { objects: number; bytes: number }): void {
    const l = this.limits;
    if (recordBytes > l.maxObjectBytes) {
      throw this.refuse('maxObjectBytes', 0, `${resource} is ${recordBytes} bytes encoded, over meta.maxObjectBytes (${l.maxObjectBytes})`);
    }
    if (growth.objects > 0 && this.objects.size + this.reserved.objects >= l.maxObjects) {
      throw this.refuse('maxObjects', growth.bytes, `the metadata store holds ${this.objects.size} objects, meta.maxObjects is ${l.maxObjects}: new object ${resource} refused`);
    }
    if (growth.bytes > 0 && this.liveBytes + this.reserved.bytes + growth.bytes > l.maxLiveBytes) {
      throw this.refuse(
        'maxLiveBytes',
        growth.bytes,
        `the metadata store holds ${this.liveBytes} bytes, meta.maxLiveBytes is ${l.maxLiveBytes}: ${resource} (${growth.bytes} bytes more) refused`,
      );
    }
  }

  /** A refusal: its error, and a log line at most once a minute per limit (with the count refused since the last). */
  private refuse(limit: StoreLimit, growth: number, message: string): StoreLimitError {
    const now = Date.now();
    const rl = this.limitLog.get(limit);
    const logged = !rl || now - rl.at >= LIMIT_LOG_INTERVAL_MS;
    if (logged) {
      const more = rl?.suppressed ? ` (${rl.suppressed} more refused since the last line)` : '';
      const tail =
        limit === 'maxObjectBytes' ? 'the object is refused' : 'new objects are refused, what is held is kept and served, deletes and updates that do not grow it still work';
      this.logger.warn(`${message}${more}; ${tail}`, { code: ErrorCode.StoreLimit, limit });
      this.limitLog.set(limit, { at: now, suppressed: 0 });
    } else {
      rl.suppressed++;
    }
    if (limit !== 'maxObjectBytes') {
      const crossing = !this.limitState().refusing;
      this.refusal = { limit, growth, since: crossing ? now : (this.refusal?.since ?? now), announced: logged || (!crossing && (this.refusal?.announced ?? false)) };
    }
    return new StoreLimitError(message);
  }

  /** A growing write succeeded after refusals: the store has room again (said once per announced refusal). */
  private accepting(): void {
    const r = this.refusal;
    if (!r) return;
    if (r.announced) this.logger.info(`metadata store accepts new objects again (it refused them for ${Date.now() - r.since} ms)`, { limit: r.limit });
    this.refusal = undefined;
  }

  /** Whether the store refuses new objects now (see {@link StoreLimitState}); cheap, for the node status' polling. */
  limitState(): StoreLimitState {
    const r = this.refusal;
    if (!r) return { refusing: false };
    const l = this.limits;
    const still = r.limit === 'maxObjects' ? this.objects.size >= l.maxObjects : this.liveBytes + r.growth > l.maxLiveBytes;
    if (!still) return { refusing: false };
    const message =
      r.limit === 'maxObjects'
        ? `the metadata store holds ${this.objects.size} objects (meta.maxObjects ${l.maxObjects}) and refuses new ones`
        : `the metadata store holds ${this.liveBytes} bytes (meta.maxLiveBytes ${l.maxLiveBytes}) and refuses objects that would grow it`;
    return { refusing: true, limit: r.limit, since: r.since, message };
  }

  /** Deletes an object; durable when the promise resolves. */
  async delete(resource: string, messageId?: string): Promise<ApplyResult> {
    if (messageId !== undefined && this.ids.has(messageId)) return 'duplicate';
    if (!this.objects.has(resource)) {
      // Nothing to delete, but the id must outlive a restart like any applied one: a resend of this
      // delete arriving after the object was recreated must not delete it.
      if (messageId !== undefined) await this.write({ t: 'ids', ids: [messageId] });
      return 'stale';
    }
    await this.write({ t: 'del', k: resource, ...(messageId !== undefined ? { id: messageId } : {}) });
    return 'applied';
  }

  private async write(r: StoreRecord, bytes: Uint8Array = encodeRecord(r)): Promise<void> {
    try {
      await this.log.append(bytes);
    } catch (err) {
      if (!this.unwritable) {
        this.logger.error(`metadata store cannot write: ${errorMessage(err)}; nothing is acknowledged and the node reports NotReady until a write succeeds`, {
          code: errorCode(err),
        });
        this.unwritable = { since: Date.now(), error: errorMessage(err), code: errorCode(err) };
      }
      throw err;
    }
    if (this.unwritable) {
      this.logger.info(`metadata store writes again (failed for ${Date.now() - this.unwritable.since} ms)`);
      this.unwritable = undefined;
    }
    this.applyRecord(r, bytes.length);
    this.records++;
    if (!this.compacting && Date.now() >= this.compactRetryAt && this.needsCompaction()) {
      this.compacting = this.compact().finally(() => (this.compacting = undefined));
    }
  }

  /** By count (many records per object) or by size (many bytes per live byte). */
  private needsCompaction(): boolean {
    if (this.records > this.compactAfter && this.records > this.objects.size * 2) return true;
    // The snapshot also writes the remembered ids (a UUID and its CBOR header each).
    return this.log.shouldCompact(this.liveBytes + this.ids.size * 40, this.compactPolicy);
  }

  private async compact(): Promise<void> {
    // Evaluated inside rewrite(), once every earlier write is on disk and applied here. The
    // references are copied at that moment (records are immutable), then encoded one at a
    // time while rewrite() streams them, so memory stays at one write batch.
    const snapshot = (): Iterable<Uint8Array> => {
      const ids = [...this.ids];
      const objects = [...this.objects.values()];
      return (function* () {
        yield encodeRecord({ t: 'ids', ids });
        for (const o of objects) yield encodeRecord({ t: 'put', k: o.resource, v: o.value, ...(o.resourceVersion !== undefined ? { rv: o.resourceVersion } : {}) });
      })();
    };
    try {
      const before = this.log.byteLength;
      const { records, bytes } = await this.log.rewrite(snapshot);
      this.records = records;
      this.logger.debug(`metadata store compacted: ${before} → ${bytes} bytes, ${records} records`);
    } catch (err) {
      this.compactRetryAt = Date.now() + COMPACT_RETRY_MS;
      this.logger.warn(`metadata store compaction failed: ${errorMessage(err)}; retrying in ${COMPACT_RETRY_MS / 1000} s at the earliest`, { code: errorCode(err) });
    }
  }

  async close(): Promise<void> {
    await this.compacting;
    await this.log.close();
  }
}
