/**
 * @module
 * Typed configuration: one object per side, built from defaults, then a YAML or JSON
 * file, then environment variables, then command-line flags (later wins), and
 * validated at start with a message naming the bad field and where its value came from.
 *
 * A side declares a flat spec keyed by dotted paths (`hub.port`); each field names its
 * type, default, optional env variable and flag, and a one-line description used for
 * `--help`. No global singleton: the loaded object is passed into each module's factory.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../errors/index.js';

export type FieldType = 'string' | 'integer' | 'number' | 'boolean' | 'string[]' | 'enum';

export interface FieldSpec {
  type: FieldType;
  description: string;
  default?: unknown;
  /** Environment variable that overrides the file. */
  env?: string;
  /** Command-line flag (without dashes) that overrides env and file. */
  flag?: string;
  /** Single-letter alias for the flag. */
  short?: string;
  min?: number;
  max?: number;
  /** Allowed values for 'enum'. */
  values?: readonly string[];
  /** Field may be absent (no default, not required). */
  optional?: boolean;
}

export type ConfigSpec = Record<string, FieldSpec>;

export interface LoadConfigInput {
  /** Command-line arguments after the subcommand. */
  argv?: string[];
  /** Environment. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Config file path (also taken from --config). */
  file?: string;
  /** Object merged over defaults before the file (programmatic embedding, tests). */
  overrides?: Record<string, unknown>;
}

export interface LoadedConfig<T> {
  config: T;
  /** Positional arguments left after flags. */
  positionals: string[];
  help: boolean;
}

type Source = 'default' | 'overrides' | 'file' | 'env' | 'flag';

function flatten(obj: Record<string, unknown>, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) flatten(v as Record<string, unknown>, key, out);
    else out[key] = v;
  }
  return out;
}

function unflatten(flat: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [path, v] of Object.entries(flat)) {
    if (v === undefined) continue;
    const parts = path.split('.');
    let cur = out;
    for (const p of parts.slice(0, -1)) cur = (cur[p] ??= {}) as Record<string, unknown>;
    cur[parts.at(-1)!] = v;
  }
  return out;
}

function describe(source: Source, spec: FieldSpec): string {
  switch (source) {
    case 'flag': return ` (from --${spec.flag})`;
    case 'env': return ` (from ${spec.env})`;
    case 'file': return ' (from the config file)';
    case 'overrides': return ' (from overrides)';
    default: return ' (default)';
  }
}

/** Coerces and checks one value; strings from env/flags are parsed. */
function coerce(key: string, spec: FieldSpec, raw: unknown, source: Source): unknown {
  const bad = (what: string): never => {
    throw new ConfigError(`config field "${key}"${describe(source, spec)} ${what}, got ${JSON.stringify(raw)}`);
  };
  switch (spec.type) {
    case 'string':
      if (typeof raw !== 'string') bad('must be a string');
      return raw;
    case 'enum':
      if (typeof raw !== 'string' || !spec.values!.includes(raw)) bad(`must be one of ${spec.values!.join(', ')}`);
      return raw;
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      return bad('must be true or false');
    case 'string[]': {
      const list = typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : raw;
      if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) bad('must be a list of strings');
      return list;
    }
    case 'integer':
    case 'number': {
      const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
      const kind = spec.type === 'integer' ? 'an integer' : 'a number';
      const range = spec.min !== undefined && spec.max !== undefined ? ` between ${spec.min} and ${spec.max}` : spec.min !== undefined ? ` ≥ ${spec.min}` : '';
      if (typeof n !== 'number' || !Number.isFinite(n) || (spec.type === 'integer' && !Number.isInteger(n))) bad(`must be ${kind}${range}`);
      if ((spec.min !== undefined && (n as number) < spec.min) || (spec.max !== undefined && (n as number) > spec.max)) bad(`must be ${kind}${range}`);
      return n;
    }
  }
}

