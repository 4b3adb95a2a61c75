/**
 * @module
 * Ledge's error types and codes. Every code is declared once, in {@link ErrorCode}; each
 * code that errors are thrown with or that goes on the wire has a class here with that
 * stable `code` (undici's pattern), a default message, `cause`, and where relevant the
 * WebSocket close code (ws's pattern) or HTTP status it is answered with. Decide on an
 * error with `instanceof` (it works across duplicate copies of this module) or, for an
 * `{code, message}` received from another module or peer, with {@link hasCode}; never
 * by writing a code string. The codes on the wire are tabled in docs/protocol.md.
 */

/**
 * Every Ledge error code. Values are stable: they appear on the wire (close reasons, error
 * ACKs), in logs and in docs/protocol.md, so renaming one is a protocol change.
 */
export const ErrorCode = {
  /** Generic Ledge error (the base class). */
  Ledge: 'LEDGE_ERR',
  /** Not a Ledge error and no code of its own (see {@link errorCode}). */
  Unknown: 'LEDGE_ERR_UNKNOWN',

  // On the wire: close reasons and error ACKs (docs/protocol.md).
  InvalidFrame: 'LEDGE_ERR_INVALID_FRAME',
  FrameTooLarge: 'LEDGE_ERR_FRAME_TOO_LARGE',
  UnsupportedVersion: 'LEDGE_ERR_UNSUPPORTED_VERSION',
  InvalidMessage: 'LEDGE_ERR_INVALID_MESSAGE',
  UnknownOperation: 'LEDGE_ERR_UNKNOWN_OPERATION',
  TextFrame: 'LEDGE_ERR_TEXT_FRAME',
  Handshake: 'LEDGE_ERR_HANDSHAKE',
  SlowPeer: 'LEDGE_ERR_SLOW_PEER',
  HeartbeatTimeout: 'LEDGE_ERR_HEARTBEAT_TIMEOUT',
  NoSuchModule: 'LEDGE_ERR_NO_SUCH_MODULE',
  Storage: 'LEDGE_ERR_STORAGE',
  Stopped: 'LEDGE_ERR_STOPPED',
  NotFound: 'LEDGE_ERR_NOT_FOUND',
  Forbidden: 'LEDGE_ERR_FORBIDDEN',
  Unsupported: 'LEDGE_ERR_UNSUPPORTED',
  /** The edge metadata store refused an object: over its object count, object size or total size limit (error ACK: the cloud retries later). */
  StoreLimit: 'LEDGE_ERR_STORE_LIMIT',

  // In-process and in logs.
  Config: 'LEDGE_ERR_CONFIG',
  /** A node sends more frames than its rate: CloudHub stops reading it until tokens refill (a log code; nothing is closed). */
  RateLimit: 'LEDGE_ERR_RATE_LIMIT',
  Timeout: 'LEDGE_ERR_TIMEOUT',
  QueueFull: 'LEDGE_ERR_QUEUE_FULL',
  /** A stream peer broke the stream rules (data past its credit, a chunk over the size limit, an id opened twice): that stream is aborted, the link stays. */
  StreamProtocol: 'LEDGE_ERR_STREAM_PROTOCOL',
  /** A stream (kubectl logs/exec/attach) asked for what cannot be given: no such pod or container, a container not running, a bad option. */
  StreamRequest: 'LEDGE_ERR_STREAM_REQUEST',
  DataDirLocked: 'LEDGE_ERR_DATA_DIR_LOCKED',
  ProtobufDecode: 'LEDGE_ERR_PROTOBUF_DECODE',
  ProtobufUnsupported: 'LEDGE_ERR_PROTOBUF_UNSUPPORTED',
  /** A Kubernetes API request failed (the apiserver's ApiError; client calls that failed). */
  Api: 'LEDGE_ERR_API',
  /** A pod given to Edged's runtime is not one it can run (no containers, duplicate names, unknown pod). */
  PodSpec: 'LEDGE_ERR_POD_SPEC',
  /** A container runtime could not do what Edged asked (pull, create, start); the kubelet reason is in the error's `reason`. */
  Runtime: 'LEDGE_ERR_RUNTIME',
  /** A container runtime's API socket cannot be reached (missing, refused): the daemon is not running. */
  RuntimeUnavailable: 'LEDGE_ERR_RUNTIME_UNAVAILABLE',
  /** A container runtime's API answered an error status or a malformed or oversized response. */
  RuntimeApi: 'LEDGE_ERR_RUNTIME_API',
  /** A container's configuration refers to what the node does not hold (a configmap, secret, key, field): it waits with CreateContainerConfigError. */
  ContainerConfig: 'LEDGE_ERR_CONTAINER_CONFIG',
  /** A Device, DeviceModel or twin value breaks the model (type, range, ReadOnly, unknown property) or KubeEdge's shapes: refused (HTTP 422, an MQTT result code 400, gRPC INVALID_ARGUMENT). */
  DeviceInvalid: 'LEDGE_ERR_DEVICE_INVALID',
  /** A twin message or DMI call names a device the node does not hold: refused (MQTT result code 404, gRPC NOT_FOUND). */
  DeviceUnknown: 'LEDGE_ERR_DEVICE_UNKNOWN',
  /** A DMI (gRPC) call failed: a mapper unreachable, a gRPC status other than OK, a malformed gRPC frame or protobuf message. */
  Dmi: 'LEDGE_ERR_DMI',
  /** The MQTT device bus failed: a broker unreachable or refusing (CONNACK code), a malformed packet, a subscription refused. */
  Mqtt: 'LEDGE_ERR_MQTT',

  // edge/join (issue 13): `edgecore join`, the node's side of admission.
  /** Joining failed: CloudHub unreachable, its TLS certificate not from the pinned CA, or an unusable answer (the issued certificate not for our key or node). */
  Join: 'LEDGE_ERR_JOIN',
  /** CloudHub refused the join (HTTP 4xx/5xx): its status and its own `{code, message}` are in the error. */
  JoinRefused: 'LEDGE_ERR_JOIN_REFUSED',
  /** The CA CloudHub served is not the one the join token pins (`sha256:` of its public key): the cloud is refused, the token never sent. */
  CaHashMismatch: 'LEDGE_ERR_CA_HASH_MISMATCH',
  /** The node already holds a certificate: joining again needs --force. */
  AlreadyJoined: 'LEDGE_ERR_ALREADY_JOINED',

  // Log-line codes for failures that are not Ledge errors (node, ws, client-node raise them).
  /** A TLS handshake with CloudHub failed. */
  Tls: 'LEDGE_ERR_TLS',
  /** A WebSocket session reported an error without a code of its own. */
  Session: 'LEDGE_ERR_SESSION',
  /** The edge's connect attempt failed without a code of its own. */
  Connect: 'LEDGE_ERR_CONNECT',
  /** The edge's link to the cloud closed. */
  Disconnected: 'LEDGE_ERR_DISCONNECTED',
  /** TLS verification is switched off. */
  Insecure: 'LEDGE_ERR_INSECURE',
  /** A Kubernetes watch failed and restarts. */
  Watch: 'LEDGE_ERR_WATCH',
  /** An ACK could not be recorded in an ObjectSync after its retries. */
  SyncRecord: 'LEDGE_ERR_SYNC_RECORD',

  // Joining (issue 13: shared/jointoken, cloud/tokens, cloud/certauthority; HTTP answers of POST /v1/join).
  /** A join token or bearer credential is missing or not `<id>.<secret>[@sha256:<hex>]` (HTTP 401). */
  JoinTokenMalformed: 'LEDGE_ERR_JOIN_TOKEN_MALFORMED',
  /** No join token with this id and secret: revoked, already used (single-use), or never issued (HTTP 401). */
  JoinTokenUnknown: 'LEDGE_ERR_JOIN_TOKEN_UNKNOWN',
  /** The join token's expiration has passed (HTTP 401). */
  JoinTokenExpired: 'LEDGE_ERR_JOIN_TOKEN_EXPIRED',
  /** A single-use join token was consumed by another join first (HTTP 401). */
  JoinTokenUsed: 'LEDGE_ERR_JOIN_TOKEN_USED',
  /** A join request is not what the protocol asks: content type, JSON, node name (HTTP 400). */
  JoinRequest: 'LEDGE_ERR_JOIN_REQUEST',
  /** A join request body is over the limit (HTTP 413). */
  JoinBodyTooLarge: 'LEDGE_ERR_JOIN_BODY_TOO_LARGE',
  /** Join requests arrive faster than the limit (HTTP 429, with Retry-After). */
  JoinRateLimited: 'LEDGE_ERR_JOIN_RATE_LIMITED',
  /** A certificate signing request is not PEM PKCS#10, its signature does not verify, or its key is not accepted (HTTP 400). */
  CsrInvalid: 'LEDGE_ERR_CSR_INVALID',
  /** CloudCore's CA cannot be loaded: unreadable or mismatched files, a damaged `ledge-ca` Secret, the API refusing. */
  CertificateAuthority: 'LEDGE_ERR_CA',

  // Certificate renewal (issue 13: cloud/certauthority/renew.ts, edge/edgehub/renewal.ts; POST /v1/renew).
  /** POST /v1/renew without a usable client certificate: none, not from the node CA, expired, not a node's, or the node revoked (HTTP 401: re-join). */
  RenewUnauthenticated: 'LEDGE_ERR_RENEW_UNAUTHENTICATED',
  /** The edge could not renew its client certificate: CloudHub unreachable or refusing, or an unusable answer; the current certificate stays. */
  CertRenewal: 'LEDGE_ERR_CERT_RENEWAL',
  /** The node's client certificate has expired: CloudHub refuses it, and only a re-join (`edgecore join --force`) gets a new one. */
  CertExpired: 'LEDGE_ERR_CERT_EXPIRED',

  // Node revocation (issue 13: cloud/revocation, ConfigMap ledge-revoked-nodes; CloudHub's upgrade).
  /** The node was revoked (`ledge node revoke`, or its Node deleted): its certificates issued before then are refused (HTTP 401 at the upgrade; a live session is closed with 1008): re-join it. */
  NodeRevoked: 'LEDGE_ERR_NODE_REVOKED',
  /** CloudCore has not loaded the node revocations yet (starting): a node's connection is refused with HTTP 503 and tried again. */
  RevocationsUnavailable: 'LEDGE_ERR_REVOCATIONS_UNAVAILABLE',
  /** Log-line code: an entry of the revocation ConfigMap is unreadable (left out), or recording a revocation there failed (retried). */
  RevocationList: 'LEDGE_ERR_REVOCATION_LIST',
} as const;

