/**
 * @module
 * The files a join writes: a private directory, and files replaced atomically (temp file in the
 * same directory, fsync, rename, fsync of the directory), all mode 0600, so a crash leaves the old
 * file or the new one, never a torn one, and no other user can read a key or the config for a
 * moment between a create and a chmod.
 */
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

/** Mode of every file a join writes (issue 13: keys and secret data 0600). */
export const FILE_MODE = 0o600;
/** Mode of the directory that holds the key. */
export const DIR_MODE = 0o700;

/**
 * Creates `dir` (and its parents) mode 0700, or narrows it to 0700 when it exists with wider
 * permissions (group or others may list or enter it). Throws when `dir` is not a directory.
 */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  const st = statSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if ((st.mode & 0o777) !== DIR_MODE) chmodSync(dir, DIR_MODE);
}

/** Replaces `path` with `data`, mode 0600, atomically and durably (see the module comment). */
export function writeFileAtomic(path: string, data: string): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  // 'wx': a fresh file, never one that someone placed (or symlinked) at the temp name.
  const fd = openSync(tmp, 'wx', FILE_MODE);
  try {
    try {
      writeFileSync(fd, data);
      // The umask may have narrowed the mode, never widened it; set it exactly anyway.
      chmodSync(tmp, FILE_MODE);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Makes the renames in `dir` durable (a rename is a change of the directory). */
export function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
