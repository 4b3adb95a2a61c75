/**
 * @module
 * CPU and memory limits of the `process` runtime's containers through cgroup v2, where the host
 * allows it, and a clear reason where it does not.
 *
 * Layout (kubelet's cgroupfs driver is the model): `<root>/ledge/pod<uid>/<containerId>`, with the
 * `cpu` and `memory` controllers enabled in the `cgroup.subtree_control` of every level above a
 * container. A container's `memory.max` is its limit in bytes (and `memory.swap.max` 0 where the
 * file exists, so swap does not stretch the limit), its `cpu.max` `<quota> 100000`: the quota
 * is `cpuMillis × 100` µs per 100 ms period, at least 1000 µs (the kernel's minimum, as kubelet).
 * Only containers that ask for a limit get a cgroup: without one, a process container is what it
 * always was, a plain child of EdgeCore.
 *
 * Where `ledge` goes is decided once, at the first container that asks for a limit, trying in
 * order: the hierarchy's root (`<root>/ledge`, where EdgeCore running as root on a host with a
 * unified cgroup v2 hierarchy can always create it), then EdgeCore's own cgroup (the `0::` line of
 * /proc/self/cgroup; usable when it was delegated to EdgeCore with the controllers enabled, e.g.
 * a systemd unit with `Delegate=yes` that starts EdgeCore in a leaf below it). A candidate is
 * usable when the hierarchy is cgroup v2 (`cgroup.controllers` exists at `<root>`), lists `cpu` and
 * `memory`, lets them be enabled for its children (cgroup v2 refuses that, EBUSY, in a non-root
 * cgroup that holds processes itself: the "no internal processes" rule), and `ledge` can be
 * created there. When none is, the reasons are kept: the runtime logs them once and reports
 * `limits not enforced: <reason>` in the status of every container that asked for a limit.
 * A cgroup v1 or hybrid host (v2 mounted at `/sys/fs/cgroup/unified` without controllers) is
 * such a host.
 *
 * The process is moved into its cgroup right after it was spawned (Node cannot spawn into a
 * cgroup): during that short window it runs unlimited and a child it forks at once stays in
 * EdgeCore's cgroup. `cgroup.kill` (Linux 5.14+) ends everything in a container's cgroup, including
 * processes that left its process group. `memory.events`' `oom_kill` tells an OOM kill apart from
 * another SIGKILL.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import type { ContainerResources } from './runtime.js';

/** Options of {@link Cgroups}; defaults in `defaultProcessRuntimeOptions` (./options.ts). */
export interface CgroupOptions {
  /** Where the cgroup v2 hierarchy is mounted. Default `/sys/fs/cgroup`. */
  root: string;
  /** EdgeCore's own cgroup, relative to `root` (`/system.slice/edgecore.service`). Default: the `0::` line of /proc/self/cgroup. */
  selfPath?: string;
  log?: Logger;
}

/** Whether limits can be enforced: `base` is the `ledge` directory, or the reason they cannot. */
export type CgroupSupport = { ok: true; base: string } | { ok: false; reason: string };

/** What {@link Cgroups.prepare} made for one container. */
export interface ContainerCgroup {
  /** The container's cgroup directory, when its limits are enforced. */
  dir?: string;
  /** `limits not enforced: <reason>` when the container asked for limits that cannot be applied. */
  message?: string;
}

const CONTROLLERS = ['cpu', 'memory'] as const;
/** cpu.max period, µs (the kernel's and kubelet's default). */
export const CPU_PERIOD_US = 100_000;
/** Smallest cpu.max quota the kernel accepts, µs. */
const CPU_MIN_QUOTA_US = 1000;

/** `cpu.max` for a limit of `cpuMillis` millicores. */
export function cpuMax(cpuMillis: number): string {
  return `${Math.max(CPU_MIN_QUOTA_US, Math.ceil((cpuMillis * CPU_PERIOD_US) / 1000))} ${CPU_PERIOD_US}`;
}

/** True when `resources` asks for any limit. */
export function hasLimits(resources: ContainerResources | undefined): boolean {
  return resources !== undefined && (resources.cpuMillis !== undefined || resources.memoryBytes !== undefined);
}

