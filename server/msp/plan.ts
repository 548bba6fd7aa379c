/**
 * The sync planner: compares a validated portal tree with what is stored and
 * says what must change. Pure, so every sync rule is tested without I/O.
 *
 * Rules: a new company becomes a group (customers start "not set up"); an
 * upstream rename renames the group (same id); a move moves the group with
 * its subgroups and devices; a company gone upstream is unlinked, never
 * deleted; one that comes back is relinked with its old group; status and
 * e-mail changes are recorded. Sibling groups need distinct names, so when
 * two companies under one parent share a name the later one (by id) gets
 * its portal id appended; a group that already holds a name keeps it.
 */
import { runAll, runSliced, type Steps } from '../cooperative.js';
import type { PortalCompany, PortalTree } from './tree.js';

/** Companies handled between two yields of the sliced planner. */
const STEP = 256;

/** A synced company as stored. */
export interface StoredCompany {
  readonly groupId: string;
  readonly externalId: string;
  readonly type: number;
  readonly upstreamName: string;
  readonly status: string;
  readonly email: string | null;
  readonly present: boolean;
  /** The group's current name and parent group. */
  readonly groupName: string;
  readonly parentGroupId: string;
}

/** A group to create. */
export interface PlannedCreate {
  readonly externalId: string;
  /** External id of the parent company (the account's id for top level). */
  readonly parentExternalId: string;
  readonly name: string;
  readonly company: PortalCompany;
}

/** A change of an existing group's name and/or parent. */
export interface PlannedGroupChange {
  readonly groupId: string;
  readonly name: string;
  readonly parentExternalId: string;
  readonly renamed: boolean;
  readonly moved: boolean;
}

/** What a sync will do. */
export interface SyncPlan {
  readonly creates: readonly PlannedCreate[];
  readonly groupChanges: readonly PlannedGroupChange[];
  /** Stored companies whose upstream facts (name, type, status, e-mail, presence) change. */
  readonly companyUpdates: readonly { readonly groupId: string; readonly company: PortalCompany; readonly relink: boolean }[];
  readonly unlinks: readonly string[];
  readonly counts: { added: number; renamed: number; moved: number; unlinked: number; relinked: number; updated: number };
}

/** One list of a plan as the apply reads it: an array, or a packed list decoded a chunk at a time as it is iterated (packed-plan.ts). */
export interface PlanList<T> extends Iterable<T> {
  readonly length: number;
}

/** What the apply reads: a {@link SyncPlan}, or one kept packed as its worker thread sent it. */
export interface PlanToApply {
  readonly creates: PlanList<PlannedCreate>;
  readonly groupChanges: PlanList<PlannedGroupChange>;
  readonly companyUpdates: PlanList<SyncPlan['companyUpdates'][number]>;
  readonly unlinks: PlanList<string>;
  readonly counts: SyncPlan['counts'];
  /**
   * The new groups that other new or moved groups hang below (see
   * {@link createdParents}): the apply remembers the ids of only these. When
   * absent it remembers every new group's.
   */
  readonly createdParents?: PlanList<string>;
}

/** True when the plan changes nothing. */
export function isEmptyPlan(p: Pick<PlanToApply, 'creates' | 'groupChanges' | 'companyUpdates' | 'unlinks'>): boolean {
  return p.creates.length + p.groupChanges.length + p.companyUpdates.length + p.unlinks.length === 0;
}

/** External ids of the created companies that are the parent of another created or moved one. */
export function createdParents(p: Pick<SyncPlan, 'creates' | 'groupChanges'>): string[] {
  const wanted = new Set<string>();
  for (const c of p.creates) wanted.add(c.parentExternalId);
  for (const ch of p.groupChanges) wanted.add(ch.parentExternalId);
  return p.creates.filter((c) => wanted.has(c.externalId)).map((c) => c.externalId);
}

/** Computes the plan for one account. `rootGroupId` is the account's root group. */
export function planSync(tree: PortalTree, stored: readonly StoredCompany[], rootGroupId: string): SyncPlan {
  return runAll(planSteps(tree, stored, rootGroupId));
}

