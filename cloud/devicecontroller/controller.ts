/**
 * @module
 * DeviceController: the cluster side of devices (KubeEdge's devicecontroller, on Ledge's sync
 * machinery).
 *
 * - Downstream (a DesiredSource): the Devices with `spec.nodeName` = N, each preceded by its
 *   DeviceModel (same namespace, `spec.deviceModelRef.name`), are part of node N's desired set;
 *   the SyncController sends them with ObjectSync records and ACKs exactly like pods (resources
 *   `<ns>/device/<name>`, `<ns>/devicemodel/<name>`). A Device being deleted leaves the set; a
 *   model change re-announces every node holding a device of that model; a Device moving nodes
 *   changes both nodes. Changes go to the SyncController as `desired-changed` messages (one per
 *   node per microtask), only once the informers listed: before that the sets are unknown and
 *   `desiredFor` throws rather than answer "empty", which would send deletes of every device of a
 *   node that connects while a restarted CloudCore is still listing (see {@link DeviceController.synced}).
 * - Upstream: `update` of `node/<node>/devicestatus` with a DeviceReportBatch. Each report is
 *   first authorized by the NodeAuthorizer (cloud/nodeauthorizer) against the session's node: the
 *   Device exists and is bound to that node (a report for another node's Device is refused,
 *   counted and logged as a violation); then checked (shape, the uid the edge names, the
 *   properties reported); what fails is left out with one log line per node per distinct problem.
 *   The rest is merged into the devices' pending state, and the message is answered null at once — ACKed before the DeviceStatus is written. That is safe across a
 *   CloudCore crash because the edge resends its full twin state on every new session (it marks
 *   every device dirty on reconnect): whatever this replica held unwritten when it died comes
 *   again to the replica the node reconnects to. Reports are refused unACKed (LEDGE_ERR_API: the
 *   edge resends) only while the informers have not listed yet.
 * - DeviceStatus: written by the rate-limited writer (./writer.ts): same name and namespace as the
 *   Device, ownerReference to it (controller: true), `status.twins` merged by propertyName into
 *   the current object (from an informer on devicestatuses, or a fresh read after a conflict),
 *   `state`, `lastOnlineTime`. Deleted when its Device is deleted (the local control plane has no
 *   ownerReference garbage collector), and, after the informers listed, any DeviceStatus whose
 *   owning Device no longer exists.
 * - CRDs: installed at start where missing (./crds.ts), like the SyncController installs its own.
 * Without a Kubernetes API (no kubeconfig) reports are accepted and dropped and the sets are empty.
 */
import { Group, ModuleName, Operation, ResourceType, parseResource, type ErrorContent, type Message } from '../../shared/protocol/index.js';
import { createNodeAuthorizer, sessionOf, type NodeAuthorizer, type NodeAuthorizerOptions } from '../nodeauthorizer/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import type { Logger } from '../../shared/log/index.js';
import {
  ErrorCode,
  errorCode,
  errorContent,
  errorMessage,
  InvalidMessageError,
  KubeApiError,
  NoSuchModuleError,
  StoppedError,
  UnsupportedError,
} from '../../shared/errors/index.js';
import {
  DEVICE_API_VERSION,
  DEVICE_GROUP,
  DEVICE_MODEL_PLURAL,
  DEVICE_PLURAL,
  DEVICE_STATUS_PLURAL,
  DEVICE_VERSION,
  deviceKey,
  type DeviceModel,
  type DeviceModelSpec,
  type DeviceSpec,
  type DeviceStatusObject,
  type Twin,
} from '../../shared/devices/index.js';
import { sleep } from '../../shared/runtime/index.js';
import { kube, httpStatus, toPlain, watchResource, type k8s, type WatchedResource } from '../kube/index.js';
import { desiredChanged, type DesiredObject, type DesiredSource } from '../synccontroller/index.js';
import { DEVICE_STATUS_HAS_STATUS_SUBRESOURCE, crdForClient, deviceCrds } from './crds.js';
import { checkBatch, type ReportProblem } from './reports.js';
import { StatusWriter, type PendingStatus, type StatusWriterStats, type Timers } from './writer.js';
import { defaultDeviceControllerOptions } from './options.js';

