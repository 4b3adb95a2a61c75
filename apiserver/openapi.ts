/**
 * @module
 * A minimal OpenAPI v3 (/openapi/v3, /openapi/v3/{api/v1|apis/g/v}). kubectl needs it:
 * `apply`/`create` refuse to run without openapi unless the server advertises the
 * `fieldValidation` query parameter on the PATCH operation of the kind (then
 * validation is left to the server). `explain` reads the kind's schema from
 * components.schemas: custom resources get their CRD's openAPIV3Schema; built-in
 * kinds get a shallow schema (top-level fields only) — we do not ship k8s's full
 * type schemas — except the workload kinds, whose specs and statuses are described
 * field by field (pod templates stay objects preserving unknown fields), with
 * kube's descriptions. Patch operations deliberately declare no strategic-merge request
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
  // Built-in apps and batch kinds under their k8s names (io.k8s.api.apps.v1.Deployment).
  if (t.builtin && (t.group === 'apps' || t.group === 'batch')) return `io.k8s.api.${t.group}.${t.version}.${t.kind}`;
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

type Schema = Record<string, unknown>;
const str = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra });
const int32 = (description: string): Schema => ({ type: 'integer', format: 'int32', description });
const bool = (description: string): Schema => ({ type: 'boolean', description });
const time = (description: string): Schema => ({ type: 'string', format: 'date-time', description });
/** Named types go to components.schemas (see {@link hoistComponents}); explain prints their names (`<IntOrString>`). */
const COMPONENT = Symbol('component');
type Named = Schema & { [COMPONENT]?: { name: string; schema: Schema } };
/** The named types' own descriptions (explain prints the field's, then the type's). */
const TYPE_DESCRIPTIONS: Record<string, string> = {
  'io.k8s.api.apps.v1.DeploymentSpec': 'DeploymentSpec is the specification of the desired behavior of the Deployment.',
  'io.k8s.api.apps.v1.DeploymentStrategy': 'DeploymentStrategy describes how to replace existing pods with new ones.',
  'io.k8s.api.apps.v1.RollingUpdateDeployment': 'Spec to control the desired behavior of rolling update.',
  'io.k8s.api.apps.v1.DeploymentStatus': 'DeploymentStatus is the most recently observed status of the Deployment.',
  'io.k8s.api.apps.v1.ReplicaSetSpec': 'ReplicaSetSpec is the specification of a ReplicaSet.',
  'io.k8s.api.apps.v1.ReplicaSetStatus': 'ReplicaSetStatus represents the current status of a ReplicaSet.',
  'io.k8s.api.apps.v1.DaemonSetSpec': 'DaemonSetSpec is the specification of a daemon set.',
  'io.k8s.api.apps.v1.DaemonSetUpdateStrategy': 'DaemonSetUpdateStrategy is a struct used to control the update strategy for a DaemonSet.',
  'io.k8s.api.apps.v1.RollingUpdateDaemonSet': 'Spec to control the desired behavior of daemon set rolling update.',
  'io.k8s.api.apps.v1.DaemonSetStatus': 'DaemonSetStatus represents the current status of a daemon set.',
  'io.k8s.api.batch.v1.JobSpec': 'JobSpec describes how the job execution will look like.',
  'io.k8s.api.batch.v1.JobStatus': 'JobStatus represents the current state of a Job.',
  'io.k8s.api.batch.v1.JobTemplateSpec': 'JobTemplateSpec describes the data a Job should have when created from a template',
  'io.k8s.api.batch.v1.CronJobSpec': 'CronJobSpec describes how the job execution will look like and when it will actually run.',
  'io.k8s.api.batch.v1.CronJobStatus': 'CronJobStatus represents the current state of a cron job.',
};

/**
 * A field of a named type: `{allOf: [{$ref}], description}` as kube's OpenAPI v3 writes it;
 * the type itself (with its own description) is hoisted into components.schemas.
 */
