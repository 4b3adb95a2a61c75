/**
 * @module
 * Node status reporter: sends the node's identity, capacity and readiness upstream
 * on start and then periodically, through EdgeHub's outbox (so reports made while
 * offline arrive, in order, once the link is back). Edged takes this over when it
 * lands; the report's shape follows Kubernetes' NodeStatus.
 *
 * Readiness comes from health checks (the metadata store's, for now): while one reports a
 * problem the node is Ready=False with that problem's reason and message, and a change of
 * health is reported at once rather than at the next interval. When the outbox itself
 * cannot store the report (the disk is full for it too), the report is sent best-effort,
 * so the cloud still hears that this node is not ready.
 */
import os from 'node:os';
import { randomUUID } from 'node:crypto';
import { Group, ModuleName, Operation, ResourceType, buildResource, newMessage, type ErrorContent } from '../../shared/protocol/index.js';
import type { Module, ModuleContext } from '../../shared/beehive/index.js';
import { ErrorCode, errorCode, errorMessage, hasCode } from '../../shared/errors/index.js';
import { sleep } from '../../shared/runtime/index.js';
import { defaultNodeStatusOptions } from './options.js';

/** A problem that makes the node not ready: the condition's reason (CamelCase) and message. */
export interface NodeProblem {
  reason: string;
  message: string;
}

/** Returns undefined while healthy. */
export type HealthCheck = () => NodeProblem | undefined;

/** Reporter options; defaults in `defaultNodeStatusOptions` (./options.ts). */
export interface NodeStatusOptions {
  nodeName: string;
  /** Report interval in ms. Default 10000 (KubeEdge's nodeStatusUpdateFrequency). */
  intervalMs?: number;
  /** Checks whose problems make the node NotReady. */
  checks?: HealthCheck[];
  /** How often the checks are polled for a change between reports, in ms. Default 1000. */
  healthPollMs?: number;
}

export interface NodeStatusReport {
  /** Increments per report within one process start. */
  seq: number;
  /** Identifies the process start (a new one after each restart). */
  bootId: string;
  nodeInfo: { operatingSystem: string; architecture: string; kernelVersion: string; hostname: string; runtime: string };
  capacity: { cpu: string; memory: string };
  addresses: { type: string; address: string }[];
  /** Ready; `message` only when not ready (says why). */
  conditions: { type: string; status: string; reason: string; message?: string; lastHeartbeatTime: string }[];
}

/** The first problem any check reports, or undefined. */
function firstProblem(checks: HealthCheck[]): NodeProblem | undefined {
  for (const c of checks) {
    const p = c();
    if (p) return p;
  }
  return undefined;
}

export function collectNodeStatus(seq: number, bootId: string, problem?: NodeProblem): NodeStatusReport {
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
    conditions: [
      problem
        ? { type: 'Ready', status: 'False', reason: problem.reason, message: problem.message, lastHeartbeatTime: new Date().toISOString() }
        : { type: 'Ready', status: 'True', reason: 'EdgeReady', lastHeartbeatTime: new Date().toISOString() },
    ],
  };
}

export function createNodeStatusReporter(options: NodeStatusOptions): Module {
  const bootId = randomUUID();
  const checks = options.checks ?? [];
  const intervalMs = options.intervalMs ?? defaultNodeStatusOptions.intervalMs;
  const pollMs = Math.max(10, Math.min(options.healthPollMs ?? defaultNodeStatusOptions.healthPollMs, intervalMs));
  let seq = 0;
  return {
    name: 'nodestatus',
    group: Group.Resource,
    async start(ctx: ModuleContext, signal: AbortSignal): Promise<void> {
      const resource = buildResource('default', ResourceType.NodeStatus, options.nodeName);
      const report = async (problem: NodeProblem | undefined) => {
        const content = collectNodeStatus(++seq, bootId, problem);
        const msg = newMessage({ source: ModuleName.Edged, group: Group.Resource, operation: Operation.Update, resource, content, sync: true });
        try {
          // Resolves once the report is durable in EdgeHub's outbox.
          const resp = await ctx.sendSync(ModuleName.EdgeHub, msg, 30_000);
          const err = resp.content as ErrorContent | null;
          if (!err) return;
          ctx.log.warn(`node status not queued: ${err.message}`, { code: err.code });
          if (hasCode(err, ErrorCode.Storage)) {
            // The outbox cannot store it either: send this report best-effort (if connected).
            await ctx.send(ModuleName.EdgeHub, newMessage({ source: ModuleName.Edged, group: Group.Resource, operation: Operation.Update, resource, content, sync: false }));
          }
        } catch (err) {
          if (!signal.aborted) ctx.log.warn(`node status not queued: ${errorMessage(err)}`, { code: errorCode(err) });
        }
      };
      const key = (p: NodeProblem | undefined) => (p ? `${p.reason}\n${p.message}` : '');
      let problem = firstProblem(checks);
      await report(problem);
      while (!signal.aborted) {
        // Wait for the interval, or less if health changes meanwhile.
        const due = Date.now() + intervalMs;
        let now = firstProblem(checks);
        while (!signal.aborted && Date.now() < due && key(now) === key(problem)) {
          await sleep(Math.min(pollMs, due - Date.now()), signal);
          now = firstProblem(checks);
        }
        if (signal.aborted) return;
        if (key(now) !== key(problem)) {
          if (now) ctx.log.warn(`node reported NotReady: ${now.message}`, { reason: now.reason });
          else ctx.log.info('node reported Ready again');
        }
        problem = now;
        await report(problem);
      }
    },
  };
}
