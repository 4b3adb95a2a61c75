/**
 * @module
 * The mapper SDK: write a protocol driver (open a device, read and write its properties,
 * tell its state), and `createMapper` does the rest the way KubeEdge's mapper-framework
 * does it on the wire — DMI v1beta1 over unix sockets: MapperRegister with EdgeCore, the
 * devices EdgeCore hands over, collect cycles, ReportDeviceStatus / ReportDeviceStates,
 * desired values written at register and update, the DeviceMapperService calls.
 *
 * ```ts
 * const mapper = createMapper({ name: 'my-mapper', version: '1.0.0', protocol: 'myProtocol',
 *   socketPath: '/etc/kubeedge/my.sock', dmiSocketPath: '/etc/kubeedge/dmi.sock', driver, log });
 * await mapper.start();   // resolves once registered (waits for EdgeCore as long as it takes)
 * ```
 * `runMapperCommand` (cli.ts) wraps that into a command line with flags and signal handling.
 */
export { createMapper, type Mapper, type MapperDevice } from './mapper.js';
export type { Driver, DriverDevice, DriverProperty } from './driver.js';
export { driverProperty, visitorOf } from './driver.js';
export { type Clock, defaultMapperOptions, type MapperOptions, type MapperTuning, systemClock } from './options.js';
export type { ReportedTwin } from './device.js';
export { effectiveCycle } from './device.js';
export { configBoolean, configNumber, configString, formatValue, parseValue } from './values.js';
export { DEFAULT_DMI_SOCKET, type MapperCommand, mapperConfigSpec, runMapperCommand } from './cli.js';
