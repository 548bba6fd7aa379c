import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { fetchPortalTree, type PortalApiOptions } from '../msp/portal-api.js';
import { EntityType, validateTree, type PortalTree } from '../msp/tree.js';
import { buildPortalTree, FAKE_USER, ManualClock, type FakePortal } from '../../test/support/fake-portal.js';
import { fakePortals, fetchFailure } from '../../test/support/portal-tests.js';

const portal = fakePortals();

/** Client options for the fake: small retry delays and deadlines so failures come fast. */
function options(p: FakePortal, extra: Partial<PortalApiOptions> = {}): PortalApiOptions {
  return { baseUrl: p.url, ...FAKE_USER, maintenance: { attempts: 4, baseMs: 5, capMs: 40 }, requestTimeoutMs: 5_000, deadlineMs: 20_000, ...extra };
}

function expectWhole(tree: PortalTree, p: FakePortal): void {
  expect(tree.account).toEqual(p.tree.account);
  const byId = new Map(tree.companies.map((c) => [c.id, c]));
  expect(byId.size).toBe(p.tree.companies.length);
  for (const c of p.tree.companies) expect(byId.get(c.id), c.id).toEqual(c);
}

describe('fetchPortalTree: walking the structure', () => {
  it('walks 1 manager, 3 managed MSPs and 250 customers page by page with the right parents', async () => {
    const p = await portal({ tree: buildPortalTree({ managedMsps: 3, customers: 250, customersPerMsp: [120, 100, 30] }) });
    const progress: number[] = [];
    const tree = await fetchPortalTree(options(p, { onProgress: (n) => progress.push(n) }));
    expectWhole(tree, p);
    expect(validateTree(tree).companies).toHaveLength(253);
    // manager: 1 page; 120 → 2 pages; 100 → 100 + an empty page; 30 → 1 page. Customers are never listed.
    expect(p.calls['Company/Children']).toBe(6);
    expect(p.calls['Token/Get']).toBe(1);
    expect(progress.at(-1)).toBe(253);
    expect(tree.companies.find((c) => c.id === 'cust-000001')?.parentId).toBe('msp-0001');
    expect(tree.companies.filter((c) => c.type === EntityType.MANAGED_MSP).every((c) => c.parentId === tree.account.id)).toBe(true);
  });

  it('lists several companies at once', async () => {
    const p = await portal({ tree: buildPortalTree({ managedMsps: 6, customers: 60 }) });
    p.inject({ kind: 'delay', ms: 60, calls: ['Company/Children'] });
    expectWhole(await fetchPortalTree(options(p, { concurrency: 4 })), p);
    expect(p.peakInFlight('Company/Children')).toBeGreaterThan(1);
    expect(p.peakInFlight('Company/Children')).toBeLessThanOrEqual(4);
  });

  it('uses a smaller page size when asked to', async () => {
    const p = await portal();
    expectWhole(await fetchPortalTree(options(p, { pageSize: 25 })), p);
    expect(p.calls['Company/Children']).toBe(1 + 3 * 4); // 84, 83, 83 customers: 4 pages each
  });

  it('refuses an account that cannot be linked before walking it', async () => {
    const base = buildPortalTree({ managedMsps: 1, customers: 2 });
    const p = await portal({ tree: { ...base, account: { ...base.account, type: EntityType.DISTRIBUTOR } } });
    const err = await fetchFailure(fetchPortalTree(options(p)));
    expect(err.code).toBe('SYNC_INVALID_TREE');
    expect(p.calls['Company/Children']).toBe(0);
  });

  it('refuses invalid settings, listing every problem', async () => {
    const err = await fetchFailure(fetchPortalTree({ baseUrl: 'ftp://x', username: 'u', password: 'p', pageSize: 101, concurrency: 0 }));
    expect(err.code).toBe('SYNC_PORTAL_CONFIG_INVALID');
    expect(err.message).toMatch(/pageSize.*concurrency.*baseUrl/);
  });
});

