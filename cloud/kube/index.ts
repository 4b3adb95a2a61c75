/**
 * @module
 * A thin layer over @kubernetes/client-node: loading a kubeconfig, informers that
 * restart after errors (client-node's ListWatch stops on error and relists on 410 by
 * itself), HTTP status of API errors, and turning client-node's typed objects (with
 * Date fields) into the plain JSON that goes on the wire. Everything here works the
 * same against a real cluster and against `ledge apiserver`.
 */
import type * as k8s from '@kubernetes/client-node';
import http from 'node:http';
import https from 'node:https';
import type { Logger } from '../../shared/log/index.js';
import { ErrorCode, errorCode, errorMessage } from '../../shared/errors/index.js';

export type { k8s };

let runtime: typeof k8s | undefined;

/**
 * Loads @kubernetes/client-node. It is imported only when CloudCore has a Kubernetes
 * API to talk to: the library costs ~27 MB of heap, which a hub-only CloudCore need not pay.
 */
export async function loadKube(): Promise<typeof k8s> {
  runtime ??= await import('@kubernetes/client-node');
  return runtime;
}

/** The loaded client-node module; {@link loadKube} must have run. */
export function kube(): typeof k8s {
  if (!runtime) throw new TypeError('@kubernetes/client-node is not loaded: await loadKube() first');
  return runtime;
}

/** Loads a kubeconfig: the given file, else in-cluster service account, else the default ($KUBECONFIG, ~/.kube/config). */
export function loadKubeConfig(file?: string): k8s.KubeConfig {
  const kc = new (kube().KubeConfig)();
  if (file) kc.loadFromFile(file);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  return withKeepAlive(kc);
}

type AgentFactory = (cluster: unknown, options: Record<string, unknown>) => unknown;

/**
 * Makes every API client of `kc` share one keep-alive agent. client-node 1.x builds a
 * new https.Agent per request, so each call opens a fresh TCP+TLS connection: slow, and
 * under load (thousands of status writes) it exhausts the ephemeral ports
 * (EADDRNOTAVAIL). The agent options come from the kubeconfig and do not change
 * between requests, so one agent is correct; headers (tokens) are still per request.
 */
export function withKeepAlive<T extends k8s.KubeConfig>(kc: T): T {
  const target = kc as unknown as { createAgent: AgentFactory };
  const original = target.createAgent.bind(kc);
  let agent: unknown;
  target.createAgent = (cluster, options) => (agent ??= original(cluster, { ...options, keepAlive: true, maxSockets: 64 }));
  return kc;
}

/**
 * Per-call options of a client-node API method that make the call end when `signal` aborts (a
 * timeout, a shutdown): `api.readNamespacedLease({ name, namespace }, withSignal(signal))`. Added
 * after the client's own middleware. {@link kube} must be loaded.
 */
export function withSignal(signal: AbortSignal) {
  return {
    middleware: [
      {
        pre: (ctx: k8s.RequestContext) => {
          ctx.setSignal(signal);
          return new (kube().Observable)(Promise.resolve(ctx));
        },
        post: (ctx: k8s.ResponseContext) => new (kube().Observable)(Promise.resolve(ctx)),
      },
    ],
    middlewareMergeStrategy: 'append' as const,
  };
}

