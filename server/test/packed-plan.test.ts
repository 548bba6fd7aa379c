import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildPortalTree } from '../../test/support/fake-portal.js';
import { captureLogger, Harness } from '../../test/support/harness.js';
import { packItems, packPlan, type PlanChunks } from '../msp/fetch-worker-protocol.js';
import { packedList, packedPlan } from '../msp/packed-plan.js';
import { createdParents, type PlanList } from '../msp/plan.js';
import { loadSecretBox } from '../msp/secret-box.js';
import { MspSync } from '../msp/sync-service.js';
import { inProcessPlanner, parentsOf, planAgainstStore, type TreePlanner } from '../msp/sync-planner.js';
import type { PortalTree } from '../msp/tree.js';
import { openStorage, type Storage } from '../storage/index.js';

const h = new Harness();
afterEach(() => h.cleanup());

/** Plans in process, then packs the plan in chunks of `perChunk` as a worker would, lets `spoil` change it, and hands it over packed. */
function packingPlanner(tree: PortalTree, perChunk: number, spoil?: (p: PlanChunks) => void, read = { creates: 0 }): TreePlanner {
  const here = inProcessPlanner(tree);
  return {
    ...here,
    plan: async (target, sql) => {
      const p = await planAgainstStore(tree, target, sql, true);
      const { plan } = packPlan(p.plan, p.rootRenamed, parentsOf(p.plan, p.stored), perChunk);
      spoil?.(plan);
      const packed = packedPlan(plan);
      const creates = packed.plan.creates;
      const counted: PlanList<(typeof creates extends PlanList<infer T> ? T : never)> = {
        length: creates.length,
        *[Symbol.iterator]() {
          for (const c of creates) {
            read.creates += 1;
            yield c;
          }
        },
      };
      return { ...packed, plan: { ...packed.plan, creates: counted } };
    },
  };
}

/** A storage whose sync service plans with `planner.make(tree)`, the tree being `next.tree`. */
async function syncedStore(first: PortalTree, make: (tree: PortalTree) => TreePlanner) {
  const dir = await h.tempDir();
  const storage = await openStorage(path.join(dir, 'rollcall.db'), { synchronous: 'NORMAL' });
  h.defer(() => storage.db.close());
  const next = { tree: first, make };
  const { log, lines } = captureLogger();
  const deps = {
    storage,
    fetchTree: async () => next.tree,
    fetchPlanner: async () => next.make(next.tree),
    secrets: await loadSecretBox(path.join(dir, 'secret.key')),
    now: Date.now,
    log,
    syncIntervalMs: 86_400_000,
  };
  const msp = new MspSync(deps);
  const { account, run } = await msp.link({ kind: 'file', path: 'unused' });
  return { storage, next, msp, account, run, lines };
}

/** The synced tree as portal ids: each company's group name, parent company and presence. */
async function treeOf(storage: Storage): Promise<unknown[]> {
  return storage.db.all(
    `SELECT c.external_id AS id, g.name, p.external_id AS parent, c.present, c.upstream_status AS status, c.email
     FROM msp_companies c JOIN groups g ON g.id = c.group_id LEFT JOIN msp_companies p ON p.group_id = g.parent_id ORDER BY c.external_id`,
  );
}

async function dump(storage: Storage): Promise<string> {
  return JSON.stringify([await storage.db.all('SELECT * FROM groups ORDER BY id'), await storage.db.all('SELECT * FROM msp_companies ORDER BY group_id')]);
}

/** The base tree with a rename, a move, a status change, one company gone and two new ones. */
function changed(base: PortalTree): PortalTree {
  const companies = base.companies
    .filter((c) => c.id !== 'cust-000006')
    .map((c) => (c.id === 'cust-000001' ? { ...c, name: 'Renamed' } : c.id === 'cust-000002' ? { ...c, parentId: 'msp-0003' } : c.id === 'cust-000004' ? { ...c, status: 'Suspended' } : c));
  companies.push({ id: 'msp-new', name: 'New MSP', type: 1004, parentId: base.account.id, status: 'Active', email: null });
  companies.push({ id: 'cust-new', name: 'New Customer', type: 1007, parentId: 'msp-new', status: 'Active', email: 'it@new.example' });
  return { account: base.account, companies };
}

