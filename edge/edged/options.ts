/**
 * @module
 * Edged defaults, the one place they are written.
 */
import type { ContainerRuntimeOptions } from './container-runtime.js';
import type { ProcessRuntimeOptions } from './process-runtime.js';

/**
 * The log ingest rate limit of each container, both runtimes (./log-rate.ts): bytes of CRI log
 * records per second (what the log file grows by: a line costs its bytes plus a 40-byte record
 * header), with a burst. EdgeCore writes every container's log in its one event loop, interpreted:
 * `yes` unlimited makes it write ~10 MB/s of records and a configmap's API-write→edge-store
 * latency goes from 6 ms to 43 ms. 1 MiB/s is a tenth of that cost, and over 10× what a chatty
 * service logs (1000 lines/s of 100 bytes ≈ 140 KB/s of records); it also fills a 10 MiB log file
 * (containerLogMaxBytes) no faster than every 10 s. The 4 MiB burst lets a start-up dump or a long
 * stack trace through unslowed (4 s of the rate; less than half of the log file, so one burst
 * does not rotate the file twice). 0 = unlimited.
 */
export const defaultContainerLogRateOptions = {
  /** Most bytes of CRI log records one container's output may produce per second, sustained (1 MiB/s); 0: unlimited. */
  containerLogMaxBytesPerSecond: 1024 * 1024,
  /** What a container may print at once above that rate, bytes of records (4 MiB). */
  containerLogBurstBytes: 4 * 1024 * 1024,
} as const;

/** Defaults of the process runtime's options that have one. */
export const defaultProcessRuntimeOptions = {
  ...defaultContainerLogRateOptions,
  /** Where the cgroup v2 hierarchy is mounted, for CPU/memory limits (./cgroup.ts). */
  cgroupRoot: '/sys/fs/cgroup',
  /** After a container's main process exited, its output is still read this long from a process that holds its pipes, ms. */
  exitDrainMs: 2000,
  /** exec output kept per stream, bytes (1 MiB); more is dropped with a marker. */
  execMaxOutputBytes: 1024 * 1024,
  /** At a restart, how long the runtime waits for a leftover process it killed to be gone, ms. */
  leftoverKillWaitMs: 5000,
  /** Output an attached session holds while it is paused, bytes (1 MiB); more is dropped with a note to that session. */
  attachMaxBufferedBytes: 1024 * 1024,
  /** util-linux `script` (package bsdutils), found on EdgeCore's PATH: it gives `exec -t` its terminal. */
  ttyScript: 'script',
} as const satisfies Partial<ProcessRuntimeOptions>;

/** Defaults of Edged's options (./edged.ts), the pod worker's kubelet rules among them. */
export const defaultEdgedOptions = {
  /** The runtime a pod without runtimeClassName runs on: `process` or `container`. */
  defaultRuntime: 'process' as 'process' | 'container',
  /** Most pods the node runs (kubelet's maxPods); past it a pod is rejected with reason OutOfpods. */
  maxPods: 110,
  /** Grace between SIGTERM and SIGKILL when the pod sets none, seconds (Kubernetes' default). */
  terminationGracePeriodSeconds: 30,
  /** First restart delay of a crashing container, ms (kubelet: 10 s). */
  backoffBaseMs: 10_000,
  /** Largest restart delay, ms (kubelet: 5 min). */
  backoffMaxMs: 300_000,
  /** A container that ran this long before exiting restarts from the first delay again, ms (kubelet: 10 min). */
  backoffResetMs: 600_000,
  /** Largest size of one container log file before it is rotated (kubelet's containerLogMaxSize, 10 MiB). */
  containerLogMaxBytes: 10 * 1024 * 1024,
  /** Every pod is re-examined this often even without an event, ms (kubelet's PLEG relist is 1 s; exits arrive as events here). */
  resyncMs: 10_000,
  /** Pod status is re-sent this often even when unchanged, ms (a slow resync in case the API lost a write). */
  statusResyncMs: 600_000,
  /** EdgeCore's shutdown stops process-runtime pods with at most this grace, seconds (their processes cannot outlive EdgeCore usefully). */
  shutdownGraceSeconds: 10,
} as const;

/** Defaults of Edged's volume options (./volumes.ts). */
export const defaultVolumeOptions = {
  /** Largest total size of one configMap/secret/downwardAPI/projected volume, bytes (8 MiB; the API caps one object near 1 MiB). */
  maxVolumeBytes: 8 * 1024 * 1024,
} as const;

/** Defaults of the container runtime's options (./container-runtime.ts). */
export const defaultContainerRuntimeOptions = {
  ...defaultContainerLogRateOptions,
  /** Docker's socket; Podman's rootful API service listens on /run/podman/podman.sock. */
  socketPath: '/var/run/docker.sock',
  /** The infra container's image (a kubelet's default sandbox image). */
  pauseImage: 'registry.k8s.io/pause:3.10',
  /** One API request, ms (kubelet's runtime-request-timeout, 2 min). */
  requestTimeoutMs: 120_000,
  /** A pull with no progress this long fails, ms (dockershim's image-pull-progress-deadline, 1 min). */
  pullProgressDeadlineMs: 60_000,
  /** Event stream reconnects: first delay, ms. */
  eventBackoffBaseMs: 500,
  /** Event stream reconnects: largest delay, ms. */
  eventBackoffMaxMs: 30_000,
  /** Removing a container waits this long for its log copy to finish, ms. */
  logDrainMs: 2_000,
  /** Output kept per stream of one exec, bytes. */
  maxExecOutputBytes: 1024 * 1024,
  /** Log file bound when a container's label lacks one (Edged always sets it), bytes (kubelet's containerLogMaxSize, 10 MiB). */
  logMaxBytes: 10 * 1024 * 1024,
} as const satisfies Required<Omit<ContainerRuntimeOptions, 'log'>> & { logMaxBytes: number };
