/**
 * Event-loop delay of the local control plane and of CloudHub while the worst requests found by
 * the hardening review (issue "survive hostile and heavy input") are sent at them, next to idle.
 *
 * Two child processes, each measuring its own loop with `perf_hooks.monitorEventLoopDelay`
 * (bench/lib/eld.ts, 10 ms resolution, reset at the start of each phase): the control plane
 * (bench/lib/apiserver-host.ts: TLS, token, fsync) and CloudCore (bench/lib/cloud-server.ts:
 * CloudHub on ws://). Each phase sends one kind of hostile input for a bounded number of rounds,
 * then reads the loop's p50/p99/max over the phase and the process's RSS. The outcome column says
 * what the server answered (HTTP status counts, or how the session ended): every hostile request
 * should be refused, quickly, with the loop staying close to idle.
 *
 * Run:  node --import tsx bench/event-loop.bench.ts     (about 3 minutes)
 * Writes bench/results/event-loop.json. Reports; never fails on a missed target.
 */
import { Agent, request } from 'node:https';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { forkTracked, killAll, root, sleep, stopChild, waitMessage, type Tracked } from './lib/children.js';
import type { EldReply } from './lib/eld.js';
import { MiB } from './lib/rss.js';
import { Group, ModuleName, NODE_NAME_HEADER, Operation, SUBPROTOCOL, buildResource, createCborCodec, newMessage } from '../shared/protocol/index.js';

const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? 5000);

interface Row {
  server: 'control plane' | 'CloudHub';
  phase: string;
  outcome: string;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  rssMiB: number;
  phaseMs: number;
}
const rows: Row[] = [];

async function phase(host: Tracked, server: Row['server'], name: string, fn: () => Promise<string>): Promise<void> {
  host.child.send({ cmd: 'eld-reset' });
  await waitMessage(host, (m) => m.type === 'eld-reset', 10_000, 'eld reset');
  const t0 = performance.now();
  let outcome: string;
  try {
    outcome = await fn();
  } catch (err) {
    outcome = `error: ${(err as Error).message}`;
  }
  const phaseMs = Math.round(performance.now() - t0);
  host.child.send({ cmd: 'eld' });
  const e = await waitMessage<EldReply>(host, (m) => m.type === 'eld', 60_000, 'eld');
  const row: Row = { server, phase: name, outcome, p50Ms: e.p50Ms, p99Ms: e.p99Ms, maxMs: e.maxMs, rssMiB: +(e.rss / MiB).toFixed(1), phaseMs };
  rows.push(row);
  process.stderr.write(`${server} / ${name}: ${outcome}; p99 ${row.p99Ms} ms, max ${row.maxMs} ms, RSS ${row.rssMiB} MiB (${phaseMs} ms)\n`);
}

/** Counts of each answer, e.g. "422×20". */
function tally(codes: (number | string)[]): string {
  const m = new Map<string, number>();
  for (const c of codes) m.set(String(c), (m.get(String(c)) ?? 0) + 1);
  return [...m].map(([k, v]) => `${k}×${v}`).join(', ');
}

// ------------------------------------------------------------------ control plane

