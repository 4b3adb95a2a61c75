/**
 * @module
 * `edgecore join --cloud <url> --token <t> --node-name <n> [--data-dir d] [--force]`: the command
 * line of {@link join}. One line on stdout on success (how to start EdgeCore with the written
 * config), one line on stderr on failure. Flags, environment and `--help` come from shared/config,
 * as for every Ledge command.
 */
import { formatHelp, loadConfigOrHelp, moduleFields, type ConfigSpec } from '../../shared/config/index.js';
import { ConfigError, JoinTokenMalformedError, errorMessage } from '../../shared/errors/index.js';
import { createLogger, logConfigFields } from '../../shared/log/index.js';
import { edgeConfigSpec } from '../config.js';
import { join } from './join.js';
import { defaultJoinOptions } from './options.js';

export const joinConfigSpec = {
  cloud: { type: 'string', flag: 'cloud', description: "CloudHub's URL: wss://host:port or https://host:port" },
  token: {
    type: 'string',
    flag: 'token',
    env: 'LEDGE_JOIN_TOKEN',
    description: 'join token <id>.<secret>@sha256:<hex> from `ledge token create` (LEDGE_JOIN_TOKEN keeps it out of ps)',
  },
  nodeName: edgeConfigSpec.nodeName,
  dataDir: edgeConfigSpec.dataDir,
  ...moduleFields('', defaultJoinOptions, {
    force: { type: 'boolean', flag: 'force', description: 'join again although this node holds a certificate (a new key replaces the old one)' },
    timeoutMs: { type: 'integer', min: 100, flag: 'timeout-ms', description: 'deadline of the whole exchange with CloudHub (ms)' },
  }),
  ...logConfigFields,
} as const satisfies ConfigSpec;

export const joinUsage =
  'Usage: edgecore join --cloud <wss://host:port> --token <id>.<secret>@sha256:<hex> --node-name <name> [--data-dir <dir>] [--force]\n\n' +
  "Admits this device to CloudCore: makes its key here, checks CloudHub's CA against the token's hash,\n" +
  'gets a certificate for the node and writes <data-dir>/pki/ and <data-dir>/edgecore.json.';

/** Where {@link runJoin} writes, and what it reads (tests and embedding substitute them). */
export interface RunJoinIo {
  /** Default process.stdout. */
  stdout?: { write(s: string): unknown };
  /** Default process.stderr (also where log lines go). */
  stderr?: { write(s: string): unknown };
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** How the success line names EdgeCore's command. Default 'edgecore'. */
  command?: string;
}

/**
 * Runs `edgecore join` and returns the exit code (it never calls process.exit): 0 joined (or
 * `--help`), 1 the join failed, 2 bad flags, node name or token.
 *
 * @example process.exitCode = await runJoin(process.argv.slice(3));
 */
export async function runJoin(argv: string[], io: RunJoinIo = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const command = io.command ?? 'edgecore';
  const fail = (err: unknown, code: number) => {
    stderr.write(`${command} join: ${errorMessage(err)}\n`);
    return code;
  };
  let loaded: Awaited<ReturnType<typeof loadConfigOrHelp<typeof joinConfigSpec>>>;
  try {
    loaded = await loadConfigOrHelp(joinConfigSpec, { argv, env: io.env ?? process.env });
  } catch (err) {
    return fail(err, 2);
  }
  if (loaded.help) {
    stdout.write(`${formatHelp(joinUsage, joinConfigSpec)}\n`);
    return 0;
  }
  if (loaded.positionals.length) return fail(new ConfigError(`unexpected argument ${JSON.stringify(loaded.positionals[0])} (see --help)`), 2);
  const c = loaded.config;
  const log = createLogger({ level: c.log.level, ...(c.log.format ? { format: c.log.format } : {}), write: (line) => void stderr.write(line) });
  for (const w of loaded.warnings) log.warn(w);
  try {
    const r = await join({ cloud: c.cloud, token: c.token, nodeName: c.nodeName, dataDir: c.dataDir, force: c.force, timeoutMs: c.timeoutMs, log });
    stdout.write(`joined ${r.cloud} as node ${r.nodeName} (certificate valid until ${r.notAfter.toISOString()}); start EdgeCore with: ${command} --config ${r.configFile}\n`);
    return 0;
  } catch (err) {
    return fail(err, err instanceof ConfigError || err instanceof JoinTokenMalformedError ? 2 : 1);
  }
}
