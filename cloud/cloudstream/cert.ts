/**
 * @module
 * CloudStream's serving certificate: the configured PEM files, or a self-signed ECDSA P-256
 * certificate generated once into `<dir>/server.crt` + `server.key` (key mode 0600) and reused
 * while its subject alternative names stay the same (a changed advertise address makes a new
 * one). Pure JS (@peculiar/x509 + webcrypto, loaded only when a certificate is made), like
 * apiserver/pki.ts, whose code CloudCore must not bundle.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { X509Certificate, randomBytes, webcrypto } from 'node:crypto';

export interface ServingCert {
  cert: string;
  key: string;
  /** SHA-256 fingerprint of the leaf certificate, as node prints it (`AB:CD:…`): what peers pin. */
  sha256: string;
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const TEN_YEARS = 3650 * 86400 * 1000;

/** The fingerprint of the first certificate of a PEM bundle. */
export function certSha256(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** Reads `certFile` + `keyFile`. */
export function loadServingCert(certFile: string, keyFile: string): ServingCert {
  const cert = readFileSync(certFile, 'utf8');
  return { cert, key: readFileSync(keyFile, 'utf8'), sha256: certSha256(cert) };
}

/** The self-signed certificate of `dir` for `hosts` (IPs and DNS names), made if missing or if its names changed. */
export async function loadOrCreateServingCert(dir: string, hosts: string[]): Promise<ServingCert> {
  const sans = [...new Set(hosts.filter((h) => h && h !== '0.0.0.0' && h !== '::'))].sort();
  const certPath = join(dir, 'server.crt');
  const keyPath = join(dir, 'server.key');
  const sansPath = join(dir, 'server.sans');
  const wanted = JSON.stringify(sans);
  if (existsSync(certPath) && existsSync(keyPath) && existsSync(sansPath) && readFileSync(sansPath, 'utf8') === wanted) {
    const cert = readFileSync(certPath, 'utf8');
    if (cert.includes('BEGIN CERTIFICATE')) return { cert, key: readFileSync(keyPath, 'utf8'), sha256: certSha256(cert) };
  }
  // @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill loaded first.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  // Node's webcrypto is structurally the DOM Crypto the library is typed against.
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f; // positive
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: 'CN=ledge-cloudstream',
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + TEN_YEARS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(
        sans.map((h) => (isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h })),
        false,
      ),
    ],
  });
  const out = { cert: `${cert.toString('pem')}\n`, key: pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)) };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(keyPath, out.key, { mode: 0o600 });
  chmodSync(keyPath, 0o600);
  writeFileSync(certPath, out.cert, { mode: 0o644 });
  writeFileSync(sansPath, wanted, { mode: 0o644 });
  return { ...out, sha256: certSha256(out.cert) };
}
