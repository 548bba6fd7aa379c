import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHRT_PATHS } from '../../server/thread-priority.js';
import { parseBenchArgs } from '../bench.js';
import { describeMachine } from '../bench-machine.js';
import { loadOrCreateBenchPki, type BenchPki } from '../bench-pki.js';
import { readSection, replaceSection, writeSection } from '../bench-sections.js';
import { slowestBySlice, stretchesOf, windowStats } from '../bench-steady-load.js';
import { parseSyncArgs } from '../bench-sync.js';
import { syncGoals } from '../bench-sync-goals.js';
import { measureSync, WINDOW_NAMES, type SyncBenchResult } from '../bench-sync-measure.js';
import { noiseLines, renderSyncSection } from '../bench-sync-report.js';

const AGENTS = 20;
let tmp: string;
let pki: BenchPki;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-bench-sync-test-'));
  pki = (await loadOrCreateBenchPki(path.join(tmp, 'cache'), AGENTS)).pki;
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

function expectSane(r: SyncBenchResult): void {
  expect(r.companies).toBe(2 + 200);
  expect(r.firstSync.run).toMatchObject({ outcome: 'succeeded', trigger: 'link', fetched: 202, added: 202 });
  expect(r.resync.run).toMatchObject({ outcome: 'succeeded', trigger: 'manual', fetched: 202, added: 0, renamed: 0, moved: 0, unlinked: 0 });
  for (const t of [r.firstSync, r.resync]) {
    expect(t.apiMs).toBeGreaterThan(0);
    expect(t.run.finishedAt).toBeGreaterThanOrEqual(t.run.startedAt);
  }
  for (const name of WINDOW_NAMES) {
    const w = r.windows[name];
    expect(w.wallMs).toBeGreaterThan(0);
    expect(w.checkins.count).toBeGreaterThan(0);
    expect(w.checkins.p99Ms).toBeGreaterThan(0);
    expect(w.checkins.p99Ms).toBeGreaterThanOrEqual(w.checkins.p50Ms);
    expect(w.checkins.maxMs).toBeGreaterThanOrEqual(w.checkins.p99Ms);
    expect(w.serverCpuMs).toBeGreaterThan(0);
    expect(w.writerBatches).toBeGreaterThan(0);
    expect(w.driverLoopDelayMaxMs).toBeGreaterThanOrEqual(0);
    expect(w.slowestByTenth).toHaveLength(10);
    expect(w.otherCpuMs).toBeGreaterThanOrEqual(0); // measured (Linux has /proc), and never negative
    expect(Math.max(...w.slowestByTenth.filter((v) => !Number.isNaN(v)))).toBe(w.checkins.maxMs);
  }
  // 20 agents, one check-in each per 200 ms: about 100 in each 1 s idle window.
  expect(r.windows.idle.checkins.count).toBeGreaterThan(50);
  expect(r.windows.idle.checkins.count).toBeLessThanOrEqual(110);
  expect(r.portalCalls['Company/Children']).toBeGreaterThanOrEqual((1 + r.resyncs.length) * 3); // the account and 2 MSPs, every sync
  expect(r.serverCpuMs).toBeGreaterThan(r.windows.idle.serverCpuMs);
  // The portal stand-in stands for another machine: every one of its threads is lowered, not only its event loop.
  const chrt = CHRT_PATHS.some((p) => existsSync(p));
  expect(r.portalPriority).toMatch(chrt ? /^SCHED_IDLE, every thread \(\d+\)$/ : /^nice 19, its main thread only/);
  for (const p99 of r.idleStretchesP99Ms) expect(p99).toBeGreaterThan(0);
}

