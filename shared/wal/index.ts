/**
 * @module
 * Crash-safe append-only log (write-ahead log) used by the edge outbox, the edge
 * metadata store and the local control plane.
 */
export {
  AppendLog,
  frameRecord,
  readRecords,
  shouldCompact,
  MAX_RECORD_BYTES,
  DEFAULT_CHUNK_BYTES,
  DEFAULT_COMPACTION_POLICY,
  DEFAULT_DIR_MODE,
  DEFAULT_FILE_MODE,
} from './append-log.js';
export type { AppendLogOptions, OpenedLog, Corruption, CompactionPolicy, Snapshot, OpenFile } from './append-log.js';
export { crc32 } from './crc32.js';
