/**
 * A file-handle opener for the append log's `openFile` seam whose handles' sync() can be
 * held pending or made to fail: what tests need to see that a write waits for fsync (a
 * missing fsync is otherwise invisible: the page cache serves the bytes either way).
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { OpenFile } from '../../shared/wal/index.js';

/** One sync() call that is being held: settle it by hand. */
export interface HeldSync {
  path: string;
  /** Runs the real fsync, then resolves the caller's sync(). */
  release(): Promise<void>;
  /** Rejects the caller's sync() with `err` (default: an EIO error). */
  fail(err?: Error): void;
}

export interface SyncControl {
  openFile: OpenFile;
  /**
   * What sync() does: 'pass' runs the real fsync; 'hold' parks the call in `held`
   * until the test settles it; 'fail' rejects at once with an EIO error.
   */
  mode: 'pass' | 'hold' | 'fail';
  /** sync() calls parked while mode was 'hold', oldest first; settled ones are removed. */
  held: HeldSync[];
  /** Every sync() call, in order: the file it was on. */
  calls: string[];
  /** Every open, in order: the file and flags. */
  opens: { path: string; flags: string }[];
}

export function eioError(): Error {
  return Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO', errno: -5, syscall: 'fsync' });
}

/** An opener whose handles behave like the real ones except for sync(), which `mode` controls. */
export function controlledSync(): SyncControl {
  const ctl: SyncControl = {
    mode: 'pass',
    held: [],
    calls: [],
    opens: [],
    openFile: async (path, flags) => {
      ctl.opens.push({ path, flags });
      const real = await open(path, flags);
      const sync = (): Promise<void> => {
        ctl.calls.push(path);
        if (ctl.mode === 'pass') return real.sync();
        if (ctl.mode === 'fail') return Promise.reject(eioError());
        return new Promise<void>((resolve, reject) => {
          const h: HeldSync = {
            path,
            release: async () => {
              ctl.held.splice(ctl.held.indexOf(h), 1);
              await real.sync().then(resolve, reject);
            },
            fail: (err = eioError()) => {
              ctl.held.splice(ctl.held.indexOf(h), 1);
              reject(err);
            },
          };
          ctl.held.push(h);
        });
      };
      // FileHandle's methods use private state: everything but sync() is the real handle's, bound to it.
      return new Proxy(real, {
        get(target, prop) {
          if (prop === 'sync') return sync;
          const v: unknown = Reflect.get(target, prop, target);
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      }) as FileHandle;
    },
  };
  return ctl;
}

/**
 * Tracks whether a promise has settled, without awaiting it: a test can then check
 * that something is still pending after giving it every chance to run.
 */
export function track<T>(p: Promise<T>): { readonly settled: boolean; readonly value: Promise<T> } {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  return {
    get settled() {
      return settled;
    },
    value: p,
  };
}

/**
 * Lets every pending I/O callback and microtask run a few times over: a promise that
 * can settle without outside help has done so afterwards. Not a sleep: it waits for no
 * time, only for the event loop to go round (each turn is a setImmediate).
 */
export async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}
