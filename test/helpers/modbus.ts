/**
 * A Modbus TCP device simulated with modbus-serial's ServerTCP on 127.0.0.1, for the Modbus
 * mapper's tests (test/mappers) and the device scenarios (test/devices).
 */
import type { AddressInfo } from 'node:net';
import modbusSerial from 'modbus-serial';

/** A Modbus TCP device simulated with modbus-serial's ServerTCP (unit 1), tables open to the test. */
export class SimulatedDevice {
  readonly coils = new Array<boolean>(100).fill(false);
  readonly discrete = new Array<boolean>(100).fill(false);
  readonly holding = new Array<number>(100).fill(0);
  readonly input = new Array<number>(100).fill(0);
  private server: InstanceType<typeof modbusSerial.ServerTCP> | undefined;
  port = 0;
  /** Reads of input registers so far (a mapper polling the device counts up). */
  inputReads = 0;

  async start(port = 0): Promise<void> {
    const server = new modbusSerial.ServerTCP(
      {
        getCoil: (a: number) => this.coils[a] ?? false,
        getDiscreteInput: (a: number) => this.discrete[a] ?? false,
        getHoldingRegister: (a: number) => this.holding[a] ?? 0,
        getInputRegister: (a: number) => {
          this.inputReads++;
          return this.input[a] ?? 0;
        },
        setCoil: (a: number, value: boolean) => {
          this.coils[a] = value;
        },
        setRegister: (a: number, value: number) => {
          this.holding[a] = value;
        },
      },
      // ServerTCP replaces a falsy port with 502; the string '0' asks the OS for an ephemeral port.
      { host: '127.0.0.1', port: (port || '0') as unknown as number, unitID: 1 },
    );
    await new Promise<void>((resolve, reject) => {
      server.on('initialized', () => resolve());
      server.on('serverError', (err: unknown) => reject(err));
    });
    this.server = server;
    // modbus-serial keeps the net.Server in a private field; its address is the only way to the port.
    this.port = ((server as unknown as { _server: { address(): AddressInfo } })._server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
