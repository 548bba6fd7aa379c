import fs from 'node:fs';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { buildPortalTree, FAKE_USER, startFakePortal } from '../../test/support/fake-portal.js';
import { captureLogger, Harness, waitFor } from '../../test/support/harness.js';
import { startWorker } from '../msp/fetch-in-worker.js';
import { PlanningWorkers } from '../msp/planning-workers.js';
import { loadSecretBox } from '../msp/secret-box.js';
import { MspSync, type FetchPlanner } from '../msp/sync-service.js';
import { inProcessPlanner } from '../msp/sync-planner.js';
import type { PortalTree } from '../msp/tree.js';
import { openStorage } from '../storage/index.js';
import { CHRT_PATHS, SCHED_IDLE, threadPolicy, type PolicyOutcome } from '../thread-priority.js';

const h = new Harness();
afterEach(() => h.cleanup());

/** A database with an account linked from `tree`, a portal serving it, and planning workers whose every thread the test sees. */
async function setup(tree: PortalTree = buildPortalTree({ managedMsps: 2, customers: 20 })) {
  const dir = await h.tempDir();
  const dbFile = path.join(dir, 'rollcall.db');
  const storage = await openStorage(dbFile, { synchronous: 'NORMAL' });
  h.defer(() => storage.db.close());
  const { log } = captureLogger();
  const deps = { storage, fetchTree: async () => tree, secrets: await loadSecretBox(path.join(dir, 'secret.key')), now: Date.now, log, syncIntervalMs: 86_400_000 };
  const { account } = await new MspSync(deps).link({ kind: 'file', path: 'unused' });
  const portal = await startFakePortal({ tree });
  h.defer(() => portal.close());
  const options = { baseUrl: portal.url, ...FAKE_USER, requestTimeoutMs: 5_000, deadlineMs: 20_000 };
  const started: Worker[] = [];
  const exits: string[] = [];
  const policies: (PolicyOutcome | undefined)[] = [];
  const workers = new PlanningWorkers({
    dbFile,
    onPriority: (_nice, policy) => policies.push(policy),
    start: (data, maxHeapMb) => {
      const w = startWorker(data, maxHeapMb);
      started.push(w);
      return w;
    },
    onUnexpectedExit: (detail) => exits.push(detail),
  });
  h.defer(() => workers.close());
  const target = { accountId: account.id, rootGroupId: account.rootGroupId };
  return { storage, deps, account, options, workers, started, exits, policies, target };
}

const ended = (w: Worker): Promise<number> => new Promise((resolve) => w.once('exit', resolve));

