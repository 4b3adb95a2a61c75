/**
 * @module
 * Options of the device validation webhook, with every default in one place.
 */
import type { DeviceModel } from '../../shared/devices/index.js';

/** Reads a DeviceModel (e.g. from the DeviceController's informer cache); undefined when it does not exist. */
export type ModelLookup = (namespace: string, name: string) => Promise<DeviceModel | undefined>;

export interface DeviceWebhookOptions {
  /**
   * Listen address. Default '127.0.0.1', like CloudHub and CloudStream: kube-apiserver reaches
   * the webhook through a Service, so in a pod it must be set to listen on the pod IP ('0.0.0.0').
   */
  host: string;
  /** Listen port; 0 picks a free one. Default 9443 (unprivileged; the Service maps 443 to it). */
  port: number;
  /** PEM serving certificate: its names must include the Service's DNS name (`<svc>.<ns>.svc`). */
  certFile: string;
  /** PEM private key of `certFile`. */
  keyFile: string;
  /** Where a Device's model is read from. */
  models: ModelLookup;
  /**
   * Largest AdmissionReview body read, in bytes; a bigger one is answered 413. Default 8 MiB:
   * a review carries the object and, on updates, the old object, each up to kube-apiserver's
   * 3 MiB request limit.
   */
  maxBodyBytes: number;
  /** A request must arrive whole within this time (slow senders are cut). Default 10000. */
  requestTimeoutMs: number;
  /** Connections served at once; more are refused at accept. Default 64. */
  maxConnections: number;
}

/** The webhook's defaults, the one place they are written. */
export const defaultDeviceWebhookOptions = {
  host: '127.0.0.1',
  port: 9443,
  maxBodyBytes: 8 * 1024 * 1024,
  requestTimeoutMs: 10_000,
  maxConnections: 64,
} as const satisfies Partial<DeviceWebhookOptions>;

/** What a caller must give; the rest defaults. */
export type DeviceWebhookConfig = Pick<DeviceWebhookOptions, 'certFile' | 'keyFile' | 'models'> & Partial<DeviceWebhookOptions>;

/** Merges with the defaults and checks the numbers; bad values throw TypeError at construction. */
export function resolveDeviceWebhookOptions(config: DeviceWebhookConfig): DeviceWebhookOptions {
  const o: DeviceWebhookOptions = { ...defaultDeviceWebhookOptions, ...stripUndefined(config) } as DeviceWebhookOptions;
  if (!o.certFile || !o.keyFile) throw new TypeError('device webhook: certFile and keyFile are required (kube-apiserver calls webhooks over HTTPS only)');
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw new TypeError(`device webhook: port ${o.port} is not a TCP port`);
  for (const k of ['maxBodyBytes', 'requestTimeoutMs', 'maxConnections'] as const) {
    if (!Number.isInteger(o[k]) || o[k] <= 0) throw new TypeError(`device webhook: ${k} must be a positive integer, not ${o[k]}`);
  }
  if (typeof o.models !== 'function') throw new TypeError('device webhook: models must be a function (namespace, name) => Promise<DeviceModel | undefined>');
  return o;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
