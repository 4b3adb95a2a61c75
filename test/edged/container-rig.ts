/**
 * @module
 * The rig of the `container` runtime's tests (container-runtime.test.ts, container-streams.test.ts,
 * log-rate.test.ts): temporary directories removed after the file's tests (one `after` hook,
 * registered by {@link containerRig}), sandbox and container configs with unique names (pod uids
 * `00000000-0000-4000-8000-<n>`), and a fake Docker daemon on a unix socket whose close ends the
 * connections it holds.
 */
import { after } from 'node:test';
import http from 'node:http';
import { join } from 'node:path';
import type { ContainerConfig, SandboxConfig } from '../../edge/edged/runtime.js';
import { tempDir } from '../helpers/files.js';

/** A fake daemon: where it listens, and a close that drops its connections first. */
export interface FakeDaemon {
  socketPath: string;
  close(): Promise<void>;
}

export interface ContainerRig {
  /** A new temporary directory (removed after the file's tests). */
  dir(): string;
  /** A sandbox `pod-<n>` whose pod directory is a new temporary directory. */
  sandboxConfig(extra?: Partial<SandboxConfig>): SandboxConfig;
  /** A container config logging to `<logDir>/<name>-<n>/0.log` (one log directory per rig). */
  containerConfig(name: string, image: string, extra?: Partial<ContainerConfig>): ContainerConfig;
  /** A fake daemon on `<temp>/d.sock`; `handler` gets every request. */
  fakeDaemon(handler: http.RequestListener): Promise<FakeDaemon>;
}

/** The rig of one test file; `prefix` names its temporary directories. Call once, at the file's top level. */
export function containerRig(prefix: string): ContainerRig {
  const dirs: { cleanup: () => void }[] = [];
  after(() => {
    for (const d of dirs) d.cleanup();
  });
  const dir = (): string => {
    const d = tempDir(prefix);
    dirs.push(d);
    return d.path;
  };

  let seq = 0;
  let logDir = '';
  return {
    dir,
    sandboxConfig(extra = {}) {
      const n = ++seq;
      const name = `pod-${n}`;
      return {
        uid: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
        name,
        namespace: 'default',
        hostname: name,
        hostNetwork: false,
        ports: [],
        labels: {},
        podDir: dir(),
        ...extra,
      };
    },
    containerConfig(name, image, extra = {}) {
      logDir ||= dir();
      return {
        name,
        image,
        env: {},
        mounts: [],
        resources: {},
        attempt: 0,
        logPath: join(logDir, `${name}-${++seq}`, '0.log'),
        logMaxBytes: 1024 * 1024,
        labels: {},
        ...extra,
      };
    },
    async fakeDaemon(handler) {
      const socketPath = join(dir(), 'd.sock');
      const server = http.createServer(handler);
      await new Promise<void>((resolve) => server.listen(socketPath, resolve));
      return {
        socketPath,
        close: () => {
          server.closeAllConnections();
          return new Promise<void>((resolve) => server.close(() => resolve()));
        },
      };
    },
  };
}
