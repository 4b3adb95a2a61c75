/**
 * @module
 * Shapes shared by the apiserver's parts. Objects are kept as plain JSON values:
 * the server is schema-light by design, like a dynamic client.
 */

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: JsonObject[];
  managedFields?: JsonObject[];
  [k: string]: unknown;
}

/** A stored Kubernetes object. `metadata` is always present once stored. */
export interface KObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [k: string]: unknown;
}

/** openAPIV3Schema subset used for validation and pruning of custom resources. */
export interface JSONSchemaProps {
  type?: string;
  properties?: Record<string, JSONSchemaProps>;
  items?: JSONSchemaProps;
  additionalProperties?: JSONSchemaProps | boolean;
  required?: string[];
  enum?: Json[];
  nullable?: boolean;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  format?: string;
  description?: string;
  default?: unknown;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-embedded-resource'?: boolean;
}

export interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  description?: string;
  priority?: number;
  format?: string;
}

/** One served resource (one per group/version/resource). */
export interface ResourceType {
  group: string;
  version: string;
  /** Plural, lower-case: `pods`. */
  resource: string;
  singular: string;
  kind: string;
  listKind: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  /** `status`, `binding`... */
  subresources: string[];
  /** Identity of the stored data, shared by all versions of a resource: `group/resource`. */
  storageKey: string;
  /** Built-in types accept strategic merge patch; custom resources do not (as in k8s). */
  builtin: boolean;
  /** Extra field-selector labels beyond metadata.name/namespace. */
  fieldLabels: Record<string, (o: KObject) => string | undefined>;
  /** Validation schema (custom resources). */
  schema?: JSONSchemaProps;
  printerColumns?: PrinterColumn[];
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
