/**
 * The comparison of Rollcall against the bare baseline over one or more
 * repetitions: per metric, the median of each side, its range, and the
 * ratio of the medians against the "within 1.5x" goal. Pure arithmetic.
 */
import type { TargetResult } from './bench-measure.js';

/** Which way a metric is better. */
export type Direction = 'lower' | 'higher';

/** The "within 1.5x of bare" goal. */
export const GOAL_RATIO = 1.5;

/** One compared metric and how to read it off a result. */
interface MetricDef {
  readonly metric: string;
  readonly unit: string;
  readonly better: Direction;
  /** True for the four metrics the goal is about. */
  readonly goal: boolean;
  readonly value: (r: TargetResult) => number;
}

/** The four goal metrics first, then informational ones that help explain them. */
const METRICS: readonly MetricDef[] = [
  { metric: 'Server CPU per connect', unit: 'ms', better: 'lower', goal: true, value: (r) => r.connectCpuMsPerAgent },
  { metric: 'Server RSS per connected agent', unit: 'KiB', better: 'lower', goal: true, value: (r) => r.rssBytesPerAgent / 1024 },
  { metric: 'Check-in round trips per second', unit: '/s', better: 'higher', goal: true, value: (r) => r.roundTripsPerSec },
  { metric: 'Check-in p99 latency', unit: 'ms', better: 'lower', goal: true, value: (r) => r.rttP99Ms },
  { metric: 'Check-in p50 latency', unit: 'ms', better: 'lower', goal: false, value: (r) => r.rttP50Ms },
  { metric: 'Server CPU per check-in', unit: 'ms', better: 'lower', goal: false, value: (r) => r.checkinCpuMsPerRoundTrip },
  { metric: 'Server heap growth per connected agent', unit: 'KiB', better: 'lower', goal: false, value: heapKiBPerAgent },
  { metric: 'Connect phase wall time', unit: 's', better: 'lower', goal: false, value: (r) => r.connectWallMs / 1000 },
];

/** V8 heap growth during the connect phase, per agent, in KiB. */
export function heapKiBPerAgent(r: TargetResult): number {
  return (r.samples.afterConnect.heapUsedBytes - r.samples.before.heapUsedBytes) / r.agents / 1024;
}

/** The median of some numbers (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** One side's value of a metric over the repetitions. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly runs: number;
}

function spread(values: readonly number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), runs: values.length };
}

/** One row of the comparison table. */
export interface ComparisonRow {
  readonly metric: string;
  readonly unit: string;
  readonly better: Direction;
  readonly ours: Spread;
  readonly bare: Spread;
  /**
   * How many times worse Rollcall is than bare (1 = equal, below 1 = better),
   * from the medians: ours/bare when lower is better, bare/ours when higher is.
   */
  readonly costRatio: number;
  /** The goal for costRatio (at most this), or undefined when the row is for information only. */
  readonly goal: number | undefined;
  readonly met: boolean | undefined;
}

/** Compares the repetitions of each side, metric by metric. */
export function compareResults(ours: readonly TargetResult[], bare: readonly TargetResult[], goal = GOAL_RATIO): ComparisonRow[] {
  if (ours.length === 0 || bare.length === 0) throw new Error('nothing to compare: a side has no results');
  return METRICS.map((m) => {
    const o = spread(ours.map(m.value));
    const b = spread(bare.map(m.value));
    const costRatio = m.better === 'lower' ? o.median / b.median : b.median / o.median;
    const g = m.goal ? goal : undefined;
    return { metric: m.metric, unit: m.unit, better: m.better, ours: o, bare: b, costRatio, goal: g, met: g === undefined ? undefined : costRatio <= g };
  });
}
