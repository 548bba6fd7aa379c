import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { captureLogger, Harness, waitFor } from '../../test/support/harness.js';
import { LiveFeed, type FeedBatch } from '../console/live-feed.js';

const h = new Harness();
afterEach(() => h.cleanup());

/** A feed behind a plain loopback HTTP server (the console route adds TLS and auth; this is about batching and memory). */
async function feedServer(opts: { slowCloseMs?: number; maxPending?: number } = {}) {
  const { log, lines } = captureLogger();
  const briefs = async (ids: readonly string[]) => new Map(ids.map((id) => [id, { hostname: `host-${id}`, groupId: Number(id.slice(4)) % 2 === 0 ? 'grp_even' : 'grp_odd' }]));
  const feed = new LiveFeed({ briefs, log, tickMs: 100, maxPerBatch: 200, ...opts });
  const server = http.createServer((req, res) => {
    const admin = req.url === '/admin';
    feed.subscribe(res, { admin, visibleGroups: () => (admin ? null : new Set(['grp_even'])) });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  h.defer(() => new Promise((r) => server.close(r)));
  h.defer(() => feed.close());
  return { feed, lines, port: (server.address() as AddressInfo).port };
}

function reader(port: number, path: string, stall = false): { batches: FeedBatch[]; req: http.ClientRequest } {
  const batches: FeedBatch[] = [];
  const req = http.get({ host: '127.0.0.1', port, path }, (res) => {
    if (stall) {
      res.pause(); // reads nothing: the socket fills up
      return;
    }
    let buf = '';
    res.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        for (const line of buf.slice(0, i).split('\n')) if (line.startsWith('data: ')) batches.push(JSON.parse(line.slice(6)) as FeedBatch);
        buf = buf.slice(i + 2);
      }
    });
  });
  req.on('error', () => undefined);
  h.defer(() => req.destroy());
  return { batches, req };
}

describe('live feed', () => {
  it('coalesces 2,000 events/s into capped batches per tick, scoped per subscriber, and counts what it left out', async () => {
    const { feed, port } = await feedServer();
    const admin = reader(port, '/admin');
    const scoped = reader(port, '/scoped');
    await waitFor(() => feed.size === 2, 'two subscribers', 5000);
    // 2 s at 2,000 events/s: 50 devices checking in many times a tick, and once a burst of 400 connects.
    for (let step = 0; step < 20; step += 1) {
      for (let i = 0; i < 200; i += 1) feed.publish({ kind: 'checkin', deviceId: `dev_${i % 50}`, seq: step * 200 + i, at: Date.now() });
      if (step === 10) for (let i = 0; i < 400; i += 1) feed.publish({ kind: 'connect', deviceId: `dev_${1000 + i}`, address: '10.0.0.1', at: Date.now() });
      await new Promise((r) => setTimeout(r, 100));
    }
    await waitFor(() => admin.batches.length >= 10 && scoped.batches.length >= 10, 'batches to both', 5000);
    const all = admin.batches.flatMap((b) => b.items);
    expect(admin.batches.every((b) => b.items.length <= 200)).toBe(true);
    // Coalesced: never two check-in items of one device in one batch.
    for (const b of admin.batches) {
      const ids = b.items.filter((i) => i.kind === 'checkin').map((i) => i.deviceId);
      expect(new Set(ids).size).toBe(ids.length);
    }
    expect(all.some((i) => i.kind === 'checkin' && i.count > 1)).toBe(true);
    expect(all.some((i) => i.kind === 'connect')).toBe(true);
    expect(admin.batches.some((b) => b.more > 0)).toBe(true);
    // The scoped subscriber only ever sees its groups.
    expect(scoped.batches.flatMap((b) => b.items).every((i) => i.groupId === 'grp_even')).toBe(true);
    expect(scoped.batches.flatMap((b) => b.items).length).toBeGreaterThan(0);
  });

  it('keeps memory bounded: events beyond the pending cap are only counted, and a subscriber that stops reading is cut off', async () => {
    const { feed, port, lines } = await feedServer({ slowCloseMs: 300, maxPending: 1000 });
    reader(port, '/admin', true);
    await waitFor(() => feed.size === 1, 'a subscriber', 5000);
    const big = 'x'.repeat(2000);
    const started = Date.now();
    let published = 0;
    while (feed.size > 0 && Date.now() - started < 20_000) {
      for (let i = 0; i < 5000; i += 1) {
        feed.publish({ kind: 'reject', deviceId: null, reason: big, address: `10.0.${i % 256}.1`, at: Date.now() });
        published += 1;
      }
      expect((feed as unknown as { pending: unknown[] }).pending.length).toBeLessThanOrEqual(1000);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(feed.size).toBe(0);
    expect(published).toBeGreaterThan(5000);
    expect(lines.some((l) => l.msg === 'live feed subscriber too slow; disconnected')).toBe(true);
  });
});
