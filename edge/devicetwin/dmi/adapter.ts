/**
 * @module
 * The DMI adapter: EdgeCore's side of KubeEdge's Device Management Interface.
 *
 * - Serves DeviceManagerService on the DMI socket. `MapperRegister` records the mapper durably
 *   (./registry.ts) before it answers, and with `withData` answers the valid devices of the
 *   mapper's protocol with their models (model visitors and protocol config merged in).
 *   `ReportDeviceStatus` / `ReportDeviceStates` go to `TwinCore.report` / `reportState`, the one
 *   path MQTT uses too; an unknown device is answered NOT_FOUND (KubeEdge answers OK and drops it),
 *   an invalid value INVALID_ARGUMENT.
 * - Downstream, one {@link MapperLink} per recorded protocol sends each Device change to the mapper
 *   whose protocol equals `spec.protocol.protocolName`, and the models those devices use.
 * - After a restart the recorded mappers get their devices again (RegisterDevice, or UpdateDevice
 *   where the spec changed since the mapper was last sent it); a mapper that registers again gets
 *   them in its answer. KubeEdge's edgecore loses both, and its framework mappers never register twice.
 * - A Device that would crash a framework mapper (./validate.ts) is not sent: one log line, and it
 *   is listed by `problems()` until it is fixed or deleted.
 */
