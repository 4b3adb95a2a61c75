/**
 * @module
 * EventBus: the MQTT device bus of EdgeCore — an embedded broker (aedes), a client of an external
 * broker (Mosquitto…), or both bridged — and the {@link DeviceBus} DeviceTwin publishes and
 * subscribes through (docs/devices.md).
 */
export { EventBus, createEventBus } from './eventbus.js';
export type { EventBusStats } from './eventbus.js';
export type { BusMessage, DeviceBus } from './types.js';
export { defaultEventBusOptions } from './options.js';
export type { EventBusMode, EventBusOptions, ExternalBrokerOptions, InternalBrokerOptions, ResolvedEventBusOptions } from './options.js';
export { checkTopicFilter, checkTopicName, topicMatches } from './topics.js';
