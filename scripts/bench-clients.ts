/**
 * The client side of the benchmark: N simulated agents, each a `ws` client
 * over mutual TLS with its own certificate (one tls.SecureContext per
 * certificate, a shared CA), speaking just enough of the check-in protocol:
 * hello → welcome, then check-in → ack round trips.
 *
 * Every connection makes a full TLS handshake (ws does not resume sessions),
 * as a fleet of agents coming back after a server restart would.
 */
import tls from 'node:tls';
import { WebSocket, type ClientOptions } from 'ws';
import { CHECKIN_PATH, encode } from '../common/protocol.js';
import { PROTOCOL_VERSION } from '../common/version.js';
import { withDeadline } from './bench-deadline.js';
import type { BenchPki } from './bench-pki.js';

/** What the client side needs to reach one server under test. */
export interface ClientTarget {
  readonly port: number;
  readonly pki: BenchPki;
}

/** Options for {@link connectAgents}. */
export interface ConnectOptions {
  /** Connections in flight at once (TCP + TLS + upgrade + hello/welcome). */
  readonly concurrency: number;
  /** Deadline for the whole phase. */
  readonly deadlineMs: number;
  /** Deadline for one connection's opening handshake. */
  readonly handshakeTimeoutMs?: number;
  readonly onProgress?: (connected: number) => void;
}

type Waiter = { resolve(msg: ServerFrame): void; reject(err: Error): void };
type ServerFrame = { type: string; seq?: number; code?: string; message?: string };

/** One connected bench agent. */
export class BenchAgent {
  private waiter: Waiter | null = null;
  private failure: Error | null = null;

  constructor(
    readonly deviceId: string,
    readonly ws: WebSocket,
  ) {
    ws.on('message', (data) => {
      const w = this.waiter;
      this.waiter = null;
      const frame = JSON.parse(data.toString()) as ServerFrame;
      if (!w) this.fail(new Error(`${deviceId}: unexpected ${frame.type} frame`));
      else if (frame.type === 'error') w.reject(new Error(`${deviceId}: server error ${frame.code}: ${frame.message}`));
      else w.resolve(frame);
    });
    ws.on('close', (code, reason) => this.fail(new Error(`${deviceId}: channel closed (${code} ${reason.toString()})`)));
    ws.on('error', (err) => this.fail(new Error(`${deviceId}: ${err.message}`, { cause: err })));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }

  /** Sends a frame and resolves with the next frame from the server. */
  request(frame: string): Promise<ServerFrame> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.waiter) return Promise.reject(new Error(`${this.deviceId}: a request is already in flight`));
    return new Promise<ServerFrame>((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.ws.send(frame);
    });
  }

  /** Closes the channel with 1000 and waits (bounded) for the close. */
  async close(timeoutMs: number): Promise<void> {
    this.failure ??= new Error(`${this.deviceId}: closed by the bench`);
    if (this.ws.readyState === WebSocket.CLOSED) return;
    const closed = new Promise<void>((resolve) => this.ws.once('close', () => resolve()));
    this.ws.close(1000, 'bench done');
    const timer = setTimeout(() => this.ws.terminate(), timeoutMs);
    await closed;
    clearTimeout(timer);
  }
}

function helloFrame(deviceId: string): string {
  return encode({
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    deviceId,
    agentVersion: 'bench',
    hostname: deviceId.replace(/^dev_/, ''),
    fingerprint: 'b'.repeat(64),
    inventory: { os: 'Linux', release: 'bench', arch: 'x64', cpus: 2, memoryBytes: 1 << 30 },
    lastSeq: 0,
  });
}

/** Opens one agent's channel and completes hello → welcome. */
async function openAgent(target: ClientTarget, index: number, handshakeTimeoutMs: number): Promise<BenchAgent> {
  const cert = target.pki.agents[index]!;
  const secureContext = tls.createSecureContext({ key: target.pki.agentKeyPem, cert: cert.certPem, ca: target.pki.ca.certPem });
  const options: ClientOptions & { secureContext: tls.SecureContext } = {
    secureContext,
    perMessageDeflate: false,
    handshakeTimeout: handshakeTimeoutMs,
    maxPayload: 1024 * 1024,
  };
  const ws = new WebSocket(`wss://127.0.0.1:${target.port}${CHECKIN_PATH}`, options);
  try {
    return await withDeadline(helloOver(ws, cert.deviceId), handshakeTimeoutMs, `${cert.deviceId}: no welcome within ${handshakeTimeoutMs} ms`);
  } catch (err) {
    ws.terminate();
    throw err;
  }
}

