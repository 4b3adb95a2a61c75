/**
 * @module
 * SyncController: makes what each edge node holds match what the cluster says it
 * should hold, using ObjectSync / ClusterObjectSync records of what each node ACKed.
 *
 * - Change or reconcile: for every object a node should have, the record's ACKed
 *   resourceVersion is compared with the object's; only a newer object is queued to
 *   CloudHub. Records of objects the node should no longer have produce a delete.
 * - ACK: CloudHub reports it over Beehive (an ACK report carrying the ACKed message);
 *   the record's status is set to the ACKed version (never backwards); an ACKed delete
 *   removes the record.
 *
 * Inputs, all over Beehive and so in one FIFO (docs/controllers.md, "Wiring"): CloudHub's
 * ACK reports and session reports, and the EdgeController's "desired set changed"
 * messages. It reads the EdgeController's desired sets and CloudHub's sessions through the
 * functions given to its constructor, and sends to CloudHub over Beehive.
 * - Replicas: every replica sends only to nodes connected to it; the records are what
 *   let another replica take a node over and send only what it lacks.
 * - GC (leader only): records of nodes that no longer exist are deleted.
 */
import { newMessage, compareResourceVersions, Group, ModuleName, Operation, buildResource, type Message } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import { ErrorCode, errorMessage, errorCode } from '../../shared/errors/index.js';
import { sleep } from '../../shared/runtime/index.js';
import { backoff } from '../../shared/backoff/index.js';
import { SessionOperation, type AckReport, type SessionReport } from '../cloudhub/index.js';
import { defaultSyncControllerOptions } from './options.js';
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

/** An object, as far as a node's copy of it is concerned. */
export interface ObjectKey {
  kind: string;
  namespace?: string;
  name: string;
  uid: string;
}

/** What the SyncController reads from the owner of the desired sets (the EdgeController). */
export interface DesiredSource {
  /** Objects `node` should hold, by UID. */
  desiredFor(node: string): Map<string, DesiredObject>;
  /** Whether the Node object exists (for GC); undefined while unknown. */
  nodeExists(node: string): boolean | undefined;
  /**
   * Whether the desired sets are known (the source's informers listed). While false no node is
   * reconciled: a set read half-listed would delete from the node what is merely not listed yet.
   * Once true, the source announces the nodes to reconcile (`desired-changed`). Absent: always known.
   */
  synced?(): boolean;
  /**
   * `node` holds no copy of the object any more: it ACKed its delete, or it never received
   * it (see {@link DesiredChange.terminating}). Graceful pod deletion completes here.
   */
  released?(node: string, ref: ObjectKey): void;
}

/** Operations of the messages the SyncController accepts besides CloudHub's reports. */
export const SyncOperation = {
  /** The desired set of a node changed (content: {@link DesiredChange}). */
  DesiredChanged: 'desired-changed',
} as const;

/** Content of a `desired-changed` message. */
export interface DesiredChange {
  node: string;
  /**
   * Objects of the node being deleted gracefully (pods with a deletionTimestamp). One the
   * node never received (no ACKed version, nothing queued) is released at once.
   */
  terminating: ObjectKey[];
}

/** The message the owner of the desired sets sends when `node`'s set changed. */
export function desiredChanged(source: string, change: DesiredChange): Message<DesiredChange> {
  return newMessage({ source, group: 'sync', operation: SyncOperation.DesiredChanged, resource: `node/${change.node}`, content: change });
}

/** Options; defaults in `defaultSyncControllerOptions` (./options.ts). */
export interface SyncControllerOptions {
  /** The desired sets (the EdgeController). */
  desired: DesiredSource;
  /** Full reconcile of every connected node, ms. Default 30000. */
  reconcileIntervalMs: number;
  /** Whether this replica is the leader (runs GC). */
  isLeader: () => boolean;
  /** Whether CloudHub on this replica has a session with the node. */
  isConnected: (node: string) => boolean;
  connectedNodes: () => string[];
}

/** What the constructor takes: the options, those with a default optional. */
export type SyncControllerInit = Omit<SyncControllerOptions, keyof typeof defaultSyncControllerOptions> & Partial<SyncControllerOptions>;

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

/** Enough of an object to address it on the edge (and build its delete). */
interface ObjectRef {
  kind: string;
  apiVersion: string;
  namespace?: string;
  name: string;
}

/** `version` 'delete' for a delete. */
const DELETE = 'delete';