/** {@link planSync} in slices, letting the event loop run in between (large accounts, on a busy server). */
export function planSyncSliced(tree: PortalTree, stored: readonly StoredCompany[], rootGroupId: string): Promise<SyncPlan> {
  return runSliced(planSteps(tree, stored, rootGroupId));
}

function* planSteps(tree: PortalTree, stored: readonly StoredCompany[], rootGroupId: string): Steps<SyncPlan> {
  let n = 0;
  const accountId = tree.account.id;
  const byExternal = new Map<string, StoredCompany>();
  const externalOfGroup = new Map<string, string>([[rootGroupId, accountId]]);
  for (const s of stored) {
    if (++n % STEP === 0) yield;
    byExternal.set(s.externalId, s);
    externalOfGroup.set(s.groupId, s.externalId);
  }
  const fetchedIds = new Set<string>();
  for (const c of tree.companies) {
    if (++n % STEP === 0) yield;
    fetchedIds.add(c.id);
  }

  // Names held under each parent by groups that stay where they are (unlinked ones).
  const taken = new Map<string, Set<string>>();
  const take = (parent: string, name: string): void => {
    let set = taken.get(parent);
    if (!set) taken.set(parent, (set = new Set()));
    set.add(name);
  };
  for (const s of stored) {
    if (++n % STEP === 0) yield;
    if (!fetchedIds.has(s.externalId)) take(externalOfGroup.get(s.parentGroupId) ?? `group:${s.parentGroupId}`, s.groupName);
  }

  // Assign final names per parent: groups that already hold their plain name keep it.
  const finalName = new Map<string, string>();
  const byParent = new Map<string, PortalCompany[]>();
  for (const c of tree.companies) {
    if (++n % STEP === 0) yield;
    const list = byParent.get(c.parentId!) ?? [];
    list.push(c);
    byParent.set(c.parentId!, list);
  }
  for (const [parent, children] of byParent) {
    const keeps = (c: PortalCompany): boolean => {
      const s = byExternal.get(c.id);
      return !!s && s.groupName === c.name && externalOfGroup.get(s.parentGroupId) === parent;
    };
    const ordered = [...children].sort((a, b) => Number(keeps(b)) - Number(keeps(a)) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const c of ordered) {
      if (++n % STEP === 0) yield;
      const used = taken.get(parent) ?? new Set<string>();
      let name = c.name;
      for (let n = 1; used.has(name); n += 1) name = n === 1 ? `${c.name} (${c.id})` : `${c.name} (${c.id}-${n})`;
      take(parent, name);
      finalName.set(c.id, name);
    }
  }

  const creates: PlannedCreate[] = [];
  const groupChanges: PlannedGroupChange[] = [];
  const companyUpdates: { groupId: string; company: PortalCompany; relink: boolean }[] = [];
  const counts = { added: 0, renamed: 0, moved: 0, unlinked: 0, relinked: 0, updated: 0 };
  for (const c of tree.companies) {
    if (++n % STEP === 0) yield;
    const s = byExternal.get(c.id);
    const name = finalName.get(c.id)!;
    if (!s) {
      creates.push({ externalId: c.id, parentExternalId: c.parentId!, name, company: c });
      counts.added += 1;
      continue;
    }
    const renamed = s.groupName !== name;
    const moved = externalOfGroup.get(s.parentGroupId) !== c.parentId;
    if (renamed || moved) groupChanges.push({ groupId: s.groupId, name, parentExternalId: c.parentId!, renamed, moved });
    if (renamed) counts.renamed += 1;
    if (moved) counts.moved += 1;
    const relink = !s.present;
    const factsChanged = s.upstreamName !== c.name || s.type !== c.type || s.status !== c.status || s.email !== c.email;
    if (relink || factsChanged) {
      companyUpdates.push({ groupId: s.groupId, company: c, relink });
      if (relink) counts.relinked += 1;
      else if (!renamed) counts.updated += 1;
    }
  }
  const unlinks: string[] = [];
  for (const s of stored) {
    if (++n % STEP === 0) yield;
    if (s.present && !fetchedIds.has(s.externalId)) unlinks.push(s.groupId);
  }
  counts.unlinked = unlinks.length;
  return { creates, groupChanges, companyUpdates, unlinks, counts };
}
