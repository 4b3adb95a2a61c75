/**
 * `edgecore join` (edge/join) against a fake CloudHub speaking the issue 13 wire protocol over
 * real TLS on loopback: the files and their modes, the CA pin, the token only over a verified
 * connection, CloudHub's refusals surfaced, re-joining, and the deadline.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { edgeConfigSpec } from '../../edge/config.js';
import { join, runJoin, JOIN_FILES } from '../../edge/join/index.js';
import { loadConfig } from '../../shared/config/index.js';
import { AlreadyJoinedError, CaHashMismatchError, JoinError, JoinRefusedError, JoinTokenMalformedError, TimeoutError } from '../../shared/errors/index.js';
import { tempDir } from '../helpers/files.js';
import { makeCa, signCsr, startFakeCloudHub, startSilentServer, type TestCa } from './fake-join-server.js';

const CREDENTIAL = 'abcdef.0123456789abcdef';
const tokenFor = (ca: TestCa) => `${CREDENTIAL}@${ca.hash}`;
const mode = (path: string) => statSync(path).mode & 0o777;

/** Captured output of one runJoin. */
function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: {} } };
}

test('join writes key, certificates and config with private modes; the certificate verifies and names the node', { timeout: 20_000 }, async (t) => {
  const ca = await makeCa();
  const hub = await startFakeCloudHub({ tlsCa: ca });
  t.after(() => hub.close());
  const dir = tempDir('ledge-join-');
  t.after(dir.cleanup);
  // An existing pki/ with wider permissions is narrowed.
  mkdirSync(joinPath(dir.path, 'pki'), { mode: 0o755 });

  const r = await join({ cloud: hub.url, token: tokenFor(ca), nodeName: 'pi-1', dataDir: dir.path });

  assert.equal(mode(joinPath(dir.path, JOIN_FILES.pkiDir)), 0o700);
  for (const f of [JOIN_FILES.key, JOIN_FILES.cert, JOIN_FILES.ca, JOIN_FILES.config]) assert.equal(mode(joinPath(dir.path, f)), 0o600, f);
  const cert = new X509Certificate(readFileSync(r.certFile));
  const caCert = new X509Certificate(readFileSync(r.caFile));
  assert.ok(cert.verify(caCert.publicKey), 'node.crt is signed by ca.crt');
  assert.equal(caCert.fingerprint256, new X509Certificate(ca.pem).fingerprint256, 'ca.crt is the pinned CA');
  assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(r.keyFile))), 'node.crt is for node.key');
  assert.match(readFileSync(r.keyFile, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
  assert.equal(cert.subject, 'CN=system:node:pi-1\nO=system:nodes');
  assert.deepEqual(JSON.parse(readFileSync(r.configFile, 'utf8')), {
    cloud: [hub.url],
    nodeName: 'pi-1',
    dataDir: dir.path,
    hub: { caFile: r.caFile, certFile: r.certFile, keyFile: r.keyFile },
  });
  // EdgeCore reads that file as it is (its config loader refuses unknown or mistyped fields).
  const { config } = await loadConfig(edgeConfigSpec, { file: r.configFile, env: {} });
  assert.deepEqual(
    [config.cloud, config.nodeName, config.dataDir, config.hub.caFile, config.hub.certFile, config.hub.keyFile],
    [[hub.url], 'pi-1', dir.path, r.caFile, r.certFile, r.keyFile],
  );
  // The token went only with the POST, as a bearer credential; the CSR carried no private key.
  assert.deepEqual(
    hub.seen.map((s) => [s.method, s.url, s.authorization]),
    [
      ['GET', '/v1/ca.crt', undefined],
      ['POST', '/v1/join', `Bearer ${CREDENTIAL}`],
    ],
  );
  const body = JSON.parse(hub.seen[1]!.body) as { nodeName: string; csr: string };
  assert.equal(body.nodeName, 'pi-1');
  assert.match(body.csr, /^-----BEGIN CERTIFICATE REQUEST-----\n/);
  assert.doesNotMatch(hub.seen[1]!.body, /PRIVATE KEY/);
  assert.ok(r.notAfter.getTime() > Date.now());
});

