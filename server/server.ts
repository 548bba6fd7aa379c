/**
 * Builds one Rollcall server from a validated configuration: storage, PKI,
 * the agent listener, the console API and the live session registry. No
 * module-level state: everything hangs off the returned object.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { describeError } from '../common/errors.js';
import { agentMessageDecoder } from '../common/protocol.js';
import { reportToObservations } from './agent-reports.js';
import { droppedCount, eventsToObservations, offlineCheckins } from './agent-events.js';
import { renewCertificate } from './cert-renewal.js';
import { ROLLCALL_VERSION } from '../common/version.js';
import { buildAgentListener } from './agent-listener.js';
import { AgentBinaries, defaultLinuxAgentBinary } from './agent-download.js';
import { Installers } from './installer/installers.js';
import { Questions } from './questions.js';
import type { AgentSession, SessionEvent } from './agent-session.js';
import { localAgentBackend } from './agent-backend.js';
import { AgentWorkerPool, type PrimaryServices } from './cluster/worker-pool.js';
import { CheckinsSeen } from './cluster/worker-checkins.js';
import type { WorkerTls } from './cluster/messages.js';
import { admitSession, type AdmissionDeps } from './session-admission.js';
import { CheckinWriter } from './checkin-writer.js';
import { certificateHosts, type ServerConfig } from './config.js';
import { agentCommand, buildConsoleApi } from './console-api.js';
import type { AuthSettings } from './console/auth.js';
import { LiveFeed } from './console/live-feed.js';
import { FailureLimiter } from './failure-limiter.js';
import { GroupAdmin } from './group-admin.js';
import type { HostResolver } from './health/public-hosts.js';
import type { ListenerState } from './health/report-types.js';
import { buildHealthService, type HealthService } from './health/service.js';
import { Customers } from './msp/customers.js';
import { defaultFetchPlanner, defaultFetchTree } from './msp/fetch-tree.js';
import { loadSecretBox } from './msp/secret-box.js';
import { MspSync, type FetchTree } from './msp/sync-service.js';
import { computePresence, lastContact } from './presence.js';
import { parseRestartTiming, RESTART_TIMING_KEY } from './restart-spread.js';
import type { Device } from './storage/devices-store.js';
import type { HttpsApp } from './http-common.js';
import { ensureServerPki, issuingCa, trustedCaPems, type ServerPki } from './pki-store.js';
import { CaRotation } from './ca-rotation.js';
import { quietPassesBeforePing, SessionRegistry, type AgentChannel } from './session-registry.js';
import { loadOrCreateTicketKey, startTicketRotation, ticketKeyFile } from './tls-tickets.js';
import { CONNECT_BATCH_INTERVAL_MS, ConnectRecorder } from './connect-recorder.js';
import { CheckinJournal, JOURNAL_FILE } from './storage/checkin-journal.js';
import { openConnectReads } from './storage/connect-reads.js';
import { WorkerJournalFolder } from './storage/worker-journals.js';
import { openStorage, type Storage } from './storage/index.js';
import { randomPassword } from './storage/users-store.js';

/** Seams for tests and embedding. */
export interface ServerOptions {
  readonly log: Logger;
  readonly now?: () => number;
  /** Observes session lifecycle events. */
  readonly onEvent?: (e: SessionEvent) => void;
  /** Fetches MSP portal trees (default: file exports and the portal API). */
  readonly fetchTree?: FetchTree;
  /** Resolves the public host names for the health report (default: the system resolver). */
  readonly resolveHost?: HostResolver;
  /** Console login and session numbers (default: console/auth.ts). */
  readonly auth?: AuthSettings;
  /** The compiled agent worker entry (default: cluster/worker-main.js beside this module, or under dist/ when run from source). */
  readonly agentWorkerEntry?: string;
  /** Re-fork delay of a dead agent worker (default 500 ms doubling to 30 s). */
  readonly agentWorkerRestart?: { readonly baseMs: number; readonly capMs: number };
  /** Background fold period of the agent workers' check-in journals (default 1000 ms; they are also folded on a worker's exit, on flush and on close). */
  readonly workerJournalFoldMs?: number;
}

