// The node proxy (apiserver/nodeproxy.ts): pods/log, exec, attach, portforward from the local
// control plane to a fake "kubelet" (HTTPS, client certificates of the apiserver's CA required)
// at the Node's address and kubelet port, as kube-apiserver does.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest, type Server } from 'node:https';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { startApiServer, type ApiServerHandle } from '../../apiserver/index.js';
import { loadOrCreatePki, type Pki } from '../../apiserver/pki.js';
import { createLogger } from '../../shared/log/index.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { tempDir } from '../helpers/files.js';
import { freePort } from '../helpers/pods.js';
import { eventually, within } from '../helpers/process.js';
import { KUBECTL_SKIP, kubectl, requireKubectl, raw } from './helpers.js';

const WAIT = 10_000;
const NS = 'default';

// ------------------------------------------------------------------ the fake kubelet

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  /** CN of the client certificate the apiserver presented. */
  cn: string | undefined;
}

type LogHandler = (req: IncomingMessage, res: ServerResponse) => void;
type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** An HTTPS "kubelet" that requires a client certificate of the trusted CAs and records every request. */
class FakeKubelet {
  readonly seen: Seen[] = [];
  /** By pod name (the path's third segment). */
  readonly logs = new Map<string, LogHandler>();
  readonly upgrades = new Map<string, UpgradeHandler>();
  readonly wss = new WebSocketServer({ noServer: true, handleProtocols: (set) => [...set][0] ?? false });
  private readonly sockets = new Set<Socket>();
  server!: Server;
  port = 0;

  constructor(readonly pki: Pki) {}

  async start(): Promise<void> {
    this.server = createHttpsServer(
      { cert: this.pki.serverCertPem, key: this.pki.serverKeyPem, ca: this.pki.caCertPem, requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        const pod = this.record(req);
        const h = this.logs.get(pod);
        if (h) return h(req, res);
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end(`log of ${pod}\n`);
      },
    );
    this.server.on('secureConnection', (s: TLSSocket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const pod = this.record(req);
      const h = this.upgrades.get(pod);
      if (h) return h(req, socket, head);
      this.wss.handleUpgrade(req, socket, head, (ws) => echo(ws));
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as { port: number }).port;
  }

  /** Client certificates of these CAs (the apiservers') are accepted from now on. */
  trust(cas: string[]): void {
    this.server.setSecureContext({ cert: this.pki.serverCertPem, key: this.pki.serverKeyPem, ca: cas });
  }

  private record(req: IncomingMessage): string {
    const cn: string | string[] | undefined = (req.socket as TLSSocket).getPeerCertificate()?.subject?.CN;
    this.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, cn: Array.isArray(cn) ? cn[0] : cn });
    return (req.url ?? '').split('?')[0]!.split('/')[3] ?? '';
  }

  /** The last request for a pod. */
  last(pod: string): Seen | undefined {
    return this.seen.filter((s) => s.url.split('?')[0]!.split('/')[3] === pod).at(-1);
  }

  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    for (const s of this.sockets) s.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/**
 * The echo "container": sends `ready` on stdout at once, then every message back on stdout
 * (its channel byte replaced); a stdin message `exit` ends with a Success status on channel 3.
 */
function echo(ws: WebSocket): void {
  ws.send(Buffer.concat([Buffer.from([1]), Buffer.from('ready\n')]));
  ws.on('message', (data: Buffer) => {
    const payload = data.subarray(1);
    if (data[0] === 0 && payload.toString() === 'exit') {
      ws.send(Buffer.concat([Buffer.from([3]), Buffer.from('{"metadata":{},"status":"Success"}')]));
      ws.close(1000);
      return;
    }
    if (data[0] === 0) ws.send(Buffer.concat([Buffer.from([1]), payload]));
  });
}

// ------------------------------------------------------------------ control planes and objects

