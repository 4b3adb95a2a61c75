/**
 * @module
 * Which resources are served: the fixed built-in set plus one entry per served
 * version of each established CustomResourceDefinition.
 */
import type { JSONSchemaProps, KObject, PrinterColumn, ResourceType } from './types.js';

type FieldLabels = ResourceType['fieldLabels'];

function str(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  return typeof v === 'string' ? v : String(v);
}
function path(o: KObject, ...keys: string[]): unknown {
  let cur: unknown = o;
  for (const k of keys) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}
const at =
  (...keys: string[]) =>
  (o: KObject) =>
    str(path(o, ...keys));

interface BuiltinSpec {
  group: string;
  version: string;
  resource: string;
  kind: string;
  namespaced: boolean;
  shortNames?: string[];
  subresources?: string[];
  fieldLabels?: FieldLabels;
  categories?: string[];
}

function builtin(s: BuiltinSpec): ResourceType {
  return {
    group: s.group,
    version: s.version,
    resource: s.resource,
    singular: s.kind.toLowerCase(),
    kind: s.kind,
    listKind: `${s.kind}List`,
    namespaced: s.namespaced,
    shortNames: s.shortNames ?? [],
    categories: s.categories ?? [],
    subresources: s.subresources ?? [],
    storageKey: `${s.group}/${s.resource}`,
    builtin: true,
    fieldLabels: s.fieldLabels ?? {},
  };
}

// Field labels as registered by the real apiserver (pkg/registry/*/strategy.go).
const podFields: FieldLabels = {
  'spec.nodeName': (o) => str(path(o, 'spec', 'nodeName')) ?? '',
  'spec.restartPolicy': at('spec', 'restartPolicy'),
  'spec.schedulerName': at('spec', 'schedulerName'),
  'spec.serviceAccountName': at('spec', 'serviceAccountName'),
  'spec.hostNetwork': (o) => String(path(o, 'spec', 'hostNetwork') === true),
  'status.phase': at('status', 'phase'),
  'status.podIP': at('status', 'podIP'),
  'status.nominatedNodeName': at('status', 'nominatedNodeName'),
};
const eventFields: FieldLabels = {
  'involvedObject.kind': at('involvedObject', 'kind'),
  'involvedObject.namespace': at('involvedObject', 'namespace'),
  'involvedObject.name': at('involvedObject', 'name'),
  'involvedObject.uid': at('involvedObject', 'uid'),
  'involvedObject.apiVersion': at('involvedObject', 'apiVersion'),
  'involvedObject.resourceVersion': at('involvedObject', 'resourceVersion'),
  'involvedObject.fieldPath': at('involvedObject', 'fieldPath'),
  reason: at('reason'),
  reportingComponent: at('reportingComponent'),
  source: at('source', 'component'),
  type: at('type'),
};

export function builtinTypes(): ResourceType[] {
  return [
    builtin({
      group: '',
      version: 'v1',
      resource: 'namespaces',
      kind: 'Namespace',
      namespaced: false,
      shortNames: ['ns'],
      subresources: ['status', 'finalize'],
      fieldLabels: { 'status.phase': at('status', 'phase') },
    }),
    builtin({
      group: '',
      version: 'v1',
      resource: 'nodes',
      kind: 'Node',
      namespaced: false,
      shortNames: ['no'],
      subresources: ['status'],
      fieldLabels: { 'spec.unschedulable': (o) => String(path(o, 'spec', 'unschedulable') === true) },
    }),
    builtin({
      group: '',
      version: 'v1',
      resource: 'pods',
      kind: 'Pod',
      namespaced: true,
      shortNames: ['po'],
      subresources: ['status', 'binding'],
      fieldLabels: podFields,
      categories: ['all'],
    }),
    builtin({ group: '', version: 'v1', resource: 'configmaps', kind: 'ConfigMap', namespaced: true, shortNames: ['cm'] }),
    builtin({ group: '', version: 'v1', resource: 'secrets', kind: 'Secret', namespaced: true, fieldLabels: { type: at('type') } }),
    builtin({ group: '', version: 'v1', resource: 'services', kind: 'Service', namespaced: true, shortNames: ['svc'], subresources: ['status'], categories: ['all'] }),
    builtin({ group: '', version: 'v1', resource: 'endpoints', kind: 'Endpoints', namespaced: true, shortNames: ['ep'] }),
    builtin({ group: '', version: 'v1', resource: 'events', kind: 'Event', namespaced: true, shortNames: ['ev'], fieldLabels: eventFields }),
    // Legacy POST /namespaces/{ns}/bindings (client-go's createNamespacedBinding); create-only.
    builtin({ group: '', version: 'v1', resource: 'bindings', kind: 'Binding', namespaced: true }),
    builtin({ group: '', version: 'v1', resource: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true, shortNames: ['sa'] }),
    builtin({ group: 'coordination.k8s.io', version: 'v1', resource: 'leases', kind: 'Lease', namespaced: true }),
    // Workloads (issue 14): served like the others; their controllers are in ./workloads/.
    builtin({
      group: 'apps',
      version: 'v1',
      resource: 'deployments',
      kind: 'Deployment',
      namespaced: true,
      shortNames: ['deploy'],
      subresources: ['status', 'scale'],
      categories: ['all'],
    }),
    builtin({
      group: 'apps',
      version: 'v1',
      resource: 'replicasets',
      kind: 'ReplicaSet',
      namespaced: true,
      shortNames: ['rs'],
      subresources: ['status', 'scale'],
      categories: ['all'],
    }),
    builtin({ group: 'apps', version: 'v1', resource: 'daemonsets', kind: 'DaemonSet', namespaced: true, shortNames: ['ds'], subresources: ['status'], categories: ['all'] }),
    builtin({ group: 'apps', version: 'v1', resource: 'controllerrevisions', kind: 'ControllerRevision', namespaced: true }),
    builtin({ group: 'batch', version: 'v1', resource: 'jobs', kind: 'Job', namespaced: true, subresources: ['status'], categories: ['all'] }),
    builtin({ group: 'batch', version: 'v1', resource: 'cronjobs', kind: 'CronJob', namespaced: true, shortNames: ['cj'], subresources: ['status'], categories: ['all'] }),
    builtin({
      group: 'apiextensions.k8s.io',
      version: 'v1',
      resource: 'customresourcedefinitions',
      kind: 'CustomResourceDefinition',
      namespaced: false,
      shortNames: ['crd', 'crds'],
      subresources: ['status'],
      categories: ['api-extensions'],
    }),
  ];
}

