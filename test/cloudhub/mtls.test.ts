/**
 * Mutual TLS on the link (issue 13): CloudHub takes a node's identity from its client
 * certificate (`CN=system:node:<name>, O=system:nodes`, from CloudHub's client CA) and refuses
 * everything else, and plain ws:// only runs when asked for, on loopback. Real TLS on
 * 127.0.0.1 port 0, certificates made in the test (test/helpers/pki.ts), a real EdgeHub.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import WebSocket from 'ws';
import { Beehive } from '../../shared/beehive/index.js';
import { ConfigError } from '../../shared/errors/index.js';
import { newMessage, NODE_NAME_HEADER, SUBPROTOCOL, type Message } from '../../shared/protocol/index.js';
import { loadConfig } from '../../shared/config/index.js';
import { createCloudHub, type CloudHubHttpHandler, type CloudHubOptions } from '../../cloud/cloudhub/index.js';
import { cloudConfigSpec } from '../../cloud/config.js';
import { startCloudCore } from '../../cloud/main.js';
import { EdgeHub } from '../../edge/edgehub/index.js';
import { edgeConfigSpec } from '../../edge/config.js';
import { captureLog, recorderModule, startTestCloud, type LogCapture, type TestCloud } from '../helpers/cloud.js';
import { createTestPki, type Pem, type TestPki } from '../helpers/pki.js';
import { eventually, within } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';

let pki: TestPki;
let otherPki: TestPki;
const cleanups: (() => Promise<void> | void)[] = [];
before(async () => {
  pki = await createTestPki('ledge-test-ca');
  otherPki = await createTestPki('other-ca');
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** The join endpoint's stand-in: the two routes a node without a certificate uses. */
const joinRoutes: CloudHubHttpHandler = (req, res) => {
  if (req.method === 'GET' && req.url === '/v1/ca.crt') {
    res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(pki.ca);
    return true;
  }
  return false;
};

async function mtlsCloud(options: Partial<CloudHubOptions> = {}): Promise<TestCloud> {
  const c = await startTestCloud({ tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca }, httpHandler: joinRoutes, ...options });
  cleanups.push(() => c.stop());
  return c;
}

type Attempt = { opened: WebSocket } | { status: number; body: string };

