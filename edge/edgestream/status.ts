/**
 * @module
 * The metav1.Status an exec or attach ends with, on the error channel (3), byte for byte as a
 * kubelet writes it (kubectl reads the exit code from `details.causes[ExitCode]`); the shapes are
 * the stream protocol's (shared/protocol: success, `NonZeroExitCode` with the code, or a `Failure`
 * with its message).
 */
import { streamExitStatus, streamFailureStatus } from '../../shared/protocol/index.js';
import type { StreamEnd } from '../edged/runtime.js';

/** `{"metadata":{},"status":"Failure","message":…}`: the session could not run or was cut. */
export const failureStatus = streamFailureStatus;

/** The Status for how a session ended: its error if any, else its exit code (none, as for a detached attach: success). */
export function endStatus(end: StreamEnd): string {
  return end.error !== undefined ? streamFailureStatus(end.error) : streamExitStatus(end.exitCode);
}