/** Options; defaults in `defaultDeviceControllerOptions` (./options.ts). */
export interface DeviceControllerOptions {
  /** Ceiling of DeviceStatus writes per second, all devices together. Default 50. */
  statusWritesPerSecond: number;
  /** Token bucket size. Default 100. */
  statusBurst: number;
  /** Floor the rate falls to when the API server pushes back (429/5xx). Default 5. */
  minStatusWritesPerSecond: number;
  /** DeviceStatus writes in flight at once. Default 8. */
  statusWriteConcurrency: number;
  /** Reports handled per upstream batch. Default 1000. */
  maxReportsPerBatch: number;
  /** Longest twin value, bytes. Default 64 KiB. */
  maxTwinValueBytes: number;
  /** How long the desired sets wait for the informers before counting as empty, ms. Default 60000. */
  syncTimeoutMs: number;
  /** Installs the device CRDs where missing. Default true. */
  installCrds: boolean;
  /** Wall clock, ms. Default Date.now. */
  now: () => number;
  /** The status writer's timers. Default real ones. */
  timers: Timers;
  /**
   * Nodes to re-announce to the SyncController once the informers listed (CloudHub's connected
   * nodes): a node that connected before then was not reconciled (its set was unknown).
   */
  announceNodes?: () => string[];
  /** The node authorizer's options (cloud/nodeauthorizer/options.ts); default: on. */
  authorization?: Partial<NodeAuthorizerOptions>;
}

export interface DeviceControllerStats extends StatusWriterStats {
  /** Devices bound to a node (from the informer). */
  devices: number;
}

type DeviceObject = k8s.KubernetesObject & { spec?: DeviceSpec; status?: Record<string, unknown> };
type ModelObject = k8s.KubernetesObject & { spec?: DeviceModelSpec };
type StatusObject = k8s.KubernetesObject & { spec?: Record<string, unknown>; status?: DeviceStatusObject['status'] };

/** Per node, at most this many distinct problems are remembered (then the memory starts over). */
const MAX_PROBLEMS_PER_NODE = 1000;
/** A problem logged for a node is logged again only after this long. */
const PROBLEM_LOG_INTERVAL_MS = 10 * 60_000;
/** Subjects named in one log line. */
const SUBJECTS_PER_LINE = 10;

/** Codes of the authorization problems (shape problems are LEDGE_ERR_INVALID_MESSAGE). */
const Problem = {
  unknown: { kind: 'no such Device', code: ErrorCode.DeviceUnknown },
  forbidden: { kind: 'forbidden: the Device is not bound to this node', code: ErrorCode.Forbidden },
  uid: { kind: 'for another incarnation of the Device (uid differs)', code: ErrorCode.DeviceUnknown },
  deleting: { kind: 'the Device is being deleted', code: ErrorCode.DeviceUnknown },
  property: { kind: 'property not in the Device', code: ErrorCode.DeviceInvalid },
} as const;

interface NodeProblem extends ReportProblem {
  code: string;
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}

function addTo(index: Map<string, Set<string>>, k: string, v: string): void {
  let s = index.get(k);
  if (!s) index.set(k, (s = new Set()));
  s.add(v);
}

function removeFrom(index: Map<string, Set<string>>, k: string, v: string): void {
  const s = index.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) index.delete(k);
}

/** The controlling owner of an object, if any. */
function controllerOf(o: k8s.KubernetesObject | undefined): k8s.V1OwnerReference | undefined {
  return o?.metadata?.ownerReferences?.find((r) => r.controller === true);
}

function compareRv(a: string | undefined, b: string | undefined): number {
  if (!a || !b) return 0;
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0;
  return 0;
}

