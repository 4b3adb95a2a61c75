/**
 * @module
 * REST semantics of the generic registry, as kube-apiserver's `genericregistry.Store`
 * and the per-type strategies implement them: create/update/patch/delete with
 * uid, generation, creationTimestamp, optimistic concurrency, status subresources,
 * graceful deletion and finalizers, pod binding, namespaces and CRDs.
 *
 * Handlers read the current state and call `store.put` without awaiting in between,
 * so read-check-write is atomic (single-threaded); they await durability after.
 */
import { randomUUID, randomInt } from 'node:crypto';
import type { Logger } from '../shared/log/index.js';
import { ApiError, errors, type StatusCause, type StatusObject } from './errors.js';
import { jsonPatch, mergePatch, strategicMergePatch } from './patch.js';
import type { Registry } from './registry.js';
import type { Entry, Store } from './store.js';
import type { Json, JsonObject, KObject, ResourceType } from './types.js';
import { jsonDepth, MAX_JSON_DEPTH, MAX_OBJECT_BYTES } from './limits.js';
import { admitDeviceObject } from './admission-devices.js';
import { configDataDecodeError, newSchemaBudget, validateConfigMap, validateCrd, validateMeta, validateSchema, validateSecret } from './validation.js';
import { createWorkloadStrategy } from './workloads-api.js';

export interface WriteOptions {
  dryRun?: boolean;
  fieldManager?: string;
  /** fieldValidation=Strict: unknown fields of custom resources are an error instead of pruned. */
  strict?: boolean;
}

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  preconditions?: { uid?: string; resourceVersion?: string };
  propagationPolicy?: string;
  dryRun?: boolean;
}

export type PatchType = 'json' | 'merge' | 'strategic' | 'apply';

export interface WriteResult {
  code: number;
  obj: KObject;
}

const NAMESPACES = '/namespaces';
const PODS = '/pods';
const SECRETS = '/secrets';
const CONFIGMAPS = '/configmaps';
/** Top-level fields that are Go structs (JSON objects) in the built-in kinds that have them. */
const STRUCT_FIELDS = new Map<string, string[]>([
  ['/pods', ['spec', 'status']],
  ['/services', ['spec', 'status']],
  ['/nodes', ['spec', 'status']],
  ['/namespaces', ['spec', 'status']],
  ['coordination.k8s.io/leases', ['spec']],
  ['apps/deployments', ['spec', 'status']],
  ['apps/replicasets', ['spec', 'status']],
  ['apps/daemonsets', ['spec', 'status']],
  ['batch/jobs', ['spec', 'status']],
  ['batch/cronjobs', ['spec', 'status']],
  ['apiextensions.k8s.io/customresourcedefinitions', ['spec', 'status']],
]);
const CRDS = 'apiextensions.k8s.io/customresourcedefinitions';
/** Types whose PUT creates a missing object (AllowCreateOnUpdate in their k8s strategy). */
const CREATE_ON_UPDATE = new Set(['/events', '/endpoints', 'coordination.k8s.io/leases']);
/** Defaults, validation and immutable fields of the workload kinds; their pod templates follow the pods' rules. */
const WORKLOADS = createWorkloadStrategy({ defaults: defaultPodSpec, validate: validatePod });
/** Namespaces that exist from the start, as in any cluster. */
export const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

const isObj = (v: unknown): v is JsonObject => v !== null && typeof v === 'object' && !Array.isArray(v);

function clone(e: Entry): KObject {
  return JSON.parse(e.json) as KObject;
}

function now(): string {
  // k8s timestamps are RFC 3339 with second precision.
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const GEN_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';
function generateSuffix(): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += GEN_ALPHABET[randomInt(GEN_ALPHABET.length)];
  return s;
}

/** Object minus metadata and status: what `generation` tracks. */
function specPart(o: KObject): Record<string, unknown> {
  const { metadata: _m, status: _s, ...rest } = o as KObject & { status?: unknown };
  void _m;
  void _s;
  return rest;
}

export function apiVersionOf(t: ResourceType): string {
  return t.group ? `${t.group}/${t.version}` : t.version;
}

/** Built-in admission plugins' settings (kube-apiserver flags). */
export interface AdmissionOptions {
  /** DefaultTolerationSeconds: tolerationSeconds of the not-ready:NoExecute toleration it adds. Default 300. */
  defaultNotReadyTolerationSeconds: number;
  /** DefaultTolerationSeconds: tolerationSeconds of the unreachable:NoExecute toleration it adds. Default 300. */
  defaultUnreachableTolerationSeconds: number;
}

export class Rest {
  constructor(
    readonly store: Store,
    readonly registry: Registry,
    private readonly log: Logger,
    private readonly admission: AdmissionOptions = { defaultNotReadyTolerationSeconds: 300, defaultUnreachableTolerationSeconds: 300 },
  ) {}

