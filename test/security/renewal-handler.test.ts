/**
 * `POST /v1/renew` over real TLS on loopback (issue 13): CloudCore's renewal handler
 * (cloud/certauthority/renew.ts) on an HTTPS server configured as CloudHub's (client certificate
 * asked for, not required), the edge's renewal (edge/edgehub/renewal.ts) against it, and a real
 * EdgeHub renewing beside its live session on a real CloudHub: the session is not interrupted, a
 * failed renewal leaves it alone, and the next connection presents the renewed certificate.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, request as httpsRequest, type Server } from 'node:https';
import { join } from 'node:path';
import { caFromPem, createRenewHandler, generateCaPem, type CertificateAuthority, type RenewHandlerOptions } from '../../cloud/certauthority/index.js';
import { CertificateRenewal } from '../../edge/edgehub/renewal.js';
import { EdgeHub } from '../../edge/edgehub/index.js';
import { createCsr } from '../../edge/join/csr.js';
import { Beehive } from '../../shared/beehive/index.js';
import { newMessage, type Message } from '../../shared/protocol/index.js';
import { captureLog, recorderModule, startTestCloud, type LogCapture } from '../helpers/cloud.js';
import { tempDir } from '../helpers/files.js';
import { eventually, within } from '../helpers/process.js';

const DAY = 86_400_000;
const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

let ca: CertificateAuthority;
let caPem: { cert: string; key: string };
let serving: { cert: string; key: string };
/** Another CA: its certificates name nodes too, but CloudHub does not trust it. */
let foreign: CertificateAuthority;

before(async () => {
  caPem = await generateCaPem();
  ca = await caFromPem(caPem.cert, caPem.key, { source: 'files', where: 'test CA' });
  serving = await ca.issueServingCert(['127.0.0.1']);
  const other = await generateCaPem();
  foreign = await caFromPem(other.cert, other.key, { source: 'files', where: 'foreign CA' });
});

interface Node {
  cert: string;
  key: string;
}

