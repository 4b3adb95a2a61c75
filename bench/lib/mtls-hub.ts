/**
 * @module
 * A bare CloudHub for bench/cloudhub-mtls.ts: a child process (forked with an IPC channel,
 * bundled first so no TypeScript loader sits in the measured process) that runs one CloudHub on
 * 127.0.0.1, port 0, in a Beehive of its own, logging at warn (JSON lines on stderr). No
 * controllers, no Kubernetes API: what is measured is CloudHub and its sessions.
 *
 * Commands:
 * - `{ cmd: 'start', transport: 'mtls', tls: { cert, key, ca } }` → CloudHub with those
 *   credentials (nodes named by their client certificate); `{ cmd: 'start', transport: 'plain' }`
 *   → `insecurePlainWebSocket: true` (nodes name themselves). Replies `{ type: 'ready', url }`.
 * - `{ cmd: 'start', transport: 'bare-tls', requestCert, tls }` → no CloudHub: a bare `node:tls`
 *   server (no HTTP, no WebSocket) with the same credentials that holds every connection, asking
 *   for a client certificate or not: the control that shows what Node's TLS itself costs.
 * - `{ cmd: 'mem' }` → full GCs until the heap settles (needs --expose-gc), then
 *   `{ type: 'mem', connected, heapUsed, external, arrayBuffers }`; the parent reads
 *   /proc/PID/status itself.
 * - `{ cmd: 'stop' }` → stops CloudHub and exits.
 */
import { subscribe } from 'node:diagnostics_channel';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { createCloudHub, type CloudHubTlsCredentials } from '../../cloud/cloudhub/index.js';
import { Beehive } from '../../shared/beehive/index.js';
import { createLogger } from '../../shared/log/index.js';

export type HubTransportKind = 'mtls' | 'plain';

export type HubCommand =
  | { cmd: 'start'; transport: 'mtls'; tls: CloudHubTlsCredentials }
  | { cmd: 'start'; transport: 'plain' }
  | { cmd: 'start'; transport: 'bare-tls'; requestCert: boolean; tls: CloudHubTlsCredentials }
  | { cmd: 'mem' }
  | { cmd: 'stop' };

export interface HubMemReply {
  type: 'mem';
  connected: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

const send = (m: unknown): void => {
  process.send?.(m);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Full GCs until heapUsed stops shrinking (at most 6). */
async function settle(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return;
  let last = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 6; i++) {
    gc();
    await sleep(150);
    const used = process.memoryUsage().heapUsed;
    if (last - used < 64 * 1024) break;
    last = used;
  }
}

const log = createLogger({ level: 'warn', format: 'json' });
let bee: Beehive | undefined;
let connected = 0;
const bare: TLSSocket[] = [];
subscribe('ledge:cloudhub:connected', () => void connected++);
subscribe('ledge:cloudhub:disconnected', () => void connected--);

function startBare(c: Extract<HubCommand, { transport: 'bare-tls' }>): void {
  // rejectUnauthorized: false as CloudHub's server (the WebSocket upgrade checks `authorized`); the generator's certificates verify anyway.
  const server = createTlsServer({ cert: c.tls.cert, key: c.tls.key, ca: c.tls.ca, requestCert: c.requestCert, rejectUnauthorized: false });
  server.on('secureConnection', (s) => {
    bare.push(s);
    connected++;
    s.on('error', () => {});
    s.on('close', () => void connected--);
  });
  server.listen(0, '127.0.0.1', () => {
    const a = server.address() as { port: number };
    send({ type: 'ready', url: `tls://127.0.0.1:${a.port}`, transport: 'bare-tls', pid: process.pid });
  });
}

async function start(c: Extract<HubCommand, { cmd: 'start' }>): Promise<void> {
  if (c.transport === 'bare-tls') return startBare(c);
  const hub = createCloudHub(
    {
      host: '127.0.0.1',
      port: 0,
      ...(c.transport === 'mtls' ? { tls: c.tls } : { insecurePlainWebSocket: true }),
    },
    { log },
  );
  bee = new Beehive({ log });
  bee.register(hub);
  bee.start();
  await hub.ready();
  send({ type: 'ready', url: hub.url, transport: hub.transport, pid: process.pid });
}

process.on('message', (raw) => {
  const c = raw as HubCommand;
  if (c.cmd === 'start') {
    start(c).catch((err: unknown) => {
      process.stderr.write(`mtls-hub failed to start: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    });
  } else if (c.cmd === 'mem') {
    void settle().then(() => {
      const m = process.memoryUsage();
      const reply: HubMemReply = { type: 'mem', connected, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
      send(reply);
    });
  } else if (c.cmd === 'stop') {
    setTimeout(() => process.exit(0), 5000).unref();
    void (bee ? bee.stop() : Promise.resolve()).finally(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'spawned', pid: process.pid });
