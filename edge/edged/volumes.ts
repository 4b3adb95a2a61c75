/**
 * @module
 * A pod's volumes as host directories, made by Edged before its containers start (the kubelet's
 * volume manager, for the kinds an edge node can serve itself), and the mounts and environment
 * each container gets from them.
 *
 * Layout, as the kubelet's: `<podDir>/volumes/kubernetes.io~<plugin>/<volume name>`
 * (`configmap`, `secret`, `downward-api`, `projected`, `empty-dir`); hostPath volumes are the host
 * path itself.
 *
 * - **configMap, secret, downwardAPI, projected** are written by an atomic writer laid out like the
 *   kubelet's (pkg/volume/util/atomic_writer.go): the files go to a fresh timestamped directory
 *   `..2006_01_02_15_04_05.<random>`, the symlink `..data` is pointed at it by renaming a new
 *   symlink over it (atomic), and every top-level name is a symlink `name -> ..data/name`. A reader
 *   opening any path therefore sees the old projection or the new one, never a mix; running again
 *   with new data updates the volume in place (removed keys disappear, the old directory is
 *   deleted), and running with the same data touches nothing. `items` pick keys and paths (each
 *   path confined by ./paths.ts), `mode` / `defaultMode` set file modes, `optional` makes a missing
 *   object an empty volume and missing item keys absent files. Secret values are base64-decoded to
 *   bytes (binary safe); configMap `binaryData` likewise. These volumes are read-only mounts.
 * - **File modes.** configMap, downwardAPI: `defaultMode` else 0644, as Kubernetes. Secret files
 *   (a secret volume, a projected secret source, a projected service-account token): `defaultMode`
 *   else **0600**, where the kubelet uses 0644, because on the `process` runtime every workload of
 *   the node runs as EdgeCore's user in the host's filesystem, and 0644 would let any local user
 *   read them. A real API server defaults `defaultMode` to 0644 (420) when it stores a pod; Ledge's
 *   local control plane does not default pods, so a pod from it gets 0600, one through a real
 *   API server gets what the object says. A projected volume's `defaultMode`, when set, applies
 *   to all its sources.
 * - **Directories.** `<podDir>/volumes` and its `kubernetes.io~<plugin>` directories are 0700
 *   (EdgeCore's own, never mounted; the pod directory above is 0700 too); each volume's own
 *   directory is 0755 (0777 for emptyDir), as the kubelet's, so a container user other than
 *   EdgeCore's can read what its modes allow.
 * - **Size bound.** A configMap/secret/downwardAPI/projected volume whose files total more than
 *   `maxVolumeBytes` (8 MiB, `defaultVolumeOptions`) is refused (a failure, not an exception).
 * - **emptyDir**: a directory, mode 0777 like the kubelet's (a container's user may differ from
 *   EdgeCore's). `medium: Memory` is a plain directory too: Edged does not mount a tmpfs (it would
 *   need root), so the data is on disk; `sizeLimit` is parsed and recorded (`sizeLimitBytes`), not
 *   enforced. HugePages media are refused.
 * - **hostPath**: the host path, used as the pod spec says, with the kubelet's `type` checks
 *   (`''` none; `DirectoryOrCreate` makes it 0755 with its parents; `Directory`; `FileOrCreate`
 *   makes an empty 0644 file, its parent must exist; `File`; `Socket`; `CharDevice`;
 *   `BlockDevice`; symlinks followed). It is not confined: a hostPath volume is an explicit request
 *   for a host path, which the pod's author (the cluster's operator) may make, exactly as a
 *   kubelet allows it unless admission forbids it. It must be absolute and have no `..` segment
 *   (the API's own rule). Only paths *inside* a volume that come from the spec (items, subPath) are
 *   confined.
 * - **projected** sources: configMap, secret, downwardAPI, and serviceAccountToken, whose content
 *   comes from the injected `serviceAccountToken` callback (MetaServer's pod token in EdgeCore);
 *   without one, or when it returns nothing, the source is skipped with a warning.
 *   clusterTrustBundle and podCertificate sources are refused.
 * - Any other kind (persistentVolumeClaim, nfs, csi, …) is refused naming it.
 *
 * A volume that cannot be made is reported in `failures` / `errors` (a missing non-optional
 * configMap or secret says `configmap "x" not found`, as the kubelet) and left out of `volumes`:
 * the pod waits and Edged retries; nothing here throws for bad input. Edged shows a failure the
 * way the kubelet does: `MountVolume.SetUp failed for volume "<volume>" : <message>`.
 *
 * **The `process` runtime's volume convention.** A plain process cannot mount anything, so it is
 * told where its volumes are, by environment variables ({@link processVolumeEnv}):
 * - `LEDGE_VOLUME_<NAME>`: the host path of each volume the container mounts, NAME the volume name
 *   upper-cased with every character outside `A-Z0-9` replaced by `_` (volume names are DNS labels,
 *   so two volumes never share a variable); a `subPath` does not change it;
 * - `LEDGE_MOUNTS`: a JSON object `{ "<mountPath>": "<host path>" }` of every mount of the
 *   container, subPath included (always set, `{}` without mounts).
 * A program written for a container reads `/etc/config/app.yaml`; on the process runtime it reads
 * `$LEDGE_VOLUME_CONFIG/app.yaml`, or looks its mountPath up in `LEDGE_MOUNTS`. Nothing stops a
 * process from writing into a read-only volume's directory: the next update replaces the
 * projection (its links and `..data`) and leaves other files alone.
 *
 * Calls for one pod must not overlap (Edged's pod worker runs one sync at a time).
 */
