/**
 * @module
 * How the CA and the token store describe a failed Kubernetes API call: client-node's
 * ApiException message carries the whole response (body and headers), too long for one log line.
 */
import { httpStatus } from '../kube/index.js';
import { errorMessage } from '../../shared/errors/index.js';

/** `HTTP <status>: <the Status message>` of a client-node error, else the error's message. */
export function apiErrorText(err: unknown): string {
  const status = httpStatus(err);
  if (status === undefined) return errorMessage(err);
  const body = (err as { body?: unknown }).body;
  let message: unknown;
  if (typeof body === 'string') {
    try {
      message = (JSON.parse(body) as { message?: unknown }).message;
    } catch {
      message = body.slice(0, 200);
    }
  } else if (body && typeof body === 'object') {
    message = (body as { message?: unknown }).message;
  }
  return typeof message === 'string' && message ? `HTTP ${status}: ${message}` : `HTTP ${status}`;
}
