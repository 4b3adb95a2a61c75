/**
 * @module
 * SyncController: makes what each edge node holds match what the cluster says it
 * should hold, using ObjectSync / ClusterObjectSync records of what each node ACKed.
 *
 * - Change or reconcile: for every object a node should have, the record's ACKed
 *   resourceVersion is compared with the object's; only a newer object is queued to
 *   CloudHub. Records of objects the node should no longer have produce a delete.
 * - ACK: CloudHub reports it (AckRecorder); the record's status is set to the ACKed
 *   version (never backwards); an ACKed delete removes the record.
 * - Replicas: every replica sends only to nodes connected to it; the records are what
 *   let another replica take a node over and send only what it lacks.
 * - GC (leader only): records of nodes that no longer exist are deleted.
 */
import { newMessage, compareResourceVersions, Group, ModuleName, Operation, buildResource, type Message } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { errorMessage, errorCode } from '../../shared/errors/index.js';
import { sleep } from '../../shared/runtime/index.js';
import type { AckRecorder, AckedObject } from '../cloudhub/index.js';
import { kube, httpStatus, watchResource, CoalescingWriter, type k8s, type WatchedResource } from '../kube/index.js';
import {
  CLUSTER_OBJECT_SYNC_PLURAL,
  NODE_LABEL,
  OBJECT_SYNC_PLURAL,
  SYNC_GROUP,
  SYNC_VERSION,
  clusterObjectSyncCrd,
  objectSyncCrd,
  objectSyncName,
  type ObjectSync,
} from './crds.js';

/** An object a node should hold. */
export interface DesiredObject {
  uid: string;
  apiVersion: string;
  kind: string;
  /** Absent for cluster-scoped objects. */
  namespace?: string;
  name: string;
  resourceVersion: string;
  /** The plain JSON object sent to the edge. */
  body: Record<string, unknown>;
}

/** What the EdgeController tells the SyncController. */
export interface DesiredSource {
  /** Objects `node` should hold, by UID. */
  desiredFor(node: string): Map<string, DesiredObject>;
  /** Whether the Node object exists (for GC); undefined while unknown. */
  nodeExists(node: string): boolean | undefined;
  /** Called when a node ACKed the delete of an object (graceful pod deletion completes here). */
  onDeleteAcked?(node: string, ref: { kind: string; namespace?: string; name: string; uid: string }): void;
}

export interface SyncControllerOptions {
  /** Full reconcile of every connected node, ms. Default 30000. */
  reconcileIntervalMs: number;
  /** Whether this replica is the leader (runs GC). */
  isLeader: () => boolean;
  /** Whether CloudHub on this replica has a session with the node. */
  isConnected: (node: string) => boolean;
  connectedNodes: () => string[];
}

export interface ReconcileResult {
  sent: number;
  upToDate: number;
  deleted: number;
}

interface RecordWrite {
  node: string;
  uid: string;
  namespace?: string;
  kind: string;
  apiVersion: string;
  name: string;
  /** Version to record, or null to delete the record. */
  rv: string | null;
}

/** The edge resource string of an object (`namespace/type/name`). */
export function edgeResourceOf(o: { kind: string; namespace?: string; name: string }): string {
  return buildResource(o.namespace, o.kind.toLowerCase(), o.name);
}

export class SyncController implements Module, AckRecorder {
  readonly name = ModuleName.SyncController;
  readonly group = 'sync';
  private ctx: ModuleContext | undefined;
  private source: DesiredSource | undefined;
  /** node → uid → record (from informers and our own writes). */
  private readonly records = new Map<string, Map<string, ObjectSync>>();
  /** node → uid → version queued to CloudHub since the node connected ('delete' for deletes). */
  private readonly sent = new Map<string, Map<string, string>>();
  /** node/uid → when it was queued; an entry still unacknowledged after a few reconcile periods is queued again. */
  private readonly sentAt = new Map<string, number>();
  /**
   * Record writes, per record: a delete wins, otherwise the newest version; at most 32
   * in flight so a burst of ACKs cannot flood the API server.
   */
  private readonly recordWriter = new CoalescingWriter<RecordWrite>((_key, w) => this.writeWithRetries(w), {
    concurrency: 32,
    merge: (waiting, next) => (waiting.rv !== null && next.rv !== null && compareResourceVersions(next.rv, waiting.rv) < 0 ? waiting : next),
  });
  private watches: WatchedResource<ObjectSync>[] = [];
  private readonly objects: k8s.CustomObjectsApi;
  stats = { sent: 0, deletes: 0, recordWrites: 0, recordWriteErrors: 0, gc: 0 };

