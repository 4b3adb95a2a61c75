/**
 * @module
 * `ledge logs`, `ledge exec` and `ledge attach`: talk to CloudCore's stream server (CloudStream, the
 * kubelet API it serves) directly, for setups where the API server → kubelet path is not configured.
 *
 * Guarantees: the request is the kubelet's (`GET /containerLogs/…`, a WebSocket `/exec/…` or
 * `/attach/…` with `v5.channel.k8s.io`, else `v4.channel.k8s.io`), made over HTTPS with a client
 * certificate (--cert/--key or the kubeconfig's current user; never a token). Log bytes reach stdout
 * as they arrive; exec/attach output is split by channel (1 → stdout, 2 → stderr) and the process
 * exits with the remote command's exit code (the Status on channel 3). stdin is forwarded with
 * back-pressure and its end is signalled (v5: channel 255). A terminal put in raw mode is restored on
 * every exit path. Every failure is ONE line on stderr and a non-zero exit: 1 for a failed request,
 * 2 for a bad command line, 130/143 after SIGINT/SIGTERM. Part of the CLI only (dist/ledge.js).
 */
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { isIP, type createConnection as netCreateConnection } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { homedir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket, { type RawData } from 'ws';
import { ErrorCode, errorMessage } from '../shared/errors/index.js';
import { Channel, type StreamRequest } from '../shared/protocol/index.js';

declare const LEDGE_VERSION: string | undefined;
const userAgent = `ledge/${typeof LEDGE_VERSION === 'string' ? LEDGE_VERSION : 'dev'}`;

/** CloudStream's default address (the kubelet-port equivalent CloudCore serves). */
export const DEFAULT_STREAM_SERVER = 'https://127.0.0.1:10350';
/** Environment variable naming the stream server when --server is not given. */
export const STREAM_SERVER_ENV = 'LEDGE_STREAM_SERVER';
/** The local mode's kubeconfig (`ledge up`, default data directory), tried after $KUBECONFIG. */
export const LOCAL_KUBECONFIG = './.ledge/cloud/kubeconfig';
/** The serving certificate `ledge up`'s CloudStream made (self-signed): the CA for the default server. */
export const LOCAL_STREAM_CERT = './.ledge/cloud/cloudstream/server.crt';
/** Subprotocols offered for exec/attach, preferred first. */
export const CHANNEL_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'] as const;
/** How long connecting (up to the response headers / the upgrade) may take. */
const CONNECT_TIMEOUT_MS = 30_000;
/** At most this much of an error body or Status is read. */
const MAX_STATUS_BYTES = 64 * 1024;
/** stdin stops being read while this much is queued on the WebSocket, and resumes below the low mark. */
const STDIN_HIGH_WATER = 1024 * 1024;
const STDIN_LOW_WATER = 256 * 1024;

const common = `Connection (CloudStream, CloudCore's kubelet-API server):
      --server <url>                 stream server (default $${STREAM_SERVER_ENV}, else ${DEFAULT_STREAM_SERVER})
      --cert <file> --key <file>     client certificate and key (PEM)
      --kubeconfig <file>            else the client certificate of this kubeconfig's current user
                                     (default $KUBECONFIG, else ${LOCAL_KUBECONFIG}, else ~/.kube/config)
      --ca <file>                    verify CloudStream's serving certificate with this CA (use it in production)
      --insecure-skip-tls-verify     do not verify it, without the warning printed when --ca is not given
  -h, --help                         show this help`;

export const logsUsage = `Usage: ledge logs [-n <namespace>] <pod> [-c <container>] [options]

Prints a container's log, read from CloudCore's stream server directly (no API server involved).

Options:
  -n, --namespace <ns>       namespace (default: the kubeconfig context's, else "default")
  -c, --container <name>     container (default: the pod's only container)
  -f, --follow               keep streaming new lines
      --tail <n>             only the last n lines (-1: all)
      --since <duration>     only lines newer than this (10s, 5m, 1h, 1h30m)
      --since-time <time>    only lines after this RFC 3339 time
      --timestamps           prefix each line with its RFC 3339 timestamp
  -p, --previous             the previous (terminated) run of the container
      --limit-bytes <n>      at most n bytes
${common}

Exit codes: 0 the log was printed, 1 the request failed, 2 bad usage, 130/143 interrupted.
`;

export const execUsage = `Usage: ledge exec [-n <namespace>] <pod> [-c <container>] [-i] [-t] [options] -- <command> [args...]

Runs a command in a container, through CloudCore's stream server directly (no API server involved).

Options:
  -n, --namespace <ns>       namespace (default: the kubeconfig context's, else "default")
  -c, --container <name>     container (default: the pod's only container)
  -i, --stdin                pass stdin to the command (its end is sent as end of input)
  -t, --tty                  give the command a terminal (raw mode when stdin is one; size sent when stdout is one)
${common}

Exit codes: the command's exit code; 1 the request failed; 2 bad usage; 130/143 interrupted.
`;

export const attachUsage = `Usage: ledge attach [-n <namespace>] <pod> [-c <container>] [-i] [-t] [options]

Attaches to a running container's main process, through CloudCore's stream server directly.

Options:
  -n, --namespace <ns>       namespace (default: the kubeconfig context's, else "default")
  -c, --container <name>     container (default: the pod's only container)
  -i, --stdin                pass stdin to the container
  -t, --tty                  the container has a terminal (raw mode when stdin is one; size sent when stdout is one)
${common}

Exit codes: the container's exit code when it ends; 1 the request failed; 2 bad usage; 130/143 interrupted.
`;

/** A failure with the one line the user sees, its stable code and the exit code. */
class CliError extends Error {
  constructor(
    message: string,
    readonly code: ErrorCode,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

const usageError = (message: string, usage: string) => new CliError(`${message}\n\n${usage}`, ErrorCode.Config, 2);

type Rec = Record<string, unknown>;
const rec = (v: unknown): Rec => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Rec) : {});
const arr = (v: unknown): Rec[] => (Array.isArray(v) ? v.map(rec) : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

const UNITS_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, μs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go duration (`10s`, `5m`, `1h30m`, `1.5h`, `500ms`) in milliseconds; undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy;
  let total = 0;
  let at = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * UNITS_MS[m[2]!]!;
    at = re.lastIndex;
  }
  return at === text.length && at > 0 ? total : undefined;
}

