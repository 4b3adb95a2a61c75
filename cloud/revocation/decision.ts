/**
 * @module
 * The pure part of node revocation (issue 13): reading the revocation ConfigMap's data, and
 * deciding whether a node's certificate was issued before its revocation. No I/O, no clock.
 *
 * **When a certificate was issued.** A certificate does not carry its issuance time; its notBefore
 * is the issuance minus the CA's backdate (cloud/certauthority: `min(backdateMs, lifetime / 10)`),
 * cut to the second. A certificate counts as issued at `notBefore + backdateMs` (the configured,
 * largest backdate), and is refused when that is `toleranceMs` (1 s: the precision of certificate
 * times) or more before the revocation time T. So:
 * - a certificate issued at or after T is always accepted (a re-join right after a revoke works):
 *   notBefore + backdateMs ≥ (issuance − backdate − 1 s) + backdateMs > T − 1 s;
 * - one of the CA's one-year certificates (backdated by exactly backdateMs) issued more than 1 s
 *   before T is refused;
 * - a short-lived one (lifetime under 50 min, backdated by a tenth of it) is refused when issued
 *   more than 1 s + (backdateMs − lifetime/10) before T: revocation is coarser for those, never wrong
 *   the other way.
 * T and the issuance are read from different clocks (the revoking machine's or replica's, the
 * issuing replica's): skew between them shifts the boundary by as much.
 */
import type { X509Certificate } from 'node:crypto';
import { isNodeName } from '../cloudhub/identity.js';

/** A certificate's validity, ms since the epoch. */
export interface CertificateTimes {
  notBeforeMs: number;
  notAfterMs: number;
}

/** The validity of a certificate node's crypto parsed (its `validFrom`/`validTo`, second precision). */
export function certificateTimes(cert: Pick<X509Certificate, 'validFrom' | 'validTo'>): CertificateTimes {
  return { notBeforeMs: Date.parse(cert.validFrom), notAfterMs: Date.parse(cert.validTo) };
}

/** When a certificate counts as issued: its notBefore plus the CA's (largest) backdate. */
export function countsIssuedAt(cert: CertificateTimes, backdateMs: number): number {
  return cert.notBeforeMs + backdateMs;
}

/** The refusal text of a revoked node's certificate (what CloudHub answers with 401 and logs). */
export function revokedReason(node: string, revokedAtMs: number): string {
  return `node ${node} was revoked at ${new Date(revokedAtMs).toISOString()}: re-join it (edgecore join --force with a new token)`;
}

/**
 * Why `cert` of `node` is refused, or undefined when it is not: the node is not revoked
 * (`revokedAtMs` undefined), or the certificate counts as issued after the revocation (a re-join).
 * A certificate whose times are unreadable is refused when the node is revoked.
 */
export function revocationRefusal(node: string, revokedAtMs: number | undefined, cert: CertificateTimes, o: { backdateMs: number; toleranceMs: number }): string | undefined {
  if (revokedAtMs === undefined) return undefined;
  const issued = countsIssuedAt(cert, o.backdateMs);
  if (Number.isFinite(issued) && issued > revokedAtMs - o.toleranceMs) return undefined;
  return revokedReason(node, revokedAtMs);
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * An RFC 3339 date-time (`2025-03-01T12:00:00Z`, `…T12:00:00.123+02:00`) in ms since the epoch, or
 * undefined when it is not one (Date.parse alone accepts other shapes and rolls 30 February over
 * into March). Leap seconds (`:60`) are not accepted.
 */
export function parseRfc3339(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) return undefined;
  const offset = m[8]!.toUpperCase();
  if (offset !== 'Z' && (Number(offset.slice(1, 3)) > 23 || Number(offset.slice(4, 6)) > 59)) return undefined;
  const ms = Date.parse(text.toUpperCase());
  return Number.isFinite(ms) ? ms : undefined;
}

/** Revocations read from the ConfigMap's data, and what was left out (each a short line). */
export interface ParsedRevocations {
  /** node → revocation time, ms since the epoch. */
  entries: Map<string, number>;
  /** `"<key>": <why>` for each entry left out (not a node name, not an RFC 3339 time). */
  problems: string[];
}

/**
 * Reads the ConfigMap's `data` (`<node>: <RFC 3339 time>`). Anything else — a key that is no node
 * name, a value that is no RFC 3339 time, data that is no object — is left out and described in
 * `problems`; this never throws.
 */
export function parseRevocations(data: unknown): ParsedRevocations {
  const entries = new Map<string, number>();
  const problems: string[] = [];
  if (data === undefined || data === null) return { entries, problems };
  if (typeof data !== 'object' || Array.isArray(data)) return { entries, problems: [`data is ${Array.isArray(data) ? 'an array' : typeof data}, not a map`] };
  for (const [key, value] of Object.entries(data as Record<string, unknown>)) {
    const shownKey = JSON.stringify(key.slice(0, 80));
    if (!isNodeName(key)) {
      problems.push(`${shownKey}: not a node name (DNS-1123 subdomain)`);
      continue;
    }
    const at = typeof value === 'string' ? parseRfc3339(value.trim()) : undefined;
    if (at === undefined) {
      problems.push(`${shownKey}: ${JSON.stringify(String(value).slice(0, 60))} is not an RFC 3339 time (such as 2025-03-01T12:00:00Z)`);
      continue;
    }
    entries.set(key, at);
  }
  return { entries, problems };
}

/** The ConfigMap value of a revocation time: RFC 3339 in UTC with milliseconds. */
export function formatRevokedAt(ms: number): string {
  return new Date(ms).toISOString();
}