/** The served versions of a CRD, as ResourceTypes. Throws nothing: the CRD was validated on write. */
export function typesFromCrd(crd: KObject): ResourceType[] {
  const spec = (crd as { spec?: Record<string, unknown> }).spec ?? {};
  const names = (spec.names ?? {}) as Record<string, unknown>;
  const group = String(spec.group ?? '');
  const plural = String(names.plural ?? '');
  const kind = String(names.kind ?? '');
  const versions = (Array.isArray(spec.versions) ? spec.versions : []) as Record<string, unknown>[];
  const out: ResourceType[] = [];
  for (const v of versions) {
    if (v.served === false) continue;
    const sub = (v.subresources ?? {}) as Record<string, unknown>;
    const schema = ((v.schema ?? {}) as { openAPIV3Schema?: JSONSchemaProps }).openAPIV3Schema;
    const t: ResourceType = {
      group,
      version: String(v.name),
      resource: plural,
      singular: String(names.singular ?? kind.toLowerCase()),
      kind,
      listKind: String(names.listKind ?? `${kind}List`),
      namespaced: spec.scope !== 'Cluster',
      shortNames: Array.isArray(names.shortNames) ? names.shortNames.map(String) : [],
      categories: Array.isArray(names.categories) ? names.categories.map(String) : [],
      subresources: 'status' in sub ? ['status'] : [],
      storageKey: `${group}/${plural}`,
      builtin: false,
      fieldLabels: {},
      ...(schema ? { schema } : {}),
      ...(Array.isArray(v.additionalPrinterColumns) ? { printerColumns: v.additionalPrinterColumns as PrinterColumn[] } : {}),
    };
    out.push(t);
  }
  return out;
}

export class Registry {
  /** `group/version` → resource → type. */
  private readonly byGv = new Map<string, Map<string, ResourceType>>();
  /** CRD name → the types it registered. */
  private readonly crdTypes = new Map<string, ResourceType[]>();

  constructor() {
    for (const t of builtinTypes()) this.add(t);
  }

  private add(t: ResourceType): void {
    const gv = `${t.group}/${t.version}`;
    let m = this.byGv.get(gv);
    if (!m) this.byGv.set(gv, (m = new Map()));
    m.set(t.resource, t);
  }

  lookup(group: string, version: string, resource: string): ResourceType | undefined {
    return this.byGv.get(`${group}/${version}`)?.get(resource);
  }

  /** Any served version of a storage key (for internal controllers). */
  byStorageKey(storageKey: string): ResourceType | undefined {
    for (const m of this.byGv.values()) for (const t of m.values()) if (t.storageKey === storageKey) return t;
    return undefined;
  }

  hasGroupVersion(group: string, version: string): boolean {
    return this.byGv.has(`${group}/${version}`);
  }

  /** Resources of one group/version. */
  resources(group: string, version: string): ResourceType[] {
    return [...(this.byGv.get(`${group}/${version}`)?.values() ?? [])];
  }

  /** Groups (excluding the legacy core group) → versions, preferred first. */
  groups(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const gv of this.byGv.keys()) {
      const [g, v] = gv.split('/') as [string, string];
      if (g === '') continue;
      const list = out.get(g) ?? [];
      list.push(v);
      out.set(g, list);
    }
    for (const [g, vs] of out) out.set(g, sortVersions(vs));
    return out;
  }

  /** (Re)registers the served versions of a CRD. */
  registerCrd(crd: KObject): void {
    this.unregisterCrd(crd.metadata.name!);
    const types = typesFromCrd(crd);
    for (const t of types) this.add(t);
    this.crdTypes.set(crd.metadata.name!, types);
  }

  unregisterCrd(name: string): void {
    for (const t of this.crdTypes.get(name) ?? []) {
      const gv = `${t.group}/${t.version}`;
      const m = this.byGv.get(gv);
      m?.delete(t.resource);
      if (m && m.size === 0) this.byGv.delete(gv);
    }
    this.crdTypes.delete(name);
  }
}

/** Kubernetes version priority: GA > beta > alpha, higher numbers first. */
export function sortVersions(vs: string[]): string[] {
  const rank = (v: string): [number, number, number] => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return [3, 0, 0];
    const stage = m[2] === 'alpha' ? 2 : m[2] === 'beta' ? 1 : 0;
    return [stage, -Number(m[1]), -Number(m[3] ?? 0)];
  };
  return [...vs].sort((a, b) => {
    const ra = rank(a);
    const rb = rank(b);
    for (let i = 0; i < 3; i++) if (ra[i] !== rb[i]) return ra[i]! - rb[i]!;
    return a.localeCompare(b);
  });
}
