/**
 * The local control plane's kube-controller-manager stand-ins on a fake clock: node lifecycle
 * (grace → Ready=Unknown and the unreachable taints, Ready again → taints gone, Ready=False →
 * not-ready, Lease renewals, startup grace, rate-limited NoExecute tainting, master disruption
 * mode), taint eviction (no toleration → at once, tolerationSeconds → after it, the smallest
 * wins, the first matching toleration counts, no limit → never, removing the limit cancels and
 * raising it does not postpone), pod GC (orphans after the quarantine, terminating pods only on
 * out-of-service nodes), and the DefaultTolerationSeconds admission with the toleration update
 * rules. A real store and REST layer (in a temp dir), no HTTP.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Store, type StoreEvent } from '../../apiserver/store.js';
import { Registry } from '../../apiserver/registry.js';
import { Rest, type AdmissionOptions } from '../../apiserver/rest.js';
import { ApiError } from '../../apiserver/errors.js';
import { NodeControllers, type NodeControllersOptions } from '../../apiserver/nodelifecycle.js';
import { defaultApiServerOptions as d } from '../../apiserver/options.js';
import type { Clock } from '../../apiserver/timerqueue.js';
import type { KObject } from '../../apiserver/types.js';
import { captureLog } from '../helpers/cloud.js';
import { tempDir } from '../helpers/files.js';

type R = Record<string, unknown>;
type Cond = { type: string; status: string; reason?: string; message?: string; lastHeartbeatTime?: string; lastTransitionTime?: string };
type Tol = { key?: string; operator?: string; value?: string; effect?: string; tolerationSeconds?: number };
type Taint = { key: string; value?: string; effect: string; timeAdded?: string };

/** Virtual time: timers fire only when a test advances it, in deadline order. */
class FakeClock implements Clock {
  t = 1_000;
  private readonly wall0 = Date.parse('2030-01-01T00:00:00Z');
  private timers: { at: number; seq: number; fn: () => void }[] = [];
  private seq = 0;
  now(): number {
    return this.t;
  }
  wallNow(): number {
    return this.wall0 + this.t;
  }
  setTimer(fn: () => void, ms: number): () => void {
    const e = { at: this.t + Math.max(0, ms), seq: ++this.seq, fn };
    this.timers.push(e);
    return () => {
      this.timers = this.timers.filter((x) => x !== e);
    };
  }
  /** Moves to now + ms, firing every timer due on the way and letting what it started finish. */
  async advance(ms: number, settle: () => Promise<void>): Promise<void> {
    const target = this.t + ms;
    await settle();
    for (;;) {
      const due = this.timers.filter((x) => x.at <= target).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
      await settle();
    }
    this.t = target;
    await settle();
  }
}

const defaults: NodeControllersOptions = {
  nodeMonitorPeriodMs: d.nodeMonitorPeriodMs,
  nodeMonitorGracePeriodMs: d.nodeLeaseTimeoutMs,
  nodeStartupGracePeriodMs: d.nodeStartupGracePeriodMs,
  nodeEvictionRate: d.nodeEvictionRate,
  secondaryNodeEvictionRate: d.secondaryNodeEvictionRate,
  largeClusterSizeThreshold: d.largeClusterSizeThreshold,
  unhealthyZoneThreshold: d.unhealthyZoneThreshold,
  podGcPeriodMs: d.podGcPeriodMs,
  podGcQuarantineMs: d.podGcQuarantineMs,
  terminatedPodGcThreshold: d.terminatedPodGcThreshold,
};

