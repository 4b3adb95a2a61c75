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
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, type webcrypto } from 'node:crypto';
import {
  KEY_ALGORITHM,
  certificateHosts,
  exportPrivateKey,
  generateKeyPair,
  importPrivateKey,
  leafExtensions,
  loadX509,
  serialNumber,
  validity,
  writeCredential as write,
} from '../shared/x509/index.js';

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

/** Loads the PKI from `<dataDir>/pki`, creating whatever is missing. */
export async function loadOrCreatePki(dataDir: string, hosts: string[]): Promise<Pki> {
  const x509 = await loadX509();
  const dir = join(dataDir, 'pki');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = (n: string) => join(dir, n);

  let caCertPem: string;
  let caKey: webcrypto.CryptoKey;
  if (existsSync(f('ca.crt')) && existsSync(f('ca.key'))) {
    caCertPem = readFileSync(f('ca.crt'), 'utf8');
    caKey = await importPrivateKey(readFileSync(f('ca.key'), 'utf8'));
  } else {
    const keys = await generateKeyPair();
    const ca = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialNumber(),
      name: 'CN=ledge-ca',
      ...validity(),
      keys,
      signingAlgorithm: KEY_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    caCertPem = `${ca.toString('pem')}\n`;
    caKey = keys.privateKey;
    write(f('ca.key'), await exportPrivateKey(caKey), true);
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
    const keys = await generateKeyPair();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject: subject,
      issuer: caCert.subject,
      ...validity(),
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: KEY_ALGORITHM,
      extensions: await leafExtensions(usage, sans, caCert),
    });
    const out = { cert: `${cert.toString('pem')}\n`, key: await exportPrivateKey(keys.privateKey) };
    write(keyPath, out.key, true);
    write(certPath, out.cert, false);
    if (sans.length) write(sansFile, wanted, false);
    return out;
  };

  const sans = certificateHosts(['127.0.0.1', '::1', 'localhost', ...hosts]);
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
