/**
 * Certificate renewal end to end with real processes (issue 13, "Rotation"): the local control
 * plane, a CloudCore replica serving mutual TLS as shipped, issuing node certificates that live ten
 * seconds (--node-cert-lifetime-ms), a node admitted with `edgecore join` and run from the config
 * the join wrote (dist/edgecore.js). Under a stream of upstream messages (pods created one after
 * another, each reporting its statuses until Succeeded, beside the node's status reports every
 * second) the certificate is renewed several times: every pod's statuses reach the API, the node
 * connects exactly once, and after CloudCore is killed (-9) and started again the node comes back
 * presenting a renewed certificate, and keeps renewing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { startCluster, type Cloud, type Cluster } from '../helpers/cluster.js';
import { freePort, podWhere } from '../helpers/pods.js';
import { edgecoreBundle, eventually, exitCode, repoRoot, startProcess, type Proc } from '../helpers/process.js';

const NODE = 'renew-1';
/** Node certificates live this long: renewed at ~80 % of it, about every eight seconds. */
const LIFETIME_MS = 10_000;
/** Renewals to see before CloudCore is killed. */
const RENEWALS = 3;

let cluster: Cluster;
let edge: Proc | undefined;
before(async () => {
  cluster = await startCluster();
});
after(async () => {
  // A graceful stop first: EdgeCore stops its pods' processes.
  await edge?.stop();
  await cluster?.close();
});

async function run(args: string[], what: string): Promise<string> {
  const p = startProcess(args, {}, what);
  const code = await exitCode(p, 30_000, what);
  assert.equal(code, 0, p.output());
  return p.output();
}

/** The JSON log lines of a process's output. */
function logLines(p: Proc): Record<string, unknown>[] {
  return p
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return {};
      }
    });
}

/** New serials of the renewals CloudCore logged for the node. */
const renewals = (cloud: Cloud) => logLines(cloud.proc).filter((l) => l.msg === `node ${NODE} renewed its certificate`);
const count = (p: Proc, re: RegExp) => p.output().match(new RegExp(re.source, 'g'))?.length ?? 0;

function pod(name: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default' },
    spec: { nodeName: NODE, restartPolicy: 'Never', containers: [{ name: 'main', image: 'busybox', command: ['true'] }] },
  };
}

test('renewed several times under a stream of messages: nothing lost, no reconnect; after a CloudCore kill -9 the node returns with a renewed certificate', async () => {
  const port = await freePort();
  const cloudArgs = ['--port', String(port), '--node-cert-lifetime-ms', String(LIFETIME_MS)];
  let cloud = await cluster.startCloud('renew-c1', cloudArgs, { mtls: true });

  const created = await run([join(repoRoot, 'dist/ledge.js'), 'token', 'create', '--ttl', '1h', '--kubeconfig', cluster.api.kubeconfigPath], 'ledge token create');
  const token = /^([a-z0-9]{6}\.[a-z0-9]{16}@sha256:[0-9a-f]{64})$/m.exec(created)?.[1];
  assert.ok(token, created);
  const dir = cluster.dataDir(NODE);
  await run([edgecoreBundle, 'join', '--cloud', cloud.url, '--token', token, '--node-name', NODE, '--data-dir', dir], 'edgecore join');
  const certFile = join(dir, 'pki/node.crt');
  const serialOf = () => new X509Certificate(readFileSync(certFile)).serialNumber;
  const joined = new X509Certificate(readFileSync(certFile));
  assert.ok(Date.parse(joined.validTo) - Date.parse(joined.validFrom) <= LIFETIME_MS * 1.2, `a short-lived certificate: ${joined.validFrom} → ${joined.validTo}`);

  edge = cluster.startEdge(NODE, [cloud.url], ['--config', join(dir, 'edgecore.json')]);
  await edge.waitFor(/"msg":"connected to cloud"/, 30_000);

  // The stream, until the certificate was renewed RENEWALS times: pods one after another, each
  // reporting its statuses up to Succeeded, then deleted (the node confirms the deletion upstream too).
  let pods = 0;
  const deadline = Date.now() + RENEWALS * LIFETIME_MS + 60_000;
  while (renewals(cloud).length < RENEWALS) {
    assert.ok(Date.now() < deadline, `${RENEWALS} renewals in time (saw ${renewals(cloud).length}); edge output:\n${edge.output().slice(-3000)}`);
    const name = `stream-${pods++}`;
    await cluster.core.createNamespacedPod({ namespace: 'default', body: pod(name) });
    // Every status of every pod arrives: none is lost while the certificate changes under the link.
    const done = await podWhere(cluster, name, (p) => p.status?.phase === 'Succeeded', `pod ${name} Succeeded`, 30_000);
    assert.equal(done.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 0, name);
    await cluster.core.deleteNamespacedPod({ name, namespace: 'default' });
    await eventually(
      async () => (await cluster.core.readNamespacedPod({ name, namespace: 'default' }).catch((e: { code?: number }) => e.code)) === 404,
      30_000,
      `the deletion of ${name} confirmed by the node`,
    );
  }
  assert.ok(pods >= RENEWALS, `${pods} pods`);
  assert.equal(count(edge, /"msg":"connected to cloud"/), 1, 'connected exactly once');
  assert.equal(count(edge, /"msg":"reconnected to cloud"/), 0, 'no reconnect');
  assert.equal(count(edge, /disconnected from cloud/), 0, 'no disconnect');
  assert.equal(count(edge, /renewal failed/), 0, 'no failed renewal');
  // The cloud logs a renewal once it has answered; the edge once the new files are durable: wait for the edge's last one.
  const renewing = edge;
  await eventually(() => count(renewing, /"msg":"renewed the client certificate/) >= renewals(cloud).length, 20_000, 'the edge to finish writing its last renewal');
  assert.equal(count(edge, /"msg":"renewed the client certificate/), renewals(cloud).length, 'each renewal logged once on the edge');
  const serials = new Set(renewals(cloud).map((l) => String(l.newSerial)));
  assert.equal(serials.size, renewals(cloud).length, 'a new certificate every time');
  assert.ok(!serials.has(joined.serialNumber));

  // Right after a renewal (most of its lifetime ahead), CloudCore dies and comes back on the same port.
  const seen = renewals(cloud).length;
  await eventually(() => renewals(cloud).length > seen && serialOf() === renewals(cloud).at(-1)!.newSerial, LIFETIME_MS * 2, 'one more renewal, on disk');
  for (const l of renewals(cloud)) serials.add(String(l.newSerial));
  await cloud.proc.kill9();
  cloud = await cluster.startCloud('renew-c2', cloudArgs, { mtls: true });
  await edge.waitFor(/"msg":"reconnected to cloud"/, 30_000);
  const connected = await eventually(() => logLines(cloud.proc).find((l) => l.msg === 'node connected' && l.node === NODE), 30_000, 'the node connected to the new CloudCore');
  assert.notEqual(connected.certificateSerial, joined.serialNumber, 'not the certificate of the join');
  // Renewed by the first CloudCore, or (if one fell due during the restart) by the second before connecting.
  for (const l of renewals(cloud)) serials.add(String(l.newSerial));
  assert.ok(serials.has(String(connected.certificateSerial)), `a renewed certificate: ${String(connected.certificateSerial)}`);
  // And the new CloudCore renews it too.
  await eventually(() => renewals(cloud).length >= 1, LIFETIME_MS * 2, 'a renewal by the new CloudCore');
});
