/**
 * @module
 * EdgeController: the cluster side of edge nodes.
 * - Downstream: pods bound to edge nodes, and only the configmaps and secrets those
 *   pods reference, become the node's desired set. The SyncController reads it
 *   (DesiredSource); each change is announced to it over Beehive (`desired-changed`,
 *   coalesced per node and microtask).
 *   Informers only; nothing polls.
 * - Upstream: node status reports register/update the Node (edge role label,
 *   addresses, capacity, nodeInfo, conditions) and renew its Lease; pod status
 *   reports go to pods/status. Writes are coalesced per object (latest wins).
 *   A node may write only its own Node and the pods bound to it.
 * - Graceful pod deletion: a pod being deleted is removed from its node's desired set,
 *   so the node is told to delete it; when the node ACKs (it stopped the pod), the
 *   deletion is completed with gracePeriodSeconds=0, as a kubelet does.
 * Without a Kubernetes API (no kubeconfig), status reports are accepted and dropped.
 */
import { ModuleName, Group, Operation, ResourceType, parseResource, type ErrorContent, type Message } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { ErrorCode, errorCode, errorContent, errorMessage, ForbiddenError, NoSuchModuleError, NotFoundError, StoppedError, UnsupportedError } from '../../shared/errors/index.js';
import { kube, httpStatus, toPlain, watchResource, CoalescingWriter, type k8s, type WatchedResource } from '../kube/index.js';
import { desiredChanged, type DesiredObject, type DesiredSource, type ObjectKey } from '../synccontroller/index.js';
import { podReferences } from './references.js';
import { defaultEdgeControllerOptions } from './options.js';

export { defaultEdgeControllerOptions } from './options.js';

export const EDGE_ROLE_LABEL = 'node-role.kubernetes.io/edge';

interface NodeStatusReport {
  nodeInfo?: { operatingSystem?: string; architecture?: string; kernelVersion?: string; hostname?: string; runtime?: string };
  capacity?: Record<string, string>;
  addresses?: { type: string; address: string }[];
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
}

