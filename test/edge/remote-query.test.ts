/**
 * A query for an object the node does not hold (issue 10): it goes to the cloud when the
 * link is up (and the answer is stored, so it is there offline afterwards) and fails at
 * once with a clear NotFound when it is down.
 * - MetaManager with a fake EdgeHub (online, offline, errors, timeout, ordering with a delete);
 * - EdgeHub with a fake socket: the query is sent now (not through the outbox), answered by a
 *   `response` or an error ACK, failed at once while disconnected or when the link drops;
 * - EdgeController against the local control plane: only what is in the node's desired set;
 * - end to end over loopback: real CloudHub + EdgeController + EdgeHub + MetaManager.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type WebSocket from 'ws';
import { Beehive, type Module, type ModuleContext } from '../../shared/beehive/index.js';
import { createCborCodec, newAck, newMessage, newResponse, type ErrorContent, type Message } from '../../shared/protocol/index.js';
import { DisconnectedError, ErrorCode, ForbiddenError, errorContent, hasCode } from '../../shared/errors/index.js';
import { createLogger, silentLogger } from '../../shared/log/index.js';
import { createMetaManager, type MetaChange, type MetaManager, type StoredObject } from '../../edge/metamanager/index.js';
import { EdgeHub } from '../../edge/edgehub/index.js';
import { createCloudHub } from '../../cloud/cloudhub/index.js';
import { EdgeController } from '../../cloud/edgecontroller/index.js';
import { captureLog } from '../helpers/cloud.js';
import { eventually, within } from '../helpers/process.js';
import { readMetaLog, tempDir } from '../helpers/files.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';

const cp = useLocalControlPlane('ledge-remote-query-', { nodeLeaseTimeoutMs: 600_000 });
const codec = createCborCodec();

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});
function dir(): string {
  const d = tempDir('ledge-remote-query-');
  cleanups.push(d.cleanup);
  return d.path;
}

const configMap = (name: string, rv = '7', namespace = 'default') => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace, resourceVersion: rv, uid: `uid-${name}` },
  data: { k: 'v' },
});
const query = (resource: string) => newMessage({ source: 'edged', group: 'meta', operation: 'query', resource, content: null });

/** MetaManager with a stand-in EdgeHub whose answer to each query the test decides. */
async function metaRig(answer: ((q: Message) => unknown | Promise<unknown>) | undefined, options: { remoteQueryTimeoutMs?: number; maxObjects?: number } = {}) {
  const log = captureLog();
  const mm = createMetaManager({ dataDir: dir(), ...options }, log.logger);
  const bee = new Beehive({ log: silentLogger });
  bee.register(mm);
  const asked: Message[] = [];
  if (answer) {
    bee.register({
      name: 'websocket',
      group: 'hub',
      async start(ctx: ModuleContext, signal: AbortSignal) {
        for await (const m of ctx.messages(signal)) {
          asked.push(m);
          void Promise.resolve(answer(m)).then((content) => ctx.respond(m, content));
        }
      },
    });
  }
  bee.start();
  await eventually(() => mm.view.ready, 10_000, 'the store to open');
  const changes: MetaChange[] = [];
  mm.view.subscribe((c) => void changes.push(c));
  const client = bee.context('edged');
  cleanups.push(() => bee.stop());
  return {
    mm,
    bee,
    log,
    asked,
    changes,
    /** A query as a module sends it; waits at most `timeoutMs` (a reply that took longer fails the test). */
    ask: async (resource: string, timeoutMs = 5_000) => (await client.sendSync('metamanager', query(resource), timeoutMs)).content,
    downstream: (operation: string, resource: string, content: unknown, rv?: string) =>
      client.sendSync('metamanager', newMessage({ source: 'cloud', group: 'resource', operation, resource, content, ...(rv ? { resourceVersion: rv } : {}), sync: true }), 10_000),
  };
}

