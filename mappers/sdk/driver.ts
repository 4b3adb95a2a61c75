/**
 * @module
 * What a protocol driver implements for the mapper SDK: mapper-framework's driver shape
 * (`InitDevice`, `GetDeviceData`, `SetDeviceData`, `GetDeviceStates`, `StopDevice`), in
 * TypeScript and with promises. The SDK owns everything else (DMI, cycles, reports,
 * retries); a driver only talks to its devices.
 */
import type { AccessMode, ConfigData, Device, DeviceModel, DeviceProperty, ModelProperty, PropertyType } from '../../shared/devices/index.js';
import { PROPERTY_TYPES } from '../../shared/devices/index.js';

/** One property of a running device, as the driver sees it: the Device's entry joined with its model's. */
export interface DriverProperty {
  name: string;
  /**
   * The model's type, upper case. When the model does not say, the visitor's `dataType`
   * (mapper-framework samples write `dataType: int`), else STRING.
   */
  type: PropertyType;
  /** ReadOnly properties are never written. Default ReadWrite (mapper-framework writes unless ReadOnly). */
  accessMode: AccessMode;
  /** The model's bounds, parsed (undefined when absent or not a number). */
  minimum?: number;
  maximum?: number;
  unit?: string;
  /** The Device's property as received (desired, cycles, pushMethod…). */
  spec: DeviceProperty;
  /** The model's property, when the model has it. */
  model?: ModelProperty;
}

/** A device the driver has opened. Values travel as strings, KubeEdge's twin encoding ("12", "23.5", "true"). */
export interface DriverDevice {
  /**
   * Reads one property now. `visitor` is the property's `visitors.configData` (the Device's
   * over the model's defaults; `{}` when there is none).
   */
  read(property: DriverProperty, visitor: ConfigData): Promise<string>;
  /** Writes a desired value (only called for ReadWrite properties). */
  write(property: DriverProperty, visitor: ConfigData, value: string): Promise<void>;
  /** The device's state for ReportDeviceStates (KubeEdge's words: ok, online, offline, disconnected, unhealthy, unknown). */
  state(): Promise<string>;
  /** Releases the device (connections, timers). Called once; the object is not used after. */
  stop(): Promise<void>;
}

/** A protocol driver: opens devices of its protocol. */
export interface Driver {
  /**
   * Opens `device` (its `spec.protocol.configData` says how to reach it). Throwing means the
   * device cannot be used now: the SDK logs it once and tries again with backoff.
   */
  init(device: Device, model: DeviceModel | undefined): Promise<DriverDevice>;
}

function toNumber(v: string | number | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function typeOf(model: ModelProperty | undefined, visitor: ConfigData): PropertyType {
  const declared = model?.type?.toUpperCase();
  if (declared && (PROPERTY_TYPES as readonly string[]).includes(declared)) return declared as PropertyType;
  // mapper-framework drivers read `dataType` from the visitor (lower case: int, float, double, boolean, string).
  const dataType = typeof visitor.dataType === 'string' ? visitor.dataType.toUpperCase() : '';
  if (dataType === 'INTEGER') return 'INT';
  if ((PROPERTY_TYPES as readonly string[]).includes(dataType)) return dataType as PropertyType;
  return 'STRING';
}

/** The property's visitor configData: the Device's entries over the model property's defaults. */
export function visitorOf(spec: DeviceProperty, model: ModelProperty | undefined): ConfigData {
  return { ...(model?.visitors?.configData ?? {}), ...(spec.visitors?.configData ?? {}) };
}

/** Joins a Device property with its model property (the SDK does this; exported for drivers' tests). */
export function driverProperty(spec: DeviceProperty, model: ModelProperty | undefined): DriverProperty {
  const visitor = visitorOf(spec, model);
  const p: DriverProperty = {
    name: spec.name,
    type: typeOf(model, visitor),
    accessMode: model?.accessMode === 'ReadOnly' ? 'ReadOnly' : 'ReadWrite',
    spec,
  };
  const minimum = toNumber(model?.minimum);
  const maximum = toNumber(model?.maximum);
  if (minimum !== undefined) p.minimum = minimum;
  if (maximum !== undefined) p.maximum = maximum;
  if (model?.unit) p.unit = model.unit;
  if (model) p.model = model;
  return p;
}