/** EdgeCore's own cgroup v2 path from /proc/self/cgroup (`0::/path`), or undefined. */
export function ownCgroupPath(procSelfCgroup = '/proc/self/cgroup'): string | undefined {
  try {
    for (const line of readFileSync(procSelfCgroup, 'utf8').split('\n')) if (line.startsWith('0::')) return line.slice(3) || '/';
  } catch {
    // not Linux, or /proc not mounted
  }
  return undefined;
}

function words(file: string): Set<string> {
  return new Set(readFileSync(file, 'utf8').split(/\s+/).filter(Boolean));
}

function explain(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const msg = errorMessage(err);
  if (code === 'EBUSY') return `${msg} (the cgroup holds processes itself, and cgroup v2 enables controllers only below a cgroup without processes)`;
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return `${msg} (EdgeCore may not write there: run it as root or delegate it a cgroup)`;
  return msg;
}

/** Enables the controllers `<dir>` lacks in its `cgroup.subtree_control` (one write: all or none). */
function enableControllers(dir: string): void {
  const file = join(dir, 'cgroup.subtree_control');
  const enabled = existsSync(file) ? words(file) : new Set<string>();
  const missing = CONTROLLERS.filter((c) => !enabled.has(c));
  if (missing.length === 0) return;
  try {
    writeFileSync(file, missing.map((c) => `+${c}`).join(' '));
  } catch (err) {
    throw new Error(`cannot enable the ${missing.join(' and ')} controller${missing.length > 1 ? 's' : ''} in ${file}: ${explain(err)}`);
  }
}

/**
 * Sets up `<parent>/ledge` for containers, or says why it cannot be (`parent`: a directory of the
 * cgroup v2 hierarchy).
 */
function tryParent(parent: string): CgroupSupport {
  try {
    const available = words(join(parent, 'cgroup.controllers'));
    const missing = CONTROLLERS.filter((c) => !available.has(c));
    if (missing.length > 0)
      return {
        ok: false,
        reason: `${parent} does not offer the ${missing.join(' and ')} controller${missing.length > 1 ? 's' : ''} (cgroup.controllers: "${[...available].join(' ')}")`,
      };
    enableControllers(parent);
    const base = join(parent, 'ledge');
    try {
      mkdirSync(base, { recursive: true });
    } catch (err) {
      return { ok: false, reason: `cannot create ${base}: ${explain(err)}` };
    }
    enableControllers(base);
    return { ok: true, base };
  } catch (err) {
    return { ok: false, reason: errorMessage(err) };
  }
}

