/**
 * @module
 * One running device of a mapper: opens it through the driver (retried with backoff until it
 * works), writes the desired values of its ReadWrite properties, reads its properties on
 * their collect cycles and reports them, and reports its state on the state cycle.
 *
 * Reports go to EdgeCore through a {@link ReportSink}. mapper-framework sends one
 * ReportDeviceStatus per property per cycle, each on a new connection; this runner batches:
 * the properties that share a collect cycle are read together and sent as ONE
 * ReportDeviceStatus with all their twins. While a report is in flight or EdgeCore refuses,
 * newer readings replace older ones per property (latest wins), so a device has at most one
 * call in flight and never a backlog; a failed report is retried with full-jitter backoff.
 * A batch refused as INVALID_ARGUMENT is sent again one twin per call, so one bad property
 * does not block the others.
 */
import { backoff, type Backoff } from '../../shared/backoff/index.js';
import { type ConfigData, type Device, type DeviceModel, type ModelProperty, type TwinProperty, deviceKey } from '../../shared/devices/index.js';
import { DeviceInvalidError, DmiError, TimeoutError } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { type Driver, type DriverDevice, type DriverProperty, driverProperty, visitorOf } from './driver.js';
import type { Clock, MapperTuning } from './options.js';
import type { Problems } from './problems.js';

/** One twin as the SDK reports it (the DMI Twin message). */
export interface ReportedTwin {
  propertyName: string;
  reported: TwinProperty;
  /** The desired value this mapper has written to the device; absent until a write succeeded. */
  observedDesired?: TwinProperty;
}

/** Where reports go (the DMI client to EdgeCore). Rejections carry a DmiError with the gRPC status. */
export interface ReportSink {
  reportTwins(namespace: string, name: string, twins: ReportedTwin[]): Promise<void>;
  reportState(namespace: string, name: string, state: string): Promise<void>;
}

/** Bounds the reports in flight over all devices. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      // The slot passes straight to the next waiter, so `active` stays counted for it.
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** `failed`: the driver refused the device's settings (DeviceInvalidError); an UpdateDevice with other settings starts it again. */
export type DeviceRunState = 'initializing' | 'running' | 'failed' | 'stopped';

export interface RunnerDeps {
  driver: Driver;
  sink: ReportSink;
  limiter: Limiter;
  clock: Clock;
  tuning: MapperTuning;
  log: Logger;
  problems: Problems;
  random: () => number;
}

const INVALID_ARGUMENT = 3;

function grpcStatusOf(err: unknown): number {
  return err instanceof DmiError ? err.grpcStatus : 2;
}

/** A cycle in ms as the SDK runs it: the default for 0/absent/invalid, clamped to [minCycleMs, 2^31−1]. */
export function effectiveCycle(value: number | undefined, fallback: number, minMs: number): number {
  const n = typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback;
  return Math.min(Math.max(Math.floor(n), minMs), 2 ** 31 - 1);
}

export class DeviceRunner {
  readonly namespace: string;
  readonly name: string;
  readonly key: string;
  state: DeviceRunState = 'initializing';
  /** Latest reading per property. */
  readonly reported = new Map<string, TwinProperty>();
  /** Desired value written per property. */
  readonly observed = new Map<string, TwinProperty>();

  private dev: DriverDevice | undefined;
  private stopped = false;
  private readonly timers = new Set<unknown>();
  private readonly sleeps = new Set<() => void>();
  private readonly tasks = new Set<Promise<void>>();
  private readonly pending = new Map<string, ReportedTwin>();
  private pendingState: string | undefined;
  private flushing: Promise<void> | undefined;
  private retryTimer: unknown;
  private readonly reportBackoff: Backoff;
  private readonly log: Logger;

  constructor(
    readonly device: Device,
    readonly model: DeviceModel | undefined,
    private readonly deps: RunnerDeps,
  ) {
    this.namespace = device.metadata.namespace || 'default';
    this.name = device.metadata.name ?? '';
    this.key = deviceKey(this.namespace, this.name);
    this.log = deps.log.child({ device: this.key });
    this.reportBackoff = backoff({ baseMs: deps.tuning.reportRetryBaseMs, maxMs: deps.tuning.reportRetryMaxMs, jitter: 'full', random: deps.random });
  }

  /** Starts opening the device; returns at once (opening is retried in the background). */
  start(): void {
    this.track(this.open());
  }

