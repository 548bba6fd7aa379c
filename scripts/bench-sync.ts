/**
 * `npm run bench -- sync`: the MSP sync under check-in load.
 *
 *   node dist/scripts/bench.js sync [--agents N] [--customers C] [--msps M] [--out docs/benchmarks.md]
 *                                   [--period MS] [--idle SECONDS] [--settle SECONDS] [--concurrency K]
 *                                   [--cache-dir .bench-cache] [--phase-timeout SECONDS] [--profile DIR] [--resyncs K]
 *
 * N agents (default 2,000) connect to our server and keep checking in,
 * each once per period (default 1.5 s). An account of 1 MSP Manager, M
 * managed MSPs (50) and C customers (10,000) is linked through the console
 * API from a portal stand-in on loopback, then synced again with nothing
 * changed, K times (default 20; their windows pooled, about as long as the idle windows together); check-in latency is
 * timed during the syncs and in idle windows before and after. Writes its own section of the --out file and keeps the others.
 */
import os from 'node:os';
import path from 'node:path';
import { formatTable, parseCommandArgs, usageError, type CliIo } from '../common/cli-support.js';
import { TREE_LIMITS } from '../server/msp/tree.js';
import { positiveInt } from './bench-args.js';
import { describeMachine, foreignLoad, machineBusyMs } from './bench-machine.js';
import { loadOrCreateBenchPki } from './bench-pki.js';
import { writeSection } from './bench-sections.js';
import { measureSync, WINDOW_NAMES, type SyncBenchResult } from './bench-sync-measure.js';
import { syncGoals } from './bench-sync-goals.js';
import { renderSyncSection } from './bench-sync-report.js';
import { formatValue } from './bench-format.js';

/** Parsed command line of `bench sync`. */
export interface SyncBenchArgs {
  readonly agents: number;
  readonly customers: number;
  readonly msps: number;
  readonly periodMs: number;
  readonly idleMs: number;
  readonly settleMs: number;
  readonly concurrency: number;
  /** No-change re-syncs, their windows pooled. */
  readonly resyncs: number;
  readonly out: string;
  readonly cacheDir: string;
  readonly phaseDeadlineMs: number;
  /** Directory for the server's V8 CPU profile, when profiling. */
  readonly profileDir: string | undefined;
}

/** How `bench sync` is called. */
export const SYNC_USAGE =
  'usage: node dist/scripts/bench.js sync [--agents N] [--customers C] [--msps M] [--out FILE] [--period MS] [--idle SECONDS] ' +
  '[--settle SECONDS] [--concurrency K] [--cache-dir DIR] [--phase-timeout SECONDS] [--profile DIR] [--resyncs K]';

/** Parses the flags after `sync`; throws a usage error naming the problem. */
export function parseSyncArgs(argv: string[]): SyncBenchArgs | { readonly help: true } {
  const { values, positionals } = parseCommandArgs(argv, {
    agents: { type: 'string' },
    customers: { type: 'string' },
    msps: { type: 'string' },
    period: { type: 'string' },
    idle: { type: 'string' },
    settle: { type: 'string' },
    concurrency: { type: 'string' },
    resyncs: { type: 'string' },
    out: { type: 'string' },
    'cache-dir': { type: 'string' },
    'phase-timeout': { type: 'string' },
    profile: { type: 'string' },
    debug: { type: 'boolean' },
    help: { type: 'boolean' },
  });
  if (values.help) return { help: true } as const;
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}"\n${SYNC_USAGE}`);
  const msps = positiveInt('msps', values.msps, 50, 1000, SYNC_USAGE);
  return {
    agents: positiveInt('agents', values.agents, 2000, 20_000, SYNC_USAGE),
    customers: positiveInt('customers', values.customers, 10_000, TREE_LIMITS.maxCompanies - msps, SYNC_USAGE),
    msps,
    periodMs: positiveInt('period', values.period, 1500, 60_000, SYNC_USAGE),
    idleMs: positiveInt('idle', values.idle, 10, 600, SYNC_USAGE) * 1000,
    settleMs: positiveInt('settle', values.settle, 3, 600, SYNC_USAGE) * 1000,
    concurrency: positiveInt('concurrency', values.concurrency, 50, 1000, SYNC_USAGE),
    resyncs: positiveInt('resyncs', values.resyncs, 20, 50, SYNC_USAGE),
    out: path.resolve(values.out ?? 'docs/benchmarks.md'),
    cacheDir: path.resolve(values['cache-dir'] ?? '.bench-cache'),
    phaseDeadlineMs: positiveInt('phase-timeout', values['phase-timeout'], 120, 3600, SYNC_USAGE) * 1000,
    profileDir: values.profile === undefined ? undefined : path.resolve(values.profile),
  };
}

function printResult(r: SyncBenchResult, io: CliIo): void {
  const seconds = (n: number): string => `${(n / 1000).toFixed(2)} s`;
  const ms = (n: number): string => `${formatValue(n)} ms`;
  io.out('');
  io.out(
    formatTable(
      ['window', 'wall', 'check-ins', 'p50', 'p99', 'slowest', 'server CPU', 'loop delay max: server', 'driver'],
      [
        ...WINDOW_NAMES.map((name) => {
          const w = r.windows[name];
          return [name, seconds(w.wallMs), String(w.checkins.count), ms(w.checkins.p50Ms), ms(w.checkins.p99Ms), ms(w.checkins.maxMs), ms(w.serverCpuMs),
            ms(w.eventLoopDelayMaxMs), ms(w.driverLoopDelayMaxMs)];
        }),
        ['without a sync', '', String(r.withoutSync.count), ms(r.withoutSync.p50Ms), ms(r.withoutSync.p99Ms), ms(r.withoutSync.maxMs), '', '', ''],
      ],
    ),
  );
  io.out('');
  io.out(formatTable(['goal', 'measured', 'target', ''], syncGoals(r).map((g) => [g.goal, g.measured, g.target, g.met ? 'met' : 'MISSED'])));
}

/** Runs `bench sync` and writes its section of the report; resolves with the exit code. */
export async function runSyncBench(args: SyncBenchArgs, io: CliIo): Promise<number> {
  const startedAt = new Date();
  io.out(`rollcall bench sync: ${args.agents} agents checking in every ${args.periodMs} ms; 1 MSP Manager, ${args.msps} managed MSPs, ${args.customers} customers`);
  const { pki, cached } = await loadOrCreateBenchPki(args.cacheDir, args.agents, (m) => io.out(m));
  io.out(cached ? `using cached certificates from ${args.cacheDir}` : 'certificates ready');
  const busyBefore = await machineBusyMs();
  const cpuBefore = process.cpuUsage();
  const startedMs = Date.now();
  const result = await measureSync(pki, { ...args, onProgress: (m) => io.out(m) });
  const busyAfter = await machineBusyMs();
  const driverCpu = process.cpuUsage(cpuBefore);
  // The server's start-up (before its first sample) is not counted as ours: it overstates the others' share a little.
  const ownCpuMs = (driverCpu.user + driverCpu.system) / 1000 + result.serverCpuMs;
  const foreign =
    busyBefore === undefined || busyAfter === undefined ? undefined : foreignLoad(busyBefore, busyAfter, ownCpuMs, Date.now() - startedMs, os.cpus().length);
  printResult(result, io);
  await writeSection(args.out, 'sync', renderSyncSection({ startedAt, machine: describeMachine(), foreign, result }));
  io.out(`\nwrote the sync section of ${args.out}`);
  return 0;
}
