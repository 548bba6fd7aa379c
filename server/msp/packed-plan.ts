/**
 * A sync plan from a worker thread, kept packed as it arrived (the
 * transferred buffers of JSON chunks, fetch-worker-protocol.ts) and decoded
 * a chunk at a time while the apply reads it.
 *
 * Decoding the whole plan before the apply made its objects (10,050 new
 * companies on a first sync of the bench's account) live through the whole
 * paced apply, about 2 s: they were promoted to the old generation and
 * brought the main heap's major collection into the sync, where the
 * check-ins felt it. Read through these lists, a chunk's objects are
 * garbage once the apply has written them, and die young.
 *
 * Taking a plan in checks only its layout; a chunk that cannot be read
 * (not UTF-8, not JSON, not a list, or more or fewer items than the list
 * says) is found when the apply reaches it and fails the apply, inside its
 * transaction, with SYNC_FETCH_WORKER_FAILED: nothing is changed.
 */
import { RollcallError } from '../../common/errors.js';
import { unpackChunk, type CompanyChunks, type PlanChunks } from './fetch-worker-protocol.js';
import type { PlanList, PlannedCreate, PlannedGroupChange, PlanToApply, SyncPlan } from './plan.js';
import type { GroupOfCompany, PlannedSync } from './sync-planner.js';

/** The error of a plan that cannot be read. */
function unreadable(detail: string, cause?: unknown): RollcallError {
  return new RollcallError('SYNC_FETCH_WORKER_FAILED', `the MSP sync plan from the worker thread cannot be read: ${detail}`, cause === undefined ? undefined : { cause });
}

/** Checks that the chunks' ends are in order and fill the buffer exactly (no decoding). */
function checkLayout(chunks: CompanyChunks, name: string): void {
  let at = 0;
  for (const end of chunks.ends) {
    if (!Number.isInteger(end) || end < at) throw unreadable(`${name}: chunk ends out of order`);
    at = end;
  }
  if (at !== chunks.bytes.byteLength) throw unreadable(`${name}: chunks cover ${at} of ${chunks.bytes.byteLength} bytes`);
  if (!Number.isInteger(chunks.count) || chunks.count < 0 || (chunks.count > 0 && chunks.ends.length === 0)) throw unreadable(`${name}: ${chunks.count} items said to be in ${chunks.ends.length} chunks`);
}

/** One packed list, decoded a chunk at a time each time it is iterated; `name` says which in errors. */
export function packedList<T>(chunks: CompanyChunks, name: string): PlanList<T> {
  checkLayout(chunks, name);
  return {
    length: chunks.count,
    *[Symbol.iterator](): Generator<T, void, undefined> {
      const decoder = new TextDecoder('utf-8', { fatal: true });
      const n = chunks.ends.length;
      let seen = 0;
      for (let i = 0; i < n; i += 1) {
        let items: unknown;
        try {
          items = unpackChunk<unknown>(chunks, i, decoder);
        } catch (err) {
          throw unreadable(`${name}, chunk ${i + 1} of ${n}: ${err instanceof Error ? err.message : String(err)}`, err);
        }
        if (!Array.isArray(items)) throw unreadable(`${name}, chunk ${i + 1} of ${n}: not a list`);
        seen += items.length;
        if (seen > chunks.count) throw unreadable(`${name}, chunk ${i + 1} of ${n}: more than the ${chunks.count} items the list holds`);
        yield* items as T[];
      }
      if (seen !== chunks.count) throw unreadable(`${name}: ${seen} items in chunks said to hold ${chunks.count}`);
    },
  };
}

/** A plan as the worker sent it, ready to apply; its lists are decoded as they are read. */
export function packedPlan(p: PlanChunks): PlannedSync {
  const plan: PlanToApply = {
    counts: p.counts,
    creates: packedList<PlannedCreate>(p.creates, 'new groups'),
    groupChanges: packedList<PlannedGroupChange>(p.groupChanges, 'group changes'),
    companyUpdates: packedList<SyncPlan['companyUpdates'][number]>(p.companyUpdates, 'company updates'),
    unlinks: packedList<string>(p.unlinks, 'unlinks'),
    createdParents: packedList<string>(p.createdParents, 'parents among the new groups'),
  };
  return { plan, rootRenamed: p.rootRenamed, parents: packedList<GroupOfCompany>(p.parents, 'parents') };
}
