/**
 * @module
 * The Modbus TCP driver, on modbus-serial's TCP client (`connectTCP`; its serial ports and the
 * native `serialport` package are never used — the bundle replaces serialport with a stub).
 *
 * One connection per device, opened on first use and again after a failure (a device that is
 * switched off and on again recovers without a mapper restart). Requests to a device run one
 * at a time (Modbus TCP gateways and small PLCs often handle one transaction at a time).
 * Reads: coils and discrete inputs (FC1/FC2), holding and input registers (FC3/FC4), decoded
 * by codec.ts. Writes: coils (FC5, FC15 for several) and holding registers (FC6, FC16 for
 * several); discrete inputs and input registers are read-only in Modbus.
 * State: `ok` after a request succeeded, `unhealthy` after the device answered a Modbus
 * exception, `disconnected` when it cannot be reached.
 */
import modbusSerial from 'modbus-serial';
import type { ConfigData, Device } from '../../shared/devices/index.js';
import { DeviceInvalidError, TimeoutError } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import type { Driver, DriverDevice, DriverProperty } from '../sdk/index.js';
import { decodeBits, decodeRegisters, encodeBits, encodeRegisters } from './codec.js';
import { type ModbusTcpConfig, parseProtocolConfig, parseVisitor } from './config.js';

export const MODBUS_PROTOCOL = 'modbus';

// Under NodeNext the default import is module.exports, typed as the module; the class is its
// `default` (modbus-serial sets module.exports.default = module.exports), the same at run time.
const ModbusRTU = modbusSerial.default;
type Client = InstanceType<typeof ModbusRTU>;

function isModbusException(err: unknown): boolean {
  return typeof err === 'object' && err !== null && typeof (err as { modbusCode?: unknown }).modbusCode === 'number';
}

/**
 * modbus-serial rejects with plain objects for its own failures (`{name: 'TransactionTimedOutError',
 * message: 'Timed out', errno: 'ETIMEDOUT'}`, PortNotOpenError): made Errors, so logs show the
 * message, with `errno` as the code.
 */
function asError(err: unknown): unknown {
  if (err instanceof Error || typeof err !== 'object' || err === null) return err;
  const o = err as { name?: unknown; message?: unknown; errno?: unknown; modbusCode?: unknown };
  const e = new Error(typeof o.message === 'string' ? o.message : String(o.name ?? 'Modbus request failed'));
  if (typeof o.errno === 'string') Object.assign(e, { code: o.errno });
  if (typeof o.modbusCode === 'number') Object.assign(e, { modbusCode: o.modbusCode });
  return e;
}

class ModbusDevice implements DriverDevice {
  private client: Client | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private status = 'unknown';
  private stopped = false;

  constructor(
    private readonly cfg: ModbusTcpConfig,
    private readonly log: Logger,
  ) {}

  /** Runs `fn` after the requests before it (one transaction at a time per device). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private drop(): void {
    const c = this.client;
    this.client = undefined;
    // destroy() calls back synchronously; close() may never call back on a dead socket.
    c?.destroy(() => {});
  }

  private async connected(): Promise<Client> {
    if (this.client?.isOpen) return this.client;
    this.drop();
    const client = new ModbusRTU();
    // modbus-serial relays port errors as 'error' events: without a listener one would crash the process.
    client.on('error', (err: unknown) => this.log.debug(`modbus connection error: ${(err as Error).message}`));
    client.setTimeout(this.cfg.timeoutMs);
    this.client = client;
    await client.connectTCP(this.cfg.host, { port: this.cfg.port });
    client.setID(this.cfg.slaveId);
    return client;
  }

  /**
   * One request. modbus-serial times transactions out itself; the extra deadline guards the
   * queue against a promise it never settles (it leaves pending transactions of a destroyed port).
   */
  private io<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      if (this.stopped) throw new DeviceInvalidError('device stopped');
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new TimeoutError(`Modbus device ${this.cfg.host}:${this.cfg.port} did not answer within ${this.cfg.timeoutMs * 2} ms`)),
          this.cfg.timeoutMs * 2,
        );
      });
      try {
        const result = await Promise.race([this.connected().then(fn), deadline]);
        this.status = 'ok';
        return result;
      } catch (err) {
        if (isModbusException(err)) {
          // The device answered, refusing the request (illegal address, device busy…): the connection is fine.
          this.status = 'unhealthy';
        } else {
          this.status = 'disconnected';
          this.drop();
        }
        throw asError(err);
      } finally {
        clearTimeout(timer);
      }
    });
  }

  async read(p: DriverProperty, visitor: ConfigData): Promise<string> {
    const v = parseVisitor(visitor);
    switch (v.register) {
      case 'CoilRegister':
        return decodeBits((await this.io((c) => c.readCoils(v.offset, v.limit))).data, p.type, v);
      case 'DiscreteInputRegister':
        return decodeBits((await this.io((c) => c.readDiscreteInputs(v.offset, v.limit))).data, p.type, v);
      case 'HoldingRegister':
        return decodeRegisters((await this.io((c) => c.readHoldingRegisters(v.offset, v.limit))).buffer, p.type, v);
      case 'InputRegister':
        return decodeRegisters((await this.io((c) => c.readInputRegisters(v.offset, v.limit))).buffer, p.type, v);
    }
  }

  async write(p: DriverProperty, visitor: ConfigData, value: string): Promise<void> {
    const v = parseVisitor(visitor);
    if (v.register === 'CoilRegister') {
      const bits = encodeBits(value, p.type, v);
      await this.io<unknown>((c) => (bits.length === 1 ? c.writeCoil(v.offset, bits[0]!) : c.writeCoils(v.offset, bits)));
      return;
    }
    if (v.register === 'HoldingRegister') {
      const words = encodeRegisters(value, p.type, v);
      await this.io<unknown>((c) => (words.length === 1 ? c.writeRegister(v.offset, words[0]!) : c.writeRegisters(v.offset, words)));
      return;
    }
    throw new DeviceInvalidError(`${p.name}: a ${v.register} is read-only in Modbus; only CoilRegister and HoldingRegister can be written`);
  }

  async state(): Promise<string> {
    if (this.stopped) return 'offline';
    if (this.status === 'unknown' || this.status === 'disconnected') {
      // No request has told yet (or the last one failed): try to connect, as mapper-framework's GetStatus does.
      try {
        await this.exclusive(() => this.connected());
        this.status = 'ok';
      } catch {
        this.status = 'disconnected';
        this.drop();
      }
    }
    return this.status;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.queue;
    this.drop();
  }
}

/** The Modbus TCP driver. init() checks the protocol settings only; the connection opens on first use. */
export function createModbusDriver(log: Logger): Driver {
  return {
    async init(device: Device): Promise<DriverDevice> {
      const cfg = parseProtocolConfig(device.spec.protocol?.configData);
      return new ModbusDevice(cfg, log.child({ device: `${device.metadata.namespace || 'default'}/${device.metadata.name}`, modbus: `${cfg.host}:${cfg.port}/${cfg.slaveId}` }));
    },
  };
}
