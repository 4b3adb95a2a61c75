/**
 * @module
 * Node-status reporter defaults, the one place they are written (`edge/config.ts` takes
 * its `nodeStatus.*` defaults from here).
 */
import type { NodeStatusOptions } from './index.js';
import { defaultEdgedOptions } from '../edged/options.js';

/** Defaults of the options that have one. */
export const defaultNodeStatusOptions = {
  /** Report interval, ms (KubeEdge's nodeStatusUpdateFrequency). */
  intervalMs: 10_000,
  /** How often the health checks are polled for a change between reports, ms. */
  healthPollMs: 1_000,
  /** capacity/allocatable `pods`: Edged's maxPods (the config key is `edged.maxPods`, EdgeCore passes it). */
  maxPods: defaultEdgedOptions.maxPods,
  /**
   * nodeInfo.kubeletVersion (kubectl's VERSION column): the Kubernetes version the local control
   * plane reports (apiserver/discovery.ts) with a `-ledge` pre-release tag, so it parses as
   * semver (tools that gate on the kubelet version read it as 1.35) and says who runs the node.
   */
  kubeletVersion: 'v1.35.0-ledge',
  /** MemoryPressure below this MemAvailable, bytes (kubelet's hard eviction memory.available<100Mi). */
  memoryAvailableMinBytes: 100 * 1024 * 1024,
  /** DiskPressure below this % available on the data directory's filesystem (nodefs.available<10%). */
  nodefsAvailableMinPercent: 10,
  /** DiskPressure below this % of its inodes free (nodefs.inodesFree<5%). */
  nodefsInodesFreeMinPercent: 5,
  /** PIDPressure below this % of PIDs available (kubelet has no default for pid.available; 10% like nodefs). */
  pidAvailableMinPercent: 10,
  /** A pressure condition stays True this long after its signal recovered, ms (kubelet's evictionPressureTransitionPeriod, 5 min). */
  pressureTransitionPeriodMs: 300_000,
  /** The runtime version and image list (callbacks) are asked at most this often, ms; reports in between reuse them. */
  runtimeInfoRefreshMs: 60_000,
} as const satisfies Partial<NodeStatusOptions>;