async function controlPlane(): Promise<void> {
  const host = forkTracked(join(root, 'bench/lib/apiserver-host.ts'), [], ['--import', 'tsx']);
  try {
    const ready = await waitMessage<{ url: string; token: string; caCertPem: string }>(host, (m) => m.type === 'ready', 60_000, 'control plane ready');
    const agent = new Agent({ keepAlive: true, maxSockets: 16, ca: ready.caCertPem });
    const call = (method: string, path: string, body?: string | Buffer, contentType = 'application/json'): Promise<{ status: number; text: string }> =>
      new Promise((resolve) => {
        const req = request(
          new URL(path, ready.url),
          {
            method,
            agent,
            headers: { authorization: `Bearer ${ready.token}`, ...(body !== undefined ? { 'content-type': contentType, 'content-length': Buffer.byteLength(body) } : {}) },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', () => resolve({ status: -1, text: '' }));
          },
        );
        req.setTimeout(120_000, () => req.destroy(new Error('timeout')));
        req.on('error', (err) => resolve({ status: -1, text: err.message }));
        req.end(body);
      });
    const CMS = '/api/v1/namespaces/default/configmaps';

    await phase(host, 'control plane', 'idle', async () => {
      await sleep(IDLE_MS);
      return `${IDLE_MS / 1000} s`;
    });

    await call('POST', CMS, JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'target' }, data: { a: 'x' } }));
    await phase(host, 'control plane', 'JSON Patch: 24 doubling copy ops (1.3 KB), ×20', async () => {
      const ops: unknown[] = [{ op: 'add', path: '/doubling', value: ['x'.repeat(1000)] }];
      for (let i = 0; i < 24; i++) ops.push({ op: 'copy', from: '/doubling', path: '/doubling/-' });
      const body = JSON.stringify(ops);
      const codes: number[] = [];
      for (let i = 0; i < 20; i++) codes.push((await call('PATCH', `${CMS}/target`, body, 'application/json-patch+json')).status);
      return `${body.length} B each → ${tally(codes)}`;
    });

    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'widgets.bench.ledge.io' },
      spec: {
        group: 'bench.ledge.io',
        scope: 'Namespaced',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: 'object',
                properties: {
                  spec: {
                    type: 'object',
                    properties: {
                      name: { type: 'string', pattern: '^(a+)+$' },
                      items: {
                        type: 'array',
                        items: {
                          type: 'object',
                          properties: {
                            mode: { type: 'string', default: 'auto' },
                            tags: { type: 'object', default: { a: 'x'.repeat(200) }, additionalProperties: { type: 'string' } },
                          },
                        },
                      },
                    },
                  },
                },
              },
            },
          },
        ],
      },
    };
    await call('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', JSON.stringify(crd));
    // Discovery of the new group can lag its creation by a moment.
    for (let i = 0; i < 50 && (await call('GET', '/apis/bench.ledge.io/v1/namespaces/default/widgets')).status !== 200; i++) await sleep(100);
    const WIDGETS = '/apis/bench.ledge.io/v1/namespaces/default/widgets';
    await phase(host, 'control plane', 'CRD pattern ^(a+)+$ against 182 bytes, ×20', async () => {
      const codes: number[] = [];
      for (let i = 0; i < 20; i++)
        codes.push(
          (
            await call(
              'POST',
              WIDGETS,
              JSON.stringify({ apiVersion: 'bench.ledge.io/v1', kind: 'Widget', metadata: { name: `redos-${i}` }, spec: { name: `${'a'.repeat(181)}!` } }),
            )
          ).status,
        );
      return tally(codes);
    });
    await phase(host, 'control plane', 'custom resource with schema defaults (6 KB, 1,000 items), ×10', async () => {
      const codes: number[] = [];
      const items = Array.from({ length: 1000 }, () => ({}));
      for (let i = 0; i < 10; i++)
        codes.push((await call('POST', WIDGETS, JSON.stringify({ apiVersion: 'bench.ledge.io/v1', kind: 'Widget', metadata: { name: `defaults-${i}` }, spec: { items } }))).status);
      return tally(codes);
    });

    await phase(host, 'control plane', 'strategic merge patch, 2.8 MB (24,000 Service ports merged by key), ×3', async () => {
      const ports = (v: string, n: number) =>
        Array.from({ length: n }, (_, i) => ({ name: `p${i}-${v}`, port: i + 1, targetPort: i + 1, protocol: 'TCP', appProtocol: `x-${v}-${'y'.repeat(30)}` }));
      await call('POST', '/api/v1/namespaces/default/services', JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'smp' }, spec: { ports: ports('a', 100) } }));
      const codes: number[] = [];
      let bytes = 0;
      for (let i = 0; i < 3; i++) {
        const body = JSON.stringify({ spec: { ports: ports(`r${i}`, 24_000) } });
        bytes = body.length;
        codes.push((await call('PATCH', '/api/v1/namespaces/default/services/smp', body, 'application/strategic-merge-patch+json')).status);
      }
      return `${(bytes / 1e6).toFixed(1)} MB each → ${tally(codes)}`;
    });

    await phase(host, 'control plane', 'JSON nested 100,000 deep, ×20', async () => {
      const body = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"data":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
      const codes: number[] = [];
      for (let i = 0; i < 20; i++) codes.push((await call('POST', CMS, body)).status);
      return tally(codes);
    });

    // ConfigMaps are limited to 1 MiB (as in Kubernetes): the 2.9 MB ones of the review are refused outright.
    await phase(host, 'control plane', 'a 2.9 MB ConfigMap, ×5', async () => {
      const body = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'huge' }, data: { blob: 'z'.repeat(2.9 * 1024 * 1024) } });
      const codes: number[] = [];
      for (let i = 0; i < 5; i++) codes.push((await call('POST', CMS, body)).status);
      return tally(codes);
    });
    await phase(host, 'control plane', '40 updates of a 0.9 MB ConfigMap, 20 watches (10 never read)', async () => {
      const big = (i: number) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'big' }, data: { blob: `${i}-${'z'.repeat(900 * 1024)}` } });
      await call('POST', CMS, big(0));
      const watches: { destroy(): void }[] = [];
      for (let i = 0; i < 20; i++) {
        const reader = i % 2 === 0;
        const req = request(
          new URL(`${CMS}?watch=true&fieldSelector=metadata.name%3Dbig`, ready.url),
          { ca: ready.caCertPem, headers: { authorization: `Bearer ${ready.token}` } },
          (res) => {
            if (reader) res.resume();
            else res.socket.pause();
          },
        );
        req.on('error', () => {});
        req.end();
        watches.push(req);
      }
      const open = async () => {
        host.child.send({ cmd: 'watches' });
        return (await waitMessage<{ open: number }>(host, (m) => m.type === 'watches', 10_000, 'watch count')).open;
      };
      for (let i = 0; i < 50 && (await open()) < 20; i++) await sleep(100);
      const before = await open();
      const codes: number[] = [];
      for (let i = 1; i <= 40; i++) codes.push((await call('PUT', `${CMS}/big`, big(i))).status);
      // Stalled watchers are cut off once over their backlog bound for a grace period (5 s).
      let after = await open();
      for (let i = 0; i < 100 && after > before - 10; i++) {
        await sleep(100);
        after = await open();
      }
      for (const w of watches) w.destroy();
      const cutByServer = before - after;
      return `${tally(codes)}; watches the server cut off: ${cutByServer} of ${before}`;
    });
    agent.destroy();
  } finally {
    await stopChild(host, { cmd: 'stop' }, 10_000);
  }
}

