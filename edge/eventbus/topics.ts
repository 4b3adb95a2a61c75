/**
 * @module
 * MQTT topic names and filters (MQTT 3.1.1 §4.7): validation, matching, and the smallest set of
 * filters that covers a set of filters. The external broker gets that smallest set, because a
 * broker may deliver one copy of a message per overlapping subscription (Mosquitto 2 does), and
 * one SUBSCRIBE per handler would give DeviceTwin the same message twice.
 */
import { MqttError } from '../../shared/errors/index.js';

const MAX_TOPIC_BYTES = 65_535;

/** Throws MqttError unless `topic` is a topic name a client may publish to (no wildcards). */
export function checkTopicName(topic: string): void {
  if (typeof topic !== 'string' || topic.length === 0) throw new MqttError('an MQTT topic must be a non-empty string');
  if (topic.includes('+') || topic.includes('#')) throw new MqttError(`MQTT topic "${topic}" has a wildcard (+ or #): one can publish only to a topic name`);
  checkCommon(topic, 'topic');
}

/** Throws MqttError unless `filter` is a valid topic filter (`+` a whole level, `#` the whole last level). */
export function checkTopicFilter(filter: string): void {
  if (typeof filter !== 'string' || filter.length === 0) throw new MqttError('an MQTT topic filter must be a non-empty string');
  checkCommon(filter, 'topic filter');
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) throw new MqttError(`MQTT topic filter "${filter}": # must be the whole last level`);
    if (l.includes('+') && l !== '+') throw new MqttError(`MQTT topic filter "${filter}": + must be a whole level`);
  }
}

function checkCommon(s: string, what: string): void {
  if (s.includes('\u0000')) throw new MqttError(`MQTT ${what} has a NUL character`);
  if (Buffer.byteLength(s) > MAX_TOPIC_BYTES) throw new MqttError(`MQTT ${what} is over ${MAX_TOPIC_BYTES} bytes`);
}

const isWildcard = (level: string | undefined): boolean => level === '+' || level === '#';

/**
 * Whether `topic` matches `filter`. `#` also matches its parent level (`a/#` matches `a`); a
 * filter starting with a wildcard does not match a topic starting with `$` (§4.7.2).
 */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  if (topic.startsWith('$') && isWildcard(f[0])) return false;
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/** Whether every topic that `b` matches is matched by `a` as well. */
export function filterCovers(a: string, b: string): boolean {
  const A = a.split('/');
  const B = b.split('/');
  // `b` may match a `$` topic only when its first level is a literal starting with `$`.
  if (isWildcard(A[0]) && B[0]!.startsWith('$')) return false;
  for (let i = 0; i < A.length; i++) {
    const x = A[i];
    if (x === '#') return true;
    if (i >= B.length) return false;
    const y = B[i];
    if (y === '#') return false;
    if (x === '+') continue;
    if (y === '+' || x !== y) return false;
  }
  return A.length === B.length;
}

/** The filters of `filters` that no other one covers (duplicates once), sorted: what to subscribe to. */
export function minimalCover(filters: Iterable<string>): string[] {
  const all = [...new Set(filters)];
  return all.filter((f) => !all.some((g) => g !== f && filterCovers(g, f))).sort();
}
