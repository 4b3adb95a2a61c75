/**
 * @module
 * MetaManager: applies what the cloud sends (insert/update/patch/delete of
 * resources) to the crash-safe {@link MetaStore}, answering only once the change is
 * durable, which is when EdgeHub ACKs it to the cloud. Queries are answered from
 * the store, so the node keeps working offline and after a reboot.
 */
import { Group, ModuleName, Operation, type ErrorContent, type Message } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import { errorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { MetaStore, type MetaStoreOptions } from './store.js';

export interface MetaManagerOptions extends MetaStoreOptions {
  dataDir: string;
}

export class MetaManager implements Module {
  readonly name = ModuleName.MetaManager;
  readonly group = Group.Meta;
  private store: MetaStore | undefined;
  stats = { applied: 0, duplicate: 0, stale: 0 };

  constructor(private readonly options: MetaManagerOptions, private readonly log: Logger) {}

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    this.store = await MetaStore.open(this.options.dataDir, this.log, this.options);
    this.log.info('metadata store opened', { objects: this.store.size });
    const inflight = new Set<Promise<void>>();
    try {
      for await (const msg of ctx.messages(signal)) {
        // Handled concurrently so fsyncs group-commit; EdgeHub already orders per resource.
        const p = this.handle(ctx, msg).finally(() => inflight.delete(p));
        inflight.add(p);
      }
    } finally {
      await Promise.allSettled([...inflight]);
      await this.store.close();
    }
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
          reply = { code: 'LEDGE_ERR_UNKNOWN_OPERATION', message: `metamanager does not handle ${operation}` } satisfies ErrorContent;
      }
    } catch (err) {
      this.log.error(`cannot store ${operation} ${resource}: ${errorMessage(err)}`, { code: errorCode(err) });
      reply = { code: errorCode(err), message: errorMessage(err) } satisfies ErrorContent;
    }
    if (msg.header.sync) await ctx.respond(msg, reply).catch(() => {});
  }
}

export function createMetaManager(options: MetaManagerOptions, log: Logger): MetaManager {
  return new MetaManager(options, log);
}
