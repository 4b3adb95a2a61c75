/**
 * combineDesiredSources: the SyncController's one DesiredSource made of the EdgeController's
 * and the DeviceController's sets — the union, `nodeExists` from the primary alone, `released`
 * told to every source, and a source whose set is unknown makes the whole set unknown.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { combineDesiredSources, type DesiredObject, type DesiredSource } from '../../cloud/synccontroller/index.js';

const obj = (uid: string, kind: string): DesiredObject => ({ uid, apiVersion: 'v1', kind, namespace: 'default', name: uid, resourceVersion: '1', body: {} });

function source(sets: Record<string, DesiredObject[]>, exists?: boolean): DesiredSource {
  return { desiredFor: (node) => new Map((sets[node] ?? []).map((o) => [o.uid, o])), nodeExists: () => exists };
}

describe('combineDesiredSources', () => {
  test('the set of a node is the union of the sources, the primary first', () => {
    const pods = source({ n1: [obj('cm', 'ConfigMap'), obj('pod', 'Pod')] });
    const devices = source({ n1: [obj('model', 'DeviceModel'), obj('dev', 'Device')], n2: [obj('dev2', 'Device')] });
    const c = combineDesiredSources(pods, devices);
    assert.deepEqual([...c.desiredFor('n1').keys()], ['cm', 'pod', 'model', 'dev']);
    assert.deepEqual([...c.desiredFor('n2').keys()], ['dev2']);
    assert.equal(c.desiredFor('n3').size, 0);
  });

  test('nodeExists comes from the primary only', () => {
    assert.equal(combineDesiredSources(source({}, true), source({}, false)).nodeExists('n1'), true);
    assert.equal(combineDesiredSources(source({}, false), source({}, true)).nodeExists('n1'), false);
    assert.equal(combineDesiredSources(source({}, undefined), source({}, true)).nodeExists('n1'), undefined);
  });

  test('released is told to every source that listens', () => {
    const seen: string[] = [];
    const a: DesiredSource = { desiredFor: () => new Map(), nodeExists: () => true, released: (n, r) => void seen.push(`a ${n} ${r.uid}`) };
    const b: DesiredSource = { desiredFor: () => new Map(), nodeExists: () => true };
    const c: DesiredSource = { desiredFor: () => new Map(), nodeExists: () => true, released: (n, r) => void seen.push(`c ${n} ${r.uid}`) };
    combineDesiredSources(a, b, c).released?.('n1', { kind: 'Pod', name: 'p', uid: 'u1', namespace: 'default' });
    assert.deepEqual(seen, ['a n1 u1', 'c n1 u1']);
  });

  test('a source that cannot tell its set (throws) makes the whole set unknown, never a partial one that would delete', () => {
    const pods = source({ n1: [obj('pod', 'Pod')] });
    const notListed: DesiredSource = {
      desiredFor: () => {
        throw new Error('not listed yet');
      },
      nodeExists: () => undefined,
    };
    assert.throws(() => combineDesiredSources(pods, notListed).desiredFor('n1'), /not listed yet/);
  });
});
