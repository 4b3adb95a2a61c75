/**
 * Edged (edge/edged/edged.ts) driving pod workers from a fake MetaView, on the in-memory runtime
 * (./fake-runtime.ts), with a fake Beehive context that captures the podstatus messages it sends;
 * time is mocked. Covers: a put starts a worker, a new uid under the same name waits for the old
 * pod to stop, a delete is answered once the pod stopped (bounded), maxPods, status sent on change
 * and on the slow resync only, unknown runtime classes, leftover sandboxes removed at start (and
 * owned ones adopted), pods of other nodes and mirror pods ignored, a configmap's arrival.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import type { V1Container, V1Pod, V1PodSpec, V1PodStatus } from '@kubernetes/client-node';
import { Edged, type EdgedOptions } from '../../edge/edged/edged.js';
import { defaultEdgedOptions } from '../../edge/edged/options.js';
import type { PodWorker } from '../../edge/edged/pod-worker.js';
import type { MetaChange, MetaListener, MetaView, StoredObject } from '../../edge/metamanager/index.js';
import type { ModuleContext } from '../../shared/beehive/index.js';
import { createLogger } from '../../shared/log/index.js';
import { Group, ModuleName, Operation, parseResource, type Message } from '../../shared/protocol/index.js';
import { tempDir } from '../helpers/files.js';
import { FakeRuntime, settle, turn, until } from './fake-runtime.js';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');

class FakeMeta implements MetaView {
  readonly ready = true;
  readonly objects = new Map<string, StoredObject>();
  private readonly listeners = new Set<MetaListener>();
  get(resource: string): StoredObject | undefined {
    return this.objects.get(resource);
  }
  list(prefix = ''): StoredObject[] {
    return [...this.objects.values()].filter((o) => o.resource.startsWith(prefix));
  }
  listType(type: string): StoredObject[] {
    return [...this.objects.values()].filter((o) => parseResource(o.resource).type === type);
  }
  subscribe(listener: MetaListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  whenReady(): Promise<void> {
    return Promise.resolve();
  }
  /** Stores and notifies; resolves when every listener's answer settled (MetaManager's ACK). */
  async apply(change: MetaChange): Promise<void> {
    if (change.op === 'put') this.objects.set(change.resource, { resource: change.resource, value: change.value });
    else this.objects.delete(change.resource);
    await Promise.all([...this.listeners].map((l) => l(change)));
  }
  put(resource: string, value: unknown): Promise<void> {
    return this.apply({ op: 'put', resource, value });
  }
  delete(resource: string): Promise<void> {
    return this.apply({ op: 'delete', resource });
  }
}

/** A Beehive context that records what Edged sends and answers each sendSync at once (queued). */
class FakeContext implements ModuleContext {
  readonly name = ModuleName.Edged;
  readonly sent: Message[] = [];
  constructor(readonly log: ModuleContext['log']) {}
  async send(_to: string, message: Message): Promise<void> {
    this.sent.push(message);
  }
  async sendToGroup(_group: string, message: Message): Promise<void> {
    this.sent.push(message);
  }
  async sendSync<R = unknown>(_to: string, message: Message, _timeoutMs?: number): Promise<Message<R>> {
    this.sent.push(message);
    return { header: { id: `r-${this.sent.length}`, parentId: message.header.id, timestamp: Date.now(), sync: false }, route: message.route, content: null as R };
  }
  async respond(): Promise<void> {}
  async sendResponse(): Promise<void> {}
  receive(): Promise<Message> {
    return Promise.reject(new Error('edged does not receive'));
  }
  async *messages(): AsyncIterable<Message> {}
  /** The pod statuses sent for `name`, in order. */
  statuses(name: string): V1PodStatus[] {
    return this.sent.filter((m) => m.route.resource === `default/podstatus/${name}`).map((m) => m.content as V1PodStatus);
  }
}

function ctr(name: string, extra: Partial<V1Container> = {}): V1Container {
  return { name, image: `img/${name}:1`, command: [`/bin/${name}`], ...extra };
}

function makePod(name: string, uid: string, spec: Partial<V1PodSpec> = {}, extra: Partial<V1Pod['metadata']> = {}): V1Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', uid, ...extra }, spec: { nodeName: 'node-a', containers: [ctr('a')], ...spec } };
}

const res = (name: string) => `default/pod/${name}`;

interface Rig {
  edged: Edged;
  signal: AbortSignal;
  rt: FakeRuntime;
  meta: FakeMeta;
  ctx: FakeContext;
  logs: string[];
  settle(): Promise<void>;
  advance(ms: number): Promise<void>;
  stop(): Promise<void>;
}

