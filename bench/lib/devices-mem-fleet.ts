/**
 * @module
 * The device fleet of bench/devices-memory.ts: one DeviceModel and N Devices of protocol
 * `virtualProtocol` (served by the virtual mapper, dist/mappers/virtual.js), created through
 * @kubernetes/client-node's CustomObjectsApi, and a look at their DeviceStatus objects (how many
 * carry a reported value newer than a given moment: the twins are live end to end).
 *
 * Each Device has three properties: `temperature` and `humidity` (FLOAT, ReadWrite, read by the
 * mapper every `cycleMs` and reported to the cloud: one ReportDeviceStatus per device per cycle,
 * both twins in it) and `mode` (STRING, ReadOnly, not read by the mapper: the benchmark's MQTT client
 * sets its actual value on the embedded broker).
 */
import type * as k8s from '@kubernetes/client-node';
import { sleep } from './pods-cluster.js';

export const DEVICE_GROUP = 'devices.kubeedge.io';
export const DEVICE_VERSION = 'v1beta1';
export const NAMESPACE = 'default';
export const MODEL_NAME = 'mem-sensor';

export const deviceName = (i: number): string => `mem-dev-${String(i).padStart(4, '0')}`;

export function deviceModel(): Record<string, unknown> {
  return {
    apiVersion: `${DEVICE_GROUP}/${DEVICE_VERSION}`,
    kind: 'DeviceModel',
    metadata: { name: MODEL_NAME, namespace: NAMESPACE },
    spec: {
      protocol: 'virtualProtocol',
      properties: [
        { name: 'temperature', type: 'FLOAT', accessMode: 'ReadWrite', minimum: '-40', maximum: '125', unit: 'Celsius' },
        { name: 'humidity', type: 'FLOAT', accessMode: 'ReadWrite', minimum: '0', maximum: '100', unit: '%' },
        { name: 'mode', type: 'STRING', accessMode: 'ReadOnly' },
      ],
    },
  };
}

export function device(i: number, node: string, cycleMs: number, stateCycleMs: number): Record<string, unknown> {
  const reported = (name: string, desired: string) => ({
    name,
    desired: { value: desired },
    visitors: { protocolName: 'virtualProtocol', configData: { dataType: 'float' } },
    collectCycle: cycleMs,
    reportCycle: cycleMs,
    reportToCloud: true,
  });
  return {
    apiVersion: `${DEVICE_GROUP}/${DEVICE_VERSION}`,
    kind: 'Device',
    metadata: { name: deviceName(i), namespace: NAMESPACE, labels: { model: MODEL_NAME } },
    spec: {
      deviceModelRef: { name: MODEL_NAME },
      nodeName: node,
      protocol: { protocolName: 'virtualProtocol' },
      properties: [
        reported('temperature', '30'),
        reported('humidity', '60'),
        { name: 'mode', visitors: { protocolName: 'virtualProtocol', configData: { dataType: 'string' } }, reportToCloud: false },
      ],
      stateReport: { reportToCloud: true, reportCycle: stateCycleMs },
    },
  };
}

/** Creates the model (retrying until CloudCore has installed the CRDs), then the devices, `concurrency` at a time. */
export async function createFleet(
  objects: k8s.CustomObjectsApi,
  o: { devices: number; node: string; cycleMs: number; stateCycleMs: number; concurrency: number; crdTimeoutMs: number },
): Promise<void> {
  const deadline = Date.now() + o.crdTimeoutMs;
  for (;;) {
    try {
      await objects.createNamespacedCustomObject({ group: DEVICE_GROUP, version: DEVICE_VERSION, namespace: NAMESPACE, plural: 'devicemodels', body: deviceModel() });
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`DeviceModel not created within ${o.crdTimeoutMs} ms (are the device CRDs installed?): ${(err as Error).message}`);
      await sleep(500);
    }
  }
  let next = 0;
  const worker = async () => {
    while (next < o.devices) {
      const i = next++;
      await objects.createNamespacedCustomObject({
        group: DEVICE_GROUP,
        version: DEVICE_VERSION,
        namespace: NAMESPACE,
        plural: 'devices',
        body: device(i, o.node, o.cycleMs, o.stateCycleMs),
      });
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
}

interface StatusList {
  items?: { metadata?: { name?: string }; status?: { twins?: { propertyName?: string; reported?: { metadata?: { timestamp?: string } } }[]; lastOnlineTime?: string } }[];
}

/** DeviceStatus objects of the fleet: how many exist, how many have a reported twin, how many one newer than `sinceMs`. */
export async function fleetStatus(objects: k8s.CustomObjectsApi, sinceMs: number): Promise<{ objects: number; reported: number; freshSince: number }> {
  const list = (await objects.listNamespacedCustomObject({ group: DEVICE_GROUP, version: DEVICE_VERSION, namespace: NAMESPACE, plural: 'devicestatuses' })) as StatusList;
  let reported = 0;
  let fresh = 0;
  const items = (list.items ?? []).filter((s) => s.metadata?.name?.startsWith('mem-dev-'));
  for (const s of items) {
    const stamps = (s.status?.twins ?? []).map((t) => Number(t.reported?.metadata?.timestamp ?? Number.NaN)).filter((x) => Number.isFinite(x));
    if (stamps.length === 0) continue;
    reported++;
    if (Math.max(...stamps) >= sinceMs) fresh++;
  }
  return { objects: items.length, reported, freshSince: fresh };
}
