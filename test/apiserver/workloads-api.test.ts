// The API surface of the workload kinds (apps/v1 Deployment, ReplicaSet, DaemonSet,
// ControllerRevision; batch/v1 Job, CronJob) on the local control plane, over HTTPS with
// client-node and raw requests: kube-apiserver 1.35's defaults, validation messages,
// immutable fields, generation, the autoscaling/v1 Scale subresource, strategic merge
// patches of pod templates, tables, discovery and OpenAPI. Only the API's own behaviour is
// asserted: a workload controller writing status meanwhile changes none of it (writes that
// check generation carry the resourceVersion they were read at and retry on a conflict).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { expectStatus, raw, type RawResponse } from './helpers.js';
import { scaleOf, selectorString } from '../../apiserver/workloads-api.js';

const cp = useLocalControlPlane('ledge-workloads-api-');
const NS = 'default';

// biome-ignore lint/suspicious/noExplicitAny: test convenience, arbitrary JSON
type Obj = any;

const path = (group: 'apps' | 'batch', resource: string, name?: string, sub?: string): string =>
  `/apis/${group}/v1/namespaces/${NS}/${resource}${name ? `/${name}` : ''}${sub ? `/${sub}` : ''}`;
const send = (method: string, p: string, body?: unknown, contentType?: string): Promise<RawResponse> =>
  raw(cp.api, method, p, body === undefined ? undefined : JSON.stringify(body), contentType ? { 'content-type': contentType } : {});

async function ok(r: Promise<RawResponse>, code = 200): Promise<Obj> {
  const res = await r;
  assert.equal(res.status, code, res.text);
  return res.json();
}

const podSpec = (extra: Obj = {}): Obj => ({ containers: [{ name: 'app', image: 'nginx:1.25', ...extra }] });
const deployment = (name: string, spec: Obj = {}): Obj => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name },
  spec: { selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: podSpec() }, ...spec },
});
const replicaSet = (name: string, spec: Obj = {}): Obj => ({ ...deployment(name, spec), kind: 'ReplicaSet' });
const daemonSet = (name: string, spec: Obj = {}): Obj => ({ ...deployment(name, spec), kind: 'DaemonSet' });
const job = (name: string, spec: Obj = {}): Obj => ({
  apiVersion: 'batch/v1',
  kind: 'Job',
  metadata: { name },
  spec: { template: { spec: { ...podSpec(), restartPolicy: 'Never' } }, ...spec },
});
const cronJob = (name: string, spec: Obj = {}): Obj => ({
  apiVersion: 'batch/v1',
  kind: 'CronJob',
  metadata: { name },
  spec: { schedule: '*/5 * * * *', jobTemplate: { spec: { template: { spec: { ...podSpec(), restartPolicy: 'OnFailure' } } } }, ...spec },
});

const create = (group: 'apps' | 'batch', resource: string, body: Obj): Promise<Obj> => ok(send('POST', path(group, resource), body), 201);

/** POSTs `body` and expects a 422 whose causes include `field` with a message matching `message`. */
async function refused(group: 'apps' | 'batch', resource: string, body: Obj, field: string, message: RegExp): Promise<Obj> {
  const res = await send('POST', path(group, resource), body);
  assert.equal(res.status, 422, `expected 422 for ${field}, got ${res.status}: ${res.text}`);
  const st = res.json();
  assert.equal(st.reason, 'Invalid');
  const cause = (st.details?.causes ?? []).find((c: Obj) => c.field === field && message.test(c.message));
  assert.ok(cause, `no cause ${field}: ${message} in ${JSON.stringify(st.details?.causes)}`);
  return st;
}

/**
 * Reads the object at `p`, changes it and PUTs it (to `p` + `/sub`) with the resourceVersion it was
 * read at; a 409 (a controller wrote in between) reads again. Returns the object read and the answer.
 */
async function change(p: string, edit: (o: Obj) => void, sub = ''): Promise<{ before: Obj; after: Obj }> {
  for (let i = 0; i < 20; i++) {
    const before = await ok(send('GET', p));
    const body = structuredClone(before);
    edit(body);
    const res = await send('PUT', sub ? `${p}/${sub}` : p, body);
    if (res.status === 409) continue;
    assert.equal(res.status, 200, res.text);
    return { before, after: res.json() };
  }
  assert.fail(`PUT ${p}: 20 conflicts in a row`);
}

const TEMPLATE_SPEC_DEFAULTS = { restartPolicy: 'Always', terminationGracePeriodSeconds: 30, dnsPolicy: 'ClusterFirst', schedulerName: 'default-scheduler', securityContext: {} };
const CONTAINER_DEFAULTS = { terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'File', resources: {} };

