/**
 * `npm run bench -- scale [--agents N]`: how many mutual-TLS agents one box
 * holds, Rollcall against the bare ws + https baseline, in the same run.
 *
 * For each server (its own child process, reporting its own CPU and RSS):
 *   1. full connects: N agents connect (full TLS handshakes), C in flight;
 *   2. resumed connects: every agent closes and reconnects offering the TLS
 *      session it got the first time;
 *   3. steady state: every agent checks in once per interval (60 s) at its
 *      own random phase, for a bounded window; server CPU share, ack p99,
 *      and (ours) console API latency meanwhile;
 *   4. reconnect storm: the server process is killed and started again on
 *      the same port and data directory; agents come back as real agents do
 *      (full-jitter backoff, server retry hint as a floor, never giving up);
 *      time until all are back, sheds and refusals, peak RSS, console API.
 * The load generators are child processes too (many agents each); the
 * connected count is polled every second for the timeline.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseCommandArgs, usageError, type CliIo } from '../common/cli-support.js';
import { DEFAULT_SERVER_CONFIG } from '../server/config.js';
import { quietPassesBeforePing } from '../server/session-registry.js';
import { positiveInt } from './bench-args.js';
import { describeMachine, ForeignMeter, foreignLoad, machineBusyMs } from './bench-machine.js';
import { cpuMsBetween, percentile } from './bench-measure.js';
import { loadOrCreateBenchPki, type BenchPki } from './bench-pki.js';
import { renderScaleSection, TARGET_FLEET, type PhaseForeignLoad, type ScaleResult, type StormResult } from './bench-scale-report.js';
import { ConsoleProbe, diffStats, sumStats, Timeline, waitUntil } from './bench-scale-probes.js';
import { writeSection } from './bench-sections.js';
import { startTarget, type TargetHandle, type TargetKind, type TargetSample } from './bench-target-process.js';
import { loopbackSources } from './loadgen.js';
import type { LoadgenStats } from './loadgen.js';
import { startLoadgen, type LoadgenHandle } from './loadgen-process.js';
import { randomBytes } from 'node:crypto';

/** Parsed flags of the scale bench. */
export interface ScaleArgs {
  readonly agents: number;
  readonly concurrency: number;
  readonly loadgens: number;
  /** Agent-port worker processes of each server (0: the server is one process). */
  readonly workers: number;
  readonly sources: number;
  readonly intervalSec: number;
  readonly steadySec: number;
  /** Seconds of the idle window before the steady state (channels open, no check-ins). */
  readonly idleSec: number;
  readonly stormTimeoutSec: number;
  /** graceful: the server is stopped (it tells agents when to come back) and started again; crash: SIGKILL. */
  readonly storm: 'graceful' | 'crash';
  /** Our server's admission limit, when not its default. */
  readonly maxPending: number | undefined;
  readonly out: string;
  readonly cacheDir: string;
  readonly only: TargetKind | undefined;
  /** When set, each server process (its workers, and the one started again for the storm) writes V8 CPU profiles here; the phases' monotonic times are printed. */
  readonly profileDir: string | undefined;
}

export const SCALE_USAGE =
  'usage: node dist/scripts/bench.js scale [--agents N] [--concurrency C] [--loadgens L] [--workers W] [--sources S] [--interval SEC] [--steady SEC] [--idle SEC] [--storm graceful|crash] [--max-pending N] [--storm-timeout SEC] [--only ours|bare] [--out FILE] [--cache-dir DIR] [--profile DIR]';

