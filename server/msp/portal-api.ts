/**
 * Fetches an MSP account's structure from the MSP portal's REST API (the
 * model: ESET MSP Administrator 2), for the sync into static groups.
 *
 * It logs in, finds the user's own company (User/Current → Company/Detail)
 * and walks the tree downwards with paged Company/Children calls, several
 * companies at once. Descendants is not used: it carries no parent ids.
 * The answer shapes live in portal-shapes.ts, the transport in
 * portal-http.ts, the token lifecycle in portal-session.ts.
 */
import { setMaxListeners } from 'node:events';
import { RollcallError } from '../../common/errors.js';
import { BACKGROUND, Pacer, type Pace } from '../cooperative.js';
import { portalAgent } from './portal-http.js';
import { PortalSession, type MaintenancePolicy } from './portal-session.js';
import { MAX_PAGE_SIZE, parseCompanyDetail, parseCompanyPage, parseCurrentUser, PortalCall, quote } from './portal-shapes.js';
import { ACCOUNT_TYPES, TREE_LIMITS, validateTree, type PortalCompany, type PortalTree } from './tree.js';

/** Options of {@link fetchPortalTree}; everything but the credentials has a default. */
export interface PortalApiOptions {
  /** Portal API root, http or https (default `https://mspapi.eset.com`). */
  readonly baseUrl?: string;
  readonly username: string;
  /** Never logged nor put into an error message. */
  readonly password: string;
  /** `take` of each Children call, 1..100 (default 100). */
  readonly pageSize?: number;
  /** Longest wait for one answer, body included (default 15 s). */
  readonly requestTimeoutMs?: number;
  /** Largest answer accepted, in bytes (default 4 MiB). */
  readonly maxResponseBytes?: number;
  /** Longest time for the whole fetch (default 10 min). */
  readonly deadlineMs?: number;
  /** Age at which the access token is renewed ahead of expiry (default 40 s; tokens live about a minute). */
  readonly tokenRenewAfterMs?: number;
  /** Retries of 503 (maintenance): `{ attempts: 5, baseMs: 500, capMs: 8000 }` by default. */
  readonly maintenance?: Partial<MaintenancePolicy>;
  /** Children calls in flight at once, 1..16 (default 6). */
  readonly concurrency?: number;
  /**
   * How the handling of pages shares the event loop (default BACKGROUND).
   * In a worker thread at the lowest priority the OS does the pacing, and
   * EAGER is used (see fetch-worker.ts).
   */
  readonly pace?: Pace;
  /** Called after each page with the number of companies below the account fetched so far. */
  readonly onProgress?: (companiesFetched: number) => void;
  /** Cancels the fetch (`SYNC_PORTAL_ABORTED`). */
  readonly signal?: AbortSignal;
  /** Monotonic clock in milliseconds, for token age (default `performance.now`). */
  readonly now?: () => number;
  /** Waits between 503 retries; must reject with `signal.reason` when aborted. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Uniform numbers in [0, 1) for backoff jitter (default `Math.random`). */
  readonly random?: () => number;
}

/** Defaults of {@link PortalApiOptions}. */
export const PORTAL_API_DEFAULTS = Object.freeze({
  baseUrl: 'https://mspapi.eset.com',
  pageSize: MAX_PAGE_SIZE,
  requestTimeoutMs: 15_000,
  maxResponseBytes: 4 * 1024 * 1024,
  deadlineMs: 10 * 60_000,
  tokenRenewAfterMs: 40_000,
  maintenance: Object.freeze({ attempts: 5, baseMs: 500, capMs: 8_000 }),
  concurrency: 6,
});

/** Types whose children we list. Customers are leaves, and nothing below other types is imported (see validateTree). */
const WALKED_TYPES = ACCOUNT_TYPES;

type Resolved = Required<Omit<PortalApiOptions, 'onProgress' | 'signal' | 'maintenance' | 'pace'>> & { maintenance: MaintenancePolicy; base: URL };

