/**
 * @module
 * Confinement of paths that come from the cloud (a configMap item's `path`, a mount's `subPath`,
 * the names Edged makes a pod's directories from): whatever the pod spec says, the result stays
 * inside the directory Edged chose.
 *
 * {@link safeJoin} refuses, with a PodSpecError naming the path:
 * - an absolute path, a NUL byte, an empty segment (`a//b`, a trailing `/`), a `.` or `..` segment;
 * - a path whose existing part leaves `base` through a symlink: each existing prefix is
 *   `lstat`ed from `base` down, and a symlink's real path must still be inside the real `base`.
 *   The part that does not exist yet is created by the caller as plain directories/files.
 *
 * {@link podPathProblem} says why a pod's namespace, name, uid or container names cannot be path
 * segments (Edged's callers refuse such a pod before making any directory for it).
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
 * segment, over-long segment). Returns its segments. `what` names it in the error, followed by the
 * path itself unless `show` is false (a path expanded from a secret value: the error says which
 * field, not what it held).
 */
export function checkRelativePath(rel: string, what = 'path', show = true): string[] {
  const q = show ? ` ${JSON.stringify(rel)}` : '';
  if (typeof rel !== 'string' || rel.length === 0) throw new PodSpecError(`${what}${q} is empty`);
  if (rel.includes('\0')) throw new PodSpecError(`${what}${q} contains a NUL byte`);
  if (isAbsolute(rel) || rel.startsWith('/')) throw new PodSpecError(`${what}${q} must be a relative path`);
  if (rel.length > MAX_PATH_LENGTH) throw new PodSpecError(`${what} is longer than ${MAX_PATH_LENGTH} characters`);
  const segments = rel.split('/');
  for (const s of segments) {
    if (s === '') throw new PodSpecError(`${what}${q} has an empty segment`);
    if (s === '..') throw new PodSpecError(`${what}${q} must not contain '..'`);
    if (s === '.') throw new PodSpecError(`${what}${q} must not contain '.' segments`);
    if (Buffer.byteLength(s) > MAX_SEGMENT_LENGTH) throw new PodSpecError(`${what}${q} has a segment longer than ${MAX_SEGMENT_LENGTH} bytes`);
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
 * (e.g. `subPath`); with `show` false the errors name neither `rel` nor the symlinks on its way
 * (see {@link checkRelativePath}).
 */
export function safeJoin(base: string, rel: string, what = 'path', show = true): string {
  const segments = checkRelativePath(rel, what, show);
  const q = show ? ` ${JSON.stringify(rel)}` : '';
  const root = realOrResolved(base);
  let current = resolve(base);
  for (const s of segments) {
    current = join(current, s);
    let isLink: boolean;
    try {
      isLink = lstatSync(current).isSymbolicLink();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') break; // the rest does not exist yet
      throw new PodSpecError(`${what}${q}: cannot inspect ${show ? current : 'it'}: ${show ? (err as Error).message : (err as NodeJS.ErrnoException).code}`);
    }
    if (!isLink) continue;
    let target: string;
    try {
      target = realpathSync(current);
    } catch {
      // A dangling link: where it would point is not knowable safely, refuse it.
      throw new PodSpecError(`${what}${q} goes through a symlink that does not resolve${show ? ` (${current})` : ''}`);
    }
    if (!inside(root, target)) throw new PodSpecError(`${what}${q} escapes ${base} through ${show ? `the symlink ${current} -> ${target}` : 'a symlink'}`);
  }
  return join(resolve(base), ...segments);
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A uid as one path segment: the API server's UUIDs, a static pod's hash. */
const UID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Why `pod`'s names cannot name its directories on this node, or undefined when they can. Edged
 * makes `edged/pods/<uid>` and `edged/logs/<namespace>_<name>_<uid>/<container>` from them (and
 * removes them recursively when the pod goes), so each must be one plain path segment whatever
 * the cloud sends: the namespace and container names DNS-1123 labels, the name a DNS-1123
 * subdomain (the API server's own rules, which also keep `_` out, so the log directory's name is
 * unambiguous), the uid 1–128 characters of `[A-Za-z0-9._-]` not starting with `.`.
 */
export function podPathProblem(pod: {
  metadata?: { namespace?: string; name?: string; uid?: string };
  spec?: { containers?: { name?: string }[]; initContainers?: { name?: string }[] };
}): string | undefined {
  const md = pod.metadata ?? {};
  const ns = md.namespace ?? 'default';
  const q = (v: unknown) => JSON.stringify(typeof v === 'string' && v.length > 80 ? `${v.slice(0, 80)}…` : v);
  if (typeof ns !== 'string' || ns.length > 63 || !DNS_LABEL.test(ns)) return `namespace ${q(ns)} is not a DNS-1123 label`;
  if (typeof md.name !== 'string' || md.name.length > 253 || !DNS_SUBDOMAIN.test(md.name)) return `pod name ${q(md.name)} is not a DNS-1123 subdomain`;
  if (typeof md.uid !== 'string' || !UID.test(md.uid)) return `pod uid ${q(md.uid)} is not a plain name (1-128 characters of A-Z a-z 0-9 . _ -, not starting with '.')`;
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    if (typeof c?.name !== 'string' || c.name.length > 63 || !DNS_LABEL.test(c.name)) return `container name ${q(c?.name)} is not a DNS-1123 label`;
  }
  return undefined;
}
