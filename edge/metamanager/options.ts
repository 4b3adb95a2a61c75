/**
 * @module
 * Metadata store and MetaManager defaults, the one place they are written (`edge/config.ts`
 * takes its `meta.*` defaults from here).
 */
import { DEFAULT_COMPACTION_POLICY } from '../../shared/wal/index.js';
import type { MetaStoreOptions } from './store.js';
import type { MetaManagerOptions } from './metamanager.js';

/** Defaults of every store option. */
export const defaultMetaStoreOptions = {
  /** Compact once the log holds this many records (and twice as many as objects). */
  compactAfter: 10_000,
  /** Never compact by size below this many log bytes (shared/wal's default, 16 MiB). */
  compactMinBytes: DEFAULT_COMPACTION_POLICY.minBytes,
  /** Compact once the log is this many times the bytes a snapshot would write (shared/wal's default, 2). */
  compactRatio: DEFAULT_COMPACTION_POLICY.ratio,
  /** Message ids remembered for de-duplication. */
  idWindow: 4096,
  /**
   * Most objects held. A node runs at most maxPods (110) pods; with their configmaps, secrets,
   * services, endpoints and leases a busy node holds a few thousand objects. 20,000 leaves room
   * for that and bounds a runaway cloud: 20,000 typical 2 KB pods measured 37 MB live, +55 MB
   * heap, +97 MB RSS (a 500k-insert flood reached 2.5 GB RSS without a limit).
   */
  maxObjects: 20_000,
  /** Largest object, encoded: 1.5 MiB, etcd's request limit (no API object is bigger; CBOR is smaller than its JSON). */
  maxObjectBytes: 1.5 * 1024 * 1024,
  /**
   * Most live bytes (encoded records, what a snapshot writes). Measured: heap grows 1.0-1.6× and
   * RSS ~3× the live bytes, and the log may reach compactRatio × this on disk: 128 MiB bounds the
   * edge at a few hundred MiB of RSS against a runaway cloud, while 110 pods each with a 1 MiB
   * configmap still fit. Lower it on small devices.
   */
  maxLiveBytes: 128 * 1024 * 1024,
} as const satisfies Required<MetaStoreOptions>;

/** Defaults of MetaManager's own options (its store's are {@link defaultMetaStoreOptions}). */
export const defaultMetaManagerOptions = {
  /**
   * How long a query for an object the node does not hold waits for the cloud, ms. It runs in
   * that resource's chain (a downstream change of it waits behind), so it is kept well below
   * EdgeHub's 30 s handle timeout.
   */
  remoteQueryTimeoutMs: 10_000,
} as const satisfies Partial<MetaManagerOptions>;