/** The options of `GET /containerLogs`. */
export type LogsQuery = Pick<StreamRequest, 'follow' | 'tailLines' | 'sinceSeconds' | 'sinceTime' | 'timestamps' | 'previous' | 'limitBytes'>;

const seg = (s: string) => encodeURIComponent(s);

/** `/containerLogs/{ns}/{pod}/{container}?…`; no container → an empty last segment (the pod's only container). */
export function logsPath(namespace: string, pod: string, container: string | undefined, q: LogsQuery): string {
  const p = new URLSearchParams();
  if (q.follow) p.set('follow', 'true');
  if (q.tailLines !== undefined) p.set('tailLines', String(q.tailLines));
  if (q.sinceSeconds !== undefined) p.set('sinceSeconds', String(q.sinceSeconds));
  if (q.sinceTime !== undefined) p.set('sinceTime', q.sinceTime);
  if (q.timestamps) p.set('timestamps', 'true');
  if (q.previous) p.set('previous', 'true');
  if (q.limitBytes !== undefined) p.set('limitBytes', String(q.limitBytes));
  const qs = p.toString();
  return `/containerLogs/${seg(namespace)}/${seg(pod)}/${seg(container ?? '')}${qs ? `?${qs}` : ''}`;
}

/** `/exec/{ns}/{pod}/{container}?command=…&input=1&output=1&error=1&tty=1` (or `/attach/…` without a command). */
export function streamPath(
  kind: 'exec' | 'attach',
  namespace: string,
  pod: string,
  container: string | undefined,
  o: { command?: string[]; stdin: boolean; tty: boolean },
): string {
  const p = new URLSearchParams();
  for (const c of o.command ?? []) p.append('command', c);
  if (o.stdin) p.set('input', '1');
  p.set('output', '1');
  // With a terminal everything comes on stdout (as kubectl asks).
  if (!o.tty) p.set('error', '1');
  if (o.tty) p.set('tty', '1');
  return `/${kind}/${seg(namespace)}/${seg(pod)}/${seg(container ?? '')}?${p.toString()}`;
}

/** What a channel-3 Status (or its absence) means for the exit: the code, and a line to print, if any. */
export function statusOutcome(status: unknown): { exitCode: number; message?: string } {
  const s = rec(status);
  if (s.status === 'Success') return { exitCode: 0 };
  if (s.reason === 'NonZeroExitCode') {
    const cause = arr(rec(s.details).causes).find((c) => c.reason === 'ExitCode');
    const code = Number.parseInt(str(cause?.message), 10);
    if (Number.isInteger(code) && code > 0) return { exitCode: code };
  }
  return { exitCode: 1, message: str(s.message) || `the stream failed: ${JSON.stringify(status).slice(0, 300)}` };
}

