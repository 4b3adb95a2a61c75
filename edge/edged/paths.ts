/**
 * @module
 * Confinement of paths that come from the cloud (a configMap item's `path`, a mount's `subPath`):
 * whatever the pod spec says, the result stays inside the directory Edged chose.
 *
 * {@link safeJoin} refuses, with a PodSpecError naming the path:
 * - an absolute path, a NUL byte, an empty segment (`a//b`, a trailing `/`), a `.` or `..` segment;
 * - a path whose existing part leaves `base` through a symlink: each existing prefix is
 *   `lstat`ed from `base` down, and a symlink's real path must still be inside the real `base`.
 *   The part that does not exist yet is created by the caller as plain directories/files.
 *
 * It returns the lexical join (`<base>/<rel>`), not the resolved one, so a path through the
 * atomic writer's `key -> ..data/key` links keeps following updates.
 *
 * What it cannot do: the check is made when it is called. A workload that can write inside
 * `base` (an emptyDir) could swap a directory for a symlink afterwards; a kubelet closes that race
 * by opening each component with `openat(O_NOFOLLOW)` for subPath bind mounts, which Node's fs
 * has no API for. Edged calls this right before each container start, which narrows the window
 * to that container's own start.
 */
import { lstatSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { PodSpecError } from '../../shared/errors/index.js';

/** Largest path and segment lengths accepted (the atomic writer's and Linux's). */
export const MAX_PATH_LENGTH = 4096;
export const MAX_SEGMENT_LENGTH = 255;

/**
 * Checks that `rel` is a plain relative path (no absolute path, NUL, empty, `.` or `..`
 * segment, over-long segment). Returns its segments. `what` names it in the error.
 */
export function checkRelativePath(rel: string, what = 'path'): string[] {
  const q = JSON.stringify(rel);
  if (typeof rel !== 'string' || rel.length === 0) throw new PodSpecError(`${what} ${q} is empty`);
  if (rel.includes('\0')) throw new PodSpecError(`${what} ${q} contains a NUL byte`);
  if (isAbsolute(rel) || rel.startsWith('/')) throw new PodSpecError(`${what} ${q} must be a relative path`);
  if (rel.length > MAX_PATH_LENGTH) throw new PodSpecError(`${what} is longer than ${MAX_PATH_LENGTH} characters`);
  const segments = rel.split('/');
  for (const s of segments) {
    if (s === '') throw new PodSpecError(`${what} ${q} has an empty segment`);
    if (s === '..') throw new PodSpecError(`${what} ${q} must not contain '..'`);
    if (s === '.') throw new PodSpecError(`${what} ${q} must not contain '.' segments`);
    if (Buffer.byteLength(s) > MAX_SEGMENT_LENGTH) throw new PodSpecError(`${what} ${q} has a segment longer than ${MAX_SEGMENT_LENGTH} bytes`);
  }
  return segments;
}

function inside(root: string, p: string): boolean {
  if (p === root) return true;
  const r = relative(root, p);
  return r !== '' && !r.startsWith(`..${sep}`) && r !== '..' && !isAbsolute(r);
}

function realOrResolved(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
}

/**
 * `base/rel`, refused (PodSpecError) when `rel` is not a plain relative path or when an existing
 * part of it resolves outside `base` through a symlink. `what` names the path in errors
 * (e.g. `subPath`).
 */
export function safeJoin(base: string, rel: string, what = 'path'): string {
  const segments = checkRelativePath(rel, what);
  const root = realOrResolved(base);
  let current = resolve(base);
  for (const s of segments) {
    current = join(current, s);
    let isLink: boolean;
    try {
      isLink = lstatSync(current).isSymbolicLink();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') break; // the rest does not exist yet
      throw new PodSpecError(`${what} ${JSON.stringify(rel)}: cannot inspect ${current}: ${(err as Error).message}`);
    }
    if (!isLink) continue;
    let target: string;
    try {
      target = realpathSync(current);
    } catch {
      // A dangling link: where it would point is not knowable safely, refuse it.
      throw new PodSpecError(`${what} ${JSON.stringify(rel)} goes through a symlink that does not resolve (${current})`);
    }
    if (!inside(root, target)) throw new PodSpecError(`${what} ${JSON.stringify(rel)} escapes ${base} through the symlink ${current} -> ${target}`);
  }
  return join(resolve(base), ...segments);
}
