/**
 * @module
 * The API side of the workload kinds — apps/v1 Deployment, ReplicaSet, DaemonSet,
 * ControllerRevision and batch/v1 Job, CronJob — as kube-apiserver 1.35 has it:
 *
 * - defaults, as the SetDefaults_* of pkg/apis/{apps,batch}/v1 (applied to every body that is
 *   written, create and update, as the decoder does), the pod templates through the pods'
 *   own spec defaults (rest.ts passes them in: {@link PodSpecStrategy});
 * - the registry strategies' PrepareForCreate: status reset, and a Job's generated selector
 *   and labels (`batch.kubernetes.io/controller-uid`, `…/job-name`, `controller-uid`, `job-name`);
 * - validation, as pkg/apis/{apps,batch}/validation, with kube's messages — including the Go
 *   `%#v` rendering of the values they quote (`v1.LabelSelector{MatchLabels:…}`,
 *   `map[string]string{…}`, `intstr.IntOrString{…}`) — and the immutable fields of updates;
 * - the autoscaling/v1 Scale of deployments and replicasets ({@link scaleOf}, {@link scaledObject}).
 *
 * Nothing here writes: rest.ts calls in at create/update, http.ts for `/scale`.
 */
import { CronExpressionParser } from 'cron-parser';
import { errors, type StatusCause } from './errors.js';
import { validateMeta } from './validation.js';
import type { Json, JsonObject, KObject, ResourceType } from './types.js';
import { labelSelectorMatches } from './workloads/common.js';

const DEPLOYMENTS = 'apps/deployments';
const REPLICASETS = 'apps/replicasets';
const DAEMONSETS = 'apps/daemonsets';
const CONTROLLER_REVISIONS = 'apps/controllerrevisions';
const JOBS = 'batch/jobs';
const CRONJOBS = 'batch/cronjobs';
const WORKLOADS = new Set([DEPLOYMENTS, REPLICASETS, DAEMONSETS, CONTROLLER_REVISIONS, JOBS, CRONJOBS]);
/** Kinds with a `/scale` subresource (autoscaling/v1 Scale). */
const SCALABLE = new Set([DEPLOYMENTS, REPLICASETS]);

/** The labels the Job strategy generates (pkg/apis/batch/types.go). */
export const JOB_LABELS = {
  controllerUid: 'batch.kubernetes.io/controller-uid',
  jobName: 'batch.kubernetes.io/job-name',
  legacyControllerUid: 'controller-uid',
  legacyJobName: 'job-name',
} as const;

/** What the pods' strategy lends the pod templates (rest.ts owns the pod rules). */
export interface PodSpecStrategy {
  /** SetDefaults_PodSpec and its containers', in place. */
  defaults(spec: JsonObject): void;
  /** ValidatePodSpec of a pod-shaped object `{metadata, spec}`; causes name `spec.…`. */
  validate(pod: KObject): StatusCause[];
}

/** The strategy rest.ts calls for the workload kinds; every method is a no-op for other kinds. */
export interface WorkloadStrategy {
  /** PrepareForCreate + defaults: status reset, SetDefaults_*, a Job's generated selector. `obj.metadata.uid` is set. */
  prepareForCreate(t: ResourceType, obj: KObject): void;
  /** Defaults of an update's body (as decoding it would apply them). */
  prepareForUpdate(t: ResourceType, obj: KObject): void;
  /** Validation of a create (`old` undefined) or update; empty = valid. */
  validate(t: ResourceType, obj: KObject, old?: KObject): StatusCause[];
  /**
   * Whether an update bumps `generation` beyond a spec change: a Deployment's annotations do
   * (its strategy: "annotations are copied from deployments to their replica sets").
   */
  metadataBumpsGeneration(t: ResourceType, next: KObject, old: KObject): boolean;
  /**
   * What a status write keeps of its body besides status: a Deployment's annotations (its
   * status strategy restores only spec and labels; the controller writes the revision
   * annotation through status).
   */
  statusWriteKeepsAnnotations(t: ResourceType): boolean;
}

type O = JsonObject;
const isObj = (v: unknown): v is O => v !== null && typeof v === 'object' && !Array.isArray(v);
/** The object at `o[k]`, created when absent or null (a Go struct is always there). Undefined when it is something else. */
function struct(o: O, k: string): O | undefined {
  const v = o[k];
  if (v === undefined || v === null) return (o[k] = {});
  return isObj(v) ? v : undefined;
}
const objAt = (v: unknown): O => (isObj(v) ? v : {});
const arrOf = (v: unknown): O[] => (Array.isArray(v) ? v.filter(isObj) : []);
const unset = (v: unknown): boolean => v === undefined || v === null;

function isWorkload(t: ResourceType): boolean {
  return t.builtin && WORKLOADS.has(t.storageKey);
}

export function isScalable(t: ResourceType): boolean {
  return t.builtin && SCALABLE.has(t.storageKey);
}

// ------------------------------------------------------------------ Go %#v of quoted values

const goQ = (s: unknown): string => JSON.stringify(String(s));

/** `map[string]string{"a":"b"}`, as Go's %#v (keys sorted); nil when absent. */
function goStringMap(m: unknown): string {
  if (!isObj(m)) return 'map[string]string(nil)';
  const keys = Object.keys(m).sort();
  return `map[string]string{${keys.map((k) => `${goQ(k)}:${goQ(m[k])}`).join(', ')}}`;
}

function goStrings(v: unknown): string {
  if (!Array.isArray(v)) return '[]string(nil)';
  return `[]string{${v.map(goQ).join(', ')}}`;
}

