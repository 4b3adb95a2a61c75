/**
 * What CloudHub tells other cloud modules goes over Beehive, one channel per flow
 * (cloud/cloudhub/reports.ts): each ACK as one report to the module that sent the message,
 * carrying that message; connects and disconnects as session reports to the modules in
 * `sessionSubscribers`, in the same mailbox and so in the order CloudHub saw them.
 * Real CloudHub on loopback, a thin edge.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Beehive, type Module, type ModuleContext } from '../../shared/beehive/index.js';
import { newAck, newMessage, type Message } from '../../shared/protocol/index.js';
import { createCloudHub, SessionOperation, type AckReport, type SessionReport } from '../../cloud/cloudhub/index.js';
import { captureLog, ThinEdge } from '../helpers/cloud.js';
import { eventually } from '../helpers/process.js';

/** A cloud module that sends what it is given to CloudHub and records everything it receives. */
function probe(name: string) {
  const inbox: Message[] = [];
  let ctx: ModuleContext | undefined;
  const module: Module = {
    name,
    group: 'probe',
    async start(c: ModuleContext, signal: AbortSignal) {
      ctx = c;
      for await (const m of c.messages(signal)) inbox.push(m);
    },
  };
  const send = (node: string, resource: string, rv: string) => {
    const m = newMessage({ source: name, group: 'resource', operation: 'update', resource: `node/${node}/${resource}`, resourceVersion: rv, sync: true, content: { rv } });
    void ctx!.send('cloudhub', m);
    return m;
  };
  return { module, inbox, send, ready: () => ctx !== undefined };
}

async function cloud(sessionSubscribers: string[]) {
  const log = captureLog();
  const bee = new Beehive({ log: log.logger });
  const hub = createCloudHub({ host: '127.0.0.1', port: 0, insecurePlainWebSocket: true, ackTimeoutMs: 60_000, sessionSubscribers }, { log: log.logger });
  const a = probe('sender-a');
  const b = probe('sender-b');
  for (const m of [hub, a.module, b.module]) bee.register(m);
  bee.start();
  await hub.ready();
  await eventually(() => a.ready() && b.ready(), 5_000, 'probes started');
  return { hub, bee, a, b, stop: () => bee.stop() };
}

const ops = (inbox: Message[]) => inbox.map((m) => m.route.operation);

describe('CloudHub reports over Beehive', () => {
  test('an ACK is reported once, to the sender only, carrying the message; a rejection carries the error', async () => {
    const c = await cloud([]);
    const edge = await ThinEdge.connect(c.hub.url, 'r1', { autoAck: false });
    try {
      await eventually(() => c.hub.isConnected('r1'), 5_000, 'session');
      const sent = c.a.send('r1', 'default/configmap/x', '7');
      const rejected = c.b.send('r1', 'default/configmap/y', '8');
      await eventually(() => edge.messages.length >= 2, 5_000, 'both messages at the edge');
      for (const m of edge.messages) {
        edge.send(m.header.id === rejected.header.id ? newAck(m, 'thin', { code: 'LEDGE_ERR_STORAGE', message: 'disk full' }) : newAck(m, 'thin'));
      }
      // The same ACK again (a late duplicate): acknowledges nothing in flight, reported never.
      edge.send(newAck(edge.messages.find((m) => m.header.id === sent.header.id)!, 'thin'));
      await eventually(() => c.a.inbox.length >= 1 && c.b.inbox.length >= 1, 5_000, 'the reports');
      // A later message's ACK is the barrier: anything reported for the earlier ones has arrived by then.
      const barrier = c.a.send('r1', 'default/configmap/z', '9');
      await eventually(() => edge.messages.some((m) => m.header.id === barrier.header.id), 5_000, 'barrier at the edge');
      edge.send(newAck(edge.messages.find((m) => m.header.id === barrier.header.id)!, 'thin'));
      await eventually(() => c.a.inbox.some((m) => m.header.parentId === barrier.header.id), 5_000, 'barrier report');

      const reportsA = c.a.inbox.filter((m) => m.header.parentId === sent.header.id);
      assert.equal(reportsA.length, 1, 'one report per ACK');
      const ra = reportsA[0]!;
      assert.equal(ra.route.operation, 'ack');
      assert.equal(ra.route.resource, 'node/r1/default/configmap/x');
      assert.equal(ra.header.resourceVersion, '7');
      const content = ra.content as AckReport;
      assert.equal(content.node, 'r1');
      assert.equal(content.error, null);
      assert.equal(content.message.header.id, sent.header.id, 'the report carries the ACKed message');
      assert.deepEqual(content.message.content, { rv: '7' });

      const rb = c.b.inbox.filter((m) => m.header.parentId === rejected.header.id);
      assert.equal(rb.length, 1);
      assert.deepEqual((rb[0]!.content as AckReport).error, { code: 'LEDGE_ERR_STORAGE', message: 'disk full' });
      // Each report went to its own sender only.
      assert.equal(
        c.a.inbox.some((m) => m.header.parentId === rejected.header.id),
        false,
      );
      assert.equal(
        c.b.inbox.some((m) => m.header.parentId === sent.header.id),
        false,
      );
      // No session reports without subscribers.
      assert.deepEqual([...new Set(ops(c.a.inbox))], ['ack']);
    } finally {
      edge.close();
      await c.stop();
    }
  });

  test('session reports reach the subscribers, in order with the ACK reports, and nobody else', async () => {
    const c = await cloud(['sender-a']);
    try {
      const edge = await ThinEdge.connect(c.hub.url, 'r2', { autoAck: true });
      await eventually(() => c.a.inbox.some((m) => m.route.operation === SessionOperation.Connected), 5_000, 'connected report');
      const sent = c.a.send('r2', 'default/configmap/x', '1');
      await eventually(() => c.a.inbox.some((m) => m.header.parentId === sent.header.id), 5_000, 'ACK report');
      edge.close();
      await eventually(() => c.a.inbox.some((m) => m.route.operation === SessionOperation.Disconnected), 5_000, 'disconnected report');
      assert.deepEqual(ops(c.a.inbox), [SessionOperation.Connected, 'ack', SessionOperation.Disconnected]);
      const [connected, , disconnected] = c.a.inbox as [Message, Message, Message];
      assert.equal(connected.route.resource, 'node/r2');
      assert.equal((connected.content as SessionReport).node, 'r2');
      assert.match((connected.content as SessionReport).remote ?? '', /^127\.0\.0\.1:\d+$/);
      assert.equal((disconnected.content as SessionReport).node, 'r2');
      assert.ok((disconnected.content as SessionReport).reason);
      assert.equal(c.b.inbox.length, 0, 'a module that is not subscribed hears nothing');
    } finally {
      await c.stop();
    }
  });

  test('a subscriber that is not registered costs nothing but a debug line', async () => {
    const c = await cloud(['nobody']);
    try {
      const edge = await ThinEdge.connect(c.hub.url, 'r3', { autoAck: true });
      await eventually(() => c.hub.isConnected('r3'), 5_000, 'session');
      const sent = c.a.send('r3', 'default/configmap/x', '1');
      await eventually(() => c.a.inbox.some((m) => m.header.parentId === sent.header.id), 5_000, 'the ACK report still arrives');
      edge.close();
    } finally {
      await c.stop();
    }
  });
});
