/**
 * How a fleet that lost its server is spread over time as it comes back.
 *
 * The reconnect spread told to agents when the server shuts down (and,
 * as `welcome.reconnectWindowMs`, for when it goes without notice): each gets
 * `retryAfterMs` drawn uniformly from [RESTART_FLOOR_MS, RESTART_FLOOR_MS + window],
 * the window growing with the number of connected agents (RESTART_SPREAD_PER_AGENT_MS
 * each: 100,000 agents spread over 240 s, about 420 resumed handshakes a second,
 * what this 2-core box managed with the load generators on it; simulated, 2 ms
 * per agent left a server slower than 500 a second overrun and its shed agents
 * late) within [RESTART_MIN_WINDOW_MS, RESTART_MAX_WINDOW_MS].
 *
 * On a shutdown the window starts after the restart is expected to be over:
 * the server measures how long it took to start (and its last stop took)
 * and keeps that in its database, so agents are not told to come back
 * while the new process is still starting. Told too early, an agent finds
 * the port closed and has to draw a new moment, and at 100,000 agents a
 * quarter-minute restart turns a tenth of the fleet into late arrivals.
 */
export const RESTART_FLOOR_MS = 2000;
export const RESTART_SPREAD_PER_AGENT_MS = 2.4;
export const RESTART_MIN_WINDOW_MS = 5000;
export const RESTART_MAX_WINDOW_MS = 240_000;

/** The window agents are spread over when `sessions` agents lose the server at once. */
export function restartWindowMs(sessions: number): number {
  return Math.min(RESTART_MAX_WINDOW_MS, Math.max(RESTART_MIN_WINDOW_MS, Math.round(sessions * RESTART_SPREAD_PER_AGENT_MS)));
}

/** Longest restart the notice allows for: one that took longer is not taken as the usual one. */
export const MAX_RESTART_ESTIMATE_MS = 120_000;

/** Meta key of the last measured start and stop of this server. */
export const RESTART_TIMING_KEY = 'restart_timing';

/** How long this server last took to start (build to listening) and to stop (close to done). */
export interface RestartTiming {
  readonly startupMs: number;
  readonly shutdownMs: number;
}

/** Reads a stored {@link RestartTiming}; anything malformed counts as none. */
export function parseRestartTiming(v: unknown): RestartTiming | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const { startupMs, shutdownMs } = v as Record<string, unknown>;
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  return ok(startupMs) && ok(shutdownMs) ? { startupMs, shutdownMs } : undefined;
}

/** The earliest moment, after a shutdown notice, that agents are told to come back: the floor plus the expected restart. */
export function restartFloorMs(expectedRestartMs: number): number {
  return RESTART_FLOOR_MS + Math.min(MAX_RESTART_ESTIMATE_MS, Math.max(0, Math.round(expectedRestartMs)));
}
