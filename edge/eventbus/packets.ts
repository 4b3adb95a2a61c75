/**
 * @module
 * mqtt-packet as the device bus uses it, for the client (./client.ts) and aedes (./broker.ts) alike:
 * the same module instance, set up once. mqtt-packet pre-builds 65,536 two-byte Buffers (every
 * packet id and length) the first time it writes any packet, and keeps them for good: measured on
 * EdgeCore, +12.9 MiB RSS from the first MQTT client on (docs/benchmarks.md, "Devices: memory").
 * Writing those two bytes per packet instead costs nothing measurable at a device bus's rates.
 */
import mqtt from 'mqtt-packet';

mqtt.writeToStream.cacheNumbers = false;

export { mqtt };
