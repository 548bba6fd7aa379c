/**
 * The default tree fetcher: a file export read from disk, or the portal's
 * REST API. The sync service depends only on the FetchTree type, so tests
 * can hand it trees directly.
 */
import { fetchPortalTree } from './portal-api.js';
import { readTreeExport } from './portal-file.js';
import type { FetchTree } from './sync-service.js';

/** Fetches from the source an account was linked with. */
export const defaultFetchTree: FetchTree = async (spec, onProgress, signal) => {
  if (spec.kind === 'file') return readTreeExport(spec.path);
  return fetchPortalTree({ baseUrl: spec.baseUrl, username: spec.user, password: spec.password, onProgress, signal });
};
