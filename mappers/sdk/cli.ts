/**
 * @module
 * The command line every mapper shares (`node dist/mappers/<x>.js --dmi-socket … --socket …`):
 * flags, environment variables and `--help` through shared/config like every Ledge command,
 * JSON log lines, and SIGTERM/SIGINT → stop every device and remove the socket (a mapper pod
 * is stopped with SIGTERM). Exit codes: 0 after a signal, 1 when EdgeCore refused the
 * registration, 2 on bad flags.
 */
import type { ConfigSpec } from '../../shared/config/index.js';
import { StoppedError, errorCode, errorMessage } from '../../shared/errors/index.js';
import { type Logger, logConfigFields, loggerFromConfig } from '../../shared/log/index.js';
import { startCommand } from '../../shared/runtime/index.js';
import type { Driver } from './driver.js';
import { createMapper } from './mapper.js';

declare const LEDGE_VERSION: string | undefined;

/** KubeEdge's DMI socket (edgecore's `deviceTwin.dmiSockPath`). */
export const DEFAULT_DMI_SOCKET = '/etc/kubeedge/dmi.sock';

export interface MapperCommand {
  /** Command name for messages (`mapper-virtual`). */
  command: string;
  /** Defaults of the flags. */
  name: string;
  protocol: string;
  socket: string;
  /** One paragraph for --help. */
  description: string;
  driver: (log: Logger) => Driver;
}

/** The flags of a mapper command. */
export function mapperConfigSpec(def: Pick<MapperCommand, 'name' | 'protocol' | 'socket'>) {
  return {
    name: { type: 'string', flag: 'name', env: 'LEDGE_MAPPER_NAME', default: def.name, description: 'mapper name announced in MapperRegister' },
    protocol: {
      type: 'string',
      flag: 'protocol',
      env: 'LEDGE_MAPPER_PROTOCOL',
      default: def.protocol,
      description: 'protocol name: EdgeCore sends this mapper the devices whose spec.protocol.protocolName equals it',
    },
    socket: { type: 'string', flag: 'socket', env: 'LEDGE_MAPPER_SOCKET', default: def.socket, description: 'unix socket this mapper serves DeviceMapperService on' },
    dmiSocket: { type: 'string', flag: 'dmi-socket', env: 'LEDGE_DMI_SOCKET', default: DEFAULT_DMI_SOCKET, description: "EdgeCore's DMI socket (DeviceManagerService)" },
    ...logConfigFields,
  } as const satisfies ConfigSpec;
}

/** Runs a mapper from the command line until SIGTERM/SIGINT. */
export async function runMapperCommand(def: MapperCommand, argv: string[]): Promise<void> {
  const spec = mapperConfigSpec(def);
  const usage = `Usage: node ${def.command}.js [--dmi-socket ${DEFAULT_DMI_SOCKET}] [--socket ${def.socket}] [options]\n\n${def.description}`;
  const started = await startCommand(def.command, spec, usage, argv, (c) => loggerFromConfig(c.log));
  if (!started) return;
  const { config, log, crash, untilStopSignal } = started;
  const mapper = createMapper({
    name: config.name,
    version: typeof LEDGE_VERSION === 'string' ? LEDGE_VERSION : 'dev',
    protocol: config.protocol,
    socketPath: config.socket,
    dmiSocketPath: config.dmiSocket,
    driver: def.driver(log),
    log,
  });
  crash.setDrain(() => mapper.stop());
  const stopped = untilStopSignal(() => mapper.stop());
  try {
    await mapper.start();
    log.info('mapper started', { pid: process.pid, nodeVersion: process.version });
  } catch (err) {
    if (err instanceof StoppedError) {
      await stopped;
      return;
    }
    log.error(`mapper cannot start: ${errorMessage(err)}`, { code: errorCode(err) });
    process.exitCode = 1;
    await mapper.stop();
    // Exit even if a handle is still open: the pod must restart, not linger.
    process.exit();
  }
  await stopped;
}
