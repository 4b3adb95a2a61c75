/**
 * @module
 * Memory of a process as Linux accounts it, read from /proc/PID/status: VmRSS (all
 * resident pages), RssAnon (resident anonymous pages: heap, stacks, malloc arenas —
 * what the process itself allocated) and RssFile (mapped files: the node binary and
 * shared libraries, largely shared with other processes). Values in bytes.
 */
import { readFileSync } from 'node:fs';

export interface RssSample {
  rss: number;
  rssAnon: number;
  rssFile: number;
}

function field(status: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** One sample; throws if the process is gone. */
export function readRss(pid: number | 'self' = 'self'): RssSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: field(status, 'VmRSS'), rssAnon: field(status, 'RssAnon'), rssFile: field(status, 'RssFile') };
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile of sorted values (p in 0..100). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

/** Least-squares slope of y over x (NaN for fewer than 2 points or no spread in x). */
export function slope(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

/** Several samples `intervalMs` apart, reduced to their medians. */
export async function sampleRss(pid: number | 'self', count: number, intervalMs: number): Promise<RssSample & { samples: RssSample[] }> {
  const samples: RssSample[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, intervalMs));
    samples.push(readRss(pid));
  }
  return {
    rss: median(samples.map((s) => s.rss)),
    rssAnon: median(samples.map((s) => s.rssAnon)),
    rssFile: median(samples.map((s) => s.rssFile)),
    samples,
  };
}

export const MiB = 1024 * 1024;
export const fmtMiB = (bytes: number): string => (bytes / MiB).toFixed(1);
export const fmtKiB = (bytes: number): string => (bytes / 1024).toFixed(1);

/** User + system CPU time of a process in ms, from /proc/PID/stat (clock ticks of 10 ms). */
export function readCpuMs(pid: number | 'self' = 'self'): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  return (Number(rest[11]) + Number(rest[12])) * 10;
}
