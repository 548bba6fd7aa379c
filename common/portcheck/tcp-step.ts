/**
 * The TCP step: connect to the resolved addresses in order until one
 * accepts, all within one deadline, and say how each attempt ended.
 */
import net from 'node:net';
import { errorCode, errorText, startStep } from './step-result.js';
import type { PortcheckFailure, StepResult } from './types.js';

/** What the TCP step found. */
export interface TcpOutcome {
  readonly result: StepResult;
  /** The connected socket (the caller owns it), when an address accepted. */
  readonly socket?: net.Socket;
  /** The address that accepted. */
  readonly address?: string;
}

/** `host:port`, with brackets for IPv6. */
export function hostPort(address: string, port: number): string {
  return net.isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}

const UNREACHABLE_CODES = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EADDRNOTAVAIL', 'EACCES', 'EPERM']);

function classify(err: unknown): { failure: PortcheckFailure; why: string } {
  const code = errorCode(err);
  if (code === 'ECONNREFUSED') return { failure: 'TCP_REFUSED', why: 'connection refused' };
  if (code === 'ECONNRESET') return { failure: 'TCP_REFUSED', why: 'connection reset' };
  if (code === 'ETIMEDOUT') return { failure: 'TCP_TIMEOUT', why: 'timed out' };
  if (UNREACHABLE_CODES.has(code)) return { failure: 'TCP_UNREACHABLE', why: `unreachable (${code})` };
  return { failure: 'TCP_UNREACHABLE', why: errorText(err) };
}

function connectOnce(address: string, port: number, timeoutMs: number): Promise<{ socket: net.Socket } | { failure: PortcheckFailure; why: string }> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port });
    const done = (outcome: { socket: net.Socket } | { failure: PortcheckFailure; why: string }): void => {
      clearTimeout(timer);
      socket.removeAllListeners('connect');
      socket.removeAllListeners('error');
      resolve(outcome);
    };
    const timer = setTimeout(() => {
      socket.destroy();
      done({ failure: 'TCP_TIMEOUT', why: `no answer within ${timeoutMs} ms` });
    }, timeoutMs);
    socket.once('connect', () => {
      socket.setNoDelay(true);
      done({ socket });
    });
    socket.once('error', (err) => {
      socket.destroy();
      done(classify(err));
    });
  });
}

/** Connects to `port` on the first address that accepts. Never rejects. */
export async function tcpStep(addresses: readonly string[], port: number, timeoutMs: number): Promise<TcpOutcome> {
  const timer = startStep('tcp');
  const attempts: string[] = [];
  let failure: PortcheckFailure | undefined;
  for (const [i, address] of addresses.entries()) {
    const left = timeoutMs - timer.elapsed();
    if (left <= 0) {
      attempts.push(`not tried in time: ${addresses.slice(i).join(', ')}`);
      break;
    }
    const outcome = await connectOnce(address, port, left);
    if ('socket' in outcome) {
      const before = attempts.length > 0 ? ` (after ${attempts.join('; ')})` : '';
      return { result: timer.pass(`connected to ${hostPort(address, port)}${before}`), socket: outcome.socket, address };
    }
    attempts.push(`${hostPort(address, port)}: ${outcome.why}`);
    failure ??= outcome.failure;
  }
  return { result: timer.fail(failure ?? 'TCP_TIMEOUT', attempts.join('; ') || 'no address to connect to') };
}
