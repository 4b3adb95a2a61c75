/**
 * @module
 * CloudCore's certificate authority (issue 13): loaded from the operator's files, else from the
 * `ledge-ca` Secret, else generated and stored there, with the first-start race between replicas
 * decided by the API server (KubeEdge #5922: two replicas each made a CA). It issues CloudHub's
 * serving certificate and signs the nodes' CSRs.
 */
import { X509Certificate as NodeX509Certificate, createPrivateKey, createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CertificateAuthorityError, CsrInvalidError, JoinRequestError, errorMessage } from '../../shared/errors/index.js';
import { caCertHash, isValidNodeName } from '../../shared/jointoken/index.js';
import type { Logger } from '../../shared/log/index.js';
import { KEY_ALGORITHM, certificateHosts, exportPrivateKey, generateKeyPair, leafExtensions, loadX509, serialNumber, validity, type X509 } from '../../shared/x509/index.js';
import { httpStatus, withSignal, type k8s } from '../kube/index.js';
import { apiErrorText } from './api.js';
import { defaultCertificateAuthorityOptions } from './options.js';

/** Subject of a generated CA. */
export const CA_SUBJECT = 'CN=ledge-cloudhub-ca';
/** Subject of CloudHub's serving certificate. */
export const SERVING_SUBJECT = 'CN=ledge-cloudhub';
/** Organization of every node certificate (Kubernetes' node group). */
export const NODE_ORGANIZATION = 'system:nodes';
/** Prefix of a node certificate's common name: `system:node:<nodeName>`. */
export const NODE_CN_PREFIX = 'system:node:';
/** Type of the CA Secret. */
export const CA_SECRET_TYPE = 'kubernetes.io/tls';

/** Hosts every serving certificate names besides the configured ones (local clients, health checks). */
const LOCAL_HOSTS = ['127.0.0.1', 'localhost'];
/** Read-or-create rounds before giving up (each lost one means the Secret was created and deleted meanwhile). */
const CREATE_ATTEMPTS = 5;
/** Smallest RSA key accepted in a CSR. */
const MIN_RSA_BITS = 2048;
/** Largest RSA key accepted in a CSR (verifying a bigger one is pointless work for an attacker to ask for). */
const MAX_RSA_BITS = 8192;

/** The calls of CoreV1Api the CA makes (a fake in unit tests). */
export type CaSecretApi = Pick<k8s.CoreV1Api, 'readNamespacedSecret' | 'createNamespacedSecret'>;

/** Options of {@link loadOrCreateCa}; defaults in ./options.ts. */
export interface LoadCaOptions {
  /** The API the Secret is read from and created in; not needed with `certFile` + `keyFile`. */
  core?: CaSecretApi;
  /** Namespace of the Secret. Default 'kube-system'. */
  namespace?: string;
  /** Name of the Secret. Default 'ledge-ca'. */
  secretName?: string;
  /** Operator-supplied CA certificate (PEM; its first certificate). With `keyFile`, wins: nothing is read from or written to the API. */
  certFile?: string;
  /** Private key of `certFile` (PEM: PKCS#8, SEC1 or PKCS#1; ECDSA P-256/P-384 or RSA). */
  keyFile?: string;
  log: Logger;
  /** Default lifetime of node certificates. Default one year. */
  nodeCertLifetimeMs?: number;
  /** Lifetime of serving certificates. Default one year. */
  servingCertLifetimeMs?: number;
  /** notBefore this far back (at most a tenth of the lifetime). Default 5 min. */
  backdateMs?: number;
  /** Longest one API call may take. Default 10000. */
  apiTimeoutMs?: number;
}

/** A certificate and its key, PEM. */
export interface IssuedCertificate {
  /** The leaf, then the CA (the chain a TLS server sends). */
  cert: string;
  /** PKCS#8 PEM. */
  key: string;
}

/** What a checked CSR holds that matters (for logs). */
export interface CheckedCsr {
  /** `ECDSA P-256` or `RSA <bits>`. */
  keyAlgorithm: string;
}

