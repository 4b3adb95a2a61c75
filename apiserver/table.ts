/**
 * @module
 * Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), used
 * by `kubectl get`: the columns of the real apiserver for the common built-in types,
 * additionalPrinterColumns for custom resources, Name/Age otherwise.
 */
import type { KObject, ResourceType } from './types.js';

type Cell = string | number | boolean | null;
interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

function col(name: string, type = 'string', priority = 0, format = ''): Column {
  return { name, type, format, description: name, priority };
}

/** Human age like kubectl's duration.HumanDuration. */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 365 * 2) return `${d}d`;
  return `${Math.floor(d / 365)}y`;
}

function age(o: KObject): string {
  const ts = o.metadata.creationTimestamp;
  return ts ? humanDuration(Date.now() - Date.parse(ts)) : '<unknown>';
}

type R = Record<string, unknown>;
const get = (o: unknown, ...keys: string[]): unknown => {
  let cur = o;
  for (const k of keys) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as R)[k];
  }
  return cur;
};
const arr = (v: unknown): R[] => (Array.isArray(v) ? (v as R[]) : []);

function podRow(o: KObject): Cell[] {
  const statuses = arr(get(o, 'status', 'containerStatuses'));
  const containers = arr(get(o, 'spec', 'containers'));
  const ready = statuses.filter((c) => c.ready === true).length;
  const restarts = statuses.reduce((n, c) => n + (typeof c.restartCount === 'number' ? c.restartCount : 0), 0);
  let reason = String(get(o, 'status', 'reason') ?? get(o, 'status', 'phase') ?? 'Unknown');
  for (const c of statuses) {
    const w = get(c, 'state', 'waiting', 'reason') ?? get(c, 'state', 'terminated', 'reason');
    if (typeof w === 'string' && w) reason = w;
  }
  if (o.metadata.deletionTimestamp) reason = 'Terminating';
  return [
    o.metadata.name ?? '',
    `${ready}/${containers.length}`,
    reason,
    restarts,
    age(o),
    String(get(o, 'status', 'podIP') ?? '<none>'),
    String(get(o, 'spec', 'nodeName') ?? '<none>'),
    '<none>',
    '<none>',
  ];
}

function nodeRow(o: KObject): Cell[] {
  const ready = arr(get(o, 'status', 'conditions')).find((c) => c.type === 'Ready');
  let status = ready?.status === 'True' ? 'Ready' : ready ? 'NotReady' : 'Unknown';
  if (get(o, 'spec', 'unschedulable') === true) status += ',SchedulingDisabled';
  const roles =
    Object.keys(o.metadata.labels ?? {})
      .filter((k) => k.startsWith('node-role.kubernetes.io/'))
      .map((k) => k.slice('node-role.kubernetes.io/'.length))
      .join(',') || '<none>';
  const addr = (type: string) => String(arr(get(o, 'status', 'addresses')).find((a) => a.type === type)?.address ?? '<none>');
  const info = (k: string) => String(get(o, 'status', 'nodeInfo', k) ?? '');
  return [
    o.metadata.name ?? '',
    status,
    roles,
    age(o),
    info('kubeletVersion'),
    addr('InternalIP'),
    addr('ExternalIP'),
    info('osImage'),
    info('kernelVersion'),
    info('containerRuntimeVersion'),
  ];
}

function serviceRow(o: KObject): Cell[] {
  const ports =
    arr(get(o, 'spec', 'ports'))
      .map((p) => `${String(p.port)}${p.nodePort ? `:${String(p.nodePort)}` : ''}/${String(p.protocol ?? 'TCP')}`)
      .join(',') || '<none>';
  const sel = get(o, 'spec', 'selector') as R | undefined;
  return [
    o.metadata.name ?? '',
    String(get(o, 'spec', 'type') ?? 'ClusterIP'),
    String(get(o, 'spec', 'clusterIP') ?? '<none>'),
    '<none>',
    ports,
    age(o),
    sel
      ? Object.entries(sel)
          .map(([k, v]) => `${k}=${String(v)}`)
          .join(',')
      : '<none>',
  ];
}

function eventRow(o: KObject): Cell[] {
  const last = String(get(o, 'lastTimestamp') ?? get(o, 'eventTime') ?? o.metadata.creationTimestamp ?? '');
  const io = (get(o, 'involvedObject') ?? {}) as R;
  return [
    last ? humanDuration(Date.now() - Date.parse(last)) : '<unknown>',
    String(get(o, 'type') ?? ''),
    String(get(o, 'reason') ?? ''),
    `${String(io.kind ?? '').toLowerCase()}/${String(io.name ?? '')}`,
    String(get(o, 'message') ?? ''),
  ];
}

