// Interop of shared/dmi with a different gRPC/protobuf toolchain: @grpc/grpc-js with
// @grpc/proto-loader loading shared/dmi/dmi.proto at run time (protobufjs reflection, not our
// generated code), over unix sockets in a temp dir. Both directions: grpc-js client → our
// DeviceManagerService server, our DeviceMapperService client → grpc-js server.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import {
  type CallContext,
  type DeviceManagerHandlers,
  type DmiReportDeviceStatusRequest,
  deviceMapperClient,
  deviceToDmi,
  dmiToDevice,
  fromAny,
  type GrpcServer,
  mapperAddress,
  serveDeviceManager,
} from '../../shared/dmi/index.js';
import type { Device, DeviceModel } from '../../shared/devices/index.js';
import { DeviceUnknownError, DmiError } from '../../shared/errors/index.js';
import { tempDir } from '../helpers/files.js';
import { repoRoot, within } from '../helpers/process.js';

const definition = protoLoader.loadSync(join(repoRoot, 'shared/dmi/dmi.proto'), { keepCase: false, longs: Number, defaults: false });
// biome-ignore lint/suspicious/noExplicitAny: grpc-js' loaded package is untyped by nature
const pkg = grpc.loadPackageDefinition(definition) as any;

// The wrapper types through protobufjs' reflection API (the full library, as grpc-js' side uses).
const wrappersJson = (protobuf.common as unknown as { get(name: string): protobuf.INamespace }).get('google/protobuf/wrappers.proto');
const wrappers = protobuf.Root.fromJSON(wrappersJson);

type Callback = (err: grpc.ServiceError | null, res?: Record<string, unknown>) => void;
/** A grpc-js unary call as a promise. */
function call(client: grpc.Client, method: string, req: unknown, deadlineMs = 5000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    // biome-ignore lint/suspicious/noExplicitAny: dynamic method of a grpc-js generated client
    (client as any)[method](req, { deadline: Date.now() + deadlineMs }, ((err, res) => (err ? reject(err) : resolve(res!))) as Callback);
  });
}

const model: DeviceModel = {
  metadata: { name: 'thermo-model', namespace: 'default' },
  spec: {
    protocol: 'virtualProtocol',
    protocolConfigData: { baud: 9600 },
    properties: [
      { name: 'temperature', type: 'INT', accessMode: 'ReadWrite', minimum: '0', maximum: '100', visitors: { protocolName: 'virtualProtocol', configData: { dataType: 'int' } } },
    ],
  },
};
const device: Device = {
  metadata: { name: 'thermo-1', namespace: 'default' },
  spec: {
    deviceModelRef: { name: 'thermo-model' },
    nodeName: 'edge-1',
    protocol: { protocolName: 'virtualProtocol', configData: { deviceID: 2, ratio: 0.5, label: 'hall' } },
    properties: [{ name: 'temperature', desired: { value: '30' }, reportCycle: 10_000, collectCycle: 2000, reportToCloud: true }],
  },
};

