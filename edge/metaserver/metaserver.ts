/**
 * @module
 * MetaServer: a local, read-only, Kubernetes-shaped HTTP API over what the node holds (pods,
 * configmaps, secrets, services, endpoints, nodes), served from the edge store through
 * {@link MetaView}, so it answers the same online and offline (docs/metaserver.md).
 *
 * get, list and watch under /api/v1 with label and field selectors; discovery (/api, /api/v1,
 * /apis, /version, /healthz, /readyz, /livez); every write is 405. Objects, lists and watch
 * events carry MetaServer's own revisions as resourceVersions (see ./cache.ts), so an informer's
 * list → watch-from-resourceVersion → re-watch cycle works, and a resourceVersion older than the
 * kept history gets 410 Expired (the informer relists). Watches are bounded in number
 * (429 past `maxWatches`) and in unread bytes (a watcher that does not read is cut off and
 * re-watches), and end cleanly when EdgeCore stops.
 *
 * A Beehive module like the others: `start` listens (retrying with backoff when the port is
 * taken: EdgeCore runs on without MetaServer meanwhile) and serves until the module stops.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Group } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import { UnsupportedError, errorCode, errorContent, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { sleep } from '../../shared/runtime/index.js';
import { backoff } from '../../shared/backoff/index.js';
import type { MetaChange, MetaView } from '../metamanager/index.js';
import { authorize, TokenAuthority, userName, type Identity } from './auth.js';
import { ObjectCache, Revisions, type ChangeEvent, type EventType } from './cache.js';
import { metaServerDir, writeFileAtomic } from './files.js';
import { defaultMetaServerOptions, SERVER_URL_FILE, type MetaServerOptions } from './options.js';
import {
  apiGroupList,
  apiResourceList,
  apiVersions,
  byPlural,
  HttpStatusError,
  status,
  statusErrors,
  versionInfo,
  type KubeObject,
  type ResourceInfo,
  type Status,
} from './resources.js';
import { parseFieldSelector, parseLabelSelector, type FieldMatcher, type LabelMatcher } from './selectors.js';

/** Where MetaServer listens (a host to connect to: a wildcard bind address is given as loopback). */
export interface MetaServerAddress {
  host: string;
  port: number;
}

/** Options of {@link createMetaServer}: the data directory, and any option to override. */
export type MetaServerInit = Partial<Omit<MetaServerOptions, 'dataDir'>> & Pick<MetaServerOptions, 'dataDir'>;

/** What a watch selects. */
interface WatchFilter {
  info: ResourceInfo;
  namespace: string | undefined;
  name: string | undefined;
  labels: LabelMatcher | undefined;
  fields: FieldMatcher | undefined;
}

interface Watcher {
  res: ServerResponse;
  filter: WatchFilter;
  bookmarks: boolean;
  /** For the log line of a watcher cut off (no secret: a user name and a path). */
  who: string;
  path: string;
  timer?: NodeJS.Timeout;
  done: boolean;
  /** A check of the unread bytes is scheduled (see write()). */
  checkPending?: boolean;
}

const JSON_HEADERS = { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'X-Content-Type-Options': 'nosniff' } as const;

/** The object as served: apiVersion and kind set, metadata.resourceVersion MetaServer's revision; the stored value is not touched. */
export function present(info: ResourceInfo, value: KubeObject, rev: number): KubeObject {
  return { apiVersion: 'v1', kind: info.kind, ...value, metadata: { ...value.metadata, resourceVersion: String(rev) } };
}

function watchLine(type: EventType | 'BOOKMARK' | 'ERROR', object: unknown): string {
  return `${JSON.stringify({ type, object })}\n`;
}

const isTrue = (v: string | null): boolean => v === 'true' || v === '1';

/** A host to connect to for a bind address (wildcards become loopback), in URL form. */
function connectHost(bind: string): string {
  if (bind === '0.0.0.0' || bind === '') return '127.0.0.1';
  if (bind === '::') return '::1';
  return bind;
}

const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));

const hostForUrl = (host: string): string => (isIP(host) === 6 ? `[${host}]` : host);

export class MetaServer implements Module {
  readonly name = 'metaserver';
  readonly group = Group.Meta;
  readonly options: MetaServerOptions;
  private authority: TokenAuthority | undefined;
  private cache: ObjectCache | undefined;
  private addr: MetaServerAddress | undefined;
  private readonly watchers = new Set<Watcher>();
  private readonly listening: { promise: Promise<MetaServerAddress>; resolve: (a: MetaServerAddress) => void };
  /** Counters for diagnostics and tests. */
  readonly stats = { requests: 0, watchesStarted: 0, slowWatchersCut: 0, rejectedWatches: 0 };

