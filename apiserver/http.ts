/**
 * @module
 * The HTTP face of the apiserver: authentication, routing of Kubernetes REST paths,
 * body decoding (JSON/YAML/protobuf, 3 MiB limit), list with selectors and pagination, watch
 * streams (bookmarks, timeouts, 410 as an ERROR event), Table output, discovery, and the
 * node proxy's pod subresources (log, exec, attach, portforward: ./nodeproxy.ts). Upgrade
 * requests (kubectl exec) go through the same authentication and routing as any other.
 */
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { parse as parseYaml } from 'yaml';
import type { Logger } from '../shared/log/index.js';
import { SlowPeerError } from '../shared/errors/index.js';
import type { Authenticator } from './authn.js';
import { ApiError, errors, failureStatus } from './errors.js';
import * as discovery from './discovery.js';
import { openApiGroupVersion, openApiRoot } from './openapi.js';
import { apiVersionOf, type DeleteOptions, type PatchType, type Rest } from './rest.js';
import { decodeProtobufObject, ProtobufError, ProtobufUnsupportedError, PROTOBUF_MEDIA_TYPE, type DecodedProtobuf } from './protobuf/index.js';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import type { StoreEvent } from './store.js';
import { WatchBuffer, sharedEventLine, type WatchBufferLimits, type WatchChunk } from './watch-buffer.js';
import { scaleToTable, toTable, type IncludeObject } from './table.js';
import { jsonPatch, mergePatch, strategicMergePatch } from './patch.js';
import { isScalable, scaledObject, scaleOf } from './workloads-api.js';
import { isNodeProxySubresource, type NodeProxy, type UpgradeContext } from './nodeproxy.js';
import { jsonDepth, MAX_BODY_BYTES, MAX_JSON_DEPTH, RESOURCE_VERSION_WAIT_MS } from './limits.js';
import type { Json, KObject, ResourceType } from './types.js';

export { MAX_BODY_BYTES };

export interface HttpOptions {
  rest: Rest;
  log: Logger;
  /** Decides every request's identity on its own evidence (client certificate, token); see authn.ts. */
  authenticator: Authenticator;
  bookmarkIntervalMs: number;
  /** Bounds of each watcher's backlog; a watcher that cannot keep up is cut off (watch-buffer.ts). */
  watchLimits?: Partial<WatchBufferLimits>;
  /** For /api's serverAddressByClientCIDRs. */
  serverAddress: () => string;
  /** How long a list/watch from a future resourceVersion waits for it (default RESOURCE_VERSION_WAIT_MS). */
  resourceVersionWaitMs?: number;
  /** Serves pods/log, exec, attach, portforward; without it they are unknown resources (404). */
  nodeProxy?: NodeProxy;
}

interface Route {
  group: string;
  version: string;
  type: ResourceType;
  namespace?: string;
  name?: string;
  sub: string;
  watchPrefix: boolean;
}

const ANONYMOUS_PATHS = new Set(['/healthz', '/livez', '/readyz', '/version']);

function send(res: ServerResponse, code: number, body: unknown, contentType = 'application/json'): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' });
  res.end(text);
}

function sendError(res: ServerResponse, err: ApiError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  send(res, err.httpCode, err.toStatus());
}

function wantsTable(req: IncomingMessage): boolean {
  const a = req.headers.accept ?? '';
  return /as=Table/.test(a) && /g=meta\.k8s\.io/.test(a);
}

function boolParam(v: string | null): boolean {
  return v === 'true' || v === '1';
}

export class HttpApi {
  private readonly watches = new Set<ServerResponse>();
  /** Requests that came through the server's 'upgrade' event, with their raw connection. */
  private readonly upgrades = new WeakMap<IncomingMessage, UpgradeContext>();
  /** Connections of upgrade requests still open (the server's close() does not end them). */
  private readonly upgradeSockets = new Set<Duplex>();

  constructor(private readonly o: HttpOptions) {}

  get activeWatches(): number {
    return this.watches.size;
  }

  /** Ends every watch (server shutdown). */
  closeWatches(): void {
    for (const w of this.watches) w.end();
    this.watches.clear();
  }

  /** Ends every upgraded connection and node proxy stream (server shutdown). */
  closeUpgrades(): void {
    this.o.nodeProxy?.closeAll();
    for (const s of this.upgradeSockets) s.destroy();
    this.upgradeSockets.clear();
  }

