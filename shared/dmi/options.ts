/**
 * @module
 * DMI gRPC defaults, the one place they are written.
 */

/** Server defaults (GrpcServerOptions). */
export const defaultGrpcServerOptions = {
  /** Go gRPC's default receive limit; a DMI message is a few KB (a device with its properties). */
  maxMessageBytes: 4 * 1024 * 1024,
  /** Per HTTP/2 connection; Go gRPC clients keep one connection per mapper. */
  maxConcurrentStreams: 100,
  /**
   * Over all calls of one server. Generous on purpose: 1,000 devices reporting every second is
   * 1,000 calls/s; KubeEdge's own limit (1/s, burst 100) refuses most reports of a busy mapper.
   */
  callsPerSecond: 1000,
  burst: 2000,
} as const;

/** Client defaults (GrpcClientOptions). */
export const defaultGrpcClientOptions = {
  /** EdgeCore's DMI client uses 10 s per call. */
  timeoutMs: 10_000,
  maxMessageBytes: 4 * 1024 * 1024,
  /** KubeEdge's clients dial per call; we keep the session for bursts and close it when idle. */
  idleTimeoutMs: 30_000,
} as const;

/** Window in which a repeated problem (rate limited, oversized, malformed) is logged once, ms. */
export const DMI_LOG_WINDOW_MS = 60_000;

/** A server connection without any frame for this long is closed gracefully, ms (bounds idle sockets). */
export const DMI_SERVER_IDLE_SESSION_MS = 300_000;
