/**
 * @module
 * Defaults of the control plane's main options, the one place they are written: the
 * server applies them, `ledge apiserver` (./cli.ts) and CloudCore's local mode
 * (`cloud/config.ts`, `apiserver.port`) take their config defaults from here. No imports,
 * so CloudCore's config can read it without bundling the control plane.
 */

/** Defaults of `startApiServer`'s options that the command lines expose. */
export const defaultApiServerOptions = {
  /** TCP port (the Kubernetes API server's). */
  port: 6443,
  /** Bind address: loopback unless told otherwise. */
  host: '127.0.0.1',
  /** HTTPS with a generated CA and bearer-token / client-certificate auth. */
  tls: true,
  /** A node whose Lease is not renewed for this long becomes NotReady, ms (kube-controller-manager's node-monitor-grace-period). */
  nodeLeaseTimeoutMs: 40_000,
} as const;
