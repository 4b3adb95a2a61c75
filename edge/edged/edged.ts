/**
 * @module
 * Edged: runs the pods the node holds. It reads them from MetaManager's store (`MetaView`),
 * online or offline, so after a reboot the node runs what it was given before the cloud is back;
 * it keeps one {@link PodWorker} per pod (the kubelet rules) on the pod's runtime, and reports
 * each pod's status upstream through EdgeHub's outbox when it changes (and on a slow resync), so
 * reports made offline arrive, in order, when the link returns.
 *
 * - A pod picks its runtime with `runtimeClassName` (`process` or `container`); without one it
 *   runs on the node's default. An unknown class is reported in the pod's status, never guessed.
 * - A pod's delete is answered (so ACKed, so completed in the API) once the pod stopped: the
 *   store listener returns the termination, bounded by `deleteAckWaitMs`.
 * - Past `maxPods` a new pod is rejected as a kubelet does (phase Failed, reason OutOfpods).
 * - What the runtimes hold that no stored pod owns (a pod deleted while EdgeCore was down) is
 *   stopped and removed at start.
 */
import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { join } from 'node:path';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import { sleep } from '../../shared/runtime/index.js';
import { podReferences } from '../../shared/references/index.js';
import { ErrorCode, errorCode, errorMessage, hasCode } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { Group, ModuleName, Operation, ResourceType, buildResource, newMessage, parseResource, type ErrorContent } from '../../shared/protocol/index.js';
import type { MetaChange, MetaView } from '../metamanager/index.js';
import type { ConfigLookup, KeyValueObject } from './env.js';
import { defaultEdgedOptions } from './options.js';
import { PodWorker, type PodWorkerSettings } from './pod-worker.js';
import { podPathProblem } from './paths.js';
import { hostIPv4 } from './process-runtime.js';
import type { ContainerRuntime, ImageInfo, RuntimeEvent } from './runtime.js';
import { CONFIG_MIRROR_ANNOTATION, mirrorOf, readStaticPods, type StaticPod } from './static-pods.js';

/** Prefix of the worker keys of static pods (cloud pods are keyed by their store resource). */
const STATIC = 'static:';
/** The same mirror pod request is repeated at most this often while the node's store does not show it done, ms. */
const MIRROR_RETRY_MS = 10_000;

/** Options; defaults in `defaultEdgedOptions` (./options.ts). */
export interface EdgedOptions {
  nodeName: string;
  dataDir: string;
  meta: MetaView;
  /** The runtimes this node offers, by name (`process`, `container`). */
  runtimes: ContainerRuntime[];
  defaultRuntime?: string;
  maxPods?: number;
  terminationGracePeriodSeconds?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  backoffResetMs?: number;
  containerLogMaxBytes?: number;
  resyncMs?: number;
  statusResyncMs?: number;
  shutdownGraceSeconds?: number;
  /** Longest a pod's delete waits for the pod to stop before it is answered anyway, ms. Default 25000 (under EdgeHub's 30 s handle timeout). */
  deleteAckWaitMs?: number;
  /** Variables added to every container (the MetaServer's address and the pod's token). */
  podEnv?: (pod: V1Pod) => Record<string, string>;
}

function isMirror(pod: V1Pod): boolean {
  return pod.metadata?.annotations?.['kubernetes.io/config.mirror'] !== undefined;
}

export class Edged implements Module {
  readonly name = ModuleName.Edged;
  readonly group = 'edged';
  private readonly opt: Required<Omit<EdgedOptions, 'podEnv' | 'meta' | 'runtimes'>>;
  private readonly runtimes = new Map<string, ContainerRuntime>();
  /** Runtime name → why it cannot be used (unreachable socket), while it cannot. */
  private readonly runtimeDown = new Map<string, string>();
  private readonly versions = new Map<string, string>();
  private readonly eventSubs = new Map<string, () => void>();
  /** Store resource (`ns/pod/name`) → its worker. */
  private readonly workers = new Map<string, PodWorker>();
  /** Pods refused past maxPods, with their status. */
  private readonly rejected = new Map<string, { pod: V1Pod; status: V1PodStatus }>();
  private readonly lastSent = new Map<string, { json: string; at: number }>();
  private readonly dirty = new Set<string>();
  private flushing = false;
  private ctx: ModuleContext | undefined;
  private readonly lookup: ConfigLookup;
  private readonly settings: PodWorkerSettings;
  private hostIP = hostIPv4();
  private images: ImageInfo[] = [];
  private stoppedFlag = false;
  /** Worker key → the static pod it runs. */
  private readonly staticPods = new Map<string, StaticPod>();
  private readonly staticWarned = new Map<string, string>();
  private readonly mirrorSentAt = new Map<string, { what: string; at: number }>();

