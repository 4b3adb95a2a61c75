/**
 * Test helpers for real child processes: spawn, wait for a log line, kill -9, stop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const edgecoreBundle = `${repoRoot}dist/edgecore.js`;

export interface Proc {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves when a line matching `re` appears (searching output so far too). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill9(): Promise<void>;
  stop(): Promise<number | null>;
  exited: Promise<number | null>;
}

/** Spawns `command` (default: this Node) with `args` in `cwd`; an emulator can be the command (test/arm). */
export function startProcess(args: string[], env: NodeJS.ProcessEnv = {}, name = 'proc', command = process.execPath, cwd = repoRoot): Proc {
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, LEDGE_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    if (process.env.LEDGE_TEST_VERBOSE) process.stderr.write(`[${name}] ${d}`);
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    exited,
    output: () => out,
    waitFor(re, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(re);
          if (m) {
            cleanup();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${name}: timed out waiting for ${re}; output:\n${out.slice(-3000)}`));
        }, timeoutMs);
        const onExit = () => {
          check();
          cleanup();
          reject(new Error(`${name}: exited while waiting for ${re}; output:\n${out.slice(-3000)}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('exit', onExit);
        };
        listeners.add(check);
        child.once('exit', onExit);
        check();
      });
    },
    async kill9() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Starts the bundled EdgeCore (dist/edgecore.js), as a device would run it. */
export function startEdge(args: string[], env: NodeJS.ProcessEnv = {}, name = 'edge'): Proc {
  if (!existsSync(edgecoreBundle)) throw new Error('dist/edgecore.js is missing: run "npm run build" (npm test does it first)');
  return startProcess([edgecoreBundle, ...args], env, name);
}

/** Polls `check` until it returns a truthy value. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 20_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `p`'s outcome, or a rejection naming `what` once `timeoutMs` passed: a wait that cannot hang the suite. */
export async function within<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs)));
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The exit code of `p`, waited for at most `timeoutMs`; a process still running then is killed and the wait fails. */
export async function exitCode(p: Proc, timeoutMs = 20_000, what = 'the process to exit'): Promise<number | null> {
  try {
    return await within(p.exited, timeoutMs, what);
  } catch (err) {
    p.child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}; output:\n${p.output().slice(-3000)}`);
  }
}
