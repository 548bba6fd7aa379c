/**
 * `npm run bench -- console`: the console's two hot paths at size. The
 * device list's page queries over 100,000 devices (each kind of page the
 * console asks for: first page, deep page, one group, last-contact order,
 * text search, age band, online now), and the live feed at 2,000 events a
 * second to 10 subscribers (CPU of the server process). Writes the
 * `console` section of docs/benchmarks.md.
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { parseCommandArgs, usageError, type CliIo } from '../common/cli-support.js';
import { LiveFeed } from '../server/console/live-feed.js';
import type { Sql } from '../server/storage/db.js';
import type { DevicePageQuery } from '../server/storage/devices-store.js';
import { openStorage } from '../server/storage/index.js';
import { describeMachine } from './bench-machine.js';
import { writeSection } from './bench-sections.js';

/** Usage of the console mode. */
export const CONSOLE_USAGE = 'usage: node dist/scripts/bench.js console [--devices 100000] [--out docs/benchmarks.md]';

const DAY = 86_400_000;

/**
 * Seeds `n` devices into `groups` static groups (`grp_seed000`…) in one statement: host-000000…,
 * last contact spread over 0-29 days ago (every 7th never contacted), every 100th revoked.
 */
export async function seedDevices(sql: Sql, n: number, groups: number, now: number): Promise<string[]> {
  const ids = Array.from({ length: groups }, (_, i) => `grp_seed${String(i).padStart(3, '0')}`);
  for (let i = 0; i < ids.length; i += 500) {
    const chunk = ids.slice(i, i + 500);
    await sql.run(`INSERT INTO groups (id, parent_id, name, kind, created_at) VALUES ${chunk.map(() => "(?, 'grp_all', ?, 'static', 0)").join(', ')}`, chunk.flatMap((id) => [id, id]));
  }
  await sql.run(
    `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
     INSERT INTO devices (id, cert_serial, cert_not_after, group_id, hostname, enrolled_at, last_checkin_at, last_connected_at, last_address, revoked_at)
     SELECT printf('dev_%06d', i), printf('%06x', i), ? + 365 * ${DAY}, printf('grp_seed%03d', i % ?), printf('host-%06d', i), ? - 40 * ${DAY},
       CASE WHEN i % 7 = 0 THEN NULL ELSE ? - (i % 30) * ${DAY} - 1000 END, NULL, printf('10.0.%d.%d', (i / 256) % 256, i % 256),
       CASE WHEN i % 100 = 99 THEN ? ELSE NULL END
     FROM n`,
    [n, now, groups, now, now, now],
  );
  return ids;
}

/** One timed kind of page. */
export interface PageTiming {
  readonly name: string;
  readonly ms: number;
  readonly total: number;
}

