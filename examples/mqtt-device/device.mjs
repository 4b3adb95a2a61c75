#!/usr/bin/env node
/**
 * @module
 * An MQTT-only device for Ledge (or KubeEdge) without a mapper: it speaks the device twin
 * topics of the node's MQTT broker directly.
 *
 * - every --interval seconds it publishes its readings as twin actual values to
 *   `$hw/events/device/{namespace}/{name}/twin/update`
 *   (`{"event_id":"","timestamp":…,"twin":{"temperature":{"actual":{"value":"23.5"},"metadata":{"type":"float"}}}}`);
 * - it subscribes to `…/twin/update/delta` (desired values that differ from the actual ones,
 *   `{"delta":{"temperature":"30"},…}`) and applies them: the property takes the desired value
 *   (a setpoint, a switch) and the next reading reports it;
 * - at start it asks `…/twin/get` for the current twin and applies the desired (`expected`)
 *   values of the `…/twin/get/result` answer, so a restarted device picks up its setpoint;
 * - it reports `online` on `…/state/update` at start.
 *
 * Needs Node ≥ 18 and the `mqtt` package (`npm i mqtt`). The Device (with its DeviceModel)
 * must exist in the cluster with `spec.nodeName` set to the node whose broker this talks to.
 *
 *   node device.mjs --name thermometer-1 [--namespace default] [--broker mqtt://127.0.0.1:1883]
 *                   [--property temperature:float --property power:boolean] [--interval 5]
 */
import { parseArgs } from 'node:util';
import { connect } from 'mqtt';

const { values: args } = parseArgs({
  options: {
    broker: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
    namespace: { type: 'string', default: 'default' },
    name: { type: 'string' },
    property: { type: 'string', multiple: true },
    interval: { type: 'string', default: '5' },
    count: { type: 'string' },
    username: { type: 'string' },
    password: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (args.help || !args.name) {
  process.stdout.write(
    'Usage: node device.mjs --name <device> [--namespace default] [--broker mqtt://127.0.0.1:1883]\n' +
      '                      [--property name:type ...] [--interval seconds] [--count n] [--username u --password p]\n' +
      'Types: int, float, double, boolean, string (default: --property temperature:float --property humidity:float).\n',
  );
  process.exit(args.help ? 0 : 2);
}

const intervalMs = Math.max(10, Math.round(Number(args.interval) * 1000));
if (!Number.isFinite(intervalMs)) {
  process.stderr.write(`--interval must be a number of seconds (got ${args.interval})\n`);
  process.exit(2);
}
const maxPublishes = args.count === undefined ? Number.POSITIVE_INFINITY : Number(args.count);

/** The simulated properties: name → { type, value }. */
const properties = new Map();
for (const spec of args.property ?? ['temperature:float', 'humidity:float']) {
  const [name, type = 'string'] = spec.split(':');
  if (!name || !['int', 'float', 'double', 'boolean', 'string'].includes(type)) {
    process.stderr.write(`--property ${spec}: expected name:type with type int, float, double, boolean or string\n`);
    process.exit(2);
  }
  properties.set(name, { type, value: initialValue(name, type) });
}

function initialValue(name, type) {
  if (type === 'boolean') return 'false';
  if (type === 'string') return '';
  if (name.includes('humid')) return '45';
  return type === 'int' ? '21' : '21.5';
}

/** A free-running sensor drifts a little between readings; a property given a desired value holds it (a setpoint, a switch). */
function drift(p) {
  if (!p.held && (p.type === 'float' || p.type === 'double')) return String(Number((Number(p.value) + (Math.random() - 0.5) * 0.2).toFixed(2)));
  return p.value;
}

const device = `${args.namespace}/${args.name}`;
const base = `$hw/events/device/${device}`;
const log = (msg) => process.stdout.write(`${new Date().toISOString()} ${msg}\n`);

const client = connect(args.broker, {
  clientId: `ledge-example-${args.name}-${process.pid}`,
  username: args.username,
  password: args.password,
  reconnectPeriod: 2000,
});

function publish(suffix, body) {
  client.publish(`${base}${suffix}`, JSON.stringify({ event_id: '', timestamp: Date.now(), ...body }), { qos: 1 });
}

/** Applies desired values: `{ name: "value" }`. Unknown properties and wrong types are reported and ignored. Returns whether anything changed. */
function applyDesired(desired, source) {
  let changed = false;
  for (const [name, value] of Object.entries(desired)) {
    const p = properties.get(name);
    if (!p) {
      log(`${source}: ${name} is not a property of this device; ignored`);
      continue;
    }
    if (typeof value !== 'string' || !fits(p.type, value)) {
      log(`${source}: ${name}=${JSON.stringify(value)} is not a ${p.type}; ignored`);
      continue;
    }
    if (p.value !== value) {
      log(`${source}: ${name} := ${value}`);
      changed = true;
    }
    p.value = value;
    p.held = true;
  }
  return changed;
}

function fits(type, value) {
  if (type === 'int') return /^[+-]?\d+$/.test(value.trim());
  if (type === 'float' || type === 'double') return value.trim() !== '' && Number.isFinite(Number(value));
  if (type === 'boolean') return value === 'true' || value === 'false';
  return true;
}

let published = 0;
let timer;

function report() {
  const twin = {};
  for (const [name, p] of properties) {
    p.value = drift(p);
    twin[name] = { actual: { value: p.value }, metadata: { type: p.type } };
  }
  publish('/twin/update', { twin });
  published++;
  log(`reported ${[...properties].map(([n, p]) => `${n}=${p.value}`).join(' ')}`);
  if (published >= maxPublishes) {
    clearInterval(timer);
    client.end(false, {}, () => process.exit(0));
  }
}

client.on('connect', () => {
  log(`connected to ${args.broker} as device ${device}`);
  client.subscribe([`${base}/twin/update/delta`, `${base}/twin/get/result`, `${base}/twin/update/result`], { qos: 1 }, (err) => {
    if (err) {
      log(`subscribe failed: ${err.message}`);
      return;
    }
    publish('/state/update', { state: 'online' });
    publish('/twin/get', {});
    if (!timer) {
      report();
      timer = setInterval(report, intervalMs);
    }
  });
});

client.on('message', (topic, payload) => {
  let msg;
  try {
    msg = JSON.parse(payload.toString());
  } catch {
    log(`${topic}: not JSON; ignored`);
    return;
  }
  if (topic.endsWith('/twin/update/delta')) {
    // Report the new values at once rather than at the next interval.
    if (applyDesired(msg.delta ?? {}, 'delta') && timer) report();
  } else if (topic.endsWith('/twin/get/result')) {
    // The twin document: each property's expected (desired) and actual values.
    const desired = {};
    for (const [name, t] of Object.entries(msg.twin ?? {})) if (t?.expected?.value !== undefined) desired[name] = t.expected.value;
    applyDesired(desired, 'twin/get');
  } else if (topic.endsWith('/twin/update/result') && msg.code !== undefined && msg.code !== 200) {
    // Ledge answers a refused update (wrong type, unknown property…) with a code and a reason.
    log(`update refused: ${msg.code} ${msg.reason ?? ''}`);
  }
});

client.on('error', (err) => log(`mqtt: ${err.message}`));
client.on('offline', () => log('broker unreachable; retrying'));

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    clearInterval(timer);
    client.end(false, {}, () => process.exit(0));
  });
}
