/**
 * @module
 * Join tokens (issue 13), the one thing an operator pastes onto a device: `<id>.<secret>@sha256:<hex>`.
 *
 * - `<id>.<secret>` is the credential (kubeadm's bootstrap-token shape): id 6 and secret 16
 *   characters of `[a-z0-9]`. The id names the token record (`ledge-token-<id>`, cloud/tokens), the
 *   secret proves possession; the cloud stores only the secret's SHA-256.
 * - `sha256:<64 hex>` pins CloudCore's CA: the SHA-256 of its certificate's SubjectPublicKeyInfo
 *   (`caCertHash` in shared/x509), checked by the edge before it sends the credential anywhere.
 *
 * Used by the cloud and by the edge bundle: Node's crypto only, no dependency. Error messages name
 * the part that is wrong and never contain the secret.
 */
import { X509Certificate, createHash, randomInt, timingSafeEqual } from 'node:crypto';
import { JoinTokenMalformedError } from '../errors/index.js';

/** Characters of a token id and secret. */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
/** Length of a token id. */
export const TOKEN_ID_LENGTH = 6;
/** Length of a token secret (16 of 36 characters: 82 bits). */
export const TOKEN_SECRET_LENGTH = 16;

const ID_RE = /^[a-z0-9]{6}$/;
const SECRET_RE = /^[a-z0-9]{16}$/;
const HASH_RE = /^sha256:[0-9a-f]{64}$/;
/** DNS-1123 subdomain, as Kubernetes requires for node names. */
const NODE_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** The credential half of a join token. */
export interface JoinCredential {
  /** 6 characters `[a-z0-9]`: public, names the token. */
  id: string;
  /** 16 characters `[a-z0-9]`: never logged, never stored (only its SHA-256). */
  secret: string;
}

/** A parsed join token: the credential and, when the token carries one, the CA pin. */
export interface ParsedJoinToken extends JoinCredential {
  /** `sha256:<64 lowercase hex>`; absent for a bare `<id>.<secret>`. */
  caHash?: string;
}

function randomString(length: number): string {
  let out = '';
  // randomInt is uniform (rejection sampling), so every character is equally likely.
  for (let i = 0; i < length; i++) out += ALPHABET[randomInt(ALPHABET.length)];
  return out;
}

/** A new random credential. */
export function generateJoinCredential(): JoinCredential {
  return { id: randomString(TOKEN_ID_LENGTH), secret: randomString(TOKEN_SECRET_LENGTH) };
}

/** Whether `s` is a token id (6 characters `[a-z0-9]`). */
export function isTokenId(s: string): boolean {
  return ID_RE.test(s);
}

/** Whether `s` is a CA pin: `sha256:` and 64 lowercase hex digits. */
export function isCaHash(s: string): boolean {
  return HASH_RE.test(s);
}

/** Whether `name` is a valid node name: a DNS-1123 subdomain of at most 253 characters. */
export function isValidNodeName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && NODE_NAME_RE.test(name);
}

/** `<id>.<secret>`: what `Authorization: Bearer` carries. */
export function formatBearer(cred: JoinCredential): string {
  checkCredential(cred.id, cred.secret);
  return `${cred.id}.${cred.secret}`;
}

/**
 * The join token an operator pastes: `<id>.<secret>@sha256:<hex>`.
 *
 * @example formatJoinToken(generateJoinCredential(), caCertHash(caPem)) // 'k3x9qa.0f1e…@sha256:3f1c…'
 */
export function formatJoinToken(cred: JoinCredential, caHash: string): string {
  if (!isCaHash(caHash)) throw new JoinTokenMalformedError(`the CA hash must be sha256:<64 lowercase hex digits>, got ${describeHash(caHash)}`);
  return `${formatBearer(cred)}@${caHash}`;
}

