/**
 * @module
 * The device validation webhook for clusters with a real kube-apiserver: a
 * ValidatingWebhookConfiguration (deploy/kubernetes/device-webhook.yaml) sends CREATE and UPDATE
 * of devices.kubeedge.io Devices and DeviceModels here, and they are checked with the rules of
 * shared/devices (types and ranges of desired values, ReadOnly properties, properties the model
 * lacks, reference and cycle shapes, configData a mapper cannot receive). Create it with the
 * serving certificate and a DeviceModel lookup, then `start()`.
 */
export { createDeviceWebhook, HEALTHZ_PATH, VALIDATE_PATH } from './webhook.js';
export type { DeviceWebhook } from './webhook.js';
export { defaultDeviceWebhookOptions, resolveDeviceWebhookOptions } from './options.js';
export type { DeviceWebhookConfig, DeviceWebhookOptions, ModelLookup } from './options.js';
export { ADMISSION_API_VERSION, reviewDevices } from './review.js';
export type { AdmissionReviewResponse, DenialStatus, MalformedReview } from './review.js';