describe('MetaManager: a query for what the node does not hold', () => {
  test('online: forwarded to the cloud once; the answer is replied, stored like an insert (listeners told), and served locally afterwards', async () => {
    const r = await metaRig(() => configMap('cm-a'));
    const reply = (await r.ask('default/configmap/cm-a')) as StoredObject;
    assert.deepEqual(reply, { resource: 'default/configmap/cm-a', resourceVersion: '7', value: configMap('cm-a') });
    assert.equal(r.asked.length, 1);
    assert.equal(r.asked[0]!.route.operation, 'query');
    assert.equal(r.asked[0]!.route.resource, 'default/configmap/cm-a');
    assert.deepEqual(r.mm.view.get('default/configmap/cm-a'), reply, 'stored');
    assert.deepEqual(
      r.changes.map((c) => [c.op, c.resource, c.resourceVersion]),
      [['put', 'default/configmap/cm-a', '7']],
    );
    assert.deepEqual(await r.ask('default/configmap/cm-a'), reply);
    assert.equal(r.asked.length, 1, 'the second query was answered from the store');
  });

  test('offline: EdgeHub says disconnected; the reply is NotFound "not held by this node and the cloud is unreachable", at once', async () => {
    const r = await metaRig(() => errorContent(new DisconnectedError('not connected to the cloud')), { remoteQueryTimeoutMs: 60_000 });
    // The requester waits 5 s at most while MetaManager would wait 60 s for the cloud: only an immediate failure passes.
    const reply = await r.ask('default/secret/s1', 5_000);
    assert.ok(hasCode(reply, ErrorCode.NotFound), JSON.stringify(reply));
    assert.equal((reply as ErrorContent).message, 'default/secret/s1 is not held by this node and the cloud is unreachable');
    assert.equal(r.mm.view.get('default/secret/s1'), undefined);
  });

  test('no EdgeHub at all: the same NotFound', async () => {
    const r = await metaRig(undefined);
    const reply = await r.ask('default/pod/p');
    assert.ok(hasCode(reply, ErrorCode.NotFound) && /cloud is unreachable/.test((reply as ErrorContent).message), JSON.stringify(reply));
  });

  test("the cloud's refusal is passed on and nothing is stored; an answer that is not the object asked for is refused", async () => {
    const r = await metaRig((q) =>
      q.route.resource.endsWith('/secret') ? configMap('other') : errorContent(new ForbiddenError('node n may not read configmap default/x: it is not in its desired set')),
    );
    const refused = await r.ask('default/configmap/x');
    assert.ok(hasCode(refused, ErrorCode.Forbidden), JSON.stringify(refused));
    assert.equal(r.mm.view.get('default/configmap/x'), undefined);
    const wrong = await r.ask('default/configmap/secret');
    assert.ok(hasCode(wrong, ErrorCode.InvalidMessage), JSON.stringify(wrong));
    assert.equal(r.mm.view.get('default/configmap/secret'), undefined);
    assert.equal(r.changes.length, 0);
  });

  test('held objects and collections are answered locally, without the cloud', async () => {
    const r = await metaRig(() => assert.fail('the cloud must not be asked'));
    assert.equal((await r.downstream('insert', 'default/configmap/held', configMap('held'), '3')).content, null);
    assert.deepEqual(((await r.ask('default/configmap/held')) as StoredObject).value, configMap('held'));
    assert.deepEqual(
      ((await r.ask('default/configmap/')) as StoredObject[]).map((o) => o.resource),
      ['default/configmap/held'],
    );
    assert.equal(r.asked.length, 0);
  });

  test('a cloud that does not answer: a timeout error after remoteQueryTimeoutMs', async () => {
    const r = await metaRig(() => new Promise(() => {}), { remoteQueryTimeoutMs: 200 });
    const reply = await r.ask('default/configmap/slow');
    assert.ok(hasCode(reply, ErrorCode.Timeout), JSON.stringify(reply));
    assert.match((reply as ErrorContent).message, /not held by this node and the cloud did not answer within 200 ms/);
  });

  test('a delete of the resource arriving while the query is in flight is applied after the answer: the object ends deleted', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const r = await metaRig(async () => {
      await held;
      return configMap('race', '5');
    });
    const answered = r.ask('default/configmap/race', 10_000);
    await eventually(() => r.asked.length === 1, 5_000, 'the query to reach the hub');
    const deleted = r.downstream('delete', 'default/configmap/race', null);
    // The delete waits behind the query (same resource): it is not applied yet.
    await new Promise((res) => setImmediate(res));
    assert.equal(r.changes.length, 0);
    release();
    await within(Promise.all([answered, deleted]), 10_000, 'the query and the delete');
    assert.deepEqual(
      r.changes.map((c) => c.op),
      ['put', 'delete'],
    );
    assert.equal(r.mm.view.get('default/configmap/race'), undefined);
  });

  test('a store at its limit still answers (the caller gets the object), without storing it', async () => {
    const r = await metaRig(() => configMap('cm-b'), { maxObjects: 1 });
    await r.downstream('insert', 'default/configmap/first', configMap('first'), '1');
    const reply = (await r.ask('default/configmap/cm-b')) as StoredObject;
    assert.deepEqual(reply.value, configMap('cm-b'));
    assert.equal(r.mm.view.get('default/configmap/cm-b'), undefined);
  });
});

