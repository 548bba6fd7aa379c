/**
 * The TLS step: a handshake over the connected socket, then the chain
 * judged against our CA before a single byte of ours is sent. When the
 * handshake fails for a reason other than silence, a plain-HTTP probe
 * tells "a web server without TLS answers here" apart from other failures.
 *
 * A port that accepts TCP and then never answers the handshake is
 * TLS_HANDSHAKE_FAILED ("no TLS answer within …"), not TCP_TIMEOUT: the
 * connection itself worked, so the firewall advice of TCP_TIMEOUT would
 * mislead.
 */
import net from 'node:net';
import tls from 'node:tls';
import { judgeChain, type PortcheckTrust } from './chain-judge.js';
import { plainHttpProbe } from './identify-step.js';
import { errorText, startStep } from './step-result.js';
import type { StepResult } from './types.js';

/** What the TLS step found. */
export interface TlsOutcome {
  readonly result: StepResult;
  /** The verified TLS socket (the caller owns it), when the step passed. */
  readonly socket?: tls.TLSSocket;
  /** Our CA certificate, as verified (for later connections with full verification). */
  readonly caPem?: string;
}

/** Options of the TLS step. */
export interface TlsStepOptions {
  /** The name dialled (SNI and the name check). */
  readonly host: string;
  /** The address the TCP step connected to (for the plain-HTTP probe). */
  readonly address: string;
  readonly port: number;
  readonly trust: PortcheckTrust;
  readonly now: () => number;
  readonly timeoutMs: number;
}

function chainOf(peer: tls.DetailedPeerCertificate): Buffer[] {
  const chain: Buffer[] = [];
  let cur: tls.DetailedPeerCertificate | undefined = peer;
  while (cur?.raw && chain.length < 10) {
    chain.push(cur.raw);
    if (!cur.issuerCertificate || cur.issuerCertificate === cur || cur.issuerCertificate.raw?.equals(cur.raw)) break;
    cur = cur.issuerCertificate;
  }
  return chain;
}

type Handshake = { socket: tls.TLSSocket } | { error: unknown } | { timedOut: true };

function handshake(raw: net.Socket, host: string, timeoutMs: number): Promise<Handshake> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      socket: raw,
      servername: net.isIP(host) ? undefined : host,
      // The chain is judged by judgeChain right after the handshake, before any byte is sent.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    });
    const done = (h: Handshake): void => {
      clearTimeout(timer);
      socket.removeAllListeners('secureConnect');
      socket.removeAllListeners('error');
      if (!('socket' in h)) socket.destroy();
      resolve(h);
    };
    const timer = setTimeout(() => done({ timedOut: true }), timeoutMs);
    socket.once('secureConnect', () => done({ socket }));
    socket.once('error', (error) => done({ error }));
  });
}

/** Runs the handshake and judges the chain. Never rejects; destroys the socket unless it is returned. */
export async function tlsStep(raw: net.Socket, opts: TlsStepOptions): Promise<TlsOutcome> {
  const timer = startStep('tls');
  const h = await handshake(raw, opts.host, opts.timeoutMs);
  if ('timedOut' in h) {
    return { result: timer.fail('TLS_HANDSHAKE_FAILED', `the port accepted the connection, but no TLS answer came within ${opts.timeoutMs} ms`) };
  }
  if ('error' in h) {
    const http = await plainHttpProbe(opts.address, opts.host, opts.port, Math.max(1, opts.timeoutMs - timer.elapsed()));
    if (http) return { result: timer.fail('WRONG_SERVICE', `no TLS here: a plain HTTP service answers ("${http}")`) };
    return { result: timer.fail('TLS_HANDSHAKE_FAILED', errorText(h.error)) };
  }
  const socket = h.socket;
  socket.on('error', () => undefined); // later errors surface through the identify step's own listeners
  const verdict = judgeChain(chainOf(socket.getPeerCertificate(true)), opts.trust, opts.host, opts.now());
  if (!verdict.ok) {
    socket.destroy();
    return { result: timer.fail(verdict.failure, verdict.detail) };
  }
  return { result: timer.pass(`${socket.getProtocol() ?? 'TLS'}; ${verdict.detail}`), socket, caPem: verdict.caPem };
}