function named(name: string, schema: Schema, description = schema.description): Schema {
  const ref: Named = { allOf: [{ $ref: `#/components/schemas/${name}` }], ...(description ? { description } : {}) };
  const own = TYPE_DESCRIPTIONS[name];
  ref[COMPONENT] = { name, schema: own ? { ...schema, description: own } : schema };
  return ref;
}
// No `type`: explain then names it `<IntOrString>` (a typed primitive would print as `<string>`).
const INT_OR_STRING: Schema = {
  description:
    'IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, for example, a JSON field that can accept a name or number.',
  format: 'int-or-string',
  'x-kubernetes-int-or-string': true,
};
const intOrString = (description: string): Schema => named('io.k8s.apimachinery.pkg.util.intstr.IntOrString', INT_OR_STRING, description);
const object = (description: string, properties: Record<string, Schema>, required?: string[]): Schema => ({
  type: 'object',
  description,
  properties,
  ...(required ? { required } : {}),
});

function labelSelector(description: string): Schema {
  return named(
    'io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector',
    {
      ...object(
        'A label selector is a label query over a set of resources. The result of matchLabels and matchExpressions are ANDed. An empty label selector matches all objects. A null label selector matches no objects.',
        {
          matchLabels: {
            type: 'object',
            additionalProperties: { type: 'string' },
            description:
              'matchLabels is a map of {key,value} pairs. A single {key,value} in the matchLabels map is equivalent to an element of matchExpressions, whose key field is "key", the operator is "In", and the values array contains only "value". The requirements are ANDed.',
          },
          matchExpressions: {
            type: 'array',
            description: 'matchExpressions is a list of label selector requirements. The requirements are ANDed.',
            items: object(
              'A label selector requirement is a selector that contains values, a key, and an operator that relates the key and values.',
              {
                key: str('key is the label key that the selector applies to.'),
                operator: str("operator represents a key's relationship to a set of values. Valid operators are In, NotIn, Exists and DoesNotExist."),
                values: {
                  type: 'array',
                  items: { type: 'string' },
                  description:
                    'values is an array of string values. If the operator is In or NotIn, the values array must be non-empty. If the operator is Exists or DoesNotExist, the values array must be empty.',
                },
              },
              ['key', 'operator'],
            ),
          },
        },
      ),
      'x-kubernetes-map-type': 'atomic',
    },
    description,
  );
}

function podTemplate(description: string): Schema {
  return named(
    'io.k8s.api.core.v1.PodTemplateSpec',
    {
      ...object('PodTemplateSpec describes the data a pod should have when created from a template', {
        metadata: { ...objectMeta, description: "Standard object's metadata of the pods created from this template (labels, annotations)." },
        spec: {
          type: 'object',
          description: 'Specification of the desired behavior of the pod (a PodSpec: containers, volumes, restartPolicy, nodeSelector, tolerations...).',
          'x-kubernetes-preserve-unknown-fields': true,
        },
      }),
      'x-kubernetes-preserve-unknown-fields': true,
    },
    description,
  );
}

const conditions = (what: string, type: string): Schema => ({
  type: 'array',
  description: `Represents the latest available observations of a ${what}'s current state.`,
  items: named(
    type,
    object(`Describes the state of a ${what} at a certain point.`, {
      type: str('Type of condition.'),
      status: str('Status of the condition, one of True, False, Unknown.'),
      reason: str("The reason for the condition's last transition."),
      message: str('A human readable message indicating details about the transition.'),
      lastTransitionTime: time('Last time the condition transitioned from one status to another.'),
      lastUpdateTime: time('The last time this condition was updated.'),
    }),
    '', // an item: the list's description is the field's
  ),
  'x-kubernetes-list-map-keys': ['type'],
  'x-kubernetes-list-type': 'map',
});

const minReadySeconds = int32(
  'Minimum number of seconds for which a newly created pod should be ready without any of its container crashing, for it to be considered available. Defaults to 0 (pod will be considered available as soon as it is ready)',
);