  constructor(
    private readonly kc: k8s.KubeConfig,
    private readonly options: SyncControllerOptions,
    private readonly log: Logger,
  ) {
    this.objects = kc.makeApiClient(kube().CustomObjectsApi);
  }

  setDesiredSource(source: DesiredSource): void {
    this.source = source;
  }

  /** Installs the CRDs when missing (they may also be applied from deploy/crds/). */
  async ensureCrds(): Promise<void> {
    const ext = this.kc.makeApiClient(kube().ApiextensionsV1Api);
    for (const crd of [objectSyncCrd, clusterObjectSyncCrd]) {
      try {
        await ext.readCustomResourceDefinition({ name: crd.metadata.name });
      } catch (err) {
        if (httpStatus(err) !== 404) throw err;
        await ext.createCustomResourceDefinition({ body: crd as unknown as k8s.V1CustomResourceDefinition }).catch((e: unknown) => {
          if (httpStatus(e) !== 409) throw e;
        });
        this.log.info(`installed CRD ${crd.metadata.name}`);
      }
    }
    // A real API server serves a new CRD only once it is Established: wait until it lists.
    for (let i = 0; ; i++) {
      try {
        await this.objects.listClusterCustomObject({ group: SYNC_GROUP, version: SYNC_VERSION, plural: CLUSTER_OBJECT_SYNC_PLURAL, limit: 1 });
        await this.objects.listCustomObjectForAllNamespaces({ group: SYNC_GROUP, version: SYNC_VERSION, plural: OBJECT_SYNC_PLURAL, limit: 1 });
        return;
      } catch (err) {
        if (i >= 50) throw err;
        await sleep(200);
      }
    }
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    this.ctx = ctx;
    await this.ensureCrds();
    const base = `/apis/${SYNC_GROUP}/${SYNC_VERSION}`;
    const ns = watchResource<ObjectSync>(
      this.kc,
      `${base}/${OBJECT_SYNC_PLURAL}`,
      () => this.objects.listCustomObjectForAllNamespaces({ group: SYNC_GROUP, version: SYNC_VERSION, plural: OBJECT_SYNC_PLURAL }) as never,
      this.log,
    );
    const cluster = watchResource<ObjectSync>(
      this.kc,
      `${base}/${CLUSTER_OBJECT_SYNC_PLURAL}`,
      () => this.objects.listClusterCustomObject({ group: SYNC_GROUP, version: SYNC_VERSION, plural: CLUSTER_OBJECT_SYNC_PLURAL }) as never,
      this.log,
    );
    this.watches = [ns, cluster];
    for (const w of this.watches) {
      w.informer.on('add', (o) => this.cacheRecord(o));
      w.informer.on('update', (o) => this.cacheRecord(o));
      w.informer.on('delete', (o) => this.uncacheRecord(o));
    }
    await Promise.all(this.watches.map((w) => w.synced));
    this.log.info('sync records loaded', { records: [...this.records.values()].reduce((n, m) => n + m.size, 0) });
    const timer = setInterval(() => this.periodic(), this.options.reconcileIntervalMs);
    try {
      // ACK reports of our own messages arrive here; recordAck already handled them.
      for await (const msg of ctx.messages(signal)) void msg;
    } finally {
      clearInterval(timer);
      await Promise.all(this.watches.map((w) => w.stop()));
    }
  }

  private cacheRecord(o: ObjectSync): void {
    const node = o.metadata.labels?.[NODE_LABEL] ?? o.metadata.name.slice(0, o.metadata.name.lastIndexOf('.'));
    const uid = o.metadata.name.slice(node.length + 1);
    let m = this.records.get(node);
    if (!m) this.records.set(node, (m = new Map()));
    const cur = m.get(uid);
    // Our own write may be newer than a late informer event.
    if (cur?.metadata.resourceVersion && o.metadata.resourceVersion && compareResourceVersions(o.metadata.resourceVersion, cur.metadata.resourceVersion) < 0) return;
    m.set(uid, o);
  }

