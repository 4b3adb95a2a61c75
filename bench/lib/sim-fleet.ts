/**
 * @module
 * A fleet of simulated edge nodes for the controllers benchmark (forked, IPC): thin
 * protocol clients that ACK every sync message at once, remember the newest version of
 * each resource they were sent, report receipts of watched resources, and on a lost
 * connection reconnect to the next endpoint with jitter (like EdgeHub).
 *
 * Commands: `{cmd:'connect', endpoints, names}` → `{type:'connected', ok}`;
 * `{cmd:'watch', prefix}` → from then on `{type:'recv', node, resource, rv, t}` for resources
 * starting with prefix; `{cmd:'stats'}` → `{type:'stats', open, received, reconnects, perEndpoint}`;
 * `{cmd:'digest'}` → `{type:'digest', versions: {node: {resource: rv}}}`; `{cmd:'run-pods'}` → from
 * then on each pod sent to a node (insert or update, not being deleted) is answered with a pod
 * status upstream, as an Edged that started it at once would: phase Running, Ready, every
 * container running; `{cmd:'close'}`.
 */
import WebSocket from 'ws';
import { createCborCodec, newAck, newMessage, NODE_NAME_HEADER, SUBPROTOCOL } from '../../shared/protocol/index.js';

const codec = createCborCodec();
const versions = new Map<string, Map<string, string>>();
const stats = { open: 0, received: 0, reconnects: 0, perEndpoint: {} as Record<string, number> };
let watchPrefix: string | undefined;
let runPods = false;
let closing = false;
const sockets = new Set<WebSocket>();
const send = (m: unknown) => process.send?.(m);

function connect(endpoints: string[], name: string, index: number, first: (ok: boolean) => void): void {
  const url = endpoints[index % endpoints.length]!;
  const ws = new WebSocket(url, SUBPROTOCOL, { headers: { [NODE_NAME_HEADER]: name }, perMessageDeflate: false, handshakeTimeout: 10_000 });
  let opened = false;
  ws.on('open', () => {
    opened = true;
    sockets.add(ws);
    stats.open++;
    stats.perEndpoint[url] = (stats.perEndpoint[url] ?? 0) + 1;
    // Register like a real edge: a node status report (the Node object is created from it).
    const status = {
      seq: 1,
      bootId: name,
      nodeInfo: { operatingSystem: 'linux', architecture: 'arm64', kernelVersion: 'sim', hostname: name, runtime: 'sim' },
      capacity: { cpu: '4', memory: '4Gi' },
      addresses: [],
      conditions: [{ type: 'Ready', status: 'True', reason: 'Sim', lastHeartbeatTime: new Date().toISOString() }],
    };
    ws.send(codec.encode(newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: `default/nodestatus/${name}`, sync: true, content: status })));
    first(true);
  });
  ws.on('message', (data: Buffer) => {
    const msg = codec.decode(data);
    if (!msg.header.sync || msg.route.operation === 'ack') return;
    ws.send(codec.encode(newAck(msg, 'websocket')));
    stats.received++;
    const rv = msg.header.resourceVersion;
    let m = versions.get(name);
    if (!m) versions.set(name, (m = new Map()));
    if (msg.route.operation === 'delete') m.delete(msg.route.resource);
    else if (rv) m.set(msg.route.resource, rv);
    if (runPods && msg.route.operation !== 'delete') reportRunning(ws, msg.route.resource, msg.content);
    if (watchPrefix !== undefined && msg.route.resource.startsWith(watchPrefix)) send({ type: 'recv', node: name, resource: msg.route.resource, rv, t: Date.now() });
  });
  ws.on('error', () => {});
  ws.on('close', () => {
    sockets.delete(ws);
    if (opened) {
      stats.open--;
      stats.perEndpoint[url]!--;
    }
    if (closing) return;
    if (!opened) first(false);
    stats.reconnects++;
    // The next endpoint, after a jittered delay (EdgeHub's behaviour, compressed).
    setTimeout(() => connect(endpoints, name, index + 1, () => {}), 100 + Math.random() * 900);
  });
}

/** `ns/pod/name` with a pod that is not being deleted → its Running status, upstream. */
function reportRunning(ws: WebSocket, resource: string, content: unknown): void {
  const [namespace, type, name] = resource.split('/');
  const pod = content as { metadata?: { deletionTimestamp?: string }; spec?: { containers?: { name: string; image?: string }[] } } | null;
  if (type !== 'pod' || !pod || pod.metadata?.deletionTimestamp) return;
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const ready = (type: string) => ({ type, status: 'True', lastProbeTime: null, lastTransitionTime: now });
  const status = {
    phase: 'Running',
    conditions: ['PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready', 'PodScheduled'].map(ready),
    hostIP: '127.0.0.1',
    podIP: '127.0.0.1',
    startTime: now,
    containerStatuses: (pod.spec?.containers ?? []).map((c) => ({
      name: c.name,
      image: c.image ?? '',
      imageID: '',
      ready: true,
      started: true,
      restartCount: 0,
      state: { running: { startedAt: now } },
    })),
    qosClass: 'BestEffort',
  };
  ws.send(codec.encode(newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: `${namespace}/podstatus/${name}`, sync: true, content: status })));
}

process.on('message', (raw: unknown) => {
  const m = raw as { cmd: string; endpoints?: string[]; names?: string[]; prefix?: string };
  switch (m.cmd) {
    case 'connect': {
      let pending = m.names!.length;
      let ok = 0;
      for (const name of m.names!) {
        connect(m.endpoints!, name, 0, (good) => {
          if (good) ok++;
          if (--pending === 0) send({ type: 'connected', ok });
        });
      }
      break;
    }
    case 'watch':
      watchPrefix = m.prefix;
      break;
    case 'run-pods':
      runPods = true;
      break;
    case 'stats':
      send({ type: 'stats', ...stats });
      break;
    case 'digest':
      send({ type: 'digest', versions: Object.fromEntries([...versions].map(([n, r]) => [n, Object.fromEntries(r)])) });
      break;
    case 'close':
      closing = true;
      for (const ws of sockets) ws.terminate();
      process.exit(0);
  }
});