function jobSpec(): Schema {
  return named(
    'io.k8s.api.batch.v1.JobSpec',
    object(
      'Specification of the desired behavior of a job.',
      {
        parallelism: int32(
          'Specifies the maximum desired number of pods the job should run at any given time. The actual number of pods running in steady state will be less than this number when ((.spec.completions - .status.successful) < .spec.parallelism), i.e. when the work left to do is less than max parallelism.',
        ),
        completions: int32(
          'Specifies the desired number of successfully finished pods the job should be run with.  Setting to null means that the success of any pod signals the success of all pods, and allows parallelism to have any positive value.  Setting to 1 means that parallelism is limited to 1 and the success of that pod signals the success of the job.',
        ),
        activeDeadlineSeconds: {
          type: 'integer',
          format: 'int64',
          description:
            'Specifies the duration in seconds relative to the startTime that the job may be continuously active before the system tries to terminate it; value must be positive integer. If a Job is suspended (at creation or through an update), this timer will effectively be stopped and reset when the Job is resumed again.',
        },
        backoffLimit: int32(
          'Specifies the number of retries before marking this job failed. Defaults to 6, unless backoffLimitPerIndex (only Indexed Job) is specified. When backoffLimitPerIndex is specified, backoffLimit defaults to 2147483647.',
        ),
        backoffLimitPerIndex: int32('Specifies the limit for the number of retries within an index before marking this index as failed. Only for Indexed jobs.'),
        selector: labelSelector('A label query over pods that should match the pod count. Normally, the system sets this field for you.'),
        manualSelector: bool(
          'manualSelector controls generation of pod labels and pod selectors. Leave `manualSelector` unset unless you are certain what you are doing. When false or unset, the system pick labels unique to this job and appends those labels to the pod template.  When true, the user is responsible for picking unique labels and specifying the selector.',
        ),
        template: podTemplate('Describes the pod that will be created when executing a job. The only allowed template.spec.restartPolicy values are "Never" or "OnFailure".'),
        ttlSecondsAfterFinished: int32(
          'ttlSecondsAfterFinished limits the lifetime of a Job that has finished execution (either Complete or Failed). If this field is set, ttlSecondsAfterFinished after the Job finishes, it is eligible to be automatically deleted.',
        ),
        completionMode: str(
          'completionMode specifies how Pod completions are tracked. It can be `NonIndexed` (default) or `Indexed`.\n\n`NonIndexed` means that the Job is considered complete when there have been .spec.completions successfully completed Pods. Each Pod completion is homologous to each other.\n\n`Indexed` means that the Pods of a Job get an associated completion index from 0 to (.spec.completions - 1), available in the annotation batch.kubernetes.io/job-completion-index.',
          { enum: ['Indexed', 'NonIndexed'] },
        ),
        suspend: bool(
          'suspend specifies whether the Job controller should create Pods or not. If a Job is created with suspend set to true, no Pods are created by the Job controller. If a Job is suspended after creation (i.e. the flag goes from false to true), the Job controller will delete all active Pods associated with this Job. Defaults to false.',
        ),
        podReplacementPolicy: str('podReplacementPolicy specifies when to create replacement Pods. Possible values are: TerminatingOrFailed (the default), Failed.', {
          enum: ['Failed', 'TerminatingOrFailed'],
        }),
        podFailurePolicy: { type: 'object', description: 'Specifies the policy of handling failed pods.', 'x-kubernetes-preserve-unknown-fields': true },
        successPolicy: {
          type: 'object',
          description: 'successPolicy specifies the policy when the Job can be declared as succeeded.',
          'x-kubernetes-preserve-unknown-fields': true,
        },
        managedBy: str('ManagedBy field indicates the controller that manages a Job.'),
      },
      ['template'],
    ),
  );
}