function jsonPathValue(o: KObject, path: string): unknown {
  // Simple `.a.b.c` paths (what nearly all printer columns use); others print blank.
  const m = /^\{?\.?([A-Za-z0-9_.-]+)\}?$/.exec(path.trim());
  if (!m) return undefined;
  return get(o, ...m[1]!.split('.').filter(Boolean));
}

interface Layout {
  columns: Column[];
  row: (o: KObject) => Cell[];
}

function layout(t: ResourceType): Layout {
  const nameCol = col('Name', 'string', 0, 'name');
  const ageCol = col('Age');
  switch (t.storageKey) {
    case '/pods':
      return {
        columns: [
          nameCol,
          col('Ready'),
          col('Status'),
          col('Restarts', 'string'),
          ageCol,
          col('IP', 'string', 1),
          col('Node', 'string', 1),
          col('Nominated Node', 'string', 1),
          col('Readiness Gates', 'string', 1),
        ],
        row: podRow,
      };
    case '/nodes':
      return {
        columns: [
          nameCol,
          col('Status'),
          col('Roles'),
          ageCol,
          col('Version'),
          col('Internal-IP', 'string', 1),
          col('External-IP', 'string', 1),
          col('OS-Image', 'string', 1),
          col('Kernel-Version', 'string', 1),
          col('Container-Runtime', 'string', 1),
        ],
        row: nodeRow,
      };
    case '/namespaces':
      return { columns: [nameCol, col('Status'), ageCol], row: (o) => [o.metadata.name ?? '', String(get(o, 'status', 'phase') ?? ''), age(o)] };
    case '/configmaps':
      return {
        columns: [nameCol, col('Data', 'integer'), ageCol],
        row: (o) => [o.metadata.name ?? '', Object.keys((get(o, 'data') ?? {}) as R).length + Object.keys((get(o, 'binaryData') ?? {}) as R).length, age(o)],
      };
    case '/secrets':
      return {
        columns: [nameCol, col('Type'), col('Data', 'integer'), ageCol],
        row: (o) => [o.metadata.name ?? '', String(get(o, 'type') ?? ''), Object.keys((get(o, 'data') ?? {}) as R).length, age(o)],
      };
    case '/services':
      return { columns: [nameCol, col('Type'), col('Cluster-IP'), col('External-IP'), col('Port(s)'), ageCol, col('Selector', 'string', 1)], row: serviceRow };
    case '/events':
      return { columns: [col('Last Seen'), col('Type'), col('Reason'), col('Object'), col('Message')], row: eventRow };
    case 'coordination.k8s.io/leases':
      return { columns: [nameCol, col('Holder'), ageCol], row: (o) => [o.metadata.name ?? '', String(get(o, 'spec', 'holderIdentity') ?? ''), age(o)] };
    case 'apiextensions.k8s.io/customresourcedefinitions':
      return { columns: [nameCol, col('Created At', 'date')], row: (o) => [o.metadata.name ?? '', o.metadata.creationTimestamp ?? ''] };
  }
  const extra = (t.printerColumns ?? []).filter((c) => c.jsonPath !== '.metadata.creationTimestamp');
  return {
    columns: [nameCol, ...extra.map((c) => col(c.name, c.type === 'date' ? 'string' : c.type, c.priority ?? 0, c.format ?? '')), ageCol],
    row: (o) => [
      o.metadata.name ?? '',
      ...extra.map((c): Cell => {
        const v = jsonPathValue(o, c.jsonPath);
        if (v === undefined || v === null) return '';
        if (c.type === 'date' && typeof v === 'string') return humanDuration(Date.now() - Date.parse(v));
        return typeof v === 'object' ? JSON.stringify(v) : (v as Cell);
      }),
      age(o),
    ],
  };
}

export type IncludeObject = 'None' | 'Metadata' | 'Object';

function rowObject(o: KObject, include: IncludeObject): unknown {
  if (include === 'None') return undefined;
  if (include === 'Object') return o;
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
}

export function toTable(t: ResourceType, objs: KObject[], include: IncludeObject, meta: Record<string, unknown>, noHeaders = false): Record<string, unknown> {
  const l = layout(t);
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: meta,
    ...(noHeaders ? {} : { columnDefinitions: l.columns }),
    rows: objs.map((o) => {
      const obj = rowObject(o, include);
      return { cells: l.row(o), ...(obj !== undefined ? { object: obj } : {}) };
    }),
  };
}