/** A client certificate and key (PEM), and where they came from (for messages). */
export interface ClientCredentials {
  cert: Buffer;
  key: Buffer;
  source: string;
  /** The kubeconfig context's namespace, when the credentials came from a kubeconfig. */
  namespace?: string;
}

function readFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : errorMessage(err);
    throw new CliError(`cannot read ${what} ${file}: ${why}`, ErrorCode.Config);
  }
}

/** The kubeconfig to read: the flag, else the first existing file of $KUBECONFIG, else the local mode's, else ~/.kube/config. */
function kubeconfigPath(flag: string | undefined, env: NodeJS.ProcessEnv): { path?: string; tried: string[] } {
  if (flag) return { path: flag, tried: [flag] };
  const fromEnv = (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean);
  if (fromEnv.length) return { path: fromEnv.find((f) => existsSync(f)), tried: fromEnv.map((f) => `${f} ($KUBECONFIG)`) };
  const home = join(homedir(), '.kube', 'config');
  const candidates = [LOCAL_KUBECONFIG, home];
  return { path: candidates.find((f) => existsSync(f)), tried: candidates };
}

/**
 * The client certificate: --cert/--key, else the kubeconfig's current user
 * (client-certificate-data/client-key-data, or the client-certificate/client-key files, relative to the kubeconfig).
 */
export async function loadCredentials(flags: { cert?: string; key?: string; kubeconfig?: string }, env: NodeJS.ProcessEnv = process.env): Promise<ClientCredentials> {
  if (flags.cert !== undefined || flags.key !== undefined) {
    if (flags.cert === undefined || flags.key === undefined) throw new CliError('--cert and --key go together: pass both', ErrorCode.Config, 2);
    return { cert: readFile(flags.cert, 'client certificate'), key: readFile(flags.key, 'client key'), source: `--cert ${flags.cert}` };
  }
  const { path, tried } = kubeconfigPath(flags.kubeconfig, env);
  if (!path) {
    throw new CliError(
      `no client certificate for CloudStream: pass --cert and --key, or --kubeconfig <file> whose user has one (looked for ${tried.join(', ')})`,
      ErrorCode.Config,
    );
  }
  const { parse } = await import('yaml');
  let doc: Rec;
  try {
    doc = rec(parse(readFile(path, 'kubeconfig').toString('utf8')));
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`kubeconfig ${path} is not valid YAML: ${errorMessage(err).split('\n')[0]}`, ErrorCode.Config);
  }
  const contexts = arr(doc.contexts);
  const users = arr(doc.users);
  const currentName = str(doc['current-context']);
  const context = currentName ? rec(contexts.find((c) => c.name === currentName)?.context) : contexts.length === 1 ? rec(contexts[0]!.context) : undefined;
  if (currentName && !contexts.some((c) => c.name === currentName)) throw new CliError(`kubeconfig ${path}: current context "${currentName}" is not defined`, ErrorCode.Config);
  const userName = context ? str(context.user) : users.length === 1 ? str(users[0]!.name) : '';
  if (!userName) throw new CliError(`kubeconfig ${path} has no current context naming a user: pass --cert and --key`, ErrorCode.Config);
  const entry = users.find((u) => u.name === userName);
  if (!entry) throw new CliError(`kubeconfig ${path}: user "${userName}" is not defined`, ErrorCode.Config);
  const user = rec(entry.user);
  const base = dirname(resolve(path));
  const pemOf = (dataKey: string, fileKey: string, what: string): Buffer | undefined => {
    const data = str(user[dataKey]);
    if (data) return Buffer.from(data, 'base64');
    const file = str(user[fileKey]);
    return file ? readFile(resolve(base, file), what) : undefined;
  };
  const cert = pemOf('client-certificate-data', 'client-certificate', 'client certificate');
  const key = pemOf('client-key-data', 'client-key', 'client key');
  if (!cert || !key) {
    const other = ['token', 'tokenFile', 'exec', 'auth-provider', 'username'].find((k) => user[k] !== undefined);
    const has = cert ? 'a client certificate but no key' : other ? `only ${other === 'username' ? 'a username/password' : `a ${other}`}` : 'no client certificate';
    throw new CliError(
      `kubeconfig ${path}: user "${userName}" has ${has}; CloudStream authenticates client certificates: pass --cert and --key, or a kubeconfig whose user has client-certificate-data and client-key-data`,
      ErrorCode.Config,
    );
  }
  const namespace = str(context?.namespace) || undefined;
  return { cert, key, source: `kubeconfig ${path} (user "${userName}")`, ...(namespace ? { namespace } : {}) };
}

