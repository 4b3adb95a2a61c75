/**
 * @module
 * Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), used
 * by `kubectl get`: the columns of the real apiserver for the common built-in types
 * (pkg/printers/internalversion: the workload kinds with their `-o wide` columns, and the
 * Scale of `--subresource=scale`), additionalPrinterColumns for custom resources, Name/Age
 * otherwise. Cells are the printers' with `Wide: true`, as the server always renders them.
 */
import type { KObject, ResourceType } from './types.js';
import { selectorString } from './workloads-api.js';

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

const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

/** layoutContainerCells: container names and images, comma-separated. */
function containerCells(podSpec: unknown): [string, string] {
  const cs = arr(get(podSpec, 'containers'));
  return [cs.map((c) => String(c.name ?? '')).join(','), cs.map((c) => String(c.image ?? '')).join(',')];
}

/** labels.FormatLabels: `k=v` sorted by key, `<none>` when empty. */
function formatLabels(m: unknown): string {
  const entries = Object.entries((m && typeof m === 'object' ? m : {}) as R).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length ? entries.map(([k, v]) => `${k}=${String(v)}`).join(',') : '<none>';
}

const sinceStamp = (ts: unknown): string => (typeof ts === 'string' && ts ? humanDuration(Date.now() - Date.parse(ts)) : '<unknown>');

function deploymentRow(o: KObject): Cell[] {
  return [
    o.metadata.name ?? '',
    `${num(get(o, 'status', 'readyReplicas'))}/${num(get(o, 'spec', 'replicas'))}`,
    num(get(o, 'status', 'updatedReplicas')),
    num(get(o, 'status', 'availableReplicas')),
    age(o),
    ...containerCells(get(o, 'spec', 'template', 'spec')),
    selectorString(get(o, 'spec', 'selector')),
  ];
}

function replicaSetRow(o: KObject): Cell[] {
  return [
    o.metadata.name ?? '',
    num(get(o, 'spec', 'replicas')),
    num(get(o, 'status', 'replicas')),
    num(get(o, 'status', 'readyReplicas')),
    age(o),
    ...containerCells(get(o, 'spec', 'template', 'spec')),
    selectorString(get(o, 'spec', 'selector')),
  ];
}

function daemonSetRow(o: KObject): Cell[] {
  const st = (k: string) => num(get(o, 'status', k));
  return [
    o.metadata.name ?? '',
    st('desiredNumberScheduled'),
    st('currentNumberScheduled'),
    st('numberReady'),
    st('updatedNumberScheduled'),
    st('numberAvailable'),
    formatLabels(get(o, 'spec', 'template', 'spec', 'nodeSelector')),
    age(o),
    ...containerCells(get(o, 'spec', 'template', 'spec')),
    selectorString(get(o, 'spec', 'selector')),
  ];
}

/** printJob's STATUS: the first of Complete, Failed, Terminating, Suspended, FailureTarget, SuccessCriteriaMet, else Running. */
function jobStatus(o: KObject): string {
  const conds = arr(get(o, 'status', 'conditions'));
  const has = (type: string) => conds.some((c) => c.type === type && c.status === 'True');
  if (has('Complete')) return 'Complete';
  if (has('Failed')) return 'Failed';
  if (o.metadata.deletionTimestamp) return 'Terminating';
  if (has('Suspended')) return 'Suspended';
  if (has('FailureTarget')) return 'FailureTarget';
  if (has('SuccessCriteriaMet')) return 'SuccessCriteriaMet';
  return 'Running';
}

function jobRow(o: KObject): Cell[] {
  const succeeded = num(get(o, 'status', 'succeeded'));
  const completions = get(o, 'spec', 'completions');
  const parallelism = num(get(o, 'spec', 'parallelism'));
  let done: string;
  if (typeof completions === 'number') done = `${succeeded}/${completions}`;
  else if (parallelism > 1) done = `${succeeded}/1 of ${parallelism}`;
  else done = `${succeeded}/1`;
  const start = get(o, 'status', 'startTime');
  const end = get(o, 'status', 'completionTime');
  let duration = '';
  if (typeof start === 'string' && start) {
    duration = typeof end === 'string' && end ? humanDuration(Date.parse(end) - Date.parse(start)) : humanDuration(Date.now() - Date.parse(start));
  }
  return [o.metadata.name ?? '', jobStatus(o), done, duration, age(o), ...containerCells(get(o, 'spec', 'template', 'spec')), selectorString(get(o, 'spec', 'selector'))];
}

