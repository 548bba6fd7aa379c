import { describe, expect, it } from 'vitest';
import { buildPortalTree, FAKE_USER, type FakePortal } from '../../test/support/fake-portal.js';
import { fakePortals, fetchFailure } from '../../test/support/portal-tests.js';
import { fetchPortalTreeInWorker, type InWorkerOptions } from '../msp/fetch-in-worker.js';
import { packCompanies, unpackChunk } from '../msp/fetch-worker-protocol.js';
import { fetchPortalTree } from '../msp/portal-api.js';
import { LOWEST_NICE, type PriorityOutcome } from '../thread-priority.js';

const portal = fakePortals();

function options(p: FakePortal, extra: Partial<InWorkerOptions> = {}): InWorkerOptions {
  return { baseUrl: p.url, ...FAKE_USER, maintenance: { attempts: 2, baseMs: 5, capMs: 20 }, requestTimeoutMs: 5_000, deadlineMs: 20_000, ...extra };
}

describe('company chunks between the threads', () => {
  it('packs companies into JSON chunks that unpack to the same companies, names in any script included', () => {
    const companies = Array.from({ length: 7 }, (_, i) => ({
      id: `c-${i}`,
      name: i % 2 ? `Kunde ${i} – Müller & Söhne 株式会社 🚀` : `Customer ${i}`,
      type: 1007,
      parentId: 'msp-1',
      status: 'Active',
      email: i % 3 ? null : `it@c${i}.example`,
    }));
    const chunks = packCompanies(companies, 3);
    expect(chunks.ends).toHaveLength(3);
    expect(chunks.count).toBe(7);
    expect(chunks.ends.at(-1)).toBe(chunks.bytes.byteLength);
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const back = [0, 1, 2].flatMap((i) => unpackChunk(chunks, i, decoder));
    expect(back).toEqual(companies);
    expect(unpackChunk(chunks, 2, decoder)).toHaveLength(1);
  });

  it('packs an empty list into no chunks', () => {
    const chunks = packCompanies([], 250);
    expect(chunks).toMatchObject({ ends: [], count: 0 });
    expect(chunks.bytes.byteLength).toBe(0);
  });
});

describe('fetchPortalTreeInWorker', () => {
  it('returns the same tree, in the same order, as the client on the event loop, with progress', async () => {
    const p = await portal({ tree: buildPortalTree({ managedMsps: 4, customers: 1_300 }) }); // more than one chunk of 500
    const progress: number[] = [];
    // One call in flight, so that the order of the pages (and so of the companies) is fixed.
    const inWorker = await fetchPortalTreeInWorker(options(p, { concurrency: 1, onProgress: (n) => progress.push(n) }));
    const direct = await fetchPortalTree(options(p, { concurrency: 1 }));
    expect(inWorker.account).toEqual(direct.account);
    expect(inWorker.companies).toEqual(direct.companies);
    expect(inWorker.companies).toHaveLength(1_304);
    expect(progress.at(-1)).toBe(1_304);
  });

  it('runs the fetch in a thread at the lowest priority, leaving the calling thread as it was', async () => {
    const p = await portal();
    const before = (await import('node:os')).getPriority();
    let outcome: PriorityOutcome | undefined;
    await fetchPortalTreeInWorker(options(p, { onPriority: (o) => (outcome = o) }));
    if (process.platform !== 'linux') {
      expect(outcome?.applied).toBe(false);
      return;
    }
    expect(outcome).toMatchObject({ applied: true, nice: LOWEST_NICE });
    if (outcome?.applied) expect(outcome.threadId).not.toBe(process.pid);
    expect((await import('node:os')).getPriority()).toBe(before);
  });

  it('leaves the priority alone when asked to', async () => {
    const p = await portal();
    let outcome: PriorityOutcome | undefined;
    await fetchPortalTreeInWorker(options(p, { nice: null, onPriority: (o) => (outcome = o) }));
    expect(outcome).toEqual({ applied: false, reason: 'not asked for' });
  });

  it('fails with the portal error code the client raised in the thread', async () => {
    const p = await portal();
    const err = await fetchFailure(fetchPortalTreeInWorker(options(p, { password: 'wrong-password' })));
    expect(err.code).toBe('SYNC_PORTAL_UNAUTHORIZED');
    p.inject({ kind: 'status', status: 503, times: 10 });
    const maintenance = await fetchFailure(fetchPortalTreeInWorker(options(p)));
    expect(maintenance.code).toBe('SYNC_PORTAL_MAINTENANCE');
    expect(maintenance.retryable).toBe(true);
  });

  it('refuses invalid options with the client\'s own error', async () => {
    const err = await fetchFailure(fetchPortalTreeInWorker({ baseUrl: 'ftp://x', username: 'u', password: 'p', concurrency: 0 }));
    expect(err.code).toBe('SYNC_PORTAL_CONFIG_INVALID');
  });

  it('stops with SYNC_PORTAL_ABORTED when the caller cancels, before or during the fetch', async () => {
    const p = await portal();
    const early = new AbortController();
    early.abort();
    expect((await fetchFailure(fetchPortalTreeInWorker(options(p, { signal: early.signal })))).code).toBe('SYNC_PORTAL_ABORTED');
    p.inject({ kind: 'delay', ms: 5_000, calls: ['Company/Children'] });
    const ctl = new AbortController();
    const outcome = fetchFailure(fetchPortalTreeInWorker(options(p, { signal: ctl.signal })));
    await p.waitForCalls('Company/Children', 1);
    ctl.abort();
    expect((await outcome).code).toBe('SYNC_PORTAL_ABORTED');
  });

  it('fails with SYNC_FETCH_WORKER_FAILED, not a crash, when the thread runs out of its heap', async () => {
    const p = await portal({ tree: buildPortalTree({ managedMsps: 50, customers: 20_000 }) });
    const err = await fetchFailure(fetchPortalTreeInWorker(options(p, { maxHeapMb: 2 })));
    expect(err.code).toBe('SYNC_FETCH_WORKER_FAILED');
  });
});