/** The stream server's base URL: https only (CloudStream serves HTTPS), no trailing slash. */
export function serverBase(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const raw = flag || env[STREAM_SERVER_ENV] || DEFAULT_STREAM_SERVER;
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `https://${raw}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new CliError(`invalid stream server URL "${raw}"`, ErrorCode.Config, 2);
  }
  if (u.protocol === 'wss:') u.protocol = 'https:';
  if (u.protocol !== 'https:') throw new CliError(`the stream server URL must be https:// (CloudStream serves HTTPS), got "${raw}"`, ErrorCode.Config, 2);
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

interface Target {
  base: string;
  tls: Pick<RequestOptions, 'cert' | 'key' | 'ca' | 'rejectUnauthorized'>;
  credentials: ClientCredentials;
  caFile?: string;
  /** Set once the TLS handshake completed: a reset after it (TLS 1.3) is the server refusing the client certificate. */
  handshake: { done: boolean };
}

/** tls.connect for https.request and ws (as ws does it: no SNI for an IP), noting when the handshake completed. */
function connector(t: Target): (options: ConnectionOptions) => TLSSocket {
  return (options) => {
    const host = options.host ?? 'localhost';
    const socket = tlsConnect({ ...options, path: undefined, servername: options.servername || (isIP(host) ? '' : host) } as ConnectionOptions);
    socket.once('secureConnect', () => (t.handshake.done = true));
    return socket;
  };
}

interface CommonValues {
  server?: string;
  kubeconfig?: string;
  cert?: string;
  key?: string;
  ca?: string;
  'insecure-skip-tls-verify'?: boolean;
}

async function target(given: CommonValues, command: string): Promise<Target> {
  const base = serverBase(given.server);
  if (given.ca !== undefined && given['insecure-skip-tls-verify']) throw new CliError('--ca and --insecure-skip-tls-verify exclude each other', ErrorCode.Config, 2);
  const credentials = await loadCredentials(given);
  // `ledge up`'s CloudStream on this machine: its self-signed certificate is on disk, so it is verified without --ca.
  const local = given.ca === undefined && !given['insecure-skip-tls-verify'] && base === DEFAULT_STREAM_SERVER && existsSync(LOCAL_STREAM_CERT);
  const values: CommonValues = local ? { ...given, ca: LOCAL_STREAM_CERT } : given;
  if (values.ca !== undefined) {
    return {
      base,
      credentials,
      caFile: values.ca,
      tls: { cert: credentials.cert, key: credentials.key, ca: readFile(values.ca, 'CA'), rejectUnauthorized: true },
      handshake: { done: false },
    };
  }
  if (!values['insecure-skip-tls-verify']) {
    process.stderr.write(`ledge ${command}: warning: CloudStream's certificate is not verified (pass --ca <file> to verify it; --insecure-skip-tls-verify to silence this)\n`);
  }
  return { base, credentials, tls: { cert: credentials.cert, key: credentials.key, rejectUnauthorized: false }, handshake: { done: false } };
}

const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** One line for a failure to reach or talk TLS with the stream server. */
function connectError(t: Target, err: unknown): CliError {
  if (err instanceof CliError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? '';
  const msg = errorMessage(err);
  if (TLS_VERIFY_CODES.has(code)) {
    return new CliError(`cannot verify CloudStream's certificate at ${t.base}: ${msg} (${code}); is --ca ${t.caFile} the CA that signed it?`, ErrorCode.Tls);
  }
  // TLS 1.3: the server checks the client certificate after the client's handshake ended; a refusal is an alert, or a reset.
  if (/alert|certificate required/i.test(`${code} ${msg}`) || (t.handshake.done && (code === 'ECONNRESET' || code === 'EPIPE' || /socket hang up/.test(msg)))) {
    return new CliError(
      `CloudStream at ${t.base} refused the TLS connection (${code || msg}): it does not accept the client certificate from ${t.credentials.source}`,
      ErrorCode.Tls,
    );
  }
  if (code.startsWith('ERR_OSSL') || /PEM|key values mismatch/i.test(msg)) {
    return new CliError(`cannot use the client certificate and key from ${t.credentials.source}: ${msg}`, ErrorCode.Config);
  }
  if (code === 'ETIMEDOUT' || e.name === 'TimeoutError') {
    return new CliError(`CloudStream at ${t.base} did not answer within ${CONNECT_TIMEOUT_MS / 1000} s (--server or ${STREAM_SERVER_ENV} to point elsewhere)`, ErrorCode.Timeout);
  }
  const why = code === 'ECONNREFUSED' ? 'connection refused' : code || msg;
  return new CliError(
    `CloudStream not reachable at ${t.base} (${why}): is CloudCore running with its stream server? (--server or ${STREAM_SERVER_ENV} to point elsewhere)`,
    ErrorCode.Disconnected,
  );
}

/** Reads at most MAX_STATUS_BYTES of a response. */
function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((done) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = () => done(Buffer.concat(chunks).toString('utf8'));
    res.on('data', (c: Buffer) => {
      if (size >= MAX_STATUS_BYTES) return;
      chunks.push(c);
      size += c.length;
      if (size >= MAX_STATUS_BYTES) {
        res.destroy();
        finish();
      }
    });
    res.once('end', finish);
    res.once('error', finish);
    res.once('close', finish);
  });
}

