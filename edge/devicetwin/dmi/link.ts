/**
 * @module
 * One mapper's downstream: what EdgeCore sends to the mapper serving one protocol, in order,
 * one call at a time, retried with backoff while the mapper cannot be reached.
 *
 * The link queues keys, not calls: `d:<ns>/<name>` and `m:<ns>/<name>`. When a key comes up, the
 * call is worked out from what the node holds now and what the mapper was last sent (a
 * fingerprint per key): RegisterDevice for a device it lacks, UpdateDevice for one whose spec
 * changed, RemoveDevice for one deleted or moved to another protocol, and the same for models.
 * So the latest spec always wins, a key waits in the queue at most once (memory is bounded by the
 * number of devices), and a device that changed and changed back costs nothing. A device's model
 * is sent before the device (a framework mapper refuses a device whose model it lacks).
 *
 * Failures: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and CANCELLED mean "not now": the
 * key stays at the head and the link waits (shared/backoff, full jitter) before trying again.
 * Any other status is the mapper refusing that call: it is not repeated for the same spec (a new
 * spec is tried again), and is reported through `onRefused`. GetDevice is never called: it
 * crashes framework mappers.
 */
import { ErrorCode } from '../../../shared/errors/index.js';
import { type Backoff, backoff } from '../../../shared/backoff/index.js';
import type { DeviceMapperClient, DmiDevice, DmiDeviceModel } from '../../../shared/dmi/index.js';
import { DmiError, errorMessage } from '../../../shared/errors/index.js';
import type { Logger } from '../../../shared/log/index.js';
import type { DmiTimers, MapperClientFactory } from './options.js';
import type { MapperRecord } from './registry.js';

/** What the node holds for one Device, as the links read it. */
export interface DeviceSlot {
  key: string;
  namespace: string;
  name: string;
  /** spec.protocol.protocolName; undefined for a device no mapper serves. */
  protocol?: string;
  modelKey?: string;
  /**
   * Set when the device is valid for DMI: the hash of what the mapper would be sent. The converted
   * device itself is not kept (World.dmiDevice makes it when a call needs it): with one protobuf
   * `Any` per configData value it cost more memory than the Device it comes from.
   */
  fingerprint?: string;
  /** Set when it is not (it is then not sent; what the mapper has is left as it is). */
  problem?: string;
}

/** What the node holds for one DeviceModel. */
export interface ModelSlot {
  key: string;
  namespace: string;
  name: string;
  /** spec.protocol of the model. */
  protocol?: string;
  dmi?: DmiDeviceModel;
  fingerprint?: string;
  problem?: string;
}

/** The node's devices and models, as the links see them. */
export interface World {
  device(key: string): DeviceSlot | undefined;
  model(key: string): ModelSlot | undefined;
  /** Device `key` as its mapper gets it, converted now from what the node holds; undefined when it is not valid for DMI. */
  dmiDevice(key: string): DmiDevice | undefined;
  /** Whether the mapper of `protocol` needs model `key` (its spec.protocol, or a valid device of that protocol uses it). */
  modelWanted(protocol: string, key: string): boolean;
}

export type CallKind = 'RegisterDevice' | 'UpdateDevice' | 'RemoveDevice' | 'CreateDeviceModel' | 'UpdateDeviceModel' | 'RemoveDeviceModel';

type Action = { kind: CallKind; item: string; key: string; fingerprint?: string; device?: DmiDevice; model?: DmiDeviceModel } | { needsModel: string };

export interface LinkOptions {
  callTimeoutMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  timers: DmiTimers;
  random: () => number;
  connect: MapperClientFactory;
  log: Logger;
  /** After each call that changed what the mapper was sent (the registry records it). */
  onDelivered(): void;
  /** The mapper refused a call (not retried for this spec), or a later call for that key succeeded (`message` undefined). */
  onRefused(kind: 'device' | 'model', key: string, protocol: string, message: string | undefined, call: CallKind): void;
}

/** Statuses that mean "the mapper is not there (yet)" rather than "the mapper refuses this". */
const TRANSIENT = new Set([1, 4, 8, 14]);

function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

export class MapperLink {
  record: MapperRecord;
  /** What the mapper was last sent: device key → fingerprint. */
  delivered = new Map<string, string>();
  deliveredModels = new Map<string, string>();
  /** Devices to send again after an EdgeCore restart, even if the fingerprint says the mapper has them. */
  replay = new Set<string>();
  /** Models to send with CreateDeviceModel after a restart (an upsert in framework mappers; UpdateDeviceModel fails for a model they lack). */
  modelReplay = new Set<string>();
  /** Item → the fingerprint the mapper refused: not tried again until the spec changes. */
  private refused = new Map<string, string>();
  private queue = new Set<string>();
  /** Items to run before the queue: a retried head, a model its device waits for. */
  private front: string[] = [];
  private busy = false;
  private closed = false;
  private timer: unknown;
  private epoch = 0;
  private client: (DeviceMapperClient & { close(): void }) | undefined;
  private readonly backoff: Backoff;
  /** Set while the mapper is unreachable (logged once per outage). */
  private unreachable: string | undefined;

