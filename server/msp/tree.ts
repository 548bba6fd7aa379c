/**
 * The MSP structure as fetched from a portal (API or file export), before it
 * touches storage, and its validation. Pure: no I/O.
 *
 * Whatever the source, the result is one flat list of companies with parent
 * ids, rooted at the linked account. `validateTree` refuses hostile or
 * broken input (duplicate ids, cycles, orphans, absurd depth, bad names)
 * with one clear reason, so a sync never applies half a tree.
 */
import { RollcallError } from '../../common/errors.js';
import { runAll, runSliced, type Steps } from '../cooperative.js';

/** Entity type codes of the portal (see ../shared/domain.md). */
export const EntityType = {
  HQ: 1001,
  DISTRIBUTOR: 1002,
  DIVISION: 1003,
  MSP_MANAGER: 1004,
  MSP: 1005,
  MANAGED_MSP: 1006,
  CUSTOMER: 1007,
} as const;

/** Types that can be the linked account (its root group). */
export const ACCOUNT_TYPES: ReadonlySet<number> = new Set([EntityType.MSP_MANAGER, EntityType.MSP, EntityType.MANAGED_MSP]);
/** Types imported below the account. */
export const IMPORTED_TYPES: ReadonlySet<number> = new Set([EntityType.MSP, EntityType.MANAGED_MSP, EntityType.CUSTOMER]);

/** Human names of the entity types, for views. */
export const ENTITY_TYPE_NAMES: Readonly<Record<number, string>> = {
  1001: 'HQ',
  1002: 'Distributor',
  1003: 'Division',
  1004: 'MSP Manager',
  1005: 'MSP',
  1006: 'Managed MSP',
  1007: 'Customer',
};

/** One company of the portal. */
export interface PortalCompany {
  /** The portal's `publicId`. */
  readonly id: string;
  readonly name: string;
  /** Entity type code. */
  readonly type: number;
  /** Parent's id; null only for the account itself. */
  readonly parentId: string | null;
  /** Upstream status as given (`Active`, `Suspended`, `WaitingForActivation`, or anything else, kept as is). */
  readonly status: string;
  readonly email: string | null;
}

/** A whole fetched structure. */
export interface PortalTree {
  /** Which portal the source says it comes from, when it says so (file exports do). */
  readonly portal?: 'msp' | 'business';
  /** The linked account (MSP Manager, MSP or Managed MSP). */
  readonly account: PortalCompany;
  /** Every company below the account, in any order. */
  readonly companies: readonly PortalCompany[];
}

/** Limits that keep a hostile source from exhausting us. */
export const TREE_LIMITS = Object.freeze({ maxCompanies: 200_000, maxDepth: 16, maxNameLength: 256, maxIdLength: 128 });

// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;
/** Companies handled between two yields of the sliced validation. */
const STEP = 256;

function checkText(what: string, value: unknown, max: number): string {
  if (typeof value !== 'string' || value.trim().length === 0) throw new RollcallError('SYNC_INVALID_TREE', `${what} is missing or empty`);
  if (value.length > max) throw new RollcallError('SYNC_INVALID_TREE', `${what} is ${value.length} characters long; at most ${max} are allowed`);
  if (CONTROL_CHARACTER.test(value)) {
    throw new RollcallError('SYNC_INVALID_TREE', `${what} contains control characters`);
  }
  return value;
}

/**
 * Checks a fetched tree; throws RollcallError `SYNC_INVALID_TREE` with the
 * first problem found. Companies of types that are never imported (and
 * their subtrees) are dropped from the returned tree.
 */
export function validateTree(tree: PortalTree): PortalTree {
  return runAll(validationSteps(tree));
}

/** {@link validateTree} in slices, letting the event loop run in between (large trees, on a busy server). */
export function validateTreeSliced(tree: PortalTree): Promise<PortalTree> {
  return runSliced(validationSteps(tree));
}

