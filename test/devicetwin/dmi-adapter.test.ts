/**
 * The DMI adapter (edge/devicetwin/dmi) over real unix sockets: DeviceManagerService driven by
 * shared/dmi's client playing a mapper's registration and report side, downstream calls reaching
 * a fake mapper served with shared/dmi's serveDeviceMapper (and once with @grpc/grpc-js +
 * @grpc/proto-loader loading shared/dmi/dmi.proto), a fake TwinCore, fake timers for retries.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { DmiAdapterImpl } from '../../edge/devicetwin/dmi/adapter.js';
import { createDmiAdapter, defaultDmiAdapterOptions, type DmiAdapter, type DmiAdapterOptions, type DmiTimers } from '../../edge/devicetwin/dmi/index.js';
import type { TwinCore, TwinEntry, TwinUpdate } from '../../edge/devicetwin/core.js';
import type { Device, DeviceModel } from '../../shared/devices/index.js';
import { configDataFromDmi, deviceManagerClient, type DeviceMapperHandlers, type DmiDevice, type GrpcServer, serveDeviceMapper } from '../../shared/dmi/index.js';
import { DeviceInvalidError, DeviceUnknownError, DmiError } from '../../shared/errors/index.js';
import { createLogger } from '../../shared/log/index.js';
import { tempDir } from '../helpers/files.js';
import { controlledSync, track, turns } from '../helpers/fsync.js';
import { eventually, repoRoot, within } from '../helpers/process.js';

// ---------------------------------------------------------------------------------------------
// Fakes

class FakeTimers implements DmiTimers {
  private id = 0;
  readonly pending = new Map<number, () => void>();
  setTimeout(fn: () => void): unknown {
    this.pending.set(++this.id, fn);
    return this.id;
  }
  clearTimeout(h: unknown): void {
    this.pending.delete(h as number);
  }
  fire(): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const fn of all) fn();
  }
}

type DeviceListener = Parameters<TwinCore['onDeviceChange']>[0];
type ModelListener = Parameters<TwinCore['onModelChange']>[0];

/** TwinCore as the adapter sees it; report() checks device and property like the real one. */
class FakeCore implements TwinCore {
  entries = new Map<string, TwinEntry>();
  models = new Map<string, DeviceModel>();
  reports: { ns: string; name: string; twins: TwinUpdate[]; source: string }[] = [];
  states: { ns: string; name: string; state: string; source: string }[] = [];
  private dl = new Set<DeviceListener>();
  private ml = new Set<ModelListener>();

  list(): TwinEntry[] {
    return [...this.entries.values()];
  }
  get(ns: string, name: string): TwinEntry | undefined {
    return this.entries.get(`${ns}/${name}`);
  }
  async report(ns: string, name: string, twins: TwinUpdate[], source: 'mqtt' | 'dmi'): Promise<void> {
    const e = this.get(ns, name);
    if (!e) throw new DeviceUnknownError(`device ${ns}/${name} is not held on this node`);
    for (const t of twins) {
      if (!e.model?.spec.properties?.some((p) => p.name === t.propertyName)) throw new DeviceInvalidError(`property ${t.propertyName} is not in the model`);
    }
    this.reports.push({ ns, name, twins, source });
  }
  async reportState(ns: string, name: string, state: string, source: 'mqtt' | 'dmi'): Promise<void> {
    if (!this.get(ns, name)) throw new DeviceUnknownError(`device ${ns}/${name} is not held on this node`);
    this.states.push({ ns, name, state, source });
  }
  onDeviceChange(l: DeviceListener): () => void {
    this.dl.add(l);
    return () => this.dl.delete(l);
  }
  onModelChange(l: ModelListener): () => void {
    this.ml.add(l);
    return () => this.ml.delete(l);
  }
  /** Puts a model (as MetaManager applying it would), telling listeners when `emit`. */
  putModel(model: DeviceModel, emit = true): void {
    const existed = this.models.has(model.metadata.name!);
    this.models.set(model.metadata.name!, model);
    for (const e of this.entries.values()) if (e.device.spec.deviceModelRef?.name === model.metadata.name) e.model = model;
    if (emit) for (const l of this.ml) l({ op: existed ? 'update' : 'add', model });
  }
  putDevice(device: Device, emit = true): void {
    const key = `${device.metadata.namespace}/${device.metadata.name}`;
    const previous = this.entries.get(key);
    const entry: TwinEntry = { device, model: this.models.get(device.spec.deviceModelRef?.name ?? '') };
    this.entries.set(key, entry);
    const specChanged = JSON.stringify(previous?.device.spec) !== JSON.stringify(device.spec);
    if (emit) for (const l of this.dl) l({ op: previous ? 'update' : 'add', entry, previous, specChanged });
  }
  deleteDevice(name: string, ns = 'default'): void {
    const entry = this.entries.get(`${ns}/${name}`)!;
    this.entries.delete(`${ns}/${name}`);
    for (const l of this.dl) l({ op: 'delete', entry, specChanged: true });
  }
}

