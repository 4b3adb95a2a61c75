/**
 * @module
 * Process plumbing shared by every entry point (`ledge cloud`, `ledge edge`,
 * `edgecore.js`): config from argv with `--help`, signal handling with a drain,
 * crash handlers, and an abortable sleep.
 */
import { inspect } from 'node:util';
import { formatHelp, loadConfigOrHelp, type ConfigOf, type ConfigSpec, type LoadedConfig } from '../config/index.js';
import { errorCode, errorMessage, TimeoutError } from '../errors/index.js';
import type { Logger } from '../log/index.js';

/**
 * How EdgeCore is shipped to run (deploy/systemd/edgecore.service repeats it; `ledge up` and the
 * benchmarks use this): what only the process's start can set. Measured in docs/benchmarks.md,
 * "Edge pods (issue 10)", idle EdgeCore next to bare Node:
 * - `MALLOC_TRIM_THRESHOLD_=131072`, glibc's default trim threshold, pinned. Unpinned, glibc raises
 *   it (and the mmap threshold) each time a large block is freed — reading the 0.9 MB bundle at
 *   start does it — and then keeps what V8's parser freed at start: −5.2 MiB RSS and RssAnon. Read
 *   by glibc once, at exec; other C libraries ignore it.
 * - `--max-semi-space-size=1`: the young generation does not stay grown after a large store replay.
 * - `--lite-mode`: V8 without its optimizing tiers and with lazily allocated feedback (EdgeCore
 *   runs interpreter-only by default anyway): −1.6 MiB RSS. It disables WebAssembly, which nothing
 *   in EdgeCore uses (`--no-expose-wasm` first says so, or V8 warns at start), and makes `--jit`
 *   ineffective (drop the flag to use `--jit`).
 */
export const EDGE_PROCESS = {
  env: { MALLOC_TRIM_THRESHOLD_: '131072' },
  nodeFlags: ['--max-semi-space-size=1', '--no-expose-wasm', '--lite-mode'],
} as const;

/**
 * Loads a command's config (typed by its spec). Prints help (exit 0) or one error line
 * (exit 2) and returns undefined when the command should not run. The caller logs
 * `warnings` (deprecated flags used) once it has a logger.
 */
export async function loadCommandConfig<const S extends ConfigSpec>(command: string, spec: S, usage: string, argv: string[]): Promise<LoadedConfig<ConfigOf<S>> | undefined> {
  try {
    const loaded = await loadConfigOrHelp(spec, { argv });
    if (loaded.help) {
      process.stdout.write(`${formatHelp(usage, spec)}\n`);
      return undefined;
    }
    return loaded;
  } catch (err) {
    process.stderr.write(`ledge ${command}: ${errorMessage(err)}\n`);
    process.exitCode = 2;
    return undefined;
  }
}

/**
 * Installs SIGTERM/SIGINT handlers now and returns a function that waits for the
 * signal, logs it and runs `stop`. Install before announcing readiness: a supervisor
 * (or test) that signals as soon as it reads "started" must not hit the default
 * action, which kills the process without draining.
 */
export function handleStopSignals(log: Logger): (stop: () => Promise<void>) => Promise<void> {
  const received = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  return async (stop) => {
    const sig = await received;
    log.info(`${sig} received; stopping`);
    try {
      await stop();
    } catch (err) {
      log.error(`stop failed: ${errorMessage(err)}`, { code: errorCode(err) });
    }
  };
}

export interface CrashHandlerOptions {
  /** How long the drain may take before the process exits anyway, ms. Default 3000. */
  drainTimeoutMs?: number;
  /** Exit code. Default 70 (EX_SOFTWARE: an internal error). */
  exitCode?: number;
}

export interface CrashHandlers {
  /** What to run, best effort, between the fatal line and the exit (e.g. `core.stop`). */
  setDrain(drain: () => Promise<void>): void;
}

/**
 * The crash policy, the same for an unhandled rejection and an uncaught exception (Node
 * itself crashes on both since v15): anything that escaped every module means the
 * process state is unknown, so it logs ONE fatal line (message, code, stack), runs the
 * drain best effort for at most `drainTimeoutMs` (closing sessions so peers reconnect
 * at once, releasing the leader lease), and exits with code 70; the supervisor restarts
 * it from the durable stores. A second fault during the drain exits at once.
 */
export function installCrashHandlers(log: Logger, options: CrashHandlerOptions = {}): CrashHandlers {
  const exitCode = options.exitCode ?? 70;
  const drainTimeoutMs = options.drainTimeoutMs ?? 3000;
  let drain: (() => Promise<void>) | undefined;
  let crashing = false;
  const fatal = (kind: string, reason: unknown) => {
    const stack = reason instanceof Error ? (reason.stack ?? reason.message) : inspect(reason, { depth: 3, breakLength: Infinity });
    if (crashing) {
      log.error(`${kind} while draining after a fatal error: ${errorMessage(reason)}; exiting now`, { code: errorCode(reason), stack, fatal: true });
      process.exit(exitCode);
    }
    crashing = true;
    process.exitCode = exitCode;
    log.error(`${kind}: ${errorMessage(reason)}; exiting`, { code: errorCode(reason), stack, fatal: true });
    if (!drain) process.exit(exitCode);
    const timer = setTimeout(() => {
      log.error(`drain did not finish within ${drainTimeoutMs} ms; exiting`, { code: TimeoutError.code });
      process.exit(exitCode);
    }, drainTimeoutMs);
    Promise.resolve()
      .then(drain)
      .catch((err: unknown) => log.error(`drain after a fatal error failed: ${errorMessage(err)}`, { code: errorCode(err) }))
      .finally(() => {
        clearTimeout(timer);
        process.exit(exitCode);
      });
  };
  process.on('unhandledRejection', (reason) => fatal('unhandled rejection', reason));
  process.on('uncaughtException', (err) => fatal('uncaught exception', err));
  return {
    setDrain(fn) {
      drain = fn;
    },
  };
}

/** Waits `ms`, or less if `signal` aborts first. Never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** What {@link startCommand} hands an entry point. */
export interface StartedCommand<C> {
  config: C;
  log: Logger;
  crash: CrashHandlers;
  /** Waits for SIGTERM/SIGINT, then runs `stop` (see {@link handleStopSignals}). */
  untilStopSignal: (stop: () => Promise<void>) => Promise<void>;
}

/**
 * The first steps of every command (`ledge cloud|edge|apiserver|up`, `edgecore.js`): its config
 * (or `--help`, or one error line and exit 2: then undefined), a logger built from it, the
 * deprecation warnings logged, then crash and stop-signal handlers — installed before the command
 * can announce anything, since a supervisor may signal as soon as it reads "started".
 */
export async function startCommand<const S extends ConfigSpec>(
  command: string,
  spec: S,
  usage: string,
  argv: string[],
  makeLog: (config: ConfigOf<S>) => Logger,
): Promise<StartedCommand<ConfigOf<S>> | undefined> {
  const loaded = await loadCommandConfig(command, spec, usage, argv);
  if (!loaded) return undefined;
  const log = makeLog(loaded.config);
  for (const w of loaded.warnings) log.warn(w);
  const crash = installCrashHandlers(log);
  const untilStopSignal = handleStopSignals(log);
  return { config: loaded.config, log, crash, untilStopSignal };
}
