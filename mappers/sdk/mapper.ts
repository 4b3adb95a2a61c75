/**
 * @module
 * The mapper: serves DeviceMapperService on its own socket, registers with EdgeCore
 * (MapperRegister withData, retried until EdgeCore's DMI socket answers — KubeEdge's mappers
 * wait forever too), runs the devices EdgeCore hands it, and follows EdgeCore's
 * RegisterDevice / UpdateDevice / RemoveDevice and device model calls.
 *
 * Differences from mapper-framework, on purpose: a RegisterDevice for a device already held
 * with another spec restarts it (mapper-framework ignores it, so a spec changed while EdgeCore
 * was down is never applied); a device whose model has not arrived yet waits for it instead of
 * being refused; RemoveDevice of an unknown device is OK (idempotent); GetDevice works.
 */
import { backoff } from '../../shared/backoff/index.js';
import { type Device, type DeviceModel, deviceKey } from '../../shared/devices/index.js';
import {
  type DeviceManagerClient,
  type DeviceMapperHandlers,
  type DmiDevice,
  type DmiDeviceModel,
  type GrpcServer,
  deviceManagerClient,
  deviceToDmi,
  dmiToDevice,
  dmiToModel,
  serveDeviceMapper,
  twinsToDmi,
} from '../../shared/dmi/index.js';
import { DeviceInvalidError, DmiError, StoppedError, errorCode, errorMessage } from '../../shared/errors/index.js';
import { type Logger, silentLogger } from '../../shared/log/index.js';
import { DeviceRunner, type DeviceRunState, Limiter, type ReportSink, type ReportedTwin, type RunnerDeps } from './device.js';
import { type Clock, type MapperOptions, type MapperTuning, defaultMapperOptions, systemClock } from './options.js';
import { Problems } from './problems.js';

/** The gRPC status codes the mapper answers with or decides on. */
const Status = { InvalidArgument: 3, NotFound: 5, PermissionDenied: 7, ResourceExhausted: 8, Unimplemented: 12, Unauthenticated: 16 } as const;

/** MapperRegister refusals that retrying cannot fix: start() fails (mapper-framework exits on any refusal). */
const PERMANENT_REGISTER_FAILURES: ReadonlySet<number> = new Set([Status.InvalidArgument, Status.PermissionDenied, Status.Unimplemented, Status.Unauthenticated]);

/** One device the mapper holds, as {@link Mapper.devices} shows it. */
export interface MapperDevice {
  namespace: string;
  name: string;
  /** `waiting-for-model`: registered, but its DeviceModel has not arrived (CreateDeviceModel starts it). */
  state: DeviceRunState | 'waiting-for-model';
  device: Device;
  model?: DeviceModel;
  /** Latest readings, with the desired values written (observedDesired). */
  twins: ReportedTwin[];
}

export interface Mapper {
  /**
   * Serves DeviceMapperService, registers with EdgeCore (waiting as long as it takes: stop()
   * ends the wait, and start() then rejects with StoppedError) and starts the devices it
   * returned. Rejects on a refusal that retrying cannot fix (INVALID_ARGUMENT, UNIMPLEMENTED…).
   */
  start(): Promise<void>;
  /** Stops every device (driver stop()), closes the server socket and the client. */
  stop(): Promise<void>;
  devices(): MapperDevice[];
  /** Whether MapperRegister succeeded. */
  readonly registered: boolean;
  readonly socketPath: string;
}

interface Held {
  device: Device;
  runner?: DeviceRunner;
  /** Device operations run one after another per device (a RemoveDevice waits for a running UpdateDevice). */
  chain: Promise<void>;
}

function modelKeyOf(device: Device): string {
  return deviceKey(device.metadata.namespace, device.spec.deviceModelRef?.name ?? '');
}

class MapperImpl implements Mapper {
  registered = false;
  readonly socketPath: string;
  private readonly tuning: MapperTuning;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly problems: Problems;
  private readonly held = new Map<string, Held>();
  private readonly models = new Map<string, DeviceModel>();
  private server: GrpcServer | undefined;
  private client: (DeviceManagerClient & { close(): void }) | undefined;
  private readonly stopping = new AbortController();
  private readonly deps: RunnerDeps;
  private startPromise: Promise<void> | undefined;

