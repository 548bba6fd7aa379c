/**
 * Linking MSP accounts and syncing their structure into static groups.
 *
 * A sync fetches the whole tree first (bounded in size and time), validates
 * it, plans the changes, and applies them in one transaction: a fetch that
 * fails part-way changes nothing, and the previous tree stays in force.
 * Fetching, validating and planning happen where the tree is: in the
 * portal fetch's worker thread for the API (see sync-planner.ts), on the
 * event loop in slices otherwise; the apply is always here.
 * Every attempt is recorded as a sync run. One sync per account runs at a
 * time; a second request joins the running one. A scheduler re-syncs every
 * linked account at the configured interval (24 h by default).
 */
import type { Logger } from 'pino';
import { describeError, RollcallError } from '../../common/errors.js';
import { BACKGROUND, Pacer } from '../cooperative.js';
import type { Storage } from '../storage/index.js';
import { ROOT_GROUP_ID } from '../storage/migrations.js';
import type { MspAccount, SyncRun } from '../storage/msp-store.js';
import { isEmptyPlan } from './plan.js';
import type { SecretBox } from './secret-box.js';
import { inProcessPlanner, type TreePlanner } from './sync-planner.js';
import { validateTreeSliced, type PortalTree } from './tree.js';

/** Where a tree comes from. */
export type FetchSpec =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'api'; readonly baseUrl: string; readonly user: string; readonly password: string };

/** Fetches a tree; the seam between sync logic and the portal adapters. */
export type FetchTree = (spec: FetchSpec, onProgress: (fetched: number) => void, signal: AbortSignal) => Promise<PortalTree>;

/**
 * Fetches and validates a tree and hands back its planner (which may keep
 * the tree in a worker thread). One that keeps a thread between syncs says
 * so with `warm` (start it ahead of the next API sync) and `close` (end it).
 */
export type FetchPlanner = ((spec: FetchSpec, onProgress: (fetched: number) => void, signal: AbortSignal) => Promise<TreePlanner>) & {
  readonly warm?: () => void;
  readonly close?: () => Promise<void>;
};

/** What the sync service needs. */
export interface MspSyncDeps {
  readonly storage: Pick<Storage, 'db' | 'groups' | 'msp' | 'meta'>;
  readonly fetchTree: FetchTree;
  /** Used instead of `fetchTree` when given (the server's default: fetch and plan in a worker thread). */
  readonly fetchPlanner?: FetchPlanner;
  readonly secrets: SecretBox;
  readonly now: () => number;
  readonly log: Logger;
  /** Automatic sync interval (default 24 h). */
  readonly syncIntervalMs: number;
  /** After a failed sync, the next automatic attempt comes this soon (capped by the interval). */
  readonly retryAfterFailureMs?: number;
}

/** The sync state of one account, as `msp status` shows it. */
export interface AccountStatus {
  readonly account: Omit<MspAccount, 'apiSecret'>;
  readonly state: 'synchronized' | 'ongoing' | 'disconnected' | 'failed';
  readonly progress: { readonly phase: 'fetching' | 'applying'; readonly fetched: number; readonly startedAt: number } | null;
  readonly lastRun: SyncRun | null;
  readonly lastSuccess: SyncRun | null;
  readonly nextSyncAt: number | null;
}

/** The portal that created this instance; only it may delete the instance. */
export interface InstanceCreator {
  readonly portal: 'msp' | 'business';
  readonly accountExternalId: string;
  readonly accountName: string;
  readonly at: number;
}

/** Meta key of the instance creator. */
export const INSTANCE_CREATOR_KEY = 'instance_creator';

function portalOf(tree: Pick<PortalTree, 'portal'>, requested: 'msp' | 'business' | undefined): 'msp' | 'business' {
  if (requested && tree.portal && requested !== tree.portal) {
    throw new RollcallError('SYNC_PORTAL_MISMATCH', `the source is an export of the ${tree.portal} portal, but the ${requested} portal was asked for`);
  }
  return requested ?? tree.portal ?? 'msp';
}

