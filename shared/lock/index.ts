/**
 * @module
 * A data directory's ownership, for the local control plane and EdgeCore: its exclusive lock
 * (one process per directory), and keeping it private (0700, issue 13). Node's standard library only.
 */
export { lockDataDir, processStartTime } from './dir-lock.js';
export type { DirLock, DirLockOptions, LockHolder } from './dir-lock.js';
export { makePrivateDir, PRIVATE_DIR_MODE } from './private-dir.js';
export type { PrivateDirResult } from './private-dir.js';
