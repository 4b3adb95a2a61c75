/**
 * @module
 * The local control plane's validating admission for KubeEdge's device API
 * (devices.kubeedge.io): what the device webhook does for a real cluster (cloud/devicewebhook),
 * done inline. Creates and updates of Devices and DeviceModels with problems are refused as
 * 422 Invalid with one StatusCause per problem (field path, message), like every other
 * validation failure of this server. A Device is checked against its DeviceModel read from this
 * server's own store.
 */
import { DEVICE_GROUP, DEVICE_MODEL_PLURAL, DEVICE_PLURAL, type DeviceModel, validateDevice, validateDeviceModel } from '../shared/devices/index.js';
import type { StatusCause } from './errors.js';
import type { Store } from './store.js';
import type { KObject, ResourceType } from './types.js';

/** Storage key of DeviceModels (every served version of a custom resource shares it). */
const MODELS_KEY = `${DEVICE_GROUP}/${DEVICE_MODEL_PLURAL}`;

/**
 * Causes to refuse `obj` with (empty: admitted). `old` is the stored object on an update.
 *
 * An update that leaves the spec as it was (metadata, labels, finalizers, status) is admitted
 * without a look: `generation` only moves when the spec changes. A Device may have been created
 * before its model, or its model changed since; such a Device must still be labelled, have its
 * finalizers removed and be deleted, and a DeviceModel created under older rules must still be
 * editable in its metadata.
 */
export function admitDeviceObject(t: ResourceType, obj: KObject, old: KObject | undefined, store: Store): StatusCause[] {
  if (t.group !== DEVICE_GROUP) return [];
  if (old !== undefined && obj.metadata.generation === old.metadata.generation) return [];
  let problems: { field: string; message: string }[];
  if (t.resource === DEVICE_MODEL_PLURAL) {
    problems = validateDeviceModel(obj);
  } else if (t.resource === DEVICE_PLURAL) {
    // A Device whose model does not exist yet is admitted on its shape alone: apply order must
    // not matter (`kubectl apply -f dir/` sends files in name order, and a Device may come first).
    // EdgeCore checks desired values again when the model arrives.
    const ref = (obj as { spec?: { deviceModelRef?: { name?: unknown } } }).spec?.deviceModelRef?.name;
    const model = typeof ref === 'string' && ref !== '' ? store.get(MODELS_KEY, obj.metadata.namespace ?? '', ref)?.obj : undefined;
    problems = validateDevice(obj, model as DeviceModel | undefined);
  } else {
    return [];
  }
  return problems.map((p) => ({ reason: 'FieldValueInvalid', message: p.message, ...(p.field ? { field: p.field } : {}) }));
}
