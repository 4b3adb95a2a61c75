/**
 * @module
 * DeviceTwin's MQTT adapter: KubeEdge's device topics on the device bus (edge/eventbus), answered
 * locally, online or offline.
 *
 * - `…/{ns}/{name}/twin/update`: `actual` values go to {@link TwinRegistry.update} (the one report
 *   path), `expected` values are applied locally (stored, shown in the twin, never sent to the
 *   cloud: the Device spec owns desired, and mappers are not told — an app on the node talks to
 *   an MQTT device, not to a mapper). Once durable: `…/twin/update/result` (the applied parts,
 *   KubeEdge's DeviceTwinResult), `…/twin/update/document` (before/after of each twin) and, if some
 *   expected value differs from its actual one, `…/twin/update/delta`.
 * - `…/twin/get` → `…/twin/get/result` (every declared twin); `…/state/update` → the state
 *   report, then `…/state/update/result` (KubeEdge's DeviceMsg); `$hw/events/node/{node}/membership/get`
 *   → `…/membership/get/result` (other nodes' requests are left to them, as on a shared broker).
 * - A desired value changed in the cloud (or a Device added with one) publishes `…/twin/update/delta`
 *   (KubeEdge has not done this since 1.15: its cloud no longer sends twin/cloud_updated); a Device
 *   added or removed while running publishes `$hw/events/node/{node}/membership/updated`. DMI
 *   reports publish `…/twin/update/document` too (apps on the node see mapper values, as in KubeEdge,
 *   where DMI reports become twin updates); no result (nobody asked) and no delta (mappers get
 *   desired values over DMI).
 * - Bad input (payload over `maxPayloadBytes`: 413; not JSON or not KubeEdge's shape: 400; a device
 *   the node does not hold: 404; a value the model refuses: 400; a storage failure: 500; more than
 *   16 messages of one device or `maxPendingMessages` in all waiting: 429) is answered with a
 *   KubeEdge Result `{event_id, timestamp, code, reason}` on the request's result topic
 *   (`twin/update/result`, `twin/get/result`, `state/update/result`), logged once per device per kind of
 *   problem; nothing else is disturbed.
 * - The messages of one device are handled in order (results, documents and deltas follow the
 *   order of the updates); different devices concurrently (their store writes share fsyncs).
 */