  constructor(
    private readonly options: EdgedOptions,
    private readonly log: Logger,
  ) {
    const d = defaultEdgedOptions;
    this.opt = {
      nodeName: options.nodeName,
      dataDir: options.dataDir,
      defaultRuntime: options.defaultRuntime ?? d.defaultRuntime,
      maxPods: options.maxPods ?? d.maxPods,
      terminationGracePeriodSeconds: options.terminationGracePeriodSeconds ?? d.terminationGracePeriodSeconds,
      backoffBaseMs: options.backoffBaseMs ?? d.backoffBaseMs,
      backoffMaxMs: options.backoffMaxMs ?? d.backoffMaxMs,
      backoffResetMs: options.backoffResetMs ?? d.backoffResetMs,
      containerLogMaxBytes: options.containerLogMaxBytes ?? d.containerLogMaxBytes,
      resyncMs: options.resyncMs ?? d.resyncMs,
      statusResyncMs: options.statusResyncMs ?? d.statusResyncMs,
      shutdownGraceSeconds: options.shutdownGraceSeconds ?? d.shutdownGraceSeconds,
      deleteAckWaitMs: options.deleteAckWaitMs ?? 25_000,
    };
    for (const r of options.runtimes) this.runtimes.set(r.name, r);
    const meta = options.meta;
    const kv = (resource: string) => meta.get(resource)?.value as KeyValueObject | undefined;
    this.lookup = {
      configMap: (ns, name) => kv(buildResource(ns, ResourceType.ConfigMap, name)),
      secret: (ns, name) => kv(buildResource(ns, ResourceType.Secret, name)),
    };
    this.settings = {
      dataDir: this.opt.dataDir,
      nodeName: this.opt.nodeName,
      terminationGracePeriodSeconds: this.opt.terminationGracePeriodSeconds,
      backoffBaseMs: this.opt.backoffBaseMs,
      backoffMaxMs: this.opt.backoffMaxMs,
      backoffResetMs: this.opt.backoffResetMs,
      containerLogMaxBytes: this.opt.containerLogMaxBytes,
    };
  }

  /** `nodeInfo.containerRuntimeVersion`: the default runtime's version (e.g. `process://ledge`). */
  async runtimeVersion(): Promise<string> {
    const known = this.versions.get(this.opt.defaultRuntime);
    if (known) return known;
    const rt = this.runtimes.get(this.opt.defaultRuntime);
    return rt ? rt.version() : `${this.opt.defaultRuntime}://unknown`;
  }

  /** The images the runtimes hold (node status). */
  heldImages(): ImageInfo[] {
    return this.images;
  }

  /** The worker of a pod (logs, exec), by namespace and name. */
  worker(namespace: string, name: string): PodWorker | undefined {
    return this.workers.get(buildResource(namespace, ResourceType.Pod, name));
  }

  /**
   * The link is back: every pod's status is sent again. While the node was unreachable the control
   * plane marked its pods Ready=False (as kube-controller-manager does); a report "only when it
   * changed" would leave them so until the slow resync.
   */
  reconnected(): void {
    this.lastSent.clear();
    for (const key of this.workers.keys()) this.markDirty(key);
    for (const key of this.rejected.keys()) this.markDirty(key);
  }