  /**
   * The server's 'upgrade' listener. The request is dispatched like any other, its answer
   * written through a ServerResponse on the raw connection (which is closed after it), unless
   * the node proxy takes the connection over (exec, attach, portforward).
   */
  handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    // Node removed its own listeners from an upgraded socket: an error would otherwise be unhandled.
    socket.on('error', () => socket.destroy());
    this.upgradeSockets.add(socket);
    socket.once('close', () => this.upgradeSockets.delete(socket));
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket as Socket);
    res.once('finish', () => {
      res.detachSocket(socket as Socket);
      socket.end();
    });
    this.upgrades.set(req, { socket, head });
    this.handle(req, res);
  };

  handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.dispatch(req, res).catch((err: unknown) => {
      if (err instanceof ApiError) return sendError(res, err);
      this.o.log.error('request failed', { err, method: req.method, url: req.url });
      sendError(res, errors.internal((err as Error)?.message ?? String(err)));
    });
  };

  /** Never `socket.authorized` (true on a resumed TLS 1.3 session without a certificate): see authn.ts. */
  private authenticate(req: IncomingMessage): boolean {
    return this.o.authenticator.authenticate(req) !== undefined;
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = parseRequestUrl(req);
    const path = url.pathname.replace(/\/+$/, '') || '/';
    if (!ANONYMOUS_PATHS.has(path) && !this.authenticate(req)) {
      req.resume();
      throw errors.unauthorized();
    }
    const method = req.method ?? 'GET';
    if (path === '/healthz' || path === '/livez' || path === '/readyz') return send(res, 200, 'ok', 'text/plain; charset=utf-8');
    if (path === '/version') return send(res, 200, discovery.versionInfo());
    const seg = decodePathSegments(req, path);
    const reg = this.o.rest.registry;
    if (path === '/openapi/v2') {
      // An empty protobuf Document (zero bytes): old kubectl (1.20) needs /openapi/v2 for
      // client-side validation and skips kinds the document does not describe. See openapi.ts.
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': 0 });
      res.end();
      return;
    }
    if (seg[0] === 'openapi' && seg[1] === 'v3') {
      if (seg.length === 2) return send(res, 200, openApiRoot(reg));
      const [g, v] = seg[2] === 'api' && seg.length === 4 ? ['', seg[3]!] : seg[2] === 'apis' && seg.length === 5 ? [seg[3]!, seg[4]!] : [undefined, undefined];
      if (g === undefined || !reg.hasGroupVersion(g, v!)) throw errors.unknownResource();
      return send(res, 200, openApiGroupVersion(reg, g, v!));
    }
    if (seg[0] === 'api' && seg.length === 1) return send(res, 200, discovery.apiVersions(this.o.serverAddress()));
    if (seg[0] === 'apis' && seg.length === 1) return send(res, 200, discovery.groupList(reg));
    if (seg[0] === 'apis' && seg.length === 2) {
      const g = discovery.group(reg, seg[1]!);
      if (!g) throw errors.unknownResource();
      return send(res, 200, g);
    }
    let group: string;
    let version: string;
    let rest: string[];
    if (seg[0] === 'api' && seg.length >= 2) {
      group = '';
      version = seg[1]!;
      rest = seg.slice(2);
    } else if (seg[0] === 'apis' && seg.length >= 3) {
      group = seg[1]!;
      version = seg[2]!;
      rest = seg.slice(3);
    } else {
      req.resume();
      throw errors.unknownResource();
    }
    if (!reg.hasGroupVersion(group, version)) {
      req.resume();
      throw errors.unknownResource();
    }
    if (rest.length === 0) {
      if (method !== 'GET') throw errors.methodNotAllowed();
      return send(res, 200, discovery.resourceList(reg, group, version));
    }
    const route = this.route(group, version, rest);
    if (!route) {
      req.resume();
      throw errors.unknownResource();
    }
    await this.serve(req, res, route, url.searchParams, method);
  }

  private route(group: string, version: string, rest: string[]): Route | undefined {
    const reg = this.o.rest.registry;
    let watchPrefix = false;
    if (rest[0] === 'watch') {
      watchPrefix = true;
      rest = rest.slice(1);
    }
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      const t = reg.lookup(group, version, rest[2]!);
      if (t?.namespaced) {
        if (rest.length > 5) return undefined;
        return { group, version, type: t, namespace: rest[1]!, ...(rest[3] !== undefined ? { name: rest[3] } : {}), sub: rest[4] ?? '', watchPrefix };
      }
    }
    const t = reg.lookup(group, version, rest[0]!);
    if (!t || rest.length > 3) return undefined;
    if (t.namespaced && rest.length > 1) return undefined; // a namespaced object needs /namespaces/{ns}/
    return { group, version, type: t, ...(rest[1] !== undefined ? { name: rest[1] } : {}), sub: rest[2] ?? '', watchPrefix };
  }

  private async serve(req: IncomingMessage, res: ServerResponse, r: Route, q: URLSearchParams, method: string): Promise<void> {
    const rest = this.o.rest;
    const t = r.type;
    const ns = t.namespaced ? r.namespace : '';
    const proxy = this.o.nodeProxy;
    if (proxy && t.storageKey === '/pods' && !r.watchPrefix && r.name !== undefined && r.namespace !== undefined && isNodeProxySubresource(r.sub)) {
      const upgrade = this.upgrades.get(req);
      return proxy.serve(req, res, { sub: r.sub, namespace: r.namespace, name: r.name, query: q, ...(upgrade ? { upgrade } : {}) });
    }
    if (r.sub && !t.subresources.includes(r.sub)) {
      req.resume();
      throw errors.unknownResource();
    }
    const dryRun = q.getAll('dryRun').includes('All');
    const fieldManager = q.get('fieldManager') ?? undefined;
    const strict = q.get('fieldValidation') === 'Strict';
    const writeOpts = { dryRun, strict, ...(fieldManager ? { fieldManager } : {}) };
    const table = wantsTable(req);
    const include = (q.get('includeObject') ?? 'Metadata') as IncludeObject;
    const reply = (code: number, obj: KObject) => {
      if (table) return send(res, code, toTable(t, [rest.viewObj(t, obj)], include, { resourceVersion: obj.metadata.resourceVersion ?? '' }));
      return send(res, code, rest.viewObj(t, obj));
    };
    if (r.watchPrefix && method !== 'GET') throw errors.methodNotAllowed();
    if (r.sub === 'scale' && isScalable(t) && !r.watchPrefix && r.name !== undefined && ns !== undefined) {
      return this.scale(req, res, t, ns, r.name, method, writeOpts, table, include);
    }
    if (t.storageKey === '/bindings') {
      if (method !== 'POST' || r.name !== undefined || ns === undefined) throw errors.methodNotAllowed();
      const b = decodeBody(req, await readBody(req), t) as { metadata?: { name?: unknown } } | null;
      const podName = b && typeof b === 'object' && typeof b.metadata?.name === 'string' ? b.metadata.name : '';
      if (!podName) throw errors.invalid('Binding', '', '', [{ reason: 'FieldValueRequired', message: 'Required value', field: 'metadata.name' }]);
      return send(res, 201, await rest.bind(ns, podName, b));
    }
    switch (method) {
      case 'GET': {
        if (r.name === undefined || r.watchPrefix) {
          if (r.sub) throw errors.unknownResource();
          if (r.watchPrefix || boolParam(q.get('watch'))) return this.watch(req, res, t, ns || undefined, r.name, q, table, include);
          return this.list(req, res, t, ns || undefined, q, table, include);
        }
        if (r.sub === 'binding') throw errors.methodNotAllowed();
        const e = rest.get(t, ns ?? '', r.name);
        if (table) return reply(200, e.obj);
        return send(res, 200, rest.view(t, e));
      }
      case 'POST': {
        const body = await readBody(req);
        if (r.name === undefined) {
          if (ns === undefined) throw errors.methodNotAllowed('a namespace is required to create this resource');
          const result = await rest.create(t, ns, decodeBody(req, body, t), writeOpts);
          return reply(result.code, result.obj);
        }
        if (r.sub === 'binding') {
          const status = await rest.bind(ns ?? '', r.name, decodeBody(req, body, this.o.rest.registry.lookup('', 'v1', 'bindings')));
          return send(res, 201, status);
        }
        throw errors.methodNotAllowed();
      }
      case 'PUT': {
        const body = await readBody(req);
        if (r.name === undefined || ns === undefined || r.sub === 'binding' || r.sub === 'finalize') throw errors.methodNotAllowed();
        const result = await rest.update(t, ns, r.name, decodeBody(req, body, t), r.sub, writeOpts);
        return reply(result.code, result.obj);
      }
      case 'PATCH': {
        const body = await readBody(req);
        if (r.name === undefined || ns === undefined || r.sub === 'binding' || r.sub === 'finalize') throw errors.methodNotAllowed();
        const pt = patchTypeOf(req);
        const patch = pt === 'apply' ? parseYamlBody(body) : parseJsonBody(body);
        const result = await rest.patch(t, ns, r.name, pt, patch, r.sub, { ...writeOpts, force: boolParam(q.get('force')) });
        return reply(result.code, result.obj);
      }
      case 'DELETE': {
        const body = await readBody(req);
        const opts = deleteOptions(body, q, req);
        if (r.sub) throw errors.methodNotAllowed();
        if (r.name === undefined) {
          const label = parseLabelSelector(q.get('labelSelector') ?? undefined);
          const field = parseFieldSelector(q.get('fieldSelector') ?? undefined, t);
          const items = await rest.deleteCollection(t, ns || undefined, (o) => (!label || label(o.metadata.labels)) && (!field || field(o)), opts);
          return send(res, 200, {
            kind: t.listKind,
            apiVersion: apiVersionOf(t),
            metadata: { resourceVersion: String(rest.store.currentRv) },
            items: items.map((o) => rest.viewObj(t, o)),
          });
        }
        if (ns === undefined) throw errors.methodNotAllowed();
        const result = await rest.delete(t, ns, r.name, opts);
        return reply(result.code, result.obj);
      }
      default:
        req.resume();
        throw errors.methodNotAllowed();
    }
  }

  /**
   * `/scale` of deployments and replicasets: an autoscaling/v1 Scale read from the object and,
   * on PUT or PATCH (the patch applied to the Scale), written back as the object's spec.replicas
   * through a normal update (validation, generation, resourceVersion precondition).
   */
  private async scale(
    req: IncomingMessage,
    res: ServerResponse,
    t: ResourceType,
    ns: string,
    name: string,
    method: string,
    opts: { dryRun: boolean; strict: boolean; fieldManager?: string },
    table: boolean,
    include: IncludeObject,
  ): Promise<void> {
    const rest = this.o.rest;
    const reply = (code: number, obj: KObject): void => {
      const scale = scaleOf(obj);
      send(res, code, table ? scaleToTable([scale], include, { resourceVersion: obj.metadata.resourceVersion ?? '' }) : scale);
    };
    if (method === 'GET') return reply(200, rest.get(t, ns, name).obj);
    if (method !== 'PUT' && method !== 'PATCH') {
      req.resume();
      throw errors.methodNotAllowed();
    }
    const body = await readBody(req);
    let scale: unknown;
    if (method === 'PUT') scale = decodeBody(req, body);
    const pt = method === 'PATCH' ? patchTypeOf(req) : undefined;
    const patch = pt === undefined ? undefined : pt === 'apply' ? parseYamlBody(body) : parseJsonBody(body);
    // From here to the store write nothing awaits: the Scale is computed from the object written.
    const cur = rest.get(t, ns, name).obj;
    if (pt !== undefined) {
      const base = scaleOf(cur);
      if (pt === 'json') scale = jsonPatch(base, patch as Json);
      else if (pt === 'merge') scale = mergePatch(base, patch as Json);
      else scale = strategicMergePatch('Scale', base, patch as Json);
    }
    const result = await rest.update(t, ns, name, scaledObject(cur, scale), '', opts);
    return reply(200, result.obj);
  }

  private async list(
    _req: IncomingMessage,
    res: ServerResponse,
    t: ResourceType,
    ns: string | undefined,
    q: URLSearchParams,
    table: boolean,
    include: IncludeObject,
  ): Promise<void> {
    const rest = this.o.rest;
    const store = rest.store;
    // A list at a resourceVersion this store has not reached waits for it, then 504s
    // (kube-apiserver's watch cache: waitUntilFreshAndBlock).
    const wanted = resourceVersionParam(q.get('resourceVersion'));
    if (wanted > store.currentRv && !(await this.awaitResourceVersion(wanted, res, () => store.currentRv))) {
      throw tooLargeResourceVersion(wanted, store.currentRv);
    }
    const label = parseLabelSelector(q.get('labelSelector') ?? undefined);
    const field = parseFieldSelector(q.get('fieldSelector') ?? undefined, t);
    const limitRaw = q.get('limit');
    const limit = limitRaw ? Number(limitRaw) : 0;
    if (limitRaw && (!Number.isInteger(limit) || limit < 0)) throw errors.badRequest(`invalid limit: ${limitRaw}`);
    let listRv = store.currentRv;
    let startAfter: string | undefined;
    const cont = q.get('continue');
    if (cont) {
      let tok: { rv?: unknown; start?: unknown };
      try {
        tok = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { rv?: unknown; start?: unknown };
      } catch {
        throw errors.badRequest('continue key is not valid: illegal base64 data');
      }
      if (typeof tok.rv !== 'number' || typeof tok.start !== 'string')
        throw errors.badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
      if (tok.rv < store.oldestWatchableRv) {
        throw errors.gone(
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results.',
        );
      }
      listRv = tok.rv;
      startAfter = tok.start;
    }
    const rvMatch = q.get('resourceVersionMatch');
    const rvParam = q.get('resourceVersion');
    if (rvMatch === 'Exact' && rvParam && Number(rvParam) !== store.currentRv) {
      throw errors.gone(`too old resource version: ${rvParam} (${store.currentRv})`);
    }
    const entries = store.list(t.storageKey, ns);
    let i = 0;
    if (startAfter !== undefined) {
      // Entries are sorted by `ns/name`; resume after the last key served.
      let lo = 0;
      let hi = entries.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        const k = `${entries[mid]!.obj.metadata.namespace ?? ''}/${entries[mid]!.obj.metadata.name}`;
        if (k <= startAfter) lo = mid + 1;
        else hi = mid;
      }
      i = lo;
    }
    const picked: typeof entries = [];
    let more = false;
    for (; i < entries.length; i++) {
      const e = entries[i]!;
      if (label && !label(e.obj.metadata.labels)) continue;
      if (field && !field(e.obj)) continue;
      if (limit > 0 && picked.length === limit) {
        more = true;
        break;
      }
      picked.push(e);
    }
    const meta: Record<string, unknown> = { resourceVersion: String(listRv) };
    if (more) {
      const last = picked.at(-1)!.obj.metadata;
      meta.continue = Buffer.from(JSON.stringify({ rv: listRv, start: `${last.namespace ?? ''}/${last.name}` })).toString('base64url');
      if (!label && !field) meta.remainingItemCount = entries.length - i;
    }
    if (table)
      return send(
        res,
        200,
        toTable(
          t,
          picked.map((e) => rest.viewObj(t, e.obj)),
          include,
          meta,
        ),
      );
    const body = `{"kind":${JSON.stringify(t.listKind)},"apiVersion":${JSON.stringify(apiVersionOf(t))},"metadata":${JSON.stringify(meta)},"items":[${picked.map((e) => rest.view(t, e)).join(',')}]}`;
    send(res, 200, body);
  }

  /**
   * Resolves true once `current()` reaches `rv`, false after resourceVersionWaitMs or when
   * the client goes away. Woken by the store's durable writes, not by polling.
   */
  private awaitResourceVersion(rv: number, res: ServerResponse, current: () => number): Promise<boolean> {
    if (current() >= rv) return Promise.resolve(true);
    return new Promise((resolve) => {
      let settled = false;
      const done = (ok: boolean): void => {
        if (settled) return;
        settled = true;
        unsubscribe();
        clearTimeout(timer);
        res.off('close', onClose);
        resolve(ok);
      };
      const onClose = (): void => done(false);
      const unsubscribe = this.o.rest.store.subscribeAll(() => {
        if (current() >= rv) done(true);
      });
      const timer = setTimeout(() => done(current() >= rv), this.o.resourceVersionWaitMs ?? RESOURCE_VERSION_WAIT_MS);
      res.on('close', onClose);
    });
  }

  private async watch(
    req: IncomingMessage,
    res: ServerResponse,
    t: ResourceType,
    ns: string | undefined,
    name: string | undefined,
    q: URLSearchParams,
    table: boolean,
    include: IncludeObject,
  ): Promise<void> {
    const rest = this.o.rest;
    const store = rest.store;
    const label = parseLabelSelector(q.get('labelSelector') ?? undefined);
    let field = parseFieldSelector(q.get('fieldSelector') ?? undefined, t);
    if (name !== undefined) {
      // Legacy /watch/.../{name}: same as fieldSelector=metadata.name={name}.
      const f = field;
      field = (o) => o.metadata.name === name && (!f || f(o));
    }
    const match = (o: KObject | undefined): boolean => !!o && (ns === undefined || o.metadata.namespace === ns) && (!label || label(o.metadata.labels)) && (!field || field(o));
    const rvParam = q.get('resourceVersion') ?? '';
    const bookmarks = boolParam(q.get('allowWatchBookmarks'));
    const sendInitial = boolParam(q.get('sendInitialEvents'));
    const timeoutRaw = q.get('timeoutSeconds');
    // Without timeoutSeconds k8s picks a random 30–60 min; so do we.
    const timeoutMs = timeoutRaw ? Math.max(0, Number(timeoutRaw)) * 1000 : (1800 + Math.random() * 1800) * 1000;
    if (rvParam !== '' && !/^\d+$/.test(rvParam)) throw errors.badRequest(`invalid resource version: ${rvParam}`);
    // From a resourceVersion the store has not delivered yet: wait for it, then (like
    // kube-apiserver for errors after the resourceVersion is parsed) a 200 stream with one
    // ERROR event carrying the 504. Unlike k8s we do not hold a plain watch open
    // indefinitely: one store assigns every resourceVersion, so a future one means the
    // client saw another store (e.g. a wiped data directory) and must relist.
    const wanted = resourceVersionParam(rvParam);
    if (wanted > store.durableResourceVersion && !(await this.awaitResourceVersion(wanted, res, () => store.durableResourceVersion))) {
      if (res.destroyed) return;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
      res.end(`{"type":"ERROR","object":${JSON.stringify(tooLargeResourceVersion(wanted, store.durableResourceVersion).toStatus())}}\n`);
      return;
    }

    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    let first = true;
    const line = (type: string, obj: KObject, json?: string, ev?: StoreEvent): WatchChunk => {
      if (table && type !== 'ERROR' && type !== 'BOOKMARK') {
        const tb = toTable(t, [rest.viewObj(t, obj)], include, { resourceVersion: obj.metadata.resourceVersion ?? '' }, !first);
        first = false;
        return `{"type":"${type}","object":${JSON.stringify(tb)}}\n`;
      }
      const build = (): string => `{"type":"${type}","object":${json !== undefined && t.builtin ? json : JSON.stringify(rest.viewObj(t, obj))}}\n`;
      // An event's line is serialised once for all its watchers (not one copy per watcher).
      return ev ? sharedEventLine(ev, `${type} ${apiVersionOf(t)}`, build) : build();
    };
    let dead = false;
    let lastRv = 0;
    // Written only as fast as the client reads; a watcher that falls too far behind is cut off
    // and its connection destroyed (freeing its backlog); the client re-watches.
    const buffer = new WatchBuffer(res, this.o.watchLimits, (info) => {
      this.o.log.warn('watch consumer too slow; cut off', { code: SlowPeerError.code, resource: t.resource, ...info });
      finish();
      res.destroy();
    });
    const write = (s: WatchChunk): void => {
      if (!dead) buffer.push(s);
    };
    const onEvent = (ev: StoreEvent): void => {
      if (ev.rv <= lastRv) return;
      lastRv = ev.rv;
      const now = ev.type !== 'DELETED' && match(ev.obj);
      if (ev.type === 'ADDED') {
        if (now) write(line('ADDED', ev.obj, ev.json, ev));
      } else if (ev.type === 'MODIFIED') {
        const before = ev.prev ? match(ev.prev) : now;
        if (now && before) write(line('MODIFIED', ev.obj, ev.json, ev));
        else if (now) write(line('ADDED', ev.obj, ev.json, ev));
        else if (before) write(line('DELETED', ev.obj, ev.json, ev));
      } else if (match(ev.obj)) {
        write(line('DELETED', ev.obj, ev.json, ev));
      }
    };
    let unsubscribe: (() => void) | undefined;
    let bookmarkTimer: NodeJS.Timeout | undefined;
    let timeoutTimer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (dead) return;
      dead = true;
      unsubscribe?.();
      clearInterval(bookmarkTimer);
      clearTimeout(timeoutTimer);
      this.watches.delete(res);
      buffer.close();
      res.end();
    };
    res.on('close', finish);
    req.on('close', () => {
      if (req.destroyed && !res.writableEnded) finish();
    });
    this.watches.add(res);
    const bookmark = (extra?: Record<string, string>): string =>
      `{"type":"BOOKMARK","object":{"kind":${JSON.stringify(t.kind)},"apiVersion":${JSON.stringify(apiVersionOf(t))},"metadata":{"resourceVersion":"${Math.max(lastRv, store.durableResourceVersion)}"${extra ? `,"annotations":${JSON.stringify(extra)}` : ''}}}}\n`;

    const fromState = rvParam === '' || rvParam === '0' || sendInitial;
    if (fromState) {
      // Current state as synthetic ADDED events, then changes after it.
      const startRv = store.currentRv;
      const entries = store.list(t.storageKey, ns);
      // Serialised one by one as the client reads, not all at once.
      buffer.pushLazy(
        (function* () {
          for (const e of entries) if (match(e.obj)) yield line('ADDED', e.obj, e.json);
        })(),
      );
      lastRv = startRv;
      unsubscribe = store.watch(t.storageKey, startRv, onEvent);
      if (sendInitial && bookmarks) write(bookmark({ 'k8s.io/initial-events-end': 'true' }));
    } else {
      const from = Number(rvParam);
      lastRv = from;
      unsubscribe = store.watch(t.storageKey, from, onEvent);
      if (!unsubscribe) {
        const st = failureStatus(410, 'Expired', `too old resource version: ${from} (${store.oldestWatchableRv})`);
        write(`{"type":"ERROR","object":${JSON.stringify(st)}}\n`);
        finish();
        return;
      }
    }
    if (bookmarks) bookmarkTimer = setInterval(() => write(bookmark()), this.o.bookmarkIntervalMs);
    timeoutTimer = setTimeout(finish, timeoutMs);
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      req.resume();
      reject(errors.tooLarge(MAX_BODY_BYTES));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        over = true;
        chunks.length = 0;
        reject(errors.tooLarge(MAX_BODY_BYTES));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

