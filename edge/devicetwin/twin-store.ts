/**
 * @module
 * The twin store: one durable record per device (reported values, observedDesired, locally set
 * expected values, state, lastOnlineTime and which of them the cloud has not accepted yet), in a
 * {@link MetaStore} of its own under `<dataDir>/devicetwin/` (crash-safe: every write is fsynced
 * before it resolves, concurrent writes of different devices share one fsync).
 *
 * Writes of one device are coalesced: while one is on its way to disk, later changes wait and the
 * next write takes the device's state as it is then (latest wins), so a device reporting faster
 * than the disk writes costs one write per fsync, not one per report. A caller's promise resolves
 * once a write that includes its change is durable.
 */
import { join } from 'node:path';
import { MetaStore } from '../metamanager/index.js';
import type { TwinProperty } from '../../shared/devices/index.js';
import { ErrorCode } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';

/** One property's twin as stored. */
export interface StoredTwin {
  /** `{value, metadata: {timestamp (ms, decimal string), type}}`, as the DeviceStatus shows it. */
  reported?: TwinProperty;
  observedDesired?: TwinProperty;
  /** A desired value set on this node over MQTT (`expected`), and when (ms). Never sent upstream. */
  expected?: { value: string; timestamp: number };
}

/** A device's record. */
export interface DeviceRecord {
  /** The Device's uid the record belongs to (a Device recreated under the same name starts afresh). */
  uid?: string;
  twins: Record<string, StoredTwin>;
  state?: string;
  /** RFC 3339. */
  lastOnlineTime?: string;
  /**
   * Properties changed since the last report the cloud accepted. Written with every change; a
   * clear is written only with the device's next change (an extra write per accepted report
   * would double the writes, and a resend after a restart is harmless: the cloud merges latest-wins).
   */
  dirty: string[];
  stateDirty: boolean;
}

/** The directory of the twin store under the data directory. */
export const TWIN_STORE_DIR = 'devicetwin';

interface Slot {
  running: boolean;
  next: { kind: 'put'; snapshot: () => DeviceRecord } | { kind: 'delete' } | undefined;
  waiters: { resolve: () => void; reject: (err: unknown) => void }[];
}

export class TwinStore {
  private readonly slots = new Map<string, Slot>();
  private readonly idle = new Set<() => void>();

  private constructor(
    private readonly store: MetaStore,
    private readonly loaded: Map<string, DeviceRecord>,
  ) {}

  /** Opens (or creates) the store in `<dataDir>/devicetwin/`; unreadable records are skipped with one line each. */
  static async open(dataDir: string, log: Logger, options: { maxDevices: number }): Promise<TwinStore> {
    // maxObjects is a backstop: the registry refuses devices past maxDevices before writing.
    const store = await MetaStore.open(join(dataDir, TWIN_STORE_DIR), log, { maxObjects: options.maxDevices + 16, maxLiveBytes: 256 * 1024 * 1024 });
    const loaded = new Map<string, DeviceRecord>();
    for (const o of store.list()) {
      const rec = readRecord(o.value);
      if (rec) loaded.set(o.resource, rec);
      else log.error(`twin store record ${o.resource} is not a device record; ignored`, { code: ErrorCode.Storage });
    }
    return new TwinStore(store, loaded);
  }

  /** The records read at open, by device key (`namespace/name`). */
  records(): ReadonlyMap<string, DeviceRecord> {
    return this.loaded;
  }

  /** Writes the device's record (`snapshot()` is called when the write starts: the state then). */
  save(key: string, snapshot: () => DeviceRecord): Promise<void> {
    return this.enqueue(key, { kind: 'put', snapshot });
  }

  /** Deletes the device's record (after any write of it under way). */
  remove(key: string): Promise<void> {
    return this.enqueue(key, { kind: 'delete' });
  }

  private enqueue(key: string, op: NonNullable<Slot['next']>): Promise<void> {
    let slot = this.slots.get(key);
    if (!slot) this.slots.set(key, (slot = { running: false, next: undefined, waiters: [] }));
    slot.next = op;
    const done = new Promise<void>((resolve, reject) => slot.waiters.push({ resolve, reject }));
    if (!slot.running) void this.run(key, slot);
    return done;
  }

  private async run(key: string, slot: Slot): Promise<void> {
    slot.running = true;
    while (slot.next) {
      const op = slot.next;
      const waiters = slot.waiters;
      slot.next = undefined;
      slot.waiters = [];
      try {
        if (op.kind === 'put') await this.store.put(key, op.snapshot(), undefined);
        else await this.store.delete(key);
        for (const w of waiters) w.resolve();
      } catch (err) {
        for (const w of waiters) w.reject(err);
      }
    }
    slot.running = false;
    this.slots.delete(key);
    if (this.slots.size === 0) for (const f of this.idle) f();
  }

  /** Whether a write of the device is under way or waiting (what is in memory may not be on disk yet). */
  busy(key: string): boolean {
    return this.slots.has(key);
  }

  /** Resolves once no write is under way or waiting. */
  settled(): Promise<void> {
    if (this.slots.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const f = () => {
        this.idle.delete(f);
        resolve();
      };
      this.idle.add(f);
    });
  }

  /** Waits for the writes under way, then closes the log. */
  async close(): Promise<void> {
    await this.settled();
    await this.store.close();
  }
}

/** A stored value as a record, or undefined when it is not one (written by something else, damaged). */
function readRecord(v: unknown): DeviceRecord | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Partial<DeviceRecord>;
  if (typeof r.twins !== 'object' || r.twins === null || !Array.isArray(r.dirty)) return undefined;
  return {
    ...(typeof r.uid === 'string' ? { uid: r.uid } : {}),
    twins: r.twins,
    ...(typeof r.state === 'string' ? { state: r.state } : {}),
    ...(typeof r.lastOnlineTime === 'string' ? { lastOnlineTime: r.lastOnlineTime } : {}),
    dirty: r.dirty.filter((p): p is string => typeof p === 'string'),
    stateDirty: r.stateDirty === true,
  };
}
