/**
 * @module
 * DeviceTwin: the node's device twins. It reads the Devices and DeviceModels the node holds from
 * MetaManager's store (`MetaView`), keeps each device's reported values and state in its own
 * crash-safe twin store (`<dataDir>/devicetwin/`), serves KubeEdge's MQTT device topics on the
 * device bus (./mqtt.ts) and KubeEdge's DMI for mappers (./dmi/, started and stopped with it),
 * and sends what devices report upstream, every `reportIntervalMs` while the link is up
 * (./flusher.ts), with a full resync after every (re)connection ({@link DeviceTwin.reconnected}).
 *
 * Beehive: module `twin`, group `twin`. Its state comes from MetaManager, not from messages; a
 * message of group twin from the cloud (none is defined) is answered with LEDGE_ERR_UNSUPPORTED.
 * If the DMI adapter cannot start (its socket), the module fails and Beehive restarts it with backoff.
 */
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import { UnsupportedError, errorContent, errorMessage, errorCode } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { Group, ModuleName, Operation, parseResource, type Message } from '../../shared/protocol/index.js';
import type { DeviceBus } from '../eventbus/index.js';
import type { MetaView } from '../metamanager/index.js';
import type { TwinCore } from './core.js';
import type { DmiAdapter, DmiAdapterOptions } from './dmi/index.js';
import { Flusher } from './flusher.js';
import { MqttAdapter } from './mqtt.js';
import { defaultDeviceTwinOptions, UPSTREAM_TIMEOUT_MS } from './options.js';
import { ProblemLog } from './problems.js';
import { TwinStore } from './twin-store.js';
import { TwinRegistry } from './twins.js';

/** Timers the flusher runs on (tests inject fakes). */
export interface TwinTimers {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

/** Options; defaults of the tunables in `defaultDeviceTwinOptions` (./options.ts). */
export interface DeviceTwinOptions {
  nodeName: string;
  /** EdgeCore's data directory: the twin store is `<dataDir>/devicetwin/`. */
  dataDir: string;
  meta: MetaView;
  /** The MQTT device bus; without one, only DMI serves devices. */
  bus?: DeviceBus;
  /** Whether the link to the cloud is up (EdgeHub's `connected`). */
  linkUp: () => boolean;
  reportIntervalMs: number;
  maxReportsPerMessage: number;
  maxPayloadBytes: number;
  maxDevices: number;
  dmi: DmiAdapterOptions & { enabled: boolean };
  maxReportBytes?: number;
  maxValueBytes?: number;
  maxPropertyNameBytes?: number;
  maxPendingMessages?: number;
  /** Test seams. */
  now?: () => number;
  timers?: TwinTimers;
  createDmi?: (options: DmiAdapterOptions, core: TwinCore, log: Logger) => DmiAdapter;
}

export class DeviceTwin implements Module {
  readonly name = ModuleName.DeviceTwin;
  readonly group = Group.Twin;
  /** The twin core the adapters use (DMI: ./dmi/). */
  readonly core: TwinCore;
  private readonly registry: TwinRegistry;
  private readonly problems: ProblemLog;
  private readonly now: () => number;
  private flusher: Flusher | undefined;
  private mqtt: MqttAdapter | undefined;
  private dmi: DmiAdapter | undefined;
  private ready: { promise: Promise<void>; resolve: () => void };

  constructor(
    private readonly options: DeviceTwinOptions,
    private readonly log: Logger,
  ) {
    const d = defaultDeviceTwinOptions;
    this.now = options.now ?? Date.now;
    this.registry = new TwinRegistry(
      {
        meta: options.meta,
        maxDevices: options.maxDevices,
        maxValueBytes: options.maxValueBytes ?? d.maxValueBytes,
        maxPropertyNameBytes: options.maxPropertyNameBytes ?? d.maxPropertyNameBytes,
        now: this.now,
      },
      log,
    );
    this.core = this.registry;
    this.problems = new ProblemLog(log, this.now);
    this.ready = deferred();
  }