async function helloOver(ws: WebSocket, deviceId: string): Promise<BenchAgent> {
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', (err) => reject(new Error(`${deviceId}: cannot connect: ${err.message}`, { cause: err })));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`${deviceId}: upgrade refused with HTTP ${res.statusCode}`)));
  });
  const agent = new BenchAgent(deviceId, ws);
  const welcome = await agent.request(helloFrame(deviceId));
  if (welcome.type !== 'welcome') throw new Error(`${deviceId}: expected welcome, got ${welcome.type}`);
  return agent;
}

function phaseTimeout(phase: string, ms: number): string {
  return `the ${phase} phase did not finish within ${Math.round(ms / 1000)} s; aborting`;
}

/**
 * Connects every agent of the PKI with bounded concurrency. Agents that did
 * connect are pushed into `into` as they come, so the caller can close them
 * even when the phase fails.
 */
export async function connectAgents(target: ClientTarget, into: BenchAgent[], opts: ConnectOptions): Promise<void> {
  const total = target.pki.agents.length;
  let next = 0;
  let aborted: Error | null = null;
  const step = Math.max(1, Math.round(total / 10));
  const worker = async (): Promise<void> => {
    while (!aborted && next < total) {
      const i = next++;
      try {
        into.push(await openAgent(target, i, opts.handshakeTimeoutMs ?? 30_000));
      } catch (err) {
        aborted ??= err as Error;
        throw err;
      }
      if (into.length % step === 0) opts.onProgress?.(into.length);
    }
  };
  const workers = Array.from({ length: Math.min(opts.concurrency, total) }, () => worker());
  try {
    await withDeadline(Promise.all(workers), opts.deadlineMs, phaseTimeout('connect', opts.deadlineMs));
  } finally {
    aborted ??= new Error('connect phase ended');
    await Promise.allSettled(workers);
  }
}

/** Options for {@link runCheckins}. */
export interface CheckinOptions {
  /** Sequential round trips per agent. */
  readonly perAgent: number;
  readonly deadlineMs: number;
}

/** What the check-in phase measured on the client side. */
export interface CheckinRun {
  /** Every round trip time in milliseconds (agents × perAgent of them). */
  readonly rttMs: Float64Array;
  /** Wall time of the whole phase in milliseconds. */
  readonly wallMs: number;
}

/** Every agent does `perAgent` sequential check-in round trips, all agents at once. */
export async function runCheckins(agents: readonly BenchAgent[], opts: CheckinOptions): Promise<CheckinRun> {
  const rttMs = new Float64Array(agents.length * opts.perAgent);
  const startedAt = Date.now();
  const start = process.hrtime.bigint();
  const one = async (agent: BenchAgent, slot: number): Promise<void> => {
    for (let k = 0; k < opts.perAgent; k += 1) {
      const seq = k + 1;
      const t0 = process.hrtime.bigint();
      const ack = await agent.request(encode({ type: 'checkin', seq, sentAt: startedAt, uptimeSec: 60 + k }));
      rttMs[slot * opts.perAgent + k] = Number(process.hrtime.bigint() - t0) / 1e6;
      if (ack.type !== 'ack' || ack.seq !== seq) throw new Error(`${agent.deviceId}: expected ack ${seq}, got ${JSON.stringify(ack)}`);
    }
  };
  await withDeadline(Promise.all(agents.map((a, i) => one(a, i))), opts.deadlineMs, phaseTimeout('check-in', opts.deadlineMs));
  return { rttMs, wallMs: Number(process.hrtime.bigint() - start) / 1e6 };
}

/** Closes every agent, at most `timeoutMs` each (they close in parallel). */
export async function closeAgents(agents: readonly BenchAgent[], timeoutMs = 5000): Promise<void> {
  await Promise.allSettled(agents.map((a) => a.close(timeoutMs)));
}
