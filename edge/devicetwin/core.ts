/**
 * @module
 * The twin core's interface: what the device adapters (MQTT in ./mqtt.ts, DMI in ./dmi/) use.
 * Every reported value and state, from either adapter, goes through {@link TwinCore.report} /
 * {@link TwinCore.reportState}: one validation, one durable store, one upstream path.
 * The implementation is ./twins.ts (`TwinRegistry`).
 */
import type { Device, DeviceModel, TwinProperty } from '../../shared/devices/index.js';

/** A device the node holds, with its model (undefined while the node does not hold the model). */
export interface TwinEntry {
  device: Device;
  model?: DeviceModel;
}

/** One property's new values, as an adapter received them. */
export interface TwinUpdate {
  propertyName: string;
  /** The value the device reports. */
  reported?: TwinProperty;
  /** The desired value the device says it acts on (DMI mappers report it; an empty value means "none"). */
  observedDesired?: TwinProperty;
}

export interface TwinCore {
  list(): TwinEntry[];
  get(namespace: string, name: string): TwinEntry | undefined;
  /** Validates against the model (unknown device → DeviceUnknownError; unknown property, wrong type, out of range → DeviceInvalidError), stores durably, marks dirty. Resolves once durable. */
  report(namespace: string, name: string, twins: TwinUpdate[], source: 'mqtt' | 'dmi'): Promise<void>;
  reportState(namespace: string, name: string, state: string, source: 'mqtt' | 'dmi'): Promise<void>;
  /** After MetaManager applied a Device change (and once per held device at start, op 'add'). */
  onDeviceChange(l: (ev: { op: 'add' | 'update' | 'delete'; entry: TwinEntry; previous?: TwinEntry; specChanged: boolean }) => void): () => void;
  onModelChange(l: (ev: { op: 'add' | 'update' | 'delete'; model: DeviceModel }) => void): () => void;
}

/** The event {@link TwinCore.onDeviceChange} listeners get. */
export type DeviceChangeEvent = Parameters<Parameters<TwinCore['onDeviceChange']>[0]>[0];
/** The event {@link TwinCore.onModelChange} listeners get. */
export type ModelChangeEvent = Parameters<Parameters<TwinCore['onModelChange']>[0]>[0];