/** A running (or ready to run) server. */
export interface RollcallServer {
  readonly config: ServerConfig;
  readonly storage: Storage;
  readonly pki: ServerPki;
  /** CA rotation: status, rotate, and the cutover timer. */
  readonly ca: CaRotation;
  /** Every admitted agent channel of the server (with agent workers: RemoteSessions standing for theirs). */
  readonly registry: SessionRegistry<AgentChannel>;
  /** The agent worker processes, when `agentWorkers` > 0. */
  readonly agentWorkers: AgentWorkerPool | undefined;
  readonly writer: CheckinWriter;
  readonly msp: MspSync;
  readonly customers: Customers;
  /** Port and visibility health: the report, alerts and their webhook. */
  readonly health: HealthService;
  /** Each listener: its role, port, host and whether it is bound now. */
  listeners(): ListenerState[];
  /** Binds both listeners. */
  start(): Promise<void>;
  /** Bound ports (valid after start). */
  readonly agentPort: number;
  readonly consolePort: number;
  /** Stops listening, closes every agent channel with 1001, flushes, closes storage. */
  close(): Promise<void>;
  /** The console's live feed. */
  readonly feed: LiveFeed;
  /**
   * Makes the first console admin when no admin user exists: user `admin` with the configured
   * password (ROLLCALL_ADMIN_PASSWORD) or a generated one, returned to be shown once.
   */
  createInitialAdminUser(): Promise<{ username: string; password: string | null } | undefined>;
  /** Makes the first admin API token on a fresh install; returns its secret, or undefined if one exists. */
  createInitialAdminToken(): Promise<string | undefined>;
  /** Writes `<data-dir>/cli.json` (mode 0600) so admin commands on this machine find the API. */
  writeLocalCliCredentials(): Promise<string>;
}

/** The compiled worker entry: beside this module when it runs from dist/, under dist/ when it runs from source (tests). */
function defaultWorkerEntry(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return path.join(path.dirname(here), 'cluster', 'worker-main.js');
  return path.join(path.dirname(here), '..', 'dist', 'server', 'cluster', 'worker-main.js');
}

/** The file admin commands read when given --data-dir. */
export const LOCAL_CLI_FILE = 'cli.json';

/**
 * Opens (and folds) the agent workers' check-in journals, this run's slots
 * and any left by an earlier run; an unreadable one is moved aside, logged,
 * and its worker starts with a new file.
 */
function openWorkerJournals(
  config: ServerConfig,
  storage: Storage,
  log: Logger,
  seen: CheckinsSeen,
  foldEveryMs: number | undefined,
  handTrim: (slot: number, upTo: number) => boolean,
): Promise<WorkerJournalFolder> {
  return WorkerJournalFolder.open(config.dataDir, storage, {
    slots: config.agentWorkers,
    synchronous: config.synchronous,
    foldEveryMs,
    handTrim,
    onFolded: (updates) => seen.folded(updates),
    onFileError: (file, err) => log.error({ file, err: describeError(err) }, 'cannot fold an agent worker\'s check-in journal; the others are folded, this one is tried again'),
    onFoldError: (err) => log.warn({ err: describeError(err) }, 'agent worker check-in journal fold failed; retrying'),
    onMovedAside: (file, movedTo, err) =>
      log.error({ file, movedTo, err: describeError(err) }, 'agent worker check-in journal unreadable; moved aside (its check-ins are not folded) and made anew'),
  });
}

