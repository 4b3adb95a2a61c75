/**
 * @module
 * DMI adapter options and defaults, the one place they are written (`edge/config.ts` and
 * DeviceTwin take the adapter's defaults from here).
 */
import type { DeviceMapperClient } from '../../../shared/dmi/index.js';

/** Timers the adapter uses for retries and deferred registry writes (tests inject fakes). */
export interface DmiTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Opens a DeviceMapperService client for a mapper's socket (tests substitute a fake). */
export type MapperClientFactory = (socketPath: string, options: { timeoutMs: number }) => DeviceMapperClient & { close(): void };

export interface DmiAdapterOptions {
  /**
   * Where DeviceManagerService listens (KubeEdge: `/etc/kubeedge/dmi.sock`). A path that does not
   * end in `.sock` is taken as a directory and `dmi.sock` is added (KubeEdge's `dmiSockPath` may
   * name the directory). When its directory cannot be created or written, `<dataDir>/dmi.sock` is
   * used instead (one warn line).
   */
  socketPath: string;
  /** EdgeCore's data directory: the mapper registry is `<dataDir>/devicetwin/mappers.json`. */
  dataDir: string;
  /** Deadline of each call to a mapper, ms (KubeEdge: 10 s). */
  callTimeoutMs: number;
  /** DeviceManagerService rate limit over all mappers, calls/s (0 = unlimited). */
  callsPerSecond: number;
  /** Its burst. */
  burst: number;
  /** Largest request a mapper may send, bytes. */
  maxMessageBytes: number;
  /** First retry delay ceiling while a mapper is unreachable, ms (full jitter). */
  retryBaseMs?: number;
  /** Largest retry delay, ms. */
  retryMaxMs?: number;
  /** Most protocols (mappers) recorded; a registration for one more is refused with RESOURCE_EXHAUSTED. */
  maxMappers?: number;
  /** What the mappers were last sent is recorded at most this often, ms (registrations are written at once). */
  persistDelayMs?: number;
  /** A repeated problem (a refused report, an unreachable mapper) is logged once per this window, ms. */
  logWindowMs?: number;
  /** Test seams. */
  timers?: DmiTimers;
  random?: () => number;
  now?: () => number;
  connectMapper?: MapperClientFactory;
}

export const defaultDmiAdapterOptions = {
  socketPath: '/etc/kubeedge/dmi.sock',
  callTimeoutMs: 10_000,
  /**
   * Generous on purpose: 1,000 devices reporting every second are 1,000 calls/s. KubeEdge's single
   * limiter (1/s, burst 100) refuses most reports of a busy mapper once its burst is spent.
   */
  callsPerSecond: 1000,
  burst: 2000,
  /** Go gRPC's default receive limit; a DMI report is a few hundred bytes. */
  maxMessageBytes: 4 * 1024 * 1024,
  retryBaseMs: 500,
  retryMaxMs: 30_000,
  /** One mapper per protocol; a node runs a handful. Bounds a misbehaving local client. */
  maxMappers: 64,
  persistDelayMs: 1000,
  logWindowMs: 10 * 60_000,
} as const satisfies Omit<DmiAdapterOptions, 'dataDir'>;

/** Name of the registry file under `<dataDir>/devicetwin/`. */
export const MAPPERS_FILE = 'mappers.json';
/** Directory of DeviceTwin's files under the data directory. */
export const DEVICETWIN_DIR = 'devicetwin';