  constructor(
    record: MapperRecord,
    private readonly world: World,
    private readonly o: LinkOptions,
  ) {
    this.record = record;
    this.backoff = backoff({ baseMs: o.retryBaseMs, maxMs: o.retryMaxMs, jitter: 'full', random: o.random });
    for (const [k, fp] of Object.entries(record.devices)) this.delivered.set(k, fp);
    for (const [k, fp] of Object.entries(record.models)) this.deliveredModels.set(k, fp);
  }

  get protocol(): string {
    return this.record.protocol;
  }

  /** Keys waiting (tests, stats). */
  pending(): number {
    return this.queue.size + this.front.length;
  }

  /** Whether a retry is scheduled (the mapper could not be reached). */
  waiting(): boolean {
    return this.timer !== undefined;
  }

  /** Something about this key changed: work out and send what the mapper needs, in turn. */
  touch(item: string): void {
    if (this.closed) return;
    this.queue.add(item);
    this.pump();
  }

  /**
   * The mapper (re)registered: what it holds is now exactly `devices`/`models` (what it was
   * answered, or nothing). Anything queued or being retried for the old session is dropped; a
   * call in flight is disregarded when it ends. `items` are queued afresh.
   */
  reset(record: MapperRecord, devices: Map<string, string>, models: Map<string, string>, items: Iterable<string>): void {
    this.epoch++;
    if (record.address !== this.record.address) this.dropClient();
    this.record = record;
    this.delivered = devices;
    this.deliveredModels = models;
    this.replay.clear();
    this.modelReplay.clear();
    this.refused.clear();
    this.queue.clear();
    this.front = [];
    this.cancelTimer();
    this.backoff.reset();
    this.unreachable = undefined;
    for (const i of items) this.queue.add(i);
    this.pump();
  }

  /** The record as it should be written now (what the mapper was sent). */
  snapshot(): MapperRecord {
    return { ...this.record, devices: Object.fromEntries(this.delivered), models: Object.fromEntries(this.deliveredModels) };
  }

  close(): void {
    this.closed = true;
    this.epoch++;
    this.cancelTimer();
    this.dropClient();
  }

  pump(): void {
    if (this.busy || this.closed || this.timer !== undefined) return;
    this.run().catch((err: unknown) => {
      // A bug, not a mapper's answer: said once; the next change runs the queue again.
      this.o.log.error(`DMI link for protocol ${this.protocol} stopped: ${errorMessage(err)}`, { code: ErrorCode.Dmi });
    });
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) this.o.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private dropClient(): void {
    try {
      this.client?.close();
    } catch {
      // Closing a broken session cannot fail in a way that matters: the next call opens a new one.
    }
    this.client = undefined;
  }

  private next(): string | undefined {
    const f = this.front.shift();
    if (f !== undefined) return f;
    for (const item of this.queue) {
      this.queue.delete(item);
      return item;
    }
    return undefined;
  }

  private async run(): Promise<void> {
    this.busy = true;
    try {
      for (;;) {
        if (this.closed || this.timer !== undefined) return;
        const item = this.next();
        if (item === undefined) return;
        const act = this.action(item);
        if (!act) continue;
        if ('needsModel' in act) {
          this.front.unshift(`m:${act.needsModel}`, item);
          continue;
        }
        const epoch = this.epoch;
        try {
          await this.call(act);
        } catch (err) {
          if (epoch !== this.epoch) continue;
          if (err instanceof DmiError && TRANSIENT.has(err.grpcStatus)) {
            this.front.unshift(item);
            this.retryLater(err);
            return;
          }
          this.refuse(act, err);
          continue;
        }
        if (epoch !== this.epoch) continue;
        this.succeeded(act);
      }
    } finally {
      this.busy = false;
    }
  }

  /** The call `item` needs now, if any. */
  private action(item: string): Action | undefined {
    const key = item.slice(2);
    return item.startsWith('d:') ? this.deviceAction(item, key) : this.modelAction(item, key);
  }

  private deviceAction(item: string, key: string): Action | undefined {
    const slot = this.world.device(key);
    const mine = slot !== undefined && slot.protocol === this.protocol;
    const delivered = this.delivered.get(key);
    if (mine && slot.problem !== undefined) return undefined; // invalid: not sent; the mapper keeps what it has
    if (mine && slot.fingerprint) {
      const fp = slot.fingerprint;
      if (this.refused.get(item) === fp) return undefined;
      let kind: CallKind;
      if (this.replay.has(key)) kind = delivered !== undefined && delivered !== fp ? 'UpdateDevice' : 'RegisterDevice';
      else if (delivered === undefined) kind = 'RegisterDevice';
      else if (delivered !== fp) kind = 'UpdateDevice';
      else return undefined;
      if (slot.modelKey && this.modelAction(`m:${slot.modelKey}`, slot.modelKey)) return { needsModel: slot.modelKey };
      const device = this.world.dmiDevice(key);
      if (!device) return undefined; // no longer convertible (its model went): the change that did it queues the key again
      return { kind, item, key, fingerprint: fp, device };
    }
    if (delivered === undefined) return undefined;
    return { kind: 'RemoveDevice', item, key };
  }