/** CloudCore's CA. */
export interface CertificateAuthority {
  /** The CA certificate, PEM (what `GET /v1/ca.crt` serves and nodes trust). */
  readonly certPem: string;
  /** Its pin, `sha256:<hex>` of the SubjectPublicKeyInfo (what join tokens carry). */
  readonly hash: string;
  /** Where it came from: the operator's files, the existing Secret, or created now by this process. */
  readonly source: 'files' | 'secret' | 'created';
  /** When the CA certificate expires (no certificate it issues outlives it). */
  readonly notAfter: Date;
  /** A serving certificate (server auth) for `hosts` plus 127.0.0.1 and localhost, with a new P-256 key. */
  issueServingCert(hosts: string[]): Promise<IssuedCertificate>;
  /**
   * Checks a CSR as {@link signNodeCsr} would (PEM PKCS#10, signature, hash, key type) without
   * signing, so a caller can refuse a bad one before spending a single-use token. Throws
   * {@link CsrInvalidError}.
   */
  checkNodeCsr(csrPem: string): Promise<CheckedCsr>;
  /**
   * A client certificate for node `nodeName` from the CSR's public key: subject
   * `CN=system:node:<nodeName>, O=system:nodes`, client auth only, not a CA, no SAN. The CSR's
   * signature must verify; its subject and extensions are ignored. Throws {@link CsrInvalidError}
   * (bad CSR) or {@link JoinRequestError} (bad node name).
   */
  signNodeCsr(csrPem: string, nodeName: string, options?: { lifetimeMs?: number }): Promise<string>;
}

/** A key's webcrypto import and signature parameters, by key type. */
interface KeyKind {
  importAlgorithm: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  signingAlgorithm: { name: string; hash: string };
}

function keyKind(key: KeyObject, where: string): KeyKind {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return { importAlgorithm: { name: 'ECDSA', namedCurve: 'P-256' }, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } };
    if (curve === 'secp384r1') return { importAlgorithm: { name: 'ECDSA', namedCurve: 'P-384' }, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } };
    throw new CertificateAuthorityError(`${where}: EC curve ${curve ?? 'unknown'} is not supported (use P-256 or P-384)`);
  }
  if (type === 'rsa') {
    return { importAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } };
  }
  throw new CertificateAuthorityError(`${where}: a ${type ?? 'unknown'} key is not supported (use ECDSA P-256, P-384 or RSA)`);
}

/** The first certificate of a PEM bundle, PEM. */
function firstCertificate(pem: string, where: string): NodeX509Certificate {
  try {
    return new NodeX509Certificate(pem);
  } catch (err) {
    throw new CertificateAuthorityError(`${where}: not a PEM certificate (${errorMessage(err)})`, { cause: err });
  }
}

/**
 * The CA of a certificate and its key (PEM). Checks that the certificate is a CA, still valid, and
 * that the key is its key. `where` names the source in errors.
 */