  /** Stops everything of this device and waits for it: no report starts after this resolves. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.state = 'stopped';
    for (const t of this.timers) this.deps.clock.clearTimeout(t);
    this.timers.clear();
    if (this.retryTimer !== undefined) this.deps.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    for (const wake of this.sleeps) wake();
    this.pending.clear();
    this.pendingState = undefined;
    while (this.tasks.size > 0 || this.flushing) await Promise.allSettled([...this.tasks, this.flushing]);
    const dev = this.dev;
    this.dev = undefined;
    if (dev) await this.stopDriverDevice(dev);
    // Problems stay recorded: after an UpdateDevice the same problem is not logged again (RemoveDevice forgets them).
  }

  /** The device's twins: latest readings with the desired values written. */
  twins(): ReportedTwin[] {
    const out: ReportedTwin[] = [];
    for (const p of this.device.spec.properties ?? []) {
      const reported = this.reported.get(p.name);
      const observedDesired = this.observed.get(p.name);
      if (!reported && !observedDesired) continue;
      out.push({ propertyName: p.name, reported: reported ?? { value: '' }, ...(observedDesired ? { observedDesired } : {}) });
    }
    return out;
  }

  private track(p: Promise<void>): void {
    const t = p.catch((err: unknown) => this.log.error(`device task failed: ${(err as Error).message}`)).finally(() => this.tasks.delete(t));
    this.tasks.add(t);
  }