/** A metav1.LabelSelector as Go's %#v prints it (what kube's "field is immutable" quotes). */
function goLabelSelector(sel: unknown): string {
  const s = objAt(sel);
  const reqs = Array.isArray(s.matchExpressions)
    ? `[]v1.LabelSelectorRequirement{${arrOf(s.matchExpressions)
        .map((r) => `v1.LabelSelectorRequirement{Key:${goQ(r.key ?? '')}, Operator:${goQ(r.operator ?? '')}, Values:${goStrings(r.values)}}`)
        .join(', ')}}`
    : '[]v1.LabelSelectorRequirement(nil)';
  return `v1.LabelSelector{MatchLabels:${goStringMap(s.matchLabels)}, MatchExpressions:${reqs}}`;
}

function goIntOrString(v: unknown): string {
  if (typeof v === 'string') return `intstr.IntOrString{Type:1, IntVal:0, StrVal:${goQ(v)}}`;
  return `intstr.IntOrString{Type:0, IntVal:${typeof v === 'number' ? v : 0}, StrVal:""}`;
}

// ------------------------------------------------------------------ label selectors

/**
 * metav1.LabelSelectorAsSelector(sel).String(): requirements sorted by key, `k=v`, `k in (a,b)`,
 * `k notin (a,b)`, `k`, `!k`; '' for a missing or empty selector (or one that is invalid).
 */
export function selectorString(sel: unknown): string {
  if (!isObj(sel)) return '';
  const reqs: [string, string][] = [];
  for (const [k, v] of Object.entries(objAt(sel.matchLabels))) reqs.push([k, `${k}=${String(v)}`]);
  for (const e of arrOf(sel.matchExpressions)) {
    const key = String(e.key ?? '');
    const values = [...new Set((Array.isArray(e.values) ? e.values : []).map(String))].sort();
    switch (e.operator) {
      case 'In':
        reqs.push([key, `${key} in (${values.join(',')})`]);
        break;
      case 'NotIn':
        reqs.push([key, `${key} notin (${values.join(',')})`]);
        break;
      case 'Exists':
        reqs.push([key, key]);
        break;
      case 'DoesNotExist':
        reqs.push([key, `!${key}`]);
        break;
      default:
        return '';
    }
  }
  return reqs
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map((r) => r[1])
    .join(',');
}

/** Semantic equality of two selectors: absent, null and empty maps/lists are the same (apiequality.Semantic). */
function sameSelector(a: unknown, b: unknown): boolean {
  const norm = (s: unknown): string => {
    if (!isObj(s)) return 'nil';
    const ml = objAt(s.matchLabels);
    const me = arrOf(s.matchExpressions).map((r) => ({ key: r.key ?? '', operator: r.operator ?? '', values: Array.isArray(r.values) ? r.values : [] }));
    return JSON.stringify([
      Object.keys(ml)
        .sort()
        .map((k) => [k, ml[k]]),
      me,
    ]);
  };
  return norm(a) === norm(b);
}

// ------------------------------------------------------------------ defaults

function defaultTemplate(tpl: unknown, pod: PodSpecStrategy): void {
  if (!isObj(tpl)) return;
  // Clients send `creationTimestamp: null` for the template's metadata; Go drops the zero time.
  if (isObj(tpl.metadata) && tpl.metadata.creationTimestamp === null) delete tpl.metadata.creationTimestamp;
  const spec = struct(tpl, 'spec');
  if (spec) pod.defaults(spec);
}

function defaultRollingUpdate(strategy: O, type: string, maxUnavailable: Json, maxSurge: Json): void {
  if (!strategy.type) strategy.type = type;
  if (strategy.type !== type) return;
  const ru = struct(strategy, 'rollingUpdate');
  if (!ru) return;
  if (unset(ru.maxUnavailable)) ru.maxUnavailable = maxUnavailable;
  if (unset(ru.maxSurge)) ru.maxSurge = maxSurge;
}

function defaultInt(o: O, k: string, v: number): void {
  if (unset(o[k])) o[k] = v;
}

