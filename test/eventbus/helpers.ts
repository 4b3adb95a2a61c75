/**
 * Helpers of the device bus tests: a private Mosquitto broker (its own config, port and temporary
 * directory), mosquitto_pub / mosquitto_sub as independent clients, an EventBus run as a Beehive
 * module, and a logger whose lines the tests read.
 *
 * Mosquitto comes from build/tools.mjs (ensureMosquitto: Debian's mosquitto and mosquitto-clients);
 * {@link mosquittoSkipReason} says why the tests that need it cannot run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Beehive } from '../../shared/beehive/index.js';
import { createLogger, type Logger } from '../../shared/log/index.js';
import { createEventBus, defaultEventBusOptions, type EventBus, type EventBusOptions } from '../../edge/eventbus/index.js';
import { eventually, repoRoot, within } from '../helpers/process.js';

export interface MosquittoMarker {
  mosquitto: string;
  mosquitto_pub: string;
  mosquitto_sub: string;
  mosquitto_passwd: string;
  version: string;
}

const markerFile = join(repoRoot, '.tools/mosquitto/ready.json');

export function mosquittoMarker(): MosquittoMarker | undefined {
  try {
    return JSON.parse(readFileSync(markerFile, 'utf8')) as MosquittoMarker;
  } catch {
    return undefined;
  }
}

/** Why the Mosquitto tests cannot run here (one sentence naming what to do), or undefined. */
export function mosquittoSkipReason(): string | undefined {
  const m = mosquittoMarker();
  if (!m) return 'Mosquitto is not provisioned (no .tools/mosquitto/ready.json): run `sudo npm run tools` (it says why it could not)';
  for (const p of [m.mosquitto, m.mosquitto_pub, m.mosquitto_sub, m.mosquitto_passwd])
    if (!p || !existsSync(p)) return `Mosquitto provisioning is incomplete (${p} is missing): run \`sudo npm run tools\``;
  return undefined;
}

function tools(): MosquittoMarker {
  const m = mosquittoMarker();
  if (!m) throw new Error(mosquittoSkipReason());
  return m;
}

/** A free loopback port (for Mosquitto, which cannot report the port it picked, and for restarts on the same port). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  await new Promise<void>((r) => server.close(() => r()));
  if (a === null || typeof a !== 'object') throw new Error('no port');
  return a.port;
}

export interface MosquittoOptions {
  dir: string;
  port?: number;
  /** username → password: a password_file (mosquitto_passwd) and no anonymous access. */
  users?: Record<string, string>;
  /** TLS listener: PEM files. With `requireCertificate` the client must present a certificate signed by `ca`. */
  tls?: { ca: string; cert: string; key: string; requireCertificate?: boolean };
  /** Extra config lines. */
  extra?: string[];
}

