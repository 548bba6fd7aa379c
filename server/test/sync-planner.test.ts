import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildPortalTree, FAKE_USER, startFakePortal } from '../../test/support/fake-portal.js';
import { captureLogger, Harness } from '../../test/support/harness.js';
import { fetchAndPlanInWorker } from '../msp/planning-workers.js';
import { fetchPortalTree } from '../msp/portal-api.js';
import { loadSecretBox } from '../msp/secret-box.js';
import { MspSync, type FetchPlanner } from '../msp/sync-service.js';
import { inProcessPlanner, type PlannedSync, type TreePlanner } from '../msp/sync-planner.js';
import { validateTree, type PortalCompany, type PortalTree } from '../msp/tree.js';
import { openStorage } from '../storage/index.js';

const h = new Harness();
afterEach(() => h.cleanup());

/** A storage with an account linked from `first`, and a sync service whose next tree is `next.tree`. */
async function linkedStore(first: PortalTree) {
  const dir = await h.tempDir();
  const dbFile = path.join(dir, 'rollcall.db');
  const storage = await openStorage(dbFile, { synchronous: 'NORMAL' });
  h.defer(() => storage.db.close());
  const next = { tree: first };
  const { log, lines } = captureLogger();
  const deps = { storage, fetchTree: async () => next.tree, secrets: await loadSecretBox(path.join(dir, 'secret.key')), now: Date.now, log, syncIntervalMs: 86_400_000 };
  const msp = new MspSync(deps);
  const { account } = await msp.link({ kind: 'file', path: 'unused' });
  return { dbFile, storage, next, msp, account, deps, lines };
}

async function portalFor(tree: PortalTree) {
  const portal = await startFakePortal({ tree });
  h.defer(() => portal.close());
  return { baseUrl: portal.url, ...FAKE_USER, maintenance: { attempts: 2, baseMs: 5, capMs: 20 }, requestTimeoutMs: 5_000, deadlineMs: 20_000 };
}

/** The plan with its parents as a map (the worker sends only the parents the plan needs; in process they are all stored companies). */
function comparable(p: PlannedSync) {
  const parents = new Map([...p.parents].map((s) => [s.externalId, s.groupId]));
  const { counts, creates, groupChanges, companyUpdates, unlinks } = p.plan;
  const plan = { counts, creates: [...creates], groupChanges: [...groupChanges], companyUpdates: [...companyUpdates], unlinks: [...unlinks] };
  const needed = [...plan.creates.map((c) => c.parentExternalId), ...plan.groupChanges.map((c) => c.parentExternalId)];
  return { plan, rootRenamed: p.rootRenamed, parentGroups: [...new Set(needed)].sort().map((id) => [id, parents.get(id) ?? null]) };
}

const edit = (c: PortalCompany, change: Partial<PortalCompany>): PortalCompany => ({ ...c, ...change });

/** A tree that changes the base in every way a sync knows, from its first state `base` and what is stored after `removed` went away. */
function changedTree(base: PortalTree): PortalTree {
  const companies = base.companies.map((c) => {
    if (c.id === 'cust-000001') return edit(c, { name: 'Renamed Customer' });
    if (c.id === 'cust-000002') return edit(c, { parentId: 'msp-0003' }); // moved
    if (c.id === 'cust-000004') return edit(c, { status: 'Suspended', email: 'new@x.example' });
    if (c.id === 'cust-000005') return edit(c, { name: 'Customer 8' }); // clashes with a sibling's name
    return c;
  });
  companies.push({ id: 'cust-new-1', name: 'Brand New', type: 1007, parentId: 'msp-0002', status: 'Active', email: null });
  return { account: edit(base.account, { name: 'Northwind Renamed' }), companies: companies.filter((c) => c.id !== 'cust-000006') }; // 6 unlinked
}

