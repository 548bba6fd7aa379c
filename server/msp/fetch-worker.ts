/**
 * Worker-thread entry of the portal fetch (started by fetch-in-worker.ts).
 *
 * The thread first lowers its own OS priority, then fetches the tree with
 * the portal API client at full speed: the kernel hands it only the CPU the
 * event loop and the SQLite threads leave, and its garbage (answers, parsed
 * pages) lives and is collected in this thread's heap, not in the one that
 * serves agents. The companies go back in chunks, so no single message
 * costs the event loop more than a moment to receive.
 *
 * A planning worker (`workerData.plan` set) keeps the tree instead: it
 * validates it, says `ready`, and then plans it against the stored
 * companies, read through its own read-only connection, as often as the
 * parent asks; only a plan's summary (`look`) or the plan itself crosses
 * back. It ends when told to `close`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EAGER } from '../cooperative.js';
import { lowerThreadPriority } from '../thread-priority.js';
import { fetchPortalTree } from './portal-api.js';
import { openReadOnlyDatabase } from '../storage/db.js';
import { packCompanies, packPlan, toWireError, type FetchWorkerData, type FromFetchWorker, type ToFetchWorker } from './fetch-worker-protocol.js';
import { parentsOf, planAgainstStore, writesNothing } from './sync-planner.js';
import { validateTree, type PortalTree } from './tree.js';

/** Companies per chunk (the parent parses one chunk at a time: well under a millisecond). */
const CHUNK = 250;

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('fetch-worker.ts runs only as a worker thread');
  const data = workerData as FetchWorkerData;
  const send = (m: FromFetchWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);
  const ctl = new AbortController();
  let planner: ((m: ToFetchWorker) => Promise<void>) | null = null;
  let drained: Promise<void> = Promise.resolve();
  port.on('message', (m: ToFetchWorker) => {
    if (m.type === 'abort') ctl.abort();
    else if (m.type === 'close') void drained.then(() => port.close()); // after the request in hand, so no connection is left open
    else if (planner) drained = planner(m);
  });
  send({ type: 'priority', outcome: data.nice === null ? { applied: false, reason: 'not asked for' } : lowerThreadPriority(data.nice) });
  try {
    const tree = await fetchPortalTree({ ...data.options, pace: EAGER, signal: ctl.signal, onProgress: (fetched) => send({ type: 'progress', fetched }) });
    if (data.plan) {
      const valid = validateTree(tree);
      planner = servePlans(valid, data.plan.dbFile, send);
      send({ type: 'ready', account: valid.account, ...(valid.portal ? { portal: valid.portal } : {}), fetched: valid.companies.length });
      return; // the port stays open: the parent asks for plans, then says close
    }
    const chunks = packCompanies(tree.companies, CHUNK);
    send({ type: 'fetched', account: tree.account, chunks }, [chunks.bytes]);
  } catch (err) {
    send({ type: 'failed', error: toWireError(err) });
  }
  port.close(); // nothing else keeps the thread alive: it ends
}

/**
 * Answers look and plan requests one at a time, each from one snapshot of
 * the database read through a read-only connection, which is closed before
 * the answer goes out. Returns a promise of the queue's end.
 */
function servePlans(tree: PortalTree, dbFile: string, send: (m: FromFetchWorker, transfer?: ArrayBuffer[]) => void): (m: ToFetchWorker) => Promise<void> {
  let queue: Promise<void> = Promise.resolve();
  return (m) => {
    if (m.type !== 'look' && m.type !== 'plan') return queue;
    queue = queue.then(async () => {
      try {
        const db = await openReadOnlyDatabase(dbFile);
        let p: Awaited<ReturnType<typeof planAgainstStore>>;
        try {
          p = await db.snapshot((sql) => planAgainstStore(tree, m.target, sql, false));
        } finally {
          await db.close();
        }
        if (m.type === 'look') {
          send({ type: 'looked', id: m.id, look: { changes: !writesNothing(p), counts: p.plan.counts } });
        } else {
          const { plan, transfer } = packPlan(p.plan, p.rootRenamed, parentsOf(p.plan, p.stored), CHUNK);
          send({ type: 'planned', id: m.id, plan }, transfer);
        }
      } catch (err) {
        send({ type: 'planFailed', id: m.id, error: toWireError(err) });
      }
    });
    return queue;
  };
}

void main();
