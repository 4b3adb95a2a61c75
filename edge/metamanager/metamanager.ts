/**
 * @module
 * MetaManager: applies what the cloud sends (insert/update/patch/delete of
 * resources) to the crash-safe {@link MetaStore}, answering only once the change is
 * durable, which is when EdgeHub ACKs it to the cloud. Queries are answered from
 * the store, so the node keeps working offline and after a reboot. A query for one object
 * the node does not hold goes to the cloud through EdgeHub (a `query` answered by a
 * `response`, docs/protocol.md) when the link is up, and the answer is stored like a
 * downstream insert, so it is there offline afterwards; with the link down it fails at
 * once with LEDGE_ERR_NOT_FOUND ("not held by this node and the cloud is unreachable").
 * The query runs in its resource's chain (below), so a delete of that resource arriving
 * meanwhile is applied after the answer, never before it.
 *
 * Messages for one resource are applied strictly in arrival order: a message waits
 * until the previous one for the same resource has been written (the store decides
 * "stale"/"duplicate" from what it holds, so deciding before an earlier write landed
 * would resurrect deleted objects). Different resources proceed concurrently, so
 * their fsyncs group-commit.
 */
import { Group, ModuleName, Operation, newMessage, parseResource, type ErrorContent, type Message } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import {
  ErrorCode,
  errorCode,
  errorContent,
  errorMessage,
  hasCode,
  InvalidMessageError,
  NoSuchModuleError,
  NotFoundError,
  StoreLimitError,
  TimeoutError,
  UnknownOperationError,
} from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import type { NodeProblem, ReportedCondition } from '../nodestatus/index.js';
import { MetaStore, type MetaStoreOptions, type StoredObject } from './store.js';
import { defaultMetaManagerOptions } from './options.js';

/** What MetaManager needs from its store (tests substitute a fake). */
export type EdgeStore = Pick<MetaStore, 'put' | 'delete' | 'get' | 'list' | 'size' | 'close' | 'health'> & Partial<Pick<MetaStore, 'limitState'>>;

/** A change MetaManager made durable (what the cloud sent, applied). */
export interface MetaChange {
  op: 'put' | 'delete';
  /** `namespace/type/name`. */
  resource: string;
  /** The stored object (put only). */
  value?: unknown;
  resourceVersion?: string;
}

/** See {@link MetaView.subscribe}. */
export type MetaListener = (change: MetaChange) => void | Promise<void>;

/**
 * Read access to what the node holds, for the modules that act on it (Edged, MetaServer):
 * the store's current objects, and each durable change as it lands. Empty until the store is open.
 */
export interface MetaView {
  /** True once the store is open (and its contents readable). */
  readonly ready: boolean;
  get(resource: string): StoredObject | undefined;
  /** Objects whose resource starts with `prefix` (e.g. `default/pod/`). */
  list(prefix?: string): StoredObject[];
  /** Every object of one type (e.g. `pod`), all namespaces. */
  listType(type: string): StoredObject[];
  /**
   * Calls `listener` synchronously after each applied change (not for duplicate or stale
   * deliveries). It is not called for what the store already holds: read that with `list*`.
   * A listener may return a promise: the change is answered (and so ACKed to the cloud) only
   * once it settles — Edged returns one for a pod's delete, so the cloud completes a graceful
   * deletion only after the pod stopped. The listener bounds its own time.
   * Returns the unsubscribe function. A listener that throws is logged, not retried.
   */
  subscribe(listener: MetaListener): () => void;
  /** Resolves once the store is open (at once if it is). */
  whenReady(): Promise<void>;
}

export interface MetaManagerOptions extends MetaStoreOptions {
  dataDir: string;
  /** Opens the store. Default: {@link MetaStore.open} in `dataDir`. */
  openStore?: (dataDir: string, log: Logger, options: MetaStoreOptions) => Promise<EdgeStore>;
  /** How long a query for an object the node does not hold waits for the cloud's answer, ms. Default 10000. */
  remoteQueryTimeoutMs?: number;
}

export class MetaManager implements Module {
  readonly name = ModuleName.MetaManager;
  readonly group = Group.Meta;
  private store: EdgeStore | undefined;
  /** Set while the store cannot be opened (the module is restarted with backoff meanwhile). */
  private openError: string | undefined;
  /** Tail of the chain of messages per resource (see the module doc). */
  private readonly chains = new Map<string, Promise<void>>();
  stats = { applied: 0, duplicate: 0, stale: 0 };
  private readonly listeners = new Set<MetaListener>();
  private readonly opened: { promise: Promise<void>; resolve: () => void };
  /** See {@link MetaView}. */
  readonly view: MetaView;

