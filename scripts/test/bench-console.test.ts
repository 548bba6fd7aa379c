import { describe, expect, it } from 'vitest';
import { benchDevicePages, benchFeed } from '../bench-console.js';

describe('bench console', () => {
  it('times every kind of device page over a seeded database, with the right totals', async () => {
    const pages = await benchDevicePages({ devices: 2000, runs: 3 });
    expect(pages.map((p) => p.name)).toHaveLength(8);
    const total = (name: string) => pages.find((p) => p.name.startsWith(name))!.total;
    expect(total('first page')).toBe(2000);
    expect(total('one group')).toBe(100);
    expect(total('ten groups')).toBe(1000);
    expect(total('online now')).toBe(1000); // the even ids; the revoked ones (every 100th, i % 100 = 99) are all odd
    expect(pages.every((p) => p.ms > 0)).toBe(true);
  });

  it('feeds subscribers at a steady rate and reports its CPU share', async () => {
    const r = await benchFeed({ eventsPerSec: 400, seconds: 1, subscribers: 2 });
    expect(r.batches).toBeGreaterThanOrEqual(4);
    expect(r.cpuPercent).toBeGreaterThan(0);
  });
});