  private uncacheRecord(o: ObjectSync): void {
    const node = o.metadata.labels?.[NODE_LABEL] ?? o.metadata.name.slice(0, o.metadata.name.lastIndexOf('.'));
    this.records.get(node)?.delete(o.metadata.name.slice(node.length + 1));
  }

  /** The version `node` last ACKed for object `uid`: from a record write still in progress, else the record. */
  ackedVersion(node: string, uid: string): string | undefined {
    const pending = this.recordWriter.current(`${node}/${uid}`);
    if (pending && pending.rv !== null) return pending.rv;
    return this.records.get(node)?.get(uid)?.status?.objectResourceVersion;
  }

  /** Whether something for `uid` was queued to `node` and not ACKed yet. */
  isPendingFor(node: string, uid: string): boolean {
    return this.sent.get(node)?.has(uid) ?? false;
  }

  /** A node connected to this replica: forget what was queued for a previous session and reconcile. */
  nodeConnected(node: string): void {
    this.forgetSent(node);
    const r = this.reconcileNode(node);
    this.log.info(`node ${node} connected: ${r.sent} objects to send, ${r.deleted} to delete, ${r.upToDate} already up to date`, { node, ...r });
  }

  nodeDisconnected(node: string): void {
    this.forgetSent(node);
  }

  private forgetSent(node: string): void {
    for (const uid of this.sent.get(node)?.keys() ?? []) this.sentAt.delete(`${node}/${uid}`);
    this.sent.delete(node);
  }

  /** Queues to CloudHub whatever `node` lacks, per the records. Only for nodes connected here. */
  reconcileNode(node: string): ReconcileResult {
    const result = { sent: 0, upToDate: 0, deleted: 0 };
    if (!this.source || !this.options.isConnected(node)) return result;
    const desired = this.source.desiredFor(node);
    const recs = this.records.get(node);
    let sent = this.sent.get(node);
    if (!sent) this.sent.set(node, (sent = new Map()));
    for (const obj of desired.values()) {
      const acked = this.ackedVersion(node, obj.uid);
      if (acked !== undefined && compareResourceVersions(obj.resourceVersion, acked) <= 0) {
        result.upToDate++;
        continue;
      }
      if (sent.get(obj.uid) === obj.resourceVersion && !this.overdue(node, obj.uid)) continue;
      this.send(node, obj, acked === undefined && !recs?.has(obj.uid) ? Operation.Insert : Operation.Update);
      sent.set(obj.uid, obj.resourceVersion);
      this.sentAt.set(`${node}/${obj.uid}`, Date.now());
      result.sent++;
    }
    // Records (or unACKed sends) of objects the node should no longer hold.
    const stale = new Map<string, { kind: string; apiVersion: string; namespace?: string; name: string }>();
    for (const [uid, rec] of recs ?? []) {
      if (!desired.has(uid)) stale.set(uid, { kind: rec.spec.objectKind, apiVersion: rec.spec.objectAPIVersion, name: rec.spec.objectName, ...(rec.metadata.namespace ? { namespace: rec.metadata.namespace } : {}) });
    }
    for (const [uid, v] of sent) {
      if (v !== 'delete' && !desired.has(uid) && !stale.has(uid)) {
        const ref = this.sentRefs.get(`${node}/${uid}`);
        if (ref) stale.set(uid, ref);
      }
    }
    for (const [uid, ref] of stale) {
      if (sent.get(uid) === 'delete' && !this.overdue(node, uid)) continue;
      this.sendDelete(node, uid, ref);
      sent.set(uid, 'delete');
      this.sentAt.set(`${node}/${uid}`, Date.now());
      result.deleted++;
    }
    return result;
  }

  /**
   * CloudHub retries a queued message until it is ACKed, so "sent" normally suffices; but a
   * message CloudHub had to drop (its per-node queue was full) would otherwise wait for the
   * node's next reconnect. After three reconcile periods without an ACK it is queued again.
   */
  private overdue(node: string, uid: string): boolean {
    const at = this.sentAt.get(`${node}/${uid}`);
    return at !== undefined && Date.now() - at > 3 * this.options.reconcileIntervalMs;
  }

