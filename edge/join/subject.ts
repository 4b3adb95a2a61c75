/**
 * @module
 * Small readers of certificates both `edgecore join` and EdgeHub's renewal use.
 */
import { caCertHash } from '../../shared/jointoken/index.js';

/** `CN=a\nO=b` (node's X509Certificate.subject) as attribute → values. Node names hold no characters that need escaping. */
export function parseSubject(subject: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const line of subject.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) (out[line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  return out;
}

/** The CA pin of `pem`, or undefined when it is not a certificate. */
export function safeHash(pem: string): string | undefined {
  try {
    return caCertHash(pem);
  } catch {
    return undefined;
  }
}
