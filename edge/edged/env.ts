/**
 * @module
 * A container's environment, resolved from its pod spec as a kubelet does
 * (`makeEnvironmentVariables` in pkg/kubelet/kubelet_pods.go), for any runtime:
 *
 * - `envFrom` first, in order (a later source overrides an earlier one), then `env` in order,
 *   which overrides both. A configMap contributes its `data` (not `binaryData`), a secret its
 *   `data` base64-decoded (and `stringData`, plain, should the store hold one).
 * - `envFrom` keys (with `prefix`) that are not valid variable names (`[-._a-zA-Z][-._a-zA-Z0-9]*`)
 *   are skipped and returned in `skipped`, with the text of the kubelet's
 *   `InvalidEnvironmentVariableNames` warning event, for Edged to record.
 * - `env[].value` is `$(VAR)`-expanded ({@link expand}) against the variables defined before it
 *   (every `envFrom` key, the earlier `env` entries), then `options.extra` (the kubelet's service
 *   variables; Edged's KUBERNETES_SERVICE_HOST/PORT, …); a `valueFrom` value is never expanded.
 * - `valueFrom`: `configMapKeyRef` / `secretKeyRef` (with `optional`), `fieldRef`
 *   (metadata.name/namespace/uid, metadata.labels['k'] / annotations['k'] and the whole maps,
 *   spec.nodeName, spec.serviceAccountName, status.podIP(s), status.hostIP(s)), `resourceFieldRef`
 *   (limits/requests of cpu, memory and ephemeral-storage with `divisor`; see
 *   {@link resourceFieldValue}). `fileKeyRef` is not supported (an error naming it).
 * - A missing non-optional configMap/secret or key throws {@link EnvResolveError} with the
 *   kubelet's message (`configmap "x" not found`, `couldn't find key k in ConfigMap ns/x`): the
 *   container waits with CreateContainerConfigError and is retried (the object may arrive).
 *
 * The result is `{ env, skipped }`; `options.extra` variables are in `env` too, under the spec's.
 */
import type { V1Container, V1Pod, V1ResourceFieldSelector } from '@kubernetes/client-node';
import { availableParallelism, totalmem } from 'node:os';
import { ContainerConfigError } from '../../shared/errors/index.js';
import { parseQuantityNanos } from './quantity.js';

/** The `data` of a ConfigMap or Secret (a Secret's values base64, as the API stores them; `stringData` plain; a ConfigMap's `binaryData` base64). */
export interface KeyValueObject {
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  binaryData?: Record<string, string>;
}

/** Where configmaps and secrets come from (the MetaManager store in EdgeCore). Undefined = not found. */
export interface ConfigLookup {
  configMap(namespace: string, name: string): KeyValueObject | undefined;
  secret(namespace: string, name: string): KeyValueObject | undefined;
}

/** What the pod object does not say but the node knows. */
export interface PodFields {
  /** status.podIP. */
  podIP: string;
  /** status.hostIP. */
  hostIP: string;
  /** status.podIPs; default `[podIP]`. The first one is also status.podIP, as in the kubelet. */
  podIPs?: string[];
  /** status.hostIPs; default `[hostIP]`. */
  hostIPs?: string[];
  /**
   * The node's allocatable resources (quantities by resource name), the default of a container's
   * unset limits for `resourceFieldRef`, as in the kubelet. Without it cpu and memory default to
   * this host's CPU count and total memory.
   */
  allocatable?: Record<string, string | number>;
}

/** envFrom keys that were not valid variable names, per source. */
export interface SkippedEnvKeys {
  kind: 'ConfigMap' | 'Secret';
  namespace: string;
  name: string;
  /** Sorted, with the prefix. */
  keys: string[];
  /** The kubelet's warning event (reason `InvalidEnvironmentVariableNames`). */
  message: string;
}

export interface ResolvedEnv {
  env: Record<string, string>;
  skipped: SkippedEnvKeys[];
}

export interface ResolveEnvOptions {
  /** Variables every container gets (Edged's KUBERNETES_SERVICE_*, …): visible to `$(VAR)` and in the result, under the spec's own. */
  extra?: Record<string, string>;
}

/** A reference the environment cannot resolve (missing configmap, secret, key, unsupported field): the container waits with CreateContainerConfigError. */
export class EnvResolveError extends ContainerConfigError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EnvResolveError';
  }
}

/** Kubernetes' rule for environment variable names (validation.IsEnvVarName). */
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/** An object without a prototype while it is built: keys such as `__proto__` from a configmap stay plain keys. */
function dict(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

/** The same keys on an ordinary object (`Object.fromEntries` defines `__proto__` as an own key too). */
function plain(d: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(d));
}