describe('grpc-js client → our DeviceManagerService server', () => {
  const dir = tempDir('ledge-dmi-');
  const socketPath = join(dir.path, 'dmi.sock');
  let server: GrpcServer;
  let client: grpc.Client;
  const reports: DmiReportDeviceStatusRequest[] = [];
  let aborted: Promise<unknown> = Promise.resolve();
  let hang: (ctx: CallContext) => Promise<never>;
  const handlers: DeviceManagerHandlers = {
    async mapperRegister(req) {
      assert.equal(req.mapper?.apiVersion, 'v1.0.0');
      assert.equal(mapperAddress(req.mapper), '/etc/kubeedge/virtual.sock');
      return { modelList: [], deviceList: req.withData ? [deviceToDmi(device, model)] : [] };
    },
    async reportDeviceStatus(req) {
      if (req.deviceName === 'ghost') throw new DeviceUnknownError(`unknown device ${req.deviceNamespace}/${req.deviceName} — «fantôme» 100%`);
      reports.push(req);
      return {};
    },
    async reportDeviceStates(_req, ctx) {
      return hang(ctx);
    },
  };

  before(async () => {
    server = await serveDeviceManager(socketPath, handlers);
    client = new pkg.v1beta1.DeviceManagerService(`unix://${socketPath}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await server.close();
    dir.cleanup();
  });

  test('MapperRegister: request fields arrive, the device list decodes in grpc-js (configData Any, int64)', async () => {
    const res = await call(client, 'MapperRegister', {
      withData: true,
      mapper: { name: 'virtual', version: 'v1', apiVersion: 'v1.0.0', protocol: 'virtualProtocol', address: Buffer.from('/etc/kubeedge/virtual.sock') },
    });
    // biome-ignore lint/suspicious/noExplicitAny: decoded by proto-loader
    const d = (res.deviceList as any[])[0];
    assert.equal(d.name, 'thermo-1');
    assert.equal(d.namespace, 'default');
    assert.equal(d.spec.deviceModelReference, 'thermo-model');
    assert.equal(d.spec.protocol.protocolName, 'virtualProtocol');
    const cfg = d.spec.protocol.configData.data;
    assert.equal(cfg.deviceID.type_url, 'type.googleapis.com/google.protobuf.Int32Value');
    assert.equal(fromAny({ type_url: cfg.deviceID.type_url, value: cfg.deviceID.value }), 2);
    assert.equal(fromAny({ type_url: cfg.ratio.type_url, value: cfg.ratio.value }), 0.5);
    assert.equal(fromAny({ type_url: cfg.baud.type_url, value: cfg.baud.value }), 9600, 'model protocolConfigData merged as a default');
    const p = d.spec.properties[0];
    assert.equal(p.reportCycle, 10_000);
    assert.equal(p.collectCycle, 2000);
    assert.equal(p.desired.value, '30');
    assert.equal(p.visitors.protocolName, 'virtualProtocol');
    assert.equal(fromAny({ type_url: p.visitors.configData.data.dataType.type_url, value: p.visitors.configData.data.dataType.value }), 'int');
  });

  test('ReportDeviceStatus: twins from grpc-js reach the handler', async () => {
    await call(client, 'ReportDeviceStatus', {
      deviceName: 'thermo-1',
      deviceNamespace: 'default',
      reportedDevice: { twins: [{ propertyName: 'temperature', reported: { value: '21', metadata: { timestamp: '1700000000000', type: 'INT' } } }], reportCycle: 1000 },
    });
    assert.equal(reports.length, 1);
    const twin = reports[0]!.reportedDevice!.twins![0]!;
    assert.equal(twin.propertyName, 'temperature');
    assert.equal(twin.reported!.value, '21');
    assert.equal(twin.reported!.metadata!.type, 'INT');
    assert.equal(reports[0]!.reportedDevice!.reportCycle, 1000);
  });

  test('a handler error reaches grpc-js as its status, with the message intact (percent-encoding)', async () => {
    const err = (await call(client, 'ReportDeviceStatus', { deviceName: 'ghost', deviceNamespace: 'default' }).catch((e) => e)) as grpc.ServiceError;
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.equal(err.details, 'unknown device default/ghost — «fantôme» 100%');
  });

  test('an unknown method is UNIMPLEMENTED', async () => {
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      client.makeUnaryRequest(
        '/v1beta1.DeviceManagerService/NoSuchMethod',
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        { deadline: Date.now() + 5000 },
        (e) => resolve(e!),
      );
    });
    assert.equal(err.code, grpc.status.UNIMPLEMENTED);
  });

  test('grpc-js deadline: DEADLINE_EXCEEDED and the handler signal is aborted', async () => {
    let ctxSeen: CallContext | undefined;
    aborted = new Promise((resolve) => {
      hang = (ctx) => {
        ctxSeen = ctx;
        ctx.signal.addEventListener('abort', () => resolve(ctx.signal.reason));
        return new Promise<never>(() => {});
      };
    });
    const err = (await call(client, 'ReportDeviceStates', { deviceName: 'thermo-1', state: 'ok' }, 300).catch((e) => e)) as grpc.ServiceError;
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
    await within(aborted, 10_000, 'the handler signal to abort');
    assert.equal(typeof ctxSeen?.deadline, 'number', 'the handler saw the deadline grpc-js sent');
  });

  test('a message over 4 MiB from grpc-js is RESOURCE_EXHAUSTED', async () => {
    const err = (await call(client, 'ReportDeviceStatus', { deviceName: 'x'.repeat(4 * 1024 * 1024 + 10) }).catch((e) => e)) as grpc.ServiceError;
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
    // The server is still fine.
    await call(client, 'ReportDeviceStatus', { deviceName: 'thermo-1', deviceNamespace: 'default' });
  });
});

describe('our DeviceMapperService client → grpc-js server', () => {
  const dir = tempDir('ledge-dmi-');
  const socketPath = join(dir.path, 'mapper.sock');
  const server = new grpc.Server();
  const seen: Record<string, unknown>[] = [];
  let deadlineSeen: grpc.Deadline | undefined;
  type Unary = (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, cb: grpc.sendUnaryData<unknown>) => void;
  const impl: Record<string, Unary> = {
    RegisterDevice: (c, cb) => {
      seen.push(c.request);
      deadlineSeen = c.getDeadline();
      // biome-ignore lint/suspicious/noExplicitAny: decoded by proto-loader
      const d = c.request.device as any;
      cb(null, { deviceName: d.name, deviceNamespace: d.namespace });
    },
    RemoveDevice: (c, cb) => cb({ code: grpc.status.NOT_FOUND, details: `no device ${c.request.deviceName} ünï` }),
    UpdateDevice: (c, cb) => {
      seen.push(c.request);
      cb(null, {});
    },
    CreateDeviceModel: (c, cb) => {
      // biome-ignore lint/suspicious/noExplicitAny: decoded by proto-loader
      const m = c.request.model as any;
      cb(null, { deviceModelName: m.name, deviceModelNamespace: m.namespace });
    },
    RemoveDeviceModel: (_c, cb) => cb(null, {}),
    UpdateDeviceModel: () => {}, // never answers
    GetDevice: (c, cb) => {
      const spec: Record<string, unknown> = { properties: [{ name: 'p', collectCycle: 1234 }] };
      if (c.request.deviceName === 'wrapped') {
        const pack = (type: string, value: unknown) => ({
          type_url: `type.googleapis.com/google.protobuf.${type}`,
          value: wrappers.lookupType(`google.protobuf.${type}`).encode({ value }).finish(),
        });
        spec.protocol = {
          protocolName: 'modbus',
          configData: {
            data: {
              port: pack('Int32Value', 502),
              big: pack('Int64Value', 2 ** 40),
              ratio: pack('DoubleValue', 0.25),
              ip: pack('StringValue', '10.0.0.7'),
              on: pack('BoolValue', true),
            },
          },
        };
      }
      cb(null, { device: { name: c.request.deviceName, namespace: c.request.deviceNamespace, spec } });
    },
  };
  let client: ReturnType<typeof deviceMapperClient>;

  before(async () => {
    server.addService(pkg.v1beta1.DeviceMapperService.service, impl as unknown as grpc.UntypedServiceImplementation);
    await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
    client = deviceMapperClient(socketPath, { timeoutMs: 5000 });
  });
  after(async () => {
    client.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    dir.cleanup();
  });

  test('RegisterDevice: the device decodes in grpc-js, the response in ours; grpc-timeout sent', async () => {
    const res = await client.registerDevice({ device: deviceToDmi(device, model) });
    assert.deepEqual(res, { deviceName: 'thermo-1', deviceNamespace: 'default' });
    // biome-ignore lint/suspicious/noExplicitAny: decoded by proto-loader
    const d = seen[0]!.device as any;
    assert.equal(d.spec.properties[0].desired.value, '30');
    assert.equal(d.spec.properties[0].reportToCloud, true);
    assert.equal(fromAny(d.spec.protocol.configData.data.label), 'hall');
    assert.ok(typeof deadlineSeen === 'number' && Number.isFinite(deadlineSeen), 'grpc-js saw the grpc-timeout we sent');
  });

  test('a grpc-js error status and message reach our caller as DmiError', async () => {
    const err = (await client.removeDevice({ deviceName: 'd9', deviceNamespace: 'default' }).catch((e) => e)) as DmiError;
    assert.ok(err instanceof DmiError);
    assert.equal(err.grpcStatus, 5);
    assert.equal(err.grpcMessage, 'no device d9 ünï');
  });

  test('the other methods round-trip (empty responses, int64 in a response)', async () => {
    await client.updateDevice({ device: { name: 'thermo-1', namespace: 'default', spec: { properties: [{ name: 'temperature', desired: { value: '40' } }] } } });
    // biome-ignore lint/suspicious/noExplicitAny: decoded by proto-loader
    assert.equal((seen[1]!.device as any).spec.properties[0].desired.value, '40');
    assert.deepEqual(await client.createDeviceModel({ model: { name: 'm', namespace: 'ns' } }), { deviceModelName: 'm', deviceModelNamespace: 'ns' });
    assert.deepEqual(await client.removeDeviceModel({ modelName: 'm', modelNamespace: 'ns' }), {});
    const got = await client.getDevice({ deviceName: 'g', deviceNamespace: 'ns' });
    assert.equal(got.device?.spec?.properties?.[0]?.collectCycle, 1234);
  });

  test('a grpc-js server that never answers: DEADLINE_EXCEEDED at our deadline', async () => {
    const err = (await client.updateDeviceModel({ model: { name: 'm' } }, { timeoutMs: 300 }).catch((e) => e)) as DmiError;
    assert.equal(err.grpcStatus, 4);
  });

  test('configData packed by protobufjs reflection (not our generated code) decodes with dmiToDevice', async () => {
    const got = await client.getDevice({ deviceName: 'wrapped', deviceNamespace: 'ns' });
    const dev = dmiToDevice(got.device!);
    assert.deepEqual(dev.spec.protocol?.configData, { port: 502, big: 2 ** 40, ratio: 0.25, ip: '10.0.0.7', on: true });
  });
});