  get podCount(): number {
    return this.workers.size;
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    this.ctx = ctx;
    this.stoppedFlag = false;
    const meta = this.options.meta;
    const aborted = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    await Promise.race([meta.whenReady(), aborted]);
    if (signal.aborted) return;
    await this.checkRuntimes();
    // What the runtimes still hold from before a restart, by pod uid.
    const held = new Map<string, { rt: ContainerRuntime; sandboxId: string }[]>();
    for (const rt of this.runtimes.values()) {
      if (this.runtimeDown.has(rt.name)) continue;
      try {
        for (const sb of await rt.listPodSandboxes()) {
          const list = held.get(sb.uid) ?? [];
          list.push({ rt, sandboxId: sb.id });
          held.set(sb.uid, list);
        }
      } catch (err) {
        this.log.warn(`cannot list the ${rt.name} runtime's pods: ${errorMessage(err)}`, { code: ErrorCode.Runtime });
      }
    }
    const unsubscribe = meta.subscribe((change) => this.onChange(change));
    try {
      for (const o of meta.listType(ResourceType.Pod)) this.upsert(o.resource, o.value as V1Pod, held);
      // Left over from pods deleted while EdgeCore was down.
      for (const [uid, list] of held) {
        for (const { rt, sandboxId } of list) {
          this.log.info(`removing pod sandbox ${sandboxId} (pod uid ${uid}) that no stored pod owns`);
          await rt
            .stopPodSandbox(sandboxId)
            .then(() => rt.removePodSandbox(sandboxId))
            .catch((err: unknown) => this.log.warn(`cannot remove sandbox ${sandboxId}: ${errorMessage(err)}`, { code: ErrorCode.Runtime }));
        }
      }
      await this.syncStaticPods();
      this.log.info('edged started', { pods: this.workers.size, runtimes: [...this.runtimes.keys()].join(','), default: this.opt.defaultRuntime });
      // The slow loops: every pod re-examined, runtimes re-checked, images refreshed, statuses resent.
      while (!signal.aborted) {
        // shared/runtime's sleep removes its abort listener when the time is up (one per wait would pile up).
        await sleep(this.opt.resyncMs, signal);
        if (signal.aborted) break;
        await this.checkRuntimes();
        await this.syncStaticPods();
        for (const [key, w] of this.workers) {
          w.kick();
          const sent = this.lastSent.get(key);
          if (!sent || Date.now() - sent.at >= this.opt.statusResyncMs) this.markDirty(key);
        }
        // Refused pods are told again on the slow resync too.
        for (const key of this.rejected.keys()) {
          const sent = this.lastSent.get(key);
          if (!sent || Date.now() - sent.at >= this.opt.statusResyncMs) this.markDirty(key);
        }
      }
    } finally {
      unsubscribe();
      for (const u of this.eventSubs.values()) u();
      this.eventSubs.clear();
      await this.shutdown();
    }
  }

  private async checkRuntimes(): Promise<void> {
    const images: ImageInfo[] = [];
    for (const rt of this.runtimes.values()) {
      try {
        this.versions.set(rt.name, await rt.version());
        // Its events (container exits) once it is reachable: a node without Docker or Podman never polls a missing socket.
        if (!this.eventSubs.has(rt.name))
          this.eventSubs.set(
            rt.name,
            rt.onEvent((e) => this.onRuntimeEvent(e)),
          );
        if (this.runtimeDown.has(rt.name)) {
          this.log.info(`${rt.name} runtime reachable again`);
          this.runtimeDown.delete(rt.name);
          for (const w of this.workers.values()) w.kick();
        }
        images.push(...(await rt.listImages()));
      } catch (err) {
        if (!this.runtimeDown.has(rt.name)) {
          // A warning once a pod needs it; before that (a node without Docker or Podman) one info line.
          const used = [...this.workers.values()].some((w) => (w.pod.spec?.runtimeClassName ?? this.opt.defaultRuntime) === rt.name);
          const line = `${rt.name} runtime unavailable: ${errorMessage(err)}; pods with runtimeClassName: ${rt.name} wait until it is reachable`;
          if (used || rt.name === this.opt.defaultRuntime) this.log.warn(line, { code: errorCode(err) });
          else this.log.info(line, { code: errorCode(err) });
        }
        this.runtimeDown.set(rt.name, errorMessage(err));
      }
    }
    this.images = images;
  }

