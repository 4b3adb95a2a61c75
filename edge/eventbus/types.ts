/**
 * @module
 * The device bus as its users see it (DeviceTwin codes against {@link DeviceBus}).
 */

/** A message on the bus. */
export interface BusMessage {
  topic: string;
  payload: Buffer;
  /** 0 or 1: a device's QoS 2 publish is seen as 1 (at least once). */
  qos: 0 | 1;
  retain: boolean;
}

export interface DeviceBus {
  /** Messages devices/apps publish on topics matching `filter` (MQTT wildcards). Not called for what this bus publishes itself. */
  subscribe(filter: string, handler: (msg: BusMessage) => void): () => void;
  /** Publishes to devices/apps (QoS 1 default). Resolves when handed to the broker(s). */
  publish(topic: string, payload: string | Buffer, opts?: { qos?: 0 | 1; retain?: boolean }): Promise<void>;
}