/** Enough of a ws client for EdgeHub (only the members it uses). */
class FakeSocket extends EventEmitter {
  readyState = 0;
  readonly frames: Uint8Array[] = [];
  open(): void {
    this.readyState = 1;
    this.emit('open');
  }
  send(data: Uint8Array, _opts: unknown, cb?: (err?: Error) => void): void {
    this.frames.push(data);
    if (cb) setImmediate(cb);
  }
  receive(m: Message): void {
    this.emit('message', Buffer.from(codec.encode(m)), true);
  }
  decoded(): Message[] {
    return this.frames.map((f) => codec.decode(f));
  }
  close(code = 1005): void {
    this.shut(code);
  }
  terminate(): void {
    this.shut(1006);
  }
  private shut(code: number): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setImmediate(() => this.emit('close', code, Buffer.alloc(0)));
  }
  pause(): void {}
  resume(): void {}
}

async function hubRig() {
  const d = dir();
  const sockets: FakeSocket[] = [];
  const hub = new EdgeHub(
    {
      endpoints: ['ws://127.0.0.1:1'],
      nodeName: 'q-node',
      dataDir: d,
      heartbeatIntervalMs: 60_000,
      heartbeatTimeoutMs: 120_000,
      reconnectBaseMs: 60_000,
      reconnectMaxMs: 60_000,
      createSocket: () => {
        const s = new FakeSocket();
        sockets.push(s);
        return s as unknown as WebSocket;
      },
    },
    silentLogger,
  );
  const bee = new Beehive({ log: silentLogger });
  bee.register(hub);
  bee.start();
  cleanups.push(() => bee.stop());
  const socket = await eventually(() => sockets[0], 5000, 'EdgeHub opened a socket');
  const ctx = bee.context('metamanager');
  return { hub, socket, ask: (m: Message, timeoutMs = 5_000) => ctx.sendSync('websocket', m, timeoutMs) };
}

describe('EdgeHub: queries', () => {
  test('not connected: LEDGE_ERR_DISCONNECTED at once, nothing written or queued', async () => {
    const r = await hubRig();
    const reply = await r.ask(query('default/configmap/a'));
    assert.ok(hasCode(reply.content, ErrorCode.Disconnected), JSON.stringify(reply.content));
    assert.equal(r.socket.frames.length, 0);
  });

  test('connected: the query is written at once (not an outbox entry); a response with its id, or an error ACK, is the answer', async () => {
    const r = await hubRig();
    r.socket.open();
    await eventually(() => r.hub.connected, 5000, 'connected');
    const q1 = query('default/configmap/a');
    const p1 = r.ask(q1);
    const sent = await eventually(() => r.socket.decoded().find((m) => m.route.operation === 'query'), 5000, 'the query on the wire');
    assert.equal(sent.header.id, q1.header.id);
    assert.equal(sent.route.resource, 'default/configmap/a');
    r.socket.receive(newResponse(sent, 'cloudhub', configMap('a')));
    assert.deepEqual((await p1).content, configMap('a'));
    // An older cloud ACKs a query with its module's error instead of answering it.
    const q2 = query('default/configmap/b');
    const p2 = r.ask(q2);
    await eventually(() => r.socket.decoded().some((m) => m.header.id === q2.header.id), 5000, 'the second query on the wire');
    r.socket.receive(newAck(q2, 'cloudhub', { code: ErrorCode.Unsupported, message: 'edgecontroller does not handle configmap' }));
    assert.ok(hasCode((await p2).content, ErrorCode.Unsupported));
    assert.equal(r.hub.stats.upstreamAcked, 0, 'not outbox traffic');
  });

  test('the link drops with a query in flight: LEDGE_ERR_DISCONNECTED at once', async () => {
    const r = await hubRig();
    r.socket.open();
    await eventually(() => r.hub.connected, 5000, 'connected');
    const q = query('default/configmap/c');
    const p = r.ask(q, 5_000);
    await eventually(() => r.socket.frames.length > 0, 5000, 'the query on the wire');
    r.socket.terminate();
    const reply = await p;
    assert.ok(hasCode(reply.content, ErrorCode.Disconnected), JSON.stringify(reply.content));
  });
});

