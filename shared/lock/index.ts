/**
 * @module
 * Exclusive lock of a data directory (one process per directory), for the local control
 * plane and EdgeCore. Node's standard library only.
 */
export { lockDataDir, processStartTime } from './dir-lock.js';
export type { DirLock, DirLockOptions, LockHolder } from './dir-lock.js';
