/**
 * @module
 * Typed configuration: one object per side, built from defaults, then a YAML or JSON
 * file, then environment variables, then command-line flags (later wins), and
 * validated at start with a message naming the bad field and where its value came from.
 *
 * A side declares a flat spec keyed by dotted paths (`hub.port`), `as const satisfies
 * ConfigSpec`; each field names its type, default, optional env variable and flag, and a
 * one-line description used for `--help`. The spec is the only declaration of a field:
 * the loaded object's type is derived from it ({@link ConfigOf}), and a field backed by a
 * module option takes the module's default ({@link moduleFields}) instead of repeating it.
 * No global singleton: the loaded object is passed into each module's factory.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../errors/index.js';

interface FieldBase {
  /** One line for `--help`. */
  description: string;
  /** Environment variable that overrides the file. */
  env?: string;
  /** Command-line flag (without dashes) that overrides env and file. */
  flag?: string;
  /** Single-letter alias for the flag. */
  short?: string;
  /** Field may be absent (no default, not required). Declare specs `as const` so this stays the literal `true`. */
  optional?: boolean;
  /** Former flag names, still accepted; each one used logs one deprecation warning. */
  deprecatedFlags?: readonly string[];
  /** Former environment variables, read when `env` is unset; each one used logs one deprecation warning. */
  deprecatedEnv?: readonly string[];
}

export interface StringField extends FieldBase {
  type: 'string';
  default?: string;
}
export interface NumberField extends FieldBase {
  type: 'integer' | 'number';
  default?: number;
  min?: number;
  max?: number;
}
export interface BooleanField extends FieldBase {
  type: 'boolean';
  default?: boolean;
}
export interface StringListField extends FieldBase {
  type: 'string[]';
  default?: readonly string[];
}
export interface EnumField extends FieldBase {
  type: 'enum';
  /** Allowed values. */
  values: readonly string[];
  default?: string;
}

/** One field. The `type` decides what the loaded value is (see {@link ConfigOf}). */
export type FieldSpec = StringField | NumberField | BooleanField | StringListField | EnumField;
export type FieldType = FieldSpec['type'];

/**
 * A side's flat spec keyed by dotted paths (`hub.port`). Declare it
 * `{ … } as const satisfies ConfigSpec`: the loaded object's type is derived from it
 * ({@link ConfigOf}), so the spec is the only place a field is declared.
 */
export type ConfigSpec = { readonly [key: string]: FieldSpec };

/** The value type of one field. */
export type FieldValue<F> = F extends { type: 'enum'; values: readonly (infer V)[] }
  ? V
  : F extends { type: 'string' }
    ? string
    : F extends { type: 'integer' | 'number' }
      ? number
      : F extends { type: 'boolean' }
        ? boolean
        : F extends { type: 'string[]' }
          ? string[]
          : never;

type IsOptional<F> = F extends { optional: true } ? true : false;
type Keys<S> = keyof S & string;
/** Keys without a dot: fields at this level. */
type LeafKeys<S> = { [K in Keys<S>]: K extends `${string}.${string}` ? never : K }[Keys<S>];
/** First segments of dotted keys: nested objects at this level. */
type Prefixes<S> = Keys<S> extends infer K ? (K extends `${infer H}.${string}` ? H : never) : never;
/** The fields under `H.`, with `H.` removed from their keys. */
type Under<S, H extends string> = { [K in Keys<S> as K extends `${H}.${infer R}` ? R : never]: S[K] };
/** Whether every field (at any depth) is optional: then the nested object may be absent too. */
type AllOptional<S> = false extends { [K in keyof S]: IsOptional<S[K]> }[keyof S] ? false : true;

/**
 * The loaded config of spec `S`: dotted keys become nested objects, each field typed by
 * its `type` (an enum by its `values`), optional where `optional: true`. A nested object
 * is optional only when all of its fields are (it is absent when none is set).
 */
export type ConfigOf<S> = S extends object ? Flat<Shape<S>> : never;

/** One object type instead of an intersection (readable in editors and errors). */
type Flat<T> = { [K in keyof T]: T[K] };

