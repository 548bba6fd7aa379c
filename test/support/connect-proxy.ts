/**
 * A small HTTP CONNECT proxy on 127.0.0.1 for tests: optional basic
 * authentication, a record of every CONNECT target, and modes that answer
 * with a refusal or with garbage. Closed by the harness.
 */
import http from 'node:http';
import net from 'node:net';

/** How the proxy answers CONNECT. */
export type ProxyMode = 'tunnel' | 'refuse' | 'garbage';

/** A running test proxy. */
export interface TestProxy {
  readonly port: number;
  /** `host:port` targets of every CONNECT that was tunnelled. */
  readonly tunnels: string[];
  /** CONNECTs refused for missing or wrong credentials. */
  readonly authFailures: number;
  mode: ProxyMode;
  close(): Promise<void>;
}

/** Starts a CONNECT proxy; `auth` as `user:password` makes credentials required. */
export async function startConnectProxy(opts: { auth?: string } = {}): Promise<TestProxy> {
  const sockets = new Set<net.Socket>();
  const state = { tunnels: [] as string[], authFailures: 0, mode: 'tunnel' as ProxyMode };
  const server = http.createServer((_req, res) => res.writeHead(405).end());
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    if (state.mode === 'garbage') return void client.end('SSH-2.0-NotAProxy\r\n\r\n');
    if (opts.auth) {
      const given = req.headers['proxy-authorization'];
      if (given !== `Basic ${Buffer.from(opts.auth).toString('base64')}`) {
        state.authFailures += 1;
        return void client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n\r\n');
      }
    }
    if (state.mode === 'refuse') return void client.end('HTTP/1.1 403 Forbidden\r\n\r\n');
    const [host, port] = [req.url!.replace(/:\d+$/, ''), Number(/:(\d+)$/.exec(req.url!)?.[1])];
    if (host !== '127.0.0.1' && host !== 'localhost') return void client.end('HTTP/1.1 403 Forbidden\r\n\r\n'); // tests never leave loopback
    const upstream = net.connect({ host, port }, () => {
      state.tunnels.push(req.url!);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    get tunnels() {
      return state.tunnels;
    },
    get authFailures() {
      return state.authFailures;
    },
    get mode() {
      return state.mode;
    },
    set mode(m: ProxyMode) {
      state.mode = m;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
