/**
 * @module
 * CloudStream's serving certificate: the configured PEM files, or a self-signed ECDSA P-256
 * certificate generated once into `<dir>/server.crt` + `server.key` (key mode 0600) and reused
 * while its subject alternative names stay the same (a changed advertise address makes a new
 * one). Pure JS (@peculiar/x509 + webcrypto, loaded only when a certificate is made), with the
 * primitives of shared/x509 that apiserver/pki.ts uses too (CloudCore must not bundle apiserver/).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { KEY_ALGORITHM, certificateHosts, exportPrivateKey, generateKeyPair, leafExtensions, loadX509, serialNumber, validity, writeCredential } from '../../shared/x509/index.js';

export interface ServingCert {
  cert: string;
  key: string;
  /** SHA-256 fingerprint of the leaf certificate, as node prints it (`AB:CD:…`): what peers pin. */
  sha256: string;
}

/** The fingerprint of the first certificate of a PEM bundle. */
export function certSha256(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** Reads `certFile` + `keyFile`. */
export function loadServingCert(certFile: string, keyFile: string): ServingCert {
  const cert = readFileSync(certFile, 'utf8');
  return { cert, key: readFileSync(keyFile, 'utf8'), sha256: certSha256(cert) };
}

/** The self-signed certificate of `dir` for `hosts` (IPs and DNS names), made if missing or if its names changed. */
export async function loadOrCreateServingCert(dir: string, hosts: string[]): Promise<ServingCert> {
  const sans = certificateHosts(hosts).sort();
  const certPath = join(dir, 'server.crt');
  const keyPath = join(dir, 'server.key');
  const sansPath = join(dir, 'server.sans');
  const wanted = JSON.stringify(sans);
  if (existsSync(certPath) && existsSync(keyPath) && existsSync(sansPath) && readFileSync(sansPath, 'utf8') === wanted) {
    const cert = readFileSync(certPath, 'utf8');
    if (cert.includes('BEGIN CERTIFICATE')) return { cert, key: readFileSync(keyPath, 'utf8'), sha256: certSha256(cert) };
  }
  const x509 = await loadX509();
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: 'CN=ledge-cloudstream',
    ...validity(),
    keys,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: await leafExtensions('server', sans),
  });
  const out = { cert: `${cert.toString('pem')}\n`, key: await exportPrivateKey(keys.privateKey) };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeCredential(keyPath, out.key, true);
  writeCredential(certPath, out.cert, false);
  writeCredential(sansPath, wanted, false);
  return { ...out, sha256: certSha256(out.cert) };
}