  constructor(
    init: MetaServerInit,
    private readonly view: MetaView,
    private readonly log: Logger,
  ) {
    this.options = { ...defaultMetaServerOptions, ...init };
    let resolve!: (a: MetaServerAddress) => void;
    const promise = new Promise<MetaServerAddress>((r) => (resolve = r));
    this.listening = { promise, resolve };
  }

  /** The credentials, loaded (or created) on first use. Throws StorageError when the data directory cannot hold them. */
  private tokens(): TokenAuthority {
    this.authority ??= TokenAuthority.load(this.options.dataDir, this.log);
    return this.authority;
  }

  /**
   * The bearer token of the pod `uid` in `namespace`, for Edged to give the pod. Stateless: the same
   * token every time and across EdgeCore restarts. Throws StorageError if the key cannot be read or created.
   */
  podToken(uid: string, namespace: string): string {
    return this.tokens().podToken(uid, namespace);
  }

  /** Where MetaServer listens; undefined until it does (and after it stopped). */
  address(): MetaServerAddress | undefined {
    return this.addr;
  }

  /** Resolves with {@link address} once MetaServer listens (it retries while the port is taken). */
  whenListening(): Promise<MetaServerAddress> {
    return this.listening.promise;
  }

  /** Open watches. */
  get watchCount(): number {
    return this.watchers.size;
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    const dir = metaServerDir(this.options.dataDir, this.log);
    this.tokens();
    const revisions = Revisions.open(dir, this.log);
    if (!isLoopback(this.options.bindAddress)) {
      this.log.warn(
        `MetaServer listens on ${this.options.bindAddress}: plain HTTP, so bearer tokens cross the network in the clear; keep it on 127.0.0.1 unless the network is trusted`,
      );
    }
    const drained = this.drainMailbox(ctx, signal);
    const server = this.createHttpServer();
    const listened = this.listen(server, dir, signal);
    let unsubscribe: (() => void) | undefined;
    let bookmarks: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.view.whenReady(), new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }))]);
      if (!signal.aborted) {
        const cache = new ObjectCache(revisions, this.options.watchHistory, this.log);
        // Synchronous together: no change can land between the snapshot and the subscription.
        cache.seed(this.view.list(''));
        unsubscribe = this.view.subscribe((change) => this.onChange(change));
        this.cache = cache;
        this.log.debug('metaserver serving the store', { objects: cache.size, resourceVersion: cache.rev });
        bookmarks = setInterval(() => this.sendBookmarks(), this.options.bookmarkIntervalMs);
        bookmarks.unref();
        await new Promise<void>((r) => (signal.aborted ? r() : signal.addEventListener('abort', () => r(), { once: true })));
      }
    } finally {
      unsubscribe?.();
      clearInterval(bookmarks);
      for (const w of [...this.watchers]) this.endWatch(w);
      await listened;
      await this.close(server);
      if (this.addr) rmSync(join(dir, SERVER_URL_FILE), { force: true });
      this.addr = undefined;
      this.cache = undefined;
      await drained;
    }
  }

  /** Nothing is sent to MetaServer on the bus; anything that is gets dropped (a sync request is answered), so no sender waits on a full mailbox. */
  private async drainMailbox(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    for await (const msg of ctx.messages(signal)) {
      this.log.debug(`metaserver takes no messages; dropped ${msg.route.operation} ${msg.route.resource}`);
      if (msg.header.sync) await ctx.respond(msg, errorContent(new UnsupportedError('metaserver takes no messages'))).catch(() => {});
    }
  }

  private createHttpServer(): Server {
    const o = this.options;
    const server = createServer(
      { maxHeaderSize: o.maxHeaderBytes, headersTimeout: o.headersTimeoutMs, requestTimeout: o.requestTimeoutMs, keepAliveTimeout: o.keepAliveTimeoutMs, noDelay: true },
      (req, res) => this.handle(req, res),
    );
    server.maxConnections = o.maxConnections;
    return server;
  }

  /** Listens, retrying with backoff while it cannot (one error line for the first failure). */
  private async listen(server: Server, dir: string, signal: AbortSignal): Promise<void> {
    const { bindAddress: host, port } = this.options;
    const retry = backoff({ baseMs: this.options.listenRetryBaseMs, maxMs: this.options.listenRetryMaxMs });
    let failures = 0;
    while (!signal.aborted) {
      try {
        await new Promise<void>((resolve, reject) => {
          const onError = (err: Error) => {
            server.off('listening', onListening);
            reject(err);
          };
          const onListening = () => {
            server.off('error', onError);
            resolve();
          };
          server.once('error', onError);
          server.once('listening', onListening);
          server.listen({ host, port });
        });
        break;
      } catch (err) {
        failures++;
        const delay = retry.next();
        if (failures === 1) {
          this.log.error(
            `MetaServer cannot listen on ${hostForUrl(host)}:${port}: ${errorMessage(err)}; EdgeCore runs on without it and retries (every ${this.options.listenRetryMaxMs / 1000} s at most)`,
            {
              code: errorCode(err),
            },
          );
        } else this.log.debug(`MetaServer still cannot listen: ${errorMessage(err)}; retrying in ${delay} ms`, { attempts: failures });
        await sleep(delay, signal);
      }
    }
    if (signal.aborted) return;
    // Listen errors were handled above; any later one is logged, never unhandled.
    server.on('error', (err) => this.log.error(`MetaServer: ${errorMessage(err)}`, { code: errorCode(err) }));
    const bound = server.address();
    const actualPort = bound !== null && typeof bound === 'object' ? bound.port : port;
    this.addr = { host: connectHost(host), port: actualPort };
    const url = `http://${hostForUrl(this.addr.host)}:${actualPort}`;
    try {
      writeFileAtomic(join(dir, SERVER_URL_FILE), `${url}\n`);
    } catch (err) {
      this.log.warn(`${errorMessage(err)}; ledge edge get needs --server`, { code: errorCode(err) });
    }
    this.log.info('metaserver listening', { url, ...(failures ? { attempts: failures + 1 } : {}) });
    this.listening.resolve(this.addr);
  }

  private async close(server: Server): Promise<void> {
    if (!server.listening) return;
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeIdleConnections();
    // A request still being answered gets a moment; then every connection goes.
    const force = setTimeout(() => server.closeAllConnections(), 2000);
    await closed;
    clearTimeout(force);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.stats.requests++;
    res.on('error', (err) => this.log.debug(`MetaServer response failed: ${errorMessage(err)}`));
    // A body is never read: the connection closes after the answer instead of draining it.
    if ((req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined)
      res.setHeader('Connection', 'close');
    try {
      this.route(req, res);
    } catch (err) {
      if (err instanceof HttpStatusError) this.sendStatus(res, err.status);
      else {
        this.log.error(`MetaServer request failed: ${errorMessage(err)}`, { code: errorCode(err), path: (req.url ?? '').split('?')[0] });
        this.sendStatus(res, status(500, 'InternalError', `an error on the server ("${errorMessage(err)}") has prevented the request from succeeding`));
      }
    }
  }

  private sendJson(res: ServerResponse, code: number, body: unknown, headers: Record<string, string | number> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { ...JSON_HEADERS, 'Content-Length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  private sendStatus(res: ServerResponse, s: Status): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    this.sendJson(res, s.code, s, s.details?.retryAfterSeconds !== undefined ? { 'Retry-After': s.details.retryAfterSeconds } : {});
  }

  private sendText(res: ServerResponse, code: number, text: string): void {
    res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text), 'X-Content-Type-Options': 'nosniff' });
    res.end(text);
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://metaserver.invalid');
    } catch {
      throw statusErrors.badRequest('malformed request URL');
    }
    // A token that is no one's is refused on every path, as kube-apiserver does.
    const authn = this.tokens().authenticate(req.headers.authorization);
    if (authn.kind === 'invalid') throw statusErrors.unauthorized();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      throw statusErrors.methodNotAllowed();
    }
    const path = url.pathname.length > 1 && url.pathname.endsWith('/') ? url.pathname.slice(0, -1) : url.pathname;
    switch (path) {
      case '/healthz':
      case '/livez':
        return this.sendText(res, 200, 'ok');
      case '/readyz':
        return this.cache && this.addr ? this.sendText(res, 200, 'ok') : this.sendText(res, 503, '[-]metadata store not open yet\nreadyz check failed');
      case '/version':
        return this.sendJson(res, 200, versionInfo());
      case '/api':
        return this.sendJson(res, 200, apiVersions(this.addr ? `${hostForUrl(this.addr.host)}:${this.addr.port}` : ''));
      case '/api/v1':
        return this.sendJson(res, 200, apiResourceList());
      case '/apis':
        return this.sendJson(res, 200, apiGroupList());
    }
    if (authn.kind === 'anonymous') throw statusErrors.unauthorized();
    if (!path.startsWith('/api/v1/')) throw statusErrors.pathNotFound();
    this.serveResource(req, res, authn, path.slice('/api/v1/'.length).split('/'), url.searchParams);
  }

  private serveResource(req: IncomingMessage, res: ServerResponse, id: Identity, segments: string[], q: URLSearchParams): void {
    let seg = segments;
    let watchPath = false;
    if (seg[0] === 'watch') {
      // The deprecated /api/v1/watch/… form of ?watch=true.
      watchPath = true;
      seg = seg.slice(1);
    }
    let namespace: string | undefined;
    const decode = (s: string): string => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw statusErrors.badRequest('malformed path');
      }
    };
    if (seg[0] === 'namespaces' && seg.length >= 3) {
      namespace = decode(seg[1]!);
      seg = seg.slice(2);
    }
    const info = byPlural.get(seg[0] ?? '');
    // Subresources (status, log, …) are not served; nor /api/v1/pods/<name> without a namespace.
    if (!info || seg.length > 2 || (namespace !== undefined && !info.namespaced) || (info.namespaced && namespace === undefined && seg.length === 2))
      throw statusErrors.pathNotFound();
    const name = seg[1] !== undefined ? decode(seg[1]) : undefined;
    if (name === '' || namespace === '') throw statusErrors.pathNotFound();
    const watch = watchPath || isTrue(q.get('watch'));
    const verb = watch ? 'watch' : name !== undefined ? 'get' : 'list';
    const denied = authorize(id, verb, info.plural, info.namespaced, namespace);
    if (denied) throw statusErrors.forbidden(denied);
    const cache = this.cache;
    if (!cache) throw statusErrors.unavailable("the node's metadata store is not open yet");
    const labels = parseLabelSelector(q.get('labelSelector'));
    const fields = parseFieldSelector(q.get('fieldSelector'), info);
    const filter: WatchFilter = { info, namespace, name, labels, fields };
    if (watch) return this.startWatch(req, res, filter, q, id, cache);
    if (name !== undefined) {
      const e = cache.get(info, namespace, name);
      if (!e) throw statusErrors.notFound(info, name);
      return this.sendJson(res, 200, present(info, e.value, e.rev));
    }
    // No continue token is ever issued (the whole list comes at once, which `limit` allows).
    if (q.get('continue')) throw statusErrors.badRequest('continue key is not valid: MetaServer returns whole lists and issues no continue tokens');
    const items = cache
      .list(info, namespace)
      .filter((e) => matches(filter, e.value))
      .map((e) => present(info, e.value, e.rev));
    this.sendJson(res, 200, { kind: `${info.kind}List`, apiVersion: 'v1', metadata: { resourceVersion: String(cache.rev) }, items });
  }

  private startWatch(req: IncomingMessage, res: ServerResponse, filter: WatchFilter, q: URLSearchParams, id: Identity, cache: ObjectCache): void {
    const rv = q.get('resourceVersion') ?? '';
    if (rv !== '' && !/^\d{1,16}$/.test(rv)) throw statusErrors.badRequest(`invalid resourceVersion "${rv.slice(0, 64)}"`);
    const timeoutParam = q.get('timeoutSeconds');
    if (timeoutParam !== null && !/^\d{1,9}$/.test(timeoutParam)) throw statusErrors.badRequest(`invalid timeoutSeconds "${timeoutParam.slice(0, 64)}"`);
    if (this.watchers.size >= this.options.maxWatches) {
      this.stats.rejectedWatches++;
      throw statusErrors.tooManyRequests(`too many watches on this node's MetaServer (${this.options.maxWatches}); try again later`);
    }
    // "" and "0": the current state as ADDED events, then changes. Otherwise: what came after rv.
    const backlog = rv === '' || rv === '0' ? undefined : cache.since(Number(rv));
    res.writeHead(200, JSON_HEADERS);
    if (backlog === undefined && rv !== '' && rv !== '0') {
      // As kube-apiserver's watch cache answers it: a 200 stream carrying one 410 ERROR event.
      res.end(watchLine('ERROR', status(410, 'Expired', `too old resource version: ${rv} (${cache.floor})`)));
      return;
    }
    res.flushHeaders();
    const w: Watcher = { res, filter, bookmarks: isTrue(q.get('allowWatchBookmarks')), who: userName(id), path: (req.url ?? '').split('?')[0] ?? '', done: false };
    this.watchers.add(w);
    this.stats.watchesStarted++;
    res.once('close', () => this.dropWatch(w));
    if (backlog) {
      const memo = new Map<EventType, string>();
      for (const ev of backlog) {
        memo.clear();
        this.deliver(w, ev, memo);
      }
    } else {
      for (const e of cache.list(filter.info, filter.namespace)) {
        if ((filter.name === undefined || e.name === filter.name) && matches(filter, e.value)) this.write(w, watchLine('ADDED', present(filter.info, e.value, e.rev)));
      }
      if (isTrue(q.get('sendInitialEvents'))) {
        this.write(w, watchLine('BOOKMARK', this.bookmark(filter.info, cache.rev, { 'k8s.io/initial-events-end': 'true' })));
      }
    }
    if (w.done) return;
    const ms = timeoutParam !== null ? Number(timeoutParam) * 1000 : this.options.watchTimeoutMs * (1 + Math.random());
    w.timer = setTimeout(() => this.endWatch(w), ms);
  }

  private bookmark(info: ResourceInfo, rev: number, annotations?: Record<string, string>): unknown {
    return { kind: info.kind, apiVersion: 'v1', metadata: { resourceVersion: String(rev), ...(annotations ? { annotations } : {}) } };
  }

  private sendBookmarks(): void {
    const rev = this.cache?.rev;
    if (rev === undefined) return;
    for (const w of [...this.watchers]) if (w.bookmarks) this.write(w, watchLine('BOOKMARK', this.bookmark(w.filter.info, rev)));
  }

  private onChange(change: MetaChange): void {
    const ev = this.cache?.apply(change);
    if (!ev || this.watchers.size === 0) return;
    // One serialization per event type, shared by every watcher it goes to.
    const memo = new Map<EventType, string>();
    for (const w of [...this.watchers]) this.deliver(w, ev, memo);
  }

  /** Sends `ev` to `w` as it looks through w's selectors (an object leaving a selector is DELETED for it, one entering it ADDED). */
  private deliver(w: Watcher, ev: ChangeEvent, memo: Map<EventType, string>): void {
    const f = w.filter;
    if (ev.info !== f.info || (f.namespace !== undefined && ev.namespace !== f.namespace) || (f.name !== undefined && ev.name !== f.name)) return;
    const now = matches(f, ev.value);
    let type: EventType | undefined;
    if (ev.type === 'MODIFIED') {
      const before = ev.prev ? matches(f, ev.prev) : now;
      type = now ? (before ? 'MODIFIED' : 'ADDED') : before ? 'DELETED' : undefined;
    } else if (now) type = ev.type;
    if (!type) return;
    let line = memo.get(type);
    if (line === undefined) {
      line = watchLine(type, present(ev.info, ev.value, ev.rev));
      memo.set(type, line);
    }
    this.write(w, line);
  }

  /**
   * Writes to a watch. A watcher whose unread bytes are above the bound once the event loop had its
   * turn to flush them is cut off (it re-watches from its last resourceVersion). Checked a turn later,
   * not at once: writes of one turn are corked by node:http and count as unsent until its end.
   */
  private write(w: Watcher, chunk: string): void {
    if (w.done || w.res.destroyed) return;
    w.res.write(chunk);
    if (w.checkPending || w.res.writableLength <= this.options.maxWatchBufferBytes) return;
    w.checkPending = true;
    setImmediate(() => {
      w.checkPending = false;
      const unread = w.res.writableLength;
      if (w.done || unread <= this.options.maxWatchBufferBytes) return;
      this.stats.slowWatchersCut++;
      this.log.warn(`watch ${w.path} of ${w.who} ended: ${unread} bytes unread (more than ${this.options.maxWatchBufferBytes}); the client re-watches`);
      this.dropWatch(w);
      w.res.destroy();
    });
  }

  private endWatch(w: Watcher): void {
    if (w.done) return;
    this.dropWatch(w);
    w.res.end();
  }

  private dropWatch(w: Watcher): void {
    w.done = true;
    clearTimeout(w.timer);
    this.watchers.delete(w);
  }
}

function matches(f: WatchFilter, value: KubeObject): boolean {
  return (f.labels === undefined || f.labels(value.metadata?.labels)) && (f.fields === undefined || f.fields(value));
}

/** Creates the MetaServer module; it reads the node's objects through `view`. */
export function createMetaServer(init: MetaServerInit, view: MetaView, log: Logger): MetaServer {
  return new MetaServer(init, view, log);
}
