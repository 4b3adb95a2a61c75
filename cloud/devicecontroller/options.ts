/**
 * @module
 * DeviceController defaults, the one place they are written (`cloud/config.ts` takes its
 * `devices.*` defaults from here).
 */
import type { DeviceControllerOptions } from './controller.js';
import { realTimers } from './writer.js';

/** Defaults of every DeviceController option. */
export const defaultDeviceControllerOptions: DeviceControllerOptions = {
  /** Ceiling of DeviceStatus writes per second, all devices together (what 1,000 sensors cost the API server). */
  statusWritesPerSecond: 50,
  /** Writes that may go at once after a quiet spell (token bucket size). */
  statusBurst: 100,
  /** Floor of the rate when the API server pushes back (429/5xx halve it, each good second adds 1/s). */
  minStatusWritesPerSecond: 5,
  /** DeviceStatus writes in flight at once (a slow API server still gets the rate). */
  statusWriteConcurrency: 8,
  /** Device reports handled from one upstream batch; the rest are left out (logged). Edges send at most 500. */
  maxReportsPerBatch: 1000,
  /** Longest twin value accepted, bytes (a BYTES property's base64); longer ones are left out (logged). */
  maxTwinValueBytes: 64 * 1024,
  /** How long the desired sets may wait for the device informers before they count as empty (one error line), ms. */
  syncTimeoutMs: 60_000,
  /** Installs the device CRDs where they are missing. */
  installCrds: true,
  /** Wall clock, ms since the epoch (the token bucket, AIMD, log windows). */
  now: () => Date.now(),
  /** Timers of the status writer (tests pass fake ones with `now`). */
  timers: realTimers,
};