test('a CA that does not match the token hash is refused, naming both hashes; the token is never sent', { timeout: 20_000 }, async (t) => {
  const ca = await makeCa();
  const other = await makeCa('someone-else');
  const hub = await startFakeCloudHub({ tlsCa: ca });
  t.after(() => hub.close());
  const dir = tempDir('ledge-join-');
  t.after(dir.cleanup);

  await assert.rejects(join({ cloud: hub.url, token: tokenFor(other), nodeName: 'pi-1', dataDir: dir.path }), (err: Error) => {
    assert.ok(err instanceof CaHashMismatchError, String(err));
    assert.ok(err.message.includes(ca.hash) && err.message.includes(other.hash), err.message);
    return true;
  });
  assert.deepEqual(
    hub.seen.map((s) => [s.method, s.url, s.authorization]),
    [['GET', '/v1/ca.crt', undefined]],
  );
  assert.equal(existsSync(joinPath(dir.path, JOIN_FILES.cert)), false);
  assert.equal(existsSync(joinPath(dir.path, JOIN_FILES.key)), false);
  assert.equal(existsSync(joinPath(dir.path, JOIN_FILES.config)), false);
});

test("CloudHub's 401 and its message are surfaced; nothing is written", { timeout: 20_000 }, async (t) => {
  const ca = await makeCa();
  const message = 'join token abcdef expired at 2026-01-01T00:00:00Z';
  const hub = await startFakeCloudHub({ tlsCa: ca, onJoin: async () => ({ status: 401, body: { code: 'LEDGE_ERR_JOIN_TOKEN_EXPIRED', message } }) });
  t.after(() => hub.close());
  const dir = tempDir('ledge-join-');
  t.after(dir.cleanup);

  await assert.rejects(join({ cloud: hub.url, token: tokenFor(ca), nodeName: 'pi-1', dataDir: dir.path }), (err: Error) => {
    assert.ok(err instanceof JoinRefusedError, String(err));
    assert.equal(err.status, 401);
    assert.equal(err.serverCode, 'LEDGE_ERR_JOIN_TOKEN_EXPIRED');
    assert.ok(err.message.includes(message), err.message);
    return true;
  });
  assert.equal(existsSync(joinPath(dir.path, JOIN_FILES.cert)), false);
  assert.equal(existsSync(joinPath(dir.path, JOIN_FILES.config)), false);
});

test('a server whose TLS certificate is not from the pinned CA gets no POST: the token is never sent', { timeout: 20_000 }, async (t) => {
  // The server serves (and pins to) CA X at /v1/ca.crt, but its TLS certificate comes from CA Y.
  const pinned = await makeCa();
  const impostor = await makeCa('impostor');
  const hub = await startFakeCloudHub({ tlsCa: impostor, servedCa: pinned });
  t.after(() => hub.close());
  const dir = tempDir('ledge-join-');
  t.after(dir.cleanup);

  await assert.rejects(join({ cloud: hub.url, token: tokenFor(pinned), nodeName: 'pi-1', dataDir: dir.path }), (err: Error) => {
    assert.ok(err instanceof JoinError, String(err));
    assert.match(err.message, /not from the pinned CA .*the token was not sent/);
    return true;
  });
  assert.deepEqual(
    hub.seen.map((s) => [s.method, s.url]),
    [['GET', '/v1/ca.crt']],
  );
  assert.equal(existsSync(joinPath(dir.path, JOIN_FILES.cert)), false);
});

