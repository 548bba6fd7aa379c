/**
 * Group changes made by admins, with the MSP rules applied (see
 * msp/group-policy.ts): every console route and the enrollment path go
 * through here, so a synced group is protected wherever a change comes from.
 */
import { RollcallError } from '../common/errors.js';
import { refuseDelete, refuseDevices, refuseStructureChange, type GroupFacts, type Refusal } from './msp/group-policy.js';
import type { Storage } from './storage/index.js';
import type { GroupWithPath } from './storage/groups-store.js';

function fail(r: Refusal): never {
  throw new RollcallError(r.code, r.message);
}

/** Applies admin group changes under the MSP rules. */
export class GroupAdmin {
  constructor(private readonly storage: Pick<Storage, 'db' | 'groups' | 'msp'>) {}

  /** Looks up what the policy needs about a group. */
  async facts(group: GroupWithPath): Promise<GroupFacts> {
    const accounts = await this.storage.msp.accounts();
    const root = accounts.find((a) => a.rootGroupId === group.id);
    if (root) return { builtin: false, accountRoot: { linked: root.linked, name: root.name } };
    const company = await this.storage.msp.companyOfGroup(group.id);
    if (company) {
      const account = accounts.find((a) => a.id === company.accountId);
      return {
        builtin: false,
        company: { type: company.type, present: company.present, accountLinked: account?.linked ?? false, name: company.upstreamName },
      };
    }
    return { builtin: group.kind !== 'static' };
  }

  /** Creates a group by path; refused inside a linked synced subtree. */
  async create(path: string): Promise<GroupWithPath> {
    const parts = path.trim().replace(/^\/+|\/+$/g, '').split('/').filter(Boolean);
    if (parts[0] === 'All') parts.shift();
    // The deepest existing ancestor decides.
    for (let i = parts.length - 1; i >= 0; i -= 1) {
      const existing = await this.storage.groups.resolve(parts.slice(0, i + 1).join('/')).catch((err: unknown) => {
        if (err instanceof RollcallError && err.code === 'GROUP_NOT_FOUND') return undefined;
        throw err;
      });
      if (!existing) continue;
      if (i < parts.length - 1) {
        const refusal = refuseStructureChange(await this.facts(existing), existing.path);
        if (refusal) fail(refusal);
      }
      break;
    }
    return this.storage.groups.ensurePath(path);
  }

  /** Renames a group. */
  async rename(idOrPath: string, name: string): Promise<GroupWithPath> {
    const g = await this.storage.groups.resolve(idOrPath);
    const refusal = refuseStructureChange(await this.facts(g), g.path);
    if (refusal) fail(refusal);
    return this.storage.groups.rename(g.id, name);
  }

  /** Moves a group under another. */
  async move(idOrPath: string, parentIdOrPath: string): Promise<GroupWithPath> {
    const g = await this.storage.groups.resolve(idOrPath);
    const parent = await this.storage.groups.resolve(parentIdOrPath);
    for (const target of [g, parent]) {
      const refusal = refuseStructureChange(await this.facts(target), target.path);
      if (refusal) fail(refusal);
    }
    return this.storage.groups.move(g.id, parent.id);
  }

  /** Deletes an empty group, forgetting its synced company if it was unlinked. */
  async delete(idOrPath: string): Promise<GroupWithPath> {
    const g = await this.storage.groups.resolve(idOrPath);
    const facts = await this.facts(g);
    const refusal = refuseDelete(facts, g.path);
    if (refusal) fail(refusal);
    if (facts.company) {
      await this.storage.db.transaction(async (tx) => {
        const child = await tx.get('SELECT 1 FROM groups WHERE parent_id = ? LIMIT 1', [g.id]);
        const device = await tx.get('SELECT 1 FROM devices WHERE group_id = ? LIMIT 1', [g.id]);
        if (child || device) throw new RollcallError('GROUP_NOT_EMPTY', `"${g.path}" still holds groups or devices`);
        await this.storage.msp.forgetCompany(g.id, tx);
        await tx.run('DELETE FROM groups WHERE id = ?', [g.id]);
      });
    } else {
      await this.storage.groups.delete(g.id);
    }
    return g;
  }

  /** Throws when computers may not be placed in the group. */
  async assertCanHoldDevices(group: GroupWithPath): Promise<void> {
    const refusal = refuseDevices(await this.facts(group), group.path);
    if (refusal) fail(refusal);
  }

  /** Why an enrolling computer cannot go into the group (it then goes to Lost & found), or null. */
  async placementProblem(group: GroupWithPath): Promise<string | null> {
    return refuseDevices(await this.facts(group), group.path)?.message ?? null;
  }
}