export class DeviceController implements Module, DesiredSource {
  readonly name = ModuleName.DeviceController;
  readonly group = Group.Twin;
  private readonly options: DeviceControllerOptions;
  private readonly writer: StatusWriter;
  private objects: k8s.CustomObjectsApi | undefined;
  private devices: WatchedResource<DeviceObject> | undefined;
  private models: WatchedResource<ModelObject> | undefined;
  private statuses: WatchedResource<StatusObject> | undefined;
  private isSynced = false;
  private syncGaveUp = false;
  private readonly startedAt: number;
  private ctx: ModuleContext | undefined;
  /** node → device keys bound to it. */
  private readonly byNode = new Map<string, Set<string>>();
  /** device key → its node. */
  private readonly nodeOf = new Map<string, string>();
  /** `ns/model` → device keys referencing it. */
  private readonly byModel = new Map<string, Set<string>>();
  /** device key → the `ns/model` it references. */
  private readonly modelOf = new Map<string, string>();
  /**
   * DeviceStatuses as this controller last wrote them, until the informer has caught up: the next
   * write of a device builds on the newest of the two (so it does not conflict with its own write).
   */
  private readonly written = new Map<string, StatusObject>();
  private readonly pendingChanges = new Set<string>();
  private flushQueued = false;
  /** Per node: problem key → when it was last logged. */
  private readonly problemsLogged = new Map<string, Map<string, number>>();
  /** What a node may report through its session: every upstream message is checked here first. */
  readonly authorizer: NodeAuthorizer;

  constructor(
    private readonly kc: k8s.KubeConfig | undefined,
    private readonly log: Logger,
    options: Partial<DeviceControllerOptions> = {},
  ) {
    this.options = { ...defaultDeviceControllerOptions, ...options };
    this.startedAt = this.options.now();
    this.writer = new StatusWriter(
      {
        ratePerSecond: this.options.statusWritesPerSecond,
        burst: this.options.statusBurst,
        minRatePerSecond: this.options.minStatusWritesPerSecond,
        concurrency: this.options.statusWriteConcurrency,
        now: this.options.now,
        timers: this.options.timers,
      },
      (key, state, fresh) => this.writeStatus(key, state, fresh),
      log,
    );
    // Without an API the sets are simply empty: nothing to wait for.
    if (!kc) this.isSynced = true;
    this.authorizer = createNodeAuthorizer(
      {
        device: (namespace, name) => {
          const d = this.devices?.informer.get(name, namespace);
          return d ? { nodeName: d.spec?.nodeName || undefined } : undefined;
        },
      },
      log,
      this.options.authorization,
    );
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    this.ctx = ctx;
    // Messages are answered while the informers list (reports: "not handled yet", the edge resends);
    // a failed start ends the loop and is thrown, so Beehive restarts the module.
    const loop = new AbortController();
    const stop = () => loop.abort();
    signal.addEventListener('abort', stop, { once: true });
    let startError: unknown;
    const started = this.kc
      ? this.startApi(loop.signal).catch((err: unknown) => {
          startError = err;
          loop.abort();
        })
      : Promise.resolve();
    try {
      for await (const msg of ctx.messages(loop.signal)) this.dispatch(ctx, msg);
      // Stopping: startApi notices the abort at its next step and creates nothing more.
      if (!signal.aborted) await started;
      if (startError !== undefined && !signal.aborted) throw startError;
    } finally {
      signal.removeEventListener('abort', stop);
      this.authorizer.close();
      await Promise.all([this.devices, this.models, this.statuses].map((w) => w?.stop()));
      if (signal.aborted) this.writer.close();
    }
  }

  /** Installs the device CRDs when missing (they may also be applied from deploy/crds/) and waits until they are served. */
  async ensureCrds(signal?: AbortSignal): Promise<void> {
    const kc = this.kc!;
    const ext = kc.makeApiClient(kube().ApiextensionsV1Api);
    for (const crd of deviceCrds) {
      try {
        await ext.readCustomResourceDefinition({ name: crd.metadata.name });
      } catch (err) {
        if (httpStatus(err) !== 404) throw err;
        await ext.createCustomResourceDefinition({ body: crdForClient(crd) as unknown as k8s.V1CustomResourceDefinition }).catch((e: unknown) => {
          if (httpStatus(e) !== 409) throw e;
        });
        this.log.info(`installed CRD ${crd.metadata.name}`);
      }
    }
    // A real API server serves a new CRD only once it is Established: wait until each lists.
    const objects = this.api();
    for (let i = 0; ; i++) {
      try {
        for (const plural of [DEVICE_MODEL_PLURAL, DEVICE_PLURAL, DEVICE_STATUS_PLURAL]) {
          await objects.listCustomObjectForAllNamespaces({ group: DEVICE_GROUP, version: DEVICE_VERSION, plural, limit: 1 });
        }
        return;
      } catch (err) {
        if (i >= 50 || signal?.aborted) throw err;
        await sleep(200, signal);
      }
    }
  }