/** The one line for an HTTP error answer: kubectl's `Error from server (Reason): message`. */
function httpError(t: Target, status: number, body: string): CliError {
  let s: Rec = {};
  try {
    s = rec(JSON.parse(body));
  } catch {
    // Not a Status: the text itself.
  }
  const message = str(s.message) || body.trim().slice(0, 300) || `HTTP ${status}`;
  const reason = str(s.reason) || String(status);
  const hint = status === 401 ? ` (CloudStream did not accept the client certificate from ${t.credentials.source})` : '';
  const code = status === 404 ? ErrorCode.NotFound : status === 401 || status === 403 ? ErrorCode.Forbidden : status === 503 ? ErrorCode.Disconnected : ErrorCode.StreamRequest;
  return new CliError(`Error from server (${reason}): ${message}${hint}`, code);
}

/** Exit status after a stop signal (the shell's 128 + signal number). */
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

/** Calls `onSignal` on SIGINT/SIGTERM/SIGHUP until the returned function removes the handlers. */
function onStopSignals(onSignal: (exitCode: number) => void): () => void {
  const handlers = Object.entries(SIGNAL_EXIT).map(([sig, code]) => {
    const h = () => onSignal(code);
    process.on(sig, h);
    return [sig, h] as const;
  });
  return () => {
    for (const [sig, h] of handlers) process.off(sig, h);
  };
}

/** Runs one command's body; its CliError becomes the one stderr line and the exit code. */
async function runCommand(argv: string[], usage: string, body: (argv: string[]) => Promise<number>): Promise<void> {
  try {
    if (argv.includes('-h') || argv.includes('--help')) {
      const dash = argv.indexOf('--');
      const help = argv.findIndex((a) => a === '-h' || a === '--help');
      if (dash < 0 || help < dash) {
        process.stdout.write(usage);
        return;
      }
    }
    process.exitCode = await body(argv);
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exitCode = err.exitCode;
  }
}

const commonOptions = {
  namespace: { type: 'string', short: 'n' },
  container: { type: 'string', short: 'c' },
  server: { type: 'string' },
  kubeconfig: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
  'insecure-skip-tls-verify': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `POD`, `pod/POD` or `pods/POD` (kubectl's forms); other resource types need the API server. */
function podName(word: string, usage: string): string {
  const slash = word.indexOf('/');
  if (slash < 0) return word;
  const type = word.slice(0, slash).toLowerCase();
  const name = word.slice(slash + 1);
  if (!['pod', 'pods', 'po'].includes(type) || !name) throw usageError(`"${word}": ledge talks to CloudStream directly and takes a pod name only`, usage);
  return name;
}

function parseOrUsage<T>(usage: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw usageError(errorMessage(err), usage);
  }
}

function intFlag(name: string, value: string | undefined, min: number, usage: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value) || Number(value) < min || !Number.isSafeInteger(Number(value))) throw usageError(`--${name} must be an integer ≥ ${min}, got "${value}"`, usage);
  return Number(value);
}

