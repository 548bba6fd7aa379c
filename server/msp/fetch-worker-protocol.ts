/**
 * Messages between the sync and its portal-fetch worker thread
 * (fetch-in-worker.ts ⇄ fetch-worker.ts). Only plain data crosses: errors
 * travel as their code, message and retryability.
 */
import { RollcallError } from '../../common/errors.js';
import type { PolicyOutcome, PriorityOutcome } from '../thread-priority.js';
import type { PortalApiOptions } from './portal-api.js';
import { createdParents, type SyncPlan } from './plan.js';
import type { GroupOfCompany, PlanTarget, SyncLook } from './sync-planner.js';
import type { PortalCompany } from './tree.js';

/** The options of the portal client that can cross to a thread (no functions, no signal). */
export type WorkerFetchOptions = Omit<PortalApiOptions, 'onProgress' | 'signal' | 'now' | 'sleep' | 'random' | 'pace'>;

/** What the worker starts with. */
export interface FetchWorkerData {
  /** Set for a one-shot fetch: the worker fetches with these options at once, answers `fetched` or `failed`, and ends. */
  readonly options?: WorkerFetchOptions;
  /** Nice value the thread takes before anything else; null leaves its priority alone. */
  readonly nice: number | null;
  /** A planning worker also takes the SCHED_IDLE policy (thread-priority.ts) unless this is false. */
  readonly idlePolicy?: boolean;
  /**
   * Set for a planning worker: it opens a read-only connection to this
   * database file and then waits. Each `fetch` starts a session: it
   * fetches and validates the tree, says `ready`, answers `look` and `plan`
   * from that connection until told to `release` the tree; then it waits
   * for the next `fetch`, until told to `close`.
   */
  readonly plan?: { readonly dbFile: string } | null;
}

/** An error as it crosses the thread boundary. */
export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
}

/** Parent → worker. `session` numbers a planning worker's fetches, so that nothing meant for one reaches the next. */
export type ToFetchWorker =
  | { readonly type: 'abort'; readonly session?: number }
  | { readonly type: 'fetch'; readonly session: number; readonly options: WorkerFetchOptions }
  | { readonly type: 'look' | 'plan'; readonly id: number; readonly target: PlanTarget }
  | { readonly type: 'release'; readonly session: number }
  | { readonly type: 'close' };

/**
 * The fetched companies as one transferred buffer of UTF-8 JSON arrays, one
 * after the other: array i spans bytes `ends[i - 1]` (0 for the first) to
 * `ends[i]`. The parent parses them one at a time, pacing itself, instead
 * of receiving thousands of objects in one go.
 */
export interface CompanyChunks {
  readonly bytes: ArrayBuffer;
  readonly ends: readonly number[];
  /** Companies in all chunks together. */
  readonly count: number;
}

/** A sync plan as it crosses: each list in chunks, as the companies are; the parent keeps it so and decodes it as it applies it (packed-plan.ts). */
export interface PlanChunks {
  readonly counts: SyncPlan['counts'];
  readonly rootRenamed: boolean;
  readonly creates: CompanyChunks;
  readonly groupChanges: CompanyChunks;
  readonly companyUpdates: CompanyChunks;
  readonly unlinks: CompanyChunks;
  readonly parents: CompanyChunks;
  /** External ids of the new groups that other new or moved groups hang below (plan.ts, `createdParents`). */
  readonly createdParents: CompanyChunks;
}

/**
 * Worker → parent. A one-shot worker says priority, progress…, then
 * fetched or failed. A planning worker says priority once, then per
 * session progress…, then ready or failed, then one looked, planned or
 * planFailed per request.
 */
export type FromFetchWorker =
  | { readonly type: 'priority'; readonly outcome: PriorityOutcome; readonly policy?: PolicyOutcome }
  | { readonly type: 'progress'; readonly session?: number; readonly fetched: number }
  | { readonly type: 'fetched'; readonly account: PortalCompany; readonly chunks: CompanyChunks }
  | { readonly type: 'ready'; readonly session: number; readonly account: PortalCompany; readonly portal?: 'msp' | 'business'; readonly fetched: number }
  | { readonly type: 'looked'; readonly id: number; readonly look: SyncLook }
  | { readonly type: 'planned'; readonly id: number; readonly plan: PlanChunks }
  | { readonly type: 'planFailed'; readonly id: number; readonly error: WireError }
  | { readonly type: 'failed'; readonly session?: number; readonly error: WireError };

/** Packs a plan for the crossing; the buffers to transfer come with it. */
export function packPlan(plan: SyncPlan, rootRenamed: boolean, parents: readonly GroupOfCompany[], perChunk: number): { plan: PlanChunks; transfer: ArrayBuffer[] } {
  const packed: PlanChunks = {
    counts: plan.counts,
    rootRenamed,
    creates: packItems(plan.creates, perChunk),
    groupChanges: packItems(plan.groupChanges, perChunk),
    companyUpdates: packItems(plan.companyUpdates, perChunk),
    unlinks: packItems(plan.unlinks, perChunk),
    parents: packItems(parents, perChunk),
    createdParents: packItems(createdParents(plan), perChunk),
  };
  const lists = [packed.creates, packed.groupChanges, packed.companyUpdates, packed.unlinks, packed.parents, packed.createdParents];
  return { plan: packed, transfer: lists.map((c) => c.bytes) };
}

/** Packs companies into {@link CompanyChunks} of `perChunk` companies. */
export function packCompanies(companies: readonly PortalCompany[], perChunk: number): CompanyChunks {
  return packItems(companies, perChunk);
}

/** Packs any JSON-able items into chunks of `perChunk` (the same layout as {@link CompanyChunks}). */
export function packItems(companies: readonly unknown[], perChunk: number): CompanyChunks {
  const parts: Buffer[] = [];
  const ends: number[] = [];
  let total = 0;
  for (let i = 0; i < companies.length; i += perChunk) {
    const part = Buffer.from(JSON.stringify(companies.slice(i, i + perChunk)), 'utf8');
    parts.push(part);
    total += part.length;
    ends.push(total);
  }
  const bytes = new Uint8Array(total); // its own ArrayBuffer (not a pooled slice), so it can be transferred
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return { bytes: bytes.buffer, ends, count: companies.length };
}

/** Chunk `i` of {@link CompanyChunks}, parsed. */
export function unpackChunk<T = PortalCompany>(chunks: CompanyChunks, i: number, decoder: TextDecoder): T[] {
  const from = i === 0 ? 0 : chunks.ends[i - 1]!;
  return JSON.parse(decoder.decode(new Uint8Array(chunks.bytes, from, chunks.ends[i]! - from))) as T[];
}

/** Flattens what the fetch threw; anything but our own errors becomes SYNC_FETCH_WORKER_FAILED. */
export function toWireError(err: unknown): WireError {
  if (err instanceof RollcallError) return { code: err.code, message: err.message, retryable: err.retryable };
  return { code: 'SYNC_FETCH_WORKER_FAILED', message: `the MSP portal fetch failed in its worker thread: ${err instanceof Error ? err.message : String(err)}`, retryable: false };
}

/** The error again, on the parent's side. */
export function fromWireError(e: WireError): RollcallError {
  return new RollcallError(e.code, e.message, { retryable: e.retryable });
}
