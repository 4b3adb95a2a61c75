/**
 * The join endpoint (cloud/certauthority/join.ts) over a real HTTPS server on loopback, serving a
 * certificate from the CA, with tokens in the local control plane: a valid join gets a node
 * certificate that a TLS server requiring client certificates from the CA accepts; expired,
 * revoked, reused and malformed tokens get 401 with the reason; bad CSRs and bodies 400 (without
 * spending a single-use token); oversized 413; slow 408; too fast 429. Every refusal: one log
 * line with the node and the token id, never the secret.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { createJoinHandler, generateCaPem, caFromPem, loadOrCreateCa, type CertificateAuthority, type JoinHandlerOptions } from '../../cloud/certauthority/index.js';
import { createTokenStore, type TokenStore } from '../../cloud/tokens/index.js';
import { ErrorCode } from '../../shared/errors/index.js';
import { createLogger } from '../../shared/log/index.js';
import { exportPrivateKey, generateKeyPair, loadX509 } from '../../shared/x509/index.js';
import { caCertHash } from '../../shared/jointoken/index.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';

const plane = useLocalControlPlane('ledge-join-');
const namespace = 'default';
const DAY = 86_400_000;
const MAX_BODY = 4096;

interface LogLine {
  level: string;
  msg: string;
  code?: string;
  node?: string;
  tokenId?: string;
  status?: number;
}
const lines: LogLine[] = [];
const log = createLogger({ level: 'debug', format: 'json', write: (l) => void lines.push(JSON.parse(l) as LogLine) });

let ca: CertificateAuthority;
let tokens: TokenStore;
/** The handler's clock offset (to expire tokens without waiting). */
let clockOffsetMs = 0;

interface Server {
  url: string;
  close(): Promise<void>;
}

async function serve(options: Partial<JoinHandlerOptions> = {}): Promise<Server> {
  const serving = await ca.issueServingCert(['127.0.0.1']);
  const handler = createJoinHandler({
    ca,
    tokens: createTokenStore({ core: plane.core, namespace, now: () => Date.now() + clockOffsetMs }),
    log,
    maxBodyBytes: MAX_BODY,
    bodyTimeoutMs: 500,
    ...options,
  });
  // As CloudHub runs it: client certificates asked for, not required (joining nodes have none).
  const server = https.createServer({ cert: serving.cert, key: serving.key, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    if (!handler(req, res)) {
      res.writeHead(404);
      res.end('not a join path');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let server: Server;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: { code?: string; message?: string; certificate?: string; ca?: string };
}

/**
 * One request, trusting only the CA. `write` sends the body in parts and may hold the end back
 * (`end: false`): the answer must then come while the request is still open.
 */
function request(path: string, o: { method?: string; headers?: Record<string, string>; body?: string | Buffer; end?: boolean; url?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${o.url ?? server.url}${path}`, { method: o.method ?? 'POST', headers: o.headers ?? {}, ca: ca.certPem, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json = {};
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON (the CA certificate)
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        req.destroy();
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${path} within 10 s`)));
    req.on('error', reject);
    if (o.body !== undefined) req.write(o.body);
    if (o.end !== false) req.end();
  });
}

async function newCsr(): Promise<{ csr: string; key: string }> {
  const x509 = await loadX509();
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=whoever', keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
  return { csr: csr.toString('pem'), key: await exportPrivateKey(keys.privateKey) };
}

const json = { 'content-type': 'application/json' };
const auth = (t: { id: string; secret: string }) => ({ ...json, authorization: `Bearer ${t.id}.${t.secret}` });
const joinBody = (nodeName: string, csr: string) => JSON.stringify({ nodeName, csr });

