/**
 * @module
 * Lease-based leader election among CloudCore replicas (the coordination.k8s.io
 * pattern of client-go's leaderelection). Cluster-wide singletons (GC) check `isLeader()`.
 *
 * Timing model (client-go's; docs/controllers.md):
 * - No clock is compared across replicas. A candidate never reads the holder's
 *   `renewTime` (written with the holder's wall clock): it records, on its own monotonic
 *   clock, when it OBSERVED the Lease record change (its resourceVersion), and holds the
 *   lease for expired only once it has seen no change for the record's
 *   `leaseDurationSeconds` (observedTime + leaseDuration < now).
 * - A leader leads until `renewDeadline` after the START of its last successful
 *   acquire/renew (measured before the request was sent, so before the write it made).
 *   Every API call is cut off at that deadline (and never runs longer than
 *   `renewDeadline`), a timer steps the leader down at the deadline even if a call still
 *   hangs, and `isLeader()` checks the deadline itself. Since renewDeadline <
 *   leaseDuration, a leader has stopped before any other replica can see its lease as
 *   expired: the margin is what absorbs clock-rate differences between replicas.
 * - Writes are compare-and-swap on resourceVersion, so of two racing candidates one wins.
 * - On shutdown the leader first stops leading, then releases the lease (empty holder),
 *   so another replica takes over at once.
 */
import os from 'node:os';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { ConfigError, TimeoutError, errorCode, errorMessage } from '../../shared/errors/index.js';
import { kube, httpStatus, withSignal, type k8s } from '../kube/index.js';
import { defaultLeaderElectionOptions } from './options.js';

/** Election options; defaults in `defaultLeaderElectionOptions` (./options.ts). */
export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  /** How long others wait, from observing the last change of the Lease, before taking it over. */
  leaseDurationMs: number;
  /** Retry period: how often the leader renews and candidates try to acquire. */
  renewIntervalMs: number;
  /**
   * A leader that could not renew for this long (from the start of its last successful
   * renew) stops leading. renewIntervalMs < renewDeadlineMs < leaseDurationMs.
   * Default: 2/3 of leaseDurationMs (client-go's 10 s for 15 s).
   */
  renewDeadlineMs?: number;
  /** Called when this replica starts (true) or stops (false) leading. Must not throw. */
  onLeadershipChange?: (leading: boolean) => void;
}

/** The Lease fields the election uses. Times are wall-clock ms, written for humans only. */
export interface LeaseRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTime?: number;
  renewTime?: number;
  leaseTransitions: number;
}

export interface VersionedLease {
  record: LeaseRecord;
  /** resourceVersion: changes on every write. */
  version: string;
}

/** Where the Lease lives. Every call honours `signal` (aborted at the caller's deadline). */
export interface LeaseStore {
  /** The current Lease, undefined if there is none. */
  get(signal: AbortSignal): Promise<VersionedLease | undefined>;
  /** Creates it; the new version, or undefined if it exists already. */
  create(record: LeaseRecord, signal: AbortSignal): Promise<string | undefined>;
  /** Replaces it if its version is still `version` (compare-and-swap); the new version, or undefined if not. */
  update(record: LeaseRecord, version: string, signal: AbortSignal): Promise<string | undefined>;
}