  constructor(private readonly options: MapperOptions) {
    const tuning = { ...defaultMapperOptions };
    for (const key of Object.keys(defaultMapperOptions) as (keyof MapperTuning)[]) {
      const v = options[key];
      if (v !== undefined) tuning[key] = v;
    }
    this.tuning = tuning;
    this.socketPath = options.socketPath;
    this.log = (options.log ?? silentLogger).child({ mapper: options.name, protocol: options.protocol });
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.problems = new Problems(this.log);
    const sink: ReportSink = {
      reportTwins: (namespace, name, twins) =>
        this.call((c) => c.reportDeviceStatus({ deviceName: name, deviceNamespace: namespace, reportedDevice: { twins: twinsToDmi(twins) } })),
      reportState: (namespace, name, state) => this.call((c) => c.reportDeviceStates({ deviceName: name, deviceNamespace: namespace, state })),
    };
    this.deps = {
      driver: options.driver,
      sink,
      limiter: new Limiter(tuning.maxConcurrentReports),
      clock: this.clock,
      tuning,
      log: this.log,
      problems: this.problems,
      random: this.random,
    };
  }

  private async call(fn: (c: DeviceManagerClient) => Promise<unknown>): Promise<void> {
    if (!this.client) throw new StoppedError('mapper stopped');
    await fn(this.client);
  }

  start(): Promise<void> {
    this.startPromise ??= this.run();
    return this.startPromise;
  }

  private async run(): Promise<void> {
    const { options } = this;
    this.server = await serveDeviceMapper(options.socketPath, this.handlers(), { maxMessageBytes: this.tuning.maxMessageBytes, log: this.log });
    this.client = deviceManagerClient(options.dmiSocketPath, { timeoutMs: this.tuning.callTimeoutMs, maxMessageBytes: this.tuning.maxMessageBytes });
    this.log.info('mapper serving', { socket: options.socketPath, dmiSocket: options.dmiSocketPath });
    const res = await this.register();
    const models = (res.modelList ?? []).slice(0, this.tuning.maxModels).map((m) => this.acceptModel(m));
    // Devices EdgeCore sent (RegisterDevice) while this answer was on its way may wait for one of these models.
    await Promise.all(models.map((m) => this.modelChanged(deviceKey(m.metadata.namespace, m.metadata.name ?? ''))));
    const devices = res.deviceList ?? [];
    this.log.info('registered with EdgeCore', { devices: devices.length, models: models.length });
    const skip = (err: unknown) => this.log.warn(`device from MapperRegister skipped: ${errorMessage(err)}`, { code: errorCode(err) });
    const started: Promise<void>[] = [];
    for (const d of devices) {
      try {
        started.push(this.enqueue(this.checkDevice(d), 'register').catch(skip));
      } catch (err) {
        skip(err);
      }
    }
    await Promise.all(started);
  }

