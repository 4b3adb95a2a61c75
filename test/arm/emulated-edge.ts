/**
 * The device story under emulation (issue #9 §5): the bundled `dist/edgecore.js`, run by the
 * official ARM build of Node under Debian's qemu-user-static, connects to a CloudCore on this
 * machine, receives a pod with its configmap and secret, stores them and ACKs them; the sync
 * records show the ACKed versions. build/tools.mjs provisions the emulator, the sysroot and the
 * ARM Node under .tools/<arch> (it needs root and apt-get the first time); without them the test
 * skips, naming the command to run.
 *
 * Under qemu, memory figures are the emulator's, not the device's: nothing here measures memory.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster, storeEquals, SYNC, type Cluster } from '../helpers/cluster.js';
import { startProcess, edgecoreBundle, eventually, repoRoot, type Proc } from '../helpers/process.js';

/** What build/tools.mjs records in .tools/<arch>/ready.json once the emulation runs. */
interface Emulation {
  qemu: string;
  sysroot: string;
  node: string;
  nodeVersion: string;
}

export type Arch = 'arm64' | 'armhf';

/** The provisioned emulation for `arch`, or why there is none (the test's skip message). */
export function emulation(arch: Arch): { emu: Emulation; skip?: undefined } | { emu?: undefined; skip: string } {
  const marker = join(repoRoot, '.tools', arch, 'ready.json');
  const how = `run \`sudo npm run tools\` once (root and apt-get: it installs Debian's qemu-user-static, unpacks Debian's ${arch} libraries and fetches Node from npm; \`npm test\` does it when run as root)`;
  if (!existsSync(marker)) return { skip: `${arch} emulation is not provisioned (no .tools/${arch}/ready.json): ${how}` };
  const m = JSON.parse(readFileSync(marker, 'utf8')) as { qemu: string; sysroot: string; node: string; nodeVersion: string };
  const emu = { qemu: m.qemu, sysroot: join(repoRoot, m.sysroot), node: join(repoRoot, m.node), nodeVersion: m.nodeVersion };
  const missing = [emu.qemu, emu.sysroot, emu.node].find((p) => !existsSync(p));
  if (missing) return { skip: `${arch} emulation is incomplete (${missing} is missing): ${how}` };
  return { emu };
}

const ns = 'default';

/**
 * One suite: a local control plane and a CloudCore on the host, one emulated EdgeCore named
 * `nodeName`; `kubeArch` is the Node's expected `kubernetes.io/arch` (Node's `process.arch`
 * mapped by the EdgeController: arm64 → arm64, arm → arm).
 */
