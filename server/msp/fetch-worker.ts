/**
 * Worker-thread entry of the portal fetch (started by fetch-in-worker.ts).
 *
 * The thread first lowers its own OS priority, then fetches the tree with
 * the portal API client at full speed: the kernel hands it only the CPU the
 * event loop and the SQLite threads leave, and its garbage (answers, parsed
 * pages) lives and is collected in this thread's heap, not in the one that
 * serves agents. The companies go back in chunks, so no single message
 * costs the event loop more than a moment to receive.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EAGER } from '../cooperative.js';
import { lowerThreadPriority } from '../thread-priority.js';
import { fetchPortalTree } from './portal-api.js';
import { packCompanies, toWireError, type FetchWorkerData, type FromFetchWorker, type ToFetchWorker } from './fetch-worker-protocol.js';

/** Companies per chunk (the parent parses one chunk at a time: well under a millisecond). */
const CHUNK = 250;

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('fetch-worker.ts runs only as a worker thread');
  const data = workerData as FetchWorkerData;
  const send = (m: FromFetchWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);
  const ctl = new AbortController();
  port.on('message', (m: ToFetchWorker) => {
    if (m.type === 'abort') ctl.abort();
  });
  send({ type: 'priority', outcome: data.nice === null ? { applied: false, reason: 'not asked for' } : lowerThreadPriority(data.nice) });
  try {
    const tree = await fetchPortalTree({ ...data.options, pace: EAGER, signal: ctl.signal, onProgress: (fetched) => send({ type: 'progress', fetched }) });
    const chunks = packCompanies(tree.companies, CHUNK);
    send({ type: 'fetched', account: tree.account, chunks }, [chunks.bytes]);
  } catch (err) {
    send({ type: 'failed', error: toWireError(err) });
  } finally {
    port.close(); // nothing else keeps the thread alive: it ends
  }
}

void main();
