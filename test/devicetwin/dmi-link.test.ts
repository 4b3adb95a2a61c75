/**
 * The DMI adapter's per-mapper scheduling (edge/devicetwin/dmi/link.ts) with a fake mapper
 * client and fake timers: calls in order, model before device, latest spec wins, retried with
 * backoff while unreachable, refused calls not repeated, replay after a restart.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DeviceMapperClient, DmiDevice } from '../../shared/dmi/index.js';
import { DmiError } from '../../shared/errors/index.js';
import { createLogger } from '../../shared/log/index.js';
import { type CallKind, type DeviceSlot, MapperLink, type ModelSlot, type World } from '../../edge/devicetwin/dmi/link.js';
import type { DmiTimers } from '../../edge/devicetwin/dmi/options.js';
import type { MapperRecord } from '../../edge/devicetwin/dmi/registry.js';
import { turns } from '../helpers/fsync.js';

class FakeTimers implements DmiTimers {
  private id = 0;
  readonly pending = new Map<number, { fn: () => void; ms: number }>();
  readonly delays: number[] = [];
  setTimeout(fn: () => void, ms: number): unknown {
    this.pending.set(++this.id, { fn, ms });
    this.delays.push(ms);
    return this.id;
  }
  clearTimeout(h: unknown): void {
    this.pending.delete(h as number);
  }
  fire(): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const t of all) t.fn();
  }
}

type Mode = 'ok' | 'unavailable' | 'refuse' | 'hold';
interface Call {
  method: CallKind;
  key: string;
  desired?: string;
}

/** A mapper client whose answers the test decides; records every call. */
class FakeMapper {
  mode: Mode = 'ok';
  calls: Call[] = [];
  held: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  connects = 0;
  closes = 0;

  factory = (_path: string) => {
    this.connects++;
    const call =
      (method: CallKind) =>
      (req: { device?: DmiDevice; model?: { name?: string; namespace?: string }; deviceName?: string; deviceNamespace?: string; modelName?: string; modelNamespace?: string }) => {
        const key = req.device
          ? `${req.device.namespace}/${req.device.name}`
          : req.model
            ? `${req.model.namespace}/${req.model.name}`
            : `${req.deviceNamespace ?? req.modelNamespace}/${req.deviceName ?? req.modelName}`;
        if (this.mode === 'unavailable') return Promise.reject(new DmiError('connect ENOENT', { grpcStatus: 14 }));
        this.calls.push({ method, key, desired: req.device?.spec?.properties?.[0]?.desired?.value });
        if (this.mode === 'refuse') return Promise.reject(new DmiError('deviceModel not found', { grpcStatus: 2 }));
        if (this.mode === 'hold') return new Promise((resolve, reject) => this.held.push({ resolve: () => resolve({}), reject }));
        return Promise.resolve({});
      };
    const client = {
      registerDevice: call('RegisterDevice'),
      updateDevice: call('UpdateDevice'),
      removeDevice: call('RemoveDevice'),
      createDeviceModel: call('CreateDeviceModel'),
      updateDeviceModel: call('UpdateDeviceModel'),
      removeDeviceModel: call('RemoveDeviceModel'),
      getDevice: () => {
        throw new Error('GetDevice must never be called');
      },
      close: () => void this.closes++,
    };
    return client as unknown as DeviceMapperClient & { close(): void };
  };
}

class FakeWorld implements World {
  devices = new Map<string, DeviceSlot>();
  models = new Map<string, ModelSlot>();
  dmi = new Map<string, DmiDevice>();
  device(k: string) {
    return this.devices.get(k);
  }
  model(k: string) {
    return this.models.get(k);
  }
  dmiDevice(k: string) {
    return this.devices.get(k)?.fingerprint ? this.dmi.get(k) : undefined;
  }
  modelWanted(p: string, k: string) {
    return this.models.get(k)?.protocol === p || [...this.devices.values()].some((d) => d.protocol === p && d.modelKey === k && d.fingerprint);
  }
  /** A valid device of `protocol` whose spec is summed up by `desired` (its fingerprint). */
  put(name: string, desired: string, protocol = 'P', model = 'default/m'): void {
    const dmi: DmiDevice = { name, namespace: 'default', spec: { protocol: { protocolName: protocol }, properties: [{ name: 't', desired: { value: desired } }] } };
    this.devices.set(`default/${name}`, { key: `default/${name}`, namespace: 'default', name, protocol, modelKey: model, fingerprint: `${protocol}:${desired}` });
    this.dmi.set(`default/${name}`, dmi);
  }
  putModel(key: string, fp = 'm1', protocol = 'P'): void {
    const [namespace, name] = key.split('/') as [string, string];
    this.models.set(key, { key, namespace, name, protocol, dmi: { name, namespace }, fingerprint: fp });
  }
}