  private api(): k8s.CustomObjectsApi {
    this.objects ??= this.kc!.makeApiClient(kube().CustomObjectsApi);
    return this.objects;
  }

  private async startApi(signal: AbortSignal): Promise<void> {
    // A restart (after a failed start) rebuilds the indexes from new informers.
    this.isSynced = false;
    this.byNode.clear();
    this.nodeOf.clear();
    this.byModel.clear();
    this.modelOf.clear();
    this.written.clear();
    if (this.options.installCrds) await this.ensureCrds(signal);
    if (signal.aborted) return;
    const kc = this.kc!;
    const base = `/apis/${DEVICE_GROUP}/${DEVICE_VERSION}`;
    this.devices = watchResource<DeviceObject>(kc, `${base}/${DEVICE_PLURAL}`, this.log);
    this.models = watchResource<ModelObject>(kc, `${base}/${DEVICE_MODEL_PLURAL}`, this.log);
    this.statuses = watchResource<StatusObject>(kc, `${base}/${DEVICE_STATUS_PLURAL}`, this.log);
    this.devices.on('add', (d) => this.deviceChanged(d, false));
    this.devices.on('update', (d) => this.deviceChanged(d, false));
    this.devices.on('delete', (d) => this.deviceChanged(d, true));
    for (const ev of ['add', 'update', 'delete'] as const) this.models.on(ev, (m) => this.modelChanged(m));
    this.statuses.on('add', (s) => this.statusSeen(s));
    this.statuses.on('update', (s) => this.statusSeen(s));
    this.statuses.on('delete', (s) => this.written.delete(deviceKey(s.metadata?.namespace, s.metadata?.name ?? '')));
    const aborted = new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    await Promise.race([Promise.all([this.devices.synced, this.models.synced, this.statuses.synced]), aborted]);
    if (signal.aborted) return;
    this.isSynced = true;
    this.log.info('device controller watching', {
      devices: this.devices.informer.list().length,
      deviceModels: this.models.informer.list().length,
      deviceStatuses: this.statuses.informer.list().length,
    });
    // Every node with devices, and every node that connected meanwhile, is reconciled now.
    for (const node of this.byNode.keys()) this.changed(node);
    for (const node of this.options.announceNodes?.() ?? []) this.changed(node);
    this.collectOrphans();
  }

  /**
   * Whether the desired sets are known: the informers listed, or `syncTimeoutMs` passed since the
   * start (then the sets count as empty, with one error line, so pods are not held up forever by
   * devices that cannot be listed — e.g. RBAC without the devices.kubeedge.io rules).
   */
  synced(): boolean {
    if (this.isSynced || this.syncGaveUp) return true;
    if (this.options.now() - this.startedAt < this.options.syncTimeoutMs) return false;
    this.syncGaveUp = true;
    this.log.error(`devices were not listed within ${this.options.syncTimeoutMs} ms: desired sets are sent without devices until they are`, { code: ErrorCode.Watch });
    return true;
  }

  // ------------------------------------------------------------------ desired sets

  private deviceChanged(d: DeviceObject, deleted: boolean): void {
    const ns = d.metadata?.namespace ?? 'default';
    const name = d.metadata?.name ?? '';
    const key = deviceKey(ns, name);
    const node = deleted ? undefined : d.spec?.nodeName || undefined;
    const previous = this.nodeOf.get(key);
    if (previous !== undefined && previous !== node) {
      removeFrom(this.byNode, previous, key);
      this.changed(previous);
    }
    if (node) {
      this.nodeOf.set(key, node);
      addTo(this.byNode, node, key);
      this.changed(node);
    } else {
      this.nodeOf.delete(key);
    }
    const modelName = d.spec?.deviceModelRef?.name;
    const model = !deleted && modelName ? `${ns}/${modelName}` : undefined;
    const previousModel = this.modelOf.get(key);
    if (previousModel !== undefined && previousModel !== model) removeFrom(this.byModel, previousModel, key);
    if (model) {
      this.modelOf.set(key, model);
      addTo(this.byModel, model, key);
    } else {
      this.modelOf.delete(key);
    }
    if (deleted) this.deviceDeleted(key, d.metadata?.uid);
  }

