/**
 * The goals of `bench sync` (from the issue): a first sync of the account
 * under 10 s, a no-change re-sync under 2 s, and a check-in p99 during each
 * within 2x of the p99 without a sync (both idle windows together). Pure.
 */
import type { SyncBenchResult, WindowName } from './bench-sync-measure.js';

/** The goals' thresholds. */
export const SYNC_GOALS = Object.freeze({ firstSyncMs: 10_000, resyncMs: 2_000, p99Ratio: 2 });

/** One goal, checked against a run. */
export interface SyncGoalRow {
  readonly goal: string;
  /** What was measured, as text. */
  readonly measured: string;
  /** The goal's threshold, as text. */
  readonly target: string;
  readonly met: boolean;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

function p99Goal(r: SyncBenchResult, name: WindowName, label: string): SyncGoalRow {
  const during = r.windows[name].checkins.p99Ms;
  const idle = r.withoutSync.p99Ms;
  const ratio = during / idle;
  return {
    goal: `Check-in p99 during the ${label} ÷ p99 without a sync`,
    measured: `${during.toFixed(1)} ÷ ${idle.toFixed(1)} ms = ${ratio.toFixed(1)}x`,
    target: `≤ ${SYNC_GOALS.p99Ratio}x`,
    met: ratio <= SYNC_GOALS.p99Ratio,
  };
}

/** The four goals, in the order. */
export function syncGoals(r: SyncBenchResult): SyncGoalRow[] {
  return [
    { goal: 'First sync (the link API call)', measured: seconds(r.firstSync.apiMs), target: `< ${SYNC_GOALS.firstSyncMs / 1000} s`, met: r.firstSync.apiMs < SYNC_GOALS.firstSyncMs },
    { goal: 'No-change re-sync (the sync API call)', measured: seconds(r.resync.apiMs), target: `< ${SYNC_GOALS.resyncMs / 1000} s`, met: r.resync.apiMs < SYNC_GOALS.resyncMs },
    p99Goal(r, 'first sync', 'first sync'),
    p99Goal(r, 're-sync', 're-sync'),
  ];
}
