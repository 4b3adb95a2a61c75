/**
 * @module
 * Child-process plumbing shared by the benchmarks: bundling the helper processes
 * (so no TypeScript loader runs inside a measured process: tsx adds ~40 MB RSS),
 * spawning them with an IPC channel, waiting for replies with a timeout, and killing
 * every child this process started on exit, on a signal or on a crash.
 */
import { fork, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Bundles bench/lib/{cloud-server,sim-edge}.ts to ESM under node_modules/.cache (npm
 * dependencies stay external and resolve from the project's node_modules). Returns the
 * paths by entry name.
 */
export async function bundleHelpers(names: string[]): Promise<Record<string, string>> {
  const outdir = join(root, 'node_modules', '.cache', 'ledge-bench');
  mkdirSync(outdir, { recursive: true });
  await build({
    entryPoints: Object.fromEntries(names.map((n) => [n, join(root, 'bench', 'lib', `${n}.ts`)])),
    outdir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
    define: { LEDGE_VERSION: '"bench"' },
  });
  return Object.fromEntries(names.map((n) => [n, join(outdir, `${n}.mjs`)]));
}

const children = new Set<ChildProcess>();
let hooked = false;

/** Kills every child still running (SIGKILL: they hold nothing worth draining). */
export function killAll(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`benchmark crashed: ${err.stack ?? err.message}\n`);
    killAll();
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`benchmark crashed: ${(err as Error)?.stack ?? String(err)}\n`);
    killAll();
    process.exit(1);
  });
}

export interface Tracked {
  child: ChildProcess;
  /** Last stderr output (bounded), for error reports. */
  stderrTail(): string;
  /** Lines of stderr seen so far (counted, not kept). */
  stderrLines(): number;
}

function track(child: ChildProcess): Tracked {
  hook();
  children.add(child);
  child.once('exit', () => children.delete(child));
  let tail = '';
  let lines = 0;
  child.stderr?.on('data', (d: Buffer) => {
    const s = d.toString();
    for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) === 10) lines++;
    tail = (tail + s).slice(-4000);
  });
  child.stdout?.on('data', () => {});
  return { child, stderrTail: () => tail, stderrLines: () => lines };
}

/** Forks a Node module with IPC; stdout/stderr piped (stderr tail kept). */
export function forkTracked(modulePath: string, args: string[], execArgv: string[], env: NodeJS.ProcessEnv = process.env): Tracked {
  return track(fork(modulePath, args, { execArgv, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }));
}

/** Spawns any command; stdout/stderr piped (stderr tail kept). */
export function spawnTracked(cmd: string, args: string[], options: SpawnOptions = {}): Tracked {
  return track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options }));
}

/** Resolves with the first IPC message matching `pred`; rejects on timeout or exit. */
export function waitMessage<T>(t: Tracked, pred: (m: Record<string, unknown>) => boolean, timeoutMs: number, what: string): Promise<T> {
  const child = t.child;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; stderr: ${t.stderrTail().slice(-800)}`));
    }, timeoutMs);
    const onMessage = (m: unknown) => {
      if (m && typeof m === 'object' && pred(m as Record<string, unknown>)) {
        cleanup();
        resolve(m as T);
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(new Error(`process exited (${code ?? signal}) while waiting for ${what}; stderr: ${t.stderrTail().slice(-800)}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Asks a child to stop over IPC, then SIGKILLs it if it has not exited within `graceMs`. */
export async function stopChild(t: Tracked, message: unknown, graceMs = 3000): Promise<void> {
  const c = t.child;
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  try {
    if (message !== undefined && c.connected) c.send(message as never);
    else if (c.pid) process.kill(c.pid, 'SIGTERM');
  } catch {
    // fall through to the kill
  }
  const timer = setTimeout(() => {
    if (c.pid && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The soft limit on open files of this process (children inherit it). */
export function openFileLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
