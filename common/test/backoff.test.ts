import { describe, expect, it } from 'vitest';
import { backoffDelay, DEFAULT_BACKOFF } from '../backoff.js';

describe('full-jitter backoff', () => {
  const policy = { baseMs: 100, capMs: 1000 };

  it('draws from [0, min(cap, base * 2^attempt)]', () => {
    expect(backoffDelay(policy, 0, () => 0.999)).toBe(99);
    expect(backoffDelay(policy, 1, () => 0.999)).toBe(199);
    expect(backoffDelay(policy, 3, () => 0.5)).toBe(400);
    expect(backoffDelay(policy, 10, () => 0.999)).toBe(999);
    expect(backoffDelay(policy, 5, () => 0)).toBe(0);
  });

  it('never overflows for very large attempt numbers', () => {
    expect(backoffDelay(policy, 10_000, () => 0.5)).toBe(500);
    expect(backoffDelay(DEFAULT_BACKOFF, 1e9, () => 0.999)).toBeLessThanOrEqual(DEFAULT_BACKOFF.capMs);
  });

  it('uses a delay the server advised as a floor, even beyond the cap', () => {
    expect(backoffDelay(policy, 0, () => 0, 5000)).toBe(5000);
    expect(backoffDelay(policy, 4, () => 0.9, 10)).toBe(900);
    expect(backoffDelay(policy, 0, () => 0.5, -5)).toBe(50);
  });

  it('spreads a fleet over the whole window instead of in waves', () => {
    const values = Array.from({ length: 1000 }, (_, i) => backoffDelay(policy, 10, () => i / 1000));
    const buckets = new Array(10).fill(0) as number[];
    for (const v of values) buckets[Math.floor(v / 100)]! += 1;
    for (const b of buckets) expect(b).toBe(100);
  });

  it('widens the window to the fleet spread from the second retry on', () => {
    // The first retry stays quick, so a lone agent whose own network blinked is back at once.
    expect(backoffDelay(policy, 0, () => 0.999, 0, 60_000)).toBe(99);
    expect(backoffDelay(policy, 1, () => 0.999, 0, 60_000)).toBe(59_940);
    expect(backoffDelay(policy, 1, () => 0.5, 0, 60_000)).toBe(30_000);
    // A spread smaller than the backoff window changes nothing; the advised delay is still a floor.
    expect(backoffDelay(policy, 10, () => 0.999, 0, 10)).toBe(999);
    expect(backoffDelay(policy, 1, () => 0, 5000, 60_000)).toBe(5000);
  });

  it('spreads a fleet evenly over the fleet window (jitter after the cap, not capped after)', () => {
    const values = Array.from({ length: 1000 }, (_, i) => backoffDelay(policy, 3, () => i / 1000, 0, 100_000));
    const buckets = new Array(10).fill(0) as number[];
    for (const v of values) buckets[Math.floor(v / 10_000)]! += 1;
    for (const b of buckets) expect(b).toBe(100);
  });
});