describe('planning a sync in the fetch worker', () => {
  it('plans exactly as the event loop does, for adds, renames, moves, unlinks, relinks, status changes and a root rename', async () => {
    const base = buildPortalTree({ managedMsps: 3, customers: 40 });
    const withoutSome: PortalTree = { account: base.account, companies: base.companies.filter((c) => c.id !== 'cust-000003' && c.id !== 'cust-000007') };
    const { dbFile, storage, next, msp, account } = await linkedStore(base);
    next.tree = withoutSome;
    expect(await msp.sync(account.id, 'manual')).toMatchObject({ outcome: 'succeeded', unlinked: 2 });
    const target = { accountId: account.id, rootGroupId: account.rootGroupId };
    // Back come 3 and 7 (relinks), with every other kind of change.
    const changed = changedTree(base);
    const options = await portalFor(changed);
    const here = inProcessPlanner(validateTree(await fetchPortalTree(options)));
    const worker = await fetchAndPlanInWorker({ ...options, dbFile });
    try {
      expect(worker.account).toEqual(here.account);
      expect(worker.fetched).toBe(here.fetched);
      const [lookHere, lookThere] = [await here.look(target, storage.db), await worker.look(target, storage.db)];
      expect(lookThere).toEqual(lookHere);
      expect(lookThere.changes).toBe(true);
      const [planHere, planThere] = [await here.plan(target, storage.db), await worker.plan(target, storage.db)];
      expect(comparable(planThere)).toEqual(comparable(planHere));
      expect(planThere.rootRenamed).toBe(true);
      expect(planThere.plan.counts).toMatchObject({ added: 1, relinked: 2, unlinked: 1, moved: 1 });
      expect(planThere.plan.counts.renamed).toBeGreaterThanOrEqual(2);
      expect(planThere.parents.length).toBeLessThan(planHere.parents.length); // only what the apply needs crosses
    } finally {
      worker.close();
    }
  });

  it('reads the stored companies page by page, resting between pages, and still compares every one of them', async () => {
    // 603 stored companies: three pages of reads, each followed by a rest; one change on the last page.
    const base = buildPortalTree({ managedMsps: 3, customers: 600 });
    const { dbFile, storage, account } = await linkedStore(base);
    const last = base.companies[base.companies.length - 1]!;
    const changed: PortalTree = { account: base.account, companies: base.companies.map((c) => (c.id === last.id ? edit(c, { name: 'Renamed Last' }) : c)) };
    const target = { accountId: account.id, rootGroupId: account.rootGroupId };
    for (const [tree, changes] of [[base, false], [changed, true]] as const) {
      const worker = await fetchAndPlanInWorker({ ...(await portalFor(tree)), dbFile });
      try {
        const look = await worker.look(target, storage.db);
        expect(look.changes).toBe(changes);
        expect(look.counts.renamed).toBe(changes ? 1 : 0);
      } finally {
        worker.close();
      }
    }
  });

  it('says a tree that matches what is stored changes nothing, and sends no plan for it', async () => {
    const base = buildPortalTree({ managedMsps: 2, customers: 30 });
    const { dbFile, storage, account } = await linkedStore(base);
    const worker = await fetchAndPlanInWorker({ ...(await portalFor(base)), dbFile });
    try {
      expect(await worker.look({ accountId: account.id, rootGroupId: account.rootGroupId }, storage.db)).toEqual({
        changes: false,
        counts: { added: 0, renamed: 0, moved: 0, unlinked: 0, relinked: 0, updated: 0 },
      });
    } finally {
      worker.close();
    }
  });

  it('applies a plan made from the state it changes when the stored tree changed after the first look', async () => {
    const base = buildPortalTree({ managedMsps: 3, customers: 40 });
    const { dbFile, storage, account, deps } = await linkedStore(base);
    const changed = changedTree(base);
    const options = await portalFor(changed);
    const groupOf = async (externalId: string) =>
      (await storage.db.get<{ id: string; name: string; parent_id: string }>(
        'SELECT g.id, g.name, g.parent_id FROM groups g JOIN msp_companies c ON c.group_id = g.id WHERE c.external_id = ?',
        [externalId],
      ))!;
    const renamedByAdmin = await groupOf('cust-000010');
    // Between the worker's first look and the apply, an admin renames a synced group and another is forgotten.
    const meddling: FetchPlanner = async () => {
      const worker = await fetchAndPlanInWorker({ ...options, dbFile });
      return {
        ...worker,
        account: worker.account,
        fetched: worker.fetched,
        look: async (target, sql) => {
          const look = await worker.look(target, sql);
          await storage.db.run("UPDATE groups SET name = 'Changed by an admin' WHERE id = ?", [renamedByAdmin.id]);
          return look;
        },
      } satisfies TreePlanner;
    };
    const msp = new MspSync({ ...deps, fetchPlanner: meddling });
    const run = await msp.sync(account.id, 'manual');
    expect(run).toMatchObject({ outcome: 'succeeded', added: 1, unlinked: 1, moved: 1, relinked: 0 });
    // The rename made after the look was seen by the plan that was applied: the group has its portal name back.
    expect((await groupOf('cust-000010')).name).toBe('Customer 10');
    expect((await groupOf('cust-000001')).name).toBe('Renamed Customer');
    expect((await groupOf('cust-000002')).parent_id).toBe((await groupOf('msp-0003')).id);
    // And the same tree again changes nothing.
    const again = await new MspSync({ ...deps, fetchPlanner: async () => fetchAndPlanInWorker({ ...options, dbFile }) }).sync(account.id, 'manual');
    expect(again).toMatchObject({ outcome: 'succeeded', added: 0, renamed: 0, moved: 0, unlinked: 0, relinked: 0, updated: 0 });
  });

  it('fails the sync with the worker’s error and changes nothing when the stored data cannot be read', async () => {
    const base = buildPortalTree({ managedMsps: 2, customers: 10 });
    const { storage, account, deps } = await linkedStore(base);
    const options = await portalFor(changedTree(base));
    const before = await storage.db.all('SELECT * FROM groups ORDER BY id');
    const missing = path.join(await h.tempDir(), 'no-such.db');
    const msp = new MspSync({ ...deps, fetchPlanner: async () => fetchAndPlanInWorker({ ...options, dbFile: missing }) });
    const run = await msp.sync(account.id, 'manual');
    expect(run).toMatchObject({ outcome: 'failed', errorCode: 'STORAGE_ERROR' });
    expect(run.reason).toContain('read-only');
    expect(await storage.db.all('SELECT * FROM groups ORDER BY id')).toEqual(before);
  });

  it('closing the planner while it plans fails that request and lets the worker end by itself', async () => {
    const base = buildPortalTree({ managedMsps: 2, customers: 30 });
    const { dbFile, storage, account } = await linkedStore(base);
    const target = { accountId: account.id, rootGroupId: account.rootGroupId };
    const worker = await fetchAndPlanInWorker({ ...(await portalFor(changedTree(base))), dbFile });
    const asked = worker.plan(target, storage.db);
    worker.close();
    await expect(asked).rejects.toMatchObject({ code: 'SYNC_FETCH_WORKER_FAILED' });
    await expect(worker.look(target, storage.db)).rejects.toMatchObject({ code: 'SYNC_FETCH_WORKER_FAILED' });
    // The database is untouched and still readable by a new worker.
    const again = await fetchAndPlanInWorker({ ...(await portalFor(base)), dbFile });
    try {
      expect((await again.look(target, storage.db)).changes).toBe(false);
    } finally {
      again.close();
    }
  });
});