const PATCH_TYPES: Record<string, PatchType> = {
  'application/json-patch+json': 'json',
  'application/merge-patch+json': 'merge',
  'application/strategic-merge-patch+json': 'strategic',
  'application/apply-patch+yaml': 'apply',
};

/** The patch type of a PATCH's Content-Type; another one (CBOR apply included) is a 415. */
function patchTypeOf(req: IncomingMessage): PatchType {
  const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
  const pt = PATCH_TYPES[ct];
  if (!pt) throw errors.unsupportedMediaType(`the body of the request was in an unknown format - accepted media types include: ${Object.keys(PATCH_TYPES).join(', ')}`);
  return pt;
}

function parseJsonBody(body: Buffer): unknown {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw errors.badRequest(`error decoding patch: ${(err as Error).message}`);
  }
  return boundedDepth(v);
}

function parseYamlBody(body: Buffer): unknown {
  let v: unknown;
  try {
    v = parseYaml(body.toString('utf8'), { maxAliasCount: 100 });
  } catch (err) {
    throw errors.badRequest(`error decoding YAML: ${(err as Error).message}`);
  }
  return boundedDepth(v);
}

/**
 * Refuses a decoded body nested deeper than MAX_JSON_DEPTH (400), before anything
 * recursive (validation, patching, JSON.stringify, structuredClone) touches it.
 */
