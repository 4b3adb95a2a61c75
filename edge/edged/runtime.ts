/**
 * @module
 * The runtime interface Edged drives, independent of how containers are run: the `process`
 * runtime (./process-runtime.ts) runs each container as a supervised child process; a
 * `container` runtime (Docker Engine API) implements the same interface later. The types are
 * the subset of Kubernetes' Pod and ContainerStatus shapes a runtime needs, with their field
 * names, so a pod from the store is passed as it is.
 */

/** `env[].valueFrom` (Kubernetes EnvVarSource); resourceFieldRef is not supported yet. */
export interface EnvVarSource {
  configMapKeyRef?: { name: string; key: string; optional?: boolean };
  secretKeyRef?: { name: string; key: string; optional?: boolean };
  fieldRef?: { fieldPath: string; apiVersion?: string };
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: EnvVarSource;
}

/** `envFrom[]` (Kubernetes EnvFromSource). */
export interface EnvFromSource {
  prefix?: string;
  configMapRef?: { name: string; optional?: boolean };
  secretRef?: { name: string; optional?: boolean };
}

/** One container of a pod spec (the fields a runtime reads). */
export interface ContainerSpec {
  name: string;
  /** Recorded in the status; the process runtime does not pull or use it. */
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: EnvFromSource[];
  workingDir?: string;
}

export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';

/** A pod sandbox: the pod's identity and the spec fields the runtime needs. */
export interface PodSandboxSpec {
  uid: string;
  name: string;
  namespace: string;
  /** `spec.nodeName` (for `fieldRef: spec.nodeName`). */
  nodeName: string;
  /** Default `Always`, as Kubernetes. */
  restartPolicy?: RestartPolicy;
  /** Default from the runtime's options (30, as Kubernetes). */
  terminationGracePeriodSeconds?: number;
  containers: ContainerSpec[];
}

/** Kubernetes ContainerState: exactly one of the three is set. */
export interface ContainerState {
  waiting?: { reason: string; message?: string };
  running?: { startedAt: string };
  terminated?: { exitCode: number; signal?: number; reason: string; message?: string; startedAt?: string; finishedAt: string; containerID?: string };
}

/** Kubernetes ContainerStatus. */
export interface ContainerStatus {
  name: string;
  image: string;
  imageID: string;
  containerID?: string;
  state: ContainerState;
  lastState: ContainerState;
  ready: boolean;
  started: boolean;
  restartCount: number;
}

/** A sandbox as {@link ContainerRuntime.list} reports it. */
export interface PodSandboxInfo {
  uid: string;
  name: string;
  namespace: string;
  /** `running` once started and until stopped. */
  state: 'created' | 'running' | 'stopped';
  createdAt: string;
}

export interface PodRuntimeStatus {
  uid: string;
  sandbox: PodSandboxInfo;
  containerStatuses: ContainerStatus[];
}

export interface LogsOptions {
  /** Only the last this many bytes. Default: all that is kept (the rotated file, then the current one). */
  limitBytes?: number;
}

export interface StopOptions {
  /** Overrides the pod's terminationGracePeriodSeconds (fractions allowed). 0 = SIGKILL at once. */
  gracePeriodSeconds?: number;
}

/** The result of {@link ContainerRuntime.exec}. */
export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * What Edged asks of a runtime. Pods are keyed by uid. `create` prepares the sandbox (its
 * directories) without running anything; `start` runs the containers and keeps them running
 * as the restart policy says; `stop` ends them gracefully and stops restarting; `remove`
 * forgets the pod and deletes what `create` made (logs included). Failures to run a container
 * are not thrown: they are in its status, as a kubelet reports them.
 */
export interface ContainerRuntime {
  /** `process` or `container` (the runtimeClassName that picks it). */
  readonly name: string;
  /** For nodeInfo.containerRuntimeVersion, e.g. `process://ledge`. */
  readonly version: string;
  /** Throws PodSpecError for a pod it cannot run as given, or a uid it already holds. */
  create(pod: PodSandboxSpec): Promise<void>;
  /** Runs the containers of a created pod; a stopped pod is not started again (remove and create it). */
  start(uid: string): Promise<void>;
  stop(uid: string, options?: StopOptions): Promise<void>;
  remove(uid: string): Promise<void>;
  list(): PodSandboxInfo[];
  /** Undefined for a pod the runtime does not hold. */
  status(uid: string): PodRuntimeStatus | undefined;
  logs(uid: string, container: string, options?: LogsOptions): Promise<string>;
  /** Runs a command in a container's context (probes, kubectl exec): a later step. */
  exec?(uid: string, container: string, command: string[], options?: { timeoutMs?: number }): Promise<ExecResult>;
}