describe('defaults (SetDefaults_* of apps/v1 and batch/v1)', () => {
  test('Deployment: replicas, strategy, history, deadline, pod template; status reset; generation 1', async () => {
    const body = deployment('defaults');
    body.spec.template.spec.containers.push({ name: 'side', image: 'busybox', ports: [{ containerPort: 80 }] });
    body.spec.template.metadata.creationTimestamp = null;
    body.status = { replicas: 9, readyReplicas: 9 };
    const d = await create('apps', 'deployments', body);
    assert.equal(d.metadata.generation, 1);
    assert.deepEqual(d.status, {});
    const { template, ...spec } = d.spec;
    assert.deepEqual(spec, {
      replicas: 1,
      selector: { matchLabels: { app: 'defaults' } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } },
      revisionHistoryLimit: 10,
      progressDeadlineSeconds: 600,
    });
    assert.deepEqual(template.metadata, { labels: { app: 'defaults' } });
    const { containers, ...podDefaults } = template.spec;
    assert.deepEqual(podDefaults, TEMPLATE_SPEC_DEFAULTS);
    assert.deepEqual(containers, [
      { name: 'app', image: 'nginx:1.25', imagePullPolicy: 'IfNotPresent', ...CONTAINER_DEFAULTS },
      { name: 'side', image: 'busybox', imagePullPolicy: 'Always', ports: [{ containerPort: 80, protocol: 'TCP' }], ...CONTAINER_DEFAULTS },
    ]);
    // Stored as answered.
    assert.deepEqual((await ok(send('GET', path('apps', 'deployments', 'defaults')))).spec, d.spec);
  });

  test('Deployment: a Recreate strategy gets no rollingUpdate; explicit values are kept', async () => {
    const d = await create('apps', 'deployments', deployment('recreate', { replicas: 0, strategy: { type: 'Recreate' }, revisionHistoryLimit: 2, progressDeadlineSeconds: 60 }));
    assert.deepEqual(d.spec.strategy, { type: 'Recreate' });
    assert.equal(d.spec.replicas, 0);
    assert.equal(d.spec.revisionHistoryLimit, 2);
    assert.equal(d.spec.progressDeadlineSeconds, 60);
  });

  test('defaults apply to an update body too (a PUT without strategy or replicas)', async () => {
    await create('apps', 'deployments', deployment('put-defaults', { replicas: 3 }));
    const { after } = await change(path('apps', 'deployments', 'put-defaults'), (o) => {
      delete o.spec.strategy;
      delete o.spec.replicas;
      delete o.spec.template.spec.dnsPolicy;
    });
    assert.equal(after.spec.replicas, 1);
    assert.deepEqual(after.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } });
    assert.equal(after.spec.template.spec.dnsPolicy, 'ClusterFirst');
  });

  test('ReplicaSet and DaemonSet', async () => {
    const rs = await create('apps', 'replicasets', replicaSet('rs-defaults'));
    assert.equal(rs.spec.replicas, 1);
    assert.deepEqual(rs.status, { replicas: 0 });
    assert.equal(rs.spec.template.spec.restartPolicy, 'Always');
    const ds = await create('apps', 'daemonsets', daemonSet('ds-defaults'));
    assert.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
    assert.equal(ds.spec.revisionHistoryLimit, 10);
    assert.deepEqual(ds.status, { currentNumberScheduled: 0, numberMisscheduled: 0, desiredNumberScheduled: 0, numberReady: 0 });
    const onDelete = await create('apps', 'daemonsets', daemonSet('ds-ondelete', { updateStrategy: { type: 'OnDelete' } }));
    assert.deepEqual(onDelete.spec.updateStrategy, { type: 'OnDelete' });
  });

  test('Job: completions/parallelism, backoffLimit, completionMode, suspend; the generated selector and labels', async () => {
    const j = await create('batch', 'jobs', job('pi'));
    const uid = j.metadata.uid;
    const { template, selector, ...spec } = j.spec;
    assert.deepEqual(spec, {
      parallelism: 1,
      completions: 1,
      backoffLimit: 6,
      completionMode: 'NonIndexed',
      suspend: false,
      podReplacementPolicy: 'TerminatingOrFailed',
    });
    const generated = { 'batch.kubernetes.io/controller-uid': uid, 'batch.kubernetes.io/job-name': 'pi', 'controller-uid': uid, 'job-name': 'pi' };
    assert.deepEqual(selector, { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } });
    assert.deepEqual(template.metadata.labels, generated);
    assert.deepEqual(j.metadata.labels, generated);
    assert.equal(template.spec.restartPolicy, 'Never');
    assert.equal(template.spec.containers[0].terminationMessagePolicy, 'File');
    assert.deepEqual(j.status, {});
  });

  test('Job: parallelism alone leaves completions unset (a work queue); labels of its own are kept; manualSelector generates nothing', async () => {
    const wq = await create('batch', 'jobs', { ...job('queue', { parallelism: 3 }), metadata: { name: 'queue', labels: { team: 'a' } } });
    assert.equal(wq.spec.parallelism, 3);
    assert.equal('completions' in wq.spec, false);
    assert.deepEqual(wq.metadata.labels, { team: 'a' });
    const body = job('manual', { manualSelector: true, selector: { matchLabels: { run: 'manual' } } });
    body.spec.template.metadata = { labels: { run: 'manual' } };
    const m = await create('batch', 'jobs', body);
    assert.deepEqual(m.spec.selector, { matchLabels: { run: 'manual' } });
    assert.deepEqual(m.spec.template.metadata.labels, { run: 'manual' });
  });

  test('CronJob: concurrencyPolicy, suspend, history limits; the job template gets pod defaults only', async () => {
    const cj = await create('batch', 'cronjobs', cronJob('tick'));
    const { jobTemplate, ...spec } = cj.spec;
    assert.deepEqual(spec, { schedule: '*/5 * * * *', concurrencyPolicy: 'Allow', suspend: false, successfulJobsHistoryLimit: 3, failedJobsHistoryLimit: 1 });
    assert.deepEqual(Object.keys(jobTemplate.spec), ['template']);
    const { containers, ...podDefaults } = jobTemplate.spec.template.spec;
    assert.deepEqual(podDefaults, { ...TEMPLATE_SPEC_DEFAULTS, restartPolicy: 'OnFailure' });
    assert.equal(containers[0].imagePullPolicy, 'IfNotPresent');
  });
});