type Ongoing = { phase: 'fetching' | 'applying'; fetched: number; startedAt: number; done: Promise<SyncRun> };

/** Links accounts and keeps them in sync. */
export class MspSync {
  private readonly ongoing = new Map<string, Ongoing>();
  private timer: NodeJS.Timeout | null = null;
  private readonly abort = new AbortController();

  private readonly fetchPlanner: FetchPlanner;

  constructor(private readonly deps: MspSyncDeps) {
    this.fetchPlanner =
      deps.fetchPlanner ?? (async (spec, onProgress, signal) => inProcessPlanner(await validateTreeSliced(await deps.fetchTree(spec, onProgress, signal))));
  }

  /**
   * Links an account from a file or the API: fetches, creates its root group,
   * syncs. The portal is the one asked for, else the one the source names,
   * else the MSP portal; a source naming another portal than asked is refused.
   */
  async link(spec: FetchSpec, requested?: 'msp' | 'business'): Promise<{ account: MspAccount; run: SyncRun }> {
    const startedAt = this.deps.now();
    const tree = await this.fetchPlanner(spec, () => undefined, this.abort.signal);
    try {
      return await this.linkFetched(spec, tree, requested, startedAt);
    } finally {
      tree.close();
    }
  }

  private async linkFetched(spec: FetchSpec, tree: TreePlanner, requested: 'msp' | 'business' | undefined, startedAt: number): Promise<{ account: MspAccount; run: SyncRun }> {
    const { storage, now } = this.deps;
    const portal = portalOf(tree, requested);
    const sealed = spec.kind === 'api' ? this.deps.secrets.seal(spec.password) : null;
    const account = await storage.db.transaction(async (tx) => {
      const siblings = await tx.all<{ id: string; name: string }>('SELECT id, name FROM groups WHERE parent_id = ?', [ROOT_GROUP_ID]);
      const existing = (await storage.msp.accounts(tx)).find((a) => a.portal === portal && a.externalId === tree.account.id);
      const clash = siblings.some((g) => g.name === tree.account.name && g.id !== existing?.rootGroupId);
      const rootName = clash ? `${tree.account.name} (${tree.account.id})` : tree.account.name;
      const linked = await storage.msp.link(
        {
          portal,
          source: spec.kind,
          account: tree.account,
          apiBaseUrl: spec.kind === 'api' ? spec.baseUrl : null,
          apiUser: spec.kind === 'api' ? spec.user : null,
          apiSecret: sealed,
          filePath: spec.kind === 'file' ? spec.path : null,
          now: now(),
        },
        ROOT_GROUP_ID,
        rootName,
        tx,
      );
      await storage.meta.setIfAbsent(INSTANCE_CREATOR_KEY, { portal, accountExternalId: tree.account.id, accountName: tree.account.name, at: now() } satisfies InstanceCreator, tx);
      return linked;
    });
    this.deps.log.info({ accountId: account.id, account: account.name, portal, source: spec.kind }, 'MSP account linked');
    const run = await this.applyTree(account, tree, 'link', startedAt);
    return { account: (await storage.msp.account(account.id))!, run };
  }

  /** Asks a portal (or reads an export) which account, of which portal, the given credentials belong to. */
  async identify(spec: FetchSpec, requested?: 'msp' | 'business'): Promise<{ account: PortalTree['account']; portal: 'msp' | 'business' }> {
    const tree = await this.fetchPlanner(spec, () => undefined, this.abort.signal);
    tree.close();
    return { account: tree.account, portal: portalOf(tree, requested) };
  }

  /** Syncs one linked account now (joining a sync already running). */
  sync(accountId: string, trigger: 'manual' | 'schedule'): Promise<SyncRun> {
    const running = this.ongoing.get(accountId);
    if (running) return running.done;
    const state: Ongoing = { phase: 'fetching', fetched: 0, startedAt: this.deps.now(), done: Promise.resolve(undefined as never) };
    state.done = this.runSync(accountId, trigger, state).finally(() => this.ongoing.delete(accountId));
    this.ongoing.set(accountId, state);
    return state.done;
  }

