/**
 * A link outage does not cost an edge node its pods (docs/design.md, "Link outages do not evict
 * edge pods"), against the real mechanism: the local control plane runs kube-controller-manager's
 * node lifecycle and taint eviction and the DefaultTolerationSeconds admission (short durations);
 * a real CloudCore (in process, over HTTPS through client-node) registers thin simulated edges
 * that report status over a real CloudHub session. Cut the link: the node goes Ready=Unknown and
 * gets the unreachable NoExecute taint; the pod CloudCore protected stays, the one opted out with
 * `ledge.io/evict-on-unreachable: "true"` is evicted. And an eviction already scheduled while
 * CloudCore was down is cancelled once CloudCore is back.
 * Plus the pure planning of the toleration patch.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import jsonpatch from 'fast-json-patch';
import type * as k8s from '@kubernetes/client-node';
import { startCloudCore, type CloudCore } from '../../cloud/main.js';
import { cloudConfigSpec } from '../../cloud/config.js';
import { loadConfig } from '../../shared/config/index.js';
import { newMessage } from '../../shared/protocol/index.js';
import { kube } from '../../cloud/kube/index.js';
import { protectionPlan, EVICTION_PROTECTION_ANNOTATION, EVICT_ON_UNREACHABLE_ANNOTATION } from '../../cloud/edgecontroller/tolerations.js';
import { captureLog, ThinEdge, type LogCapture } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';

const UNREACHABLE = 'node.kubernetes.io/unreachable';

const cp = useLocalControlPlane('ledge-eviction-', {
  // Edges report every 300 ms; a grace this much longer keeps a loaded machine from flapping the nodes.
  nodeLeaseTimeoutMs: 4000,
  nodeMonitorPeriodMs: 200,
  // Tainting is not what is tested here: no 10 s between two nodes.
  nodeEvictionRate: 100,
  // The 300 s default would make the test wait five minutes.
  defaultUnreachableTolerationSeconds: 2,
  defaultNotReadyTolerationSeconds: 2,
});

async function cloudCore(log: LogCapture): Promise<CloudCore> {
  const { config } = await loadConfig(cloudConfigSpec, {
    argv: [
      '--port',
      '0',
      '--insecure-plain-websocket',
      '--stream-port',
      '0',
      '--kubeconfig',
      cp.api.kubeconfigPath,
      '--heartbeat-interval-ms',
      '300',
      '--heartbeat-timeout-ms',
      '1200',
      '--reconcile-interval-ms',
      '1000',
    ],
    env: {},
  });
  return startCloudCore(config, log.logger);
}

/** A thin edge on a real CloudHub session, reporting Ready every 300 ms until its link is cut. */
async function simEdge(url: string, node: string) {
  const edge = await ThinEdge.connect(url, node);
  const report = () =>
    edge.send(
      newMessage({
        source: 'edged',
        group: 'resource',
        operation: 'update',
        resource: `default/nodestatus/${node}`,
        sync: true,
        content: { nodeInfo: { operatingSystem: 'linux', architecture: 'x64' }, capacity: { cpu: '1' }, conditions: [{ type: 'Ready', status: 'True', reason: 'EdgeReady' }] },
      }),
    );
  report();
  const timer = setInterval(report, 300);
  return {
    edge,
    cut() {
      clearInterval(timer);
      edge.close();
    },
  };
}

/** A node the test itself keeps Ready (its Lease renewed), so the zone is never fully disrupted. */
async function keeper(name: string) {
  const coord = cp.kc.makeApiClient(kube().CoordinationV1Api);
  await cp.core.createNode({ body: { metadata: { name }, status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', lastHeartbeatTime: new Date() }] } } });
  const renew = () =>
    coord
      .replaceNamespacedLease({
        name,
        namespace: 'kube-node-lease',
        body: { metadata: { name, namespace: 'kube-node-lease' }, spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: new (kube().V1MicroTime)() } },
      })
      .catch(() => {});
  await renew();
  const timer = setInterval(() => void renew(), 300);
  return { stop: () => clearInterval(timer) };
}

const pod = (name: string, nodeName: string, extra: { annotations?: Record<string, string>; tolerations?: k8s.V1Toleration[] } = {}): k8s.V1Pod => ({
  metadata: { name, namespace: 'default', ...(extra.annotations ? { annotations: extra.annotations } : {}) },
  spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }], ...(extra.tolerations ? { tolerations: extra.tolerations } : {}) },
});

