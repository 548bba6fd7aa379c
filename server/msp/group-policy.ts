/**
 * What may be done with a group, given whether it is synced from an MSP
 * portal. Pure: the caller looks up the facts.
 *
 * Decisions (documented in docs/msp.md):
 * - computers live in customers' groups, in the admin's own groups, in All
 *   and in Lost & found; an account's root group and MSP-level groups hold
 *   no computers (the model keeps computers under customers);
 * - while the account is linked its synced subtree is read-only: no rename,
 *   move, new subgroup or delete by an admin;
 * - an unlinked group (removed upstream, or the whole account unlinked) may
 *   be deleted once it is empty; the account's root group never;
 * - no new computers go into an unlinked customer's group.
 */
import { EntityType } from './tree.js';

/** The facts the policy needs about one group. */
export interface GroupFacts {
  readonly builtin: boolean;
  /** Set when the group is an MSP account's root group. */
  readonly accountRoot?: { readonly linked: boolean; readonly name: string };
  /** Set when the group is a synced company. */
  readonly company?: { readonly type: number; readonly present: boolean; readonly accountLinked: boolean; readonly name: string };
}

/** A refusal: an error code and a sentence. */
export interface Refusal {
  readonly code: 'GROUP_SYNCED' | 'GROUP_ACCOUNT_ROOT' | 'GROUP_CANNOT_HOLD_DEVICES' | 'GROUP_UNLINKED';
  readonly message: string;
}

const linkedNow = (f: GroupFacts): boolean => !!(f.accountRoot?.linked || (f.company && f.company.accountLinked));

/** Why the group may not be renamed, moved or given subgroups, or undefined when it may. */
export function refuseStructureChange(f: GroupFacts, groupPath: string): Refusal | undefined {
  if (linkedNow(f)) {
    return { code: 'GROUP_SYNCED', message: `"${groupPath}" is synced from the MSP portal; change it there (it is read-only here while the account is linked)` };
  }
  return undefined;
}

/** Why the group may not be deleted (beyond being empty), or undefined when it may. */
export function refuseDelete(f: GroupFacts, groupPath: string): Refusal | undefined {
  if (f.accountRoot) return { code: 'GROUP_ACCOUNT_ROOT', message: `"${groupPath}" is an MSP account's root group and is never deleted` };
  if (f.company && f.company.accountLinked && f.company.present) {
    return { code: 'GROUP_SYNCED', message: `"${groupPath}" is synced from the MSP portal; it can be deleted only after it is unlinked there, and when empty` };
  }
  return undefined;
}

/** Why computers may not be placed in the group, or undefined when they may. */
export function refuseDevices(f: GroupFacts, groupPath: string): Refusal | undefined {
  if (f.accountRoot) return { code: 'GROUP_CANNOT_HOLD_DEVICES', message: `"${groupPath}" is an MSP account's root group; computers belong in a customer's group` };
  if (f.company && f.company.type !== EntityType.CUSTOMER) {
    return { code: 'GROUP_CANNOT_HOLD_DEVICES', message: `"${groupPath}" is an MSP-level group; computers belong in a customer's group` };
  }
  if (f.company && (!f.company.present || !f.company.accountLinked)) {
    const why = f.company.accountLinked ? 'it was removed from the MSP portal' : 'its MSP account was unlinked';
    return { code: 'GROUP_UNLINKED', message: `customer "${f.company.name}" is unlinked (${why})` };
  }
  return undefined;
}