describe('fetchPortalTree: tokens', () => {
  it('renews the access token ahead of expiry without ever getting a 401', async () => {
    const clock = new ManualClock();
    const p = await portal({ clock, msPerCall: 10, accessTokenLifetimeMs: 150 });
    const tree = await fetchPortalTree(options(p, { now: clock.now, tokenRenewAfterMs: 40, pageSize: 20, concurrency: 3 }));
    expectWhole(tree, p);
    // 20 calls of 10 ms against 150 ms tokens renewed after 40 ms: renewed more than once (concurrent callers share one renewal).
    expect(p.calls['Token/Renew']).toBeGreaterThanOrEqual(2);
    expect(p.calls['Token/Get']).toBe(1);
    expect(p.statuses.get(401)).toBeUndefined();
  });

  it('recovers from a 401 by renewing the token and retrying', async () => {
    const p = await portal();
    p.inject({ kind: 'status', status: 401, times: 1, calls: ['Company/Children'] });
    expectWhole(await fetchPortalTree(options(p)), p);
    expect(p.calls['Token/Renew']).toBe(1);
    expect(p.calls['Token/Get']).toBe(1);
  });

  it('starts a new session when renewal is refused', async () => {
    const p = await portal();
    p.inject({ kind: 'status', status: 401, times: 1, calls: ['Company/Detail'] });
    p.inject({ kind: 'status', status: 401, times: 1, calls: ['Token/Renew'] });
    expectWhole(await fetchPortalTree(options(p)), p);
    expect(p.calls['Token/Renew']).toBe(1);
    expect(p.calls['Token/Get']).toBe(2);
  });

  it('starts a new session when a proactive renewal is refused', async () => {
    const clock = new ManualClock();
    const p = await portal({ clock, msPerCall: 10 });
    p.inject({ kind: 'status', status: 400, times: 1_000, calls: ['Token/Renew'] });
    expectWhole(await fetchPortalTree(options(p, { now: clock.now, tokenRenewAfterMs: 25, concurrency: 1 })), p);
    expect(p.calls['Token/Get']).toBeGreaterThan(1);
    expect(p.statuses.get(401)).toBeUndefined();
  });

  it('fails SYNC_PORTAL_UNAUTHORIZED when neither renewal nor a new login cures a 401', async () => {
    const p = await portal();
    p.inject({ kind: 'status', status: 401, times: 1_000, calls: ['Company/Children'] });
    const err = await fetchFailure(fetchPortalTree(options(p)));
    expect(err.code).toBe('SYNC_PORTAL_UNAUTHORIZED');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('Company/Children');
    expect(p.calls['Token/Get']).toBe(2);
  });

  it('fails SYNC_PORTAL_UNAUTHORIZED with a clear sentence when the password is wrong', async () => {
    const p = await portal({ users: { [FAKE_USER.username]: 'another password' } });
    const err = await fetchFailure(fetchPortalTree(options(p)));
    expect(err.code).toBe('SYNC_PORTAL_UNAUTHORIZED');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain(`refused the username "${FAKE_USER.username}" and its password`);
    expect(p.calls['User/Current']).toBe(0);
  });
});