  /** Registers stored CRDs and creates the system namespaces if absent. */
  async bootstrap(): Promise<void> {
    for (const e of this.store.list(CRDS)) this.registry.registerCrd(e.obj);
    const nsType = this.registry.lookup('', 'v1', 'namespaces')!;
    for (const ns of SYSTEM_NAMESPACES) {
      if (!this.store.get(NAMESPACES, '', ns)) await this.create(nsType, '', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }, {});
    }
  }

  /** Returns the object as served at `t`'s version (custom resources: apiVersion rewritten, no conversion). */
  view(t: ResourceType, e: Entry): string {
    if (t.builtin) return e.json;
    const av = apiVersionOf(t);
    if (e.obj.apiVersion === av) return e.json;
    return JSON.stringify({ ...e.obj, apiVersion: av });
  }

  viewObj(t: ResourceType, o: KObject): KObject {
    if (t.builtin) return o;
    return { ...o, apiVersion: apiVersionOf(t) };
  }

  get(t: ResourceType, ns: string, name: string): Entry {
    const e = this.store.get(t.storageKey, ns, name);
    if (!e) throw errors.notFound(t, name);
    return e;
  }

  // ---------------------------------------------------------------- create

  /**
   * Checks a body (or a patch result, `fromPatch`) against the URL's type and fills in
   * apiVersion/kind/namespace. Data maps of the wrong type are what kube-apiserver's
   * decoder refuses: a 400 for a body, a 422 on the `patch` field for a patch result.
   */
  private checkBody(t: ResourceType, body: unknown, ns: string, fromPatch = false): KObject {
    if (!isObj(body)) throw errors.badRequest(`the body of the request was in an unknown format - accepted media types include: application/json, application/yaml`);
    const kind = body.kind;
    const av = body.apiVersion;
    if (kind !== undefined && kind !== t.kind) {
      throw errors.badRequest(`the object provided is unrecognized (must be of type ${t.kind}): ${String(kind)} in version "${String(av ?? '')}" cannot be handled as a ${t.kind}`);
    }
    if (av !== undefined && av !== apiVersionOf(t)) {
      // Other served versions of the same custom resource are accepted (conversion None).
      const ok = !t.builtin && typeof av === 'string' && this.registry.lookup(t.group, av.split('/')[1] ?? '', t.resource) !== undefined;
      if (!ok) throw errors.badRequest(`the API version in the data (${String(av)}) does not match the expected API version (${apiVersionOf(t)})`);
    }
    if (body.metadata !== undefined && !isObj(body.metadata)) throw errors.badRequest('metadata must be an object');
    const obj = body as unknown as KObject;
    obj.metadata ??= {};
    obj.apiVersion = apiVersionOf(t);
    obj.kind = t.kind;
    if (t.namespaced) {
      if (obj.metadata.namespace !== undefined && obj.metadata.namespace !== '' && obj.metadata.namespace !== ns) {
        throw errors.badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      obj.metadata.namespace = ns;
    } else {
      delete obj.metadata.namespace;
    }
    this.checkDataTypes(t, obj, fromPatch);
    if (t.storageKey === SECRETS) mergeStringData(obj);
    return obj;
  }

  /** What the typed decoder of a built-in kind refuses, as a 400 (body) or 422 (patch result). */
  private decodeFailure(t: ResourceType, obj: KObject, msg: string, fromPatch: boolean): ApiError {
    if (!fromPatch) return errors.badRequest(`${t.kind} in version "${t.version}" cannot be handled as a ${t.kind}: ${msg}`);
    const text = JSON.stringify(obj);
    return errors.invalid(t.kind, t.group, obj.metadata.name ?? '', [
      { reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}...` : text)}: ${msg}`, field: 'patch' },
    ]);
  }

  private checkDataTypes(t: ResourceType, obj: KObject, fromPatch: boolean): void {
    const structs = t.builtin ? STRUCT_FIELDS.get(t.storageKey) : undefined;
    if (structs) {
      // `spec`/`status` of these kinds are Go structs: a number or a list cannot be decoded.
      const o = obj as KObject & Record<string, unknown>;
      for (const f of structs) {
        const v = o[f];
        if (v === null) delete o[f];
        else if (v !== undefined && (typeof v !== 'object' || Array.isArray(v))) {
          throw this.decodeFailure(
            t,
            obj,
            `json: cannot unmarshal ${Array.isArray(v) ? 'array' : typeof v === 'boolean' ? 'bool' : typeof v} into Go struct field ${t.kind}.${f} of type ${t.version}.${t.kind}${f === 'spec' ? 'Spec' : 'Status'}`,
            fromPatch,
          );
        }
      }
    }
    if (t.storageKey !== CONFIGMAPS && t.storageKey !== SECRETS) return;
    const msg = configDataDecodeError(t.kind as 'ConfigMap' | 'Secret', obj);
    if (msg !== undefined) throw this.decodeFailure(t, obj, msg, fromPatch);
  }

  /** `old`: the stored object, on an update. */
  private validate(t: ResourceType, obj: KObject, opts: WriteOptions, old?: KObject): void {
    const causes: StatusCause[] = validateMeta(t, obj);
    const pruned: string[] = [];
    if (!t.builtin && t.schema) validateSchema(obj as unknown as Json, t.schema, '', causes, true, pruned, newSchemaBudget());
    if (pruned.length && opts.strict) throw errors.badRequest(`strict decoding error: ${pruned.map((p) => `unknown field "${p}"`).join(', ')}`);
    if (t.storageKey === CRDS) causes.push(...validateCrd(obj));
    if (t.storageKey === CONFIGMAPS) causes.push(...validateConfigMap(obj));
    if (t.storageKey === SECRETS) causes.push(...validateSecret(obj));
    if (t.storageKey === PODS) causes.push(...validatePod(obj));
    causes.push(...WORKLOADS.validate(t, obj, old));
    causes.push(...admitDeviceObject(t, obj, old, this.store));
    if (causes.length) throw errors.invalid(t.kind, t.group, obj.metadata.name ?? '', causes);
  }

  private checkNamespace(t: ResourceType, ns: string): void {
    if (!t.namespaced) return;
    const nse = this.store.get(NAMESPACES, '', ns);
    if (!nse) throw errors.notFound({ group: '', resource: 'namespaces' }, ns);
    if (nse.obj.metadata.deletionTimestamp) {
      throw errors.forbidden(
        `${t.resource}${t.group ? `.${t.group}` : ''} "${'{name}'}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`,
      );
    }
  }

  async create(t: ResourceType, ns: string, body: unknown, opts: WriteOptions): Promise<WriteResult> {
    const obj = this.checkBody(t, body, ns);
    const m = obj.metadata;
    if (!m.name && m.generateName) m.name = `${m.generateName}${generateSuffix()}`;
    if (m.name) {
      if (this.store.get(t.storageKey, ns, m.name)) throw errors.alreadyExists(t, m.name);
    }
    this.checkNamespace(t, ns);
    m.uid = randomUUID();
    m.creationTimestamp = now();
    m.generation = 1;
    delete m.resourceVersion;
    delete m.deletionTimestamp;
    delete m.deletionGracePeriodSeconds;
    if (t.subresources.includes('status') && (!t.builtin || t.storageKey === '/namespaces')) delete (obj as { status?: unknown }).status;
    this.defaultsOnCreate(t, obj);
    this.validate(t, obj, opts);
    if (opts.fieldManager && !m.managedFields) {
      m.managedFields = [managedEntry(opts.fieldManager, 'Update', obj)];
    }
    if (opts.dryRun) return { code: 201, obj };
    if (m.name && this.store.get(t.storageKey, ns, m.name)) throw errors.alreadyExists(t, m.name);
    const { entry, durable } = this.store.put(t.storageKey, obj);
    await durable;
    this.afterWrite(t, entry.obj);
    return { code: 201, obj: entry.obj };
  }

  private defaultsOnCreate(t: ResourceType, obj: KObject): void {
    const o = obj as KObject & { spec?: JsonObject; status?: JsonObject; type?: string; data?: unknown };
    WORKLOADS.prepareForCreate(t, obj);
    switch (t.storageKey) {
      case '/namespaces':
        o.spec = { finalizers: ['kubernetes'], ...(o.spec ?? {}) };
        o.status = { phase: 'Active' };
        break;
      case PODS:
        defaultPod(o);
        admitDefaultTolerationSeconds(o, this.admission);
        break;
      case '/services': {
        // A spec that is not an object is left to validation (no defaults on a number).
        if (o.spec !== undefined && !isObj(o.spec)) break;
        const spec = (o.spec ??= {});
        spec.type ??= 'ClusterIP';
        spec.sessionAffinity ??= 'None';
        if (Array.isArray(spec.ports))
          for (const p of spec.ports)
            if (isObj(p)) {
              p.protocol ??= 'TCP';
              p.targetPort ??= p.port ?? null;
            }
        o.status ??= { loadBalancer: {} };
        break;
      }
      case '/secrets':
        o.type ??= 'Opaque';
        break;
      case CRDS: {
        const spec = isObj(o.spec) ? o.spec : {};
        o.status = {
          conditions: [
            { type: 'NamesAccepted', status: 'True', reason: 'NoConflicts', message: 'no conflicts found', lastTransitionTime: now() },
            { type: 'Established', status: 'True', reason: 'InitialNamesAccepted', message: 'the initial names have been accepted', lastTransitionTime: now() },
          ],
          acceptedNames: (spec.names ?? {}) as Json,
          storedVersions: (Array.isArray(spec.versions) ? spec.versions : []).filter((v) => isObj(v) && v.storage === true).map((v) => (v as JsonObject).name ?? null),
        };
        break;
      }
    }
  }

  /** Side effects of a durable write on the registry. */
  private afterWrite(t: ResourceType, obj: KObject): void {
    if (t.storageKey === CRDS) this.registry.registerCrd(obj);
  }

  // ---------------------------------------------------------------- update

  /**
   * PUT semantics. `sub` is '' or 'status'. The body's resourceVersion, if set, must
   * match (409 otherwise); an absent one is an unconditional update, as in k8s.
   */
  async update(t: ResourceType, ns: string, name: string, body: unknown, sub: string, opts: WriteOptions): Promise<WriteResult> {
    const obj = this.checkBody(t, body, ns);
    if (obj.metadata.name !== undefined && obj.metadata.name !== name) {
      throw errors.badRequest(`the name of the object (${String(obj.metadata.name)}) does not match the name on the URL (${name})`);
    }
    obj.metadata.name = name;
    const cur = this.store.get(t.storageKey, ns, name);
    if (!cur) {
      if (sub === '' && CREATE_ON_UPDATE.has(t.storageKey)) return this.create(t, ns, obj, opts);
      throw errors.notFound(t, name);
    }
    return this.replace(t, cur, obj, sub, opts);
  }

  /** Shared tail of PUT and PATCH: merges system fields, validates, writes. Synchronous up to the store write. */
  private async replace(t: ResourceType, cur: Entry, obj: KObject, sub: string, opts: WriteOptions): Promise<WriteResult> {
    const old = cur.obj;
    const rv = obj.metadata.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== old.metadata.resourceVersion) throw errors.conflict(t, old.metadata.name!);
    if (obj.metadata.uid !== undefined && obj.metadata.uid !== '' && obj.metadata.uid !== old.metadata.uid) {
      throw errors.conflict(t, old.metadata.name!, `Precondition failed: UID in precondition: ${String(obj.metadata.uid)}, UID in object meta: ${String(old.metadata.uid)}`);
    }
    let next: KObject;
    const hasStatus = t.subresources.includes('status');
    if (sub === 'status') {
      // Status writes change only status (and not spec or metadata), as in k8s.
      next = JSON.parse(cur.json) as KObject;
      const st = (obj as { status?: unknown }).status;
      if (st === undefined) delete (next as { status?: unknown }).status;
      else (next as { status?: unknown }).status = st;
      if (WORKLOADS.statusWriteKeepsAnnotations(t)) {
        if (obj.metadata.annotations === undefined) delete next.metadata.annotations;
        else next.metadata.annotations = obj.metadata.annotations;
      }
    } else {
      next = obj;
      WORKLOADS.prepareForUpdate(t, next);
      if (hasStatus) {
        const st = (old as { status?: unknown }).status;
        if (st === undefined) delete (next as { status?: unknown }).status;
        else (next as { status?: unknown }).status = structuredClone(st);
      }
      const m = next.metadata;
      m.generation = old.metadata.generation ?? 1;
      if (!deepEqual(specPart(next), specPart(old)) || WORKLOADS.metadataBumpsGeneration(t, next, old)) m.generation += 1;
      if (t.storageKey === PODS) {
        admitDefaultTolerationSeconds(next, this.admission);
        checkPodUpdate(t, old, next);
      }
      if (old.metadata.deletionTimestamp) {
        const added = (m.finalizers ?? []).filter((f) => !(old.metadata.finalizers ?? []).includes(f));
        if (added.length)
          throw errors.invalid(t.kind, t.group, old.metadata.name!, [
            { reason: 'FieldValueForbidden', message: 'Forbidden: no new finalizers can be added if the object is being deleted', field: 'metadata.finalizers' },
          ]);
      }
    }
    // System-owned metadata is immutable.
    const m = next.metadata;
    m.name = old.metadata.name;
    if (old.metadata.namespace !== undefined) m.namespace = old.metadata.namespace;
    m.uid = old.metadata.uid;
    m.creationTimestamp = old.metadata.creationTimestamp;
    if (old.metadata.deletionTimestamp) {
      m.deletionTimestamp = old.metadata.deletionTimestamp;
      if (old.metadata.deletionGracePeriodSeconds !== undefined) m.deletionGracePeriodSeconds = old.metadata.deletionGracePeriodSeconds;
    } else {
      delete m.deletionTimestamp;
      delete m.deletionGracePeriodSeconds;
    }
    if (m.managedFields === undefined && old.metadata.managedFields) m.managedFields = old.metadata.managedFields;
    m.resourceVersion = old.metadata.resourceVersion;
    next.apiVersion = old.apiVersion ?? apiVersionOf(t);
    next.kind = t.kind;
    this.validate(t, next, opts, old);
    if (t.storageKey === NAMESPACES) (next as { spec?: unknown }).spec = (old as { spec?: unknown }).spec;
    // No-op writes do not bump resourceVersion (k8s skips the etcd write).
    if (deepEqual(next, old)) return { code: 200, obj: old };
    if (opts.dryRun) return { code: 200, obj: next };
    // Removing the last finalizer of an object being deleted with no grace left deletes it.
    if (m.deletionTimestamp && (m.finalizers ?? []).length === 0 && (m.deletionGracePeriodSeconds ?? 0) === 0) {
      const r = this.store.delete(t.storageKey, m.namespace ?? '', m.name!)!;
      await r.durable;
      this.afterDelete(t, r.entry.obj);
      return { code: 200, obj: r.entry.obj };
    }
    const { entry, durable } = this.store.put(t.storageKey, next);
    await durable;
    this.afterWrite(t, entry.obj);
    return { code: 200, obj: entry.obj };
  }

  // ---------------------------------------------------------------- patch

  async patch(t: ResourceType, ns: string, name: string, type: PatchType, body: unknown, sub: string, opts: WriteOptions & { force?: boolean }): Promise<WriteResult> {
    const cur = this.store.get(t.storageKey, ns, name);
    if (type === 'apply') {
      if (!opts.fieldManager) throw errors.badRequest('PATCH, application/apply-patch+yaml requires fieldManager to be set');
      if (!isObj(body)) throw errors.badRequest('apply patch must be an object');
      const applied = structuredClone(body) as JsonObject;
      const meta = isObj(applied.metadata) ? applied.metadata : {};
      if (meta.name !== undefined && meta.name !== name) throw errors.badRequest(`the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`);
      if (!cur) {
        if (sub !== '') throw errors.notFound(t, name);
        const created = await this.create(
          t,
          ns,
          { ...applied, metadata: { ...meta, name, managedFields: [managedEntry(opts.fieldManager, 'Apply', applied as unknown as KObject)] } },
          opts,
        );
        return created;
      }
      const base = JSON.parse(cur.json) as JsonObject;
      const merged = (t.builtin ? strategicMergePatch(t.kind, base, applied) : mergePatch(base, applied)) as unknown as KObject;
      merged.metadata.managedFields = upsertManaged(cur.obj.metadata.managedFields, managedEntry(opts.fieldManager, 'Apply', applied as unknown as KObject));
      // Apply is not a compare-and-swap unless the applied object carries a resourceVersion.
      if (!(isObj(applied.metadata) && applied.metadata.resourceVersion)) merged.metadata.resourceVersion = cur.obj.metadata.resourceVersion;
      checkPatchResult(merged as unknown as Json);
      this.checkDataTypes(t, merged, true);
      if (t.storageKey === SECRETS) mergeStringData(merged);
      return this.replace(t, cur, merged, sub, opts);
    }
    if (!cur) throw errors.notFound(t, name);
    const base = JSON.parse(cur.json) as Json;
    let patched: Json;
    switch (type) {
      case 'json':
        patched = jsonPatch(base, body as Json);
        break;
      case 'merge':
        if (!isObj(body)) throw errors.badRequest('merge patch must be a JSON object');
        patched = mergePatch(base, body);
        break;
      case 'strategic':
        if (!t.builtin)
          throw errors.unsupportedMediaType(
            'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml',
          );
        if (!isObj(body)) throw errors.badRequest('strategic merge patch must be a JSON object');
        patched = strategicMergePatch(t.kind, base, body);
        break;
    }
    checkPatchResult(patched);
    if (!isObj(patched) || !isObj(patched.metadata)) throw errors.badRequest('patch produced an object without metadata');
    const obj = patched as unknown as KObject;
    if (obj.kind !== t.kind || (obj.apiVersion !== cur.obj.apiVersion && obj.apiVersion !== apiVersionOf(t))) {
      throw errors.badRequest('a patch may not change apiVersion or kind');
    }
    obj.apiVersion = apiVersionOf(t);
    if (obj.metadata.name !== name) throw errors.badRequest('a patch may not change the name');
    return this.replace(t, cur, this.checkBody(t, obj, ns, true), sub, opts);
  }

  // ---------------------------------------------------------------- delete

  async delete(t: ResourceType, ns: string, name: string, opts: DeleteOptions): Promise<WriteResult> {
    const cur = this.get(t, ns, name);
    const o = cur.obj;
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== o.metadata.uid) {
      throw errors.conflict(t, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${String(o.metadata.uid)}`);
    }
    if (pre?.resourceVersion && pre.resourceVersion !== o.metadata.resourceVersion) {
      throw errors.conflict(
        t,
        name,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${String(o.metadata.resourceVersion)}`,
      );
    }
    if (opts.gracePeriodSeconds !== undefined && (!Number.isInteger(opts.gracePeriodSeconds) || opts.gracePeriodSeconds < 0)) {
      throw errors.invalid('DeleteOptions', '', '', [{ reason: 'FieldValueInvalid', message: 'Invalid value: must be >= 0', field: 'gracePeriodSeconds' }]);
    }
    let grace = 0;
    if (t.storageKey === PODS) grace = podGrace(o, opts.gracePeriodSeconds);
    const finalizers = o.metadata.finalizers ?? [];
    if (t.storageKey === NAMESPACES) return this.deleteNamespace(t, cur, opts);
    if (grace > 0 || finalizers.length > 0) {
      // Graceful: mark and keep. A bound pod stays until its node confirms (grace 0).
      const prevGrace = o.metadata.deletionGracePeriodSeconds;
      if (o.metadata.deletionTimestamp && prevGrace !== undefined && prevGrace <= grace) return { code: 200, obj: o };
      const next = clone(cur);
      const when = new Date(Date.now() + grace * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      if (!o.metadata.deletionTimestamp || (prevGrace !== undefined && grace < prevGrace)) next.metadata.deletionTimestamp = when;
      next.metadata.deletionGracePeriodSeconds = grace;
      if (opts.dryRun) return { code: 200, obj: next };
      const { entry, durable } = this.store.put(t.storageKey, next);
      await durable;
      return { code: 200, obj: entry.obj };
    }
    if (opts.dryRun) return { code: 200, obj: o };
    const r = this.store.delete(t.storageKey, ns, name)!;
    await r.durable;
    this.afterDelete(t, r.entry.obj);
    return { code: 200, obj: r.entry.obj };
  }

  private async deleteNamespace(t: ResourceType, cur: Entry, opts: DeleteOptions): Promise<WriteResult> {
    const name = cur.obj.metadata.name!;
    if (SYSTEM_NAMESPACES.includes(name)) throw errors.forbidden(`namespaces "${name}" is forbidden: this namespace may not be deleted`);
    if (opts.dryRun) return { code: 200, obj: cur.obj };
    if (cur.obj.metadata.deletionTimestamp) return { code: 200, obj: cur.obj };
    const next = clone(cur);
    next.metadata.deletionTimestamp = now();
    next.metadata.deletionGracePeriodSeconds = 0;
    (next as { status?: unknown }).status = { phase: 'Terminating' };
    const { entry, durable } = this.store.put(t.storageKey, next);
    await durable;
    // The namespace controller's work, done inline: remove the content, then the namespace.
    setImmediate(() => void this.finishNamespace(name).catch((err: unknown) => this.log.error('namespace cleanup failed', { err, namespace: name })));
    return { code: 200, obj: entry.obj };
  }

  private async finishNamespace(name: string): Promise<void> {
    for (const t of this.allTypes().filter((x) => x.namespaced)) {
      for (const e of this.store.list(t.storageKey, name)) {
        const r = this.store.delete(t.storageKey, name, e.obj.metadata.name!);
        if (r) await r.durable;
      }
    }
    const r = this.store.delete(NAMESPACES, '', name);
    if (r) await r.durable;
  }

  /** One served type per stored resource (any version). */
  allTypes(): ResourceType[] {
    const out = new Map<string, ResourceType>();
    for (const t of this.registry.resources('', 'v1')) out.set(t.storageKey, t);
    for (const [g, vs] of this.registry.groups()) for (const v of vs) for (const t of this.registry.resources(g, v)) if (!out.has(t.storageKey)) out.set(t.storageKey, t);
    return [...out.values()];
  }

  /**
   * Side effects of a durable delete. Custom resources go with their definition (k8s: the
   * customresourcecleanup finalizer); those deletes are not awaited by the request, so a
   * failing one is logged here (and its WAL append rolled back by the store), never left
   * as an unhandled rejection.
   */
  private afterDelete(t: ResourceType, obj: KObject): void {
    if (t.storageKey !== CRDS) return;
    const ct = this.allTypes().find((x) => !x.builtin && `${x.resource}.${x.group}` === obj.metadata.name);
    this.registry.unregisterCrd(obj.metadata.name!);
    if (!ct) return;
    for (const e of this.store.list(ct.storageKey)) {
      const ns = e.obj.metadata.namespace ?? '';
      const name = e.obj.metadata.name!;
      try {
        this.store
          .delete(ct.storageKey, ns, name)
          ?.durable.catch((err: unknown) => this.log.error('custom resource cleanup failed', { err, crd: obj.metadata.name, namespace: ns, name }));
      } catch (err) {
        this.log.error('custom resource cleanup failed', { err, crd: obj.metadata.name, namespace: ns, name });
        return;
      }
    }
  }

  async deleteCollection(t: ResourceType, ns: string | undefined, match: (o: KObject) => boolean, opts: DeleteOptions): Promise<KObject[]> {
    const out: KObject[] = [];
    for (const e of this.store.list(t.storageKey, ns)) {
      if (!match(e.obj)) continue;
      try {
        out.push((await this.delete(t, e.obj.metadata.namespace ?? '', e.obj.metadata.name!, opts)).obj);
      } catch (err) {
        if (!(err instanceof ApiError && err.httpCode === 404)) throw err;
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- pods/binding

  async bind(ns: string, name: string, body: unknown): Promise<StatusObject> {
    const t = this.registry.lookup('', 'v1', 'pods')!;
    if (!isObj(body) || !isObj(body.target) || typeof body.target.name !== 'string' || !body.target.name) {
      throw errors.invalid('Binding', '', name, [{ reason: 'FieldValueRequired', message: 'Required value', field: 'target.name' }]);
    }
    const nodeName = body.target.name;
    const cur = this.get(t, ns, name);
    const pod = cur.obj as KObject & { spec?: JsonObject; status?: JsonObject };
    if (pod.metadata.deletionTimestamp) throw errors.conflict(t, name, 'pod is being deleted, cannot be assigned to a host');
    if (pod.spec?.nodeName) throw errors.conflict(t, name, `pod ${name} is already assigned to node "${String(pod.spec.nodeName)}"`);
    const next = clone(cur) as KObject & { spec: JsonObject; status: JsonObject };
    next.spec.nodeName = nodeName;
    const conds = (Array.isArray(next.status.conditions) ? next.status.conditions : []).filter((c) => !(isObj(c) && c.type === 'PodScheduled'));
    conds.push({ type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: now() });
    next.status.conditions = conds;
    const { durable } = this.store.put(t.storageKey, next);
    await durable;
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 };
  }
}

/** Structural equality ignoring key order (clients serialize fields in their own order). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => deepEqual(x, bb[i]));
  }
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function podGrace(o: KObject, requested: number | undefined): number {
  const p = o as KObject & { spec?: JsonObject; status?: JsonObject };
  // Unscheduled or finished pods have nothing to stop: deleted at once (as in k8s).
  if (!p.spec?.nodeName) return 0;
  const phase = p.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return 0;
  if (requested !== undefined) return requested;
  if (o.metadata.deletionGracePeriodSeconds !== undefined) return o.metadata.deletionGracePeriodSeconds;
  const tgp = p.spec.terminationGracePeriodSeconds;
  return typeof tgp === 'number' ? tgp : 30;
}

/**
 * Secret `stringData` is write-only: its entries are merged into `data` (base64 of the
 * UTF-8 text), overwriting existing keys, and it is never stored — as k8s's v1
 * conversion does.
 */
function mergeStringData(obj: KObject): void {
  const o = obj as KObject & { data?: unknown; stringData?: unknown };
  if (o.stringData === undefined || o.stringData === null) {
    delete o.stringData;
    return;
  }
  if (!isObj(o.stringData) || !Object.values(o.stringData).every((v) => typeof v === 'string')) throw errors.badRequest('stringData must be a map of strings');
  if (o.data !== undefined && o.data !== null && !isObj(o.data)) throw errors.badRequest('data must be a map of base64 strings');
  const data: JsonObject = isObj(o.data) ? o.data : {};
  for (const [k, v] of Object.entries(o.stringData)) data[k] = Buffer.from(v as string, 'utf8').toString('base64');
  o.data = data;
  delete o.stringData;
}

function defaultPod(o: KObject & { spec?: JsonObject; status?: JsonObject }): void {
  if (o.spec !== undefined && !isObj(o.spec)) return; // refused by validatePod
  const spec = (o.spec ??= {});
  const hasResources = defaultPodSpec(spec);
  spec.enableServiceLinks ??= true;
  spec.priority ??= 0;
  spec.preemptionPolicy ??= 'PreemptLowerPriority';
  o.status = { phase: 'Pending', qosClass: hasResources ? 'Burstable' : 'BestEffort' };
}

/**
 * SetDefaults_PodSpec and its containers' (pods and pod templates; a pod's own extras are in
 * defaultPod). Returns whether a container declares resources.
 */
function defaultPodSpec(spec: JsonObject): boolean {
  spec.restartPolicy ??= 'Always';
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= 'ClusterFirst';
  spec.schedulerName ??= 'default-scheduler';
  spec.securityContext ??= {};
  let hasResources = false;
  for (const list of [spec.containers, spec.initContainers]) {
    if (!Array.isArray(list)) continue;
    for (const c of list) {
      if (!isObj(c)) continue;
      const image = typeof c.image === 'string' ? c.image : '';
      const tagged = /:[^/]+$/.test(image) && !image.endsWith(':latest');
      c.imagePullPolicy ??= tagged || image.includes('@') ? 'IfNotPresent' : 'Always';
      c.terminationMessagePath ??= '/dev/termination-log';
      c.terminationMessagePolicy ??= 'File';
      c.resources ??= {};
      if (isObj(c.resources) && Object.keys(c.resources).length) hasResources = true;
      if (Array.isArray(c.ports)) for (const p of c.ports) if (isObj(p)) p.protocol ??= 'TCP';
    }
  }
  return hasResources;
}

/**
 * kube-apiserver's DefaultTolerationSeconds admission (create and update of pods, not their
 * subresources): a pod without a toleration for node.kubernetes.io/not-ready:NoExecute (or
 * unreachable) — one with that key or no key, and effect NoExecute or none — gets
 * `{key, operator: Exists, effect: NoExecute, tolerationSeconds}` appended.
 */
function admitDefaultTolerationSeconds(o: KObject, a: AdmissionOptions): void {
  const spec = (o as { spec?: unknown }).spec;
  if (!isObj(spec)) return; // refused by validation
  if (spec.tolerations !== undefined && spec.tolerations !== null && !Array.isArray(spec.tolerations)) return;
  const tolerations = (spec.tolerations ?? []) as Json[];
  const covers = (key: string) => tolerations.some((t) => isObj(t) && (t.key === key || !t.key) && (t.effect === 'NoExecute' || !t.effect));
  const add: JsonObject[] = [];
  if (!covers('node.kubernetes.io/not-ready'))
    add.push({ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: a.defaultNotReadyTolerationSeconds });
  if (!covers('node.kubernetes.io/unreachable'))
    add.push({ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: a.defaultUnreachableTolerationSeconds });
  if (add.length) spec.tolerations = [...tolerations, ...add];
}

/** Kubernetes' ValidateTolerations (the operator, effect, key/value and tolerationSeconds rules). */
function validateTolerations(list: unknown, causes: StatusCause[]): void {
  if (list === undefined || list === null) return;
  if (!Array.isArray(list)) {
    causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be a list', field: 'spec.tolerations' });
    return;
  }
  list.forEach((t, i) => {
    const f = `spec.tolerations[${i}]`;
    if (!isObj(t)) {
      causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be an object', field: f });
      return;
    }
    const op = t.operator ?? '';
    if (op !== '' && op !== 'Equal' && op !== 'Exists') {
      causes.push({ reason: 'FieldValueNotSupported', message: `Unsupported value: ${JSON.stringify(op)}: supported values: "Equal", "Exists"`, field: `${f}.operator` });
    }
    if (!t.key && op !== 'Exists') {
      causes.push({
        reason: 'FieldValueInvalid',
        message: `Invalid value: ${JSON.stringify(op)}: operator must be Exists when \`key\` is empty, which means "match all values and all keys"`,
        field: `${f}.operator`,
      });
    }
    if (op === 'Exists' && t.value) {
      causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(t.value)}: value must be empty when \`operator\` is 'Exists'`, field: `${f}.value` });
    }
    const effect = t.effect ?? '';
    if (effect !== '' && effect !== 'NoSchedule' && effect !== 'PreferNoSchedule' && effect !== 'NoExecute') {
      causes.push({
        reason: 'FieldValueNotSupported',
        message: `Unsupported value: ${JSON.stringify(effect)}: supported values: "NoExecute", "NoSchedule", "PreferNoSchedule"`,
        field: `${f}.effect`,
      });
    }
    if (t.tolerationSeconds !== undefined && t.tolerationSeconds !== null && effect !== 'NoExecute') {
      causes.push({
        reason: 'FieldValueInvalid',
        message: `Invalid value: ${JSON.stringify(effect)}: effect must be 'NoExecute' when \`tolerationSeconds\` is set`,
        field: `${f}.effect`,
      });
    }
  });
}

