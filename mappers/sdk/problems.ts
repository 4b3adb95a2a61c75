/**
 * @module
 * "Log once per problem": a mapper reads and reports on short cycles, so a device that is
 * unplugged, or an EdgeCore that is down, would otherwise write a line every cycle. A
 * problem (a key: device + what failed) is logged once when it starts; while it lasts, the
 * repeats are only counted — also when the error's wording changes (a device going away
 * fails with "timed out", then "connection refused", and may alternate) — and one line says
 * when it is over, with the count and the last error.
 */
import { errorCode, errorMessage } from '../../shared/errors/index.js';
import type { LogFields, Logger } from '../../shared/log/index.js';

export class Problems {
  private readonly active = new Map<string, { last: string; repeats: number }>();

  constructor(private readonly log: Logger) {}

  /** Logs `what: <error>` at warn unless problem `key` is already active. */
  report(key: string, what: string, err: unknown, fields: LogFields = {}): void {
    const current = this.active.get(key);
    if (current) {
      current.repeats++;
      current.last = errorMessage(err);
      return;
    }
    this.active.set(key, { last: errorMessage(err), repeats: 0 });
    this.log.warn(`${what}: ${errorMessage(err)}`, { ...fields, code: errorCode(err) });
  }

  /** Problem `key` is over: one info line if it was logged. */
  clear(key: string, what: string, fields: LogFields = {}): void {
    const current = this.active.get(key);
    if (!current) return;
    this.active.delete(key);
    this.log.info(what, { ...fields, repeats: current.repeats, lastError: current.last });
  }

  /** Forgets every problem whose key starts with `prefix` (a device that was removed), without logging. */
  forget(prefix: string): void {
    for (const k of this.active.keys()) if (k.startsWith(prefix)) this.active.delete(k);
  }

  has(key: string): boolean {
    return this.active.has(key);
  }
}
