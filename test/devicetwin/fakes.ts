/**
 * Fakes for DeviceTwin's unit tests: a MetaView, a device bus, a Beehive context whose EdgeHub
 * answers as the test says, timers fired by hand, a clock, a capturing logger, and sample
 * Devices/DeviceModels. The twin store is real (files in a temp dir).
 */
import type { ModuleContext } from '../../shared/beehive/index.js';
import type { Device, DeviceModel } from '../../shared/devices/index.js';
import { createLogger, type Logger } from '../../shared/log/index.js';
import { newResponse, type Message } from '../../shared/protocol/index.js';
import { topicMatches, type BusMessage, type DeviceBus } from '../../edge/eventbus/index.js';
import type { MetaChange, MetaListener, MetaView, StoredObject } from '../../edge/metamanager/index.js';
import { createDeviceTwin, defaultDeviceTwinOptions, type DeviceTwin, type DeviceTwinOptions } from '../../edge/devicetwin/index.js';
import { within } from '../helpers/process.js';
import { tempDir } from '../helpers/files.js';
import { after } from 'node:test';

/** A function that makes a fresh temp directory per call; all are removed after the file's tests. */
export function tempDirs(prefix = 'ledge-twin-'): () => string {
  const dirs: { cleanup: () => void }[] = [];
  after(() => {
    for (const d of dirs) d.cleanup();
  });
  return () => {
    const d = tempDir(prefix);
    dirs.push(d);
    return d.path;
  };
}

export class FakeMeta implements MetaView {
  readonly objects = new Map<string, StoredObject>();
  private readonly listeners = new Set<MetaListener>();
  ready = true;
  get(resource: string): StoredObject | undefined {
    return this.objects.get(resource);
  }
  list(prefix = ''): StoredObject[] {
    return [...this.objects.values()].filter((o) => o.resource.startsWith(prefix));
  }
  listType(type: string): StoredObject[] {
    return [...this.objects.values()].filter((o) => o.resource.split('/')[1] === type);
  }
  subscribe(listener: MetaListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  whenReady(): Promise<void> {
    return Promise.resolve();
  }
  /** Stores without telling the listeners (what the node held before DeviceTwin started). */
  seed(resource: string, value: unknown): void {
    this.objects.set(resource, { resource, value });
  }
  put(resource: string, value: unknown): void {
    this.objects.set(resource, { resource, value });
    this.emit({ op: 'put', resource, value });
  }
  delete(resource: string): void {
    this.objects.delete(resource);
    this.emit({ op: 'delete', resource });
  }
  private emit(change: MetaChange): void {
    for (const l of this.listeners) void l(change);
  }
}

export interface Published {
  topic: string;
  body: Record<string, unknown>;
}

export class FakeBus implements DeviceBus {
  readonly subs: { filter: string; handler: (m: BusMessage) => void }[] = [];
  readonly published: Published[] = [];
  private readonly waiters = new Set<() => void>();
  subscribe(filter: string, handler: (msg: BusMessage) => void): () => void {
    const s = { filter, handler };
    this.subs.push(s);
    return () => this.subs.splice(this.subs.indexOf(s), 1);
  }
  async publish(topic: string, payload: string | Buffer): Promise<void> {
    this.published.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> });
    for (const w of this.waiters) w();
  }
  /** A device publishes `payload` (an object is sent as JSON). */
  inject(topic: string, payload: unknown): void {
    const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
    for (const s of [...this.subs]) if (topicMatches(s.filter, topic)) s.handler({ topic, payload: buf, qos: 1, retain: false });
  }
  on(topic: string): Published[] {
    return this.published.filter((p) => p.topic === topic);
  }
  /** Resolves once `n` messages were published on `topic` (deadline 5 s). */
  async waitFor(topic: string, n = 1): Promise<Published[]> {
    const done = () => this.on(topic).length >= n;
    if (!done())
      await within(
        new Promise<void>((resolve) => {
          const w = () => {
            if (done()) {
              this.waiters.delete(w);
              resolve();
            }
          };
          this.waiters.add(w);
        }),
        5000,
        `${n} publishes on ${topic} (have ${this.on(topic).length})`,
      );
    return this.on(topic);
  }
}

