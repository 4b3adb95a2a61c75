/**
 * @module
 * The runtime interface Edged drives: a small, CRI-shaped contract (sandboxes, containers,
 * images, exec, events), so every kubelet rule (init containers in order, restart policy and
 * CrashLoopBackOff, probes, graceful stop, pod status) lives once, in Edged's pod worker
 * (./pod-worker.ts), and a runtime only runs what it is told:
 * - `process` (./process-runtime.ts): a sandbox is a directory, a container a supervised child
 *   process of EdgeCore (no image, no isolation);
 * - `container` (./container-runtime.ts): Docker Engine API over a unix socket (Docker or Podman),
 *   a sandbox is an infra container holding the pod's network namespace.
 *
 * Everything a runtime receives is resolved already: environment variables as strings, volumes as
 * host paths, limits as numbers, the log file to write. A runtime never reads the pod spec nor the
 * metadata store. Ids are the runtime's own; every sandbox and container carries the pod uid and
 * container name it was made for, so Edged finds them again after EdgeCore restarts.
 *
 * Failures a kubelet reports in a container's status (image pull, create, start) are thrown as
 * {@link RuntimeError} with that reason (`ErrImagePull`, `CreateContainerError`, `RunContainerError`, …);
 * anything else thrown is a runtime failure Edged retries with backoff.
 */
import { RuntimeError as BaseRuntimeError } from '../../shared/errors/index.js';

/** A container port (Kubernetes ContainerPort). */
export interface PortMapping {
  containerPort: number;
  /** Published on the host when set (container runtime); the process runtime listens on the host anyway. */
  hostPort?: number;
  /** Default TCP. */
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  hostIP?: string;
}

/** What a pod's sandbox is made from. */
export interface SandboxConfig {
  /** The pod's uid (labels the sandbox). */
  uid: string;
  name: string;
  namespace: string;
  /** Usually the pod name (or spec.hostname). */
  hostname: string;
  /** `spec.hostNetwork`: share the host's network namespace (the process runtime always does). */
  hostNetwork: boolean;
  /** Every container's ports. */
  ports: PortMapping[];
  /** Labels/annotations of the pod, for the runtime's own bookkeeping (not interpreted). */
  labels: Record<string, string>;
  /** A directory Edged made for this pod (`<data-dir>/edged/pods/<uid>`), for the runtime's own files. */
  podDir: string;
}

/** A sandbox as the runtime reports it. */
export interface SandboxStatus {
  id: string;
  uid: string;
  name: string;
  namespace: string;
  /** `ready` while its network namespace (or directory) exists and is usable. */
  state: 'ready' | 'notready';
  /** The pod's IP (status.podIP); the host's IP for the process runtime and host network. */
  ip?: string;
  createdAt: string;
}

/** A volume mount, resolved: a host path Edged prepared and where the container sees it. */
export interface Mount {
  hostPath: string;
  containerPath: string;
  readOnly: boolean;
}

/** Resource limits, resolved from `resources.limits`. */
export interface ContainerResources {
  /** CPU limit in millicores. */
  cpuMillis?: number;
  /** Memory limit in bytes. */
  memoryBytes?: number;
}

/** What one container is made from. */
export interface ContainerConfig {
  name: string;
  /** As the spec says; the process runtime records it only. */
  image: string;
  /** The container runtime falls back to the image's entrypoint/cmd; the process runtime requires one (Edged checks). */
  command?: string[];
  args?: string[];
  /** Fully resolved (envFrom, env, valueFrom, $(VAR) expansion, the volume convention of the process runtime). */
  env: Record<string, string>;
  workingDir?: string;
  mounts: Mount[];
  resources: ContainerResources;
  stdin?: boolean;
  stdinOnce?: boolean;
  tty?: boolean;
  /** 0 for the first run, +1 per restart (kubelet's attempt). */
  attempt: number;
  /** Where stdout/stderr go, as CRI log lines (./logs.ts); Edged owns the layout and rotation bound. */
  logPath: string;
  /** Bound of one log file before it is rotated (bytes). */
  logMaxBytes: number;
  /** Labels for the runtime's bookkeeping (pod uid, container name, attempt). */
  labels: Record<string, string>;
}

export type RuntimeContainerState = 'created' | 'running' | 'exited' | 'unknown';

/** A container as the runtime reports it. */
export interface RuntimeContainerStatus {
  id: string;
  sandboxId: string;
  /** The pod uid and container name it was created for. */
  uid: string;
  name: string;
  attempt: number;
  state: RuntimeContainerState;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  exitCode?: number;
  /** e.g. `OOMKilled`, `Error`, `Completed`. */
  reason?: string;
  message?: string;
  image: string;
  /** Empty for the process runtime. */
  imageID: string;
  /** The runtime's id with its scheme, e.g. `docker://…` or `process://…` (containerStatuses[].containerID). */
  containerID: string;
  logPath: string;
}

/** The result of {@link ContainerRuntime.exec}. */
export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** True when the command was killed at its timeout. */
  timedOut: boolean;
}

export interface ImageInfo {
  names: string[];
  sizeBytes: number;
}

export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

/** A runtime event: something of this sandbox or container changed (an exit, most often). */
export interface RuntimeEvent {
  sandboxId?: string;
  containerId?: string;
  uid?: string;
}

