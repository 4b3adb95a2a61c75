/**
 * @module
 * The PKCS#10 certificate signing request of a join (RFC 2986), for a key made on the device.
 *
 * The ASN.1 is @peculiar/asn1-csr's and @peculiar/asn1-x509's schemas, encoded by
 * @peculiar/asn1-schema (the layers under @peculiar/x509, without its tsyringe/reflect-metadata
 * and the CMS, PKCS#9 and RSA modules): half the bytes of @peculiar/x509 in the edge bundle
 * (measured in the issue 13 report). Node's crypto signs (ECDSA with SHA-256, DER signature).
 * {@link join} imports this module lazily, so EdgeCore's normal start never evaluates it.
 */
import { sign, type KeyObject } from 'node:crypto';
import { CertificationRequest, CertificationRequestInfo } from '@peculiar/asn1-csr';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, AttributeTypeAndValue, AttributeValue, Name, RelativeDistinguishedName, SubjectPublicKeyInfo } from '@peculiar/asn1-x509';

/** id-at-organizationName (X.520). */
const OID_O = '2.5.4.10';
/** id-at-commonName (X.520). */
const OID_CN = '2.5.4.3';
/** ecdsa-with-SHA256 (RFC 5758: no parameters). */
const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';

/**
 * A PEM CSR for `publicKey`, signed with `privateKey` (ECDSA P-256), subject
 * `O=system:nodes, CN=system:node:<nodeName>`. CloudHub takes only the public key from it (and
 * checks the signature); the subject is for humans who look at it.
 */
export function createCsr(nodeName: string, privateKey: KeyObject, publicKey: KeyObject): string {
  const rdn = (type: string, value: string) => new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value: new AttributeValue({ utf8String: value }) })]);
  const info = new CertificationRequestInfo({
    subject: new Name([rdn(OID_O, 'system:nodes'), rdn(OID_CN, `system:node:${nodeName}`)]),
    subjectPKInfo: AsnConvert.parse(publicKey.export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo),
  });
  const signature = sign('sha256', Buffer.from(AsnConvert.serialize(info)), privateKey);
  const csr = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new AlgorithmIdentifier({ algorithm: OID_ECDSA_SHA256 }),
    signature: new Uint8Array(signature).buffer,
  });
  return pem('CERTIFICATE REQUEST', Buffer.from(AsnConvert.serialize(csr)));
}

/** DER as PEM, 64 base64 characters a line (RFC 7468). */
function pem(label: string, der: Buffer): string {
  const b64 = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}
