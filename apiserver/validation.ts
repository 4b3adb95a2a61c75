/**
 * @module
 * Validation: object names (DNS-1123 subdomain/label, DNS-1035 label), custom
 * resources against their CRD's openAPIV3Schema (types, required, enum, bounds,
 * pattern; unknown fields pruned and `default`s applied as a structural schema
 * would), and the CRD objects themselves.
 */
import { RE2JS } from 're2js';
import type { StatusCause } from './errors.js';
import { MAX_CONFIG_DATA_BYTES, MAX_DEFAULTED_BYTES, MAX_JSON_DEPTH, MAX_PATTERN_WORK } from './limits.js';
import type { Json, JSONSchemaProps, KObject, ResourceType } from './types.js';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

export function validateDns1123Subdomain(v: string): string | undefined {
  if (v.length > 253) return 'must be no more than 253 characters';
  if (!DNS1123_SUBDOMAIN.test(v)) {
    return `a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`;
  }
  return undefined;
}
export function validateDns1123Label(v: string): string | undefined {
  if (v.length > 63) return 'must be no more than 63 characters';
  if (!DNS1123_LABEL.test(v)) {
    return `a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`;
  }
  return undefined;
}
function validateDns1035Label(v: string): string | undefined {
  if (v.length > 63) return 'must be no more than 63 characters';
  if (!DNS1035_LABEL.test(v)) {
    return `a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`;
  }
  return undefined;
}

/** Validates metadata.name/namespace, labels; returns causes (empty = valid). */
export function validateMeta(type: ResourceType, obj: KObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const name = obj.metadata.name ?? '';
  if (!name) {
    causes.push({ reason: 'FieldValueRequired', message: 'Required value: name or generateName is required', field: 'metadata.name' });
  } else {
    let msg: string | undefined;
    if (type.storageKey === '/namespaces') msg = validateDns1123Label(name);
    else if (type.storageKey === '/services') msg = validateDns1035Label(name);
    else if (type.storageKey === '/events') msg = name.includes('/') || name === '.' || name === '..' ? "may not contain '/'" : undefined;
    else msg = validateDns1123Subdomain(name);
    if (msg) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${name}": ${msg}`, field: 'metadata.name' });
  }
  const labels = obj.metadata.labels;
  if (labels !== undefined && (labels === null || typeof labels !== 'object' || Array.isArray(labels))) {
    causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be a map of strings', field: 'metadata.labels' });
  } else if (labels) {
    for (const [k, v] of Object.entries(labels)) {
      // Lengths first: the regular expressions then only see short strings.
      if (typeof v !== 'string' || v.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v)) {
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${JSON.stringify(typeof v === 'string' ? v.slice(0, 100) : v)}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'`,
          field: `metadata.labels`,
        });
      }
      const slash = k.lastIndexOf('/');
      if (k.length - slash - 1 > 63 || slash > 253) {
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: "${k.slice(0, 100)}": name part must be no more than 63 characters and prefix part no more than 253`,
          field: 'metadata.labels',
        });
      } else if (!/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(k)) {
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: "${k}": name part must consist of alphanumeric characters, '-', '_' or '.'`,
          field: 'metadata.labels',
        });
      }
    }
  }
  const ann = obj.metadata.annotations;
  if (ann !== undefined && ann !== null && (typeof ann !== 'object' || Array.isArray(ann) || Object.values(ann).some((v) => typeof v !== 'string'))) {
    causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be a map of strings', field: 'metadata.annotations' });
  }
  return causes;
}

const isObj = (v: unknown): v is Record<string, Json> => v !== null && typeof v === 'object' && !Array.isArray(v);