/** What the console bench measured. */
export interface ConsoleBenchResult {
  readonly devices: number;
  readonly pages: readonly PageTiming[];
  readonly feed: { readonly eventsPerSec: number; readonly subscribers: number; readonly cpuPercent: number; readonly batches: number } | null;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Seeds a temporary database and times each kind of page (median of `runs` after a warm-up). */
export async function benchDevicePages(o: { devices: number; runs?: number }): Promise<PageTiming[]> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-bench-console-'));
  const storage = await openStorage(path.join(dir, 'rollcall.db'), { synchronous: 'NORMAL' });
  try {
    const now = Date.now();
    const groups = await seedDevices(storage.db, o.devices, Math.max(1, Math.round(o.devices / 100)), now);
    const online = Array.from({ length: Math.floor(o.devices / 2) }, (_, i) => `dev_${String(i * 2).padStart(6, '0')}`);
    const base: DevicePageQuery = { groupIds: null, sort: 'hostname', descending: false, limit: 50, offset: 0 };
    const kinds: [string, DevicePageQuery][] = [
      ['first page by host name', base],
      ['page at offset 50,000', { ...base, offset: Math.floor(o.devices / 2) }],
      ['one group (100 devices)', { ...base, groupIds: [groups[1]!] }],
      ['ten groups (a customer subtree)', { ...base, groupIds: groups.slice(0, 10) }],
      ['newest last contact first', { ...base, sort: 'lastContact', descending: true }],
      ['text search "4242"', { ...base, text: '4242' }],
      ['band warning (2-14 days)', { ...base, contactSince: now - 14 * DAY, contactBefore: now - 2 * DAY }],
      ['online now (half connected)', { ...base, ids: { include: true, list: online }, revoked: false }],
    ];
    const out: PageTiming[] = [];
    for (const [name, q] of kinds) {
      let total = (await storage.devices.page(q)).total;
      const runs: number[] = [];
      for (let i = 0; i < (o.runs ?? 7); i += 1) {
        const t = performance.now();
        total = (await storage.devices.page(q)).total;
        runs.push(performance.now() - t);
      }
      out.push({ name, ms: median(runs), total });
    }
    return out;
  } finally {
    await storage.db.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Publishes `eventsPerSec` events for `seconds` into a feed with `subscribers` reading over loopback HTTP; measures this process's CPU. */
export async function benchFeed(o: { eventsPerSec: number; seconds: number; subscribers: number }): Promise<NonNullable<ConsoleBenchResult['feed']>> {
  const feed = new LiveFeed({ briefs: async (ids) => new Map(ids.map((id) => [id, { hostname: id, groupId: 'grp_x' }])), log: pino({ level: 'silent' }) });
  const server = http.createServer((_req, res) => feed.subscribe(res, { admin: true, visibleGroups: () => null }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  let batches = 0;
  const clients = Array.from({ length: o.subscribers }, () =>
    http.get({ host: '127.0.0.1', port, path: '/' }, (res) => res.on('data', (c: Buffer) => (batches += (c.toString('utf8').match(/(?:^|\n)data: /g) ?? []).length))),
  );
  try {
    while (feed.size < o.subscribers) await new Promise((r) => setTimeout(r, 10));
    const cpu = process.cpuUsage();
    const started = performance.now();
    const perStep = Math.round(o.eventsPerSec / 20);
    for (let step = 0; step < o.seconds * 20; step += 1) {
      for (let i = 0; i < perStep; i += 1) {
        const id = `dev_${(step * perStep + i) % 5000}`;
        feed.publish(i % 100 === 0 ? { kind: 'connect', deviceId: id, address: '10.0.0.1', at: Date.now() } : { kind: 'checkin', deviceId: id, seq: step, at: Date.now() });
      }
      const due = started + (step + 1) * 50;
      await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
    }
    const used = process.cpuUsage(cpu);
    const wall = performance.now() - started;
    return { eventsPerSec: o.eventsPerSec, subscribers: o.subscribers, cpuPercent: ((used.user + used.system) / 1000 / wall) * 100, batches };
  } finally {
    for (const c of clients) c.destroy();
    feed.close();
    await new Promise((r) => server.close(r));
  }
}

function render(startedAt: Date, r: ConsoleBenchResult): string {
  const m = describeMachine();
  const fmt = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1));
  return [
    '## Console: device pages and the live feed',
    '',
    `_Written by \`npm run bench -- console\` on ${startedAt.toISOString()}: ${m.cpuCount} × ${m.cpuModel}, ${(m.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB, ${m.os}, Node ${m.nodeVersion}._`,
    '',
    `| Page of 50 out of ${r.devices.toLocaleString('en-US')} devices | Matching | Query time (median of 7, page and total count) |`,
    '| --- | ---: | ---: |',
    ...r.pages.map((p) => `| ${p.name} | ${p.total.toLocaleString('en-US')} | ${fmt(p.ms)} ms |`),
    '',
    r.feed
      ? `Live feed: ${r.feed.eventsPerSec.toLocaleString('en-US')} events/s to ${r.feed.subscribers} subscribers over loopback HTTP cost ${r.feed.cpuPercent.toFixed(1)} % of one core (coalescing, per-subscriber filtering and serialisation; ${r.feed.batches} batches delivered).`
      : '',
    '',
    '- **Pages**: `DevicesStore.page` over a temporary database seeded with one SQL statement (last contact spread over 30 days, every 7th device never connected, every 100th revoked, 100 devices per group), indexes of migration 5 (`devices_hostname`, `devices_group_hostname`, `devices_last_contact`). The time covers the page and its `count(*)`; the count is what grows with the matching rows.',
    '- **Feed**: `LiveFeed` with its default tick (200 ms) and cap (200 items per batch); 5,000 devices checking in, 1 % connects.',
  ].join('\n');
}

/** Runs both measurements and writes the section; resolves with the exit code. */
export async function runConsoleBench(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { devices: { type: 'string' }, out: { type: 'string' }, debug: { type: 'boolean' } });
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}"\n${CONSOLE_USAGE}`);
  if (values.devices !== undefined && (!/^\d+$/.test(values.devices) || Number(values.devices) < 100)) throw usageError(`--devices must be a whole number of at least 100\n${CONSOLE_USAGE}`);
  const devices = values.devices === undefined ? 100_000 : Number(values.devices);
  const out = path.resolve(values.out ?? 'docs/benchmarks.md');
  const startedAt = new Date();
  io.out(`device pages over ${devices} devices`);
  const pages = await benchDevicePages({ devices });
  for (const p of pages) io.out(`  ${p.name}: ${p.ms.toFixed(1)} ms (${p.total} matching)`);
  io.out('live feed: 2,000 events/s to 10 subscribers for 5 s');
  const feed = await benchFeed({ eventsPerSec: 2000, seconds: 5, subscribers: 10 });
  io.out(`  ${feed.cpuPercent.toFixed(1)} % of one core`);
  await writeSection(out, 'console', render(startedAt, { devices, pages, feed }));
  io.out(`wrote the console section of ${out}`);
  return 0;
}