  /** MapperRegister until EdgeCore answers: one line at once, then one per registerLogEveryMs while it does not. */
  private async register() {
    const { options, tuning } = this;
    const retry = backoff({ baseMs: tuning.registerRetryBaseMs, maxMs: tuning.registerRetryMaxMs, jitter: 'full', random: this.random });
    const request = {
      withData: true,
      mapper: {
        name: options.name,
        version: options.version,
        apiVersion: 'v1beta1',
        protocol: options.protocol,
        address: new TextEncoder().encode(options.socketPath),
        state: 'ok',
      },
    };
    let loggedAt: number | undefined;
    let failures = 0;
    for (;;) {
      if (this.stopping.signal.aborted) throw new StoppedError('mapper stopped before it registered');
      try {
        const res = await this.client!.mapperRegister(request, { signal: this.stopping.signal });
        this.registered = true;
        if (failures > 0) this.log.info('EdgeCore answered; registered', { attempts: failures + 1 });
        return res;
      } catch (err) {
        if (this.stopping.signal.aborted) throw new StoppedError('mapper stopped before it registered');
        const status = err instanceof DmiError ? err.grpcStatus : 2;
        if (PERMANENT_REGISTER_FAILURES.has(status)) {
          this.log.error(`EdgeCore refused MapperRegister: ${errorMessage(err)}`, { code: errorCode(err), grpcStatus: status });
          throw err;
        }
        failures++;
        const now = this.clock.now();
        if (loggedAt === undefined || now - loggedAt >= tuning.registerLogEveryMs) {
          loggedAt = now;
          this.log.warn(`waiting for EdgeCore's DMI socket: ${errorMessage(err)}`, { code: errorCode(err), grpcStatus: status, socket: options.dmiSocketPath, attempts: failures });
        }
        await this.sleep(retry.next());
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.stopping.signal;
      const done = () => {
        this.clock.clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.clock.setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  async stop(): Promise<void> {
    if (this.stopping.signal.aborted) return;
    this.stopping.abort();
    // Let a start() that is waiting for EdgeCore end first.
    await this.startPromise?.catch(() => {});
    await Promise.allSettled([...this.held.values()].map((h) => h.chain));
    await Promise.allSettled([...this.held.values()].map((h) => h.runner?.stop()));
    this.held.clear();
    await this.server?.close().catch((err: unknown) => this.log.warn(`closing the mapper socket failed: ${errorMessage(err)}`));
    this.client?.close();
    this.client = undefined;
    this.log.info('mapper stopped');
  }

  devices(): MapperDevice[] {
    return [...this.held.values()].map(({ device, runner }) => {
      const model = this.models.get(modelKeyOf(device));
      return {
        namespace: device.metadata.namespace || 'default',
        name: device.metadata.name ?? '',
        state: runner ? runner.state : 'waiting-for-model',
        device,
        ...(model ? { model } : {}),
        twins: runner?.twins() ?? [],
      };
    });
  }

  // ---- devices ----

  /** A DMI device converted and checked (name present, this mapper's protocol). */
  private checkDevice(d: DmiDevice | undefined): Device {
    if (!d?.name) throw new DeviceInvalidError('device without a name');
    const device = dmiToDevice(d);
    const protocol = device.spec.protocol?.protocolName;
    if (protocol && protocol !== this.options.protocol)
      throw new DeviceInvalidError(`device ${deviceKey(device.metadata.namespace, d.name)} has protocol ${protocol}; this mapper serves ${this.options.protocol}`);
    return device;
  }

  /** Runs `op` after the device's earlier operations; returns when it is done. */
  private enqueue(device: Device, op: 'register' | 'update'): Promise<void> {
    const key = deviceKey(device.metadata.namespace, device.metadata.name ?? '');
    let h = this.held.get(key);
    if (!h) {
      if (this.held.size >= this.tuning.maxDevices) throw new DmiError(`this mapper holds ${this.tuning.maxDevices} devices already`, { grpcStatus: Status.ResourceExhausted });
      h = { device, chain: Promise.resolve() };
      this.held.set(key, h);
    }
    const held = h;
    const run = held.chain.then(() => this.apply(key, held, device, op));
    held.chain = run.catch(() => {});
    return run;
  }

  private async apply(key: string, held: Held, device: Device, op: 'register' | 'update'): Promise<void> {
    if (this.stopping.signal.aborted || this.held.get(key) !== held) return;
    const model = this.models.get(modelKeyOf(device));
    // The same spec again (EdgeCore re-sending after its restart): nothing to do.
    if (held.runner && held.runner.state !== 'stopped' && JSON.stringify(held.device.spec) === JSON.stringify(device.spec) && held.runner.model === model) return;
    await held.runner?.stop();
    held.runner = undefined;
    held.device = device;
    if (!model) {
      this.problems.report(`${key}:waiting-model`, 'device waits for its model', new DeviceInvalidError(`DeviceModel ${modelKeyOf(device)} not received yet`), { device: key });
      return;
    }
    this.problems.clear(`${key}:waiting-model`, 'device model received', { device: key });
    const runner = new DeviceRunner(device, model, this.deps);
    held.runner = runner;
    runner.start();
    this.log.info(op === 'register' ? 'device registered' : 'device updated; restarted', { device: key, properties: device.spec.properties?.length ?? 0 });
  }

  private async remove(namespace: string, name: string): Promise<void> {
    const key = deviceKey(namespace, name);
    const held = this.held.get(key);
    if (!held) return;
    const run = held.chain.then(async () => {
      this.held.delete(key);
      await held.runner?.stop();
      held.runner = undefined;
      this.problems.forget(`${key}:`);
    });
    held.chain = run.catch(() => {});
    await run;
    this.log.info('device removed', { device: key });
  }

  // ---- models ----

  private acceptModel(m: DmiDeviceModel | undefined): DeviceModel {
    if (!m?.name) throw new DeviceInvalidError('device model without a name');
    const model = dmiToModel(m);
    const key = deviceKey(model.metadata.namespace, m.name);
    const current = this.models.get(key);
    // The same model again (EdgeCore re-sending after its restart) keeps its identity, so its devices are not restarted.
    if (current && JSON.stringify(current.spec) === JSON.stringify(model.spec)) return current;
    if (!current && this.models.size >= this.tuning.maxModels)
      throw new DmiError(`this mapper holds ${this.tuning.maxModels} device models already`, { grpcStatus: Status.ResourceExhausted });
    this.models.set(key, model);
    return model;
  }

  /** After a model arrived or changed: devices that use it start (or restart with it). */
  private async modelChanged(modelKey: string): Promise<void> {
    const using = [...this.held.values()].filter((h) => modelKeyOf(h.device) === modelKey);
    await Promise.all(using.map((h) => this.enqueue(h.device, 'update')));
  }

  private handlers(): DeviceMapperHandlers {
    return {
      registerDevice: async (req) => {
        const device = this.checkDevice(req.device);
        await this.enqueue(device, 'register');
        return { deviceName: device.metadata.name ?? '', deviceNamespace: device.metadata.namespace ?? '' };
      },
      updateDevice: async (req) => {
        await this.enqueue(this.checkDevice(req.device), 'update');
        return {};
      },
      removeDevice: async (req) => {
        if (!req.deviceName) throw new DeviceInvalidError('RemoveDevice without a device name');
        await this.remove(req.deviceNamespace || 'default', req.deviceName);
        return {};
      },
      createDeviceModel: async (req) => {
        const model = this.acceptModel(req.model);
        await this.modelChanged(deviceKey(model.metadata.namespace, model.metadata.name ?? ''));
        return { deviceModelName: model.metadata.name ?? '', deviceModelNamespace: model.metadata.namespace ?? '' };
      },
      updateDeviceModel: async (req) => {
        const model = this.acceptModel(req.model);
        await this.modelChanged(deviceKey(model.metadata.namespace, model.metadata.name ?? ''));
        return {};
      },
      removeDeviceModel: async (req) => {
        if (!req.modelName) throw new DeviceInvalidError('RemoveDeviceModel without a model name');
        // Devices that use it keep running with the copy they started with (as in mapper-framework).
        this.models.delete(deviceKey(req.modelNamespace, req.modelName));
        return {};
      },
      getDevice: async (req) => {
        if (!req.deviceName) throw new DeviceInvalidError('GetDevice without a device name');
        const key = deviceKey(req.deviceNamespace, req.deviceName);
        const held = this.held.get(key);
        if (!held) throw new DmiError(`device ${key} is not held by this mapper`, { grpcStatus: Status.NotFound });
        const model = this.models.get(modelKeyOf(held.device));
        const dmi = deviceToDmi(held.device, model);
        return { device: { ...dmi, status: { ...(dmi.status ?? {}), twins: twinsToDmi(held.runner?.twins() ?? []) } } };
      },
    };
  }
}

/** Creates a mapper; nothing happens until {@link Mapper.start}. */
export function createMapper(options: MapperOptions): Mapper {
  return new MapperImpl(options);
}