/** Finds where container cgroups can go (see the module doc), or why they cannot. */
export function detectCgroupV2(options: { root: string; selfPath?: string | undefined }): CgroupSupport {
  const root = options.root;
  if (!existsSync(join(root, 'cgroup.controllers'))) {
    return { ok: false, reason: `no cgroup v2 hierarchy at ${root} (${join(root, 'cgroup.controllers')} is missing: a cgroup v1 or hybrid host)` };
  }
  const self = options.selfPath ?? ownCgroupPath();
  const candidates = [root];
  if (self !== undefined && self !== '/' && self !== '') candidates.push(join(root, self));
  const reasons: string[] = [];
  for (const parent of candidates) {
    const r = tryParent(parent);
    if (r.ok) return r;
    reasons.push(r.reason);
  }
  return { ok: false, reason: reasons.join('; ') };
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The process runtime's container cgroups. */
export class Cgroups {
  private detected: CgroupSupport | undefined;
  private warned = false;

  constructor(private readonly options: CgroupOptions) {}

  /** Detects support once (at the first call). */
  support(): CgroupSupport {
    this.detected ??= detectCgroupV2({ root: this.options.root, selfPath: this.options.selfPath });
    return this.detected;
  }

  /**
   * Makes a container's cgroup with its limits when it asks for some. Never throws: a cgroup that
   * cannot be made is a `message` for the container's status (and a log line: once when cgroups
   * are unusable on this host, per container for any other failure).
   */
  prepare(uid: string, containerId: string, resources: ContainerResources | undefined): ContainerCgroup {
    if (!hasLimits(resources) || !resources) return {};
    const s = this.support();
    if (!s.ok) {
      if (!this.warned) {
        this.warned = true;
        this.options.log?.warn(`process runtime: CPU and memory limits are not enforced: ${s.reason}`);
      }
      return { message: `limits not enforced: ${s.reason}` };
    }
    try {
      if (!SAFE_NAME.test(uid) || !SAFE_NAME.test(containerId))
        throw new Error(`pod uid ${JSON.stringify(uid)} or container id ${JSON.stringify(containerId)} is not usable as a cgroup name`);
      const pod = join(s.base, `pod${uid}`);
      mkdirSync(pod, { recursive: true });
      enableControllers(pod);
      const dir = join(pod, containerId);
      mkdirSync(dir, { recursive: true });
      if (resources.memoryBytes !== undefined) {
        writeFileSync(join(dir, 'memory.max'), String(Math.max(0, Math.floor(resources.memoryBytes))));
        const swap = join(dir, 'memory.swap.max');
        if (existsSync(swap)) {
          try {
            writeFileSync(swap, '0');
          } catch {
            // swap accounting off: memory.max alone bounds the container
          }
        }
      }
      if (resources.cpuMillis !== undefined) writeFileSync(join(dir, 'cpu.max'), cpuMax(resources.cpuMillis));
      return { dir };
    } catch (err) {
      const reason = explain(err);
      this.options.log?.warn(`process runtime: limits of container ${containerId} (pod ${uid}) are not enforced: ${reason}`);
      return { message: `limits not enforced: ${reason}` };
    }
  }

  /** Moves `pid` into the cgroup `dir`. Throws with the reason. */
  addProcess(dir: string, pid: number): void {
    try {
      writeFileSync(join(dir, 'cgroup.procs'), String(pid));
    } catch (err) {
      throw new Error(`cannot move process ${pid} into ${dir}: ${explain(err)}`);
    }
  }

  /** True when the kernel's OOM killer killed a process of the cgroup (`memory.events`' `oom_kill` > 0). */
  oomKilled(dir: string): boolean {
    try {
      const m = /^oom_kill (\d+)$/m.exec(readFileSync(join(dir, 'memory.events'), 'utf8'));
      return m !== null && Number(m[1]) > 0;
    } catch {
      return false;
    }
  }

  /** SIGKILLs every process in the cgroup through `cgroup.kill`; false where the kernel has none (before 5.14) or it failed. */
  kill(dir: string): boolean {
    const file = join(dir, 'cgroup.kill');
    if (!existsSync(file)) return false;
    try {
      writeFileSync(file, '1');
      return true;
    } catch {
      return false;
    }
  }

  /** Removes a container's cgroup (it must be empty of processes). Never throws; a failure is logged. */
  remove(dir: string): void {
    removeDir(dir, this.options.log);
  }

  /** Removes what is left of a pod's cgroups (its container cgroups, then its own). */
  removePod(uid: string): void {
    const s = this.detected;
    if (!s?.ok || !SAFE_NAME.test(uid)) return;
    const pod = join(s.base, `pod${uid}`);
    if (!existsSync(pod)) return;
    try {
      for (const e of readdirSync(pod, { withFileTypes: true })) if (e.isDirectory()) removeDir(join(pod, e.name), this.options.log);
    } catch {
      // gone meanwhile: removeDir below says what is left
    }
    removeDir(pod, this.options.log);
  }
}

/**
 * rmdir, as a cgroup is removed (its interface files go with it). ENOTEMPTY only happens outside a
 * cgroupfs (a test's fake hierarchy, whose files are real): then the directory is removed with them.
 */
function removeDir(dir: string, log: Logger | undefined): void {
  try {
    rmdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      try {
        rmSync(dir, { recursive: true, force: true });
        return;
      } catch (err2) {
        log?.warn(`process runtime: cannot remove cgroup ${dir}: ${errorMessage(err2)}`);
        return;
      }
    }
    log?.warn(`process runtime: cannot remove cgroup ${dir}: ${explain(err)}`);
  }
}
