/**
 * @module
 * A thin layer over @kubernetes/client-node: loading a kubeconfig, informers that
 * restart after errors (client-node's ListWatch stops on error and relists on 410 by
 * itself), HTTP status of API errors, and turning client-node's typed objects (with
 * Date fields) into the plain JSON that goes on the wire. Everything here works the
 * same against a real cluster and against `ledge apiserver`.
 */
import * as k8s from '@kubernetes/client-node';
import type { Logger } from '../../shared/log/index.js';
import { errorMessage } from '../../shared/errors/index.js';

export { k8s };

/** Loads a kubeconfig: the given file, else in-cluster service account, else the default ($KUBECONFIG, ~/.kube/config). */
export function loadKubeConfig(file?: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (file) kc.loadFromFile(file);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
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
  /** Resolves after the first list completed. */
  synced: Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts an informer on `path` and keeps it running: on error it logs one line and
 * restarts after a delay (client-node does not restart on its own).
 */
export function watchResource<T extends k8s.KubernetesObject>(
  kc: k8s.KubeConfig,
  path: string,
  list: k8s.ListPromise<T>,
  log: Logger,
  options: { labelSelector?: string; restartDelayMs?: number } = {},
): WatchedResource<T> {
  const informer = k8s.makeInformer<T>(kc, path, list, options.labelSelector);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  informer.on('error', (err: unknown) => {
    if (stopped) return;
    log.warn(`watch of ${path} failed: ${errorMessage(err)}; restarting`, { code: 'LEDGE_ERR_WATCH' });
    timer = setTimeout(() => {
      if (!stopped) informer.start().catch((e: unknown) => log.warn(`restart of watch ${path} failed: ${errorMessage(e)}`, { code: 'LEDGE_ERR_WATCH' }));
    }, options.restartDelayMs ?? 2000);
  });
  const synced = informer.start();
  return {
    informer,
    synced,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await informer.stop();
    },
  };
}
