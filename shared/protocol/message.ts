/**
 * @module
 * The Beehive message: header, route and content (KubeEdge's `model.Message`).
 */
import { randomUUID } from 'node:crypto';
import { Operation } from './constants.js';

export interface MessageHeader {
  /** Unique id (UUID v4). */
  id: string;
  /** For responses and ACKs: the id of the message answered. */
  parentId?: string;
  /** Milliseconds since the epoch when the message was created. */
  timestamp: number;
  /** Kubernetes resourceVersion of the object in `content`, when there is one. */
  resourceVersion?: string;
  /** True when the sender needs an acknowledgement (downstream: delivery until ACK; in-process: sendSync). */
  sync: boolean;
}

export interface MessageRoute {
  /** Module that created the message. */
  source: string;
  /** Destination group (e.g. 'resource', 'twin', 'meta', 'hub'). */
  group: string;
  operation: string;
  /** `namespace/type/name` (KubeEdge's form), or `type/name` for cluster-scoped objects. */
  resource: string;
}

export interface Message<C = unknown> {
  header: MessageHeader;
  route: MessageRoute;
  content: C;
}

export interface ErrorContent {
  code: string;
  message: string;
}

export interface NewMessageInit<C> {
  source: string;
  group: string;
  operation: string;
  resource: string;
  content: C;
  sync?: boolean;
  resourceVersion?: string;
  parentId?: string;
}

/** Creates a message with a fresh id and timestamp. */
export function newMessage<C>(init: NewMessageInit<C>): Message<C> {
  const header: MessageHeader = { id: randomUUID(), timestamp: Date.now(), sync: init.sync ?? false };
  if (init.parentId !== undefined) header.parentId = init.parentId;
  if (init.resourceVersion !== undefined) header.resourceVersion = init.resourceVersion;
  return {
    header,
    route: { source: init.source, group: init.group, operation: init.operation, resource: init.resource },
    content: init.content,
  };
}

/** A response to `request` (delivered to the waiting sendSync by `parentId`). */
export function newResponse<C>(request: Message, source: string, content: C): Message<C> {
  return newMessage({
    source,
    group: request.route.group,
    operation: Operation.Response,
    resource: request.route.resource,
    parentId: request.header.id,
    content,
  });
}

/** A transport ACK of `message`. `error` set means "received but rejected". */
export function newAck(message: Message, source: string, error?: ErrorContent): Message<ErrorContent | null> {
  return newMessage({
    source,
    group: message.route.group,
    operation: Operation.Ack,
    resource: message.route.resource,
    parentId: message.header.id,
    content: error ?? null,
  });
}

/**
 * Builds a resource string `namespace/type[/name]` (KubeEdge's edge-local form).
 * Cluster-scoped objects use `default` as their namespace segment, as KubeEdge does
 * (`default/node/edge-1`), so every form parses back unambiguously.
 */
export function buildResource(namespace: string | undefined, type: string, name?: string): string {
  const parts = [namespace || 'default', type];
  if (name !== undefined && name !== '') parts.push(name);
  return parts.join('/');
}

export interface ParsedResource {
  namespace?: string;
  type: string;
  name?: string;
}

/** Parses `namespace/type/name`, `namespace/type` or `type`. Names may contain slashes. */
export function parseResource(resource: string): ParsedResource {
  const parts = resource.split('/');
  if (parts.length >= 3) return { namespace: parts[0], type: parts[1]!, name: parts.slice(2).join('/') };
  if (parts.length === 2) return { namespace: parts[0], type: parts[1]! };
  return { type: parts[0]! };
}

/**
 * Compares Kubernetes resourceVersions. Kubernetes says they are opaque, but every
 * real API server (etcd's revision) and Ledge's local control plane use decimal
 * integers; when both parse as integers they are compared numerically, else only
 * equality is meaningful and the result is 0 for equal, NaN otherwise.
 */
export function compareResourceVersions(a: string, b: string): number {
  if (a === b) return 0;
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) {
    const x = a.replace(/^0+(?=\d)/, '');
    const y = b.replace(/^0+(?=\d)/, '');
    if (x.length !== y.length) return x.length - y.length;
    return x === y ? 0 : x < y ? -1 : 1;
  }
  return Number.NaN;
}
