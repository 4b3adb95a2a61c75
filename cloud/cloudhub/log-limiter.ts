/**
 * @module
 * Rate limit for repetitive log lines (rejected frames, throttling, refused handshakes):
 * per key, the first event of a window is logged at once, the rest of that window are
 * only counted, and one summary line reports the count when the window ends. A peer
 * that sends 20,000 bad frames thus costs two lines per window, not 20,000.
 */

interface Window {
  start: number;
  suppressed: number;
  timer: NodeJS.Timeout | undefined;
  summary: ((suppressed: number, elapsedMs: number) => void) | undefined;
}

export class LogLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(readonly windowMs: number) {}

  /**
   * Runs `emit` (which logs the line) if this is the first `key` event of a window;
   * otherwise counts it, and `summary` runs once when the window ends.
   */
  event(key: string, emit: () => void, summary: (suppressed: number, elapsedMs: number) => void): void {
    const now = Date.now();
    const w = this.windows.get(key);
    if (w && now - w.start < this.windowMs) {
      w.suppressed++;
      w.summary = summary;
      if (!w.timer) {
        w.timer = setTimeout(() => this.end(key), w.start + this.windowMs - now);
        w.timer.unref?.();
      }
      return;
    }
    if (w) this.end(key);
    this.windows.set(key, { start: now, suppressed: 0, timer: undefined, summary: undefined });
    emit();
  }

  private end(key: string): void {
    const w = this.windows.get(key);
    if (!w) return;
    this.windows.delete(key);
    if (w.timer) clearTimeout(w.timer);
    if (w.suppressed > 0) w.summary?.(w.suppressed, Math.min(this.windowMs, Math.max(0, Date.now() - w.start)));
  }

  /** Ends every window now, writing the pending summaries (the session closed). */
  close(): void {
    for (const key of [...this.windows.keys()]) this.end(key);
  }
}

/** "10 s", "1.5 s": a window length for summary lines. */
export function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}