/** Creates storage and PKI and wires the listeners; call start() to listen. */
export async function buildServer(config: ServerConfig, opts: ServerOptions): Promise<RollcallServer> {
  const now = opts.now ?? Date.now;
  const log = opts.log;
  const buildStartedAt = performance.now();
  await fs.mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const pkiDir = path.join(config.dataDir, 'pki');
  let pki = await ensureServerPki(pkiDir, certificateHosts(config));
  if (pki.createdCa) log.info({ caPin: pki.caPin }, 'created a new certification authority');
  if (pki.issuedServerCert) log.info({ hosts: certificateHosts(config) }, 'issued a server certificate');
  const dbFile = path.join(config.dataDir, 'rollcall.db');
  const storage = await openStorage(dbFile, { synchronous: config.synchronous });
  const registry = new SessionRegistry<AgentChannel>();
  // This start's own duration (known once listening) and the last stop's stand for the next restart in the shutdown notice.
  const lastTiming = parseRestartTiming(await storage.meta.get(RESTART_TIMING_KEY));
  const timing = { startupMs: lastTiming?.startupMs ?? 0, shutdownMs: lastTiming?.shutdownMs ?? 0 };
  const expectedRestartMs = (): number => timing.startupMs + timing.shutdownMs;
  const groupAdmin = new GroupAdmin(storage);
  const msp = new MspSync({
    storage,
    fetchTree: opts.fetchTree ?? defaultFetchTree(log.child({ component: 'msp' })),
    // A fetcher handed in (tests) is planned on the event loop; the default fetches and plans in a worker thread.
    ...(opts.fetchTree ? {} : { fetchPlanner: defaultFetchPlanner(dbFile, log.child({ component: 'msp' })) }),
    secrets: await loadSecretBox(path.join(config.dataDir, 'secret.key')),
    now,
    log: log.child({ component: 'msp' }),
    syncIntervalMs: config.mspSyncIntervalSec * 1000,
  });
  const presenceOf = (d: Pick<Device, 'id' | 'lastCheckinAt' | 'lastConnectedAt' | 'intervalSec'>) => {
    const disconnect = registry.lastDisconnect(d.id);
    const last = lastContact(d);
    const connected = registry.get(d.id) !== undefined;
    return computePresence({
      connected,
      closedCleanly: !connected && !!disconnect?.clean && (last === null || disconnect.at >= last),
      lastCheckinAt: d.lastCheckinAt,
      lastConnectedAt: d.lastConnectedAt,
      intervalSec: d.intervalSec ?? config.checkinIntervalSec,
      now: now(),
    });
  };
  const journal = await CheckinJournal.open(path.join(config.dataDir, JOURNAL_FILE), storage, {
    synchronous: config.synchronous,
    onFoldError: (err) => log.warn({ err: describeError(err) }, 'check-in journal fold failed; retrying'),
  });
  const feed = new LiveFeed({ briefs: (ids) => storage.devices.briefs(ids), log: log.child({ component: 'feed' }) });
  const onEvent = (e: SessionEvent): void => {
    feed.publish(e);
    opts.onEvent?.(e);
  };
  // With agent workers, check-ins are journaled in the workers (checkins-w<slot>.db) and folded here; the primary hears of them in notes.
  const seen = new CheckinsSeen(onEvent);
  let pool: AgentWorkerPool | undefined;
  // Each worker deletes what was folded from its own file (one writer per file); the primary only for a slot with no worker listening.
  const workerJournals =
    config.agentWorkers > 0 ? await openWorkerJournals(config, storage, log, seen, opts.workerJournalFoldMs, (slot, upTo) => pool?.trimJournal(slot, upTo) ?? false) : undefined;
  const writer = new CheckinWriter((updates) => journal.append(updates), {
    flushDelayMs: config.flushDelayMs,
    settle: async () => {
      await journal.fold();
      await workerJournals?.fold();
    },
  });
  const tls = { server: pki.server, caCertPem: pki.ca.certPem, handshakeTimeoutMs: config.handshakeTimeoutMs };
  const clientCas = (p: ServerPki): string[] => trustedCaPems(p) ?? [p.ca.certPem];
  const connects = new ConnectRecorder({
    db: storage.db,
    recordConnects: (batch, sql) => storage.devices.recordConnects(batch, sql),
    recordSightings: (list, sql) => storage.evidence.recordSightings(list.map((s) => ({ role: 'agent' as const, ...s })), sql),
  }, { batchIntervalMs: CONNECT_BATCH_INTERVAL_MS });
  let agentApp: HttpsApp | undefined;
  let consoleApp: HttpsApp | undefined;
  const portOf = (app: HttpsApp | undefined): number => (app?.server.address() as AddressInfo | null)?.port ?? 0;
  const agentPort = (): number => (pool ? pool.port : portOf(agentApp));
  const workerTls = (p: ServerPki): WorkerTls => ({ keyPem: p.server.keyPem, certChainPem: p.server.certPem + p.ca.certPem, clientCaPems: clientCas(p), caCertPem: p.ca.certPem });

  const questions = new Questions({
    storage,
    closeChannel: (id, code, reason) => registry.get(id)?.close(code, reason),
    recordConnect: (id, facts) => connects.recordConnect(id, facts),
    now,
    log: log.child({ component: 'questions' }),
  });
  const binaries = new AgentBinaries({ 'linux-x64': config.agentBinary ?? defaultLinuxAgentBinary(), 'windows-x64': config.agentBinaryWindows });
  const ca = new CaRotation({
    dir: pkiDir,
    hosts: certificateHosts(config),
    get: () => pki,
    install: (fresh) => {
      pki = fresh;
      agentApp?.server.setSecureContext({ key: fresh.server.keyPem, cert: fresh.server.certPem + fresh.ca.certPem, ca: clientCas(fresh), minVersion: 'TLSv1.2' });
      pool?.setTls(workerTls(fresh));
      consoleApp?.server.setSecureContext({ key: fresh.server.keyPem, cert: fresh.server.certPem + fresh.ca.certPem, minVersion: 'TLSv1.2' });
      const cas = trustedCaPems(fresh);
      if (cas && pool) pool.broadcastTrust(cas);
      else if (cas) for (const session of registry.values()) session.sendTrust(cas);
    },
    now,
    log: log.child({ component: 'ca' }),
  });

  // One process reads its connects as an agent worker does (the workers' primary needs no such connection).
  const connectReads = config.agentWorkers > 0 ? undefined : await openConnectReads(dbFile);
  const backend = localAgentBackend({
    storage,
    ...(connectReads ? { connectReads } : {}),
    ca: () => pki.ca,
    placementProblem: (g) => groupAdmin.placementProblem(g),
    certValiditySec: config.agentCertValiditySec,
    now,
    log: log.child({ listener: 'agent' }),
  });
  const admission: AdmissionDeps<AgentChannel> = {
    registry,
    settings: config,
    random: Math.random,
    // Identity questions (clones, hardware changes) are raised on the way to storage; the facts go through the batching recorder.
    recordConnect: (id, f, stored) => questions.connected(id, f, stored),
    flagPossibleClone: (id, at) => questions.cloneSuspected(id, at),
    latestSeq: (id) => Math.max(writer.latestSeq(id), seen.latestSeq(id)),
    lastEventSeq: (id) => storage.events.lastSeq(id),
    trustedCas: () => trustedCaPems(pki),
    recordSighting: (s) => connects.recordSighting(s),
  };
  const services: PrimaryServices = {
    backend,
    admission,
    recordReport: (report, ctx) => storage.evidence.record(reportToObservations(report, ctx)),
    recordEvents: async (events, ctx) => {
      const fresh = await storage.events.record(ctx.deviceId, events, ctx.now, async (news, tx) => {
        await storage.evidence.record(eventsToObservations(news, ctx), tx);
        const offline = offlineCheckins(news);
        if (offline.lastAt !== null) await storage.devices.addOfflineCheckins(ctx.deviceId, offline.count, offline.lastAt, tx);
      });
      return { fresh: fresh.length, dropped: droppedCount(fresh) };
    },
    renewCertificate: (id, csr) => renewCertificate({ storage, ca: () => issuingCa(pki), now, validitySec: config.agentCertValiditySec }, id, csr),
    onEvent: (e) => (e.kind === 'reject' ? feed.publish(e) : onEvent(e)),
    checkinsSeen: (items) => seen.noted(items),
    workerExited: () => void workerJournals?.fold().catch((err: unknown) => log.warn({ err: describeError(err) }, 'agent worker check-in journal fold failed; retrying')),
  };
  const tickets = await loadOrCreateTicketKey(ticketKeyFile(config.dataDir), now());
  const ticketLog = log.child({ listener: 'agent' });
  if (tickets.outcome === 'replaced') ticketLog.warn({ file: ticketKeyFile(config.dataDir), problem: tickets.problem }, 'TLS ticket key unreadable; made a new one (agents make full handshakes once)');
  else if (tickets.outcome === 'created') ticketLog.info({ file: ticketKeyFile(config.dataDir) }, 'TLS ticket key created');
  let stopTicketRotation: (() => void) | undefined;

  if (config.agentWorkers > 0) {
    pool = new AgentWorkerPool({
      count: config.agentWorkers,
      entry: opts.agentWorkerEntry ?? defaultWorkerEntry(),
      registry,
      services,
      init: () => ({ config, instanceId: storage.instanceId, tls: workerTls(pki), ticketKeys: tickets.key.keys.toString('hex'), consolePort: portOf(consoleApp), databaseFile: dbFile }),
      // Per agent-port process, as in one process: the primary splits N times that over the running workers.
      handshakeBudget: config.maxPendingHandshakes * config.agentWorkers,
      enrollLimiter: new FailureLimiter(config.enrollFailuresPerWindow, config.enrollFailureWindowMs),
      now,
      log: log.child({ listener: 'agent' }),
      restart: opts.agentWorkerRestart,
    });
  } else {
    const localRegistry = registry as SessionRegistry<AgentSession>;
    agentApp = await buildAgentListener({
      binaries,
      tls: { ...tls, clientCaPems: clientCas(pki) },
      backend,
      caCertPem: () => pki.ca.certPem,
      enrollLimiter: new FailureLimiter(config.enrollFailuresPerWindow, config.enrollFailureWindowMs),
      registry,
      now,
      log: log.child({ listener: 'agent' }),
      onReject: (e) => feed.publish(e),
      expectedRestartMs,
      ticketKeys: tickets.key.keys,
      admission: { maxPendingHandshakes: config.maxPendingHandshakes },
      session: {
        decoder: agentMessageDecoder(),
        admission: {
          admit: (session, hello, sessionLog) => admitSession(session, hello, admission, sessionLog),
          release: (session, end) => localRegistry.unregister(session, end),
        },
        recordCheckin: (r) => writer.record(r),
        settings: config,
        now,
        onEvent,
        instanceId: storage.instanceId,
        listenerPorts: () => [
          { port: agentPort(), role: 'agent', required: true },
          { port: portOf(consoleApp), role: 'console', required: false },
        ],
        recordReport: services.recordReport,
        recordEvents: services.recordEvents,
        renewCertificate: services.renewCertificate,
      },
    });
  }
  const facts = {
    instanceId: storage.instanceId,
    version: ROLLCALL_VERSION,
    get caPin() {
      return pki.caPin;
    },
    publicHosts: config.publicHosts,
    agentPort,
    consolePort: () => portOf(consoleApp),
    checkinIntervalSec: config.checkinIntervalSec,
  };
  const customers = new Customers({ storage, presenceOf, agentCommand: (secret) => agentCommand(facts, secret), now });
  const installers = new Installers({ storage, customers, binaries, facts: { ...facts, caPem: pki.ca.certPem }, now });
  const listenerOf = (role: ListenerState['role'], app: HttpsApp | undefined, port: number): ListenerState => ({
    role,
    port: app?.server.listening ? portOf(app) : port,
    host: config.listenHost,
    listening: app?.server.listening ?? false,
  });
  const agentListener = (): ListenerState =>
    pool ? { role: 'agent', port: pool.listening ? pool.port : config.agentPort, host: config.listenHost, listening: pool.listening } : listenerOf('agent', agentApp, config.agentPort);
  const listeners = (): ListenerState[] => [agentListener(), listenerOf('console', consoleApp, config.consolePort)];
  const health = await buildHealthService({
    config,
    storage,
    dbFile: path.join(config.dataDir, 'rollcall.db'),
    certificates: () => [
      { name: 'server', certPem: pki.server.certPem },
      { name: 'ca', certPem: pki.ca.certPem },
    ],
    listeners,
    presenceOf,
    resolveHost: opts.resolveHost,
    now,
    log,
  });
  consoleApp = await buildConsoleApi({
    tls,
    storage,
    groupAdmin,
    msp,
    customers,
    registry,
    now,
    log: log.child({ listener: 'console' }),
    facts,
    health: health.api,
    installers,
    questions,
    feed,
    auth: opts.auth,
    ca,
  });

  const server: RollcallServer = {
    config,
    storage,
    get pki() {
      return pki;
    },
    ca,
    registry,
    agentWorkers: pool,
    writer,
    msp,
    customers,
    health,
    feed,
    listeners,
    get agentPort() {
      return agentPort();
    },
    get consolePort() {
      return portOf(consoleApp);
    },
    async start() {
      if (pool) {
        // The console first: workers advertise its port in `welcome`.
        await consoleApp!.listen({ host: config.listenHost, port: config.consolePort });
        await pool.start();
      } else {
        await agentApp!.listen({ host: config.listenHost, port: config.agentPort });
        await consoleApp!.listen({ host: config.listenHost, port: config.consolePort });
        registry.startHeartbeat(config.pingIntervalMs, quietPassesBeforePing(config.pingIntervalMs, config.checkinIntervalSec)); // with workers, each pings its own sessions
      }
      stopTicketRotation = startTicketRotation({
        file: ticketKeyFile(config.dataDir),
        key: tickets.key,
        now,
        onRotated: (keys) => (pool ? pool.setTicketKeys(keys) : agentApp?.server.setTicketKeys(keys)),
        log: ticketLog,
      });
      journal.start();
      workerJournals?.start();
      ca.start();
      msp.startScheduler();
      health.start();
      timing.startupMs = Math.round(performance.now() - buildStartedAt);
      await storage.meta.set(RESTART_TIMING_KEY, timing).catch((err: unknown) => log.warn({ err: describeError(err) }, 'cannot record how long the start took'));
      log.info({ agentPort: server.agentPort, consolePort: server.consolePort, host: config.listenHost, instanceId: storage.instanceId, startupMs: timing.startupMs }, 'listening');
    },
    async close() {
      const closeStartedAt = performance.now();
      ca.stop();
      await msp.close();
      stopTicketRotation?.();
      if (pool) await pool.close(registry.size, expectedRestartMs());
      else registry.closeAll(1001, 'server shutting down');
      await Promise.allSettled([agentApp?.close(), consoleApp?.close()]);
      await connectReads?.close().catch((err: unknown) => log.warn({ err: describeError(err) }, 'cannot close the connect reads'));
      agentApp = undefined;
      consoleApp = undefined;
      await health.close();
      await writer.close();
      await connects.close();
      await journal.close();
      await workerJournals?.close(); // the workers have exited: every row they acked is in their files
      timing.shutdownMs = Math.round(performance.now() - closeStartedAt);
      await storage.meta.set(RESTART_TIMING_KEY, timing).catch((err: unknown) => log.warn({ err: describeError(err) }, 'cannot record how long the stop took'));
      await storage.db.close();
      log.info({ shutdownMs: timing.shutdownMs }, 'server stopped');
    },
    async createInitialAdminUser() {
      if (await storage.users.hasAdmin()) return undefined;
      const password = config.adminPassword ?? randomPassword();
      let username = 'admin';
      for (let n = 2; !(await storage.users.isFree(username)); n += 1) username = `admin-${n}`;
      await storage.users.create({ username, password, role: 'admin', homeGroupId: null, now: now() });
      log.info({ user: username, passwordFrom: config.adminPassword ? 'environment' : 'generated' }, 'created the first console admin');
      return { username, password: config.adminPassword ? null : password };
    },
    async createInitialAdminToken() {
      if ((await storage.apiTokens.count()) > 0) return undefined;
      const { secret } = await storage.apiTokens.create('initial-admin', now());
      return secret;
    },
    async writeLocalCliCredentials() {
      const { secret } = await storage.apiTokens.create('local-cli', now());
      const host = config.listenHost === '0.0.0.0' || config.listenHost === '::' ? '127.0.0.1' : config.listenHost;
      const file = path.join(config.dataDir, LOCAL_CLI_FILE);
      const body = JSON.stringify({ server: `https://${host}:${server.consolePort}`, token: secret, caFile: path.join(config.dataDir, 'pki', 'ca.crt') }, null, 2);
      await fs.writeFile(`${file}.tmp`, body, { mode: 0o600 });
      await fs.rename(`${file}.tmp`, file);
      return file;
    },
  };
  return server;
}