/** HTTP status of a client-node error, if it has one. */
export function httpStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown; statusCode?: unknown } | null)?.code ?? (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

/** A plain JSON object with apiVersion and kind set (informer list items lack them; KubeEdge #6559). */
export function toPlain<T extends k8s.KubernetesObject>(obj: T, apiVersion: string, kind: string): Record<string, unknown> {
  const plain = JSON.parse(JSON.stringify(obj)) as Record<string, unknown>;
  plain.apiVersion = apiVersion;
  plain.kind = kind;
  return plain;
}

export interface WatchedResource<T extends k8s.KubernetesObject> {
  informer: k8s.Informer<T> & k8s.ObjectCache<T>;
  /**
   * Registers an event handler that cannot escape: client-node calls handlers inside a
   * promise nobody awaits, so a throwing handler would be an unhandled rejection. A
   * failure is logged (one line) and the event is skipped; the periodic reconcile repairs.
   */
  on(event: 'add' | 'update' | 'delete', handler: (obj: T) => void): void;
  /** Resolves once a list succeeded and the cache holds it (lists that fail are retried). */
  synced: Promise<void>;
  stop(): Promise<void>;
}

/** Longest a raw list may take, ms (a list of every pod of a big cluster is a few MB). */
const LIST_TIMEOUT_MS = 120_000;

/**
 * GET `path` (a collection) as the server sends it: plain JSON, every field kept, key order
 * and timestamps as the server wrote them. client-node's typed list functions rebuild each
 * item from their models instead: fields their version does not know are dropped and the keys
 * come in another order than the watch's, so an object listed after a restart would not equal
 * the same object received from a watch (the edge would see a spec change that is not one).
 */
export async function listRaw<T extends k8s.KubernetesObject>(
  kc: k8s.KubeConfig,
  path: string,
  query: Record<string, string | undefined> = {},
): Promise<k8s.KubernetesListObject<T>> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
  const opts: https.RequestOptions = { method: 'GET', headers: { accept: 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  const request = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) {
          let message = text.slice(0, 300);
          try {
            message = (JSON.parse(text) as { message?: string }).message ?? message;
          } catch {
            // not a Status: the text itself
          }
          reject(Object.assign(new Error(`list ${path}: HTTP ${res.statusCode}: ${message}`), { code: res.statusCode }));
          return;
        }
        try {
          resolve(JSON.parse(text) as k8s.KubernetesListObject<T>);
        } catch (err) {
          reject(new Error(`list ${path}: the answer is not JSON: ${errorMessage(err)}`));
        }
      });
    });
    req.setTimeout(LIST_TIMEOUT_MS, () => req.destroy(new Error(`list ${path}: no answer within ${LIST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Starts an informer on `path` and keeps it running: on error it logs one line and
 * restarts after a delay (client-node does not restart on its own). Its lists are raw
 * ({@link listRaw}), so listed and watched objects have one form.
 */
export function watchResource<T extends k8s.KubernetesObject>(
  kc: k8s.KubeConfig,
  path: string,
  log: Logger,
  options: { labelSelector?: string; restartDelayMs?: number /** Replaces the raw list (tests). */; list?: k8s.ListPromise<T> } = {},
): WatchedResource<T> {
  const list: k8s.ListPromise<T> = options.list ?? (() => listRaw<T>(kc, path, { labelSelector: options.labelSelector }));
  // client-node's start() resolves even when its list failed (it only reports the error):
  // `synced` resolves once a list succeeded, after the informer filled its cache with it.
  let markSynced!: () => void;
  let failStart!: (err: unknown) => void;
  const synced = new Promise<void>((resolve, reject) => {
    markSynced = resolve;
    failStart = reject;
  });
  synced.catch(() => {}); // the caller's await sees a failure; nobody awaiting is not an unhandled rejection
  const listed: k8s.ListPromise<T> = async () => {
    const result = await list();
    setImmediate(markSynced); // the informer stores the items right after this resolves
    return result;
  };
  const informer = kube().makeInformer<T>(kc, path, listed, options.labelSelector);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  informer.on('error', (err: unknown) => {
    if (stopped) return;
    log.warn(`watch of ${path} failed: ${errorMessage(err)}; restarting`, { code: ErrorCode.Watch });
    timer = setTimeout(() => {
      if (!stopped) informer.start().catch((e: unknown) => log.warn(`restart of watch ${path} failed: ${errorMessage(e)}`, { code: ErrorCode.Watch }));
    }, options.restartDelayMs ?? 2000);
  });
  informer.start().catch(failStart);
  return {
    informer,
    synced,
    on(event, handler) {
      informer.on(event, (obj: T) => {
        try {
          handler(obj);
        } catch (err) {
          log.error(`${event} handler of ${path} failed: ${errorMessage(err)}`, { code: errorCode(err), object: `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}` });
        }
      });
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await informer.stop();
    },
  };
}

export { CoalescingWriter } from './coalescing-writer.js';
export type { CoalescingWriterOptions } from './coalescing-writer.js';
