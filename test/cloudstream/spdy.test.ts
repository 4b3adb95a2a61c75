// SPDY/3.1 exec/attach at the kubelet endpoint (cloud/cloudstream/spdy.ts): the codec (split
// chunks, limits, header compression), the kubelet handshake, and the bridge to a Ledge stream,
// driven by a SPDY client written here with the module's codec and by the real kubectl 1.20 (SPDY)
// through the local control plane's node proxy.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once, EventEmitter } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import type { IncomingMessage } from 'node:http';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import zlib from 'node:zlib';
import {
  FrameParser,
  Flag,
  FrameType,
  GoAwayStatus,
  HeaderDeflater,
  HeaderInflater,
  MAX_CONTROL_BODY,
  MAX_HEADER_BLOCK,
  MAX_HEADER_FRAMES,
  MAX_STREAMS,
  RstStatus,
  SPDY3_DICTIONARY,
  SPDY_HIGH_WATER,
  controlFrame,
  dataFrame,
  decodeHeaderBlock,
  encodeHeaderBlock,
  goAwayFrame,
  isSpdyUpgrade,
  negotiateSpdyProtocol,
  pingFrame,
  serveSpdyExec,
  synStreamFrame,
  type SpdyFrame,
} from '../../cloud/cloudstream/spdy.js';
import { loadOrCreatePki } from '../../apiserver/pki.js';
import { Channel, Mux, type Stream, type StreamError, type StreamFrame, type StreamRequest } from '../../shared/stream/index.js';
import { ErrorCode } from '../../shared/errors/index.js';
import { createLogger } from '../../shared/log/index.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { tempDir } from '../helpers/files.js';
import { eventually, within } from '../helpers/process.js';
import { kubectlPath, raw } from '../apiserver/helpers.js';

const WAIT = 15_000;
const NS = 'default';
const log = createLogger({ level: 'silent' });

// ------------------------------------------------------------------ the edge: a Mux pair, scripted per pod

/** What the edge saw of one stream. */
interface EdgeSeen {
  stream: Stream;
  request: StreamRequest;
  stdin: Buffer[];
  resizes: string[];
  stdinEof: boolean;
  /** Resolves with the stream's close error (undefined: a clean end). */
  closed: Promise<StreamError | undefined>;
}

type Script = (s: Stream, seen: EdgeSeen) => void;

class Edge extends EventEmitter {
  readonly cloud: Mux;
  readonly edge: Mux;
  readonly scripts = new Map<string, Script>();
  readonly seen: EdgeSeen[] = [];
  /** Frames written and not yet delivered. */
  inFlight = 0;

  constructor() {
    super();
    // Frames reach the other side on a later turn, as over a link.
    const deliver = (to: () => Mux) => (frame: StreamFrame) => {
      const copy: StreamFrame = { ...frame, data: frame.data instanceof Uint8Array ? new Uint8Array(frame.data) : frame.data };
      this.inFlight++;
      setImmediate(() => {
        this.inFlight--;
        to().receive(copy);
      });
    };
    this.cloud = new Mux({ write: deliver(() => this.edge), canWrite: () => true });
    this.edge = new Mux({
      write: deliver(() => this.cloud),
      canWrite: () => true,
      onOpen: (s) => {
        let resolveClosed!: (e: StreamError | undefined) => void;
        const seen: EdgeSeen = { stream: s, request: s.request, stdin: [], resizes: [], stdinEof: false, closed: new Promise((r) => (resolveClosed = r)) };
        s.on('close', (e) => resolveClosed(e));
        s.on('message', (ch, p) => {
          if (ch === Channel.Stdin) seen.stdin.push(Buffer.from(p));
          if (ch === Channel.Resize) seen.resizes.push(Buffer.from(p).toString());
          if (ch === Channel.Close && p[0] === Channel.Stdin) seen.stdinEof = true;
        });
        this.seen.push(seen);
        this.emit('seen', seen);
        // By pod name, or by its part before the first '-' (one pod per test: a failed test leaves nothing to the next).
        const script = this.scripts.get(s.request.pod) ?? this.scripts.get(s.request.pod.split('-')[0]!);
        if (script) script(s, seen);
        else s.abort({ code: ErrorCode.NotFound, message: `pod ${s.request.namespace}/${s.request.pod} is not on this node` });
      },
    });
  }

  /** The next stream the edge sees for `pod`. */
  next(pod: string): Promise<EdgeSeen> {
    const have = this.seen.find((s) => s.request.pod === pod && !taken.has(s));
    if (have) {
      taken.add(have);
      return Promise.resolve(have);
    }
    return within(
      new Promise<EdgeSeen>((resolve) => {
        const on = (s: EdgeSeen) => {
          if (s.request.pod !== pod || taken.has(s)) return;
          taken.add(s);
          this.off('seen', on);
          resolve(s);
        };
        this.on('seen', on);
      }),
      WAIT,
      `the edge to see a stream for ${pod}`,
    );
  }
}
const taken = new WeakSet<EdgeSeen>();

const encoder = new TextEncoder();
const bytes = (s: string) => encoder.encode(s);
const exitStatus = (code: number) =>
  bytes(
    JSON.stringify({
      metadata: {},
      status: 'Failure',
      message: `command terminated with non-zero exit code: exit status ${code}`,
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
    }),
  );
const SUCCESS = bytes('{"metadata":{},"status":"Success"}');