/** SetDefaults_<Kind> of apps/v1 and batch/v1, with the pod templates' defaults. */
function applyDefaults(t: ResourceType, obj: KObject, pod: PodSpecStrategy): void {
  if (t.storageKey === CONTROLLER_REVISIONS) return;
  const o = obj as unknown as O;
  const spec = struct(o, 'spec');
  if (!spec) return; // not an object: refused by rest.ts's decoding checks
  switch (t.storageKey) {
    case DEPLOYMENTS: {
      defaultInt(spec, 'replicas', 1);
      const strategy = struct(spec, 'strategy');
      if (strategy) defaultRollingUpdate(strategy, 'RollingUpdate', '25%', '25%');
      defaultInt(spec, 'revisionHistoryLimit', 10);
      defaultInt(spec, 'progressDeadlineSeconds', 600);
      defaultTemplate(struct(spec, 'template'), pod);
      break;
    }
    case REPLICASETS:
      defaultInt(spec, 'replicas', 1);
      defaultTemplate(struct(spec, 'template'), pod);
      break;
    case DAEMONSETS: {
      const strategy = struct(spec, 'updateStrategy');
      if (strategy) defaultRollingUpdate(strategy, 'RollingUpdate', 1, 0);
      defaultInt(spec, 'revisionHistoryLimit', 10);
      defaultTemplate(struct(spec, 'template'), pod);
      break;
    }
    case JOBS: {
      // Both unset: a non-parallel job, both 1. Parallelism alone: a work queue (completions nil).
      if (unset(spec.completions) && unset(spec.parallelism)) spec.completions = 1;
      defaultInt(spec, 'parallelism', 1);
      defaultInt(spec, 'backoffLimit', unset(spec.backoffLimitPerIndex) ? 6 : 2147483647);
      if (unset(spec.completionMode)) spec.completionMode = 'NonIndexed';
      if (unset(spec.suspend)) spec.suspend = false;
      if (unset(spec.podReplacementPolicy)) spec.podReplacementPolicy = isObj(spec.podFailurePolicy) ? 'Failed' : 'TerminatingOrFailed';
      for (const rule of arrOf(objAt(spec.podFailurePolicy).rules)) for (const p of arrOf(rule.onPodConditions)) if (!p.status) p.status = 'True';
      const tpl = struct(spec, 'template');
      defaultTemplate(tpl, pod);
      // The job gets its template's labels when it has none of its own.
      const labels = tpl && isObj(tpl.metadata) ? tpl.metadata.labels : undefined;
      if (isObj(labels) && Object.keys(obj.metadata.labels ?? {}).length === 0) obj.metadata.labels = { ...(labels as Record<string, string>) };
      break;
    }
    case CRONJOBS: {
      if (!spec.concurrencyPolicy) spec.concurrencyPolicy = 'Allow';
      if (unset(spec.suspend)) spec.suspend = false;
      defaultInt(spec, 'successfulJobsHistoryLimit', 3);
      defaultInt(spec, 'failedJobsHistoryLimit', 1);
      // The job template's JobSpec gets no Job defaults (they belong to Job objects), its pod template does.
      const jt = struct(spec, 'jobTemplate');
      const jspec = jt && struct(jt, 'spec');
      if (jt && isObj(jt.metadata) && jt.metadata.creationTimestamp === null) delete jt.metadata.creationTimestamp;
      if (jspec) defaultTemplate(struct(jspec, 'template'), pod);
      break;
    }
  }
}

/** The zero status each strategy's PrepareForCreate sets (Go's non-omitempty fields included). */
function initialStatus(storageKey: string): O | undefined {
  switch (storageKey) {
    case DEPLOYMENTS:
    case JOBS:
    case CRONJOBS:
      return {};
    case REPLICASETS:
      return { replicas: 0 };
    case DAEMONSETS:
      return { currentNumberScheduled: 0, numberMisscheduled: 0, desiredNumberScheduled: 0, numberReady: 0 };
    default:
      return undefined;
  }
}

/** The Job strategy's generateSelector: template labels and a selector on the job's uid, unless manualSelector. */
function generateJobSelector(obj: KObject): void {
  const spec = struct(obj as unknown as O, 'spec');
  if (!spec || spec.manualSelector === true) return;
  // Values of the wrong type are left for validation to refuse.
  const tpl = struct(spec, 'template');
  const meta = tpl && struct(tpl, 'metadata');
  const labels = meta && struct(meta, 'labels');
  const sel = struct(spec, 'selector');
  const ml = sel && struct(sel, 'matchLabels');
  if (!labels || !ml) return;
  const name = obj.metadata.name ?? '';
  const uid = obj.metadata.uid ?? '';
  // Labels the user set are kept: a conflicting value is refused by validation.
  for (const k of [JOB_LABELS.legacyJobName, JOB_LABELS.jobName]) if (!Object.hasOwn(labels, k)) labels[k] = name;
  for (const k of [JOB_LABELS.legacyControllerUid, JOB_LABELS.controllerUid]) if (!Object.hasOwn(labels, k)) labels[k] = uid;
  if (!Object.hasOwn(ml, JOB_LABELS.controllerUid)) ml[JOB_LABELS.controllerUid] = uid;
}

// ------------------------------------------------------------------ validation

type Causes = StatusCause[];

const required = (field: string, detail = ''): StatusCause => ({ reason: 'FieldValueRequired', message: detail ? `Required value: ${detail}` : 'Required value', field });
const forbidden = (field: string, detail: string): StatusCause => ({ reason: 'FieldValueForbidden', message: `Forbidden: ${detail}`, field });
const invalid = (field: string, value: string, detail: string): StatusCause => ({ reason: 'FieldValueInvalid', message: `Invalid value: ${value}: ${detail}`, field });
const notSupported = (field: string, value: unknown, supported: string[]): StatusCause => ({
  reason: 'FieldValueNotSupported',
  message: `Unsupported value: ${goQ(value)}: supported values: ${supported.map(goQ).join(', ')}`,
  field,
});

/** An int32 field: a non-integer is refused; returns the number, or undefined when unset. */
function int(v: unknown, field: string, causes: Causes): number | undefined {
  if (unset(v)) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
    causes.push({ reason: 'FieldValueTypeInvalid', message: `Invalid value: ${JSON.stringify(v)}: must be an int32`, field });
    return undefined;
  }
  return v;
}

/** ValidateNonnegativeField on an optional int32. */
function nonNegative(v: unknown, field: string, causes: Causes): number | undefined {
  const n = int(v, field, causes);
  if (n !== undefined && n < 0) causes.push(invalid(field, String(n), 'must be greater than or equal to 0'));
  return n;
}