/**
 * Kubernetes' validateOnlyAddedTolerations: every existing toleration must still be there,
 * equal but for its tolerationSeconds (which may change to any value or none).
 */
function onlyAddedTolerations(oldList: unknown, newList: unknown): boolean {
  const strip = (t: unknown) => {
    if (!isObj(t)) return t;
    const { tolerationSeconds: _s, ...rest } = t;
    void _s;
    return rest;
  };
  const news = (Array.isArray(newList) ? newList : []).map(strip);
  return (Array.isArray(oldList) ? oldList : []).every((o) => news.some((n) => deepEqual(strip(o), n)));
}

function validatePod(o: KObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const spec = (o as { spec?: unknown }).spec;
  if (!isObj(spec)) return [{ reason: 'FieldValueRequired', message: 'Required value', field: 'spec' }];
  const containers = spec.containers;
  if (!Array.isArray(containers) || containers.length === 0) {
    causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: 'spec.containers' });
    return causes;
  }
  const names = new Set<string>();
  containers.forEach((c, i) => {
    if (!isObj(c)) {
      causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: must be an object', field: `spec.containers[${i}]` });
      return;
    }
    if (typeof c.name !== 'string' || !c.name) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: `spec.containers[${i}].name` });
    else if (names.has(c.name)) causes.push({ reason: 'FieldValueDuplicate', message: `Duplicate value: "${c.name}"`, field: `spec.containers[${i}].name` });
    else names.add(c.name);
    if (typeof c.image !== 'string' || !c.image) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: `spec.containers[${i}].image` });
  });
  validateTolerations(spec.tolerations, causes);
  return causes;
}

