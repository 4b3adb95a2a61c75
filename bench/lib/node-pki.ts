/**
 * @module
 * The PKI of bench/cloudhub-mtls.ts, made in memory with shared/x509 (@peculiar/x509 over node's
 * webcrypto), shaped as CloudCore's (docs/security.md): a node CA (ECDSA P-256,
 * `CN=ledge-cloudhub-ca`), CloudHub's serving certificate for 127.0.0.1 and localhost (sent as
 * the chain leaf + CA), and one client certificate per node
 * (`CN=system:node:<name>, O=system:nodes`, client auth), each with its own key.
 */
import type { webcrypto } from 'node:crypto';
import { NODE_CERT_CN_PREFIX, NODE_CERT_ORGANIZATION } from '../../shared/protocol/index.js';
import { KEY_ALGORITHM, exportPrivateKey, generateKeyPair, leafExtensions, loadX509, serialNumber, validity, type X509 } from '../../shared/x509/index.js';

export interface BenchPem {
  cert: string;
  key: string;
}

export interface BenchPki {
  /** The CA certificate, PEM. */
  ca: string;
  /** CloudHub's serving chain (leaf + CA) and key. */
  server: BenchPem;
  /** A client certificate for each node name, in order. */
  nodes(names: string[]): Promise<BenchPem[]>;
}

/** A new node CA and CloudHub's serving certificate from it. */
export async function createBenchPki(): Promise<BenchPki> {
  const x509 = await loadX509();
  const caKeys = await generateKeyPair();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: 'CN=ledge-cloudhub-ca',
    ...validity(),
    keys: caKeys,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const ca = `${caCert.toString('pem')}\n`;
  const issue = (subject: string, usage: 'server' | 'client', sans: string[]) => leaf(x509, caCert, caKeys.privateKey, subject, usage, sans);
  const server = await issue('CN=ledge-cloudhub', 'server', ['127.0.0.1', 'localhost']);
  return {
    ca,
    server: { cert: `${server.cert}${ca}`, key: server.key },
    async nodes(names) {
      const out: BenchPem[] = [];
      for (const n of names) out.push(await issue(`CN=${NODE_CERT_CN_PREFIX}${n}, O=${NODE_CERT_ORGANIZATION}`, 'client', []));
      return out;
    },
  };
}

async function leaf(x509: typeof X509, caCert: X509.X509Certificate, caKey: webcrypto.CryptoKey, subject: string, usage: 'server' | 'client', sans: string[]): Promise<BenchPem> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject,
    issuer: caCert.subject,
    ...validity(),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: await leafExtensions(usage, sans, caCert),
  });
  return { cert: `${cert.toString('pem')}\n`, key: await exportPrivateKey(keys.privateKey) };
}
