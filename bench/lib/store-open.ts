/**
 * @module
 * One recovery of the edge metadata store, in a fresh process (bundled by bench/edge-store.bench.ts
 * so no TypeScript loader sits in it): `node store-open.mjs <dataDir> <maxObjects> <maxLiveBytes>`
 * opens `<dataDir>/meta.log` with MetaStore.open and prints one JSON line: the open time, the
 * objects recovered, and the process's memory right after the open and after full GCs (when run
 * with --expose-gc), next to the same figures before the open.
 */
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import { MetaStore } from '../../edge/metamanager/store.js';
import { createLogger } from '../../shared/log/index.js';
import { readRss } from './rss.js';

const [dir, maxObjects, maxLiveBytes] = process.argv.slice(2);
if (!dir) throw new Error('usage: store-open <dataDir> [maxObjects] [maxLiveBytes]');
const gc = (globalThis as { gc?: () => void }).gc;
const settle = () => {
  for (let i = 0; i < 4; i++) gc?.();
};
const mem = () => {
  const m = process.memoryUsage();
  return { ...readRss('self'), heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
};
// The store module and its dependencies are loaded (imports above): "before" includes their code.
settle();
const before = mem();
const t0 = performance.now();
const store = await MetaStore.open(dir, createLogger({ level: 'warn', format: 'json' }), {
  ...(maxObjects ? { maxObjects: Number(maxObjects) } : {}),
  ...(maxLiveBytes ? { maxLiveBytes: Number(maxLiveBytes) } : {}),
});
const openMs = performance.now() - t0;
const afterOpen = mem();
settle();
const afterGc = mem();
// Where the heap is: V8's spaces after the GCs (used and committed).
const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((x) => [x.space_name, { used: x.space_used_size, committed: x.physical_space_size }]));
process.stdout.write(`${JSON.stringify({ openMs, objects: store.size, logBytes: store.footprint.logBytes, before, afterOpen, afterGc, spaces })}\n`);
await store.close();
