/**
 * @module
 * Node status reporter: sends the node's identity, capacity and readiness upstream
 * on start and then periodically, through EdgeHub's outbox (so reports made while
 * offline arrive, in order, once the link is back). Edged takes this over when it
 * lands; the report's shape follows Kubernetes' NodeStatus.
 */
import os from 'node:os';
import { randomUUID } from 'node:crypto';
import { Group, ModuleName, Operation, ResourceType, buildResource, newMessage, type ErrorContent } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import { errorCode, errorMessage } from '../../shared/errors/index.js';
import { sleep } from '../../shared/runtime/index.js';

export interface NodeStatusOptions {
  nodeName: string;
  /** Report interval in ms. Default 10000 (KubeEdge's nodeStatusUpdateFrequency). */
  intervalMs: number;
}

export interface NodeStatusReport {
  /** Increments per report within one process start. */
  seq: number;
  /** Identifies the process start (a new one after each restart). */
  bootId: string;
  nodeInfo: { operatingSystem: string; architecture: string; kernelVersion: string; hostname: string; runtime: string };
  capacity: { cpu: string; memory: string };
  addresses: { type: string; address: string }[];
  conditions: { type: string; status: string; reason: string; lastHeartbeatTime: string }[];
}

export function collectNodeStatus(seq: number, bootId: string): NodeStatusReport {
  const addresses = [{ type: 'Hostname', address: os.hostname() }];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') addresses.push({ type: 'InternalIP', address: a.address });
  }
  return {
    seq,
    bootId,
    nodeInfo: { operatingSystem: os.platform(), architecture: os.arch(), kernelVersion: os.release(), hostname: os.hostname(), runtime: `node/${process.versions.node}` },
    capacity: { cpu: String(os.cpus().length || 1), memory: `${Math.floor(os.totalmem() / 1024)}Ki` },
    addresses,
    conditions: [{ type: 'Ready', status: 'True', reason: 'EdgeReady', lastHeartbeatTime: new Date().toISOString() }],
  };
}

export function createNodeStatusReporter(options: NodeStatusOptions): Module {
  const bootId = randomUUID();
  let seq = 0;
  return {
    name: 'nodestatus',
    group: Group.Resource,
    async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
      const resource = buildResource('default', ResourceType.NodeStatus, options.nodeName);
      const report = async () => {
        const msg = newMessage({ source: ModuleName.Edged, group: Group.Resource, operation: Operation.Update, resource, content: collectNodeStatus(++seq, bootId), sync: true });
        try {
          // Resolves once the report is durable in EdgeHub's outbox.
          const resp = await ctx.sendSync(ModuleName.EdgeHub, msg, 30_000);
          const err = resp.content as ErrorContent | null;
          if (err) ctx.log.warn(`node status not queued: ${err.message}`, { code: err.code });
        } catch (err) {
          if (!signal.aborted) ctx.log.warn(`node status not queued: ${errorMessage(err)}`, { code: errorCode(err) });
        }
      };
      await report();
      while (!signal.aborted) {
        await sleep(options.intervalMs, signal);
        if (!signal.aborted) await report();
      }
    },
  };
}
