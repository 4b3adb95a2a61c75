/**
 * @module
 * A data directory only its owner can list or enter (issue 13): EdgeCore's holds the node's key,
 * the Secrets in its metadata store and outbox, and its pods' secret volumes; the local control
 * plane's holds every Secret of the cluster. The files in it are 0600 as well (the append log,
 * the lock, the join's pki/); the directory is what also hides their names and keeps a file that
 * is created with a wider mode for a moment out of reach.
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { StorageError, errorMessage } from '../errors/index.js';
import type { Logger } from '../log/index.js';

/** Mode of a private data directory: the owner only. */
export const PRIVATE_DIR_MODE = 0o700;

/** What {@link makePrivateDir} did. */
export interface PrivateDirResult {
  /** The directory did not exist and was created (with its missing parents, all 0700). */
  created: boolean;
  /** The mode it had when it was narrowed to 0700; undefined when it was private already. */
  narrowedFrom?: number;
}

/**
 * Creates `dirPath` (and missing parents) mode 0700, or narrows an existing directory to 0700 when
 * group or others have any access to it, saying so in one warning. Refuses, with a StorageError
 * naming the fix, what is not a directory, and a shared directory that every user may write to
 * (the sticky bit and world-writable, as /tmp): narrowing that would break the other users, and
 * anything in it may have been placed by one of them. A symlink to a directory is followed (the
 * directory it names is made private).
 */
export function makePrivateDir(dirPath: string, log?: Logger): PrivateDirResult {
  const dir = resolve(dirPath);
  let created: boolean;
  try {
    created = mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE }) !== undefined;
  } catch (err) {
    throw new StorageError(`cannot create data directory ${dir}: ${errorMessage(err)}`, { cause: err });
  }
  const st = statSync(dir);
  if (!st.isDirectory()) throw new StorageError(`data directory ${dir} is not a directory`);
  const mode = st.mode & 0o7777;
  if (mode & 0o1000 && mode & 0o002) {
    throw new StorageError(
      `data directory ${dir} is shared by every user (mode ${mode.toString(8)}, like /tmp): it would hold this node's key and secrets where others create files; use a directory of its own (e.g. ${dir}/ledge)`,
    );
  }
  if ((mode & 0o777) === PRIVATE_DIR_MODE || !(mode & 0o077)) return { created };
  try {
    chmodSync(dir, PRIVATE_DIR_MODE);
  } catch (err) {
    throw new StorageError(
      `data directory ${dir} has mode ${mode.toString(8)} (group or others may enter it) and cannot be made private: ${errorMessage(err)}; run as its owner or chmod 700 it`,
      { cause: err },
    );
  }
  log?.warn(`data directory ${dir} had mode ${mode.toString(8)}; narrowed to 700 (it holds keys and secrets: only its owner may enter it)`, { dir });
  return { created, narrowedFrom: mode };
}