/** One of the {@link ErrorCode} values. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const kLedgeError = Symbol.for('ledge.error');

export class LedgeError extends Error {
  static readonly code: ErrorCode = ErrorCode.Ledge;
  readonly code: ErrorCode = ErrorCode.Ledge;
  /** WebSocket close code to use when this error ends a session, if any. */
  readonly closeCode?: number;
  /** HTTP status this error is answered with, if it is answered over HTTP. */
  readonly httpStatus?: number;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LedgeError';
  }
  get [kLedgeError](): true {
    return true;
  }
  // instanceof works across duplicate copies of this module (bundles, tests).
  // `this` is the class instanceof is asked about (LedgeError or a subclass).
  static override [Symbol.hasInstance](instance: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: the receiver decides which check applies
    if (this === LedgeError) {
      return typeof instance === 'object' && instance !== null && (instance as Record<symbol, unknown>)[kLedgeError] === true;
    }
    // biome-ignore lint/complexity/noThisInStatic: a subclass gets the ordinary prototype-chain check
    return Function.prototype[Symbol.hasInstance].call(this, instance);
  }
}

interface Wire {
  /** WebSocket close code. */
  closeCode?: number;
  /** HTTP status. */
  httpStatus?: number;
}

function defineError<C extends ErrorCode>(code: C, name: string, defaultMessage: string, wire: Wire = {}) {
  return class extends LedgeError {
    static override readonly code: C = code;
    static readonly closeCode: number | undefined = wire.closeCode;
    static readonly httpStatus: number | undefined = wire.httpStatus;
    override readonly code: C = code;
    override readonly closeCode = wire.closeCode;
    override readonly httpStatus = wire.httpStatus;
    constructor(message: string = defaultMessage, options?: { cause?: unknown }) {
      super(message, options);
      this.name = name;
    }
  };
}

