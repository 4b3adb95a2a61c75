/**
 * @module
 * The twin registry, DeviceTwin's {@link TwinCore}: the Devices and DeviceModels the node holds
 * (read from MetaManager's store through `MetaView`, online or offline) and each device's twin
 * (from the {@link TwinStore}).
 *
 * - Reports (MQTT `twin/update` actuals, DMI `ReportDeviceStatus`) and states (`state/update`,
 *   `ReportDeviceStates`) are validated against the Device and its model, applied in memory (the
 *   latest value per property wins), marked dirty and written to the twin store; the caller's
 *   promise resolves once the write is durable. The upstream flusher (./flusher.ts) sends what
 *   is dirty.
 * - A property can be reported only if the Device declares it (`spec.properties`) and its model
 *   defines it (the model gives the type and range). Values: at most `maxValueBytes`.
 * - States: KubeEdge's set (online, offline, ok, unknown, unhealthy; any case, stored as given).
 *   `lastOnlineTime` is set when the state is online or ok, and kept otherwise (KubeEdge clears it
 *   on every other state, losing the last time the device was seen).
 * - An `expected` value set over MQTT is a local desired value: stored (it survives a restart),
 *   shown in the MQTT twin (`twin/get`, `delta`, `document`), never sent to the cloud (the Device
 *   spec owns desired), and dropped when the cloud changes that property's desired value (the
 *   newer wish wins).
 * - A Device recreated under the same name (another uid) starts with an empty twin; a Device
 *   deleted while EdgeCore was down loses its record at start.
 * - Past `maxDevices`, further Devices are ignored (one warning) until others are deleted.
 */
