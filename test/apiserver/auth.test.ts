// Authentication of the local control plane, over real TLS connections on loopback:
// TLS 1.3 session resumption (a resumed session proves nothing about a certificate
// the client never sent), client certificates from our CA / another CA / expired /
// a CA or server certificate used as a client certificate, bearer tokens, and kubectl
// with certificate and token kubeconfigs.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { once } from 'node:events';
import { request } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { webcrypto, X509Certificate } from 'node:crypto';
import { stringify as toYaml } from 'yaml';
import { Authenticator } from '../../apiserver/authn.js';
import { loadOrCreatePki, type Pki } from '../../apiserver/pki.js';
import { KUBECTL_SKIP, kubectl, kubectlPath, raw, startTestServer, tempDir, type TestServer } from './helpers.js';

let s: TestServer;
let other: Pki;
before(async () => {
  s = await startTestServer();
  // A second, unrelated PKI: same subject names (CN=ledge-ca, CN=ledge-admin O=system:masters), other keys.
  other = await loadOrCreatePki(tempDir('ledge-other-pki-'), []);
});
after(async () => {
  await s?.stop();
});

interface TlsResult {
  status: number;
  body: string;
  /** isSessionReused() of the connection, read once the handshake completed. */
  reused: boolean;
  /** The last session ticket the server sent on this connection. */
  session?: Buffer;
  protocol: string | null;
}

/**
 * One HTTP request on a fresh TLS connection (no agent: nothing is cached behind the
 * test's back), optionally resuming `session` and presenting a client certificate.
 * Waits for the server's session ticket so that the next call can resume it.
 */
async function tlsRequest(opts: tls.ConnectionOptions, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<TlsResult> {
  const u = new URL(s.handle.url);
  const sock = tls.connect({ host: u.hostname, port: Number(u.port), ca: s.handle.caCertPem, minVersion: 'TLSv1.3', ...opts });
  let session: Buffer | undefined;
  // Resolves with the first ticket, or undefined once the connection is gone.
  const ticket = new Promise<Buffer | undefined>((resolve) => {
    sock.on('session', (b: Buffer) => resolve((session = b)));
    sock.on('close', () => resolve(undefined));
  });
  await once(sock, 'secureConnect');
  const reused = sock.isSessionReused();
  const protocol = sock.getProtocol();
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        method,
        path,
        createConnection: () => sock,
        headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}) },
      },
      (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        r.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
  if (!reused && !session) {
    // TLS 1.3 tickets come after the handshake (in practice before the first response).
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no session ticket from the server within 5 s')), 5000)));
    try {
      await Promise.race([ticket, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }
  sock.destroy();
  return { ...res, reused, session, protocol };
}

const SECRETS = '/api/v1/secrets';
const CMS = '/api/v1/namespaces/default/configmaps';
const admin = () => ({ cert: s.handle.clientCertPem, key: s.handle.clientKeyPem });
const cmBody = (name: string) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { k: 'v' } });
async function cmExists(name: string): Promise<boolean> {
  return (await raw(s.handle, 'GET', `${CMS}/${name}`)).status === 200;
}

describe('TLS 1.3 session resumption', () => {
  test('a resumed session of a client that never sent a certificate is still unauthenticated', async () => {
    const first = await tlsRequest({}, 'GET', SECRETS);
    assert.equal(first.status, 401, first.body);
    assert.equal(first.protocol, 'TLSv1.3');
    assert.ok(first.session, 'the server sent no session ticket');

    const list = await tlsRequest({ session: first.session }, 'GET', SECRETS);
    assert.equal(list.reused, true, 'the second connection did not resume the session: the test would prove nothing');
    assert.equal(list.status, 401, `secrets listed on a resumed session without credentials: ${list.body.slice(0, 200)}`);
    assert.equal(JSON.parse(list.body).reason, 'Unauthorized');

    const create = await tlsRequest({ session: list.session ?? first.session }, 'POST', CMS, {}, cmBody('via-resumption'));
    assert.equal(create.reused, true);
    assert.equal(create.status, 401, create.body);
    assert.equal(await cmExists('via-resumption'), false);
  });

  test('a resumed session of a client that presented a valid certificate keeps working', async () => {
    const first = await tlsRequest(admin(), 'GET', SECRETS);
    assert.equal(first.status, 200, first.body);
    assert.equal(first.reused, false);
    const again = await tlsRequest({ ...admin(), session: first.session }, 'GET', SECRETS);
    assert.equal(again.reused, true, 'not resumed');
    assert.equal(again.status, 200, again.body);
    // The session itself carries the verified certificate: resuming it without re-sending one is the same client.
    const bare = await tlsRequest({ session: first.session }, 'POST', CMS, {}, cmBody('resumed-cert'));
    assert.equal(bare.reused, true, 'not resumed');
    assert.equal(bare.status, 201, bare.body);
  });

  test('a resumed session of a rejected certificate stays rejected', async () => {
    const first = await tlsRequest({ cert: other.clientCertPem, key: other.clientKeyPem }, 'GET', SECRETS);
    assert.equal(first.status, 401, first.body);
    const again = await tlsRequest({ session: first.session }, 'GET', SECRETS);
    assert.equal(again.reused, true, 'not resumed');
    assert.equal(again.status, 401, again.body);
  });
});

// ------------------------------------------------------------------ certificates

/** A client certificate signed by the server's own CA key, with chosen dates, usage or CA flag. */
async function mint(o: { notBefore: Date; notAfter: Date; eku?: 'client' | 'server'; ca?: boolean; cn?: string }): Promise<{ cert: string; key: string }> {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const pki = join(s.dir, 'pki');
  const caKey = await webcrypto.subtle.importKey('pkcs8', Buffer.from(readFileSync(join(pki, 'ca.key'), 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64'), alg, false, [
    'sign',
  ]);
  const caCert = new x509.X509Certificate(readFileSync(join(pki, 'ca.crt'), 'utf8'));
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: `0${Date.now().toString(16)}`,
    subject: `CN=${o.cn ?? 'minted'}, O=system:masters`,
    issuer: caCert.subject,
    notBefore: o.notBefore,
    notAfter: o.notAfter,
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(!!o.ca, undefined, true),
      new x509.ExtendedKeyUsageExtension([o.eku === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth], false),
    ],
  });
  const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { cert: cert.toString('pem'), key: `-----BEGIN PRIVATE KEY-----\n${Buffer.from(der).toString('base64')}\n-----END PRIVATE KEY-----\n` };
}