function record(protocol = 'P', devices: Record<string, string> = {}, models: Record<string, string> = {}): MapperRecord {
  return { protocol, name: `mapper-${protocol}`, version: '1', apiVersion: 'v1beta1', address: `/tmp/${protocol}.sock`, state: 'OK', registeredAt: '', devices, models };
}

function setup(rec = record()) {
  const world = new FakeWorld();
  world.putModel('default/m');
  const mapper = new FakeMapper();
  const timers = new FakeTimers();
  const refusals: { key: string; message: string | undefined }[] = [];
  let delivered = 0;
  const lines: string[] = [];
  const link = new MapperLink(rec, world, {
    callTimeoutMs: 1000,
    retryBaseMs: 100,
    retryMaxMs: 800,
    timers,
    random: () => 0.999,
    connect: mapper.factory,
    log: createLogger({ level: 'debug', format: 'json', write: (l) => void lines.push(l) }),
    onDelivered: () => void delivered++,
    onRefused: (_kind, key, _p, message) => void refusals.push({ key, message }),
  });
  return { world, mapper, timers, link, refusals, lines, delivered: () => delivered };
}

const methods = (m: FakeMapper) => m.calls.map((c) => `${c.method} ${c.key}${c.desired !== undefined ? `=${c.desired}` : ''}`);