function model(name = 'thermo', protocol = 'virtualProtocol'): DeviceModel {
  return {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'DeviceModel',
    metadata: { name, namespace: 'default' },
    spec: {
      protocol,
      protocolConfigData: { vendor: 'acme', port: 502 },
      properties: [
        {
          name: 'temperature',
          type: 'INT',
          accessMode: 'ReadWrite',
          minimum: '0',
          maximum: '100',
          visitors: { protocolName: protocol, configData: { dataType: 'int', scale: 1 } },
        },
        { name: 'humidity', type: 'FLOAT', accessMode: 'ReadOnly', visitors: { protocolName: protocol, configData: { dataType: 'float' } } },
      ],
    },
  };
}

function device(name: string, opts: { protocol?: string; desired?: string; model?: string; extraProperty?: string } = {}): Device {
  const protocol = opts.protocol ?? 'virtualProtocol';
  const properties: NonNullable<Device['spec']['properties']> = [
    {
      name: 'temperature',
      desired: { value: opts.desired ?? '20' },
      visitors: { protocolName: protocol, configData: { min: 0 } },
      collectCycle: 1000,
      reportCycle: 1000,
      reportToCloud: true,
    },
    { name: 'humidity', reportToCloud: true },
  ];
  if (opts.extraProperty) properties.push({ name: opts.extraProperty, desired: { value: '1' }, visitors: { configData: { a: 1 } } });
  return {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'Device',
    metadata: { name, namespace: 'default', uid: `uid-${name}` },
    spec: { deviceModelRef: { name: opts.model ?? 'thermo' }, nodeName: 'edge-1', protocol: { protocolName: protocol, configData: { deviceID: 7 } }, properties },
  };
}

interface MapperCall {
  method: string;
  device?: DmiDevice;
  name?: string;
}

/** A mapper's DeviceMapperService, recording every call. */
async function startMapper(path: string): Promise<{ calls: MapperCall[]; server: GrpcServer; close(): Promise<void> }> {
  const calls: MapperCall[] = [];
  const record = <T>(method: string, name: string | undefined, res: T, device?: DmiDevice): T => {
    calls.push({ method, name, device });
    return res;
  };
  const handlers: DeviceMapperHandlers = {
    registerDevice: async (req) => record('RegisterDevice', req.device?.name, { deviceName: req.device?.name }, req.device),
    updateDevice: async (req) => record('UpdateDevice', req.device?.name, {}, req.device),
    removeDevice: async (req) => record('RemoveDevice', req.deviceName, {}),
    createDeviceModel: async (req) => record('CreateDeviceModel', req.model?.name, { deviceModelName: req.model?.name }),
    updateDeviceModel: async (req) => record('UpdateDeviceModel', req.model?.name, {}),
    removeDeviceModel: async (req) => record('RemoveDeviceModel', req.modelName, {}),
    getDevice: async (req) => {
      calls.push({ method: 'GetDevice', name: req.deviceName });
      throw new DmiError('framework mappers crash here', { grpcStatus: 13 });
    },
  };
  const server = await serveDeviceMapper(path, handlers);
  return { calls, server, close: () => server.close() };
}

const summary = (calls: MapperCall[]) => calls.map((c) => `${c.method} ${c.name}${c.device ? `=${c.device.spec?.properties?.[0]?.desired?.value}` : ''}`);

interface Harness {
  dir: string;
  core: FakeCore;
  adapter: DmiAdapter;
  timers: FakeTimers;
  lines: Record<string, unknown>[];
  dmiSock: string;
  mapperSock: string;
}

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function newDir(): string {
  const d = tempDir('ledge-dmi-');
  cleanups.push(d.cleanup);
  return d.path;
}

