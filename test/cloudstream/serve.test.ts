/**
 * CloudStream serving the kubelet API from one replica, with fake deps: each connected node is
 * an in-memory link (cloud Mux ↔ edge Mux) whose edge side the test scripts. The client is
 * node's https with a client certificate of a test CA (as kube-apiserver's kubelet client) and
 * the ws client for exec/attach.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Channel, type Stream } from '../../shared/stream/index.js';
import { ErrorCode } from '../../shared/errors/index.js';
import { tempDir } from '../helpers/files.js';
import { eventually, within } from '../helpers/process.js';
import { FakeCluster, FakePeers, Link, fetchAll, frame, makeCa, refusedUpgrade, request, startCloudStream, wsClient, type Pem, type Running } from './helpers.js';
import type { WebSocket } from 'ws';

const dir = tempDir('ledge-cloudstream-');
let ca: { ca: Pem; client: Pem };
let otherCa: { ca: Pem; client: Pem };
const cluster = new FakeCluster().bind('default', 'web', 'edge-1').bind('default', 'idle', 'edge-2').bind('default', 'big', 'edge-3');
const peers = new FakePeers();
let cs: Running;

before(async () => {
  [ca, otherCa] = await Promise.all([makeCa('test-apiserver-ca'), makeCa('another-ca')]);
  cluster.connect('edge-1');
  cs = await startCloudStream(dir.path, cluster.deps('replica-a', peers), { openTimeoutMs: 2_000 }, ca.ca.cert);
});
after(async () => {
  await cs?.stop();
  dir.cleanup();
});

const link = () => cluster.links.get('edge-1')!;
const logsUrl = (pod = 'web', query = '') => `${cs.url}/containerLogs/default/${pod}/app${query}`;
const execUrl = (query = '?command=sh&command=-c&command=echo%20hi&input=1&output=1&error=1') => `${cs.url}/exec/default/web/app${query}`;

/** Resolves with the close error of `s` (undefined: a clean end). */
const closedWith = (s: Stream) => within(new Promise<unknown>((resolve) => s.on('close', (e) => resolve(e))), 10_000, 'the stream to close');

describe('authentication', () => {
  test('/healthz answers without a certificate', async () => {
    const r = await fetchAll(`${cs.url}/healthz`);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok');
  });

  test('no client certificate: 401 with a Status', async () => {
    const r = await fetchAll(logsUrl());
    assert.equal(r.status, 401);
    const s = r.json();
    assert.equal(s.kind, 'Status');
    assert.equal(s.reason, 'Unauthorized');
    assert.equal(s.code, 401);
    assert.match(String(s.message), /no client certificate/);
  });

  test('a certificate of another CA: 401', async () => {
    const r = await fetchAll(logsUrl(), otherCa.client);
    assert.equal(r.status, 401);
    assert.match(String(r.json().message), /does not verify/);
  });

  test('a bearer token that is not the peer token: 401, also for an upgrade', async () => {
    const r = await fetchAll(logsUrl(), undefined, { authorization: 'Bearer not-the-token', 'x-ledge-forwarded': 'replica-b' });
    assert.equal(r.status, 401);
    assert.match(String(r.json().message), /not the peer token/);
    const refused = await refusedUpgrade(wsClient(execUrl(), ['v5.channel.k8s.io'], undefined, { authorization: 'Bearer nope' }));
    assert.equal(refused.status, 401);
    assert.equal(refused.json().reason, 'Unauthorized');
  });

  test('the peer token authenticates without a certificate', async () => {
    const r = await fetchAll(`${cs.url}/containerLogs/default/nosuchpod/app`, undefined, { authorization: `Bearer ${peers.tokenValue}` });
    assert.equal(r.status, 404, 'past authentication');
  });
});