function boundedDepth<T>(v: T): T {
  if (jsonDepth(v, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw errors.badRequest(`the request body is nested deeper than ${MAX_JSON_DEPTH} levels`);
  return v;
}

/** The request URL; one that cannot be parsed is a 400. */
function parseRequestUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://x');
  } catch {
    req.resume();
    throw errors.badRequest(`invalid request URL ${JSON.stringify((req.url ?? '').slice(0, 200))}`);
  }
}

/** Path segments with %-escapes decoded; a malformed escape (`%zz`, truncated UTF-8) is a 400. */
function decodePathSegments(req: IncomingMessage, path: string): string[] {
  try {
    return path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    req.resume();
    throw errors.badRequest(`invalid %-escape in the request path ${JSON.stringify(path.slice(0, 200))}`);
  }
}

/** A numeric resourceVersion parameter (0 when absent, "0" or not a number). */
function resourceVersionParam(v: string | null): number {
  return v && /^\d+$/.test(v) ? Number(v) : 0;
}

/** kube-apiserver's storage.NewTooLargeResourceVersionError (retry after 1 s). */
function tooLargeResourceVersion(wanted: number, current: number): ApiError {
  return new ApiError(504, 'Timeout', `Timeout: Too large resource version: ${wanted}, current: ${current}`, {
    causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
    retryAfterSeconds: 1,
  });
}

