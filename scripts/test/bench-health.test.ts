import { describe, expect, it } from 'vitest';
import { benchHealth } from '../bench-health.js';

describe('bench health', () => {
  it('builds a small data set, times the report builder and reports what the report found', async () => {
    const r = await benchHealth({ customers: 100, devices: 1000, runs: 3 });
    expect(r).toMatchObject({ customers: 100, devices: 1000, observations: 2000 });
    expect(r.runsMs).toHaveLength(3);
    expect(r.ms).toBeGreaterThan(0);
    expect([...r.runsMs].sort((a, b) => a - b)[1]).toBe(r.ms);
    expect(r.cpuMs).toBeGreaterThan(0);
    // Every 50th customer blocks the agent port (2 of 100, dark as well), every 20th device fails alone, every 100th customer reaches the restricted console.
    expect(r.customersWithProblems).toBeGreaterThanOrEqual(2 + 1);
    expect(r.customersWithProblems).toBeLessThan(100);
  });
});