/** Whether `name` is a valid environment variable name for Kubernetes. */
export function isEnvVarName(name: string): boolean {
  return ENV_NAME.test(name);
}

/** A configMap's `data` (plus `stringData`) as strings: what env sees. */
export function configMapStrings(obj: KeyValueObject): Record<string, string> {
  const out = dict();
  for (const [k, v] of Object.entries(obj.data ?? {})) out[k] = v;
  for (const [k, v] of Object.entries(obj.stringData ?? {})) out[k] = v;
  return plain(out);
}

/** A secret's `data` base64-decoded (plus `stringData`) as strings: what env sees. */
export function secretStrings(obj: KeyValueObject): Record<string, string> {
  const out = dict();
  for (const [k, v] of Object.entries(obj.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  for (const [k, v] of Object.entries(obj.stringData ?? {})) out[k] = v;
  return plain(out);
}

/** The bytes of every key, as a volume projects them: configMap `data` (UTF-8) and `binaryData` (base64); secret `data` (base64) and `stringData`. */
export function keyValueBytes(kind: 'ConfigMap' | 'Secret', obj: KeyValueObject): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  if (kind === 'ConfigMap') {
    for (const [k, v] of Object.entries(obj.data ?? {})) out.set(k, Buffer.from(v, 'utf8'));
    for (const [k, v] of Object.entries(obj.binaryData ?? {})) out.set(k, Buffer.from(v, 'base64'));
  } else {
    for (const [k, v] of Object.entries(obj.data ?? {})) out.set(k, Buffer.from(v, 'base64'));
  }
  for (const [k, v] of Object.entries(obj.stringData ?? {})) out.set(k, Buffer.from(v, 'utf8'));
  return out;
}

/** The kubelet's not-found message for a configmap or secret. */
export function notFoundMessage(kind: 'ConfigMap' | 'Secret', name: string): string {
  return `${kind.toLowerCase()} ${JSON.stringify(name)} not found`;
}

/**
 * `$(VAR)` expansion exactly as Kubernetes' (third_party/forked/golang/expansion): `$(NAME)` is
 * replaced by `mapping(NAME)`, or kept verbatim when that is undefined; `$$` is one `$`;
 * `$` followed by anything else, a `$` at the end and an unterminated `$(` are kept as they are.
 * `NAME` is everything up to the first `)`.
 */
export function expand(input: string, mapping: (name: string) => string | undefined): string {
  let out = '';
  let checkpoint = 0;
  for (let i = 0; i < input.length; i++) {
    if (input[i] !== '$' || i + 1 >= input.length) continue;
    out += input.slice(checkpoint, i);
    const next = input[i + 1];
    let advance = 1;
    if (next === '$') out += '$';
    else if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close < 0) out += '$(';
      else {
        const name = input.slice(i + 2, close);
        out += mapping(name) ?? `$(${name})`;
        advance = close - i;
      }
    } else out += `$${next}`;
    i += advance;
    checkpoint = i + 1;
  }
  return out + input.slice(checkpoint);
}

/** A container's `command` or `args`, `$(VAR)`-expanded against its resolved environment (kubelet's ExpandContainerCommandAndArgs). */
export function expandCommand(args: readonly string[], env: Readonly<Record<string, string>>): string[] {
  return args.map((a) => expand(a, (name) => (Object.hasOwn(env, name) ? env[name] : undefined)));
}

/**
 * A mount's `subPathExpr` expanded against the container's environment; as the kubelet, a
 * reference to an unset or empty variable is an error (`missing value for A, B`).
 */
export function expandSubPathExpr(expr: string, env: Readonly<Record<string, string>>): string {
  const missing = new Set<string>();
  const out = expand(expr, (name) => {
    const v = Object.hasOwn(env, name) ? env[name] : undefined;
    if (v === undefined || v === '') missing.add(name);
    return v ?? '';
  });
  if (missing.size > 0) throw new EnvResolveError(`missing value for ${[...missing].sort().join(', ')}`);
  return out;
}

/** `metadata.labels['k']` → ['metadata.labels', 'k']. */
function splitSubscript(fieldPath: string): [string, string | undefined] {
  if (!fieldPath.endsWith("']")) return [fieldPath, undefined];
  const body = fieldPath.slice(0, -2);
  const at = body.indexOf("['");
  if (at <= 0) return [fieldPath, undefined];
  return [body.slice(0, at), body.slice(at + 2)];
}

/** Go's %q of a string (strconv.Quote), for the `k="v"` lines of a whole labels/annotations map. */
function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (c === 7) out += '\\a';
    else if (c === 8) out += '\\b';
    else if (c === 12) out += '\\f';
    else if (c === 11) out += '\\v';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else if (c >= 0x80 && c < 0xa0) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** The kubelet's format of a whole labels/annotations map: sorted `k="v"` lines. */