/** Echoes stdin to stdout, says something on stderr at once; at stdin EOF: exit code 3. */
const echoScript: Script = (s) => {
  s.accept();
  s.send(Channel.Stderr, bytes('warning: from the edge\n'));
  s.on('message', (ch, p) => {
    if (ch === Channel.Stdin) s.send(Channel.Stdout, p);
    if (ch === Channel.Close && p[0] === Channel.Stdin) {
      s.send(Channel.Error, exitStatus(3));
      s.end();
    }
  });
};

/** Prints and ends at once (before a client could have created its streams). */
const fastScript: Script = (s) => {
  s.accept();
  s.send(Channel.Stdout, bytes('hi\n'));
  s.send(Channel.Error, SUCCESS);
  s.end();
};

/** Accepts and waits (for the client to go away). */
const hangScript: Script = (s) => s.accept();

// ------------------------------------------------------------------ the "kubelet": an HTTPS server whose upgrades are SPDY exec

interface Served {
  req: IncomingMessage;
  socket: Duplex;
  done: Promise<void>;
  /** The first bytes the server wrote (the 101 or the refusal). */
  answer: string;
}

class Kubelet {
  server!: Server;
  port = 0;
  readonly served: Served[] = [];
  creationTimeoutMs: number | undefined;
  private readonly sockets = new Set<Duplex>();

  constructor(readonly edge: Edge) {}