  private async runSync(accountId: string, trigger: string, state: Ongoing): Promise<SyncRun> {
    const account = await this.deps.storage.msp.account(accountId);
    if (!account) throw new RollcallError('MSP_ACCOUNT_NOT_FOUND', `no MSP account "${accountId}"`);
    if (!account.linked) throw new RollcallError('MSP_ACCOUNT_UNLINKED', `the MSP account "${account.name}" is unlinked; link it again to sync`);
    let tree: TreePlanner;
    try {
      const spec: FetchSpec =
        account.source === 'file'
          ? { kind: 'file', path: account.filePath! }
          : { kind: 'api', baseUrl: account.apiBaseUrl!, user: account.apiUser!, password: this.deps.secrets.open(account.apiSecret!) };
      tree = await this.fetchPlanner(spec, (n) => (state.fetched = n), this.abort.signal);
    } catch (err) {
      return this.recordFailure(account, trigger, state.startedAt, err);
    }
    try {
      if (tree.account.id !== account.externalId) {
        throw new RollcallError('SYNC_ACCOUNT_MISMATCH', `the portal answered for account ${tree.account.id}, but ${account.externalId} is linked`);
      }
      state.phase = 'applying';
      return await this.applyTree(account, tree, trigger, state.startedAt);
    } catch (err) {
      return this.recordFailure(account, trigger, state.startedAt, err);
    } finally {
      tree.close();
    }
  }

  private async applyTree(account: MspAccount, tree: TreePlanner, trigger: string, startedAt: number): Promise<SyncRun> {
    const { storage, now } = this.deps;
    // Writes go in statement-sized steps with rests between them, so check-ins keep flowing during a sync.
    const pacer = new Pacer(BACKGROUND);
    const pace = () => pacer.step();
    const target = { accountId: account.id, rootGroupId: account.rootGroupId };
    try {
      // A first look outside any transaction: a sync with nothing to change writes nothing and takes no write lock.
      const first = await tree.look(target, storage.db);
      const counts = !first.changes
        ? first.counts
        : await storage.db.transaction(async (tx) => {
            // Planned again under the write lock, so that it is made from exactly the state it changes (sync-planner.ts).
            const { plan, rootRenamed, parents } = await tree.plan(target, tx);
            if (rootRenamed) {
              await tx.run('UPDATE groups SET name = ? WHERE id = ?', [tree.account.name, account.rootGroupId]);
              await tx.run('UPDATE msp_accounts SET name = ? WHERE id = ?', [tree.account.name, account.id]);
            }
            if (!isEmptyPlan(plan)) await storage.msp.applyPlan(account, plan, parents, now(), tx, pace);
            return { ...plan.counts, renamed: plan.counts.renamed + (rootRenamed ? 1 : 0) };
          });
      const run = await storage.msp.recordRun({
        accountId: account.id,
        source: account.source,
        trigger,
        startedAt,
        finishedAt: now(),
        outcome: 'succeeded',
        errorCode: null,
        reason: null,
        fetched: tree.fetched,
        ...counts,
      });
      this.deps.log.info({ accountId: account.id, trigger, ...counts, fetched: run.fetched, ms: run.finishedAt - startedAt }, 'MSP sync finished');
      return run;
    } catch (err) {
      return this.recordFailure(account, trigger, startedAt, err);
    }
  }

  private async recordFailure(account: MspAccount, trigger: string, startedAt: number, err: unknown): Promise<SyncRun> {
    const code = err instanceof RollcallError ? err.code : 'SYNC_FAILED';
    const reason = describeError(err);
    this.deps.log.warn({ accountId: account.id, trigger, code, reason }, 'MSP sync failed; the previous tree stays in force');
    return this.deps.storage.msp.recordRun({
      accountId: account.id,
      source: account.source,
      trigger,
      startedAt,
      finishedAt: this.deps.now(),
      outcome: 'failed',
      errorCode: code,
      reason,
      fetched: 0,
      added: 0,
      renamed: 0,
      moved: 0,
      unlinked: 0,
      relinked: 0,
      updated: 0,
    });
  }