export function formatMap(m: Record<string, string> | undefined): string {
  return Object.keys(m ?? {})
    .sort()
    .map((k) => `${k}=${goQuote(m?.[k] ?? '')}`)
    .join('\n');
}

/**
 * The value of a pod `fieldPath`. With `fields` (environment variables) also spec.nodeName,
 * spec.serviceAccountName and status.*; without (downwardAPI volumes, as Kubernetes allows
 * there) only metadata. Throws EnvResolveError for anything else.
 */
export function podFieldValue(pod: V1Pod, fieldPath: string, fields?: PodFields): string {
  const meta = pod.metadata ?? {};
  if (fields) {
    const podIPs = fields.podIPs && fields.podIPs.length > 0 ? fields.podIPs : fields.podIP ? [fields.podIP] : [];
    const hostIPs = fields.hostIPs && fields.hostIPs.length > 0 ? fields.hostIPs : [fields.hostIP];
    switch (fieldPath) {
      case 'spec.nodeName':
        return pod.spec?.nodeName ?? '';
      case 'spec.serviceAccountName':
        return pod.spec?.serviceAccountName ?? '';
      case 'status.podIP':
        return podIPs[0] ?? '';
      case 'status.podIPs':
        return podIPs.join(',');
      case 'status.hostIP':
        return hostIPs[0] ?? '';
      case 'status.hostIPs':
        return hostIPs.join(',');
    }
  }
  const [path, key] = splitSubscript(fieldPath);
  if (key !== undefined) {
    if (path === 'metadata.labels') return meta.labels?.[key] ?? '';
    if (path === 'metadata.annotations') return meta.annotations?.[key] ?? '';
  } else {
    switch (fieldPath) {
      case 'metadata.name':
        return meta.name ?? '';
      case 'metadata.namespace':
        return meta.namespace ?? '';
      case 'metadata.uid':
        return meta.uid ?? '';
      case 'metadata.labels':
        return formatMap(meta.labels);
      case 'metadata.annotations':
        return formatMap(meta.annotations);
    }
  }
  throw new EnvResolveError(`unsupported fieldPath: ${fieldPath}`);
}

function hostAllocatable(resource: string): string | number | undefined {
  if (resource === 'cpu') return availableParallelism();
  if (resource === 'memory') return totalmem();
  return undefined;
}

function ceilDiv(a: bigint, b: bigint): bigint {
  if (a <= 0n) return a / b; // zero (limits are never negative)
  return (a + b - 1n) / b;
}

function quantityNanos(q: string | number, what: string): bigint {
  try {
    return parseQuantityNanos(q);
  } catch (err) {
    throw new EnvResolveError(`${what}: ${(err as Error).message}`);
  }
}

/**
 * A `resourceFieldRef` value as the kubelet computes it: the container's limit (unset or zero:
 * the node's allocatable), or its request (unset: its limit as the spec writes it, which is what
 * the API server's defaulting would have copied; else 0), divided by `divisor` (default 1) and
 * rounded up: cpu in millicores then divided (`limits.cpu` of 250m is "1", with divisor 1m
 * "250"), memory and ephemeral-storage in bytes then divided. `containerName` picks another
 * container of the pod (required in volumes, where `container` is undefined).
 */
export function resourceFieldValue(pod: V1Pod, container: V1Container | undefined, selector: V1ResourceFieldSelector, fields?: PodFields): string {
  let c = container;
  if (selector.containerName) {
    c = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].find((x) => x.name === selector.containerName);
    if (!c) throw new EnvResolveError(`container ${selector.containerName} not found`);
  }
  if (!c) throw new EnvResolveError(`resourceFieldRef ${selector.resource} names no containerName`);
  const m = /^(limits|requests)\.(cpu|memory|ephemeral-storage)$/.exec(selector.resource);
  if (!m) throw new EnvResolveError(`unsupported container resource : ${selector.resource}`);
  const [, which, resource] = m as unknown as [string, 'limits' | 'requests', string];
  const limits = (c.resources?.limits ?? {}) as Record<string, string | number | undefined>;
  const requests = (c.resources?.requests ?? {}) as Record<string, string | number | undefined>;
  let q: string | number | undefined;
  if (which === 'limits') {
    q = limits[resource];
    if (q === undefined || quantityNanos(q, selector.resource) === 0n) {
      q = fields?.allocatable?.[resource] ?? hostAllocatable(resource);
      if (q === undefined) throw new EnvResolveError(`${selector.resource}: container ${c.name} sets no limit and the node's allocatable ${resource} is not known`);
    }
  } else q = requests[resource] ?? limits[resource] ?? 0;
  const nanos = quantityNanos(q, selector.resource);
  const divisorNanos = selector.divisor === undefined || selector.divisor === '' ? 0n : quantityNanos(selector.divisor, `divisor of ${selector.resource}`);
  if (resource === 'cpu') {
    const millis = ceilDiv(nanos, 1_000_000n);
    const divisorMillis = divisorNanos === 0n ? 1000n : ceilDiv(divisorNanos, 1_000_000n);
    if (divisorMillis <= 0n) throw new EnvResolveError(`invalid divisor ${selector.divisor} for ${selector.resource}`);
    return ceilDiv(millis, divisorMillis).toString();
  }
  const units = ceilDiv(nanos, 1_000_000_000n);
  const divisorUnits = divisorNanos === 0n ? 1n : ceilDiv(divisorNanos, 1_000_000_000n);
  if (divisorUnits <= 0n) throw new EnvResolveError(`invalid divisor ${selector.divisor} for ${selector.resource}`);
  return ceilDiv(units, divisorUnits).toString();
}

