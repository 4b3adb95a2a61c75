/**
 * @module
 * The shape check of an upstream DeviceReportBatch (shared/devices/types.ts). Edges are not
 * trusted: every field is checked, and a malformed entry (a report without a name, a twin
 * without a string value, a state that is not a string…) is left out and named in the returned
 * problems, while the well-formed rest of the batch goes on. Authorization (is the device this
 * node's?) is the controller's; this is only the shape.
 */
import type { DeviceReport, Twin, TwinProperty } from '../../shared/devices/index.js';

/** A problem with part of a batch: `kind` groups problems for logging, `subject` names the entry. */
export interface ReportProblem {
  kind: string;
  subject: string;
}

export interface CheckedBatch {
  /** The well-formed reports (with only their well-formed parts). */
  reports: DeviceReport[];
  problems: ReportProblem[];
}

export interface ReportLimits {
  maxReportsPerBatch: number;
  maxTwinValueBytes: number;
}

/** Longest namespace / name (DNS subdomain) and property name accepted. */
const MAX_NAME = 253;
/** Most twins per report and metadata entries per value (far beyond any model). */
const MAX_TWINS = 1024;
const MAX_METADATA = 32;
const MAX_METADATA_BYTES = 1024;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isName = (v: unknown): v is string => typeof v === 'string' && v !== '' && v.length <= MAX_NAME;
const show = (v: unknown): string => (typeof v === 'string' ? v.slice(0, 80) : (JSON.stringify(v) ?? String(v)).slice(0, 80));

/** RFC 3339 (what Go's time.Time marshals to), e.g. 2030-01-01T00:00:00Z or …+02:00 with fractions. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function twinProperty(v: unknown, limits: ReportLimits): TwinProperty | string {
  if (!isObj(v)) return 'not an object';
  if (typeof v.value !== 'string') return 'value is not a string';
  if (Buffer.byteLength(v.value) > limits.maxTwinValueBytes) return `value longer than ${limits.maxTwinValueBytes} bytes`;
  const out: TwinProperty = { value: v.value };
  if (v.metadata !== undefined && v.metadata !== null) {
    if (!isObj(v.metadata)) return 'metadata is not a map';
    const entries = Object.entries(v.metadata);
    if (entries.length > MAX_METADATA) return `more than ${MAX_METADATA} metadata entries`;
    const md: Record<string, string> = {};
    for (const [k, s] of entries) {
      if (typeof s !== 'string' || k.length + s.length > MAX_METADATA_BYTES) return `metadata ${k.slice(0, 40)} is not a short string`;
      md[k] = s;
    }
    out.metadata = md;
  }
  return out;
}

function twin(v: unknown, limits: ReportLimits): Twin | string {
  if (!isObj(v)) return 'a twin is not an object';
  if (!isName(v.propertyName)) return `a twin's propertyName ${show(v.propertyName)} is not a name`;
  const out: Twin = { propertyName: v.propertyName };
  for (const field of ['reported', 'observedDesired'] as const) {
    if (v[field] === undefined || v[field] === null) continue;
    const p = twinProperty(v[field], limits);
    if (typeof p === 'string') return `twin ${v.propertyName}: ${field} ${p}`;
    out[field] = p;
  }
  if (!out.reported && !out.observedDesired) return `twin ${v.propertyName} has neither reported nor observedDesired`;
  return out;
}

/** Checks a batch's shape; `undefined` when the content is not a batch at all (no `reports` list). */
export function checkBatch(content: unknown, limits: ReportLimits): CheckedBatch | undefined {
  if (!isObj(content) || !Array.isArray(content.reports)) return undefined;
  const problems: ReportProblem[] = [];
  const reports: DeviceReport[] = [];
  const list = content.reports as unknown[];
  if (list.length > limits.maxReportsPerBatch)
    problems.push({ kind: 'too many reports in one batch', subject: `${list.length - limits.maxReportsPerBatch} beyond ${limits.maxReportsPerBatch}` });
  for (const r of list.slice(0, limits.maxReportsPerBatch)) {
    if (!isObj(r) || !isName(r.namespace) || !isName(r.name)) {
      problems.push({ kind: 'report without a namespace and name', subject: show(r) });
      continue;
    }
    const subject = `${r.namespace}/${r.name}`;
    const out: DeviceReport = { namespace: r.namespace, name: r.name };
    if (r.uid !== undefined && r.uid !== null) {
      if (!isName(r.uid)) {
        problems.push({ kind: 'uid is not a string', subject });
        continue;
      }
      out.uid = r.uid;
    }
    if (r.twins !== undefined && r.twins !== null) {
      if (!Array.isArray(r.twins)) problems.push({ kind: 'twins is not a list', subject });
      else {
        if (r.twins.length > MAX_TWINS) problems.push({ kind: `more than ${MAX_TWINS} twins`, subject });
        const twins: Twin[] = [];
        for (const t of r.twins.slice(0, MAX_TWINS)) {
          const checked = twin(t, limits);
          if (typeof checked === 'string') problems.push({ kind: 'malformed twin', subject: `${subject}: ${checked}` });
          else twins.push(checked);
        }
        if (twins.length) out.twins = twins;
      }
    }
    if (r.state !== undefined && r.state !== null) {
      if (typeof r.state === 'string' && r.state.length <= MAX_NAME) out.state = r.state;
      else problems.push({ kind: 'state is not a short string', subject });
    }
    if (r.lastOnlineTime !== undefined && r.lastOnlineTime !== null && r.lastOnlineTime !== '') {
      if (typeof r.lastOnlineTime === 'string' && RFC3339.test(r.lastOnlineTime) && !Number.isNaN(Date.parse(r.lastOnlineTime))) out.lastOnlineTime = r.lastOnlineTime;
      else problems.push({ kind: 'lastOnlineTime is not an RFC 3339 time', subject: `${subject}: ${show(r.lastOnlineTime)}` });
    }
    reports.push(out);
  }
  return { reports, problems };
}