/** `ledge logs …`. */
export function runLogs(argv: string[]): Promise<void> {
  return runCommand(argv, logsUsage, logs);
}

/** `--tail -1` as kubectl takes it (parseArgs would take "-1" for an option). */
function joinNegativeValues(argv: string[], flags: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (flags.includes(a) && next !== undefined && /^-\d+$/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

async function logs(argv: string[]): Promise<number> {
  const { values, positionals } = parseOrUsage(logsUsage, () =>
    parseArgs({
      args: joinNegativeValues(argv, ['--tail', '--limit-bytes']),
      allowPositionals: true,
      strict: true,
      options: {
        ...commonOptions,
        follow: { type: 'boolean', short: 'f' },
        tail: { type: 'string' },
        since: { type: 'string' },
        'since-time': { type: 'string' },
        timestamps: { type: 'boolean' },
        previous: { type: 'boolean', short: 'p' },
        'limit-bytes': { type: 'string' },
      },
    }),
  );
  const [podWord, containerWord, ...extra] = positionals;
  if (!podWord) throw usageError('a pod name is required', logsUsage);
  if (extra.length || (containerWord !== undefined && values.container !== undefined)) throw usageError(`unexpected arguments: ${positionals.slice(1).join(' ')}`, logsUsage);
  const pod = podName(podWord, logsUsage);
  const tail = intFlag('tail', values.tail, -1, logsUsage);
  const limitBytes = intFlag('limit-bytes', values['limit-bytes'], 1, logsUsage);
  if (values.since !== undefined && values['since-time'] !== undefined) throw usageError('--since and --since-time exclude each other', logsUsage);
  let sinceSeconds: number | undefined;
  if (values.since !== undefined) {
    const ms = parseDuration(values.since);
    if (ms === undefined) throw usageError(`invalid --since "${values.since}": a duration like 10s, 5m, 1h`, logsUsage);
    sinceSeconds = ms > 0 ? Math.ceil(ms / 1000) : undefined;
  }
  const sinceTime = values['since-time'];
  if (sinceTime !== undefined && Number.isNaN(Date.parse(sinceTime)))
    throw usageError(`invalid --since-time "${sinceTime}": an RFC 3339 time like 2024-05-01T10:00:00Z`, logsUsage);
  const t = await target(values, 'logs');
  const namespace = values.namespace ?? t.credentials.namespace ?? 'default';
  const path = logsPath(namespace, pod, values.container ?? containerWord, {
    follow: values.follow,
    ...(tail !== undefined && tail >= 0 ? { tailLines: tail } : {}),
    ...(sinceSeconds !== undefined ? { sinceSeconds } : {}),
    ...(sinceTime !== undefined ? { sinceTime } : {}),
    timestamps: values.timestamps,
    previous: values.previous,
    ...(limitBytes !== undefined ? { limitBytes } : {}),
  });
  return await streamLogs(t, path);
}

/** GET the log and copy the body to stdout as it arrives (with stdout's back-pressure). */
function streamLogs(t: Target, path: string): Promise<number> {
  return new Promise<number>((resolveExit, reject) => {
    let settled = false;
    const finish = (result: number | CliError) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      removeSignals();
      process.stdout.off('error', onStdoutError);
      req.destroy();
      if (typeof result === 'number') resolveExit(result);
      else reject(result);
    };
    const req = httpsRequest(`${t.base}${path}`, {
      method: 'GET',
      headers: { Accept: '*/*', 'User-Agent': userAgent },
      ...t.tls,
      // No agent: one connection, closed at the end.
      createConnection: connector(t) as RequestOptions['createConnection'],
    });
    const connectTimer = setTimeout(() => finish(connectError(t, Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }))), CONNECT_TIMEOUT_MS);
    const removeSignals = onStopSignals((code) => finish(code));
    // `ledge logs -f … | head`: the reader went away; that is an end, not an error.
    const onStdoutError = (err: NodeJS.ErrnoException) => finish(err.code === 'EPIPE' ? 0 : new CliError(`cannot write the log: ${errorMessage(err)}`, ErrorCode.Ledge));
    process.stdout.on('error', onStdoutError);
    req.on('error', (err) => finish(connectError(t, err)));
    req.on('response', (res) => {
      clearTimeout(connectTimer);
      if (res.statusCode !== 200) {
        void readBody(res).then((body) => finish(httpError(t, res.statusCode ?? 0, body)));
        return;
      }
      res.on('data', (chunk: Buffer) => {
        if (!process.stdout.write(chunk) && !res.isPaused()) {
          res.pause();
          process.stdout.once('drain', () => res.resume());
        }
      });
      res.once('end', () => finish(0));
      // The connection broke before the body's end (a chunked body cut short).
      res.once('aborted', () => finish(new CliError(`the log stream from ${t.base} was cut off before its end`, ErrorCode.Disconnected)));
      res.once('error', (err) => finish(new CliError(`the log stream from ${t.base} failed: ${errorMessage(err)}`, ErrorCode.Disconnected)));
      res.once('close', () => {
        if (!res.complete) finish(new CliError(`the log stream from ${t.base} was cut off before its end`, ErrorCode.Disconnected));
      });
    });
    req.end();
  });
}