async function startAdapter(
  dir: string,
  core: FakeCore,
  extra: Partial<DmiAdapterOptions> = {},
  impl?: (o: DmiAdapterOptions, log: ReturnType<typeof createLogger>) => DmiAdapter,
): Promise<Harness> {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  const timers = new FakeTimers();
  const options: DmiAdapterOptions = {
    ...defaultDmiAdapterOptions,
    socketPath: join(dir, 'run', 'dmi.sock'),
    dataDir: dir,
    timers,
    random: () => 0.5,
    callTimeoutMs: 5000,
    ...extra,
  };
  const adapter = impl ? impl(options, log) : createDmiAdapter(options, core, log);
  await adapter.start();
  cleanups.push(() => adapter.close());
  return { dir, core, adapter, timers, lines, dmiSock: adapter.socketPath, mapperSock: join(dir, 'mapper.sock') };
}

async function register(h: Harness, opts: { withData?: boolean; protocol?: string; address?: string; name?: string } = {}) {
  const client = deviceManagerClient(h.dmiSock, { timeoutMs: 5000 });
  try {
    return await client.mapperRegister({
      withData: opts.withData ?? true,
      mapper: {
        name: opts.name ?? 'virtual-mapper',
        version: 'v1.0',
        apiVersion: 'v1beta1',
        protocol: opts.protocol ?? 'virtualProtocol',
        address: Buffer.from(opts.address ?? h.mapperSock),
        state: 'OK',
      },
    });
  } finally {
    client.close();
  }
}

async function rejectsWith(p: Promise<unknown>, status: number, re?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof DmiError, `a DmiError, got ${String(err)}`);
    assert.equal(err.grpcStatus, status, `status ${err.grpcStatus} (${err.message})`);
    if (re) assert.match(err.grpcMessage ?? err.message, re);
    return true;
  });
}

/** A core holding the thermo model, `good` (virtualProtocol), `other` (modbus) and `bad` (a property not in the model). */
function standardCore(): FakeCore {
  const core = new FakeCore();
  core.putModel(model(), false);
  core.putModel(model('modbus-model', 'modbus'), false);
  core.putDevice(device('good'), false);
  core.putDevice(device('other', { protocol: 'modbus', model: 'modbus-model' }), false);
  core.putDevice(device('bad', { extraProperty: 'pressure' }), false);
  return core;
}

// ---------------------------------------------------------------------------------------------