/** One WebSocket upgrade with an optional client certificate (CloudHub verified with `ca`): the open socket, or the refusal's status and body. */
function attempt(url: string, client?: Pem, headers: Record<string, string> = {}, ca = pki.ca): Promise<Attempt> {
  const ws = new WebSocket(url, SUBPROTOCOL, { ca, ...(client ? { cert: client.cert, key: client.key } : {}), headers, handshakeTimeout: 10_000 });
  cleanups.push(() => ws.terminate());
  return within(
    new Promise<Attempt>((resolve, reject) => {
      ws.once('open', () => resolve({ opened: ws }));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (b: Buffer) => (body += b.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      ws.once('error', reject);
    }),
    10_000,
    'the upgrade to be answered',
  );
}

function refused(a: Attempt): { status: number; body: string } {
  assert.ok('status' in a, 'the upgrade was accepted');
  return a;
}

/** The refusal CloudHub logged, with the remote address. */
function refusalLine(log: LogCapture, re: RegExp): Record<string, unknown> | undefined {
  return log.lines.find((l) => l.level === 'warn' && /^edge connection refused: /.test(String(l.msg)) && re.test(String(l.msg)));
}

/** A refused attempt changed nothing: no node state, nothing handed to the cloud modules. */
function nothingHappened(c: TestCloud): void {
  assert.deepEqual(c.hub.nodeCounts(), { total: 0, live: 0, idle: 0 });
  assert.equal(c.received.length, 0);
}

function get(url: string): Promise<{ status: number; body: string }> {
  return within(
    new Promise((resolve, reject) => {
      const req = httpsRequest(url, { ca: pki.ca }, (res) => {
        let body = '';
        res.on('data', (b: Buffer) => (body += b.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    }),
    10_000,
    `GET ${url}`,
  );
}

describe('cloudhub mTLS: the certificate names the node', () => {
  test("a node certificate from CloudHub's CA opens a session for the node it names (the header may say the same or nothing)", async () => {
    const c = await mtlsCloud();
    assert.match(c.hub.url, /^wss:/);
    const a = await attempt(c.hub.url, await pki.node('node-a'));
    assert.ok('opened' in a, `refused: ${JSON.stringify(a)}`);
    await eventually(() => c.hub.isConnected('node-a'), 5000, 'session of node-a');
    const b = await attempt(c.hub.url, await pki.node('node-b'), { [NODE_NAME_HEADER]: 'node-b' });
    assert.ok('opened' in b, `refused: ${JSON.stringify(b)}`);
    await eventually(() => c.hub.isConnected('node-b'), 5000, 'session of node-b');
    assert.deepEqual(c.hub.connectedNodes().sort(), ['node-a', 'node-b']);
    const line = c.log.lines.find((l) => l.msg === 'node connected' && l.node === 'node-a');
    assert.match(String(line?.certificateSerial), /^[0-9A-F]+$/, 'the session log names the certificate');
  });

  test('a session ends when its client certificate expires (1008, LEDGE_ERR_CERT_EXPIRED): it lasts no longer than the certificate', async () => {
    const c = await mtlsCloud();
    const shortLived = await pki.node('node-e', { notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 2_000) });
    const a = await attempt(c.hub.url, shortLived);
    assert.ok('opened' in a, `refused: ${JSON.stringify(a)}`);
    const closed = await within(
      new Promise<{ code: number; reason: string }>((resolve) => a.opened.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))),
      15_000,
      'the session to close at expiry',
    );
    assert.equal(closed.code, 1008);
    assert.match(closed.reason, /LEDGE_ERR_CERT_EXPIRED/);
    assert.equal(c.hub.isConnected('node-e'), false);
  });

  test('a renewal issued meanwhile (extendSessionExpiry) lets the session outlive the certificate it was opened with', async () => {
    const c = await mtlsCloud();
    const notAfter = new Date(Date.now() + 2_000);
    const [renewed, marker] = await Promise.all([
      pki.node('node-r', { notBefore: new Date(Date.now() - 60_000), notAfter }),
      pki.node('node-m', { notBefore: new Date(Date.now() - 60_000), notAfter }),
    ]);
    const r = await attempt(c.hub.url, renewed);
    const m = await attempt(c.hub.url, marker);
    assert.ok('opened' in r && 'opened' in m);
    await eventually(() => c.hub.isConnected('node-r') && c.hub.isConnected('node-m'), 5000, 'both sessions');
    assert.equal(c.hub.extendSessionExpiry('node-r', Date.now() + 60_000), true);
    // The marker, with the same certificate expiry and no renewal, closes: by then node-r's old certificate has expired too.
    await within(new Promise((resolve) => m.opened.once('close', resolve)), 15_000, 'the marker session to close at expiry');
    assert.equal(c.hub.isConnected('node-r'), true, 'the renewed node keeps its session');
    assert.equal(c.hub.extendSessionExpiry('node-x', Date.now() + 60_000), false, 'no session, nothing to extend');
  });

  test('a resumed TLS session of a client that sent no certificate is refused (authorized is not proof on resumption)', async () => {
    const c = await mtlsCloud();
    const { hostname, port } = new URL(c.hub.url);
    const upgrade = (session?: Buffer) =>
      within(
        new Promise<{ status: number; resumed: boolean; session?: Buffer }>((resolve, reject) => {
          let ticket: Buffer | undefined;
          const sock = tlsConnect({ host: hostname, port: Number(port), ca: pki.ca, servername: 'localhost', ...(session ? { session } : {}) });
          cleanups.push(() => void sock.destroy());
          sock.on('session', (t: Buffer) => (ticket = t));
          sock.once('error', reject);
          sock.once('secureConnect', () =>
            sock.write(
              `GET /v1/edge HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${Buffer.alloc(16, 1).toString('base64')}\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n\r\n`,
            ),
          );
          let head = '';
          sock.on('data', (d: Buffer) => {
            head += d.toString();
            const m = /^HTTP\/1\.1 (\d+)/.exec(head);
            if (m) {
              const resumed = sock.isSessionReused();
              sock.destroy();
              resolve({ status: Number(m[1]), resumed, ...(ticket ? { session: ticket } : {}) });
            }
          });
        }),
        10_000,
        'the upgrade to be answered',
      );
    const first = await upgrade();
    assert.equal(first.status, 401);
    assert.ok(first.session, 'the server issued a session ticket');
    const second = await upgrade(first.session);
    assert.equal(second.resumed, true, "the second connection resumed the first one's TLS session");
    assert.equal(second.status, 401, 'a resumed session without a certificate was let in');
    nothingHappened(c);
  });

  test('node A\'s certificate with a header claiming node B: refused (401, "certificate names node A, header claims B"), logged', async () => {
    const c = await mtlsCloud();
    const r = refused(await attempt(c.hub.url, await pki.node('node-a'), { [NODE_NAME_HEADER]: 'node-b' }));
    assert.equal(r.status, 401);
    assert.match(r.body, /^LEDGE_ERR_HANDSHAKE: certificate names node node-a, header x-ledge-node-name claims node-b\n$/);
    const line = await eventually(() => refusalLine(c.log, /certificate names node node-a/), 5000, 'the refusal logged');
    assert.match(String(line.remote), /^127\.0\.0\.1:\d+$/);
    nothingHappened(c);
  });

  test('a certificate from another CA: refused (401), logged, nothing else happens', async () => {
    const c = await mtlsCloud();
    const r = refused(await attempt(c.hub.url, await otherPki.node('node-a')));
    assert.equal(r.status, 401);
    assert.match(r.body, /^LEDGE_ERR_HANDSHAKE: client certificate not accepted: /);
    const line = await eventually(() => refusalLine(c.log, /client certificate not accepted/), 5000, 'the refusal logged');
    assert.equal(line.code, 'LEDGE_ERR_HANDSHAKE');
    assert.match(String(line.remote), /^127\.0\.0\.1:\d+$/);
    nothingHappened(c);
  });

  test('an expired certificate: refused (401, CERT_HAS_EXPIRED, re-join), logged', async () => {
    const c = await mtlsCloud();
    const day = 86_400_000;
    const expired = await pki.node('node-a', { notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) });
    const r = refused(await attempt(c.hub.url, expired));
    assert.equal(r.status, 401);
    assert.match(r.body, /client certificate not accepted: CERT_HAS_EXPIRED \(expired: re-join the node\)/);
    await eventually(() => refusalLine(c.log, /CERT_HAS_EXPIRED/), 5000, 'the refusal logged');
    nothingHappened(c);
  });

  test('no client certificate (a header naming a node changes nothing): refused (401), logged', async () => {
    const c = await mtlsCloud();
    const r = refused(await attempt(c.hub.url, undefined, { [NODE_NAME_HEADER]: 'node-a' }));
    assert.equal(r.status, 401);
    assert.match(r.body, /^LEDGE_ERR_HANDSHAKE: no client certificate/);
    await eventually(() => refusalLine(c.log, /no client certificate/), 5000, 'the refusal logged');
    nothingHappened(c);
  });

  test('a certificate of the CA that names no node: CN without system:node:, or not in O=system:nodes → refused (401)', async () => {
    const c = await mtlsCloud();
    const plainCn = refused(await attempt(c.hub.url, await pki.issue({ subject: 'CN=node-a, O=system:nodes' })));
    assert.equal(plainCn.status, 401);
    assert.match(plainCn.body, /client certificate subject CN=node-a, O=system:nodes names no node \(expected CN=system:node:<node name>, O=system:nodes\)/);
    const noOrg = refused(await attempt(c.hub.url, await pki.issue({ subject: 'CN=system:node:node-a' })));
    assert.equal(noOrg.status, 401);
    assert.match(noOrg.body, /is not in the organization system:nodes/);
    const badName = refused(await attempt(c.hub.url, await pki.issue({ subject: 'CN=system:node:Bad_Name, O=system:nodes' })));
    assert.match(badName.body, /"Bad_Name" is not a valid node name/);
    // A serving certificate of the same CA is not a client certificate (extended key usage).
    const server = refused(await attempt(c.hub.url, await pki.issue({ subject: 'CN=system:node:node-a, O=system:nodes', usage: 'server' })));
    assert.equal(server.status, 401);
    assert.match(server.body, /client certificate not accepted/);
    await eventually(() => refusalLine(c.log, /names no node/), 5000, 'the refusal logged');
    nothingHappened(c);
  });

  test('httpHandler: plain HTTPS routes work without a client certificate; unhandled ones answer 426 on the WebSocket path, 404 elsewhere', async () => {
    const c = await mtlsCloud();
    const base = c.hub.url.replace(/^wss:/, 'https:').replace(/\/v1\/edge$/, '');
    const ca = await get(`${base}/v1/ca.crt`);
    assert.equal(ca.status, 200);
    assert.equal(ca.body, pki.ca);
    assert.equal((await get(`${base}/v1/nope`)).status, 404);
    assert.equal((await get(`${base}/v1/edge`)).status, 426);
  });

  test('setTlsCredentials: new handshakes use the new CA and certificate, the old CA is refused', async () => {
    const c = await mtlsCloud();
    const next = await createTestPki('next-ca');
    c.hub.setTlsCredentials({ cert: next.server.cert, key: next.server.key, ca: next.ca });
    const a = await attempt(c.hub.url, await next.node('node-n'), {}, next.ca);
    assert.ok('opened' in a, `refused: ${JSON.stringify(a)}`);
    await eventually(() => c.hub.isConnected('node-n'), 5000, 'session of node-n');
    const old = refused(await attempt(c.hub.url, await pki.node('node-o'), {}, next.ca));
    assert.equal(old.status, 401);
    assert.match(old.body, /client certificate not accepted/);
    assert.throws(() => c.hub.setTlsCredentials({ cert: 'not a pem', key: next.server.key, ca: next.ca }));
  });
});

describe('cloudhub: plain ws:// only when asked for, and only on loopback', () => {
  test('no TLS and no --insecure-plain-websocket: CloudHub does not start (ConfigError saying what to do)', async () => {
    assert.throws(
      () => createCloudHub({ host: '127.0.0.1', port: 0 }, { log: captureLog().logger }),
      (err: unknown) => err instanceof ConfigError && /no TLS credentials.*--tls-cert-file.*--tls-ca-file.*--insecure-plain-websocket/.test(err.message),
    );
    // Through the config, as `ledge cloud --port 0` starts it: refused before anything listens.
    const { config } = await loadConfig(cloudConfigSpec, { argv: ['--port', '0'], env: {} });
    await assert.rejects(startCloudCore(config, captureLog().logger), (err: unknown) => err instanceof ConfigError && /no TLS credentials/.test(err.message));
    // TLS without a client CA cannot tell nodes apart either.
    assert.throws(
      () => createCloudHub({ port: 0, tls: { cert: pki.server.cert, key: pki.server.key } }, { log: captureLog().logger }),
      (err: unknown) => err instanceof ConfigError && /no client CA/.test(err.message),
    );
  });

  test('--insecure-plain-websocket on 0.0.0.0 (or any non-loopback address): CloudHub does not start', async () => {
    for (const host of ['0.0.0.0', '::', '10.0.0.5']) {
      assert.throws(
        () => createCloudHub({ host, port: 0, insecurePlainWebSocket: true }, { log: captureLog().logger }),
        (err: unknown) => err instanceof ConfigError && /only on a loopback address/.test(err.message),
        host,
      );
    }
    const { config } = await loadConfig(cloudConfigSpec, { argv: ['--port', '0', '--insecure-plain-websocket', '--bind-address', '0.0.0.0'], env: {} });
    await assert.rejects(startCloudCore(config, captureLog().logger), (err: unknown) => err instanceof ConfigError && /only on a loopback address/.test(err.message));
    const env = await loadConfig(cloudConfigSpec, { argv: ['--port', '0'], env: { LEDGE_CLOUDHUB_INSECURE_PLAIN_WEBSOCKET: 'true' } });
    assert.equal(env.config.hub.insecurePlainWebSocket, true);
  });

  test('plain mode on loopback: the header names the node; one loud warning', async () => {
    const c = await startTestCloud();
    cleanups.push(() => c.stop());
    assert.match(c.hub.url, /^ws:/);
    const a = await new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(c.hub.url, SUBPROTOCOL, { headers: { [NODE_NAME_HEADER]: 'plain-node' }, handshakeTimeout: 10_000 });
      cleanups.push(() => ws.terminate());
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
    assert.ok(a);
    await eventually(() => c.hub.isConnected('plain-node'), 5000, 'session');
    assert.equal(c.log.lines.filter((l) => l.level === 'warn' && /WITHOUT AUTHENTICATION/.test(String(l.msg))).length, 1);
  });
});

/** A real EdgeHub on its own Beehive, with a MetaManager stand-in that records and ACKs what it is sent. */
async function edge(
  url: string,
  nodeName: string,
  client: Pem,
  options: Partial<ConstructorParameters<typeof EdgeHub>[0]> = {},
): Promise<{ hub: EdgeHub; bee: Beehive; log: LogCapture; received: Message[] }> {
  const d = tempDir();
  const files = pki.write(d.path, 'node', client);
  const caFile = join(d.path, 'ca.crt');
  writeFileSync(caFile, pki.ca);
  const log = captureLog();
  const hub = new EdgeHub({ endpoints: [url], nodeName, dataDir: d.path, caFile, ...files, reconnectBaseMs: 20, reconnectMaxMs: 50, ...options }, log.logger);
  const bee = new Beehive({ log: log.logger });
  const received: Message[] = [];
  bee.register(hub);
  bee.register(recorderModule(received, 'metamanager'));
  bee.start();
  cleanups.push(async () => {
    await bee.stop();
    d.cleanup();
  });
  return { hub, bee, log, received };
}

describe('edgehub: presents its client certificate', () => {
  test('EdgeHub with its node certificate connects over wss://; a message goes each way', async () => {
    const c = await mtlsCloud();
    const e = await edge(c.hub.url, 'edge-m', await pki.node('edge-m'));
    await eventually(() => e.hub.connected && c.hub.isConnected('edge-m'), 10_000, 'the mTLS session');
    // Edge → cloud: a reliable status report, handed to the cloud module under the certificate's node.
    const up = newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: 'default/podstatus/p', content: { phase: 'Running' }, sync: true });
    await e.bee.context('edged').sendSync('websocket', up, 5000);
    const got = await eventually(() => c.received.find((m) => m.header.id === up.header.id), 10_000, 'the report at the cloud');
    assert.equal(got.route.resource, 'node/edge-m/default/podstatus/p');
    // Cloud → edge: a configmap, stored by the stand-in and ACKed.
    const down = newMessage({ source: 'test', group: 'resource', operation: 'update', resource: 'default/configmap/cm', resourceVersion: '1', content: { rv: 1 }, sync: true });
    c.hub.sendToNode('edge-m', down);
    await eventually(() => e.received.some((m) => m.header.id === down.header.id), 10_000, 'the configmap at the edge');
    await eventually(() => c.hub.nodeSummary('edge-m')?.stats.acked === 1, 10_000, 'ACKed');
  });

  test("a refused handshake is logged once per backoff streak with the cloud's reason, not per attempt", async () => {
    const c = await mtlsCloud();
    // The certificate names the node, but comes from a CA CloudHub does not trust.
    const e = await edge(c.hub.url, 'edge-x', await otherPki.node('edge-x'));
    await eventually(() => e.log.lines.filter((l) => /^cloud refused the connection again/.test(String(l.msg))).length >= 3, 10_000, 'four refused attempts');
    const warned = e.log.lines.filter((l) => l.level === 'warn' && /refused|failed/.test(String(l.msg)));
    assert.equal(warned.length, 1, JSON.stringify(warned));
    assert.match(String(warned[0]!.msg), /^cloud refused the connection: HTTP 401 LEDGE_ERR_HANDSHAKE: client certificate not accepted: .*re-join the node/);
    assert.equal(warned[0]!.code, 'LEDGE_ERR_HANDSHAKE');
    assert.equal(c.hub.isConnected('edge-x'), false);
  });

  test('a wss:// endpoint without a client certificate, or one naming another node: a clear error at start', async () => {
    const d = tempDir();
    cleanups.push(() => d.cleanup());
    const log = captureLog().logger;
    assert.throws(
      () => new EdgeHub({ endpoints: ['wss://127.0.0.1:1'], nodeName: 'n1', dataDir: d.path }, log),
      (err: unknown) => err instanceof ConfigError && /wss:\/\/127\.0\.0\.1:1\/v1\/edge needs this node's client certificate.*--cert-file, --key-file/.test(err.message),
    );
    const files = pki.write(d.path, 'other', await pki.node('someone-else'));
    assert.throws(
      () => new EdgeHub({ endpoints: ['wss://127.0.0.1:1'], nodeName: 'n1', dataDir: d.path, ...files }, log),
      (err: unknown) => err instanceof ConfigError && /names "system:node:someone-else", not this node \(system:node:n1\)/.test(err.message),
    );
    assert.throws(
      () => new EdgeHub({ endpoints: ['wss://127.0.0.1:1'], nodeName: 'n1', dataDir: d.path, certFile: files.certFile }, log),
      (err: unknown) => err instanceof ConfigError && /set both hub.certFile and hub.keyFile/.test(err.message),
    );
    // The flags and config-file fields exist under the names `ledge join` writes.
    const { config } = await loadConfig(edgeConfigSpec, {
      argv: ['--cloud', 'wss://127.0.0.1:1', '--node-name', 'n1', '--cert-file', files.certFile, '--key-file', files.keyFile, '--ca-file', files.certFile],
      env: {},
    });
    assert.equal(config.hub.certFile, files.certFile);
    assert.equal(config.hub.keyFile, files.keyFile);
  });
});