interface SentEntry {
  version: string;
  /** When it was queued; still unACKed after a few reconcile periods, it is queued again. */
  at: number;
  ref: ObjectRef;
  /** ACKed, its record write in progress: kept until the record (or its removal) is in the cache. */
  acked?: boolean;
}

function refOf(o: DesiredObject): ObjectRef {
  return { kind: o.kind, apiVersion: o.apiVersion, name: o.name, ...(o.namespace ? { namespace: o.namespace } : {}) };
}

/** The edge resource string of an object (`namespace/type/name`). */
export function edgeResourceOf(o: { kind: string; namespace?: string; name: string }): string {
  return buildResource(o.namespace, o.kind.toLowerCase(), o.name);
}

export class SyncController implements Module {
  readonly name = ModuleName.SyncController;
  readonly group = 'sync';
  private ctx: ModuleContext | undefined;
  /** node → uid → record (from informers and our own writes). */
  private readonly records = new Map<string, Map<string, ObjectSync>>();
  /**
   * node → uid → what was queued to CloudHub in the node's current session and whose ACK
   * is not recorded yet. An entry lives from the send until the record write of its ACK
   * completed, or until the session ends (disconnect, reconnect): so it is bounded by
   * what connected nodes still await. Kept while the ACK's record is being written, so an
   * object deleted in that window still gets its delete (and a delete is not sent twice).
   */
  private readonly sent = new Map<string, Map<string, SentEntry>>();
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

  private readonly options: SyncControllerOptions;
  private readonly source: DesiredSource;

