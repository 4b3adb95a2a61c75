/**
 * @module
 * EdgeController: the cluster side of edge nodes.
 * - Downstream: pods bound to edge nodes, and only the configmaps and secrets those
 *   pods reference, become the node's desired set. The SyncController reads it
 *   (DesiredSource); each change is announced to it over Beehive (`desired-changed`,
 *   coalesced per node and microtask).
 *   Informers only; nothing polls.
 * - Upstream: node status reports register/update the Node (edge role label,
 *   addresses, capacity, allocatable, nodeInfo, conditions, images) and renew its Lease;
 *   pod status reports go to pods/status. Writes are coalesced per object (latest wins).
 *   A report of the shape
 *   older edges send (no allocatable, osImage, images…) is written as before; a malformed
 *   entry (a bad quantity, image or condition) is left out with one log line, never silently.
 * - Queries: a node asks for an object it does not hold (MetaManager's remote query); it is
 *   answered from the informer caches.
 * - Authorization: every upstream message is first checked by the NodeAuthorizer
 *   (cloud/nodeauthorizer) against the session's node, with this controller's caches as its
 *   lookups: a node writes only its own Node and Lease, the status of pods bound to it and its
 *   mirror pods, and reads only what is in its desired set (or its own Node); anything else is
 *   refused (LEDGE_ERR_FORBIDDEN) before it reaches the API server. A pod status is checked
 *   again against the pod read just before the write.
 * - Graceful pod deletion: a pod being deleted is removed from its node's desired set,
 *   so the node is told to delete it; when the node ACKs (it stopped the pod), the
 *   deletion is completed with gracePeriodSeconds=0, as a kubelet does.
 * Without a Kubernetes API (no kubeconfig), node status reports are accepted and dropped; the
 * cache is empty, so pod statuses and queries are refused.
 */
import { ModuleName, Group, Operation, ResourceType, parseResource, type ErrorContent, type Message, type ParsedResource } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import {
  ErrorCode,
  errorCode,
  errorContent,
  errorMessage,
  ForbiddenError,
  NodeRevokedError,
  NoSuchModuleError,
  NotFoundError,
  StoppedError,
  UnsupportedError,
} from '../../shared/errors/index.js';
import { kube, httpStatus, toPlain, watchResource, CoalescingWriter, type k8s, type WatchedResource } from '../kube/index.js';
import { desiredChanged, type DesiredObject, type DesiredSource, type ObjectKey } from '../synccontroller/index.js';
import { podReferences } from '../../shared/references/index.js';
import { createNodeAuthorizer, podFacts, sessionOf, type Decision, type NodeAuthorizer, type NodeAuthorizerOptions } from '../nodeauthorizer/index.js';
import { defaultEdgeControllerOptions } from './options.js';

export { defaultEdgeControllerOptions } from './options.js';

export const EDGE_ROLE_LABEL = 'node-role.kubernetes.io/edge';
/** Marks a static pod's mirror in the API (a kubelet's annotation); declared with the rules that read it. */
export { MIRROR_ANNOTATION } from '../nodeauthorizer/index.js';

/**
 * A node status report as edges send it (edge/nodestatus). Every field is optional: edges
 * before the full report sent nodeInfo {operatingSystem, architecture (Node's name), kernelVersion,
 * hostname, runtime}, capacity {cpu, memory} and the Ready condition only.
 */
export interface NodeStatusReport {
  nodeInfo?: {
    operatingSystem?: string;
    architecture?: string;
    kernelVersion?: string;
    osImage?: string;
    containerRuntimeVersion?: string;
    kubeletVersion?: string;
    bootID?: string;
    machineID?: string;
    systemUUID?: string;
    hostname?: string;
    /** Older edges' containerRuntimeVersion. */
    runtime?: string;
  };
  capacity?: Record<string, string>;
  /** Absent (older edges): the capacity. */
  allocatable?: Record<string, string>;
  addresses?: { type: string; address: string }[];
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
  /** Absent (older edges): the Node's images are left as they are. */
  images?: { names: string[]; sizeBytes: number }[];
}

