/**
 * Helpers of the CloudStream tests: an in-memory link (a cloud Mux and an edge Mux whose frames
 * reach the other side asynchronously), fake CloudStream deps over it, a test CA with client
 * certificates, and HTTPS / WebSocket clients with those certificates.
 */
import { webcrypto, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import { Mux, type Stream, type StreamRequest } from '../../shared/stream/index.js';
import { createCborCodec, type StreamFrame } from '../../shared/protocol/index.js';
import { DisconnectedError } from '../../shared/errors/index.js';
import { Beehive } from '../../shared/beehive/index.js';
import { createLogger, type Logger } from '../../shared/log/index.js';
import { CloudStream, type CloudStreamDeps, type CloudStreamOptions, type PeerInfo, type StreamPeers } from '../../cloud/cloudstream/index.js';
import { within } from '../helpers/process.js';

// ---- the link ----

const codec = createCborCodec();

/** A cloud Mux and an edge Mux joined by an asynchronous in-memory link; the edge's opens are queued for the test to script. */
export class Link {
  readonly cloud: Mux;
  readonly edge: Mux;
  /** Edge-side streams the cloud opened, not yet taken by {@link nextOpen}. */
  private readonly opened: Stream[] = [];
  private readonly waiters: ((s: Stream) => void)[] = [];
  /** Called for each edge-side stream at once (instead of queueing it), when set. */
  onOpen: ((s: Stream) => void) | undefined;

  /** Frames written and not yet delivered. */
  inFlight = 0;

  constructor(window?: number) {
    // Every frame goes through the real codec, as on the wire, and arrives on a later turn.
    const deliver = (to: () => Mux) => (frame: StreamFrame) => {
      const copy = codec.decodeFrame(codec.encodeStream(frame)) as StreamFrame;
      this.inFlight++;
      setImmediate(() => {
        this.inFlight--;
        to().receive(copy);
      });
    };
    this.cloud = new Mux({ write: deliver(() => this.edge), canWrite: () => true, ...(window ? { window } : {}) });
    this.edge = new Mux({
      write: deliver(() => this.cloud),
      canWrite: () => true,
      ...(window ? { window } : {}),
      onOpen: (s) => {
        if (this.onOpen) return this.onOpen(s);
        const w = this.waiters.shift();
        if (w) w(s);
        else this.opened.push(s);
      },
    });
  }

  /** The next stream the cloud opens, as the edge sees it. */
  nextOpen(what = 'the cloud to open a stream'): Promise<Stream> {
    const s = this.opened.shift();
    if (s) return Promise.resolve(s);
    return within(new Promise<Stream>((resolve) => this.waiters.push(resolve)), 10_000, what);
  }
}

/** Fake deps: pods bound to nodes, nodes connected (each with its own link). */
export class FakeCluster {
  readonly pods = new Map<string, string>();
  readonly links = new Map<string, Link>();
  readonly requests: StreamRequest[] = [];
  /** Throws this from openStream instead of opening, when set. */
  openError: Error | undefined;

  bind(namespace: string, pod: string, node: string): this {
    this.pods.set(`${namespace}/${pod}`, node);
    return this;
  }

  connect(node: string, window?: number): Link {
    const l = new Link(window);
    this.links.set(node, l);
    return l;
  }

  deps(identity: string, peers?: StreamPeers): CloudStreamDeps {
    return {
      identity,
      ...(peers ? { peers } : {}),
      podNode: (ns, pod) => this.pods.get(`${ns}/${pod}`),
      isConnected: (node) => this.links.has(node),
      openStream: (node, request) => {
        if (this.openError) throw this.openError;
        const l = this.links.get(node);
        if (!l) throw new DisconnectedError(`node ${node} is not connected`);
        this.requests.push(request);
        return l.cloud.open(request);
      },
    };
  }
}

/** Peers in memory: a shared map of Lease holders and one token. */
export class FakePeers implements StreamPeers {
  readonly holders = new Map<string, PeerInfo>();
  tokenValue = randomBytes(32).toString('base64url');
  holder = async (node: string) => this.holders.get(node);
  token = async () => this.tokenValue;
  claim = async (node: string, self: PeerInfo) => void this.holders.set(node, self);
  release = async (node: string, identity: string) => {
    if (this.holders.get(node)?.identity === identity) this.holders.delete(node);
  };
}

// ---- certificates ----

export interface Pem {
  cert: string;
  key: string;
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64.replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

async function x509() {
  await import('reflect-metadata');
  const lib = await import('@peculiar/x509');
  lib.cryptoProvider.set(webcrypto as unknown as Parameters<typeof lib.cryptoProvider.set>[0]);
  return lib;
}

/** A CA (cert + key) and a client certificate signed by it. */
export async function makeCa(name: string): Promise<{ ca: Pem; client: Pem }> {
  const lib = await x509();
  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const ca = await lib.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${name}`,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    keys: caKeys,
    signingAlgorithm: ALG,
    extensions: [
      new lib.BasicConstraintsExtension(true, undefined, true),
      new lib.KeyUsagesExtension(lib.KeyUsageFlags.keyCertSign | lib.KeyUsageFlags.digitalSignature, true),
      await lib.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const client = await lib.X509CertificateGenerator.create({
    serialNumber: '02',
    subject: 'CN=kube-apiserver-kubelet-client, O=system:masters',
    issuer: ca.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: ALG,
    extensions: [
      new lib.BasicConstraintsExtension(false, undefined, true),
      new lib.KeyUsagesExtension(lib.KeyUsageFlags.digitalSignature, true),
      new lib.ExtendedKeyUsageExtension([lib.ExtendedKeyUsage.clientAuth], false),
      await lib.AuthorityKeyIdentifierExtension.create(ca, false),
    ],
  });
  return {
    ca: { cert: ca.toString('pem'), key: pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', caKeys.privateKey)) },
    client: { cert: client.toString('pem'), key: pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)) },
  };
}

// ---- CloudStream under test ----

export interface Running {
  stream: CloudStream;
  bee: Beehive;
  url: string;
  stop(): Promise<void>;
}

export const quietLog = (): Logger => createLogger({ level: (process.env.LEDGE_LOG_LEVEL as 'warn' | undefined) ?? 'warn' });

/** Starts a CloudStream on 127.0.0.1:0 in its own Beehive; its client CA is `caPem` (written to `dir`). */
export async function startCloudStream(dir: string, deps: CloudStreamDeps, options: Partial<CloudStreamOptions> = {}, caPem?: string, log: Logger = quietLog()): Promise<Running> {
  let clientCaFile: string | undefined;
  if (caPem) {
    clientCaFile = join(dir, `client-ca-${randomBytes(4).toString('hex')}.crt`);
    writeFileSync(clientCaFile, caPem);
  }
  const stream = new CloudStream({ host: '127.0.0.1', port: 0, dataDir: dir, ...(clientCaFile ? { clientCaFile } : {}), ...options }, deps, log);
  const bee = new Beehive({ log });
  bee.register(stream);
  bee.start();
  await within(stream.ready(), 20_000, 'CloudStream to listen');
  return { stream, bee, url: `https://127.0.0.1:${stream.address().port}`, stop: () => bee.stop() };
}

// ---- clients ----

export interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
  json(): Record<string, unknown>;
}

/** Starts a GET (or `method`) and resolves with the response head; the body is the caller's to read. */
export function request(url: string, cert?: Pem, headers: Record<string, string> = {}, method = 'GET'): Promise<{ res: IncomingMessage; req: ReturnType<typeof https.request> }> {
  return within(
    new Promise((resolve, reject) => {
      const req = https.request(url, { method, headers, rejectUnauthorized: false, agent: false, ...(cert ? { cert: cert.cert, key: cert.key } : {}) }, (res) =>
        resolve({ res, req }),
      );
      req.on('error', reject);
      req.end();
    }),
    10_000,
    `an answer to ${method} ${url}`,
  );
}

/** The whole answer of a GET. */
export async function fetchAll(url: string, cert?: Pem, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> {
  const { res } = await request(url, cert, headers, method);
  const chunks: Buffer[] = [];
  await within(
    new Promise<void>((resolve, reject) => {
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', resolve);
      res.on('error', reject);
    }),
    10_000,
    `the body of ${url}`,
  );
  const body = Buffer.concat(chunks).toString('utf8');
  return { status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) as Record<string, unknown> };
}

/** A WebSocket to `url` (wss) with the client certificate, offering `protocols`. */
export function wsClient(url: string, protocols: string[], cert?: Pem, headers: Record<string, string> = {}): WebSocket {
  return new WebSocket(url.replace(/^https:/, 'wss:'), protocols, { rejectUnauthorized: false, headers, ...(cert ? { cert: cert.cert, key: cert.key } : {}) });
}

/** Resolves with the HTTP answer of a refused WebSocket upgrade ('unexpected-response'), or rejects if it opened. */
export function refusedUpgrade(ws: WebSocket): Promise<Reply> {
  return within(
    new Promise<Reply>((resolve, reject) => {
      ws.once('open', () => reject(new Error('the WebSocket opened')));
      ws.once('error', (err) => reject(err));
      ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) as Record<string, unknown> });
        });
      });
    }),
    10_000,
    'the upgrade to be refused',
  );
}

/** Binary message [channel, ...payload]. */
export const frame = (channel: number, payload: string | Uint8Array = ''): Buffer => Buffer.concat([Buffer.from([channel]), Buffer.from(payload)]);