  constructor(
    private readonly kc: k8s.KubeConfig,
    init: SyncControllerInit,
    private readonly log: Logger,
  ) {
    this.options = { ...defaultSyncControllerOptions, ...init };
    this.source = this.options.desired;
    this.objects = kc.makeApiClient(kube().CustomObjectsApi);
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
    const ns = watchResource<ObjectSync>(this.kc, `${base}/${OBJECT_SYNC_PLURAL}`, this.log);
    const cluster = watchResource<ObjectSync>(this.kc, `${base}/${CLUSTER_OBJECT_SYNC_PLURAL}`, this.log);
    this.watches = [ns, cluster];
    let timer: NodeJS.Timeout | undefined;
    try {
      for (const w of this.watches) {
        w.on('add', (o) => this.cacheRecord(o));
        w.on('update', (o) => this.cacheRecord(o));
        w.on('delete', (o) => this.uncacheRecord(o));
      }
      await Promise.all(this.watches.map((w) => w.synced));
      this.log.info('sync records loaded', { records: [...this.records.values()].reduce((n, m) => n + m.size, 0) });
      timer = setInterval(() => this.periodic(), this.options.reconcileIntervalMs);
      // Everything that drives this module arrives here, in order, once the records are loaded.
      for await (const msg of ctx.messages(signal)) this.handle(msg);
    } finally {
      // Also when start fails: the watches stop before Beehive restarts the module.
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
    this.forgetRecord(node, o.metadata.name.slice(node.length + 1));
  }

  /** Drops a cached record; a node without records leaves no entry behind. */
  private forgetRecord(node: string, uid: string): void {
    const m = this.records.get(node);
    if (!m) return;
    m.delete(uid);
    if (m.size === 0) this.records.delete(node);
  }

  /** The version `node` last ACKed for object `uid`: from a record write still in progress, else the record. */
  ackedVersion(node: string, uid: string): string | undefined {
    const pending = this.recordWriter.current(`${node}/${uid}`);
    // A record being deleted: the node ACKed the delete, it holds nothing.
    if (pending) return pending.rv ?? undefined;
    return this.records.get(node)?.get(uid)?.status?.objectResourceVersion;
  }

  /** How many sends are remembered (queued and not ACKed), across nodes: bounded by what connected nodes still await. */
  trackedSends(): number {
    let n = 0;
    for (const m of this.sent.values()) n += m.size;
    return n;
  }

  /** Whether something for `uid` was queued to `node` and not ACKed yet. */
  isPendingFor(node: string, uid: string): boolean {
    const e = this.sent.get(node)?.get(uid);
    return e !== undefined && !e.acked;
  }

  /** One message from the bus: CloudHub's ACK and session reports, the EdgeController's desired-set changes. */
  private handle(msg: Message): void {
    try {
      switch (msg.route.operation) {
        case Operation.Ack:
          this.ackReceived(msg.content as AckReport);
          break;
        case SessionOperation.Connected:
          this.nodeConnected((msg.content as SessionReport).node);
          break;
        case SessionOperation.Disconnected:
          this.nodeDisconnected((msg.content as SessionReport).node);
          break;
        case SyncOperation.DesiredChanged:
          this.desiredChanged(msg.content as DesiredChange);
          break;
        default:
          this.log.debug(`message ignored: ${msg.route.operation} ${msg.route.resource}`);
      }
    } catch (err) {
      // The periodic reconcile repairs whatever this message would have done.
      this.log.error(`${msg.route.operation} ${msg.route.resource} failed: ${errorMessage(err)}`, { code: errorCode(err) });
    }
  }

  /** The desired set of a node changed: send what it lacks; release terminating objects it never received. */
  desiredChanged(change: DesiredChange): void {
    this.reconcileNode(change.node);
    for (const t of change.terminating) {
      if (this.ackedVersion(change.node, t.uid) === undefined && !this.isPendingFor(change.node, t.uid)) this.source.released?.(change.node, t);
    }
  }

  /** A node connected to this replica: forget what was queued for a previous session and reconcile. */
  nodeConnected(node: string): void {
    this.forgetSent(node);
    if (this.source.synced?.() === false) {
      this.log.info(`node ${node} connected: reconciled once the controllers have listed their objects`, { node });
      return;
    }
    const r = this.reconcileNode(node);
    this.log.info(`node ${node} connected: ${r.sent} objects to send, ${r.deleted} to delete, ${r.upToDate} already up to date`, { node, ...r });
  }

  nodeDisconnected(node: string): void {
    this.forgetSent(node);
  }

  private forgetSent(node: string): void {
    this.sent.delete(node);
  }

  /** Queues to CloudHub whatever `node` lacks, per the records. Only for nodes connected here. */
  reconcileNode(node: string): ReconcileResult {
    const result = { sent: 0, upToDate: 0, deleted: 0 };
    if (!this.options.isConnected(node)) return result;
    // Not listed yet: nothing is sent or deleted (the source announces the node once it listed).
    if (this.source.synced?.() === false) return result;
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
      const prev = sent.get(obj.uid);
      if (prev?.version === obj.resourceVersion && !this.overdue(prev)) continue;
      this.send(node, obj, acked === undefined && !recs?.has(obj.uid) ? Operation.Insert : Operation.Update);
      sent.set(obj.uid, { version: obj.resourceVersion, at: Date.now(), ref: refOf(obj) });
      result.sent++;
    }
    // Records (or unACKed sends) of objects the node should no longer hold.
    const stale = new Map<string, ObjectRef>();
    for (const [uid, rec] of recs ?? []) {
      if (!desired.has(uid))
        stale.set(uid, {
          kind: rec.spec.objectKind,
          apiVersion: rec.spec.objectAPIVersion,
          name: rec.spec.objectName,
          ...(rec.metadata.namespace ? { namespace: rec.metadata.namespace } : {}),
        });
    }
    // An object sent but not ACKed has no record yet: its delete is built from what was sent.
    for (const [uid, e] of sent) {
      if (e.version !== DELETE && !desired.has(uid) && !stale.has(uid)) stale.set(uid, e.ref);
    }
    for (const [uid, ref] of stale) {
      const prev = sent.get(uid);
      if (prev?.version === DELETE && !this.overdue(prev)) continue;
      this.sendDelete(node, uid, ref);
      sent.set(uid, { version: DELETE, at: Date.now(), ref });
      result.deleted++;
    }
    return result;
  }