/** Options; defaults in `defaultEdgeControllerOptions` (./options.ts). */
export interface EdgeControllerOptions {
  /** Lease namespace for node heartbeats. Default 'kube-node-lease'. */
  leaseNamespace: string;
  /** Lease duration written on renewals, seconds. Default 40. */
  leaseDurationSeconds: number;
  /** Wall clock (ms since the epoch) for heartbeat, transition and renew times. Default Date.now. */
  now: () => number;
  /** Handed the pod and edge-node informers once synced (the eviction protection, ./tolerations.ts). */
  informerObservers?: { attach(informers: { pods: WatchedResource<k8s.V1Pod>; nodes: WatchedResource<k8s.V1Node> }): void }[];
  /**
   * Where the API server reaches the "kubelet" of every edge node: CloudStream (logs, exec, attach
   * through the link). Written into each Node as its address and kubelet port; the edge's own
   * addresses go to the `ledge.io/edge-addresses` annotation (docs/streams.md). Unset: the edge's addresses.
   */
  streamEndpoint?: () => { address: string; port: number } | undefined;
  /**
   * Nodes to announce to the SyncController once the informers listed (CloudHub's connected
   * nodes): one that connected before then was not reconciled (its set was not known yet).
   */
  announceNodes?: () => string[];
  /** The node authorizer's options (cloud/nodeauthorizer/options.ts); default: on. */
  authorization?: Partial<NodeAuthorizerOptions>;
  /**
   * Whether a node's report may register its Node when the API has none (issue 13: a deleted Node
   * revokes its node). CloudCore passes CloudHub's `isConnected`: a report still under way from a
   * session closed meanwhile (the revoked node's) does not bring the Node back. Default: always.
   */
  mayRegisterNode?: (node: string) => boolean;
}

/** A pod status waiting to be written, with the check to repeat against the pod read just before the write. */
interface PodStatusWrite {
  status: k8s.V1PodStatus;
  recheck: (pod: k8s.V1Pod) => Decision;
}

/** Annotation of an edge Node holding the addresses the edge reported (JSON), when its addresses point at CloudStream. */
export const EDGE_ADDRESSES_ANNOTATION = 'ledge.io/edge-addresses';

export class EdgeController implements Module, DesiredSource {
  readonly name = ModuleName.EdgeController;
  readonly group = Group.Resource;
  private core: k8s.CoreV1Api | undefined;
  private coordination: k8s.CoordinationV1Api | undefined;
  private pods: WatchedResource<k8s.V1Pod> | undefined;
  private nodes: WatchedResource<k8s.V1Node> | undefined;
  private configMaps: WatchedResource<k8s.V1ConfigMap> | undefined;
  private secrets: WatchedResource<k8s.V1Secret> | undefined;
  private nodesSynced = false;
  /** node → pod keys (ns/name) bound to it. */
  private readonly podsByNode = new Map<string, Set<string>>();
  /** pod key → its node. */
  private readonly nodeOfPod = new Map<string, string>();
  /** `ns/configmap|secret/name` → keys of the bound pods referencing it. */
  private readonly podsByRef = new Map<string, Set<string>>();
  /** pod key → the reference keys it was indexed under. */
  private readonly refsOfPod = new Map<string, string[]>();
  private readonly nodeStatusWriter: CoalescingWriter<NodeStatusReport>;
  private readonly leaseWriter: CoalescingWriter<number>;
  private readonly podStatusWriter: CoalescingWriter<PodStatusWrite>;
  /** What a node may do through its session: every upstream message is checked here first. */
  readonly authorizer: NodeAuthorizer;
  private readonly options: EdgeControllerOptions;
  private ctx: ModuleContext | undefined;
  /** Nodes whose desired set changed since the last flush, with the pods being deleted among the changes. */
  private readonly pendingChanges = new Map<string, ObjectKey[]>();
  private flushQueued = false;
  /** Per node, the last malformed-report problem logged (logged again only when it changes). */
  private readonly reportProblems = new Map<string, string>();

