/**
 * An in-process CloudCore (real CloudHub on a real port) and a thin protocol client,
 * for tests of the wire behaviour.
 */
import WebSocket from 'ws';
import { once } from 'node:events';
import { Beehive, type Module, type ModuleContext } from '../../shared/beehive/index.js';
import { createLogger, type Logger } from '../../shared/log/index.js';
import { createCloudHub, type CloudHub, type CloudHubOptions } from '../../cloud/cloudhub/index.js';
import { createCborCodec, newAck, newMessage, NODE_NAME_HEADER, SUBPROTOCOL, type Message } from '../../shared/protocol/index.js';
import { within } from './process.js';

export interface LogCapture {
  lines: Record<string, unknown>[];
  logger: Logger;
  has(re: RegExp): boolean;
}

export function captureLog(): LogCapture {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: 'debug', format: 'json', write: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { lines, logger, has: (re) => lines.some((l) => re.test(JSON.stringify(l))) };
}

/** A cloud module recording upstream messages and answering them. */
export function recorderModule(received: Message[], name = 'edgecontroller'): Module {
  return {
    name,
    group: 'resource',
    async start(ctx: ModuleContext, signal: AbortSignal) {
      for (;;) {
        let m: Message;
        try {
          m = await ctx.receive(signal);
        } catch {
          return;
        }
        received.push(m);
        if (m.header.sync) await ctx.respond(m, null);
      }
    },
  };
}

export interface TestCloud {
  hub: CloudHub;
  bee: Beehive;
  received: Message[];
  log: LogCapture;
  stop(): Promise<void>;
}

/** A CloudHub on 127.0.0.1, port 0: plain ws:// (`insecurePlainWebSocket`) unless `options.tls` is given. */
export async function startTestCloud(options: Partial<CloudHubOptions> = {}): Promise<TestCloud> {
  const log = captureLog();
  const bee = new Beehive({ log: log.logger });
  const hub = createCloudHub({ host: '127.0.0.1', port: 0, insecurePlainWebSocket: !options.tls, ...options }, { log: log.logger });
  const received: Message[] = [];
  bee.register(hub);
  bee.register(recorderModule(received));
  bee.start();
  await hub.ready();
  return { hub, bee, received, log, stop: () => bee.stop() };
}

export const codec = createCborCodec();

/** A thin edge: raw ws with the subprotocol, decodes frames, ACKs sync messages if asked. */
export class ThinEdge {
  readonly messages: Message[] = [];
  closed: { code: number; reason: string } | undefined;
  private constructor(
    readonly ws: WebSocket,
    autoAck: boolean,
  ) {
    ws.on('message', (data: Buffer) => {
      const m = codec.decode(data);
      this.messages.push(m);
      if (autoAck && m.header.sync && m.route.operation !== 'ack') ws.send(codec.encode(newAck(m, 'thin')));
    });
    ws.on('close', (code, reason) => (this.closed = { code, reason: reason.toString() }));
  }

  static async connect(url: string, node: string, opts: { autoAck?: boolean; protocol?: string; ws?: WebSocket.ClientOptions } = {}): Promise<ThinEdge> {
    // handshakeTimeout: a server that never answers the upgrade fails the connect (an 'error') instead of hanging it.
    const ws = new WebSocket(url, opts.protocol ?? SUBPROTOCOL, { headers: { [NODE_NAME_HEADER]: node }, handshakeTimeout: 10_000, ...opts.ws });
    const edge = new ThinEdge(ws, opts.autoAck ?? true);
    await once(ws, 'open');
    return edge;
  }

  send(m: Message): void {
    this.ws.send(codec.encode(m));
  }

  sendRaw(data: Buffer | string): void {
    this.ws.send(data);
  }

  /** The close code and reason, once the server closed the session; fails if it has not within `timeoutMs`. */
  async closedWith(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    if (!this.closed) await within(once(this.ws, 'close'), timeoutMs, 'the server to close the session');
    return this.closed!;
  }

  close(): void {
    this.ws.terminate();
  }
}

export function statusUpdate(seq: number, sync = true): Message {
  return newMessage({ source: 'edged', group: 'resource', operation: 'update', resource: 'default/nodestatus/n', content: { seq }, sync });
}