import { createHash } from 'node:crypto';
import { type Device, type DeviceModel, type ModelProperty, checkTwinValue, deviceKey } from '../../shared/devices/index.js';
import { DeviceInvalidError, DeviceUnknownError, ErrorCode, errorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { ResourceType, parseResource } from '../../shared/protocol/index.js';
import type { MetaChange, MetaView } from '../metamanager/index.js';
import type { DeviceChangeEvent, ModelChangeEvent, TwinCore, TwinEntry, TwinUpdate } from './core.js';
import { MAX_STATE_BYTES } from './options.js';
import { ProblemLog } from './problems.js';
import type { DeviceRecord, StoredTwin, TwinStore } from './twin-store.js';

/** KubeEdge's device states (dtcommon: DeviceStatusOK, Online, Offline, Unhealthy, Unknown). */
export const DEVICE_STATES: ReadonlySet<string> = new Set(['ok', 'online', 'offline', 'unhealthy', 'unknown']);

/** A device the registry holds. */
export interface Held {
  /** `namespace/name`: the device id of KubeEdge's MQTT topics and the twin store key. */
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  device: Device;
  /** A hash of the spec as sorted JSON, to tell spec changes from metadata-only ones (the JSON itself cost ~0.8 KB a device). */
  spec: string;
  rec: DeviceRecord;
  /** Dirty property → sequence number of its last change. */
  dirty: Map<string, number>;
  /** Sequence number of the last state change not yet accepted upstream; 0 when clean. */
  stateSeq: number;
}

/** A twin change the registry applied (for the MQTT adapter's `document`). */
export interface TwinChange {
  held: Held;
  source: 'mqtt' | 'dmi';
  /** The properties changed, each with its twin before the change. */
  before: Map<string, StoredTwin | undefined>;
}

export interface TwinRegistryOptions {
  meta: MetaView;
  maxDevices: number;
  maxValueBytes: number;
  maxPropertyNameBytes: number;
  now: () => number;
}

/** An MQTT `expected` value to apply locally. */
export interface ExpectedUpdate {
  propertyName: string;
  value: string;
}

type Listener<E> = (ev: E) => void;

export class TwinRegistry implements TwinCore {
  private readonly held = new Map<string, Held>();
  private readonly models = new Map<string, DeviceModel>();
  /** Dirty devices, oldest first (FIFO: every device gets its turn upstream). */
  private readonly dirtyOrder = new Set<string>();
  /** Devices not held because of maxDevices: their MetaView resources. */
  private readonly ignored = new Set<string>();
  private readonly deviceListeners = new Set<Listener<DeviceChangeEvent>>();
  private readonly modelListeners = new Set<Listener<ModelChangeEvent>>();
  private readonly twinListeners = new Set<Listener<TwinChange>>();
  private readonly stateListeners = new Set<Listener<{ held: Held; source: 'mqtt' | 'dmi' }>>();
  private readonly problems: ProblemLog;
  private store: TwinStore | undefined;
  private unsubscribe: (() => void) | undefined;
  private seq = 0;
  private resyncAtLoad = false;

  constructor(
    private readonly options: TwinRegistryOptions,
    private readonly log: Logger,
  ) {
    this.problems = new ProblemLog(log, options.now);
  }

  get loaded(): boolean {
    return this.store !== undefined;
  }

  get size(): number {
    return this.held.size;
  }

  /**
   * Reads the devices and models the node holds and their twin records, drops the records of
   * devices no longer held, and follows MetaManager's changes from now on. Listeners already
   * registered get an 'add' per model and per device.
   */
  load(store: TwinStore): void {
    const meta = this.options.meta;
    // Listing and subscribing in one synchronous stretch: no change can fall between them.
    for (const o of meta.listType(ResourceType.DeviceModel)) this.putModel(o.value, false);
    const records = store.records();
    for (const o of meta.listType(ResourceType.Device)) {
      const device = asDevice(o.value);
      if (!device) {
        this.problems.warn(`device:${o.resource}`, `Device ${o.resource} without metadata.name or spec was ignored`, { code: ErrorCode.DeviceInvalid });
        continue;
      }
      const key = deviceKey(device.metadata.namespace, device.metadata.name!);
      if (this.held.size >= this.options.maxDevices) {
        this.ignore(o.resource, key);
        continue;
      }
      const rec = records.get(key);
      const uid = device.metadata.uid;
      const fits = rec && (rec.uid === undefined || uid === undefined || rec.uid === uid);
      const h = this.newHeld(key, device, fits ? rec : undefined);
      for (const p of h.rec.dirty) h.dirty.set(p, ++this.seq);
      if (h.rec.stateDirty) h.stateSeq = ++this.seq;
      if (h.dirty.size > 0 || h.stateSeq > 0) this.dirtyOrder.add(key);
    }
    this.unsubscribe = meta.subscribe((change) => this.onMeta(change));
    this.store = store;
    if (this.resyncAtLoad) {
      this.resyncAtLoad = false;
      this.markAllDirty();
    }
    let orphans = 0;
    for (const [key, rec] of records) {
      const h = this.held.get(key);
      if (h && h.rec === rec) continue;
      orphans++;
      store.remove(key).catch((err: unknown) => this.log.warn(`cannot delete the twin record of ${key}: ${errorMessage(err)}`, { code: errorCode(err) }));
    }
    if (orphans > 0) this.log.info(`dropped the twins of ${orphans} devices the node no longer holds`);
    for (const model of this.models.values()) for (const l of this.modelListeners) this.call(l, { op: 'add', model });
    for (const h of this.held.values()) for (const l of this.deviceListeners) this.call(l, { op: 'add', entry: this.entry(h), specChanged: true });
  }

  /** Stops following MetaManager (the store is closed by its owner). */
  unload(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.store = undefined;
  }

  // ---- TwinCore ----

  list(): TwinEntry[] {
    return [...this.held.values()].map((h) => this.entry(h));
  }

  get(namespace: string, name: string): TwinEntry | undefined {
    const h = this.held.get(deviceKey(namespace, name));
    return h ? this.entry(h) : undefined;
  }

  async report(namespace: string, name: string, twins: TwinUpdate[], source: 'mqtt' | 'dmi'): Promise<void> {
    await this.update(namespace, name, twins, [], source);
  }

  /**
   * Applies reported values and local `expected` values together (an MQTT twin/update): all are
   * validated first, nothing is applied if one is refused. Resolves once durable, with what changed
   * (the twin-change listeners are told then too).
   */
  async update(namespace: string, name: string, twins: TwinUpdate[], expected: ExpectedUpdate[], source: 'mqtt' | 'dmi'): Promise<TwinChange | undefined> {
    const h = this.require(namespace, name);
    if (twins.length === 0 && expected.length === 0) return undefined;
    const model = this.modelOf(h.device);
    for (const t of twins) {
      const prop = this.property(h, model, t.propertyName);
      if (t.reported !== undefined) this.checkValue(h, prop, t.reported?.value, 'reported', 'reported');
      if (t.observedDesired !== undefined && t.observedDesired.value !== '') this.checkValue(h, prop, t.observedDesired.value, 'reported', 'observedDesired');
    }
    for (const e of expected) this.checkValue(h, this.property(h, model, e.propertyName), e.value, 'desired', 'expected');
    const now = this.options.now();
    const before = new Map<string, StoredTwin | undefined>();
    const touch = (p: string): StoredTwin => {
      const cur = h.rec.twins[p];
      if (!before.has(p)) before.set(p, cur ? { ...cur } : undefined);
      const next: StoredTwin = { ...cur };
      h.rec.twins[p] = next;
      return next;
    };
    for (const t of twins) {
      const prop = this.property(h, model, t.propertyName);
      const tw = touch(t.propertyName);
      const metadata = { timestamp: String(now), type: typeName(prop) };
      if (t.reported !== undefined) tw.reported = { value: t.reported.value, metadata };
      if (t.observedDesired !== undefined && t.observedDesired.value !== '') tw.observedDesired = { value: t.observedDesired.value, metadata };
      if (t.reported !== undefined || (t.observedDesired !== undefined && t.observedDesired.value !== '')) h.dirty.set(t.propertyName, ++this.seq);
    }
    for (const e of expected) touch(e.propertyName).expected = { value: e.value, timestamp: now };
    if (h.dirty.size > 0) this.dirtyOrder.add(h.key);
    await this.save(h);
    const change: TwinChange = { held: h, source, before };
    for (const l of this.twinListeners) this.call(l, change);
    return change;
  }

  async reportState(namespace: string, name: string, state: string, source: 'mqtt' | 'dmi'): Promise<void> {
    const h = this.require(namespace, name);
    if (typeof state !== 'string' || state === '' || Buffer.byteLength(state) > MAX_STATE_BYTES)
      throw new DeviceInvalidError(`device ${h.key}: a state is a short word (${[...DEVICE_STATES].join(', ')}), not ${quote(String(state))}`);
    if (!DEVICE_STATES.has(state.toLowerCase())) throw new DeviceInvalidError(`device ${h.key}: state ${quote(state)} is not one of ${[...DEVICE_STATES].join(', ')}`);
    const lower = state.toLowerCase();
    const lastOnline = lower === 'online' || lower === 'ok' ? rfc3339(this.options.now()) : h.rec.lastOnlineTime;
    const changed = state !== h.rec.state || lastOnline !== h.rec.lastOnlineTime;
    if (changed) {
      h.rec.state = state;
      if (lastOnline !== undefined) h.rec.lastOnlineTime = lastOnline;
      h.stateSeq = ++this.seq;
      this.dirtyOrder.add(h.key);
    }
    // The same state again (a mapper reports it every cycle) costs no write once the last one is on disk.
    if (changed || this.store?.busy(h.key)) await this.save(h);
    for (const l of this.stateListeners) this.call(l, { held: h, source });
  }

  onDeviceChange(l: Listener<DeviceChangeEvent>): () => void {
    this.deviceListeners.add(l);
    // Registered after the start: the devices held get their 'add' now.
    if (this.loaded) for (const h of [...this.held.values()]) this.call(l, { op: 'add', entry: this.entry(h), specChanged: true });
    return () => this.deviceListeners.delete(l);
  }

  onModelChange(l: Listener<ModelChangeEvent>): () => void {
    this.modelListeners.add(l);
    if (this.loaded) for (const model of [...this.models.values()]) this.call(l, { op: 'add', model });
    return () => this.modelListeners.delete(l);
  }

  // ---- for the adapters and the flusher ----

  /** Twin changes once durable (the MQTT adapter publishes `document` from them). */
  onTwinChange(l: Listener<TwinChange>): () => void {
    this.twinListeners.add(l);
    return () => this.twinListeners.delete(l);
  }

  /** State reports once durable. */
  onStateChange(l: Listener<{ held: Held; source: 'mqtt' | 'dmi' }>): () => void {
    this.stateListeners.add(l);
    return () => this.stateListeners.delete(l);
  }

  /** The held device, by key (`namespace/name`). */
  heldDevice(key: string): Held | undefined {
    return this.held.get(key);
  }

  heldDevices(): IterableIterator<Held> {
    return this.held.values();
  }

  /** The device's model, if the node holds it. */
  modelOf(device: Device): DeviceModel | undefined {
    const ref = device.spec.deviceModelRef?.name;
    return ref ? this.models.get(deviceKey(device.metadata.namespace, ref)) : undefined;
  }

  /** Dirty devices, oldest first. */
  dirtyDevices(): Held[] {
    const out: Held[] = [];
    for (const key of this.dirtyOrder) {
      const h = this.held.get(key);
      if (h) out.push(h);
      else this.dirtyOrder.delete(key);
    }
    return out;
  }

  get dirtyCount(): number {
    return this.dirtyOrder.size;
  }

  /**
   * The cloud accepted a report of these properties (at these sequence numbers) and state: what
   * did not change since is clean. The clear reaches the store with the device's next write.
   */
  settle(key: string, props: readonly (readonly [string, number])[], stateSeq: number): void {
    const h = this.held.get(key);
    if (!h) return;
    for (const [p, seq] of props) if (h.dirty.get(p) === seq) h.dirty.delete(p);
    if (stateSeq > 0 && h.stateSeq === stateSeq) h.stateSeq = 0;
    if (h.dirty.size === 0 && h.stateSeq === 0) this.dirtyOrder.delete(key);
  }

  /**
   * Every device's reported values and state are dirty again (a full resync after a (re)connection).
   * Before the twins are loaded (the link came up first), the resync happens once they are.
   */
  markAllDirty(): number {
    if (!this.loaded) {
      this.resyncAtLoad = true;
      return 0;
    }
    let n = 0;
    for (const h of this.held.values()) {
      for (const [p, t] of Object.entries(h.rec.twins)) if (t.reported || t.observedDesired) h.dirty.set(p, ++this.seq);
      if (h.rec.state !== undefined) h.stateSeq = ++this.seq;
      if (h.dirty.size > 0 || h.stateSeq > 0) {
        this.dirtyOrder.add(h.key);
        n++;
      }
    }
    return n;
  }

  // ---- internals ----

  private entry(h: Held): TwinEntry {
    const model = this.modelOf(h.device);
    return model ? { device: h.device, model } : { device: h.device };
  }

  private newHeld(key: string, device: Device, rec: DeviceRecord | undefined): Held {
    const slash = key.indexOf('/');
    const h: Held = {
      key,
      namespace: key.slice(0, slash),
      name: key.slice(slash + 1),
      device,
      spec: specHash(device.spec),
      rec: rec ?? { ...(device.metadata.uid !== undefined ? { uid: device.metadata.uid } : {}), twins: {}, dirty: [], stateDirty: false },
      dirty: new Map(),
      stateSeq: 0,
    };
    if (device.metadata.uid !== undefined) h.rec.uid = device.metadata.uid;
    this.held.set(key, h);
    return h;
  }

  private require(namespace: string, name: string): Held {
    const key = deviceKey(namespace, name);
    const h = this.store ? this.held.get(key) : undefined;
    if (!h) throw new DeviceUnknownError(`device ${key} is not held by this node`);
    return h;
  }

  private property(h: Held, model: DeviceModel | undefined, name: unknown): ModelProperty {
    if (typeof name !== 'string' || name === '' || Buffer.byteLength(name) > this.options.maxPropertyNameBytes)
      throw new DeviceInvalidError(`device ${h.key}: property name ${quote(String(name))} is empty or longer than ${this.options.maxPropertyNameBytes} bytes`);
    if (!h.device.spec.properties?.some((p) => p.name === name)) throw new DeviceInvalidError(`device ${h.key} has no property ${quote(name)}`);
    if (!model) throw new DeviceInvalidError(`device ${h.key}: its model ${quote(h.device.spec.deviceModelRef?.name ?? '')} is not held by this node, so no value can be checked`);
    const prop = model.spec.properties?.find((p) => p.name === name);
    if (!prop) throw new DeviceInvalidError(`device ${h.key}: property ${quote(name)} is not in its model ${model.metadata.name}`);
    return prop;
  }

  private checkValue(h: Held, prop: ModelProperty, value: unknown, direction: 'desired' | 'reported', what: string): void {
    if (typeof value !== 'string') throw new DeviceInvalidError(`device ${h.key}: the ${what} value of ${prop.name} must be a string`);
    if (Buffer.byteLength(value) > this.options.maxValueBytes)
      throw new DeviceInvalidError(`device ${h.key}: the ${what} value of ${prop.name} is longer than ${this.options.maxValueBytes} bytes`);
    const problem = checkTwinValue(prop, value, direction);
    if (problem) throw new DeviceInvalidError(`device ${h.key}: the ${what} value of ${prop.name} is refused: ${problem}`);
  }

  private save(h: Held): Promise<void> {
    const store = this.store;
    if (!store) return Promise.reject(new DeviceUnknownError(`device ${h.key} is not held by this node (DeviceTwin is stopping)`));
    return store.save(h.key, () => snapshot(h));
  }

  private call<E>(l: Listener<E>, ev: E): void {
    try {
      l(ev);
    } catch (err) {
      this.log.error(`device twin listener failed: ${errorMessage(err)}`, { code: errorCode(err) });
    }
  }

  private onMeta(change: MetaChange): void {
    const r = parseResource(change.resource);
    if (r.type === ResourceType.DeviceModel) {
      if (change.op === 'put') this.putModel(change.value, true);
      else {
        const key = deviceKey(r.namespace, r.name ?? '');
        const model = this.models.get(key);
        this.models.delete(key);
        if (model) for (const l of this.modelListeners) this.call(l, { op: 'delete', model });
      }
    } else if (r.type === ResourceType.Device) {
      if (change.op === 'put') this.putDevice(change.resource, change.value);
      else this.deleteDevice(change.resource, deviceKey(r.namespace, r.name ?? ''));
    }
  }

  private putModel(value: unknown, live: boolean): void {
    const model = value as DeviceModel | null;
    if (typeof model?.metadata?.name !== 'string' || typeof model.spec !== 'object' || model.spec === null) {
      this.problems.warn(`model:${String(model?.metadata?.name)}`, 'a DeviceModel without metadata.name or spec was ignored', { code: ErrorCode.DeviceInvalid });
      return;
    }
    const key = deviceKey(model.metadata.namespace, model.metadata.name);
    const op = this.models.has(key) ? 'update' : 'add';
    this.models.set(key, model);
    if (live) for (const l of this.modelListeners) this.call(l, { op, model });
  }

  private putDevice(resource: string, value: unknown): void {
    const device = asDevice(value);
    if (!device) {
      this.problems.warn(`device:${resource}`, `Device ${resource} without metadata.name or spec was ignored`, { code: ErrorCode.DeviceInvalid });
      return;
    }
    const key = deviceKey(device.metadata.namespace, device.metadata.name!);
    const h = this.held.get(key);
    if (h && h.rec.uid !== undefined && device.metadata.uid !== undefined && h.rec.uid !== device.metadata.uid) {
      // Recreated under the same name: a new device, its twin starts empty.
      this.deleteDevice(resource, key);
      this.putDevice(resource, value);
      return;
    }
    if (!h) {
      if (this.held.size >= this.options.maxDevices) {
        this.ignore(resource, key);
        return;
      }
      const added = this.newHeld(key, device, undefined);
      for (const l of this.deviceListeners) this.call(l, { op: 'add', entry: this.entry(added), specChanged: true });
      return;
    }
    const previous = this.entry(h);
    const spec = specHash(device.spec);
    const specChanged = spec !== h.spec;
    // The cloud changed a desired value: a local expected value of that property gives way.
    let cleared = false;
    for (const p of changedDesired(h.device, device)) {
      const t = h.rec.twins[p];
      if (t?.expected) {
        const { expected: _dropped, ...rest } = t;
        h.rec.twins[p] = rest;
        cleared = true;
      }
    }
    h.device = device;
    h.spec = spec;
    if (device.metadata.uid !== undefined) h.rec.uid = device.metadata.uid;
    if (cleared) this.save(h).catch((err: unknown) => this.log.warn(`cannot store the twin of ${key}: ${errorMessage(err)}`, { code: errorCode(err) }));
    for (const l of this.deviceListeners) this.call(l, { op: 'update', entry: this.entry(h), previous, specChanged });
  }

  private deleteDevice(resource: string, key: string): void {
    this.ignored.delete(resource);
    const h = this.held.get(key);
    if (!h) return;
    this.held.delete(key);
    this.dirtyOrder.delete(key);
    this.store?.remove(key).catch((err: unknown) => this.log.warn(`cannot delete the twin record of ${key}: ${errorMessage(err)}`, { code: errorCode(err) }));
    const entry = this.entry(h);
    for (const l of this.deviceListeners) this.call(l, { op: 'delete', entry, specChanged: false });
    // Room again: a device ignored at the limit is taken in.
    for (const res of this.ignored) {
      this.ignored.delete(res);
      const o = this.options.meta.get(res);
      if (o) {
        this.putDevice(res, o.value);
        break;
      }
    }
  }

  private ignore(resource: string, key: string): void {
    this.ignored.add(resource);
    this.problems.warn(
      'maxDevices',
      `the node holds ${this.held.size} devices, twin.maxDevices is ${this.options.maxDevices}: device ${key} and any further ones are ignored until others are deleted`,
      { code: ErrorCode.StoreLimit },
    );
  }
}

/** What the twin store writes for a device: a copy of its state (the store keeps the object it is given). */
function snapshot(h: Held): DeviceRecord {
  const twins: Record<string, StoredTwin> = {};
  for (const [p, t] of Object.entries(h.rec.twins)) twins[p] = { ...t };
  return {
    ...(h.rec.uid !== undefined ? { uid: h.rec.uid } : {}),
    twins,
    ...(h.rec.state !== undefined ? { state: h.rec.state } : {}),
    ...(h.rec.lastOnlineTime !== undefined ? { lastOnlineTime: h.rec.lastOnlineTime } : {}),
    dirty: [...h.dirty.keys()],
    stateDirty: h.stateSeq > 0,
  };
}

/** A Device from the store, or undefined when it lacks what the registry needs. */
function asDevice(value: unknown): Device | undefined {
  const d = value as Device | null;
  if (typeof d?.metadata?.name !== 'string' || d.metadata.name === '' || typeof d.spec !== 'object' || d.spec === null) return undefined;
  return d;
}

/** Properties whose desired value differs between two versions of a Device. */
export function changedDesired(before: Device | undefined, after: Device): string[] {
  const old = new Map((before?.spec.properties ?? []).map((p) => [p.name, p.desired?.value ?? '']));
  const out: string[] = [];
  for (const p of after.spec.properties ?? []) if ((p.desired?.value ?? '') !== (old.get(p.name) ?? '')) out.push(p.name);
  return out;
}

/** The type KubeEdge's twins carry in `metadata.type`: the model's type in lower case (`int`, `float`, …), `string` without one. */
export function typeName(prop: ModelProperty | undefined): string {
  return prop?.type ? prop.type.toLowerCase() : 'string';
}

/** Go's time.RFC3339 in UTC: `2006-01-02T15:04:05Z`. */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A client-given value for a message: JSON-quoted, cut to 64 characters. */
function quote(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
}

/** SHA-256 of {@link sortedJson}, base64: equal for equal specs whatever their key order. */
export function specHash(spec: unknown): string {
  return createHash('sha256').update(sortedJson(spec)).digest('base64');
}

/** JSON with object keys sorted, so equal specs compare equal whatever their key order. */
export function sortedJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );
}
