/**
 * The stream multiplexer (shared/stream/mux.ts), sans-IO: two Muxes joined by an in-memory link
 * whose delivery the test controls. Credit bounds what a sender sends and what a receiver holds;
 * DATA waits for link room while control frames do not; chunks alternate between streams; a peer
 * breaking the rules loses that stream only; the link's end ends every stream.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Channel, Mux, StreamFrameType, type StreamFrame, type Stream } from '../../shared/stream/index.js';
import { ErrorCode } from '../../shared/errors/index.js';
import { createCborCodec } from '../../shared/protocol/index.js';

const tick = () => new Promise<void>((r) => setImmediate(r));

/** A cloud Mux and an edge Mux; frames queue in `toEdge`/`toCloud` until `deliver()`. */
function link(opts: { window?: number; maxChunk?: number; maxStreams?: number; onOpen?: (s: Stream) => void } = {}) {
  const toEdge: StreamFrame[] = [];
  const toCloud: StreamFrame[] = [];
  const room = { cloud: true, edge: true };
  const codec = createCborCodec();
  // Every frame goes through the real codec, as on the wire.
  const wire = (f: StreamFrame) => codec.decodeFrame(codec.encodeStream(f)) as StreamFrame;
  const cloud = new Mux({ write: (f) => toEdge.push(wire(f)), canWrite: () => room.cloud, ...opts });
  const accepted: Stream[] = [];
  const edge = new Mux({
    write: (f) => toCloud.push(wire(f)),
    canWrite: () => room.edge,
    ...opts,
    onOpen:
      opts.onOpen ??
      ((s) => {
        accepted.push(s);
        s.accept();
      }),
  });
  const deliver = async () => {
    await tick(); // the muxes write after the sender's turn
    for (let i = 0; i < 1000 && (toEdge.length > 0 || toCloud.length > 0); i++) {
      while (toEdge.length) edge.receive(toEdge.shift()!);
      while (toCloud.length) cloud.receive(toCloud.shift()!);
      await tick();
    }
  };
  return { cloud, edge, toEdge, toCloud, room, accepted, deliver };
}

const req = { kind: 'logs' as const, namespace: 'default', pod: 'p' };
const bytes = (n: number, v = 7) => new Uint8Array(n).fill(v);

test('an opened stream is accepted, carries channel messages both ways in order, and ends cleanly', async () => {
  const l = link();
  const s = l.cloud.open(req);
  let opened = false;
  s.on('open', () => (opened = true));
  await l.deliver();
  assert.ok(opened, 'open after the edge accepted');
  const e = l.accepted[0]!;
  assert.deepEqual(e.request, req, 'the request arrives as sent (without the window)');
  const got: [number, string][] = [];
  s.on('message', (ch, p) => got.push([ch, Buffer.from(p).toString()]));
  e.send(Channel.Stdout, Buffer.from('one'));
  e.send(Channel.Stderr, Buffer.from('two'));
  e.send(Channel.Stdout, Buffer.from('three'));
  const back: string[] = [];
  e.on('message', (ch, p) => back.push(`${ch}:${Buffer.from(p).toString()}`));
  s.send(Channel.Stdin, Buffer.from('in'));
  await l.deliver();
  let closed: unknown = 'not yet';
  s.on('close', (err) => (closed = err));
  e.end();
  await l.deliver();
  assert.deepEqual(got, [
    [1, 'one'],
    [2, 'two'],
    [1, 'three'],
  ]);
  assert.deepEqual(back, ['0:in']);
  assert.equal(closed, undefined, 'closed without an error');
  assert.equal(l.cloud.size, 0);
  assert.equal(l.edge.size, 0);
});

test('a sender never sends past its credit; a paused receiver holds at most one window and grants nothing', async () => {
  const window = 64 * 1024;
  const l = link({ window, maxChunk: 4096 });
  const s = l.cloud.open(req);
  await l.deliver();
  const e = l.accepted[0]!;
  let received = 0;
  s.on('message', (_ch, p) => (received += p.length + 1));
  s.pause();
  // 1 MB offered in 4 KiB writes, honouring back-pressure.
  let offered = 0;
  const total = 1024 * 1024;
  const offer = () => {
    while (offered < total) {
      offered += 4095;
      if (!e.send(Channel.Stdout, bytes(4095))) return;
    }
  };
  e.on('drain', offer);
  offer();
  await l.deliver();
  assert.equal(received, 0, 'nothing delivered while paused');
  assert.ok(e.queuedBytes <= window + 4096, `the sender queues about a window, not the whole megabyte (${e.queuedBytes})`);
  assert.ok(offered < total / 4, `the producer was held back (offered ${offered})`);
  s.resume();
  await l.deliver();
  assert.equal(received, Math.ceil(total / 4095) * 4096, 'everything arrives once resumed, nothing lost');
});

