// shared/dmi/dmi.proto is wire-identical to KubeEdge's DMI v1beta1 api.proto (same package,
// messages, field names, numbers, types, labels, services and methods), and the committed
// generated code is what build/gen-dmi.mjs produces from it.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import protobuf from 'protobufjs';
import { repoRoot } from '../helpers/process.js';

const MIRROR = '/work/.mirror/kubeedge+kubeedge/repo';
const UPSTREAM = 'staging/src/github.com/kubeedge/api/apis/dmi/v1beta1/api.proto';

function upstreamProto(): string | undefined {
  if (!existsSync(MIRROR)) return undefined;
  try {
    return execFileSync('git', ['-C', MIRROR, 'show', `HEAD:${UPSTREAM}`], { encoding: 'utf8' });
  } catch {
    return undefined;
  }
}

/** Everything about a .proto that decides the wire and the gRPC paths, as sorted text lines. */
function shape(text: string): string[] {
  const parsed = protobuf.parse(text, { keepCase: true });
  const lines: string[] = [`package ${parsed.package}`];
  const visit = (ns: protobuf.NamespaceBase) => {
    for (const obj of ns.nestedArray) {
      if (obj instanceof protobuf.Type) {
        lines.push(`message ${obj.fullName}`);
        for (const f of obj.fieldsArray) {
          const map = f instanceof protobuf.MapField ? `map<${f.keyType},${f.type}>` : f.type;
          lines.push(`field ${obj.fullName}.${f.name} = ${f.id} ${f.repeated ? 'repeated ' : ''}${map}`);
        }
        visit(obj);
      } else if (obj instanceof protobuf.Service) {
        lines.push(`service ${obj.fullName}`);
        for (const m of obj.methodsArray)
          lines.push(`rpc ${obj.fullName}.${m.name}(${m.requestStream ? 'stream ' : ''}${m.requestType}) returns (${m.responseStream ? 'stream ' : ''}${m.responseType})`);
      } else if (obj instanceof protobuf.Namespace) {
        visit(obj);
      }
    }
  };
  visit(parsed.root);
  return lines.sort();
}

const ours = readFileSync(join(repoRoot, 'shared/dmi/dmi.proto'), 'utf8');

describe('dmi.proto', () => {
  const upstream = upstreamProto();
  test('wire-identical to KubeEdge v1beta1 api.proto', { skip: upstream ? false : `KubeEdge's source is not available at ${MIRROR}` }, () => {
    const a = shape(ours);
    const b = shape(upstream!);
    assert.deepEqual(a, b);
    assert.ok(a.filter((l) => l.startsWith('message ')).length >= 52);
    assert.ok(a.includes('rpc .v1beta1.DeviceManagerService.MapperRegister(MapperRegisterRequest) returns (MapperRegisterResponse)'));
  });

  test('the committed generated code is up to date and imports protobufjs/minimal only', () => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'build/gen-dmi.mjs'), '--check'], { encoding: 'utf8', timeout: 90_000 });
    assert.equal(r.status, 0, r.stderr || r.stdout);
    const js = readFileSync(join(repoRoot, 'shared/dmi/generated/dmi.js'), 'utf8');
    const imports = [...js.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
    assert.deepEqual(imports, ['protobufjs/minimal.js']);
    assert.ok(!/require\(/.test(js));
  });
});
