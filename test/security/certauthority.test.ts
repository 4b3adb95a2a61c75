/**
 * cloud/certauthority: where the CA comes from (files win and write nothing; the Secret; created
 * once, also when replicas race on an empty API: KubeEdge #5922), what it refuses (a damaged
 * Secret, mismatched files), the serving certificate, and node certificates from CSRs (the CA's
 * subject, not the CSR's; client auth only; bad CSRs refused with a clear reason).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, webcrypto } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { caFromPem, generateCaPem, loadOrCreateCa, type CaSecretApi, type CertificateAuthority } from '../../cloud/certauthority/index.js';
import type { k8s } from '../../cloud/kube/index.js';
import { CertificateAuthorityError, CsrInvalidError, JoinRequestError } from '../../shared/errors/index.js';
import { silentLogger } from '../../shared/log/index.js';
import { loadX509, type X509 } from '../../shared/x509/index.js';
import { caCertHash } from '../../shared/jointoken/index.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { tempDir } from '../helpers/files.js';

const plane = useLocalControlPlane('ledge-ca-');

const apiError = (code: number) => Object.assign(new Error(`HTTP ${code}`), { code });
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A fake of the two Secret calls over a map, counting creates. */
function fakeCore(initial?: k8s.V1Secret) {
  const secrets = new Map<string, k8s.V1Secret>(initial ? [[initial.metadata!.name!, initial]] : []);
  const calls = { read: 0, create: 0 };
  const core = {
    async readNamespacedSecret({ name }: { name: string }) {
      calls.read++;
      const s = secrets.get(name);
      if (!s) throw apiError(404);
      return s;
    },
    async createNamespacedSecret({ body }: { body: k8s.V1Secret }) {
      calls.create++;
      if (secrets.has(body.metadata!.name!)) throw apiError(409);
      secrets.set(body.metadata!.name!, body);
      return body;
    },
  };
  // Structurally the two methods the CA calls; client-node's overloads are wider than a fake needs.
  return { core: core as unknown as CaSecretApi, secrets, calls };
}

const noApi = {
  readNamespacedSecret: () => Promise.reject(new Error('the API must not be called')),
  createNamespacedSecret: () => Promise.reject(new Error('the API must not be called')),
} as unknown as CaSecretApi;

type Alg = Parameters<typeof webcrypto.subtle.generateKey>[0];
/** What @peculiar/x509 takes as a signing algorithm (the DOM's Algorithm; this project compiles without the DOM lib). */
type SigningAlgorithm = NonNullable<Parameters<typeof X509.Pkcs10CertificateRequestGenerator.create>[0]['signingAlgorithm']>;
const P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const rsa = (bits: number) => ({ name: 'RSASSA-PKCS1-v1_5', modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' });

/** A CSR asking for more than it may get: another subject, CA:TRUE, a SAN. */
async function makeCsr(alg: object = P256): Promise<string> {
  const x509 = await loadX509();
  const keys = (await webcrypto.subtle.generateKey(alg as Alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=admin, O=system:masters',
    keys,
    signingAlgorithm: alg as SigningAlgorithm,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'kubernetes.default' }])],
  });
  return csr.toString('pem');
}

async function extensionsOf(pem: string) {
  const x509 = await loadX509();
  const c = new x509.X509Certificate(pem);
  return {
    basic: c.getExtension(x509.BasicConstraintsExtension),
    eku: c.getExtension(x509.ExtendedKeyUsageExtension),
    san: c.getExtension(x509.SubjectAlternativeNameExtension),
  };
}