  private onRuntimeEvent(e: RuntimeEvent): void {
    if (e.uid) {
      for (const w of this.workers.values()) if (w.uid === e.uid) w.kick();
    } else for (const w of this.workers.values()) w.kick();
  }

  private async shutdown(): Promise<void> {
    this.stoppedFlag = true;
    const stops: Promise<void>[] = [];
    for (const w of this.workers.values()) {
      // Processes cannot outlive EdgeCore usefully (their output pipes end with it): stopped, briefly.
      if ((w.pod.spec?.runtimeClassName ?? this.opt.defaultRuntime) === 'process') stops.push(w.shutdown(this.opt.shutdownGraceSeconds));
      else w.detach();
    }
    await Promise.all(stops);
    await Promise.all([...this.runtimes.values()].map((r) => r.close().catch(() => {})));
  }

  /** Runs what `<data-dir>/manifests` holds (docs/edged.md, "Static pods") and asks for their mirror pods. */
  private async syncStaticPods(): Promise<void> {
    const found = await readStaticPods(join(this.opt.dataDir, 'manifests'), this.opt.nodeName, this.log, this.staticWarned);
    const now = new Map(found.map((s) => [STATIC + buildResource(s.pod.metadata?.namespace, ResourceType.Pod, s.pod.metadata?.name), s]));
    for (const [key, old] of this.staticPods) {
      if (now.has(key)) continue;
      this.staticPods.delete(key);
      this.log.info(`static pod ${key.slice(STATIC.length)} removed from ${old.file}`);
      void this.remove(key);
      void this.sendMirror(Operation.Delete, old);
    }
    for (const [key, s] of now) {
      if (this.staticPods.get(key)?.hash !== s.hash) {
        this.log.info(`static pod ${key.slice(STATIC.length)} ${this.staticPods.has(key) ? 'changed in' : 'from'} ${s.file}`);
        this.staticPods.set(key, s);
        this.upsert(key, s.pod);
      }
      this.ensureMirror(key, s);
    }
  }

  /** Asks the cloud for the static pod's mirror when the node's store shows none (or an outdated one). */
  private ensureMirror(key: string, s: StaticPod): void {
    const stored = this.options.meta.get(key.slice(STATIC.length))?.value as V1Pod | undefined;
    const hash = stored?.metadata?.annotations?.[CONFIG_MIRROR_ANNOTATION];
    if (hash === s.hash) return;
    // An outdated mirror goes first; the new one is asked for at the next pass.
    const operation = hash !== undefined ? Operation.Delete : Operation.Insert;
    const what = `${operation} ${s.hash}`;
    const last = this.mirrorSentAt.get(key);
    // The same request is repeated only after a while (the outbox delivers it; the API may be slow to show it).
    if (last && last.what === what && Date.now() - last.at < MIRROR_RETRY_MS) return;
    this.mirrorSentAt.set(key, { what, at: Date.now() });
    void this.sendMirror(operation, s);
  }

  private async sendMirror(operation: string, s: StaticPod): Promise<void> {
    const md = s.pod.metadata!;
    this.log.info(`asking the cloud to ${operation === Operation.Delete ? 'delete' : 'create'} the mirror pod of static pod ${md.namespace}/${md.name}`);
    const msg = newMessage({
      source: ModuleName.Edged,
      group: Group.Resource,
      operation,
      resource: buildResource(md.namespace, ResourceType.Pod, md.name),
      content: operation === Operation.Delete ? null : (mirrorOf(s) as unknown),
      sync: true,
    });
    try {
      const resp = await this.ctx?.sendSync(ModuleName.EdgeHub, msg, 30_000);
      const err = resp?.content as ErrorContent | null | undefined;
      if (err) this.log.warn(`mirror pod ${md.namespace}/${md.name} not queued: ${err.message}`, { code: err.code });
    } catch (err) {
      if (!this.stoppedFlag) this.log.warn(`mirror pod ${md.namespace}/${md.name} not queued: ${errorMessage(err)}`, { code: errorCode(err) });
    }
  }

