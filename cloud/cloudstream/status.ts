/**
 * @module
 * How CloudStream answers a request it cannot serve, for every protocol (HTTP logs, WebSocket and
 * SPDY upgrades): the HTTP status of a Ledge error code and the Kubernetes `Status` body, with
 * Kubernetes' reason for the status.
 */
import { ErrorCode } from '../../shared/errors/index.js';

/** Kubernetes' StatusReason of each HTTP status CloudStream answers. */
const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  500: 'InternalError',
  501: 'NotImplemented',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

/** The StatusReason of an HTTP status (`Unknown` for one CloudStream does not answer). */
export function reasonFor(httpStatus: number): string {
  return REASONS[httpStatus] ?? 'Unknown';
}

/** The HTTP status of a stream the edge (or the hub) refused, by its error code. */
export function httpStatusFor(code: string | undefined): number {
  switch (code) {
    case ErrorCode.NotFound:
      return 404;
    case ErrorCode.StreamRequest:
      return 400;
    case ErrorCode.Forbidden:
      return 403;
    case ErrorCode.Unsupported:
      return 501;
    case ErrorCode.Timeout:
      return 504;
    case ErrorCode.Disconnected:
    case ErrorCode.QueueFull:
    case ErrorCode.Stopped:
      return 503;
    default:
      return 500;
  }
}

/** The `Status` body of a refusal. */
export function statusBody(httpStatus: number, message: string): string {
  return JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: reasonFor(httpStatus), code: httpStatus });
}
