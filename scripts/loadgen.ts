/**
 * The load generator: many simulated agents in one process, each a real
 * mutual-TLS WebSocket client with its own certificate, speaking enough of
 * the check-in protocol (hello → welcome, check-in → ack).
 *
 * - Each agent has one tls.SecureContext for its certificate (made once,
 *   reused for every reconnect; the CA and the key are the bench's shared
 *   ones) and keeps the TLS session the server sent it (TLS 1.3 tickets
 *   arrive after the handshake as `session` events), so a reconnect can
 *   resume instead of making a full handshake.
 * - Connections are spread over several loopback source addresses
 *   (127.0.0.1, 127.0.0.2, …) so that one address's ephemeral port range
 *   is not the limit.
 * - With auto-reconnect on, an agent whose channel drops comes back as the
 *   real agent's supervisor does: full-jitter exponential backoff from
 *   common/backoff.ts, the server's retry hint (retryAfterMs) as a floor,
 *   and it never gives up.
 *
 * Used in-process by tests, and as a child process (`node dist/scripts/loadgen.js`,
 * forked by scripts/loadgen-process.ts) by `npm run bench -- scale`.
 */
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { WebSocket, type ClientOptions } from 'ws';
import { backoffDelay, DEFAULT_BACKOFF, newReconnectState, nextReconnectDelay, reconnectWelcomed, type BackoffPolicy } from '../common/backoff.js';
import { CHECKIN_PATH, encode } from '../common/protocol.js';
import { PROTOCOL_VERSION } from '../common/version.js';

/** Who the simulated agents are and where they connect. */
export interface LoadgenConfig {
  readonly host: string;
  readonly port: number;
  readonly caPem: string;
  /** The private key every bench certificate belongs to. */
  readonly keyPem: string;
  readonly agents: readonly { readonly deviceId: string; readonly certPem: string }[];
  /** Loopback source addresses, used round-robin (default: the kernel's choice). */
  readonly sourceAddresses?: readonly string[];
  readonly handshakeTimeoutMs?: number;
  readonly backoff?: BackoffPolicy;
}

/** Counters since the load generator started. */
export interface LoadgenStats {
  /** Channels that reached welcome and are open now. */
  connected: number;
  /** Welcomes received over a full TLS handshake. */
  fullConnects: number;
  /** Welcomes received over a resumed TLS session. */
  resumedConnects: number;
  /** Connections that ended before TLS completed: accepted, then dropped (the server shed them). */
  shedBeforeTls: number;
  /** Connections refused by TCP (nothing listening: the server is down). */
  tcpRefused: number;
  /** Upgrades refused with an HTTP status, or channels closed with OVERLOADED. */
  refused: number;
  /** Other failures (timeouts, unexpected closes). */
  errors: number;
  /** Channels that dropped while open (server gone, closed by the server). */
  drops: number;
  /** Agents that stopped trying: always 0, the simulated agents never give up; kept to show it. */
  gaveUp: number;
  /** Reconnect attempts scheduled with backoff. */
  retries: number;
  /** Error frames with a retry delay received on open channels (the server's shutdown notice). */
  retryHints: number;
  /** Check-ins sent by agents back after a drop (the storm: at once after the welcome, then once per interval), and their acks. */
  returnCheckins: number;
  returnAcks: number;
}

type Frame = { type: string; seq?: number; code?: string; retryAfterMs?: number; reconnectWindowMs?: number };

const OVERLOADED = 4005;

/** One simulated agent. */
class SimAgent {
  ws: WebSocket | undefined;
  session: Buffer | undefined;
  open = false;
  seq = 0;
  /** Failed attempts and the fleet's reconnect window from the last welcome (protocol 4), as the agent keeps them. */
  readonly reconnect = newReconnectState();
  retryTimer: NodeJS.Timeout | undefined;
  checkinTimer: NodeJS.Timeout | undefined;
  ackWaiter: ((f: Frame) => void) | undefined;
  private context: tls.SecureContext | undefined;

  constructor(
    readonly deviceId: string,
    private readonly certPem: string,
    readonly localAddress: string | undefined,
  ) {}

  secureContext(cfg: LoadgenConfig): tls.SecureContext {
    this.context ??= tls.createSecureContext({ key: cfg.keyPem, cert: this.certPem, ca: cfg.caPem });
    return this.context;
  }
}

function helloFrame(deviceId: string, lastSeq: number): string {
  return encode({
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    deviceId,
    agentVersion: 'loadgen',
    hostname: deviceId.replace(/^dev_/, ''),
    fingerprint: 'c'.repeat(64),
    inventory: { os: 'Linux', release: 'loadgen', arch: 'x64', cpus: 2, memoryBytes: 1 << 30 },
    lastSeq,
  });
}

