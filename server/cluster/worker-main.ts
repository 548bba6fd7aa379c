/**
 * Entry of an agent worker process (forked by cluster/worker-pool.ts).
 *
 * Waits for `init`, then builds the same agent listener as a single
 * process. Certificate lookups are read here, from a read-only connection
 * to the main database (worker-lookup.ts); check-ins go to the worker's own
 * journal and are acked once committed there (worker-checkins.ts: the
 * primary folds the journal and hears of them in a note per 200 ms); other
 * storage writes, the CA and the global registry are reached through the
 * primary over IPC: admission on `hello` (one call per event-loop turn),
 * reports, events, renewals, enrollment and portcheck reports. Pings, frame budgets, TLS, WebSocket framing and
 * the handshake gate (with this worker's share of the box's budget) stay
 * here. Exits when the primary's channel goes.
 */
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino, type Logger } from 'pino';
import { CloseCode } from '../../common/close-codes.js';
import { agentMessageDecoder } from '../../common/protocol.js';
import type { AgentBackend } from '../agent-backend.js';
import { AgentBinaries, defaultLinuxAgentBinary } from '../agent-download.js';
import type { AdmissionStats } from '../admission.js';
import { buildAgentListener } from '../agent-listener.js';
import type { AgentSession, SessionAdmission } from '../agent-session.js';
import { RelayedFailureLimits } from '../failure-limiter.js';
import type { HttpsApp } from '../http-common.js';
import { quietPassesBeforePing, SessionRegistry } from '../session-registry.js';
import { openConnectReads } from '../storage/connect-reads.js';
import { AdmitBatcher } from './admit-batcher.js';
import { describeError } from '../../common/errors.js';
import { WorkerJournal, workerJournalFile } from '../storage/worker-journals.js';
import { WorkerCheckins, workerCommitGapMs } from './worker-checkins.js';
import { workerDeviceLookup, type LookupStats } from './worker-lookup.js';
import { CLUSTER_PROTOCOL_VERSION, type PrimaryCalls, type PrimaryNotes, type WorkerCalls, type WorkerInit, type WorkerNotes, type WorkerSample } from './messages.js';
import { RpcPeer, type RpcPort } from './rpc.js';

type ToPrimary = RpcPeer<PrimaryCalls, PrimaryNotes, WorkerCalls, WorkerNotes>;

/** Sessions sent to the primary's `admit`, by their id in this worker. */
class SessionIds {
  private next = 1;
  readonly bySid = new Map<number, AgentSession>();
  readonly byIdentity = new Map<AgentSession, number>();

  add(session: AgentSession): number {
    const sid = this.next++;
    this.bySid.set(sid, session);
    this.byIdentity.set(session, sid);
    return sid;
  }

  remove(session: AgentSession): number | undefined {
    const sid = this.byIdentity.get(session);
    if (sid === undefined) return undefined;
    this.byIdentity.delete(session);
    this.bySid.delete(sid);
    return sid;
  }
}

/**
 * Admission decided by the primary (the hellos of a turn in one call); this worker's registry keeps its own sessions for pings and shutdown.
 * The latest check-in sequence is the higher of the primary's (other workers' notes, folds) and this worker's own (its journal, not yet told).
 */
function remoteAdmission(batcher: AdmitBatcher, local: SessionRegistry<AgentSession>, ids: SessionIds, rpc: ToPrimary, checkins: WorkerCheckins): SessionAdmission {
  return {
    admit: (session, hello) => {
      const sid = ids.add(session);
      return batcher.admit({ sid, hello }).then((d) => {
        if (!d.admitted) return d;
        if (ids.byIdentity.has(session)) local.register(session, CloseCode.REPLACED);
        return { ...d, latestSeq: Math.max(d.latestSeq, checkins.latestSeq(hello.deviceId)) };
      });
    },
    release: (session, end) => {
      local.unregister(session, end);
      const sid = ids.remove(session);
      checkins.flushNote(); // the primary hears of its last check-ins before of its end (worker-checkins.ts)
      if (sid !== undefined) rpc.notify('sessionClosed', { sid, facts: { at: end.at, clean: end.clean }, code: end.code, reason: end.reason, ready: end.ready });
    },
  };
}

function remoteBackend(rpc: ToPrimary, instanceId: string, lookupDevice: AgentBackend['lookupDevice']): AgentBackend {
  return {
    instanceId,
    lookupDevice,
    enroll: (req) => rpc.call('enroll', req),
    portcheck: {
      enrollTokens: { findBySecret: async (secret) => (await rpc.call('findToken', { secret })) ?? undefined },
      evidence: { record: (observations) => rpc.call('recordEvidence', { observations }) },
    },
  };
}