/** `ledge exec …`. */
export function runExec(argv: string[]): Promise<void> {
  return runCommand(argv, execUsage, (a) => interactive('exec', a));
}

/** `ledge attach …`. */
export function runAttach(argv: string[]): Promise<void> {
  return runCommand(argv, attachUsage, (a) => interactive('attach', a));
}

async function interactive(kind: 'exec' | 'attach', argv: string[]): Promise<number> {
  const usage = kind === 'exec' ? execUsage : attachUsage;
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const command = dash < 0 ? [] : argv.slice(dash + 1);
  const { values, positionals } = parseOrUsage(usage, () =>
    parseArgs({ args: own, allowPositionals: true, strict: true, options: { ...commonOptions, stdin: { type: 'boolean', short: 'i' }, tty: { type: 'boolean', short: 't' } } }),
  );
  const [podWord, ...extra] = positionals;
  if (!podWord) throw usageError('a pod name is required', usage);
  if (kind === 'exec') {
    if (extra.length) throw usageError(`put the command after "--": ledge exec ${podWord} -- ${extra.join(' ')}`, usage);
    if (!command.length) throw usageError('a command is required after "--"', usage);
  } else if (extra.length || dash >= 0) {
    throw usageError(`ledge attach takes no command (got ${[...extra, ...command].join(' ')})`, usage);
  }
  const pod = podName(podWord, usage);
  const stdin = values.stdin === true;
  const tty = values.tty === true;
  const t = await target(values, kind);
  const namespace = values.namespace ?? t.credentials.namespace ?? 'default';
  const path = streamPath(kind, namespace, pod, values.container, { ...(kind === 'exec' ? { command } : {}), stdin, tty });
  return await channelSession(t, path, { stdin, tty });
}

