/**
 * @module
 * `ledge edge get <resource> [name]`: what an edge node holds and runs, read through its
 * MetaServer with the node-local admin token, printed like `kubectl get` (a table, or -o yaml/json).
 * Part of the CLI only (dist/ledge.js); EdgeCore's bundle never loads it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { edgeConfigSpec } from '../edge/config.js';
import { ADMIN_TOKEN_FILE, METASERVER_DIR, SERVER_URL_FILE, defaultMetaServerOptions } from '../edge/metaserver/options.js';
import { RESOURCES, type KubeObject, type ResourceInfo } from '../edge/metaserver/resources.js';
import { errorMessage } from '../shared/errors/index.js';

export const edgeGetUsage = `Usage: ledge edge get <resource> [name] [-n <namespace> | -A] [-o yaml|json|wide] [--data-dir <dir>] [--server <url>]

Shows what this edge node holds, through its MetaServer (the node-local admin token is read from
<data-dir>/metaserver/admin.token: run as the user EdgeCore runs as).

Resources: ${RESOURCES.map((r) => [r.plural, ...r.shortNames].join('|')).join(', ')}

Options:
  -n, --namespace <ns>      namespace (default "default")
  -A, --all-namespaces      every namespace
  -o, --output <format>     yaml, json or wide (default: a table)
      --data-dir <dir>      EdgeCore's data directory (default ${edgeConfigSpec.dataDir.default}, or LEDGE_DATA_DIR)
      --server <url>        MetaServer URL (default: the one EdgeCore wrote to the data directory, else http://127.0.0.1:${defaultMetaServerOptions.port})
  -h, --help                show this help
`;

/** A failure with the message the user sees. */
class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

function findResource(word: string): ResourceInfo | undefined {
  const w = word.toLowerCase();
  return RESOURCES.find((r) => r.plural === w || r.singular === w || r.shortNames.includes(w));
}

