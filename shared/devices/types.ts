/**
 * @module
 * KubeEdge's device API, `devices.kubeedge.io/v1beta1` (v1.23 shapes: Device, DeviceModel and
 * the separate DeviceStatus), as plain JSON types, and the upstream twin report that edges send.
 * Field names are KubeEdge's; every field is optional where KubeEdge's Go types say `omitempty`.
 */

export const DEVICE_GROUP = 'devices.kubeedge.io';
export const DEVICE_VERSION = 'v1beta1';
export const DEVICE_API_VERSION = `${DEVICE_GROUP}/${DEVICE_VERSION}`;
export const DEVICE_PLURAL = 'devices';
export const DEVICE_MODEL_PLURAL = 'devicemodels';
export const DEVICE_STATUS_PLURAL = 'devicestatuses';

/** Property types of a DeviceModel. */
export const PROPERTY_TYPES = ['INT', 'FLOAT', 'DOUBLE', 'STRING', 'BOOLEAN', 'BYTES', 'STREAM'] as const;
export type PropertyType = (typeof PROPERTY_TYPES)[number];
export const ACCESS_MODES = ['ReadWrite', 'ReadOnly'] as const;
export type AccessMode = (typeof ACCESS_MODES)[number];

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
}

/** `configData`: free-form protocol settings (DMI carries each value as a google.protobuf.Any wrapper). */
export type ConfigData = Record<string, unknown>;

export interface ProtocolConfig {
  protocolName?: string;
  configData?: ConfigData;
}

export interface VisitorConfig {
  protocolName?: string;
  configData?: ConfigData;
}

export interface TwinProperty {
  /** The value, always a string (KubeEdge's encoding: "12", "true", "23.5"). */
  value: string;
  metadata?: Record<string, string>;
}

export interface PushMethod {
  http?: { hostName?: string; port?: number; requestPath?: string; timeout?: number };
  mqtt?: { address?: string; topic?: string; qos?: number; retained?: boolean };
  otel?: { endpointURL?: string };
  dbMethod?: Record<string, unknown>;
  anomalyDetection?: Record<string, unknown>;
}

export interface DeviceProperty {
  name: string;
  desired?: TwinProperty;
  visitors?: VisitorConfig;
  /** Milliseconds. */
  reportCycle?: number;
  /** Milliseconds. */
  collectCycle?: number;
  reportToCloud?: boolean;
  pushMethod?: PushMethod;
}

export interface DeviceMethod {
  name: string;
  description?: string;
  propertyNames?: string[];
}

export interface DeviceSpec {
  deviceModelRef?: { name: string };
  nodeName?: string;
  protocol?: ProtocolConfig;
  properties?: DeviceProperty[];
  methods?: DeviceMethod[];
  /** v1.23: how the device's state is reported. reportCycle in ms. */
  stateReport?: { reportToCloud?: boolean; reportCycle?: number };
}

export interface Device {
  apiVersion?: string;
  kind?: 'Device';
  metadata: ObjectMeta;
  spec: DeviceSpec;
  /** v1.23: only reportToCloud/reportCycle (the reported twins moved to DeviceStatus). */
  status?: { reportToCloud?: boolean; reportCycle?: number; [k: string]: unknown };
}

export interface ModelProperty {
  name: string;
  description?: string;
  type?: PropertyType;
  accessMode?: AccessMode;
  /** Strings in KubeEdge's v1beta1 (`minimum: "0"`); numbers are accepted too. */
  minimum?: string | number;
  maximum?: string | number;
  unit?: string;
  visitors?: VisitorConfig;
}

export interface DeviceModelSpec {
  protocol?: string;
  protocolConfigData?: ConfigData;
  properties?: ModelProperty[];
}

export interface DeviceModel {
  apiVersion?: string;
  kind?: 'DeviceModel';
  metadata: ObjectMeta;
  spec: DeviceModelSpec;
}

export interface Twin {
  propertyName: string;
  reported?: TwinProperty;
  observedDesired?: TwinProperty;
}

export interface DeviceStatusObject {
  apiVersion?: string;
  kind?: 'DeviceStatus';
  metadata: ObjectMeta;
  status?: {
    twins?: Twin[];
    state?: string;
    /** RFC 3339. */
    lastOnlineTime?: string;
    extensions?: Record<string, unknown>;
  };
}

/**
 * One device's reported values as an edge sends them upstream (ResourceType.DeviceStatus, group
 * twin): only what changed since the last report the cloud accepted; the cloud merges by
 * propertyName (latest wins).
 */
export interface DeviceReport {
  namespace: string;
  name: string;
  /** The Device's uid the edge holds (the cloud ignores a report for another incarnation). */
  uid?: string;
  twins?: Twin[];
  state?: string;
  /** RFC 3339. */
  lastOnlineTime?: string;
}

/** Content of an upstream `update` of resource `devicestatus` (no namespace, no name): a batch of device reports. */
export interface DeviceReportBatch {
  reports: DeviceReport[];
}

/** The Device's key, `namespace/name`. */
export function deviceKey(namespace: string | undefined, name: string): string {
  return `${namespace || 'default'}/${name}`;
}