  private modelChanged(m: ModelObject): void {
    const nodes = new Set<string>();
    for (const key of this.byModel.get(`${m.metadata?.namespace ?? 'default'}/${m.metadata?.name}`) ?? []) {
      const n = this.nodeOf.get(key);
      if (n) nodes.add(n);
    }
    for (const n of nodes) this.changed(n);
  }

  /** DesiredSource: the Devices bound to `node`, each after its DeviceModel. Throws while the devices are not listed yet. */
  desiredFor(node: string): Map<string, DesiredObject> {
    const out = new Map<string, DesiredObject>();
    if (!this.kc) return out;
    if (!this.synced()) throw new KubeApiError(`the devices of node ${node} are not known yet: the device informers have not listed`);
    if (!this.isSynced || !this.devices) return out;
    for (const key of this.byNode.get(node) ?? []) {
      const [ns, name] = splitKey(key);
      const d = this.devices.informer.get(name, ns);
      if (!d || d.spec?.nodeName !== node) continue;
      // Being deleted: the node must drop it, so it leaves the set (a delete goes down).
      if (d.metadata?.deletionTimestamp) continue;
      const modelName = d.spec.deviceModelRef?.name;
      const model = modelName ? this.models?.informer.get(modelName, ns) : undefined;
      // Before the device: the node holds the model when the device arrives (its twin needs it).
      if (model && !model.metadata?.deletionTimestamp) add(out, model, 'DeviceModel');
      add(out, d, 'Device');
    }
    return out;
  }

  /**
   * A DeviceModel (the device webhook's lookup): from the informer's cache, else read from the API
   * (before the informers listed, or one created a moment ago). Undefined when it does not exist.
   */
  async model(namespace: string, name: string): Promise<DeviceModel | undefined> {
    const cached = this.models?.informer.get(name, namespace);
    // The informer holds the API's objects: a DeviceModel by the CRD's schema.
    if (cached) return cached as unknown as DeviceModel;
    if (!this.kc) return undefined;
    try {
      const read = await this.api().getNamespacedCustomObject({ group: DEVICE_GROUP, version: DEVICE_VERSION, namespace, plural: DEVICE_MODEL_PLURAL, name });
      // A custom object is plain JSON: the DeviceModel the API server holds.
      return read as DeviceModel;
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw err;
    }
  }

  /** The Node objects are the EdgeController's: unknown here. */
  nodeExists(_node: string): boolean | undefined {
    return undefined;
  }

  /** Notes that `node`'s set changed; sent once per node per microtask, and only once the informers listed. */
  private changed(node: string): void {
    this.pendingChanges.add(node);
    if (!this.isSynced || this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flushChanges());
  }

  private flushChanges(): void {
    this.flushQueued = false;
    const nodes = [...this.pendingChanges];
    this.pendingChanges.clear();
    for (const node of nodes) {
      // Never thrown into the informer or a microtask: a change that cannot be told is repaired by the periodic reconcile.
      try {
        this.ctx?.send(ModuleName.SyncController, desiredChanged(this.name, { node, terminating: [] })).catch((err: unknown) => this.notDelivered(node, err));
      } catch (err) {
        this.notDelivered(node, err);
      }
    }
  }

  private notDelivered(node: string, err: unknown): void {
    if (err instanceof NoSuchModuleError || err instanceof StoppedError) return;
    this.log.warn(`desired-set change of node ${node} not delivered to the sync controller: ${errorMessage(err)}`, { code: errorCode(err), node });
  }

  // ------------------------------------------------------------------ upstream

  private dispatch(ctx: ModuleContext, msg: Message): void {
    let reply: unknown;
    try {
      reply = this.handle(msg);
    } catch (err) {
      // A bug, not the edge's fault: answered "not handled" so the edge resends, and logged.
      this.log.error(`upstream ${msg.route.operation} ${msg.route.resource.slice(0, 200)} failed: ${errorMessage(err)}`, { code: errorCode(err) });
      reply = { code: ErrorCode.Api, message: `not handled: ${errorMessage(err)}` } satisfies ErrorContent;
    }
    if (msg.header.sync) ctx.respond(msg, reply).catch(() => {});
  }