/** Configuration is missing, malformed or out of range. */
export const ConfigError = defineError(ErrorCode.Config, 'ConfigError', 'invalid configuration');
/** A frame could not be decoded (malformed CBOR, bad layout, depth or length limits). 1007 = invalid payload. */
export const InvalidFrameError = defineError(ErrorCode.InvalidFrame, 'InvalidFrameError', 'invalid frame', { closeCode: 1007 });
/** A frame exceeded the configured maximum size. 1009 = message too big. */
export const FrameTooLargeError = defineError(ErrorCode.FrameTooLarge, 'FrameTooLargeError', 'frame too large', { closeCode: 1009 });
/** The frame's protocol version is not one this build speaks. 1002 = protocol error. */
export const UnsupportedVersionError = defineError(ErrorCode.UnsupportedVersion, 'UnsupportedVersionError', 'unsupported protocol version', { closeCode: 1002 });
/** A decoded message is structurally valid CBOR but not a valid Ledge message. 1007. */
export const InvalidMessageError = defineError(ErrorCode.InvalidMessage, 'InvalidMessageError', 'invalid message', { closeCode: 1007 });
/** The operation named in a message is unknown: that message is rejected with an error ACK, the session stays (1007 only if it had to end one). */
export const UnknownOperationError = defineError(ErrorCode.UnknownOperation, 'UnknownOperationError', 'unknown operation', { closeCode: 1007 });
/** A text frame arrived where only binary frames are allowed. 1003 = unsupported data. */
export const TextFrameError = defineError(ErrorCode.TextFrame, 'TextFrameError', 'text frames are not accepted', { closeCode: 1003 });
/** The handshake was refused (bad path, missing subprotocol, bad node name, node limit) before the upgrade: HTTP 400. */
export const HandshakeError = defineError(ErrorCode.Handshake, 'HandshakeError', 'handshake refused', { httpStatus: 400 });
/** A peer does not read what it is sent: its unflushed bytes stayed over the budget. 1008 = policy violation. */
export const SlowPeerError = defineError(ErrorCode.SlowPeer, 'SlowPeerError', 'peer does not read', { closeCode: 1008 });
/** The peer missed its heartbeats. 1001 = going away. */
export const HeartbeatTimeoutError = defineError(ErrorCode.HeartbeatTimeout, 'HeartbeatTimeoutError', 'heartbeat timeout', { closeCode: 1001 });
/** A request/response exchange (sendSync) or a call with a deadline timed out. */
export const TimeoutError = defineError(ErrorCode.Timeout, 'TimeoutError', 'timed out');
/** A queue or mailbox is full. */
export const QueueFullError = defineError(ErrorCode.QueueFull, 'QueueFullError', 'queue full');
/** A stream peer broke the stream rules: the stream is aborted with this code, the link stays. */
export const StreamProtocolError = defineError(ErrorCode.StreamProtocol, 'StreamProtocolError', 'stream protocol violation');
/** A stream request cannot be served as asked (HTTP 400 at the kubelet endpoint). */
export const StreamRequestError = defineError(ErrorCode.StreamRequest, 'StreamRequestError', 'bad stream request', { httpStatus: 400 });
/** A message was addressed to a module or group that is not registered (also an error ACK). */
export const NoSuchModuleError = defineError(ErrorCode.NoSuchModule, 'NoSuchModuleError', 'no such module');
/** The bus or a component was already stopped. */
export const StoppedError = defineError(ErrorCode.Stopped, 'StoppedError', 'stopped');
/** Durable storage failed (disk full, permission, corruption). A message that hit it is not ACKed, so it is resent. */
export const StorageError = defineError(ErrorCode.Storage, 'StorageError', 'storage failure');
/** Another live process holds the data directory's lock (shared/lock). */
export const DataDirLockedError = defineError(ErrorCode.DataDirLocked, 'DataDirLockedError', 'data directory is locked by another process');
/** An upstream message refers to an object the cloud does not have (error ACK: rejected, not retried). */
export const NotFoundError = defineError(ErrorCode.NotFound, 'NotFoundError', 'not found');
/** A node wrote something that is not its own (another node's status, a pod not bound to it): error ACK. */
export const ForbiddenError = defineError(ErrorCode.Forbidden, 'ForbiddenError', 'forbidden');
/** The receiving module does not handle this resource type: error ACK. */
export const UnsupportedError = defineError(ErrorCode.Unsupported, 'UnsupportedError', 'not supported');
/** The edge metadata store is at a limit (`meta.maxObjects`, `meta.maxObjectBytes`, `meta.maxLiveBytes`): the object is refused (error ACK), what is held is kept. */
export const StoreLimitError = defineError(ErrorCode.StoreLimit, 'StoreLimitError', 'metadata store limit reached');
/** The edge's link to the cloud is down: what needs the cloud now (a remote query) fails at once. */
export const DisconnectedError = defineError(ErrorCode.Disconnected, 'DisconnectedError', 'not connected to the cloud');
/** A Kubernetes protobuf body is malformed (truncated, bad lengths, wrong wire type, value out of range): HTTP 400. */
export const ProtobufDecodeError = defineError(ErrorCode.ProtobufDecode, 'ProtobufDecodeError', 'malformed protobuf body', { httpStatus: 400 });
/** A Kubernetes protobuf body cannot be decoded exactly (a kind or field outside the server's schema): HTTP 415. */
export const ProtobufUnsupportedError = defineError(ErrorCode.ProtobufUnsupported, 'ProtobufUnsupportedError', 'protobuf body cannot be decoded exactly', { httpStatus: 415 });
/**
 * A Kubernetes API request of a cloud module failed. In a module's reply to an upstream message it
 * means "not handled": CloudHub withholds the ACK, so the edge's resend is handled again.
 */