/** Asserts the refusal and that exactly one log line was written for it, naming the node and token, never the secret. */
async function refused(answer: Promise<Answer>, status: number, code: string, message: RegExp, who: { node?: string; tokenId?: string; secret?: string } = {}) {
  const before = lines.length;
  const a = await answer;
  assert.equal(a.status, status, a.text);
  assert.equal(a.json.code, code, a.text);
  assert.match(a.json.message ?? '', message);
  // The log line is written right after the answer: wait for it (bounded).
  for (let i = 0; i < 100 && lines.length === before; i++) await new Promise((r) => setImmediate(r));
  const logged = lines.slice(before).filter((l) => /refused/.test(l.msg));
  assert.equal(logged.length, 1, `one log line: ${JSON.stringify(lines.slice(before))}`);
  assert.equal(logged[0]!.code, code);
  if (who.node) assert.equal(logged[0]!.node, who.node);
  if (who.tokenId) assert.equal(logged[0]!.tokenId, who.tokenId);
  if (who.secret) {
    assert.ok(!JSON.stringify(logged).includes(who.secret), 'the secret is not logged');
    assert.ok(!a.text.includes(who.secret), 'the secret is not echoed');
  }
  return a;
}

// Inside a suite: its hooks run after the control plane's (root) ones.
describe('the join endpoint', () => {
  before(async () => {
    ca = await loadOrCreateCa({ core: plane.core, namespace, log });
    tokens = createTokenStore({ core: plane.core, namespace });
    server = await serve();
  });
  after(() => server?.close());

  describe('GET /v1/ca.crt', () => {
    test('the CA PEM without authentication, matching the hash join tokens carry; other paths are left to the caller', async () => {
      const a = await request('/v1/ca.crt', { method: 'GET' });
      assert.equal(a.status, 200);
      assert.equal(a.headers['content-type'], 'application/x-pem-file');
      assert.equal(caCertHash(a.text), ca.hash);
      assert.equal((await request('/v1/ca.crt?x=1', { method: 'GET' })).status, 200);
      assert.equal((await request('/v1/other', { method: 'GET' })).text, 'not a join path');
      assert.equal((await request('/v1/ca.crt', { method: 'POST' })).status, 405);
    });
  });

  describe('POST /v1/join', () => {
    test('a valid join: a certificate for system:node:<name> that a TLS server requiring the CA accepts, and the CA', { timeout: 20_000 }, async () => {
      const t = await tokens.create({ ttlMs: DAY });
      const { csr, key } = await newCsr();
      const a = await request('/v1/join', { headers: auth(t), body: joinBody('edge-1', csr) });
      assert.equal(a.status, 200, a.text);
      assert.equal(a.json.ca, ca.certPem);
      const cert = new X509Certificate(a.json.certificate!);
      assert.equal(cert.subject, 'CN=system:node:edge-1\nO=system:nodes');
      assert.ok(lines.some((l) => l.msg === `node edge-1 joined with token ${t.id}` && l.level === 'info'));

      // mTLS: a server that requires a client certificate from the CA authorizes this one, by its name.
      const serving = await ca.issueServingCert([]);
      const mtls = tls.createServer({ cert: serving.cert, key: serving.key, ca: ca.certPem, requestCert: true, rejectUnauthorized: true });
      mtls.listen(0, '127.0.0.1');
      await once(mtls, 'listening');
      // Decided by the server's events: it accepted (secureConnection) or refused (tlsClientError) the client.
      const connect = (certPem: string, keyPem: string) =>
        new Promise<{ ok: boolean; cn?: string }>((resolve) => {
          const accepted = (s: tls.TLSSocket) => {
            mtls.off('tlsClientError', refusedClient);
            resolve({ ok: s.authorized, cn: (s.getPeerCertificate().subject as { CN?: string } | undefined)?.CN });
            s.end();
          };
          const refusedClient = () => {
            mtls.off('secureConnection', accepted);
            resolve({ ok: false });
          };
          mtls.once('secureConnection', accepted);
          mtls.once('tlsClientError', refusedClient);
          const c = tls.connect({ host: '127.0.0.1', port: (mtls.address() as AddressInfo).port, ca: ca.certPem, cert: certPem, key: keyPem });
          c.on('error', () => {});
          c.on('close', () => c.destroy());
        });
      try {
        assert.deepEqual(await connect(a.json.certificate!, key), { ok: true, cn: 'system:node:edge-1' });
        // Control: the same node name from another CA is refused by that server.
        const other = await generateCaPem();
        const otherCa = await caFromPem(other.cert, other.key, { source: 'files', where: 'other' });
        const foreign = await newCsr();
        assert.equal((await connect(await otherCa.signNodeCsr(foreign.csr, 'edge-1'), foreign.key)).ok, false);
      } finally {
        mtls.close();
      }
      await tokens.revoke(t.id);
    });

    test('expired, revoked and reused single-use tokens: 401 saying which', async () => {
      const expiring = await tokens.create({ ttlMs: 60_000 });
      clockOffsetMs = 120_000;
      try {
        await refused(request('/v1/join', { headers: auth(expiring), body: joinBody('edge-2', (await newCsr()).csr) }), 401, ErrorCode.JoinTokenExpired, /expired at/, {
          node: 'edge-2',
          tokenId: expiring.id,
          secret: expiring.secret,
        });
      } finally {
        clockOffsetMs = 0;
      }

      const revoked = await tokens.create({ ttlMs: DAY });
      await tokens.revoke(revoked.id);
      await refused(request('/v1/join', { headers: auth(revoked), body: joinBody('edge-3', (await newCsr()).csr) }), 401, ErrorCode.JoinTokenUnknown, /revoked/, {
        node: 'edge-3',
        tokenId: revoked.id,
        secret: revoked.secret,
      });

      const oneUse = await tokens.create({ ttlMs: DAY, singleUse: true });
      assert.equal((await request('/v1/join', { headers: auth(oneUse), body: joinBody('edge-4', (await newCsr()).csr) })).status, 200);
      await refused(request('/v1/join', { headers: auth(oneUse), body: joinBody('edge-5', (await newCsr()).csr) }), 401, ErrorCode.JoinTokenUnknown, /already used/, {
        node: 'edge-5',
        tokenId: oneUse.id,
        secret: oneUse.secret,
      });
    });

    test('missing or malformed token: 401 before the body is read', async () => {
      const body = joinBody('edge-6', (await newCsr()).csr);
      await refused(request('/v1/join', { headers: json, body }), 401, ErrorCode.JoinTokenMalformed, /no Authorization header/);
      await refused(request('/v1/join', { headers: { ...json, authorization: 'Basic abc' }, body }), 401, ErrorCode.JoinTokenMalformed, /not "Bearer <id>\.<secret>"/);
      await refused(request('/v1/join', { headers: { ...json, authorization: 'Bearer abc123.short' }, body }), 401, ErrorCode.JoinTokenMalformed, /secret of token abc123/, {
        secret: 'short',
      });
      // Not even a body: the refusal comes while the request is still open.
      await refused(request('/v1/join', { headers: { ...json, authorization: 'Bearer x' }, body: '{', end: false }), 401, ErrorCode.JoinTokenMalformed, /no "\."/);
    });

    test('bad CSR, node name, JSON or content type: 400, and the single-use token is not spent', async () => {
      const t = await tokens.create({ ttlMs: DAY, singleUse: true });
      const { csr } = await newCsr();
      const der = Buffer.from(csr.replace(/-----[^-]+-----|\s/g, ''), 'base64');
      der[der.length - 1] ^= 0x01;
      const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      const who = { tokenId: t.id, secret: t.secret };
      await refused(request('/v1/join', { headers: auth(t), body: joinBody('edge-7', tampered) }), 400, ErrorCode.CsrInvalid, /signature does not verify/, {
        ...who,
        node: 'edge-7',
      });
      await refused(request('/v1/join', { headers: auth(t), body: joinBody('edge-7', 'hello') }), 400, ErrorCode.CsrInvalid, /not one PEM block/, who);
      await refused(request('/v1/join', { headers: auth(t), body: joinBody('Edge_7', csr) }), 400, ErrorCode.JoinRequest, /"Edge_7" is not a DNS-1123 subdomain/, who);
      await refused(request('/v1/join', { headers: auth(t), body: '{"nodeName": ' }), 400, ErrorCode.JoinRequest, /not JSON/, who);
      await refused(request('/v1/join', { headers: auth(t), body: '[]' }), 400, ErrorCode.JoinRequest, /JSON object/, who);
      await refused(request('/v1/join', { headers: auth(t), body: JSON.stringify({ nodeName: 'edge-7' }) }), 400, ErrorCode.JoinRequest, /no "csr"/, who);
      await refused(
        request('/v1/join', { headers: { ...auth(t), 'content-type': 'text/plain' }, body: joinBody('edge-7', csr) }),
        400,
        ErrorCode.JoinRequest,
        /Content-Type must be application\/json/,
        who,
      );
      await refused(request('/v1/join', { method: 'PUT', headers: auth(t), body: joinBody('edge-7', csr) }), 405, ErrorCode.JoinRequest, /use POST/);
      // None of that consumed it.
      assert.equal((await request('/v1/join', { headers: auth(t), body: joinBody('edge-7', csr) })).status, 200);
    });

    test('an oversized body: 413 at once for a large Content-Length, and when a chunked body passes the limit; not read further', async () => {
      const t = await tokens.create({ ttlMs: DAY, singleUse: true });
      const who = { tokenId: t.id, secret: t.secret };
      // Declared too large: answered before the body is sent (only 1 KiB of it is written).
      const a = await refused(
        request('/v1/join', { headers: { ...auth(t), 'content-length': String(100_000) }, body: 'x'.repeat(1024), end: false }),
        413,
        ErrorCode.JoinBodyTooLarge,
        /100000 bytes; at most 4096/,
        who,
      );
      assert.equal(a.headers.connection, 'close');
      // Chunked, no length: answered once the limit is passed, the rest never sent.
      await refused(
        request('/v1/join', { headers: auth(t), body: `{"nodeName":"edge-8","csr":"${'x'.repeat(MAX_BODY)}`, end: false }),
        413,
        ErrorCode.JoinBodyTooLarge,
        /over 4096 bytes/,
        who,
      );
      assert.equal((await request('/v1/join', { headers: auth(t), body: joinBody('edge-8', (await newCsr()).csr) })).status, 200, 'the token was not spent');
    });

    test('a body that does not arrive in time: 408, connection closed', { timeout: 10_000 }, async () => {
      const t = await tokens.create({ ttlMs: DAY });
      const a = await refused(request('/v1/join', { headers: auth(t), body: '{"nodeName":', end: false }), 408, ErrorCode.Timeout, /did not arrive within 500 ms/, {
        tokenId: t.id,
      });
      assert.equal(a.headers.connection, 'close');
      await tokens.revoke(t.id);
    });

    test('over the rate: 429 with Retry-After, refusals logged once per window', async (t) => {
      let now = 0;
      const limited = await serve({ ratePerMinute: 60, burst: 2, now: () => now });
      t.after(() => limited.close());
      const token = await tokens.create({ ttlMs: DAY });
      const go = async () => request('/v1/join', { url: limited.url, headers: auth(token), body: joinBody('edge-9', (await newCsr()).csr) });
      assert.equal((await go()).status, 200);
      assert.equal((await go()).status, 200);
      const a = await refused(go(), 429, ErrorCode.JoinRateLimited, /too many join requests; retry in 1 s/);
      assert.equal(a.headers['retry-after'], '1');
      const logged = lines.length;
      assert.equal((await go()).status, 429);
      assert.equal(lines.length, logged, 'the second 429 in the window is counted, not logged');
      now += 1000;
      assert.equal((await go()).status, 200, 'one request refilled per second');
      await tokens.revoke(token.id);
    });
  });
});
