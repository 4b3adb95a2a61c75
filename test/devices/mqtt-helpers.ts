/**
 * Helpers of the MQTT device scenario tests (test/devices/mqtt-e2e.test.ts): the example MQTT
 * device bound to a node, the embedded broker's port from EdgeCore's log, a mosquitto_sub on a
 * device's topics whose messages are parsed, request/answer over MQTT matched by event_id, and
 * the device's DeviceStatus as the API holds it.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceStatusObject } from '../../shared/devices/index.js';
import type { Cluster } from '../helpers/cluster.js';
import { eventually, repoRoot, type Proc } from '../helpers/process.js';
import { mqttPub, mqttSub, type ClientFlags, type Sub } from '../eventbus/helpers.js';

export const DEVICE_API = { group: 'devices.kubeedge.io', version: 'v1beta1' } as const;

/** deploy/examples/devices/mqtt.yaml (its DeviceModel and Device) with the Device named `name` and bound to `node`. */
export function exampleDevice(name: string, node: string): string {
  const yaml = readFileSync(join(repoRoot, 'deploy/examples/devices/mqtt.yaml'), 'utf8');
  const out = yaml.replace(/^ {2}nodeName: edge-1$/m, `  nodeName: ${node}`).replace(/^ {2}name: mqtt-sensor-1$/m, `  name: ${name}`);
  if (!out.includes(`nodeName: ${node}`) || !out.includes(`name: ${name}`)) throw new Error('deploy/examples/devices/mqtt.yaml changed: cannot bind its Device to the test node');
  return out;
}

/** The embedded broker's port, from EdgeCore's `MQTT broker listening` log line (searched from `from` in its output). */
export async function brokerPort(edge: Proc, from = 0, timeoutMs = 30_000): Promise<number> {
  const re = /"msg":"MQTT broker listening".*?"url":"mqtt:\/\/127\.0\.0\.1:(\d+)"/;
  const m = await eventually(() => re.exec(edge.output().slice(from)), timeoutMs, `the edge's embedded MQTT broker to listen; output:\n${edge.output().slice(-2000)}`);
  return Number(m[1]);
}

/** Waits for a line matching `re` that appears in `p`'s output after offset `from`. */
export function logAfter(p: Proc, from: number, re: RegExp, timeoutMs = 20_000, what = String(re)): Promise<RegExpExecArray> {
  return eventually(() => re.exec(p.output().slice(from)), timeoutMs, `${what}; output since:\n${p.output().slice(from).slice(-2000)}`);
}

export interface MqttMessage {
  topic: string;
  body: unknown;
  raw: string;
}

type Json = Record<string, unknown>;

/** A mosquitto_sub whose lines are parsed as `topic JSON`; waits scan from a mark. */
export interface Watch {
  sub: Sub;
  messages(): MqttMessage[];
  /** The number of messages so far: a mark to wait after. */
  mark(): number;
  /** The first message from index `from` on `topic` for which `check` holds. */
  waitFor(topic: string, check: (body: Json) => boolean, from: number, timeoutMs: number, what: string): Promise<Json>;
  stop(): Promise<void>;
}

export async function watch(flags: ClientFlags, filter: string): Promise<Watch> {
  const sub = await mqttSub(flags, filter);
  const messages = (): MqttMessage[] =>
    sub.lines().map((l) => {
      const i = l.indexOf(' ');
      const topic = i < 0 ? l : l.slice(0, i);
      const raw = i < 0 ? '' : l.slice(i + 1);
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        body = undefined;
      }
      return { topic, body, raw };
    });
  return {
    sub,
    messages,
    mark: () => messages().length,
    waitFor: (topic, check, from, timeoutMs, what) =>
      eventually(
        () => {
          for (const m of messages().slice(from)) {
            if (m.topic !== topic || typeof m.body !== 'object' || m.body === null) continue;
            if (check(m.body as Json)) return m.body as Json;
          }
          return undefined;
        },
        timeoutMs,
        what,
      ).catch((err: Error) => {
        const seen = messages()
          .slice(from)
          .map((m) => `${m.topic} ${m.raw.slice(0, 400)}`);
        throw new Error(`${err.message}\nmessages seen on ${filter}:\n${seen.join('\n')}`);
      }),
    stop: () => sub.stop(),
  };
}

/**
 * Publishes `payload(eventId)` on `topic` (a new event_id each time) and waits up to `attemptMs`
 * for the answer on `resultTopic` carrying that event_id; retries until `accept(answer)` or
 * `timeoutMs` (for a request that is refused until the Device has reached the edge). The accepted answer.
 */
export async function request(
  flags: ClientFlags,
  w: Watch,
  topic: string,
  resultTopic: string,
  payload: (eventId: string) => string,
  accept: (answer: Json) => boolean,
  timeoutMs: number,
  what: string,
  attemptMs = 2000,
): Promise<Json> {
  const deadline = Date.now() + timeoutMs;
  let last: Json | undefined;
  for (;;) {
    const id = randomUUID();
    const from = w.mark();
    const r = await mqttPub(flags, topic, payload(id));
    if (r.code !== 0) throw new Error(`mosquitto_pub ${topic} exited ${r.code}: ${r.err}`);
    const answer = await w
      .waitFor(resultTopic, (b) => b.event_id === id, from, Math.max(100, Math.min(attemptMs, deadline - Date.now())), `the answer to ${id}`)
      .catch(() => undefined);
    if (answer) {
      last = answer;
      if (accept(answer)) return answer;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last answer on ${resultTopic}: ${JSON.stringify(last)}`);
  }
}

/** Twin-update payload: one actual value of `prop`. */
export function actualUpdate(prop: string, value: string, type = 'float'): (eventId: string) => string {
  return (eventId) => JSON.stringify({ event_id: eventId, timestamp: 0, twin: { [prop]: { actual: { value }, metadata: { type } } } });
}

export const twinGet = (eventId: string): string => JSON.stringify({ event_id: eventId, timestamp: 0 });

/** An answer that is no refusal (KubeEdge's Result carries a code). */
export const succeeded = (b: Json): boolean => b.code === undefined;

/** A twin of a twin/get or twin/update result. */
export function twinOf(b: Json, prop: string): { expected?: { value?: string }; actual?: { value?: string } } | undefined {
  return (b.twin as Record<string, { expected?: { value?: string }; actual?: { value?: string } }> | undefined)?.[prop];
}

export async function deviceStatus(c: Cluster, name: string, namespace = 'default'): Promise<DeviceStatusObject | undefined> {
  return (await c.objects.getNamespacedCustomObject({ ...DEVICE_API, namespace, plural: 'devicestatuses', name }).catch(() => undefined)) as DeviceStatusObject | undefined;
}

export function reportedValue(s: DeviceStatusObject | undefined, prop: string): string | undefined {
  return s?.status?.twins?.find((t) => t.propertyName === prop)?.reported?.value;
}

/** Waits until the DeviceStatus shows `value` reported for `prop`; the failure shows the last object. */
export async function reportedIs(c: Cluster, name: string, prop: string, value: string, timeoutMs: number): Promise<DeviceStatusObject> {
  let last: DeviceStatusObject | undefined;
  return eventually(
    async () => {
      last = await deviceStatus(c, name);
      return reportedValue(last, prop) === value ? last : undefined;
    },
    timeoutMs,
    `DeviceStatus ${name} to show ${prop} reported ${value}`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last DeviceStatus: ${JSON.stringify(last)}`);
  });
}
