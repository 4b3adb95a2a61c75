/**
 * @module
 * Validation of KubeEdge's device objects (devices.kubeedge.io/v1beta1) beyond what a CRD schema
 * can say: property types and ranges of desired and reported twin values, ReadOnly properties,
 * Device properties that their model does not have, reference shapes, cycles, and `configData`
 * values that KubeEdge cannot hand to a mapper. One implementation for every place that checks:
 * the local control plane's admission step, the webhook for real clusters, and the edge's twin.
 *
 * Facts carried over from KubeEdge (v1.23): its admission webhook refuses duplicate property names
 * in Devices and DeviceModels; EdgeCore turns every `configData` value into one protobuf wrapper
 * (`dataToAny`: strings, integers, floats, booleans) and drops the whole device when one is nested
 * or null; mapper-framework mappers crash on a Device property their model lacks; twin keys must
 * match `^[a-zA-Z0-9-_.,:/@#]{1,128}$` (ValidateTwinKey) to travel on the MQTT twin topics;
 * BOOLEAN values are exactly "true"/"false" (ValidateValue); cycles are milliseconds.
 *
 * Empty strings mean "not set": Go clients write `desired: {value: ""}` for every property without
 * a desired value (the field has no omitempty), and `minimum: ""` the same way.
 */
import { ACCESS_MODES, PROPERTY_TYPES, type DeviceModel, type ModelProperty } from './types.js';

/** One thing wrong with an object: where (a field path as the API server prints it) and what. */
export interface DeviceProblem {
  /** `spec.properties[1].desired.value`; '' for the object itself. */
  field: string;
  message: string;
}

/** More problems than this are summed up in one last entry (a hostile object must not make a huge answer). */
const MAX_PROBLEMS = 50;
/** Values quoted in messages are cut to this many characters. */
const MAX_QUOTED = 64;
const TWIN_KEY = /^[a-zA-Z0-9\-_.,:/@#]{1,128}$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const INT_TEXT = /^[+-]?\d+$/;
const FLOAT_TEXT = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const BASE64 = /^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const FLOAT32_MAX = 3.4028234663852886e38;
const NUMERIC_TYPES = new Set(['INT', 'FLOAT', 'DOUBLE']);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

function quote(v: unknown): string {
  const s = typeof v === 'string' ? v : String(v);
  return JSON.stringify(s.length > MAX_QUOTED ? `${s.slice(0, MAX_QUOTED)}...` : s);
}

/** Collects problems up to {@link MAX_PROBLEMS}, then only counts them. */
class Problems {
  readonly list: DeviceProblem[] = [];
  private dropped = 0;
  add(field: string, message: string): void {
    if (this.list.length < MAX_PROBLEMS) this.list.push({ field, message });
    else this.dropped++;
  }
  done(): DeviceProblem[] {
    if (this.dropped) this.list.push({ field: '', message: `and ${this.dropped} more problems` });
    return this.list;
  }
}

// ------------------------------------------------------------------ twin values

interface Bound {
  num: number;
  /** Set when the bound is an integer: INT values compare exactly. */
  big?: bigint;
}

/** A model's minimum/maximum: undefined when unset (absent or ''), null when it is not a finite number. */
function parseBound(v: unknown): Bound | undefined | null {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'number') return Number.isFinite(v) ? { num: v, ...(Number.isSafeInteger(v) ? { big: BigInt(v) } : {}) } : null;
  if (typeof v !== 'string') return null;
  const s = v.trim();
  if (INT_TEXT.test(s)) return { num: Number(s), big: BigInt(s) };
  if (!FLOAT_TEXT.test(s)) return null;
  const num = Number(s);
  return Number.isFinite(num) ? { num } : null;
}

/** Compares a parsed value with a bound: <0, 0, >0. */
function compare(value: { num: number; big?: bigint }, bound: Bound): number {
  if (value.big !== undefined && bound.big !== undefined) return value.big < bound.big ? -1 : value.big > bound.big ? 1 : 0;
  return value.num - bound.num;
}

/** The value as a number of the property's numeric type, or the reason it is not one. */
function parseNumeric(type: 'INT' | 'FLOAT' | 'DOUBLE', value: string): { num: number; big?: bigint } | string {
  if (type === 'INT') {
    if (!INT_TEXT.test(value)) return `${quote(value)} is not an INT`;
    const big = BigInt(value);
    if (big < INT64_MIN || big > INT64_MAX) return `${quote(value)} is out of range for INT (64-bit)`;
    return { num: Number(big), big };
  }
  if (!FLOAT_TEXT.test(value)) return `${quote(value)} is not a ${type}`;
  const num = Number(value);
  if (!Number.isFinite(num)) return `${quote(value)} is out of range for ${type}`;
  if (type === 'FLOAT' && Math.abs(num) > FLOAT32_MAX) return `${quote(value)} is out of range for FLOAT (32-bit)`;
  return { num };
}