describe('fetchPortalTree: maintenance and transport failures', () => {
  it('retries 503 with growing backoff and then succeeds', async () => {
    const p = await portal();
    p.inject({ kind: 'status', status: 503, times: 3, calls: ['Company/Children'] });
    const waits: number[] = [];
    const sleep = (ms: number): Promise<void> => {
      waits.push(ms);
      return new Promise((r) => setTimeout(r, ms));
    };
    expectWhole(await fetchPortalTree(options(p, { sleep, random: () => 0.999, concurrency: 1 })), p);
    expect(waits).toEqual([4, 9, 19]); // full jitter at its top: base 5 ms, doubling
  });

  it('gives up with SYNC_PORTAL_MAINTENANCE, retryable, after the configured attempts', async () => {
    const p = await portal();
    p.inject({ kind: 'status', status: 503, times: 1_000, calls: ['User/Current'] });
    const err = await fetchFailure(fetchPortalTree(options(p, { maintenance: { attempts: 3, baseMs: 1, capMs: 4 } })));
    expect(err.code).toBe('SYNC_PORTAL_MAINTENANCE');
    expect(err.retryable).toBe(true);
    expect(p.calls['User/Current']).toBe(3);
  });

  it('fails SYNC_PORTAL_UNREACHABLE, retryable, when nothing listens', async () => {
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((r) => probe.close(() => r()));
    const err = await fetchFailure(fetchPortalTree({ baseUrl: `http://127.0.0.1:${port}`, ...FAKE_USER }));
    expect(err.code).toBe('SYNC_PORTAL_UNREACHABLE');
    expect(err.retryable).toBe(true);
  });

  it('fails SYNC_PORTAL_HTTP_ERROR on an unexpected status, retryable only for server errors', async () => {
    const p = await portal();
    p.inject({ kind: 'status', status: 500, times: 1, calls: ['Company/Detail'] });
    const err = await fetchFailure(fetchPortalTree(options(p)));
    expect([err.code, err.retryable]).toEqual(['SYNC_PORTAL_HTTP_ERROR', true]);
    p.inject({ kind: 'status', status: 404, times: 1, calls: ['Company/Children'] });
    const err2 = await fetchFailure(fetchPortalTree(options(p)));
    expect([err2.code, err2.retryable]).toEqual(['SYNC_PORTAL_HTTP_ERROR', false]);
  });
});