async function rig(t: TestContext, options: Partial<EdgedOptions> = {}, before: (rt: FakeRuntime, meta: FakeMeta) => void = () => {}): Promise<Rig> {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  const dir = tempDir('ledge-edged-');
  t.after(() => dir.cleanup());
  const rt = new FakeRuntime('process');
  const meta = new FakeMeta();
  const logs: string[] = [];
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => void logs.push(l) });
  const ctx = new FakeContext(log);
  before(rt, meta);
  const edged = new Edged({ nodeName: 'node-a', dataDir: dir.path, meta, runtimes: [rt], ...options }, log);
  const ac = new AbortController();
  let finished = false;
  const running = edged.start(ctx, ac.signal).finally(() => (finished = true));
  // Private state, read only to know when the work a test caused is done.
  const inner = edged as unknown as { workers: Map<string, PodWorker>; flushing: boolean };
  const idle = () => !inner.flushing && [...inner.workers.values()].every((w) => !(w as unknown as { syncing: boolean }).syncing);
  const r: Rig = {
    edged,
    signal: ac.signal,
    rt,
    meta,
    ctx,
    logs,
    settle: () => settle(idle, 'edged to settle'),
    async advance(ms: number) {
      t.mock.timers.tick(ms);
      await r.settle();
    },
    async stop() {
      rt.releaseStops();
      ac.abort();
      await until(() => finished, 'edged to stop');
      await running;
    },
  };
  t.after(() => r.stop());
  await until(() => logs.some((l) => l.includes('edged started')), 'edged to start');
  await r.settle();
  return r;
}

test('a pod put starts its worker; its status goes upstream as a podstatus update; an exit event restarts it', async (t) => {
  const r = await rig(t);
  await r.meta.put(res('web'), makePod('web', 'uid-1'));
  await r.settle();
  assert.ok(r.rt.running('a'), 'r.rt.running("a")');
  const last = r.ctx.sent.at(-1);
  assert.ok(last, 'last');
  assert.deepEqual(last.route, { source: ModuleName.Edged, group: Group.Resource, operation: Operation.Update, resource: 'default/podstatus/web' });
  assert.equal(last.header.sync, true);
  assert.equal((last.content as V1PodStatus).phase, 'Running');
  r.rt.exit('a', 1);
  await r.settle();
  assert.equal(r.rt.created('a'), 2);
  assert.equal(r.ctx.statuses('web').at(-1)?.containerStatuses?.[0]?.restartCount, 1);
  await r.stop();
});

test('the same name with a new uid: the old pod is stopped and removed before the new one starts', async (t) => {
  const r = await rig(t);
  await r.meta.put(res('web'), makePod('web', 'uid-1'));
  await r.settle();
  assert.ok(r.rt.running('a', 'uid-1'));
  r.rt.holdStops(); // the old pod takes its time to stop
  void r.meta.put(res('web'), makePod('web', 'uid-2'));
  await until(() => r.rt.heldStopCount === 1, 'the old pod to be stopping');
  // The new worker's sync waits (it is not idle): turns and a resync's kick, then a look.
  t.mock.timers.tick(defaultEdgedOptions.resyncMs);
  await settle(() => true);
  assert.equal(r.edged.worker('default', 'web')?.uid, 'uid-2');
  assert.deepEqual(r.rt.ops('runPodSandbox'), ['runPodSandbox:uid-1'], 'nothing of the new pod while the old one stops');
  r.rt.releaseStops();
  await until(() => r.rt.running('a', 'uid-2'), 'the new pod to run');
  const ops = r.rt.ops('removePodSandbox', 'runPodSandbox');
  assert.deepEqual(ops, ['runPodSandbox:uid-1', 'removePodSandbox:uid-1', 'runPodSandbox:uid-2']);
  await r.settle();
  assert.equal(r.ctx.statuses('web').at(-1)?.phase, 'Running');
  await r.stop();
});

