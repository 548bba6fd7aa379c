/**
 * `npm run bench`: Rollcall against a bare `ws` + https mutual-TLS echo
 * server, in the same run, on the same certificates.
 *
 *   node dist/scripts/bench.js [--agents N] [--checkins K] [--out docs/benchmarks.md]
 *                              [--concurrency C] [--repeat R] [--cache-dir .bench-cache]
 *                              [--phase-timeout SECONDS] [--profile DIR]
 *
 * For each server: N agents connect (C in flight), each sends hello and
 * waits for welcome; then every agent makes K sequential check-in round
 * trips, all agents at once. The servers run one after the other, each in
 * its own child process, and report their own CPU time and RSS. After an
 * untimed warm-up, this is repeated R times (default 3), alternating which
 * server goes first, and the table shows medians: single runs of the
 * latency and throughput vary too much on a small shared machine. Progress
 * goes to stdout; the table goes to stdout and to its own section of the
 * --out file (the other sections stay). With --profile, each server process
 * also writes a V8 CPU profile there.
 *
 *   node dist/scripts/bench.js sync …   the MSP sync under check-in load (scripts/bench-sync.ts)
 *   node dist/scripts/bench.js health … port checks and the health report (scripts/bench-visibility.ts)
 *   node dist/scripts/bench.js console … console device pages and the live feed (scripts/bench-console.ts)
 *   node dist/scripts/bench.js agent …  the agent executable: size, idle RSS, CPU (scripts/bench-agent.ts)
 *   node dist/scripts/bench.js scale …  many agents on one box: memory, connect cost, steady state, reconnect storm (scripts/bench-scale.ts)
 */
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatTable, parseCommandArgs, processIo, runCli, usageError, type CliIo } from '../common/cli-support.js';
import { positiveInt } from './bench-args.js';
import { compareResults, type ComparisonRow } from './bench-compare.js';
import { formatSpread } from './bench-format.js';
import { describeMachine, foreignLoad, machineBusyMs, type ForeignLoad } from './bench-machine.js';
import { measureTarget, type MeasureOptions, type TargetResult } from './bench-measure.js';
import { loadOrCreateBenchPki, type BenchPki } from './bench-pki.js';
import { renderCheckinSection } from './bench-report.js';
import { writeSection } from './bench-sections.js';
import { parseSyncArgs, runSyncBench, SYNC_USAGE } from './bench-sync.js';
import { HEALTH_USAGE, runHealthBench } from './bench-visibility.js';
import { CONSOLE_USAGE, runConsoleBench } from './bench-console.js';
import { AGENT_USAGE, runAgentBench } from './bench-agent.js';
import { runScaleBench, SCALE_USAGE } from './bench-scale.js';

/** Parsed command line of the bench. */
export interface BenchArgs {
  readonly agents: number;
  readonly checkins: number;
  readonly concurrency: number;
  /** Runs of each server; the table shows medians. */
  readonly repeat: number;
  readonly out: string;
  readonly cacheDir: string;
  readonly phaseDeadlineMs: number;
  /** Directory for the servers' V8 CPU profiles, when profiling. */
  readonly profileDir: string | undefined;
}

/** Agents of the untimed warm-up pass. */
const WARM_UP_AGENTS = 500;

const USAGE = 'usage: node dist/scripts/bench.js [--agents N] [--checkins K] [--out FILE] [--concurrency C] [--repeat R] [--cache-dir DIR] [--phase-timeout SECONDS] [--profile DIR]';

/** Parses the bench's flags; throws a usage error listing the problem. */
export function parseBenchArgs(argv: string[]): BenchArgs | { readonly help: true } {
  const { values, positionals } = parseCommandArgs(argv, {
    agents: { type: 'string' },
    checkins: { type: 'string' },
    concurrency: { type: 'string' },
    repeat: { type: 'string' },
    out: { type: 'string' },
    'cache-dir': { type: 'string' },
    'phase-timeout': { type: 'string' },
    profile: { type: 'string' },
    debug: { type: 'boolean' },
    help: { type: 'boolean' },
  });
  if (values.help) return { help: true } as const;
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}"\n${USAGE}`);
  return {
    agents: positiveInt('agents', values.agents, 2000, 20_000, USAGE),
    checkins: positiveInt('checkins', values.checkins, 5, 1000, USAGE),
    concurrency: positiveInt('concurrency', values.concurrency, 50, 1000, USAGE),
    repeat: positiveInt('repeat', values.repeat, 3, 20, USAGE),
    out: path.resolve(values.out ?? 'docs/benchmarks.md'),
    cacheDir: path.resolve(values['cache-dir'] ?? '.bench-cache'),
    phaseDeadlineMs: positiveInt('phase-timeout', values['phase-timeout'], 300, 3600, USAGE) * 1000,
    profileDir: values.profile === undefined ? undefined : path.resolve(values.profile),
  };
}

