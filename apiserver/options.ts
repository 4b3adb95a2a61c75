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
  /**
   * A node whose Lease and Ready heartbeat are not renewed for this long becomes Ready=Unknown, ms
   * (kube-controller-manager's --node-monitor-grace-period: 50 s since Kubernetes 1.32).
   */
  nodeLeaseTimeoutMs: 50_000,
  /** How often the node lifecycle controller checks node health, ms (--node-monitor-period). */
  nodeMonitorPeriodMs: 5_000,
  /** Grace for a node that never posted a Ready condition, ms (--node-startup-grace-period). */
  nodeStartupGracePeriodMs: 60_000,
  /** Nodes per second tainted NoExecute in a healthy zone (--node-eviction-rate). */
  nodeEvictionRate: 0.1,
  /** The same in an unhealthy zone of a large cluster (--secondary-node-eviction-rate). */
  secondaryNodeEvictionRate: 0.01,
  /** Above this many nodes a zone counts as large (--large-cluster-size-threshold). */
  largeClusterSizeThreshold: 50,
  /** Fraction of not-Ready nodes (at least 3) that makes a zone unhealthy (--unhealthy-zone-threshold). */
  unhealthyZoneThreshold: 0.55,
  /** tolerationSeconds of the not-ready:NoExecute toleration the DefaultTolerationSeconds admission adds (kube-apiserver's flag). */
  defaultNotReadyTolerationSeconds: 300,
  /** tolerationSeconds of the unreachable:NoExecute toleration the DefaultTolerationSeconds admission adds. */
  defaultUnreachableTolerationSeconds: 300,
  /** Pod garbage collector period, ms (kube-controller-manager's podgc gcCheckPeriod, a constant there). */
  podGcPeriodMs: 20_000,
  /** How long a node must stay missing before its pods are force-deleted, ms (podgc's quarantineTime, a constant there). */
  podGcQuarantineMs: 40_000,
  /** Terminated pods kept before the oldest are deleted; 0 = never (--terminated-pod-gc-threshold). */
  terminatedPodGcThreshold: 12_500,
  /**
   * Node proxy (pods/log, exec, attach, portforward): which of a Node's `status.addresses` is
   * dialed, first type present wins (kube-apiserver's --kubelet-preferred-address-types default).
   */
  kubeletPreferredAddressTypes: ['Hostname', 'InternalDNS', 'InternalIP', 'ExternalDNS', 'ExternalIP'],
  /** Kubelet port dialed when a Node has no `status.daemonEndpoints.kubeletEndpoint.Port` (--kubelet-port). */
  kubeletPort: 10250,
  /**
   * CA file to verify the kubelet's serving certificate with (--kubelet-certificate-authority);
   * '' = not verified, as kube-apiserver without the flag.
   */
  kubeletCertificateAuthority: '',
  /** Bound on connecting to a kubelet (DNS, TCP, TLS handshake), ms; past it the request fails with 503. */
  kubeletTimeoutMs: 10_000,
} as const;