type Shape<S> = { [K in LeafKeys<S> as IsOptional<S[K]> extends true ? never : K]: FieldValue<S[K]> } & {
  [K in LeafKeys<S> as IsOptional<S[K]> extends true ? K : never]?: FieldValue<S[K]>;
} & { [H in Prefixes<S> as AllOptional<Under<S, H>> extends true ? never : H]: ConfigOf<Under<S, H>> } & {
  [H in Prefixes<S> as AllOptional<Under<S, H>> extends true ? H : never]?: ConfigOf<Under<S, H>>;
};

/** A field that takes its default from a module option of type `T` (so it writes none itself). */
type ModuleFieldFor<T> = ([T] extends [number]
  ? Omit<NumberField, 'default'>
  : [T] extends [boolean]
    ? Omit<BooleanField, 'default'>
    : [T] extends [readonly string[]]
      ? Omit<StringListField, 'default'>
      : [T] extends [string]
        ? Omit<StringField, 'default'> | Omit<EnumField, 'default'>
        : never) & { default?: never };

type Join<P extends string, K extends string> = P extends '' ? K : `${P}.${K}`;

/**
 * Fields backed by a module option, with the module's default. `defaults` is the
 * module's own defaults object (its options.ts), the one place the value is written:
 * the field gets `default: defaults[key]` and never repeats it. At compile time each key
 * must be a key of `defaults` (a typo fails) and the field's `type` must fit the
 * option's type (an integer field for a number option, …).
 *
 * ```ts
 * ...moduleFields('hub', defaultCloudHubOptions, { port: { type: 'integer', flag: 'port', description: '…' } })
 * ```
 */
export function moduleFields<const P extends string, D extends object, const F extends { [K in keyof F]: K extends keyof D ? ModuleFieldFor<D[K]> : never }>(
  prefix: P,
  defaults: D,
  fields: F,
): { readonly [K in Keys<F> as Join<P, K>]: F[K] & { readonly default: K extends keyof D ? D[K] : never } } {
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(fields)) {
    if (!(key in defaults)) throw new TypeError(`moduleFields(${prefix}): "${key}" is not an option of the module`);
    out[prefix ? `${prefix}.${key}` : key] = { ...(field as object), default: (defaults as Record<string, unknown>)[key] };
  }
  // The mapped type is what `out` holds by construction: the keys and defaults were just copied.
  return out as { readonly [K in Keys<F> as Join<P, K>]: F[K] & { readonly default: K extends keyof D ? D[K] : never } };
}

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

interface LoadedCommon {
  /** Positional arguments left after flags. */
  positionals: string[];
  /** One line per deprecated flag or environment variable used; the caller logs them once it has a logger. */
  warnings: string[];
}

export interface LoadedConfig<T> extends LoadedCommon {
  config: T;
}

/** What a command line asks for: a config, or `--help` (then required fields may be missing and there is no config). */
export type ConfigOrHelp<T> = (LoadedConfig<T> & { help: false }) | (LoadedCommon & { help: true });

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

/** Where a value came from, for error messages: `via` names the flag or variable actually used. */
function describe(source: Source, via?: string): string {
  switch (source) {
    case 'flag':
      return ` (from --${via})`;
    case 'env':
      return ` (from ${via})`;
    case 'file':
      return ' (from the config file)';
    case 'overrides':
      return ' (from overrides)';
    default:
      return ' (default)';
  }
}