test("a pod's delete is answered only once the pod stopped, and after deleteAckWaitMs at the latest", async (t) => {
  const r = await rig(t, { deleteAckWaitMs: 25_000 });
  await r.meta.put(res('web'), makePod('web', 'uid-1'));
  await r.meta.put(res('api'), makePod('api', 'uid-2'));
  await r.settle();
  r.rt.holdStops();
  let acked = false;
  let callsAtAck = -1;
  void r.meta.delete(res('web')).then(() => {
    acked = true;
    callsAtAck = r.rt.calls.length;
  });
  await until(() => r.rt.heldStopCount === 1, 'the pod to be stopping');
  await r.advance(24_000);
  assert.equal(acked, false, 'not answered while the pod stops');
  r.rt.releaseStops();
  await until(() => acked, 'the delete to be answered');
  const removed = r.rt.calls.findIndex((c) => c.op === 'removePodSandbox' && c.target === 'uid-1');
  assert.ok(removed >= 0 && removed < callsAtAck, 'answered after the sandbox was removed');

  // A pod that does not stop: answered after deleteAckWaitMs anyway, and it keeps stopping.
  r.rt.holdStops();
  let acked2 = false;
  void r.meta.delete(res('api')).then(() => (acked2 = true));
  await until(() => r.rt.heldStopCount === 1, 'the second pod to be stopping');
  await r.advance(24_999);
  assert.equal(acked2, false);
  await r.advance(1);
  await until(() => acked2, 'the bounded answer');
  assert.ok(r.rt.sandboxes.size > 0, 'still stopping');
  r.rt.releaseStops();
  await until(() => r.rt.sandboxes.size === 0, 'the second pod to be removed');
  await r.stop();
});

test('past maxPods a pod is reported Failed/OutOfpods and not run; it starts once a slot frees', async (t) => {
  const r = await rig(t, { maxPods: 1 });
  await r.meta.put(res('web'), makePod('web', 'uid-1'));
  await r.settle();
  await r.meta.put(res('api'), makePod('api', 'uid-2'));
  await r.settle();
  const rejected = r.ctx.statuses('api').at(-1);
  assert.equal(rejected?.phase, 'Failed');
  assert.equal(rejected?.reason, 'OutOfpods');
  assert.equal(rejected?.message, "Node didn't have enough resource: pods, requested: 1, used: 1, capacity: 1");
  assert.deepEqual(r.rt.ops('runPodSandbox'), ['runPodSandbox:uid-1']);
  await r.meta.delete(res('web'));
  await until(() => r.rt.running('a', 'uid-2'), 'the refused pod to run once a slot freed');
  await r.settle();
  assert.equal(r.ctx.statuses('api').at(-1)?.phase, 'Running');
  await r.stop();
});

test('a status is sent when it changed, not for a sync that changed nothing, and again after statusResyncMs', async (t) => {
  const r = await rig(t, { resyncMs: 10_000, statusResyncMs: 60_000 });
  await r.meta.put(res('web'), makePod('web', 'uid-1'));
  await r.settle();
  const n = r.ctx.statuses('web').length;
  assert.ok(n >= 1, 'n >= 1');
  const last = JSON.stringify(r.ctx.statuses('web').at(-1));
  // Syncs that change nothing: a runtime event, the resync loop's kicks.
  r.rt.emit({ uid: 'uid-1' });
  await r.settle();
  for (let i = 0; i < 5; i++) await r.advance(10_000);
  assert.equal(r.ctx.statuses('web').length, n, 'no message while nothing changed');
  await r.advance(10_000); // 60 s since the last report
  assert.equal(r.ctx.statuses('web').length, n + 1, 're-sent after statusResyncMs');
  assert.equal(JSON.stringify(r.ctx.statuses('web').at(-1)), last);
  // A change is sent at once.
  r.rt.exit('a', 1);
  await r.settle();
  assert.equal(r.ctx.statuses('web').length, n + 2);
  await r.stop();
});

test('an unknown runtimeClassName: status reason UnknownRuntimeClass naming the classes offered, nothing run', async (t) => {
  const r = await rig(t);
  await r.meta.put(res('web'), makePod('web', 'uid-1', { runtimeClassName: 'kata' }));
  await r.settle();
  const s = r.ctx.statuses('web').at(-1);
  assert.equal(s?.phase, 'Pending');
  assert.equal(s?.reason, 'UnknownRuntimeClass');
  assert.match(s?.message ?? '', /runtimeClassName "kata" is not available on node node-a; this node offers: process/);
  assert.deepEqual(r.rt.ops('runPodSandbox', 'createContainer'), []);
  await r.stop();
});