  async start(certPem: string, keyPem: string): Promise<void> {
    this.server = createHttpsServer({ cert: certPem, key: keyPem }, (_req, res) => res.writeHead(404).end());
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      const request = requestOf(req);
      const open = () =>
        new Promise<Stream>((resolve, reject) => {
          const s = this.edge.cloud.open(request);
          let opened = false;
          s.on('open', () => {
            opened = true;
            // Held, not lost, until the bridge listens (see serveSpdyExec).
            s.pause();
            resolve(s);
          });
          s.on('close', (e) => {
            if (!opened) reject(Object.assign(new Error(e?.message ?? 'closed'), { code: e?.code }));
          });
        });
      const opts = this.creationTimeoutMs !== undefined ? { streamCreationTimeoutMs: this.creationTimeoutMs } : {};
      const served = { req, socket, answer: '' } as Served;
      const write = socket.write.bind(socket) as (...a: unknown[]) => boolean;
      (socket as unknown as { write: (...a: unknown[]) => boolean }).write = (...a: unknown[]) => {
        if (served.answer === '') served.answer = String(a[0]);
        return write(...a);
      };
      served.done = serveSpdyExec(req, socket, head, open, log, opts);
      this.served.push(served);
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** The StreamRequest of a kubelet `/exec|attach/{ns}/{pod}/{container}?…` request. */
function requestOf(req: IncomingMessage): StreamRequest {
  const url = new URL(req.url ?? '/', 'https://kubelet');
  const [, kind, namespace, pod, container] = url.pathname.split('/');
  const q = url.searchParams;
  const on = (...n: string[]) => n.some((x) => q.get(x) === '1' || q.get(x) === 'true');
  return {
    kind: kind === 'attach' ? 'attach' : 'exec',
    namespace: namespace ?? '',
    pod: pod ?? '',
    container: container ?? '',
    command: q.getAll('command'),
    stdin: on('input', 'stdin'),
    stdout: on('output', 'stdout'),
    stderr: on('error', 'stderr'),
    tty: on('tty'),
  };
}

// ------------------------------------------------------------------ a SPDY client (as client-go's, with the module's codec)

interface ClientStreamState {
  data: Buffer[];
  fin: boolean;
  rst?: number;
  replied: boolean;
}

class SpdyClient extends EventEmitter {
  readonly streams = new Map<number, ClientStreamState>();
  readonly pings: number[] = [];
  goAway: { lastGood: number; status: number } | undefined;
  closed = false;
  private readonly parser = new FrameParser();
  private readonly deflater = new HeaderDeflater();
  private readonly inflater = new HeaderInflater();
  private nextId = 1;

  constructor(
    readonly socket: TLSSocket,
    readonly protocol: string,
    rest: Buffer,
  ) {
    super();
    socket.on('data', (c: Buffer) => this.feed(c));
    socket.once('close', () => {
      this.closed = true;
      this.emit('change');
    });
    this.feed(rest);
  }

  /** Upgrades; a refused upgrade resolves with its status, headers and body instead. */
  static async connect(
    port: number,
    path: string,
    protocols: string[],
    extra: string[] = [],
  ): Promise<{ client: SpdyClient; status: 101 } | { status: number; headers: string; body: string }> {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    await within(once(socket, 'secureConnect'), WAIT, 'the TLS connection');
    const head = [
      `POST ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      'Connection: Upgrade',
      'Upgrade: SPDY/3.1',
      ...protocols.map((p) => `X-Stream-Protocol-Version: ${p}`),
      ...extra,
      'Content-Length: 0',
    ];
    socket.write(`${head.join('\r\n')}\r\n\r\n`);
    let buf = Buffer.alloc(0);
    const chunks: Buffer[] = [];
    return within(
      new Promise((resolve, reject) => {
        const onData = (c: Buffer) => {
          buf = Buffer.concat([buf, c]);
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          socket.off('data', onData);
          const headers = buf.subarray(0, end).toString();
          const status = Number(headers.split(' ')[1]);
          const rest = buf.subarray(end + 4);
          if (status === 101) {
            const protocol = /x-stream-protocol-version: *(\S+)/i.exec(headers)?.[1] ?? '';
            resolve({ client: new SpdyClient(socket, protocol, rest), status: 101 });
            return;
          }
          chunks.push(rest);
          socket.on('data', (d: Buffer) => chunks.push(d));
          socket.once('end', () => resolve({ status, headers, body: Buffer.concat(chunks).toString() }));
        };
        socket.on('data', onData);
        socket.once('error', reject);
      }),
      WAIT,
      `the answer to ${path}`,
    );
  }

  private feed(chunk: Buffer): void {
    this.parser.push(chunk);
    for (let f = this.parser.next(); f; f = this.parser.next()) this.onFrame(f);
    this.emit('change');
  }

  private onFrame(f: SpdyFrame): void {
    if (f.kind === 'data') {
      const s = this.streams.get(f.streamId);
      assert.ok(s?.replied, `DATA on stream ${f.streamId} before its SYN_REPLY`);
      if (f.data.length) s.data.push(Buffer.from(f.data));
      if (f.flags & Flag.Fin) s.fin = true;
      return;
    }
    assert.equal(f.version, 3);
    const id = f.body.length >= 4 ? f.body.readUInt32BE(0) & 0x7fffffff : 0;
    switch (f.type) {
      case FrameType.SynReply: {
        assert.equal(decodeHeaderBlock(this.inflater.inflate(f.body.subarray(4))).size, 0);
        this.streams.get(id)!.replied = true;
        if (f.flags & Flag.Fin) this.streams.get(id)!.fin = true;
        break;
      }
      case FrameType.RstStream: {
        const s = this.streams.get(id);
        if (s) s.rst = f.body.readUInt32BE(4);
        else this.streams.set(id, { data: [], fin: false, replied: false, rst: f.body.readUInt32BE(4) });
        break;
      }
      case FrameType.GoAway:
        this.goAway = { lastGood: id, status: f.body.readUInt32BE(4) };
        break;
      case FrameType.Ping:
        this.pings.push(f.body.readUInt32BE(0));
        break;
      default:
        assert.fail(`unexpected control frame type ${f.type}`);
    }
  }

  /** Resolves once `check()` holds (checked on every frame). */
  until<T>(check: () => T, what: string): Promise<NonNullable<T>> {
    return within(
      new Promise<NonNullable<T>>((resolve) => {
        const test = () => {
          const v = check();
          if (v) {
            this.off('change', test);
            resolve(v as NonNullable<T>);
          }
        };
        this.on('change', test);
        test();
      }),
      WAIT,
      what,
    );
  }

  /** Opens a stream of `type` and waits for its reply (as client-go's CreateStream). */
  async create(type: string, flags = 0): Promise<number> {
    const id = this.nextId;
    this.nextId += 2;
    this.streams.set(id, { data: [], fin: false, replied: false });
    this.socket.write(synStreamFrame(id, await this.deflater.deflate(encodeHeaderBlock({ streamtype: type })), flags));
    await this.until(() => this.streams.get(id)!.replied || this.streams.get(id)!.rst !== undefined, `the reply to the ${type} stream`);
    return id;
  }

  /** Opens the streams client-go opens, in its order. */
  async createAll(types: string[]): Promise<Record<string, number>> {
    const ids: Record<string, number> = {};
    for (const t of types) ids[t] = await this.create(t);
    return ids;
  }

  send(id: number, data: Uint8Array | string, fin = false): void {
    this.socket.write(dataFrame(id, fin ? Flag.Fin : 0, typeof data === 'string' ? bytes(data) : data));
  }

  text(id: number): string {
    return Buffer.concat(this.streams.get(id)?.data ?? []).toString();
  }

  /** Waits for the server's end: a FIN on every stream and a GOAWAY. */
  ended(): Promise<boolean> {
    return this.until(() => this.goAway !== undefined && [...this.streams.values()].every((s) => s.fin || s.rst !== undefined), 'the end of the exchange');
  }

  destroy(): void {
    this.socket.destroy();
    this.deflater.close();
  }
}

// ------------------------------------------------------------------ setup

const cp = useLocalControlPlane('ledge-spdy-');
const pkiDir = tempDir('ledge-spdy-pki-');
const home = tempDir('ledge-spdy-kubectl-');
let edge: Edge;
let kubelet: Kubelet;
const PROTOS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];

before(async () => {
  const pki = await loadOrCreatePki(pkiDir.path, ['127.0.0.1']);
  edge = new Edge();
  kubelet = new Kubelet(edge);
  await kubelet.start(pki.serverCertPem, pki.serverKeyPem);
});

after(async () => {
  await kubelet?.close();
  pkiDir.cleanup();
  home.cleanup();
});

/** The SPDY exchange with the server for `pod`: upgraded, else failed. */
async function connect(pod: string, query: string, protocols = PROTOS): Promise<SpdyClient> {
  const r = await SpdyClient.connect(kubelet.port, `/exec/${NS}/${pod}/c?command=sh&${query}`, protocols);
  assert.equal(r.status, 101, 'body' in r ? r.body : '');
  return (r as { client: SpdyClient }).client;
}

// ------------------------------------------------------------------ the codec

describe('codec', () => {
  test('the SPDY/3 dictionary: 1423 bytes, its zlib id 0xe3c6a7c2 (the one Go checks)', () => {
    assert.equal(SPDY3_DICTIONARY.length, 1423);
    const z = zlib.deflateSync(Buffer.from('x'), { dictionary: SPDY3_DICTIONARY });
    assert.equal(z[1]! & 0x20, 0x20, 'FDICT set');
    assert.equal(z.readUInt32BE(2), 0xe3c6a7c2);
    assert.equal(SPDY3_DICTIONARY.subarray(0, 11).toString('latin1'), '\0\0\0\x07options');
    assert.ok(SPDY3_DICTIONARY.toString('latin1').endsWith('utf-,*,enq=0.'));
  });

  test('frames come out the same whatever the chunking (1 byte, random, all at once)', async () => {
    const deflater = new HeaderDeflater();
    const big = randomBytes(100_000);
    const frames = [
      synStreamFrame(1, await deflater.deflate(encodeHeaderBlock({ streamtype: 'error' }))),
      synStreamFrame(3, await deflater.deflate(encodeHeaderBlock({ streamtype: 'stdin', other: ['a', 'b'] })), Flag.Fin),
      dataFrame(3, 0, bytes('hello')),
      dataFrame(3, Flag.Fin, new Uint8Array(0)),
      pingFrame(7),
      dataFrame(5, 0, big),
      goAwayFrame(3, GoAwayStatus.Ok),
    ];
    deflater.close();
    const wire = Buffer.concat(frames);
    const parse = (chunks: Buffer[]) => {
      const p = new FrameParser();
      const out: SpdyFrame[] = [];
      for (const c of chunks) {
        p.push(c);
        for (let f = p.next(); f; f = p.next()) out.push(f);
      }
      assert.equal(p.buffered, 0);
      return out;
    };
    const whole = parse([wire]);
    assert.equal(whole.length, frames.length);
    const ones = parse([...wire].map((b) => Buffer.from([b])));
    const cuts: Buffer[] = [];
    for (let off = 0; off < wire.length; ) {
      const n = 1 + Math.floor(Math.random() * 3000);
      cuts.push(wire.subarray(off, off + n));
      off += n;
    }
    const random = parse(cuts);
    for (const got of [ones, random]) assert.deepEqual(got, whole);
    // The frames' fields.
    const [s1, s3, d1, fin, ping, d2, ga] = whole as SpdyFrame[];
    assert.deepEqual({ ...s1!, body: undefined }, { kind: 'control', version: 3, type: FrameType.SynStream, flags: 0, body: undefined });
    assert.equal(s3!.kind === 'control' && s3!.flags, Flag.Fin);
    assert.deepEqual(d1, { kind: 'data', streamId: 3, flags: 0, data: Buffer.from('hello') });
    assert.deepEqual(fin, { kind: 'data', streamId: 3, flags: Flag.Fin, data: Buffer.alloc(0) });
    assert.equal(ping!.kind === 'control' && ping!.body.readUInt32BE(0), 7);
    assert.ok(d2!.kind === 'data' && d2!.data.equals(big));
    assert.equal(ga!.kind === 'control' && ga!.type, FrameType.GoAway);
    // Header blocks inflate in order, one zlib stream across frames.
    const inflater = new HeaderInflater();
    const h1 = decodeHeaderBlock(inflater.inflate((s1 as { body: Buffer }).body.subarray(10)));
    const h3 = decodeHeaderBlock(inflater.inflate((s3 as { body: Buffer }).body.subarray(10)));
    assert.deepEqual([...h1], [['streamtype', ['error']]]);
    assert.deepEqual(
      [...h3],
      [
        ['streamtype', ['stdin']],
        ['other', ['a', 'b']],
      ],
    );
  });

  test('limits: a control frame over 64 KiB is refused from its head; header blocks over 64 KiB, too many, broken: StreamProtocol', async () => {
    const p = new FrameParser();
    const head = controlFrame(FrameType.Headers, 0, Buffer.alloc(MAX_CONTROL_BODY + 1)).subarray(0, 8);
    p.push(head);
    assert.throws(() => p.next(), { code: ErrorCode.StreamProtocol });
    // A DATA frame's 24-bit length is its own bound: 16 MiB - 1 is waited for, not refused.
    const q = new FrameParser();
    q.push(dataFrame(1, 0, new Uint8Array(0)).fill(0xff, 5, 8));
    assert.equal(q.next(), undefined);

    const deflater = new HeaderDeflater();
    const inflater = new HeaderInflater();
    // Over 64 KiB once inflated (the compressed form is small: a zlib bomb is refused).
    const bomb = zlib.deflateSync(Buffer.alloc(MAX_HEADER_BLOCK + 1), { dictionary: SPDY3_DICTIONARY, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    assert.ok(bomb.length < 1000);
    assert.throws(() => new HeaderInflater().inflate(bomb), { code: ErrorCode.StreamProtocol, message: /header block of 65537 bytes/ });
    assert.throws(() => new HeaderInflater().inflate(Buffer.from('not zlib at all')), { code: ErrorCode.StreamProtocol, message: /does not decompress/ });
    for (let i = 0; i < MAX_HEADER_FRAMES; i++) inflater.inflate(await deflater.deflate(encodeHeaderBlock({ n: String(i) })));
    await assert.rejects(deflater.deflate(Buffer.alloc(MAX_HEADER_BLOCK + 1)), RangeError);
    assert.throws(() => inflater.inflate(Buffer.alloc(1)), { code: ErrorCode.StreamProtocol, message: /more than 16 header blocks/ });
    deflater.close();
    // Malformed blocks.
    assert.throws(() => decodeHeaderBlock(Buffer.from([0, 0, 0, 9, 0, 0, 0, 0])), { code: ErrorCode.StreamProtocol });
    assert.throws(() => decodeHeaderBlock(Buffer.concat([encodeHeaderBlock({ a: 'b' }), Buffer.from([1])])), { code: ErrorCode.StreamProtocol });
    assert.throws(() => decodeHeaderBlock(Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1])), { code: ErrorCode.StreamProtocol });
  });

  test('isSpdyUpgrade and the protocol negotiation (the client order; v1 is not served)', () => {
    const req = (headers: [string, string][]) => ({ rawHeaders: headers.flat() }) as unknown as IncomingMessage;
    assert.ok(
      isSpdyUpgrade(
        req([
          ['Connection', 'Upgrade'],
          ['Upgrade', 'SPDY/3.1'],
        ]),
      ),
    );
    assert.ok(
      isSpdyUpgrade(
        req([
          ['connection', 'keep-alive, upgrade'],
          ['upgrade', 'spdy/3.1'],
        ]),
      ),
    );
    assert.ok(
      !isSpdyUpgrade(
        req([
          ['Connection', 'Upgrade'],
          ['Upgrade', 'websocket'],
        ]),
      ),
    );
    assert.ok(!isSpdyUpgrade(req([['Upgrade', 'SPDY/3.1']])));
    assert.equal(negotiateSpdyProtocol(['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v3.channel.k8s.io']), 'v4.channel.k8s.io');
    assert.equal(negotiateSpdyProtocol(['v3.channel.k8s.io', 'v4.channel.k8s.io']), 'v3.channel.k8s.io');
    assert.equal(negotiateSpdyProtocol(['channel.k8s.io']), undefined);
  });
});

// ------------------------------------------------------------------ the handshake and the bridge, with the client above

describe('handshake', () => {
  test('no protocol offered → 400; none served → 403 listing ours; no stream asked → 400; the edge refusing → its status and message', async () => {
    const none = await SpdyClient.connect(kubelet.port, `/exec/${NS}/x/c?command=sh&output=1`, []);
    assert.equal(none.status, 400);
    assert.match((none as { body: string }).body, /X-Stream-Protocol-Version is required/);
    const v1 = await SpdyClient.connect(kubelet.port, `/exec/${NS}/x/c?command=sh&output=1`, ['channel.k8s.io']);
    assert.equal(v1.status, 403);
    assert.match((v1 as { headers: string }).headers, /X-Accepted-Stream-Protocol-Versions: v4\.channel\.k8s\.io/);
    const nothing = await SpdyClient.connect(kubelet.port, `/exec/${NS}/x/c?command=sh`, PROTOS);
    assert.equal(nothing.status, 400);
    assert.match((nothing as { body: string }).body, /at least 1 of stdin, stdout, stderr/);
    const before = edge.seen.length;
    const refused = await SpdyClient.connect(kubelet.port, `/exec/${NS}/nosuchpod/c?command=sh&output=1`, PROTOS);
    assert.equal(refused.status, 404);
    const status = JSON.parse((refused as { body: string }).body);
    assert.equal(status.kind, 'Status');
    assert.equal(status.reason, 'NotFound');
    assert.equal(status.message, `pod ${NS}/nosuchpod is not on this node`);
    assert.equal(edge.seen.length, before + 1, 'the edge was asked before the 101');
  });
});

describe('bridge', () => {
  before(() => {
    edge.scripts.set('echo', echoScript);
    edge.scripts.set('fast', fastScript);
    edge.scripts.set('hang', hangScript);
  });

  test('v4: stdin → the edge → stdout, stderr, stdin FIN = EOF at the edge, the exit-code Status on the error stream, then FINs and GOAWAY', async () => {
    const c = await connect('echo', 'input=1&output=1&error=1', ['v5.channel.k8s.io', ...PROTOS]);
    assert.equal(c.protocol, 'v4.channel.k8s.io');
    const ids = await c.createAll(['error', 'stdin', 'stdout', 'stderr']);
    const seen = await edge.next('echo');
    c.send(ids.stdin!, 'hello\n');
    await c.until(() => c.text(ids.stdout!) === 'hello\n', 'the echo');
    assert.ok(!seen.stdinEof);
    c.send(ids.stdin!, 'world\n', true);
    await c.ended();
    assert.equal(c.text(ids.stdout!), 'hello\nworld\n');
    assert.equal(c.text(ids.stderr!), 'warning: from the edge\n');
    assert.deepEqual(JSON.parse(c.text(ids.error!)), JSON.parse(Buffer.from(exitStatus(3)).toString()));
    assert.ok(seen.stdinEof, 'stdin EOF reached the edge');
    assert.equal(Buffer.concat(seen.stdin).toString(), 'hello\nworld\n');
    assert.deepEqual(c.goAway, { lastGood: ids.stderr, status: GoAwayStatus.Ok });
    assert.equal(await within(seen.closed, WAIT, 'the edge stream end'), undefined);
    c.destroy();
  });

  test('v3 and v2: a failure is its message as text on the error stream, a success nothing', async () => {
    edge.scripts.set('v3fail', (s) => {
      s.accept();
      s.send(Channel.Error, exitStatus(2));
      s.end();
    });
    const c3 = await connect('v3fail', 'output=1', ['v3.channel.k8s.io']);
    const a = await c3.createAll(['error', 'stdout']);
    await c3.ended();
    assert.equal(c3.text(a.error!), 'command terminated with non-zero exit code: exit status 2');
    c3.destroy();
    const c2 = await connect('fast', 'output=1', ['v2.channel.k8s.io']);
    const b = await c2.createAll(['error', 'stdout']);
    await c2.ended();
    assert.equal(c2.text(b.stdout!), 'hi\n');
    assert.equal(c2.text(b.error!), '');
    c2.destroy();
  });

  test('what the edge sends before the client created its streams is held and delivered (a command that ends at once)', async () => {
    const c = await connect('fast', 'output=1&error=1');
    const seen = await edge.next('fast');
    // The edge is done before a single client stream exists.
    assert.equal(await within(seen.closed, WAIT, 'the fast command'), undefined);
    const ids = await c.createAll(['error', 'stdout', 'stderr']);
    await c.ended();
    assert.equal(c.text(ids.stdout!), 'hi\n');
    assert.equal(c.text(ids.error!), '{"metadata":{},"status":"Success"}');
    c.destroy();
  });

  test('an edge that ends before the client created its streams: a clean end = an empty error stream, an abort = a Failure Status', async () => {
    edge.scripts.set('quiet', (s) => {
      s.accept();
      s.end();
    });
    edge.scripts.set('early', (s) => {
      s.accept();
      s.abort({ code: ErrorCode.Runtime, message: 'exec failed: no such file' });
    });
    for (const [pod, want] of [
      ['quiet', ''],
      ['early', '{"metadata":{},"status":"Failure","message":"exec failed: no such file"}'],
    ] as const) {
      const c = await connect(pod, 'output=1');
      const seen = await edge.next(pod);
      await within(seen.closed, WAIT, `the ${pod} command`);
      const ids = await c.createAll(['error', 'stdout']);
      await c.ended();
      assert.equal(c.text(ids.error!), want);
      assert.equal(c.text(ids.stdout!), '');
      c.destroy();
    }
  });

  test('tty: resize JSON values (a JSON stream, split anywhere) reach the edge as {"Width","Height"}; no stderr stream', async () => {
    edge.scripts.set('tty', (s) => s.accept());
    const c = await connect('tty', 'input=1&output=1&error=1&tty=1');
    const ids = await c.createAll(['error', 'stdin', 'stdout', 'resize']);
    const seen = await edge.next('tty');
    assert.equal(seen.request.tty, true);
    const json = '{"Width":80,"Height":24}\n{"Height":50, "Width":100}\n  {"Width":-1,"Height":3}{"Width":120,"Height":40}\n';
    for (let i = 0; i < json.length; i += 7) c.send(ids.resize!, json.slice(i, i + 7));
    await eventually(() => seen.resizes.length === 3, WAIT, 'the resizes');
    assert.deepEqual(seen.resizes, ['{"Width":80,"Height":24}', '{"Width":100,"Height":50}', '{"Width":120,"Height":40}']);
    seen.stream.send(Channel.Error, SUCCESS);
    seen.stream.end();
    await c.ended();
    c.destroy();
  });

  test('pings are answered; every client stream gets a reply (unused ones too); past 8 streams: REFUSED_STREAM', async () => {
    const c = await connect('hang-ping', 'output=1');
    c.socket.write(pingFrame(5));
    await c.until(() => c.pings.includes(5), 'the ping answer');
    const ids = await c.createAll(['error', 'stdout']);
    const seen = await edge.next('hang-ping');
    const extra: number[] = [];
    for (let i = 2; i < MAX_STREAMS; i++) extra.push(await c.create(`unused${i}`));
    assert.ok(extra.every((id) => c.streams.get(id)!.replied));
    const ninth = await c.create('stderr');
    assert.equal(c.streams.get(ninth)!.rst, RstStatus.RefusedStream);
    seen.stream.send(Channel.Stdout, bytes('still here\n'));
    await c.until(() => c.text(ids.stdout!) === 'still here\n', 'stdout after the refused stream');
    c.destroy();
    const err = await within(seen.closed, WAIT, 'the abort');
    assert.equal(err?.code, ErrorCode.Stopped);
  });

  test('the client going away aborts the stream (LEDGE_ERR_STOPPED); so does its GOAWAY', async () => {
    const c = await connect('hang-gone', 'input=1&output=1');
    await c.createAll(['error', 'stdin', 'stdout']);
    const seen = await edge.next('hang-gone');
    c.destroy();
    const err = await within(seen.closed, WAIT, 'the abort');
    assert.deepEqual(err, { code: ErrorCode.Stopped, message: 'the client went away' });

    const g = await connect('hang-goaway', 'output=1');
    await g.createAll(['error', 'stdout']);
    const seen2 = await edge.next('hang-goaway');
    g.socket.write(goAwayFrame(0, GoAwayStatus.Ok));
    assert.equal((await within(seen2.closed, WAIT, 'the abort'))?.code, ErrorCode.Stopped);
    await g.until(() => g.closed, 'the connection to end');
  });

  test('an edge error before any Status becomes a Failure Status with its message', async () => {
    edge.scripts.set('dies', (s) => {
      s.accept();
      s.on('message', () => s.abort({ code: ErrorCode.Runtime, message: 'the container runtime went away' }));
    });
    const c = await connect('dies', 'input=1&output=1');
    const ids = await c.createAll(['error', 'stdin', 'stdout']);
    c.send(ids.stdin!, 'x');
    await c.ended();
    assert.deepEqual(JSON.parse(c.text(ids.error!)), { metadata: {}, status: 'Failure', message: 'the container runtime went away' });
    c.destroy();
  });

  test('streams not created in time: a Failure Status, the edge stream aborted with LEDGE_ERR_TIMEOUT', async (t) => {
    kubelet.creationTimeoutMs = 300;
    t.after(() => (kubelet.creationTimeoutMs = undefined));
    const c = await connect('hang-timeout', 'input=1&output=1');
    const ids = await c.createAll(['error', 'stdout']);
    const seen = await edge.next('hang-timeout');
    const err = await within(seen.closed, WAIT, 'the timeout');
    assert.equal(err?.code, ErrorCode.Timeout);
    assert.match(err?.message ?? '', /stdin missing/);
    await c.ended();
    assert.match(JSON.parse(c.text(ids.error!)).message, /timed out waiting for the client to create its streams/);
    c.destroy();
  });

  test('a protocol violation (a control frame of version 2) ends the session: GOAWAY PROTOCOL_ERROR, the stream aborted with LEDGE_ERR_STREAM_PROTOCOL', async () => {
    const c = await connect('hang-proto', 'output=1');
    await c.createAll(['error', 'stdout']);
    const seen = await edge.next('hang-proto');
    const bad = pingFrame(9);
    bad.writeUInt16BE(0x8002, 0);
    c.socket.write(bad);
    await c.until(() => c.goAway, 'the GOAWAY');
    assert.equal(c.goAway?.status, GoAwayStatus.ProtocolError);
    assert.equal((await within(seen.closed, WAIT, 'the abort'))?.code, ErrorCode.StreamProtocol);
    await c.until(() => c.closed, 'the connection to end');
  });

  test('back-pressure to the edge: a client that does not read holds at most ~1 MiB in the socket; then all 24 MiB arrive in order', async () => {
    const total = 24 * 1024 * 1024;
    const chunk = randomBytes(16 * 1024 - 1);
    let sent = 0;
    let waiting = false;
    const hash = createHash('sha256');
    edge.scripts.set('big', (s) => {
      s.accept();
      const pump = () => {
        waiting = false;
        while (sent < total) {
          const n = Math.min(chunk.length, total - sent);
          const part = chunk.subarray(0, n);
          hash.update(part);
          sent += n;
          if (!s.send(Channel.Stdout, part)) {
            waiting = true;
            return;
          }
        }
        s.send(Channel.Error, SUCCESS);
        s.end();
      };
      s.on('drain', pump);
      pump();
    });
    const c = await connect('big', 'output=1');
    const r = await c.createAll(['error', 'stdout']);
    // From now on the client reads nothing.
    c.socket.pause();
    const served = kubelet.served.at(-1)!;
    // The edge is held back: it waits for a drain and nothing moves on the link.
    await eventually(() => waiting && edge.inFlight === 0, WAIT, 'the edge to be held back');
    assert.ok(sent < total, `the edge sent everything (${sent} bytes) to a client that reads nothing`);
    assert.ok(served.socket.writableLength <= SPDY_HIGH_WATER + 512 * 1024, `the socket holds ${served.socket.writableLength} bytes`);
    c.socket.resume();
    await c.ended();
    const got = Buffer.concat(c.streams.get(r.stdout!)!.data);
    assert.equal(got.length, total);
    assert.equal(createHash('sha256').update(got).digest('hex'), hash.digest('hex'));
    assert.equal(c.text(r.error!), '{"metadata":{},"status":"Success"}');
    c.destroy();
  });

  test('back-pressure from the edge: stdin stops being read while the stream queue is full (no abort), then all 8 MiB arrive in order', async () => {
    let edgeStream: Stream | undefined;
    edge.scripts.set('slowin', (s) => {
      s.accept();
      s.pause(); // takes nothing yet: no credit goes back to the cloud
      edgeStream = s;
    });
    const c = await connect('slowin', 'input=1&output=1');
    const ids = await c.createAll(['error', 'stdin', 'stdout']);
    const seen = await edge.next('slowin');
    const total = 8 * 1024 * 1024;
    const data = randomBytes(total);
    for (let off = 0; off < total; off += 32 * 1024) c.send(ids.stdin!, data.subarray(off, off + 32 * 1024), off + 32 * 1024 >= total);
    await eventually(() => edge.inFlight === 0 && kubelet.served.at(-1)!.socket.isPaused(), WAIT, 'the server to stop reading');
    assert.equal(seen.stream.closed, false, 'the stream was not aborted');
    edgeStream!.resume();
    await eventually(() => seen.stdinEof, WAIT, 'all of stdin');
    assert.ok(Buffer.concat(seen.stdin).equals(data));
    seen.stream.send(Channel.Error, SUCCESS);
    seen.stream.end();
    await c.ended();
    c.destroy();
  });
});

// ------------------------------------------------------------------ the real kubectl 1.20 (SPDY), through the local control plane's node proxy

const KUBECTL_120 = kubectlPath('1.20');
const KUBECTL_SKIP = KUBECTL_120 ? undefined : 'kubectl 1.20 not installed at .tools/bin/kubectl-1.20 (build/run-tests.mjs unpacks Debian kubernetes-client when apt is available)';

interface Run {
  child: ReturnType<typeof spawn>;
  result: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function kubectl(args: string[], opts: { input?: string; keepStdin?: boolean; env?: NodeJS.ProcessEnv; bin?: string } = {}): Run {
  const bin = opts.bin ?? KUBECTL_120!;
  const child = spawn(bin, ['--kubeconfig', cp.api.kubeconfigPath, '--cache-dir', home.path, ...args], {
    env: { ...process.env, HOME: home.path, KUBECONFIG: cp.api.kubeconfigPath, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  else if (!opts.keepStdin) child.stdin!.end();
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  const result = within(exited, 30_000, `kubectl ${args.join(' ')}`).catch((err) => {
    child.kill('SIGKILL');
    throw err;
  });
  return { child, result };
}

async function create(path: string, obj: unknown): Promise<void> {
  const r = await raw(cp.api, 'POST', path, JSON.stringify(obj));
  assert.equal(r.status, 201, r.text);
}

describe('kubectl 1.20 (SPDY) → local control plane → node proxy → this server', { skip: KUBECTL_SKIP }, () => {
  before(async () => {
    edge.scripts.set('kecho', echoScript);
    edge.scripts.set('kfast', fastScript);
    edge.scripts.set('khang', hangScript);
    await create('/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'spdy-node' },
      status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }], daemonEndpoints: { kubeletEndpoint: { Port: kubelet.port } } },
    });
    for (const name of ['kecho', 'kfast', 'khang', 'kgone']) {
      await create(`/api/v1/namespaces/${NS}/pods`, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name },
        spec: { nodeName: 'spdy-node', containers: [{ name: 'c', image: 'busybox:1.36' }] },
      });
    }
  });

  test('exec -i: stdin echoed on stdout, stderr, stdin EOF reaches the edge, exit code 3', async () => {
    const before = kubelet.served.length;
    const r = await kubectl(['exec', '-i', 'kecho', '--', 'cat'], { input: 'hello\nworld\n' }).result;
    assert.equal(r.stdout, 'hello\nworld\n', r.stderr);
    assert.match(r.stderr, /warning: from the edge\n/);
    assert.match(r.stderr, /command terminated with exit code 3/);
    assert.equal(r.code, 3, r.stderr);
    const served = kubelet.served.at(-1)!;
    assert.equal(kubelet.served.length, before + 1);
    assert.equal(served.req.headers.upgrade, 'SPDY/3.1');
    assert.match(served.answer, /X-Stream-Protocol-Version: v4\.channel\.k8s\.io\r\n/);
    assert.equal(served.req.url, `/exec/${NS}/kecho/c?command=cat&error=1&input=1&output=1`);
    const seen = edge.seen.filter((s) => s.request.pod === 'kecho').at(-1)!;
    assert.ok(seen.stdinEof, 'stdin EOF reached the edge');
    assert.deepEqual(seen.request.command, ['cat']);
  });

  test('exec without stdin of a command that ends at once: its output, exit code 0', async () => {
    const r = await kubectl(['exec', 'kfast', '--', 'echo', 'hi']).result;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hi\n');
  });

  test("the edge's refusal: kubectl prints its message and fails", async () => {
    const r = await kubectl(['exec', 'kgone', '--', 'true']).result;
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /pod default\/kgone is not on this node/);
  });

  test('kubectl 1.35 forced to SPDY (KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false): v5 offered, v4 served, same results', {
    skip: kubectlPath('1.35') ? undefined : 'no kubectl 1.35',
  }, async () => {
    const r = await kubectl(['exec', '-i', 'kecho', '--', 'cat'], { input: 'new\n', bin: kubectlPath('1.35')!, env: { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' } }).result;
    const served = kubelet.served.at(-1)!;
    assert.equal(served.req.headers.upgrade, 'SPDY/3.1');
    assert.match(served.answer, /^HTTP\/1.1 101 Switching Protocols\r\n.*X-Stream-Protocol-Version: v4\.channel\.k8s\.io\r\n/s);
    assert.match(String(served.req.headers['x-stream-protocol-version']), /^v5\.channel\.k8s\.io, v4\.channel\.k8s\.io/);
    assert.equal(r.stdout, 'new\n', r.stderr);
    assert.match(r.stderr, /command terminated with exit code 3/);
    assert.equal(r.code, 3, r.stderr);
  });

  test('kubectl killed mid-exec: the edge stream is aborted (LEDGE_ERR_STOPPED)', async () => {
    const run = kubectl(['exec', '-i', 'khang', '--', 'sh'], { keepStdin: true });
    const seen = await edge.next('khang');
    // Once the streams exist (the exchange started), the client goes away.
    await eventually(() => kubelet.served.at(-1)?.req.url?.includes('/khang/'), WAIT, 'the upgrade');
    run.child.stdin!.write('ls\n');
    await eventually(() => seen.stdin.length > 0, WAIT, 'stdin at the edge');
    run.child.kill('SIGKILL');
    const err = await within(seen.closed, WAIT, 'the abort');
    assert.equal(err?.code, ErrorCode.Stopped);
    await run.result;
  });
});
