/**
 * @module
 * The rig of the `process` runtime's tests (process-runtime.test.ts, process-streams.test.ts):
 * runtimes on temporary roots that never touch the host's cgroups (an empty directory as cgroup
 * root), sandboxes and container configs with unique names, a bounded wait for a line in a CRI log.
 * {@link processRig} registers one
 * `after` hook that, once the file's tests are done, stops every running container of every
 * runtime made and closes it, then kills the stray pids the tests recorded, then removes the
 * temporary directories (in that order: nothing is left running in a removed directory).
 */
import { after } from 'node:test';
import { join } from 'node:path';
import { readCriLog } from '../../edge/edged/logs.js';
import { ProcessRuntime, procStat, type ProcessRuntimeOptions } from '../../edge/edged/process-runtime.js';
import type { ContainerConfig, RuntimeEvent, SandboxStatus } from '../../edge/edged/runtime.js';
import { eventually, within } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';

/** The bound of every wait of these tests. */
export const WAIT_MS = 10_000;

/** True once a process is gone (or a zombie: it ended, its parent has not reaped it yet). */
export function gone(pid: number): boolean {
  const s = procStat(pid);
  return s === undefined || s.state === 'Z';
}

/** Waits for `marker` in a container's CRI log; its text. */
export function logged(path: string, marker: string): Promise<string> {
  return eventually(
    async () => {
      const t = await readCriLog(path);
      return t.includes(marker) ? t : undefined;
    },
    WAIT_MS,
    `"${marker}" in ${path}`,
  );
}

export interface ProcessRig {
  /** A new temporary directory (removed after the file's tests). */
  temp(prefix: string): string;
  /** Pids to SIGKILL after the file's tests (children a test made that may outlive it). */
  strays: number[];
  /** A runtime on a new root (`<temp>/pods` unless `opts.rootDir`), its log directory beside it, the events it emitted. */
  makeRuntime(opts?: Partial<ProcessRuntimeOptions>): { rt: ProcessRuntime; rootDir: string; logDir: string; events: RuntimeEvent[] };
  /** A sandbox `pod-<n>` (uid `uid-<n>` unless given) under `rootDir`. */
  sandbox(rt: ProcessRuntime, rootDir: string, uid?: string): Promise<SandboxStatus>;
  /** A container config `c<n>` (unless `extra.name`) logging to `<logDir>/<name>.log`; no command when `command` is undefined. */
  config(logDir: string, command: string[] | undefined, extra?: Partial<ContainerConfig>): ContainerConfig;
}

/** The rig of one test file; `rootPrefix` names its runtimes' temporary roots. Call once, at the file's top level. */
export function processRig(rootPrefix: string): ProcessRig {
  const dirs: { cleanup: () => void }[] = [];
  const runtimes: ProcessRuntime[] = [];
  const strays: number[] = [];
  after(async () => {
    for (const rt of runtimes) {
      for (const c of await rt.listContainers()) if (c.state === 'running') await within(rt.stopContainer(c.id, 0), WAIT_MS, 'cleanup stop');
      await rt.close();
    }
    for (const pid of strays) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const d of dirs) d.cleanup();
  });

  const temp = (prefix: string): string => {
    const d = tempDir(prefix);
    dirs.push(d);
    return d.path;
  };

  /** A cgroup root that is no cgroup v2 hierarchy: tests never touch the host's cgroups unless they inject a fake one. */
  const noCgroups = temp('ledge-nocg-');

  let seq = 0;
  return {
    temp,
    strays,
    makeRuntime(opts = {}) {
      const rootDir = opts.rootDir ?? join(temp(rootPrefix), 'pods');
      const logDir = join(rootDir, '..', 'logs');
      const rt = new ProcessRuntime({ cgroupRoot: noCgroups, exitDrainMs: 2000, ...opts, rootDir });
      runtimes.push(rt);
      const events: RuntimeEvent[] = [];
      rt.onEvent((e) => events.push(e));
      return { rt, rootDir, logDir, events };
    },
    sandbox(rt, rootDir, uid = `uid-${++seq}`) {
      return rt.runPodSandbox({ uid, name: `pod-${seq}`, namespace: 'default', hostname: `pod-${seq}`, hostNetwork: false, ports: [], labels: {}, podDir: join(rootDir, uid) });
    },
    config(logDir, command, extra = {}) {
      const name = extra.name ?? `c${++seq}`;
      return {
        name,
        image: 'busybox:1.36',
        ...(command ? { command } : {}),
        args: [],
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        mounts: [],
        resources: {},
        attempt: 0,
        logPath: join(logDir, `${name}.log`),
        logMaxBytes: 1 << 20,
        labels: {},
        ...extra,
      };
    },
  };
}
