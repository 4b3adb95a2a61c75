/**
 * The local control plane of one test file: an apiserver in this process on a free
 * loopback port (data in a temp directory), and client-node configured for it over HTTPS.
 */
import { before, after } from 'node:test';
import { startApiServer, type ApiServerHandle, type ApiServerOptions } from '../../apiserver/index.js';
import { createLogger } from '../../shared/log/index.js';
import { loadKube, loadKubeConfig, type k8s } from '../../cloud/kube/index.js';
import { tempDir } from './files.js';

export interface LocalControlPlane {
  readonly api: ApiServerHandle;
  readonly kc: k8s.KubeConfig;
  readonly core: k8s.CoreV1Api;
}

/**
 * Registers the calling file's `before` (start) and `after` (close, remove the data) hooks;
 * the fields are readable once `before` ran, i.e. inside the tests.
 */
export function useLocalControlPlane(dirPrefix: string, options: Partial<Omit<ApiServerOptions, 'dataDir' | 'port' | 'log'>> = {}): LocalControlPlane {
  const dir = tempDir(dirPrefix);
  let state: LocalControlPlane | undefined;
  before(async () => {
    const api = await startApiServer({ dataDir: dir.path, port: 0, ...options, log: createLogger({ level: 'warn' }) });
    const kube = await loadKube();
    const kc = loadKubeConfig(api.kubeconfigPath);
    state = { api, kc, core: kc.makeApiClient(kube.CoreV1Api) };
  });
  after(async () => {
    await state?.api.close();
    dir.cleanup();
  });
  const get = (): LocalControlPlane => {
    if (!state) throw new Error('the local control plane is started in before(): use it inside tests');
    return state;
  };
  return {
    get api() {
      return get().api;
    },
    get kc() {
      return get().kc;
    },
    get core() {
      return get().core;
    },
  };
}
