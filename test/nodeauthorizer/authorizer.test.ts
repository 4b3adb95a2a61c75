/**
 * The NodeAuthorizer's rules with fake lookups: each rule allows the node's own case and refuses
 * another node's; refusals are counted by kind, published, and logged once per node and kind per
 * window; unknown objects and unsupported operations are refused without counting as violations;
 * off means everything goes (and a loud warning).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { newMessage, type Message } from '../../shared/protocol/index.js';
import { ErrorCode } from '../../shared/errors/index.js';
import {
  createNodeAuthorizer,
  MIRROR_ANNOTATION,
  podFacts,
  sessionOf,
  type Decision,
  type NodeLookups,
  type PodFacts,
  type RefusedEvent,
} from '../../cloud/nodeauthorizer/index.js';
import { captureLog } from '../helpers/cloud.js';

const bound = (nodeName: string | undefined, extra: Partial<PodFacts> = {}): PodFacts => ({ nodeName, mirror: false, deleting: false, ...extra });

/** Node A and node B: pods, referenced configmaps/secrets and devices of each. */
const pods: Record<string, PodFacts> = {
  'default/a-pod': bound('node-a'),
  'default/b-pod': bound('node-b'),
  'default/unbound': bound(undefined),
  'default/a-mirror': bound('node-a', { mirror: true }),
  'default/b-mirror': bound('node-b', { mirror: true }),
};
const refs: Record<string, string> = {
  'configmap default/a-cm': 'node-a',
  'configmap default/b-cm': 'node-b',
  'secret default/a-secret': 'node-a',
  'secret default/b-secret': 'node-b',
};
const devices: Record<string, string | undefined> = { 'default/a-dev': 'node-a', 'default/b-dev': 'node-b', 'default/loose-dev': undefined };
const lookups: NodeLookups = {
  pod: (ns, name) => pods[`${ns}/${name}`],
  referencedBy: (node, type, ns, name) => refs[`${type} ${ns}/${name}`] === node,
  device: (ns, name) => (`${ns}/${name}` in devices ? { nodeName: devices[`${ns}/${name}`] } : undefined),
};

function rig(options: { enabled?: boolean; logWindowMs?: number } = {}, l: Partial<NodeLookups> = lookups) {
  const log = captureLog();
  const authz = createNodeAuthorizer(l, log.logger, options);
  return { authz, log };
}

const msg = (operation: string, resource: string, content: unknown = null): Message => newMessage({ source: 'edged', group: 'resource', operation, resource, content, sync: true });

function code(d: Decision): string | null {
  return d.allowed ? null : d.error.code;
}

const mirrorContent = (name: string, nodeName: string, mirror = true) => ({
  metadata: { name, namespace: 'default', ...(mirror ? { annotations: { [MIRROR_ANNOTATION]: 'hash' } } : {}) },
  spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }] },
});

