/**
 * @module
 * Join tokens in the Kubernetes API (issue 13): what `ledge token create|list|revoke` manage and
 * what `POST /v1/join` consumes.
 *
 * - **Record**: Secret `ledge-token-<id>` (type `ledge.io/join-token`, label
 *   `ledge.io/join-token=true`) with `token-id`, `secret-sha256`, `expiration` (RFC 3339),
 *   `single-use` and `description`. The secret itself is never stored, so reading the Secrets
 *   does not give a working token.
 * - **Checking** a credential: the record is read fresh (no cache, so a revoke counts at once), the
 *   secret's hash compared in constant time, then the expiration. A wrong secret answers exactly
 *   like an unknown id (no oracle for which ids exist); expired and used are said only to a caller
 *   holding the right secret.
 * - **Single use** across replicas: consuming deletes the record with preconditions on its uid and
 *   resourceVersion as read. Of two consumers (two replicas, two requests) only one DELETE
 *   succeeds; the other gets 404 or 409 and is refused as "already used". The preconditions also
 *   keep a record re-created under the same name meanwhile from being consumed by the old read.
 * - Expired records are refused, not deleted (so the refusal can say "expired"); `revoke` deletes.
 */
import { JoinTokenExpiredError, JoinTokenMalformedError, JoinTokenUnknownError, JoinTokenUsedError, KubeApiError } from '../../shared/errors/index.js';
import { generateJoinCredential, isTokenId, parseBearer, secretMatches, secretSha256 } from '../../shared/jointoken/index.js';
import { apiErrorText } from '../certauthority/api.js';
import { httpStatus, withSignal, type k8s } from '../kube/index.js';
import { defaultTokenStoreOptions } from './options.js';

/** Type of a token Secret. */
export const TOKEN_SECRET_TYPE = 'ledge.io/join-token';
/** Label of every token Secret (value "true"). */
export const TOKEN_LABEL = 'ledge.io/join-token';
/** Prefix of a token Secret's name: `ledge-token-<id>`. */
export const TOKEN_SECRET_PREFIX = 'ledge-token-';

/** Attempts at a fresh id when the random one is taken. */
const CREATE_ATTEMPTS = 5;

/** The calls of CoreV1Api the store makes (a wrapper or fake in tests). */
export type TokenApi = Pick<k8s.CoreV1Api, 'readNamespacedSecret' | 'createNamespacedSecret' | 'listNamespacedSecret' | 'deleteNamespacedSecret'>;

/** Options of {@link createTokenStore}; defaults in ./options.ts. */
export interface TokenStoreOptions {
  core: TokenApi;
  /** Namespace of the token Secrets. Default 'kube-system'. */
  namespace?: string;
  /** The clock (ms since the epoch). Default Date.now. */
  now?: () => number;
  /** Longest one API call may take. Default 10000. */
  apiTimeoutMs?: number;
}

/** What {@link TokenStore.create} made: the only time the secret is seen. */
export interface CreatedToken {
  id: string;
  secret: string;
  /** RFC 3339, seconds. */
  expiration: string;
  singleUse: boolean;
  description: string;
}

/** A stored token as listed (no secret, no hash). */
export interface TokenRecord {
  id: string;
  /** RFC 3339. */
  expiration: string;
  /** Whether the expiration has passed (by the store's clock). */
  expired: boolean;
  singleUse: boolean;
  description: string;
  /** When the record was created (the Secret's creationTimestamp), RFC 3339. */
  created?: string;
}

/** What a successful {@link TokenStore.consume} returns (for the join's log line). */
export interface ConsumedToken {
  id: string;
  singleUse: boolean;
  description: string;
}

export interface TokenStore {
  /** A new token valid for `ttlMs` (> 0). Throws TypeError for a bad ttl or a description over 256 characters. */
  create(options: { ttlMs: number; singleUse?: boolean; description?: string }): Promise<CreatedToken>;
  /** Every token record, soonest expiration first (damaged records are left out). */
  list(): Promise<TokenRecord[]>;
  /** Deletes a token; {@link JoinTokenUnknownError} if there is none with this id, {@link JoinTokenMalformedError} for a bad id. */
  revoke(id: string): Promise<void>;
  /**
   * Checks `bearer` (`<id>.<secret>`) and, for a single-use token, consumes it. Throws
   * {@link JoinTokenMalformedError}, {@link JoinTokenUnknownError}, {@link JoinTokenExpiredError},
   * {@link JoinTokenUsedError} (all answered 401), or {@link KubeApiError} when the API fails.
   */
  consume(bearer: string): Promise<ConsumedToken>;
}

/** The name of token `id`'s Secret. */
export function tokenSecretName(id: string): string {
  return TOKEN_SECRET_PREFIX + id;
}

/** RFC 3339 in UTC, whole seconds (as Kubernetes bootstrap tokens write it). */
function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

interface StoredToken extends ConsumedToken {
  secretSha256: string;
  expiration: string;
  expirationMs: number;
}

/** The record a Secret holds, or undefined when it is not a (well-formed) token record. */
function readRecord(secret: k8s.V1Secret): StoredToken | undefined {
  if (secret.type !== TOKEN_SECRET_TYPE) return undefined;
  const d = secret.data ?? {};
  const get = (k: string) => (d[k] === undefined ? undefined : Buffer.from(d[k]!, 'base64').toString('utf8'));
  const id = get('token-id');
  const hash = get('secret-sha256');
  const expiration = get('expiration');
  if (!id || !isTokenId(id) || secret.metadata?.name !== tokenSecretName(id) || !hash || !expiration) return undefined;
  const expirationMs = Date.parse(expiration);
  if (Number.isNaN(expirationMs)) return undefined;
  return { id, secretSha256: hash, expiration, expirationMs, singleUse: get('single-use') === 'true', description: get('description') ?? '' };
}