async function harness(options: Partial<NodeControllersOptions> = {}, admission?: AdmissionOptions) {
  const dir = tempDir('ledge-nodelifecycle-');
  const log = captureLog();
  const store = await Store.open({ dataDir: dir.path, log: log.logger, fsync: false });
  const registry = new Registry();
  const rest = new Rest(store, registry, log.logger, admission);
  await rest.bootstrap();
  const clock = new FakeClock();
  const nc = new NodeControllers({ rest, log: log.logger, clock, options: { ...defaults, ...options } });
  const T = { pods: registry.lookup('', 'v1', 'pods')!, nodes: registry.lookup('', 'v1', 'nodes')!, leases: registry.lookup('coordination.k8s.io', 'v1', 'leases')! };
  const iso = () => new Date(clock.wallNow()).toISOString();
  const node = (name: string) => store.get(T.nodes.storageKey, '', name)?.obj as (KObject & { spec?: { taints?: Taint[] }; status?: { conditions?: Cond[] } }) | undefined;
  const pod = (name: string) => store.get(T.pods.storageKey, 'default', name)?.obj as (KObject & { spec: { tolerations?: Tol[] }; status?: R }) | undefined;
  const h = {
    rest,
    store,
    clock,
    nc,
    log,
    T,
    node,
    pod,
    condition: (name: string, type = 'Ready') => node(name)?.status?.conditions?.find((c) => c.type === type),
    taints: (name: string) => (node(name)?.spec?.taints ?? []).map((t) => `${t.key}:${t.effect}`).sort(),
    settle: () => nc.idle(),
    async addNode(name: string, ready: string | null = 'True', labels: Record<string, string> = {}) {
      const conditions = ready ? [{ type: 'Ready', status: ready, reason: 'KubeletReady', lastHeartbeatTime: iso(), lastTransitionTime: iso() }] : [];
      await rest.create(T.nodes, '', { metadata: { name, labels }, status: { conditions } }, {});
      await nc.idle();
    },
    /** A status report, as a kubelet (or CloudCore) writes it: the heartbeat moves, the transition only on a change. */
    async heartbeat(name: string, ready = 'True') {
      const cur = JSON.parse(store.get(T.nodes.storageKey, '', name)!.json) as KObject & { status: { conditions: Cond[] } };
      const prev = cur.status.conditions.find((c) => c.type === 'Ready');
      cur.status.conditions = [
        {
          type: 'Ready',
          status: ready,
          reason: 'KubeletReady',
          lastHeartbeatTime: iso(),
          lastTransitionTime: prev?.status === ready && prev.lastTransitionTime ? prev.lastTransitionTime : iso(),
        },
      ];
      await rest.update(T.nodes, '', name, cur, 'status', {});
      await nc.idle();
    },
    async renewLease(name: string) {
      await rest.update(
        T.leases,
        'kube-node-lease',
        name,
        { metadata: { name, namespace: 'kube-node-lease' }, spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: iso() } },
        '',
        {},
      );
    },
    async setTaints(name: string, taints: Taint[]) {
      const cur = JSON.parse(store.get(T.nodes.storageKey, '', name)!.json) as KObject & { spec?: R };
      cur.spec = { ...(cur.spec ?? {}), taints: [...((cur.spec?.taints as Taint[] | undefined) ?? []).filter((t) => !taints.some((x) => x.key === t.key)), ...taints] };
      await rest.update(T.nodes, '', name, cur, '', {});
      await nc.idle();
    },
    async addPod(name: string, nodeName: string, spec: R = {}, metadata: R = {}) {
      await rest.create(T.pods, 'default', { metadata: { name, ...metadata }, spec: { nodeName, containers: [{ name: 'c', image: 'img:1' }], ...spec } }, {});
      await nc.idle();
    },
    async updatePod(name: string, change: (p: KObject & { spec: { tolerations: Tol[] } }) => void) {
      const cur = JSON.parse(store.get(T.pods.storageKey, 'default', name)!.json) as KObject & { spec: { tolerations: Tol[] } };
      change(cur);
      await rest.update(T.pods, 'default', name, cur, '', {});
      await nc.idle();
    },
    evicted: (name: string) => {
      const p = pod(name);
      return p === undefined || p.metadata.deletionTimestamp !== undefined;
    },
    /** Advances `ms` in steps of at most 5 s, renewing the Leases of `keep` (nodes that stay healthy) at each step. */
    async run(ms: number, keep: string[] = []) {
      let left = ms;
      while (left > 0) {
        const step = Math.min(5_000, left);
        for (const n of keep) await h.renewLease(n);
        await clock.advance(step, () => nc.idle());
        left -= step;
      }
    },
    /** Advances 1 s at a time until `check` holds (at most `maxMs`); returns the virtual time it took. */
    async until(check: () => boolean, maxMs: number, keep: string[] = []): Promise<number> {
      const t0 = clock.now();
      while (!check()) {
        if (clock.now() - t0 > maxMs) throw new Error(`condition not reached within ${maxMs} ms of virtual time`);
        await h.run(1_000, keep);
      }
      return clock.now() - t0;
    },
    async close() {
      nc.stop();
      await store.close();
      dir.cleanup();
    },
  };
  await clock.advance(0, () => nc.idle()); // the first passes run at start, as kube-controller-manager's
  return h;
}