/**
 * Parses a join token, `<id>.<secret>@sha256:<hex>` (or a bare `<id>.<secret>`: then no `caHash`).
 * Surrounding white space is ignored, the hash's hex digits may be upper case (normalized to lower).
 * Throws {@link JoinTokenMalformedError} naming the part that is wrong (never echoing the secret).
 */
export function parseJoinToken(s: string): ParsedJoinToken {
  const text = s.trim();
  if (!text) throw new JoinTokenMalformedError('the join token is empty: expected <id>.<secret>@sha256:<hex>');
  const at = text.indexOf('@');
  const cred = parseBearer(at < 0 ? text : text.slice(0, at));
  if (at < 0) return cred;
  const hash = text.slice(at + 1);
  const lower = hash.toLowerCase();
  if (!isCaHash(lower)) throw new JoinTokenMalformedError(`the CA hash after "@" must be sha256:<64 hex digits>, got ${describeHash(hash)}`);
  return { ...cred, caHash: lower };
}

/**
 * Parses the credential `<id>.<secret>` (a bearer token). Throws {@link JoinTokenMalformedError}
 * naming the part that is wrong (never echoing the secret).
 */
export function parseBearer(s: string): JoinCredential {
  const text = s.trim();
  if (!text) throw new JoinTokenMalformedError('the token is empty: expected <id>.<secret>');
  const dot = text.indexOf('.');
  if (dot < 0)
    throw new JoinTokenMalformedError(
      `the token has no "." between its id and its secret: expected <id>.<secret> (${TOKEN_ID_LENGTH} and ${TOKEN_SECRET_LENGTH} characters a-z0-9)`,
    );
  checkCredential(text.slice(0, dot), text.slice(dot + 1));
  return { id: text.slice(0, dot), secret: text.slice(dot + 1) };
}

function checkCredential(id: string, secret: string): void {
  if (!isTokenId(id)) {
    // The id is public, but what stands before the "." may be a mangled secret: show only its length.
    throw new JoinTokenMalformedError(
      `the token id (before ".") must be ${TOKEN_ID_LENGTH} characters a-z0-9, got ${id.length} characters${ID_RE.test(id.toLowerCase()) ? ' with upper case' : ''}`,
    );
  }
  if (!SECRET_RE.test(secret)) {
    throw new JoinTokenMalformedError(
      `the secret of token ${id} (after ".") must be ${TOKEN_SECRET_LENGTH} characters a-z0-9, got ${secret.length} characters${SECRET_RE.test(secret.toLowerCase()) ? ' with upper case' : ''}`,
    );
  }
}

/** A CA hash as shown in an error: its start and length only (a paste may have swallowed other text). */
function describeHash(hash: string): string {
  return hash.length > 16 ? `"${hash.slice(0, 16)}…" (${hash.length} characters)` : JSON.stringify(hash);
}

/** Hex SHA-256 of a secret: what the cloud stores instead of it. */
export function secretSha256(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/**
 * Whether `secret` hashes to `sha256Hex`, compared in constant time (a mismatch at the first or the
 * last digit takes as long), so response times tell an attacker nothing about the stored hash.
 */
export function secretMatches(secret: string, sha256Hex: string): boolean {
  const actual = Buffer.from(secretSha256(secret), 'utf8');
  const expected = Buffer.from(sha256Hex.toLowerCase(), 'utf8');
  // Lengths differ only for a damaged record; timingSafeEqual requires equal lengths.
  if (actual.length !== expected.length) return false;
  return timingSafeEqual(actual, expected);
}

/**
 * The pin of a CA (issue 13, kubeadm's `--discovery-token-ca-cert-hash`): `sha256:` and the 64
 * lowercase hex digits of the SHA-256 of the DER SubjectPublicKeyInfo of the first certificate in
 * `pem`. Node's crypto only (no @peculiar/x509), so the edge checks it without an X.509 library in its bundle.
 *
 * @example caCertHash(readFileSync('ca.crt', 'utf8')) // 'sha256:3f1c…'
 */
export function caCertHash(pem: string): string {
  const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}
