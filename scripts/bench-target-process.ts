/**
 * The driver's handle on one server under test, which runs in its own child
 * process (scripts/bench-targets.ts) so that its CPU time and RSS are its
 * own. The two talk over Node's IPC channel with the messages below.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { withDeadline } from './bench-deadline.js';
import type { BenchPki } from './bench-pki.js';

/** Which server runs in the child: Rollcall, or the bare ws + https echo baseline. */
export type TargetKind = 'ours' | 'bare';

/** One resource sample taken inside the server process. */
export interface TargetSample {
  /** process.cpuUsage() user + system, microseconds, taken before the forced GC. */
  readonly cpuUs: number;
  /** The same, taken after the forced GC (so phases can leave the GC out). */
  readonly cpuAfterGcUs: number;
  /** RSS in bytes after a full GC (when the child runs with --expose-gc). */
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  /** True when global.gc was available, so RSS was taken after a full collection. */
  readonly gcForced: boolean;
  /** WebSocket channels the server holds open right now. */
  readonly openChannels: number;
  /** Target-specific counters (ours: check-in writer batches and rows). */
  readonly counters: Readonly<Record<string, number>>;
  /** Longest event-loop delay since the previous sample, in milliseconds (from perf_hooks' histogram). */
  readonly eventLoopDelayMaxMs: number;
}

/**
 * How to take a sample. `full` first finishes queued storage writes and
 * forces a GC (so a phase pays for its own work); `quick` does neither, for
 * sampling under a load that never stops (a flush would wait for ever, and
 * a forced GC would pause the very check-ins being timed).
 */
export type SampleMode = 'full' | 'quick';

/** Where our server's console API listens, and a token for it (ours only). */
export interface ConsoleAccess {
  readonly port: number;
  /** Admin API token; never printed. */
  readonly adminToken: string;
}

/**
 * How a server starts. `fresh` (the default): a new data directory with one
 * device per certificate and the bench's relaxed limits. `scale`: the
 * production limits (admission, heartbeat, timeouts); with `restart`, the
 * data directory of an earlier start is reused as it is (devices, TLS
 * ticket key); `port` pins the port (0: any); `ticketKeysHex` gives the bare
 * server a fixed ticket key so it can resume sessions across a restart too.
 */
export interface StartProfile {
  readonly scale?: boolean;
  readonly restart?: boolean;
  readonly port?: number;
  readonly ticketKeysHex?: string;
  /** Our server's admission limit (connections in their TLS handshake); the server's default when absent. */
  readonly maxPendingHandshakes?: number;
  /**
   * Agent-port worker processes (node:cluster): ours with `agentWorkers`, the
   * bare baseline with the same number of bare servers sharing its port. 0 or
   * absent: one process. Samples then sum CPU and RSS over every process.
   */
  readonly workers?: number;
}

/** Driver → child. */
export type ToTarget =
  | { readonly type: 'start'; readonly pki: BenchPki; readonly dataDir: string; readonly profile?: StartProfile }
  | { readonly type: 'sample'; readonly id: number; readonly mode: SampleMode }
  | { readonly type: 'stop' };

/** Child → driver. */
export type FromTarget =
  | { readonly type: 'ready'; readonly port: number; readonly console?: ConsoleAccess }
  | { readonly type: 'sample'; readonly id: number; readonly sample: TargetSample }
  | { readonly type: 'failed'; readonly message: string }
  | { readonly type: 'stopped' };

/** A started server under test. */
export interface TargetHandle {
  readonly kind: TargetKind;
  readonly port: number;
  readonly pid: number;
  /** Our server's console API (undefined for the bare baseline). */
  readonly console: ConsoleAccess | undefined;
  /** Asks the child for a resource sample (`full` unless told). */
  sample(mode?: SampleMode): Promise<TargetSample>;
  /** Closes the server cleanly and waits for the child to exit; kills it if it does not. */
  stop(): Promise<void>;
  /** Kills the child at once (failure path). */
  kill(): void;
}