describe('logs', () => {
  test('200 chunked text/plain, streamed as the edge sends it; the query becomes the request', async () => {
    const pending = fetchAll(logsUrl('web', '?follow=true&tailLines=10&timestamps=1&sinceSeconds=5&limitBytes=100'), ca.client);
    const edge = await link().nextOpen();
    assert.deepEqual(edge.request, {
      kind: 'logs',
      namespace: 'default',
      pod: 'web',
      container: 'app',
      follow: true,
      timestamps: true,
      tailLines: 10,
      sinceSeconds: 5,
      limitBytes: 100,
    });
    edge.accept();
    edge.send(Channel.Stdout, Buffer.from('hello\n'));
    edge.end();
    const r = await pending;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'hello\n');
  });

  test('the first chunk arrives before the edge sends the second', async () => {
    const pending = request(logsUrl('web', '?follow=true'), ca.client);
    const edge = await link().nextOpen();
    edge.accept();
    const { res } = await pending;
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'text/plain');
    assert.equal(res.headers['transfer-encoding'], 'chunked');
    edge.send(Channel.Stdout, Buffer.from('line 1\n'));
    const [first] = (await within(once(res, 'data'), 10_000, 'the first chunk')) as [Buffer];
    assert.equal(first.toString(), 'line 1\n');
    edge.send(Channel.Stderr, Buffer.from('not log output\n'));
    edge.send(Channel.Stdout, Buffer.from('line 2\n'));
    edge.end();
    const rest: Buffer[] = [];
    res.on('data', (c: Buffer) => rest.push(c));
    await within(once(res, 'end'), 10_000, 'the end of the log');
    assert.equal(Buffer.concat(rest).toString(), 'line 2\n', 'only channel 1, in order');
  });

  for (const [code, status, reason] of [
    [ErrorCode.NotFound, 404, 'NotFound'],
    [ErrorCode.StreamRequest, 400, 'BadRequest'],
    [ErrorCode.Forbidden, 403, 'Forbidden'],
    [ErrorCode.Unsupported, 501, 'NotImplemented'],
    [ErrorCode.Disconnected, 503, 'ServiceUnavailable'],
    [ErrorCode.Runtime, 500, 'InternalError'],
  ] as const) {
    test(`the edge refuses with ${code}: ${status} ${reason}, with its message`, async () => {
      const pending = fetchAll(logsUrl('web', '?previous=true'), ca.client);
      const edge = await link().nextOpen();
      edge.abort({ code, message: 'container "app" of pod default/web: no previous run' });
      const r = await pending;
      assert.equal(r.status, status);
      assert.deepEqual(r.json(), {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: 'container "app" of pod default/web: no previous run',
        reason,
        code: status,
      });
    });
  }

  test('an unknown pod: 404 pods "x" not found; a pod on a node connected nowhere: 503', async () => {
    const r = await fetchAll(logsUrl('ghost'), ca.client);
    assert.equal(r.status, 404);
    assert.equal(r.json().message, 'pods "ghost" not found');
    const idle = await fetchAll(logsUrl('idle'), ca.client);
    assert.equal(idle.status, 503);
    assert.equal(idle.json().message, 'node edge-2 is not connected to any CloudCore replica');
  });

  test('bad numbers and options: 400 before the edge is asked', async () => {
    const asked = cluster.requests.length;
    for (const q of [
      '?tailLines=abc',
      '?tailLines=-1',
      '?limitBytes=0',
      '?sinceSeconds=1.5',
      '?follow=maybe',
      '?sinceTime=yesterday',
      '?sinceTime=2024-01-01T00:00:00Z&sinceSeconds=3',
    ]) {
      const r = await fetchAll(logsUrl('web', q), ca.client);
      assert.equal(r.status, 400, q);
      assert.equal(r.json().reason, 'BadRequest', q);
    }
    assert.equal(cluster.requests.length, asked, 'no stream was opened');
  });

  test('other paths: 404 Status; exec without an upgrade: 400', async () => {
    const r = await fetchAll(`${cs.url}/pods`, ca.client);
    assert.equal(r.status, 404);
    assert.equal(r.json().kind, 'Status');
    const e = await fetchAll(execUrl(), ca.client);
    assert.equal(e.status, 400);
    assert.match(String(e.json().message), /WebSocket upgrade/);
  });

  test('the client going away aborts the stream (the edge sees LEDGE_ERR_STOPPED)', async () => {
    const pending = request(logsUrl('web', '?follow=true'), ca.client);
    const edge = await link().nextOpen();
    edge.accept();
    const { res, req } = await pending;
    edge.send(Channel.Stdout, Buffer.from('x\n'));
    await within(once(res, 'data'), 10_000, 'a chunk');
    const closed = closedWith(edge);
    req.destroy();
    const err = (await closed) as { code: string; message: string };
    assert.equal(err?.code, ErrorCode.Stopped);
    assert.equal(err.message, 'the client went away');
    await eventually(() => cs.stream.activeStreams === 0, 10_000, 'the stream to be released');
  });

  test('an edge that neither accepts nor refuses: 504 after openTimeoutMs, and the stream is aborted', async () => {
    const pending = fetchAll(logsUrl(), ca.client);
    const edge = await link().nextOpen();
    const closed = closedWith(edge);
    const r = await pending;
    assert.equal(r.status, 504);
    assert.equal(r.json().reason, 'Timeout');
    assert.equal(((await closed) as { code: string }).code, ErrorCode.Timeout);
  });

  test('openStream throwing (QueueFull on the link): 503', async () => {
    cluster.openError = Object.assign(new Error('32 streams are open on this link already'), { code: ErrorCode.QueueFull });
    try {
      const r = await fetchAll(logsUrl(), ca.client);
      assert.equal(r.status, 503);
      assert.match(String(r.json().message), /32 streams/);
    } finally {
      cluster.openError = undefined;
    }
  });

  test('a slow reader pauses the edge (back-pressure), and gets every byte in order', async () => {
    const l = cluster.connect('edge-3', 64 * 1024);
    const pending = request(logsUrl('big', '?follow=true'), ca.client);
    const edge = await l.nextOpen();
    edge.accept();
    const { res } = await pending;
    res.pause();
    // The edge sends as fast as its credit allows, up to CAP.
    const CAP = 64 * 1024 * 1024;
    const CHUNK = 16 * 1024;
    let produced = 0;
    let waiting = false;
    let stop = false;
    const pump = () => {
      waiting = false;
      while (!stop && produced < CAP) {
        const chunk = Buffer.alloc(CHUNK, (produced / CHUNK) % 251);
        produced += CHUNK;
        if (!edge.send(Channel.Stdout, chunk)) {
          waiting = true;
          return;
        }
      }
    };
    edge.on('drain', pump);
    pump();
    // Stuck: the edge waits for credit, nothing is in flight on the link, three polls in a row.
    let stable = 0;
    let last = -1;
    await eventually(
      () => {
        const quiet = waiting && l.inFlight === 0 && produced === last;
        last = produced;
        stable = quiet ? stable + 1 : 0;
        return stable >= 3;
      },
      30_000,
      'the edge to be held back',
    );
    assert.ok(produced < CAP, `the edge was held back (${produced} bytes produced while the client did not read)`);
    stop = true;
    const total = produced;
    let got = 0;
    let inOrder = true;
    res.on('data', (c: Buffer) => {
      for (let i = 0; i < c.length; i++) if (c[i] !== Math.floor((got + i) / CHUNK) % 251) inOrder = false;
      got += c.length;
      if (got === total) edge.end();
    });
    res.resume();
    await within(once(res, 'end'), 30_000, 'the whole log');
    assert.equal(got, total);
    assert.ok(inOrder, 'bytes in order');
  });

  test('data the cloud holds for a paused reader is still delivered when the edge ends the stream (what logs back-pressure relies on)', async () => {
    const l = new Link();
    const cloudSide = l.cloud.open({ kind: 'logs', namespace: 'default', pod: 'p' });
    const got: string[] = [];
    cloudSide.on('open', () => cloudSide.pause());
    cloudSide.on('message', (_ch, p) => got.push(Buffer.from(p).toString()));
    const edge = await l.nextOpen();
    edge.accept();
    edge.send(Channel.Stdout, Buffer.from('last lines'));
    edge.end();
    const closed = closedWith(cloudSide);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(got, [], 'held while paused');
    // The close comes after the held data: the consumer writes it before it ends its response.
    cloudSide.resume();
    await closed;
    assert.deepEqual(got, ['last lines']);
  });
});