  constructor(
    private readonly options: MetaManagerOptions,
    private readonly log: Logger,
  ) {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.opened = { promise, resolve };
    const self = this;
    this.view = {
      get ready() {
        return self.store !== undefined;
      },
      get: (resource) => this.store?.get(resource),
      list: (prefix = '') => this.store?.list(prefix) ?? [],
      listType: (type) => {
        const infix = `/${type}/`;
        return (this.store?.list('') ?? []).filter((o) => {
          const i = o.resource.indexOf('/');
          return i >= 0 && o.resource.startsWith(infix, i);
        });
      },
      subscribe: (listener) => {
        this.listeners.add(listener);
        return () => this.listeners.delete(listener);
      },
      whenReady: () => this.opened.promise,
    };
  }

  /** Tells the listeners; resolves once the promises they returned settled. */
  private async emit(change: MetaChange): Promise<void> {
    const waits: Promise<void>[] = [];
    const failed = (err: unknown) => this.log.error(`listener of ${change.op} ${change.resource} failed: ${errorMessage(err)}`, { code: errorCode(err) });
    for (const l of this.listeners) {
      try {
        const r = l(change);
        if (r) waits.push(r.catch(failed));
      } catch (err) {
        failed(err);
      }
    }
    if (waits.length > 0) await Promise.all(waits);
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    const open = this.options.openStore ?? ((dir, log, opts) => MetaStore.open(dir, log, opts));
    try {
      this.store = await open(this.options.dataDir, this.log, this.options);
    } catch (err) {
      this.openError = errorMessage(err);
      throw err;
    }
    this.openError = undefined;
    this.log.info('metadata store opened', { objects: this.store.size });
    this.opened.resolve();
    try {
      for await (const msg of ctx.messages(signal)) {
        // Concurrent across resources (fsyncs group-commit), in order within one. EdgeHub orders
        // its reliable messages too, but not past a handle timeout nor for best-effort ones.
        const key = msg.route.resource;
        const prev = this.chains.get(key);
        const run = () => this.handle(ctx, msg).catch((err: unknown) => this.log.error(`${msg.route.operation} ${key} failed: ${errorMessage(err)}`, { code: errorCode(err) }));
        const p: Promise<void> = (prev ? prev.then(run) : run()).finally(() => {
          if (this.chains.get(key) === p) this.chains.delete(key);
        });
        this.chains.set(key, p);
      }
    } finally {
      await Promise.allSettled([...this.chains.values()]);
      await this.store.close();
    }
  }

  /**
   * Undefined while the store works; otherwise the problem the node status reports: the store
   * cannot be opened (`EdgeStoreUnavailable`) or its last write failed (`EdgeStoreUnwritable`,
   * until a write succeeds again; the cloud keeps resending what was not acknowledged).
   */
  health(): NodeProblem | undefined {
    if (this.openError !== undefined) return { reason: 'EdgeStoreUnavailable', message: `edge metadata store cannot be opened: ${this.openError}` };
    const h = this.store?.health();
    if (h && !h.writable) {
      return {
        reason: 'EdgeStoreUnwritable',
        message: `edge metadata store cannot write since ${new Date(h.since).toISOString()} (${h.code}): ${h.error}; changes from the cloud are not stored nor acknowledged`,
      };
    }
    return undefined;
  }

  private async handle(ctx: ModuleContext, msg: Message): Promise<void> {
    const store = this.store!;
    const { operation, resource } = msg.route;
    let reply: unknown = null;
    try {
      switch (operation) {
        case Operation.Insert:
        case Operation.Update:
        case Operation.Patch: {
          const r = await store.put(resource, msg.content, msg.header.resourceVersion, msg.header.id);
          this.stats[r]++;
          if (r === 'applied')
            await this.emit({ op: 'put', resource, value: msg.content, ...(msg.header.resourceVersion !== undefined ? { resourceVersion: msg.header.resourceVersion } : {}) });
          if (r !== 'applied') this.log.debug(`already had ${resource}@${msg.header.resourceVersion ?? '-'} (${r} delivery)`, { outcome: r });
          break;
        }
        case Operation.Delete: {
          const r = await store.delete(resource, msg.header.id);
          this.stats[r]++;
          if (r === 'applied') await this.emit({ op: 'delete', resource });
          break;
        }
        case Operation.Query:
          reply = await this.query(ctx, store, resource);
          break;
        case Operation.Response:
        case Operation.Ack:
          return;
        default:
          reply = errorContent(new UnknownOperationError(`metamanager does not handle ${operation}`)) satisfies ErrorContent;
      }
    } catch (err) {
      // A refusal at a store limit is logged by the store, once per crossing (a flood must not flood the log).
      if (!(err instanceof StoreLimitError)) this.log.error(`cannot store ${operation} ${resource}: ${errorMessage(err)}`, { code: errorCode(err) });
      reply = errorContent(err) satisfies ErrorContent;
    }
    if (msg.header.sync) await ctx.respond(msg, reply).catch(() => {});
  }

