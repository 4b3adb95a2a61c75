/**
 * @module
 * MQTT publishers for bench/devices-throughput.ts, in their own process (forked with an IPC
 * channel, bundled first: no TypeScript loader), so the subscriber in the benchmark process and
 * the broker in EdgeCore each have their own event loop.
 *
 * `{ cmd: 'run', port, qos, publishers, deadline, window, topicPrefix, ratePerS }` → connects `publishers`
 * clients to 127.0.0.1:`port` (ids `bench-pub-<i>`), each floods `<topicPrefix>/<i>/twin/update`
 * until `deadline` (ms since the epoch), or paced at `ratePerS` in all (QoS 0) — see
 * {@link RawClient.flood} — and replies `{ type: 'done', sent, perClient }`. The clients stay
 * connected until `{ cmd: 'close' }` (→ `{ type: 'closed' }`): closing a connection while the broker
 * has not yet read all of it loses its last QoS 0 publishes in EdgeCore's broker (see
 * bench/devices-throughput.ts), which is not what this measures. `{ cmd: 'stop' }` exits.
 */
import { connectRaw, type RawClient } from './devices-mqtt.js';

interface RunCommand {
  cmd: 'run';
  port: number;
  qos: 0 | 1;
  publishers: number;
  deadline: number;
  window: number;
  topicPrefix: string;
  /** QoS 0 only: total publishes per second over all publishers (0: flood). */
  ratePerS: number;
}

let open: RawClient[] = [];

process.on('message', (raw) => {
  const m = raw as RunCommand | { cmd: 'stop' } | { cmd: 'close' };
  if (m.cmd === 'stop') process.exit(0);
  if (m.cmd === 'close') {
    for (const c of open.splice(0)) c.close();
    process.send?.({ type: 'closed' });
    return;
  }
  if (m.cmd !== 'run') return;
  void (async () => {
    try {
      const clients = await Promise.all(Array.from({ length: m.publishers }, (_, i) => connectRaw(m.port, `bench-pub-${i}`)));
      open = clients;
      process.send?.({ type: 'connected' });
      const perClient = await Promise.all(clients.map((c, i) => c.flood(`${m.topicPrefix}/${i}/twin/update`, m.qos, m.deadline, m.window, m.ratePerS / m.publishers)));
      process.send?.({ type: 'done', sent: perClient.reduce((a, b) => a + b, 0), perClient });
    } catch (err) {
      process.send?.({ type: 'error', message: (err as Error).stack ?? String(err) });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready', pid: process.pid });
