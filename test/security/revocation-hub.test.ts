/**
 * Node revocation at CloudHub (issue 13): a real CloudHub serving mutual TLS on 127.0.0.1 port 0,
 * node certificates made in the test (test/helpers/pki.ts) with chosen notBefore, and a real
 * NodeRevocation wired as CloudCore wires it (`revocation` option, `onRevoked` →
 * `closeRevokedSessions`), its state given as the ConfigMap informer and the Node informer give it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { NODE_NAME_HEADER, SUBPROTOCOL } from '../../shared/protocol/index.js';
import { silentLogger } from '../../shared/log/index.js';
import type { CloudHubOptions } from '../../cloud/cloudhub/index.js';
import { createNodeRevocation, defaultRevocationOptions, type NodeRevocation } from '../../cloud/revocation/index.js';
import { startTestCloud, type TestCloud } from '../helpers/cloud.js';
import { createTestPki, type Pem, type TestPki } from '../helpers/pki.js';
import { eventually, within } from '../helpers/process.js';

const B = defaultRevocationOptions.backdateMs;
let pki: TestPki;
const cleanups: (() => Promise<void> | void)[] = [];
before(async () => {
  pki = await createTestPki('ledge-test-ca');
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** CloudHub with mTLS and `revocation`, wired as cloud/main.ts does. */
async function hubWith(revocation: NodeRevocation | CloudHubOptions['revocation'], options: Partial<CloudHubOptions> = {}): Promise<TestCloud> {
  const c = await startTestCloud({ tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca }, revocation, logWindowMs: 60_000, ...options });
  if (revocation && 'onRevoked' in revocation) revocation.onRevoked((nodes) => c.hub.closeRevokedSessions(nodes));
  cleanups.push(() => c.stop());
  return c;
}

/** A NodeRevocation without an API: its state comes from applyConfigMap and nodeDeleted, as its informers give them. */
function revocationFor(): NodeRevocation {
  return createNodeRevocation({}, { log: silentLogger });
}

/** A node certificate issued `issuedAt` (its notBefore backdated as the CA does). */
function certIssuedAt(node: string, issuedAt: number): Promise<Pem> {
  return pki.node(node, { notBefore: new Date(issuedAt - B), notAfter: new Date(issuedAt + 86_400_000) });
}

type Attempt = { opened: WebSocket } | { status: number; body: string; retryAfter?: string };

function attempt(url: string, client: Pem): Promise<Attempt> {
  const ws = new WebSocket(url, SUBPROTOCOL, { ca: pki.ca, cert: client.cert, key: client.key, handshakeTimeout: 10_000 });
  cleanups.push(() => ws.terminate());
  return within(
    new Promise<Attempt>((resolve, reject) => {
      ws.once('open', () => resolve({ opened: ws }));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (b: Buffer) => (body += b.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ...(res.headers['retry-after'] ? { retryAfter: String(res.headers['retry-after']) } : {}) }));
      });
      ws.once('error', reject);
    }),
    10_000,
    'the upgrade to be answered',
  );
}

function opened(a: Attempt): WebSocket {
  assert.ok('opened' in a, `refused: ${JSON.stringify(a)}`);
  return a.opened;
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return within(new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))), 10_000, 'the session to close');
}

const revokedAt = (t: number) => ({ metadata: { name: 'ledge-revoked-nodes' }, data: { 'edge-1': new Date(t).toISOString() } });

describe('cloudhub refuses revoked nodes', () => {
  test('revoking a connected node closes its session (1008, the reason); its reconnects are refused 401 with the reason, logged once; other nodes stay', async () => {
    const revocation = revocationFor();
    const c = await hubWith(revocation);
    const T = Date.now() - 60_000;
    const old = await certIssuedAt('edge-1', T - 3_600_000);
    const ws = opened(await attempt(c.hub.url, old));
    const other = opened(await attempt(c.hub.url, await certIssuedAt('edge-2', T - 3_600_000)));
    await eventually(() => c.hub.isConnected('edge-1') && c.hub.isConnected('edge-2'), 5000, 'both sessions');
    const closing = closed(ws);
    revocation.applyConfigMap(revokedAt(T)); // the ConfigMap informer's update
    const { code, reason } = await closing;
    assert.equal(code, 1008);
    assert.match(reason, /^LEDGE_ERR_NODE_REVOKED: node edge-1 was revoked at /);
    assert.equal(c.hub.isConnected('edge-1'), false);
    assert.equal(c.hub.isConnected('edge-2'), true, 'another node keeps its session');
    assert.equal(other.readyState, WebSocket.OPEN);
    for (let i = 0; i < 3; i++) {
      const r = await attempt(c.hub.url, old);
      assert.ok('status' in r, 'the revoked node was let in again');
      assert.equal(r.status, 401);
      assert.equal(r.body.trim(), `LEDGE_ERR_NODE_REVOKED: node edge-1 was revoked at ${new Date(T).toISOString()}: re-join it (edgecore join --force with a new token)`);
    }
    const refusals = c.log.lines.filter((l) => l.level === 'warn' && /^edge connection refused: node edge-1 was revoked/.test(String(l.msg)));
    assert.equal(refusals.length, 1, 'one line per node and window');
    assert.equal(refusals[0]!.code, 'LEDGE_ERR_NODE_REVOKED');
  });

  test('a re-joined node (a certificate issued after the revocation) is accepted, right after it', async () => {
    const revocation = revocationFor();
    const c = await hubWith(revocation);
    const T = Date.now();
    revocation.applyConfigMap(revokedAt(T));
    const rejoined = await certIssuedAt('edge-1', T + 1); // 1 ms after T; its notBefore is 5 minutes before T
    opened(await attempt(c.hub.url, rejoined));
    await eventually(() => c.hub.isConnected('edge-1'), 5000, 'the re-joined session');
    assert.deepEqual(c.hub.closeRevokedSessions(), [], 'nothing to close');
  });

  test('a deleted edge Node closes its session at once and refuses it', async () => {
    const revocation = revocationFor();
    const c = await hubWith(revocation);
    const ws = opened(await attempt(c.hub.url, await certIssuedAt('edge-1', Date.now() - 3_600_000)));
    await eventually(() => c.hub.isConnected('edge-1'), 5000, 'the session');
    const closing = closed(ws);
    revocation.nodeDeleted('edge-1'); // the EdgeController's Node informer: delete
    assert.equal((await closing).code, 1008);
  });

  test('while the revocations are not loaded, every node is refused with 503 and Retry-After (fail closed)', async () => {
    const c = await hubWith({ loaded: () => false, refusal: () => undefined });
    const r = await attempt(c.hub.url, await certIssuedAt('edge-1', Date.now()));
    assert.ok('status' in r);
    assert.equal(r.status, 503);
    assert.equal(r.retryAfter, '1');
    assert.match(r.body, /^LEDGE_ERR_REVOCATIONS_UNAVAILABLE: /);
    assert.equal(c.hub.nodeCounts().total, 0);
  });

  test('plain ws:// has no revocation: nothing there identifies a node (documented)', async () => {
    const revocation = revocationFor();
    revocation.applyConfigMap(revokedAt(Date.now()));
    const c = await startTestCloud({ revocation });
    cleanups.push(() => c.stop());
    const ws = new WebSocket(c.hub.url, SUBPROTOCOL, { headers: { [NODE_NAME_HEADER]: 'edge-1' } });
    cleanups.push(() => ws.terminate());
    await within(new Promise((r) => ws.once('open', r)), 10_000, 'the plain session');
    assert.deepEqual(c.hub.closeRevokedSessions(), []);
  });
});