function sleepFor(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function resolveOptions(opts: PortalApiOptions): Resolved {
  const d = PORTAL_API_DEFAULTS;
  const r = {
    baseUrl: opts.baseUrl ?? d.baseUrl,
    username: opts.username,
    password: opts.password,
    pageSize: opts.pageSize ?? d.pageSize,
    requestTimeoutMs: opts.requestTimeoutMs ?? d.requestTimeoutMs,
    maxResponseBytes: opts.maxResponseBytes ?? d.maxResponseBytes,
    deadlineMs: opts.deadlineMs ?? d.deadlineMs,
    tokenRenewAfterMs: opts.tokenRenewAfterMs ?? d.tokenRenewAfterMs,
    maintenance: { ...d.maintenance, ...opts.maintenance },
    concurrency: opts.concurrency ?? d.concurrency,
    now: opts.now ?? (() => performance.now()),
    sleep: opts.sleep ?? sleepFor,
    random: opts.random ?? Math.random,
  };
  const problems: string[] = [];
  const int = (name: string, v: number, min: number, max: number): void => {
    if (!Number.isInteger(v) || v < min || v > max) problems.push(`${name} must be a whole number from ${min} to ${max} (got ${v})`);
  };
  int('pageSize', r.pageSize, 1, MAX_PAGE_SIZE);
  int('requestTimeoutMs', r.requestTimeoutMs, 1, 10 * 60_000);
  int('maxResponseBytes', r.maxResponseBytes, 1024, 1024 ** 3);
  int('deadlineMs', r.deadlineMs, 1, 24 * 3_600_000);
  int('tokenRenewAfterMs', r.tokenRenewAfterMs, 0, 24 * 3_600_000);
  int('maintenance.attempts', r.maintenance.attempts, 1, 100);
  int('maintenance.baseMs', r.maintenance.baseMs, 0, 3_600_000);
  int('maintenance.capMs', r.maintenance.capMs, 0, 3_600_000);
  int('concurrency', r.concurrency, 1, 16);
  if (typeof r.username !== 'string' || r.username.length === 0) problems.push('username is missing');
  if (typeof r.password !== 'string' || r.password.length === 0) problems.push('password is missing');
  let base: URL | undefined;
  try {
    base = new URL(r.baseUrl.endsWith('/') ? r.baseUrl : `${r.baseUrl}/`);
    if (base.protocol !== 'https:' && base.protocol !== 'http:') problems.push(`baseUrl must be http or https (got ${base.protocol})`);
    if (base.username || base.password) problems.push('baseUrl must not carry credentials');
    if (base.search || base.hash) problems.push('baseUrl must not have a query or fragment');
  } catch {
    problems.push(`baseUrl ${quote(r.baseUrl)} is not a URL`);
  }
  if (problems.length > 0 || !base) throw new RollcallError('SYNC_PORTAL_CONFIG_INVALID', `invalid MSP portal settings: ${problems.join('; ')}`);
  return { ...r, base };
}

/**
 * Fetches the linked account and every company below it. The result is
 * raw: pass it to `validateTree` before applying it.
 *
 * Throws RollcallError with one of the `SYNC_PORTAL_*` codes (listed in
 * docs/errors.md), or `SYNC_INVALID_TREE` when the account cannot be
 * linked, or the structure exceeds TREE_LIMITS.
 */
export async function fetchPortalTree(opts: PortalApiOptions): Promise<PortalTree> {
  const o = resolveOptions(opts);
  const ctl = new AbortController();
  setMaxListeners(4 * o.concurrency + 8, ctl.signal); // one listener per request in flight, plus backoff sleeps
  const deadline = setTimeout(() => {
    ctl.abort(new RollcallError('SYNC_PORTAL_TIMEOUT', `the MSP portal sync did not finish within ${o.deadlineMs} ms`, { retryable: true }));
  }, o.deadlineMs);
  const onCallerAbort = (): void => ctl.abort(new RollcallError('SYNC_PORTAL_ABORTED', 'the MSP portal sync was cancelled'));
  if (opts.signal?.aborted) onCallerAbort();
  opts.signal?.addEventListener('abort', onCallerAbort, { once: true });
  const agent = portalAgent(o.base, o.concurrency + 2); // the walk's calls, plus a token renewal and a spare
  try {
    const session = await PortalSession.login({ ...o, signal: ctl.signal, agent });
    const companyId = parseCurrentUser(await session.call(PortalCall.USER_CURRENT, {}));
    const detail = parseCompanyDetail(await session.call(PortalCall.COMPANY_DETAIL, { companyId }, `for company ${quote(companyId)}`));
    if (detail.id !== companyId) {
      throw inconsistent(`Company/Detail for the user's company ${quote(companyId)} describes company ${quote(detail.id)}`);
    }
    const account: PortalCompany = { ...detail, parentId: null };
    validateTree({ account, companies: [] }); // refuses a non-linkable account before walking a whole distributor
    const companies = await walk(session, account, o, ctl, opts.pace ?? BACKGROUND, opts.onProgress);
    return { account, companies };
  } finally {
    clearTimeout(deadline);
    opts.signal?.removeEventListener('abort', onCallerAbort);
    agent.destroy();
  }
}

function inconsistent(message: string): RollcallError {
  return new RollcallError('SYNC_PORTAL_INCONSISTENT', `the MSP portal contradicted itself: ${message}; the structure may have changed during the sync`, { retryable: true });
}

interface Job {
  readonly id: string;
  readonly depth: number;
}

/** Lists children of every walked company, `concurrency` parents at a time; the first failure stops the rest. */
async function walk(
  session: PortalSession,
  account: PortalCompany,
  o: Resolved,
  ctl: AbortController,
  pace: Pace,
  onProgress?: (n: number) => void,
): Promise<PortalCompany[]> {
  const parentOf = new Map<string, string | null>([[account.id, null]]);
  const out: PortalCompany[] = [];
  const jobs: Job[] = [{ id: account.id, depth: 0 }];
  let next = 0;
  let failure: { err: unknown } | undefined;
  // A sync is background work: the parsing of pages shares the event loop and the CPU with agents' check-ins.
  const pacer = new Pacer(pace);

  const listChildren = async (job: Job): Promise<void> => {
    const what = `for company ${quote(job.id)}`;
    let total: number | undefined;
    for (let skip = 0; ; ) {
      const page = parseCompanyPage(await session.call(PortalCall.COMPANY_CHILDREN, { companyId: job.id, skip, take: o.pageSize }, what));
      const n = page.companies.length;
      if (n > o.pageSize) throw inconsistent(`a page of Company/Children ${what} has ${n} companies, more than the ${o.pageSize} asked for`);
      if (total !== undefined && page.totalCount !== total) throw inconsistent(`totalCount of Company/Children ${what} changed from ${total} to ${page.totalCount} between pages`);
      total = page.totalCount;
      if (skip + n > total) throw inconsistent(`Company/Children ${what} returned more than its totalCount of ${total} companies`);
      for (const c of page.companies) {
        const earlier = parentOf.get(c.id);
        if (earlier !== undefined) throw inconsistent(`company ${quote(c.id)} appears twice (under ${quote(earlier ?? 'nothing: it is the account')} and ${quote(job.id)})`);
        parentOf.set(c.id, job.id);
        out.push({ ...c, parentId: job.id });
        if (WALKED_TYPES.has(c.type)) {
          if (job.depth + 1 >= TREE_LIMITS.maxDepth) throw new RollcallError('SYNC_INVALID_TREE', `company ${quote(c.id)} is nested more than ${TREE_LIMITS.maxDepth} levels deep`);
          jobs.push({ id: c.id, depth: job.depth + 1 });
        }
      }
      if (out.length > TREE_LIMITS.maxCompanies) throw new RollcallError('SYNC_INVALID_TREE', `the structure has more than ${TREE_LIMITS.maxCompanies} companies`);
      onProgress?.(out.length);
      await pacer.step();
      skip += n;
      if (n < o.pageSize) {
        if (skip !== total) throw inconsistent(`Company/Children ${what} stopped after ${skip} of its totalCount of ${total} companies`);
        return;
      }
    }
  };

  await new Promise<void>((resolve) => {
    let running = 0;
    const pump = (): void => {
      while (!failure && running < o.concurrency && next < jobs.length) {
        const job = jobs[next]!;
        next += 1;
        running += 1;
        listChildren(job)
          .catch((err: unknown) => {
            if (failure) return;
            failure = { err };
            ctl.abort(err); // stops the calls still in flight
          })
          .finally(() => {
            running -= 1;
            pump();
          });
      }
      if (running === 0) resolve();
    };
    pump();
  });
  if (failure) throw failure.err;
  return out;
}
