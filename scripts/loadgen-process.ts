/**
 * Load generator child processes: each runs one {@link Loadgen} over a
 * slice of the agents and takes commands from the bench driver over IPC.
 * Children are started through `sh -c 'ulimit -n <hard limit>; exec node …'`
 * so each may hold as many sockets as the machine allows.
 *
 *   node dist/scripts/loadgen-process.js   (forked by the bench; not for direct use)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { withDeadline } from './bench-deadline.js';
import { Loadgen, type LoadgenConfig, type LoadgenStats } from './loadgen.js';

/** Driver → child. */
type ToLoadgen =
  | { readonly type: 'init'; readonly id: number; readonly config: LoadgenConfig }
  | { readonly type: 'connect'; readonly id: number; readonly concurrency: number; readonly resume: boolean; readonly deadlineMs: number }
  | { readonly type: 'disconnect'; readonly id: number }
  | { readonly type: 'auto'; readonly id: number; readonly on: boolean; readonly checkinIntervalMs?: number }
  | { readonly type: 'steady'; readonly id: number; readonly intervalMs: number; readonly durationMs: number }
  | { readonly type: 'stats'; readonly id: number }
  | { readonly type: 'stop'; readonly id: number };

/** Child → driver. */
type FromLoadgen =
  | { readonly type: 'done'; readonly id: number; readonly stats: LoadgenStats; readonly result?: unknown }
  | { readonly type: 'failed'; readonly id: number; readonly message: string; readonly stats?: LoadgenStats };

/** The driver's handle on one load generator child. */
export interface LoadgenHandle {
  readonly pid: number;
  connect(concurrency: number, resume: boolean, deadlineMs: number): Promise<LoadgenStats>;
  disconnect(): Promise<LoadgenStats>;
  /** Reconnect on drop (the storm); with `checkinIntervalMs` an agent back checks in at once and then once per interval. */
  setAutoReconnect(on: boolean, checkinIntervalMs?: number): Promise<LoadgenStats>;
  steady(intervalMs: number, durationMs: number): Promise<{ stats: LoadgenStats; rttMs: number[]; unanswered: number }>;
  stats(): Promise<LoadgenStats>;
  stop(): Promise<void>;
  kill(): void;
}

function entry(): string {
  return fileURLToPath(import.meta.url);
}

/** Starts a load generator child for `config` (its agents only). */
export async function startLoadgen(config: LoadgenConfig, timeoutMs = 60_000): Promise<LoadgenHandle> {
  const file = entry();
  const nodeArgs = [...(file.endsWith('.ts') ? ['--import', 'tsx'] : []), file];
  const child: ChildProcess = spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"', process.execPath, ...nodeArgs], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve(m: FromLoadgen & { type: 'done' }): void; reject(e: Error): void }>();
  let nextId = 1;
  let exited = false;
  child.on('message', (raw) => {
    const msg = raw as FromLoadgen;
    const p = pending.get(msg.id);
    pending.delete(msg.id);
    if (msg.type === 'done') p?.resolve(msg);
    else p?.reject(new Error(`load generator: ${msg.message}`));
  });
  child.once('exit', (code, signal) => {
    exited = true;
    for (const p of pending.values()) p.reject(new Error(`load generator exited (code ${code}, signal ${signal})`));
    pending.clear();
  });
  const call = (msg: Omit<ToLoadgen, 'id'> & { type: ToLoadgen['type'] }, ms: number): Promise<FromLoadgen & { type: 'done' }> => {
    if (exited) return Promise.reject(new Error('load generator has exited'));
    const id = nextId++;
    const answer = new Promise<FromLoadgen & { type: 'done' }>((resolve, reject) => pending.set(id, { resolve, reject }));
    child.send({ ...msg, id });
    return withDeadline(answer, ms, `load generator did not answer ${msg.type} within ${Math.round(ms / 1000)} s`);
  };
  const kill = (): void => {
    if (!exited) child.kill('SIGKILL');
  };
  try {
    await call({ type: 'init', config } as ToLoadgen, timeoutMs);
  } catch (err) {
    kill();
    throw err;
  }
  return {
    pid: child.pid ?? -1,
    connect: async (concurrency, resume, deadlineMs) => (await call({ type: 'connect', concurrency, resume, deadlineMs } as ToLoadgen, deadlineMs + timeoutMs)).stats,
    disconnect: async () => (await call({ type: 'disconnect' } as ToLoadgen, timeoutMs)).stats,
    setAutoReconnect: async (on, checkinIntervalMs) => (await call({ type: 'auto', on, checkinIntervalMs } as ToLoadgen, timeoutMs)).stats,
    steady: async (intervalMs, durationMs) => {
      const r = await call({ type: 'steady', intervalMs, durationMs } as ToLoadgen, durationMs + timeoutMs);
      const result = r.result as { rttMs: number[]; unanswered: number };
      return { stats: r.stats, rttMs: result.rttMs, unanswered: result.unanswered };
    },
    stats: async () => (await call({ type: 'stats' } as ToLoadgen, timeoutMs)).stats,
    stop: async () => {
      if (exited) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      await call({ type: 'stop' } as ToLoadgen, timeoutMs).catch(() => undefined);
      await withDeadline(gone, 10_000, 'load generator did not exit').catch(() => kill());
    },
    kill,
  };
}

/** Child side: one Loadgen, driven over IPC. */
function childMain(): void {
  let gen: Loadgen | undefined;
  const send = (msg: FromLoadgen): void => {
    if (process.connected) process.send!(msg);
  };
  process.on('disconnect', () => process.exit(0));
  process.on('message', (raw) => {
    const msg = raw as ToLoadgen;
    const reply = (work: Promise<unknown>): void => {
      work.then(
        (result) => send({ type: 'done', id: msg.id, stats: { ...gen!.stats }, result }),
        (err: unknown) => send({ type: 'failed', id: msg.id, message: err instanceof Error ? err.message : String(err), stats: gen ? { ...gen.stats } : undefined }),
      );
    };
    if (msg.type === 'init') {
      gen = new Loadgen(msg.config);
      reply(Promise.resolve());
      return;
    }
    if (!gen) {
      send({ type: 'failed', id: msg.id, message: `${msg.type} before init` });
      return;
    }
    const g = gen;
    if (msg.type === 'connect') reply(g.connectAll({ concurrency: msg.concurrency, resume: msg.resume, deadlineMs: msg.deadlineMs }));
    else if (msg.type === 'disconnect') reply(g.disconnectAll());
    else if (msg.type === 'auto') reply(Promise.resolve(g.setAutoReconnect(msg.on, msg.checkinIntervalMs)));
    else if (msg.type === 'steady') reply(g.steady({ intervalMs: msg.intervalMs, durationMs: msg.durationMs }));
    else if (msg.type === 'stats') reply(Promise.resolve());
    else if (msg.type === 'stop') {
      g.stop();
      reply(Promise.resolve());
      setTimeout(() => process.disconnect(), 50);
    }
  });
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (invokedDirectly) {
  if (!process.send) {
    process.stderr.write('loadgen-process is started by the bench driver: npm run bench -- scale\n');
    process.exit(2);
  }
  childMain();
}
