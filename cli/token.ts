/**
 * @module
 * `ledge token create|list|revoke` (issue 13): join tokens in the cluster's API (cloud/tokens),
 * printed with the hash of CloudCore's CA. `create` loads the CA the way CloudCore does
 * (loadOrCreateCa: the `ledge-ca` Secret, created if missing), or hashes `--ca-cert-file` when
 * CloudCore runs with an operator-supplied CA.
 */
import { readFileSync } from 'node:fs';
import { defaultCloudHubOptions } from '../cloud/cloudhub/options.js';
import { loadOrCreateCa } from '../cloud/certauthority/index.js';
import { loadKube, loadKubeConfig } from '../cloud/kube/index.js';
import { createTokenStore, type TokenRecord } from '../cloud/tokens/index.js';
import { defaultTokenStoreOptions } from '../cloud/tokens/options.js';
import type { ConfigSpec } from '../shared/config/index.js';
import { clusterCommandSpec } from './cluster-flags.js';
import { ConfigError, errorMessage } from '../shared/errors/index.js';
import { caCertHash, formatJoinToken } from '../shared/jointoken/index.js';
import { loggerFromConfig } from '../shared/log/index.js';
import { loadCommandConfig } from '../shared/runtime/index.js';

const commonSpec = clusterCommandSpec({ default: defaultTokenStoreOptions.namespace, description: "CloudCore's namespace (token Secrets and the ledge-ca Secret)" });

const createSpec = {
  ...commonSpec,
  ttl: { type: 'string', flag: 'ttl', default: '24h', description: 'how long the token is valid: 30m, 24h, 7d, 1d12h' },
  singleUse: { type: 'boolean', flag: 'single-use', default: false, description: 'the token admits one node, then it is gone' },
  description: { type: 'string', flag: 'description', default: '', description: 'a note kept with the token (what it is for)' },
  cloudUrl: { type: 'string', flag: 'cloud-url', optional: true, description: "CloudHub's URL as nodes reach it, for the printed join line (https://host:port)" },
  caCertFile: {
    type: 'string',
    flag: 'ca-cert-file',
    optional: true,
    description: "CloudCore's operator-supplied CA certificate (its --ca-cert-file): hashed instead of loading or creating the ledge-ca Secret",
  },
} as const satisfies ConfigSpec;

export const tokenUsage = `Usage: ledge token <command> [options]

Commands:
  create [--ttl 24h] [--single-use] [--description d] [--cloud-url u]   make a join token; prints it with the CA hash
  list                                                                   the tokens (never their secrets)
  revoke <id>                                                            delete a token

Common options: --kubeconfig <file>, -n/--namespace <ns> (default ${defaultTokenStoreOptions.namespace}). 'ledge token <command> --help' lists all.`;

/** Where the command writes (tests capture it). */
export interface TokenCliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

const processIo: TokenCliIo = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
};

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A token lifetime (`30m`, `24h`, `7d`, `1d12h`, `90s`) in ms; undefined when it is not one or not positive. */
export function parseTtl(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)([smhd])/y;
  let total = 0;
  let at = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    at = re.lastIndex;
  }
  return at > 0 && at === text.length && total > 0 ? Math.round(total) : undefined;
}