export const KubeApiError = defineError(ErrorCode.Api, 'KubeApiError', 'Kubernetes API request failed');
/** A pod given to Edged's runtime cannot be run as given (no containers, duplicate container names, an unknown pod uid). */
export const PodSpecError = defineError(ErrorCode.PodSpec, 'PodSpecError', 'invalid pod for the runtime');
/** A container's environment or volumes refer to a configmap, secret, key or field that cannot be resolved (kubelet: CreateContainerConfigError). */
export const ContainerConfigError = defineError(ErrorCode.ContainerConfig, 'ContainerConfigError', 'container configuration cannot be resolved');
/**
 * A container runtime could not do what Edged asked. Edged's runtimes throw the subclass in
 * edge/edged/runtime.ts, which adds the kubelet reason (`ErrImagePull`, `RunContainerError`, …).
 */
export const RuntimeError = defineError(ErrorCode.Runtime, 'RuntimeError', 'container runtime failure');

/** A container runtime's API socket cannot be reached (missing, refused): the message says which path and how to start the daemon. */
export const RuntimeUnavailableError = defineError(ErrorCode.RuntimeUnavailable, 'RuntimeUnavailableError', 'container runtime not reachable');
const RuntimeApiErrorBase = defineError(ErrorCode.RuntimeApi, 'RuntimeApiError', 'container runtime API error');
/** A container runtime's API refused a request (`status` ≥ 400, `daemonMessage` its `message`) or answered something unusable (`status` as received). */
export class RuntimeApiError extends RuntimeApiErrorBase {
  constructor(message?: string, options?: { cause?: unknown; status?: number; daemonMessage?: string }) {
    super(message, options);
    this.status = options?.status;
    this.daemonMessage = options?.daemonMessage;
  }
  /** The HTTP status the daemon answered (undefined when none was read). */
  readonly status: number | undefined;
  /** The daemon's own `message`, when it sent one. */
  readonly daemonMessage: string | undefined;
}

