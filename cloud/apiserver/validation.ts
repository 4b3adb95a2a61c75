/**
 * @module
 * Validation: object names (DNS-1123 subdomain/label, DNS-1035 label), custom
 * resources against their CRD's openAPIV3Schema (types, required, enum, bounds,
 * pattern; unknown fields pruned and `default`s applied as a structural schema
 * would), and the CRD objects themselves.
 */
import type { StatusCause } from './errors.js';
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
    else if (type.storageKey === '/events') msg = name.includes('/') || name === '.' || name === '..' ? 'may not contain \'/\'' : undefined;
    else msg = validateDns1123Subdomain(name);
    if (msg) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${name}": ${msg}`, field: 'metadata.name' });
  }
  const labels = obj.metadata.labels;
  if (labels !== undefined && (labels === null || typeof labels !== 'object' || Array.isArray(labels))) {
    causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be a map of strings', field: 'metadata.labels' });
  } else if (labels) {
    for (const [k, v] of Object.entries(labels)) {
      if (typeof v !== 'string' || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v) || v.length > 63) {
        causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(v)}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'`, field: `metadata.labels` });
      }
      if (!/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(k)) {
        causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${k}": name part must consist of alphanumeric characters, '-', '_' or '.'`, field: 'metadata.labels' });
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

/**
 * Validates `value` against `schema`, pruning unknown fields and applying defaults in
 * place. Returns the causes; field paths use the `spec.foo[0].bar` form of k8s.
 */
export function validateSchema(value: Json, schema: JSONSchemaProps, path: string, causes: StatusCause[], root = false, pruned: string[] = []): void {
  const field = path;
  if (value === null) {
    if (!schema.nullable && schema.type) causes.push({ reason: 'FieldValueTypeInvalid', message: `Invalid value: "null": ${field} in body must be of type ${schema.type}: "null"`, field });
    return;
  }
  const actual = typeOfJson(value);
  if (schema['x-kubernetes-int-or-string']) {
    if (actual !== 'integer' && actual !== 'string') causes.push({ reason: 'FieldValueTypeInvalid', message: `Invalid value: "${actual}": ${field} in body must be of type int-or-string: "${actual}"`, field });
  } else if (schema.type) {
    const ok = schema.type === actual || (schema.type === 'number' && actual === 'integer');
    if (!ok) {
      causes.push({ reason: 'FieldValueTypeInvalid', message: `Invalid value: "${actual}": ${field} in body must be of type ${schema.type}: "${actual}"`, field });
      return;
    }
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    causes.push({ reason: 'FieldValueNotSupported', message: `Unsupported value: ${JSON.stringify(value)}: supported values: ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}`, field });
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${value}: ${field} in body should be greater than or equal to ${schema.minimum}`, field });
    if (schema.maximum !== undefined && value > schema.maximum) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${value}: ${field} in body should be less than or equal to ${schema.maximum}`, field });
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${value}": ${field} in body should be at least ${schema.minLength} chars long`, field });
    if (schema.maxLength !== undefined && value.length > schema.maxLength) causes.push({ reason: 'FieldValueTooLong', message: `Too long: ${field} in body may not be more than ${schema.maxLength} bytes`, field });
    if (schema.pattern !== undefined) {
      let re: RegExp | undefined;
      try {
        re = new RegExp(schema.pattern, 'u');
      } catch {
        re = undefined;
      }
      if (re && !re.test(value)) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${value}": ${field} in body should match '${schema.pattern}'`, field });
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${value.length}: ${field} in body should have at least ${schema.minItems} items`, field });
    if (schema.maxItems !== undefined && value.length > schema.maxItems) causes.push({ reason: 'FieldValueTooMany', message: `Too many: ${value.length}: must have at most ${schema.maxItems} items`, field });
    if (schema.items) value.forEach((v, i) => validateSchema(v, schema.items!, `${path}[${i}]`, causes, false, pruned));
  }
  if (isObj(value)) {
    const props = schema.properties;
    const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true || schema['x-kubernetes-embedded-resource'] === true;
    if (props) {
      for (const [k, sub] of Object.entries(props)) {
        if (!(k in value) && sub.default !== undefined) value[k] = structuredClone(sub.default as Json);
      }
    }
    for (const req of schema.required ?? []) {
      if (!(req in value)) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: path ? `${path}.${req}` : req });
    }
    for (const k of Object.keys(value)) {
      if (root && (k === 'apiVersion' || k === 'kind' || k === 'metadata')) continue;
      const child = path ? `${path}.${k}` : k;
      const sub = props?.[k];
      if (sub) validateSchema(value[k]!, sub, child, causes, false, pruned);
      else if (isObj(schema.additionalProperties)) validateSchema(value[k]!, schema.additionalProperties, child, causes, false, pruned);
      else if (schema.additionalProperties === true || preserve) continue;
      else if (props || schema.type === 'object') {
        // Pruned, like a structural schema does; reported for fieldValidation=Strict.
        delete value[k];
        pruned.push(child);
      }
    }
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
  else if (validateDns1123Label(names.plural)) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${names.plural}": ${validateDns1123Label(names.plural)}`, field: 'spec.names.plural' });
  if (!isObj(names) || typeof names.kind !== 'string' || !names.kind) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: 'spec.names.kind' });
  if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster') causes.push({ reason: 'FieldValueNotSupported', message: `Unsupported value: ${JSON.stringify(spec.scope)}: supported values: "Cluster", "Namespaced"`, field: 'spec.scope' });
  const versions = spec.versions;
  if (!Array.isArray(versions) || versions.length === 0) {
    causes.push({ reason: 'FieldValueRequired', message: 'Required value: must have exactly one version marked as storage version', field: 'spec.versions' });
  } else {
    const storage = versions.filter((v) => isObj(v) && v.storage === true).length;
    if (storage !== 1) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: must have exactly one version marked as storage version`, field: 'spec.versions' });
    versions.forEach((v, i) => {
      if (!isObj(v) || typeof v.name !== 'string' || validateDns1035Label(v.name)) causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be a DNS-1035 label', field: `spec.versions[${i}].name` });
    });
  }
  if (isObj(names) && typeof names.plural === 'string' && typeof group === 'string' && crd.metadata.name !== `${names.plural}.${group}`) {
    causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${crd.metadata.name}": must be spec.names.plural+"."+spec.group`, field: 'metadata.name' });
  }
  return causes;
}
