/**
 * The OS scheduling priority of the calling thread.
 *
 * On Linux a thread is a task of its own, with its own nice value:
 * `setpriority(PRIO_PROCESS, tid)` (Node's `os.setPriority` with a thread
 * id) changes that thread alone. Background work run in a worker thread can
 * so give up the CPU to the event loop and the SQLite threads whenever they
 * want it, without slowing anything else in the process. Elsewhere (no
 * `/proc/thread-self`) nothing is changed and the caller is told why.
 */
import fs from 'node:fs';
import os from 'node:os';
import { describeError } from '../common/errors.js';

/** The lowest priority a thread can ask for on Linux. */
export const LOWEST_NICE = 19;

/** What lowering the priority did. */
export type PriorityOutcome =
  | { readonly applied: true; readonly threadId: number; readonly nice: number }
  | { readonly applied: false; readonly reason: string };

/** The calling thread's kernel id (its TID), or undefined where `/proc/thread-self` does not exist. */
export function currentThreadId(): number | undefined {
  try {
    const link = fs.readlinkSync('/proc/thread-self'); // "<pid>/task/<tid>"
    const tid = Number(link.split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : undefined;
  } catch {
    return undefined; // not Linux (or no procfs): the caller reports it
  }
}

/** The nice value of a thread of this process, read from procfs; undefined where it cannot be read. */
export function threadNice(threadId: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/self/task/${threadId}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on
    const nice = Number(fields[16]); // the 19th field of stat
    return Number.isInteger(nice) ? nice : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Lowers the calling thread's priority to `nice` (0 to 19; 19 is the
 * lowest). Never raises it: an unprivileged process could not take it back.
 */
export function lowerThreadPriority(nice: number = LOWEST_NICE, threadIdOf: () => number | undefined = currentThreadId): PriorityOutcome {
  if (!Number.isInteger(nice) || nice < 0 || nice > LOWEST_NICE) {
    return { applied: false, reason: `nice must be a whole number from 0 to ${LOWEST_NICE} (got ${nice})` };
  }
  const threadId = threadIdOf();
  if (threadId === undefined) return { applied: false, reason: 'this system has no per-thread priorities (no /proc/thread-self)' };
  try {
    const current = os.getPriority(threadId);
    if (current >= nice) return { applied: true, threadId, nice: current };
    os.setPriority(threadId, nice);
    return { applied: true, threadId, nice: os.getPriority(threadId) };
  } catch (err) {
    return { applied: false, reason: `cannot change the priority of thread ${threadId}: ${describeError(err)}` };
  }
}