/** A Device, DeviceModel or twin value breaks the model or KubeEdge's shapes (HTTP 422: a validation failure, as the API server answers). */
export const DeviceInvalidError = defineError(ErrorCode.DeviceInvalid, 'DeviceInvalidError', 'invalid device or twin value', { httpStatus: 422 });
/** A twin message or DMI call names a device the node does not hold. */
export const DeviceUnknownError = defineError(ErrorCode.DeviceUnknown, 'DeviceUnknownError', 'unknown device', { httpStatus: 404 });
/**
 * A DMI (gRPC) call failed. `grpcStatus` is the gRPC status code received or to answer with
 * (2 UNKNOWN when none applies); `grpcMessage` the peer's grpc-message, when one was read.
 */
const DmiErrorBase = defineError(ErrorCode.Dmi, 'DmiError', 'DMI call failed');
export class DmiError extends DmiErrorBase {
  constructor(message?: string, options?: { cause?: unknown; grpcStatus?: number; grpcMessage?: string }) {
    super(message, options);
    this.grpcStatus = options?.grpcStatus ?? 2;
    this.grpcMessage = options?.grpcMessage;
  }
  readonly grpcStatus: number;
  readonly grpcMessage: string | undefined;
}
/** The MQTT device bus failed (broker unreachable or refusing, malformed packet, subscription refused). */
export const MqttError = defineError(ErrorCode.Mqtt, 'MqttError', 'MQTT device bus failure');