function typeOfJson(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

// ------------------------------------------------------------------ CRD schemas

/**
 * What validating one object against a schema may still spend (limits.ts): bytes that
 * `default`s add and RE2 work on `pattern`s. Once a limit is passed a cause is recorded
 * and the rest of the object is skipped (`exhausted`), so the work stays bounded.
 */
export interface SchemaBudget {
  defaultedBytes: number;
  patternWork: number;
  exhausted: boolean;
}

export function newSchemaBudget(): SchemaBudget {
  return { defaultedBytes: 0, patternWork: 0, exhausted: false };
}

interface CompiledPattern {
  re?: RE2JS;
  /** Instructions of the RE2 program: the per-character cost of a match. */
  insts: number;
  error?: string;
}

/** Compiled patterns and default texts, once per schema node (schemas live as long as their CRD). */
const compiledPatterns = new WeakMap<JSONSchemaProps, CompiledPattern>();
const defaultTexts = new WeakMap<JSONSchemaProps, string>();

/**
 * Compiles a `pattern` with RE2 semantics (Go's regexp, which kube-apiserver uses): linear
 * time in the input, no backtracking, no lookaround or backreferences.
 */
function compiledPattern(schema: JSONSchemaProps): CompiledPattern {
  let c = compiledPatterns.get(schema);
  if (!c) {
    const pattern = String(schema.pattern);
    try {
      const re = RE2JS.compile(pattern);
      // The program size is not public API; the pattern's length is a fair lower bound.
      const prog: unknown = (re.re2() as { prog?: unknown }).prog;
      const inst = prog && typeof prog === 'object' ? (prog as { inst?: unknown }).inst : undefined;
      c = { re, insts: Math.max(1, Array.isArray(inst) ? inst.length : pattern.length) };
    } catch (err) {
      c = { insts: 0, error: (err as Error).message };
    }
    compiledPatterns.set(schema, c);
  }
  return c;
}

function defaultText(schema: JSONSchemaProps): string {
  let t = defaultTexts.get(schema);
  if (t === undefined) {
    t = JSON.stringify(schema.default);
    defaultTexts.set(schema, t);
  }
  return t;
}

function setOwn(o: Record<string, Json>, k: string, v: Json): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/**
 * Validates `value` against `schema`, pruning unknown fields and applying defaults in
 * place. Returns the causes; field paths use the `spec.foo[0].bar` form of k8s. Defaults
 * are applied inside defaults too (as k8s does); `budget` bounds what that and `pattern`
 * matching may cost, and nesting deeper than MAX_JSON_DEPTH is refused.
 */
export function validateSchema(
  value: Json,
  schema: JSONSchemaProps,
  path: string,
  causes: StatusCause[],
  root = false,
  pruned: string[] = [],
  budget: SchemaBudget = newSchemaBudget(),
  depth = 0,
): void {
  if (budget.exhausted) return;
  const field = path;
  if (depth > MAX_JSON_DEPTH) {
    causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: nesting is deeper than ${MAX_JSON_DEPTH} levels`, field });
    budget.exhausted = true;
    return;
  }
  if (value === null) {
    if (!schema.nullable && schema.type)
      causes.push({ reason: 'FieldValueTypeInvalid', message: `Invalid value: "null": ${field} in body must be of type ${schema.type}: "null"`, field });
    return;
  }
  const actual = typeOfJson(value);
  if (schema['x-kubernetes-int-or-string']) {
    if (actual !== 'integer' && actual !== 'string')
      causes.push({ reason: 'FieldValueTypeInvalid', message: `Invalid value: "${actual}": ${field} in body must be of type int-or-string: "${actual}"`, field });
  } else if (schema.type) {
    const ok = schema.type === actual || (schema.type === 'number' && actual === 'integer');
    if (!ok) {
      causes.push({ reason: 'FieldValueTypeInvalid', message: `Invalid value: "${actual}": ${field} in body must be of type ${schema.type}: "${actual}"`, field });
      return;
    }
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    causes.push({
      reason: 'FieldValueNotSupported',
      message: `Unsupported value: ${JSON.stringify(value)}: supported values: ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}`,
      field,
    });
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum)
      causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${value}: ${field} in body should be greater than or equal to ${schema.minimum}`, field });
    if (schema.maximum !== undefined && value > schema.maximum)
      causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${value}: ${field} in body should be less than or equal to ${schema.maximum}`, field });
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength)
      causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${value}": ${field} in body should be at least ${schema.minLength} chars long`, field });
    if (schema.maxLength !== undefined && value.length > schema.maxLength)
      causes.push({ reason: 'FieldValueTooLong', message: `Too long: ${field} in body may not be more than ${schema.maxLength} bytes`, field });
    if (typeof schema.pattern === 'string') {
      // A pattern RE2 cannot compile is refused when the CRD is written (validateCrd); one
      // stored before that check existed is not evaluated.
      const c = compiledPattern(schema);
      if (c.re) {
        budget.patternWork += (value.length + 1) * c.insts;
        if (budget.patternWork > MAX_PATTERN_WORK) {
          causes.push({
            reason: 'FieldValueInvalid',
            message: `Invalid value: matching the schema patterns against this object takes more than ${MAX_PATTERN_WORK} steps (string length × pattern size)`,
            field,
          });
          budget.exhausted = true;
          return;
        }
        if (!c.re.test(value)) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${value}": ${field} in body should match '${schema.pattern}'`, field });
      }
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems)
      causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${value.length}: ${field} in body should have at least ${schema.minItems} items`, field });
    if (schema.maxItems !== undefined && value.length > schema.maxItems)
      causes.push({ reason: 'FieldValueTooMany', message: `Too many: ${value.length}: must have at most ${schema.maxItems} items`, field });
    if (isObj(schema.items)) {
      for (let i = 0; i < value.length && !budget.exhausted; i++) validateSchema(value[i]!, schema.items, `${path}[${i}]`, causes, false, pruned, budget, depth + 1);
    }
  }
  if (isObj(value)) {
    const props = isObj(schema.properties) ? schema.properties : undefined;
    const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true || schema['x-kubernetes-embedded-resource'] === true;
    if (props) {
      for (const [k, sub] of Object.entries(props)) {
        if (!isObj(sub) || sub.default === undefined || Object.hasOwn(value, k)) continue;
        const text = defaultText(sub);
        budget.defaultedBytes += text.length;
        if (budget.defaultedBytes > MAX_DEFAULTED_BYTES) {
          causes.push({
            reason: 'FieldValueTooLong',
            message: `Too long: the schema's defaults would add more than ${MAX_DEFAULTED_BYTES} bytes to this object`,
            field: path ? `${path}.${k}` : k,
          });
          budget.exhausted = true;
          return;
        }
        setOwn(value, k, JSON.parse(text) as Json);
      }
    }
    for (const req of Array.isArray(schema.required) ? schema.required : []) {
      if (!Object.hasOwn(value, req)) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: path ? `${path}.${req}` : req });
    }
    for (const k of Object.keys(value)) {
      if (budget.exhausted) return;
      if (root && (k === 'apiVersion' || k === 'kind' || k === 'metadata')) continue;
      const child = path ? `${path}.${k}` : k;
      const sub = props && Object.hasOwn(props, k) ? props[k] : undefined;
      if (isObj(sub)) validateSchema(value[k]!, sub, child, causes, false, pruned, budget, depth + 1);
      else if (isObj(schema.additionalProperties)) validateSchema(value[k]!, schema.additionalProperties, child, causes, false, pruned, budget, depth + 1);
      else if (schema.additionalProperties === true || preserve) continue;
      else if (props || schema.type === 'object') {
        // Pruned, like a structural schema does; reported for fieldValidation=Strict.
        delete value[k];
        pruned.push(child);
      }
    }
  }
}

