/**
 * @module
 * The Modbus TCP mapper's reading of a Device's `configData` (KubeEdge's field names).
 *
 * Protocol (`spec.protocol.configData`): `ip`, `port` (502), `slaveID` (1), `timeout` (ms,
 * 1000). KubeEdge's legacy mappers-go Modbus mapper nested the address as
 * `tcp: { ip, port }` (v1alpha2 `protocol.common.tcp`); that form is accepted too (as an object,
 * or as the JSON string it becomes on the way through DMI). But EdgeCore's DMI encoder refuses
 * nested objects ("does not support converting to any"), so against KubeEdge's EdgeCore only
 * the flat form works: write the flat form. Serial settings (`serialPort`, `baudRate`, …: the
 * v1.15 DMI Modbus mapper is RTU only) are refused with a clear error: this mapper is TCP only.
 *
 * Visitors (`visitors.configData`, mappers-go's ModbusVisitorConfig): `register`
 * (CoilRegister | DiscreteInputRegister | HoldingRegister | InputRegister), `offset`, `limit`
 * (1), `scale` (1), `isSwap`, `isRegisterSwap`. Numbers may arrive as numbers, float32
 * wrappers or strings (KubeEdge's e2e sample writes `offset: "2"`); `scale` is taken to 7
 * significant digits, the precision of the float32 EdgeCore sends it as.
 */
import type { ConfigData } from '../../shared/devices/index.js';
import { DeviceInvalidError } from '../../shared/errors/index.js';
import { configBoolean, configNumber, configString } from '../sdk/index.js';

export const MODBUS_REGISTERS = ['CoilRegister', 'DiscreteInputRegister', 'HoldingRegister', 'InputRegister'] as const;
export type ModbusRegister = (typeof MODBUS_REGISTERS)[number];

export interface ModbusTcpConfig {
  host: string;
  port: number;
  slaveId: number;
  timeoutMs: number;
}

export interface ModbusVisitor {
  register: ModbusRegister;
  /** First register or coil (0-based protocol address). */
  offset: number;
  /** How many registers or coils. */
  limit: number;
  /** Reading = raw × scale; a written value is divided by it. */
  scale: number;
  /** Swap the two bytes of each register. */
  isSwap: boolean;
  /** Reverse the order of the registers (word swap, for 32/64-bit values). */
  isRegisterSwap: boolean;
}

export const defaultModbusTcp = { port: 502, slaveId: 1, timeoutMs: 1000 } as const;

function integer(name: string, v: number | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Math.round(v);
  // float32 turns 502 into 502 exactly, but rounding keeps e.g. 1.0000001 an integer.
  if (Math.abs(v - n) > 1e-6 || n < min || n > max) throw new DeviceInvalidError(`${name} must be an integer in [${min}, ${max}] (got ${v})`);
  return n;
}

function nestedTcp(data: ConfigData): ConfigData {
  const tcp = data.tcp;
  if (tcp === undefined || tcp === null) return {};
  if (typeof tcp === 'string') {
    try {
      const parsed: unknown = JSON.parse(tcp);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as ConfigData;
    } catch {
      // fall through to the error below
    }
  } else if (typeof tcp === 'object' && !Array.isArray(tcp)) {
    return tcp as ConfigData;
  }
  throw new DeviceInvalidError('protocol configData.tcp must be an object {ip, port}');
}

/** The TCP endpoint of a Device (throws DeviceInvalidError naming the field). */
export function parseProtocolConfig(data: ConfigData | undefined): ModbusTcpConfig {
  const flat = data ?? {};
  const tcp = nestedTcp(flat);
  const host = configString(flat, 'ip') ?? configString(tcp, 'ip');
  if (!host) {
    if (flat.serialPort !== undefined)
      throw new DeviceInvalidError('Modbus RTU (configData.serialPort) is not supported by this mapper: it speaks Modbus TCP; set configData.ip and port');
    throw new DeviceInvalidError('protocol configData.ip is missing (the Modbus TCP device address)');
  }
  if (host.length > 253 || /\s/.test(host)) throw new DeviceInvalidError(`protocol configData.ip is not a host name or address: ${host.slice(0, 64)}`);
  const port = integer('protocol configData.port', configNumber(flat, 'port') ?? configNumber(tcp, 'port'), 1, 65535) ?? defaultModbusTcp.port;
  const slaveId = integer('protocol configData.slaveID', configNumber(flat, 'slaveID') ?? configNumber(flat, 'slaveId'), 0, 255) ?? defaultModbusTcp.slaveId;
  const timeoutMs = integer('protocol configData.timeout', configNumber(flat, 'timeout'), 10, 60_000) ?? defaultModbusTcp.timeoutMs;
  return { host, port, slaveId, timeoutMs };
}

/** A property's Modbus address (throws DeviceInvalidError naming the field). */
export function parseVisitor(data: ConfigData): ModbusVisitor {
  const register = configString(data, 'register');
  if (!register || !(MODBUS_REGISTERS as readonly string[]).includes(register)) {
    throw new DeviceInvalidError(
      `visitor configData.register must be one of ${MODBUS_REGISTERS.join(', ')} (got ${register === undefined ? 'nothing' : JSON.stringify(register.slice(0, 40))})`,
    );
  }
  const bits = register === 'CoilRegister' || register === 'DiscreteInputRegister';
  const offset = integer('visitor configData.offset', configNumber(data, 'offset'), 0, 65535);
  if (offset === undefined) throw new DeviceInvalidError('visitor configData.offset is missing');
  // Modbus limits per request: 2000 coils, 125 registers.
  const limit = integer('visitor configData.limit', configNumber(data, 'limit'), 1, bits ? 2000 : 125) ?? 1;
  if (offset + limit > 65536) throw new DeviceInvalidError(`visitor configData.offset + limit goes past register 65535`);
  const given = configNumber(data, 'scale') ?? 1;
  if (given === 0) throw new DeviceInvalidError('visitor configData.scale must not be 0');
  // EdgeCore sends JSON numbers as float32 (0.1 arrives as 0.10000000149…): 7 significant digits is what it carries.
  const scale = Number(given.toPrecision(7));
  return {
    register: register as ModbusRegister,
    offset,
    limit,
    scale,
    isSwap: configBoolean(data, 'isSwap', false),
    isRegisterSwap: configBoolean(data, 'isRegisterSwap', false),
  };
}
