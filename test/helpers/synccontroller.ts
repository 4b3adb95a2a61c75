/**
 * A SyncController on a Beehive with a stand-in CloudHub module that records what is
 * queued to the nodes; the desired sets and the connected nodes are plain collections the
 * test fills. The records live in the control plane behind `kc`.
 */
import { Beehive, type ModuleContext } from '../../shared/beehive/index.js';
import type { Message } from '../../shared/protocol/index.js';
import type { k8s } from '../../cloud/kube/index.js';
import { SyncController, type DesiredObject, type DesiredSource } from '../../cloud/synccontroller/index.js';
import { captureLog } from './cloud.js';
import { eventually } from './process.js';

export function syncControllerOnBus(kc: k8s.KubeConfig) {
  const log = captureLog();
  const desired = new Map<string, Map<string, DesiredObject>>();
  const connected = new Set<string>();
  const released: { node: string; uid: string }[] = [];
  /** Whether the desired sets count as listed (the test flips it). */
  const listed = { synced: true };
  const source: DesiredSource = {
    desiredFor: (n) => new Map(desired.get(n) ?? []),
    nodeExists: () => true,
    synced: () => listed.synced,
    released: (node, ref) => void released.push({ node, uid: ref.uid }),
  };
  const sync = new SyncController(
    kc,
    { desired: source, reconcileIntervalMs: 600_000, isLeader: () => false, isConnected: (n) => connected.has(n), connectedNodes: () => [...connected] },
    log.logger,
  );
  const queued: Message[] = [];
  const bee = new Beehive({ log: log.logger });
  bee.register(sync);
  bee.register({
    name: 'cloudhub',
    group: 'hub',
    async start(ctx: ModuleContext, signal: AbortSignal) {
      for await (const m of ctx.messages(signal)) queued.push(m);
    },
  });
  bee.start();
  /** Resolves once the SyncController listed its records (fails after 20 s). */
  const loaded = () => eventually(() => log.has(/sync records loaded/), 20_000, 'SyncController started');
  return { sync, bee, desired, connected, released, queued, loaded, log, listed };
}

/** A ConfigMap as a desired object: number `i` (its uid is derived from it), at resourceVersion `rv`. */
export function desiredConfigMap(i: number, rv: string): DesiredObject {
  const name = `cm-${i}`;
  const uid = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
  return {
    uid,
    apiVersion: 'v1',
    kind: 'ConfigMap',
    namespace: 'default',
    name,
    resourceVersion: rv,
    body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default', uid, resourceVersion: rv }, data: { i: String(i) } },
  };
}
