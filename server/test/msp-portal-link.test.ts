import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildPortalTree, FAKE_USER, startFakePortal, type FakePortal, type PortalFault } from '../../test/support/fake-portal.js';
import { captureLogger, Harness, testPkiDir, TestServer, waitFor } from '../../test/support/harness.js';
import { resolveServerConfig } from '../config.js';
import { defaultFetchTree } from '../msp/fetch-tree.js';
import { fetchPortalTree } from '../msp/portal-api.js';
import { loadSecretBox } from '../msp/secret-box.js';
import type { AccountStatus, FetchTree } from '../msp/sync-service.js';
import { buildServer } from '../server.js';
import type { SyncRun } from '../storage/msp-store.js';
import { treeDump } from './msp-support.js';

const h = new Harness();
afterEach(() => h.cleanup());

/** The portal's API, with retries and timeouts small enough for a test. */
const quickFetchTree: FetchTree = (spec, onProgress, signal) => {
  if (spec.kind === 'file') return defaultFetchTree()(spec, onProgress, signal);
  return fetchPortalTree({
    baseUrl: spec.baseUrl,
    username: spec.user,
    password: spec.password,
    onProgress,
    signal,
    maintenance: { attempts: 3, baseMs: 1, capMs: 5 },
    requestTimeoutMs: 500,
  });
};

/** Starts a server as Harness.startServer does, but with its own tree fetcher (the harness does not expose that seam). */
async function startServerWithFetch(fetchTree: FetchTree): Promise<TestServer> {
  const dataDir = await h.tempDir('rollcall-data-');
  const pkiDir = path.join(dataDir, 'pki');
  await fs.mkdir(pkiDir, { recursive: true });
  for (const f of ['ca.crt', 'ca.key', 'server.crt', 'server.key']) await fs.copyFile(path.join(testPkiDir(), f), path.join(pkiDir, f));
  const config = resolveServerConfig({ dataDir, listenHost: '127.0.0.1', agentPort: 0, consolePort: 0, synchronous: 'NORMAL' });
  const { log, lines } = captureLogger();
  const server = await buildServer(config, { log, fetchTree });
  await server.start();
  const adminToken = (await server.createInitialAdminToken())!;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await server.close();
  };
  h.defer(close);
  return new TestServer(server, lines, adminToken, dataDir, close, h);
}