  /**
   * CloudHub retries a queued message until it is ACKed, so "sent" normally suffices; but a
   * message CloudHub had to drop (its per-node queue was full) would otherwise wait for the
   * node's next reconnect. After three reconcile periods without an ACK it is queued again.
   */
  private overdue(e: SentEntry): boolean {
    return Date.now() - e.at > 3 * this.options.reconcileIntervalMs;
  }

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
    this.stats.sent++;
    this.ctx?.send(ModuleName.CloudHub, msg).catch((err) => this.log.warn(`cannot queue ${msg.route.resource}: ${errorMessage(err)}`, { code: errorCode(err) }));
  }

  private sendDelete(node: string, uid: string, ref: ObjectRef): void {
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

  /** CloudHub's ACK report of one of our messages: the node applied it (or rejected it: then nothing is recorded). */
  ackReceived(report: AckReport): void {
    const { node, message, error } = report;
    if (error || message.route.source !== this.name) return;
    const body = message.content as { apiVersion?: string; kind?: string; metadata?: { uid?: string; name?: string; namespace?: string } } | null;
    const uid = body?.metadata?.uid;
    if (!uid || !body.kind || !body.metadata?.name) return;
    const write: RecordWrite = {
      node,
      uid,
      kind: body.kind,
      apiVersion: body.apiVersion ?? 'v1',
      name: body.metadata.name,
      ...(body.metadata.namespace ? { namespace: body.metadata.namespace } : {}),
      rv: message.route.operation === Operation.Delete ? null : (message.header.resourceVersion ?? null),
    };
    const entry = this.sent.get(node)?.get(uid);
    if (message.route.operation === Operation.Delete) {
      if (entry?.version === DELETE) entry.acked = true;
      this.source.released?.(node, { kind: write.kind, name: write.name, uid, ...(write.namespace ? { namespace: write.namespace } : {}) });
    } else if (write.rv === null) {
      return;
    } else if (entry?.version === write.rv) {
      // Delivered: once its record is written, the record is what counts.
      entry.acked = true;
    }
    this.queueWrite(write);
  }

  private queueWrite(w: RecordWrite): void {
    void this.recordWriter.write(`${w.node}/${w.uid}`, w);
  }

  private async writeWithRetries(w: RecordWrite): Promise<void> {
    // Five retries, 100 ms doubling (100 … 1600 ms).
    const retry = backoff({ baseMs: 100, maxMs: 1600 });
    for (;;) {
      try {
        await this.writeRecord(w);
        this.stats.recordWrites++;
        this.settleSent(w, true);
        return;
      } catch (err) {
        this.stats.recordWriteErrors++;
        if (retry.attempts >= 5) {
          // The periodic reconcile resends and the next ACK tries again: nothing is lost, only delayed.
          this.log.warn(`cannot record ACK of ${w.kind} ${w.name} on ${w.node}: ${errorMessage(err)}`, { code: ErrorCode.SyncRecord, status: httpStatus(err) });
          this.settleSent(w, false);
          return;
        }
        await sleep(retry.next());
      }
    }
  }

  /**
   * The record write of an ACK finished: the send it confirmed is forgotten (the record now
   * says it). If the write failed for good, the send counts as unACKed again, so the
   * overdue resend brings another ACK and another write.
   */
  private settleSent(w: RecordWrite, written: boolean): void {
    const sent = this.sent.get(w.node);
    const e = sent?.get(w.uid);
    if (!e?.acked || e.version !== (w.rv ?? DELETE)) return;
    if (written) sent!.delete(w.uid);
    else e.acked = false;
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
      this.forgetRecord(w.node, w.uid);
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
        else this.forgetRecord(w.node, w.uid);
      }
      throw err;
    }
  }

  private periodic(): void {
    // A timer callback: whatever fails is logged here, never thrown out of the timer.
    for (const node of this.options.connectedNodes()) {
      try {
        const r = this.reconcileNode(node);
        if (r.sent || r.deleted) this.log.info(`reconcile repaired node ${node}: ${r.sent} sent, ${r.deleted} deleted`, { node, ...r });
      } catch (err) {
        this.log.error(`reconcile of node ${node} failed: ${errorMessage(err)}`, { node, code: errorCode(err) });
      }
    }
    if (this.options.isLeader()) this.gc().catch((err: unknown) => this.log.error(`sync record GC failed: ${errorMessage(err)}`, { code: errorCode(err) }));
  }

  /** Nodes seen missing at the previous GC pass: a node must be missing twice in a row. */
  private missingNodes = new Set<string>();

  /**
   * Leader only: deletes records of nodes that no longer exist. A node connected here,
   * or missing only once (it may be registering right now), keeps its records. Run by the
   * periodic timer; public so tests can run one pass.
   */
  async gc(): Promise<void> {
    const missing = new Set<string>();
    for (const [node, recs] of this.records) {
      if (this.source.nodeExists(node) !== false || this.options.isConnected(node)) continue;
      missing.add(node);
      if (!this.missingNodes.has(node)) continue;
      for (const [uid, rec] of recs) {
        this.queueWrite({
          node,
          uid,
          kind: rec.spec.objectKind,
          apiVersion: rec.spec.objectAPIVersion,
          name: rec.spec.objectName,
          rv: null,
          ...(rec.metadata.namespace ? { namespace: rec.metadata.namespace } : {}),
        });
        this.stats.gc++;
      }
    }
    this.missingNodes = missing;
  }
}