/** Runs one worker from its init message until the primary shuts it down or goes away. */
async function runWorker(rpc: ToPrimary, init: WorkerInit, state: WorkerState): Promise<void> {
  const { config } = init;
  const log = state.log;
  const now = Date.now;
  const registry = new SessionRegistry<AgentSession>();
  state.registry = registry;
  const ids = state.ids;
  let caCertPem = init.tls.caCertPem;
  const admits = new AdmitBatcher((items) => rpc.call('admit', { items }));
  state.admits = admits.stats;
  // Fails the start (with the file and SQLite's words) when the database cannot be read.
  const reads = await openConnectReads(init.databaseFile);
  const lookups = workerDeviceLookup(reads, (serial, cn) => rpc.call('lookupDevice', { serial, cn: cn ?? null }), log);
  state.lookups = lookups.stats;
  state.closeReads = () => reads.close();
  // The primary made the file before forking (or moved an unreadable one aside); failing here fails the start with the file and SQLite's words.
  const journal = await WorkerJournal.open(workerJournalFile(path.dirname(init.databaseFile), init.slot), { synchronous: config.synchronous });
  const checkins = new WorkerCheckins(journal, (items) => rpc.notify('checkinsSeen', { items }), { minGapMs: workerCommitGapMs(config.agentWorkers) });
  state.checkins = checkins;
  const app = await buildAgentListener({
    binaries: new AgentBinaries({ 'linux-x64': config.agentBinary ?? defaultLinuxAgentBinary(), 'windows-x64': config.agentBinaryWindows }),
    // The chain comes whole from the primary (server certificate + CA), hence no separate CA part.
    tls: { server: { keyPem: init.tls.keyPem, certPem: init.tls.certChainPem }, caCertPem: '', handshakeTimeoutMs: config.handshakeTimeoutMs, clientCaPems: init.tls.clientCaPems },
    backend: remoteBackend(rpc, init.instanceId, lookups.lookup),
    caCertPem: () => caCertPem,
    enrollLimiter: state.enrollLimits,
    registry,
    now,
    log,
    onReject: (e) => rpc.notify('reject', e),
    expectedRestartMs: () => state.expectedRestartMs,
    ticketKeys: Buffer.from(init.ticketKeys, 'hex'),
    // Read on every connection: a new share from the primary applies to the next one.
    admission: state.gate,
    session: {
      decoder: agentMessageDecoder(),
      admission: remoteAdmission(admits, registry, ids, rpc, checkins),
      recordCheckin: (r) => checkins.record(r),
      settings: config,
      now,
      instanceId: init.instanceId,
      listenerPorts: () => [
        { port: state.port, role: 'agent', required: true },
        { port: init.consolePort, role: 'console', required: false },
      ],
      recordReport: async (report, ctx) => void (await rpc.call('report', { report, ctx })),
      recordEvents: (events, ctx) => rpc.call('events', { events, ctx }),
      renewCertificate: (deviceId, csr) => rpc.call('renew', { deviceId, csr }),
    },
  });
  state.app = app;
  state.setCa = (pem) => {
    caCertPem = pem;
  };
  await app.listen({ host: config.listenHost, port: config.agentPort });
  const address = app.server.address();
  state.port = typeof address === 'object' && address ? address.port : config.agentPort;
  registry.startHeartbeat(config.pingIntervalMs, quietPassesBeforePing(config.pingIntervalMs, config.checkinIntervalSec));
  rpc.notify('listening', { port: state.port });
}

/** What the worker's handlers reach (filled in as the worker starts). */
interface WorkerState {
  readonly log: Logger;
  readonly ids: SessionIds;
  registry: SessionRegistry<AgentSession> | undefined;
  app: HttpsApp | undefined;
  port: number;
  setCa: (pem: string) => void;
  /** The primary's expected restart time, given with its shutdown call for the notice. */
  expectedRestartMs: number;
  /** Failed enrollments, counted by the primary for the whole box. */
  readonly enrollLimits: RelayedFailureLimits;
  /** The admission gate's limit (this worker's handshake share) and its counters once installed. */
  readonly gate: { maxPendingHandshakes: number; stats: (s: Readonly<AdmissionStats>) => void };
  handshakes: Readonly<AdmissionStats>;
  lookups: Readonly<LookupStats>;
  admits: Readonly<{ batches: number; hellos: number }>;
  closeReads: () => Promise<void>;
  /** The worker's check-in journal, once open. */
  checkins: WorkerCheckins | undefined;
}