  /** Waits `ms` on the injected clock; `stop()` ends the wait early. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        this.sleeps.delete(wake);
        this.deps.clock.clearTimeout(timer);
        this.timers.delete(timer);
        resolve();
      };
      const timer = this.deps.clock.setTimeout(wake, ms);
      this.timers.add(timer);
      this.sleeps.add(wake);
    });
  }

  private after(ms: number, fn: () => void): void {
    const timer = this.deps.clock.setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) fn();
    }, ms);
    this.timers.add(timer);
  }

  private withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    const ms = this.deps.tuning.driverTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = this.deps.clock.setTimeout(() => reject(new TimeoutError(`${what} took longer than ${ms} ms`)), ms);
      p.then(resolve, reject).finally(() => this.deps.clock.clearTimeout(timer));
    });
  }

  private async stopDriverDevice(dev: DriverDevice): Promise<void> {
    try {
      await this.withTimeout(dev.stop(), 'stopping the device');
    } catch (err) {
      this.log.warn(`stopping the device failed: ${(err as Error).message}`);
    }
  }

  private async open(): Promise<void> {
    const { tuning, problems } = this.deps;
    const retry = backoff({ baseMs: tuning.deviceRetryBaseMs, maxMs: tuning.deviceRetryMaxMs, jitter: 'full', random: this.deps.random });
    let dev: DriverDevice | undefined;
    while (!this.stopped) {
      const init = this.deps.driver.init(this.device, this.model);
      try {
        dev = await this.withTimeout(init, 'opening the device');
        break;
      } catch (err) {
        // An init that finishes after its deadline is closed again, not leaked.
        init.then((late) => void this.stopDriverDevice(late)).catch(() => {});
        if (err instanceof DeviceInvalidError) {
          // Settings the driver cannot use do not get better by retrying; UpdateDevice brings new ones.
          this.state = 'failed';
          problems.report(`${this.key}:init`, 'device settings refused by the driver; waiting for an UpdateDevice', err, { device: this.key });
          return;
        }
        problems.report(`${this.key}:init`, 'cannot open device (retrying)', err, { device: this.key });
        await this.sleep(retry.next());
      }
    }
    if (!dev) return;
    if (this.stopped) {
      await this.stopDriverDevice(dev);
      return;
    }
    problems.clear(`${this.key}:init`, 'device opened', { device: this.key });
    this.dev = dev;
    this.state = 'running';
    this.startProperties(dev);
  }

  private startProperties(dev: DriverDevice): void {
    const { tuning, problems } = this.deps;
    const models = new Map<string, ModelProperty>((this.model?.spec.properties ?? []).map((p) => [p.name, p]));
    const groups = new Map<number, { prop: DriverProperty; visitor: ConfigData }[]>();
    for (const spec of this.device.spec.properties ?? []) {
      const model = models.get(spec.name);
      if (!model) {
        // mapper-framework dereferences the missing model property and crashes; the SDK skips the property.
        problems.report(
          `${this.key}:model:${spec.name}`,
          'property not in the device model; skipped',
          new DeviceInvalidError(`property ${spec.name} is not in model ${this.model?.metadata.name ?? '(none)'}`),
          {
            device: this.key,
            property: spec.name,
          },
        );
        continue;
      }
      const prop = driverProperty(spec, model);
      const visitor = visitorOf(spec, model);
      const desired = spec.desired?.value;
      if (prop.accessMode === 'ReadWrite' && desired !== undefined && desired !== '') this.track(this.writeDesired(dev, prop, visitor, desired, spec.desired?.metadata));
      if (!spec.reportToCloud) continue;
      const cycle = effectiveCycle(spec.collectCycle, tuning.defaultCollectCycleMs, tuning.minCycleMs);
      let group = groups.get(cycle);
      if (!group) groups.set(cycle, (group = []));
      group.push({ prop, visitor });
    }
    // The first reading is taken at once (mapper-framework's ticker waits one cycle first).
    for (const [cycle, props] of groups) this.after(0, () => this.track(this.collect(dev, cycle, props)));
    const stateReport = this.device.spec.stateReport ?? this.device.status;
    if (stateReport?.reportToCloud) {
      const cycle = effectiveCycle(stateReport.reportCycle, tuning.defaultStateCycleMs, tuning.minCycleMs);
      this.after(0, () => this.track(this.collectState(dev, cycle)));
    }
  }

  private async writeDesired(dev: DriverDevice, prop: DriverProperty, visitor: ConfigData, value: string, metadata: Record<string, string> | undefined): Promise<void> {
    const { tuning, problems } = this.deps;
    const retry = backoff({ baseMs: tuning.deviceRetryBaseMs, maxMs: tuning.deviceRetryMaxMs, jitter: 'full', random: this.deps.random });
    const key = `${this.key}:write:${prop.name}`;
    while (!this.stopped) {
      try {
        await this.withTimeout(dev.write(prop, visitor, value), `writing ${prop.name}`);
        if (this.stopped) return;
        problems.clear(key, 'desired value written', { device: this.key, property: prop.name });
        this.log.debug('desired value written', { property: prop.name, value });
        this.observed.set(prop.name, { value, metadata: { ...(metadata ?? {}), type: typeName(prop, metadata), timestamp: String(this.deps.clock.now()) } });
        return;
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof DeviceInvalidError) {
          // The value cannot be written as given (wrong type, out of the register's range): retrying would not help.
          problems.report(key, `desired value of ${prop.name} not written`, err, { device: this.key, property: prop.name });
          return;
        }
        problems.report(key, `desired value of ${prop.name} not written (retrying)`, err, { device: this.key, property: prop.name });
        await this.sleep(retry.next());
      }
    }
  }

  private async collect(dev: DriverDevice, cycle: number, props: { prop: DriverProperty; visitor: ConfigData }[]): Promise<void> {
    const started = this.deps.clock.now();
    const results = await Promise.allSettled(props.map(({ prop, visitor }) => this.withTimeout(dev.read(prop, visitor), `reading ${prop.name}`)));
    if (this.stopped) return;
    const at = String(this.deps.clock.now());
    results.forEach((r, i) => {
      const { prop } = props[i]!;
      const key = `${this.key}:read:${prop.name}`;
      if (r.status === 'rejected') {
        this.deps.problems.report(key, `cannot read ${prop.name}`, r.reason, { device: this.key, property: prop.name });
        return;
      }
      if (typeof r.value !== 'string') {
        this.deps.problems.report(key, `cannot read ${prop.name}`, new DeviceInvalidError('the driver returned a non-string value'), { device: this.key, property: prop.name });
        return;
      }
      this.deps.problems.clear(key, `${prop.name} readable again`, { device: this.key, property: prop.name });
      const reported: TwinProperty = { value: r.value, metadata: { timestamp: at, type: typeName(prop, prop.spec.desired?.metadata) } };
      this.reported.set(prop.name, reported);
      const observedDesired = this.observed.get(prop.name);
      this.pending.set(prop.name, { propertyName: prop.name, reported, ...(observedDesired ? { observedDesired } : {}) });
    });
    this.flush();
    // Cycles do not overlap: a slow read delays the next one instead of stacking reads up.
    this.after(Math.max(0, cycle - (this.deps.clock.now() - started)), () => this.track(this.collect(dev, cycle, props)));
  }

  private async collectState(dev: DriverDevice, cycle: number): Promise<void> {
    const started = this.deps.clock.now();
    const key = `${this.key}:state`;
    try {
      const state = await this.withTimeout(dev.state(), 'reading the device state');
      if (this.stopped) return;
      if (typeof state !== 'string') throw new DeviceInvalidError('the driver returned a non-string state');
      this.deps.problems.clear(key, 'device state readable again', { device: this.key });
      this.pendingState = state;
      this.flush();
    } catch (err) {
      if (this.stopped) return;
      this.deps.problems.report(key, 'cannot read the device state', err, { device: this.key });
    }
    this.after(Math.max(0, cycle - (this.deps.clock.now() - started)), () => this.track(this.collectState(dev, cycle)));
  }

  /** Sends what is pending, unless a send is in flight or a retry is scheduled (those send it). */
  private flush(): void {
    if (this.stopped || this.flushing || this.retryTimer !== undefined) return;
    if (this.pending.size === 0 && this.pendingState === undefined) return;
    this.flushing = this.drain()
      .catch((err: unknown) => this.log.error(`reporting failed: ${(err as Error).message}`))
      .finally(() => {
        this.flushing = undefined;
        if (this.retryTimer === undefined) this.flush();
      });
  }

