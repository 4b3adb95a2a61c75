/**
 * @module
 * DMI, KubeEdge's Device Management Interface (v1beta1), for Ledge: the messages (plain-object
 * types, and the protobufjs static code generated from ./dmi.proto by build/gen-dmi.mjs), a unary
 * gRPC server and client on node:http2 over unix sockets, wire-compatible with Go gRPC and
 * grpc-js, and the conversions between KubeEdge's Device/DeviceModel objects and DMI messages.
 *
 * - EdgeCore serves DeviceManagerService (`serveDeviceManager`) and calls each mapper's
 *   DeviceMapperService (`deviceMapperClient`); a mapper does the reverse.
 * - Handlers throw DmiError (its grpcStatus is answered), DeviceInvalidError (→ 3
 *   INVALID_ARGUMENT), DeviceUnknownError (→ 5 NOT_FOUND); anything else → 2 UNKNOWN.
 * - Client calls reject with DmiError: the peer's status, 14 UNAVAILABLE when the socket cannot be
 *   reached, 4 DEADLINE_EXCEEDED, 1 CANCELLED.
 */
export type { google, v1beta1 } from './generated/dmi.js';
export type * from './types.js';
export { deviceManagerClient, deviceMapperClient } from './client.js';
export { configDataFromDmi, configDataToDmi, deviceToDmi, dmiToDevice, dmiToModel, dmiTwinsToTwins, fromAny, mapperAddress, modelToDmi, toAny, twinsToDmi } from './convert.js';
export { GrpcStatus } from './codec.js';
export { defaultGrpcClientOptions, defaultGrpcServerOptions } from './options.js';
export { serveDeviceManager, serveDeviceMapper } from './server.js';