/** Time as the elector sees it; injectable so tests run on virtual time with skewed clocks. */
export interface Clock {
  /** Monotonic ms (arbitrary origin, never jumps with the wall clock). */
  now(): number;
  /** Wall-clock ms since the epoch, only written into the Lease (renewTime, acquireTime). */
  wallNow(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export const defaultIdentity = (): string => `${os.hostname()}_${process.pid}`;

export { defaultLeaderElectionOptions } from './options.js';

/** What the constructor takes: the options, those with a default optional. */
export type LeaderElectionInit = Omit<LeaderElectionOptions, keyof typeof defaultLeaderElectionOptions> & Partial<LeaderElectionOptions>;

type Attempt = 'leading' | 'held' | 'conflict';

export class LeaderElector implements Module {
  readonly name = 'leaderelection';
  readonly group = 'cloud';
  private readonly store: LeaseStore;
  private readonly clock: Clock;
  private readonly renewDeadlineMs: number;
  private leading = false;
  /** Local monotonic time until which this replica may lead. */
  private leaderUntil = Number.NEGATIVE_INFINITY;
  private stepDownTimer: unknown;
  /** The last Lease record seen (read or written) and when, on the local monotonic clock. */
  private observed: VersionedLease | undefined;
  private observedTime = 0;
  stats = { attempts: 0, failures: 0, timeouts: 0, acquired: 0, lost: 0 };

  private readonly options: LeaderElectionOptions;

  constructor(
    kc: k8s.KubeConfig | undefined,
    init: LeaderElectionInit,
    private readonly log: Logger,
    deps: { store?: LeaseStore; clock?: Clock } = {},
  ) {
    const options: LeaderElectionOptions = { ...defaultLeaderElectionOptions, ...init };
    this.options = options;
    const { leaseDurationMs, renewIntervalMs } = options;
    this.renewDeadlineMs = options.renewDeadlineMs ?? Math.floor((leaseDurationMs * 2) / 3);
    if (!(renewIntervalMs < this.renewDeadlineMs && this.renewDeadlineMs < leaseDurationMs)) {
      throw new ConfigError(
        `leader election needs renew interval (${renewIntervalMs} ms) < renew deadline (${this.renewDeadlineMs} ms) < lease duration (${leaseDurationMs} ms); the deadline defaults to 2/3 of the lease duration`,
      );
    }
    this.clock = deps.clock ?? systemClock;
    if (deps.store) this.store = deps.store;
    else if (kc) this.store = kubeLeaseStore(kc, options.namespace, options.name);
    else throw new TypeError('LeaderElector needs a kubeconfig or a lease store');
  }

  /** Whether this replica leads now. Checks the deadline itself: never true past it, whatever a hung call does. */
  isLeader(): boolean {
    return this.leading && this.clock.now() < this.leaderUntil;
  }

  async start(_ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    try {
      while (!signal.aborted) {
        await this.attempt();
        if (signal.aborted) break;
        await this.wait(this.options.renewIntervalMs, signal);
      }
    } finally {
      const held = this.leading;
      // Stop leading first; only then give the lease up, so another replica can take over at once.
      this.stepDown('stopping');
      if (held)
        await this.release().catch((err: unknown) =>
          this.log.warn(`leader election: cannot release the lease: ${errorMessage(err)}`, { code: errorCode(err), status: httpStatus(err) }),
        );
    }
  }

  /** One acquire-or-renew round, cut off at the deadline. */
  private async attempt(): Promise<void> {
    this.stats.attempts++;
    const started = this.clock.now();
    // A leader's call must end before its leadership does; a candidate's is bounded the same way.
    const deadline = this.leading ? this.leaderUntil : started + this.renewDeadlineMs;
    let outcome: Attempt | 'failed' = 'failed';
    try {
      outcome = await this.withDeadline(deadline - started, (s) => this.tryAcquireOrRenew(s));
    } catch (err) {
      this.stats.failures++;
      if (err instanceof TimeoutError) this.stats.timeouts++;
      this.log.warn(`leader election: ${errorMessage(err)}`, { code: errorCode(err), status: httpStatus(err) });
    }
    // An answer at the very deadline is too late: the leadership it would grant is already over.
    if (outcome === 'leading' && this.clock.now() >= started + this.renewDeadlineMs) outcome = 'failed';
    if (outcome === 'leading') {
      this.leaderUntil = started + this.renewDeadlineMs;
      if (!this.leading) {
        this.leading = true;
        this.stats.acquired++;
        this.log.info('became leader', { identity: this.options.identity, lease: `${this.options.namespace}/${this.options.name}` });
        this.notify(true);
      }
      this.armStepDown();
    } else if (this.leading && (outcome === 'held' || outcome === 'conflict')) {
      // Someone else wrote the Lease: we no longer hold it.
      this.stepDown(outcome === 'held' ? `lease held by ${this.observed?.record.holderIdentity}` : 'lease changed by another replica');
    } else if (this.leading && this.clock.now() >= this.leaderUntil) {
      this.stepDown(`could not renew within ${this.renewDeadlineMs} ms`);
    }
  }

  private async tryAcquireOrRenew(signal: AbortSignal): Promise<Attempt> {
    const { identity } = this.options;
    const wall = this.clock.wallNow();
    const leaseDurationSeconds = Math.ceil(this.options.leaseDurationMs / 1000);
    const current = await this.store.get(signal);
    const now = this.clock.now();
    if (!current) {
      const record: LeaseRecord = { holderIdentity: identity, leaseDurationSeconds, acquireTime: wall, renewTime: wall, leaseTransitions: 0 };
      const version = await this.store.create(record, signal);
      if (version === undefined) return 'conflict';
      this.observe({ record, version });
      return 'leading';
    }
    // The record changed since we last saw it: its holder renewed (or someone took it) just now, as far as we can tell.
    if (current.version !== this.observed?.version) {
      this.observed = current;
      this.observedTime = now;
    }
    const holder = current.record.holderIdentity;
    if (holder && holder !== identity && this.observedTime + current.record.leaseDurationSeconds * 1000 > now) return 'held';
    const record: LeaseRecord =
      holder === identity
        ? { ...current.record, leaseDurationSeconds, renewTime: wall }
        : { holderIdentity: identity, leaseDurationSeconds, acquireTime: wall, renewTime: wall, leaseTransitions: current.record.leaseTransitions + 1 };
    const version = await this.store.update(record, current.version, signal);
    if (version === undefined) return 'conflict';
    this.observe({ record, version });
    return 'leading';
  }

  private observe(lease: VersionedLease): void {
    this.observed = lease;
    this.observedTime = this.clock.now();
  }

  /** Steps down at the deadline even while a renew still hangs. */
  private armStepDown(): void {
    this.clock.clearTimeout(this.stepDownTimer);
    const check = () => {
      if (!this.leading) return;
      const left = this.leaderUntil - this.clock.now();
      if (left > 0) this.stepDownTimer = this.clock.setTimeout(check, Math.ceil(left));
      else this.stepDown(`could not renew within ${this.renewDeadlineMs} ms`);
    };
    this.stepDownTimer = this.clock.setTimeout(check, Math.max(0, Math.ceil(this.leaderUntil - this.clock.now())));
  }

  private stepDown(why: string): void {
    this.clock.clearTimeout(this.stepDownTimer);
    this.leaderUntil = Number.NEGATIVE_INFINITY;
    if (!this.leading) return;
    this.leading = false;
    this.stats.lost++;
    this.log.info('lost leadership', { identity: this.options.identity, reason: why });
    this.notify(false);
  }

  private notify(leading: boolean): void {
    try {
      this.options.onLeadershipChange?.(leading);
    } catch (err) {
      this.log.error(`leadership callback failed: ${errorMessage(err)}`, { code: errorCode(err) });
    }
  }

  /** Gives the lease up (empty holder) if it is still ours as we last wrote it. */
  private async release(): Promise<void> {
    const last = this.observed;
    if (!last || last.record.holderIdentity !== this.options.identity) return;
    const record: LeaseRecord = { ...last.record, holderIdentity: '', leaseDurationSeconds: 1, renewTime: this.clock.wallNow() };
    // Bounded so a hung API cannot hold up the shutdown (Beehive waits 10 s for all modules).
    const version = await this.withDeadline(Math.min(this.renewDeadlineMs, 5_000), (s) => this.store.update(record, last.version, s));
    if (version !== undefined) this.observe({ record, version });
  }

  /** Runs `fn` with a signal aborted after `ms`; rejects with TimeoutError then, even if `fn` ignores the signal. */
  private async withDeadline<T>(ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    const expired = new Promise<never>((_, reject) => {
      ac.signal.addEventListener('abort', () => reject(ac.signal.reason), { once: true });
    });
    const timer = this.clock.setTimeout(
      () => ac.abort(new TimeoutError(`lease ${this.options.namespace}/${this.options.name}: no answer within ${Math.round(ms)} ms`)),
      Math.max(0, ms),
    );
    try {
      return await Promise.race([fn(ac.signal), expired]);
    } finally {
      this.clock.clearTimeout(timer);
      if (!ac.signal.aborted) ac.abort(new TimeoutError('done'));
    }
  }

  private wait(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        this.clock.clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.clock.setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** The Lease `namespace/name` through client-node; each call carries the caller's AbortSignal. */
export function kubeLeaseStore(kc: k8s.KubeConfig, namespace: string, name: string): LeaseStore {
  const api = kc.makeApiClient(kube().CoordinationV1Api);
  /** The last Lease object read or written: a replace keeps its other fields (labels, annotations). */
  let last: k8s.V1Lease | undefined;
  const micro = (ms: number | undefined) => (ms === undefined ? undefined : new (kube().V1MicroTime)(ms));
  const spec = (r: LeaseRecord): k8s.V1LeaseSpec => ({
    holderIdentity: r.holderIdentity,
    leaseDurationSeconds: r.leaseDurationSeconds,
    leaseTransitions: r.leaseTransitions,
    ...(r.acquireTime !== undefined ? { acquireTime: micro(r.acquireTime)! } : {}),
    ...(r.renewTime !== undefined ? { renewTime: micro(r.renewTime)! } : {}),
  });
  const time = (t: unknown) => (t === undefined || t === null ? undefined : new Date(t as string | Date).getTime());
  const versioned = (lease: k8s.V1Lease): VersionedLease => {
    last = lease;
    const s = lease.spec ?? {};
    const acquireTime = time(s.acquireTime);
    const renewTime = time(s.renewTime);
    return {
      version: lease.metadata?.resourceVersion ?? '',
      record: {
        holderIdentity: s.holderIdentity ?? '',
        leaseDurationSeconds: s.leaseDurationSeconds ?? 15,
        leaseTransitions: s.leaseTransitions ?? 0,
        ...(acquireTime !== undefined ? { acquireTime } : {}),
        ...(renewTime !== undefined ? { renewTime } : {}),
      },
    };
  };
  return {
    async get(signal) {
      try {
        return versioned(await api.readNamespacedLease({ name, namespace }, withSignal(signal)));
      } catch (err) {
        if (httpStatus(err) === 404) return undefined;
        throw err;
      }
    },
    async create(record, signal) {
      try {
        const body: k8s.V1Lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec: spec(record) };
        return versioned(await api.createNamespacedLease({ namespace, body }, withSignal(signal))).version;
      } catch (err) {
        if (httpStatus(err) === 409) return undefined;
        throw err;
      }
    },
    async update(record, version, signal) {
      const base: k8s.V1Lease = last?.metadata?.resourceVersion === version ? last : { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace } };
      const body: k8s.V1Lease = { ...base, metadata: { ...base.metadata, name, namespace, resourceVersion: version }, spec: { ...base.spec, ...spec(record) } };
      try {
        return versioned(await api.replaceNamespacedLease({ name, namespace, body }, withSignal(signal))).version;
      } catch (err) {
        if (httpStatus(err) === 409) return undefined;
        throw err;
      }
    },
  };
}