/** A key and a certificate for `name` from `from` (default the CA; with `issuedAt`, the CA on a clock set to then), valid `lifetimeMs`. */
async function nodeCredentials(name: string, o: { from?: CertificateAuthority; lifetimeMs?: number; issuedAt?: number } = {}): Promise<Node> {
  const issuedAt = o.issuedAt;
  const from = issuedAt === undefined ? (o.from ?? ca) : await caFromPem(caPem.cert, caPem.key, { source: 'files', where: 'past', now: () => issuedAt });
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const cert = await from.signNodeCsr(createCsr(name, keys.privateKey, keys.publicKey), name, o.lifetimeMs ? { lifetimeMs: o.lifetimeMs } : {});
  return { cert, key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

/** An HTTPS server set up as CloudHub's (client certificate requested, not required), serving `handler` (404 beside it). */
async function renewServer(
  options: Partial<RenewHandlerOptions> = {},
  tls: { cert: string; key: string } = serving,
  clientCas: string[] = [ca.certPem],
): Promise<{ url: string; port: number; log: LogCapture; requests: number }> {
  const log = captureLog();
  const handler = createRenewHandler({ ca, log: log.logger, ...options });
  const state = { url: '', port: 0, log, requests: 0 };
  const server: Server = createServer({ ...tls, ca: clientCas, requestCert: true, rejectUnauthorized: false }, (req: IncomingMessage, res: ServerResponse) => {
    state.requests++;
    if (!handler(req, res)) res.writeHead(404).end('not found\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((r) => server.close(r)));
  cleanups.push(() => server.closeAllConnections());
  state.port = (server.address() as { port: number }).port;
  state.url = `wss://127.0.0.1:${state.port}`;
  return state;
}

/** One raw request: status, headers and the parsed JSON body. */
function call(
  port: number,
  o: { client?: Node; method?: string; path?: string; body?: string; type?: string },
): Promise<{ status: number; headers: Record<string, unknown>; body: Record<string, unknown> }> {
  return within(
    new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          method: o.method ?? 'POST',
          path: o.path ?? '/v1/renew',
          ca: ca.certPem,
          agent: false,
          ...(o.client ? { cert: o.client.cert, key: o.client.key } : {}),
          headers: { 'content-type': o.type ?? 'application/json' },
        },
        (res) => {
          let text = '';
          res.on('data', (b: Buffer) => (text += b.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
        },
      );
      req.on('error', reject);
      req.end(o.body);
    }),
    10_000,
    'the renewal answer',
  );
}

function csrBody(name = 'n1', extra: Record<string, unknown> = {}): string {
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return JSON.stringify({ csr: createCsr(name, keys.privateKey, keys.publicKey), ...extra });
}

/** The node's files in a fresh directory. */
function writeNode(node: Node): { dir: string; certFile: string; keyFile: string; caFile: string } {
  const d = tempDir('ledge-renew-');
  cleanups.push(d.cleanup);
  const files = { dir: d.path, certFile: join(d.path, 'node.crt'), keyFile: join(d.path, 'node.key'), caFile: join(d.path, 'ca.crt') };
  writeFileSync(files.certFile, node.cert, { mode: 0o600 });
  writeFileSync(files.keyFile, node.key, { mode: 0o600 });
  writeFileSync(files.caFile, ca.certPem);
  return files;
}

function renewalFor(files: ReturnType<typeof writeNode>, url: string, log: LogCapture, nodeName = 'n1'): CertificateRenewal {
  return new CertificateRenewal({ nodeName, ...files, dataDir: files.dir, endpoint: () => url, log: log.logger });
}

const cn = (pem: string) => /CN=([^\n]*)/.exec(new X509Certificate(pem).subject)?.[1];

describe('POST /v1/renew', () => {
  test('the node of the presented certificate gets a certificate for the CSR’s key (a name in the body is ignored); logged with both serials', async () => {
    const s = await renewServer();
    const node = await nodeCredentials('n1');
    const r = await call(s.port, { client: node, body: csrBody('n2', { nodeName: 'n2' }) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(cn(String(r.body.certificate)), 'system:node:n1');
    assert.equal(r.body.ca, ca.certPem);
    const line = s.log.lines.find((l) => l.msg === 'node n1 renewed its certificate');
    assert.ok(line, JSON.stringify(s.log.lines));
    assert.equal(line.serial, new X509Certificate(node.cert).serialNumber);
    assert.equal(line.newSerial, new X509Certificate(String(r.body.certificate)).serialNumber);
  });

  test('no client certificate, another CA’s, an expired one, a subject that is no node’s, a revoked node: 401 "re-join", nothing signed', async () => {
    const revokedAsked: [string, boolean][] = [];
    const s = await renewServer({
      isRevoked: (node, cert) => {
        revokedAsked.push([node, cert instanceof X509Certificate]);
        return node === 'gone';
      },
    });
    const expired = await nodeCredentials('n1', { issuedAt: Date.now() - 10 * DAY, lifetimeMs: DAY });
    assert.ok(Date.parse(new X509Certificate(expired.cert).validTo) < Date.now());
    // A certificate from the node CA whose subject names no node (CloudHub's own serving certificate is one).
    const notANode = { cert: serving.cert, key: serving.key };
    const cases: [string, Node | undefined, RegExp][] = [
      ['none', undefined, /no client certificate/],
      ['foreign', await nodeCredentials('n1', { from: foreign }), /is not accepted \(/],
      ['expired', expired, /has expired: re-join/],
      ['revoked', await nodeCredentials('gone'), /node gone was revoked: re-join/],
    ];
    for (const [what, client, re] of cases) {
      const r = await call(s.port, { ...(client ? { client } : {}), body: csrBody() });
      assert.equal(r.status, 401, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'LEDGE_ERR_RENEW_UNAUTHENTICATED', what);
      assert.match(String(r.body.message), re, what);
      assert.match(String(r.body.message), /re-join|edgecore join/, what);
    }
    const r = await call(s.port, { client: notANode, body: csrBody() });
    assert.equal(r.status, 401, JSON.stringify(r.body));
    assert.ok(!s.log.lines.some((l) => /renewed its certificate/.test(String(l.msg))), 'nothing was signed');
    assert.deepEqual(revokedAsked, [['gone', true]], 'isRevoked is asked with the node and its X509Certificate');
    assert.equal(s.log.lines.filter((l) => l.level === 'warn' && /^certificate renewal of node .* refused \(401\)/.test(String(l.msg))).length, 5);
  });

  test('a server whose client CA bundle trusts another CA too still renews only the node CA’s certificates', async () => {
    const s = await renewServer({}, serving, [ca.certPem, foreign.certPem]);
    const r = await call(s.port, { client: await nodeCredentials('n1', { from: foreign }), body: csrBody() });
    assert.equal(r.status, 401, JSON.stringify(r.body));
    assert.match(String(r.body.message), /not from the node CA: re-join/);
    assert.equal((await call(s.port, { client: await nodeCredentials('n1'), body: csrBody() })).status, 200);
  });

  test('a failing revocation check signs nothing (503); bad requests: 405, 400, 413; over the rate: 429 with Retry-After', async () => {
    const failing = await renewServer({
      isRevoked: () => {
        throw new Error('informer not synced');
      },
    });
    const node = await nodeCredentials('n1');
    assert.equal((await call(failing.port, { client: node, body: csrBody() })).status, 503);
    // A refusal text (cloud/revocation's) is what the node is told.
    const reasoned = await renewServer({ isRevoked: (n) => `node ${n} was revoked at 2030-01-01T00:00:00Z: re-join it` });
    const refused = await call(reasoned.port, { client: node, body: csrBody() });
    assert.equal(refused.status, 401);
    assert.equal(refused.body.message, 'node n1 was revoked at 2030-01-01T00:00:00Z: re-join it');

    // Two renewals at once: the two bad requests below spend them (GET is refused before the bucket).
    const s = await renewServer({ ratePerMinute: 1, burst: 2 });
    assert.equal((await call(s.port, { client: node, method: 'GET' })).status, 405);
    const badType = await call(s.port, { client: node, body: csrBody(), type: 'text/plain' });
    assert.equal(badType.status, 400);
    const badCsr = await call(s.port, { client: node, body: JSON.stringify({ csr: 'not a csr' }) });
    assert.equal(badCsr.status, 400);
    assert.equal(badCsr.body.code, 'LEDGE_ERR_CSR_INVALID');
    const limited = await call(s.port, { client: node, body: csrBody() });
    assert.equal(limited.status, 429);
    assert.match(String(limited.headers['retry-after']), /^\d+$/);
    const big = await renewServer({ maxBodyBytes: 1024 });
    assert.equal((await call(big.port, { client: node, body: JSON.stringify({ csr: 'x'.repeat(4096) }) })).status, 413);
    // Unauthenticated requests do not spend the bucket: the rate-limited server still refuses them as 401.
    assert.equal((await call(s.port, { body: csrBody() })).status, 401);
  });
});

describe('the edge renews over TLS', () => {
  test('renewNow: verified CloudHub, current certificate presented, new key and certificate written', async () => {
    const s = await renewServer();
    const node = await nodeCredentials('n1');
    const files = writeNode(node);
    const log = captureLog();
    assert.equal(await renewalFor(files, s.url, log).renewNow(), true, JSON.stringify(log.lines));
    const key = readFileSync(files.keyFile, 'utf8');
    const cert = new X509Certificate(readFileSync(files.certFile));
    assert.notEqual(key, node.key);
    assert.ok(cert.checkPrivateKey(createPrivateKey(key)));
    assert.equal(s.log.lines.find((l) => l.msg === 'node n1 renewed its certificate')?.newSerial, cert.serialNumber);
    // The renewed pair renews again.
    assert.equal(await renewalFor(files, s.url, log).renewNow(), true);
  });

  test('a CloudHub not verified by hub.caFile gets nothing: the CSR is not sent; an expired certificate is refused with re-join', async () => {
    const rogueServing = await foreign.issueServingCert(['127.0.0.1']);
    const rogue = await renewServer({}, rogueServing);
    const node = await nodeCredentials('n1');
    const files = writeNode(node);
    const log = captureLog();
    assert.equal(await renewalFor(files, rogue.url, log).renewNow(), false);
    assert.equal(rogue.requests, 0, 'no request reached the unverified server');
    assert.match(String(log.lines.at(-1)!.msg), /not from the pinned CA .*the CSR was not sent/);
    assert.equal(readFileSync(files.certFile, 'utf8'), node.cert);

    const s = await renewServer();
    const expired = writeNode(await nodeCredentials('n1', { issuedAt: Date.now() - 10 * DAY, lifetimeMs: DAY }));
    assert.equal(await renewalFor(expired, s.url, log).renewNow(), false);
    assert.match(String(log.lines.at(-1)!.msg), /HTTP 401 LEDGE_ERR_RENEW_UNAUTHENTICATED\): the client certificate has expired: re-join/);
  });
});

describe('EdgeHub renews beside its session', () => {
  /** A real CloudHub (mTLS, the renewal handler behind `fail`) and a real EdgeHub whose certificate is due for renewal at once. */
  async function link(o: { fail?: () => boolean } = {}) {
    const log = captureLog();
    const renew = createRenewHandler({ ca, log: log.logger, nodeCertLifetimeMs: 10 * 3_600_000 });
    const cloud = await startTestCloud({
      tls: { cert: serving.cert, key: serving.key, ca: ca.certPem },
      httpHandler: (req, res) => {
        if (o.fail?.() && req.url === '/v1/renew') {
          res.writeHead(500, { 'content-type': 'application/json' }).end('{"code":"LEDGE_ERR","message":"renewals are broken today"}');
          return true;
        }
        return renew(req, res);
      },
    });
    cleanups.push(() => cloud.stop());
    // One hour, backdated five minutes: with renewal at 5 % of it (± 1 %) it is due at once; the renewed ones (10 h) are not.
    const files = writeNode(await nodeCredentials('edge-r', { lifetimeMs: 3_600_000 }));
    const edgeLog = captureLog();
    const hub = new EdgeHub(
      {
        endpoints: [cloud.hub.url],
        nodeName: 'edge-r',
        dataDir: files.dir,
        caFile: files.caFile,
        certFile: files.certFile,
        keyFile: files.keyFile,
        reconnectBaseMs: 20,
        reconnectMaxMs: 50,
        renewAtFraction: 0.05,
        renewJitterFraction: 0.01,
        renewRetryBaseMs: 50,
        renewRetryMaxMs: 100,
      },
      edgeLog.logger,
    );
    const bee = new Beehive({ log: edgeLog.logger });
    const received: Message[] = [];
    bee.register(hub);
    bee.register(recorderModule(received, 'metamanager'));
    bee.start();
    cleanups.push(() => bee.stop());
    return { cloud, hub, bee, files, edgeLog, log };
  }

  test('an expired certificate at start: one error line with the re-join command, however often CloudHub refuses it', async () => {
    const log = captureLog();
    const cloud = await startTestCloud({ tls: { cert: serving.cert, key: serving.key, ca: ca.certPem }, httpHandler: createRenewHandler({ ca, log: log.logger }) });
    cleanups.push(() => cloud.stop());
    const files = writeNode(await nodeCredentials('edge-x', { issuedAt: Date.now() - 10 * DAY, lifetimeMs: DAY }));
    const edgeLog = captureLog();
    const hub = new EdgeHub(
      {
        endpoints: [cloud.hub.url],
        nodeName: 'edge-x',
        dataDir: files.dir,
        caFile: files.caFile,
        certFile: files.certFile,
        keyFile: files.keyFile,
        reconnectBaseMs: 20,
        reconnectMaxMs: 50,
      },
      edgeLog.logger,
    );
    const bee = new Beehive({ log: edgeLog.logger });
    bee.register(hub);
    bee.start();
    cleanups.push(() => bee.stop());
    await eventually(() => edgeLog.lines.filter((l) => /^cloud refused the connection again/.test(String(l.msg))).length >= 3, 10_000, 'refused attempts');
    const errors = edgeLog.lines.filter((l) => l.level === 'error');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0]!.code, 'LEDGE_ERR_CERT_EXPIRED');
    assert.match(
      String(errors[0]!.msg),
      /expired at .*Re-join: stop EdgeCore, .*edgecore join --force --cloud https:\/\/127\.0\.0\.1:\d+ --token <token> --node-name edge-x --data-dir /,
    );
    assert.ok(!log.has(/renewed its certificate/), 'no renewal was attempted with it');
  });

  const connectedLines = (cloud: { log: LogCapture }) => cloud.log.lines.filter((l) => l.msg === 'node connected' && l.node === 'edge-r');

  test('renewed while connected: the session stays (one connect), messages flow; the next connection presents the new certificate', async () => {
    const { cloud, hub, bee, files, edgeLog } = await link();
    const original = new X509Certificate(readFileSync(files.certFile)).serialNumber;
    await eventually(() => edgeLog.lines.some((l) => /^renewed the client certificate/.test(String(l.msg))), 15_000, 'the renewal');
    await eventually(() => hub.connected, 10_000, 'the session');
    const renewed = new X509Certificate(readFileSync(files.certFile)).serialNumber;
    assert.notEqual(renewed, original);
    const up = newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: 'default/podstatus/p', content: { phase: 'Running' }, sync: true });
    await bee.context('edged').sendSync('websocket', up, 5000);
    await eventually(() => cloud.received.find((m) => m.header.id === up.header.id), 10_000, 'the report at the cloud');
    assert.equal(hub.stats.connects, 1, 'no reconnect');
    assert.ok(!edgeLog.has(/disconnected from cloud/));
    assert.equal(connectedLines(cloud).length, 1);
    assert.equal(connectedLines(cloud)[0]!.certificateSerial, original);

    // A forced reconnect: the new connection presents the renewed certificate.
    assert.ok(cloud.hub.closeSession('edge-r', 'test: reconnect', 1012));
    await eventually(() => connectedLines(cloud).length === 2, 10_000, 'the reconnect');
    assert.equal(connectedLines(cloud)[1]!.certificateSerial, renewed);
  });

  test('a failing renewal leaves the session alone: logged once, retried, no reconnect, messages flow', async () => {
    let failing = true;
    const { cloud, hub, bee, edgeLog, files } = await link({ fail: () => failing });
    const original = readFileSync(files.certFile, 'utf8');
    await eventually(() => edgeLog.lines.filter((l) => /renewal failed again/.test(String(l.msg))).length >= 3, 15_000, 'several failed renewals');
    assert.equal(edgeLog.lines.filter((l) => l.level === 'warn' && /renewal failed/.test(String(l.msg))).length, 1, 'one warning for the streak');
    assert.equal(readFileSync(files.certFile, 'utf8'), original);
    await eventually(() => hub.connected, 10_000, 'the session');
    const up = newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: 'default/podstatus/q', content: { phase: 'Running' }, sync: true });
    await bee.context('edged').sendSync('websocket', up, 5000);
    await eventually(() => cloud.received.find((m) => m.header.id === up.header.id), 10_000, 'the report at the cloud');
    assert.equal(hub.stats.connects, 1, 'no reconnect');
    assert.ok(!edgeLog.has(/disconnected from cloud/));
    failing = false;
    await eventually(() => edgeLog.lines.some((l) => /^renewed the client certificate after \d+ failed attempts/.test(String(l.msg))), 15_000, 'the renewal once CloudHub renews');
    assert.equal(hub.stats.connects, 1);
  });
});