export type EdgeHubReply = 'accept' | { error: { code: string; message: string } } | { throws: Error } | 'hang';

/** A Beehive context: EdgeHub (`websocket`) answers by `reply`; the module's mailbox is fed by `deliver`. */
export class FakeCtx implements ModuleContext {
  readonly name = 'twin';
  readonly log: Logger;
  readonly sent: { to: string; msg: Message; timeoutMs: number | undefined }[] = [];
  readonly responses: { request: Message; content: unknown }[] = [];
  reply: EdgeHubReply = 'accept';
  /** Called when a message reaches EdgeHub, before the reply (a test changes state "while in flight"). */
  onSend: ((msg: Message) => void | Promise<void>) | undefined;
  private readonly queue: Message[] = [];
  private wake: (() => void) | undefined;

  constructor(log: Logger) {
    this.log = log;
  }
  send(): Promise<void> {
    return Promise.resolve();
  }
  sendToGroup(): Promise<void> {
    return Promise.resolve();
  }
  async sendSync<R = unknown>(to: string, message: Message, timeoutMs?: number): Promise<Message<R>> {
    this.sent.push({ to, msg: structuredClone(message), timeoutMs });
    await this.onSend?.(message);
    const r = this.reply;
    if (r === 'hang') return new Promise<Message<R>>(() => {});
    if (typeof r === 'object' && 'throws' in r) throw r.throws;
    const content = r === 'accept' ? null : r.error;
    return newResponse(message, to, content) as Message<R>;
  }
  async respond(request: Message, content: unknown): Promise<void> {
    this.responses.push({ request, content });
  }
  sendResponse(): Promise<void> {
    return Promise.resolve();
  }
  receive(): Promise<Message> {
    throw new Error('not used');
  }
  deliver(msg: Message): void {
    this.queue.push(msg);
    this.wake?.();
  }
  async *messages(signal: AbortSignal): AsyncIterable<Message> {
    while (!signal.aborted) {
      const m = this.queue.shift();
      if (m) {
        yield m;
        continue;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    }
  }
  /** The DeviceReportBatch contents sent to EdgeHub, in order. */
  batches(): { reports: import('../../shared/devices/index.js').DeviceReport[] }[] {
    return this.sent.map((s) => s.msg.content as { reports: import('../../shared/devices/index.js').DeviceReport[] });
  }
}

export class FakeTimers {
  readonly intervals: { fn: () => void; ms: number; cleared: boolean }[] = [];
  setInterval(fn: () => void, ms: number): unknown {
    const t = { fn, ms, cleared: false };
    this.intervals.push(t);
    return t;
  }
  clearInterval(h: unknown): void {
    (h as { cleared: boolean }).cleared = true;
  }
}

export class Clock {
  constructor(public t = Date.UTC(2026, 0, 2, 3, 4, 5)) {}
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

export interface LogLine {
  level: string;
  msg: string;
  code?: string;
  [k: string]: unknown;
}

export function captureLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => lines.push(JSON.parse(l) as LogLine) });
  return { log, lines };
}

export const NS = 'default';

export function model(name = 'thermo-model', namespace = NS): DeviceModel {
  return {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'DeviceModel',
    metadata: { name, namespace },
    spec: {
      protocol: 'virtualProtocol',
      properties: [
        { name: 'temperature', type: 'INT', accessMode: 'ReadWrite', minimum: '0', maximum: '100', unit: 'C' },
        { name: 'humidity', type: 'FLOAT', accessMode: 'ReadOnly' },
        { name: 'switch', type: 'BOOLEAN', accessMode: 'ReadWrite' },
        { name: 'label', type: 'STRING', accessMode: 'ReadWrite' },
        { name: 'extra', type: 'INT', accessMode: 'ReadWrite' },
      ],
    },
  };
}