const ACCEPTED_BODY_TYPES = `application/json, application/yaml, ${PROTOBUF_MEDIA_TYPE}`;

/**
 * Decodes a protobuf body (see protobuf/index.ts) into the JSON shape. A kind we have no
 * decoder for is a 415 when it is the kind the URL expects (`expect`); otherwise its
 * bare type is returned so the caller's kind check gives the same 400 as for JSON.
 */
function decodeProtobufBody(body: Buffer, expect?: ResourceType): unknown {
  let d: DecodedProtobuf;
  try {
    d = decodeProtobufObject(body);
  } catch (err) {
    if (err instanceof ProtobufUnsupportedError) throw errors.unsupportedMediaType(`cannot decode the protobuf body exactly: ${err.message}`);
    if (err instanceof ProtobufError) throw errors.badRequest(`error decoding protobuf body: ${err.message}`);
    throw err;
  }
  if (d.object) return boundedDepth(d.object);
  if (!expect || (d.kind === expect.kind && d.apiVersion === apiVersionOf(expect))) {
    throw errors.unsupportedMediaType(
      `${PROTOBUF_MEDIA_TYPE} bodies of kind ${d.kind} (${d.apiVersion}) are not supported by this server; send application/json or application/yaml`,
    );
  }
  return { apiVersion: d.apiVersion, kind: d.kind };
}