/** Label and annotation causes of a metadata map, under `prefix` (`spec.template` → `spec.template.labels`). */
function metaCauses(t: ResourceType, meta: unknown, prefix: string): Causes {
  if (unset(meta)) return [];
  if (!isObj(meta)) return [{ reason: 'FieldValueInvalid', message: 'Invalid value: must be an object', field: `${prefix}.metadata` }];
  return validateMeta(t, { metadata: { name: 'x', labels: meta.labels as Record<string, string>, annotations: meta.annotations as Record<string, string> } })
    .filter((c) => c.field === 'metadata.labels' || c.field === 'metadata.annotations')
    .map((c) => ({ ...c, field: `${prefix}.${c.field!.slice('metadata.'.length)}` }));
}

/** unversionedvalidation.ValidateLabelSelector. */
function validateSelector(t: ResourceType, sel: unknown, field: string, causes: Causes): void {
  if (unset(sel)) return;
  if (!isObj(sel)) {
    causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be an object', field });
    return;
  }
  for (const c of metaCauses(t, { labels: sel.matchLabels }, field)) causes.push({ ...c, field: `${field}.matchLabels` });
  if (!unset(sel.matchExpressions) && !Array.isArray(sel.matchExpressions)) {
    causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be a list', field: `${field}.matchExpressions` });
    return;
  }
  (Array.isArray(sel.matchExpressions) ? sel.matchExpressions : []).forEach((r, i) => {
    const f = `${field}.matchExpressions[${i}]`;
    if (!isObj(r)) {
      causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be an object', field: f });
      return;
    }
    const values = Array.isArray(r.values) ? r.values : [];
    switch (r.operator) {
      case 'In':
      case 'NotIn':
        if (values.length === 0) causes.push(required(`${f}.values`, "must be specified when `operator` is 'In' or 'NotIn'"));
        break;
      case 'Exists':
      case 'DoesNotExist':
        if (values.length > 0) causes.push(forbidden(`${f}.values`, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"));
        break;
      default:
        causes.push(invalid(`${f}.operator`, goQ(r.operator ?? ''), 'not a valid selector operator'));
    }
    if (typeof r.key !== 'string' || !r.key) causes.push(invalid(`${f}.key`, goQ(r.key ?? ''), 'name part must be non-empty'));
    else for (const c of metaCauses(t, { labels: { [r.key]: '' } }, f)) causes.push({ ...c, field: `${f}.key` });
  });
}

/**
 * ValidatePodTemplateSpec: the template's labels and annotations, its pod spec through the pods'
 * rules; and the restartPolicy values the kind allows (`Always` for the apps kinds).
 */
function validateTemplate(t: ResourceType, tpl: unknown, field: string, pod: PodSpecStrategy, causes: Causes): O | undefined {
  if (!isObj(tpl)) {
    causes.push(required(field));
    return undefined;
  }
  causes.push(...metaCauses(t, tpl.metadata, field));
  for (const c of pod.validate({ metadata: {}, spec: tpl.spec } as KObject)) causes.push({ ...c, ...(c.field ? { field: `${field}.${c.field}` } : {}) });
  return tpl;
}

const templateLabels = (tpl: O | undefined): Record<string, string> | undefined => {
  const l = tpl && isObj(tpl.metadata) ? tpl.metadata.labels : undefined;
  return isObj(l) ? (l as Record<string, string>) : undefined;
};

/** The selector must select the pods the template makes (a missing selector selects nothing). */
function selectorMatchesTemplate(sel: unknown, tpl: O | undefined, field: string, causes: Causes): void {
  if (isObj(sel) && Object.keys(objAt(sel.matchLabels)).length + arrOf(sel.matchExpressions).length === 0) return; // Everything: not checked
  const labels = templateLabels(tpl);
  if (!labelSelectorMatches(sel, labels)) causes.push(invalid(`${field}.metadata.labels`, goStringMap(labels), '`selector` does not match template `labels`'));
}

function restartPolicyAlways(tpl: O | undefined, field: string, kind: string, causes: Causes): void {
  const spec = objAt(tpl?.spec);
  const rp = spec.restartPolicy ?? '';
  if (rp !== 'Always') causes.push(notSupported(`${field}.spec.restartPolicy`, rp, ['Always']));
  if (!unset(spec.activeDeadlineSeconds))
    causes.push(invalid(`${field}.spec.activeDeadlineSeconds`, String(spec.activeDeadlineSeconds), `activeDeadlineSeconds in ${kind} is not Supported`));
}

const PERCENT = /^[0-9]+%$/;

/** ValidatePositiveIntOrPercent + IsNotMoreThan100Percent; returns the value for the both-zero rule. */
function intOrPercent(v: unknown, field: string, causes: Causes, max100 = true): number {
  if (typeof v === 'string') {
    if (!PERCENT.test(v)) {
      causes.push(
        invalid(
          field,
          goIntOrString(v),
          "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        ),
      );
      return 0;
    }
    const n = Number(v.slice(0, -1));
    if (max100 && n > 100) causes.push(invalid(field, goIntOrString(v), 'must not be greater than 100%'));
    return n;
  }
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) causes.push({ reason: 'FieldValueTypeInvalid', message: `Invalid value: ${v}: must be an integer or a percentage`, field });
    else if (v < 0) causes.push(invalid(field, String(v), 'must be greater than or equal to 0'));
    return v;
  }
  if (!unset(v)) causes.push({ reason: 'FieldValueTypeInvalid', message: `Invalid value: ${JSON.stringify(v)}: must be an integer or a percentage`, field });
  return 0;
}

/** ValidateDeploymentStrategy. */
function validateDeploymentStrategy(strategy: unknown, causes: Causes): void {
  const s = objAt(strategy);
  const f = 'spec.strategy';
  switch (s.type) {
    case 'Recreate':
      if (!unset(s.rollingUpdate)) causes.push(forbidden(`${f}.rollingUpdate`, "may not be specified when strategy `type` is 'Recreate'"));
      break;
    case 'RollingUpdate': {
      if (!isObj(s.rollingUpdate)) {
        causes.push(required(`${f}.rollingUpdate`, 'this should be defaulted and never be nil'));
        break;
      }
      const ru = s.rollingUpdate;
      // Only maxUnavailable is capped at 100% for a Deployment (a surge may double the pods).
      const mu = intOrPercent(ru.maxUnavailable, `${f}.rollingUpdate.maxUnavailable`, causes, true);
      const ms = intOrPercent(ru.maxSurge, `${f}.rollingUpdate.maxSurge`, causes, false);
      if (mu === 0 && ms === 0) causes.push(invalid(`${f}.rollingUpdate.maxUnavailable`, goIntOrString(ru.maxUnavailable), 'may not be 0 when `maxSurge` is 0'));
      break;
    }
    default:
      causes.push(notSupported(`${f}.type`, s.type ?? '', ['Recreate', 'RollingUpdate']));
  }
}

/** ValidateDaemonSetUpdateStrategy. */
function validateDaemonSetStrategy(strategy: unknown, causes: Causes): void {
  const s = objAt(strategy);
  const f = 'spec.updateStrategy';
  switch (s.type) {
    case 'OnDelete':
      break;
    case 'RollingUpdate': {
      if (!isObj(s.rollingUpdate)) {
        causes.push(required(`${f}.rollingUpdate`));
        break;
      }
      const ru = s.rollingUpdate;
      const hasUnavailable = intOrPercent(ru.maxUnavailable, `${f}.rollingUpdate.maxUnavailable`, causes) !== 0;
      const hasSurge = intOrPercent(ru.maxSurge, `${f}.rollingUpdate.maxSurge`, causes) !== 0;
      if (hasUnavailable && hasSurge) causes.push(invalid(`${f}.rollingUpdate.maxSurge`, goIntOrString(ru.maxSurge), 'may not be set when maxUnavailable is non-zero'));
      else if (!hasUnavailable && !hasSurge) causes.push(required(`${f}.rollingUpdate.maxUnavailable`, 'cannot be 0 when maxSurge is 0'));
      break;
    }
    default:
      causes.push(notSupported(`${f}.type`, s.type ?? '', ['RollingUpdate', 'OnDelete']));
  }
}

/** Required selector, valid, non-empty, matching the template (Deployment, ReplicaSet). */
function validateReplicatedSelector(t: ResourceType, spec: O, tpl: O | undefined, emptyWhat: string, causes: Causes): void {
  if (unset(spec.selector)) causes.push(required('spec.selector'));
  else {
    validateSelector(t, spec.selector, 'spec.selector', causes);
    const s = objAt(spec.selector);
    if (Object.keys(objAt(s.matchLabels)).length + arrOf(s.matchExpressions).length === 0) {
      causes.push(invalid('spec.selector', goLabelSelector(spec.selector), `empty selector is invalid for ${emptyWhat}`));
    }
  }
  selectorMatchesTemplate(spec.selector, tpl, 'spec.template', causes);
}

function validateDeployment(t: ResourceType, spec: O, pod: PodSpecStrategy, causes: Causes): void {
  const tpl = validateTemplate(t, spec.template, 'spec.template', pod, causes);
  validateReplicatedSelector(t, spec, tpl, 'deployment', causes);
  if (tpl) restartPolicyAlways(tpl, 'spec.template', 'ReplicaSet', causes);
  validateDeploymentStrategy(spec.strategy, causes);
  const minReady = nonNegative(spec.minReadySeconds, 'spec.minReadySeconds', causes) ?? 0;
  nonNegative(spec.revisionHistoryLimit, 'spec.revisionHistoryLimit', causes);
  const pds = nonNegative(spec.progressDeadlineSeconds, 'spec.progressDeadlineSeconds', causes);
  if (pds !== undefined && pds <= minReady) causes.push(invalid('spec.progressDeadlineSeconds', String(pds), 'must be greater than minReadySeconds'));
  nonNegative(spec.replicas, 'spec.replicas', causes);
}

function validateReplicaSet(t: ResourceType, spec: O, pod: PodSpecStrategy, causes: Causes): void {
  nonNegative(spec.replicas, 'spec.replicas', causes);
  nonNegative(spec.minReadySeconds, 'spec.minReadySeconds', causes);
  const tpl = validateTemplate(t, spec.template, 'spec.template', pod, causes);
  // "for deployment" is what kube says for a ReplicaSet too.
  validateReplicatedSelector(t, spec, tpl, 'deployment', causes);
  if (tpl) restartPolicyAlways(tpl, 'spec.template', 'ReplicaSet', causes);
}

function validateDaemonSet(t: ResourceType, spec: O, pod: PodSpecStrategy, causes: Causes): void {
  // No "Required" for a DaemonSet's selector in kube: a missing one matches no template.
  validateSelector(t, spec.selector, 'spec.selector', causes);
  const tpl = validateTemplate(t, spec.template, 'spec.template', pod, causes);
  selectorMatchesTemplate(spec.selector, tpl, 'spec.template', causes);
  const s = objAt(spec.selector);
  if (isObj(spec.selector) && Object.keys(objAt(s.matchLabels)).length + arrOf(s.matchExpressions).length === 0) {
    causes.push(invalid('spec.selector', goLabelSelector(spec.selector), 'empty selector is invalid for daemonset'));
  }
  if (tpl) restartPolicyAlways(tpl, 'spec.template', 'DaemonSet', causes);
  nonNegative(spec.minReadySeconds, 'spec.minReadySeconds', causes);
  validateDaemonSetStrategy(spec.updateStrategy, causes);
  nonNegative(spec.revisionHistoryLimit, 'spec.revisionHistoryLimit', causes);
}

/** validateJobSpec (what a Job and a CronJob's job template share), under `f` (`spec`, `spec.jobTemplate.spec`). */
function validateJobSpecCommon(t: ResourceType, spec: O, f: string, pod: PodSpecStrategy, causes: Causes): O | undefined {
  nonNegative(spec.parallelism, `${f}.parallelism`, causes);
  const completions = nonNegative(spec.completions, `${f}.completions`, causes);
  nonNegative(spec.activeDeadlineSeconds, `${f}.activeDeadlineSeconds`, causes);
  nonNegative(spec.backoffLimit, `${f}.backoffLimit`, causes);
  nonNegative(spec.ttlSecondsAfterFinished, `${f}.ttlSecondsAfterFinished`, causes);
  if (!unset(spec.completionMode)) {
    if (spec.completionMode !== 'NonIndexed' && spec.completionMode !== 'Indexed') causes.push(notSupported(`${f}.completionMode`, spec.completionMode, ['NonIndexed', 'Indexed']));
    else if (spec.completionMode === 'Indexed' && completions === undefined) causes.push(required(`${f}.completions`, 'when completion mode is Indexed'));
  }
  if (!unset(spec.podReplacementPolicy) && spec.podReplacementPolicy !== 'TerminatingOrFailed' && spec.podReplacementPolicy !== 'Failed') {
    causes.push(notSupported(`${f}.podReplacementPolicy`, spec.podReplacementPolicy, ['Failed', 'TerminatingOrFailed']));
  }
  const tpl = validateTemplate(t, spec.template, `${f}.template`, pod, causes);
  const rp = objAt(tpl?.spec).restartPolicy ?? '';
  // Defaulting made an unset restartPolicy Always: both mean the user gave none of the allowed ones.
  if (rp === 'Always' || rp === '') causes.push(required(`${f}.template.spec.restartPolicy`, 'valid values: "OnFailure", "Never"'));
  else if (rp !== 'OnFailure' && rp !== 'Never') causes.push(notSupported(`${f}.template.spec.restartPolicy`, rp, ['OnFailure', 'Never']));
  return tpl;
}

function validateJob(t: ResourceType, obj: KObject, spec: O, pod: PodSpecStrategy, causes: Causes): void {
  const tpl = validateJobSpecCommon(t, spec, 'spec', pod, causes);
  if (unset(spec.selector)) causes.push(required('spec.selector'));
  else validateSelector(t, spec.selector, 'spec.selector', causes);
  if (!unset(spec.selector)) selectorMatchesTemplate(spec.selector, tpl, 'spec.template', causes);
  if (spec.manualSelector === true) return;
  // The generated labels must be the job's own (validateGeneratedSelector).
  const labels = templateLabels(tpl) ?? {};
  const expect: [string, string][] = [
    [JOB_LABELS.legacyControllerUid, obj.metadata.uid ?? ''],
    [JOB_LABELS.legacyJobName, obj.metadata.name ?? ''],
    [JOB_LABELS.controllerUid, obj.metadata.uid ?? ''],
    [JOB_LABELS.jobName, obj.metadata.name ?? ''],
  ];
  for (const [k, v] of expect) {
    if (!Object.hasOwn(labels, k)) causes.push(required(`spec.template.metadata.labels[${k}]`, `must be '${v}'`));
    else if (labels[k] !== v) causes.push(invalid(`spec.template.metadata.labels[${k}]`, goStringMap(labels), `must be '${v}'`));
  }
}

/** robfig/cron's ParseStandard, as kube validates a schedule: 5 fields or a descriptor; the fields parsed by cron-parser. */
function cronScheduleError(schedule: string): string | undefined {
  let s = schedule.trim();
  const tz = /^(?:CRON_)?TZ=(\S*)\s*/.exec(s);
  if (tz) s = s.slice(tz[0].length);
  if (s.startsWith('@')) {
    if (/^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$/.test(s)) return undefined;
    if (s.startsWith('@every '))
      return /^@every\s+(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(s) ? undefined : `failed to parse duration ${s}: time: invalid duration "${s.slice(7).trim()}"`;
    return `unrecognized descriptor: ${s}`;
  }
  const fields = s.split(/\s+/).filter(Boolean);
  if (fields.length !== 5) return `expected exactly 5 fields, found ${fields.length}: [${fields.join(' ')}]`;
  // robfig knows ranges, steps, lists, names and ?; not cron-parser's L, W, # and H.
  const bad = fields.find((f) => !/^[0-9A-Za-z*?/,-]+$/.test(f) || /[LWH#]/.test(f.replace(/JUL|JUN|MAR|MAY|APR|AUG|NOV|DEC|SEP|OCT|FEB|JAN|MON|TUE|WED|THU|FRI|SAT|SUN/gi, '')));
  if (bad) return `failed to parse int from ${bad}: strconv.Atoi: parsing ${goQ(bad)}: invalid syntax`;
  try {
    CronExpressionParser.parse(fields.join(' '));
  } catch (err) {
    const msg = (err as Error).message;
    // robfig does not check that a day of month exists in the month (the job just never runs).
    if (/explicit day of month/.test(msg)) return undefined;
    return msg;
  }
  return undefined;
}

function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

function validateCronJob(t: ResourceType, obj: KObject, spec: O, old: KObject | undefined, pod: PodSpecStrategy, causes: Causes): void {
  const name = obj.metadata.name ?? '';
  if (!old && name.length > 52) causes.push(invalid('metadata.name', goQ(name), 'must be no more than 52 characters'));
  const oldSpec = old ? objAt((old as unknown as O).spec) : undefined;
  if (unset(spec.schedule) || spec.schedule === '') causes.push(required('spec.schedule'));
  else if (typeof spec.schedule !== 'string')
    causes.push({ reason: 'FieldValueTypeInvalid', message: `Invalid value: ${JSON.stringify(spec.schedule)}: must be a string`, field: 'spec.schedule' });
  else {
    const err = cronScheduleError(spec.schedule);
    if (err) causes.push(invalid('spec.schedule', goQ(spec.schedule), err));
    const allowTz = typeof oldSpec?.schedule === 'string' && oldSpec.schedule.includes('TZ');
    if (allowTz && spec.schedule.includes('TZ') && !unset(spec.timeZone))
      causes.push(invalid('spec.schedule', goQ(spec.schedule), 'cannot use both timeZone field and TZ or CRON_TZ in schedule'));
    else if (!allowTz && spec.schedule.includes('TZ'))
      causes.push(invalid('spec.schedule', goQ(spec.schedule), 'cannot use TZ or CRON_TZ in schedule, use timeZone field instead'));
  }
  nonNegative(spec.startingDeadlineSeconds, 'spec.startingDeadlineSeconds', causes);
  if (!unset(spec.timeZone) && (!oldSpec || oldSpec.timeZone !== spec.timeZone)) {
    const tz = spec.timeZone;
    if (typeof tz !== 'string' || tz === '') causes.push(invalid('spec.timeZone', goQ(tz), 'timeZone must be nil or non-empty string'));
    else if (tz.toLowerCase() === 'local') causes.push(invalid('spec.timeZone', goQ(tz), 'timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones'));
    else if (!validTimeZone(tz)) causes.push(invalid('spec.timeZone', goQ(tz), `unknown time zone ${tz}`));
  }
  const cp = spec.concurrencyPolicy ?? '';
  if (cp === '') causes.push(required('spec.concurrencyPolicy'));
  else if (cp !== 'Allow' && cp !== 'Forbid' && cp !== 'Replace') causes.push(notSupported('spec.concurrencyPolicy', cp, ['Allow', 'Forbid', 'Replace']));
  const jt = objAt(spec.jobTemplate);
  causes.push(...metaCauses(t, jt.metadata, 'spec.jobTemplate'));
  const jspec = objAt(jt.spec);
  validateJobSpecCommon(t, jspec, 'spec.jobTemplate.spec', pod, causes);
  if (!unset(jspec.selector)) causes.push(invalid('spec.jobTemplate.spec.selector', goLabelSelector(jspec.selector), '`selector` will be auto-generated'));
  if (jspec.manualSelector === true) causes.push(notSupported('spec.jobTemplate.spec.manualSelector', true, ['nil', 'false']));
  nonNegative(spec.successfulJobsHistoryLimit, 'spec.successfulJobsHistoryLimit', causes);
  nonNegative(spec.failedJobsHistoryLimit, 'spec.failedJobsHistoryLimit', causes);
}

function validateControllerRevision(o: O, old: O | undefined, causes: Causes): void {
  if (unset(o.data)) causes.push(required('data', 'data is mandatory'));
  nonNegative(o.revision, 'revision', causes);
  if (old && JSON.stringify(o.data ?? null) !== JSON.stringify(old.data ?? null)) causes.push(invalid('data', JSON.stringify(o.data ?? null), 'field is immutable'));
}

/** What an update may not change (ValidateImmutableField on selectors, a Job's template and more). */
function validateImmutable(t: ResourceType, spec: O, oldObj: KObject, causes: Causes): void {
  const old = objAt((oldObj as unknown as O).spec);
  if (!sameSelector(spec.selector, old.selector) && t.storageKey !== CRONJOBS) {
    causes.push(invalid('spec.selector', unset(spec.selector) ? '"null"' : goLabelSelector(spec.selector), 'field is immutable'));
  }
  if (t.storageKey !== JOBS) return;
  // Completions of an Indexed job may change with parallelism (elastic indexed jobs).
  const elastic = spec.completionMode === 'Indexed' && old.completionMode === 'Indexed' && spec.completions === spec.parallelism;
  if (!elastic && (spec.completions ?? null) !== (old.completions ?? null)) {
    causes.push(invalid('spec.completions', unset(spec.completions) ? '"null"' : String(spec.completions), 'field is immutable'));
  }
  for (const k of ['completionMode', 'podFailurePolicy', 'backoffLimitPerIndex', 'managedBy', 'successPolicy']) {
    if (JSON.stringify(spec[k] ?? null) !== JSON.stringify(old[k] ?? null)) {
      const v = spec[k];
      causes.push(invalid(`spec.${k}`, unset(v) ? '"null"' : typeof v === 'string' ? goQ(v) : JSON.stringify(v), 'field is immutable'));
    }
  }
  // A suspended job that never started may change its scheduling directives (KEP-2926).
  const mutable = old.suspend === true && unset(objAt((oldObj as unknown as O).status).startTime);
  const strip = (tpl: unknown): string => {
    const c = structuredClone(objAt(tpl));
    if (mutable) {
      const m = objAt(c.metadata);
      delete m.labels;
      delete m.annotations;
      const s = objAt(c.spec);
      for (const k of ['nodeSelector', 'tolerations', 'affinity', 'schedulingGates']) delete s[k];
    }
    return JSON.stringify(canonical(c));
  };
  if (strip(spec.template) !== strip(old.template)) causes.push(invalid('spec.template', JSON.stringify(spec.template ?? null), 'field is immutable'));
}

/** A JSON value with object keys sorted (order-independent comparison). */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (!isObj(v)) return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).sort()) if (v[k] !== undefined) out[k] = canonical(v[k]);
  return out;
}

function validateWorkload(t: ResourceType, obj: KObject, old: KObject | undefined, pod: PodSpecStrategy): Causes {
  const causes: Causes = [];
  const o = obj as unknown as O;
  if (t.storageKey === CONTROLLER_REVISIONS) {
    validateControllerRevision(o, old as unknown as O | undefined, causes);
    return causes;
  }
  const spec = objAt(o.spec);
  switch (t.storageKey) {
    case DEPLOYMENTS:
      validateDeployment(t, spec, pod, causes);
      break;
    case REPLICASETS:
      validateReplicaSet(t, spec, pod, causes);
      break;
    case DAEMONSETS:
      validateDaemonSet(t, spec, pod, causes);
      break;
    case JOBS:
      validateJob(t, obj, spec, pod, causes);
      break;
    case CRONJOBS:
      validateCronJob(t, obj, spec, old, pod, causes);
      break;
  }
  if (old) validateImmutable(t, spec, old, causes);
  return causes;
}

/** The strategy of the workload kinds, lending the pod templates the pods' own rules. */
export function createWorkloadStrategy(pod: PodSpecStrategy): WorkloadStrategy {
  return {
    prepareForCreate(t, obj) {
      if (!isWorkload(t)) return;
      const status = initialStatus(t.storageKey);
      if (status) (obj as unknown as O).status = status;
      // The selector first: SetDefaults_Job then gives a job without labels its template's, generated ones included.
      if (t.storageKey === JOBS) generateJobSelector(obj);
      applyDefaults(t, obj, pod);
    },
    prepareForUpdate(t, obj) {
      if (isWorkload(t)) applyDefaults(t, obj, pod);
    },
    validate(t, obj, old) {
      return isWorkload(t) ? validateWorkload(t, obj, old, pod) : [];
    },
    metadataBumpsGeneration(t, next, old) {
      if (!t.builtin || t.storageKey !== DEPLOYMENTS) return false;
      return JSON.stringify(canonical(next.metadata.annotations ?? {})) !== JSON.stringify(canonical(old.metadata.annotations ?? {}));
    },
    statusWriteKeepsAnnotations(t) {
      return t.builtin && t.storageKey === DEPLOYMENTS;
    },
  };
}

// ------------------------------------------------------------------ autoscaling/v1 Scale

/** The autoscaling/v1 Scale of a deployment or replicaset (kube's scaleFromDeployment/ReplicaSet). */
export function scaleOf(o: KObject): JsonObject {
  const spec = objAt((o as unknown as O).spec);
  const status = objAt((o as unknown as O).status);
  const replicas = typeof spec.replicas === 'number' ? spec.replicas : 0;
  const m = o.metadata;
  const selector = selectorString(spec.selector);
  const meta: O = { name: m.name ?? '' };
  if (m.namespace) meta.namespace = m.namespace;
  if (m.uid) meta.uid = m.uid;
  if (m.resourceVersion) meta.resourceVersion = m.resourceVersion;
  if (m.creationTimestamp) meta.creationTimestamp = m.creationTimestamp;
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: meta,
    // Go's omitempty: a replicas of 0 is not written.
    spec: replicas ? { replicas } : {},
    status: { replicas: typeof status.replicas === 'number' ? status.replicas : 0, ...(selector ? { selector } : {}) },
  };
}