import { randomUUID } from 'node:crypto';
import { DeviceInvalidError, DeviceUnknownError, ErrorCode, errorCode, errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import type { BusMessage, DeviceBus } from '../eventbus/index.js';
import type { DeviceChangeEvent, TwinUpdate } from './core.js';
import {
  type BaseMessage,
  buildDelta,
  type DeviceStateResult,
  type DeviceTwinDocument,
  type DeviceTwinResult,
  Filters,
  allTwins,
  memberDevice,
  type MembershipGetResult,
  type MembershipUpdate,
  type MsgTwin,
  msgTwin,
  parseTwinUpdate,
  type Result,
  ResultCode,
  Topics,
} from './mqtt-shapes.js';
import { MAX_PENDING_PER_DEVICE } from './options.js';
import type { ProblemLog } from './problems.js';
import { type ExpectedUpdate, type Held, type TwinChange, type TwinRegistry, changedDesired } from './twins.js';

export interface MqttAdapterOptions {
  nodeName: string;
  maxPayloadBytes: number;
  maxPendingMessages: number;
  now: () => number;
}

type Kind = 'update' | 'get' | 'state';

/** A refusal: the result code and reason, and the problem kind it is logged under. */
class Refusal {
  constructor(
    readonly code: number,
    readonly reason: string,
    readonly kind: string,
    readonly logCode: string,
  ) {}
}

export class MqttAdapter {
  private readonly chains = new Map<string, { tail: Promise<void>; count: number }>();
  private pending = 0;
  /** Publishes handed to the bus and not settled: bounded, so a slow broker cannot grow memory. */
  private publishing = 0;
  private readonly unsubscribe: (() => void)[] = [];
  private attached = false;
  readonly stats = { received: 0, refused: 0, published: 0, dropped: 0 };

  constructor(
    private readonly registry: TwinRegistry,
    private readonly bus: DeviceBus,
    private readonly options: MqttAdapterOptions,
    private readonly log: Logger,
    private readonly problems: ProblemLog,
  ) {}

  /** Subscribes to the device topics and follows the registry's changes (call once the registry is loaded). */
  attach(): void {
    if (this.attached) return;
    this.attached = true;
    const b = this.bus;
    this.unsubscribe.push(
      b.subscribe(Filters.twinUpdate, (m) => this.onDeviceMessage('update', m)),
      b.subscribe(Filters.twinGet, (m) => this.onDeviceMessage('get', m)),
      b.subscribe(Filters.stateUpdate, (m) => this.onDeviceMessage('state', m)),
      b.subscribe(Filters.membershipGet, (m) => this.onMembershipGet(m)),
    );
    // The replay of the devices already held comes synchronously inside onDeviceChange: not news.
    let replaying = true;
    this.unsubscribe.push(this.registry.onDeviceChange((ev) => !replaying && this.onDeviceChange(ev)));
    replaying = false;
    this.unsubscribe.push(this.registry.onTwinChange((c) => c.source === 'dmi' && this.publishDocument(c, '')));
    this.unsubscribe.push(this.registry.onStateChange((s) => s.source === 'dmi' && this.publishState(s.held, randomUUID())));
  }

  /** Unsubscribes and waits for the messages being handled. */
  async detach(): Promise<void> {
    for (const u of this.unsubscribe.splice(0)) u();
    this.attached = false;
    await Promise.allSettled([...this.chains.values()].map((c) => c.tail));
  }

  // ---- device topics ----

  private onDeviceMessage(kind: Kind, m: BusMessage): void {
    this.stats.received++;
    const parts = m.topic.split('/');
    const ns = parts[3] ?? '';
    const name = parts[4] ?? '';
    const key = `${ns}/${name}`;
    const chain = this.chains.get(key);
    if (this.pending >= this.options.maxPendingMessages) {
      // Many devices at once: one problem of the node, not one per device.
      const r = new Refusal(
        ResultCode.TooMany,
        `${this.pending} device messages are waiting on this node (twin.maxPendingMessages): this one is dropped, retry later`,
        'flood',
        ErrorCode.QueueFull,
      );
      this.refuse(key, kind, r, eventIdOf(m.payload), 'node|flood');
      return;
    }
    if ((chain?.count ?? 0) >= MAX_PENDING_PER_DEVICE) {
      const r = new Refusal(ResultCode.TooMany, `${MAX_PENDING_PER_DEVICE} messages of device ${key} are waiting: this one is dropped, retry later`, 'flood', ErrorCode.QueueFull);
      this.refuse(key, kind, r, eventIdOf(m.payload));
      return;
    }
    this.pending++;
    const run = () =>
      this.handle(kind, ns, name, key, m)
        .catch((err: unknown) => this.log.error(`MQTT ${kind} of device ${key} failed: ${errorMessage(err)}`, { code: errorCode(err) }))
        .finally(() => {
          this.pending--;
          const c = this.chains.get(key);
          if (c && --c.count === 0) this.chains.delete(key);
        });
    if (chain) {
      chain.count++;
      chain.tail = chain.tail.then(run);
    } else {
      this.chains.set(key, { tail: run(), count: 1 });
    }
  }

  private async handle(kind: Kind, ns: string, name: string, key: string, m: BusMessage): Promise<void> {
    let eventId = '';
    try {
      if (m.payload.length > this.options.maxPayloadBytes)
        throw new Refusal(
          ResultCode.TooLarge,
          `payload is ${m.payload.length} bytes, over twin.maxPayloadBytes (${this.options.maxPayloadBytes})`,
          'too-large',
          ErrorCode.DeviceInvalid,
        );
      const body = parseJson(m.payload);
      eventId = typeof (body as { event_id?: unknown } | null)?.event_id === 'string' ? (body as { event_id: string }).event_id : '';
      if (kind === 'update') await this.twinUpdate(ns, name, key, body);
      else if (kind === 'get') await this.twinGet(key, body);
      else await this.stateUpdate(ns, name, key, body);
    } catch (err) {
      this.refuse(key, kind, asRefusal(err), eventId);
    }
  }

  private async twinUpdate(ns: string, name: string, key: string, body: unknown): Promise<void> {
    const parsed = parseTwinUpdate(body);
    if (!parsed.ok) throw new Refusal(ResultCode.BadRequest, parsed.reason, 'malformed', ErrorCode.DeviceInvalid);
    const msg = parsed.msg;
    const h = this.held(key);
    const reports: TwinUpdate[] = [];
    const expected: ExpectedUpdate[] = [];
    for (const [prop, t] of Object.entries(msg.twin)) {
      if (t === null) throw new Refusal(ResultCode.BadRequest, `twin ${JSON.stringify(prop)} cannot be deleted: the Device declares its twins`, 'invalid', ErrorCode.DeviceInvalid);
      if (typeof t.actual?.value === 'string') reports.push({ propertyName: prop, reported: { value: t.actual.value } });
      if (typeof t.expected?.value === 'string') expected.push({ propertyName: prop, value: t.expected.value });
    }
    const change = await this.registry.update(ns, name, reports, expected, 'mqtt');
    // The applied parts, as KubeEdge's update result carries them.
    const model = this.registry.modelOf(h.device);
    const twin: Record<string, MsgTwin> = {};
    for (const [prop, t] of Object.entries(msg.twin)) {
      const full = msgTwin(h, model, prop, h.rec.twins[prop]);
      twin[prop] = {
        ...(typeof t?.expected?.value === 'string' ? { expected: full.expected } : {}),
        ...(typeof t?.actual?.value === 'string' ? { actual: full.actual } : {}),
        optional: false,
        metadata: full.metadata,
      } as MsgTwin;
    }
    await this.publish(Topics.twinUpdateResult(key), { ...this.base(msg.event_id), twin } satisfies DeviceTwinResult);
    if (change) await this.publishDocument(change, msg.event_id);
    const delta = buildDelta(h, model, this.base(randomUUID()));
    if (delta) await this.publish(Topics.twinDelta(key), delta);
  }

  private async twinGet(key: string, body: unknown): Promise<void> {
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new Refusal(ResultCode.BadRequest, 'Unmarshal twin info failed: not a JSON object', 'malformed', ErrorCode.DeviceInvalid);
    const eventId = (body as { event_id?: unknown }).event_id;
    if (eventId !== undefined && typeof eventId !== 'string')
      throw new Refusal(ResultCode.BadRequest, 'Unmarshal twin info failed: event_id is not a string', 'malformed', ErrorCode.DeviceInvalid);
    const h = this.held(key);
    const result: DeviceTwinResult = { ...this.base(eventId ?? ''), twin: allTwins(h, this.registry.modelOf(h.device)) };
    await this.publish(Topics.twinGetResult(key), result);
  }

  private async stateUpdate(ns: string, name: string, key: string, body: unknown): Promise<void> {
    const b = body as { event_id?: unknown; state?: unknown } | null;
    if (typeof b !== 'object' || b === null || Array.isArray(b) || (b.event_id !== undefined && typeof b.event_id !== 'string'))
      throw new Refusal(ResultCode.BadRequest, 'Unmarshal device info failed: not a JSON object with a string event_id', 'malformed', ErrorCode.DeviceInvalid);
    if (typeof b.state !== 'string') throw new Refusal(ResultCode.BadRequest, 'state is missing or not a string', 'malformed', ErrorCode.DeviceInvalid);
    const h = this.held(key);
    await this.registry.reportState(ns, name, b.state, 'mqtt');
    await this.publishState(h, typeof b.event_id === 'string' && b.event_id !== '' ? b.event_id : randomUUID());
  }

  private held(key: string): Held {
    const h = this.registry.heldDevice(key);
    if (!h) throw new Refusal(ResultCode.NotFound, `device ${key} is not held by this node`, 'unknown-device', ErrorCode.DeviceUnknown);
    return h;
  }

  // ---- node topics ----

  private onMembershipGet(m: BusMessage): void {
    this.stats.received++;
    const node = m.topic.split('/')[3] ?? '';
    if (node !== this.options.nodeName) return;
    const topic = Topics.membershipGetResult(node);
    const refuse = (code: number, reason: string, kind: string): void => {
      this.stats.refused++;
      this.problems.warn(`node|${kind}`, `MQTT membership/get refused (${code}): ${reason}`, { code: ErrorCode.DeviceInvalid, topic: m.topic });
      void this.publish(topic, { ...this.base(eventIdOf(m.payload)), code, reason } satisfies Result);
    };
    if (m.payload.length > this.options.maxPayloadBytes)
      return refuse(ResultCode.TooLarge, `payload is ${m.payload.length} bytes, over twin.maxPayloadBytes (${this.options.maxPayloadBytes})`, 'too-large');
    let body: unknown;
    try {
      body = parseJson(m.payload);
    } catch (err) {
      return refuse(ResultCode.BadRequest, asRefusal(err).reason, 'malformed');
    }
    const eventId = (body as { event_id?: unknown } | null)?.event_id;
    if (typeof body !== 'object' || body === null || Array.isArray(body) || (eventId !== undefined && typeof eventId !== 'string'))
      return refuse(ResultCode.BadRequest, 'Unmarshal get membership info failed: not a JSON object with a string event_id', 'malformed');
    const devices = [...this.registry.heldDevices()].map((h) => memberDevice(h, true));
    void this.publish(topic, { ...this.base((eventId as string | undefined) ?? ''), devices } satisfies MembershipGetResult);
  }

  private onDeviceChange(ev: DeviceChangeEvent): void {
    const key = `${ev.entry.device.metadata.namespace || 'default'}/${ev.entry.device.metadata.name}`;
    const h = this.registry.heldDevice(key);
    if (ev.op === 'delete') {
      const gone = {
        id: key,
        name: ev.entry.device.metadata.name ?? '',
        ...(ev.entry.device.metadata.labels?.description ? { description: ev.entry.device.metadata.labels.description } : {}),
      };
      void this.publish(Topics.membershipUpdated(this.options.nodeName), { ...this.base(randomUUID()), added_devices: null, removed_devices: [gone] } satisfies MembershipUpdate);
      return;
    }
    if (!h) return;
    if (ev.op === 'add')
      void this.publish(Topics.membershipUpdated(this.options.nodeName), {
        ...this.base(randomUUID()),
        added_devices: [memberDevice(h, false)],
        removed_devices: null,
      } satisfies MembershipUpdate);
    if (ev.op === 'add' || changedDesired(ev.previous?.device, ev.entry.device).length > 0) {
      const delta = buildDelta(h, ev.entry.model, this.base(randomUUID()));
      if (delta) void this.publish(Topics.twinDelta(key), delta);
    }
  }

  // ---- publishing ----

  private publishDocument(c: TwinChange, eventId: string): Promise<void> {
    const h = c.held;
    const model = this.registry.modelOf(h.device);
    const twin: DeviceTwinDocument['twin'] = {};
    for (const [prop, before] of c.before) twin[prop] = { last: msgTwin(h, model, prop, before), current: msgTwin(h, model, prop, h.rec.twins[prop]) };
    return this.publish(Topics.twinDocument(h.key), { ...this.base(eventId), twin } satisfies DeviceTwinDocument);
  }

  private publishState(h: Held, eventId: string): Promise<void> {
    const device = { name: h.name, ...(h.rec.state ? { state: h.rec.state } : {}), ...(h.rec.lastOnlineTime ? { lastOnlineTime: h.rec.lastOnlineTime } : {}) };
    return this.publish(Topics.stateUpdateResult(h.key), { ...this.base(eventId), device } satisfies DeviceStateResult);
  }

  private refuse(key: string, kind: Kind, r: Refusal, eventId: string, problem = `${key}|${kind}|${r.kind}`): void {
    this.stats.refused++;
    this.problems.warn(problem, `MQTT ${kind === 'state' ? 'state/update' : `twin/${kind}`} of device ${key} refused (${r.code}): ${r.reason}`, {
      code: r.logCode,
      device: key,
    });
    const topic = kind === 'update' ? Topics.twinUpdateResult(key) : kind === 'get' ? Topics.twinGetResult(key) : Topics.stateUpdateResult(key);
    void this.publish(topic, { ...this.base(eventId), code: r.code, reason: r.reason } satisfies Result);
  }

  private base(eventId: string): BaseMessage {
    return { event_id: eventId, timestamp: this.options.now() };
  }

  /** Publishes JSON (QoS 1); a failure is logged once per kind, never thrown. */
  private async publish(topic: string, payload: object): Promise<void> {
    // Twice the message budget: every waiting message may be answered while older answers drain.
    if (this.publishing >= this.options.maxPendingMessages * 2) {
      this.stats.dropped++;
      this.problems.warn('publish-backlog', `MQTT publishes are not being taken by the broker (${this.publishing} waiting); answers are dropped until it catches up`, {
        code: ErrorCode.Mqtt,
      });
      return;
    }
    this.publishing++;
    try {
      await this.bus.publish(topic, JSON.stringify(payload));
      this.stats.published++;
    } catch (err) {
      this.stats.dropped++;
      this.problems.warn(`publish|${errorCode(err)}`, `MQTT publish to ${topic} failed: ${errorMessage(err)}`, {
        code: errorCode(err) === ErrorCode.Unknown ? ErrorCode.Mqtt : errorCode(err),
      });
    } finally {
      this.publishing--;
    }
  }
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8')) as unknown;
  } catch (err) {
    throw new Refusal(ResultCode.BadRequest, `Unmarshal request body failed: ${errorMessage(err)}`, 'malformed', ErrorCode.DeviceInvalid);
  }
}

/** The event_id of a payload, if it is small JSON with one (for answers to refused messages; a big one is not parsed). */
function eventIdOf(payload: Buffer): string {
  if (payload.length > 4096) return '';
  try {
    const id = (JSON.parse(payload.toString('utf8')) as { event_id?: unknown } | null)?.event_id;
    return typeof id === 'string' ? id : '';
  } catch {
    return '';
  }
}

function asRefusal(err: unknown): Refusal {
  if (err instanceof Refusal) return err;
  if (err instanceof DeviceUnknownError) return new Refusal(ResultCode.NotFound, err.message, 'unknown-device', err.code);
  if (err instanceof DeviceInvalidError) return new Refusal(ResultCode.BadRequest, err.message, 'invalid', err.code);
  return new Refusal(ResultCode.Internal, `cannot store the twin: ${errorMessage(err)}`, `internal:${errorCode(err)}`, errorCode(err));
}
