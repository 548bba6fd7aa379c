/**
 * Planning a sync against what is stored, wherever the fetched tree lives.
 *
 * A sync asks its planner twice: once outside any transaction (`look`: is
 * there anything to change?), and, only when there is, once more inside the
 * write transaction (`plan`), so that the plan it applies is made from
 * exactly the state it changes. The in-process planner reads through the
 * connection it is given; the worker planner (planning-workers.ts) reads
 * through its own read-only connection, and its snapshot is that same state
 * because the writer holds the write lock while it asks (see
 * docs/msp.md, "Where a sync runs").
 */
import type { Sql } from '../storage/db.js';
import { MspStore, type MspCompany } from '../storage/msp-store.js';
import { BACKGROUND, Pacer } from '../cooperative.js';
import { isEmptyPlan, planSync, planSyncSliced, type PlanList, type PlanToApply, type StoredCompany, type SyncPlan } from './plan.js';
import type { PortalCompany, PortalTree } from './tree.js';

/** Which account a plan is for. */
export interface PlanTarget {
  readonly accountId: string;
  readonly rootGroupId: string;
}

/** A stored company as the apply needs it: which group stands for which portal id. */
export type GroupOfCompany = Pick<StoredCompany, 'externalId' | 'groupId'>;

/** A plan with what applying it needs. */
export interface PlannedSync {
  /** In process, a {@link SyncPlan}; from a worker thread, kept packed and decoded as the apply reads it (packed-plan.ts). */
  readonly plan: PlanToApply;
  /** The account's root group no longer carries the account's name. */
  readonly rootRenamed: boolean;
  /** The stored companies that parents of new and moved groups resolve to (all of them, in process). */
  readonly parents: PlanList<GroupOfCompany>;
}

/** What a first look found. */
export interface SyncLook {
  readonly changes: boolean;
  readonly counts: SyncPlan['counts'];
}

/** A fetched and validated tree, ready to be planned against storage. */
export interface TreePlanner {
  readonly account: PortalCompany;
  readonly portal?: 'msp' | 'business';
  /** Companies below the account that the sync imports. */
  readonly fetched: number;
  /** Plans from a snapshot and says whether anything would change; `sql` is the connection to read through (in process). */
  look(target: PlanTarget, sql: Sql): Promise<SyncLook>;
  /** Plans for the apply; call inside the write transaction, `sql` being it. */
  plan(target: PlanTarget, sql: Sql): Promise<PlannedSync>;
  /** Frees what the planner holds (its worker thread). */
  close(): void;
}

/** True when a planned sync writes nothing. */
export function writesNothing(p: Pick<PlannedSync, 'plan' | 'rootRenamed'>): boolean {
  return isEmptyPlan(p.plan) && !p.rootRenamed;
}

/** Whether the root group's name still is the account's (or its disambiguated form). */
function rootRenamed(rootName: string | undefined, accountName: string): boolean {
  return rootName !== accountName && !rootName?.startsWith(`${accountName} (`);
}

/**
 * Reads the account's stored companies and root group name through `sql`
 * and plans the tree against them. On the event loop (`sliced`) the reads
 * and the planning both rest between slices; a worker thread plans straight
 * through (at its low priority) but still paces its reads: each page is
 * stepped on libuv's thread pool, at normal priority, beside the check-in
 * journal's commits.
 */
export async function planAgainstStore(
  tree: PortalTree,
  target: PlanTarget,
  sql: Pick<Sql, 'all' | 'get'>,
  sliced: boolean,
): Promise<{ plan: SyncPlan; rootRenamed: boolean; parents: readonly GroupOfCompany[]; stored: readonly MspCompany[] }> {
  const pacer = new Pacer(BACKGROUND);
  const stored = await new MspStore(sql as Sql).companies(target.accountId, sql, () => pacer.step());
  const plan = sliced ? await planSyncSliced(tree, stored, target.rootGroupId) : planSync(tree, stored, target.rootGroupId);
  const root = await sql.get<{ name: string }>('SELECT name FROM groups WHERE id = ?', [target.rootGroupId]);
  return { plan, rootRenamed: rootRenamed(root?.name, tree.account.name), parents: stored, stored };
}

/** Only the stored companies that the plan's new and moved groups hang below (what crosses back from a worker). */
export function parentsOf(plan: SyncPlan, stored: readonly GroupOfCompany[]): GroupOfCompany[] {
  const wanted = new Set<string>();
  for (const c of plan.creates) wanted.add(c.parentExternalId);
  for (const ch of plan.groupChanges) wanted.add(ch.parentExternalId);
  return stored.filter((s) => wanted.has(s.externalId)).map((s) => ({ externalId: s.externalId, groupId: s.groupId }));
}

/** Plans on the event loop, in slices, from a tree held here (file exports, and trees tests hand in). */
export function inProcessPlanner(tree: PortalTree): TreePlanner {
  return {
    account: tree.account,
    ...(tree.portal ? { portal: tree.portal } : {}),
    fetched: tree.companies.length,
    look: async (target, sql) => {
      const p = await planAgainstStore(tree, target, sql, true);
      return { changes: !writesNothing(p), counts: p.plan.counts };
    },
    plan: async (target, sql) => {
      const { plan, rootRenamed: renamed, parents } = await planAgainstStore(tree, target, sql, true);
      return { plan, rootRenamed: renamed, parents };
    },
    close: () => undefined,
  };
}
