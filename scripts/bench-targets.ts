/**
 * Child-process entry of `npm run bench`: runs ONE server under test so its
 * CPU time and RSS can be measured from inside, and answers the driver's
 * IPC requests (see bench-target-process.ts).
 *
 *   node --expose-gc dist/scripts/bench-targets.js ours|bare   (forked by bench.js)
 *
 * `ours` is a full Rollcall server (storage, PKI files, agent and console
 * listeners) whose devices table already holds one row per bench
 * certificate; it hands the driver its console port and a fresh admin API
 * token, which `bench sync` uses to link and sync an MSP account. `bare`
 * is node https + ws with the same certificates and TLS settings that
 * answers `hello` with a welcome-shaped JSON and `checkin` with an ack: the
 * floor any mutual-TLS WebSocket server pays.
 *
 * With `profile.workers` (the scale bench, beyond one process's file limit)
 * ours runs its agent port in that many cluster workers, and bare runs that
 * many bare servers as cluster workers sharing one port the same way (the
 * kernel spreads accepts); a sample then sums CPU and RSS over the primary
 * and every worker, each measured inside its own process.
 */
import cluster, { type Worker } from 'node:cluster';
import fs from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { pino, type Logger } from 'pino';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { describeError } from '../common/errors.js';
import { CHECKIN_PATH, MAX_FRAME_BYTES } from '../common/protocol.js';
import { PROTOCOL_VERSION } from '../common/version.js';
import { resolveServerConfig } from '../server/config.js';
import { buildServer } from '../server/server.js';
import { ROOT_GROUP_ID } from '../server/storage/migrations.js';
import { openStorage } from '../server/storage/index.js';
import type { BenchPki } from './bench-pki.js';
import type { ConsoleAccess, FromTarget, SampleMode, StartProfile, TargetKind, TargetSample, ToTarget } from './bench-target-process.js';
import { TICKET_LIFETIME_SEC } from '../server/tls-tickets.js';

/** One worker process's own measurements (see WorkerStats below). */
interface ProcessSample {
  readonly cpuUs: number;
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  readonly openChannels: number;
  readonly eventLoopDelayMaxMs: number;
}

