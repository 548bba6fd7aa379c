/**
 * Presence rules: a pure function of what we know about a device, so the
 * rules are tested without sockets and read the same in every view.
 *
 * - online: the channel is up and the last contact is at most 1.5 intervals old;
 * - late: the last contact is 1.5-3 intervals old (or the channel just dropped);
 * - offline: the last contact is over 3 intervals old, or the agent closed
 *   the channel cleanly (it said it was stopping);
 * - never_connected: enrolled, but no channel was ever accepted.
 *
 * The age band follows the model's "last connected" colours: `recent`
 * within 10 minutes, `ok` within 2 days, `warning` up to 14 days, `error`
 * beyond that.
 */

/** Presence states, iterable. */
export const PRESENCE_STATES = ['online', 'late', 'offline', 'never_connected'] as const;
export type Presence = (typeof PRESENCE_STATES)[number];

/** Age bands of the last contact. */
export const AGE_BANDS = ['recent', 'ok', 'warning', 'error', 'never'] as const;
export type AgeBand = (typeof AGE_BANDS)[number];

/** What presence is computed from. */
export interface PresenceInput {
  readonly connected: boolean;
  /** True when the last channel was closed cleanly by the agent after the last contact. */
  readonly closedCleanly: boolean;
  readonly lastCheckinAt: number | null;
  readonly lastConnectedAt: number | null;
  readonly intervalSec: number;
  readonly now: number;
}

const MINUTE = 60_000;
const DAY = 86_400_000;

/** The time of the last contact: the later of the last check-in and the last accepted hello. */
export function lastContact(input: Pick<PresenceInput, 'lastCheckinAt' | 'lastConnectedAt'>): number | null {
  const a = input.lastCheckinAt;
  const b = input.lastConnectedAt;
  if (a === null) return b;
  return b === null || a >= b ? a : b;
}

/** Computes a device's presence. */
export function computePresence(input: PresenceInput): Presence {
  const last = lastContact(input);
  if (last === null) return input.connected ? 'online' : 'never_connected';
  const age = input.now - last;
  const interval = input.intervalSec * 1000;
  if (input.connected && age <= 1.5 * interval) return 'online';
  if (!input.connected && input.closedCleanly) return 'offline';
  if (age <= 3 * interval) return 'late';
  return 'offline';
}

/** Computes the age band of a device's last contact. */
export function computeAgeBand(last: number | null, now: number): AgeBand {
  if (last === null) return 'never';
  const age = now - last;
  if (age <= 10 * MINUTE) return 'recent';
  if (age <= 2 * DAY) return 'ok';
  if (age <= 14 * DAY) return 'warning';
  return 'error';
}
