/**
 * The MSP portal stand-in of `bench sync`, in a process of its own: the
 * portal is a third-party service on another machine in real life, so its
 * work must not slow the driver that times the agents' check-ins, nor
 * compete with our server for this machine's cores: every thread of the
 * process (its event loop, and V8's and libuv's helper threads, which
 * collect its garbage and run its file work) is started under the
 * SCHED_IDLE policy through util-linux's `chrt` where it is installed, so
 * any thread of the server that wakes preempts it at once; without `chrt`
 * its main thread alone is lowered to nice 19 (said in the report).
 *
 * Started by {@link startPortalProcess}; it answers over IPC with its URL and
 * the size of the tree, and with the calls it answered when asked to stop.
 */
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { CHRT_PATHS, SCHED_IDLE } from '../server/thread-priority.js';
import { buildPortalTree, startFakePortal } from '../test/support/fake-portal.js';

/** The stand-in as the driver sees it. */
export interface PortalProcess {
  readonly url: string;
  /** Companies below the account. */
  readonly companies: number;
  /** Its OS priority, said in words ("SCHED_IDLE, every thread", "nice 19, its main thread only"), or why it could not be lowered. */
  readonly priority: string;
  /** Stops it; resolves with the calls it answered, by call. */
  stop(): Promise<Record<string, number>>;
}

type Ready = { type: 'ready'; url: string; companies: number };
type Stopped = { type: 'stopped'; calls: Record<string, number> };

/** Starts the stand-in with a generated account; fails after `timeoutMs`. */
export function startPortalProcess(tree: { managedMsps: number; customers: number }, timeoutMs: number): Promise<PortalProcess> {
  const entry = fileURLToPath(import.meta.url); // dist/scripts/….js, or the .ts source under tsx/vitest
  const nodeArgs = entry.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const chrt = CHRT_PATHS.find((p) => fs.existsSync(p));
  // Through chrt, node itself starts under SCHED_IDLE, so every thread it creates inherits the policy.
  const child = fork(entry, [String(tree.managedMsps), String(tree.customers)], {
    ...(chrt ? { execPath: chrt, execArgv: ['--idle', '0', process.execPath, ...nodeArgs] } : { execArgv: nodeArgs }),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const lowered = chrt ? undefined : lowerPriority(child.pid);
  return new Promise<PortalProcess>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`the portal stand-in did not start within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('exit', (code) => reject(new Error(`the portal stand-in exited with ${code} before it was ready`)));
    child.once('message', (m: Ready) => {
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolve({
        url: m.url,
        companies: m.companies,
        priority: lowered ?? idlePolicyOf(child.pid),
        stop: () =>
          new Promise<Record<string, number>>((done) => {
            const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
            let calls: Record<string, number> = {};
            child.once('message', (s: Stopped) => (calls = s.calls));
            child.once('exit', () => {
              clearTimeout(killer);
              done(calls);
            });
            child.send({ type: 'stop' });
          }),
      });
    });
  });
}

/** Lowers the stand-in's main thread to the lowest priority (no chrt); says why not when it cannot. */
function lowerPriority(pid: number | undefined): string {
  if (pid === undefined) return 'not lowered: the process has no pid';
  try {
    os.setPriority(pid, 19);
    return `nice ${os.getPriority(pid)}, its main thread only (no chrt for SCHED_IDLE)`;
  } catch (err) {
    return `not lowered: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** How many of the stand-in's threads run under SCHED_IDLE, read from procfs once it answers (it was started through chrt). */
function idlePolicyOf(pid: number | undefined): string {
  if (pid === undefined) return 'not lowered: the process has no pid';
  try {
    const tids = fs.readdirSync(`/proc/${pid}/task`);
    const idle = tids.filter((tid) => {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]) === SCHED_IDLE; // the 41st field of stat, from the 3rd on
    });
    return idle.length === tids.length ? `SCHED_IDLE, every thread (${tids.length})` : `SCHED_IDLE on ${idle.length} of its ${tids.length} threads`;
  } catch (err) {
    return `unknown: ${err instanceof Error ? err.message : String(err)}`;
  }
}

async function main(): Promise<void> {
  const [msps, customers] = process.argv.slice(2).map(Number);
  const portal = await startFakePortal({ tree: buildPortalTree({ managedMsps: msps!, customers: customers! }) });
  process.on('message', (m: { type: string }) => {
    if (m.type !== 'stop') return;
    const calls = { ...portal.calls };
    void portal.close().then(() => process.send!({ type: 'stopped', calls } satisfies Stopped, () => process.exit(0)));
  });
  process.send!({ type: 'ready', url: portal.url, companies: portal.tree.companies.length } satisfies Ready);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`portal stand-in failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
