/**
 * @module
 * What MetaServer serves: the resources (plural ↔ store type ↔ kind), the discovery documents,
 * and Kubernetes `Status` bodies for its errors.
 */

/** One served resource. */
export interface ResourceInfo {
  /** URL name: `pods`. */
  plural: string;
  singular: string;
  kind: string;
  /** Type in the edge store's resource keys (`namespace/type/name`). */
  type: string;
  namespaced: boolean;
  shortNames: string[];
  /** Field selector labels beyond metadata.name / metadata.namespace: label → getter. */
  fields: Record<string, (o: KubeObject) => unknown>;
}

/** The part of a Kubernetes object MetaServer reads. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

const at =
  (...path: string[]) =>
  (o: KubeObject): unknown => {
    let v: unknown = o;
    for (const p of path) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[p] : undefined;
    return v;
  };

export const RESOURCES: readonly ResourceInfo[] = [
  {
    plural: 'pods',
    singular: 'pod',
    kind: 'Pod',
    type: 'pod',
    namespaced: true,
    shortNames: ['po'],
    fields: {
      'spec.nodeName': at('spec', 'nodeName'),
      'spec.restartPolicy': at('spec', 'restartPolicy'),
      'spec.schedulerName': at('spec', 'schedulerName'),
      'spec.serviceAccountName': at('spec', 'serviceAccountName'),
      'status.phase': at('status', 'phase'),
      'status.podIP': at('status', 'podIP'),
    },
  },
  { plural: 'configmaps', singular: 'configmap', kind: 'ConfigMap', type: 'configmap', namespaced: true, shortNames: ['cm'], fields: {} },
  { plural: 'secrets', singular: 'secret', kind: 'Secret', type: 'secret', namespaced: true, shortNames: [], fields: { type: at('type') } },
  { plural: 'services', singular: 'service', kind: 'Service', type: 'service', namespaced: true, shortNames: ['svc'], fields: {} },
  { plural: 'endpoints', singular: 'endpoints', kind: 'Endpoints', type: 'endpoints', namespaced: true, shortNames: ['ep'], fields: {} },
  {
    plural: 'nodes',
    singular: 'node',
    kind: 'Node',
    type: 'node',
    namespaced: false,
    shortNames: ['no'],
    fields: { 'spec.unschedulable': (o) => at('spec', 'unschedulable')(o) === true },
  },
];

export const byPlural: ReadonlyMap<string, ResourceInfo> = new Map(RESOURCES.map((r) => [r.plural, r]));
export const byType: ReadonlyMap<string, ResourceInfo> = new Map(RESOURCES.map((r) => [r.type, r]));

/** Namespace under which the edge store keeps cluster-scoped objects (buildResource's default). */
export const CLUSTER_NAMESPACE = 'default';

/** The Kubernetes version MetaServer reports (the one Ledge's local control plane reports). */
export function versionInfo(): Record<string, string> {
  return {
    major: '1',
    minor: '35',
    gitVersion: 'v1.35.0-ledge',
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2026-01-01T00:00:00Z',
    goVersion: `node${process.versions.node}`,
    compiler: 'ledge-metaserver',
    platform: `${process.platform}/${process.arch === 'x64' ? 'amd64' : process.arch}`,
  };
}

/** `/api`. */
export function apiVersions(serverAddress: string): unknown {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
}

/** `/apis`: no API group is served. */
export function apiGroupList(): unknown {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: [] };
}

/** `/api/v1`. */
export function apiResourceList(): unknown {
  return {
    kind: 'APIResourceList',
    groupVersion: 'v1',
    resources: RESOURCES.map((r) => ({
      name: r.plural,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: ['get', 'list', 'watch'],
      ...(r.shortNames.length ? { shortNames: r.shortNames } : {}),
    })),
  };
}

/** Kubernetes `Status` (failure). */
export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: string;
  details?: { name?: string; kind?: string; retryAfterSeconds?: number; causes?: { reason: string; message: string }[] };
  code: number;
}

export function status(code: number, reason: string, message: string, details?: Status['details']): Status {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

/** An HTTP error answered with a Status body. */
export class HttpStatusError extends Error {
  constructor(readonly status: Status) {
    super(status.message);
    this.name = 'HttpStatusError';
  }
}

export const statusErrors = {
  badRequest: (message: string) => new HttpStatusError(status(400, 'BadRequest', message)),
  notFound: (r: ResourceInfo, name: string) => new HttpStatusError(status(404, 'NotFound', `${r.plural} "${name}" not found`, { name, kind: r.plural })),
  pathNotFound: () => new HttpStatusError(status(404, 'NotFound', 'the server could not find the requested resource')),
  unauthorized: () => new HttpStatusError(status(401, 'Unauthorized', 'Unauthorized')),
  forbidden: (message: string) => new HttpStatusError(status(403, 'Forbidden', message)),
  methodNotAllowed: () => new HttpStatusError(status(405, 'MethodNotAllowed', "MetaServer is read-only; write through the cluster's API server")),
  expired: (message: string) => new HttpStatusError(status(410, 'Expired', message)),
  tooManyRequests: (message: string) => new HttpStatusError(status(429, 'TooManyRequests', message, { retryAfterSeconds: 1 })),
  unavailable: (message: string) => new HttpStatusError(status(503, 'ServiceUnavailable', message, { retryAfterSeconds: 1 })),
};
