import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type TestServer } from '../../test/support/harness.js';
import { seedDevices } from '../../scripts/bench-console.js';
import { devicePageOrder, devicePageWhere, type DevicePageQuery } from '../storage/devices-store.js';

const h = new Harness();
afterEach(() => h.cleanup());

type Page = { devices: { id: string; hostname: string; groupId: string; ageBand: string; status: string }[]; total: number; offset: number; limit: number | null };
type Err = { error: { code: string } };

/** Seeds `n` devices (see scripts/bench-console.ts: every 7th never contacted, every 100th revoked, last contact 0-29 days ago). */
const seed = (s: TestServer, n: number, groups: number, now: number) => seedDevices(s.server.storage.db, n, groups, now);

async function plan(s: TestServer, q: DevicePageQuery): Promise<string> {
  const { where, params } = devicePageWhere(q);
  const rows = await s.server.storage.db.all<{ detail: string }>(
    `EXPLAIN QUERY PLAN SELECT * FROM devices ${where} ${devicePageOrder(q.sort, q.descending)} LIMIT 50 OFFSET 0`,
    params,
  );
  return rows.map((r) => r.detail).join(' | ');
}

describe('the paged device list', () => {
  it('serves pages of 100,000 devices from indexes, with filters, sorts and totals', async () => {
    const now = Date.now();
    const s = await h.startServer({}, { now: () => now });
    const groups = await seed(s, 100_000, 100, now);
    const base = { groupIds: null, sort: 'hostname', descending: false, limit: 50, offset: 0 } as const;
    expect(await plan(s, base)).toMatch(/USING (COVERING )?INDEX devices_hostname/);
    expect(await plan(s, base)).not.toContain('TEMP B-TREE');
    expect(await plan(s, { ...base, groupIds: [groups[3]!] })).toMatch(/USING (COVERING )?INDEX devices_group_hostname/);
    expect(await plan(s, { ...base, groupIds: [groups[3]!] })).not.toContain('TEMP B-TREE');
    expect(await plan(s, { ...base, groupIds: groups.slice(0, 5) })).toMatch(/USING (COVERING )?INDEX devices_group_hostname/);
    expect(await plan(s, { ...base, sort: 'lastContact', descending: true })).toMatch(/USING (COVERING )?INDEX devices_last_contact/);
    expect(await plan(s, { ...base, sort: 'lastContact', descending: true })).not.toContain('TEMP B-TREE');

    const page = async (query: string) => (await s.api<Page>('GET', `/api/v1/devices?${query}`)).body;
    const first = await page('limit=50');
    expect(first.total).toBe(100_000);
    expect(first.devices.map((d) => d.hostname)).toEqual(Array.from({ length: 50 }, (_, i) => `host-${String(i).padStart(6, '0')}`));
    const later = await page('limit=50&offset=99990');
    expect(later.devices.map((d) => d.hostname)).toEqual(Array.from({ length: 10 }, (_, i) => `host-${String(99990 + i).padStart(6, '0')}`));
    const desc = await page('limit=3&sort=hostname&order=desc');
    expect(desc.devices.map((d) => d.id)).toEqual(['dev_099999', 'dev_099998', 'dev_099997']);
    const oneGroup = await page(`limit=500&group=${groups[7]}`);
    expect(oneGroup.total).toBe(1000);
    expect(oneGroup.devices.every((d) => d.groupId === groups[7])).toBe(true);
    const text = await page('q=HOST-04242');
    expect(text.devices.map((d) => d.hostname)).toEqual(Array.from({ length: 10 }, (_, i) => `host-04242${i}`));
    expect((await page('q=dev_000123')).devices.map((d) => d.id)).toEqual(['dev_000123']);
    expect((await page('q=10.0.1.4&limit=1')).devices[0]!.id).toBe(`dev_${String(260).padStart(6, '0')}`);
    const recent = await page('band=recent&limit=500');
    expect(recent.devices.every((d) => d.ageBand === 'recent')).toBe(true);
    expect(recent.total).toBe(Array.from({ length: 100_000 }, (_, i) => i).filter((i) => i % 7 !== 0 && i % 30 === 0).length);
    const warning = await page('band=warning&limit=500');
    expect(warning.devices.length).toBeGreaterThan(0);
    expect(warning.devices.every((d) => d.ageBand === 'warning')).toBe(true);
    expect((await page('band=never&limit=1')).total).toBe(Math.ceil(100_000 / 7));
    expect((await page('status=revoked&limit=1')).total).toBe(1000);
    expect((await page('status=online&limit=1')).total).toBe(0);
    const newest = await page('sort=lastContact&order=desc&limit=5');
    expect(newest.devices.every((d) => d.ageBand === 'recent')).toBe(true);
    expect((await page('limit=100000')).devices).toHaveLength(500); // capped at the page maximum
  });

  it('refuses bad page parameters with BAD_REQUEST', async () => {
    const s = await h.startServer();
    for (const q of ['limit=-1', 'limit=ten', 'offset=1.5', 'sort=colour', 'order=up', 'status=asleep', 'band=green', 'bogus=1', `q=${'x'.repeat(300)}`]) {
      const res = await s.api<Err>('GET', `/api/v1/devices?${q}`);
      expect({ q, status: res.status, code: res.body.error.code }).toEqual({ q, status: 400, code: 'BAD_REQUEST' });
    }
    expect((await s.api<Err>('GET', '/api/v1/devices?group=Nowhere')).body.error.code).toBe('GROUP_NOT_FOUND');
  });
});