import type { V1Container, V1DownwardAPIVolumeFile, V1KeyToPath, V1Pod, V1ServiceAccountTokenProjection, V1Volume } from '@kubernetes/client-node';
import { chmodSync, constants as fsConstants, lstatSync, mkdirSync, statSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { errorMessage, PodSpecError } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { type ConfigLookup, expandSubPathExpr, keyValueBytes, notFoundMessage, type PodFields, podFieldValue, resourceFieldValue } from './env.js';
import { defaultVolumeOptions } from './options.js';
import { checkRelativePath, safeJoin } from './paths.js';
import { bytes as quantityBytes } from './quantity.js';
import type { Mount } from './runtime.js';

/** Options of {@link materializeVolumes}; defaults in `defaultVolumeOptions` (./options.ts). */
export interface VolumeOptions {
  /** The pod's directory (`<data-dir>/edged/pods/<uid>`); volumes go under `<podDir>/volumes`. */
  podDir: string;
  lookup: ConfigLookup;
  /** Pod/host IPs and the node's allocatable (downwardAPI resourceFieldRef). */
  fields: PodFields;
  log?: Logger;
  /** The content of a projected serviceAccountToken source; undefined = skip it with a warning. */
  serviceAccountToken?: (pod: V1Pod, projection: V1ServiceAccountTokenProjection) => string | Uint8Array | undefined | Promise<string | Uint8Array | undefined>;
  /** Largest total size of one configMap/secret/downwardAPI/projected volume, bytes. Default 8 MiB. */
  maxVolumeBytes?: number;
}

export type VolumeKind = 'configMap' | 'secret' | 'emptyDir' | 'hostPath' | 'downwardAPI' | 'projected';

/** A volume made for the pod. */
export interface MaterializedVolume {
  name: string;
  kind: VolumeKind;
  /** Where it is on the host. */
  hostPath: string;
  /** configMap, secret, downwardAPI and projected volumes are mounted read-only. */
  readOnly: boolean;
  /** emptyDir `sizeLimit`, bytes: recorded, not enforced. */
  sizeLimitBytes?: number;
}

/** Why a volume could not be made. */
export type VolumeFailureReason = 'NotFound' | 'Invalid' | 'Unsupported' | 'TooLarge' | 'Failed';

export interface VolumeFailure {
  volume: string;
  /** NotFound: a configmap/secret (or key) the node does not hold yet, the pod waits for it; the others need a new spec (or, Failed, the host). */
  reason: VolumeFailureReason;
  /** As the kubelet words it, e.g. `configmap "x" not found`. */
  message: string;
}

export interface MaterializedVolumes {
  /** By volume name: the volumes that were made. */
  volumes: Record<string, MaterializedVolume>;
  /** The failures, structured. */
  failures: VolumeFailure[];
  /** The same, one line each: `volume "<name>": <message>`. */
  errors: string[];
  /** Things skipped that the pod may notice (a serviceAccountToken without issuer, an ignored emptyDir medium). */
  warnings: string[];
}

/** One file of a projection. */
interface FileProjection {
  data: Buffer;
  mode: number;
}

class VolumeFailureError extends Error {
  constructor(
    readonly reason: VolumeFailureReason,
    message: string,
  ) {
    super(message);
  }
}

const PLUGIN_DIRS: Record<Exclude<VolumeKind, 'hostPath'>, string> = {
  configMap: 'kubernetes.io~configmap',
  secret: 'kubernetes.io~secret',
  downwardAPI: 'kubernetes.io~downward-api',
  projected: 'kubernetes.io~projected',
  emptyDir: 'kubernetes.io~empty-dir',
};

const SUPPORTED: readonly VolumeKind[] = ['configMap', 'secret', 'emptyDir', 'hostPath', 'downwardAPI', 'projected'];
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const CONFIGMAP_MODE = 0o644;
const SECRET_MODE = 0o600;
/** `volumes/` and its plugin directories (the volumes themselves are 0755, or 0777 for emptyDir, as the kubelet's: a container's user may differ from EdgeCore's). */
const PRIVATE_DIR_MODE = 0o700;
const DATA_DIR = '..data';
const DATA_TMP = '..data_tmp';
/** A timestamped data directory's name, as the writer makes it (never `..data` itself). */
const TS_DIR = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.[^/]+$/;

/** Failures already logged per pod directory, so a retried failure logs one line, not one per sync. */
const logged = new Map<string, Set<string>>();

function volumesDir(podDir: string): string {
  return join(podDir, 'volumes');
}

function kindOf(v: V1Volume): VolumeKind | { unsupported: string } | { invalid: string } {
  const set = Object.keys(v).filter((k) => k !== 'name' && (v as unknown as Record<string, unknown>)[k] != null);
  if (set.length === 0) return 'emptyDir'; // the API's default when no source is given
  if (set.length > 1) return { invalid: `more than one volume source (${set.join(', ')})` };
  const k = set[0] as string;
  return (SUPPORTED as readonly string[]).includes(k) ? (k as VolumeKind) : { unsupported: k };
}

function checkMode(mode: number | undefined, what: string): number | undefined {
  if (mode === undefined || mode === null) return undefined;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) throw new VolumeFailureError('Invalid', `${what} ${mode} is not a file mode between 0 and 0777 (511)`);
  return mode;
}

