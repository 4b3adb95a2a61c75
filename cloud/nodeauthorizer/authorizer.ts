/**
 * @module
 * What an edge node may do through its session (issue 13, "node authorization on by default"),
 * in one place. A cloud module calls {@link NodeAuthorizer.authorize} for every upstream message
 * before it acts on it; the node is the session's — CloudHub routes each upstream message as
 * `node/<the session's node>/<resource>` ({@link sessionOf}), whatever the message says.
 *
 * The rules (a node N):
 * - `nodestatus`, `node`, `lease` writes: only N's own (a nodestatus without a name is N's).
 * - `podstatus` update/patch: only pods bound to N (`spec.nodeName` = N in the pod cache).
 * - `pod` insert/update: only mirror pods of N's static pods (annotation `kubernetes.io/config.mirror`,
 *   `spec.nodeName` = N), and not over a pod that is not N's mirror pod; delete: only N's mirror pods.
 * - `devicestatus` update: each report only for a Device bound to N; the other reports are left out.
 * - `event` writes: only about N's Node or pods bound to N. `objectsync`/`clusterobjectsync`: never
 *   (the cloud writes sync records from ACKs).
 * - queries: one object by name, only what was sent to N — a pod bound to N, a configmap or secret
 *   such a pod references (N's desired set), N's Node; refused whether or not the object exists.
 * - anything else: refused as unsupported (no rule, no handler).
 *
 * What the rules read comes from injected lookups (the controllers' informer caches), never from an
 * API read per message. An object the cache does not hold is refused too (NotFound, DeviceUnknown),
 * but not counted as a violation: a report may simply be late. A violation is refused with
 * LEDGE_ERR_FORBIDDEN, counted by kind ({@link NodeAuthorizer.stats}), published on
 * `ledge:nodeauthorizer:refused`, and logged with the node and what it attempted, once per node and
 * kind per window, then a count.
 */
import { channel } from 'node:diagnostics_channel';
import { Operation, ResourceType, parseResource, type ErrorContent, type Message, type ParsedResource } from '../../shared/protocol/index.js';
import { DeviceUnknownError, ErrorCode, ForbiddenError, NotFoundError, UnsupportedError, errorContent } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { LogLimiter, seconds } from '../cloudhub/log-limiter.js';
import { resolveNodeAuthorizerOptions, type NodeAuthorizerOptions } from './options.js';

/** A kubelet's annotation marking a static pod's mirror in the API. */
export const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

/** Resource types of sync records (never written by nodes). */
const SYNC_RECORD_TYPES: ReadonlySet<string> = new Set(['objectsync', 'clusterobjectsync']);

/** What a node attempted, as refusals are counted and logged. */
export const AttemptKind = {
  /** A write of a Node, its status or its Lease. */
  NodeStatus: 'node-status',
  PodStatus: 'pod-status',
  MirrorPod: 'mirror-pod',
  DeviceStatus: 'device-status',
  Query: 'query',
  Event: 'event',
  SyncRecord: 'sync-record',
  /** An operation or type no rule covers. */
  Other: 'other',
} as const;
export type AttemptKind = (typeof AttemptKind)[keyof typeof AttemptKind];

/** What the rules need to know of a pod (from a cache, or from an object just read). */
export interface PodFacts {
  /** `spec.nodeName`; undefined: not bound. */
  nodeName: string | undefined;
  /** Carries the mirror annotation. */
  mirror: boolean;
  /** Has a deletionTimestamp. */
  deleting: boolean;
}

/** What the rules need to know of a Device. */
export interface DeviceFacts {
  /** `spec.nodeName`; undefined: not bound. */
  nodeName: string | undefined;
}

/** The lookups the rules read, injected by the module that authorizes (its informer caches). A missing one knows nothing. */
export interface NodeLookups {
  /** The pod `namespace/name`, or undefined when not known. */
  pod(namespace: string, name: string): PodFacts | undefined;
  /** Whether a pod bound to `node` (not being deleted) references this configmap or secret: it is in the node's desired set. */
  referencedBy(node: string, type: 'configmap' | 'secret', namespace: string, name: string): boolean;
  /** The Device `namespace/name`, or undefined when not known. */
  device(namespace: string, name: string): DeviceFacts | undefined;
}

/** A report of a batch (devicestatus) that was left out. */
export interface RefusedEntry {
  /** `namespace/name` of the Device. */
  subject: string;
  refused: string;
  error: ErrorContent;
  /** True for what the node may not do (Forbidden); false for an object that is not known (stale). */
  violation: boolean;
}

export interface Allowed {
  allowed: true;
  /** For a batch of which some entries were refused: the content with only the allowed entries. */
  content?: unknown;
  /** For a batch: the entries left out of `content`. */
  refusedEntries?: RefusedEntry[];
}