/** Reads a YAML (.yaml/.yml) or JSON config file into a plain object. */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    if (extname(path) === '.json') {
      value = JSON.parse(text);
    } else {
      // Loaded on demand: most edge devices run from flags and never pay for the parser.
      const { parse } = await import('yaml');
      value = parse(text);
    }
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message}`, { cause: err });
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`config file ${path} must contain a mapping at the top level`);
  return value as Record<string, unknown>;
}

/** Builds and validates a config object. Throws ConfigError naming the bad field. */
export async function loadConfig<T>(spec: ConfigSpec, input: LoadConfigInput = {}): Promise<LoadedConfig<T>> {
  const env = input.env ?? process.env;
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {
    config: { type: 'string', short: 'c' },
    help: { type: 'boolean', short: 'h' },
  };
  const flagToKey = new Map<string, string>();
  for (const [key, f] of Object.entries(spec)) {
    if (!f.flag) continue;
    options[f.flag] = { type: f.type === 'boolean' ? 'boolean' : 'string', ...(f.short ? { short: f.short } : {}), ...(f.type === 'string[]' ? { multiple: true } : {}) };
    flagToKey.set(f.flag, key);
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: input.argv ?? [], options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see --help)`, { cause: err });
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const result: Record<string, unknown> = {};
  const sources: Record<string, Source> = {};
  const set = (key: string, v: unknown, s: Source) => {
    result[key] = v;
    sources[key] = s;
  };
  for (const [key, f] of Object.entries(spec)) if (f.default !== undefined) set(key, f.default, 'default');
  const check = (flat: Record<string, unknown>, s: Source, where: string) => {
    for (const [key, v] of Object.entries(flat)) {
      if (!(key in spec)) throw new ConfigError(`unknown config field "${key}" in ${where}`);
      if (v !== undefined && v !== null) set(key, coerce(key, spec[key]!, v, s), s);
    }
  };
  if (input.overrides) check(flatten(input.overrides), 'overrides', 'overrides');
  const file = (values.config as string | undefined) ?? input.file;
  if (file) check(flatten(await readConfigFile(file)), 'file', `config file ${file}`);
  for (const [key, f] of Object.entries(spec)) {
    if (f.env && env[f.env] !== undefined && env[f.env] !== '') set(key, coerce(key, f, env[f.env], 'env'), 'env');
  }
  for (const [flag, key] of flagToKey) {
    const v = values[flag];
    if (v === undefined) continue;
    const f = spec[key]!;
    set(key, coerce(key, f, Array.isArray(v) ? v.join(',') : v, 'flag'), 'flag');
  }
  if (!values.help) {
    for (const [key, f] of Object.entries(spec)) {
      if (result[key] === undefined && !f.optional) {
        const how = [f.flag ? `--${f.flag}` : '', f.env ?? '', `"${key}" in the config file`].filter(Boolean).join(', ');
        throw new ConfigError(`config field "${key}" is required (${f.description}); set it with ${how}`);
      }
    }
  }
  return { config: unflatten(result) as T, positionals: parsed.positionals, help: values.help === true };
}

/** Renders flag help for a spec. */
export function formatHelp(usage: string, spec: ConfigSpec): string {
  const lines = [usage, '', 'Options:', '  -c, --config <file>      YAML or JSON config file (keys as in the "field" column)', '  -h, --help               show this help'];
  for (const [key, f] of Object.entries(spec)) {
    if (!f.flag) continue;
    const flag = `${f.short ? `-${f.short}, ` : '    '}--${f.flag}${f.type === 'boolean' ? '' : ` <${f.type === 'enum' ? f.values!.join('|') : f.type}>`}`;
    const dflt = f.default !== undefined ? ` [default: ${Array.isArray(f.default) ? f.default.join(',') : String(f.default)}]` : '';
    lines.push(`  ${flag.padEnd(26)} ${f.description}${dflt}`);
    lines.push(`  ${''.padEnd(26)} field: ${key}${f.env ? `, env: ${f.env}` : ''}`);
  }
  const fileOnly = Object.entries(spec).filter(([, f]) => !f.flag);
  if (fileOnly.length) {
    lines.push('', 'Config-file / env only:');
    for (const [key, f] of fileOnly) lines.push(`  ${key.padEnd(28)} ${f.description}${f.default !== undefined ? ` [default: ${String(f.default)}]` : ''}${f.env ? ` (env ${f.env})` : ''}`);
  }
  return lines.join('\n');
}
