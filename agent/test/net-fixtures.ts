/**
 * Small loopback fixtures for the agent tests: a port nobody listens on,
 * stand-in TLS and TCP servers that misbehave on purpose, a DNS responder
 * that answers NXDOMAIN, and a way to wait for the first error a socket
 * emits. Every fixture registers its own close with the harness.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { Harness } from '../../test/support/harness.js';

/** A port on 127.0.0.1 that was free a moment ago and has no listener now. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Waits for the first `error` an emitter reports, with a deadline. */
export function firstError(emitter: NodeJS.EventEmitter, timeoutMs = 5000): Promise<Error & { code?: string }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no error within ${timeoutMs} ms`)), timeoutMs);
    emitter.once('error', (err: Error & { code?: string }) => {
      clearTimeout(t);
      resolve(err);
    });
  });
}

/** Listens on 127.0.0.1 port 0 and registers the close; returns the port. */
async function listenLoopback(h: Harness, server: net.Server): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  h.defer(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** A TLS server with the given certificate chain that answers nothing. */
export function tlsServer(h: Harness, opts: tls.TlsOptions): Promise<number> {
  const server = tls.createServer({ minVersion: 'TLSv1.2', ...opts });
  server.on('tlsClientError', () => undefined); // the clients in these tests fail on purpose
  return listenLoopback(h, server);
}

/** A TCP server that accepts and then never says a word (a black hole on loopback). */
export function silentTcpServer(h: Harness): Promise<number> {
  return listenLoopback(h, net.createServer(() => undefined));
}

/** A TCP server that answers every connection with plain HTTP, not TLS. */
export function plainHttpServer(h: Harness): Promise<number> {
  return listenLoopback(
    h,
    net.createServer((s) => {
      s.on('error', () => undefined);
      s.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
    }),
  );
}

/**
 * A DNS server on 127.0.0.1 that answers every query with NXDOMAIN, so a
 * real resolver error can be produced without a query leaving the machine.
 */
export async function nxdomainResolver(h: Harness): Promise<string> {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (query, peer) => {
    if (query.length < 12) return;
    const answer = Buffer.from(query);
    answer.writeUInt16BE(0x8183, 2); // response, recursion desired and available, RCODE 3 (NXDOMAIN)
    answer.writeUInt16BE(0, 6); // no answers
    answer.writeUInt16BE(0, 8); // no authority records
    answer.writeUInt16BE(0, 10); // no additional records (drops the EDNS OPT record c-ares may send)
    const questionEnd = endOfQuestion(query);
    socket.send(answer.subarray(0, questionEnd), peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  h.defer(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return `127.0.0.1:${socket.address().port}`;
}

/** Offset just past the first question of a DNS message (name, type, class). */
function endOfQuestion(msg: Buffer): number {
  let i = 12;
  while (i < msg.length && msg[i] !== 0) i += msg[i]! + 1;
  return Math.min(msg.length, i + 1 + 4);
}
