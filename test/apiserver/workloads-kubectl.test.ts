// The real kubectl v1.35 against the workload kinds of the local control plane: create,
// apply (client-side twice, server-side), get (the columns kube-apiserver prints, -o wide,
// `get all`), scale, set image / set env / rollout restart (strategic merge patches of the pod
// template), explain, and the refusals kubectl shows. Only the API's behaviour is asserted:
// whether workload controllers run beside it (adding ReplicaSets, pods, status) changes none
// of these outputs' asserted parts.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { useLocalControlPlane } from '../helpers/controlplane.js';
import { tempDir } from '../helpers/files.js';
import { KUBECTL_SKIP, kubectl, requireKubectl } from './helpers.js';
import { PROTOBUF_KINDS } from '../../apiserver/protobuf/index.js';

const cp = useLocalControlPlane('ledge-workloads-kubectl-');
const cache = tempDir('ledge-workloads-kubectl-cache-');
after(() => cache.cleanup());

const k = (args: string[], input?: string) => kubectl(requireKubectl(), cp.api.kubeconfigPath, args, { cacheDir: cache.path, ...(input !== undefined ? { input } : {}) });
async function ok(args: string[], input?: string): Promise<string> {
  const r = await k(args, input);
  assert.equal(r.code, 0, `kubectl ${args.join(' ')} failed: ${r.stderr}${r.stdout}`);
  return r.stdout;
}
async function fails(args: string[], input?: string): Promise<string> {
  const r = await k(args, input);
  assert.notEqual(r.code, 0, `kubectl ${args.join(' ')} should have failed: ${r.stdout}`);
  return r.stderr;
}
const jsonpath = (kind: string, name: string, expr: string) => ok(['get', kind, name, '-o', `jsonpath=${expr}`]);
const generation = async (kind: string, name: string) => Number(await jsonpath(kind, name, '{.metadata.generation}'));
/** The header line of a `kubectl get` table, columns separated by single spaces. */
const header = (out: string) =>
  (out.split('\n')[0] ?? '')
    .trim()
    .split(/\s{2,}/)
    .join(' ');

const WEB = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
`;
const OTHERS = `apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: cache}
spec:
  replicas: 2
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec:
      containers: [{name: redis, image: "redis:7"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  completions: 3
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: "perl:5.34", command: [perl, -e, "print 1"]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "*/10 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: tick, image: busybox}]
---
apiVersion: apps/v1
kind: ControllerRevision
metadata:
  name: agent-5d4f8
  ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: 00000000-0000-0000-0000-000000000001, controller: true}]
data: {spec: {template: {}}}
revision: 1
`;
const AGENT = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {node-role.kubernetes.io/edge: ""}
      containers: [{name: agent, image: "busybox:1.36"}]
`;

// kubectl's typed create commands send protobuf: they work once apiserver/protobuf decodes apps/v1.
const CREATE_SKIP = PROTOBUF_KINDS.includes('apps/v1/Deployment')
  ? undefined
  : 'kubectl create deployment sends application/vnd.kubernetes.protobuf, which apiserver/protobuf does not decode for apps/v1 yet';

