/**
 * The worker threads that fetch, validate and plan a sync (fetch-worker.ts
 * in its planning mode), kept warm between syncs.
 *
 * Starting a thread costs a V8 isolate, loading the portal client, the
 * planner and SQLite, and opening the database: tens of milliseconds of
 * CPU at normal priority, paid at the start of every sync when each sync
 * had its own thread, and its teardown (the thread joined, its heap freed)
 * at the end. {@link PlanningWorkers} instead keeps one thread: started by
 * `warm()` (the sync service calls it at server start when an API account
 * is linked, and every sync starts it if it is not running), reused by
 * every sync, and released, not ended, when a sync is done: it drops its
 * tree and keeps only its isolate and its idle read-only connection.
 *
 * A thread that dies (out of its heap, say) fails the sync that was using
 * it with SYNC_FETCH_WORKER_FAILED and is replaced by the next sync. A
 * second sync while the kept thread is busy (two accounts at once) gets a
 * thread of its own, ended when it is done. `close()` ends them all.
 */
import type { Worker } from 'node:worker_threads';
import { RollcallError } from '../../common/errors.js';
import { LOWEST_NICE, type PolicyOutcome, type PriorityOutcome } from '../thread-priority.js';
import { startWorker, workerFailed } from './fetch-in-worker.js';
import { fromWireError, type FetchWorkerData, type FromFetchWorker, type ToFetchWorker, type WorkerFetchOptions } from './fetch-worker-protocol.js';
import { packedPlan } from './packed-plan.js';
import type { PlanTarget, SyncLook, TreePlanner } from './sync-planner.js';

/** Options of {@link PlanningWorkers}. */
export interface PlanningWorkersOptions {
  /** The database the threads read the stored companies from (read-only). */
  readonly dbFile: string;
  /** Nice value of the threads (default 19, the lowest priority); null leaves it alone. */
  readonly nice?: number | null;
  /** Heap limit of each thread, MiB (default 512: room for the largest tree TREE_LIMITS allows). */
  readonly maxHeapMb?: number;
  /** Whether the threads also take the SCHED_IDLE policy (default true; only with a nice value). */
  readonly idlePolicy?: boolean;
  /** Told what became of each new thread's priority and policy (the server logs a failure). */
  readonly onPriority?: (outcome: PriorityOutcome, policy?: PolicyOutcome) => void;
  /** Told when a thread ends that was not asked to (it is replaced at the next sync). */
  readonly onUnexpectedExit?: (detail: string) => void;
  /** How long `close()` waits for a thread to end by itself before terminating it (default 5 s). */
  readonly closeWaitMs?: number;
  /** Starts a thread (tests: to watch the threads); default: the fetch worker. */
  readonly start?: (data: FetchWorkerData, maxHeapMb: number) => Worker;
}

/** What one fetch needs besides the portal options. */
export interface FetchCall {
  readonly onProgress?: (companiesFetched: number) => void;
  readonly signal?: AbortSignal;
}

type Session = {
  readonly id: number;
  ready: boolean;
  readonly resolve: (planner: TreePlanner) => void;
  readonly reject: (err: unknown) => void;
  readonly onProgress?: (fetched: number) => void;
  readonly pending: Map<number, { resolve: (m: FromFetchWorker) => void; reject: (err: unknown) => void }>;
  /** Set once the session's planner cannot be asked anything more (closed, or the thread is gone). */
  over: RollcallError | null;
  detach: () => void;
};

/** One planning thread and the session it serves, if any. */
class PlanningThread {
  private session: Session | null = null;
  private nextSession = 1;
  private nextRequest = 1;
  private gone: RollcallError | null = null;
  private stopping = false;
  /** Resolves once the thread has ended. */
  readonly exited: Promise<void>;

  constructor(
    readonly worker: Worker,
    private readonly hooks: { onPriority?: (o: PriorityOutcome, policy?: PolicyOutcome) => void; onUnexpectedExit?: (detail: string) => void },
  ) {
    worker.on('message', (m: FromFetchWorker) => this.onMessage(m));
    worker.on('error', (err) => this.die(workerFailed(err instanceof Error ? err.message : String(err), err)));
    this.exited = new Promise((resolve) => {
      worker.on('exit', (code) => {
        this.die(workerFailed(`it exited with code ${code}`));
        resolve();
      });
    });
  }