/**
 * The parent object with a Scale written to it: `spec.replicas` from the scale (0 when it has
 * none, as Go decodes it) and the scale's resourceVersion as the update's precondition.
 * A body that is not an autoscaling/v1 Scale is a 400, negative replicas a 422.
 */
export function scaledObject(cur: KObject, body: unknown): KObject {
  if (!isObj(body)) throw errors.badRequest('the body of the request was in an unknown format - accepted media types include: application/json, application/yaml');
  if (body.kind !== undefined && body.kind !== 'Scale') {
    throw errors.badRequest(
      `the object provided is unrecognized (must be of type Scale): ${String(body.kind)} in version "${String(body.apiVersion ?? '')}" cannot be handled as a Scale`,
    );
  }
  if (body.apiVersion !== undefined && body.apiVersion !== 'autoscaling/v1') {
    throw errors.badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (autoscaling/v1)`);
  }
  const meta = objAt(body.metadata);
  const name = cur.metadata.name ?? '';
  if (meta.name !== undefined && meta.name !== '' && meta.name !== name)
    throw errors.badRequest(`the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`);
  const causes: Causes = [];
  const replicas = nonNegative(objAt(body.spec).replicas, 'spec.replicas', causes) ?? 0;
  if (causes.length) throw errors.invalid('Scale', 'autoscaling', name, causes);
  const next = structuredClone(cur) as KObject & { spec?: unknown };
  const spec = isObj(next.spec) ? next.spec : (next.spec = {});
  spec.replicas = replicas;
  if (typeof meta.resourceVersion === 'string' && meta.resourceVersion !== '') next.metadata.resourceVersion = meta.resourceVersion;
  return next;
}