/** kubelet's MakePayload for a configMap or secret: every key, or just `items`. */
function keyPayload(
  kind: 'ConfigMap' | 'Secret',
  data: Map<string, Buffer>,
  items: V1KeyToPath[] | undefined,
  defaultMode: number,
  optional: boolean,
  out: Map<string, FileProjection>,
): void {
  if (!items || items.length === 0) {
    for (const [k, d] of data) out.set(k, { data: d, mode: defaultMode });
    return;
  }
  for (const item of items) {
    const d = data.get(item.key);
    if (!d) {
      if (optional) continue;
      throw new VolumeFailureError(
        'NotFound',
        kind === 'ConfigMap' ? `configmap references non-existent config key: ${item.key}` : `secret references non-existent secret key: ${item.key}`,
      );
    }
    out.set(item.path, { data: d, mode: checkMode(item.mode, `mode of item ${item.key}`) ?? defaultMode });
  }
}

function objectPayload(
  kind: 'ConfigMap' | 'Secret',
  namespace: string,
  name: string | undefined,
  items: V1KeyToPath[] | undefined,
  optional: boolean,
  mode: number,
  lookup: ConfigLookup,
  out: Map<string, FileProjection>,
): void {
  const n = name ?? '';
  const obj = kind === 'ConfigMap' ? lookup.configMap(namespace, n) : lookup.secret(namespace, n);
  if (!obj && !optional) throw new VolumeFailureError('NotFound', notFoundMessage(kind, n));
  keyPayload(kind, obj ? keyValueBytes(kind, obj) : new Map(), items, mode, optional, out);
}

