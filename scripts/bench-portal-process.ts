/**
 * The MSP portal stand-in of `bench sync`, in a process of its own: the
 * portal is a third-party service on another machine in real life, so its
 * work must not slow the driver that times the agents' check-ins, nor
 * compete with our server for this machine's cores: the process runs at the
 * lowest OS priority (nice 19), and gets the CPU the others leave.
 *
 * Started by {@link startPortalProcess}; it answers over IPC with its URL and
 * the size of the tree, and with the calls it answered when asked to stop.
 */
import { fork } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { buildPortalTree, startFakePortal } from '../test/support/fake-portal.js';

/** The stand-in as the driver sees it. */
export interface PortalProcess {
  readonly url: string;
  /** Companies below the account. */
  readonly companies: number;
  /** Its OS priority (nice value), or why it could not be lowered. */
  readonly nice: number | string;
  /** Stops it; resolves with the calls it answered, by call. */
  stop(): Promise<Record<string, number>>;
}

type Ready = { type: 'ready'; url: string; companies: number };
type Stopped = { type: 'stopped'; calls: Record<string, number> };

/** Starts the stand-in with a generated account; fails after `timeoutMs`. */
export function startPortalProcess(tree: { managedMsps: number; customers: number }, timeoutMs: number): Promise<PortalProcess> {
  const entry = fileURLToPath(import.meta.url); // dist/scripts/….js, or the .ts source under tsx/vitest
  const child = fork(entry, [String(tree.managedMsps), String(tree.customers)], {
    execArgv: entry.endsWith('.ts') ? ['--import', 'tsx'] : [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const nice = lowerPriority(child.pid);
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
        nice,
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

/** Lowers the stand-in to the lowest priority; says why not when it cannot. */
function lowerPriority(pid: number | undefined): number | string {
  if (pid === undefined) return 'the process has no pid';
  try {
    os.setPriority(pid, 19);
    return os.getPriority(pid);
  } catch (err) {
    return `cannot lower its priority: ${err instanceof Error ? err.message : String(err)}`;
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
