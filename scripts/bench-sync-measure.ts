/**
 * One run of `bench sync`: our server in its own process with N agents
 * connected and checking in steadily, an MSP portal stand-in on loopback
 * (in its own process: scripts/bench-portal-process.ts),
 * and four windows timed against the same load: idle, the first sync (the
 * link call), the no-change re-sync, and idle again afterwards.
 *
 * The driver links and syncs through the console API with the admin token
 * the server process hands it, exactly as `rollcall msp link --api` does,
 * and the server fetches the tree with its real portal API client. The
 * portal stand-in is test/support/fake-portal.ts (compiled with the bench;
 * see tsconfig.build.json): one implementation of the portal's answers for
 * the tests and the bench. It runs in a process of its own, so that its
 * work does not delay the driver's timing of check-ins.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { requestJson } from '../common/https-json.js';
import type { SyncRun } from '../server/storage/msp-store.js';
import { FAKE_USER } from '../test/support/fake-portal.js';
import { startPortalProcess, type PortalProcess } from './bench-portal-process.js';
import { closeAgents, connectAgents, type BenchAgent } from './bench-clients.js';
import { withDeadline } from './bench-deadline.js';
import { ForeignMeter } from './bench-machine.js';
import { cpuMsBetween } from './bench-measure.js';
import type { BenchPki } from './bench-pki.js';
import { slowestBySlice, startSteadyLoad, stretchesOf, windowStats, type CheckinLog, type SteadyLoad, type TimeRange, type WindowStats } from './bench-steady-load.js';
import { SYNC_GOALS } from './bench-sync-goals.js';
import { startTarget, type TargetHandle, type TargetSample } from './bench-target-process.js';

/** Options for {@link measureSync}. */
export interface SyncMeasureOptions {
  /** Managed MSPs below the MSP Manager account. */
  readonly msps: number;
  /** Customers, spread evenly over the managed MSPs. */
  readonly customers: number;
  /** Each agent checks in once per this many milliseconds. */
  readonly periodMs: number;
  /** Length of each idle window. */
  readonly idleMs: number;
  /** Untimed load before the first idle window, and between the windows, so each starts from a steady state. */
  readonly settleMs: number;
  /** Connections in flight while connecting. */
  readonly concurrency: number;
  /**
   * No-change re-syncs, one after another with the settle time between them
   * (default 1); their windows are pooled into the one re-sync window, so
   * that its p99 rests on enough check-ins to be a p99.
   */
  readonly resyncs?: number;
  /** Deadline of each phase: connecting, each API call, stopping. */
  readonly phaseDeadlineMs: number;
  /** Child entry override (tests); see startTarget. */
  readonly targetEntry?: string;
  /** When set, the server process writes a V8 CPU profile into this directory. */
  readonly profileDir?: string;
  readonly onProgress?: (message: string) => void;
}

/** The windows of the run, in the order they ran. */
export const WINDOW_NAMES = ['idle', 'first sync', 're-sync', 'idle after'] as const;
/** One window's name. */
export type WindowName = (typeof WINDOW_NAMES)[number];

/** One timed window, as measured while it ran (or several of the same name, pooled). */
export interface TimedWindow {
  readonly name: WindowName;
  /** Start and end on the load's clock (of the first and the last, pooled). */
  readonly fromMs: number;
  readonly toMs: number;
  /** The time ranges the window covers: one, or one per pooled window. */
  readonly ranges: readonly TimeRange[];
  /** Wall time (of all pooled windows together). */
  readonly wallMs: number;
  /** Server CPU (user + system, all threads) over the window, milliseconds. */
  readonly serverCpuMs: number;
  /** Longest event-loop delay of the server over the window. */
  readonly eventLoopDelayMaxMs: number;
  /** Longest event-loop delay of the driver (the clients): when small, the latencies are the server's. */
  readonly driverLoopDelayMaxMs: number;
  /** Check-in transactions the server committed over the window. */
  readonly writerBatches: number;
  /**
   * CPU milliseconds that processes outside the bench (not the server, the
   * driver or the portal stand-in) took over the window (the machine's busy
   * time less the bench's process tree; NaN where /proc cannot say): a short window that another
   * process's burst falls in is slower for it, whatever the sync does.
   */
  readonly otherCpuMs: number;
}

/** A window with its check-ins, summarised once the load has stopped and every ack is in. */
export interface SyncWindow extends TimedWindow {
  /**
   * Check-ins sent during the window, whenever their ack came; `slower`
   * counts those slower than the goal allows (2x the p99 without a sync).
   */
  readonly checkins: WindowStats;
  /** The slowest check-in sent in each tenth of the window (of any pooled window), in order: where in the window the waits were. */
  readonly slowestByTenth: readonly number[];
  /** The p99 of each pooled window alone (one entry when not pooled). */
  readonly p99ByRangeMs: readonly number[];
}

