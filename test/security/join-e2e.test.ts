/**
 * Admitting a device, end to end with real processes (issue 13): the local control plane, a
 * CloudCore replica serving mutual TLS as shipped (its node CA in Secret kube-system/ledge-ca),
 * `ledge token create|revoke` (dist/ledge.js), `node dist/edgecore.js join` and EdgeCore started
 * from the config the join wrote. Checked through the API with @kubernetes/client-node and kubectl.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster, type Cloud, type Cluster } from '../helpers/cluster.js';
import { kubectlFor } from '../helpers/pods.js';
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
  const p = startProcess([join(repoRoot, 'dist/ledge.js'), ...args], {}, `ledge ${args[0]}`);
  const code = await exitCode(p, 30_000, `ledge ${args.join(' ')}`);
  return { code, out: p.output() };
}

async function createToken(...flags: string[]): Promise<string> {
  const r = await ledge(['token', 'create', '--kubeconfig', cluster.api.kubeconfigPath, ...flags]);
  assert.equal(r.code, 0, r.out);
  const token = /^([a-z0-9]{6}\.[a-z0-9]{16}@sha256:[0-9a-f]{64})$/m.exec(r.out)?.[1];
  assert.ok(token, `no join token in:\n${r.out}`);
  return token;
}

/** `node edgecore.js join …` for `node`: its exit code and output. */
async function joinNode(node: string, token: string, url = cloud.url): Promise<{ code: number | null; out: string }> {
  const p = startProcess([edgecoreBundle, 'join', '--cloud', url, '--token', token, '--node-name', node, '--data-dir', cluster.dataDir(node)], {}, `join ${node}`);
  const code = await exitCode(p, 30_000, `join of ${node}`);
  return { code, out: p.output() };
}

async function nodeExists(name: string): Promise<boolean> {
  try {
    await cluster.core.readNode({ name });
    return true;
  } catch {
    return false;
  }
}

describe('joining a device', () => {
  let edge: Proc;

  it('a valid token: the device gets a certificate naming it, connects over mTLS and registers its Node', async () => {
    assert.match(cloud.url, /^wss:\/\//);
    const token = await createToken('--ttl', '1h');
    const r = await joinNode('n1', token);
    assert.equal(r.code, 0, r.out);
    const dir = cluster.dataDir('n1');
    assert.equal(statSync(join(dir, 'pki')).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, 'pki/node.key')).mode & 0o777, 0o600);
    const config = JSON.parse(readFileSync(join(dir, 'edgecore.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(config.nodeName, 'n1');
    assert.ok(!JSON.stringify(config).includes(token.split('@')[0]!.split('.')[1]!), 'the token secret is not in the config');
    edge = cluster.startEdge('n1', [cloud.url], ['--config', join(dir, 'edgecore.json')]);
    await edge.waitFor(/connected to cloud/, 30_000);
    await eventually(() => nodeExists('n1'), 30_000, 'Node n1');
    assert.match(cloud.proc.output(), /"msg":"node connected"[^\n]*"node":"n1"[^\n]*"certificateSerial"/);
    const kubectl = kubectlFor(cluster, join(cluster.dir, 'kubectl-cache'));
    assert.match(await kubectl(['get', 'node', 'n1', '-o', 'name']), /node\/n1/);
  });

  it('a single-use token admits one device; the second is refused and nothing is created for it', async () => {
    const token = await createToken('--ttl', '1h', '--single-use');
    const first = await joinNode('n2', token);
    assert.equal(first.code, 0, first.out);
    const second = await joinNode('n3', token);
    assert.equal(second.code, 1, second.out);
    assert.match(second.out, /LEDGE_ERR_JOIN_TOKEN_UNKNOWN|already used/);
    assert.ok(!statExists(join(cluster.dataDir('n3'), 'pki/node.crt')));
  });

  it('a revoked token is refused', async () => {
    const token = await createToken('--ttl', '1h');
    const id = token.split('.')[0]!;
    const revoked = await ledge(['token', 'revoke', id, '--kubeconfig', cluster.api.kubeconfigPath]);
    assert.equal(revoked.code, 0, revoked.out);
    const listed = await ledge(['token', 'list', '--kubeconfig', cluster.api.kubeconfigPath]);
    assert.ok(!listed.out.includes(id), listed.out);
    const r = await joinNode('n4', token);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /revoked|unknown/);
  });

  it('an expired token is refused, saying so', async () => {
    const token = await createToken('--ttl', '1s');
    // Joins until the token's second is over (each attempt before that succeeds for a fresh node).
    const r = await eventually(
      async () => {
        const attempt = await joinNode(`n5-${Date.now()}`, token);
        return attempt.code !== 0 ? attempt : undefined;
      },
      30_000,
      'the token to expire',
    );
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /expired/);
  });

  it('a malformed token and a wrong CA hash are refused before the token is sent', async () => {
    const bad = await joinNode('n6', 'not-a-token');
    assert.equal(bad.code, 2, bad.out);
    const token = await createToken('--ttl', '1h');
    const wrongHash = token.replace(/@sha256:[0-9a-f]{64}$/, `@sha256:${'0'.repeat(64)}`);
    const before = cloud.proc.output().length;
    const r = await joinNode('n7', wrongHash);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /sha256:0{64}/);
    assert.ok(!cloud.proc.output().slice(before).includes('"node":"n7"'), 'CloudCore never saw a join for n7');
    assert.ok(!statExists(join(cluster.dataDir('n7'), 'pki/node.crt')));
  });

  it("plain ws:// to a CloudHub that requires TLS, and a node started with another node's certificate: refused, no Node", async () => {
    const plainUrl = cloud.url.replace(/^wss:/, 'ws:');
    const plain = cluster.startEdge('n8', [plainUrl]);
    await plain.waitFor(/cannot connect|closed|socket hang up|ECONNRESET|refused|HPE_/i, 30_000);
    const dir = cluster.dataDir('n1');
    // n1's key and certificate, but the name n9: EdgeHub refuses to start with a certificate that names another node.
    const imposter = cluster.startEdge(
      'n9',
      [cloud.url],
      ['--ca-file', join(dir, 'pki/ca.crt'), '--cert-file', join(dir, 'pki/node.crt'), '--key-file', join(dir, 'pki/node.key')],
    );
    const code = await exitCode(imposter, 30_000, 'the imposter EdgeCore to exit');
    assert.notEqual(code, 0);
    assert.match(imposter.output(), /system:node:n1/);
    await plain.kill9();
    assert.equal(await nodeExists('n8'), false);
    assert.equal(await nodeExists('n9'), false);
  });
});

function statExists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
