/**
 * @module
 * Mapper SDK options and defaults: what the caller gives (`MapperOptions`) and the timing
 * and limits it may override (`defaultMapperOptions`).
 */
import type { Logger } from '../../shared/log/index.js';
import type { Driver } from './driver.js';

/** Time as the SDK sees it; tests inject a fake one. */
export interface Clock {
  /** Wall-clock ms since the epoch (twin timestamps, "log once a minute"). */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Timing and limits; every field has a default in {@link defaultMapperOptions}. */
export interface MapperTuning {
  /** Collect cycle of a property whose collectCycle is 0 or absent, ms. Default 1000 (mapper-framework's DefaultCollectCycle). */
  defaultCollectCycleMs: number;
  /** State report cycle when stateReport.reportCycle is 0 or absent, ms. Default 1000 (DefaultReportCycle). */
  defaultStateCycleMs: number;
  /**
   * Shortest cycle honoured, ms (a smaller one is raised to it). Default 10. The longest is
   * 2^31−1 ms (~24.8 days), the most a Node timer holds: KubeEdge's v1.15 samples still say
   * `10000000000` (nanoseconds then), which Node would otherwise turn into a 1 ms timer.
   */
  minCycleMs: number;
  /** First MapperRegister retry delay cap, ms (full jitter). Default 500. */
  registerRetryBaseMs: number;
  /** Largest MapperRegister retry delay, ms. Default 10000. */
  registerRetryMaxMs: number;
  /** While the DMI server does not answer: one log line at once, then one per this many ms. Default 60000. */
  registerLogEveryMs: number;
  /** First delay cap after a failed report, ms (full jitter, per device). Default 500. */
  reportRetryBaseMs: number;
  /** Largest delay after failed reports, ms. Default 30000. */
  reportRetryMaxMs: number;
  /** First delay cap before retrying a device's init or a desired write, ms. Default 1000. */
  deviceRetryBaseMs: number;
  /** Largest such delay, ms. Default 60000. */
  deviceRetryMaxMs: number;
  /** Deadline of one DMI call to EdgeCore, ms. Default 10000 (mapper-framework: 1 s; generous for slow boards). */
  callTimeoutMs: number;
  /** A driver read or write that takes longer counts as failed, ms. Default 10000. */
  driverTimeoutMs: number;
  /** Reports (ReportDeviceStatus/States) in flight at once over all devices. Default 8. */
  maxConcurrentReports: number;
  /** Devices held; RegisterDevice beyond it is refused with RESOURCE_EXHAUSTED. Default 10000. */
  maxDevices: number;
  /** Device models held; beyond it CreateDeviceModel is refused with RESOURCE_EXHAUSTED. Default 10000. */
  maxModels: number;
  /** Largest gRPC message the mapper's server accepts, bytes. Default 4 MiB (gRPC's default). */
  maxMessageBytes: number;
}

export const defaultMapperOptions: MapperTuning = {
  defaultCollectCycleMs: 1000,
  defaultStateCycleMs: 1000,
  minCycleMs: 10,
  registerRetryBaseMs: 500,
  registerRetryMaxMs: 10_000,
  registerLogEveryMs: 60_000,
  reportRetryBaseMs: 500,
  reportRetryMaxMs: 30_000,
  deviceRetryBaseMs: 1000,
  deviceRetryMaxMs: 60_000,
  callTimeoutMs: 10_000,
  driverTimeoutMs: 10_000,
  maxConcurrentReports: 8,
  maxDevices: 10_000,
  maxModels: 10_000,
  maxMessageBytes: 4 * 1024 * 1024,
};

/** What {@link createMapper} takes. */
export interface MapperOptions extends Partial<MapperTuning> {
  /** Mapper name (MapperInfo.name). */
  name: string;
  /** Mapper version (MapperInfo.version). */
  version: string;
  /** Protocol name: EdgeCore routes devices whose `spec.protocol.protocolName` equals it to this mapper. */
  protocol: string;
  /** Where this mapper serves DeviceMapperService (a unix socket; announced as MapperInfo.address). */
  socketPath: string;
  /** EdgeCore's DeviceManagerService socket. KubeEdge's default: /etc/kubeedge/dmi.sock. */
  dmiSocketPath: string;
  driver: Driver;
  log?: Logger;
  /** Default: the system clock. */
  clock?: Clock;
  /** Random source in [0, 1) for backoff jitter. Default Math.random. */
  random?: () => number;
}
