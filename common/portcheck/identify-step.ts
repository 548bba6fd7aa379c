/**
 * The identification step: GET the identification probe over the verified
 * TLS connection and check that *our* server instance, and the listener
 * role we expect, answered. Also the plain-HTTP probe the TLS step uses to
 * recognise a web server without TLS on the port.
 */
import http from 'node:http';
import net from 'node:net';
import type tls from 'node:tls';
import { IDENTIFY_PATH, type Identity } from '../enroll-api.js';
import { errorText, startStep } from './step-result.js';
import { hostPort } from './tcp-step.js';
import type { ListenerRole, StepResult } from './types.js';

/** Largest identification answer read, in bytes. */
const MAX_IDENTIFY_BYTES = 16 * 1024;

/** What the identification step found. */
export interface IdentifyOutcome {
  readonly result: StepResult;
  /** The answer, when it was a Rollcall identification. */
  readonly identity?: Identity;
}

/** Options of the identification step. */
export interface IdentifyOptions {
  readonly host: string;
  readonly port: number;
  readonly role: ListenerRole;
  /** When known, another instance id is a wrong service. */
  readonly expectInstanceId?: string;
  readonly timeoutMs: number;
}

type Answer = { status: number; body: string } | { problem: string };

function getOver(socket: tls.TLSSocket, opts: IdentifyOptions): Promise<Answer> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (a: Answer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(a);
    };
    const req = http.request({
      method: 'GET',
      path: IDENTIFY_PATH,
      headers: { host: hostPort(opts.host, opts.port), accept: 'application/json', connection: 'close' },
      // No agent: Node then uses this connection, the one the TLS step verified.
      createConnection: () => socket,
    });
    const timer = setTimeout(() => done({ problem: `no answer to ${IDENTIFY_PATH} within ${opts.timeoutMs} ms` }), opts.timeoutMs);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_IDENTIFY_BYTES) done({ problem: `the answer to ${IDENTIFY_PATH} is larger than ${MAX_IDENTIFY_BYTES} bytes` });
        else chunks.push(c);
      });
      res.on('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err) => done({ problem: errorText(err) }));
    });
    req.on('error', (err) => done({ problem: `the connection ended without an answer to ${IDENTIFY_PATH}: ${errorText(err)}` }));
    req.end();
  });
}

function parseIdentity(body: string): Identity | undefined {
  try {
    const v = JSON.parse(body) as Partial<Identity> | null;
    if (v?.service !== 'rollcall' || typeof v.instanceId !== 'string' || (v.role !== 'agent' && v.role !== 'console')) return undefined;
    return v as Identity;
  } catch {
    return undefined; // not JSON: reported as another service
  }
}

/** Asks who answers; closes the socket. Never rejects. */
export async function identifyStep(socket: tls.TLSSocket, opts: IdentifyOptions): Promise<IdentifyOutcome> {
  const timer = startStep('identify');
  const answer = await getOver(socket, opts);
  if ('problem' in answer) return { result: timer.fail('WRONG_SERVICE', `${answer.problem}: not a Rollcall listener`) };
  if (answer.status !== 200) return { result: timer.fail('WRONG_SERVICE', `answered HTTP ${answer.status} to ${IDENTIFY_PATH}: not a Rollcall listener`) };
  const identity = parseIdentity(answer.body);
  if (!identity) return { result: timer.fail('WRONG_SERVICE', `answered ${IDENTIFY_PATH} with something other than a Rollcall identification: another service`) };
  if (opts.expectInstanceId !== undefined && identity.instanceId !== opts.expectInstanceId) {
    return { result: timer.fail('WRONG_SERVICE', `another Rollcall server answers (instance ${identity.instanceId}; expected ${opts.expectInstanceId})`), identity };
  }
  if (identity.role !== opts.role) {
    return { result: timer.fail('WRONG_SERVICE', `the ${identity.role} listener answered on the ${opts.role} port (instance ${identity.instanceId})`), identity };
  }
  const seen = identity.clientAddress ? `; it sees this computer as ${identity.clientAddress}` : '';
  return {
    result: timer.pass(`Rollcall ${identity.version}, instance ${identity.instanceId}, ${identity.role} listener, protocol ${identity.protocol}${seen}`),
    identity,
  };
}

/**
 * Sends a plain-HTTP request (no TLS) to address:port and returns the
 * status line when an HTTP server answers, else undefined. Never rejects.
 */
export function plainHttpProbe(address: string, host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port });
    let received = '';
    let settled = false;
    const done = (line: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(line);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    socket.once('connect', () => socket.write(`GET ${IDENTIFY_PATH} HTTP/1.1\r\nHost: ${hostPort(host, port)}\r\nConnection: close\r\n\r\n`));
    socket.on('data', (c: Buffer) => {
      received += c.toString('latin1');
      const end = received.indexOf('\r\n');
      if (end >= 0 || received.length > 1024) {
        const line = received.slice(0, end >= 0 ? end : 1024);
        done(/^HTTP\/\d(?:\.\d)? \d{3}/.test(line) ? line.slice(0, 200) : undefined);
      }
    });
    socket.on('end', () => done(/^HTTP\/\d(?:\.\d)? \d{3}/.test(received) ? received.split('\r\n')[0]!.slice(0, 200) : undefined));
    socket.on('error', () => done(undefined));
  });
}