const read = (name: string) => cp.core.readNamespacedPod({ name, namespace: 'default' });
const unreachableToleration = (p: k8s.V1Pod) => {
  const t = p.spec?.tolerations?.find((x) => x.key === UNREACHABLE);
  return t && (JSON.parse(JSON.stringify(t)) as k8s.V1Toleration);
};
const ready = async (node: string) => (await cp.core.readNode({ name: node })).status?.conditions?.find((c) => c.type === 'Ready')?.status;
const noExecuteTainted = async (node: string) => ((await cp.core.readNode({ name: node })).spec?.taints ?? []).some((t) => t.key === UNREACHABLE && t.effect === 'NoExecute');

describe('a link outage does not evict edge pods', () => {
  test('edge link cut for longer than the eviction timeout: the node is Unknown and tainted, the protected pod stays, the opted-out one is evicted', async () => {
    const log = captureLog();
    const cloud = await cloudCore(log);
    const edges: { cut(): void }[] = [];
    try {
      edges.push(await simEdge(cloud.hub.url, 'edge-alive'), await simEdge(cloud.hub.url, 'edge-cut'));
      await eventually(async () => (await ready('edge-cut')) === 'True' && (await ready('edge-alive')) === 'True', 15_000, 'both edge nodes registered and Ready');
      await cp.core.createNamespacedPod({ namespace: 'default', body: pod('protected', 'edge-cut') });
      // Opted out, and allowed 3 s: longer than the protected pod's 2 s default, so its eviction proves the other would have gone.
      await cp.core.createNamespacedPod({
        namespace: 'default',
        body: pod('opted-out', 'edge-cut', {
          annotations: { [EVICT_ON_UNREACHABLE_ANNOTATION]: 'true' },
          tolerations: [{ key: UNREACHABLE, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 3 }],
        }),
      });
      const protectedPod = await eventually(
        async () => {
          const p = await read('protected');
          return p.metadata?.annotations?.[EVICTION_PROTECTION_ANNOTATION] ? p : undefined;
        },
        15_000,
        'CloudCore to protect the pod',
      );
      assert.deepEqual(unreachableToleration(protectedPod), { key: UNREACHABLE, operator: 'Exists', effect: 'NoExecute' }, 'no tolerationSeconds any more');
      assert.equal(unreachableToleration(await read('opted-out'))?.tolerationSeconds, 3, 'opted out: untouched');
      // The API shows the change before CloudCore has read the patch's answer: its log line may come a moment later.
      await eventually(
        () => log.has(/pod default\/protected on edge node edge-cut: removed tolerationSeconds 2 from the toleration of node\.kubernetes\.io\/unreachable:NoExecute/),
        5_000,
        "CloudCore's log line for the pod",
      );

      edges[1]!.cut();
      await eventually(async () => (await ready('edge-cut')) === 'Unknown' && (await noExecuteTainted('edge-cut')), 15_000, 'edge-cut Unknown and tainted unreachable:NoExecute');
      assert.equal(await ready('edge-alive'), 'True');
      const evicted = await eventually(
        async () => {
          const p = await read('opted-out');
          return p.metadata?.deletionTimestamp ? p : undefined;
        },
        15_000,
        'the opted-out pod to be evicted by the taint manager',
      );
      assert.ok(evicted.status?.conditions?.some((c) => c.type === 'DisruptionTarget' && c.reason === 'DeletionByTaintManager'));
      const kept = await read('protected');
      assert.equal(kept.metadata?.deletionTimestamp, undefined, 'the protected pod is not evicted');
      assert.equal(kept.status?.conditions?.some((c) => c.type === 'DisruptionTarget') ?? false, false);

      // The link comes back: Ready, untainted, the pod still there.
      edges.push(await simEdge(cloud.hub.url, 'edge-cut'));
      await eventually(async () => (await ready('edge-cut')) === 'True' && !(await noExecuteTainted('edge-cut')), 15_000, 'edge-cut Ready and untainted again');
      assert.equal((await read('protected')).metadata?.deletionTimestamp, undefined);
    } finally {
      for (const e of edges) e.cut();
      await cloud.stop();
      // Gone, so that the next test's zone is not mostly NotReady (which would stop tainting, as in Kubernetes).
      for (const name of ['edge-alive', 'edge-cut']) await cp.core.deleteNode({ name }).catch(() => {});
    }
  });

  test('an eviction scheduled while CloudCore was down is cancelled when CloudCore, back, removes the time limit', async () => {
    const keep = await keeper('cloud-0');
    const log = captureLog();
    let cloud: CloudCore | undefined = await cloudCore(log);
    let edge = await simEdge(cloud.hub.url, 'edge-down');
    try {
      await eventually(async () => (await ready('edge-down')) === 'True', 15_000, 'edge-down Ready');
      await cloud.stop();
      cloud = undefined;
      edge.cut();
      // Created while no CloudCore runs: nothing protects them yet. 'late' would go 8 s after the taint, 'late-control' (opted out) after 9 s.
      const limit = (s: number): k8s.V1Toleration[] => [{ key: UNREACHABLE, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: s }];
      await cp.core.createNamespacedPod({ namespace: 'default', body: pod('late', 'edge-down', { tolerations: limit(8) }) });
      await cp.core.createNamespacedPod({
        namespace: 'default',
        body: pod('late-control', 'edge-down', { tolerations: limit(9), annotations: { [EVICT_ON_UNREACHABLE_ANNOTATION]: 'true' } }),
      });
      await eventually(() => noExecuteTainted('edge-down'), 15_000, 'edge-down tainted unreachable:NoExecute (its evictions scheduled)');
      cloud = await cloudCore(log);
      await eventually(async () => unreachableToleration(await read('late'))?.tolerationSeconds === undefined, 6_000, 'CloudCore, back, to remove the limit before it runs out');
      // Evicted: deleted gracefully, and since its node never received it, CloudCore completes the deletion.
      await eventually(
        () =>
          read('late-control').then(
            (p) => p.metadata?.deletionTimestamp !== undefined,
            (e: { code?: number }) => e.code === 404,
          ),
        20_000,
        'the control pod evicted (9 s)',
      );
      const late = await read('late').catch(() => undefined);
      assert.ok(late && !late.metadata?.deletionTimestamp, "the 8 s eviction was cancelled: the taint manager's schedule follows an unlimited toleration");
      edge = await simEdge(cloud.hub.url, 'edge-down');
      await eventually(async () => (await ready('edge-down')) === 'True', 15_000, 'edge-down Ready again');
    } finally {
      edge.cut();
      keep.stop();
      await cloud?.stop();
    }
  });
});

