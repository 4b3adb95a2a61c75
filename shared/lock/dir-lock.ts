/**
 * @module
 * An exclusive lock on a data directory, so two processes never write the same log (two
 * control planes on one directory hand out the same resourceVersions and lose writes).
 * Node's standard library only (it is in the edge bundle); no flock, so the lock is a file.
 *
 * The lock is a file `LOCK.<generation>` in the directory, holding JSON that names its
 * holder: pid, host name, boot id, PID namespace, the process's start time (Linux
 * /proc/<pid>/stat) and a random token. It is created complete and atomically (written to a
 * temp file, then hard-linked to its name, which fails if the name exists). Acquiring:
 *
 * 1. Find the highest generation n. If its holder is alive, refuse: DataDirLockedError.
 * 2. Otherwise (none, or stale) link `LOCK.<n+1>`; if another process got there first
 *    (EEXIST), start over. Only one contender can create a given generation, and a stale
 *    lock is never deleted before its successor exists, so two contenders that both judged
 *    the same lock stale cannot both win (the race a rename-over-stale scheme has).
 * 3. Confirm: any other higher generation, or any other live lock, means we lost (we remove
 *    ours and refuse); then older, stale generations are removed.
 *
 * A holder is alive when, on the same machine (same host name, boot id and PID namespace),
 * its pid exists and has the recorded start time: a pid reused after a kill -9 (a
 * container's pid 1, our own pid in a new incarnation) is stale, so a crash never blocks a
 * restart. A holder elsewhere (another host on shared storage, another container) cannot
 * be checked by pid: it refreshes the file's mtime every `refreshMs`, and is stale once
 * not refreshed for `staleMs`. Released on clean shutdown (and on process exit).
 */
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, readdirSync, readlinkSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { DataDirLockedError, StorageError, errorMessage } from '../errors/index.js';
import type { Logger } from '../log/index.js';

/** What a lock file says about its holder. */
export interface LockHolder {
  pid: number;
  host: string;
  /** /proc/sys/kernel/random/boot_id ('' where unknown). */
  boot: string;
  /** /proc/self/ns/pid link ('' where unknown). */
  pidns: string;
  /** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot ('' where unknown). */
  start: string;
  /** ISO time the lock was taken (for humans). */
  startedAt: string;
  /** Which program holds it (for humans): 'apiserver', 'edgecore', … */
  owner: string;
  token: string;
}

export interface DirLockOptions {
  /** Written into the lock for humans ('apiserver', 'edgecore'). */
  owner?: string;
  /** Gets one line when a stale lock is taken over, and one if the lock is lost. */
  log?: Logger;
  /** A holder that cannot be checked by pid is stale after this long without refresh. Default 60000. */
  staleMs?: number;
  /** How often the holder refreshes its lock's mtime. Default staleMs / 3. */
  refreshMs?: number;
  /** Called once if the lock file was removed or replaced by another process while held. */
  onLost?: () => void;
}

export interface DirLock {
  readonly dir: string;
  /** The lock file held. */
  readonly file: string;
  readonly holder: LockHolder;
  /** Removes the lock (if still ours). Idempotent. */
  release(): void;
}

const LOCK_RE = /^LOCK\.(\d+)$/;
/** The lock names its holder (pid, host, boot id): for the directory's owner only, like everything in a data directory (issue 13). */
const LOCK_FILE_MODE = 0o600;
const TMP_PREFIX = 'LOCK.tmp-';
const MAX_ATTEMPTS = 20;

/** Directories locked by this process (a second lock from the same process is refused too). */
const heldHere = new Map<string, DirLock>();
let exitHook = false;

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return fallback;
  }
}

/** Start time of a process in clock ticks since boot, or '' where /proc is not there. */
export function processStartTime(pid: number): string {
  const stat = readOr(`/proc/${pid}/stat`, '');
  if (!stat) return '';
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return rest[19] ?? '';
}

function pidNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return '';
  }
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function self(owner: string): LockHolder {
  return {
    pid: process.pid,
    host: hostname(),
    boot: readOr('/proc/sys/kernel/random/boot_id', ''),
    pidns: pidNamespace(),
    start: processStartTime(process.pid),
    startedAt: new Date().toISOString(),
    owner,
    token: randomBytes(12).toString('hex'),
  };
}

interface Found {
  gen: number;
  file: string;
  holder: LockHolder | undefined;
  mtimeMs: number;
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    if (typeof h.pid !== 'number' || typeof h.host !== 'string' || typeof h.token !== 'string') return undefined;
    return { boot: '', pidns: '', start: '', startedAt: '', owner: '', ...h } as LockHolder;
  } catch {
    return undefined;
  }
}