/**
 * Checks one twin value against its model property: the type (INT: a base-10 integer within
 * int64; FLOAT/DOUBLE: a finite decimal number, FLOAT within float32; BOOLEAN: "true" or "false";
 * BYTES: standard base64; STRING, STREAM and an unset type: anything), the model's minimum and
 * maximum (numeric types), and, for a desired value, that the property is not ReadOnly.
 * Returns why the value is refused, or undefined.
 */
export function checkTwinValue(prop: ModelProperty, value: string, direction: 'desired' | 'reported'): string | undefined {
  if (direction === 'desired' && prop.accessMode === 'ReadOnly') return `property ${quote(prop.name)} is ReadOnly: a desired value cannot be set`;
  if (typeof value !== 'string') return `the value must be a string, not ${typeof value}`;
  const type = prop.type;
  switch (type) {
    case 'BOOLEAN':
      return value === 'true' || value === 'false' ? undefined : `${quote(value)} is not a BOOLEAN ("true" or "false")`;
    case 'BYTES':
      return BASE64.test(value) ? undefined : `${quote(value)} is not BYTES (standard base64)`;
    case 'INT':
    case 'FLOAT':
    case 'DOUBLE': {
      const n = parseNumeric(type, value);
      if (typeof n === 'string') return n;
      // A model bound that is not a number is reported by validateDeviceModel; here it is no bound.
      const min = parseBound(prop.minimum);
      if (min && compare(n, min) < 0) return `${quote(value)} is below the minimum ${quote(prop.minimum)} of property ${quote(prop.name)}`;
      const max = parseBound(prop.maximum);
      if (max && compare(n, max) > 0) return `${quote(value)} is above the maximum ${quote(prop.maximum)} of property ${quote(prop.name)}`;
      return undefined;
    }
    default:
      return undefined;
  }
}

// ------------------------------------------------------------------ shared shapes

function checkString(p: Problems, v: unknown, field: string): void {
  if (v !== undefined && typeof v !== 'string') p.add(field, `must be a string, not ${describe(v)}`);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${quote(v)}`;
}

/** `configData`: a map of scalars, because EdgeCore sends each value to the mapper as one protobuf wrapper. */
function checkConfigData(p: Problems, v: unknown, field: string): void {
  if (v === undefined || v === null) return;
  if (!isObj(v)) {
    p.add(field, `must be an object, not ${describe(v)}`);
    return;
  }
  for (const [k, x] of Object.entries(v)) {
    if (typeof x === 'string' || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x))) continue;
    p.add(
      `${field}.${k}`,
      `must be a string, number or boolean, not ${describe(x)} (KubeEdge hands each configData value to the mapper as one protobuf wrapper; nested objects, lists and null make EdgeCore drop the device)`,
    );
  }
}

function checkVisitors(p: Problems, v: unknown, field: string): void {
  if (v === undefined || v === null) return;
  if (!isObj(v)) {
    p.add(field, `must be an object, not ${describe(v)}`);
    return;
  }
  checkString(p, v.protocolName, `${field}.protocolName`);
  checkConfigData(p, v.configData, `${field}.configData`);
}

/** Property names are twin keys on the MQTT topics; KubeEdge refuses duplicates. */
function checkPropertyName(p: Problems, name: unknown, field: string, seen: Set<string>): name is string {
  if (typeof name !== 'string' || name === '') {
    p.add(field, 'Required value: a property needs a name');
    return false;
  }
  if (!TWIN_KEY.test(name)) {
    p.add(field, `${quote(name)} is not a valid property name (1-128 characters of a-z A-Z 0-9 - _ . , : / @ #, what a twin key may hold)`);
  }
  if (seen.has(name)) {
    p.add(field, `Duplicate value: ${quote(name)} (property names must be unique)`);
    return false;
  }
  seen.add(name);
  return true;
}

/** Cycles are milliseconds, int64 in KubeEdge's types: non-negative integers (0 = the mapper's default). */
function checkCycle(p: Problems, v: unknown, field: string): void {
  if (v === undefined || v === null) return;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) p.add(field, `${describe(v)} is not a cycle: a non-negative integer of milliseconds`);
}