/** kubectl's age format: 42s, 5m10s, 3h, 2d4h, 1y20d… */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < -1) return '<invalid>';
  if (s < 0) return '0s';
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  if (h < 24 * 8) return h % 24 === 0 ? `${Math.floor(h / 24)}d` : `${Math.floor(h / 24)}d${h % 24}h`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24)}d`;
  if (h < 24 * 365 * 8) {
    const d = Math.floor(h / 24) % 365;
    return d === 0 ? `${Math.floor(h / 24 / 365)}y` : `${Math.floor(h / 24 / 365)}y${d}d`;
  }
  return `${Math.floor(h / 24 / 365)}y`;
}

function age(o: KubeObject, now: number): string {
  const t = Date.parse(String(o.metadata?.creationTimestamp ?? ''));
  return Number.isNaN(t) ? '<unknown>' : humanDuration(now - t);
}

type Rec = Record<string, unknown>;
const rec = (v: unknown): Rec => (v !== null && typeof v === 'object' ? (v as Rec) : {});
const arr = (v: unknown): Rec[] => (Array.isArray(v) ? v.map(rec) : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');

interface PodRow {
  ready: string;
  status: string;
  restarts: string;
}

/** READY, STATUS and RESTARTS as kubectl derives them from a pod's status. */
export function podColumns(pod: KubeObject, now: number): PodRow {
  const spec = rec(pod.spec);
  const st = rec(pod.status);
  let reason = str(st.reason) || str(st.phase) || 'Unknown';
  let restarts = 0;
  let lastRestart = 0;
  const noteRestart = (cs: Rec) => {
    restarts += Number(cs.restartCount ?? 0) || 0;
    const finished = Date.parse(str(rec(rec(cs.lastState).terminated).finishedAt));
    if (!Number.isNaN(finished) && finished > lastRestart) lastRestart = finished;
  };
  const inits = arr(st.initContainerStatuses);
  let initializing = false;
  for (const [i, cs] of inits.entries()) {
    noteRestart(cs);
    const term = rec(rec(cs.state).terminated);
    const wait = rec(rec(cs.state).waiting);
    if (rec(cs.state).terminated && Number(term.exitCode) === 0) continue;
    initializing = true;
    if (rec(cs.state).terminated) reason = term.reason ? `Init:${str(term.reason)}` : term.signal ? `Init:Signal:${str(term.signal)}` : `Init:ExitCode:${str(term.exitCode)}`;
    else if (wait.reason && wait.reason !== 'PodInitializing') reason = `Init:${str(wait.reason)}`;
    else reason = `Init:${i}/${arr(spec.initContainers).length || inits.length}`;
    break;
  }
  let ready = 0;
  const containers = arr(st.containerStatuses);
  if (!initializing) {
    restarts = 0;
    lastRestart = 0;
    let running = false;
    for (const cs of [...containers].reverse()) {
      noteRestart(cs);
      const state = rec(cs.state);
      const wait = rec(state.waiting);
      const term = rec(state.terminated);
      if (state.waiting && wait.reason) reason = str(wait.reason);
      else if (state.terminated && term.reason) reason = str(term.reason);
      else if (state.terminated) reason = term.signal ? `Signal:${str(term.signal)}` : `ExitCode:${str(term.exitCode)}`;
      else if (cs.ready === true && state.running) {
        running = true;
        ready++;
      }
    }
    if (reason === 'Completed' && running) reason = arr(st.conditions).some((c) => c.type === 'Ready' && c.status === 'True') ? 'Running' : 'NotReady';
  }
  if (pod.metadata?.deletionTimestamp) reason = st.reason === 'NodeLost' ? 'Unknown' : 'Terminating';
  const total = arr(spec.containers).length || containers.length;
  return {
    ready: `${ready}/${total}`,
    status: reason,
    restarts: restarts > 0 && lastRestart > 0 ? `${restarts} (${humanDuration(now - lastRestart)} ago)` : String(restarts),
  };
}

const keysOf = (v: unknown): number => Object.keys(rec(v)).length;

/** Column headers and one row per object, per resource (kubectl's columns; `wide` adds some). */
function table(info: ResourceInfo, items: KubeObject[], wide: boolean, now: number): { head: string[]; rows: string[][] } {
  const name = (o: KubeObject) => o.metadata?.name ?? '';
  switch (info.plural) {
    case 'pods':
      return {
        head: ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE', ...(wide ? ['IP', 'NODE'] : [])],
        rows: items.map((o) => {
          const c = podColumns(o, now);
          const st = rec(o.status);
          return [name(o), c.ready, c.status, c.restarts, age(o, now), ...(wide ? [str(st.podIP) || '<none>', str(rec(o.spec).nodeName) || '<none>'] : [])];
        }),
      };
    case 'configmaps':
      return { head: ['NAME', 'DATA', 'AGE'], rows: items.map((o) => [name(o), String(keysOf(o.data) + keysOf(o.binaryData)), age(o, now)]) };
    case 'secrets':
      return { head: ['NAME', 'TYPE', 'DATA', 'AGE'], rows: items.map((o) => [name(o), str(o.type) || 'Opaque', String(keysOf(o.data)), age(o, now)]) };
    case 'services':
      return {
        head: ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'AGE', ...(wide ? ['SELECTOR'] : [])],
        rows: items.map((o) => {
          const spec = rec(o.spec);
          const ingress = arr(rec(rec(o.status).loadBalancer).ingress).map((i) => str(i.ip) || str(i.hostname));
          const external = [...ingress, ...(Array.isArray(spec.externalIPs) ? spec.externalIPs.map(str) : [])].filter(Boolean);
          const ports = arr(spec.ports).map((p) => `${str(p.port)}${p.nodePort ? `:${str(p.nodePort)}` : ''}/${str(p.protocol) || 'TCP'}`);
          const selector = Object.entries(rec(spec.selector)).map(([k, v]) => `${k}=${str(v)}`);
          return [
            name(o),
            str(spec.type) || 'ClusterIP',
            str(spec.clusterIP) || '<none>',
            external.join(',') || (spec.type === 'LoadBalancer' ? '<pending>' : '<none>'),
            ports.join(',') || '<none>',
            age(o, now),
            ...(wide ? [selector.join(',') || '<none>'] : []),
          ];
        }),
      };
    case 'endpoints':
      return {
        head: ['NAME', 'ENDPOINTS', 'AGE'],
        rows: items.map((o) => {
          const eps: string[] = [];
          for (const s of arr(o.subsets)) {
            const ports = arr(s.ports).map((p) => str(p.port));
            for (const a of arr(s.addresses)) for (const p of ports.length ? ports : ['']) eps.push(p ? `${str(a.ip)}:${p}` : str(a.ip));
          }
          const shown = eps.slice(0, 3).join(',') + (eps.length > 3 ? ` + ${eps.length - 3} more...` : '');
          return [name(o), shown || '<none>', age(o, now)];
        }),
      };
    default: {
      // nodes
      return {
        head: ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION', ...(wide ? ['INTERNAL-IP', 'OS-IMAGE', 'KERNEL-VERSION', 'CONTAINER-RUNTIME'] : [])],
        rows: items.map((o) => {
          const st = rec(o.status);
          const readyCond = arr(st.conditions).find((c) => c.type === 'Ready');
          let status = readyCond?.status === 'True' ? 'Ready' : readyCond?.status === 'False' ? 'NotReady' : 'Unknown';
          if (rec(o.spec).unschedulable === true) status += ',SchedulingDisabled';
          const roles = Object.keys(rec(o.metadata?.labels))
            .filter((k) => k.startsWith('node-role.kubernetes.io/'))
            .map((k) => k.slice('node-role.kubernetes.io/'.length))
            .filter(Boolean);
          const info = rec(st.nodeInfo);
          const ip = arr(st.addresses).find((a) => a.type === 'InternalIP');
          return [
            name(o),
            status,
            roles.join(',') || '<none>',
            age(o, now),
            str(info.kubeletVersion) || '<none>',
            ...(wide
              ? [str(ip?.address) || '<none>', str(info.osImage) || '<unknown>', str(info.kernelVersion) || '<unknown>', str(info.containerRuntimeVersion) || '<unknown>']
              : []),
          ];
        }),
      };
    }
  }
}

/** Columns padded like kubectl's tabwriter (cells at least 10 wide with 3 spaces of padding; the last one not padded). */
export function formatTable(head: string[], rows: string[][]): string {
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(10, ...all.map((r) => (r[i] ?? '').length + 3)));
  const lines = all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join(''));
  return `${lines.join('\n')}\n`;
}

function readToken(dataDir: string): string {
  const file = join(dataDir, METASERVER_DIR, ADMIN_TOKEN_FILE);
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new CliError(
        `no MetaServer admin token at ${file}: is ${dataDir} the data directory EdgeCore runs with (--data-dir)? EdgeCore creates the token when MetaServer first starts`,
      );
    }
    if (code === 'EACCES' || code === 'EPERM') throw new CliError(`cannot read ${file}: permission denied; run as the user EdgeCore runs as (usually root)`);
    throw new CliError(`cannot read ${file}: ${errorMessage(err)}`);
  }
}

function serverUrl(dataDir: string, flag: string | undefined): string {
  if (flag) return flag.replace(/\/+$/, '');
  try {
    const u = readFileSync(join(dataDir, METASERVER_DIR, SERVER_URL_FILE), 'utf8').trim();
    if (u) return u;
  } catch {
    // Not written (EdgeCore never listened, or an older one): the default address.
  }
  return `http://127.0.0.1:${defaultMetaServerOptions.port}`;
}

