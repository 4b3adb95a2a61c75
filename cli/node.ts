/**
 * @module
 * `ledge node revoke|unrevoke|revocations` (issue 13): node revocations in ConfigMap
 * `ledge-revoked-nodes` of CloudCore's namespace (cloud/revocation). Revoking takes effect on every
 * CloudCore replica at once (each watches the ConfigMap): the node's live session is closed and its
 * certificates issued before now are refused, while the Node object stays. The time written is the
 * API server's clock (its Date header), so a skewed clock on this machine does not matter.
 */
import { isNodeName } from '../cloud/cloudhub/identity.js';
import { loadKube, loadKubeConfig } from '../cloud/kube/index.js';
import { formatRevokedAt } from '../cloud/revocation/decision.js';
import { defaultRevocationOptions } from '../cloud/revocation/options.js';
import { createRevocationStore, type RevocationStore } from '../cloud/revocation/store.js';
import { clusterCommandSpec } from './cluster-flags.js';
import { loadCommandConfig } from '../shared/runtime/index.js';

const spec = clusterCommandSpec({
  default: defaultRevocationOptions.namespace,
  description: `CloudCore's namespace (the CA's; ConfigMap ${defaultRevocationOptions.configMapName})`,
});

export const nodeUsage = `Usage: ledge node <command> [options]

Commands:
  revoke <name>...     close the node's session on every CloudCore and refuse its certificates issued
                       until now (the Node object stays); re-admit it with a new token: edgecore join --force
  unrevoke <name>...   remove the revocation: its old certificates are accepted again
  revocations          the revoked nodes and since when

Deleting an edge Node (kubectl delete node <name>) revokes it too.
Common options: --kubeconfig <file>, -n/--namespace <ns> (default ${defaultRevocationOptions.namespace}). 'ledge node <command> --help' lists all.`;

/** Where the command writes (tests capture it). */
export interface NodeCliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

const processIo: NodeCliIo = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
};

/**
 * `ledge node <revoke|unrevoke|revocations> …` (argv after `node`). Usage errors print one line and
 * set exit code 2; API failures throw (the caller prints them, exit 1).
 */
export async function runNode(argv: string[], io: NodeCliIo = processIo): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'revoke':
      return revoke(rest, io);
    case 'unrevoke':
      return unrevoke(rest, io);
    case 'revocations':
      return revocations(rest, io);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout(`${nodeUsage}\n`);
      return;
    default:
      io.stderr(`ledge node: unknown command "${sub}"\n\n${nodeUsage}\n`);
      process.exitCode = 2;
  }
}

function usageError(io: NodeCliIo, command: string, message: string): void {
  io.stderr(`ledge node ${command}: ${message} (see --help)\n`);
  process.exitCode = 2;
}

/** The store and the node names, or undefined after a usage error (or --help). */
async function prepare(command: string, usage: string, argv: string[], io: NodeCliIo, needNames: boolean): Promise<{ store: RevocationStore; names: string[] } | undefined> {
  const loaded = await loadCommandConfig(`node ${command}`, spec, usage, argv);
  if (!loaded) return undefined;
  const names = loaded.positionals;
  if (needNames && !names.length) return void usageError(io, command, 'which node? give its name');
  if (!needNames && names.length) return void usageError(io, command, `unexpected argument "${names[0]}"`);
  const bad = names.find((n) => !isNodeName(n));
  if (bad !== undefined) return void usageError(io, command, `"${bad.slice(0, 100)}" is not a node name (DNS-1123 subdomain)`);
  const kube = await loadKube();
  const core = loadKubeConfig(loaded.config.kubeconfig).makeApiClient(kube.CoreV1Api);
  return { store: createRevocationStore({ core, namespace: loaded.config.namespace }), names };
}

async function revoke(argv: string[], io: NodeCliIo): Promise<void> {
  const p = await prepare('revoke', 'Usage: ledge node revoke <name>... [--kubeconfig f] [-n namespace]', argv, io, true);
  if (!p) return;
  for (const node of p.names) {
    const r = await p.store.revoke(node);
    const was = r.previous !== undefined ? ` (it was revoked at ${formatRevokedAt(r.previous)})` : '';
    io.stdout(`node ${node} revoked at ${formatRevokedAt(r.at)}${was}: CloudCore closes its session and refuses its certificates issued before then.\n`);
  }
  io.stdout('To admit a node again: ledge token create, then on the device: edgecore join --force --token <token> …\n');
}

async function unrevoke(argv: string[], io: NodeCliIo): Promise<void> {
  const p = await prepare('unrevoke', 'Usage: ledge node unrevoke <name>... [--kubeconfig f] [-n namespace]', argv, io, true);
  if (!p) return;
  for (const node of p.names) {
    const r = await p.store.unrevoke(node);
    if (!r.removed) io.stdout(`node ${node} was not revoked\n`);
    else io.stdout(`node ${node} unrevoked${r.previous !== undefined ? ` (it was revoked at ${formatRevokedAt(r.previous)})` : ''}: its certificates are accepted again\n`);
  }
}

async function revocations(argv: string[], io: NodeCliIo): Promise<void> {
  const p = await prepare('revocations', 'Usage: ledge node revocations [--kubeconfig f] [-n namespace]', argv, io, false);
  if (!p) return;
  const { entries, problems } = await p.store.list();
  if (!entries.size) io.stdout('No revoked nodes.\n');
  else {
    const rows = [...entries].sort((a, b) => a[0].localeCompare(b[0]));
    const width = Math.max(4, ...rows.map(([n]) => n.length));
    io.stdout(`${'NODE'.padEnd(width + 3)}REVOKED BEFORE\n${rows.map(([n, at]) => `${n.padEnd(width + 3)}${formatRevokedAt(at)}`).join('\n')}\n`);
  }
  for (const problem of problems) io.stderr(`ignored entry ${problem}\n`);
}
