/**
 * @module
 * The metav1.Status an exec or attach ends with, on the error channel (3), byte for byte as a
 * kubelet writes it (kubectl reads the exit code from `details.causes[ExitCode]`):
 * success `{"metadata":{},"status":"Success"}`; a non-zero exit `NonZeroExitCode` with the code;
 * anything else a `Failure` with its message.
 */
import type { StreamEnd } from '../edged/runtime.js';

/** `{"metadata":{},"status":"Failure","message":…}`: the session could not run or was cut. */
export function failureStatus(message: string): string {
  return JSON.stringify({ metadata: {}, status: 'Failure', message });
}

/** The Status for how a session ended: its error if any, else its exit code (none, as for a detached attach: success). */
export function endStatus(end: StreamEnd): string {
  if (end.error !== undefined) return failureStatus(end.error);
  if (end.exitCode === undefined || end.exitCode === 0) return JSON.stringify({ metadata: {}, status: 'Success' });
  return JSON.stringify({
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: exit status ${end.exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(end.exitCode) }] },
  });
}