// ------------------------------------------------------------------ CloudHub

async function cloudHub(): Promise<void> {
  const host = forkTracked(join(root, 'bench/lib/cloud-server.ts'), [], ['--import', 'tsx']);
  const fleet = forkTracked(join(root, 'bench/lib/sim-edge.ts'), [], ['--import', 'tsx']);
  try {
    const ready = await waitMessage<{ port: number }>(host, (m) => m.type === 'ready', 30_000, 'CloudCore ready');
    const url = `ws://127.0.0.1:${ready.port}/v1/edge`;
    const codec = createCborCodec();
    fleet.child.send({ cmd: 'connect', url, names: Array.from({ length: 100 }, (_, i) => `honest-${i}`), concurrency: 20, handshakeTimeoutMs: 10_000 });
    await waitMessage(fleet, (m) => m.type === 'connected', 60_000, 'fleet connected');

    await phase(host, 'CloudHub', 'idle, 100 sessions', async () => {
      await sleep(IDLE_MS);
      return `${IDLE_MS / 1000} s`;
    });

    /** One session that floods `frame` for `ms` without ever reading. */
    const flood = (name: string, frame: Buffer, ms: number): Promise<string> =>
      new Promise((resolve) => {
        const ws = new WebSocket(url, SUBPROTOCOL, { headers: { [NODE_NAME_HEADER]: name }, perMessageDeflate: false });
        let sent = 0;
        let done = false;
        const finish = (why: string) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          ws.terminate();
          resolve(`${sent} frames sent; ${why}`);
        };
        const timer = setTimeout(() => finish('session still open at the end of the phase'), ms);
        ws.on('open', () => {
          (ws as unknown as { _socket: { pause(): void } })._socket.pause();
          const pump = () => {
            if (done || ws.readyState !== WebSocket.OPEN) return;
            while (ws.bufferedAmount < 1024 * 1024) {
              ws.send(frame);
              sent++;
            }
            setImmediate(pump);
          };
          pump();
        });
        ws.on('close', (code) => finish(`closed by CloudHub with ${code}`));
        ws.on('error', () => {});
      });
    const keepalive = Buffer.from(
      codec.encode(newMessage({ source: ModuleName.EdgeHub, group: Group.Hub, operation: Operation.Keepalive, resource: '', content: { t: Date.now() } })),
    );
    await phase(host, 'CloudHub', 'keepalive flood from a peer that never reads, up to 45 s', () => flood('flooder-1', keepalive, 45_000));
    const unknown = Buffer.from(
      codec.encode(
        newMessage({ source: ModuleName.EdgeHub, group: Group.User, operation: 'no-such-op' as Operation, resource: buildResource('default', 'widget', 'w'), content: { x: 1 } }),
      ),
    );
    await phase(host, 'CloudHub', 'unknown-operation flood from a peer that never reads, up to 45 s', () => flood('flooder-2', unknown, 45_000));

    await phase(host, 'CloudHub', '5,000 sessions under random names, each closed at once', async () => {
      let ok = 0;
      let refused = 0;
      for (let i = 0; i < 5000; i += 50) {
        await Promise.all(
          Array.from(
            { length: 50 },
            (_, j) =>
              new Promise<void>((resolve) => {
                const ws = new WebSocket(url, SUBPROTOCOL, { headers: { [NODE_NAME_HEADER]: `random-${i + j}-${Math.random().toString(36).slice(2)}` }, perMessageDeflate: false });
                ws.on('open', () => {
                  ok++;
                  ws.close();
                });
                ws.on('unexpected-response', () => void refused++);
                ws.on('error', () => {});
                ws.on('close', () => resolve());
              }),
          ),
        );
      }
      // A real node can still connect afterwards.
      const honest = await new Promise<string>((resolve) => {
        const ws = new WebSocket(url, SUBPROTOCOL, { headers: { [NODE_NAME_HEADER]: 'late-honest' }, perMessageDeflate: false });
        ws.on('open', () => {
          ws.close();
          resolve('a new real node connected afterwards');
        });
        ws.on('unexpected-response', (_req, res) => resolve(`a new real node was refused (${res.statusCode})`));
        ws.on('error', (err) => resolve(`a new real node failed: ${err.message}`));
      });
      return `${ok} opened, ${refused} refused; ${honest}`;
    });

    await phase(host, 'CloudHub', '500 sessions each sending one garbage frame', async () => {
      const codes: number[] = [];
      for (let i = 0; i < 500; i += 50) {
        await Promise.all(
          Array.from(
            { length: 50 },
            (_, j) =>
              new Promise<void>((resolve) => {
                const ws = new WebSocket(url, SUBPROTOCOL, { headers: { [NODE_NAME_HEADER]: `garbage-${i + j}` }, perMessageDeflate: false });
                ws.on('open', () => ws.send(Buffer.from([0xff, 0x00, 0x13, 0x37, 0x42])));
                ws.on('close', (code) => {
                  codes.push(code);
                  resolve();
                });
                ws.on('error', () => {});
              }),
          ),
        );
      }
      return `close codes ${tally(codes)}`;
    });

    fleet.child.send({ cmd: 'stats' });
    const st = await waitMessage<{ open: number }>(fleet, (m) => m.type === 'stats', 10_000, 'fleet stats');
    rows.push({
      server: 'CloudHub',
      phase: 'honest sessions still open at the end',
      outcome: `${st.open} of 100`,
      p50Ms: Number.NaN,
      p99Ms: Number.NaN,
      maxMs: Number.NaN,
      rssMiB: Number.NaN,
      phaseMs: 0,
    });
  } finally {
    await stopChild(fleet, { cmd: 'close' }, 5000);
    await stopChild(host, { cmd: 'stop' }, 10_000);
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  await controlPlane();
  await cloudHub();
  const f = (n: number) => (Number.isNaN(n) ? '—' : String(n));
  console.log('\nEvent-loop delay under hostile input (monitorEventLoopDelay, 10 ms resolution; ms of delay beyond the 10 ms timer, per phase)\n');
  console.log('| server | phase | outcome | p50 ms | p99 ms | max ms | RSS MiB after |');
  console.log('|---|---|---|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.server} | ${r.phase} | ${r.outcome} | ${f(r.p50Ms)} | ${f(r.p99Ms)} | ${f(r.maxMs)} | ${f(r.rssMiB)} |`);
  console.log(`\nNode ${process.version}, ${os.cpus().length} cores, load avg ${os.loadavg()[0]!.toFixed(2)}. Took ${((Date.now() - started) / 1000).toFixed(0)} s.`);
  const out = join(root, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, 'event-loop.json'),
    `${JSON.stringify(
      {
        bench: 'event-loop',
        date: new Date().toISOString(),
        machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAvg1: os.loadavg()[0] },
        rows,
      },
      null,
      2,
    )}\n`,
  );
  console.log('wrote bench/results/event-loop.json');
}

main()
  .catch((err) => {
    process.stderr.write(`event-loop bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => killAll());