describe('DMI mapper link', () => {
  it('sends the model before its first device, then only what changed, in order', async () => {
    const { world, mapper, link } = setup();
    world.put('a', '1');
    world.put('b', '1');
    link.touch('d:default/a');
    link.touch('d:default/b');
    await turns();
    assert.deepEqual(methods(mapper), ['CreateDeviceModel default/m', 'RegisterDevice default/a=1', 'RegisterDevice default/b=1']);
    // Touched again without a change: nothing to send.
    link.touch('d:default/a');
    await turns();
    assert.equal(mapper.calls.length, 3);
    world.put('b', '2');
    world.put('a', '2');
    link.touch('d:default/b');
    link.touch('d:default/a');
    await turns();
    assert.deepEqual(methods(mapper).slice(3), ['UpdateDevice default/b=2', 'UpdateDevice default/a=2']);
    world.devices.delete('default/a');
    link.touch('d:default/a');
    await turns();
    assert.deepEqual(methods(mapper).slice(5), ['RemoveDevice default/a']);
    assert.ok(!mapper.calls.some((c) => (c.method as string) === 'GetDevice'));
  });

  it('retries with growing backoff while the mapper is unreachable; when it comes up it gets only the latest spec', async () => {
    const { world, mapper, timers, link, lines } = setup();
    world.put('a', '1');
    mapper.mode = 'unavailable';
    link.touch('d:default/a');
    await turns();
    assert.ok(link.waiting(), 'a retry is scheduled');
    for (const v of ['2', '3', '4']) {
      world.put('a', v);
      link.touch('d:default/a');
    }
    await turns();
    assert.equal(mapper.calls.length, 0, 'nothing is sent while waiting for the retry');
    timers.fire();
    await turns();
    timers.fire();
    await turns();
    timers.fire();
    await turns();
    timers.fire();
    await turns();
    // 100, 200, 400, 800, capped (full jitter with random≈1 gives just under the ceiling).
    assert.deepEqual(
      timers.delays.map((d) => Math.round(d / 100)),
      [1, 2, 4, 8, 8],
    );
    assert.equal(lines.filter((l) => l.includes('cannot be reached')).length, 1, 'logged once per outage');
    mapper.mode = 'ok';
    timers.fire();
    await turns();
    assert.deepEqual(methods(mapper), ['CreateDeviceModel default/m', 'RegisterDevice default/a=4']);
    assert.ok(!link.waiting());
    assert.equal(lines.filter((l) => l.includes('reachable again')).length, 1);
    assert.ok(mapper.closes >= 1, 'the broken session is dropped before retrying');
  });

  it('a device changed while its call is in flight is sent again with the latest spec, once', async () => {
    const { world, mapper, link } = setup();
    world.put('a', '1');
    link.touch('d:default/a');
    await turns();
    mapper.mode = 'hold';
    world.put('a', '2');
    link.touch('d:default/a');
    await turns();
    assert.equal(mapper.held.length, 1);
    world.put('a', '3');
    link.touch('d:default/a');
    world.put('a', '4');
    link.touch('d:default/a');
    mapper.mode = 'ok';
    mapper.held[0]!.resolve();
    await turns();
    assert.deepEqual(methods(mapper), ['CreateDeviceModel default/m', 'RegisterDevice default/a=1', 'UpdateDevice default/a=2', 'UpdateDevice default/a=4']);
    assert.equal(link.pending(), 0);
  });

  it('a refused call is reported, not repeated for the same spec, and tried again for a new one', async () => {
    const { world, mapper, link, refusals } = setup();
    world.put('a', '1');
    link.touch('d:default/a');
    await turns();
    mapper.mode = 'refuse';
    world.put('a', '2');
    link.touch('d:default/a');
    await turns();
    assert.equal(refusals.length, 1);
    assert.match(refusals[0]!.message ?? '', /refused UpdateDevice.*deviceModel not found/);
    assert.ok(!link.waiting(), 'a refusal is not retried with backoff');
    link.touch('d:default/a');
    await turns();
    assert.equal(mapper.calls.length, 3, 'the same spec is not sent again');
    mapper.mode = 'ok';
    world.put('a', '3');
    link.touch('d:default/a');
    await turns();
    assert.deepEqual(methods(mapper).at(-1), 'UpdateDevice default/a=3');
    assert.deepEqual(refusals.at(-1), { key: 'default/a', message: undefined }, 'the problem is cleared');
  });

  it('one device refused does not hold back the others', async () => {
    const { world, mapper, link } = setup();
    world.put('a', '1');
    world.put('b', '1');
    link.touch('m:default/m');
    await turns();
    mapper.mode = 'refuse';
    link.touch('d:default/a');
    await turns();
    mapper.mode = 'ok';
    link.touch('d:default/b');
    await turns();
    assert.deepEqual(methods(mapper), ['CreateDeviceModel default/m', 'RegisterDevice default/a=1', 'RegisterDevice default/b=1']);
  });

  it('an invalid device is not sent, and what the mapper has of it is left alone', async () => {
    const { world, mapper, link } = setup();
    world.put('a', '1');
    link.touch('d:default/a');
    await turns();
    world.devices.set('default/a', { key: 'default/a', namespace: 'default', name: 'a', protocol: 'P', modelKey: 'default/m', problem: 'property x not in model' });
    link.touch('d:default/a');
    await turns();
    assert.equal(mapper.calls.length, 2, 'neither UpdateDevice nor RemoveDevice');
  });

  it('a device moved to another protocol is removed from this mapper', async () => {
    const { world, mapper, link } = setup();
    world.put('a', '1');
    link.touch('d:default/a');
    await turns();
    world.put('a', '1', 'Q');
    link.touch('d:default/a');
    await turns();
    assert.deepEqual(methods(mapper).at(-1), 'RemoveDevice default/a');
  });

  it('after a restart: RegisterDevice where the mapper has the spec, UpdateDevice where it changed, RemoveDevice for what is gone', async () => {
    const { world, mapper, link } = setup(record('P', { 'default/same': 'P:1', 'default/changed': 'P:1', 'default/gone': 'P:1' }, { 'default/m': 'm1' }));
    world.put('same', '1');
    world.put('changed', '2');
    world.put('new', '1');
    for (const k of ['default/same', 'default/changed', 'default/new']) link.replay.add(k);
    link.modelReplay.add('default/m');
    for (const i of ['m:default/m', 'd:default/same', 'd:default/changed', 'd:default/new', 'd:default/gone']) link.touch(i);
    await turns();
    assert.deepEqual(methods(mapper), ['RegisterDevice default/same=1', 'UpdateDevice default/changed=2', 'RegisterDevice default/new=1', 'RemoveDevice default/gone']);
    assert.deepEqual(link.snapshot().devices, { 'default/same': 'P:1', 'default/changed': 'P:2', 'default/new': 'P:1' });
  });

  it('a changed model is sent with CreateDeviceModel after a restart (UpdateDeviceModel fails for a model a mapper lacks)', async () => {
    const { world, mapper, link } = setup(record('P', {}, { 'default/m': 'old' }));
    world.put('a', '1');
    link.modelReplay.add('default/m');
    link.touch('m:default/m');
    await turns();
    assert.deepEqual(methods(mapper), ['CreateDeviceModel default/m']);
    world.putModel('default/m', 'm2');
    link.touch('m:default/m');
    await turns();
    assert.deepEqual(methods(mapper).at(-1), 'UpdateDeviceModel default/m');
  });

  it('re-registration drops what was queued or in flight for the old session', async () => {
    const { world, mapper, timers, link } = setup();
    world.put('a', '1');
    mapper.mode = 'hold';
    link.touch('d:default/a');
    await turns();
    assert.equal(mapper.held.length, 1, 'CreateDeviceModel in flight');
    // The mapper restarted and was answered with its devices (withData).
    link.reset(record(), new Map([['default/a', 'P:1']]), new Map([['default/m', 'm1']]), []);
    mapper.mode = 'ok';
    mapper.held[0]!.reject(new DmiError('gone', { grpcStatus: 14 }));
    await turns();
    assert.ok(!link.waiting(), 'the old session’s failure schedules nothing');
    assert.equal(timers.pending.size, 0);
    assert.deepEqual(methods(mapper), ['CreateDeviceModel default/m'], 'nothing more: the mapper has device a from its answer');
  });
});