/** Parses the scale bench's flags. */
export function parseScaleArgs(argv: string[]): ScaleArgs | { readonly help: true } {
  const { values, positionals } = parseCommandArgs(argv, {
    agents: { type: 'string' },
    concurrency: { type: 'string' },
    loadgens: { type: 'string' },
    workers: { type: 'string' },
    sources: { type: 'string' },
    interval: { type: 'string' },
    steady: { type: 'string' },
    idle: { type: 'string' },
    'storm-timeout': { type: 'string' },
    storm: { type: 'string' },
    'max-pending': { type: 'string' },
    only: { type: 'string' },
    out: { type: 'string' },
    'cache-dir': { type: 'string' },
    profile: { type: 'string' },
    debug: { type: 'boolean' },
    help: { type: 'boolean' },
  });
  if (values.help) return { help: true } as const;
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}"\n${SCALE_USAGE}`);
  if (values.only !== undefined && values.only !== 'ours' && values.only !== 'bare') throw usageError(`--only must be ours or bare\n${SCALE_USAGE}`);
  if (values.storm !== undefined && values.storm !== 'graceful' && values.storm !== 'crash') throw usageError(`--storm must be graceful or crash\n${SCALE_USAGE}`);
  const agents = positiveInt('agents', values.agents, 5000, 1_000_000, SCALE_USAGE);
  return {
    agents,
    concurrency: positiveInt('concurrency', values.concurrency, 100, 10_000, SCALE_USAGE),
    loadgens: positiveInt('loadgens', values.loadgens, Math.max(1, Math.ceil(agents / 15_000)), 64, SCALE_USAGE),
    // Beyond one process's open files (20,000 here) the servers need workers; the kernel spreads accepts unevenly, so 12,000 each.
    workers: values.workers === '0' ? 0 : positiveInt('workers', values.workers, agents > 15_000 ? Math.ceil(agents / 12_000) : 0, 64, SCALE_USAGE),
    // Two connects per agent within a minute (full, then resumed) leave ports in TIME_WAIT: ~20k per address is safe.
    sources: positiveInt('sources', values.sources, Math.max(2, Math.ceil((2 * agents) / 20_000)), 250, SCALE_USAGE),
    intervalSec: positiveInt('interval', values.interval, 60, 3600, SCALE_USAGE),
    steadySec: positiveInt('steady', values.steady, 10, 3600, SCALE_USAGE),
    idleSec: positiveInt('idle', values.idle, 3, 3600, SCALE_USAGE),
    stormTimeoutSec: positiveInt('storm-timeout', values['storm-timeout'], 300, 3600, SCALE_USAGE),
    storm: (values.storm ?? 'graceful') as 'graceful' | 'crash',
    maxPending: values['max-pending'] === undefined ? undefined : positiveInt('max-pending', values['max-pending'], 256, 1_000_000, SCALE_USAGE),
    out: path.resolve(values.out ?? 'docs/benchmarks.md'),
    cacheDir: path.resolve(values['cache-dir'] ?? '.bench-cache'),
    only: values.only as TargetKind | undefined,
    profileDir: values.profile === undefined ? undefined : path.resolve(values.profile),
  };
}

/** Soonest the server's heartbeat pings a quiet channel at its defaults: one pass less than it lets a channel stay quiet (passes run at any phase). */
const PING_AFTER_QUIET_MS =
  (quietPassesBeforePing(DEFAULT_SERVER_CONFIG.pingIntervalMs, DEFAULT_SERVER_CONFIG.checkinIntervalSec) - 1) * DEFAULT_SERVER_CONFIG.pingIntervalMs;

/**
 * How long agents that were quiet for `quietMs` check in before the steady
 * window is measured: one interval when the heartbeat may have started
 * pinging them (then every one has checked in since, and none is pinged
 * again), else none.
 */
export function checkinWarmupMs(quietMs: number, intervalSec: number): number {
  return quietMs >= PING_AFTER_QUIET_MS ? intervalSec * 1000 : 0;
}

/** The soft and hard open-file limits of this process, from /proc (undefined elsewhere). */
async function openFileLimit(): Promise<number | undefined> {
  try {
    const text = await fs.readFile('/proc/self/limits', 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
    if (!m) return undefined;
    return m[2] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[2]);
  } catch {
    return undefined;
  }
}

