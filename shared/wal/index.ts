/**
 * @module
 * Crash-safe append-only log (write-ahead log) used by the edge outbox, the edge
 * metadata store and the local control plane.
 */
export { AppendLog, frameRecord, readRecords } from './append-log.js';
export type { AppendLogOptions } from './append-log.js';
export { crc32 } from './crc32.js';