function checkBoolean(p: Problems, v: unknown, field: string): void {
  if (v !== undefined && v !== null && typeof v !== 'boolean') p.add(field, `must be a boolean, not ${describe(v)}`);
}

function checkList(p: Problems, v: unknown, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    p.add(field, `must be a list, not ${describe(v)}`);
    return [];
  }
  return v;
}

function checkObject(p: Problems, v: unknown, field: string, required = false): Obj | undefined {
  if (v === undefined || v === null) {
    if (required) p.add(field, 'Required value');
    return undefined;
  }
  if (!isObj(v)) {
    p.add(field, `must be an object, not ${describe(v)}`);
    return undefined;
  }
  return v;
}

// ------------------------------------------------------------------ DeviceModel

/**
 * Problems of a DeviceModel: property names (present, twin keys, unique), type and accessMode
 * among KubeEdge's values, minimum/maximum numbers (strings or numbers) with minimum ≤ maximum
 * for INT/FLOAT/DOUBLE (ignored for other types, as KubeEdge does), visitors and configData shapes.
 */
export function validateDeviceModel(model: unknown): DeviceProblem[] {
  const p = new Problems();
  if (!isObj(model)) {
    p.add('', `a DeviceModel must be an object, not ${describe(model)}`);
    return p.done();
  }
  const spec = checkObject(p, model.spec, 'spec');
  if (!spec) return p.done();
  checkString(p, spec.protocol, 'spec.protocol');
  checkConfigData(p, spec.protocolConfigData, 'spec.protocolConfigData');
  const seen = new Set<string>();
  checkList(p, spec.properties, 'spec.properties').forEach((prop, i) => {
    const f = `spec.properties[${i}]`;
    if (!isObj(prop)) {
      p.add(f, `must be an object, not ${describe(prop)}`);
      return;
    }
    checkPropertyName(p, prop.name, `${f}.name`, seen);
    const type = prop.type;
    if (type !== undefined && type !== '' && !(PROPERTY_TYPES as readonly unknown[]).includes(type)) {
      p.add(`${f}.type`, `Unsupported value: ${quote(type)}: supported values: ${PROPERTY_TYPES.map((t) => `"${t}"`).join(', ')}`);
    }
    const mode = prop.accessMode;
    if (mode !== undefined && mode !== '' && !(ACCESS_MODES as readonly unknown[]).includes(mode)) {
      p.add(`${f}.accessMode`, `Unsupported value: ${quote(mode)}: supported values: ${ACCESS_MODES.map((t) => `"${t}"`).join(', ')}`);
    }
    for (const k of ['description', 'unit'] as const) checkString(p, prop[k], `${f}.${k}`);
    checkVisitors(p, prop.visitors, `${f}.visitors`);
    if (typeof type !== 'string' || !NUMERIC_TYPES.has(type)) return;
    const bounds: (Bound | undefined)[] = [];
    for (const k of ['minimum', 'maximum'] as const) {
      const b = parseBound(prop[k]);
      if (b === null) p.add(`${f}.${k}`, `${describe(prop[k])} is not a number (the ${k} of a ${type} property)`);
      bounds.push(b ?? undefined);
    }
    const [min, max] = bounds;
    if (min && max && compare(min, max) > 0) p.add(`${f}.minimum`, `${quote(prop.minimum)} is above the maximum ${quote(prop.maximum)}`);
  });
  return p.done();
}

// ------------------------------------------------------------------ Device

/**
 * Problems of a Device. Without its model (`model` undefined: not created yet; apply order must
 * not matter) only the shape is checked: deviceModelRef.name (required, an object name),
 * nodeName, protocol, property names (twin keys, unique), desired values being strings,
 * visitors, cycles, reportToCloud, pushMethod.anomalyDetection, methods (names unique, naming
 * the Device's properties), stateReport. With the model, also: every property is one of the
 * model's, and every non-empty desired value passes {@link checkTwinValue}.
 */
