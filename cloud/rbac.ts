/**
 * @module
 * The Kubernetes API access CloudCore needs, derived from what its code calls
 * (kept next to the code so a new call means a new rule here). deploy/kubernetes/
 * rbac.yaml is generated from it (`node --import tsx build/gen-manifests.ts`), and a
 * test checks the shipped file matches.
 */
export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  /** Only these objects (Kubernetes cannot restrict create, list or watch by name). */
  resourceNames?: string[];
  verbs: string[];
}

export const cloudcoreRules: PolicyRule[] = [
  // EdgeController: informers; node registration and status (readNode/createNode/replaceNode/replaceNodeStatus).
  { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch', 'create', 'update'] },
  { apiGroups: [''], resources: ['nodes/status'], verbs: ['update'] },
  // Pods: informer, status from the edge (readNamespacedPod + replaceNamespacedPodStatus), graceful deletion,
  // and the eviction protection's toleration patch (edgecontroller/tolerations.ts).
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch', 'delete', 'patch'] },
  { apiGroups: [''], resources: ['pods/status'], verbs: ['update'] },
  // Only read, and only those referenced by pods are sent to nodes.
  { apiGroups: [''], resources: ['configmaps', 'secrets'], verbs: ['get', 'list', 'watch'] },
  // CloudStream's peer token: the first replica creates Secret ledge-stream-peer (cloudstream/leases.ts); the node CA: the
  // first replica creates Secret ledge-ca (certauthority/ca.ts); join tokens: a single-use one is consumed by deleting its
  // Secret ledge-token-<id> (tokens/index.ts). Reading them is the rule above.
  { apiGroups: [''], resources: ['secrets'], verbs: ['create', 'delete'] },
  // Node revocation (revocation/store.ts): a replica records a deleted edge Node in ConfigMap ledge-revoked-nodes (the CA's
  // namespace), creating it when missing; it is read and watched through the rule above. Kubernetes cannot limit create by name.
  { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
  { apiGroups: [''], resources: ['configmaps'], resourceNames: ['ledge-revoked-nodes'], verbs: ['update'] },
  // Node heartbeats (kube-node-lease), leader election (kube-system) and CloudStream's per-node stream Leases (ledge-stream-<node>).
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
  // SyncController installs its CRDs when missing.
  { apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], verbs: ['get', 'create'] },
  { apiGroups: ['reliablesyncs.ledge.io'], resources: ['objectsyncs', 'clusterobjectsyncs'], verbs: ['get', 'list', 'watch', 'create', 'delete'] },
  { apiGroups: ['reliablesyncs.ledge.io'], resources: ['objectsyncs/status', 'clusterobjectsyncs/status'], verbs: ['update'] },
  // DeviceController (it installs its CRDs with the rule above): Devices and DeviceModels are only read (informers);
  // DeviceStatuses are read (informer, a fresh read after a conflict), created, replaced, and deleted with their Device.
  { apiGroups: ['devices.kubeedge.io'], resources: ['devices', 'devicemodels'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['devices.kubeedge.io'], resources: ['devicestatuses'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] },
  // Only used where a DeviceStatus CRD has a status subresource (KubeEdge's has none); kept so such a CRD still works.
  { apiGroups: ['devices.kubeedge.io'], resources: ['devicestatuses/status'], verbs: ['get', 'update', 'patch'] },
];
