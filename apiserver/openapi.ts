/**
 * @module
 * A minimal OpenAPI v3 (/openapi/v3, /openapi/v3/{api/v1|apis/g/v}). kubectl needs it:
 * `apply`/`create` refuse to run without openapi unless the server advertises the
 * `fieldValidation` query parameter on the PATCH operation of the kind (then
 * validation is left to the server). `explain` reads the kind's schema from
 * components.schemas: custom resources get their CRD's openAPIV3Schema; built-in
 * kinds get a shallow schema (top-level fields only) — we do not ship k8s's full
 * type schemas. Patch operations deliberately declare no strategic-merge request
 * body, so kubectl computes strategic patches from its compiled-in types, which
 * carry the real patchMergeKeys.
 */
import { createHash } from 'node:crypto';
import type { Registry } from './registry.js';
import type { JSONSchemaProps, ResourceType } from './types.js';

function gvPath(group: string, version: string): string {
  return group ? `apis/${group}/${version}` : `api/${version}`;
}

function schemaName(t: ResourceType): string {
  const g = t.group ? t.group.split('.').reverse().join('.') : 'io.k8s.api.core';
  return `${g}.${t.version}.${t.kind}`;
}

function gvkExt(t: ResourceType): Record<string, unknown> {
  return { group: t.group, version: t.version, kind: t.kind };
}

const objectMeta = {
  type: 'object',
  description:
    'Standard object metadata: name, namespace, labels, annotations, uid, resourceVersion, generation, creationTimestamp, deletionTimestamp, finalizers, ownerReferences.',
  properties: {
    name: { type: 'string', description: 'Name must be unique within a namespace.' },
    generateName: { type: 'string', description: 'Prefix for a server-generated name.' },
    namespace: { type: 'string', description: 'Namespace of the object.' },
    labels: { type: 'object', additionalProperties: { type: 'string' }, description: 'Map of string keys and values for organizing and selecting objects.' },
    annotations: { type: 'object', additionalProperties: { type: 'string' }, description: 'Unstructured key value map set by external tools.' },
    uid: { type: 'string', description: 'Unique id, set by the server.' },
    resourceVersion: { type: 'string', description: 'Opaque version for optimistic concurrency and watches.' },
    generation: { type: 'integer', description: 'Sequence number of the desired state.' },
    creationTimestamp: { type: 'string', format: 'date-time', description: 'When the object was created.' },
    deletionTimestamp: { type: 'string', format: 'date-time', description: 'When the object will be deleted (graceful deletion).' },
    finalizers: { type: 'array', items: { type: 'string' }, description: 'Must be empty before the object is deleted.' },
  },
};

function builtinSchema(t: ResourceType): JSONSchemaProps & Record<string, unknown> {
  const props: Record<string, unknown> = {
    apiVersion: { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object.' },
    kind: { type: 'string', description: 'Kind is a string value representing the REST resource this object represents.' },
    metadata: objectMeta,
  };
  if (['Pod', 'Node', 'Service', 'Namespace', 'Lease', 'CustomResourceDefinition'].includes(t.kind)) {
    props.spec = { type: 'object', description: `Desired state of the ${t.kind}.`, 'x-kubernetes-preserve-unknown-fields': true };
  }
  if (['Pod', 'Node', 'Service', 'Namespace', 'CustomResourceDefinition'].includes(t.kind)) {
    props.status = { type: 'object', description: `Most recently observed status of the ${t.kind}. Read-only.`, 'x-kubernetes-preserve-unknown-fields': true };
  }
  if (t.kind === 'ConfigMap' || t.kind === 'Secret') {
    props.data = { type: 'object', additionalProperties: { type: 'string' }, description: t.kind === 'Secret' ? 'Base64-encoded secret data.' : 'Configuration data.' };
  }
  return {
    type: 'object',
    description: `${t.kind} (${t.group || 'core'}/${t.version}). Ledge serves a shallow schema for built-in kinds.`,
    properties: props as Record<string, JSONSchemaProps>,
  };
}

function crSchema(t: ResourceType): Record<string, unknown> {
  const s = structuredClone(t.schema ?? { type: 'object', 'x-kubernetes-preserve-unknown-fields': true }) as Record<string, unknown>;
  const props = (s.properties as Record<string, unknown> | undefined) ?? {};
  props.metadata = objectMeta;
  props.apiVersion ??= { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object.' };
  props.kind ??= { type: 'string', description: 'Kind is a string value representing the REST resource this object represents.' };
  s.properties = props;
  return s;
}

export function openApiGroupVersion(reg: Registry, group: string, version: string): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  const schemas: Record<string, unknown> = {};
  for (const t of reg.resources(group, version)) {
    const base = `/${gvPath(group, version)}${t.namespaced ? '/namespaces/{namespace}' : ''}/${t.resource}`;
    const ext = gvkExt(t);
    const ref = { $ref: `#/components/schemas/${schemaName(t)}` };
    const ok = { '200': { description: 'OK', content: { 'application/json': { schema: ref } } } };
    const params = [
      { name: 'dryRun', in: 'query', schema: { type: 'string' } },
      { name: 'fieldManager', in: 'query', schema: { type: 'string' } },
      { name: 'fieldValidation', in: 'query', schema: { type: 'string' } },
    ];
    paths[base] = {
      get: { operationId: `list${t.kind}`, 'x-kubernetes-action': 'list', 'x-kubernetes-group-version-kind': ext, responses: ok },
      post: { operationId: `create${t.kind}`, 'x-kubernetes-action': 'post', 'x-kubernetes-group-version-kind': ext, parameters: params, responses: ok },
    };
    paths[`${base}/{name}`] = {
      get: { operationId: `read${t.kind}`, 'x-kubernetes-action': 'get', 'x-kubernetes-group-version-kind': ext, responses: ok },
      put: { operationId: `replace${t.kind}`, 'x-kubernetes-action': 'put', 'x-kubernetes-group-version-kind': ext, parameters: params, responses: ok },
      patch: {
        operationId: `patch${t.kind}`,
        'x-kubernetes-action': 'patch',
        'x-kubernetes-group-version-kind': ext,
        parameters: [...params, { name: 'force', in: 'query', schema: { type: 'boolean' } }],
        responses: ok,
      },
      delete: { operationId: `delete${t.kind}`, 'x-kubernetes-action': 'delete', 'x-kubernetes-group-version-kind': ext, responses: ok },
    };
    const schema = t.builtin ? builtinSchema(t) : crSchema(t);
    schemas[schemaName(t)] = { ...schema, 'x-kubernetes-group-version-kind': [ext] };
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes (Ledge)', version: 'v1.35.0' }, paths, components: { schemas } };
}

function hashOf(doc: unknown): string {
  return createHash('sha512').update(JSON.stringify(doc)).digest('hex').slice(0, 128).toUpperCase();
}

export function openApiRoot(reg: Registry): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  const gvs: [string, string][] = [['', 'v1']];
  for (const [g, vs] of reg.groups()) for (const v of vs) gvs.push([g, v]);
  for (const [g, v] of gvs) {
    const p = gvPath(g, v);
    paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${hashOf(openApiGroupVersion(reg, g, v))}` };
  }
  return { paths };
}
