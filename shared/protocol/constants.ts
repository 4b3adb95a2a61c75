/**
 * @module
 * Wire names. These are protocol constants, separate from folder names (KubeEdge's
 * `edge/pkg/common/modules/names.go` pattern): changing a folder never changes the wire.
 */

/** Version carried in every frame. A peer rejects frames of any other version. */
export const PROTOCOL_VERSION = 1;
/** WebSocket subprotocol negotiated at the upgrade; the version is part of the name. */
export const SUBPROTOCOL = `ledge.v${PROTOCOL_VERSION}`;
/** Default WebSocket path of CloudHub. */
export const HUB_PATH = '/v1/edge';

/**
 * Header by which an edge names itself. With client certificates (the default) the certificate
 * names the node and the header, if sent, must name the same node; only a CloudHub started with
 * `insecurePlainWebSocket` (loopback, development) takes the name from it.
 */
export const NODE_NAME_HEADER = 'x-ledge-node-name';
/** A node's client certificate has the subject common name `system:node:<nodeName>` (Kubernetes' node identity). */
export const NODE_CERT_CN_PREFIX = 'system:node:';
/** ... and the organization `system:nodes`. */
export const NODE_CERT_ORGANIZATION = 'system:nodes';
/** Header carrying the edge's session epoch (increments each process start), for diagnostics. */
export const NODE_SESSION_HEADER = 'x-ledge-session';
/** Header by which an edge says it serves streams (kubectl logs/exec/attach over the link): `1`. */
export const NODE_STREAMS_HEADER = 'x-ledge-streams';

/** Operations. KubeEdge's beehive names where they exist. */
export const Operation = {
  Insert: 'insert',
  Update: 'update',
  Patch: 'patch',
  Delete: 'delete',
  Query: 'query',
  /** Application-level reply to a request (sendSync); parentId = request id. */
  Response: 'response',
  /** Application-level failure reply; content is an {@link ErrorContent}. */
  Error: 'error',
  /** Liveness and clock exchange; never queued, never ACKed. */
  Keepalive: 'keepalive',
  /** Transport-level acknowledgement of a `sync` message; parentId = acknowledged id. */
  Ack: 'ack',
} as const;
export type Operation = (typeof Operation)[keyof typeof Operation];
export const operations: ReadonlySet<string> = new Set(Object.values(Operation));

/** Beehive groups (KubeEdge's names). Messages routed to a group reach every module in it. */
export const Group = {
  /** Kubernetes resources (pods, configmaps, secrets, nodes). */
  Resource: 'resource',
  /** Device twins. */
  Twin: 'twin',
  /** The edge's local metadata store. */
  Meta: 'meta',
  /** The hub modules themselves (CloudHub / EdgeHub). */
  Hub: 'hub',
  /** MQTT device bus. */
  Bus: 'bus',
  /** User-defined traffic. */
  User: 'user',
} as const;
export type Group = (typeof Group)[keyof typeof Group];

/** Module names on the bus (KubeEdge's where they exist). */
export const ModuleName = {
  CloudHub: 'cloudhub',
  EdgeController: 'edgecontroller',
  SyncController: 'synccontroller',
  CloudStream: 'cloudstream',
  DeviceController: 'devicecontroller',
  EdgeHub: 'websocket',
  MetaManager: 'metamanager',
  Edged: 'edged',
  EventBus: 'eventbus',
  DeviceTwin: 'twin',
} as const;

/** Resource types used in resource strings. */
export const ResourceType = {
  Pod: 'pod',
  PodStatus: 'podstatus',
  ConfigMap: 'configmap',
  Secret: 'secret',
  Node: 'node',
  NodeStatus: 'nodestatus',
  Lease: 'lease',
  Event: 'event',
  /** A Device (devices.kubeedge.io/v1beta1), downstream. */
  Device: 'device',
  /** A DeviceModel (devices.kubeedge.io/v1beta1), downstream. */
  DeviceModel: 'devicemodel',
  /** Reported twins and states of a node's devices, upstream (group twin; docs/devices.md). */
  DeviceStatus: 'devicestatus',
  Twin: 'twin',
  Membership: 'membership',
} as const;

/** Limits and defaults shared by both sides. */
export const Limits = {
  /** Default maximum size of one frame, in bytes (1 MiB). */
  maxFrameBytes: 1024 * 1024,
  /** Maximum CBOR nesting depth accepted by the decoder. */
  maxDepth: 64,
  /** Maximum length of id, route fields and resource strings. */
  maxStringField: 512,
} as const;
