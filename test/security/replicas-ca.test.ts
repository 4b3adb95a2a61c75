/**
 * Two CloudCore replicas starting at once on an empty cluster end with one node CA (issue 13;
 * KubeEdge issue 5922 is each making its own): both processes, started together against the local
 * control plane, log the same CA hash, which is the one in Secret kube-system/ledge-ca, and a node
 * admitted through one replica connects to the other.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { caCertHash } from '../../shared/jointoken/index.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { edgecoreBundle, exitCode, repoRoot, startProcess } from '../helpers/process.js';

let cluster: Cluster;
before(async () => {
  cluster = await startCluster();
});
after(() => cluster?.close());

test('two replicas starting at once: one CA, and a node joined through one connects to the other', async () => {
  const [a, b] = await Promise.all([cluster.startCloud('r1', [], { mtls: true }), cluster.startCloud('r2', [], { mtls: true })]);
  const hashOf = (out: string) => /"msg":"node CA (sha256:[0-9a-f]{64})/.exec(out)?.[1];
  const ha = hashOf(a.proc.output());
  const hb = hashOf(b.proc.output());
  assert.ok(ha && hb, 'both replicas log their node CA');
  assert.equal(ha, hb);
  const secret = await cluster.core.readNamespacedSecret({ name: 'ledge-ca', namespace: 'kube-system' });
  assert.equal(caCertHash(Buffer.from(secret.data?.['tls.crt'] ?? '', 'base64').toString()), ha);

  const create = startProcess([join(repoRoot, 'dist/ledge.js'), 'token', 'create', '--ttl', '1h', '--kubeconfig', cluster.api.kubeconfigPath], {}, 'token');
  assert.equal(await exitCode(create, 30_000, 'token create'), 0, create.output());
  const token = /^([a-z0-9]{6}\.[a-z0-9]{16}@sha256:[0-9a-f]{64})$/m.exec(create.output())?.[1];
  assert.ok(token, create.output());
  const joined = startProcess([edgecoreBundle, 'join', '--cloud', a.url, '--token', token, '--node-name', 'n1', '--data-dir', cluster.dataDir('n1')], {}, 'join');
  assert.equal(await exitCode(joined, 30_000, 'join through r1'), 0, joined.output());
  const edge = cluster.startEdge('n1', [b.url], ['--config', join(cluster.dataDir('n1'), 'edgecore.json')]);
  await edge.waitFor(/connected to cloud/, 30_000);
  assert.match(b.proc.output(), /"msg":"node connected"[^\n]*"node":"n1"/);
});