describe('validation (422 with kube-apiserver messages)', () => {
  const cases: [string, 'apps' | 'batch', string, Obj, string, RegExp][] = [
    ['deployment without selector', 'apps', 'deployments', deployment('nosel', { selector: undefined }), 'spec.selector', /^Required value$/],
    [
      'deployment without selector: nothing matches',
      'apps',
      'deployments',
      deployment('nosel2', { selector: undefined }),
      'spec.template.metadata.labels',
      /^Invalid value: map\[string\]string\{"app":"nosel2"\}: `selector` does not match template `labels`$/,
    ],
    [
      'selector not matching the template',
      'apps',
      'deployments',
      deployment('mismatch', { selector: { matchLabels: { app: 'other' } } }),
      'spec.template.metadata.labels',
      /^Invalid value: map\[string\]string\{"app":"mismatch"\}: `selector` does not match template `labels`$/,
    ],
    [
      'selector expression not matching',
      'apps',
      'replicasets',
      replicaSet('mismatch-expr', { selector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['mismatch-expr'] }] } }),
      'spec.template.metadata.labels',
      /`selector` does not match template `labels`/,
    ],
    [
      'empty selector',
      'apps',
      'deployments',
      deployment('emptysel', { selector: {} }),
      'spec.selector',
      /^Invalid value: v1\.LabelSelector\{MatchLabels:map\[string\]string\(nil\), MatchExpressions:\[\]v1\.LabelSelectorRequirement\(nil\)\}: empty selector is invalid for deployment$/,
    ],
    [
      'bad selector operator',
      'apps',
      'deployments',
      deployment('badop', { selector: { matchLabels: { app: 'badop' }, matchExpressions: [{ key: 'x', operator: 'Has' }] } }),
      'spec.selector.matchExpressions[0].operator',
      /^Invalid value: "Has": not a valid selector operator$/,
    ],
    [
      'deployment restartPolicy Never',
      'apps',
      'deployments',
      deployment('rp', { template: { metadata: { labels: { app: 'rp' } }, spec: { ...podSpec(), restartPolicy: 'Never' } } }),
      'spec.template.spec.restartPolicy',
      /^Unsupported value: "Never": supported values: "Always"$/,
    ],
    [
      'replicaset restartPolicy OnFailure',
      'apps',
      'replicasets',
      replicaSet('rp', { template: { metadata: { labels: { app: 'rp' } }, spec: { ...podSpec(), restartPolicy: 'OnFailure' } } }),
      'spec.template.spec.restartPolicy',
      /^Unsupported value: "OnFailure": supported values: "Always"$/,
    ],
    [
      'daemonset restartPolicy Never',
      'apps',
      'daemonsets',
      daemonSet('rp', { template: { metadata: { labels: { app: 'rp' } }, spec: { ...podSpec(), restartPolicy: 'Never' } } }),
      'spec.template.spec.restartPolicy',
      /^Unsupported value: "Never": supported values: "Always"$/,
    ],
    [
      'job without restartPolicy (defaulted Always)',
      'batch',
      'jobs',
      job('rp', { template: { spec: podSpec() } }),
      'spec.template.spec.restartPolicy',
      /^Required value: valid values: "OnFailure", "Never"$/,
    ],
    [
      'job restartPolicy Always',
      'batch',
      'jobs',
      job('rp2', { template: { spec: { ...podSpec(), restartPolicy: 'Always' } } }),
      'spec.template.spec.restartPolicy',
      /^Required value: valid values: "OnFailure", "Never"$/,
    ],
    [
      'cronjob job template restartPolicy',
      'batch',
      'cronjobs',
      cronJob('rp', { jobTemplate: { spec: { template: { spec: podSpec() } } } }),
      'spec.jobTemplate.spec.template.spec.restartPolicy',
      /^Required value: valid values: "OnFailure", "Never"$/,
    ],
    [
      'template without containers',
      'apps',
      'deployments',
      deployment('nocontainers', { template: { metadata: { labels: { app: 'nocontainers' } }, spec: {} } }),
      'spec.template.spec.containers',
      /^Required value$/,
    ],
    [
      'maxSurge and maxUnavailable both 0',
      'apps',
      'deployments',
      deployment('zero', { strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 0 } } }),
      'spec.strategy.rollingUpdate.maxUnavailable',
      /^Invalid value: intstr\.IntOrString\{Type:0, IntVal:0, StrVal:""\}: may not be 0 when `maxSurge` is 0$/,
    ],
    [
      'maxSurge 0% and maxUnavailable 0',
      'apps',
      'deployments',
      deployment('zero-pct', { strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '0%', maxUnavailable: '0%' } } }),
      'spec.strategy.rollingUpdate.maxUnavailable',
      /^Invalid value: intstr\.IntOrString\{Type:1, IntVal:0, StrVal:"0%"\}: may not be 0 when `maxSurge` is 0$/,
    ],
    [
      'maxUnavailable over 100%',
      'apps',
      'deployments',
      deployment('over', { strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '110%' } } }),
      'spec.strategy.rollingUpdate.maxUnavailable',
      /must not be greater than 100%$/,
    ],
    [
      'maxSurge not a percentage',
      'apps',
      'deployments',
      deployment('notpct', { strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 'ten' } } }),
      'spec.strategy.rollingUpdate.maxSurge',
      /a valid percent string must be a numeric string followed by an ending '%'/,
    ],
    [
      'daemonset maxSurge and maxUnavailable both 0',
      'apps',
      'daemonsets',
      daemonSet('zero', { updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 0 } } }),
      'spec.updateStrategy.rollingUpdate.maxUnavailable',
      /^Required value: cannot be 0 when maxSurge is 0$/,
    ],
    [
      'daemonset maxSurge and maxUnavailable both set',
      'apps',
      'daemonsets',
      daemonSet('both', { updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } } }),
      'spec.updateStrategy.rollingUpdate.maxSurge',
      /may not be set when maxUnavailable is non-zero$/,
    ],
    ['negative deployment replicas', 'apps', 'deployments', deployment('neg', { replicas: -1 }), 'spec.replicas', /^Invalid value: -1: must be greater than or equal to 0$/],
    ['negative replicaset replicas', 'apps', 'replicasets', replicaSet('neg', { replicas: -2 }), 'spec.replicas', /^Invalid value: -2: must be greater than or equal to 0$/],
    [
      'unknown strategy type',
      'apps',
      'deployments',
      deployment('strat', { strategy: { type: 'BlueGreen' } }),
      'spec.strategy.type',
      /^Unsupported value: "BlueGreen": supported values: "Recreate", "RollingUpdate"$/,
    ],
    ['negative job parallelism', 'batch', 'jobs', job('negpar', { parallelism: -1 }), 'spec.parallelism', /^Invalid value: -1: must be greater than or equal to 0$/],
    ['negative job backoffLimit', 'batch', 'jobs', job('negbo', { backoffLimit: -1 }), 'spec.backoffLimit', /^Invalid value: -1: must be greater than or equal to 0$/],
    [
      'job completionMode',
      'batch',
      'jobs',
      job('mode', { completionMode: 'Sometimes' }),
      'spec.completionMode',
      /^Unsupported value: "Sometimes": supported values: "NonIndexed", "Indexed"$/,
    ],
    [
      'job with a label conflicting with the generated one',
      'batch',
      'jobs',
      job('conflict', { template: { metadata: { labels: { 'job-name': 'other' } }, spec: { ...podSpec(), restartPolicy: 'Never' } } }),
      'spec.template.metadata.labels[job-name]',
      /must be 'conflict'$/,
    ],
    ['cronjob without schedule', 'batch', 'cronjobs', cronJob('nosched', { schedule: '' }), 'spec.schedule', /^Required value$/],
    [
      'cronjob schedule with one field',
      'batch',
      'cronjobs',
      cronJob('one', { schedule: 'foo' }),
      'spec.schedule',
      /^Invalid value: "foo": expected exactly 5 fields, found 1: \[foo\]$/,
    ],
    ['cronjob schedule with six fields', 'batch', 'cronjobs', cronJob('six', { schedule: '0 * * * * *' }), 'spec.schedule', /expected exactly 5 fields, found 6/],
    ['cronjob minute out of range', 'batch', 'cronjobs', cronJob('range', { schedule: '61 * * * *' }), 'spec.schedule', /^Invalid value: "61 \* \* \* \*": /],
    [
      'cronjob TZ in schedule',
      'batch',
      'cronjobs',
      cronJob('tz', { schedule: 'TZ=UTC 0 * * * *' }),
      'spec.schedule',
      /cannot use TZ or CRON_TZ in schedule, use timeZone field instead$/,
    ],
    ['cronjob unknown time zone', 'batch', 'cronjobs', cronJob('zone', { timeZone: 'Mars/Olympus' }), 'spec.timeZone', /unknown time zone Mars\/Olympus$/],
    [
      'cronjob concurrencyPolicy',
      'batch',
      'cronjobs',
      cronJob('conc', { concurrencyPolicy: 'Sometimes' }),
      'spec.concurrencyPolicy',
      /^Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"$/,
    ],
    ['cronjob name over 52 characters', 'batch', 'cronjobs', cronJob('c'.repeat(53)), 'metadata.name', /must be no more than 52 characters$/],
    ['deployment name not a DNS subdomain', 'apps', 'deployments', deployment('Web_1'), 'metadata.name', /^Invalid value: "Web_1": a lowercase RFC 1123 subdomain/],
    [
      'template label value invalid',
      'apps',
      'deployments',
      deployment('badlabel', {
        selector: { matchLabels: { app: 'badlabel' } },
        template: { metadata: { labels: { app: 'badlabel', v: 'a b' } }, spec: podSpec() },
      }),
      'spec.template.labels',
      /a valid label must be an empty string/,
    ],
  ];
  for (const [what, group, resource, body, field, message] of cases) {
    test(what, async () => {
      await refused(group, resource, body, field, message);
    });
  }

  test('the Status names the kind and object, as kubectl prints it', async () => {
    const st = await refused('apps', 'deployments', deployment('neg2', { replicas: -1 }), 'spec.replicas', /must be greater than or equal to 0/);
    assert.equal(st.details.kind, 'Deployment');
    assert.equal(st.details.group, 'apps');
    assert.equal(st.details.name, 'neg2');
    assert.match(st.message, /^Deployment\.apps "neg2" is invalid: /);
  });

  test('a spec that is not an object is a decode error (400), as for the Go struct', async () => {
    const res = await send('POST', path('apps', 'deployments'), { ...deployment('numspec'), spec: 5 });
    assert.equal(res.status, 400, res.text);
    assert.match(res.json().message, /cannot unmarshal number into Go struct field Deployment\.spec of type v1\.DeploymentSpec/);
  });
});