describe('bench sync', () => {
  it('links and re-syncs a small account under check-in load and reports sane numbers', async () => {
    const r = await measureSync(pki, { msps: 2, customers: 200, periodMs: 200, idleMs: 1000, settleMs: 300, concurrency: 5, phaseDeadlineMs: 30_000, resyncs: 2 });
    expectSane(r);
    // The two re-syncs' windows are pooled into one: its check-ins are both windows' together.
    const resync = r.windows['re-sync'];
    expect(r.resyncs).toHaveLength(2);
    expect(r.resync.apiMs).toBe(Math.max(...r.resyncs.map((t) => t.apiMs)));
    expect(resync.ranges).toHaveLength(2);
    expect(resync.p99ByRangeMs).toHaveLength(2);
    for (const p99 of resync.p99ByRangeMs) expect(p99).toBeLessThanOrEqual(resync.checkins.maxMs);
    expect(resync.wallMs).toBeCloseTo(resync.ranges.reduce((t, x) => t + x.toMs - x.fromMs, 0), 6);

    const goals = syncGoals(r);
    expect(goals.map((g) => g.met)).toHaveLength(4);
    expect(goals[0]!.met).toBe(r.firstSync.apiMs < 10_000);
    expect(r.withoutSync.count).toBe(r.windows.idle.checkins.count + r.windows['idle after'].checkins.count);
    expect(goals[3]!.met).toBe(r.windows['re-sync'].checkins.p99Ms / r.withoutSync.p99Ms <= 2);
    const md = renderSyncSection({ startedAt: new Date(), machine: describeMachine(), result: r });
    expect(md).toMatch(/^## MSP sync under check-in load/);
    expect(md).toMatch(/\*\*[0-4] of 4 goals met\.\*\*/);
    expect(md).toContain('| first (link) |');
    expect(md).toContain('| re-sync (2 pooled) |');
    expect(md).toContain("| Other processes' CPU (share of the machine) |");
    expect(md).toMatch(/The 2 no-change re-syncs one by one/);
  });

  it('replaces only its own section of the report and keeps the other one byte for byte', async () => {
    const original = await fs.readFile(new URL('../../docs/benchmarks.md', import.meta.url), 'utf8');
    const checkin = readSection(original, 'checkin');
    expect(checkin).toMatch(/^## Connect and check-in/);
    const file = path.join(tmp, 'docs', 'benchmarks.md');
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, original);

    await writeSection(file, 'sync', '## Sync, first');
    await writeSection(file, 'sync', '## Sync, second');
    let doc = await fs.readFile(file, 'utf8');
    expect(readSection(doc, 'checkin')).toBe(checkin);
    expect(readSection(doc, 'sync')).toBe('## Sync, second');
    expect(doc.startsWith(original.slice(0, original.indexOf('<!-- bench:checkin:start -->')))).toBe(true);

    await writeSection(file, 'checkin', '## Check-in, new');
    doc = await fs.readFile(file, 'utf8');
    expect(readSection(doc, 'sync')).toBe('## Sync, second');
    expect(readSection(doc, 'checkin')).toBe('## Check-in, new');
    expect(doc.indexOf('bench:checkin:start')).toBeLessThan(doc.indexOf('bench:sync:start'));
  });

  it('puts a missing section in its place and refuses a file with broken markers', async () => {
    const onlySync = replaceSection(undefined, 'sync', 'S');
    expect(onlySync).toMatch(/^# Benchmarks\n/);
    const both = replaceSection(onlySync, 'checkin', 'C');
    expect(both.indexOf('<!-- bench:checkin:start -->\nC\n<!-- bench:checkin:end -->')).toBeLessThan(both.indexOf('<!-- bench:sync:start -->'));
    expect(replaceSection(both, 'sync', 'S2')).toBe(both.replace('\nS\n', '\nS2\n'));
    const broken = both.replace('<!-- bench:sync:end -->', '');
    expect(() => replaceSection(broken, 'sync', 'x')).toThrow(/sync section's markers are broken/);
    expect(() => replaceSection(broken, 'checkin', 'x')).not.toThrow(); // its own markers are intact and are all it touches
    expect(() => replaceSection(broken.replace(/<!-- bench:checkin:[a-z]+ -->/g, ''), 'checkin', 'x')).toThrow(/sync section's markers are broken/);
  });

  it('counts round trips by the time they were sent, over one window or several pooled', () => {
    const log = { sentAtMs: [0, 10, 20, 30, 40], rttMs: [1, 2, 3, 50, 4], late: 0 };
    expect(windowStats(log, [{ fromMs: 10, toMs: 40 }], 3)).toEqual({ count: 3, p50Ms: 3, p99Ms: 50, maxMs: 50, perSec: 100, slower: 1 });
    expect(windowStats(log, [{ fromMs: 0, toMs: 10 }, { fromMs: 40, toMs: 50 }])).toMatchObject({ count: 2, p50Ms: 1, p99Ms: 4, perSec: 100, slower: 0 });
    expect(windowStats(log, [{ fromMs: 100, toMs: 200 }]).count).toBe(0);
    expect(slowestBySlice(log, { fromMs: 0, toMs: 50 }, 5)).toEqual([1, 2, 3, 50, 4]);
    expect(slowestBySlice(log, { fromMs: 0, toMs: 100 }, 4)).toEqual([3, 50, NaN, NaN]);
  });

  it('cuts idle windows into whole stretches as long as a sync window, and says how far their p99 strays', () => {
    const idle = [{ fromMs: 0, toMs: 10 }, { fromMs: 20, toMs: 27 }];
    expect(stretchesOf(idle, 3)).toEqual([
      { fromMs: 0, toMs: 3 },
      { fromMs: 3, toMs: 6 },
      { fromMs: 6, toMs: 9 },
      { fromMs: 20, toMs: 23 },
      { fromMs: 23, toMs: 26 },
    ]);
    expect(stretchesOf(idle, 11)).toEqual([]);
    expect(stretchesOf(idle, 0)).toEqual([]);
    const wallMs = 2000;
    const lines = noiseLines({ idleStretchesP99Ms: [4, 10, 25, 8], withoutSync: { count: 100, p50Ms: 1, p99Ms: 10, maxMs: 40, perSec: 10, slower: 0 }, windows: { 'first sync': { wallMs } } as SyncBenchResult['windows'] });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('4 stretches whose p99 is 0.4x to 2.5x of the p99 without a sync (1 of 4 over 2x)');
    expect(noiseLines({ idleStretchesP99Ms: [], withoutSync: { count: 0, p50Ms: NaN, p99Ms: NaN, maxMs: NaN, perSec: NaN, slower: 0 }, windows: { 'first sync': { wallMs } } as SyncBenchResult['windows'] })).toEqual([]);
  });

  it('takes `sync` as a mode with the issue\'s defaults, and still refuses other arguments', () => {
    expect(parseSyncArgs([])).toMatchObject({ agents: 2000, customers: 10_000, msps: 50, periodMs: 1500, idleMs: 10_000, resyncs: 20 });
    expect(parseSyncArgs(['--resyncs', '1'])).toMatchObject({ resyncs: 1 });
    expect(parseSyncArgs(['--agents', '20', '--customers', '200', '--msps', '2'])).toMatchObject({ agents: 20, customers: 200, msps: 2 });
    expect(() => parseSyncArgs(['--customers', '0'])).toThrow(/--customers must be a whole number/);
    expect(() => parseBenchArgs(['sync'])).toThrow(/unexpected argument "sync"/);
  });
});
