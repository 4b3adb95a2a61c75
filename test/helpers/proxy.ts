/**
 * A TCP proxy for link faults: `cut()` destroys every connection (a link reset);
 * `blackhole(dir)` keeps connections open but silently drops traffic in one direction
 * or both (a dead or half-dead link that only heartbeats and ACK timeouts detect).
 * 'up' is client → target (edge → cloud), 'down' is target → client.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';

export interface Proxy {
  port: number;
  cut(): void;
  blackhole(direction: 'up' | 'down' | 'both' | 'none'): void;
  connections(): number;
  close(): Promise<void>;
}

export async function startProxy(targetPort: () => number): Promise<Proxy> {
  const pairs = new Set<[Socket, Socket]>();
  let dropUp = false;
  let dropDown = false;
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort(), '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const forward = (from: Socket, to: Socket, dropped: () => boolean) =>
      from.on('data', (d) => {
        if (!dropped()) to.write(d);
      });
    forward(client, upstream, () => dropUp);
    forward(upstream, client, () => dropDown);
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
    blackhole(direction) {
      dropUp = direction === 'up' || direction === 'both';
      dropDown = direction === 'down' || direction === 'both';
    },
    connections: () => pairs.size,
    async close() {
      cut();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface Balancer {
  port: number;
  /** Connections each backend (by index) was given. */
  served: number[];
  close(): Promise<void>;
}

/**
 * A round-robin TCP load balancer over `ports` (a Service in front of CloudCore replicas): each new
 * connection goes to the next backend in turn. TLS passes through untouched.
 */
export async function startBalancer(ports: number[]): Promise<Balancer> {
  const served = ports.map(() => 0);
  const sockets = new Set<Socket>();
  let next = 0;
  const server: Server = createServer((client) => {
    const i = next++ % ports.length;
    served[i]!++;
    const upstream = connect(ports[i]!, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    served,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