const cp = useLocalControlPlane('ledge-nodeproxy-');
const fakeDir = tempDir('ledge-fake-kubelet-');
let fake: FakeKubelet;
/** InternalIP first, kubeletPort = the fake's, short connect timeout, the fake's CA verified. */
let cp2: ApiServerHandle;
/** Verifies the kubelet's certificate with a CA that did not sign it. */
let cp3: ApiServerHandle;
const dirs = [tempDir('ledge-nodeproxy2-'), tempDir('ledge-nodeproxy3-'), tempDir('ledge-nodeproxy4-')];
let closedPort = 0;
let blackhole: NetServer;
const held = new Set<Socket>();

before(async () => {
  fake = new FakeKubelet(await loadOrCreatePki(fakeDir.path, ['127.0.0.1']));
  await fake.start();
  const fakeCa = join(fakeDir.path, 'fake-ca.crt');
  writeFileSync(fakeCa, fake.pki.caCertPem);
  const log = createLogger({ level: 'error' });
  cp2 = await startApiServer({
    dataDir: dirs[0]!.path,
    port: 0,
    log,
    kubeletPreferredAddressTypes: ['InternalIP', 'Hostname'],
    kubeletPort: fake.port,
    kubeletTimeoutMs: 500,
    kubeletCertificateAuthority: fakeCa,
  });
  cp3 = await startApiServer({ dataDir: dirs[1]!.path, port: 0, log, kubeletCertificateAuthority: cp.api.caFile });
  fake.trust([cp.api.caCertPem, cp2.caCertPem, cp3.caCertPem]);
  closedPort = await freePort();
  // Accepts TCP connections and never says a word (no TLS handshake).
  blackhole = createNetServer((s) => {
    held.add(s);
    s.on('error', () => {});
    s.resume(); // read (and drop) the TLS hello, so the peer's close is seen
  });
  blackhole.listen(0, '127.0.0.1');
  await once(blackhole, 'listening');

  for (const h of [cp.api, cp2, cp3]) {
    await node(h, 'n1', [{ type: 'InternalIP', address: '127.0.0.1' }], fake.port);
    await node(
      h,
      'nhost',
      [
        { type: 'Hostname', address: 'ledge-nodeproxy-test.invalid' },
        { type: 'InternalIP', address: '127.0.0.1' },
      ],
      fake.port,
    );
    await node(h, 'noport', [{ type: 'InternalIP', address: '127.0.0.1' }]);
    await node(h, 'dead', [{ type: 'InternalIP', address: '127.0.0.1' }], closedPort);
    await node(h, 'slow', [{ type: 'InternalIP', address: '127.0.0.1' }], (blackhole.address() as { port: number }).port);
  }
});

after(async () => {
  for (const s of held) s.destroy();
  blackhole?.close();
  await cp2?.close();
  await cp3?.close();
  await fake?.close();
  for (const d of dirs) d.cleanup();
  fakeDir.cleanup();
});

async function create(h: ApiServerHandle, path: string, obj: unknown): Promise<void> {
  const r = await raw(h, 'POST', path, JSON.stringify(obj));
  assert.equal(r.status, 201, r.text);
}

function node(h: ApiServerHandle, name: string, addresses: { type: string; address: string }[], port?: number): Promise<void> {
  return create(h, '/api/v1/nodes', {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name },
    status: { addresses, ...(port !== undefined ? { daemonEndpoints: { kubeletEndpoint: { Port: port } } } : {}) },
  });
}