/** The WebSocket session of exec/attach: channels in and out, until the server closes. */
function channelSession(t: Target, path: string, o: { stdin: boolean; tty: boolean }): Promise<number> {
  return new Promise<number>((resolveExit, reject) => {
    const ws = new WebSocket(`${t.base.replace(/^https:/, 'wss:')}${path}`, [...CHANNEL_PROTOCOLS], {
      ...t.tls,
      handshakeTimeout: CONNECT_TIMEOUT_MS,
      // ws types this option as net.createConnection (overloaded); it is called with the TLS options, like ws's own.
      createConnection: connector(t) as unknown as typeof netCreateConnection,
      perMessageDeflate: false,
      headers: { 'User-Agent': userAgent },
    });
    let settled = false;
    let opened = false;
    let raw = false;
    const status: Buffer[] = [];
    let statusBytes = 0;
    // stdin is not touched without -i (reading it could keep the process alive).
    const input = o.stdin ? process.stdin : undefined;

    const restoreTerminal = () => {
      if (raw && input) {
        raw = false;
        try {
          input.setRawMode(false);
        } catch {
          // The terminal is gone: nothing to restore.
        }
      }
    };
    const finish = (result: number | CliError) => {
      if (settled) return;
      settled = true;
      restoreTerminal();
      process.off('exit', restoreTerminal);
      removeSignals();
      process.off('SIGWINCH', sendSize);
      process.stdout.off('error', onOutputError);
      process.stderr.off('error', onOutputError);
      if (input) {
        input.off('data', onStdin);
        input.off('end', onStdinEnd);
        input.pause();
        // A stdin the user still holds open must not keep this process alive once the remote side ended.
        (input as { unref?: () => void }).unref?.();
      }
      if (ws.readyState === WebSocket.OPEN) {
        ws.close(1000);
        // A server that does not answer the close frame must not keep this process alive.
        setTimeout(() => ws.terminate(), 1000).unref();
      } else if (ws.readyState === WebSocket.CONNECTING) {
        ws.terminate();
      }
      if (typeof result === 'number') resolveExit(result);
      else reject(result);
    };
    const removeSignals = onStopSignals((code) => finish(code));
    process.on('exit', restoreTerminal);
    const onOutputError = (err: NodeJS.ErrnoException) => finish(err.code === 'EPIPE' ? 0 : new CliError(`cannot write the output: ${errorMessage(err)}`, ErrorCode.Ledge));
    process.stdout.on('error', onOutputError);
    process.stderr.on('error', onOutputError);

    const send = (channel: number, payload: Uint8Array, cb?: () => void) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      const frame = Buffer.allocUnsafe(payload.length + 1);
      frame[0] = channel;
      frame.set(payload, 1);
      ws.send(frame, { binary: true }, cb);
    };
    const sendSize = () => {
      const { columns, rows } = process.stdout;
      if (columns && rows) send(Channel.Resize, Buffer.from(JSON.stringify({ Width: columns, Height: rows })));
    };
    const onStdin = (chunk: Buffer | string) => {
      send(Channel.Stdin, typeof chunk === 'string' ? Buffer.from(chunk) : chunk, () => {
        if (input?.isPaused() && ws.bufferedAmount < STDIN_LOW_WATER && !settled) input.resume();
      });
      if (ws.bufferedAmount > STDIN_HIGH_WATER) input?.pause();
    };
    const onStdinEnd = () => {
      // v4 has no way to say "end of input"; v5 closes the stdin channel.
      if (ws.protocol === CHANNEL_PROTOCOLS[0]) send(Channel.Close, Uint8Array.of(Channel.Stdin));
    };

    // Output back-pressure: while stdout or stderr is full, stop reading the socket (the server then stops sending).
    let blocked = 0;
    const write = (out: NodeJS.WriteStream, payload: Buffer) => {
      if (payload.length === 0) return;
      if (!out.write(payload)) {
        if (blocked++ === 0) ws.pause();
        out.once('drain', () => {
          if (--blocked === 0 && !settled) ws.resume();
        });
      }
    };

    ws.on('unexpected-response', (req, res) => {
      void readBody(res).then((body) => {
        finish(httpError(t, res.statusCode ?? 0, body));
        req.destroy();
      });
    });
    ws.on('error', (err) =>
      finish(opened ? new CliError(`the ${path.split('/')[1]} stream from ${t.base} failed: ${errorMessage(err)}`, ErrorCode.StreamProtocol) : connectError(t, err)),
    );
    ws.on('open', () => {
      opened = true;
      if (o.tty && process.stdout.isTTY) {
        sendSize();
        process.on('SIGWINCH', sendSize);
      }
      if (input) {
        if (o.tty && input.isTTY) {
          input.setRawMode(true);
          raw = true;
        }
        input.on('data', onStdin);
        input.once('end', onStdinEnd);
        input.resume();
      }
    });
    ws.on('message', (data: RawData) => {
      const msg = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (msg.length === 0) return;
      const payload = msg.subarray(1);
      switch (msg[0]) {
        case Channel.Stdout:
          write(process.stdout, payload);
          break;
        case Channel.Stderr:
          write(process.stderr, payload);
          break;
        case Channel.Error:
          if (statusBytes + payload.length <= MAX_STATUS_BYTES) {
            status.push(Buffer.from(payload));
            statusBytes += payload.length;
          }
          break;
        default:
        // Other channels (resize, close) are not sent to a client.
      }
    });
    ws.on('close', (code, reason) => {
      if (settled) return;
      if (statusBytes > 0) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.concat(status).toString('utf8'));
        } catch {
          parsed = { status: 'Failure', message: Buffer.concat(status).toString('utf8').trim() };
        }
        const outcome = statusOutcome(parsed);
        if (outcome.message) return finish(new CliError(outcome.message, ErrorCode.StreamRequest, outcome.exitCode));
        return finish(outcome.exitCode);
      }
      // No Status: a clean close is a success (as kubectl takes it); anything else lost the stream.
      if (code === 1000 || code === 1005) return finish(0);
      const why = code === 1006 ? 'the connection was lost' : `closed with ${code}${reason.length ? ` ${reason.toString('utf8')}` : ''}`;
      finish(new CliError(`the ${path.split('/')[1]} stream from ${t.base} ended without a status: ${why}`, ErrorCode.Disconnected));
    });
  });
}