test('DATA waits while the link has no room; control frames do not', async () => {
  const l = link();
  const s = l.cloud.open(req);
  await l.deliver();
  const e = l.accepted[0]!;
  l.room.edge = false;
  e.send(Channel.Stdout, bytes(100));
  await tick();
  assert.equal(l.toCloud.filter((f) => f.type === StreamFrameType.Data).length, 0, 'no DATA while the socket is over its low-water mark');
  e.abort({ code: ErrorCode.StreamRequest, message: 'stop' });
  assert.equal(l.toCloud.filter((f) => f.type === StreamFrameType.Close).length, 1, 'CLOSE goes at once');
  let err: unknown;
  s.on('close', (x) => (err = x));
  await l.deliver();
  assert.deepEqual(err, { code: ErrorCode.StreamRequest, message: 'stop' });
});

test('with little link room, streams take turns chunk by chunk', async () => {
  const l = link({ maxChunk: 1024 });
  const a = l.cloud.open(req);
  const b = l.cloud.open(req);
  await l.deliver();
  const [ea, eb] = l.accepted as [Stream, Stream];
  l.room.edge = false;
  ea.send(Channel.Stdout, bytes(1023 * 4, 1));
  eb.send(Channel.Stdout, bytes(1023 * 4, 2));
  await tick();
  // One frame of room at a time.
  const order: number[] = [];
  for (let i = 0; i < 8; i++) {
    l.room.edge = true;
    let wrote = false;
    const before = l.toCloud.length;
    l.room.edge = true;
    // Let exactly one DATA frame through: room closes after the first write.
    const orig = l.toCloud.push.bind(l.toCloud);
    l.toCloud.push = (...f: StreamFrame[]) => {
      if (f[0]?.type === StreamFrameType.Data) {
        l.room.edge = false;
        wrote = true;
      }
      return orig(...f);
    };
    l.edge.pump();
    l.toCloud.push = orig;
    assert.ok(wrote, `a frame was written in turn ${i}`);
    const f = l.toCloud[before]!;
    order.push(f.id === ea.id ? 1 : 2);
  }
  assert.deepEqual(order, [1, 2, 1, 2, 1, 2, 1, 2]);
  void a;
  void b;
});

test('a peer that sends past its credit, or an oversized chunk, loses that stream only', async () => {
  const l = link({ window: 1024 });
  const s = l.cloud.open(req);
  const other = l.cloud.open(req);
  await l.deliver();
  let err: { code: string } | undefined;
  s.on('close', (e) => (err = e as { code: string }));
  // Paused: nothing is granted back. A hostile edge: raw DATA frames beyond the 1024 bytes granted.
  s.pause();
  for (let i = 0; i < 3; i++) l.cloud.receive({ id: s.id, type: StreamFrameType.Data, data: bytes(600) });
  assert.equal(err?.code, ErrorCode.StreamProtocol);
  assert.ok(
    l.toEdge.some((f) => f.id === s.id && f.type === StreamFrameType.Close),
    'the edge is told',
  );
  assert.equal(other.closed, false, 'the other stream stays');
  let err2: { code: string } | undefined;
  other.on('close', (e) => (err2 = e as { code: string }));
  l.cloud.receive({ id: other.id, type: StreamFrameType.Data, data: bytes(17 * 1024) });
  assert.equal(err2?.code, ErrorCode.StreamProtocol, 'a chunk over maxChunk');
});

test('opens beyond maxStreams are refused on both sides; an edge without a handler refuses every open', async () => {
  const l = link({ maxStreams: 2 });
  l.cloud.open(req);
  l.cloud.open(req);
  assert.throws(() => l.cloud.open(req), { code: ErrorCode.QueueFull });
  const none = new Mux({ write: (f) => frames.push(f), canWrite: () => true });
  const frames: StreamFrame[] = [];
  none.receive({ id: 5, type: StreamFrameType.Open, data: { ...req, window: 1000 } });
  assert.deepEqual(frames, [{ id: 5, type: StreamFrameType.Close, data: { code: ErrorCode.Unsupported, message: 'this side does not accept streams' } }]);
});