/** Options; defaults in `defaultEdgeControllerOptions` (./options.ts). */
export interface EdgeControllerOptions {
  /** Lease namespace for node heartbeats. Default 'kube-node-lease'. */
  leaseNamespace: string;
  /** Lease duration written on renewals, seconds. Default 40. */
  leaseDurationSeconds: number;
  /** Wall clock (ms since the epoch) for heartbeat, transition and renew times. Default Date.now. */
  now: () => number;
}

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
  private readonly podStatusWriter: CoalescingWriter<k8s.V1PodStatus>;
  private readonly options: EdgeControllerOptions;
  private ctx: ModuleContext | undefined;
  /** Nodes whose desired set changed since the last flush, with the pods being deleted among the changes. */
  private readonly pendingChanges = new Map<string, ObjectKey[]>();
  private flushQueued = false;

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
    this.podStatusWriter = new CoalescingWriter((key, status) => this.writePodStatus(key, status));
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
            // No answer: CloudHub withholds the ACK and the edge retries later.
            this.log.warn(`upstream ${msg.route.operation} ${msg.route.resource} failed: ${errorMessage(err)}`, { code: errorCode(err), status: httpStatus(err) });
          });
      }
    } finally {
      await Promise.all([this.pods, this.nodes, this.configMaps, this.secrets].map((w) => w?.stop()));
    }
  }

  private async startInformers(): Promise<void> {
    const kc = this.kc!;
    const core = this.core!;
    this.nodes = watchResource<k8s.V1Node>(kc, '/api/v1/nodes', () => core.listNode({ labelSelector: EDGE_ROLE_LABEL }), this.log, { labelSelector: EDGE_ROLE_LABEL });
    this.pods = watchResource<k8s.V1Pod>(kc, '/api/v1/pods', () => core.listPodForAllNamespaces(), this.log);
    this.configMaps = watchResource<k8s.V1ConfigMap>(kc, '/api/v1/configmaps', () => core.listConfigMapForAllNamespaces(), this.log);
    this.secrets = watchResource<k8s.V1Secret>(kc, '/api/v1/secrets', () => core.listSecretForAllNamespaces(), this.log);
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
      add(out, pod, 'v1', 'Pod');
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
    }
    return out;
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
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flushChanges());
    }
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

  /** Returns null when handled, an error to ACK with (rejected), or throws (retry later). */
  private async handle(msg: Message): Promise<ErrorContent | null> {
    const m = /^node\/([^/]+)\/(.*)$/.exec(msg.route.resource);
    if (!m || msg.route.operation === Operation.Ack) return null;
    const [, node, rest] = m as unknown as [string, string, string];
    const r = parseResource(rest);
    switch (r.type) {
      case ResourceType.NodeStatus: {
        // A node reports only for itself: the session's name wins over anything in the resource.
        if (r.name && r.name !== node) return forbidden(node, `status of node ${r.name}`);
        if (!this.core) return null;
        await Promise.all([this.nodeStatusWriter.write(node, msg.content as NodeStatusReport), this.leaseWriter.write(node, this.options.now())]);
        return null;
      }
      case ResourceType.PodStatus: {
        if (!this.core || !r.namespace || !r.name) return null;
        const pod = this.pods?.informer.get(r.name, r.namespace);
        if (!pod) return errorContent(new NotFoundError(`pod ${r.namespace}/${r.name} does not exist`));
        if (pod.spec?.nodeName !== node) return forbidden(node, `pod ${r.namespace}/${r.name}`);
        await this.podStatusWriter.write(`${r.namespace}/${r.name}`, msg.content as k8s.V1PodStatus);
        return null;
      }
      default:
        return errorContent(new UnsupportedError(`edgecontroller does not handle ${r.type}`));
    }
  }

  private async writeNodeStatus(node: string, report: NodeStatusReport): Promise<void> {
    const core = this.core!;
    let current: k8s.V1Node;
    try {
      current = await core.readNode({ name: node });
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
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
    // An existing node gains the edge role label if it lacked it.
    if (current.metadata?.labels?.[EDGE_ROLE_LABEL] === undefined) {
      current.metadata = { ...current.metadata, labels: { ...current.metadata?.labels, [EDGE_ROLE_LABEL]: '' } };
      current = await core.replaceNode({ name: node, body: current });
    }
    const now = new Date(this.options.now());
    const info = report.nodeInfo ?? {};
    const capacity = report.capacity ?? {};
    current.status = {
      ...current.status,
      capacity,
      allocatable: capacity,
      addresses: report.addresses ?? [],
      nodeInfo: {
        architecture: nodeArch(info.architecture ?? ''),
        operatingSystem: info.operatingSystem ?? '',
        kernelVersion: info.kernelVersion ?? '',
        osImage: info.operatingSystem ?? '',
        containerRuntimeVersion: info.runtime ?? '',
        kubeletVersion: 'ledge',
        kubeProxyVersion: '',
        bootID: '',
        machineID: '',
        systemUUID: '',
      },
      conditions: nextConditions(current.status?.conditions ?? [], report.conditions ?? [], now),
    };
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

  private async writePodStatus(key: string, status: k8s.V1PodStatus): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    const pod = await this.core!.readNamespacedPod({ name, namespace });
    pod.status = status;
    await this.core!.replaceNamespacedPodStatus({ name, namespace, body: pod });
  }
}

/**
 * The reported conditions as Node conditions, as a kubelet writes them: `lastHeartbeatTime`
 * is the report's time; `lastTransitionTime` moves only when the condition's status
 * changed (or the condition is new), else it keeps the stored one.
 */
export function nextConditions(stored: k8s.V1NodeCondition[], reported: NonNullable<NodeStatusReport['conditions']>, now: Date): k8s.V1NodeCondition[] {
  return reported.map((c) => {
    const prev = stored.find((p) => p.type === c.type);
    const lastTransitionTime = prev && prev.status === c.status && prev.lastTransitionTime ? prev.lastTransitionTime : now;
    return { type: c.type, status: c.status, reason: c.reason ?? '', message: c.message ?? '', lastHeartbeatTime: now, lastTransitionTime };
  });
}

function add(out: Map<string, DesiredObject>, obj: k8s.KubernetesObject, apiVersion: string, kind: string): void {
  const md = obj.metadata!;
  out.set(md.uid!, { uid: md.uid!, apiVersion, kind, namespace: md.namespace!, name: md.name!, resourceVersion: md.resourceVersion!, body: toPlain(obj, apiVersion, kind) });
}

function podKey(pod: k8s.V1Pod): ObjectKey {
  const md = pod.metadata!;
  return { kind: 'Pod', name: md.name!, uid: md.uid!, ...(md.namespace ? { namespace: md.namespace } : {}) };
}

function forbidden(node: string, what: string): ErrorContent {
  return errorContent(new ForbiddenError(`node ${node} may not write ${what}`));
}

/** Node's os.arch() names → Kubernetes' GOARCH names. */
function nodeArch(arch: string): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' } as Record<string, string>)[arch] ?? arch;
}

export function createEdgeController(kc?: k8s.KubeConfig, log?: Logger, options?: Partial<EdgeControllerOptions>): EdgeController {
  return new EdgeController(kc, log ?? silentFallback, options);
}

import { silentLogger as silentFallback } from '../../shared/log/index.js';
