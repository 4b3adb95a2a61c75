/**
 * Revoking a node, end to end with real processes (issue 13): the local control plane, a CloudCore
 * replica serving mutual TLS as shipped (dist/ledge.js cloud), devices admitted with
 * `ledge token create` + `node dist/edgecore.js join`, EdgeCore started from the config the join
 * wrote. Deleting a connected node's Node (client-node), and `ledge node revoke` on another one,
 * close its session; its reconnects are refused with the reason; the deleted Node does not come
 * back; a re-join with a new token connects again.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultRevocationOptions } from '../../cloud/revocation/index.js';
import { startCluster, type Cloud, type Cluster } from '../helpers/cluster.js';
import { edgecoreBundle, eventually, exitCode, repoRoot, startProcess, type Proc } from '../helpers/process.js';

let cluster: Cluster;
let cloud: Cloud;

before(async () => {
  cluster = await startCluster();
  cloud = await cluster.startCloud('c1', [], { mtls: true });
});
after(() => cluster?.close());

/** Runs a command of dist/ledge.js to its end: exit code and output. */
async function ledge(args: string[]): Promise<{ code: number | null; out: string }> {
  const p = startProcess([join(repoRoot, 'dist/ledge.js'), ...args, '--kubeconfig', cluster.api.kubeconfigPath], {}, `ledge ${args[0]}`);
  const code = await exitCode(p, 30_000, `ledge ${args.join(' ')}`);
  return { code, out: p.output() };
}

async function createToken(): Promise<string> {
  const r = await ledge(['token', 'create', '--ttl', '1h']);
  assert.equal(r.code, 0, r.out);
  const token = /^([a-z0-9]{6}\.[a-z0-9]{16}@sha256:[0-9a-f]{64})$/m.exec(r.out)?.[1];
  assert.ok(token, `no join token in:\n${r.out}`);
  return token;
}

/** `node edgecore.js join …` for `node` with a new token (again with --force), then EdgeCore from the config it wrote, connected. */
async function admit(node: string, again = false): Promise<Proc> {
  const token = await createToken();
  const args = [edgecoreBundle, 'join', '--cloud', cloud.url, '--token', token, '--node-name', node, '--data-dir', cluster.dataDir(node), ...(again ? ['--force'] : [])];
  const p = startProcess(args, {}, `join ${node}`);
  const code = await exitCode(p, 30_000, `join of ${node}`);
  assert.equal(code, 0, p.output());
  const edge = cluster.startEdge(node, [cloud.url], ['--config', join(cluster.dataDir(node), 'edgecore.json')]);
  await edge.waitFor(/connected to cloud/, 30_000);
  await eventually(() => nodeExists(node), 30_000, `Node ${node}`);
  return edge;
}

async function nodeExists(name: string): Promise<boolean> {
  try {
    await cluster.core.readNode({ name });
    return true;
  } catch {
    return false;
  }
}

/**
 * Waits until the node's certificate counts as issued more than the decision's tolerance ago
 * (cloud/revocation/decision.ts: certificate times have one-second precision, so one issued within
 * the second of a revocation still passes). A precondition on the clock, not a synchronization:
 * usually already true after joining and connecting.
 */
async function certificateOlderThanTolerance(node: string): Promise<void> {
  const cert = new X509Certificate(readFileSync(join(cluster.dataDir(node), 'pki/node.crt')));
  const issued = Date.parse(cert.validFrom) + defaultRevocationOptions.backdateMs;
  await eventually(() => Date.now() > issued + defaultRevocationOptions.toleranceMs + 1000, 10_000, `the certificate of ${node} to be older than the tolerance`);
}

const refusedLine = (node: string) => new RegExp(`cloud refused the connection: HTTP 401 LEDGE_ERR_NODE_REVOKED: node ${node} was revoked at \\S+: re-join it`);

describe('revoking a node', () => {
  let edge1: Proc;
  let edge2: Proc;

  before(async () => {
    edge1 = await admit('r1');
    edge2 = await admit('r2');
  });

  it('deleting the Node of a connected node closes its session, its reconnects are refused with the reason, and the Node does not come back', async () => {
    await certificateOlderThanTolerance('r1');
    await cluster.core.deleteNode({ name: 'r1' });
    await cloud.proc.waitFor(/"msg":"session closed by CloudCore: node r1 was revoked at [^"]+; closing session"/, 20_000);
    await edge1.waitFor(refusedLine('r1'), 20_000);
    await cloud.proc.waitFor(/"msg":"edge connection refused: node r1 was revoked at [^"]+"/, 20_000);
    // Recorded for replicas that start later.
    await eventually(async () => (await cluster.core.readNamespacedConfigMap({ name: 'ledge-revoked-nodes', namespace: 'kube-system' })).data?.r1, 20_000, 'r1 in the ConfigMap');
    assert.equal(await nodeExists('r1'), false, 'the Node came back');
    // r2 is not affected.
    assert.doesNotMatch(edge2.output(), /cloud refused the connection/);
  });

  it('`ledge node revoke` on another connected node closes its session and refuses it; its Node stays', async () => {
    await certificateOlderThanTolerance('r2');
    const r = await ledge(['node', 'revoke', 'r2']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /node r2 revoked at \S+Z/);
    await edge2.waitFor(refusedLine('r2'), 20_000);
    assert.equal(await nodeExists('r2'), true);
    const listed = await ledge(['node', 'revocations']);
    assert.equal(listed.code, 0, listed.out);
    assert.match(listed.out, /^r1 +\S+Z$/m);
    assert.match(listed.out, /^r2 +\S+Z$/m);
  });

  it('a re-join of the revoked node with a new token connects again, and its Node is registered again', async () => {
    await edge1.kill9();
    assert.equal(await nodeExists('r1'), false, 'the Node came back before the re-join');
    const rejoined = await admit('r1', true);
    assert.doesNotMatch(rejoined.output(), /cloud refused the connection/);
    await cloud.proc.waitFor(/"msg":"node connected"[^\n]*"node":"r1"[^\n]*\n(?:.*\n)*.*"msg":"node connected"[^\n]*"node":"r1"/, 20_000);
  });
});
