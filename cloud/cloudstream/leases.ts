/**
 * @module
 * Which CloudCore replica holds a node's session, for the others to forward kubelet requests
 * to it (docs/design.md, "Streams across replicas").
 *
 * - **Per-node Lease** `ledge-stream-<node>` (coordination.k8s.io/v1, in the configured
 *   namespace): `spec.holderIdentity` = the replica's identity, annotation
 *   `ledge.io/stream-peer` = its peer address, `ledge.io/stream-peer-cert-sha256` = the
 *   fingerprint of its serving certificate (what a forwarding replica pins). Written when the
 *   node connects (create, or update on the resourceVersion; a conflict re-reads and retries);
 *   cleared (empty holder) when it disconnects, only if it still names this replica.
 * - **Coalesced writes** ({@link LeaseKeeper}): a session report only marks the node; the
 *   write does what the session state is *when it runs* (connected here: claim; else: release),
 *   so a stale report never steals a Lease back. At most 4 writes in flight, at most one
 *   waiting per node; a failed write is retried with backoff (1 s doubling to 30 s).
 * - **Peer token**: Secret `ledge-stream-peer` (key `token`, 32 random bytes base64url),
 *   created by the first replica that finds it missing (a 409 means another one won: read it).
 *   A forwarded request carries it as a bearer token.
 */
import { createHash, randomBytes } from 'node:crypto';
import { backoff, type Backoff } from '../../shared/backoff/index.js';
import { errorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { CoalescingWriter, httpStatus, kube, withSignal, type k8s } from '../kube/index.js';

/** Annotation of a stream Lease: the holder's peer address (`https://host:port`). */
export const PEER_ANNOTATION = 'ledge.io/stream-peer';
/** Annotation of a stream Lease: SHA-256 fingerprint of the holder's serving certificate. */
export const PEER_CERT_ANNOTATION = 'ledge.io/stream-peer-cert-sha256';
/** Label of every stream Lease (to list or clean them up). */
export const STREAM_LEASE_LABEL = 'ledge.io/stream-lease';
/** The Secret holding the peer token. */
export const PEER_SECRET = 'ledge-stream-peer';

/** A replica as the Lease of a node it holds names it. */
export interface PeerInfo {
  identity: string;
  /** `https://host:port`. */
  address: string;
  /** SHA-256 fingerprint of its serving certificate (`AB:CD:…`). */
  certSha256: string;
}

/** Where replicas learn of each other; injectable (tests), default {@link kubeStreamPeers}. */
export interface StreamPeers {
  /** The replica holding `node`'s session per its Lease; undefined: no Lease, or released. */
  holder(node: string): Promise<PeerInfo | undefined>;
  /** The token replicas authenticate forwarded requests with; `fresh`: read it again (it may have been replaced). */
  token(fresh?: boolean): Promise<string>;
  /** Records `self` as the holder of `node`'s session. */
  claim(node: string, self: PeerInfo): Promise<void>;
  /** Clears the holder of `node`'s Lease if it is still `identity`. */
  release(node: string, identity: string): Promise<void>;
}

const MAX_NAME = 253;
const PREFIX = 'ledge-stream-';

/** The Lease name for `node`: `ledge-stream-<node>`, cut and suffixed with a hash when over 253 characters. */
export function streamLeaseName(node: string): string {
  const full = PREFIX + node;
  if (full.length <= MAX_NAME) return full;
  const hash = createHash('sha256').update(node).digest('hex').slice(0, 16);
  const cut = full.slice(0, MAX_NAME - hash.length - 1).replace(/[.-]+$/, '');
  return `${cut}-${hash}`;
}

/** Longest one API call of the peers may take. */
const API_TIMEOUT_MS = 10_000;
/** Compare-and-swap attempts of one claim or release before it counts as failed (and is retried later). */
const CAS_ATTEMPTS = 5;

/** {@link StreamPeers} over client-node (kube() must be loaded). */
export function kubeStreamPeers(kc: k8s.KubeConfig, namespace: string): StreamPeers {
  const leases = kc.makeApiClient(kube().CoordinationV1Api);
  const core = kc.makeApiClient(kube().CoreV1Api);
  const options = () => withSignal(AbortSignal.timeout(API_TIMEOUT_MS));
  const read = async (name: string): Promise<k8s.V1Lease | undefined> => {
    try {
      return await leases.readNamespacedLease({ name, namespace }, options());
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw err;
    }
  };
  /** True if written, false on a conflict (409). */
  const attempt = async (fn: () => Promise<unknown>): Promise<boolean> => {
    try {
      await fn();
      return true;
    } catch (err) {
      if (httpStatus(err) === 409) return false;
      throw err;
    }
  };
  const micro = () => new (kube().V1MicroTime)(Date.now());
  let token: string | undefined;

  return {
    async holder(node) {
      const lease = await read(streamLeaseName(node));
      const identity = lease?.spec?.holderIdentity;
      const address = lease?.metadata?.annotations?.[PEER_ANNOTATION];
      if (!identity || !address) return undefined;
      return { identity, address, certSha256: lease.metadata?.annotations?.[PEER_CERT_ANNOTATION] ?? '' };
    },

    async token(fresh = false) {
      if (token !== undefined && !fresh) return token;
      for (let i = 0; i < CAS_ATTEMPTS; i++) {
        try {
          const s = await core.readNamespacedSecret({ name: PEER_SECRET, namespace }, options());
          const b64 = s.data?.token;
          if (!b64) throw new Error(`Secret ${namespace}/${PEER_SECRET} has no "token" key`);
          token = Buffer.from(b64, 'base64').toString('utf8');
          return token;
        } catch (err) {
          if (httpStatus(err) !== 404) throw err;
        }
        const value = randomBytes(32).toString('base64url');
        const body: k8s.V1Secret = {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: PEER_SECRET, namespace, labels: { 'app.kubernetes.io/managed-by': 'ledge-cloudcore' } },
          type: 'Opaque',
          data: { token: Buffer.from(value).toString('base64') },
        };
        // Another replica created it first: read theirs.
        if (await attempt(() => core.createNamespacedSecret({ namespace, body }, options()))) {
          token = value;
          return token;
        }
      }
      throw new Error(`Secret ${namespace}/${PEER_SECRET}: created and deleted concurrently ${CAS_ATTEMPTS} times`);
    },

    async claim(node, self) {
      const name = streamLeaseName(node);
      for (let i = 0; i < CAS_ATTEMPTS; i++) {
        const lease = await read(name);
        const annotations = { [PEER_ANNOTATION]: self.address, [PEER_CERT_ANNOTATION]: self.certSha256 };
        if (!lease) {
          const body: k8s.V1Lease = {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name, namespace, labels: { [STREAM_LEASE_LABEL]: 'true' }, annotations },
            spec: { holderIdentity: self.identity, acquireTime: micro(), renewTime: micro(), leaseTransitions: 0 },
          };
          if (await attempt(() => leases.createNamespacedLease({ namespace, body }, options()))) return;
          continue;
        }
        const spec = lease.spec ?? {};
        const changed = spec.holderIdentity !== self.identity;
        const body: k8s.V1Lease = {
          ...lease,
          metadata: { ...lease.metadata, annotations: { ...lease.metadata?.annotations, ...annotations } },
          spec: {
            ...spec,
            holderIdentity: self.identity,
            renewTime: micro(),
            ...(changed ? { acquireTime: micro(), leaseTransitions: (spec.leaseTransitions ?? 0) + (spec.holderIdentity ? 1 : 0) } : {}),
          },
        };
        if (await attempt(() => leases.replaceNamespacedLease({ name, namespace, body }, options()))) return;
      }
      throw new Error(`Lease ${namespace}/${name}: ${CAS_ATTEMPTS} conflicting writes in a row`);
    },

    async release(node, identity) {
      const name = streamLeaseName(node);
      for (let i = 0; i < CAS_ATTEMPTS; i++) {
        const lease = await read(name);
        if (!lease || lease.spec?.holderIdentity !== identity) return;
        const body: k8s.V1Lease = { ...lease, spec: { ...lease.spec, holderIdentity: '', renewTime: micro() } };
        if (await attempt(() => leases.replaceNamespacedLease({ name, namespace, body }, options()))) return;
      }
      throw new Error(`Lease ${namespace}/${name}: ${CAS_ATTEMPTS} conflicting writes in a row`);
    },
  };
}

