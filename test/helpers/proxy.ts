/**
 * A TCP proxy for link faults: `cut()` destroys every connection (a link reset);
 * `blackhole(true)` keeps connections open but silently drops all traffic (a dead
 * link that only heartbeats can detect).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';

export interface Proxy {
  port: number;
  cut(): void;
  blackhole(on: boolean): void;
  connections(): number;
  close(): Promise<void>;
}

export async function startProxy(targetPort: () => number): Promise<Proxy> {
  const pairs = new Set<[Socket, Socket]>();
  let dropping = false;
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort(), '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const forward = (from: Socket, to: Socket) =>
      from.on('data', (d) => {
        if (!dropping) to.write(d);
      });
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  const cut = () => {
    for (const [a, b] of pairs) {
      a.destroy();
      b.destroy();
    }
    pairs.clear();
  };
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    cut,
    blackhole(on) {
      dropping = on;
    },
    connections: () => pairs.size,
    async close() {
      cut();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
