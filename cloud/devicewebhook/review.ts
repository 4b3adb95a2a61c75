/**
 * @module
 * One AdmissionReview (admission.k8s.io/v1) for KubeEdge's device API, answered: CREATE and
 * UPDATE of Devices and DeviceModels are validated with shared/devices (the same rules the local
 * control plane applies), everything else is allowed. Pure except for the model lookup, so the
 * HTTPS server around it stays thin.
 */
import { DEVICE_GROUP, DEVICE_MODEL_PLURAL, DEVICE_PLURAL, type DeviceModel, type DeviceProblem, validateDevice, validateDeviceModel } from '../../shared/devices/index.js';
import { errorMessage } from '../../shared/errors/index.js';
import type { ModelLookup } from './options.js';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

/** The Status of a denial, as kube-apiserver relays it (prefixed with "admission webhook … denied the request: "). */
export interface DenialStatus {
  status: 'Failure';
  code: 422;
  reason: 'Invalid';
  message: string;
  details: { name: string; group: string; kind: string; causes: { reason: 'FieldValueInvalid'; field?: string; message: string }[] };
}

export interface AdmissionReviewResponse {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: 'AdmissionReview';
  response: { uid: string; allowed: boolean; status?: DenialStatus; warnings?: string[] };
}

/** A review that cannot be answered: not JSON, not an AdmissionReview v1, no request uid, no object to check. */
export interface MalformedReview {
  malformed: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/** What a webhook may say about the object besides allowing it (kubectl prints these as "Warning: …"). */
const MAX_WARNING_CHARS = 512;

/**
 * Answers one parsed AdmissionReview. `models` failing (the API unreachable) is treated like a
 * missing model: the Device's shape is still checked and the answer carries a warning, because a
 * Device whose model does not exist yet is valid (apply order must not matter).
 */
export async function reviewDevices(review: unknown, models: ModelLookup): Promise<AdmissionReviewResponse | MalformedReview> {
  if (!isObj(review)) return { malformed: 'the body is not a JSON object (an AdmissionReview was expected)' };
  if (review.kind !== 'AdmissionReview') return { malformed: `kind is ${JSON.stringify(review.kind ?? null)}, not "AdmissionReview"` };
  if (review.apiVersion !== ADMISSION_API_VERSION) {
    return { malformed: `apiVersion ${JSON.stringify(review.apiVersion ?? null)} is not served: only ${ADMISSION_API_VERSION} (admissionReviewVersions: ["v1"])` };
  }
  const req = review.request;
  if (!isObj(req)) return { malformed: 'request is missing' };
  if (typeof req.uid !== 'string' || req.uid === '') return { malformed: 'request.uid is missing' };
  const uid = req.uid;
  const allow = (warnings: string[] = []): AdmissionReviewResponse => ({
    apiVersion: ADMISSION_API_VERSION,
    kind: 'AdmissionReview',
    response: { uid, allowed: true, ...(warnings.length ? { warnings } : {}) },
  });

  const target = targetOf(req);
  // Status writes and deletes have nothing to check; other resources are not ours (rules misconfigured).
  if (!target || (typeof req.subResource === 'string' && req.subResource !== '')) return allow();
  if (req.operation !== 'CREATE' && req.operation !== 'UPDATE') return allow();
  const obj = req.object;
  if (!isObj(obj)) return { malformed: `request.object is missing on ${String(req.operation)}` };
  if (req.operation === 'UPDATE' && isObj(req.oldObject) && sameSpec(obj, req.oldObject)) {
    // Metadata-only changes (labels, finalizers, deletion) of an object that became invalid
    // against a newer model must still go through.
    return allow();
  }
  const meta = isObj(obj.metadata) ? obj.metadata : {};
  const name = typeof meta.name === 'string' ? meta.name : typeof req.name === 'string' ? req.name : '';
  const namespace = typeof req.namespace === 'string' && req.namespace !== '' ? req.namespace : typeof meta.namespace === 'string' ? meta.namespace : 'default';
  const warnings: string[] = [];
  let problems: DeviceProblem[];
  if (target === 'DeviceModel') {
    problems = validateDeviceModel(obj);
  } else {
    const spec = isObj(obj.spec) ? obj.spec : {};
    const ref = isObj(spec.deviceModelRef) ? spec.deviceModelRef.name : undefined;
    let model: DeviceModel | undefined;
    if (typeof ref === 'string' && ref !== '') {
      try {
        model = await models(namespace, ref);
        if (!model) warnings.push(`DeviceModel ${namespace}/${ref} does not exist (yet): only the Device's shape was checked, not its desired values`);
      } catch (err) {
        warnings.push(cut(`DeviceModel ${namespace}/${ref} could not be read (${errorMessage(err)}): only the Device's shape was checked, not its desired values`));
      }
    }
    problems = validateDevice(obj, model);
  }
  if (problems.length === 0) return allow(warnings);
  const causes = problems.map((p) => ({ reason: 'FieldValueInvalid' as const, ...(p.field ? { field: p.field } : {}), message: p.message }));
  return {
    apiVersion: ADMISSION_API_VERSION,
    kind: 'AdmissionReview',
    response: {
      uid,
      allowed: false,
      status: {
        status: 'Failure',
        code: 422,
        reason: 'Invalid',
        message: `${target}.${DEVICE_GROUP} ${JSON.stringify(name)} is invalid: ${problems.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join(', ')}`,
        details: { name, group: DEVICE_GROUP, kind: target, causes },
      },
      ...(warnings.length ? { warnings } : {}),
    },
  };
}

function targetOf(req: Obj): 'Device' | 'DeviceModel' | undefined {
  const r = isObj(req.resource) ? req.resource : undefined;
  if (r && r.group === DEVICE_GROUP) {
    if (r.resource === DEVICE_PLURAL) return 'Device';
    if (r.resource === DEVICE_MODEL_PLURAL) return 'DeviceModel';
    return undefined;
  }
  const k = isObj(req.kind) ? req.kind : undefined;
  if (k && k.group === DEVICE_GROUP && (k.kind === 'Device' || k.kind === 'DeviceModel')) return k.kind;
  return undefined;
}

/** Everything but metadata and status is the same: what `generation` tracks. */
function sameSpec(a: Obj, b: Obj): boolean {
  const strip = (o: Obj) => Object.fromEntries(Object.entries(o).filter(([k]) => k !== 'metadata' && k !== 'status'));
  return deepEqual(strip(a), strip(b));
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((x, i) => deepEqual(x, (b as unknown[])[i]));
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && deepEqual((a as Obj)[k], (b as Obj)[k]));
}

function cut(s: string): string {
  return s.length > MAX_WARNING_CHARS ? `${s.slice(0, MAX_WARNING_CHARS)}...` : s;
}