  constructor(
    private readonly kc: k8s.KubeConfig | undefined,
    private readonly log: Logger,
    options: Partial<EdgeControllerOptions> = {},
  ) {
    this.options = { ...defaultEdgeControllerOptions, ...options };
    if (kc) {
      this.core = kc.makeApiClient(kube().CoreV1Api);
      this.coordination = kc.makeApiClient(kube().CoordinationV1Api);
    }
    this.nodeStatusWriter = new CoalescingWriter((node, report) => this.writeNodeStatus(node, report));
    this.leaseWriter = new CoalescingWriter((node) => this.renewLease(node));
    this.podStatusWriter = new CoalescingWriter((key, w) => this.writePodStatus(key, w.status, w.recheck));
    this.authorizer = createNodeAuthorizer(
      {
        pod: (namespace, name) => {
          const pod = this.pods?.informer.get(name, namespace);
          return pod ? podFacts(pod) : undefined;
        },
        referencedBy: (node, type, namespace, name) => this.referencedBy(node, type, namespace, name),
      },
      log,
      this.options.authorization,
    );
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    this.ctx = ctx;
    try {
      // Inside the try: informers started before a failure are stopped before Beehive restarts the module.
      if (this.kc) await this.startInformers();
      for await (const msg of ctx.messages(signal)) {
        // Handled concurrently: writes to the API may take a while; CloudHub orders per resource.
        // One catch for the whole chain: a failed reply is reported like a failed write, never left unhandled.
        this.handle(msg)
          .then(async (reply) => {
            if (msg.header.sync) await ctx.respond(msg, reply);
          })
          .catch((err: unknown) => {
            // Answered at once with LEDGE_ERR_API ("not handled"): CloudHub withholds the ACK and the
            // edge's resend is handled again, instead of waiting out CloudHub's handle timeout.
            this.log.warn(`upstream ${msg.route.operation} ${msg.route.resource} failed: ${errorMessage(err)}`, { code: errorCode(err), status: httpStatus(err) });
            if (msg.header.sync) void ctx.respond(msg, { code: ErrorCode.Api, message: `not handled: ${errorMessage(err)}` } satisfies ErrorContent).catch(() => {});
          });
      }
    } finally {
      this.authorizer.close();
      await Promise.all([this.pods, this.nodes, this.configMaps, this.secrets].map((w) => w?.stop()));
    }
  }

  private async startInformers(): Promise<void> {
    const kc = this.kc!;
    // A restart (after a failure) is synced again only once its new informers listed.
    this.nodesSynced = false;
    this.nodes = watchResource<k8s.V1Node>(kc, '/api/v1/nodes', this.log, { labelSelector: EDGE_ROLE_LABEL });
    this.pods = watchResource<k8s.V1Pod>(kc, '/api/v1/pods', this.log);
    this.configMaps = watchResource<k8s.V1ConfigMap>(kc, '/api/v1/configmaps', this.log);
    this.secrets = watchResource<k8s.V1Secret>(kc, '/api/v1/secrets', this.log);
    const podChanged = (pod: k8s.V1Pod, deleted = false) => {
      const key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
      const node = deleted ? undefined : pod.spec?.nodeName;
      // A pod may have moved or been deleted: update the indexes, then reconcile the node(s).
      const previous = this.nodeOfPod.get(key);
      if (previous !== undefined && previous !== node) {
        this.podsByNode.get(previous)?.delete(key);
        this.changed(previous);
      }
      this.indexRefs(key, node ? pod : undefined);
      if (node) {
        this.nodeOfPod.set(key, node);
        let set = this.podsByNode.get(node);
        if (!set) this.podsByNode.set(node, (set = new Set()));
        set.add(key);
        // Being deleted: the SyncController releases it at once if the node never received it.
        this.changed(node, pod.metadata?.deletionTimestamp ? podKey(pod) : undefined);
      } else {
        this.nodeOfPod.delete(key);
        if (deleted && pod.spec?.nodeName && pod.spec.nodeName !== previous) this.changed(pod.spec.nodeName);
      }
    };
    this.pods.on('add', (p) => podChanged(p));
    this.pods.on('update', (p) => podChanged(p));
    this.pods.on('delete', (p) => podChanged(p, true));
    // A configmap or secret changed: only the nodes of the pods that reference it care.
    const refChanged = (kind: 'configmap' | 'secret') => (obj: k8s.V1ConfigMap | k8s.V1Secret) => {
      const pods = this.podsByRef.get(`${obj.metadata?.namespace}/${kind}/${obj.metadata?.name}`);
      const nodes = new Set<string>();
      for (const key of pods ?? []) {
        const n = this.nodeOfPod.get(key);
        if (n) nodes.add(n);
      }
      for (const n of nodes) this.changed(n);
    };
    for (const ev of ['add', 'update', 'delete'] as const) {
      this.configMaps.on(ev, refChanged('configmap'));
      this.secrets.on(ev, refChanged('secret'));
    }
    await Promise.all([this.nodes.synced, this.pods.synced, this.configMaps.synced, this.secrets.synced]);
    this.nodesSynced = true;
    // The sets are known now: the nodes changed while listing (every node with pods), and every
    // node connected meanwhile, are announced, one message each.
    for (const node of this.options.announceNodes?.() ?? []) this.changed(node);
    this.flushWhenSynced();
    for (const o of this.options.informerObservers ?? []) o.attach({ pods: this.pods, nodes: this.nodes });
    this.log.info('edge controller watching', { pods: this.pods.informer.list().length, edgeNodes: this.nodes.informer.list().length });
  }