  /**
   * The link to the cloud is (back) up: every device's reported values and state are sent again
   * (a full resync: it covers a CloudCore replica that crashed after accepting, and the cloud's
   * view of a node that was away).
   */
  reconnected(): void {
    const n = this.registry.markAllDirty();
    if (n > 0) this.log.debug(`connected: the twins of ${n} devices are sent again`);
  }

  /** Resolves once the twins are loaded and the adapters run. */
  whenReady(): Promise<void> {
    return this.ready.promise;
  }

  /** Runs one upstream pass now (the interval does it every `reportIntervalMs`). */
  flush(): Promise<void> {
    return this.flusher?.flush() ?? Promise.resolve();
  }

  stats(): { devices: number; dirty: number; upstream: Flusher['stats'] | undefined; mqtt: MqttAdapter['stats'] | undefined } {
    return { devices: this.registry.size, dirty: this.registry.dirtyCount, upstream: this.flusher?.stats, mqtt: this.mqtt?.stats };
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    const o = this.options;
    const aborted = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    await Promise.race([o.meta.whenReady(), aborted]);
    if (signal.aborted) return;
    const store = await TwinStore.open(o.dataDir, this.log, { maxDevices: o.maxDevices });
    const timers = o.timers ?? { setInterval: (fn, ms) => setInterval(fn, ms), clearInterval: (h) => clearInterval(h as NodeJS.Timeout) };
    let timer: unknown;
    try {
      this.registry.load(store);
      const d = defaultDeviceTwinOptions;
      const flusher = new Flusher(
        this.registry,
        {
          maxReportsPerMessage: o.maxReportsPerMessage,
          maxReportBytes: o.maxReportBytes ?? d.maxReportBytes,
          linkUp: o.linkUp,
          send: async (msg) => (await ctx.sendSync(ModuleName.EdgeHub, msg, UPSTREAM_TIMEOUT_MS)).content,
        },
        this.problems,
      );
      this.flusher = flusher;
      if (o.bus) {
        this.mqtt = new MqttAdapter(
          this.registry,
          o.bus,
          { nodeName: o.nodeName, maxPayloadBytes: o.maxPayloadBytes, maxPendingMessages: o.maxPendingMessages ?? d.maxPendingMessages, now: this.now },
          this.log,
          this.problems,
        );
        this.mqtt.attach();
      }
      if (o.dmi.enabled) {
        const { enabled: _enabled, ...dmiOptions } = o.dmi;
        const create = o.createDmi ?? (await import('./dmi/index.js')).createDmiAdapter;
        this.dmi = create({ ...dmiOptions, dataDir: dmiOptions.dataDir || o.dataDir }, this.registry, this.log);
        await this.dmi.start();
      }
      timer = timers.setInterval(() => void flusher.flush(), o.reportIntervalMs);
      this.log.info('device twin started', { devices: this.registry.size, dirty: this.registry.dirtyCount, mqtt: !!o.bus, dmi: o.dmi.enabled });
      this.ready.resolve();
      for await (const msg of ctx.messages(signal)) await this.onMessage(ctx, msg);
    } finally {
      if (timer !== undefined) timers.clearInterval(timer);
      await this.mqtt?.detach();
      this.mqtt = undefined;
      await this.dmi?.close().catch((err: unknown) => this.log.warn(`DMI adapter did not close cleanly: ${errorMessage(err)}`, { code: errorCode(err) }));
      this.dmi = undefined;
      this.registry.unload();
      await store.close();
      // A restart (after a failure) is ready again only once it loaded again.
      this.ready = deferred();
    }
  }

  /** Beehive messages of group twin: the cloud defines none (Devices come through MetaManager). */
  private async onMessage(ctx: ModuleContext, msg: Message): Promise<void> {
    const { operation, resource } = msg.route;
    if (operation === Operation.Response || operation === Operation.Ack) return;
    const err = new UnsupportedError(`DeviceTwin does not handle ${operation} ${resource}: Devices reach it through MetaManager`);
    this.problems.warn(`beehive|${operation}|${parseResource(resource).type}`, err.message, { code: err.code });
    if (msg.header.sync) await ctx.respond(msg, errorContent(err)).catch(() => {});
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

export function createDeviceTwin(options: DeviceTwinOptions, log: Logger): DeviceTwin {
  return new DeviceTwin(options, log);
}
