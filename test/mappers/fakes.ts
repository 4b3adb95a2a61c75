/**
 * Test doubles for the mapper tests: an EdgeCore DMI side (DeviceManagerService served with
 * shared/dmi on a unix socket, recording every call, failures injectable), a recording driver,
 * and a logger that keeps its lines. Waits are event driven, each with a deadline.
 */
import type { Device, DeviceModel } from '../../shared/devices/index.js';
import {
  type DmiMapperRegisterRequest,
  type DmiMapperRegisterResponse,
  type DmiReportDeviceStatesRequest,
  type DmiReportDeviceStatusRequest,
  type GrpcServer,
  serveDeviceManager,
} from '../../shared/dmi/index.js';
import { createLogger, type Logger } from '../../shared/log/index.js';
import type { Driver, DriverDevice, DriverProperty } from '../../mappers/sdk/index.js';

/** Resolves when `check()` holds, re-checked on every `notify()`; rejects after `timeoutMs`. */
export class Waiter {
  private readonly waiters = new Set<() => void>();

  notify(): void {
    for (const w of [...this.waiters]) w();
  }

  waitFor(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const probe = () => {
        let ok = false;
        try {
          ok = check();
        } catch (err) {
          done();
          reject(err);
          return;
        }
        if (ok) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(probe);
      };
      this.waiters.add(probe);
      probe();
    });
  }
}

export class FakeEdgeCore extends Waiter {
  readonly registers: DmiMapperRegisterRequest[] = [];
  readonly statuses: DmiReportDeviceStatusRequest[] = [];
  readonly states: DmiReportDeviceStatesRequest[] = [];
  response: DmiMapperRegisterResponse = { modelList: [], deviceList: [] };
  /** Return an error to fail a call (it is recorded in `refused`). */
  failRegister: ((req: DmiMapperRegisterRequest) => Error | undefined) | undefined;
  failStatus: ((req: DmiReportDeviceStatusRequest) => Error | undefined) | undefined;
  /** Runs before MapperRegister is answered (e.g. EdgeCore sending RegisterDevice first, as it may). */
  beforeRegisterAnswer: ((req: DmiMapperRegisterRequest) => Promise<void>) | undefined;
  readonly refused: DmiReportDeviceStatusRequest[] = [];
  private server: GrpcServer | undefined;

  constructor(readonly socketPath: string) {
    super();
  }

  async serve(): Promise<void> {
    this.server = await serveDeviceManager(this.socketPath, {
      mapperRegister: async (req) => {
        const err = this.failRegister?.(req);
        this.registers.push(req);
        this.notify();
        if (err) throw err;
        await this.beforeRegisterAnswer?.(req);
        return this.response;
      },
      reportDeviceStatus: async (req) => {
        const err = this.failStatus?.(req);
        if (err) {
          this.refused.push(req);
          this.notify();
          throw err;
        }
        this.statuses.push(req);
        this.notify();
        return {};
      },
      reportDeviceStates: async (req) => {
        this.states.push(req);
        this.notify();
        return {};
      },
    });
  }

  async close(): Promise<void> {
    await this.server?.close();
    this.server = undefined;
  }

  /** Reported values of one property of one device, in arrival order. */
  reported(device: string, property: string): string[] {
    const out: string[] = [];
    for (const s of this.statuses) {
      if (s.deviceName !== device) continue;
      for (const t of s.reportedDevice?.twins ?? []) if (t.propertyName === property && t.reported) out.push(t.reported.value ?? '');
    }
    return out;
  }

  statusesOf(device: string): DmiReportDeviceStatusRequest[] {
    return this.statuses.filter((s) => s.deviceName === device);
  }
}

export interface Write {
  device: string;
  property: string;
  value: string;
}

/** A driver that records what the SDK asks and answers from `values` (per `device/property`). */
export class RecordingDriver extends Waiter implements Driver {
  readonly inits: Device[] = [];
  readonly writes: Write[] = [];
  readonly stops: string[] = [];
  readonly reads: string[] = [];
  readonly values = new Map<string, string>();
  state = 'ok';
  /** Init fails while this is > 0 (counts down). */
  failInits = 0;

  async init(device: Device, _model: DeviceModel | undefined): Promise<DriverDevice> {
    const name = device.metadata.name ?? '';
    this.inits.push(device);
    this.notify();
    if (this.failInits > 0) {
      this.failInits--;
      throw new Error('device not reachable');
    }
    const recorder = this;
    return {
      async read(p: DriverProperty): Promise<string> {
        recorder.reads.push(`${name}/${p.name}`);
        recorder.notify();
        const v = recorder.values.get(`${name}/${p.name}`);
        if (v === undefined) throw new Error(`no value for ${name}/${p.name}`);
        return v;
      },
      async write(p: DriverProperty, _visitor, value: string): Promise<void> {
        recorder.writes.push({ device: name, property: p.name, value });
        recorder.notify();
      },
      async state(): Promise<string> {
        return recorder.state;
      },
      async stop(): Promise<void> {
        recorder.stops.push(name);
        recorder.notify();
      },
    };
  }
}

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

/** A debug-level JSON logger keeping its lines (set LEDGE_TEST_VERBOSE to also print them); `waitFor` re-checks on each line. */
export function recordingLogger(): { log: Logger; lines: LogLine[]; waitFor: Waiter['waitFor'] } {
  const lines: LogLine[] = [];
  const waiter = new Waiter();
  const log = createLogger({
    level: 'debug',
    format: 'json',
    write: (line) => {
      lines.push(JSON.parse(line) as LogLine);
      if (process.env.LEDGE_TEST_VERBOSE) process.stderr.write(line);
      waiter.notify();
    },
  });
  return { log, lines, waitFor: (check, what, timeoutMs) => waiter.waitFor(check, what, timeoutMs) };
}
