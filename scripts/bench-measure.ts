/**
 * One measurement run against one server under test, and the comparison of
 * Rollcall against the bare baseline. The arithmetic (percentiles, ratios,
 * goal checks) is pure and kept apart from the processes and sockets.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { closeAgents, connectAgents, runCheckins, type BenchAgent } from './bench-clients.js';
import type { BenchPki } from './bench-pki.js';
import { startTarget, type TargetKind, type TargetSample } from './bench-target-process.js';

/** Options for {@link measureTarget}. */
export interface MeasureOptions {
  /** Sequential check-in round trips per agent. */
  readonly checkinsPerAgent: number;
  /** Connections in flight at once during the connect phase. */
  readonly concurrency: number;
  /** Deadline of each phase (connect, check-in). */
  readonly phaseDeadlineMs: number;
  /** Child entry override (tests); see startTarget. */
  readonly targetEntry?: string;
  /** When set, each server process writes a V8 CPU profile into this directory. */
  readonly profileDir?: string;
  readonly onProgress?: (message: string) => void;
}

/** Everything measured against one server. */
export interface TargetResult {
  readonly kind: TargetKind;
  readonly agents: number;
  readonly checkinsPerAgent: number;
  readonly samples: { readonly before: TargetSample; readonly afterConnect: TargetSample; readonly afterCheckins: TargetSample };
  readonly connectWallMs: number;
  /** Server CPU (user + system, all threads) during the connect phase, per agent. */
  readonly connectCpuMsPerAgent: number;
  /** (RSS after connect − RSS before) / agents. */
  readonly rssBytesPerAgent: number;
  readonly roundTrips: number;
  readonly checkinWallMs: number;
  readonly roundTripsPerSec: number;
  /** Server CPU during the check-in phase, per round trip. */
  readonly checkinCpuMsPerRoundTrip: number;
  readonly rttP50Ms: number;
  readonly rttP99Ms: number;
  readonly rttMaxMs: number;
}

/** The p-th percentile (0 < p ≤ 100) of values sorted ascending, nearest-rank method. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** CPU milliseconds spent by the server between two samples, leaving out the forced GC of the first. */
export function cpuMsBetween(from: TargetSample, to: TargetSample): number {
  return (to.cpuUs - from.cpuAfterGcUs) / 1000;
}

/** Turns samples and client timings into a result. */
export function summarize(
  kind: TargetKind,
  agents: number,
  checkinsPerAgent: number,
  samples: TargetResult['samples'],
  connectWallMs: number,
  checkins: { rttMs: Float64Array; wallMs: number },
): TargetResult {
  const sorted = Float64Array.from(checkins.rttMs).sort();
  const roundTrips = sorted.length;
  return {
    kind,
    agents,
    checkinsPerAgent,
    samples,
    connectWallMs,
    connectCpuMsPerAgent: cpuMsBetween(samples.before, samples.afterConnect) / agents,
    rssBytesPerAgent: (samples.afterConnect.rssBytes - samples.before.rssBytes) / agents,
    roundTrips,
    checkinWallMs: checkins.wallMs,
    roundTripsPerSec: roundTrips / (checkins.wallMs / 1000),
    checkinCpuMsPerRoundTrip: cpuMsBetween(samples.afterConnect, samples.afterCheckins) / roundTrips,
    rttP50Ms: percentile(sorted, 50),
    rttP99Ms: percentile(sorted, 99),
    rttMaxMs: sorted[roundTrips - 1] ?? NaN,
  };
}

/**
 * Starts one server in its own process, connects every agent of the PKI,
 * runs the check-in phase, and samples the server before, after connecting
 * and after the check-ins. Clients and the child process are closed on
 * every path, failure included.
 */
export async function measureTarget(kind: TargetKind, pki: BenchPki, opts: MeasureOptions): Promise<TargetResult> {
  const say = opts.onProgress ?? (() => undefined);
  const n = pki.agents.length;
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), `rollcall-bench-${kind}-`));
  const agents: BenchAgent[] = [];
  let target: Awaited<ReturnType<typeof startTarget>> | undefined;
  try {
    say(`[${kind}] starting server process`);
    const execArgv = opts.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`, `--cpu-prof-name=${kind}-${Date.now()}.cpuprofile`] : [];
    target = await startTarget(kind, pki, { dataDir, entry: opts.targetEntry, execArgv });
    const before = await target.sample();
    say(`[${kind}] listening on 127.0.0.1:${target.port} (pid ${target.pid}); connecting ${n} agents, ${opts.concurrency} in flight`);
    const connectStart = process.hrtime.bigint();
    await connectAgents({ port: target.port, pki }, agents, {
      concurrency: opts.concurrency,
      deadlineMs: opts.phaseDeadlineMs,
      onProgress: (done) => say(`[${kind}]   ${done}/${n} connected`),
    });
    const connectWallMs = Number(process.hrtime.bigint() - connectStart) / 1e6;
    const afterConnect = await target.sample();
    if (afterConnect.openChannels !== n) throw new Error(`[${kind}] server holds ${afterConnect.openChannels} channels, expected ${n}`);
    say(`[${kind}] ${n} connected in ${(connectWallMs / 1000).toFixed(1)} s; ${opts.checkinsPerAgent} check-ins each, all agents at once`);
    const checkins = await runCheckins(agents, { perAgent: opts.checkinsPerAgent, deadlineMs: opts.phaseDeadlineMs });
    const afterCheckins = await target.sample();
    const result = summarize(kind, n, opts.checkinsPerAgent, { before, afterConnect, afterCheckins }, connectWallMs, checkins);
    say(`[${kind}] ${result.roundTrips} round trips in ${(checkins.wallMs / 1000).toFixed(1)} s; closing`);
    return result;
  } finally {
    await closeAgents(agents);
    if (target) {
      await target.stop().catch((err: unknown) => {
        say(`[${kind}] server did not stop cleanly (${err instanceof Error ? err.message : String(err)}); killed`);
        target?.kill();
      });
    }
    await fs.rm(dataDir, { recursive: true, force: true });
  }
}
