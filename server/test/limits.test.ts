import { describe, expect, it } from 'vitest';
import { FailureLimiter } from '../failure-limiter.js';
import { FrameBudget } from '../frame-budget.js';

describe('frame budget', () => {
  it('allows a burst, then refills at the sustained rate', () => {
    const b = new FrameBudget(5, 3, 0);
    expect([b.take(0), b.take(0), b.take(0), b.take(0)]).toEqual([true, true, true, false]);
    expect(b.take(100)).toBe(false);
    expect(b.take(200)).toBe(true);
    expect(b.take(10_000)).toBe(true);
  });
});

describe('failure limiter', () => {
  it('blocks an address after the limit until its window ends, and only that address', () => {
    const l = new FailureLimiter(3, 1000);
    for (let i = 0; i < 3; i += 1) {
      expect(l.blockedFor('a', i)).toBe(0);
      l.fail('a', i);
    }
    expect(l.blockedFor('a', 10)).toBe(990);
    expect(l.blockedFor('b', 10)).toBe(0);
    expect(l.blockedFor('a', 1000)).toBe(0);
  });

  it('lists the addresses blocked now with the moment each may try again', () => {
    const l = new FailureLimiter(2, 1000);
    l.fail('a', 0);
    l.fail('a', 5);
    l.fail('b', 10);
    l.fail('c', 100);
    l.fail('c', 200);
    expect([...l.blocked(300)]).toEqual([
      { key: 'a', until: 1000 },
      { key: 'c', until: 1100 },
    ]);
    expect([...l.blocked(1000)]).toEqual([{ key: 'c', until: 1100 }]);
    expect([...l.blocked(1100)]).toEqual([]);
  });

  it('keeps its memory bounded under many addresses', () => {
    const l = new FailureLimiter(1, 1000, 100);
    for (let i = 0; i < 1000; i += 1) l.fail(`10.0.${i >> 8}.${i & 255}`, 0);
    expect((l as unknown as { entries: Map<string, unknown> }).entries.size).toBeLessThanOrEqual(100);
  });
});
