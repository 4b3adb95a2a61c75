/**
 * EdgeController writes a node status report to the Node (local control plane, over HTTPS
 * through client-node): every field of the full report (capacity, allocatable, nodeInfo,
 * conditions, images, addresses); the shape older edges send still works; malformed entries
 * are left out with one log line (never silently); conditions written by others are kept.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../shared/log/index.js';
import { Beehive, type ModuleContext } from '../../shared/beehive/index.js';
import { newMessage } from '../../shared/protocol/index.js';
import { EdgeController, type NodeStatusReport } from '../../cloud/edgecontroller/index.js';
import { captureLog, type LogCapture } from '../helpers/cloud.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';

const cp = useLocalControlPlane('ledge-nodestatus-', { nodeLeaseTimeoutMs: 600_000 });
/** client-node's model classes as plain data (deepStrictEqual compares prototypes). */
const plain = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

function harness(log: LogCapture = captureLog(), options: ConstructorParameters<typeof EdgeController>[2] = {}) {
  const ec = new EdgeController(cp.kc, log.logger, options);
  const bee = new Beehive({ log: createLogger({ level: 'warn' }) });
  bee.register(ec);
  bee.register({ name: 'cloudhub', group: 'hub', start: async (_ctx: ModuleContext, signal: AbortSignal) => void (await new Promise((r) => signal.addEventListener('abort', r))) });
  bee.start();
  const hub = bee.context('cloudhub');
  return {
    bee,
    log,
    report: async (node: string, content: unknown) => {
      const msg = newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: `node/${node}/default/nodestatus/${node}`, sync: true, content });
      const resp = await hub.sendSync('edgecontroller', msg, 15_000);
      assert.equal(resp.content, null, `report handled: ${JSON.stringify(resp.content)}`);
    },
  };
}