  private onChange(change: MetaChange): void | Promise<void> {
    const r = parseResource(change.resource);
    if (r.type === ResourceType.Pod) {
      const staticKey = STATIC + change.resource;
      if (this.staticPods.has(staticKey)) {
        // The mirror of a static pod: once it exists, the pod's status can be written to it.
        if (change.op === 'put') {
          this.lastSent.delete(staticKey);
          this.markDirty(staticKey);
        } else this.mirrorSentAt.delete(staticKey);
        return;
      }
      if (change.op === 'put') {
        this.upsert(change.resource, change.value as V1Pod);
        return;
      }
      return this.remove(change.resource);
    }
    if ((r.type === ResourceType.ConfigMap || r.type === ResourceType.Secret) && r.name) {
      // Volumes of the pods that use it are written again (env is read at each container start).
      for (const w of this.workers.values()) if (w.pod.metadata?.namespace === r.namespace && usesObject(w.pod, r.type, r.name)) w.refreshVolumes();
    }
  }

  private runtimeFor(pod: V1Pod): { runtime?: ContainerRuntime; error?: string } {
    const cls = pod.spec?.runtimeClassName ?? this.opt.defaultRuntime;
    const runtime = this.runtimes.get(cls);
    if (!runtime) return { error: `runtimeClassName "${cls}" is not available on node ${this.opt.nodeName}; this node offers: ${[...this.runtimes.keys()].join(', ') || 'none'}` };
    return { runtime };
  }

  private upsert(resource: string, pod: V1Pod, held?: Map<string, { rt: ContainerRuntime; sandboxId: string }[]>): void {
    if (this.stoppedFlag || !pod?.metadata?.uid) return;
    if (pod.spec?.nodeName && pod.spec.nodeName !== this.opt.nodeName) return;
    if (isMirror(pod)) return;
    // Its names make its directories (edged/pods/<uid>, edged/logs/<ns>_<name>_<uid>/<container>): one plain segment each, whatever the cloud sent.
    const unsafe = podPathProblem(pod);
    if (unsafe) {
      if (this.workers.has(resource)) void this.remove(resource);
      if (!this.rejected.has(resource)) this.log.warn(`pod ${resource} rejected: ${unsafe}`, { code: ErrorCode.PodSpec });
      this.rejected.set(resource, { pod, status: { phase: 'Failed', reason: 'InvalidPodNames', message: unsafe } });
      this.markDirty(resource);
      return;
    }
    const current = this.workers.get(resource);
    if (current && current.uid === pod.metadata.uid) {
      current.update(pod);
      return;
    }
    if (current) {
      // Same name, new pod: the old one stops first.
      void this.remove(resource);
    }
    if (this.workers.size >= this.opt.maxPods) {
      const msg = `Node didn't have enough resource: pods, requested: 1, used: ${this.workers.size}, capacity: ${this.opt.maxPods}`;
      if (!this.rejected.has(resource)) this.log.warn(`pod ${resource} rejected: ${msg}`, { code: ErrorCode.Runtime });
      this.rejected.set(resource, { pod, status: { phase: 'Failed', reason: 'OutOfpods', message: msg } });
      this.markDirty(resource);
      return;
    }
    this.rejected.delete(resource);
    const { runtime, error } = this.runtimeFor(pod);
    // What the runtime still holds of this pod from before a restart is taken over before the
    // worker's first sync (a runtime event may kick it earlier: it must not make a second sandbox).
    const uid = pod.metadata.uid;
    const mine = runtime ? held?.get(uid)?.find((h) => h.rt === runtime) : undefined;
    let adopted: (() => void) | undefined;
    const waits: Promise<void>[] = [];
    // Same name, new pod: it runs once the old one stopped (its ports, its name's directories).
    if (current) waits.push(current.terminate().catch(() => {}));
    if (mine) waits.push(new Promise<void>((r) => (adopted = r)));
    const w = new PodWorker(pod, {
      runtime,
      ...(error ? { runtimeError: error } : {}),
      settings: this.settings,
      lookup: this.lookup,
      log: this.log,
      hostIP: () => this.hostIP,
      extraEnv: (p) => this.options.podEnv?.(p) ?? {},
      onStatus: () => this.markDirty(resource),
      ...(waits.length > 0 ? { after: Promise.all(waits).then(() => {}) } : {}),
    });
    if (!runtime) this.log.warn(`pod ${resource}: ${error}`, { code: ErrorCode.Runtime });
    this.workers.set(resource, w);
    if (mine && runtime) {
      held!.delete(uid);
      void this.adopt(w, runtime, mine.sandboxId).finally(() => adopted?.());
      return;
    }
    this.markDirty(resource);
    w.kick();
  }

