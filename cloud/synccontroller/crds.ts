/**
 * @module
 * The ObjectSync / ClusterObjectSync custom resources: KubeEdge's shapes
 * (`reliablesyncs.kubeedge.io/v1alpha1`) in Ledge's own API group. One record per
 * (node, object), named `{node}.{objectUID}`; `status.objectResourceVersion` is the
 * version that node last acknowledged. deploy/crds/ holds the same as YAML.
 */
export const SYNC_GROUP = 'reliablesyncs.ledge.io';
export const SYNC_VERSION = 'v1alpha1';
export const OBJECT_SYNC_PLURAL = 'objectsyncs';
export const CLUSTER_OBJECT_SYNC_PLURAL = 'clusterobjectsyncs';

export interface ObjectSyncSpec {
  objectAPIVersion: string;
  objectKind: string;
  objectName: string;
}

export interface ObjectSync {
  apiVersion: string;
  kind: 'ObjectSync' | 'ClusterObjectSync';
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; labels?: Record<string, string> };
  spec: ObjectSyncSpec;
  status?: { objectResourceVersion?: string };
}

/** Label carrying the node name, so a node's records can be selected. */
export const NODE_LABEL = 'reliablesyncs.ledge.io/node';

export function objectSyncName(node: string, uid: string): string {
  return `${node}.${uid}`;
}

function crd(kind: 'ObjectSync' | 'ClusterObjectSync', plural: string, scope: 'Namespaced' | 'Cluster') {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${SYNC_GROUP}` },
    spec: {
      group: SYNC_GROUP,
      scope,
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: SYNC_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Kind', type: 'string', jsonPath: '.spec.objectKind' },
            { name: 'Object', type: 'string', jsonPath: '.spec.objectName' },
            { name: 'AckedVersion', type: 'string', jsonPath: '.status.objectResourceVersion' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: {
                spec: {
                  type: 'object',
                  required: ['objectKind', 'objectName'],
                  properties: { objectAPIVersion: { type: 'string' }, objectKind: { type: 'string' }, objectName: { type: 'string' } },
                },
                status: { type: 'object', properties: { objectResourceVersion: { type: 'string' } } },
              },
            },
          },
        },
      ],
    },
  };
}

export const objectSyncCrd = crd('ObjectSync', OBJECT_SYNC_PLURAL, 'Namespaced');
export const clusterObjectSyncCrd = crd('ClusterObjectSync', CLUSTER_OBJECT_SYNC_PLURAL, 'Cluster');
