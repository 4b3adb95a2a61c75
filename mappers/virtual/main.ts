/**
 * @module
 * The virtual-device mapper (KubeEdge's `virtualProtocol` sample, on Ledge's mapper SDK):
 * simulated temperature/humidity-style sensors, for trying devices end to end without
 * hardware. Bundled as dist/mappers/virtual.js; also runs with `npx tsx mappers/virtual/main.ts`.
 *
 *   node dist/mappers/virtual.js --dmi-socket /etc/kubeedge/dmi.sock --socket /etc/kubeedge/virtualdevice.sock
 */
import { runMapperCommand } from '../sdk/index.js';
import { VIRTUAL_PROTOCOL, createVirtualDriver } from './driver.js';

await runMapperCommand(
  {
    command: 'mapper-virtual',
    name: 'virtual-mapper',
    protocol: VIRTUAL_PROTOCOL,
    // KubeEdge's virtualdevice mapper config: grpc_server.socket_path.
    socket: '/etc/kubeedge/virtualdevice.sock',
    description: 'Simulated devices of protocol virtualProtocol: each numeric property reads a random value below its desired value.',
    driver: () => createVirtualDriver(),
  },
  process.argv.slice(2),
);