describe('immutable fields on update', () => {
  test('a Deployment selector is immutable (PUT and merge patch), with the Go rendering of the new selector', async () => {
    await create('apps', 'deployments', deployment('immut'));
    const res = await send('PATCH', path('apps', 'deployments', 'immut'), { spec: { selector: { matchLabels: { app: 'immut', v: '2' } } } }, 'application/merge-patch+json');
    assert.equal(res.status, 422, res.text);
    const causes = res.json().details.causes;
    assert.ok(
      causes.some(
        (c: Obj) =>
          c.field === 'spec.selector' &&
          c.message ===
            'Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"immut", "v":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable',
      ),
      JSON.stringify(causes),
    );
    // The same selector written differently (an empty matchExpressions) is not a change.
    const { after } = await change(path('apps', 'deployments', 'immut'), (o) => {
      o.spec.selector.matchExpressions = [];
      o.spec.replicas = 2;
    });
    assert.equal(after.spec.replicas, 2);
  });

  test('ReplicaSet and DaemonSet selectors are immutable', async () => {
    for (const [resource, body] of [
      ['replicasets', replicaSet('immut-rs')],
      ['daemonsets', daemonSet('immut-ds')],
    ] as const) {
      await create('apps', resource, body);
      const res = await send(
        'PATCH',
        path('apps', resource, body.metadata.name),
        { spec: { selector: { matchLabels: null, matchExpressions: [{ key: 'app', operator: 'Exists' }] } } },
        'application/merge-patch+json',
      );
      assert.equal(res.status, 422, res.text);
      assert.match(
        res.text,
        /spec\.selector: Invalid value: v1\.LabelSelector\{MatchLabels:map\[string\]string\(nil\), MatchExpressions:\[\]v1\.LabelSelectorRequirement\{v1\.LabelSelectorRequirement\{Key:\\"app\\", Operator:\\"Exists\\", Values:\[\]string\(nil\)\}\}\}: field is immutable/,
      );
    }
  });

  test('a Job selector, completions and template are immutable; a suspended job that never ran may change its scheduling', async () => {
    await create('batch', 'jobs', job('immut-job', { completions: 2 }));
    const p = path('batch', 'jobs', 'immut-job');
    const completions = await send('PATCH', p, { spec: { completions: 3 } }, 'application/merge-patch+json');
    assert.equal(completions.status, 422, completions.text);
    assert.match(completions.text, /spec\.completions: Invalid value: 3: field is immutable/);
    const image = await send('PATCH', p, { spec: { template: { spec: { containers: [{ name: 'app', image: 'nginx:1.26' }] } } } }, 'application/strategic-merge-patch+json');
    assert.equal(image.status, 422, image.text);
    assert.match(image.text, /spec\.template: Invalid value: .*: field is immutable/);
    const sel = await send('PATCH', p, { spec: { selector: { matchLabels: { x: 'y' } } } }, 'application/merge-patch+json');
    assert.equal(sel.status, 422, sel.text);
    assert.match(sel.text, /spec\.selector: Invalid value: v1\.LabelSelector.*field is immutable/);
    // Mutable: parallelism; and for a suspended, never started job, the template's node selector.
    await ok(send('PATCH', p, { spec: { parallelism: 2 } }, 'application/merge-patch+json'));
    await create('batch', 'jobs', job('suspended', { suspend: true }));
    const moved = await ok(send('PATCH', path('batch', 'jobs', 'suspended'), { spec: { template: { spec: { nodeSelector: { zone: 'b' } } } } }, 'application/merge-patch+json'));
    assert.deepEqual(moved.spec.template.spec.nodeSelector, { zone: 'b' });
  });
});