describe('CloudCore does not fight users', () => {
  test('a pod is changed once: a limit its user sets afterwards stays', async () => {
    const log = captureLog();
    const cloud = await cloudCore(log);
    const edge = await simEdge(cloud.hub.url, 'edge-user');
    try {
      await eventually(async () => (await ready('edge-user')) === 'True', 15_000, 'edge-user Ready');
      const isProtected = async (name: string) => (await read(name)).metadata?.annotations?.[EVICTION_PROTECTION_ANNOTATION] !== undefined;
      await cp.core.createNamespacedPod({ namespace: 'default', body: pod('mine', 'edge-user') });
      await eventually(() => isProtected('mine'), 15_000, "CloudCore to protect 'mine'");
      const i = (await read('mine')).spec!.tolerations!.findIndex((t) => t.key === UNREACHABLE);
      await cp.core.patchNamespacedPod(
        { name: 'mine', namespace: 'default', body: [{ op: 'add', path: `/spec/tolerations/${i}/tolerationSeconds`, value: 60 }] },
        kube().setHeaderOptions('Content-Type', kube().PatchStrategy.JsonPatch),
      );
      // CloudCore looks at pods one at a time, in the order their events came: once a pod created after
      // the user's change is protected, the change has been looked at.
      await cp.core.createNamespacedPod({ namespace: 'default', body: pod('after-mine', 'edge-user') });
      await eventually(() => isProtected('after-mine'), 15_000, "CloudCore to protect 'after-mine'");
      assert.equal(unreachableToleration(await read('mine'))?.tolerationSeconds, 60, "the user's limit is kept");
      assert.equal(log.lines.filter((l) => /pod default\/mine on edge node/.test(String(l.msg))).length, 1, 'one change, one log line');
    } finally {
      edge.cut();
      await cloud.stop();
    }
  });
});

