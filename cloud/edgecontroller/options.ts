/**
 * @module
 * EdgeController defaults, the one place they are written.
 */
import type { EdgeControllerOptions } from './index.js';

/** Defaults of every EdgeController option. */
export const defaultEdgeControllerOptions: EdgeControllerOptions = {
  /** Namespace of the node heartbeat Leases (Kubernetes'). */
  leaseNamespace: 'kube-node-lease',
  /** Lease duration written on renewals, seconds (the kubelet's 40 s). */
  leaseDurationSeconds: 40,
  /** Wall clock for heartbeat, transition and renew times. */
  now: () => Date.now(),
};
