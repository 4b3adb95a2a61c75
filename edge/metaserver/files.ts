/**
 * @module
 * MetaServer's files under `<data-dir>/metaserver/` (directory 0700, files 0600): written whole and
 * durably (temporary file, fsync, rename, fsync of the directory), so a crash leaves the old file
 * or the new one, never a torn credential.
 */
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { StorageError, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { METASERVER_DIR } from './options.js';

/** `path` made `mode` if it is more open (or otherwise different); says so in one line. */
function tighten(path: string, mode: number, log: Logger): void {
  const st = statSync(path);
  if ((st.mode & 0o777) !== mode) {
    chmodSync(path, mode);
    log.warn(`${path} had mode ${(st.mode & 0o777).toString(8)}; set to ${mode.toString(8)}`);
  }
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `data` to `path` (mode 0600): readers see the old file or the whole new one, durably. Throws StorageError. */
export function writeFileAtomic(path: string, data: Buffer | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, data, { mode: 0o600 });
    fsyncPath(tmp);
    renameSync(tmp, path);
    fsyncPath(dirname(path));
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new StorageError(`cannot write ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Reads a file; undefined when it does not exist. Throws StorageError otherwise. */
export function readIfExists(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StorageError(`cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Reads a credential file, or creates it with `create()` when it is missing or not `valid` (said in one line). */
export function readOrCreate(path: string, valid: (b: Buffer) => boolean, create: () => Buffer | string, log: Logger): Buffer {
  const existing = readIfExists(path);
  if (existing && valid(existing)) {
    tighten(path, 0o600, log);
    return existing;
  }
  if (existing) log.error(`${path} is not a valid MetaServer credential; replaced by a new one (what was derived from the old one stops working)`);
  const data = create();
  writeFileAtomic(path, data);
  return Buffer.from(data);
}

/** `<dataDir>/metaserver`, created 0700 (tightened if it exists more open). Throws StorageError. */
export function metaServerDir(dataDir: string, log: Logger): string {
  const dir = join(dataDir, METASERVER_DIR);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    tighten(dir, 0o700, log);
  } catch (err) {
    throw new StorageError(`cannot create ${dir}: ${errorMessage(err)}`, { cause: err });
  }
  return dir;
}