describe('EdgeController: answers a node only what is in its desired set', () => {
  test('its pods and the configmaps/secrets they reference, its own Node; Forbidden otherwise (existing or not); NotFound, Unsupported', async () => {
    const log = captureLog();
    const ec = new EdgeController(cp.kc, log.logger);
    const bee = new Beehive({ log: createLogger({ level: 'warn' }) });
    bee.register(ec);
    bee.register({ name: 'cloudhub', group: 'hub', start: async (_c: ModuleContext, s: AbortSignal) => void (await new Promise((r) => s.addEventListener('abort', r))) });
    bee.start();
    cleanups.push(() => bee.stop());
    const hub = bee.context('cloudhub');
    const ask = async (node: string, resource: string) =>
      (
        await hub.sendSync(
          'edgecontroller',
          newMessage({ source: 'metamanager', group: 'meta', operation: 'query', resource: `node/${node}/${resource}`, content: null, sync: true }),
          10_000,
        )
      ).content;
    const ns = 'default';
    for (const name of ['qa-cm', 'qb-cm', 'free-cm']) await cp.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name }, data: { k: name } } });
    await cp.core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'qa-secret' }, stringData: { p: 'w' } } });
    const pod = (name: string, node: string, cm: string, extra: object = {}) => ({
      metadata: { name },
      spec: { nodeName: node, containers: [{ name: 'c', image: 'busybox', envFrom: [{ configMapRef: { name: cm } }] }], ...extra },
    });
    await cp.core.createNamespacedPod({
      namespace: ns,
      body: pod('qa-pod', 'qa', 'qa-cm', {
        volumes: [
          { name: 's', secret: { secretName: 'qa-secret' } },
          { name: 'm', configMap: { name: 'qa-missing' } },
        ],
      }),
    });
    await cp.core.createNamespacedPod({ namespace: ns, body: pod('qb-pod', 'qb', 'qb-cm') });
    // An edge node, registered as EdgeController registers it (edge role label).
    await cp.core.createNode({ body: { metadata: { name: 'qa', labels: { 'node-role.kubernetes.io/edge': '' } } } });
    await cp.core.createNode({ body: { metadata: { name: 'qb', labels: { 'node-role.kubernetes.io/edge': '' } } } });

    const got = await eventually(
      async () => {
        const c = (await ask('qa', 'default/pod/qa-pod')) as { metadata?: { name?: string } };
        return c?.metadata?.name === 'qa-pod' ? c : undefined;
      },
      15_000,
      'the informers to hold qa-pod',
    );
    assert.equal((got as { kind?: string }).kind, 'Pod');
    const kindOf = async (node: string, r: string) => {
      const c = (await ask(node, r)) as { kind?: string; code?: string };
      return c.kind ?? c.code;
    };
    assert.equal(await kindOf('qa', 'default/configmap/qa-cm'), 'ConfigMap');
    assert.equal(await kindOf('qa', 'default/secret/qa-secret'), 'Secret');
    await eventually(async () => (await kindOf('qa', 'default/node/qa')) === 'Node', 10_000, 'the node informer to hold qa');
    assert.equal(await kindOf('qa', 'default/pod/qb-pod'), ErrorCode.Forbidden, "another node's pod");
    assert.equal(await kindOf('qa', 'default/pod/nope'), ErrorCode.Forbidden, 'a pod that does not exist: Forbidden too (existence is not revealed)');
    assert.equal(await kindOf('qa', 'default/configmap/qb-cm'), ErrorCode.Forbidden, "another node's configmap");
    assert.equal(await kindOf('qa', 'default/configmap/free-cm'), ErrorCode.Forbidden, 'a configmap no pod references');
    assert.equal(await kindOf('qa', 'default/configmap/qa-missing'), ErrorCode.NotFound, 'referenced by its pod but absent');
    assert.equal(await kindOf('qa', 'default/node/qb'), ErrorCode.Forbidden, 'another Node');
    assert.equal(await kindOf('qa', 'default/service/svc'), ErrorCode.Unsupported);
    const forbidden = (await ask('qa', 'default/configmap/free-cm')) as ErrorContent;
    assert.match(forbidden.message, /node qa may not read configmap default\/free-cm: it is not in the node's desired set/);

    // A pod being deleted leaves the desired set: the pod is NotFound, what only it referenced is Forbidden.
    await cp.core.deleteNamespacedPod({ name: 'qa-pod', namespace: ns });
    await eventually(async () => (await kindOf('qa', 'default/pod/qa-pod')) === ErrorCode.NotFound, 10_000, 'the deletion to reach the informer');
    assert.equal(await kindOf('qa', 'default/configmap/qa-cm'), ErrorCode.Forbidden);
  });
});