  /** Re-indexes the configmaps/secrets a bound pod references (`pod` undefined: unbound or gone). */
  private indexRefs(key: string, pod: k8s.V1Pod | undefined): void {
    for (const ref of this.refsOfPod.get(key) ?? []) {
      const set = this.podsByRef.get(ref);
      set?.delete(key);
      if (set?.size === 0) this.podsByRef.delete(ref);
    }
    if (!pod) {
      this.refsOfPod.delete(key);
      return;
    }
    const ns = pod.metadata?.namespace;
    const refs = podReferences(pod);
    const keys = [...[...refs.configMaps].map((n) => `${ns}/configmap/${n}`), ...[...refs.secrets].map((n) => `${ns}/secret/${n}`)];
    for (const ref of keys) {
      let set = this.podsByRef.get(ref);
      if (!set) this.podsByRef.set(ref, (set = new Set()));
      set.add(key);
    }
    this.refsOfPod.set(key, keys);
  }

  /** DesiredSource: the pods bound to `node` and the configmaps/secrets they reference. */
  desiredFor(node: string): Map<string, DesiredObject> {
    const out = new Map<string, DesiredObject>();
    if (!this.pods) return out;
    for (const key of this.podsByNode.get(node) ?? []) {
      const i = key.indexOf('/');
      const pod = this.pods.informer.get(key.slice(i + 1), key.slice(0, i));
      if (!pod || pod.spec?.nodeName !== node) continue;
      // Being deleted: the node must stop it, so it leaves the desired set (a delete goes down).
      if (pod.metadata?.deletionTimestamp) continue;
      const ns = pod.metadata!.namespace!;
      const refs = podReferences(pod);
      for (const name of refs.configMaps) {
        const cm = this.configMaps?.informer.get(name, ns);
        if (cm) add(out, cm, 'v1', 'ConfigMap');
      }
      for (const name of refs.secrets) {
        const s = this.secrets?.informer.get(name, ns);
        if (s) add(out, s, 'v1', 'Secret');
      }
      // After what it references: the node gets (and can use) them first, so the pod seldom waits.
      add(out, pod, 'v1', 'Pod');
    }
    return out;
  }

  /** DesiredSource: the pods, nodes, configmaps and secrets listed (without an API: nothing to wait for). */
  synced(): boolean {
    return !this.kc || this.nodesSynced;
  }

  nodeExists(node: string): boolean | undefined {
    if (!this.nodesSynced || !this.nodes) return undefined;
    return this.nodes.informer.get(node) !== undefined;
  }

  /**
   * DesiredSource: the node holds no copy of the object any more (it ACKed the delete, or
   * never received it). A pod being deleted gracefully is then deleted for good.
   */
  released(node: string, ref: ObjectKey): void {
    if (ref.kind !== 'Pod' || !ref.namespace) return;
    const pod = this.pods?.informer.get(ref.name, ref.namespace);
    if (pod?.metadata?.uid === ref.uid && pod.metadata.deletionTimestamp && pod.spec?.nodeName === node) void this.finalizePod(pod);
  }

  /**
   * Notes that `node`'s desired set changed (and, optionally, that one of its pods is being
   * deleted). Changes within one microtask are sent as one `desired-changed` message per node
   * (an informer's initial list is one burst), over Beehive to the SyncController.
   */
  private changed(node: string, terminating?: ObjectKey): void {
    let list = this.pendingChanges.get(node);
    if (!list) this.pendingChanges.set(node, (list = []));
    if (terminating) list.push(terminating);
    this.flushWhenSynced();
  }