const UNREACHABLE_NOEXEC = 'node.kubernetes.io/unreachable:NoExecute';
const UNREACHABLE_NOSCHED = 'node.kubernetes.io/unreachable:NoSchedule';

describe('node lifecycle', () => {
  test('no heartbeat for the grace period → Ready=Unknown (all conditions), unreachable NoSchedule at once and NoExecute a monitor period later; Ready again → taints removed', async () => {
    const h = await harness();
    try {
      await h.addNode('keeper');
      await h.addNode('edge');
      const hb = h.condition('edge')!.lastHeartbeatTime;
      // First seen by the pass 5 s after its creation: from then on, 50 s (--node-monitor-grace-period).
      await h.run(55_000, ['keeper']);
      assert.equal(h.condition('edge')?.status, 'True', 'within the grace period it stays Ready');
      assert.deepEqual(h.taints('edge'), []);
      await h.run(5_000, ['keeper']);
      const ready = h.condition('edge')!;
      assert.equal(ready.status, 'Unknown', 'the first monitor pass past the grace period');
      assert.equal(ready.reason, 'NodeStatusUnknown');
      assert.equal(ready.message, 'Kubelet stopped posting node status.');
      assert.equal(ready.lastHeartbeatTime, hb, 'the last heartbeat is kept');
      for (const type of ['MemoryPressure', 'DiskPressure', 'PIDPressure']) {
        const c = h.condition('edge', type)!;
        assert.equal(c.status, 'Unknown', type);
        assert.equal(c.reason, 'NodeStatusNeverUpdated', `${type}: never reported by this node`);
      }
      assert.deepEqual(h.taints('edge'), [UNREACHABLE_NOSCHED], 'NoSchedule follows the condition at once');
      assert.equal(h.condition('keeper')?.status, 'True', 'a node whose Lease is renewed stays Ready');
      await h.run(5_000, ['keeper']);
      assert.deepEqual(h.taints('edge'), [UNREACHABLE_NOEXEC, UNREACHABLE_NOSCHED], 'NoExecute after the next pass (rate-limited queue)');
      assert.ok(
        h.node('edge')!.spec!.taints!.every((t) => typeof t.timeAdded === 'string'),
        'timeAdded set',
      );
      assert.ok(h.log.has(/node edge tainted node\.kubernetes\.io\/unreachable:NoExecute/));

      await h.heartbeat('edge', 'True');
      assert.deepEqual(h.taints('edge'), [UNREACHABLE_NOEXEC], 'the NoSchedule taint goes with the condition');
      await h.run(5_000, ['keeper', 'edge']);
      assert.deepEqual(h.taints('edge'), [], 'the NoExecute taint goes at the next pass');
      assert.equal(h.condition('edge')?.status, 'True');
    } finally {
      await h.close();
    }
  });

  test('a node reporting Ready=False gets the not-ready taints; unreachable and not-ready swap at once', async () => {
    const h = await harness();
    try {
      await h.addNode('keeper');
      await h.addNode('sick');
      await h.heartbeat('sick', 'False');
      assert.deepEqual(h.taints('sick'), ['node.kubernetes.io/not-ready:NoSchedule']);
      await h.run(5_000, ['keeper', 'sick']);
      assert.deepEqual(h.taints('sick'), ['node.kubernetes.io/not-ready:NoExecute', 'node.kubernetes.io/not-ready:NoSchedule']);
      // Silent from now on: Unknown, and the NoExecute taint swaps without waiting for the queue.
      await h.until(() => h.condition('sick')?.status === 'Unknown', 70_000, ['keeper']);
      await h.run(5_000, ['keeper']);
      assert.deepEqual(h.taints('sick'), [UNREACHABLE_NOEXEC, UNREACHABLE_NOSCHED]);
    } finally {
      await h.close();
    }
  });

  test('Lease renewals alone keep a node Ready; a node that never posted Ready gets the 60 s startup grace (NodeStatusNeverUpdated)', async () => {
    const h = await harness();
    try {
      await h.addNode('leased');
      await h.addNode('newborn', null);
      // First seen by the pass 5 s after its creation, then 60 s.
      await h.run(60_000, ['leased']);
      assert.equal(h.condition('newborn'), undefined, 'the startup grace is 60 s, not 50 s');
      await h.run(10_000, ['leased']);
      assert.equal(h.condition('newborn')?.status, 'Unknown');
      assert.equal(h.condition('newborn')?.reason, 'NodeStatusNeverUpdated');
      assert.equal(h.condition('newborn')?.message, 'Kubelet never posted node status.');
      await h.run(120_000, ['leased']);
      assert.equal(h.condition('leased')?.status, 'True', 'no status heartbeat for 3 min, but its Lease is renewed');
    } finally {
      await h.close();
    }
  });

  test('NoExecute tainting is rate-limited per zone (0.1 node/s: the second node 10 s after the first)', async () => {
    const h = await harness();
    try {
      await h.addNode('keeper');
      await h.addNode('e1');
      await h.addNode('e2');
      await h.until(() => h.taints('e1').includes(UNREACHABLE_NOEXEC) || h.taints('e2').includes(UNREACHABLE_NOEXEC), 70_000, ['keeper']);
      assert.equal([h.taints('e1'), h.taints('e2')].filter((t) => t.includes(UNREACHABLE_NOEXEC)).length, 1, 'one node tainted first');
      const waited = await h.until(() => h.taints('e1').includes(UNREACHABLE_NOEXEC) && h.taints('e2').includes(UNREACHABLE_NOEXEC), 20_000, ['keeper']);
      assert.ok(waited >= 9_000 && waited <= 11_000, `the second one about 10 s later (${waited} ms)`);
    } finally {
      await h.close();
    }
  });

  test('every node NotReady → master disruption mode: no NoExecute taint, no eviction', async () => {
    const h = await harness();
    try {
      await h.addNode('alone');
      await h.addPod('p', 'alone');
      await h.run(65_000);
      assert.equal(h.condition('alone')?.status, 'Unknown');
      assert.deepEqual(h.taints('alone'), [UNREACHABLE_NOSCHED]);
      await h.run(400_000);
      assert.deepEqual(h.taints('alone'), [UNREACHABLE_NOSCHED]);
      assert.equal(h.evicted('p'), false);
      assert.ok(h.log.has(/entering master disruption mode/));
      // A Ready node ends it: the silent one is tainted NoExecute (after a fresh grace period).
      await h.addNode('back');
      await h.until(() => h.taints('alone').includes(UNREACHABLE_NOEXEC), 70_000, ['back']);
      assert.ok(h.log.has(/exiting master disruption mode/));
    } finally {
      await h.close();
    }
  });

  test("a NotReady node's pods get Ready=False", async () => {
    const h = await harness();
    try {
      await h.addNode('keeper');
      await h.addNode('edge');
      await h.addPod('web', 'edge');
      const cur = JSON.parse(h.store.get(h.T.pods.storageKey, 'default', 'web')!.json) as KObject & { status: R };
      cur.status.conditions = [{ type: 'Ready', status: 'True', lastTransitionTime: '2030-01-01T00:00:00Z' }];
      await h.rest.update(h.T.pods, 'default', 'web', cur, 'status', {});
      await h.until(() => h.condition('edge')?.status === 'Unknown', 70_000, ['keeper']);
      const ready = (h.pod('web')!.status!.conditions as Cond[]).find((c) => c.type === 'Ready')!;
      assert.equal(ready.status, 'False');
      assert.notEqual(ready.lastTransitionTime, '2030-01-01T00:00:00Z');
    } finally {
      await h.close();
    }
  });
});

