import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, waitFor, type TestServer } from '../../test/support/harness.js';
import type { AccountStatus } from '../msp/sync-service.js';
import type { SyncRun } from '../storage/msp-store.js';
import { company, groupPaths, writeExport } from './msp-support.js';

const h = new Harness();
afterEach(() => h.cleanup());

const MINUTE = 60_000;
const base = [company('m1', 'acct-1', 1006, 'Contoso'), company('c1', 'm1', 1007, 'Acme')];

/** A clock the test moves by hand. */
function manualClock() {
  let t = Date.UTC(2026, 0, 5, 9, 0, 0);
  return {
    now: (): number => t,
    advance(ms: number): void {
      t += ms;
    },
  };
}

async function start(intervalSec: number) {
  const clock = manualClock();
  const s = await h.startServer({ mspSyncIntervalSec: intervalSec }, { now: clock.now });
  const dir = await h.tempDir();
  const file = await writeExport(dir, base);
  const res = await s.api<{ account: { id: string }; run: SyncRun }>('POST', '/api/v1/msp/link', { source: 'file', file });
  expect(res.status).toBe(201);
  return { s, clock, dir, file, accountId: res.body.account.id, linkRun: res.body.run };
}

async function statusOf(s: TestServer, accountId: string): Promise<AccountStatus> {
  const st = (await s.server.msp.status()).find((a) => a.account.id === accountId);
  if (!st) throw new Error(`no account ${accountId}`);
  return st;
}

/** Waits until the account has `count` runs and no sync is running; returns the newest run. */
async function settled(s: TestServer, accountId: string, count: number): Promise<SyncRun> {
  await waitFor(async () => {
    const runs = await s.server.storage.msp.runs(accountId);
    return runs.length === count && (await statusOf(s, accountId)).state !== 'ongoing';
  }, `run ${count} of ${accountId} to be recorded`);
  return (await s.server.storage.msp.runs(accountId, 1))[0]!;
}

describe('the automatic MSP sync', () => {
  it('syncs a linked account again once the interval has passed, and not before', async () => {
    const { s, clock, dir, accountId, linkRun } = await start(60);
    expect((await statusOf(s, accountId)).nextSyncAt).toBe(linkRun.finishedAt + MINUTE);
    await writeExport(dir, [...base, company('c2', 'm1', 1007, 'Beta')]);
    expect(await s.server.msp.syncDue()).toBe(0);
    clock.advance(MINUTE - 1);
    expect(await s.server.msp.syncDue()).toBe(0);
    expect(await s.server.storage.msp.runs(accountId)).toHaveLength(1);

    clock.advance(1);
    expect(await s.server.msp.syncDue()).toBe(1);
    const run = await settled(s, accountId, 2);
    expect(run).toMatchObject({ trigger: 'schedule', outcome: 'succeeded', added: 1 });
    expect(await groupPaths(s)).toContain('All/Northwind/Contoso/Beta');
    expect((await statusOf(s, accountId)).nextSyncAt).toBe(run.finishedAt + MINUTE);
    expect(await s.server.msp.syncDue()).toBe(0);
    clock.advance(MINUTE);
    expect(await s.server.msp.syncDue()).toBe(1);
    expect(await settled(s, accountId, 3)).toMatchObject({ trigger: 'schedule', outcome: 'succeeded', added: 0 });
  });

  it('retries a failed sync after the shorter of the interval and the retry delay', async () => {
    // An hour's interval: the retry after a failure (30 minutes) comes sooner.
    const hourly = await start(3600);
    await fs.writeFile(hourly.file, '{ not json');
    hourly.clock.advance(60 * MINUTE);
    expect(await hourly.s.server.msp.syncDue()).toBe(1);
    const failed = await settled(hourly.s, hourly.accountId, 2);
    expect(failed).toMatchObject({ trigger: 'schedule', outcome: 'failed', errorCode: 'SYNC_FILE_INVALID' });
    expect(await statusOf(hourly.s, hourly.accountId)).toMatchObject({ state: 'failed', nextSyncAt: failed.finishedAt + 30 * MINUTE });
    hourly.clock.advance(30 * MINUTE - 1);
    expect(await hourly.s.server.msp.syncDue()).toBe(0);
    await writeExport(path.dirname(hourly.file), base);
    hourly.clock.advance(1);
    expect(await hourly.s.server.msp.syncDue()).toBe(1);
    const recovered = await settled(hourly.s, hourly.accountId, 3);
    expect(recovered).toMatchObject({ outcome: 'succeeded' });
    expect((await statusOf(hourly.s, hourly.accountId)).nextSyncAt).toBe(recovered.finishedAt + 60 * MINUTE);

    // A one-minute interval: the retry comes after the interval, not after 30 minutes.
    const quick = await start(60);
    await fs.writeFile(quick.file, '{ not json');
    const manual = await quick.s.api<{ run: SyncRun }>('POST', '/api/v1/msp/sync', {});
    expect(manual.body.run).toMatchObject({ outcome: 'failed' });
    expect((await statusOf(quick.s, quick.accountId)).nextSyncAt).toBe(manual.body.run.finishedAt + MINUTE);
    quick.clock.advance(MINUTE);
    expect(await quick.s.server.msp.syncDue()).toBe(1);
    expect(await settled(quick.s, quick.accountId, 3)).toMatchObject({ trigger: 'schedule', outcome: 'failed' });
  });

  it('never syncs an unlinked account', async () => {
    const { s, clock, dir, accountId } = await start(60);
    const other = await writeExport(dir, [company('b1', 'biz-1', 1007, 'Tailspin')], 'business.json', { id: 'biz-1', name: 'Woodgrove', type: 1005 });
    const second = await s.api<{ account: { id: string } }>('POST', '/api/v1/msp/link', { source: 'file', file: other, portal: 'business' });
    expect(second.status).toBe(201);
    expect((await s.api('POST', '/api/v1/msp/unlink', { account: 'biz-1' })).status).toBe(200);
    expect((await statusOf(s, second.body.account.id)).nextSyncAt).toBeNull();

    clock.advance(10 * MINUTE);
    expect(await s.server.msp.syncDue()).toBe(1);
    await settled(s, accountId, 2);
    expect(await s.server.storage.msp.runs(second.body.account.id)).toHaveLength(1);

    expect((await s.api('POST', '/api/v1/msp/unlink', { account: 'acct-1' })).status).toBe(200);
    clock.advance(30 * 86_400_000);
    expect(await s.server.msp.syncDue()).toBe(0);
    expect(await s.server.storage.msp.runs(accountId)).toHaveLength(2);
    expect(await s.server.storage.msp.runs(second.body.account.id)).toHaveLength(1);
    expect((await s.server.msp.status()).map((a) => a.state)).toEqual(['disconnected', 'disconnected']);
  });

  it('stays up when an account is unlinked while its scheduled sync is starting', async () => {
    const { s, clock, accountId } = await start(60);
    clock.advance(MINUTE);
    // The scheduler reads the accounts' state, then starts each due sync; the unlink lands in between.
    const [started] = await Promise.all([s.server.msp.syncDue(), s.server.msp.unlink(accountId)]);
    expect(started).toBe(1);
    const line = await waitFor(() => s.logs.find((l) => l.msg === 'scheduled MSP sync did not run'), 'the scheduler to log the sync it could not run');
    expect(line).toMatchObject({ accountId, err: expect.stringContaining('unlinked') });
    expect(await s.server.storage.msp.runs(accountId)).toHaveLength(1);
    expect((await statusOf(s, accountId)).state).toBe('disconnected');
  });
});