test('the end of the link ends every stream with LEDGE_ERR_DISCONNECTED, and no more can be opened', async () => {
  const l = link();
  const s = l.cloud.open(req);
  await l.deliver();
  const e = l.accepted[0]!;
  const errs: unknown[] = [];
  s.on('close', (x) => errs.push(x));
  e.on('close', (x) => errs.push(x));
  l.cloud.closeAll({ code: ErrorCode.Disconnected, message: 'gone' });
  l.edge.closeAll({ code: ErrorCode.Disconnected, message: 'gone' });
  assert.deepEqual(errs, [
    { code: ErrorCode.Disconnected, message: 'gone' },
    { code: ErrorCode.Disconnected, message: 'gone' },
  ]);
  assert.throws(() => l.cloud.open(req), { code: ErrorCode.Disconnected });
  assert.equal(e.send(Channel.Stdout, bytes(1)), false, 'send after the end is a no-op');
});

test('end() sends what is queued first; a sender ignoring back-pressure is stopped at 4 windows', async () => {
  const l = link({ window: 1024, maxChunk: 256 });
  const s = l.cloud.open(req);
  await l.deliver();
  const e = l.accepted[0]!;
  let got = 0;
  s.on('message', (_c, p) => (got += p.length));
  e.send(Channel.Stdout, bytes(3000));
  e.end();
  let closed = false;
  s.on('close', () => (closed = true));
  await l.deliver();
  assert.equal(got, 3000, 'all queued bytes before the end');
  assert.ok(closed);

  const l2 = link({ window: 1024, maxChunk: 256 });
  const s2 = l2.cloud.open(req);
  await l2.deliver();
  s2.pause();
  const e2 = l2.accepted[0]!;
  let err: { code: string } | undefined;
  e2.on('close', (x) => (err = x as { code: string }));
  for (let i = 0; i < 10 && !e2.closed; i++) e2.send(Channel.Stdout, bytes(1000));
  assert.equal(err?.code, ErrorCode.StreamProtocol);
});

test('stream frames outside the profile are refused by the codec', () => {
  const codec = createCborCodec();
  const enc = (v: unknown[]) => codec.encodeStream({ id: v[0] as number, type: v[1] as number, data: v[2] });
  assert.throws(() => codec.decodeFrame(enc([0, 2, bytes(1)])), { code: ErrorCode.InvalidMessage }, 'id 0');
  assert.throws(() => codec.decodeFrame(enc([1, 9, null])), { code: ErrorCode.InvalidMessage }, 'unknown type');
  assert.throws(() => codec.decodeFrame(enc([1, 2, 'text'])), { code: ErrorCode.InvalidMessage }, 'DATA must be bytes');
  assert.throws(() => codec.decodeFrame(enc([1, 3, -5])), { code: ErrorCode.InvalidMessage }, 'negative credit');
  assert.throws(() => codec.decodeFrame(enc([1, 1, { kind: 'rm -rf', namespace: 'a', pod: 'b' }])), { code: ErrorCode.InvalidMessage }, 'unknown kind');
  assert.throws(() => codec.decodeFrame(enc([1, 4, { code: 1 }])), { code: ErrorCode.InvalidMessage }, 'CLOSE shape');
  assert.throws(() => codec.decode(enc([1, 2, bytes(1)])), { code: ErrorCode.InvalidMessage }, 'decode() takes messages only');
});

test('an end while the consumer is paused: what is held is delivered on resume, then the stream closes', async () => {
  const l = link();
  const s = l.cloud.open(req);
  await l.deliver();
  const e = l.accepted[0]!;
  s.pause();
  let got = 0;
  let closedAt = -1;
  s.on('message', (_c, p) => (got += p.length));
  s.on('close', () => (closedAt = got));
  e.send(Channel.Stdout, bytes(50_000));
  e.end();
  await l.deliver();
  assert.equal(got, 0);
  assert.equal(closedAt, -1, 'not closed while data is held');
  assert.equal(s.send(Channel.Stdin, bytes(1)), false, 'nothing more to send to a peer that ended');
  s.resume();
  assert.equal(got, 50_000);
  assert.equal(closedAt, 50_000, 'closed after the last byte');
});
