/**
 * @module
 * Who is connecting: the node a client certificate names (Kubernetes' node identity, subject
 * `CN=system:node:<name>, O=system:nodes`), the node name rule, and which listen addresses only
 * this machine can reach. Pure functions, no I/O.
 */
import { isIP } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import { NODE_CERT_CN_PREFIX, NODE_CERT_ORGANIZATION } from '../../shared/protocol/index.js';

/** DNS-1123 subdomain, as Kubernetes requires for node names. */
const NODE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Whether `name` is a valid node name (a DNS-1123 subdomain of at most 253 characters). */
export function isNodeName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && NODE_NAME.test(name);
}

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) {
    const canonical = new URL(`http://[${h}]/`).hostname; // compressed, lower case; ::ffff:127.0.0.1 → [::ffff:7f00:1]
    return canonical === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
  }
  return false;
}

/** The node a verified client certificate names, with what identifies the certificate (for logs, later revocation). */
export interface CertificateIdentity {
  node: string;
  /** Serial number, hex upper case as node reports it. */
  serialNumber: string;
  /** End of validity (RFC 2822-ish, as node reports it). */
  validTo: string;
}

/** Node gives a subject attribute that occurs more than once as an array. */
function values(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/**
 * The node named by a client certificate CloudHub's CA verified: one subject CN
 * `system:node:<name>` with a valid node name, and the organization `system:nodes` among its O.
 * Returns the reason when the certificate names no node.
 */
export function nodeFromCertificate(cert: PeerCertificate): CertificateIdentity | { reason: string } {
  // Node's typings say string; a repeated attribute arrives as an array.
  const subject = (cert.subject ?? {}) as unknown as Record<string, string | string[] | undefined>;
  const cns = values(subject.CN);
  const orgs = values(subject.O);
  const shown = `CN=${cns.join('+') || '(none)'}, O=${orgs.join('+') || '(none)'}`.slice(0, 300);
  if (cns.length !== 1 || !cns[0]!.startsWith(NODE_CERT_CN_PREFIX)) {
    return { reason: `client certificate subject ${shown} names no node (expected CN=${NODE_CERT_CN_PREFIX}<node name>, O=${NODE_CERT_ORGANIZATION})` };
  }
  if (!orgs.includes(NODE_CERT_ORGANIZATION)) {
    return { reason: `client certificate subject ${shown} is not in the organization ${NODE_CERT_ORGANIZATION}` };
  }
  const node = cns[0]!.slice(NODE_CERT_CN_PREFIX.length);
  if (!isNodeName(node)) return { reason: `client certificate subject ${shown}: "${node.slice(0, 100)}" is not a valid node name (DNS-1123 subdomain)` };
  return { node, serialNumber: cert.serialNumber ?? '', validTo: cert.valid_to ?? '' };
}
