/**
 * @module
 * Options of the join-token store, with every default in one place (issue 13; docs in ./index.ts).
 */
import { defaultCertificateAuthorityOptions } from '../certauthority/options.js';

/** Defaults of {@link createTokenStore}'s options. */
export const defaultTokenStoreOptions = {
  /** Namespace of the token Secrets: the CA's ('kube-system'). */
  namespace: defaultCertificateAuthorityOptions.namespace,
  /** Longest one Kubernetes API call of the store may take. Default 10000. */
  apiTimeoutMs: 10_000,
  /** Longest description kept with a token (characters). Default 256. */
  maxDescriptionLength: 256,
} as const;
