/**
 * @module
 * kube-apiserver's node proxy for the pod subresources that reach the node's kubelet:
 * `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward` (pkg/registry/core/pod
 * LogLocation / streamLocation / PortForwardLocation, pkg/kubelet/client, apimachinery's
 * UpgradeAwareHandler). Guarantees:
 *
 * - The pod's container is resolved as kube-apiserver does (the `container` parameter,
 *   else the only container; 400 otherwise), then its node's kubelet endpoint: the first
 *   `status.addresses` entry of the preferred types (`Hostname` also falls back to the
 *   `kubernetes.io/hostname` label), port `status.daemonEndpoints.kubeletEndpoint.Port`
 *   or `kubeletPort`.
 * - The kubelet is dialed over TLS presenting the apiserver's kubelet client certificate;
 *   its serving certificate is verified only when a CA is configured. Connecting (DNS, TCP,
 *   TLS) is bounded by `connectTimeoutMs`; failing it answers 503 with the dial error.
 * - Logs: `GET /containerLogs/{ns}/{pod}/{container}?…` with the same (normalised) query;
 *   the body is streamed to the client chunk by chunk as it arrives (with back-pressure); a
 *   kubelet error is relayed with its status (a Status body verbatim, text wrapped into one).
 *   The client going away destroys the kubelet request; the kubelet ending ends the response.
 * - exec/attach/portforward: an upgrade request only (else 400 "Upgrade request required");
 *   the kubelet request carries the client's upgrade headers (not its credentials); a 101 is
 *   written to the client and both sockets are piped raw (the WebSocket/SPDY framing is not
 *   looked at), any other answer is relayed and the connection closed. Either side ending
 *   ends both; an error destroys both with one log line. `closeAll()` ends every tunnel.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { ErrorCode, TimeoutError, errorMessage } from '../shared/errors/index.js';
import type { Logger } from '../shared/log/index.js';
import { ApiError, errors, type StatusCause, type StatusReason } from './errors.js';
import type { Store } from './store.js';
import type { KObject } from './types.js';

/** The pod subresources served by the node proxy. */
export const NODE_PROXY_SUBRESOURCES = ['attach', 'exec', 'log', 'portforward'] as const;
export type NodeProxySubresource = (typeof NODE_PROXY_SUBRESOURCES)[number];

/** The node address types kube-apiserver knows (v1.NodeAddressType). */
export const NODE_ADDRESS_TYPES = ['Hostname', 'InternalIP', 'ExternalIP', 'InternalDNS', 'ExternalDNS'] as const;

export function isNodeProxySubresource(sub: string): sub is NodeProxySubresource {
  return (NODE_PROXY_SUBRESOURCES as readonly string[]).includes(sub);
}

export interface NodeProxyOptions {
  store: Store;
  log: Logger;
  /** Node address types in order of preference (--kubelet-preferred-address-types). */
  preferredAddressTypes: readonly string[];
  /** Port dialed when a Node has no kubelet endpoint port (--kubelet-port). */
  kubeletPort: number;
  /** Bound on DNS + TCP connect + TLS handshake, ms. */
  connectTimeoutMs: number;
  /** The client certificate and key presented to kubelets. */
  clientCertPem?: string;
  clientKeyPem?: string;
  /** PEM of the CA that must have signed the kubelet's serving certificate; undefined = not verified. */
  kubeletCaPem?: string;
}

/** The raw connection of a request that arrived through the server's 'upgrade' event. */
export interface UpgradeContext {
  socket: Duplex;
  /** Bytes the client sent after the request head. */
  head: Buffer;
}

export interface NodeProxyRequest {
  sub: NodeProxySubresource;
  namespace: string;
  name: string;
  query: URLSearchParams;
  /** Set when the request is an upgrade (exec, attach, portforward need one). */
  upgrade?: UpgradeContext;
}