/**
 * The join-token store over the API (see the module comment).
 *
 * @example
 * const tokens = createTokenStore({ core: kc.makeApiClient(k8s.CoreV1Api), namespace: 'kube-system' });
 * const { id, secret } = await tokens.create({ ttlMs: 86_400_000, singleUse: true });
 */
export function createTokenStore(options: TokenStoreOptions): TokenStore {
  const o = { ...defaultTokenStoreOptions, ...options };
  const { core, namespace } = o;
  const now = o.now ?? Date.now;
  const call = () => withSignal(AbortSignal.timeout(o.apiTimeoutMs));
  const apiFailure = (what: string, err: unknown) => new KubeApiError(`${what}: ${apiErrorText(err)}`, { cause: err });
  const unknown = (id: string) => new JoinTokenUnknownError(`unknown join token ${id}: revoked, already used (single-use), or never issued`);
  const read = async (id: string): Promise<k8s.V1Secret | undefined> => {
    try {
      return await core.readNamespacedSecret({ name: tokenSecretName(id), namespace }, call());
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw apiFailure(`cannot read join token ${id}`, err);
    }
  };

  return {
    async create({ ttlMs, singleUse = false, description = '' }) {
      if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new TypeError(`token ttl ${ttlMs} ms must be positive`);
      if (description.length > o.maxDescriptionLength) throw new TypeError(`token description has ${description.length} characters; at most ${o.maxDescriptionLength}`);
      for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
        const cred = generateJoinCredential();
        const expiration = rfc3339(now() + ttlMs);
        const data: Record<string, string> = {
          'token-id': cred.id,
          'secret-sha256': secretSha256(cred.secret),
          expiration,
          'single-use': String(singleUse),
          description,
        };
        const body: k8s.V1Secret = {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: tokenSecretName(cred.id), namespace, labels: { [TOKEN_LABEL]: 'true', 'app.kubernetes.io/managed-by': 'ledge' } },
          type: TOKEN_SECRET_TYPE,
          data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
        };
        try {
          await core.createNamespacedSecret({ namespace, body }, call());
          return { ...cred, expiration, singleUse, description };
        } catch (err) {
          // The random id is taken (36^6 ids): draw another.
          if (httpStatus(err) === 409) continue;
          throw apiFailure(`cannot create join token Secret ${namespace}/${tokenSecretName(cred.id)}`, err);
        }
      }
      throw new KubeApiError(`no free token id after ${CREATE_ATTEMPTS} attempts`);
    },

    async list() {
      let list: k8s.V1SecretList;
      try {
        list = await core.listNamespacedSecret({ namespace, labelSelector: `${TOKEN_LABEL}=true` }, call());
      } catch (err) {
        throw apiFailure(`cannot list join tokens in ${namespace}`, err);
      }
      const t = now();
      const out: TokenRecord[] = [];
      for (const s of list.items) {
        const r = readRecord(s);
        if (!r) continue;
        const created = s.metadata?.creationTimestamp;
        out.push({
          id: r.id,
          expiration: r.expiration,
          expired: r.expirationMs <= t,
          singleUse: r.singleUse,
          description: r.description,
          ...(created ? { created: rfc3339(new Date(created).getTime()) } : {}),
        });
      }
      return out.sort((a, b) => Date.parse(a.expiration) - Date.parse(b.expiration) || a.id.localeCompare(b.id));
    },

    async revoke(id) {
      if (!isTokenId(id)) throw new JoinTokenMalformedError(`"${id}" is not a token id (6 characters a-z0-9)`);
      const secret = await read(id);
      if (!secret || !readRecord(secret)) throw new JoinTokenUnknownError(`no join token ${id} in ${namespace}`);
      try {
        await core.deleteNamespacedSecret({ name: tokenSecretName(id), namespace, body: { preconditions: { uid: secret.metadata?.uid } } }, call());
      } catch (err) {
        if (httpStatus(err) === 404) throw new JoinTokenUnknownError(`no join token ${id} in ${namespace}`);
        throw apiFailure(`cannot delete join token ${id}`, err);
      }
    },

    async consume(bearer) {
      const cred = parseBearer(bearer);
      const secret = await read(cred.id);
      const rec = secret && readRecord(secret);
      if (!rec || !secretMatches(cred.secret, rec.secretSha256)) throw unknown(cred.id);
      if (rec.expirationMs <= now()) throw new JoinTokenExpiredError(`join token ${cred.id} expired at ${rec.expiration}`);
      if (rec.singleUse) {
        const preconditions = { uid: secret.metadata?.uid, resourceVersion: secret.metadata?.resourceVersion };
        try {
          await core.deleteNamespacedSecret({ name: tokenSecretName(cred.id), namespace, body: { preconditions } }, call());
        } catch (err) {
          const status = httpStatus(err);
          // Gone (another consumer deleted it) or changed since our read: someone else won.
          if (status === 404 || status === 409) throw new JoinTokenUsedError(`single-use join token ${cred.id} was already used`);
          throw apiFailure(`cannot consume single-use join token ${cred.id}`, err);
        }
      }
      return { id: rec.id, singleUse: rec.singleUse, description: rec.description };
    },
  };
}