export async function caFromPem(
  certPem: string,
  keyPem: string,
  options: { source: CertificateAuthority['source']; where: string; nodeCertLifetimeMs?: number; servingCertLifetimeMs?: number; backdateMs?: number; now?: () => number },
): Promise<CertificateAuthority> {
  const { where, source } = options;
  const nodeCert = firstCertificate(certPem, where);
  if (!nodeCert.ca) throw new CertificateAuthorityError(`${where}: the certificate (${nodeCert.subject.replace(/\n/g, ', ')}) is not a CA (basic constraints CA:FALSE or missing)`);
  const now = options.now ?? Date.now;
  const notAfter = new Date(nodeCert.validTo);
  if (notAfter.getTime() <= now()) throw new CertificateAuthorityError(`${where}: the CA certificate expired on ${notAfter.toISOString()}`);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(keyPem);
  } catch (err) {
    throw new CertificateAuthorityError(`${where}: the private key is not a PEM key (${errorMessage(err)})`, { cause: err });
  }
  const spki = (k: KeyObject) => k.export({ type: 'spki', format: 'der' });
  if (!spki(createPublicKey(privateKey)).equals(spki(nodeCert.publicKey))) throw new CertificateAuthorityError(`${where}: the private key is not the key of the certificate`);
  const kind = keyKind(privateKey, where);
  const signingKey = await webcrypto.subtle.importKey('pkcs8', privateKey.export({ type: 'pkcs8', format: 'der' }), kind.importAlgorithm, false, ['sign']);
  const x509 = await loadX509();
  const cert = new x509.X509Certificate(nodeCert.raw);
  const pem = `${cert.toString('pem')}\n`;
  const nodeLifetime = options.nodeCertLifetimeMs ?? defaultCertificateAuthorityOptions.nodeCertLifetimeMs;
  const servingLifetime = options.servingCertLifetimeMs ?? defaultCertificateAuthorityOptions.servingCertLifetimeMs;
  const backdate = options.backdateMs ?? defaultCertificateAuthorityOptions.backdateMs;
  if (!(nodeLifetime > 0) || !(servingLifetime > 0)) throw new TypeError('certificate authority: certificate lifetimes must be positive');

  /** notBefore and notAfter of a certificate issued now for `lifetimeMs`, never past the CA's own end. */
  const window = (lifetimeMs: number) => {
    const t = now();
    return { notBefore: new Date(t - Math.min(backdate, lifetimeMs / 10)), notAfter: new Date(Math.min(t + lifetimeMs, notAfter.getTime())) };
  };

  const parseCsr = async (csrPem: string): Promise<{ csr: X509.Pkcs10CertificateRequest; keyAlgorithm: string }> => {
    if (typeof csrPem !== 'string') throw new CsrInvalidError('the CSR must be a PEM string');
    const m = /^-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END (NEW )?CERTIFICATE REQUEST-----$/.exec(csrPem.trim());
    if (!m) throw new CsrInvalidError('the CSR is not one PEM block "-----BEGIN CERTIFICATE REQUEST-----"');
    let csr: X509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(Buffer.from(m[2]!.replace(/\s/g, ''), 'base64'));
    } catch (err) {
      throw new CsrInvalidError(`the CSR is not a PKCS#10 certification request (${errorMessage(err)})`, { cause: err });
    }
    const alg = csr.publicKey.algorithm as { name?: string; namedCurve?: string; modulusLength?: number };
    let keyAlgorithm: string;
    if (alg.name === 'ECDSA' && alg.namedCurve === 'P-256') keyAlgorithm = 'ECDSA P-256';
    else if (alg.name === 'RSASSA-PKCS1-v1_5' && typeof alg.modulusLength === 'number') {
      if (alg.modulusLength < MIN_RSA_BITS || alg.modulusLength > MAX_RSA_BITS)
        throw new CsrInvalidError(`the CSR's RSA key has ${alg.modulusLength} bits: use ECDSA P-256, or RSA of ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits`);
      keyAlgorithm = `RSA ${alg.modulusLength}`;
    } else {
      const name = alg.name === 'ECDSA' ? `ECDSA ${alg.namedCurve ?? '(unknown curve)'}` : (alg.name ?? 'unknown');
      throw new CsrInvalidError(`the CSR's key is ${name}: use ECDSA P-256 (or RSA of at least ${MIN_RSA_BITS} bits)`);
    }
    const hash = (csr.signatureAlgorithm as { hash?: { name?: string } }).hash?.name;
    if (hash !== 'SHA-256' && hash !== 'SHA-384' && hash !== 'SHA-512') throw new CsrInvalidError(`the CSR is signed with ${hash ?? 'an unknown hash'}: use SHA-256`);
    let ok: boolean;
    try {
      ok = await csr.verify();
    } catch (err) {
      throw new CsrInvalidError(`the CSR's signature cannot be checked (${errorMessage(err)})`, { cause: err });
    }
    if (!ok) throw new CsrInvalidError("the CSR's signature does not verify with its public key");
    return { csr, keyAlgorithm };
  };

  return {
    certPem: pem,
    hash: caCertHash(pem),
    source,
    notAfter,

    async issueServingCert(hosts) {
      const keys = await generateKeyPair();
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: serialNumber(),
        subject: SERVING_SUBJECT,
        issuer: cert.subject,
        ...window(servingLifetime),
        publicKey: keys.publicKey,
        signingKey,
        signingAlgorithm: kind.signingAlgorithm,
        extensions: await leafExtensions('server', certificateHosts([...hosts, ...LOCAL_HOSTS]), cert),
      });
      return { cert: `${leaf.toString('pem')}\n${pem}`, key: await exportPrivateKey(keys.privateKey) };
    },

    async checkNodeCsr(csrPem) {
      const { keyAlgorithm } = await parseCsr(csrPem);
      return { keyAlgorithm };
    },

    async signNodeCsr(csrPem, nodeName, signOptions = {}) {
      if (typeof nodeName !== 'string' || !isValidNodeName(nodeName)) throw new JoinRequestError(`node name ${JSON.stringify(nodeName)} is not a DNS-1123 subdomain`);
      const lifetimeMs = signOptions.lifetimeMs ?? nodeLifetime;
      if (!(lifetimeMs > 0)) throw new TypeError(`signNodeCsr: lifetimeMs ${lifetimeMs} must be positive`);
      const { csr } = await parseCsr(csrPem);
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: serialNumber(),
        // Only what the CA decides: the CSR's subject and requested extensions are ignored.
        subject: `CN=${NODE_CN_PREFIX}${nodeName}, O=${NODE_ORGANIZATION}`,
        issuer: cert.subject,
        ...window(lifetimeMs),
        publicKey: csr.publicKey,
        signingKey,
        signingAlgorithm: kind.signingAlgorithm,
        extensions: await leafExtensions('client', [], cert),
      });
      return `${leaf.toString('pem')}\n`;
    },
  };
}

