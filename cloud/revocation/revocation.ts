/**
 * @module
 * NodeRevocation: which nodes are revoked, as every CloudCore replica knows it (issue 13).
 *
 * - **Source of truth**: ConfigMap `ledge-revoked-nodes` in the CA's namespace, data
 *   `<node>: <RFC 3339 T>` ("revoked before T"), watched by an informer on that one object.
 *   `ledge node revoke` writes it; every replica sees the change and closes the node's live
 *   session at once (through {@link NodeRevocation.onRevoked}, wired to CloudHub).
 * - **Deleting an edge Node** (label node-role.kubernetes.io/edge) revokes it at the moment this
 *   replica sees the deletion (its clock: the clock the replica issues certificates with). Each
 *   replica watches (the EdgeController's Node informer, handed over by `attach`), so each closes
 *   its session at once; each also records the deletion in the ConfigMap (the latest time wins,
 *   409s retried, failures retried with backoff) so a replica started later knows it too. Until
 *   the ConfigMap holds it, the deletion counts from memory. A Node losing only its edge label
 *   (the watch reports it as deleted) is not revoked.
 * - **Fail closed while starting**: until the ConfigMap was listed once, {@link NodeRevocation.loaded}
 *   is false and every certificate is refused (CloudHub answers 503 and the node retries), so a
 *   revoked node cannot slip in while a replica starts. Afterwards the last state read is kept
 *   while the watch is down.
 * - The decision (./decision.ts): a certificate is refused when it was issued before the node's T.
 *   Plain ws:// (no certificates) has no revocation: nothing identifies a node there.
 */
import type { X509Certificate } from 'node:crypto';
import { ErrorCode, errorCode, errorMessage } from '../../shared/errors/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { EDGE_ROLE_LABEL } from '../edgecontroller/index.js';
import { kube, listRaw, watchResource, type k8s, type WatchedResource } from '../kube/index.js';
import { certificateTimes, formatRevokedAt, parseRevocations, revocationRefusal, type CertificateTimes } from './decision.js';
import { resolveRevocationOptions, type RevocationOptions } from './options.js';
import { createRevocationStore, type RevocationStore } from './store.js';

/** What NodeRevocation needs besides its options. */
export interface NodeRevocationDeps {
  log: Logger;
  /** The Kubernetes API (the ConfigMap's informer, and the store's default). Without it revocations come only from {@link NodeRevocation.applyConfigMap} and deletions, and `loaded()` is true at once. */
  kc?: k8s.KubeConfig;
  /** Where deletions are recorded. Default: the ConfigMap through `kc` (none without it). */
  store?: RevocationStore;
  /** The clock (ms since the epoch): the time of a deletion. Default Date.now. */
  now?: () => number;
}

/** The EdgeController's edge-Node informer, handed over once synced (its `informerObservers`). */
export interface EdgeNodeInformers {
  nodes: WatchedResource<k8s.V1Node>;
}

/** A certificate as NodeRevocation reads it: node's X509Certificate, or its times. */
export type RevocationSubject = Pick<X509Certificate, 'validFrom' | 'validTo'> | CertificateTimes;

/** A ConfigMap time this far ahead of the replica's clock is logged as a likely clock problem. */
const FUTURE_WARNING_MS = 60_000;

export class NodeRevocation implements Module {
  readonly name = 'revocation';
  readonly group = 'revocation';
  readonly options: RevocationOptions;
  private readonly log: Logger;
  private readonly kc: k8s.KubeConfig | undefined;
  private readonly store: RevocationStore | undefined;
  private readonly now: () => number;
  private readonly where: string;
  /** node → T, as the ConfigMap says. */
  private fromConfigMap = new Map<string, number>();
  /** node → T of deletions seen here, until the ConfigMap holds them (or a later time). */
  private readonly deleted = new Map<string, number>();
  /** Deletions not written to the ConfigMap yet. */
  private readonly unwritten = new Set<string>();
  private readonly listeners: ((nodes: string[]) => void)[] = [];
  private isLoaded: boolean;
  private lastProblems = '';
  private running = false;
  private writing = false;
  private writeTimer: NodeJS.Timeout | undefined;
  private retryDelayMs: number;
  private failingSince: number | undefined;

