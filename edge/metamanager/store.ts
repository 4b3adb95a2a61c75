/**
 * @module
 * The edge's crash-safe metadata store: everything the node was given (pods,
 * configmaps, secrets, …) keyed by resource (`namespace/type/name`). Every change is
 * an fsynced record in an append-only log before it is visible or acknowledged;
 * the log is compacted into a snapshot once it grows. Each change remembers the id
 * of the message that caused it, so a resent message is recognised after a restart
 * and never applied twice; versions never go backwards.
 *
 * Record (JSON): `{t:'put', k, rv, v, id}` | `{t:'del', k, id}` | `{t:'ids', ids}` (snapshot of recent ids).
 */
import { join } from 'node:path';
import { AppendLog } from '../../shared/wal/index.js';
import { compareResourceVersions } from '../../shared/protocol/index.js';
import type { Logger } from '../../shared/log/index.js';

export interface StoredObject {
  resource: string;
  resourceVersion?: string;
  value: unknown;
}

type StoreRecord =
  | { t: 'put'; k: string; rv?: string; v: unknown; id?: string }
  | { t: 'del'; k: string; id?: string }
  | { t: 'ids'; ids: string[] };

export type ApplyResult = 'applied' | 'duplicate' | 'stale';

export interface MetaStoreOptions {
  /** Records after which the log is compacted. Default 10000. */
  compactAfter?: number;
  /** Message ids remembered for de-duplication. Default 4096. */
  idWindow?: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export class MetaStore {
  private readonly objects = new Map<string, StoredObject>();
  private readonly ids = new Set<string>();
  private records = 0;
  private compacting: Promise<void> | undefined;
  private readonly compactAfter: number;
  private readonly idWindow: number;

  private constructor(private readonly log: AppendLog, private readonly logger: Logger, options: MetaStoreOptions) {
    this.compactAfter = options.compactAfter ?? 10_000;
    this.idWindow = options.idWindow ?? 4096;
  }

  static async open(dataDir: string, logger: Logger, options: MetaStoreOptions = {}): Promise<MetaStore> {
    const { log, records, truncatedBytes } = await AppendLog.open(join(dataDir, 'meta.log'));
    if (truncatedBytes > 0) logger.warn(`metadata store had a torn tail of ${truncatedBytes} bytes (an unacknowledged write); cut off`, { code: 'LEDGE_ERR_STORAGE' });
    const store = new MetaStore(log, logger, options);
    for (const raw of records) {
      let r: StoreRecord;
      try {
        r = JSON.parse(dec.decode(raw)) as StoreRecord;
      } catch {
        logger.error('metadata store record unreadable, skipped', { code: 'LEDGE_ERR_STORAGE' });
        continue;
      }
      store.applyRecord(r);
      store.records++;
    }
    return store;
  }

  private remember(id: string | undefined): void {
    if (id === undefined) return;
    this.ids.add(id);
    if (this.ids.size > this.idWindow) this.ids.delete(this.ids.values().next().value as string);
  }

  private applyRecord(r: StoreRecord): void {
    switch (r.t) {
      case 'put':
        this.objects.set(r.k, { resource: r.k, value: r.v, ...(r.rv !== undefined ? { resourceVersion: r.rv } : {}) });
        this.remember(r.id);
        break;
      case 'del':
        this.objects.delete(r.k);
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

  /** Stores an object; durable when the promise resolves. */
  async put(resource: string, value: unknown, resourceVersion: string | undefined, messageId?: string): Promise<ApplyResult> {
    if (messageId !== undefined && this.ids.has(messageId)) return 'duplicate';
    const cur = this.objects.get(resource);
    if (cur?.resourceVersion !== undefined && resourceVersion !== undefined && compareResourceVersions(resourceVersion, cur.resourceVersion) <= 0) {
      return 'stale';
    }
    await this.write({ t: 'put', k: resource, v: value, ...(resourceVersion !== undefined ? { rv: resourceVersion } : {}), ...(messageId !== undefined ? { id: messageId } : {}) });
    return 'applied';
  }

  /** Deletes an object; durable when the promise resolves. */
  async delete(resource: string, messageId?: string): Promise<ApplyResult> {
    if (messageId !== undefined && this.ids.has(messageId)) return 'duplicate';
    if (!this.objects.has(resource)) {
      this.remember(messageId);
      return 'stale';
    }
    await this.write({ t: 'del', k: resource, ...(messageId !== undefined ? { id: messageId } : {}) });
    return 'applied';
  }

  private async write(r: StoreRecord): Promise<void> {
    await this.log.append(enc.encode(JSON.stringify(r)));
    this.applyRecord(r);
    this.records++;
    if (this.records > this.compactAfter && this.records > this.objects.size * 2 && !this.compacting) {
      this.compacting = this.compact().finally(() => (this.compacting = undefined));
    }
  }

  private async compact(): Promise<void> {
    // Built inside rewrite(), once every earlier write is on disk and applied here.
    const snapshot = (): Uint8Array[] => {
      const recs: Uint8Array[] = [enc.encode(JSON.stringify({ t: 'ids', ids: [...this.ids] }))];
      for (const o of this.objects.values()) {
        recs.push(enc.encode(JSON.stringify({ t: 'put', k: o.resource, v: o.value, ...(o.resourceVersion !== undefined ? { rv: o.resourceVersion } : {}) })));
      }
      return recs;
    };
    try {
      let written = 0;
      await this.log.rewrite(() => {
        const recs = snapshot();
        written = recs.length;
        return recs;
      });
      this.records = written;
    } catch (err) {
      this.logger.warn(`metadata store compaction failed: ${(err as Error).message}`, { code: 'LEDGE_ERR_STORAGE' });
    }
  }

  async close(): Promise<void> {
    await this.compacting;
    await this.log.close();
  }
}
