import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../../test/support/harness.js';
import { MAX_ATTEMPTS, ReportQueue } from '../report-queue.js';

const h = new Harness();
afterEach(() => h.cleanup());

const attempt = (n: number) => ({ server: 'srv:2222', class: 'REFUSED', code: 'ECONNREFUSED', message: `attempt ${n}`, at: n });
const probe = (port: number) => ({ host: 'srv', port, role: 'agent' as const, ok: true, ms: 1, at: 1 });

async function open(): Promise<{ q: ReportQueue; file: string; errors: unknown[] }> {
  const file = path.join(await h.tempDir(), 'attempts.json');
  const errors: unknown[] = [];
  const q = await ReportQueue.open(file, (e) => errors.push(e));
  h.defer(() => q.flushed());
  return { q, file, errors };
}

describe('report queue', () => {
  it('keeps failed attempts across a restart and forgets them only when acked', async () => {
    const { q, file } = await open();
    q.addAttempt(attempt(1));
    q.addAttempt(attempt(2));
    await q.flushed();
    const reopened = await ReportQueue.open(file, () => undefined);
    h.defer(() => reopened.flushed());
    const r = reopened.next()!;
    expect(r.attempts.map((a) => a.message)).toEqual(['attempt 1', 'attempt 2']);
    expect(reopened.next()).toBeNull();
    reopened.addAttempt(attempt(3));
    reopened.acked(r.id);
    expect(reopened.next()!.attempts.map((a) => a.message)).toEqual(['attempt 3']);
  });

  it('sends the same items again after a lost channel', async () => {
    const { q } = await open();
    q.addAttempt(attempt(1));
    q.setProbes([probe(2222), probe(8443)]);
    const first = q.next()!;
    q.lost();
    const again = q.next()!;
    expect(again.id).not.toBe(first.id);
    expect(again.attempts).toEqual(first.attempts);
    expect(again.probes).toEqual(first.probes);
    q.acked(first.id);
    expect(q.pendingAttempts).toBe(1);
    q.acked(again.id);
    expect(q.pendingAttempts).toBe(0);
    expect(q.next()).toBeNull();
  });

  it('drops the oldest attempts beyond its bound, counts them, and reports the count', async () => {
    const { q, file } = await open();
    for (let i = 1; i <= MAX_ATTEMPTS + 10; i += 1) q.addAttempt(attempt(i));
    const r = q.next()!;
    expect(r.attempts).toHaveLength(MAX_ATTEMPTS);
    expect(r.attempts[0]!.message).toBe('attempt 11');
    expect(r.droppedAttempts).toBe(10);
    q.acked(r.id);
    await q.flushed();
    expect(JSON.parse(await fs.readFile(file, 'utf8'))).toEqual({ attempts: [], dropped: 0 });
  });

  it('starts empty from a damaged file and says so', async () => {
    const { file } = await open();
    await fs.writeFile(file, '{ not json');
    const errors: unknown[] = [];
    const q = await ReportQueue.open(file, (e) => errors.push(e));
    h.defer(() => q.flushed());
    expect(q.next()).toBeNull();
    expect(errors).toHaveLength(1);
  });

  it('keeps probes that arrive while a report is in flight', async () => {
    const { q } = await open();
    q.setProbes([probe(1)]);
    const r = q.next()!;
    q.setProbes([probe(2)]);
    q.acked(r.id);
    expect(q.next()!.probes.map((p) => p.port)).toEqual([2]);
  });
});