/** The warm-up pass and the alternating repetitions; also how much CPU other processes took meanwhile. */
async function measureAll(args: BenchArgs, pki: BenchPki, io: CliIo): Promise<{ ours: TargetResult[]; bare: TargetResult[]; foreign: ForeignLoad | undefined }> {
  const opts: MeasureOptions = {
    checkinsPerAgent: args.checkins,
    concurrency: args.concurrency,
    phaseDeadlineMs: args.phaseDeadlineMs,
    onProgress: (m) => io.out(m),
    profileDir: args.profileDir,
  };
  // An untimed pass first: whichever server is measured first must not pay for warming up the clients.
  const warmAgents = Math.min(args.agents, WARM_UP_AGENTS);
  io.out(`warming up the client side: ${warmAgents} agents against a throwaway bare server (not measured)`);
  await measureTarget('bare', { ...pki, agents: pki.agents.slice(0, warmAgents) }, { ...opts, onProgress: undefined, profileDir: undefined });
  const busyBefore = await machineBusyMs();
  const cpuBefore = process.cpuUsage();
  const startedMs = Date.now();
  const ours: TargetResult[] = [];
  const bare: TargetResult[] = [];
  for (let i = 0; i < args.repeat; i += 1) {
    io.out(`run ${i + 1} of ${args.repeat}`);
    for (const kind of i % 2 === 0 ? (['ours', 'bare'] as const) : (['bare', 'ours'] as const)) {
      (kind === 'ours' ? ours : bare).push(await measureTarget(kind, pki, opts));
    }
  }
  const busyAfter = await machineBusyMs();
  const driverCpu = process.cpuUsage(cpuBefore);
  const serversCpuUs = [...ours, ...bare].reduce((sum, r) => sum + r.samples.afterCheckins.cpuUs, 0);
  const ownCpuMs = (driverCpu.user + driverCpu.system + serversCpuUs) / 1000;
  const foreign =
    busyBefore === undefined || busyAfter === undefined ? undefined : foreignLoad(busyBefore, busyAfter, ownCpuMs, Date.now() - startedMs, os.cpus().length);
  return { ours, bare, foreign };
}

function printTable(rows: readonly ComparisonRow[], io: CliIo): void {
  io.out('');
  io.out(
    formatTable(
      ['metric', 'Rollcall', 'bare ws+https', 'ratio ours/bare*', 'goal'],
      rows.map((r) => [
        `${r.metric} (${r.unit})`,
        formatSpread(r.ours),
        formatSpread(r.bare),
        `${r.costRatio.toFixed(2)}x`,
        r.goal === undefined ? '' : `${r.met ? 'met' : 'MISSED'} (≤ ${r.goal}x)`,
      ]),
    ),
  );
  io.out('* ratio of the medians (range of the runs in brackets); bare/ours for round trips per second (higher is');
  io.out('  better), so in every row above 1 means Rollcall is worse.');
}

/** Runs the whole benchmark and writes the report; resolves with the exit code. */
export async function runBench(args: BenchArgs, io: CliIo): Promise<number> {
  const startedAt = new Date();
  io.out(`rollcall bench: ${args.agents} agents, ${args.checkins} check-ins each, ${args.concurrency} connects in flight, ${args.repeat} run(s)`);
  if (args.profileDir) io.out(`profiling both servers into ${args.profileDir}: the profiler slows them, so these numbers are not for publishing`);
  const { pki, cached } = await loadOrCreateBenchPki(args.cacheDir, args.agents, (m) => io.out(m));
  io.out(cached ? `using cached certificates from ${args.cacheDir}` : 'certificates ready');
  const { ours, bare, foreign } = await measureAll(args, pki, io);
  const rows = compareResults(ours, bare);
  printTable(rows, io);
  const section = renderCheckinSection({ startedAt, machine: describeMachine(), foreign, args, ours, bare, rows, profiled: args.profileDir !== undefined });
  await writeSection(args.out, 'checkin', section);
  if (foreign && foreign.share > 0.05) {
    io.out(`note: other processes took ${(foreign.share * 100).toFixed(0)}% of the machine during the run; wall-clock numbers are slowed`);
  }
  io.out(`\nwrote the connect and check-in section of ${args.out}`);
  return 0;
}

/** CLI entry: `sync` as the first argument runs the MSP sync bench, anything else the connect and check-in bench. */
export async function benchMain(argv: string[], io: CliIo = processIo): Promise<number> {
  const main = async (): Promise<number> => {
    if (argv[0] === 'health') return runHealthBench(argv.slice(1), io);
    if (argv[0] === 'console') return runConsoleBench(argv.slice(1), io);
    if (argv[0] === 'agent') return runAgentBench(argv.slice(1), io);
    if (argv[0] === 'scale') return runScaleBench(argv.slice(1), io);
    if (argv[0] === 'sync') {
      const args = parseSyncArgs(argv.slice(1));
      if ('help' in args) {
        io.out(SYNC_USAGE);
        return 0;
      }
      return runSyncBench(args, io);
    }
    const args = parseBenchArgs(argv);
    if ('help' in args) {
      io.out(`${USAGE}
${SYNC_USAGE}
${HEALTH_USAGE}
${CONSOLE_USAGE}
${AGENT_USAGE}
${SCALE_USAGE}`);
      return 0;
    }
    return runBench(args, io);
  };
  return runCli(main, io, argv.includes('--debug'), (err) => {
    const code = (err as { code?: unknown }).code;
    return code === 'USAGE' ? 2 : 1;
  });
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (invokedDirectly) process.exitCode = await benchMain(process.argv.slice(2));
