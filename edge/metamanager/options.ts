/**
 * @module
 * Metadata store defaults, the one place they are written (`edge/config.ts` takes its
 * `meta.*` defaults from here).
 */
import { DEFAULT_COMPACTION_POLICY } from '../../shared/wal/index.js';
import type { MetaStoreOptions } from './store.js';

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
} as const satisfies Required<MetaStoreOptions>;