/** One sync as the driver timed it and as the server recorded it. */
export interface TimedSync {
  /** Wall time of the API call (request sent → answer read). */
  readonly apiMs: number;
  /** The run the server recorded (its own startedAt and finishedAt). */
  readonly run: SyncRun;
}

/** Everything one run of `bench sync` measured. */
export interface SyncBenchResult {
  readonly agents: number;
  readonly periodMs: number;
  readonly msps: number;
  readonly customers: number;
  /** Companies below the account (managed MSPs + customers). */
  readonly companies: number;
  readonly windows: Readonly<Record<WindowName, SyncWindow>>;
  /** Check-ins of both idle windows together: the baseline the goal compares against. */
  readonly withoutSync: WindowStats;
  /**
   * The p99 of each idle stretch as long as the first sync's window (the
   * idle windows cut into back-to-back stretches): what a window that short
   * shows against the pooled baseline with no sync at all.
   */
  readonly idleStretchesP99Ms: readonly number[];
  readonly firstSync: TimedSync;
  /** The slowest of the no-change re-syncs (by the API call). */
  readonly resync: TimedSync;
  /** Every no-change re-sync, in order. */
  readonly resyncs: readonly TimedSync[];
  /** Check-ins sent after their slot because an ack came late, over the whole run. */
  readonly lateCheckins: number;
  /** Server CPU from just after it started listening to just before it stopped, milliseconds. */
  readonly serverCpuMs: number;
  /** Calls the portal stand-in answered, by call. */
  readonly portalCalls: Readonly<Record<string, number>>;
  /** The portal stand-in's OS priority, in words, or why it could not be lowered. */
  readonly portalPriority: string;
}

/** What the driver needs to call our console API. */
interface ConsoleClient {
  post<T>(apiPath: string, body: unknown, expectStatus: number): Promise<T>;
}

function consoleClient(target: TargetHandle, caPem: string, timeoutMs: number): ConsoleClient {
  const access = target.console;
  if (!access) throw new Error('the server process did not report its console API');
  return {
    post: async <T>(apiPath: string, body: unknown, expectStatus: number): Promise<T> => {
      const res = await withDeadline(
        requestJson({
          host: '127.0.0.1',
          port: access.port,
          path: apiPath,
          method: 'POST',
          body,
          ca: caPem,
          headers: { authorization: `Bearer ${access.adminToken}` },
          timeoutMs,
        }),
        timeoutMs,
        `POST ${apiPath} did not answer within ${timeoutMs} ms`,
      );
      if (res.status !== expectStatus) throw new Error(`POST ${apiPath} answered ${res.status}: ${JSON.stringify(res.body)}`);
      return res.body as T;
    },
  };
}

/** What every window is timed against. */
interface Probe {
  readonly target: TargetHandle;
  readonly load: SteadyLoad;
  /** The driver's own event-loop delay. */
  readonly driverLoop: IntervalHistogram;
}

/** Times one window: `work` runs between two quick samples of the server, under the steady load. */
async function timeWindow<T>(name: WindowName, probe: Probe, work: () => Promise<T>): Promise<{ window: TimedWindow; value: T }> {
  const { target, load, driverLoop } = probe;
  const others = await ForeignMeter.start();
  const before: TargetSample = await target.sample('quick');
  driverLoop.reset();
  const from = load.now();
  const value = await work();
  const to = load.now();
  const driverLoopDelayMaxMs = driverLoop.count > 0 ? driverLoop.max / 1e6 : 0;
  const after = await target.sample('quick');
  const otherCpuMs = (await others?.read())?.otherCpuMs ?? NaN;
  load.assertHealthy();
  const window: TimedWindow = {
    name,
    fromMs: from,
    toMs: to,
    ranges: [{ fromMs: from, toMs: to }],
    wallMs: to - from,
    serverCpuMs: cpuMsBetween(before, after),
    eventLoopDelayMaxMs: after.eventLoopDelayMaxMs,
    driverLoopDelayMaxMs,
    writerBatches: (after.counters.writerBatches ?? 0) - (before.counters.writerBatches ?? 0),
    otherCpuMs,
  };
  return { window, value };
}