  /** What was sent, by node/uid, so a delete can be built for an object whose record does not exist yet. */
  private readonly sentRefs = new Map<string, { kind: string; apiVersion: string; namespace?: string; name: string }>();

  private send(node: string, obj: DesiredObject, operation: string): void {
    const msg = newMessage({
      source: this.name,
      group: Group.Resource,
      operation,
      resource: `node/${node}/${edgeResourceOf(obj)}`,
      resourceVersion: obj.resourceVersion,
      sync: true,
      content: obj.body,
    });
    this.sentRefs.set(`${node}/${obj.uid}`, { kind: obj.kind, apiVersion: obj.apiVersion, name: obj.name, ...(obj.namespace ? { namespace: obj.namespace } : {}) });
    this.stats.sent++;
    this.ctx?.send(ModuleName.CloudHub, msg).catch((err) => this.log.warn(`cannot queue ${msg.route.resource}: ${errorMessage(err)}`, { code: errorCode(err) }));
  }

  private sendDelete(node: string, uid: string, ref: { kind: string; apiVersion: string; namespace?: string; name: string }): void {
    const msg = newMessage({
      source: this.name,
      group: Group.Resource,
      operation: Operation.Delete,
      resource: `node/${node}/${edgeResourceOf(ref)}`,
      sync: true,
      content: { apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, uid, ...(ref.namespace ? { namespace: ref.namespace } : {}) } },
    });
    this.stats.deletes++;
    this.ctx?.send(ModuleName.CloudHub, msg).catch((err) => this.log.warn(`cannot queue delete ${msg.route.resource}: ${errorMessage(err)}`, { code: errorCode(err) }));
  }

  /** AckRecorder: CloudHub calls this for each ACKed message. */
  recordAck(ack: AckedObject, message: Message): void {
    if (message.route.source !== this.name) return;
    const body = message.content as { apiVersion?: string; kind?: string; metadata?: { uid?: string; name?: string; namespace?: string } } | null;
    const uid = body?.metadata?.uid;
    if (!uid || !body.kind || !body.metadata?.name) return;
    const write: RecordWrite = {
      node: ack.node,
      uid,
      kind: body.kind,
      apiVersion: body.apiVersion ?? 'v1',
      name: body.metadata.name,
      ...(body.metadata.namespace ? { namespace: body.metadata.namespace } : {}),
      rv: ack.operation === Operation.Delete ? null : (ack.resourceVersion ?? null),
    };
    if (ack.operation === Operation.Delete) {
      this.sent.get(ack.node)?.delete(uid);
      this.sentAt.delete(`${ack.node}/${uid}`);
      this.sentRefs.delete(`${ack.node}/${uid}`);
      this.source?.onDeleteAcked?.(ack.node, { kind: write.kind, name: write.name, uid, ...(write.namespace ? { namespace: write.namespace } : {}) });
    } else if (write.rv === null) {
      return;
    } else if (this.sent.get(ack.node)?.get(uid) === write.rv) {
      // Delivered: from now on the record (being written) is what counts.
      this.sent.get(ack.node)!.delete(uid);
      this.sentAt.delete(`${ack.node}/${uid}`);
    }
    this.queueWrite(write);
  }

  private queueWrite(w: RecordWrite): void {
    void this.recordWriter.write(`${w.node}/${w.uid}`, w);
  }

  private async writeWithRetries(w: RecordWrite): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.writeRecord(w);
        this.stats.recordWrites++;
        return;
      } catch (err) {
        this.stats.recordWriteErrors++;
        if (attempt >= 5) {
          // The periodic reconcile resends and the next ACK tries again: nothing is lost, only delayed.
          this.log.warn(`cannot record ACK of ${w.kind} ${w.name} on ${w.node}: ${errorMessage(err)}`, { code: 'LEDGE_ERR_SYNC_RECORD', status: httpStatus(err) });
          return;
        }
        await sleep(100 * 2 ** attempt);
      }
    }
  }

  private api(w: { namespace?: string }) {
    const group = SYNC_GROUP;
    const version = SYNC_VERSION;
    const o = this.objects;
    if (w.namespace) {
      const namespace = w.namespace;
      const plural = OBJECT_SYNC_PLURAL;
      return {
        get: (name: string) => o.getNamespacedCustomObject({ group, version, namespace, plural, name }) as Promise<ObjectSync>,
        create: (body: ObjectSync) => o.createNamespacedCustomObject({ group, version, namespace, plural, body }) as Promise<ObjectSync>,
        replaceStatus: (name: string, body: ObjectSync) => o.replaceNamespacedCustomObjectStatus({ group, version, namespace, plural, name, body }) as Promise<ObjectSync>,
        delete: (name: string) => o.deleteNamespacedCustomObject({ group, version, namespace, plural, name }) as Promise<unknown>,
      };
    }
    const plural = CLUSTER_OBJECT_SYNC_PLURAL;
    return {
      get: (name: string) => o.getClusterCustomObject({ group, version, plural, name }) as Promise<ObjectSync>,
      create: (body: ObjectSync) => o.createClusterCustomObject({ group, version, plural, body }) as Promise<ObjectSync>,
      replaceStatus: (name: string, body: ObjectSync) => o.replaceClusterCustomObjectStatus({ group, version, plural, name, body }) as Promise<ObjectSync>,
      delete: (name: string) => o.deleteClusterCustomObject({ group, version, plural, name }) as Promise<unknown>,
    };
  }

  private async writeRecord(w: RecordWrite): Promise<void> {
    const api = this.api(w);
    const name = objectSyncName(w.node, w.uid);
    if (w.rv === null) {
      try {
        await api.delete(name);
      } catch (err) {
        if (httpStatus(err) !== 404) throw err;
      }
      this.records.get(w.node)?.delete(w.uid);
      return;
    }
    let rec = this.records.get(w.node)?.get(w.uid);
    const current = rec?.status?.objectResourceVersion;
    if (current !== undefined && compareResourceVersions(w.rv, current) <= 0) return;
    if (!rec?.metadata.resourceVersion) {
      const body: ObjectSync = {
        apiVersion: `${SYNC_GROUP}/${SYNC_VERSION}`,
        kind: w.namespace ? 'ObjectSync' : 'ClusterObjectSync',
        metadata: { name, labels: { [NODE_LABEL]: w.node }, ...(w.namespace ? { namespace: w.namespace } : {}) },
        spec: { objectAPIVersion: w.apiVersion, objectKind: w.kind, objectName: w.name },
      };
      try {
        rec = await api.create(body);
      } catch (err) {
        if (httpStatus(err) !== 409) throw err;
        rec = await api.get(name);
      }
    }
    try {
      const updated = await api.replaceStatus(name, { ...rec!, status: { objectResourceVersion: w.rv } });
      this.cacheRecord(updated);
    } catch (err) {
      const status = httpStatus(err);
      if (status === 409 || status === 404) {
        // Another replica (or a GC) changed it: reread and let the retry loop try again.
        if (status === 409) this.cacheRecord(await api.get(name));
        else this.records.get(w.node)?.delete(w.uid);
      }
      throw err;
    }
  }

  private periodic(): void {
    for (const node of this.options.connectedNodes()) {
      const r = this.reconcileNode(node);
      if (r.sent || r.deleted) this.log.info(`reconcile repaired node ${node}: ${r.sent} sent, ${r.deleted} deleted`, { node, ...r });
    }
    if (this.options.isLeader()) void this.gc();
  }

  /** Nodes seen missing at the previous GC pass: a node must be missing twice in a row. */
  private missingNodes = new Set<string>();

  /**
   * Leader only: deletes records of nodes that no longer exist. A node connected here,
   * or missing only once (it may be registering right now), keeps its records.
   */
  private async gc(): Promise<void> {
    if (!this.source) return;
    const missing = new Set<string>();
    for (const [node, recs] of this.records) {
      if (this.source.nodeExists(node) !== false || this.options.isConnected(node)) continue;
      missing.add(node);
      if (!this.missingNodes.has(node)) continue;
      for (const [uid, rec] of recs) {
        this.queueWrite({ node, uid, kind: rec.spec.objectKind, apiVersion: rec.spec.objectAPIVersion, name: rec.spec.objectName, rv: null, ...(rec.metadata.namespace ? { namespace: rec.metadata.namespace } : {}) });
        this.stats.gc++;
      }
    }
    this.missingNodes = missing;
  }
}