describe('NodeAuthorizer rules: own allowed, another node’s refused (LEDGE_ERR_FORBIDDEN)', () => {
  const cases: { rule: string; own: Message; other: Message }[] = [
    { rule: 'node status', own: msg('update', 'default/nodestatus/node-a', {}), other: msg('update', 'default/nodestatus/node-b', {}) },
    { rule: 'node object', own: msg('patch', 'default/node/node-a', {}), other: msg('patch', 'default/node/node-b', {}) },
    { rule: 'lease', own: msg('update', 'kube-node-lease/lease/node-a', {}), other: msg('update', 'kube-node-lease/lease/node-b', {}) },
    { rule: 'pod status', own: msg('update', 'default/podstatus/a-pod', { phase: 'Running' }), other: msg('update', 'default/podstatus/b-pod', { phase: 'Failed' }) },
    {
      rule: 'mirror pod create',
      own: msg('insert', 'default/pod/a-static', mirrorContent('a-static', 'node-a')),
      other: msg('insert', 'default/pod/b-static', mirrorContent('b-static', 'node-b')),
    },
    { rule: 'mirror pod delete', own: msg('delete', 'default/pod/a-mirror'), other: msg('delete', 'default/pod/b-mirror') },
    { rule: 'query pod', own: msg('query', 'default/pod/a-pod'), other: msg('query', 'default/pod/b-pod') },
    { rule: 'query configmap', own: msg('query', 'default/configmap/a-cm'), other: msg('query', 'default/configmap/b-cm') },
    { rule: 'query secret', own: msg('query', 'default/secret/a-secret'), other: msg('query', 'default/secret/b-secret') },
    { rule: 'query node', own: msg('query', 'default/node/node-a'), other: msg('query', 'default/node/node-b') },
    {
      rule: 'event',
      own: msg('insert', 'default/event/e1', { involvedObject: { kind: 'Pod', namespace: 'default', name: 'a-pod' } }),
      other: msg('insert', 'default/event/e2', { involvedObject: { kind: 'Pod', namespace: 'default', name: 'b-pod' } }),
    },
  ];
  for (const c of cases) {
    test(c.rule, () => {
      const { authz } = rig();
      assert.equal(code(authz.authorize('node-a', c.own)), null, 'own: allowed');
      const d = authz.authorize('node-a', c.other);
      assert.equal(code(d), ErrorCode.Forbidden, "another node's: refused");
      assert.equal(d.allowed === false && d.violation, true);
      // The same message is the other node's own.
      assert.equal(code(authz.authorize('node-b', c.other)), null, 'allowed for the node it belongs to');
      const s = authz.stats();
      assert.equal(
        Object.values(s.refused).reduce((a, b) => a + b, 0),
        1,
        'one violation counted',
      );
      assert.equal(s.allowed, 2);
    });
  }

  test('a nodestatus without a name is the session’s own; the Node’s other records by name only', () => {
    const { authz } = rig();
    assert.equal(code(authz.authorize('node-a', msg('update', 'nodestatus', {}))), null);
    assert.equal(code(authz.authorize('node-a', msg('update', 'default/node', {}))), ErrorCode.Forbidden);
    assert.equal(code(authz.authorize('node-a', msg('update', 'kube-node-lease/lease', {}))), ErrorCode.Forbidden);
  });

  test('pod status of an unbound pod: refused; of a pod the cache does not hold: NotFound, not a violation', () => {
    const { authz, log } = rig();
    assert.equal(code(authz.authorize('node-a', msg('update', 'default/podstatus/unbound', {}))), ErrorCode.Forbidden);
    const d = authz.authorize('node-a', msg('update', 'default/podstatus/nope', {}));
    assert.equal(code(d), ErrorCode.NotFound);
    assert.equal(d.allowed === false && d.violation, false);
    const s = authz.stats();
    assert.equal(s.refused['pod-status'], 1);
    assert.equal(s.unknown, 1);
    assert.equal(log.lines.filter((l) => /refused/.test(String(l.msg))).length, 1, 'only the violation is logged');
  });

  test('mirror pods: only with the annotation, bound to itself, named as the resource, and not over a pod that is not its mirror', () => {
    const { authz } = rig();
    const refusedInsert = (resource: string, content: unknown) => code(authz.authorize('node-a', msg('insert', resource, content)));
    assert.equal(refusedInsert('default/pod/x', mirrorContent('x', 'node-a', false)), ErrorCode.Forbidden, 'a regular pod');
    assert.equal(refusedInsert('default/pod/x', mirrorContent('y', 'node-a')), ErrorCode.Forbidden, 'named otherwise than the resource');
    assert.equal(refusedInsert('other/pod/x', mirrorContent('x', 'node-a')), ErrorCode.Forbidden, 'another namespace than the resource');
    assert.equal(refusedInsert('default/pod/a-pod', mirrorContent('a-pod', 'node-a')), ErrorCode.Forbidden, 'over its own regular pod');
    assert.equal(refusedInsert('default/pod/b-mirror', mirrorContent('b-mirror', 'node-a')), ErrorCode.Forbidden, "over node-b's mirror pod");
    assert.equal(refusedInsert('default/pod/a-mirror', mirrorContent('a-mirror', 'node-a')), null, 'its own mirror again (a resend)');
    assert.equal(code(authz.authorize('node-a', msg('delete', 'default/pod/a-pod'))), ErrorCode.Forbidden, 'deleting its regular pod');
    assert.equal(code(authz.authorize('node-a', msg('delete', 'default/pod/not-cached'))), null, 'not cached: the module reads it and checks again');
    // The module's second check, with the object it read.
    const readBack = authz.authorize('node-a', msg('delete', 'default/pod/not-cached'), { pod: () => bound('node-b', { mirror: true }) });
    assert.equal(code(readBack), ErrorCode.Forbidden, 're-checked against the pod as read');
    assert.equal(code(authz.authorize('node-a', msg('patch', 'default/pod/a-mirror', {}))), ErrorCode.Unsupported);
  });

  test('queries: refused whether or not the object exists; collections and other types unsupported', () => {
    const { authz } = rig();
    const q = (r: string) => code(authz.authorize('node-a', msg('query', r)));
    assert.equal(q('default/pod/nope'), ErrorCode.Forbidden, 'a pod that does not exist');
    assert.equal(q('default/pod/unbound'), ErrorCode.Forbidden);
    assert.equal(q('default/secret/never-sent'), ErrorCode.Forbidden, 'a secret it was never sent');
    assert.equal(q('default/configmap/'), ErrorCode.Unsupported);
    assert.equal(q('default/serviceaccount/default'), ErrorCode.Unsupported);
    const d = authz.authorize('node-a', msg('query', 'default/configmap/free-cm'));
    assert.ok(!d.allowed && /node node-a may not read configmap default\/free-cm: it is not in the node's desired set/.test(d.refused));
  });

  test('device reports: each on its own; another node’s and unbound devices refused, unknown ones left out as unknown, the rest kept', () => {
    const { authz } = rig();
    const report = (name: string) => ({ namespace: 'default', name, twins: [{ propertyName: 't', reported: { value: '1' } }] });
    const batch = { reports: [report('a-dev'), report('b-dev'), report('loose-dev'), report('ghost'), 42] };
    const d = authz.authorize('node-a', newMessage({ source: 'twin', group: 'twin', operation: 'update', resource: 'devicestatus', content: batch }));
    assert.equal(d.allowed, true);
    assert.ok(d.allowed);
    assert.deepEqual(
      (d.content as typeof batch).reports.map((r) => (typeof r === 'object' ? r.name : r)),
      ['a-dev', 42],
      'its own device, and what names no device (malformed: the module’s to refuse)',
    );
    assert.deepEqual(
      d.refusedEntries?.map((e) => [e.subject, e.error.code, e.violation]),
      [
        ['default/b-dev', ErrorCode.Forbidden, true],
        ['default/loose-dev', ErrorCode.Forbidden, true],
        ['default/ghost', ErrorCode.DeviceUnknown, false],
      ],
    );
    assert.equal(authz.stats().refused['device-status'], 2);
    assert.equal(authz.stats().unknown, 1);
    // All its own: the message as sent.
    const own = authz.authorize('node-b', newMessage({ source: 'twin', group: 'twin', operation: 'update', resource: 'devicestatus', content: { reports: [report('b-dev')] } }));
    assert.deepEqual(own, { allowed: true });
  });

  test('sync records and events about other nodes are never written; unknown operations and types are unsupported', () => {
    const { authz } = rig();
    assert.equal(code(authz.authorize('node-a', msg('update', 'default/objectsync/node-a.uid-1', {}))), ErrorCode.Forbidden);
    assert.equal(code(authz.authorize('node-a', msg('update', 'default/objectsync/node-b.uid-1', {}))), ErrorCode.Forbidden);
    assert.equal(code(authz.authorize('node-a', msg('delete', 'default/clusterobjectsync/node-b.uid-2'))), ErrorCode.Forbidden);
    assert.equal(code(authz.authorize('node-a', msg('insert', 'default/event/e', { involvedObject: { kind: 'Node', name: 'node-a' } }))), null);
    assert.equal(code(authz.authorize('node-a', msg('insert', 'default/event/e', { involvedObject: { kind: 'Node', name: 'node-b' } }))), ErrorCode.Forbidden);
    assert.equal(code(authz.authorize('node-a', msg('insert', 'default/event/e', { involvedObject: { kind: 'Secret', name: 'x' } }))), ErrorCode.Forbidden);
    assert.equal(code(authz.authorize('node-a', msg('response', 'default/nodestatus/node-a', {}))), ErrorCode.Unsupported);
    assert.equal(code(authz.authorize('node-a', msg('update', 'default/service/svc', {}))), ErrorCode.Unsupported);
    assert.equal(code(authz.authorize('node-a', msg('delete', 'default/nodestatus/node-a'))), ErrorCode.Unsupported);
    const s = authz.stats();
    assert.equal(s.refused['sync-record'], 3);
    assert.equal(s.refused.event, 2);
    assert.equal(s.unsupported, 3);
  });

  test('missing lookups know nothing: what they would answer is refused', () => {
    const { authz } = rig({}, {});
    assert.equal(code(authz.authorize('node-a', msg('update', 'default/podstatus/a-pod', {}))), ErrorCode.NotFound);
    assert.equal(code(authz.authorize('node-a', msg('query', 'default/secret/a-secret'))), ErrorCode.Forbidden);
    assert.equal(code(authz.authorize('node-a', msg('update', 'default/nodestatus/node-a', {}))), null, 'its own Node needs no lookup');
  });
});

describe('NodeAuthorizer accounting', () => {
  test('violations: logged with the node and the attempt once per node and kind per window, then a count; published on the channel', async () => {
    const { authz, log } = rig({ logWindowMs: 60_000 });
    const events: RefusedEvent[] = [];
    const onEvent = (e: unknown) => void events.push(e as RefusedEvent);
    subscribe('ledge:nodeauthorizer:refused', onEvent);
    try {
      for (let i = 0; i < 5; i++) authz.authorize('node-a', msg('update', 'default/podstatus/b-pod', {}));
      authz.authorize('node-a', msg('update', 'default/nodestatus/node-b', {}));
      authz.authorize('node-c', msg('update', 'default/podstatus/b-pod', {}));
    } finally {
      unsubscribe('ledge:nodeauthorizer:refused', onEvent);
    }
    const refusedLines = () => log.lines.filter((l) => /refused/.test(String(l.msg)));
    assert.deepEqual(
      refusedLines().map((l) => [l.node, l.kind, l.code]),
      [
        ['node-a', 'pod-status', ErrorCode.Forbidden],
        ['node-a', 'node-status', ErrorCode.Forbidden],
        ['node-c', 'pod-status', ErrorCode.Forbidden],
      ],
      'one line per node and kind',
    );
    assert.match(String(refusedLines()[0]!.msg), /^node node-a refused: update default\/podstatus\/b-pod: node node-a may not write the status of pod default\/b-pod/);
    assert.equal(events.length, 7);
    assert.deepEqual(events[0], {
      node: 'node-a',
      kind: 'pod-status',
      attempt: 'update default/podstatus/b-pod',
      refused: 'node node-a may not write the status of pod default/b-pod: it is not bound to node node-a',
    });
    assert.equal(authz.stats().refused['pod-status'], 6);
    assert.equal(authz.stats().refused['node-status'], 1);
    // The window's end (here: close) writes the count of what it did not log.
    authz.close();
    const summary = log.lines.find((l) => /node node-a: 4 more pod-status requests refused/.test(String(l.msg)));
    assert.ok(summary, JSON.stringify(log.lines.map((l) => l.msg)));
    assert.equal(summary.suppressed, 4);
  });

  test('off: everything is allowed, and construction says so loudly', () => {
    const { authz, log } = rig({ enabled: false });
    assert.ok(log.lines.some((l) => l.level === 'warn' && /NODE AUTHORIZATION IS OFF/.test(String(l.msg)) && l.code === ErrorCode.Insecure));
    assert.equal(code(authz.authorize('node-a', msg('update', 'default/podstatus/b-pod', {}))), null);
    assert.equal(code(authz.authorize('node-a', msg('query', 'default/secret/b-secret'))), null);
    assert.equal(authz.stats().enabled, false);
    assert.equal(authz.stats().allowed, 2);
    // On (the default) logs no such line.
    assert.equal(rig().log.lines.length, 0);
  });

  test('bad options throw TypeError at construction', () => {
    assert.throws(() => rig({ logWindowMs: 0 }), TypeError);
    assert.throws(() => rig({ enabled: 'no' as unknown as boolean }), TypeError);
  });
});

describe('helpers', () => {
  test('sessionOf: the node CloudHub routed the message for, and the resource as the node sent it', () => {
    const m = msg('update', 'node/node-a/default/podstatus/x', {});
    const s = sessionOf(m);
    assert.equal(s?.node, 'node-a');
    assert.equal(s?.message.route.resource, 'default/podstatus/x');
    assert.equal(s?.message.header.id, m.header.id);
    // A node naming another node inside its resource is still its own session's message.
    assert.equal(sessionOf(msg('update', 'node/node-a/node/node-b/default/podstatus/x', {}))?.node, 'node-a');
    assert.equal(sessionOf(msg('update', 'default/podstatus/x', {})), undefined);
  });

  test('podFacts', () => {
    assert.deepEqual(podFacts(mirrorContent('x', 'n')), { nodeName: 'n', mirror: true, deleting: false });
    assert.deepEqual(podFacts({ metadata: { deletionTimestamp: '2030-01-01T00:00:00Z' }, spec: { nodeName: '' } }), { nodeName: undefined, mirror: false, deleting: true });
    assert.deepEqual(podFacts(null), { nodeName: undefined, mirror: false, deleting: false });
  });
});