/** A report as edge/nodestatus builds it. */
function fullReport(over: Partial<NodeStatusReport> = {}): NodeStatusReport {
  return {
    nodeInfo: {
      operatingSystem: 'linux',
      architecture: 'arm64',
      kernelVersion: '6.1.0-18-arm64',
      osImage: 'Debian GNU/Linux 12 (bookworm)',
      containerRuntimeVersion: 'docker://4.3.1',
      kubeletVersion: 'v1.35.0-ledge',
      bootID: 'c8e1a19a-4243-4e17-8315-ab563bcc5285',
      machineID: '0123456789abcdef0123456789abcdef',
      systemUUID: '',
      hostname: 'edge-host',
      runtime: 'docker://4.3.1',
    },
    capacity: { cpu: '4', memory: '4194304Ki', pods: '110', 'ephemeral-storage': '100000000Ki' },
    allocatable: { cpu: '4', memory: '4091904Ki', pods: '110', 'ephemeral-storage': '90000000Ki' },
    addresses: [
      { type: 'Hostname', address: 'edge-host' },
      { type: 'InternalIP', address: '10.0.0.7' },
    ],
    conditions: [
      { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' },
      { type: 'MemoryPressure', status: 'False', reason: 'KubeletHasSufficientMemory', message: 'kubelet has sufficient memory available' },
      { type: 'DiskPressure', status: 'True', reason: 'KubeletHasDiskPressure', message: 'kubelet has disk pressure' },
      { type: 'PIDPressure', status: 'False', reason: 'KubeletHasSufficientPID', message: 'kubelet has sufficient PID available' },
      { type: 'EdgeStoreFull', status: 'False', reason: 'EdgeStoreHasRoom', message: 'edge metadata store accepts new objects' },
    ],
    images: [
      { names: ['docker.io/library/busybox@sha256:abc', 'docker.io/library/busybox:1.36'], sizeBytes: 4_261_550 },
      { names: ['localhost/pause:3.10'], sizeBytes: 736_000 },
    ],
    ...over,
  };
}

describe('EdgeController: the full node status report reaches the Node', () => {
  test("with CloudStream, the Node's address and kubelet port are CloudStream's; the edge's own addresses are kept in an annotation", async () => {
    const h = harness(captureLog(), { streamEndpoint: () => ({ address: '192.0.2.10', port: 10350 }) });
    try {
      await h.report('ns-stream', fullReport());
      const node = await cp.core.readNode({ name: 'ns-stream' });
      assert.deepEqual(plain(node.status?.addresses), [
        { type: 'InternalIP', address: '192.0.2.10' },
        { type: 'Hostname', address: '192.0.2.10' },
      ]);
      assert.equal(node.status?.daemonEndpoints?.kubeletEndpoint?.Port, 10350);
      assert.deepEqual(JSON.parse(node.metadata?.annotations?.['ledge.io/edge-addresses'] ?? 'null'), fullReport().addresses);
      // The edge moves: the annotation follows.
      await h.report('ns-stream', fullReport({ addresses: [{ type: 'InternalIP', address: '10.0.0.8' }] }));
      const moved = await cp.core.readNode({ name: 'ns-stream' });
      assert.deepEqual(JSON.parse(moved.metadata?.annotations?.['ledge.io/edge-addresses'] ?? 'null'), [{ type: 'InternalIP', address: '10.0.0.8' }]);
    } finally {
      await h.bee.stop();
    }
  });

  test('capacity, allocatable, nodeInfo, conditions, images and addresses are written as reported', async () => {
    const h = harness();
    try {
      await h.report('ns-full', fullReport());
      const node = await cp.core.readNode({ name: 'ns-full' });
      const st = node.status!;
      assert.deepEqual(st.capacity, { cpu: '4', memory: '4194304Ki', pods: '110', 'ephemeral-storage': '100000000Ki' });
      assert.deepEqual(st.allocatable, { cpu: '4', memory: '4091904Ki', pods: '110', 'ephemeral-storage': '90000000Ki' });
      assert.deepEqual(plain(st.nodeInfo), {
        architecture: 'arm64',
        operatingSystem: 'linux',
        kernelVersion: '6.1.0-18-arm64',
        osImage: 'Debian GNU/Linux 12 (bookworm)',
        containerRuntimeVersion: 'docker://4.3.1',
        kubeletVersion: 'v1.35.0-ledge',
        kubeProxyVersion: '',
        bootID: 'c8e1a19a-4243-4e17-8315-ab563bcc5285',
        machineID: '0123456789abcdef0123456789abcdef',
        systemUUID: '',
      });
      assert.deepEqual(
        st.conditions?.map((c) => [c.type, c.status, c.reason, c.message]),
        fullReport().conditions!.map((c) => [c.type, c.status, c.reason, c.message]),
      );
      assert.deepEqual(plain(st.images), fullReport().images);
      assert.deepEqual(plain(st.addresses), fullReport().addresses);
      assert.equal(node.metadata?.labels?.['kubernetes.io/arch'], 'arm64');
      assert.equal(node.metadata?.labels?.['kubernetes.io/os'], 'linux');
      assert.deepEqual(
        h.log.lines.filter((l) => l.level === 'warn' || l.level === 'error'),
        [],
      );
    } finally {
      await h.bee.stop();
    }
  });

  test('the shape older edges send still works: no allocatable (the capacity), no osImage (the OS), runtime, Node arch names, images kept', async () => {
    const h = harness();
    try {
      await h.report('ns-old', {
        seq: 1,
        bootId: 'x',
        nodeInfo: { operatingSystem: 'linux', architecture: 'x64', kernelVersion: '5.10.0', hostname: 'old', runtime: 'node/20.11.0' },
        capacity: { cpu: '2', memory: '2048000Ki' },
        addresses: [{ type: 'Hostname', address: 'old' }],
        conditions: [{ type: 'Ready', status: 'True', reason: 'EdgeReady', lastHeartbeatTime: new Date().toISOString() }],
      });
      const st = (await cp.core.readNode({ name: 'ns-old' })).status!;
      assert.deepEqual(st.capacity, { cpu: '2', memory: '2048000Ki' });
      assert.deepEqual(st.allocatable, { cpu: '2', memory: '2048000Ki' });
      assert.equal(st.nodeInfo?.architecture, 'amd64');
      assert.equal(st.nodeInfo?.osImage, 'linux');
      assert.equal(st.nodeInfo?.containerRuntimeVersion, 'node/20.11.0');
      assert.equal(st.nodeInfo?.kubeletVersion, 'ledge');
      assert.deepEqual(
        st.conditions?.map((c) => [c.type, c.status, c.reason]),
        [['Ready', 'True', 'EdgeReady']],
      );
      assert.deepEqual(st.images ?? [], []);
      // Images written by a full report stay when a report without the field arrives.
      await h.report('ns-old', fullReport());
      await h.report('ns-old', { ...fullReport(), images: undefined });
      assert.equal((await cp.core.readNode({ name: 'ns-old' })).status?.images?.length, 2);
    } finally {
      await h.bee.stop();
    }
  });

  test('malformed entries are left out with one log line naming them; the rest is written; the same problem is not logged again', async () => {
    const h = harness();
    try {
      const bad = fullReport({
        capacity: { cpu: '4', memory: 'lots', 'bad name!': '1', pods: '110' },
        images: [
          { names: ['ok:1'], sizeBytes: 10 },
          { names: [], sizeBytes: 5 },
          { names: ['neg:1'], sizeBytes: -1 },
        ],
        conditions: [
          { type: 'Ready', status: 'True', reason: 'KubeletReady' },
          { type: 'MemoryPressure', status: 'maybe' },
        ],
      });
      await h.report('ns-bad', bad);
      const st = (await cp.core.readNode({ name: 'ns-bad' })).status!;
      assert.deepEqual(st.capacity, { cpu: '4', pods: '110' });
      assert.deepEqual(plain(st.images), [{ names: ['ok:1'], sizeBytes: 10 }]);
      assert.deepEqual(
        st.conditions?.map((c) => c.type),
        ['Ready'],
      );
      const warn = h.log.lines.filter((l) => /reported a malformed status/.test(String(l.msg)));
      assert.equal(warn.length, 1);
      for (const what of ['capacity.memory="lots"', 'capacity.bad name!', 'image {"names":[]', 'image {"names":["neg:1"]', 'condition {"type":"MemoryPressure"']) {
        assert.ok(String(warn[0]!.msg).includes(what), `${what} named in: ${warn[0]!.msg}`);
      }
      await h.report('ns-bad', bad);
      assert.equal(h.log.lines.filter((l) => /reported a malformed status/.test(String(l.msg))).length, 1, 'not logged again');
    } finally {
      await h.bee.stop();
    }
  });

  test('conditions written by others (node-problem-detector) are kept; reported ones keep their transition time while unchanged', async () => {
    const h = harness();
    try {
      await h.report('ns-npd', fullReport());
      const node = await cp.core.readNode({ name: 'ns-npd' });
      node.status!.conditions!.push({ type: 'KernelDeadlock', status: 'False', reason: 'KernelHasNoDeadlock', message: 'kernel has no deadlock' });
      await cp.core.replaceNodeStatus({ name: 'ns-npd', body: node });
      await h.report('ns-npd', fullReport());
      const types = (await cp.core.readNode({ name: 'ns-npd' })).status?.conditions?.map((c) => c.type);
      assert.deepEqual(types, ['Ready', 'MemoryPressure', 'DiskPressure', 'PIDPressure', 'EdgeStoreFull', 'KernelDeadlock']);
    } finally {
      await h.bee.stop();
    }
  });
});