// edge/join (issue 13): `edgecore join`.
/** Joining failed: CloudHub unreachable, its TLS certificate not from the pinned CA, or an unusable answer. */
export const JoinError = defineError(ErrorCode.Join, 'JoinError', 'joining the cloud failed');
const JoinRefusedErrorBase = defineError(ErrorCode.JoinRefused, 'JoinRefusedError', 'CloudHub refused the join');
/** CloudHub answered the join with an error status (`status`); `serverCode`/`serverMessage` are its `{code, message}`, when it sent them. */
export class JoinRefusedError extends JoinRefusedErrorBase {
  constructor(message?: string, options?: { cause?: unknown; status?: number; serverCode?: string; serverMessage?: string }) {
    super(message, options);
    this.status = options?.status;
    this.serverCode = options?.serverCode;
    this.serverMessage = options?.serverMessage;
  }
  readonly status: number | undefined;
  readonly serverCode: string | undefined;
  readonly serverMessage: string | undefined;
}
/** The CA CloudHub served does not have the hash the join token pins. */
export const CaHashMismatchError = defineError(ErrorCode.CaHashMismatch, 'CaHashMismatchError', "CloudHub's CA does not match the join token's CA hash");
/** The node already holds a certificate (join again with --force). */
export const AlreadyJoinedError = defineError(ErrorCode.AlreadyJoined, 'AlreadyJoinedError', 'this node has already joined');

// Joining (issue 13: shared/jointoken, cloud/tokens, cloud/certauthority).
/** A join token or bearer credential is missing or malformed; the message says which part, never the secret. */
export const JoinTokenMalformedError = defineError(ErrorCode.JoinTokenMalformed, 'JoinTokenMalformedError', 'malformed join token', { httpStatus: 401 });
/** No join token with this id and secret (revoked, already used, never issued). */
export const JoinTokenUnknownError = defineError(ErrorCode.JoinTokenUnknown, 'JoinTokenUnknownError', 'unknown join token', { httpStatus: 401 });
/** The join token has expired. */
export const JoinTokenExpiredError = defineError(ErrorCode.JoinTokenExpired, 'JoinTokenExpiredError', 'join token expired', { httpStatus: 401 });
/** A single-use join token was already used. */
export const JoinTokenUsedError = defineError(ErrorCode.JoinTokenUsed, 'JoinTokenUsedError', 'join token already used', { httpStatus: 401 });
/** A join request breaks the protocol (content type, JSON, fields, node name). */
export const JoinRequestError = defineError(ErrorCode.JoinRequest, 'JoinRequestError', 'bad join request', { httpStatus: 400 });
/** A join request body is over the limit. */
export const JoinBodyTooLargeError = defineError(ErrorCode.JoinBodyTooLarge, 'JoinBodyTooLargeError', 'join request body too large', { httpStatus: 413 });
/** Join requests arrive faster than the limit. */
export const JoinRateLimitedError = defineError(ErrorCode.JoinRateLimited, 'JoinRateLimitedError', 'too many join requests', { httpStatus: 429 });
/** A CSR is not PEM PKCS#10, its signature does not verify, or its key is not ECDSA P-256 / RSA ≥ 2048. */
export const CsrInvalidError = defineError(ErrorCode.CsrInvalid, 'CsrInvalidError', 'invalid certificate signing request', { httpStatus: 400 });
/** CloudCore's CA cannot be loaded or created. */
export const CertificateAuthorityError = defineError(ErrorCode.CertificateAuthority, 'CertificateAuthorityError', 'certificate authority unavailable');