describe('protectionPlan', () => {
  const edge = (n: string) => n === 'edge-1';
  const base = (over: Partial<k8s.V1Pod> = {}): k8s.V1Pod => ({
    metadata: { name: 'p', namespace: 'default', uid: 'u-1', resourceVersion: '7', ...over.metadata },
    spec: {
      nodeName: 'edge-1',
      containers: [{ name: 'c', image: 'i' }],
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: UNREACHABLE, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
      ...over.spec,
    },
    ...(over.status ? { status: over.status } : {}),
  });
  const apply = (p: k8s.V1Pod) => {
    const plan = protectionPlan(p, edge);
    assert.ok(plan);
    return jsonpatch.applyPatch(JSON.parse(JSON.stringify(p)), plan.ops as jsonpatch.Operation[], true).newDocument as k8s.V1Pod;
  };

  test('the default toleration loses its time limit, the not-ready one keeps it, and the pod records what changed', () => {
    const out = apply(base());
    assert.deepEqual(out.spec!.tolerations, [
      { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      { key: UNREACHABLE, operator: 'Exists', effect: 'NoExecute' },
    ]);
    assert.equal(out.metadata!.annotations![EVICTION_PROTECTION_ANNOTATION], `removed tolerationSeconds 300 from the toleration of ${UNREACHABLE}:NoExecute`);
    assert.equal(protectionPlan(out, edge), undefined, 'changed once, never again');
  });

  test('the patch is guarded: a pod whose tolerations or identity changed meanwhile is not patched', () => {
    const plan = protectionPlan(base(), edge)!;
    const changed = base();
    changed.spec!.tolerations![1]!.tolerationSeconds = 60;
    assert.throws(() => jsonpatch.applyPatch(JSON.parse(JSON.stringify(changed)), plan.ops as jsonpatch.Operation[], true));
    const other = base({ metadata: { name: 'p', uid: 'u-2' } });
    assert.throws(() => jsonpatch.applyPatch(JSON.parse(JSON.stringify(other)), plan.ops as jsonpatch.Operation[], true));
  });

  test('a pod without any toleration of the unreachable taint gets one without a limit; existing annotations are kept', () => {
    const out = apply(
      base({ metadata: { name: 'p', annotations: { a: 'b' } }, spec: { containers: [], tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }] } }),
    );
    assert.deepEqual(out.spec!.tolerations, [
      { key: 'gpu', operator: 'Exists', effect: 'NoSchedule' },
      { key: UNREACHABLE, operator: 'Exists', effect: 'NoExecute' },
    ]);
    assert.equal(out.metadata!.annotations!.a, 'b');
    assert.ok(out.metadata!.annotations![EVICTION_PROTECTION_ANNOTATION]);
  });

  test('left alone: opted out, not on an edge node, being deleted, finished, a mirror pod, or already tolerating forever (first match)', () => {
    assert.equal(protectionPlan(base({ metadata: { name: 'p', annotations: { [EVICT_ON_UNREACHABLE_ANNOTATION]: 'true' } } }), edge), undefined);
    assert.equal(protectionPlan(base({ spec: { containers: [], nodeName: 'cloud-1' } }), edge), undefined);
    assert.equal(protectionPlan(base({ metadata: { name: 'p', deletionTimestamp: new Date() } }), edge), undefined);
    assert.equal(protectionPlan(base({ status: { phase: 'Succeeded' } }), edge), undefined);
    assert.equal(protectionPlan(base({ metadata: { name: 'p', annotations: { 'kubernetes.io/config.mirror': 'x' } } }), edge), undefined);
    assert.equal(
      protectionPlan(
        base({ spec: { containers: [], tolerations: [{ operator: 'Exists' }, { key: UNREACHABLE, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 5 }] } }),
        edge,
      ),
      undefined,
    );
    // …but a limited first match is fixed even when a later toleration is unlimited.
    assert.ok(
      protectionPlan(
        base({ spec: { containers: [], tolerations: [{ key: UNREACHABLE, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 5 }, { operator: 'Exists' }] } }),
        edge,
      ),
    );
  });
});
