/**
 * @module
 * Label selectors (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma = and) and
 * field selectors (`f=v`, `f==v`, `f!=v`) with Kubernetes' meaning: `!=` and `notin` also match
 * objects without the label. Parsed by hand without backtracking regular expressions (selectors
 * come from any local client); a bad selector is a 400 naming it, as kube-apiserver answers.
 */
import { type KubeObject, type ResourceInfo, statusErrors } from './resources.js';

export type LabelMatcher = (labels: Record<string, string> | undefined) => boolean;
export type FieldMatcher = (o: KubeObject) => boolean;

/** Longest selector looked at. */
const MAX_SELECTOR = 4096;

type Requirement = { key: string; op: 'in' | 'notin'; values: string[] } | { key: string; op: 'exists' | '!exists' };

const NAME_RE = /^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
const PREFIX_RE = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;
const VALUE_RE = /^([A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?)?$/;

function validKey(k: string): boolean {
  const slash = k.indexOf('/');
  const prefix = slash >= 0 ? k.slice(0, slash) : undefined;
  const name = slash >= 0 ? k.slice(slash + 1) : k;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !PREFIX_RE.test(prefix))) return false;
  return name.length > 0 && name.length <= 63 && NAME_RE.test(name);
}

const validValue = (v: string): boolean => v.length <= 63 && VALUE_RE.test(v);

/** Splits at commas outside parentheses; undefined when the parentheses do not balance. */
function splitTop(s: string): string[] | undefined {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '(') depth++;
    else if (c === ')') {
      if (--depth < 0) return undefined;
    } else if (c === ',' && depth === 0) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) return undefined;
  out.push(s.slice(start));
  return out;
}

function parseRequirement(raw: string, sel: string): Requirement {
  const bad = (why: string) => statusErrors.badRequest(`unable to parse requirement: ${why} in label selector "${sel}"`);
  const part = raw.trim();
  if (part === '') throw bad("found '', expected: identifier");
  const key = (k: string): string => {
    const t = k.trim();
    if (!validKey(t)) throw bad(`invalid label key "${t}"`);
    return t;
  };
  const value = (v: string): string => {
    const t = v.trim();
    if (!validValue(t)) throw bad(`invalid label value "${t}"`);
    return t;
  };
  if (part.startsWith('!') && !part.startsWith('!=')) return { key: key(part.slice(1)), op: '!exists' };
  const paren = part.indexOf('(');
  if (paren >= 0) {
    const head = part.slice(0, paren).trim().split(/\s+/);
    if (head.length !== 2 || (head[1] !== 'in' && head[1] !== 'notin') || !part.endsWith(')')) throw bad(`"${part}" is not "<key> in|notin (<values>)"`);
    const values = part
      .slice(paren + 1, -1)
      .split(',')
      .map(value);
    if (values.length === 1 && values[0] === '') throw bad("for 'in', 'notin' operators, values set can't be empty");
    return { key: key(head[0]!), op: head[1], values };
  }
  for (const [op, kind] of [
    ['!=', 'notin'],
    ['==', 'in'],
    ['=', 'in'],
  ] as const) {
    const i = part.indexOf(op);
    if (i >= 0) return { key: key(part.slice(0, i)), op: kind, values: [value(part.slice(i + op.length))] };
  }
  return { key: key(part), op: 'exists' };
}

/** Parses a label selector; undefined (everything matches) when empty. Throws a 400 HttpStatusError. */
export function parseLabelSelector(sel: string | null | undefined): LabelMatcher | undefined {
  if (!sel || sel.trim() === '') return undefined;
  if (sel.length > MAX_SELECTOR) throw statusErrors.badRequest(`label selector longer than ${MAX_SELECTOR} characters`);
  const parts = splitTop(sel);
  if (!parts) throw statusErrors.badRequest(`unable to parse requirement: unbalanced parentheses in label selector "${sel}"`);
  const reqs = parts.map((p) => parseRequirement(p, sel));
  return (labels) => {
    for (const r of reqs) {
      const has = labels !== undefined && Object.hasOwn(labels, r.key);
      switch (r.op) {
        case 'exists':
          if (!has) return false;
          break;
        case '!exists':
          if (has) return false;
          break;
        case 'in':
          if (!has || !r.values.includes(labels[r.key]!)) return false;
          break;
        case 'notin':
          if (has && r.values.includes(labels[r.key]!)) return false;
          break;
      }
    }
    return true;
  };
}

/** Parses a field selector for `resource`; only its field labels are allowed (400 `field label not supported`, as Kubernetes). */
export function parseFieldSelector(sel: string | null | undefined, resource: ResourceInfo): FieldMatcher | undefined {
  if (!sel || sel.trim() === '') return undefined;
  if (sel.length > MAX_SELECTOR) throw statusErrors.badRequest(`field selector longer than ${MAX_SELECTOR} characters`);
  const reqs: { get: (o: KubeObject) => unknown; neg: boolean; value: string }[] = [];
  for (const raw of sel.split(',')) {
    const part = raw.trim();
    let found: { field: string; neg: boolean; value: string } | undefined;
    for (const [op, neg] of [
      ['!=', true],
      ['==', false],
      ['=', false],
    ] as const) {
      const i = part.indexOf(op);
      if (i > 0) {
        found = { field: part.slice(0, i).trim(), neg, value: part.slice(i + op.length).trim() };
        break;
      }
    }
    if (!found) throw statusErrors.badRequest(`invalid selector: '${sel}'; can't understand '${part}'`);
    const { field } = found;
    const get =
      field === 'metadata.name'
        ? (o: KubeObject) => o.metadata?.name
        : field === 'metadata.namespace' && resource.namespaced
          ? (o: KubeObject) => o.metadata?.namespace
          : Object.hasOwn(resource.fields, field)
            ? resource.fields[field]
            : undefined;
    if (!get) throw statusErrors.badRequest(`field label not supported: ${field}`);
    reqs.push({ get, neg: found.neg, value: found.value });
  }
  return (o) => {
    for (const r of reqs) {
      const v = r.get(o);
      const s = v === undefined || v === null ? '' : String(v);
      if ((s === r.value) === r.neg) return false;
    }
    return true;
  };
}
