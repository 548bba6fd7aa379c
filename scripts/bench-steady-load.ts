/**
 * A steady check-in load for `bench sync`: every connected agent checks in
 * once per period, the agents spread evenly over the period, with one
 * check-in in flight per agent as a real agent has. Each round trip is
 * logged with the time it was sent, so that windows of the run (idle,
 * during a sync) can be summarised afterwards with {@link windowStats}.
 *
 * When an ack comes back after the agent's next slot, the next check-in
 * goes out at once and the schedule continues from there (counted as
 * `late`): a stalled server sees the same offered load afterwards, not a
 * burst of every missed slot.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { encode } from '../common/protocol.js';
import type { BenchAgent } from './bench-clients.js';
import { withDeadline } from './bench-deadline.js';
import { percentile } from './bench-measure.js';

/** Options for {@link startSteadyLoad}. */
export interface SteadyLoadOptions {
  /** Each agent checks in once per this many milliseconds. */
  readonly periodMs: number;
  /** Most round trips logged; the load fails beyond it (a bound on memory). */
  readonly maxRecords?: number;
}

/** Every round trip of the load so far. */
export interface CheckinLog {
  /** Send time of each round trip, milliseconds on the load's clock ({@link SteadyLoad.now}). */
  readonly sentAtMs: readonly number[];
  /** Its round-trip time in milliseconds (same index). */
  readonly rttMs: readonly number[];
  /** Check-ins sent after their slot because the previous ack came back late. */
  readonly late: number;
}

/** A running load. */
export interface SteadyLoad {
  /** The load's clock: `performance.now()` milliseconds. */
  now(): number;
  readonly log: CheckinLog;
  /** Throws the first failure (a closed channel, a wrong ack) if there was one. */
  assertHealthy(): void;
  /** Stops every agent after its current round trip; rejects with the first failure, or after `timeoutMs`. */
  stop(timeoutMs: number): Promise<CheckinLog>;
}

/** Round trips whose check-in was sent within one window of the run. */
export interface WindowStats {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Round trips per second over the window. */
  readonly perSec: number;
  /** Round trips slower than the threshold given to {@link windowStats} (0 without one). */
  readonly slower: number;
}

const DEFAULT_MAX_RECORDS = 5_000_000;

/** Starts the load on already connected agents (they must have said hello). */
export function startSteadyLoad(agents: readonly BenchAgent[], opts: SteadyLoadOptions): SteadyLoad {
  const now = (): number => performance.now();
  const maxRecords = opts.maxRecords ?? DEFAULT_MAX_RECORDS;
  const sentAtMs: number[] = [];
  const rttMs: number[] = [];
  const log = { sentAtMs, rttMs, late: 0 };
  const stopper = new AbortController();
  setMaxListeners(agents.length + 8, stopper.signal); // each waiting agent listens for the stop
  let failure: Error | undefined;
  const fail = (err: unknown): void => {
    failure ??= err instanceof Error ? err : new Error(String(err));
    stopper.abort();
  };
  const start = now();

  const runAgent = async (agent: BenchAgent, index: number): Promise<void> => {
    let due = start + (index * opts.periodMs) / agents.length;
    for (let seq = 1; !stopper.signal.aborted; seq += 1) {
      const wait = due - now();
      if (wait > 0) await sleep(wait, undefined, { signal: stopper.signal }).catch(() => undefined); // aborted: the loop ends
      if (stopper.signal.aborted) return;
      const t0 = now();
      const ack = await agent.request(encode({ type: 'checkin', seq, sentAt: Date.now(), uptimeSec: 60 + seq }));
      const t1 = now();
      if (ack.type !== 'ack' || ack.seq !== seq) throw new Error(`${agent.deviceId}: expected ack ${seq}, got ${JSON.stringify(ack)}`);
      if (sentAtMs.length >= maxRecords) throw new Error(`the steady load logged ${maxRecords} round trips, its limit`);
      sentAtMs.push(t0);
      rttMs.push(t1 - t0);
      due += opts.periodMs;
      if (due < t1) {
        log.late += 1;
        due = t1;
      }
    }
  };
  const running = Promise.all(agents.map((a, i) => runAgent(a, i).catch(fail)));

  return {
    now,
    log,
    assertHealthy: () => {
      if (failure) throw failure;
    },
    stop: async (timeoutMs) => {
      stopper.abort();
      await withDeadline(running, timeoutMs, `the steady check-in load did not stop within ${timeoutMs} ms`);
      if (failure) throw failure;
      return log;
    },
  };
}

/** A stretch of the run on the load's clock: [fromMs, toMs). */
export interface TimeRange {
  readonly fromMs: number;
  readonly toMs: number;
}

/**
 * Summarises the round trips sent within the given stretches of the run
 * (pooled), counting those slower than `thresholdMs`. Pure.
 */
export function windowStats(log: CheckinLog, ranges: readonly TimeRange[], thresholdMs = Infinity): WindowStats {
  const picked: number[] = [];
  for (let i = 0; i < log.sentAtMs.length; i += 1) {
    const t = log.sentAtMs[i]!;
    if (ranges.some((r) => t >= r.fromMs && t < r.toMs)) picked.push(log.rttMs[i]!);
  }
  const sorted = Float64Array.from(picked).sort();
  const slower = picked.filter((ms) => ms > thresholdMs).length;
  const seconds = ranges.reduce((sum, r) => sum + (r.toMs - r.fromMs), 0) / 1000;
  return {
    count: sorted.length,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted[sorted.length - 1] ?? NaN,
    perSec: seconds > 0 ? sorted.length / seconds : NaN,
    slower,
  };
}

/** The slowest round trip sent in each of `slices` equal parts of a window (NaN where none was sent). Pure. */
export function slowestBySlice(log: CheckinLog, range: TimeRange, slices: number): number[] {
  const out = new Array<number>(slices).fill(NaN);
  const width = (range.toMs - range.fromMs) / slices;
  for (let i = 0; i < log.sentAtMs.length; i += 1) {
    const t = log.sentAtMs[i]!;
    if (t < range.fromMs || t >= range.toMs) continue;
    const k = Math.min(slices - 1, Math.floor((t - range.fromMs) / width));
    const rtt = log.rttMs[i]!;
    if (!(out[k]! >= rtt)) out[k] = rtt;
  }
  return out;
}

/**
 * Cuts each range into as many whole, back-to-back stretches of `lengthMs`
 * as fit in it (the rest of each range is left out). Pure. `bench sync`
 * uses it to time idle stretches as long as a sync window: how far their
 * p99 strays from the pooled idle p99 is the noise a window of that length
 * shows with no sync at all.
 */
export function stretchesOf(ranges: readonly TimeRange[], lengthMs: number): TimeRange[] {
  if (!(lengthMs > 0)) return [];
  const out: TimeRange[] = [];
  for (const r of ranges) {
    for (let from = r.fromMs; from + lengthMs <= r.toMs; from += lengthMs) out.push({ fromMs: from, toMs: from + lengthMs });
  }
  return out;
}