export function validateDevice(device: unknown, model: DeviceModel | undefined): DeviceProblem[] {
  const p = new Problems();
  if (!isObj(device)) {
    p.add('', `a Device must be an object, not ${describe(device)}`);
    return p.done();
  }
  const spec = checkObject(p, device.spec, 'spec', true);
  if (!spec) return p.done();

  const ref = checkObject(p, spec.deviceModelRef, 'spec.deviceModelRef', true);
  if (ref) {
    const name = ref.name;
    if (typeof name !== 'string' || name === '') p.add('spec.deviceModelRef.name', 'Required value: the name of the DeviceModel (same namespace)');
    else if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) p.add('spec.deviceModelRef.name', `${quote(name)} is not a valid object name (a DNS-1123 subdomain)`);
  }
  const node = spec.nodeName;
  if (node !== undefined && node !== '') {
    if (typeof node !== 'string') p.add('spec.nodeName', `must be a string, not ${describe(node)}`);
    else if (node.length > 253 || !DNS1123_SUBDOMAIN.test(node)) p.add('spec.nodeName', `${quote(node)} is not a valid node name (a DNS-1123 subdomain)`);
  }
  const protocol = checkObject(p, spec.protocol, 'spec.protocol');
  if (protocol) {
    checkString(p, protocol.protocolName, 'spec.protocol.protocolName');
    checkConfigData(p, protocol.configData, 'spec.protocol.configData');
  }
  const state = checkObject(p, spec.stateReport, 'spec.stateReport');
  if (state) {
    checkCycle(p, state.reportCycle, 'spec.stateReport.reportCycle');
    checkBoolean(p, state.reportToCloud, 'spec.stateReport.reportToCloud');
  }

  const modelProps = new Map<string, ModelProperty>();
  const modelSpec = isObj(model) && isObj(model.spec) ? model.spec : undefined;
  if (modelSpec && Array.isArray(modelSpec.properties)) {
    // The model comes from a store or a cache, not through validateDeviceModel: only well-formed entries count.
    for (const mp of modelSpec.properties as unknown[]) if (isObj(mp) && typeof mp.name === 'string') modelProps.set(mp.name, mp as unknown as ModelProperty);
  }
  const modelName = isObj(model) && isObj(model.metadata) ? model.metadata.name : undefined;

  const names = new Set<string>();
  checkList(p, spec.properties, 'spec.properties').forEach((prop, i) => {
    const f = `spec.properties[${i}]`;
    if (!isObj(prop)) {
      p.add(f, `must be an object, not ${describe(prop)}`);
      return;
    }
    const named = checkPropertyName(p, prop.name, `${f}.name`, names);
    const mp = named && modelSpec ? modelProps.get(prop.name as string) : undefined;
    if (named && modelSpec && !mp) {
      p.add(`${f}.name`, `${quote(prop.name)} is not a property of DeviceModel ${quote(modelName ?? '')} (its properties: ${[...modelProps.keys()].join(', ') || 'none'})`);
    }
    const desired = checkObject(p, prop.desired, `${f}.desired`);
    if (desired) {
      const value = desired.value;
      if (value !== undefined && typeof value !== 'string') {
        p.add(`${f}.desired.value`, `must be a string, not ${describe(value)} (twin values are strings: "12", "true", "23.5")`);
      } else if (mp && typeof value === 'string' && value !== '') {
        const why = checkTwinValue(mp, value, 'desired');
        if (why) p.add(`${f}.desired.value`, why);
      }
      const meta = checkObject(p, desired.metadata, `${f}.desired.metadata`);
      if (meta) for (const [k, x] of Object.entries(meta)) checkString(p, x, `${f}.desired.metadata.${k}`);
    }
    checkVisitors(p, prop.visitors, `${f}.visitors`);
    checkCycle(p, prop.reportCycle, `${f}.reportCycle`);
    checkCycle(p, prop.collectCycle, `${f}.collectCycle`);
    checkBoolean(p, prop.reportToCloud, `${f}.reportToCloud`);
    const push = checkObject(p, prop.pushMethod, `${f}.pushMethod`);
    if (push) checkConfigData(p, push.anomalyDetection, `${f}.pushMethod.anomalyDetection`);
  });

  const methods = new Set<string>();
  checkList(p, spec.methods, 'spec.methods').forEach((m, i) => {
    const f = `spec.methods[${i}]`;
    if (!isObj(m)) {
      p.add(f, `must be an object, not ${describe(m)}`);
      return;
    }
    if (typeof m.name !== 'string' || m.name === '') p.add(`${f}.name`, 'Required value: a method needs a name');
    else if (methods.has(m.name)) p.add(`${f}.name`, `Duplicate value: ${quote(m.name)} (method names must be unique)`);
    else methods.add(m.name);
    checkString(p, m.description, `${f}.description`);
    checkList(p, m.propertyNames, `${f}.propertyNames`).forEach((n, j) => {
      if (typeof n !== 'string') p.add(`${f}.propertyNames[${j}]`, `must be a string, not ${describe(n)}`);
      else if (!names.has(n)) p.add(`${f}.propertyNames[${j}]`, `${quote(n)} is not a property of this Device`);
    });
  });
  return p.done();
}
