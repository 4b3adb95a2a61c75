/**
 * The EdgeController checks again, with the object it has just read from the API, right before a
 * write: its pod cache may be behind (a pod deleted and created again under the same name, bound to
 * another node; a mirror pod created a moment ago). A fake API stands in for the server (the race
 * cannot be staged against a real one), and the cache is a stub.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { newMessage } from '../../shared/protocol/index.js';
import { ErrorCode } from '../../shared/errors/index.js';
import { createLogger } from '../../shared/log/index.js';
import { EdgeController, MIRROR_ANNOTATION } from '../../cloud/edgecontroller/index.js';

type Pod = {
  metadata: { name: string; namespace: string; uid?: string; resourceVersion?: string; annotations?: Record<string, string> };
  spec: { nodeName?: string };
  status?: unknown;
};

const pod = (nodeName: string, mirror = false): Pod => ({
  metadata: { name: 'p', namespace: 'default', uid: `uid-${nodeName}`, resourceVersion: '5', ...(mirror ? { annotations: { [MIRROR_ANNOTATION]: 'h' } } : {}) },
  spec: { nodeName },
});

/** An EdgeController whose cache holds `cached` and whose API holds `stored`; records the writes. */
function rig(cached: Pod | undefined, stored: Pod | undefined) {
  const ec = new EdgeController(undefined, createLogger({ level: 'silent' }));
  const writes: string[] = [];
  const conflict = Object.assign(new Error('exists'), { code: 409 });
  const notFound = Object.assign(new Error('not found'), { code: 404 });
  const core = {
    readNamespacedPod: async () => {
      if (!stored) throw notFound;
      return structuredClone(stored);
    },
    replaceNamespacedPodStatus: async () => void writes.push('status'),
    createNamespacedPod: async () => {
      if (stored) throw conflict;
      writes.push('create');
    },
    deleteNamespacedPod: async () => void writes.push('delete'),
  };
  const inner = ec as unknown as { core: unknown; pods: unknown; handle(m: unknown): Promise<unknown> };
  inner.core = core;
  inner.pods = { informer: { get: () => (cached ? structuredClone(cached) : undefined) } };
  const send = (operation: string, resource: string, content: unknown = null) =>
    inner.handle(newMessage({ source: 'edged', group: 'resource', operation, resource: `node/node-a/${resource}`, content, sync: true })) as Promise<{ code?: string } | null>;
  return { ec, writes, send };
}

describe('EdgeController: the rule again on the object read just before the write', () => {
  test('pod status: the cache says node-a, the API holds a new pod of that name bound to node-b → refused, nothing written', async () => {
    const r = rig(pod('node-a'), pod('node-b'));
    const reply = await r.send('update', 'default/podstatus/p', { phase: 'Failed' });
    assert.equal(reply?.code, ErrorCode.Forbidden);
    assert.deepEqual(r.writes, []);
    assert.equal(r.ec.authorizer.stats().refused['pod-status'], 1);
    // Both agree: written.
    const ok = rig(pod('node-a'), pod('node-a'));
    assert.equal(await ok.send('update', 'default/podstatus/p', { phase: 'Running' }), null);
    assert.deepEqual(ok.writes, ['status']);
  });

  test('mirror pod create meeting an existing pod the cache did not have yet: kept only if it is its own mirror', async () => {
    const content = { metadata: { name: 'p', namespace: 'default', annotations: { [MIRROR_ANNOTATION]: 'h' } }, spec: { nodeName: 'node-a' } };
    const clash = rig(undefined, pod('node-b'));
    assert.equal((await clash.send('insert', 'default/pod/p', content))?.code, ErrorCode.Forbidden, 'a regular pod of node-b');
    const resend = rig(undefined, pod('node-a', true));
    assert.equal(await resend.send('insert', 'default/pod/p', content), null, 'its own mirror pod (a resend)');
  });

  test('mirror pod delete of a pod the cache did not have yet: refused unless it is its own mirror', async () => {
    const other = rig(undefined, pod('node-b', true));
    assert.equal((await other.send('delete', 'default/pod/p'))?.code, ErrorCode.Forbidden);
    assert.deepEqual(other.writes, []);
    const own = rig(undefined, pod('node-a', true));
    assert.equal(await own.send('delete', 'default/pod/p'), null);
    assert.deepEqual(own.writes, ['delete']);
  });
});
