/**
 * What an agent's outbox events mean for the rest of the server (protocol
 * 3): failed attempts and probe rounds become health observations, the same
 * as a protocol-2 `report`. Pure.
 */
import type { AgentEvent, FailedAttempt, ProbeResult } from '../common/protocol.js';
import { reportToObservations, type ReportContext } from './agent-reports.js';
import type { Observation } from './storage/evidence-store.js';

/** The observations a run of newly stored events stands for. */
export function eventsToObservations(events: readonly AgentEvent[], ctx: ReportContext): Observation[] {
  const attempts: FailedAttempt[] = [];
  const probes: ProbeResult[] = [];
  for (const e of events) {
    if (e.kind === 'attempt') attempts.push(e.data);
    else if (e.kind === 'probes') probes.push(...e.data.results);
  }
  if (attempts.length === 0 && probes.length === 0) return [];
  return reportToObservations({ type: 'report', id: 1, probes, attempts, droppedAttempts: 0 }, ctx);
}

/** The offline check-in records among newly stored events: how many, and the newest `at` (null when none). */
export function offlineCheckins(events: readonly AgentEvent[]): { count: number; lastAt: number | null } {
  let count = 0;
  let lastAt: number | null = null;
  for (const e of events) {
    if (e.kind !== 'checkin') continue;
    count += 1;
    lastAt = Math.max(lastAt ?? 0, e.at);
  }
  return { count, lastAt };
}

/** Events dropped unsent by the agent's full outbox, summed over `dropped` events. */
export function droppedCount(events: readonly AgentEvent[]): number {
  return events.reduce((n, e) => n + (e.kind === 'dropped' ? e.data.count : 0), 0);
}