/** Decodes a POST/PUT body according to Content-Type; `expect` is the URL's type. */
function decodeBody(req: IncomingMessage, body: Buffer, expect?: ResourceType): unknown {
  const ct = (req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim();
  if (body.length === 0) throw errors.badRequest('the request body is empty');
  if (ct === PROTOBUF_MEDIA_TYPE) return decodeProtobufBody(body, expect);
  if (ct === 'application/json' || ct === '' || ct === '*/*') {
    try {
      return boundedDepth(JSON.parse(body.toString('utf8')));
    } catch (err) {
      if (err instanceof ApiError) throw err;
      throw errors.badRequest(`Object 'Kind' is missing in '${body.toString('utf8').slice(0, 200)}': ${(err as Error).message}`);
    }
  }
  if (ct === 'application/yaml' || ct === 'application/x-yaml' || ct === 'text/yaml') return parseYamlBody(body);
  throw errors.unsupportedMediaType(`the body of the request was in an unknown format - accepted media types include: ${ACCEPTED_BODY_TYPES}`);
}

function deleteOptions(body: Buffer, q: URLSearchParams, req: IncomingMessage): DeleteOptions {
  const opts: DeleteOptions = {};
  if (body.length > 0) {
    const b = decodeBody(req, body);
    if (b !== null && typeof b === 'object' && !Array.isArray(b)) {
      const o = b as Record<string, unknown>;
      if (o.kind !== undefined && o.kind !== 'DeleteOptions') throw errors.badRequest(`expected DeleteOptions, got ${String(o.kind)}`);
      if (typeof o.gracePeriodSeconds === 'number') opts.gracePeriodSeconds = o.gracePeriodSeconds;
      if (o.preconditions && typeof o.preconditions === 'object') opts.preconditions = o.preconditions as DeleteOptions['preconditions'] & object;
      if (typeof o.propagationPolicy === 'string') opts.propagationPolicy = o.propagationPolicy;
      if (Array.isArray(o.dryRun) && o.dryRun.includes('All')) opts.dryRun = true;
    } else {
      throw errors.badRequest('DeleteOptions must be an object');
    }
  }
  const g = q.get('gracePeriodSeconds');
  if (g !== null && g !== '') {
    const n = Number(g);
    if (!Number.isInteger(n)) throw errors.badRequest(`invalid gracePeriodSeconds: ${g}`);
    opts.gracePeriodSeconds = n;
  }
  const pp = q.get('propagationPolicy');
  if (pp) opts.propagationPolicy = pp;
  if (q.getAll('dryRun').includes('All')) opts.dryRun = true;
  return opts;
}