describe('where the CA comes from', () => {
  test('no Secret: a CA is generated (CN=ledge-cloudhub-ca, P-256, ~10 years, a CA) and created as kubernetes.io/tls; the next load reads it', async () => {
    const f = fakeCore();
    const ca = await loadOrCreateCa({ core: f.core, namespace: 'kube-system', log: silentLogger });
    assert.equal(ca.source, 'created');
    const stored = f.secrets.get('ledge-ca')!;
    assert.equal(stored.type, 'kubernetes.io/tls');
    assert.equal(Buffer.from(stored.data!['tls.crt']!, 'base64').toString(), ca.certPem);
    assert.match(Buffer.from(stored.data!['tls.key']!, 'base64').toString(), /BEGIN PRIVATE KEY/);
    const cert = new X509Certificate(ca.certPem);
    assert.equal(cert.subject, 'CN=ledge-cloudhub-ca');
    assert.ok(cert.ca);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const years = (Date.parse(cert.validTo) - Date.now()) / (365 * 86_400_000);
    assert.ok(years > 9.9 && years < 10.1, `${years} years`);
    assert.equal(ca.hash, caCertHash(ca.certPem));

    const again = await loadOrCreateCa({ core: f.core, namespace: 'kube-system', log: silentLogger });
    assert.equal(again.source, 'secret');
    assert.equal(again.hash, ca.hash);
    assert.equal(f.calls.create, 1);
  });

  test("a create answered 409 (another replica won) uses the winner's CA, never its own", async () => {
    const winner = await generateCaPem();
    const f = fakeCore();
    const core = {
      ...f.core,
      // The other replica's create lands between our read (404) and our create.
      createNamespacedSecret: async () => {
        f.secrets.set('ledge-ca', { metadata: { name: 'ledge-ca' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(winner.cert), 'tls.key': b64(winner.key) } });
        throw apiError(409);
      },
    } as unknown as CaSecretApi;
    const ca = await loadOrCreateCa({ core, namespace: 'kube-system', log: silentLogger });
    assert.equal(ca.source, 'secret');
    assert.equal(ca.hash, caCertHash(winner.cert));
  });

  test('a damaged Secret is an error naming it, and is not replaced', async () => {
    const good = await generateCaPem();
    const other = await generateCaPem();
    const cases: [Record<string, string>, RegExp][] = [
      [{ 'tls.crt': b64(good.cert) }, /kube-system\/ledge-ca exists but lacks tls\.key/],
      [{ 'tls.crt': b64(good.cert), 'tls.key': b64(other.key) }, /not the key of the certificate/],
      [{ 'tls.crt': b64('junk'), 'tls.key': b64(good.key) }, /not a PEM certificate/],
    ];
    for (const [data, message] of cases) {
      const f = fakeCore({ metadata: { name: 'ledge-ca' }, type: 'kubernetes.io/tls', data });
      await assert.rejects(loadOrCreateCa({ core: f.core, namespace: 'kube-system', log: silentLogger }), (err: unknown) => {
        assert.ok(err instanceof CertificateAuthorityError, String(err));
        assert.match(err.message, message);
        return true;
      });
      assert.equal(f.calls.create, 0, 'never overwritten');
    }
  });

  test('an API failure other than 404/409 is a CA error with the status, not a new CA', async () => {
    const core = { readNamespacedSecret: () => Promise.reject(apiError(403)), createNamespacedSecret: () => Promise.reject(new Error('no create')) } as unknown as CaSecretApi;
    await assert.rejects(loadOrCreateCa({ core, namespace: 'kube-system', log: silentLogger }), /cannot read Secret kube-system\/ledge-ca: HTTP 403/);
  });

  test('operator files win: the API is not touched; a leaf certificate, a lone file or a wrong key is refused', async (t) => {
    const dir = tempDir('ledge-ca-files-');
    t.after(dir.cleanup);
    const ca = await generateCaPem();
    const other = await generateCaPem();
    const file = (name: string, text: string) => {
      const p = join(dir.path, name);
      writeFileSync(p, text);
      return p;
    };
    const certFile = file('ca.crt', ca.cert);
    const keyFile = file('ca.key', ca.key);
    const loaded = await loadOrCreateCa({ core: noApi, certFile, keyFile, log: silentLogger });
    assert.equal(loaded.source, 'files');
    assert.equal(loaded.hash, caCertHash(ca.cert));

    await assert.rejects(loadOrCreateCa({ core: noApi, certFile, log: silentLogger }), /given together/);
    await assert.rejects(loadOrCreateCa({ core: noApi, certFile, keyFile: file('other.key', other.key), log: silentLogger }), /not the key of the certificate/);
    await assert.rejects(loadOrCreateCa({ core: noApi, certFile: join(dir.path, 'missing.crt'), keyFile, log: silentLogger }), /cannot read the CA certificate file/);
    const leaf = await loaded.issueServingCert([]);
    await assert.rejects(loadOrCreateCa({ core: noApi, certFile: file('leaf.crt', leaf.cert), keyFile: file('leaf.key', leaf.key), log: silentLogger }), /is not a CA/);
  });

  test('an RSA CA from files signs (ECDSA is not assumed)', async () => {
    const x509 = await loadX509();
    const alg = rsa(2048);
    const keys = (await webcrypto.subtle.generateKey(alg as Alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=operator-ca',
      keys,
      signingAlgorithm: alg as SigningAlgorithm,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    const keyPem = `-----BEGIN PRIVATE KEY-----\n${Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64')}\n-----END PRIVATE KEY-----\n`;
    const ca = await caFromPem(cert.toString('pem'), keyPem, { source: 'files', where: 'test' });
    const issued = new X509Certificate(await ca.signNodeCsr(await makeCsr(), 'edge-1'));
    assert.ok(issued.verify(new X509Certificate(ca.certPem).publicKey));
    // Capped at the CA's own end (one day), not the default year.
    assert.ok(Date.parse(issued.validTo) <= Date.parse(new X509Certificate(ca.certPem).validTo));
  });
});

describe('two replicas on an empty API server', () => {
  test('both read "missing", both create: one CA, the same hash in both, the Secret holds it', { timeout: 30_000 }, async () => {
    const namespace = 'default';
    // Each replica's first read waits until both have read "missing", so both go on to create.
    let misses = 0;
    let bothMissed!: () => void;
    const barrier = new Promise<void>((resolve) => (bothMissed = resolve));
    const replica = (): CaSecretApi => {
      let first = true;
      return {
        readNamespacedSecret: async (...args: Parameters<CaSecretApi['readNamespacedSecret']>) => {
          try {
            return await plane.core.readNamespacedSecret(...args);
          } finally {
            if (first) {
              first = false;
              if (++misses === 2) bothMissed();
              await barrier;
            }
          }
        },
        createNamespacedSecret: (...args: Parameters<CaSecretApi['createNamespacedSecret']>) => plane.core.createNamespacedSecret(...args),
      } as CaSecretApi;
    };
    const [a, b] = await Promise.all([loadOrCreateCa({ core: replica(), namespace, log: silentLogger }), loadOrCreateCa({ core: replica(), namespace, log: silentLogger })]);
    assert.equal(misses, 2, 'both replicas found no CA');
    assert.deepEqual([a.source, b.source].sort(), ['created', 'secret'], 'one created it, the other read the winner');
    assert.equal(a.hash, b.hash);
    assert.equal(a.certPem, b.certPem);
    const stored = await plane.core.readNamespacedSecret({ name: 'ledge-ca', namespace });
    assert.equal(caCertHash(Buffer.from(stored.data!['tls.crt']!, 'base64').toString()), a.hash);
    // A third start (a restart) reads the same one.
    assert.equal((await loadOrCreateCa({ core: plane.core, namespace, log: silentLogger })).hash, a.hash);
  });
});

describe('certificates the CA issues', () => {
  let ca: CertificateAuthority | undefined;
  const caOf = async (): Promise<CertificateAuthority> => {
    if (!ca) {
      const g = await generateCaPem();
      ca = await caFromPem(g.cert, g.key, { source: 'files', where: 'test CA' });
    }
    return ca;
  };

  test('serving certificate: leaf + CA chain, server auth, the hosts plus 127.0.0.1 and localhost, signed by the CA', async () => {
    const c = await caOf();
    const { cert, key } = await c.issueServingCert(['10.1.2.3', 'hub.example', '0.0.0.0']);
    const blocks = cert.match(/-----BEGIN CERTIFICATE-----/g) ?? [];
    assert.equal(blocks.length, 2, 'leaf then CA');
    assert.ok(cert.endsWith(c.certPem));
    const leaf = new X509Certificate(cert);
    assert.ok(leaf.verify(new X509Certificate(c.certPem).publicKey));
    assert.ok(!leaf.ca);
    assert.equal(leaf.subjectAltName, 'IP Address:10.1.2.3, DNS:hub.example, IP Address:127.0.0.1, DNS:localhost');
    assert.deepEqual([...((await extensionsOf(cert)).eku?.usages ?? [])], ['1.3.6.1.5.5.7.3.1']);
    assert.match(key, /BEGIN PRIVATE KEY/);
  });

  test("node certificate: subject CN=system:node:<name>, O=system:nodes whatever the CSR asked; client auth only; no CA, no SAN; the CSR's key", async () => {
    const c = await caOf();
    const csr = await makeCsr();
    const pem = await c.signNodeCsr(csr, 'edge-1');
    const cert = new X509Certificate(pem);
    assert.equal(cert.subject, 'CN=system:node:edge-1\nO=system:nodes');
    assert.equal(cert.issuer, new X509Certificate(c.certPem).subject);
    assert.ok(cert.verify(new X509Certificate(c.certPem).publicKey));
    assert.ok(!cert.ca);
    const ext = await extensionsOf(pem);
    assert.equal(ext.basic?.ca, false);
    assert.deepEqual([...(ext.eku?.usages ?? [])], ['1.3.6.1.5.5.7.3.2'], 'client auth only');
    assert.equal(ext.san, null, 'no SAN (the CSR asked for one)');
    const x509 = await loadX509();
    assert.equal(
      cert.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
      Buffer.from(new x509.Pkcs10CertificateRequest(csr).publicKey.rawData).toString('base64'),
    );
    // Default lifetime: one year.
    const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
    assert.ok(days > 364 && days <= 365, `${days} days`);
  });

  test('lifetime option; a short lifetime is backdated by at most a tenth of it', async () => {
    const c = await caOf();
    const before = Date.now();
    const cert = new X509Certificate(await c.signNodeCsr(await makeCsr(), 'edge-1', { lifetimeMs: 60_000 }));
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    // X.509 times have whole seconds.
    assert.ok(to - from <= 66_000 + 1000 && to - from >= 60_000 - 1000, `${to - from} ms`);
    assert.ok(from >= before - 6_000 - 1000, 'backdated 6 s at most');
  });

  test('RSA 2048 is accepted; RSA 1024, P-384, Ed25519, a broken signature, garbage and a bad node name are refused with the reason', async () => {
    const c = await caOf();
    assert.match(await c.signNodeCsr(await makeCsr(rsa(2048)), 'rsa-node'), /BEGIN CERTIFICATE/);
    const refused = async (csr: string, message: RegExp, node = 'edge-1', kind: new (...a: never[]) => Error = CsrInvalidError) => {
      await assert.rejects(c.signNodeCsr(csr, node), (err: unknown) => {
        assert.ok(err instanceof kind, String(err));
        assert.match((err as Error).message, message);
        return true;
      });
    };
    await refused(await makeCsr(rsa(1024)), /RSA key has 1024 bits/);
    await refused(await makeCsr({ name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' }), /key is ECDSA P-384: use ECDSA P-256/);
    await refused(await makeCsr({ name: 'Ed25519' }), /key is Ed25519/);
    // Flip the signature's last byte: still parses, no longer verifies.
    const good = await makeCsr();
    const der = Buffer.from(good.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 1] ^= 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await refused(tampered, /signature does not verify/);
    await assert.rejects(c.checkNodeCsr(tampered), CsrInvalidError, 'checkNodeCsr refuses the same');
    await refused('not a csr', /not one PEM block/);
    await refused('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----', /not a PKCS#10/);
    await refused(good, /not a DNS-1123 subdomain/, 'Edge_1', JoinRequestError);
  });
});