/** A new self-signed CA (`CN=ledge-cloudhub-ca`, ECDSA P-256, ten years, path length 0), PEM. */
export async function generateCaPem(): Promise<{ cert: string; key: string }> {
  const x509 = await loadX509();
  const keys = await generateKeyPair();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: CA_SUBJECT,
    ...validity(),
    keys,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [
      // Path length 0: this CA signs leaf certificates only.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: `${ca.toString('pem')}\n`, key: await exportPrivateKey(keys.privateKey) };
}

function readFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new CertificateAuthorityError(`cannot read the CA ${what} file ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * CloudCore's CA (see the module comment):
 *
 * 1. `certFile` + `keyFile` given: those, and nothing is read from or written to the API.
 * 2. Else the Secret `<namespace>/<secretName>` (kubernetes.io/tls: `tls.crt`, `tls.key`) if it exists.
 * 3. Else a new CA, created in that Secret. If another replica created it first (409), the
 *    winner's is read and used: the Secret is never overwritten, so every replica ends with one CA.
 *
 * A Secret that exists but is damaged (a key missing, not a CA, key and certificate not a pair,
 * expired) is an error naming it, never replaced: replacing the CA would lock out every node.
 *
 * @example
 * const ca = await loadOrCreateCa({ core: kc.makeApiClient(k8s.CoreV1Api), namespace: 'kube-system', log });
 * const serving = await ca.issueServingCert(['10.0.0.5']);
 */
export async function loadOrCreateCa(options: LoadCaOptions): Promise<CertificateAuthority> {
  const o = { ...defaultCertificateAuthorityOptions, ...options };
  const lifetimes = { nodeCertLifetimeMs: o.nodeCertLifetimeMs, servingCertLifetimeMs: o.servingCertLifetimeMs, backdateMs: o.backdateMs };
  if (o.certFile || o.keyFile) {
    if (!o.certFile || !o.keyFile) throw new CertificateAuthorityError('the CA certificate file and key file must be given together');
    const ca = await caFromPem(readFile(o.certFile, 'certificate'), readFile(o.keyFile, 'key'), { source: 'files', where: `CA file ${o.certFile}`, ...lifetimes });
    o.log.info(`using the CA of ${o.certFile} (${ca.hash}); nothing is stored in the API`, { caHash: ca.hash });
    return ca;
  }
  const core = o.core;
  if (!core) throw new TypeError('loadOrCreateCa: core (a CoreV1Api) is required without certFile and keyFile');
  const { namespace, secretName: name } = o;
  const ref = `Secret ${namespace}/${name}`;
  const call = () => withSignal(AbortSignal.timeout(o.apiTimeoutMs));

  const fromSecret = async (secret: k8s.V1Secret, source: 'secret' | 'created'): Promise<CertificateAuthority> => {
    const crt = secret.data?.['tls.crt'];
    const key = secret.data?.['tls.key'];
    if (!crt || !key)
      throw new CertificateAuthorityError(`${ref} exists but lacks ${!crt ? 'tls.crt' : 'tls.key'}; it is not replaced (delete it to make a new CA, then re-join every node)`);
    if (secret.type !== CA_SECRET_TYPE) o.log.warn(`${ref} has type ${secret.type ?? '(none)'}, not ${CA_SECRET_TYPE}; using its tls.crt and tls.key`);
    const decode = (b64: string) => Buffer.from(b64, 'base64').toString('utf8');
    return caFromPem(decode(crt), decode(key), { source, where: ref, ...lifetimes });
  };

  let generated: { cert: string; key: string } | undefined;
  for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
    try {
      const ca = await fromSecret(await core.readNamespacedSecret({ name, namespace }, call()), 'secret');
      o.log.info(`using the CA of ${ref} (${ca.hash})`, { caHash: ca.hash });
      return ca;
    } catch (err) {
      if (err instanceof CertificateAuthorityError) throw err;
      if (httpStatus(err) !== 404) throw new CertificateAuthorityError(`cannot read ${ref}: ${apiErrorText(err)}`, { cause: err });
    }
    generated ??= await generateCaPem();
    const body: k8s.V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'ledge-cloudcore' } },
      type: CA_SECRET_TYPE,
      data: { 'tls.crt': Buffer.from(generated.cert).toString('base64'), 'tls.key': Buffer.from(generated.key).toString('base64') },
    };
    try {
      const created = await core.createNamespacedSecret({ namespace, body }, call());
      const ca = await fromSecret(created.data ? created : body, 'created');
      o.log.info(`created a new CA in ${ref} (${ca.hash})`, { caHash: ca.hash });
      return ca;
    } catch (err) {
      if (err instanceof CertificateAuthorityError) throw err;
      // Another replica created it between our read and our create: read theirs (next round).
      if (httpStatus(err) === 409) {
        o.log.info(`${ref} was created by another replica meanwhile; using that CA`);
        continue;
      }
      throw new CertificateAuthorityError(`cannot create ${ref}: ${apiErrorText(err)}`, { cause: err });
    }
  }
  throw new CertificateAuthorityError(`${ref} was created and deleted concurrently ${CREATE_ATTEMPTS} times; is something deleting it?`);
}