/** Pod spec is immutable except a few fields (image, activeDeadlineSeconds, tolerations additions, scheduling gates). */
function checkPodUpdate(t: ResourceType, old: KObject, next: KObject): void {
  const os = structuredClone((old as { spec?: JsonObject }).spec ?? {});
  const ns = structuredClone((next as { spec?: JsonObject }).spec ?? {});
  if (!onlyAddedTolerations(os.tolerations, ns.tolerations)) {
    throw errors.invalid(t.kind, t.group, old.metadata.name!, [
      { reason: 'FieldValueForbidden', message: 'Forbidden: existing toleration can not be modified except its tolerationSeconds', field: 'spec.tolerations' },
    ]);
  }
  for (const s of [os, ns]) {
    delete s.activeDeadlineSeconds;
    delete s.tolerations;
    delete s.schedulingGates;
    for (const list of [s.containers, s.initContainers]) if (Array.isArray(list)) for (const c of list) if (isObj(c)) delete c.image;
  }
  if (JSON.stringify(os) !== JSON.stringify(ns)) {
    throw errors.invalid(t.kind, t.group, old.metadata.name!, [
      {
        reason: 'FieldValueForbidden',
        message:
          'Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)',
        field: 'spec',
      },
    ]);
  }
}

/** A minimal FieldsV1 entry: the set of top-level-and-below keys the manager sent. */
function managedEntry(manager: string, operation: 'Apply' | 'Update', obj: KObject): JsonObject {
  const fields = (v: unknown, depth: number): JsonObject => {
    const out: JsonObject = {};
    if (!isObj(v) || depth > 6) return out;
    for (const [k, x] of Object.entries(v)) {
      if (depth === 0 && (k === 'apiVersion' || k === 'kind')) continue;
      if (depth === 1 && ['name', 'namespace', 'uid', 'resourceVersion', 'managedFields', 'creationTimestamp', 'generation'].includes(k)) continue;
      out[`f:${k}`] = isObj(x) ? fields(x, depth + 1) : {};
    }
    return out;
  };
  return {
    manager,
    operation,
    apiVersion: obj.apiVersion ?? 'v1',
    time: now(),
    fieldsType: 'FieldsV1',
    fieldsV1: fields(obj, 0),
  };
}

function upsertManaged(list: JsonObject[] | undefined, e: JsonObject): JsonObject[] {
  const out = (list ?? []).filter((x) => !(x.manager === e.manager && x.operation === e.operation));
  out.push(e);
  return out;
}

/**
 * A patch can nest and grow an object beyond what any body could (moves into deep paths,
 * copies): its result must stay within the depth and size limits before anything recursive
 * or costly (comparison, validation, storage) touches it.
 */
function checkPatchResult(patched: Json): void {
  if (jsonDepth(patched, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
    throw new ApiError(422, 'Invalid', `the server rejected our request due to an error in our request: the patched object is nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  const bytes = Buffer.byteLength(JSON.stringify(patched));
  if (bytes > MAX_OBJECT_BYTES) {
    throw new ApiError(413, 'RequestEntityTooLarge', `Request entity too large: the patched object is ${bytes} bytes of JSON, limit is ${MAX_OBJECT_BYTES}`);
  }
}
