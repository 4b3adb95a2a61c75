/**
 * @module
 * Edged: runs the pods the node is given (./edged.ts), one kubelet-like worker per pod
 * (./pod-worker.ts), on the `process` or the `container` runtime (./runtime.ts).
 */
export type * from './runtime.js';
export { RuntimeError } from './runtime.js';
export { Edged, createEdged } from './edged.js';
export type { EdgedOptions } from './edged.js';
export { PodWorker, pullPolicyOf, qosClass } from './pod-worker.js';
export { defaultEdgedOptions } from './options.js';
export { ProcessRuntime, createProcessRuntime, hostIPv4, procStat } from './process-runtime.js';
export type { ProcessRuntimeOptions } from './process-runtime.js';
export { CriLogWriter, CRI_MAX_LINE_BYTES, parseCriLine, readCriLog } from './logs.js';
export type { CriRecord, LogStream, ReadLogOptions } from './logs.js';
export { Cgroups, cpuMax, detectCgroupV2, hasLimits, ownCgroupPath } from './cgroup.js';
export type { CgroupOptions, CgroupSupport, ContainerCgroup } from './cgroup.js';
export { DockerEngineRuntime, createContainerRuntime, LABELS as containerRuntimeLabels, logCursor, parseImageReference } from './container-runtime.js';
export type { ContainerRuntimeOptions, LogCursor } from './container-runtime.js';
export { DockerClient, FrameDemuxer, JsonLines, unreachableMessage } from './docker-api.js';
export type { DockerClientOptions } from './docker-api.js';
export { defaultProcessRuntimeOptions } from './options.js';
export { EnvResolveError, expand, expandCommand, expandSubPathExpr, isEnvVarName, podFieldValue, resolveEnv, resourceFieldValue } from './env.js';
export type { ConfigLookup, KeyValueObject, PodFields, ResolvedEnv, ResolveEnvOptions, SkippedEnvKeys } from './env.js';
export { materializeVolumes, mountsFor, processVolumeEnv, removeVolumes, volumeEnvName } from './volumes.js';
export type { MaterializedVolume, MaterializedVolumes, VolumeFailure, VolumeFailureReason, VolumeKind, VolumeOptions } from './volumes.js';
export { MAX_PROBE_BODY_BYTES, MAX_PROBE_REDIRECTS, Prober, probeOnce } from './probes.js';
export type { ProbeContext, ProbeExec, ProbeExecResult, ProbeHandler, ProbeKind, ProbeOutcome, ProberOptions, ProbeResult, ProbeTimers } from './probes.js';
export { bytes as quantityBytes, cpuMillis, parseQuantity, parseQuantityNanos } from './quantity.js';
export { checkRelativePath, safeJoin } from './paths.js';
export { defaultVolumeOptions } from './options.js';
export { defaultContainerRuntimeOptions } from './options.js';