export function describeEmulatedEdge(arch: Arch, nodeName: string, kubeArch: string): void {
  const { emu, skip } = emulation(arch);
  describe(`${arch}: dist/edgecore.js under qemu`, { skip }, () => {
    let cluster: Cluster | undefined;
    let edge: Proc | undefined;
    before(async () => {
      if (emu) cluster = await startCluster();
    });
    // Runs when the test fails too: the emulated process (qemu is the process) and the cloud are killed.
    after(async () => {
      await edge?.kill9();
      await cluster?.close();
    });

    test(`an emulated ${arch} EdgeCore registers as ${kubeArch}, receives a pod with its configmap and secret and ACKs them`, async () => {
      const c = cluster!;
      const e = emu!;
      // The host's cloud, with heartbeat and ACK timeouts loose enough for an emulated peer
      // (its first seconds are spent compiling under the emulator); later flags win.
      const cloud = await c.startCloud(`cloud-${arch}`, ['--heartbeat-interval-ms', '1000', '--heartbeat-timeout-ms', '30000', '--ack-timeout-ms', '3000']);
      const dataDir = c.dataDir(nodeName);
      edge = startProcess(
        [
          '-L',
          e.sysroot,
          e.node,
          edgecoreBundle,
          '--cloud',
          cloud.url,
          '--node-name',
          nodeName,
          '--data-dir',
          dataDir,
          '--node-status-interval-ms',
          '1000',
          '--heartbeat-interval-ms',
          '1000',
          '--heartbeat-timeout-ms',
          '30000',
          '--reconnect-max-ms',
          '1000',
          '--log-level',
          'info',
        ],
        {},
        nodeName,
        e.qemu,
      );
      await edge.waitFor(/"msg":"connected to cloud"/, 90_000);

      // The process that connected is the ARM build: its own status report names its
      // architecture (process.arch) and its Node version.
      const node = await eventually(
        async () => {
          const n = await c.core.readNode({ name: nodeName }).catch(() => undefined);
          return n?.status?.nodeInfo?.architecture ? n : undefined;
        },
        60_000,
        `Node ${nodeName} with its status report`,
      );
      assert.equal(node.status?.nodeInfo?.architecture, kubeArch, 'nodeInfo.architecture reported by the emulated process');
      assert.equal(node.metadata?.labels?.['kubernetes.io/arch'], kubeArch);
      // The ARM Node ran it, not the host Node: EdgeCore names the Node that runs it when it starts.
      const startLine =
        edge
          .output()
          .split('\n')
          .find((l) => l.includes('"msg":"edgecore started"')) ?? '';
      assert.match(startLine, new RegExp(`"nodeVersion":"v${e.nodeVersion.replace(/\./g, '\\.')}"`), 'the ARM Node ran it, not the host Node');
      assert.match(startLine, new RegExp(`"arch":"${kubeArch}"`));

      const cm = `${nodeName}-cfg`;
      const secret = `${nodeName}-secret`;
      const pod = `${nodeName}-app`;
      await c.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: cm, namespace: ns }, data: { greeting: 'hello from the host' } } });
      await c.core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: secret, namespace: ns }, stringData: { token: 's3cret' } } });
      await c.core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { name: pod, namespace: ns },
          spec: {
            nodeName,
            nodeSelector: { 'kubernetes.io/arch': kubeArch },
            containers: [
              { name: 'app', image: 'busybox', envFrom: [{ configMapRef: { name: cm } }], env: [{ name: 'TOKEN', valueFrom: { secretKeyRef: { name: secret, key: 'token' } } }] },
            ],
          },
        },
      });
      const rv = async () => ({
        pod: (await c.core.readNamespacedPod({ name: pod, namespace: ns })).metadata!.resourceVersion!,
        cm: (await c.core.readNamespacedConfigMap({ name: cm, namespace: ns })).metadata!.resourceVersion!,
        secret: (await c.core.readNamespacedSecret({ name: secret, namespace: ns })).metadata!.resourceVersion!,
      });

      // The emulated edge made them durable in its store (its real file) ...
      await storeEquals(
        dataDir,
        async () => {
          const v = await rv();
          return { [`${ns}/pod/${pod}`]: v.pod, [`${ns}/configmap/${cm}`]: v.cm, [`${ns}/secret/${secret}`]: v.secret };
        },
        60_000,
      );
      // ... and ACKed them: the node's ObjectSync records carry exactly these versions.
      let last = '';
      await eventually(
        async () => {
          const list = (await c.objects.listNamespacedCustomObject({ ...SYNC, namespace: ns })) as {
            items: { metadata: { name: string }; spec: { objectKind: string; objectName: string }; status?: { objectResourceVersion?: string } }[];
          };
          const have = Object.fromEntries(
            list.items.filter((i) => i.metadata.name.startsWith(`${nodeName}.`)).map((i) => [`${i.spec.objectKind}/${i.spec.objectName}`, i.status?.objectResourceVersion]),
          );
          const v = await rv();
          const want = { [`Pod/${pod}`]: v.pod, [`ConfigMap/${cm}`]: v.cm, [`Secret/${secret}`]: v.secret };
          last = `have ${JSON.stringify(have)}, want ${JSON.stringify(want)}`;
          return JSON.stringify(Object.entries(have).sort()) === JSON.stringify(Object.entries(want).sort());
        },
        60_000,
        `ObjectSync records of ${nodeName} with the ACKed versions`,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${last}`);
      });

      // A graceful stop (SIGTERM through the emulator, as systemd would send it) drains and exits 0.
      assert.equal(await edge.stop(), 0, `emulated EdgeCore exit code; output:\n${edge.output().slice(-2000)}`);
      await cloud.proc.stop();
    });
  });
}