function downwardPayload(pod: V1Pod, items: V1DownwardAPIVolumeFile[] | undefined, mode: number, fields: PodFields, out: Map<string, FileProjection>): void {
  const problems: string[] = [];
  for (const item of items ?? []) {
    try {
      let value: string;
      if (item.fieldRef) value = podFieldValue(pod, item.fieldRef.fieldPath);
      else if (item.resourceFieldRef) value = resourceFieldValue(pod, undefined, item.resourceFieldRef, fields);
      else throw new Error(`item ${item.path} has neither fieldRef nor resourceFieldRef`);
      out.set(item.path, { data: Buffer.from(value, 'utf8'), mode: checkMode(item.mode, `mode of item ${item.path}`) ?? mode });
    } catch (err) {
      if (err instanceof VolumeFailureError) throw err;
      problems.push(errorMessage(err));
    }
  }
  if (problems.length > 0) throw new VolumeFailureError('Invalid', problems.join('; '));
}

/** Checks payload paths: confined relative paths, not `..`-prefixed (the writer's own names), no file under another file. */
function checkPayload(payload: Map<string, FileProjection>): void {
  const files = new Set(payload.keys());
  for (const p of files) {
    try {
      const segments = checkRelativePath(p, 'path');
      if (segments[0]?.startsWith('..')) throw new PodSpecError(`path ${JSON.stringify(p)} must not start with '..'`);
      for (let i = 1; i < segments.length; i++) {
        const prefix = segments.slice(0, i).join('/');
        if (files.has(prefix)) throw new PodSpecError(`paths ${JSON.stringify(prefix)} and ${JSON.stringify(p)} conflict (a file cannot hold a file)`);
      }
    } catch (err) {
      throw new VolumeFailureError('Invalid', errorMessage(err));
    }
  }
}

function stamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `..${d.getUTCFullYear()}_${p(d.getUTCMonth() + 1)}_${p(d.getUTCDate())}_${p(d.getUTCHours())}_${p(d.getUTCMinutes())}_${p(d.getUTCSeconds())}.`;
}

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** The regular files under `dir` (relative path → content and mode); undefined when something else is there. */
async function readTree(dir: string): Promise<Map<string, FileProjection> | undefined> {
  const out = new Map<string, FileProjection>();
  const walk = async (rel: string): Promise<boolean> => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (!(await walk(r))) return false;
      } else if (e.isFile()) {
        const p = join(dir, r);
        const [data, st] = await Promise.all([readFile(p), lstat(p)]);
        out.set(r, { data, mode: st.mode & 0o777 });
      } else return false;
    }
    return true;
  };
  try {
    return (await walk('')) ? out : undefined;
  } catch {
    return undefined;
  }
}

function samePayload(a: Map<string, FileProjection>, b: Map<string, FileProjection>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const o = b.get(k);
    if (!o || o.mode !== v.mode || !o.data.equals(v.data)) return false;
  }
  return true;
}