/** What one connect attempt ended with. */
type Outcome = { ok: true; resumed: boolean } | { ok: false; kind: 'shed' | 'tcp' | 'refused' | 'error'; retryAfterMs?: number; message: string };

/** Many simulated agents against one server. */
export class Loadgen {
  readonly stats: LoadgenStats = emptyStats();
  private readonly agents: SimAgent[];
  private auto = false;
  /** While reconnecting on drop: the check-in interval of an agent that is back (undefined: it stays silent). */
  private returnIntervalMs: number | undefined;
  private stopped = false;
  private lastError: string | undefined;

  constructor(private readonly cfg: LoadgenConfig) {
    const sources = cfg.sourceAddresses ?? [];
    this.agents = cfg.agents.map((a, i) => new SimAgent(a.deviceId, a.certPem, sources.length > 0 ? sources[i % sources.length] : undefined));
  }

  get size(): number {
    return this.agents.length;
  }

  /** The most recent failure message, for diagnostics. */
  get lastFailure(): string | undefined {
    return this.lastError;
  }

  /** Agents that hold a TLS session they could resume with. */
  get sessionsHeld(): number {
    return this.agents.reduce((n, a) => n + (a.session ? 1 : 0), 0);
  }

  /** Opens one channel: TCP, TLS (resuming when the agent holds a session and `resume`), upgrade, hello → welcome. */
  private connectOne(agent: SimAgent, resume: boolean): Promise<Outcome> {
    const cfg = this.cfg;
    const timeoutMs = cfg.handshakeTimeoutMs ?? 30_000;
    return new Promise<Outcome>((resolve) => {
      let secured = false;
      let tlsSocket: tls.TLSSocket | undefined;
      let settled = false;
      let retryAfterMs: number | undefined;
      const createConnection = (options: tls.ConnectionOptions): Socket => {
        const s = tls.connect({
          ...options,
          path: undefined,
          servername: '',
          secureContext: agent.secureContext(cfg),
          ...(resume && agent.session ? { session: agent.session } : {}),
          ...(agent.localAddress ? { localAddress: agent.localAddress } : {}),
        } as tls.ConnectionOptions);
        tlsSocket = s;
        s.once('secureConnect', () => {
          secured = true;
        });
        s.on('session', (session: Buffer) => {
          agent.session = session;
        });
        return s;
      };
      const options: ClientOptions = {
        createConnection: createConnection as unknown as ClientOptions['createConnection'],
        perMessageDeflate: false,
        handshakeTimeout: timeoutMs,
        maxPayload: 1024 * 1024,
      };
      const ws = new WebSocket(`wss://${cfg.host}:${cfg.port}${CHECKIN_PATH}`, options);
      agent.ws = ws;
      const timer = setTimeout(() => finish({ ok: false, kind: 'error', message: `no welcome within ${timeoutMs} ms` }), timeoutMs);
      const finish = (o: Outcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (!o.ok) {
          ws.removeAllListeners('close');
          ws.on('error', () => undefined);
          ws.terminate();
          agent.ws = undefined;
        }
        resolve(o);
      };
      ws.on('error', (err: Error & { code?: string }) =>
        finish({ ok: false, kind: secured ? 'error' : err.code === 'ECONNREFUSED' ? 'tcp' : 'shed', message: err.message }),
      );
      ws.on('unexpected-response', (_req, res) => {
        res.resume();
        finish({ ok: false, kind: 'refused', message: `HTTP ${res.statusCode}` });
      });
      ws.on('open', () => ws.send(helloFrame(agent.deviceId, agent.seq)));
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as Frame;
        if (!settled) {
          if (frame.type === 'welcome') {
            reconnectWelcomed(agent.reconnect, typeof frame.reconnectWindowMs === 'number' ? frame.reconnectWindowMs : 0);
            finish({ ok: true, resumed: tlsSocket?.isSessionReused() ?? false });
          }
          else if (frame.type === 'error') retryAfterMs = frame.retryAfterMs;
          return;
        }
        if (frame.type === 'ack') {
          const w = agent.ackWaiter;
          agent.ackWaiter = undefined;
          w?.(frame);
        } else if (frame.type === 'error') {
          // As the agent does: a delay the server asks for is the floor of the next backoff.
          this.pendingAdvice.set(agent, frame.retryAfterMs);
          if (frame.retryAfterMs !== undefined) this.stats.retryHints += 1;
        }
      });
      ws.on('close', (code, reason) => {
        if (!settled) {
          finish({ ok: false, kind: code === OVERLOADED ? 'refused' : 'error', retryAfterMs, message: `closed ${code} ${reason.toString()}` });
          return;
        }
        this.onDrop(agent);
      });
    });
  }

  private onDrop(agent: SimAgent): void {
    if (!agent.open) return;
    agent.open = false;
    agent.ws = undefined;
    this.stats.connected -= 1;
    this.stats.drops += 1;
    this.stopCheckins(agent);
    const w = agent.ackWaiter;
    agent.ackWaiter = undefined;
    w?.({ type: 'dropped' });
    const advised = this.pendingAdvice.get(agent);
    this.pendingAdvice.delete(agent);
    if (this.auto && !this.stopped) this.scheduleRetry(agent, advised);
  }

  private scheduleRetry(agent: SimAgent, advisedMs: number | undefined): void {
    const delay = nextReconnectDelay(this.cfg.backoff ?? DEFAULT_BACKOFF, agent.reconnect, Math.random, advisedMs);
    this.stats.retries += 1;
    agent.retryTimer = setTimeout(() => {
      agent.retryTimer = undefined;
      void this.attempt(agent, true).then((ok) => {
        if (ok) this.checkInAfterReturn(agent);
        else if (this.auto && !this.stopped) this.scheduleRetry(agent, this.pendingAdvice.get(agent));
      });
    }, delay);
  }

  /**
   * As the agent does once it is back: a check-in at once after the
   * welcome (what it has to report, or its heartbeat), then one per
   * interval, while agents reconnect on drop and an interval was given.
   */
  private checkInAfterReturn(agent: SimAgent): void {
    const interval = this.returnIntervalMs;
    if (interval === undefined || !this.auto || this.stopped || !agent.open || !agent.ws) return;
    agent.seq += 1;
    const seq = agent.seq;
    agent.ackWaiter = (f) => {
      if (f.type === 'ack' && f.seq === seq) this.stats.returnAcks += 1;
    };
    agent.ws.send(encode({ type: 'checkin', seq, sentAt: Date.now(), uptimeSec: 1 }));
    this.stats.returnCheckins += 1;
    agent.checkinTimer = setTimeout(() => this.checkInAfterReturn(agent), interval);
  }

  private readonly pendingAdvice = new WeakMap<SimAgent, number | undefined>();

  /** One attempt, counted; true when the agent is connected after it. */
  private async attempt(agent: SimAgent, resume: boolean): Promise<boolean> {
    if (agent.open) return true;
    let o: Outcome;
    try {
      o = await this.connectOne(agent, resume);
    } catch (err) {
      // Thrown while setting up (a certificate that does not match the key, say): a failed attempt like any other.
      agent.ws = undefined;
      o = { ok: false, kind: 'error', message: err instanceof Error ? err.message : String(err) };
    }
    if (o.ok) {
      agent.open = true;
      this.stats.connected += 1;
      if (o.resumed) this.stats.resumedConnects += 1;
      else this.stats.fullConnects += 1;
      return true;
    }
    this.lastError = `${agent.deviceId}: ${o.message}`;
    if (o.kind === 'shed') this.stats.shedBeforeTls += 1;
    else if (o.kind === 'tcp') this.stats.tcpRefused += 1;
    else if (o.kind === 'refused') this.stats.refused += 1;
    else this.stats.errors += 1;
    this.pendingAdvice.set(agent, o.retryAfterMs);
    return false;
  }

  /**
   * Connects every agent that is not connected, `concurrency` at a time,
   * retrying failures with backoff (as agents do) until all are in or
   * `deadlineMs` passes. `resume`: offer the TLS session from the last connect.
   */
  async connectAll(opts: { concurrency: number; resume: boolean; deadlineMs: number }): Promise<void> {
    const deadline = Date.now() + opts.deadlineMs;
    const queue = this.agents.filter((a) => !a.open);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < queue.length && !this.stopped) {
        const agent = queue[next++]!;
        let tries = 0;
        while (!(await this.attempt(agent, opts.resume))) {
          if (Date.now() > deadline || this.stopped) return;
          const delay = backoffDelay(this.cfg.backoff ?? DEFAULT_BACKOFF, Math.min(tries, 4), Math.random, this.pendingAdvice.get(agent));
          tries += 1;
          this.stats.retries += 1;
          await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(0, deadline - Date.now()))));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency, queue.length) }, () => worker()));
    const missing = this.agents.length - this.stats.connected;
    if (missing > 0) throw new Error(`${missing} of ${this.agents.length} agents not connected within ${Math.round(opts.deadlineMs / 1000)} s (last failure: ${this.lastError ?? 'none'})`);
  }

  /**
   * Turns reconnect-on-drop on or off (the storm). With `checkinIntervalMs`
   * an agent that is back checks in at once and then once per interval, as
   * the agent does; turning it off stops those check-ins.
   */
  setAutoReconnect(on: boolean, checkinIntervalMs?: number): void {
    this.auto = on;
    this.returnIntervalMs = on ? checkinIntervalMs : undefined;
    if (!on) for (const a of this.agents) this.stopCheckins(a);
  }

  /** Closes every open channel with 1000 and waits (bounded) until all are closed. */
  async disconnectAll(timeoutMs = 10_000): Promise<void> {
    const closing = this.agents
      .filter((a) => a.open && a.ws)
      .map(
        (a) =>
          new Promise<void>((resolve) => {
            const ws = a.ws!;
            const t = setTimeout(() => {
              ws.terminate();
              resolve();
            }, timeoutMs);
            ws.once('close', () => {
              clearTimeout(t);
              resolve();
            });
            ws.close(1000, 'loadgen reconnect');
          }),
      );
    await Promise.all(closing);
  }

  private stopCheckins(agent: SimAgent): void {
    if (agent.checkinTimer) clearTimeout(agent.checkinTimer);
    agent.checkinTimer = undefined;
  }

  /**
   * Steady state: every connected agent checks in once per `intervalMs`,
   * each at its own random phase, for `durationMs`. Resolves with every
   * ack's round-trip time (ms) and the count of check-ins without an ack
   * (channel dropped or no ack within the interval).
   */
  async steady(opts: { intervalMs: number; durationMs: number }): Promise<{ rttMs: number[]; unanswered: number }> {
    const rttMs: number[] = [];
    let unanswered = 0;
    const endAt = Date.now() + opts.durationMs;
    const one = (agent: SimAgent): void => {
      if (!agent.open || !agent.ws || Date.now() >= endAt) return;
      if (agent.ackWaiter) {
        unanswered += 1; // the previous one never came back within an interval
        agent.ackWaiter = undefined;
      }
      agent.seq += 1;
      const seq = agent.seq;
      const t0 = process.hrtime.bigint();
      agent.ackWaiter = (f) => {
        if (f.type === 'ack' && f.seq === seq) rttMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
        else unanswered += 1;
      };
      agent.ws.send(encode({ type: 'checkin', seq, sentAt: Date.now(), uptimeSec: 60 }));
      agent.checkinTimer = setTimeout(() => one(agent), opts.intervalMs);
    };
    for (const a of this.agents) {
      if (a.open) a.checkinTimer = setTimeout(() => one(a), Math.floor(Math.random() * opts.intervalMs));
    }
    await new Promise((r) => setTimeout(r, opts.durationMs));
    for (const a of this.agents) this.stopCheckins(a);
    // Let the last round trips land (bounded).
    const settleBy = Date.now() + 5000;
    while (this.agents.some((a) => a.ackWaiter && a.open) && Date.now() < settleBy) await new Promise((r) => setTimeout(r, 20));
    for (const a of this.agents) {
      if (a.ackWaiter) {
        unanswered += 1;
        a.ackWaiter = undefined;
      }
    }
    return { rttMs, unanswered };
  }

  /** Stops everything: no more retries, every socket terminated. */
  stop(): void {
    this.stopped = true;
    this.auto = false;
    for (const a of this.agents) {
      if (a.retryTimer) clearTimeout(a.retryTimer);
      this.stopCheckins(a);
      a.ws?.removeAllListeners('close');
      a.ws?.on('error', () => undefined);
      a.ws?.terminate();
      if (a.open) this.stats.connected -= 1;
      a.open = false;
      a.ws = undefined;
    }
  }
}

/** Every counter at zero. */
export function emptyStats(): LoadgenStats {
  return { connected: 0, fullConnects: 0, resumedConnects: 0, shedBeforeTls: 0, tcpRefused: 0, refused: 0, errors: 0, drops: 0, gaveUp: 0, retries: 0, retryHints: 0, returnCheckins: 0, returnAcks: 0 };
}

/** Loopback source addresses 127.0.0.1 … 127.0.0.count. */
export function loopbackSources(count: number): string[] {
  return Array.from({ length: Math.max(1, count) }, (_, i) => `127.0.0.${i + 1}`);
}