/** Reasons a runtime reports through {@link RuntimeError}, as a kubelet names them. */
export type RuntimeErrorReason = 'ErrImagePull' | 'ErrImageNeverPull' | 'InvalidImageName' | 'CreateContainerError' | 'RunContainerError' | 'CreatePodSandboxError';

/** A failure with the kubelet reason Edged puts in the container's waiting state (shared/errors' RuntimeError, reasons typed). */
export class RuntimeError extends BaseRuntimeError {
  constructor(
    readonly reason: RuntimeErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A terminal's size in character cells. */
export interface TerminalSize {
  width: number;
  height: number;
}

/** Which streams an interactive session has (kubectl exec/attach `-i`, `-t`). */
export interface StreamOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  /** A terminal: stdout and stderr are one stream (delivered as stdout), stdin is the terminal's input. */
  tty: boolean;
  /** The terminal's first size (tty only). */
  size?: TerminalSize;
}

/** Where an interactive session's output goes. Called with the runtime's chunks as they come. */
export interface StreamOutput {
  stdout(chunk: Uint8Array): void;
  stderr(chunk: Uint8Array): void;
}

/** How an interactive session ended. */
export interface StreamEnd {
  /** exec: the command's exit code (137 when killed); attach: the container's, if it exited. */
  exitCode?: number;
  /** Why it could not run or was cut (the command was not found, the runtime went away…). */
  error?: string;
}

/** A running exec or attach (kubectl exec/attach). */
export interface StreamSession {
  /** Bytes for the process's stdin (dropped when the session has no stdin). */
  writeStdin(chunk: Uint8Array): void;
  /** The caller's stdin ended (EOF): the process's stdin is closed. */
  endStdin(): void;
  /** The terminal was resized (tty only; a no-op otherwise). */
  resize(size: TerminalSize): void;
  /** Output back-pressure: stops reading the process's output until `resume()`. */
  pause(): void;
  resume(): void;
  /** Ends it now: an exec's process (group) is killed; an attach detaches (the container runs on). */
  cancel(): void;
  /** Settles once it ended and all its output was delivered. Never rejects. */
  readonly done: Promise<StreamEnd>;
}

/** What Edged asks of a runtime. */
export interface ContainerRuntime {
  /** `process` or `container`: the runtimeClassName that picks it. */
  readonly name: string;
  /** For nodeInfo.containerRuntimeVersion, e.g. `process://ledge` or `docker://4.3.1`. Throws when the runtime cannot be reached. */
  version(): Promise<string>;
  runPodSandbox(config: SandboxConfig): Promise<SandboxStatus>;
  /** Stops what is left in it (containers SIGKILLed) and its network. Idempotent. */
  stopPodSandbox(id: string): Promise<void>;
  /** Removes it and every container in it. Idempotent. */
  removePodSandbox(id: string): Promise<void>;
  /** Every sandbox the runtime holds that Edged made, including those from before a restart. */
  listPodSandboxes(): Promise<SandboxStatus[]>;
  /** Makes the image present as the policy says; throws RuntimeError(ErrImagePull | ErrImageNeverPull | InvalidImageName). No-op for the process runtime. */
  ensureImage(image: string, policy: PullPolicy): Promise<void>;
  /** Throws RuntimeError(CreateContainerError) for a config it cannot run. */
  createContainer(sandboxId: string, config: ContainerConfig): Promise<string>;
  /** Throws RuntimeError(RunContainerError) when it cannot be started (command not found, …). */
  startContainer(id: string): Promise<void>;
  /** SIGTERM (or the image's stop signal), SIGKILL after `graceSeconds` (0 = at once); resolves once it has exited. Idempotent. */
  stopContainer(id: string, graceSeconds: number): Promise<void>;
  removeContainer(id: string): Promise<void>;
  /** Containers of one sandbox (or all), including exited ones not removed yet. */
  listContainers(sandboxId?: string): Promise<RuntimeContainerStatus[]>;
  containerStatus(id: string): Promise<RuntimeContainerStatus | undefined>;
  /** Runs a command in a running container (exec probes, kubectl exec); killed at `timeoutMs`. */
  exec(id: string, command: string[], options: { timeoutMs: number }): Promise<ExecResult>;
  /**
   * Runs a command in a running container with its streams connected (kubectl exec). Rejects with
   * RuntimeError when the container is not running or a session cannot be made (no TTY support);
   * a command that is not found or not executable ends the session with exit code 127 or 126.
   */
  execStream(id: string, command: string[], options: StreamOptions, output: StreamOutput): Promise<StreamSession>;
  /** Connects to a running container's main process (kubectl attach); rejects when it is not running. */
  attach(id: string, options: StreamOptions, output: StreamOutput): Promise<StreamSession>;
  /** Images the runtime holds (node status). Empty for the process runtime. */
  listImages(): Promise<ImageInfo[]>;
  /** Subscribes to changes (exits above all); Edged also re-lists periodically. Returns the unsubscribe. */
  onEvent(listener: (event: RuntimeEvent) => void): () => void;
  /** Releases connections and timers; leaves containers running (they survive an EdgeCore restart where the runtime allows). */
  close(): Promise<void>;
}
