/**
 * @module
 * The device CRDs of `devices.kubeedge.io/v1beta1` — Device, DeviceModel and (since KubeEdge
 * 1.23) DeviceStatus — with KubeEdge v1.23's schemas: the same fields, types, formats, enums,
 * defaults, `required` lists, `x-kubernetes-*` markers, scope and names, so KubeEdge's own sample
 * YAMLs apply unchanged (also with `kubectl apply`'s strict field validation) and a cluster
 * that already has KubeEdge's CRDs needs nothing from us. Written here as objects; the YAML in
 * deploy/crds/ is generated from them (build/gen-manifests.ts).
 *
 * Like KubeEdge's, they have no status subresource, no short names and no printer columns:
 * a DeviceStatus is written as a whole object. Only v1beta1 is declared (KubeEdge's CRDs also
 * serve the old v1alpha2 shape, which Ledge never reads or writes); a cluster holding
 * KubeEdge's CRDs keeps them, since CloudCore installs these only where they are missing.
 */
import { DEVICE_GROUP, DEVICE_MODEL_PLURAL, DEVICE_PLURAL, DEVICE_STATUS_PLURAL, DEVICE_VERSION } from '../../shared/devices/index.js';

/** A node of an openAPIV3Schema (the subset these CRDs use). */
export interface SchemaNode {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  format?: string;
  enum?: string[];
  default?: unknown;
  required?: string[];
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  additionalProperties?: SchemaNode;
  'x-kubernetes-preserve-unknown-fields'?: true;
  'x-kubernetes-map-type'?: 'atomic';
  'x-kubernetes-list-type'?: 'atomic';
}

const str = (description?: string): SchemaNode => ({ type: 'string', ...(description ? { description } : {}) });
const int64 = (description?: string): SchemaNode => ({ type: 'integer', format: 'int64', ...(description ? { description } : {}) });
const int32: SchemaNode = { type: 'integer', format: 'int32' };
const int: SchemaNode = { type: 'integer' };
const bool = (description?: string): SchemaNode => ({ type: 'boolean', ...(description ? { description } : {}) });
const obj = (properties: Record<string, SchemaNode>, extra: Omit<SchemaNode, 'type' | 'properties'> = {}): SchemaNode => ({ type: 'object', ...extra, properties });
const arr = (items: SchemaNode, description?: string): SchemaNode => ({ type: 'array', ...(description ? { description } : {}), items });
const stringMap = (description?: string): SchemaNode => ({ type: 'object', ...(description ? { description } : {}), additionalProperties: { type: 'string' } });
/** Free-form settings (protocol config data and the like): kept as given. */
const freeForm = (description?: string): SchemaNode => ({ type: 'object', ...(description ? { description } : {}), 'x-kubernetes-preserve-unknown-fields': true });

/** The fields every object has; metadata is the API server's. */
const typeMeta = { apiVersion: str(), kind: str(), metadata: { type: 'object' } } satisfies Record<string, SchemaNode>;

/** `{value, metadata}`: a twin value (always a string) with free string metadata such as its timestamp and type. */
const twinProperty = (description: string): SchemaNode =>
  obj({ metadata: stringMap('extra facts about the value, e.g. timestamp (ms) and type'), value: str('the value, as a string') }, { description, required: ['value'] });

/** How a mapper reaches a property: a protocol name and its free-form settings. */
const visitors = (description: string): SchemaNode =>
  obj({ configData: freeForm('protocol-specific settings of the property'), protocolName: str('the protocol') }, { description });

const pushMethod = obj(
  {
    anomalyDetection: freeForm('settings of an anomaly detection service the mapper pushes to'),
    dbMethod: obj(
      {
        TDEngine: obj({ TDEngineClientConfig: obj({ addr: str(), dbName: str() }) }),
        influxdb2: obj({
          influxdb2ClientConfig: obj({ bucket: str(), org: str(), url: str() }),
          influxdb2DataConfig: obj({ fieldKey: str(), measurement: str(), tag: stringMap() }),
        }),
        mysql: obj({ mysqlClientConfig: obj({ addr: str(), database: str(), userName: str() }) }),
        redis: obj({ redisClientConfig: obj({ addr: str(), db: int, minIdleConns: int, poolsize: int }) }),
      },
      { description: 'a database the mapper writes the values to' },
    ),
    http: obj({ hostName: str(), port: int64(), requestPath: str(), timeout: int64() }),
    mqtt: obj({ address: str('broker address, e.g. mqtt://127.0.0.1:1883'), qos: int32, retained: bool(), topic: str() }),
    otel: obj({ endpointURL: str() }),
  },
  { description: 'where the mapper also pushes the values (besides the cloud)' },
);