  get alive(): boolean {
    return this.gone === null && !this.stopping;
  }

  get busy(): boolean {
    return this.session !== null;
  }

  /** Fetches and validates a tree in this thread; resolves with its planner once the thread holds it. */
  fetch(options: WorkerFetchOptions, call: FetchCall, onEnd: () => void): Promise<TreePlanner> {
    if (this.gone) return Promise.reject(this.gone);
    const id = this.nextSession++;
    return new Promise<TreePlanner>((resolve, reject) => {
      const onAbort = (): void => this.worker.postMessage({ type: 'abort', session: id } satisfies ToFetchWorker); // before ready: failed, SYNC_PORTAL_ABORTED
      call.signal?.addEventListener('abort', onAbort, { once: true });
      const session: Session = {
        id,
        ready: false,
        resolve,
        reject,
        ...(call.onProgress ? { onProgress: call.onProgress } : {}),
        pending: new Map(),
        over: null,
        detach: () => {
          call.signal?.removeEventListener('abort', onAbort);
          if (this.session === session) this.session = null;
          onEnd();
        },
      };
      this.session = session;
      this.worker.postMessage({ type: 'fetch', session: id, options } satisfies ToFetchWorker);
    });
  }

  /** Asks the thread to end once the request in hand is answered (terminating could cut a SQLite call short). */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    if (this.gone) return;
    this.worker.postMessage({ type: 'close' } satisfies ToFetchWorker);
    this.worker.unref();
  }

  private onMessage(m: FromFetchWorker): void {
    const s = this.session;
    if (m.type === 'priority') this.hooks.onPriority?.(m.outcome, m.policy);
    else if (m.type === 'progress') {
      if (s && s.id === m.session) s.onProgress?.(m.fetched);
    } else if (m.type === 'failed') {
      if (s && s.id === m.session && !s.ready) this.endSession(s, fromWireError(m.error));
    } else if (m.type === 'ready') {
      if (!s || s.id !== m.session) return;
      s.ready = true;
      s.resolve({
        account: m.account,
        ...(m.portal ? { portal: m.portal } : {}),
        fetched: m.fetched,
        look: async (target) => ((await this.ask(s, 'look', target)) as Extract<FromFetchWorker, { type: 'looked' }>).look satisfies SyncLook,
        plan: async (target) => packedPlan(((await this.ask(s, 'plan', target)) as Extract<FromFetchWorker, { type: 'planned' }>).plan),
        close: () => {
          if (s.over) return;
          if (this.alive) this.worker.postMessage({ type: 'release', session: s.id } satisfies ToFetchWorker);
          this.endSession(s, new RollcallError('SYNC_FETCH_WORKER_FAILED', 'the MSP sync planner was closed'));
        },
      });
    } else if (m.type !== 'fetched') {
      // looked, planned, planFailed: answers of the current session only (a closed session's late answer is dropped)
      const p = s?.pending.get(m.id);
      if (!s || !p) return;
      s.pending.delete(m.id);
      if (m.type === 'planFailed') p.reject(fromWireError(m.error));
      else p.resolve(m);
    }
  }

  private ask(s: Session, type: 'look' | 'plan', target: PlanTarget): Promise<FromFetchWorker> {
    if (s.over) return Promise.reject(s.over);
    const id = this.nextRequest++;
    return new Promise((resolve, reject) => {
      s.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type, id, target } satisfies ToFetchWorker);
    });
  }

  /** Ends a session: a fetch not yet answered and every request in flight fail with `err`. */
  private endSession(s: Session, err: RollcallError): void {
    if (s.over) return;
    s.over = err;
    if (!s.ready) s.reject(err);
    for (const p of s.pending.values()) p.reject(err);
    s.pending.clear();
    s.detach();
  }

  private die(err: RollcallError): void {
    if (this.gone) return;
    this.gone = err;
    if (!this.stopping) this.hooks.onUnexpectedExit?.(err.message);
    if (this.session) this.endSession(this.session, err);
  }
}

