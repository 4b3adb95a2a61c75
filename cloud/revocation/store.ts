/**
 * @module
 * Writing the revocation ConfigMap (`ledge-revoked-nodes` in the CA's namespace, data
 * `<node>: <RFC 3339 time>`): what `ledge node revoke|unrevoke` and every CloudCore replica (a
 * deleted edge Node) do. Each write is read-modify-replace with the resourceVersion read, retried
 * on 409 Conflict, so concurrent writers (replicas seeing the same deletion, an operator) never
 * lose each other's entries. Entries this code cannot read are left as they are (never destroyed);
 * readable ones older than `pruneAfterMs` are dropped on each write.
 */
import { KubeApiError } from '../../shared/errors/index.js';
import { apiErrorText } from '../certauthority/api.js';
import { httpStatus, withSignal, type k8s } from '../kube/index.js';
import { formatRevokedAt, parseRevocations, type ParsedRevocations } from './decision.js';
import { resolveRevocationOptions, type RevocationOptions } from './options.js';

/** The calls of CoreV1Api the store makes (a fake in tests). */
export type RevocationApi = Pick<k8s.CoreV1Api, 'readNamespacedConfigMapWithHttpInfo' | 'createNamespacedConfigMap' | 'replaceNamespacedConfigMap'>;

/** Options of {@link createRevocationStore}; defaults in ./options.ts. */
export interface RevocationStoreOptions extends Partial<Pick<RevocationOptions, 'namespace' | 'configMapName' | 'apiTimeoutMs' | 'conflictAttempts' | 'pruneAfterMs'>> {
  core: RevocationApi;
  /** The clock (ms since the epoch), for pruning and when the API server sends no Date. Default Date.now. */
  now?: () => number;
}

/** What {@link RevocationStore.revoke} did. */
export interface RevokeResult {
  /** The node's revocation time now in the ConfigMap. */
  at: number;
  /** Its time before, if it was revoked. */
  previous?: number;
  /** False when `keepLater` found an equal or later time there and wrote nothing. */
  written: boolean;
  /** Entries dropped as older than `pruneAfterMs`. */
  pruned: string[];
}

export interface RevocationStore {
  /**
   * Revokes `node` before `at` (default: the API server's clock, its Date header when reading the
   * ConfigMap, else this machine's). `keepLater`: write nothing when the node is already revoked at
   * `at` or later (replicas recording one deletion; the latest time wins).
   */
  revoke(node: string, options?: { at?: number; keepLater?: boolean }): Promise<RevokeResult>;
  /** Removes `node`'s entry (readable or not); `previous` is its time when it was readable. */
  unrevoke(node: string): Promise<{ removed: boolean; previous?: number }>;
  /** The ConfigMap's revocations (none when it does not exist). */
  list(): Promise<ParsedRevocations>;
}

/** Creates the store. */
export function createRevocationStore(options: RevocationStoreOptions): RevocationStore {
  const o = { ...resolveRevocationOptions(options), core: options.core, now: options.now ?? Date.now };
  const { core, namespace, configMapName: name } = o;
  const where = `ConfigMap ${namespace}/${name}`;
  const call = () => withSignal(AbortSignal.timeout(o.apiTimeoutMs));

  /** The ConfigMap (undefined when missing) and the API server's clock when it answered. */
  async function read(): Promise<{ cm: k8s.V1ConfigMap | undefined; serverNow: number | undefined }> {
    try {
      const r = await core.readNamespacedConfigMapWithHttpInfo({ name, namespace }, call());
      return { cm: r.data, serverNow: dateHeader(r.headers) };
    } catch (err) {
      if (httpStatus(err) === 404) return { cm: undefined, serverNow: dateHeader((err as { headers?: unknown }).headers) };
      throw new KubeApiError(`cannot read ${where}: ${apiErrorText(err)}`, { cause: err });
    }
  }

  /**
   * Reads, lets `change` edit a copy of the data (returning false: nothing to write), and writes it
   * back with the resourceVersion read; again from the read on 409 (or 404: deleted meanwhile).
   */
  async function update(change: (data: Record<string, string>, serverNow: number | undefined) => boolean): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const { cm, serverNow } = await read();
      const data: Record<string, string> = { ...(cm?.data ?? {}) };
      if (!change(data, serverNow)) return;
      try {
        if (cm) {
          await core.replaceNamespacedConfigMap({ name, namespace, body: { ...cm, data } }, call());
        } else {
          const body: k8s.V1ConfigMap = {
            apiVersion: 'v1',
            kind: 'ConfigMap',
            metadata: {
              name,
              namespace,
              labels: { 'app.kubernetes.io/managed-by': 'ledge' },
              annotations: { 'ledge.io/description': 'edge nodes revoked before the given time (RFC 3339): their older certificates are refused (docs/security.md)' },
            },
            data,
          };
          await core.createNamespacedConfigMap({ namespace, body }, call());
        }
        return;
      } catch (err) {
        const status = httpStatus(err);
        // 409: another writer won (a stale resourceVersion, or a create racing a create); 404: deleted meanwhile.
        if ((status === 409 || status === 404) && attempt < o.conflictAttempts) continue;
        throw new KubeApiError(`cannot write ${where}: ${apiErrorText(err)}`, { cause: err });
      }
    }
  }

  /** Drops readable entries older than pruneAfterMs (not `keep`); returns their nodes. */
  function prune(data: Record<string, string>, keep: string): string[] {
    const horizon = o.now() - o.pruneAfterMs;
    const pruned: string[] = [];
    for (const [node, at] of parseRevocations(data).entries) {
      if (node !== keep && at < horizon) {
        delete data[node];
        pruned.push(node);
      }
    }
    return pruned;
  }

  return {
    async revoke(node, options = {}) {
      let result: RevokeResult | undefined;
      await update((data, serverNow) => {
        const at = options.at ?? serverNow ?? o.now();
        const previous = parseRevocations({ [node]: data[node] }).entries.get(node);
        if (options.keepLater && previous !== undefined && previous >= at) {
          result = { at: previous, previous, written: false, pruned: [] };
          return false;
        }
        data[node] = formatRevokedAt(at);
        result = { at, ...(previous !== undefined ? { previous } : {}), written: true, pruned: prune(data, node) };
        return true;
      });
      return result!;
    },
    async unrevoke(node) {
      let result: { removed: boolean; previous?: number } = { removed: false };
      await update((data) => {
        result = { removed: false };
        if (!Object.hasOwn(data, node)) return false;
        const previous = parseRevocations({ [node]: data[node] }).entries.get(node);
        result = { removed: true, ...(previous !== undefined ? { previous } : {}) };
        delete data[node];
        return true;
      });
      return result;
    },
    async list() {
      return parseRevocations((await read()).cm?.data);
    },
  };
}

/** The HTTP Date header of an answer (client-node gives headers as a record or a Headers), in ms; undefined when absent or unreadable. */
function dateHeader(headers: unknown): number | undefined {
  let value: unknown;
  if (headers && typeof (headers as { get?: unknown }).get === 'function') value = (headers as { get(k: string): unknown }).get('date');
  else if (headers && typeof headers === 'object') value = (headers as Record<string, unknown>).date ?? (headers as Record<string, unknown>).Date;
  const ms = typeof value === 'string' ? Date.parse(value) : Number.NaN;
  return Number.isFinite(ms) ? ms : undefined;
}