/** A listening server under test. */
interface RunningTarget {
  readonly port: number;
  /** The worker processes' samples (a full GC in each first when `gc`); absent with one process. */
  workerSamples?(gc: boolean): Promise<ProcessSample[]>;
  /** True when the channels are counted by the workers (bare); ours counts them in its global registry. */
  readonly channelsInWorkers?: boolean;
  /** Ours: the console API and an admin token, so the driver can link and sync MSP accounts. */
  readonly console?: ConsoleAccess;
  openChannels(): number;
  counters(): Record<string, number>;
  /** Resolves once work the server queued (storage writes) is done, so a sample includes its cost. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

/** Settings that keep Rollcall's protective limits out of the benchmark's way. */
const BENCH_LIMITS = {
  maxFramesPerSec: 1_000_000,
  frameBurst: 1_000_000,
  helloTimeoutMs: 600_000,
  handshakeTimeoutMs: 60_000,
  pingIntervalMs: 3_600_000,
} as const;

/** Writes the pre-made PKI where ensureServerPki looks for it, so the server makes none. */
async function writeServerPki(dataDir: string, pki: BenchPki): Promise<void> {
  const dir = path.join(dataDir, 'pki');
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.writeFile(path.join(dir, 'ca.crt'), pki.ca.certPem, { mode: 0o644 });
  await fs.writeFile(path.join(dir, 'ca.key'), pki.ca.keyPem, { mode: 0o600 });
  await fs.writeFile(path.join(dir, 'server.crt'), pki.server.certPem, { mode: 0o644 });
  await fs.writeFile(path.join(dir, 'server.key'), pki.server.keyPem, { mode: 0o600 });
}

/** Inserts one device row per bench certificate, in one transaction, before the server starts. */
async function insertDevices(dataDir: string, pki: BenchPki): Promise<void> {
  const storage = await openStorage(path.join(dataDir, 'rollcall.db'));
  try {
    const now = Date.now();
    await storage.db.transaction(async (tx) => {
      for (const a of pki.agents) {
        await storage.devices.insert(
          {
            id: a.deviceId,
            certSerial: a.serial,
            certNotAfter: a.notAfter,
            groupId: ROOT_GROUP_ID,
            placementReason: null,
            hostname: a.deviceId.replace(/^dev_/, ''),
            fingerprint: null,
            agentVersion: null,
            enrolledAt: now,
            tokenId: null,
          },
          tx,
        );
      }
    });
  } finally {
    await storage.db.close();
  }
}

async function startOurs(pki: BenchPki, dataDir: string, log: Logger, profile: StartProfile = {}): Promise<RunningTarget> {
  if (!profile.restart) {
    await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
    await writeServerPki(dataDir, pki);
    await insertDevices(dataDir, pki);
  }
  const limits = profile.scale ? (profile.maxPendingHandshakes ? { maxPendingHandshakes: profile.maxPendingHandshakes } : {}) : BENCH_LIMITS;
  const workers = profile.workers ?? 0;
  const config = resolveServerConfig({ dataDir, listenHost: '127.0.0.1', agentPort: profile.port ?? 0, consolePort: 0, agentWorkers: workers, ...limits });
  const server = await buildServer(config, { log });
  await server.start();
  const adminToken = profile.restart ? (await server.storage.apiTokens.create('bench-restart', Date.now())).secret : await server.createInitialAdminToken();
  if (adminToken === undefined) throw new Error('the fresh data directory already has an API token');
  return {
    port: server.agentPort,
    console: { port: server.consolePort, adminToken },
    openChannels: () => server.registry.size,
    ...(server.agentWorkers ? { workerSamples: (gc: boolean) => server.agentWorkers!.stats({ gc }) } : {}),
    counters: () => ({ writerBatches: server.writer.stats.batches, writerCheckins: server.writer.stats.checkins, writerRows: server.writer.stats.rows }),
    settle: async () => {
      await server.writer.flush();
      await server.storage.db.get('SELECT 1'); // queued behind every statement already queued (connect writes)
    },
    close: () => server.close(),
  };
}

/** The bare baseline's answer to one frame: comparable JSON work, no validation, no storage. */
function bareAnswer(data: RawData): string | undefined {
  const msg = JSON.parse(data.toString()) as { type?: unknown; deviceId?: unknown; seq?: unknown };
  if (msg.type === 'hello') {
    return JSON.stringify({
      type: 'welcome',
      protocol: PROTOCOL_VERSION,
      deviceId: msg.deviceId,
      intervalSec: 60,
      group: { id: ROOT_GROUP_ID, path: 'All' },
      serverTime: Date.now(),
      lastSeq: 0,
    });
  }
  if (msg.type === 'checkin') return JSON.stringify({ type: 'ack', seq: msg.seq });
  return undefined;
}

async function startBare(pki: Pick<BenchPki, 'ca' | 'server'>, log: Logger, profile: StartProfile = {}): Promise<RunningTarget> {
  const server = https.createServer({
    key: pki.server.keyPem,
    cert: pki.server.certPem + pki.ca.certPem, // the same chain our agent listener sends
    ca: [pki.ca.certPem],
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    handshakeTimeout: BENCH_LIMITS.handshakeTimeoutMs,
    // The same session settings as our agent listener, so both can resume.
    sessionIdContext: 'rollcall-agent',
    sessionTimeout: TICKET_LIFETIME_SEC,
    ...(profile.ticketKeysHex ? { ticketKeys: Buffer.from(profile.ticketKeysHex, 'hex') } : {}),
  });
  const wss = new WebSocketServer({ server, path: CHECKIN_PATH, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false });
  // Tracked so that stop can close them: upgraded sockets are no longer the http server's to close.
  const sockets = new Set<WebSocket>();
  wss.on('connection', (ws) => {
    sockets.add(ws);
    ws.on('close', () => {
      sockets.delete(ws);
    });
    ws.on('error', (err) => log.warn({ err: describeError(err) }, 'bare socket error'));
    ws.on('message', (data) => {
      try {
        const answer = bareAnswer(data);
        if (answer !== undefined) ws.send(answer);
      } catch (err) {
        log.warn({ err: describeError(err) }, 'bare server got a bad frame');
        ws.close(1007, 'bad frame');
      }
    });
  });
  // Counted, and logged at most once per 5 s: a reconnect storm makes tens of thousands of them.
  let failedHandshakes = 0;
  let lastLogAt = 0;
  server.on('tlsClientError', (err) => {
    failedHandshakes += 1;
    if (Date.now() - lastLogAt < 5000) return;
    lastLogAt = Date.now();
    log.warn({ err: describeError(err), failedHandshakes }, 'bare TLS handshakes failed');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(profile.port ?? 0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    openChannels: () => sockets.size,
    counters: () => ({}),
    settle: async () => undefined,
    close: async () => {
      for (const ws of sockets) ws.close(1001, 'server shutting down');
      server.closeAllConnections();
      await new Promise<void>((resolve) => wss.close(() => server.close(() => resolve())));
    },
  };
}

/** Primary → bare worker. */
type ToBareWorker =
  | { readonly type: 'start'; readonly pki: Pick<BenchPki, 'ca' | 'server'>; readonly profile: StartProfile }
  | { readonly type: 'stats'; readonly id: number; readonly gc: boolean }
  | { readonly type: 'stop' };

/** Bare worker → primary. */
type FromBareWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'listening'; readonly port: number }
  | { readonly type: 'stats'; readonly id: number; readonly sample: ProcessSample }
  | { readonly type: 'failed'; readonly message: string };

let lastMemory: { rss: number; heapUsed: number } = { rss: 0, heapUsed: 0 };

/** process.memoryUsage(), or the last reading when it cannot be taken (it opens /proc/self/stat: EMFILE at the open-file limit). */
function memoryOrLast(): { rss: number; heapUsed: number } {
  try {
    const m = process.memoryUsage();
    lastMemory = { rss: m.rss, heapUsed: m.heapUsed };
  } catch {
    // keep the last reading
  }
  return lastMemory;
}

/** This process's own figures, after a full GC when asked (and --expose-gc gave one). */
function ownSample(gc: boolean, openChannels: number, loopDelay: IntervalHistogram): ProcessSample {
  if (gc) globalThis.gc?.();
  const cpu = process.cpuUsage();
  const mem = memoryOrLast();
  const eventLoopDelayMaxMs = loopDelay.count > 0 ? loopDelay.max / 1e6 : 0;
  loopDelay.reset();
  return { cpuUs: cpu.user + cpu.system, rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, openChannels, eventLoopDelayMaxMs };
}

/** A bare server in a cluster worker: started, sampled and stopped by the primary. */
function bareWorkerMain(): void {
  const log = pino({ level: 'warn', base: { target: 'bare', worker: cluster.worker?.id } });
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  let target: RunningTarget | undefined;
  const send = (msg: FromBareWorker): void => {
    if (process.connected) process.send!(msg);
  };
  process.on('disconnect', () => process.exit(0)); // the primary is gone (killed in the crash storm): so are we
  process.on('message', (raw) => {
    const msg = raw as ToBareWorker;
    if (msg.type === 'start') {
      startBare(msg.pki, log, msg.profile).then(
        (t) => {
          target = t;
          send({ type: 'listening', port: t.port });
        },
        (err: unknown) => send({ type: 'failed', message: describeError(err) }),
      );
    } else if (msg.type === 'stats') {
      send({ type: 'stats', id: msg.id, sample: ownSample(msg.gc, target?.openChannels() ?? 0, loopDelay) });
    } else if (msg.type === 'stop') {
      (target ? target.close() : Promise.resolve()).finally(() => process.exit(0));
    }
  });
  // Messages sent before this module has loaded are lost: the primary waits for this before sending `start`.
  send({ type: 'ready' });
}

/** The bare baseline as `n` cluster workers sharing one port (SCHED_NONE: the kernel spreads accepts, as for ours). */
async function startBareCluster(pki: BenchPki, profile: StartProfile, n: number): Promise<RunningTarget> {
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ exec: fileURLToPath(import.meta.url), args: ['bare-worker'] });
  const workers: Worker[] = [];
  const pending = new Map<number, (s: ProcessSample) => void>();
  let nextId = 1;
  const ports = await Promise.all(
    Array.from({ length: n }, () => {
      const worker = cluster.fork();
      workers.push(worker);
      return new Promise<number>((resolve, reject) => {
        worker.on('message', (raw: FromBareWorker) => {
          if (raw.type === 'ready') worker.send({ type: 'start', pki: { ca: pki.ca, server: pki.server }, profile } satisfies ToBareWorker);
          else if (raw.type === 'listening') resolve(raw.port);
          else if (raw.type === 'failed') reject(new Error(`bare worker failed: ${raw.message}`));
          else if (raw.type === 'stats') {
            pending.get(raw.id)?.(raw.sample);
            pending.delete(raw.id);
          }
        });
        worker.once('exit', (code) => reject(new Error(`bare worker exited (${code}) before listening`)));
      });
    }),
  );
  const samples = (gc: boolean): Promise<ProcessSample[]> =>
    Promise.all(
      workers.filter((w) => w.isConnected()).map(
        (w) =>
          new Promise<ProcessSample>((resolve) => {
            const id = nextId++;
            pending.set(id, resolve);
            w.send({ type: 'stats', id, gc } satisfies ToBareWorker);
          }),
      ),
    );
  return {
    port: ports[0]!,
    workerSamples: samples,
    channelsInWorkers: true,
    openChannels: () => 0, // the workers hold them: counted from their samples
    counters: () => ({}),
    settle: async () => undefined,
    close: async () => {
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve) => {
              if (w.isDead()) return resolve();
              w.once('exit', () => resolve());
              w.send({ type: 'stop' } satisfies ToBareWorker);
            }),
        ),
      );
    },
  };
}