  constructor(options: Partial<RevocationOptions>, deps: NodeRevocationDeps) {
    this.options = resolveRevocationOptions(options);
    this.log = deps.log;
    this.kc = deps.kc;
    this.now = deps.now ?? Date.now;
    this.store =
      deps.store ??
      (deps.kc
        ? createRevocationStore({
            core: deps.kc.makeApiClient(kube().CoreV1Api),
            namespace: this.options.namespace,
            configMapName: this.options.configMapName,
            apiTimeoutMs: this.options.apiTimeoutMs,
            conflictAttempts: this.options.conflictAttempts,
            pruneAfterMs: this.options.pruneAfterMs,
            now: this.now,
          })
        : undefined);
    this.where = `ConfigMap ${this.options.namespace}/${this.options.configMapName}`;
    this.isLoaded = !deps.kc;
    this.retryDelayMs = this.options.retryMs;
  }

  /** Whether the revocations were read (the ConfigMap listed once). Until then every certificate is refused. */
  loaded(): boolean {
    return this.isLoaded;
  }

  /** When `node` was revoked (ms since the epoch), undefined when it is not. */
  revokedAt(node: string): number | undefined {
    const a = this.fromConfigMap.get(node);
    const b = this.deleted.get(node);
    return a === undefined ? b : b === undefined ? a : Math.max(a, b);
  }

  /** The revoked nodes and their times. */
  revoked(): Map<string, number> {
    const all = new Map(this.fromConfigMap);
    for (const node of this.deleted.keys()) all.set(node, this.revokedAt(node)!);
    return all;
  }

  /**
   * Why `cert` (verified, naming `node`) is refused, or undefined when it is accepted: the node is
   * revoked and the certificate was issued before (./decision.ts). Before the revocations are
   * loaded every certificate is refused (fail closed).
   */
  refusal(node: string, cert: RevocationSubject): string | undefined {
    if (!this.isLoaded) return `CloudCore has not loaded the node revocations (${this.where}) yet; try again`;
    return revocationRefusal(node, this.revokedAt(node), 'notBeforeMs' in cert ? cert : certificateTimes(cert), this.options);
  }

  /** Whether `cert` of `node` is refused ({@link refusal}); the check of POST /v1/renew. */
  isRevoked(node: string, cert: RevocationSubject): boolean {
    return this.refusal(node, cert) !== undefined;
  }

  /** Calls `listener` with the nodes revoked (or revoked later than before) as that becomes known here: close their sessions. */
  onRevoked(listener: (nodes: string[]) => void): void {
    this.listeners.push(listener);
  }

  /** The EdgeController's informerObservers hook: deleted edge Nodes revoke their nodes (again after it restarted). */
  attach(informers: EdgeNodeInformers): void {
    informers.nodes.on('delete', (node) => {
      const name = node.metadata?.name;
      // A label-selector watch reports a Node that lost the edge label as deleted, with the label gone: not a deletion.
      if (!name || node.metadata?.labels?.[EDGE_ROLE_LABEL] === undefined) return;
      this.nodeDeleted(name);
    });
  }

  /** An edge Node was deleted: the node is revoked at `at` (default now), its sessions closed, the ConfigMap told. Public for tests. */
  nodeDeleted(node: string, at = this.now()): void {
    const current = this.revokedAt(node);
    if (current !== undefined && current >= at) return;
    this.deleted.set(node, at);
    this.unwritten.add(node);
    this.log.info(`edge Node ${node} deleted: node revoked at ${formatRevokedAt(at)}; its session is closed and its certificates issued before then are refused`, {
      node,
    });
    this.notify([node]);
    this.scheduleWrite(0);
  }

  /**
   * Takes the ConfigMap's state (undefined: it was deleted). Unreadable entries are logged (once
   * per distinct set) and left out; nodes revoked anew, or later than before, are announced.
   * Public for tests; the informer calls it.
   */
  applyConfigMap(cm: k8s.V1ConfigMap | undefined): void {
    const { entries, problems } = parseRevocations(cm?.data);
    const shown = problems.slice(0, 10).join('; ') + (problems.length > 10 ? `; and ${problems.length - 10} more` : '');
    if (shown !== this.lastProblems) {
      this.lastProblems = shown;
      if (shown) this.log.warn(`${this.where}: ${problems.length} entr${problems.length === 1 ? 'y' : 'ies'} left out: ${shown}`, { code: ErrorCode.RevocationList });
    }
    const before = this.fromConfigMap;
    this.fromConfigMap = entries;
    const now = this.now();
    const changed: string[] = [];
    for (const [node, at] of entries) {
      const old = before.get(node);
      if (old !== undefined && at <= old) continue;
      changed.push(node);
      if (at > now + FUTURE_WARNING_MS) {
        this.log.warn(
          `${this.where}: node ${node} is revoked at ${formatRevokedAt(at)}, ${Math.round((at - now) / 1000)} s ahead of this replica's clock: until then even a re-joined node's certificates are refused (clocks out of step?)`,
          { code: ErrorCode.RevocationList, node },
        );
      }
    }
    for (const node of before.keys()) if (!entries.has(node)) this.log.info(`node ${node} is no longer revoked (${this.where})`, { node });
    // Deletions the ConfigMap now holds (or holds later ones of) count from it from now on, so an unrevoke removes them too.
    for (const [node, at] of this.deleted) {
      const written = entries.get(node);
      if (written !== undefined && written >= at) {
        this.deleted.delete(node);
        this.unwritten.delete(node);
      }
    }
    if (changed.length) {
      const list = changed.length <= 10 ? changed.join(', ') : `${changed.slice(0, 10).join(', ')} and ${changed.length - 10} more`;
      this.log.info(`${this.where}: ${changed.length} node${changed.length === 1 ? '' : 's'} revoked: ${list}`);
      this.notify(changed);
    }
  }