function sample(state: WorkerState, delay: ReturnType<typeof monitorEventLoopDelay>, gc: boolean): WorkerSample {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (gc && collect) collect();
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  const maxMs = delay.max / 1e6;
  delay.reset();
  return {
    pid: process.pid,
    cpuUs: cpu.user + cpu.system,
    rssBytes: mem.rss,
    heapUsedBytes: mem.heapUsed,
    openChannels: state.registry?.size ?? 0,
    eventLoopDelayMaxMs: maxMs,
    lookups: { ...state.lookups },
    admits: { ...state.admits },
    handshakeShare: state.gate.maxPendingHandshakes,
    handshakes: { ...state.handshakes },
    checkins: { ...(state.checkins?.stats ?? { batches: 0, checkins: 0, rows: 0 }) },
  };
}

/** Wires the channel to the primary and waits for `init`. */
function main(): void {
  const bootLog = pino({ base: { workerPid: process.pid } });
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  let state: WorkerState | undefined;
  const port = process as unknown as RpcPort;
  const rpc: ToPrimary = new RpcPeer<PrimaryCalls, PrimaryNotes, WorkerCalls, WorkerNotes>(
    port,
    {
      calls: {
        probe: ({ sid }) => {
          state?.checkins?.flushNote(); // a replacement is being decided: the primary needs this worker's latest check-ins first
          return state?.ids.bySid.get(sid)?.alive ?? false;
        },
        stats: ({ gc }) => sample(state!, delay, gc),
        shutdown: async ({ fleetSize, expectedRestartMs }) => {
          if (!state) return null;
          state.expectedRestartMs = expectedRestartMs;
          state.registry?.closeAll(1001, 'server shutting down', fleetSize);
          await state.app?.close();
          await state.checkins?.close(); // the last check-ins committed and told before the primary folds this journal
          await state.closeReads();
          return null;
        },
      },
      notes: {
        init: (init) => {
          if (init.protocol !== CLUSTER_PROTOCOL_VERSION) throw new Error(`cluster protocol ${init.protocol} is not ${CLUSTER_PROTOCOL_VERSION}`);
          const log = pino({ level: init.logLevel, base: { workerPid: process.pid } });
          state = {
            log,
            ids: new SessionIds(),
            registry: undefined,
            app: undefined,
            port: 0,
            setCa: () => undefined,
            expectedRestartMs: 0,
            enrollLimits: new RelayedFailureLimits((address) => rpc.notify('enrollFailed', { address })),
            gate: {
              maxPendingHandshakes: init.handshakeShare,
              stats: (s) => {
                if (state) state.handshakes = s;
              },
            },
            handshakes: { admitted: 0, shed: 0, pending: 0 },
            lookups: { local: 0, viaPrimary: 0, readErrors: 0 },
            admits: { batches: 0, hellos: 0 },
            closeReads: () => Promise.resolve(),
            checkins: undefined,
          };
          runWorker(rpc, init, state).catch((err: unknown) => {
            const message = err instanceof Error ? err.message : String(err);
            log.fatal({ err: message }, 'agent worker cannot start');
            rpc.notify('failed', { code: (err as { code?: unknown }).code?.toString() ?? null, message });
            // Exits once the note is out: the primary sees the exit after the reason.
            process.disconnect();
          });
        },
        close: ({ sid, code, reason }) => state?.ids.bySid.get(sid)?.close(code, reason),
        trimJournal: ({ upTo }) => {
          state?.checkins?.trim(upTo).catch((err: unknown) => state?.log.warn({ err: describeError(err), upTo }, 'cannot trim folded check-ins from this worker\'s journal; the next trim takes them too'));
        },
        trust: ({ cas, sid }) => {
          if (sid !== undefined) state?.ids.bySid.get(sid)?.sendTrust(cas);
          else for (const s of state?.registry?.values() ?? []) s.sendTrust(cas);
        },
        tls: (tls) => {
          state?.app?.server.setSecureContext({ key: tls.keyPem, cert: tls.certChainPem, ca: [...tls.clientCaPems], minVersion: 'TLSv1.2' });
          state?.setCa(tls.caCertPem);
        },
        ticketKeys: ({ keys }) => state?.app?.server.setTicketKeys(Buffer.from(keys, 'hex')),
        blockAddress: ({ address, until }) => state?.enrollLimits.block(address, until, Date.now()),
        handshakeShare: ({ share }) => {
          if (!state) return;
          state.gate.maxPendingHandshakes = share;
          state.log.debug({ share }, 'handshake share changed');
        },
      },
    },
    bootLog,
  );
  // The primary is gone (or let us go): nothing here can work without it.
  process.on('disconnect', () => process.exit(0));
  // A message sent as the primary goes fails later with EPIPE, as an event on the process: the disconnect ends us.
  process.on('error', (err) => bootLog.debug({ err: describeError(err) }, 'IPC channel to the primary failed'));
  // Ctrl-C and systemd signal the whole process group: the primary's shutdown (with the reconnect spread) ends us, not the signal.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => bootLog.debug({ signal }, 'signal left to the primary'));
  rpc.notify('ready', {});
}

main();