// Certificate renewal (issue 13: cloud/certauthority/renew.ts, edge/edgehub/renewal.ts).
/** POST /v1/renew was not authenticated by a valid, unrevoked node certificate from the node CA: the node must re-join. */
export const RenewUnauthenticatedError = defineError(ErrorCode.RenewUnauthenticated, 'RenewUnauthenticatedError', 'renewal not authenticated: re-join the node', {
  httpStatus: 401,
});
const CertRenewalErrorBase = defineError(ErrorCode.CertRenewal, 'CertRenewalError', 'certificate renewal failed');
/** A renewal failed; `status` and `serverCode` are CloudHub's HTTP status and `{code}` when it answered with an error. */
export class CertRenewalError extends CertRenewalErrorBase {
  constructor(message?: string, options?: { cause?: unknown; status?: number; serverCode?: string }) {
    super(message, options);
    this.status = options?.status;
    this.serverCode = options?.serverCode;
  }
  readonly status: number | undefined;
  readonly serverCode: string | undefined;
}
/** The node's client certificate has expired (re-join with `edgecore join --force`). */
export const CertExpiredError = defineError(ErrorCode.CertExpired, 'CertExpiredError', "the node's client certificate has expired");

// Node revocation (issue 13: cloud/revocation).
/** The node was revoked before its certificate was issued: refused at the upgrade (401), its live session closed (1008 policy violation). */
export const NodeRevokedError = defineError(ErrorCode.NodeRevoked, 'NodeRevokedError', 'node revoked: re-join it', { httpStatus: 401, closeCode: 1008 });
/** The node revocations are not loaded yet (CloudCore starting): the connection is refused with 503, the node tries again. */
export const RevocationsUnavailableError = defineError(ErrorCode.RevocationsUnavailable, 'RevocationsUnavailableError', 'node revocations not loaded yet', { httpStatus: 503 });