const DAY = 86400_000;

describe('client certificates', () => {
  test('a certificate from another CA with the same names is refused', async () => {
    const r = await tlsRequest({ cert: other.clientCertPem, key: other.clientKeyPem }, 'POST', CMS, {}, cmBody('other-ca'));
    assert.equal(r.status, 401, r.body);
    assert.equal(await cmExists('other-ca'), false);
  });

  test('an expired or not yet valid certificate of our CA is refused; a fresh one is accepted', async () => {
    const expired = await mint({ notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
    assert.equal((await tlsRequest(expired, 'GET', SECRETS)).status, 401);
    const future = await mint({ notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 10 * DAY) });
    assert.equal((await tlsRequest(future, 'GET', SECRETS)).status, 401);
    const fresh = await mint({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY) });
    assert.equal((await tlsRequest(fresh, 'GET', SECRETS)).status, 200);
  });

  test('a CA certificate or a serving certificate of our CA is no client identity', async () => {
    const asCa = await mint({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY), ca: true });
    assert.equal((await tlsRequest(asCa, 'GET', SECRETS)).status, 401);
    const pki = join(s.dir, 'pki');
    const server = { cert: readFileSync(join(pki, 'server.crt'), 'utf8'), key: readFileSync(join(pki, 'server.key'), 'utf8') };
    assert.equal((await tlsRequest(server, 'GET', SECRETS)).status, 401);
  });

  test('Authenticator unit: validity dates against an injected clock, user and groups from CN and O', () => {
    const cert = new X509Certificate(s.handle.clientCertPem);
    const at = (ms: number) => new Authenticator({ clientCaPem: s.handle.caCertPem, now: () => ms });
    assert.deepEqual(at(Date.now()).verifyClientCertificate(cert), { user: 'ledge-admin', groups: ['system:masters'], via: 'x509' });
    assert.equal(at(Date.parse(cert.validTo) + 1000).verifyClientCertificate(cert), undefined);
    assert.equal(at(Date.parse(cert.validFrom) - 1000).verifyClientCertificate(cert), undefined);
    assert.equal(at(Date.now()).verifyClientCertificate(new X509Certificate(other.clientCertPem)), undefined);
    assert.equal(at(Date.now()).verifyClientCertificate(new X509Certificate(s.handle.caCertPem)), undefined);
  });
});

