/**
 * The primary's side of agent workers: forks them (node:cluster, the
 * kernel spreading accepts over them: SCHED_NONE), answers their calls with
 * the real storage, CA and registry, keeps a RemoteSession in the global
 * registry for every admitted channel, forwards their log lines into the
 * primary's logger, re-forks a worker that dies (with a backoff), and shuts
 * them down in order.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { describeError, RollcallError } from '../../common/errors.js';
import type { AgentBackend } from '../agent-backend.js';
import type { RejectEvent } from '../agent-listener.js';
import type { ReportContext } from '../agent-reports.js';
import type { SessionEvent } from '../agent-session.js';
import type { AgentEvent, Report } from '../../common/protocol.js';
import type { FailureLimiter } from '../failure-limiter.js';
import { admitSession, type AdmissionDeps, type AdmitDecision, type HelloFacts } from '../session-admission.js';
import type { AgentChannel, SessionRegistry } from '../session-registry.js';
import { RpcPeer, type RpcHandlers, type RpcPort } from './rpc.js';
import { CLUSTER_PROTOCOL_VERSION, type PrimaryCalls, type PrimaryNotes, type WorkerCalls, type WorkerInit, type WorkerNotes, type WorkerSample, type WorkerTls } from './messages.js';
import { RemoteSession, type SessionOwner } from './remote-session.js';
import { handshakeShares } from './handshake-budget.js';
import { forwardWorkerOutput } from './worker-log.js';
import type { SeenCheckin } from './worker-checkins.js';

/** The primary's implementations behind the workers' calls. */
export interface PrimaryServices {
  readonly backend: AgentBackend;
  readonly admission: AdmissionDeps<AgentChannel>;
  readonly recordReport: (report: Report, ctx: ReportContext) => Promise<void>;
  readonly recordEvents: (events: readonly AgentEvent[], ctx: ReportContext) => Promise<{ fresh: number; dropped: number }>;
  readonly renewCertificate: (deviceId: string, csrPem: string) => Promise<string>;
  /** The live feed (connect, disconnect, reject). */
  readonly onEvent: (e: SessionEvent | RejectEvent) => void;
  /** A worker's note of the check-ins it stored in its journal. */
  readonly checkinsSeen: (items: readonly SeenCheckin[]) => void;
  /** A worker exited (died, or stopped): fold its journal now. */
  readonly workerExited: (slot: number) => void;
}

/** What the pool needs. */
export interface WorkerPoolDeps {
  readonly count: number;
  /** The compiled worker entry (dist/server/cluster/worker-main.js). */
  readonly entry: string;
  readonly registry: SessionRegistry<AgentChannel>;
  readonly services: PrimaryServices;
  /** The init message of a worker (TLS and ticket keys as they are now). */
  readonly init: () => Omit<WorkerInit, 'slot' | 'protocol' | 'logLevel' | 'handshakeShare'>;
  /** Most connections in their TLS handshake at once over all workers (split by handshake-budget.ts). */
  readonly handshakeBudget: number;
  readonly now: () => number;
  readonly log: Logger;
  /** Re-fork delay after a worker dies: base, doubling per death within a minute, capped. */
  readonly restart?: { readonly baseMs: number; readonly capMs: number };
  /** How long start() waits for every worker to listen, and close() for each to exit. */
  readonly startTimeoutMs?: number;
  /** Failed enrollments per source address, for the whole box (the workers report each; the pool tells them all what is blocked). */
  readonly enrollLimiter: FailureLimiter;
  readonly stopTimeoutMs?: number;
}

interface Slot {
  readonly slot: number;
  worker: Worker | undefined;
  rpc: RpcPeer<WorkerCalls, WorkerNotes, PrimaryCalls, PrimaryNotes> | undefined;
  sessions: Map<number, RemoteSession>;
  listening: boolean;
  /** Forked and not exited: counted in the handshake budget's split. */
  active: boolean;
  /** This slot's handshake share (sent in init, then in handshakeShare notes). */
  share: number;
  /** The worker got its init: later share changes go to it as notes. */
  inited: boolean;
  /** Why the worker said it cannot start, if it did. */
  failure: { code: string | null; message: string } | undefined;
  deaths: number[];
  restartTimer: NodeJS.Timeout | undefined;
}