/** spec and status of the workload kinds (k8s.io/api apps/v1 and batch/v1 descriptions). */
function workloadProps(kind: string): Record<string, Schema> | undefined {
  switch (kind) {
    case 'Deployment':
      return {
        spec: named(
          'io.k8s.api.apps.v1.DeploymentSpec',
          object(
            'Specification of the desired behavior of the Deployment.',
            {
              replicas: int32('Number of desired pods. This is a pointer to distinguish between explicit zero and not specified. Defaults to 1.'),
              selector: labelSelector(
                "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.",
              ),
              template: podTemplate('Template describes the pods that will be created. The only allowed template.spec.restartPolicy value is "Always".'),
              strategy: named(
                'io.k8s.api.apps.v1.DeploymentStrategy',
                object('The deployment strategy to use to replace existing pods with new ones.', {
                  type: str('Type of deployment. Can be "Recreate" or "RollingUpdate". Default is RollingUpdate.', { enum: ['Recreate', 'RollingUpdate'] }),
                  rollingUpdate: named(
                    'io.k8s.api.apps.v1.RollingUpdateDeployment',
                    object('Rolling update config params. Present only if DeploymentStrategyType = RollingUpdate.', {
                      maxUnavailable: intOrString(
                        'The maximum number of pods that can be unavailable during the update. Value can be an absolute number (ex: 5) or a percentage of desired pods (ex: 10%). Absolute number is calculated from percentage by rounding down. This can not be 0 if MaxSurge is 0. Defaults to 25%.',
                      ),
                      maxSurge: intOrString(
                        'The maximum number of pods that can be scheduled above the desired number of pods. Value can be an absolute number (ex: 5) or a percentage of desired pods (ex: 10%). This can not be 0 if MaxUnavailable is 0. Absolute number is calculated from percentage by rounding up. Defaults to 25%.',
                      ),
                    }),
                  ),
                }),
              ),
              minReadySeconds,
              revisionHistoryLimit: int32(
                'The number of old ReplicaSets to retain to allow rollback. This is a pointer to distinguish between explicit zero and not specified. Defaults to 10.',
              ),
              paused: bool('Indicates that the deployment is paused.'),
              progressDeadlineSeconds: int32(
                'The maximum time in seconds for a deployment to make progress before it is considered to be failed. The deployment controller will continue to process failed deployments and a condition with a ProgressDeadlineExceeded reason will be surfaced in the deployment status. Note that progress will not be estimated during the time a deployment is paused. Defaults to 600s.',
              ),
            },
            ['selector', 'template'],
          ),
        ),
        status: named(
          'io.k8s.api.apps.v1.DeploymentStatus',
          object('Most recently observed status of the Deployment.', {
            observedGeneration: { type: 'integer', format: 'int64', description: 'The generation observed by the deployment controller.' },
            replicas: int32('Total number of non-terminating pods targeted by this deployment (their labels match the selector).'),
            updatedReplicas: int32('Total number of non-terminating pods targeted by this deployment that have the desired template spec.'),
            readyReplicas: int32('Total number of non-terminating pods targeted by this Deployment with a Ready Condition.'),
            availableReplicas: int32('Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.'),
            unavailableReplicas: int32(
              'Total number of unavailable pods targeted by this deployment. This is the total number of pods that are still required for the deployment to have 100% available capacity.',
            ),
            terminatingReplicas: int32('Total number of terminating pods targeted by this deployment.'),
            conditions: conditions('deployment', 'io.k8s.api.apps.v1.DeploymentCondition'),
            collisionCount: int32('Count of hash collisions for the Deployment. The Deployment controller uses this field as a collision avoidance mechanism.'),
          }),
        ),
      };
    case 'ReplicaSet':
      return {
        spec: named(
          'io.k8s.api.apps.v1.ReplicaSetSpec',
          object(
            'Spec defines the specification of the desired behavior of the ReplicaSet.',
            {
              replicas: int32('Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1.'),
              minReadySeconds,
              selector: labelSelector(
                "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels.",
              ),
              template: podTemplate('Template is the object that describes the pod that will be created if insufficient replicas are detected.'),
            },
            ['selector'],
          ),
        ),
        status: named(
          'io.k8s.api.apps.v1.ReplicaSetStatus',
          object('Status is the most recently observed status of the ReplicaSet.', {
            replicas: int32('Replicas is the most recently observed number of non-terminating pods.'),
            fullyLabeledReplicas: int32('The number of non-terminating pods that have labels matching the labels of the pod template of the replicaset.'),
            readyReplicas: int32('The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.'),
            availableReplicas: int32('The number of available non-terminating pods (ready for at least minReadySeconds) for this replica set.'),
            terminatingReplicas: int32('The number of terminating pods for this replica set.'),
            observedGeneration: { type: 'integer', format: 'int64', description: 'ObservedGeneration reflects the generation of the most recently observed ReplicaSet.' },
            conditions: conditions('replica set', 'io.k8s.api.apps.v1.ReplicaSetCondition'),
          }),
        ),
      };
    case 'DaemonSet':
      return {
        spec: named(
          'io.k8s.api.apps.v1.DaemonSetSpec',
          object(
            'The desired behavior of this daemon set.',
            {
              selector: labelSelector("A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels."),
              template: podTemplate(
                'An object that describes the pod that will be created. The DaemonSet will create exactly one copy of this pod on every node that matches the template\'s node selector (or on every node if no node selector is specified). The only allowed template.spec.restartPolicy value is "Always".',
              ),
              updateStrategy: named(
                'io.k8s.api.apps.v1.DaemonSetUpdateStrategy',
                object('An update strategy to replace existing DaemonSet pods with new pods.', {
                  type: str('Type of daemon set update. Can be "RollingUpdate" or "OnDelete". Default is RollingUpdate.', { enum: ['OnDelete', 'RollingUpdate'] }),
                  rollingUpdate: named(
                    'io.k8s.api.apps.v1.RollingUpdateDaemonSet',
                    object('Rolling update config params. Present only if type = "RollingUpdate".', {
                      maxUnavailable: intOrString(
                        'The maximum number of DaemonSet pods that can be unavailable during the update. Value can be an absolute number (ex: 5) or a percentage of total number of DaemonSet pods at the start of the update (ex: 10%). Absolute number is calculated from percentage by rounding up. This cannot be 0 if MaxSurge is 0 Default value is 1.',
                      ),
                      maxSurge: intOrString(
                        'The maximum number of nodes with an existing available DaemonSet pod that can have an updated DaemonSet pod during during an update. Value can be an absolute number (ex: 5) or a percentage of desired pods (ex: 10%). This can not be 0 if MaxUnavailable is 0. Default value is 0.',
                      ),
                    }),
                  ),
                }),
              ),
              minReadySeconds: int32(
                'The minimum number of seconds for which a newly created DaemonSet pod should be ready without any of its container crashing, for it to be considered available. Defaults to 0 (pod will be considered available as soon as it is ready).',
              ),
              revisionHistoryLimit: int32(
                'The number of old history to retain to allow rollback. This is a pointer to distinguish between explicit zero and not specified. Defaults to 10.',
              ),
            },
            ['selector', 'template'],
          ),
        ),
        status: named(
          'io.k8s.api.apps.v1.DaemonSetStatus',
          object('The current status of this daemon set.', {
            currentNumberScheduled: int32('The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.'),
            numberMisscheduled: int32('The number of nodes that are running the daemon pod, but are not supposed to run the daemon pod.'),
            desiredNumberScheduled: int32('The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).'),
            numberReady: int32('numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.'),
            observedGeneration: { type: 'integer', format: 'int64', description: 'The most recent generation observed by the daemon set controller.' },
            updatedNumberScheduled: int32('The total number of nodes that are running updated daemon pod'),
            numberAvailable: int32(
              'The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)',
            ),
            numberUnavailable: int32(
              'The number of nodes that should be running the daemon pod and have none of the daemon pod running and available (ready for at least spec.minReadySeconds)',
            ),
            collisionCount: int32('Count of hash collisions for the DaemonSet.'),
            conditions: conditions('DaemonSet', 'io.k8s.api.apps.v1.DaemonSetCondition'),
          }),
        ),
      };
    case 'ControllerRevision':
      return {
        data: { type: 'object', description: 'Data is the serialized representation of the state.', 'x-kubernetes-preserve-unknown-fields': true },
        revision: { type: 'integer', format: 'int64', description: 'Revision indicates the revision of the state represented by Data.' },
      };
    case 'Job':
      return {
        spec: jobSpec(),
        status: named(
          'io.k8s.api.batch.v1.JobStatus',
          object('Current status of a job.', {
            conditions: conditions('job', 'io.k8s.api.batch.v1.JobCondition'),
            startTime: time('Represents time when the job controller started processing a job.'),
            completionTime: time('Represents time when the job was completed.'),
            active: int32('The number of pending and running pods which are not terminating (without a deletionTimestamp).'),
            succeeded: int32('The number of pods which reached phase Succeeded.'),
            failed: int32('The number of pods which reached phase Failed.'),
            terminating: int32('The number of pods which are terminating (in phase Pending or Running and have a deletionTimestamp).'),
            ready: int32('The number of active pods which have a Ready condition and are not terminating (without a deletionTimestamp).'),
            completedIndexes: str('completedIndexes holds the completed indexes when .spec.completionMode = "Indexed" in a text format.'),
            failedIndexes: str('FailedIndexes holds the failed indexes when spec.backoffLimitPerIndex is set.'),
            uncountedTerminatedPods: {
              type: 'object',
              description: "uncountedTerminatedPods holds the UIDs of Pods that have terminated but the job controller hasn't yet accounted for in the status counters.",
              'x-kubernetes-preserve-unknown-fields': true,
            },
          }),
        ),
      };
    case 'CronJob':
      return {
        spec: named(
          'io.k8s.api.batch.v1.CronJobSpec',
          object(
            'Specification of the desired behavior of a cron job, including the schedule.',
            {
              schedule: str('The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.'),
              timeZone: str(
                'The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process.',
              ),
              startingDeadlineSeconds: {
                type: 'integer',
                format: 'int64',
                description:
                  'Optional deadline in seconds for starting the job if it misses scheduled time for any reason.  Missed jobs executions will be counted as failed ones.',
              },
              concurrencyPolicy: str(
                'Specifies how to treat concurrent executions of a Job. Valid values are:\n\n- "Allow" (default): allows CronJobs to run concurrently; - "Forbid": forbids concurrent runs, skipping next run if previous run hasn\'t finished yet; - "Replace": cancels currently running job and replaces it with a new one',
                { enum: ['Allow', 'Forbid', 'Replace'] },
              ),
              suspend: bool('This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.'),
              jobTemplate: named(
                'io.k8s.api.batch.v1.JobTemplateSpec',
                object('Specifies the job that will be created when executing a CronJob.', {
                  metadata: { ...objectMeta, description: "Standard object's metadata of the jobs created from this template." },
                  spec: jobSpec(),
                }),
              ),
              successfulJobsHistoryLimit: int32('The number of successful finished jobs to retain. Value must be non-negative integer. Defaults to 3.'),
              failedJobsHistoryLimit: int32('The number of failed finished jobs to retain. Value must be non-negative integer. Defaults to 1.'),
            },
            ['schedule', 'jobTemplate'],
          ),
        ),
        status: named(
          'io.k8s.api.batch.v1.CronJobStatus',
          object('Current status of a cron job.', {
            active: {
              type: 'array',
              description: 'A list of pointers to currently running jobs.',
              items: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
              'x-kubernetes-list-type': 'atomic',
            },
            lastScheduleTime: time('Information when was the last time the job was successfully scheduled.'),
            lastSuccessfulTime: time('Information when was the last time the job successfully completed.'),
          }),
        ),
      };
    default:
      return undefined;
  }
}

