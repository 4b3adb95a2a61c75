/**
 * @module
 * What CloudHub tells other cloud modules, over Beehive (in-process only, never on the
 * wire). Each flow has this one channel (docs/controllers.md, "Wiring"):
 * - an **ACK report** to the module that sent a message (its `route.source`), once the
 *   node ACKed it or rejected it;
 * - a **session report** to each module named in `sessionSubscribers` when a node
 *   connects or disconnects.
 * Both go through the receiver's one mailbox, so a module sees a node's ACKs and its
 * session changes in the order CloudHub saw them.
 */
import { Group, ModuleName, Operation, newMessage, type ErrorContent, type Message } from '../../shared/protocol/index.js';

/** Operations of session reports. */
export const SessionOperation = {
  Connected: 'connected',
  Disconnected: 'disconnected',
} as const;
export type SessionOperation = (typeof SessionOperation)[keyof typeof SessionOperation];

/** Content of an ACK report (operation `ack`, resource `node/<node>/<resource>`, parentId = the message's id). */
export interface AckReport {
  node: string;
  /** The message the node ACKed, as its sender queued it. */
  message: Message;
  /** The node's rejection, or null when it applied the message. */
  error: ErrorContent | null;
}

/** Content of a session report (resource `node/<node>`). */
export interface SessionReport {
  node: string;
  /** Peer address, on connect. */
  remote?: string;
  /** The edge's session epoch (its x-ledge-session header), on connect, when it sent one. */
  session?: string;
  /** Why the session ended, on disconnect. */
  reason?: string;
}

/** The ACK report of `message`, which `node` ACKed (or rejected with `error`). */
export function ackReport(node: string, message: Message, error: ErrorContent | null = null): Message<AckReport> {
  return newMessage({
    source: ModuleName.CloudHub,
    group: message.route.group,
    operation: Operation.Ack,
    resource: `node/${node}/${message.route.resource}`,
    parentId: message.header.id,
    content: { node, message, error },
    ...(message.header.resourceVersion !== undefined ? { resourceVersion: message.header.resourceVersion } : {}),
  });
}

/** A session report: `node` connected or disconnected. */
export function sessionReport(operation: SessionOperation, info: SessionReport): Message<SessionReport> {
  return newMessage({ source: ModuleName.CloudHub, group: Group.Hub, operation, resource: `node/${info.node}`, content: info });
}

/** Payload of the `ledge:cloudhub:ack` diagnostics channel (benchmarks, tracing): one per ACKed message. */
export interface AckedObject {
  node: string;
  /** Resource as the edge sees it (`namespace/type/name`). */
  resource: string;
  resourceVersion?: string;
  operation: string;
  messageId: string;
}