  /** Unlinks an account: its customers become unlinked; groups and devices stay. */
  async unlink(accountId: string): Promise<MspAccount> {
    const account = await this.deps.storage.msp.account(accountId);
    if (!account) throw new RollcallError('MSP_ACCOUNT_NOT_FOUND', `no MSP account "${accountId}"`);
    if (!account.linked) throw new RollcallError('MSP_ACCOUNT_UNLINKED', `the MSP account "${account.name}" is already unlinked`);
    await this.ongoing.get(accountId)?.done.catch(() => undefined); // let a running sync finish first; its outcome is recorded
    await this.deps.storage.msp.unlink(accountId, this.deps.now());
    this.deps.log.info({ accountId, account: account.name }, 'MSP account unlinked');
    return (await this.deps.storage.msp.account(accountId))!;
  }

  /** The sync state of every account. */
  async status(): Promise<AccountStatus[]> {
    const out: AccountStatus[] = [];
    for (const account of await this.deps.storage.msp.accounts()) {
      const runs = await this.deps.storage.msp.runs(account.id, 50);
      const lastRun = runs[0] ?? null;
      const lastSuccess = runs.find((r) => r.outcome === 'succeeded') ?? null;
      const ongoing = this.ongoing.get(account.id);
      const state = !account.linked ? 'disconnected' : ongoing ? 'ongoing' : lastRun?.outcome === 'failed' ? 'failed' : 'synchronized';
      const { apiSecret: _secret, ...visible } = account;
      out.push({
        account: visible,
        state,
        progress: ongoing ? { phase: ongoing.phase, fetched: ongoing.fetched, startedAt: ongoing.startedAt } : null,
        lastRun,
        lastSuccess,
        nextSyncAt: account.linked && lastRun ? lastRun.finishedAt + this.delayAfter(lastRun) : null,
      });
    }
    return out;
  }

  private delayAfter(run: SyncRun): number {
    const interval = this.deps.syncIntervalMs;
    return run.outcome === 'failed' ? Math.min(interval, this.deps.retryAfterFailureMs ?? 30 * 60_000) : interval;
  }

  /**
   * Starts automatic syncs; checks every `checkEveryMs` which accounts are
   * due. With an account linked through the API, the planner's worker
   * thread is started now, so that no sync pays for its start.
   */
  startScheduler(checkEveryMs = Math.min(this.deps.syncIntervalMs, 60_000)): void {
    if (this.timer) return;
    if (this.fetchPlanner.warm) {
      this.deps.storage.msp.accounts().then(
        (accounts) => {
          if (!this.abort.signal.aborted && accounts.some((a) => a.linked && a.source === 'api')) this.fetchPlanner.warm?.();
        },
        (err: unknown) => this.deps.log.warn({ err: describeError(err) }, 'cannot tell whether to start the MSP sync worker; the next sync starts it'),
      );
    }
    this.timer = setInterval(() => {
      this.syncDue().catch((err: unknown) => this.deps.log.error({ err: describeError(err) }, 'MSP scheduler failed'));
    }, checkEveryMs);
    this.timer.unref();
  }

  /** Syncs every linked account whose next sync is due; returns how many started. */
  async syncDue(): Promise<number> {
    let started = 0;
    for (const s of await this.status()) {
      if (s.state === 'disconnected' || s.state === 'ongoing' || s.nextSyncAt === null || s.nextSyncAt > this.deps.now()) continue;
      started += 1;
      // The account may be unlinked between the status read and the sync; a rejection here must not go unhandled (it would stop the server).
      this.sync(s.account.id, 'schedule').catch((err: unknown) => {
        this.deps.log.warn({ accountId: s.account.id, err: describeError(err) }, 'scheduled MSP sync did not run');
      });
    }
    return started;
  }

  /** Stops the scheduler and aborts running fetches; waits for running syncs to record; ends the planner's worker thread. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.abort.abort();
    await Promise.allSettled([...this.ongoing.values()].map((o) => o.done));
    await this.fetchPlanner.close?.();
  }
}
