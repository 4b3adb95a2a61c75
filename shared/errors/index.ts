/**
 * @module
 * Ledge's error types. One base class and one subclass per failure, each with a
 * stable `code` string (undici's pattern) so callers and logs can match on it.
 * Protocol errors also carry the WebSocket close code that goes on the wire (ws's pattern).
 */

const kLedgeError = Symbol.for('ledge.error');

export class LedgeError extends Error {
  readonly code: string = 'LEDGE_ERR';
  /** WebSocket close code to use when this error ends a session, if any. */
  readonly closeCode?: number;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LedgeError';
  }
  get [kLedgeError](): true {
    return true;
  }
  // instanceof works across duplicate copies of this module (bundles, tests).
  static override [Symbol.hasInstance](instance: unknown): boolean {
    if (this === LedgeError) {
      return typeof instance === 'object' && instance !== null && (instance as Record<symbol, unknown>)[kLedgeError] === true;
    }
    return Function.prototype[Symbol.hasInstance].call(this, instance);
  }
}

function defineError(code: string, name: string, defaultMessage: string, closeCode?: number) {
  return class extends LedgeError {
    override readonly code = code;
    override readonly closeCode = closeCode;
    constructor(message: string = defaultMessage, options?: { cause?: unknown }) {
      super(message, options);
      this.name = name;
    }
  };
}

/** Configuration is missing, malformed or out of range. */
export const ConfigError = defineError('LEDGE_ERR_CONFIG', 'ConfigError', 'invalid configuration');
/** A frame could not be decoded (malformed CBOR, bad layout, depth or length limits). 1007 = invalid payload. */
export const InvalidFrameError = defineError('LEDGE_ERR_INVALID_FRAME', 'InvalidFrameError', 'invalid frame', 1007);
/** A frame exceeded the configured maximum size. 1009 = message too big. */
export const FrameTooLargeError = defineError('LEDGE_ERR_FRAME_TOO_LARGE', 'FrameTooLargeError', 'frame too large', 1009);
/** The frame's protocol version is not one this build speaks. 1002 = protocol error. */
export const UnsupportedVersionError = defineError('LEDGE_ERR_UNSUPPORTED_VERSION', 'UnsupportedVersionError', 'unsupported protocol version', 1002);
/** A decoded message is structurally valid CBOR but not a valid Ledge message. 1007. */
export const InvalidMessageError = defineError('LEDGE_ERR_INVALID_MESSAGE', 'InvalidMessageError', 'invalid message', 1007);
/** The operation named in a message is unknown. 1007. */
export const UnknownOperationError = defineError('LEDGE_ERR_UNKNOWN_OPERATION', 'UnknownOperationError', 'unknown operation', 1007);
/** A text frame arrived where only binary frames are allowed. 1003 = unsupported data. */
export const TextFrameError = defineError('LEDGE_ERR_TEXT_FRAME', 'TextFrameError', 'text frames are not accepted', 1003);
/** The handshake was refused (missing node name, bad subprotocol, bad credentials). 1008 = policy violation. */
export const HandshakeError = defineError('LEDGE_ERR_HANDSHAKE', 'HandshakeError', 'handshake refused', 1008);
/** A peer sent more than its rate allows. 1008. */
export const RateLimitError = defineError('LEDGE_ERR_RATE_LIMIT', 'RateLimitError', 'rate limit exceeded', 1008);
/** A peer does not read what it is sent: its unflushed bytes stayed over the budget. 1008. */
export const SlowPeerError = defineError('LEDGE_ERR_SLOW_PEER', 'SlowPeerError', 'peer does not read', 1008);
/** The peer missed its heartbeats. 1001 = going away. */
export const HeartbeatTimeoutError = defineError('LEDGE_ERR_HEARTBEAT_TIMEOUT', 'HeartbeatTimeoutError', 'heartbeat timeout', 1001);
/** A request/response exchange (sendSync) timed out. */
export const TimeoutError = defineError('LEDGE_ERR_TIMEOUT', 'TimeoutError', 'timed out');
/** A queue or mailbox is full. */
export const QueueFullError = defineError('LEDGE_ERR_QUEUE_FULL', 'QueueFullError', 'queue full');
/** A message was addressed to a module or group that is not registered. */
export const NoSuchModuleError = defineError('LEDGE_ERR_NO_SUCH_MODULE', 'NoSuchModuleError', 'no such module');
/** The bus or a component was already stopped. */
export const StoppedError = defineError('LEDGE_ERR_STOPPED', 'StoppedError', 'stopped');
/** Durable storage failed (disk full, permission, corruption). */
export const StorageError = defineError('LEDGE_ERR_STORAGE', 'StorageError', 'storage failure');
/** Another live process holds the data directory's lock (shared/lock). */
export const DataDirLockedError = defineError('LEDGE_ERR_DATA_DIR_LOCKED', 'DataDirLockedError', 'data directory is locked by another process');
/** The edge is not connected to any cloud endpoint. */
export const NotConnectedError = defineError('LEDGE_ERR_NOT_CONNECTED', 'NotConnectedError', 'not connected');
/** A Kubernetes protobuf body is malformed (truncated, bad lengths, wrong wire type, value out of range): HTTP 400. */
export const ProtobufDecodeError = defineError('LEDGE_ERR_PROTOBUF_DECODE', 'ProtobufDecodeError', 'malformed protobuf body');
/** A Kubernetes protobuf body cannot be decoded exactly (a kind or field outside the server's schema): HTTP 415. */
export const ProtobufUnsupportedError = defineError('LEDGE_ERR_PROTOBUF_UNSUPPORTED', 'ProtobufUnsupportedError', 'protobuf body cannot be decoded exactly');

/** Returns the stable code of any error, or a generic one. */
export function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return 'LEDGE_ERR_UNKNOWN';
}

/** One-line description of an error for logs. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