/** Options for {@link startTarget}. */
export interface StartTargetOptions {
  /** Data directory for our server (the caller creates and removes it). */
  readonly dataDir: string;
  /** Child entry; defaults to bench-targets next to this module (.ts runs through tsx). */
  readonly entry?: string;
  /** Deadline for start, each sample and stop. */
  readonly timeoutMs?: number;
  /** Extra node flags for the child (e.g. --cpu-prof). */
  readonly execArgv?: readonly string[];
  /** How the server starts (default: fresh, bench limits). */
  readonly profile?: StartProfile;
}

/** The child entry next to this module: dist/scripts/bench-targets.js, or the .ts source under tsx/vitest. */
export function defaultTargetEntry(): string {
  const self = fileURLToPath(import.meta.url);
  return self.replace(/bench-target-process\.(ts|js)$/, 'bench-targets.$1');
}

/** What a server needs of the bench PKI: the agents' certificates themselves stay with the clients (100,000 of them are 150 MB of JSON). */
function serverSide(pki: BenchPki): BenchPki {
  return { ...pki, agents: pki.agents.map((a) => ({ ...a, certPem: '' })) };
}

/** Forks the child, sends it the certificates and waits until its server listens. */
export async function startTarget(kind: TargetKind, pki: BenchPki, opts: StartTargetOptions): Promise<TargetHandle> {
  const entry = opts.entry ?? defaultTargetEntry();
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const execArgv = ['--expose-gc', ...(entry.endsWith('.ts') ? ['--import', 'tsx'] : []), ...(opts.execArgv ?? [])];
  const child: ChildProcess = fork(entry, [kind], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map<number, { resolve(s: TargetSample): void; reject(e: Error): void }>();
  let nextId = 1;
  let exited = false;
  let onReady: { resolve(ready: { port: number; console?: ConsoleAccess }): void; reject(e: Error): void } | undefined;
  let onStopped: (() => void) | undefined;
  const exitPromise = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const failAll = (err: Error): void => {
    onReady?.reject(err);
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  child.on('message', (raw) => {
    const msg = raw as FromTarget;
    if (msg.type === 'ready') onReady?.resolve(msg);
    else if (msg.type === 'sample') {
      pending.get(msg.id)?.resolve(msg.sample);
      pending.delete(msg.id);
    } else if (msg.type === 'failed') failAll(new Error(`${kind} server failed: ${msg.message}`));
    else if (msg.type === 'stopped') onStopped?.();
  });
  child.once('exit', (code, signal) => {
    exited = true;
    failAll(new Error(`${kind} server process exited (code ${code}, signal ${signal})`));
  });
  child.once('error', (err) => failAll(new Error(`${kind} server process error: ${err.message}`, { cause: err })));

  const kill = (): void => {
    if (!exited) child.kill('SIGKILL');
  };
  const send = (msg: ToTarget): void => {
    if (!exited && child.connected) child.send(msg);
  };
  let ready: { port: number; console?: ConsoleAccess };
  try {
    ready = await withDeadline(
      new Promise<{ port: number; console?: ConsoleAccess }>((resolve, reject) => {
        onReady = { resolve, reject };
        send({ type: 'start', pki: serverSide(pki), dataDir: opts.dataDir, ...(opts.profile ? { profile: opts.profile } : {}) });
      }),
      timeoutMs,
      `starting the ${kind} server took too long`,
    );
  } catch (err) {
    kill();
    throw err;
  }
  onReady = undefined;

  return {
    kind,
    port: ready.port,
    pid: child.pid ?? -1,
    console: ready.console,
    sample: (mode = 'full') => {
      if (exited) return Promise.reject(new Error(`${kind} server process has exited`));
      const id = nextId++;
      const answer = new Promise<TargetSample>((resolve, reject) => pending.set(id, { resolve, reject }));
      send({ type: 'sample', id, mode });
      return withDeadline(answer, timeoutMs, `sampling the ${kind} server took too long`);
    },
    stop: async () => {
      if (exited) return;
      const stopped = new Promise<void>((resolve) => {
        onStopped = resolve;
      });
      send({ type: 'stop' });
      try {
        await withDeadline(Promise.race([stopped, exitPromise]), timeoutMs, `stopping the ${kind} server took too long`);
        await withDeadline(exitPromise, 10_000, `waiting for the ${kind} server process to exit took too long`);
      } catch (err) {
        kill();
        throw err;
      }
    },
    kill,
  };
}