/**
 * The container's environment from its pod spec (see the module doc). Throws
 * {@link EnvResolveError} naming what is missing.
 */
export function resolveEnv(pod: V1Pod, container: V1Container, lookup: ConfigLookup, fields: PodFields, options: ResolveEnvOptions = {}): ResolvedEnv {
  const ns = pod.metadata?.namespace ?? 'default';
  const extra = options.extra ?? {};
  const env = dict();
  const skipped: SkippedEnvKeys[] = [];
  const cache = new Map<string, Record<string, string> | undefined>();
  const source = (kind: 'ConfigMap' | 'Secret', name: string): Record<string, string> | undefined => {
    const key = `${kind}/${name}`;
    if (!cache.has(key)) {
      const obj = kind === 'ConfigMap' ? lookup.configMap(ns, name) : lookup.secret(ns, name);
      cache.set(key, obj ? (kind === 'ConfigMap' ? configMapStrings(obj) : secretStrings(obj)) : undefined);
    }
    return cache.get(key);
  };
  for (const from of container.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    if (!ref) continue;
    const kind = from.configMapRef ? 'ConfigMap' : 'Secret';
    const name = ref.name ?? '';
    const data = source(kind, name);
    if (!data) {
      if (ref.optional) continue;
      throw new EnvResolveError(notFoundMessage(kind, name));
    }
    const invalid: string[] = [];
    for (const [k, v] of Object.entries(data)) {
      const varName = `${from.prefix ?? ''}${k}`;
      if (isEnvVarName(varName)) env[varName] = v;
      else invalid.push(varName);
    }
    if (invalid.length > 0) {
      invalid.sort();
      skipped.push({
        kind,
        namespace: ns,
        name,
        keys: invalid,
        message: `Keys [${invalid.join(', ')}] from the EnvFrom ${kind === 'ConfigMap' ? 'configMap' : 'secret'} ${ns}/${name} were skipped since they are considered invalid environment variable names.`,
      });
    }
  }
  const mapping = (name: string): string | undefined => (Object.hasOwn(env, name) ? env[name] : Object.hasOwn(extra, name) ? extra[name] : undefined);
  for (const e of container.env ?? []) {
    let value = e.value ?? '';
    if (value !== '') value = expand(value, mapping);
    else if (e.valueFrom) {
      const vf = e.valueFrom;
      const keyRef = vf.configMapKeyRef ?? vf.secretKeyRef;
      if (keyRef) {
        const kind = vf.configMapKeyRef ? 'ConfigMap' : 'Secret';
        const name = keyRef.name ?? '';
        const data = source(kind, name);
        if (!data) {
          if (keyRef.optional) continue;
          throw new EnvResolveError(notFoundMessage(kind, name));
        }
        const v = Object.hasOwn(data, keyRef.key) ? data[keyRef.key] : undefined;
        if (v === undefined) {
          if (keyRef.optional) continue;
          throw new EnvResolveError(`couldn't find key ${keyRef.key} in ${kind} ${ns}/${name}`);
        }
        value = v;
      } else if (vf.fieldRef) value = podFieldValue(pod, vf.fieldRef.fieldPath, fields);
      else if (vf.resourceFieldRef) value = resourceFieldValue(pod, container, vf.resourceFieldRef, fields);
      else if (vf.fileKeyRef) throw new EnvResolveError(`env ${e.name}: valueFrom.fileKeyRef is not supported by Ledge`);
    }
    env[e.name] = value;
  }
  for (const [k, v] of Object.entries(extra)) if (!Object.hasOwn(env, k)) env[k] = v;
  return { env: plain(env), skipped };
}