describe('a sync plan kept packed and decoded as it is applied', () => {
  it('reads each list back whole, in order, at any chunk size, as often as it is iterated', () => {
    const items = Array.from({ length: 23 }, (_, i) => ({ externalId: `c-${i}`, groupId: `grp_${i}`, name: i % 2 ? `Kunde ${i} – Müller 株式会社` : `C ${i}` }));
    for (const perChunk of [1, 2, 7, 22, 23, 24, 250]) {
      const list = packedList<(typeof items)[number]>(packItems(items, perChunk), 'parents');
      expect(list.length).toBe(23);
      expect([...list]).toEqual(items);
      expect([...list]).toEqual(items);
    }
    expect([...packedList(packItems([], 7), 'unlinks')]).toEqual([]);
  });

  it('remembers only the new groups that are parents of other new or moved groups', () => {
    const tree = buildPortalTree({ managedMsps: 3, customers: 12 });
    const creates = tree.companies.map((c) => ({ externalId: c.id, parentExternalId: c.parentId!, name: c.name, company: c }));
    expect(createdParents({ creates, groupChanges: [] }).sort()).toEqual(tree.companies.filter((c) => tree.companies.some((d) => d.parentId === c.id)).map((c) => c.id).sort());
    expect(createdParents({ creates, groupChanges: [{ groupId: 'g', name: 'x', parentExternalId: 'cust-000001', renamed: false, moved: true }] })).toContain('cust-000001');
  });

  it('writes the same tree as the plan in arrays, for a first sync and a re-sync with every kind of change, at chunk sizes that cut statements anywhere', async () => {
    const base = buildPortalTree({ managedMsps: 3, customers: 230 });
    const inArrays = await syncedStore(base, inProcessPlanner);
    expect(inArrays.run).toMatchObject({ outcome: 'succeeded', added: 233 });
    inArrays.next.tree = changed(base);
    expect(await inArrays.msp.sync(inArrays.account.id, 'manual')).toMatchObject({ outcome: 'succeeded', added: 2, unlinked: 1, moved: 1 });
    const expected = await treeOf(inArrays.storage);
    for (const perChunk of [1, 7, 99, 101]) {
      const packed = await syncedStore(base, (tree) => packingPlanner(tree, perChunk));
      expect(packed.run).toMatchObject({ outcome: 'succeeded', added: 233 });
      packed.next.tree = changed(base);
      expect(await packed.msp.sync(packed.account.id, 'manual')).toMatchObject({ outcome: 'succeeded', added: 2, unlinked: 1, moved: 1 });
      expect(await treeOf(packed.storage)).toEqual(expected);
    }
  });

  const spoilers: [string, (p: PlanChunks) => void, RegExp, boolean][] = [
    ['a chunk that is not JSON', (p) => void (new Uint8Array(p.creates.bytes)[p.creates.ends[39]!] = 0x7b), /new groups, chunk 41 of 45: /, true],
    ['a chunk that is not UTF-8', (p) => void (new Uint8Array(p.creates.bytes)[p.creates.ends[39]! + 3] = 0xff), /new groups, chunk 41 of 45: /, true],
    ['a chunk that holds an object, not a list', (p) => spliceChunk(p, 40, '{"a":1}'), /new groups, chunk 41 of 45: not a list/, true],
    ['chunks that hold fewer items than the list says', (p) => void ((p.creates as { count: number }).count += 1), /new groups: 311 items in chunks said to hold 312/, true],
    ['chunks that hold more items than the list says', (p) => void ((p.creates as { count: number }).count -= 1), /new groups, chunk 45 of 45: more than the 310 items/, true],
    ['chunk ends past the buffer', (p) => void (p.creates.ends as number[]).push(p.creates.bytes.byteLength + 5), /new groups: chunks cover/, false],
  ];

  it.each(spoilers)('rolls the whole sync back on %s, with a clear error and log line, and the next sync works', async (_what, spoil, reason, midApply) => {
    const small = buildPortalTree({ managedMsps: 2, customers: 10 });
    const large = buildPortalTree({ managedMsps: 3, customers: 320 });
    const read = { creates: 0 };
    const s = await syncedStore(small, inProcessPlanner);
    const before = await dump(s.storage);
    s.next.tree = large;
    s.next.make = (tree) => packingPlanner(tree, 7, spoil, read);
    const run = await s.msp.sync(s.account.id, 'manual');
    expect(run).toMatchObject({ outcome: 'failed', errorCode: 'SYNC_FETCH_WORKER_FAILED', added: 0 });
    expect(run.reason).toMatch(/^the MSP sync plan from the worker thread cannot be read: /);
    expect(run.reason).toMatch(reason);
    // Mid-apply: more than a statement's worth of new groups had been written before the bad chunk.
    expect(read.creates > 100).toBe(midApply);
    expect(await dump(s.storage)).toBe(before);
    const line = s.lines.find((l) => l.msg === 'MSP sync failed; the previous tree stays in force');
    expect(line).toMatchObject({ code: 'SYNC_FETCH_WORKER_FAILED' });
    expect(String(line!.reason)).toMatch(reason);
    s.next.make = (tree) => packingPlanner(tree, 7);
    expect(await s.msp.sync(s.account.id, 'manual')).toMatchObject({ outcome: 'succeeded', added: 311 });
  });
});

/** Replaces chunk `i` of the new groups with `json`, keeping the layout consistent. */
function spliceChunk(p: PlanChunks, i: number, json: string): void {
  const bytes = new Uint8Array(p.creates.bytes);
  const from = i === 0 ? 0 : p.creates.ends[i - 1]!;
  const to = p.creates.ends[i]!;
  const replacement = Buffer.from(json, 'utf8');
  const out = new Uint8Array(bytes.length - (to - from) + replacement.length);
  out.set(bytes.subarray(0, from), 0);
  out.set(replacement, from);
  out.set(bytes.subarray(to), from + replacement.length);
  const shift = replacement.length - (to - from);
  const ends = p.creates.ends.map((e, k) => (k >= i ? e + shift : e));
  Object.assign(p, { creates: { bytes: out.buffer, ends, count: p.creates.count } });
}
