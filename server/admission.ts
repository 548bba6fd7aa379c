/**
 * Admission control on the agent port, before TLS: a TCP connection that
 * arrives while too many others are still in their TLS handshake is
 * destroyed at once, before the TLS layer sees it. That costs the server
 * one accept and one close (about 0.1 ms) instead of a full mutual-TLS
 * handshake (2-3 ms) whose result it would then have to refuse anyway, so
 * in a reconnect storm the handshakes the server does start finish quickly
 * and the rest retry later.
 *
 * No retry hint can be given here: nothing can be written to a client
 * before TLS. The agent sees a reset and backs off with full jitter
 * (common/backoff.ts). The channel limit (`maxAgents`) is not applied
 * here: before TLS the device is unknown, and a device replacing its own
 * channel must get in even at the limit. Agents that get through TLS while
 * the server is at `maxAgents` are refused after hello with OVERLOADED
 * (4005) and a jittered `retryAfterMs` (server/agent-session.ts).
 *
 * The handshake count is kept from the raw socket's `connection` event to
 * the server's `secureConnection` (or the socket's close); the two sockets
 * are matched by remote address and port, which identify one TCP
 * connection to this listener.
 */
import type { Socket } from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';

/** Limits of {@link installAdmission}. */
export interface AdmissionLimits {
  /** Most connections in their TLS handshake at once. */
  readonly maxPendingHandshakes: number;
}

/** Counters of the admission gate. */
export interface AdmissionStats {
  /** Connections let through to TLS. */
  admitted: number;
  /** Connections destroyed before TLS. */
  shed: number;
  /** Connections in their TLS handshake now. */
  pending: number;
}

/** The gate's handle. */
export interface Admission {
  readonly stats: Readonly<AdmissionStats>;
}

function keyOf(socket: { remoteAddress?: string; remotePort?: number }): string {
  return `${socket.remoteAddress ?? '?'}|${socket.remotePort ?? 0}`;
}

/**
 * Puts the gate in front of every `connection` listener the server has now
 * (the TLS layer's own among them). `onShed` hears about every shed
 * connection (for a rate-limited log line).
 */
export function installAdmission(server: TlsServer, limits: AdmissionLimits, onShed?: (socket: Socket, stats: AdmissionStats) => void): Admission {
  const stats: AdmissionStats = { admitted: 0, shed: 0, pending: 0 };
  const inHandshake = new Map<string, Socket>();
  const downstream = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  const done = (key: string, socket: Socket): void => {
    if (inHandshake.get(key) !== socket) return;
    inHandshake.delete(key);
    stats.pending = inHandshake.size;
  };
  server.on('connection', (socket: Socket) => {
    if (inHandshake.size >= limits.maxPendingHandshakes) {
      stats.shed += 1;
      onShed?.(socket, stats);
      socket.on('error', () => undefined); // a reset racing the destroy is of no interest
      socket.destroy();
      return;
    }
    stats.admitted += 1;
    const key = keyOf(socket);
    inHandshake.set(key, socket);
    stats.pending = inHandshake.size;
    socket.once('close', () => done(key, socket));
    for (const listener of downstream) listener.call(server, socket);
  });
  server.prependListener('secureConnection', (tlsSocket: TLSSocket) => {
    const key = keyOf(tlsSocket);
    const raw = inHandshake.get(key);
    if (raw) done(key, raw);
  });
  return { stats };
}