/** Headers of the client's upgrade request copied to the kubelet (never its credentials). */
const UPGRADE_HEADERS = new Set([
  'upgrade',
  'connection',
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-protocol',
  'sec-websocket-extensions',
  'x-stream-protocol-version',
  'user-agent',
]);
/** Hop-by-hop headers not relayed from a kubelet's non-101 answer. */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);
/** Most bytes of a kubelet error body read and relayed (kube's genericHttpResponseChecker reads 50000). */
const MAX_ERROR_BODY = 64 * 1024;
/** How long an ended tunnel side may take to flush before it is destroyed, ms. */
const FLUSH_GRACE_MS = 5_000;

type Pod = KObject & { spec?: { nodeName?: unknown; containers?: unknown; initContainers?: unknown; ephemeralContainers?: unknown } };
type NodeObj = KObject & {
  status?: { addresses?: unknown; daemonEndpoints?: { kubeletEndpoint?: { Port?: unknown } } };
};

/** A boolean query parameter as apimachinery's Convert_Slice_string_To_bool reads it: absent, "0" or "false" → false, anything else (even "") → true. */
function queryBool(q: URLSearchParams, key: string): boolean {
  const v = q.get(key);
  if (v === null) return false;
  return !(v === '0' || v.toLowerCase() === 'false');
}