  private notify(nodes: string[]): void {
    for (const l of this.listeners) {
      try {
        l(nodes);
      } catch (err) {
        this.log.error(`revocation listener failed: ${errorMessage(err)}`, { code: errorCode(err) });
      }
    }
  }

  async start(_ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    this.running = true;
    const watched = this.kc ? this.watchConfigMap(this.kc) : undefined;
    this.scheduleWrite(0);
    try {
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      this.running = false;
      clearTimeout(this.writeTimer);
      this.writeTimer = undefined;
      await watched?.stop();
    }
  }

  /** An informer on the one ConfigMap (field selector metadata.name). */
  private watchConfigMap(kc: k8s.KubeConfig): WatchedResource<k8s.V1ConfigMap> {
    const base = `/api/v1/namespaces/${encodeURIComponent(this.options.namespace)}/configmaps`;
    const fieldSelector = `metadata.name=${this.options.configMapName}`;
    // client-node's watch keeps a query in the path and adds its own parameters to it.
    const w = watchResource<k8s.V1ConfigMap>(kc, `${base}?fieldSelector=${encodeURIComponent(fieldSelector)}`, this.log, {
      restartDelayMs: this.options.watchRestartMs,
      list: async () => {
        const listed = await listRaw<k8s.V1ConfigMap>(kc, base, { fieldSelector });
        // After the informer applied the list (it does so right after this resolves).
        setImmediate(() => this.markLoaded());
        return listed;
      },
    });
    const seen = (cm: k8s.V1ConfigMap) => {
      if (cm.metadata?.name === this.options.configMapName) this.applyConfigMap(cm);
    };
    w.on('add', seen);
    w.on('update', seen);
    w.on('delete', (cm) => {
      if (cm.metadata?.name === this.options.configMapName) this.applyConfigMap(undefined);
    });
    return w;
  }

  /** The first list succeeded: the revocations are known; sessions accepted before (none: fail closed) are checked against them. */
  private markLoaded(): void {
    if (this.isLoaded || !this.running) return;
    this.isLoaded = true;
    const all = [...this.revoked().keys()];
    this.log.info(`node revocations loaded: ${all.length} revoked (${this.where})`);
    if (all.length) this.notify(all);
  }

  private scheduleWrite(delayMs: number): void {
    if (!this.store || !this.running || this.writing || this.writeTimer || this.unwritten.size === 0) return;
    this.writeTimer = setTimeout(() => {
      this.writeTimer = undefined;
      void this.writeDeletions();
    }, delayMs);
    this.writeTimer.unref?.();
  }

  /** Records the deletions seen here in the ConfigMap; on failure tries again with backoff (one warning per streak). */
  private async writeDeletions(): Promise<void> {
    this.writing = true;
    let failed = false;
    try {
      for (const node of [...this.unwritten]) {
        const at = this.deleted.get(node);
        if (at !== undefined) await this.store!.revoke(node, { at, keepLater: true });
        this.unwritten.delete(node);
      }
      if (this.failingSince !== undefined) this.log.info(`node revocations recorded in ${this.where} again`);
      this.failingSince = undefined;
      this.retryDelayMs = this.options.retryMs;
    } catch (err) {
      failed = true;
      if (this.failingSince === undefined) {
        this.failingSince = this.now();
        this.log.warn(
          `cannot record node revocations in ${this.where}: ${errorMessage(err)}; they hold on this replica meanwhile, retrying (every ≤ ${this.options.maxRetryMs / 1000} s)`,
          { code: ErrorCode.RevocationList, pending: this.unwritten.size },
        );
      }
    } finally {
      this.writing = false;
    }
    if (failed) {
      const delay = this.retryDelayMs;
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, this.options.maxRetryMs);
      this.scheduleWrite(delay);
    } else {
      this.scheduleWrite(0); // deletions seen while writing
    }
  }
}