  /** Sends the pending changes in a microtask, once the informers listed (until then they only collect). */
  private flushWhenSynced(): void {
    if (!this.nodesSynced || this.flushQueued || this.pendingChanges.size === 0) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flushChanges());
  }

  private flushChanges(): void {
    this.flushQueued = false;
    const changes = [...this.pendingChanges];
    this.pendingChanges.clear();
    for (const [node, terminating] of changes) {
      // Never thrown into the informer or a microtask: a change that cannot be told is repaired by the periodic reconcile.
      try {
        const sent = this.ctx?.send(ModuleName.SyncController, desiredChanged(this.name, { node, terminating }));
        sent?.catch((err: unknown) => this.notDelivered(node, err));
      } catch (err) {
        this.notDelivered(node, err);
      }
    }
  }

  private notDelivered(node: string, err: unknown): void {
    if (err instanceof NoSuchModuleError || err instanceof StoppedError) return; // no SyncController here, or stopping
    this.log.warn(`desired-set change of node ${node} not delivered to the sync controller: ${errorMessage(err)}`, { code: errorCode(err), node });
  }

  private async finalizePod(pod: k8s.V1Pod): Promise<void> {
    const { name, namespace, uid } = pod.metadata!;
    try {
      await this.core!.deleteNamespacedPod({ name: name!, namespace: namespace!, gracePeriodSeconds: 0, body: { preconditions: { uid: uid! } } });
      this.log.info(`pod ${namespace}/${name} stopped on its node; deletion completed`);
    } catch (err) {
      if (httpStatus(err) !== 404 && httpStatus(err) !== 409)
        this.log.warn(`cannot complete deletion of pod ${namespace}/${name}: ${errorMessage(err)}`, { code: ErrorCode.Api, status: httpStatus(err) });
    }
  }

  /** Returns null when handled, an error to ACK with (rejected), a query's answer, or throws (retry later). */
  private async handle(msg: Message): Promise<unknown> {
    const session = sessionOf(msg);
    if (!session || msg.route.operation === Operation.Ack) return null;
    // The one check point: the node is the session's (CloudHub's routing), never what the message claims.
    const { node, message } = session;
    const decision = this.authorizer.authorize(node, message);
    if (!decision.allowed) return decision.error;
    const r = parseResource(message.route.resource);
    if (message.route.operation === Operation.Query) return this.answerQuery(r);
    switch (r.type) {
      case ResourceType.NodeStatus: {
        if (!this.core) return null;
        await Promise.all([this.nodeStatusWriter.write(node, message.content as NodeStatusReport), this.leaseWriter.write(node, this.options.now())]);
        return null;
      }
      case ResourceType.PodStatus: {
        if (!this.core) return null;
        const write: PodStatusWrite = {
          status: message.content as k8s.V1PodStatus,
          recheck: (pod) => this.authorizer.authorize(node, message, { pod: () => podFacts(pod) }),
        };
        try {
          await this.podStatusWriter.write(`${r.namespace}/${r.name}`, write);
        } catch (err) {
          // Refused against the pod as read: the cache was behind (another pod of that name, bound elsewhere).
          if (err instanceof ForbiddenError) return errorContent(err);
          throw err;
        }
        return null;
      }
      case ResourceType.Pod:
        return this.mirrorPod(node, message, r);
      default:
        return errorContent(new UnsupportedError(`edgecontroller does not handle ${r.type}`));
    }
  }

  /**
   * A static pod's mirror (a pod the node runs from its own manifests directory): created or
   * deleted in the API for the node, as a kubelet does. The authorizer allowed only a mirror pod
   * (annotation `kubernetes.io/config.mirror`) bound to the node — the NodeRestriction rule; a pod
   * read from the API (not yet in the cache) is checked again before it is deleted or kept.
   */
  private async mirrorPod(node: string, message: Message, r: ParsedResource): Promise<unknown> {
    if (!this.core || !r.namespace || !r.name) return null;
    const namespace = r.namespace;
    const name = r.name;
    const operation = message.route.operation;
    const recheck = (existing: k8s.V1Pod) => this.authorizer.authorize(node, message, { pod: () => podFacts(existing) });
    if (operation === Operation.Delete) {
      const existing = await this.core.readNamespacedPod({ name, namespace }).catch((err: unknown) => {
        if (httpStatus(err) === 404) return undefined;
        throw err;
      });
      if (!existing) return null;
      const d = recheck(existing);
      if (!d.allowed) return d.error;
      await this.core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0, body: { preconditions: { uid: existing.metadata!.uid! } } }).catch((err: unknown) => {
        if (httpStatus(err) !== 404 && httpStatus(err) !== 409) throw err;
      });
      this.log.info(`mirror pod ${namespace}/${name} of node ${node} deleted`);
      return null;
    }
    const pod = message.content as k8s.V1Pod;
    const body: k8s.V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels: pod.metadata?.labels, annotations: pod.metadata?.annotations }, spec: pod.spec };
    try {
      await this.core.createNamespacedPod({ namespace, body });
      this.log.info(`mirror pod ${namespace}/${name} of node ${node} created`);
    } catch (err) {
      if (httpStatus(err) !== 409) throw err;
      // Already there: it is ours if it is a mirror of this node (a resend), else a name clash the node is told about.
      const existing = await this.core.readNamespacedPod({ name, namespace });
      const d = recheck(existing);
      if (!d.allowed) return d.error;
      // The previous mirror is still going away: not done yet (no answer, the edge resends).
      if (existing.metadata?.deletionTimestamp) throw new Error(`mirror pod ${namespace}/${name} is still being deleted`);
    }
    return null;
  }

  /** Whether a pod bound to `node`, not being deleted, references this configmap or secret (the node's desired set holds it). */
  private referencedBy(node: string, type: 'configmap' | 'secret', namespace: string, name: string): boolean {
    return [...(this.podsByRef.get(`${namespace}/${type}/${name}`) ?? [])].some((key) => {
      if (this.nodeOfPod.get(key) !== node) return false;
      const i = key.indexOf('/');
      return !this.pods?.informer.get(key.slice(i + 1), key.slice(0, i))?.metadata?.deletionTimestamp;
    });
  }

  /**
   * A node's query for one object the authorizer let it read: the object (as the desired set
   * sends it), or a NotFound (being deleted, referenced but absent) or Unsupported error content.
   */
  private answerQuery(r: ParsedResource): unknown {
    const ns = r.namespace ?? 'default';
    const name = r.name;
    if (!name) return errorContent(new UnsupportedError(`edgecontroller answers queries for one object, not ${r.type} collections`));
    if (!this.pods) return errorContent(new UnsupportedError('edgecontroller has no Kubernetes API to answer queries from'));
    switch (r.type) {
      case ResourceType.Pod: {
        const pod = this.pods.informer.get(name, ns);
        if (!pod) return errorContent(new NotFoundError(`pod ${ns}/${name} does not exist`));
        if (pod.metadata?.deletionTimestamp) return errorContent(new NotFoundError(`pod ${ns}/${name} is being deleted`));
        return toPlain(pod, 'v1', 'Pod');
      }
      case ResourceType.ConfigMap:
      case ResourceType.Secret: {
        const obj = r.type === ResourceType.ConfigMap ? this.configMaps?.informer.get(name, ns) : this.secrets?.informer.get(name, ns);
        if (!obj) return errorContent(new NotFoundError(`${r.type} ${ns}/${name} does not exist`));
        return toPlain(obj, 'v1', r.type === ResourceType.ConfigMap ? 'ConfigMap' : 'Secret');
      }
      case ResourceType.Node: {
        const own = this.nodes?.informer.get(name);
        if (!own) return errorContent(new NotFoundError(`node ${name} is not registered`));
        return toPlain(own, 'v1', 'Node');
      }
      default:
        return errorContent(new UnsupportedError(`edgecontroller does not answer queries for ${r.type}`));
    }
  }

  /** Logs a node's malformed report entries, once per distinct problem. */
  private reportProblem(node: string, problems: string[]): void {
    const key = problems.join('; ');
    if (!key) {
      this.reportProblems.delete(node);
      return;
    }
    if (this.reportProblems.get(node) === key) return;
    this.reportProblems.set(node, key);
    this.log.warn(`node ${node} reported a malformed status; left out: ${key}`, { code: ErrorCode.InvalidMessage, node });
  }

  /** The node a pod is bound to, from the pod informer (CloudStream routes kubectl logs/exec by it); undefined: unknown or not bound. */
  podNode(namespace: string, name: string): string | undefined {
    return this.nodeOfPod.get(`${namespace}/${name}`);
  }

  private async writeNodeStatus(node: string, report: NodeStatusReport): Promise<void> {
    const core = this.core!;
    let current: k8s.V1Node;
    try {
      current = await core.readNode({ name: node });
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
      // Issue 13 (cloud/revocation): a Node deleted under a report in progress is not re-created by it. The informer still
      // holding it means the deletion is not seen here yet (this controller's delete event comes at once); otherwise the host decides.
      if (this.nodes?.informer.get(node) || this.options.mayRegisterNode?.(node) === false) {
        throw new NodeRevokedError(`edge Node ${node} was deleted (which revokes the node): not registered again from this report`);
      }
      const info = report.nodeInfo ?? {};
      const labels: Record<string, string> = { [EDGE_ROLE_LABEL]: '', 'kubernetes.io/hostname': node };
      if (info.operatingSystem) labels['kubernetes.io/os'] = info.operatingSystem;
      if (info.architecture) labels['kubernetes.io/arch'] = nodeArch(info.architecture);
      try {
        current = await core.createNode({ body: { apiVersion: 'v1', kind: 'Node', metadata: { name: node, labels } } });
        this.log.info(`registered edge node ${node}`);
      } catch (e) {
        if (httpStatus(e) !== 409) throw e;
        current = await core.readNode({ name: node });
      }
    }
    const reported = Array.isArray(report.addresses) ? report.addresses : [];
    const endpoint = this.options.streamEndpoint?.();
    const edgeAddresses = endpoint ? JSON.stringify(reported) : undefined;
    // An existing node gains the edge role label if it lacked it; the edge's own addresses are kept in an annotation.
    const md = current.metadata ?? {};
    if (md.labels?.[EDGE_ROLE_LABEL] === undefined || (edgeAddresses !== undefined && md.annotations?.[EDGE_ADDRESSES_ANNOTATION] !== edgeAddresses)) {
      current.metadata = {
        ...md,
        labels: { ...md.labels, [EDGE_ROLE_LABEL]: '' },
        ...(edgeAddresses !== undefined ? { annotations: { ...md.annotations, [EDGE_ADDRESSES_ANNOTATION]: edgeAddresses } } : {}),
      };
      current = await core.replaceNode({ name: node, body: current });
    }
    const now = new Date(this.options.now());
    const info = report.nodeInfo ?? {};
    const problems: string[] = [];
    const capacity = quantities(report.capacity, 'capacity', problems);
    const allocatable = report.allocatable === undefined ? capacity : quantities(report.allocatable, 'allocatable', problems);
    const text = (v: unknown): string => (typeof v === 'string' ? v : '');
    const conditions = (Array.isArray(report.conditions) ? report.conditions : []).filter((c) => {
      const ok = typeof c?.type === 'string' && c.type !== '' && (c.status === 'True' || c.status === 'False' || c.status === 'Unknown');
      if (!ok) problems.push(`condition ${JSON.stringify(c).slice(0, 80)}`);
      return ok;
    });
    current.status = {
      ...current.status,
      capacity,
      allocatable,
      // With CloudStream, the API server's node proxy (preferred types Hostname, InternalDNS, InternalIP…) dials CloudStream.
      addresses: endpoint
        ? [
            { type: 'InternalIP', address: endpoint.address },
            { type: 'Hostname', address: endpoint.address },
          ]
        : reported,
      ...(endpoint ? { daemonEndpoints: { kubeletEndpoint: { Port: endpoint.port } } } : {}),
      nodeInfo: {
        architecture: nodeArch(text(info.architecture)),
        operatingSystem: text(info.operatingSystem),
        kernelVersion: text(info.kernelVersion),
        // Older edges sent no osImage: their OS name, as written before.
        osImage: text(info.osImage ?? info.operatingSystem),
        containerRuntimeVersion: text(info.containerRuntimeVersion ?? info.runtime),
        kubeletVersion: text(info.kubeletVersion ?? 'ledge'),
        kubeProxyVersion: '',
        bootID: text(info.bootID),
        machineID: text(info.machineID),
        systemUUID: text(info.systemUUID),
      },
      conditions: nextConditions(current.status?.conditions ?? [], conditions, now),
      images: report.images === undefined ? (current.status?.images ?? []) : images(report.images, problems),
    };
    this.reportProblem(node, problems);
    await core.replaceNodeStatus({ name: node, body: current });
  }

  private async renewLease(node: string): Promise<void> {
    const co = this.coordination!;
    const namespace = this.options.leaseNamespace;
    const renewTime = new (kube().V1MicroTime)(this.options.now());
    try {
      const lease = await co.readNamespacedLease({ name: node, namespace });
      lease.spec = { ...lease.spec, holderIdentity: node, renewTime, leaseDurationSeconds: this.options.leaseDurationSeconds };
      await co.replaceNamespacedLease({ name: node, namespace, body: lease });
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
      await co.createNamespacedLease({
        namespace,
        body: {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: node, namespace },
          spec: { holderIdentity: node, renewTime, leaseDurationSeconds: this.options.leaseDurationSeconds },
        },
      });
    }
  }

  /** Writes a pod's status; `recheck` (the authorizer's rule) runs on the pod as read, before it is written. */
  private async writePodStatus(key: string, status: k8s.V1PodStatus, recheck?: (pod: k8s.V1Pod) => Decision): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    // The pod may change between the read and the write (CloudCore's eviction protection patches new
    // pods, a controller labels them): on a conflict it is read again, a few times, before giving up.
    for (let attempt = 1; ; attempt++) {
      const pod = await this.core!.readNamespacedPod({ name, namespace });
      const d = recheck?.(pod);
      if (d && !d.allowed) throw new ForbiddenError(d.refused);
      pod.status = status;
      try {
        await this.core!.replaceNamespacedPodStatus({ name, namespace, body: pod });
        return;
      } catch (err) {
        if (httpStatus(err) !== 409 || attempt >= 3) throw err;
      }
    }
  }
}

