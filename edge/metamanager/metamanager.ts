/**
 * @module
 * MetaManager: applies what the cloud sends (insert/update/patch/delete of
 * resources) to the crash-safe {@link MetaStore}, answering only once the change is
 * durable, which is when EdgeHub ACKs it to the cloud. Queries are answered from
 * the store, so the node keeps working offline and after a reboot.
 *
 * Messages for one resource are applied strictly in arrival order: a message waits
 * until the previous one for the same resource has been written (the store decides
 * "stale"/"duplicate" from what it holds, so deciding before an earlier write landed
 * would resurrect deleted objects). Different resources proceed concurrently, so
 * their fsyncs group-commit.
 */
import { Group, ModuleName, Operation, type ErrorContent, type Message } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import { errorCode, errorContent, errorMessage, UnknownOperationError } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import type { NodeProblem } from '../nodestatus/index.js';
import { MetaStore, type MetaStoreOptions } from './store.js';

/** What MetaManager needs from its store (tests substitute a fake). */
export type EdgeStore = Pick<MetaStore, 'put' | 'delete' | 'get' | 'list' | 'size' | 'close' | 'health'>;

export interface MetaManagerOptions extends MetaStoreOptions {
  dataDir: string;
  /** Opens the store. Default: {@link MetaStore.open} in `dataDir`. */
  openStore?: (dataDir: string, log: Logger, options: MetaStoreOptions) => Promise<EdgeStore>;
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

  constructor(
    private readonly options: MetaManagerOptions,
    private readonly log: Logger,
  ) {}

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
          if (r !== 'applied') this.log.debug(`already had ${resource}@${msg.header.resourceVersion ?? '-'} (${r} delivery)`, { outcome: r });
          break;
        }
        case Operation.Delete: {
          const r = await store.delete(resource, msg.header.id);
          this.stats[r]++;
          break;
        }
        case Operation.Query:
          reply = resource.endsWith('/') ? store.list(resource) : (store.get(resource) ?? null);
          break;
        case Operation.Response:
        case Operation.Ack:
          return;
        default:
          reply = errorContent(new UnknownOperationError(`metamanager does not handle ${operation}`)) satisfies ErrorContent;
      }
    } catch (err) {
      this.log.error(`cannot store ${operation} ${resource}: ${errorMessage(err)}`, { code: errorCode(err) });
      reply = errorContent(err) satisfies ErrorContent;
    }
    if (msg.header.sync) await ctx.respond(msg, reply).catch(() => {});
  }
}

export function createMetaManager(options: MetaManagerOptions, log: Logger): MetaManager {
  return new MetaManager(options, log);
}
