/**
 * @module
 * Log lines for bad input that never flood the log: one line per device per distinct problem
 * (then at most one per window, saying how many were suppressed), a bounded memory of the
 * problems seen, and a ceiling on problem lines a minute over all devices (a flood of messages
 * naming random devices would otherwise be one line per message), past which one summary line a
 * minute counts what was suppressed.
 */
import type { LogFields, Logger } from '../../shared/log/index.js';
import { PROBLEM_LINES_PER_MINUTE, PROBLEM_LOG_WINDOW_MS } from './options.js';

/** Problems remembered; the oldest is forgotten past this (it may then be logged again). */
const MAX_REMEMBERED = 4096;
const MINUTE = 60_000;

export class ProblemLog {
  private readonly seen = new Map<string, { at: number; suppressed: number }>();
  private minute = { start: 0, lines: 0, suppressed: 0 };

  constructor(
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly windowMs = PROBLEM_LOG_WINDOW_MS,
    private readonly linesPerMinute = PROBLEM_LINES_PER_MINUTE,
  ) {}

  /** Logs `message` (warn) unless problem `key` was logged within the window. Returns whether it logged. */
  warn(key: string, message: string, fields: LogFields): boolean {
    const now = this.now();
    const prev = this.seen.get(key);
    if (prev && now - prev.at < this.windowMs) {
      prev.suppressed++;
      return false;
    }
    if (now - this.minute.start >= MINUTE) {
      if (this.minute.suppressed > 0)
        this.log.warn(`${this.minute.suppressed} more device problems were not logged in the last minute (over ${this.linesPerMinute} lines a minute)`, { code: fields.code });
      this.minute = { start: now, lines: 0, suppressed: 0 };
    }
    if (this.minute.lines >= this.linesPerMinute) {
      this.minute.suppressed++;
      return false;
    }
    this.minute.lines++;
    const more = prev?.suppressed ? ` (${prev.suppressed} more since the last line)` : '';
    this.log.warn(`${message}${more}`, fields);
    this.seen.delete(key);
    this.seen.set(key, { at: now, suppressed: 0 });
    if (this.seen.size > MAX_REMEMBERED) this.seen.delete(this.seen.keys().next().value as string);
    return true;
  }
}
