/**
 * The default tree fetcher: a file export read from disk, or the portal's
 * REST API, fetched in a worker thread at the lowest OS priority
 * (fetch-in-worker.ts). The sync service depends only on the FetchTree
 * type, so tests can hand it trees directly. The server's default planner
 * (`defaultFetchPlanner`) also validates and plans an API tree in a worker
 * thread kept between syncs, reading the stored companies from `dbFile`
 * read-only.
 */
import type { Logger } from 'pino';
import { fetchPortalTreeInWorker } from './fetch-in-worker.js';
import { PlanningWorkers } from './planning-workers.js';
import { readTreeExport } from './portal-file.js';
import type { FetchPlanner, FetchSpec, FetchTree } from './sync-service.js';
import { inProcessPlanner } from './sync-planner.js';
import { validateTreeSliced } from './tree.js';

/** Fetches from the source an account was linked with; `log` hears when the worker could not lower its priority. */
export function defaultFetchTree(log?: Pick<Logger, 'warn'>): FetchTree {
  return async (spec, onProgress, signal) => {
    if (spec.kind === 'file') return readTreeExport(spec.path);
    return fetchPortalTreeInWorker({
      baseUrl: spec.baseUrl,
      username: spec.user,
      password: spec.password,
      onProgress,
      signal,
      onPriority: (outcome) => {
        if (!outcome.applied) log?.warn({ reason: outcome.reason }, 'the MSP portal fetch runs at normal priority');
      },
    });
  };
}

/**
 * Fetches, validates and plans from the source an account was linked with:
 * an API tree in the planning worker thread, kept warm between syncs
 * (planning-workers.ts), an export here. Its `warm()` starts that thread
 * ahead of a sync; its `close()` ends it.
 */
export function defaultFetchPlanner(dbFile: string, log?: Pick<Logger, 'warn' | 'info'>): FetchPlanner {
  const workers = new PlanningWorkers({
    dbFile,
    onPriority: (outcome, policy) => {
      if (!outcome.applied) log?.warn({ reason: outcome.reason }, 'the MSP portal fetch runs at normal priority');
      else if (policy && !policy.applied) log?.info({ reason: policy.reason }, 'the MSP sync worker runs at nice 19, without the SCHED_IDLE policy');
    },
    onUnexpectedExit: (detail) => log?.warn({ detail }, 'the MSP sync worker thread ended; the next sync starts another'),
  });
  const plan = async (spec: FetchSpec, onProgress: (fetched: number) => void, signal: AbortSignal) => {
    if (spec.kind === 'file') return inProcessPlanner(await validateTreeSliced(await readTreeExport(spec.path)));
    return workers.fetchAndPlan({ baseUrl: spec.baseUrl, username: spec.user, password: spec.password }, { onProgress, signal });
  };
  return Object.assign(plan, { warm: () => workers.warm(), close: () => workers.close() });
}