describe('generation', () => {
  test('bumps on spec changes only; a Deployment also on annotation changes; status writes never', async () => {
    await create('apps', 'deployments', deployment('gen'));
    const p = path('apps', 'deployments', 'gen');
    const step = async (edit: (o: Obj) => void, sub = ''): Promise<number> => {
      const { before, after } = await change(p, edit, sub);
      return after.metadata.generation - before.metadata.generation;
    };
    assert.equal(await step((o) => (o.metadata.labels = { team: 'a' })), 0, 'labels');
    assert.equal(await step((o) => (o.status = { observedGeneration: 1, replicas: 3 }), 'status'), 0, 'status');
    assert.equal(await step((o) => (o.spec.replicas = 4)), 1, 'replicas');
    assert.equal(await step((o) => (o.spec.template.spec.containers[0].image = 'nginx:1.26')), 1, 'image');
    assert.equal(await step((o) => (o.metadata.annotations = { note: 'x' })), 1, 'annotations of a Deployment');
    assert.equal(await step(() => {}), 0, 'no change');
    // The controller writes deployment.kubernetes.io/revision through status: kept, no bump.
    const { after } = await change(p, (o) => (o.metadata.annotations = { ...o.metadata.annotations, 'deployment.kubernetes.io/revision': '1' }), 'status');
    assert.equal(after.metadata.annotations['deployment.kubernetes.io/revision'], '1');
    assert.equal((await ok(send('GET', p))).metadata.annotations['deployment.kubernetes.io/revision'], '1');
  });

  test('a ReplicaSet does not bump on annotations, and its status writes keep metadata', async () => {
    await create('apps', 'replicasets', replicaSet('gen-rs'));
    const p = path('apps', 'replicasets', 'gen-rs');
    const a = await change(p, (o) => (o.metadata.annotations = { note: 'x' }));
    assert.equal(a.after.metadata.generation, a.before.metadata.generation);
    const s = await change(p, (o) => (o.metadata.annotations = { note: 'y' }), 'status');
    assert.equal(s.after.metadata.annotations.note, 'x');
  });
});