/** An int64 query parameter (Convert_Slice_string_To_int64): undefined when absent, 400 when not an integer. */
function queryInt(q: URLSearchParams, key: string): number | undefined {
  const v = q.get(key);
  if (v === null) return undefined;
  if (!/^[+-]?\d{1,18}$/.test(v)) throw errors.badRequest(`strconv.ParseInt: parsing ${JSON.stringify(v)}: invalid syntax (query parameter ${key})`);
  return Number(v);
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 query time, re-rendered at second precision in UTC (kube formats it with time.RFC3339). */
function queryTime(q: URLSearchParams, key: string): string | undefined {
  const v = q.get(key);
  if (v === null) return undefined;
  const ms = RFC3339.test(v) ? Date.parse(v.toUpperCase()) : Number.NaN;
  if (Number.isNaN(ms)) throw errors.badRequest(`parsing time ${JSON.stringify(v)} as "2006-01-02T15:04:05Z07:00": not an RFC 3339 time (query parameter ${key})`);
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Go's url.Values.Encode: keys sorted, each key's values in order. */
function encodeQuery(params: [string, string][]): string {
  const order = [...new Set(params.map(([k]) => k))].sort();
  const out = new URLSearchParams();
  for (const k of order) for (const [pk, v] of params) if (pk === k) out.append(k, v);
  return out.toString();
}

function names(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  return list.map((c) => (c && typeof c === 'object' ? (c as { name?: unknown }).name : undefined)).filter((n): n is string => typeof n === 'string');
}

/** kube-apiserver's validateContainer: the requested container, or the pod's only one. */
function resolveContainer(pod: Pod, podName: string, requested: string): string {
  const main = names(pod.spec?.containers);
  // podutil.VisitContainers order: init containers, containers, ephemeral containers.
  const all = [...names(pod.spec?.initContainers), ...main, ...names(pod.spec?.ephemeralContainers)];
  if (requested) {
    if (!all.includes(requested)) throw errors.badRequest(`container ${requested} is not valid for pod ${podName}`);
    return requested;
  }
  if (main.length === 1) return main[0]!;
  if (main.length === 0) throw errors.badRequest(`a container name must be specified for pod ${podName}`);
  throw errors.badRequest(`a container name must be specified for pod ${podName}, choose one of: [${all.join(' ')}]`);
}

function hostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The reason kube gives a status code it relays without a Status body (NewGenericServerResponse). */
function reasonFor(code: number): StatusReason {
  const reasons: Record<number, StatusReason> = {
    400: 'BadRequest',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'NotFound',
    405: 'MethodNotAllowed',
    406: 'NotAcceptable',
    409: 'Conflict',
    410: 'Expired',
    413: 'RequestEntityTooLarge',
    415: 'UnsupportedMediaType',
    422: 'Invalid',
    503: 'ServiceUnavailable',
    504: 'Timeout',
  };
  return reasons[code] ?? 'InternalError';
}

/** A dial failure in Go's words (what kubectl users see from kube-apiserver). */
function dialMessage(err: unknown, host: string, port: number): string {
  const hp = hostPort(host, port);
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (err instanceof TimeoutError) return `dial tcp ${hp}: i/o timeout`;
  switch (code) {
    case 'ECONNREFUSED':
      return `dial tcp ${hp}: connect: connection refused`;
    case 'ENOTFOUND':
      return `dial tcp: lookup ${host}: no such host`;
    case 'EAI_AGAIN':
      return `dial tcp: lookup ${host}: temporary failure in name resolution`;
    case 'EHOSTUNREACH':
      return `dial tcp ${hp}: connect: no route to host`;
    case 'ENETUNREACH':
      return `dial tcp ${hp}: connect: network is unreachable`;
    case 'ECONNRESET':
      return `dial tcp ${hp}: connection reset by peer (during the TLS handshake)`;
    default:
      if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO|ALTNAME|SIGNATURE/.test(code)) return `tls: failed to verify certificate of ${hp}: ${errorMessage(err)}`;
      return `dial tcp ${hp}: ${errorMessage(err)}`;
  }
}

/** Where a pod's kubelet is and how the request looks there. */
interface Location {
  node: string;
  host: string;
  port: number;
  /** Path and query on the kubelet. */
  path: string;
}

export class NodeProxy {
  /** Sockets of open or opening tunnels and kubelet connections, destroyed by closeAll(). */
  private readonly sockets = new Set<Duplex>();
  private closed = false;

  constructor(private readonly o: NodeProxyOptions) {}

  /** Serves one pods/{log,exec,attach,portforward} request (errors before any byte: a thrown ApiError). */
  async serve(req: IncomingMessage, res: ServerResponse, r: NodeProxyRequest): Promise<void> {
    if (r.sub === 'log') {
      if (req.method !== 'GET') throw errors.methodNotAllowed();
      return this.logs(req, res, r);
    }
    if (req.method !== 'GET' && req.method !== 'POST') throw errors.methodNotAllowed();
    return this.stream(req, res, r);
  }

  /** Ends every tunnel and kubelet connection (server shutdown). */
  closeAll(): void {
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  private track(s: Duplex): void {
    if (this.closed) {
      s.destroy();
      return;
    }
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
  }

  // ---------------------------------------------------------------- location

  private pod(namespace: string, name: string): Pod {
    const e = this.o.store.get('/pods', namespace, name);
    if (!e) throw errors.notFound({ group: '', resource: 'pods' }, name);
    return e.obj as Pod;
  }

  /** kube's NodeConnectionInfoGetter: the preferred address and the kubelet port of a node. */
  private kubelet(nodeName: string): { host: string; port: number } {
    const e = this.o.store.get('/nodes', '', nodeName);
    if (!e) throw errors.notFound({ group: '', resource: 'nodes' }, nodeName);
    const node = e.obj as NodeObj;
    const addresses = (Array.isArray(node.status?.addresses) ? node.status.addresses : []) as { type?: unknown; address?: unknown }[];
    let host: string | undefined;
    for (const type of this.o.preferredAddressTypes) {
      const a = addresses.find((x) => x && x.type === type && typeof x.address === 'string' && x.address);
      if (a) {
        host = a.address as string;
        break;
      }
      // GetPreferredNodeAddress: a Hostname wanted but not reported falls back to the label.
      const label = node.metadata.labels?.['kubernetes.io/hostname'];
      if (type === 'Hostname' && label) {
        host = label;
        break;
      }
    }
    if (!host) {
      const known = addresses.map((a) => `{${String(a?.type)} ${String(a?.address)}}`).join(' ');
      throw errors.internal(`no preferred addresses found; known addresses: [${known}]`);
    }
    const p = node.status?.daemonEndpoints?.kubeletEndpoint?.Port;
    const port = typeof p === 'number' && Number.isInteger(p) && p > 0 && p < 65536 ? p : this.o.kubeletPort;
    return { host: host.replace(/^\[(.*)\]$/, '$1'), port };
  }

  private locate(r: NodeProxyRequest): Location | undefined {
    const q = r.query;
    // PodLogOptions are decoded and validated before the pod is looked at (LogREST.Get).
    const logParams = r.sub === 'log' ? logQuery(q, r.name) : [];
    const pod = this.pod(r.namespace, r.name);
    const nodeName = typeof pod.spec?.nodeName === 'string' ? pod.spec.nodeName : '';
    const params: [string, string][] = [];
    let path: string;
    const seg = (s: string) => encodeURIComponent(s);
    if (r.sub === 'portforward') {
      if (!nodeName) throw errors.badRequest(`pod ${r.name} does not have a host assigned`);
      const ports = q.getAll('ports').flatMap((v) => v.split(','));
      for (const p of ports) {
        if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) throw errors.badRequest(`invalid port ${JSON.stringify(p)}`);
      }
      if (ports.length) params.push(['port', ports.map(Number).join(',')]);
      path = `/portForward/${seg(r.namespace)}/${seg(r.name)}`;
    } else {
      const container = resolveContainer(pod, r.name, q.get('container') ?? '');
      if (r.sub === 'log') {
        // LogLocation: an unscheduled pod has no location; the log is empty (LocationStreamer).
        if (!nodeName) return undefined;
        params.push(...logParams);
        path = `/containerLogs/${seg(r.namespace)}/${seg(r.name)}/${seg(container)}`;
      } else {
        if (!nodeName) throw errors.badRequest(`pod ${r.name} does not have a host assigned`);
        // streamParams: the kubelet's names (input, output, error, tty), only when true.
        if (queryBool(q, 'stdin')) params.push(['input', '1']);
        if (queryBool(q, 'stdout')) params.push(['output', '1']);
        if (queryBool(q, 'stderr')) params.push(['error', '1']);
        if (queryBool(q, 'tty')) params.push(['tty', '1']);
        if (r.sub === 'exec') for (const c of q.getAll('command')) params.push(['command', c]);
        path = `/${r.sub}/${seg(r.namespace)}/${seg(r.name)}/${seg(container)}`;
      }
    }
    const { host, port } = this.kubelet(nodeName);
    const query = encodeQuery(params);
    return { node: nodeName, host, port, path: query ? `${path}?${query}` : path };
  }

  // ---------------------------------------------------------------- dial

  /** A TLS connection to the kubelet, within connectTimeoutMs. */
  private dial(host: string, port: number): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      const verify = this.o.kubeletCaPem !== undefined;
      const sock = tlsConnect({
        host,
        port,
        ...(isIP(host) ? {} : { servername: host }),
        ...(this.o.clientCertPem && this.o.clientKeyPem ? { cert: this.o.clientCertPem, key: this.o.clientKeyPem } : {}),
        ...(verify ? { ca: this.o.kubeletCaPem } : {}),
        rejectUnauthorized: verify,
        ALPNProtocols: ['http/1.1'],
      });
      this.track(sock);
      const timer = setTimeout(() => sock.destroy(new TimeoutError(`no TLS connection to ${hostPort(host, port)} within ${this.o.connectTimeoutMs} ms`)), this.o.connectTimeoutMs);
      const onError = (err: Error): void => {
        clearTimeout(timer);
        sock.destroy();
        reject(err);
      };
      // Destroyed without an error (closeAll at shutdown): the dial fails all the same.
      const onClose = (): void => onError(new Error('connection closed before the TLS handshake completed'));
      sock.once('error', onError);
      sock.once('close', onClose);
      sock.once('secureConnect', () => {
        clearTimeout(timer);
        sock.off('error', onError);
        sock.off('close', onClose);
        resolve(sock);
      });
    });
  }

  /** dial(), its failure as the 503 kube-apiserver's callers see (`prefix` + Go's dial error). */
  private async connect(loc: Location, prefix: string): Promise<TLSSocket> {
    try {
      return await this.dial(loc.host, loc.port);
    } catch (err) {
      const message = `${prefix}${dialMessage(err, loc.host, loc.port)}`;
      this.o.log.warn('kubelet not reachable', { code: err instanceof TimeoutError ? ErrorCode.Timeout : ErrorCode.Disconnected, node: loc.node, err: message });
      throw errors.unavailable(message);
    }
  }

  // ---------------------------------------------------------------- logs

  private async logs(req: IncomingMessage, res: ServerResponse, r: NodeProxyRequest): Promise<void> {
    const loc = this.locate(r);
    if (!loc) {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 0, 'Cache-Control': 'no-cache, private' });
      res.end();
      return;
    }
    const url = `https://${hostPort(loc.host, loc.port)}${loc.path}`;
    const sock = await this.connect(loc, `Get ${JSON.stringify(url)}: `);
    if (res.destroyed || req.destroyed) {
      sock.destroy();
      return;
    }
    await new Promise<void>((resolve) => {
      let upstream: ClientRequest | undefined;
      let settled = false;
      const settle = (): void => {
        if (settled) return;
        settled = true;
        res.off('close', onClientGone);
        resolve();
      };
      // The client went away (or the response was destroyed): so goes the kubelet request.
      const onClientGone = (): void => {
        upstream?.destroy();
        sock.destroy();
        settle();
      };
      res.once('close', onClientGone);
      upstream = httpRequest({
        createConnection: () => sock as Socket,
        method: 'GET',
        path: loc.path,
        headers: { host: hostPort(loc.host, loc.port), accept: '*/*', 'accept-encoding': 'identity', connection: 'close', 'user-agent': 'ledge-apiserver' },
      });
      upstream.on('error', (err) => {
        if (!res.headersSent) {
          const message = `Get ${JSON.stringify(url)}: ${errorMessage(err)}`;
          this.o.log.warn('kubelet request failed', { code: ErrorCode.Disconnected, node: loc.node, err: message });
          const status = errors.unavailable(message).toStatus();
          const body = JSON.stringify(status);
          res.writeHead(503, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-cache, private' });
          res.end(body);
        } else {
          res.destroy();
        }
        settle();
      });
      upstream.on('response', (ur) => {
        const code = ur.statusCode ?? 502;
        if (code >= 200 && code <= 206) {
          res.writeHead(code, { 'Content-Type': 'text/plain', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
          res.flushHeaders();
          // Each chunk is written as it arrives; while the client does not read, neither do we.
          ur.on('data', (chunk: Buffer) => {
            if (!res.write(chunk)) {
              ur.pause();
              res.once('drain', () => ur.resume());
            }
          });
          ur.on('end', () => {
            res.end();
            settle();
          });
          ur.on('close', () => {
            if (ur.complete) return;
            res.destroy();
            settle();
          });
          ur.on('error', () => {
            res.destroy();
            settle();
          });
          return;
        }
        this.relayError(ur, res, r.name, settle);
      });
      upstream.end();
    });
  }

  /** A kubelet's error answer to a log request: a Status body verbatim, anything else wrapped into a Status. */
  private relayError(ur: IncomingMessage, res: ServerResponse, name: string, done: () => void): void {
    const code = ur.statusCode ?? 502;
    const chunks: Buffer[] = [];
    let size = 0;
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      const text = Buffer.concat(chunks).toString('utf8');
      let body: string | undefined;
      try {
        const parsed = JSON.parse(text) as { kind?: unknown };
        if (parsed && typeof parsed === 'object' && parsed.kind === 'Status') body = text;
      } catch {
        // not JSON: wrapped below
      }
      if (body === undefined) {
        const message = text.trim() || `the server responded with the status code ${code} but did not return more information (get pods/log ${name})`;
        body = JSON.stringify(new ApiError(code, reasonFor(code), message).toStatus());
      }
      if (!res.destroyed) {
        res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-cache, private' });
        res.end(body);
      }
      done();
    };
    ur.on('data', (c: Buffer) => {
      if (size >= MAX_ERROR_BODY) return;
      chunks.push(c.subarray(0, MAX_ERROR_BODY - size));
      size += c.length;
      if (size >= MAX_ERROR_BODY) {
        ur.destroy();
        finish();
      }
    });
    ur.on('end', finish);
    ur.on('error', finish);
    ur.on('close', () => {
      if (!ur.complete) finish();
    });
  }

  // ---------------------------------------------------------------- exec, attach, portforward

  private async stream(req: IncomingMessage, res: ServerResponse, r: NodeProxyRequest): Promise<void> {
    const loc = this.locate(r)!; // only logs may have no location
    const up = r.upgrade;
    if (!up) throw errors.badRequest('Upgrade request required');
    const client = up.socket;
    this.track(client);
    const sock = await this.connect(loc, 'error dialing backend: ');
    if (client.destroyed) {
      sock.destroy();
      return;
    }
    const headers: OutgoingHttpHeaders = { host: hostPort(loc.host, loc.port) };
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      const k = req.rawHeaders[i]!.toLowerCase();
      if (!UPGRADE_HEADERS.has(k)) continue;
      const v = req.rawHeaders[i + 1]!;
      const cur = headers[k];
      headers[k] = cur === undefined ? v : Array.isArray(cur) ? [...cur, v] : [String(cur), v];
    }
    const remote = req.socket.remoteAddress;
    const fwd = req.headers['x-forwarded-for'];
    if (remote) headers['x-forwarded-for'] = fwd ? `${String(fwd)}, ${remote}` : remote;
    // A POST without a body must not become chunked: the bytes after the head are the tunnel's.
    if (req.method === 'POST') headers['content-length'] = '0';
    const what = { node: loc.node, pod: `${r.namespace}/${r.name}`, sub: r.sub };
    await new Promise<void>((resolve) => {
      let settled = false;
      const settle = (): void => {
        if (settled) return;
        settled = true;
        client.off('close', onClientGone);
        resolve();
      };
      const onClientGone = (): void => {
        upstream.destroy();
        sock.destroy();
        settle();
      };
      client.once('close', onClientGone);
      const upstream = httpRequest({ createConnection: () => sock as Socket, method: req.method ?? 'GET', path: loc.path, headers });
      upstream.on('upgrade', (ur, backend, backendHead) => {
        client.off('close', onClientGone);
        // The ServerResponse the request came with must not touch the socket any more.
        res.detachSocket(client as Socket);
        let head = `HTTP/1.1 ${ur.statusCode ?? 101} ${ur.statusMessage ?? 'Switching Protocols'}\r\n`;
        for (let i = 0; i + 1 < ur.rawHeaders.length; i += 2) head += `${ur.rawHeaders[i]}: ${ur.rawHeaders[i + 1]}\r\n`;
        client.write(`${head}\r\n`);
        if (backendHead.length) client.write(backendHead);
        if (up.head.length) backend.write(up.head);
        this.tunnel(client, backend, what);
        settle();
      });
      upstream.on('response', (ur) => {
        // Not upgraded: the kubelet's answer goes to the client as it is, then the connection closes.
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP_HEADERS.has(k)) out[k] = v;
        res.writeHead(ur.statusCode ?? 502, ur.statusMessage, out);
        ur.pipe(res);
        ur.on('end', () => {
          sock.destroy();
          settle();
        });
        ur.on('error', () => {
          res.destroy();
          settle();
        });
      });
      upstream.on('error', (err) => {
        this.o.log.warn('kubelet request failed', { code: ErrorCode.Disconnected, ...what, err: errorMessage(err) });
        if (!res.headersSent && !client.destroyed) {
          const body = JSON.stringify(errors.unavailable(`error proxying to the kubelet: ${errorMessage(err)}`).toStatus());
          res.writeHead(503, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
          res.end(body);
        } else {
          client.destroy();
        }
        settle();
      });
      upstream.end();
    });
  }

  /** Pipes two upgraded connections both ways until either ends (then both end) or fails (then both are destroyed). */
  private tunnel(client: Duplex, backend: Duplex, what: Record<string, string>): void {
    this.track(backend);
    let done = false;
    const endSoon = (s: Duplex): void => {
      if (s.destroyed) return;
      if (s.writableFinished) {
        s.destroy();
        return;
      }
      const timer = setTimeout(() => s.destroy(), FLUSH_GRACE_MS);
      timer.unref();
      s.once('close', () => clearTimeout(timer));
      s.once('finish', () => s.destroy());
      s.end();
    };
    const finish = (err?: Error, side?: string): void => {
      if (done) return;
      done = true;
      if (err) {
        this.o.log.warn('node proxy tunnel failed', { code: ErrorCode.Disconnected, ...what, side, err: errorMessage(err) });
        client.destroy();
        backend.destroy();
        return;
      }
      endSoon(client);
      endSoon(backend);
    };
    client.on('error', (err) => finish(err, 'client'));
    backend.on('error', (err) => finish(err, 'kubelet'));
    client.once('end', () => finish());
    backend.once('end', () => finish());
    client.once('close', () => finish());
    backend.once('close', () => finish());
    client.pipe(backend, { end: false });
    backend.pipe(client, { end: false });
  }
}