/** Lock files of `dir`, highest generation first; a file that vanished while listed is skipped. */
function listLocks(dir: string): Found[] {
  const out: Found[] = [];
  for (const name of readdirSync(dir)) {
    const m = LOCK_RE.exec(name);
    if (!m) continue;
    const file = join(dir, name);
    try {
      const mtimeMs = statSync(file).mtimeMs;
      out.push({ gen: Number(m[1]), file, holder: parseHolder(readFileSync(file, 'utf8')), mtimeMs });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return out.sort((a, b) => b.gen - a.gen);
}

/** Why a lock is not (or no longer) held by a live process; undefined when it is. */
function staleReason(f: Found, me: LockHolder, staleMs: number): string | undefined {
  const h = f.holder;
  const age = Date.now() - f.mtimeMs;
  // Unreadable (being written through the no-hard-link fallback, or damaged): trust only a fresh one.
  if (!h) return age > staleMs ? `unreadable and not refreshed for ${Math.round(age / 1000)} s` : undefined;
  if (h.host === me.host && h.boot && me.boot && h.boot !== me.boot) return 'the machine has rebooted since';
  const sameMachine = h.host === me.host && h.boot === me.boot && h.pidns === me.pidns;
  if (sameMachine) {
    if (h.pid === me.pid) return 'an earlier process with our pid'; // we are not it: heldHere is checked first
    if (!pidExists(h.pid)) return `pid ${h.pid} is not running`;
    const start = h.start ? processStartTime(h.pid) : '';
    if (start && start !== h.start) return `pid ${h.pid} is now another process`;
    return undefined;
  }
  // Another host or PID namespace: its pid means nothing here; it keeps the mtime fresh.
  return age > staleMs ? `not refreshed for ${Math.round(age / 1000)} s by host ${h.host}` : undefined;
}

function lockedError(dir: string, f: Found): InstanceType<typeof DataDirLockedError> {
  const h = f.holder;
  const who = h ? `pid ${h.pid} on host ${h.host} (${h.owner || 'ledge'}, since ${h.startedAt || 'unknown'})` : 'a process whose lock file is being written';
  return new DataDirLockedError(`data directory ${dir} is locked by ${who}: another Ledge process is using it; stop it first (lock file ${f.file})`);
}

/** Writes the holder to a temp file and links it to `file`; false if `file` exists. */
function createExclusive(dir: string, file: string, me: LockHolder): boolean {
  const body = `${JSON.stringify(me)}\n`;
  const tmp = join(dir, `${TMP_PREFIX}${me.pid}-${me.token}`);
  const fd = openSync(tmp, 'w', LOCK_FILE_MODE);
  try {
    writeSync(fd, body);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
    // No hard links (FAT and some network file systems): exclusive create, then write.
    let fd2: number;
    try {
      fd2 = openSync(file, 'wx', LOCK_FILE_MODE);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
    try {
      writeSync(fd2, body);
      fsyncSync(fd2);
    } finally {
      closeSync(fd2);
    }
    return true;
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
}

function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // gone already
  }
}

/** Removes temp files a crash between write and link left behind (older than a minute). */
function sweepTemps(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(TMP_PREFIX)) continue;
    const file = join(dir, name);
    try {
      if (Date.now() - statSync(file).mtimeMs > 60_000) unlinkSync(file);
    } catch {
      // another process removed it
    }
  }
}

/**
 * Takes the exclusive lock of `dir` (which must exist) or throws DataDirLockedError naming
 * the live holder. Synchronous, so an entry point can lock before opening anything.
 */
export function lockDataDir(dirPath: string, options: DirLockOptions = {}): DirLock {
  const dir = resolve(dirPath);
  const staleMs = options.staleMs ?? 60_000;
  const refreshMs = options.refreshMs ?? Math.max(1000, Math.floor(staleMs / 3));
  const held = heldHere.get(dir);
  if (held)
    throw new DataDirLockedError(`data directory ${dir} is locked by this process (pid ${process.pid}, ${held.holder.owner || 'another component'}); it cannot be opened twice`);
  const me = self(options.owner ?? '');
  try {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const locks = listLocks(dir);
      const top = locks[0];
      let takeover: string | undefined;
      if (top) {
        takeover = staleReason(top, me, staleMs);
        if (takeover === undefined) throw lockedError(dir, top);
      }
      const gen = (top?.gen ?? 0) + 1;
      const file = join(dir, `LOCK.${gen}`);
      if (!createExclusive(dir, file, me)) continue; // someone else took this generation: look again
      // Confirm: nobody newer, and no other live holder (one that acquired from an older view).
      const others = listLocks(dir).filter((f) => f.file !== file);
      const rival = others.find((f) => f.gen > gen || staleReason(f, me, staleMs) === undefined);
      if (rival) {
        removeQuietly(file);
        throw lockedError(dir, rival);
      }
      for (const f of others) removeQuietly(f.file);
      sweepTemps(dir);
      if (takeover !== undefined && top) {
        const h = top.holder;
        options.log?.warn(`took over the stale lock of data directory ${dir}: ${takeover}`, { holderPid: h?.pid, holderHost: h?.host, holderSince: h?.startedAt });
      }
      return register(dir, file, me, refreshMs, options);
    }
  } catch (err) {
    if (err instanceof DataDirLockedError) throw err;
    throw new StorageError(`cannot lock data directory ${dir}: ${errorMessage(err)}`, { cause: err });
  }
  throw new StorageError(`cannot lock data directory ${dir}: it kept changing under ${MAX_ATTEMPTS} attempts (processes starting at once?)`);
}

function register(dir: string, file: string, me: LockHolder, refreshMs: number, options: DirLockOptions): DirLock {
  let released = false;
  let lost = false;
  const stillOurs = (): boolean => parseHolder(readOr(file, ''))?.token === me.token;
  const timer = setInterval(() => {
    if (released || lost) return;
    try {
      if (!stillOurs()) throw new Error('lock file replaced');
      const now = new Date();
      utimesSync(file, now, now);
    } catch (err) {
      lost = true;
      clearInterval(timer);
      options.log?.error(`lost the lock of data directory ${dir}: ${errorMessage(err)}; another process may be writing it`, { code: DataDirLockedError.code });
      options.onLost?.();
    }
  }, refreshMs).unref();
  const lock: DirLock = {
    dir,
    file,
    holder: me,
    release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      if (heldHere.get(dir) === lock) heldHere.delete(dir);
      if (!lost && stillOurs()) removeQuietly(file);
    },
  };
  heldHere.set(dir, lock);
  if (!exitHook) {
    exitHook = true;
    // A process that exits without its clean shutdown still frees its locks (kill -9 cannot: see staleReason).
    process.on('exit', () => {
      for (const l of [...heldHere.values()]) l.release();
    });
  }
  return lock;
}
