/**
 * A deleted edge Node does not come back from its node's last reports (issue 13): the
 * EdgeController (local control plane, over HTTPS through client-node) with NodeRevocation as its
 * informer observer, wired as CloudCore wires them, and a stand-in for CloudHub's sessions (the
 * revocation closes the node's session; `mayRegisterNode` is "has a live session here").
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, silentLogger } from '../../shared/log/index.js';
import { Beehive, type ModuleContext } from '../../shared/beehive/index.js';
import { newMessage } from '../../shared/protocol/index.js';
import { EdgeController } from '../../cloud/edgecontroller/index.js';
import { createNodeRevocation } from '../../cloud/revocation/index.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { eventually } from '../helpers/process.js';

const cp = useLocalControlPlane('ledge-revocation-registration-', { nodeLeaseTimeoutMs: 600_000 });

function harness() {
  const connected = new Set<string>();
  const revocation = createNodeRevocation({}, { log: silentLogger }); // no store: deletions count from memory here
  revocation.onRevoked((nodes) => {
    for (const n of nodes) connected.delete(n); // CloudHub.closeRevokedSessions
  });
  const ec = new EdgeController(cp.kc, silentLogger, { informerObservers: [revocation], mayRegisterNode: (node) => connected.has(node) });
  const bee = new Beehive({ log: createLogger({ level: 'warn' }) });
  bee.register(ec);
  bee.register(revocation);
  bee.register({ name: 'cloudhub', group: 'hub', start: async (_ctx: ModuleContext, signal: AbortSignal) => void (await new Promise((r) => signal.addEventListener('abort', r))) });
  bee.start();
  const hub = bee.context('cloudhub');
  const report = async (node: string) => {
    const msg = newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: `node/${node}/default/nodestatus/${node}`, sync: true, content: {} });
    return (await hub.sendSync('edgecontroller', msg, 15_000)).content;
  };
  return { bee, ec, connected, report };
}

async function nodeExists(name: string): Promise<boolean> {
  try {
    await cp.core.readNode({ name });
    return true;
  } catch {
    return false;
  }
}

describe('a deleted Node is not registered again by its revoked node', () => {
  test('a report from a node without a live session does not register its Node; with one it does', async () => {
    const h = harness();
    try {
      const refused = await h.report('rr-0');
      assert.match(JSON.stringify(refused), /LEDGE_ERR_API.*edge Node rr-0 was deleted/);
      assert.equal(await nodeExists('rr-0'), false);
      h.connected.add('rr-0');
      assert.equal(await h.report('rr-0'), null);
      assert.equal(await nodeExists('rr-0'), true);
    } finally {
      await h.bee.stop();
    }
  });

  test('reports racing the deletion of the Node never bring it back (20 nodes, reports before and after the delete is seen)', async () => {
    const h = harness();
    try {
      const nodes = Array.from({ length: 20 }, (_, i) => `rr-${i + 1}`);
      for (const n of nodes) {
        h.connected.add(n);
        assert.equal(await h.report(n), null);
      }
      await eventually(() => nodes.every((n) => h.ec.nodeExists(n)), 20_000, 'the Nodes in the informer');
      for (const n of nodes) {
        // The node keeps reporting while its Node is deleted: reports already under way, and those after.
        const racing = [h.report(n)];
        const deleted = cp.core.deleteNode({ name: n });
        racing.push(h.report(n));
        await deleted;
        racing.push(h.report(n), h.report(n));
        await Promise.all(racing);
      }
      await eventually(() => nodes.every((n) => h.ec.nodeExists(n) === false), 20_000, 'the deletions in the informer');
      const back = [];
      for (const n of nodes) if (await nodeExists(n)) back.push(n);
      assert.deepEqual(back, [], 'Nodes re-created after their deletion');
    } finally {
      await h.bee.stop();
    }
  });
});