describe('the planning worker kept between syncs', () => {
  it('is started ahead by warm() and serves one sync after another in the same thread', async () => {
    const { storage, options, workers, started, target } = await setup();
    workers.warm();
    expect(started).toHaveLength(1);
    const threadId = started[0]!.threadId;
    for (let round = 0; round < 3; round += 1) {
      const planner = await workers.fetchAndPlan(options);
      expect(planner.fetched).toBe(22);
      expect(await planner.look(target, storage.db)).toMatchObject({ changes: false });
      planner.close();
      await expect(planner.look(target, storage.db)).rejects.toMatchObject({ code: 'SYNC_FETCH_WORKER_FAILED' });
    }
    expect(started).toHaveLength(1);
    expect(workers.threadIds()).toEqual([threadId]);
  });

  it('runs its thread under SCHED_IDLE where chrt exists', async () => {
    const { workers, policies } = await setup();
    workers.warm();
    await waitFor(() => policies.length === 1, 'the thread to report its priority');
    if (CHRT_PATHS.some((p) => fs.existsSync(p))) {
      expect(policies[0]).toMatchObject({ applied: true });
      expect(threadPolicy((policies[0] as { threadId: number }).threadId)).toBe(SCHED_IDLE);
    } else {
      expect(policies[0]).toMatchObject({ applied: false });
    }
  });

  it('fails the sync whose thread dies with SYNC_FETCH_WORKER_FAILED, and the next sync starts a new thread', async () => {
    const { storage, options, workers, started, exits, target } = await setup();
    const planner = await workers.fetchAndPlan(options);
    await started[0]!.terminate(); // dies while the sync holds it
    await expect(planner.plan(target, storage.db)).rejects.toMatchObject({ code: 'SYNC_FETCH_WORKER_FAILED' });
    planner.close();
    expect(exits).toHaveLength(1);
    // Between syncs, too: the thread that replaced it dies while idle; the next sync does not notice.
    const second = await workers.fetchAndPlan(options);
    second.close();
    expect(started).toHaveLength(2);
    await started[1]!.terminate();
    await waitFor(() => exits.length === 2, 'the idle thread’s end to be reported');
    const third = await workers.fetchAndPlan(options);
    try {
      expect(await third.look(target, storage.db)).toMatchObject({ changes: false });
    } finally {
      third.close();
    }
    expect(started).toHaveLength(3);
    expect(workers.threadIds()).toEqual([started[2]!.threadId]);
  });

  it('gives a sync that overlaps another a thread of its own, ended when that sync is done', async () => {
    const { storage, options, workers, started, exits, target } = await setup();
    const first = await workers.fetchAndPlan(options);
    const second = await workers.fetchAndPlan(options);
    expect(started).toHaveLength(2);
    expect((await second.look(target, storage.db)).changes).toBe(false);
    const extraEnded = ended(started[1]!);
    second.close();
    await extraEnded;
    expect((await first.look(target, storage.db)).changes).toBe(false);
    first.close();
    expect(workers.threadIds()).toEqual([started[0]!.threadId]);
    expect(exits).toEqual([]); // asked to end: not reported as a failure
  });

  it('ends its thread on close and refuses to fetch afterwards', async () => {
    const { options, workers, started } = await setup();
    const planner = await workers.fetchAndPlan(options);
    planner.close();
    const exit = ended(started[0]!);
    await workers.close();
    await exit;
    expect(workers.threadIds()).toEqual([]);
    await expect(workers.fetchAndPlan(options)).rejects.toMatchObject({ code: 'SYNC_FETCH_WORKER_FAILED' });
    workers.warm();
    expect(started).toHaveLength(1);
  });

  it('keeps the thread when the portal fails a fetch, and the next fetch uses it', async () => {
    const { options, workers, started } = await setup();
    await expect(workers.fetchAndPlan({ ...options, password: 'wrong' })).rejects.toMatchObject({ code: 'SYNC_PORTAL_UNAUTHORIZED' });
    const planner = await workers.fetchAndPlan(options);
    planner.close();
    expect(started).toHaveLength(1);
  });
});

describe('the sync service and a planner that keeps a thread', () => {
  it('warms the planner when the scheduler starts with an API account linked, and closes it on close', async () => {
    const dir = await h.tempDir();
    const storage = await openStorage(path.join(dir, 'rollcall.db'), { synchronous: 'NORMAL' });
    h.defer(() => storage.db.close());
    const tree = buildPortalTree({ managedMsps: 1, customers: 3 });
    const calls: string[] = [];
    const planner: FetchPlanner = Object.assign(async () => inProcessPlanner(tree), {
      warm: () => void calls.push('warm'),
      close: async () => void calls.push('close'),
    });
    const deps = { storage, fetchTree: async () => tree, fetchPlanner: planner, secrets: await loadSecretBox(path.join(dir, 'secret.key')), now: Date.now, log: captureLogger().log, syncIntervalMs: 86_400_000 };
    // A file account only: nothing to warm.
    const fileOnly = new MspSync(deps);
    await fileOnly.link({ kind: 'file', path: 'unused' });
    fileOnly.startScheduler();
    await fileOnly.close();
    expect(calls).toEqual(['close']);
    // An API account: warmed at start.
    calls.length = 0;
    await new MspSync(deps).link({ kind: 'api', baseUrl: 'http://127.0.0.1:9', user: 'u', password: 'p' });
    const msp = new MspSync(deps);
    msp.startScheduler();
    await waitFor(() => calls.includes('warm'), 'the planner to be warmed');
    await msp.close();
    expect(calls).toEqual(['warm', 'close']);
  });
});