/** Measures this process: CPU before and after a full GC (none when quick), then memory and event-loop delay since the last sample. */
async function takeSample(target: RunningTarget, mode: SampleMode, loopDelay: IntervalHistogram): Promise<TargetSample> {
  const before = process.cpuUsage();
  const gc = mode === 'full' ? globalThis.gc : undefined;
  if (gc) gc();
  const after = process.cpuUsage();
  const mem = memoryOrLast();
  let eventLoopDelayMaxMs = loopDelay.count > 0 ? loopDelay.max / 1e6 : 0;
  loopDelay.reset();
  // Workers sample themselves (their CPU taken after their own GC: a phase pays for the garbage it left there).
  const workers = target.workerSamples ? await target.workerSamples(gc !== undefined) : [];
  let workerCpuUs = 0;
  let workerRss = 0;
  let workerHeap = 0;
  let workerChannels = 0;
  for (const w of workers) {
    workerCpuUs += w.cpuUs;
    workerRss += w.rssBytes;
    workerHeap += w.heapUsedBytes;
    workerChannels += w.openChannels;
    eventLoopDelayMaxMs = Math.max(eventLoopDelayMaxMs, w.eventLoopDelayMaxMs);
  }
  return {
    cpuUs: before.user + before.system + workerCpuUs,
    cpuAfterGcUs: after.user + after.system + workerCpuUs,
    rssBytes: mem.rss + workerRss,
    heapUsedBytes: mem.heapUsed + workerHeap,
    gcForced: gc !== undefined,
    openChannels: target.channelsInWorkers ? workerChannels : target.openChannels(),
    counters: { ...target.counters(), processes: 1 + workers.length },
    eventLoopDelayMaxMs,
  };
}