/* Each class is also a type (`err: StorageError`). */
export type ConfigError = InstanceType<typeof ConfigError>;
export type InvalidFrameError = InstanceType<typeof InvalidFrameError>;
export type FrameTooLargeError = InstanceType<typeof FrameTooLargeError>;
export type UnsupportedVersionError = InstanceType<typeof UnsupportedVersionError>;
export type InvalidMessageError = InstanceType<typeof InvalidMessageError>;
export type UnknownOperationError = InstanceType<typeof UnknownOperationError>;
export type TextFrameError = InstanceType<typeof TextFrameError>;
export type HandshakeError = InstanceType<typeof HandshakeError>;
export type SlowPeerError = InstanceType<typeof SlowPeerError>;
export type HeartbeatTimeoutError = InstanceType<typeof HeartbeatTimeoutError>;
export type TimeoutError = InstanceType<typeof TimeoutError>;
export type QueueFullError = InstanceType<typeof QueueFullError>;
export type NoSuchModuleError = InstanceType<typeof NoSuchModuleError>;
export type StoppedError = InstanceType<typeof StoppedError>;
export type StorageError = InstanceType<typeof StorageError>;
export type DataDirLockedError = InstanceType<typeof DataDirLockedError>;
export type NotFoundError = InstanceType<typeof NotFoundError>;
export type ForbiddenError = InstanceType<typeof ForbiddenError>;
export type UnsupportedError = InstanceType<typeof UnsupportedError>;
export type StoreLimitError = InstanceType<typeof StoreLimitError>;
export type DisconnectedError = InstanceType<typeof DisconnectedError>;
export type ProtobufDecodeError = InstanceType<typeof ProtobufDecodeError>;
export type ProtobufUnsupportedError = InstanceType<typeof ProtobufUnsupportedError>;
export type PodSpecError = InstanceType<typeof PodSpecError>;
export type KubeApiError = InstanceType<typeof KubeApiError>;
export type RuntimeError = InstanceType<typeof RuntimeError>;
export type RuntimeUnavailableError = InstanceType<typeof RuntimeUnavailableError>;
export type ContainerConfigError = InstanceType<typeof ContainerConfigError>;
export type DeviceInvalidError = InstanceType<typeof DeviceInvalidError>;
export type DeviceUnknownError = InstanceType<typeof DeviceUnknownError>;
export type MqttError = InstanceType<typeof MqttError>;
export type JoinError = InstanceType<typeof JoinError>;
export type CaHashMismatchError = InstanceType<typeof CaHashMismatchError>;
export type AlreadyJoinedError = InstanceType<typeof AlreadyJoinedError>;
// Joining (issue 13).
export type JoinTokenMalformedError = InstanceType<typeof JoinTokenMalformedError>;
export type JoinTokenUnknownError = InstanceType<typeof JoinTokenUnknownError>;
export type JoinTokenExpiredError = InstanceType<typeof JoinTokenExpiredError>;
export type JoinTokenUsedError = InstanceType<typeof JoinTokenUsedError>;
export type JoinRequestError = InstanceType<typeof JoinRequestError>;
export type JoinBodyTooLargeError = InstanceType<typeof JoinBodyTooLargeError>;
export type JoinRateLimitedError = InstanceType<typeof JoinRateLimitedError>;
export type CsrInvalidError = InstanceType<typeof CsrInvalidError>;
export type CertificateAuthorityError = InstanceType<typeof CertificateAuthorityError>;
// Certificate renewal (issue 13).
export type RenewUnauthenticatedError = InstanceType<typeof RenewUnauthenticatedError>;
export type CertExpiredError = InstanceType<typeof CertExpiredError>;
// Node revocation (issue 13).
export type NodeRevokedError = InstanceType<typeof NodeRevokedError>;
export type RevocationsUnavailableError = InstanceType<typeof RevocationsUnavailableError>;

/** Returns the stable code of any error (or `{code}` object), or {@link ErrorCode.Unknown}. */
export function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return ErrorCode.Unknown;
}

/**
 * Whether `value` — an error, or an `{code, message}` received from another module or a peer
 * (an error ACK, a sendSync reply) — carries `code`. For thrown errors prefer `instanceof`.
 */
export function hasCode(value: unknown, code: ErrorCode): boolean {
  return typeof value === 'object' && value !== null && (value as { code?: unknown }).code === code;
}

/** The `{code, message}` form of an error, as error ACKs and replies carry it. */
export function errorContent(err: unknown): { code: string; message: string } {
  return { code: errorCode(err), message: errorMessage(err) };
}

/** Most bytes a WebSocket close reason may have (RFC 6455: 125-byte control payload, 2 for the code). */
const MAX_CLOSE_REASON_BYTES = 123;

/**
 * The WebSocket close reason for an error: `<code>: <message>`, cut to the 123 bytes a close
 * frame allows (at a character boundary), so the peer sees the stable code first.
 */
export function closeReason(err: unknown): string {
  const full = `${errorCode(err)}: ${errorMessage(err)}`;
  if (Buffer.byteLength(full) <= MAX_CLOSE_REASON_BYTES) return full;
  let out = '';
  let bytes = 0;
  for (const ch of full) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > MAX_CLOSE_REASON_BYTES) break;
    out += ch;
    bytes += n;
  }
  return out;
}

/** One-line description of an error for logs. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