// ------------------------------------------------------------------ tokens

describe('bearer tokens', () => {
  test('missing, wrong, truncated, extended or malformed tokens → 401; the right one (any case of "Bearer") → 200', async () => {
    const t = s.handle.token;
    const bad = ['', 'Bearer', 'Bearer ', 'Bearer nope', `Bearer ${t.slice(0, -1)}`, `Bearer ${t}x`, `Basic ${t}`, t, `Bearer ${t} ${t}`];
    for (const a of bad) {
      const r = await tlsRequest({}, 'GET', SECRETS, a ? { authorization: a } : {});
      assert.equal(r.status, 401, `authorization ${JSON.stringify(a)}: ${r.body.slice(0, 100)}`);
    }
    for (const a of [`Bearer ${t}`, `bearer ${t}`, `Bearer  ${t} `]) {
      assert.equal((await tlsRequest({}, 'GET', SECRETS, { authorization: a })).status, 200, a);
    }
  });

  test('a valid certificate wins over a wrong token (as kube-apiserver: the x509 authenticator comes first)', async () => {
    assert.equal((await tlsRequest(admin(), 'GET', SECRETS, { authorization: 'Bearer wrong' })).status, 200);
  });
});

// ------------------------------------------------------------------ kubectl

describe('kubectl', { skip: KUBECTL_SKIP }, () => {
  function kubeconfig(name: string, user: Record<string, string>): string {
    const path = join(s.dir, `${name}.kubeconfig`);
    const doc = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: s.handle.url, 'certificate-authority-data': Buffer.from(s.handle.caCertPem).toString('base64') } }],
      users: [{ name: 'u', user }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    };
    writeFileSync(path, toYaml(doc), { mode: 0o600 });
    return path;
  }
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  // stdin closed: kubectl without credentials would otherwise wait for a password prompt.
  const k = (cfg: string, args: string[]) => kubectl(kubectlPath('1.35')!, cfg, args, { cacheDir: tempDir('ledge-kubectl-cache-'), input: '' });

  test('with the admin client certificate: works; with another CA’s certificate or a wrong token: Unauthorized', async () => {
    const good = await k(kubeconfig('cert', { 'client-certificate-data': b64(s.handle.clientCertPem), 'client-key-data': b64(s.handle.clientKeyPem) }), ['get', 'secrets', '-A']);
    assert.equal(good.code, 0, good.stderr);
    const created = await k(kubeconfig('cert', { 'client-certificate-data': b64(s.handle.clientCertPem), 'client-key-data': b64(s.handle.clientKeyPem) }), [
      'create',
      'configmap',
      'kubectl-cert',
      '--from-literal=a=b',
    ]);
    assert.equal(created.code, 0, created.stderr);
    const foreign = await k(kubeconfig('foreign', { 'client-certificate-data': b64(other.clientCertPem), 'client-key-data': b64(other.clientKeyPem) }), ['get', 'secrets', '-A']);
    assert.notEqual(foreign.code, 0);
    assert.match(foreign.stderr, /Unauthorized|must be logged in/);
    // (Without any credentials kubectl asks for a basic-auth password instead of sending the request.)
    const wrongToken = await k(kubeconfig('wrong', { token: 'not-the-token' }), ['create', 'configmap', 'kubectl-anon', '--from-literal=a=b']);
    assert.notEqual(wrongToken.code, 0);
    assert.match(wrongToken.stderr, /Unauthorized|must be logged in/);
    assert.equal(await cmExists('kubectl-anon'), false);
    const token = await k(kubeconfig('token', { token: s.handle.token }), ['get', 'secrets', '-A']);
    assert.equal(token.code, 0, token.stderr);
  });
});