describe('DMI adapter: DeviceManagerService', () => {
  let h: Harness;
  before(async () => {
    h = await startAdapter(newDir(), standardCore());
  });

  it('MapperRegister withData answers the valid devices of that protocol with model defaults merged, and their models', async () => {
    const res = await register(h);
    assert.deepEqual(
      res.deviceList?.map((d) => d.name),
      ['good'],
      'only its protocol, and not the invalid device',
    );
    assert.deepEqual(
      res.modelList?.map((m) => m.name),
      ['thermo'],
    );
    const d = res.deviceList![0]!;
    assert.equal(d.namespace, 'default');
    assert.equal(d.spec?.deviceModelReference, 'thermo');
    assert.equal(d.spec?.protocol?.protocolName, 'virtualProtocol');
    assert.deepEqual(configDataFromDmi(d.spec?.protocol?.configData), { vendor: 'acme', port: 502, deviceID: 7 }, 'model protocolConfigData under the device’s own');
    const [temp, hum] = d.spec!.properties!;
    assert.deepEqual(configDataFromDmi(temp!.visitors?.configData), { dataType: 'int', scale: 1, min: 0 }, 'model visitors under the device’s own');
    assert.deepEqual(configDataFromDmi(hum!.visitors?.configData), { dataType: 'float' }, 'visitors from the model where the device has none');
    assert.equal(temp!.desired?.value, '20');
    assert.ok(hum!.desired, 'a property without desired is sent with an empty one (a framework mapper dereferences it)');
    assert.deepEqual(h.adapter.mappers(), [{ protocol: 'virtualProtocol', name: 'virtual-mapper', address: h.mapperSock }]);
  });

  it('an invalid device is listed by problems() and logged once, however often it changes', async () => {
    const p = h.adapter.problems();
    assert.equal(p.length, 1);
    assert.equal(p[0]!.key, 'default/bad');
    assert.equal(p[0]!.reason, 'invalid');
    assert.match(p[0]!.message, /"pressure": not in DeviceModel default\/thermo/);
    h.core.putDevice({ ...device('bad', { extraProperty: 'pressure' }), metadata: { name: 'bad', namespace: 'default', resourceVersion: '2' } });
    h.core.putDevice({ ...device('bad', { extraProperty: 'pressure' }), metadata: { name: 'bad', namespace: 'default', resourceVersion: '3' } });
    assert.equal(h.lines.filter((l) => String(l.msg).includes('default/bad') && l.level === 'warn').length, 1);
    assert.equal(h.lines.find((l) => String(l.msg).includes('default/bad'))?.code, 'LEDGE_ERR_DEVICE_INVALID');
  });

  it('ReportDeviceStatus goes to TwinCore.report (source dmi); ReportDeviceStates to reportState', async () => {
    const client = deviceManagerClient(h.dmiSock);
    cleanups.push(() => client.close());
    await client.reportDeviceStatus({
      deviceName: 'good',
      deviceNamespace: 'default',
      reportedDevice: {
        twins: [{ propertyName: 'temperature', reported: { value: '21', metadata: { timestamp: '1700000000000', type: 'int' } }, observedDesired: { value: '20' } }],
      },
    });
    assert.equal(h.core.reports.length, 1);
    const r = h.core.reports[0]!;
    assert.equal(r.source, 'dmi');
    assert.equal(`${r.ns}/${r.name}`, 'default/good');
    assert.equal(r.twins[0]!.propertyName, 'temperature');
    assert.equal(r.twins[0]!.reported?.value, '21');
    assert.equal(r.twins[0]!.observedDesired?.value, '20');
    // A mapper that sends no namespace means "default" (KubeEdge's resource id).
    await client.reportDeviceStates({ deviceName: 'good', state: 'online' });
    assert.deepEqual(h.core.states, [{ ns: 'default', name: 'good', state: 'online', source: 'dmi' }]);
  });

  it('an unknown device is answered NOT_FOUND, an invalid report INVALID_ARGUMENT; nothing reaches the core', async () => {
    const client = deviceManagerClient(h.dmiSock);
    cleanups.push(() => client.close());
    const before = h.core.reports.length;
    await rejectsWith(
      client.reportDeviceStatus({ deviceName: 'ghost', deviceNamespace: 'default', reportedDevice: { twins: [{ propertyName: 'temperature', reported: { value: '1' } }] } }),
      5,
      /ghost/,
    );
    await rejectsWith(client.reportDeviceStates({ deviceName: 'ghost', deviceNamespace: 'default', state: 'online' }), 5);
    await rejectsWith(
      client.reportDeviceStatus({ deviceName: 'good', deviceNamespace: 'default', reportedDevice: { twins: [{ propertyName: 'pressure', reported: { value: '1' } }] } }),
      3,
      /pressure/,
    );
    await rejectsWith(client.reportDeviceStatus({ deviceName: 'good', deviceNamespace: 'default', reportedDevice: { twins: [] } }), 3, /twins/);
    await rejectsWith(client.reportDeviceStatus({ deviceName: '', reportedDevice: { twins: [{ propertyName: 'temperature' }] } }), 3, /deviceName/);
    await rejectsWith(client.reportDeviceStates({ deviceName: 'good', state: '' }), 3, /state/);
    assert.equal(h.core.reports.length, before);
    // Logged once per device and problem, not per report.
    await rejectsWith(
      client.reportDeviceStatus({ deviceName: 'ghost', deviceNamespace: 'default', reportedDevice: { twins: [{ propertyName: 'temperature', reported: { value: '1' } }] } }),
      5,
    );
    assert.equal(
      h.lines.filter((l) => String(l.msg).includes('report for device default/ghost')).length,
      1,
      'one line per device and problem (the state report has the same code), none for the repeat',
    );
  });

  it('MapperRegister without protocol or address is refused with INVALID_ARGUMENT', async () => {
    await rejectsWith(register(h, { protocol: '' }), 3, /protocol/);
    await rejectsWith(register(h, { protocol: 'x', address: '' }), 3, /address/);
    await rejectsWith(register(h, { protocol: 'x', address: `/tmp/${'a'.repeat(200)}.sock` }), 3, /address/);
    assert.equal(h.adapter.mappers().length, 1);
  });

  it('a registration for one protocol more than maxMappers is refused with RESOURCE_EXHAUSTED; re-registering a known one is not', async () => {
    const h2 = await startAdapter(newDir(), standardCore(), { maxMappers: 1 });
    await register(h2);
    await rejectsWith(register(h2, { protocol: 'modbus', address: join(h2.dir, 'modbus.sock') }), 8, /at most 1/);
    await register(h2, { address: join(h2.dir, 'moved.sock') });
    assert.deepEqual(
      h2.adapter.mappers().map((m) => m.address),
      [join(h2.dir, 'moved.sock')],
    );
  });
});