const DEFAULT_RESTART = { baseMs: 500, capMs: 30_000 };

/**
 * Why start() fails when a worker exits before listening: the worker's own
 * error when it said (an EADDRINUSE keeps its code, so the CLI exits as
 * "cannot start"), else WORKER_FAILED.
 */
function startFailure(s: Slot, code: number | null, signal: string | null): Error {
  const failure = s.failure;
  if (failure?.code && /^E[A-Z]+$/.test(failure.code)) return Object.assign(new Error(failure.message), { code: failure.code });
  return new RollcallError('WORKER_FAILED', `agent worker ${s.slot} exited before listening: ${failure?.message ?? `exit code ${code}, signal ${signal}`}`);
}

/** The agent workers of one server. */
export class AgentWorkerPool {
  private readonly slots: Slot[] = [];
  private stopping = false;
  private boundPort = 0;
  /** start()'s wait for each slot's first `listening`, by slot. */
  private readonly firstListen = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();

  constructor(private readonly deps: WorkerPoolDeps) {
    for (let slot = 1; slot <= deps.count; slot += 1) this.slots.push({ slot, worker: undefined, rpc: undefined, sessions: new Map(), listening: false, active: false, share: 0, inited: false, failure: undefined, deaths: [], restartTimer: undefined });
  }

  /** Workers serving the agent port now (forked and listening). */
  get size(): number {
    return this.slots.filter((s) => s.listening).length;
  }

  /** The agent port the workers share (0 before the first listens). */
  get port(): number {
    return this.boundPort;
  }

  /** True while at least one worker accepts agents. */
  get listening(): boolean {
    return this.slots.some((s) => s.listening);
  }

