/**
 * @module
 * Which configmaps and secrets a pod uses: volumes (incl. projected), env and envFrom
 * of every container, and image pull secrets. Both sides ask: the EdgeController sends a
 * node only these; Edged refreshes a pod when one of them changes. Types only from
 * client-node (erased from the edge bundle).
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';

export interface PodReferences {
  configMaps: Set<string>;
  secrets: Set<string>;
}

export function podReferences(pod: V1Pod): PodReferences {
  const configMaps = new Set<string>();
  const secrets = new Set<string>();
  const spec = pod.spec;
  for (const v of spec?.volumes ?? []) {
    if (v.configMap?.name) configMaps.add(v.configMap.name);
    if (v.secret?.secretName) secrets.add(v.secret.secretName);
    for (const src of v.projected?.sources ?? []) {
      if (src.configMap?.name) configMaps.add(src.configMap.name);
      if (src.secret?.name) secrets.add(src.secret.name);
    }
  }
  for (const c of [...(spec?.initContainers ?? []), ...(spec?.containers ?? []), ...((spec?.ephemeralContainers ?? []) as V1Container[])]) {
    for (const e of c.envFrom ?? []) {
      if (e.configMapRef?.name) configMaps.add(e.configMapRef.name);
      if (e.secretRef?.name) secrets.add(e.secretRef.name);
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom?.configMapKeyRef?.name) configMaps.add(e.valueFrom.configMapKeyRef.name);
      if (e.valueFrom?.secretKeyRef?.name) secrets.add(e.valueFrom.secretKeyRef.name);
    }
  }
  for (const s of spec?.imagePullSecrets ?? []) if (s.name) secrets.add(s.name);
  return { configMaps, secrets };
}