describe('DMI adapter: downstream to the mapper', () => {
  it('RegisterDevice for a new device, UpdateDevice only when the spec changed, RemoveDevice on delete, never GetDevice', async () => {
    const dir = newDir();
    const h = await startAdapter(dir, standardCore());
    const mapper = await startMapper(h.mapperSock);
    cleanups.push(() => mapper.close());
    await register(h);
    h.core.putDevice(device('new1'));
    await eventually(() => mapper.calls.length >= 1, 10_000, 'RegisterDevice');
    assert.deepEqual(summary(mapper.calls), ['RegisterDevice new1=20'], 'its model was in the registration answer: not sent again');
    // Metadata only: nothing. Then a desired change: UpdateDevice with the new value.
    const relabeled = device('good');
    relabeled.metadata.labels = { room: 'b' };
    relabeled.metadata.resourceVersion = '9';
    h.core.putDevice(relabeled);
    h.core.putDevice(device('good', { desired: '30' }));
    await eventually(() => mapper.calls.length >= 2, 10_000, 'UpdateDevice');
    assert.deepEqual(summary(mapper.calls).slice(1), ['UpdateDevice good=30']);
    // A device of another protocol does not reach this mapper; the invalid one is not sent.
    h.core.putDevice(device('other', { protocol: 'modbus', model: 'modbus-model', desired: '99' }));
    h.core.putDevice(device('bad', { extraProperty: 'pressure', desired: '31' }));
    h.core.deleteDevice('new1');
    await eventually(() => mapper.calls.length >= 3, 10_000, 'RemoveDevice');
    assert.deepEqual(summary(mapper.calls).slice(2), ['RemoveDevice new1']);
    // The invalid device fixed: it is sent, and no longer listed as a problem.
    assert.equal(h.adapter.problems().length, 1);
    h.core.putDevice(device('bad', { desired: '32' }));
    await eventually(() => mapper.calls.length >= 4, 10_000, 'RegisterDevice bad');
    assert.deepEqual(summary(mapper.calls).slice(3), ['RegisterDevice bad=32']);
    assert.deepEqual(h.adapter.problems(), []);
    // A model change (a range, and visitors that are merged into the devices) updates the model, then its devices.
    const m2 = model();
    m2.spec.properties![0]!.visitors!.configData = { dataType: 'int', scale: 10 };
    m2.spec.properties![0]!.maximum = '200';
    h.core.putModel(m2);
    await eventually(() => mapper.calls.length >= 7, 10_000, 'UpdateDeviceModel + UpdateDevice ×2');
    assert.deepEqual(summary(mapper.calls).slice(4), ['UpdateDeviceModel thermo', 'UpdateDevice good=30', 'UpdateDevice bad=32']);
    assert.equal(configDataFromDmi(mapper.calls[5]!.device?.spec?.properties?.[0]?.visitors?.configData)?.scale, 10, 'the model’s new visitors merged in');
    assert.ok(!mapper.calls.some((c) => c.method === 'GetDevice'));
  });

  it('the registry survives a restart: the recorded mapper gets its devices again (UpdateDevice where the spec changed meanwhile)', async () => {
    const dir = newDir();
    const core = standardCore();
    core.putDevice(device('two'), false);
    const h1 = await startAdapter(dir, core);
    await register(h1);
    await h1.adapter.close();
    const file = JSON.parse(readFileSync(join(dir, 'devicetwin', 'mappers.json'), 'utf8')) as {
      version: number;
      mappers: { protocol: string; address: string; devices: Record<string, string> }[];
    };
    assert.equal(file.version, 1);
    assert.equal(file.mappers[0]!.protocol, 'virtualProtocol');
    assert.deepEqual(Object.keys(file.mappers[0]!.devices).sort(), ['default/good', 'default/two']);

    // EdgeCore restarts; meanwhile `two` got a new desired value (stored by MetaManager before the crash).
    const core2 = standardCore();
    core2.putDevice(device('two', { desired: '42' }), false);
    const mapper = await startMapper(join(dir, 'mapper.sock'));
    cleanups.push(() => mapper.close());
    const h2 = await startAdapter(dir, core2);
    assert.deepEqual(h2.adapter.mappers(), [{ protocol: 'virtualProtocol', name: 'virtual-mapper', address: join(dir, 'mapper.sock') }]);
    await eventually(() => mapper.calls.length >= 2, 10_000, 'devices sent again');
    assert.deepEqual(summary(mapper.calls).sort(), ['RegisterDevice good=20', 'UpdateDevice two=42']);
  });

  it('a recorded mapper that is not there yet is retried with backoff and then gets the latest spec', async () => {
    const dir = newDir();
    const h1 = await startAdapter(dir, standardCore());
    await register(h1);
    await h1.adapter.close();

    const core = standardCore();
    const h2 = await startAdapter(dir, core);
    // The mapper is not listening: the first attempt fails and a retry waits on the (fake) timer.
    await eventually(() => h2.timers.pending.size > 0, 10_000, 'a retry scheduled');
    assert.ok(h2.lines.some((l) => l.level === 'warn' && String(l.msg).includes('cannot be reached')));
    core.putDevice(device('good', { desired: '25' }));
    core.putDevice(device('good', { desired: '26' }));
    const mapper = await startMapper(h2.mapperSock);
    cleanups.push(() => mapper.close());
    h2.timers.fire();
    await eventually(() => mapper.calls.length >= 1, 10_000, 'the device');
    await turns();
    assert.deepEqual(summary(mapper.calls), ['UpdateDevice good=26'], 'one call, with the latest spec');
  });

  it('a call the mapper does not answer within callTimeoutMs is retried', async () => {
    const dir = newDir();
    const h = await startAdapter(dir, standardCore(), { callTimeoutMs: 300 });
    let answer = false;
    const seen: string[] = [];
    const hang = () => new Promise<never>(() => {});
    const server = await serveDeviceMapper(h.mapperSock, {
      registerDevice: async (req) => {
        seen.push(`RegisterDevice ${req.device?.name}`);
        return answer ? { deviceName: req.device?.name } : hang();
      },
      updateDevice: hang,
      removeDevice: hang,
      createDeviceModel: hang,
      updateDeviceModel: hang,
      removeDeviceModel: hang,
      getDevice: hang,
    });
    cleanups.push(() => server.close());
    await register(h);
    h.core.putDevice(device('slow'));
    await eventually(() => h.timers.pending.size > 0, 10_000, 'a retry after DEADLINE_EXCEEDED');
    assert.ok(
      h.lines.some((l) => l.level === 'warn' && l.grpcStatus === 4),
      'logged with DEADLINE_EXCEEDED',
    );
    answer = true;
    h.timers.fire();
    await eventually(() => seen.length >= 2, 10_000, 'the second attempt');
    assert.deepEqual(seen, ['RegisterDevice slow', 'RegisterDevice slow']);
    await eventually(() => h.lines.some((l) => String(l.msg).includes('reachable again')), 10_000, 'success');
  });

  it('a mapper that registers again after a restart gets its devices in the answer, and no calls are left for it', async () => {
    const dir = newDir();
    const h1 = await startAdapter(dir, standardCore());
    await register(h1);
    await h1.adapter.close();
    const core = standardCore();
    core.putDevice(device('good', { desired: '50' }), false);
    const h2 = await startAdapter(dir, core);
    await eventually(() => h2.timers.pending.size > 0, 10_000, 'the replay waiting for the mapper');
    const res = await register(h2);
    assert.deepEqual(
      res.deviceList?.map((d) => `${d.name}=${d.spec?.properties?.[0]?.desired?.value}`),
      ['good=50'],
    );
    const mapper = await startMapper(h2.mapperSock);
    cleanups.push(() => mapper.close());
    h2.timers.fire();
    // Something ordered after any leftover call: a new device.
    core.putDevice(device('later'));
    await eventually(() => mapper.calls.length >= 1, 10_000, 'RegisterDevice later');
    assert.deepEqual(summary(mapper.calls), ['RegisterDevice later=20']);
  });

  it('MapperRegister without withData: the mapper gets its models and devices by calls', async () => {
    const dir = newDir();
    const h = await startAdapter(dir, standardCore());
    const mapper = await startMapper(h.mapperSock);
    cleanups.push(() => mapper.close());
    const res = await register(h, { withData: false });
    assert.deepEqual(res.deviceList ?? [], []);
    await eventually(() => mapper.calls.length >= 2, 10_000, 'model and device');
    assert.deepEqual(summary(mapper.calls), ['CreateDeviceModel thermo', 'RegisterDevice good=20']);
  });

  it('a device moved to another protocol is removed from the old mapper and registered with the new one', async () => {
    const dir = newDir();
    const h = await startAdapter(dir, standardCore());
    const virt = await startMapper(h.mapperSock);
    const modbus = await startMapper(join(dir, 'modbus.sock'));
    cleanups.push(
      () => virt.close(),
      () => modbus.close(),
    );
    await register(h);
    await register(h, { protocol: 'modbus', name: 'modbus-mapper', address: join(dir, 'modbus.sock') });
    h.core.putDevice(device('good', { protocol: 'modbus', model: 'modbus-model' }));
    await eventually(() => virt.calls.length >= 1 && modbus.calls.length >= 1, 10_000, 'both mappers told');
    assert.deepEqual(summary(virt.calls), ['RemoveDevice good']);
    assert.deepEqual(summary(modbus.calls), ['RegisterDevice good=20']);
  });
});

