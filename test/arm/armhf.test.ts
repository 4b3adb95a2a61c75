/**
 * dist/edgecore.js on 32-bit ARM (ARMv7, Node 20.11, the official linux-armv7l build) under
 * qemu-arm-static, against a CloudCore on this machine: see emulated-edge.ts.
 */
import { describeEmulatedEdge } from './emulated-edge.js';

describeEmulatedEdge('armhf', 'armhf-1', 'arm');