export interface Mosquitto {
  port: number;
  child: ChildProcess;
  output(): string;
  /** SIGSTOP / SIGCONT: a broker that holds the connection and answers nothing. */
  pause(): void;
  resume(): void;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a private Mosquitto (config in `dir`) and waits until it listens. */
export async function startMosquitto(o: MosquittoOptions): Promise<Mosquitto> {
  const m = tools();
  const port = o.port ?? (await freePort());
  const conf = join(o.dir, `mosquitto-${port}.conf`);
  const lines = ['log_dest stderr', 'log_type all', 'persistence false', `listener ${port} 127.0.0.1`];
  // As root Mosquitto would switch to its own user, which cannot read our temporary directory.
  if (process.getuid?.() === 0) lines.unshift('user root');
  if (o.users) {
    const pw = join(o.dir, `passwd-${port}`);
    writeFileSync(pw, '');
    for (const [u, p] of Object.entries(o.users)) await run(m.mosquitto_passwd, ['-b', pw, u, p]);
    lines.push('allow_anonymous false', `password_file ${pw}`);
  } else lines.push('allow_anonymous true');
  if (o.tls) {
    lines.push(`cafile ${o.tls.ca}`, `certfile ${o.tls.cert}`, `keyfile ${o.tls.key}`);
    if (o.tls.requireCertificate) lines.push('require_certificate true');
  }
  lines.push(...(o.extra ?? []));
  writeFileSync(conf, `${lines.join('\n')}\n`);
  const child = spawn(m.mosquitto, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const onData = (d: Buffer) => {
    out += d.toString();
    if (process.env.LEDGE_TEST_VERBOSE) process.stderr.write(`[mosquitto] ${d}`);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await eventually(() => out.includes('running') || child.exitCode !== null, 10_000, 'mosquitto to start');
  if (child.exitCode !== null) throw new Error(`mosquitto exited: ${out}`);
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    port,
    child,
    output: () => out,
    pause: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT'),
    async kill9() {
      if (!alive()) return;
      child.kill('SIGKILL');
      await within(exited, 10_000, 'mosquitto to die');
    },
    async stop() {
      if (!alive()) return;
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await within(exited, 10_000, 'mosquitto to stop');
      clearTimeout(t);
    },
  };
}

/** Runs a command to its end (at most `timeoutMs`); its exit code and output. Never blocks the event loop (the broker under test is in this process). */
export function run(cmd: string, args: string[], opts: { input?: string | Buffer; timeoutMs?: number } = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not end within ${opts.timeoutMs ?? 20_000} ms; stderr: ${err}`));
    }, opts.timeoutMs ?? 20_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
    // A command that does not read its input (mosquitto_pub -m) may exit first: EPIPE is no failure.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

export interface ClientFlags {
  port: number;
  qos?: 0 | 1 | 2;
  user?: string;
  password?: string;
  tls?: { ca: string; cert?: string; key?: string };
  id?: string;
}

function connectArgs(f: ClientFlags): string[] {
  return [
    '-h',
    '127.0.0.1',
    '-p',
    String(f.port),
    '-q',
    String(f.qos ?? 1),
    ...(f.user ? ['-u', f.user] : []),
    ...(f.password ? ['-P', f.password] : []),
    ...(f.tls ? ['--cafile', f.tls.ca, ...(f.tls.cert ? ['--cert', f.tls.cert, '--key', f.tls.key!] : [])] : []),
    ...(f.id ? ['-i', f.id] : []),
  ];
}

/** mosquitto_pub: one message (or `-f file`, `--repeat`…: `extra`). Resolves with the exit code and stderr. */
export function mqttPub(f: ClientFlags, topic: string, message: string | undefined, extra: string[] = []): Promise<{ code: number | null; out: string; err: string }> {
  return run(tools().mosquitto_pub, [...connectArgs(f), '-t', topic, ...(message !== undefined ? ['-m', message] : []), ...extra]);
}

export interface Sub {
  /** Lines received so far ("topic payload"). */
  lines(): string[];
  /** Resolves once `n` lines arrived (or rejects after `timeoutMs`). */
  waitLines(n: number, timeoutMs?: number): Promise<string[]>;
  stop(): Promise<void>;
  exited: Promise<number | null>;
  stderr(): string;
  /** Everything mosquitto_sub printed, its -d protocol trace included. */
  trace(): string;
}

/** mosquitto_sub -v on `filter`; resolves once the broker acknowledged the subscription (SUBACK). */
export async function mqttSub(f: ClientFlags, filter: string, extra: string[] = []): Promise<Sub> {
  // stdbuf: mosquitto_sub's protocol trace (-d) is block-buffered on a pipe; the SUBACK line must arrive when it happens.
  const child = spawn('stdbuf', ['-oL', tools().mosquitto_sub, ...connectArgs(f), '-t', filter, '-v', '-d', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  // With -d, the client's protocol trace goes to stdout; the messages are the other lines.
  const lines = () =>
    out
      .split('\n')
      .filter((l) => l.length > 0 && !/^Client \S+ (sending|received) /.test(l) && !l.startsWith('Subscribed (mid'))
      .map((l) => l.trimEnd());
  await within(
    Promise.race([
      eventually(() => out.includes('received SUBACK'), 10_000, 'mosquitto_sub to subscribe'),
      exited.then(() => {
        // With -C n it may be done before we looked.
        if (!out.includes('received SUBACK')) throw new Error(`mosquitto_sub exited: ${out}${err}`);
      }),
    ]),
    11_000,
    'mosquitto_sub',
  );
  return {
    lines,
    waitLines: (n, timeoutMs = 10_000) => eventually(() => (lines().length >= n ? lines() : undefined), timeoutMs, `${n} messages on ${filter} (have: ${JSON.stringify(lines())})`),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await within(exited, 10_000, 'mosquitto_sub to stop');
    },
    exited,
    stderr: () => err,
    trace: () => out,
  };
}

export interface LogCapture {
  log: Logger;
  lines(): { level: string; msg: string; [k: string]: unknown }[];
  /** Lines whose message matches `re`. */
  matching(re: RegExp): { level: string; msg: string; [k: string]: unknown }[];
}

export function captureLog(): LogCapture {
  const lines: { level: string; msg: string }[] = [];
  const log = createLogger({
    level: 'debug',
    format: 'json',
    write: (l) => {
      lines.push(JSON.parse(l));
      if (process.env.LEDGE_TEST_VERBOSE) process.stderr.write(`[bus] ${l}`);
    },
  });
  return { log, lines: () => lines, matching: (re) => lines.filter((l) => re.test(l.msg)) };
}

export type PartialBusOptions = Partial<Omit<EventBusOptions, 'internal' | 'external'>> & {
  internal?: Partial<EventBusOptions['internal']>;
  external?: Partial<EventBusOptions['external']>;
};

export interface RunningBus {
  bus: EventBus;
  bee: Beehive;
  stop(): Promise<void>;
}

/** An EventBus run as a Beehive module, as EdgeCore runs it. Waits for the embedded broker to listen when the mode has one. */
export async function startBus(o: PartialBusOptions, log: Logger, wait = { listening: true }): Promise<RunningBus> {
  const options: EventBusOptions = {
    ...defaultEventBusOptions,
    ...o,
    internal: { ...defaultEventBusOptions.internal, port: 0, ...o.internal },
    external: { ...defaultEventBusOptions.external, ...o.external },
  };
  const bus = createEventBus(options, log);
  const bee = new Beehive({ log });
  bee.register(bus);
  bee.start();
  if (wait.listening && (options.mode === 'internal' || options.mode === 'both')) await eventually(() => bus.address(), 10_000, 'the embedded broker to listen');
  return { bus, bee, stop: () => bee.stop() };
}

/** Collects what a bus handler receives. */
export function collector(): {
  handler: (m: { topic: string; payload: Buffer; qos: 0 | 1; retain: boolean }) => void;
  got: { topic: string; payload: string; qos: 0 | 1; retain: boolean }[];
} {
  const got: { topic: string; payload: string; qos: 0 | 1; retain: boolean }[] = [];
  return { got, handler: (m) => got.push({ topic: m.topic, payload: m.payload.toString(), qos: m.qos, retain: m.retain }) };
}