describe('DMI adapter: registry file and socket', () => {
  it('MapperRegister is answered only once the registry is durable (fsync)', async () => {
    const dir = newDir();
    const ctl = controlledSync();
    const core = standardCore();
    const h = await startAdapter(dir, core, {}, (o, log) => new DmiAdapterImpl(o, core, log, ctl.openFile));
    ctl.mode = 'hold';
    const answered = track(register(h));
    await eventually(() => ctl.held.length > 0, 10_000, 'the registry fsync');
    await turns();
    assert.equal(answered.settled, false, 'not answered before the fsync');
    ctl.mode = 'pass';
    await ctl.held[0]!.release();
    const res = await within(answered.value, 10_000, 'the answer');
    assert.equal(res.deviceList?.length, 1);
    assert.ok(
      ctl.calls.some((p) => p.includes('mappers.json.tmp')),
      'the temporary file is fsynced',
    );
    assert.ok(existsSync(join(dir, 'devicetwin', 'mappers.json')));
    assert.ok(!existsSync(join(dir, 'devicetwin', `mappers.json.tmp-${process.pid}`)), 'renamed into place');
  });

  it('a registration that cannot be recorded is refused (UNAVAILABLE), the mapper may try again', async () => {
    const dir = newDir();
    const ctl = controlledSync();
    const core = standardCore();
    const h = await startAdapter(dir, core, {}, (o, log) => new DmiAdapterImpl(o, core, log, ctl.openFile));
    ctl.mode = 'fail';
    await rejectsWith(register(h), 14, /record/);
    ctl.mode = 'pass';
    const res = await register(h);
    assert.equal(res.deviceList?.length, 1);
  });

  it('a corrupt registry is kept aside and the adapter starts without recorded mappers', async () => {
    const dir = newDir();
    mkdirSync(join(dir, 'devicetwin'), { recursive: true });
    writeFileSync(join(dir, 'devicetwin', 'mappers.json'), '{"version":1,"mappers":[');
    const h = await startAdapter(dir, standardCore());
    assert.deepEqual(h.adapter.mappers(), []);
    assert.ok(existsSync(join(dir, 'devicetwin', 'mappers.json.bad')));
    assert.equal(h.lines.filter((l) => l.level === 'error').length, 1);
  });

  it('a stale socket file at the DMI path is replaced', async () => {
    const dir = newDir();
    const sock = join(dir, 'run', 'dmi.sock');
    mkdirSync(join(dir, 'run'));
    // A server killed with SIGKILL leaves its socket file behind.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await within(new Promise((r) => child.stdout.once('data', r)), 10_000, 'the stale server');
    child.kill('SIGKILL');
    await within(new Promise((r) => child.once('exit', r)), 10_000, 'its exit');
    assert.ok(lstatSync(sock).isSocket());
    const h = await startAdapter(dir, standardCore());
    assert.equal(h.adapter.socketPath, sock);
    const res = await register(h);
    assert.equal(res.deviceList?.length, 1);
  });

  it('falls back to <dataDir>/dmi.sock, with one warn line, when the socket directory cannot be created', async () => {
    const dir = newDir();
    writeFileSync(join(dir, 'not-a-dir'), '');
    const h = await startAdapter(dir, standardCore(), { socketPath: join(dir, 'not-a-dir', 'kubeedge', 'dmi.sock') });
    assert.equal(h.adapter.socketPath, join(dir, 'dmi.sock'));
    const warns = h.lines.filter((l) => l.level === 'warn' && String(l.msg).includes('dmi.sock'));
    assert.equal(warns.length, 1, JSON.stringify(warns));
    assert.match(String(warns[0]!.msg), /not-a-dir.*dmi\.sock/);
    const res = await register(h);
    assert.equal(res.deviceList?.length, 1);
  });

  it('a socketPath naming a directory gets dmi.sock in it (KubeEdge’s dmiSockPath)', async () => {
    const dir = newDir();
    const h = await startAdapter(dir, standardCore(), { socketPath: join(dir, 'kubeedge') });
    assert.equal(h.adapter.socketPath, join(dir, 'kubeedge', 'dmi.sock'));
  });
});