describe('exec and attach', () => {
  /** Opens an exec WebSocket and lets the edge accept; resolves with both ends. */
  async function openExec(protocols: string[], url = execUrl()): Promise<{ ws: WebSocket; edge: Stream; received: Buffer[] }> {
    const ws = wsClient(url, protocols, ca.client);
    const received: Buffer[] = [];
    ws.on('message', (d: Buffer) => received.push(d));
    const edge = await link().nextOpen();
    edge.accept();
    await within(once(ws, 'open'), 10_000, 'the WebSocket to open');
    return { ws, edge, received };
  }

  test('v5: stdin, resize and close reach the edge; stdout, stderr and the Status reach the client; then the WebSocket closes 1000', async () => {
    const { ws, edge, received } = await openExec(['v4.channel.k8s.io', 'v5.channel.k8s.io']);
    assert.equal(ws.protocol, 'v5.channel.k8s.io', 'v5 preferred');
    assert.deepEqual(edge.request, {
      kind: 'exec',
      namespace: 'default',
      pod: 'web',
      container: 'app',
      command: ['sh', '-c', 'echo hi'],
      stdin: true,
      stdout: true,
      stderr: true,
      tty: false,
    });
    const atEdge: string[] = [];
    edge.on('message', (ch, p) => atEdge.push(`${ch}:${Buffer.from(p).toString()}`));
    ws.send(frame(Channel.Stdin, 'hello\n'));
    ws.send(frame(Channel.Resize, '{"Width":80,"Height":24}'));
    ws.send(frame(Channel.Close, Buffer.from([0])));
    await eventually(() => atEdge.length === 3, 10_000, 'the client messages at the edge');
    assert.deepEqual(atEdge, ['0:hello\n', '4:{"Width":80,"Height":24}', `255:${Buffer.from([0]).toString()}`]);
    const status = '{"metadata":{},"status":"Success"}';
    edge.send(Channel.Stdout, Buffer.from('out'));
    edge.send(Channel.Stderr, Buffer.from('err'));
    edge.send(Channel.Error, Buffer.from(status));
    edge.end();
    const [code] = (await within(once(ws, 'close'), 10_000, 'the WebSocket to close')) as [number];
    assert.equal(code, 1000);
    assert.deepEqual(
      received.map((b) => [b[0], b.subarray(1).toString()]),
      [
        [1, 'out'],
        [2, 'err'],
        [3, status],
      ],
    );
  });

  test('v4 when only v4 is offered: close messages are dropped both ways', async () => {
    const { ws, edge, received } = await openExec(['v4.channel.k8s.io']);
    assert.equal(ws.protocol, 'v4.channel.k8s.io');
    const atEdge: number[] = [];
    edge.on('message', (ch) => atEdge.push(ch));
    ws.send(frame(Channel.Close, Buffer.from([0])));
    ws.send(frame(Channel.Stdin, 'x'));
    await eventually(() => atEdge.length > 0, 10_000, 'stdin at the edge');
    assert.deepEqual(atEdge, [Channel.Stdin], 'no close channel in v4');
    edge.send(Channel.Close, Buffer.from([1]));
    edge.send(Channel.Stdout, Buffer.from('y'));
    edge.end();
    await within(once(ws, 'close'), 10_000, 'the WebSocket to close');
    assert.deepEqual(
      received.map((b) => b[0]),
      [Channel.Stdout],
    );
  });

  test('attach: the flags, tty folds stderr into stdout; no command needed', async () => {
    const ws = wsClient(`${cs.url}/attach/default/web/app?stdin=true&stdout=true&stderr=true&tty=true`, ['v5.channel.k8s.io'], ca.client);
    const edge = await link().nextOpen();
    assert.deepEqual(edge.request, { kind: 'attach', namespace: 'default', pod: 'web', container: 'app', stdin: true, stdout: true, stderr: false, tty: true });
    edge.accept();
    await within(once(ws, 'open'), 10_000, 'the WebSocket to open');
    ws.close();
    const err = (await closedWith(edge)) as { code: string };
    assert.equal(err?.code, ErrorCode.Stopped, 'the client closing aborts the stream');
  });

  test('SPDY/3.1 (older kubectl; kube-apiserver toward kubelets) is served: the edge is asked, and its refusal is the HTTP error', async () => {
    const asked = cluster.requests.length;
    const pending = request(execUrl(), ca.client, { connection: 'Upgrade', upgrade: 'SPDY/3.1', 'x-stream-protocol-version': 'v4.channel.k8s.io' }, 'POST');
    const edge = await link().nextOpen();
    assert.equal(cluster.requests.length, asked + 1, 'the stream was opened with the edge');
    edge.abort({ code: ErrorCode.NotFound, message: 'pod default/web is not on this node' });
    const { res } = await pending;
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    await within(once(res, 'end'), 10_000, 'the body');
    assert.equal(res.statusCode, 404);
    const st = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
    assert.equal(st.message, 'pod default/web is not on this node');
  });

  test('neither v5 nor v4 offered: 400', async () => {
    const r = await refusedUpgrade(wsClient(execUrl(), ['channel.k8s.io'], ca.client));
    assert.equal(r.status, 400);
    assert.match(String(r.json().message), /offer v5\.channel\.k8s\.io or v4\.channel\.k8s\.io/);
  });

  test('exec without a command or without any stream: 400', async () => {
    for (const q of ['?input=1&output=1', '?command=ls']) {
      const r = await refusedUpgrade(wsClient(execUrl(q), ['v5.channel.k8s.io'], ca.client));
      assert.equal(r.status, 400, q);
    }
  });

  test('the edge refuses: the HTTP error Status, no upgrade', async () => {
    const ws = wsClient(execUrl(), ['v5.channel.k8s.io'], ca.client);
    const refused = refusedUpgrade(ws);
    const edge = await link().nextOpen();
    edge.abort({ code: ErrorCode.StreamRequest, message: 'container app is not running' });
    const r = await refused;
    assert.equal(r.status, 400);
    assert.equal(r.json().message, 'container app is not running');
  });

  test('a stream that fails after the upgrade: a Failure Status on channel 3, then close 1000', async () => {
    const { ws, edge, received } = await openExec(['v5.channel.k8s.io']);
    edge.abort({ code: ErrorCode.Runtime, message: 'the runtime went away' });
    const [code] = (await within(once(ws, 'close'), 10_000, 'the WebSocket to close')) as [number];
    assert.equal(code, 1000);
    assert.equal(received.length, 1);
    assert.equal(received[0]![0], Channel.Error);
    assert.deepEqual(JSON.parse(received[0]!.subarray(1).toString()), { metadata: {}, status: 'Failure', message: 'the runtime went away' });
  });

  test('a text message closes the WebSocket with 1003 and aborts the stream', async () => {
    const { ws, edge } = await openExec(['v5.channel.k8s.io']);
    const closed = closedWith(edge);
    ws.send('text');
    const [code] = (await within(once(ws, 'close'), 10_000, 'the WebSocket to close')) as [number];
    assert.equal(code, 1003);
    assert.equal(((await closed) as { code: string }).code, ErrorCode.Stopped);
  });
});

