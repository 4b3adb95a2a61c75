/**
 * dist/edgecore.js on arm64 (Node 22, the official linux-arm64 build) under qemu-aarch64-static,
 * against a CloudCore on this machine: see emulated-edge.ts.
 */
import { describeEmulatedEdge } from './emulated-edge.js';

describeEmulatedEdge('arm64', 'arm-1', 'arm64');
