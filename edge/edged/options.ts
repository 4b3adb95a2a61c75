/**
 * @module
 * Edged defaults, the one place they are written.
 */
import type { ProcessRuntimeOptions } from './process-runtime.js';

/** Defaults of the process runtime's options that have one. */
export const defaultProcessRuntimeOptions = {
  /** Grace between SIGTERM and SIGKILL when the pod sets none, seconds (Kubernetes' default). */
  terminationGracePeriodSeconds: 30,
  /** First restart delay of a crashing container, ms (kubelet: 10 s). */
  backoffBaseMs: 10_000,
  /** Largest restart delay, ms (kubelet: 5 min). */
  backoffMaxMs: 300_000,
  /** A container that ran this long before exiting restarts from the first delay again, ms (kubelet: 10 min). */
  backoffResetMs: 600_000,
  /** Largest size of a container's log file before it is rotated once, bytes (kubelet's containerLogMaxSize, 10 MiB). */
  logMaxBytes: 10 * 1024 * 1024,
} as const satisfies Partial<ProcessRuntimeOptions>;