describe('remote query end to end (real CloudHub, EdgeController, EdgeHub and MetaManager over loopback)', () => {
  test('online: fetched and stored; refused outside the desired set; offline: held ones served, others NotFound at once; a store-limit refusal reaches the cloud as an error ACK', async () => {
    const ns = 'default';
    await cp.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'e2e-cm' }, data: { k: 'v' } } });
    await cp.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'e2e-other' }, data: { k: 'x' } } });
    await cp.core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name: 'e2e-pod' }, spec: { nodeName: 'rq-node', containers: [{ name: 'c', image: 'busybox', envFrom: [{ configMapRef: { name: 'e2e-cm' } }] }] } },
    });

    // The cloud: CloudHub + EdgeController, and a stand-in SyncController that records ACK reports.
    const cloudLog = captureLog();
    const cloud = new Beehive({ log: cloudLog.logger });
    const hub = createCloudHub({ host: '127.0.0.1', port: 0, insecurePlainWebSocket: true }, { log: cloudLog.logger });
    const acks: Message[] = [];
    const sync: Module = {
      name: 'synccontroller',
      group: 'resource-sync',
      async start(ctx: ModuleContext, signal: AbortSignal) {
        for await (const m of ctx.messages(signal)) acks.push(m);
      },
    };
    cloud.register(hub);
    cloud.register(new EdgeController(cp.kc, cloudLog.logger));
    cloud.register(sync);
    cloud.start();
    let cloudStopped = false;
    cleanups.push(() => (cloudStopped ? undefined : cloud.stop()));
    await hub.ready();
    await eventually(() => cloudLog.has(/edge controller watching/), 15_000, 'the edge controller informers');

    // The edge: EdgeHub + MetaManager (store limited to 2 objects).
    const edgeDir = dir();
    const edge = new Beehive({ log: silentLogger });
    const edgeHub = new EdgeHub({ endpoints: [hub.url], nodeName: 'rq-node', dataDir: edgeDir, reconnectBaseMs: 50, reconnectMaxMs: 200 }, silentLogger);
    const mm: MetaManager = createMetaManager({ dataDir: edgeDir, maxObjects: 2 }, silentLogger);
    edge.register(edgeHub);
    edge.register(mm);
    edge.start();
    cleanups.push(() => edge.stop());
    await eventually(() => edgeHub.connected && mm.view.ready, 10_000, 'the edge connected');
    const client = edge.context('edged');
    const ask = async (resource: string) => (await client.sendSync('metamanager', query(resource), 5_000)).content;

    // Online: the configmap its pod references is fetched and stored; one it has no business with is refused.
    const fetched = (await eventually(
      async () => {
        const c = await ask('default/configmap/e2e-cm');
        return (c as StoredObject).value ? (c as StoredObject) : undefined;
      },
      15_000,
      'the cloud to answer with e2e-cm',
    )) as StoredObject;
    assert.deepEqual((fetched.value as { data?: unknown }).data, { k: 'v' });
    assert.ok(
      readMetaLog(edgeDir).some((r) => r.t === 'put' && r.k === 'default/configmap/e2e-cm'),
      'durable in the store',
    );
    assert.ok(hasCode(await ask('default/configmap/e2e-other'), ErrorCode.Forbidden));

    // The store holds 2 objects at most: a downstream insert beyond is refused, and the cloud hears why.
    const insert = (name: string) =>
      newMessage({
        source: 'synccontroller',
        group: 'resource',
        operation: 'insert',
        resource: `node/rq-node/default/configmap/${name}`,
        resourceVersion: '1',
        content: configMap(name, '1'),
        sync: true,
      });
    await cloud.context('synccontroller').send('cloudhub', insert('down-1'));
    await eventually(() => mm.view.get('default/configmap/down-1'), 10_000, 'the first insert stored');
    await cloud.context('synccontroller').send('cloudhub', insert('down-2'));
    const rejected = await eventually(
      () => acks.find((a) => (a.content as { message?: Message }).message?.route.resource.endsWith('down-2')),
      10_000,
      'the ACK report of the refused insert',
    );
    const error = (rejected.content as { error: ErrorContent | null }).error;
    assert.ok(hasCode(error, ErrorCode.StoreLimit), JSON.stringify(error));
    assert.equal(mm.view.get('default/configmap/down-2'), undefined);

    // Offline: what the node holds is served; what it does not hold fails at once with NotFound.
    cloudStopped = true;
    await cloud.stop();
    await eventually(() => !edgeHub.connected, 10_000, 'the edge to see the link down');
    assert.deepEqual(((await ask('default/configmap/e2e-cm')) as StoredObject).value, fetched.value, 'served from the store offline');
    const missing = await ask('default/pod/e2e-pod');
    assert.ok(hasCode(missing, ErrorCode.NotFound), JSON.stringify(missing));
    assert.match((missing as ErrorContent).message, /not held by this node and the cloud is unreachable/);
  });
});