/** Coerces and checks one value; strings from env/flags are parsed. */
function coerce(key: string, spec: FieldSpec, raw: unknown, source: Source, via?: string): unknown {
  const bad = (what: string): never => {
    throw new ConfigError(`config field "${key}"${describe(source, via)} ${what}, got ${JSON.stringify(raw)}`);
  };
  switch (spec.type) {
    case 'string':
      if (typeof raw !== 'string') bad('must be a string');
      return raw;
    case 'enum':
      if (typeof raw !== 'string' || !spec.values.includes(raw)) bad(`must be one of ${spec.values.join(', ')}`);
      return raw;
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      return bad('must be true or false');
    case 'string[]': {
      const list =
        typeof raw === 'string'
          ? raw
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
          : raw;
      if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) bad('must be a list of strings');
      // A copy: the loaded config never shares an array with the spec (its default) or the caller.
      return [...(list as string[])];
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

/**
 * Checks that `value` has the shape {@link ConfigOf} promises for `spec`: every field
 * that is not optional is present, at its dotted path, with a value of its type. This is
 * what lets {@link loadConfig} return the derived type without a cast.
 */
function conforms<const S extends ConfigSpec>(spec: S, value: Record<string, unknown>): value is ConfigOf<S> & Record<string, unknown> {
  for (const [key, f] of Object.entries(spec)) {
    let v: unknown = value;
    for (const part of key.split('.')) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
    if (v === undefined) {
      if (f.optional) continue;
      return false;
    }
    const ok =
      f.type === 'string' || f.type === 'enum'
        ? typeof v === 'string'
        : f.type === 'integer' || f.type === 'number'
          ? typeof v === 'number'
          : f.type === 'boolean'
            ? typeof v === 'boolean'
            : Array.isArray(v);
    if (!ok) return false;
  }
  return true;
}

/**
 * Builds and validates a config object from `spec` (declared `as const satisfies
 * ConfigSpec`); its type is derived from the spec. Throws ConfigError naming the bad
 * field and where its value came from. `--help` is not an option here (see
 * {@link loadConfigOrHelp} for command lines).
 */
export async function loadConfig<const S extends ConfigSpec>(spec: S, input: LoadConfigInput = {}): Promise<LoadedConfig<ConfigOf<S>>> {
  const loaded = await load(spec, input, false);
  if (loaded.help) throw new ConfigError('--help is not accepted here');
  return loaded;
}

/** {@link loadConfig} for a command line: `--help` / `-h` returns `{ help: true }` instead of a config. */
export function loadConfigOrHelp<const S extends ConfigSpec>(spec: S, input: LoadConfigInput = {}): Promise<ConfigOrHelp<ConfigOf<S>>> {
  return load(spec, input, true);
}

async function load<const S extends ConfigSpec>(spec: S, input: LoadConfigInput, allowHelp: boolean): Promise<ConfigOrHelp<ConfigOf<S>>> {
  const env = input.env ?? process.env;
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {
    config: { type: 'string', short: 'c' },
    ...(allowHelp ? { help: { type: 'boolean' as const, short: 'h' } } : {}),
  };
  /** Flag (current or deprecated) → field key; flags in the order they are applied (deprecated first, so the current one wins). */
  const flagToKey = new Map<string, string>();
  const deprecatedFlag = new Map<string, string>();
  const negatedFlagToKey = new Map<string, string>();
  for (const [key, f] of Object.entries(spec)) {
    if (!f.flag) continue;
    const opt = { type: f.type === 'boolean' ? ('boolean' as const) : ('string' as const), ...(f.type === 'string[]' ? { multiple: true } : {}) };
    for (const old of f.deprecatedFlags ?? []) {
      options[old] = opt;
      flagToKey.set(old, key);
      deprecatedFlag.set(old, f.flag);
    }
    options[f.flag] = { ...opt, ...(f.short ? { short: f.short } : {}) };
    flagToKey.set(f.flag, key);
    // A boolean flag is turned off with --no-<flag> (Node 20's parseArgs has no negation of its own).
    if (f.type === 'boolean') {
      options[`no-${f.flag}`] = { type: 'boolean' };
      negatedFlagToKey.set(`no-${f.flag}`, key);
    }
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: input.argv ?? [], options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see --help)`, { cause: err });
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const warnings: string[] = [];
  const result: Record<string, unknown> = {};
  const set = (key: string, v: unknown) => {
    result[key] = v;
  };
  // Defaults go through the same checks: a module default outside the field's range fails every start, and its test.
  for (const [key, f] of Object.entries(spec)) if (f.default !== undefined) set(key, coerce(key, f, f.default, 'default'));
  const check = (flat: Record<string, unknown>, s: Source, where: string) => {
    for (const [key, v] of Object.entries(flat)) {
      const f = spec[key];
      if (!f) throw new ConfigError(`unknown config field "${key}" in ${where}`);
      if (v !== undefined && v !== null) set(key, coerce(key, f, v, s));
    }
  };
  if (input.overrides) check(flatten(input.overrides), 'overrides', 'overrides');
  const file = (values.config as string | undefined) ?? input.file;
  if (file) check(flatten(await readConfigFile(file)), 'file', `config file ${file}`);
  for (const [key, f] of Object.entries(spec)) {
    const names = [...(f.env ? [f.env] : []), ...(f.deprecatedEnv ?? [])];
    const name = names.find((n) => env[n] !== undefined && env[n] !== '');
    if (!name) continue;
    if (name !== f.env) warnings.push(`environment variable ${name} is deprecated; use ${f.env ?? `"${key}" in the config file`}`);
    set(key, coerce(key, f, env[name], 'env', name));
  }
  for (const [flag, key] of flagToKey) {
    const v = values[flag];
    if (v === undefined) continue;
    const current = deprecatedFlag.get(flag);
    if (current) warnings.push(`--${flag} is deprecated; use --${current}`);
    set(key, coerce(key, spec[key]!, Array.isArray(v) ? v.join(',') : v, 'flag', flag));
  }
  for (const [flag, key] of negatedFlagToKey) {
    if (values[flag] === undefined) continue;
    const positive = flag.slice('no-'.length);
    if (values[positive] !== undefined) throw new ConfigError(`--${positive} and --${flag} contradict each other (see --help)`);
    set(key, false);
  }
  if (!values.help) {
    for (const [key, f] of Object.entries(spec)) {
      if (result[key] === undefined && !f.optional) {
        const how = [f.flag ? `--${f.flag}` : '', f.env ?? '', `"${key}" in the config file`].filter(Boolean).join(', ');
        throw new ConfigError(`config field "${key}" is required (${f.description}); set it with ${how}`);
      }
    }
  }
  if (values.help) return { help: true, positionals: parsed.positionals, warnings };
  const config = unflatten(result);
  // Cannot fail after the checks above; it is what proves the derived type (no cast).
  if (!conforms(spec, config)) throw new ConfigError('loaded config does not match its spec');
  return { help: false, config, positionals: parsed.positionals, warnings };
}

/** Renders flag help for a spec. */
export function formatHelp(usage: string, spec: ConfigSpec): string {
  const pad = 36;
  const lines = [
    usage,
    '',
    'Options:',
    `  ${'-c, --config <file>'.padEnd(pad)} YAML or JSON config file (keys as in the "field" column)`,
    `  ${'-h, --help'.padEnd(pad)} show this help`,
  ];
  const showDefault = (f: FieldSpec) => (f.default !== undefined ? ` [default: ${Array.isArray(f.default) ? f.default.join(',') : String(f.default)}]` : '');
  for (const [key, f] of Object.entries(spec)) {
    if (!f.flag) continue;
    const flag = `${f.short ? `-${f.short}, ` : '    '}--${f.type === 'boolean' ? `[no-]${f.flag}` : `${f.flag} <${f.type === 'enum' ? f.values.join('|') : f.type}>`}`;
    lines.push(`  ${flag.padEnd(pad)} ${f.description}${showDefault(f)}`);
    const old = [...(f.deprecatedFlags ?? []).map((d) => `--${d}`), ...(f.deprecatedEnv ?? [])];
    lines.push(`  ${''.padEnd(pad)} field: ${key}${f.env ? `, env: ${f.env}` : ''}${old.length ? ` (deprecated: ${old.join(', ')})` : ''}`);
  }
  const fileOnly = Object.entries(spec).filter(([, f]) => !f.flag);
  if (fileOnly.length) {
    lines.push('', 'Config-file / env only:');
    for (const [key, f] of fileOnly) lines.push(`  ${key.padEnd(pad)} ${f.description}${showDefault(f)}${f.env ? ` (env ${f.env})` : ''}`);
  }
  return lines.join('\n');
}
