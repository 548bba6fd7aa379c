/**
 * Reconnect delay policy: exponential backoff with full jitter.
 *
 * The delay before attempt n (n = 0 for the first retry) is drawn uniformly
 * from [0, min(cap, base * 2^n)]. Full jitter spreads a fleet that lost its
 * server at the same moment over the whole window instead of in waves. A
 * delay advised by the server is a floor: the agent never comes back sooner
 * than it was told to.
 *
 * A fleet-sized spread (protocol 4: `welcome.reconnectWindowMs`) widens the
 * window once the first quick retry has failed: after a server crash every
 * agent tries once within a second (a lone agent whose own network blinked
 * is back at once), finds the server still down or shedding, and from then
 * on draws from the larger of its backoff window and the fleet's window, so
 * 100,000 agents arrive over minutes instead of in one wave. The jitter is
 * drawn after the cap is applied, never capped after. It also applies after
 * a shutdown notice (`SERVER_RESTARTING`): an agent whose advised moment
 * finds the server still down or shedding spreads again rather than
 * retrying within seconds (tried the other way at 100,000 agents: the
 * quick retries were shed by the tens of thousands and the storm stalled).
 */
export interface BackoffPolicy {
  /** First window in milliseconds. */
  readonly baseMs: number;
  /** Largest window in milliseconds. */
  readonly capMs: number;
}

/** Default policy: 1 s base, 5 min cap. */
export const DEFAULT_BACKOFF: BackoffPolicy = Object.freeze({ baseMs: 1000, capMs: 300_000 });

/**
 * Computes the delay before retry number `attempt`.
 * @param random - a source of uniform numbers in [0, 1); a seam for tests.
 * @param advisedMs - a delay the server asked for, used as a minimum.
 * @param spreadMs - the fleet's reconnect window; used from the second retry (attempt 1) on.
 */
export function backoffDelay(
  policy: BackoffPolicy,
  attempt: number,
  random: () => number = Math.random,
  advisedMs = 0,
  spreadMs = 0,
): number {
  const exp = Math.min(attempt, 30);
  const capped = Math.min(policy.capMs, policy.baseMs * 2 ** exp);
  const window = attempt >= 1 ? Math.max(capped, spreadMs) : capped;
  const jittered = Math.floor(random() * window);
  return Math.max(jittered, Math.max(0, advisedMs));
}