async function request(server: string, path: string, token: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${server}${path}`, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' }, signal: AbortSignal.timeout(15_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? errorMessage(err);
    throw new CliError(`MetaServer not reachable at ${server} (${why}): is EdgeCore running, with MetaServer enabled? (--server to point elsewhere)`);
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new CliError(`unexpected answer from ${server}${path}: HTTP ${res.status} ${text.slice(0, 200)}`);
  }
  if (!res.ok) {
    const s = rec(body);
    throw new CliError(`Error from server (${str(s.reason) || res.status}): ${str(s.message) || text.slice(0, 200)}`);
  }
  return body;
}

async function print(value: unknown, output: 'yaml' | 'json'): Promise<void> {
  if (output === 'json') {
    process.stdout.write(`${JSON.stringify(value, null, 4)}\n`);
    return;
  }
  const { stringify } = await import('yaml');
  process.stdout.write(stringify(value, { sortMapEntries: true }));
}

/** `ledge edge get …`. */
export async function runEdgeGet(argv: string[]): Promise<void> {
  try {
    await edgeGet(argv);
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exitCode = err.exitCode;
  }
}

async function edgeGet(argv: string[]): Promise<void> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    throw new CliError(`${errorMessage(err)}\n\n${edgeGetUsage}`, 2);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(edgeGetUsage);
    return;
  }
  const [word, name, ...extra] = positionals;
  if (!word) throw new CliError(`a resource type is required\n\n${edgeGetUsage}`, 2);
  if (extra.length) throw new CliError(`one name at most, got ${[name, ...extra].join(' ')}`, 2);
  const info = findResource(word);
  if (!info) throw new CliError(`the server doesn't have a resource type "${word}" (MetaServer serves ${RESOURCES.map((r) => r.plural).join(', ')})`, 2);
  const output = values.output;
  if (output !== undefined && output !== 'yaml' && output !== 'json' && output !== 'wide') throw new CliError(`unknown output format "${output}" (yaml, json or wide)`, 2);
  if (values['all-namespaces'] && name !== undefined) throw new CliError('a resource cannot be retrieved by name across all namespaces', 2);
  const all = values['all-namespaces'] === true || !info.namespaced;
  const namespace = values.namespace ?? 'default';
  const dataDir = values['data-dir'] ?? process.env.LEDGE_DATA_DIR ?? edgeConfigSpec.dataDir.default;
  const token = readToken(dataDir);
  const server = serverUrl(dataDir, values.server);
  const base = info.namespaced && !all ? `/api/v1/namespaces/${encodeURIComponent(namespace)}/${info.plural}` : `/api/v1/${info.plural}`;
  const body = await request(server, name !== undefined ? `${base}/${encodeURIComponent(name)}` : base, token);
  const items = name !== undefined ? [body as KubeObject] : (arr(rec(body).items) as KubeObject[]);
  if (output === 'yaml' || output === 'json') {
    await print(name !== undefined ? body : { apiVersion: 'v1', items, kind: 'List', metadata: { resourceVersion: '' } }, output);
    return;
  }
  if (items.length === 0) {
    process.stderr.write(info.namespaced && !all ? `No resources found in ${namespace} namespace.\n` : 'No resources found\n');
    return;
  }
  const { head, rows } = table(info, items, output === 'wide', Date.now());
  const showNs = info.namespaced && all;
  process.stdout.write(formatTable(showNs ? ['NAMESPACE', ...head] : head, showNs ? rows.map((r, i) => [items[i]?.metadata?.namespace ?? '', ...r]) : rows));
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      namespace: { type: 'string', short: 'n' },
      'all-namespaces': { type: 'boolean', short: 'A' },
      output: { type: 'string', short: 'o' },
      'data-dir': { type: 'string' },
      server: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