function topLevel(payload: Map<string, FileProjection>): Set<string> {
  return new Set([...payload.keys()].map((p) => p.split('/')[0] as string));
}

/** Whether `dir/name` is the writer's link `name -> ..data/name`. */
async function isOurLink(dir: string, name: string): Promise<boolean> {
  try {
    return (await readlink(join(dir, name))) === `${DATA_DIR}/${name}`;
  } catch {
    return false;
  }
}

/**
 * Writes `payload` into `dir` the atomic writer's way (module doc). Returns whether anything
 * changed. The payload is checked first (checkPayload).
 */
async function writeAtomic(dir: string, payload: Map<string, FileProjection>): Promise<boolean> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  let oldTs: string | undefined;
  try {
    const target = await readlink(join(dir, DATA_DIR));
    // Only a name this writer makes: a link pointed elsewhere (by a process writing into its volume) is never followed or removed through.
    if (TS_DIR.test(target)) oldTs = target;
  } catch {
    // no previous projection
  }
  const tops = topLevel(payload);
  if (oldTs) {
    const old = await readTree(join(dir, oldTs));
    if (old && samePayload(old, payload)) {
      let linksOk = true;
      for (const t of tops) if (!(await isOurLink(dir, t))) linksOk = false;
      if (linksOk) return false;
    }
  }
  const ts = await mkdtemp(join(dir, stamp()));
  const tsName = ts.slice(dir.length + 1);
  try {
    await chmod(ts, 0o755);
    for (const [p, f] of payload) {
      const full = join(ts, p);
      await mkdir(dirname(full), { recursive: true, mode: 0o755 });
      await writeFile(full, f.data, { mode: f.mode, flag: 'wx' });
      await chmod(full, f.mode); // the umask applied at creation
    }
    const tmp = join(dir, DATA_TMP);
    await rm(tmp, { force: true });
    await symlink(tsName, tmp);
    await rename(tmp, join(dir, DATA_DIR));
  } catch (err) {
    await rm(ts, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
  // The visible names, after the swap so none dangles.
  for (const t of tops) {
    if (await isOurLink(dir, t)) continue;
    await rm(join(dir, t), { recursive: true, force: true });
    await symlink(`${DATA_DIR}/${t}`, join(dir, t));
  }
  // Names of the previous projection that are gone, then every old data directory (a crash may have left some).
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('..')) {
      if (e.isDirectory() && TS_DIR.test(e.name) && e.name !== tsName) await rm(join(dir, e.name), { recursive: true, force: true });
      continue;
    }
    if (!tops.has(e.name) && e.isSymbolicLink() && (await isOurLink(dir, e.name))) await unlink(join(dir, e.name));
  }
  return true;
}

async function hostPathCheck(path: string, type: string): Promise<void> {
  const st = await stat(path).catch((err: unknown) => {
    if (isNotFound(err)) return undefined;
    throw err;
  });
  const fail = (what: string) => new VolumeFailureError('Invalid', `hostPath type check failed: ${path} is not ${what}`);
  switch (type) {
    case '':
      return;
    case 'DirectoryOrCreate':
      if (!st) {
        await mkdir(path, { recursive: true, mode: 0o755 });
        return;
      }
      if (!st.isDirectory()) throw fail('a directory');
      return;
    case 'Directory':
      if (!st?.isDirectory()) throw fail('a directory');
      return;
    case 'FileOrCreate':
      if (!st) {
        const fh = await open(path, fsConstants.O_CREAT | fsConstants.O_WRONLY, 0o644).catch((err: unknown) => {
          throw new VolumeFailureError('Failed', `hostPath ${path}: cannot create the file: ${errorMessage(err)}`);
        });
        await fh.close();
        return;
      }
      if (!st.isFile()) throw fail('a file');
      return;
    case 'File':
      if (!st?.isFile()) throw fail('a file');
      return;
    case 'Socket':
      if (!st?.isSocket()) throw fail('a socket file');
      return;
    case 'CharDevice':
      if (!st?.isCharacterDevice()) throw fail('a character device');
      return;
    case 'BlockDevice':
      if (!st?.isBlockDevice()) throw fail('a block device');
      return;
    default:
      throw new VolumeFailureError('Invalid', `${type} is an invalid volume type`);
  }
}