test('at start, sandboxes no stored pod owns are removed; those of stored pods are taken over', async (t) => {
  let owned = '';
  const r = await rig(t, {}, (rt, meta) => {
    rt.preload({ uid: 'ghost', id: 'sb-ghost' }, [{ name: 'x' }]);
    owned = rt.preload({ uid: 'uid-1', id: 'sb-web', ip: '10.88.9.9' }, [{ name: 'a' }]).id;
    meta.objects.set(res('web'), { resource: res('web'), value: makePod('web', 'uid-1') });
  });
  await until(() => r.rt.ops('removePodSandbox').includes('removePodSandbox:ghost'), 'the leftover sandbox to be removed');
  await r.settle();
  assert.ok(r.rt.ops('stopPodSandbox').includes('stopPodSandbox:ghost'), 'r.rt.ops("stopPodSandbox").includes("stopPodSandbox:ghost")');
  assert.deepEqual(
    r.rt.liveSandboxes().map((s) => s.id),
    [owned],
  );
  assert.deepEqual(r.rt.ops('runPodSandbox', 'createContainer', 'stopContainer'), [], 'the running pod is taken over as it is');
  const s = r.ctx.statuses('web').at(-1);
  assert.equal(s?.phase, 'Running');
  assert.equal(s?.podIP, '10.88.9.9');
  await r.stop();
});

test('pods bound to another node and mirror pods are ignored', async (t) => {
  const r = await rig(t);
  await r.meta.put(res('other'), makePod('other', 'uid-o', { nodeName: 'node-b' }));
  await r.meta.put(res('mirror'), makePod('mirror', 'uid-m', {}, { annotations: { 'kubernetes.io/config.mirror': 'abc' } }));
  await r.settle();
  assert.equal(r.edged.podCount, 0);
  assert.deepEqual(r.rt.ops('runPodSandbox'), []);
  assert.deepEqual(r.ctx.statuses('other'), []);
  assert.deepEqual(r.ctx.statuses('mirror'), []);
  await r.stop();
});

test('a configmap arriving in the store starts the container that waited for it, at once', async (t) => {
  const r = await rig(t);
  await r.meta.put(res('web'), makePod('web', 'uid-1', { containers: [ctr('a', { envFrom: [{ configMapRef: { name: 'cfg' } }] })] }));
  await r.settle();
  assert.equal(r.ctx.statuses('web').at(-1)?.containerStatuses?.[0]?.state?.waiting?.reason, 'CreateContainerConfigError');
  await r.meta.put('default/configmap/cfg', { data: { MODE: 'fast' } });
  await r.settle(); // no time passes
  assert.ok(r.rt.running('a'), 'r.rt.running("a")');
  assert.equal(r.rt.current('a')?.config.env.MODE, 'fast');
  await r.stop();
});

test('after a reconnection every pod status is sent again, changed or not (the cloud marked them not ready meanwhile)', async (t) => {
  const r = await rig(t, { resyncMs: 10_000, statusResyncMs: 600_000 });
  await r.meta.put(res('web'), makePod('web', 'uid-1'));
  await r.settle();
  const n = r.ctx.statuses('web').length;
  const last = JSON.stringify(r.ctx.statuses('web').at(-1));
  r.edged.reconnected();
  await r.settle();
  assert.equal(r.ctx.statuses('web').length, n + 1, 'sent again after the reconnection');
  assert.equal(JSON.stringify(r.ctx.statuses('web').at(-1)), last, 'the same status');
  await r.stop();
});

test('the resync loop leaves no listener behind on the module signal, however long it runs', async (t) => {
  const r = await rig(t, { resyncMs: 1_000 });
  const before = getEventListeners(r.signal, 'abort').length;
  for (let i = 0; i < 20; i++) await r.advance(1_000);
  assert.ok(getEventListeners(r.signal, 'abort').length <= before, `abort listeners grew from ${before} to ${getEventListeners(r.signal, 'abort').length}`);
  await r.stop();
});

test('a runtime event while a held pod is being taken over does not make it a second sandbox', async (t) => {
  let release: () => void = () => {};
  const held = new Promise<void>((r) => (release = r));
  let owned = '';
  let holding = true;
  const r = await rig(t, {}, (rt, meta) => {
    owned = rt.preload({ uid: 'uid-1', id: 'sb-web' }, [{ name: 'a' }]).id;
    meta.objects.set(res('web'), { resource: res('web'), value: makePod('web', 'uid-1') });
    // The takeover's listing of the sandbox's containers is slow.
    rt.hooks.listContainers = () => (holding ? held : undefined);
  });
  // Meanwhile the runtime reports something of this pod (a leftover killed at start, an exit).
  r.rt.emit({ uid: 'uid-1' });
  r.rt.emit({});
  // The kicked worker waits for the takeover (settle() would wait for it too): let the loop turn.
  for (let i = 0; i < 50; i++) await turn();
  holding = false;
  release();
  await r.settle();
  assert.deepEqual(r.rt.ops('runPodSandbox', 'createContainer'), [], 'the held pod is taken over, not made again');
  assert.deepEqual(
    r.rt.liveSandboxes().map((s) => s.id),
    [owned],
  );
  await r.stop();
});