/** PodLogOptions from the query, as the kubelet parameters LogLocation sends (400/422 when invalid). */
function logQuery(q: URLSearchParams, name: string): [string, string][] {
  const params: [string, string][] = [];
  if (queryBool(q, 'follow')) params.push(['follow', 'true']);
  if (queryBool(q, 'previous')) params.push(['previous', 'true']);
  if (queryBool(q, 'timestamps')) params.push(['timestamps', 'true']);
  const sinceSeconds = queryInt(q, 'sinceSeconds');
  const sinceTime = queryTime(q, 'sinceTime');
  const tailLines = queryInt(q, 'tailLines');
  const limitBytes = queryInt(q, 'limitBytes');
  validateLogOptions(name, { sinceSeconds, sinceTime, tailLines, limitBytes });
  if (sinceSeconds !== undefined) params.push(['sinceSeconds', String(sinceSeconds)]);
  if (sinceTime !== undefined) params.push(['sinceTime', sinceTime]);
  if (tailLines !== undefined) params.push(['tailLines', String(tailLines)]);
  if (limitBytes !== undefined) params.push(['limitBytes', String(limitBytes)]);
  return params;
}

/** kube's ValidatePodLogOptions → 422 Invalid PodLogOptions. */
function validateLogOptions(
  name: string,
  o: { sinceSeconds: number | undefined; sinceTime: string | undefined; tailLines: number | undefined; limitBytes: number | undefined },
): void {
  const causes: StatusCause[] = [];
  if (o.tailLines !== undefined && o.tailLines < 0)
    causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${o.tailLines}: must be greater than or equal to 0`, field: 'tailLines' });
  if (o.limitBytes !== undefined && o.limitBytes < 1)
    causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${o.limitBytes}: must be greater than 0`, field: 'limitBytes' });
  if (o.sinceSeconds !== undefined && o.sinceTime !== undefined) {
    causes.push({ reason: 'FieldValueForbidden', message: 'Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified', field: '' });
  } else if (o.sinceSeconds !== undefined && o.sinceSeconds < 1) {
    causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${o.sinceSeconds}: must be greater than 0`, field: 'sinceSeconds' });
  }
  if (causes.length) throw errors.invalid('PodLogOptions', '', name, causes);
}