describe('taint eviction', () => {
  test('a pod that does not tolerate a NoExecute taint is evicted at once (DisruptionTarget, graceful delete); a tolerating one stays', async () => {
    const h = await harness();
    try {
      await h.addNode('n');
      await h.addPod('victim', 'n');
      await h.addPod('tolerant', 'n', { tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'edge', effect: 'NoExecute' }] });
      await h.setTaints('n', [{ key: 'dedicated', value: 'edge', effect: 'NoExecute' }]);
      await h.clock.advance(0, h.settle);
      const victim = h.pod('victim')!;
      assert.ok(victim.metadata.deletionTimestamp, 'deleted gracefully: the node confirms');
      const dt = (victim.status!.conditions as Cond[]).find((c) => c.type === 'DisruptionTarget')!;
      assert.deepEqual([dt.status, dt.reason, dt.message], ['True', 'DeletionByTaintManager', 'Taint manager: deleting due to NoExecute taint']);
      assert.equal(h.evicted('tolerant'), false);
      assert.ok(h.log.has(/taint eviction: deleting pod default\/victim from node n/));
    } finally {
      await h.close();
    }
  });

  test('the default 300 s toleration of the unreachable taint: evicted 300 s after the taint, not before', async () => {
    const h = await harness();
    try {
      await h.addNode('keeper');
      await h.addNode('edge');
      await h.addPod('p300', 'edge');
      assert.deepEqual(
        h.pod('p300')!.spec.tolerations!.find((t) => t.key === 'node.kubernetes.io/unreachable'),
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        'added by the DefaultTolerationSeconds admission',
      );
      await h.until(() => h.taints('edge').includes(UNREACHABLE_NOEXEC), 70_000, ['keeper']);
      await h.run(299_000, ['keeper']);
      assert.equal(h.evicted('p300'), false, '299 s after the taint');
      await h.run(2_000, ['keeper']);
      assert.equal(h.evicted('p300'), true, '301 s after the taint');
    } finally {
      await h.close();
    }
  });

  test('the smallest tolerationSeconds of the matching tolerations wins; the first toleration matching a taint is the one used', async () => {
    const h = await harness();
    try {
      await h.addNode('n');
      const a = { key: 'a', operator: 'Exists', effect: 'NoExecute' };
      await h.addPod('min', 'n', {
        tolerations: [
          { ...a, tolerationSeconds: 60 },
          { key: 'b', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 120 },
        ],
      });
      // A later toleration of everything, forever, does not help: the first match (a, 90 s) counts.
      await h.addPod('first', 'n', { tolerations: [{ ...a, tolerationSeconds: 90 }, { key: 'b', operator: 'Exists', effect: 'NoExecute' }, { operator: 'Exists' }] });
      await h.setTaints('n', [
        { key: 'a', effect: 'NoExecute' },
        { key: 'b', effect: 'NoExecute' },
      ]);
      await h.run(59_000, ['n']);
      assert.equal(h.evicted('min'), false);
      await h.run(2_000, ['n']);
      assert.equal(h.evicted('min'), true, 'evicted after 60 s, the smaller of 60 and 120');
      await h.run(28_000, ['n']);
      assert.equal(h.evicted('first'), false);
      await h.run(2_000, ['n']);
      assert.equal(h.evicted('first'), true, 'evicted after 90 s despite the later unlimited tolerations');
    } finally {
      await h.close();
    }
  });

  test('no tolerationSeconds: never evicted; removing tolerationSeconds cancels a scheduled eviction; raising it does not postpone one', async () => {
    const h = await harness();
    try {
      await h.addNode('keeper');
      await h.addNode('edge');
      await h.addPod('forever', 'edge', { tolerations: [{ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' }] });
      await h.addPod('unlimited', 'edge');
      await h.addPod('raised', 'edge');
      await h.until(() => h.taints('edge').includes(UNREACHABLE_NOEXEC), 70_000, ['keeper']);
      await h.run(100_000, ['keeper']);
      const unreachable = (t: Tol) => t.key === 'node.kubernetes.io/unreachable';
      await h.updatePod('unlimited', (p) => {
        delete p.spec.tolerations.find(unreachable)!.tolerationSeconds;
      });
      await h.updatePod('raised', (p) => {
        p.spec.tolerations.find(unreachable)!.tolerationSeconds = 3600;
      });
      await h.run(201_000, ['keeper']);
      assert.equal(h.evicted('raised'), true, 'the eviction scheduled at the taint still fires at 300 s');
      await h.run(3_600_000, ['keeper']);
      assert.equal(h.evicted('forever'), false);
      assert.equal(h.evicted('unlimited'), false);
    } finally {
      await h.close();
    }
  });
});

describe('pod GC', () => {
  test('pods bound to a node that does not exist (pending or terminating) are marked Failed and force-deleted after the 40 s quarantine', async () => {
    const h = await harness();
    try {
      const seen: StoreEvent[] = [];
      h.store.subscribeAll((ev) => {
        if (ev.storageKey === h.T.pods.storageKey) seen.push(ev);
      });
      await h.addNode('real');
      await h.addPod('orphan', 'ghost');
      await h.addPod('orphan-terminating', 'ghost');
      await h.rest.delete(h.T.pods, 'default', 'orphan-terminating', {});
      await h.addPod('housed', 'real');
      assert.ok(h.pod('orphan-terminating')!.metadata.deletionTimestamp, 'bound: graceful, waits for a kubelet that will never come');
      await h.run(59_000, ['real']);
      assert.ok(h.pod('orphan') && h.pod('orphan-terminating'), 'within the quarantine (first seen by the 20 s pass, + 40 s)');
      await h.run(2_000, ['real']);
      assert.equal(h.pod('orphan'), undefined);
      assert.equal(h.pod('orphan-terminating'), undefined);
      assert.ok(h.pod('housed'));
      const last = seen.filter((e) => e.obj.metadata.name === 'orphan' && e.type === 'MODIFIED').at(-1)!.obj as KObject & { status: { phase: string; conditions: Cond[] } };
      assert.equal(last.status.phase, 'Failed');
      const dt = last.status.conditions.find((c) => c.type === 'DisruptionTarget')!;
      assert.deepEqual([dt.reason, dt.message], ['DeletionByPodGC', 'PodGC: node no longer exists']);
      assert.ok(h.log.has(/pod GC: force-deleting pod default\/orphan: its node ghost no longer exists/));
    } finally {
      await h.close();
    }
  });

  test('a terminating pod on a NotReady node stays until the node is tainted out-of-service', async () => {
    const h = await harness();
    try {
      await h.addNode('keeper');
      await h.addNode('down');
      await h.addPod('stuck', 'down', { tolerations: [{ operator: 'Exists' }] });
      await h.rest.delete(h.T.pods, 'default', 'stuck', {});
      await h.until(() => h.condition('down')?.status === 'Unknown', 70_000, ['keeper']);
      await h.run(120_000, ['keeper']);
      assert.ok(h.pod('stuck'), 'NotReady alone: its kubelet may still be running it');
      await h.setTaints('down', [{ key: 'node.kubernetes.io/out-of-service', value: 'nodeshutdown', effect: 'NoExecute' }]);
      await h.run(21_000, ['keeper']);
      assert.equal(h.pod('stuck'), undefined);
    } finally {
      await h.close();
    }
  });
});

describe('DefaultTolerationSeconds admission and toleration updates', () => {
  const NOT_READY = { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 };
  const UNREACHABLE = { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 };

  test('pods lacking a toleration for not-ready / unreachable NoExecute get one (300 s, configurable); others keep theirs', async () => {
    const h = await harness({}, { defaultNotReadyTolerationSeconds: 300, defaultUnreachableTolerationSeconds: 300 });
    try {
      const gpu = { key: 'gpu', operator: 'Exists', effect: 'NoSchedule' };
      await h.addPod('plain', 'n');
      await h.addPod('gpu', 'n', { tolerations: [gpu] });
      const own = { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' };
      await h.addPod('own', 'n', { tolerations: [own] });
      await h.addPod('all', 'n', { tolerations: [{ operator: 'Exists' }] });
      await h.addPod('keyless-noexec', 'n', { tolerations: [{ operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 10 }] });
      assert.deepEqual(h.pod('plain')!.spec.tolerations, [NOT_READY, UNREACHABLE]);
      assert.deepEqual(h.pod('gpu')!.spec.tolerations, [gpu, NOT_READY, UNREACHABLE], 'added to a list that tolerates other taints');
      assert.deepEqual(h.pod('own')!.spec.tolerations, [own, NOT_READY]);
      assert.deepEqual(h.pod('all')!.spec.tolerations, [{ operator: 'Exists' }]);
      assert.deepEqual(h.pod('keyless-noexec')!.spec.tolerations, [{ operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 10 }]);
    } finally {
      await h.close();
    }
    const h2 = await harness({}, { defaultNotReadyTolerationSeconds: 30, defaultUnreachableTolerationSeconds: 42 });
    try {
      await h2.addPod('short', 'n');
      assert.deepEqual(h2.pod('short')!.spec.tolerations, [
        { ...NOT_READY, tolerationSeconds: 30 },
        { ...UNREACHABLE, tolerationSeconds: 42 },
      ]);
    } finally {
      await h2.close();
    }
  });

  test('an update may add tolerations and change or drop tolerationSeconds, not remove or alter a toleration (422)', async () => {
    const h = await harness();
    try {
      await h.addPod('p', 'n');
      const unreachable = (t: Tol) => t.key === 'node.kubernetes.io/unreachable';
      await h.updatePod('p', (p) => {
        delete p.spec.tolerations.find(unreachable)!.tolerationSeconds;
        p.spec.tolerations.find((t) => t.key === 'node.kubernetes.io/not-ready')!.tolerationSeconds = 5;
        p.spec.tolerations.push({ key: 'extra', operator: 'Exists', effect: 'NoSchedule' });
      });
      assert.deepEqual(h.pod('p')!.spec.tolerations, [
        { ...NOT_READY, tolerationSeconds: 5 },
        { key: UNREACHABLE.key, operator: 'Exists', effect: 'NoExecute' },
        { key: 'extra', operator: 'Exists', effect: 'NoSchedule' },
      ]);
      const refused = async (change: (p: KObject & { spec: { tolerations: Tol[] } }) => void, what: string) => {
        await assert.rejects(
          h.updatePod('p', change),
          (e: unknown) => e instanceof ApiError && e.httpCode === 422 && /existing toleration can not be modified except its tolerationSeconds/.test(e.message),
          what,
        );
      };
      await refused((p) => {
        p.spec.tolerations = p.spec.tolerations.filter((t) => t.key !== 'extra');
      }, 'removing a toleration');
      // Removing a default one: the admission (it runs on updates too) adds it back, with its time limit.
      await h.updatePod('p', (p) => {
        p.spec.tolerations = p.spec.tolerations.filter((t) => !unreachable(t));
      });
      assert.deepEqual(h.pod('p')!.spec.tolerations!.find(unreachable), UNREACHABLE);
      await refused((p) => {
        p.spec.tolerations.find((t) => t.key === 'extra')!.operator = 'Equal';
      }, 'changing its operator');
      await assert.rejects(
        h.rest.create(
          h.T.pods,
          'default',
          {
            metadata: { name: 'bad' },
            spec: { containers: [{ name: 'c', image: 'i' }], tolerations: [{ key: 'k', operator: 'Exists', effect: 'NoSchedule', tolerationSeconds: 5 }] },
          },
          {},
        ),
        (e: unknown) => e instanceof ApiError && e.httpCode === 422 && /effect must be 'NoExecute' when `tolerationSeconds` is set/.test(e.message),
      );
    } finally {
      await h.close();
    }
  });
});
