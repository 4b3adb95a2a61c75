/**
 * @module
 * DeviceTwin defaults, the one place they are written (`edge/config.ts` takes its `twin.*`
 * defaults from here). No imports: the config loads this file without the module.
 */

/** Defaults of DeviceTwin's tunable options (./devicetwin.ts `DeviceTwinOptions`). */
export const defaultDeviceTwinOptions = {
  /** How often dirty devices are sent upstream while the link is up, ms. */
  reportIntervalMs: 1000,
  /** Most device reports in one upstream message (one `devicestatus` update). */
  maxReportsPerMessage: 500,
  /**
   * Most bytes of reports (their JSON) in one upstream message. Well under CloudHub's and EdgeHub's
   * 1 MiB frame limit, so a batch always fits in a frame; a device with more twins than fit is
   * split over several messages (the cloud merges by property, latest wins).
   */
  maxReportBytes: 256 * 1024,
  /** Largest MQTT payload handled on the twin topics; a bigger one is answered with code 413. */
  maxPayloadBytes: 64 * 1024,
  /**
   * Most devices DeviceTwin holds twins for (the twin store holds one record per device). Devices
   * the node is given beyond it are ignored, with one warning, until others are deleted.
   */
  maxDevices: 10_000,
  /**
   * Longest twin value (reported, observedDesired, expected), bytes of UTF-8. KubeEdge caps MQTT
   * twin values at 512 bytes of `[a-zA-Z0-9-_.,:/@#]` (dtcommon.ValidateTwinValue), which refuses
   * a space; Ledge accepts any text up to 1 KiB: room for a short JSON or base64 value, while a
   * DeviceStatus with 100 properties stays a small etcd object.
   */
  maxValueBytes: 1024,
  /** Longest property name in a twin message, bytes (KubeEdge's twin key limit, dtcommon.ValidateTwinKey). */
  maxPropertyNameBytes: 128,
  /**
   * MQTT twin messages waiting to be handled, all devices together; past it a message is answered
   * with code 429 at once (a flood cannot grow memory). Each device also has at most 16 waiting.
   */
  maxPendingMessages: 1024,
} as const;

/** Most MQTT messages of one device waiting to be handled (the rest of the global budget stays for the others). */
export const MAX_PENDING_PER_DEVICE = 16;
/** Longest device state string accepted (`online`, `offline`, …). */
export const MAX_STATE_BYTES = 64;
/** The same problem (device × kind) is logged at most once per this many ms. */
export const PROBLEM_LOG_WINDOW_MS = 10 * 60_000;
/** At most this many problem lines per minute over all devices; past it one summary line a minute. */
export const PROBLEM_LINES_PER_MINUTE = 20;
/** Upstream message send timeout (EdgeHub answers once the batch is durable in its outbox), ms. */
export const UPSTREAM_TIMEOUT_MS = 30_000;