  private async adopt(w: PodWorker, rt: ContainerRuntime, sandboxId: string): Promise<void> {
    try {
      const sandboxes = await rt.listPodSandboxes();
      const sb = sandboxes.find((s) => s.id === sandboxId);
      if (sb) w.adopt(sb, await rt.listContainers(sandboxId));
    } catch (err) {
      this.log.warn(`pod ${w.key}: cannot take over its containers: ${errorMessage(err)}`, { code: ErrorCode.Runtime });
    }
    this.markDirty(buildResource(w.pod.metadata?.namespace, ResourceType.Pod, w.pod.metadata?.name));
    w.kick();
  }

  private remove(resource: string): Promise<void> | undefined {
    this.rejected.delete(resource);
    const w = this.workers.get(resource);
    if (!w) return undefined;
    this.workers.delete(resource);
    this.lastSent.delete(resource);
    this.dirty.delete(resource);
    this.log.info(`stopping pod ${w.key}`);
    const done = w.terminate().then(() => {
      this.log.info(`pod ${w.key} stopped and removed`);
      // A pod refused past maxPods may fit now.
      for (const [key, r] of this.rejected) {
        if (this.workers.size >= this.opt.maxPods) break;
        this.upsert(key, r.pod);
      }
    });
    // The delete is answered once the pod stopped, or after deleteAckWaitMs (it keeps stopping).
    return Promise.race([done, new Promise<void>((r) => setTimeout(r, this.opt.deleteAckWaitMs).unref())]);
  }

  private markDirty(resource: string): void {
    this.dirty.add(resource);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => void this.flush());
    }
  }

  /** Sends the statuses that changed, one pod at a time, each once durable in the outbox. */
  private async flush(): Promise<void> {
    try {
      while (this.dirty.size > 0 && this.ctx && !this.stoppedFlag) {
        const resource = this.dirty.values().next().value as string;
        this.dirty.delete(resource);
        const w = this.workers.get(resource);
        const rej = this.rejected.get(resource);
        const status = w ? w.status() : rej?.status;
        if (!status) continue;
        const json = JSON.stringify(status);
        const sent = this.lastSent.get(resource);
        if (sent && sent.json === json && Date.now() - sent.at < this.opt.statusResyncMs) continue;
        const r = parseResource(resource.startsWith(STATIC) ? resource.slice(STATIC.length) : resource);
        const msg = newMessage({
          source: ModuleName.Edged,
          group: Group.Resource,
          operation: Operation.Update,
          resource: buildResource(r.namespace, ResourceType.PodStatus, r.name),
          content: JSON.parse(json) as unknown,
          sync: true,
        });
        try {
          const resp = await this.ctx.sendSync(ModuleName.EdgeHub, msg, 30_000);
          const err = resp.content as ErrorContent | null;
          if (err && hasCode(err, ErrorCode.Storage)) {
            this.log.warn(`pod status of ${resource} not queued: ${err.message}`, { code: err.code });
            setTimeout(() => this.markDirty(resource), 5_000).unref();
            continue;
          }
          this.lastSent.set(resource, { json, at: Date.now() });
        } catch (err) {
          if (!this.stoppedFlag) this.log.warn(`pod status of ${resource} not queued: ${errorMessage(err)}`, { code: errorCode(err) });
          setTimeout(() => this.markDirty(resource), 5_000).unref();
        }
      }
    } finally {
      this.flushing = false;
    }
  }
}

/** Whether the pod uses the configmap or secret (volumes, env, envFrom; shared/references). */
function usesObject(pod: V1Pod, type: string, name: string): boolean {
  const refs = podReferences(pod);
  return type === ResourceType.ConfigMap ? refs.configMaps.has(name) : refs.secrets.has(name);
}

export function createEdged(options: EdgedOptions, log: Logger): Edged {
  return new Edged(options, log);
}