describe('limits', () => {
  test('over maxConcurrent streams: 503', async () => {
    const d = tempDir('ledge-cloudstream-limit-');
    const c = new FakeCluster().bind('default', 'web', 'n');
    const l = c.connect('n');
    const one = await startCloudStream(d.path, c.deps('replica-x'), { maxConcurrent: 1 }, ca.ca.cert);
    try {
      const first = request(`${one.url}/containerLogs/default/web/app?follow=true`, ca.client);
      const edge = await l.nextOpen();
      edge.accept();
      const { res } = await first;
      assert.equal(res.statusCode, 200);
      const r = await fetchAll(`${one.url}/containerLogs/default/web/app`, ca.client);
      assert.equal(r.status, 503);
      assert.match(String(r.json().message), /at most 1 streams/);
      const ws = refusedUpgrade(wsClient(`${one.url}/exec/default/web/app?command=ls&output=1`, ['v5.channel.k8s.io'], ca.client));
      assert.equal((await ws).status, 503);
      edge.end();
      await within(once(res.resume(), 'end'), 10_000, 'the first log to end');
      await eventually(() => one.stream.activeStreams === 0, 10_000, 'the slot to be free');
      const again = fetchAll(`${one.url}/containerLogs/default/web/app`, ca.client);
      const e2 = await l.nextOpen();
      e2.accept();
      e2.end();
      assert.equal((await again).status, 200, 'a slot again once the first ended');
    } finally {
      await one.stop();
      d.cleanup();
    }
  });

  test('without clientCaFile a certificate never authenticates; insecureNoClientAuth serves anyone', async () => {
    const d = tempDir('ledge-cloudstream-noca-');
    const c = new FakeCluster().bind('default', 'web', 'n');
    const noCa = await startCloudStream(d.path, c.deps('replica-y'), {});
    const open = await startCloudStream(d.path, c.deps('replica-z'), { insecureNoClientAuth: true });
    try {
      const r = await fetchAll(`${noCa.url}/containerLogs/default/web/app`, ca.client);
      assert.equal(r.status, 401);
      assert.match(String(r.json().message), /no client CA/);
      const ok = await fetchAll(`${open.url}/containerLogs/default/ghost/app`);
      assert.equal(ok.status, 404, 'past authentication');
    } finally {
      await noCa.stop();
      await open.stop();
      d.cleanup();
    }
  });
});