/** A remaining time as `6d23h`, `23h59m`, `59m`, `<1m`. */
function remaining(ms: number): string {
  const m = Math.floor(ms / 60_000);
  if (m < 1) return '<1m';
  const d = Math.floor(m / 1440);
  const h = Math.floor((m % 1440) / 60);
  if (d > 0) return `${d}d${h ? `${h}h` : ''}`;
  return h > 0 ? `${h}h${m % 60 ? `${m % 60}m` : ''}` : `${m}m`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('')).join('\n')}\n`;
}

/** The `ledge token list` table. */
export function formatTokenTable(records: TokenRecord[], now = Date.now()): string {
  if (!records.length) return 'No join tokens.\n';
  const rows = [['ID', 'EXPIRES', 'TTL', 'USAGE', 'DESCRIPTION']];
  for (const r of records) {
    rows.push([r.id, r.expiration, r.expired ? 'expired' : remaining(Date.parse(r.expiration) - now), r.singleUse ? 'single-use' : 'reusable', r.description || '<none>']);
  }
  return table(rows);
}

/**
 * `ledge token <create|list|revoke> …` (argv after `token`). Usage errors print one line and set
 * exit code 2; API failures throw (the caller prints them, exit 1).
 */
export async function runToken(argv: string[], io: TokenCliIo = processIo): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'create':
      return create(rest, io);
    case 'list':
    case 'ls':
      return list(rest, io);
    case 'revoke':
    case 'delete':
      return revoke(rest, io);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout(`${tokenUsage}\n`);
      return;
    default:
      io.stderr(`ledge token: unknown command "${sub}"\n\n${tokenUsage}\n`);
      process.exitCode = 2;
  }
}

async function coreFor(kubeconfig: string | undefined) {
  const kube = await loadKube();
  return loadKubeConfig(kubeconfig).makeApiClient(kube.CoreV1Api);
}

function usageError(io: TokenCliIo, command: string, message: string): void {
  io.stderr(`ledge token ${command}: ${message} (see --help)\n`);
  process.exitCode = 2;
}

async function create(argv: string[], io: TokenCliIo): Promise<void> {
  const loaded = await loadCommandConfig(
    'token create',
    createSpec,
    'Usage: ledge token create [--ttl 24h] [--single-use] [--description d] [--cloud-url https://host:port]',
    argv,
  );
  if (!loaded) return;
  const c = loaded.config;
  if (loaded.positionals.length) return usageError(io, 'create', `unexpected argument "${loaded.positionals[0]}"`);
  const ttlMs = parseTtl(c.ttl);
  if (ttlMs === undefined) return usageError(io, 'create', `--ttl "${c.ttl}" is not a positive duration such as 30m, 24h or 7d`);
  if (c.cloudUrl !== undefined && !/^(https|wss):\/\/[^/\s]+/.test(c.cloudUrl)) return usageError(io, 'create', `--cloud-url "${c.cloudUrl}" must be https://host:port`);
  const log = loggerFromConfig(c.log);
  const core = await coreFor(c.kubeconfig);
  let hash: string;
  if (c.caCertFile) {
    try {
      hash = caCertHash(readFileSync(c.caCertFile, 'utf8'));
    } catch (err) {
      throw new ConfigError(`--ca-cert-file ${c.caCertFile}: ${errorMessage(err)}`, { cause: err });
    }
  } else {
    const ca = await loadOrCreateCa({ core, namespace: c.namespace, log });
    if (ca.source === 'created') {
      io.stderr(`Created CloudCore's CA in Secret ${c.namespace}/ledge-ca (CloudCore will use it). If CloudCore runs with --ca-cert-file, pass that file here instead.\n`);
    }
    hash = ca.hash;
  }
  const store = createTokenStore({ core, namespace: c.namespace });
  const token = await store.create({ ttlMs, singleUse: c.singleUse, description: c.description });
  const joinToken = formatJoinToken(token, hash);
  const cloud = c.cloudUrl ?? `https://<cloudhub-address>:${defaultCloudHubOptions.port}`;
  io.stdout(
    `${joinToken}\n\n` +
      `Token ${token.id}: valid until ${token.expiration}${token.singleUse ? ', single use' : ''}. Keep it secret; it is not shown again.\n` +
      `Join a node with:\n\n  edgecore join --cloud ${cloud} --token ${joinToken} --node-name <node-name>\n`,
  );
}

async function list(argv: string[], io: TokenCliIo): Promise<void> {
  const loaded = await loadCommandConfig('token list', commonSpec, 'Usage: ledge token list', argv);
  if (!loaded) return;
  if (loaded.positionals.length) return usageError(io, 'list', `unexpected argument "${loaded.positionals[0]}"`);
  const store = createTokenStore({ core: await coreFor(loaded.config.kubeconfig), namespace: loaded.config.namespace });
  io.stdout(formatTokenTable(await store.list()));
}

async function revoke(argv: string[], io: TokenCliIo): Promise<void> {
  const loaded = await loadCommandConfig('token revoke', commonSpec, 'Usage: ledge token revoke <id>', argv);
  if (!loaded) return;
  const ids = loaded.positionals;
  if (!ids.length) return usageError(io, 'revoke', 'which token? give its id (ledge token list)');
  const store = createTokenStore({ core: await coreFor(loaded.config.kubeconfig), namespace: loaded.config.namespace });
  for (const id of ids) {
    // A whole pasted token revokes its id.
    const bare = id.split('.')[0]!;
    await store.revoke(bare);
    io.stdout(`token ${bare} revoked\n`);
  }
}
