/**
 * @module
 * The device validation webhook's HTTPS server, for clusters with a real kube-apiserver (the
 * local control plane validates inline, apiserver/admission-devices.ts). Routes:
 * `POST /validate-devices` (an AdmissionReview v1 in, the same kind out: allowed, or denied with a
 * 422 Invalid Status naming each field), `GET /healthz`. Bodies are bounded, slow requests are
 * cut, malformed reviews are answered 400 with the reason; repeated refusals are logged once per
 * window, not per request.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { ErrorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { LogLimiter, seconds } from '../cloudhub/log-limiter.js';
import { type DeviceWebhookConfig, type DeviceWebhookOptions, resolveDeviceWebhookOptions } from './options.js';
import { reviewDevices } from './review.js';

export const VALIDATE_PATH = '/validate-devices';
export const HEALTHZ_PATH = '/healthz';

export interface DeviceWebhook {
  /** Reads the certificate and key and listens; resolves with the bound address. */
  start(): Promise<{ host: string; port: number }>;
  /** Stops listening and ends open connections. */
  close(): Promise<void>;
  /** The bound address once started. */
  address(): { host: string; port: number } | undefined;
}

/** Builds the webhook (nothing listens until `start`). Throws TypeError on bad options. */
export function createDeviceWebhook(config: DeviceWebhookConfig, log: Logger): DeviceWebhook {
  return new Webhook(resolveDeviceWebhookOptions(config), log.child({ module: 'devicewebhook' }));
}

class BodyTooLarge extends Error {}

class Webhook implements DeviceWebhook {
  private server: Server | undefined;
  private readonly limiter = new LogLimiter(60_000);

  constructor(
    private readonly options: DeviceWebhookOptions,
    private readonly log: Logger,
  ) {}

  address(): { host: string; port: number } | undefined {
    const a = this.server?.address() as AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port } : undefined;
  }

  async start(): Promise<{ host: string; port: number }> {
    if (this.server) return this.address()!;
    const o = this.options;
    const server = createServer({ cert: readFileSync(o.certFile), key: readFileSync(o.keyFile), minVersion: 'TLSv1.2' });
    server.requestTimeout = o.requestTimeoutMs;
    server.headersTimeout = Math.min(o.requestTimeoutMs, 60_000);
    server.maxConnections = o.maxConnections;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.onRequest(req, res).catch((err: unknown) => {
        this.log.error(`device webhook request failed: ${errorMessage(err)}`, { code: ErrorCode.Unknown });
        if (!res.headersSent) send(res, 500, { message: 'internal error' });
        else res.destroy();
      });
    });
    server.on('tlsClientError', (err: Error) =>
      this.limiter.event(
        'tls',
        () => this.log.warn(`device webhook: TLS handshake failed: ${err.message}`, { code: ErrorCode.Tls }),
        (n, ms) => this.log.warn(`device webhook: ${n} more TLS handshakes failed in the last ${seconds(ms)}`, { code: ErrorCode.Tls }),
      ),
    );
    server.on('clientError', (_err: Error, socket: Duplex) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const addr = this.address()!;
    this.log.info(`device webhook listening on https://${addr.host}:${addr.port}${VALIDATE_PATH}`);
    return addr;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.limiter.close();
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path === HEALTHZ_PATH) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return void send(res, 405, { message: 'use GET' }, { allow: 'GET, HEAD' });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      return;
    }
    if (path !== VALIDATE_PATH) return void send(res, 404, { message: `no such path: ${path.slice(0, 100)} (the webhook serves POST ${VALIDATE_PATH})` });
    if (req.method !== 'POST') return void send(res, 405, { message: `use POST with an AdmissionReview` }, { allow: 'POST' });
    let body: Buffer;
    try {
      body = await readBody(req, this.options.maxBodyBytes);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        this.refusal('too-large', `an AdmissionReview over ${this.options.maxBodyBytes} bytes was refused`);
        res.setHeader('connection', 'close');
        return void send(res, 413, { message: `request body too large: limit is ${this.options.maxBodyBytes} bytes` });
      }
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch (err) {
      return this.malformed(res, `the body is not JSON (${errorMessage(err)})`);
    }
    let answer: Awaited<ReturnType<typeof reviewDevices>>;
    try {
      answer = await reviewDevices(parsed, this.options.models);
    } catch (err) {
      // Only pathological input gets here (e.g. nesting deep enough to exhaust the stack).
      return this.malformed(res, `the AdmissionReview could not be checked (${errorMessage(err)})`);
    }
    if ('malformed' in answer) return this.malformed(res, answer.malformed);
    const r = answer.response;
    if (!r.allowed && r.status) {
      const d = r.status.details;
      this.limiter.event(
        `denied:${d.kind}`,
        () => this.log.info(`device webhook denied a ${d.kind}: ${r.status!.message.slice(0, 300)}`, { code: ErrorCode.DeviceInvalid }),
        (n, ms) => this.log.info(`device webhook denied ${n} more ${d.kind} writes in the last ${seconds(ms)}`, { code: ErrorCode.DeviceInvalid }),
      );
    }
    send(res, 200, answer);
  }

  private malformed(res: ServerResponse, why: string): void {
    this.refusal('malformed', `malformed AdmissionReview refused: ${why}`);
    send(res, 400, { message: `malformed AdmissionReview: ${why}` });
  }

  private refusal(key: string, line: string): void {
    this.limiter.event(
      key,
      () => this.log.warn(`device webhook: ${line}`, { code: ErrorCode.InvalidMessage }),
      (n, ms) => this.log.warn(`device webhook: ${n} more requests refused (${key}) in the last ${seconds(ms)}`, { code: ErrorCode.InvalidMessage }),
    );
  }
}

function send(res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers }).end(text);
}

/** The request body, refused as soon as it passes `limit` (by Content-Length or by what arrives). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      reject(new BodyTooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
