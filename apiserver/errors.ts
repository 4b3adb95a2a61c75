/**
 * @module
 * API errors. Each maps to a Kubernetes `Status` object with the HTTP code and
 * `reason` a real kube-apiserver would send, so clients (client-go, client-node,
 * kubectl) branch on them exactly as they would against a real cluster.
 */
import { ErrorCode, LedgeError } from '../shared/errors/index.js';

export interface StatusCause {
  reason: string;
  message: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

/** Kubernetes `meta.k8s.io/v1 Status` body. */
export interface StatusObject {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, unknown>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

/**
 * The `reason` values a Status carries (Kubernetes' `metav1.StatusReason`), each with the
 * HTTP code this server answers it with. Every reason the server sends is one of these
 * (typed), and they are tabled in docs/protocol.md.
 */
export const StatusReason = {
  BadRequest: 'BadRequest', // 400
  Unauthorized: 'Unauthorized', // 401
  Forbidden: 'Forbidden', // 403
  NotFound: 'NotFound', // 404
  MethodNotAllowed: 'MethodNotAllowed', // 405
  NotAcceptable: 'NotAcceptable', // 406
  AlreadyExists: 'AlreadyExists', // 409
  Conflict: 'Conflict', // 409
  Expired: 'Expired', // 410
  RequestEntityTooLarge: 'RequestEntityTooLarge', // 413
  UnsupportedMediaType: 'UnsupportedMediaType', // 415
  Invalid: 'Invalid', // 422
  InternalError: 'InternalError', // 500
  ServiceUnavailable: 'ServiceUnavailable', // 503
  Timeout: 'Timeout', // 504
} as const;
export type StatusReason = (typeof StatusReason)[keyof typeof StatusReason];

/** An error that the HTTP layer renders as a Status with `httpCode` and `reason`. */
export class ApiError extends LedgeError {
  override readonly code: ErrorCode = ErrorCode.Api;
  constructor(
    readonly httpCode: number,
    readonly reason: StatusReason,
    message: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toStatus(): StatusObject {
    return failureStatus(this.httpCode, this.reason, this.message, this.details);
  }
}

export function failureStatus(code: number, reason: StatusReason, message: string, details?: StatusDetails): StatusObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

/** Resource identity used in messages: `pods`, `widgets.example.com`. */
export interface ResourceRef {
  group: string;
  resource: string;
}

function qualified(r: ResourceRef): string {
  return r.group ? `${r.resource}.${r.group}` : r.resource;
}

export const errors = {
  notFound: (r: ResourceRef, name: string) => new ApiError(404, 'NotFound', `${qualified(r)} "${name}" not found`, { name, group: r.group || undefined, kind: r.resource }),
  alreadyExists: (r: ResourceRef, name: string) =>
    new ApiError(409, 'AlreadyExists', `${qualified(r)} "${name}" already exists`, { name, group: r.group || undefined, kind: r.resource }),
  conflict: (r: ResourceRef, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again') =>
    new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${why}`, { name, group: r.group || undefined, kind: r.resource }),
  invalid: (kind: string, group: string, name: string, causes: StatusCause[]) =>
    new ApiError(422, 'Invalid', `${kind}${group ? `.${group}` : ''} "${name}" is invalid: ${causes.map((c) => `${c.field ? `${c.field}: ` : ''}${c.message}`).join(', ')}`, {
      name,
      group: group || undefined,
      kind,
      causes,
    }),
  badRequest: (message: string) => new ApiError(400, 'BadRequest', message),
  gone: (message: string) => new ApiError(410, 'Expired', message),
  methodNotAllowed: (message = 'the server does not allow this method on the requested resource') => new ApiError(405, 'MethodNotAllowed', message),
  unsupportedMediaType: (message: string) => new ApiError(415, 'UnsupportedMediaType', message),
  notAcceptable: (message: string) => new ApiError(406, 'NotAcceptable', message),
  tooLarge: (limit: number) => new ApiError(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${limit}`),
  unauthorized: () => new ApiError(401, 'Unauthorized', 'Unauthorized'),
  forbidden: (message: string) => new ApiError(403, 'Forbidden', message),
  unknownResource: () => new ApiError(404, 'NotFound', 'the server could not find the requested resource'),
  internal: (message: string) => new ApiError(500, 'InternalError', `Internal error occurred: ${message}`),
  unavailable: (message: string) => new ApiError(503, 'ServiceUnavailable', message),
};
