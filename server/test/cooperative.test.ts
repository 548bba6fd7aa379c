import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { runAll, runSliced, type Steps } from '../cooperative.js';
import { planSync, planSyncSliced } from '../msp/plan.js';
import { EntityType, validateTree, validateTreeSliced, type PortalCompany, type PortalTree } from '../msp/tree.js';

/** Each step spins for `spinMs` of real time, so every step outlasts a small budget. */
function* spinning(steps: number, spinMs: number, log: string[]): Steps<number> {
  for (let i = 0; i < steps; i += 1) {
    const until = performance.now() + spinMs;
    while (performance.now() < until);
    log.push(`step ${i}`);
    yield;
  }
  return steps;
}

function bigTree(customers: number): PortalTree {
  const account: PortalCompany = { id: 'acct', name: 'Northwind', type: EntityType.MSP_MANAGER, parentId: null, status: 'Active', email: null };
  const companies: PortalCompany[] = [];
  for (let m = 0; m < 5; m += 1) companies.push({ id: `m${m}`, name: `MSP ${m}`, type: EntityType.MANAGED_MSP, parentId: 'acct', status: 'Active', email: null });
  // Customers first, their MSPs last: validation must still order parents before children.
  for (let c = 0; c < customers; c += 1) companies.unshift({ id: `c${c}`, name: `Customer ${c % 50}`, type: EntityType.CUSTOMER, parentId: `m${c % 5}`, status: 'Active', email: null });
  return { account, companies };
}

describe('work in slices', () => {
  it('runs to the same result straight through or in slices', async () => {
    expect(runAll(spinning(3, 0, []))).toBe(3);
    expect(await runSliced(spinning(3, 0, []))).toBe(3);
    expect(await runSliced(spinning(3, 0, []), { budgetMs: 0, restRatio: 1 })).toBe(3);
  });

  it('lets the event loop run between slices once a slice has used its budget, and not when run straight through', async () => {
    const log: string[] = [];
    setImmediate(() => log.push('event loop'));
    runAll(spinning(3, 1, log));
    expect(log).toEqual(['step 0', 'step 1', 'step 2']);
    await new Promise((r) => setImmediate(r));

    const sliced: string[] = [];
    setImmediate(() => sliced.push('event loop'));
    await runSliced(spinning(3, 2, sliced), { budgetMs: 1, restRatio: 0 });
    expect(sliced.indexOf('event loop')).toBeGreaterThan(0);
    expect(sliced.indexOf('event loop')).toBeLessThan(sliced.length - 1); // in between the steps, not after them all
  });

  it('validates and plans a large tree identically in slices, parents before children, duplicates named apart', async () => {
    const tree = bigTree(3000);
    const straight = validateTree(tree);
    const sliced = await validateTreeSliced(tree);
    expect(sliced).toEqual(straight);
    expect(straight.companies.slice(0, 5).map((c) => c.id)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    const plan = planSync(straight, [], 'grp_root');
    expect(await planSyncSliced(straight, [], 'grp_root')).toEqual(plan);
    expect(plan.counts.added).toBe(3005);
    expect(new Set(plan.creates.map((c) => `${c.parentExternalId}/${c.name}`)).size).toBe(3005);
  });

  it('refuses a bad tree with the same error in slices', async () => {
    const tree = bigTree(1000);
    const bad = { ...tree, companies: [...tree.companies, { ...tree.companies[0]! }] };
    expect(() => validateTree(bad)).toThrow(/appears twice/);
    await expect(validateTreeSliced(bad)).rejects.toMatchObject({ code: 'SYNC_INVALID_TREE', message: expect.stringMatching(/appears twice/) });
  });
});
