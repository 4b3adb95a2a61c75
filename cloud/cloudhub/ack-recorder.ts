/**
 * @module
 * Where ACKed versions are recorded. CloudHub calls the recorder after an edge ACKs a
 * message; the SyncController's implementation writes ObjectSync status. The
 * in-memory one serves tests and the standalone hub.
 */
import type { Message } from '../../shared/protocol/index.js';

export interface AckedObject {
  node: string;
  /** Resource as the edge sees it (`namespace/type/name`). */
  resource: string;
  resourceVersion?: string;
  operation: string;
  messageId: string;
}

export interface AckRecorder {
  /** Called once per ACKed sync message. Must not throw; failures are the recorder's to log. */
  recordAck(ack: AckedObject, message: Message): void | Promise<void>;
  /** Version of `resource` the node last ACKed, if known. */
  ackedVersion(node: string, resource: string): string | undefined;
}

export class InMemoryAckRecorder implements AckRecorder {
  private readonly versions = new Map<string, Map<string, string>>();

  recordAck(ack: AckedObject): void {
    let node = this.versions.get(ack.node);
    if (!node) this.versions.set(ack.node, (node = new Map()));
    if (ack.operation === 'delete') node.delete(ack.resource);
    else if (ack.resourceVersion !== undefined) node.set(ack.resource, ack.resourceVersion);
  }

  ackedVersion(node: string, resource: string): string | undefined {
    return this.versions.get(node)?.get(resource);
  }
}
