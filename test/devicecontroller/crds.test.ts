/**
 * The device CRDs on the local control plane: objects using every field of KubeEdge's v1beta1
 * shapes are accepted with strict field validation and come back unchanged (nothing pruned),
 * free-form config data is kept as given, the installed CRDs keep every schema keyword (client-node
 * would drop some: see crdForClient), and enums and types are enforced.
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { DEVICE_GROUP, DEVICE_VERSION } from '../../shared/devices/index.js';
import { crdForClient, deviceCrds } from '../../cloud/devicecontroller/index.js';
import { kube, type k8s } from '../../cloud/kube/index.js';
import { eventually } from '../helpers/process.js';
import { useLocalControlPlane } from '../helpers/controlplane.js';

const cp = useLocalControlPlane('ledge-devicecrds-');
const apiVersion = `${DEVICE_GROUP}/${DEVICE_VERSION}`;
const at = (plural: string) => ({ group: DEVICE_GROUP, version: DEVICE_VERSION, namespace: 'default', plural });

const model = {
  apiVersion,
  kind: 'DeviceModel',
  metadata: { name: 'full-model', namespace: 'default' },
  spec: {
    protocol: 'modbus',
    protocolConfigData: { baudRate: 9600, parity: 'even', swap: true },
    properties: [
      {
        name: 'temperature',
        description: 'in the shade',
        type: 'FLOAT',
        accessMode: 'ReadOnly',
        minimum: '-40',
        maximum: '85',
        unit: 'degC',
        visitors: { protocolName: 'modbus', configData: { register: 'HoldingRegister', offset: 2, limit: 1, scale: 0.1 } },
      },
      { name: 'switch', type: 'BOOLEAN', accessMode: 'ReadWrite' },
    ],
  },
};

const device = {
  apiVersion,
  kind: 'Device',
  metadata: { name: 'full-device', namespace: 'default' },
  spec: {
    deviceModelRef: { name: 'full-model' },
    nodeName: 'edge-1',
    protocol: { protocolName: 'modbus', configData: { ip: '127.0.0.1', port: 502, slaveID: 1 } },
    properties: [
      {
        name: 'temperature',
        visitors: { protocolName: 'modbus', configData: { register: 'InputRegister', offset: 0 } },
        reportCycle: 1000,
        collectCycle: 500,
        reportToCloud: true,
        pushMethod: {
          http: { hostName: 'http://127.0.0.1', port: 8080, requestPath: '/v1/data', timeout: 1000 },
          mqtt: { address: 'tcp://127.0.0.1:1883', topic: 'temperature', qos: 1, retained: false },
          otel: { endpointURL: 'http://127.0.0.1:4318/v1/metrics' },
          dbMethod: {
            influxdb2: {
              influxdb2ClientConfig: { url: 'http://127.0.0.1:8086', org: 'o', bucket: 'b' },
              influxdb2DataConfig: { measurement: 'm', tag: { unit: 'degC' }, fieldKey: 'f' },
            },
            redis: { redisClientConfig: { addr: '127.0.0.1:6379', db: 0, poolsize: 10, minIdleConns: 1 } },
            TDEngine: { TDEngineClientConfig: { addr: '127.0.0.1:6041', dbName: 'd' } },
            mysql: { mysqlClientConfig: { addr: '127.0.0.1:3306', database: 'd', userName: 'u' } },
          },
          anomalyDetection: { endpoint: 'http://127.0.0.1:9000', threshold: 3 },
        },
      },
      { name: 'switch', desired: { value: 'true', metadata: { type: 'boolean' } }, visitors: { protocolName: 'modbus', configData: { register: 'CoilRegister', offset: 1 } } },
    ],
    methods: [{ name: 'toggle', description: 'flips the switch', propertyNames: ['switch'] }],
    stateReport: { reportToCloud: true, reportCycle: 5000 },
  },
  // Objects written for KubeEdge ≤ 1.22 carry their twins here: kept.
  status: { reportToCloud: true, reportCycle: 1000, twins: [{ propertyName: 'switch', reported: { value: 'false' } }] },
};

const status = {
  apiVersion,
  kind: 'DeviceStatus',
  metadata: { name: 'full-device', namespace: 'default' },
  spec: {},
  status: {
    twins: [{ propertyName: 'temperature', reported: { value: '21.5', metadata: { timestamp: '1700000000000', type: 'float' } }, observedDesired: { value: '20' } }],
    state: 'online',
    lastOnlineTime: '2030-01-01T00:00:00Z',
    extensions: { any: { thing: 1 } },
  },
};

type Obj = { spec?: unknown; status?: unknown };

describe('device CRDs', () => {
  let objects: k8s.CustomObjectsApi;
  before(async () => {
    const ext = cp.kc.makeApiClient(kube().ApiextensionsV1Api);
    for (const crd of deviceCrds) await ext.createCustomResourceDefinition({ body: crdForClient(crd) as unknown as k8s.V1CustomResourceDefinition });
    objects = cp.kc.makeApiClient(kube().CustomObjectsApi);
    await eventually(() => objects.listCustomObjectForAllNamespaces({ group: DEVICE_GROUP, version: DEVICE_VERSION, plural: 'devicestatuses' }), 20_000, 'CRDs served');
  });

  test('objects with every field of KubeEdge’s v1beta1 shapes are accepted strictly and stored unchanged', async () => {
    for (const [plural, body] of [
      ['devicemodels', model],
      ['devices', device],
      ['devicestatuses', status],
    ] as const) {
      const created = (await objects.createNamespacedCustomObject({ ...at(plural), body, fieldValidation: 'Strict' })) as Obj;
      assert.deepEqual(created.spec, body.spec, `${plural}: spec unchanged`);
      assert.deepEqual(created.status, (body as Obj).status, `${plural}: status unchanged`);
    }
  });

  test('the installed CRDs keep every schema keyword (enums, defaults, x-kubernetes markers), inside lists too', async () => {
    const ext = cp.kc.makeApiClient(kube().ApiextensionsV1Api);
    for (const crd of deviceCrds) {
      // Read raw: the schema as the API server stores it, in wire names.
      const stored = (await objects.getClusterCustomObject({ group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', name: crd.metadata.name })) as {
        spec: { versions: { schema: { openAPIV3Schema: unknown } }[] };
      };
      assert.deepEqual(stored.spec.versions[0]!.schema.openAPIV3Schema, crd.spec.versions[0]!.schema.openAPIV3Schema, crd.metadata.name);
      await ext.readCustomResourceDefinition({ name: crd.metadata.name });
    }
  });

  test('types and enums are enforced', async () => {
    const bad = async (plural: string, body: object, field: RegExp) => {
      await assert.rejects(objects.createNamespacedCustomObject({ ...at(plural), body }), (err: { code?: number; body?: unknown }) => {
        assert.equal(err.code, 422);
        assert.match(String(err.body), field);
        return true;
      });
    };
    await bad('devicemodels', { ...model, metadata: { name: 'bad-type' }, spec: { properties: [{ name: 'p', type: 'DATE' }] } }, /spec\.properties\[0\]\.type/);
    await bad('devicemodels', { ...model, metadata: { name: 'bad-mode' }, spec: { properties: [{ name: 'p', accessMode: 'WriteOnly' }] } }, /accessMode/);
    await bad('devices', { ...device, metadata: { name: 'bad-cycle' }, spec: { ...device.spec, properties: [{ name: 'temperature', reportCycle: '1s' }] } }, /reportCycle/);
    await bad('devicestatuses', { ...status, metadata: { name: 'bad-twin' }, status: { twins: [{ propertyName: 'p', reported: { metadata: {} } }] } }, /reported\.value/);
  });
});