/**
 * Checks what of a version's schema can only be judged when the CRD is written: every
 * `pattern` must compile as RE2, and every `default` (with the defaults nested in it)
 * must stay within the defaulting budget. Causes name the field (`…properties[spec].pattern`).
 */
function validateCrdSchema(schema: unknown, field: string, causes: StatusCause[], budget: SchemaBudget): void {
  // Schemas are trees of at most MAX_JSON_DEPTH levels (the body's depth limit).
  const stack: [unknown, string][] = [[schema, field]];
  while (stack.length > 0) {
    const [node, at] = stack.pop()!;
    if (!isObj(node)) continue;
    const s = node as unknown as JSONSchemaProps;
    if (s.pattern !== undefined) {
      if (typeof s.pattern !== 'string') causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be a string', field: `${at}.pattern` });
      else {
        const c = compiledPattern(s);
        if (c.error !== undefined)
          causes.push({
            reason: 'FieldValueInvalid',
            message: `Invalid value: ${JSON.stringify(s.pattern)}: must be a valid regular expression, but isn't: ${c.error}`,
            field: `${at}.pattern`,
          });
      }
    }
    if (s.default !== undefined && !budget.exhausted) {
      const scratch: StatusCause[] = [];
      validateSchema(JSON.parse(defaultText(s)) as Json, s, '', scratch, false, [], budget);
      if (budget.exhausted) {
        const why = scratch.at(-1)?.message ?? 'Too long';
        causes.push({ reason: 'FieldValueTooLong', message: `${why} (applying this default)`, field: `${at}.default` });
      }
    }
    if (isObj(s.properties)) for (const [k, v] of Object.entries(s.properties)) stack.push([v, `${at}.properties[${k}]`]);
    if (isObj(s.items)) stack.push([s.items, `${at}.items`]);
    if (isObj(s.additionalProperties)) stack.push([s.additionalProperties, `${at}.additionalProperties`]);
  }
}