export function device(name: string, opts: { uid?: string; desired?: Record<string, string>; modelName?: string; namespace?: string; description?: string } = {}): Device {
  const desired = opts.desired ?? { temperature: '30' };
  return {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'Device',
    metadata: {
      name,
      namespace: opts.namespace ?? NS,
      uid: opts.uid ?? `uid-${name}`,
      ...(opts.description ? { labels: { description: opts.description } } : {}),
    },
    spec: {
      deviceModelRef: { name: opts.modelName ?? 'thermo-model' },
      nodeName: 'edge-1',
      protocol: { protocolName: 'virtualProtocol' },
      // `extra` is in the model but not declared by the device.
      properties: ['temperature', 'humidity', 'switch', 'label'].map((p) => ({
        name: p,
        ...(desired[p] !== undefined ? { desired: { value: desired[p]! } } : {}),
        visitors: { protocolName: 'virtualProtocol', configData: {} },
        reportCycle: 1000,
        collectCycle: 1000,
        reportToCloud: true,
      })),
    },
  };
}

export const modelResource = (name = 'thermo-model', ns = NS) => `${ns}/devicemodel/${name}`;
export const deviceResource = (name: string, ns = NS) => `${ns}/device/${name}`;

/** A meta view holding the model and the given devices. */
export function metaWith(...names: string[]): FakeMeta {
  const meta = new FakeMeta();
  meta.seed(modelResource(), model());
  for (const n of names) meta.seed(deviceResource(n), device(n));
  return meta;
}

export interface Harness {
  twin: DeviceTwin;
  ctx: FakeCtx;
  meta: FakeMeta;
  bus: FakeBus;
  timers: FakeTimers;
  clock: Clock;
  lines: LogLine[];
  link: { up: boolean };
  stop(): Promise<void>;
}

/** Starts a DeviceTwin on `dataDir` with fakes around it; resolves once it is ready. */
export async function startTwin(
  dataDir: string,
  init: { meta?: FakeMeta; options?: Partial<DeviceTwinOptions>; linkUp?: boolean; clock?: Clock; beforeStart?: (twin: DeviceTwin) => void } = {},
): Promise<Harness> {
  const { log, lines } = captureLog();
  const meta = init.meta ?? metaWith('thermo-1');
  const bus = new FakeBus();
  const timers = new FakeTimers();
  const clock = init.clock ?? new Clock();
  const link = { up: init.linkUp ?? true };
  const twin = createDeviceTwin(
    {
      ...defaultDeviceTwinOptions,
      nodeName: 'edge-1',
      dataDir,
      meta,
      bus,
      linkUp: () => link.up,
      dmi: { enabled: false, socketPath: '', dataDir, callTimeoutMs: 1000, callsPerSecond: 0, burst: 0, maxMessageBytes: 4 << 20 },
      now: clock.now,
      timers,
      ...init.options,
    },
    log,
  );
  const ctx = new FakeCtx(log);
  init.beforeStart?.(twin);
  const ac = new AbortController();
  const running = twin.start(ctx, ac.signal);
  await within(Promise.race([twin.whenReady(), running.then(() => Promise.reject(new Error('twin stopped before ready')))]), 5000, 'the twin to be ready');
  let stopped = false;
  return {
    twin,
    ctx,
    meta,
    bus,
    timers,
    clock,
    lines,
    link,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      ac.abort();
      await within(running, 5000, 'the twin to stop');
    },
  };
}

/** The log lines with `code`, optionally whose message matches `re`. */
export function linesWith(lines: LogLine[], code: string, re?: RegExp): LogLine[] {
  return lines.filter((l) => l.code === code && (!re || re.test(l.msg)));
}