describe('scale subresource (autoscaling/v1 Scale)', () => {
  const apps = () => cp.kc.makeApiClient(k8s.AppsV1Api);

  test('GET: spec.replicas, status.selector as a label-selector string, the object identity', async () => {
    const body = deployment('scaled', { replicas: 3 });
    body.spec.selector = { matchLabels: { app: 'scaled', tier: 'web' }, matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['prod', 'dev'] }] };
    body.spec.template.metadata.labels = { app: 'scaled', tier: 'web', env: 'test' };
    const d = await create('apps', 'deployments', body);
    const s = await ok(send('GET', path('apps', 'deployments', 'scaled', 'scale')));
    assert.equal(s.kind, 'Scale');
    assert.equal(s.apiVersion, 'autoscaling/v1');
    assert.equal(s.metadata.name, 'scaled');
    assert.equal(s.metadata.namespace, NS);
    assert.equal(s.metadata.uid, d.metadata.uid);
    assert.equal(s.spec.replicas, 3);
    assert.equal(s.status.selector, 'app=scaled,env notin (dev,prod),tier=web');
    assert.equal(typeof s.status.replicas, 'number');
    const viaClient = await apps().readNamespacedDeploymentScale({ name: 'scaled', namespace: NS });
    assert.equal(viaClient.spec?.replicas, 3);
  });

  test('PUT and PATCH (merge, JSON, strategic) write spec.replicas of the parent; generation bumps', async () => {
    await create('apps', 'deployments', deployment('scale-w', { replicas: 1 }));
    const p = path('apps', 'deployments', 'scale-w');
    const replicas = async () => (await ok(send('GET', p))).spec.replicas;
    const before = (await ok(send('GET', p))).metadata.generation;
    const put = await ok(send('PUT', `${p}/scale`, { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'scale-w' }, spec: { replicas: 4 } }));
    assert.equal(put.spec.replicas, 4);
    assert.equal(await replicas(), 4);
    assert.equal((await ok(send('GET', p))).metadata.generation, before + 1);
    await ok(send('PATCH', `${p}/scale`, { spec: { replicas: 5 } }, 'application/merge-patch+json'));
    assert.equal(await replicas(), 5);
    await ok(send('PATCH', `${p}/scale`, [{ op: 'replace', path: '/spec/replicas', value: 6 }], 'application/json-patch+json'));
    assert.equal(await replicas(), 6);
    await ok(send('PATCH', `${p}/scale`, { spec: { replicas: 0 } }, 'application/strategic-merge-patch+json'));
    assert.equal(await replicas(), 0);
    // Scaled to 0 the Scale has no spec.replicas (omitempty); a PATCH from there still works.
    assert.deepEqual((await ok(send('GET', `${p}/scale`))).spec, {});
    await ok(send('PATCH', `${p}/scale`, [{ op: 'add', path: '/spec/replicas', value: 2 }], 'application/json-patch+json'));
    assert.equal(await replicas(), 2);
  });

  test('ReplicaSets scale too; client-node replace', async () => {
    await create('apps', 'replicasets', replicaSet('scale-rs', { replicas: 2 }));
    const cur = await apps().readNamespacedReplicaSetScale({ name: 'scale-rs', namespace: NS });
    const res = await apps().replaceNamespacedReplicaSetScale({ name: 'scale-rs', namespace: NS, body: { ...cur, spec: { replicas: 9 } } });
    assert.equal(res.spec?.replicas, 9);
    assert.equal((await ok(send('GET', path('apps', 'replicasets', 'scale-rs')))).spec.replicas, 9);
  });

  test('refusals: stale resourceVersion 409, negative 422, not a Scale 400, no scale for daemonsets or missing objects 404', async () => {
    const d = await create('apps', 'deployments', deployment('scale-bad'));
    const p = path('apps', 'deployments', 'scale-bad', 'scale');
    const stale = await send('PUT', p, { kind: 'Scale', apiVersion: 'autoscaling/v1', metadata: { name: 'scale-bad', resourceVersion: '1' }, spec: { replicas: 2 } });
    assert.equal(stale.status, 409, stale.text);
    assert.equal(stale.json().reason, 'Conflict');
    const current = await send('PUT', p, {
      kind: 'Scale',
      apiVersion: 'autoscaling/v1',
      metadata: { name: 'scale-bad', resourceVersion: d.metadata.resourceVersion },
      spec: { replicas: 2 },
    });
    assert.equal(current.status, 200, current.text);
    const neg = await send('PATCH', p, { spec: { replicas: -1 } }, 'application/merge-patch+json');
    assert.equal(neg.status, 422, neg.text);
    assert.equal(neg.json().message, 'Scale.autoscaling "scale-bad" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0');
    const wrongKind = await send('PUT', p, { kind: 'Deployment', apiVersion: 'apps/v1', metadata: { name: 'scale-bad' }, spec: { replicas: 2 } });
    assert.equal(wrongKind.status, 400, wrongKind.text);
    assert.equal((await send('GET', path('apps', 'deployments', 'nope', 'scale'))).status, 404);
    await create('apps', 'daemonsets', daemonSet('no-scale'));
    assert.equal((await send('GET', path('apps', 'daemonsets', 'no-scale', 'scale'))).status, 404);
    const st = await expectStatus(apps().readNamespacedDeploymentScale({ name: 'nope', namespace: NS }));
    assert.equal(st.code, 404);
  });

  test('discovery lists deployments/scale and replicasets/scale as autoscaling/v1 Scale', async () => {
    const list = await ok(send('GET', '/apis/apps/v1'));
    for (const name of ['deployments/scale', 'replicasets/scale']) {
      const r = list.resources.find((x: Obj) => x.name === name);
      assert.ok(r, `${name} not in discovery`);
      assert.equal(r.group, 'autoscaling');
      assert.equal(r.version, 'v1');
      assert.equal(r.kind, 'Scale');
      assert.deepEqual(r.verbs, ['get', 'patch', 'update']);
    }
    assert.ok(!list.resources.some((x: Obj) => x.name === 'daemonsets/scale'));
  });

  test('the Scale of an object (unit): status.replicas, omitted spec.replicas at 0, selector strings', () => {
    const s = scaleOf({ metadata: { name: 'x', namespace: 'n', resourceVersion: '7' }, spec: { replicas: 0, selector: { matchLabels: { a: '1' } } }, status: { replicas: 4 } });
    assert.deepEqual(s, {
      kind: 'Scale',
      apiVersion: 'autoscaling/v1',
      metadata: { name: 'x', namespace: 'n', resourceVersion: '7' },
      spec: {},
      status: { replicas: 4, selector: 'a=1' },
    });
    assert.equal(
      selectorString({
        matchLabels: { z: '1' },
        matchExpressions: [
          { key: 'b', operator: 'Exists' },
          { key: 'a', operator: 'DoesNotExist' },
          { key: 'c', operator: 'In', values: ['y', 'x', 'x'] },
        ],
      }),
      '!a,b,c in (x,y),z=1',
    );
    assert.equal(selectorString({}), '');
    assert.equal(selectorString(undefined), '');
  });
});

