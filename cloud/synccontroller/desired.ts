/**
 * @module
 * Several owners of desired sets as one DesiredSource for the SyncController: the
 * EdgeController (pods, configmaps, secrets) and the DeviceController (devices and their
 * models). Each object a node should hold has one owner, so the union is plain; the Node
 * objects are the primary's (the EdgeController's), so `nodeExists` is asked of it alone;
 * `released` tells every source (each ignores what is not its own).
 */
import type { DesiredObject, DesiredSource, ObjectKey } from './synccontroller.js';

export function combineDesiredSources(primary: DesiredSource, ...more: DesiredSource[]): DesiredSource {
  const all = [primary, ...more];
  return {
    /** The union, primary first. A source that throws (its objects are not listed yet) makes the whole set unknown: thrown too, never answered partly (which would delete). */
    desiredFor(node: string): Map<string, DesiredObject> {
      const out = new Map<string, DesiredObject>();
      for (const s of all) for (const [uid, o] of s.desiredFor(node)) out.set(uid, o);
      return out;
    },
    nodeExists: (node: string) => primary.nodeExists(node),
    /** Known once every source's sets are. */
    synced: () => all.every((s) => s.synced?.() !== false),
    released(node: string, ref: ObjectKey): void {
      for (const s of all) s.released?.(node, ref);
    },
  };
}
