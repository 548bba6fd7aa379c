import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeAgents, connectAgents, type BenchAgent } from '../bench-clients.js';
import { compareResults, median } from '../bench-compare.js';
import { measureTarget, percentile, type TargetResult } from '../bench-measure.js';
import { benchPkiCacheFile, loadOrCreateBenchPki, type BenchPki } from '../bench-pki.js';
import { describeMachine, foreignLoad } from '../bench-machine.js';
import { renderCheckinSection } from '../bench-report.js';
import { startTarget, type TargetSample } from '../bench-target-process.js';

const AGENTS = 20;
const CHECKINS = 2;
let cacheDir: string;
let pki: BenchPki;

beforeAll(async () => {
  cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-bench-test-'));
  pki = (await loadOrCreateBenchPki(cacheDir, AGENTS)).pki;
});
afterAll(async () => {
  await fs.rm(cacheDir, { recursive: true, force: true });
});

const fakeSample: TargetSample = { cpuUs: 0, cpuAfterGcUs: 0, rssBytes: 1, heapUsedBytes: 1, gcForced: true, openChannels: 0, counters: {}, eventLoopDelayMaxMs: 0 };
const fakeResult: TargetResult = {
  kind: 'ours',
  agents: 1,
  checkinsPerAgent: 1,
  samples: { before: fakeSample, afterConnect: fakeSample, afterCheckins: fakeSample },
  connectWallMs: 1,
  connectCpuMsPerAgent: 1,
  rssBytesPerAgent: 1,
  roundTrips: 1,
  checkinWallMs: 1,
  roundTripsPerSec: 1,
  checkinCpuMsPerRoundTrip: 1,
  rttP50Ms: 1,
  rttP99Ms: 1,
  rttMaxMs: 1,
};

function expectSane(r: TargetResult): void {
  expect(r.agents).toBe(AGENTS);
  expect(r.roundTrips).toBe(AGENTS * CHECKINS);
  for (const s of [r.samples.before, r.samples.afterConnect, r.samples.afterCheckins]) {
    expect(s.rssBytes).toBeGreaterThan(0);
    expect(s.gcForced).toBe(true);
  }
  expect(r.samples.before.openChannels).toBe(0);
  expect(r.samples.afterConnect.openChannels).toBe(AGENTS);
  expect(r.connectCpuMsPerAgent).toBeGreaterThan(0);
  expect(Number.isFinite(r.rssBytesPerAgent)).toBe(true);
  expect(r.roundTripsPerSec).toBeGreaterThan(0);
  expect(r.rttP50Ms).toBeGreaterThan(0);
  expect(r.rttP99Ms).toBeGreaterThanOrEqual(r.rttP50Ms);
  expect(r.rttMaxMs).toBeGreaterThanOrEqual(r.rttP99Ms);
}

describe('bench', () => {
  it('measures Rollcall and the bare baseline with a few agents and compares them', async () => {
    const opts = { checkinsPerAgent: CHECKINS, concurrency: 5, phaseDeadlineMs: 30_000 };
    const ours = await measureTarget('ours', pki, opts);
    const bare = await measureTarget('bare', pki, opts);
    expectSane(ours);
    expectSane(bare);
    expect(ours.samples.afterCheckins.counters.writerCheckins).toBe(AGENTS * CHECKINS);

    const rows = compareResults([ours], [bare]);
    expect(rows.filter((r) => r.goal === 1.5).map((r) => r.metric)).toEqual([
      'Server CPU per connect',
      'Server RSS per connected agent',
      'Check-in round trips per second',
      'Check-in p99 latency',
    ]);
    const throughput = rows.find((r) => r.better === 'higher')!;
    expect(throughput.ours).toEqual({ median: ours.roundTripsPerSec, min: ours.roundTripsPerSec, max: ours.roundTripsPerSec, runs: 1 });
    expect(throughput.costRatio).toBeCloseTo(bare.roundTripsPerSec / ours.roundTripsPerSec, 10);
    const p99 = rows.find((r) => r.metric === 'Check-in p99 latency')!;
    expect(p99.costRatio).toBeCloseTo(ours.rttP99Ms / bare.rttP99Ms, 10);
    for (const r of rows) expect(r.met).toBe(r.goal === undefined ? undefined : r.costRatio <= 1.5);

    const foreign = foreignLoad(0, 9000, 1000, 4000, 2);
    const md = renderCheckinSection({ startedAt: new Date(), machine: describeMachine(), foreign, args: { agents: AGENTS, checkins: CHECKINS, concurrency: 5, repeat: 1 }, ours: [ours], bare: [bare], rows });
    expect(md).toContain('| Server CPU per connect (ms, lower is better) |');
    expect(md).toContain('Other processes on the machine used 8.0 CPU-seconds during the 4 s of measurement (100% of the machine)');
    expect(md).toContain('one RSA-2048 key pair');
    expect(md).toMatch(/\*\*[0-4] of 4 goals met\.\*\*/);
  });

  it('reuses cached certificates for the same agent count', async () => {
    const again = await loadOrCreateBenchPki(cacheDir, AGENTS);
    expect(again.cached).toBe(true);
    expect(again.pki.agents.map((a) => a.serial)).toEqual(pki.agents.map((a) => a.serial));
    await expect(fs.stat(benchPkiCacheFile(cacheDir, AGENTS))).resolves.toBeTruthy();
  });

  it('fails with a clear error when the server refuses an agent, and stops its server', async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-bench-test-data-'));
    // The server knows every device but the last, so the last agent's upgrade is refused.
    const target = await startTarget('ours', { ...pki, agents: pki.agents.slice(0, -1) }, { dataDir });
    const agents: BenchAgent[] = [];
    try {
      await expect(connectAgents({ port: target.port, pki }, agents, { concurrency: 1, deadlineMs: 20_000 })).rejects.toThrow(
        /dev_bench_000019: upgrade refused with HTTP 40\d/,
      );
      expect(agents).toHaveLength(AGENTS - 1);
    } finally {
      await closeAgents(agents);
      await target.stop();
      await fs.rm(dataDir, { recursive: true, force: true });
    }
    await expect(target.sample()).rejects.toThrow(/exited/);
  });

  it('counts only the CPU time of other processes as foreign load', () => {
    expect(foreignLoad(10_000, 12_000, 500, 1000, 2)).toEqual({ otherCpuMs: 1500, wallMs: 1000, share: 0.75 });
    expect(foreignLoad(10_000, 10_400, 500, 1000, 2).otherCpuMs).toBe(0); // never negative
  });

  it('compares the medians of repeated runs and keeps their range', () => {
    const run = (rps: number): TargetResult => ({ ...fakeResult, roundTripsPerSec: rps });
    const rows = compareResults([run(100), run(300), run(200)], [run(400), run(250), run(600)]);
    const throughput = rows.find((r) => r.metric === 'Check-in round trips per second')!;
    expect(throughput.ours).toEqual({ median: 200, min: 100, max: 300, runs: 3 });
    expect(throughput.bare.median).toBe(400);
    expect(throughput.costRatio).toBe(2); // higher is better: bare/ours
    expect(throughput.met).toBe(false);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('takes nearest-rank percentiles', () => {
    const values = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile(values, 100)).toBe(100);
    expect(percentile(Float64Array.of(7), 99)).toBe(7);
  });
});
