/**
 * CloudHub's side of streams (kubectl logs/exec/attach over the link), with fake sockets: a stream
 * opens only on a link whose edge serves streams; DATA of an open stream costs no rate tokens while
 * DATA for no open stream does; stream DATA waits while the socket holds 64 KiB, messages do not;
 * the link's end ends the streams.
 */
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import type { WebSocket } from 'ws';
import { createCloudHub, type CloudHub, type CloudHubOptions } from '../../cloud/cloudhub/index.js';
import { captureLog } from '../helpers/cloud.js';
import { FakeHubSocket } from '../helpers/fake-hub-socket.js';
import { Channel, StreamFrameType, newMessage, type StreamRequest } from '../../shared/protocol/index.js';
import { ErrorCode } from '../../shared/errors/index.js';

const hubs: CloudHub[] = [];
function hub(options: Partial<CloudHubOptions> = {}): CloudHub {
  const h = createCloudHub({ host: '127.0.0.1', port: 0, insecurePlainWebSocket: true, ...options }, { log: captureLog().logger });
  hubs.push(h);
  return h;
}
function connect(h: CloudHub, node: string, streams = true): FakeHubSocket {
  const ws = new FakeHubSocket();
  h.acceptSession(ws as unknown as WebSocket, node, 'fake:1', '', { streams });
  return ws;
}
const req: StreamRequest = { kind: 'exec', namespace: 'default', pod: 'p', container: 'c', command: ['sh'], stdin: true, stdout: true };
const tick = () => new Promise<void>((r) => setImmediate(r));

beforeEach(() => {
  hubs.length = 0;
});
afterEach(() => {
  hubs.length = 0;
});

test('a stream opens only to a connected node whose EdgeCore serves streams', () => {
  const h = hub();
  assert.throws(() => h.openStream('nowhere', req), { code: ErrorCode.Disconnected });
  connect(h, 'old-edge', false);
  assert.throws(() => h.openStream('old-edge', req), { code: ErrorCode.Unsupported });
  const ws = connect(h, 'new-edge');
  const s = h.openStream('new-edge', req);
  const open = ws.streamFrames();
  assert.equal(open.length, 1);
  assert.equal(open[0]!.type, StreamFrameType.Open);
  assert.deepEqual({ ...(open[0]!.data as object), window: undefined }, { ...req, window: undefined });
  assert.equal(s.id, open[0]!.id);
});

test('DATA of an open stream is free of the rate budget; DATA of no open stream costs a token like any frame', async () => {
  const h = hub({ upstreamQps: 1, upstreamBurst: 5 });
  const ws = connect(h, 'chatty');
  const s = h.openStream('chatty', req);
  ws.receiveStream({ id: s.id, type: StreamFrameType.Credit, data: 256 * 1024 });
  let got = 0;
  s.on('message', (_c, p) => (got += p.length));
  for (let i = 0; i < 100; i++) ws.receiveStream({ id: s.id, type: StreamFrameType.Data, data: new Uint8Array([Channel.Stdout, 1, 2, 3]) });
  assert.equal(got, 300, 'all delivered');
  assert.equal(ws.paused, false, 'not throttled: its credit bounds it');
  // A hostile edge: DATA for a stream that is not open.
  for (let i = 0; i < 20; i++) ws.receiveStream({ id: 999, type: StreamFrameType.Data, data: new Uint8Array([1, 1]) });
  assert.equal(ws.paused, true, 'throttled after the burst');
});

test('stream DATA waits while 64 KiB wait in the socket; a message does not', async () => {
  const h = hub();
  const ws = connect(h, 'slow-link');
  const s = h.openStream('slow-link', req);
  ws.receiveStream({ id: s.id, type: StreamFrameType.Credit, data: 1024 * 1024 });
  s.send(Channel.Stdin, new Uint8Array(512 * 1024));
  await tick();
  const dataBytes = () =>
    ws
      .streamFrames()
      .filter((f) => f.type === StreamFrameType.Data)
      .reduce((n, f) => n + (f.data as Uint8Array).length, 0);
  const before = dataBytes();
  assert.ok(before <= 64 * 1024 + 16 * 1024, `at most the low-water mark plus a chunk is handed to the socket (${before})`);
  h.sendToNode(
    'slow-link',
    newMessage({ source: 'edgecontroller', group: 'resource', operation: 'update', resource: 'default/configmap/c', sync: true, content: { data: { a: 'b' } } }),
  );
  await tick();
  assert.ok(
    ws.messages().some((m) => m.route.resource === 'default/configmap/c'),
    'the message is written at once, ahead of the queued stream data',
  );
  // The peer reads: the rest follows, nothing lost.
  for (let i = 0; i < 100 && dataBytes() < 512 * 1024 + 40; i++) {
    ws.flush();
    await tick();
  }
  assert.equal(dataBytes(), 512 * 1024 + Math.ceil((512 * 1024) / (16 * 1024 - 1)), 'every byte, each chunk with its channel byte');
});

test("the link's end ends its streams with LEDGE_ERR_DISCONNECTED", () => {
  const h = hub();
  const ws = connect(h, 'leaving');
  const s = h.openStream('leaving', req);
  let err: { code: string } | undefined;
  s.on('close', (e) => (err = e));
  ws.emit('close', 1006, Buffer.alloc(0));
  assert.equal(err?.code, ErrorCode.Disconnected);
});