  /** The reply to one upstream message: null (handled), an error content (rejected), or LEDGE_ERR_API (not handled: resend). */
  private handle(msg: Message): unknown {
    if (msg.route.operation === Operation.Ack) return null;
    const session = sessionOf(msg);
    if (!session) return errorContent(new UnsupportedError(`devicecontroller does not handle resource ${msg.route.resource.slice(0, 100)}`));
    const { node, message } = session;
    const r = parseResource(message.route.resource);
    // This controller handles one message; anything else is refused before it is looked at.
    if (r.type !== ResourceType.DeviceStatus) return errorContent(new UnsupportedError(`devicecontroller does not handle ${r.type.slice(0, 100)}`));
    if (message.route.operation !== Operation.Update)
      return errorContent(new UnsupportedError(`devicecontroller does not handle ${message.route.operation.slice(0, 40)} of devicestatus`));
    if (!this.kc) return null;
    // Not listed yet: the authorizer would refuse every Device as unknown, so the edge resends later instead.
    if (!this.isSynced || !this.devices) return { code: ErrorCode.Api, message: 'not handled: the device informers have not listed yet' } satisfies ErrorContent;
    // The one check point: the node is the session's (CloudHub's routing), never what the reports claim.
    const decision = this.authorizer.authorize(node, message);
    if (!decision.allowed) return decision.error;
    const authProblems: NodeProblem[] = (decision.refusedEntries ?? []).map((e) => ({
      ...(e.violation ? Problem.forbidden : Problem.unknown),
      subject: e.subject,
    }));
    const checked = checkBatch(decision.content ?? message.content, this.options);
    if (!checked) {
      this.reportProblems(node, [{ kind: 'content is not a device report batch', subject: 'the whole message', code: ErrorCode.InvalidMessage }]);
      return errorContent(new InvalidMessageError('devicestatus content must be a DeviceReportBatch: {reports: [...]}'));
    }
    const problems: NodeProblem[] = [...authProblems, ...checked.problems.map((p) => ({ ...p, code: ErrorCode.InvalidMessage }))];
    for (const report of checked.reports) {
      const key = deviceKey(report.namespace, report.name);
      const d = this.devices.informer.get(report.name, report.namespace);
      // Authorized above (bound to this node); what is left is whether the report is for this incarnation, still alive.
      const problem = !d
        ? Problem.unknown
        : report.uid !== undefined && report.uid !== d.metadata?.uid
          ? Problem.uid
          : d.metadata?.deletionTimestamp
            ? Problem.deleting
            : undefined;
      if (problem || !d) {
        problems.push({ ...(problem ?? Problem.unknown), subject: key });
        continue;
      }
      // KubeEdge's rule: only twins of the Device's own properties are kept.
      const names = new Set((d.spec?.properties ?? []).map((p) => p.name));
      const twins: Twin[] = [];
      for (const t of report.twins ?? []) {
        if (names.has(t.propertyName)) twins.push(t);
        else problems.push({ ...Problem.property, subject: `${key}: ${t.propertyName}` });
      }
      if (twins.length === 0 && report.state === undefined && report.lastOnlineTime === undefined) continue;
      this.writer.report(key, {
        uid: d.metadata!.uid!,
        twins,
        ...(report.state !== undefined ? { state: report.state } : {}),
        ...(report.lastOnlineTime !== undefined ? { lastOnlineTime: report.lastOnlineTime } : {}),
      });
    }
    this.reportProblems(node, problems);
    return null;
  }

  /**
   * Logs what a node's reports had wrong: one line per kind of problem, naming its subjects,
   * each (node, problem, subject) at most once per ten minutes — a node repeating the same bad
   * report every second costs one line, a new problem is always seen.
   */
  private reportProblems(node: string, problems: NodeProblem[]): void {
    if (problems.length === 0) return;
    const t = this.options.now();
    let seen = this.problemsLogged.get(node);
    if (!seen) this.problemsLogged.set(node, (seen = new Map()));
    const fresh = new Map<string, { code: string; subjects: string[] }>();
    for (const p of problems) {
      const k = `${p.kind}\u0000${p.subject}`;
      const at = seen.get(k);
      if (at !== undefined && t - at < PROBLEM_LOG_INTERVAL_MS) continue;
      if (seen.size >= MAX_PROBLEMS_PER_NODE) seen.clear();
      seen.set(k, t);
      let g = fresh.get(p.kind);
      if (!g) fresh.set(p.kind, (g = { code: p.code, subjects: [] }));
      g.subjects.push(p.subject);
    }
    for (const [kind, g] of fresh) {
      const more = g.subjects.length - SUBJECTS_PER_LINE;
      this.log.warn(`node ${node}: device reports left out (${kind}): ${g.subjects.slice(0, SUBJECTS_PER_LINE).join(', ')}${more > 0 ? ` (+${more} more)` : ''}`, {
        code: g.code,
        node,
      });
    }
  }

