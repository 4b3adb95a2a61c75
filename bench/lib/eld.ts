/**
 * @module
 * Event-loop delay of the process it runs in, for benchmarks: `perf_hooks.monitorEventLoopDelay`
 * at 10 ms resolution, read and reset by a parent over IPC (`{ cmd: 'eld' }` → an
 * {@link EldReply}, `{ cmd: 'eld-reset' }`). Figures in milliseconds.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readRss } from './rss.js';

export interface EldReply {
  type: 'eld';
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  rss: number;
  rssAnon: number;
}

/** Starts the monitor; returns an IPC message handler for the two commands (true when handled). */
export function eventLoopDelayProbe(): (m: { cmd?: string }) => boolean {
  const RESOLUTION_MS = 10;
  const h = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  h.enable();
  return (m) => {
    if (m.cmd === 'eld-reset') {
      h.reset();
      process.send?.({ type: 'eld-reset' });
      return true;
    }
    if (m.cmd === 'eld') {
      const ms = (ns: number) => +Math.max(0, ns / 1e6 - RESOLUTION_MS).toFixed(1);
      const r = readRss('self');
      const reply: EldReply = { type: 'eld', p50Ms: ms(h.percentile(50)), p99Ms: ms(h.percentile(99)), maxMs: ms(h.max), meanMs: ms(h.mean), rss: r.rss, rssAnon: r.rssAnon };
      process.send?.(reply);
      return true;
    }
    return false;
  };
}
