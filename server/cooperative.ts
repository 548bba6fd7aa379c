/**
 * Long CPU work in slices, so the event loop keeps answering agents while
 * it runs. A computation is written once as a generator that yields every
 * so often; `runAll` drives it to the end at once (tests, small inputs) and
 * `runSliced` gives the event loop a turn whenever a slice has used its
 * time budget. The work and its result are the same either way.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';

/** A computation that yields (nothing) between its steps and returns a T. */
export type Steps<T> = Generator<void, T, void>;

/** Default slice length: short next to a check-in's round trip. */
export const SLICE_BUDGET_MS = 2;

/** Runs the steps to the end without yielding to the event loop. */
export function runAll<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Runs the steps, letting the event loop run whenever a slice has taken `budgetMs`. */
export async function runSliced<T>(steps: Steps<T>, budgetMs = SLICE_BUDGET_MS): Promise<T> {
  const pacer = new Pacer(budgetMs);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (pacer.due()) await pacer.pause();
  }
}

/** For async loops: `if (pacer.due()) await pacer.pause()` between items. */
export class Pacer {
  private started = performance.now();

  constructor(private readonly budgetMs = SLICE_BUDGET_MS) {}

  /** True once the current slice has used its budget. */
  due(): boolean {
    return performance.now() - this.started >= this.budgetMs;
  }

  /** Lets the event loop run (I/O callbacks included), then starts a new slice. */
  async pause(): Promise<void> {
    await nextTurn();
    this.started = performance.now();
  }
}
