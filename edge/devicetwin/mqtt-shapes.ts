/**
 * @module
 * KubeEdge's MQTT device topics and JSON payloads (edge/pkg/devicetwin: dtcommon/common.go for
 * the topics, dttype/types.go and types_helper.go for the shapes; facts, written here by us).
 * Device id in topics: `{namespace}/{name}` (two segments since KubeEdge 1.17). Field order follows
 * Go's struct order, so a payload reads like KubeEdge's.
 */
import type { DeviceModel, ModelProperty } from '../../shared/devices/index.js';
import type { StoredTwin } from './twin-store.js';
import { type Held, typeName } from './twins.js';

export const DEVICE_PREFIX = '$hw/events/device/';
export const NODE_PREFIX = '$hw/events/node/';

/** Subscriptions: what devices and apps publish. */
export const Filters = {
  twinUpdate: `${DEVICE_PREFIX}+/+/twin/update`,
  twinGet: `${DEVICE_PREFIX}+/+/twin/get`,
  stateUpdate: `${DEVICE_PREFIX}+/+/state/update`,
  membershipGet: `${NODE_PREFIX}+/membership/get`,
} as const;

/** Topics DeviceTwin publishes on, for device `key` (`namespace/name`) or node `node`. */
export const Topics = {
  twinUpdateResult: (key: string) => `${DEVICE_PREFIX}${key}/twin/update/result`,
  twinDelta: (key: string) => `${DEVICE_PREFIX}${key}/twin/update/delta`,
  twinDocument: (key: string) => `${DEVICE_PREFIX}${key}/twin/update/document`,
  twinGetResult: (key: string) => `${DEVICE_PREFIX}${key}/twin/get/result`,
  stateUpdateResult: (key: string) => `${DEVICE_PREFIX}${key}/state/update/result`,
  membershipGetResult: (node: string) => `${NODE_PREFIX}${node}/membership/get/result`,
  membershipUpdated: (node: string) => `${NODE_PREFIX}${node}/membership/updated`,
} as const;

/** KubeEdge's result codes (dtcommon: BadRequestCode, NotFoundCode, InternalErrorCode) and ours for size and floods. */
export const ResultCode = { BadRequest: 400, NotFound: 404, TooLarge: 413, TooMany: 429, Internal: 500 } as const;

/** dttype.BaseMessage. */
export interface BaseMessage {
  event_id: string;
  /** ms since the epoch. */
  timestamp: number;
}

/** dttype.Result: the answer to a refused request. */
export interface Result extends BaseMessage {
  code: number;
  reason: string;
}

/** dttype.TwinValue. */
export interface TwinValue {
  value?: string;
  metadata?: { timestamp?: number };
}

/** dttype.MsgTwin (without the versions, which KubeEdge strips from what devices see). */
export interface MsgTwin {
  expected?: TwinValue;
  actual?: TwinValue;
  optional?: boolean;
  metadata?: { type?: string };
}

/** dttype.DeviceTwinUpdate as received (`twin` entries: null means "delete", which Ledge refuses). */
export interface DeviceTwinUpdate extends BaseMessage {
  twin: Record<string, MsgTwin | null>;
}

/** dttype.DeviceTwinResult: twin/update/result (applied parts) and twin/get/result (the whole twin). */
export interface DeviceTwinResult extends BaseMessage {
  twin: Record<string, MsgTwin>;
}

/** dttype.DeviceTwinDelta: every twin with an expected value, and `delta` where expected ≠ actual. */
export interface DeviceTwinDelta extends BaseMessage {
  twin: Record<string, MsgTwin>;
  delta: Record<string, string>;
}

/** dttype.DeviceTwinDocument: each changed twin before and after. */
export interface DeviceTwinDocument extends BaseMessage {
  twin: Record<string, { last: MsgTwin | null; current: MsgTwin | null }>;
}

/** dttype.Device as membership messages carry it. */
export interface MemberDevice {
  id: string;
  name: string;
  description?: string;
  state?: string;
  last_online?: string;
}

/** dttype.MembershipGetResult. */
export interface MembershipGetResult extends BaseMessage {
  devices: MemberDevice[];
}

/** dttype.MembershipUpdate (Go writes a nil slice as null). */
export interface MembershipUpdate extends BaseMessage {
  added_devices: MemberDevice[] | null;
  removed_devices: MemberDevice[] | null;
}

/** dttype.DeviceMsg: state/update/result. */
export interface DeviceStateResult extends BaseMessage {
  device: { name: string; state?: string; lastOnlineTime?: string };
}

/** The model property of a device's property, if any. */
export function modelProperty(model: DeviceModel | undefined, name: string): ModelProperty | undefined {
  return model?.spec.properties?.find((p) => p.name === name);
}