/**
 * The reported conditions as Node conditions, as a kubelet writes them: `lastHeartbeatTime`
 * is the report's time; `lastTransitionTime` moves only when the condition's status
 * changed (or the condition is new), else it keeps the stored one. Stored conditions of
 * other types (written by others, e.g. node-problem-detector) are kept, after the reported ones.
 */
export function nextConditions(stored: k8s.V1NodeCondition[], reported: NonNullable<NodeStatusReport['conditions']>, now: Date): k8s.V1NodeCondition[] {
  const out: k8s.V1NodeCondition[] = reported.map((c) => {
    const prev = stored.find((p) => p.type === c.type);
    const lastTransitionTime = prev && prev.status === c.status && prev.lastTransitionTime ? prev.lastTransitionTime : now;
    return { type: c.type, status: c.status, reason: c.reason ?? '', message: c.message ?? '', lastHeartbeatTime: now, lastTransitionTime };
  });
  const reportedTypes = new Set(reported.map((c) => c.type));
  for (const p of stored) if (!reportedTypes.has(p.type)) out.push(p);
  return out;
}

/** A Kubernetes quantity (resource.Quantity's serialization: a decimal with an optional suffix or exponent). */
const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$/;
/** A resource name (`cpu`, `ephemeral-storage`, `hugepages-2Mi`, `example.com/gpu`). */
const RESOURCE_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$/;

