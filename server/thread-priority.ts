/**
 * The OS scheduling priority of the calling thread.
 *
 * On Linux a thread is a task of its own, with its own nice value:
 * `setpriority(PRIO_PROCESS, tid)` (Node's `os.setPriority` with a thread
 * id) changes that thread alone. Background work run in a worker thread can
 * so give up the CPU to the event loop and the SQLite threads whenever they
 * want it, without slowing anything else in the process. Elsewhere (no
 * `/proc/thread-self`) nothing is changed and the caller is told why.
 *
 * A thread kept for long can go further and take the SCHED_IDLE policy
 * ({@link useIdlePolicy}): nice 19 only shrinks its share, and the
 * scheduler may still let it finish a slice before a thread that just
 * woke (the event loop with a check-in to ack, a SQLite thread with a
 * commit to finish) gets the core; a SCHED_IDLE thread is preempted by it
 * at once.
 */
import { spawnSync } from 'node:child_process';
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

/** Where `chrt` (util-linux) is looked for: Node has no call that changes a thread's scheduling policy. */
export const CHRT_PATHS: readonly string[] = ['/usr/bin/chrt', '/bin/chrt'];

/** Linux's number for the SCHED_IDLE policy, as procfs shows it. */
export const SCHED_IDLE = 5;

/** What asking for SCHED_IDLE did. */
export type PolicyOutcome = { readonly applied: true; readonly threadId: number } | { readonly applied: false; readonly reason: string };

/**
 * Puts the calling thread under SCHED_IDLE by running `chrt --idle` on its
 * id (an unprivileged thread may always take that policy; it cannot take
 * it back). Starts a process, a few milliseconds: for threads kept for
 * long. Where there is no `chrt`, or no per-thread id, nothing changes and
 * the caller is told why.
 */
export function useIdlePolicy(threadIdOf: () => number | undefined = currentThreadId, paths: readonly string[] = CHRT_PATHS): PolicyOutcome {
  const threadId = threadIdOf();
  if (threadId === undefined) return { applied: false, reason: 'this system has no per-thread priorities (no /proc/thread-self)' };
  const chrt = paths.find((p) => fs.existsSync(p));
  if (!chrt) return { applied: false, reason: `no chrt to set the SCHED_IDLE policy with (looked for ${paths.join(', ')})` };
  const run = spawnSync(chrt, ['--idle', '--pid', '0', String(threadId)], { encoding: 'utf8', timeout: 5_000 });
  if (run.error || run.status !== 0) {
    const why = run.error ? describeError(run.error) : `it exited with ${run.status}: ${run.stderr.trim()}`;
    return { applied: false, reason: `chrt could not set SCHED_IDLE on thread ${threadId}: ${why}` };
  }
  const policy = threadPolicy(threadId);
  return policy === SCHED_IDLE ? { applied: true, threadId } : { applied: false, reason: `thread ${threadId} still has policy ${policy ?? 'unknown'} after chrt` };
}

/** The scheduling policy of a thread of this process (0 normal, 5 SCHED_IDLE), read from procfs; undefined where it cannot be read. */
export function threadPolicy(threadId: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/self/task/${threadId}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const policy = Number(fields[38]); // the 41st field of stat
    return Number.isInteger(policy) ? policy : undefined;
  } catch {
    return undefined;
  }
}