describe('kubectl v1.35 and the workload kinds', { skip: KUBECTL_SKIP }, () => {
  test('kubectl create deployment: the defaults kubectl shows', { skip: CREATE_SKIP }, async () => {
    assert.match(await ok(['create', 'deployment', 'hello', '--image=nginx:1.25', '--replicas=2']), /deployment\.apps\/hello created/);
    assert.equal(
      await jsonpath('deploy', 'hello', '{.spec.replicas} {.spec.strategy.type} {.spec.strategy.rollingUpdate.maxSurge} {.spec.template.spec.restartPolicy}'),
      '2 RollingUpdate 25% Always',
    );
  });

  test('client-side apply: created, then unchanged (no write), then configured with a new generation', async () => {
    assert.match(await ok(['apply', '-f', '-'], WEB), /deployment\.apps\/web created/);
    assert.equal(await generation('deploy', 'web'), 1);
    // The server's defaults are not a difference to what was applied: kubectl sends no patch.
    assert.match(await ok(['apply', '-f', '-'], WEB), /deployment\.apps\/web unchanged/);
    assert.equal(await generation('deploy', 'web'), 1);
    assert.equal(await jsonpath('deploy', 'web', '{.spec.template.spec.containers[0].imagePullPolicy} {.spec.progressDeadlineSeconds}'), 'IfNotPresent 600');
    assert.match(await ok(['apply', '-f', '-'], WEB.replace('nginx:1.25', 'nginx:1.26')), /deployment\.apps\/web configured/);
    assert.equal(await jsonpath('deploy', 'web', '{.spec.template.spec.containers[0].image}'), 'nginx:1.26');
    assert.ok((await generation('deploy', 'web')) > 1, 'the template change bumps generation');
  });

  test('get: the columns kube-apiserver prints, with -o wide', async () => {
    assert.match(await ok(['apply', '-f', '-'], OTHERS), /replicaset\.apps\/cache created[\s\S]*job\.batch\/pi created[\s\S]*cronjob\.batch\/tick created/);
    assert.match(await ok(['apply', '-f', '-'], AGENT), /daemonset\.apps\/agent created/);
    const deploy = await ok(['get', 'deploy', 'web']);
    assert.equal(header(deploy), 'NAME READY UP-TO-DATE AVAILABLE AGE');
    assert.match(deploy, /^web\s+\d+\/3\s+\d+\s+\d+\s+\S+$/m);
    const wide = await ok(['get', 'deploy', 'web', '-o', 'wide']);
    assert.equal(header(wide), 'NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR');
    assert.match(wide, /^web\s+\d+\/3\s+\d+\s+\d+\s+\S+\s+web\s+nginx:1\.26\s+app=web$/m);
    const rs = await ok(['get', 'rs', 'cache', '-o', 'wide']);
    assert.equal(header(rs), 'NAME DESIRED CURRENT READY AGE CONTAINERS IMAGES SELECTOR');
    assert.match(rs, /^cache\s+2\s+\d+\s+\d+\s+\S+\s+redis\s+redis:7\s+app=cache$/m);
    const ds = await ok(['get', 'ds', 'agent']);
    assert.equal(header(ds), 'NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE');
    assert.match(ds, /^agent\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+node-role\.kubernetes\.io\/edge=\s+\S+$/m);
    const jobs = await ok(['get', 'jobs', 'pi']);
    assert.equal(header(jobs), 'NAME STATUS COMPLETIONS DURATION AGE');
    assert.match(jobs, /^pi\s+\w+\s+\d+\/3\s+/m);
    const cj = await ok(['get', 'cronjobs', 'tick']);
    assert.equal(header(cj), 'NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE');
    assert.match(cj, /^tick\s+\*\/10 \* \* \* \*\s+<none>\s+False\s+\d+\s+\S+\s+\S+$/m);
    const cr = await ok(['get', 'controllerrevisions', 'agent-5d4f8']);
    assert.equal(header(cr), 'NAME CONTROLLER REVISION AGE');
    assert.match(cr, /^agent-5d4f8\s+daemonset\.apps\/agent\s+1\s+\S+$/m);
  });

  test('get all lists the workload kinds of the "all" category', async () => {
    const all = await ok(['get', 'all']);
    for (const name of ['deployment.apps/web', 'replicaset.apps/cache', 'daemonset.apps/agent', 'job.batch/pi', 'cronjob.batch/tick']) {
      assert.match(all, new RegExp(`^${name.replace(/[./]/g, '\\$&')}\\s`, 'm'), `${name} in get all:\n${all}`);
    }
    assert.doesNotMatch(all, /controllerrevision/);
  });

  test('scale: the Scale subresource writes spec.replicas; --current-replicas is a precondition', async () => {
    assert.match(await ok(['scale', 'deploy/web', '--replicas=5']), /deployment\.apps\/web scaled/);
    assert.equal(await jsonpath('deploy', 'web', '{.spec.replicas}'), '5');
    const scale = await ok(['get', 'deploy', 'web', '--subresource=scale']);
    assert.equal(header(scale), 'NAME DESIRED AVAILABLE');
    assert.match(scale, /^web\s+5\s+\d+$/m);
    assert.match(await ok(['scale', 'rs/cache', '--current-replicas=2', '--replicas=1']), /replicaset\.apps\/cache scaled/);
    assert.match(await fails(['scale', 'rs/cache', '--current-replicas=7', '--replicas=3']), /Expected replicas to be 7, was 1/);
    assert.equal(await jsonpath('rs', 'cache', '{.spec.replicas}'), '1');
  });

  test('set image, set env, rollout restart: the pod template changes by merge key, generation bumps', async () => {
    const gen = await generation('deploy', 'web');
    assert.match(await ok(['set', 'image', 'deployment/web', 'web=nginx:1.27']), /deployment\.apps\/web image updated/);
    assert.equal(await jsonpath('deploy', 'web', '{.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}'), 'nginx:1.27 80');
    const afterImage = await generation('deploy', 'web');
    assert.ok(afterImage > gen, `generation ${afterImage} after set image, was ${gen}`);
    assert.match(await ok(['set', 'env', 'deployment/web', 'MODE=fast', 'LEVEL=3']), /env updated/);
    assert.match(await ok(['set', 'env', 'deployment/web', 'MODE=slow']), /env updated/);
    assert.equal(await jsonpath('deploy', 'web', '{.spec.template.spec.containers[0].env[*].name}={.spec.template.spec.containers[0].env[*].value}'), 'MODE LEVEL=slow 3');
    assert.match(await ok(['rollout', 'restart', 'deployment/web']), /deployment\.apps\/web restarted/);
    assert.match(await jsonpath('deploy', 'web', '{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}'), /^\d{4}-\d\d-\d\dT/);
    assert.equal(await jsonpath('deploy', 'web', '{.spec.template.metadata.labels.app}'), 'web');
    assert.match(await ok(['set', 'image', 'cronjob/tick', 'tick=busybox:1.37']), /cronjob\.batch\/tick image updated/);
    assert.equal(await jsonpath('cronjob', 'tick', '{.spec.jobTemplate.spec.template.spec.containers[0].image}'), 'busybox:1.37');
  });

  test('explain: the fields of the workload kinds', async () => {
    const replicas = await ok(['explain', 'deployment.spec.replicas']);
    assert.match(replicas, /^GROUP:\s+apps$/m);
    assert.match(replicas, /^FIELD: replicas <integer>$/m);
    assert.match(replicas, /Number of desired pods/);
    const spec = await ok(['explain', 'deployment.spec']);
    assert.match(spec, /^FIELD: spec <DeploymentSpec>$/m);
    assert.match(spec, /^\s+selector\s+<LabelSelector> -required-$/m);
    assert.match(spec, /^\s+template\s+<PodTemplateSpec> -required-$/m);
    assert.match(spec, /^\s+strategy\s+<DeploymentStrategy>$/m);
    assert.match(await ok(['explain', 'deployment.spec.strategy.rollingUpdate.maxSurge']), /^FIELD: maxSurge <IntOrString>$/m);
    assert.match(await ok(['explain', 'ds.spec.updateStrategy']), /^\s+rollingUpdate\s+<RollingUpdateDaemonSet>$/m);
    assert.match(await ok(['explain', 'jobs.spec.backoffLimit']), /Specifies the number of retries before marking this job failed/);
    assert.match(await ok(['explain', 'jobs.spec']), /^\s+completions\s+<integer>$[\s\S]*^\s+parallelism\s+<integer>$/m);
    assert.match(await ok(['explain', 'cronjobs.spec.schedule']), /^FIELD: schedule <string>$/m);
  });

  test('server-side apply: applied, re-applied without a change, then a change bumps generation', async () => {
    assert.match(await ok(['apply', '--server-side', '-f', '-'], AGENT), /daemonset\.apps\/agent serverside-applied/);
    const gen = await generation('ds', 'agent');
    assert.match(await ok(['apply', '--server-side', '-f', '-'], AGENT), /serverside-applied/);
    assert.equal(await generation('ds', 'agent'), gen);
    assert.match(await ok(['apply', '--server-side', '-f', '-'], AGENT.replace('busybox:1.36', 'busybox:1.37')), /serverside-applied/);
    assert.equal(await generation('ds', 'agent'), gen + 1);
    assert.equal(
      await jsonpath('ds', 'agent', '{.spec.template.spec.containers[0].image} {.spec.updateStrategy.rollingUpdate.maxUnavailable} {.spec.updateStrategy.rollingUpdate.maxSurge}'),
      'busybox:1.37 1 0',
    );
    assert.match(await ok(['apply', '--server-side', '-f', '-'], WEB.replace('name: web\n', 'name: web-ssa\n')), /deployment\.apps\/web-ssa serverside-applied/);
    assert.equal(await jsonpath('deploy', 'web-ssa', '{.spec.replicas} {.spec.revisionHistoryLimit}'), '3 10');
  });

  test('refusals as kubectl prints them: an immutable selector, a bad schedule, a Job restartPolicy', async () => {
    const immutable = await fails(['apply', '-f', '-'], WEB.replaceAll('{app: web}', '{app: web2}'));
    assert.match(immutable, /The Deployment "web" is invalid/);
    assert.match(
      immutable,
      /spec\.selector: Invalid value: v1\.LabelSelector\{MatchLabels:map\[string\]string\{"app":"web2"\}, MatchExpressions:\[\]v1\.LabelSelectorRequirement\(nil\)\}: field is immutable/,
    );
    const schedule = await fails(['create', '-f', '-'], OTHERS.split('---\n')[2]!.replace('tick', 'bad').replace('*/10 * * * *', 'every minute'));
    assert.match(schedule, /The CronJob "bad" is invalid: spec\.schedule: Invalid value: "every minute": expected exactly 5 fields, found 2: \[every minute\]/);
    const restart = await fails(['create', '-f', '-'], OTHERS.split('---\n')[1]!.replace('name: pi', 'name: pi2').replace('restartPolicy: Never', 'restartPolicy: Always'));
    assert.match(restart, /spec\.template\.spec\.restartPolicy: Required value: valid values: "OnFailure", "Never"/);
  });
});