function builtinSchema(t: ResourceType): JSONSchemaProps & Record<string, unknown> {
  const props: Record<string, unknown> = {
    apiVersion: { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object.' },
    kind: { type: 'string', description: 'Kind is a string value representing the REST resource this object represents.' },
    metadata: objectMeta,
  };
  const workload = t.group === 'apps' || t.group === 'batch' ? workloadProps(t.kind) : undefined;
  if (workload) {
    Object.assign(props, workload);
    return { type: 'object', description: workloadDescription(t.kind), properties: props as Record<string, JSONSchemaProps> };
  }
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

function workloadDescription(kind: string): string {
  switch (kind) {
    case 'Deployment':
      return 'Deployment enables declarative updates for Pods and ReplicaSets.';
    case 'ReplicaSet':
      return 'ReplicaSet ensures that a specified number of pod replicas are running at any given time.';
    case 'DaemonSet':
      return 'DaemonSet represents the configuration of a daemon set.';
    case 'ControllerRevision':
      return 'ControllerRevision implements an immutable snapshot of state data. Clients are responsible for serializing and deserializing the objects that contain their internal state. Once a ControllerRevision has been successfully created, it can not be updated.';
    case 'Job':
      return 'Job represents the configuration of a single job.';
    default:
      return 'CronJob represents the configuration of a single cron job.';
  }
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
    hoistComponents(schema, schemas);
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes (Ledge)', version: 'v1.35.0' }, paths, components: { schemas } };
}

/** Puts the named types reachable from `s` into `out` (components.schemas). */
function hoistComponents(s: unknown, out: Record<string, unknown>): void {
  if (Array.isArray(s)) {
    for (const x of s) hoistComponents(x, out);
    return;
  }
  if (s === null || typeof s !== 'object') return;
  const c = (s as Named)[COMPONENT];
  if (c && !(c.name in out)) {
    out[c.name] = c.schema;
    hoistComponents(c.schema, out);
  }
  for (const v of Object.values(s)) hoistComponents(v, out);
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