/** The kept planning thread, and one-off threads for syncs that overlap; see the module comment. */
export class PlanningWorkers {
  private kept: PlanningThread | null = null;
  private readonly threads = new Set<PlanningThread>();
  private closed = false;

  constructor(private readonly opts: PlanningWorkersOptions) {}

  /** Starts the kept thread unless it is running (a thread that died is replaced). */
  warm(): void {
    if (this.closed || this.kept?.alive) return;
    this.kept = this.spawn();
  }

  /** Thread ids of the threads running now, the kept one first (tests and diagnostics). */
  threadIds(): number[] {
    const ids = [...this.threads].filter((t) => t.alive).map((t) => t.worker.threadId);
    const kept = this.kept?.alive ? this.kept.worker.threadId : undefined;
    return kept === undefined ? ids : [kept, ...ids.filter((id) => id !== kept)];
  }

  /**
   * Fetches and validates the tree in the kept thread (started if need be),
   * or in a thread of its own while the kept one serves another sync; see
   * the module comment. Closing the planner releases the thread.
   */
  async fetchAndPlan(options: WorkerFetchOptions, call: FetchCall = {}): Promise<TreePlanner> {
    if (this.closed) throw new RollcallError('SYNC_FETCH_WORKER_FAILED', 'the MSP sync workers are closed (the server is stopping)');
    if (call.signal?.aborted) throw new RollcallError('SYNC_PORTAL_ABORTED', 'the MSP portal sync was cancelled');
    this.warm();
    const kept = this.kept!;
    const thread = kept.busy ? this.spawn() : kept;
    return thread.fetch(options, call, () => {
      if (thread !== this.kept) thread.stop();
    });
  }

  /** Ends every thread: asks each to end, and terminates those still running after `closeWaitMs`. */
  async close(): Promise<void> {
    this.closed = true;
    this.kept = null;
    const waitMs = this.opts.closeWaitMs ?? 5_000;
    await Promise.all(
      [...this.threads].map(async (t) => {
        t.stop();
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), waitMs)));
        const outcome = await Promise.race([t.exited, late]);
        clearTimeout(timer);
        if (outcome === 'late') await t.worker.terminate();
      }),
    );
  }

  private spawn(): PlanningThread {
    const start = this.opts.start ?? startWorker;
    const data: FetchWorkerData = {
      nice: this.opts.nice === undefined ? LOWEST_NICE : this.opts.nice,
      ...(this.opts.idlePolicy === false ? { idlePolicy: false } : {}),
      plan: { dbFile: this.opts.dbFile },
    };
    const worker = start(data, this.opts.maxHeapMb ?? 512);
    const thread = new PlanningThread(worker, {
      ...(this.opts.onPriority ? { onPriority: this.opts.onPriority } : {}),
      ...(this.opts.onUnexpectedExit ? { onUnexpectedExit: this.opts.onUnexpectedExit } : {}),
    });
    this.threads.add(thread);
    void thread.exited.then(() => this.threads.delete(thread));
    return thread;
  }
}

/** Options of {@link fetchAndPlanInWorker}. */
export interface PlanInWorkerOptions extends WorkerFetchOptions, FetchCall {
  readonly dbFile: string;
  readonly nice?: number | null;
  readonly maxHeapMb?: number;
  readonly onPriority?: (outcome: PriorityOutcome, policy?: PolicyOutcome) => void;
}

/** Fetches, validates and plans in a thread of its own, ended when the planner is closed (tests, one-off calls). */
export function fetchAndPlanInWorker(opts: PlanInWorkerOptions): Promise<TreePlanner> {
  const { dbFile, nice, maxHeapMb, onPriority, onProgress, signal, ...options } = opts;
  const workers = new PlanningWorkers({ dbFile, ...(nice !== undefined ? { nice } : {}), ...(maxHeapMb !== undefined ? { maxHeapMb } : {}), ...(onPriority ? { onPriority } : {}) });
  const done = (): void => void workers.close();
  return workers.fetchAndPlan(options, { ...(onProgress ? { onProgress } : {}), ...(signal ? { signal } : {}) }).then(
    (planner) => ({
      ...planner,
      close: () => {
        planner.close();
        done();
      },
    }),
    (err: unknown) => {
      done();
      throw err;
    },
  );
}
