/**
 * A minimal JSON-over-HTTPS client with full certificate verification
 * against a given CA. Used by the agent (enrollment) and the admin CLI.
 */
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { RollcallError } from './errors.js';
import { openTunnel, type ProxyConfig } from './http-proxy.js';

/** One request. */
export interface JsonRequest {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly method?: 'GET' | 'POST' | 'DELETE';
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  /** PEM of the CA that must have signed the server's certificate. */
  readonly ca: string;
  readonly timeoutMs?: number;
  /** Largest response body accepted, in bytes. */
  readonly maxResponseBytes?: number;
  /** Go through this HTTP CONNECT proxy. */
  readonly proxy?: ProxyConfig;
}

/** A createConnection for https.request that tunnels through the proxy and verifies TLS against `ca`. */
function tunnelled(req: JsonRequest, proxy: ProxyConfig) {
  return (_opts: unknown, done: (err: Error | null, socket: Duplex) => void): undefined => {
    openTunnel(proxy, req.host, req.port, req.timeoutMs ?? 15_000).then(
      (raw) => done(null, tls.connect({ socket: raw, host: req.host, servername: net.isIP(req.host) ? undefined : req.host, ca: req.ca, minVersion: 'TLSv1.2' })),
      (err: Error) => done(err, undefined as unknown as Duplex),
    );
    return undefined;
  };
}

/** A response with its parsed JSON body (undefined when empty or not JSON). */
export interface JsonResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: unknown;
}

/** Sends one request and reads the whole JSON answer. */
export function requestJson(req: JsonRequest): Promise<JsonResponse> {
  const payload = req.body === undefined ? undefined : Buffer.from(JSON.stringify(req.body));
  const limit = req.maxResponseBytes ?? 16 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const r = https.request(
      {
        host: req.host,
        port: req.port,
        path: req.path,
        method: req.method ?? (payload ? 'POST' : 'GET'),
        ca: req.ca,
        servername: net.isIP(req.host) ? undefined : req.host,
        minVersion: 'TLSv1.2',
        // No agent with a proxy: Node then opens the connection with our createConnection.
        ...(req.proxy ? { agent: undefined, createConnection: tunnelled(req, req.proxy) } : { agent: false }),
        headers: {
          accept: 'application/json',
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
          ...req.headers,
        },
        timeout: req.timeoutMs ?? 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > limit) {
            r.destroy(new RollcallError('RESPONSE_TOO_LARGE', `response larger than ${limit} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown;
          if (text.length > 0) {
            try {
              body = JSON.parse(text);
            } catch {
              body = undefined; // a non-JSON body is reported through the status code
            }
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(new RollcallError('TIMEOUT', `no answer from ${req.host}:${req.port} within ${req.timeoutMs ?? 15_000} ms`, { retryable: true })));
    r.on('error', reject);
    r.end(payload);
  });
}

/** Splits `host:port` (or `[v6]:port`); the port defaults to `defaultPort`. */
export function parseHostPort(text: string, defaultPort: number): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text.trim()) ?? /^([^:]+)(?::(\d+))?$/.exec(text.trim());
  const port = m?.[2] === undefined ? defaultPort : Number(m[2]);
  if (!m || !m[1] || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RollcallError('ADDRESS_INVALID', `"${text}" is not host:port`);
  }
  return { host: m[1], port };
}
