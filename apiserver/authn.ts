/**
 * @module
 * Request authentication of the control plane, decided for every request on the
 * evidence that request carries:
 *
 * 1. a client certificate the peer actually presented on this connection, verified here
 *    against the control plane's CA (issuer, signature, validity dates, not a CA itself,
 *    clientAuth usage) → user = CN, groups = O;
 * 2. otherwise an `Authorization: Bearer` token, compared in constant time;
 * 3. otherwise nothing: the caller answers 401.
 *
 * Node's `TLSSocket.authorized` is deliberately not consulted: on a resumed TLS 1.3
 * session whose client never sent a certificate it reports `true` (the session carries a
 * verify result of "OK" and no certificate), which let any client in by reconnecting
 * with the ticket of a rejected first connection.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';

/** Who a request comes from. */
export interface Identity {
  user: string;
  groups: string[];
  /** How it was established. */
  via: 'x509' | 'token' | 'none';
}

export interface AuthenticatorOptions {
  /** The bearer token accepted; undefined = no token authentication. */
  token?: string;
  /** PEM of the CA whose client certificates are accepted; undefined = no certificate authentication. */
  clientCaPem?: string;
  /** Injected clock for the validity check (tests). */
  now?: () => number;
}

const CLIENT_AUTH_EKU = '1.3.6.1.5.5.7.3.2';
const ANY_EKU = '2.5.29.37.0';

/** The value of one RDN attribute (`CN`, `O`) of a subject as Node prints it, all occurrences. */
function rdn(subject: string, attr: string): string[] {
  // Node renders a subject one attribute per line ("CN=ledge-admin\nO=system:masters").
  return subject
    .split('\n')
    .filter((l) => l.startsWith(`${attr}=`))
    .map((l) => l.slice(attr.length + 1));
}

/** The admin's token digest, so that comparison takes the same time whatever the length. */
const digest = (s: string | Buffer): Buffer => createHash('sha256').update(s).digest();

export class Authenticator {
  private readonly ca?: X509Certificate;
  private readonly tokenDigest?: Buffer;
  private readonly now: () => number;

  constructor(o: AuthenticatorOptions) {
    if (o.clientCaPem) this.ca = new X509Certificate(o.clientCaPem);
    if (o.token !== undefined) this.tokenDigest = digest(o.token);
    this.now = o.now ?? Date.now;
  }

  /** True when no authentication is configured at all (plain HTTP on loopback). */
  get open(): boolean {
    return !this.ca && !this.tokenDigest;
  }

  /** The request's identity, or undefined (→ 401). */
  authenticate(req: IncomingMessage): Identity | undefined {
    if (this.open) return { user: 'system:anonymous', groups: ['system:unauthenticated'], via: 'none' };
    const fromCert = this.ca ? this.fromCertificate(req) : undefined;
    if (fromCert) return fromCert;
    if (this.tokenDigest) return this.fromToken(req);
    return undefined;
  }

  /** Verifies the certificate presented on the request's connection, if any. */
  private fromCertificate(req: IncomingMessage): Identity | undefined {
    const sock = req.socket as Partial<TLSSocket>;
    if (!sock.encrypted || typeof sock.getPeerX509Certificate !== 'function') return undefined;
    const cert = sock.getPeerX509Certificate();
    if (!cert) return undefined;
    return this.verifyClientCertificate(cert);
  }

  /** The identity a client certificate proves, when the control plane's CA issued it and it is valid now. */
  verifyClientCertificate(cert: X509Certificate): Identity | undefined {
    const ca = this.ca;
    if (!ca) return undefined;
    if (cert.ca) return undefined; // a CA certificate is no client identity
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return undefined;
    const now = this.now();
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    if (!(from <= now && now <= to)) return undefined;
    const eku = cert.keyUsage; // extended key usages; undefined = unrestricted
    if (eku && !eku.includes(CLIENT_AUTH_EKU) && !eku.includes(ANY_EKU)) return undefined;
    const user = rdn(cert.subject, 'CN')[0];
    if (!user) return undefined;
    return { user, groups: rdn(cert.subject, 'O'), via: 'x509' };
  }

  private fromToken(req: IncomingMessage): Identity | undefined {
    const auth = req.headers.authorization;
    if (!auth || !this.tokenDigest) return undefined;
    const m = /^bearer\s+(\S+)\s*$/i.exec(auth);
    if (!m) return undefined;
    if (!timingSafeEqual(digest(m[1]!), this.tokenDigest)) return undefined;
    return { user: 'ledge-admin', groups: ['system:masters'], via: 'token' };
  }
}