/** Validates a CustomResourceDefinition's essentials; returns causes. */
export function validateCrd(crd: KObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const spec = (crd as { spec?: unknown }).spec;
  if (!isObj(spec)) return [{ reason: 'FieldValueRequired', message: 'Required value', field: 'spec' }];
  const group = spec.group;
  const names = spec.names;
  if (typeof group !== 'string' || !group || validateDns1123Subdomain(group) || !group.includes('.')) {
    causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(group)}: should be a domain with at least one dot`, field: 'spec.group' });
  }
  if (!isObj(names) || typeof names.plural !== 'string' || !names.plural) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: 'spec.names.plural' });
  else if (validateDns1123Label(names.plural))
    causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${names.plural}": ${validateDns1123Label(names.plural)}`, field: 'spec.names.plural' });
  if (!isObj(names) || typeof names.kind !== 'string' || !names.kind) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: 'spec.names.kind' });
  if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster')
    causes.push({ reason: 'FieldValueNotSupported', message: `Unsupported value: ${JSON.stringify(spec.scope)}: supported values: "Cluster", "Namespaced"`, field: 'spec.scope' });
  const versions = spec.versions;
  if (!Array.isArray(versions) || versions.length === 0) {
    causes.push({ reason: 'FieldValueRequired', message: 'Required value: must have exactly one version marked as storage version', field: 'spec.versions' });
  } else {
    const storage = versions.filter((v) => isObj(v) && v.storage === true).length;
    if (storage !== 1) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: must have exactly one version marked as storage version`, field: 'spec.versions' });
    const budget = newSchemaBudget();
    versions.forEach((v, i) => {
      if (!isObj(v) || typeof v.name !== 'string' || validateDns1035Label(v.name))
        causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be a DNS-1035 label', field: `spec.versions[${i}].name` });
      const schema = isObj(v) && isObj(v.schema) ? v.schema.openAPIV3Schema : undefined;
      if (schema !== undefined) validateCrdSchema(schema, `spec.versions[${i}].schema.openAPIV3Schema`, causes, budget);
    });
  }
  if (isObj(names) && typeof names.plural === 'string' && typeof group === 'string' && crd.metadata.name !== `${names.plural}.${group}`) {
    causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${crd.metadata.name}": must be spec.names.plural+"."+spec.group`, field: 'metadata.name' });
  }
  return causes;
}

// ------------------------------------------------------------------ ConfigMap and Secret data

const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;

/** apimachinery's IsConfigMapKey (ConfigMap data/binaryData and Secret data keys). */
function configKeyErrors(key: string): string[] {
  const errs: string[] = [];
  if (Buffer.byteLength(key) > 253) errs.push('must be no more than 253 characters');
  if (!CONFIG_KEY.test(key)) {
    errs.push(
      `a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')`,
    );
  }
  if (key === '.') errs.push(`must not be '.'`);
  else if (key === '..') errs.push(`must not be '..'`);
  else if (key.startsWith('..')) errs.push(`must not start with '..'`);
  return errs;
}

/** The name Go's encoding/json gives a JSON value's type in its errors. */
function goJsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'boolean') return 'bool';
  return typeof v;
}

/** Where a std-base64 string (Go's StdEncoding, CR/LF ignored) is malformed, or -1. */
function base64ErrorAt(s: string): number {
  const t = s.replace(/[\r\n]/g, '');
  const m = /^[A-Za-z0-9+/]*/.exec(t)![0].length;
  let pad = 0;
  while (t[m + pad] === '=') pad++;
  if (m + pad < t.length) return m + pad; // an illegal character
  if (pad > 2 || t.length % 4 !== 0) return pad > 0 ? m : t.length - (t.length % 4);
  return -1;
}

