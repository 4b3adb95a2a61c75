/**
 * `ledge logs`, `ledge exec` and `ledge attach` run as real child processes (the CLI's TypeScript
 * source through tsx, entered by cli/ledge.ts like dist/ledge.js) against a fake CloudStream: an
 * HTTPS server that requires a client certificate of its CA, serving /containerLogs as chunked text
 * and /exec, /attach as WebSockets with the v5/v4 channel protocols. What is checked is what a user
 * sees (stdout, stderr, the exit code) and what the server received (path, query, channel messages).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { loadOrCreatePki, type Pki } from '../../apiserver/pki.js';
import { tempDir } from '../helpers/files.js';
import { freePort } from '../helpers/pods.js';
import { eventually, repoRoot, within } from '../helpers/process.js';

const tsxLoader = pathToFileURL(join(repoRoot, 'node_modules/tsx/dist/loader.mjs')).href;
const cliEntry = join(repoRoot, 'cli/ledge.ts');
const WAIT_MS = 60_000;

const v5 = 'v5.channel.k8s.io';
const v4 = 'v4.channel.k8s.io';
const success = { metadata: {}, status: 'Success' };
const exitStatus = (code: number) => ({
  metadata: {},
  status: 'Failure',
  message: `command terminated with non-zero exit code: exit status ${code}`,
  reason: 'NonZeroExitCode',
  details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
});
const notFound = (what: string) => ({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: what, reason: 'NotFound', code: 404 });

interface Received {
  channel: number;
  payload: Buffer;
}
interface Session {
  url: URL;
  protocol: string;
  clientCN: string;
  received: Received[];
  closed: boolean;
}
interface LogRequest {
  url: URL;
  clientCN: string;
  closed: boolean;
}

/** A gate the test opens (the server waits on it between two log chunks). */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

