/**
 * @module
 * KubeEdge's device API (devices.kubeedge.io/v1beta1) as shared by CloudCore, EdgeCore, the
 * local control plane and the mapper SDK: types, and the validation of a Device against its model.
 */
export * from './types.js';
export * from './validate.js';
