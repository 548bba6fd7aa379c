import { describe, expect, it } from 'vitest';
import { RollcallError } from '../../common/errors.js';
import { assertSeesDevice, assertSeesGroup, scopeFor, subtreeIds, visibleGroups } from '../console/scope.js';

const groups = [
  { id: 'grp_all', parentId: null },
  { id: 'grp_lost_found', parentId: 'grp_all' },
  { id: 'grp_msp', parentId: 'grp_all' },
  { id: 'grp_acme', parentId: 'grp_msp' },
  { id: 'grp_acme_office', parentId: 'grp_acme' },
  { id: 'grp_beta', parentId: 'grp_msp' },
];

describe('scope', () => {
  it('gives an admin every group', () => {
    const s = scopeFor({ role: 'admin', homeGroupId: null }, groups);
    expect(s.admin).toBe(true);
    expect(s.groupIds).toBeNull();
    expect(visibleGroups(s, groups)).toHaveLength(groups.length);
  });

  it("gives a customer admin its home group's subtree and nothing beside or above it", () => {
    const s = scopeFor({ role: 'customer_admin', homeGroupId: 'grp_acme' }, groups);
    expect([...s.groupIds!].sort()).toEqual(['grp_acme', 'grp_acme_office']);
    for (const id of ['grp_all', 'grp_msp', 'grp_beta', 'grp_lost_found', null, undefined, '']) expect(s.sees(id)).toBe(false);
    expect(() => assertSeesGroup(s, { id: 'grp_beta' }, 'Beta')).toThrow(RollcallError);
    expect(() => assertSeesDevice(s, { id: 'dev_1', groupId: 'grp_beta' })).toThrow(/no device "dev_1"/);
    expect(() => assertSeesDevice(s, { id: 'dev_2', groupId: 'grp_acme_office' })).not.toThrow();
  });

  it('scopes an admin-role principal that carries a home group (a group API token) like a customer admin', () => {
    expect(scopeFor({ role: 'admin', homeGroupId: 'grp_beta' }, groups).sees('grp_acme')).toBe(false);
  });

  it('shows nothing when the home group is gone or missing, and survives a cycle in the parent links', () => {
    expect(scopeFor({ role: 'customer_admin', homeGroupId: 'grp_deleted' }, groups).groupIds!.size).toBe(0);
    expect(scopeFor({ role: 'customer_admin', homeGroupId: null }, groups).groupIds!.size).toBe(0);
    expect(subtreeIds([{ id: 'a', parentId: 'b' }, { id: 'b', parentId: 'a' }], 'a').length).toBeLessThanOrEqual(2);
  });
});