/** Several windows of one name as one: their ranges, wall time, CPU and transactions added up, their delays' maximum. */
function pooled(windows: readonly TimedWindow[]): TimedWindow {
  const sum = (f: (w: TimedWindow) => number): number => windows.reduce((t, w) => t + f(w), 0);
  const max = (f: (w: TimedWindow) => number): number => Math.max(...windows.map(f));
  return {
    name: windows[0]!.name,
    fromMs: windows[0]!.fromMs,
    toMs: windows[windows.length - 1]!.toMs,
    ranges: windows.flatMap((w) => w.ranges),
    wallMs: sum((w) => w.wallMs),
    serverCpuMs: sum((w) => w.serverCpuMs),
    eventLoopDelayMaxMs: max((w) => w.eventLoopDelayMaxMs),
    driverLoopDelayMaxMs: max((w) => w.driverLoopDelayMaxMs),
    writerBatches: sum((w) => w.writerBatches),
    otherCpuMs: sum((w) => w.otherCpuMs),
  };
}

/** Checks a recorded run: it succeeded and added what it should have. */
function checkRun(what: string, run: SyncRun | undefined, companies: number, added: number): SyncRun {
  if (!run) throw new Error(`${what}: the answer has no sync run`);
  if (run.outcome !== 'succeeded') throw new Error(`${what} failed on the server: ${run.errorCode ?? ''} ${run.reason ?? ''}`);
  if (run.fetched !== companies || run.added !== added) {
    throw new Error(`${what} fetched ${run.fetched} and added ${run.added} companies; expected ${companies} and ${added}`);
  }
  return run;
}

/** Calls the console API and times the call; `expected` says what the recorded run must show. */
async function timedSync(api: ConsoleClient, call: { path: string; body: unknown; status: number }, expected: { what: string; companies: number; added: number }): Promise<TimedSync> {
  const t0 = performance.now();
  const answer = await api.post<{ run?: SyncRun }>(call.path, call.body, call.status);
  const apiMs = performance.now() - t0;
  return { apiMs, run: checkRun(expected.what, answer.run, expected.companies, expected.added) };
}

/** The two syncs and the four windows, under a load that is already running. */
async function measureWindows(probe: Probe, api: ConsoleClient, portal: PortalProcess, opts: SyncMeasureOptions) {
  const say = opts.onProgress ?? (() => undefined);
  const companies = portal.companies;
  const link = { source: 'api', baseUrl: portal.url, user: FAKE_USER.username, password: FAKE_USER.password };
  say(`idle window: ${(opts.idleMs / 1000).toFixed(0)} s of check-ins only`);
  const idle = await timeWindow('idle', probe, () => sleep(opts.idleMs));
  say(`first sync: POST /api/v1/msp/link (${companies} companies from ${portal.url})`);
  const first = await timeWindow('first sync', probe, () =>
    timedSync(api, { path: '/api/v1/msp/link', body: link, status: 201 }, { what: 'the first sync', companies, added: companies }),
  );
  const resyncWindows: TimedWindow[] = [];
  const resyncs: TimedSync[] = [];
  const count = opts.resyncs ?? 1;
  for (let i = 1; i <= count; i += 1) {
    await sleep(opts.settleMs);
    say(`re-sync ${i} of ${count}: POST /api/v1/msp/sync (nothing changed upstream)`);
    const resync = await timeWindow('re-sync', probe, () =>
      timedSync(api, { path: '/api/v1/msp/sync', body: {}, status: 200 }, { what: `re-sync ${i}`, companies, added: 0 }),
    );
    resyncWindows.push(resync.window);
    resyncs.push(resync.value);
  }
  await sleep(opts.settleMs);
  say('idle window after the syncs');
  const idleAfter = await timeWindow('idle after', probe, () => sleep(opts.idleMs));
  return {
    windows: { idle: idle.window, 'first sync': first.window, 're-sync': pooled(resyncWindows), 'idle after': idleAfter.window },
    firstSync: first.value,
    resync: resyncs.reduce((a, b) => (b.apiMs > a.apiMs ? b : a)),
    resyncs,
  };
}

/**
 * Summarises the check-ins of every window from the whole log (read after
 * the load stopped: a check-in sent near the end of a window may be acked
 * well after it). The baseline "without a sync" pools both idle windows,
 * so that neither the garbage of the connects before the first nor that of
 * the syncs before the second decides it alone; `slower` counts against
 * the goal, 2x its p99.
 */
