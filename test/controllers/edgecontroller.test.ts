/**
 * EdgeController in process, against the local control plane (in this process, used
 * over HTTPS through client-node): node status reports as CloudHub routes them, the
 * Ready condition's transition times, and failures that must be reported, never left
 * as unhandled rejections.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../shared/log/index.js';
import { Beehive, type ModuleContext } from '../../shared/beehive/index.js';
import { newMessage } from '../../shared/protocol/index.js';
import { EdgeController } from '../../cloud/edgecontroller/index.js';
import { captureLog } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';

const cp = useLocalControlPlane('ledge-edgecontroller-', { nodeLeaseTimeoutMs: 600_000 });

/** A Beehive with the EdgeController and a stand-in for CloudHub that sends it upstream messages. */
function harness(ec: EdgeController) {
  const bee = new Beehive({ log: createLogger({ level: 'warn' }) });
  bee.register(ec);
  bee.register({ name: 'cloudhub', group: 'hub', start: async (_ctx: ModuleContext, signal: AbortSignal) => void (await new Promise((r) => signal.addEventListener('abort', r))) });
  bee.start();
  const hub = bee.context('cloudhub');
  return {
    bee,
    report: async (node: string, ready: 'True' | 'False' | 'Unknown') => {
      const msg = newMessage({
        source: 'edged',
        group: 'resource',
        operation: 'update',
        resource: `node/${node}/default/nodestatus/${node}`,
        sync: true,
        content: {
          nodeInfo: { operatingSystem: 'linux', architecture: 'x64' },
          capacity: { cpu: '1' },
          conditions: [{ type: 'Ready', status: ready, reason: ready === 'True' ? 'EdgeReady' : 'EdgeNotReady' }],
        },
      });
      const resp = await hub.sendSync('edgecontroller', msg, 15_000);
      assert.equal(resp.content, null, `report handled: ${JSON.stringify(resp.content)}`);
    },
  };
}

const iso = (ms: number) => new Date(ms).toISOString();
const timeOf = (v: unknown) => new Date(v as string | Date).toISOString();

describe('EdgeController: node status', () => {
  test('Ready keeps its lastTransitionTime while its status is unchanged; lastHeartbeatTime moves on every report', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const ec = new EdgeController(cp.kc, createLogger({ level: 'warn' }), { now: () => now });
    const h = harness(ec);
    try {
      const ready = async () => (await cp.core.readNode({ name: 'ec-n1' })).status?.conditions?.find((c) => c.type === 'Ready');
      await h.report('ec-n1', 'True');
      const t0 = now;
      let c = (await ready())!;
      assert.equal(c.status, 'True');
      assert.equal(timeOf(c.lastTransitionTime), iso(t0));
      assert.equal(timeOf(c.lastHeartbeatTime), iso(t0));

      now += 10_000;
      await h.report('ec-n1', 'True');
      c = (await ready())!;
      assert.equal(timeOf(c.lastHeartbeatTime), iso(now), 'heartbeat moves on each report');
      assert.equal(timeOf(c.lastTransitionTime), iso(t0), 'same status: the transition time is kept');

      now += 10_000;
      const t2 = now;
      await h.report('ec-n1', 'False');
      c = (await ready())!;
      assert.equal(c.status, 'False');
      assert.equal(timeOf(c.lastTransitionTime), iso(t2), 'a status change is a transition');

      now += 10_000;
      await h.report('ec-n1', 'False');
      c = (await ready())!;
      assert.equal(timeOf(c.lastTransitionTime), iso(t2));
      assert.equal(timeOf(c.lastHeartbeatTime), iso(now));
    } finally {
      await h.bee.stop();
    }
  });
});

describe('EdgeController: failures are reported, never unhandled rejections', () => {
  async function withRejectionProbe(fn: (unhandled: unknown[]) => Promise<void>): Promise<void> {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      await fn(unhandled);
      // Let any rejection still in flight surface: unhandledRejection fires after the microtask queue drains.
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(
        unhandled.map((e) => String(e)),
        [],
      );
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  }

  test('a reply that cannot be delivered is logged, not an unhandled rejection', async () => {
    await withRejectionProbe(async () => {
      const log = captureLog();
      const ec = new EdgeController(undefined, log.logger);
      const ac = new AbortController();
      const msg = newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: 'node/n/default/nodestatus/n', sync: true, content: {} });
      let delivered = false;
      const ctx = {
        name: 'edgecontroller',
        log: log.logger,
        async *messages() {
          yield msg;
          delivered = true;
          await new Promise((r) => ac.signal.addEventListener('abort', r));
        },
        respond: () => Promise.reject(new Error('bus gone')),
      } as unknown as ModuleContext;
      const running = ec.start(ctx, ac.signal);
      await eventually(() => delivered && log.has(/bus gone/), 5_000, 'the failed reply to be logged');
      ac.abort();
      await running;
    });
  });

  test('a desired-set change that cannot be told to the SyncController is logged, not thrown or an unhandled rejection', async () => {
    await withRejectionProbe(async () => {
      const log = captureLog();
      let calls = 0;
      // The bus refuses the informer handler's change notification (sent from a microtask after the handler returned).
      const ac = new AbortController();
      const ctx = {
        name: 'edgecontroller',
        log: log.logger,
        send() {
          calls++;
          throw new Error('reconcile exploded');
        },
        async *messages() {
          await new Promise((r) => ac.signal.addEventListener('abort', r));
        },
      } as unknown as ModuleContext;
      const ec = new EdgeController(cp.kc, log.logger);
      const running = ec.start(ctx, ac.signal);
      await eventually(() => log.has(/edge controller watching/), 15_000, 'informers synced');
      await cp.core.createNamespacedPod({
        namespace: 'default',
        body: { metadata: { name: 'ec-throw', namespace: 'default' }, spec: { nodeName: 'ec-n2', containers: [{ name: 'c', image: 'busybox' }] } },
      });
      await eventually(() => calls > 0 && log.has(/reconcile exploded/), 10_000, 'the handler failure to be logged');
      ac.abort();
      await running;
    });
  });
});

test('a pod status write that meets a conflict (the pod changed since it was read) is read again and retried', async () => {
  const ec = new EdgeController(undefined, createLogger({ level: 'warn' }));
  let reads = 0;
  let writes = 0;
  // The pod changes between the first read and its write (CloudCore's eviction protection patched it).
  const conflict = Object.assign(new Error('Operation cannot be fulfilled: the object has been modified'), { code: 409 });
  const core = {
    readNamespacedPod: async () => ({ metadata: { name: 'p', namespace: 'default', resourceVersion: String(++reads) } }),
    replaceNamespacedPodStatus: async ({ body }: { body: { metadata: { resourceVersion: string }; status: unknown } }) => {
      writes++;
      if (body.metadata.resourceVersion === '1') throw conflict;
      assert.deepEqual(body.status, { phase: 'Running' });
    },
  };
  const inner = ec as unknown as { core: unknown; writePodStatus(key: string, status: unknown): Promise<void> };
  inner.core = core;
  await inner.writePodStatus('default/p', { phase: 'Running' });
  assert.equal(reads, 2, 'read again after the conflict');
  assert.equal(writes, 2);
});
