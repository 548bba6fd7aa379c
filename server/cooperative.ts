/**
 * Long CPU work in slices, so the event loop keeps answering agents while
 * it runs. A computation is written once as a generator that yields every
 * so often; `runAll` drives it to the end at once (tests, small inputs) and
 * `runSliced` gives the event loop a turn whenever a slice has used its
 * time budget. The work and its result are the same either way.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn, setTimeout as rest } from 'node:timers/promises';

/** A computation that yields (nothing) between its steps and returns a T. */
export type Steps<T> = Generator<void, T, void>;

/**
 * How a background computation shares the event loop and the CPU: slices of
 * `budgetMs`, each followed by a rest of `restRatio` times the slice's
 * length (0: just one turn of the event loop). A rest ratio of 1 keeps the
 * work to about half of one core, 3 to about a quarter, leaving the rest to
 * agents and whatever else shares the machine.
 */
export interface Pace {
  readonly budgetMs: number;
  readonly restRatio: number;
}

/** For work that may take all the CPU the event loop leaves: 2 ms slices, no rest. */
export const EAGER: Pace = Object.freeze({ budgetMs: 2, restRatio: 0 });
/**
 * For background work such as an MSP sync: 2 ms slices, each followed by a
 * rest five times as long, about a sixth of a core (on the sync bench half a
 * core doubled the check-ins' median latency, and a quarter still left
 * bursts in their p99; the sync finishes far inside its time goals either
 * way: a background job may take longer, the agents may not).
 */
export const BACKGROUND: Pace = Object.freeze({ budgetMs: 2, restRatio: 5 });

/** Runs the steps to the end without yielding to the event loop. */
export function runAll<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Runs the steps, letting the event loop run whenever a slice has used its budget. */
export async function runSliced<T>(steps: Steps<T>, pace: Pace = BACKGROUND): Promise<T> {
  const pacer = new Pacer(pace);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (pacer.due()) await pacer.pause();
  }
}

/** For async loops: `await pacer.step()` between items. */
export class Pacer {
  private started = performance.now();

  constructor(private readonly pace: Pace = BACKGROUND) {}

  /** True once the current slice has used its budget. */
  due(): boolean {
    return performance.now() - this.started >= this.pace.budgetMs;
  }

  /** Lets the event loop run (I/O callbacks included), rests as the pace says, then starts a new slice. */
  async pause(): Promise<void> {
    const worked = performance.now() - this.started;
    if (this.pace.restRatio > 0) await rest(Math.max(1, Math.round(worked * this.pace.restRatio)));
    else await nextTurn();
    this.started = performance.now();
  }

  /** Pauses when the slice is used up; call between items of an async loop. */
  async step(): Promise<void> {
    if (this.due()) await this.pause();
  }
}