import { ErrorCode } from '../../../shared/errors/index.js';
import { accessSync, constants as fsConstants, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { dmiTwinsToTwins, deviceMapperClient, GrpcStatus, mapperAddress, serveDeviceManager } from '../../../shared/dmi/index.js';
import type {
  CallContext,
  DmiDevice,
  DmiDeviceModel,
  DmiMapperRegisterRequest,
  DmiMapperRegisterResponse,
  DmiReportDeviceStatesRequest,
  DmiReportDeviceStatusRequest,
  GrpcServer,
} from '../../../shared/dmi/index.js';
import type { Device, DeviceModel } from '../../../shared/devices/index.js';
import { deviceKey } from '../../../shared/devices/index.js';
import { DmiError, errorCode, errorMessage } from '../../../shared/errors/index.js';
import type { Logger } from '../../../shared/log/index.js';
import type { DeviceChangeEvent, ModelChangeEvent, TwinCore, TwinEntry } from '../core.js';
import { type CallKind, type DeviceSlot, MapperLink, type ModelSlot, type World } from './link.js';
import { DEVICETWIN_DIR, type DmiAdapterOptions, type DmiTimers, MAPPERS_FILE, defaultDmiAdapterOptions } from './options.js';
import { type MapperRecord, RegistryWriter, loadRegistry } from './registry.js';
import { deviceModelKey, deviceProtocol, prepareDevice, prepareModel } from './validate.js';
import type { OpenFile } from '../../../shared/wal/index.js';

/** A device or model that is not (fully) with its mapper, and why. */
export interface DmiProblem {
  kind: 'device' | 'model';
  /** `namespace/name`. */
  key: string;
  /** The protocol (mapper) concerned, when there is one. */
  protocol?: string;
  /** `invalid`: not sent (it would crash a framework mapper); `refused`: the mapper refused it. */
  reason: 'invalid' | 'refused';
  message: string;
  /** RFC 3339, when it was first seen. */
  since: string;
}

export interface DmiAdapter {
  start(): Promise<void>;
  close(): Promise<void>;
  /** Where DeviceManagerService listens (the fallback path when the configured one was not usable). Valid after start(). */
  readonly socketPath: string;
  mappers(): { protocol: string; name: string; address: string }[];
  /** Devices and models not sent, or refused by their mapper: what TwinCore has no API for. */
  problems(): DmiProblem[];
}

const MAX_PROTOCOL_BYTES = 256;
/** A unix socket path is at most 107 bytes on Linux (sun_path). */
const MAX_ADDRESS_BYTES = 107;
const MAX_NAME_BYTES = 256;
/** Distinct problems remembered for log-once; past it the memory starts afresh. */
const MAX_LOG_KEYS = 4096;

const realTimers: DmiTimers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

function invalid(message: string): DmiError {
  return new DmiError(message, { grpcStatus: GrpcStatus.INVALID_ARGUMENT });
}

function modelKeyOf(model: DeviceModel): string {
  return deviceKey(model.metadata.namespace, model.metadata.name ?? '');
}

/** The socket path as configured: a path not ending in `.sock` names the directory (KubeEdge's `dmiSockPath`). */
function configuredSocket(path: string): string {
  return path.endsWith('.sock') ? path : join(path, 'dmi.sock');
}

function isPermissionError(err: unknown): boolean {
  const codes = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'ENOENT']);
  let e: unknown = err;
  for (let i = 0; i < 4 && typeof e === 'object' && e !== null; i++) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string' && codes.has(c)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export class DmiAdapterImpl implements DmiAdapter, World {
  private readonly devices = new Map<string, DeviceSlot>();
  private readonly models = new Map<string, ModelSlot>();
  /** The objects the slots were made from: a device is prepared again when its model changes. */
  private readonly sources = new Map<string, Device>();
  private readonly modelSources = new Map<string, DeviceModel>();
  /** Device keys per model key (which devices use a model). */
  private readonly modelUsers = new Map<string, Set<string>>();
  private readonly links = new Map<string, MapperLink>();
  private readonly problemList = new Map<string, DmiProblem>();
  private readonly logged = new Map<string, number>();
  private readonly registry: RegistryWriter;
  private readonly timers: DmiTimers;
  private readonly now: () => number;
  private readonly o: Required<Omit<DmiAdapterOptions, 'timers' | 'random' | 'now' | 'connectMapper'>> & Pick<DmiAdapterOptions, 'random' | 'connectMapper'>;
  private server: GrpcServer | undefined;
  private unsubscribe: (() => void)[] = [];
  private persistTimer: unknown;
  private path = '';
  private started = false;
  private closed = false;

  constructor(
    options: DmiAdapterOptions,
    private readonly core: TwinCore,
    private readonly log: Logger,
    openFile?: OpenFile,
  ) {
    this.o = {
      ...defaultDmiAdapterOptions,
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
    } as typeof this.o;
    this.timers = options.timers ?? realTimers;
    this.now = options.now ?? Date.now;
    this.registry = new RegistryWriter(join(options.dataDir, DEVICETWIN_DIR, MAPPERS_FILE), () => [...this.links.values()].map((l) => l.snapshot()), openFile);
  }

  get socketPath(): string {
    return this.path;
  }

  mappers(): { protocol: string; name: string; address: string }[] {
    return [...this.links.values()].map((l) => ({ protocol: l.protocol, name: l.record.name, address: l.record.address }));
  }

  problems(): DmiProblem[] {
    return [...this.problemList.values()];
  }

  // World ------------------------------------------------------------------------------------

  device(key: string): DeviceSlot | undefined {
    return this.devices.get(key);
  }

  model(key: string): ModelSlot | undefined {
    return this.models.get(key);
  }

  dmiDevice(key: string): DmiDevice | undefined {
    const source = this.sources.get(key);
    const slot = this.devices.get(key);
    if (!source || !slot?.fingerprint) return undefined;
    const prepared = prepareDevice(source, slot.modelKey ? this.modelSources.get(slot.modelKey) : undefined);
    return prepared.ok ? prepared.dmi : undefined;
  }

  modelWanted(protocol: string, key: string): boolean {
    if (this.models.get(key)?.protocol === protocol) return true;
    for (const d of this.modelUsers.get(key) ?? []) {
      const slot = this.devices.get(d);
      if (slot && slot.protocol === protocol && slot.fingerprint) return true;
    }
    return false;
  }

  // Lifecycle --------------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.started) throw new Error('DMI adapter already started');
    this.started = true;
    const records = loadRegistry(this.registry.path, this.log);
    this.unsubscribe.push(this.core.onModelChange((ev) => this.onModel(ev)));
    this.unsubscribe.push(this.core.onDeviceChange((ev) => this.onDevice(ev)));
    for (const entry of this.core.list()) this.setDevice(entry);
    // Recorded mappers: every held device of their protocol is sent again: RegisterDevice (a
    // framework mapper that still runs ignores it for a device it holds), UpdateDevice where the
    // record says the mapper was sent another spec, RemoveDevice for what it was sent and the node
    // no longer holds. DeviceTwin starts the adapter once the twin store is loaded, so what
    // TwinCore lists now is what the node holds.
    for (const rec of records.slice(0, this.o.maxMappers)) {
      const link = this.newLink(rec);
      for (const slot of this.devices.values()) if (slot.protocol === rec.protocol) link.replay.add(slot.key);
      for (const item of this.itemsFor(rec.protocol, link)) {
        if (item.startsWith('m:')) link.modelReplay.add(item.slice(2));
        link.touch(item);
      }
    }
    try {
      this.server = await this.listen();
    } catch (err) {
      await this.close();
      throw err;
    }
    if (records.length > 0) this.log.info(`DMI: ${records.length} recorded mapper(s) get their devices again`, { mappers: records.map((r) => `${r.name}/${r.protocol}`) });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const u of this.unsubscribe.splice(0)) u();
    for (const l of this.links.values()) l.close();
    if (this.persistTimer !== undefined) {
      this.timers.clearTimeout(this.persistTimer);
      this.persistTimer = undefined;
      await this.registry.save().catch((err) => this.log.error(errorMessage(err), { code: errorCode(err) }));
    }
    await this.server?.close();
    this.server = undefined;
  }

  private async listen(): Promise<GrpcServer> {
    const handlers = {
      mapperRegister: (req: DmiMapperRegisterRequest) => this.mapperRegister(req),
      reportDeviceStatus: (req: DmiReportDeviceStatusRequest, ctx: CallContext) => this.reportDeviceStatus(req, ctx),
      reportDeviceStates: (req: DmiReportDeviceStatesRequest, ctx: CallContext) => this.reportDeviceStates(req, ctx),
    };
    const serverOptions = { maxMessageBytes: this.o.maxMessageBytes, callsPerSecond: this.o.callsPerSecond, burst: this.o.burst, log: this.log, now: this.now };
    const wanted = configuredSocket(this.o.socketPath);
    const fallback = join(this.o.dataDir, 'dmi.sock');
    let problem: unknown;
    try {
      mkdirSync(dirname(wanted), { recursive: true, mode: 0o755 });
      accessSync(dirname(wanted), fsConstants.W_OK | fsConstants.X_OK);
    } catch (err) {
      problem = err;
    }
    if (problem === undefined) {
      try {
        const s = await serveDeviceManager(wanted, handlers, serverOptions);
        this.path = wanted;
        return s;
      } catch (err) {
        if (!isPermissionError(err) || wanted === fallback) throw err;
        problem = err;
      }
    }
    this.log.warn(`DMI: cannot listen on ${wanted} (${errorMessage(problem)}); listening on ${fallback} instead: mappers must be given this path`, {
      code: ErrorCode.Config,
      socket: fallback,
    });
    mkdirSync(this.o.dataDir, { recursive: true });
    const s = await serveDeviceManager(fallback, handlers, serverOptions);
    this.path = fallback;
    return s;
  }

  private newLink(rec: MapperRecord): MapperLink {
    const link = new MapperLink(rec, this, {
      callTimeoutMs: this.o.callTimeoutMs,
      retryBaseMs: this.o.retryBaseMs,
      retryMaxMs: this.o.retryMaxMs,
      timers: this.timers,
      random: this.o.random ?? Math.random,
      connect: this.o.connectMapper ?? ((path, opts) => deviceMapperClient(path, opts)),
      log: this.log.child({ mapper: rec.name, protocol: rec.protocol }),
      onDelivered: () => this.persistSoon(),
      onRefused: (kind, key, protocol, message, call) => this.onRefused(kind, key, protocol, message, call),
    });
    this.links.set(rec.protocol, link);
    return link;
  }

  /** Queue items for everything a mapper of `protocol` should hold or drop: models first, then devices. */
  private itemsFor(protocol: string, link: MapperLink): string[] {
    const models = new Set<string>();
    const devices: string[] = [];
    for (const slot of this.devices.values()) {
      if (slot.protocol !== protocol) continue;
      if (slot.modelKey && slot.fingerprint) models.add(slot.modelKey);
      devices.push(`d:${slot.key}`);
    }
    for (const m of this.models.values()) if (m.protocol === protocol) models.add(m.key);
    for (const k of link.deliveredModels.keys()) models.add(k);
    for (const k of link.delivered.keys()) if (this.devices.get(k)?.protocol !== protocol) devices.push(`d:${k}`);
    return [...[...models].map((m) => `m:${m}`), ...devices];
  }

  /** Records what the mappers were sent, at most every persistDelayMs (losing it costs a redundant UpdateDevice after a crash, nothing more). */
  private persistSoon(): void {
    if (this.persistTimer !== undefined || this.closed) return;
    this.persistTimer = this.timers.setTimeout(() => {
      this.persistTimer = undefined;
      this.registry.save().catch((err) => this.logOnce(`persist:${errorCode(err)}`, 'error', errorMessage(err), { code: errorCode(err) }));
    }, this.o.persistDelayMs);
  }

  // Node state -------------------------------------------------------------------------------

  private setModel(model: DeviceModel): ModelSlot {
    const key = modelKeyOf(model);
    const prepared = prepareModel(model);
    const slot: ModelSlot = {
      key,
      namespace: model.metadata.namespace || 'default',
      name: model.metadata.name ?? '',
      protocol: model.spec?.protocol || undefined,
      ...('problem' in prepared ? { problem: prepared.problem } : { dmi: prepared.dmi, fingerprint: prepared.fingerprint }),
    };
    this.models.set(key, slot);
    this.modelSources.set(key, model);
    this.setProblem('model', key, undefined, 'invalid', slot.problem);
    return slot;
  }

  /** Takes a device as the node holds it now; returns its old slot. */
  private setDevice(entry: TwinEntry): DeviceSlot | undefined {
    const device = entry.device;
    const key = deviceKey(device.metadata.namespace, device.metadata.name ?? '');
    const old = this.devices.get(key);
    const modelKey = deviceModelKey(device);
    // Prepared once per model object, not once per device that uses it.
    if (entry.model && this.modelSources.get(modelKeyOf(entry.model)) !== entry.model) this.setModel(entry.model);
    const model = modelKey ? this.heldModel(modelKey, entry.model) : undefined;
    const protocol = deviceProtocol(device);
    const slot: DeviceSlot = { key, namespace: device.metadata.namespace || 'default', name: device.metadata.name ?? '', protocol, modelKey };
    if (protocol !== undefined) {
      const prepared = prepareDevice(device, model);
      // Only the fingerprint is kept: dmiDevice() converts again when a call needs the device.
      if (prepared.ok) slot.fingerprint = prepared.fingerprint;
      else slot.problem = prepared.problem;
    }
    this.storeDevice(slot, device);
    this.setProblem('device', key, protocol, 'invalid', slot.problem);
    return old;
  }

  private storeDevice(slot: DeviceSlot, device: Device): void {
    const old = this.devices.get(slot.key);
    if (old?.modelKey && old.modelKey !== slot.modelKey) this.dropUser(old.modelKey, slot.key);
    this.devices.set(slot.key, slot);
    this.sources.set(slot.key, device);
    if (slot.modelKey) {
      let users = this.modelUsers.get(slot.modelKey);
      if (!users) this.modelUsers.set(slot.modelKey, (users = new Set()));
      users.add(slot.key);
    }
  }

  private dropDevice(key: string): DeviceSlot | undefined {
    const old = this.devices.get(key);
    if (!old) return undefined;
    this.devices.delete(key);
    this.sources.delete(key);
    if (old.modelKey) this.dropUser(old.modelKey, key);
    for (const p of [...this.problemList.keys()]) if (p.startsWith(`device:${key}|`)) this.problemList.delete(p);
    return old;
  }

  private dropUser(modelKey: string, deviceKey: string): void {
    const users = this.modelUsers.get(modelKey);
    users?.delete(deviceKey);
    if (users?.size === 0) this.modelUsers.delete(modelKey);
  }

  /** The model a device is checked against: the one TwinCore gave with it, else the last one the node was given. */
  private heldModel(modelKey: string, given: DeviceModel | undefined): DeviceModel | undefined {
    return given ?? this.modelSources.get(modelKey);
  }

  private onDevice(ev: DeviceChangeEvent): void {
    if (this.closed) return;
    const d = ev.entry.device;
    const key = deviceKey(d.metadata.namespace, d.metadata.name ?? '');
    let old: DeviceSlot | undefined;
    let now: DeviceSlot | undefined;
    if (ev.op === 'delete') old = this.dropDevice(key);
    else {
      old = this.setDevice(ev.entry);
      now = this.devices.get(key);
    }
    const protocols = new Set([old?.protocol, now?.protocol, ev.previous ? deviceProtocol(ev.previous.device) : undefined]);
    for (const link of this.links.values()) {
      if (protocols.has(link.protocol) || link.delivered.has(key)) {
        if (now?.modelKey && now.protocol === link.protocol) link.touch(`m:${now.modelKey}`);
        if (old?.modelKey && old.modelKey !== now?.modelKey) link.touch(`m:${old.modelKey}`);
        link.touch(`d:${key}`);
      }
    }
  }

  private onModel(ev: ModelChangeEvent): void {
    if (this.closed) return;
    const key = modelKeyOf(ev.model);
    if (ev.op === 'delete') {
      this.models.delete(key);
      this.modelSources.delete(key);
      this.setProblem('model', key, undefined, 'invalid', undefined);
    } else this.setModel(ev.model);
    // The devices using it are checked and converted again (model visitors are merged into them).
    const users = [...(this.modelUsers.get(key) ?? [])];
    for (const dk of users) {
      const source = this.sources.get(dk);
      if (source) this.setDevice({ device: source, model: ev.op === 'delete' ? undefined : ev.model });
    }
    for (const link of this.links.values()) {
      link.touch(`m:${key}`);
      for (const dk of users) if (this.devices.get(dk)?.protocol === link.protocol || link.delivered.has(dk)) link.touch(`d:${dk}`);
    }
  }

  // Problems and logs ------------------------------------------------------------------------

  private setProblem(kind: 'device' | 'model', key: string, protocol: string | undefined, reason: 'invalid' | 'refused', message: string | undefined): void {
    const id = `${kind}:${key}|${reason}|${reason === 'refused' ? protocol : ''}`;
    const had = this.problemList.get(id);
    if (message === undefined) {
      if (had) {
        this.problemList.delete(id);
        if (reason === 'invalid') this.log.info(`DMI: ${kind} ${key} is valid again`);
      }
      return;
    }
    if (had?.message === message) return;
    this.problemList.set(id, { kind, key, ...(protocol ? { protocol } : {}), reason, message, since: had?.since ?? new Date(this.now()).toISOString() });
    if (reason === 'invalid') {
      this.log.warn(`DMI: ${kind} ${key} is not sent to ${protocol ? `the ${protocol} mapper` : 'mappers'}: ${message}`, { code: ErrorCode.DeviceInvalid, [kind]: key });
    } else {
      this.log.warn(`DMI: ${message} for ${kind} ${key}`, { code: ErrorCode.Dmi, [kind]: key, protocol });
    }
  }

  private onRefused(kind: 'device' | 'model', key: string, protocol: string, message: string | undefined, _call: CallKind): void {
    this.setProblem(kind, key, protocol, 'refused', message);
  }

  /** Logs a line unless the same `id` was logged within logWindowMs. */
  private logOnce(id: string, level: 'warn' | 'error' | 'info', msg: string, fields: Record<string, unknown>): void {
    const t = this.now();
    const last = this.logged.get(id);
    if (last !== undefined && t - last < this.o.logWindowMs) return;
    if (this.logged.size >= MAX_LOG_KEYS) this.logged.clear();
    this.logged.set(id, t);
    this.log[level](msg, fields);
  }

  // DeviceManagerService ---------------------------------------------------------------------

  private async mapperRegister(req: DmiMapperRegisterRequest): Promise<DmiMapperRegisterResponse> {
    const info = req.mapper;
    const protocol = info?.protocol ?? '';
    if (!info || protocol === '') throw invalid('mapper.protocol is empty');
    if (Buffer.byteLength(protocol) > MAX_PROTOCOL_BYTES) throw invalid(`mapper.protocol is longer than ${MAX_PROTOCOL_BYTES} bytes`);
    let address: string;
    try {
      address = mapperAddress(info);
    } catch (err) {
      throw invalid(`mapper.address: ${errorMessage(err)}`);
    }
    if (address.startsWith('unix://')) address = address.slice('unix://'.length);
    if (address === '') throw invalid('mapper.address is empty (the mapper must announce its socket)');
    if (Buffer.byteLength(address) > MAX_ADDRESS_BYTES) throw invalid(`mapper.address is longer than ${MAX_ADDRESS_BYTES} bytes (a unix socket path)`);
    const name = (info.name ?? '') || protocol;
    if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw invalid(`mapper.name is longer than ${MAX_NAME_BYTES} bytes`);
    let link = this.links.get(protocol);
    if (!link && this.links.size >= this.o.maxMappers) {
      this.logOnce('maxMappers', 'warn', `DMI: mapper ${name} (protocol ${protocol}) refused: ${this.o.maxMappers} protocols are recorded already`, { code: ErrorCode.Dmi });
      throw new DmiError(`at most ${this.o.maxMappers} mapper protocols`, { grpcStatus: GrpcStatus.RESOURCE_EXHAUSTED });
    }
    const record: MapperRecord = {
      protocol,
      name,
      version: info.version ?? '',
      apiVersion: info.apiVersion ?? '',
      address,
      state: info.state ?? '',
      registeredAt: new Date(this.now()).toISOString(),
      devices: {},
      models: {},
    };
    // Once per window per mapper and address: two mappers fighting over a protocol must not flood the log.
    if (link && link.record.name !== name) {
      this.logOnce(
        `takeover:${protocol}:${name}`,
        'warn',
        `DMI: protocol ${protocol} is now served by mapper ${name} at ${address} (was ${link.record.name} at ${link.record.address})`,
        {
          code: ErrorCode.Dmi,
        },
      );
    } else {
      this.logOnce(`register:${protocol}:${address}`, 'info', `DMI: mapper ${name} registered for protocol ${protocol} at ${address}`, { withData: req.withData === true });
    }
    link ??= this.newLink(record);

    // What the mapper holds from now on: with withData, exactly what it is answered (a framework
    // mapper starts those devices itself); without, nothing, so everything is sent to it.
    const deviceList: DmiDevice[] = [];
    const modelList: DmiDeviceModel[] = [];
    const devices = new Map<string, string>();
    const models = new Map<string, string>();
    const items = this.itemsFor(protocol, link).filter((i) => !i.startsWith('d:') || this.devices.get(i.slice(2))?.protocol === protocol);
    if (req.withData) {
      for (const slot of [...this.devices.values()].sort((a, b) => (a.key < b.key ? -1 : 1))) {
        const dmi = slot.protocol === protocol && slot.fingerprint ? this.dmiDevice(slot.key) : undefined;
        if (!dmi || !slot.fingerprint) continue;
        deviceList.push(dmi);
        devices.set(slot.key, slot.fingerprint);
      }
      for (const item of items) {
        if (!item.startsWith('m:')) continue;
        const m = this.models.get(item.slice(2));
        if (!m?.dmi || !m.fingerprint || !this.modelWanted(protocol, m.key)) continue;
        modelList.push(m.dmi);
        models.set(m.key, m.fingerprint);
      }
    }
    link.reset(record, devices, models, req.withData ? [] : items);
    for (const p of [...this.problemList.values()]) if (p.reason === 'refused' && p.protocol === protocol) this.setProblem(p.kind, p.key, protocol, 'refused', undefined);
    if (this.persistTimer !== undefined) {
      this.timers.clearTimeout(this.persistTimer);
      this.persistTimer = undefined;
    }
    try {
      await this.registry.save();
    } catch (err) {
      this.logOnce(`persist:${errorCode(err)}`, 'error', `DMI: ${errorMessage(err)}`, { code: errorCode(err) });
      throw new DmiError(`cannot record the mapper: ${errorMessage(err)}`, { grpcStatus: GrpcStatus.UNAVAILABLE });
    }
    return req.withData ? { deviceList, modelList } : {};
  }

  private async reportDeviceStatus(req: DmiReportDeviceStatusRequest, _ctx: CallContext): Promise<Record<string, never>> {
    const name = req.deviceName ?? '';
    if (name === '') throw invalid('deviceName is empty');
    const ns = req.deviceNamespace || 'default';
    const twins = req.reportedDevice?.twins ?? [];
    if (twins.length === 0) throw invalid('reportedDevice.twins is empty');
    for (const [i, t] of twins.entries()) if (!t.propertyName) throw invalid(`reportedDevice.twins[${i}].propertyName is empty`);
    try {
      await this.core.report(ns, name, dmiTwinsToTwins(twins), 'dmi');
    } catch (err) {
      this.reportRefused(ns, name, err);
      throw err;
    }
    return {};
  }

  private async reportDeviceStates(req: DmiReportDeviceStatesRequest, _ctx: CallContext): Promise<Record<string, never>> {
    const name = req.deviceName ?? '';
    if (name === '') throw invalid('deviceName is empty');
    const state = req.state ?? '';
    if (state === '') throw invalid('state is empty');
    const ns = req.deviceNamespace || 'default';
    try {
      await this.core.reportState(ns, name, state, 'dmi');
    } catch (err) {
      this.reportRefused(ns, name, err);
      throw err;
    }
    return {};
  }

  private reportRefused(ns: string, name: string, err: unknown): void {
    const code = errorCode(err);
    this.logOnce(`report:${ns}/${name}:${code}`, 'warn', `DMI: report for device ${ns}/${name} refused: ${errorMessage(err)}`, { code, device: `${ns}/${name}` });
  }
}

/** The DMI adapter of DeviceTwin (started and closed with it). */
export function createDmiAdapter(options: DmiAdapterOptions, core: TwinCore, log: Logger): DmiAdapter {
  return new DmiAdapterImpl(options, core, log.child({ module: 'dmi' }));
}
