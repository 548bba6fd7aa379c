import { describe, expect, it } from 'vitest';
import { adminUserName } from '../msp/customers.js';
import { planSync, type StoredCompany } from '../msp/plan.js';
import { validateTree, type PortalCompany, type PortalTree } from '../msp/tree.js';

const account: PortalCompany = { id: 'A', name: 'Manager', type: 1004, parentId: null, status: 'Active', email: null };
const co = (id: string, parentId: string, type = 1007, name = `Co ${id}`, status = 'Active'): PortalCompany => ({ id, name, type, parentId, status, email: null });
const tree = (...companies: PortalCompany[]): PortalTree => validateTree({ account, companies });

/** Stores a tree as the applier would, with group ids g:<id> and the root as g:A. */
function stored(t: PortalTree, overrides: Partial<Record<string, Partial<StoredCompany>>> = {}): StoredCompany[] {
  return t.companies.map((c) => ({
    groupId: `g:${c.id}`,
    externalId: c.id,
    type: c.type,
    upstreamName: c.name,
    status: c.status,
    email: c.email,
    present: true,
    groupName: c.name,
    parentGroupId: `g:${c.parentId}`,
    ...overrides[c.id],
  }));
}

describe('tree validation', () => {
  const bad = (companies: PortalCompany[], acct: PortalCompany = account) => () => validateTree({ account: acct, companies });

  it('refuses duplicate ids, orphans, cycles and absurd depth with a clear reason', () => {
    expect(bad([co('1', 'A'), co('1', 'A')])).toThrow(/company id 1 appears twice/);
    expect(bad([co('1', 'nowhere')])).toThrow(/names a parent nowhere that is not in the structure/);
    expect(bad([co('1', '2', 1005), co('2', '1', 1005)])).toThrow(/form a cycle/);
    const deep = Array.from({ length: 30 }, (_, i) => co(`m${i}`, i === 0 ? 'A' : `m${i - 1}`, 1006));
    expect(bad(deep)).toThrow(/nested \d+ levels deep/);
  });

  it('refuses names with control characters, huge names and a distributor as the account', () => {
    expect(bad([co('1', 'A', 1007, 'bad\u0007name')])).toThrow(/control characters/);
    expect(bad([co('1', 'A', 1007, 'x'.repeat(10_000))])).toThrow(/10000 characters long/);
    expect(bad([], { ...account, type: 1002 })).toThrow(/Distributor/);
    expect(bad([co('1', 'A', 1007, '   ')])).toThrow(/missing or empty/);
  });

  it('drops types that are never imported and anything below a customer, sorting parents first', () => {
    const t = tree(co('c2', 'm1'), co('m1', 'A', 1006), co('x', 'A', 1003), co('under-x', 'x'), co('under-c', 'c2'));
    expect(t.companies.map((c) => c.id)).toEqual(['m1', 'c2']);
  });
});

describe('sync plan', () => {
  const base = tree(co('m1', 'A', 1006, 'Managed 1'), co('c1', 'm1', 1007, 'Acme'), co('c2', 'm1', 1007, 'Beta'));

  it('creates every company on the first sync, parents before children', () => {
    const p = planSync(base, [], 'g:A');
    expect(p.creates.map((c) => [c.externalId, c.parentExternalId, c.name])).toEqual([
      ['m1', 'A', 'Managed 1'],
      ['c1', 'm1', 'Acme'],
      ['c2', 'm1', 'Beta'],
    ]);
    expect(p.counts).toEqual({ added: 3, renamed: 0, moved: 0, unlinked: 0, relinked: 0, updated: 0 });
  });

  it('plans nothing when nothing changed upstream', () => {
    const p = planSync(base, stored(base), 'g:A');
    expect(p.creates.length + p.groupChanges.length + p.companyUpdates.length + p.unlinks.length).toBe(0);
  });

  it('renames, moves, unlinks, relinks and records status changes', () => {
    const before = tree(co('m1', 'A', 1006), co('m2', 'A', 1006), co('c1', 'm1', 1007, 'Acme'), co('c2', 'm1'), co('c3', 'm1'));
    const after = tree(co('m1', 'A', 1006), co('m2', 'A', 1006), co('c1', 'm2', 1007, 'Acme Ltd'), co('c2', 'm1', 1007, 'Co c2', 'Suspended'), co('c4', 'm1'));
    const st = stored(before, { c3: { present: true } });
    st.push({ ...st.find((s) => s.externalId === 'c1')!, externalId: 'c9', groupId: 'g:c9', groupName: 'Gone', upstreamName: 'Gone', present: false });
    const after2 = tree(...after.companies, co('c9', 'm1', 1007, 'Gone'));
    const p = planSync(after2, st, 'g:A');
    expect(p.groupChanges).toEqual([{ groupId: 'g:c1', name: 'Acme Ltd', parentExternalId: 'm2', renamed: true, moved: true }]);
    expect(p.unlinks).toEqual(['g:c3']);
    expect(p.creates.map((c) => c.externalId)).toEqual(['c4']);
    expect(p.companyUpdates.map((u) => [u.groupId, u.relink, u.company.status])).toEqual([
      ['g:c1', false, 'Active'],
      ['g:c2', false, 'Suspended'],
      ['g:c9', true, 'Active'],
    ]);
    expect(p.counts).toEqual({ added: 1, renamed: 1, moved: 1, unlinked: 1, relinked: 1, updated: 1 });
  });

  it('keeps sibling names distinct: a new company with a taken name gets its id appended', () => {
    const st = stored(base, { c1: { present: true } });
    const withTwin = tree(...base.companies, co('c7', 'm1', 1007, 'Acme'));
    const p = planSync(withTwin, st, 'g:A');
    expect(p.creates).toEqual([expect.objectContaining({ externalId: 'c7', name: 'Acme (c7)' })]);
    const gone = planSync(tree(base.companies[0]!, base.companies[2]!, co('c8', 'm1', 1007, 'Acme')), st, 'g:A');
    expect(gone.unlinks).toEqual(['g:c1']);
    expect(gone.creates).toEqual([expect.objectContaining({ externalId: 'c8', name: 'Acme (c8)' })]);
  });

  it('swaps two names without a collision in the plan', () => {
    const swapped = tree(co('m1', 'A', 1006, 'Managed 1'), co('c1', 'm1', 1007, 'Beta'), co('c2', 'm1', 1007, 'Acme'));
    const p = planSync(swapped, stored(base), 'g:A');
    expect(p.groupChanges.map((c) => [c.groupId, c.name])).toEqual([
      ['g:c1', 'Beta'],
      ['g:c2', 'Acme'],
    ]);
  });
});

describe('admin user names', () => {
  it('keep the letters of accented customer names and fall back for names without any', () => {
    expect(adminUserName('Müller & Söhne GmbH')).toBe('muller-sohne-gmbh-admin');
    expect(adminUserName('Crème Brûlée Café')).toBe('creme-brulee-cafe-admin');
    expect(adminUserName('日本')).toBe('customer-admin');
  });
});
