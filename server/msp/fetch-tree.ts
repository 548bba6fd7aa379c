/**
 * The default tree fetcher: a file export read from disk, or the portal's
 * REST API, fetched in a worker thread at the lowest OS priority
 * (fetch-in-worker.ts). The sync service depends only on the FetchTree
 * type, so tests can hand it trees directly.
 */
import type { Logger } from 'pino';
import { fetchPortalTreeInWorker } from './fetch-in-worker.js';
import { readTreeExport } from './portal-file.js';
import type { FetchTree } from './sync-service.js';

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