function* validationSteps(tree: PortalTree): Steps<PortalTree> {
  const { account } = tree;
  checkText('the account id', account.id, TREE_LIMITS.maxIdLength);
  checkText(`the name of account ${account.id}`, account.name, TREE_LIMITS.maxNameLength);
  if (!ACCOUNT_TYPES.has(account.type)) {
    throw new RollcallError('SYNC_INVALID_TREE', `the account is a ${ENTITY_TYPE_NAMES[account.type] ?? `type ${account.type}`}; only an MSP Manager, MSP or Managed MSP can be linked`);
  }
  if (tree.companies.length > TREE_LIMITS.maxCompanies) {
    throw new RollcallError('SYNC_INVALID_TREE', `the structure has ${tree.companies.length} companies; at most ${TREE_LIMITS.maxCompanies} are supported`);
  }
  const byId = new Map<string, PortalCompany>([[account.id, account]]);
  let n = 0;
  for (const c of tree.companies) {
    if (++n % STEP === 0) yield;
    checkText('a company id', c.id, TREE_LIMITS.maxIdLength);
    checkText(`the name of company ${c.id}`, c.name, TREE_LIMITS.maxNameLength);
    if (byId.has(c.id)) throw new RollcallError('SYNC_INVALID_TREE', `company id ${c.id} appears twice`);
    if (typeof c.parentId !== 'string') throw new RollcallError('SYNC_INVALID_TREE', `company ${c.id} has no parent`);
    if (!Number.isInteger(c.type)) throw new RollcallError('SYNC_INVALID_TREE', `company ${c.id} has no entity type`);
    byId.set(c.id, c);
  }
  const depthOf = new Map<string, number>([[account.id, 0]]);
  const resolveDepth = (c: PortalCompany): number => {
    const trail: PortalCompany[] = [];
    let cur: PortalCompany | undefined = c;
    while (cur && !depthOf.has(cur.id)) {
      if (trail.includes(cur)) throw new RollcallError('SYNC_INVALID_TREE', `companies ${trail.map((t) => t.id).slice(0, 5).join(' → ')} form a cycle`);
      if (trail.length > TREE_LIMITS.maxDepth) break;
      trail.push(cur);
      const parent: PortalCompany | undefined = byId.get(cur.parentId!);
      if (!parent) throw new RollcallError('SYNC_INVALID_TREE', `company ${cur.id} names a parent ${cur.parentId} that is not in the structure`);
      cur = parent;
    }
    let depth = cur ? depthOf.get(cur.id) ?? TREE_LIMITS.maxDepth + 1 : 0;
    for (let i = trail.length - 1; i >= 0; i -= 1) {
      depth += 1;
      depthOf.set(trail[i]!.id, depth);
    }
    const own = depthOf.get(c.id)!;
    if (own > TREE_LIMITS.maxDepth) throw new RollcallError('SYNC_INVALID_TREE', `company ${c.id} is nested ${own} levels deep; at most ${TREE_LIMITS.maxDepth} are supported`);
    return own;
  };
  for (const c of tree.companies) {
    if (++n % STEP === 0) yield;
    resolveDepth(c);
  }
  // Keep only importable types whose whole ancestry below the account is importable and not a customer.
  const kept = new Set<string>([account.id]);
  // Parents before children: bucket by depth (stable, linear, and sliceable unlike a sort).
  const byDepth: PortalCompany[][] = Array.from({ length: TREE_LIMITS.maxDepth + 1 }, () => []);
  for (const c of tree.companies) {
    if (++n % STEP === 0) yield;
    byDepth[depthOf.get(c.id)!]!.push(c);
  }
  const companies: PortalCompany[] = [];
  for (const c of byDepth.flat()) {
    if (++n % STEP === 0) yield;
    if (IMPORTED_TYPES.has(c.type) && kept.has(c.parentId!)) {
      if (c.type !== EntityType.CUSTOMER) kept.add(c.id); // customers are leaves: anything below one is not imported
      companies.push(c);
    }
  }
  return { ...(tree.portal ? { portal: tree.portal } : {}), account, companies };
}