/**
 * Keeps each node's Lease in line with its session on this replica: {@link touch} after a
 * session report; the write claims or releases by `connected(node)` at the time it runs.
 */
export class LeaseKeeper {
  private readonly writer: CoalescingWriter<undefined>;
  private readonly retries = new Map<string, { backoff: Backoff; timer: NodeJS.Timeout | undefined }>();
  private stopped = false;
  stats = { claims: 0, releases: 0, failures: 0 };

  constructor(
    private readonly peers: StreamPeers,
    private readonly self: () => PeerInfo,
    private readonly connected: (node: string) => boolean,
    private readonly log: Logger,
    concurrency = 4,
  ) {
    this.writer = new CoalescingWriter<undefined>((node) => this.write(node), { concurrency });
  }

  /** The session of `node` changed: bring its Lease in line (coalesced). */
  touch(node: string): void {
    if (this.stopped) return;
    const r = this.retries.get(node);
    if (r?.timer) {
      clearTimeout(r.timer);
      r.timer = undefined;
    }
    this.writer.write(node, undefined).then(
      () => this.retries.delete(node),
      (err: unknown) => this.failed(node, err),
    );
  }

  /** No more writes are started; retries are dropped. Writes in flight end by themselves (bounded). */
  stop(): void {
    this.stopped = true;
    for (const r of this.retries.values()) clearTimeout(r.timer);
    this.retries.clear();
  }

  private async write(node: string): Promise<void> {
    if (this.stopped) return;
    const self = this.self();
    if (this.connected(node)) {
      await this.peers.claim(node, self);
      this.stats.claims++;
    } else {
      await this.peers.release(node, self.identity);
      this.stats.releases++;
    }
  }

  private failed(node: string, err: unknown): void {
    if (this.stopped) return;
    this.stats.failures++;
    let r = this.retries.get(node);
    if (!r) this.retries.set(node, (r = { backoff: backoff({ baseMs: 1000, maxMs: 30_000 }), timer: undefined }));
    // Several waiters of one coalesced write fail together: one retry.
    if (r.timer) return;
    const delay = r.backoff.next();
    this.log.warn(`stream Lease of node ${node} not written: ${errorMessage(err)}; retrying in ${delay} ms`, { code: errorCode(err), node, lease: streamLeaseName(node) });
    r.timer = setTimeout(() => {
      r.timer = undefined;
      this.touch(node);
    }, delay);
    r.timer.unref?.();
  }
}
