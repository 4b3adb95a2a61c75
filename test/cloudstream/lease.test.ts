/**
 * The per-node stream Leases and the peer Secret against the local control plane: a connect
 * report makes the Lease name this replica (holder, peer address, certificate); a disconnect
 * clears it; a second replica's connect takes it over, and the first one's late disconnect does
 * not clear it. Forwarding then works over the real Lease and Secret.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { kube, type k8s } from '../../cloud/kube/index.js';
import { sessionReport, SessionOperation } from '../../cloud/cloudhub/reports.js';
import { PEER_ANNOTATION, PEER_CERT_ANNOTATION, PEER_SECRET, streamLeaseName } from '../../cloud/cloudstream/index.js';
import { Channel } from '../../shared/stream/index.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { tempDir } from '../helpers/files.js';
import { eventually } from '../helpers/process.js';
import { FakeCluster, fetchAll, makeCa, startCloudStream, type Pem, type Running } from './helpers.js';

const cp = useLocalControlPlane('ledge-cloudstream-lease-');
const dirA = tempDir('ledge-cloudstream-la-');
const dirB = tempDir('ledge-cloudstream-lb-');
const NS = 'kube-system';
const long = `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}-x`; // 244 characters
const onA = new FakeCluster().bind('default', 'web', 'n1').bind('default', 'longpod', long);
const onB = new FakeCluster().bind('default', 'web', 'n1');
let ca: { ca: Pem; client: Pem };
let a: Running;
let b: Running;
let leases: k8s.CoordinationV1Api;
let core: k8s.CoreV1Api;

const report = (r: Running, operation: SessionOperation, node: string) => r.bee.context('cloudhub').send('cloudstream', sessionReport(operation, { node }));
const lease = async (node: string) => {
  try {
    return await leases.readNamespacedLease({ name: streamLeaseName(node), namespace: NS });
  } catch {
    return undefined;
  }
};

// Inside a suite: its hooks run once the file's (the control plane's) have.
describe('stream Leases', () => {
  before(async () => {
    ca = await makeCa('test-apiserver-ca');
    leases = cp.kc.makeApiClient(kube().CoordinationV1Api);
    core = cp.kc.makeApiClient(kube().CoreV1Api);
    onA.connect('n1');
    onA.connect(long);
    a = await startCloudStream(dirA.path, { ...onA.deps('replica-a'), kc: cp.kc }, {}, ca.ca.cert);
    b = await startCloudStream(dirB.path, { ...onB.deps('replica-b'), kc: cp.kc }, {}, ca.ca.cert);
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
    dirA.cleanup();
    dirB.cleanup();
  });

  test('connect: the Lease names this replica; the peer Secret exists; B forwards over them; disconnect: released', async () => {
    await report(a, SessionOperation.Connected, 'n1');
    const l = await eventually(async () => ((await lease('n1'))?.spec?.holderIdentity === 'replica-a' ? lease('n1') : undefined), 20_000, 'the Lease of n1 to name A');
    assert.equal(l?.metadata?.annotations?.[PEER_ANNOTATION], `https://127.0.0.1:${a.stream.address().port}`);
    assert.match(l?.metadata?.annotations?.[PEER_CERT_ANNOTATION] ?? '', /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.ok(l?.spec?.renewTime, 'renewTime written');
    const secret = await core.readNamespacedSecret({ name: PEER_SECRET, namespace: NS });
    assert.equal(Buffer.from(secret.data?.token ?? '', 'base64').toString().length, 43, '32 random bytes, base64url');

    // B is not connected to n1: it finds A in the Lease and forwards, authenticated by the Secret's token.
    const pending = fetchAll(`${b.url}/containerLogs/default/web/app`, ca.client);
    const edge = await onA.links.get('n1')!.nextOpen();
    edge.accept();
    edge.send(Channel.Stdout, Buffer.from('from A\n'));
    edge.end();
    const r = await pending;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'from A\n');

    onA.links.delete('n1');
    await report(a, SessionOperation.Disconnected, 'n1');
    await eventually(async () => (await lease('n1'))?.spec?.holderIdentity === '', 20_000, 'the Lease of n1 to be released');
  });

  test('a second replica taking over: the holder changes, and the first one’s late disconnect leaves it', async () => {
    onA.connect('n1');
    await report(a, SessionOperation.Connected, 'n1');
    await eventually(async () => (await lease('n1'))?.spec?.holderIdentity === 'replica-a', 20_000, 'A to hold n1');
    // The node moves to B; A has not seen its session end yet.
    onB.connect('n1');
    await report(b, SessionOperation.Connected, 'n1');
    const taken = await eventually(
      async () => {
        const l = await lease('n1');
        return l?.spec?.holderIdentity === 'replica-b' ? l : undefined;
      },
      20_000,
      'B to take n1 over',
    );
    assert.equal(taken.metadata?.annotations?.[PEER_ANNOTATION], `https://127.0.0.1:${b.stream.address().port}`);
    assert.ok((taken.spec?.leaseTransitions ?? 0) >= 1, 'a transition counted');
    const releases = a.stream.leaseStats.releases;
    onA.links.delete('n1');
    await report(a, SessionOperation.Disconnected, 'n1');
    await eventually(() => a.stream.leaseStats.releases > releases, 20_000, "A's release to run");
    assert.equal((await lease('n1'))?.spec?.holderIdentity, 'replica-b', 'still B');
  });

  test('a node name too long for the Lease prefix: a cut, hashed, valid name', async () => {
    const name = streamLeaseName(long);
    assert.ok(name.length <= 253 && name !== `ledge-stream-${long}`);
    await report(a, SessionOperation.Connected, long);
    await eventually(async () => (await lease(long))?.spec?.holderIdentity === 'replica-a', 20_000, 'the Lease of the long-named node');
  });
});
