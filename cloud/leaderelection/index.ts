/**
 * @module
 * Lease-based leader election among CloudCore replicas (the coordination.k8s.io
 * pattern client-go's leaderelection uses): the holder renews the Lease every
 * `renewIntervalMs`; another replica takes it over once `leaseDurationMs` passed
 * without a renewal. Optimistic concurrency (resourceVersion) makes a takeover race
 * safe: only one replace succeeds. Cluster-wide singletons (GC) check `isLeader()`.
 */
import os from 'node:os';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { errorMessage } from '../../shared/errors/index.js';
import { sleep } from '../../shared/runtime/index.js';
import { kube, httpStatus, type k8s } from '../kube/index.js';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewIntervalMs: number;
}

export const defaultIdentity = (): string => `${os.hostname()}_${process.pid}`;

export class LeaderElector implements Module {
  readonly name = 'leaderelection';
  readonly group = 'cloud';
  private leader = false;
  private readonly api: k8s.CoordinationV1Api;

  constructor(kc: k8s.KubeConfig, private readonly options: LeaderElectionOptions, private readonly log: Logger) {
    this.api = kc.makeApiClient(kube().CoordinationV1Api);
  }

  isLeader(): boolean {
    return this.leader;
  }

  async start(_ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let leading = false;
      try {
        leading = await this.tryAcquireOrRenew();
      } catch (err) {
        this.log.warn(`leader election: ${errorMessage(err)}`, { code: 'LEDGE_ERR_LEADER_ELECTION', status: httpStatus(err) });
      }
      if (leading !== this.leader) {
        this.leader = leading;
        this.log.info(leading ? 'became leader' : 'lost leadership', { identity: this.options.identity, lease: `${this.options.namespace}/${this.options.name}` });
      }
      await sleep(this.options.renewIntervalMs, signal);
    }
    if (this.leader) await this.release().catch(() => {});
    this.leader = false;
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const now = new (kube().V1MicroTime)(Date.now());
    const spec = { holderIdentity: identity, leaseDurationSeconds: Math.ceil(this.options.leaseDurationMs / 1000), renewTime: now };
    let lease: k8s.V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
      try {
        await this.api.createNamespacedLease({ namespace, body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec: { ...spec, acquireTime: now, leaseTransitions: 0 } } });
        return true;
      } catch (e) {
        if (httpStatus(e) === 409) return false;
        throw e;
      }
    }
    const holder = lease.spec?.holderIdentity;
    const renewed = lease.spec?.renewTime ? new Date(lease.spec.renewTime as unknown as string).getTime() : 0;
    const expired = Date.now() - renewed > (lease.spec?.leaseDurationSeconds ?? 15) * 1000;
    if (holder && holder !== identity && !expired) return false;
    const transitions = (lease.spec?.leaseTransitions ?? 0) + (holder === identity ? 0 : 1);
    lease.spec = { ...lease.spec, ...spec, leaseTransitions: transitions, ...(holder === identity ? {} : { acquireTime: now }) };
    try {
      await this.api.replaceNamespacedLease({ name, namespace, body: lease });
      return true;
    } catch (err) {
      if (httpStatus(err) === 409) return false; // another replica won the race
      throw err;
    }
  }

  /** Gives the lease up on shutdown so another replica need not wait for it to expire. */
  private async release(): Promise<void> {
    const { namespace, name } = this.options;
    const lease = await this.api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== this.options.identity) return;
    lease.spec = { ...lease.spec, holderIdentity: '', renewTime: new (kube().V1MicroTime)(0) };
    await this.api.replaceNamespacedLease({ name, namespace, body: lease });
  }
}