function pod(h: ApiServerHandle, name: string, nodeName: string | undefined, containers = ['c'], initContainers: string[] = []): Promise<void> {
  return create(h, `/api/v1/namespaces/${NS}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name },
    spec: {
      ...(nodeName ? { nodeName } : { schedulerName: 'none' }),
      containers: containers.map((n) => ({ name: n, image: 'busybox:1.36' })),
      ...(initContainers.length ? { initContainers: initContainers.map((n) => ({ name: n, image: 'busybox:1.36' })) } : {}),
    },
  });
}

const podPath = (name: string, sub: string, query = '') => `/api/v1/namespaces/${NS}/pods/${name}/${sub}${query ? `?${query}` : ''}`;

/** A GET whose response body is read as it arrives. */
function stream(h: ApiServerHandle, path: string): { response: Promise<IncomingMessage>; destroy(): void } {
  const req = httpsRequest(new URL(path, h.url), { ca: h.caCertPem, headers: { authorization: `Bearer ${h.token}` } });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  req.end();
  return { response, destroy: () => req.destroy() };
}

/** Resolves with the next chunk of `res`. */
function nextChunk(res: IncomingMessage): Promise<string> {
  return within(
    once(res, 'data').then(([c]) => String(c)),
    WAIT,
    'the next log chunk',
  );
}

/** Messages of a WebSocket, taken one at a time. */
class Inbox {
  private readonly queue: Buffer[] = [];
  private waiter: (() => void) | undefined;
  constructor(ws: WebSocket) {
    ws.on('message', (d: Buffer) => {
      this.queue.push(d);
      this.waiter?.();
    });
  }
  async next(what = 'a message'): Promise<Buffer> {
    while (this.queue.length === 0) await within(new Promise<void>((r) => (this.waiter = r)), WAIT, what);
    return this.queue.shift()!;
  }
}

function wsUrl(h: ApiServerHandle, path: string): string {
  return `${h.url.replace(/^https/, 'wss')}${path}`;
}

/** Opens a WebSocket to the apiserver (admin token); rejects with the status and body of a refused upgrade. */
function openWs(h: ApiServerHandle, path: string, protocol = 'v5.channel.k8s.io'): Promise<{ ws: WebSocket; inbox: Inbox }> {
  const ws = new WebSocket(wsUrl(h, path), [protocol], { ca: h.caCertPem, headers: { authorization: `Bearer ${h.token}` } });
  const inbox = new Inbox(ws);
  return within(
    new Promise((resolve, reject) => {
      ws.once('open', () => resolve({ ws, inbox }));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode, body: Buffer.concat(chunks).toString() })));
      });
    }),
    WAIT,
    `the WebSocket to ${path}`,
  );
}

async function refused(h: ApiServerHandle, path: string): Promise<{ status: number; body: string }> {
  try {
    const { ws } = await openWs(h, path);
    ws.terminate();
  } catch (err) {
    const e = err as { status?: number; body?: string };
    if (e.status !== undefined) return { status: e.status, body: e.body ?? '' };
    throw err;
  }
  throw new Error(`the upgrade to ${path} was accepted`);
}

const frame = (channel: number, text: string | Buffer) => Buffer.concat([Buffer.from([channel]), Buffer.from(text)]);

// ------------------------------------------------------------------ tests

describe('discovery', () => {
  test('pods/log, pods/exec, pods/attach, pods/portforward are listed in /api/v1', async () => {
    const r = await raw(cp.api, 'GET', '/api/v1');
    const res = (r.json().resources as { name: string; kind: string; verbs: string[] }[]).filter((x) => x.name.startsWith('pods/'));
    const by = new Map(res.map((x) => [x.name, x]));
    assert.deepEqual(by.get('pods/log')?.verbs, ['get']);
    assert.deepEqual(by.get('pods/exec')?.verbs, ['create', 'get']);
    assert.equal(by.get('pods/exec')?.kind, 'PodExecOptions');
    assert.deepEqual(by.get('pods/attach')?.verbs, ['create', 'get']);
    assert.deepEqual(by.get('pods/portforward')?.verbs, ['create', 'get']);
    assert.ok(by.has('pods/status') && by.has('pods/binding'));
  });
});

describe('the kubelet client certificate', () => {
  test('CN=kube-apiserver-kubelet-client, O=system:masters, clientAuth, signed by the CA at handle.caFile; made once, also without tls', async () => {
    const h = cp.api;
    assert.equal(readFileSync(h.caFile, 'utf8'), h.caCertPem);
    assert.equal(basename(h.kubeletClientCertFile), 'apiserver-kubelet-client.crt');
    assert.equal(basename(h.kubeletClientKeyFile), 'apiserver-kubelet-client.key');
    const pem = readFileSync(h.kubeletClientCertFile, 'utf8');
    const cert = new X509Certificate(pem);
    assert.equal(cert.subject, 'CN=kube-apiserver-kubelet-client\nO=system:masters');
    assert.ok(cert.checkIssued(new X509Certificate(h.caCertPem)) && cert.verify(new X509Certificate(h.caCertPem).publicKey));
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2']);
    assert.equal(statSync(h.kubeletClientKeyFile).mode & 0o077, 0, 'the key is private');
    // Loading the credentials again (a restart) keeps the certificate.
    const again = await loadOrCreatePki(dirname(dirname(h.caFile)), ['127.0.0.1']);
    assert.equal(again.kubeletClientCertPem, pem);
    // Plain HTTP serves without credentials, but the node proxy still has its certificate.
    const d = tempDir('ledge-nodeproxy-plain-');
    const plain = await startApiServer({ dataDir: d.path, port: 0, tls: false, log: createLogger({ level: 'error' }) });
    try {
      assert.equal(plain.caCertPem, '');
      assert.ok(existsSync(plain.caFile) && existsSync(plain.kubeletClientCertFile) && existsSync(plain.kubeletClientKeyFile));
    } finally {
      await plain.close();
      d.cleanup();
    }
  });
});

describe('pods/log', () => {
  before(async () => {
    await pod(cp.api, 'logq', 'n1');
    await pod(cp.api, 'logf', 'n1');
    await pod(cp.api, 'logerr', 'n1');
    await pod(cp.api, 'logtext', 'n1');
    await pod(cp.api, 'logcancel', 'n1');
    await pod(cp.api, 'pending', undefined);
    await pod(cp.api, 'two', 'n1', ['a', 'b'], ['init']);
  });

  test('GET …/log → /containerLogs/{ns}/{pod}/{container} with the query in the kubelet form, the client certificate, no credentials', async () => {
    const r = await raw(cp.api, 'GET', podPath('logq', 'log', 'container=c&follow=1&previous=true&sinceSeconds=10&timestamps=true&tailLines=5&limitBytes=100'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, 'log of logq\n');
    assert.match(String(r.headers['content-type']), /^text\/plain/);
    const seen = fake.last('logq')!;
    assert.equal(seen.method, 'GET');
    assert.equal(seen.url, `/containerLogs/${NS}/logq/c?follow=true&limitBytes=100&previous=true&sinceSeconds=10&tailLines=5&timestamps=true`);
    assert.equal(seen.cn, 'kube-apiserver-kubelet-client');
    assert.equal(seen.headers.authorization, undefined);

    // The only container by default; false flags left out; sinceTime in RFC 3339 at second precision.
    const r2 = await raw(cp.api, 'GET', podPath('logq', 'log', `follow=false&previous=0&sinceTime=${encodeURIComponent('2026-01-02T03:04:05.678+01:00')}`));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(fake.last('logq')!.url, `/containerLogs/${NS}/logq/c?sinceTime=2026-01-02T02%3A04%3A05Z`);
  });

  test('bad log options: 400 for a malformed value, 422 PodLogOptions as kube validates them; nothing reaches the kubelet', async () => {
    const before = fake.seen.length;
    const bad = await raw(cp.api, 'GET', podPath('logq', 'log', 'tailLines=x'));
    assert.equal(bad.status, 400, bad.text);
    for (const q of ['tailLines=-1', 'limitBytes=0', 'sinceSeconds=0', 'sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z']) {
      const r = await raw(cp.api, 'GET', podPath('logq', 'log', q));
      assert.equal(r.status, 422, `${q}: ${r.text}`);
      assert.equal(r.json().details.kind, 'PodLogOptions');
    }
    assert.equal(fake.seen.length, before);
  });

  test('the body is streamed as the kubelet writes it', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    fake.logs.set('logf', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('first\n');
      void released.then(() => res.end('second\n'));
    });
    const s = stream(cp.api, podPath('logf', 'log', 'follow=true'));
    const res = await within(s.response, WAIT, 'the log response');
    assert.equal(res.statusCode, 200);
    // The kubelet writes the second line only after the client has read the first.
    assert.equal(await nextChunk(res), 'first\n');
    const rest: string[] = [];
    res.on('data', (c: Buffer) => rest.push(String(c)));
    const ended = once(res, 'end');
    release();
    await within(ended, WAIT, 'the end of the log');
    assert.equal(rest.join(''), 'second\n');
  });

  test("a kubelet's error is relayed: a Status body verbatim with its code, a text body as a Status", async () => {
    const status = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'container "c" of pod "logerr" not found on node n1',
      reason: 'NotFound',
      code: 404,
    };
    fake.logs.set('logerr', (_req, res) => {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(status));
    });
    const r = await raw(cp.api, 'GET', podPath('logerr', 'log'));
    assert.equal(r.status, 404);
    assert.deepEqual(r.json(), status);

    fake.logs.set('logtext', (_req, res) => {
      res.writeHead(400, { 'Content-Type': 'text/plain' });
      res.end('container c is not running\n');
    });
    const t = await raw(cp.api, 'GET', podPath('logtext', 'log'));
    assert.equal(t.status, 400);
    assert.equal(t.json().kind, 'Status');
    assert.equal(t.json().reason, 'BadRequest');
    assert.equal(t.json().message, 'container c is not running');
  });

  test('a client that goes away during logs -f closes the kubelet request', async () => {
    let closed!: () => void;
    const kubeletSawClose = new Promise<void>((r) => (closed = r));
    fake.logs.set('logcancel', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('tick\n');
      res.once('close', closed);
    });
    const s = stream(cp.api, podPath('logcancel', 'log', 'follow=true'));
    const res = await within(s.response, WAIT, 'the log response');
    assert.equal(await nextChunk(res), 'tick\n');
    s.destroy();
    await within(kubeletSawClose, WAIT, 'the kubelet to see its request closed');
  });

  test('container resolution: the only one by default; several → 400 naming them; an unknown one → 400; an init container is valid', async () => {
    const two = await raw(cp.api, 'GET', podPath('two', 'log'));
    assert.equal(two.status, 400);
    assert.equal(two.json().message, 'a container name must be specified for pod two, choose one of: [init a b]');
    const unknown = await raw(cp.api, 'GET', podPath('two', 'log', 'container=zzz'));
    assert.equal(unknown.status, 400);
    assert.equal(unknown.json().message, 'container zzz is not valid for pod two');
    const init = await raw(cp.api, 'GET', podPath('two', 'log', 'container=init'));
    assert.equal(init.status, 200, init.text);
    assert.equal(fake.last('two')!.url, `/containerLogs/${NS}/two/init`);
    const missing = await raw(cp.api, 'GET', podPath('nosuchpod', 'log'));
    assert.equal(missing.status, 404);
  });

  test("an unscheduled pod's log is empty (kube-apiserver: no location)", async () => {
    const r = await raw(cp.api, 'GET', podPath('pending', 'log'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '');
  });
});

describe('pods/exec, attach, portforward', () => {
  before(async () => {
    await pod(cp.api, 'ex', 'n1');
    await pod(cp.api, 'exno', 'n1');
    await pod(cp.api, 'exhead', 'n1');
    await pod(cp.api, 'pending2', undefined);
    await pod(cp.api, 'two2', 'n1', ['a', 'b']);
  });

  test('exec over WebSocket: a raw tunnel to /exec/{ns}/{pod}/{container} with the kubelet parameters; bytes flow both ways', async () => {
    const { ws, inbox } = await openWs(cp.api, podPath('ex', 'exec', 'command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true&stderr=false&container=c'));
    assert.equal(ws.protocol, 'v5.channel.k8s.io');
    const seen = fake.last('ex')!;
    assert.equal(seen.url, `/exec/${NS}/ex/c?command=sh&command=-c&command=echo+hi&input=1&output=1`);
    assert.equal(seen.cn, 'kube-apiserver-kubelet-client');
    assert.equal(seen.headers.authorization, undefined);
    assert.equal(seen.headers.upgrade, 'websocket');
    assert.match(String(seen.headers['sec-websocket-protocol']), /v5\.channel\.k8s\.io/);
    assert.deepEqual(await inbox.next('ready'), frame(1, 'ready\n'));
    ws.send(frame(0, 'hello'));
    assert.deepEqual(await inbox.next('the echo'), frame(1, 'hello'));
    // A large message, split over many TCP segments and TLS records, arrives intact.
    const big = Buffer.alloc(512 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    ws.send(frame(0, big));
    assert.deepEqual(await inbox.next('the big echo'), frame(1, big));
    const serverSide = [...fake.wss.clients].at(-1)!;
    const kubeletClosed = once(serverSide, 'close');
    ws.close(1000);
    await within(kubeletClosed, WAIT, 'the kubelet side of the tunnel to close');
  });

  test('the kubelet ending the stream ends the client connection (status on channel 3 first)', async () => {
    const { ws, inbox } = await openWs(cp.api, podPath('ex', 'exec', 'command=true&stdin=true&stdout=true'));
    assert.deepEqual(await inbox.next('ready'), frame(1, 'ready\n'));
    const closed = once(ws, 'close');
    ws.send(frame(0, 'exit'));
    assert.deepEqual(await inbox.next('the status'), frame(3, '{"metadata":{},"status":"Success"}'));
    const [code] = await within(closed, WAIT, 'the client connection to close');
    assert.equal(code, 1000);
  });

  test('attach → /attach/{ns}/{pod}/{container} without a command; portforward → /portForward/{ns}/{pod}?port=…', async () => {
    const a = await openWs(cp.api, podPath('ex', 'attach', 'command=ignored&stdin=1&stdout=true&tty=true'));
    assert.equal(fake.last('ex')!.url, `/attach/${NS}/ex/c?input=1&output=1&tty=1`);
    assert.deepEqual(await a.inbox.next('ready'), frame(1, 'ready\n'));
    a.ws.terminate();
    const p = await openWs(cp.api, podPath('ex', 'portforward', 'ports=8080&ports=9090'), 'portforward.k8s.io');
    assert.equal(fake.last('ex')!.url, `/portForward/${NS}/ex?port=8080%2C9090`);
    assert.equal(p.ws.protocol, 'portforward.k8s.io');
    p.ws.terminate();
  });

  test('bytes read with either head (client data after its request, kubelet data with its 101) are forwarded, in order', async () => {
    const h = cp.api;
    let kubeletGot = '';
    const sawEarly = new Promise<void>((resolveEarly) => {
      fake.upgrades.set('exhead', (_req, socket, head) => {
        const got = (b: Buffer): void => {
          kubeletGot += b.toString();
          if (kubeletGot.includes('CLIENT-EARLY')) resolveEarly();
          if (kubeletGot.endsWith('MORE')) socket.write('ECHO:MORE');
        };
        if (head.length) got(head);
        socket.on('data', got);
        // The 101 and the first tunnel bytes in one write: they arrive with the response head.
        socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nKUBELET-EARLY');
      });
    });
    const url = new URL(h.url);
    const sock = tlsConnect({ host: url.hostname, port: Number(url.port), ca: h.caCertPem });
    await within(once(sock, 'secureConnect'), WAIT, 'the TLS connection');
    let clientGot = '';
    sock.on('data', (b: Buffer) => (clientGot += b.toString()));
    // The request and the first tunnel bytes in one write: they arrive with the request head.
    sock.write(
      `GET ${podPath('exhead', 'exec', 'command=x&stdout=true')} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${h.token}\r\n` +
        'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nCLIENT-EARLY',
    );
    await within(sawEarly, WAIT, 'the kubelet to get the early client bytes');
    await eventually(() => clientGot.includes('KUBELET-EARLY'), WAIT, 'the early kubelet bytes');
    assert.match(clientGot, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.ok(clientGot.endsWith('\r\n\r\nKUBELET-EARLY'), clientGot);
    sock.write('MORE');
    await eventually(() => clientGot.endsWith('KUBELET-EARLYECHO:MORE'), WAIT, 'the echo through the tunnel');
    assert.equal(kubeletGot, 'CLIENT-EARLYMORE');
    sock.destroy();
  });

  test('a kubelet that does not upgrade: its status and body reach the client, then the connection closes', async () => {
    const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'SPDY is not supported', code: 400 });
    fake.upgrades.set('exno', (_req, socket) => {
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
    const r = await refused(cp.api, podPath('exno', 'exec', 'command=sh&stdout=true'));
    assert.equal(r.status, 400);
    assert.equal(r.body, body);
  });

  test('exec without an upgrade → 400 "Upgrade request required"; an unscheduled pod → 400; several containers and none named → 400', async () => {
    for (const method of ['GET', 'POST']) {
      const r = await raw(cp.api, method, podPath('ex', 'exec', 'command=sh&stdout=true'));
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json().message, 'Upgrade request required');
    }
    const pending = await refused(cp.api, podPath('pending2', 'exec', 'command=sh&stdout=true'));
    assert.equal(pending.status, 400);
    assert.equal(JSON.parse(pending.body).message, 'pod pending2 does not have a host assigned');
    const two = await refused(cp.api, podPath('two2', 'exec', 'command=sh&stdout=true'));
    assert.equal(two.status, 400);
    assert.equal(JSON.parse(two.body).message, 'a container name must be specified for pod two2, choose one of: [a b]');
    const missing = await refused(cp.api, podPath('nosuchpod', 'exec', 'command=sh&stdout=true'));
    assert.equal(missing.status, 404);
    const unauth = await raw(cp.api, 'GET', podPath('ex', 'exec', 'command=sh'), undefined, {}, false);
    assert.equal(unauth.status, 401);
  });

  test('closing the apiserver ends its open tunnels', async () => {
    const d = dirs[2]!;
    const h = await startApiServer({ dataDir: d.path, port: 0, log: createLogger({ level: 'error' }) });
    let closing: Promise<void> | undefined;
    let client: WebSocket | undefined;
    try {
      fake.trust([cp.api.caCertPem, cp2.caCertPem, cp3.caCertPem, h.caCertPem]);
      await node(h, 'n1', [{ type: 'InternalIP', address: '127.0.0.1' }], fake.port);
      await pod(h, 'ex', 'n1');
      const { ws, inbox } = await openWs(h, podPath('ex', 'exec', 'command=sh&stdin=true&stdout=true'));
      client = ws;
      assert.deepEqual(await inbox.next('ready'), frame(1, 'ready\n'));
      const closed = once(ws, 'close');
      closing = h.close();
      await within(closing, WAIT, 'the apiserver to close with a tunnel open');
      await within(closed, WAIT, 'the tunnel to end');
    } finally {
      // Should the server not end the tunnel, the client does, so that the server can close.
      client?.terminate();
      await within(closing ?? h.close(), WAIT, 'the apiserver to close');
    }
  });
});

describe('the node: address, port, reachability, certificate', () => {
  before(async () => {
    for (const h of [cp.api, cp2, cp3]) {
      await pod(h, 'hp', 'nhost');
      await pod(h, 'np', 'noport');
      await pod(h, 'dp', 'dead');
      await pod(h, 'sp', 'slow');
      await pod(h, 'ok', 'n1');
    }
  });

  test('a Hostname address is preferred over InternalIP by default (it does not resolve: the error names it); the option puts InternalIP first', async () => {
    const r = await raw(cp.api, 'GET', podPath('hp', 'log'));
    assert.equal(r.status, 503, r.text);
    assert.match(r.json().message, /ledge-nodeproxy-test\.invalid/);
    const r2 = await raw(cp2, 'GET', podPath('hp', 'log'));
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.text, 'log of hp\n');
  });

  test('a node without a kubelet endpoint port is dialed at kubeletPort; a node with one at its own', async () => {
    const r = await raw(cp2, 'GET', podPath('np', 'log'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, 'log of np\n');
    const d = await raw(cp2, 'GET', podPath('dp', 'log'));
    assert.equal(d.status, 503, d.text);
    assert.match(d.json().message, new RegExp(`127\\.0\\.0\\.1:${closedPort}`));
  });

  test('an unreachable node: 503 with the dial error (logs, exec); a silent one: 503 after the connect timeout', async () => {
    const r = await raw(cp.api, 'GET', podPath('dp', 'log'));
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json().reason, 'ServiceUnavailable');
    assert.equal(r.json().message, `Get "https://127.0.0.1:${closedPort}/containerLogs/${NS}/dp/c": dial tcp 127.0.0.1:${closedPort}: connect: connection refused`);
    const x = await refused(cp.api, podPath('dp', 'exec', 'command=sh&stdout=true'));
    assert.equal(x.status, 503);
    assert.equal(JSON.parse(x.body).message, `error dialing backend: dial tcp 127.0.0.1:${closedPort}: connect: connection refused`);
    // cp2's connect timeout is 500 ms; the bound here only keeps a regression from hanging.
    const s = await within(raw(cp2, 'GET', podPath('sp', 'log')), WAIT, 'the answer for a silent kubelet');
    assert.equal(s.status, 503, s.text);
    assert.match(s.json().message, /i\/o timeout/);
    await eventually(() => held.size > 0 && [...held].every((c) => c.destroyed || c.closed), WAIT, 'the timed-out connection to be closed');
  });

  test("with kubeletCertificateAuthority the kubelet's certificate is verified: the right CA passes (cp2), another one fails", async () => {
    const good = await raw(cp2, 'GET', podPath('ok', 'log'));
    assert.equal(good.status, 200, good.text);
    const bad = await raw(cp3, 'GET', podPath('ok', 'log'));
    assert.equal(bad.status, 503, bad.text);
    assert.match(bad.json().message, /tls: failed to verify certificate/);
  });
});

describe('kubectl through the node proxy', { skip: KUBECTL_SKIP }, () => {
  const cache = tempDir('ledge-nodeproxy-kubectl-');
  after(() => cache.cleanup());
  before(async () => {
    await pod(cp.api, 'kx', 'n1');
    fake.upgrades.set('kx', (req, socket, head) => {
      fake.wss.handleUpgrade(req, socket, head, (ws) => {
        ws.send(frame(1, 'hello from the fake kubelet\n'));
        ws.send(frame(3, '{"metadata":{},"status":"Success"}'));
        ws.close(1000);
      });
    });
  });

  test('kubectl logs and kubectl exec (WebSocket v5) reach the kubelet and print what it sent', async () => {
    const bin = requireKubectl();
    const k = (args: string[]) => kubectl(bin, cp.api.kubeconfigPath, args, { cacheDir: cache.path, timeoutMs: 30_000 });
    const logs = await k(['logs', 'kx', '--tail=3']);
    assert.equal(logs.code, 0, logs.stderr);
    assert.equal(logs.stdout, 'log of kx\n');
    assert.match(fake.last('kx')!.url, /^\/containerLogs\/default\/kx\/c\?tailLines=3$/);
    const exec = await k(['exec', 'kx', '--', 'sh', '-c', 'echo hi']);
    assert.equal(exec.code, 0, exec.stderr);
    assert.equal(exec.stdout, 'hello from the fake kubelet\n');
    assert.equal(fake.last('kx')!.url, '/exec/default/kx/c?command=sh&command=-c&command=echo+hi&error=1&output=1');
  });
});