function main(): void {
  if (cluster.isWorker) return bareWorkerMain();
  const kind = process.argv[2] as TargetKind;
  const send = (msg: FromTarget): void => {
    if (process.connected) process.send!(msg);
  };
  if (!process.send || (kind !== 'ours' && kind !== 'bare')) {
    process.stderr.write('bench-targets is started by the bench driver: node dist/scripts/bench.js\n');
    process.exit(2);
  }
  const log = pino({ level: 'warn', base: { target: kind } });
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  let target: RunningTarget | undefined;
  let stopping = false;
  const fail = (err: unknown): void => {
    log.error({ err: describeError(err) }, 'bench target failed');
    send({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
    process.exitCode = 1;
  };
  // The driver owns this process: when it goes away, so do we.
  process.on('disconnect', () => process.exit(process.exitCode ?? 0));
  process.on('message', (raw) => {
    const msg = raw as ToTarget;
    if (msg.type === 'start') {
      const workers = msg.profile?.workers ?? 0;
      const started =
        kind === 'ours' ? startOurs(msg.pki, msg.dataDir, log, msg.profile) : workers > 0 ? startBareCluster(msg.pki, msg.profile ?? {}, workers) : startBare(msg.pki, log, msg.profile);
      started.then((t) => {
        target = t;
        send({ type: 'ready', port: t.port, ...(t.console ? { console: t.console } : {}) });
      }, fail);
    } else if (msg.type === 'sample') {
      const t = target;
      if (!t) return fail(new Error('sample requested before the server started'));
      const settled = msg.mode === 'full' ? t.settle() : Promise.resolve();
      settled
        .then(() => takeSample(t, msg.mode, loopDelay))
        .then(
          (sample) => send({ type: 'sample', id: msg.id, sample }),
          // A sample that was on its way when the stop came finds the workers gone: not a failure of the server.
          (err: unknown) => (stopping ? undefined : fail(err)),
        );
    } else if (msg.type === 'stop') {
      stopping = true;
      // Leave in any case: the driver sees the exit (and the error on stdout if closing failed).
      loopDelay.disable();
      (target ? target.close() : Promise.resolve())
        .then(() => send({ type: 'stopped' }), fail)
        .finally(() => process.disconnect());
    }
  });
}

main();
