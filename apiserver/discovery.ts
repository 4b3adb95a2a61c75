/**
 * @module
 * Legacy discovery documents (/api, /apis, /api/v1, /apis/{g}[/{v}]). kubectl asks for
 * aggregated discovery (apidiscovery.k8s.io/v2) first and falls back to these when
 * the response's content type is plain application/json, which is what we send.
 */
import type { Registry } from './registry.js';
import type { ResourceType } from './types.js';

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

function resourceEntries(t: ResourceType): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [
    {
      name: t.resource,
      singularName: t.singular,
      namespaced: t.namespaced,
      kind: t.kind,
      verbs: t.storageKey === '/bindings' ? ['create'] : VERBS,
      ...(t.shortNames.length ? { shortNames: t.shortNames } : {}),
      ...(t.categories.length ? { categories: t.categories } : {}),
      storageVersionHash: Buffer.from(t.storageKey).toString('base64').slice(0, 11),
    },
  ];
  const subs: Record<string, unknown>[] = [];
  for (const sub of t.subresources) {
    if (sub === 'status') subs.push({ name: `${t.resource}/status`, singularName: '', namespaced: t.namespaced, kind: t.kind, verbs: ['get', 'patch', 'update'] });
    else if (sub === 'binding') subs.push({ name: `${t.resource}/binding`, singularName: '', namespaced: t.namespaced, kind: 'Binding', verbs: ['create'] });
    else if (sub === 'finalize') subs.push({ name: `${t.resource}/finalize`, singularName: '', namespaced: t.namespaced, kind: t.kind, verbs: ['update'] });
    // The scale client (kubectl scale) reads the Scale's group/version/kind from here.
    else if (sub === 'scale')
      subs.push({ name: `${t.resource}/scale`, singularName: '', namespaced: t.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
  }
  // The node proxy's subresources (nodeproxy.ts), as kube-apiserver lists them.
  if (t.storageKey === '/pods') {
    const proxied: [string, string, string[]][] = [
      ['attach', 'PodAttachOptions', ['create', 'get']],
      ['exec', 'PodExecOptions', ['create', 'get']],
      ['log', 'Pod', ['get']],
      ['portforward', 'PodPortForwardOptions', ['create', 'get']],
    ];
    for (const [sub, kind, verbs] of proxied) subs.push({ name: `pods/${sub}`, singularName: '', namespaced: true, kind, verbs });
  }
  subs.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  return [...out, ...subs];
}

export function apiVersions(serverAddress: string): unknown {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
}

export function resourceList(reg: Registry, group: string, version: string): unknown {
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: group ? `${group}/${version}` : version,
    resources: reg.resources(group, version).flatMap(resourceEntries),
  };
}

function groupDoc(name: string, versions: string[]): Record<string, unknown> {
  const vs = versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
  return { name, versions: vs, preferredVersion: vs[0] };
}

export function groupList(reg: Registry): unknown {
  const groups = [...reg.groups()].sort(([a], [b]) => a.localeCompare(b)).map(([g, vs]) => groupDoc(g, vs));
  return { kind: 'APIGroupList', apiVersion: 'v1', groups };
}

export function group(reg: Registry, name: string): unknown | undefined {
  const vs = reg.groups().get(name);
  if (!vs) return undefined;
  return { kind: 'APIGroup', apiVersion: 'v1', ...groupDoc(name, vs) };
}

export function versionInfo(): unknown {
  return {
    major: '1',
    minor: '35',
    emulationMajor: '1',
    emulationMinor: '35',
    gitVersion: 'v1.35.0-ledge',
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2026-01-01T00:00:00Z',
    goVersion: `node${process.versions.node}`,
    compiler: 'ledge',
    platform: `${process.platform}/${process.arch === 'x64' ? 'amd64' : process.arch}`,
  };
}