/** Resolves with `p`, or fails after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function fakePortal(): Promise<FakePortal> {
  const fake = await startFakePortal({ tree: buildPortalTree({ managedMsps: 3, customers: 30 }) });
  h.defer(() => fake.close());
  return fake;
}

async function linkApi(s: TestServer, fake: FakePortal) {
  const res = await s.api<{ account: Record<string, unknown>; run: SyncRun }>('POST', '/api/v1/msp/link', {
    source: 'api',
    baseUrl: fake.url,
    user: FAKE_USER.username,
    password: FAKE_USER.password,
  });
  expect(res.status).toBe(201);
  return res.body;
}

async function accountStatus(s: TestServer): Promise<AccountStatus> {
  const accounts = (await s.api<{ accounts: AccountStatus[] }>('GET', '/api/v1/msp/accounts')).body.accounts;
  expect(accounts).toHaveLength(1);
  return accounts[0]!;
}

async function sync(s: TestServer): Promise<SyncRun> {
  const res = await s.api<{ run: SyncRun }>('POST', '/api/v1/msp/sync', {});
  expect(res.status).toBe(200);
  return res.body.run;
}

describe('linking through the portal API', () => {
  it('builds the tree from the portal and keeps the password only encrypted', async () => {
    const fake = await fakePortal();
    const s = await h.startServer();
    const linked = await linkApi(s, fake);
    expect(linked.run).toMatchObject({ outcome: 'succeeded', source: 'api', trigger: 'link', fetched: 33, added: 33 });
    expect(linked.account).toMatchObject({ source: 'api', portal: 'msp', externalId: 'acct-000001', name: 'Northwind MSP Manager', apiBaseUrl: fake.url, apiUser: FAKE_USER.username });
    expect(linked.account).not.toHaveProperty('apiSecret');
    const paths = (await s.api<{ groups: { path: string }[] }>('GET', '/api/v1/groups')).body.groups.map((g) => g.path);
    expect(paths).toContain('All/Northwind MSP Manager/Managed MSP 1/Customer 1');
    expect(paths).toContain('All/Northwind MSP Manager/Managed MSP 3/Customer 30');
    expect(paths.filter((p) => p.startsWith('All/Northwind MSP Manager/'))).toHaveLength(33);
    expect((await s.api<{ customers: unknown[] }>('GET', '/api/v1/customers')).body.customers).toHaveLength(30);

    const row = await s.server.storage.db.get<{ api_secret: string }>('SELECT api_secret FROM msp_accounts');
    expect(row!.api_secret).toMatch(/^v1\./);
    expect(row!.api_secret).not.toContain(FAKE_USER.password);
    expect((await loadSecretBox(path.join(s.dataDir, 'secret.key'))).open(row!.api_secret)).toBe(FAKE_USER.password);
    const listed = JSON.stringify((await s.api('GET', '/api/v1/msp/accounts')).body);
    for (const hidden of ['apiSecret', row!.api_secret, FAKE_USER.password]) expect(listed).not.toContain(hidden);
    for (const line of s.logs) expect(JSON.stringify(line)).not.toContain(FAKE_USER.password);
  });

  it('writes nothing when a re-sync finds no change upstream', async () => {
    const fake = await fakePortal();
    const s = await h.startServer();
    await linkApi(s, fake);
    const before = await treeDump(s);
    const childrenCalls = fake.calls['Company/Children'];
    const run = await sync(s);
    expect(run).toMatchObject({ outcome: 'succeeded', fetched: 33, added: 0, renamed: 0, moved: 0, unlinked: 0, relinked: 0, updated: 0 });
    expect(fake.calls['Company/Children']).toBeGreaterThan(childrenCalls);
    expect(await treeDump(s)).toBe(before);
  });

  it('records a failed run with the reason and keeps the previous tree for each portal fault', async () => {
    const fake = await fakePortal();
    const s = await startServerWithFetch(quickFetchTree);
    const linked = await linkApi(s, fake);
    const before = await treeDump(s);
    const faults: [string, PortalFault, string][] = [
      ['maintenance through every retry', { kind: 'status', status: 503, times: 1000 }, 'SYNC_PORTAL_MAINTENANCE'],
      ['401 that no new login fixes', { kind: 'status', status: 401, times: 1000 }, 'SYNC_PORTAL_UNAUTHORIZED'],
      ['a malformed page', { kind: 'body', text: '{"companies":"none","totalCount":"many"}', times: 1000, calls: ['Company/Children'] }, 'SYNC_PORTAL_BAD_RESPONSE'],
      ['a page that never ends', { kind: 'endless', chunkBytes: 16, intervalMs: 20, calls: ['Company/Children'] }, 'SYNC_PORTAL_TIMEOUT'],
    ];
    for (const [what, fault, code] of faults) {
      fake.clearFaults();
      fake.inject(fault);
      const calls = { ...fake.calls };
      const run = await sync(s);
      expect({ what, outcome: run.outcome, errorCode: run.errorCode }).toEqual({ what, outcome: 'failed', errorCode: code });
      expect(run.reason!.length).toBeGreaterThan(20);
      expect(run.reason).not.toContain(FAKE_USER.password);
      const status = await accountStatus(s);
      expect({ what, state: status.state, lastRunId: status.lastRun?.id, lastSuccess: status.lastSuccess?.id }).toEqual({ what, state: 'failed', lastRunId: run.id, lastSuccess: linked.run.id });
      expect(await treeDump(s)).toBe(before);
      if (code === 'SYNC_PORTAL_MAINTENANCE') expect(fake.calls['User/Current'] - calls['User/Current']).toBe(3);
      if (code === 'SYNC_PORTAL_UNAUTHORIZED') {
        expect(fake.calls['Token/Renew'] - calls['Token/Renew']).toBeGreaterThanOrEqual(1);
        expect(fake.calls['Token/Get'] - calls['Token/Get']).toBeGreaterThanOrEqual(2);
      }
    }
    expect(fake.streamedBytes()).toBeGreaterThan(0);
    await within(fake.streamsEnded(), 5000, 'the endless answer to be dropped');
    fake.clearFaults();
    expect(await sync(s)).toMatchObject({ outcome: 'succeeded', added: 0 });
    expect((await accountStatus(s)).state).toBe('synchronized');
    expect(await treeDump(s)).toBe(before);
  });

  it('shows an ongoing sync with its progress, then synchronized', async () => {
    const fake = await fakePortal();
    const s = await h.startServer();
    await linkApi(s, fake);
    fake.inject({ kind: 'delay', ms: 400, calls: ['Company/Children'] });
    const pending = sync(s);
    const seen = await waitFor(async () => {
      const st = await accountStatus(s);
      return st.state === 'ongoing' && st.progress !== null && st.progress.fetched > 0 ? st : undefined;
    }, 'an ongoing sync with progress');
    expect(seen.progress).toMatchObject({ phase: 'fetching', fetched: expect.any(Number), startedAt: expect.any(Number) });
    expect(seen.progress!.fetched).toBeLessThan(33);
    fake.clearFaults();
    const run = await pending;
    expect(run).toMatchObject({ outcome: 'succeeded', fetched: 33 });
    const after = await accountStatus(s);
    expect(after).toMatchObject({ state: 'synchronized', progress: null, lastRun: { id: run.id } });
  });

  it('joins two concurrent sync requests into one run', async () => {
    const fake = await fakePortal();
    const s = await h.startServer();
    await linkApi(s, fake);
    const logins = fake.calls['Token/Get'];
    fake.inject({ kind: 'delay', ms: 300, calls: ['Company/Children'] });
    const first = sync(s);
    await waitFor(async () => (await accountStatus(s)).state === 'ongoing', 'the first sync to start');
    const [a, b] = await Promise.all([first, sync(s)]);
    expect(a.id).toBe(b.id);
    expect(a.outcome).toBe('succeeded');
    expect(fake.calls['Token/Get']).toBe(logins + 1);
    const runs = await s.server.storage.msp.runs(a.accountId);
    expect(runs.map((r) => r.trigger)).toEqual(['manual', 'link']);
  });
});
