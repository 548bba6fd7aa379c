/**
 * How a fleet that lost its server is spread over time as it comes back.
 *
 * The reconnect spread told to agents when the server shuts down (and,
 * as `welcome.reconnectWindowMs`, for when it goes without notice): each gets
 * `retryAfterMs` drawn uniformly from [RESTART_FLOOR_MS, RESTART_FLOOR_MS + window],
 * the window growing with the number of connected agents (RESTART_SPREAD_PER_AGENT_MS
 * each: 100,000 agents spread over 200 s, about 500 resumed handshakes a second,
 * below what one core does) within [RESTART_MIN_WINDOW_MS, RESTART_MAX_WINDOW_MS].
 */
export const RESTART_FLOOR_MS = 2000;
export const RESTART_SPREAD_PER_AGENT_MS = 2;
export const RESTART_MIN_WINDOW_MS = 5000;
export const RESTART_MAX_WINDOW_MS = 240_000;

/** The window agents are spread over when `sessions` agents lose the server at once. */
export function restartWindowMs(sessions: number): number {
  return Math.min(RESTART_MAX_WINDOW_MS, Math.max(RESTART_MIN_WINDOW_MS, sessions * RESTART_SPREAD_PER_AGENT_MS));
}
