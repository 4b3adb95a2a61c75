/**
 * @module
 * Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) and field selectors
 * (`a=b,c!=d`) with the same syntax and error behaviour as apimachinery.
 */
import { errors } from './errors.js';
import type { KObject, ResourceType } from './types.js';

type LabelReq = { op: 'in'; key: string; values: string[] } | { op: 'notin'; key: string; values: string[] } | { op: 'exists'; key: string } | { op: '!'; key: string };

export type LabelSelector = (labels: Record<string, string> | undefined) => boolean;

const labelKeyRe = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const labelValueRe = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

// Lengths are checked before the regular expressions, which then only see short strings.
function checkKey(k: string, sel: string): void {
  if (k.length > 316 || !labelKeyRe.test(k)) throw errors.badRequest(`unable to parse requirement: invalid label key "${k}" in selector "${sel}"`);
}
function checkValue(v: string, sel: string): void {
  if (v.length > 63 || !labelValueRe.test(v)) throw errors.badRequest(`unable to parse requirement: invalid label value: "${v}" in selector "${sel}"`);
}

/** Splits on commas that are not inside parentheses. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

export function parseLabelSelector(sel: string | undefined): LabelSelector | undefined {
  if (sel === undefined || sel.trim() === '') return undefined;
  const reqs: LabelReq[] = [];
  for (const rawPart of splitTop(sel)) {
    const part = rawPart.trim();
    if (part === '') throw errors.badRequest(`unable to parse requirement: found '', expected: identifier in selector "${sel}"`);
    let m: RegExpExecArray | null;
    if ((m = /^(\S+?)\s+(in|notin)\s*\(([^)]*)\)$/.exec(part))) {
      checkKey(m[1]!, sel);
      const values = m[3]!.split(',').map((v) => v.trim());
      for (const v of values) checkValue(v, sel);
      reqs.push({ op: m[2] as 'in' | 'notin', key: m[1]!, values });
    } else if ((m = /^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(part))) {
      checkKey(m[1]!, sel);
      checkValue(m[3]!, sel);
      reqs.push({ op: m[2] === '!=' ? 'notin' : 'in', key: m[1]!, values: [m[3]!] });
    } else if ((m = /^!\s*(\S+)$/.exec(part))) {
      checkKey(m[1]!, sel);
      reqs.push({ op: '!', key: m[1]! });
    } else if (/^\S+$/.test(part)) {
      checkKey(part, sel);
      reqs.push({ op: 'exists', key: part });
    } else {
      throw errors.badRequest(`unable to parse requirement: invalid selector "${sel}"`);
    }
  }
  return (labels) => {
    const l = labels ?? {};
    for (const r of reqs) {
      const has = Object.hasOwn(l, r.key);
      switch (r.op) {
        case 'in':
          if (!has || !r.values.includes(l[r.key]!)) return false;
          break;
        case 'notin':
          if (has && r.values.includes(l[r.key]!)) return false;
          break;
        case 'exists':
          if (!has) return false;
          break;
        case '!':
          if (has) return false;
          break;
      }
    }
    return true;
  };
}

export type FieldSelector = (obj: KObject) => boolean;

/** Parses a field selector; only field labels the resource supports are allowed (400 otherwise, like k8s). */
export function parseFieldSelector(sel: string | undefined, type: ResourceType): FieldSelector | undefined {
  if (sel === undefined || sel.trim() === '') return undefined;
  const reqs: { field: string; neg: boolean; value: string; get: (o: KObject) => string | undefined }[] = [];
  for (const rawPart of sel.split(',')) {
    const part = rawPart.trim();
    // `field op value` with op `=`, `==` or `!=` (the field has neither `=` nor `!`). Found by
    // index, not by a regular expression: `[^=!]+?\s*` backtracks quadratically on spaces.
    const eq = part.indexOf('=');
    const neg = eq > 0 && part[eq - 1] === '!';
    const field = eq > 0 ? part.slice(0, neg ? eq - 1 : eq).trimEnd() : '';
    if (!field || field.includes('!')) throw errors.badRequest(`invalid selector: '${sel}'; can't understand '${part}'`);
    const value = part.slice(!neg && part[eq + 1] === '=' ? eq + 2 : eq + 1).trimStart();
    let get: ((o: KObject) => string | undefined) | undefined;
    if (field === 'metadata.name') get = (o) => o.metadata.name;
    else if (field === 'metadata.namespace' && type.namespaced) get = (o) => o.metadata.namespace;
    else if (Object.hasOwn(type.fieldLabels, field)) get = type.fieldLabels[field];
    if (!get) throw errors.badRequest(`field label not supported: ${field}`);
    reqs.push({ field, neg, value: unescapeValue(value), get });
  }
  return (obj) => {
    for (const r of reqs) {
      const v = r.get(obj) ?? '';
      if ((v === r.value) === r.neg) return false;
    }
    return true;
  };
}

function unescapeValue(v: string): string {
  return v.replace(/\\([\\,=!])/g, '$1');
}