export interface Refused {
  allowed: false;
  kind: AttemptKind;
  /** Why, for logs and the node. */
  refused: string;
  /** What the node is answered (error ACK or query response). */
  error: ErrorContent;
  /** True for what the node may not do (Forbidden); false for an unknown object or an unsupported operation. */
  violation: boolean;
}

export type Decision = Allowed | Refused;

export interface NodeAuthorizerStats {
  enabled: boolean;
  /** Messages allowed (wholly or in part). */
  allowed: number;
  /** Violations refused, by what was attempted (a batch counts each refused entry). */
  refused: Record<AttemptKind, number>;
  /** Refused because the object is not known (NotFound, DeviceUnknown): not violations. */
  unknown: number;
  /** Refused because no rule covers the operation or type (Unsupported). */
  unsupported: number;
}

/** Published on `ledge:nodeauthorizer:refused` for every violation. */
export interface RefusedEvent {
  node: string;
  kind: AttemptKind;
  /** `<operation> <resource>` as the node sent it (a batch entry: its Device). */
  attempt: string;
  refused: string;
}

const refusedChannel = channel('ledge:nodeauthorizer:refused');

const ALLOWED: Allowed = { allowed: true };
const WRITES: ReadonlySet<string> = new Set([Operation.Insert, Operation.Update, Operation.Patch, Operation.Delete]);

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The facts of a pod-shaped object (a cached pod, one read from the API, or a node's content). */
export function podFacts(pod: unknown): PodFacts {
  const md = isObj(pod) && isObj(pod.metadata) ? pod.metadata : {};
  const spec = isObj(pod) && isObj(pod.spec) ? pod.spec : {};
  return {
    nodeName: str(spec.nodeName) || undefined,
    mirror: isObj(md.annotations) && md.annotations[MIRROR_ANNOTATION] !== undefined,
    deleting: md.deletionTimestamp !== undefined && md.deletionTimestamp !== null,
  };
}

/**
 * The session's node of an upstream message as CloudHub routes it (`node/<node>/<resource>`), and
 * the message as the node sent it (resource without that prefix). Undefined: not an upstream message.
 */
export function sessionOf(msg: Message): { node: string; message: Message } | undefined {
  const m = /^node\/([^/]+)\/(.*)$/s.exec(msg.route.resource);
  if (!m) return undefined;
  return { node: m[1]!, message: { ...msg, route: { ...msg.route, resource: m[2]! } } };
}

function forbidden(kind: AttemptKind, refused: string): Refused {
  return { allowed: false, kind, refused, error: errorContent(new ForbiddenError(refused)), violation: true };
}

function notFound(kind: AttemptKind, refused: string): Refused {
  return { allowed: false, kind, refused, error: errorContent(new NotFoundError(refused)), violation: false };
}

function unsupported(refused: string): Refused {
  return { allowed: false, kind: AttemptKind.Other, refused, error: errorContent(new UnsupportedError(refused)), violation: false };
}

/** `ns/name` of a namespaced resource, `name` of a cluster-scoped one. */
const named = (r: ParsedResource): string => `${r.namespace ?? 'default'}/${r.name ?? ''}`;

/** The rules, with their lookups, counters and rate-limited log. */
export class NodeAuthorizer {
  readonly options: NodeAuthorizerOptions;
  private readonly lookups: Partial<NodeLookups>;
  private readonly log: Logger;
  private readonly limiter: LogLimiter;
  private readonly counts: NodeAuthorizerStats;

  constructor(lookups: Partial<NodeLookups>, log: Logger, options: Partial<NodeAuthorizerOptions> = {}) {
    this.options = resolveNodeAuthorizerOptions(options);
    this.lookups = lookups;
    this.log = log;
    this.limiter = new LogLimiter(this.options.logWindowMs);
    const refused = Object.fromEntries(Object.values(AttemptKind).map((k) => [k, 0])) as Record<AttemptKind, number>;
    this.counts = { enabled: this.options.enabled, allowed: 0, refused, unknown: 0, unsupported: 0 };
    if (!this.options.enabled) {
      this.log.warn(
        'NODE AUTHORIZATION IS OFF: every edge node may write any node’s status, any pod’s and device’s status and read any object it names. Development only: turn it on for anything reachable by others',
        { code: ErrorCode.Insecure },
      );
    }
  }

  /**
   * Whether `node` (the session's) may do what `message` (as the node sent it, see {@link sessionOf})
   * asks. `overrides` replace lookups for this call: a module re-checks with an object it has just
   * read from the API, right before writing, in case the cache was behind.
   */
  authorize(node: string, message: Message, overrides?: Partial<NodeLookups>): Decision {
    if (!this.options.enabled) {
      this.counts.allowed++;
      return ALLOWED;
    }
    const decision = this.decide(node, message, overrides ? { ...this.lookups, ...overrides } : this.lookups);
    this.account(node, message, decision);
    return decision;
  }

  /** Counters since construction. */
  stats(): NodeAuthorizerStats {
    return { ...this.counts, refused: { ...this.counts.refused } };
  }

  /** Writes the pending count lines now (the module stops). */
  close(): void {
    this.limiter.close();
  }

  private decide(node: string, msg: Message, l: Partial<NodeLookups>): Decision {
    const op = msg.route.operation;
    const r = parseResource(msg.route.resource);
    if (op === Operation.Query) return this.query(node, r, l);
    if (!WRITES.has(op)) return unsupported(`no rule lets a node ${op.slice(0, 40)} ${r.type.slice(0, 60)}`);
    switch (r.type) {
      case ResourceType.NodeStatus:
        if (op === Operation.Delete) return unsupported('a node reports its status, it does not delete it');
        return this.ownNode(node, r.name ?? node, `status of node ${r.name}`);
      case ResourceType.Node:
        return this.ownNode(node, r.name, `node ${r.name ?? '(no name)'}`);
      case ResourceType.Lease:
        return this.ownNode(node, r.name, `lease ${named(r)}`);
      case ResourceType.PodStatus:
        if (op !== Operation.Update && op !== Operation.Patch) return unsupported(`a node updates pod status, it does not ${op} it`);
        return this.podStatus(node, r, l);
      case ResourceType.Pod:
        return this.mirrorPod(node, op, r, msg.content, l);
      case ResourceType.DeviceStatus:
        if (op !== Operation.Update) return unsupported(`a node updates device status, it does not ${op} it`);
        return this.deviceReports(node, msg.content, l);
      case ResourceType.Event:
        return this.event(node, r, msg.content, l);
      default:
        if (SYNC_RECORD_TYPES.has(r.type)) return forbidden(AttemptKind.SyncRecord, `node ${node} may not write sync record ${named(r)}: the cloud writes them from ACKs`);
        return unsupported(`no rule lets a node write ${r.type.slice(0, 60)}`);
    }
  }

  private ownNode(node: string, name: string | undefined, what: string): Decision {
    return name === node ? ALLOWED : forbidden(AttemptKind.NodeStatus, `node ${node} may not write ${what}: only its own`);
  }

  private podStatus(node: string, r: ParsedResource, l: Partial<NodeLookups>): Decision {
    if (!r.namespace || !r.name) return unsupported('a pod status names one pod: namespace/podstatus/name');
    const pod = l.pod?.(r.namespace, r.name);
    if (!pod) return notFound(AttemptKind.PodStatus, `pod ${r.namespace}/${r.name} does not exist`);
    if (pod.nodeName !== node) return forbidden(AttemptKind.PodStatus, `node ${node} may not write the status of pod ${r.namespace}/${r.name}: it is not bound to node ${node}`);
    return ALLOWED;
  }

  /** A static pod's mirror: created from the node's content, so the content is checked, and what the cache holds under that name. */
  private mirrorPod(node: string, op: string, r: ParsedResource, content: unknown, l: Partial<NodeLookups>): Decision {
    if (!r.namespace || !r.name) return unsupported('a mirror pod names one pod: namespace/pod/name');
    const key = `${r.namespace}/${r.name}`;
    const existing = l.pod?.(r.namespace, r.name);
    const notMine = existing !== undefined && !(existing.mirror && existing.nodeName === node);
    if (op === Operation.Delete) {
      // Not in the cache: the module reads it and checks again before deleting.
      return notMine ? forbidden(AttemptKind.MirrorPod, `node ${node} may not delete pod ${key}: it is not its mirror pod`) : ALLOWED;
    }
    if (op !== Operation.Insert && op !== Operation.Update) return unsupported(`a node creates or deletes its mirror pods, it does not ${op} them`);
    const facts = podFacts(content);
    const md = isObj(content) && isObj(content.metadata) ? content.metadata : {};
    if (!facts.mirror || facts.nodeName !== node || md.name !== r.name || (str(md.namespace) ?? 'default') !== r.namespace) {
      return forbidden(AttemptKind.MirrorPod, `node ${node} may not write pod ${key}: a node creates only mirror pods of its static pods, bound to itself`);
    }
    if (notMine) return forbidden(AttemptKind.MirrorPod, `node ${node} may not write pod ${key}: it exists and is not node ${node}'s mirror pod`);
    return ALLOWED;
  }

  /** Each report of a batch on its own: the allowed ones go on, the others are left out (a batch may straddle a Device's move). */
  private deviceReports(node: string, content: unknown, l: Partial<NodeLookups>): Decision {
    // Not a batch: its shape is the module's to refuse (LEDGE_ERR_INVALID_MESSAGE); nothing in it names a device.
    if (!isObj(content) || !Array.isArray(content.reports)) return ALLOWED;
    const kept: unknown[] = [];
    const refusedEntries: RefusedEntry[] = [];
    for (const e of content.reports as unknown[]) {
      const ns = isObj(e) ? str(e.namespace) : undefined;
      const name = isObj(e) ? str(e.name) : undefined;
      // Without a name it names no device: the module leaves it out as malformed.
      if (ns === undefined || name === undefined) {
        kept.push(e);
        continue;
      }
      const subject = `${ns}/${name}`;
      const d = l.device?.(ns, name);
      if (!d) {
        const refused = `no Device ${subject}`;
        refusedEntries.push({ subject, refused, error: errorContent(new DeviceUnknownError(refused)), violation: false });
      } else if (d.nodeName !== node) {
        const refused = `node ${node} may not report Device ${subject}: it is not bound to node ${node}`;
        refusedEntries.push({ subject, refused, error: errorContent(new ForbiddenError(refused)), violation: true });
      } else kept.push(e);
    }
    if (refusedEntries.length === 0) return ALLOWED;
    return { allowed: true, content: { ...content, reports: kept }, refusedEntries };
  }

  private event(node: string, r: ParsedResource, content: unknown, l: Partial<NodeLookups>): Decision {
    const io = isObj(content) && isObj(content.involvedObject) ? content.involvedObject : {};
    const kind = str(io.kind);
    const name = str(io.name);
    if (kind === 'Node' && name === node) return ALLOWED;
    if (kind === 'Pod' && name) {
      const ns = str(io.namespace) ?? r.namespace ?? 'default';
      if (l.pod?.(ns, name)?.nodeName === node) return ALLOWED;
    }
    return forbidden(
      AttemptKind.Event,
      `node ${node} may not write event ${named(r)} about ${kind ?? 'an object'} ${str(io.namespace) ?? ''}/${name ?? ''}: only about itself and its pods`,
    );
  }

  private query(node: string, r: ParsedResource, l: Partial<NodeLookups>): Decision {
    if (!r.name) return unsupported(`a node queries one object by name, not ${r.type.slice(0, 60)} collections`);
    const ns = r.namespace ?? 'default';
    const refused = (what: string) => forbidden(AttemptKind.Query, `node ${node} may not read ${what}: it is not in the node's desired set`);
    switch (r.type) {
      case ResourceType.Pod:
        return l.pod?.(ns, r.name)?.nodeName === node ? ALLOWED : refused(`pod ${ns}/${r.name}`);
      case ResourceType.ConfigMap:
      case ResourceType.Secret:
        return l.referencedBy?.(node, r.type, ns, r.name) ? ALLOWED : refused(`${r.type} ${ns}/${r.name}`);
      case ResourceType.Node:
        return r.name === node ? ALLOWED : refused(`node ${r.name}`);
      default:
        return unsupported(`no rule lets a node query ${r.type.slice(0, 60)}`);
    }
  }

  private account(node: string, msg: Message, d: Decision): void {
    const attempt = `${msg.route.operation.slice(0, 40)} ${msg.route.resource.slice(0, 200)}`;
    if (d.allowed) {
      this.counts.allowed++;
      for (const e of d.refusedEntries ?? []) {
        if (e.violation) this.violation(node, AttemptKind.DeviceStatus, `${attempt} (Device ${e.subject})`, e.refused);
        else this.counts.unknown++;
      }
      return;
    }
    if (d.violation) this.violation(node, d.kind, attempt, d.refused);
    else if (d.error.code === ErrorCode.Unsupported) this.counts.unsupported++;
    else this.counts.unknown++;
  }

  private violation(node: string, kind: AttemptKind, attempt: string, refused: string): void {
    this.counts.refused[kind]++;
    if (refusedChannel.hasSubscribers) refusedChannel.publish({ node, kind, attempt, refused } satisfies RefusedEvent);
    const fields = { code: ErrorCode.Forbidden, node, kind };
    this.limiter.event(
      `${node}\u0000${kind}`,
      () => this.log.warn(`node ${node} refused: ${attempt}: ${refused}`, { ...fields, attempt }),
      (n, ms) => this.log.warn(`node ${node}: ${n} more ${kind} requests refused in the last ${seconds(ms)}`, { ...fields, suppressed: n }),
    );
  }
}