function cronJobRow(o: KObject): Cell[] {
  const suspend = get(o, 'spec', 'suspend');
  const last = get(o, 'status', 'lastScheduleTime');
  const tz = get(o, 'spec', 'timeZone');
  return [
    o.metadata.name ?? '',
    String(get(o, 'spec', 'schedule') ?? ''),
    typeof tz === 'string' ? tz : '<none>',
    typeof suspend === 'boolean' ? (suspend ? 'True' : 'False') : '<unset>',
    arr(get(o, 'status', 'active')).length,
    typeof last === 'string' && last ? sinceStamp(last) : '<none>',
    age(o),
    ...containerCells(get(o, 'spec', 'jobTemplate', 'spec', 'template', 'spec')),
    selectorString(get(o, 'spec', 'jobTemplate', 'spec', 'selector')),
  ];
}

/** printControllerRevision: the controller as `kind.group/name` (lower-case kind). */
function controllerRevisionRow(o: KObject): Cell[] {
  const ref = (o.metadata.ownerReferences ?? []).find((r) => r.controller === true);
  let controller = '<none>';
  if (ref) {
    const av = String(ref.apiVersion ?? '');
    const group = av.includes('/') ? av.split('/')[0] : '';
    controller = `${String(ref.kind ?? '').toLowerCase()}${group ? `.${group}` : ''}/${String(ref.name ?? '')}`;
  }
  return [o.metadata.name ?? '', controller, num(get(o, 'revision')), age(o)];
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
  if (t.builtin) {
    const wide = [col('Containers', 'string', 1), col('Images', 'string', 1), col('Selector', 'string', 1)];
    switch (t.storageKey) {
      case 'apps/deployments':
        return { columns: [nameCol, col('Ready'), col('Up-to-date'), col('Available'), ageCol, ...wide], row: deploymentRow };
      case 'apps/replicasets':
        return { columns: [nameCol, col('Desired', 'integer'), col('Current', 'integer'), col('Ready', 'integer'), ageCol, ...wide], row: replicaSetRow };
      case 'apps/daemonsets':
        return {
          columns: [
            nameCol,
            col('Desired', 'integer'),
            col('Current', 'integer'),
            col('Ready', 'integer'),
            col('Up-to-date', 'integer'),
            col('Available', 'integer'),
            col('Node Selector'),
            ageCol,
            ...wide,
          ],
          row: daemonSetRow,
        };
      case 'apps/controllerrevisions':
        return { columns: [nameCol, col('Controller'), col('Revision', 'integer'), ageCol], row: controllerRevisionRow };
      case 'batch/jobs':
        return { columns: [nameCol, col('Status'), col('Completions'), col('Duration'), ageCol, ...wide], row: jobRow };
      case 'batch/cronjobs':
        return {
          columns: [nameCol, col('Schedule'), col('Timezone'), col('Suspend', 'boolean'), col('Active', 'integer'), col('Last Schedule'), ageCol, ...wide],
          row: cronJobRow,
        };
    }
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
  return tableOf(layout(t), objs, include, meta, noHeaders);
}

const SCALE_LAYOUT: Layout = {
  columns: [col('Name', 'string', 0, 'name'), col('Desired', 'integer'), col('Available', 'integer')],
  row: (o) => [o.metadata.name ?? '', num(get(o, 'spec', 'replicas')), num(get(o, 'status', 'replicas'))],
};

/** The Table of autoscaling/v1 Scales (`kubectl get deploy/x --subresource=scale`). */
export function scaleToTable(scales: unknown[], include: IncludeObject, meta: Record<string, unknown>): Record<string, unknown> {
  return tableOf(SCALE_LAYOUT, scales as KObject[], include, meta, false);
}

function tableOf(l: Layout, objs: KObject[], include: IncludeObject, meta: Record<string, unknown>, noHeaders: boolean): Record<string, unknown> {
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
