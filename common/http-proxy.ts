/**
 * HTTP CONNECT proxies: `http://[user:password@]host:port`. The agent (and
 * enrollment) opens a tunnel through the proxy to the server's agent port
 * and runs its own TLS inside it, so the proxy sees only the target
 * address and never the certificates' contents. Basic authentication is
 * sent only when credentials are in the URL.
 */
import net from 'node:net';
import tls from 'node:tls';
import { RollcallError } from './errors.js';

/** A parsed proxy address. */
export interface ProxyConfig {
  readonly host: string;
  readonly port: number;
  readonly auth: { readonly user: string; readonly password: string } | null;
  /** `host:port` without credentials, for logs and status. */
  readonly display: string;
}

/** Largest proxy answer header we read. */
const MAX_RESPONSE_HEAD = 16 * 1024;

/** Parses `http://[user:password@]host[:port]` (port 3128 when absent); throws `PROXY_INVALID`. */
export function parseProxyUrl(text: string): ProxyConfig {
  const url = URL.canParse(text.trim()) ? new URL(text.trim()) : undefined;
  if (!url || url.protocol !== 'http:' || !url.hostname || (url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new RollcallError('PROXY_INVALID', 'a proxy is given as http://[user:password@]host:port');
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port ? Number(url.port) : 3128;
  const auth = url.username ? { user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) } : null;
  return { host, port, auth, display: `${net.isIPv6(host) ? `[${host}]` : host}:${port}` };
}

/** Opens a CONNECT tunnel to `host:port` through the proxy; resolves with the raw socket. */
export function openTunnel(proxy: ProxyConfig, host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const target = `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
    const socket = net.connect({ host: proxy.host, port: proxy.port });
    let head = Buffer.alloc(0);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new RollcallError('TIMEOUT', `the proxy ${proxy.display} did not open a tunnel to ${target} within ${timeoutMs} ms`, { retryable: true })), timeoutMs);
    const onError = (err: NodeJS.ErrnoException): void =>
      fail(new RollcallError('PROXY_UNREACHABLE', `cannot reach the proxy ${proxy.display}: ${err.code ?? err.message}`, { cause: err, retryable: true }));
    socket.once('error', onError);
    socket.once('connect', () => {
      const auth = proxy.auth ? `Proxy-Authorization: Basic ${Buffer.from(`${proxy.auth.user}:${proxy.auth.password}`).toString('base64')}\r\n` : '';
      socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`);
    });
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_RESPONSE_HEAD) fail(new RollcallError('PROXY_BAD_RESPONSE', `the proxy ${proxy.display} sent no HTTP answer to CONNECT`));
        return;
      }
      socket.removeListener('data', onData);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head.subarray(0, end).toString('latin1'))?.[1];
      if (!status) return fail(new RollcallError('PROXY_BAD_RESPONSE', `the proxy ${proxy.display} sent no HTTP answer to CONNECT`));
      if (status === '407') {
        const why = proxy.auth ? 'refused the credentials in the proxy URL' : 'requires authentication: give http://user:password@host:port';
        return fail(new RollcallError('PROXY_AUTH_REQUIRED', `the proxy ${proxy.display} ${why} (HTTP 407)`));
      }
      if (!status.startsWith('2')) {
        return fail(new RollcallError('PROXY_REFUSED', `the proxy ${proxy.display} refused CONNECT to ${target} (HTTP ${status})`, { retryable: true }));
      }
      clearTimeout(timer);
      socket.removeListener('error', onError);
      const rest = head.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    socket.on('data', onData);
  });
}

/** Opens TLS to `host:port` through the proxy, verified against `secureContext` and the host name. */
export async function tlsThroughProxy(
  proxy: ProxyConfig,
  target: { host: string; port: number },
  tlsOptions: { secureContext: tls.SecureContext; timeoutMs: number },
): Promise<tls.TLSSocket> {
  const raw = await openTunnel(proxy, target.host, target.port, tlsOptions.timeoutMs);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      socket: raw,
      host: target.host,
      servername: net.isIP(target.host) ? undefined : target.host,
      secureContext: tlsOptions.secureContext,
      minVersion: 'TLSv1.2',
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new RollcallError('TIMEOUT', `no TLS handshake with ${target.host}:${target.port} through ${proxy.display} within ${tlsOptions.timeoutMs} ms`, { retryable: true }));
    }, tlsOptions.timeoutMs);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(socket);
    });
    socket.once('error', onError);
  });
}