/** The fake CloudStream, with what it received. */
class FakeCloudStream {
  server!: Server;
  url = '';
  logRequests: LogRequest[] = [];
  sessions: Session[] = [];
  chattyGate = gate();
  private readonly wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols, req) => {
      // Pod "old" is served by a kubelet that only speaks v4.
      const wanted = req.url?.includes('/old/') ? v4 : v5;
      return protocols.has(wanted) ? wanted : false;
    },
  });
  private readonly open = new Set<ServerResponse>();

  async start(pki: Pki): Promise<void> {
    this.server = createServer(
      { key: pki.serverKeyPem, cert: pki.serverCertPem, ca: pki.caCertPem, requestCert: true, rejectUnauthorized: true },
      (req, res) => void this.logs(req, res),
    );
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `https://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  async stop(): Promise<void> {
    for (const res of this.open) res.destroy();
    for (const c of this.wss.clients) c.terminate();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private cn(req: IncomingMessage): string {
    const subject = (req.socket as TLSSocket).getPeerCertificate().subject as { CN?: string } | undefined;
    return subject?.CN ?? '';
  }

  private async logs(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://x');
    const record: LogRequest = { url, clientCN: this.cn(req), closed: false };
    this.logRequests.push(record);
    res.once('close', () => (record.closed = true));
    const [, kind, , pod] = url.pathname.split('/');
    if (kind !== 'containerLogs' || pod === 'missing') {
      const body = JSON.stringify(notFound(`pods "${pod}" not found`));
      res.writeHead(404, { 'Content-Type': 'application/json' }).end(body);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    if (pod === 'chatty') {
      this.open.add(res);
      res.write('line 1\n');
      await this.chattyGate.wait;
      res.end('line 2\n');
      return;
    }
    if (pod === 'forever') {
      this.open.add(res);
      res.write('tick\n');
      return;
    }
    res.end('hello from the log\n');
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'https://x');
    if (url.pathname.split('/')[3] === 'forbidden') {
      const body = JSON.stringify({ kind: 'Status', metadata: {}, status: 'Failure', message: 'node "edge-9" may not stream pods of other nodes', reason: 'Forbidden', code: 403 });
      socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    const clientCN = this.cn(req);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.session(ws, url, clientCN));
  }

  private session(ws: WebSocket, url: URL, clientCN: string): void {
    const s: Session = { url, protocol: ws.protocol, clientCN, received: [], closed: false };
    this.sessions.push(s);
    const send = (channel: number, data: string | object) => ws.send(Buffer.concat([Buffer.of(channel), Buffer.from(typeof data === 'string' ? data : JSON.stringify(data))]));
    const end = (status: object) => {
      send(3, status);
      ws.close(1000);
    };
    ws.once('close', () => (s.closed = true));
    const kind = url.pathname.split('/')[1];
    const command = url.searchParams.getAll('command');
    ws.on('message', (data: RawData) => {
      const msg = data as Buffer;
      const r = { channel: msg[0]!, payload: Buffer.from(msg.subarray(1)) };
      s.received.push(r);
      if (command[0] === 'cat' && r.channel === 0) send(1, r.payload.toString());
      if (command[0] === 'cat' && r.channel === 255) end(success);
      // v4 cannot say "end of input": this one ends after its first input.
      if (command[0] === 'cat' && s.protocol === v4 && r.channel === 0) end(success);
      if (command[0] === 'raw' && r.channel === 0 && r.payload.includes('q')) end(success);
      if (command[0] === 'winch' && r.channel === 4 && r.payload.includes('"Height":40')) end(success);
    });
    if (kind === 'attach') {
      send(1, 'attached output\n');
      end(success);
      return;
    }
    switch (command[0]) {
      case 'split':
        send(1, 'to stdout\n');
        send(2, 'to stderr\n');
        end(success);
        break;
      case 'exit3':
        send(2, 'failing\n');
        end(exitStatus(3));
        break;
      case 'fail':
        end({ metadata: {}, status: 'Failure', message: 'container "app" is not running' });
        break;
      default:
      // cat, raw, winch: driven by what the client sends.
    }
  }
}

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface Cli {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout matches `re`. */
  waitStdout(re: RegExp): Promise<void>;
  done: Promise<Result>;
}

const home = tempDir('ledge-stream-home-');
const baseEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home.path };
  delete env.KUBECONFIG;
  delete env.LEDGE_STREAM_SERVER;
  return env;
};

/** Starts the CLI (`ledge …` from the TypeScript source) with stdin piped. */
function startCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; command?: string[] } = {}): Cli {
  const argv = opts.command ?? [process.execPath, '--import', tsxLoader, cliEntry, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { cwd: opts.cwd ?? repoRoot, env: { ...baseEnv(), ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin!.on('error', () => {}); // the CLI may exit before reading all of it
  const done = new Promise<Result>((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err })));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitStdout: (re) =>
      within(
        new Promise<void>((resolve, reject) => {
          const check = () => {
            if (re.test(out)) {
              listeners.delete(check);
              resolve();
            }
          };
          listeners.add(check);
          check();
          // An exit before the output came fails at once.
          void done.then((r) => reject(new Error(`the CLI exited (${r.code ?? r.signal}) before stdout matched ${re}; stdout: ${JSON.stringify(r.stdout)}; stderr: ${r.stderr}`)));
        }),
        WAIT_MS,
        `stdout matching ${re}; stdout so far: ${JSON.stringify(out)}; stderr: ${JSON.stringify(err)}`,
      ),
    done,
  };
}

/** The whole run's outcome; stdin gets `input` then its end (or stays open with `keepStdin`). */
async function run(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; keepStdin?: boolean } = {}): Promise<Result> {
  const c = startCli(args, opts);
  if (opts.input !== undefined) c.child.stdin!.write(opts.input);
  if (!opts.keepStdin) c.child.stdin!.end();
  try {
    return await within(c.done, WAIT_MS, `ledge ${args.join(' ')} to exit`);
  } finally {
    c.child.kill('SIGKILL');
    c.child.stdin!.destroy();
  }
}

const dir = tempDir('ledge-stream-');
const fake = new FakeCloudStream();
let pki: Pki;
let other: Pki;
const files = {
  ca: join(dir.path, 'ca.crt'),
  cert: join(dir.path, 'admin.crt'),
  key: join(dir.path, 'admin.key'),
  otherCa: join(dir.path, 'other-ca.crt'),
  otherCert: join(dir.path, 'other.crt'),
  otherKey: join(dir.path, 'other.key'),
};
/** The connection flags of most runs: the fake server, the admin client certificate, no verification warning. */
let conn: string[];

before(async () => {
  pki = await loadOrCreatePki(join(dir.path, 'pki'), []);
  other = await loadOrCreatePki(join(dir.path, 'other-pki'), []);
  writeFileSync(files.ca, pki.caCertPem);
  writeFileSync(files.cert, pki.clientCertPem);
  writeFileSync(files.key, pki.clientKeyPem);
  writeFileSync(files.otherCa, other.caCertPem);
  writeFileSync(files.otherCert, other.clientCertPem);
  writeFileSync(files.otherKey, other.clientKeyPem);
  await fake.start(pki);
  conn = ['--server', fake.url, '--cert', files.cert, '--key', files.key, '--insecure-skip-tls-verify'];
});

after(async () => {
  fake.chattyGate.open();
  await fake.stop();
  dir.cleanup();
  home.cleanup();
});

const lastLog = () => fake.logRequests.at(-1)!;
const lastSession = () => fake.sessions.at(-1)!;
/** The session opened after the first `before` ones, once it received a message. */
const firstMessage = (before: number): Session | undefined => {
  const s = fake.sessions[before];
  return s && s.received.length > 0 ? s : undefined;
};
const oneLine = (s: string) => s.trim().split('\n').length === 1;

describe('ledge logs', () => {
  test('prints the log; the flags become the kubelet query (--since 5m → sinceSeconds=300); the client certificate is presented', async () => {
    const r = await run(['logs', '-n', 'prod', 'web', '-c', 'app', '--tail', '5', '--since', '5m', '-p', '--timestamps', '--limit-bytes', '100', ...conn]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello from the log\n');
    assert.equal(r.stderr, '');
    const req = lastLog();
    assert.equal(req.url.pathname, '/containerLogs/prod/web/app');
    assert.deepEqual(Object.fromEntries(req.url.searchParams), { tailLines: '5', sinceSeconds: '300', timestamps: 'true', previous: 'true', limitBytes: '100' });
    assert.equal(req.clientCN, 'ledge-admin');

    // No -c: an empty container segment (the pod's only container); --tail -1 is "all"; --since rounds up to seconds.
    const r2 = await run(['logs', 'pod/web', '--tail', '-1', '--since', '1500ms', ...conn]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(lastLog().url.pathname, '/containerLogs/default/web/');
    assert.deepEqual(Object.fromEntries(lastLog().url.searchParams), { sinceSeconds: '2' });
  });

  test('-f streams as the log is written: the first chunk is printed before the second is sent', async () => {
    const c = startCli(['logs', '-f', 'chatty', '-c', 'app', ...conn]);
    c.child.stdin!.end();
    try {
      await c.waitStdout(/line 1\n/);
      assert.equal(c.stdout(), 'line 1\n', 'only what was sent so far');
      assert.equal(lastLog().url.searchParams.get('follow'), 'true');
      fake.chattyGate.open();
      const r = await within(c.done, WAIT_MS, 'logs -f to end with the stream');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'line 1\nline 2\n');
    } finally {
      c.child.kill('SIGKILL');
    }
  });

  test('Ctrl-C during -f: a clean end (exit 130, nothing on stderr) and the connection is closed', async () => {
    const c = startCli(['logs', '-f', 'forever', ...conn]);
    c.child.stdin!.end();
    try {
      await c.waitStdout(/tick\n/);
      const req = lastLog();
      c.child.kill('SIGINT');
      const r = await within(c.done, WAIT_MS, 'logs -f to end on SIGINT');
      assert.equal(r.code, 130);
      assert.equal(r.stderr, '');
      await eventually(() => req.closed, WAIT_MS, 'the server to see the request closed');
    } finally {
      c.child.kill('SIGKILL');
    }
  });

  test('an error Status (404) → its message on stderr, one line, exit 1', async () => {
    const r = await run(['logs', 'missing', ...conn]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^Error from server \(NotFound\): pods "missing" not found\n$/);
  });

  test('bad usage exits 2 with the usage; --help prints it', async () => {
    const r = await run(['logs', 'web', '--since', '5', ...conn]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /invalid --since "5"/);
    assert.match(r.stderr, /Usage: ledge logs/);
    const h = await run(['logs', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /--limit-bytes <n>/);
    assert.match(h.stdout, /--ca <file>/);
  });
});

describe('ledge exec and attach', () => {
  test('stdout and stderr stay separate; the command and the channels asked for are in the query; v5 is preferred', async () => {
    const r = await run(['exec', 'web', '-c', 'app', ...conn, '--', 'split', '-x', '--flag']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'to stdout\n');
    assert.equal(r.stderr, 'to stderr\n');
    const s = lastSession();
    assert.equal(s.protocol, v5);
    assert.equal(s.url.pathname, '/exec/default/web/app');
    assert.deepEqual(s.url.searchParams.getAll('command'), ['split', '-x', '--flag']);
    assert.deepEqual([s.url.searchParams.get('input'), s.url.searchParams.get('output'), s.url.searchParams.get('error'), s.url.searchParams.get('tty')], [null, '1', '1', null]);
    assert.equal(s.clientCN, 'ledge-admin');
  });

  test('a NonZeroExitCode Status → the CLI exits with that code (3), nothing added to stderr', async () => {
    const r = await run(['exec', 'web', ...conn, '--', 'exit3']);
    assert.equal(r.code, 3);
    assert.equal(r.stderr, 'failing\n');
  });

  test('another Failure Status → its message, exit 1', async () => {
    const r = await run(['exec', 'web', ...conn, '--', 'fail']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'container "app" is not running\n');
  });

  test('-i: piped stdin reaches the command; its end is sent as a close of channel 0 (v5)', async () => {
    const r = await run(['exec', '-i', 'web', ...conn, '--', 'cat'], { input: 'some input\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'some input\n');
    const s = lastSession();
    assert.equal(s.url.searchParams.get('input'), '1');
    const stdin = Buffer.concat(s.received.filter((m) => m.channel === 0).map((m) => m.payload)).toString();
    assert.equal(stdin, 'some input\n');
    const last = s.received.at(-1)!;
    assert.deepEqual([last.channel, [...last.payload]], [255, [0]]);
  });

  test('-i over v4 (a kubelet without v5): stdin is sent, no close channel (v4 has none)', async () => {
    const r = await run(['exec', '-i', 'old', ...conn, '--', 'cat'], { input: 'x' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'x');
    const s = lastSession();
    assert.equal(s.protocol, v4);
    assert.deepEqual(
      s.received.map((m) => m.channel),
      [0],
    );
  });

  test('-i: the CLI exits when the command ends although stdin is still open', async () => {
    const r = await run(['exec', '-i', 'web', ...conn, '--', 'split'], { keepStdin: true });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'to stdout\n');
  });

  test('-t without a terminal (piped): tty=1 and no stderr channel asked, no resize sent', async () => {
    const r = await run(['exec', '-it', 'web', ...conn, '--', 'cat'], { input: 'typed' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'typed');
    const s = lastSession();
    assert.equal(s.url.searchParams.get('tty'), '1');
    assert.equal(s.url.searchParams.get('error'), null);
    assert.deepEqual(
      s.received.map((m) => m.channel),
      [0, 255],
    );
  });

  test('-it on a terminal: the size is sent, stdin is raw (a lone byte and Ctrl-C go to the command), the terminal is restored', async () => {
    const inner = [process.execPath, '--import', tsxLoader, cliEntry, 'exec', '-it', 'web', ...conn, '--', 'raw'].map((a) => `'${a}'`).join(' ');
    const shell = `stty cols 100 rows 30; before=$(stty -g); ${inner}; code=$?; [ "$(stty -g)" = "$before" ] && echo TERMINAL-RESTORED; exit $code`;
    const before = fake.sessions.length;
    const c = startCli([], { command: ['script', '-qec', shell, '/dev/null'] });
    try {
      const s = await eventually(() => firstMessage(before), WAIT_MS, 'the session and its first message');
      assert.deepEqual(s.received[0], { channel: 4, payload: Buffer.from('{"Width":100,"Height":30}') });
      // Raw mode is on once the size was sent (same tick): no line buffering, no signal from Ctrl-C.
      c.child.stdin!.write('a');
      await eventually(() => s.received.some((m) => m.channel === 0 && m.payload.toString() === 'a'), WAIT_MS, '"a" without a newline');
      c.child.stdin!.write('\x03q');
      const r = await within(c.done, WAIT_MS, 'exec -it to end');
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const typed = Buffer.concat(s.received.filter((m) => m.channel === 0).map((m) => m.payload)).toString();
      assert.equal(typed, 'a\x03q');
      assert.match(r.stdout, /TERMINAL-RESTORED/);
    } finally {
      c.child.kill('SIGKILL');
    }
  });

  test('-t on a terminal: a window size change (SIGWINCH) sends the new size', async () => {
    const inner = [process.execPath, '--import', tsxLoader, cliEntry, 'exec', '-t', 'web', ...conn, '--', 'winch'].map((a) => `'${a}'`).join(' ');
    // The CLI runs in the background (no -i: it does not read stdin); the shell changes the size when the test says so.
    const shell = `stty cols 100 rows 30; ${inner} & read go; stty cols 120 rows 40; wait $!`;
    const before = fake.sessions.length;
    const c = startCli([], { command: ['script', '-qec', shell, '/dev/null'] });
    try {
      const s = await eventually(() => firstMessage(before), WAIT_MS, 'the first size');
      c.child.stdin!.write('go\n');
      const r = await within(c.done, WAIT_MS, 'exec -t to end');
      assert.equal(r.code, 0, r.stdout + r.stderr);
      // stty may set the columns and the rows in two steps (two SIGWINCH): the first and the last size count.
      const sizes = s.received.map((m) => `${m.channel}:${m.payload}`);
      assert.deepEqual([sizes[0], sizes.at(-1)], ['4:{"Width":100,"Height":30}', '4:{"Width":120,"Height":40}']);
      assert.ok(sizes.length <= 3, sizes.join(' '));
    } finally {
      c.child.kill('SIGKILL');
    }
  });

  test('attach: /attach without a command, output printed', async () => {
    const r = await run(['attach', 'web', '-c', 'app', ...conn]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'attached output\n');
    assert.equal(lastSession().url.pathname, '/attach/default/web/app');
    assert.deepEqual(lastSession().url.searchParams.getAll('command'), []);
  });

  test('an HTTP error during the upgrade (403 Status) → its message, one line, exit 1', async () => {
    const r = await run(['exec', 'forbidden', ...conn, '--', 'ls']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'Error from server (Forbidden): node "edge-9" may not stream pods of other nodes\n');
  });

  test('usage: the command goes after --; attach takes none', async () => {
    const r = await run(['exec', 'web', 'ls', ...conn]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /put the command after "--"/);
    const a = await run(['attach', 'web', ...conn, '--', 'ls']);
    assert.equal(a.code, 2);
  });
});

describe('credentials and the server certificate', () => {
  test('the client certificate of the kubeconfig current user (client-certificate-data, or files relative to it); its namespace; LEDGE_STREAM_SERVER', async () => {
    const kc = join(dir.path, 'kc-data', 'config');
    mkdirSync(join(dir.path, 'kc-data'));
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    writeFileSync(
      kc,
      toYaml({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443' } }],
        users: [
          { name: 'someone-else', user: { token: 't' } },
          { name: 'admin', user: { 'client-certificate-data': b64(pki.clientCertPem), 'client-key-data': b64(pki.clientKeyPem) } },
        ],
        contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'admin', namespace: 'team' } }],
        'current-context': 'ctx',
      }),
    );
    const r = await run(['logs', 'web', '--insecure-skip-tls-verify'], { env: { KUBECONFIG: kc, LEDGE_STREAM_SERVER: fake.url } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello from the log\n');
    assert.equal(lastLog().url.pathname, '/containerLogs/team/web/');
    assert.equal(lastLog().clientCN, 'ledge-admin');

    // The file forms, relative to the kubeconfig; the default file names are tried in the working directory.
    const cwd = join(dir.path, 'kc-files');
    mkdirSync(join(cwd, '.ledge', 'cloud', 'certs'), { recursive: true });
    writeFileSync(join(cwd, '.ledge', 'cloud', 'certs', 'a.crt'), pki.clientCertPem);
    writeFileSync(join(cwd, '.ledge', 'cloud', 'certs', 'a.key'), pki.clientKeyPem);
    writeFileSync(
      join(cwd, '.ledge', 'cloud', 'kubeconfig'),
      toYaml({
        users: [{ name: 'u', user: { 'client-certificate': 'certs/a.crt', 'client-key': 'certs/a.key' } }],
        contexts: [{ name: 'x', context: { user: 'u' } }],
        'current-context': 'x',
      }),
    );
    const f = await run(['exec', 'web', '--server', fake.url, '--insecure-skip-tls-verify', '--', 'split'], { cwd });
    assert.equal(f.code, 0, f.stderr);
    assert.equal(lastSession().clientCN, 'ledge-admin');
    assert.equal(lastSession().url.pathname, '/exec/default/web/');
  });

  test('no client certificate anywhere → one clear line, exit 1, nothing sent', async () => {
    const cwd = join(dir.path, 'empty');
    mkdirSync(cwd);
    const n = fake.logRequests.length;
    const r = await run(['logs', 'web', '--server', fake.url], { cwd });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^no client certificate for CloudStream: pass --cert and --key, or --kubeconfig <file>.*\.kube\/config\)\n$/);
    assert.equal(fake.logRequests.length, n);
  });

  test('a token-only kubeconfig → "CloudStream authenticates client certificates", exit 1', async () => {
    const kc = join(dir.path, 'token-kubeconfig');
    writeFileSync(
      kc,
      toYaml({ users: [{ name: 'ledge-admin', user: { token: 'abc' } }], contexts: [{ name: 'ledge', context: { user: 'ledge-admin' } }], 'current-context': 'ledge' }),
    );
    const r = await run(['exec', 'web', '--server', fake.url, '--kubeconfig', kc, '--', 'ls']);
    assert.equal(r.code, 1);
    assert.ok(oneLine(r.stderr), r.stderr);
    assert.match(r.stderr, /user "ledge-admin" has only a token; CloudStream authenticates client certificates: pass --cert and --key/);
  });

  test('without --ca: one warning line and no verification; --ca verifies (no warning); a wrong --ca fails clearly', async () => {
    const creds = ['--server', fake.url, '--cert', files.cert, '--key', files.key];
    const warned = await run(['logs', 'web', ...creds]);
    assert.equal(warned.code, 0, warned.stderr);
    assert.match(warned.stderr, /^ledge logs: warning: CloudStream's certificate is not verified \(pass --ca <file> to verify it; --insecure-skip-tls-verify to silence this\)\n$/);

    const verified = await run(['logs', 'web', ...creds, '--ca', files.ca]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal(verified.stderr, '');
    assert.equal(verified.stdout, 'hello from the log\n');

    const n = fake.logRequests.length;
    const wrong = await run(['logs', 'web', ...creds, '--ca', files.otherCa]);
    assert.equal(wrong.code, 1);
    assert.ok(oneLine(wrong.stderr), wrong.stderr);
    assert.match(wrong.stderr, /^cannot verify CloudStream's certificate at https:\/\/127\.0\.0\.1:\d+: .*; is --ca .*other-ca\.crt the CA that signed it\?/);
    assert.equal(fake.logRequests.length, n, 'nothing was sent to an unverified server');

    const wrongExec = await run(['exec', 'web', ...creds, '--ca', files.otherCa, '--', 'split']);
    assert.equal(wrongExec.code, 1);
    assert.match(wrongExec.stderr, /^cannot verify CloudStream's certificate/);
  });

  test('a client certificate CloudStream does not trust, and a server that is not there: one clear line each, exit 1', async () => {
    const untrusted = await run(['logs', 'web', '--server', fake.url, '--cert', files.otherCert, '--key', files.otherKey, '--insecure-skip-tls-verify']);
    assert.equal(untrusted.code, 1);
    assert.ok(oneLine(untrusted.stderr), untrusted.stderr);
    assert.match(untrusted.stderr, /refused the TLS connection .*: it does not accept the client certificate from --cert .*other\.crt/);

    const untrustedExec = await run(['exec', 'web', '--server', fake.url, '--cert', files.otherCert, '--key', files.otherKey, '--insecure-skip-tls-verify', '--', 'split']);
    assert.equal(untrustedExec.code, 1);
    assert.match(untrustedExec.stderr, /refused the TLS connection .*: it does not accept the client certificate/);

    const port = await freePort();
    const refused = await run(['exec', 'web', '--server', `https://127.0.0.1:${port}`, '--cert', files.cert, '--key', files.key, '--insecure-skip-tls-verify', '--', 'ls']);
    assert.equal(refused.code, 1);
    assert.equal(
      refused.stderr,
      `CloudStream not reachable at https://127.0.0.1:${port} (connection refused): is CloudCore running with its stream server? (--server or LEDGE_STREAM_SERVER to point elsewhere)\n`,
    );
  });
});
