/**
 * Two CloudStream replicas sharing an in-memory Lease/Secret store (FakePeers): A holds the
 * node's session, B does not. B forwards logs (streamed) and exec (a raw tunnel) to A, pinned
 * to A's certificate; A refuses a forwarded request with a wrong token; a forwarded request is
 * never forwarded again; an unreachable holder or a wrong pin is a 503 with the reason.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Channel, type Stream } from '../../shared/stream/index.js';
import { ErrorCode } from '../../shared/errors/index.js';
import { sessionReport, SessionOperation } from '../../cloud/cloudhub/reports.js';
import { tempDir } from '../helpers/files.js';
import { eventually, within } from '../helpers/process.js';
import { FakeCluster, FakePeers, fetchAll, frame, makeCa, refusedUpgrade, request, startCloudStream, wsClient, type Pem, type Running } from './helpers.js';

const dirA = tempDir('ledge-cloudstream-a-');
const dirB = tempDir('ledge-cloudstream-b-');
const peers = new FakePeers();
const onA = new FakeCluster().bind('default', 'web', 'edge-1').bind('default', 'far', 'edge-2');
const onB = new FakeCluster().bind('default', 'web', 'edge-1').bind('default', 'far', 'edge-2');
let ca: { ca: Pem; client: Pem };
let a: Running;
let b: Running;

const report = (r: Running, operation: SessionOperation, node: string) => r.bee.context('cloudhub').send('cloudstream', sessionReport(operation, { node }));
const closedWith = (s: Stream) => within(new Promise<unknown>((resolve) => s.on('close', (e) => resolve(e))), 10_000, 'the stream to close');
const link = () => onA.links.get('edge-1')!;

before(async () => {
  ca = await makeCa('test-apiserver-ca');
  onA.connect('edge-1');
  a = await startCloudStream(dirA.path, onA.deps('replica-a', peers), {}, ca.ca.cert);
  b = await startCloudStream(dirB.path, onB.deps('replica-b', peers), {}, ca.ca.cert);
  await report(a, SessionOperation.Connected, 'edge-1');
  await eventually(() => peers.holders.get('edge-1'), 10_000, 'A to claim the Lease of edge-1');
});
after(async () => {
  await b?.stop();
  await a?.stop();
  dirA.cleanup();
  dirB.cleanup();
});

describe('forwarding to the replica holding the session', () => {
  test("A's connect report names A in the node's Lease: its identity, peer address and certificate", () => {
    const h = peers.holders.get('edge-1')!;
    assert.equal(h.identity, 'replica-a');
    assert.equal(h.address, `https://127.0.0.1:${a.stream.address().port}`);
    assert.match(h.certSha256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  test('logs through B are streamed from A', async () => {
    const before = b.stream.stats.forwarded;
    const pending = request(`${b.url}/containerLogs/default/web/app?follow=true&tailLines=3`, ca.client);
    const edge = await link().nextOpen();
    assert.equal(edge.request.tailLines, 3, 'the query came through');
    edge.accept();
    const { res } = await pending;
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'text/plain');
    edge.send(Channel.Stdout, Buffer.from('one\n'));
    const [first] = (await within(once(res, 'data'), 10_000, 'the first chunk')) as [Buffer];
    assert.equal(first.toString(), 'one\n');
    edge.send(Channel.Stdout, Buffer.from('two\n'));
    edge.end();
    const rest: Buffer[] = [];
    res.on('data', (c: Buffer) => rest.push(c));
    await within(once(res, 'end'), 10_000, 'the end');
    assert.equal(Buffer.concat(rest).toString(), 'two\n');
    assert.equal(b.stream.stats.forwarded, before + 1);
  });

  test("the edge's refusal comes back through B as it was answered", async () => {
    const pending = fetchAll(`${b.url}/containerLogs/default/web/app`, ca.client);
    const edge = await link().nextOpen();
    edge.abort({ code: ErrorCode.NotFound, message: 'container "app" not found in pod default/web' });
    const r = await pending;
    assert.equal(r.status, 404);
    assert.equal(r.json().message, 'container "app" not found in pod default/web');
    const ws = wsClient(`${b.url}/exec/default/web/app?command=ls&output=1`, ['v5.channel.k8s.io'], ca.client);
    const refused = refusedUpgrade(ws);
    const e2 = await link().nextOpen();
    e2.abort({ code: ErrorCode.StreamRequest, message: 'container app is not running' });
    const u = await refused;
    assert.equal(u.status, 400);
    assert.equal(u.json().message, 'container app is not running');
  });

  test('exec through B: a tunnel to A, both ways, closing 1000 after the Status', async () => {
    const ws = wsClient(`${b.url}/exec/default/web/app?command=cat&input=1&output=1`, ['v5.channel.k8s.io', 'v4.channel.k8s.io'], ca.client);
    const received: Buffer[] = [];
    ws.on('message', (d: Buffer) => received.push(d));
    const edge = await link().nextOpen();
    edge.accept();
    await within(once(ws, 'open'), 10_000, 'the WebSocket through B');
    assert.equal(ws.protocol, 'v5.channel.k8s.io');
    const atEdge: string[] = [];
    edge.on('message', (ch, p) => atEdge.push(`${ch}:${Buffer.from(p).toString()}`));
    ws.send(frame(Channel.Stdin, 'ping'));
    await eventually(() => atEdge.length === 1, 10_000, 'stdin at the edge');
    assert.deepEqual(atEdge, ['0:ping']);
    edge.send(Channel.Stdout, Buffer.from('pong'));
    edge.send(Channel.Error, Buffer.from('{"metadata":{},"status":"Success"}'));
    edge.end();
    const [code] = (await within(once(ws, 'close'), 10_000, 'the close')) as [number];
    assert.equal(code, 1000);
    assert.deepEqual(
      received.map((m) => `${m[0]}:${m.subarray(1).toString()}`),
      ['1:pong', '3:{"metadata":{},"status":"Success"}'],
    );
  });

  test('the client leaving B aborts the stream at A', async () => {
    const pending = request(`${b.url}/containerLogs/default/web/app?follow=true`, ca.client);
    const edge = await link().nextOpen();
    edge.accept();
    const { res, req } = await pending;
    edge.send(Channel.Stdout, Buffer.from('x'));
    await within(once(res, 'data'), 10_000, 'a chunk');
    const closed = closedWith(edge);
    req.destroy();
    assert.equal(((await closed) as { code: string })?.code, ErrorCode.Stopped);
    await eventually(() => a.stream.activeStreams === 0 && b.stream.activeStreams === 0, 10_000, 'both replicas to release the stream');
  });
});

describe('what a replica refuses', () => {
  test('A refuses a forwarded request with a wrong token: 401', async () => {
    const r = await fetchAll(`${a.url}/containerLogs/default/web/app`, undefined, { authorization: 'Bearer wrong', 'x-ledge-forwarded': 'replica-b' });
    assert.equal(r.status, 401);
  });

  test('a forwarded request is not forwarded again (loop guard): 503', async () => {
    const asked = onA.requests.length;
    const byToken = await fetchAll(`${b.url}/containerLogs/default/web/app`, undefined, { authorization: `Bearer ${peers.tokenValue}`, 'x-ledge-forwarded': 'replica-c' });
    assert.equal(byToken.status, 503);
    assert.equal(byToken.json().message, 'node edge-1 is not connected to any CloudCore replica');
    const byHeader = await fetchAll(`${b.url}/containerLogs/default/web/app`, ca.client, { 'x-ledge-forwarded': 'replica-c' });
    assert.equal(byHeader.status, 503);
    assert.equal(onA.requests.length, asked, 'A was not asked');
  });

  test('a holder that cannot be reached: 503 with the reason', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    peers.holders.set('edge-2', { identity: 'replica-gone', address: `https://127.0.0.1:${port}`, certSha256: peers.holders.get('edge-1')!.certSha256 });
    const r = await fetchAll(`${b.url}/containerLogs/default/far/app`, ca.client);
    assert.equal(r.status, 503);
    assert.match(
      String(r.json().message),
      /node edge-2 is held by another CloudCore replica, which cannot be reached: cannot reach the peer at https:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/,
    );
    const u = await refusedUpgrade(wsClient(`${b.url}/exec/default/far/app?command=ls&output=1`, ['v5.channel.k8s.io'], ca.client));
    assert.equal(u.status, 503);
  });

  test('a holder whose certificate is not the pinned one: 503, and the token is not sent', async () => {
    const real = peers.holders.get('edge-1')!;
    const unauthorized = a.stream.stats.unauthorized;
    const requests = a.stream.stats.requests;
    peers.holders.set('edge-1', { ...real, certSha256: real.certSha256.replace(/^../, real.certSha256.startsWith('00') ? '11' : '00') });
    try {
      const r = await fetchAll(`${b.url}/containerLogs/default/web/app`, ca.client);
      assert.equal(r.status, 503);
      assert.match(String(r.json().message), /presented a certificate .* other than the one its Lease names/);
      assert.equal(a.stream.stats.requests, requests, 'no request reached A');
      assert.equal(a.stream.stats.unauthorized, unauthorized);
    } finally {
      peers.holders.set('edge-1', real);
    }
  });

  test("A's disconnect report releases the Lease; B then answers 503", async () => {
    onA.links.delete('edge-1');
    await report(a, SessionOperation.Disconnected, 'edge-1');
    await eventually(() => !peers.holders.has('edge-1'), 10_000, 'A to release the Lease');
    const r = await fetchAll(`${b.url}/containerLogs/default/web/app`, ca.client);
    assert.equal(r.status, 503);
    assert.equal(r.json().message, 'node edge-1 is not connected to any CloudCore replica');
  });
});
