/**
 * @module
 * Process plumbing shared by every entry point (`ledge cloud`, `ledge edge`,
 * `edgecore.js`): config from argv with `--help`, signal handling with a drain,
 * crash handlers, and an abortable sleep.
 */
import { formatHelp, loadConfig, type ConfigSpec } from '../config/index.js';
import { errorCode, errorMessage } from '../errors/index.js';
import type { Logger } from '../log/index.js';

/**
 * Loads a command's config. Prints help (exit 0) or one error line (exit 2) and
 * returns undefined when the command should not run.
 */
export async function loadCommandConfig<T>(command: string, spec: ConfigSpec, usage: string, argv: string[]): Promise<T | undefined> {
  try {
    const loaded = await loadConfig<T>(spec, { argv });
    if (loaded.help) {
      process.stdout.write(formatHelp(usage, spec) + '\n');
      return undefined;
    }
    return loaded.config;
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

/** One clear line for anything that escaped a module, instead of a silent half-alive process. */
export function installCrashHandlers(log: Logger): void {
  process.on('unhandledRejection', (reason) => {
    log.error(`unhandled rejection: ${errorMessage(reason)}`, { code: errorCode(reason) });
  });
  process.on('uncaughtException', (err) => {
    log.error(`uncaught exception: ${err.stack ?? err.message}`, { code: errorCode(err) });
    // State may be corrupt: exit and let the supervisor restart from the durable stores.
    process.exit(70);
  });
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
