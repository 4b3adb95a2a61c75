/**
 * MetaServer test helpers: an in-memory MetaView that emits changes like MetaManager does, a
 * MetaServer started on a free loopback port through Beehive, and an HTTP client for JSON
 * requests and watch streams (bounded waits only).
 */
import { request } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Beehive } from '../../shared/beehive/index.js';
import { createLogger, type Logger } from '../../shared/log/index.js';
import type { MetaChange, MetaView, StoredObject } from '../../edge/metamanager/index.js';
import { createMetaServer, type MetaServer, type MetaServerInit } from '../../edge/metaserver/index.js';
import { eventually, within } from '../helpers/process.js';
import * as k8s from '@kubernetes/client-node';

/** An in-memory store view: `put`/`delete` apply and notify synchronously, as MetaManager does after a durable write. */
export class FakeView implements MetaView {
  private readonly objects = new Map<string, StoredObject>();
  private readonly listeners = new Set<(c: MetaChange) => void>();
  private open: boolean;
  private readonly opened: Promise<void>;
  private resolveOpened!: () => void;

  constructor(ready = true) {
    this.open = ready;
    this.opened = new Promise<void>((r) => (this.resolveOpened = r));
    if (ready) this.resolveOpened();
  }

  get ready(): boolean {
    return this.open;
  }

  markReady(): void {
    this.open = true;
    this.resolveOpened();
  }

  get(resource: string): StoredObject | undefined {
    return this.open ? this.objects.get(resource) : undefined;
  }

  list(prefix = ''): StoredObject[] {
    return this.open ? [...this.objects.values()].filter((o) => o.resource.startsWith(prefix)) : [];
  }

  listType(type: string): StoredObject[] {
    return this.list().filter((o) => o.resource.split('/')[1] === type);
  }

  subscribe(listener: (c: MetaChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  whenReady(): Promise<void> {
    return this.opened;
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  /** Stores `value` at `resource` (e.g. `default/configmap/a`) and notifies. */
  put(resource: string, value: Record<string, unknown>, resourceVersion?: string): void {
    const rv = resourceVersion ?? String(((value.metadata as { resourceVersion?: string } | undefined)?.resourceVersion ?? '1') || '1');
    this.objects.set(resource, { resource, value, resourceVersion: rv });
    for (const l of this.listeners) l({ op: 'put', resource, value, resourceVersion: rv });
  }

  delete(resource: string): void {
    if (!this.objects.delete(resource)) return;
    for (const l of this.listeners) l({ op: 'delete', resource });
  }
}

export interface ObjectOptions {
  labels?: Record<string, string>;
  rv?: string;
  uid?: string;
}

export function configMap(namespace: string, name: string, data: Record<string, string>, o: ObjectOptions = {}): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace, uid: o.uid ?? `uid-cm-${namespace}-${name}`, resourceVersion: o.rv ?? '1', ...(o.labels ? { labels: o.labels } : {}) },
    data,
  };
}

export function pod(namespace: string, name: string, nodeName: string, o: ObjectOptions & { phase?: string } = {}): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, uid: o.uid ?? `uid-pod-${namespace}-${name}`, resourceVersion: o.rv ?? '1', ...(o.labels ? { labels: o.labels } : {}) },
    spec: { nodeName, containers: [{ name: 'app', image: 'busybox' }] },
    status: { phase: o.phase ?? 'Running' },
  };
}

export interface RunningServer {
  server: MetaServer;
  bee: Beehive;
  url: string;
  adminToken: string;
  stop(): Promise<void>;
}

/** Starts a MetaServer module (port 0) on its own Beehive and waits until it serves the view. */
export async function startServer(view: MetaView, init: MetaServerInit, log: Logger = createLogger({ level: 'warn' })): Promise<RunningServer> {
  const server = createMetaServer({ port: 0, ...init }, view, log);
  const bee = new Beehive({ log });
  bee.register(server);
  bee.start();
  const addr = await within(server.whenListening(), 10_000, 'MetaServer to listen');
  const url = `http://${addr.host}:${addr.port}`;
  if (view.ready) await eventually(async () => (await fetch(`${url}/readyz`)).status === 200, 10_000, 'MetaServer ready');
  const adminToken = readFileSync(join(init.dataDir, 'metaserver', 'admin.token'), 'utf8').trim();
  return { server, bee, url, adminToken, stop: () => bee.stop() };
}

export interface JsonResponse<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
}

/** A JSON request (bearer `token` if given). */
export async function getJson<T = Record<string, unknown>>(url: string, token?: string, init: RequestInit = {}): Promise<JsonResponse<T>> {
  const headers = new Headers(init.headers);
  if (token !== undefined) headers.set('Authorization', `Bearer ${token}`);
  const res = await fetch(url, { ...init, headers, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let body: T;
  try {
    body = JSON.parse(text) as T;
  } catch {
    body = { text } as T;
  }
  return { status: res.status, headers: res.headers, body };
}

export interface WatchEvent {
  type: string;
  object: {
    kind?: string;
    metadata?: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
    code?: number;
    reason?: string;
    [k: string]: unknown;
  };
}

export interface WatchStream {
  status: number;
  events: WatchEvent[];
  /** Waits until at least `n` events arrived (fails after `timeoutMs`). */
  waitFor(n: number, timeoutMs?: number): Promise<WatchEvent[]>;
  /** Resolves 'end' when the server ended the stream cleanly, 'error' when the connection broke. */
  ended: Promise<'end' | 'error'>;
  close(): void;
}

/** Opens a watch stream (`?watch=true` is added) and parses its JSON lines. */
export function openWatch(url: string, token?: string): Promise<WatchStream> {
  return within(
    new Promise<WatchStream>((resolve, reject) => {
      const u = new URL(url);
      if (!u.searchParams.has('watch')) u.searchParams.set('watch', 'true');
      const req = request(u, { headers: token ? { Authorization: `Bearer ${token}` } : {} }, (res) => {
        const events: WatchEvent[] = [];
        const waiters = new Set<() => void>();
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line.trim()) events.push(JSON.parse(line) as WatchEvent);
          }
          for (const w of waiters) w();
        });
        const ended = new Promise<'end' | 'error'>((r) => {
          res.once('end', () => r('end'));
          res.once('error', () => r('error'));
          res.once('aborted', () => r('error'));
          req.once('error', () => r('error'));
        });
        resolve({
          status: res.statusCode ?? 0,
          events,
          ended,
          close: () => req.destroy(),
          waitFor: (n, timeoutMs = 10_000) =>
            new Promise<WatchEvent[]>((done, fail) => {
              const timer = setTimeout(() => {
                waiters.delete(check);
                fail(
                  new Error(
                    `timed out after ${timeoutMs} ms waiting for ${n} watch events; have ${events.length}: ${JSON.stringify(events.map((e) => `${e.type} ${e.object.metadata?.name ?? ''}`))}`,
                  ),
                );
              }, timeoutMs);
              const check = () => {
                if (events.length < n) return;
                clearTimeout(timer);
                waiters.delete(check);
                done(events);
              };
              waiters.add(check);
              check();
            }),
        });
      });
      req.on('error', reject);
      req.end();
    }),
    10_000,
    'the watch response',
  );
}

/** A KubeConfig for MetaServer at `url` with a bearer token (client-node refuses plain http:// unless skipTLSVerify is set). */
export function metaServerKubeConfig(url: string, token: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'edge', server: url, skipTLSVerify: true }],
    users: [{ name: 'edge-admin', token }],
    contexts: [{ name: 'edge', cluster: 'edge', user: 'edge-admin' }],
    currentContext: 'edge',
  });
  return kc;
}
