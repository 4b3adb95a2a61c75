/**
 * @module
 * Leader-election defaults, the one place they are written (`cloud/config.ts` takes its
 * `leaderElection.*` defaults from here).
 */
import type { LeaderElectionOptions } from './index.js';

/** Defaults of the options that have one (client-go's timings: 15 s lease, renewed every 5 s; the renew deadline defaults to 2/3 of the lease). */
export const defaultLeaderElectionOptions = {
  /** Namespace of the Lease. */
  namespace: 'kube-system',
  /** Name of the Lease. */
  name: 'ledge-cloudcore',
  /** How long others wait, from observing the Lease's last change, before taking it over. */
  leaseDurationMs: 15_000,
  /** How often the leader renews and candidates try to acquire. */
  renewIntervalMs: 5_000,
} as const satisfies Partial<LeaderElectionOptions>;
