/**
 * Runs the portal fetch in a worker thread at the lowest OS priority (see
 * fetch-worker.ts), so that a sync's network and parsing work neither
 * stalls the event loop that acks agents' check-ins nor fills its heap.
 *
 * The result is exactly what `fetchPortalTree` returns: same companies,
 * same order, same errors (by code). The companies cross in one transferred
 * buffer of JSON chunks, parsed here one chunk at a time between
 * background-paced rests, so that taking in a large tree never holds the
 * event loop for long. Cancelling through `signal` asks the
 * worker to stop and fails with SYNC_PORTAL_ABORTED; a worker that dies
 * (out of its memory limit, say) fails the fetch with
 * SYNC_FETCH_WORKER_FAILED. Either way nothing is half-delivered: the
 * caller gets the whole tree or an error.
 *
 * Planning in the worker as well, with a worker kept between syncs, is
 * planning-workers.ts.
 */
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { RollcallError } from '../../common/errors.js';
import { BACKGROUND, Pacer } from '../cooperative.js';
import { LOWEST_NICE, type PriorityOutcome } from '../thread-priority.js';
import { fromWireError, unpackChunk, type CompanyChunks, type FetchWorkerData, type FromFetchWorker, type ToFetchWorker, type WorkerFetchOptions } from './fetch-worker-protocol.js';
import type { PortalCompany, PortalTree } from './tree.js';

/** Options of {@link fetchPortalTreeInWorker}. */
export interface InWorkerOptions extends WorkerFetchOptions {
  /** Nice value of the worker thread (default 19, the lowest priority); null leaves it alone. */
  readonly nice?: number | null;
  /** Heap limit of the worker, MiB (default 512: room for the largest tree TREE_LIMITS allows). */
  readonly maxHeapMb?: number;
  readonly onProgress?: (companiesFetched: number) => void;
  /** Told once what became of the thread's priority (the sync logs it). */
  readonly onPriority?: (outcome: PriorityOutcome) => void;
  readonly signal?: AbortSignal;
}

/** Starts a fetch worker from the compiled entry, or (tests, tsx) from the TypeScript source through tsx. */
export function startWorker(data: FetchWorkerData, maxHeapMb: number): Worker {
  const resourceLimits = { maxOldGenerationSizeMb: maxHeapMb };
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return new Worker(new URL('./fetch-worker.js', import.meta.url), { workerData: data, resourceLimits });
  const source = new URL('./fetch-worker.ts', import.meta.url).href;
  const viaTsx = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(source)}); })`;
  return new Worker(viaTsx, { eval: true, workerData: data, resourceLimits });
}

/** Fetches the tree through the portal API client in a worker thread; see the module comment. */
export function fetchPortalTreeInWorker(opts: InWorkerOptions): Promise<PortalTree> {
  const { nice = LOWEST_NICE, maxHeapMb = 512, onProgress, onPriority, signal, ...options } = opts;
  if (signal?.aborted) return Promise.reject(new RollcallError('SYNC_PORTAL_ABORTED', 'the MSP portal sync was cancelled'));
  const worker = startWorker({ options, nice }, maxHeapMb);
  return new Promise<PortalTree>((resolve, reject) => {
    let settled = false;
    /** The companies have arrived: the worker is done, only the parsing here is left. */
    let fetched = false;
    const finish = (outcome: { tree: PortalTree } | { err: unknown }): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if ('tree' in outcome) resolve(outcome.tree);
      else reject(outcome.err);
      void worker.terminate(); // it ends by itself after its last message; this covers the failure paths
    };
    const onAbort = (): void => {
      worker.postMessage({ type: 'abort' } satisfies ToFetchWorker); // while fetching, it answers with failed: SYNC_PORTAL_ABORTED
      if (fetched) finish({ err: new RollcallError('SYNC_PORTAL_ABORTED', 'the MSP portal sync was cancelled') });
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: FromFetchWorker) => {
      if (m.type === 'priority') onPriority?.(m.outcome);
      else if (m.type === 'progress') onProgress?.(m.fetched);
      else if (m.type === 'failed') finish({ err: fromWireError(m.error) });
      else if (m.type === 'fetched') {
        fetched = true;
        unpackPaced(m.chunks, () => settled).then(
          (companies) => finish({ tree: { account: m.account, companies } }),
          (err: unknown) => finish({ err: workerFailed(`its answer cannot be read: ${err instanceof Error ? err.message : String(err)}`, err) }),
        );
      }
    });
    worker.on('error', (err) => finish({ err: workerFailed(err instanceof Error ? err.message : String(err), err) }));
    worker.on('exit', (code) => {
      if (!fetched) finish({ err: workerFailed(`it exited with code ${code} before answering`) });
    });
  });
}

/** Parses the chunks one at a time, with background rests in between; stops early once `stop()` says so. */
async function unpackPaced<T = PortalCompany>(chunks: CompanyChunks, stop: () => boolean): Promise<T[]> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const pacer = new Pacer(BACKGROUND);
  const companies: T[] = [];
  for (let i = 0; i < chunks.ends.length && !stop(); i += 1) {
    for (const c of unpackChunk<T>(chunks, i, decoder)) companies.push(c);
    await pacer.step();
  }
  if (!stop() && companies.length !== chunks.count) throw new Error(`${companies.length} companies in chunks said to hold ${chunks.count}`);
  return companies;
}

/** The error of a fetch whose worker thread failed. */
export function workerFailed(detail: string, cause?: unknown): RollcallError {
  return new RollcallError('SYNC_FETCH_WORKER_FAILED', `the MSP portal fetch failed in its worker thread: ${detail}`, { cause });
}