  /** Forks every worker and resolves once all listen; rejects (and stops them) if one fails first. */
  async start(): Promise<void> {
    cluster.schedulingPolicy = cluster.SCHED_NONE; // must precede the first setupPrimary: the kernel spreads accepts
    cluster.setupPrimary({ exec: this.deps.entry, execArgv: process.execArgv, silent: true, serialization: 'json' });
    const all = this.slots.map(
      (s) =>
        new Promise<void>((resolve, reject) => {
          this.firstListen.set(s.slot, { resolve, reject });
          this.fork(s);
        }),
    );
    const timeoutMs = this.deps.startTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RollcallError('WORKERS_NOT_LISTENING', `agent workers did not listen within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([Promise.all(all), deadline]);
    } catch (err) {
      await this.close(0);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** One resource sample per running worker. */
  async stats(opts: { gc: boolean }): Promise<WorkerSample[]> {
    const live = this.slots.filter((s) => s.rpc && s.listening);
    return Promise.all(live.map((s) => s.rpc!.call('stats', { gc: opts.gc })));
  }

  /** New TLS material for every worker (CA rotation). */
  setTls(tls: WorkerTls): void {
    for (const s of this.slots) s.rpc?.notify('tls', tls);
  }

  /** New ticket keys for every worker (all must share one). */
  setTicketKeys(keys: Buffer): void {
    for (const s of this.slots) s.rpc?.notify('ticketKeys', { keys: keys.toString('hex') });
  }

  private countEnrollFailure(address: string): void {
    const now = this.deps.now();
    this.deps.enrollLimiter.fail(address, now);
    const blockedMs = this.deps.enrollLimiter.blockedFor(address, now);
    if (blockedMs <= 0) return;
    this.deps.log.warn({ address, blockedMs }, 'too many failed enrollments from one address; every agent worker refuses it for now');
    for (const s of this.slots) s.rpc?.notify('blockAddress', { address, until: now + blockedMs });
  }

  /**
   * Asks the worker on `slot` to delete its journal's rows up to `upTo`
   * (folded); false when no worker is listening there (none, or one still
   * starting or stopping), so the caller deletes them itself.
   */
  trimJournal(slot: number, upTo: number): boolean {
    const s = this.slots[slot - 1];
    if (!s?.rpc || !s.listening) return false;
    s.rpc.notify('trimJournal', { upTo });
    return true;
  }

  /** Sends `trust` to every protocol-3 agent of every worker. */
  broadcastTrust(cas: string[]): void {
    for (const s of this.slots) s.rpc?.notify('trust', { cas });
  }

  /**
   * Shuts every worker down: each tells its agents when to come back (the
   * window sized to `fleetSize`), closes their channels with 1001 and stops
   * listening; workers that do not exit in time are killed.
   */
  async close(fleetSize: number, expectedRestartMs = 0): Promise<void> {
    this.stopping = true;
    const stopMs = this.deps.stopTimeoutMs ?? 15_000;
    await Promise.all(
      this.slots.map(async (s) => {
        clearTimeout(s.restartTimer);
        const w = s.worker;
        if (!w || w.isDead()) return;
        const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
        await s.rpc?.call('shutdown', { fleetSize, expectedRestartMs }, stopMs).catch((err: unknown) => this.deps.log.warn({ worker: s.slot, err: String(err) }, 'agent worker did not confirm shutdown'));
        if (w.isConnected()) w.disconnect();
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((resolve) => {
          timer = setTimeout(() => resolve('late'), stopMs);
        });
        if ((await Promise.race([exited, late])) === 'late') {
          this.deps.log.warn({ worker: s.slot, pid: w.process.pid }, 'agent worker did not exit in time; killing it');
          w.process.kill('SIGKILL');
          await exited;
        }
        clearTimeout(timer);
      }),
    );
  }

  private fork(s: Slot): void {
    const w = cluster.fork();
    const log = this.deps.log.child({ worker: s.slot });
    s.worker = w;
    s.listening = false;
    s.failure = undefined;
    s.sessions = new Map();
    s.active = true;
    s.inited = false;
    this.rebalance();
    forwardWorkerOutput(w, this.deps.log, s.slot);
    const rpc = new RpcPeer<WorkerCalls, WorkerNotes, PrimaryCalls, PrimaryNotes>(w as unknown as RpcPort, this.handlers(s, log), log);
    s.rpc = rpc;
    // A message sent as the worker dies fails later with EPIPE, as an event: without a listener it would end the primary.
    w.on('error', (err) => {
      log.warn({ err: describeError(err), pid: w.process.pid }, 'agent worker IPC channel failed');
      rpc.close('the agent worker IPC channel failed');
    });
    w.once('exit', (code, signal) => this.onExit(s, w, code, signal));
  }

  private onExit(s: Slot, w: Worker, code: number | null, signal: string | null): void {
    if (s.worker !== w) return;
    s.rpc?.close('the agent worker exited');
    s.listening = false;
    s.active = false;
    if (!this.stopping) this.rebalance();
    const at = this.deps.now();
    const lost = [...s.sessions.values()];
    s.sessions = new Map();
    for (const rs of lost) {
      rs.ended = true;
      if (this.deps.registry.get(rs.deviceId) !== rs) continue;
      this.deps.registry.unregister(rs, { at, clean: false });
      this.deps.services.onEvent({ kind: 'disconnect', deviceId: rs.deviceId, code: 1006, reason: 'agent worker exited', at });
    }
    this.deps.services.workerExited(s.slot);
    const first = this.firstListen.get(s.slot);
    this.firstListen.delete(s.slot);
    if (this.stopping) {
      this.deps.log.info({ worker: s.slot, pid: w.process.pid, code, signal }, 'agent worker stopped');
      return;
    }
    if (first) {
      first.reject(startFailure(s, code, signal));
      return;
    }
    s.deaths = [...s.deaths.filter((t) => at - t < 60_000), at];
    const { baseMs, capMs } = this.deps.restart ?? DEFAULT_RESTART;
    const delayMs = Math.min(capMs, baseMs * 2 ** (s.deaths.length - 1));
    this.deps.log.error({ worker: s.slot, pid: w.process.pid, code, signal, sessionsLost: lost.length, restartInMs: delayMs }, 'agent worker died; its agents are disconnected');
    s.restartTimer = setTimeout(() => {
      if (!this.stopping) this.fork(s);
    }, delayMs);
  }

  /** Splits the handshake budget over the active workers and tells each whose share changed (a new one hears it in init). */
  private rebalance(): void {
    const active = this.slots.filter((s) => s.active);
    const shares = handshakeShares(this.deps.handshakeBudget, active.map((s) => s.slot));
    for (const s of active) {
      const share = shares.get(s.slot)!;
      if (share === s.share) continue;
      s.share = share;
      if (s.inited) s.rpc?.notify('handshakeShare', { share });
    }
  }

  /** Admits the hellos of one worker's turn, each as a single process would, answering once all are decided. */
  private admitAll(s: Slot, items: readonly { readonly sid: number; readonly hello: HelloFacts }[], owner: SessionOwner, log: Logger): Promise<AdmitDecision[]> {
    const { services, registry } = this.deps;
    const admitOne = async ({ sid, hello }: { readonly sid: number; readonly hello: HelloFacts }): Promise<AdmitDecision> => {
      const rs = new RemoteSession(hello.deviceId, hello.connect.fingerprint, sid, s.slot, owner);
      s.sessions.set(sid, rs);
      const old = registry.get(hello.deviceId);
      if (old instanceof RemoteSession) await old.refreshAlive();
      if (rs.ended) return { admitted: false, maxAgents: services.admission.settings.maxAgents, retryAfterMs: 0 };
      // The logger is made only for a failure to log (a child per hello cost every connect some microseconds).
      const decision = await admitSession<AgentChannel>(rs, hello, services.admission, () => log.child({ deviceId: hello.deviceId }));
      if (decision.admitted && !rs.ended) services.onEvent({ kind: 'connect', deviceId: hello.deviceId, address: hello.address, at: hello.at });
      if (!decision.admitted) s.sessions.delete(sid);
      return decision;
    };
    return Promise.all(items.map(admitOne));
  }

  private onListening(s: Slot, port: number, log: Logger): void {
    s.listening = true;
    this.boundPort = port;
    log.info({ port, pid: s.worker?.process.pid }, 'agent worker listening');
    this.firstListen.get(s.slot)?.resolve();
    this.firstListen.delete(s.slot);
  }

  private handlers(s: Slot, log: Logger): RpcHandlers<PrimaryCalls, PrimaryNotes> {
    const { services, registry } = this.deps;
    const owner = {
      close: (sid: number, code: number, reason: string) => s.rpc?.notify('close', { sid, code, reason }),
      trust: (sid: number, cas: string[]) => s.rpc?.notify('trust', { cas, sid }),
      probe: (sid: number) => s.rpc?.call('probe', { sid }, 5000) ?? Promise.resolve(false),
    };
    return {
      calls: {
        lookupDevice: ({ serial, cn }) => services.backend.lookupDevice(serial, cn ?? undefined),
        admit: ({ items }) => this.admitAll(s, items, owner, log),
        report: async ({ report, ctx }) => {
          await services.recordReport(report, ctx);
          return null;
        },
        events: ({ events, ctx }) => services.recordEvents(events, ctx),
        renew: ({ deviceId, csr }) => services.renewCertificate(deviceId, csr),
        enroll: (req) => services.backend.enroll(req),
        findToken: async ({ secret }) => (await services.backend.portcheck.enrollTokens.findBySecret(secret)) ?? null,
        recordEvidence: async ({ observations }) => {
          await services.backend.portcheck.evidence.record(observations);
          return null;
        },
      },
      notes: {
        ready: () => {
          s.inited = true;
          s.rpc?.notify('init', { ...this.deps.init(), slot: s.slot, protocol: CLUSTER_PROTOCOL_VERSION, logLevel: this.deps.log.level, handshakeShare: s.share });
          // A worker forked again after a death starts with the blocks already in force.
          for (const b of this.deps.enrollLimiter.blocked(this.deps.now())) s.rpc?.notify('blockAddress', { address: b.key, until: b.until });
        },
        listening: ({ port }) => this.onListening(s, port, log),
        failed: (why) => {
          s.failure = why;
        },
        sessionClosed: ({ sid, facts, code, reason, ready }) => {
          const rs = s.sessions.get(sid);
          if (!rs) return;
          s.sessions.delete(sid);
          rs.ended = true;
          registry.unregister(rs, facts);
          if (ready) services.onEvent({ kind: 'disconnect', deviceId: rs.deviceId, code, reason, at: facts.at });
        },
        reject: (e) => services.onEvent(e),
        enrollFailed: ({ address }) => this.countEnrollFailure(address),
        checkinsSeen: ({ items }) => services.checkinsSeen(items),
      },
    };
  }
}
