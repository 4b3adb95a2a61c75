/**
 * @module
 * Who may read what from MetaServer (docs/metaserver.md, "Authentication").
 *
 * - A node-local admin token, generated at the first start into `<data-dir>/metaserver/admin.token`
 *   (directory 0700, file 0600: readable by the node's owner only): reads everything.
 * - Pod tokens, one per pod, derived statelessly: `lpt1.<namespace>.<uid>.<mac>` (base64url parts),
 *   the MAC an HMAC-SHA256 under a key kept in `<data-dir>/metaserver/pod-token.key` (0600). Nothing
 *   is stored per pod, so a token outlives EdgeCore restarts and the containers that hold it keep
 *   working. A pod reads pods, configmaps, services and endpoints of its own namespace, and nodes;
 *   no secrets (a default ServiceAccount without RBAC bindings reads none either).
 * - No token: discovery only (/version, /healthz, /readyz, /livez, /api, /api/v1, /apis).
 *
 * Tokens are compared in constant time and never logged.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from '../../shared/log/index.js';
import { metaServerDir, readOrCreate } from './files.js';
import { ADMIN_TOKEN_FILE, POD_TOKEN_KEY_FILE } from './options.js';

/** Who a request is. */
export type Identity = { kind: 'admin' } | { kind: 'pod'; namespace: string; uid: string } | { kind: 'anonymous' };

/** A request's credentials: an identity, or a token that is no one's (401 on every path, as kube-apiserver answers a bad token). */
export type Authentication = Identity | { kind: 'invalid' };

const POD_TOKEN_PREFIX = 'lpt1';
/** Separates what the MAC covers from anything else keyed with the same key in the future. */
const POD_TOKEN_CONTEXT = 'ledge-metaserver-pod-token-v1';
/** Longer Authorization values are not looked at (no hashing of megabytes). */
const MAX_TOKEN_LENGTH = 2048;
const ADMIN_TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;
const KEY_BYTES = 32;

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();
const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64url');

/** The admin token and the pod-token key; loaded (or created) once, synchronously, so Edged can mint tokens before MetaServer listens. */
export class TokenAuthority {
  private constructor(
    private readonly adminDigest: Buffer,
    private readonly key: Buffer,
  ) {}

  /** Loads the credentials from `<dataDir>/metaserver/`, creating what is missing. Throws StorageError. */
  static load(dataDir: string, log: Logger): TokenAuthority {
    const dir = metaServerDir(dataDir, log);
    const admin = readOrCreate(
      join(dir, ADMIN_TOKEN_FILE),
      (b) => ADMIN_TOKEN_RE.test(b.toString('utf8').trim()),
      () => `${randomBytes(KEY_BYTES).toString('base64url')}\n`,
      log,
    );
    const key = readOrCreate(
      join(dir, POD_TOKEN_KEY_FILE),
      (b) => b.length === KEY_BYTES,
      () => randomBytes(KEY_BYTES),
      log,
    );
    return new TokenAuthority(sha256(admin.toString('utf8').trim()), key);
  }

  private mac(namespace: string, uid: string): Buffer {
    return createHmac('sha256', this.key)
      .update(JSON.stringify([POD_TOKEN_CONTEXT, namespace, uid]))
      .digest();
  }

  /** The token of the pod `uid` in `namespace` (the same every time: nothing is stored). */
  podToken(uid: string, namespace: string): string {
    if (!uid || !namespace) throw new TypeError('podToken needs a pod uid and namespace');
    return [POD_TOKEN_PREFIX, b64(namespace), b64(uid), this.mac(namespace, uid).toString('base64url')].join('.');
  }

  /** Who the `Authorization` header (if any) says the client is. */
  authenticate(authorization: string | undefined): Authentication {
    if (authorization === undefined || authorization === '') return { kind: 'anonymous' };
    if (authorization.length > MAX_TOKEN_LENGTH) return { kind: 'invalid' };
    const m = /^Bearer +(\S+) *$/i.exec(authorization);
    if (!m) return { kind: 'invalid' };
    const token = m[1]!;
    if (token.startsWith(`${POD_TOKEN_PREFIX}.`)) return this.podIdentity(token);
    // Digests have the same length whatever was sent: the comparison takes the same time.
    return timingSafeEqual(sha256(token), this.adminDigest) ? { kind: 'admin' } : { kind: 'invalid' };
  }

  private podIdentity(token: string): Authentication {
    const parts = token.split('.');
    if (parts.length !== 4) return { kind: 'invalid' };
    const [, nsPart, uidPart, macPart] = parts as [string, string, string, string];
    const namespace = Buffer.from(nsPart, 'base64url').toString('utf8');
    const uid = Buffer.from(uidPart, 'base64url').toString('utf8');
    const given = Buffer.from(macPart, 'base64url');
    // Only the canonical spelling of each part is a token (base64url decoding ignores stray bits).
    if (!namespace || !uid || b64(namespace) !== nsPart || b64(uid) !== uidPart || given.length !== KEY_BYTES || given.toString('base64url') !== macPart)
      return { kind: 'invalid' };
    return timingSafeEqual(given, this.mac(namespace, uid)) ? { kind: 'pod', namespace, uid } : { kind: 'invalid' };
  }
}

/** The user name a Status message names (kube-apiserver style); no secret in it. */
export function userName(id: Identity): string {
  switch (id.kind) {
    case 'admin':
      return 'ledge:node-admin';
    case 'pod':
      return `ledge:pod:${id.namespace}:${id.uid}`;
    case 'anonymous':
      return 'system:anonymous';
  }
}

/** Resources a pod token reads in its own namespace; secrets are not among them. */
const POD_NAMESPACED = new Set(['pods', 'configmaps', 'services', 'endpoints']);
/** Cluster-scoped resources a pod token reads. */
const POD_CLUSTER = new Set(['nodes']);

/**
 * Whether `id` may `verb` the resource `plural` in `namespace` (undefined: across all namespaces,
 * or a cluster-scoped resource). Returns the Forbidden message when not.
 */
export function authorize(id: Identity, verb: string, plural: string, namespaced: boolean, namespace: string | undefined): string | undefined {
  if (id.kind === 'admin') return undefined;
  if (id.kind === 'pod') {
    if (namespaced ? POD_NAMESPACED.has(plural) && namespace === id.namespace : POD_CLUSTER.has(plural)) return undefined;
  }
  const where = namespaced && namespace !== undefined ? ` in the namespace "${namespace}"` : ' at the cluster scope';
  return `${plural} is forbidden: User "${userName(id)}" cannot ${verb} resource "${plural}" in API group ""${where}`;
}
