/**
 * @module
 * The control plane's credentials, generated once per data directory and reused on
 * restart (so kubeconfigs stay valid): an ECDSA P-256 CA, a serving certificate for
 * 127.0.0.1/localhost/::1 (+ the bind host), an admin client certificate
 * (O=system:masters), the kubelet client certificate the node proxy presents to a node's
 * kubelet endpoint (CN=kube-apiserver-kubelet-client, O=system:masters, as kubeadm's
 * `apiserver-kubelet-client`) and a random bearer token. Pure JS via @peculiar/x509 + webcrypto,
 * so no openssl binary or native addon is needed.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
import { isIP } from 'node:net';

export interface Pki {
  caCertPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  clientCertPem: string;
  clientKeyPem: string;
  /** Client certificate and key the apiserver presents to kubelets (node proxy: logs, exec, attach). */
  kubeletClientCertPem: string;
  kubeletClientKeyPem: string;
  /** Paths of the CA certificate (`ca.crt`) and of the kubelet client certificate and key. */
  caFile: string;
  kubeletClientCertFile: string;
  kubeletClientKeyFile: string;
  token: string;
}

/** Base name of the kubelet client certificate's files (kubeadm's name). */
const KUBELET_CLIENT = 'apiserver-kubelet-client';
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const TEN_YEARS = 3650 * 86400 * 1000;

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive
  return b.toString('hex');
}

function write(path: string, data: string, secret: boolean): void {
  writeFileSync(path, data, { mode: secret ? 0o600 : 0o644 });
  if (secret) chmodSync(path, 0o600);
}

/** Loads the PKI from `<dataDir>/pki`, creating whatever is missing. */
export async function loadOrCreatePki(dataDir: string, hosts: string[]): Promise<Pki> {
  // @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill loaded first.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  const crypto = webcrypto;
  // Node's webcrypto is structurally the DOM Crypto the library is typed against.
  x509.cryptoProvider.set(crypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const dir = join(dataDir, 'pki');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = (n: string) => join(dir, n);

  const importKey = async (p: string) => crypto.subtle.importKey('pkcs8', Buffer.from(readFileSync(p, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64'), ALG, true, ['sign']);
  const exportKey = async (k: CryptoKey) => pem('PRIVATE KEY', await crypto.subtle.exportKey('pkcs8', k));

  let caCertPem: string;
  let caKey: CryptoKey;
  if (existsSync(f('ca.crt')) && existsSync(f('ca.key'))) {
    caCertPem = readFileSync(f('ca.crt'), 'utf8');
    caKey = await importKey(f('ca.key'));
  } else {
    const keys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const ca = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: 'CN=ledge-ca',
      notBefore: new Date(Date.now() - 3600_000),
      notAfter: new Date(Date.now() + TEN_YEARS),
      keys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    caCertPem = `${ca.toString('pem')}\n`;
    caKey = keys.privateKey;
    write(f('ca.key'), await exportKey(caKey), true);
    write(f('ca.crt'), caCertPem, false);
    // A new CA invalidates the old leaf certificates.
    for (const n of ['server.crt', 'admin.crt', `${KUBELET_CLIENT}.crt`]) if (existsSync(f(n))) writeFileSync(f(n), '');
  }
  const caCert = new x509.X509Certificate(caCertPem);

  const leaf = async (file: string, subject: string, usage: 'server' | 'client', sans: string[]): Promise<{ cert: string; key: string }> => {
    const certPath = f(`${file}.crt`);
    const keyPath = f(`${file}.key`);
    const sansFile = f(`${file}.sans`);
    const wanted = JSON.stringify([...sans].sort());
    if (
      existsSync(certPath) &&
      existsSync(keyPath) &&
      readFileSync(certPath, 'utf8').includes('BEGIN CERTIFICATE') &&
      (!sans.length || (existsSync(sansFile) && readFileSync(sansFile, 'utf8') === wanted))
    ) {
      return { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8') };
    }
    const keys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const exts: InstanceType<typeof x509.Extension>[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth], false),
      await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
    ];
    if (sans.length) {
      exts.push(
        new x509.SubjectAlternativeNameExtension(
          sans.map((h) => (isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h })),
          false,
        ),
      );
    }
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: subject,
      issuer: caCert.subject,
      notBefore: new Date(Date.now() - 3600_000),
      notAfter: new Date(Date.now() + TEN_YEARS),
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: ALG,
      extensions: exts,
    });
    const out = { cert: `${cert.toString('pem')}\n`, key: await exportKey(keys.privateKey) };
    write(keyPath, out.key, true);
    write(certPath, out.cert, false);
    if (sans.length) write(sansFile, wanted, false);
    return out;
  };

  const sans = [...new Set(['127.0.0.1', '::1', 'localhost', ...hosts.filter((h) => h && h !== '0.0.0.0' && h !== '::')])];
  const server = await leaf('server', 'CN=ledge-apiserver', 'server', sans);
  const client = await leaf('admin', 'CN=ledge-admin, O=system:masters', 'client', []);
  const kubeletClient = await leaf(KUBELET_CLIENT, 'CN=kube-apiserver-kubelet-client, O=system:masters', 'client', []);

  let token: string;
  if (existsSync(f('token'))) token = readFileSync(f('token'), 'utf8').trim();
  else {
    token = randomBytes(32).toString('base64url');
    write(f('token'), `${token}\n`, true);
  }
  return {
    caCertPem,
    serverCertPem: server.cert,
    serverKeyPem: server.key,
    clientCertPem: client.cert,
    clientKeyPem: client.key,
    kubeletClientCertPem: kubeletClient.cert,
    kubeletClientKeyPem: kubeletClient.key,
    caFile: f('ca.crt'),
    kubeletClientCertFile: f(`${KUBELET_CLIENT}.crt`),
    kubeletClientKeyFile: f(`${KUBELET_CLIENT}.key`),
    token,
  };
}