test('a certificate for another key or another node is refused and nothing is written', { timeout: 20_000 }, async (t) => {
  const ca = await makeCa();
  const dir = tempDir('ledge-join-');
  t.after(dir.cleanup);
  // Another node: the server signs our key but names pi-2.
  const other = await startFakeCloudHub({ tlsCa: ca, onJoin: async (r) => ({ status: 200, body: { certificate: await signCsr(ca, r.csr, 'pi-2'), ca: ca.pem } }) });
  t.after(() => other.close());
  await assert.rejects(
    join({ cloud: other.url, token: tokenFor(ca), nodeName: 'pi-1', dataDir: dir.path }),
    /names "CN=system:node:pi-2, O=system:nodes", not CN=system:node:pi-1/,
  );

  // Another key: the server keeps the first CSR it saw (a join into a scratch directory) and answers every later join with a certificate for that key.
  let firstCsr: string | undefined;
  const stale = await startFakeCloudHub({
    tlsCa: ca,
    onJoin: async (r) => {
      firstCsr ??= r.csr;
      return { status: 200, body: { certificate: await signCsr(ca, firstCsr, r.nodeName), ca: ca.pem } };
    },
  });
  t.after(() => stale.close());
  const scratch = tempDir('ledge-join-');
  t.after(scratch.cleanup);
  await join({ cloud: stale.url, token: tokenFor(ca), nodeName: 'pi-1', dataDir: scratch.path });
  await assert.rejects(join({ cloud: stale.url, token: tokenFor(ca), nodeName: 'pi-1', dataDir: dir.path }), /not for this node's key/);

  for (const f of [JOIN_FILES.key, JOIN_FILES.cert, JOIN_FILES.ca, JOIN_FILES.config]) assert.equal(existsSync(joinPath(dir.path, f)), false, f);
});

test('re-joining a node that holds a certificate is refused without --force; --force replaces key and certificate', { timeout: 20_000 }, async (t) => {
  const ca = await makeCa();
  const hub = await startFakeCloudHub({ tlsCa: ca });
  t.after(() => hub.close());
  const dir = tempDir('ledge-join-');
  t.after(dir.cleanup);
  const argv = ['--cloud', hub.url, '--token', tokenFor(ca), '--node-name', 'pi-1', '--data-dir', dir.path];

  const first = io();
  assert.equal(await runJoin(argv, first.io), 0, first.err.join(''));
  assert.equal(first.out.length, 1);
  assert.match(first.out[0]!, new RegExp(`start EdgeCore with: edgecore --config ${joinPath(dir.path, 'edgecore.json')}\\n$`));
  const key = readFileSync(joinPath(dir.path, JOIN_FILES.key), 'utf8');
  const posts = () => hub.seen.filter((s) => s.method === 'POST').length;
  assert.equal(posts(), 1);

  const again = io();
  assert.equal(await runJoin(argv, again.io), 1);
  assert.deepEqual(again.out, []);
  assert.equal(again.err.length, 1, again.err.join(''));
  assert.match(again.err[0]!, /^edgecore join: this node has joined already .*--force .*\n$/);
  assert.equal(posts(), 1, 'a refused re-join talks to nobody');
  assert.equal(readFileSync(joinPath(dir.path, JOIN_FILES.key), 'utf8'), key);
  await assert.rejects(join({ cloud: hub.url, token: tokenFor(ca), nodeName: 'pi-1', dataDir: dir.path }), AlreadyJoinedError);

  const forced = io();
  assert.equal(await runJoin([...argv, '--force'], forced.io), 0, forced.err.join(''));
  assert.equal(posts(), 2);
  const newKey = readFileSync(joinPath(dir.path, JOIN_FILES.key), 'utf8');
  assert.notEqual(newKey, key);
  assert.ok(new X509Certificate(readFileSync(joinPath(dir.path, JOIN_FILES.cert))).checkPrivateKey(createPrivateKey(newKey)));
});

test('a server that never answers fails with a timeout naming the step, for the TLS handshake and for the join request', { timeout: 20_000 }, async (t) => {
  const dir = tempDir('ledge-join-');
  t.after(dir.cleanup);
  const silent = await startSilentServer();
  t.after(() => silent.close());
  const ca = await makeCa();
  await assert.rejects(join({ cloud: silent.url, token: tokenFor(ca), nodeName: 'pi-1', dataDir: dir.path, timeoutMs: 300 }), (err: Error) => {
    assert.ok(err instanceof TimeoutError, String(err));
    assert.match(err.message, /did not answer within 300 ms \(GET \/v1\/ca\.crt\)/);
    return true;
  });
  assert.equal(silent.connections(), 1);

  const hub = await startFakeCloudHub({ tlsCa: ca, onJoin: async () => 'hang' });
  t.after(() => hub.close());
  await assert.rejects(join({ cloud: hub.url, token: tokenFor(ca), nodeName: 'pi-1', dataDir: dir.path, timeoutMs: 1000 }), (err: Error) => {
    assert.ok(err instanceof TimeoutError, String(err));
    assert.match(err.message, /\(POST \/v1\/join\)/);
    return true;
  });
  assert.equal(existsSync(joinPath(dir.path, JOIN_FILES.cert)), false);
});

test('bad input is refused before any connection: node name, token without the CA hash, plain ws://', { timeout: 20_000 }, async (t) => {
  const dir = tempDir('ledge-join-');
  t.after(dir.cleanup);
  const silent = await startSilentServer();
  t.after(() => silent.close());
  const ca = await makeCa();
  const base = { cloud: silent.url, token: tokenFor(ca), nodeName: 'pi-1', dataDir: dir.path, timeoutMs: 300 };
  await assert.rejects(join({ ...base, nodeName: 'Pi_1' }), /not a DNS-1123 subdomain/);
  await assert.rejects(join({ ...base, token: CREDENTIAL }), (err: Error) => err instanceof JoinTokenMalformedError && /no CA hash/.test(err.message));
  await assert.rejects(join({ ...base, cloud: silent.url.replace('wss:', 'ws:') }), /must be wss:\/\/ or https:\/\//);
  const bad = io();
  assert.equal(await runJoin(['--cloud', silent.url, '--token', 'abcdef.short@sha256:00', '--node-name', 'pi-1', '--data-dir', dir.path], bad.io), 2);
  assert.equal(bad.err.length, 1);
  assert.doesNotMatch(bad.err[0]!, /short/, 'the secret is not echoed');
  assert.equal(silent.connections(), 0);
});
