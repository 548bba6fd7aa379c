import { describe, expect, it } from 'vitest';
import { agentFigures } from '../bench-agent.js';
import { sampleProc, type ProcSample } from '../bench-agent-measure.js';

const MiB = 2 ** 20;
const sample = (at: number, rssMiB: number, runMs: number, slices: number): ProcSample => ({
  at,
  rssBytes: rssMiB * MiB,
  anonBytes: (rssMiB - 50) * MiB,
  fileBytes: 50 * MiB,
  hwmBytes: (rssMiB + 5) * MiB,
  runNs: runMs * 1e6,
  slices,
  threads: 11,
});

describe('agent benchmark figures', () => {
  it('takes medians per interval: CPU from check-in to check-in, the quiet window from a quarter to three quarters', () => {
    const m = {
      intervalSec: 2,
      start: sample(0, 60, 100, 10),
      intervals: [
        { early: sample(500, 61, 101, 11), late: sample(1500, 61, 101, 11), end: sample(2000, 61, 102, 20) },
        { early: sample(2500, 62, 102.5, 21), late: sample(3500, 62, 102.5, 23), end: sample(4000, 62, 106, 30) },
        { early: sample(4500, 63, 106, 31), late: sample(5500, 63, 106.25, 31), end: sample(6000, 63, 108, 40) },
      ],
    };
    const f = agentFigures(m);
    expect(f.idleRss).toBe(62 * MiB);
    expect(f.idleAnon).toBe(12 * MiB);
    expect(f.rssRange).toEqual([61 * MiB, 63 * MiB]);
    expect(f.peakRss).toBe(68 * MiB);
    expect(f.cpuMsPerInterval).toBeCloseTo(2, 6);
    expect(f.quietCpuMs).toBeCloseTo(0, 6);
    expect(f.quietWakeupsPerSec).toBe(0);
    expect(f.threads).toBe(11);
  });

  it('reads a live process from /proc', async () => {
    const s = await sampleProc(process.pid);
    expect(s.rssBytes).toBeGreaterThan(0);
    expect(s.anonBytes + s.fileBytes).toBeLessThanOrEqual(s.rssBytes);
    expect(s.runNs).toBeGreaterThan(0);
    expect(s.threads).toBeGreaterThan(1);
  });
});
