/**
 * @module
 * CloudCore's certificate authority and its join endpoint (issue 13, docs/security.md):
 *
 * - {@link loadOrCreateCa}: the CA from the operator's files, else the `ledge-ca` Secret, else a
 *   new one created there (one CA for every replica, whoever starts first); it issues CloudHub's
 *   serving certificate and signs node CSRs (`CN=system:node:<name>, O=system:nodes`).
 * - {@link createJoinHandler}: `GET /v1/ca.crt` and `POST /v1/join` as a plain
 *   `(req, res) => boolean` for CloudHub's HTTPS server.
 * - {@link createRenewHandler}: `POST /v1/renew`, a node renewing its certificate, authenticated by
 *   the one it holds (same shape, chained after the join handler).
 */
export {
  CA_SECRET_TYPE,
  CA_SUBJECT,
  NODE_CN_PREFIX,
  NODE_ORGANIZATION,
  SERVING_SUBJECT,
  caFromPem,
  generateCaPem,
  loadOrCreateCa,
  type CaSecretApi,
  type CertificateAuthority,
  type CheckedCsr,
  type IssuedCertificate,
  type LoadCaOptions,
} from './ca.js';
export { CA_CERT_PATH, JOIN_PATH, createJoinHandler, type JoinHandlerOptions } from './join.js';
export { RENEW_PATH, createRenewHandler, type RenewHandlerOptions } from './renew.js';
export { defaultCertificateAuthorityOptions, defaultJoinHandlerOptions, defaultRenewHandlerOptions } from './options.js';
