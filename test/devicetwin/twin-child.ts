/**
 * Child process of module.test.ts's kill -9 test: a DeviceTwin on the data directory given as
 * argv[2], with the link down; it reports values and a state over both paths, prints DURABLE once
 * every report() resolved, then idles until it is killed.
 */
import { startTwin } from './fakes.js';

const dataDir = process.argv[2]!;
const h = await startTwin(dataDir, { linkUp: false });
const core = h.twin.core;
await core.report('default', 'thermo-1', [{ propertyName: 'temperature', reported: { value: '42' } }], 'dmi');
h.bus.inject('$hw/events/device/default/thermo-1/twin/update', { event_id: 'k', twin: { switch: { actual: { value: 'true' } }, label: { expected: { value: 'local' } } } });
await h.bus.waitFor('$hw/events/device/default/thermo-1/twin/update/result');
await core.reportState('default', 'thermo-1', 'online', 'dmi');
process.stdout.write('DURABLE\n');
setInterval(() => {}, 60_000);
