/**
 * @module
 * Static pods: Pod manifests in `<data-dir>/manifests` (`*.yaml`, `*.yml`, `*.json`, several
 * documents per file allowed) that the node runs by itself, with or without the cloud, as a
 * kubelet runs its `staticPodPath`. Each is named `<name>-<node>` (the kubelet's rule, so two
 * nodes' static pods never clash), bound to this node, and given a uid derived from its source
 * file and content: an edited manifest is a new pod (the old one stops first), an unchanged one
 * keeps its uid across EdgeCore restarts. Edged asks the cloud for a mirror pod of each (the
 * annotation `kubernetes.io/config.mirror` = the config hash), so it appears in the API.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';

export const CONFIG_SOURCE_ANNOTATION = 'kubernetes.io/config.source';
export const CONFIG_HASH_ANNOTATION = 'kubernetes.io/config.hash';
export const CONFIG_MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

/** Largest manifest file read (bytes); a bigger one is refused with a log line. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

export interface StaticPod {
  pod: V1Pod;
  /** The config hash (also the uid). */
  hash: string;
  file: string;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/**
 * Reads the manifests directory. A file that cannot be read or parsed, or a document that is not
 * a Pod, is skipped with one warning (repeated only when the file changes); a missing directory
 * is no static pods.
 */
export async function readStaticPods(dir: string, nodeName: string, log: Logger, warned: Map<string, string>): Promise<StaticPod[]> {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /\.(ya?ml|json)$/.test(n) && !n.startsWith('.'));
  } catch {
    return [];
  }
  const out: StaticPod[] = [];
  const seen = new Set<string>();
  for (const n of names.sort()) {
    const file = join(dir, n);
    let text: string;
    try {
      const st = statSync(file);
      if (!st.isFile()) continue;
      if (st.size > MAX_MANIFEST_BYTES) throw new Error(`larger than ${MAX_MANIFEST_BYTES} bytes`);
      text = readFileSync(file, 'utf8');
    } catch (err) {
      warnOnce(log, warned, file, `${file}`, `static pod manifest ${file} skipped: ${errorMessage(err)}`);
      continue;
    }
    let docs: unknown[];
    try {
      docs = n.endsWith('.json') ? [JSON.parse(text) as unknown] : await parseYamlDocs(text);
    } catch (err) {
      warnOnce(log, warned, file, text, `static pod manifest ${file} skipped: ${errorMessage(err)}`);
      continue;
    }
    for (const [i, doc] of docs.entries()) {
      if (doc === null || doc === undefined) continue;
      const problem = checkPod(doc);
      if (problem) {
        warnOnce(log, warned, `${file}#${i}`, text, `static pod manifest ${file} (document ${i + 1}) skipped: ${problem}`);
        continue;
      }
      const src = doc as V1Pod;
      const name = `${src.metadata!.name}-${nodeName}`;
      const namespace = src.metadata?.namespace || 'default';
      if (seen.has(`${namespace}/${name}`)) {
        warnOnce(log, warned, `${file}#${i}`, text, `static pod manifest ${file}: pod ${namespace}/${name} is defined twice; the first one runs`);
        continue;
      }
      seen.add(`${namespace}/${name}`);
      const hash = createHash('sha256').update(file).update('\0').update(JSON.stringify(src)).digest('hex').slice(0, 32);
      const pod: V1Pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          ...src.metadata,
          name,
          namespace,
          uid: hash,
          annotations: { ...(src.metadata?.annotations ?? {}), [CONFIG_SOURCE_ANNOTATION]: 'file', [CONFIG_HASH_ANNOTATION]: hash },
        },
        spec: { ...src.spec!, nodeName },
      };
      warned.delete(`${file}#${i}`);
      out.push({ pod, hash, file });
    }
    warned.delete(file);
  }
  return out;
}

/** The mirror pod the API shows for a static pod. */
export function mirrorOf(s: StaticPod): V1Pod {
  const md = s.pod.metadata!;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: md.name!, namespace: md.namespace!, labels: md.labels ?? {}, annotations: { ...(md.annotations ?? {}), [CONFIG_MIRROR_ANNOTATION]: s.hash } },
    spec: s.pod.spec!,
  };
}

function checkPod(doc: unknown): string | undefined {
  if (typeof doc !== 'object' || Array.isArray(doc)) return 'not an object';
  const d = doc as V1Pod;
  if (d.kind !== 'Pod' || (d.apiVersion !== undefined && d.apiVersion !== 'v1')) return `kind ${d.apiVersion ?? '?'}/${d.kind ?? '?'} is not a v1 Pod`;
  const name = d.metadata?.name;
  if (typeof name !== 'string' || !DNS_SUBDOMAIN.test(name) || name.length > 200) return `metadata.name ${JSON.stringify(name)} is not a DNS subdomain`;
  if (!Array.isArray(d.spec?.containers) || d.spec.containers.length === 0) return 'spec.containers is empty';
  return undefined;
}

async function parseYamlDocs(text: string): Promise<unknown[]> {
  // Loaded on first use: a node without static pods never evaluates the YAML parser.
  const { parseAllDocuments } = await import('yaml');
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  return list.map((d) => {
    if (d.errors.length > 0) throw new Error(d.errors[0]!.message);
    // A bounded alias expansion: a "billion laughs" manifest is refused, not expanded.
    return d.toJS({ maxAliasCount: 100 }) as unknown;
  });
}

function warnOnce(log: Logger, warned: Map<string, string>, key: string, content: string, line: string): void {
  if (warned.get(key) === content) return;
  warned.set(key, content);
  log.warn(line);
}