const deviceSchema: SchemaNode = obj(
  {
    ...typeMeta,
    spec: obj(
      {
        deviceModelRef: obj(
          { name: { type: 'string', default: '', description: 'name of the DeviceModel (same namespace)' } },
          { description: 'the DeviceModel this device is an instance of', 'x-kubernetes-map-type': 'atomic' },
        ),
        methods: arr(obj({ description: str(), name: str(), propertyNames: arr(str()) }), 'methods of the device, unique by name'),
        nodeName: str('the edge node the device is attached to'),
        properties: arr(
          obj({
            collectCycle: int64('how often the mapper reads the property, ms'),
            desired: twinProperty('the value the property should have (cloud-owned)'),
            name: str('the property, as named in the model'),
            pushMethod,
            reportCycle: int64('how often the mapper reports the property, ms'),
            reportToCloud: bool('whether the reported value goes to the cloud'),
            visitors: visitors('how the mapper accesses the property (overrides the model)'),
          }),
          'properties of the device, unique by name',
        ),
        protocol: obj(
          { configData: freeForm('protocol settings of the device'), protocolName: str('the protocol; routes the device to the mapper that serves it') },
          { description: 'how the mapper connects to the device' },
        ),
        stateReport: obj({ reportCycle: int64('how often the mapper reports the device state, ms'), reportToCloud: bool() }, { description: 'how the device state is reported' }),
      },
      { description: 'a device instance of a model, bound to a node' },
    ),
    // The reported twins moved to DeviceStatus in 1.23; unknown fields are kept so older objects (with twins) still apply.
    status: obj(
      { reportCycle: int64('how often the mapper reports the device status, ms'), reportToCloud: bool() },
      { description: 'reporting settings (the reported values are in the DeviceStatus of the same name)', 'x-kubernetes-preserve-unknown-fields': true },
    ),
  },
  { description: 'Device: one sensor or actuator, bound to an edge node' },
);

const deviceModelSchema: SchemaNode = obj(
  {
    ...typeMeta,
    spec: obj(
      {
        properties: arr(
          obj({
            accessMode: { type: 'string', enum: ['ReadWrite', 'ReadOnly'] },
            description: str(),
            maximum: str(),
            minimum: str(),
            name: str(),
            type: { type: 'string', enum: ['INT', 'FLOAT', 'DOUBLE', 'STRING', 'BOOLEAN', 'BYTES', 'STREAM'] },
            unit: str(),
            visitors: visitors('default access of the property (a device may override it)'),
          }),
          'the properties every device of the model has',
        ),
        protocol: str('the protocol of the devices of this model'),
        protocolConfigData: freeForm('default protocol settings (a device may override them)'),
      },
      { description: 'what devices of this model can do and how they are accessed' },
    ),
  },
  { description: 'DeviceModel: the template of a kind of device' },
);

const deviceStatusSchema: SchemaNode = obj(
  {
    ...typeMeta,
    // Empty by design: the Device it belongs to is its owner (same name, ownerReference).
    spec: { type: 'object' },
    status: obj({
      extensions: freeForm('further status information'),
      lastOnlineTime: str('when the device was last online'),
      state: str('the state the device reported'),
      twins: arr(
        obj({
          observedDesired: twinProperty('the desired value the mapper last saw'),
          propertyName: str('the property, as named in the Device'),
          reported: twinProperty('the value last reported from the device'),
        }),
        'reported and observed-desired values per property',
      ),
    }),
  },
  { description: 'DeviceStatus: what a Device reported (its twins, state, last online time)' },
);

function crd(kind: string, plural: string, schema: SchemaNode) {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${DEVICE_GROUP}` },
    spec: {
      group: DEVICE_GROUP,
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase() },
      scope: 'Namespaced' as const,
      versions: [{ name: DEVICE_VERSION, served: true, storage: true, schema: { openAPIV3Schema: schema } }],
    },
  };
}

export type DeviceCrd = ReturnType<typeof crd>;

export const deviceCrd = crd('Device', DEVICE_PLURAL, deviceSchema);
export const deviceModelCrd = crd('DeviceModel', DEVICE_MODEL_PLURAL, deviceModelSchema);
export const deviceStatusCrd = crd('DeviceStatus', DEVICE_STATUS_PLURAL, deviceStatusSchema);
/** The three, in install order. */
export const deviceCrds: readonly DeviceCrd[] = [deviceModelCrd, deviceCrd, deviceStatusCrd];

/** Whether DeviceStatus has a status subresource (KubeEdge's has none: the whole object is written). */
export const DEVICE_STATUS_HAS_STATUS_SUBRESOURCE = deviceStatusCrd.spec.versions.some((v) => 'subresources' in v);

/** JSON Schema keywords whose client-node (typed model) property name differs from the wire name. */
const CLIENT_NAMES: Record<string, string> = { enum: '_enum', default: '_default', $ref: 'ref', $schema: 'schema' };

/**
 * A schema node in client-node's typed form (`V1JSONSchemaProps`: `_enum`, `_default`,
 * `x_kubernetes_preserve_unknown_fields`…). client-node serializes a CRD through its models and
 * silently drops every key it does not know, so the wire names of these keywords, passed as they
 * are, would be lost: enums, defaults and preserve-unknown-fields gone, and free-form config
 * data pruned by the API server. Property names (the keys under `properties`) are kept as they are;
 * `items` and `additionalProperties`, which client-node passes through untyped, keep the wire form.
 * (test/devicecontroller/crds.test.ts reads the installed CRD back to check this.)
 */
export function schemaForClient(node: SchemaNode): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    const name = CLIENT_NAMES[k] ?? (k.startsWith('x-kubernetes-') ? k.replaceAll('-', '_') : k);
    if (k === 'properties') out[name] = Object.fromEntries(Object.entries(v as Record<string, SchemaNode>).map(([p, sub]) => [p, schemaForClient(sub)]));
    // client-node types these two as `any` and sends them as given: they keep the wire names.
    else if (k === 'items' || k === 'additionalProperties') out[k] = v;
    else out[name] = v;
  }
  return out;
}

/** A CRD as client-node's `createCustomResourceDefinition` must be given it (see {@link schemaForClient}). */
export function crdForClient(crd: DeviceCrd): Record<string, unknown> {
  return {
    ...crd,
    spec: {
      ...crd.spec,
      versions: crd.spec.versions.map((v) => ({ ...v, schema: { openAPIV3Schema: schemaForClient(v.schema.openAPIV3Schema) } })),
    },
  };
}