  private async drain(): Promise<void> {
    while (!this.stopped && (this.pending.size > 0 || this.pendingState !== undefined)) {
      const twins = [...this.pending.values()];
      this.pending.clear();
      const state = this.pendingState;
      this.pendingState = undefined;
      let undelivered: ReportedTwin[] = [];
      let failure: unknown;
      if (twins.length > 0) ({ undelivered, failure } = await this.sendTwins(twins));
      if (failure === undefined && state !== undefined && !this.stopped) {
        try {
          await this.deps.limiter.run(() => this.deps.sink.reportState(this.namespace, this.name, state));
        } catch (err) {
          if (grpcStatusOf(err) === INVALID_ARGUMENT)
            this.deps.problems.report(`${this.key}:report:state`, 'EdgeCore refused the device state; dropped', err, { device: this.key });
          else failure = err;
        }
      }
      if (this.stopped) return;
      if (failure === undefined) {
        this.reportBackoff.reset();
        this.deps.problems.clear(`${this.key}:report`, 'reports accepted again', { device: this.key });
        continue;
      }
      // Keep what was not delivered unless a newer reading replaced it meanwhile; retry later.
      for (const t of undelivered) if (!this.pending.has(t.propertyName)) this.pending.set(t.propertyName, t);
      if (this.pendingState === undefined) this.pendingState = state;
      this.deps.problems.report(`${this.key}:report`, 'report to EdgeCore failed (retrying)', failure, { device: this.key, grpcStatus: grpcStatusOf(failure) });
      this.retryTimer = this.deps.clock.setTimeout(() => {
        this.retryTimer = undefined;
        this.flush();
      }, this.reportBackoff.next());
      return;
    }
  }

  /**
   * One call for all twins; if refused as invalid, one call per twin so only the bad ones are
   * dropped. Any other failure: `failure` set, and `undelivered` the twins to send again.
   */
  private async sendTwins(twins: ReportedTwin[]): Promise<{ undelivered: ReportedTwin[]; failure?: unknown }> {
    const send = (batch: ReportedTwin[]) => this.deps.limiter.run(() => this.deps.sink.reportTwins(this.namespace, this.name, batch));
    const refused = (t: ReportedTwin, err: unknown) =>
      this.deps.problems.report(`${this.key}:report:${t.propertyName}`, 'EdgeCore refused the reading; dropped', err, { device: this.key, property: t.propertyName });
    try {
      await send(twins);
      for (const t of twins) this.deps.problems.clear(`${this.key}:report:${t.propertyName}`, `${t.propertyName} accepted again`, { device: this.key, property: t.propertyName });
      return { undelivered: [] };
    } catch (err) {
      if (grpcStatusOf(err) !== INVALID_ARGUMENT) return { undelivered: twins, failure: err };
      if (twins.length === 1) {
        refused(twins[0]!, err);
        return { undelivered: [] };
      }
    }
    for (const [i, t] of twins.entries()) {
      if (this.stopped) return { undelivered: [] };
      try {
        await send([t]);
      } catch (err) {
        if (grpcStatusOf(err) !== INVALID_ARGUMENT) return { undelivered: twins.slice(i), failure: err };
        refused(t, err);
      }
    }
    return { undelivered: [] };
  }
}

/** The twin's type metadata: the desired value's `metadata.type` when given (KubeEdge's choice), else the model type in lower case. */
function typeName(prop: DriverProperty, metadata: Record<string, string> | undefined): string {
  return metadata?.type || prop.type.toLowerCase();
}