function totalBytes(payload: Map<string, FileProjection>): number {
  let n = 0;
  for (const f of payload.values()) n += f.data.length;
  return n;
}

async function materializeOne(pod: V1Pod, v: V1Volume, kind: VolumeKind, options: VolumeOptions, warnings: string[]): Promise<MaterializedVolume> {
  const ns = pod.metadata?.namespace ?? 'default';
  const name = v.name;
  if (kind === 'hostPath') {
    const hp = v.hostPath!;
    const path = hp.path ?? '';
    if (!isAbsolute(path)) throw new VolumeFailureError('Invalid', `hostPath ${JSON.stringify(path)} must be an absolute path`);
    if (path.split('/').includes('..')) throw new VolumeFailureError('Invalid', `hostPath ${JSON.stringify(path)} must not contain '..'`);
    if (path.includes('\0')) throw new VolumeFailureError('Invalid', 'hostPath contains a NUL byte');
    await hostPathCheck(path, hp.type ?? '');
    return { name, kind, hostPath: path, readOnly: false };
  }
  const pluginDir = join(volumesDir(options.podDir), PLUGIN_DIRS[kind]);
  // `volumes/` and `kubernetes.io~<plugin>/` are EdgeCore's (never mounted): private, like the pod directory above them.
  await mkdir(pluginDir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const dir = join(pluginDir, name);
  if (kind === 'emptyDir') {
    const ed = v.emptyDir ?? {};
    const medium = ed.medium ?? '';
    if (medium !== '' && medium !== 'Memory') throw new VolumeFailureError('Unsupported', `emptyDir medium ${medium} is not supported by Ledge (use "" or Memory)`);
    if (medium === 'Memory') warnings.push(`volume "${name}": emptyDir medium Memory is a plain directory on disk (Edged mounts no tmpfs)`);
    let sizeLimitBytes: number | undefined;
    if (ed.sizeLimit !== undefined && ed.sizeLimit !== null) {
      try {
        sizeLimitBytes = quantityBytes(ed.sizeLimit);
      } catch (err) {
        throw new VolumeFailureError('Invalid', `emptyDir sizeLimit: ${errorMessage(err)}`);
      }
    }
    await mkdir(dir, { recursive: true, mode: 0o777 });
    await chmod(dir, 0o777);
    return { name, kind, hostPath: dir, readOnly: false, ...(sizeLimitBytes !== undefined ? { sizeLimitBytes } : {}) };
  }
  const payload = new Map<string, FileProjection>();
  if (kind === 'configMap') {
    const s = v.configMap!;
    objectPayload('ConfigMap', ns, s.name, s.items, s.optional === true, checkMode(s.defaultMode, 'defaultMode') ?? CONFIGMAP_MODE, options.lookup, payload);
  } else if (kind === 'secret') {
    const s = v.secret!;
    objectPayload('Secret', ns, s.secretName, s.items, s.optional === true, checkMode(s.defaultMode, 'defaultMode') ?? SECRET_MODE, options.lookup, payload);
  } else if (kind === 'downwardAPI') {
    const s = v.downwardAPI!;
    downwardPayload(pod, s.items, checkMode(s.defaultMode, 'defaultMode') ?? CONFIGMAP_MODE, options.fields, payload);
  } else {
    const s = v.projected!;
    const mode = checkMode(s.defaultMode, 'defaultMode');
    for (const src of s.sources ?? []) {
      if (src.configMap) objectPayload('ConfigMap', ns, src.configMap.name, src.configMap.items, src.configMap.optional === true, mode ?? CONFIGMAP_MODE, options.lookup, payload);
      else if (src.secret) objectPayload('Secret', ns, src.secret.name, src.secret.items, src.secret.optional === true, mode ?? SECRET_MODE, options.lookup, payload);
      else if (src.downwardAPI) downwardPayload(pod, src.downwardAPI.items, mode ?? CONFIGMAP_MODE, options.fields, payload);
      else if (src.serviceAccountToken) {
        const token = options.serviceAccountToken ? await options.serviceAccountToken(pod, src.serviceAccountToken) : undefined;
        if (token === undefined) {
          warnings.push(
            `volume "${name}": serviceAccountToken source (${src.serviceAccountToken.path}) skipped: ${options.serviceAccountToken ? 'no token for this pod' : 'this node issues no service account tokens'}`,
          );
          continue;
        }
        payload.set(src.serviceAccountToken.path, { data: Buffer.from(token), mode: mode ?? SECRET_MODE });
      } else if (src.clusterTrustBundle) throw new VolumeFailureError('Unsupported', 'projected clusterTrustBundle sources are not supported by Ledge');
      else if (src.podCertificate) throw new VolumeFailureError('Unsupported', 'projected podCertificate sources are not supported by Ledge');
    }
  }
  checkPayload(payload);
  const max = options.maxVolumeBytes ?? defaultVolumeOptions.maxVolumeBytes;
  const total = totalBytes(payload);
  if (total > max) throw new VolumeFailureError('TooLarge', `the volume's files total ${total} bytes, more than the ${max} bytes a volume may hold on this node`);
  const changed = await writeAtomic(dir, payload);
  if (changed) options.log?.debug(`pod ${ns}/${pod.metadata?.name}: volume ${name} written (${payload.size} files, ${total} bytes)`);
  return { name, kind, hostPath: dir, readOnly: true };
}

/**
 * Makes (or updates) every volume of `pod` (module doc). Never throws for a volume that cannot be
 * made: it is reported in `failures`/`errors` and left out of `volumes`.
 */
export async function materializeVolumes(pod: V1Pod, options: VolumeOptions): Promise<MaterializedVolumes> {
  const result: MaterializedVolumes = { volumes: {}, failures: [], errors: [], warnings: [] };
  const seen = new Set<string>();
  for (const v of pod.spec?.volumes ?? []) {
    const name = typeof v.name === 'string' ? v.name : '';
    try {
      if (!DNS_LABEL.test(name) || name.length > 63) throw new VolumeFailureError('Invalid', `volume name ${JSON.stringify(name)} is not a DNS label`);
      if (seen.has(name)) throw new VolumeFailureError('Invalid', `duplicate volume name ${name}`);
      seen.add(name);
      const kind = kindOf(v);
      if (typeof kind === 'object') {
        if ('invalid' in kind) throw new VolumeFailureError('Invalid', kind.invalid);
        throw new VolumeFailureError('Unsupported', `${kind.unsupported} volumes are not supported by Ledge's Edged (supported: ${SUPPORTED.join(', ')})`);
      }
      result.volumes[name] = await materializeOne(pod, v, kind, options, result.warnings);
    } catch (err) {
      const reason = err instanceof VolumeFailureError ? err.reason : 'Failed';
      result.failures.push({ volume: name, reason, message: errorMessage(err) });
      result.errors.push(`volume ${JSON.stringify(name)}: ${errorMessage(err)}`);
    }
  }
  // One log line per new failure or warning of this pod, not one per retry.
  const before = logged.get(options.podDir) ?? new Set<string>();
  const now = new Set<string>([...result.errors, ...result.warnings]);
  for (const line of now) if (!before.has(line)) options.log?.warn(`pod ${pod.metadata?.namespace}/${pod.metadata?.name}: ${line}`);
  if (now.size > 0) logged.set(options.podDir, now);
  else logged.delete(options.podDir);
  return result;
}

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** `LEDGE_VOLUME_<NAME>` for a volume name. */
export function volumeEnvName(volume: string): string {
  return `LEDGE_VOLUME_${volume.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

function resolveMount(container: V1Container, volumes: MaterializedVolumes, m: NonNullable<V1Container['volumeMounts']>[number], env: Readonly<Record<string, string>>): Mount {
  const v = Object.hasOwn(volumes.volumes, m.name) ? volumes.volumes[m.name] : undefined;
  if (!v) throw new PodSpecError(`cannot find volume ${JSON.stringify(m.name)} to mount into container ${JSON.stringify(container.name)}`);
  let sub = m.subPath ?? '';
  // An expanded subPathExpr may hold an env value from a Secret: errors name the expression, never what it expanded to (they reach the log and the pod's status).
  const expanded = !sub && !!m.subPathExpr;
  if (expanded) sub = expandSubPathExpr(m.subPathExpr!, env);
  const label = expanded ? `subPathExpr ${JSON.stringify(m.subPathExpr)} of volume mount ${m.name} (as expanded)` : `subPath of volume mount ${m.name}`;
  const shown = expanded ? label : `subPath ${JSON.stringify(sub)}`;
  let hostPath = v.hostPath;
  if (sub) {
    hostPath = safeJoin(v.hostPath, sub, label, !expanded);
    if (!exists(hostPath)) {
      if (v.readOnly) throw new PodSpecError(`${shown} does not exist in volume ${JSON.stringify(m.name)}`);
      // As the kubelet: made as a directory with the mode of the volume's root.
      try {
        const mode = statSync(v.hostPath).mode & 0o777;
        mkdirSync(hostPath, { recursive: true, mode });
        chmodSync(hostPath, mode);
      } catch (err) {
        throw new PodSpecError(`cannot create ${shown} in volume ${JSON.stringify(m.name)}: ${expanded ? ((err as NodeJS.ErrnoException).code ?? 'failed') : errorMessage(err)}`);
      }
    }
  }
  return { hostPath, containerPath: m.mountPath, readOnly: m.readOnly === true || v.readOnly };
}

/**
 * The mounts of `container`: each volumeMount's volume host path (with `subPath`, or
 * `subPathExpr` expanded against `env`, confined by safeJoin), its `mountPath`, read-only when the
 * mount or the volume says so. A missing subPath is made as a directory in an emptyDir or hostPath
 * volume (as the kubelet), and refused in a read-only volume. Throws PodSpecError (or
 * EnvResolveError for a subPathExpr) for a mount it cannot make.
 */
export function mountsFor(container: V1Container, volumes: MaterializedVolumes, env: Readonly<Record<string, string>> = {}): Mount[] {
  return (container.volumeMounts ?? []).map((m) => resolveMount(container, volumes, m, env));
}

/**
 * The `process` runtime's volume convention (module doc): `LEDGE_VOLUME_<NAME>` per mounted
 * volume and `LEDGE_MOUNTS` (JSON `{ mountPath: hostPath }`). Throws as {@link mountsFor}.
 */
export function processVolumeEnv(container: V1Container, volumes: MaterializedVolumes, env: Readonly<Record<string, string>> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  const mounts: Record<string, string> = {};
  for (const m of container.volumeMounts ?? []) {
    const mount = resolveMount(container, volumes, m, env);
    out[volumeEnvName(m.name)] = volumes.volumes[m.name]!.hostPath;
    mounts[m.mountPath] = mount.hostPath;
  }
  out.LEDGE_MOUNTS = JSON.stringify(mounts);
  return out;
}

/** Deletes every volume directory of the pod (`<podDir>/volumes`). hostPath volumes are never touched, and symlinks inside are removed, not followed. */
export async function removeVolumes(podDir: string): Promise<void> {
  logged.delete(podDir);
  await rm(volumesDir(podDir), { recursive: true, force: true });
}
