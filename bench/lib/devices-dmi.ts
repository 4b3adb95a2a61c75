/**
 * @module
 * The mapper side of bench/devices-throughput.ts: a DMI mapper that serves DeviceMapperService
 * (accepting whatever EdgeCore sends) and drives EdgeCore's DeviceManagerService with
 * ReportDeviceStatus at a fixed offered rate, counting each call's result.
 *
 * Built on the repo's DMI client and server (shared/dmi), not on the mapper SDK: the SDK's report
 * loop has its own concurrency limit (8) and retry backoff, and what is measured here is EdgeCore.
 *
 * Pacing: each device reports once per `periodMs`, spread evenly (device i at i·period/N within
 * each period), from a 10 ms tick that catches up when the benchmark's event loop lags. A report
 * carries two twins: `temperature` (FLOAT, changes every round) and `sampledAt` (INT, the report's
 * wall-clock time in ms: the freshness probe). Calls in flight are capped; a report due while the
 * cap is reached is not sent and counted as `skipped`. The DMI client holds one HTTP/2 session and
 * opens at most as many streams as EdgeCore's server allows (100): calls beyond wait in the client,
 * and their time counts in the call's duration (as for a Go gRPC mapper on one connection).
 */
import { deviceManagerClient, serveDeviceMapper, type DeviceManagerClient, type GrpcServer } from '../../shared/dmi/index.js';
import { performance } from 'node:perf_hooks';
import { DmiError } from '../../shared/errors/index.js';

export const TEMPERATURE = 'temperature';
export const SAMPLED_AT = 'sampledAt';

export interface DmiCounters {
  offered: number;
  ok: number;
  skipped: number;
  /** Refused or failed calls by gRPC status name/number. */
  errors: Record<string, number>;
  /** One message per distinct status, for the report. */
  errorSamples: Record<string, string>;
}

export interface DmiMapper {
  readonly client: DeviceManagerClient & { close(): void };
  /** MapperRegister (withData) until EdgeCore answers with `want` devices; resolves with how many it listed. */
  registerUntil(want: number, timeoutMs: number): Promise<number>;
  /** Starts reporting (`names` in `namespace`, each once per `periodMs`). */
  start(names: string[], namespace: string, periodMs: number, maxInFlight: number): void;
  /** Stops reporting and waits for the calls in flight (at most `graceMs`). */
  stop(graceMs?: number): Promise<void>;
  counters(): DmiCounters;
  inFlight(): number;
  /**
   * Durations (ms) of the calls that ended since the last call of this (OK or not), and the most
   * calls in flight at once meanwhile; both start afresh.
   */
  takeLatencies(): { latencies: number[]; peakInFlight: number };
  close(): Promise<void>;
}

export async function startDmiMapper(dmiSocket: string, ownSocket: string, protocol: string): Promise<DmiMapper> {
  const ok = async () => ({});
  const server: GrpcServer = await serveDeviceMapper(ownSocket, {
    registerDevice: async (req) => ({ deviceName: req.device?.name ?? '', deviceNamespace: req.device?.namespace ?? '' }),
    updateDevice: ok,
    removeDevice: ok,
    createDeviceModel: async (req) => ({ deviceModelName: req.model?.name ?? '', deviceModelNamespace: req.model?.namespace ?? '' }),
    updateDeviceModel: ok,
    removeDeviceModel: ok,
    getDevice: async () => ({}),
  });
  const client = deviceManagerClient(dmiSocket, { timeoutMs: 10_000 });
  const c: DmiCounters = { offered: 0, ok: 0, skipped: 0, errors: {}, errorSamples: {} };
  let inFlight = 0;
  let peakInFlight = 0;
  let latencies: number[] = [];
  let timer: NodeJS.Timeout | undefined;
  let drained: (() => void) | undefined;

  const report = (namespace: string, name: string, round: number) => {
    c.offered++;
    if (inFlight >= maxInFlightNow) {
      c.skipped++;
      return;
    }
    inFlight++;
    if (inFlight > peakInFlight) peakInFlight = inFlight;
    const now = Date.now();
    const t0 = performance.now();
    client
      .reportDeviceStatus({
        deviceName: name,
        deviceNamespace: namespace,
        reportedDevice: {
          twins: [
            { propertyName: TEMPERATURE, reported: { value: (20 + (round % 100) / 10).toFixed(1), metadata: { timestamp: String(now), type: 'float' } } },
            { propertyName: SAMPLED_AT, reported: { value: String(now), metadata: { timestamp: String(now), type: 'integer' } } },
          ],
        },
      })
      .then(
        () => void c.ok++,
        (err: unknown) => {
          const key = err instanceof DmiError ? `grpc ${err.grpcStatus}` : 'other';
          c.errors[key] = (c.errors[key] ?? 0) + 1;
          c.errorSamples[key] ??= (err as Error).message;
        },
      )
      .finally(() => {
        latencies.push(performance.now() - t0);
        inFlight--;
        if (inFlight === 0) drained?.();
      });
  };
  let maxInFlightNow = 1000;

  return {
    client,
    async registerUntil(want, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      let last = 0;
      for (;;) {
        try {
          const res = await client.mapperRegister({
            withData: true,
            mapper: { name: 'bench-mapper', version: 'bench', apiVersion: 'v1beta1', protocol, address: new TextEncoder().encode(ownSocket), state: 'ok' },
          });
          last = res.deviceList?.length ?? 0;
          if (last >= want) return last;
        } catch {
          // EdgeCore's socket not up yet
        }
        if (Date.now() > deadline) return last;
        await new Promise((r) => setTimeout(r, 1000));
      }
    },
    start(names, namespace, periodMs, maxInFlight) {
      maxInFlightNow = maxInFlight;
      const n = names.length;
      const t0 = Date.now();
      let issued = 0;
      timer = setInterval(() => {
        const target = Math.floor(((Date.now() - t0) * n) / periodMs);
        for (; issued < target; issued++) report(namespace, names[issued % n]!, Math.floor(issued / n));
      }, 10);
    },
    async stop(graceMs = 5000) {
      if (timer) clearInterval(timer);
      timer = undefined;
      if (inFlight === 0) return;
      await new Promise<void>((r) => {
        drained = r;
        setTimeout(r, graceMs).unref();
      });
      drained = undefined;
    },
    counters: () => ({ ...c, errors: { ...c.errors }, errorSamples: { ...c.errorSamples } }),
    inFlight: () => inFlight,
    takeLatencies() {
      const r = { latencies, peakInFlight };
      latencies = [];
      peakInFlight = inFlight;
      return r;
    },
    async close() {
      client.close();
      await server.close();
    },
  };
}