/** The well-formed entries of a capacity/allocatable map; the others are named in `problems`. */
function quantities(m: unknown, field: string, problems: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (m === undefined || m === null) return out;
  if (typeof m !== 'object' || Array.isArray(m)) {
    problems.push(`${field} (not a map)`);
    return out;
  }
  for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
    if (RESOURCE_NAME.test(k) && k.length <= 253 && typeof v === 'string' && QUANTITY.test(v)) out[k] = v;
    else problems.push(`${field}.${k.slice(0, 60)}=${JSON.stringify(v)?.slice(0, 40)}`);
  }
  return out;
}

/** Kubelet's bound on node status images (nodeStatusMaxImages). */
const MAX_NODE_IMAGES = 50;

/** The well-formed images (names: non-empty strings; sizeBytes ≥ 0), at most 50. */
function images(list: unknown, problems: string[]): k8s.V1ContainerImage[] {
  if (!Array.isArray(list)) {
    problems.push('images (not a list)');
    return [];
  }
  const out: k8s.V1ContainerImage[] = [];
  for (const i of list as { names?: unknown; sizeBytes?: unknown }[]) {
    const names = Array.isArray(i?.names) ? i.names.filter((n): n is string => typeof n === 'string' && n !== '') : [];
    if (names.length === 0 || typeof i.sizeBytes !== 'number' || !Number.isFinite(i.sizeBytes) || i.sizeBytes < 0) {
      problems.push(`image ${JSON.stringify(i).slice(0, 80)}`);
      continue;
    }
    if (out.length === MAX_NODE_IMAGES) {
      problems.push(`images beyond the first ${MAX_NODE_IMAGES}`);
      break;
    }
    out.push({ names, sizeBytes: Math.floor(i.sizeBytes) });
  }
  return out;
}

function add(out: Map<string, DesiredObject>, obj: k8s.KubernetesObject, apiVersion: string, kind: string): void {
  const md = obj.metadata!;
  out.set(md.uid!, { uid: md.uid!, apiVersion, kind, namespace: md.namespace!, name: md.name!, resourceVersion: md.resourceVersion!, body: toPlain(obj, apiVersion, kind) });
}

function podKey(pod: k8s.V1Pod): ObjectKey {
  const md = pod.metadata!;
  return { kind: 'Pod', name: md.name!, uid: md.uid!, ...(md.namespace ? { namespace: md.namespace } : {}) };
}

/** Node's os.arch() names (older edges) → Kubernetes' GOARCH names; GOARCH names pass through. */
function nodeArch(arch: string): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', mipsel: 'mipsle' } as Record<string, string>)[arch] ?? arch;
}

export function createEdgeController(kc?: k8s.KubeConfig, log?: Logger, options?: Partial<EdgeControllerOptions>): EdgeController {
  return new EdgeController(kc, log ?? silentFallback, options);
}

import { silentLogger as silentFallback } from '../../shared/log/index.js';