/**
 * A property's twin as devices see it: `expected` is the value set locally over MQTT, else the
 * Device's desired value; `actual` the last reported value. `optional: false`: the twin is
 * declared by the Device and cannot be deleted from the edge.
 */
export function msgTwin(h: Held, model: DeviceModel | undefined, name: string, stored: StoredTwin | undefined): MsgTwin {
  const declared = h.device.spec.properties?.find((p) => p.name === name);
  const out: MsgTwin = {};
  if (stored?.expected) out.expected = { value: stored.expected.value, metadata: { timestamp: stored.expected.timestamp } };
  else if (declared?.desired?.value) {
    const ts = Number(declared.desired.metadata?.timestamp);
    out.expected = { value: declared.desired.value, ...(Number.isFinite(ts) && ts > 0 ? { metadata: { timestamp: ts } } : {}) };
  }
  if (stored?.reported) {
    const ts = Number(stored.reported.metadata?.timestamp);
    out.actual = { value: stored.reported.value, ...(Number.isFinite(ts) && ts > 0 ? { metadata: { timestamp: ts } } : {}) };
  }
  out.optional = false;
  out.metadata = { type: typeName(modelProperty(model, name)) };
  return out;
}

/** Every declared property's twin (twin/get/result). */
export function allTwins(h: Held, model: DeviceModel | undefined): Record<string, MsgTwin> {
  const twin: Record<string, MsgTwin> = {};
  for (const p of h.device.spec.properties ?? []) twin[p.name] = msgTwin(h, model, p.name, h.rec.twins[p.name]);
  return twin;
}

/** KubeEdge's BuildDeviceTwinDelta: undefined when no expected value differs from its actual one. */
export function buildDelta(h: Held, model: DeviceModel | undefined, base: BaseMessage): DeviceTwinDelta | undefined {
  const twin: Record<string, MsgTwin> = {};
  const delta: Record<string, string> = {};
  for (const p of h.device.spec.properties ?? []) {
    const t = msgTwin(h, model, p.name, h.rec.twins[p.name]);
    const expected = t.expected?.value;
    if (!expected) continue;
    if (expected !== (t.actual?.value ?? '')) delta[p.name] = expected;
    twin[p.name] = t;
  }
  return Object.keys(delta).length > 0 ? { ...base, twin, delta } : undefined;
}

/** The device as membership messages name it (KubeEdge's createDevice: id, name, the `description` label). */
export function memberDevice(h: Held, withState: boolean): MemberDevice {
  const description = h.device.metadata.labels?.description;
  return {
    id: h.key,
    name: h.name,
    ...(description ? { description } : {}),
    ...(withState && h.rec.state ? { state: h.rec.state } : {}),
    ...(withState && h.rec.lastOnlineTime ? { last_online: h.rec.lastOnlineTime } : {}),
  };
}

/** What a twin/update or twin/get payload must look like; the reason (KubeEdge-like) when it does not. */
export function parseTwinUpdate(body: unknown): { ok: true; msg: DeviceTwinUpdate } | { ok: false; reason: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return { ok: false, reason: 'Unmarshal update request body failed, please check the request: not a JSON object' };
  const b = body as Record<string, unknown>;
  if (b.event_id !== undefined && typeof b.event_id !== 'string')
    return { ok: false, reason: 'Unmarshal update request body failed, please check the request: event_id is not a string' };
  if (b.twin === undefined || b.twin === null) return { ok: false, reason: 'Update twin error, key:twin does not exist' };
  if (typeof b.twin !== 'object' || Array.isArray(b.twin)) return { ok: false, reason: 'Unmarshal update request body failed, please check the request: twin is not an object' };
  for (const [key, v] of Object.entries(b.twin as Record<string, unknown>)) {
    if (v === null) continue;
    if (typeof v !== 'object' || Array.isArray(v))
      return { ok: false, reason: `Unmarshal update request body failed, please check the request: twin ${short(key)} is not an object` };
    for (const part of ['expected', 'actual'] as const) {
      const tv = (v as Record<string, unknown>)[part];
      if (tv === undefined || tv === null) continue;
      if (typeof tv !== 'object' || Array.isArray(tv))
        return { ok: false, reason: `Unmarshal update request body failed, please check the request: twin ${short(key)} ${part} is not an object` };
      const value = (tv as Record<string, unknown>).value;
      if (value !== undefined && value !== null && typeof value !== 'string')
        return { ok: false, reason: `Unmarshal update request body failed, please check the request: twin ${short(key)} ${part}.value is not a string` };
    }
  }
  return {
    ok: true,
    msg: { event_id: typeof b.event_id === 'string' ? b.event_id : '', timestamp: typeof b.timestamp === 'number' ? b.timestamp : 0, twin: b.twin as DeviceTwinUpdate['twin'] },
  };
}

/** A client-given name for a reason: JSON-quoted, at most 64 characters. */
export function short(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}