describe('strategic merge patch of pod templates', () => {
  test('containers, env, ports and volumes merge by key under spec.template.spec (kubectl set image / set env / rollout restart)', async () => {
    const body = deployment('smp', {});
    body.spec.template.spec = {
      containers: [
        { name: 'app', image: 'nginx:1.25', env: [{ name: 'A', value: '1' }], ports: [{ containerPort: 80 }] },
        { name: 'side', image: 'busybox' },
      ],
      volumes: [{ name: 'data', emptyDir: {} }],
    };
    await create('apps', 'deployments', body);
    const p = path('apps', 'deployments', 'smp');
    const smp = (patch: Obj) => ok(send('PATCH', p, patch, 'application/strategic-merge-patch+json'));
    let d = await smp({ spec: { template: { spec: { containers: [{ name: 'side', image: 'busybox:1.36' }] } } } });
    assert.deepEqual(
      d.spec.template.spec.containers.map((c: Obj) => [c.name, c.image]),
      [
        ['app', 'nginx:1.25'],
        ['side', 'busybox:1.36'],
      ],
    );
    d = await smp({ spec: { template: { spec: { containers: [{ name: 'app', env: [{ name: 'B', value: '2' }], ports: [{ containerPort: 443 }] }] } } } });
    const app = d.spec.template.spec.containers[0];
    assert.deepEqual(app.env, [
      { name: 'A', value: '1' },
      { name: 'B', value: '2' },
    ]);
    assert.deepEqual(
      app.ports.map((x: Obj) => x.containerPort),
      [80, 443],
    );
    assert.equal(app.imagePullPolicy, 'IfNotPresent', 'fields of the merged container are kept');
    d = await smp({ spec: { template: { spec: { volumes: [{ name: 'cache', emptyDir: {} }] } } } });
    assert.deepEqual(
      d.spec.template.spec.volumes.map((v: Obj) => v.name),
      ['data', 'cache'],
    );
    d = await smp({ spec: { template: { spec: { containers: [{ name: 'app', env: [{ name: 'A', $patch: 'delete' }] }] } } } });
    assert.deepEqual(d.spec.template.spec.containers[0].env, [{ name: 'B', value: '2' }]);
    const gen = d.metadata.generation;
    d = await smp({ spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': '2026-01-01T00:00:00Z' } } } } });
    assert.equal(d.spec.template.metadata.annotations['kubectl.kubernetes.io/restartedAt'], '2026-01-01T00:00:00Z');
    assert.deepEqual(d.spec.template.metadata.labels, { app: 'smp' });
    assert.equal(d.metadata.generation, gen + 1);
  });

  test("a CronJob's spec.jobTemplate.spec.template.spec merges containers by name", async () => {
    const body = cronJob('smp-cj');
    body.spec.jobTemplate.spec.template.spec.containers.push({ name: 'two', image: 'busybox' });
    await create('batch', 'cronjobs', body);
    const d = await ok(
      send(
        'PATCH',
        path('batch', 'cronjobs', 'smp-cj'),
        { spec: { jobTemplate: { spec: { template: { spec: { containers: [{ name: 'two', image: 'busybox:1.37' }] } } } } } },
        'application/strategic-merge-patch+json',
      ),
    );
    assert.deepEqual(
      d.spec.jobTemplate.spec.template.spec.containers.map((c: Obj) => [c.name, c.image]),
      [
        ['app', 'nginx:1.25'],
        ['two', 'busybox:1.37'],
      ],
    );
  });
});

describe('tables and OpenAPI', () => {
  const table = async (p: string): Promise<Obj> => {
    const res = await raw(cp.api, 'GET', p, undefined, { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
    assert.equal(res.status, 200, res.text);
    return res.json();
  };
  const columns = (t: Obj) => t.columnDefinitions.map((c: Obj) => (c.priority ? `(${c.name})` : c.name));

  test('deployments, replicasets, daemonsets, jobs, cronjobs, controllerrevisions: kube-apiserver columns and cells', async () => {
    await create('apps', 'deployments', deployment('tbl', { replicas: 2 }));
    let t = await table(path('apps', 'deployments', 'tbl'));
    assert.deepEqual(columns(t), ['Name', 'Ready', 'Up-to-date', 'Available', 'Age', '(Containers)', '(Images)', '(Selector)']);
    const [name, ready, , , , containers, images, selector] = t.rows[0].cells;
    assert.deepEqual([name, containers, images, selector], ['tbl', 'app', 'nginx:1.25', 'app=tbl']);
    assert.match(ready, /^\d+\/2$/);
    t = await table(path('apps', 'replicasets'));
    assert.deepEqual(columns(t), ['Name', 'Desired', 'Current', 'Ready', 'Age', '(Containers)', '(Images)', '(Selector)']);
    t = await table(path('apps', 'daemonsets'));
    assert.deepEqual(columns(t), ['Name', 'Desired', 'Current', 'Ready', 'Up-to-date', 'Available', 'Node Selector', 'Age', '(Containers)', '(Images)', '(Selector)']);
    await create(
      'apps',
      'daemonsets',
      daemonSet('tbl-ds', { template: { metadata: { labels: { app: 'tbl-ds' } }, spec: { ...podSpec(), nodeSelector: { zone: 'a', edge: 'true' } } } }),
    );
    assert.equal((await table(path('apps', 'daemonsets', 'tbl-ds'))).rows[0].cells[6], 'edge=true,zone=a');
    await create('batch', 'jobs', job('tbl-job', { completions: 3, parallelism: 2 }));
    t = await table(path('batch', 'jobs', 'tbl-job'));
    assert.deepEqual(columns(t), ['Name', 'Status', 'Completions', 'Duration', 'Age', '(Containers)', '(Images)', '(Selector)']);
    assert.deepEqual(t.rows[0].cells.slice(0, 3), ['tbl-job', 'Running', '0/3']);
    await create('batch', 'jobs', job('tbl-queue', { parallelism: 2 }));
    assert.equal((await table(path('batch', 'jobs', 'tbl-queue'))).rows[0].cells[2], '0/1 of 2');
    await create('batch', 'cronjobs', cronJob('tbl-cj', { timeZone: 'Europe/Paris' }));
    t = await table(path('batch', 'cronjobs', 'tbl-cj'));
    assert.deepEqual(columns(t), ['Name', 'Schedule', 'Timezone', 'Suspend', 'Active', 'Last Schedule', 'Age', '(Containers)', '(Images)', '(Selector)']);
    assert.deepEqual(t.rows[0].cells.slice(0, 6), ['tbl-cj', '*/5 * * * *', 'Europe/Paris', 'False', 0, '<none>']);
    await create('apps', 'controllerrevisions', {
      apiVersion: 'apps/v1',
      kind: 'ControllerRevision',
      metadata: { name: 'tbl-ds-abc', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'tbl-ds', uid: 'u1', controller: true }] },
      data: { spec: {} },
      revision: 3,
    });
    t = await table(path('apps', 'controllerrevisions', 'tbl-ds-abc'));
    assert.deepEqual(columns(t), ['Name', 'Controller', 'Revision', 'Age']);
    assert.deepEqual(t.rows[0].cells.slice(0, 3), ['tbl-ds-abc', 'daemonset.apps/tbl-ds', 3]);
    const scale = await table(path('apps', 'deployments', 'tbl', 'scale'));
    assert.deepEqual(columns(scale), ['Name', 'Desired', 'Available']);
    assert.deepEqual(scale.rows[0].cells.slice(0, 2), ['tbl', 2]);
  });

  test('OpenAPI v3 describes the workload fields kubectl explain asks for', async () => {
    const doc = await ok(send('GET', '/openapi/v3/apis/apps/v1'));
    const schemas = doc.components.schemas;
    const resolve = (s: Obj): Obj => (s.allOf ? schemas[s.allOf[0].$ref.split('/').pop()] : s);
    const deploy = schemas['io.k8s.api.apps.v1.Deployment'];
    assert.deepEqual(deploy['x-kubernetes-group-version-kind'], [{ group: 'apps', version: 'v1', kind: 'Deployment' }]);
    const spec = resolve(deploy.properties.spec);
    for (const f of ['replicas', 'selector', 'template', 'strategy']) assert.ok(spec.properties[f]?.description, `spec.${f}`);
    assert.equal(spec.properties.replicas.type, 'integer');
    assert.deepEqual(spec.required, ['selector', 'template']);
    assert.equal(resolve(spec.properties.template)['x-kubernetes-preserve-unknown-fields'], true);
    assert.ok(resolve(schemas['io.k8s.api.apps.v1.DaemonSet'].properties.spec).properties.updateStrategy);
    const batch = (await ok(send('GET', '/openapi/v3/apis/batch/v1'))).components.schemas;
    const jobSpec = batch[batch['io.k8s.api.batch.v1.Job'].properties.spec.allOf[0].$ref.split('/').pop()];
    for (const f of ['completions', 'parallelism', 'backoffLimit', 'template']) assert.ok(jobSpec.properties[f], `job spec.${f}`);
    const cjSpec = batch[batch['io.k8s.api.batch.v1.CronJob'].properties.spec.allOf[0].$ref.split('/').pop()];
    assert.equal(cjSpec.properties.schedule.type, 'string');
  });
});