describe('fetchPortalTree: hostile or broken answers', () => {
  it.each([
    ['is not JSON', 'companies: none'],
    ['has the wrong shape', '{"items": [], "count": 0}'],
    ['has wrong types', '{"companies": [{"publicId": "x", "name": 7, "type": 1007}], "totalCount": 1}'],
    ['has a negative totalCount', '{"companies": [], "totalCount": -1}'],
  ])('fails SYNC_PORTAL_BAD_RESPONSE naming the call when a page %s', async (_what, text) => {
    const p = await portal();
    p.inject({ kind: 'body', text, calls: ['Company/Children'] });
    const err = await fetchFailure(fetchPortalTree(options(p)));
    expect(err.code).toBe('SYNC_PORTAL_BAD_RESPONSE');
    expect(err.message).toContain('Company/Children');
  });

  it('fails SYNC_PORTAL_BAD_RESPONSE when User/Current has no companyId', async () => {
    const p = await portal();
    p.inject({ kind: 'body', text: '{"name": "api"}', calls: ['User/Current'] });
    const err = await fetchFailure(fetchPortalTree(options(p)));
    expect([err.code, err.message]).toEqual(['SYNC_PORTAL_BAD_RESPONSE', expect.stringContaining('User/Current')]);
  });

  it('never quotes a token from a broken Token/Get answer in the error or its causes', async () => {
    const p = await portal();
    p.inject({ kind: 'body', text: 'at-0123456789abcdef01234567', calls: ['Token/Get'] });
    const err = await fetchFailure(fetchPortalTree(options(p)));
    expect([err.code, err.message]).toEqual(['SYNC_PORTAL_BAD_RESPONSE', expect.stringContaining('Token/Get')]);
    for (let e: unknown = err; e instanceof Error; e = e.cause) expect(e.message).not.toContain('at-01234');
  });

  it.each([
    ['totalCount changes between pages', { kind: 'total-count-shift' } as const, 'changed from 150 to 151 between pages'],
    ['the same company appears on two pages', { kind: 'duplicate-across-pages' } as const, 'company "cust-000100" appears twice'],
    ['a page is longer than take', { kind: 'page-too-long' } as const, 'has 101 companies, more than the 100 asked for'],
  ])('fails SYNC_PORTAL_INCONSISTENT when %s', async (_what, fault, says) => {
    const p = await portal({ tree: buildPortalTree({ managedMsps: 1, customers: 150 }) });
    p.inject(fault);
    const err = await fetchFailure(fetchPortalTree(options(p)));
    expect(err.code).toBe('SYNC_PORTAL_INCONSISTENT');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(says);
  });

  it.each([
    ['more companies than totalCount', '{"companies": [{"publicId": "a", "name": "A", "type": 1006}, {"publicId": "b", "name": "B", "type": 1006}], "totalCount": 1}', 'more than its totalCount of 1'],
    ['fewer companies than totalCount', '{"companies": [], "totalCount": 4}', 'stopped after 0 of its totalCount of 4'],
  ])('fails SYNC_PORTAL_INCONSISTENT when a parent has %s', async (_what, text, says) => {
    const p = await portal();
    p.inject({ kind: 'body', text, calls: ['Company/Children'] });
    const err = await fetchFailure(fetchPortalTree(options(p)));
    expect([err.code, err.message]).toEqual(['SYNC_PORTAL_INCONSISTENT', expect.stringContaining(says)]);
  });

  it('fails SYNC_PORTAL_TIMEOUT when an answer trickles in forever', async () => {
    const p = await portal();
    p.inject({ kind: 'endless', chunkBytes: 8, intervalMs: 20, calls: ['Company/Children'] });
    const started = performance.now();
    const err = await fetchFailure(fetchPortalTree(options(p, { requestTimeoutMs: 400 })));
    expect(err.code).toBe('SYNC_PORTAL_TIMEOUT');
    expect(err.message).toContain('Company/Children');
    expect(performance.now() - started).toBeLessThan(5_000);
    await p.streamsEnded();
  });

  it('aborts an endless fast stream soon after maxResponseBytes with SYNC_PORTAL_RESPONSE_TOO_LARGE', async () => {
    const p = await portal();
    p.inject({ kind: 'endless', chunkBytes: 64 * 1024, intervalMs: 0, calls: ['Company/Children'] });
    const err = await fetchFailure(fetchPortalTree(options(p, { maxResponseBytes: 1024 * 1024 })));
    expect(err.code).toBe('SYNC_PORTAL_RESPONSE_TOO_LARGE');
    await p.streamsEnded();
    expect(p.streamedBytes()).toBeLessThan(1024 * 1024 + 16 * 1024 * 1024); // the cap plus what socket buffers held
  });

  it.each([true, false])('refuses a 1 GiB answer (length declared: %s) after at most maxResponseBytes, in bounded memory', async (declareLength) => {
    const p = await portal();
    p.inject({ kind: 'huge', bytes: 1024 ** 3, declareLength, calls: ['Company/Detail'] });
    const heapBefore = process.memoryUsage().arrayBuffers;
    const started = performance.now();
    const err = await fetchFailure(fetchPortalTree(options(p)));
    expect(err.code).toBe('SYNC_PORTAL_RESPONSE_TOO_LARGE');
    expect(performance.now() - started).toBeLessThan(10_000);
    await p.streamsEnded();
    expect(p.streamedBytes()).toBeLessThan(4 * 1024 * 1024 + 16 * 1024 * 1024);
    expect(process.memoryUsage().arrayBuffers - heapBefore).toBeLessThan(64 * 1024 * 1024);
  });

  it('fails SYNC_PORTAL_TIMEOUT when the whole fetch outlives its deadline', async () => {
    const p = await portal();
    p.inject({ kind: 'delay', ms: 150, calls: ['Company/Children'] });
    const started = performance.now();
    const err = await fetchFailure(fetchPortalTree(options(p, { deadlineMs: 250 })));
    expect(err.code).toBe('SYNC_PORTAL_TIMEOUT');
    expect(err.message).toContain('did not finish within 250 ms');
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  it('stops with SYNC_PORTAL_ABORTED when the caller cancels', async () => {
    const p = await portal();
    p.inject({ kind: 'delay', ms: 5_000, calls: ['Company/Children'] });
    const ctl = new AbortController();
    const outcome = fetchFailure(fetchPortalTree(options(p, { signal: ctl.signal })));
    await p.waitForCalls('Company/Children', 1);
    ctl.abort();
    const started = performance.now();
    const err = await outcome;
    expect(err.code).toBe('SYNC_PORTAL_ABORTED');
    expect(performance.now() - started).toBeLessThan(3_000);
  });
});