  // ------------------------------------------------------------------ DeviceStatus

  stats(): DeviceControllerStats {
    return { ...this.writer.stats(), devices: this.nodeOf.size };
  }

  /** Resolves once no DeviceStatus write is in flight (tests). */
  idle(): Promise<void> {
    return this.writer.idle();
  }

  private statusSeen(s: StatusObject): void {
    const key = deviceKey(s.metadata?.namespace, s.metadata?.name ?? '');
    const mine = this.written.get(key);
    if (mine && compareRv(s.metadata?.resourceVersion, mine.metadata?.resourceVersion) >= 0) this.written.delete(key);
  }

  /** The DeviceStatus to build on: the informer's, or our own newer write; from the API when `fresh`. */
  private async currentStatus(ns: string, name: string, fresh: boolean): Promise<StatusObject | undefined> {
    const key = deviceKey(ns, name);
    if (fresh) {
      this.written.delete(key);
      return this.readStatus(ns, name);
    }
    const cached = this.statuses?.informer.get(name, ns);
    const mine = this.written.get(key);
    if (!mine) return cached;
    return cached && compareRv(cached.metadata?.resourceVersion, mine.metadata?.resourceVersion) > 0 ? cached : mine;
  }

  private async readStatus(namespace: string, name: string): Promise<StatusObject | undefined> {
    try {
      return (await this.api().getNamespacedCustomObject({ group: DEVICE_GROUP, version: DEVICE_VERSION, namespace, plural: DEVICE_STATUS_PLURAL, name })) as StatusObject;
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw err;
    }
  }

  /** One API write of a device's pending state (the writer's WriteStatus). */
  private async writeStatus(key: string, state: PendingStatus, fresh: boolean): Promise<boolean> {
    const [namespace, name] = splitKey(key);
    const device = this.devices?.informer.get(name, namespace);
    // Gone, re-created (another uid) or going away: nothing to write for these reports.
    if (!device?.metadata?.uid || device.metadata.uid !== state.uid || device.metadata.deletionTimestamp) return false;
    const current = await this.currentStatus(namespace, name, fresh);
    const owner: k8s.V1OwnerReference = { apiVersion: DEVICE_API_VERSION, kind: 'Device', name, uid: device.metadata.uid, controller: true, blockOwnerDeletion: true };
    const api = this.api();
    const target = { group: DEVICE_GROUP, version: DEVICE_VERSION, namespace, plural: DEVICE_STATUS_PLURAL };
    let result: StatusObject;
    if (!current) {
      const body: StatusObject = {
        apiVersion: DEVICE_API_VERSION,
        kind: 'DeviceStatus',
        metadata: { name, namespace, ownerReferences: [owner] },
        spec: {},
        status: mergedStatus(undefined, state),
      };
      // 409 (another replica created it): the writer retries with a fresh read, which then updates it.
      result = (await api.createNamespacedCustomObject({ ...target, body })) as StatusObject;
    } else {
      const controller = controllerOf(current);
      // Left from an earlier Device of this name: its twins are not this one's.
      const stale = controller !== undefined && controller.uid !== owner.uid;
      const status = mergedStatus(stale ? undefined : current.status, state);
      const ownerReferences = [...(current.metadata?.ownerReferences ?? []).filter((r) => r.controller !== true), owner];
      if (!stale && controller && JSON.stringify(status) === JSON.stringify(current.status ?? {})) return false;
      const body: StatusObject = { ...current, apiVersion: DEVICE_API_VERSION, kind: 'DeviceStatus', metadata: { ...current.metadata, ownerReferences }, status };
      result = (await (DEVICE_STATUS_HAS_STATUS_SUBRESOURCE
        ? api.replaceNamespacedCustomObjectStatus({ ...target, name, body })
        : api.replaceNamespacedCustomObject({ ...target, name, body }))) as StatusObject;
    }
    this.written.set(key, result);
    return true;
  }

