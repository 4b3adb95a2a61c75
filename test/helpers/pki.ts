/**
 * A throwaway PKI for mTLS tests, made in memory with shared/x509 (@peculiar/x509): a CA, a
 * CloudHub serving certificate for 127.0.0.1/localhost (the chain leaf + CA, as the contract
 * says CloudHub sends it), and node client certificates with any subject and validity.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { webcrypto } from 'node:crypto';
import { KEY_ALGORITHM, exportPrivateKey, generateKeyPair, leafExtensions, loadX509, serialNumber, validity, type X509 } from '../../shared/x509/index.js';
import { NODE_CERT_CN_PREFIX, NODE_CERT_ORGANIZATION } from '../../shared/protocol/index.js';

export interface Pem {
  cert: string;
  key: string;
}

export interface LeafOptions {
  /** Full subject, e.g. `CN=system:node:a, O=system:nodes`. */
  subject: string;
  /** Default client. */
  usage?: 'client' | 'server';
  notBefore?: Date;
  notAfter?: Date;
  /** Subject alternative names (server certificates). */
  sans?: string[];
}

export interface TestPki {
  /** The CA certificate (PEM). */
  ca: string;
  /** CloudHub's serving certificate: chain leaf + CA, and its key. */
  server: Pem;
  /** A leaf signed by this CA. */
  issue(o: LeafOptions): Promise<Pem>;
  /** A node's client certificate: `CN=system:node:<name>, O=system:nodes`, valid now (or as given). */
  node(name: string, o?: Partial<LeafOptions>): Promise<Pem>;
  /** Writes `<base>.crt` and `<base>.key` into `dir`; returns the paths. */
  write(dir: string, base: string, pem: Pem): { certFile: string; keyFile: string };
}

/** A new CA named `name` (and CloudHub's serving certificate from it). */
export async function createTestPki(name = 'ledge-test-ca'): Promise<TestPki> {
  const x509 = await loadX509();
  const caKeys = await generateKeyPair();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${name}`,
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
  const issue = (o: LeafOptions) => leaf(x509, caCert, caKeys.privateKey, o);
  const serverLeaf = await issue({ subject: 'CN=ledge-cloudhub', usage: 'server', sans: ['127.0.0.1', 'localhost'] });
  return {
    ca,
    server: { cert: `${serverLeaf.cert}${ca}`, key: serverLeaf.key },
    issue,
    node: (nodeName, o = {}) => issue({ subject: `CN=${NODE_CERT_CN_PREFIX}${nodeName}, O=${NODE_CERT_ORGANIZATION}`, ...o }),
    write(dir, base, pem) {
      const certFile = join(dir, `${base}.crt`);
      const keyFile = join(dir, `${base}.key`);
      writeFileSync(certFile, pem.cert);
      writeFileSync(keyFile, pem.key, { mode: 0o600 });
      return { certFile, keyFile };
    },
  };
}

async function leaf(x509: typeof X509, caCert: X509.X509Certificate, caKey: webcrypto.CryptoKey, o: LeafOptions): Promise<Pem> {
  const keys = await generateKeyPair();
  const v = validity();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: o.subject,
    issuer: caCert.subject,
    notBefore: o.notBefore ?? v.notBefore,
    notAfter: o.notAfter ?? v.notAfter,
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: await leafExtensions(o.usage ?? 'client', o.sans ?? [], caCert),
  });
  return { cert: `${cert.toString('pem')}\n`, key: await exportPrivateKey(keys.privateKey) };
}