  /**
   * The EdgeStoreFull node condition: True while the store refuses new objects at a limit
   * (the node stays Ready: it keeps running what it holds), False otherwise, Unknown while
   * the store is not open.
   */
  storeCondition(): ReportedCondition {
    const type = 'EdgeStoreFull';
    if (!this.store) return { type, status: 'Unknown', reason: 'EdgeStoreNotOpen', message: 'edge metadata store is not open' };
    const l = this.store.limitState?.() ?? { refusing: false };
    if (l.refusing) return { type, status: 'True', reason: 'EdgeStoreLimitReached', message: `${l.message} (since ${new Date(l.since).toISOString()})` };
    return { type, status: 'False', reason: 'EdgeStoreHasRoom', message: 'edge metadata store accepts new objects' };
  }

  /** A query: held objects (or a collection, `ns/type/`) from the store; one object it lacks from the cloud. */
  private async query(ctx: ModuleContext, store: EdgeStore, resource: string): Promise<unknown> {
    if (resource.endsWith('/')) return store.list(resource);
    const held = store.get(resource);
    if (held) return held;
    const r = parseResource(resource);
    if (!r.name) return null;
    return this.remoteQuery(ctx, store, resource, r.namespace ?? 'default', r.name);
  }

  /**
   * Asks the cloud for an object the node does not hold. Answers the stored form
   * ({@link StoredObject}) or an error content: NotFound at once when the link is down, the
   * cloud's NotFound/Forbidden, or a timeout.
   */
  private async remoteQuery(ctx: ModuleContext, store: EdgeStore, resource: string, namespace: string, name: string): Promise<unknown> {
    const timeoutMs = this.options.remoteQueryTimeoutMs ?? defaultMetaManagerOptions.remoteQueryTimeoutMs;
    const q = newMessage({ source: this.name, group: Group.Meta, operation: Operation.Query, resource, content: null });
    let answer: unknown;
    try {
      answer = (await ctx.sendSync(ModuleName.EdgeHub, q, timeoutMs)).content;
    } catch (err) {
      if (err instanceof NoSuchModuleError) return errorContent(unreachable(resource));
      if (err instanceof TimeoutError) return errorContent(new TimeoutError(`${resource} is not held by this node and the cloud did not answer within ${timeoutMs} ms`));
      return errorContent(err);
    }
    if (isErrorContent(answer)) {
      if (hasCode(answer, ErrorCode.Disconnected)) return errorContent(unreachable(resource));
      this.log.debug(`cloud answered the query for ${resource} with ${answer.code}: ${answer.message}`);
      return answer;
    }
    // The answer must be the object asked for (a Kubernetes object of that name and namespace).
    const md = (answer as { metadata?: { name?: unknown; namespace?: unknown; resourceVersion?: unknown } } | null)?.metadata;
    const ns = typeof md?.namespace === 'string' && md.namespace !== '' ? md.namespace : 'default';
    if (!md || md.name !== name || ns !== namespace) {
      const err = new InvalidMessageError(`the cloud's answer to the query for ${resource} is not that object`);
      this.log.warn(err.message, { code: err.code });
      return errorContent(err);
    }
    const rv = typeof md.resourceVersion === 'string' ? md.resourceVersion : undefined;
    const stored: StoredObject = { resource, value: answer, ...(rv !== undefined ? { resourceVersion: rv } : {}) };
    try {
      // Stored like a downstream insert, without a message id (the query's is not one the cloud resends).
      const applied = await store.put(resource, answer, rv);
      if (applied === 'applied') await this.emit({ op: 'put', resource, value: answer, ...(rv !== undefined ? { resourceVersion: rv } : {}) });
    } catch (err) {
      // Answered anyway: the caller gets the object; only the offline copy is missing.
      if (!(err instanceof StoreLimitError)) this.log.warn(`the cloud's answer for ${resource} was not stored: ${errorMessage(err)}`, { code: errorCode(err) });
    }
    return stored;
  }
}

function unreachable(resource: string): NotFoundError {
  return new NotFoundError(`${resource} is not held by this node and the cloud is unreachable`);
}

/** An `{code, message}` error content, as opposed to a Kubernetes object (which has `metadata`). */
function isErrorContent(v: unknown): v is ErrorContent {
  if (typeof v !== 'object' || v === null || 'metadata' in v) return false;
  const o = v as { code?: unknown; message?: unknown };
  return typeof o.code === 'string' && typeof o.message === 'string';
}

export function createMetaManager(options: MetaManagerOptions, log: Logger): MetaManager {
  return new MetaManager(options, log);
}