  /** A Device was deleted: its pending state is dropped, then its DeviceStatus deleted. */
  private deviceDeleted(key: string, uid: string | undefined): void {
    const [namespace, name] = splitKey(key);
    this.writer
      .forget(key)
      .then(() => this.deleteStatus(namespace, name, uid))
      .catch((err: unknown) =>
        this.log.warn(`cannot delete DeviceStatus ${key} of the deleted Device: ${errorMessage(err)}`, { code: ErrorCode.Api, status: httpStatus(err), device: key }),
      );
  }

  /** Deletes the DeviceStatus `namespace/name` if the Device `ownerUid` controls it (never a newer Device's). */
  private async deleteStatus(namespace: string, name: string, ownerUid: string | undefined): Promise<void> {
    this.written.delete(deviceKey(namespace, name));
    const st = this.statuses?.informer.get(name, namespace) ?? (await this.readStatus(namespace, name));
    const controller = controllerOf(st);
    if (!st?.metadata?.uid || controller?.kind !== 'Device' || (ownerUid !== undefined && controller.uid !== ownerUid)) return;
    try {
      await this.api().deleteNamespacedCustomObject({
        group: DEVICE_GROUP,
        version: DEVICE_VERSION,
        namespace,
        plural: DEVICE_STATUS_PLURAL,
        name,
        body: { preconditions: { uid: st.metadata.uid } },
      });
      this.log.debug(`deleted DeviceStatus ${namespace}/${name} of the deleted Device`);
    } catch (err) {
      // Gone already, or replaced by a newer object (the precondition): nothing of ours to delete.
      if (httpStatus(err) !== 404 && httpStatus(err) !== 409) throw err;
    }
  }

  /** After the informers listed: DeviceStatuses whose controlling Device no longer exists are deleted. */
  private collectOrphans(): void {
    for (const st of this.statuses?.informer.list() ?? []) {
      const controller = controllerOf(st);
      if (controller?.kind !== 'Device' || !controller.apiVersion.startsWith(`${DEVICE_GROUP}/`)) continue;
      const ns = st.metadata?.namespace ?? 'default';
      const device = this.devices?.informer.get(controller.name, ns);
      if (device?.metadata?.uid === controller.uid) continue;
      const key = deviceKey(ns, st.metadata?.name ?? '');
      if (this.writer.has(key)) continue;
      this.deleteStatus(ns, st.metadata?.name ?? '', controller.uid).catch((err: unknown) =>
        this.log.warn(`cannot delete orphaned DeviceStatus ${key}: ${errorMessage(err)}`, { code: ErrorCode.Api, status: httpStatus(err), device: key }),
      );
    }
  }
}

/** `current` status with the pending state merged in: twins by propertyName, state and lastOnlineTime when reported. */
export function mergedStatus(current: DeviceStatusObject['status'] | undefined, state: PendingStatus): NonNullable<DeviceStatusObject['status']> {
  const twins = new Map<string, Twin>();
  for (const t of current?.twins ?? []) if (t && typeof t.propertyName === 'string') twins.set(t.propertyName, { ...t });
  for (const t of state.twins.values()) {
    const cur = twins.get(t.propertyName);
    if (!cur) twins.set(t.propertyName, { ...t });
    else {
      if (t.reported) cur.reported = t.reported;
      if (t.observedDesired) cur.observedDesired = t.observedDesired;
    }
  }
  const out: NonNullable<DeviceStatusObject['status']> = { ...current, twins: [...twins.values()] };
  if (state.state !== undefined) out.state = state.state;
  if (state.lastOnlineTime !== undefined) out.lastOnlineTime = state.lastOnlineTime;
  return out;
}

function add(out: Map<string, DesiredObject>, obj: k8s.KubernetesObject, kind: 'Device' | 'DeviceModel'): void {
  const md = obj.metadata!;
  out.set(md.uid!, {
    uid: md.uid!,
    apiVersion: DEVICE_API_VERSION,
    kind,
    namespace: md.namespace!,
    name: md.name!,
    resourceVersion: md.resourceVersion!,
    body: toPlain(obj, DEVICE_API_VERSION, kind),
  });
}
