/**
 * @module
 * Reads V8 heap snapshots (`.heapsnapshot`, as `--heapsnapshot-signal` writes them) for the memory
 * benchmarks' diagnostics: the live heap's total self size, and what grew between two snapshots,
 * grouped by constructor name (objects, closures) or node type (code, strings, arrays…). A
 * snapshot is taken after a full GC, so its total is the live heap, unlike RSS.
 */
import { readFileSync } from 'node:fs';

export interface HeapSummary {
  totalBytes: number;
  nodes: number;
  byName: Map<string, { count: number; bytes: number }>;
}

interface SnapshotJson {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

export function summarizeHeapSnapshot(file: string): HeapSummary {
  const s = JSON.parse(readFileSync(file, 'utf8')) as SnapshotJson;
  const fields = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const stride = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const byName = new Map<string, { count: number; bytes: number }>();
  let totalBytes = 0;
  for (let i = 0; i < s.nodes.length; i += stride) {
    const type = types[s.nodes[i + iType]!] ?? 'unknown';
    const name = type === 'object' || type === 'closure' ? (s.strings[s.nodes[i + iName]!] ?? '?') || '(anonymous)' : `(${type})`;
    const bytes = s.nodes[i + iSize]!;
    totalBytes += bytes;
    const e = byName.get(name) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += bytes;
    byName.set(name, e);
  }
  return { totalBytes, nodes: s.nodes.length / stride, byName };
}

/** The `top` groups whose size changed most from `a` to `b` (bytes and counts, b − a). */
export function diffHeapSummaries(a: HeapSummary, b: HeapSummary, top = 12): { name: string; bytes: number; count: number }[] {
  const names = new Set([...a.byName.keys(), ...b.byName.keys()]);
  return [...names]
    .map((name) => ({
      name,
      bytes: (b.byName.get(name)?.bytes ?? 0) - (a.byName.get(name)?.bytes ?? 0),
      count: (b.byName.get(name)?.count ?? 0) - (a.byName.get(name)?.count ?? 0),
    }))
    .sort((x, y) => Math.abs(y.bytes) - Math.abs(x.bytes))
    .slice(0, top);
}