describe('DMI adapter: wire level with grpc-js', () => {
  it('a mapper served by @grpc/grpc-js (proto-loader on dmi.proto) gets RegisterDevice with wrapper-typed configData', async () => {
    const dir = newDir();
    const h = await startAdapter(dir, standardCore());
    const def = protoLoader.loadSync(join(repoRoot, 'shared/dmi/dmi.proto'), { keepCase: true, longs: Number, defaults: false, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { v1beta1: { DeviceMapperService: { service: grpc.ServiceDefinition } } };
    const got: { method: string; req: Record<string, unknown> }[] = [];
    const unary =
      (method: string, res: object = {}) =>
      (call: grpc.ServerUnaryCall<Record<string, unknown>, object>, cb: grpc.sendUnaryData<object>) => {
        got.push({ method, req: call.request });
        cb(null, res);
      };
    const server = new grpc.Server();
    server.addService(pkg.v1beta1.DeviceMapperService.service, {
      RegisterDevice: unary('RegisterDevice'),
      UpdateDevice: unary('UpdateDevice'),
      RemoveDevice: unary('RemoveDevice'),
      CreateDeviceModel: unary('CreateDeviceModel'),
      UpdateDeviceModel: unary('UpdateDeviceModel'),
      RemoveDeviceModel: unary('RemoveDeviceModel'),
      GetDevice: unary('GetDevice'),
    });
    const sock = join(dir, 'grpcjs.sock');
    await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
    cleanups.push(() => new Promise<void>((r) => server.tryShutdown(() => r())));
    await register(h, { withData: false, address: sock });
    await eventually(() => got.length >= 2, 10_000, 'CreateDeviceModel and RegisterDevice at the grpc-js mapper');
    assert.deepEqual(
      got.map((g) => g.method),
      ['CreateDeviceModel', 'RegisterDevice'],
    );
    type AnyMsg = { type_url: string; value: Buffer };
    const dev = (
      got[1]!.req as {
        device: {
          name: string;
          namespace: string;
          spec: {
            deviceModelReference: string;
            protocol: { protocolName: string; configData: { data: Record<string, AnyMsg> } };
            properties: { name: string; desired: { value: string }; visitors: { configData: { data: Record<string, AnyMsg> } }; collectCycle: number }[];
          };
        };
      }
    ).device;
    assert.equal(dev.name, 'good');
    assert.equal(dev.namespace, 'default');
    assert.equal(dev.spec.deviceModelReference, 'thermo');
    assert.equal(dev.spec.protocol.protocolName, 'virtualProtocol');
    const id = dev.spec.protocol.configData.data.deviceID!;
    assert.equal(id.type_url, 'type.googleapis.com/google.protobuf.Int32Value');
    assert.deepEqual([...id.value], [0x08, 7], 'Int32Value{value: 7}');
    const dt = dev.spec.properties[0]!.visitors.configData.data.dataType!;
    assert.equal(dt.type_url, 'type.googleapis.com/google.protobuf.StringValue');
    assert.equal(Buffer.from(dt.value).subarray(2).toString(), 'int');
    assert.equal(dev.spec.properties[0]!.desired.value, '20');
    assert.equal(dev.spec.properties[0]!.collectCycle, 1000);
    assert.ok(dev.spec.properties[1]!.desired, 'desired present on the wire for the property that had none');
    assert.ok(dev.spec.properties[1]!.visitors.configData, 'visitors.configData present on the wire');
  });
});
