import { describe, expect, it } from 'vitest';
import { backoffDelay, DEFAULT_BACKOFF, newReconnectState, nextReconnectDelay, reconnectWelcomed, type ReconnectState } from '../backoff.js';

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

});

describe('an agent taking its place in its fleet\'s return', () => {
  const policy = { baseMs: 100, capMs: 1000 };
  const W = 60_000;
  const welcomed = (windowMs = W): ReconnectState => {
    const st = newReconnectState();
    reconnectWelcomed(st, windowMs);
    return st;
  };

  it('retries once quickly after a loss without notice, then takes a place in the whole window', () => {
    const st = welcomed();
    // The first retry stays quick, so a lone agent whose own network blinked is back at once.
    expect(nextReconnectDelay(policy, st, () => 0.999)).toBe(99);
    expect(nextReconnectDelay(policy, st, () => 0.999)).toBe(59_940);
    expect(st.sincePlaced).toBe(0);
  });

  it('takes the moment the server advised as its place', () => {
    const st = welcomed();
    expect(nextReconnectDelay(policy, st, () => 0.5, 42_000)).toBe(42_000);
    expect(st.sincePlaced).toBe(0);
  });

  it('after a failed attempt at its place draws a new place from what is left of the window, never below its backoff window', () => {
    const st = welcomed();
    const top = (now: number): number => nextReconnectDelay(policy, st, () => 0.999_999, 0, now) + 1;
    nextReconnectDelay(policy, st, () => 0.5, 42_000, 1000); // placed by the notice: the window ends at 61,000
    expect(top(1000)).toBe(W);
    expect(top(31_000)).toBe(30_000);
    expect(top(50_000)).toBe(11_000);
    expect(top(55_000)).toBe(W / 8); // never less than an eighth of the window
    expect(top(60_999)).toBe(W / 8);
    expect(top(61_000)).toBe(W); // over: the whole window again
    expect(top(500_000)).toBe(W);
    expect(st.sincePlaced).toBe(7);
    // A window smaller than the backoff window changes nothing; the advice is always a floor.
    const small = welcomed(10);
    nextReconnectDelay(policy, small, () => 0.5);
    expect(nextReconnectDelay(policy, small, () => 0.999)).toBe(199);
    expect(nextReconnectDelay(policy, st, () => 0, 5000)).toBe(5000);
  });

  it('anchors the window where the agent took its place: at the notice (its window ends no sooner than the advised moment), or after the quick retry', () => {
    const told = welcomed();
    nextReconnectDelay(policy, told, () => 0.5, 100_000, 2000); // advised later than the window (the restart came first)
    expect(told.windowEndsAt).toBe(102_000);
    nextReconnectDelay(policy, told, () => 0.5, 0, 102_500); // failed there: the eighth
    nextReconnectDelay(policy, told, () => 0.5, 3000, 103_000); // a later hint (overloaded) keeps the anchor
    expect(told.windowEndsAt).toBe(102_000);
    const lost = welcomed();
    nextReconnectDelay(policy, lost, () => 0.5, 0, 5000); // the quick retry: not placed yet
    expect(lost.windowEndsAt).toBe(0);
    expect(nextReconnectDelay(policy, lost, () => 0.999_999, 0, 5100) + 1).toBe(W);
    expect(lost.windowEndsAt).toBe(65_100);
    reconnectWelcomed(lost, W);
    expect(lost.windowEndsAt).toBe(0);
  });

  it('keeps a fleet shed late in its return inside the window', () => {
    // 1,000 agents placed by a notice over [0, W), each shed once at its place: all retry before the window ends.
    for (let i = 0; i < 1000; i += 1) {
      const st = welcomed();
      const place = nextReconnectDelay(policy, st, () => 0.5, Math.floor((i / 1000) * W) + 1, 0);
      const retry = place + nextReconnectDelay(policy, st, () => 0.999_999, 0, place);
      expect(retry).toBeLessThan(place + Math.max(W - place, W / 8));
      if (place < (W * 7) / 8) expect(retry).toBeLessThan(W);
    }
  });

  it('starts afresh after a welcome', () => {
    const st = welcomed();
    nextReconnectDelay(policy, st, () => 0.5);
    nextReconnectDelay(policy, st, () => 0.5);
    nextReconnectDelay(policy, st, () => 0.5);
    reconnectWelcomed(st, 8000);
    expect(st).toEqual({ attempt: 0, windowMs: 8000, sincePlaced: -1, windowEndsAt: 0 });
    expect(nextReconnectDelay(policy, st, () => 0.999)).toBe(99);
  });

  it('is plain backoff when the server advertised no window (protocol 3 and older)', () => {
    const st = newReconnectState();
    expect([0, 1, 2, 3].map(() => nextReconnectDelay(policy, st, () => 0.999))).toEqual([99, 199, 399, 799]);
  });

  it('spreads a fleet evenly over the fleet window (jitter after the cap, not capped after)', () => {
    const values = Array.from({ length: 1000 }, (_, i) => {
      const st = welcomed(100_000);
      nextReconnectDelay(policy, st, () => 0.5); // the quick retry
      return nextReconnectDelay(policy, st, () => i / 1000);
    });
    const buckets = new Array(10).fill(0) as number[];
    for (const v of values) buckets[Math.floor(v / 10_000)]! += 1;
    for (const b of buckets) expect(b).toBe(100);
  });
});