  private modelAction(item: string, key: string): Action | undefined {
    const m = this.world.model(key);
    const delivered = this.deliveredModels.get(key);
    if (m && this.world.modelWanted(this.protocol, key)) {
      if (!m.dmi || !m.fingerprint) return undefined;
      const fp = m.fingerprint;
      if (this.refused.get(item) === fp || delivered === fp) return undefined;
      const kind: CallKind = delivered === undefined || this.modelReplay.has(key) ? 'CreateDeviceModel' : 'UpdateDeviceModel';
      return { kind, item, key, fingerprint: fp, model: m.dmi };
    }
    if (delivered === undefined) return undefined;
    return { kind: 'RemoveDeviceModel', item, key };
  }

  private async call(act: Exclude<Action, { needsModel: string }>): Promise<void> {
    this.client ??= this.o.connect(this.record.address, { timeoutMs: this.o.callTimeoutMs });
    const c = this.client;
    const opts = { timeoutMs: this.o.callTimeoutMs };
    const { namespace, name } = splitKey(act.key);
    switch (act.kind) {
      case 'RegisterDevice':
        await c.registerDevice({ device: act.device }, opts);
        return;
      case 'UpdateDevice':
        await c.updateDevice({ device: act.device }, opts);
        return;
      case 'RemoveDevice':
        await c.removeDevice({ deviceName: name, deviceNamespace: namespace }, opts);
        return;
      case 'CreateDeviceModel':
        await c.createDeviceModel({ model: act.model }, opts);
        return;
      case 'UpdateDeviceModel':
        await c.updateDeviceModel({ model: act.model }, opts);
        return;
      case 'RemoveDeviceModel':
        await c.removeDeviceModel({ modelName: name, modelNamespace: namespace }, opts);
        return;
    }
  }

  private succeeded(act: Exclude<Action, { needsModel: string }>): void {
    this.backoff.reset();
    if (this.unreachable !== undefined) {
      this.o.log.info(`DMI mapper ${this.record.name} (protocol ${this.protocol}) is reachable again at ${this.record.address}`);
      this.unreachable = undefined;
    }
    const wasRefused = this.refused.delete(act.item);
    const isDevice = act.item.startsWith('d:');
    if (act.kind === 'RemoveDevice') this.delivered.delete(act.key);
    else if (act.kind === 'RemoveDeviceModel') this.deliveredModels.delete(act.key);
    else if (isDevice) this.delivered.set(act.key, act.fingerprint!);
    else this.deliveredModels.set(act.key, act.fingerprint!);
    if (isDevice) this.replay.delete(act.key);
    else this.modelReplay.delete(act.key);
    if (wasRefused) this.o.onRefused(isDevice ? 'device' : 'model', act.key, this.protocol, undefined, act.kind);
    this.o.onDelivered();
  }

  private refuse(act: Exclude<Action, { needsModel: string }>, err: unknown): void {
    const isDevice = act.item.startsWith('d:');
    const removing = act.kind === 'RemoveDevice' || act.kind === 'RemoveDeviceModel';
    if (removing) {
      // A mapper that refuses to remove what it was told to remove does not hold it (framework
      // mappers answer "can not find device"): there is nothing left to undo.
      if (isDevice) this.delivered.delete(act.key);
      else this.deliveredModels.delete(act.key);
      this.o.log.debug(`DMI mapper ${this.record.name} refused ${act.kind} ${act.key}: ${errorMessage(err)}`);
      this.o.onDelivered();
      return;
    }
    this.refused.set(act.item, act.fingerprint!);
    if (isDevice) this.replay.delete(act.key);
    else this.modelReplay.delete(act.key);
    const status = err instanceof DmiError ? ` (gRPC status ${err.grpcStatus})` : '';
    this.o.onRefused(isDevice ? 'device' : 'model', act.key, this.protocol, `mapper ${this.record.name} refused ${act.kind}${status}: ${errorMessage(err)}`, act.kind);
  }

  private retryLater(err: DmiError): void {
    this.dropClient();
    const delay = this.backoff.next();
    if (this.unreachable === undefined) {
      this.unreachable = errorMessage(err);
      this.o.log.warn(`DMI mapper ${this.record.name} (protocol ${this.protocol}) cannot be reached at ${this.record.address}: ${this.unreachable}; retrying with backoff`, {
        code: err.code,
        grpcStatus: err.grpcStatus,
      });
    }
    this.timer = this.o.timers.setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, delay);
  }
}
