/**
 * @module
 * Options of {@link join} (edge/join) and their defaults, in one place.
 */
import { silentLogger, type Logger } from '../../shared/log/index.js';

export interface JoinOptions {
  /** CloudHub's URL: `wss://host:port` or `https://host:port` (the join routes and the link share one server). Required. */
  cloud: string;
  /** The join token the operator pasted: `<id>.<secret>@sha256:<hex>`. Required; never logged. */
  token: string;
  /** This node's name (a DNS-1123 subdomain): the certificate names it. Required. */
  nodeName: string;
  /** EdgeCore's data directory: `pki/` and `edgecore.json` are written in it. Required. */
  dataDir: string;
  /** Deadline of the whole exchange with CloudHub (TCP, TLS, both requests), ms. Default 30000. */
  timeoutMs: number;
  /** Join again although the node already holds a certificate (a new key replaces the old one). Default false. */
  force: boolean;
  /** Largest response body accepted from CloudHub, bytes (a certificate is ~1 KB; a hostile server gets no unbounded buffer). Default 65536. */
  maxResponseBytes: number;
  /** Progress lines (never the secret). Default: silent. */
  log: Logger;
  /** Aborts the join (then it rejects with the signal's reason). Default: none. */
  signal?: AbortSignal;
}

/** What {@link JoinOptions} defaults to. */
export const defaultJoinOptions = {
  timeoutMs: 30_000,
  force: false,
  maxResponseBytes: 64 * 1024,
  log: silentLogger,
} as const satisfies Partial<JoinOptions>;

/** The options a caller must give; the rest default ({@link defaultJoinOptions}). */
export type JoinInput = Pick<JoinOptions, 'cloud' | 'token' | 'nodeName' | 'dataDir'> & Partial<JoinOptions>;

/** Options with defaults filled in; bad numbers throw TypeError (a programming error, not user input). */
export function resolveJoinOptions(input: JoinInput): JoinOptions {
  const o: JoinOptions = { ...defaultJoinOptions, ...input };
  if (!Number.isInteger(o.timeoutMs) || o.timeoutMs <= 0) throw new TypeError(`timeoutMs must be a positive integer, got ${o.timeoutMs}`);
  if (!Number.isInteger(o.maxResponseBytes) || o.maxResponseBytes < 4096) throw new TypeError(`maxResponseBytes must be an integer ≥ 4096, got ${o.maxResponseBytes}`);
  return o;
}
