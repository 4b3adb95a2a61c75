/**
 * @module
 * What a Device must be before it is sent to a mapper, and its fingerprint.
 *
 * KubeEdge's mapper-framework dereferences without checking: a Device property that is not in
 * its DeviceModel, or one without `visitors.configData`, crashes the mapper process (and with it
 * every device it serves); edgecore sends such devices anyway. Ledge checks first and does not
 * send an invalid device. A property without `desired` is sent with an empty one, as edgecore's
 * Go types (a struct value, never nil) always do.
 */
import { createHash } from 'node:crypto';
import { deviceToDmi, modelToDmi } from '../../../shared/dmi/index.js';
import type { DmiDevice, DmiDeviceModel } from '../../../shared/dmi/index.js';
import type { Device, DeviceModel } from '../../../shared/devices/index.js';
import { errorMessage } from '../../../shared/errors/index.js';

/** A Device as a mapper will get it, or why it cannot be sent. */
export type PreparedDevice = { ok: true; dmi: DmiDevice; fingerprint: string } | { ok: false; problem: string };

/** The protocol that routes a Device to a mapper; undefined for a device no mapper serves (MQTT-only). */
export function deviceProtocol(device: Device): string | undefined {
  const p = device.spec?.protocol?.protocolName;
  return typeof p === 'string' && p !== '' ? p : undefined;
}

/** The key (`ns/name`) of the DeviceModel a Device references, if any. */
export function deviceModelKey(device: Device): string | undefined {
  const ref = device.spec?.deviceModelRef?.name;
  return typeof ref === 'string' && ref !== '' ? `${device.metadata.namespace || 'default'}/${ref}` : undefined;
}

/**
 * Checks a Device against its model and converts it (model visitors and protocol config merged
 * in as defaults). Problems name the field, e.g. `spec.properties[1] "humidity": not in DeviceModel default/sensor`.
 */
export function prepareDevice(device: Device, model: DeviceModel | undefined): PreparedDevice {
  const ns = device.metadata.namespace || 'default';
  const ref = device.spec?.deviceModelRef?.name;
  if (!ref) return { ok: false, problem: 'spec.deviceModelRef.name is empty' };
  if (!model) return { ok: false, problem: `DeviceModel ${ns}/${ref} is not held on this node` };
  const modelProps = new Map((model.spec?.properties ?? []).map((p) => [p.name, p]));
  const props = device.spec?.properties ?? [];
  for (const [i, p] of props.entries()) {
    if (!p?.name) return { ok: false, problem: `spec.properties[${i}]: no name` };
    const mp = modelProps.get(p.name);
    if (!mp) return { ok: false, problem: `spec.properties[${i}] "${p.name}": not in DeviceModel ${ns}/${ref}` };
    // The conversion would fill in an empty configData (no crash), but a mapper told nothing about
    // where a property is read cannot serve it: refused here, with the field to fix.
    if (!isObject(p.visitors?.configData) && !isObject(mp.visitors?.configData)) {
      return { ok: false, problem: `spec.properties[${i}] "${p.name}": no visitors.configData (in the Device or its DeviceModel)` };
    }
  }
  let dmi: DmiDevice;
  try {
    dmi = deviceToDmi(device, model);
  } catch (err) {
    return { ok: false, problem: `cannot convert for DMI: ${errorMessage(err)}` };
  }
  for (const [i, p] of (dmi.spec?.properties ?? []).entries()) {
    // What a framework mapper dereferences without checking must be there, whatever the conversion did.
    if (!p.visitors?.configData) return { ok: false, problem: `spec.properties[${i}] "${p.name}": no visitors.configData after conversion` };
    p.desired ??= { value: '' };
  }
  return { ok: true, dmi, fingerprint: fingerprint(dmi) };
}

function isObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A DeviceModel as mappers get it, with its fingerprint. */
export function prepareModel(model: DeviceModel): { dmi: DmiDeviceModel; fingerprint: string } | { problem: string } {
  try {
    const dmi = modelToDmi(model);
    return { dmi, fingerprint: fingerprint(dmi) };
  } catch (err) {
    return { problem: `cannot convert for DMI: ${errorMessage(err)}` };
  }
}

/** Canonical JSON: object keys sorted, bytes as base64, lists of named items sorted by name (their order means nothing to a mapper). */
function canonical(v: unknown): unknown {
  if (v instanceof Uint8Array) return { $b: Buffer.from(v).toString('base64') };
  if (Array.isArray(v)) {
    const items = v.map(canonical);
    const named = v.every((x) => typeof x === 'object' && x !== null && typeof (x as { name?: unknown }).name === 'string');
    return named ? items.sort((a, b) => ((a as { name: string }).name < (b as { name: string }).name ? -1 : 1)) : items;
  }
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined && x !== null) out[k] = canonical(x);
    }
    return out;
  }
  return v;
}

/** A short stable hash of what a mapper would be sent: equal fingerprints, nothing to send. */
export function fingerprint(v: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify(canonical(v)))
    .digest('hex')
    .slice(0, 24);
}
