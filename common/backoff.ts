/**
 * Reconnect delay policy: exponential backoff with full jitter.
 *
 * The delay before attempt n (n = 0 for the first retry) is drawn uniformly
 * from [0, min(cap, base * 2^n)]. Full jitter spreads a fleet that lost its
 * server at the same moment over the whole window instead of in waves. A
 * delay advised by the server is a floor: the agent never comes back sooner
 * than it was told to.
 *
 * An agent that knows its fleet's reconnect window (protocol 4:
 * `welcome.reconnectWindowMs`) also takes its place in it when the server
 * goes ({@link nextReconnectDelay}): told when to come back (the shutdown
 * notice), that moment is its place; lost without notice, it retries once
 * within a second (a lone agent whose own network blinked is back at once)
 * and then draws its place from the whole window, so 100,000 agents arrive
 * over minutes instead of in one wave. An attempt at its place that fails
 * (the server still starting, or shedding) draws a new place from the whole
 * window again, or rather from what is left of it: the window is anchored
 * where the agent first took its place, so an agent shed late in the
 * return still comes back before the fleet's window ends (drawn again over
 * the whole window, one shed at minute three landed after minute five, and
 * at 100,000 agents a few hundred did). What is left is never taken as less
 * than an eighth of the window (a failure just before the end does not
 * retry at once), and once the window is over the agent draws from the
 * whole window again (a server that stays down or keeps shedding is not
 * hammered). Two quicker ways were tried with 100,000 agents on this box
 * and both stalled the return at about 17 % (over 230,000 attempts shed
 * before TLS): plain backoff from one second, and a quarter of the window
 * growing by a quarter per failure. Retrying sooner than the fleet's pace
 * only adds attempts that are shed; what is left of the window keeps that
 * pace, since the agents still to come are spread over it. Its own effect
 * at 100,000 agents is still unmeasured: session 5 tried it beside another
 * change, and session 6's runs with it (docs/benchmarks.md, run 10) were on
 * a machine too slow for the fleet window's pace with or without it. The
 * jitter is drawn after the cap is applied, never capped after.
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
 */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random, advisedMs = 0): number {
  return Math.max(Math.floor(random() * cappedWindow(policy, attempt)), Math.max(0, advisedMs));
}

function cappedWindow(policy: BackoffPolicy, attempt: number): number {
  return Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(attempt, 30));
}

/** Where an agent stands in its fleet's return after losing the server (see {@link nextReconnectDelay}). */
export interface ReconnectState {
  /** Failed attempts since the last welcome. */
  attempt: number;
  /** The fleet's reconnect window from the last welcome (0: none advertised). */
  windowMs: number;
  /** Failed attempts since the agent took its place in the fleet window; -1 before it has one. */
  sincePlaced: number;
  /** When (on the caller's monotonic clock, ms) the fleet window the agent took its place in ends; 0 before it has one. */
  windowEndsAt: number;
}

/** What is left of the fleet window is never taken as less than this share of it. */
const LEAST_REMAINING_SHARE = 1 / 8;

/** A state for an agent that has not been welcomed yet. */
export function newReconnectState(): ReconnectState {
  return { attempt: 0, windowMs: 0, sincePlaced: -1, windowEndsAt: 0 };
}

/** The channel was welcomed: the next loss starts afresh, with the window the server advertised (0 when none). */
export function reconnectWelcomed(state: ReconnectState, windowMs: number): void {
  state.attempt = 0;
  state.windowMs = Math.max(0, windowMs);
  state.sincePlaced = -1;
  state.windowEndsAt = 0;
}

/**
 * The delay before the next attempt after one that failed (or a channel
 * that ended), and the state moved on. `advisedMs`: the server's retry
 * hint, a floor, and with a fleet window the agent's place in it. `now`:
 * a monotonic clock reading in ms (a seam for tests).
 */
export function nextReconnectDelay(
  policy: BackoffPolicy,
  state: ReconnectState,
  random: () => number = Math.random,
  advisedMs = 0,
  now: number = performance.now(),
): number {
  let window = cappedWindow(policy, state.attempt);
  const w = state.windowMs;
  const advised = Math.max(0, advisedMs);
  if (w > 0) {
    if (advised > 0) {
      // The server chose the moment. Its notice spreads the fleet over a window that ends no sooner than this.
      if (state.windowEndsAt === 0) state.windowEndsAt = now + Math.max(advised, w);
      state.sincePlaced = 0;
    } else if (state.sincePlaced < 0 && state.attempt >= 1) {
      // The quick retry failed: a place in the whole window, which starts now.
      window = Math.max(window, w);
      state.windowEndsAt = now + w;
      state.sincePlaced = 0;
    } else if (state.sincePlaced >= 0) {
      // The attempt at its place failed: a new place in what is left of the window (the whole window once it is over).
      const left = state.windowEndsAt - now;
      window = Math.max(window, left > 0 ? Math.max(left, w * LEAST_REMAINING_SHARE) : w);
      state.sincePlaced += 1;
    }
  }
  state.attempt += 1;
  return Math.max(Math.floor(random() * window), advised);
}