function base64DecodedBytes(s: string): number {
  const t = s.replace(/[\r\n]/g, '');
  let pad = 0;
  while (pad < 2 && t[t.length - 1 - pad] === '=') pad++;
  return (t.length / 4) * 3 - pad;
}

/**
 * What kube-apiserver's decoder says about a ConfigMap or Secret whose data maps do not
 * have the types core/v1 declares (ConfigMap `data` map[string]string, `binaryData` and
 * Secret `data` map[string][]byte = base64 strings, Secret `stringData`
 * map[string]string), e.g. `json: cannot unmarshal number into Go struct field
 * ConfigMap.data of type string`; undefined when they do. A null map is dropped and a
 * null value becomes empty, as Go's decoder makes them.
 */
export function configDataDecodeError(kind: 'ConfigMap' | 'Secret', obj: Record<string, unknown>): string | undefined {
  const fields: [string, 'string' | 'bytes'][] =
    kind === 'ConfigMap'
      ? [
          ['data', 'string'],
          ['binaryData', 'bytes'],
        ]
      : [
          ['data', 'bytes'],
          ['stringData', 'string'],
        ];
  for (const [name, type] of fields) {
    if (!Object.hasOwn(obj, name)) continue;
    const m = obj[name];
    if (m === null) {
      delete obj[name];
      continue;
    }
    const goType = type === 'string' ? 'string' : '[]uint8';
    if (!isObj(m)) return `json: cannot unmarshal ${goJsonType(m)} into Go struct field ${kind}.${name} of type map[string]${goType}`;
    for (const [k, v] of Object.entries(m)) {
      if (v === null) {
        m[k] = '';
        continue;
      }
      if (typeof v !== 'string') return `json: cannot unmarshal ${goJsonType(v)} into Go struct field ${kind}.${name} of type ${goType}`;
      if (type === 'bytes') {
        const at = base64ErrorAt(v);
        if (at >= 0) return `illegal base64 data at input byte ${at}`;
      }
    }
  }
  return undefined;
}

/** core/v1 ConfigMap validation of its data: keys, no key in both maps, total size (1 MiB). */
export function validateConfigMap(obj: Record<string, unknown>): StatusCause[] {
  const causes: StatusCause[] = [];
  const data = isObj(obj.data) ? obj.data : {};
  const binary = isObj(obj.binaryData) ? obj.binaryData : {};
  let total = 0;
  for (const [k, v] of Object.entries(data)) {
    for (const msg of configKeyErrors(k)) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(k)}: ${msg}`, field: `data[${k}]` });
    if (Object.hasOwn(binary, k))
      causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(k)}: duplicate of key present in binaryData`, field: `data[${k}]` });
    if (typeof v === 'string') total += Buffer.byteLength(v);
  }
  for (const [k, v] of Object.entries(binary)) {
    for (const msg of configKeyErrors(k)) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(k)}: ${msg}`, field: `binaryData[${k}]` });
    if (Object.hasOwn(data, k))
      causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(k)}: duplicate of key present in data`, field: `binaryData[${k}]` });
    if (typeof v === 'string') total += base64DecodedBytes(v);
  }
  // The whole object, as k8s reports it (a cause without a field).
  if (total > MAX_CONFIG_DATA_BYTES) causes.push({ reason: 'FieldValueTooLong', message: `Too long: must have at most ${MAX_CONFIG_DATA_BYTES} bytes` });
  return causes;
}

/** core/v1 Secret validation of its data: keys and total decoded size (1 MiB). */
export function validateSecret(obj: Record<string, unknown>): StatusCause[] {
  const causes: StatusCause[] = [];
  let total = 0;
  for (const [k, v] of Object.entries(isObj(obj.data) ? obj.data : {})) {
    for (const msg of configKeyErrors(k)) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(k)}: ${msg}`, field: `data[${k}]` });
    if (typeof v === 'string') total += base64DecodedBytes(v);
  }
  if (total > MAX_CONFIG_DATA_BYTES) causes.push({ reason: 'FieldValueTooLong', message: `Too long: must have at most ${MAX_CONFIG_DATA_BYTES} bytes`, field: 'data' });
  return causes;
}
