/**
 * The X.509 primitives (shared/x509) that apiserver/pki.ts and cloud/cloudstream/cert.ts share:
 * PKCS#8 PEM keys (64 characters a line, read back, the key still signs what its public key
 * verifies), positive 128-bit serial numbers, the validity window, the names a certificate may
 * carry, a leaf certificate's extensions as node reads them (server or client auth, the SANs, the
 * issuer's key id), and credential files' modes.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, webcrypto } from 'node:crypto';
import { statSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '../../shared/x509/index.js';
import { tempDir } from '../helpers/files.js';

const tmp = tempDir('ledge-x509-');
after(() => tmp.cleanup());

describe('keys', () => {
  test('a private key as PKCS#8 PEM, 64 characters a line, read back: it signs what the public key verifies', async () => {
    const keys = await x509.generateKeyPair();
    const pem = await x509.exportPrivateKey(keys.privateKey);
    const lines = pem.trimEnd().split('\n');
    assert.equal(lines[0], '-----BEGIN PRIVATE KEY-----');
    assert.equal(lines.at(-1), '-----END PRIVATE KEY-----');
    const body = lines.slice(1, -1);
    for (const l of body.slice(0, -1)) assert.equal(l.length, 64);
    assert.ok(body.at(-1)!.length <= 64);
    const key = await x509.importPrivateKey(pem);
    const data = Buffer.from('ledge');
    const sig = await webcrypto.subtle.sign(x509.KEY_ALGORITHM, key, data);
    assert.equal(await webcrypto.subtle.verify(x509.KEY_ALGORITHM, keys.publicKey, sig, data), true);
    assert.equal(await x509.exportPrivateKey(key), pem, 'the same key');
  });
});

test('serial numbers: 16 bytes, hex, positive, random', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const s = x509.serialNumber();
    assert.match(s, /^[0-7][0-9a-f]{31}$/);
    seen.add(s);
  }
  assert.equal(seen.size, 200);
});

test('validity: from one hour before to ten years after', () => {
  const now = Date.UTC(2024, 4, 1);
  const v = x509.validity(now);
  assert.equal(v.notBefore.getTime(), now - 3600_000);
  assert.equal(v.notAfter.getTime(), now + 3650 * 86400_000);
});

test('certificate hosts: no empty names or wildcard addresses, each once, in order', () => {
  assert.deepEqual(x509.certificateHosts(['127.0.0.1', '', '0.0.0.0', 'localhost', '::', '127.0.0.1', '10.0.0.1']), ['127.0.0.1', 'localhost', '10.0.0.1']);
});

describe('leaf extensions', () => {
  async function leaf(usage: 'server' | 'client', sans: string[], withIssuer: boolean) {
    const lib = await x509.loadX509();
    const caKeys = await x509.generateKeyPair();
    const ca = await lib.X509CertificateGenerator.createSelfSigned({
      serialNumber: x509.serialNumber(),
      name: 'CN=test-ca',
      ...x509.validity(),
      keys: caKeys,
      signingAlgorithm: x509.KEY_ALGORITHM,
      extensions: [new lib.BasicConstraintsExtension(true, undefined, true), await lib.SubjectKeyIdentifierExtension.create(caKeys.publicKey)],
    });
    const keys = await x509.generateKeyPair();
    const cert = await lib.X509CertificateGenerator.create({
      serialNumber: x509.serialNumber(),
      subject: 'CN=leaf',
      issuer: ca.subject,
      ...x509.validity(),
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: x509.KEY_ALGORITHM,
      extensions: await x509.leafExtensions(usage, sans, withIssuer ? ca : undefined),
    });
    return { ca: new X509Certificate(ca.toString('pem')), leaf: new X509Certificate(cert.toString('pem')), parsed: cert };
  }

  test('server: no CA, server auth, IP and DNS names; with the issuer, its key id; verified by the CA', async () => {
    const { ca, leaf: c, parsed } = await leaf('server', ['127.0.0.1', '::1', 'localhost'], true);
    assert.equal(c.ca, false);
    assert.deepEqual(c.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.equal(c.subjectAltName, 'IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:localhost');
    assert.equal(c.checkIssued(ca), true);
    assert.equal(c.verify(ca.publicKey), true);
    assert.ok(parsed.getExtension('2.5.29.35'), 'an authority key identifier');
    assert.ok(parsed.getExtension('2.5.29.15')?.critical, 'key usage, critical');
    assert.ok(parsed.getExtension('2.5.29.19')?.critical, 'basic constraints, critical');
  });

  test('client, no names, no issuer: client auth only, no SAN, no authority key id', async () => {
    const { leaf: c, parsed } = await leaf('client', [], false);
    assert.equal(c.ca, false);
    assert.deepEqual(c.keyUsage, ['1.3.6.1.5.5.7.3.2']);
    assert.equal(c.subjectAltName, undefined);
    assert.equal(parsed.getExtension('2.5.29.35'), null);
  });
});

test('credential files: a secret is 0600 even when it existed with another mode; the others 0644', () => {
  const secret = join(tmp.path, 'k.key');
  writeFileSync(secret, 'old', { mode: 0o644 });
  x509.writeCredential(secret, 'key', true);
  assert.equal(statSync(secret).mode & 0o777, 0o600);
  assert.equal(readFileSync(secret, 'utf8'), 'key');
  const pub = join(tmp.path, 'c.crt');
  x509.writeCredential(pub, 'cert', false);
  assert.equal(statSync(pub).mode & 0o777, 0o644 & ~process.umask());
});
