/**
 * @module
 * The Modbus TCP mapper (protocol `modbus`, as KubeEdge's Modbus mappers name it), on Ledge's
 * mapper SDK. Bundled as dist/mappers/modbus.js (modbus-serial inside; its native serialport
 * dependency replaced by a stub); also runs with `npx tsx mappers/modbus/main.ts`.
 *
 *   node dist/mappers/modbus.js --dmi-socket /etc/kubeedge/dmi.sock --socket /etc/kubeedge/modbus.sock
 */
import { runMapperCommand } from '../sdk/index.js';
import { MODBUS_PROTOCOL, createModbusDriver } from './driver.js';

await runMapperCommand(
  {
    command: 'mapper-modbus',
    name: 'modbus-mapper',
    protocol: MODBUS_PROTOCOL,
    // KubeEdge's Modbus mapper config: grpc_server.socket_path.
    socket: '/etc/kubeedge/modbus.sock',
    description:
      'Modbus TCP devices: protocol configData {ip, port, slaveID, timeout}; property visitors {register: CoilRegister|DiscreteInputRegister|HoldingRegister|InputRegister, offset, limit, scale, isSwap, isRegisterSwap}.',
    driver: (log) => createModbusDriver(log),
  },
  process.argv.slice(2),
);
