/**
 * Worker-thread entry of the portal fetch (started by fetch-in-worker.ts
 * and planning-workers.ts).
 *
 * The thread first lowers its own OS priority (a planning worker also takes
 * the SCHED_IDLE policy, see thread-priority.ts), then fetches the tree with
 * the portal API client at full speed: the kernel hands it only the CPU the
 * event loop and the SQLite threads leave, and its garbage (answers, parsed
 * pages) lives and is collected in this thread's heap, not in the one that
 * serves agents.
 *
 * A one-shot worker (`workerData.options` set) fetches at once, sends the
 * companies back in chunks (so no single message costs the event loop more
 * than a moment to receive) and ends.
 *
 * A planning worker (`workerData.plan` set) is started ahead of a sync and
 * kept between syncs: it opens its read-only connection to the database
 * and waits. Each `fetch` is a session: it fetches and validates the tree,
 * keeps it, says `ready`, and plans it against the stored companies as
 * often as the parent asks; only a plan's summary (`look`) or the plan
 * itself crosses back. `release` drops the tree; `close` closes the
 * connection and ends the thread.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { EAGER } from '../cooperative.js';
import { lowerThreadPriority, useIdlePolicy } from '../thread-priority.js';
import { fetchPortalTree } from './portal-api.js';
import { openReadOnlyDatabase, type ReadOnlyDatabase } from '../storage/db.js';
import { packCompanies, packPlan, toWireError, type FetchWorkerData, type FromFetchWorker, type ToFetchWorker, type WorkerFetchOptions } from './fetch-worker-protocol.js';
import { parentsOf, planAgainstStore, writesNothing } from './sync-planner.js';
import { validateTree, type PortalTree } from './tree.js';

/** Companies per chunk (the parent parses one chunk at a time: well under a millisecond). */
const CHUNK = 250;
/**
 * Plan items per chunk: as many as the apply writes in one statement
 * (msp-store.ts), so that the objects it decodes for one statement are
 * garbage by the next (packed-plan.ts).
 */
const PLAN_CHUNK = 100;

type Send = (m: FromFetchWorker, transfer?: ArrayBuffer[]) => void;

function main(): void {
  const port = parentPort;
  if (!port) throw new Error('fetch-worker.ts runs only as a worker thread');
  const data = workerData as FetchWorkerData;
  const send: Send = (m, transfer = []) => port.postMessage(m, transfer);
  const outcome = data.nice === null ? { applied: false as const, reason: 'not asked for' } : lowerThreadPriority(data.nice);
  // A planning worker is kept for long: worth the few milliseconds of taking SCHED_IDLE too.
  const idle = data.plan && data.nice !== null && data.idlePolicy !== false;
  send({ type: 'priority', outcome, ...(idle ? { policy: useIdlePolicy() } : {}) });
  if (data.plan) servePlanning(port, data.plan.dbFile, send);
  else if (data.options) void fetchOnce(port, data.options, send);
  else port.close();
}

/** The one-shot fetch: the companies go back in chunks, then the thread ends. */
async function fetchOnce(port: MessagePort, options: WorkerFetchOptions, send: Send): Promise<void> {
  const ctl = new AbortController();
  port.on('message', (m: ToFetchWorker) => {
    if (m.type === 'abort') ctl.abort();
  });
  try {
    const tree = await fetchPortalTree({ ...options, pace: EAGER, signal: ctl.signal, onProgress: (fetched) => send({ type: 'progress', fetched }) });
    const chunks = packCompanies(tree.companies, CHUNK);
    send({ type: 'fetched', account: tree.account, chunks }, [chunks.bytes]);
  } catch (err) {
    send({ type: 'failed', error: toWireError(err) });
  }
  port.close(); // nothing else keeps the thread alive: it ends
}

/**
 * Serves sessions one message at a time, in order; only `abort` is handled
 * at once (it must reach a fetch in progress). The read-only connection is
 * opened now, so that a sync does not wait for it, and kept; one that
 * cannot be opened is tried again by the request that needs it, which
 * fails with the reason.
 */
function servePlanning(port: MessagePort, dbFile: string, send: Send): void {
  let db: Promise<ReadOnlyDatabase> | null = null;
  const connection = (): Promise<ReadOnlyDatabase> => {
    db ??= openReadOnlyDatabase(dbFile).catch((err: unknown) => {
      db = null;
      throw err;
    });
    return db;
  };
  connection().catch(() => undefined); // reported by the first look or plan, if it still fails then
  let session: { id: number; ctl: AbortController; tree: PortalTree | null } | null = null;
  let queue: Promise<void> = Promise.resolve();
  const handle = async (m: ToFetchWorker): Promise<void> => {
    if (m.type === 'fetch') {
      const current = { id: m.session, ctl: new AbortController(), tree: null as PortalTree | null };
      session = current;
      try {
        const tree = validateTree(
          await fetchPortalTree({ ...m.options, pace: EAGER, signal: current.ctl.signal, onProgress: (fetched) => send({ type: 'progress', session: m.session, fetched }) }),
        );
        current.tree = tree;
        send({ type: 'ready', session: m.session, account: tree.account, ...(tree.portal ? { portal: tree.portal } : {}), fetched: tree.companies.length });
      } catch (err) {
        if (session === current) session = null;
        send({ type: 'failed', session: m.session, error: toWireError(err) });
      }
    } else if (m.type === 'look' || m.type === 'plan') {
      await answerPlan(m, session?.tree ?? null, connection, send);
    } else if (m.type === 'release') {
      if (session?.id === m.session) session = null; // the tree is garbage now
    } else if (m.type === 'close') {
      session = null;
      const open = db;
      db = null;
      if (open) await open.then((d) => d.close()).catch(() => undefined); // closing is all that is left to do; the thread ends either way
      port.close();
    }
  };
  port.on('message', (m: ToFetchWorker) => {
    if (m.type === 'abort') {
      if (session && (m.session === undefined || m.session === session.id)) session.ctl.abort();
      return;
    }
    queue = queue.then(() => handle(m));
  });
}

/** Plans the session's tree from one snapshot of the database and answers one look or plan request. */
async function answerPlan(
  m: Extract<ToFetchWorker, { type: 'look' | 'plan' }>,
  tree: PortalTree | null,
  connection: () => Promise<ReadOnlyDatabase>,
  send: Send,
): Promise<void> {
  try {
    if (!tree) throw new Error('it holds no tree to plan (released, or never fetched)');
    const db = await connection();
    const p = await db.snapshot((sql) => planAgainstStore(tree, m.target, sql, false));
    if (m.type === 'look') {
      send({ type: 'looked', id: m.id, look: { changes: !writesNothing(p), counts: p.plan.counts } });
    } else {
      const { plan, transfer } = packPlan(p.plan, p.rootRenamed, parentsOf(p.plan, p.stored), PLAN_CHUNK);
      send({ type: 'planned', id: m.id, plan }, transfer);
    }
  } catch (err) {
    send({ type: 'planFailed', id: m.id, error: toWireError(err) });
  }
}

main();
