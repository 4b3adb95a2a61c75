/**
 * @module
 * Structured logging: one line per event. JSON lines when stderr is not a TTY (for
 * journald, Kubernetes and log shippers), a compact human form on a TTY.
 * Level from config or LEDGE_LOG_LEVEL. No dependencies, so the edge bundle stays small.
 */
import type { ConfigSpec } from '../config/index.js';
import { errorCode, errorMessage } from '../errors/index.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };
export const logLevels = Object.keys(levelRank) as LogLevel[];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose lines all carry `fields` (e.g. `{ module: 'cloudhub' }`). */
  child(fields: LogFields): Logger;
  enabled(level: LogLevel): boolean;
}

export interface LoggerOptions {
  /** Minimum level written. Default: LEDGE_LOG_LEVEL or 'info'. */
  level?: LogLevel;
  /** 'json' or 'text'. Default: 'text' on a TTY, else 'json'. */
  format?: 'json' | 'text';
  /** Where lines go. Default: process.stderr. */
  write?: (line: string) => void;
}

function normalizeFields(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v instanceof Error) {
      out[k] = errorMessage(v);
      if (!('code' in fields)) out.code = errorCode(v);
    } else if (typeof v === 'bigint') {
      out[k] = v.toString();
    } else {
      out[k] = v;
    }
  }
  return out;
}

class LineLogger implements Logger {
  constructor(
    private readonly rank: number,
    private readonly format: 'json' | 'text',
    private readonly write: (line: string) => void,
    private readonly base: LogFields,
  ) {}

  enabled(level: LogLevel): boolean {
    return levelRank[level] >= this.rank;
  }

  child(fields: LogFields): Logger {
    return new LineLogger(this.rank, this.format, this.write, { ...this.base, ...fields });
  }

  private emit(level: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields): void {
    if (levelRank[level] < this.rank) return;
    const all = fields ? normalizeFields({ ...this.base, ...fields }) : this.base;
    if (this.format === 'json') {
      this.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...all })}\n`);
      return;
    }
    let line = `${new Date().toISOString().slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}`;
    for (const [k, v] of Object.entries(all)) {
      line += ` ${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`;
    }
    this.write(`${line}\n`);
  }

  debug(msg: string, fields?: LogFields): void {
    this.emit('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.emit('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.emit('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.emit('error', msg, fields);
  }
}

function envLevel(): LogLevel | undefined {
  const v = process.env.LEDGE_LOG_LEVEL;
  return v && v in levelRank ? (v as LogLevel) : undefined;
}

/** Creates a logger. See {@link LoggerOptions} for defaults. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? envLevel() ?? 'info';
  const format = options.format ?? (process.stderr.isTTY ? 'text' : 'json');
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  return new LineLogger(levelRank[level], format, write, {});
}

/**
 * The `log.level` / `log.format` fields of every command's configuration spec (cloud, edge,
 * apiserver): spread into each spec so the flags, variables and defaults are declared once.
 */
export const logConfigFields = {
  'log.level': { type: 'enum', values: logLevels, flag: 'log-level', env: 'LEDGE_LOG_LEVEL', default: 'info', description: 'minimum log level' },
  'log.format': {
    type: 'enum',
    values: ['json', 'text'],
    flag: 'log-format',
    env: 'LEDGE_LOG_FORMAT',
    optional: true,
    description: 'log format (default: text on a TTY, else json)',
  },
} as const satisfies ConfigSpec;

/** The process logger of a command, from the `log` section that {@link logConfigFields} gives its configuration. */
export function loggerFromConfig(log: { level: LogLevel; format?: 'json' | 'text' | undefined }): Logger {
  return createLogger({ level: log.level, ...(log.format ? { format: log.format } : {}) });
}

/** A logger that writes nothing, for tests and embedding. */
export const silentLogger: Logger = createLogger({ level: 'silent', write: () => {} });
