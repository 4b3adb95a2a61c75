/**
 * @module
 * EdgeController (first slice): receives upstream node status reports and keeps the
 * latest per node. Writing them to the Kubernetes API (nodes/status, leases) and the
 * downstream pod/configmap/secret flow arrive with the controllers issue; the module
 * name and the "answer once handled" contract are fixed now so CloudHub's ACK
 * semantics hold from the start.
 */
import { Group, ModuleName, Operation, ResourceType, parseResource, type Message } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';

export interface NodeStatusRecord {
  node: string;
  receivedAt: number;
  status: unknown;
}

export class EdgeController implements Module {
  readonly name = ModuleName.EdgeController;
  readonly group = Group.Resource;
  private readonly latest = new Map<string, NodeStatusRecord>();

  /** Latest status report of a node. */
  nodeStatus(node: string): NodeStatusRecord | undefined {
    return this.latest.get(node);
  }

  async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
    for await (const msg of ctx.messages(signal)) {
      this.handle(ctx, msg);
      if (msg.header.sync) await ctx.respond(msg, null).catch(() => {});
    }
  }

  private handle(ctx: ModuleContext, msg: Message): void {
    // Upstream resources arrive as node/<node>/<namespace>/<type>/<name>.
    const m = /^node\/([^/]+)\/(.*)$/.exec(msg.route.resource);
    if (!m || msg.route.operation === Operation.Ack) return;
    const [, node, rest] = m as unknown as [string, string, string];
    const r = parseResource(rest);
    if (r.type === ResourceType.NodeStatus) {
      this.latest.set(node, { node, receivedAt: Date.now(), status: msg.content });
      ctx.log.debug('node status', { node });
    }
  }
}

export function createEdgeController(): EdgeController {
  return new EdgeController();
}
