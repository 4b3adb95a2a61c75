/**
 * @module
 * Reliable ordered delivery with ACKs, retries, coalescing and backpressure.
 */
export { DeliveryQueue } from './delivery-queue.js';
export type { Delivery, DeliveryQueueOptions } from './delivery-queue.js';