/** Everything one server goes through; the clients and the child process are closed on every path. */
async function runOne(kind: TargetKind, pki: BenchPki, args: ScaleArgs, say: (m: string) => void): Promise<ScaleResult> {
  const n = pki.agents.length;
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), `rollcall-scale-${kind}-`));
  const ticketKeysHex = randomBytes(48).toString('hex');
  const profile = { scale: true, ticketKeysHex, workers: args.workers, ...(args.maxPending ? { maxPendingHandshakes: args.maxPending } : {}) };
  let target: TargetHandle | undefined;
  const loadgens: LoadgenHandle[] = [];
  let probe: ConsoleProbe | undefined;
  let timeline: Timeline | undefined;
  // Long enough for the connects of a large fleet on two shared cores (about 3 ms of server and client CPU each, twice).
  const phaseMs = Math.max(300_000, n * 6);
  // With --profile: a phase's monotonic start and end in µs, the clock of the profiles' sample times, to cut them by phase.
  const mark = (phase: string, from: bigint): void => {
    if (args.profileDir) say(`[${kind}]   profile window ${phase}: ${from / 1000n}..${process.hrtime.bigint() / 1000n} µs`);
  };
  try {
    // Cluster workers inherit the flags; each process names its own profile (pid in the name).
    const execArgv = args.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${args.profileDir}`] : [];
    target = await startTarget(kind, pki, { dataDir, profile, timeoutMs: 180_000, execArgv });
    const port = target.port;
    say(`[${kind}] server pid ${target.pid} on 127.0.0.1:${port}; starting ${args.loadgens} load generator(s), ${args.sources} source address(es)`);
    const sources = loopbackSources(args.sources);
    const per = Math.ceil(n / args.loadgens);
    for (let i = 0; i < args.loadgens; i += 1) {
      const slice = pki.agents.slice(i * per, (i + 1) * per);
      if (slice.length === 0) continue;
      loadgens.push(
        await startLoadgen({
          host: '127.0.0.1',
          port,
          caPem: pki.ca.certPem,
          keyPem: pki.agentKeyPem,
          agents: slice.map((a) => ({ deviceId: a.deviceId, certPem: a.certPem })),
          sourceAddresses: sources,
          handshakeTimeoutMs: 30_000,
        }),
      );
    }
    const stats = async (): Promise<LoadgenStats> => sumStats(await Promise.all(loadgens.map((l) => l.stats())));
    const t0 = Date.now();
    timeline = new Timeline(loadgens, t0);
    const tl = timeline;
    const perGen = Math.max(1, Math.floor(args.concurrency / loadgens.length));

    // 1. Full connects.
    const before = await target.sample('full');
    tl.start('full connect', () => target);
    say(`[${kind}] 1/4 connecting ${n} agents (full TLS handshakes), ${args.concurrency} in flight`);
    const foreign: { -readonly [K in keyof PhaseForeignLoad]: number | undefined } = { full: undefined, resumed: undefined, steady: undefined, storm: undefined };
    // Other processes' share of the machine in a phase: a busy neighbour slows the wall-clock rates and can tip a storm.
    const otherLoad = (share: number | undefined): string => (share === undefined ? '' : `; other processes ${(share * 100).toFixed(0)} % of the machine`);
    let meter = await ForeignMeter.start();
    let t = process.hrtime.bigint();
    const s0 = await stats();
    await Promise.all(loadgens.map((l) => l.connect(perGen, false, phaseMs)));
    const fullWallMs = Number(process.hrtime.bigint() - t) / 1e6;
    mark('full connect', t);
    foreign.full = await meter?.share();
    const s1 = await stats();
    const afterConnect = await target.sample('full');
    if (afterConnect.openChannels !== n) throw new Error(`[${kind}] server holds ${afterConnect.openChannels} channels, expected ${n}`);
    say(`[${kind}]   ${n} connected in ${(fullWallMs / 1000).toFixed(1)} s${otherLoad(foreign.full)}`);

    // 2. Resumed connects.
    const resumedStartedAt = Date.now();
    say(`[${kind}] 2/4 reconnecting every agent with its TLS session`);
    tl.start('resumed connect', () => target);
    await Promise.all(loadgens.map((l) => l.disconnect()));
    const tgt = target;
    await waitUntil(async () => (await tgt.sample('quick')).openChannels === 0, 60_000, 'the server to see every channel closed');
    const beforeResume = await target.sample('full');
    const s2 = await stats();
    meter = await ForeignMeter.start();
    t = process.hrtime.bigint();
    await Promise.all(loadgens.map((l) => l.connect(perGen, true, phaseMs)));
    const resumedWallMs = Number(process.hrtime.bigint() - t) / 1e6;
    mark('resumed connect', t);
    foreign.resumed = await meter?.share();
    const s3 = await stats();
    const afterResume = await target.sample('full');
    say(`[${kind}]   ${n} reconnected in ${(resumedWallMs / 1000).toFixed(1)} s (${s3.resumedConnects - s2.resumedConnects} resumed)${otherLoad(foreign.resumed)}`);

    // 3. Steady state.
    say(`[${kind}] 3/4 idle for ${args.idleSec} s, then steady state: one check-in per agent per ${args.intervalSec} s, measured for ${args.steadySec} s`);
    tl.start('steady', () => target);
    if (kind === 'ours' && target.console) {
      probe = new ConsoleProbe(target.console, pki.ca.certPem, pki.agents.map((a) => a.deviceId));
      probe.start();
    }
    // An idle window first (channels open, no check-ins): what the server spends anyway (heartbeats, timers, sampling).
    meter = await ForeignMeter.start();
    const idleBefore = await target.sample('quick');
    t = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, args.idleSec * 1000));
    const idleAfter = await target.sample('quick');
    mark('idle', t);
    const idleWallMs = Number(process.hrtime.bigint() - t) / 1e6;
    const idleCpuMs = cpuMsBetween(idleBefore, idleAfter);
    // A fleet quiet long enough for the heartbeat to ping it (as after 100,000 resumed connects) first checks in for one interval, as
    // agents do: at a 60 s interval none is pinged then (server/session-registry.ts), and the window measures check-ins, not pings.
    const quietMs = Date.now() - resumedStartedAt;
    const warmupMs = checkinWarmupMs(quietMs, args.intervalSec);
    if (warmupMs > 0) {
      say(`[${kind}]   the agents were quiet for ${(quietMs / 1000).toFixed(0)} s, long enough to be pinged: checking in for ${warmupMs / 1000} s before measuring`);
      await Promise.all(loadgens.map((l) => l.steady(args.intervalSec * 1000, warmupMs)));
    }
    const steadyBefore = await target.sample('quick');
    t = process.hrtime.bigint();
    const steadyRuns = await Promise.all(loadgens.map((l) => l.steady(args.intervalSec * 1000, args.steadySec * 1000)));
    const steadyAfter = await target.sample('quick');
    mark('steady', t);
    const steadyWallMs = Number(process.hrtime.bigint() - t) / 1e6;
    const steadyConsole = probe ? await probe.take() : undefined;
    probe?.start();
    const rtts = Float64Array.from(steadyRuns.flatMap((r) => r.rttMs)).sort();
    const steadyCpuMs = cpuMsBetween(steadyBefore, steadyAfter);
    const checkinCpuMs = Math.max(0, steadyCpuMs - (idleCpuMs / idleWallMs) * steadyWallMs);
    // The check-in rate of the target fleet (100,000 agents at one per interval), made by these agents at a shorter interval.
    const fleetIntervalMs = Math.round((args.intervalSec * 1000 * n) / TARGET_FLEET);
    say(`[${kind}]   then the check-in rate of ${TARGET_FLEET} agents: one per agent per ${fleetIntervalMs} ms (${Math.round(TARGET_FLEET / args.intervalSec)}/s) for ${args.steadySec} s`);
    const rateBefore = await target.sample('quick');
    t = process.hrtime.bigint();
    const rateRuns = await Promise.all(loadgens.map((l) => l.steady(fleetIntervalMs, args.steadySec * 1000)));
    const rateAfter = await target.sample('quick');
    mark('fleet check-in rate', t);
    foreign.steady = await meter?.share();
    if (foreign.steady !== undefined) say(`[${kind}]   idle and steady windows: other processes ${(foreign.steady * 100).toFixed(0)} % of the machine`);
    const rateWallMs = Number(process.hrtime.bigint() - t) / 1e6;
    const rateConsole = probe ? await probe.take() : undefined;
    const rateRtts = Float64Array.from(rateRuns.flatMap((r) => r.rttMs)).sort();
    const rateCpuMs = cpuMsBetween(rateBefore, rateAfter);

    // 4. Reconnect storm.
    say(`[${kind}] 4/4 reconnect storm: ${args.storm === 'crash' ? 'killing' : 'stopping'} the server process and starting it again on port ${port}`);
    // Agents back check in at once and then once per interval, as the agent does (before session 7 they stayed silent and were pinged).
    await Promise.all(loadgens.map((l) => l.setAutoReconnect(true, args.intervalSec * 1000)));
    const s4 = await stats();
    tl.peakRssBytes = 0;
    meter = await ForeignMeter.start();
    tl.start('storm', () => target);
    const killedAt = Date.now();
    if (args.storm === 'crash') target.kill();
    else await target.stop();
    await waitUntil(async () => (await stats()).connected === 0, 60_000, 'every agent to notice the server is gone');
    target = undefined;
    const restarted = await startTarget(kind, pki, { dataDir, profile: { ...profile, restart: true, port }, timeoutMs: 180_000, execArgv }); // profiled too: its profiles cover the storm
    target = restarted;
    const readyAt = Date.now();
    const readySample = await restarted.sample('quick');
    if (probe && restarted.console) {
      probe.retarget(restarted.console);
      probe.start();
    }
    say(`[${kind}]   restarted (pid ${restarted.pid}) ${((readyAt - killedAt) / 1000).toFixed(1)} s after the kill; waiting for ${n} agents`);
    let backAt: number | undefined;
    let lastSaid = 0;
    const stormEnd = killedAt + args.stormTimeoutSec * 1000;
    for (;;) {
      // A load generator busy with thousands of failing reconnects may miss a stats deadline: a storm is like that, keep waiting.
      const s = await stats().catch((err: unknown) => {
        say(`[${kind}]   (a load generator did not answer in time: ${err instanceof Error ? err.message : String(err)}; still waiting)`);
        return undefined;
      });
      if (s === undefined) {
        if (Date.now() > stormEnd) break;
        continue;
      }
      if (s.connected === n) {
        backAt = Date.now();
        break;
      }
      if (Date.now() > stormEnd) break;
      if (Date.now() - lastSaid > 5000) {
        say(`[${kind}]   ${s.connected}/${n} back after ${((Date.now() - killedAt) / 1000).toFixed(0)} s`);
        lastSaid = Date.now();
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    const s5 = await stats();
    foreign.storm = await meter?.share();
    const stormConsole = probe ? await probe.take() : undefined;
    const afterStorm = await restarted.sample('full');
    tl.stop();
    const storm: StormResult = {
      restartMs: readyAt - killedAt,
      backWithinMs: backAt === undefined ? undefined : backAt - killedAt,
      backAfterReadyMs: backAt === undefined ? undefined : backAt - readyAt,
      connectedAtEnd: s5.connected,
      clients: diffStats(s4, s5),
      serverCpuMs: cpuMsBetween(readySample, afterStorm),
      peakRssBytes: Math.max(tl.peakRssBytes, afterStorm.rssBytes),
      rssAfterBytes: afterStorm.rssBytes,
      console: stormConsole,
    };
    say(
      `[${kind}]   storm: ${backAt === undefined ? `NOT all back within ${args.stormTimeoutSec} s (${s5.connected}/${n})` : `all back ${((backAt - killedAt) / 1000).toFixed(1)} s after the kill`}; ` +
        `${storm.clients.shedBeforeTls} shed before TLS, ${storm.clients.tcpRefused} refused by TCP, ${storm.clients.refused} refused after TLS, ${storm.clients.resumedConnects} resumed / ${storm.clients.fullConnects} full${otherLoad(foreign.storm)}`,
    );
    const rss = (a: TargetSample, b: TargetSample): number => (b.rssBytes - a.rssBytes) / n;
    return {
      kind,
      agents: n,
      full: {
        wallMs: fullWallMs,
        cpuMsPerConnect: cpuMsBetween(before, afterConnect) / n,
        clients: diffStats(s0, s1),
      },
      resumed: {
        wallMs: resumedWallMs,
        cpuMsPerConnect: cpuMsBetween(beforeResume, afterResume) / n,
        clients: diffStats(s2, s3),
      },
      memory: {
        rssBeforeBytes: before.rssBytes,
        rssAfterBytes: afterConnect.rssBytes,
        rssPerAgentBytes: rss(before, afterConnect),
        heapPerAgentBytes: (afterConnect.heapUsedBytes - before.heapUsedBytes) / n,
      },
      steady: {
        wallMs: steadyWallMs,
        checkins: rtts.length,
        unanswered: steadyRuns.reduce((sum, r) => sum + r.unanswered, 0),
        cpuMs: steadyCpuMs,
        idleCpuMs: (idleCpuMs / idleWallMs) * steadyWallMs,
        checkinCpuMs,
        cpuShareOfCore: steadyCpuMs / steadyWallMs,
        cpuMsPerCheckin: rtts.length > 0 ? checkinCpuMs / rtts.length : NaN,
        p50Ms: percentile(rtts, 50),
        p99Ms: percentile(rtts, 99),
        maxMs: rtts[rtts.length - 1] ?? NaN,
        eventLoopDelayMaxMs: steadyAfter.eventLoopDelayMaxMs,
        console: steadyConsole,
      },
      fleetRate: {
        intervalMs: fleetIntervalMs,
        wallMs: rateWallMs,
        checkins: rateRtts.length,
        unanswered: rateRuns.reduce((sum, r) => sum + r.unanswered, 0),
        cpuMs: rateCpuMs,
        cpuShareOfCore: rateCpuMs / rateWallMs,
        idleShareOfCore: idleCpuMs / idleWallMs,
        p50Ms: percentile(rateRtts, 50),
        p99Ms: percentile(rateRtts, 99),
        maxMs: rateRtts[rateRtts.length - 1] ?? NaN,
        eventLoopDelayMaxMs: rateAfter.eventLoopDelayMaxMs,
        console: rateConsole,
      },
      storm,
      foreign,
      timeline: tl.points,
    };
  } finally {
    timeline?.stop();
    probe?.close();
    await Promise.allSettled(loadgens.map((l) => l.stop()));
    if (target) await target.stop().catch(() => target?.kill());
    await fs.rm(dataDir, { recursive: true, force: true });
  }
}

/** Runs the scale bench and writes its section; resolves with the exit code. */
export async function runScaleBench(argv: string[], io: CliIo): Promise<number> {
  const args = parseScaleArgs(argv);
  if ('help' in args) {
    io.out(SCALE_USAGE);
    return 0;
  }
  const limit = await openFileLimit();
  const perProcess = Math.ceil(args.agents / args.loadgens);
  const perServerProcess = Math.ceil(args.agents / Math.max(1, args.workers));
  if (limit !== undefined && (perServerProcess + 1000 > limit || perProcess + 1000 > limit)) {
    throw usageError(
      `--agents ${args.agents} needs more open files than this machine allows one process (hard limit ${limit}): ` +
        `each server process holds its agents' sockets (${perServerProcess} with --workers ${args.workers}), each load generator ${perProcess}. ` +
        `Use more --workers and --loadgens, or raise the hard limit (ulimit -Hn, as root).`,
    );
  }
  const startedAt = new Date();
  io.out(
    `rollcall bench scale: ${args.agents} agents, ${args.workers > 0 ? `${args.workers} agent-port worker processes per server, ` : ''}` +
      `${args.loadgens} load generator process(es), ${args.sources} loopback source address(es), ${args.concurrency} connects in flight`,
  );
  if (args.profileDir) io.out(`profiling the servers into ${args.profileDir}: the profiler slows them, so these numbers are not for publishing`);
  const { pki, cached } = await loadOrCreateBenchPki(args.cacheDir, args.agents, (m) => io.out(m));
  io.out(cached ? `using cached certificates from ${args.cacheDir}` : 'certificates ready');
  const busyBefore = await machineBusyMs();
  const t0 = Date.now();
  const results: ScaleResult[] = [];
  for (const kind of args.only ? [args.only] : (['ours', 'bare'] as const)) results.push(await runOne(kind, pki, args, (m) => io.out(m)));
  const busyAfter = await machineBusyMs();
  const wallMs = Date.now() - t0;
  const busy = busyBefore !== undefined && busyAfter !== undefined ? { machineBusyMs: busyAfter - busyBefore, wallMs, cpuCount: os.cpus().length } : undefined;
  const ownServerCpuMs = results.reduce((s, r) => s + r.full.cpuMsPerConnect * r.agents + r.resumed.cpuMsPerConnect * r.agents + r.steady.cpuMs + r.storm.serverCpuMs, 0);
  const section = renderScaleSection({
    startedAt,
    machine: describeMachine(),
    openFileLimit: limit,
    args,
    results,
    busy: busy ? { ...busy, serversMeasuredCpuMs: ownServerCpuMs, share: foreignLoad(busyBefore!, busyAfter!, 0, wallMs, busy.cpuCount).share } : undefined,
  });
  io.out('');
  io.out(section);
  await writeSection(args.out, 'scale', section);
  io.out(`\nwrote the scale section of ${args.out}`);
  return 0;
}