function summarizeCheckins(
  timed: Record<WindowName, TimedWindow>,
  log: CheckinLog,
): { windows: Record<WindowName, SyncWindow>; withoutSync: WindowStats; idleStretchesP99Ms: number[] } {
  const idle = [...timed.idle.ranges, ...timed['idle after'].ranges];
  const threshold = SYNC_GOALS.p99Ratio * windowStats(log, idle).p99Ms;
  const summarize = (w: TimedWindow): SyncWindow => ({
    ...w,
    checkins: windowStats(log, w.ranges, threshold),
    slowestByTenth: slowestOfEachTenth(log, w.ranges),
    p99ByRangeMs: w.ranges.map((r) => windowStats(log, [r]).p99Ms),
  });
  return {
    windows: { idle: summarize(timed.idle), 'first sync': summarize(timed['first sync']), 're-sync': summarize(timed['re-sync']), 'idle after': summarize(timed['idle after']) },
    withoutSync: windowStats(log, idle, threshold),
    idleStretchesP99Ms: stretchesOf(idle, timed['first sync'].wallMs).map((r) => windowStats(log, [r]).p99Ms),
  };
}

/** The slowest check-in of each tenth of the ranges, tenth by tenth over all of them (NaN where no range has one). */
function slowestOfEachTenth(log: CheckinLog, ranges: readonly TimeRange[]): number[] {
  const each = ranges.map((r) => slowestBySlice(log, r, 10));
  return each[0]!.map((_, i) => {
    const values = each.map((e) => e[i]!).filter((v) => !Number.isNaN(v));
    return values.length === 0 ? NaN : Math.max(...values);
  });
}

/**
 * Runs `bench sync` once. The server process, the portal stand-in, the
 * agents and the data directory are closed or removed on every path,
 * failure included.
 */
export async function measureSync(pki: BenchPki, opts: SyncMeasureOptions): Promise<SyncBenchResult> {
  const say = opts.onProgress ?? (() => undefined);
  const n = pki.agents.length;
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-bench-sync-'));
  const agents: BenchAgent[] = [];
  let target: TargetHandle | undefined;
  let portal: PortalProcess | undefined;
  let load: SteadyLoad | undefined;
  const driverLoop = monitorEventLoopDelay({ resolution: 10 });
  driverLoop.enable();
  try {
    portal = await startPortalProcess({ managedMsps: opts.msps, customers: opts.customers }, opts.phaseDeadlineMs);
    say(`portal stand-in on ${portal.url} (${portal.priority}): 1 MSP Manager, ${opts.msps} managed MSPs, ${opts.customers} customers`);
    const execArgv = opts.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`, `--cpu-prof-name=sync-${Date.now()}.cpuprofile`] : [];
    target = await startTarget('ours', pki, { dataDir, entry: opts.targetEntry, timeoutMs: opts.phaseDeadlineMs, execArgv });
    const atStart = await target.sample('quick');
    say(`server listening on 127.0.0.1:${target.port} (pid ${target.pid}); connecting ${n} agents, ${opts.concurrency} in flight`);
    await connectAgents({ port: target.port, pki }, agents, {
      concurrency: opts.concurrency,
      deadlineMs: opts.phaseDeadlineMs,
      onProgress: (done) => say(`  ${done}/${n} connected`),
    });
    load = startSteadyLoad(agents, { periodMs: opts.periodMs });
    say(`every agent checks in once per ${opts.periodMs} ms (${Math.round((n * 1000) / opts.periodMs)}/s); settling for ${(opts.settleMs / 1000).toFixed(0)} s`);
    await sleep(opts.settleMs);
    const measured = await measureWindows({ target, load, driverLoop }, consoleClient(target, pki.ca.certPem, opts.phaseDeadlineMs), portal, opts);
    const log = await load.stop(opts.phaseDeadlineMs);
    load = undefined;
    const atEnd = await target.sample('quick');
    const { companies, priority: portalPriority } = portal;
    const portalCalls = await portal.stop();
    portal = undefined;
    return {
      agents: n,
      periodMs: opts.periodMs,
      msps: opts.msps,
      customers: opts.customers,
      companies,
      ...summarizeCheckins(measured.windows, log),
      firstSync: measured.firstSync,
      resync: measured.resync,
      resyncs: measured.resyncs,
      lateCheckins: log.late,
      serverCpuMs: cpuMsBetween(atStart, atEnd),
      portalCalls,
      portalPriority,
    };
  } finally {
    driverLoop.disable();
    await load?.stop(opts.phaseDeadlineMs).catch(() => undefined); // failure path: the first error is already on its way
    await closeAgents(agents);
    if (target) {
      await target.stop().catch((err: unknown) => {
        say(`server did not stop cleanly (${err instanceof Error ? err.message : String(err)}); killed`);
        target?.kill();
      });
    }
    await portal?.stop();
    await fs.rm(dataDir, { recursive: true, force: true });
  }
}
