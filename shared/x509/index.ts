/**
 * @module
 * X.509 primitives of the certificates Ledge makes itself: the control plane's PKI
 * (apiserver/pki.ts) and CloudStream's self-signed serving certificate
 * (cloud/cloudstream/cert.ts), which may not import apiserver/.
 *
 * Guarantees: keys are ECDSA P-256, signatures ECDSA with SHA-256 ({@link KEY_ALGORITHM});
 * private keys are PKCS#8 PEM, 64 base64 characters a line; serial numbers are 128 random bits,
 * positive; a certificate is valid from one hour ago (clock skew) to ten years ahead; a leaf
 * certificate is no CA, for digital signature and key encipherment, server or client auth only;
 * a secret file is written mode 0600 (also when it existed with another mode). Pure JS:
 * @peculiar/x509 over node's webcrypto, imported by {@link loadX509} (never when this module loads).
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import type * as X509 from '@peculiar/x509';

export type { X509 };

/** The key and signature algorithm of every key and certificate. */
export const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

const TEN_YEARS_MS = 3650 * 86400 * 1000;

/** @peculiar/x509, its crypto provider set to node's webcrypto. */
export async function loadX509(): Promise<typeof X509> {
  // @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill loaded first.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  // Node's webcrypto is structurally the DOM Crypto the library is typed against.
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  return x509;
}

/** A new key pair (extractable: its private key is written to a file). */
export async function generateKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

/** A private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
export async function exportPrivateKey(key: webcrypto.CryptoKey): Promise<string> {
  const b64 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key))
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

/** The signing key of a PKCS#8 PEM (as {@link exportPrivateKey} writes it). */
export function importPrivateKey(pem: string): Promise<webcrypto.CryptoKey> {
  return webcrypto.subtle.importKey('pkcs8', Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64'), KEY_ALGORITHM, true, ['sign']);
}

/** A serial number: 16 random bytes, hex, the first bit clear (positive). */
export function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive
  return b.toString('hex');
}

/** From one hour before `now` to ten years after it. */
export function validity(now = Date.now()): { notBefore: Date; notAfter: Date } {
  return { notBefore: new Date(now - 3600_000), notAfter: new Date(now + TEN_YEARS_MS) };
}

/** The names of `hosts` a certificate can carry: without empty ones and the wildcard addresses (`0.0.0.0`, `::`), each once, in order. */
export function certificateHosts(hosts: string[]): string[] {
  return [...new Set(hosts.filter((h) => h && h !== '0.0.0.0' && h !== '::'))];
}

/**
 * The extensions of a leaf certificate for `usage`: basic constraints (no CA, critical), key usage
 * (digital signature and key encipherment, critical), extended key usage; the authority key
 * identifier of `issuer` when given; subject alternative names (IP addresses and DNS names) when
 * `sans` is not empty.
 */
export async function leafExtensions(usage: 'server' | 'client', sans: string[], issuer?: X509.X509Certificate): Promise<X509.Extension[]> {
  const x509 = await loadX509();
  const exts: X509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension([usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth], false),
  ];
  if (issuer) exts.push(await x509.AuthorityKeyIdentifierExtension.create(issuer, false));
  if (sans.length) {
    exts.push(
      new x509.SubjectAlternativeNameExtension(
        sans.map((h) => (isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h })),
        false,
      ),
    );
  }
  return exts;
}

/** Writes a credential file: 0600 if `secret` (even when it existed with another mode), else 0644 (for a new file). */
export function writeCredential(path: string, data: string, secret: boolean): void {
  writeFileSync(path, data, { mode: secret ? 0o600 : 0o644 });
  if (secret) chmodSync(path, 0o600);
}
